/*
 * gameday.c — the game-day runner (contract in gameday.h).
 *
 * Two threads: the traffic (load_run, which calls on_complete for every
 * request it completes) and the caller's, which runs the steps. They share
 * struct gd_run's counters under g->mu; the step index is atomic.
 */
#include "chaos/gameday.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "chaos/cluster.h"
#include "chaos/inventory.h"
#include "chaos/lab.h"
#include "chaos/load.h"
#include "chaos/playbook.h"
#include "chaos/power.h"
#include "net/shquote.h"
#include "net/ssh.h"
#include "checkers/check.h"
#include "checkers/history.h"
#include "lib/hist.h"
#include "lib/log.h"
#include "lib/strbuf.h"
#include "proto/av.h"
#include "proto/clusterfile.h"

#define NS_PER_S 1000000000ull
#define STATUS_TIMEOUT_MS 2000
#define POLL_NS (250ull * 1000000u)
#define SSH_TIMEOUT_MS 30000
#define MAX_PARTS 256

struct step_rec {
    uint64_t start_ns, end_ns;
    uint64_t ok, errors;
    struct hist *lat;
    int done, failed;
    char error[NERR_MSG_MAX];
    /* power_off: recovery of writes */
    uint64_t off_ns;
    unsigned char affected[MAX_PARTS];
    uint64_t recovered_ns[MAX_PARTS]; /* 0: not yet */
    int n_affected, n_recovered;
    uint64_t recovery_ns;             /* 0 until every affected partition recovered */
};

struct gd_run {
    const struct gd_opts *o;
    struct playbook *pb;
    struct inventory *inv;
    struct pb_plan *plan;
    struct power_env penv;
    struct ssh_pool *pool;
    struct cluster_conf *conf;
    char dir[PATH_MAX];
    char ninesd[PATH_MAX];
    uint64_t t0;
    int *node_host; /* conf node index -> inventory host index, -1 none */

    /* traffic */
    pthread_t thr;
    int thr_started;
    struct load_opts lo;
    struct load_stats ls;
    int load_rc;
    struct nerr load_err;
    atomic_int stop_traffic, traffic_done;
    pthread_mutex_t mu;
    uint64_t total_ok, total_err; /* under mu */
    atomic_int cur;               /* the step running, -1 none */
    struct step_rec *rec;
    unsigned nparts;              /* of the traffic's table, 0 unknown */

    /* progress */
    uint64_t last_prog_ns, last_prog_ops;
    int prog_dirty;

    /* results */
    int steps_failed;
    char failure[NERR_MSG_MAX];
    json_t *verify;
    int verified;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* snprintf for messages and paths that may be cut short: a path too long
 * for PATH_MAX fails later, where it is used, with a clear error. */
static void fmt(char *buf, size_t cap, const char *f, ...) __attribute__((format(printf, 3, 4)));
static void fmt(char *buf, size_t cap, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, cap, f, ap);
    va_end(ap);
}

static double secs(uint64_t ns)
{
    return (double)ns / 1e9;
}

static int cancelled(const struct gd_run *g)
{
    return g->o->cancel && *g->o->cancel;
}

/* ---- progress ---- */

static void progress(struct gd_run *g, int force)
{
    FILE *f = g->o->progress;
    uint64_t now = mono_ns();
    uint64_t every = g->o->progress_tty ? NS_PER_S : 10 * NS_PER_S;
    if (!f || (!force && now - g->last_prog_ns < every))
        return;
    pthread_mutex_lock(&g->mu);
    uint64_t ops = g->total_ok + g->total_err, errs = g->total_err;
    pthread_mutex_unlock(&g->mu);
    double dt = g->last_prog_ns ? secs(now - g->last_prog_ns) : 0;
    double rate = dt > 0 ? (double)(ops - g->last_prog_ops) / dt : 0;
    g->last_prog_ns = now;
    g->last_prog_ops = ops;
    int cur = atomic_load(&g->cur);
    char what[120];
    if (cur >= 0 && (size_t)cur < g->plan->n)
        fmt(what, sizeof what, "step %d/%zu %s", cur + 1, g->plan->n, g->plan->a[cur].label);
    else
        fmt(what, sizeof what, "%s", cur < 0 ? "setting up" : "verifying");
    fprintf(f, "%s%s | %.0f ops/s | %llu errors | %.0fs elapsed%s", g->o->progress_tty ? "\r\033[K" : "",
            what, rate, (unsigned long long)errs, secs(now - g->t0), g->o->progress_tty ? "" : "\n");
    fflush(f);
    g->prog_dirty = g->o->progress_tty;
}

/* Ends the live line before something else is printed. */
static void progress_break(struct gd_run *g)
{
    if (g->prog_dirty && g->o->progress) {
        fputc('\n', g->o->progress);
        g->prog_dirty = 0;
    }
}

static void note(struct gd_run *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct gd_run *g, const char *fmt, ...)
{
    if (!g->o->progress)
        return;
    progress_break(g);
    va_list ap;
    va_start(ap, fmt);
    fprintf(g->o->progress, "[%6.1fs] ", secs(mono_ns() - g->t0));
    vfprintf(g->o->progress, fmt, ap);
    fputc('\n', g->o->progress);
    va_end(ap);
}

/* Sleeps until `until`, keeping the progress line alive. NERR_CLOSED when
 * cancelled. */
static int gd_sleep_until(struct gd_run *g, uint64_t until)
{
    for (;;) {
        if (cancelled(g))
            return NERR_CLOSED;
        uint64_t now = mono_ns();
        if (now >= until)
            return 0;
        uint64_t d = until - now;
        if (d > 100000000u)
            d = 100000000u;
        struct timespec ts = {0, (long)d};
        nanosleep(&ts, NULL);
        progress(g, 0);
    }
}

/* ---- traffic ---- */

static unsigned key_partition(uint64_t key, unsigned nparts)
{
    char k[32];
    fmt(k, sizeof k, "k%llu", (unsigned long long)key);
    json_t *av = json_pack("{s:s}", "S", k);
    unsigned p = av ? av_partition_of(av, nparts) : 0;
    json_decref(av);
    return p;
}

