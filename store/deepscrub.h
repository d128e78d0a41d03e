/*
 * deepscrub.h — the deep scrub of a partition replica (docs/scrub.md, "Deep
 * scrub"): re-read every item at rest, recompute the set digest and the 256
 * bucket digests from the bytes read, and compare them with the digest the
 * node maintains on every write (digest.h).
 *
 * What it proves. The live compare (`nines scrub`) compares the maintained
 * digests of the replicas: it finds a replica that missed or invented a
 * write, but not one whose bytes changed at rest after the digest was
 * updated (bit rot, a write that bypassed the apply path), because such a
 * change leaves the maintained digest as it was. The deep scrub reads the
 * bytes and finds exactly that: a mismatch between what the replica holds
 * and what it maintained, and the buckets (digest_bucket of the key) where
 * the bytes changed.
 *
 * What is compared. For each item read, the DIGEST_BUCKET_LANES bucket
 * lanes of h(key, item) (digest_elem_lanes: 16 bytes of keystream, not the
 * 2 KB of all 1,024 lanes), summed per bucket; then the 256
 * recomputed buckets against the 256 maintained ones, and the item and byte
 * counts against the maintained record's. Also the maintained records
 * against each other: the buckets' lanes summed must equal the whole
 * digest's first DIGEST_BUCKET_LANES lanes (each item adds the same h(x) to
 * both), which finds a digest record damaged at rest in those lanes (damage
 * to its other lanes shows in the live compare: that replica's whole
 * digest differs from the other two). Bound: an accidental
 * change (rot, a stray write) makes its bucket's difference a uniformly
 * random vector of Z_{2^16}^8, zero with probability 2^-128; the whole
 * 1,024-lane digest (2^-16384) is what replicas compare with each other
 * (the live compare), where the inputs are whole digests already. Hashing
 * the bucket lanes only halved the per-item cost (digest.h, "Cost").
 *
 * Consistency. The items and the maintained digest and buckets are read in
 * ONE LMDB read transaction (state_read_begin): the applier commits data and
 * digest together, so the snapshot the transaction sees has a digest that
 * matches its items exactly, whatever writes go on meanwhile. No write is
 * paused.
 *
 * Cost of the long read transaction. The scan holds its read transaction for
 * as long as it takes (a partition of 1 GB at the default 20 MB/s: about a
 * minute). While it is open LMDB cannot reuse any page freed by a commit
 * made after it started: under writes the data file grows by the pages
 * those writes free (copy-on-write), and that space is reused only after
 * the scan ends. One reader slot is taken. That is why the rate is bounded
 * (a gentle scan is a long one: choose the rate by the write rate the node
 * takes and the free space on its disk).
 *
 * Rate. The scan sleeps whenever it is ahead of rate_bps (bytes of keys and
 * values read per second) or of rate_items (items per second), 0 = no such
 * bound, in slices of at most 100 ms so that a cancel is seen within that
 * time (the clock, the rate and the cancel flag are looked at every 16
 * items). Two bounds because the cost is per item as much as per byte (a
 * SHA-256 of the item and one block of ChaCha20 keystream, about 0.4 us on
 * this project's 2-core VM): at 20 MB/s of 60-byte items a scan would take
 * a large part of a core, at the default item bound (25,000/s) about 1 %.
 *
 * Jobs. One background thread per node runs one job at a time, in the order
 * they were started; at most DEEPSCRUB_MAX_LIVE jobs are queued or running
 * (start then fails with NERR_LIMIT). A finished job is kept for its status
 * DEEPSCRUB_KEEP_MS after it ended, and at most DEEPSCRUB_MAX_JOBS jobs are
 * remembered (the oldest finished is forgotten first). Jobs do not survive a
 * restart.
 *
 *   queued ──> running ──> done        (Match says whether the bytes agree)
 *      │          ├──────> failed      (no digest kept, LMDB error, table deleted)
 *      └──────────┴──────> cancelled   (deepscrub_cancel, or the node stops)
 *
 * Threads. Every function may be called from any thread. deepscrub_free
 * cancels every job and joins the thread: call it before the catalog and the
 * state are closed (api_free is).
 */
