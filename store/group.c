#include "store/group.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"

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
    pthread_t applier;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct gentry *head, *tail; /* durable entries waiting to be applied */
    int stopping;
    int failed; /* an LMDB commit failed: nothing more is applied */
    uint64_t commit_seq;
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
    uint64_t committed_lsn; /* applied LSN written by this group's latest commit */
    uint64_t durable_lsn;   /* applied LSN of an earlier commit: durable in LMDB */
    time_t last_release;
    int touched;
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
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
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
    pthread_mutex_destroy(&h->mu);
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
    pthread_mutex_destroy(&h->mu);
    free(h);
}

struct state *group_host_state(struct group_host *h)
{
    return h->st;
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
    g->committed_lsn = applied;
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

/* Applies one batch of durable entries in one LMDB transaction. */
static void apply_batch(struct group_host *h, struct gentry *batch)
{
    struct nerr err = {0};
    MDB_txn *txn = NULL;
    void **results = NULL;
    size_t n = 0, i = 0;
    int rc = 0;
    for (struct gentry *e = batch; e; e = e->next)
        n++;
    results = calloc(n, sizeof *results);
    if (!results || h->failed)
        rc = h->failed ? NERR_IO : NERR_NOMEM;
    if (!rc)
        rc = state_write_begin(h->st, &txn, &err);
    for (struct gentry *e = batch; !rc && e; e = e->next, i++) {
        if (e->status)
            continue; /* the WAL could not make it durable: never applied */
        if (!e->g->touched) {
            /* The group's previous commit becomes durable when this one
             * flushes its meta page (state.h): its WAL may go up to there. */
            e->g->durable_lsn = e->g->committed_lsn;
            e->g->touched = 1;
        }
        rc = e->g->sm->apply(e->g->sm_arg, txn, e->lsn, NULL, 0, e->op, &results[i], &err);
        if (!rc)
            e->g->committed_lsn = e->lsn;
    }
    for (struct gentry *e = batch; !rc && e; e = e->next)
        if (e->g->touched == 1) {
            rc = state_applied_put(h->st, txn, e->g->name, e->g->committed_lsn, &err);
            e->g->touched = 2; /* written once per batch */
        }
    if (!rc) {
        rc = state_write_commit(h->st, txn, &err);
        txn = NULL;
    }
    if (txn)
        mdb_txn_abort(txn);
    if (rc) {
        /* Invariant 3: the WAL holds these entries durably, but they were not
         * applied; answering them would lie, retrying could double-apply. */
        if (!h->failed)
            log_error("applier: %s; the node stops applying writes (restart to recover "
                      "from the WAL)",
                      err.msg[0] ? err.msg : nerr_name(rc));
        h->failed = 1;
    } else {
        h->commit_seq++;
    }
    i = 0;
    time_t now = time(NULL);
    for (struct gentry *e = batch, *next; e; e = next, i++) {
        next = e->next;
        struct group *g = e->g;
        if (!rc && !e->status) {
            atomic_store(&g->applied, e->lsn);
            if (g->touched && now != g->last_release && g->durable_lsn > 0) {
                struct nerr rerr = {0};
                g->last_release = now;
                if (wal_release(g->wal, g->durable_lsn, &rerr))
                    log_warn("group %s: releasing WAL segments: %s", g->name, rerr.msg);
            }
            g->touched = 0;
            if (g->sm->committed)
                g->sm->committed(g->sm_arg, e->lsn, e->op, results[i]);
            finish(e, 0, results[i]);
        } else {
            g->touched = 0;
            if (results)
                free(results[i]);
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
        while (!h->head && !h->stopping)
            pthread_cond_wait(&h->cv, &h->mu);
        struct gentry *batch = h->head;
        h->head = h->tail = NULL;
        int stop = h->stopping;
        pthread_mutex_unlock(&h->mu);
        if (batch)
            apply_batch(h, batch);
        else if (stop)
            break;
    }
    return NULL;
}
