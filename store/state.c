#include "store/state.h"

#include "lib/le.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STATE_POOL_MAX 64

struct state {
    MDB_env *env;
    MDB_dbi applied, catalog, dropped, digest;
    pthread_mutex_t pool_mu;
    MDB_txn *pool[STATE_POOL_MAX]; /* reset read transactions ready for renew */
    int npool;
};

int state_mdb_err(struct nerr *err, int rc, const char *what)
{
    int code = NERR_IO;
    if (rc == MDB_MAP_FULL || rc == MDB_DBS_FULL || rc == MDB_READERS_FULL || rc == MDB_TXN_FULL)
        code = NERR_LIMIT;
    else if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID ||
             rc == MDB_VERSION_MISMATCH)
        code = NERR_CORRUPT;
    else if (rc == ENOMEM)
        code = NERR_NOMEM;
    return nerr_set(err, code, "lmdb %s: %s", what, mdb_strerror(rc));
}

int state_open(const char *dir, const struct state_options *opt, struct state **out,
               struct nerr *err)
{
    struct state *s = calloc(1, sizeof *s);
    MDB_txn *txn = NULL;
    int rc;
    if (!s)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    pthread_mutex_init(&s->pool_mu, NULL);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        rc = nerr_sys(err, errno, "mkdir %s", dir);
        goto fail_free;
    }
    uint64_t map_size = opt && opt->map_size ? opt->map_size : (16ULL << 30);
    int max_dbs = opt && opt->max_dbs ? opt->max_dbs : 1024;
    if ((rc = mdb_env_create(&s->env)) || (rc = mdb_env_set_mapsize(s->env, map_size)) ||
        (rc = mdb_env_set_maxdbs(s->env, (MDB_dbi)max_dbs + 8)) ||
        (rc = mdb_env_set_maxreaders(s->env, 1024))) {
        rc = state_mdb_err(err, rc, "env setup");
        goto fail;
    }
    /* MDB_NOMETASYNC: see the durability contract in state.h. */
    unsigned flags = MDB_NOMETASYNC | MDB_NOTLS | MDB_NORDAHEAD;
    if (opt && opt->unsafe_no_sync)
        flags |= MDB_NOSYNC;
    rc = mdb_env_open(s->env, dir, flags, 0644);
    if (rc) {
        rc = state_mdb_err(err, rc, dir);
        goto fail;
    }
    if (mdb_env_get_maxkeysize(s->env) < STATE_MAX_KEY) {
        rc = nerr_set(err, NERR_INTERNAL,
                      "this LMDB stores keys of at most %d bytes; ninesd needs %d",
                      mdb_env_get_maxkeysize(s->env), STATE_MAX_KEY);
        goto fail;
    }
    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) ||
        (rc = mdb_dbi_open(txn, "_applied", MDB_CREATE, &s->applied)) ||
        (rc = mdb_dbi_open(txn, "_catalog", MDB_CREATE, &s->catalog)) ||
        (rc = mdb_dbi_open(txn, "_dropped", MDB_CREATE, &s->dropped)) ||
        (rc = mdb_dbi_open(txn, "_digest", MDB_CREATE, &s->digest))) {
        rc = state_mdb_err(err, rc, "open bookkeeping databases");
        goto fail;
    }
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc) {
        rc = state_mdb_err(err, rc, "commit");
        goto fail;
    }
    *out = s;
    return 0;
fail:
    if (txn)
        mdb_txn_abort(txn);
    mdb_env_close(s->env);
fail_free:
    pthread_mutex_destroy(&s->pool_mu);
    free(s);
    return rc;
}

void state_close(struct state *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->npool; i++)
        mdb_txn_abort(s->pool[i]);
    /* The last commit's meta page is flushed here, so a clean stop loses nothing. */
    mdb_env_sync(s->env, 1);
    mdb_env_close(s->env);
    pthread_mutex_destroy(&s->pool_mu);
    free(s);
}

MDB_env *state_env(struct state *s)
{
    return s->env;
}

MDB_dbi state_dbi_applied(struct state *s)
{
    return s->applied;
}

MDB_dbi state_dbi_catalog(struct state *s)
{
    return s->catalog;
}

MDB_dbi state_dbi_dropped(struct state *s)
{
    return s->dropped;
}

MDB_dbi state_dbi_digest(struct state *s)
{
    return s->digest;
}

