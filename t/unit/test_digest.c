/* The set digest (store/digest.h): its algebra (order does not matter,
 * equal sets give equal digests, one changed byte changes it, add then
 * remove gives the empty set), and in LMDB: digests kept write by write in
 * two environments that apply the same final set in different orders agree
 * with each other and with a rebuild from the items, buckets add up to the
 * whole, a partition without a record keeps none, drop forgets it; and the
 * item state machine (items_sm) keeps the digest of a partition through
 * puts, overwrites, deletes and a snapshot restore, also with many entries
 * in one transaction (the changes pending until before_commit, a marker
 * among them). The drill-down
 * helpers: the element hash is the seed of h (bytes read now: one changed
 * byte changes it), sub-buckets split a bucket by the next 8 bits of the
 * CRC, digest_bucket_scan lists exactly a bucket's (or sub-bucket's) keys
 * in key order, paged by limit and by keys looked at, and the sub-bucket
 * digests name the one sub-bucket where two replicas differ. A repair
 * entry (OP_REPAIR) round-trips, is refused when its item is not of its
 * key, and changes nothing on a replica it does not name. NINES_SEED
 * replays. */
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

/* Every bucket of a partition as stored (a group never written = zero);
 * an unreadable group ends the test. */
static void all_buckets(struct env *e, uint16_t b[DIGEST_BUCKETS][DIGEST_BUCKET_LANES])
{
    MDB_txn *t;
    struct nerr er = {0};
    mdb_txn_begin(e->env, NULL, MDB_RDONLY, &t);
    int rc = digest_get_buckets(t, e->ddbi, "p.t1.0", b, &er);
    mdb_txn_abort(t);
    if (rc) {
        diag("digest_get_buckets: %s", er.msg);
        exit(1);
    }
}

/* Two new environments, dir/n1 and dir/n2. */
static void env_pair(const char *dir, const char *n1, const char *n2, struct env *a, struct env *b)
{
    char d1[512], d2[512];
    snprintf(d1, sizeof d1, "%s/%s", dir, n1);
    snprintf(d2, sizeof d2, "%s/%s", dir, n2);
    mkdir(d1, 0700);
    mkdir(d2, 0700);
    env_open(a, d1);
    env_open(b, d2);
}

static void in_lmdb(const char *dir)
{
    struct env a, b;
    env_pair(dir, "a", "b", &a, &b);
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
    static uint16_t ba[DIGEST_BUCKETS][DIGEST_BUCKET_LANES], bb[DIGEST_BUCKETS][DIGEST_BUCKET_LANES];
    uint16_t sum[DIGEST_BUCKET_LANES] = {0};
    all_buckets(&a, ba);
    for (unsigned bk = 0; bk < DIGEST_BUCKETS; bk++)
        for (int i = 0; i < DIGEST_BUCKET_LANES; i++)
            sum[i] = (uint16_t)(sum[i] + ba[bk][i]);
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
    all_buckets(&b, bb);
    for (unsigned bk = 0; bk < DIGEST_BUCKETS; bk++)
        if (memcmp(ba[bk], bb[bk], sizeof ba[bk])) {
            ndiff++;
            at = (int)bk;
        }
    ok(ndiff == 1 && at == (int)digest_bucket(vkey, strlen(vkey)),
       "exactly the changed key's bucket differs (%d bucket(s))", ndiff);
    /* A damaged record is refused, not read as zeros. */
    mdb_txn_begin(b.env, NULL, 0, &t);
    MDB_val rk = {8, "p.t1.0\2\0"}, rv = {5, "junk!"};
    mdb_put(t, b.ddbi, &rk, &rv, 0);
    mdb_txn_commit(t);
    mdb_txn_begin(b.env, NULL, MDB_RDONLY, &t);
    int rc = digest_get(t, b.ddbi, "p.t1.0", &db, &er);
    mdb_txn_abort(t);
    ok(rc == NERR_CORRUPT, "a damaged record: NERR_CORRUPT (%s)", er.msg);
    /* Format 1 (one 2,080-byte record, buckets of 32 lanes) is not read:
     * no digest, so the catalog rebuilds it; the rebuild removes its keys. */
    {
        static unsigned char v1[2080];
        memcpy(v1, "N9DG\1\0\0\0", 8);
        unsigned char bk1[64] = {0};
        MDB_val k1 = {6, "p.t9.0"}, d1 = {sizeof v1, v1}, kb1 = {8, "p.t9.0\0\7"},
                db1 = {sizeof bk1, bk1}, probe;
        mdb_txn_begin(b.env, NULL, 0, &t);
        mdb_put(t, b.ddbi, &k1, &d1, 0);
        mdb_put(t, b.ddbi, &kb1, &db1, 0);
        int nf = digest_get(t, b.ddbi, "p.t9.0", &db, &er) == NERR_NOTFOUND;
        int rb = digest_rebuild(t, b.ddbi, "p.t9.0", b.dbi, &er);
        int gone = mdb_get(t, b.ddbi, &k1, &probe) == MDB_NOTFOUND &&
                   mdb_get(t, b.ddbi, &kb1, &probe) == MDB_NOTFOUND;
        int now = digest_get(t, b.ddbi, "p.t9.0", &db, &er) == 0;
        mdb_txn_abort(t);
        ok(nf && !rb && gone && now,
           "a format 1 digest reads as none; the rebuild replaces it and removes its keys");
    }
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
    if ((rc = items_sm.before_commit(p, t, &er))) {
        diag("before_commit %llu: %s", (unsigned long long)lsn, er.msg);
        mdb_txn_abort(t);
        return rc;
    }
    return mdb_txn_commit(t);
}