#ifndef NINES_DEEPSCRUB_H
#define NINES_DEEPSCRUB_H

#include <lmdb.h>
#include <stdatomic.h>
#include <stdint.h>

#include "lib/err.h"
#include "store/digest.h"

struct deepscrub;
struct state;
struct table;
struct partition;

#define DEEPSCRUB_MAX_LIVE 8
#define DEEPSCRUB_MAX_JOBS 64
#define DEEPSCRUB_KEEP_MS (30 * 60 * 1000)
#define DEEPSCRUB_DEFAULT_RATE (20.0 * 1000 * 1000) /* bytes/s */
#define DEEPSCRUB_DEFAULT_ITEM_RATE 25000.0         /* items/s */

enum deepscrub_state {
    DEEPSCRUB_QUEUED,
    DEEPSCRUB_RUNNING,
    DEEPSCRUB_DONE,
    DEEPSCRUB_CANCELLED,
    DEEPSCRUB_FAILED
};
const char *deepscrub_state_name(enum deepscrub_state s);

struct deepscrub_status {
    char job[32];
    char table[256];
    int partition;
    enum deepscrub_state state;
    uint64_t scanned_bytes, items; /* read so far (keys + values) */
    uint64_t total_bytes;          /* the maintained digest's byte count (exact, same
                                    * snapshot); 0 until the scan started */
    uint64_t store_bytes;          /* the partition's LMDB pages (mdb_stat) */
    double rate_bps;               /* the limits asked for; 0 = none */
    double rate_items;
    double measured_bps; /* scanned_bytes over the time running */
    int64_t elapsed_ms;
    uint64_t lsn; /* the applied index of the snapshot read */
    /* done: */
    int match;         /* every bucket and both counts agree, and records_agree */
    int records_agree; /* the maintained buckets sum to the maintained digest */
    uint64_t maintained_items, maintained_bytes;
    int nbad; /* buckets whose recomputed lanes differ */
    unsigned char bad[DIGEST_BUCKETS];
    char error[256]; /* failed: why */
};

int deepscrub_new(struct state *st, struct deepscrub **out, struct nerr *err);
/* Cancels every job, joins the thread, frees. NULL is fine. */
void deepscrub_free(struct deepscrub *ds);

/* Queues a deep scrub of partition p of table t (a replica this node holds:
 * p->g != NULL). Takes over the reference t (put when the job ends, also on
 * an error here). job receives the job's id. NERR_LIMIT when
 * DEEPSCRUB_MAX_LIVE jobs are queued or running, NERR_INVALID for a
 * negative rate or a partition without a replica here. */
int deepscrub_start(struct deepscrub *ds, struct table *t, struct partition *p, double rate_bps,
                    double rate_items, char job[32], struct nerr *err);
/* The job's status; NERR_NOTFOUND when it is unknown (never was, forgotten,
 * or the node restarted). */
int deepscrub_status(struct deepscrub *ds, const char *job, struct deepscrub_status *out,
                     struct nerr *err);
/* Asks the job to stop (a queued job stops at once, a running one within
 * 100 ms). Idempotent on a finished job. NERR_NOTFOUND as above. */
int deepscrub_cancel(struct deepscrub *ds, const char *job, struct nerr *err);

/* The scan itself, synchronous, on a read transaction txn the caller opened
 * (and ends): partition `name` (items in dbi, digest in ddbi). Fills st's
 * counts and result; rate_bps and cancel as above (cancel may be NULL);
 * progress (may be NULL) is called once the totals are known, then every
 * 64 KB or 200 ms (whichever comes first), with st under no lock.
 * 0 with st->state DONE or CANCELLED; an error with st->error set.
 * NERR_NOTFOUND: the partition keeps no digest. For tests and the worker. */
int deepscrub_scan(MDB_txn *txn, MDB_dbi dbi, MDB_dbi ddbi, const char *name, double rate_bps,
                   double rate_items, const _Atomic int *cancel, struct deepscrub_status *st,
                   void (*progress)(void *arg, const struct deepscrub_status *st), void *arg,
                   struct nerr *err);

#endif
