/*
 * cluster_cli.c — `nines cluster up|down|status --config FILE`; the library
 * behind it is cluster/cluster.h, the user's guide docs/cluster.md.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "cluster/cluster.h"
#include "cluster/certs.h"
#include "cluster/localnode.h"
#include "lib/clock.h"
#include "net/http.h"

#define UP_DEFAULT_TIMEOUT_S 30.0
#define DOWN_DEFAULT_TIMEOUT_S 10.0
#define STATUS_DEFAULT_TIMEOUT_S 2.0
#define MOVE_DEFAULT_TIMEOUT_S 600.0

struct cli {
    const char *cmd;
    const char *config;
    const char *ninesd;
    const char *out;       /* certs: the output directory */
    const char *node, *to; /* replace, decommission */
    int parallel;
    double timeout_s;
    int json;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nines cluster up     --config FILE [--ninesd PATH] [--timeout S]\n"
            "       nines cluster down   --config FILE [--timeout S]\n"
            "       nines cluster status --config FILE [--json] [--timeout S]\n"
            "       nines cluster certs  --config FILE --out DIR\n"
            "       nines cluster replace NODE --config FILE [--to NODE2] [--parallel N] "
            "[--timeout S]\n"
            "       nines cluster decommission NODE --config FILE [--parallel N] [--timeout S]\n"
            "\n"
            "  up      start one ninesd per node of FILE (loopback addresses only), detached,\n"
            "          logging to DATA/ninesd.log with the pid in DATA/ninesd.pid; wait (default\n"
            "          30 s) until every node answers and the metadata group has a leader\n"
            "  down    stop the nodes named by their pid files (SIGTERM, then SIGKILL after\n"
            "          the timeout, default 10 s); only a process that is that node's ninesd\n"
            "          is ever signalled\n"
            "  status  ask every node of FILE (local or not; per-node timeout default 2 s) and\n"
            "          show each replication group: members, roles, leader, term, lease,\n"
            "          commit/applied per replica and lag; --json for scripts\n"
            "  certs   create a CA (DIR/ca.pem, DIR/ca.key) and a certificate and key per\n"
            "          node (DIR/ID.pem, DIR/ID.key; keys 0600), and DIR/cluster.yaml: FILE\n"
            "          with mutual TLS between the nodes and HTTPS on the API\n"
            "  replace, decommission\n"
            "          move every partition replica NODE holds to other nodes (replace --to:\n"
            "          to NODE2; else the placement picks, keeping the AZ spread), each by\n"
            "          joint consensus, at most N (default 4) partitions at once; NODE may be\n"
            "          down. Waits until NODE holds none (default 600 s)\n"
            "\n"
            "Exit status: 0 success (status: every partition has a leader), 1 failure\n"
            "(status: some partition has none, or no node reported), 2 usage or cluster-file\n"
            "errors. See docs/cluster.md.\n");
}

