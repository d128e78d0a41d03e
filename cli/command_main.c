/*
 * command_main.c — the main() of one subcommand's program, bin/nines-NAME.
 *
 * CMake compiles this file once per line of commands.def with
 * NINES_COMMAND_NAME set to the command's name, and links it with that
 * command's component alone: `nines check` loads jansson, not libcurl,
 * LMDB and libpq. `nines NAME ...` execs this program; running it directly
 * is the same.
 */
#include "cli/commands.h"
#include "lib/log.h"

#define NINES_CAT2(a, b) a##b
#define NINES_CAT(a, b) NINES_CAT2(a, b)
#define NINES_STR2(a) #a
#define NINES_STR(a) NINES_STR2(a)

int main(int argc, char **argv)
{
    log_init("nines", LOG_INFO);
    /* The subcommand sees its own name in argv[0], as under the dispatcher. */
    argv[0] = (char *)NINES_STR(NINES_COMMAND_NAME);
    return NINES_CAT(NINES_COMMAND_NAME, _main)(argc, argv);
}
