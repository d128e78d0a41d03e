/*
 * digest.c — LtHash16 set digests of partitions (digest.h).
 */
#include "store/digest.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <openssl/sha.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/crc32c.h"
#include "lib/le.h"
#include "store/state.h"

#define REC_MAGIC "N9DG"
#define REC_VERSION 2 /* of the two halves (digest.h, Storage) */

/* The algorithms, fetched once: OpenSSL 3 looks an implementation up on
 * every init otherwise, which cost more than the hashing itself. Never
 * freed (one each per process). Each thread keeps its own two contexts
 * (made on its first hash, freed when it exits): a context per call cost
 * two allocations and a provider set-up, about a third of an element hash
 * of a small item. */
static EVP_MD *g_sha256;
static EVP_CIPHER *g_chacha;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_ctx_key;
static int g_key_ok;

struct hash_ctx {
    EVP_MD_CTX *md;
    EVP_CIPHER_CTX *cx;
    int cx_ready; /* cx was initialised with g_chacha once: later inits pass the key only */
};

static void ctx_free(void *p)
{
    struct hash_ctx *c = p;
    EVP_MD_CTX_free(c->md);
    EVP_CIPHER_CTX_free(c->cx);
    free(c);
}

static void fetch_algorithms(void)
{
    g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    g_chacha = EVP_CIPHER_fetch(NULL, "ChaCha20", NULL);
    g_key_ok = pthread_key_create(&g_ctx_key, ctx_free) == 0;
}

/* This thread's contexts; NULL when out of memory or libcrypto lacks one
 * of the algorithms (*oom says which). */
static struct hash_ctx *thread_ctx(int *oom)
{
    pthread_once(&g_once, fetch_algorithms);
    *oom = 0;
    if (!g_sha256 || !g_chacha || !g_key_ok)
        return NULL;
    struct hash_ctx *c = pthread_getspecific(g_ctx_key);
    if (c)
        return c;
    c = calloc(1, sizeof *c);
    if (c && (c->md = EVP_MD_CTX_new()) && (c->cx = EVP_CIPHER_CTX_new()) &&
        pthread_setspecific(g_ctx_key, c) == 0)
        return c;
    if (c)
        ctx_free(c);
    *oom = 1;
    return NULL;
}

static int item_hash(struct hash_ctx *c, const void *key, size_t klen, const void *item,
                     size_t ilen, unsigned char out[DIGEST_HASH_BYTES])
{
    unsigned char len4[4];
    le_put32(len4, (uint32_t)klen);
    return EVP_DigestInit_ex(c->md, g_sha256, NULL) == 1 &&
           EVP_DigestUpdate(c->md, "N9DG1", 5) == 1 && EVP_DigestUpdate(c->md, len4, 4) == 1 &&
           EVP_DigestUpdate(c->md, key, klen) == 1 && EVP_DigestUpdate(c->md, item, ilen) == 1 &&
           EVP_DigestFinal_ex(c->md, out, NULL) == 1;
}

static int no_ctx(struct nerr *err, int oom)
{
    return oom ? nerr_set(err, NERR_NOMEM, "digest: out of memory")
               : nerr_set(err, NERR_INTERNAL, "digest: libcrypto has no SHA-256 or ChaCha20");
}

int digest_item_hash(const void *key, size_t klen, const void *item, size_t ilen,
                     unsigned char out[DIGEST_HASH_BYTES], struct nerr *err)
{
    int oom;
    struct hash_ctx *c = thread_ctx(&oom);
    if (!c)
        return no_ctx(err, oom);
    if (!item_hash(c, key, klen, item, ilen, out))
        return nerr_set(err, NERR_INTERNAL, "digest: SHA-256 failed");
    return 0;
}

