/*
 * wal.h — a write-ahead log: a directory of segment files with group commit.
 * The node has one, the node log (<data>/log/, nodelog.h), which carries the
 * Raft log of every group on the node as streams: it is the node's
 * durability source. LMDB state is applied from it; on restart each group
 * loads its stream from the LSN the state says it applied last. On-disk
 * format: docs/wal.md.
 *
 * Model. A WAL is a directory of segment files, each holding a contiguous run
 * of records; record LSNs are contiguous across the whole log (each = previous
 * + 1). The last segment is the only one written to ("current"); the others
 * are sealed and never change until wal_release deletes them from the front.
 *
 *   record:  submitted --(pool thread: write + fdatasync)--> durable --> done(0)
 *                                     \--(write/fsync error)--> done(NERR_IO)
 *   wal:     open --(write/fsync error)--> failed (every later submit: NERR_IO)
 *            open|failed --wal_close--> closing (submit: NERR_CLOSED) --> freed
 *
 * Invariants: done(lsn, 0) fires only when lsn and every lower LSN are on
 * disk (record fdatasync'd; a new segment's file and directory entry fsync'd
 * before anything in it is acknowledged). After one write or fsync failure the
 * WAL never writes or fsyncs again (a failed fsync may have dropped dirty pages:
 * retrying would report durability that is not there); reopen to recover.
 *
 * Group commit. Submits queue records in memory. A pool thread takes a WAL
 * that has pending records (at most one thread per WAL at a time), takes every
 * record pending at that moment, writes them with one pwritev (split only at
 * IOV_MAX or a segment boundary), issues one fdatasync, then runs their done
 * callbacks in LSN order. Records submitted meanwhile form the next batch.
 *
 * Recovery (wal_open). Every record of every segment is validated. An invalid
 * record in the last segment with no valid record after it is a torn write:
 * the file is truncated there (logged with file, offset and bytes dropped). An
 * invalid record with a valid one after it, an invalid record in a sealed
 * segment, or an LSN gap or duplicate fails with NERR_CORRUPT and a message
 * naming the segment path and byte offset. Nothing is skipped silently.
 *
 * Threads. wal_submit, wal_release, wal_last_lsn, wal_first_lsn and
 * wal_get_stats may be called from any thread at any time before wal_close.
 * wal_replay, wal_truncate_suffix and wal_reset need a quiescent WAL: no
 * concurrent submit. They wait for a round a pool thread already took (so a
 * caller that just saw its last callback fire may call them at once) and
 * return NERR_BUSY if records are queued for a later round. done callbacks
 * run on pool threads; they may call wal_submit but must not call wal_close,
 * wal_replay, wal_truncate_suffix, wal_reset or wal_pool_stop (each waits
 * for the round that runs the callback: a deadlock).
 *
 * Errors: NERR_IO (a system call failed, errno text in the message),
 * NERR_CORRUPT (recovery found damage), NERR_LIMIT (payload over
 * WAL_MAX_PAYLOAD or zero-length), NERR_CLOSED, NERR_NOTFOUND (released
 * records asked for), NERR_INVALID (bad arguments), NERR_BUSY, NERR_NOMEM.
 */
#ifndef NINES_WAL_H
#define NINES_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define WAL_MAX_PAYLOAD (64u << 20)           /* bytes; larger submits get NERR_LIMIT */
#define WAL_DEFAULT_SEGMENT_BYTES (64u << 20) /* when wal_options.segment_bytes is 0 */

/* The interval of the unsafe mode's fdatasync (wal_options). */
#define WAL_UNSAFE_SYNC_MS 200

struct wal;      /* opaque */
struct wal_pool; /* opaque: N sync threads shared by many WALs */

/* The system calls a test hook can make fail (see wal_options.test_io_hook). */
enum wal_io_op { WAL_IO_WRITE = 1, WAL_IO_FDATASYNC = 2, WAL_IO_DIRSYNC = 3 };

struct wal_options {
    uint64_t segment_bytes;     /* rotate after this many bytes; 0 = default 64 MiB */
    /* TEST ONLY, a planted durability bug: a batch is acknowledged after
     * write(2), and its fdatasync follows WAL_UNSAFE_SYNC_MS after the
     * previous one (like a database that flushes its log once per interval).
     * A power cut then loses the acknowledged writes of the last interval,
     * whatever instant it hits; t/labfs/ninesd.t proves `nines check` names
     * them. Pair it with state_options.unsafe_no_sync (node.c does). */
    int unsafe_ack_before_sync;
    /* TEST ONLY (NULL in production): called on the pool thread before each
     * write, fdatasync and directory fsync of a batch; a non-zero return is
     * taken as that call's errno, and the call is not made. Lets a unit test
     * drive the failure path without a broken disk. */
    int (*test_io_hook)(void *arg, enum wal_io_op op);
    void *test_io_arg;
};

