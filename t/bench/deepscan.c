/*
 * deepscan — the deep scrub's scan rate on one core against the physical
 * reference (t/bench/deepscan.sh runs it and sha256sum of the same file).
 *
 *   deepscan fill DIR ITEMS VALUE_BYTES
 *   deepscan scan DIR
 *   deepscan upkeep DIR KEYS VALUE_BYTES BATCH ROUNDS
 *
 * fill: a new LMDB environment in DIR with ITEMS items of VALUE_BYTES-byte
 * values under 16-byte keys, written as the applier writes them (item and
 * digest in one transaction, digest_update).
 * scan: one deepscrub_scan of it, unthrottled, on one thread; prints the
 * items, the bytes of keys and values, the partition's LMDB pages, the
 * seconds and the rates. Exit 0 only when it matched the maintained digest.
 * upkeep: the digest's cost on the write path, without the network and the
 * consensus around it. A new environment in DIR with KEYS items of
 * VALUE_BYTES bytes; then ROUNDS rounds of three, rotating which goes
 * first, each overwriting 4 x KEYS items (a different value each time) in
 * write transactions of BATCH items as the applier does, in three ways in
 * turn: "per txn" counts the old bytes out, puts, counts the new ones in
 * (digest_pending_add, as store/items.c's store_item) and flushes before
 * each commit; "per item" copies the old bytes, puts and calls
 * digest_update (the record and a bucket read and written for every item,
 * as the applier did before 2026-12-06); "off" only puts. Prints the CPU time of the writing thread per item write
 * for each, and what the digest adds.
 */
#include <lmdb.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "store/deepscrub.h"
#include "store/digest.h"

#define NAME "p.bench.0"

static void die(const char *what, int rc)
{
    fprintf(stderr, "deepscan: %s: %s\n", what, rc ? mdb_strerror(rc) : "failed");
    exit(2);
}

static void open_env(const char *dir, MDB_env **env, MDB_dbi *dbi, MDB_dbi *ddbi)
{
    MDB_txn *t;
    int rc;
    if ((rc = mdb_env_create(env)) || (rc = mdb_env_set_maxdbs(*env, 4)) ||
        (rc = mdb_env_set_mapsize(*env, (size_t)64 << 30)) ||
        (rc = mdb_env_open(*env, dir, MDB_NOSYNC, 0644)))
        die("open", rc);
    if ((rc = mdb_txn_begin(*env, NULL, 0, &t)) || (rc = mdb_dbi_open(t, NAME, MDB_CREATE, dbi)) ||
        (rc = mdb_dbi_open(t, "_digest", MDB_CREATE, ddbi)) || (rc = mdb_txn_commit(t)))
        die("dbi", rc);
}

static int fill(const char *dir, long items, long vbytes)
{
    MDB_env *env;
    MDB_txn *t;
    MDB_dbi dbi, ddbi;
    int rc;
    struct nerr e = {0};
    open_env(dir, &env, &dbi, &ddbi);
    if ((rc = mdb_txn_begin(env, NULL, 0, &t)))
        die("txn", rc);
    if (digest_rebuild(t, ddbi, NAME, dbi, &e))
        die(e.msg, 0);
    if ((rc = mdb_txn_commit(t)))
        die("commit", rc);
    char *v = malloc((size_t)vbytes);
    char k[32];
    int64_t f0 = clock_mono_ms();
    for (long i = 0; i < items;) {
        if ((rc = mdb_txn_begin(env, NULL, 0, &t)))
            die("txn", rc);
        for (long j = 0; j < 1000 && i < items; j++, i++) {
            snprintf(k, sizeof k, "key-%011ld", (i * 2654435761L) % 100000000000L);
            memset(v, 'a' + (int)(i % 26), (size_t)vbytes);
            int n = snprintf(v, (size_t)vbytes, "{\"v\":{\"S\":\"%ld", i);
            v[n < vbytes ? n : vbytes - 1] = 'x';
            MDB_val kv = {16, k}, vv = {(size_t)vbytes, v};
            if ((rc = mdb_put(t, dbi, &kv, &vv, 0)))
                die("put", rc);
            if (digest_update(t, ddbi, NAME, k, 16, NULL, 0, v, (size_t)vbytes, &e))
                die(e.msg, 0);
        }
        if ((rc = mdb_txn_commit(t)))
            die("commit", rc);
    }
    printf("filled %ld items of 16 + %ld bytes in %.1f s\n", items, vbytes,
           (double)(clock_mono_ms() - f0) / 1000.0);
    free(v);
    mdb_env_sync(env, 1);
    mdb_env_close(env);
    return 0;
}

