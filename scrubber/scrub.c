/*
 * scrub.c — `nines scrub`, the live compare of replicas (scrub.h).
 */
#include "scrubber/scrub.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/err.h"
#include "proto/admin.h"
#include "proto/clusterfile.h"
#include "proto/ddb.h"

#define MAX_TABLES 64
#define MAX_MEMBERS 8

struct opts {
    const char *cluster, *json;
    const char *tables[MAX_TABLES];
    int ntables;
    double timeout_s;
};

struct replica {
    int node;     /* index in the cluster file; -1: not in it */
    int answered; /* its ScrubDigest came back */
    int has_digest;
    char fp[65];
    long long items, lsn;
    char why[200]; /* undecided: why */
};

struct part {
    char *table;
    int partition;
    char group[64];
    int nmembers;
    char members[MAX_MEMBERS][64];
    struct replica r[MAX_MEMBERS];
    long long lsn;   /* the marker's, 0 when none was placed */
    char why[700];   /* the marker could not be placed: why */
    int majority;    /* index of a replica of the agreeing majority; -1 none */
    json_t *buckets; /* findings' differing buckets per replica (array of arrays) */
};

struct run {
    const struct opts *o;
    struct cluster_conf *conf;
    char id[64];
    int *node_down; /* per cluster node: its status did not come */
    struct part *parts;
    size_t nparts;
    size_t next; /* the next partition a worker takes */
    pthread_mutex_t mu;
    int64_t deadline_ms; /* clock_mono_ms */
};

