#include "store/nodelog.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "lib/invariant.h"
#include "lib/le.h"
#include "lib/log.h"

/* Record payload in the node WAL (docs/wal.md): kind[1] name_len[1]
 * name[name_len] lsn[8] then, for APPEND, the entry's bytes. HARDSTATE
 * carries the term in the lsn field and the vote as vote[4] after it. */
enum { K_APPEND = 1, K_CUT = 2, K_RESET = 3, K_DROP = 4, K_HARDSTATE = 5 };
#define HS_DATA 4
#define PREFIX_MAX (2 + NODELOG_MAX_NAME + 8)
#define NBUCKETS 1024
/* Records of a stream are tracked per run of this many node LSNs (for
 * segment release); coarser is cheaper and only delays release a little. */
#define RUN_SHIFT 10

struct ent {
    uint64_t lsn;
    size_t len;
    unsigned char *data;
};

/* A run of a stream's records: the node LSN of the first of them and the
 * highest stream lsn among them. The run is needed while max > released. */
struct run {
    uint64_t gstart, max;
};

struct stream {
    char *name;
    uint32_t hash;
    struct stream *next; /* hash chain */
    int open;
    uint64_t first, last, released; /* held: first..last (empty when first > last) */
    struct ent *ents;               /* recovered entries, until replayed */
    size_t nents, cap_ents;
    int loaded; /* ents were handed over (or dropped): no more replay */
    struct run *runs;
    size_t r0, nruns, cap_runs; /* live runs are runs[r0 .. nruns) */
    _Atomic int compact_wanted;
    int started; /* a log record (not only a hard state) was met or written */
    /* The latest hard state (has_hs: one was met or written). hs_g is the
     * node LSN of its record; hs_pin the node LSN of the latest one known
     * durable, which pins its segment (invariant 5). */
    int has_hs;
    uint64_t hs_term;
    uint32_t hs_vote;
    uint64_t hs_g, hs_pin;
};

struct nls {
    struct nodelog *nl;
    struct stream *st;
};

struct nodelog {
    char *dir;
    struct wal *w;
    struct wal_pool *pool;
    pthread_mutex_t mu;
    struct stream *tab[NBUCKETS];
    uint64_t nstreams;
    int pin_all; /* bookkeeping failed: never delete a segment again */
    /* The highest node LSN whose done callback ran with status 0: it and
     * everything before it are durable (wal.h). Written by the sync thread. */
    _Atomic uint64_t durable;
    uint64_t hs_refreshes; /* hard-state records re-appended by nodelog_tick */
};