int state_read_begin(struct state *s, MDB_txn **txn, struct nerr *err)
{
    MDB_txn *t = NULL;
    pthread_mutex_lock(&s->pool_mu);
    if (s->npool > 0)
        t = s->pool[--s->npool];
    pthread_mutex_unlock(&s->pool_mu);
    int rc = t ? mdb_txn_renew(t) : mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t);
    if (rc) {
        if (t)
            mdb_txn_abort(t);
        return state_mdb_err(err, rc, "read transaction");
    }
    *txn = t;
    return 0;
}

void state_read_end(struct state *s, MDB_txn *txn)
{
    if (!txn)
        return;
    mdb_txn_reset(txn);
    pthread_mutex_lock(&s->pool_mu);
    if (s->npool < STATE_POOL_MAX) {
        s->pool[s->npool++] = txn;
        txn = NULL;
    }
    pthread_mutex_unlock(&s->pool_mu);
    if (txn)
        mdb_txn_abort(txn);
}

int state_write_begin(struct state *s, MDB_txn **txn, struct nerr *err)
{
    int rc = mdb_txn_begin(s->env, NULL, 0, txn);
    return rc ? state_mdb_err(err, rc, "write transaction") : 0;
}

int state_write_commit(struct state *s, MDB_txn *txn, struct nerr *err)
{
    (void)s;
    int rc = mdb_txn_commit(txn);
    return rc ? state_mdb_err(err, rc, "commit") : 0;
}

int state_applied_get(struct state *s, MDB_txn *txn, const char *group, uint64_t *lsn,
                      struct nerr *err)
{
    MDB_val k = {strlen(group), (void *)group}, v;
    int rc = mdb_get(txn, s->applied, &k, &v);
    if (rc == MDB_NOTFOUND) {
        *lsn = 0;
        return 0;
    }
    if (rc)
        return state_mdb_err(err, rc, "read applied lsn");
    if (v.mv_size != 8)
        return nerr_set(err, NERR_CORRUPT, "applied lsn of %s has %zu bytes", group, v.mv_size);
    *lsn = le_get64(v.mv_data);
    return 0;
}

int state_applied_put(struct state *s, MDB_txn *txn, const char *group, uint64_t lsn,
                      struct nerr *err)
{
    unsigned char b[8];
    le_put64(b, lsn);
    MDB_val k = {strlen(group), (void *)group}, v = {8, b};
    int rc = mdb_put(txn, s->applied, &k, &v, 0);
    return rc ? state_mdb_err(err, rc, "write applied lsn") : 0;
}

int state_applied_del(struct state *s, MDB_txn *txn, const char *group, struct nerr *err)
{
    MDB_val k = {strlen(group), (void *)group};
    int rc = mdb_del(txn, s->applied, &k, NULL);
    return rc && rc != MDB_NOTFOUND ? state_mdb_err(err, rc, "delete applied lsn") : 0;
}

/* Snapshot payload: "N9SN" u32 version, then (u32 klen, key, u32 vlen, val)*. */
int state_dbi_snapshot(MDB_txn *txn, MDB_dbi dbi, unsigned char **out, size_t *len,
                       struct nerr *err)
{
    MDB_cursor *cur;
    MDB_val k, v;
    size_t cap = 4096, n = 8;
    unsigned char *b = malloc(cap);
    int r = mdb_cursor_open(txn, dbi, &cur);
    if (!b || r) {
        free(b);
        return r ? state_mdb_err(err, r, "snapshot cursor") : nerr_set(err, NERR_NOMEM, "oom");
    }
    memcpy(b, "N9SN", 4);
    le_put32(b + 4, 1);
    for (MDB_cursor_op o = MDB_FIRST; !(r = mdb_cursor_get(cur, &k, &v, o)); o = MDB_NEXT) {
        size_t need = n + 8 + k.mv_size + v.mv_size;
        if (need > cap) {
            while (cap < need)
                cap *= 2;
            unsigned char *nb = realloc(b, cap);
            if (!nb) {
                mdb_cursor_close(cur);
                free(b);
                return nerr_set(err, NERR_NOMEM, "out of memory");
            }
            b = nb;
        }
        le_put32(b + n, (uint32_t)k.mv_size);
        memcpy(b + n + 4, k.mv_data, k.mv_size);
        n += 4 + k.mv_size;
        le_put32(b + n, (uint32_t)v.mv_size);
        memcpy(b + n + 4, v.mv_data, v.mv_size);
        n += 4 + v.mv_size;
    }
    mdb_cursor_close(cur);
    if (r != MDB_NOTFOUND) {
        free(b);
        return state_mdb_err(err, r, "snapshot scan");
    }
    *out = b;
    *len = n;
    return 0;
}

