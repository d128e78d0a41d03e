/*
 * reference.h — the reference replica (docs/archive.md): a partition's
 * state rebuilt offline from the WAL archive alone, through the same state
 * machine the store applies (store/items.h), into a scratch LMDB, with the
 * set digest every replica keeps (store/digest.h) — so it can be compared
 * with the live replicas' digests at a scrub marker.
 *
 * Build (reference_build): the newest archived snapshot of the group at
 * or before `upto` (its manifest, size and SHA-256 checked, every item's
 * CRC; its items loaded and the digest recomputed from them must match the
 * digest fingerprint the manifest recorded), then every archived piece
 * after it up to `upto`, in index order (manifest, size, SHA-256, every
 * entry's CRC; consecutive indexes), each entry applied as the store
 * applies it (a forwarded proposal's frame removed; an entry no replica can
 * decode applied as a no-op, as the store does). A gap, a corrupt or
 * truncated piece, a snapshot whose items do not give its digest, or an
 * archive that does not reach `upto` is a problem named with its object:
 * the build fails (NERR_CORRUPT / NERR_NOTFOUND) and nothing is reported as
 * the reference. Never skipped.
 *
 * The result carries what NinesAdmin.ScrubDigest answers for a replica at
 * a marker (Fingerprint: SHA-256 of the lanes, Items, Bytes, Buckets), so
 * a scrubber compares the four sources alike.
 *
 * `nines reference URL --group G --upto N --key NAME:T[,NAME:T]
 * [--json FILE] [--dir SCRATCH] [--list-buckets B,...]` runs it (reference_main; exit 0 built,
 * 1 the archive cannot give the reference, each problem named, 2 usage).
 *
 * Threads: one call at a time per scratch directory; nothing is shared.
 */
#ifndef NINES_REFERENCE_H
#define NINES_REFERENCE_H

#include <jansson.h>
#include <stdint.h>

#include "lib/err.h"
#include "store/digest.h"

struct reference_options {
    const char *url;   /* the archive */
    const char *group; /* the partition's group name, "p.t<ID>.<N>" */
    uint64_t upto;     /* the log index to rebuild to (a scrub marker's) */
    /* The table's key schema (the entries hold requests, not items). */
    const char *hash_name, *range_name; /* range_name NULL: no sort key */
    char hash_type, range_type;         /* 'S', 'N' or 'B' */
    const char *scratch;                /* an empty or missing directory */
    /* Optional: called for every item of the rebuilt state, in key order,
     * once it is built (stored bytes: the item as DynamoDB JSON). A
     * non-zero return stops the walk and fails the build with it. */
    int (*on_item)(void *arg, const void *key, size_t klen, const void *val, size_t vlen);
    void *item_arg;
    /* Optional: buckets (digest.h) to list once built, into
     * reference_result.lists: {"B": [{"Key", "KeyBytes", "Hash"}]} in key
     * order, as NinesAdmin.ScrubKeys lists a replica's (the drill-down). */
    const int *list_buckets;
    size_t nlist;
};

struct reference_result {
    uint64_t index;      /* = upto */
    uint64_t snap_index; /* the snapshot it started from (0: the log's start) */
    uint64_t entries, pieces, poisoned;
    double seconds;
    struct digest d;
    uint16_t bucket[DIGEST_BUCKETS][DIGEST_BUCKET_LANES];
    json_t *lists; /* with list_buckets: owned by the caller (json_decref) */
};

int reference_build(const struct reference_options *o, struct reference_result *r,
                    struct nerr *err);

/* Point in time (docs/archive.md, "Point-in-time restore"): the index of
 * the last archived entry of group proposed at or before t_ms (each write
 * carries its proposer's wall clock, op.h wall_ms; an entry without one
 * takes its predecessor's), 0 when none is. Pieces uploaded more than
 * REFERENCE_SKEW_MS before t_ms are not read (every entry in them was
 * proposed before they were uploaded): their last index counts. *last_ms
 * gets the wall clock of the newest archived entry (0: none), *end the
 * archive's last index of the group. */
#define REFERENCE_SKEW_MS 10000
int reference_index_at(const char *url, const char *group, int64_t t_ms, uint64_t *index,
                       int64_t *last_ms, uint64_t *end, struct nerr *err);

/* {"Group", "Lsn", "Items", "Bytes", "Fingerprint", "Buckets": [256 hex],
 *  "Snapshot", "Entries", "Pieces", "Poisoned", "Seconds", "Lists"?} (new
 *  reference). */
json_t *reference_json(const struct reference_options *o, const struct reference_result *r);

/* The fingerprint ScrubDigest reports: hex SHA-256 of the lanes (u16le). */
void reference_fingerprint(const struct digest *d, char out[65]);

int reference_main(int argc, char **argv);

#endif