static uint32_t hash_name(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static struct stream *find(struct nodelog *nl, const char *name, size_t n)
{
    uint32_t h = hash_name(name, n);
    for (struct stream *s = nl->tab[h % NBUCKETS]; s; s = s->next)
        if (s->hash == h && strlen(s->name) == n && !memcmp(s->name, name, n))
            return s;
    return NULL;
}

static struct stream *create(struct nodelog *nl, const char *name, size_t n)
{
    struct stream *s = calloc(1, sizeof *s);
    if (!s || !(s->name = strndup(name, n))) {
        free(s);
        return NULL;
    }
    s->hash = hash_name(name, n);
    s->first = 1;
    s->next = nl->tab[s->hash % NBUCKETS];
    nl->tab[s->hash % NBUCKETS] = s;
    nl->nstreams++;
    return s;
}

static void free_ents(struct stream *s, uint64_t after)
{
    while (s->nents && s->ents[s->nents - 1].lsn > after)
        free(s->ents[--s->nents].data);
    if (!s->nents) {
        free(s->ents);
        s->ents = NULL;
        s->cap_ents = 0;
    }
}

static void destroy(struct nodelog *nl, struct stream *s)
{
    struct stream **pp = &nl->tab[s->hash % NBUCKETS];
    while (*pp != s)
        pp = &(*pp)->next;
    *pp = s->next;
    free_ents(s, 0);
    free(s->runs);
    free(s->name);
    free(s);
    nl->nstreams--;
}

/* Records that entry lsn of s sits at node LSN g. */
static int note_run(struct stream *s, uint64_t g, uint64_t lsn)
{
    /* A stream's records come in node-log order (invariant 1's premise). */
    NINES_ASSERT(s->nruns == s->r0 || g > s->runs[s->nruns - 1].gstart);
    if (s->nruns > s->r0 && (s->runs[s->nruns - 1].gstart >> RUN_SHIFT) == (g >> RUN_SHIFT)) {
        if (lsn > s->runs[s->nruns - 1].max)
            s->runs[s->nruns - 1].max = lsn;
        return 0;
    }
    if (s->r0 && s->r0 * 2 >= s->nruns) { /* compact the released front away */
        memmove(s->runs, s->runs + s->r0, (s->nruns - s->r0) * sizeof *s->runs);
        s->nruns -= s->r0;
        s->r0 = 0;
    }
    if (s->nruns == s->cap_runs) {
        size_t nc = s->cap_runs ? s->cap_runs * 2 : 8;
        struct run *nr = realloc(s->runs, nc * sizeof *nr);
        if (!nr)
            return NERR_NOMEM;
        s->runs = nr;
        s->cap_runs = nc;
    }
    s->runs[s->nruns++] = (struct run){g, lsn};
    return 0;
}

static void release_runs(struct stream *s)
{
    while (s->r0 < s->nruns && s->runs[s->r0].max <= s->released)
        s->r0++;
    if (s->r0 == s->nruns)
        s->r0 = s->nruns = 0;
}

/* The effects of CUT and RESET on a stream's bookkeeping. */
static void do_cut(struct stream *s, uint64_t lsn)
{
    s->started = 1;
    if (lsn >= s->last)
        return;
    free_ents(s, lsn);
    /* Records after lsn are dead: they need not keep their runs. */
    for (size_t i = s->r0; i < s->nruns; i++)
        if (s->runs[i].max > lsn)
            s->runs[i].max = lsn;
    s->last = lsn;
    if (lsn < s->first)
        s->first = lsn + 1;
}

static void do_reset(struct stream *s, uint64_t lsn)
{
    s->started = 1;
    free_ents(s, 0);
    s->first = lsn + 1;
    s->last = lsn;
    if (lsn > s->released)
        s->released = lsn;
    s->r0 = s->nruns = 0; /* every earlier record is superseded */
}

static int parse(const unsigned char *p, size_t len, int *kind, const char **name, size_t *nlen,
                 uint64_t *lsn, const unsigned char **data, size_t *dlen)
{
    if (len < 2)
        return -1;
    *kind = p[0];
    *nlen = p[1];
    if (*kind < K_APPEND || *kind > K_HARDSTATE || *nlen == 0 || len < 2 + *nlen + 8)
        return -1;
    *name = (const char *)p + 2;
    if (memchr(*name, 0, *nlen))
        return -1;
    *lsn = le_get64(p + 2 + *nlen);
    *data = p + 2 + *nlen + 8;
    *dlen = len - (2 + *nlen + 8);
    if (*kind == K_HARDSTATE)
        return *dlen == HS_DATA ? 0 : -1;
    if ((*kind == K_APPEND) != (*dlen > 0) || (*kind == K_APPEND && *lsn == 0))
        return -1;
    return 0;
}

struct rec_ctx {
    struct nodelog *nl;
    struct nerr *err;
};

static int recover_one(void *arg, uint64_t g, const void *data, size_t len)
{
    struct rec_ctx *c = arg;
    struct nodelog *nl = c->nl;
    int kind;
    const char *name;
    size_t nlen, dlen;
    uint64_t lsn;
    const unsigned char *d;
    if (parse(data, len, &kind, &name, &nlen, &lsn, &d, &dlen))
        return nerr_set(c->err, NERR_CORRUPT,
                        "node log %s: record %llu is not a stream record (checksum good, "
                        "contents malformed)",
                        nl->dir, (unsigned long long)g);
    struct stream *s = find(nl, name, nlen);
    if (kind == K_DROP) {
        if (s)
            destroy(nl, s);
        return 0;
    }
    if (!s && !(s = create(nl, name, nlen)))
        return nerr_set(c->err, NERR_NOMEM, "out of memory");
    if (kind == K_HARDSTATE) {
        /* The latest wins: records of a stream come in the order written. */
        s->has_hs = 1;
        s->hs_term = lsn;
        s->hs_vote = le_get32(d);
        s->hs_g = s->hs_pin = g;
        return 0;
    }
    if (!s->started) {
        s->started = 1;
        /* The first record met starts the stream: earlier ones were released. */
        s->first = kind == K_APPEND ? lsn : lsn + 1;
        s->last = kind == K_APPEND ? lsn - 1 : lsn;
        s->released = s->first - 1;
    }
    if (kind == K_CUT) {
        /* A live cut never goes below what was released, so the records the
         * stream was started from above lsn were dead ones (their segment
         * outlived the earlier, live ones): the guess made there is too high. */
        if (lsn < s->released)
            s->released = lsn;
        do_cut(s, lsn);
        return 0;
    }
    if (kind == K_RESET) {
        do_reset(s, lsn);
        return 0;
    }
    if (lsn != s->last + 1)
        return nerr_set(c->err, NERR_CORRUPT,
                        "node log %s: record %llu appends entry %llu to stream %s, whose log "
                        "ends at %llu: entries are missing or repeated",
                        nl->dir, (unsigned long long)g, (unsigned long long)lsn, s->name,
                        (unsigned long long)s->last);
    if (s->nents == s->cap_ents) {
        size_t nc = s->cap_ents ? s->cap_ents * 2 : 64;
        struct ent *ne = realloc(s->ents, nc * sizeof *ne);
        if (!ne)
            return nerr_set(c->err, NERR_NOMEM, "out of memory");
        s->ents = ne;
        s->cap_ents = nc;
    }
    struct ent *e = &s->ents[s->nents];
    if (!(e->data = malloc(dlen)) || note_run(s, g, lsn)) {
        free(e->data);
        return nerr_set(c->err, NERR_NOMEM, "out of memory");
    }
    memcpy(e->data, d, dlen);
    e->len = dlen;
    e->lsn = lsn;
    s->nents++;
    s->last = lsn;
    if (s->first > lsn)
        s->first = lsn;
    return 0;
}

static void free_all(struct nodelog *nl)
{
    for (size_t b = 0; b < NBUCKETS; b++)
        while (nl->tab[b])
            destroy(nl, nl->tab[b]);
}

int nodelog_open(const char *dir, const struct wal_options *opt, struct nodelog **out,
                 struct nerr *err)
{
    struct nodelog *nl = calloc(1, sizeof *nl);
    int rc;
    if (!nl || !(nl->dir = strdup(dir))) {
        free(nl);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&nl->mu, NULL);
    /* One WAL: one sync thread can serve it. */
    if ((rc = wal_pool_start(1, &nl->pool, err)))
        goto fail;
    if ((rc = wal_open(dir, opt, nl->pool, &nl->w, err)))
        goto fail;
    struct rec_ctx c = {nl, err};
    uint64_t first = wal_first_lsn(nl->w);
    if (wal_last_lsn(nl->w) &&
        (rc = wal_replay(nl->w, first ? first - 1 : 0, recover_one, &c, err)))
        goto fail;
    atomic_store(&nl->durable, wal_last_lsn(nl->w)); /* what recovery read is on disk */
    *out = nl;
    return 0;
fail:
    free_all(nl);
    wal_close(nl->w);
    if (nl->pool)
        wal_pool_stop(nl->pool);
    pthread_mutex_destroy(&nl->mu);
    free(nl->dir);
    free(nl);
    return rc;
}

void nodelog_close(struct nodelog *nl)
{
    if (!nl)
        return;
    wal_close(nl->w);
    wal_pool_stop(nl->pool);
    free_all(nl);
    pthread_mutex_destroy(&nl->mu);
    free(nl->dir);
    free(nl);
}

int nodelog_stream_open(struct nodelog *nl, const char *name, struct nls **out, struct nerr *err)
{
    size_t n = strlen(name);
    if (n == 0 || n > NODELOG_MAX_NAME)
        return nerr_set(err, NERR_INVALID, "node log: bad stream name '%s'", name);
    struct nls *h = calloc(1, sizeof *h);
    if (!h)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    pthread_mutex_lock(&nl->mu);
    struct stream *s = find(nl, name, n);
    int rc = 0;
    if (s && s->open)
        rc = nerr_set(err, NERR_EXISTS, "node log: stream %s is open already", name);
    else if (!s && !(s = create(nl, name, n)))
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
    if (!rc)
        s->open = 1;
    pthread_mutex_unlock(&nl->mu);
    if (rc) {
        free(h);
        return rc;
    }
    h->nl = nl;
    h->st = s;
    *out = h;
    return 0;
}

void nls_close(struct nls *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->nl->mu);
    h->st->open = 0;
    free_ents(h->st, 0);
    h->st->loaded = 1;
    pthread_mutex_unlock(&h->nl->mu);
    free(h);
}

