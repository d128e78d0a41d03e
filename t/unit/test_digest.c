/* The set digest (store/digest.h): its algebra (order does not matter,
 * equal sets give equal digests, one changed byte changes it, add then
 * remove gives the empty set), and in LMDB: digests kept write by write in
 * two environments that apply the same final set in different orders agree
 * with each other and with a rebuild from the items, buckets add up to the
 * whole, a partition without a record keeps none, drop forgets it; and the
 * item state machine (items_sm) keeps the digest of a partition through
 * puts, overwrites, deletes and a snapshot restore. NINES_SEED replays. */
#include "lib/rng.h"
#include "store/catalog.h"
#include "store/digest.h"
#include "store/items.h"
#include "store/op.h"
#include "store/state.h"
#include "t/tap.h"

#include <ftw.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct rng g_rng;

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void elem(const char *k, const char *v, uint16_t h[DIGEST_LANES])
{
    struct nerr e = {0};
    if (digest_elem(k, strlen(k), v, strlen(v), h, &e)) {
        diag("digest_elem: %s", e.msg);
        exit(1);
    }
}

static void add(struct digest *d, const char *k, const char *v, int sign)
{
    uint16_t h[DIGEST_LANES];
    elem(k, v, h);
    digest_add(d, h, strlen(k) + strlen(v), sign);
}

static void algebra(void)
{
    struct digest a, b, z;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&z, 0, sizeof z);
    add(&a, "k1", "{\"v\":1}", 1);
    add(&a, "k2", "{\"v\":2}", 1);
    add(&a, "k3", "{\"v\":3}", 1);
    add(&b, "k3", "{\"v\":3}", 1);
    add(&b, "k1", "{\"v\":1}", 1);
    add(&b, "k2", "{\"v\":2}", 1);
    ok(digest_equal(&a, &b) && a.items == 3 && a.bytes == b.bytes,
       "the same set added in another order: the same digest");
    add(&b, "k2", "{\"v\":2}", -1);
    add(&b, "k2", "{\"v\":3}", 1);
    ok(!digest_equal(&a, &b), "one changed byte of one item changes the digest");
    add(&b, "k2", "{\"v\":3}", -1);
    add(&b, "k2", "{\"v\":2}", 1);
    ok(digest_equal(&a, &b), "changing it back restores the digest");
    struct digest c = a;
    add(&c, "k4", "{\"v\":2}", 1);
    add(&c, "k4", "{\"v\":2}", -1);
    ok(digest_equal(&a, &c) && c.items == 3, "add then remove: back where it was");
    /* The key is bound to the item: the same value under another key. */
    struct digest x, y;
    memset(&x, 0, sizeof x);
    memset(&y, 0, sizeof y);
    add(&x, "ka", "v", 1);
    add(&y, "kb", "v", 1);
    ok(!digest_equal(&x, &y), "the same bytes under another key: another digest");
    /* Key and value boundaries: ("ab","c") is not ("a","bc"). */
    memset(&x, 0, sizeof x);
    memset(&y, 0, sizeof y);
    add(&x, "ab", "c", 1);
    add(&y, "a", "bc", 1);
    ok(!digest_equal(&x, &y), "moving bytes between key and value changes the digest");
    add(&a, "k1", "{\"v\":1}", -1);
    add(&a, "k2", "{\"v\":2}", -1);
    add(&a, "k3", "{\"v\":3}", -1);
    ok(digest_equal(&a, &z) && a.items == 0 && a.bytes == 0, "removing everything: the empty set");
    uint16_t h1[DIGEST_LANES], h2[DIGEST_LANES];
    elem("k", "v", h1);
    elem("k", "v", h2);
    ok(!memcmp(h1, h2, sizeof h1), "h is deterministic");
    int nonzero = 0;
    for (int i = 0; i < DIGEST_LANES; i++)
        nonzero += h1[i] != 0;
    ok(nonzero > DIGEST_LANES * 9 / 10, "h fills its lanes (%d of %d non-zero)", nonzero,
       DIGEST_LANES);
    /* Buckets spread keys. */
    int used[DIGEST_BUCKETS] = {0}, nused = 0;
    for (int i = 0; i < 4096; i++) {
        char k[32];
        snprintf(k, sizeof k, "key-%d", i);
        unsigned bk = digest_bucket(k, strlen(k));
        nused += !used[bk];
        used[bk] = 1;
    }
    ok(nused == DIGEST_BUCKETS, "4,096 keys fall in all %d buckets", nused);
}

