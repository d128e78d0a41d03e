/*
 * write.c — putting a log piece or a snapshot into the archive with its
 * manifest (archive.h, "writing").
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive/archive.h"

/* Puts the object, reads it back and parses it (a disk or a file system
 * that returns something else than it was given is caught here, before a
 * manifest vouches for it), then puts the manifest. */
static int put_with_manifest(struct archive *a, const char *name, const unsigned char *buf,
                             size_t len, json_t *man, struct nerr *err)
{
    unsigned char *back = NULL;
    size_t blen = 0;
    struct archive_object_info info;
    int rc = archive_put(a, name, buf, len, err);
    if (!rc)
        rc = archive_get(a, name, ARCHIVE_MAX_OBJECT, &back, &blen, err);
    if (!rc && (blen != len || memcmp(back, buf, len)))
        rc = nerr_set(err, NERR_CORRUPT, "%s: read back %zu bytes that differ from the %zu written",
                      name, blen, len);
    if (!rc)
        rc = archive_object_parse(back, blen, NULL, NULL, NULL, &info, err);
    free(back);
    if (rc)
        return rc;
    char sha[65];
    archive_hex(info.sha256, 32, sha);
    json_object_set_new(man, "v", json_integer(1));
    json_object_set_new(man, "object", json_string(name));
    json_object_set_new(man, "bytes", json_integer((json_int_t)len));
    json_object_set_new(man, "sha256", json_string(sha));
    char *text = json_dumps(man, JSON_INDENT(1) | JSON_SORT_KEYS);
    if (!text)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    char mname[ARCHIVE_MAX_NAME + 96];
    archive_manifest_name(name, mname, sizeof mname);
    rc = archive_put(a, mname, text, strlen(text), err);
    free(text);
    return rc;
}

static json_t *base_manifest(const struct archive_meta *m, const char *kind)
{
    return json_pack("{s:s,s:s,s:s,s:i,s:s,s:I}", "kind", kind, "group", m->group, "table",
                     m->table ? m->table : "", "partition", m->partition, "uploader",
                     m->uploader ? m->uploader : "", "time_ms", (json_int_t)m->time_ms);
}

int archive_put_log(struct archive *a, const struct archive_meta *m, const struct archive_entry *e,
                    size_t n, struct nerr *err)
{
    unsigned char *buf;
    size_t len;
    int rc = archive_piece_encode(m->group, e, n, &buf, &len, err);
    if (rc)
        return rc;
    char name[ARCHIVE_MAX_NAME + 96];
    archive_piece_name(m->group, e[0].index, e[n - 1].index, name, sizeof name);
    json_t *man = base_manifest(m, "log");
    if (!man) {
        free(buf);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    json_object_set_new(man, "first", json_integer((json_int_t)e[0].index));
    json_object_set_new(man, "first_term", json_integer((json_int_t)e[0].term));
    json_object_set_new(man, "last", json_integer((json_int_t)e[n - 1].index));
    json_object_set_new(man, "last_term", json_integer((json_int_t)e[n - 1].term));
    json_object_set_new(man, "entries", json_integer((json_int_t)n));
    rc = put_with_manifest(a, name, buf, len, man, err);
    json_decref(man);
    free(buf);
    return rc;
}

int archive_put_snapshot(struct archive *a, const struct archive_meta *m, uint64_t index,
                         uint64_t term, const struct archive_item *it, size_t n, struct nerr *err)
{
    unsigned char *buf;
    size_t len;
    int rc = archive_snap_encode(m->group, index, term, it, n, &buf, &len, err);
    if (rc)
        return rc;
    char name[ARCHIVE_MAX_NAME + 96];
    archive_snap_name(m->group, index, name, sizeof name);
    json_t *man = base_manifest(m, "snapshot");
    if (!man) {
        free(buf);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    json_object_set_new(man, "index", json_integer((json_int_t)index));
    json_object_set_new(man, "term", json_integer((json_int_t)term));
    json_object_set_new(man, "items", json_integer((json_int_t)n));
    json_object_set_new(man, "digest", m->digest ? json_string(m->digest) : json_null());
    rc = put_with_manifest(a, name, buf, len, man, err);
    json_decref(man);
    free(buf);
    return rc;
}
