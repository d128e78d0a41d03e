/* Placeholder until the subcommand lands (being written now). */
#include <stdio.h>
int canary_main(int argc, char **argv);
int canary_main(int argc, char **argv)
{
    fprintf(stderr, "nines %s: not available yet\n", argv[0]);
    return 2;
}
