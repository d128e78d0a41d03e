/*
 * group_files.c — the files of one group in its directory: SNAPSHOT (the
 * index and term of the state the log continues from, with the state
 * itself when a leader's stream brought it; snapstream.h), the HARDSTATE
 * file of older data directories (term and vote now live in the node log,
 * nodelog.h: it is read once, carried over and deleted), and loading the
 * group's log from its node log stream
 * (group.h, "Compaction"; docs/replication.md, "In the node").
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/crc32c.h"
#include "lib/fsutil.h"
#include "lib/le.h"
#include "lib/log.h"
#include "store/group_internal.h"
#include "store/nodelog.h"

#define HS_MAGIC "N9HS1\n"

/* The highest member id a vote may name: n when the membership never
 * changed; with a configuration, any id (a removed member's slot is gone). */
static uint32_t max_vote_id(const struct group *g)
{
    const struct raft_conf *c = &g->mem.conf;
    return c->voters || c->voters_out || c->log ? RAFT_MAX_MEMBERS : g->mem.n;
}

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
    /* The 8-byte prefix: term | type << 56 (group.h). A log written before
     * membership changes has type 0 (NORMAL) there. */
    uint64_t prefix = le_get64(data);
    uint32_t type = (uint32_t)(prefix >> 56);
    if (type != RAFT_ENTRY_NORMAL && type != RAFT_ENTRY_CONF)
        return nerr_set(c->err, NERR_CORRUPT,
                        "WAL record %llu holds a log entry of unknown type %u (prefix %016llx)",
                        (unsigned long long)lsn, type, (unsigned long long)prefix);
    if (type == RAFT_ENTRY_CONF && len - 8 != RAFT_CONF_ENC_LEN)
        return nerr_set(c->err, NERR_CORRUPT,
                        "WAL record %llu holds a configuration entry of %zu bytes, expected %u",
                        (unsigned long long)lsn, len - 8, RAFT_CONF_ENC_LEN);
    e->type = type;
    e->index = lsn;
    e->term = prefix & ((UINT64_C(1) << 56) - 1);
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

/* Reads an old HARDSTATE file: 1 when there is one, 0 when there is none. */
static int hs_file_load(struct group *g, struct raft_hard_state *hs, struct nerr *err)
{
    char *buf = NULL;
    size_t len;
    struct nerr rerr = {0};
    memset(hs, 0, sizeof *hs);
    if (fs_read_file(g->hs_path, 4096, &buf, &len, &rerr)) {
        if (errno == ENOENT)
            return 0;
        nerr_set(err, rerr.code ? rerr.code : NERR_IO, "%s", rerr.msg);
        return -1;
    }
    unsigned long long term = 0;
    unsigned vote = 0;
    int ok = len > strlen(HS_MAGIC) && !memcmp(buf, HS_MAGIC, strlen(HS_MAGIC)) &&
             sscanf(buf + strlen(HS_MAGIC), "term %llu\nvote %u\n", &term, &vote) == 2 &&
             vote <= max_vote_id(g);
    free(buf);
    if (!ok) {
        nerr_set(err, NERR_CORRUPT, "%s: not a hard-state file of this group", g->hs_path);
        return -1;
    }
    hs->term = term;
    hs->vote = vote;
    return 1;
}

