/*
 * catalog.h — tables and their partitions on this node.
 *
 * The catalog is the state machine of the metadata group ("meta"): CreateTable
 * and DeleteTable are entries of its log, applied in order, so every node that
 * will host a replica of the metadata group (replication issue) derives the
 * same tables with the same ids. A table's id is "t<LSN of its CreateTable>":
 * unique for the life of the cluster, so a table re-created under the same
 * name never meets its predecessor's data.
 *
 * A table has nparts partitions; an item lives in partition
 *     ((av_key_hash(hash key) >> 32) * nparts) >> 32
 * (a range split of the 32-bit hash space, so a later split is a range split).
 * Each partition is a replication group ("p.<id>.<n>") with its own WAL
 * directory (wal/p.<id>.<n>/) and its own LMDB named database of the same name.
 *
 * Lifetime. catalog_get returns a table with a reference held; callers drop it
 * with table_put. A deleted table disappears from the catalog at once; its
 * memory, groups and WAL go away when the last reference is dropped (on a
 * helper thread, never the applier). Its named databases are emptied in the
 * DeleteTable transaction and removed at the next start (LMDB cannot close a
 * handle that readers may still use).
 */
#ifndef NINES_CATALOG_H
#define NINES_CATALOG_H

#include <jansson.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>

#include "lib/err.h"
#include "store/group.h"

struct catalog;

struct partition {
    struct table *t;
    int index;
    char name[64]; /* group name = LMDB database name */
    MDB_dbi dbi;
    struct group *g;
};

struct table {
    char *name;
    char *id;
    char *hash_name, *range_name; /* range_name NULL without a sort key */
    char hash_type, range_type;   /* 'S', 'N' or 'B' */
    json_t *desc; /* the persisted description (KeySchema, AttributeDefinitions, ...) */
    int nparts;
    struct partition *parts;
    _Atomic int refs;
    _Atomic int deleted;
    struct catalog *cat;
};

struct catalog_options {
    const char *data_dir; /* the node's data directory (wal/ lives below it) */
    uint64_t wal_segment_size;
    int unsafe_ack_before_sync;
    int max_partitions; /* upper bound on partitions per table */
    int max_dbs;        /* LMDB named databases available for partitions */
};

/* Opens the catalog: recovers the metadata group, removes the leftovers of
 * dropped tables, then opens (and recovers) every table's partition groups. */
int catalog_open(struct group_host *h, const struct catalog_options *opt, struct catalog **out,
                 struct nerr *err);
/* Closes every group; waits for deleted tables' cleanup. No request may be running. */
void catalog_close(struct catalog *c);

/* The table named name with a reference held, or NULL. */
struct table *catalog_get(struct catalog *c, const char *name);
void table_put(struct table *t);

/* A snapshot of the table names in order (malloc'd array of strdup'd names). */
int catalog_names(struct catalog *c, char ***names, size_t *n);

/* Which partition holds items with this hash key value. */
struct partition *table_partition_for(struct table *t, const json_t *hash_av);

/* Extracts and checks the key attributes of item_or_key. exact: the object
 * must hold the key attributes and nothing else (GetItem/DeleteItem keys);
 * otherwise it is a whole item (PutItem). Builds *key (new object with only
 * the key attributes) and the encoded LMDB key. Errors are DynamoDB's
 * ValidationException messages (NERR_INVALID). */
int table_key(const struct table *t, const json_t *item_or_key, int exact, json_t **key,
              unsigned char **kbytes, size_t *klen, struct nerr *err);

/* Metadata-group proposals. def is a validated CreateTable request (borrowed).
 * done(arg, status, result): result is a struct catalog_result*, owned by done. */
struct catalog_result {
    int status;    /* 0, NERR_EXISTS (name in use), NERR_NOTFOUND */
    json_t *desc;  /* the table description (created or deleted one), owned */
};
int catalog_propose_create(struct catalog *c, const char *name, json_t *def,
                           group_done_fn done, void *arg);
int catalog_propose_delete(struct catalog *c, const char *name, group_done_fn done, void *arg);
void catalog_result_free(struct catalog_result *r);

/* Numbers DescribeTable reports: item count and bytes over all partitions. */
int table_stats(struct table *t, uint64_t *items, uint64_t *bytes);

struct state *catalog_state(struct catalog *c);

#endif