/* The applier applies many entries in one transaction and the digest
 * changes wait in memory until before_commit (digest.h, "changes pending
 * in one write transaction"). 400 puts, overwrites and deletes over 300
 * keys (every one of the 16 bucket groups changed), the
 * same key written several times, a scrub marker in the middle: the digest
 * and every bucket equal a rebuild from the items, and the marker equals
 * the digest of the entries before it (applied one transaction each in a
 * second environment). */
static void one_transaction(const char *dir)
{
    struct env e, r;
    env_pair(dir, "batch", "batch-ref", &e, &r);
    struct table t = {.name = "t", .id = "t1", .hash_name = "k", .hash_type = 'S', .nparts = 1};
    struct partition p = {.t = &t, .dbi = e.dbi, .ddbi = e.ddbi};
    struct partition pr = {.t = &t, .dbi = r.dbi, .ddbi = r.ddbi};
    snprintf(p.name, sizeof p.name, "p.t1.0");
    snprintf(pr.name, sizeof pr.name, "p.t1.0");
    MDB_txn *tx;
    struct nerr er = {0};
    struct env *envs[2] = {&e, &r};
    for (int i = 0; i < 2; i++) {
        mdb_txn_begin(envs[i]->env, NULL, 0, &tx);
        digest_rebuild(tx, envs[i]->ddbi, p.name, envs[i]->dbi, &er);
        mdb_txn_commit(tx);
    }
    int bad = 0;
    uint64_t lsn = 0;
    mdb_txn_begin(e.env, NULL, 0, &tx);
    for (int i = 0; i < 400 && !bad; i++) {
        char entry[160];
        unsigned k = (unsigned)rng_below(&g_rng, 300);
        if (i == 200)
            snprintf(entry, sizeof entry, "{\"k\":\"scrub\",\"id\":\"mid\",\"t\":1}");
        else if (rng_below(&g_rng, 5) == 0)
            snprintf(entry, sizeof entry, "{\"k\":\"delete\",\"key\":{\"k\":{\"S\":\"k%u\"}}}", k);
        else
            snprintf(entry, sizeof entry,
                     "{\"k\":\"put\",\"i\":{\"k\":{\"S\":\"k%u\"},\"v\":{\"N\":\"%u\"}}}", k,
                     (unsigned)rng_below(&g_rng, 3));
        void *res = NULL;
        ++lsn;
        if (items_sm.apply(&p, tx, lsn, entry, strlen(entry), NULL, &res, &er)) {
            diag("apply %d: %s", i, er.msg);
            bad = 1;
        }
        items_sm.free_result(res);
        if (i < 200) /* the reference: one transaction per entry */
            bad |= sm_apply(&pr, r.env, lsn, entry);
    }
    ok(!bad && p.dpend, "400 entries applied in one transaction, digest changes pending");
    bad |= items_sm.before_commit(&p, tx, &er) != 0;
    bad |= mdb_txn_commit(tx) != 0;
    ok(!bad && !p.dpend, "before_commit wrote them (%s)", bad ? er.msg : "ok");
    struct digest inc, reb, ref;
    int found;
    static uint16_t bi[DIGEST_BUCKETS][DIGEST_BUCKET_LANES], br[DIGEST_BUCKETS][DIGEST_BUCKET_LANES];
    get(&e, &inc, &found);
    all_buckets(&e, bi);
    mdb_txn_begin(e.env, NULL, 0, &tx);
    digest_rebuild(tx, e.ddbi, p.name, e.dbi, &er);
    mdb_txn_commit(tx);
    get(&e, &reb, &found);
    all_buckets(&e, br);
    ok(digest_equal(&inc, &reb) && inc.items == reb.items && inc.bytes == reb.bytes,
       "the digest kept in one transaction equals a rebuild (%llu items)",
       (unsigned long long)reb.items);
    ok(!memcmp(bi, br, sizeof bi), "and so does every one of the %d buckets", DIGEST_BUCKETS);
    struct digest_mark *m = calloc(1, sizeof *m);
    mdb_txn_begin(e.env, NULL, MDB_RDONLY, &tx);
    int rc = digest_mark_get(tx, e.ddbi, p.name, "mid", m, &er);
    mdb_txn_abort(tx);
    get(&r, &ref, &found);
    ok(!rc && digest_equal(&m->d, &ref) && m->d.items == ref.items,
       "a marker in the middle of the transaction records the digest of the entries before it "
       "(%llu items)",
       (unsigned long long)ref.items);
    /* A version 1 marker (32 lanes per bucket, written before 2026-12-06)
     * still reads: its first DIGEST_BUCKET_LANES lanes per bucket. */
    {
        size_t head = 4 + 4 + 8 + 8 + 8 + 1 + 1 + 64, n = head + DIGEST_RECORD_BYTES + 256 * 64;
        unsigned char *v1 = calloc(1, n), key[16];
        memcpy(v1, "N9SM\1\0\0\0", 8);
        v1[8] = 77;                                   /* lsn 77 */
        v1[32] = 1;                                   /* has_digest */
        v1[33] = 3;                                   /* idlen */
        memcpy(v1 + 34, "old", 3);
        memcpy(v1 + head, "N9DG\1\0\0\0", 8);       /* the whole digest, 0 items */
        unsigned char *bb = v1 + head + DIGEST_RECORD_BYTES;
        for (int b = 0; b < 256; b++)
            for (int l = 0; l < 32; l++)
                bb[2 * (b * 32 + l)] = (unsigned char)(b + l); /* lane l of bucket b = b + l */
        memcpy(key, "p.t1.0\1\0\0\0\0\0\0\0\x4d", 15);
        MDB_val k = {15, key}, v = {n, v1};
        mdb_txn_begin(e.env, NULL, 0, &tx);
        mdb_put(tx, e.ddbi, &k, &v, 0);
        memset(m, 0, sizeof *m);
        rc = digest_mark_get(tx, e.ddbi, p.name, "old", m, &er);
        mdb_txn_abort(tx);
        int lanes_ok = 1;
        for (int b = 0; b < 256; b++)
            for (int l = 0; l < DIGEST_BUCKET_LANES; l++)
                lanes_ok &= m->bucket[b][l] == (uint16_t)((b + l) & 0xff);
        ok(!rc && m->lsn == 77 && m->has_digest && lanes_ok,
           "a version 1 marker reads, its buckets cut to %d lanes (%s)", DIGEST_BUCKET_LANES,
           rc ? er.msg : "ok");
        free(v1);
    }
    free(m);
    mdb_env_close(e.env);
    mdb_env_close(r.env);
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

struct listing {
    int n;
    char keys[4096][16];
    unsigned char hash[4096][DIGEST_HASH_BYTES];
};

static int list_fn(void *arg, const void *key, size_t klen, const void *item, size_t ilen,
                   const unsigned char hash[DIGEST_HASH_BYTES], struct nerr *err)
{
    (void)item, (void)ilen, (void)err;
    struct listing *l = arg;
    if (l->n == 4096 || klen >= sizeof l->keys[0])
        return NERR_INVALID;
    memcpy(l->keys[l->n], key, klen);
    l->keys[l->n][klen] = 0;
    memcpy(l->hash[l->n], hash, DIGEST_HASH_BYTES);
    l->n++;
    return 0;
}

/* Lists bucket b (sub s) of e in pages of `limit`, looking at most `max`
 * keys per call; returns the number of calls. */
static int list_all(struct env *e, unsigned b, int s, size_t limit, size_t max, struct listing *l)
{
    MDB_txn *t;
    struct nerr er = {0};
    struct digest_scan_end end;
    unsigned char after[512];
    size_t alen = 0;
    int calls = 0;
    l->n = 0;
    do {
        struct digest_scan sc = {.bucket = b,
                                 .sub = s,
                                 .after = alen ? after : NULL,
                                 .after_len = alen,
                                 .limit = limit,
                                 .max_examined = max};
        mdb_txn_begin(e->env, NULL, MDB_RDONLY, &t);
        int rc = digest_bucket_scan(t, e->dbi, &sc, list_fn, l, &end, &er);
        mdb_txn_abort(t);
        if (rc) {
            diag("scan: %s", er.msg);
            return -1;
        }
        memcpy(after, end.last, end.last_len);
        alen = end.last_len;
        calls++;
    } while (end.more && calls < 100000);
    return calls;
}

static void drill_helpers(const char *dir)
{
    /* The element hash is the seed of h: one byte of the item changes it. */
    unsigned char h1[DIGEST_HASH_BYTES], h2[DIGEST_HASH_BYTES], h3[DIGEST_HASH_BYTES];
    struct nerr er = {0};
    digest_item_hash("k", 1, "{\"v\":1}", 7, h1, &er);
    digest_item_hash("k", 1, "{\"v\":1}", 7, h2, &er);
    digest_item_hash("k", 1, "{\"v\":2}", 7, h3, &er);
    ok(!memcmp(h1, h2, sizeof h1) && memcmp(h1, h3, sizeof h1),
       "the element hash is deterministic and one changed byte changes it");
    char hx[65];
    digest_hash_hex(h1, hx);
    ok(strlen(hx) == 64 && strspn(hx, "0123456789abcdef") == 64, "hex: 64 lower-case digits");
    /* Sub-buckets: the next 8 bits of the bucket's CRC. */
    int used[256] = {0}, nused = 0;
    unsigned b0 = 0;
    for (int i = 0; i < 2000000 && nused < 256; i++) {
        char k[32];
        snprintf(k, sizeof k, "key-%d", i);
        if (digest_bucket(k, strlen(k)) != b0)
            continue;
        unsigned s = digest_sub_bucket(k, strlen(k));
        nused += !used[s];
        used[s] = 1;
    }
    ok(nused == 256, "the keys of one bucket fall in all 256 sub-buckets (%d)", nused);

    char d1[512], d2[512];
    snprintf(d1, sizeof d1, "%s/scan-a", dir);
    snprintf(d2, sizeof d2, "%s/scan-b", dir);
    mkdir(d1, 0700);
    mkdir(d2, 0700);
    struct env a, b;
    env_open(&a, d1);
    env_open(&b, d2);
    /* 20,000 items on both; on b one of bucket B's items has one byte
     * changed (bit rot: no digest update). */
    MDB_txn *t;
    int n = 20000, inb = 0;
    unsigned B = digest_bucket("item-77", 7);
    for (struct env *e = &a; e; e = e == &a ? &b : NULL) {
        mdb_txn_begin(e->env, NULL, 0, &t);
        for (int i = 0; i < n; i++) {
            char k[16], v[64];
            snprintf(k, sizeof k, "item-%d", i);
            snprintf(v, sizeof v, "{\"v\":\"%d\"}", i * 7);
            MDB_val kv = {strlen(k), k}, vv = {strlen(v), v};
            mdb_put(t, e->dbi, &kv, &vv, 0);
            inb += e == &a && digest_bucket(k, strlen(k)) == B;
        }
        if (e == &b) {
            MDB_val kv = {7, "item-77"}, vv = {11, "{\"v\":\"540\"}"}; /* was 539 */
            mdb_put(t, e->dbi, &kv, &vv, 0);
        }
        mdb_txn_commit(t);
    }
    static struct listing la, lb, lp;
    int calls = list_all(&a, B, -1, 100000, 0, &la);
    int exact = la.n == inb;
    for (int i = 0; i < la.n; i++)
        exact &= digest_bucket(la.keys[i], strlen(la.keys[i])) == B &&
                 (i == 0 || strcmp(la.keys[i - 1], la.keys[i]) < 0);
    ok(calls == 1 && exact, "a bucket scan lists exactly the bucket's %d keys, in key order", inb);
    calls = list_all(&a, B, -1, 7, 0, &lp);
    int same = lp.n == la.n && !memcmp(lp.keys, la.keys, sizeof la.keys[0] * (size_t)la.n) &&
               !memcmp(lp.hash, la.hash, sizeof la.hash[0] * (size_t)la.n);
    ok(same && calls == (la.n + 6) / 7 + (la.n % 7 == 0),
       "paged by 7 (%d calls): the same keys and hashes", calls);
    calls = list_all(&a, B, -1, 100000, 1000, &lp);
    same = lp.n == la.n && !memcmp(lp.keys, la.keys, sizeof la.keys[0] * (size_t)la.n);
    ok(same && calls >= n / 1000, "bounded to 1,000 keys looked at per call (%d calls): the same",
       calls);
    unsigned S = digest_sub_bucket("item-77", 7);
    list_all(&a, B, (int)S, 100000, 0, &lp);
    int in_sub = 0, has77 = 0;
    for (int i = 0; i < lp.n; i++) {
        in_sub += digest_sub_bucket(lp.keys[i], strlen(lp.keys[i])) == S;
        has77 |= !strcmp(lp.keys[i], "item-77");
    }
    ok(lp.n == in_sub && has77 && lp.n < la.n,
       "a sub-bucket scan lists only that sub-bucket (%d of the bucket's %d keys)", lp.n, la.n);
    list_all(&b, B, -1, 100000, 0, &lb);
    int differ = 0, which = -1;
    for (int i = 0; i < la.n && i < lb.n; i++)
        if (memcmp(la.hash[i], lb.hash[i], DIGEST_HASH_BYTES))
            differ++, which = i;
    ok(la.n == lb.n && differ == 1 && !strcmp(la.keys[which], "item-77"),
       "the hashes read now differ at exactly the rotten key (%s)",
       which >= 0 ? la.keys[which] : "-");
    /* Sub-bucket digests. */
    unsigned char(*sa)[DIGEST_HASH_BYTES] = malloc(256 * DIGEST_HASH_BYTES),
             (*sb)[DIGEST_HASH_BYTES] = malloc(256 * DIGEST_HASH_BYTES);
    uint32_t ca[256], cb[256];
    size_t ex = 0;
    mdb_txn_begin(a.env, NULL, MDB_RDONLY, &t);
    int rc = digest_sub_digests(t, a.dbi, B, sa, ca, &ex, &er);
    mdb_txn_abort(t);
    mdb_txn_begin(b.env, NULL, MDB_RDONLY, &t);
    rc |= digest_sub_digests(t, b.dbi, B, sb, cb, NULL, &er);
    mdb_txn_abort(t);
    int ndiff = 0, total = 0;
    for (int s = 0; s < 256; s++) {
        ndiff += memcmp(sa[s], sb[s], DIGEST_HASH_BYTES) != 0;
        total += (int)ca[s];
    }
    ok(!rc && ndiff == 1 && memcmp(sa[S], sb[S], DIGEST_HASH_BYTES) && total == inb &&
           ex == (size_t)n && !memcmp(ca, cb, sizeof ca),
       "sub-bucket digests differ in one sub-bucket, the rotten key's (%u); counts add up to %d", S,
       total);
    struct digest_scan bad = {.bucket = 256, .sub = -1, .limit = 1};
    struct digest_scan_end end;
    mdb_txn_begin(a.env, NULL, MDB_RDONLY, &t);
    rc = digest_bucket_scan(t, a.dbi, &bad, list_fn, &lp, &end, &er);
    mdb_txn_abort(t);
    ok(rc == NERR_INVALID, "bucket 256: NERR_INVALID");
    free(sa);
    free(sb);
    mdb_env_close(a.env);
    mdb_env_close(b.env);
}

static void repair_entries(const char *dir)
{
    struct table t = {.name = "t", .id = "t1", .hash_name = "k", .hash_type = 'S', .nparts = 1};
    struct op op;
    struct nerr er = {0};
    const char *good = "{\"k\":\"repair\",\"key\":{\"k\":{\"S\":\"a\"}},\"node\":\"n3\","
                       "\"x\":\"absent\",\"s\":\"{\\\"k\\\":{\\\"S\\\":\\\"a\\\"},"
                       "\\\"v\\\":{\\\"N\\\":\\\"1\\\"}}\"}";
    int rc = op_decode(good, strlen(good), &t, &op, &er);
    char *enc = NULL;
    size_t len = 0;
    struct op again;
    int rt = !rc && !op_encode(&op, &enc, &len, &er) && !op_decode(enc, len, &t, &again, &er);
    ok(rt && op.kind == OP_REPAIR && !strcmp(again.repair_node, "n3") &&
           !strcmp(again.repair_expect, "absent") &&
           !strcmp(again.repair_stored, op.repair_stored) && again.klen == op.klen,
       "a repair entry round-trips (%s)", er.msg);
    if (rt)
        op_clear(&again);
    free(enc);
    if (!rc)
        op_clear(&op);
    const char *other = "{\"k\":\"repair\",\"key\":{\"k\":{\"S\":\"a\"}},\"node\":\"n3\","
                        "\"x\":\"absent\",\"s\":\"{\\\"k\\\":{\\\"S\\\":\\\"b\\\"}}\"}";
    ok(op_decode(other, strlen(other), &t, &op, &er) != 0,
       "a repair whose item is another key's is refused (%s)", er.msg);
    const char *badx = "{\"k\":\"repair\",\"key\":{\"k\":{\"S\":\"a\"}},\"node\":\"n3\","
                       "\"x\":\"ABC\"}";
    ok(op_decode(badx, strlen(badx), &t, &op, &er) == NERR_CORRUPT,
       "a repair with a bad expectation is refused");
    /* Through items_sm on a replica the entry does not name (no catalog:
     * no self): nothing changes, digest included. */
    char d[512];
    snprintf(d, sizeof d, "%s/repair", dir);
    mkdir(d, 0700);
    struct env e;
    env_open(&e, d);
    struct partition p = {.t = &t, .dbi = e.dbi, .ddbi = e.ddbi};
    snprintf(p.name, sizeof p.name, "p.t1.0");
    MDB_txn *tx;
    mdb_txn_begin(e.env, NULL, 0, &tx);
    digest_rebuild(tx, e.ddbi, p.name, e.dbi, &er);
    mdb_txn_commit(tx);
    sm_apply(&p, e.env, 1, "{\"k\":\"put\",\"i\":{\"k\":{\"S\":\"b\"}}}");
    struct digest before, after;
    int found;
    get(&e, &before, &found);
    const char *del = "{\"k\":\"repair\",\"key\":{\"k\":{\"S\":\"b\"}},\"node\":\"n3\","
                      "\"x\":\"absent\"}";
    rc = sm_apply(&p, e.env, 2, del);
    get(&e, &after, &found);
    mdb_txn_begin(e.env, NULL, MDB_RDONLY, &tx);
    MDB_stat ms;
    mdb_stat(tx, e.dbi, &ms);
    mdb_txn_abort(tx);
    ok(!rc && ms.ms_entries == 1 && digest_equal(&before, &after) && after.items == 1,
       "a repair naming another replica changes nothing here");
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
    one_transaction(dir);
    drill_helpers(dir);
    repair_entries(dir);
    cost();
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return done_testing();
}
