/*
 * check.c — `nines check`: load a history, run every checker, print the
 * one-screen summary, optionally write --json and --html, and exit with the
 * verdict: 0 valid, 1 invalid, 2 unknown, 3 input error (docs/checkers.md).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkers/check.h"
#include "checkers/history.h"
#include "checkers/report.h"

#define EXIT_INPUT 3

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nines check [OPTIONS] HISTORY\n"
            "\n"
            "Checks a recorded history (nines JSONL or Jepsen EDN, told by content):\n"
            "linearizability per key, lost and corrupted writes, sessions of eventually\n"
            "consistent reads. Exit code: 0 valid, 1 invalid, 2 unknown, 3 input error.\n"
            "\n"
            "  --model M          register, cas-register, kv or auto (default auto)\n"
            "  --initial VALUE    the register's initial value (default: absent, nil)\n"
            "  --json FILE        write the full result as JSON\n"
            "  --html FILE        write a timeline of the offending key as HTML\n"
            "  --time-limit S     seconds for the linearizability search (default 60, 0 = none)\n"
            "  --memory-limit MB  search memory bound (default 1024, 0 = none)\n"
            "  --threads N        worker threads (default: online CPUs)\n"
            "  --sessions MODE    enforce (default): session anomalies are invalid;\n"
            "                     report: count them without failing\n"
            "  --quiet            no summary on stdout\n");
}

int check_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},       {"initial", required_argument, NULL, 'i'},
        {"json", required_argument, NULL, 'j'},        {"html", required_argument, NULL, 'H'},
        {"time-limit", required_argument, NULL, 't'},  {"memory-limit", required_argument, NULL, 'M'},
        {"threads", required_argument, NULL, 'T'},     {"sessions", required_argument, NULL, 's'},
        {"quiet", no_argument, NULL, 'q'},             {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    struct chk_opts o;
    const char *json = NULL, *html = NULL;
    int quiet = 0, c;
    char *end;
    memset(&o, 0, sizeof o);
    o.lin.model = LIN_AUTO;
    o.lin.time_limit = 60;
    o.lin.memory_limit = (size_t)1024 << 20;
    o.sessions_enforce = 1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "hq", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            if (lin_model_parse(optarg, &o.lin.model)) {
                fprintf(stderr, "nines check: unknown model '%s'\n", optarg);
                return EXIT_INPUT;
            }
            break;
        case 'i':
            if (strcmp(optarg, "nil")) {
                o.initial = optarg;
                o.initial_len = strlen(optarg);
            }
            break;
        case 'j': json = optarg; break;
        case 'H': html = optarg; break;
        case 't':
            o.lin.time_limit = strtod(optarg, &end);
            if (*end || o.lin.time_limit < 0) {
                fprintf(stderr, "nines check: bad --time-limit '%s'\n", optarg);
                return EXIT_INPUT;
            }
            break;
        case 'M': {
            double mb = strtod(optarg, &end);
            if (*end || mb < 0) {
                fprintf(stderr, "nines check: bad --memory-limit '%s'\n", optarg);
                return EXIT_INPUT;
            }
            o.lin.memory_limit = (size_t)(mb * 1024 * 1024);
            break;
        }
        case 'T':
            o.lin.threads = (int)strtol(optarg, &end, 10);
            if (*end || o.lin.threads < 0) {
                fprintf(stderr, "nines check: bad --threads '%s'\n", optarg);
                return EXIT_INPUT;
            }
            break;
        case 's':
            if (!strcmp(optarg, "enforce")) {
                o.sessions_enforce = 1;
            } else if (!strcmp(optarg, "report")) {
                o.sessions_enforce = 0;
            } else {
                fprintf(stderr, "nines check: --sessions is enforce or report\n");
                return EXIT_INPUT;
            }
            break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return EXIT_INPUT;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return EXIT_INPUT;
    }
    struct nerr e;
    struct history *h = NULL;
    struct chk_result *r = NULL;
    int rc = EXIT_INPUT;
    nerr_clear(&e);
    if (history_load_file(argv[optind], &h, &e)) {
        fprintf(stderr, "nines check: %s\n", e.msg);
        return EXIT_INPUT;
    }
    if (h->nops == 0) {
        fprintf(stderr, "nines check: %s: the history has no client operations\n", argv[optind]);
        goto done;
    }
    if (chk_run(h, &o, &r, &e)) {
        fprintf(stderr, "nines check: %s\n", e.msg);
        goto done;
    }
    if (!quiet)
        chk_report_text(stdout, h, r);
    fflush(stdout);
    if (json && chk_report_json(json, h, r, &e)) {
        fprintf(stderr, "nines check: %s\n", e.msg);
        goto done;
    }
    if (html && chk_report_html(html, h, r, &e)) {
        fprintf(stderr, "nines check: %s\n", e.msg);
        goto done;
    }
    rc = (int)r->verdict;
done:
    chk_result_free(r);
    history_free(h);
    return rc;
}
