/*
 * gameday_cli.c — `nines gameday run|plan|lint` (contract in gameday.h,
 * reference in docs/gameday.md).
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gameday/gameday.h"
#include "fault/inventory.h"
#include "gameday/playbook.h"
#include "net/http.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nines gameday run|plan|lint PLAYBOOK [options]\n"
            "\n"
            "  run    deploy (or use) the cluster, run the traffic and every step, verify,\n"
            "         write DIR/report.json; exit 0 only if every verification passed\n"
            "  plan   print the resolved schedule (targets, durations) without touching anything\n"
            "  lint   check the playbook and print every error as FILE:LINE:COL: message\n"
            "\n"
            "options:\n"
            "  --inventory FILE   the hosts (overrides the playbook's inventory:)\n"
            "  --seed N           seed of every random choice (default: from the clock, printed)\n"
            "  --report DIR       where the report, history and logs go\n"
            "                     (default ./gameday-NAME-SEED)\n"
            "  --ninesd PATH      the ninesd binary to deploy (default: the playbook's, else\n"
            "                     the one next to nines)\n"
            "  --help             this text\n"
            "\n"
            "Exit status: 0 passed (lint: no error), 1 failed, 2 usage or playbook errors.\n");
}

static volatile sig_atomic_t cancel_flag;

static void on_signal(int sig)
{
    (void)sig;
    cancel_flag = 1;
}

static int lint_or_plan(int plan, const char *path, const char *invp, uint64_t seed, int have_seed)
{
    struct pb_errors errs = {0};
    struct playbook *pb = NULL;
    struct inventory *inv = NULL;
    struct pb_plan *p = NULL;
    struct nerr e = {0};
    int status = 2, rc;
    /* The inventory: --inventory, checked along with everything else; or
     * the playbook's own, known only once the playbook loaded. */
    if (invp && inventory_load(invp, &inv, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        goto out;
    }
    rc = playbook_load(path, NULL, 0, inv, &pb, &errs, &e);
    if (!rc && !inv && pb->inventory) {
        if (inventory_load(pb->inventory, &inv, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            goto out;
        }
        rc = playbook_check_inventory(pb, inv, &errs, &e);
    }
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msg[i]);
    if (errs.dropped)
        fprintf(stderr, "... and %zu more errors\n", errs.dropped);
    if (rc) {
        if (!errs.n)
            fprintf(stderr, "%s\n", e.msg);
        goto out;
    }
    if (!inv) {
        if (plan) {
            fprintf(stderr, "%s: no inventory (give --inventory FILE)\n", path);
            goto out;
        }
        fprintf(stderr, "%s: no inventory given: host, rack and AZ names not checked\n", path);
    } else if ((rc = playbook_plan(pb, inv, seed, &p, &e))) {
        /* The planner's refusals (quorum_safe, too few hosts) are lint
         * errors as well. */
        fprintf(stderr, "%s\n", e.msg);
        goto out;
    }
    if (plan) {
        pb_plan_print(p, inv, stdout);
        if (!have_seed)
            printf("(seed chosen from the clock; give --seed %llu to get this plan again)\n",
                   (unsigned long long)seed);
    } else {
        printf("%s: ok\n", path);
    }
    status = 0;
out:
    pb_plan_free(p);
    inventory_free(inv);
    playbook_free(pb);
    pb_errors_free(&errs);
    return status;
}

int gameday_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"inventory", required_argument, NULL, 'i'},
        {"seed", required_argument, NULL, 's'},
        {"report", required_argument, NULL, 'r'},
        {"ninesd", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *invp = NULL, *report = NULL, *ninesd = NULL;
    uint64_t seed = 0;
    int have_seed = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'i':
            invp = optarg;
            break;
        case 'r':
            report = optarg;
            break;
        case 'n':
            ninesd = optarg;
            break;
        case 's': {
            char *end;
            errno = 0;
            seed = strtoull(optarg, &end, 10);
            if (errno || *end || !*optarg || *optarg == '-') {
                fprintf(stderr, "nines gameday: --seed '%s': a non-negative integer\n", optarg);
                return 2;
            }
            have_seed = 1;
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            fprintf(stderr, "nines gameday: unknown or incomplete option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind != 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[optind], *path = argv[optind + 1];
    if (!have_seed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t)ts.tv_sec * 1000003u) ^ (uint64_t)ts.tv_nsec;
        seed %= 1000000000u; /* short enough to type back */
    }
    if (!strcmp(cmd, "lint") || !strcmp(cmd, "plan"))
        return lint_or_plan(!strcmp(cmd, "plan"), path, invp, seed, have_seed);
    if (strcmp(cmd, "run")) {
        fprintf(stderr, "nines gameday: unknown command '%s'\n", cmd);
        usage(stderr);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (http_global_init()) {
        fprintf(stderr, "nines gameday: cannot initialise libcurl\n");
        return 1;
    }
    struct gd_opts o = {.playbook = path,
                        .inventory = invp,
                        .report_dir = report,
                        .ninesd = ninesd,
                        .seed = seed,
                        .out = stdout,
                        .progress = stderr,
                        .progress_tty = isatty(2),
                        .cancel = &cancel_flag};
    struct nerr e = {0};
    int passed = 0;
    int rc = gameday_run(&o, &passed, &e);
    curl_global_cleanup();
    if (rc) {
        fprintf(stderr, "nines gameday: %s\n", e.msg);
        return rc == NERR_INVALID || rc == NERR_PARSE ? 2 : 1;
    }
    return passed ? 0 : 1;
}
