/*
 * nodelog.h — the node's shared log: one WAL (store/wal.h) that carries the
 * log of every replication group on the node, so that one fdatasync makes a
 * round of appends of all groups durable (docs/wal.md, "The node log").
 *
 * Why. With a WAL per group a node with G busy groups issues G fdatasyncs
 * where one would do; on the 3-node benchmark (8 partitions) each fsync
 * covered about two entries and the sync threads took a third of a node's
 * CPU. Raft logs of many groups sharing one physical log is what TiKV's
 * raft-engine and CockroachDB's shared WAL do for the same reason.
 *
 * Model. Each group writes a *stream*, named by the group name (unique on
 * the node). A stream is a Raft-style log: contiguous LSNs (= raft index),
 * appended at the end, cut back at a conflict, reset after a snapshot,
 * released at the front. The node log stores, in one WAL whose own LSNs are
 * node-global, records of five kinds (payload layout in docs/wal.md):
 *
 *   APPEND(stream, lsn, bytes)   lsn = the stream's last + 1
 *   CUT(stream, lsn)             the stream's entries after lsn are gone
 *   RESET(stream, lsn)           every entry is gone; the next one is lsn + 1
 *   DROP(stream)                 the stream is gone (its group was deleted)
 *   HARDSTATE(stream, term, vote) the group's Raft term and vote from now on
 *
 * Hard state. A group's term and vote go through the node log like its
 * entries (nls_set_hard_state), so that one fdatasync makes a whole round
 * of votes of every group durable; a per-group file fsync'd on the driver
 * thread cost one fsync per group and vote, and 257 groups electing at once
 * never converged (issue 21). The latest HARDSTATE record of a stream wins;
 * it is independent of the stream's entries (CUT and RESET leave it).
 * (The HARDSTATE file of an older data dir is carried over by its group
 * when it opens: the later of file and log is written here, made durable,
 * then the file deleted; group_internal.h, group__hs_load.)
 *
 * Recovery (nodelog_open) replays the WAL once, in order, applying these to
 * per-stream logs held in memory until the group opens its stream and
 * loads them (nls_replay), after which they are freed: the consensus core
 * keeps its log in memory anyway. The first record of a stream met in the
 * WAL starts it (earlier ones were released; a HARDSTATE record does not
 * start it), later APPENDs must continue it
 * (lsn = last + 1, or the log is corrupt: NERR_CORRUPT naming the record's
 * node-global LSN and stream).
 *
 * Invariants (a stream's records in node-log order and its appends in lsn
 * order after what it released are checked with NINES_ASSERT in every build)
 *  1. Durability is a prefix of the node WAL: a done callback for a record
 *     runs once it and every record before it (any stream) are on disk. So a
 *     CUT or RESET is durable before any later APPEND of its stream is
 *     acknowledged; nls_cut and nls_reset also wait until they are durable.
 *  2. WAL segments are deleted from the front only, and only when no stream
 *     still needs a record in them: a stream needs its records with lsn >
 *     released (nls_release; a RESET releases everything before it). Every
 *     stream met in the WAL pins the segments of its needed records until it
 *     releases them or is dropped, open or not.
 *  3. A stream that pins the oldest segment while the node log holds more
 *     than NODELOG_SOFT_SEGMENTS segments is asked to compact
 *     (nls_compact_wanted), so an idle group cannot make the log grow
 *     without bound. Uncommitted entries cannot be released: a group without
 *     a quorum for a long time keeps its records (and the log after them).
 *  4. After a write or fsync failure the node log is failed: every stream's
 *     pending and later records complete with NERR_IO (wal.h: no retry).
 *  5. A stream's latest durable HARDSTATE record pins its segment (while a
 *     newer one is not yet durable, the older one stays pinned: a crash
 *     falls back to it), open or not, until the stream is dropped. When it
 *     lies in the oldest segment of a log past NODELOG_SOFT_SEGMENTS
 *     segments, nodelog_tick writes it again at the tail (a refresh), and a
 *     later nodelog_tick deletes the segment once the copy is durable: a
 *     group idle forever cannot hold the log.
 *
 * Threads. All functions are thread-safe; the caller keeps one stream's
 * appends in order (the group's driver thread is the only writer of its
 * stream). done callbacks run on the WAL's sync thread, in node-global
 * order; they must not call nls_cut, nls_reset, nodelog_drop or close
 * anything (those wait for the sync thread).
 */
#ifndef NINES_NODELOG_H
#define NINES_NODELOG_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"
#include "store/wal.h"

#define NODELOG_MAX_NAME 200    /* bytes of a stream name */
#define NODELOG_SOFT_SEGMENTS 4 /* beyond this, the oldest segment's pinners compact */

struct nodelog;
struct nls; /* an open stream */

/* Opens (creating if missing) the node log in dir and recovers it (wal.h:
 * torn tail truncated, damage refused with the file and offset; then the
 * stream records replayed as above). opt may be NULL. */
int nodelog_open(const char *dir, const struct wal_options *opt, struct nodelog **out,
                 struct nerr *err);
