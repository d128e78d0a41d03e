/* Placeholder until the subcommand lands (being written now). */
#include <stdio.h>
int labfs_main(int argc, char **argv);
int labfs_main(int argc, char **argv)
{
    fprintf(stderr, "nines %s: not available yet\n", argv[0]);
    return 2;
}
