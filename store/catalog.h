/*
 * catalog.h — tables and their partitions on this node.
 *
 * The catalog is the state machine of the metadata group ("meta"): CreateTable
 * and DeleteTable are entries of its log, applied in order, so every node that
 * hosts a replica of the metadata group derives the
 * same tables with the same ids. A table's id is "t<LSN of its CreateTable>":
 * unique for the life of the cluster, so a table re-created under the same
 * name never meets its predecessor's data.
 *
 * A table has nparts partitions; an item lives in partition
 *     av_partition_of(hash key, nparts) (proto/av.h)
 * (a range split of the 32-bit hash space, so a later split is a range split).
 * Each partition is a replication group ("p.<id>.<n>") with its own stream in
 * the node log (nodelog.h: entries, term and vote), its own group directory
 * (groups/p.<id>.<n>/: SNAPSHOT) and its own LMDB named database of the same name.
 *
 * Replication. The metadata group ("meta", group id 1) has up to three
 * members (placement_compute of one partition over the cluster's nodes);
 * CreateTable and DeleteTable go to its leader. The proposer computes the
 * table's placement (every partition's members, preferred leader first) and
 * it is stored in the table's description ("Placement"), so it never moves
 * when the node list changes. Every node keeps the list of tables in sync
 * with a loop every CATALOG_SYNC_MS whatever the request rate: a meta
 * member reads its own catalog database when the metadata group applied
 * something since it last did (and every CATALOG_RESYNC_MS anyway), any
 * other node asks the meta members (NinesAdmin.Catalog). Syncing opens the groups
 * of the partitions this node is a member of (group id = table LSN << 12 |
 * partition + 1) and closes and drops those of deleted tables. A meta
 * member also syncs right after it applies a catalog entry, so a table
 * created through it is usable here as soon as CreateTable answers.
 *
 * Lifetime. catalog_get returns a table with a reference held; callers drop it
 * with table_put. A deleted table disappears from the catalog at once; its
 * memory, groups, group directories and node log streams go away when the
 * last reference is dropped (on a
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

#define CATALOG_SYNC_MS 200
#define CATALOG_RESYNC_MS 5000 /* a meta member's full sync, changed or not */
#define CATALOG_META_GID 1
#define CATALOG_MAX_REPLICAS 3

/* Slots of a partition's group (group.h, struct group_members): member id
 * k+1 runs on slots[k] ("" = no member has that id). */
#define CATALOG_MAX_SLOTS RAFT_MAX_MEMBERS

/* Who holds a partition's replicas: immutable once published; a change
 * publishes a new one (partition_members) and the old ones stay until the
 * table is freed (a reader may still hold one). */
struct pmembers {
    int nmembers;
    char members[CATALOG_MAX_SLOTS][64]; /* nodes holding a member, by id (slot 1, the
                                            preferred leader, first) */
    int nslots;                          /* slots used so far (the highest id ever given) */
    char slots[CATALOG_MAX_SLOTS][64];   /* by member id - 1; "" = empty */
    char left[CATALOG_MAX_SLOTS][64];    /* an empty slot's last node ("" = none) */
    int chg_add, chg_remove;             /* a replacement in progress (ids), or 0 */
    struct pmembers *older;
};

struct partition {
    struct table *t;
    int index;
    char name[64]; /* group name = LMDB database name */
    uint64_t gid;
    struct pmembers *_Atomic pm; /* never NULL once the table is published */
    MDB_dbi dbi;                 /* only when g != NULL */
    MDB_dbi ddbi; /* the `_digest` database (digest.h) when g != NULL; 0 = keep no digest */
    struct group *_Atomic g; /* NULL: this node holds no replica (set when it joins,
                                cleared when it leaves) */
    struct group *left;      /* the member this node had before it left (sync thread) */
    uint64_t left_ms;        /* when (clock_mono_ms) */
    struct overlay *ov;      /* where items_sm publishes applied items (items.h) */
    /* Digest changes of the applier's open transaction, written by
     * items_sm.before_commit (digest.h; NULL: none). Applier thread only. */
    struct digest_pending *dpend;
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

struct cluster_conf;
struct catalog_options {
    const struct cluster_conf *conf; /* the cluster file (borrowed) */
    const char *self_id;             /* this node's id */
    const char *data_dir;            /* the node's data directory (groups/ lives below it) */
    uint64_t wal_segment_size;
    int unsafe_ack_before_sync;
    int max_partitions; /* upper bound on partitions per table */
    int max_dbs;        /* LMDB named databases available for partitions */
};

/* Names that become paths. A table id and a group name end up as a
 * directory name below the data directory (groups/<group>/) and as an LMDB
 * database name, and a catalog fetched from another node is not trusted, so
 * every such name is checked by catalog_path_name_ok before it is used:
 * 1..CATALOG_MAX_PATH_NAME bytes of [A-Za-z0-9._-], not starting with '.'
 * (so never "." or ".."), no '/'. catalog_table_id_ok also checks the one
 * form a table id has ("t<LSN>", decimal, no leading zero, LSN < 2^52 so that
 * the group ids LSN << 12 | partition cannot wrap) and returns the LSN in
 * *lsn (may be NULL). Both return 1 when the name is acceptable. Pure. */
#define CATALOG_MAX_PATH_NAME 63
int catalog_path_name_ok(const char *s);
int catalog_table_id_ok(const char *id, uint64_t *lsn);

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

/* This node's id (catalog_options.self_id; valid while c is open). */
const char *catalog_self(const struct catalog *c);

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
    int status;   /* 0, NERR_EXISTS (name in use), NERR_NOTFOUND */
    json_t *desc; /* the table description (created or deleted one), owned */
};
int catalog_propose_create(struct catalog *c, const char *name, json_t *def, group_done_fn done,
                           void *arg);
