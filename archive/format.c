/*
 * format.c — log pieces and snapshots as bytes (archive.h, "Log piece").
 */
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive/archive.h"
#include "lib/crc32c.h"
#include "lib/le.h"

#define HDR_FIXED 56 /* bytes covered by the header CRC */
#define HDR_LEN 60
#define TRAILER_LEN 48

int archive_group_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (!n || n > ARCHIVE_MAX_NAME || name[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* A growing output buffer; ok goes to 0 on the first failed allocation. */
struct obuf {
    unsigned char *b;
    size_t len, cap;
    int ok;
};

static unsigned char *ob_room(struct obuf *o, size_t n)
{
    if (!o->ok)
        return NULL;
    if (o->len + n > o->cap) {
        size_t nc = o->cap ? o->cap : 4096;
        while (nc < o->len + n)
            nc *= 2;
        unsigned char *nb = realloc(o->b, nc);
        if (!nb) {
            o->ok = 0;
            return NULL;
        }
        o->b = nb;
        o->cap = nc;
    }
    unsigned char *p = o->b + o->len;
    o->len += n;
    return p;
}

static void ob_put(struct obuf *o, const void *src, size_t n)
{
    unsigned char *p = ob_room(o, n);
    if (p && n)
        memcpy(p, src, n);
}

static void header(struct obuf *o, const char *magic, const char *group, uint64_t first,
                   uint64_t first_term, uint64_t last, uint64_t last_term, uint64_t count)
{
    unsigned char *h = ob_room(o, HDR_LEN);
    if (!h)
        return;
    memset(h, 0, HDR_LEN);
    memcpy(h, magic, 4);
    le_put32(h + 4, 1);
    le_put64(h + 8, first);
    le_put64(h + 16, first_term);
    le_put64(h + 24, last);
    le_put64(h + 32, last_term);
    le_put64(h + 40, count);
    le_put16(h + 48, (uint16_t)strlen(group));
    le_put32(h + HDR_FIXED, crc32c(0, h, HDR_FIXED));
    ob_put(o, group, strlen(group));
}

static int trailer(struct obuf *o, const char *magic, uint64_t count, unsigned char **out,
                   size_t *len, struct nerr *err)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (o->ok && !EVP_Digest(o->b, o->len, md, &mdlen, EVP_sha256(), NULL))
        o->ok = 0;
    unsigned char *t = ob_room(o, TRAILER_LEN);
    if (!t || !o->ok) {
        free(o->b);
        return nerr_set(err, NERR_NOMEM, "out of memory encoding an archive object");
    }
    memcpy(t, magic, 4);
    le_put32(t + 4, 0);
    le_put64(t + 8, count);
    memcpy(t + 16, md, 32);
    if (o->len > ARCHIVE_MAX_OBJECT) {
        free(o->b);
        return nerr_set(err, NERR_LIMIT, "archive object of %zu bytes is over the %u limit", o->len,
                        ARCHIVE_MAX_OBJECT);
    }
    *out = o->b;
    *len = o->len;
    return 0;
}

int archive_piece_encode(const char *group, const struct archive_entry *e, size_t n,
                         unsigned char **out, size_t *len, struct nerr *err)
{
    if (!archive_group_ok(group))
        return nerr_set(err, NERR_INVALID, "'%s' is not a group name", group ? group : "");
    if (!n)
        return nerr_set(err, NERR_INVALID, "a log piece holds at least one entry");
    for (size_t i = 1; i < n; i++) {
        if (e[i].index != e[i - 1].index + 1)
            return nerr_set(err, NERR_INVALID, "entries %" PRIu64 " and %" PRIu64 " leave a gap",
                            e[i - 1].index, e[i].index);
        if (e[i].term < e[i - 1].term)
            return nerr_set(err, NERR_INVALID, "term decreases at entry %" PRIu64, e[i].index);
    }
    if (!e[0].index)
        return nerr_set(err, NERR_INVALID, "log indexes start at 1");
    struct obuf o = {.ok = 1};
    header(&o, "N9LP", group, e[0].index, e[0].term, e[n - 1].index, e[n - 1].term, n);
    for (size_t i = 0; i < n && o.ok; i++) {
        unsigned char *h = ob_room(&o, 24);
        if (!h)
            break;
        le_put64(h, e[i].index);
        le_put64(h + 8, e[i].term);
        le_put32(h + 16, e[i].len);
        uint32_t c = crc32c(crc32c(0, h, 20), e[i].data, e[i].len);
        le_put32(h + 20, c);
        ob_put(&o, e[i].data, e[i].len);
        if (o.len > ARCHIVE_MAX_OBJECT) {
            free(o.b);
            return nerr_set(err, NERR_LIMIT, "log piece over %u bytes", ARCHIVE_MAX_OBJECT);
        }
    }
    return trailer(&o, "N9LE", n, out, len, err);
}

int archive_snap_encode(const char *group, uint64_t index, uint64_t term,
                        const struct archive_item *it, size_t n, unsigned char **out, size_t *len,
                        struct nerr *err)
{
    if (!archive_group_ok(group))
        return nerr_set(err, NERR_INVALID, "'%s' is not a group name", group ? group : "");
    for (size_t i = 1; i < n; i++) {
        size_t m = it[i].klen < it[i - 1].klen ? it[i].klen : it[i - 1].klen;
        int c = memcmp(it[i - 1].key, it[i].key, m);
        if (c > 0 || (c == 0 && it[i - 1].klen >= it[i].klen))
            return nerr_set(err, NERR_INVALID, "snapshot items out of key order at item %zu", i);
    }
    struct obuf o = {.ok = 1};
    header(&o, "N9SN", group, index, term, index, term, n);
    for (size_t i = 0; i < n && o.ok; i++) {
        unsigned char *h = ob_room(&o, 12);
        if (!h)
            break;
        le_put32(h, it[i].klen);
        le_put32(h + 4, it[i].vlen);
        uint32_t c = crc32c(crc32c(crc32c(0, h, 8), it[i].key, it[i].klen), it[i].val, it[i].vlen);
        le_put32(h + 8, c);
        ob_put(&o, it[i].key, it[i].klen);
        ob_put(&o, it[i].val, it[i].vlen);
        if (o.len > ARCHIVE_MAX_OBJECT) {
            free(o.b);
            return nerr_set(err, NERR_LIMIT, "snapshot over %u bytes", ARCHIVE_MAX_OBJECT);
        }
    }
    return trailer(&o, "N9SE", n, out, len, err);
}

int archive_object_parse(const unsigned char *buf, size_t len, archive_entry_fn on_entry,
                         archive_item_fn on_item, void *arg, struct archive_object_info *info,
                         struct nerr *err)
{
    memset(info, 0, sizeof *info);
    if (len < HDR_LEN + TRAILER_LEN)
        return nerr_set(err, NERR_CORRUPT, "%zu bytes: shorter than a header and a trailer", len);
    int log;
    if (!memcmp(buf, "N9LP", 4))
        log = 1;
    else if (!memcmp(buf, "N9SN", 4))
        log = 0;
    else
        return nerr_set(err, NERR_CORRUPT, "offset 0: not an archive object (bad magic)");
    if (le_get32(buf + 4) != 1)
        return nerr_set(err, NERR_CORRUPT, "offset 4: version %u, this build reads 1",
                        le_get32(buf + 4));
    if (le_get32(buf + HDR_FIXED) != crc32c(0, buf, HDR_FIXED))
        return nerr_set(err, NERR_CORRUPT, "offset 0: header checksum mismatch");
    info->kind = log ? ARCHIVE_LOG : ARCHIVE_SNAPSHOT;
    info->first = le_get64(buf + 8);
    info->first_term = le_get64(buf + 16);
    info->last = le_get64(buf + 24);
    info->last_term = le_get64(buf + 32);
    info->count = le_get64(buf + 40);
    size_t glen = le_get16(buf + 48);
    if (!glen || glen > ARCHIVE_MAX_NAME || HDR_LEN + glen + TRAILER_LEN > len)
        return nerr_set(err, NERR_CORRUPT, "offset 48: group name length %zu", glen);
    memcpy(info->group, buf + HDR_LEN, glen);
    info->group[glen] = 0;
    if (!archive_group_ok(info->group))
        return nerr_set(err, NERR_CORRUPT, "offset %d: '%s' is not a group name", HDR_LEN,
                        info->group);
    if (log && (!info->first || info->last < info->first ||
                info->count != info->last - info->first + 1 || info->last_term < info->first_term))
        return nerr_set(err, NERR_CORRUPT,
                        "offset 8: header range %" PRIu64 "..%" PRIu64 " (terms %" PRIu64
                        "..%" PRIu64 ") does not hold %" PRIu64 " consecutive entries",
                        info->first, info->last, info->first_term, info->last_term, info->count);
    if (!log && (info->first != info->last || info->first_term != info->last_term))
        return nerr_set(err, NERR_CORRUPT, "offset 8: a snapshot header names one index");
    size_t body_end = len - TRAILER_LEN;
    const unsigned char *t = buf + body_end;
    if (memcmp(t, log ? "N9LE" : "N9SE", 4) || le_get32(t + 4))
        return nerr_set(err, NERR_CORRUPT, "offset %zu: no trailer (truncated or appended to)",
                        body_end);
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (!EVP_Digest(buf, body_end, md, &mdlen, EVP_sha256(), NULL))
        return nerr_set(err, NERR_NOMEM, "SHA-256 failed");
    if (memcmp(md, t + 16, 32))
        return nerr_set(err, NERR_CORRUPT,
                        "offset %zu: the trailer's SHA-256 does not match the bytes",
                        body_end + 16);
    if (le_get64(t + 8) != info->count)
        return nerr_set(err, NERR_CORRUPT, "offset %zu: trailer count %" PRIu64 ", header %" PRIu64,
                        body_end + 8, le_get64(t + 8), info->count);
    if (!EVP_Digest(buf, len, info->sha256, &mdlen, EVP_sha256(), NULL))
        return nerr_set(err, NERR_NOMEM, "SHA-256 failed");
    size_t off = HDR_LEN + glen;
    uint64_t prev_term = info->first_term;
    for (uint64_t i = 0; i < info->count; i++) {
        if (log) {
            if (body_end - off < 24)
                return nerr_set(err, NERR_CORRUPT, "offset %zu: entry %" PRIu64 " cut short", off,
                                info->first + i);
            const unsigned char *h = buf + off;
            struct archive_entry e = {le_get64(h), le_get64(h + 8), le_get32(h + 16), h + 24};
            if (e.len > body_end - off - 24)
                return nerr_set(err, NERR_CORRUPT,
                                "offset %zu: entry %" PRIu64 " of %u bytes runs past the end", off,
                                e.index, e.len);
            if (crc32c(crc32c(0, h, 20), e.data, e.len) != le_get32(h + 20))
                return nerr_set(err, NERR_CORRUPT,
                                "offset %zu: entry %" PRIu64 ": checksum mismatch", off, e.index);
            if (e.index != info->first + i)
                return nerr_set(err, NERR_CORRUPT,
                                "offset %zu: entry %" PRIu64 " where %" PRIu64 " belongs", off,
                                e.index, info->first + i);
            if (e.term < prev_term || e.term > info->last_term)
                return nerr_set(err, NERR_CORRUPT,
                                "offset %zu: entry %" PRIu64 " has term %" PRIu64 " out of order",
                                off, e.index, e.term);
            if (i + 1 == info->count && e.term != info->last_term)
                return nerr_set(err, NERR_CORRUPT,
                                "offset %zu: the last entry's term %" PRIu64
                                " is not the header's %" PRIu64,
                                off, e.term, info->last_term);
            if (i == 0 && e.term != info->first_term)
                return nerr_set(err, NERR_CORRUPT,
                                "offset %zu: the first entry's term %" PRIu64
                                " is not the header's %" PRIu64,
                                off, e.term, info->first_term);
            prev_term = e.term;
            if (!e.len)
                e.data = NULL;
            off += 24 + e.len;
            int rc = on_entry ? on_entry(arg, &e) : 0;
            if (rc)
                return rc;
        } else {
            if (body_end - off < 12)
                return nerr_set(err, NERR_CORRUPT, "offset %zu: item %" PRIu64 " cut short", off,
                                i);
            const unsigned char *h = buf + off;
            struct archive_item it = {le_get32(h), le_get32(h + 4), h + 12, NULL};
            if ((uint64_t)it.klen + it.vlen > body_end - off - 12)
                return nerr_set(err, NERR_CORRUPT, "offset %zu: item %" PRIu64 " runs past the end",
                                off, i);
            it.val = it.key + it.klen;
            if (crc32c(crc32c(crc32c(0, h, 8), it.key, it.klen), it.val, it.vlen) !=
                le_get32(h + 8))
                return nerr_set(err, NERR_CORRUPT,
                                "offset %zu: item %" PRIu64 ": checksum mismatch", off, i);
            off += 12 + (size_t)it.klen + it.vlen;
            int rc = on_item ? on_item(arg, &it) : 0;
            if (rc)
                return rc;
        }
    }
    if (off != body_end)
        return nerr_set(err, NERR_CORRUPT, "offset %zu: %zu bytes after the last %s", off,
                        body_end - off, log ? "entry" : "item");
    return 0;
}

void archive_piece_name(const char *group, uint64_t first, uint64_t last, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/log/%020" PRIu64 "-%020" PRIu64 ".piece", group, first, last);
}

void archive_snap_name(const char *group, uint64_t index, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/snap/%020" PRIu64 ".snap", group, index);
}

void archive_manifest_name(const char *object, char *buf, size_t cap)
{
    const char *dot = strrchr(object, '.');
    size_t n = dot ? (size_t)(dot - object) : strlen(object);
    snprintf(buf, cap, "%.*s.json", (int)n, object);
}

void archive_hex(const unsigned char *b, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = 0;
}