uint64_t nls_first_lsn(struct nls *h)
{
    pthread_mutex_lock(&h->nl->mu);
    uint64_t f = h->st->first <= h->st->last ? h->st->first : 0;
    pthread_mutex_unlock(&h->nl->mu);
    return f;
}

uint64_t nls_last_lsn(struct nls *h)
{
    pthread_mutex_lock(&h->nl->mu);
    uint64_t l = h->st->last;
    pthread_mutex_unlock(&h->nl->mu);
    return l;
}

int nls_replay(struct nls *h, uint64_t from_lsn,
               int (*cb)(void *arg, uint64_t lsn, const void *data, size_t len), void *arg,
               struct nerr *err)
{
    struct stream *s = h->st;
    pthread_mutex_lock(&h->nl->mu);
    int rc = 0;
    if (s->loaded)
        rc = nerr_set(err, NERR_BUSY, "node log: stream %s was replayed already", s->name);
    else if (from_lsn > s->last)
        rc = nerr_set(err, NERR_INVALID, "node log: stream %s ends at %llu, before %llu", s->name,
                      (unsigned long long)s->last, (unsigned long long)from_lsn);
    else if (from_lsn < s->last && (!s->nents || s->ents[0].lsn > from_lsn + 1))
        rc = nerr_set(err, NERR_NOTFOUND,
                      "node log: stream %s holds entries from %llu, %llu and on were released",
                      s->name, (unsigned long long)(s->nents ? s->ents[0].lsn : s->last + 1),
                      (unsigned long long)(from_lsn + 1));
    s->loaded = 1;
    struct ent *v = s->ents;
    size_t n = s->nents;
    s->ents = NULL;
    s->nents = s->cap_ents = 0;
    pthread_mutex_unlock(&h->nl->mu);
    for (size_t i = 0; i < n; i++) {
        if (!rc && v[i].lsn > from_lsn)
            rc = cb(arg, v[i].lsn, v[i].data, v[i].len);
        free(v[i].data);
    }
    free(v);
    return rc;
}

