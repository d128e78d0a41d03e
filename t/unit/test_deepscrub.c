/* The deep scrub's scan (store/deepscrub.h): a replica whose bytes at rest
 * agree with its maintained digest reads back a match; one byte changed at
 * rest behind the digest's back (as bit rot would) is a mismatch naming
 * exactly that key's bucket; the scan reads one snapshot, so a write
 * committed while it runs does not make it disagree; the rate limit holds;
 * a cancel stops it; a partition without a digest is NERR_NOTFOUND. And the
 * jobs: one at a time in order, a bound on live jobs, cancel of a queued and
 * of a running job, free with jobs running, every table reference given
 * back. */
#include "store/catalog.h"
#include "store/deepscrub.h"
#include "store/state.h"
#include "store/digest.h"
#include "t/tap.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "lib/clock.h"

#define NAME "p.t1.0"
#define N 300

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static MDB_env *env;
static MDB_dbi ddbi, dbi;

static void die(const char *what)
{
    diag("%s", what);
    exit(1);
}

/* A write as the item state machine does it: item and digest together. */
static void put(MDB_txn *t, const char *k, const char *v)
{
    MDB_val kv = {strlen(k), (void *)k}, old, nv = {strlen(v), (void *)v};
    char *ob = NULL;
    size_t ol = 0;
    if (!mdb_get(t, dbi, &kv, &old)) {
        ob = malloc(old.mv_size);
        memcpy(ob, old.mv_data, old.mv_size);
        ol = old.mv_size;
    }
    struct nerr e = {0};
    if (mdb_put(t, dbi, &kv, &nv, 0) ||
        digest_update(t, ddbi, NAME, k, strlen(k), ob, ol, v, strlen(v), &e))
        die("put");
    free(ob);
}

static int scan(double rate, double items, const _Atomic int *cancel, struct deepscrub_status *st,
                MDB_txn *rt)
{
    MDB_txn *t = rt;
    if (!t && mdb_txn_begin(env, NULL, MDB_RDONLY, &t))
        die("read txn");
    memset(st, 0, sizeof *st);
    struct nerr e = {0};
    int rc = deepscrub_scan(t, dbi, ddbi, NAME, rate, items, cancel, st, NULL, NULL, &e);
    if (!rt)
        mdb_txn_abort(t);
    return rc;
}