struct env {
    MDB_env *env;
    MDB_dbi ddbi, dbi;
};

static void env_open(struct env *e, const char *dir)
{
    if (mdb_env_create(&e->env) || mdb_env_set_maxdbs(e->env, 8) ||
        mdb_env_set_mapsize(e->env, 256 << 20) || mdb_env_open(e->env, dir, MDB_NOSYNC, 0600)) {
        diag("lmdb env %s", dir);
        exit(1);
    }
    MDB_txn *t;
    if (mdb_txn_begin(e->env, NULL, 0, &t) || mdb_dbi_open(t, "_digest", MDB_CREATE, &e->ddbi) ||
        mdb_dbi_open(t, "p.t1.0", MDB_CREATE, &e->dbi) || mdb_txn_commit(t)) {
        diag("lmdb dbis");
        exit(1);
    }
}

/* One write as the item state machine does it: the item bytes, then the
 * digest, in one transaction. v NULL = delete. */
static void put(struct env *e, MDB_txn *t, const char *k, const char *v)
{
    MDB_val kv = {strlen(k), (void *)k}, old;
    char *ob = NULL;
    size_t olen = 0;
    if (!mdb_get(t, e->dbi, &kv, &old)) {
        ob = malloc(old.mv_size + 1);
        memcpy(ob, old.mv_data, old.mv_size);
        olen = old.mv_size;
    }
    if (v) {
        MDB_val vv = {strlen(v), (void *)v};
        if (mdb_put(t, e->dbi, &kv, &vv, 0)) {
            diag("put");
            exit(1);
        }
    } else if (ob && mdb_del(t, e->dbi, &kv, NULL)) {
        {
            diag("del");
            exit(1);
        }
    }
    struct nerr er = {0};
    if ((ob || v) &&
        digest_update(t, e->ddbi, "p.t1.0", k, strlen(k), ob, olen, v, v ? strlen(v) : 0, &er)) {
        diag("digest_update: %s", er.msg);
        exit(1);
    }
    free(ob);
}

static void get(struct env *e, struct digest *d, int *found)
{
    MDB_txn *t;
    struct nerr er = {0};
    mdb_txn_begin(e->env, NULL, MDB_RDONLY, &t);
    int rc = digest_get(t, e->ddbi, "p.t1.0", d, &er);
    *found = rc == 0;
    mdb_txn_abort(t);
}