int digest_elem_lanes(const void *key, size_t klen, const void *item, size_t ilen, uint16_t *lanes,
                      size_t nlanes, struct nerr *err)
{
    if (nlanes == 0 || nlanes > DIGEST_LANES)
        return nerr_set(err, NERR_INVALID, "digest: %zu lanes", nlanes);
    int oom;
    struct hash_ctx *c = thread_ctx(&oom);
    if (!c)
        return no_ctx(err, oom);
    unsigned char seed[SHA256_DIGEST_LENGTH];
    if (!item_hash(c, key, klen, item, ilen, seed))
        return nerr_set(err, NERR_INTERNAL, "digest: SHA-256 failed");
    static const unsigned char zero[2 * DIGEST_LANES]; /* encrypting zeros = the keystream */
    static const unsigned char iv[16];                 /* counter 0, nonce 0 */
    /* The keystream goes straight into the lanes: on a little-endian
     * machine its byte pairs are the u16le lanes already. */
    unsigned char *out = (unsigned char *)lanes;
    int n = 0, want = (int)(2 * nlanes);
    int ok = EVP_EncryptInit_ex(c->cx, c->cx_ready ? NULL : g_chacha, NULL, seed, iv) == 1 &&
             EVP_EncryptUpdate(c->cx, out, &n, zero, want) == 1 && n == want;
    if (!ok) {
        c->cx_ready = 0;
        return nerr_set(err, NERR_INTERNAL, "digest: ChaCha20 failed");
    }
    c->cx_ready = 1;
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    for (size_t i = 0; i < nlanes; i++)
        lanes[i] = (uint16_t)(out[2 * i] | out[2 * i + 1] << 8);
#endif
    return 0;
}

int digest_elem(const void *key, size_t klen, const void *item, size_t ilen,
                uint16_t lanes[DIGEST_LANES], struct nerr *err)
{
    return digest_elem_lanes(key, klen, item, ilen, lanes, DIGEST_LANES, err);
}

void digest_add(struct digest *d, const uint16_t lanes[DIGEST_LANES], size_t elem_bytes, int sign)
{
    if (sign > 0) {
        for (size_t i = 0; i < DIGEST_LANES; i++)
            d->lane[i] = (uint16_t)(d->lane[i] + lanes[i]);
        d->items++;
        d->bytes += elem_bytes;
    } else {
        for (size_t i = 0; i < DIGEST_LANES; i++)
            d->lane[i] = (uint16_t)(d->lane[i] - lanes[i]);
        d->items--;
        d->bytes -= elem_bytes;
    }
}

unsigned digest_bucket(const void *key, size_t klen)
{
    return crc32c(0, key, klen) >> 24;
}

unsigned digest_sub_bucket(const void *key, size_t klen)
{
    return (crc32c(0, key, klen) >> 16) & 0xff;
}

void digest_hash_hex(const unsigned char h[DIGEST_HASH_BYTES], char out[2 * DIGEST_HASH_BYTES + 1])
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < DIGEST_HASH_BYTES; i++) {
        out[2 * i] = hx[h[i] >> 4];
        out[2 * i + 1] = hx[h[i] & 15];
    }
    out[2 * DIGEST_HASH_BYTES] = 0;
}

int digest_equal(const struct digest *a, const struct digest *b)
{
    return !memcmp(a->lane, b->lane, sizeof a->lane);
}

void digest_short_hex(const struct digest *d, char out[33])
{
    for (int i = 0; i < 8; i++)
        snprintf(out + 4 * i, 5, "%02x%02x", d->lane[i] & 0xff, d->lane[i] >> 8);
}

/* ---- records ---- */

/* The whole digest serialised in one piece (in scrub markers): "N9DG"
 * u32le 1, u64le items, u64le bytes, DIGEST_LANES u16le lanes. */
static void rec_encode(const struct digest *d, unsigned char *b)
{
    memcpy(b, REC_MAGIC, 4);
    le_put32(b + 4, 1);
    le_put64(b + 8, d->items);
    le_put64(b + 16, d->bytes);
    le_put16_array(b + 24, d->lane, DIGEST_LANES);
}

static int rec_decode(const char *name, const unsigned char *b, size_t n, struct digest *d,
                      struct nerr *err)
{
    if (n != DIGEST_RECORD_BYTES || memcmp(b, REC_MAGIC, 4) || le_get32(b + 4) != 1)
        return nerr_set(err, NERR_CORRUPT, "partition %s: its digest record is damaged", name);
    d->items = le_get64(b + 8);
    d->bytes = le_get64(b + 16);
    le_get16_array(d->lane, b + 24, DIGEST_LANES);
    return 0;
}

/* A key under partition `name` in `_digest`: name, a kind byte, then
 * suffix (digest.h, Storage). 0 when it does not fit cap. */
static size_t sub_key(const char *name, unsigned char kind, const unsigned char *suffix,
                      size_t slen, unsigned char *buf, size_t cap)
{
    size_t n = strlen(name);
    if (n + 1 + slen > cap)
        return 0;
    memcpy(buf, name, n);
    buf[n] = kind;
    memcpy(buf + n + 1, suffix, slen);
    return n + 1 + slen;
}

