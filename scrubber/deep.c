/*
 * deep.c — `nines scrub --deep`, the deep scrub driver (deep.h).
 */
#include "scrubber/deep.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
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

#define MAX_TABLES 64
#define POLL_MS 250
#define PROGRESS_MS 1000

struct deep_opts {
    const char *cluster, *json, *resume;
    const char *tables[MAX_TABLES];
    int ntables;
    double rate_mbps;
    double item_rate;      /* items/s; < 0: the node's default (none with --rate 0) */
    double timeout_s;      /* a job may go this long without progress */
    const char *lock, *pg; /* as the live compare's (history.h) */
};

enum unit_state { U_TODO, U_RUNNING, U_DONE, U_UNDECIDED, U_RESUMED };

/* One replica of one partition. */
struct unit {
    char *table;
    int partition;
    char replica[64];
    int node; /* index in the cluster file; -1: not in it */
    enum unit_state state;
    char job[32];
    long long scanned, total, items, maintained_items, lsn;
    int64_t last_change_ms; /* clock_mono_ms of the last progress seen */
    int match;
    int records_damaged; /* the node's maintained records disagree with each other */
    json_t *buckets;     /* done: the differing buckets */
    char why[300];       /* undecided: why */
};

struct deep_run {
    const struct deep_opts *o;
    struct cluster_conf *conf;
    char id[64];
    struct ddb_client **cls; /* per cluster node; NULL: unreachable */
    int *node_down;
    struct unit *units;
    size_t nunits, cap;
    json_t *state; /* the checkpoint: {"version","cluster","done":[...]} */
};

static volatile sig_atomic_t g_stop; /* the only global: a signal handler's flag */

static void on_signal(int sig)
{
    g_stop = sig;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nines scrub --deep --cluster FILE [--table T ...] [--rate MB/s]\n"
            "                   [--item-rate N] [--resume STATE] [--json FILE] [--timeout S]\n"
            "\n"
            "Every replica of every partition re-reads its items at rest, recomputes its\n"
            "digest and compares it with the digest it maintains (docs/scrub.md, Deep scrub).\n"
            "\n"
            "  --cluster FILE   the cluster file (nodes, credentials, tls)\n"
            "  --table T        only this table (repeatable; default: every table)\n"
            "  --rate MB/s      read rate of each replica's scan (default %.0f; 0 = unthrottled)\n"
            "  --item-rate N    and at most N items a second (default 25000, none with --rate 0):\n"
            "                   the cost is per item as much as per byte\n"
            "  --resume STATE   checkpoint file: finished replicas are saved there and skipped\n"
            "                   when the same command runs again (created when absent)\n"
            "  --json FILE      write the report as JSON to FILE\n"
            "  --timeout S      a job that makes no progress for S seconds is undecided\n"
            "                   (default 120)\n"
            "  --lock FILE      as for the live compare: one scrub of a cluster at a time\n"
            "  --pg CONNINFO    record the run in PostgreSQL (default $NINES_SCRUB_PG)\n"
            "\n"
            "Exit status: 0 every replica read back what it maintains, 1 a finding (rot),\n"
            "2 something undecided (named), an interruption (SIGINT/SIGTERM), or bad usage.\n",
            DEEP_DEFAULT_RATE_MBPS);
}

static int parse_num(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "nines scrub: %s '%s': a number from %g to %g\n", opt, s, lo, hi);
        return 2;
    }
    *out = v;
    return 0;
}

