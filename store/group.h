/*
 * group.h — a replication group's slot in the node: the single path every
 * write takes between the API and the WAL, and from the WAL into LMDB.
 *
 *   API ──group_propose──> [ordering] ──> WAL (group commit) ──> applier ──> LMDB
 *                                                                  └──> done(arg, status, result)
 *
 * Today a group has one member (this node): ordering is the WAL's LSN order.
 * The replication issue puts consensus in the [ordering] box: group_propose
 * then hands the entry to the leader's log, and the applier receives entries
 * once a quorum has persisted them. Nothing above (API) or below (state
 * machines, LMDB) changes: they see committed entries in LSN order.
 *
 * Invariants
 *  1. Entries of one group are applied in LSN order, each exactly once: the
 *     applied LSN is written in the same LMDB transaction as the entry's effects
 *     (state.h), and start-up replays the WAL from it.
 *  2. done() is called once per accepted proposal, after the entry is durable in
 *     the WAL AND applied: in the applier's open LMDB write transaction, with
 *     every item it wrote published in the host's overlay (overlay.h). Point
 *     reads consult the overlay first; range reads call group_host_barrier,
 *     which commits the open transaction. Either way a read that starts after
 *     done() sees the write. The transaction commits GROUP_COMMIT_MAX_MS after
 *     it began, on a barrier, when the host stops, or before done() of an entry
 *     whose state machine asks for it (commit_before_done: the catalog, whose
 *     effects other transactions must see).
 *     A proposal rejected synchronously (non-zero return) never gets a callback.
 *  3. A WAL or LMDB failure makes the group (WAL) or the whole host (LMDB) failed:
 *     every pending and later proposal completes with NERR_IO. The node never
 *     acknowledges a write it could not make durable and never retries fsync.
 *
 * Threads. group_propose is thread-safe. State-machine callbacks (apply,
 * committed) and done() run on the host's single applier thread, in LSN order
 * per group; they must not block on other groups' proposals.
 */
#ifndef NINES_GROUP_H
#define NINES_GROUP_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"
#include "store/state.h"
#include "store/wal.h"

struct group_host;
struct group;

/* A replicated state machine. */
struct group_sm {
    /* Applies one committed entry within txn. op is the proposer's decoded form
     * of the entry (borrowed), or NULL during start-up replay, when apply must
     * decode data itself. *result receives the outcome handed to done() (owned
     * by whoever receives it; may stay NULL). Per-entry outcomes such as a
     * failed condition belong in *result: a non-zero return means the
     * transaction itself failed (LMDB error) and is fatal for the host.
     * Must be deterministic: same state + same entry = same effects. */
    int (*apply)(void *sm, MDB_txn *txn, uint64_t lsn, const void *data, size_t len, void *op,
                 void **result, struct nerr *err);
    /* Optional: called after the entry was applied (and committed, with
     * commit_before_done), before done(). */
    void (*committed)(void *sm, uint64_t lsn, void *op, void *result);
    /* Commit LMDB before done() of this group's entries (see invariant 2). */
    int commit_before_done;
};

/* Longest an applied entry waits in the open transaction before a commit. */
#define GROUP_COMMIT_MAX_MS 5

typedef void (*group_done_fn)(void *arg, int status, void *result);

/* Starts the node-wide machinery: the WAL sync pool and the applier thread. */
int group_host_start(struct state *st, int sync_threads, struct group_host **out,
                     struct nerr *err);
/* Stops the applier after every queued entry was applied. All groups must be
 * closed first. */
void group_host_stop(struct group_host *h);
struct state *group_host_state(struct group_host *h);

/* The host's overlay of applied, uncommitted items (overlay.h). */
struct overlay *group_host_overlay(struct group_host *h);

/* Returns once everything applied before the call is committed to LMDB, so a
 * range read (cursor) that starts afterwards sees it. Cheap when nothing is
 * pending. NERR_IO if the host failed. */
int group_host_barrier(struct group_host *h);

/* The host a group runs on. */
struct group_host *group_host_of(struct group *g);

/* Opens a group: opens/recovers its WAL in wal_dir, then replays every entry
 * after the applied LSN recorded in LMDB through sm->apply (in this thread,
 * in batches of write transactions). name is the key of its applied LSN.
 * sm and sm_arg are borrowed until group_close. */
int group_open(struct group_host *h, const char *name, const char *wal_dir,
               const struct wal_options *wopt, const struct group_sm *sm, void *sm_arg,
               struct group **out, struct nerr *err);

/* Waits until every accepted proposal has completed, then closes the WAL. */
void group_close(struct group *g);

/* Proposes an entry. data (copied) is what the WAL stores and replay decodes;
 * op is the decoded form, borrowed until done() runs. Returns 0 (done() will
 * run exactly once), or NERR_CLOSED / NERR_IO without calling done(). */
int group_propose(struct group *g, const void *data, size_t len, void *op, group_done_fn done,
                  void *arg);

const char *group_name(const struct group *g);
uint64_t group_applied_lsn(struct group *g);
uint64_t group_last_lsn(struct group *g);

#endif
