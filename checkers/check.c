/* Placeholder until the check subcommand lands; replaced by its implementation. */
#include <stdio.h>
int check_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "nines check: not built yet\n");
    return 2;
}
