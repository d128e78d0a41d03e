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
 * Each write also updates the partition's set digest (digest.h) in the same
 * transaction (the changes of all the writes of one transaction are written
 * once, by items_sm.before_commit); restoring a snapshot rebuilds it from
 * the restored items.
 * Reads run on any thread in a read transaction (state_read_begin).
 *
 * Offline use. items_sm needs no group host: its context is the struct
 * partition alone, and apply reads and writes nothing but the LMDB txn it is
 * given and, when p->ov is not NULL, the overlay p->ov (where the running
 * node publishes applied, not yet committed items). To replay archived log
 * entries (a reference replica), give it a partition with t (the table:
 * key names, deleted flag), name and dbi set, ov NULL, and ddbi the
 * `_digest` database of that environment to keep the set digest the live
 * replicas keep (digest.h; 0 = none), and call
 * items_sm.apply(p, txn, lsn, data, len, NULL, &result, &err) for each entry
 * in log order, in a write transaction of any LMDB environment; free result
 * with items_sm.free_result; and items_sm.before_commit(p, txn, &err) before
 * committing that transaction (the digest changes of its writes wait in
 * p->dpend until then; after an abort, digest_pending_discard(&p->dpend)).
 * The same entries in the same order give the
 * same bytes (Storage, above). An entry that is not an item operation of
 * the table (it does not decode, or its key does not fit the key schema)
 * returns GROUP_APPLY_POISONED (group.h) and changes nothing: skip it, as
 * the node's applier does. items_read with ov NULL sees committed data
 * only.
 */
#ifndef NINES_ITEMS_H
#define NINES_ITEMS_H

#include <jansson.h>
#include <lmdb.h>

#include "lib/err.h"
#include "store/group.h"
#include "store/op.h"
#include "store/state.h"

/* Defined by the catalog (catalog.h); items.h does not include it, so the
 * catalog can include this header without a cycle. */
struct partition;

/* The group_sm of a partition; sm argument: struct partition * (borrowed for
 * the group's life; see Offline use). Results are struct op_result * (op.h). */
extern const struct group_sm items_sm;

/* The key attributes of LMDB key bytes of table t, in DynamoDB JSON (new
 * reference; NULL when the bytes are not a key of t). Pure. */
struct table;
json_t *items_key_json(const struct table *t, const void *k, size_t klen);

/* A point read that sees every acknowledged write: the overlay of applied but
 * uncommitted items (p->ov) first, then LMDB. *value is a malloc'd copy of the stored
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

/* Snapshots of a partition are state_dbi_snapshot / state_dbi_restore of its
 * dbi (state.h). */

#endif
