/*
 * cluster_failover.c — the failover part of t/bench/cluster.sh (a benchmark
 * helper, not a test: it has no .t and prove never runs it).
 *
 *   cluster_failover --config FILE --table T --ninesd PATH [--tries N] [--timeout S]
 *
 * Against a running local cluster (`nines cluster up`), N times (default 20):
 * find through NinesAdmin.Status the leader of one partition of table T
 * (partitions in turn), pick a key of that partition, check a PutItem of it
 * succeeds through another node, `kill -9` the leader (its pid from its pid
 * file, checked to be that node's ninesd), then PutItem the key through the
 * other node every 10 ms until one succeeds: that interval is the try's
 * failover time. Restart the killed node and wait until every partition has
 * a leader again before the next try. Prints one line per try and a final
 * JSON line {"tries":N,"median_ms":...,"min_ms":...,"max_ms":...,"ms":[...]}.
 * Every wait is bounded by --timeout (default 30 s); exit 1 on any failure,
 * with the reason.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "cluster/cluster.h"
#include "proto/ddb.h"
#include "proto/av.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void nap(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Children restarted here die as zombies of this process when killed in a
 * later try: reap them. */
static void reap(void)
{
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

static json_t *merged_status(const struct cluster_conf *c, struct nerr *e)
{
    struct cluster_report *r = calloc(c->nnodes, sizeof *r);
    json_t *m = NULL;
    if (!r)
        return NULL;
    if (!cluster_status_fetch(c, 1000, r, e))
        cluster_merge(c, r, &m, e);
    for (size_t i = 0; i < c->nnodes; i++)
        if (r[i].unsupported)
            nerr_set(e, NERR_UNSUPPORTED, "%s", r[i].error);
    cluster_reports_free(r, c->nnodes);
    free(r);
    return m;
}

/* The partitions of table in m, in partition order. */
static size_t table_parts(json_t *m, const char *table, json_t **out, size_t cap)
{
    size_t i, n = 0;
    json_t *p;
    json_array_foreach(json_object_get(m, "partitions"), i, p)
    {
        const char *t = json_string_value(json_object_get(p, "table"));
        if (t && !strcmp(t, table) && n < cap)
            out[n++] = p;
    }
    return n;
}

/* A key "k<i>" that lands in partition part of nparts (store/catalog.h's
 * rule). */
static void key_for(int part, size_t nparts, char *key, size_t cap)
{
    for (unsigned long i = 0;; i++) {
        snprintf(key, cap, "k%lu", i);
        json_t *av = json_pack("{s:s}", "S", key);
        uint64_t h = av_key_hash(av);
        json_decref(av);
        if ((int)(((h >> 32) * nparts) >> 32) == part)
            return;
    }
}

static int put(struct ddb_client *cl, const char *table, const char *key, int seq)
{
    json_t *req = json_pack("{s:s, s:{s:{s:s}, s:{s:s}}}", "TableName", table, "Item", "pk", "S",
                            key, "v", "S", "failover");
    json_t *resp = NULL;
    int status = 0;
    struct nerr e = {0};
    (void)seq;
    int rc = ddb_call(cl, "PutItem", req, &status, &resp, &e);
    json_decref(req);
    json_decref(resp);
    return rc == 0 && status == 200;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *config = NULL, *table = NULL, *ninesd = NULL;
    int tries = 20;
    double timeout_s = 30;
    static const struct option lo[] = {
        {"config", required_argument, NULL, 'c'},  {"table", required_argument, NULL, 't'},
        {"ninesd", required_argument, NULL, 'n'},  {"tries", required_argument, NULL, 'r'},
        {"timeout", required_argument, NULL, 'T'}, {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'c':
            config = optarg;
            break;
        case 't':
            table = optarg;
            break;
        case 'n':
            ninesd = optarg;
            break;
        case 'r':
            tries = atoi(optarg);
            break;
        case 'T':
            timeout_s = atof(optarg);
            break;
        default:
            return 2;
        }
    }
    if (!config || !table || !ninesd || tries < 1 || tries > 1000 || timeout_s <= 0) {
        fprintf(stderr, "usage: cluster_failover --config FILE --table T --ninesd PATH "
                        "[--tries 1..1000] [--timeout S]\n");
        return 2;
    }
    struct cluster_conf *c = NULL;
    struct nerr e = {0};
    char cfg[PATH_MAX];
    if (cluster_conf_load(config, &c, &e) || !realpath(config, cfg)) {
        fprintf(stderr, "cluster_failover: %s\n", e.msg[0] ? e.msg : strerror(errno));
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    double *ms = calloc((size_t)tries, sizeof *ms);
    int rc = 1, done = 0;
    for (int t = 0; t < tries; t++) {
        json_t *m = merged_status(c, &e);
        json_t *parts[4096];
        size_t np = m ? table_parts(m, table, parts, 4096) : 0;
        if (!np) {
            fprintf(stderr, "cluster_failover: no partition of table %s in the status (%s)\n",
                    table, e.msg[0] ? e.msg : "no report");
            json_decref(m);
            goto out;
        }
        int part = t % (int)np;
        json_t *p = parts[part];
        const char *leader = json_string_value(json_object_get(p, "leader"));
        const struct cluster_node *ln = leader ? cluster_conf_node(c, leader) : NULL;
        /* Another node to write through: a member if possible (it routes
         * either way). */
        const struct cluster_node *via = NULL;
        size_t k;
        json_t *mem;
        json_array_foreach(json_object_get(p, "members"), k, mem)
        {
            const char *id = json_string_value(json_object_get(mem, "node"));
            if (!via && id && leader && strcmp(id, leader))
                via = cluster_conf_node(c, id);
        }
        for (size_t i = 0; !via && i < c->nnodes; i++)
            if (ln != &c->nodes[i])
                via = &c->nodes[i];
        pid_t pid = 0;
        int stale;
        if (!ln || !via || cluster_node_pid(ln, &pid, &stale, &e) || !pid) {
            fprintf(stderr,
                    "cluster_failover: try %d: partition %d has no local leader to kill "
                    "(leader %s)\n",
                    t, part, leader ? leader : "none");
            json_decref(m);
            goto out;
        }
        char key[32], url[300];
        key_for(part, np, key, sizeof key);
        json_decref(m);
        snprintf(url, sizeof url, "http://%s", via->api);
        struct ddb_client_options o = {.endpoint = url,
                                       .timeout_ms = 1000,
                                       .access_key_id = c->access_key_id,
                                       .secret_access_key = c->secret_access_key,
                                       .region = c->region};
        struct ddb_client *cl = NULL;
        if (ddb_client_new(&o, &cl, &e)) {
            fprintf(stderr, "cluster_failover: %s\n", e.msg);
            goto out;
        }
        if (!put(cl, table, key, t)) {
            fprintf(stderr,
                    "cluster_failover: try %d: a write to %s through %s fails before "
                    "any kill\n",
                    t, key, via->id);
            ddb_client_free(cl);
            goto out;
        }
        double t0 = now_ms(), deadline = t0 + timeout_s * 1e3;
        kill(pid, SIGKILL);
        int ok = 0;
        while (!(ok = put(cl, table, key, t)) && now_ms() < deadline)
            nap(10);
        double dt = now_ms() - t0;
        ddb_client_free(cl);
        if (!ok) {
            fprintf(stderr, "cluster_failover: try %d: no successful write within %.0f s\n", t,
                    timeout_s);
            goto out;
        }
        ms[done++] = dt;
        printf("try %2d: partition %d, killed leader %s (pid %d), first write through %s "
               "after %.0f ms\n",
               t, part, ln->id, (int)pid, via->id, dt); /* leader went with m */
        fflush(stdout);
        /* Restart it and wait until every partition is led again. */
        for (int i = 0; i < 200 && cluster_pid_is_node(pid, ln->id); i++)
            nap(10);
        reap();
        pid_t np2;
        if (cluster_node_start(ninesd, cfg, ln, &np2, &e)) {
            fprintf(stderr, "cluster_failover: restarting %s: %s\n", ln->id, e.msg);
            goto out;
        }
        int healthy = 0;
        for (double end = now_ms() + timeout_s * 1e3; !healthy && now_ms() < end;) {
            json_t *h = merged_status(c, &e);
            size_t up = 0, i;
            json_t *n;
            json_array_foreach(json_object_get(h, "nodes"), i, n) up +=
                !json_object_get(n, "error");
            healthy = h && up == c->nnodes && cluster_merged_healthy(h);
            json_decref(h);
            if (!healthy)
                nap(100);
        }
        if (!healthy) {
            fprintf(stderr, "cluster_failover: not healthy %.0f s after restarting %s\n", timeout_s,
                    ln->id);
            goto out;
        }
    }
    rc = 0;
out:
    if (done) {
        double *s = malloc((size_t)done * sizeof *s);
        memcpy(s, ms, (size_t)done * sizeof *s);
        qsort(s, (size_t)done, sizeof *s, cmp_double);
        double med = done % 2 ? s[done / 2] : (s[done / 2 - 1] + s[done / 2]) / 2;
        printf("{\"tries\":%d,\"median_ms\":%.1f,\"min_ms\":%.1f,\"max_ms\":%.1f,\"ms\":[", done,
               med, s[0], s[done - 1]);
        for (int i = 0; i < done; i++)
            printf("%s%.1f", i ? "," : "", ms[i]);
        printf("]}\n");
        free(s);
    }
    reap();
    free(ms);
    cluster_conf_free(c);
    curl_global_cleanup();
    return rc;
}