int group__hs_load(struct group *g, struct raft_hard_state *hs, struct nerr *err)
{
    memset(hs, 0, sizeof *hs);
    uint64_t term = 0;
    uint32_t vote = 0;
    nls_hard_state(g->log, &term, &vote);
    if (vote > max_vote_id(g))
        return nerr_set(err, NERR_CORRUPT,
                        "group %s: the node log holds a vote for member %u of %u members", g->name,
                        vote, max_vote_id(g));
    struct raft_hard_state f;
    int has_file = hs_file_load(g, &f, err);
    if (has_file < 0)
        return err->code;
    if (has_file) {
        /* Both may be there after a crash during the migration below: the
         * later term wins, and within one term the one that voted (a vote
         * is cast at most once per term, so they cannot disagree). */
        if (f.term > term || (f.term == term && !vote)) {
            term = f.term;
            vote = f.vote;
        }
        struct nls_waiter w;
        nls_waiter_init(&w);
        int rc = nls_set_hard_state(g->log, term, vote, nls_waiter_done, &w);
        if (rc) {
            nls_waiter_destroy(&w);
            return nerr_set(err, rc, "group %s: cannot carry its hard state over to the node log",
                            g->name);
        }
        if ((rc = nls_waiter_wait(&w)))
            return nerr_set(err, rc, "group %s: node log sync failed", g->name);
        /* Durable in the log first, then the file goes. */
        if (unlink(g->hs_path) && errno != ENOENT)
            return nerr_sys(err, errno, "unlink %s", g->hs_path);
        if ((rc = fs_fsync_dir(g->dir, err)))
            return rc;
        log_info("group %s: hard state (term %llu, vote %u) moved from %s to the node log", g->name,
                 (unsigned long long)term, vote, g->hs_path);
    }
    hs->term = term;
    hs->vote = vote;
    return 0;
}

/* <group_dir>/SNAPSHOT: snapstream.h's header (version 3, with the
 * configuration at its index), then the payload or, for a metadata-only
 * snapshot, nothing. */
int group__snap_meta(struct group *g, struct snapfile *f, struct nerr *err)
{
    memset(f, 0, sizeof *f);
    int fd = open(g->snap_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : nerr_sys(err, errno, "%s", g->snap_path);
    int rc = snapfile_read(fd, g->snap_path, f, err);
    close(fd);
    return rc;
}

int group__snap_save_meta(struct group *g, uint64_t index, uint64_t term,
                          const struct raft_conf *conf, struct nerr *err)
{
    unsigned char b[SNAPFILE_HEADER];
    struct snapfile f = {.index = index, .term = term, .flags = SNAPFILE_META, .conf = *conf};
    snapfile_header(b, &f);
    return fs_write_file_atomic(g->snap_path, b, sizeof b, err);
}

int group__snap_adopt(struct group *g, uint64_t index, uint64_t term, int *fd, struct snapfile *f,
                      struct nerr *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/SNAPSHOT.ready.%llu", g->dir, (unsigned long long)index);
    int d = open(path, O_RDONLY | O_CLOEXEC);
    if (d < 0)
        return nerr_sys(err, errno, "%s", path);
    int rc = snapfile_read(d, path, f, err);
    if (!rc && (f->index != index || f->term != term || (f->flags & SNAPFILE_META)))
        rc = nerr_set(err, NERR_CORRUPT, "%s holds the snapshot at %llu (term %llu)", path,
                      (unsigned long long)f->index, (unsigned long long)f->term);
    if (!rc && rename(path, g->snap_path))
        rc = nerr_sys(err, errno, "rename %s", path);
    if (!rc)
        rc = fs_fsync_dir(g->dir, err);
    if (rc) {
        close(d);
        return rc;
    }
    *fd = d;
    return 0;
}

int group__snap_restore(struct group *g, MDB_txn *txn, int fd, const struct snapfile *f,
                        struct nerr *err)
{
    size_t maplen = (size_t)(f->off + f->len);
    void *map = mmap(NULL, maplen, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED)
        return nerr_sys(err, errno, "group %s: mapping its snapshot", g->name);
    madvise(map, maplen, MADV_SEQUENTIAL);
    int rc =
        g->sm->restore(g->sm_arg, txn, (const unsigned char *)map + f->off, (size_t)f->len, err);
    munmap(map, maplen);
    return rc;
}

void group__snap_cleanup(struct group *g)
{
    DIR *d = opendir(g->dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)))
        if (!strcmp(de->d_name, "SNAPSHOT.recv") || !strncmp(de->d_name, "SNAPSHOT.ready.", 15) ||
            !strncmp(de->d_name, "SNAPSHOT.tmp", 12)) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", g->dir, de->d_name);
            unlink(path);
        }
    closedir(d);
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