static void on_complete(void *arg, const struct load_result *r)
{
    struct gd_run *g = arg;
    /* The hook runs on load_run's own thread, between its reads of
     * opts->requests: a limit at or below what was already issued ends the
     * timed phase at once (then the final reads run). */
    if (atomic_load(&g->stop_traffic))
        g->lo.requests = 1;
    if (r->final || !r->measured)
        return;
    enum load_op op = r->req->op;
    int write = op == LOAD_PUT || op == LOAD_CAS || op == LOAD_DELETE;
    /* A cas whose condition was false got a correct answer: for
     * availability it counts as served, not as an error. */
    int served = r->ok || (r->error && strstr(r->error, "ConditionalCheckFailed"));
    pthread_mutex_lock(&g->mu);
    unsigned part = write && r->ok && g->nparts ? key_partition(r->req->key, g->nparts) : 0;
    if (served)
        g->total_ok++;
    else
        g->total_err++;
    int cur = atomic_load(&g->cur);
    if (cur >= 0 && (size_t)cur < g->plan->n) {
        struct step_rec *s = &g->rec[cur];
        if (served) {
            s->ok++;
            hist_record(s->lat, r->done_ns > r->intended_ns ? r->done_ns - r->intended_ns : 0);
        } else {
            s->errors++;
        }
    }
    if (write && r->ok && g->nparts)
        for (size_t i = 0; i < g->plan->n; i++) {
            struct step_rec *s = &g->rec[i];
            if (!s->off_ns || s->recovery_ns || !s->affected[part] || s->recovered_ns[part] ||
                r->intended_ns < s->off_ns)
                continue;
            s->recovered_ns[part] = r->done_ns;
            if (++s->n_recovered == s->n_affected)
                s->recovery_ns = r->done_ns - s->off_ns;
        }
    pthread_mutex_unlock(&g->mu);
}

static void *traffic_main(void *arg)
{
    struct gd_run *g = arg;
    struct load_hooks hooks = {on_complete, g};
    g->load_rc = load_run(&g->lo, &g->ls, &hooks, &g->load_err);
    atomic_store(&g->traffic_done, 1);
    return NULL;
}

static int traffic_opts(struct gd_run *g, struct nerr *err)
{
    const struct pb_traffic *t = &g->pb->traffic;
    char *argv[64];
    int argc = 0;
    char eps[8192] = "", mix[256] = "", rate[32], dur[32], keys[32], conc[32], to[32], parts[32],
         seed[32], hist[PATH_MAX + 16];
    size_t len = 0;
    const char *seen_az[INV_MAX_HOSTS];
    size_t nseen = 0;
    for (size_t i = 0; i < g->conf->nnodes; i++) {
        const struct cluster_node *n = &g->conf->nodes[i];
        if (g->pb->traffic.per_az) {
            size_t j;
            for (j = 0; j < nseen && strcmp(seen_az[j], n->az); j++)
                ;
            if (j < nseen)
                continue;
            seen_az[nseen++] = n->az;
        }
        len += (size_t)snprintf(eps + len, sizeof eps - len, "%shttp://%s", len ? "," : "", n->api);
        if (len >= sizeof eps)
            return nerr_set(err, NERR_LIMIT, "too many endpoints");
    }
    static const char *const ops[PB_NOPS] = {"put", "get", "cget", "cas", "delete"};
    len = 0;
    for (int i = 0; i < PB_NOPS; i++)
        if (t->mix[i] > 0)
            len += (size_t)snprintf(mix + len, sizeof mix - len, "%s%s=%g", len ? "," : "", ops[i],
                                    t->mix[i]);
    /* "For the whole run": the longest the run can take; the runner stops
     * it when the steps are done. */
    double d = t->duration_ns ? secs(t->duration_ns) : secs(g->plan->bound_ns) + 120;
    if (d > LOAD_MAX_DURATION_S)
        d = LOAD_MAX_DURATION_S;
    fmt(rate, sizeof rate, "%g", t->rate);
    fmt(dur, sizeof dur, "%.3f", d);
    fmt(keys, sizeof keys, "%llu", (unsigned long long)t->keys);
    fmt(conc, sizeof conc, "%u", t->concurrency);
    fmt(to, sizeof to, "%u", t->timeout_ms);
    fmt(parts, sizeof parts, "%u", t->partitions);
    fmt(seed, sizeof seed, "%llu", (unsigned long long)(g->plan->seed | 1));
    fmt(hist, sizeof hist, "%s/history.jsonl", g->dir);
#define A(x) argv[argc++] = (char *)(x)
    A("load");
    A("--endpoint");
    A(eps);
    A("--table");
    A(t->table);
    A("--create");
    A("--partitions");
    A(parts);
    A("--mix");
    A(mix);
    A("--dist");
    A(t->zipf ? "zipf" : "uniform");
    A("--history");
    A(hist);
    A("--rate");
    A(rate);
    A("--duration");
    A(dur);
    A("--keys");
    A(keys);
    A("--concurrency");
    A(conc);
    A("--timeout");
    A(to);
    A("--seed");
    A(seed);
    A("--final-timeout");
    A("60");
    argv[argc] = NULL;
#undef A
    return load_opts_parse(argc, argv, &g->lo, err);
}

/* ---- status ---- */

struct health {
    int nodes, nodes_up;
    int parts, parts_led, parts_full; /* led: has a leader; full: 3 live members */
    int members, members_live, members_behind;
    int table_parts;                  /* partitions of the traffic's table */
    char why[400];
};

static int fetch_merged(struct gd_run *g, json_t **merged, struct nerr *err)
{
    struct cluster_report *rep = calloc(g->conf->nnodes, sizeof *rep);
    if (!rep)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    int rc = cluster_status_fetch(g->conf, STATUS_TIMEOUT_MS, rep, err);
    if (!rc)
        rc = cluster_merge(g->conf, rep, merged, err);
    cluster_reports_free(rep, g->conf->nnodes);
    free(rep);
    return rc;
}

static void why(struct health *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void why(struct health *h, const char *fmt, ...)
{
    if (h->why[0])
        return; /* the first reason is enough */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->why, sizeof h->why, fmt, ap);
    va_end(ap);
}

static void health_eval(const json_t *m, const char *table, struct health *h)
{
    memset(h, 0, sizeof *h);
    size_t i, j;
    json_t *n, *p, *mem;
    json_array_foreach(json_object_get(m, "nodes"), i, n)
    {
        h->nodes++;
        if (json_is_true(json_object_get(n, "up")))
            h->nodes_up++;
        else
            why(h, "node %s is down", json_string_value(json_object_get(n, "id")));
    }
    json_array_foreach(json_object_get(m, "partitions"), i, p)
    {
        const char *tab = json_string_value(json_object_get(p, "table"));
        const char *grp = json_string_value(json_object_get(p, "group"));
        h->parts++;
        if (table && tab && !strcmp(tab, table))
            h->table_parts++;
        json_t *leader = json_object_get(p, "leader");
        int led = json_is_string(leader);
        if (led)
            h->parts_led++;
        else
            why(h, "group %s has no leader", grp ? grp : "?");
        json_int_t commit = -1;
        json_array_foreach(json_object_get(p, "members"), j, mem)
        {
            const char *role = json_string_value(json_object_get(mem, "role"));
            if (role && !strcmp(role, "leader") && led &&
                !strcmp(json_string_value(json_object_get(mem, "node")), json_string_value(leader)))
                commit = json_integer_value(json_object_get(mem, "commit"));
        }
        int live = 0;
        json_array_foreach(json_object_get(p, "members"), j, mem)
        {
            const char *role = json_string_value(json_object_get(mem, "role"));
            const char *node = json_string_value(json_object_get(mem, "node"));
            h->members++;
            if (role && (!strcmp(role, "leader") || !strcmp(role, "follower"))) {
                live++;
                h->members_live++;
            } else {
                why(h, "group %s: member %s is %s", grp ? grp : "?", node ? node : "?",
                    role ? role : "?");
            }
            json_t *ap = json_object_get(mem, "applied");
            if (commit >= 0 && (!json_is_integer(ap) || json_integer_value(ap) < commit)) {
                h->members_behind++;
                if (!h->why[0] && json_is_integer(ap))
                    why(h, "group %s: member %s applied %lld < leader's commit %lld",
                        grp ? grp : "?", node ? node : "?", (long long)json_integer_value(ap),
                        (long long)commit);
            }
        }
        if (live == 3)
            h->parts_full++;
    }
    if (!h->parts)
        why(h, "no group reported");
}

