/*
 * digest.h — the set digest every replica keeps of its partition's items,
 * updated in the same LMDB transaction as the apply that changes them, so
 * that after any crash the digest and the data agree (the scrubber's;
 * docs/scrub.md).
 *
 * Construction: LtHash16 (Bellare and Micciancio's additive hash, with the
 * parameters of Lewi, Kim, Maykov and Weis, "Securing Update Propagation
 * with Homomorphic Hashing", 2019). An element x = (key bytes, stored item
 * bytes) is expanded to DIGEST_LANES lanes of 16 bits:
 *
 *   h(x) = ChaCha20 keystream (2048 bytes, nonce 0) under the key
 *          SHA-256("N9DG1" || u32le(len key) || key || item)
 *
 * and the digest of a set is the lane-wise sum of h(x) mod 2^16. Adding an
 * item adds h(x), removing it subtracts h(x): the order of writes does not
 * matter, and two replicas holding the same items have the same digest bit
 * for bit whatever path (writes, a snapshot, a rebuild) brought them there.
 * The item bytes are the stored form (items.h: canonical JSON), so equal
 * items have equal bytes.
 *
 * Collision bound. For an accidental difference (bit rot, a lost or extra
 * write, a software bug) the difference of the two sums is a sum of
 * independent uniformly random vectors of Z_{2^16}^1024, zero with
 * probability 2^-16384 (the hash functions are modelled as random). Against
 * an adversary who chooses items, the paper's lattice analysis gives about
 * 200 bits of security for n = 1024 lanes of 16 bits. SHA-256 binds the key
 * and the item together, so moving an item's bytes to another key changes
 * the digest.
 *
 * Buckets. A mismatch is narrowed without reading every item: each item
 * also counts in one of DIGEST_BUCKETS buckets chosen by its key
 * (digest_bucket: CRC-32C of the key bytes, top 8 bits), each holding the
 * first DIGEST_BUCKET_LANES lanes of the same h(x) (an LtHash of 32 lanes:
 * 2^-512 for an accidental difference). The whole digest decides; buckets
 * only say where to look.
 *
 * Cost (docs/benchmarks.md, "Scrubber"): one SHA-256 of the item, 2 KB of
 * ChaCha20, 1,024 16-bit additions per item written or deleted (twice for
 * an overwrite); on disk 2,080 + 256 x 64 bytes per partition replica.
 *
 * Storage. The node's bookkeeping database `_digest` (state.h) holds, per
 * partition database name N:
 *   N           the record: "N9DG" u32le version 1, u64le items,
 *               u64le bytes (keys + values), DIGEST_LANES u16le lanes
 *   N \0 b      bucket b (one byte): DIGEST_BUCKET_LANES u16le lanes
 * A partition whose record is missing (created before digests existed, or
 * after a failed rebuild) has no digest until digest_rebuild makes one.
 *
 * Threads. The pure functions are thread-safe. The LMDB functions take the
 * transaction they are given (digest_update and digest_rebuild a write
 * transaction: the applier thread, state.h).
 */
#ifndef NINES_DIGEST_H
#define NINES_DIGEST_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define DIGEST_LANES 1024
#define DIGEST_BUCKETS 256
#define DIGEST_BUCKET_LANES 32
#define DIGEST_RECORD_BYTES (4 + 4 + 8 + 8 + 2 * DIGEST_LANES)

struct digest {
    uint64_t items, bytes;
    uint16_t lane[DIGEST_LANES];
};

/* ---- pure ---- */

/* h(key, item) into lanes (DIGEST_LANES). 0, or NERR_NOMEM / NERR_INTERNAL
 * when libcrypto fails. */
int digest_elem(const void *key, size_t klen, const void *item, size_t ilen,
                uint16_t lanes[DIGEST_LANES], struct nerr *err);
/* d += h (sign 1) or d -= h (sign -1), counting the element's bytes. */
void digest_add(struct digest *d, const uint16_t lanes[DIGEST_LANES], size_t elem_bytes, int sign);
/* The bucket of a key. */
unsigned digest_bucket(const void *key, size_t klen);
/* Equality of the lanes (counts aside: two sets with equal lanes and
 * different counts cannot happen without a collision). */