static void in_lmdb(const char *dir)
{
    char d1[512], d2[512];
    snprintf(d1, sizeof d1, "%s/a", dir);
    snprintf(d2, sizeof d2, "%s/b", dir);
    mkdir(d1, 0700);
    mkdir(d2, 0700);
    struct env a, b;
    env_open(&a, d1);
    env_open(&b, d2);
    MDB_txn *t;
    struct nerr er = {0};
    int found;
    struct digest da, db, dr;
    /* No record: writes keep none. */
    mdb_txn_begin(a.env, NULL, 0, &t);
    put(&a, t, "early", "x");
    mdb_txn_commit(t);
    get(&a, &da, &found);
    ok(!found, "a partition without a record keeps no digest");
    for (struct env *e = &a; e; e = e == &a ? &b : NULL) {
        mdb_txn_begin(e->env, NULL, 0, &t);
        if (digest_rebuild(t, e->ddbi, "p.t1.0", e->dbi, &er)) {
            diag("rebuild: %s", er.msg);
            exit(1);
        }
        mdb_txn_commit(t);
    }
    get(&a, &da, &found);
    ok(found && da.items == 1, "digest_rebuild makes one from the items (1 item)");
    /* The same final set by two random histories: 2,000 keys, writes,
     * overwrites and deletes in random order and transaction sizes; b
     * then gets a's final set key by key. */
    enum { N = 2000 };
    static char vals[N][48];
    static int present[N];
    memset(present, 0, sizeof present);
    mdb_txn_begin(a.env, NULL, 0, &t);
    put(&a, t, "early", NULL);
    for (int i = 0; i < 20000; i++) {
        int k = (int)(rng_next(&g_rng) % N);
        char key[32];
        snprintf(key, sizeof key, "key-%d", k);
        if (rng_next(&g_rng) % 5 == 0) {
            put(&a, t, key, NULL);
            present[k] = 0;
        } else {
            snprintf(vals[k], sizeof vals[k], "{\"v\":{\"N\":\"%llu\"}}",
                     (unsigned long long)(rng_next(&g_rng) % 1000));
            put(&a, t, key, vals[k]);
            present[k] = 1;
        }
        if (rng_next(&g_rng) % 100 == 0) {
            mdb_txn_commit(t);
            mdb_txn_begin(a.env, NULL, 0, &t);
        }
    }
    mdb_txn_commit(t);
    mdb_txn_begin(b.env, NULL, 0, &t);
    put(&b, t, "early", NULL);
    int count = 0;
    for (int k = N - 1; k >= 0; k--) {
        char key[32];
        snprintf(key, sizeof key, "key-%d", k);
        if (present[k]) {
            put(&b, t, key, vals[k]);
            count++;
        }
    }
    mdb_txn_commit(t);
    get(&a, &da, &found);
    get(&b, &db, &found);
    ok(digest_equal(&da, &db) && da.items == (uint64_t)count && db.items == (uint64_t)count &&
           da.bytes == db.bytes,
       "20,000 random writes and the same %d items written once: equal digests", count);
    mdb_txn_begin(a.env, NULL, 0, &t);
    if (digest_rebuild(t, a.ddbi, "p.t1.0", a.dbi, &er)) {
        diag("rebuild: %s", er.msg);
        exit(1);
    }
    mdb_txn_commit(t);
    get(&a, &dr, &found);
    ok(digest_equal(&da, &dr) && dr.items == da.items, "a rebuild from the items agrees");
    /* The buckets add up to the whole (first DIGEST_BUCKET_LANES lanes). */
    uint16_t sum[DIGEST_BUCKET_LANES] = {0}, l[DIGEST_BUCKET_LANES];
    mdb_txn_begin(a.env, NULL, MDB_RDONLY, &t);
    for (unsigned bk = 0; bk < DIGEST_BUCKETS; bk++)
        if (!digest_get_bucket(t, a.ddbi, "p.t1.0", bk, l, &er))
            for (int i = 0; i < DIGEST_BUCKET_LANES; i++)
                sum[i] = (uint16_t)(sum[i] + l[i]);
    mdb_txn_abort(t);
    ok(!memcmp(sum, da.lane, sizeof sum), "the buckets add up to the whole digest");
    /* One item different in b: the digests and exactly its bucket differ. */
    mdb_txn_begin(b.env, NULL, 0, &t);
    int victim = -1;
    for (int k = 0; k < N && victim < 0; k++)
        if (present[k])
            victim = k;
    char vkey[32];
    snprintf(vkey, sizeof vkey, "key-%d", victim);
    put(&b, t, vkey, "{\"v\":{\"N\":\"-1\"}}");
    mdb_txn_commit(t);
    get(&b, &db, &found);
    ok(!digest_equal(&da, &db) && da.items == db.items, "one item changed: the digests differ");
    int ndiff = 0, at = -1;
    MDB_txn *ta, *tb;
    mdb_txn_begin(a.env, NULL, MDB_RDONLY, &ta);
    mdb_txn_begin(b.env, NULL, MDB_RDONLY, &tb);
    for (unsigned bk = 0; bk < DIGEST_BUCKETS; bk++) {
        uint16_t la[DIGEST_BUCKET_LANES] = {0}, lb[DIGEST_BUCKET_LANES] = {0};
        digest_get_bucket(ta, a.ddbi, "p.t1.0", bk, la, &er);
        digest_get_bucket(tb, b.ddbi, "p.t1.0", bk, lb, &er);
        if (memcmp(la, lb, sizeof la)) {
            ndiff++;
            at = (int)bk;
        }
    }
    mdb_txn_abort(ta);
    mdb_txn_abort(tb);
    ok(ndiff == 1 && at == (int)digest_bucket(vkey, strlen(vkey)),
       "exactly the changed key's bucket differs (%d bucket(s))", ndiff);
    /* A damaged record is refused, not read as zeros. */
    mdb_txn_begin(b.env, NULL, 0, &t);
    MDB_val rk = {6, "p.t1.0"}, rv = {5, "junk!"};
    mdb_put(t, b.ddbi, &rk, &rv, 0);
    mdb_txn_commit(t);
    mdb_txn_begin(b.env, NULL, MDB_RDONLY, &t);
    int rc = digest_get(t, b.ddbi, "p.t1.0", &db, &er);
    mdb_txn_abort(t);
    ok(rc == NERR_CORRUPT, "a damaged record: NERR_CORRUPT (%s)", er.msg);
    mdb_txn_begin(b.env, NULL, 0, &t);
    ok(!digest_drop(t, b.ddbi, "p.t1.0", &er), "drop");
    MDB_stat ms;
    mdb_stat(t, b.ddbi, &ms);
    mdb_txn_commit(t);
    ok(ms.ms_entries == 0, "drop leaves nothing of the partition's digest (%zu entries)",
       (size_t)ms.ms_entries);
    mdb_env_close(a.env);
    mdb_env_close(b.env);
}