/* wait_healthy's test: every node answers, every group has a leader and
 * every member is a live leader or follower. */
static int healthy(const struct health *h)
{
    return h->nodes && h->nodes_up == h->nodes && h->parts && h->parts_led == h->parts &&
           h->members_live == h->members;
}

/* Polls the cluster until pred holds or timeout; the last health in *h. */
static int wait_for(struct gd_run *g, uint64_t timeout_ns, int (*pred)(const struct health *, void *),
                    void *arg, struct health *h, json_t **last, struct nerr *err)
{
    uint64_t deadline = mono_ns() + timeout_ns;
    for (;;) {
        json_t *m = NULL;
        struct nerr e = {0};
        int rc = fetch_merged(g, &m, &e);
        if (rc == NERR_NOMEM)
            return nerr_set(err, rc, "%s", e.msg);
        if (!rc) {
            health_eval(m, g->pb->traffic.table, h);
            if (pred(h, arg)) {
                if (last) {
                    json_decref(*last);
                    *last = m;
                }
                else
                    json_decref(m);
                return 0;
            }
        } else {
            memset(h, 0, sizeof *h);
            fmt(h->why, sizeof h->why, "%s", e.msg);
        }
        if (last) {
            json_decref(*last);
            *last = m;
        } else {
            json_decref(m);
        }
        if (mono_ns() >= deadline)
            return nerr_set(err, NERR_TIMEOUT, "not healthy after %.0fs: %s", secs(timeout_ns),
                            h->why[0] ? h->why : "no answer");
        if ((rc = gd_sleep_until(g, mono_ns() + POLL_NS)))
            return nerr_set(err, rc, "cancelled");
    }
}

static int pred_healthy(const struct health *h, void *arg)
{
    (void)arg;
    return healthy(h);
}

static int pred_table(const struct health *h, void *arg)
{
    unsigned want = *(unsigned *)arg;
    return healthy(h) && h->table_parts >= (int)want;
}

static int pred_replicas(const struct health *h, void *arg)
{
    (void)arg;
    return healthy(h) && h->parts_full == h->parts;
}

static int pred_caught_up(const struct health *h, void *arg)
{
    (void)arg;
    return healthy(h) && h->members_behind == 0;
}

/* The traffic table's partitions -> the inventory hosts holding a replica,
 * from a merged status. */
static void learn_partitions(struct gd_run *g, const json_t *m, unsigned char (*holds)[MAX_PARTS],
                             size_t nhosts)
{
    size_t i, j;
    json_t *p, *mem;
    unsigned n = 0;
    json_array_foreach(json_object_get(m, "partitions"), i, p)
    {
        const char *tab = json_string_value(json_object_get(p, "table"));
        json_int_t idx = json_integer_value(json_object_get(p, "partition"));
        if (!tab || strcmp(tab, g->pb->traffic.table) || idx < 0 || idx >= MAX_PARTS)
            continue;
        if ((unsigned)idx + 1 > n)
            n = (unsigned)idx + 1;
        json_array_foreach(json_object_get(p, "members"), j, mem)
        {
            const char *node = json_string_value(json_object_get(mem, "node"));
            for (size_t k = 0; node && k < g->conf->nnodes; k++)
                if (!strcmp(g->conf->nodes[k].id, node) && g->node_host[k] >= 0 &&
                    (size_t)g->node_host[k] < nhosts)
                    holds[g->node_host[k]][idx] = 1;
        }
    }
    g->nparts = n;
}

/* ---- deploy ---- */

static int write_file(const char *path, const char *text, mode_t mode, struct nerr *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return nerr_sys(err, errno, "%s", path);
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0) {
            int e = errno;
            close(fd);
            return nerr_sys(err, e, "%s", path);
        }
        off += (size_t)w;
    }
    if (close(fd))
        return nerr_sys(err, errno, "%s", path);
    return 0;
}