static int parse(int argc, char **argv, struct deep_opts *o)
{
    static const struct option lo[] = {{"deep", no_argument, NULL, 'd'},
                                       {"cluster", required_argument, NULL, 'c'},
                                       {"table", required_argument, NULL, 't'},
                                       {"json", required_argument, NULL, 'j'},
                                       {"rate", required_argument, NULL, 'r'},
                                       {"resume", required_argument, NULL, 'R'},
                                       {"timeout", required_argument, NULL, 'T'},
                                       {"help", no_argument, NULL, 'h'},
                                       {"item-rate", required_argument, NULL, 'i'},
                                       {"lock", required_argument, NULL, 'L'},
                                       {"pg", required_argument, NULL, 'P'},
                                       {NULL, 0, NULL, 0}};
    memset(o, 0, sizeof *o);
    o->rate_mbps = DEEP_DEFAULT_RATE_MBPS;
    o->item_rate = -1;
    o->timeout_s = 120;
    o->pg = getenv("NINES_SCRUB_PG");
    if (o->pg && !*o->pg)
        o->pg = NULL;
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'd':
            break;
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
        case 'R':
            o->resume = optarg;
            break;
        case 'L':
            o->lock = optarg;
            break;
        case 'P':
            o->pg = optarg;
            break;
        case 'r':
            if (parse_num("--rate", optarg, 0, 1e6, &o->rate_mbps))
                return 2;
            break;
        case 'i':
            if (parse_num("--item-rate", optarg, 0, 1e9, &o->item_rate))
                return 2;
            break;
        case 'T':
            if (parse_num("--timeout", optarg, 0.001, 86400, &o->timeout_s))
                return 2;
            break;
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

static struct unit *add_unit(struct deep_run *run)
{
    if (run->nunits == run->cap) {
        size_t nc = run->cap ? run->cap * 2 : 64;
        struct unit *nu = realloc(run->units, nc * sizeof *nu);
        if (!nu)
            return NULL;
        run->units = nu;
        run->cap = nc;
    }
    struct unit *u = &run->units[run->nunits++];
    memset(u, 0, sizeof *u);
    return u;
}

/* Every node's status; one unit per (partition, member) of the wanted
 * tables, from the first node that reports each partition. */
static int discover(struct deep_run *run)
{
    const struct cluster_conf *c = run->conf;
    char **seen = NULL;
    size_t nseen = 0;
    int rc = 0;
    for (size_t i = 0; i < c->nnodes && !rc; i++) {
        struct nerr e = {0};
        json_t *resp = NULL, *req = json_object();
        int st = 0;
        struct admin_status s = {0};
        struct ddb_client *cl = run->cls[i];
        if (!cl || ddb_call(cl, "NinesAdmin.Status", req, &st, &resp, &e) || st != 200 ||
            admin_status_from_json(resp, &s, &e)) {
            run->node_down[i] = 1;
            fprintf(stderr, "nines scrub: node %s did not report its status: %s\n", c->nodes[i].id,
                    e.msg[0] ? e.msg
                    : cl     ? (ddb_client_error_type(cl) ?: "?")
                             : "no client");
        }
        for (size_t g = 0; !rc && !run->node_down[i] && g < s.ngroups; g++) {
            const struct admin_group *ag = &s.groups[g];
            if (!ag->table || ag->partition < 0 ||
                !scrub_wanted(run->o->tables, run->o->ntables, ag->table))
                continue;
            int dup = 0;
            for (size_t k = 0; k < nseen && !dup; k++)
                dup = !strcmp(seen[k], ag->group);
            if (dup)
                continue;
            char **ns = realloc(seen, (nseen + 1) * sizeof *ns);
            if (!ns || !(ns[nseen] = strdup(ag->group))) {
                seen = ns ? ns : seen;
                rc = NERR_NOMEM;
                break;
            }
            seen = ns;
            nseen++;
            for (size_t m = 0; m < ag->nmembers; m++) {
                struct unit *u = add_unit(run);
                if (!u || !(u->table = strdup(ag->table))) {
                    rc = NERR_NOMEM;
                    break;
                }
                u->partition = (int)ag->partition;
                snprintf(u->replica, sizeof u->replica, "%s", ag->members[m]);
                u->node = scrub_node_index(c, ag->members[m]);
            }
        }
        admin_status_clear(&s);
        json_decref(resp);
        json_decref(req);
    }
    for (size_t k = 0; k < nseen; k++)
        free(seen[k]);
    free(seen);
    return rc;
}

/* ---- the checkpoint ---- */

static json_t *state_find(json_t *state, const struct unit *u)
{
    json_t *done = json_object_get(state, "done"), *d;
    size_t i;
    json_array_foreach(done, i, d)
    {
        const char *t = json_string_value(json_object_get(d, "table")),
                   *r = json_string_value(json_object_get(d, "replica"));
        if (t && r && !strcmp(t, u->table) && !strcmp(r, u->replica) &&
            json_integer_value(json_object_get(d, "partition")) == u->partition)
            return d;
    }
    return NULL;
}

/* Written to a temporary file and renamed: a crash leaves the old or the
 * new checkpoint, never half of one. */
static int state_save(const struct deep_run *run)
{
    if (!run->o->resume)
        return 0;
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", run->o->resume) >= (int)sizeof tmp ||
        json_dump_file(run->state, tmp, JSON_INDENT(1) | JSON_SORT_KEYS) ||
        rename(tmp, run->o->resume)) {
        fprintf(stderr, "nines scrub: cannot save the checkpoint %s: %s\n", run->o->resume,
                strerror(errno));
        return -1;
    }
    return 0;
}

