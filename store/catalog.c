#include "store/catalog.h"
#include "store/digest.h"
#include "store/archiver.h"

#include <dirent.h>
#include <sys/stat.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <time.h>

#include "lib/clock.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "net/http.h"
#include "proto/av.h"
#include "proto/clusterfile.h"
#include "proto/sigv4.h"
#include "store/items.h"
#include "store/placement.h"

#define META_GROUP "meta"

struct catalog {
    struct group_host *h;
    struct state *st;
    struct catalog_options opt;
    char *data_dir;
    char *self_id;
    struct group *meta; /* NULL: not a member */
    int n_meta;
    const char *meta_nodes[CATALOG_MAX_REPLICAS];
    const char *meta_api[CATALOG_MAX_REPLICAS]; /* "host:port" */
    int replicas;                               /* per partition: 1 (one-node cluster) or 3 */
    pthread_mutex_t sync_mu;                    /* one sync at a time */
    pthread_t sync_thread;
    int sync_started;
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cv;
    int stopping;
    json_t *remote_descs; /* non-members: the last list fetched (under lock) */
    json_t *failed;       /* table id -> true: tables that could not be opened (said once) */
    int next_meta;        /* which meta member to ask next */
    /* Meta members: the metadata group's applied index the last complete
     * sync read (sync thread only), and when the last sync ran. */
    uint64_t synced_lsn;
    uint64_t synced_ns;
    int dbis_used; /* named databases opened since start (dropped ones stay open) */
    pthread_rwlock_t lock;
    struct table **tables; /* live tables, sorted by name */
    size_t ntables;
    pthread_mutex_t reap_mu;
    pthread_cond_t reap_cv;
    int reaping;                   /* deleted tables whose cleanup thread has not finished */
    struct archiver *_Atomic arch; /* catalog_set_archiver */
};

static void table_free(struct table *t)
{
    if (!t)
        return;
    free(t->name);
    free(t->id);
    free(t->hash_name);
    free(t->range_name);
    json_decref(t->desc);
    for (int p = 0; t->parts && p < t->nparts; p++) {
        digest_pending_discard(&t->parts[p].dpend);
        for (struct pmembers *m = t->parts[p].pm, *n; m; m = n) {
            n = m->older;
            free(m);
        }
    }
    free(t->parts);
    free(t);
}

int catalog_path_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > CATALOG_MAX_PATH_NAME || s[0] == '.')
        return 0; /* also refuses "." and ".." */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

int catalog_table_id_ok(const char *id, uint64_t *lsn)
{
    /* "t<LSN>" exactly as meta_apply writes it: no sign, no leading zero, no
     * trailing bytes, and small enough that LSN << 12 (the group id) does not
     * wrap onto another table's groups. */
    uint64_t v = 0;
    size_t n = id ? strlen(id) : 0;
    if (n < 2 || n > 21 || id[0] != 't' || id[1] == '0' || !catalog_path_name_ok(id))
        return 0;
    for (size_t i = 1; i < n; i++) {
        if (id[i] < '0' || id[i] > '9' || v > (UINT64_C(1) << 51))
            return 0;
        v = v * 10 + (uint64_t)(id[i] - '0');
    }
    if (v == 0 || v >= (UINT64_C(1) << 52))
        return 0;
    if (lsn)
        *lsn = v;
    return 1;
}

/* Builds a table (no groups yet) from its persisted description. The
 * description may come from another node (catalog sync), so nothing in it is
 * trusted: the id becomes part of directory and database names. */
/* Partition p's members as desc places them (malloc'd), or NULL when
 * they are not a valid placement (or no memory). */
static struct pmembers *pmembers_from_desc(const json_t *desc, int p)
{
    json_t *m = json_array_get(json_object_get(desc, "Placement"), (size_t)p);
    if (!json_is_array(m) || json_array_size(m) < 1 || json_array_size(m) > CATALOG_MAX_SLOTS)
        return NULL;
    struct pmembers *pm = calloc(1, sizeof *pm);
    if (!pm)
        return NULL;
    pm->nslots = (int)json_array_size(m);
    for (int k = 0; k < pm->nslots; k++) {
        json_t *sj = json_array_get(m, (size_t)k);
        const char *id = json_string_value(sj);
        if (json_is_null(sj))
            continue;
        if (json_is_object(sj)) { /* a cleared slot: {"left": the node that held it} */
            const char *l = json_string_value(json_object_get(sj, "left"));
            if (!l || strlen(l) >= sizeof pm->left[k])
                goto bad;
            strcpy(pm->left[k], l);
            continue;
        }
        if (!id || !*id || strlen(id) >= sizeof pm->slots[k])
            goto bad;
        for (int j = 0; j < pm->nmembers; j++)
            if (!strcmp(pm->members[j], id))
                goto bad; /* one member per node */
        strcpy(pm->slots[k], id);
        strcpy(pm->members[pm->nmembers++], id);
    }
    if (!pm->nmembers)
        goto bad;
    char key[16];
    snprintf(key, sizeof key, "%d", p);
    json_t *ch = json_object_get(json_object_get(desc, "Changes"), key);
    if (ch) {
        json_int_t a = json_integer_value(json_object_get(ch, "add")),
                   r = json_integer_value(json_object_get(ch, "remove"));
        if (a < 1 || a > pm->nslots || r < 1 || r > pm->nslots || a == r || !pm->slots[a - 1][0] ||
            !pm->slots[r - 1][0])
            goto bad;
        pm->chg_add = (int)a;
        pm->chg_remove = (int)r;
    }
    /* Without a change in progress the voters (the set slots) are an odd
     * number, as every configuration the catalog commits to. */
    if (!ch && pm->nmembers % 2 == 0)
        goto bad;
    return pm;
bad:
    free(pm);
    return NULL;
}

static int pmembers_same(const struct pmembers *a, const struct pmembers *b)
{
    if (a->nslots != b->nslots || a->chg_add != b->chg_add || a->chg_remove != b->chg_remove)
        return 0;
    for (int k = 0; k < a->nslots; k++)
        if (strcmp(a->slots[k], b->slots[k]))
            return 0;
    return 1;
}

int catalog_new_member_id(const struct pmembers *m, const char *node)
{
    for (int k = 0; k < m->nslots; k++)
        if (!m->slots[k][0] && strcmp(m->left[k], node))
            return k + 1;
    return m->nslots < CATALOG_MAX_SLOTS ? m->nslots + 1 : 0;
}

const struct pmembers *partition_members(const struct partition *p)
{
    return atomic_load_explicit(&((struct partition *)p)->pm, memory_order_acquire);
}

