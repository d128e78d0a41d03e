/* Placeholder until the load subcommand lands; replaced by its implementation. */
#include <stdio.h>
int load_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "nines load: not built yet\n");
    return 2;
}