struct done_ctx {
    struct nodelog *nl;
    wal_done_fn done;
    void *arg;
    uint64_t lsn;
};

static void on_done(void *arg, uint64_t glsn, int status)
{
    struct done_ctx *d = arg;
    /* Callbacks run in node LSN order: no lock needed to move it forward. */
    if (!status && glsn > atomic_load(&d->nl->durable))
        atomic_store(&d->nl->durable, glsn);
    if (d->done)
        d->done(d->arg, d->lsn, status);
    free(d);
}

/* Appends one record of stream s (nl->mu held). Hard-state records always
 * report their durability to nl->durable (release_point needs it). */
static int submit(struct nodelog *nl, struct stream *s, int kind, uint64_t lsn, const void *hdr,
                  size_t hlen, const void *data, size_t len, wal_done_fn done, void *arg,
                  uint64_t *glsn)
{
    unsigned char pre[PREFIX_MAX];
    size_t nlen = strlen(s->name);
    pre[0] = (unsigned char)kind;
    pre[1] = (unsigned char)nlen;
    memcpy(pre + 2, s->name, nlen);
    le_put64(pre + 2 + nlen, lsn);
    struct iovec iov[3] = {{pre, 2 + nlen + 8}, {(void *)hdr, hlen}, {(void *)data, len}};
    struct done_ctx *d = NULL;
    if (done || kind == K_HARDSTATE) {
        if (!(d = malloc(sizeof *d)))
            return NERR_NOMEM;
        *d = (struct done_ctx){nl, done, arg, lsn};
    }
    int rc = wal_submitv(nl->w, iov, 3, d ? on_done : NULL, d, glsn);
    if (rc)
        free(d);
    return rc;
}

int nls_append(struct nls *h, const void *hdr, size_t hlen, const void *data, size_t len,
               wal_done_fn done, void *arg, uint64_t *lsn_out)
{
    struct nodelog *nl = h->nl;
    struct stream *s = h->st;
    if (hlen + len == 0 || hlen + len > WAL_MAX_PAYLOAD - PREFIX_MAX)
        return NERR_LIMIT;
    pthread_mutex_lock(&nl->mu);
    if (!s->loaded) {
        free_ents(s, 0);
        s->loaded = 1;
    }
    uint64_t lsn = s->last + 1, g = 0;
    int rc = submit(nl, s, K_APPEND, lsn, hdr, hlen, data, len, done, arg, &g);
    if (!rc) {
        s->started = 1;
        s->last = lsn;
        if (s->first > lsn)
            s->first = lsn;
        /* Entries are appended in lsn order after what was released. */
        NINES_ASSERT(lsn > s->released && s->first <= lsn);
        if (note_run(s, g, lsn) && !nl->pin_all) {
            /* Cannot track where it is: release nothing from now on. */
            log_error("node log %s: out of memory; WAL segments are kept from now on", nl->dir);
            nl->pin_all = 1;
        }
        if (lsn_out)
            *lsn_out = lsn;
    }
    pthread_mutex_unlock(&nl->mu);
    return rc;
}

