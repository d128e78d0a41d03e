/*
 * overlay.h — items applied but not yet committed to LMDB.
 *
 * Why. A write is acknowledged once its WAL record is durable and it has been
 * applied. Committing LMDB costs an fdatasync of its own; doing that before
 * every acknowledgement put two fsyncs in series on each write. Instead the
 * applier keeps one LMDB write transaction open across many batches and
 * publishes each applied item here; point reads (GetItem, BatchGetItem) look
 * here first. When the transaction commits, the overlay is cleared.
 *
 * Invariant: every key written by the open (uncommitted) transaction has an
 * entry holding its latest value (or a tombstone). Entries are removed only
 * after the transaction that wrote them committed, so a reader that misses
 * the overlay and then opens an LMDB read transaction sees the commit.
 *
 * Threads: one writer (the applier), any number of readers.
 */
#ifndef NINES_OVERLAY_H
#define NINES_OVERLAY_H

#include <lmdb.h>
#include <stddef.h>

struct overlay;

enum overlay_hit { OVERLAY_MISS = 0, OVERLAY_VALUE = 1, OVERLAY_TOMBSTONE = 2, OVERLAY_NOMEM = 3 };

struct overlay *overlay_new(void);
void overlay_free(struct overlay *o);

/* Applier only. value NULL = the key was deleted. Copies everything. Returns
 * 0 or NERR_NOMEM. */
int overlay_put(struct overlay *o, MDB_dbi dbi, const void *key, size_t klen, const void *value,
                size_t vlen);
/* Applier only, after a commit: forgets everything. */
void overlay_clear(struct overlay *o);
size_t overlay_count(struct overlay *o);

/* Any thread. On OVERLAY_VALUE, *value is a malloc'd copy (NUL-terminated). */
enum overlay_hit overlay_get(struct overlay *o, MDB_dbi dbi, const void *key, size_t klen,
                             char **value, size_t *vlen);

#endif
