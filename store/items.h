/*
 * items.h — the item state machine of a partition, and reads of its data.
 *
 * Storage. In the partition's named database, the key is av_key_encode(hash,
 * range) (all items of one hash key form a contiguous, range-ordered run) and
 * the value is the item as compact JSON with sorted attribute names (DynamoDB
 * wire form, numbers canonical): the same item always has the same bytes,
 * which the scrubber's digests rely on.
 *
 * Writes arrive only through items_sm (group.h), on the applier thread.
 * Reads run on any thread in a read transaction (state_read_begin).
 */
#ifndef NINES_ITEMS_H
#define NINES_ITEMS_H

#include <jansson.h>
#include <lmdb.h>

#include "lib/err.h"
#include "store/catalog.h"
#include "store/group.h"
#include "store/op.h"

/* The group_sm of a partition; sm argument: struct partition *. Results are
 * struct op_result * (op.h). */
extern const struct group_sm items_sm;

/* A point read that sees every acknowledged write: the overlay of applied but
 * uncommitted items first, then LMDB. *value is a malloc'd copy of the stored
 * bytes (NUL-terminated). NERR_NOTFOUND when absent. Any thread. */
int items_read(struct state *st, const struct partition *p, const unsigned char *k, size_t klen,
               char **value, size_t *vlen, struct nerr *err);

/* Raw committed item bytes for an encoded key, within txn: *val points into
 * the transaction (valid until it ends). NERR_NOTFOUND when absent. Sees only
 * committed writes: callers that need acknowledged ones use items_read or
 * group_host_barrier first. */
int items_get_raw(MDB_txn *txn, const struct partition *p, const unsigned char *k, size_t klen,
                  MDB_val *val, struct nerr *err);

/* Size limit of one item (DynamoDB: 400 KB). */
#define ITEMS_MAX_BYTES 409600

/* A whole named database as snapshot bytes, and back (group.h, Compaction).
 * Used by the partitions' and the catalog's state machines. Restore empties
 * dbi first; keys must come in order (they do from items_dbi_snapshot). */
int items_dbi_snapshot(MDB_txn *txn, MDB_dbi dbi, unsigned char **out, size_t *len,
                       struct nerr *err);
int items_dbi_restore(MDB_txn *txn, MDB_dbi dbi, const void *data, size_t len, struct nerr *err);

#endif
