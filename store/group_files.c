/*
 * group_files.c — the files of one group in its directory: HARDSTATE (term
 * and vote, written atomically) and SNAPSHOT (the state machine at an index,
 * with a CRC), and loading the group's log from its node log stream
 * (group.h, "Compaction"; docs/replication.md, "In the node").
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/crc32c.h"
#include "lib/fsutil.h"
#include "lib/le.h"
#include "store/group_internal.h"

#define HS_MAGIC "N9HS1\n"

int group__load_one(void *arg, uint64_t lsn, const void *data, size_t len)
{
    struct group__load_ctx *c = arg;
    if (len < 8)
        return nerr_set(c->err, NERR_CORRUPT, "WAL record %llu is not a log entry (%zu bytes)",
                        (unsigned long long)lsn, len);
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 1024;
        struct raft_entry *v = realloc(c->v, nc * sizeof *v);
        if (!v)
            return nerr_set(c->err, NERR_NOMEM, "out of memory");
        c->v = v;
        c->cap = nc;
    }
    struct raft_entry *e = &c->v[c->n];
    e->index = lsn;
    e->term = le_get64(data);
    e->len = (uint32_t)(len - 8);
    e->data = NULL;
    if (e->len) {
        if (!(e->data = malloc(e->len)))
            return nerr_set(c->err, NERR_NOMEM, "out of memory");
        memcpy(e->data, (const unsigned char *)data + 8, e->len);
    }
    c->n++;
    return 0;
}

int group__hs_load(struct group *g, struct raft_hard_state *hs, struct nerr *err)
{
    char *buf = NULL;
    size_t len;
    struct nerr rerr = {0};
    memset(hs, 0, sizeof *hs);
    if (fs_read_file(g->hs_path, 4096, &buf, &len, &rerr)) {
        if (errno == ENOENT)
            return 0;
        return nerr_set(err, rerr.code, "%s", rerr.msg);
    }
    unsigned long long term = 0;
    unsigned vote = 0;
    int ok = len > strlen(HS_MAGIC) && !memcmp(buf, HS_MAGIC, strlen(HS_MAGIC)) &&
             sscanf(buf + strlen(HS_MAGIC), "term %llu\nvote %u\n", &term, &vote) == 2 &&
             vote <= g->mem.n;
    free(buf);
    if (!ok)
        return nerr_set(err, NERR_CORRUPT, "%s: not a hard-state file of this group", g->hs_path);
    hs->term = term;
    hs->vote = vote;
    return 0;
}

int group__hs_save(struct group *g, const struct raft_hard_state *hs, struct nerr *err)
{
    char buf[128];
    int n = snprintf(buf, sizeof buf, HS_MAGIC "term %llu\nvote %u\n", (unsigned long long)hs->term,
                     hs->vote);
    return fs_write_file_atomic(g->hs_path, buf, (size_t)n, err);
}

#define SNAP_HEADER 32

/* <group_dir>/SNAPSHOT: "N9SS" u32 version, u64 index, u64 term, u32 crc32c,
 * u32 length, payload. Written atomically (fs_write_file_atomic). */
int group__snap_save(struct group *g, uint64_t index, uint64_t term, const void *data, size_t len,
                     struct nerr *err)
{
    unsigned char *b = malloc(SNAP_HEADER + len);
    if (!b)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    memcpy(b, "N9SS", 4);
    le_put32(b + 4, 1);
    le_put64(b + 8, index);
    le_put64(b + 16, term);
    le_put32(b + 24, crc32c(0, data, len));
    le_put32(b + 28, (uint32_t)len);
    if (len)
        memcpy(b + SNAP_HEADER, data, len);
    int rc = fs_write_file_atomic(g->snap_path, b, SNAP_HEADER + len, err);
    free(b);
    return rc;
}

/* 0 with snap->index 0 when there is none. */
int group__snap_load(struct group *g, struct raft_snapshot *snap, struct nerr *err)
{
    char *buf = NULL;
    size_t len;
    struct nerr rerr = {0};
    memset(snap, 0, sizeof *snap);
    if (fs_read_file(g->snap_path, RAFT_MAX_SNAPSHOT + SNAP_HEADER, &buf, &len, &rerr)) {
        if (errno == ENOENT)
            return 0;
        return nerr_set(err, rerr.code ? rerr.code : NERR_IO, "%s", rerr.msg);
    }
    const unsigned char *b = (const unsigned char *)buf;
    if (len < SNAP_HEADER || memcmp(b, "N9SS", 4) || le_get32(b + 4) != 1 ||
        le_get32(b + 28) != len - SNAP_HEADER ||
        crc32c(0, b + SNAP_HEADER, len - SNAP_HEADER) != le_get32(b + 24)) {
        free(buf);
        return nerr_set(err, NERR_CORRUPT, "%s: damaged snapshot (bad header, length or CRC)",
                        g->snap_path);
    }
    snap->index = le_get64(b + 8);
    snap->term = le_get64(b + 16);
    snap->len = (uint32_t)(len - SNAP_HEADER);
    snap->data = malloc(snap->len ? snap->len : 1);
    if (!snap->data) {
        free(buf);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    memcpy(snap->data, b + SNAP_HEADER, snap->len);
    free(buf);
    return 0;
}

/* A group directory with WAL segments of its own is from before the node
 * log (docs/wal.md): its entries would be ignored, so refuse it. */
int group__refuse_old_wal(const char *dir, struct nerr *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return nerr_sys(err, errno, "group: cannot read %s", dir);
    struct dirent *de;
    int rc = 0;
    while (!rc && (de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n > 4 && !strcmp(de->d_name + n - 4, ".wal"))
            rc = nerr_set(err, NERR_CORRUPT,
                          "%s/%s: a per-group WAL segment from an older nines; this version keeps "
                          "every group's log in the node log (<data>/log). Start from an empty "
                          "data dir or rebuild this replica from its peers",
                          dir, de->d_name);
    }
    closedir(d);
    return rc;
}