int catalog_propose_delete(struct catalog *c, const char *name, group_done_fn done, void *arg);

/* Membership of one partition (issue 17; docs/replication.md, "Replacing a
 * replica"). A replacement of member `remove` (on the node being left) by a
 * new member on `node` is three steps, each one a meta entry or a group's
 * own change:
 *   1. catalog_propose_member_add: slot `add` (a never-used id) gets node;
 *      the partition records the change {add, remove}. Every node syncs:
 *      the new node opens an empty member with the target configuration
 *      (slots minus remove), the others learn where id `add` runs
 *      (group_set_members);
 *   2. the partition's leader proposes the target configuration
 *      (group_propose_conf: joint, then auto-leave);
 *   3. catalog_propose_member_done once the target is committed and the
 *      new member has caught up: slot `remove` is cleared and the change
 *      record goes; the left node closes its member and drops its data.
 * The table stays the same object: a change publishes the partition's new
 * struct pmembers; a node that joins opens its member and publishes it in
 * partition.g; a node that left unpublishes its member at once (requests
 * route elsewhere) and closes it, emptying its replica and dropping its
 * log, CATALOG_LEFT_GRACE_MS later (longer than any request may hold it:
 * ROUTE_DEADLINE_MS, a scrub marker's wait), or at the next start.
 * The group's starting configuration (struct
 * group_members.conf, used when its log and SNAPSHOT hold none): the
 * member being added gets the target; every other member the set slots
 * minus the one being added (the last committed configuration the
 * catalog knows); a partition that never changed, none (ids 1..n).
 * Both entries are checked when applied (table id, partition, slots, no
 * other change in progress): the result's status is 0, NERR_NOTFOUND (no
 * such table or partition), NERR_BUSY (another change in progress, or
 * none to finish), NERR_INVALID (bad slot or node). */
int catalog_propose_member_add(struct catalog *c, const char *name, const char *table_id, int part,
                               int add, const char *node, int remove, group_done_fn done,
                               void *arg);
int catalog_propose_member_done(struct catalog *c, const char *name, const char *table_id, int part,
                                group_done_fn done, void *arg);
/* A node to hold a new member of t's partition `part` in place of the
 * member on node `lost` (placement_replace over the cluster file's nodes,
 * loads counted over every table's members; never lost, never a node in
 * exclude). *out points into the cluster file. Errors as placement_replace. */
int catalog_choose_replacement(struct catalog *c, const struct table *t, int part, const char *lost,
                               const char *const *exclude, size_t nexclude, const char **out,
                               struct nerr *err);
/* A NinesAdmin call `op` (body: a JSON object) to the members of the
 * metadata group over HTTP, one after the other until one answers 200
 * (*reply, malloc'd, may be NULL) or 4xx (NERR_INVALID, the answer in
 * err); NERR_BUSY when none answered. Signed and over TLS as the
 * cluster file says. Blocks (3 s per member at most); any thread but the
 * applier and the driver. */
int catalog_meta_call(struct catalog *c, const char *op, const char *body, char **reply,
                      struct nerr *err);
/* The id a new member on `node` gets in m: the lowest slot no member
 * holds and `node` did not hold last (member_change refuses that: a late
 * acknowledgement of its former incarnation must not count), else the
 * next one; 0 when every id is taken. */
int catalog_new_member_id(const struct pmembers *m, const char *node);
/* The starting configuration of member `self` of m, as described above. */
void catalog_member_conf(const struct pmembers *m, int self, struct raft_conf *conf);
/* The partition's members now (never NULL; valid while the table is held). */
const struct pmembers *partition_members(const struct partition *p);
#define CATALOG_LEFT_GRACE_MS 60000
void catalog_result_free(struct catalog_result *r);

/* Numbers DescribeTable reports: item count and bytes over all partitions. */
int table_stats(struct table *t, uint64_t *items, uint64_t *bytes);

struct state *catalog_state(struct catalog *c);

/* The node's archiver (store/archiver.h), or NULL: set once it started,
 * cleared before it stops. Any thread. */
struct archiver;
void catalog_set_archiver(struct catalog *c, struct archiver *a);
struct archiver *catalog_archiver(struct catalog *c);

/* The metadata group here (NULL when this node is not a member) and its
 * members' node ids. */
struct group *catalog_meta(struct catalog *c);
int catalog_meta_nodes(struct catalog *c, const char **nodes);
/* Every table's description as a JSON array (new reference), read from this
 * node's catalog database (meta members) or its last sync. */
json_t *catalog_descs(struct catalog *c);

/* Decodes a NinesAdmin.Catalog reply fetched from another node (catalog
 * sync): {"tables": [desc, ...]}. The reply is not trusted: every
 * description must be one this version can open (ids and group names
 * checked as above, key schema, placement); the others are dropped and
 * logged. *out is a new JSON array of the accepted descriptions (the
 * caller owns it). NERR_INVALID when the body is not such an object.
 * Pure apart from the log; any thread. */
int catalog_descs_decode(const char *body, size_t len, json_t **out, struct nerr *err);
/* Calls fn for every open group of this node (meta first). */
void catalog_each_group(struct catalog *c,
                        void (*fn)(void *arg, struct table *t, int part, struct group *g),
                        void *arg);
/* Runs one sync now (tests and request paths that missed a table). */
void catalog_sync_now(struct catalog *c);

#endif
