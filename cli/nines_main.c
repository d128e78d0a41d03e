/*
 * nines — the toolkit's one command line. Each subcommand lives in its
 * component (chaos/, checkers/, ...) as `int NAME_main(int argc, char **argv)`
 * where argv[0] is the subcommand's name; this file only dispatches.
 */
#include <stdio.h>
#include <string.h>

#include "lib/log.h"
#include "net/http.h"

int demo_main(int argc, char **argv);
int load_main(int argc, char **argv);
int check_main(int argc, char **argv);
int histgen_main(int argc, char **argv);
int cluster_main(int argc, char **argv);
int lab_main(int argc, char **argv);
int labfs_main(int argc, char **argv);
int canary_main(int argc, char **argv);
int alarms_main(int argc, char **argv);
int gameday_main(int argc, char **argv);

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"demo", demo_main, "start a local ninesd, create a table, write and read items"},
    {"load", load_main, "drive PutItem/GetItem traffic and report throughput and latency"},
    {"check", check_main, "check a recorded history (linearizability, lost writes, sessions)"},
    {"histgen", histgen_main, "generate a simulated register history (tests, benchmarks)"},
    {"cluster", cluster_main, "start, stop and inspect a cluster of ninesd nodes"},
    {"lab", lab_main, "network-namespace lab hosts with sshd: up, down, status, power, exec"},
    {"labfs", labfs_main, "the lab's power-loss file system (FUSE): mount, control"},
    {"canary", canary_main, "probe DynamoDB endpoints from every AZ and record what customers see"},
    {"alarms", alarms_main, "customer-facing alarms: evaluate, backtest and lint rules"},
    {"gameday", gameday_main, "run, plan or lint a game-day playbook"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: nines COMMAND [ARGS...]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n`nines COMMAND --help` describes a command.\n");
}

int main(int argc, char **argv)
{
    log_init("nines", LOG_INFO);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            /* Once, before any subcommand starts a thread (libcurl's rule). */
            if (http_global_init()) {
                fprintf(stderr, "nines: cannot initialise libcurl\n");
                return 1;
            }
            return commands[i].fn(argc - 1, argv + 1);
        }
    fprintf(stderr, "nines: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