static int parse_cli(int argc, char **argv, struct cli *o)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"ninesd", required_argument, NULL, 'n'},
        {"timeout", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {"out", required_argument, NULL, 'o'},
        {"to", required_argument, NULL, 'T'},
        {"parallel", required_argument, NULL, 'p'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->timeout_s = -1;
    if (argc < 2) {
        fprintf(stderr, "nines cluster: missing subcommand (up, down, status, certs, replace or "
                        "decommission)\n");
        usage(stderr);
        return 2;
    }
    o->cmd = argv[1];
    if (!strcmp(o->cmd, "--help") || !strcmp(o->cmd, "-h")) {
        usage(stdout);
        return 1;
    }
    int moves = !strcmp(o->cmd, "replace") || !strcmp(o->cmd, "decommission");
    if (strcmp(o->cmd, "up") && strcmp(o->cmd, "down") && strcmp(o->cmd, "status") &&
        strcmp(o->cmd, "certs") && !moves) {
        fprintf(stderr,
                "nines cluster: unknown subcommand '%s' (up, down, status, certs, replace or "
                "decommission)\n",
                o->cmd);
        usage(stderr);
        return 2;
    }
    optind = 1;
    opterr = 0;
    int ch;
    /* argv + 1: getopt sees the subcommand as its program name. */
    while ((ch = getopt_long(argc - 1, argv + 1, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            o->config = optarg;
            break;
        case 'n':
            if (strcmp(o->cmd, "up")) {
                fprintf(stderr, "nines cluster %s: --ninesd is an option of up\n", o->cmd);
                return 2;
            }
            o->ninesd = optarg;
            break;
        case 't': {
            char *end;
            errno = 0;
            double v = strtod(optarg, &end);
            if (errno || end == optarg || *end || !isfinite(v) || v <= 0 || v > 3600) {
                fprintf(stderr, "nines cluster %s: --timeout '%s': seconds, > 0 and <= 3600\n",
                        o->cmd, optarg);
                return 2;
            }
            o->timeout_s = v;
            break;
        }
        case 'j':
            if (strcmp(o->cmd, "status")) {
                fprintf(stderr, "nines cluster %s: --json is an option of status\n", o->cmd);
                return 2;
            }
            o->json = 1;
            break;
        case 'o':
            if (strcmp(o->cmd, "certs")) {
                fprintf(stderr, "nines cluster %s: --out is an option of certs\n", o->cmd);
                return 2;
            }
            o->out = optarg;
            break;
        case 'T':
            if (strcmp(o->cmd, "replace")) {
                fprintf(stderr, "nines cluster %s: --to is an option of replace\n", o->cmd);
                return 2;
            }
            o->to = optarg;
            break;
        case 'p': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (!moves || end == optarg || *end || v < 1 || v > 64) {
                fprintf(stderr,
                        "nines cluster %s: --parallel '%s': 1..64, for replace and "
                        "decommission\n",
                        o->cmd, optarg);
                return 2;
            }
            o->parallel = (int)v;
            break;
        }
        case 'h':
            usage(stdout);
            return 1;
        default:
            fprintf(stderr, "nines cluster %s: unknown option or missing value: '%s'\n", o->cmd,
                    argv[optind]);
            usage(stderr);
            return 2;
        }
    }
    if (moves && optind < argc - 1)
        o->node = argv[1 + optind++];
    if (optind < argc - 1) {
        fprintf(stderr, "nines cluster %s: unexpected argument '%s'\n", o->cmd, argv[optind + 1]);
        return 2;
    }
    if (moves && !o->node) {
        fprintf(stderr, "nines cluster %s: which node? (nines cluster %s NODE --config FILE)\n",
                o->cmd, o->cmd);
        return 2;
    }
    if (!o->parallel)
        o->parallel = 4;
    if (!o->config) {
        fprintf(stderr, "nines cluster %s: --config FILE is required\n", o->cmd);
        return 2;
    }
    if (!strcmp(o->cmd, "certs") && !o->out) {
        fprintf(stderr, "nines cluster certs: --out DIR is required\n");
        return 2;
    }
    if (o->timeout_s < 0)
        o->timeout_s = !strcmp(o->cmd, "up")     ? UP_DEFAULT_TIMEOUT_S
                       : !strcmp(o->cmd, "down") ? DOWN_DEFAULT_TIMEOUT_S
                       : moves                   ? MOVE_DEFAULT_TIMEOUT_S
                                                 : STATUS_DEFAULT_TIMEOUT_S;
    return 0;
}

/* The last line of a node's log, to say why it died. */
static void last_log_line(const struct cluster_node *n, char *out, size_t cap)
{
    char path[4200], buf[2048];
    out[0] = '\0';
    if (cluster_logfile_path(n, path, sizeof path, NULL))
        return;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(buf, sizeof buf, f)) {
        size_t n = strlen(buf);
        if (buf[0] == '\n')
            continue;
        if (n >= cap)
            n = cap - 1;
        memcpy(out, buf, n);
        out[n] = '\0';
    }
    fclose(f);
    out[strcspn(out, "\n")] = '\0';
}

/* The meta group's entry in a merged view, or NULL. */
static json_t *meta_group(json_t *merged)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(merged, "partitions"), i, p)
    {
        const char *g = json_string_value(json_object_get(p, "group"));
        if (g && !strcmp(g, "meta"))
            return p;
    }
    return NULL;
}

