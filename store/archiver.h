/*
 * archiver.h — ninesd's side of the WAL archive (docs/archive.md): every
 * partition's committed log is cut into sealed pieces that go to the
 * archive (archive/archive.h) with their manifests, the replicas that did
 * not upload a piece check it against their own log, and the log is kept
 * until this node has seen it archived.
 *
 * Seals: pieces every replica agrees on. A piece ends at a seal, an entry
 * of the partition's log (op.h, OP_SEAL) that carries the piece's first
 * index F. Applied at index S, a seal whose F is one past the last seal
 * the replica recorded (or with none recorded: a fresh replica, or one
 * that installed a snapshot) closes the piece F..S and is recorded in the
 * same LMDB transaction (archiver_seal_put); any other seal is stale (two
 * proposed at once, by a leader and its successor) and changes nothing.
 * Every replica applies the same log to the same state, so all agree on
 * every piece's range, and since a piece holds committed entries, which
 * are the same everywhere, every replica encodes the same bytes for it
 * (archive.h's format has no uploader or time in it): two replicas that
 * both upload a piece write the same object, never two different ones.
 *
 * Who seals. The partition's leader proposes a seal for F = the last
 * recorded seal + 1 once the entries after it are at least piece_size
 * bytes or the oldest of them is seal_after old (so an idle partition is
 * archived too: a partition with no entry after its last seal proposes
 * nothing), one seal at a time.
 *
 * Who uploads. The replica that leads when the seal reaches its archiver
 * uploads the piece at once: the entries from its consensus log
 * (group_log_copy), encoded, written under a temporary name, read back and
 * parsed, renamed, then the manifest the same way (archive_put_log). Every
 * other replica waits verify_after, then cross-verifies: it fetches the
 * manifest and the piece, checks the piece's SHA-256 against the manifest
 * and compares the piece byte for byte with its own encoding of the same
 * entries; a difference is a mismatch, logged as an error and counted
 * (status, /metrics). A piece still missing 2 x verify_after after its
 * seal (the leader died mid-upload, or lost its disk) is uploaded by the
 * replica that finds it missing: a takeover, the same bytes.
 *
 * Holding the log. A replica's log is compacted only up to the end of the
 * last piece it has seen archived (uploaded or verified, in order: the
 * group's hold, group.h). When the archive falls more than max_behind
 * entries behind a partition's applied index (an unreachable archive, a
 * full disk), the hold is released with an error in the log and in the
 * status: the node does not stop taking writes for its archive, and what
 * it compacts before archiving is a gap the archive's proofs report.
 *
 * Snapshots. Every snapshot_every entries (and first of all when the
 * archive has no snapshot of a partition whose log no longer starts at
 * entry 1), the leader archives the partition's state: an LMDB read
 * transaction, its applied index I, the term of I (group_log_term), every
 * item in key order and the set digest at I (store/digest.h), so a
 * reference rebuild never replays from the beginning of time.
 *
 * Retention. About once a minute the leader of each partition keeps what
 * rebuilding any point of the last `retention` needs and deletes the rest:
 * the newest snapshot uploaded before the window began (S) is fetched and
 * proved (its manifest's size and SHA-256, every CRC) first; then every
 * piece that ends at or before S's index and every older snapshot go,
 * manifest first (an object without a manifest counts for nothing), then
 * the object. Without such a snapshot nothing is deleted.
 *
 * Restart. The archiver learns each partition's archived end from the
 * archive's manifests and the seals after it from LMDB (the newest
 * ARCHIVER_SEALS_KEPT are kept), so pieces sealed before a crash are
 * uploaded or verified after it.
 *
 * Threads. One archiver thread per node does every upload, fetch and
 * proposal; archiver_sealed is called by the applier thread (it queues
 * and returns). The status functions are thread-safe.
 */
#ifndef NINES_ARCHIVER_H
#define NINES_ARCHIVER_H

#include <jansson.h>
#include <lmdb.h>
#include <stdint.h>

#include "lib/err.h"

#define ARCHIVER_SEALS_KEPT 64

struct archiver;
struct catalog;
struct strbuf;

struct archiver_options {
    const char *url;          /* file:///absolute/dir */
    const char *self_id;      /* this node's id: manifests' uploader */
    uint64_t seal_after_ns;   /* see above */
    uint64_t piece_size;      /* bytes */
    uint64_t verify_after_ns; /* see above */
    uint64_t max_behind;      /* entries */
    uint64_t snapshot_every;  /* entries */
    uint64_t retention_ns;    /* see "Retention"; 0 = keep everything */
};

/* ---- seal records (in the node's `_digest` database, digest.h):
 *   N \4            u64le S, u64le F: the last seal applied
 *   N \5 u64be(S)   u64le F: a seal (the newest ARCHIVER_SEALS_KEPT)
 * N is the partition's database name. Write transactions: the applier. */

/* Applies a seal (first, at lsn): 1 when it closed a piece (recorded),
 * 0 when it was stale, or an NERR code. */
int archiver_seal_apply(MDB_txn *txn, MDB_dbi ddbi, const char *name, uint64_t first, uint64_t lsn,
                        struct nerr *err);
/* The last seal applied (0, 0 when none). */
int archiver_seal_last(MDB_txn *txn, MDB_dbi ddbi, const char *name, uint64_t *first,
                       uint64_t *last, struct nerr *err);
/* Every recorded seal with S > after, oldest first. */
int archiver_seals_after(MDB_txn *txn, MDB_dbi ddbi, const char *name, uint64_t after,
                         int (*fn)(void *arg, uint64_t first, uint64_t last), void *arg,
                         struct nerr *err);
/* Forgets every seal of the partition (its table was dropped). */
int archiver_seals_drop(MDB_txn *txn, MDB_dbi ddbi, const char *name, struct nerr *err);

/* ---- the archiver ---- */

/* Opens the archive (created when missing) and starts the thread; the
 * catalog must be open (its partitions are walked) and is borrowed until
 * archiver_stop. */
int archiver_start(const struct archiver_options *opt, struct catalog *c, struct archiver **out,
                   struct nerr *err);
/* Stops the thread (an upload in progress finishes first); seals are
 * still taken (and dropped) until archiver_free, which may only run once
 * no group can apply any more (the catalog closed). NULL is allowed. */
void archiver_stop(struct archiver *a);
void archiver_free(struct archiver *a);

/* The applier applied a seal of partition `name` (gid) that closed the
 * piece first..last. Queues and returns. NULL a: no archive. */
void archiver_sealed(struct archiver *a, const char *name, uint64_t first, uint64_t last);

/* NinesAdmin.Status's "archive": {"url", "behind_entries" (the most any
 * partition here has applied past what this node has seen archived),
 * "pending_pieces", "uploaded", "verified", "taken_over", "mismatches",
 * "errors", "released_unarchived", "snapshots", "skipped", "expired" (objects
 * deleted by retention), "last_error"}. */
json_t *archiver_status(struct archiver *a);
/* Prometheus lines (nines_archive_*). */
void archiver_metrics(struct archiver *a, struct strbuf *b);

#endif
