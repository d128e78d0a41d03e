/*
 * state.h — the node's LMDB environment: one environment per node, one named
 * database per partition (replica), plus the node's own bookkeeping databases.
 *
 * Durability contract. The WAL is the source of durability; LMDB holds state
 * applied from it. The environment is opened with MDB_NOMETASYNC: every commit
 * flushes its data pages, but the meta page of the last commit is flushed only
 * by the next commit (or mdb_env_sync). LMDB documents that this keeps the
 * environment consistent (ACI) across a power loss and may undo only the last
 * committed transaction. MDB_NOSYNC / MDB_MAPASYNC are NOT used: with them a
 * power loss can leave a meta page pointing at unwritten pages, i.e. corrupt.
 * Undoing the last transaction is harmless because each replica's applied LSN
 * is committed in the same transaction as its data: recovery replays the WAL
 * from that LSN (state_applied_get) and reaches the same state again.
 *
 * Bookkeeping databases (names start with '_', never a partition's name):
 *   _applied   group name -> applied LSN (8 bytes, little-endian)
 *   _catalog   table name -> table description (JSON), see catalog.h
 *   _dropped   partition database name -> "" (dropped tables, deleted at start-up)
 *   _digest    partition database name (+ bucket) -> its set digest (digest.h)
 *
 * Threads. Any thread may read (state_read_begin/end); write transactions are
 * opened only by the node's applier thread and by start-up code before the
 * applier starts (LMDB serialises writers anyway). Named databases are opened
 * (mdb_dbi_open) only by those same threads, as LMDB requires.
 */
#ifndef NINES_STATE_H
#define NINES_STATE_H

#include <lmdb.h>
#include <stdint.h>

#include "lib/err.h"

struct state;

/* The longest key LMDB stores (mdb_env_get_maxkeysize of a default build).
 * Item keys longer than this are refused by the API (catalog.c). */
#define STATE_MAX_KEY 511

struct state_options {
    uint64_t map_size; /* LMDB map size in bytes; 0 = 16 GiB */
    int max_dbs;       /* named databases; 0 = 1024 */
    /* TEST ONLY (wal_options.unsafe_ack_before_sync): commits are not
     * flushed (MDB_NOSYNC) and only state_close syncs. After a power cut the
     * environment is then what the last clean stop left, never ahead of the
     * unsafe WAL, so recovery replays the WAL from there. */
    int unsafe_no_sync;
};

/* Opens (creating) the environment in directory dir. */
int state_open(const char *dir, const struct state_options *opt, struct state **out,
               struct nerr *err);
void state_close(struct state *s);
MDB_env *state_env(struct state *s);

/* The bookkeeping database handles (valid for the life of the state). */
MDB_dbi state_dbi_applied(struct state *s);
MDB_dbi state_dbi_catalog(struct state *s);
MDB_dbi state_dbi_dropped(struct state *s);
MDB_dbi state_dbi_digest(struct state *s);

/* A read-only transaction from a pool (MDB_NOTLS: pooled handles are reset and
 * renewed, so a read costs no allocation). Any thread; end it on the same or
 * another thread. */
int state_read_begin(struct state *s, MDB_txn **txn, struct nerr *err);
void state_read_end(struct state *s, MDB_txn *txn);

/* A write transaction; only for the applier / start-up (see above). */
int state_write_begin(struct state *s, MDB_txn **txn, struct nerr *err);
int state_write_commit(struct state *s, MDB_txn *txn, struct nerr *err);

/* Applied LSN of a group (0 when never applied). txn may be read or write. */
int state_applied_get(struct state *s, MDB_txn *txn, const char *group, uint64_t *lsn,
                      struct nerr *err);
int state_applied_put(struct state *s, MDB_txn *txn, const char *group, uint64_t lsn,
                      struct nerr *err);
int state_applied_del(struct state *s, MDB_txn *txn, const char *group, struct nerr *err);

/* mdb_* error to struct nerr: MDB_MAP_FULL -> NERR_LIMIT, others NERR_IO/CORRUPT. */
int state_mdb_err(struct nerr *err, int rc, const char *what);

/* A whole named database as snapshot bytes, and back (group.h, "Compaction"):
 * the state machines of the partitions (items.h) and of the catalog use them.
 * Payload: "N9SN", u32 version 1, then (u32 klen, key, u32 vlen, value) in
 * key order. Snapshot reads through txn (read or write) into *out (malloc'd,
 * the caller frees). Restore empties dbi first, within the write txn txn;
 * keys must come in order (they do from state_dbi_snapshot); a damaged
 * payload is NERR_CORRUPT and leaves txn to be aborted. */
int state_dbi_snapshot(MDB_txn *txn, MDB_dbi dbi, unsigned char **out, size_t *len,
                       struct nerr *err);
int state_dbi_restore(MDB_txn *txn, MDB_dbi dbi, const void *data, size_t len, struct nerr *err);

/* The same payload as state_dbi_snapshot, produced piecewise so that a
 * partition of any size is streamed without being copied into memory
 * (docs/replication.md, "Snapshots"): state_dbi_stream_open positions a
 * cursor of txn (a read transaction the caller keeps open, and may use from
 * another thread: MDB_NOTLS) at the start; each state_dbi_stream_read fills
 * buf with up to cap bytes of the payload and sets *n (0 = the end);
 * state_dbi_stream_rewind starts again from the first byte. The stream
 * borrows txn; close it before ending txn. Errors: NERR_NOMEM, LMDB errors
 * (state_mdb_err). */
struct state_dbi_stream;
int state_dbi_stream_open(MDB_txn *txn, MDB_dbi dbi, struct state_dbi_stream **out,
                          struct nerr *err);
int state_dbi_stream_read(struct state_dbi_stream *s, unsigned char *buf, size_t cap, size_t *n,
                          struct nerr *err);
int state_dbi_stream_rewind(struct state_dbi_stream *s, struct nerr *err);
void state_dbi_stream_close(struct state_dbi_stream *s);

#endif