static void usage(FILE *f)
{
    fprintf(f, "usage: nines scrub --cluster FILE [--table T ...] [--json FILE] [--timeout S]\n"
               "\n"
               "Places a scrub marker in every partition's log and compares the digest each\n"
               "replica recorded at that index (docs/scrub.md).\n"
               "\n"
               "  --cluster FILE   the cluster file (nodes, credentials, tls)\n"
               "  --table T        only this table (repeatable; default: every table)\n"
               "  --json FILE      write the report as JSON to FILE\n"
               "  --timeout S      how long a replica may take to apply the marker (default 30)\n"
               "\n"
               "Exit status: 0 every replica of every partition agrees, 1 a finding,\n"
               "2 something could not be decided (named in the report) or bad usage.\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        {"cluster", required_argument, NULL, 'c'}, {"table", required_argument, NULL, 't'},
        {"json", required_argument, NULL, 'j'},    {"timeout", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    memset(o, 0, sizeof *o);
    o->timeout_s = 30;
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'c':
            o->cluster = optarg;
            break;
        case 't':
            if (o->ntables == MAX_TABLES) {
                fprintf(stderr, "nines scrub: at most %d --table options\n", MAX_TABLES);
                return 2;
            }
            o->tables[o->ntables++] = optarg;
            break;
        case 'j':
            o->json = optarg;
            break;
        case 'T': {
            char *end;
            errno = 0;
            double v = strtod(optarg, &end);
            if (errno || end == optarg || *end || !isfinite(v) || v <= 0 || v > 86400) {
                fprintf(stderr, "nines scrub: --timeout '%s': seconds, > 0 and <= 86400\n", optarg);
                return 2;
            }
            o->timeout_s = v;
            break;
        }
        case 'h':
            usage(stdout);
            return 1;
        default:
            fprintf(stderr, "nines scrub: unknown option or missing value: '%s'\n",
                    argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "nines scrub: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!o->cluster) {
        fprintf(stderr, "nines scrub: --cluster FILE is required\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

static struct ddb_client *client_of(const struct run *run, int node, struct nerr *err)
{
    char url[512];
    const struct cluster_conf *c = run->conf;
    if (cluster_conf_api_url(c, c->nodes[node].api, url, sizeof url) < 0) {
        nerr_set(err, NERR_INVALID, "node %s: api address too long", c->nodes[node].id);
        return NULL;
    }
    struct ddb_client_options co = {
        .endpoint = url,
        .access_key_id = c->auth ? c->access_key_id : NULL,
        .secret_access_key = c->auth ? c->secret_access_key : NULL,
        .region = c->region,
        .timeout_ms = 10000,
        .ca_file = c->tls_api ? c->tls_ca : NULL,
    };
    struct ddb_client *cl = NULL;
    return ddb_client_new(&co, &cl, err) ? NULL : cl;
}

static int node_index(const struct cluster_conf *c, const char *id)
{
    for (size_t i = 0; i < c->nnodes; i++)
        if (!strcmp(c->nodes[i].id, id))
            return (int)i;
    return -1;
}

static int wanted(const struct opts *o, const char *table)
{
    if (!o->ntables)
        return 1;
    for (int i = 0; i < o->ntables; i++)
        if (!strcmp(o->tables[i], table))
            return 1;
    return 0;
}

/* Every node's status; the partitions (of the wanted tables) and their
 * members from the first node that reports each. */
static int discover(struct run *run, struct nerr *err)
{
    const struct cluster_conf *c = run->conf;
    size_t cap = 0;
    for (size_t i = 0; i < c->nnodes; i++) {
        struct nerr e = {0};
        struct ddb_client *cl = client_of(run, (int)i, &e);
        json_t *resp = NULL, *req = json_object();
        int st = 0;
        struct admin_status s = {0};
        if (!cl || ddb_call(cl, "NinesAdmin.Status", req, &st, &resp, &e) || st != 200 ||
            admin_status_from_json(resp, &s, &e)) {
            run->node_down[i] = 1;
            fprintf(stderr, "nines scrub: node %s did not report its status: %s\n", c->nodes[i].id,
                    e.msg[0] ? e.msg
                    : cl     ? ddb_client_error_type(cl)
                             : "no client");
        }
        for (size_t g = 0; !run->node_down[i] && g < s.ngroups; g++) {
            const struct admin_group *ag = &s.groups[g];
            if (!ag->table || ag->partition < 0 || !wanted(run->o, ag->table))
                continue;
            int seen = 0;
            for (size_t k = 0; k < run->nparts && !seen; k++)
                seen = !strcmp(run->parts[k].group, ag->group);
            if (seen)
                continue;
            if (run->nparts == cap) {
                size_t nc = cap ? cap * 2 : 64;
                struct part *np = realloc(run->parts, nc * sizeof *np);
                if (!np) {
                    admin_status_clear(&s);
                    json_decref(resp);
                    json_decref(req);
                    ddb_client_free(cl);
                    return nerr_set(err, NERR_NOMEM, "out of memory");
                }
                run->parts = np;
                cap = nc;
            }
            struct part *p = &run->parts[run->nparts++];
            memset(p, 0, sizeof *p);
            p->table = strdup(ag->table);
            p->partition = (int)ag->partition;
            p->majority = -1;
            snprintf(p->group, sizeof p->group, "%s", ag->group);
            for (size_t m = 0; m < ag->nmembers && p->nmembers < MAX_MEMBERS; m++) {
                snprintf(p->members[p->nmembers], sizeof p->members[0], "%s", ag->members[m]);
                p->r[p->nmembers].node = node_index(c, ag->members[m]);
                p->nmembers++;
            }
        }
        admin_status_clear(&s);
        json_decref(resp);
        json_decref(req);
        ddb_client_free(cl);
    }
    return 0;
}

static json_t *part_req(const struct run *run, const struct part *p)
{
    return json_pack("{s:s,s:i,s:s}", "TableName", p->table, "Partition", p->partition, "Id",
                     run->id);
}

/* The buckets where replica `a`'s marker differs from `b`'s. */
static json_t *bucket_diff(struct ddb_client *ca, struct ddb_client *cb, json_t *req)
{
    json_object_set_new(req, "Buckets", json_true());
    json_t *ra = NULL, *rb = NULL, *out = NULL;
    int sa = 0, sb = 0;
    struct nerr e = {0};
    if (!ddb_call(ca, "NinesAdmin.ScrubDigest", req, &sa, &ra, &e) && sa == 200 &&
        !ddb_call(cb, "NinesAdmin.ScrubDigest", req, &sb, &rb, &e) && sb == 200) {
        json_t *ba = json_object_get(ra, "Buckets"), *bb = json_object_get(rb, "Buckets");
        out = json_array();
        for (size_t i = 0; i < json_array_size(ba) && i < json_array_size(bb); i++) {
            const char *x = json_string_value(json_array_get(ba, i)),
                       *y = json_string_value(json_array_get(bb, i));
            if (!x || !y || strcmp(x, y))
                json_array_append_new(out, json_integer((json_int_t)i));
        }
    }
    json_decref(ra);
    json_decref(rb);
    json_object_del(req, "Buckets");
    return out;
}

static void scrub_part(struct run *run, struct part *p, struct ddb_client **cls)
{
    const struct cluster_conf *c = run->conf;
    json_t *req = part_req(run, p);
    if (!req) {
        snprintf(p->why, sizeof p->why, "out of memory");
        return;
    }
    /* 1. The marker, through the first member that takes it; a partition
     * between leaders (a node just restarted) is tried again, every
     * member in turn, until the deadline. */
    char whys[512] = "";
    for (int round = 0; !p->lsn; round++) {
        whys[0] = 0;
        for (int m = 0; m < p->nmembers && !p->lsn; m++) {
            int n = p->r[m].node;
            if (n < 0 || run->node_down[n] || !cls[n])
                continue;
            json_t *resp = NULL;
            int st = 0;
            struct nerr e = {0};
            if (!ddb_call(cls[n], "NinesAdmin.ScrubMark", req, &st, &resp, &e) && st == 200) {
                p->lsn = json_integer_value(json_object_get(resp, "Lsn"));
            } else {
                const char *msg = json_string_value(json_object_get(resp, "message"));
                snprintf(whys + strlen(whys), sizeof whys - strlen(whys), "%s%s: %.60s%s%.80s",
                         whys[0] ? "; " : "", c->nodes[n].id,
                         e.msg[0] ? e.msg : ddb_client_error_type(cls[n]) ?: "?", msg ? ": " : "",
                         msg ? msg : "");
            }
            json_decref(resp);
        }
        if (p->lsn || clock_mono_ms() > run->deadline_ms)
            break;
        usleep(round < 10 ? 100000 : 500000);
    }
    if (!p->lsn) {
        snprintf(p->why, sizeof p->why, "no member placed the scrub marker (%s)",
                 whys[0] ? whys : "no member reachable");
        json_decref(req);
        return;
    }
    /* 2. Every member's digest at the marker. */
    for (int m = 0; m < p->nmembers; m++) {
        struct replica *r = &p->r[m];
        if (r->node < 0) {
            snprintf(r->why, sizeof r->why, "not in the cluster file");
            continue;
        }
        if (run->node_down[r->node] || !cls[r->node]) {
            snprintf(r->why, sizeof r->why, "node unreachable");
            continue;
        }
        for (;;) {
            json_t *resp = NULL;
            int st = 0;
            struct nerr e = {0};
            int rc = ddb_call(cls[r->node], "NinesAdmin.ScrubDigest", req, &st, &resp, &e);
            if (!rc && st == 200) {
                r->answered = 1;
                r->has_digest = json_is_true(json_object_get(resp, "HasDigest"));
                r->items = json_integer_value(json_object_get(resp, "Items"));
                r->lsn = json_integer_value(json_object_get(resp, "Lsn"));
                snprintf(r->fp, sizeof r->fp, "%s",
                         json_string_value(json_object_get(resp, "Fingerprint")) ?: "");
                json_decref(resp);
                if (!r->has_digest) {
                    r->answered = 0;
                    snprintf(r->why, sizeof r->why, "the replica kept no digest at the marker");
                }
                break;
            }
            const char *et = rc ? e.msg : ddb_client_error_type(cls[r->node]);
            int not_yet = !rc && st == 400 && et && strstr(et, "ResourceNotFound");
            if (!not_yet || clock_mono_ms() > run->deadline_ms) {
                snprintf(r->why, sizeof r->why, "%.180s",
                         not_yet ? "did not apply the scrub marker in time"
                                 : (et ? et : "no answer"));
                json_decref(resp);
                break;
            }
            json_decref(resp);
            usleep(20000);
        }
    }
    /* 3. Compare. */
    int best = -1, best_n = 0;
    for (int m = 0; m < p->nmembers; m++) {
        if (!p->r[m].answered)
            continue;
        int n = 0;
        for (int k = 0; k < p->nmembers; k++)
            n += p->r[k].answered && !strcmp(p->r[k].fp, p->r[m].fp);
        if (n > best_n) {
            best_n = n;
            best = m;
        }
    }
    if (best >= 0 && best_n * 2 > p->nmembers)
        p->majority = best;
    p->buckets = json_array();
    for (int m = 0; m < p->nmembers; m++) {
        json_t *b = NULL;
        if (p->majority >= 0 && p->r[m].answered && strcmp(p->r[m].fp, p->r[best].fp))
            b = bucket_diff(cls[p->r[best].node], cls[p->r[m].node], req);
        json_array_append_new(p->buckets, b ? b : json_null());
    }
    json_decref(req);
}

static void *worker(void *arg)
{
    struct run *run = arg;
    size_t nn = run->conf->nnodes;
    struct ddb_client **cls = calloc(nn, sizeof *cls);
    for (size_t i = 0; cls && i < nn; i++) {
        struct nerr e = {0};
        if (!run->node_down[i])
            cls[i] = client_of(run, (int)i, &e);
    }
    for (;;) {
        pthread_mutex_lock(&run->mu);
        size_t k = run->next++;
        pthread_mutex_unlock(&run->mu);
        if (k >= run->nparts)
            break;
        if (cls)
            scrub_part(run, &run->parts[k], cls);
        else
            snprintf(run->parts[k].why, sizeof run->parts[k].why, "out of memory");
    }
    for (size_t i = 0; cls && i < nn; i++)
        ddb_client_free(cls[i]);
    free(cls);
    return NULL;
}

int scrub_main(int argc, char **argv)
{
    struct opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : rc;
    struct run run = {.o = &o};
    struct nerr err = {0};
    if (cluster_conf_load(o.cluster, &run.conf, &err)) {
        fprintf(stderr, "nines scrub: %s\n", err.msg);
        return 2;
    }
    int64_t t0 = clock_mono_ms();
    snprintf(run.id, sizeof run.id, "scrub-%lld-%d", (long long)clock_wall_ms(), (int)getpid());
    pthread_mutex_init(&run.mu, NULL);
    run.node_down = calloc(run.conf->nnodes, sizeof *run.node_down);
    if (!run.node_down || discover(&run, &err)) {
        fprintf(stderr, "nines scrub: %s\n", err.msg[0] ? err.msg : "out of memory");
        cluster_conf_free(run.conf);
        free(run.node_down);
        return 2;
    }
    run.deadline_ms = clock_mono_ms() + (int64_t)(o.timeout_s * 1000);
    pthread_t th[SCRUB_WORKERS];
    int nth = 0;
    for (int i = 0; i < SCRUB_WORKERS && (size_t)i < run.nparts; i++)
        if (!pthread_create(&th[nth], NULL, worker, &run))
            nth++;
    if (!nth && run.nparts)
        worker(&run);
    for (int i = 0; i < nth; i++)
        pthread_join(th[i], NULL);
    /* The report. */
    int nodes_down = 0;
    for (size_t i = 0; i < run.conf->nnodes; i++)
        nodes_down += run.node_down[i];
    json_t *findings = json_array(), *undecided = json_array();
    size_t compared = 0;
    for (size_t k = 0; k < run.nparts; k++) {
        struct part *p = &run.parts[k];
        if (p->why[0]) {
            json_array_append_new(undecided,
                                  json_pack("{s:s,s:i,s:n,s:s}", "table", p->table, "partition",
                                            p->partition, "replica", "why", p->why));
            continue;
        }
        int all = 1;
        for (int m = 0; m < p->nmembers; m++) {
            struct replica *r = &p->r[m];
            if (!r->answered) {
                all = 0;
                json_array_append_new(undecided, json_pack("{s:s,s:i,s:s,s:s}", "table", p->table,
                                                           "partition", p->partition, "replica",
                                                           p->members[m], "why", r->why));
            } else if (p->majority < 0) {
                all = 0;
                json_array_append_new(undecided,
                                      json_pack("{s:s,s:i,s:s,s:s}", "table", p->table, "partition",
                                                p->partition, "replica", p->members[m], "why",
                                                "the replicas disagree and no majority agrees"));
            } else if (strcmp(r->fp, p->r[p->majority].fp)) {
                json_t *b = json_array_get(p->buckets, (size_t)m);
                json_array_append_new(
                    findings,
                    json_pack("{s:s,s:i,s:s,s:s,s:I,s:I,s:I,s:O}", "table", p->table, "partition",
                              p->partition, "replica", p->members[m], "kind", "different", "lsn",
                              (json_int_t)p->lsn, "items", (json_int_t)r->items, "majority_items",
                              (json_int_t)p->r[p->majority].items, "buckets", b ? b : json_null()));
            }
        }
        if (all)
            compared++;
    }
    double secs = (double)(clock_mono_ms() - t0) / 1000.0;
    size_t nf = json_array_size(findings), nu = json_array_size(undecided);
    printf("scrub %s of %s: %zu partition(s), %zu compared at a marker, %zu finding(s), %zu "
           "undecided, %.2f s\n",
           run.id, run.conf->name, run.nparts, compared, nf, nu, secs);
    for (size_t i = 0; i < nf; i++) {
        json_t *f = json_array_get(findings, i);
        char *b = json_dumps(json_object_get(f, "buckets"), JSON_COMPACT);
        printf("FINDING %s partition %lld: replica %s differs from the majority at index %lld "
               "(%lld items against %lld; buckets %s)\n",
               json_string_value(json_object_get(f, "table")),
               (long long)json_integer_value(json_object_get(f, "partition")),
               json_string_value(json_object_get(f, "replica")),
               (long long)json_integer_value(json_object_get(f, "lsn")),
               (long long)json_integer_value(json_object_get(f, "items")),
               (long long)json_integer_value(json_object_get(f, "majority_items")), b ? b : "?");
        free(b);
    }
    for (size_t i = 0; i < nu; i++) {
        json_t *u = json_array_get(undecided, i);
        const char *rep = json_string_value(json_object_get(u, "replica"));
        printf(
            "UNDECIDED %s partition %lld%s%s: %s\n", json_string_value(json_object_get(u, "table")),
            (long long)json_integer_value(json_object_get(u, "partition")), rep ? " replica " : "",
            rep ? rep : "", json_string_value(json_object_get(u, "why")));
    }
    if (nodes_down)
        printf("UNDECIDED: %d node(s) did not report their status (see above)\n", nodes_down);
    int exit_code = nf ? 1 : (nu || nodes_down) ? 2 : 0;
    if (o.json) {
        json_t *rep = json_pack("{s:s,s:s,s:I,s:I,s:O,s:O,s:f,s:i}", "run", run.id, "cluster",
                                run.conf->name, "partitions", (json_int_t)run.nparts, "compared",
                                (json_int_t)compared, "findings", findings, "undecided", undecided,
                                "seconds", secs, "nodes_unreachable", nodes_down);
        if (!rep || json_dump_file(rep, o.json, JSON_INDENT(1) | JSON_SORT_KEYS)) {
            fprintf(stderr, "nines scrub: cannot write %s: %s\n", o.json, strerror(errno));
            exit_code = 2;
        }
        json_decref(rep);
    }
    json_decref(findings);
    json_decref(undecided);
    for (size_t k = 0; k < run.nparts; k++) {
        free(run.parts[k].table);
        json_decref(run.parts[k].buckets);
    }
    free(run.parts);
    free(run.node_down);
    pthread_mutex_destroy(&run.mu);
    cluster_conf_free(run.conf);
    return exit_code;
}