/* Kinds of key (digest.h, Storage). */
#define KIND_V1_BUCKET 0
#define KIND_MARK 1
#define KIND_HALF 2
#define KIND_GROUP 3

static size_t one_byte_key(const char *name, unsigned char kind, unsigned v, unsigned char *buf,
                           size_t cap)
{
    unsigned char one = (unsigned char)v;
    return sub_key(name, kind, &one, 1, buf, cap);
}

/* The two halves: half 0 = "N9DG" u32le 2, u64le items, u64le bytes, the
 * first half of the lanes; half 1 = "N9DG" u32le 2, the second half. */
#define HALF_LANES (DIGEST_LANES / 2)
#define HALF0_BYTES (24 + 2 * HALF_LANES)
#define HALF1_BYTES (8 + 2 * HALF_LANES)
#define GROUP_BUCKETS (DIGEST_BUCKETS / DIGEST_GROUPS)
#define GROUP_BYTES (GROUP_BUCKETS * 2 * DIGEST_BUCKET_LANES)

static int half_get(MDB_txn *txn, MDB_dbi ddbi, const char *name, unsigned h, MDB_val *v,
                    struct nerr *err)
{
    unsigned char kb[256];
    MDB_val k = {one_byte_key(name, KIND_HALF, h, kb, sizeof kb), kb};
    if (!k.mv_size)
        return nerr_set(err, NERR_INVALID, "partition name too long");
    int rc = mdb_get(txn, ddbi, &k, v);
    if (rc == MDB_NOTFOUND)
        return nerr_set(err, NERR_NOTFOUND, "partition %s has no digest", name);
    if (rc)
        return state_mdb_err(err, rc, "digest get");
    size_t want = h ? HALF1_BYTES : HALF0_BYTES;
    const unsigned char *b = v->mv_data;
    if (v->mv_size != want || memcmp(b, REC_MAGIC, 4) || le_get32(b + 4) != REC_VERSION)
        return nerr_set(err, NERR_CORRUPT, "partition %s: its digest record is damaged", name);
    return 0;
}

int digest_get(MDB_txn *txn, MDB_dbi ddbi, const char *name, struct digest *d, struct nerr *err)
{
    MDB_val v0, v1;
    int rc = half_get(txn, ddbi, name, 0, &v0, err);
    if (rc)
        return rc; /* NERR_NOTFOUND: none, or format 1 only (rebuilt at open) */
    d->items = le_get64((const unsigned char *)v0.mv_data + 8);
    d->bytes = le_get64((const unsigned char *)v0.mv_data + 16);
    le_get16_array(d->lane, (const unsigned char *)v0.mv_data + 24, HALF_LANES);
    if ((rc = half_get(txn, ddbi, name, 1, &v1, err)))
        return rc == NERR_NOTFOUND
                   ? nerr_set(err, NERR_CORRUPT, "partition %s: half of its digest is missing", name)
                   : rc;
    le_get16_array(d->lane + HALF_LANES, (const unsigned char *)v1.mv_data + 8, HALF_LANES);
    return 0;
}

static int rec_put(MDB_txn *txn, MDB_dbi ddbi, const char *name, const struct digest *d,
                   struct nerr *err)
{
    unsigned char b0[HALF0_BYTES], b1[HALF1_BYTES], kb[256];
    memcpy(b0, REC_MAGIC, 4);
    le_put32(b0 + 4, REC_VERSION);
    le_put64(b0 + 8, d->items);
    le_put64(b0 + 16, d->bytes);
    le_put16_array(b0 + 24, d->lane, HALF_LANES);
    memcpy(b1, REC_MAGIC, 4);
    le_put32(b1 + 4, REC_VERSION);
    le_put16_array(b1 + 8, d->lane + HALF_LANES, HALF_LANES);
    for (unsigned h = 0; h < 2; h++) {
        MDB_val k = {one_byte_key(name, KIND_HALF, h, kb, sizeof kb), kb};
        MDB_val v = {h ? sizeof b1 : sizeof b0, h ? b1 : b0};
        if (!k.mv_size)
            return nerr_set(err, NERR_INVALID, "partition name too long");
        int rc = mdb_put(txn, ddbi, &k, &v, 0);
        if (rc)
            return state_mdb_err(err, rc, "digest put");
    }
    return 0;
}

