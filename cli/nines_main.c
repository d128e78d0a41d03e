/*
 * nines — the toolkit's one command line, as a dispatcher.
 *
 * Every subcommand is its own program, bin/nines-NAME (command_main.c),
 * linked with only the component it needs; this program knows the
 * registry (commands.def) and execs the one asked for. It links nothing but
 * the C library, so `nines help` answers in about a millisecond instead of
 * the ~25 ms it took to load the 39 shared libraries of every component,
 * and each subcommand pays only for its own.
 *
 *   nines help | --help | -h      lists every subcommand (stdout, exit 0)
 *   nines help NAME               runs `nines NAME --help`
 *   nines --version               the version
 *   nines NAME ARGS...            execs bin/nines-NAME with argv[0] = NAME
 *
 * No arguments or an unknown command: the list on stderr, exit 2. A missing
 * or unrunnable nines-NAME next to this program: a message naming the path
 * and the reason, exit 127 (as a shell does for a command it cannot run).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const struct {
    const char *name;
    const char *summary;
} commands[] = {
#define NINES_COMMAND(name, component, summary) {#name, summary},
#include "cli/commands.def"
#undef NINES_COMMAND
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: nines COMMAND [ARGS...]\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`nines help COMMAND` (or `nines COMMAND --help`) describes a command.\n");
}

static int find(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (!strcmp(name, commands[i].name))
            return (int)i;
    return -1;
}

/* Execs bin/nines-NAME from the directory this program lives in; returns
 * only on failure. */
static int run(int k, int argc, char **argv)
{
    char self[PATH_MAX], path[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        fprintf(stderr, "nines: cannot find my own program (/proc/self/exe): %s\n",
                strerror(errno));
        return 127;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    *slash = '\0';
    snprintf(path, sizeof path, "%s/nines-%s", self, commands[k].name);
    (void)argc;
    argv[0] = (char *)commands[k].name;
    execv(path, argv);
    fprintf(stderr, "nines: cannot run %s: %s\n", path, strerror(errno));
    return 127;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *a = argv[1];
    if (!strcmp(a, "--help") || !strcmp(a, "-h") || (!strcmp(a, "help") && argc == 2)) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(a, "--version") || !strcmp(a, "version")) {
        printf("nines %s\n", NINES_VERSION_STRING);
        return 0;
    }
    if (!strcmp(a, "help")) {
        int k = find(argv[2]);
        if (k < 0) {
            fprintf(stderr, "nines: unknown command '%s'\n", argv[2]);
            usage(stderr);
            return 2;
        }
        char *av[] = {argv[2], "--help", NULL};
        return run(k, 2, av);
    }
    int k = find(a);
    if (k < 0) {
        fprintf(stderr, "nines: unknown command '%s'\n", a);
        usage(stderr);
        return 2;
    }
    return run(k, argc - 1, argv + 1);
}
