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
#define REC_VERSION 1

/* The algorithms, fetched once: OpenSSL 3 looks an implementation up on
 * every init otherwise, which cost more than the hashing itself. Never
 * freed (one each per process). */
static EVP_MD *g_sha256;
static EVP_CIPHER *g_chacha;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void fetch_algorithms(void)
{
    g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    g_chacha = EVP_CIPHER_fetch(NULL, "ChaCha20", NULL);
}

int digest_elem(const void *key, size_t klen, const void *item, size_t ilen,
                uint16_t lanes[DIGEST_LANES], struct nerr *err)
{
    unsigned char seed[SHA256_DIGEST_LENGTH], len4[4];
    le_put32(len4, (uint32_t)klen);
    pthread_once(&g_once, fetch_algorithms);
    if (!g_sha256 || !g_chacha)
        return nerr_set(err, NERR_INTERNAL, "digest: libcrypto has no SHA-256 or ChaCha20");
    EVP_MD_CTX *mx = EVP_MD_CTX_new();
    int oom = !mx;
    int hashed = mx && EVP_DigestInit_ex(mx, g_sha256, NULL) == 1 &&
                 EVP_DigestUpdate(mx, "N9DG1", 5) == 1 && EVP_DigestUpdate(mx, len4, 4) == 1 &&
                 EVP_DigestUpdate(mx, key, klen) == 1 && EVP_DigestUpdate(mx, item, ilen) == 1 &&
                 EVP_DigestFinal_ex(mx, seed, NULL) == 1;
    EVP_MD_CTX_free(mx);
    if (!hashed)
        return nerr_set(err, oom ? NERR_NOMEM : NERR_INTERNAL, "digest: SHA-256 failed");
    static const unsigned char zero[2 * DIGEST_LANES]; /* encrypting zeros = the keystream */
    static const unsigned char iv[16];                 /* counter 0, nonce 0 */
    unsigned char out[2 * DIGEST_LANES];
    EVP_CIPHER_CTX *cx = EVP_CIPHER_CTX_new();
    oom = !cx;
    int n = 0, ok = cx && EVP_EncryptInit_ex(cx, g_chacha, NULL, seed, iv) == 1 &&
                    EVP_EncryptUpdate(cx, out, &n, zero, (int)sizeof zero) == 1 &&
                    n == (int)sizeof out;
    EVP_CIPHER_CTX_free(cx);
    if (!ok)
        return nerr_set(err, oom ? NERR_NOMEM : NERR_INTERNAL, "digest: ChaCha20 failed");
    for (size_t i = 0; i < DIGEST_LANES; i++)
        lanes[i] = (uint16_t)(out[2 * i] | out[2 * i + 1] << 8);
    return 0;
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

static void rec_encode(const struct digest *d, unsigned char *b)
{
    memcpy(b, REC_MAGIC, 4);
    le_put32(b + 4, REC_VERSION);
    le_put64(b + 8, d->items);
    le_put64(b + 16, d->bytes);
    for (size_t i = 0; i < DIGEST_LANES; i++)
        le_put16(b + 24 + 2 * i, d->lane[i]);
}

static int rec_decode(const char *name, const MDB_val *v, struct digest *d, struct nerr *err)
{
    const unsigned char *b = v->mv_data;
    if (v->mv_size != DIGEST_RECORD_BYTES || memcmp(b, REC_MAGIC, 4) ||
        le_get32(b + 4) != REC_VERSION)
        return nerr_set(err, NERR_CORRUPT, "partition %s: its digest record is damaged", name);
    d->items = le_get64(b + 8);
    d->bytes = le_get64(b + 16);
    for (size_t i = 0; i < DIGEST_LANES; i++)
        d->lane[i] = le_get16(b + 24 + 2 * i);
    return 0;
}

/* A key under partition `name` in `_digest`: name, a kind byte (0 a
 * bucket, 1 a marker), then suffix. 0 when it does not fit cap. */
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

/* The key of bucket b of name: name, NUL, b. */
static size_t bucket_key(const char *name, unsigned b, unsigned char *buf, size_t cap)
{
    unsigned char one = (unsigned char)b;
    return sub_key(name, 0, &one, 1, buf, cap);
}

int digest_get(MDB_txn *txn, MDB_dbi ddbi, const char *name, struct digest *d, struct nerr *err)
{
    MDB_val k = {strlen(name), (void *)name}, v;
    int rc = mdb_get(txn, ddbi, &k, &v);
    if (rc == MDB_NOTFOUND)
        return nerr_set(err, NERR_NOTFOUND, "partition %s has no digest", name);
    if (rc)
        return state_mdb_err(err, rc, "digest get");
    return rec_decode(name, &v, d, err);
}

int digest_get_bucket(MDB_txn *txn, MDB_dbi ddbi, const char *name, unsigned b,
                      uint16_t lanes[DIGEST_BUCKET_LANES], struct nerr *err)
{
    unsigned char kb[256];
    MDB_val k = {bucket_key(name, b, kb, sizeof kb), kb}, v;
    if (!k.mv_size)
        return nerr_set(err, NERR_INVALID, "partition name too long");
    int rc = mdb_get(txn, ddbi, &k, &v);
    if (rc == MDB_NOTFOUND)
        return nerr_set(err, NERR_NOTFOUND, "bucket %u of %s is empty", b, name);
    if (rc)
        return state_mdb_err(err, rc, "digest bucket get");
    if (v.mv_size != 2 * DIGEST_BUCKET_LANES)
        return nerr_set(err, NERR_CORRUPT, "partition %s: bucket %u of its digest is damaged", name,
                        b);
    for (size_t i = 0; i < DIGEST_BUCKET_LANES; i++)
        lanes[i] = le_get16((const unsigned char *)v.mv_data + 2 * i);
    return 0;
}

/* Adds (sign 1) or subtracts the bucket lanes of h to bucket b. */
static int bucket_add(MDB_txn *txn, MDB_dbi ddbi, const char *name, unsigned b, const uint16_t *h,
                      int sign, struct nerr *err)
{
    uint16_t lanes[DIGEST_BUCKET_LANES];
    struct nerr e = {0};
    int rc = digest_get_bucket(txn, ddbi, name, b, lanes, &e);
    if (rc == NERR_NOTFOUND)
        memset(lanes, 0, sizeof lanes);
    else if (rc)
        return nerr_set(err, rc, "%s", e.msg);
    for (size_t i = 0; i < DIGEST_BUCKET_LANES; i++)
        lanes[i] = (uint16_t)(sign > 0 ? lanes[i] + h[i] : lanes[i] - h[i]);
    unsigned char kb[256], vb[2 * DIGEST_BUCKET_LANES];
    for (size_t i = 0; i < DIGEST_BUCKET_LANES; i++)
        le_put16(vb + 2 * i, lanes[i]);
    MDB_val k = {bucket_key(name, b, kb, sizeof kb), kb}, v = {sizeof vb, vb};
    if ((rc = mdb_put(txn, ddbi, &k, &v, 0)))
        return state_mdb_err(err, rc, "digest bucket put");
    return 0;
}

static int rec_put(MDB_txn *txn, MDB_dbi ddbi, const char *name, const struct digest *d,
                   struct nerr *err)
{
    unsigned char b[DIGEST_RECORD_BYTES];
    rec_encode(d, b);
    MDB_val k = {strlen(name), (void *)name}, v = {sizeof b, b};
    int rc = mdb_put(txn, ddbi, &k, &v, 0);
    return rc ? state_mdb_err(err, rc, "digest put") : 0;
}

int digest_update(MDB_txn *txn, MDB_dbi ddbi, const char *name, const void *key, size_t klen,
                  const void *old, size_t oldlen, const void *new, size_t newlen, struct nerr *err)
{
    struct digest d;
    struct nerr e = {0};
    int rc = digest_get(txn, ddbi, name, &d, &e);
    if (rc == NERR_NOTFOUND)
        return 0; /* no digest to keep: digest_rebuild makes one */
    if (rc)
        return nerr_set(err, rc, "%s", e.msg);
    if (old && new &&oldlen == newlen && !memcmp(old, new, oldlen))
        return 0;
    unsigned b = digest_bucket(key, klen);
    uint16_t h[DIGEST_LANES];
    if (old) {
        if ((rc = digest_elem(key, klen, old, oldlen, h, err)))
            return rc;
        digest_add(&d, h, klen + oldlen, -1);
        if ((rc = bucket_add(txn, ddbi, name, b, h, -1, err)))
            return rc;
    }
    if (new) {
        if ((rc = digest_elem(key, klen, new, newlen, h, err)))
            return rc;
        digest_add(&d, h, klen + newlen, 1);
        if ((rc = bucket_add(txn, ddbi, name, b, h, 1, err)))
            return rc;
    }
    return rec_put(txn, ddbi, name, &d, err);
}

/* ---- scrub markers ---- */

#define MARK_MAGIC "N9SM"
#define MARK_HEAD (4 + 4 + 8 + 8 + 8 + 1 + 1 + 64)
#define MARK_BYTES (MARK_HEAD + DIGEST_RECORD_BYTES + DIGEST_BUCKETS * 2 * DIGEST_BUCKET_LANES)

/* name \1 u64be(lsn); lsn 0 = the prefix of every marker of name. */
static size_t mark_key(const char *name, uint64_t lsn, unsigned char *buf, size_t cap)
{
    unsigned char be[8];
    for (int i = 0; i < 8; i++)
        be[i] = (unsigned char)(lsn >> (56 - 8 * i));
    return sub_key(name, 1, be, 8, buf, cap);
}

static int mark_decode(const char *name, const MDB_val *v, struct digest_mark *m, struct nerr *err)
{
    const unsigned char *b = v->mv_data;
    if (v->mv_size != MARK_BYTES || memcmp(b, MARK_MAGIC, 4) || le_get32(b + 4) != 1 || b[33] > 64)
        return nerr_set(err, NERR_CORRUPT, "partition %s: a scrub marker record is damaged", name);
    m->lsn = le_get64(b + 8);
    m->proposed_ms = (long long)le_get64(b + 16);
    m->applied_ms = (long long)le_get64(b + 24);
    m->has_digest = b[32];
    memcpy(m->id, b + 34, b[33]);
    m->id[b[33]] = 0;
    MDB_val dv = {DIGEST_RECORD_BYTES, (void *)(b + MARK_HEAD)};
    int rc = rec_decode(name, &dv, &m->d, err);
    if (rc)
        return rc;
    const unsigned char *bb = b + MARK_HEAD + DIGEST_RECORD_BYTES;
    for (size_t i = 0; i < DIGEST_BUCKETS; i++)
        for (size_t j = 0; j < DIGEST_BUCKET_LANES; j++)
            m->bucket[i][j] = le_get16(bb + 2 * (i * DIGEST_BUCKET_LANES + j));
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
    le_put32(b + 4, 1);
    le_put64(b + 8, lsn);
    le_put64(b + 16, (uint64_t)proposed_ms);
    le_put64(b + 24, (uint64_t)applied_ms);
    b[32] = (unsigned char)has;
    b[33] = (unsigned char)idlen;
    memcpy(b + 34, id, idlen);
    rec_encode(&d, b + MARK_HEAD);
    unsigned char *bb = b + MARK_HEAD + DIGEST_RECORD_BYTES;
    for (unsigned i = 0; has && i < DIGEST_BUCKETS; i++) {
        uint16_t l[DIGEST_BUCKET_LANES];
        rc = digest_get_bucket(txn, ddbi, name, i, l, &e);
        if (rc == NERR_NOTFOUND)
            continue;
        if (rc) {
            free(b);
            return nerr_set(err, rc, "%s", e.msg);
        }
        for (size_t j = 0; j < DIGEST_BUCKET_LANES; j++)
            le_put16(bb + 2 * (i * DIGEST_BUCKET_LANES + j), l[j]);
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
        if (cv.mv_size == MARK_BYTES && b[33] == idlen && !memcmp(b + 34, id, idlen)) {
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
    MDB_val k = {strlen(name), (void *)name};
    int rc = mdb_del(txn, ddbi, &k, NULL);
    if (rc && rc != MDB_NOTFOUND)
        return state_mdb_err(err, rc, "digest delete");
    for (unsigned b = 0; b < DIGEST_BUCKETS; b++) {
        unsigned char kb[256];
        MDB_val bk = {bucket_key(name, b, kb, sizeof kb), kb};
        if (!bk.mv_size)
            return nerr_set(err, NERR_INVALID, "partition name too long");
        rc = mdb_del(txn, ddbi, &bk, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return state_mdb_err(err, rc, "digest bucket delete");
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
    for (unsigned b = 0; b < DIGEST_BUCKETS; b++) {
        if (!used[b])
            continue;
        unsigned char kb[256], vb[2 * DIGEST_BUCKET_LANES];
        for (size_t i = 0; i < DIGEST_BUCKET_LANES; i++)
            le_put16(vb + 2 * i, buckets[b][i]);
        MDB_val bk = {bucket_key(name, b, kb, sizeof kb), kb}, bv = {sizeof vb, vb};
        if ((rc = mdb_put(txn, ddbi, &bk, &bv, 0))) {
            free(buckets);
            return state_mdb_err(err, rc, "digest bucket put");
        }
    }
    free(buckets);
    return rec_put(txn, ddbi, name, &d, err);
}