static int state_load(struct deep_run *run)
{
    if (run->o->resume && access(run->o->resume, F_OK) == 0) {
        json_error_t je;
        run->state = json_load_file(run->o->resume, 0, &je);
        const char *cn = json_string_value(json_object_get(run->state, "cluster"));
        if (!run->state || !json_is_array(json_object_get(run->state, "done"))) {
            fprintf(stderr, "nines scrub: %s is not a deep scrub checkpoint: %s\n", run->o->resume,
                    run->state ? "no \"done\" list" : je.text);
            return -1;
        }
        if (!cn || strcmp(cn, run->conf->name)) {
            fprintf(stderr, "nines scrub: %s is the checkpoint of cluster %s, not %s\n",
                    run->o->resume, cn ? cn : "(none)", run->conf->name);
            return -1;
        }
        return 0;
    }
    run->state = json_pack("{s:i,s:s,s:s,s:[]}", "version", 1, "cluster", run->conf->name,
                           "started", run->id, "done");
    return run->state ? 0 : -1;
}

static void state_record(struct deep_run *run, const struct unit *u)
{
    json_array_append_new(json_object_get(run->state, "done"),
                          json_pack("{s:s,s:i,s:s,s:b,s:O,s:I,s:I,s:I,s:I,s:s}", "table", u->table,
                                    "partition", u->partition, "replica", u->replica, "match",
                                    u->match, "buckets", u->buckets, "items", (json_int_t)u->items,
                                    "maintained_items", (json_int_t)u->maintained_items, "bytes",
                                    (json_int_t)u->scanned, "lsn", (json_int_t)u->lsn, "run",
                                    run->id));
    state_save(run);
}

/* ---- jobs ---- */

static void undecided(struct unit *u, const char *fmt, const char *a, const char *b)
{
    u->state = U_UNDECIDED;
    snprintf(u->why, sizeof u->why, fmt, a ? a : "", b ? b : "");
}

static json_t *unit_req(const struct unit *u)
{
    return json_pack("{s:s,s:i}", "TableName", u->table, "Partition", u->partition);
}

/* Starts u's job. 1 started, 0 the node is busy (try later), -1 undecided. */
static int start_job(struct deep_run *run, struct unit *u)
{
    struct ddb_client *cl = run->cls[u->node];
    json_t *req = unit_req(u), *resp = NULL;
    json_object_set_new(req, "RateMBps", json_real(run->o->rate_mbps));
    if (run->o->item_rate >= 0)
        json_object_set_new(req, "RateItems", json_real(run->o->item_rate));
    int st = 0, r = -1;
    struct nerr e = {0};
    if (!ddb_call(cl, "NinesAdmin.ScrubDeep", req, &st, &resp, &e) && st == 200) {
        const char *job = json_string_value(json_object_get(resp, "Job"));
        if (job) {
            snprintf(u->job, sizeof u->job, "%s", job);
            u->state = U_RUNNING;
            u->last_change_ms = clock_mono_ms();
            r = 1;
        } else {
            undecided(u, "ScrubDeep answered without a Job%s%s", NULL, NULL);
        }
    } else {
        const char *et = e.msg[0] ? e.msg : ddb_client_error_type(cl);
        const char *msg = json_string_value(json_object_get(resp, "message"));
        int64_t now = clock_mono_ms();
        if (et && strstr(et, "LimitExceeded")) {
            /* The node runs other deep scrubs: wait, within --timeout. */
            if (!u->last_change_ms)
                u->last_change_ms = now;
            r = 0;
            if (now - u->last_change_ms > (int64_t)(run->o->timeout_s * 1000))
                undecided(u, "node busy with other deep scrubs for --timeout (%.100s)%s", msg,
                          NULL);
        } else
            undecided(u, "the deep scrub did not start: %.120s %.150s", et ? et : "?", msg);
    }
    json_decref(resp);
    json_decref(req);
    return r;
}

