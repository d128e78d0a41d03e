/*
 * check_cli.c — `nines check`: load each history, run every checker (the
 * check.h API), print the one-screen summary (one history) or one verdict
 * line per history (several), optionally write --json and --html (one
 * history), and exit with the verdict: 0 valid, 1 invalid, 2 unknown,
 * 3 input error (docs/checkers.md). With several histories the exit code is
 * the worst of them, in the order input error > invalid > unknown > valid,
 * so a corpus of hundreds is checked in one process and one exit code.
 *
 * A history without client operations (only nemesis events, or none at
 * all, as in Knossos' own corpus) has nothing that could be wrong: it is
 * valid, and the summary says that nothing was checked.
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
            "usage: nines check [OPTIONS] HISTORY...\n"
            "\n"
            "Checks recorded histories (nines JSONL or Jepsen EDN, told by content):\n"
            "linearizability per key, lost and corrupted writes, sessions of eventually\n"
            "consistent reads. Exit code: 0 valid, 1 invalid, 2 unknown, 3 input error;\n"
            "with several histories, one verdict line each and the worst exit code\n"
            "(input error, then invalid, then unknown). A history without client\n"
            "operations is valid: there is nothing to check.\n"
            "\n"
            "  --model M          register, cas-register, kv or auto (default auto)\n"
            "  --initial VALUE    the register's initial value (default: absent, nil)\n"
            "  --json FILE        write the full result as JSON (one history only)\n"
            "  --html FILE        write a timeline of the offending key as HTML (one history)\n"
            "  --time-limit S     seconds for the linearizability search (default 60, 0 = none)\n"
            "  --memory-limit MB  search memory bound (default 1024, 0 = none)\n"
            "  --threads N        worker threads (default: online CPUs)\n"
            "  --sessions MODE    enforce (default): session anomalies are invalid;\n"
            "                     report: count them without failing\n"
            "  --quiet            no summary on stdout\n");
}

/* Exit codes ranked by how bad they are for a run over many histories. */
static int severity(int rc)
{
    switch (rc) {
    case CHK_VALID:
        return 0;
    case CHK_UNKNOWN:
        return 1;
    case CHK_INVALID:
        return 2;
    default:
        return 3; /* EXIT_INPUT */
    }
}

/* Checks one history and returns its exit code. out NULL: print nothing but
 * errors. line: one verdict line instead of the summary. */
static int check_one(const char *path, const struct chk_opts *o, const char *json, const char *html,
                     FILE *out, int line)
{
    struct nerr e;
    struct history *h = NULL;
    struct chk_result *r = NULL;
    int rc = EXIT_INPUT;
    nerr_clear(&e);
    if (history_load_file(path, &h, &e)) {
        fprintf(stderr, "nines check: %s\n", e.msg);
        if (out && line)
            fprintf(out, "%s: input error\n", path);
        return EXIT_INPUT;
    }
    if (h->nops == 0) {
        /* Knossos' verdict too: no operation, nothing that could be
         * non-linearizable, lost or stale. Reports would describe an empty
         * search, so --json/--html say so instead of drawing nothing. */
        if (out)
            fprintf(out, "%s: valid: nothing to check (no client operations; %u events)\n", path,
                    h->nevents);
        if (json || html)
            fprintf(stderr, "nines check: %s: no client operations, so no report written\n", path);
        rc = CHK_VALID;
        goto done;
    }
    if (chk_run(h, o, &r, &e)) {
        fprintf(stderr, "nines check: %s: %s\n", path, e.msg);
        if (out && line)
            fprintf(out, "%s: input error\n", path);
        goto done;
    }
    if (out && line)
        fprintf(out, "%s: %s (%zu ops on %u key%s)\n", path, chk_verdict_name(r->verdict), h->nops,
                h->nkeys, h->nkeys == 1 ? "" : "s");
    else if (out)
        chk_report_text(out, h, r);
    if (out)
        fflush(out);
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

int check_main(int argc, char **argv)
{
    static const struct option opts[] = {{"model", required_argument, NULL, 'm'},
                                         {"initial", required_argument, NULL, 'i'},
                                         {"json", required_argument, NULL, 'j'},
                                         {"html", required_argument, NULL, 'H'},
                                         {"time-limit", required_argument, NULL, 't'},
                                         {"memory-limit", required_argument, NULL, 'M'},
                                         {"threads", required_argument, NULL, 'T'},
                                         {"sessions", required_argument, NULL, 's'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
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
        case 'j':
            json = optarg;
            break;
        case 'H':
            html = optarg;
            break;
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
        case 'q':
            quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_INPUT;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_INPUT;
    }
    int n = argc - optind;
    if (n > 1 && (json || html)) {
        fprintf(stderr, "nines check: --json and --html take one history (%d given)\n", n);
        return EXIT_INPUT;
    }
    if (n == 1)
        return check_one(argv[optind], &o, json, html, quiet ? NULL : stdout, 0);
    int worst = CHK_VALID, counts[4] = {0};
    for (int i = optind; i < argc; i++) {
        int rc = check_one(argv[i], &o, NULL, NULL, quiet ? NULL : stdout, 1);
        counts[rc]++;
        if (severity(rc) > severity(worst))
            worst = rc;
    }
    if (!quiet)
        printf("nines check: %d histories: %d valid, %d invalid, %d unknown, %d input errors\n", n,
               counts[CHK_VALID], counts[CHK_INVALID], counts[CHK_UNKNOWN], counts[EXIT_INPUT]);
    return worst;
}
