/*
 * fuzz_snapshot — libFuzzer target for the payload of a snapshot message
 * (RAFT_MSG_SNAPSHOT's data, store/state.h "N9SN" format) as a follower
 * restores it: state_dbi_restore into a partition's database of a real LMDB
 * environment in a temporary directory, in a write transaction that is
 * aborted after each input. Checked:
 *   - no crash, leak or out-of-bounds read, whatever the bytes (a damaged
 *     payload is an error, never undefined behaviour inside LMDB);
 *   - a payload that restores is canonical: state_dbi_snapshot of the
 *     restored database gives back exactly the input bytes, so every
 *     replica that installs it holds the same state.
 *
 *   make fuzz
 *   build-fuzz/bin/fuzz_snapshot -max_total_time=60 fuzz/corpus/fuzz_snapshot
 */
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/fsutil.h"
#include "lib/log.h"
#include "store/state.h"

static struct state *st;
static char dir[64];

static void remove_dir(void)
{
    fs_rm_rf(dir, NULL);
}

static void setup(void)
{
    char tmpl[] = "/tmp/nines-fuzz-snap-XXXXXX", path[128];
    struct nerr err = {0};
    if (!mkdtemp(tmpl))
        abort();
    snprintf(dir, sizeof dir, "%s", tmpl);
    atexit(remove_dir);
    log_init("fuzz", LOG_ERROR);
    snprintf(path, sizeof path, "%s/state", dir);
    struct state_options so = {.map_size = 1ULL << 30, .max_dbs = 16};
    if (state_open(path, &so, &st, &err)) {
        fprintf(stderr, "fuzz setup: %s\n", err.msg);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!st)
        setup();
    struct nerr err = {0};
    MDB_txn *txn;
    MDB_dbi dbi;
    if (state_write_begin(st, &txn, &err) || mdb_dbi_open(txn, "p.t1.0", MDB_CREATE, &dbi))
        abort();
    if (state_dbi_restore(txn, dbi, data, size, &err) == 0) {
        unsigned char *out = NULL;
        size_t len = 0;
        if (state_dbi_snapshot(txn, dbi, &out, &len, &err)) {
            fprintf(stderr, "snapshot of a restored database failed: %s\n", err.msg);
            abort();
        }
        if (len != size || memcmp(out, data, size)) {
            fprintf(stderr, "restore/snapshot is not the identity (%zu -> %zu bytes)\n", size, len);
            abort();
        }
        free(out);
    }
    mdb_txn_abort(txn);
    return 0;
}
