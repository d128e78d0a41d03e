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
#include "scrubber/common.h"
#include "scrubber/history.h"
#include "scrubber/reference.h"
#include "scrubber/deep.h"

#define MAX_TABLES 64
#define MAX_MEMBERS 8
#define DIGEST_BUCKETS 256 /* store/digest.h: buckets, and sub-buckets of a bucket */
#define DIGEST_SUBS 256

struct opts {
    const char *cluster, *json;
    const char *tables[MAX_TABLES];
    int ntables;
    double timeout_s;
    int repair;            /* --repair */
    int max_repairs;       /* --max-repairs N (default 10) */
    const char *lock;      /* --lock FILE (default scrub_lock_default) */
    const char *pg;        /* --pg CONNINFO or $NINES_SCRUB_PG: the run's history */
    const char *reference; /* --reference URL: the archive's reference replica too */
    double ref_wait_s;     /* --reference-wait S: for the archive to reach the marker */
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
    int from_leader; /* members as the group's leader reported them */
    long long lsn;   /* the marker's, 0 when none was placed */
    char why[700];   /* the marker could not be placed: why */
    int majority;    /* index of a replica of the agreeing majority; -1 none */
    json_t *buckets; /* findings' differing buckets per replica (array of arrays) */
    /* The drill-down (drill_part): confirmed key findings, keys for which
     * the replicas have no majority, and what it cost. */
    json_t *keys;        /* [{key, key_bytes, replica (member index), kind, holds[], majority}] */
    json_t *nomajority;  /* [{key, key_bytes, holds[]}] */
    char drill_why[300]; /* the drill-down could not finish: why */
    long long keys_read, keys_scanned;
    json_t *ref; /* --reference: the verdict (scrubber/reference.h) */
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
    int barriers;        /* drill-down markers placed (their ids: run id + "-b" + n) */
};