int digest_equal(const struct digest *a, const struct digest *b);
/* The first 16 bytes of the lanes as 32 hex characters (+ NUL), for logs
 * and reports. */
void digest_short_hex(const struct digest *d, char out[33]);

/* ---- in LMDB (the `_digest` database, handle ddbi) ---- */

/* Changes partition `name`'s digest for one item write in txn: old (NULL =
 * the key was absent) replaced by new (NULL = deleted). A partition with no
 * record keeps none (digest_rebuild makes it: the catalog does when it opens
 * a replica). Errors: LMDB's (state_mdb_err), NERR_CORRUPT for a damaged
 * record. */
int digest_update(MDB_txn *txn, MDB_dbi ddbi, const char *name, const void *key, size_t klen,
                  const void *old, size_t oldlen, const void *new, size_t newlen, struct nerr *err);
/* Recomputes partition `name`'s digest and buckets from every item of dbi
 * (a snapshot installed, a partition created before digests existed). */
int digest_rebuild(MDB_txn *txn, MDB_dbi ddbi, const char *name, MDB_dbi dbi, struct nerr *err);
/* Reads the digest: NERR_NOTFOUND when the partition has none. */
int digest_get(MDB_txn *txn, MDB_dbi ddbi, const char *name, struct digest *d, struct nerr *err);
/* Reads bucket b's lanes: NERR_NOTFOUND when absent (no item ever counted
 * in it since the last rebuild: its lanes are all zero). */
int digest_get_bucket(MDB_txn *txn, MDB_dbi ddbi, const char *name, unsigned b,
                      uint16_t lanes[DIGEST_BUCKET_LANES], struct nerr *err);
/* ---- scrub markers ----
 *
 * A scrub marker is an entry of the partition's log (op.h, OP_SCRUB) that
 * changes no item. Every replica that applies it records, in the same
 * transaction, a copy of its digest and buckets at exactly that log index:
 *   N \1 u64be(lsn)   "N9SM" u32le 1, u64le lsn, i64le proposed_ms,
 *                     i64le applied_ms, u8 has_digest, u8 idlen, id[64],
 *                     the digest record, DIGEST_BUCKETS x bucket lanes
 * Comparing replicas is comparing these small records at the same index:
 * no snapshot, no pause of writes. A replica that was behind applies the
 * marker later and records it at the same index. The newest
 * DIGEST_MARKS_KEPT markers of a partition are kept. */
#define DIGEST_MARKS_KEPT 16

struct digest_mark {
    uint64_t lsn;
    long long proposed_ms, applied_ms; /* proposer's clock; this replica's */
    int has_digest;                    /* 0: the replica kept no digest then */
    char id[65];
    struct digest d;
    uint16_t bucket[DIGEST_BUCKETS][DIGEST_BUCKET_LANES];
};

/* Records marker `id` applied at lsn (write txn; the applier). */
int digest_mark_put(MDB_txn *txn, MDB_dbi ddbi, const char *name, uint64_t lsn, const char *id,
                    long long proposed_ms, long long applied_ms, struct nerr *err);
/* The marker `id` of partition `name` as this replica recorded it:
 * NERR_NOTFOUND when it has not applied it (yet, or it was dropped as
 * older than the newest DIGEST_MARKS_KEPT). */
int digest_mark_get(MDB_txn *txn, MDB_dbi ddbi, const char *name, const char *id,
                    struct digest_mark *out, struct nerr *err);

/* Forgets partition `name`'s digest and buckets (digest_rebuild starts with
 * it; the markers stay: they record what the replica held at their index). */
int digest_drop(MDB_txn *txn, MDB_dbi ddbi, const char *name, struct nerr *err);
/* digest_drop and every marker too (the partition's table was dropped). */
int digest_drop_all(MDB_txn *txn, MDB_dbi ddbi, const char *name, struct nerr *err);

#endif