/* Bucket group g's lanes into out (GROUP_BUCKETS x DIGEST_BUCKET_LANES); an
 * absent group is all zero. */
static int group_get(MDB_txn *txn, MDB_dbi ddbi, const char *name, unsigned g, uint16_t *out,
                     struct nerr *err)
{
    unsigned char kb[256];
    MDB_val k = {one_byte_key(name, KIND_GROUP, g, kb, sizeof kb), kb}, v;
    if (!k.mv_size)
        return nerr_set(err, NERR_INVALID, "partition name too long");
    int rc = mdb_get(txn, ddbi, &k, &v);
    if (rc == MDB_NOTFOUND) {
        memset(out, 0, 2 * GROUP_BUCKETS * DIGEST_BUCKET_LANES);
        return 0;
    }
    if (rc)
        return state_mdb_err(err, rc, "digest bucket get");
    if (v.mv_size != GROUP_BYTES)
        return nerr_set(err, NERR_CORRUPT, "partition %s: buckets %u-%u of its digest are damaged",
                        name, g * GROUP_BUCKETS, (g + 1) * GROUP_BUCKETS - 1);
    le_get16_array(out, v.mv_data, GROUP_BUCKETS * DIGEST_BUCKET_LANES);
    return 0;
}

static int group_put(MDB_txn *txn, MDB_dbi ddbi, const char *name, unsigned g, const uint16_t *in,
                     struct nerr *err)
{
    unsigned char kb[256], vb[GROUP_BYTES];
    le_put16_array(vb, in, GROUP_BUCKETS * DIGEST_BUCKET_LANES);
    MDB_val k = {one_byte_key(name, KIND_GROUP, g, kb, sizeof kb), kb}, v = {sizeof vb, vb};
    if (!k.mv_size)
        return nerr_set(err, NERR_INVALID, "partition name too long");
    int rc = mdb_put(txn, ddbi, &k, &v, 0);
    return rc ? state_mdb_err(err, rc, "digest bucket put") : 0;
}

