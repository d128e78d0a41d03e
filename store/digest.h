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
 * first DIGEST_BUCKET_LANES lanes of the same h(x) (an LtHash of 8 lanes:
 * 2^-128 for an accidental difference). The whole digest decides; buckets
 * say where to look, and the deep scrub compares them (deepscrub.h).
 *
 * Cost (docs/benchmarks.md, "Scrubber"): one SHA-256 of the item, 2 KB of
 * ChaCha20, 1,024 16-bit additions per item written or deleted (twice for
 * an overwrite): about 0.55 us for a 64-byte item, 1.1 us for 1 KB, on this
 * project's 2-core VM, with each thread's libcrypto contexts kept across
 * calls (a context per call cost 0.3-0.4 us more). The deep scrub needs
 * the bucket lanes only (digest_elem_lanes: 16 bytes of keystream). On the
 * write path the LMDB pages the digest dirties cost more than the hashing:
 * hence the layout below (every record small enough to stay inside a leaf
 * page, 4 KB of buckets in all) and one write of it per transaction
 * (digest_pending). On disk 2,080 + 4,096 bytes per partition replica.
 *
 * Storage (format 2). The node's bookkeeping database `_digest` (state.h)
 * holds, per partition database name N:
 *   N \2 \0    the first half of the record: "N9DG" u32le 2, u64le items,
 *               u64le bytes (keys + values), lanes 0-511 (u16le)
 *   N \2 \1    the second half: "N9DG" u32le 2, lanes 512-1023
 *   N \3 g      bucket group g (0-15): buckets 16g..16g+15, each
 *               DIGEST_BUCKET_LANES u16le lanes (256 bytes; absent = zero)
 *   N \1 ...    scrub markers (below)
 * Every value but a marker fits inside an LMDB leaf page (no overflow page
 * to copy and free per transaction), and the keys of one partition sort
 * together, so a transaction's digest writes dirty two or three pages.
 * Format 1 (before 2026-12-06: N = one 2,080-byte record on an overflow
 * page, N \0 b = bucket b of 32 lanes, 16 KB in all) is not read:
 * digest_get reports such a partition as having no digest, the catalog
 * rebuilds it when it opens the replica, and digest_drop removes the old
 * keys. A partition whose record is missing (created before digests
 * existed, or after a failed rebuild) has no digest until digest_rebuild
 * makes one.
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
#define DIGEST_BUCKET_LANES 8
#define DIGEST_GROUPS 16 /* stored bucket groups of DIGEST_BUCKETS / DIGEST_GROUPS */
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
/* The first nlanes lanes of h(key, item) (1..DIGEST_LANES): the same
 * values digest_elem gives, for a fraction of the keystream.
 * DIGEST_BUCKET_LANES of them are an element's bucket lanes. */
int digest_elem_lanes(const void *key, size_t klen, const void *item, size_t ilen, uint16_t *lanes,
                      size_t nlanes, struct nerr *err);
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

/* The element hash: SHA-256("N9DG1" || u32le(klen) || key || item), the
 * ChaCha20 key h(x) is expanded from. Equal hashes = equal (key, stored
 * bytes); the scrubber's drill-down compares items by it. 0, or
 * NERR_NOMEM / NERR_INTERNAL when libcrypto fails. */
#define DIGEST_HASH_BYTES 32
int digest_item_hash(const void *key, size_t klen, const void *item, size_t ilen,
                     unsigned char out[DIGEST_HASH_BYTES], struct nerr *err);
/* A key's sub-bucket inside its bucket: the next 8 bits of the same
 * CRC-32C (bits 16..23). bucket x sub = 65,536 slices of a partition. */
unsigned digest_sub_bucket(const void *key, size_t klen);
/* A hash in lower-case hex (64 characters + NUL). */
void digest_hash_hex(const unsigned char h[DIGEST_HASH_BYTES], char out[2 * DIGEST_HASH_BYTES + 1]);

/* ---- listing a bucket (the drill-down, docs/scrub.md; the deep scrub) ----
 *
 * digest_bucket_scan visits, in key order, the items of partition database
 * dbi whose key falls in s->bucket (and, when s->sub >= 0, in that
 * sub-bucket), starting strictly after s->after (NULL: from the first
 * key), and calls fn with the key, the stored bytes and their element hash
 * computed from the bytes read now (bit rot shows as a different hash).
 * The partition is walked and filtered: a bucket is not contiguous in key
 * order. It stops after s->limit items, or after s->max_examined keys
 * looked at (0: no bound), with end->more = 1 and end->last = the last key
 * looked at (the resume point: pass it as the next call's after). Every
 * pointer fn receives is valid only during the call (the transaction's
 * pages). fn returns 0 to go on, or an error that stops the scan and is
 * returned. Any read transaction works; the caller owns it. */
struct digest_scan {
    unsigned bucket; /* 0..DIGEST_BUCKETS-1 */
    int sub;         /* -1: the whole bucket; else 0..255 */
    const void *after;
    size_t after_len;
    size_t limit;        /* >= 1 */
    size_t max_examined; /* 0: no bound */
};
struct digest_scan_end {
    size_t items;    /* fn calls */
    size_t examined; /* keys looked at */
    int more;        /* stopped by a bound with keys left */
    unsigned char last[512];
    size_t last_len; /* 0: nothing looked at */
};
typedef int (*digest_scan_fn)(void *arg, const void *key, size_t klen, const void *item,
                              size_t ilen, const unsigned char hash[DIGEST_HASH_BYTES],
                              struct nerr *err);