int state_dbi_restore(MDB_txn *txn, MDB_dbi dbi, const void *data, size_t len, struct nerr *err)
{
    const unsigned char *p = data, *end = p + len;
    if (len < 8 || memcmp(p, "N9SN", 4) || le_get32(p + 4) != 1)
        return nerr_set(err, NERR_CORRUPT, "not a snapshot of this version");
    int r = mdb_drop(txn, dbi, 0);
    if (r)
        return state_mdb_err(err, r, "snapshot restore: empty");
    for (p += 8; p < end;) {
        MDB_val k, v;
        if (end - p < 4 || (k.mv_size = le_get32(p)) > (size_t)(end - p - 4))
            return nerr_set(err, NERR_CORRUPT, "snapshot cut inside a key");
        k.mv_data = (void *)(p + 4);
        p += 4 + k.mv_size;
        if (end - p < 4 || (v.mv_size = le_get32(p)) > (size_t)(end - p - 4))
            return nerr_set(err, NERR_CORRUPT, "snapshot cut inside a value");
        v.mv_data = (void *)(p + 4);
        p += 4 + v.mv_size;
        if ((r = mdb_put(txn, dbi, &k, &v, MDB_APPEND)))
            return state_mdb_err(err, r, "snapshot restore: put");
    }
    return 0;
}

/* A record being copied out: its 8 length bytes and the key and value it
 * frames, laid end to end as [klen][key][vlen][value]; off counts what of
 * it went out already. */
struct state_dbi_stream {
    MDB_cursor *cur;
    MDB_val k, v;
    unsigned char klen[4], vlen[4];
    size_t off, rec_len; /* rec_len 0: no record loaded */
    int started, done;
    size_t head_off; /* bytes of the 8-byte "N9SN" header sent */
};

int state_dbi_stream_open(MDB_txn *txn, MDB_dbi dbi, struct state_dbi_stream **out,
                          struct nerr *err)
{
    struct state_dbi_stream *s = calloc(1, sizeof *s);
    if (!s)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    int r = mdb_cursor_open(txn, dbi, &s->cur);
    if (r) {
        free(s);
        return state_mdb_err(err, r, "snapshot cursor");
    }
    *out = s;
    return 0;
}

int state_dbi_stream_rewind(struct state_dbi_stream *s, struct nerr *err)
{
    (void)err;
    s->off = s->rec_len = s->head_off = 0;
    s->started = s->done = 0;
    return 0;
}

/* Copies from the piece [p, p + plen) that starts at byte `at` of the
 * current record. */
static size_t rec_copy(struct state_dbi_stream *s, size_t at, const void *p, size_t plen,
                       unsigned char *buf, size_t room)
{
    if (s->off >= at + plen || s->off < at || !room)
        return 0;
    size_t from = s->off - at, n = plen - from < room ? plen - from : room;
    memcpy(buf, (const unsigned char *)p + from, n);
    s->off += n;
    return n;
}

int state_dbi_stream_read(struct state_dbi_stream *s, unsigned char *buf, size_t cap, size_t *n,
                          struct nerr *err)
{
    size_t got = 0;
    static const unsigned char head[8] = {'N', '9', 'S', 'N', 1, 0, 0, 0};
    while (got < cap && s->head_off < 8) {
        buf[got++] = head[s->head_off++];
    }
    while (got < cap && !s->done) {
        if (s->off == s->rec_len) {
            int r = mdb_cursor_get(s->cur, &s->k, &s->v, s->started ? MDB_NEXT : MDB_FIRST);
            s->started = 1;
            if (r == MDB_NOTFOUND) {
                s->done = 1;
                break;
            }
            if (r)
                return state_mdb_err(err, r, "snapshot scan");
            le_put32(s->klen, (uint32_t)s->k.mv_size);
            le_put32(s->vlen, (uint32_t)s->v.mv_size);
            s->off = 0;
            s->rec_len = 8 + s->k.mv_size + s->v.mv_size;
        }
        size_t ks = s->k.mv_size;
        got += rec_copy(s, 0, s->klen, 4, buf + got, cap - got);
        got += rec_copy(s, 4, s->k.mv_data, ks, buf + got, cap - got);
        got += rec_copy(s, 4 + ks, s->vlen, 4, buf + got, cap - got);
        got += rec_copy(s, 8 + ks, s->v.mv_data, s->v.mv_size, buf + got, cap - got);
    }
    *n = got;
    return 0;
}

void state_dbi_stream_close(struct state_dbi_stream *s)
{
    if (!s)
        return;
    mdb_cursor_close(s->cur);
    free(s);
}
