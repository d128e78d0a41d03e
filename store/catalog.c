#include "store/catalog.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/fsutil.h"
#include "lib/log.h"
#include "store/av.h"
#include "store/items.h"

#define META_GROUP "meta"

struct catalog {
    struct group_host *h;
    struct state *st;
    struct catalog_options opt;
    char *data_dir;
    struct group *meta;
    int loading; /* start-up: the meta group replays; tables are loaded after */
    int dbis_used; /* named databases opened since start (dropped ones stay open) */
    pthread_rwlock_t lock;
    struct table **tables; /* live tables, sorted by name */
    size_t ntables;
    pthread_mutex_t reap_mu;
    pthread_cond_t reap_cv;
    int reaping; /* deleted tables whose cleanup thread has not finished */
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
    free(t->parts);
    free(t);
}

/* Builds a table (no groups yet) from its persisted description. */
static int table_from_desc(json_t *desc, struct table **out, struct nerr *err)
{
    struct table *t = calloc(1, sizeof *t);
    if (!t)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    const char *name = json_string_value(json_object_get(desc, "TableName"));
    const char *id = json_string_value(json_object_get(desc, "TableId"));
    json_t *ks = json_object_get(desc, "KeySchema"), *ad = json_object_get(desc, "AttributeDefinitions");
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
        if (!strcmp(kt, "HASH")) {
            t->hash_name = strdup(an);
            t->hash_type = type;
        } else {
            t->range_name = strdup(an);
            t->range_type = type;
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
    for (int p = 0; p < t->nparts; p++) {
        t->parts[p].t = t;
        t->parts[p].index = p;
        snprintf(t->parts[p].name, sizeof t->parts[p].name, "p.%s.%d", t->id, p);
    }
    t->desc = json_incref(desc);
    atomic_store(&t->refs, 1); /* the catalog's own reference */
    *out = t;
    return 0;
corrupt:
    table_free(t);
    return nerr_set(err, NERR_CORRUPT, "catalog entry is not a table description");
}

static int open_dbis(MDB_txn *txn, struct table *t, unsigned flags, struct nerr *err)
{
    for (int p = 0; p < t->nparts; p++) {
        int rc = mdb_dbi_open(txn, t->parts[p].name, flags, &t->parts[p].dbi);
        if (rc)
            return state_mdb_err(err, rc, t->parts[p].name);
    }
    return 0;
}

static int wal_dir_of(struct catalog *c, const char *group, char *buf, size_t cap)
{
    return snprintf(buf, cap, "%s/wal/%s", c->data_dir, group) >= (int)cap ? NERR_INVALID : 0;
}

static int open_groups(struct catalog *c, struct table *t, struct nerr *err)
{
    struct wal_options wo = {.segment_bytes = c->opt.wal_segment_size,
                             .unsafe_ack_before_sync = c->opt.unsafe_ack_before_sync};
    for (int p = 0; p < t->nparts; p++) {
        char dir[PATH_MAX];
        if (wal_dir_of(c, t->parts[p].name, dir, sizeof dir))
            return nerr_set(err, NERR_INVALID, "data path too long");
        int rc = group_open(c->h, t->parts[p].name, dir, &wo, &items_sm, &t->parts[p],
                            &t->parts[p].g, err);
        if (rc)
            return rc;
    }
    return 0;
}

static void close_groups(struct table *t)
{
    for (int p = 0; p < t->nparts; p++) {
        group_close(t->parts[p].g);
        t->parts[p].g = NULL;
    }
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
    close_groups(t);
    for (int p = 0; p < t->nparts; p++) {
        char dir[PATH_MAX];
        struct nerr err = {0};
        if (!wal_dir_of(c, t->parts[p].name, dir, sizeof dir) && fs_rm_rf(dir, &err))
            log_warn("deleted table %s: %s", t->name, err.msg);
    }
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
    uint64_t h = av_key_hash(hash_av) >> 32;
    return &t->parts[(h * (uint64_t)t->nparts) >> 32];
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
static int meta_apply(void *sm, MDB_txn *txn, uint64_t lsn, const void *data, size_t len,
                      void *op, void **result, struct nerr *err)
{
    struct catalog *c = sm;
    json_t *entry = op, *owned = NULL;
    struct catalog_result *res = calloc(1, sizeof *res);
    int rc = 0;
    if (!res)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    if (!entry) {
        json_error_t je;
        entry = owned = json_loadb(data, len, 0, &je);
        if (!entry) {
            free(res);
            return nerr_set(err, NERR_CORRUPT, "meta entry %llu: %s", (unsigned long long)lsn,
                            je.text);
        }
    }
    const char *kind = json_string_value(json_object_get(entry, "k"));
    const char *name = json_string_value(json_object_get(entry, "name"));
    if (!kind || !name) {
        rc = nerr_set(err, NERR_CORRUPT, "meta entry %llu has no kind or name",
                      (unsigned long long)lsn);
        goto out;
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
        json_int_t want = json_integer_value(json_object_get(json_object_get(entry, "def"), "Partitions"));
        if (c->dbis_used + want + 8 > c->opt.max_dbs) {
            /* Refused here, not by LMDB inside the transaction (that would be fatal). */
            res->status = NERR_LIMIT;
            goto out;
        }
        json_t *desc = json_deep_copy(json_object_get(entry, "def"));
        char id[32];
        snprintf(id, sizeof id, "t%llu", (unsigned long long)lsn);
        json_object_set_new(desc, "TableName", json_string(name));
        json_object_set_new(desc, "TableId", json_string(id));
        struct table *t = NULL;
        if ((rc = table_from_desc(desc, &t, err))) {
            json_decref(desc);
            goto out;
        }
        char *bytes = json_dumps(desc, JSON_COMPACT | JSON_SORT_KEYS);
        MDB_val nv = {bytes ? strlen(bytes) : 0, bytes};
        int r = bytes ? mdb_put(txn, state_dbi_catalog(c->st), &k, &nv, 0) : ENOMEM;
        free(bytes);
        if (!r)
            rc = open_dbis(txn, t, MDB_CREATE, err);
        else
            rc = state_mdb_err(err, r, "catalog write");
        if (!rc)
            c->dbis_used += t->nparts;
        table_free(t);
        if (rc) {
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
        struct table *t = NULL;
        if (!desc || (rc = table_from_desc(desc, &t, err))) {
            json_decref(desc);
            rc = rc ? rc : nerr_set(err, NERR_CORRUPT, "catalog entry %s: %s", name, je.text);
            goto out;
        }
        int r = mdb_del(txn, state_dbi_catalog(c->st), &k, NULL);
        if (!r)
            rc = open_dbis(txn, t, 0, err);
        else
            rc = state_mdb_err(err, r, "catalog delete");
        for (int p = 0; !rc && p < t->nparts; p++) {
            MDB_val dk = {strlen(t->parts[p].name), t->parts[p].name}, dv = {0, ""};
            /* Emptied now, removed at the next start (catalog.h, Lifetime). */
            if ((r = mdb_drop(txn, t->parts[p].dbi, 0)) ||
                (r = mdb_put(txn, state_dbi_dropped(c->st), &dk, &dv, 0)))
                rc = state_mdb_err(err, r, "drop partition");
            else
                rc = state_applied_del(c->st, txn, t->parts[p].name, err);
        }
        table_free(t);
        if (rc) {
            json_decref(desc);
            goto out;
        }
        /* Writes to the table still queued behind this entry must not land. */
        if (!c->loading) {
            struct table *live = catalog_get(c, name);
            if (live) {
                atomic_store(&live->deleted, 1);
                table_put(live);
            }
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

/* After commit: make the table visible (create) or invisible (delete). */
static void meta_committed(void *sm, uint64_t lsn, void *op, void *result)
{
    struct catalog *c = sm;
    struct catalog_result *res = result;
    (void)lsn;
    if (c->loading || !res || res->status || !res->desc) {
        if (c->loading)
            catalog_result_free(res);
        return;
    }
    json_t *entry = op;
    const char *kind = json_string_value(json_object_get(entry, "k"));
    const char *name = json_string_value(json_object_get(res->desc, "TableName"));
    if (!strcmp(kind, "create")) {
        struct nerr err = {0};
        struct table *t = NULL;
        MDB_txn *txn = NULL;
        int rc = table_from_desc(res->desc, &t, &err);
        /* The handles were created by the committed transaction; opening them
         * again returns the same handles. */
        if (!rc && !(rc = state_read_begin(c->st, &txn, &err))) {
            rc = open_dbis(txn, t, 0, &err);
            state_read_end(c->st, txn);
        }
        if (!rc)
            rc = open_groups(c, t, &err);
        if (!rc) {
            pthread_rwlock_wrlock(&c->lock);
            rc = insert_table(c, t);
            pthread_rwlock_unlock(&c->lock);
        }
        if (rc) {
            log_error("table %s created but cannot be opened: %s", name, err.msg);
            res->status = NERR_INTERNAL;
            if (t) {
                close_groups(t);
                table_free(t);
            }
        }
    } else {
        pthread_rwlock_wrlock(&c->lock);
        struct table *t = remove_table(c, name);
        pthread_rwlock_unlock(&c->lock);
        if (t) {
            atomic_store(&t->deleted, 1);
            table_put(t); /* the catalog's reference */
        }
    }
}

/* The catalog's effects (new named databases) must be committed before
 * other transactions can open them: commit before done. */
static const struct group_sm meta_sm = {
    .apply = meta_apply, .committed = meta_committed, .commit_before_done = 1};

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
    json_t *e = json_pack("{s:s, s:s, s:O}", "k", "create", "name", name, "def", def);
    return e ? meta_propose(c, e, done, arg) : NERR_NOMEM;
}

int catalog_propose_delete(struct catalog *c, const char *name, group_done_fn done, void *arg)
{
    json_t *e = json_pack("{s:s, s:s}", "k", "delete", "name", name);
    return e ? meta_propose(c, e, done, arg) : NERR_NOMEM;
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
        if (mdb_stat(txn, t->parts[p].dbi, &s) == 0) {
            *items += s.ms_entries;
            *bytes += (uint64_t)s.ms_psize *
                      (s.ms_branch_pages + s.ms_leaf_pages + s.ms_overflow_pages);
        }
    }
    state_read_end(st, txn);
    return 0;
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
        int o = mdb_dbi_open(txn, name, 0, &dbi);
        if (o == 0)
            o = mdb_drop(txn, dbi, 1);
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

/* Start-up: remove WAL directories of groups no table owns (a crash between
 * DeleteTable and its cleanup). */
static void remove_orphan_wals(struct catalog *c)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/wal", c->data_dir);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "p.", 2))
            continue;
        int owned = 0;
        for (size_t i = 0; i < c->ntables && !owned; i++)
            for (int p = 0; p < c->tables[i]->nparts && !owned; p++)
                owned = !strcmp(c->tables[i]->parts[p].name, de->d_name);
        if (!owned) {
            char path[PATH_MAX + 256];
            struct nerr err = {0};
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            if (fs_rm_rf(path, &err))
                log_warn("%s", err.msg);
            else
                log_info("removed the WAL of deleted group %s", de->d_name);
        }
    }
    closedir(d);
}

static int load_tables(struct catalog *c, struct nerr *err)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = state_write_begin(c->st, &txn, err);
    if (rc)
        return rc;
    int r = mdb_cursor_open(txn, state_dbi_catalog(c->st), &cur);
    for (MDB_cursor_op o = MDB_FIRST; !r && !(r = mdb_cursor_get(cur, &k, &v, o)); o = MDB_NEXT) {
        json_error_t je;
        json_t *desc = json_loadb(v.mv_data, v.mv_size, 0, &je);
        struct table *t = NULL;
        if (!desc) {
            rc = nerr_set(err, NERR_CORRUPT, "catalog entry %.*s: %s", (int)k.mv_size,
                          (char *)k.mv_data, je.text);
            break;
        }
        rc = table_from_desc(desc, &t, err);
        json_decref(desc);
        if (!rc)
            rc = open_dbis(txn, t, 0, err);
        if (!rc)
            rc = insert_table(c, t) ? nerr_set(err, NERR_NOMEM, "out of memory") : 0;
        if (!rc)
            c->dbis_used += t->nparts;
        if (rc) {
            table_free(t);
            break;
        }
    }
    mdb_cursor_close(cur);
    if (!rc && r && r != MDB_NOTFOUND)
        rc = state_mdb_err(err, r, "catalog scan");
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    if ((rc = state_write_commit(c->st, txn, err)))
        return rc;
    for (size_t i = 0; i < c->ntables; i++)
        if ((rc = open_groups(c, c->tables[i], err)))
            return rc;
    return 0;
}

int catalog_open(struct group_host *h, const struct catalog_options *opt, struct catalog **out,
                 struct nerr *err)
{
    struct catalog *c = calloc(1, sizeof *c);
    char dir[PATH_MAX];
    int rc;
    if (!c)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    c->h = h;
    c->st = group_host_state(h);
    c->opt = *opt;
    c->data_dir = strdup(opt->data_dir);
    c->loading = 1;
    pthread_rwlock_init(&c->lock, NULL);
    pthread_mutex_init(&c->reap_mu, NULL);
    pthread_cond_init(&c->reap_cv, NULL);
    snprintf(dir, sizeof dir, "%s/wal", c->data_dir);
    if ((rc = fs_mkdir_p(dir, err)))
        goto fail;
    struct wal_options wo = {.segment_bytes = opt->wal_segment_size,
                             .unsafe_ack_before_sync = opt->unsafe_ack_before_sync};
    snprintf(dir, sizeof dir, "%s/wal/%s", c->data_dir, META_GROUP);
    if ((rc = group_open(h, META_GROUP, dir, &wo, &meta_sm, c, &c->meta, err)))
        goto fail;
    if ((rc = remove_dropped(c, err)) || (rc = load_tables(c, err)))
        goto fail;
    remove_orphan_wals(c);
    c->loading = 0;
    *out = c;
    return 0;
fail:
    c->loading = 0;
    catalog_close(c);
    return rc;
}

void catalog_close(struct catalog *c)
{
    if (!c)
        return;
    /* The metadata group first: no table appears or disappears after this. */
    group_close(c->meta);
    pthread_rwlock_wrlock(&c->lock);
    struct table **ts = c->tables;
    size_t n = c->ntables;
    c->tables = NULL;
    c->ntables = 0;
    pthread_rwlock_unlock(&c->lock);
    for (size_t i = 0; i < n; i++) {
        for (int p = 0; p < ts[i]->nparts; p++)
            if (ts[i]->parts[p].g)
                group_close(ts[i]->parts[p].g);
        ts[i]->nparts = 0;
        table_free(ts[i]);
    }
    free(ts);
    pthread_mutex_lock(&c->reap_mu);
    while (c->reaping > 0)
        pthread_cond_wait(&c->reap_cv, &c->reap_mu);
    pthread_mutex_unlock(&c->reap_mu);
    pthread_rwlock_destroy(&c->lock);
    pthread_mutex_destroy(&c->reap_mu);
    pthread_cond_destroy(&c->reap_cv);
    free(c->data_dir);
    free(c);
}