static void poll_job(struct deep_run *run, struct unit *u)
{
    struct ddb_client *cl = run->cls[u->node];
    json_t *req = json_pack("{s:s}", "Job", u->job), *resp = NULL;
    int st = 0;
    struct nerr e = {0};
    int64_t now = clock_mono_ms();
    if (!ddb_call(cl, "NinesAdmin.ScrubDeepStatus", req, &st, &resp, &e) && st == 200) {
        const char *state = json_string_value(json_object_get(resp, "State"));
        long long scanned = json_integer_value(json_object_get(resp, "ScannedBytes"));
        if (scanned != u->scanned || (state && !strcmp(state, "queued")))
            u->last_change_ms = now;
        u->scanned = scanned;
        u->total = json_integer_value(json_object_get(resp, "TotalBytes"));
        u->items = json_integer_value(json_object_get(resp, "Items"));
        u->lsn = json_integer_value(json_object_get(resp, "Lsn"));
        json_t *res = json_object_get(resp, "Result");
        if (state && !strcmp(state, "done") && res) {
            u->state = U_DONE;
            u->match = json_is_true(json_object_get(res, "Match"));
            json_t *ra = json_object_get(res, "RecordsAgree");
            u->records_damaged = ra && json_is_false(ra);
            u->maintained_items = json_integer_value(json_object_get(res, "MaintainedItems"));
            json_t *b = json_object_get(res, "Buckets");
            u->buckets = json_is_array(b) ? json_incref(b) : json_array();
            state_record(run, u);
        } else if (state && (!strcmp(state, "failed") || !strcmp(state, "cancelled"))) {
            undecided(u, "the deep scrub %s: %.250s", state,
                      json_string_value(json_object_get(resp, "Error")) ?: "cancelled on the node");
        }
    } else {
        const char *et = e.msg[0] ? e.msg : ddb_client_error_type(cl);
        if (et && strstr(et, "ResourceNotFound"))
            undecided(u, "the node lost job %s (did it restart?)%s", u->job, NULL);
        /* Other errors (a node busy or briefly away) count as no progress. */
    }
    if (u->state == U_RUNNING && now - u->last_change_ms > (int64_t)(run->o->timeout_s * 1000)) {
        json_t *r2 = NULL;
        ddb_call(cl, "NinesAdmin.ScrubDeepCancel", req, &st, &r2, &e);
        json_decref(r2);
        undecided(u, "no progress within --timeout; job %s cancelled%s", u->job, NULL);
    }
    json_decref(resp);
    json_decref(req);
}

static void cancel_job(struct deep_run *run, struct unit *u)
{
    json_t *req = json_pack("{s:s}", "Job", u->job), *resp = NULL;
    int st = 0;
    struct nerr e = {0};
    ddb_call(run->cls[u->node], "NinesAdmin.ScrubDeepCancel", req, &st, &resp, &e);
    json_decref(resp);
    json_decref(req);
    undecided(u, "interrupted; job %s cancelled%s", u->job, NULL);
}

/* ---- progress ---- */

static void human_bytes(double b, char *out, size_t cap)
{
    const char *unit[] = {"B", "kB", "MB", "GB", "TB"};
    int i = 0;
    while (b >= 1000 && i < 4) {
        b /= 1000;
        i++;
    }
    snprintf(out, cap, i ? "%.1f %s" : "%.0f %s", b, unit[i]);
}

/* Like zpool status: scanned of the estimated total, the rate of this run,
 * % done and the time to go. The total is known for the units started; the
 * others are counted at the mean of those. */
static void progress_line(const struct deep_run *run, int64_t t0)
{
    double known = 0, scanned = 0;
    size_t nknown = 0, todo = 0, done = 0, running = 0, resumed = 0;
    for (size_t i = 0; i < run->nunits; i++) {
        const struct unit *u = &run->units[i];
        if (u->state == U_TODO) {
            todo++;
            continue;
        }
        if (u->state == U_RESUMED) {
            resumed++;
            continue;
        }
        running += u->state == U_RUNNING;
        done += u->state == U_DONE;
        scanned += (double)u->scanned;
        known += (double)(u->state == U_RUNNING && u->total > u->scanned ? u->total : u->scanned);
        nknown++;
    }
    double total = known + (nknown ? known / (double)nknown * (double)todo : 0);
    double secs = (double)(clock_mono_ms() - t0) / 1000.0;
    double rate = secs > 0 ? scanned / secs : 0;
    char s[32], t[32], r[32], eta[32] = "--:--:--";
    human_bytes(scanned, s, sizeof s);
    human_bytes(total, t, sizeof t);
    human_bytes(rate, r, sizeof r);
    if (rate > 0 && total >= scanned) {
        long long left = (long long)((total - scanned) / rate);
        snprintf(eta, sizeof eta, "%lld:%02lld:%02lld", left / 3600, left / 60 % 60, left % 60);
    }
    fprintf(stderr,
            "\r\033[Kdeep scrub: %s of ~%s scanned at %s/s, %.1f%% done, %s to go; %zu of %zu "
            "replicas done, %zu running",
            s, t, r, total > 0 ? 100.0 * scanned / total : 0.0, eta, done + resumed, run->nunits,
            running);
    fflush(stderr);
}

