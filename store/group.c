#include "store/group.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"
#include "store/overlay.h"

/* One accepted proposal on its way from the WAL to the applier. */
struct gentry {
    struct group *g;
    uint64_t lsn;
    int status;
    void *op;
    group_done_fn done;
    void *arg;
    struct gentry *next;
};

struct group_host {
    struct state *st;
    struct wal_pool *pool;
    struct overlay *ov;
    pthread_t applier;
    pthread_mutex_t mu;
    pthread_cond_t cv;        /* applier: work, barrier or stop */
    pthread_cond_t committed; /* barrier waiters */
    struct gentry *head, *tail; /* durable entries waiting to be applied */
    int stopping;
    int failed;       /* an LMDB commit failed: nothing more is applied */
    int barriers;     /* threads waiting in group_host_barrier */
    int txn_open;     /* the applier holds uncommitted applied entries */
    uint64_t commit_seq;
    /* Applier-only state. */
    MDB_txn *txn;
    struct timespec txn_start;
    struct group **touched; /* groups with entries in the open transaction */
    size_t ntouched, cap_touched;
};

struct group {
    struct group_host *h;
    char *name;
    struct wal *wal;
    const struct group_sm *sm;
    void *sm_arg;
    pthread_mutex_t mu;
    pthread_cond_t idle;
    long inflight;
    int closing;
    _Atomic uint64_t applied;
    /* Release bookkeeping, touched only by the applier thread. */
    uint64_t applied_lsn;   /* applier: last LSN applied (committed or not) */
    uint64_t committed_lsn; /* applier: applied LSN of the last commit */
    time_t last_release;
    int touched;            /* in h->touched */
};

static void *applier_main(void *arg);

int group_host_start(struct state *st, int sync_threads, struct group_host **out,
                     struct nerr *err)
{
    struct group_host *h = calloc(1, sizeof *h);
    int rc;
    if (!h)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    h->st = st;
    if (!(h->ov = overlay_new())) {
        free(h);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&h->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* txn_start is monotonic */
    pthread_cond_init(&h->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&h->committed, NULL);
    rc = wal_pool_start(sync_threads > 0 ? sync_threads : 4, &h->pool, err);
    if (rc)
        goto fail;
    if (pthread_create(&h->applier, NULL, applier_main, h) != 0) {
        wal_pool_stop(h->pool);
        rc = nerr_set(err, NERR_IO, "cannot start the applier thread");
        goto fail;
    }
    *out = h;
    return 0;
fail:
    pthread_cond_destroy(&h->cv);
    pthread_cond_destroy(&h->committed);
    pthread_mutex_destroy(&h->mu);
    overlay_free(h->ov);
    free(h);
    return rc;
}

void group_host_stop(struct group_host *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->stopping = 1;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->applier, NULL);
    wal_pool_stop(h->pool);
    pthread_cond_destroy(&h->cv);
    pthread_cond_destroy(&h->committed);
    pthread_mutex_destroy(&h->mu);
    overlay_free(h->ov);
    free(h->touched);
    free(h);
}

struct state *group_host_state(struct group_host *h)
{
    return h->st;
}

struct overlay *group_host_overlay(struct group_host *h)
{
    return h->ov;
}

struct group_host *group_host_of(struct group *g)
{
    return g->h;
}

int group_host_barrier(struct group_host *h)
{
    int rc = 0;
    pthread_mutex_lock(&h->mu);
    if (h->txn_open || h->head) {
        /* The next commit covers everything applied so far. */
        uint64_t target = h->commit_seq + 1;
        h->barriers++;
        pthread_cond_signal(&h->cv);
        while (h->commit_seq < target && !h->failed && !h->stopping)
            pthread_cond_wait(&h->committed, &h->mu);
        h->barriers--;
    }
    if (h->failed)
        rc = NERR_IO;
    pthread_mutex_unlock(&h->mu);
    return rc;
}

struct replay_ctx {
    struct group *g;
    MDB_txn *txn;
    uint64_t last;
    long in_txn;
    struct nerr *err;
};

