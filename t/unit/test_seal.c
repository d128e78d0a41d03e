/* The archive's seals (store/archiver.h): an OP_SEAL entry round-trips
 * and a seal without a valid first index is not an entry; in LMDB a seal
 * closes a piece only when its first index is one past the last recorded
 * seal (or none is recorded), a stale one changes nothing, the newest
 * ARCHIVER_SEALS_KEPT are kept and listed in order after any index, two
 * partitions' records never mix, and dropping forgets them all. */
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/archiver.h"
#include "store/catalog.h"
#include "store/op.h"
#include "t/tap.h"

struct seen {
    uint64_t first[200], last[200];
    int n;
};

static int seen_fn(void *arg, uint64_t first, uint64_t last)
{
    struct seen *s = arg;
    if (s->n < 200) {
        s->first[s->n] = first;
        s->last[s->n] = last;
    }
    s->n++;
    return 0;
}

static void entries(void)
{
    struct table t = {.name = "t", .id = "t1", .hash_name = "k", .hash_type = 'S', .nparts = 1};
    struct op op = {.kind = OP_SEAL, .seal_first = 42}, back;
    struct nerr er = {0};
    char *enc = NULL;
    size_t len = 0;
    int rc = op_encode(&op, &enc, &len, &er);
    ok(!rc && !op_decode(enc, len, &t, &back, &er) && back.kind == OP_SEAL && back.seal_first == 42,
       "a seal round-trips (%.*s)", (int)len, enc ? enc : "");
    if (!rc)
        op_clear(&back);
    free(enc);
    const char *bad[] = {"{\"k\":\"seal\"}", "{\"k\":\"seal\",\"f\":0}",
                         "{\"k\":\"seal\",\"f\":\"1\"}", "{\"k\":\"seal\",\"f\":-3}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ok(op_decode(bad[i], strlen(bad[i]), &t, &back, &er) == NERR_CORRUPT, "not a seal: %s",
           bad[i]);
}

int main(void)
{
    entries();
    char dir[] = "/tmp/nines_seal_XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    MDB_env *env;
    MDB_txn *t;
    MDB_dbi d;
    if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 4) ||
        mdb_env_open(env, dir, MDB_NOSYNC, 0600) || mdb_txn_begin(env, NULL, 0, &t) ||
        mdb_dbi_open(t, "_digest", MDB_CREATE, &d)) {
        diag("lmdb");
        return 1;
    }
    struct nerr er = {0};
    uint64_t f, l;
    ok(!archiver_seal_last(t, d, "p.t1.0", &f, &l, &er) && f == 0 && l == 0, "no seal recorded");
    is_int(archiver_seal_apply(t, d, "p.t1.0", 1, 10, &er), 1, "the first seal closes 1..10");
    is_int(archiver_seal_apply(t, d, "p.t1.0", 1, 15, &er), 0, "a second seal from 1: stale");
    is_int(archiver_seal_apply(t, d, "p.t1.0", 5, 16, &er), 0, "a seal from inside a piece: stale");
    is_int(archiver_seal_apply(t, d, "p.t1.0", 18, 17, &er), 0, "a seal past its own index: stale");
    int lrc = archiver_seal_last(t, d, "p.t1.0", &f, &l, &er);
    ok(!lrc && f == 1 && l == 10, "stale seals changed nothing (last %llu..%llu)",
       (unsigned long long)f, (unsigned long long)l);
    is_int(archiver_seal_apply(t, d, "p.t1.0", 11, 20, &er), 1, "11..20 follows");
    /* A first seal on a replica with none recorded is taken as it comes
     * (a fresh replica, or one that installed a snapshot). */
    is_int(archiver_seal_apply(t, d, "p.t1.1", 300, 400, &er), 1,
           "another partition: its first seal starts where it says");
    uint64_t s = 20;
    for (int i = 0; i < 100; i++, s += 5)
        archiver_seal_apply(t, d, "p.t1.0", s + 1, s + 5, &er);
    struct seen sn = {0};
    ok(!archiver_seals_after(t, d, "p.t1.0", 0, seen_fn, &sn, &er), "listing the seals");
    is_int(sn.n, ARCHIVER_SEALS_KEPT, "the newest %d are kept", ARCHIVER_SEALS_KEPT);
    int order = 1;
    for (int i = 1; i < sn.n && i < 200; i++)
        order &= sn.first[i] == sn.last[i - 1] + 1;
    ok(order && sn.last[sn.n - 1] == s,
       "in order, each piece starting after the one before, the last %llu",
       (unsigned long long)sn.last[sn.n - 1]);
    struct seen tail = {0};
    archiver_seals_after(t, d, "p.t1.0", s - 10, seen_fn, &tail, &er);
    ok(tail.n == 2 && tail.last[0] == s - 5 && tail.last[1] == s, "after an index: the two later");
    struct seen other = {0};
    archiver_seals_after(t, d, "p.t1.1", 0, seen_fn, &other, &er);
    ok(other.n == 1 && other.first[0] == 300 && other.last[0] == 400,
       "the other partition's seals stay apart");
    ok(!archiver_seals_drop(t, d, "p.t1.0", &er), "drop");
    struct seen none = {0};
    archiver_seals_after(t, d, "p.t1.0", 0, seen_fn, &none, &er);
    ok(none.n == 0 && !archiver_seal_last(t, d, "p.t1.0", &f, &l, &er) && l == 0,
       "dropped: no seal left");
    other.n = 0;
    archiver_seals_after(t, d, "p.t1.1", 0, seen_fn, &other, &er);
    is_int(other.n, 1, "the other partition's seal stays");
    mdb_txn_abort(t);
    mdb_env_close(env);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd))
        diag("cleanup failed");
    return done_testing();
}