/* The cluster file: every inventory host is a node named after it. */
static int gen_cluster_file(struct gd_run *g, const char *path, struct nerr *err)
{
    struct strbuf b = {0};
    char name[65];
    size_t k = 0;
    for (const char *s = g->pb->name; *s && k < 64; s++)
        name[k++] = (strchr("_.-", *s) || (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
                     (*s >= 'A' && *s <= 'Z'))
                        ? *s
                        : '-';
    name[k] = 0;
    strbuf_str(&b, "# generated by nines gameday from the inventory\ncluster: ");
    strbuf_str(&b, k ? name : "gameday");
    char line[PATH_MAX + 512];
    fmt(line, sizeof line, "\nauth: none\npartitions: %d\nnodes:\n", g->pb->partitions);
    strbuf_str(&b, line);
    for (size_t i = 0; i < g->inv->n_hosts; i++) {
        const struct inv_host *h = &g->inv->hosts[i];
        int v6 = strchr(h->address, ':') != NULL;
        fmt(line, sizeof line,
                 "  - {id: %s, az: %s, rack: %s, api: \"%s%s%s:%d\", peer: \"%s%s%s:%d\", "
                 "data: \"%s/store\"}\n",
                 h->name, h->az, h->rack, v6 ? "[" : "", h->address, v6 ? "]" : "",
                 g->pb->api_port, v6 ? "[" : "", h->address, v6 ? "]" : "", g->pb->peer_port,
                 h->data);
        strbuf_str(&b, line);
    }
    char *text;
    if (strbuf_finish(&b, &text))
        return nerr_set(err, NERR_NOMEM, "out of memory");
    int rc = write_file(path, text, 0644, err);
    free(text);
    return rc;
}

/* Expands {data} and {name} in the boot script template. */
static void boot_path(const struct gd_run *g, const struct inv_host *h, char *out, size_t cap)
{
    const char *t = g->pb->boot_script ? g->pb->boot_script : NULL;
    if (!t) {
        /* The lab's convention: boot.d/ beside data/. */
        char d[PATH_MAX];
        fmt(d, sizeof d, "%s", h->data);
        size_t l = strlen(d);
        while (l > 1 && d[l - 1] == '/')
            d[--l] = 0;
        char *slash = strrchr(d, '/');
        if (slash && slash != d)
            *slash = 0;
        else if (slash)
            d[1] = 0;
        fmt(out, cap, "%s/boot.d/ninesd", d);
        return;
    }
    size_t len = 0;
    out[0] = 0;
    while (*t && len + 1 < cap) {
        if (!strncmp(t, "{data}", 6)) {
            len += (size_t)snprintf(out + len, cap - len, "%s", h->data);
            t += 6;
        } else if (!strncmp(t, "{name}", 6)) {
            len += (size_t)snprintf(out + len, cap - len, "%s", h->name);
            t += 6;
        } else {
            out[len++] = *t++;
            out[len] = 0;
        }
    }
}

static int ssh_for(struct gd_run *g, const struct inv_host *h, struct ssh_session **s,
                   struct nerr *err)
{
    struct ssh_host_opts o;
    lab_ssh_opts(h, 10000, &o);
    return ssh_pool_get(g->pool, &o, s, err);
}

/* Runs cmd on h; a non-zero exit status is an error naming the host. */
static int remote(struct gd_run *g, const struct inv_host *h, const char *cmd, struct nerr *err)
{
    struct ssh_session *s;
    struct ssh_result r = {0};
    int rc = ssh_for(g, h, &s, err);
    if (rc)
        return rc;
    if ((rc = ssh_exec(s, cmd, SSH_TIMEOUT_MS, &r, err)) == 0 && r.exit_status != 0)
        rc = nerr_set(err, NERR_IO, "%s: `%s` exited with %d: %.200s", h->name, cmd,
                      r.exit_status, r.err ? r.err : "");
    ssh_result_free(&r);
    return rc;
}

static int q(const char *s, char **out, struct nerr *err)
{
    return shquote_arg(s, out, err);
}

/* Deploys ninesd to one host in two phases, each run on every host before
 * the next: DEPLOY_STOP ends an earlier deployment's ninesd (and removes the
 * store when fresh), DEPLOY_START installs and starts the new one. Stopping
 * every old node first matters: a fresh node started while old nodes of the
 * same cluster name still ran would join them and take their data (their
 * leaders replicate the old catalog and tables to it). */
enum deploy_phase { DEPLOY_STOP = 1, DEPLOY_START = 2 };

static int deploy_host(struct gd_run *g, const struct inv_host *h, const char *cluster_path,
                       enum deploy_phase phase, struct nerr *err)
{
    char boot[PATH_MAX], bootdir[PATH_MAX], p_bin[PATH_MAX], p_conf[PATH_MAX], p_log[PATH_MAX],
        p_pid[PATH_MAX], p_store[PATH_MAX], tmp[PATH_MAX], p_new[PATH_MAX];
    char *qd = NULL, *qbin = NULL, *qconf = NULL, *qlog = NULL, *qpid = NULL, *qstore = NULL,
         *qboot = NULL, *qbootdir = NULL, *qnode = NULL, *cmd = NULL, *script = NULL,
         *qnew = NULL;
    struct ssh_session *s;
    int rc;
    boot_path(g, h, boot, sizeof boot);
    fmt(bootdir, sizeof bootdir, "%s", boot);
    char *sl = strrchr(bootdir, '/');
    if (sl && sl != bootdir)
        *sl = 0;
    fmt(p_bin, sizeof p_bin, "%s/ninesd", h->data);
    fmt(p_conf, sizeof p_conf, "%s/cluster.yaml", h->data);
    fmt(p_log, sizeof p_log, "%s/ninesd.log", h->data);
    fmt(p_pid, sizeof p_pid, "%s/ninesd.pid", h->data);
    fmt(p_store, sizeof p_store, "%s/store", h->data);
    if ((rc = q(h->data, &qd, err)) || (rc = q(p_bin, &qbin, err)) ||
        (rc = q(p_conf, &qconf, err)) || (rc = q(p_log, &qlog, err)) ||
        (rc = q(p_pid, &qpid, err)) || (rc = q(p_store, &qstore, err)) ||
        (rc = q(boot, &qboot, err)) || (rc = q(bootdir, &qbootdir, err)) ||
        (rc = q(h->name, &qnode, err)))
        goto out;
    /* A ninesd of an earlier deployment (its pid file, checked to be a
     * ninesd) goes first; the store is removed only when fresh. */
    if (asprintf(&cmd,
                 "mkdir -p %s %s && if [ -f %s ]; then p=$(cat %s); "
                 "case \"$(cat /proc/$p/cmdline 2>/dev/null | tr '\\0' ' ')\" in *ninesd*) "
                 "kill -9 \"$p\"; i=0; while [ -e /proc/$p/exe ] && [ $i -lt 100 ]; do "
                 "sleep 0.05; i=$((i+1)); done;; esac; rm -f %s; fi%s%s",
                 qd, qbootdir, qpid, qpid, qpid, g->pb->fresh ? " && rm -rf " : "",
                 g->pb->fresh ? qstore : "") < 0) {
        cmd = NULL;
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    if (phase == DEPLOY_STOP) {
        rc = remote(g, h, cmd, err);
        goto out;
    }
    /* The binary goes in under a temporary name and is renamed over the old
     * one: a binary still mapped by a dying process cannot be rewritten. */
    fmt(p_new, sizeof p_new, "%s/ninesd.new", h->data);
    if ((rc = q(p_new, &qnew, err)) || (rc = ssh_for(g, h, &s, err)) ||
        (rc = ssh_upload(s, g->ninesd, p_new, 0755, err)) ||
        (rc = ssh_upload(s, cluster_path, p_conf, 0644, err)))
        goto out;
    /* The boot script: started at every power-on (boot.d), it records its
     * pid and becomes ninesd. */
    struct strbuf b = {0};
    strbuf_str(&b, "#!/bin/sh\n# written by nines gameday: starts ninesd at power-on\necho $$ > ");
    strbuf_str(&b, qpid);
    strbuf_str(&b, "\nexec ");
    strbuf_str(&b, qbin);
    strbuf_str(&b, " --cluster ");
    strbuf_str(&b, qconf);
    strbuf_str(&b, " --node ");
    strbuf_str(&b, qnode);
    for (size_t i = 0; i < g->pb->nargs; i++) {
        char *qa;
        if ((rc = q(g->pb->ninesd_args[i], &qa, err))) {
            strbuf_free(&b);
            goto out;
        }
        strbuf_ch(&b, ' ');
        strbuf_str(&b, qa);
        free(qa);
    }
    strbuf_str(&b, " >> ");
    strbuf_str(&b, qlog);
    strbuf_str(&b, " 2>&1\n");
    if (strbuf_finish(&b, &script)) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    fmt(tmp, sizeof tmp, "%s/boot-%s.sh", g->dir, h->name);
    if ((rc = write_file(tmp, script, 0755, err)) || (rc = ssh_upload(s, tmp, boot, 0755, err)))
        goto out;
    /* What was just deployed must survive the first power cut, as a
     * package install that syncs does: fsync the files and their
     * directories (coreutils `sync FILE...`; a plain `sync` is no durability
     * point on every file system, e.g. none on a FUSE mount such as the
     * lab's labfs). DATA's fsync also makes the removal of an old store
     * durable. */
    free(cmd);
    if (asprintf(&cmd, "mv -f -- %s %s && sync -- %s %s %s %s %s", qnew, qbin, qbin, qconf, qboot,
                 qd, qbootdir) < 0) {
        cmd = NULL;
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = remote(g, h, cmd, err)))
        goto out;
    free(cmd);
    if (asprintf(&cmd, "setsid -f %s </dev/null >/dev/null 2>&1", qboot) < 0) {
        cmd = NULL;
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    rc = remote(g, h, cmd, err);
out:
    free(qd), free(qbin), free(qconf), free(qlog), free(qpid), free(qstore), free(qboot);
    free(qbootdir), free(qnode), free(cmd), free(script), free(qnew);
    return rc;
}

static void collect_logs(struct gd_run *g)
{
    char dir[PATH_MAX + 8], local[PATH_MAX + 80], remote_log[PATH_MAX];
    fmt(dir, sizeof dir, "%s/logs", g->dir);
    mkdir(dir, 0755);
    for (size_t i = 0; i < g->inv->n_hosts; i++) {
        const struct inv_host *h = &g->inv->hosts[i];
        struct ssh_session *s;
        struct nerr e = {0};
        fmt(remote_log, sizeof remote_log, "%s/ninesd.log", h->data);
        fmt(local, sizeof local, "%s/%s.ninesd.log", dir, h->name);
        if (ssh_for(g, h, &s, &e) || ssh_download(s, remote_log, local, &e))
            note(g, "logs of %s not collected: %s", h->name, e.msg);
    }
}

/* ---- steps ---- */

static int power_hosts(struct gd_run *g, const struct pb_action *a, int on, struct nerr *err)
{
    if (!on) {
        /* One instant for every host of the step (a rack, an AZ). */
        const struct inv_host **hs = calloc(a->nhosts ? a->nhosts : 1, sizeof *hs);
        if (!hs)
            return nerr_set(err, NERR_NOMEM, "out of memory");
        for (size_t i = 0; i < a->nhosts; i++)
            hs[i] = &g->inv->hosts[a->hosts[i]];
        int rc = power_off_group(&g->penv, hs, a->nhosts, a->mode, err);
        for (size_t i = 0; i < a->nhosts; i++)
            ssh_pool_reset(g->pool, hs[i]->address);
        free(hs);
        return rc;
    }
    for (size_t i = 0; i < a->nhosts; i++) {
        const struct inv_host *h = &g->inv->hosts[a->hosts[i]];
        int rc = power_on(&g->penv, h, err);
        if (rc)
            return rc;
        ssh_pool_reset(g->pool, h->address);
    }
    return 0;
}

static int run_action(struct gd_run *g, size_t idx, struct nerr *err)
{
    const struct pb_action *a = &g->plan->a[idx];
    struct step_rec *r = &g->rec[idx];
    uint64_t deadline = mono_ns() + a->timeout_ns;
    char what[512];
    pb_action_what(a, g->inv, what, sizeof what);
    note(g, "step %d/%zu %s %s", a->index, g->plan->n, a->label,
         a->kind == PB_POWER_OFF || a->kind == PB_POWER_ON ? what : "");
    int rc = 0;
    switch (a->kind) {
    case PB_POWER_OFF:
        if ((rc = power_hosts(g, a, 0, err)))
            break;
        pthread_mutex_lock(&g->mu);
        r->off_ns = mono_ns();
        pthread_mutex_unlock(&g->mu);
        if (a->hold_ns) {
            if ((rc = gd_sleep_until(g, r->off_ns + a->hold_ns)))
                break;
            rc = power_hosts(g, a, 1, err);
        }
        break;
    case PB_POWER_ON:
        rc = power_hosts(g, a, 1, err);
        break;
    case PB_SLEEP:
        rc = gd_sleep_until(g, mono_ns() + a->hold_ns);
        break;
    case PB_WAIT_HEALTHY: {
        struct health h;
        rc = wait_for(g, a->timeout_ns, pred_healthy, NULL, &h, NULL, err);
        break;
    }
    default:
        break;
    }
    if (rc == NERR_CLOSED)
        return nerr_set(err, rc, "cancelled");
    if (!rc && mono_ns() > deadline)
        rc = nerr_set(err, NERR_TIMEOUT, "step overran its timeout of %.1fs", secs(a->timeout_ns));
    return rc;
}

/* The power-off a host got, in the report's words: what the lab driver
 * resolves a default mode to, or "power" for a driver that cuts real power. */
static const char *off_mode_word(const struct inv_host *h, enum power_off_mode m)
{
    if (h->power.driver != INV_DRIVER_LAB)
        return "power";
    if (m != POWER_OFF_DEFAULT)
        return power_off_mode_name(m);
    if (!h->power.fs)
        return "kill";
    return h->power.fs_mode == INV_FS_TORN ? "torn" : "crash";
}

/* Whatever happened: every host the driver says is off goes on again. */
static void power_all_on(struct gd_run *g)
{
    for (size_t i = 0; i < g->inv->n_hosts; i++) {
        const struct inv_host *h = &g->inv->hosts[i];
        enum power_state st = POWER_UNKNOWN;
        struct nerr e = {0};
        if (power_status(&g->penv, h, &st, NULL, 0, &e)) {
            note(g, "power status of %s: %s", h->name, e.msg);
            continue;
        }
        if (st != POWER_OFF)
            continue;
        note(g, "powering %s back on", h->name);
        if (power_on(&g->penv, h, &e))
            note(g, "power on %s failed: %s", h->name, e.msg);
        ssh_pool_reset(g->pool, h->address);
    }
}

/* ---- verification ---- */

static json_t *verify_checkers(struct gd_run *g, int *ok)
{
    char path[PATH_MAX + 16];
    struct history *h = NULL;
    struct chk_result *res = NULL;
    struct nerr e = {0};
    json_t *j = json_object();
    struct chk_opts co;
    memset(&co, 0, sizeof co);
    co.lin.time_limit = 60;
    co.lin.memory_limit = (size_t)1024 << 20;
    fmt(path, sizeof path, "%s/history.jsonl", g->dir);
    *ok = 0;
    if (history_load_file(path, &h, &e) || chk_run(h, &co, &res, &e)) {
        json_object_set_new(j, "error", json_string(e.msg));
        goto out;
    }
    *ok = res->verdict == CHK_VALID;
    json_object_set_new(j, "verdict", json_string(chk_verdict_name(res->verdict)));
    json_object_set_new(j, "acked_writes", json_integer((json_int_t)res->acked_writes));
    json_object_set_new(j, "verified_writes", json_integer((json_int_t)res->verified_writes));
    json_object_set_new(j, "unverified_keys", json_integer(res->unverified_keys));
    json_t *counts = json_object();
    for (int k = 0; k < CHK_NKINDS; k++)
        json_object_set_new(counts, chk_kind_name((enum chk_kind)k),
                            json_integer((json_int_t)res->counts[k]));
    json_object_set_new(j, "anomalies", counts);
    json_t *first = json_array();
    for (size_t i = 0; i < res->nanomalies && i < 20; i++) {
        char d[600];
        chk_op_describe(h, res->anomalies[i].op, d, sizeof d);
        json_array_append_new(first,
                              json_pack("{s:s,s:s,s:s}", "kind",
                                        chk_kind_name(res->anomalies[i].kind), "detail",
                                        res->anomalies[i].detail, "op", d));
    }
    json_object_set_new(j, "first", first);
out:
    json_object_set_new(j, "passed", json_boolean(*ok));
    chk_result_free(res);
    history_free(h);
    return j;
}

static json_t *verify_status(struct gd_run *g, int (*pred)(const struct health *, void *),
                             const char *what, int *ok)
{
    struct health h;
    struct nerr e = {0};
    *ok = !wait_for(g, g->pb->verify.timeout_ns, pred, NULL, &h, NULL, &e);
    return json_pack("{s:b,s:s,s:i,s:i,s:i,s:i,s:s}", "passed", *ok, "check", what, "groups",
                     h.parts, "groups_with_leader", h.parts_led, "groups_with_3_live", h.parts_full,
                     "members_behind", h.members_behind, "detail", *ok ? "" : e.msg);
}

/* ---- report ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static json_t *report_json(struct gd_run *g, int passed, double elapsed)
{
    json_t *steps = json_array();
    uint64_t rec[PB_MAX_STEPS];
    size_t nrec = 0, nmissing = 0;
    for (size_t i = 0; i < g->plan->n; i++) {
        const struct pb_action *a = &g->plan->a[i];
        const struct step_rec *r = &g->rec[i];
        json_t *hosts = json_array();
        for (size_t k = 0; k < a->nhosts; k++)
            json_array_append_new(hosts, json_string(g->inv->hosts[a->hosts[k]].name));
        json_t *s = json_pack("{s:i,s:s,s:s,s:o,s:b,s:b}", "index", a->index, "label", a->label,
                              "kind", pb_kind_name(a->kind), "hosts", hosts, "done", r->done,
                              "failed", r->failed);
        if (r->done) {
            json_object_set_new(s, "start_s", json_real(secs(r->start_ns - g->t0)));
            json_object_set_new(s, "end_s", json_real(secs(r->end_ns - g->t0)));
        }
        if (a->hold_ns)
            json_object_set_new(s, "hold_s", json_real(secs(a->hold_ns)));
        if (a->kind == PB_POWER_OFF && a->nhosts)
            json_object_set_new(s, "mode",
                                json_string(off_mode_word(&g->inv->hosts[a->hosts[0]], a->mode)));
        json_object_set_new(s, "ok", json_integer((json_int_t)r->ok));
        json_object_set_new(s, "errors", json_integer((json_int_t)r->errors));
        json_object_set_new(s, "p99_ms", hist_count(r->lat)
                                             ? json_real((double)hist_percentile(r->lat, 99) / 1e6)
                                             : json_null());
        if (r->off_ns) {
            json_object_set_new(s, "affected_partitions", json_integer(r->n_affected));
            json_object_set_new(s, "recovery_s",
                                r->recovery_ns ? json_real(secs(r->recovery_ns)) : json_null());
            if (r->recovery_ns)
                rec[nrec++] = r->recovery_ns;
            else if (r->n_affected)
                nmissing++;
        }
        if (r->error[0])
            json_object_set_new(s, "error", json_string(r->error));
        json_array_append_new(steps, s);
    }
    json_t *recj = json_object();
    qsort(rec, nrec, sizeof rec[0], cmp_u64);
    json_object_set_new(recj, "rounds", json_integer((json_int_t)nrec));
    json_object_set_new(recj, "unrecovered", json_integer((json_int_t)nmissing));
    json_object_set_new(recj, "median_s",
                        nrec ? json_real(secs(nrec % 2 ? rec[nrec / 2]
                                                       : (rec[nrec / 2 - 1] + rec[nrec / 2]) / 2))
                             : json_null());
    json_object_set_new(recj, "max_s", nrec ? json_real(secs(rec[nrec - 1])) : json_null());
    json_t *traffic = json_pack("{s:s,s:f,s:I,s:I}", "table", g->pb->traffic.table, "rate",
                                g->pb->traffic.rate, "ok", (json_int_t)g->total_ok, "errors",
                                (json_int_t)g->total_err);
    if (g->thr_started) {
        json_object_set_new(traffic, "final_keys", json_integer((json_int_t)g->ls.final_keys));
        json_object_set_new(traffic, "final_failed", json_integer((json_int_t)g->ls.final_failed));
    }
    json_t *r = json_pack("{s:s,s:s,s:I,s:s,s:b,s:f,s:o,s:o,s:o}", "playbook", g->pb->path,
                          "name", g->pb->name, "seed", (json_int_t)g->plan->seed, "inventory",
                          g->inv->path ? g->inv->path : g->inv->name, "passed", passed,
                          "elapsed_s", elapsed, "steps", steps, "recovery", recj, "traffic",
                          traffic);
    json_object_set(r, "verify", g->verify ? g->verify : json_null());
    json_object_set_new(r, "failure", g->failure[0] ? json_string(g->failure) : json_null());
    return r;
}

static void print_summary(struct gd_run *g, const json_t *rep, FILE *f)
{
    size_t i;
    json_t *s;
    fprintf(f, "\ngame day %s  seed %llu  report %s\n", g->pb->name,
            (unsigned long long)g->plan->seed, g->dir);
    fprintf(f, "%4s %8s  %-34s %-28s %8s %7s %9s %9s\n", "step", "at", "what", "hit", "ok",
            "errors", "p99 ms", "recovery");
    json_array_foreach(json_object_get(rep, "steps"), i, s)
    {
        char hit[256] = "", p99[32] = "-", recov[32] = "-", at[32] = "-";
        size_t k, len = 0;
        json_t *hn;
        json_array_foreach(json_object_get(s, "hosts"), k, hn)
            if (len < sizeof hit)
                len += (size_t)snprintf(hit + len, sizeof hit - len, "%s%s", k ? "," : "",
                                        json_string_value(hn));
        if (!hit[0])
            fmt(hit, sizeof hit, "-");
        json_t *v = json_object_get(s, "p99_ms");
        if (json_is_number(v))
            fmt(p99, sizeof p99, "%.1f", json_number_value(v));
        v = json_object_get(s, "recovery_s");
        if (json_is_number(v))
            fmt(recov, sizeof recov, "%.2fs", json_number_value(v));
        else if (json_object_get(s, "affected_partitions"))
            fmt(recov, sizeof recov, "none");
        v = json_object_get(s, "start_s");
        if (json_is_number(v))
            fmt(at, sizeof at, "%.1fs", json_number_value(v));
        fprintf(f, "%4lld %8s  %-34.34s %-28.28s %8lld %7lld %9s %9s%s%s\n",
                (long long)json_integer_value(json_object_get(s, "index")), at,
                json_string_value(json_object_get(s, "label")), hit,
                (long long)json_integer_value(json_object_get(s, "ok")),
                (long long)json_integer_value(json_object_get(s, "errors")), p99, recov,
                json_is_true(json_object_get(s, "failed")) ? "  FAILED: " : "",
                json_is_true(json_object_get(s, "failed"))
                    ? json_string_value(json_object_get(s, "error"))
                    : "");
    }
    json_t *rj = json_object_get(rep, "recovery");
    if (json_integer_value(json_object_get(rj, "rounds")))
        fprintf(f, "recovery (power off -> first write to the affected partitions): %lld rounds, "
                   "median %.2fs, max %.2fs%s\n",
                (long long)json_integer_value(json_object_get(rj, "rounds")),
                json_number_value(json_object_get(rj, "median_s")),
                json_number_value(json_object_get(rj, "max_s")),
                json_integer_value(json_object_get(rj, "unrecovered")) ? " (some never recovered)"
                                                                       : "");
    json_t *vj = json_object_get(rep, "verify");
    const char *key;
    json_t *v;
    json_object_foreach(vj, key, v)
    {
        const char *detail = json_string_value(json_object_get(v, "detail"));
        const char *err = json_string_value(json_object_get(v, "error"));
        fprintf(f, "verify %-10s %s", key, json_is_true(json_object_get(v, "passed")) ? "PASS" : "FAIL");
        if (!strcmp(key, "checkers") && json_object_get(v, "verdict")) {
            json_t *an = json_object_get(v, "anomalies"), *cnt;
            const char *kind;
            long long lost = json_integer_value(json_object_get(an, "lost-write")), other = 0;
            json_object_foreach(an, kind, cnt)
                other += strcmp(kind, "lost-write") ? json_integer_value(cnt) : 0;
            fprintf(f, " (%s; %lld acknowledged writes, %lld lost writes, %lld other anomalies)",
                    json_string_value(json_object_get(v, "verdict")),
                    (long long)json_integer_value(json_object_get(v, "acked_writes")), lost, other);
        }
        if (detail && *detail)
            fprintf(f, ": %s", detail);
        if (err)
            fprintf(f, ": %s", err);
        fputc('\n', f);
        json_t *first = json_object_get(v, "first");
        size_t k;
        json_t *a;
        json_array_foreach(first, k, a)
        {
            if (k >= 5)
                break;
            fprintf(f, "  %s: %s\n", json_string_value(json_object_get(a, "kind")),
                    json_string_value(json_object_get(a, "detail")));
        }
    }
    if (g->failure[0])
        fprintf(f, "run failed: %s\n", g->failure);
    fprintf(f, "%s\n", json_is_true(json_object_get(rep, "passed")) ? "PASSED" : "FAILED");
}

/* ---- the run ---- */

static void find_ninesd(struct gd_run *g)
{
    if (g->o->ninesd) {
        fmt(g->ninesd, sizeof g->ninesd, "%s", g->o->ninesd);
        return;
    }
    if (g->pb->ninesd) {
        fmt(g->ninesd, sizeof g->ninesd, "%s", g->pb->ninesd);
        return;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        fmt(g->ninesd, sizeof g->ninesd, "ninesd");
        return;
    }
    self[n] = 0;
    char *sl = strrchr(self, '/');
    if (sl)
        *sl = 0;
    fmt(g->ninesd, sizeof g->ninesd, "%s/ninesd", self);
    if (access(g->ninesd, X_OK)) /* a test binary in build/t: the daemon is in build/bin */
        fmt(g->ninesd, sizeof g->ninesd, "%s/../bin/ninesd", self);
}

static int setup(struct gd_run *g, struct nerr *err)
{
    const struct gd_opts *o = g->o;
    struct pb_errors errs = {0};
    int rc;
    if ((rc = playbook_load(o->playbook, NULL, 0, NULL, &g->pb, &errs, err)))
        goto out;
    const char *invp = o->inventory ? o->inventory : g->pb->inventory;
    if (!invp) {
        rc = nerr_set(err, NERR_INVALID, "%s: no inventory (give --inventory FILE)", o->playbook);
        goto out;
    }
    if ((rc = inventory_load(invp, &g->inv, err)) ||
        (rc = playbook_check_inventory(g->pb, g->inv, NULL, err)) ||
        (rc = playbook_plan(g->pb, g->inv, o->seed, &g->plan, err)))
        goto out;
    if (o->report_dir)
        fmt(g->dir, sizeof g->dir, "%s", o->report_dir);
    else
        fmt(g->dir, sizeof g->dir, "gameday-%s-%llu", g->pb->name,
                 (unsigned long long)o->seed);
    if (mkdir(g->dir, 0755) && errno != EEXIST) {
        rc = nerr_sys(err, errno, "%s", g->dir);
        goto out;
    }
    if (!(g->rec = calloc(g->plan->n + 1, sizeof *g->rec))) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < g->plan->n; i++) {
        if (!(g->rec[i].lat = malloc(sizeof *g->rec[i].lat))) {
            rc = nerr_set(err, NERR_NOMEM, "out of memory");
            goto out;
        }
        hist_init(g->rec[i].lat);
    }
    find_ninesd(g);
    rc = ssh_pool_new(8, 30000, &g->pool, err);
out:
    pb_errors_free(&errs);
    return rc;
}

static int deploy(struct gd_run *g, struct nerr *err)
{
    char path[PATH_MAX + 16];
    int rc;
    if (g->pb->deploy) {
        if (access(g->ninesd, X_OK))
            return nerr_sys(err, errno, "ninesd %s", g->ninesd);
        fmt(path, sizeof path, "%s/cluster.yaml", g->dir);
        if ((rc = gen_cluster_file(g, path, err)))
            return rc;
    } else {
        fmt(path, sizeof path, "%s", g->pb->cluster_file);
    }
    if ((rc = cluster_conf_load(path, &g->conf, err)))
        return rc;
    if (!(g->node_host = calloc(g->conf->nnodes + 1, sizeof *g->node_host)))
        return nerr_set(err, NERR_NOMEM, "out of memory");
    for (size_t i = 0; i < g->conf->nnodes; i++) {
        const struct cluster_node *n = &g->conf->nodes[i];
        g->node_host[i] = -1;
        for (size_t h = 0; h < g->inv->n_hosts; h++)
            if (!strcmp(g->inv->hosts[h].name, n->id) ||
                !strcmp(g->inv->hosts[h].address, n->api_host))
                g->node_host[i] = (int)h;
    }
    if (g->pb->deploy) {
        note(g, "deploying %s to %zu hosts", g->ninesd, g->inv->n_hosts);
        for (int phase = DEPLOY_STOP; phase <= DEPLOY_START; phase++)
            for (size_t i = 0; i < g->inv->n_hosts; i++) {
                if (cancelled(g))
                    return nerr_set(err, NERR_CLOSED, "cancelled");
                if ((rc = deploy_host(g, &g->inv->hosts[i], path, (enum deploy_phase)phase,
                                      err)))
                    return rc;
            }
    }
    struct health h;
    uint64_t t = mono_ns();
    if ((rc = wait_for(g, 60 * NS_PER_S, pred_healthy, NULL, &h, NULL, err)))
        return rc;
    note(g, "cluster healthy after %.1fs: %d groups", secs(mono_ns() - t), h.parts);
    return 0;
}

static int start_traffic(struct gd_run *g, struct nerr *err)
{
    int rc = traffic_opts(g, err);
    if (rc)
        return rc;
    if ((rc = pthread_create(&g->thr, NULL, traffic_main, g)))
        return nerr_sys(err, rc, "pthread_create");
    g->thr_started = 1;
    /* Wait for the table (load --create makes it) with every partition led,
     * and learn its placement for the recovery measurement. */
    unsigned want = g->pb->traffic.partitions;
    struct health h;
    json_t *m = NULL;
    if ((rc = wait_for(g, 60 * NS_PER_S, pred_table, &want, &h, &m, err))) {
        json_decref(m);
        return rc;
    }
    unsigned char(*holds)[MAX_PARTS] = calloc(g->inv->n_hosts + 1, sizeof *holds);
    if (!holds) {
        json_decref(m);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    pthread_mutex_lock(&g->mu);
    learn_partitions(g, m, holds, g->inv->n_hosts);
    for (size_t i = 0; i < g->plan->n; i++) {
        const struct pb_action *a = &g->plan->a[i];
        if (a->kind != PB_POWER_OFF)
            continue;
        for (size_t k = 0; k < a->nhosts; k++)
            for (unsigned p = 0; p < g->nparts; p++)
                if (holds[a->hosts[k]][p] && !g->rec[i].affected[p]) {
                    g->rec[i].affected[p] = 1;
                    g->rec[i].n_affected++;
                }
    }
    pthread_mutex_unlock(&g->mu);
    free(holds);
    json_decref(m);
    note(g, "traffic running: table %s with %u partitions, %.0f requests/s",
         g->pb->traffic.table, g->nparts, g->pb->traffic.rate);
    return 0;
}

static void stop_traffic(struct gd_run *g)
{
    if (!g->thr_started)
        return;
    atomic_store(&g->stop_traffic, 1);
    note(g, "stopping traffic; reading every key");
    while (!atomic_load(&g->traffic_done)) {
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
        progress(g, 0);
    }
    pthread_join(g->thr, NULL);
    g->thr_started = 2; /* joined */
}

int gameday_run(const struct gd_opts *o, int *passed, struct nerr *err)
{
    struct gd_run g_, *g = &g_;
    memset(g, 0, sizeof *g);
    g->o = o;
    g->t0 = mono_ns();
    atomic_init(&g->cur, -1);
    atomic_init(&g->stop_traffic, 0);
    atomic_init(&g->traffic_done, 0);
    pthread_mutex_init(&g->mu, NULL);
    power_env_default(&g->penv);
    *passed = 0;
    int rc = setup(g, err), run_rc = 0;
    if (rc)
        goto out;
    note(g, "game day %s: seed %llu, %zu steps, report in %s", g->pb->name,
         (unsigned long long)g->plan->seed, g->plan->n, g->dir);
    struct nerr e = {0};
    if ((run_rc = deploy(g, &e)) || (g->pb->traffic.enabled && (run_rc = start_traffic(g, &e)))) {
        fmt(g->failure, sizeof g->failure, "set-up: %s", e.msg);
        goto cleanup;
    }
    for (size_t i = 0; i < g->plan->n; i++) {
        struct step_rec *r = &g->rec[i];
        r->start_ns = mono_ns();
        atomic_store(&g->cur, (int)i);
        nerr_clear(&e);
        int src = run_action(g, i, &e);
        r->end_ns = mono_ns();
        r->done = 1;
        if (src) {
            r->failed = 1;
            fmt(r->error, sizeof r->error, "%s", e.msg);
            g->steps_failed++;
            fmt(g->failure, sizeof g->failure, "step %d (%s): %s", g->plan->a[i].index,
                     g->plan->a[i].label, e.msg);
            note(g, "step %d failed: %s", g->plan->a[i].index, e.msg);
            break;
        }
    }
    atomic_store(&g->cur, (int)g->plan->n);
cleanup:
    power_all_on(g);
    stop_traffic(g);
    if (g->thr_started && g->load_rc && !g->failure[0])
        fmt(g->failure, sizeof g->failure, "traffic: %s", g->load_err.msg);
    if (g->conf && !cancelled(g)) {
        int ok1 = 1, ok2 = 1, ok3 = 1;
        g->verify = json_object();
        if (g->pb->verify.checkers && g->thr_started)
            json_object_set_new(g->verify, "checkers", verify_checkers(g, &ok1));
        if (g->pb->verify.replicas)
            json_object_set_new(g->verify, "replicas",
                                verify_status(g, pred_replicas, "every partition has three "
                                                                "healthy replicas", &ok2));
        if (g->pb->verify.caught_up)
            json_object_set_new(g->verify, "caught_up",
                                verify_status(g, pred_caught_up,
                                              "every replica applied its leader's commit", &ok3));
        g->verified = ok1 && ok2 && ok3;
    }
    if (g->pb->deploy && g->conf)
        collect_logs(g);
    if (cancelled(g) && !g->failure[0])
        fmt(g->failure, sizeof g->failure, "cancelled");
    {
        int ok = g->verified && !g->steps_failed && !g->failure[0];
        json_t *rep = report_json(g, ok, secs(mono_ns() - g->t0));
        char path[PATH_MAX + 16];
        fmt(path, sizeof path, "%s/report.json", g->dir);
        progress_break(g);
        if (json_dump_file(rep, path, JSON_INDENT(2) | JSON_SORT_KEYS))
            rc = nerr_set(err, NERR_IO, "cannot write %s", path);
        if (o->out)
            print_summary(g, rep, o->out);
        json_decref(rep);
        *passed = ok;
    }
    if (!rc && cancelled(g))
        rc = nerr_set(err, NERR_CLOSED, "cancelled");
out:
    if (g->thr_started == 1)
        stop_traffic(g);
    if (g->rec)
        for (size_t i = 0; i < g->plan->n; i++)
            free(g->rec[i].lat);
    free(g->rec);
    free(g->node_host);
    json_decref(g->verify);
    if (g->conf)
        cluster_conf_free(g->conf);
    load_opts_free(&g->lo);
    ssh_pool_free(g->pool);
    pb_plan_free(g->plan);
    inventory_free(g->inv);
    playbook_free(g->pb);
    pthread_mutex_destroy(&g->mu);
    return rc;
}