/* One entry through the item state machine, as the applier does it. */
static int sm_apply(struct partition *p, MDB_env *env, uint64_t lsn, const char *entry)
{
    MDB_txn *t;
    void *res = NULL;
    struct nerr er = {0};
    mdb_txn_begin(env, NULL, 0, &t);
    int rc = items_sm.apply(p, t, lsn, entry, strlen(entry), NULL, &res, &er);
    if (rc) {
        diag("apply %llu: %s", (unsigned long long)lsn, er.msg);
        mdb_txn_abort(t);
        return rc;
    }
    items_sm.free_result(res);
    return mdb_txn_commit(t);
}

static void through_items_sm(const char *dir)
{
    char d[512];
    snprintf(d, sizeof d, "%s/sm", dir);
    mkdir(d, 0700);
    struct env e;
    env_open(&e, d);
    struct table t = {.name = "t", .id = "t1", .hash_name = "k", .hash_type = 'S', .nparts = 1};
    struct partition p = {.t = &t, .dbi = e.dbi, .ddbi = e.ddbi};
    snprintf(p.name, sizeof p.name, "p.t1.0");
    MDB_txn *tx;
    struct nerr er = {0};
    mdb_txn_begin(e.env, NULL, 0, &tx);
    digest_rebuild(tx, e.ddbi, p.name, e.dbi, &er);
    mdb_txn_commit(tx);
    int bad = 0;
    uint64_t lsn = 0;
    for (int i = 0; i < 50; i++) {
        char entry[128];
        snprintf(entry, sizeof entry,
                 "{\"k\":\"put\",\"i\":{\"k\":{\"S\":\"a%d\"},\"v\":{\"N\":\"%d\"}}}", i % 20, i);
        bad |= sm_apply(&p, e.env, ++lsn, entry);
    }
    bad |= sm_apply(&p, e.env, ++lsn, "{\"k\":\"delete\",\"key\":{\"k\":{\"S\":\"a3\"}}}");
    bad |= sm_apply(&p, e.env, ++lsn,
                    "{\"k\":\"update\",\"key\":{\"k\":{\"S\":\"a4\"}},"
                    "\"u\":\"SET w = :w\",\"v\":{\":w\":{\"S\":\"x\"}}}");
    ok(!bad, "puts, overwrites, a delete and an update applied through items_sm");
    struct digest inc, reb;
    int found;
    get(&e, &inc, &found);
    mdb_txn_begin(e.env, NULL, 0, &tx);
    digest_rebuild(tx, e.ddbi, p.name, e.dbi, &er);
    mdb_txn_commit(tx);
    get(&e, &reb, &found);
    ok(digest_equal(&inc, &reb) && inc.items == 19 && reb.items == 19,
       "the digest items_sm kept equals a rebuild from the stored items (19 items)");
    /* Markers: recorded at their index, the item set unchanged. */
    uint64_t mark_lsn = ++lsn;
    bad = sm_apply(&p, e.env, mark_lsn, "{\"k\":\"scrub\",\"id\":\"run-1\",\"t\":1700000000000}");
    struct digest after;
    get(&e, &after, &found);
    struct digest_mark *m = calloc(1, sizeof *m);
    mdb_txn_begin(e.env, NULL, MDB_RDONLY, &tx);
    int rc = digest_mark_get(tx, e.ddbi, p.name, "run-1", m, &er);
    mdb_txn_abort(tx);
    ok(!bad && !rc && m->lsn == mark_lsn && m->has_digest && digest_equal(&m->d, &inc) &&
           m->d.items == 19 && m->proposed_ms == 1700000000000LL && m->applied_ms > 0,
       "a scrub marker records the digest at its index (lsn %llu, %llu items)",
       (unsigned long long)m->lsn, (unsigned long long)m->d.items);
    ok(digest_equal(&after, &inc) && after.items == inc.items, "and changes no item");
    uint16_t sum[DIGEST_BUCKET_LANES] = {0};
    for (int b = 0; b < DIGEST_BUCKETS; b++)
        for (int i = 0; i < DIGEST_BUCKET_LANES; i++)
            sum[i] = (uint16_t)(sum[i] + m->bucket[b][i]);
    ok(!memcmp(sum, m->d.lane, sizeof sum), "the marker's buckets add up to its digest");
    bad = sm_apply(&p, e.env, ++lsn, "{\"k\":\"put\",\"i\":{\"k\":{\"S\":\"z\"}}}");
    mdb_txn_begin(e.env, NULL, MDB_RDONLY, &tx);
    rc = digest_mark_get(tx, e.ddbi, p.name, "run-1", m, &er);
    mdb_txn_abort(tx);
    ok(!bad && !rc && m->d.items == 19, "later writes leave the marker as it was");
    /* Bad markers are poisoned entries, not node failures. */
    rc = sm_apply(&p, e.env, ++lsn, "{\"k\":\"scrub\",\"id\":\"../x\",\"t\":1}");
    ok(rc == GROUP_APPLY_POISONED, "a marker with a bad id is a poisoned entry");
    rc = sm_apply(&p, e.env, ++lsn, "{\"k\":\"scrub\",\"id\":\"ok\"}");
    ok(rc == GROUP_APPLY_POISONED, "a marker without a time is a poisoned entry");
    /* The newest DIGEST_MARKS_KEPT stay. */
    for (int i = 2; i <= DIGEST_MARKS_KEPT + 5; i++) {
        char entry[128];
        snprintf(entry, sizeof entry, "{\"k\":\"scrub\",\"id\":\"run-%d\",\"t\":%d}", i, i);
        sm_apply(&p, e.env, ++lsn, entry);
    }
    int kept = 0;
    char newest[32];
    snprintf(newest, sizeof newest, "run-%d", DIGEST_MARKS_KEPT + 5);
    mdb_txn_begin(e.env, NULL, MDB_RDONLY, &tx);
    for (int i = 1; i <= DIGEST_MARKS_KEPT + 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "run-%d", i);
        kept += !digest_mark_get(tx, e.ddbi, p.name, id, m, &er);
    }
    int newest_there = !digest_mark_get(tx, e.ddbi, p.name, newest, m, &er);
    int oldest_gone = digest_mark_get(tx, e.ddbi, p.name, "run-1", m, &er) == NERR_NOTFOUND;
    mdb_txn_abort(tx);
    ok(kept == DIGEST_MARKS_KEPT && newest_there && oldest_gone,
       "the newest %d markers are kept (%d), the oldest went", DIGEST_MARKS_KEPT, kept);
    mdb_txn_begin(e.env, NULL, 0, &tx);
    rc = digest_drop_all(tx, e.ddbi, p.name, &er);
    MDB_stat ms;
    mdb_stat(tx, e.ddbi, &ms);
    mdb_txn_commit(tx);
    ok(!rc && ms.ms_entries == 0, "digest_drop_all forgets digest, buckets and markers (%zu left)",
       (size_t)ms.ms_entries);
    free(m);
    mdb_env_close(e.env);
}

/* Cost: items per second through digest_elem at 1 KB items. */
static void cost(void)
{
    char v[1024];
    memset(v, 'x', sizeof v);
    uint16_t h[DIGEST_LANES];
    struct nerr er = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int n = 20000;
    for (int i = 0; i < n; i++) {
        v[0] = (char)i;
        digest_elem("key", 3, v, sizeof v, h, &er);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    diag("digest_elem of a 1 KB item: %.2f us (%.0f items/s on one core)", s / n * 1e6, n / s);
    ok(s < 30, "20,000 element hashes finish (%.2f s)", s);
}

int main(void)
{
    const char *se = getenv("NINES_SEED");
    uint64_t seed = se ? strtoull(se, NULL, 10) : (uint64_t)time(NULL);
    rng_seed(&g_rng, seed);
    note("seed %llu (NINES_SEED replays it)", (unsigned long long)seed);
    char dir[] = "/tmp/nines-digest-XXXXXX";
    if (!mkdtemp(dir)) {
        diag("mkdtemp failed");
        return 1;
    }
    algebra();
    in_lmdb(dir);
    through_items_sm(dir);
    cost();
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return done_testing();
}
