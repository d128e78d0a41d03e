/*
 * group_applier.c — the applier thread of a group host (group.h, invariants
 * 1-3): applies the committed entries the driver queues, of every group, in
 * one open LMDB write transaction with each group's applied LSN, publishes
 * applied items in the overlay, commits at most GROUP_COMMIT_MAX_MS later
 * (or at once for a barrier or a state machine that asks), and runs done().
 *
 * Poisoned entries. A committed entry its state machine cannot decode
 * (GROUP_APPLY_POISONED, group.h) is one bad operation, not a bad node: it
 * is applied as a no-op on every replica alike and its proposal, if any,
 * fails with NERR_CORRUPT. Only a failure of the LMDB transaction itself
 * stops the applier (invariant 3).
 *
 * Configuration entries (RAFT_ENTRY_CONF) belong to the consensus core:
 * never given to apply() or committed(), they only move the applied LSN.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/invariant.h"
#include "lib/log.h"
#include "store/group_internal.h"
#include "store/overlay.h"

static void finish(struct gentry *e, int status, void *result)
{
    struct group *g = e->g;
    if (e->done)
        e->done(e->arg, status, result);
    else if (result && g->sm->free_result)
        g->sm->free_result(result);
    pthread_mutex_lock(&g->mu);
    if (e->done && --g->inflight == 0)
        pthread_cond_broadcast(&g->idle);
    if (--g->queued == 0)
        pthread_cond_broadcast(&g->idle);
    NINES_ASSERT(g->inflight >= 0 && g->queued >= 0); /* invariant 2: done() once */
    pthread_mutex_unlock(&g->mu);
    free(e->data);
    free(e);
}

static double ms_since(uint64_t t0_ns)
{
    return (double)(clock_mono_ns() - t0_ns) / 1e6;
}

/* Commits the open transaction with every touched group's applied LSN. */
static void commit_txn(struct group_host *h)
{
    struct nerr err = {0};
    int rc = 0;
    if (!h->txn)
        return;
    for (size_t i = 0; !rc && i < h->ntouched; i++) {
        struct group *g = h->touched[i];
        if (g->sm->before_commit)
            rc = g->sm->before_commit(g->sm_arg, h->txn, &err);
        if (!rc)
            rc = state_applied_put(h->st, h->txn, g->name, g->applied_lsn, &err);
    }
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
    for (size_t i = 0; i < h->ntouched; i++) {
        struct group *g = h->touched[i];
        /* WAL segments are kept: the consensus log starts at index 1 until
         * snapshots exist (docs/replication.md, "Limits"). */
        g->committed_lsn = g->applied_lsn;
        g->touched = 0;
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
    /* Entries applied as no-ops (see "Poisoned entries"). */
    unsigned char *poisoned = calloc(n, 1);
    if (!results || !poisoned || h->failed)
        rc = h->failed ? NERR_IO : NERR_NOMEM;
    if (!rc && !h->txn) {
        rc = state_write_begin(h->st, &h->txn, &err);
        h->txn_start_ns = clock_mono_ns();
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
        /* Invariant 1: a group's entries arrive in log order, each once; a
         * snapshot jumps ahead. */
        NINES_ASSERT(e->snap ? e->lsn > e->g->applied_lsn : e->lsn == e->g->applied_lsn + 1);
        if (e->snap) {
            rc = group__snap_restore(e->g, h->txn, e->snap_fd, &e->snapf, &err);
            close(e->snap_fd);
            e->snap_fd = -1;
            if (!rc) {
                e->g->applied_lsn = e->lsn;
                commit_first = 1; /* no reads of the emptied state from the overlay */
            }
            continue;
        }
        if (e->type == RAFT_ENTRY_CONF) {
            /* A configuration entry is the core's, not the state machine's:
             * the applied LSN moves past it in this transaction (like a
             * leader's empty entry; not counted as poisoned). */
            e->g->applied_lsn = e->lsn;
            continue;
        }
        if (!e->op && !e->len) { /* a leader's empty entry */
            e->g->applied_lsn = e->lsn;
            continue;
        }
        const unsigned char *ad = e->data;
        size_t al = e->len;
        if (!e->op && al >= GROUP_FRAME && ad[0] == GROUP_FRAME_MAGIC) {
            ad += GROUP_FRAME; /* a forwarded proposal's frame */
            al -= GROUP_FRAME;
        }
        rc = e->g->sm->apply(e->g->sm_arg, h->txn, e->lsn, e->op ? NULL : ad, al, e->op,
                             &results[i], &err);
        if (rc == GROUP_APPLY_POISONED) {
            uint64_t k = atomic_fetch_add(&h->st_poisoned, 1);
            if (k < 10 || (k & (k - 1)) == 0)
                log_error("group %s: entry %llu cannot be decoded and is applied as a no-op "
                          "(%llu so far): %s",
                          e->g->name, (unsigned long long)e->lsn, (unsigned long long)k + 1,
                          err.msg[0] ? err.msg : "poisoned");
            nerr_clear(&err);
            poisoned[i] = 1;
            results[i] = NULL;
            rc = 0;
            e->g->applied_lsn = e->lsn;
            continue;
        }
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
        if (!rc && !e->status && poisoned[i]) {
            atomic_store(&g->applied, e->lsn);
            finish(e, NERR_CORRUPT, NULL);
        } else if (!rc && !e->status) {
            atomic_store(&g->applied, e->lsn);
            if (g->sm->committed && (e->op || e->len) && !e->snap && e->type == RAFT_ENTRY_NORMAL)
                g->sm->committed(g->sm_arg, e->lsn, e->op, e->data, e->len, results[i]);
            finish(e, 0, results[i]);
        } else {
            /* Results of a failed transaction describe effects that never
             * happened; they are dropped (their owners free them in done). */
            finish(e, e->status ? e->status : (rc ? rc : NERR_IO), NULL);
        }
    }
    free(results);
    free(poisoned);
}

void *group__applier_main(void *arg)
{
    pthread_setname_np(pthread_self(), "nines-apply");
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
            uint64_t at = h->txn_start_ns + GROUP_COMMIT_MAX_MS * 1000000ull;
            struct timespec dl = {(time_t)(at / 1000000000ull), (long)(at % 1000000000ull)};
            if (pthread_cond_timedwait(&h->cv, &h->mu, &dl) == ETIMEDOUT)
                break;
        }
        struct gentry *batch = h->head;
        h->head = h->tail = NULL;
        int stop = h->stopping, barrier = h->barriers > 0;
        pthread_mutex_unlock(&h->mu);
        if (batch)
            apply_batch(h, batch);
        if (h->txn && (barrier || stop || ms_since(h->txn_start_ns) >= GROUP_COMMIT_MAX_MS))
            commit_txn(h);
        if (!batch && stop && !h->txn)
            break;
    }
    return NULL;
}