int digest_get_buckets(MDB_txn *txn, MDB_dbi ddbi, const char *name,
                       uint16_t out[DIGEST_BUCKETS][DIGEST_BUCKET_LANES], struct nerr *err)
{
    for (unsigned g = 0; g < DIGEST_GROUPS; g++) {
        int rc = group_get(txn, ddbi, name, g, &out[g * GROUP_BUCKETS][0], err);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- changes pending in one write transaction ---- */

struct digest_pending {
    int kept; /* the partition has a record */
    struct digest d;
    uint16_t delta[DIGEST_BUCKETS][DIGEST_BUCKET_LANES]; /* what to add to each bucket */
    unsigned char dirty[DIGEST_GROUPS];                  /* groups with a delta */
};

void digest_pending_discard(struct digest_pending **pd)
{
    free(*pd);
    *pd = NULL;
}

int digest_pending_add(struct digest_pending **pd, MDB_txn *txn, MDB_dbi ddbi, const char *name,
                       const void *key, size_t klen, const void *item, size_t ilen, int sign,
                       struct nerr *err)
{
    struct digest_pending *p = *pd;
    int rc;
    if (!p) {
        /* Reads only: item may point into a page of txn (digest.h). */
        if (!(p = calloc(1, sizeof *p)))
            return nerr_set(err, NERR_NOMEM, "out of memory");
        struct nerr e = {0};
        rc = digest_get(txn, ddbi, name, &p->d, &e);
        if (rc && rc != NERR_NOTFOUND) {
            free(p);
            return nerr_set(err, rc, "%s", e.msg);
        }
        p->kept = rc == 0;
        *pd = p;
    }
    if (!p->kept)
        return 0;
    uint16_t h[DIGEST_LANES];
    if ((rc = digest_elem(key, klen, item, ilen, h, err))) {
        digest_pending_discard(pd);
        return rc;
    }
    digest_add(&p->d, h, klen + ilen, sign);
    unsigned b = digest_bucket(key, klen);
    p->dirty[b / GROUP_BUCKETS] = 1;
    uint16_t *dl = p->delta[b];
    for (size_t i = 0; i < DIGEST_BUCKET_LANES; i++)
        dl[i] = (uint16_t)(sign > 0 ? dl[i] + h[i] : dl[i] - h[i]);
    return 0;
}

int digest_flush(struct digest_pending **pd, MDB_txn *txn, MDB_dbi ddbi, const char *name,
                 struct nerr *err)
{
    struct digest_pending *p = *pd;
    if (!p)
        return 0;
    int rc = 0;
    for (unsigned g = 0; p->kept && !rc && g < DIGEST_GROUPS; g++) {
        if (!p->dirty[g])
            continue;
        uint16_t cur[GROUP_BUCKETS][DIGEST_BUCKET_LANES];
        if ((rc = group_get(txn, ddbi, name, g, &cur[0][0], err)))
            break;
        for (unsigned j = 0; j < GROUP_BUCKETS; j++)
            for (size_t i = 0; i < DIGEST_BUCKET_LANES; i++)
                cur[j][i] = (uint16_t)(cur[j][i] + p->delta[g * GROUP_BUCKETS + j][i]);
        rc = group_put(txn, ddbi, name, g, &cur[0][0], err);
    }
    if (p->kept && !rc)
        rc = rec_put(txn, ddbi, name, &p->d, err);
    digest_pending_discard(pd);
    return rc;
}

int digest_update(MDB_txn *txn, MDB_dbi ddbi, const char *name, const void *key, size_t klen,
                  const void *old, size_t oldlen, const void *new, size_t newlen, struct nerr *err)
{
    if (old && new && oldlen == newlen && !memcmp(old, new, oldlen))
        return 0;
    struct digest_pending *pd = NULL;
    int rc = 0;
    if (old)
        rc = digest_pending_add(&pd, txn, ddbi, name, key, klen, old, oldlen, -1, err);
    if (!rc && new)
        rc = digest_pending_add(&pd, txn, ddbi, name, key, klen, new, newlen, 1, err);
    /* A failed add has discarded pd already. */
    return rc ? rc : digest_flush(&pd, txn, ddbi, name, err);
}

/* ---- scrub markers ---- */

#define MARK_MAGIC "N9SM"
#define MARK_HEAD (4 + 4 + 8 + 8 + 8 + 1 + 1 + 64)
/* Version 2 holds DIGEST_BUCKET_LANES lanes per bucket; version 1 (before
 * 2026-12-06) held 32, whose first DIGEST_BUCKET_LANES are the same values
 * (a bucket's lanes are the first lanes of h(x)): both are read. */
#define MARK_V1_LANES 32
#define MARK_BYTES_V(lanes) (MARK_HEAD + DIGEST_RECORD_BYTES + DIGEST_BUCKETS * 2 * (lanes))
#define MARK_BYTES MARK_BYTES_V(DIGEST_BUCKET_LANES)

/* name \1 u64be(lsn); lsn 0 = the prefix of every marker of name. */
static size_t mark_key(const char *name, uint64_t lsn, unsigned char *buf, size_t cap)
{
    unsigned char be[8];
    for (int i = 0; i < 8; i++)
        be[i] = (unsigned char)(lsn >> (56 - 8 * i));
    return sub_key(name, KIND_MARK, be, 8, buf, cap);
}

/* The lanes per bucket of a marker record of this size and version; 0 when
 * it is neither version. */
static size_t mark_lanes(const MDB_val *v)
{
    const unsigned char *b = v->mv_data;
    if (v->mv_size < MARK_HEAD || memcmp(b, MARK_MAGIC, 4))
        return 0;
    uint32_t ver = le_get32(b + 4);
    if (ver == 2 && v->mv_size == MARK_BYTES_V(DIGEST_BUCKET_LANES))
        return DIGEST_BUCKET_LANES;
    if (ver == 1 && v->mv_size == MARK_BYTES_V(MARK_V1_LANES))
        return MARK_V1_LANES;
    return 0;
}

static int mark_decode(const char *name, const MDB_val *v, struct digest_mark *m, struct nerr *err)
{
    const unsigned char *b = v->mv_data;
    size_t lanes = mark_lanes(v);
    if (!lanes || b[33] > 64)
        return nerr_set(err, NERR_CORRUPT, "partition %s: a scrub marker record is damaged", name);
    m->lsn = le_get64(b + 8);
    m->proposed_ms = (long long)le_get64(b + 16);
    m->applied_ms = (long long)le_get64(b + 24);
    m->has_digest = b[32];
    memcpy(m->id, b + 34, b[33]);
    m->id[b[33]] = 0;
    int rc = rec_decode(name, b + MARK_HEAD, DIGEST_RECORD_BYTES, &m->d, err);
    if (rc)
        return rc;
    const unsigned char *bb = b + MARK_HEAD + DIGEST_RECORD_BYTES;
    for (size_t i = 0; i < DIGEST_BUCKETS; i++)
        le_get16_array(m->bucket[i], bb + 2 * i * lanes, DIGEST_BUCKET_LANES);
    return 0;
}

int digest_mark_put(MDB_txn *txn, MDB_dbi ddbi, const char *name, uint64_t lsn, const char *id,
                    long long proposed_ms, long long applied_ms, struct nerr *err)
{
    size_t idlen = strlen(id);
    if (idlen > 64)
        return nerr_set(err, NERR_INVALID, "scrub id too long");
    struct digest d;
    struct nerr e = {0};
    int rc = digest_get(txn, ddbi, name, &d, &e), has = rc == 0;
    if (rc && rc != NERR_NOTFOUND)
        return nerr_set(err, rc, "%s", e.msg);
    if (!has)
        memset(&d, 0, sizeof d);
    unsigned char *b = calloc(1, MARK_BYTES);
    if (!b)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    memcpy(b, MARK_MAGIC, 4);
    le_put32(b + 4, 2);
    le_put64(b + 8, lsn);
    le_put64(b + 16, (uint64_t)proposed_ms);
    le_put64(b + 24, (uint64_t)applied_ms);
    b[32] = (unsigned char)has;
    b[33] = (unsigned char)idlen;
    memcpy(b + 34, id, idlen);
    rec_encode(&d, b + MARK_HEAD);
    if (has) {
        uint16_t(*bl)[DIGEST_BUCKET_LANES] = malloc(DIGEST_BUCKETS * sizeof *bl);
        if (!bl || (rc = digest_get_buckets(txn, ddbi, name, bl, &e))) {
            free(b);
            free(bl);
            return bl ? nerr_set(err, rc, "%s", e.msg) : nerr_set(err, NERR_NOMEM, "out of memory");
        }
        le_put16_array(b + MARK_HEAD + DIGEST_RECORD_BYTES, &bl[0][0],
                       DIGEST_BUCKETS * DIGEST_BUCKET_LANES);
        free(bl);
    }
    unsigned char kb[256];
    MDB_val k = {mark_key(name, lsn, kb, sizeof kb), kb}, v = {MARK_BYTES, b};
    rc = k.mv_size ? mdb_put(txn, ddbi, &k, &v, 0) : EINVAL;
    free(b);
    if (rc)
        return state_mdb_err(err, rc, "scrub marker put");
    /* Keep the newest DIGEST_MARKS_KEPT: count this partition's markers,
     * then delete from the oldest. */
    unsigned char pk[256];
    size_t pn = mark_key(name, 0, pk, sizeof pk) - 8;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, ddbi, &cur)))
        return state_mdb_err(err, rc, "scrub marker cursor");
    size_t count = 0;
    MDB_val ck = {pn + 8, pk}, cv;
    for (rc = mdb_cursor_get(cur, &ck, &cv, MDB_SET_RANGE);
         !rc && ck.mv_size == pn + 8 && !memcmp(ck.mv_data, pk, pn);
         rc = mdb_cursor_get(cur, &ck, &cv, MDB_NEXT))
        count++;
    /* Delete from the oldest, seeking again after each delete. */
    for (rc = 0; !rc && count > DIGEST_MARKS_KEPT; count--) {
        ck = (MDB_val){pn + 8, pk};
        rc = mdb_cursor_get(cur, &ck, &cv, MDB_SET_RANGE);
        if (!rc && ck.mv_size == pn + 8 && !memcmp(ck.mv_data, pk, pn))
            rc = mdb_cursor_del(cur, 0);
        else
            break;
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND)
        return state_mdb_err(err, rc, "scrub marker trim");
    return 0;
}