static int table_from_desc(json_t *desc, struct table **out, struct nerr *err)
{
    struct table *t = calloc(1, sizeof *t);
    if (!t)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    const char *name = json_string_value(json_object_get(desc, "TableName"));
    const char *id = json_string_value(json_object_get(desc, "TableId"));
    json_t *ks = json_object_get(desc, "KeySchema"),
           *ad = json_object_get(desc, "AttributeDefinitions");
    json_int_t nparts = json_integer_value(json_object_get(desc, "Partitions"));
    if (!name || !id || !json_is_array(ks) || !json_is_array(ad) || nparts < 1 || nparts > 4096)
        goto corrupt;
    t->name = strdup(name);
    t->id = strdup(id);
    size_t i;
    json_t *e;
    json_array_foreach(ks, i, e)
    {
        const char *an = json_string_value(json_object_get(e, "AttributeName"));
        const char *kt = json_string_value(json_object_get(e, "KeyType"));
        if (!an || !kt)
            goto corrupt;
        char type = 0;
        size_t j;
        json_t *d;
        json_array_foreach(ad, j, d)
        {
            const char *dn = json_string_value(json_object_get(d, "AttributeName"));
            const char *dt = json_string_value(json_object_get(d, "AttributeType"));
            if (dn && dt && !strcmp(dn, an))
                type = dt[0];
        }
        if (!type)
            goto corrupt;
        /* One HASH key, at most one RANGE key, of a key type (a
         * description from another node is not trusted: fuzz_catalog). */
        if (type != 'S' && type != 'N' && type != 'B')
            goto corrupt;
        if (!strcmp(kt, "HASH") && !t->hash_name) {
            t->hash_name = strdup(an);
            t->hash_type = type;
        } else if (!strcmp(kt, "RANGE") && !t->range_name) {
            t->range_name = strdup(an);
            t->range_type = type;
        } else {
            goto corrupt;
        }
    }
    if (!t->hash_name)
        goto corrupt;
    t->nparts = (int)nparts;
    t->parts = calloc((size_t)nparts, sizeof *t->parts);
    if (!t->parts || !t->name || !t->id) {
        table_free(t);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    json_t *pl = json_object_get(desc, "Placement");
    uint64_t tlsn = 0;
    if (!catalog_table_id_ok(t->id, &tlsn) || !json_is_array(pl) ||
        json_array_size(pl) != (size_t)nparts)
        goto corrupt;
    for (int p = 0; p < t->nparts; p++) {
        struct partition *pp = &t->parts[p];
        pp->t = t;
        pp->index = p;
        pp->gid = ((uint64_t)tlsn << 12) | (uint64_t)(p + 1);
        snprintf(pp->name, sizeof pp->name, "p.%s.%d", t->id, p);
        struct pmembers *pm = pmembers_from_desc(desc, p);
        if (!pm)
            goto corrupt;
        atomic_init(&pp->pm, pm);
    }
    t->desc = json_incref(desc);
    atomic_store(&t->refs, 1); /* the catalog's own reference */
    *out = t;
    return 0;
corrupt:
    table_free(t);
    return nerr_set(err, NERR_CORRUPT, "catalog entry is not a table description");
}

const char *catalog_self(const struct catalog *c)
{
    return c->self_id;
}

static int self_in(const struct catalog *c, const struct pmembers *p)
{
    for (int k = 0; k < p->nslots; k++)
        if (!strcmp(p->slots[k], c->self_id))
            return k + 1;
    return 0;
}

static int self_member(const struct catalog *c, const struct partition *p)
{
    return self_in(c, partition_members(p));
}

/* A partition that never changed: slots 1..n all set, n odd, no change. */
static int plain_partition(const struct pmembers *p)
{
    return !p->chg_add && p->nmembers == p->nslots;
}

void catalog_member_conf(const struct pmembers *p, int self, struct raft_conf *conf)
{
    *conf = (struct raft_conf){0};
    if (plain_partition(p))
        return;
    for (int k = 0; k < p->nslots; k++)
        if (p->slots[k][0])
            conf->voters |= 1u << (k + 1);
    if (p->chg_add) {
        if (self == p->chg_add)
            conf->voters &= ~(1u << p->chg_remove);
        else
            conf->voters &= ~(1u << p->chg_add);
    }
}

static void members_of(const struct partition *p, const struct pmembers *pp, int self,
                       struct group_members *mem)
{
    *mem = (struct group_members){.gid = p->gid, .self = (uint32_t)self};
    for (int k = 0; k < pp->nslots; k++)
        if ((mem->nodes[k] = pp->slots[k][0] ? pp->slots[k] : NULL))
            mem->n = (uint32_t)k + 1;
    catalog_member_conf(pp, self, &mem->conf);
}

/* Opens partition pp's named database and its digest (this node holds a
 * replica of it). */
static int open_dbi_one(struct catalog *c, MDB_txn *txn, struct partition *pp, unsigned flags,
                        struct nerr *err)
{
    int rc = mdb_dbi_open(txn, pp->name, flags, &pp->dbi);
    if (rc)
        return state_mdb_err(err, rc, pp->name);
    /* A replica made before digests existed gets one now, from its
     * items (once; later writes keep it, digest.h). */
    pp->ddbi = state_dbi_digest(c->st);
    struct digest d;
    struct nerr e = {0};
    rc = digest_get(txn, pp->ddbi, pp->name, &d, &e);
    if (rc == NERR_NOTFOUND)
        return digest_rebuild(txn, pp->ddbi, pp->name, pp->dbi, err);
    if (rc)
        return nerr_set(err, rc, "%s", e.msg);
    return 0;
}

static int open_dbis(struct catalog *c, MDB_txn *txn, struct table *t, unsigned flags,
                     struct nerr *err)
{
    for (int p = 0; p < t->nparts; p++) {
        if (!self_member(c, &t->parts[p]))
            continue;
        int rc = open_dbi_one(c, txn, &t->parts[p], flags, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* Every group directory is named here, so this is where a hostile name
 * would escape groups/: it is refused instead. */
static int group_dir_of(struct catalog *c, const char *group, char *buf, size_t cap)
{
    if (!catalog_path_name_ok(group))
        return NERR_INVALID;
    return snprintf(buf, cap, "%s/groups/%s", c->data_dir, group) >= (int)cap ? NERR_INVALID : 0;
}

/* Opens this node's member `self` of pp (its database is open) and
 * publishes it in pp->g. */
static int open_member(struct catalog *c, struct partition *pp, const struct pmembers *pm, int self,
                       struct nerr *err)
{
    char dir[PATH_MAX];
    if (group_dir_of(c, pp->name, dir, sizeof dir))
        return nerr_set(err, NERR_INVALID,
                        "group %s: not a valid directory name, or the "
                        "data path is too long",
                        pp->name);
    struct group_members mem;
    members_of(pp, pm, self, &mem);
    pp->ov = group_host_overlay(c->h);
    struct group *g = NULL;
    int rc = group_open(c->h, pp->name, dir, &items_sm, pp, &mem, &g, err);
    if (!rc)
        atomic_store_explicit(&pp->g, g, memory_order_release);
    return rc;
}

static int open_groups(struct catalog *c, struct table *t, struct nerr *err)
{
    for (int p = 0; p < t->nparts; p++) {
        struct partition *pp = &t->parts[p];
        int self = self_member(c, pp);
        if (!self)
            continue;
        int rc = open_member(c, pp, partition_members(pp), self, err);
        if (rc)
            return rc;
    }
    return 0;
}

static void close_groups(struct table *t)
{
    for (int p = 0; p < t->nparts; p++) {
        if (t->parts[p].g)
            group_close(t->parts[p].g);
        if (t->parts[p].left)
            group_close(t->parts[p].left);
        t->parts[p].g = NULL;
        t->parts[p].left = NULL;
    }
}

/* In txn: empties this node's replica of pp (items, applied LSN, digests,
 * seals) and records its database as dropped (removed at the next start,
 * catalog.h, Lifetime). */
static int drop_replica_txn(struct catalog *c, MDB_txn *txn, struct partition *pp, struct nerr *err)
{
    MDB_val dk = {strlen(pp->name), pp->name}, dv = {0, ""};
    int r;
    if ((r = mdb_drop(txn, pp->dbi, 0)) ||
        (r = mdb_put(txn, state_dbi_dropped(c->st), &dk, &dv, 0)))
        return state_mdb_err(err, r, "drop partition");
    if (state_applied_del(c->st, txn, pp->name, err) ||
        digest_drop_all(txn, state_dbi_digest(c->st), pp->name, err) ||
        archiver_seals_drop(txn, state_dbi_digest(c->st), pp->name, err))
        return -1;
    return 0;
}

/* Removes a closed member's directory and node log stream. */
static void drop_replica_files(struct catalog *c, struct partition *pp, const char *why)
{
    char dir[PATH_MAX];
    struct nerr err = {0};
    if (!group_dir_of(c, pp->name, dir, sizeof dir) && fs_rm_rf(dir, &err))
        log_warn("%s %s: %s", why, pp->name, err.msg);
    if (group_host_drop(c->h, pp->name, &err))
        log_warn("%s %s: %s", why, pp->name, err.msg);
}

/* Inserts t into the sorted table array (write lock held). */
static int insert_table(struct catalog *c, struct table *t)
{
    struct table **nt = realloc(c->tables, (c->ntables + 1) * sizeof *nt);
    if (!nt)
        return NERR_NOMEM;
    c->tables = nt;
    size_t i = 0;
    while (i < c->ntables && strcmp(c->tables[i]->name, t->name) < 0)
        i++;
    memmove(&c->tables[i + 1], &c->tables[i], (c->ntables - i) * sizeof *nt);
    c->tables[i] = t;
    c->ntables++;
    t->cat = c;
    return 0;
}

static struct table *remove_table(struct catalog *c, const char *name)
{
    for (size_t i = 0; i < c->ntables; i++)
        if (!strcmp(c->tables[i]->name, name)) {
            struct table *t = c->tables[i];
            memmove(&c->tables[i], &c->tables[i + 1], (c->ntables - i - 1) * sizeof *c->tables);
            c->ntables--;
            return t;
        }
    return NULL;
}

struct table *catalog_get(struct catalog *c, const char *name)
{
    struct table *t = NULL;
    pthread_rwlock_rdlock(&c->lock);
    size_t lo = 0, hi = c->ntables;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int cmp = strcmp(c->tables[mid]->name, name);
        if (cmp == 0) {
            t = c->tables[mid];
            atomic_fetch_add(&t->refs, 1);
            break;
        }
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    pthread_rwlock_unlock(&c->lock);
    return t;
}

static void *reap_main(void *arg);

void table_put(struct table *t)
{
    if (!t)
        return;
    if (atomic_fetch_sub(&t->refs, 1) == 1) {
        /* The last reference of a deleted table. Closing its groups waits for
         * their in-flight entries, which the applier completes, so never do it
         * here (this may be the applier thread): hand it to a thread. */
        struct catalog *c = t->cat;
        pthread_t th;
        pthread_mutex_lock(&c->reap_mu);
        c->reaping++;
        pthread_mutex_unlock(&c->reap_mu);
        if (pthread_create(&th, NULL, reap_main, t) == 0)
            pthread_detach(th);
        else
            reap_main(t); /* cannot start a thread: do it here (start-up paths only) */
    }
}

static void *reap_main(void *arg)
{
    struct table *t = arg;
    struct catalog *c = t->cat;
    int hosted[4096] = {0};
    for (int p = 0; p < t->nparts; p++)
        hosted[p] = t->parts[p].g != NULL || t->parts[p].left != NULL;
    close_groups(t);
    /* Empty this node's replicas now; the databases go at the next start
     * (catalog.h, Lifetime). */
    MDB_txn *txn;
    struct nerr derr = {0};
    if (!state_write_begin(c->st, &txn, &derr)) {
        int r = 0;
        for (int p = 0; !r && p < t->nparts; p++)
            if (hosted[p])
                r = drop_replica_txn(c, txn, &t->parts[p], &derr);
        if (r)
            mdb_txn_abort(txn);
        else
            state_write_commit(c->st, txn, &derr);
    }
    if (derr.msg[0])
        log_warn("deleted table %s: %s", t->name, derr.msg);
    for (int p = 0; p < t->nparts; p++)
        if (hosted[p])
            drop_replica_files(c, &t->parts[p], "deleted table");
    log_info("table %s (%s) deleted: groups closed, WAL removed", t->name, t->id);
    table_free(t);
    pthread_mutex_lock(&c->reap_mu);
    c->reaping--;
    pthread_cond_broadcast(&c->reap_cv);
    pthread_mutex_unlock(&c->reap_mu);
    return NULL;
}

int catalog_names(struct catalog *c, char ***names, size_t *n)
{
    pthread_rwlock_rdlock(&c->lock);
    char **v = calloc(c->ntables ? c->ntables : 1, sizeof *v);
    size_t k = 0;
    for (size_t i = 0; v && i < c->ntables; i++)
        if ((v[k] = strdup(c->tables[i]->name)))
            k++;
    pthread_rwlock_unlock(&c->lock);
    if (!v)
        return NERR_NOMEM;
    *names = v;
    *n = k;
    return 0;
}

struct partition *table_partition_for(struct table *t, const json_t *hash_av)
{
    return &t->parts[av_partition_of(hash_av, t->nparts)];
}

int table_key(const struct table *t, const json_t *obj, int exact, json_t **key,
              unsigned char **kbytes, size_t *klen, struct nerr *err)
{
    const char *names[2] = {t->hash_name, t->range_name};
    const char types[2][2] = {{t->hash_type, 0}, {t->range_type, 0}};
    json_t *vals[2] = {NULL, NULL};
    int nk = t->range_name ? 2 : 1;
    if (!json_is_object(obj) || (exact && json_object_size(obj) != (size_t)nk))
        return nerr_set(err, NERR_INVALID, "The provided key element does not match the schema");
    for (int i = 0; i < nk; i++) {
        vals[i] = json_object_get(obj, names[i]);
        int rc = av_key_check(vals[i], names[i], types[i], i == 0, !exact, err);
        if (rc)
            return rc;
    }
    json_t *k = json_object();
    if (!k)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    for (int i = 0; i < nk; i++)
        json_object_set(k, names[i], vals[i]);
    int rc = av_key_encode(vals[0], vals[1], kbytes, klen, err);
    if (!rc && *klen > STATE_MAX_KEY) {
        /* LMDB's key limit, below DynamoDB's (2048 + 1024 bytes): refused
         * here, as a client error, never inside the applier's transaction. */
        rc = nerr_set(err, NERR_INVALID,
                      "One or more parameter values were invalid: the key is too large for "
                      "ninesd (partition key and sort key together take %zu bytes encoded; the "
                      "limit is %d)",
                      *klen, STATE_MAX_KEY);
        free(*kbytes);
        *kbytes = NULL;
    }
    if (rc) {
        json_decref(k);
        return rc;
    }
    *key = k;
    return 0;
}

/* ---- the metadata group's state machine ---- */

/* Applies {"k":"create","name":N,"def":{...}} or {"k":"delete","name":N}. */
/* The description desc (a copy the caller owns) after a membership entry
 * (catalog.h, "Membership of one partition"): 0, or the entry's refusal
 * (NERR_NOTFOUND, NERR_BUSY, NERR_INVALID). Pure: every replica decides
 * alike. */
static int member_change(json_t *desc, const json_t *entry, const char *kind)
{
    const char *tid = json_string_value(json_object_get(entry, "id"));
    json_int_t part = json_integer_value(json_object_get(entry, "part"));
    const char *have = json_string_value(json_object_get(desc, "TableId"));
    json_t *pl = json_object_get(desc, "Placement");
    if (!tid || !have || strcmp(tid, have) || !json_is_array(pl) || part < 0 ||
        (size_t)part >= json_array_size(pl))
        return NERR_NOTFOUND;
    json_t *slots = json_array_get(pl, (size_t)part);
    json_t *changes = json_object_get(desc, "Changes");
    char key[24];
    snprintf(key, sizeof key, "%lld", (long long)part);
    json_t *ch = json_object_get(changes, key);
    if (!strcmp(kind, "member_add")) {
        json_int_t add = json_integer_value(json_object_get(entry, "add"));
        json_int_t rem = json_integer_value(json_object_get(entry, "remove"));
        const char *node = json_string_value(json_object_get(entry, "node"));
        if (ch)
            return NERR_BUSY;
        size_t n = json_array_size(slots);
        if (!node || !*node || strlen(node) >= 64 || add < 1 || add > CATALOG_MAX_SLOTS ||
            rem < 1 || (size_t)rem > n || !json_is_string(json_array_get(slots, (size_t)rem - 1)))
            return NERR_INVALID;
        /* The new member's id: one no member holds, and not the one this
         * node held last (raft.h: a late acknowledgement of a former
         * incarnation must not count; one from another node is dropped as
         * forged, group.h). */
        if ((size_t)add <= n) {
            json_t *was = json_array_get(slots, (size_t)add - 1);
            const char *left = json_string_value(json_object_get(was, "left"));
            if (json_is_string(was) || (left && !strcmp(left, node)))
                return NERR_INVALID;
        }
        for (size_t k = 0; k < n; k++)
            if (json_is_string(json_array_get(slots, k)) &&
                !strcmp(json_string_value(json_array_get(slots, k)), node))
                return NERR_INVALID; /* one member per node */
        while (json_array_size(slots) + 1 < (size_t)add)
            json_array_append_new(slots, json_null());
        if ((size_t)add <= json_array_size(slots))
            json_array_set_new(slots, (size_t)add - 1, json_string(node));
        else
            json_array_append_new(slots, json_string(node));
        if (!changes) {
            changes = json_object();
            json_object_set_new(desc, "Changes", changes);
        }
        json_object_set_new(changes, key, json_pack("{s:I,s:I}", "add", add, "remove", rem));
        return 0;
    }
    if (!ch)
        return NERR_BUSY;
    json_int_t rem = json_integer_value(json_object_get(ch, "remove"));
    const char *was = json_string_value(json_array_get(slots, (size_t)rem - 1));
    json_array_set_new(slots, (size_t)rem - 1, json_pack("{s:s}", "left", was ? was : ""));
    json_object_del(changes, key);
    if (!json_object_size(changes))
        json_object_del(desc, "Changes");
    return 0;
}

static int meta_apply_member(struct catalog *c, MDB_txn *txn, json_t *entry, const char *kind,
                             const char *name, struct catalog_result *res, struct nerr *err)
{
    MDB_val k = {strlen(name), (void *)name}, v;
    int found = mdb_get(txn, state_dbi_catalog(c->st), &k, &v);
    if (found == MDB_NOTFOUND) {
        res->status = NERR_NOTFOUND;
        res->desc = json_pack("{s:s}", "TableName", name);
        return 0;
    }
    if (found)
        return state_mdb_err(err, found, "catalog read");
    json_error_t je;
    json_t *desc = json_loadb(v.mv_data, v.mv_size, 0, &je);
    if (!desc)
        return nerr_set(err, NERR_CORRUPT, "catalog entry %s: %s", name, je.text);
    int st = member_change(desc, entry, kind);
    struct table *t = NULL;
    struct nerr terr = {0};
    if (!st) {
        /* What this version cannot open is refused, as at create. */
        int trc = table_from_desc(desc, &t, &terr);
        if (trc == NERR_NOMEM) {
            json_decref(desc);
            return nerr_set(err, trc, "%s", terr.msg);
        }
        if (trc)
            st = NERR_INVALID;
        table_free(t);
    }
    if (!st) {
        char *bytes = json_dumps(desc, JSON_COMPACT | JSON_SORT_KEYS);
        MDB_val nv = {bytes ? strlen(bytes) : 0, bytes};
        int r = bytes ? mdb_put(txn, state_dbi_catalog(c->st), &k, &nv, 0) : ENOMEM;
        free(bytes);
        if (r) {
            json_decref(desc);
            return state_mdb_err(err, r, "catalog write");
        }
    }
    res->status = st;
    res->desc = desc;
    return 0;
}

static int meta_apply(void *sm, MDB_txn *txn, uint64_t lsn, const void *data, size_t len, void *op,
                      void **result, struct nerr *err)
{
    struct catalog *c = sm;
    json_t *entry = op, *owned = NULL;
    struct catalog_result *res = calloc(1, sizeof *res);
    int rc = 0;
    if (!res)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    /* An entry that is not a catalog operation is poisoned (group.h):
     * nothing changes, on every replica alike. */
    if (!entry) {
        json_error_t je;
        entry = owned = json_loadb(data, len, 0, &je);
        if (!entry) {
            free(res);
            nerr_set(err, NERR_CORRUPT, "meta entry %llu: %s", (unsigned long long)lsn, je.text);
            return GROUP_APPLY_POISONED;
        }
    }
    const char *kind = json_string_value(json_object_get(entry, "k"));
    const char *name = json_string_value(json_object_get(entry, "name"));
    if (kind && name && (!strcmp(kind, "member_add") || !strcmp(kind, "member_done"))) {
        rc = meta_apply_member(c, txn, entry, kind, name, res, err);
        json_decref(owned);
        if (rc) {
            catalog_result_free(res);
            return rc;
        }
        *result = res;
        return 0;
    }
    if (!kind || !name || (strcmp(kind, "create") && strcmp(kind, "delete"))) {
        rc = nerr_set(err, NERR_CORRUPT, "meta entry %llu is not a create or delete with a name",
                      (unsigned long long)lsn);
        catalog_result_free(res);
        json_decref(owned);
        return GROUP_APPLY_POISONED;
    }
    MDB_val k = {strlen(name), (void *)name}, v;
    int found = mdb_get(txn, state_dbi_catalog(c->st), &k, &v);
    if (found && found != MDB_NOTFOUND) {
        rc = state_mdb_err(err, found, "catalog read");
        goto out;
    }
    if (!strcmp(kind, "create")) {
        if (found == 0) {
            res->status = NERR_EXISTS;
            goto out;
        }
        /* Named databases are a fixed budget (LMDB max_dbs): refused here,
         * not by LMDB inside a transaction (that would be fatal). Counted as
         * if one node held every partition, which a small cluster does. */
        json_int_t want =
            json_integer_value(json_object_get(json_object_get(entry, "def"), "Partitions"));
        json_int_t used = 0;
        MDB_cursor *cur;
        MDB_val ck, cv;
        if (!mdb_cursor_open(txn, state_dbi_catalog(c->st), &cur)) {
            for (MDB_cursor_op o = MDB_FIRST; !mdb_cursor_get(cur, &ck, &cv, o); o = MDB_NEXT) {
                json_t *d = json_loadb(cv.mv_data, cv.mv_size, 0, NULL);
                used += json_integer_value(json_object_get(d, "Partitions"));
                json_decref(d);
            }
            mdb_cursor_close(cur);
        }
        if (used + want + 8 > c->opt.max_dbs) {
            res->status = NERR_LIMIT;
            goto out;
        }
        json_t *desc = json_deep_copy(json_object_get(entry, "def"));
        char id[32];
        snprintf(id, sizeof id, "t%llu", (unsigned long long)lsn);
        json_object_set_new(desc, "TableName", json_string(name));
        json_object_set_new(desc, "TableId", json_string(id));
        json_object_set(desc, "Placement", json_object_get(entry, "placement"));
        struct table *t = NULL;
        struct nerr terr = {0};
        /* A description this version cannot open (a hostile or damaged
         * definition or placement) creates nothing; the caller is told.
         * Deterministic, so every replica agrees. */
        if ((rc = table_from_desc(desc, &t, &terr))) {
            json_decref(desc);
            if (rc == NERR_NOMEM) {
                nerr_set(err, rc, "%s", terr.msg);
                goto out;
            }
            rc = 0;
            res->status = NERR_INVALID;
            goto out;
        }
        table_free(t);
        char *bytes = json_dumps(desc, JSON_COMPACT | JSON_SORT_KEYS);
        MDB_val nv = {bytes ? strlen(bytes) : 0, bytes};
        int r = bytes ? mdb_put(txn, state_dbi_catalog(c->st), &k, &nv, 0) : ENOMEM;
        free(bytes);
        if (r) {
            rc = state_mdb_err(err, r, "catalog write");
            json_decref(desc);
            goto out;
        }
        res->desc = desc;
    } else if (!strcmp(kind, "delete")) {
        if (found == MDB_NOTFOUND) {
            res->status = NERR_NOTFOUND;
            goto out;
        }
        json_error_t je;
        json_t *desc = json_loadb(v.mv_data, v.mv_size, 0, &je);
        if (!desc) {
            rc = nerr_set(err, NERR_CORRUPT, "catalog entry %s: %s", name, je.text);
            goto out;
        }
        int r = mdb_del(txn, state_dbi_catalog(c->st), &k, NULL);
        if (r) {
            rc = state_mdb_err(err, r, "catalog delete");
            json_decref(desc);
            goto out;
        }
        /* Writes to the table still queued behind this entry must not land. */
        struct table *live = catalog_get(c, name);
        if (live) {
            atomic_store(&live->deleted, 1);
            table_put(live);
        }
        res->desc = desc;
    } else {
        rc = nerr_set(err, NERR_CORRUPT, "meta entry %llu: unknown kind '%s'",
                      (unsigned long long)lsn, kind);
    }
out:
    if (!rc && res->status && !res->desc)
        res->desc = json_pack("{s:s}", "TableName", name); /* for the error message */
    json_decref(owned);
    if (rc) {
        catalog_result_free(res);
        return rc;
    }
    *result = res;
    return 0;
}

static void sync_local(struct catalog *c);

/* After commit: bring this node's tables in line with the catalog (create:
 * open its groups; delete: close and drop them). */
static void meta_committed(void *sm, uint64_t lsn, void *op, const void *data, size_t len,
                           void *result)
{
    struct catalog *c = sm;
    struct catalog_result *res = result;
    (void)lsn;
    (void)op;
    (void)data;
    (void)len;
    if (res && !res->status)
        sync_local(c);
}

/* The catalog's entries must be committed before the sync reads them (and
 * before other transactions open the new tables' databases). */
static int meta_snapshot(void *sm, MDB_txn *txn, unsigned char **out, size_t *len, struct nerr *err)
{
    struct catalog *c = sm;
    return state_dbi_snapshot(txn, state_dbi_catalog(c->st), out, len, err);
}

static int meta_restore(void *sm, MDB_txn *txn, const void *data, size_t len, struct nerr *err)
{
    struct catalog *c = sm;
    /* The sync loop then opens and closes tables to match. */
    return state_dbi_restore(txn, state_dbi_catalog(c->st), data, len, err);
}

static const struct group_sm meta_sm = {.apply = meta_apply,
                                        .snapshot = meta_snapshot,
                                        .restore = meta_restore,
                                        .committed = meta_committed,
                                        .free_result = (void (*)(void *))catalog_result_free,
                                        .commit_before_done = 1};

void catalog_result_free(struct catalog_result *r)
{
    if (!r)
        return;
    json_decref(r->desc);
    free(r);
}

struct meta_prop {
    json_t *entry;
    group_done_fn done;
    void *arg;
};

static void meta_done(void *arg, int status, void *result)
{
    struct meta_prop *mp = arg;
    mp->done(mp->arg, status, result);
    json_decref(mp->entry);
    free(mp);
}

static int meta_propose(struct catalog *c, json_t *entry, group_done_fn done, void *arg)
{
    struct meta_prop *mp = calloc(1, sizeof *mp);
    char *bytes = json_dumps(entry, JSON_COMPACT | JSON_SORT_KEYS);
    if (!mp || !bytes) {
        free(mp);
        free(bytes);
        json_decref(entry);
        return NERR_NOMEM;
    }
    mp->entry = entry;
    mp->done = done;
    mp->arg = arg;
    int rc = group_propose(c->meta, bytes, strlen(bytes), entry, meta_done, mp);
    free(bytes);
    if (rc) {
        json_decref(entry);
        free(mp);
    }
    return rc;
}

int catalog_propose_create(struct catalog *c, const char *name, json_t *def, group_done_fn done,
                           void *arg)
{
    const struct cluster_conf *conf = c->opt.conf;
    json_int_t nparts = json_integer_value(json_object_get(def, "Partitions"));
    if (!c->meta)
        return NERR_BUSY;
    if (nparts < 1 || nparts > 4096)
        return NERR_INVALID;
    struct placement_node *nodes = calloc(conf->nnodes, sizeof *nodes);
    int *members = calloc((size_t)nparts * (size_t)c->replicas, sizeof *members);
    json_t *pl = json_array();
    struct nerr err = {0};
    int rc = nodes && members && pl ? 0 : NERR_NOMEM;
    for (size_t i = 0; !rc && i < conf->nnodes; i++)
        nodes[i] =
            (struct placement_node){conf->nodes[i].id, conf->nodes[i].az, conf->nodes[i].rack};
    /* Tables of the same name get different tie-breaks after a re-create. */
    uint64_t salt = 1469598103934665603ull ^ (uint64_t)time(NULL);
    for (const char *q = name; *q; q++)
        salt = (salt ^ (unsigned char)*q) * 1099511628211ull;
    if (!rc)
        rc = placement_compute(nodes, conf->nnodes, (int)nparts, c->replicas, salt, members, &err);
    for (json_int_t p = 0; !rc && p < nparts; p++) {
        json_t *m = json_array();
        for (int k = 0; m && k < c->replicas; k++)
            json_array_append_new(m, json_string(conf->nodes[members[p * c->replicas + k]].id));
        if (!m || json_array_append_new(pl, m))
            rc = NERR_NOMEM;
    }
    free(nodes);
    free(members);
    if (rc) {
        json_decref(pl);
        if (err.msg[0])
            log_error("CreateTable %s: %s", name, err.msg);
        return rc;
    }
    json_t *e =
        json_pack("{s:s, s:s, s:O, s:o}", "k", "create", "name", name, "def", def, "placement", pl);
    return e ? meta_propose(c, e, done, arg) : NERR_NOMEM;
}

int catalog_propose_delete(struct catalog *c, const char *name, group_done_fn done, void *arg)
{
    if (!c->meta)
        return NERR_BUSY;
    json_t *e = json_pack("{s:s, s:s}", "k", "delete", "name", name);
    return e ? meta_propose(c, e, done, arg) : NERR_NOMEM;
}

int catalog_propose_member_add(struct catalog *c, const char *name, const char *table_id, int part,
                               int add, const char *node, int remove, group_done_fn done, void *arg)
{
    if (!c->meta)
        return NERR_BUSY;
    json_t *e = json_pack("{s:s, s:s, s:s, s:i, s:i, s:s, s:i}", "k", "member_add", "name", name,
                          "id", table_id, "part", part, "add", add, "node", node, "remove", remove);
    return e ? meta_propose(c, e, done, arg) : NERR_NOMEM;
}

int catalog_propose_member_done(struct catalog *c, const char *name, const char *table_id, int part,
                                group_done_fn done, void *arg)
{
    if (!c->meta)
        return NERR_BUSY;
    json_t *e = json_pack("{s:s, s:s, s:s, s:i}", "k", "member_done", "name", name, "id", table_id,
                          "part", part);
    return e ? meta_propose(c, e, done, arg) : NERR_NOMEM;
}

int catalog_choose_replacement(struct catalog *c, const struct table *t, int part, const char *lost,
                               const char *const *exclude, size_t nexclude, const char **out,
                               struct nerr *err)
{
    const struct cluster_conf *conf = c->opt.conf;
    const struct pmembers *pm = partition_members(&t->parts[part]);
    size_t n = conf->nnodes;
    struct placement_node *nodes = calloc(n ? n : 1, sizeof *nodes);
    long *load = calloc(n ? n : 1, sizeof *load);
    unsigned char *usable = calloc(n ? n : 1, 1);
    int members[CATALOG_MAX_SLOTS], nm = 0, lost_ix = -1, pick = -1, rc = 0;
    if (!nodes || !load || !usable) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        nodes[i] =
            (struct placement_node){conf->nodes[i].id, conf->nodes[i].az, conf->nodes[i].rack};
        usable[i] = strcmp(conf->nodes[i].id, lost) != 0;
        for (size_t k = 0; k < nexclude; k++)
            if (!strcmp(conf->nodes[i].id, exclude[k]))
                usable[i] = 0;
    }
    pthread_rwlock_rdlock(&c->lock);
    for (size_t ti = 0; ti < c->ntables; ti++)
        for (int p = 0; p < c->tables[ti]->nparts; p++) {
            const struct pmembers *m = partition_members(&c->tables[ti]->parts[p]);
            for (int k = 0; k < m->nmembers; k++)
                for (size_t i = 0; i < n; i++)
                    if (!strcmp(conf->nodes[i].id, m->members[k]))
                        load[i]++;
        }
    pthread_rwlock_unlock(&c->lock);
    for (int k = 0; k < pm->nmembers; k++)
        for (size_t i = 0; i < n; i++)
            if (!strcmp(conf->nodes[i].id, pm->members[k])) {
                if (!strcmp(pm->members[k], lost))
                    lost_ix = (int)i;
                members[nm++] = (int)i;
            }
    if (lost_ix < 0) {
        rc = nerr_set(err, NERR_INVALID, "%s holds no replica of %s", lost, t->parts[part].name);
        goto out;
    }
    uint64_t salt = t->parts[part].gid * 0x9e3779b97f4a7c15ull;
    rc = placement_replace(nodes, n, members, (size_t)nm, lost_ix, load, usable, salt, &pick, err);
    if (!rc)
        *out = conf->nodes[pick].id;
out:
    free(nodes);
    free(load);
    free(usable);
    return rc;
}

int table_stats(struct table *t, uint64_t *items, uint64_t *bytes)
{
    struct state *st = t->cat->st;
    MDB_txn *txn;
    *items = *bytes = 0;
    if (state_read_begin(st, &txn, NULL))
        return NERR_IO;
    for (int p = 0; p < t->nparts; p++) {
        MDB_stat s;
        if (t->parts[p].g && mdb_stat(txn, t->parts[p].dbi, &s) == 0) {
            *items += s.ms_entries;
            *bytes +=
                (uint64_t)s.ms_psize * (s.ms_branch_pages + s.ms_leaf_pages + s.ms_overflow_pages);
        }
    }
    state_read_end(st, txn);
    return 0;
}

void catalog_set_archiver(struct catalog *c, struct archiver *a)
{
    atomic_store(&c->arch, a);
}

struct archiver *catalog_archiver(struct catalog *c)
{
    return atomic_load(&c->arch);
}

struct state *catalog_state(struct catalog *c)
{
    return c->st;
}

/* Start-up: drop the databases of tables deleted before the last stop. */
static int remove_dropped(struct catalog *c, struct nerr *err)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = state_write_begin(c->st, &txn, err);
    if (rc)
        return rc;
    int r = mdb_cursor_open(txn, state_dbi_dropped(c->st), &cur);
    while (!r && (r = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0) {
        char name[128];
        MDB_dbi dbi;
        snprintf(name, sizeof name, "%.*s", (int)k.mv_size, (char *)k.mv_data);
        /* Its log too, should the node have stopped before it went. */
        if ((rc = group_host_drop(c->h, name, err))) {
            mdb_cursor_close(cur);
            mdb_txn_abort(txn);
            return rc;
        }
        int o = mdb_dbi_open(txn, name, 0, &dbi);
        if (o == 0)
            o = mdb_drop(txn, dbi, 1);
        int dr =
            !o || o == MDB_NOTFOUND ? digest_drop_all(txn, state_dbi_digest(c->st), name, err) : 0;
        if (dr) {
            mdb_cursor_close(cur);
            mdb_txn_abort(txn);
            return dr;
        }
        if (o && o != MDB_NOTFOUND) {
            r = o;
            break;
        }
        r = mdb_cursor_del(cur, 0);
    }
    if (r && r != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return state_mdb_err(err, r, "removing dropped tables");
    }
    mdb_cursor_close(cur);
    return state_write_commit(c->st, txn, err);
}

/* ---- keeping this node's tables in line with the catalog ---- */

static json_t *local_descs(struct catalog *c)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    json_t *arr = json_array();
    if (!arr || state_read_begin(c->st, &txn, NULL)) {
        json_decref(arr);
        return NULL;
    }
    int r = mdb_cursor_open(txn, state_dbi_catalog(c->st), &cur);
    for (MDB_cursor_op o = MDB_FIRST; !r && !(r = mdb_cursor_get(cur, &k, &v, o)); o = MDB_NEXT) {
        json_t *desc = json_loadb(v.mv_data, v.mv_size, 0, NULL);
        if (desc)
            json_array_append_new(arr, desc);
        else
            log_error("catalog entry %.*s is not JSON; ignored", (int)k.mv_size, (char *)k.mv_data);
    }
    if (!r || r == MDB_NOTFOUND)
        mdb_cursor_close(cur);
    state_read_end(c->st, txn);
    return arr;
}

json_t *catalog_descs(struct catalog *c)
{
    if (c->meta)
        return local_descs(c);
    pthread_mutex_lock(&c->sync_mu);
    json_t *d = c->remote_descs ? json_deep_copy(c->remote_descs) : json_array();
    pthread_mutex_unlock(&c->sync_mu);
    return d;
}

/* Makes the live tables match descs (sync_mu held). Returns the first
 * failure to open a table here (its error in err); the others still open. */
/* Publishes m as pp's members (sync thread; the old ones stay until the
 * table is freed: readers may hold them). */
static void publish_members(struct partition *pp, struct pmembers *m)
{
    m->older = pp->pm;
    atomic_store_explicit(&pp->pm, m, memory_order_release);
}

/* A table this node has open whose placement changed (catalog.h,
 * "Membership of one partition"): publishes each changed partition's
 * members, opens a member this node joins, gives its member the new slots,
 * unpublishes one it left. Sync thread. */
static int update_members(struct catalog *c, struct table *t, const json_t *desc, struct nerr *err)
{
    int first_rc = 0;
    for (int p = 0; p < t->nparts; p++) {
        struct partition *pp = &t->parts[p];
        const struct pmembers *old = partition_members(pp);
        struct pmembers *nm = pmembers_from_desc(desc, p);
        if (!nm || pmembers_same(old, nm)) {
            free(nm);
            continue;
        }
        int was = self_in(c, old), now = self_in(c, nm), rc = 0;
        struct nerr e = {0};
        if (now && was && now != was) {
            rc = nerr_set(&e, NERR_CORRUPT, "member %d here became member %d", was, now);
        } else if (now && !was && pp->left) {
            /* Back before the member it left is gone: next sync. */
            rc = nerr_set(&e, NERR_BUSY, "the member this node left is still closing");
        } else if (now && !was) {
            MDB_txn *txn = NULL;
            if (!(rc = state_write_begin(c->st, &txn, &e))) {
                if ((rc = open_dbi_one(c, txn, pp, MDB_CREATE, &e)))
                    mdb_txn_abort(txn);
                else
                    rc = state_write_commit(c->st, txn, &e);
            }
            if (!rc) {
                publish_members(pp, nm);
                nm = NULL;
                rc = open_member(c, pp, partition_members(pp), now, &e);
            }
            if (!rc)
                log_info("partition %s: joined as member %d", pp->name, now);
        } else if (now) {
            struct group_members mem;
            members_of(pp, nm, now, &mem);
            if (!(rc = group_set_members(pp->g, &mem, &e))) {
                publish_members(pp, nm);
                nm = NULL;
            } else if (rc == NERR_INVALID) {
                /* This member has not caught up with the change that made
                 * the cleared slot's member leave: later. */
                rc = NERR_BUSY;
            }
        } else if (was) {
            publish_members(pp, nm);
            nm = NULL;
            pp->left = pp->g;
            pp->left_ms = clock_mono_ms();
            atomic_store_explicit(&pp->g, NULL, memory_order_release);
            log_info("partition %s: this node's member %d left the group; its replica goes in %d s",
                     pp->name, was, CATALOG_LEFT_GRACE_MS / 1000);
        } else {
            publish_members(pp, nm);
            nm = NULL;
        }
        free(nm);
        if (rc && !first_rc) {
            first_rc = rc;
            nerr_set(err, rc, "partition %s: %s", pp->name, e.msg);
        }
    }
    return first_rc;
}

/* Closes the members this node left CATALOG_LEFT_GRACE_MS ago and drops
 * their replicas (sync thread). */
static void reap_left(struct catalog *c)
{
    uint64_t now = clock_mono_ms();
    for (;;) {
        struct table *t = NULL;
        struct partition *pp = NULL;
        pthread_rwlock_rdlock(&c->lock);
        for (size_t i = 0; i < c->ntables && !pp; i++)
            for (int p = 0; p < c->tables[i]->nparts && !pp; p++)
                if (c->tables[i]->parts[p].left &&
                    now - c->tables[i]->parts[p].left_ms >= CATALOG_LEFT_GRACE_MS) {
                    t = c->tables[i];
                    pp = &t->parts[p];
                    atomic_fetch_add(&t->refs, 1);
                }
        pthread_rwlock_unlock(&c->lock);
        if (!pp)
            return;
        group_close(pp->left);
        pp->left = NULL;
        MDB_txn *txn;
        struct nerr e = {0};
        if (!state_write_begin(c->st, &txn, &e)) {
            if (drop_replica_txn(c, txn, pp, &e))
                mdb_txn_abort(txn);
            else
                state_write_commit(c->st, txn, &e);
        }
        if (e.msg[0])
            log_warn("partition %s: dropping the replica this node left: %s", pp->name, e.msg);
        drop_replica_files(c, pp, "left partition");
        log_info("partition %s: the replica this node left is dropped", pp->name);
        table_put(t);
    }
}

/* A replica on disk of a partition this node is no member of (it left
 * while it was down, or before its replica was dropped): dropped at open. */
static void drop_stale(struct catalog *c, struct table *t)
{
    for (int p = 0; p < t->nparts; p++) {
        struct partition *pp = &t->parts[p];
        char dir[PATH_MAX];
        struct stat sb;
        if (self_member(c, pp) || group_dir_of(c, pp->name, dir, sizeof dir) || stat(dir, &sb))
            continue;
        MDB_txn *txn;
        struct nerr e = {0};
        if (!state_write_begin(c->st, &txn, &e)) {
            int r = mdb_dbi_open(txn, pp->name, 0, &pp->dbi);
            if (r == MDB_NOTFOUND)
                r = state_write_commit(c->st, txn, &e);
            else if (r || drop_replica_txn(c, txn, pp, &e))
                mdb_txn_abort(txn), r = r ? r : -1;
            else
                r = state_write_commit(c->st, txn, &e);
            if (r && !e.msg[0])
                state_mdb_err(&e, r, pp->name);
        }
        if (e.msg[0])
            log_warn("partition %s: dropping a replica of a group this node left: %s", pp->name,
                     e.msg);
        drop_replica_files(c, pp, "left partition");
        log_info("partition %s: dropped the replica of a group this node is no member of",
                 pp->name);
    }
}

static int reconcile(struct catalog *c, json_t *descs, struct nerr *ferr)
{
    int first_rc = 0;
    size_t i;
    json_t *d;
    /* New tables. */
    json_array_foreach(descs, i, d)
    {
        const char *name = json_string_value(json_object_get(d, "TableName"));
        const char *id = json_string_value(json_object_get(d, "TableId"));
        if (!name || !id)
            continue;
        struct table *live = catalog_get(c, name);
        int same = live && !strcmp(live->id, id);
        if (live && !same) {
            /* Re-created under the same name: the old one goes first. */
            pthread_rwlock_wrlock(&c->lock);
            struct table *old = remove_table(c, name);
            pthread_rwlock_unlock(&c->lock);
            if (old) {
                atomic_store(&old->deleted, 1);
                table_put(old);
            }
        }
        if (same) {
            struct nerr err = {0};
            int rc = update_members(c, live, d, &err);
            table_put(live);
            if (rc && !first_rc) {
                first_rc = rc;
                if (ferr)
                    nerr_set(ferr, rc, "table %s: %s", name, err.msg);
            }
            if (rc && rc != NERR_BUSY)
                log_error("table %s: %s", name, err.msg);
            continue;
        }
        table_put(live);
        struct nerr err = {0};
        struct table *t = NULL;
        MDB_txn *txn = NULL;
        int rc = table_from_desc(d, &t, &err);
        if (!rc && !(rc = state_write_begin(c->st, &txn, &err))) {
            rc = open_dbis(c, txn, t, MDB_CREATE, &err);
            if (rc)
                mdb_txn_abort(txn);
            else
                rc = state_write_commit(c->st, txn, &err);
        }
        if (!rc)
            rc = open_groups(c, t, &err);
        if (!rc)
            drop_stale(c, t);
        if (!rc) {
            pthread_rwlock_wrlock(&c->lock);
            rc = insert_table(c, t);
            pthread_rwlock_unlock(&c->lock);
        }
        if (rc) {
            if (!first_rc) {
                first_rc = rc;
                if (ferr)
                    nerr_set(ferr, rc, "table %s: %s", name, err.msg);
            }
            /* Said once per table, not at every sync. */
            if (!json_object_get(c->failed, id)) {
                log_error("table %s: cannot open its partitions here: %s", name, err.msg);
                json_object_set_new(c->failed, id, json_true());
            }
            if (t) {
                close_groups(t);
                table_free(t);
            }
            continue;
        }
        log_info("table %s (%s): %d partitions, %d with a replica here", t->name, t->id, t->nparts,
                 ({
                     int n = 0;
                     for (int p = 0; p < t->nparts; p++)
                         n += t->parts[p].g != NULL;
                     n;
                 }));
    }
    /* Deleted tables. */
    for (;;) {
        struct table *gone = NULL;
        pthread_rwlock_wrlock(&c->lock);
        for (size_t k = 0; k < c->ntables && !gone; k++) {
            int found = 0;
            json_array_foreach(descs, i, d)
            {
                const char *id = json_string_value(json_object_get(d, "TableId"));
                if (id && !strcmp(id, c->tables[k]->id))
                    found = 1;
            }
            if (!found)
                gone = remove_table(c, c->tables[k]->name);
        }
        pthread_rwlock_unlock(&c->lock);
        if (!gone)
            break;
        atomic_store(&gone->deleted, 1);
        table_put(gone); /* the catalog's reference */
    }
    return first_rc;
}

static int sync_local_err(struct catalog *c, struct nerr *err)
{
    json_t *descs = local_descs(c);
    if (!descs)
        return nerr_set(err, NERR_IO, "cannot read the catalog");
    pthread_mutex_lock(&c->sync_mu);
    int rc = reconcile(c, descs, err);
    pthread_mutex_unlock(&c->sync_mu);
    json_decref(descs);
    return rc;
}

static void sync_local(struct catalog *c)
{
    sync_local_err(c, NULL);
}

int catalog_descs_decode(const char *body, size_t len, json_t **out, struct nerr *err)
{
    json_error_t je;
    json_t *o = json_loadb(body, len, 0, &je);
    json_t *tables = json_object_get(o, "tables"), *keep = NULL;
    int rc = 0;
    if (!json_is_array(tables)) {
        rc = nerr_set(err, NERR_INVALID, "catalog reply is not {\"tables\": [...]}");
        goto out;
    }
    if (!(keep = json_array())) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    size_t i;
    json_t *d;
    json_array_foreach(tables, i, d)
    {
        struct table *t = NULL;
        struct nerr terr = {0};
        if (!json_is_object(d) || table_from_desc(d, &t, &terr)) {
            const char *id = json_string_value(json_object_get(d, "TableId"));
            log_warn("catalog sync: refused table %zu (id '%.64s'): %s", i, id ? id : "?",
                     terr.msg[0] ? terr.msg : "not an object");
            continue;
        }
        table_free(t);
        json_array_append(keep, d);
    }
    *out = keep;
    keep = NULL;
out:
    json_decref(keep);
    json_decref(o);
    return rc;
}

/* The headers of a NinesAdmin.Catalog call to the node whose API is api:
 * signed with the cluster's credentials when it has them, as every admin
 * call must be then (docs/security.md). */
struct catalog_headers {
    char host[300], date[64], auth[700], target[64], target_line[96];
    const char *lines[6];
};

static void catalog_headers(const struct catalog *c, const char *api, const char *op,
                            const char *body, struct catalog_headers *h)
{
    const struct cluster_conf *conf = c->opt.conf;
    size_t k = 0;
    snprintf(h->target, sizeof h->target, "NinesAdmin.%s", op);
    snprintf(h->target_line, sizeof h->target_line, "X-Amz-Target: %s", h->target);
    h->lines[k++] = "Content-Type: application/x-amz-json-1.0";
    h->lines[k++] = h->target_line;
    if (conf && conf->auth == CLUSTER_AUTH_SIGV4) {
        struct sigv4_signer signer;
        struct sigv4_header hs[3] = {{"Host", api},
                                     {"Content-Type", "application/x-amz-json-1.0"},
                                     {"X-Amz-Target", h->target}};
        struct sigv4_request sr = {"POST", "/", "", hs, 3, body, strlen(body)};
        char date[17], auth[512];
        if (!sigv4_signer_init(&signer, conf->access_key_id, conf->secret_access_key, conf->region,
                               "dynamodb") &&
            !sigv4_signer_sign(&signer, &sr, time(NULL), date, auth, sizeof auth)) {
            snprintf(h->host, sizeof h->host, "Host: %s", api);
            snprintf(h->date, sizeof h->date, "X-Amz-Date: %s", date);
            snprintf(h->auth, sizeof h->auth, "Authorization: %s", auth);
            h->lines[k++] = h->host;
            h->lines[k++] = h->date;
            h->lines[k++] = h->auth;
        }
    }
    h->lines[k] = NULL;
}

/* One admin call to meta member k: 0 with the reply in *rs (the caller
 * frees it), or the transport's error. */
static int meta_member_call(struct catalog *c, struct http_client *http, int k, const char *op,
                            const char *body, int timeout_ms, struct http_response *rs)
{
    struct catalog_headers hd;
    char url[512];
    /* With tls api, the meta member is authenticated by the cluster's CA
     * and this node shows its own certificate. */
    const struct cluster_conf *conf = c->opt.conf;
    const struct cluster_node *self = cluster_conf_node(conf, c->opt.self_id);
    cluster_conf_api_url(conf, c->meta_api[k], url, sizeof url);
    catalog_headers(c, c->meta_api[k], op, body, &hd);
    struct http_request rq = {.method = "POST",
                              .url = url,
                              .headers = hd.lines,
                              .body = body,
                              .body_len = strlen(body),
                              .timeout_ms = timeout_ms,
                              .connect_timeout_ms = 500,
                              .ca_file = conf->tls_api ? conf->tls_ca : NULL,
                              .cert_file = conf->tls_api && self ? self->tls_cert : NULL,
                              .key_file = conf->tls_api && self ? self->tls_key : NULL};
    return http_call(http, &rq, rs, NULL);
}

int catalog_meta_call(struct catalog *c, const char *op, const char *body, char **reply,
                      struct nerr *err)
{
    struct http_client *http = NULL;
    if (http_client_new(&http, NULL))
        return nerr_set(err, NERR_NOMEM, "no HTTP client");
    int rc = NERR_BUSY;
    nerr_set(err, rc, "no member of the metadata group answered");
    for (int k = 0; k < c->n_meta; k++) {
        struct http_response rs = {0};
        if (meta_member_call(c, http, k, op, body, 3000, &rs) || !rs.status) {
            http_response_free(&rs);
            continue;
        }
        if (rs.status == 200) {
            rc = 0;
            if (reply)
                *reply = strndup(rs.body ? rs.body : "", rs.len);
        } else {
            rc = NERR_INVALID;
            nerr_set(err, rc, "%s answered %ld: %.*s", c->meta_nodes[k], rs.status,
                     (int)(rs.len > 300 ? 300 : rs.len), rs.body ? rs.body : "");
            /* Another meta member may have a leader to hand it to. */
            int retry = rs.status >= 500;
            http_response_free(&rs);
            if (retry)
                continue;
            break;
        }
        http_response_free(&rs);
        break;
    }
    http_client_free(http);
    return rc;
}

/* Asks a meta member for the catalog; NULL when none answered. */
static json_t *fetch_descs(struct catalog *c, struct http_client *http)
{
    for (int attempt = 0; attempt < c->n_meta; attempt++) {
        int k = (c->next_meta + attempt) % c->n_meta;
        struct http_response rs = {0};
        int rc = meta_member_call(c, http, k, "Catalog", "{}", 1000, &rs);
        json_t *tables = NULL;
        if (!rc && rs.status == 200 && rs.len &&
            !catalog_descs_decode(rs.body, rs.len, &tables, NULL)) {
            c->next_meta = k;
            http_response_free(&rs);
            return tables;
        }
        http_response_free(&rs);
    }
    c->next_meta = (c->next_meta + 1) % (c->n_meta ? c->n_meta : 1);
    return NULL;
}

static void sync_remote(struct catalog *c, struct http_client *http)
{
    json_t *descs = fetch_descs(c, http);
    if (!descs)
        return;
    pthread_mutex_lock(&c->sync_mu);
    json_decref(c->remote_descs);
    c->remote_descs = json_incref(descs);
    reconcile(c, descs, NULL);
    pthread_mutex_unlock(&c->sync_mu);
    json_decref(descs);
}

void catalog_sync_now(struct catalog *c)
{
    if (c->meta) {
        sync_local(c);
    } else {
        struct http_client *http;
        if (!http_client_new(&http, NULL)) {
            sync_remote(c, http);
            http_client_free(http);
        }
    }
}

/* A meta member's periodic sync: only when the metadata group applied
 * something since the last complete one, when that one failed to open a
 * table (retried every CATALOG_SYNC_MS), and every CATALOG_RESYNC_MS
 * anyway. Reading every table's description costs O(partitions): at
 * 10,000 idle partitions it was 2.2 % of a core per node, every 200 ms
 * (docs/benchmarks.md, "Idle partitions"). The applied index moves only
 * after the catalog's LMDB transaction committed (meta_sm has
 * commit_before_done; a snapshot restore commits first too), and it is
 * read before the descriptions are: a change after the read is seen at the
 * next round. */
static void sync_meta_periodic(struct catalog *c)
{
    uint64_t lsn = group_applied_lsn(c->meta), now = clock_mono_ns();
    if (lsn == c->synced_lsn && c->synced_ns &&
        now - c->synced_ns < (uint64_t)CATALOG_RESYNC_MS * 1000000ull)
        return;
    if (!sync_local_err(c, NULL)) {
        c->synced_lsn = lsn;
        c->synced_ns = now;
    } else {
        c->synced_ns = 0; /* a table that did not open: again next round */
    }
}

/* Periodic sync: every CATALOG_SYNC_MS; a meta member reads its catalog
 * only when it changed (sync_meta_periodic), any other node asks a meta
 * member. */
static void *sync_main(void *arg)
{
    pthread_setname_np(pthread_self(), "nines-catalog");
    struct catalog *c = arg;
    struct http_client *http = NULL;
    if (!c->meta && http_client_new(&http, NULL))
        http = NULL;
    for (;;) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_nsec += CATALOG_SYNC_MS * 1000000L;
        while (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&c->stop_mu);
        while (!c->stopping && pthread_cond_timedwait(&c->stop_cv, &c->stop_mu, &dl) == 0)
            ;
        int stop = c->stopping;
        pthread_mutex_unlock(&c->stop_mu);
        if (stop)
            break;
        if (c->meta)
            sync_meta_periodic(c);
        else if (http)
            sync_remote(c, http);
        pthread_mutex_lock(&c->sync_mu);
        reap_left(c);
        pthread_mutex_unlock(&c->sync_mu);
    }
    http_client_free(http);
    return NULL;
}

struct group *catalog_meta(struct catalog *c)
{
    return c->meta;
}

int catalog_meta_nodes(struct catalog *c, const char **nodes)
{
    for (int k = 0; k < c->n_meta; k++)
        nodes[k] = c->meta_nodes[k];
    return c->n_meta;
}

void catalog_each_group(struct catalog *c,
                        void (*fn)(void *arg, struct table *t, int part, struct group *g),
                        void *arg)
{
    if (c->meta)
        fn(arg, NULL, -1, c->meta);
    pthread_rwlock_rdlock(&c->lock);
    for (size_t i = 0; i < c->ntables; i++)
        for (int p = 0; p < c->tables[i]->nparts; p++)
            if (c->tables[i]->parts[p].g)
                fn(arg, c->tables[i], p, c->tables[i]->parts[p].g);
    pthread_rwlock_unlock(&c->lock);
}

/* The host's validator of forwarded proposals (group_host_set_validator):
 * what another member hands this leader must be an entry apply can decode,
 * for the partition it is proposed to, or it never enters the log. */
static int validate_forwarded(void *arg, uint64_t gid, const void *data, size_t len,
                              struct nerr *err)
{
    struct catalog *c = arg;
    int rc = 0;
    if (gid == CATALOG_META_GID) {
        json_t *e = json_loadb(data, len, 0, NULL);
        const char *kind = json_string_value(json_object_get(e, "k"));
        const char *name = json_string_value(json_object_get(e, "name"));
        if (!kind || !name ||
            (strcmp(kind, "create") && strcmp(kind, "delete") && strcmp(kind, "member_add") &&
             strcmp(kind, "member_done")) ||
            (!strcmp(kind, "create") && (!json_is_object(json_object_get(e, "def")) ||
                                         !json_is_array(json_object_get(e, "placement")))) ||
            (!strncmp(kind, "member_", 7) && (!json_is_string(json_object_get(e, "id")) ||
                                              !json_is_integer(json_object_get(e, "part")))))
            rc = nerr_set(err, NERR_CORRUPT, "not a catalog entry");
        json_decref(e);
        return rc;
    }
    char id[32];
    snprintf(id, sizeof id, "t%llu", (unsigned long long)(gid >> 12));
    int part = (int)(gid & 0xfff) - 1;
    struct table *t = NULL;
    pthread_rwlock_rdlock(&c->lock);
    for (size_t k = 0; k < c->ntables && !t; k++)
        if (!strcmp(c->tables[k]->id, id)) {
            t = c->tables[k];
            atomic_fetch_add(&t->refs, 1);
        }
    pthread_rwlock_unlock(&c->lock);
    if (!t)
        return 0; /* no such group here: the driver drops it as unknown */
    struct op op;
    if (!(rc = op_decode(data, len, t, &op, err))) {
        /* A scrub marker has no key: it belongs to the group it came for. */
        if (part < 0 || part >= t->nparts ||
            (op.kind != OP_SCRUB && op.kind != OP_SEAL &&
             table_partition_for(t, json_object_get(op.key, t->hash_name)) != &t->parts[part]))
            rc = nerr_set(err, NERR_CORRUPT, "the key belongs to another partition");
        op_clear(&op);
    }
    table_put(t);
    return rc;
}

int catalog_open(struct group_host *h, const struct catalog_options *opt, struct catalog **out,
                 struct nerr *err)
{
    const struct cluster_conf *conf = opt->conf;
    struct catalog *c = calloc(1, sizeof *c);
    char dir[PATH_MAX];
    int rc;
    if (!c)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    c->h = h;
    c->st = group_host_state(h);
    c->opt = *opt;
    c->data_dir = strdup(opt->data_dir);
    c->self_id = strdup(opt->self_id);
    c->failed = json_object();
    pthread_rwlock_init(&c->lock, NULL);
    pthread_mutex_init(&c->reap_mu, NULL);
    pthread_cond_init(&c->reap_cv, NULL);
    pthread_mutex_init(&c->sync_mu, NULL);
    pthread_mutex_init(&c->stop_mu, NULL);
    pthread_cond_init(&c->stop_cv, NULL);
    if (!c->data_dir || !c->self_id) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto fail;
    }
    /* The metadata group's members: one partition placed like any other. */
    c->replicas = conf->nnodes == 1 ? 1 : CATALOG_MAX_REPLICAS;
    struct placement_node *nodes = calloc(conf->nnodes, sizeof *nodes);
    int members[CATALOG_MAX_REPLICAS];
    if (!nodes) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < conf->nnodes; i++)
        nodes[i] =
            (struct placement_node){conf->nodes[i].id, conf->nodes[i].az, conf->nodes[i].rack};
    struct nerr perr = {0};
    rc = placement_compute(nodes, conf->nnodes, 1, c->replicas, 0, members, &perr);
    free(nodes);
    if (rc) {
        rc = nerr_set(err, rc,
                      "%s: a cluster of %zu nodes needs its nodes in at least %d availability "
                      "zones (each partition has a replica in %d distinct AZs): %s",
                      conf->path, conf->nnodes, c->replicas, c->replicas, perr.msg);
        goto fail;
    }
    struct group_members mem = {.gid = CATALOG_META_GID, .n = (uint32_t)c->replicas};
    c->n_meta = c->replicas;
    for (int k = 0; k < c->replicas; k++) {
        c->meta_nodes[k] = conf->nodes[members[k]].id;
        c->meta_api[k] = conf->nodes[members[k]].api;
        mem.nodes[k] = c->meta_nodes[k];
        if (!strcmp(c->meta_nodes[k], c->self_id))
            mem.self = (uint32_t)k + 1;
    }
    snprintf(dir, sizeof dir, "%s/groups", c->data_dir);
    if ((rc = fs_mkdir_p(dir, err)))
        goto fail;
    if ((rc = remove_dropped(c, err)))
        goto fail;
    if (mem.self) {
        snprintf(dir, sizeof dir, "%s/groups/%s", c->data_dir, META_GROUP);
        if ((rc = group_open(h, META_GROUP, dir, &meta_sm, c, &mem, &c->meta, err)))
            goto fail;
        /* A table that cannot be opened at start-up (a corrupt WAL) stops
         * the node: nothing is skipped silently. */
        if ((rc = sync_local_err(c, err)))
            goto fail;
    }
    if (pthread_create(&c->sync_thread, NULL, sync_main, c)) {
        rc = nerr_set(err, NERR_IO, "cannot start the catalog sync thread");
        goto fail;
    }
    c->sync_started = 1;
    group_host_set_validator(h, validate_forwarded, c);
    *out = c;
    return 0;
