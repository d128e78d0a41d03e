/*
 * commands.h — the entry points of the `nines` subcommands (commands.def).
 *
 * Each subcommand is `int NAME_main(int argc, char **argv)` with argv[0] the
 * subcommand's name; it returns the process's exit code (0 success, 1 the
 * work failed, 2 bad usage, larger codes as its --help documents).
 */
#ifndef NINES_CLI_COMMANDS_H
#define NINES_CLI_COMMANDS_H

#define NINES_COMMAND(name, component, summary) int name##_main(int argc, char **argv);
#include "cli/commands.def"
#undef NINES_COMMAND

#endif