int digest_mark_get(MDB_txn *txn, MDB_dbi ddbi, const char *name, const char *id,
                    struct digest_mark *out, struct nerr *err)
{
    unsigned char pk[256];
    size_t kn = mark_key(name, 0, pk, sizeof pk);
    if (!kn)
        return nerr_set(err, NERR_INVALID, "partition name too long");
    size_t pn = kn - 8;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, ddbi, &cur);
    if (rc)
        return state_mdb_err(err, rc, "scrub marker cursor");
    MDB_val ck = {kn, pk}, cv;
    for (rc = mdb_cursor_get(cur, &ck, &cv, MDB_SET_RANGE);
         !rc && ck.mv_size == kn && !memcmp(ck.mv_data, pk, pn);
         rc = mdb_cursor_get(cur, &ck, &cv, MDB_NEXT)) {
        const unsigned char *b = cv.mv_data;
        size_t idlen = strlen(id);
        if (mark_lanes(&cv) && b[33] == idlen && !memcmp(b + 34, id, idlen)) {
            rc = mark_decode(name, &cv, out, err);
            mdb_cursor_close(cur);
            return rc;
        }
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND)
        return state_mdb_err(err, rc, "scrub marker scan");
    return nerr_set(err, NERR_NOTFOUND, "partition %s: no scrub marker %s here", name, id);
}

