/*
 * `nines canary run|lint|sink-bench` — the canary daemon's command line.
 *
 * run: foreground, logs to stderr; SIGTERM or SIGINT stops scheduling, lets
 * in-flight probes end, closes every interval and flushes the sink (bounded
 * by --flush-timeout, default 10 s) before exit. Exit 0 on a clean stop, 1
 * when samples could not be flushed, 2 on a usage or config error.
 * lint: parses the config (environment expanded) and prints what it found.
 * sink-bench: writes --rows synthetic samples through the PostgreSQL sink
 * (--streams COPY connections, default the sink's) and prints the ingest
 * rate (for t/bench/canary.sh).
 */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "canary/canary.h"
#include "canary/cconfig.h"
#include "canary/pgsink.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "net/http.h"

int canary_main(int argc, char **argv);

static void usage(FILE *f)
{
    fprintf(f, "usage: nines canary run --config FILE [--duration SECONDS] [--flush-timeout S]\n"
               "       nines canary lint --config FILE\n"
               "       nines canary sink-bench --pg DSN [--rows N] [--streams N]\n"
               "Probes DynamoDB endpoints on a fixed schedule (docs/canary.md).\n");
}

static int cmd_run(const char *path, double duration, double flush_timeout)
{
    struct canary_config cfg;
    struct canary *c = NULL;
    struct nerr err;
    if (canary_config_load(path, &cfg, &err)) {
        fprintf(stderr, "nines canary: %s\n", err.msg);
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    /* Blocked before any thread exists, so every thread inherits the mask and
     * only sigtimedwait below ever sees the signals. */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (canary_start(&cfg, &c, &err)) {
        fprintf(stderr, "nines canary: %s\n", err.msg);
        canary_config_free(&cfg);
        return 2;
    }
    double t0 = clock_mono_ns() / 1e9;
    for (;;) {
        struct timespec ts = {0, 200000000};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            log_info("canary: %s received, flushing", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            break;
        }
        canary_tick(c);
        if (duration > 0 && clock_mono_ns() / 1e9 - t0 >= duration)
            break;
    }
    canary_stop(c);
    int rc = canary_finish(c, (uint64_t)(flush_timeout * 1e9), &err);
    canary_config_free(&cfg);
    return rc ? 1 : 0;
}

static int cmd_lint(const char *path)
{
    struct canary_config cfg;
    struct nerr err;
    if (canary_config_load(path, &cfg, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    printf("%s: ok: canary az %s, %zu endpoints, %zu tables, %.3g probes/s per endpoint, "
           "interval %" PRIu64 " ms\n",
           path, cfg.az, cfg.nendpoints, cfg.ntables, cfg.rate, cfg.interval_ns / 1000000);
    for (size_t i = 0; i < cfg.nendpoints; i++)
        printf("  endpoint %s az %s %s\n", cfg.endpoints[i].name, cfg.endpoints[i].az,
               cfg.endpoints[i].url);
    canary_config_free(&cfg);
    return 0;
}

static int cmd_sink_bench(const char *dsn, long rows, int streams)
{
    struct pgsink *s;
    struct nerr err;
    struct pgsink_opts o = {.dsn = dsn, .max_rows = (uint64_t)rows + 1, .flush_ns = 100000000,
                            .streams = streams};
    struct agg_cell *cell = calloc(1, sizeof *cell);
    if (!cell || pgsink_open(&o, &s, &err)) {
        fprintf(stderr, "nines canary sink-bench: %s\n", cell ? err.msg : "out of memory");
        free(cell);
        return 1;
    }
    hist_init(&cell->lat);
    /* A typical row: 20 probes' latencies between 1 and 8 ms (a 2 s
     * interval at 10 probes/s). */
    for (int i = 0; i < 20; i++)
        hist_record(&cell->lat, 1000000 + (uint64_t)i * 370000);
    cell->attempts = 20;
    cell->successes = 19;
    snprintf(cell->err_name[0], AGG_ERR_NAME, "connection");
    cell->err_count[0] = 1;
    double t0 = clock_mono_ns() / 1e9;
    static const char *const eps[] = {"n1", "n2", "n3"}, *const azs[] = {"az1", "az2", "az3"};
    int64_t base = (int64_t)time(NULL) * 1000 - 86400000;
    for (long i = 0; i < rows; i++) {
        struct pgsink_labels l = {azs[i % 3], eps[(i / 3) % 3], azs[(i / 3) % 3], "bench",
                                  canary_op_names[(i / 9) % COP_N]};
        struct pgsink_row *row;
        if (pgsink_row_sample(base + (i / 45) * 10000, 10000, &l, cell, &row))
            break;
        pgsink_push(s, row);
    }
    double t1 = clock_mono_ns() / 1e9;
    int rc = pgsink_close(s, 600000000000ull, &err);
    double t2 = clock_mono_ns() / 1e9;
    free(cell);
    printf("sink-bench: %ld rows formatted in %.2f s, written in %.2f s total: %.0f rows/s%s\n",
           rows, t1 - t0, t2 - t0, (double)rows / (t2 - t0), rc ? " (INCOMPLETE)" : "");
    return rc ? 1 : 0;
}

int canary_main(int argc, char **argv)
{
    /* Before any thread exists (libcurl's rule for its global init). */
    if (http_global_init()) {
        fprintf(stderr, "nines %s: cannot initialise libcurl\n", "canary");
        return 1;
    }
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"duration", required_argument, 0, 'd'},
                                         {"flush-timeout", required_argument, 0, 'f'},
                                         {"pg", required_argument, 0, 'p'},
                                         {"rows", required_argument, 0, 'r'},
                                         {"streams", required_argument, 0, 's'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *config = NULL, *pg = NULL;
    double duration = 0, flush_timeout = 10;
    long rows = 200000;
    int streams = 0;
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h")) {
        usage(stdout);
        return 0;
    }
    optind = 2;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:d:f:p:r:s:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': config = optarg; break;
        case 'd': duration = atof(optarg); break;
        case 'f': flush_timeout = atof(optarg); break;
        case 'p': pg = optarg; break;
        case 'r': rows = atol(optarg); break;
        case 's': streams = atoi(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!strcmp(sub, "run") && config)
        return cmd_run(config, duration, flush_timeout);
    if (!strcmp(sub, "lint") && config)
        return cmd_lint(config);
    if (!strcmp(sub, "sink-bench") && pg && rows > 0)
        return cmd_sink_bench(pg, rows, streams);
    usage(stderr);
    return 2;
}