static void scan_tests(void)
{
    char dir[] = "/tmp/nines-deepscrub-XXXXXX";
    if (!mkdtemp(dir))
        die("mkdtemp");
    if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 8) || mdb_env_set_mapsize(env, 64 << 20) ||
        mdb_env_open(env, dir, MDB_NOSYNC | MDB_NOTLS, 0600))
        die("env");
    MDB_txn *t;
    struct nerr e = {0};
    if (mdb_txn_begin(env, NULL, 0, &t) || mdb_dbi_open(t, "_digest", MDB_CREATE, &ddbi) ||
        mdb_dbi_open(t, NAME, MDB_CREATE, &dbi))
        die("dbis");
    struct deepscrub_status st;
    if (mdb_txn_commit(t))
        die("commit");
    is_int(scan(0, 0, NULL, &st, NULL), NERR_NOTFOUND,
           "a partition without a digest: NERR_NOTFOUND");
    ok(st.error[0] != 0, "... with a message (%s)", st.error);

    if (mdb_txn_begin(env, NULL, 0, &t) || digest_rebuild(t, ddbi, NAME, dbi, &e))
        die("rebuild");
    char k[32], v[64];
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "key-%04d", i);
        snprintf(v, sizeof v, "{\"v\":{\"S\":\"value number %04d\"}}", i);
        put(t, k, v);
    }
    snprintf(v, sizeof v, "{\"v\":{\"S\":\"overwritten\"}}");
    put(t, "key-0007", v);
    if (mdb_txn_commit(t))
        die("commit");

    is_int(scan(0, 0, NULL, &st, NULL), 0, "scan of %d items", N);
    is(deepscrub_state_name(st.state), "done", "... done");
    ok(st.match, "... the bytes at rest match the maintained digest");
    is_int(st.items, N, "... %d items read", N);
    is_int(st.maintained_items, N, "... as many maintained");
    is_int(st.nbad, 0, "... no bucket differs");
    ok(st.scanned_bytes == st.total_bytes && st.total_bytes > 0,
       "... scanned bytes = the maintained byte count (%llu)", (unsigned long long)st.total_bytes);

    /* One snapshot: a write committed after the read transaction began is
     * not seen by it, and what it sees still matches. */
    MDB_txn *rt;
    if (mdb_txn_begin(env, NULL, MDB_RDONLY, &rt))
        die("read txn");
    if (mdb_txn_begin(env, NULL, 0, &t))
        die("write txn");
    put(t, "key-new", "{\"v\":{\"S\":\"late\"}}");
    if (mdb_txn_commit(t))
        die("commit");
    is_int(scan(0, 0, NULL, &st, rt), 0, "a scan on a read transaction older than a write");
    ok(st.match && st.items == N, "... matches and reads the %d items of its snapshot", N);
    mdb_txn_abort(rt);

    /* Rot: one byte of one value changed at rest, the digest untouched. */
    if (mdb_txn_begin(env, NULL, 0, &t))
        die("write txn");
    const char *rk = "key-0123";
    MDB_val kv = {strlen(rk), (void *)rk}, cur;
    if (mdb_get(t, dbi, &kv, &cur))
        die("get");
    char *rot = malloc(cur.mv_size);
    memcpy(rot, cur.mv_data, cur.mv_size);
    rot[cur.mv_size - 5] ^= 1;
    MDB_val rv = {cur.mv_size, rot};
    if (mdb_put(t, dbi, &kv, &rv, 0) || mdb_txn_commit(t))
        die("rot");
    free(rot);
    is_int(scan(0, 0, NULL, &st, NULL), 0, "scan after one byte rotted");
    ok(!st.match, "... the bytes no longer match the maintained digest");
    is_int(st.items, N + 1, "... the item count still agrees (%d)", N + 1);
    is_int(st.nbad, 1, "... exactly one bucket differs");
    is_int(st.bad[0], digest_bucket(rk, strlen(rk)), "... the rotted key's bucket (%u)",
           digest_bucket(rk, strlen(rk)));

    ok(st.records_agree, "... and the maintained records agree with each other");

    /* A digest record damaged at rest (lane 3 of the whole digest): the
     * buckets no longer sum to it. The item rot above is still there. */
    if (mdb_txn_begin(env, NULL, 0, &t))
        die("write txn");
    unsigned char half0[64]; /* NAME \2 \0: the record's first half (digest.h, Storage) */
    memcpy(half0, NAME, strlen(NAME));
    half0[strlen(NAME)] = 2;
    half0[strlen(NAME) + 1] = 0;
    MDB_val rkey = {strlen(NAME) + 2, half0}, rec;
    if (mdb_get(t, ddbi, &rkey, &rec))
        die("get record");
    unsigned char *rb = malloc(rec.mv_size);
    memcpy(rb, rec.mv_data, rec.mv_size);
    rb[24 + 2 * 3] ^= 0x10;
    MDB_val rbv = {rec.mv_size, rb};
    if (mdb_put(t, ddbi, &rkey, &rbv, 0) || mdb_txn_commit(t))
        die("damage record");
    is_int(scan(0, 0, NULL, &st, NULL), 0, "scan with a damaged digest record");
    ok(!st.match && !st.records_agree, "... the records no longer agree with each other");
    is_int(st.nbad, 1, "... and the rotted item's bucket is still the one that differs");
    rb[24 + 2 * 3] ^= 0x10;
    if (mdb_txn_begin(env, NULL, 0, &t) || mdb_put(t, ddbi, &rkey, &rbv, 0) || mdb_txn_commit(t))
        die("restore record");
    free(rb);

    /* Rate: bytes/s, slept while ahead. */
    double bytes = (double)st.scanned_bytes, rate = bytes / 0.6;
    int64_t t0 = clock_mono_ms();
    scan(rate, 0, NULL, &st, NULL);
    int64_t ms = clock_mono_ms() - t0;
    ok(ms >= 500, "at %.0f B/s the %.0f bytes take >= 0.5 s (%lld ms)", rate, bytes, (long long)ms);
    ok(ms < 10000, "... and finish (%lld ms)", (long long)ms);
    ok(st.measured_bps <= rate * 1.2, "... measured %.0f B/s, not above the limit",
       st.measured_bps);

    /* Items/s: the other bound. */
    double ips = (double)st.items / 0.6;
    t0 = clock_mono_ms();
    scan(0, ips, NULL, &st, NULL);
    ms = clock_mono_ms() - t0;
    ok(ms >= 500 && ms < 10000, "at %.0f items/s the %llu items take >= 0.5 s (%lld ms)", ips,
       (unsigned long long)st.items, (long long)ms);

    /* Cancel. */
    _Atomic int cancel = 1;
    is_int(scan(0, 0, &cancel, &st, NULL), 0, "a cancelled scan returns 0");
    is(deepscrub_state_name(st.state), "cancelled", "... cancelled");
    cmp_ok(st.items, "<", N, "... before reading every item");

    mdb_env_close(env);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- the jobs: queue, bound, cancel, forget, free ---- */