/* ---- main ---- */

static void run_free(struct deep_run *run)
{
    for (size_t i = 0; i < run->nunits; i++) {
        free(run->units[i].table);
        json_decref(run->units[i].buckets);
    }
    free(run->units);
    for (size_t i = 0; run->cls && i < run->conf->nnodes; i++)
        ddb_client_free(run->cls[i]);
    free(run->cls);
    free(run->node_down);
    json_decref(run->state);
    cluster_conf_free(run->conf);
}

#define ROT_MAX_BUCKETS 8
#define ROT_MAX_KEYS 200000 /* per replica and bucket */

/* Every key of bucket b on the replica of node `node`: {KeyBytes: {"key":
 * Key, "hash": Hash}}, or NULL when the node did not answer in full. */
static json_t *list_bucket(const struct deep_run *run, const struct unit *u, int node, int b)
{
    struct ddb_client *cl = node >= 0 ? run->cls[node] : NULL;
    if (!cl)
        return NULL;
    json_t *all = json_object();
    const char *after = NULL;
    char cursor[1024] = "";
    for (int page = 0; page < 1000; page++) {
        json_t *req = unit_req(u), *resp = NULL;
        json_object_set_new(req, "Bucket", json_integer(b));
        json_object_set_new(req, "Limit", json_integer(10000));
        if (after)
            json_object_set_new(req, "After", json_string(after));
        int st = 0;
        struct nerr e = {0};
        int rc = ddb_call(cl, "NinesAdmin.ScrubKeys", req, &st, &resp, &e);
        json_decref(req);
        if (rc || st != 200) {
            json_decref(resp);
            json_decref(all);
            return NULL;
        }
        size_t i;
        json_t *it;
        json_array_foreach(json_object_get(resp, "Items"), i, it)
        {
            const char *kb = json_string_value(json_object_get(it, "KeyBytes"));
            if (kb)
                json_object_set_new(all, kb,
                                    json_pack("{s:O,s:O}", "key", json_object_get(it, "Key"),
                                              "hash", json_object_get(it, "Hash")));
        }
        const char *next = json_string_value(json_object_get(resp, "Next"));
        if (next && strlen(next) < sizeof cursor)
            snprintf(cursor, sizeof cursor, "%s", next);
        after = next ? cursor : NULL;
        json_decref(resp);
        if (!after)
            return all;
        if (json_object_size(all) > ROT_MAX_KEYS)
            break;
    }
    json_decref(all);
    return NULL;
}

/* The keys of u's rotten buckets whose hash on u differs from what the
 * other replicas agree on (present, absent or different), listed twice
 * and kept only when both listings say so (writes may run meanwhile).
 * Sets "keys" on f, or "keys_why" when they could not be named. */
