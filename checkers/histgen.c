/*
 * histgen.c — simulated register histories with optional injected anomalies
 * (see histgen.h), and the `nines histgen` command.
 */
#include "checkers/histgen.h"
#include "checkers/cval.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

struct rng {
    uint64_t s;
};

static uint64_t rnext(struct rng *r)
{
    uint64_t x = (r->s += 0x9E3779B97F4A7C15ull);
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static double runit(struct rng *r)
{
    return (double)(rnext(r) >> 11) / 9007199254740992.0;
}

static int64_t rrange(struct rng *r, int64_t lo, int64_t hi) /* [lo, hi] */
{
    return lo + (int64_t)(rnext(r) % (uint64_t)(hi - lo + 1));
}

struct gop {
    uint32_t key;
    int64_t process;
    int64_t t_inv, t_ret, t_lin;
    uint64_t val;  /* write/cas: value written; read: value read */
    uint64_t exp;  /* cas: expected */
    uint64_t prev; /* mutations: the value before this one took effect */
    int64_t next_t; /* mutations: t_lin of the next effect on the key */
    uint32_t rnd;  /* pre-drawn randomness, so re-resolving is deterministic */
    uint8_t f, status, consistent, applied, info, corrupt, extra;
};

struct hg_events {
    struct gop *ops;
    size_t n, cap;
    uint32_t keys;
    size_t padding;
    uint64_t nvals;
    uint64_t *writer; /* value number -> op index + 1 (0 = none) */
};

void hg_opts_default(struct hg_opts *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->ops = 1000;
    o->keys = 1;
    o->processes = 5;
    o->read_rate = 0.5;
    o->info_rate = 0.01;
    o->final_reads = 1;
}

const char *hg_anomaly_name(enum hg_anomaly a)
{
    static const char *n[] = {"none", "stale-read", "lost-write", "phantom", "duplicate-write",
                              "corrupt"};
    return (unsigned)a <= HG_CORRUPT ? n[a] : "?";
}

int hg_anomaly_parse(const char *s, enum hg_anomaly *a)
{
    for (int i = 0; i <= HG_CORRUPT; i++)
        if (!strcmp(s, hg_anomaly_name((enum hg_anomaly)i))) {
            *a = (enum hg_anomaly)i;
            return 0;
        }
    return -1;
}

void hg_free(struct hg_events *ev)
{
    if (!ev)
        return;
    free(ev->ops);
    free(ev->writer);
    free(ev);
}

size_t hg_nevents(const struct hg_events *ev)
{
    size_t n = 0;
    for (size_t i = 0; i < ev->n; i++)
        n += ev->ops[i].extra ? 0 : 2;
    return n;
}

static int push(struct hg_events *ev, const struct gop *g)
{
    if (ev->n == ev->cap) {
        size_t nc = ev->cap ? ev->cap * 2 : 1024;
        struct gop *x = realloc(ev->ops, nc * sizeof *x);
        if (!x)
            return NERR_NOMEM;
        ev->ops = x;
        ev->cap = nc;
    }
    ev->ops[ev->n++] = *g;
    return 0;
}

struct lin_order {
    int64_t t;
    uint32_t i;
};

static int lo_cmp(const void *a, const void *b)
{
    const struct lin_order *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* Session floors for eventually consistent reads: (process, key) -> the
 * lowest version the process may still see. */
struct floors {
    uint64_t *k;
    uint32_t *v;
    size_t cap;
};

static uint32_t *floor_of(struct floors *f, int64_t process, uint32_t key)
{
    uint64_t k = ((uint64_t)process << 24 ^ key) + 1;
    size_t i = (size_t)((k * 0x9E3779B97F4A7C15ull) >> 20) & (f->cap - 1);
    while (f->k[i] && f->k[i] != k)
        i = (i + 1) & (f->cap - 1);
    if (!f->k[i]) {
        f->k[i] = k;
        f->v[i] = 0;
    }
    return &f->v[i];
}

/* Applies the ops in linearization-point order and fills in what each read
 * returns and whether each cas succeeds. */
static int resolve(struct hg_events *ev)
{
    struct lin_order *ord = malloc((ev->n ? ev->n : 1) * sizeof *ord);
    uint64_t *state = calloc(ev->keys, sizeof *state);
    uint32_t *last = malloc(ev->keys * sizeof *last);
    /* per-key version log, as one array of (key, t, value) in apply order */
    size_t *logn = calloc(ev->keys, sizeof *logn);
    size_t *logoff = calloc((size_t)ev->keys + 1, sizeof *logoff);
    int64_t *logt = NULL;
    uint64_t *logv = NULL;
    struct floors fl = {0};
    int rc = NERR_NOMEM;
    size_t n = 0;
    if (!ord || !state || !last || !logn || !logoff)
        goto done;
    for (uint32_t k = 0; k < ev->keys; k++)
        last[k] = UINT32_MAX;
    for (size_t i = 0; i < ev->n; i++) {
        struct gop *g = &ev->ops[i];
        int participates = g->f == HISTORY_READ ? g->status == HISTORY_S_OK : g->applied;
        if (g->f == HISTORY_CAS)
            participates = g->applied;
        if (participates) {
            ord[n].t = g->t_lin;
            ord[n].i = (uint32_t)i;
            n++;
            if (g->f != HISTORY_READ)
                logoff[g->key + 1]++;
        }
        g->next_t = INT64_MAX;
    }
    for (uint32_t k = 0; k < ev->keys; k++)
        logoff[k + 1] += logoff[k];
    logt = malloc((logoff[ev->keys] + 1) * sizeof *logt);
    logv = malloc((logoff[ev->keys] + 1) * sizeof *logv);
    fl.cap = 1024;
    while (fl.cap < ev->n * 2)
        fl.cap *= 2;
    fl.k = calloc(fl.cap, sizeof *fl.k);
    fl.v = calloc(fl.cap, sizeof *fl.v);
    if (!logt || !logv || !fl.k || !fl.v)
        goto done;
    qsort(ord, n, sizeof *ord, lo_cmp);
    for (size_t j = 0; j < n; j++) {
        struct gop *g = &ev->ops[ord[j].i];
        uint32_t k = g->key;
        int64_t *lt = logt + logoff[k];
        uint64_t *lv = logv + logoff[k];
        uint32_t *floor = g->extra ? NULL : floor_of(&fl, g->process, k);
        if (g->f == HISTORY_READ) {
            if (g->consistent) {
                g->val = state[k];
                *floor = (uint32_t)logn[k];
            } else {
                /* a replica behind by up to 2 ms, never behind the session */
                int64_t at = g->t_lin - (int64_t)(g->rnd % 2000000);
                size_t lo = 0, hi = logn[k];
                while (lo < hi) {
                    size_t mid = (lo + hi) / 2;
                    if (lt[mid] <= at)
                        lo = mid + 1;
                    else
                        hi = mid;
                }
                uint32_t ver = (uint32_t)lo;
                if (ver < *floor)
                    ver = *floor;
                g->val = ver ? lv[ver - 1] : 0;
                *floor = ver;
            }
            continue;
        }
        if (g->f == HISTORY_CAS) {
            if (!g->extra) {
                /* half the cas ops expect the current value, half an old one */
                if (g->rnd % 2 == 0 || logn[k] == 0)
                    g->exp = state[k];
                else
                    g->exp = lv[g->rnd / 2 % logn[k]];
            }
            if (g->exp != state[k]) {
                if (!g->info)
                    g->status = HISTORY_S_FAIL;
                continue;
            }
            if (!g->info)
                g->status = HISTORY_S_OK;
        }
        g->prev = state[k];
        state[k] = g->val;
        if (last[k] != UINT32_MAX)
            ev->ops[last[k]].next_t = g->t_lin;
        last[k] = ord[j].i;
        lt[logn[k]] = g->t_lin;
        lv[logn[k]] = g->val;
        logn[k]++;
        if (floor)
            *floor = (uint32_t)logn[k];
    }
    rc = 0;
done:
    free(ord);
    free(state);
    free(last);
    free(logn);
    free(logoff);
    free(logt);
    free(logv);
    free(fl.k);
    free(fl.v);
    return rc;
}

static const struct gop *writer_of(const struct hg_events *ev, uint64_t v)
{
    return v && v <= ev->nvals && ev->writer[v] ? &ev->ops[ev->writer[v] - 1] : NULL;
}

/* w completed before x began (NULL w: the initial value, before everything). */
static int precedes(const struct gop *w, const struct gop *x)
{
    return !w || (w->status == HISTORY_S_OK && !w->info && w->t_ret < x->t_inv);
}

static int sc_read(const struct gop *g)
{
    return g->f == HISTORY_READ && g->status == HISTORY_S_OK && g->consistent && !g->extra;
}

static int plain_ok_write(const struct gop *g)
{
    return g->f == HISTORY_WRITE && g->status == HISTORY_S_OK && !g->info && g->applied &&
           !g->extra;
}

static void truth_set(struct hg_truth *t, const struct hg_events *ev, const struct gop *g,
                      enum hg_anomaly a, const char *what)
{
    if (!t)
        return;
    t->anomaly = a;
    t->process = g->process;
    t->t_inv = g->t_inv;
    snprintf(t->key, sizeof t->key, "k%u", g->key);
    snprintf(t->what, sizeof t->what, "%s", what);
    (void)ev;
}

static size_t read_count(const struct hg_events *ev, uint32_t key, uint64_t v, const struct gop *skip)
{
    size_t c = 0;
    for (size_t i = 0; i < ev->n; i++) {
        const struct gop *g = &ev->ops[i];
        c += g != skip && g->key == key && g->f == HISTORY_READ && g->status == HISTORY_S_OK &&
             g->val == v && !g->extra;
    }
    return c;
}

static int inject(struct hg_events *ev, const struct hg_opts *o, struct rng *r,
                  struct hg_truth *t, struct nerr *e)
{
    size_t n = ev->n, start = (size_t)(rnext(r) % (n ? n : 1));
    char what[160];
    for (size_t step = 0; step < n; step++) {
        struct gop *g = &ev->ops[(start + step) % n];
        switch (o->anomaly) {
        case HG_NONE: return 0;
        case HG_PHANTOM:
            if (!sc_read(g))
                continue;
            g->val = ev->nvals + 1000; /* formatted with a valid checksum, never written */
            snprintf(what, sizeof what, "read returns v%llu, never written",
                     (unsigned long long)g->val);
            truth_set(t, ev, g, HG_PHANTOM, what);
            return 0;
        case HG_CORRUPT:
            if (!sc_read(g) || !g->val)
                continue;
            g->corrupt = 1;
            snprintf(what, sizeof what, "read returns v%llu with a damaged checksum",
                     (unsigned long long)g->val);
            truth_set(t, ev, g, HG_CORRUPT, what);
            return 0;
        case HG_STALE_READ: {
            if (!sc_read(g) || !g->val)
                continue;
            const struct gop *cur = writer_of(ev, g->val);
            if (!cur || cur->status != HISTORY_S_OK || cur->info || cur->t_ret >= g->t_inv)
                continue;
            const struct gop *old = writer_of(ev, cur->prev);
            if ((cur->prev && !old) || !precedes(old, cur))
                continue;
            if (read_count(ev, g->key, g->val, g) == 0)
                continue;
            snprintf(what, sizeof what, "read returns v%llu instead of v%llu",
                     (unsigned long long)cur->prev, (unsigned long long)g->val);
            g->val = cur->prev;
            truth_set(t, ev, g, HG_STALE_READ, what);
            return 0;
        }
        case HG_LOST_WRITE: {
            if (!plain_ok_write(g))
                continue;
            const struct gop *old = writer_of(ev, g->prev);
            if ((g->prev && !old) || !precedes(old, g))
                continue;
            /* cheap pre-check: a read after g completed that saw g's value
             * as the latest */
            int seen = 0;
            for (size_t i = 0; i < n && !seen; i++) {
                const struct gop *q = &ev->ops[i];
                seen = sc_read(q) && q->key == g->key && q->val == g->val &&
                       q->t_inv > g->t_ret;
            }
            if (!seen)
                continue;
            uint64_t prev = g->prev;
            g->applied = 0;
            if (resolve(ev))
                return nerr_set(e, NERR_NOMEM, "out of memory");
            int shows = 0;
            for (size_t i = 0; i < n && !shows; i++) {
                const struct gop *q = &ev->ops[i];
                shows = sc_read(q) && q->key == g->key && q->val == prev && q->t_inv > g->t_ret;
            }
            if (!shows) {
                g->applied = 1;
                if (resolve(ev))
                    return nerr_set(e, NERR_NOMEM, "out of memory");
                continue;
            }
            snprintf(what, sizeof what, "acknowledged write of v%llu never takes effect",
                     (unsigned long long)g->val);
            truth_set(t, ev, g, HG_LOST_WRITE, what);
            return 0;
        }
        case HG_DUPLICATE_WRITE: {
            if (!plain_ok_write(g) || !g->prev)
                continue;
            const struct gop *old = writer_of(ev, g->prev);
            if (!old || !plain_ok_write(old) || !precedes(old, g))
                continue;
            const struct gop *r0 = NULL;
            for (size_t i = 0; i < n; i++) {
                const struct gop *q = &ev->ops[i];
                if (sc_read(q) && q->key == g->key && q->val == g->val &&
                    (!r0 || q->t_ret < r0->t_ret))
                    r0 = q;
            }
            if (!r0)
                continue;
            int64_t T = (g->t_ret > r0->t_ret ? g->t_ret : r0->t_ret) + 1;
            if (g->next_t <= T)
                continue;
            struct gop x;
            memset(&x, 0, sizeof x);
            x.key = g->key;
            x.f = HISTORY_WRITE;
            x.val = g->prev;
            x.t_inv = x.t_ret = x.t_lin = T;
            x.applied = 1;
            x.extra = 1;
            x.status = HISTORY_S_OK;
            uint64_t oldv = g->prev;
            uint32_t key = g->key;
            size_t gi = (size_t)(g - ev->ops);
            if (push(ev, &x) || resolve(ev))
                return nerr_set(e, NERR_NOMEM, "out of memory");
            g = &ev->ops[gi];
            /* two sequential reads of the old value before any other write */
            int64_t next_w = INT64_MAX;
            for (size_t i = 0; i < n; i++) {
                const struct gop *q = &ev->ops[i];
                if (q->key == key && q->f != HISTORY_READ && q->t_inv > T && q->t_inv < next_w)
                    next_w = q->t_inv;
            }
            const struct gop *r1 = NULL;
            for (size_t i = 0; i < n; i++) {
                const struct gop *q = &ev->ops[i];
                if (sc_read(q) && q->key == key && q->val == oldv && q->t_inv > T &&
                    q->t_ret < next_w && (!r1 || q->t_ret < r1->t_ret))
                    r1 = q;
            }
            int ok = 0;
            for (size_t i = 0; r1 && i < n && !ok; i++) {
                const struct gop *q = &ev->ops[i];
                ok = sc_read(q) && q->key == key && q->val == oldv && q->t_inv > r1->t_ret &&
                     q->t_ret < next_w;
            }
            if (!ok) {
                ev->n--;
                if (resolve(ev))
                    return nerr_set(e, NERR_NOMEM, "out of memory");
                continue;
            }
            snprintf(what, sizeof what, "write of v%llu takes effect again after v%llu was read",
                     (unsigned long long)oldv, (unsigned long long)g->val);
            truth_set(t, ev, r1, HG_DUPLICATE_WRITE, what);
            return 0;
        }
        }
    }
    return nerr_set(e, NERR_NOTFOUND, "no operation can host a %s anomaly; generate more ops",
                    hg_anomaly_name(o->anomaly));
}

int hg_generate(const struct hg_opts *o, struct hg_events **out, struct hg_truth *t,
                struct nerr *e)
{
    struct hg_events *ev = calloc(1, sizeof *ev);
    struct rng r = {o->seed * 0x2545F4914F6CDD1Dull + 7};
    int64_t *next_t = NULL, *pid = NULL;
    int rc;
    if (t)
        memset(t, 0, sizeof *t);
    if (!o->keys || !o->processes || o->read_rate + o->cas_rate > 1.0 || o->keys > (1u << 24)) {
        hg_free(ev);
        return nerr_set(e, NERR_INVALID, "histgen: need keys >= 1 (< 2^24), processes >= 1, "
                                         "read-rate + cas-rate <= 1");
    }
    if (!ev)
        return nerr_set(e, NERR_NOMEM, "out of memory");
    ev->keys = o->keys;
    ev->padding = o->padding;
    next_t = calloc(o->processes, sizeof *next_t);
    pid = calloc(o->processes, sizeof *pid);
    if (!next_t || !pid)
        goto nomem;
    for (uint32_t p = 0; p < o->processes; p++) {
        pid[p] = p;
        next_t[p] = rrange(&r, 0, 100000);
    }
    int64_t tmax = 0;
    for (uint32_t i = 0; i < o->ops; i++) {
        uint32_t p = 0;
        for (uint32_t q = 1; q < o->processes; q++)
            if (next_t[q] < next_t[p])
                p = q;
        struct gop g;
        memset(&g, 0, sizeof g);
        g.key = (uint32_t)(rnext(&r) % o->keys);
        g.process = pid[p];
        double u = runit(&r);
        g.f = u < o->read_rate                ? HISTORY_READ
              : u < o->read_rate + o->cas_rate ? HISTORY_CAS
                                               : HISTORY_WRITE;
        g.consistent = g.f != HISTORY_READ || runit(&r) >= o->ec_rate;
        g.t_inv = next_t[p] + rrange(&r, 0, 100000);
        int64_t dur = rrange(&r, 50000, 1000000);
        g.t_ret = g.t_inv + dur;
        g.t_lin = g.t_inv + rrange(&r, 1, dur - 1);
        g.rnd = (uint32_t)rnext(&r);
        g.status = HISTORY_S_OK;
        g.applied = 1;
        if (g.f != HISTORY_READ)
            g.val = ++ev->nvals;
        if (runit(&r) < o->info_rate) {
            g.info = 1;
            g.status = HISTORY_S_INFO;
            /* crashed or timed out: the effect may land after the client
             * gave up, or never */
            g.applied = g.f != HISTORY_READ && (rnext(&r) & 1);
            g.t_lin = g.t_inv + rrange(&r, 1, 3 * dur);
            if (g.f == HISTORY_READ)
                g.status = HISTORY_S_INFO;
            if (rnext(&r) & 1)
                pid[p] += o->processes; /* a crashed client never comes back */
        } else if (g.f == HISTORY_WRITE && runit(&r) < o->fail_rate) {
            g.status = HISTORY_S_FAIL;
            g.applied = 0;
        }
        next_t[p] = g.t_ret + rrange(&r, 0, 50000);
        if (g.t_ret > tmax)
            tmax = g.t_ret;
        if (g.t_lin > tmax)
            tmax = g.t_lin;
        if (push(ev, &g))
            goto nomem;
    }
    if (o->final_reads) {
        int64_t fp = 0;
        for (uint32_t p = 0; p < o->processes; p++)
            if (pid[p] >= fp)
                fp = pid[p] + 1;
        for (uint32_t k = 0; k < o->keys; k++) {
            struct gop g;
            memset(&g, 0, sizeof g);
            g.key = k;
            g.process = fp;
            g.f = HISTORY_READ;
            g.consistent = 1;
            g.status = HISTORY_S_OK;
            g.t_inv = tmax + 1000 + 10 * (int64_t)k;
            g.t_lin = g.t_inv + 2;
            g.t_ret = g.t_inv + 5;
            if (push(ev, &g))
                goto nomem;
        }
    }
    ev->writer = calloc(ev->nvals + 2, sizeof *ev->writer);
    if (!ev->writer)
        goto nomem;
    for (size_t i = 0; i < ev->n; i++)
        if (ev->ops[i].f != HISTORY_READ)
            ev->writer[ev->ops[i].val] = i + 1;
    if (resolve(ev))
        goto nomem;
    rc = inject(ev, o, &r, t, e);
    if (rc)
        goto fail;
    free(next_t);
    free(pid);
    *out = ev;
    return 0;
nomem:
    rc = nerr_set(e, NERR_NOMEM, "out of memory generating a history");
fail:
    free(next_t);
    free(pid);
    hg_free(ev);
    return rc;
}

/* ---- emission ---- */

struct hev {
    int64_t t;
    uint32_t op;
    uint8_t invoke;
};

static int hev_cmp(const void *a, const void *b)
{
    const struct hev *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    if (x->invoke != y->invoke)
        return x->invoke ? -1 : 1;
    return x->op < y->op ? -1 : x->op > y->op;
}

static struct hev *sorted_events(const struct hg_events *ev, size_t *n)
{
    struct hev *v = malloc((ev->n * 2 + 1) * sizeof *v);
    size_t k = 0;
    if (!v)
        return NULL;
    for (size_t i = 0; i < ev->n; i++) {
        if (ev->ops[i].extra)
            continue;
        v[k++] = (struct hev){ev->ops[i].t_inv, (uint32_t)i, 1};
        v[k++] = (struct hev){ev->ops[i].t_ret, (uint32_t)i, 0};
    }
    qsort(v, k, sizeof *v, hev_cmp);
    *n = k;
    return v;
}

static size_t value_text(const struct hg_events *ev, const struct gop *g, uint64_t v, char *buf,
                         size_t size)
{
    char key[16];
    int kl = snprintf(key, sizeof key, "k%u", g->key);
    size_t n = cval_format(buf, size, key, (size_t)kl, v, ev->padding);
    if (g->corrupt && n < size && n > 0)
        buf[n - 1] = buf[n - 1] == '0' ? '1' : '0';
    return n;
}

/* Calls emit for each event in time order with a filled history_event. */
static int each_event(const struct hg_events *ev,
                      int (*emit)(void *arg, const struct history_event *he, const struct gop *g),
                      void *arg, struct nerr *e)
{
    size_t n = 0; /* sorted_events leaves it unset when it fails */
    struct hev *v = sorted_events(ev, &n);
    size_t cap = 64 + ev->padding * 2;
    char *b1 = malloc(cap), *b2 = malloc(cap), key[16];
    int rc = 0;
    if (!v || !b1 || !b2) {
        rc = nerr_set(e, NERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t j = 0; j < n; j++) {
        const struct gop *g = &ev->ops[v[j].op];
        struct history_event he;
        memset(&he, 0, sizeof he);
        he.process = g->process;
        he.f = (enum history_f)g->f;
        he.type = v[j].invoke ? HISTORY_INVOKE
                  : g->status == HISTORY_S_OK   ? HISTORY_OK
                  : g->status == HISTORY_S_FAIL ? HISTORY_FAIL
                                                : HISTORY_INFO;
        he.key_len = (size_t)snprintf(key, sizeof key, "k%u", g->key);
        he.key = key;
        he.has_time = 1;
        he.time = v[j].t;
        he.consistent = g->consistent;
        he.line = (uint32_t)j + 1;
        if (g->f == HISTORY_READ) {
            if (!v[j].invoke && g->status == HISTORY_S_OK) {
                he.value_kind = g->val ? HISTORY_V_TEXT : HISTORY_V_NULL;
                if (g->val) {
                    he.value_len = value_text(ev, g, g->val, b1, cap);
                    he.value = b1;
                }
            }
        } else if (g->f == HISTORY_CAS) {
            he.value_kind = g->exp ? HISTORY_V_TEXT : HISTORY_V_NULL;
            if (g->exp) {
                he.value_len = value_text(ev, g, g->exp, b1, cap);
                he.value = b1;
            }
            he.value2_kind = HISTORY_V_TEXT;
            he.value2_len = value_text(ev, g, g->val, b2, cap);
            he.value2 = b2;
        } else {
            he.value_kind = HISTORY_V_TEXT;
            he.value_len = value_text(ev, g, g->val, b1, cap);
            he.value = b1;
        }
        rc = emit(arg, &he, g);
        if (rc)
            break;
    }
done:
    free(v);
    free(b1);
    free(b2);
    return rc;
}

struct emit_builder {
    struct history_builder *b;
    struct nerr *e;
};

static int emit_builder(void *arg, const struct history_event *he, const struct gop *g)
{
    (void)g;
    struct emit_builder *x = arg;
    return history_builder_add(x->b, he, x->e);
}

int hg_history(const struct hg_events *ev, struct history **out, struct nerr *e)
{
    struct emit_builder x = {NULL, e};
    int rc = history_builder_new(&x.b, e);
    if (rc)
        return rc;
    rc = each_event(ev, emit_builder, &x, e);
    if (rc) {
        history_builder_free(x.b);
        return rc;
    }
    rc = history_builder_finish(x.b, out, e);
    if (!rc)
        snprintf((*out)->source, sizeof (*out)->source, "generated");
    return rc;
}

static void json_str(FILE *f, const char *s, size_t n)
{
    /* generated keys and values are plain ASCII without quotes */
    fputc('"', f);
    fwrite(s, 1, n, f);
    fputc('"', f);
}

struct emit_file {
    FILE *f;
};

static int emit_jsonl(void *arg, const struct history_event *he, const struct gop *g)
{
    (void)g;
    FILE *f = ((struct emit_file *)arg)->f;
    static const char *types[] = {"invoke", "ok", "fail", "info"};
    fprintf(f, "{\"process\":%lld,\"type\":\"%s\",\"f\":\"%s\",\"key\":", (long long)he->process,
            types[he->type], history_f_name(he->f));
    json_str(f, he->key, he->key_len);
    if (he->f == HISTORY_CAS) {
        fputs(",\"value\":[", f);
        if (he->value_kind == HISTORY_V_TEXT)
            json_str(f, he->value, he->value_len);
        else
            fputs("null", f);
        fputc(',', f);
        json_str(f, he->value2, he->value2_len);
        fputc(']', f);
    } else if (he->value_kind == HISTORY_V_TEXT) {
        fputs(",\"value\":", f);
        json_str(f, he->value, he->value_len);
    } else if (he->value_kind == HISTORY_V_NULL) {
        fputs(",\"value\":null", f);
    }
    if (he->f == HISTORY_READ && !he->consistent)
        fputs(",\"consistent\":false", f);
    fprintf(f, ",\"time\":%lld}\n", (long long)he->time);
    return 0;
}

int hg_write_jsonl(const struct hg_events *ev, FILE *f, struct nerr *e)
{
    struct emit_file x = {f};
    int rc = each_event(ev, emit_jsonl, &x, e);
    if (!rc && (fflush(f) || ferror(f)))
        rc = nerr_set(e, NERR_IO, "cannot write the history");
    return rc;
}

/* ---- nines histgen ---- */

static void hg_usage(FILE *f)
{
    fprintf(f,
            "usage: nines histgen [OPTIONS]\n"
            "Writes a simulated register history as JSONL (docs/history.md).\n"
            "  --ops N            operations (default 1000)\n"
            "  --keys K           keys (default 1)\n"
            "  --processes P      concurrent clients (default 5)\n"
            "  --read-rate F      share of reads (default 0.5)\n"
            "  --cas-rate F       share of cas ops (default 0)\n"
            "  --info-rate F      share of ops with unknown outcome (default 0.01)\n"
            "  --fail-rate F      share of writes rejected (default 0)\n"
            "  --ec-rate F        share of reads eventually consistent (default 0)\n"
            "  --padding N        extra bytes per value (default 0)\n"
            "  --no-final-reads   no final strongly consistent read per key\n"
            "  --anomaly A        none, stale-read, lost-write, phantom, duplicate-write, corrupt\n"
            "  --seed S           random seed (default 1)\n"
            "  -o FILE            output (default stdout)\n");
}

int histgen_main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"ops", 1, NULL, 'n'},        {"keys", 1, NULL, 'k'},     {"processes", 1, NULL, 'p'},
        {"read-rate", 1, NULL, 'r'},  {"cas-rate", 1, NULL, 'c'}, {"info-rate", 1, NULL, 'i'},
        {"fail-rate", 1, NULL, 'F'},  {"ec-rate", 1, NULL, 'E'},  {"padding", 1, NULL, 'P'},
        {"no-final-reads", 0, NULL, 'N'}, {"anomaly", 1, NULL, 'a'}, {"seed", 1, NULL, 's'},
        {"help", 0, NULL, 'h'},       {NULL, 0, NULL, 0}};
    struct hg_opts o;
    const char *path = NULL;
    int c;
    hg_opts_default(&o);
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        switch (c) {
        case 'n': o.ops = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'k': o.keys = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'p': o.processes = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'r': o.read_rate = strtod(optarg, NULL); break;
        case 'c': o.cas_rate = strtod(optarg, NULL); break;
        case 'i': o.info_rate = strtod(optarg, NULL); break;
        case 'F': o.fail_rate = strtod(optarg, NULL); break;
        case 'E': o.ec_rate = strtod(optarg, NULL); break;
        case 'P': o.padding = strtoul(optarg, NULL, 10); break;
        case 'N': o.final_reads = 0; break;
        case 's': o.seed = strtoull(optarg, NULL, 10); break;
        case 'o': path = optarg; break;
        case 'a':
            if (hg_anomaly_parse(optarg, &o.anomaly)) {
                fprintf(stderr, "nines histgen: unknown anomaly '%s'\n", optarg);
                return 2;
            }
            break;
        case 'h': hg_usage(stdout); return 0;
        default: hg_usage(stderr); return 2;
        }
    }
    struct nerr e;
    struct hg_events *ev = NULL;
    struct hg_truth t;
    nerr_clear(&e);
    if (hg_generate(&o, &ev, &t, &e)) {
        fprintf(stderr, "nines histgen: %s\n", e.msg);
        return 1;
    }
    FILE *f = path ? fopen(path, "w") : stdout;
    int rc = 0;
    if (!f) {
        perror(path);
        rc = 1;
    } else {
        if (hg_write_jsonl(ev, f, &e)) {
            fprintf(stderr, "nines histgen: %s\n", e.msg);
            rc = 1;
        }
        if (path && fclose(f)) {
            perror(path);
            rc = 1;
        }
    }
    if (t.anomaly != HG_NONE)
        fprintf(stderr, "nines histgen: injected %s on key %s: process %lld, %s\n",
                hg_anomaly_name(t.anomaly), t.key, (long long)t.process, t.what);
    hg_free(ev);
    return rc;
}
