/* Placeholder until the subcommand lands (being written now). */
#include <stdio.h>
int lab_main(int argc, char **argv);
int lab_main(int argc, char **argv)
{
    fprintf(stderr, "nines %s: not available yet\n", argv[0]);
    return 2;
}