fail:
    catalog_close(c);
    return rc;
}

void catalog_close(struct catalog *c)
{
    if (!c)
        return;
    if (c->sync_started)
        group_host_set_validator(c->h, NULL, NULL);
    if (c->sync_started) {
        pthread_mutex_lock(&c->stop_mu);
        c->stopping = 1;
        pthread_cond_broadcast(&c->stop_cv);
        pthread_mutex_unlock(&c->stop_mu);
        pthread_join(c->sync_thread, NULL);
    }
    /* The metadata group first: no table appears or disappears after this. */
    group_close(c->meta);
    pthread_rwlock_wrlock(&c->lock);
    struct table **ts = c->tables;
    size_t n = c->ntables;
    c->tables = NULL;
    c->ntables = 0;
    pthread_rwlock_unlock(&c->lock);
    for (size_t i = 0; i < n; i++) {
        /* Every member, published or left (its replica stays on disk: a
         * left one is dropped at the next start); table_free then frees
         * the partitions' member lists. */
        close_groups(ts[i]);
        for (int p = 0; p < ts[i]->nparts; p++)
            digest_pending_discard(&ts[i]->parts[p].dpend); /* none after the close's commit */
        table_free(ts[i]);
    }
    free(ts);
    pthread_mutex_lock(&c->reap_mu);
    while (c->reaping > 0)
        pthread_cond_wait(&c->reap_cv, &c->reap_mu);
    pthread_mutex_unlock(&c->reap_mu);
    json_decref(c->remote_descs);
    json_decref(c->failed);
    pthread_rwlock_destroy(&c->lock);
    pthread_mutex_destroy(&c->reap_mu);
    pthread_cond_destroy(&c->reap_cv);
    pthread_mutex_destroy(&c->sync_mu);
    pthread_mutex_destroy(&c->stop_mu);
    pthread_cond_destroy(&c->stop_cv);
    free(c->self_id);
    free(c->data_dir);
    free(c);
}