static void rot_keys(const struct deep_run *run, const struct unit *u, json_t *f)
{
    const struct unit *peer[8];
    int np = 0;
    for (size_t i = 0; i < run->nunits && np < 8; i++) {
        const struct unit *v = &run->units[i];
        if (v != u && v->partition == u->partition && !strcmp(v->table, u->table) &&
            strcmp(v->replica, u->replica))
            peer[np++] = v;
    }
    json_t *keys = json_array();
    size_t nb = json_array_size(u->buckets);
    const char *why = NULL;
    if (np < 2)
        why = "fewer than two other replicas to compare with";
    for (size_t bi = 0; !why && bi < nb && bi < ROT_MAX_BUCKETS; bi++) {
        int b = (int)json_integer_value(json_array_get(u->buckets, bi));
        json_t *seen[2] = {NULL, NULL};
        for (int pass = 0; pass < 2 && !why; pass++) {
            json_t *mine = list_bucket(run, u, u->node, b);
            json_t *p0 = list_bucket(run, u, peer[0]->node, b);
            json_t *p1 = list_bucket(run, u, peer[1]->node, b);
            json_t *diff = json_object();
            if (!mine || !p0 || !p1) {
                why = "a replica did not list the bucket's keys";
            } else {
                /* Keys the two peers agree on, against u's; and u's extras. */
                const char *k;
                json_t *v;
                json_object_foreach(p0, k, v)
                {
                    json_t *w = json_object_get(p1, k), *m = json_object_get(mine, k);
                    const char *h0 = json_string_value(json_object_get(v, "hash"));
                    const char *h1 = w ? json_string_value(json_object_get(w, "hash")) : NULL;
                    const char *hm = m ? json_string_value(json_object_get(m, "hash")) : NULL;
                    if (!h0 || !h1 || strcmp(h0, h1))
                        continue; /* the peers disagree: not u's rot to name */
                    if (!hm || strcmp(hm, h0))
                        json_object_set_new(diff, k,
                                            json_pack("{s:O,s:s?,s:s}", "key",
                                                      json_object_get(v, "key"), "hash", hm,
                                                      "majority_hash", h0));
                }
                json_object_foreach(mine, k,
                                    v) if (!json_object_get(p0, k) && !json_object_get(p1, k))
                    json_object_set_new(diff, k,
                                        json_pack("{s:O,s:O,s:n}", "key", json_object_get(v, "key"),
                                                  "hash", json_object_get(v, "hash"),
                                                  "majority_hash"));
            }
            seen[pass] = diff;
            json_decref(mine);
            json_decref(p0);
            json_decref(p1);
        }
        if (!why) {
            const char *k;
            json_t *v;
            json_object_foreach(seen[0], k, v)
            {
                json_t *w = json_object_get(seen[1], k);
                if (w && json_equal(v, w)) {
                    json_object_set_new(v, "bucket", json_integer(b));
                    json_array_append(keys, v);
                }
            }
        }
        json_decref(seen[0]);
        json_decref(seen[1]);
    }
    if (why)
        json_object_set_new(f, "keys_why", json_string(why));
    else if (nb > ROT_MAX_BUCKETS)
        json_object_set_new(f, "keys_why", json_string("only the first 8 buckets were listed"));
    json_object_set_new(f, "keys", keys);
}

