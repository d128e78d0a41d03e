/*
 * demo/demo.c — `nines demo`: the main job, on this machine. Brings up a
 * lab (lab/lab.h: 6 hosts in 3 AZs, 2 racks each, network namespaces with
 * their own sshd and labfs data directories), runs a short game day on it
 * (gameday/gameday.h: the deploy over SSH, traffic, a canary per AZ, the
 * customer-facing alarms, the power-off of one whole AZ with what it must
 * and must not cause, the checkers and the scrub at the end), prints the
 * summary and where report.html is, and takes the lab down again — also
 * after a failure or Ctrl-C. `nines demo store` is the single-node
 * walkthrough (cluster/demo.c).
 *
 * Needs root (namespaces, mounts). Exit status: 0 the game day passed, 1 it
 * failed or could not run, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "gameday/gameday.h"
#include "lab/lab.h"
#include "net/http.h"

static volatile sig_atomic_t cancelled;

static void on_signal(int sig)
{
    (void)sig;
    cancelled = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nines demo [--playbook FILE] [--seed N] [--keep]\n"
            "       nines demo store [--dir DIR] [--partitions N]\n"
            "\n"
            "Runs a short game day on a lab made on this machine (root): 6 hosts in 3 AZs,\n"
            "ninesd deployed over SSH, traffic, a canary in every AZ, customer-facing\n"
            "alarms, one whole AZ powered off with the alarms it must (and must not) fire,\n"
            "then the checkers and the scrub; prints the summary and where report.html is,\n"
            "and takes the lab down (--keep leaves it up). The playbook is\n"
            "playbooks/demo.yaml of the source tree unless --playbook names another.\n"
            "`nines demo store` is the single-node walkthrough.\n");
}

/* playbooks/demo.yaml beside the build (BUILD/bin/../../playbooks) or an
 * installation (PREFIX/bin/../share/nines/playbooks). */
static int find_playbook(char *out, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return -1;
    self[n] = 0;
    char *sl = strrchr(self, '/');
    if (!sl)
        return -1;
    *sl = 0;
    static const char *const rel[] = {"../../playbooks/demo.yaml",
                                      "../share/nines/playbooks/demo.yaml", NULL};
    for (int i = 0; rel[i]; i++) {
        char p[PATH_MAX + 64];
        snprintf(p, sizeof p, "%s/%s", self, rel[i]);
        char *real = realpath(p, NULL);
        if (real && strlen(real) < cap) {
            snprintf(out, cap, "%s", real);
            free(real);
            return 0;
        }
        free(real);
    }
    return -1;
}

int demo_main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "store"))
        return demo_store_main(argc - 1, argv + 1);
    static const struct option longopts[] = {{"playbook", required_argument, NULL, 'p'},
                                             {"seed", required_argument, NULL, 's'},
                                             {"keep", no_argument, NULL, 'k'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *playbook = NULL;
    uint64_t seed = 0;
    int keep = 0, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end;
        switch (ch) {
        case 'p':
            playbook = optarg;
            break;
        case 's':
            errno = 0;
            seed = strtoull(optarg, &end, 10);
            if (errno || *end || end == optarg) {
                fprintf(stderr, "nines demo: --seed '%s': a whole number\n", optarg);
                return 2;
            }
            break;
        case 'k':
            keep = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "nines demo: unexpected '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (geteuid() != 0) {
        fprintf(stderr, "nines demo: needs root (it makes network namespaces and mounts for "
                        "its lab); `nines demo store` does not\n");
        return 1;
    }
    char pb[PATH_MAX];
    if (playbook)
        snprintf(pb, sizeof pb, "%s", playbook);
    else if (find_playbook(pb, sizeof pb)) {
        fprintf(stderr, "nines demo: cannot find playbooks/demo.yaml next to this build; give "
                        "--playbook FILE\n");
        return 1;
    }
    if (!seed)
        seed = (uint64_t)time(NULL) % 100000 + 1;
    /* Before any thread exists (libcurl's rule for its global init). */
    if (http_global_init()) {
        fprintf(stderr, "nines demo: cannot initialise libcurl\n");
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    char top[] = "/tmp/nines-demo-XXXXXX";
    if (!mkdtemp(top)) {
        fprintf(stderr, "nines demo: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    char labdir[sizeof top + 8], report[sizeof top + 16], inv[sizeof top + 32];
    snprintf(labdir, sizeof labdir, "%s/lab", top);
    snprintf(report, sizeof report, "%s/report", top);
    snprintf(inv, sizeof inv, "%s/inventory.yaml", labdir);

    struct lab_env env;
    lab_env_default(&env);
    struct lab_spec spec = {.dir = labdir, .hosts = 6, .azs = 3, .racks = 2, .cancel = &cancelled};
    struct nerr err = {0};
    char id[LAB_ID_LEN + 1] = "";
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fprintf(stderr, "nines demo: bringing up a lab of 6 hosts in 3 AZs in %s\n", labdir);
    if (lab_up(&env, &spec, id, &err)) {
        fprintf(stderr, "nines demo: lab up: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "nines demo: lab %s is up; game day %s, seed %llu\n", id, pb,
            (unsigned long long)seed);
    struct gd_opts o = {.playbook = pb,
                        .inventory = inv,
                        .report_dir = report,
                        .seed = seed,
                        .out = stdout,
                        .progress = stderr,
                        .progress_tty = isatty(2),
                        .cancel = &cancelled};
    int passed = 0, rc = gameday_run(&o, &passed, &err);
    if (rc)
        fprintf(stderr, "nines demo: game day: %s\n", err.msg);
    fflush(stdout);
    if (keep) {
        fprintf(stderr,
                "nines demo: the lab stays up (--keep): `nines lab status --dir %s`, and "
                "`nines lab down --dir %s` when done\n",
                labdir, labdir);
    } else {
        struct nerr de = {0};
        fprintf(stderr, "nines demo: taking the lab down\n");
        if (lab_down(&env, labdir, &de)) {
            fprintf(stderr, "nines demo: lab down: %s (run `nines lab down --dir %s`)\n", de.msg,
                    labdir);
            rc = rc ? rc : 1;
        }
    }
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("\nnines demo: %s in %.0f s; open %s/report.html (report.json, history.jsonl and the "
           "nodes' logs beside it)\n",
           rc ? "the game day could not run" : passed ? "the game day PASSED" : "the game day FAILED",
           secs, report);
    return !rc && passed ? 0 : 1;
}