static void usage(FILE *f)
{
    fprintf(f, "usage: nines scrub --cluster FILE [--table T ...] [--json FILE] [--timeout S]\n"
               "                   [--repair [--max-repairs N]]\n"
               "\n"
               "Places a scrub marker in every partition's log and compares the digest each\n"
               "replica recorded at that index (docs/scrub.md).\n"
               "\n"
               "  --cluster FILE   the cluster file (nodes, credentials, tls)\n"
               "  --table T        only this table (repeatable; default: every table)\n"
               "  --json FILE      write the report as JSON to FILE\n"
               "  --timeout S      how long a replica may take to apply the marker (default 30)\n"
               "  --repair         rewrite each differing key on the differing replica with the\n"
               "                   majority's stored item, through the partition's log; then\n"
               "                   scrub again. Refused (exit 2, nothing changed) when a key\n"
               "                   has no majority or there are more than --max-repairs keys\n"
               "  --max-repairs N  at most N key repairs in one run (default 10)\n"
               "  --lock FILE      the lock that keeps two scrubs from overlapping (default\n"
               "                   /run/lock/nines-scrub-CLUSTER-HASH.lock); held: exit 2 at once\n"
               "  --pg CONNINFO    record the run and its findings in PostgreSQL (scrub_runs,\n"
               "                   scrub_findings; default $NINES_SCRUB_PG)\n"
               "  --reference URL  also rebuild every partition at the marker from the WAL\n"
               "                   archive alone and compare it: the fourth source, which names\n"
               "                   the replica, the archive or the replay at fault\n"
               "  --reference-wait S  how long to wait for the archive to reach the marker\n"
               "                   (default 60: a seal after the marker, seal_after later)\n"
               "\n"
               "Exit status: 0 every replica of every partition agrees (with --repair: after\n"
               "repairing), 1 a finding (remaining), 2 something could not be decided or a\n"
               "repair was refused (named in the report), or bad usage.\n"
               "\n"
               "nines scrub --deep --help: re-read every replica's items at rest instead.\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {{"cluster", required_argument, NULL, 'c'},
                                       {"table", required_argument, NULL, 't'},
                                       {"json", required_argument, NULL, 'j'},
                                       {"timeout", required_argument, NULL, 'T'},
                                       {"repair", no_argument, NULL, 'r'},
                                       {"max-repairs", required_argument, NULL, 'M'},
                                       {"lock", required_argument, NULL, 'L'},
                                       {"pg", required_argument, NULL, 'P'},
                                       {"reference", required_argument, NULL, 'R'},
                                       {"reference-wait", required_argument, NULL, 'W'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    memset(o, 0, sizeof *o);
    o->timeout_s = 30;
    o->ref_wait_s = 60;
    o->max_repairs = 10;
    o->pg = getenv("NINES_SCRUB_PG");
    if (o->pg && !*o->pg)
        o->pg = NULL;
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
        case 'r':
            o->repair = 1;
            break;
        case 'R':
            o->reference = optarg;
            break;
        case 'W': {
            char *end;
            errno = 0;
            double v = strtod(optarg, &end);
            if (errno || end == optarg || *end || !isfinite(v) || v <= 0 || v > 86400) {
                fprintf(stderr, "nines scrub: --reference-wait '%s': seconds, > 0 and <= 86400\n",
                        optarg);
                return 2;
            }
            o->ref_wait_s = v;
            break;
        }
        case 'L':
            o->lock = optarg;
            break;
        case 'P':
            o->pg = optarg;
            break;
        case 'M': {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 0 || v > 100000) {
                fprintf(stderr, "nines scrub: --max-repairs '%s': a count from 0 to 100000\n",
                        optarg);
                return 2;
            }
            o->max_repairs = (int)v;
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
    return scrub_args_end(argc, argv, o->cluster, usage);
}

/* Every node's status; the partitions (of the wanted tables) and their
 * members from the first node that reports each. */
static int discover(struct run *run, struct nerr *err)
{
    const struct cluster_conf *c = run->conf;
    size_t cap = 0;
    for (size_t i = 0; i < c->nnodes; i++) {
        struct nerr e = {0};
        struct ddb_client *cl = scrub_client(run->conf, i, &e);
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
            if (!ag->table || ag->partition < 0 ||
                !scrub_wanted(run->o->tables, run->o->ntables, ag->table))
                continue;
            struct part *seen = NULL;
            for (size_t k = 0; k < run->nparts && !seen; k++)
                if (!strcmp(run->parts[k].group, ag->group))
                    seen = &run->parts[k];
            int leads = ag->role && !strcmp(ag->role, "leader");
            /* The leader's member list wins: a follower that has not yet
             * learnt of a replacement may still list the member that left
             * (docs/replication.md, "Replacing a replica"). */
            if (seen && leads && !seen->from_leader) {
                seen->nmembers = 0;
                for (size_t m = 0; m < ag->nmembers && seen->nmembers < MAX_MEMBERS; m++) {
                    snprintf(seen->members[seen->nmembers], sizeof seen->members[0], "%s",
                             ag->members[m]);
                    seen->r[seen->nmembers].node = scrub_node_index(c, ag->members[m]);
                    seen->nmembers++;
                }
                seen->from_leader = 1;
            }
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
            p->from_leader = leads;
            snprintf(p->group, sizeof p->group, "%s", ag->group);
            for (size_t m = 0; m < ag->nmembers && p->nmembers < MAX_MEMBERS; m++) {
                snprintf(p->members[p->nmembers], sizeof p->members[0], "%s", ag->members[m]);
                p->r[p->nmembers].node = scrub_node_index(c, ag->members[m]);
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
    /* 3b. The reference replica, the fourth source (reference.h); it may
     * break a tie between replicas. */
    if (run->o->reference) {
        struct scrub_ref_in in = {.url = run->o->reference,
                                  .table = p->table,
                                  .group = p->group,
                                  .run_id = run->id,
                                  .partition = p->partition,
                                  .lsn = p->lsn,
                                  .n = p->nmembers < SCRUB_REF_MAX ? p->nmembers : SCRUB_REF_MAX,
                                  .deadline_ms =
                                      clock_mono_ms() + (int64_t)(run->o->ref_wait_s * 1000)};
        for (int m = 0; m < in.n; m++) {
            in.members[m] = p->members[m];
            in.fps[m] = p->r[m].answered ? p->r[m].fp : NULL;
            in.cl[m] =
                p->r[m].node >= 0 && !run->node_down[p->r[m].node] ? cls[p->r[m].node] : NULL;
        }
        p->ref = scrub_reference_part(&in, &p->majority);
        if (p->majority >= 0)
            best = p->majority;
    }
    p->buckets = json_array();
    for (int m = 0; m < p->nmembers; m++) {
        json_t *b = NULL;
        if (p->majority >= 0 && p->r[m].answered && strcmp(p->r[m].fp, p->r[best].fp))
            b = bucket_diff(cls[p->r[best].node], cls[p->r[m].node], req);
        json_array_append_new(p->buckets, b ? b : json_null());
    }
    json_decref(req);
}

/* ---- the drill-down: from a differing bucket to the key ---- */

/* One admin call; 0 when it answered 200 (*resp owned by the caller). */
static int call_ok(struct ddb_client *cl, const char *op, json_t *req, json_t **resp)
{
    int st = 0;
    struct nerr e = {0};
    *resp = NULL;
    if (!ddb_call(cl, op, req, &st, resp, &e) && st == 200)
        return 0;
    json_decref(*resp);
    *resp = NULL;
    return -1;
}

/* A fresh marker of p, applied (and committed: ScrubDigest reads LMDB) on
 * every replica that answered the compare: after it, each of them has
 * committed every write that preceded it in the log. 0, or -1 with why. */
static int barrier(struct run *run, struct part *p, struct ddb_client **cls, char *why, size_t cap)
{
    char id[80];
    pthread_mutex_lock(&run->mu);
    int n = ++run->barriers;
    pthread_mutex_unlock(&run->mu);
    snprintf(id, sizeof id, "%.50s-b%d", run->id, n);
    json_t *req =
        json_pack("{s:s,s:i,s:s}", "TableName", p->table, "Partition", p->partition, "Id", id);
    int64_t deadline = clock_mono_ms() + (int64_t)(run->o->timeout_s * 1000);
    int placed = 0;
    for (int round = 0; req && !placed && clock_mono_ms() <= deadline; round++) {
        for (int m = 0; m < p->nmembers && !placed; m++) {
            json_t *resp;
            if (p->r[m].answered && !call_ok(cls[p->r[m].node], "NinesAdmin.ScrubMark", req, &resp))
                placed = 1, json_decref(resp);
        }
        if (!placed)
            usleep(round < 10 ? 100000 : 500000);
    }
    for (int m = 0; placed && m < p->nmembers; m++) {
        if (!p->r[m].answered)
            continue;
        json_t *resp;
        while (call_ok(cls[p->r[m].node], "NinesAdmin.ScrubDigest", req, &resp)) {
            if (clock_mono_ms() > deadline) {
                snprintf(why, cap, "replica %s did not apply drill-down marker %s in time",
                         p->members[m], id);
                json_decref(req);
                return -1;
            }
            usleep(20000);
        }
        json_decref(resp);
    }
    json_decref(req);
    if (!placed)
        snprintf(why, cap, "no member placed drill-down marker %s", id);
    return placed ? 0 : -1;
}

/* The sub-buckets of bucket b where some answered replica differs from
 * the majority replica (ScrubKeys SubDigests): a JSON array of numbers,
 * NULL when a replica did not answer. */
static json_t *differing_subs(struct part *p, struct ddb_client **cls, int b, long long *scanned)
{
    json_t *subs[MAX_MEMBERS] = {0}, *out = NULL;
    int ok = 1;
    for (int m = 0; m < p->nmembers && ok; m++) {
        if (!p->r[m].answered)
            continue;
        json_t *req = json_pack("{s:s,s:i,s:i,s:b}", "TableName", p->table, "Partition",
                                p->partition, "Bucket", b, "SubDigests", 1);
        ok = req && !call_ok(cls[p->r[m].node], "NinesAdmin.ScrubKeys", req, &subs[m]);
        json_decref(req);
        if (ok)
            *scanned += json_integer_value(json_object_get(subs[m], "Scanned"));
    }
    if (ok) {
        out = json_array();
        json_t *ref = json_object_get(subs[p->majority], "SubDigests");
        for (size_t s = 0; s < DIGEST_SUBS; s++) {
            int differs = 0;
            for (int m = 0; m < p->nmembers; m++) {
                const char *x = json_string_value(json_array_get(ref, s)),
                           *y = json_string_value(
                               json_array_get(json_object_get(subs[m], "SubDigests"), s));
                if (p->r[m].answered && (!x || !y || strcmp(x, y)))
                    differs = 1;
            }
            if (differs)
                json_array_append_new(out, json_integer((json_int_t)s));
        }
    }
    for (int m = 0; m < p->nmembers; m++)
        json_decref(subs[m]);
    return out;
}

/* Lists sub-bucket (b, sub) on every answered replica into keys: KeyBytes
 * -> {"key": Key, "h": [per member: hash, or null = absent]}. -1 when a
 * replica did not answer. */
static int list_sub(struct part *p, struct ddb_client **cls, int b, int sub, json_t *keys,
                    long long *read, long long *scanned)
{
    for (int m = 0; m < p->nmembers; m++) {
        if (!p->r[m].answered)
            continue;
        char *after = NULL;
        for (int page = 0; page < 10000; page++) {
            json_t *req = json_pack("{s:s,s:i,s:i,s:i,s:i}", "TableName", p->table, "Partition",
                                    p->partition, "Bucket", b, "Sub", sub, "Limit", 10000);
            json_t *resp = NULL;
            if (req && after)
                json_object_set_new(req, "After", json_string(after));
            free(after);
            after = NULL;
            int bad = !req || call_ok(cls[p->r[m].node], "NinesAdmin.ScrubKeys", req, &resp);
            json_decref(req);
            if (bad)
                return -1;
            *scanned += json_integer_value(json_object_get(resp, "Scanned"));
            json_t *items = json_object_get(resp, "Items"), *it;
            size_t i;
            json_array_foreach(items, i, it)
            {
                const char *kb = json_string_value(json_object_get(it, "KeyBytes"));
                if (!kb)
                    continue;
                json_t *e = json_object_get(keys, kb);
                if (!e) {
                    json_t *h = json_array();
                    for (int k = 0; k < p->nmembers; k++)
                        json_array_append_new(h, json_null());
                    e = json_pack("{s:O,s:o}", "key", json_object_get(it, "Key"), "h", h);
                    json_object_set_new(keys, kb, e);
                }
                json_array_set(json_object_get(e, "h"), (size_t)m, json_object_get(it, "Hash"));
                (*read)++;
            }
            const char *next = json_string_value(json_object_get(resp, "Next"));
            after = next ? strdup(next) : NULL;
            json_decref(resp);
            if (!after)
                break;
        }
        free(after);
    }
    return 0;
}

static const char *state_of(json_t *h)
{
    return json_is_string(h) ? json_string_value(h) : "absent";
}

/* The differences of one listing: for each key, the majority state
 * (a hash or "absent", held by more than half the members) and every
 * answered replica that holds another: {"<kb>/<m>": {key, key_bytes,
 * replica, kind, holds, majority}}; keys without a majority go to nomaj. */
static json_t *diff_listing(struct part *p, json_t *keys, json_t *nomaj)
{
    json_t *out = json_object(), *e;
    const char *kb;
    json_object_foreach(keys, kb, e)
    {
        json_t *h = json_object_get(e, "h");
        const char *maj = NULL;
        for (int m = 0; m < p->nmembers && !maj; m++) {
            int n = 0;
            for (int k = 0; k < p->nmembers; k++)
                n += p->r[k].answered && p->r[m].answered &&
                     !strcmp(state_of(json_array_get(h, (size_t)k)),
                             state_of(json_array_get(h, (size_t)m)));
            if (n * 2 > p->nmembers)
                maj = state_of(json_array_get(h, (size_t)m));
        }
        if (!maj) {
            if (nomaj)
                json_array_append_new(nomaj,
                                      json_pack("{s:O,s:s,s:O}", "key", json_object_get(e, "key"),
                                                "key_bytes", kb, "holds", h));
            continue;
        }
        for (int m = 0; m < p->nmembers; m++) {
            const char *mine = state_of(json_array_get(h, (size_t)m));
            if (!p->r[m].answered || !strcmp(mine, maj))
                continue;
            const char *kind = !strcmp(mine, "absent")  ? "missing"
                               : !strcmp(maj, "absent") ? "extra"
                                                        : "different";
            char id[1100];
            snprintf(id, sizeof id, "%s/%d", kb, m);
            json_object_set_new(out, id,
                                json_pack("{s:O,s:s,s:i,s:s,s:O,s:s}", "key",
                                          json_object_get(e, "key"), "key_bytes", kb, "replica", m,
                                          "kind", kind, "holds", h, "majority", maj));
        }
    }
    return out;
}

/* For every replica that differs from the majority at the marker: the
 * differing sub-buckets of its differing buckets, listed on every replica
 * and compared key by key; a key difference is kept only when a second
 * listing, taken after a fresh marker every replica applied, shows the
 * same difference with the same hashes (docs/scrub.md, "Drill-down"). */
static void drill_part(struct run *run, struct part *p, struct ddb_client **cls)
{
    p->keys = json_array();
    p->nomajority = json_array();
    if (p->majority < 0 || !p->keys || !p->nomajority)
        return;
    json_t *todo = json_array(); /* [[bucket, sub], ...] */
    unsigned char seen[DIGEST_BUCKETS] = {0};
    for (int m = 0; m < p->nmembers; m++) {
        json_t *bs = json_array_get(p->buckets, (size_t)m), *bj;
        size_t i;
        json_array_foreach(bs, i, bj)
        {
            int b = (int)json_integer_value(bj);
            if (b < 0 || b >= DIGEST_BUCKETS || seen[b]++)
                continue;
            json_t *subs = differing_subs(p, cls, b, &p->keys_scanned), *sj;
            if (!subs) {
                snprintf(p->drill_why, sizeof p->drill_why,
                         "a replica did not answer ScrubKeys for bucket %d", b);
                json_decref(todo);
                return;
            }
            size_t k;
            json_array_foreach(subs, k, sj)
                json_array_append_new(todo, json_pack("[i,I]", b, json_integer_value(sj)));
            json_decref(subs);
        }
    }
    json_t *first = NULL, *second = NULL;
    for (int round = 0; round < 2; round++) {
        json_t *keys = json_object(), *t;
        size_t i;
        json_array_foreach(todo, i, t)
        {
            if (list_sub(p, cls, (int)json_integer_value(json_array_get(t, 0)),
                         (int)json_integer_value(json_array_get(t, 1)), keys, &p->keys_read,
                         &p->keys_scanned)) {
                snprintf(p->drill_why, sizeof p->drill_why,
                         "a replica did not answer ScrubKeys (listing a sub-bucket)");
                json_decref(keys);
                goto out;
            }
        }
        json_t *d = diff_listing(p, keys, round ? p->nomajority : NULL);
        json_decref(keys);
        if (!round) {
            first = d;
            if (!json_object_size(first))
                goto out; /* nothing to confirm */
            if (barrier(run, p, cls, p->drill_why, sizeof p->drill_why))
                goto out;
        } else {
            second = d;
        }
    }
    /* Kept: the same replica, kind and hashes in both listings. */
    const char *id;
    json_t *a;
    json_object_foreach(first, id, a)
    {
        json_t *b = json_object_get(second, id);
        if (b && json_equal(json_object_get(a, "holds"), json_object_get(b, "holds")))
            json_array_append(p->keys, b);
    }
out:
    json_decref(first);
    json_decref(second);
    json_decref(todo);
}

static void *worker(void *arg)
{
    struct run *run = arg;
    size_t nn = run->conf->nnodes;
    struct ddb_client **cls = calloc(nn, sizeof *cls);
    for (size_t i = 0; cls && i < nn; i++) {
        struct nerr e = {0};
        if (!run->node_down[i])
            cls[i] = scrub_client(run->conf, i, &e);
    }
    for (;;) {
        pthread_mutex_lock(&run->mu);
        size_t k = run->next++;
        pthread_mutex_unlock(&run->mu);
        if (k >= run->nparts)
            break;
        if (cls) {
            scrub_part(run, &run->parts[k], cls);
            drill_part(run, &run->parts[k], cls);
        } else
            snprintf(run->parts[k].why, sizeof run->parts[k].why, "out of memory");
    }
    for (size_t i = 0; cls && i < nn; i++)
        ddb_client_free(cls[i]);
    free(cls);
    return NULL;
}

/* The member names of a holds array: {node: {"present": bool, "hash"?}}. */
static json_t *holds_json(const struct part *p, json_t *h)
{
    json_t *o = json_object();
    for (int m = 0; m < p->nmembers; m++) {
        if (!p->r[m].answered)
            continue;
        json_t *x = json_array_get(h, (size_t)m);
        json_object_set_new(o, p->members[m],
                            json_is_string(x) ? json_pack("{s:b,s:O}", "present", 1, "hash", x)
                                              : json_pack("{s:b}", "present", 0));
    }
    return o;
}

struct tally {
    json_t *findings, *undecided, *differing, *reference;
    size_t compared;
    long long keys_read, keys_scanned;
    int nomajority; /* keys or partitions whose replicas have no majority */
};

/* The outcome of every partition of run into t (fresh arrays). */
static void tally(const struct run *run, struct tally *t)
{
    memset(t, 0, sizeof *t);
    t->findings = json_array();
    t->undecided = json_array();
    t->differing = json_array();
    t->reference = json_array();
    for (size_t k = 0; k < run->nparts; k++) {
        struct part *p = &run->parts[k];
        if (p->ref) {
            json_array_append(t->reference, p->ref);
            const char *v = json_string_value(json_object_get(p->ref, "verdict"));
            json_t *rkeys = json_object_get(p->ref, "keys"), *rk;
            size_t ri;
            if (v && json_array_size(rkeys))
                json_array_foreach(rkeys, ri, rk)
                {
                    /* Located to the key by the reference's drill-down. */
                    json_array_append_new(
                        t->findings,
                        json_pack("{s:s,s:i,s:O,s:O,s:O,s:I,s:s,s:O?,s:O?,s:s}", "table", p->table,
                                  "partition", p->partition, "key", json_object_get(rk, "key"),
                                  "replica", json_object_get(rk, "replica"), "kind",
                                  json_object_get(rk, "kind"), "lsn", (json_int_t)p->lsn, "source",
                                  "reference", "reference_hash",
                                  json_object_get(rk, "reference_hash"), "replica_hash",
                                  json_object_get(rk, "replica_hash"), "why",
                                  "found by the reference replica rebuilt from the archive"));
                }
            else if (v && (!strcmp(v, "replica") || !strcmp(v, "replay") || !strcmp(v, "archive")))
                json_array_append_new(t->findings,
                                      json_pack("{s:s,s:i,s:n,s:O,s:s,s:I,s:O,s:O}", "table",
                                                p->table, "partition", p->partition, "key",
                                                "replica", json_object_get(p->ref, "blame"), "kind",
                                                "reference", "lsn", (json_int_t)p->lsn, "buckets",
                                                json_object_get(p->ref, "buckets"), "why",
                                                json_object_get(p->ref, "why")));
            else if (v && !strcmp(v, "undecided"))
                json_array_append_new(t->undecided,
                                      json_pack("{s:s,s:i,s:s,s:O}", "table", p->table, "partition",
                                                p->partition, "replica", "reference", "why",
                                                json_object_get(p->ref, "why")));
        }
        t->keys_read += p->keys_read;
        t->keys_scanned += p->keys_scanned;
        if (p->why[0]) {
            json_array_append_new(t->undecided,
                                  json_pack("{s:s,s:i,s:n,s:s}", "table", p->table, "partition",
                                            p->partition, "replica", "why", p->why));
            continue;
        }
        int all = 1;
        for (int m = 0; m < p->nmembers; m++) {
            struct replica *r = &p->r[m];
            if (!r->answered) {
                all = 0;
                json_array_append_new(
                    t->undecided, json_pack("{s:s,s:i,s:s,s:s}", "table", p->table, "partition",
                                            p->partition, "replica", p->members[m], "why", r->why));
            } else if (p->majority < 0) {
                all = 0;
                t->nomajority++;
                json_array_append_new(t->undecided,
                                      json_pack("{s:s,s:i,s:s,s:s}", "table", p->table, "partition",
                                                p->partition, "replica", p->members[m], "why",
                                                "the replicas disagree and no majority agrees"));
            } else if (strcmp(r->fp, p->r[p->majority].fp)) {
                json_t *b = json_array_get(p->buckets, (size_t)m);
                json_array_append_new(
                    t->differing,
                    json_pack("{s:s,s:i,s:s,s:I,s:I,s:I,s:O}", "table", p->table, "partition",
                              p->partition, "replica", p->members[m], "lsn", (json_int_t)p->lsn,
                              "items", (json_int_t)r->items, "majority_items",
                              (json_int_t)p->r[p->majority].items, "buckets", b ? b : json_null()));
                /* The replica's located keys; none located: the finding
                 * stays at the partition, with the reason. */
                int located = 0;
                json_t *kf;
                size_t i;
                json_array_foreach(p->keys, i, kf)
                {
                    if (json_integer_value(json_object_get(kf, "replica")) != m)
                        continue;
                    located++;
                    json_array_append_new(
                        t->findings,
                        json_pack("{s:s,s:i,s:O,s:s,s:s,s:O,s:o,s:I,s:O}", "table", p->table,
                                  "partition", p->partition, "key", json_object_get(kf, "key"),
                                  "replica", p->members[m], "kind",
                                  json_string_value(json_object_get(kf, "kind")), "key_bytes",
                                  json_object_get(kf, "key_bytes"), "holds",
                                  holds_json(p, json_object_get(kf, "holds")), "lsn",
                                  (json_int_t)p->lsn, "majority", json_object_get(kf, "majority")));
                }
                if (!located)
                    json_array_append_new(
                        t->findings,
                        json_pack("{s:s,s:i,s:n,s:s,s:s,s:I,s:O,s:s}", "table", p->table,
                                  "partition", p->partition, "key", "replica", p->members[m],
                                  "kind", "different", "lsn", (json_int_t)p->lsn, "buckets",
                                  b ? b : json_null(), "why",
                                  p->drill_why[0] ? p->drill_why
                                                  : "the digests differ at the marker but no key "
                                                    "difference persisted in two listings"));
            }
        }
        json_t *nm;
        size_t i;
        json_array_foreach(p->nomajority, i, nm)
        {
            t->nomajority++;
            all = 0;
            json_array_append_new(t->undecided,
                                  json_pack("{s:s,s:i,s:O,s:n,s:s,s:o}", "table", p->table,
                                            "partition", p->partition, "key",
                                            json_object_get(nm, "key"), "replica", "why",
                                            "the replicas hold three different values of the key",
                                            "holds", holds_json(p, json_object_get(nm, "holds"))));
        }
        if (all)
            t->compared++;
    }
}

static void tally_clear(struct tally *t)
{
    json_decref(t->reference);
    json_decref(t->findings);
    json_decref(t->undecided);
    json_decref(t->differing);
}

static void print_tally(const struct run *run, const struct tally *t, const char *when)
{
    size_t nf = json_array_size(t->findings), nu = json_array_size(t->undecided);
    printf("scrub %s of %s%s: %zu partition(s), %zu compared at a marker, %zu finding(s), %zu "
           "undecided; %lld keys read in the drill-down (%lld looked at by the replicas)\n",
           run->id, run->conf->name, when, run->nparts, t->compared, nf, nu, t->keys_read,
           t->keys_scanned);
    for (size_t i = 0; i < nf; i++) {
        json_t *f = json_array_get(t->findings, i);
        char *key =
            json_dumps(json_object_get(f, "key"), JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        char *b = json_dumps(json_object_get(f, "buckets"), JSON_COMPACT | JSON_ENCODE_ANY);
        /* A reference finding blames a list of replicas, or the archive or
         * the replay (reference.h). */
        json_t *rj = json_object_get(f, "replica");
        char *rdump = json_is_string(rj) ? NULL : json_dumps(rj, JSON_COMPACT | JSON_ENCODE_ANY);
        const char *rep = json_is_string(rj) ? json_string_value(rj) : rdump ? rdump : "?";
        if (!strcmp(json_string_value(json_object_get(f, "kind")) ?: "", "reference"))
            key = (free(key), NULL);
        printf("FINDING %s partition %lld: %s%s %s %s%s (at index %lld)%s%s%s%s\n",
               json_string_value(json_object_get(f, "table")),
               (long long)json_integer_value(json_object_get(f, "partition")),
               json_is_array(rj) ? "replica(s) "
               : json_is_string(rj) && strcmp(rep, "archive") && strcmp(rep, "replay") ? "replica "
                                                                                       : "",
               rep, json_string_value(json_object_get(f, "kind")),
               key ? "key " : "differs from the reference", key ? key : "",
               (long long)json_integer_value(json_object_get(f, "lsn")),
               json_object_get(f, "why") ? ": " : "",
               json_string_value(json_object_get(f, "why")) ?: "",
               json_object_get(f, "buckets") ? "; buckets " : "",
               json_object_get(f, "buckets") && b ? b : "");
        free(key);
        free(b);
        free(rdump);
    }
    json_t *rv;
    size_t ri;
    json_array_foreach(t->reference, ri, rv)
    {
        printf("REFERENCE %s partition %lld at index %lld: %s; %lld items from %lld archived "
               "entries (%.1f s)%s%s\n",
               json_string_value(json_object_get(rv, "table")),
               (long long)json_integer_value(json_object_get(rv, "partition")),
               (long long)json_integer_value(json_object_get(rv, "lsn")),
               json_string_value(json_object_get(rv, "verdict")),
               (long long)json_integer_value(json_object_get(rv, "items")),
               (long long)json_integer_value(json_object_get(rv, "entries")),
               json_real_value(json_object_get(rv, "seconds")),
               *(json_string_value(json_object_get(rv, "why")) ?: "") ? ": " : "",
               json_string_value(json_object_get(rv, "why")) ?: "");
    }
    for (size_t i = 0; i < nu; i++) {
        json_t *u = json_array_get(t->undecided, i);
        const char *rep = json_string_value(json_object_get(u, "replica"));
        char *key = json_object_get(u, "key")
                        ? json_dumps(json_object_get(u, "key"), JSON_COMPACT | JSON_SORT_KEYS)
                        : NULL;
        printf("UNDECIDED %s partition %lld%s%s%s%s: %s\n",
               json_string_value(json_object_get(u, "table")),
               (long long)json_integer_value(json_object_get(u, "partition")),
               rep ? " replica " : "", rep ? rep : "", key ? " key " : "", key ? key : "",
               json_string_value(json_object_get(u, "why")));
        free(key);
    }
}

static void run_workers(struct run *run)
{
    pthread_t th[SCRUB_WORKERS];
    int nth = 0;
    run->next = 0;
    run->deadline_ms = clock_mono_ms() + (int64_t)(run->o->timeout_s * 1000);
    for (int i = 0; i < SCRUB_WORKERS && (size_t)i < run->nparts; i++)
        if (!pthread_create(&th[nth], NULL, worker, run))
            nth++;
    if (!nth && run->nparts)
        worker(run);
    for (int i = 0; i < nth; i++)
        pthread_join(th[i], NULL);
}

static void part_reset(struct part *p)
{
    json_decref(p->buckets);
    json_decref(p->keys);
    json_decref(p->nomajority);
    json_decref(p->ref);
    p->buckets = p->keys = p->nomajority = p->ref = NULL;
    p->lsn = 0;
    p->why[0] = p->drill_why[0] = 0;
    p->majority = -1;
    p->keys_read = p->keys_scanned = 0;
    for (int m = 0; m < p->nmembers; m++) {
        int node = p->r[m].node;
        memset(&p->r[m], 0, sizeof p->r[m]);
        p->r[m].node = node;
    }
}

/* The repair of one key finding f (docs/scrub.md, "Repair"): the
 * majority's stored item read from a majority replica (ScrubItem; it must
 * still hash to the majority state), then ScrubRepair through the target
 * replica. Appends {table, partition, key, replica, result, why} to out;
 * 0 when repaired. */
static int repair_one(const struct run *run, json_t *f, json_t *out)
{
    const struct cluster_conf *c = run->conf;
    const char *table = json_string_value(json_object_get(f, "table"));
    int part = (int)json_integer_value(json_object_get(f, "partition"));
    const char *target = json_string_value(json_object_get(f, "replica"));
    const char *maj = json_string_value(json_object_get(f, "majority"));
    json_t *holds = json_object_get(f, "holds"), *key = json_object_get(f, "key");
    json_t *mine = json_object_get(holds, target);
    const char *expect = json_is_true(json_object_get(mine, "present"))
                             ? json_string_value(json_object_get(mine, "hash"))
                             : "absent";
    char why[400] = "";
    int ok = -1;
    /* A majority replica other than the target. */
    const char *src = NULL, *node;
    json_t *h;
    json_object_foreach(holds, node, h)
    {
        const char *st = json_is_true(json_object_get(h, "present"))
                             ? json_string_value(json_object_get(h, "hash"))
                             : "absent";
        if (!src && strcmp(node, target) && st && maj && !strcmp(st, maj))
            src = node;
    }
    int sn = src ? scrub_node_index(c, src) : -1, tn = target ? scrub_node_index(c, target) : -1;
    struct nerr e = {0};
    struct ddb_client *cs = sn >= 0 ? scrub_client(run->conf, (size_t)sn, &e) : NULL,
                      *ct = tn >= 0 ? scrub_client(run->conf, (size_t)tn, &e) : NULL;
    json_t *req = json_pack("{s:s,s:i,s:O}", "TableName", table, "Partition", part, "Key", key);
    json_t *item = NULL, *resp = NULL;
    if (!cs || !ct || !req || !expect) {
        snprintf(why, sizeof why, "no client for the majority replica or the target");
        goto done;
    }
    if (call_ok(cs, "NinesAdmin.ScrubItem", req, &item)) {
        snprintf(why, sizeof why, "%s did not answer ScrubItem", src);
        goto done;
    }
    int present = json_is_true(json_object_get(item, "Present"));
    const char *hash = present ? json_string_value(json_object_get(item, "Hash")) : "absent";
    if (!hash || strcmp(hash, maj)) {
        snprintf(why, sizeof why,
                 "the majority replica %s now holds %s, not %s: written since; not repaired", src,
                 hash ? hash : "?", maj);
        goto done;
    }
    json_object_set_new(req, "Replica", json_string(target));
    json_object_set_new(req, "Expect", json_string(expect));
    if (present)
        json_object_set(req, "Item", json_object_get(item, "Stored"));
    else
        json_object_set_new(req, "Absent", json_true());
    int64_t deadline = clock_mono_ms() + (int64_t)(run->o->timeout_s * 1000);
    for (int round = 0; clock_mono_ms() <= deadline; round++) {
        if (!call_ok(ct, "NinesAdmin.ScrubRepair", req, &resp))
            break;
        usleep(round < 10 ? 100000 : 500000); /* between leaders: again */
    }
    if (!resp)
        snprintf(why, sizeof why, "%s did not take the repair (%s)", target,
                 ddb_client_error_type(ct) ?: "no answer");
    else if (!json_is_true(json_object_get(resp, "Repaired")))
        snprintf(why, sizeof why, "%s",
                 json_string_value(json_object_get(resp, "Why")) ?: "not repaired");
    else
        ok = 0;
done:
    json_array_append_new(out,
                          json_pack("{s:s,s:i,s:O,s:s,s:s,s:s,s:s?,s:I}", "table", table,
                                    "partition", part, "key", key, "replica", target, "result",
                                    ok ? "refused" : "repaired", "why", why, "from", src, "lsn",
                                    (json_int_t)json_integer_value(json_object_get(resp, "Lsn"))));
    json_decref(req);
    json_decref(item);
    json_decref(resp);
    ddb_client_free(cs);
    ddb_client_free(ct);
    return ok;
}

int scrub_main(int argc, char **argv)
{
    /* --deep: the deep scrub, its own options and report (deep.h). */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--deep"))
            return scrub_deep_main(argc, argv);
    struct opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : rc;
    struct run run = {.o = &o};
    struct nerr err = {0};
    char lockbuf[4096];
    int lockfd;
    if (scrub_begin(o.cluster, &o.lock, lockbuf, sizeof lockbuf, &run.conf, &lockfd))
        return 2;
    int64_t t0 = clock_mono_ms();
    long long started_ms = (long long)clock_wall_ms();
    snprintf(run.id, sizeof run.id, "scrub-%lld-%d", (long long)clock_wall_ms(), (int)getpid());
    pthread_mutex_init(&run.mu, NULL);
    run.node_down = calloc(run.conf->nnodes, sizeof *run.node_down);
    if (!run.node_down || discover(&run, &err)) {
        fprintf(stderr, "nines scrub: %s\n", err.msg[0] ? err.msg : "out of memory");
        cluster_conf_free(run.conf);
        free(run.node_down);
        scrub_unlock(lockfd);
        return 2;
    }
    run_workers(&run);
    int nodes_down = 0;
    for (size_t i = 0; i < run.conf->nnodes; i++)
        nodes_down += run.node_down[i];
    struct tally t;
    tally(&run, &t);
    print_tally(&run, &t, "");
    if (nodes_down)
        printf("UNDECIDED: %d node(s) did not report their status (see above)\n", nodes_down);
    size_t nf = json_array_size(t.findings), nu = json_array_size(t.undecided);
    int exit_code = nf ? 1 : (nu || nodes_down) ? 2 : 0;
    json_t *repair = NULL;
    if (o.repair && (nf || t.nomajority)) {
        /* Refused as a whole, before any change, when a key has no
         * majority, a finding is not located to a key, or there are more
         * keys than --max-repairs (docs/scrub.md, "Repair"). */
        char refused[300] = "";
        size_t unlocated = 0;
        json_t *f;
        size_t i;
        json_array_foreach(t.findings, i, f) unlocated += json_is_null(json_object_get(f, "key"));
        if (t.nomajority)
            snprintf(refused, sizeof refused,
                     "%d key(s) or partition(s) have no majority of replicas that agree: nothing "
                     "to repair from",
                     t.nomajority);
        else if (unlocated)
            snprintf(refused, sizeof refused,
                     "%zu finding(s) not located to a key: scrub again, or repair by hand",
                     unlocated);
        else if (nf > (size_t)o.max_repairs)
            snprintf(refused, sizeof refused,
                     "%zu key findings exceed --max-repairs %d: too many to trust the majority "
                     "blindly; look first",
                     nf, o.max_repairs);
        repair = json_pack("{s:o,s:s?}", "repairs", json_array(), "refused",
                           refused[0] ? refused : NULL);
        if (refused[0]) {
            printf("REPAIR REFUSED: %s; nothing changed\n", refused);
            exit_code = 2;
        } else {
            json_t *done = json_object_get(repair, "repairs");
            size_t failed = 0;
            json_array_foreach(t.findings, i, f) failed += repair_one(&run, f, done) != 0;
            json_t *r;
            json_array_foreach(done, i, r)
            {
                char *key = json_dumps(json_object_get(r, "key"), JSON_COMPACT | JSON_SORT_KEYS);
                printf("REPAIR %s partition %lld key %s on %s: %s%s%s\n",
                       json_string_value(json_object_get(r, "table")),
                       (long long)json_integer_value(json_object_get(r, "partition")),
                       key ? key : "?", json_string_value(json_object_get(r, "replica")),
                       json_string_value(json_object_get(r, "result")),
                       *json_string_value(json_object_get(r, "why")) ? ": " : "",
                       json_string_value(json_object_get(r, "why")));
                free(key);
            }
            /* Scrub again: the repaired partitions must now agree. */
            for (size_t k = 0; k < run.nparts; k++)
                part_reset(&run.parts[k]);
            snprintf(run.id, sizeof run.id, "scrub-%lld-%d-after", (long long)clock_wall_ms(),
                     (int)getpid());
            run_workers(&run);
            struct tally after;
            tally(&run, &after);
            print_tally(&run, &after, " after repair");
            size_t af = json_array_size(after.findings), au = json_array_size(after.undecided);
            json_object_set(repair, "findings_after", after.findings);
            json_object_set(repair, "undecided_after", after.undecided);
            json_object_set_new(repair, "failed", json_integer((json_int_t)failed));
            exit_code = af ? 1 : (au || nodes_down || failed) ? 2 : 0;
            tally_clear(&after);
        }
    }
    double secs = (double)(clock_mono_ms() - t0) / 1000.0;
    printf("%.2f s\n", secs);
    if (o.json || o.pg) {
        json_t *rep = json_pack(
            "{s:s,s:s,s:s,s:I,s:I,s:O,s:O,s:O,s:f,s:i,s:I,s:I}", "run", run.id, "mode", "live",
            "cluster", run.conf->name, "partitions", (json_int_t)run.nparts, "compared",
            (json_int_t)t.compared, "findings", t.findings, "undecided", t.undecided,
            "partitions_differing", t.differing, "seconds", secs, "nodes_unreachable", nodes_down,
            "keys_read", (json_int_t)t.keys_read, "keys_scanned", (json_int_t)t.keys_scanned);
        if (rep && repair)
            json_object_set(rep, "repair", repair);
        if (rep && o.reference)
            json_object_set(rep, "reference", t.reference);
        if (o.json && (!rep || json_dump_file(rep, o.json, JSON_INDENT(1) | JSON_SORT_KEYS))) {
            fprintf(stderr, "nines scrub: cannot write %s: %s\n", o.json, strerror(errno));
            exit_code = 2;
        }
        /* A nightly job whose history is missing is not a success. */
        struct nerr he = {0};
        if (o.pg && (!rep || scrub_history_record(o.pg, rep, started_ms, exit_code, &he))) {
            fprintf(stderr, "nines scrub: the run's history was not written: %s\n",
                    rep ? he.msg : "out of memory");
            exit_code = 2;
        } else if (o.pg) {
            printf("history: run %s recorded in PostgreSQL (scrub_runs, scrub_findings)\n", run.id);
        }
        json_decref(rep);
    }
    json_decref(repair);
    tally_clear(&t);
    for (size_t k = 0; k < run.nparts; k++) {
        part_reset(&run.parts[k]);
        free(run.parts[k].table);
    }
    free(run.parts);
    free(run.node_down);
    pthread_mutex_destroy(&run.mu);
    cluster_conf_free(run.conf);
    scrub_unlock(lockfd);
    return exit_code;
}