static struct deepscrub_status job_wait(struct deepscrub *ds, const char *job, const char *state,
                                        int64_t ms)
{
    struct deepscrub_status st = {0};
    int64_t end = clock_mono_ms() + ms;
    struct nerr e = {0};
    while (!deepscrub_status(ds, job, &st, &e) && strcmp(deepscrub_state_name(st.state), state) &&
           clock_mono_ms() < end) {
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    return st;
}

static void job_tests(void)
{
    char dir[] = "/tmp/nines-deepjobs-XXXXXX";
    if (!mkdtemp(dir))
        die("mkdtemp");
    struct state *s;
    struct nerr e = {0};
    if (state_open(dir, &(struct state_options){.map_size = 64 << 20}, &s, &e))
        die(e.msg);
    /* A partition of N items with its digest, as the catalog keeps one. */
    static struct table t;
    static struct partition p;
    MDB_txn *w;
    if (state_write_begin(s, &w, &e) || mdb_dbi_open(w, NAME, MDB_CREATE, &p.dbi))
        die("partition db");
    dbi = p.dbi;
    ddbi = p.ddbi = state_dbi_digest(s);
    if (digest_rebuild(w, ddbi, NAME, dbi, &e))
        die(e.msg);
    for (int i = 0; i < N; i++) {
        char k[32], v[64];
        snprintf(k, sizeof k, "key-%04d", i);
        snprintf(v, sizeof v, "{\"v\":{\"S\":\"value number %04d\"}}", i);
        put(w, k, v);
    }
    if (state_write_commit(s, w, &e))
        die(e.msg);
    snprintf(p.name, sizeof p.name, NAME);
    p.g = (struct group *)&p; /* "holds a replica"; never dereferenced by deepscrub */
    p.t = &t;
    t.name = "t1";
    t.nparts = 1;
    t.parts = &p;
    atomic_store(&t.refs, 100); /* never reaches 0: nothing is reaped */

    struct deepscrub *ds;
    if (deepscrub_new(s, &ds, &e))
        die(e.msg);
    char job[32], slow[32], queued[32];
    atomic_fetch_add(&t.refs, 1);
    is_int(deepscrub_start(ds, &t, &p, 0, 0, job, &e), 0, "a job starts");
    struct deepscrub_status st = job_wait(ds, job, "done", 10000);
    is(deepscrub_state_name(st.state), "done", "... and is done");
    ok(st.match && st.items == N, "... matching, %d items", N);
    is_int(atomic_load(&t.refs), 100, "... and gave its table reference back");

    atomic_fetch_add(&t.refs, 1);
    deepscrub_start(ds, &t, &p, 100, 0, slow, &e); /* 100 B/s: minutes */
    atomic_fetch_add(&t.refs, 1);
    deepscrub_start(ds, &t, &p, 0, 0, queued, &e);
    st = job_wait(ds, slow, "running", 5000);
    is(deepscrub_state_name(st.state), "running", "a slow job runs");
    deepscrub_status(ds, queued, &st, &e);
    is(deepscrub_state_name(st.state), "queued", "... and the next one waits its turn");
    is_int(deepscrub_cancel(ds, queued, &e), 0, "cancel the queued one");
    deepscrub_status(ds, queued, &st, &e);
    is(deepscrub_state_name(st.state), "cancelled", "... cancelled at once");
    int live = 1, rc = 0;
    char more[DEEPSCRUB_MAX_LIVE + 1][32];
    for (int i = 0; i < DEEPSCRUB_MAX_LIVE + 1 && !rc; i++) {
        atomic_fetch_add(&t.refs, 1);
        if (!(rc = deepscrub_start(ds, &t, &p, 0, 0, more[i], &e)))
            live++;
    }
    is_int(rc, NERR_LIMIT, "beyond %d live jobs: NERR_LIMIT", DEEPSCRUB_MAX_LIVE);
    is_int(live, DEEPSCRUB_MAX_LIVE, "... after %d", DEEPSCRUB_MAX_LIVE);
    int64_t t0 = clock_mono_ms();
    is_int(deepscrub_cancel(ds, slow, &e), 0, "cancel the running one");
    st = job_wait(ds, slow, "cancelled", 5000);
    is(deepscrub_state_name(st.state), "cancelled", "... cancelled (%lld ms)",
       (long long)(clock_mono_ms() - t0));
    ok(st.items < N, "... before the end (%llu items)", (unsigned long long)st.items);
    st = job_wait(ds, more[0], "done", 10000);
    is(deepscrub_state_name(st.state), "done", "the jobs queued behind it run");
    is_int(deepscrub_status(ds, "d0-0", &st, &e), NERR_NOTFOUND, "an unknown job: NERR_NOTFOUND");
    is_int(deepscrub_cancel(ds, "d0-0", &e), NERR_NOTFOUND, "... to cancel too");
    atomic_fetch_add(&t.refs, 1);
    is_int(deepscrub_start(ds, &t, &p, -1, 0, job, &e), NERR_INVALID,
           "a negative rate: NERR_INVALID");
    /* Free with jobs still queued or running: it cancels and joins. */
    for (int i = 0; i < 3; i++) {
        atomic_fetch_add(&t.refs, 1);
        deepscrub_start(ds, &t, &p, 100, 0, job, &e);
    }
    t0 = clock_mono_ms();
    deepscrub_free(ds);
    int64_t ms = clock_mono_ms() - t0;
    ok(ms < 2000, "deepscrub_free with jobs running returns at once (%lld ms)", (long long)ms);
    is_int(atomic_load(&t.refs), 100, "every table reference taken was given back");
    state_close(s);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    scan_tests();
    job_tests();
    return done_testing();
}