/* Runs on a pool thread. status is 0 (durable) or NERR_IO. */
typedef void (*wal_done_fn)(void *arg, uint64_t lsn, int status);

/* Starts a pool of `threads` (1..64) sync threads; *out is the caller's until wal_pool_stop. */
int wal_pool_start(int threads, struct wal_pool **out, struct nerr *err);
/* Joins the threads and frees p. Call after every WAL using it is closed. */
void wal_pool_stop(struct wal_pool *p);

/* Opens dir (created with its parents if missing, mode 0755) and recovers the
 * log as described above. opt may be NULL (defaults); it is copied. pool is
 * borrowed and must outlive the WAL. On success *out belongs to the caller
 * until wal_close. */
int wal_open(const char *dir, const struct wal_options *opt, struct wal_pool *pool,
             struct wal **out, struct nerr *err);
/* Refuses new submits, waits until every pending record was written (or
 * failed) and its done callback returned, then frees w. NULL is allowed. */
void wal_close(struct wal *w);

uint64_t wal_first_lsn(struct wal *w); /* lowest LSN still stored; 0 when the log is empty */
uint64_t wal_last_lsn(struct wal *w);  /* last LSN appended (durable or not); 0 if none.
                                          After wal_reset(n) it is n with no records stored. */

/* Calls cb for every record with lsn > from_lsn, in LSN order; data points
 * into a read-only mapping valid only during the call. Quiescent WAL only.
 * cb returning non-zero stops the replay and that value is returned.
 * NERR_NOTFOUND if records after from_lsn were released already (gap);
 * NERR_INVALID if from_lsn > wal_last_lsn (the caller's state is ahead of the
 * log: decide, e.g. wal_reset); NERR_CORRUPT if a record changed on disk
 * since wal_open. */
int wal_replay(struct wal *w, uint64_t from_lsn,
               int (*cb)(void *arg, uint64_t lsn, const void *data, size_t len), void *arg,
               struct nerr *err);

/* Async append with group commit. data (len 1..WAL_MAX_PAYLOAD) is copied;
 * the record gets lsn = last + 1, stored in *lsn_out (may be NULL) before the
 * call returns. done(arg, lsn, 0) runs on a pool thread once the record and
 * every record before it are durable; on a write/fsync failure the WAL becomes
 * failed and that batch and every record still pending complete with NERR_IO.
 * For one WAL, callbacks run in LSN order, one batch at a time. done may be
 * NULL. Returns 0, or synchronously (no LSN used, done never called):
 * NERR_CLOSED after wal_close began, NERR_IO once the WAL has failed,
 * NERR_LIMIT for a bad length, NERR_NOMEM. Thread-safe. */
int wal_submit(struct wal *w, const void *data, size_t len, wal_done_fn done, void *arg,
               uint64_t *lsn_out);
/* wal_submit of the concatenation of iovcnt pieces (one record). */
struct iovec;
int wal_submitv(struct wal *w, const struct iovec *iov, int iovcnt, wal_done_fn done, void *arg,
                uint64_t *lsn_out);

/* Deletes, oldest first, whole sealed segments all of whose records have
 * lsn <= upto (the state has them). The current segment is never deleted.
 * Safe to call concurrently with submits. */
int wal_release(struct wal *w, uint64_t upto, struct nerr *err);
/* The LSN of the last record of the oldest segment when it is sealed (more
 * than one segment); 0 otherwise. */
uint64_t wal_oldest_segment_end(struct wal *w);

/* Drops every record with LSN > lsn (a consensus log conflict), durably;
 * the next submit gets lsn + 1. A no-op when lsn >= wal_last_lsn. If lsn is
 * below the first stored record, every record goes, as with wal_reset(lsn).
 * Quiescent WAL only (NERR_BUSY if records are pending). */
int wal_truncate_suffix(struct wal *w, uint64_t lsn, struct nerr *err);

/* Deletes every record and restarts the log so that the next submit gets
 * last_lsn + 1 (a replica that installed a snapshot at last_lsn). Durable
 * when it returns; a crash during the call can leave an empty log whose next
 * LSN is 1, which wal_replay then reports as NERR_INVALID. Quiescent only. */
int wal_reset(struct wal *w, uint64_t last_lsn, struct nerr *err);

struct wal_stats {
    uint64_t records;  /* records written by this WAL object since open */
    uint64_t syncs;    /* fdatasync calls on segment files since open */
    uint64_t bytes;    /* bytes written (headers + payloads) since open */
    uint64_t segments; /* segment files currently in the directory */
};
void wal_get_stats(struct wal *w, struct wal_stats *out);

#endif