static int cmd_up(const struct cli *o, const struct cluster_conf *c)
{
    struct nerr e = {0};
    char ninesd[PATH_MAX], cfg[PATH_MAX], why[600] = "";
    pid_t *started = calloc(c->nnodes, sizeof *started);
    struct cluster_report *reps = calloc(c->nnodes, sizeof *reps);
    size_t nstarted = 0, nrunning = 0;
    int rc = 1;
    if (!started || !reps) {
        fprintf(stderr, "nines cluster up: out of memory\n");
        goto done;
    }
    if (cluster_check_local(c, &e)) {
        fprintf(stderr, "nines cluster up: %s\n", e.msg);
        rc = 2;
        goto done;
    }
    if (o->ninesd) {
        snprintf(ninesd, sizeof ninesd, "%s", o->ninesd);
        if (access(ninesd, X_OK)) {
            fprintf(stderr, "nines cluster up: --ninesd %s: %s\n", ninesd, strerror(errno));
            rc = 2;
            goto done;
        }
    } else if (localnode_ninesd_path(ninesd, sizeof ninesd, &e)) {
        fprintf(stderr, "nines cluster up: no ninesd next to this nines (%s); use --ninesd\n",
                e.msg);
        goto done;
    }
    /* The nodes get an absolute path: the file must mean the same to a
     * restarted node whatever its working directory. */
    if (!realpath(o->config, cfg)) {
        fprintf(stderr, "nines cluster up: %s: %s\n", o->config, strerror(errno));
        rc = 2;
        goto done;
    }
    for (size_t i = 0; i < c->nnodes; i++) {
        const struct cluster_node *n = &c->nodes[i];
        int r = cluster_node_start(ninesd, cfg, n, &started[i], &e);
        if (r == NERR_EXISTS) {
            fprintf(stderr, "nines cluster up: %s; left as it is\n", e.msg);
            nrunning++;
        } else if (r) {
            fprintf(stderr, "nines cluster up: node %s: %s\n", n->id, e.msg);
            goto left_running;
        } else {
            nstarted++;
        }
    }
    uint64_t deadline = (uint64_t)clock_mono_ms() + (uint64_t)(o->timeout_s * 1000);
    for (;;) {
        for (size_t i = 0; i < c->nnodes; i++) {
            int st;
            if (started[i] && cluster_child_exited(started[i], &st)) {
                char line[600];
                last_log_line(&c->nodes[i], line, sizeof line);
                char log[4200];
                cluster_logfile_path(&c->nodes[i], log, sizeof log, NULL);
                fprintf(stderr,
                        "nines cluster up: node %s (pid %d) exited with status %d "
                        "during start-up; %s says: %s\n",
                        c->nodes[i].id, (int)started[i], st, log, line);
                started[i] = 0;
                goto left_running;
            }
        }
        uint64_t now = (uint64_t)clock_mono_ms();
        long left = now < deadline ? (long)(deadline - now) : 0;
        if (cluster_status_fetch(c, left < 1000 ? (left > 100 ? left : 100) : 1000, reps, &e)) {
            fprintf(stderr, "nines cluster up: %s\n", e.msg);
            goto left_running;
        }
        json_t *merged = NULL;
        int ready = 1, unsupported = 0;
        why[0] = '\0';
        for (size_t i = 0; i < c->nnodes; i++) {
            if (reps[i].unsupported) {
                unsupported = 1;
                snprintf(why, sizeof why, "node %s: %s", c->nodes[i].id, reps[i].error);
            }
            if (!reps[i].status) {
                ready = 0;
                if (!why[0])
                    snprintf(why, sizeof why, "node %s: %s", c->nodes[i].id, reps[i].error);
            }
        }
        if (cluster_merge(c, reps, &merged, &e)) {
            fprintf(stderr, "nines cluster up: %s\n", e.msg);
            cluster_reports_free(reps, c->nnodes);
            goto left_running;
        }
        json_t *meta = meta_group(merged);
        const char *leader = json_string_value(json_object_get(meta, "leader"));
        for (size_t i = 0; i < c->nnodes; i++) {
            json_t *ne = json_array_get(json_object_get(merged, "nodes"), i);
            const char *err = json_string_value(json_object_get(ne, "error"));
            if (reps[i].status && err) {
                ready = 0; /* a node answering as another one is not ready */
                if (!why[0])
                    snprintf(why, sizeof why, "node %s: %s", c->nodes[i].id, err);
            }
        }
        if (ready && !leader && !why[0])
            snprintf(why, sizeof why, "the metadata group has %s",
                     meta ? "no leader" : "no replica");
        if (ready && leader) {
            printf("cluster %s up: %zu nodes (%zu started, %zu already running), metadata leader "
                   "%s in term %" JSON_INTEGER_FORMAT "\n",
                   c->name, c->nnodes, nstarted, nrunning, leader,
                   json_integer_value(json_object_get(meta, "term")));
            json_decref(merged);
            cluster_reports_free(reps, c->nnodes);
            rc = 0;
            goto done;
        }
        json_decref(merged);
        cluster_reports_free(reps, c->nnodes);
        if (unsupported) {
            /* Waiting cannot help: the nodes will never answer the call. */
            fprintf(stderr, "nines cluster up: cannot confirm the cluster is up: %s\n", why);
            goto left_running;
        }
        if ((uint64_t)clock_mono_ms() >= deadline) {
            fprintf(stderr, "nines cluster up: not ready after %.1f s: %s\n", o->timeout_s, why);
            goto left_running;
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
left_running:
    /* Nodes that did start stay up, so their logs and state can be looked
     * at; say how to stop them. */
    if (nstarted)
        fprintf(stderr,
                "nines cluster up: nodes that started are left running; "
                "`nines cluster down --config %s` stops them\n",
                o->config);
done:
    free(started);
    free(reps);
    return rc;
}

static int cmd_down(const struct cli *o, const struct cluster_conf *c)
{
    struct nerr e = {0};
    if (cluster_stop(c, (long)(o->timeout_s * 1000), stdout, &e)) {
        fprintf(stderr, "nines cluster down: %s\n", e.msg);
        return 1;
    }
    return 0;
}

static int cmd_status(const struct cli *o, const struct cluster_conf *c)
{
    struct nerr e = {0};
    struct cluster_report *reps = calloc(c->nnodes, sizeof *reps);
    json_t *merged = NULL;
    int rc = 1;
    if (!reps) {
        fprintf(stderr, "nines cluster status: out of memory\n");
        return 1;
    }
    if (cluster_status_fetch(c, (long)(o->timeout_s * 1000), reps, &e) ||
        cluster_merge(c, reps, &merged, &e)) {
        fprintf(stderr, "nines cluster status: %s\n", e.msg);
        goto done;
    }
    if (o->json) {
        char *text = json_dumps(merged, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!text) {
            fprintf(stderr, "nines cluster status: out of memory\n");
            goto done;
        }
        printf("%s\n", text);
        free(text);
    } else {
        cluster_status_print(merged, stdout);
    }
    /* The text view already shows it; JSON readers get it on stderr. */
    for (size_t i = 0; o->json && i < c->nnodes; i++)
        if (reps[i].unsupported) {
            fprintf(stderr, "nines cluster status: node %s: %s\n", c->nodes[i].id, reps[i].error);
        }
    rc = cluster_merged_healthy(merged) ? 0 : 1;
done:
    json_decref(merged);
    cluster_reports_free(reps, c->nnodes);
    free(reps);
    return rc;
}

int cluster_main(int argc, char **argv)
{
    struct cli o;
    int rc = parse_cli(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : rc; /* 1 here: --help was printed */
    struct cluster_conf *c = NULL;
    struct nerr e = {0};
    if (cluster_conf_load(o.config, &c, &e)) {
        fprintf(stderr, "nines cluster %s: %s\n", o.cmd, e.msg);
        return 2;
    }
    if (!strcmp(o.cmd, "certs")) {
        rc = 0;
        if (certs_make_cluster(c, o.out, &e)) {
            fprintf(stderr, "nines cluster certs: %s\n", e.msg);
            rc = 1;
        } else {
            printf("wrote %s/ca.pem, %s/ca.key, a certificate and key per node (%zu) and "
                   "%s/cluster.yaml\n",
                   o.out, o.out, c->nnodes, o.out);
        }
        cluster_conf_free(c);
        return rc;
    }
    if (http_global_init()) {
        fprintf(stderr, "nines cluster: cannot initialise libcurl\n");
        cluster_conf_free(c);
        return 1;
    }
    if (!strcmp(o.cmd, "up"))
        rc = cmd_up(&o, c);
    else if (!strcmp(o.cmd, "down"))
        rc = cmd_down(&o, c);
    else if (o.node)
        rc = cluster_replace_run(c, o.node, o.to, o.parallel, o.timeout_s, stdout);
    else
        rc = cmd_status(&o, c);
    curl_global_cleanup();
    cluster_conf_free(c);
    return rc;
}