static int scan(const char *dir)
{
    MDB_env *env;
    MDB_txn *t;
    MDB_dbi dbi, ddbi;
    int rc;
    struct nerr e = {0};
    open_env(dir, &env, &dbi, &ddbi);
    struct deepscrub_status st = {0};
    if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &t)))
        die("read txn", rc);
    uint64_t t0 = clock_mono_ns();
    if (deepscrub_scan(t, dbi, ddbi, NAME, 0, 0, NULL, &st, NULL, NULL, &e))
        die(e.msg, 0);
    double s = (double)(clock_mono_ns() - t0) / 1e9;
    mdb_txn_abort(t);
    printf("scan: %llu items, %.1f MB of keys and values, %.1f MB of pages, %.3f s: "
           "%.0f items/s, %.1f MB/s of items, %.1f MB/s of pages, %s\n",
           (unsigned long long)st.items, (double)st.scanned_bytes / 1e6,
           (double)st.store_bytes / 1e6, s, (double)st.items / s,
           (double)st.scanned_bytes / 1e6 / s, (double)st.store_bytes / 1e6 / s,
           st.match ? "match" : "MISMATCH");
    mdb_env_close(env);
    return st.match ? 0 : 1;
}

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void make_key(char k[32], long i)
{
    snprintf(k, 32, "key-%011ld", (i * 2654435761L) % 100000000000L);
}

static void make_value(char *v, long vbytes, long i, long gen)
{
    memset(v, 'a' + (int)((i + gen) % 26), (size_t)vbytes);
    int n = snprintf(v, (size_t)vbytes, "{\"v\":{\"S\":\"%ld.%ld", i, gen);
    v[n < vbytes ? n : vbytes - 1] = 'x';
}

/* How a round keeps the digest. */
enum upkeep_mode { UP_OFF, UP_ITEM, UP_TXN };
static const char *const upkeep_name[] = {"off", "per item", "per txn"};

/* One round: 4 x keys overwrites in transactions of batch; seconds of CPU. */
static double upkeep_round(MDB_env *env, MDB_dbi dbi, MDB_dbi ddbi, long keys, long vbytes,
                           long batch, enum upkeep_mode mode, long gen)
{
    char *v = malloc((size_t)vbytes), k[32];
    struct nerr e = {0};
    MDB_txn *t;
    struct digest_pending *pd = NULL;
    int rc;
    double c0 = thread_cpu_s();
    long n = 4 * keys;
    for (long i = 0; i < n;) {
        if ((rc = mdb_txn_begin(env, NULL, 0, &t)))
            die("txn", rc);
        for (long j = 0; j < batch && i < n; j++, i++) {
            long key = (i * 7919) % keys;
            make_key(k, key);
            make_value(v, vbytes, key, gen + i);
            MDB_val kv = {16, k}, vv = {(size_t)vbytes, v}, ov;
            void *old = NULL;
            size_t oldlen = 0;
            if (mode == UP_TXN && !mdb_get(t, dbi, &kv, &ov) &&
                digest_pending_add(&pd, t, ddbi, NAME, k, 16, ov.mv_data, ov.mv_size, -1, &e))
                die(e.msg, 0);
            if (mode == UP_ITEM && !mdb_get(t, dbi, &kv, &ov)) {
                old = malloc(ov.mv_size);
                memcpy(old, ov.mv_data, ov.mv_size);
                oldlen = ov.mv_size;
            }
            if ((rc = mdb_put(t, dbi, &kv, &vv, 0)))
                die("put", rc);
            if (mode == UP_TXN &&
                digest_pending_add(&pd, t, ddbi, NAME, k, 16, v, (size_t)vbytes, 1, &e))
                die(e.msg, 0);
            if (mode == UP_ITEM &&
                digest_update(t, ddbi, NAME, k, 16, old, oldlen, v, (size_t)vbytes, &e))
                die(e.msg, 0);
            free(old);
        }
        if (digest_flush(&pd, t, ddbi, NAME, &e))
            die(e.msg, 0);
        if ((rc = mdb_txn_commit(t)))
            die("commit", rc);
    }
    free(v);
    return thread_cpu_s() - c0;
}

