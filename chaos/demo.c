/* Placeholder until the demo subcommand lands; replaced by its implementation. */
#include <stdio.h>
int demo_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "nines demo: not built yet\n");
    return 2;
}