void nls_waiter_init(struct nls_waiter *w)
{
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->done = w->status = 0;
}

void nls_waiter_done(void *arg, uint64_t lsn, int status)
{
    (void)lsn;
    struct nls_waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    w->status = status;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int nls_waiter_wait(struct nls_waiter *w)
{
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    nls_waiter_destroy(w);
    return w->status;
}

void nls_waiter_destroy(struct nls_waiter *w)
{
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

/* Appends a control record and waits until it is durable. */
static int control(struct nodelog *nl, struct stream *s, int kind, uint64_t lsn, struct nerr *err)
{
    struct nls_waiter w;
    nls_waiter_init(&w);
    int rc = submit(nl, s, kind, lsn, NULL, 0, NULL, 0, nls_waiter_done, &w, NULL);
    if (rc) {
        nls_waiter_destroy(&w);
        return nerr_set(err, rc, "node log %s: cannot append to stream %s", nl->dir, s->name);
    }
    pthread_mutex_unlock(&nl->mu);
    rc = nls_waiter_wait(&w);
    pthread_mutex_lock(&nl->mu);
    if (rc)
        return nerr_set(err, rc, "node log %s: stream %s: write or fdatasync failed", nl->dir,
                        s->name);
    return 0;
}

int nls_cut(struct nls *h, uint64_t lsn, struct nerr *err)
{
    struct nodelog *nl = h->nl;
    struct stream *s = h->st;
    pthread_mutex_lock(&nl->mu);
    int rc = 0;
    if (lsn < s->last) {
        if (!s->loaded) {
            free_ents(s, 0);
            s->loaded = 1;
        }
        /* The bookkeeping changes first: this thread is the stream's only
         * writer, and the record is durable before anything after it. */
        if (lsn < s->first)
            do_reset(s, lsn);
        else
            do_cut(s, lsn);
        rc = control(nl, s, K_CUT, lsn, err);
    }
    pthread_mutex_unlock(&nl->mu);
    return rc;
}

int nls_reset(struct nls *h, uint64_t last_lsn, struct nerr *err)
{
    struct nodelog *nl = h->nl;
    struct stream *s = h->st;
    pthread_mutex_lock(&nl->mu);
    if (!s->loaded) {
        free_ents(s, 0);
        s->loaded = 1;
    }
    do_reset(s, last_lsn);
    int rc = control(nl, s, K_RESET, last_lsn, err);
    pthread_mutex_unlock(&nl->mu);
    if (!rc)
        rc = nls_release(h, last_lsn, err);
    return rc;
}

/* The node LSN of the hard-state record of s that must survive: the
 * latest once it is durable, until then the one before it (which a crash
 * would fall back to); 0 when s has none (nl->mu held). */
static uint64_t hs_pin(struct nodelog *nl, struct stream *s)
{
    if (!s->has_hs)
        return 0;
    if (s->hs_g <= atomic_load(&nl->durable))
        s->hs_pin = s->hs_g;
    return s->hs_pin ? s->hs_pin : s->hs_g;
}

/* The node LSN up to which no stream needs a record (nl->mu held). */
static uint64_t release_point(struct nodelog *nl)
{
    uint64_t upto = nl->pin_all ? 0 : wal_last_lsn(nl->w);
    for (size_t b = 0; b < NBUCKETS; b++)
        for (struct stream *s = nl->tab[b]; s; s = s->next) {
            if (s->r0 < s->nruns && s->runs[s->r0].gstart - 1 < upto)
                upto = s->runs[s->r0].gstart - 1;
            uint64_t pin = hs_pin(nl, s);
            if (pin && pin - 1 < upto)
                upto = pin - 1;
        }
    return upto;
}

int nls_set_hard_state(struct nls *h, uint64_t term, uint32_t vote, wal_done_fn done, void *arg)
{
    struct nodelog *nl = h->nl;
    struct stream *s = h->st;
    unsigned char v[HS_DATA];
    le_put32(v, vote);
    pthread_mutex_lock(&nl->mu);
    /* Raft's term never goes back, nor does a vote change within a term. */
    NINES_ASSERT(!s->has_hs || term > s->hs_term ||
                 (term == s->hs_term && (!s->hs_vote || vote == s->hs_vote)));
    uint64_t g = 0;
    int rc = submit(nl, s, K_HARDSTATE, term, NULL, 0, v, sizeof v, done, arg, &g);
    if (!rc) {
        if (s->has_hs)
            hs_pin(nl, s); /* keeps the previous one's pin if it is durable */
        s->has_hs = 1;
        s->hs_term = term;
        s->hs_vote = vote;
        s->hs_g = g;
    }
    pthread_mutex_unlock(&nl->mu);
    return rc;
}

int nls_hard_state(struct nls *h, uint64_t *term, uint32_t *vote)
{
    pthread_mutex_lock(&h->nl->mu);
    int has = h->st->has_hs;
    *term = has ? h->st->hs_term : 0;
    *vote = has ? h->st->hs_vote : 0;
    pthread_mutex_unlock(&h->nl->mu);
    return has;
}

int nls_release(struct nls *h, uint64_t upto, struct nerr *err)
{
    struct nodelog *nl = h->nl;
    struct stream *s = h->st;
    pthread_mutex_lock(&nl->mu);
    if (upto > s->released)
        s->released = upto;
    if (s->first <= s->released)
        s->first = s->released + 1 <= s->last ? s->released + 1 : s->last + 1;
    release_runs(s);
    uint64_t point = release_point(nl);
    pthread_mutex_unlock(&nl->mu);
    return wal_release(nl->w, point, err);
}

int nodelog_drop(struct nodelog *nl, const char *name, struct nerr *err)
{
    size_t n = strlen(name);
    pthread_mutex_lock(&nl->mu);
    struct stream *s = find(nl, name, n);
    int rc = 0;
    if (s && s->open)
        rc = nerr_set(err, NERR_BUSY, "node log: stream %s is open", name);
    else if (s) {
        s->open = 1; /* nobody opens it while the record is written */
        rc = control(nl, s, K_DROP, 0, err);
        if (rc)
            s->open = 0;
        else
            destroy(nl, s);
    }
    uint64_t point = release_point(nl);
    pthread_mutex_unlock(&nl->mu);
    if (!rc && s)
        rc = wal_release(nl->w, point, err);
    return rc;
}

int nls_compact_wanted(struct nls *h)
{
    return atomic_load(&h->st->compact_wanted);
}

void nodelog_tick(struct nodelog *nl)
{
    struct wal_stats ws;
    wal_get_stats(nl->w, &ws);
    uint64_t end = ws.segments > NODELOG_SOFT_SEGMENTS ? wal_oldest_segment_end(nl->w) : 0;
    pthread_mutex_lock(&nl->mu);
    for (size_t b = 0; b < NBUCKETS; b++)
        for (struct stream *s = nl->tab[b]; s; s = s->next) {
            atomic_store(&s->compact_wanted,
                         end && s->r0 < s->nruns && s->runs[s->r0].gstart <= end);
            /* Invariant 5: a hard state in the oldest segment is written
             * again at the tail; the segment goes once that is durable. */
            if (end && s->has_hs && s->hs_g <= end) {
                unsigned char v[HS_DATA];
                le_put32(v, s->hs_vote);
                uint64_t g = 0;
                hs_pin(nl, s);
                if (!submit(nl, s, K_HARDSTATE, s->hs_term, NULL, 0, v, sizeof v, NULL, NULL, &g)) {
                    s->hs_g = g;
                    nl->hs_refreshes++;
                }
            }
        }
    /* Segments whose hard states an earlier tick refreshed can go now. */
    uint64_t point = end ? release_point(nl) : 0;
    pthread_mutex_unlock(&nl->mu);
    struct nerr err = {0};
    if (point && wal_release(nl->w, point, &err))
        log_warn("node log %s: releasing segments: %s", nl->dir, err.msg);
}

void nodelog_get_stats(struct nodelog *nl, struct nodelog_stats *out)
{
    wal_get_stats(nl->w, &out->wal);
    pthread_mutex_lock(&nl->mu);
    out->streams = nl->nstreams;
    out->hs_refreshes = nl->hs_refreshes;
    pthread_mutex_unlock(&nl->mu);
}