static int upkeep(const char *dir, long keys, long vbytes, long batch, int rounds)
{
    if (fill(dir, keys, vbytes))
        return 2;
    MDB_env *env;
    MDB_dbi dbi, ddbi;
    open_env(dir, &env, &dbi, &ddbi);
    double best[3] = {1e9, 1e9, 1e9};
    long gen = 1;
    for (int r = 0; r < rounds; r++) {
        for (int s = 0; s < 3; s++) {
            enum upkeep_mode m = (enum upkeep_mode)((r + s) % 3);
            double c = upkeep_round(env, dbi, ddbi, keys, vbytes, batch, m, gen);
            gen += 4 * keys;
            double us = c * 1e6 / (double)(4 * keys);
            printf("round %d digest %-8s %.2f us of CPU per item write\n", r + 1, upkeep_name[m],
                   us);
            if (us < best[m])
                best[m] = us;
        }
    }
    printf("upkeep: %ld keys, 16 + %ld bytes, %ld writes per transaction, best of %d: off %.2f us "
           "per item write; digest written per item +%.2f us (%.0f %%), per transaction "
           "+%.2f us (%.0f %%)\n",
           keys, vbytes, batch, rounds, best[UP_OFF], best[UP_ITEM] - best[UP_OFF],
           100.0 * (best[UP_ITEM] - best[UP_OFF]) / best[UP_OFF], best[UP_TXN] - best[UP_OFF],
           100.0 * (best[UP_TXN] - best[UP_OFF]) / best[UP_OFF]);
    mdb_env_close(env);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 7 && !strcmp(argv[1], "upkeep")) {
        long keys = atol(argv[3]), vbytes = atol(argv[4]), batch = atol(argv[5]);
        int rounds = atoi(argv[6]);
        if (keys <= 0 || vbytes < 16 || vbytes > 65536 || batch <= 0 || rounds <= 0) {
            fprintf(stderr, "deepscan: KEYS, BATCH, ROUNDS > 0 and 16 <= VALUE_BYTES <= 65536\n");
            return 2;
        }
        return upkeep(argv[2], keys, vbytes, batch, rounds);
    }
    if (argc == 5 && !strcmp(argv[1], "fill")) {
        long items = atol(argv[3]), vbytes = atol(argv[4]);
        if (items <= 0 || vbytes < 16 || vbytes > 65536) {
            fprintf(stderr, "deepscan: ITEMS > 0 and 16 <= VALUE_BYTES <= 65536\n");
            return 2;
        }
        return fill(argv[2], items, vbytes);
    }
    if (argc == 3 && !strcmp(argv[1], "scan"))
        return scan(argv[2]);
    fprintf(stderr, "usage: deepscan fill DIR ITEMS VALUE_BYTES | deepscan scan DIR | deepscan "
                    "upkeep DIR KEYS VALUE_BYTES BATCH ROUNDS\n");
    return 2;
}