int scrub_deep_main(int argc, char **argv)
{
    struct deep_opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : rc;
    struct deep_run run = {.o = &o};
    char lockbuf[4096];
    int lockfd;
    if (scrub_begin(o.cluster, &o.lock, lockbuf, sizeof lockbuf, &run.conf, &lockfd))
        return 2;
    int64_t t0 = clock_mono_ms();
    long long started_ms = (long long)clock_wall_ms();
    snprintf(run.id, sizeof run.id, "deep-%lld-%d", (long long)clock_wall_ms(), (int)getpid());
    run.cls = calloc(run.conf->nnodes, sizeof *run.cls);
    run.node_down = calloc(run.conf->nnodes, sizeof *run.node_down);
    if (!run.cls || !run.node_down) {
        run_free(&run);
        scrub_unlock(lockfd);
        return 2;
    }
    for (size_t i = 0; i < run.conf->nnodes; i++) {
        struct nerr ce = {0};
        run.cls[i] = scrub_client(run.conf, i, &ce);
    }
    if (discover(&run) || state_load(&run)) {
        fprintf(stderr, "nines scrub: %s\n", run.state ? "out of memory" : "no checkpoint");
        run_free(&run);
        scrub_unlock(lockfd);
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    struct sigaction old_int, old_term;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    size_t resumed = 0;
    for (size_t i = 0; i < run.nunits; i++) {
        struct unit *u = &run.units[i];
        json_t *d = state_find(run.state, u);
        if (d) {
            u->state = U_RESUMED;
            resumed++;
            u->match = json_is_true(json_object_get(d, "match"));
            u->buckets = json_incref(json_object_get(d, "buckets"));
            u->items = json_integer_value(json_object_get(d, "items"));
            u->maintained_items = json_integer_value(json_object_get(d, "maintained_items"));
            u->lsn = json_integer_value(json_object_get(d, "lsn"));
        } else if (u->node < 0) {
            undecided(u, "replica %s is not in the cluster file%s", u->replica, NULL);
        } else if (run.node_down[u->node] || !run.cls[u->node]) {
            undecided(u, "node %s unreachable%s", u->replica, NULL);
        }
    }
    if (o.resume)
        fprintf(stderr, "nines scrub: %zu replica(s) already scrubbed in %s, %zu to do\n", resumed,
                o.resume, run.nunits - resumed);
    state_save(&run); /* the checkpoint exists from the start */
    int tty = isatty(2);
    int64_t last_line = 0;
    /* One job per node at a time, nodes in parallel; every job is bounded by
     * --timeout without progress, so the loop ends. */
    for (;;) {
        if (g_stop)
            break;
        size_t live = 0;
        for (size_t n = 0; n < run.conf->nnodes; n++) {
            int busy = 0;
            for (size_t i = 0; i < run.nunits && !busy; i++)
                busy = run.units[i].state == U_RUNNING && run.units[i].node == (int)n;
            for (size_t i = 0; i < run.nunits && !busy; i++) {
                struct unit *u = &run.units[i];
                if (u->state == U_TODO && u->node == (int)n) {
                    int r = start_job(&run, u);
                    busy = r != -1; /* started, or the node is full: try later */
                }
            }
        }
        for (size_t i = 0; i < run.nunits; i++) {
            if (run.units[i].state == U_RUNNING)
                poll_job(&run, &run.units[i]);
            live += run.units[i].state == U_RUNNING || run.units[i].state == U_TODO;
        }
        if (tty && clock_mono_ms() - last_line >= PROGRESS_MS) {
            progress_line(&run, t0);
            last_line = clock_mono_ms();
        }
        if (!live)
            break;
        usleep(POLL_MS * 1000);
    }
    if (tty) {
        progress_line(&run, t0);
        fputc('\n', stderr);
    }
    int interrupted = g_stop != 0;
    if (interrupted) {
        for (size_t i = 0; i < run.nunits; i++) {
            if (run.units[i].state == U_RUNNING)
                cancel_job(&run, &run.units[i]);
            else if (run.units[i].state == U_TODO)
                undecided(&run.units[i], "interrupted before it started%s%s", NULL, NULL);
        }
    }
    state_save(&run);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);

    /* The report. */
    json_t *findings = json_array(), *und = json_array();
    size_t scrubbed = 0;
    long long bytes = 0;
    for (size_t i = 0; i < run.nunits; i++) {
        struct unit *u = &run.units[i];
        if (u->state == U_DONE) {
            scrubbed++;
            bytes += u->scanned;
        }
        if ((u->state == U_DONE || u->state == U_RESUMED) && !u->match) {
            json_t *f = json_pack("{s:s,s:i,s:s,s:s,s:O,s:I,s:I,s:I}", "table", u->table,
                                  "partition", u->partition, "replica", u->replica, "kind", "rot",
                                  "buckets", u->buckets ? u->buckets : json_null(), "items",
                                  (json_int_t)u->items, "maintained_items",
                                  (json_int_t)u->maintained_items, "lsn", (json_int_t)u->lsn);
            if (f && u->records_damaged)
                json_object_set_new(f, "digest_records", json_string("damaged"));
            /* Drill-down: the keys of those buckets whose bytes at rest
             * differ from what the other replicas agree on. */
            if (f && u->buckets)
                rot_keys(&run, u, f);
            json_array_append_new(findings, f);
        } else if (u->state == U_UNDECIDED) {
            json_array_append_new(und,
                                  json_pack("{s:s,s:i,s:s,s:s}", "table", u->table, "partition",
                                            u->partition, "replica", u->replica, "why", u->why));
        }
    }
    int nodes_down = 0;
    for (size_t i = 0; i < run.conf->nnodes; i++)
        nodes_down += run.node_down[i];
    double secs = (double)(clock_mono_ms() - t0) / 1000.0;
    size_t nf = json_array_size(findings), nu = json_array_size(und);
    char hb[32], hr[32];
    human_bytes((double)bytes, hb, sizeof hb);
    human_bytes(secs > 0 ? (double)bytes / secs : 0, hr, sizeof hr);
    printf("deep scrub %s of %s: %zu replica(s), %zu scrubbed now, %zu resumed from the "
           "checkpoint, %zu finding(s), %zu undecided; %s read in %.2f s (%s/s)%s\n",
           run.id, run.conf->name, run.nunits, scrubbed, resumed, nf, nu, hb, secs, hr,
           interrupted ? "; INTERRUPTED" : "");
    for (size_t i = 0; i < nf; i++) {
        json_t *f = json_array_get(findings, i);
        char *b = json_dumps(json_object_get(f, "buckets"), JSON_COMPACT | JSON_ENCODE_ANY);
        printf("FINDING %s partition %lld: replica %s reads back bytes that differ from its "
               "digest (rot) in buckets %s (%lld items read, %lld maintained)\n",
               json_string_value(json_object_get(f, "table")),
               (long long)json_integer_value(json_object_get(f, "partition")),
               json_string_value(json_object_get(f, "replica")), b ? b : "?",
               (long long)json_integer_value(json_object_get(f, "items")),
               (long long)json_integer_value(json_object_get(f, "maintained_items")));
        free(b);
        if (json_object_get(f, "digest_records"))
            printf("FINDING %s partition %lld: replica %s: its maintained digest and buckets "
                   "disagree with each other (a digest record damaged at rest)\n",
                   json_string_value(json_object_get(f, "table")),
                   (long long)json_integer_value(json_object_get(f, "partition")),
                   json_string_value(json_object_get(f, "replica")));
        size_t ki;
        json_t *k;
        json_array_foreach(json_object_get(f, "keys"), ki, k)
        {
            char *key = json_dumps(json_object_get(k, "key"), JSON_COMPACT | JSON_SORT_KEYS);
            const char *h = json_string_value(json_object_get(k, "hash"));
            const char *mh = json_string_value(json_object_get(k, "majority_hash"));
            printf("ROT key %s on %s: %s%.16s, the other replicas %s%.16s\n", key ? key : "?",
                   json_string_value(json_object_get(f, "replica")), h ? "hash " : "absent",
                   h ? h : "", mh ? "hash " : "absent", mh ? mh : "");
            free(key);
        }
        const char *kw = json_string_value(json_object_get(f, "keys_why"));
        if (kw)
            printf("ROT keys not all named: %s\n", kw);
    }
    for (size_t i = 0; i < nu; i++) {
        json_t *u = json_array_get(und, i);
        printf("UNDECIDED %s partition %lld replica %s: %s\n",
               json_string_value(json_object_get(u, "table")),
               (long long)json_integer_value(json_object_get(u, "partition")),
               json_string_value(json_object_get(u, "replica")),
               json_string_value(json_object_get(u, "why")));
    }
    if (nodes_down)
        printf("UNDECIDED: %d node(s) did not report their status (see above)\n", nodes_down);
    /* A table asked for by name and held by no node that answered is
     * never reported clean. */
    int missing = 0;
    for (int t = 0; t < o.ntables; t++) {
        int found = 0;
        for (size_t i = 0; i < run.nunits && !found; i++)
            found = !strcmp(run.units[i].table, o.tables[t]);
        if (!found) {
            missing++;
            printf("UNDECIDED: table %s: no node that answered holds it\n", o.tables[t]);
        }
    }
    int exit_code = nf ? 1 : (nu || nodes_down || missing || interrupted) ? 2 : 0;
    if (interrupted)
        exit_code = 2; /* the run did not finish, whatever it found so far */
    if (o.json || o.pg) {
        json_t *rep =
            json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:O,s:O,s:I,s:f,s:i,s:b}", "run", run.id, "cluster",
                      run.conf->name, "mode", "deep", "units", (json_int_t)run.nunits, "scrubbed",
                      (json_int_t)scrubbed, "resumed", (json_int_t)resumed, "findings", findings,
                      "undecided", und, "bytes", (json_int_t)bytes, "seconds", secs,
                      "nodes_unreachable", nodes_down, "interrupted", interrupted);
        if (o.json && (!rep || json_dump_file(rep, o.json, JSON_INDENT(1) | JSON_SORT_KEYS))) {
            fprintf(stderr, "nines scrub: cannot write %s: %s\n", o.json, strerror(errno));
            exit_code = 2;
        }
        struct nerr he = {0};
        if (o.pg && (!rep || scrub_history_record(o.pg, rep, started_ms, exit_code, &he))) {
            fprintf(stderr, "nines scrub: the run's history was not written: %s\n",
                    rep ? he.msg : "out of memory");
            exit_code = 2;
        }
        json_decref(rep);
    }
    json_decref(findings);
    json_decref(und);
    run_free(&run);
    scrub_unlock(lockfd);
    return exit_code;
}