static int replay_commit(struct replay_ctx *rc)
{
    if (!rc->txn)
        return 0;
    int r = state_applied_put(rc->g->h->st, rc->txn, rc->g->name, rc->last, rc->err);
    if (r) {
        mdb_txn_abort(rc->txn);
        rc->txn = NULL;
        return r;
    }
    r = state_write_commit(rc->g->h->st, rc->txn, rc->err);
    rc->txn = NULL;
    rc->in_txn = 0;
    return r;
}

static int replay_one(void *arg, uint64_t lsn, const void *data, size_t len)
{
    struct replay_ctx *rc = arg;
    int r;
    if (!rc->txn && (r = state_write_begin(rc->g->h->st, &rc->txn, rc->err)))
        return r;
    void *result = NULL;
    r = rc->g->sm->apply(rc->g->sm_arg, rc->txn, lsn, data, len, NULL, &result, rc->err);
    if (r) {
        mdb_txn_abort(rc->txn);
        rc->txn = NULL;
        return r;
    }
    if (rc->g->sm->committed)
        rc->g->sm->committed(rc->g->sm_arg, lsn, NULL, result);
    else
        free(result);
    rc->last = lsn;
    if (++rc->in_txn >= 1000)
        return replay_commit(rc);
    return 0;
}

int group_open(struct group_host *h, const char *name, const char *wal_dir,
               const struct wal_options *wopt, const struct group_sm *sm, void *sm_arg,
               struct group **out, struct nerr *err)
{
    struct group *g = calloc(1, sizeof *g);
    MDB_txn *rtxn = NULL;
    uint64_t applied = 0;
    int rc;
    if (!g || !(g->name = strdup(name))) {
        free(g);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    g->h = h;
    g->sm = sm;
    g->sm_arg = sm_arg;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->idle, NULL);
    if ((rc = wal_open(wal_dir, wopt, h->pool, &g->wal, err)))
        goto fail;
    if ((rc = state_read_begin(h->st, &rtxn, err)))
        goto fail;
    rc = state_applied_get(h->st, rtxn, name, &applied, err);
    state_read_end(h->st, rtxn);
    if (rc)
        goto fail;
    uint64_t last = wal_last_lsn(g->wal);
    if (applied > last) {
        rc = nerr_set(err, NERR_CORRUPT,
                      "group %s: state applied LSN %llu but the WAL in %s ends at %llu; "
                      "the WAL lost acknowledged records",
                      name, (unsigned long long)applied, wal_dir, (unsigned long long)last);
        goto fail;
    }
    if (applied < last) {
        struct replay_ctx c = {.g = g, .last = applied, .err = err};
        rc = wal_replay(g->wal, applied, replay_one, &c, err);
        if (!rc)
            rc = replay_commit(&c);
        else if (c.txn)
            mdb_txn_abort(c.txn);
        if (rc)
            goto fail;
        log_info("group %s: replayed WAL records %llu..%llu", name,
                 (unsigned long long)applied + 1, (unsigned long long)c.last);
        applied = c.last;
    }
    atomic_store(&g->applied, applied);
    g->applied_lsn = g->committed_lsn = applied;
    *out = g;
    return 0;
fail:
    if (g->wal)
        wal_close(g->wal);
    pthread_cond_destroy(&g->idle);
    pthread_mutex_destroy(&g->mu);
    free(g->name);
    free(g);
    return rc;
}

void group_close(struct group *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->mu);
    g->closing = 1;
    while (g->inflight > 0)
        pthread_cond_wait(&g->idle, &g->mu);
    pthread_mutex_unlock(&g->mu);
    /* Its last entries may be applied but not yet committed: the applier's
     * open transaction still names this group (h->touched). Commit before
     * freeing it. The applier itself closes only groups it just opened,
     * which have no entries (catalog.c), and must not wait for itself. */
    if (!pthread_equal(pthread_self(), g->h->applier))
        group_host_barrier(g->h);
    else
        assert(!g->touched);
    wal_close(g->wal);
    pthread_cond_destroy(&g->idle);
    pthread_mutex_destroy(&g->mu);
    free(g->name);
    free(g);
}

const char *group_name(const struct group *g)
{
    return g->name;
}

uint64_t group_applied_lsn(struct group *g)
{
    return atomic_load(&g->applied);
}

uint64_t group_last_lsn(struct group *g)
{
    return wal_last_lsn(g->wal);
}