int digest_drop(MDB_txn *txn, MDB_dbi ddbi, const char *name, struct nerr *err)
{
    /* Format 2's halves and groups, and format 1's record and buckets. */
    MDB_val k = {strlen(name), (void *)name};
    int rc = mdb_del(txn, ddbi, &k, NULL);
    if (rc && rc != MDB_NOTFOUND)
        return state_mdb_err(err, rc, "digest delete");
    static const struct {
        unsigned char kind;
        unsigned n;
    } keys[] = {{KIND_HALF, 2}, {KIND_GROUP, DIGEST_GROUPS}, {KIND_V1_BUCKET, DIGEST_BUCKETS}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        for (unsigned j = 0; j < keys[i].n; j++) {
            unsigned char kb[256];
            MDB_val bk = {one_byte_key(name, keys[i].kind, j, kb, sizeof kb), kb};
            if (!bk.mv_size)
                return nerr_set(err, NERR_INVALID, "partition name too long");
            rc = mdb_del(txn, ddbi, &bk, NULL);
            if (rc && rc != MDB_NOTFOUND)
                return state_mdb_err(err, rc, "digest delete");
        }
    return 0;
}

/* digest_drop and the markers too (digest_rebuild keeps the markers: they
 * record what the replica held at their index). */
int digest_drop_all(MDB_txn *txn, MDB_dbi ddbi, const char *name, struct nerr *err)
{
    int rc = digest_drop(txn, ddbi, name, err);
    if (rc)
        return rc;
    unsigned char pk[256];
    size_t kn = mark_key(name, 0, pk, sizeof pk);
    if (!kn)
        return nerr_set(err, NERR_INVALID, "partition name too long");
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, ddbi, &cur)))
        return state_mdb_err(err, rc, "scrub marker cursor");
    for (;;) {
        MDB_val ck = {kn, pk}, cv;
        rc = mdb_cursor_get(cur, &ck, &cv, MDB_SET_RANGE);
        if (rc || ck.mv_size != kn || memcmp(ck.mv_data, pk, kn - 8) ||
            (rc = mdb_cursor_del(cur, 0)))
            break;
    }
    mdb_cursor_close(cur);
    return rc && rc != MDB_NOTFOUND ? state_mdb_err(err, rc, "scrub marker delete") : 0;
}

int digest_rebuild(MDB_txn *txn, MDB_dbi ddbi, const char *name, MDB_dbi dbi, struct nerr *err)
{
    int rc = digest_drop(txn, ddbi, name, err);
    if (rc)
        return rc;
    uint16_t(*buckets)[DIGEST_BUCKET_LANES] = calloc(DIGEST_BUCKETS, sizeof *buckets);
    unsigned char used[DIGEST_BUCKETS] = {0};
    if (!buckets)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    struct digest d;
    memset(&d, 0, sizeof d);
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, dbi, &cur))) {
        free(buckets);
        return state_mdb_err(err, rc, "digest rebuild cursor");
    }
    MDB_val k, v;
    uint16_t h[DIGEST_LANES];
    for (int op = MDB_FIRST; !(rc = mdb_cursor_get(cur, &k, &v, op)); op = MDB_NEXT) {
        if ((rc = digest_elem(k.mv_data, k.mv_size, v.mv_data, v.mv_size, h, err))) {
            mdb_cursor_close(cur);
            free(buckets);
            return rc;
        }
        digest_add(&d, h, k.mv_size + v.mv_size, 1);
        unsigned b = digest_bucket(k.mv_data, k.mv_size);
        used[b] = 1;
        for (size_t i = 0; i < DIGEST_BUCKET_LANES; i++)
            buckets[b][i] = (uint16_t)(buckets[b][i] + h[i]);
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND) {
        free(buckets);
        return state_mdb_err(err, rc, "digest rebuild scan");
    }
    for (unsigned g = 0; g < DIGEST_GROUPS; g++) {
        int any = 0;
        for (unsigned j = 0; j < GROUP_BUCKETS; j++)
            any |= used[g * GROUP_BUCKETS + j];
        if (any && (rc = group_put(txn, ddbi, name, g, &buckets[g * GROUP_BUCKETS][0], err))) {
            free(buckets);
            return rc;
        }
    }
    free(buckets);
    return rec_put(txn, ddbi, name, &d, err);
}