int digest_bucket_scan(MDB_txn *txn, MDB_dbi dbi, const struct digest_scan *s, digest_scan_fn fn,
                       void *arg, struct digest_scan_end *end, struct nerr *err);
/* The sub-bucket digests of bucket b, from the bytes read now: out[s] is
 * the XOR of the element hashes of sub-bucket s's items (keys are unique,
 * so XOR is a set hash; an accidental difference cancels with probability
 * 2^-256), count[s] their number. One walk of the partition. */
int digest_sub_digests(MDB_txn *txn, MDB_dbi dbi, unsigned bucket,
                       unsigned char out[DIGEST_BUCKETS][DIGEST_HASH_BYTES],
                       uint32_t count[DIGEST_BUCKETS], size_t *examined, struct nerr *err);

/* ---- in LMDB (the `_digest` database, handle ddbi) ---- */

/* Changes partition `name`'s digest for one item write in txn: old (NULL =
 * the key was absent) replaced by new (NULL = deleted), written at once (a
 * digest_pending of its own; the applier batches instead, below). A
 * partition with no record keeps none (digest_rebuild makes it: the catalog
 * does when it opens a replica). Errors: LMDB's (state_mdb_err),
 * NERR_CORRUPT for a damaged record. */
int digest_update(MDB_txn *txn, MDB_dbi ddbi, const char *name, const void *key, size_t klen,
                  const void *old, size_t oldlen, const void *new, size_t newlen, struct nerr *err);
/* ---- changes pending in one write transaction ----
 *
 * The applier applies many entries in one write transaction (group.h).
 * Reading, decoding, re-encoding and writing the 2 KB record and a bucket
 * for every item cost more than the element hashes themselves
 * (t/bench/deepscan.sh upkeep; docs/benchmarks.md). So the item writes of
 * one transaction add into a digest_pending, kept by the caller (NULL:
 * nothing pending), and digest_flush writes the record and each changed
 * bucket once, in the same transaction, before it commits.
 *
 * Contract. Everything added to a pending belongs to the one write
 * transaction it was first loaded in: flush it (or discard it) before that
 * transaction commits or aborts. Anything that reads or writes the
 * partition's digest in that transaction (digest_get, digest_mark_put,
 * digest_update) must flush first; digest_rebuild and digest_drop replace
 * it, so discard first. digest_pending_add hashes the item bytes before it
 * touches LMDB, so item may point into a page of the same transaction (an
 * old value from mdb_get, before the put that replaces it). */
struct digest_pending;
/* Counts item (key, bytes) in (sign 1) or out (sign -1) of partition
 * `name`'s digest. The first call of a transaction allocates *pd and reads
 * the record; a partition without one keeps none (digest_rebuild makes it).
 * Errors: NERR_NOMEM, libcrypto's, LMDB's, NERR_CORRUPT for a damaged
 * record; *pd is then discarded (the transaction is failing anyway). */
int digest_pending_add(struct digest_pending **pd, MDB_txn *txn, MDB_dbi ddbi, const char *name,
                       const void *key, size_t klen, const void *item, size_t ilen, int sign,
                       struct nerr *err);
/* Writes what is pending and frees it (*pd = NULL). No-op for NULL. */
int digest_flush(struct digest_pending **pd, MDB_txn *txn, MDB_dbi ddbi, const char *name,
                 struct nerr *err);
/* Drops what is pending without writing it (*pd = NULL). */
void digest_pending_discard(struct digest_pending **pd);

/* Recomputes partition `name`'s digest and buckets from every item of dbi
 * (a snapshot installed, a partition created before digests existed). */
int digest_rebuild(MDB_txn *txn, MDB_dbi ddbi, const char *name, MDB_dbi dbi, struct nerr *err);
/* Reads the digest: NERR_NOTFOUND when the partition has none. */
int digest_get(MDB_txn *txn, MDB_dbi ddbi, const char *name, struct digest *d, struct nerr *err);
/* Reads every bucket's lanes (16 reads; a group no item was ever counted
 * in since the last rebuild is all zero). */
int digest_get_buckets(MDB_txn *txn, MDB_dbi ddbi, const char *name,
                       uint16_t out[DIGEST_BUCKETS][DIGEST_BUCKET_LANES], struct nerr *err);
/* ---- scrub markers ----
 *
 * A scrub marker is an entry of the partition's log (op.h, OP_SCRUB) that
 * changes no item. Every replica that applies it records, in the same
 * transaction, a copy of its digest and buckets at exactly that log index:
 *   N \1 u64be(lsn)   "N9SM" u32le 2, u64le lsn, i64le proposed_ms,
 *                     i64le applied_ms, u8 has_digest, u8 idlen, id[64],
 *                     the whole digest ("N9DG" u32le 1, u64le items,
 *                     u64le bytes, DIGEST_LANES u16le lanes),
 *                     DIGEST_BUCKETS x DIGEST_BUCKET_LANES u16le lanes
 * (version 1, written before 2026-12-06, has 32 lanes per bucket; it is
 * read, keeping the first DIGEST_BUCKET_LANES: the same values).
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