/* Waits for every pending record, then frees. Every stream must be closed. */
void nodelog_close(struct nodelog *nl);

/* Opens the stream `name` (1..NODELOG_MAX_NAME bytes), with whatever the
 * log holds for it (possibly nothing). NERR_EXISTS if it is open already. */
int nodelog_stream_open(struct nodelog *nl, const char *name, struct nls **out, struct nerr *err);
/* Closes the stream handle (its records stay, and keep pinning the log until
 * released or dropped). Its pending records must have completed. */
void nls_close(struct nls *s);

/* Forgets stream `name` durably (a deleted group): appends DROP, waits for
 * it to be durable, and unpins its records. The stream must not be open.
 * 0 also when the log never had such a stream. */
int nodelog_drop(struct nodelog *nl, const char *name, struct nerr *err);

uint64_t nls_first_lsn(struct nls *s); /* lowest lsn held (not released); 0 if none */
uint64_t nls_last_lsn(struct nls *s);  /* last lsn appended, or the RESET point */

/* Calls cb for every entry with lsn > from_lsn, in order, from the entries
 * recovery found (only before the stream's first append; the copies are
 * freed afterwards: a second call returns NERR_BUSY). A non-zero cb return
 * stops and is returned. NERR_NOTFOUND when entries after from_lsn were
 * released; NERR_INVALID when from_lsn > last. */
int nls_replay(struct nls *s, uint64_t from_lsn,
               int (*cb)(void *arg, uint64_t lsn, const void *data, size_t len), void *arg,
               struct nerr *err);

/* Appends hdr (hlen bytes, may be 0) followed by data (len bytes; hlen + len
 * in 1..WAL_MAX_PAYLOAD - NODELOG_MAX_NAME - 16) as the stream's next entry; *lsn_out
 * gets its lsn. done (may be NULL) runs once it is durable (status 0) or the
 * log failed (NERR_IO), with the stream's lsn. Synchronous errors as
 * wal_submit (done never called). */
int nls_append(struct nls *s, const void *hdr, size_t hlen, const void *data, size_t len,
               wal_done_fn done, void *arg, uint64_t *lsn_out);

/* Drops every entry after lsn (a consensus conflict), durably; a no-op when
 * lsn >= last. Below the first entry it is nls_reset(lsn). */
int nls_cut(struct nls *s, uint64_t lsn, struct nerr *err);
/* Drops every entry; the next append gets last_lsn + 1 (a snapshot was
 * installed at last_lsn). Durable on return. */
int nls_reset(struct nls *s, uint64_t last_lsn, struct nerr *err);

/* The stream no longer needs entries <= upto (they are in a snapshot):
 * deletes whole WAL segments no stream needs any more. */
int nls_release(struct nls *s, uint64_t upto, struct nerr *err);

/* 1 when this stream pins the oldest segment of a node log that has grown
 * past NODELOG_SOFT_SEGMENTS segments: its group should snapshot and
 * release. Cheap (recomputed by nodelog_tick). */
int nls_compact_wanted(struct nls *s);
/* Recomputes which streams should compact, refreshes hard states held in
 * the oldest segment (invariant 5) and deletes the segments nobody needs
 * any more; call about once a second. */
void nodelog_tick(struct nodelog *nl);

/* Appends HARDSTATE(term, vote) for the stream: from now on nls_hard_state
 * returns it, and after a crash recovery does once it was durable. term
 * never goes below the last one set, and a vote set in a term never
 * changes (NINES_ASSERT). done (may be NULL) runs once it is durable
 * (status 0, lsn = term) or the log failed (NERR_IO); like any record, it
 * is durable together with every record appended before it (invariant 1),
 * so the done of a stream's last record of a round covers the round.
 * Synchronous errors as wal_submit (done never called). */
int nls_set_hard_state(struct nls *s, uint64_t term, uint32_t vote, wal_done_fn done, void *arg);
/* The stream's latest hard state (set, or recovered from the log): 1 and
 * *term, *vote when there is one, 0 (and zeros) when there is none. */
int nls_hard_state(struct nls *s, uint64_t *term, uint32_t *vote);

/* A one-shot wait for a durable callback: pass nls_waiter_done as the done
 * of an append (arg: the waiter), then nls_waiter_wait returns its status
 * and destroys the waiter. A waiter whose append was refused is destroyed
 * with nls_waiter_destroy instead. */
struct nls_waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, status;
};
void nls_waiter_init(struct nls_waiter *w);
void nls_waiter_done(void *arg, uint64_t lsn, int status);
int nls_waiter_wait(struct nls_waiter *w);
void nls_waiter_destroy(struct nls_waiter *w);

struct nodelog_stats {
    struct wal_stats wal; /* records, syncs, bytes, segments of the node WAL */
    uint64_t streams;     /* streams the log holds (open or not) */
    uint64_t hs_refreshes; /* hard states re-appended by nodelog_tick (invariant 5) */
};
void nodelog_get_stats(struct nodelog *nl, struct nodelog_stats *out);

#endif