/* ---- listing a bucket ---- */

int digest_bucket_scan(MDB_txn *txn, MDB_dbi dbi, const struct digest_scan *s, digest_scan_fn fn,
                       void *arg, struct digest_scan_end *end, struct nerr *err)
{
    memset(end, 0, sizeof *end);
    if (s->bucket >= DIGEST_BUCKETS || s->sub < -1 || s->sub >= DIGEST_BUCKETS || !s->limit)
        return nerr_set(err, NERR_INVALID, "digest scan: bucket, sub or limit out of range");
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc)
        return state_mdb_err(err, rc, "digest scan cursor");
    MDB_val k = {s->after_len, (void *)s->after}, v;
    int op = MDB_FIRST;
    if (s->after) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        /* Strictly after: skip the cursor key itself when it still exists. */
        if (!rc && k.mv_size == s->after_len && !memcmp(k.mv_data, s->after, s->after_len))
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        op = -1;
    }
    size_t seen = 0;
    for (;;) {
        if (op != -1)
            rc = mdb_cursor_get(cur, &k, &v, (MDB_cursor_op)op);
        op = MDB_NEXT;
        if (rc)
            break;
        if (end->items == s->limit || (s->max_examined && seen == s->max_examined)) {
            end->more = 1; /* k is the first key not visited */
            break;
        }
        seen++;
        uint32_t crc = crc32c(0, k.mv_data, k.mv_size);
        if ((crc >> 24) != s->bucket || (s->sub >= 0 && ((crc >> 16) & 0xff) != (unsigned)s->sub))
            goto visited;
        unsigned char h[DIGEST_HASH_BYTES];
        if ((rc = digest_item_hash(k.mv_data, k.mv_size, v.mv_data, v.mv_size, h, err)) ||
            (rc = fn(arg, k.mv_data, k.mv_size, v.mv_data, v.mv_size, h, err))) {
            mdb_cursor_close(cur);
            return rc;
        }
        end->items++;
    visited:
        /* The resume point: the last key visited (a copy: LMDB's pages
         * belong to the transaction). */
        if (k.mv_size > sizeof end->last) {
            mdb_cursor_close(cur);
            return nerr_set(err, NERR_CORRUPT, "digest scan: a key of %zu bytes", k.mv_size);
        }
        memcpy(end->last, k.mv_data, k.mv_size);
        end->last_len = k.mv_size;
    }
    end->examined = seen;
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND)
        return state_mdb_err(err, rc, "digest scan");
    return 0;
}

struct sub_acc {
    unsigned char (*x)[DIGEST_HASH_BYTES];
    uint32_t *count;
};

static int sub_acc_fn(void *arg, const void *key, size_t klen, const void *item, size_t ilen,
                      const unsigned char hash[DIGEST_HASH_BYTES], struct nerr *err)
{
    (void)item, (void)ilen, (void)err;
    struct sub_acc *a = arg;
    unsigned sb = digest_sub_bucket(key, klen);
    for (size_t i = 0; i < DIGEST_HASH_BYTES; i++)
        a->x[sb][i] ^= hash[i];
    a->count[sb]++;
    return 0;
}

int digest_sub_digests(MDB_txn *txn, MDB_dbi dbi, unsigned bucket,
                       unsigned char out[DIGEST_BUCKETS][DIGEST_HASH_BYTES],
                       uint32_t count[DIGEST_BUCKETS], size_t *examined, struct nerr *err)
{
    memset(out, 0, DIGEST_BUCKETS * DIGEST_HASH_BYTES);
    memset(count, 0, DIGEST_BUCKETS * sizeof *count);
    struct sub_acc a = {out, count};
    struct digest_scan s = {.bucket = bucket, .sub = -1, .limit = SIZE_MAX};
    struct digest_scan_end end;
    int rc = digest_bucket_scan(txn, dbi, &s, sub_acc_fn, &a, &end, err);
    if (examined)
        *examined = end.examined;
    return rc;
}