/* WAL pool thread: the entry is durable (or failed); queue it for the applier.
 * The WAL runs one WAL's callbacks in LSN order, so the queue keeps each
 * group's entries in LSN order (invariant 1). */
static void on_durable(void *arg, uint64_t lsn, int status)
{
    struct gentry *e = arg;
    struct group_host *h = e->g->h;
    e->lsn = lsn;
    e->status = status;
    pthread_mutex_lock(&h->mu);
    if (h->tail)
        h->tail->next = e;
    else
        h->head = e;
    h->tail = e;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

int group_propose(struct group *g, const void *data, size_t len, void *op, group_done_fn done,
                  void *arg)
{
    struct gentry *e = calloc(1, sizeof *e);
    if (!e)
        return NERR_NOMEM;
    e->g = g;
    e->op = op;
    e->done = done;
    e->arg = arg;
    pthread_mutex_lock(&g->mu);
    if (g->closing) {
        pthread_mutex_unlock(&g->mu);
        free(e);
        return NERR_CLOSED;
    }
    g->inflight++;
    pthread_mutex_unlock(&g->mu);
    uint64_t lsn;
    int rc = wal_submit(g->wal, data, len, on_durable, e, &lsn);
    if (rc) {
        free(e);
        pthread_mutex_lock(&g->mu);
        if (--g->inflight == 0)
            pthread_cond_broadcast(&g->idle);
        pthread_mutex_unlock(&g->mu);
        return rc;
    }
    return 0;
}

static void finish(struct gentry *e, int status, void *result)
{
    struct group *g = e->g;
    e->done(e->arg, status, result);
    pthread_mutex_lock(&g->mu);
    if (--g->inflight == 0)
        pthread_cond_broadcast(&g->idle);
    pthread_mutex_unlock(&g->mu);
    free(e);
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Commits the open transaction with every touched group's applied LSN. */
static void commit_txn(struct group_host *h)
{
    struct nerr err = {0};
    int rc = 0;
    if (!h->txn)
        return;
    for (size_t i = 0; !rc && i < h->ntouched; i++)
        rc = state_applied_put(h->st, h->txn, h->touched[i]->name, h->touched[i]->applied_lsn,
                               &err);
    if (!rc)
        rc = state_write_commit(h->st, h->txn, &err);
    else
        mdb_txn_abort(h->txn);
    h->txn = NULL;
    if (rc) {
        /* Invariant 3. Entries already acknowledged are durable in the WAL and
         * stay readable from the overlay (not cleared); the node applies
         * nothing more and must be restarted to recover from the WAL. */
        log_error("applier: %s; the node stops applying writes (restart to recover from the "
                  "WAL)",
                  err.msg[0] ? err.msg : nerr_name(rc));
        pthread_mutex_lock(&h->mu);
        h->failed = 1;
        h->txn_open = 0;
        pthread_cond_broadcast(&h->committed);
        pthread_mutex_unlock(&h->mu);
        return;
    }
    overlay_clear(h->ov);
    time_t now = time(NULL);
    for (size_t i = 0; i < h->ntouched; i++) {
        struct group *g = h->touched[i];
        /* The group's previous commit is durable now that this commit flushed
         * its meta page (state.h), so its WAL may be released up to there. */
        uint64_t durable = g->committed_lsn;
        g->committed_lsn = g->applied_lsn;
        g->touched = 0;
        if (durable > 0 && now != g->last_release) {
            struct nerr rerr = {0};
            g->last_release = now;
            if (wal_release(g->wal, durable, &rerr))
                log_warn("group %s: releasing WAL segments: %s", g->name, rerr.msg);
        }
    }
    h->ntouched = 0;
    pthread_mutex_lock(&h->mu);
    h->commit_seq++;
    h->txn_open = 0;
    pthread_cond_broadcast(&h->committed);
    pthread_mutex_unlock(&h->mu);
}

static int touch(struct group_host *h, struct group *g)
{
    if (g->touched)
        return 0;
    if (h->ntouched == h->cap_touched) {
        size_t nc = h->cap_touched ? 2 * h->cap_touched : 64;
        struct group **n = realloc(h->touched, nc * sizeof *n);
        if (!n)
            return NERR_NOMEM;
        h->touched = n;
        h->cap_touched = nc;
    }
    h->touched[h->ntouched++] = g;
    g->touched = 1;
    return 0;
}

/* Applies one batch of durable entries in the open transaction (beginning
 * one if needed), then acknowledges them. */
static void apply_batch(struct group_host *h, struct gentry *batch)
{
    struct nerr err = {0};
    void **results = NULL;
    size_t n = 0, i = 0;
    int rc = 0, commit_first = 0;
    for (struct gentry *e = batch; e; e = e->next)
        n++;
    results = calloc(n, sizeof *results);
    if (!results || h->failed)
        rc = h->failed ? NERR_IO : NERR_NOMEM;
    if (!rc && !h->txn) {
        rc = state_write_begin(h->st, &h->txn, &err);
        clock_gettime(CLOCK_MONOTONIC, &h->txn_start);
    }
    if (!rc) {
        pthread_mutex_lock(&h->mu);
        h->txn_open = 1;
        pthread_mutex_unlock(&h->mu);
    }
    for (struct gentry *e = batch; !rc && e; e = e->next, i++) {
        if (e->status)
            continue; /* the WAL could not make it durable: never applied */
        if ((rc = touch(h, e->g)))
            break;
        rc = e->g->sm->apply(e->g->sm_arg, h->txn, e->lsn, NULL, 0, e->op, &results[i], &err);
        if (!rc) {
            e->g->applied_lsn = e->lsn;
            commit_first |= e->g->sm->commit_before_done;
        }
    }
    if (rc && h->txn) {
        /* An apply failed inside LMDB: the transaction is unusable. */
        mdb_txn_abort(h->txn);
        h->txn = NULL;
        log_error("applier: %s; the node stops applying writes (restart to recover from the "
                  "WAL)",
                  err.msg[0] ? err.msg : nerr_name(rc));
        pthread_mutex_lock(&h->mu);
        h->failed = 1;
        h->txn_open = 0;
        pthread_cond_broadcast(&h->committed);
        pthread_mutex_unlock(&h->mu);
    } else if (commit_first) {
        commit_txn(h);
        rc = h->failed ? NERR_IO : 0;
    }
    i = 0;
    for (struct gentry *e = batch, *next; e; e = next, i++) {
        next = e->next;
        struct group *g = e->g;
        if (!rc && !e->status) {
            atomic_store(&g->applied, e->lsn);
            if (g->sm->committed)
                g->sm->committed(g->sm_arg, e->lsn, e->op, results[i]);
            finish(e, 0, results[i]);
        } else {
            /* Results of a failed transaction describe effects that never
             * happened; they are dropped (their owners free them in done). */
            finish(e, e->status ? e->status : (rc ? rc : NERR_IO), NULL);
        }
    }
    free(results);
}

static void *applier_main(void *arg)
{
    struct group_host *h = arg;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        /* Wait for work; with a transaction open, wait at most until it is
         * GROUP_COMMIT_MAX_MS old. Committing on a timer rather than whenever
         * the queue runs dry keeps LMDB's fdatasync (one per commit) from
         * running once per small batch: acknowledgements do not wait for it
         * (invariant 2), and range reads ask for it (barrier). */
        while (!h->head && !h->stopping && !(h->txn && h->barriers)) {
            if (!h->txn) {
                pthread_cond_wait(&h->cv, &h->mu);
                continue;
            }
            struct timespec dl = h->txn_start;
            dl.tv_nsec += GROUP_COMMIT_MAX_MS * 1000000L;
            if (dl.tv_nsec >= 1000000000L) {
                dl.tv_sec++;
                dl.tv_nsec -= 1000000000L;
            }
            if (pthread_cond_timedwait(&h->cv, &h->mu, &dl) == ETIMEDOUT)
                break;
        }
        struct gentry *batch = h->head;
        h->head = h->tail = NULL;
        int stop = h->stopping, barrier = h->barriers > 0;
        pthread_mutex_unlock(&h->mu);
        if (batch)
            apply_batch(h, batch);
        if (h->txn && (barrier || stop || ms_since(&h->txn_start) >= GROUP_COMMIT_MAX_MS))
            commit_txn(h);
        if (!batch && stop && !h->txn)
            break;
    }
    return NULL;
}
