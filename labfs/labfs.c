/*
 * labfs.c — the file system itself (libfuse3 low-level API).
 *
 * Model. Every file, directory and symlink the kernel has seen is a struct
 * lnode. A node sits in up to two trees over the same nodes:
 *   - the view tree (n->v): what processes see now;
 *   - the durable tree (n->d): what the backing directory holds, i.e. what a
 *     power cut would leave.
 * Both are name -> node maps per directory (one hash table each, keyed by
 * parent and name) plus a sibling list per directory. A directory's children
 * are read from the backing directory the first time anything needs them
 * (n->loaded); until then view and durable children are the same.
 *
 * File data: n->bfd is the backing file (the durable bytes, n->dsize long);
 * dirty 4 KiB pages live in n->pages. Bytes of the backing file at offsets
 * >= n->keep were cut off by a truncate since the last flush and read as
 * zeros. Invariants: keep <= size; in a dirty page every byte at a file
 * offset >= size is zero; a node without a durable name either never had
 * one (bfd < 0, dsize = 0) or lost it to an unlink/replace made durable.
 *
 * Durability (dur_name): making a node's name durable first makes its view
 * parent's name durable (up to the root), then moves whatever holds that
 * name in the backing directory out of the way (a node that lives elsewhere
 * in the view goes to a temporary name and is then made durable too, which
 * is what committing a swap of names does; a node gone from the view is
 * removed), then renames or creates the node's own backing entry. Each step
 * fixes one node's durable place to its view place for good, so the
 * recursion ends.
 *
 * Power cut. `crash` drops every dirty page and pending name under the
 * lock, so it is atomic with respect to every other request. A file flush
 * is durable only once its backing fdatasync returned: while that runs, the
 * flush is a struct flight holding the bytes it overwrote, and a crash
 * restores them. `freeze` marks the instant of the cut: fsyncs arriving
 * after it are parked (struct parked, no thread held) and flights cannot
 * finish, until `crash` (EIO, nothing durable) or `thaw`.
 *
 * Locking: one mutex (fs->mu) around the whole model. It is released only
 * around the backing fdatasync of a file (the node is pinned by the open
 * handle the fsync came with) and around kernel cache invalidation after a
 * crash (which may wait for other requests, answered with EIO meanwhile).
 */
#define FUSE_USE_VERSION 312
#include "labfs/labfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/rng.h"

enum lkind { LK_REG, LK_DIR, LK_LNK, LK_CTL };

struct lnode;

/* One membership of a node in a tree: its parent and name there. */
struct lent {
    struct lnode *self;
    struct lnode *parent;
    char *name;
    struct lent *hnext;         /* hash chain */
    struct lent *sprev, *snext; /* siblings under parent */
};

struct pmap {
    uint64_t *keys;
    unsigned char **vals; /* NULL = empty slot */
    size_t cap, n;
};

struct lnode {
    uint64_t serial; /* creation order; the FUSE generation */
    enum lkind kind;
    mode_t mode; /* full st_mode */
    uid_t uid;
    gid_t gid;
    struct timespec atime, mtime, ctime;
    uint64_t nlookup; /* kernel references */
    int nopen;        /* open handles */
    int in_v, in_d;
    struct lent v, d;
    struct lent *vkids, *dkids; /* directories: sibling list heads */
    int loaded;
    char *target; /* symlinks */
    /* regular files */
    int bfd;
    uint64_t size, dsize, keep;
    struct pmap pages;
    int meta_dirty;              /* mode/owner differ from the backing file */
    struct lnode *anext, *aprev; /* every node */
};

struct ltab {
    struct lent **b;
    size_t nb, n;
};

struct lhandle {
    struct lnode *n;
    int flags;
    /* control file: the reply to the last command */
    char *reply;
    size_t reply_len, reply_off;
};

struct ldirh {
    size_t n;
    struct {
        char *name;
        uint64_t ino;
        mode_t type;
    } * e;
};

/* A file flush whose backing fdatasync has not returned yet. Until it does,
 * a crash may undo it: the bytes it overwrote and the size it had are kept
 * here (see dur_file). */
struct flight {
    struct flight *next;
    int fd;            /* a dup of the backing fd: the node may go away */
    char *path;        /* backing path at flush time (the torn coin) */
    uint64_t old_size; /* backing size before the flush */
    size_t n, cap;
    struct undo {
        uint64_t off;
        size_t len;
        unsigned char *old;
    } * u;
    int undone;
};

/* An fsync or fsyncdir that arrived while frozen: not answered until
 * `thaw` (then done) or `crash` (then EIO). The node is pinned (nopen). */
struct parked {
    struct parked *next;
    fuse_req_t req;
    struct lnode *n;
    int datasync, dir;
};

struct labfs {
    pthread_mutex_t mu;
    pthread_cond_t thaw_cv; /* frozen went to 0, or crashed to 1 */
    int frozen;
    struct parked *parked, **parked_tail;
    uint64_t undone_flushes;
    struct flight *flights; /* newest first */
    int rootfd;
    struct lnode *root, *ctl;
    struct ltab vt, dt;
    struct lnode all; /* list head */
    struct fuse_session *se;
    uint64_t serial;
    uint64_t seed;
    int no_sync;
    int crashed;
    int gc_pending;
    /* `full on`: every request that needs new space fails with ENOSPC
     * (a disk with no free block; nothing is allocated to make it so). */
    int full;
    /* counters (under mu) */
    uint64_t dirty_pages, fsyncs, fsyncdirs, synced_bytes, crashes, enospc;
    uint64_t dropped_bytes, dropped_names, torn_kept, torn_lost;
};

static const double LABFS_TIMEOUT = 1.0; /* entry and attribute cache, seconds */

/* ---- small helpers ------------------------------------------------------ */

/* splitmix64's output for state x (lib/rng.h): one step of the generator
 * seeded with x. The torn-page coins come from it, so a seed replays the
 * same tear. */
static uint64_t mix64(uint64_t x)
{
    struct rng r;
    rng_seed(&r, x);
    return rng_next(&r);
}

static uint64_t hash_str(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

static void now_ts(struct timespec *t)
{
    clock_gettime(CLOCK_REALTIME, t);
}

/* ---- page map ----------------------------------------------------------- */

static size_t pm_slot(const struct pmap *m, uint64_t k)
{
    return (size_t)mix64(k) & (m->cap - 1);
}

static unsigned char *pm_get(const struct pmap *m, uint64_t k)
{
    if (!m->cap)
        return NULL;
    for (size_t i = pm_slot(m, k);; i = (i + 1) & (m->cap - 1)) {
        if (!m->vals[i])
            return NULL;
        if (m->keys[i] == k)
            return m->vals[i];
    }
}

static int pm_put(struct pmap *m, uint64_t k, unsigned char *v);

static int pm_grow(struct pmap *m)
{
    struct pmap nm = {0};
    nm.cap = m->cap ? m->cap * 2 : 16;
    nm.keys = calloc(nm.cap, sizeof *nm.keys);
    nm.vals = calloc(nm.cap, sizeof *nm.vals);
    if (!nm.keys || !nm.vals) {
        free(nm.keys);
        free(nm.vals);
        return -ENOMEM;
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->vals[i])
            pm_put(&nm, m->keys[i], m->vals[i]);
    free(m->keys);
    free(m->vals);
    *m = nm;
    return 0;
}

/* Inserts a key that is not present. */
static int pm_put(struct pmap *m, uint64_t k, unsigned char *v)
{
    if ((m->n + 1) * 4 > m->cap * 3 && pm_grow(m))
        return -ENOMEM;
    size_t i = pm_slot(m, k);
    while (m->vals[i])
        i = (i + 1) & (m->cap - 1);
    m->keys[i] = k;
    m->vals[i] = v;
    m->n++;
    return 0;
}

static void pm_clear(struct pmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->vals[i]);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The dirty page indexes in increasing order (malloc'd; *n set). */
static uint64_t *pm_sorted(const struct pmap *m, size_t *n)
{
    uint64_t *k = malloc((m->n ? m->n : 1) * sizeof *k);
    if (!k)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < m->cap; i++)
        if (m->vals[i])
            k[j++] = m->keys[i];
    qsort(k, j, sizeof *k, cmp_u64);
    *n = j;
    return k;
}

/* ---- name tables -------------------------------------------------------- */

static uint64_t ent_hash(const struct lnode *parent, const char *name)
{
    return hash_str(mix64((uint64_t)(uintptr_t)parent), name);
}

static struct lent *lt_find(const struct ltab *t, const struct lnode *parent, const char *name)
{
    if (!t->nb)
        return NULL;
    for (struct lent *e = t->b[ent_hash(parent, name) & (t->nb - 1)]; e; e = e->hnext)
        if (e->parent == parent && !strcmp(e->name, name))
            return e;
    return NULL;
}

static int lt_insert(struct ltab *t, struct lent *e)
{
    if (t->n + 1 > t->nb) {
        size_t nb = t->nb ? t->nb * 2 : 64;
        struct lent **b = calloc(nb, sizeof *b);
        if (!b)
            return -ENOMEM;
        for (size_t i = 0; i < t->nb; i++)
            for (struct lent *x = t->b[i], *nx; x; x = nx) {
                nx = x->hnext;
                size_t j = ent_hash(x->parent, x->name) & (nb - 1);
                x->hnext = b[j];
                b[j] = x;
            }
        free(t->b);
        t->b = b;
        t->nb = nb;
    }
    size_t j = ent_hash(e->parent, e->name) & (t->nb - 1);
    e->hnext = t->b[j];
    t->b[j] = e;
    t->n++;
    return 0;
}

static void lt_remove(struct ltab *t, struct lent *e)
{
    struct lent **pp = &t->b[ent_hash(e->parent, e->name) & (t->nb - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    e->hnext = NULL;
    t->n--;
}

/* Attaches e (of a node) under parent with name (copied) in table t, on the
 * sibling list *head. */
static int ent_attach(struct ltab *t, struct lent *e, struct lent **head, struct lnode *parent,
                      const char *name)
{
    char *nm = strdup(name);
    if (!nm)
        return -ENOMEM;
    e->parent = parent;
    e->name = nm;
    if (lt_insert(t, e)) {
        free(nm);
        e->name = NULL;
        e->parent = NULL;
        return -ENOMEM;
    }
    e->sprev = NULL;
    e->snext = *head;
    if (*head)
        (*head)->sprev = e;
    *head = e;
    return 0;
}

static void ent_detach(struct ltab *t, struct lent *e, struct lent **head)
{
    lt_remove(t, e);
    if (e->sprev)
        e->sprev->snext = e->snext;
    else
        *head = e->snext;
    if (e->snext)
        e->snext->sprev = e->sprev;
    e->sprev = e->snext = NULL;
    free(e->name);
    e->name = NULL;
    e->parent = NULL;
}

static int v_attach(struct labfs *fs, struct lnode *n, struct lnode *p, const char *name)
{
    int rc = ent_attach(&fs->vt, &n->v, &p->vkids, p, name);
    if (!rc)
        n->in_v = 1;
    return rc;
}

static void v_detach(struct labfs *fs, struct lnode *n)
{
    ent_detach(&fs->vt, &n->v, &n->v.parent->vkids);
    n->in_v = 0;
}

static int d_attach(struct labfs *fs, struct lnode *n, struct lnode *p, const char *name)
{
    int rc = ent_attach(&fs->dt, &n->d, &p->dkids, p, name);
    if (!rc)
        n->in_d = 1;
    return rc;
}

static void d_detach(struct labfs *fs, struct lnode *n)
{
    ent_detach(&fs->dt, &n->d, &n->d.parent->dkids);
    n->in_d = 0;
    fs->gc_pending = 1;
}

static struct lnode *v_find(struct labfs *fs, struct lnode *p, const char *name)
{
    struct lent *e = lt_find(&fs->vt, p, name);
    return e ? e->self : NULL;
}

static struct lnode *d_find(struct labfs *fs, struct lnode *p, const char *name)
{
    struct lent *e = lt_find(&fs->dt, p, name);
    return e ? e->self : NULL;
}

/* ---- nodes -------------------------------------------------------------- */

static struct lnode *node_new(struct labfs *fs, enum lkind kind, mode_t mode)
{
    struct lnode *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->serial = ++fs->serial;
    n->kind = kind;
    n->mode = mode;
    n->v.self = n->d.self = n;
    n->bfd = -1;
    now_ts(&n->mtime);
    n->atime = n->ctime = n->mtime;
    n->anext = fs->all.anext;
    n->aprev = &fs->all;
    fs->all.anext->aprev = n;
    fs->all.anext = n;
    return n;
}

static void node_drop_pages(struct labfs *fs, struct lnode *n)
{
    fs->dirty_pages -= n->pages.n;
    pm_clear(&n->pages);
}

/* Frees n once nothing refers to it: not in either tree, no kernel
 * reference, no open handle. */
static void node_maybe_free(struct labfs *fs, struct lnode *n)
{
    if (n == fs->root || n == fs->ctl || n->in_v || n->in_d || n->nlookup || n->nopen)
        return;
    n->aprev->anext = n->anext;
    n->anext->aprev = n->aprev;
    node_drop_pages(fs, n);
    if (n->bfd >= 0)
        close(n->bfd);
    free(n->target);
    free(n);
}

static void gc(struct labfs *fs)
{
    if (!fs->gc_pending)
        return;
    fs->gc_pending = 0;
    for (struct lnode *n = fs->all.anext, *nx; n != &fs->all; n = nx) {
        nx = n->anext;
        node_maybe_free(fs, n);
    }
}

static fuse_ino_t node_ino(struct labfs *fs, struct lnode *n)
{
    return n == fs->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

static struct lnode *ino_node(struct labfs *fs, fuse_ino_t ino)
{
    return ino == FUSE_ROOT_ID ? fs->root : (struct lnode *)(uintptr_t)ino;
}

static void node_stat(struct labfs *fs, struct lnode *n, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = node_ino(fs, n);
    st->st_mode = n->mode;
    st->st_nlink = n->kind == LK_DIR ? 2 : 1;
    st->st_uid = n->uid;
    st->st_gid = n->gid;
    st->st_size = (off_t)(n->kind == LK_REG ? n->size : n->kind == LK_LNK ? strlen(n->target) : 0);
    st->st_blksize = LABFS_PAGE;
    st->st_blocks = (st->st_size + 511) / 512;
    st->st_atim = n->atime;
    st->st_mtim = n->mtime;
    st->st_ctim = n->ctime;
}

/* The backing path of a node with a durable name, relative to rootfd. */
static int dpath(struct labfs *fs, struct lnode *n, char *buf, size_t cap)
{
    if (n == fs->root) {
        snprintf(buf, cap, ".");
        return 0;
    }
    size_t len = 0;
    for (struct lnode *x = n; x != fs->root; x = x->d.parent) {
        if (!x->in_d)
            return -ENOENT;
        len += strlen(x->d.name) + 1;
    }
    if (len > cap)
        return -ENAMETOOLONG;
    size_t pos = len - 1;
    buf[pos] = '\0';
    for (struct lnode *x = n; x != fs->root; x = x->d.parent) {
        size_t l = strlen(x->d.name);
        pos -= l;
        memcpy(buf + pos, x->d.name, l);
        if (pos)
            buf[--pos] = '/';
    }
    return 0;
}

/* The backing file of a regular node, opened on first need. */
static int node_bfd(struct labfs *fs, struct lnode *n)
{
    if (n->bfd >= 0)
        return n->bfd;
    char p[PATH_MAX];
    int rc = dpath(fs, n, p, sizeof p);
    if (rc)
        return rc == -ENOENT ? -EIO : rc;
    int fd = openat(fs->rootfd, p, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == EACCES)
        fd = openat(fs->rootfd, p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    n->bfd = fd;
    return fd;
}

static int pread_full(int fd, unsigned char *buf, size_t len, uint64_t off)
{
    while (len) {
        ssize_t r = pread(fd, buf, len, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0) { /* the backing file is shorter than we think: zeros */
            memset(buf, 0, len);
            return 0;
        }
        buf += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* Reads the current bytes [off, off+len) (within size) into buf. */
static int node_read(struct labfs *fs, struct lnode *n, unsigned char *buf, size_t len,
                     uint64_t off)
{
    uint64_t bl = n->keep < n->dsize ? n->keep : n->dsize;
    size_t from_backing = off < bl ? (size_t)(bl - off < len ? bl - off : len) : 0;
    if (from_backing) {
        int fd = node_bfd(fs, n);
        if (fd < 0)
            return fd;
        int rc = pread_full(fd, buf, from_backing, off);
        if (rc)
            return rc;
    }
    memset(buf + from_backing, 0, len - from_backing);
    if (!n->pages.n)
        return 0;
    for (uint64_t pg = off / LABFS_PAGE; pg * LABFS_PAGE < off + len; pg++) {
        unsigned char *p = pm_get(&n->pages, pg);
        if (!p)
            continue;
        uint64_t ps = pg * LABFS_PAGE;
        uint64_t a = ps > off ? ps : off;
        uint64_t b = ps + LABFS_PAGE < off + len ? ps + LABFS_PAGE : off + len;
        memcpy(buf + (a - off), p + (a - ps), (size_t)(b - a));
    }
    return 0;
}

static int node_write(struct labfs *fs, struct lnode *n, const char *buf, size_t len, uint64_t off)
{
    uint64_t end = off + len;
    for (uint64_t pg = off / LABFS_PAGE; pg * LABFS_PAGE < end; pg++) {
        uint64_t ps = pg * LABFS_PAGE;
        unsigned char *p = pm_get(&n->pages, pg);
        if (!p) {
            p = malloc(LABFS_PAGE);
            if (!p)
                return -ENOMEM;
            if (off > ps || end < ps + LABFS_PAGE) {
                /* Partly written: the rest of the page keeps its bytes. */
                uint64_t lim = n->size < ps + LABFS_PAGE ? n->size : ps + LABFS_PAGE;
                int rc = lim > ps ? node_read(fs, n, p, (size_t)(lim - ps), ps) : 0;
                if (rc) {
                    free(p);
                    return rc;
                }
                if (lim < ps + LABFS_PAGE)
                    memset(p + (lim > ps ? lim - ps : 0), 0,
                           (size_t)(ps + LABFS_PAGE - (lim > ps ? lim : ps)));
            }
            if (pm_put(&n->pages, pg, p)) {
                free(p);
                return -ENOMEM;
            }
            fs->dirty_pages++;
        }
        uint64_t a = ps > off ? ps : off;
        uint64_t b = ps + LABFS_PAGE < end ? ps + LABFS_PAGE : end;
        memcpy(p + (a - ps), buf + (a - off), (size_t)(b - a));
    }
    if (end > n->size)
        n->size = end;
    now_ts(&n->mtime);
    n->ctime = n->mtime;
    return 0;
}

static int node_resize(struct labfs *fs, struct lnode *n, uint64_t size)
{
    if (size < n->size) {
        uint64_t cut = (size + LABFS_PAGE - 1) / LABFS_PAGE; /* first page wholly gone */
        if (n->pages.n) {
            struct pmap keep = {0};
            for (size_t i = 0; i < n->pages.cap; i++) {
                unsigned char *p = n->pages.vals[i];
                if (!p)
                    continue;
                if (n->pages.keys[i] >= cut) {
                    free(p);
                    fs->dirty_pages--;
                    continue;
                }
                if (pm_put(&keep, n->pages.keys[i], p)) {
                    free(p);
                    fs->dirty_pages--;
                    pm_clear(&keep);
                    return -ENOMEM; /* pages lost: the file is now wrong */
                }
            }
            free(n->pages.keys);
            free(n->pages.vals);
            n->pages = keep;
            unsigned char *p = size % LABFS_PAGE ? pm_get(&n->pages, size / LABFS_PAGE) : NULL;
            if (p)
                memset(p + size % LABFS_PAGE, 0, LABFS_PAGE - size % LABFS_PAGE);
        }
        if (size < n->keep)
            n->keep = size;
    }
    n->size = size;
    now_ts(&n->mtime);
    n->ctime = n->mtime;
    return 0;
}

/* ---- loading directories from the backing ----------------------------- */

static int dir_load(struct labfs *fs, struct lnode *d)
{
    if (d->loaded)
        return 0;
    char p[PATH_MAX];
    int rc = dpath(fs, d, p, sizeof p);
    if (rc)
        return rc == -ENOENT ? -EIO : rc;
    int fd = openat(fs->rootfd, p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *dir = fdopendir(fd);
    if (!dir) {
        rc = -errno;
        close(fd);
        return rc;
    }
    struct dirent *de;
    while ((errno = 0, de = readdir(dir))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (d == fs->root && !strcmp(de->d_name, LABFS_CTL_NAME))
            continue;
        struct stat st;
        if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue; /* vanished under us */
        enum lkind k = S_ISREG(st.st_mode)   ? LK_REG
                       : S_ISDIR(st.st_mode) ? LK_DIR
                       : S_ISLNK(st.st_mode) ? LK_LNK
                                             : LK_CTL;
        if (k == LK_CTL)
            continue; /* devices, fifos, sockets: not mirrored */
        struct lnode *n = node_new(fs, k, st.st_mode);
        if (!n) {
            rc = -ENOMEM;
            break;
        }
        n->uid = st.st_uid;
        n->gid = st.st_gid;
        n->atime = st.st_atim;
        n->mtime = st.st_mtim;
        n->ctime = st.st_ctim;
        n->size = n->dsize = n->keep = k == LK_REG ? (uint64_t)st.st_size : 0;
        if (k == LK_LNK) {
            char t[PATH_MAX];
            ssize_t l = readlinkat(fd, de->d_name, t, sizeof t - 1);
            t[l < 0 ? 0 : l] = '\0';
            n->target = strdup(t);
        }
        if ((k == LK_LNK && !n->target) || v_attach(fs, n, d, de->d_name) ||
            d_attach(fs, n, d, de->d_name)) {
            if (n->in_v)
                v_detach(fs, n);
            node_maybe_free(fs, n);
            rc = -ENOMEM;
            break;
        }
    }
    if (!rc && errno)
        rc = -errno;
    closedir(dir);
    if (!rc)
        d->loaded = 1;
    return rc;
}

/* ---- durability --------------------------------------------------------- */

static int dur_name(struct labfs *fs, struct lnode *n);

/* Removes the backing entry of n, which is gone from the view (a directory
 * is emptied first: its former children are made durable where they are). */
static int dur_remove(struct labfs *fs, struct lnode *z)
{
    char p[PATH_MAX];
    int rc;
    if (z->kind == LK_DIR) {
        while (z->dkids) {
            struct lnode *c = z->dkids->self;
            if ((rc = dur_name(fs, c)))
                return rc;
            if (c->in_d && c->d.parent == z)
                return -EIO; /* cannot happen: the view has no child under z */
        }
    }
    if ((rc = dpath(fs, z, p, sizeof p)))
        return rc;
    if (unlinkat(fs->rootfd, p, z->kind == LK_DIR ? AT_REMOVEDIR : 0) != 0 && errno != ENOENT) {
        rc = -errno;
        log_warn("labfs: remove %s from the backing directory: %s", p, strerror(errno));
        return rc;
    }
    d_detach(fs, z);
    return 0;
}

static int dur_create(struct labfs *fs, struct lnode *n, const char *p)
{
    int fd = -1;
    switch (n->kind) {
    case LK_REG:
        fd = openat(fs->rootfd, p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                    n->mode & 07777);
        if (fd < 0)
            return -errno;
        if (fchmod(fd, n->mode & 07777) != 0 || fchown(fd, n->uid, n->gid) != 0) {
            int e = errno;
            close(fd);
            unlinkat(fs->rootfd, p, 0);
            return -e;
        }
        if (n->bfd >= 0)
            close(n->bfd);
        n->bfd = fd;
        n->dsize = 0;
        n->keep = 0;
        n->meta_dirty = 0;
        return 0;
    case LK_DIR:
        if (mkdirat(fs->rootfd, p, n->mode & 07777) != 0)
            return -errno;
        break;
    case LK_LNK:
        if (symlinkat(n->target, fs->rootfd, p) != 0)
            return -errno;
        break;
    case LK_CTL:
        return -EPERM;
    }
    if (fchownat(fs->rootfd, p, n->uid, n->gid, AT_SYMLINK_NOFOLLOW) != 0)
        return -errno;
    if (n->kind == LK_DIR && fchmodat(fs->rootfd, p, n->mode & 07777, 0) != 0)
        return -errno;
    return 0;
}

/* Makes n's current name (or its absence) durable; see the file comment. */
static int dur_name(struct labfs *fs, struct lnode *n)
{
    char from[PATH_MAX], to[PATH_MAX];
    int rc;
    if (n == fs->root)
        return 0;
    if (!n->in_v)
        return n->in_d ? dur_remove(fs, n) : 0;
    struct lnode *p = n->v.parent;
    if ((rc = dur_name(fs, p)))
        return rc;
    if (n->in_d && n->d.parent == p && !strcmp(n->d.name, n->v.name))
        return 0;
    struct lnode *displaced = NULL;
    struct lnode *z = d_find(fs, p, n->v.name);
    if (z && z != n) {
        if (z->in_v) {
            /* z moved elsewhere in the view: park it, then place it. */
            char tmp[64];
            snprintf(tmp, sizeof tmp, ".labfs-tmp-%" PRIu64, z->serial);
            if ((rc = dpath(fs, z, from, sizeof from)))
                return rc;
            const char *slash = strrchr(from, '/');
            snprintf(to, sizeof to, "%.*s%s", slash ? (int)(slash - from + 1) : 0, from, tmp);
            if (renameat(fs->rootfd, from, fs->rootfd, to) != 0)
                return -errno;
            struct lnode *zp = z->d.parent;
            d_detach(fs, z);
            if ((rc = d_attach(fs, z, zp, tmp)))
                return rc;
            displaced = z;
        } else if ((rc = dur_remove(fs, z))) {
            return rc;
        }
    }
    if ((rc = dpath(fs, p, to, sizeof to)))
        return rc;
    size_t tl = strlen(to);
    if (tl + 1 + strlen(n->v.name) + 1 > sizeof to)
        return -ENAMETOOLONG;
    if (!strcmp(to, "."))
        snprintf(to, sizeof to, "%s", n->v.name);
    else
        snprintf(to + tl, sizeof to - tl, "/%s", n->v.name);
    if (n->in_d) {
        if ((rc = dpath(fs, n, from, sizeof from)))
            return rc;
        if (renameat(fs->rootfd, from, fs->rootfd, to) != 0) {
            rc = -errno;
            log_warn("labfs: rename %s to %s in the backing directory: %s", from, to,
                     strerror(errno));
            return rc;
        }
        d_detach(fs, n);
    } else if ((rc = dur_create(fs, n, to))) {
        log_warn("labfs: create %s in the backing directory: %s", to, strerror(-rc));
        return rc;
    }
    if ((rc = d_attach(fs, n, p, n->v.name)))
        return rc;
    return displaced ? dur_name(fs, displaced) : 0;
}

/* Saves the backing bytes [off, off+len) that a flush is about to change
 * (only those below the old size; past it, restoring the size is enough). */
static int undo_save(struct flight *fl, int fd, uint64_t off, uint64_t len)
{
    if (!fl || off >= fl->old_size)
        return 0;
    if (off + len > fl->old_size)
        len = fl->old_size - off;
    /* Page-sized pieces, so that `torn` can keep or lose each one. */
    while (len) {
        uint64_t l = LABFS_PAGE - off % LABFS_PAGE < len ? LABFS_PAGE - off % LABFS_PAGE : len;
        if (fl->n == fl->cap) {
            size_t cap = fl->cap ? fl->cap * 2 : 16;
            struct undo *u = realloc(fl->u, cap * sizeof *u);
            if (!u)
                return -ENOMEM;
            fl->u = u;
            fl->cap = cap;
        }
        unsigned char *b = malloc((size_t)l);
        if (!b)
            return -ENOMEM;
        int rc = pread_full(fd, b, (size_t)l, off);
        if (rc) {
            free(b);
            return rc;
        }
        fl->u[fl->n++] = (struct undo){.off = off, .len = (size_t)l, .old = b};
        off += l;
        len -= l;
    }
    return 0;
}

static void flight_free(struct flight *fl)
{
    if (!fl)
        return;
    for (size_t i = 0; i < fl->n; i++)
        free(fl->u[i].old);
    free(fl->u);
    free(fl->path);
    if (fl->fd >= 0)
        close(fl->fd);
    free(fl);
}

/* Writes n's dirty pages and size to its backing file; *bfd gets the fd to
 * fdatasync. n must have a durable name. With fl, what the backing file
 * held before is recorded there first. */
static int dur_data(struct labfs *fs, struct lnode *n, int *bfd, struct flight *fl)
{
    int fd = node_bfd(fs, n);
    int rc;
    if (fd < 0)
        return fd;
    *bfd = fd;
    if (fl)
        fl->old_size = n->dsize;
    if (n->keep < n->dsize) {
        if ((rc = undo_save(fl, fd, n->keep, n->dsize - n->keep)))
            return rc;
        if (ftruncate(fd, (off_t)n->keep) != 0)
            return -errno;
        n->dsize = n->keep;
    }
    uint64_t end = n->dsize;
    if (n->pages.n) {
        size_t np;
        uint64_t *k = pm_sorted(&n->pages, &np);
        if (!k)
            return -ENOMEM;
        struct iovec iov[64];
        for (size_t i = 0; i < np;) {
            /* A run of consecutive pages, as one pwritev. */
            int cnt = 0;
            uint64_t start = k[i] * LABFS_PAGE, len = 0;
            while (i < np && cnt < 64 && k[i] * LABFS_PAGE == start + len &&
                   start + len < n->size) {
                uint64_t l =
                    n->size - (start + len) < LABFS_PAGE ? n->size - (start + len) : LABFS_PAGE;
                iov[cnt].iov_base = pm_get(&n->pages, k[i]);
                iov[cnt].iov_len = (size_t)l;
                cnt++;
                len += l;
                i++;
            }
            if (!cnt) { /* a page wholly past size cannot exist; skip defensively */
                i++;
                continue;
            }
            if ((rc = undo_save(fl, fd, start, len))) {
                free(k);
                return rc;
            }
            uint64_t off = start;
            int first = 0;
            while (first < cnt) {
                ssize_t w = pwritev(fd, iov + first, cnt - first, (off_t)off);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0) {
                    int e = w < 0 ? errno : EIO;
                    free(k);
                    return -e;
                }
                off += (uint64_t)w;
                while (first < cnt && (size_t)w >= iov[first].iov_len) {
                    w -= (ssize_t)iov[first].iov_len;
                    first++;
                }
                if (first < cnt) {
                    iov[first].iov_base = (char *)iov[first].iov_base + w;
                    iov[first].iov_len -= (size_t)w;
                }
            }
            fs->synced_bytes += len;
            if (start + len > end)
                end = start + len;
        }
        free(k);
        node_drop_pages(fs, n);
    }
    if (end != n->size && ftruncate(fd, (off_t)n->size) != 0)
        return -errno;
    n->dsize = n->keep = n->size;
    if (n->meta_dirty) {
        if (fchmod(fd, n->mode & 07777) != 0 || fchown(fd, n->uid, n->gid) != 0)
            return -errno;
        n->meta_dirty = 0;
    }
    return 0;
}

/* fsync of a regular file. Called with mu held. With unlock (n pinned by
 * the caller), the flush is "in flight" while the backing fdatasync runs
 * without the lock, as a disk's flush takes time: a crash meanwhile undoes
 * it (crash_flights) and the fsync fails with EIO, so only an fsync that
 * returned is durable. Names made durable on the way are not undone. */
static int dur_file(struct labfs *fs, struct lnode *n, int datasync, int unlock)
{
    int rc = dur_name(fs, n);
    if (rc || !n->in_d)
        return rc; /* an unlinked file has nowhere durable to go */
    int fd = -1;
    struct flight *fl = NULL;
    char p[PATH_MAX];
    if (unlock && !dpath(fs, n, p, sizeof p)) {
        fl = calloc(1, sizeof *fl);
        if (!fl || !(fl->path = strdup(p))) {
            free(fl);
            return -ENOMEM;
        }
        fl->fd = -1;
    }
    if ((rc = dur_data(fs, n, &fd, fl)) || fs->no_sync || !unlock) {
        /* A failed flush may have written part of its pages; what it wrote
         * stays (as a failing disk may leave it). */
        flight_free(fl);
        if (rc || fs->no_sync)
            return rc;
        return (datasync ? fdatasync(fd) : fsync(fd)) != 0 ? -errno : 0;
    }
    if (fl && (fl->fd = dup(fd)) < 0) {
        flight_free(fl);
        fl = NULL;
    }
    if (fl) {
        fl->next = fs->flights;
        fs->flights = fl;
    }
    pthread_mutex_unlock(&fs->mu);
    rc = (datasync ? fdatasync(fd) : fsync(fd)) != 0 ? -errno : 0;
    pthread_mutex_lock(&fs->mu);
    /* Frozen: the power cut has happened, so this flush did not finish. */
    while (fs->frozen && !fs->crashed)
        pthread_cond_wait(&fs->thaw_cv, &fs->mu);
    if (fl) {
        struct flight **pp = &fs->flights;
        while (*pp && *pp != fl)
            pp = &(*pp)->next;
        if (*pp)
            *pp = fl->next;
        if (fl->undone)
            rc = -EIO;
        flight_free(fl);
    }
    return rc;
}

static int dur_dir(struct labfs *fs, struct lnode *d)
{
    int rc = dur_name(fs, d);
    if (rc || !d->loaded || !d->in_v)
        return rc;
    /* Entries of d in the view, then entries that left d. Collected first:
     * dur_name reorders the sibling lists. */
    size_t cnt = 0, i = 0;
    for (struct lent *e = d->vkids; e; e = e->snext)
        cnt++;
    for (struct lent *e = d->dkids; e; e = e->snext)
        cnt++;
    struct lnode **all = malloc((cnt ? cnt : 1) * sizeof *all);
    if (!all)
        return -ENOMEM;
    for (struct lent *e = d->vkids; e; e = e->snext)
        all[i++] = e->self;
    for (struct lent *e = d->dkids; e; e = e->snext)
        all[i++] = e->self;
    for (i = 0; i < cnt && !rc; i++)
        rc = dur_name(fs, all[i]);
    free(all);
    if (!rc && d->kind == LK_DIR) {
        char p[PATH_MAX];
        if (!(rc = dpath(fs, d, p, sizeof p)) && fchmodat(fs->rootfd, p, d->mode & 07777, 0))
            rc = -errno;
        if (!rc && !fs->no_sync) {
            int fd = openat(fs->rootfd, p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (fd < 0 || fsync(fd) != 0)
                rc = -errno;
            if (fd >= 0)
                close(fd);
        }
    }
    return rc;
}

/* Everything durable: what a clean unmount or syncfs does. */
static int dur_all(struct labfs *fs)
{
    int rc = 0;
    for (struct lnode *n = fs->all.anext; n != &fs->all && !rc; n = n->anext) {
        if (n == fs->ctl)
            continue;
        if (n->kind == LK_DIR && n->in_v)
            rc = dur_dir(fs, n);
        else if (n->kind == LK_REG && n->in_v)
            rc = dur_file(fs, n, 0, 0);
        else
            rc = dur_name(fs, n);
    }
    if (!rc)
        rc = dur_dir(fs, fs->root);
    gc(fs);
    return rc;
}

/* Pending names: nodes whose view place differs from their durable one. */
static uint64_t pending_names(struct labfs *fs)
{
    uint64_t c = 0;
    for (struct lnode *n = fs->all.anext; n != &fs->all; n = n->anext) {
        if (n == fs->root || n == fs->ctl)
            continue;
        if (n->in_v != n->in_d ||
            (n->in_v && (n->v.parent != n->d.parent || strcmp(n->v.name, n->d.name))))
            c++;
    }
    return c;
}

/* ---- crash -------------------------------------------------------------- */

/* Writes the torn survivors of n's dirty pages: only pages over durable
 * bytes, each kept or lost by a coin from (seed, backing path, page). */
static void torn_file(struct labfs *fs, struct lnode *n)
{
    char p[PATH_MAX];
    uint64_t lim = n->keep < n->dsize ? n->keep : n->dsize;
    if (!n->in_d || dpath(fs, n, p, sizeof p)) {
        fs->torn_lost += n->pages.n;
        return;
    }
    uint64_t h = hash_str(mix64(fs->seed), p);
    size_t np;
    uint64_t *k = pm_sorted(&n->pages, &np);
    if (!k)
        return;
    for (size_t i = 0; i < np; i++) {
        uint64_t off = k[i] * LABFS_PAGE;
        if (off >= lim || !(mix64(h ^ mix64(k[i])) & 1)) {
            fs->torn_lost++;
            continue;
        }
        int fd = node_bfd(fs, n);
        size_t len = (size_t)(lim - off < LABFS_PAGE ? lim - off : LABFS_PAGE);
        if (fd < 0 || pwrite(fd, pm_get(&n->pages, k[i]), len, (off_t)off) != (ssize_t)len) {
            fs->torn_lost++;
            continue;
        }
        fs->torn_kept++;
        fs->dropped_bytes -= LABFS_PAGE;
    }
    free(k);
}

/* Undoes the flushes still in flight, newest first (a later flush of the
 * same file saved what the earlier one wrote). With torn, each saved page
 * is restored or left new by the coin; the old size always comes back. */
static void crash_flights(struct labfs *fs, int torn)
{
    for (struct flight *fl = fs->flights; fl; fl = fl->next) {
        uint64_t h = hash_str(mix64(fs->seed), fl->path);
        for (size_t i = fl->n; i-- > 0;) {
            struct undo *u = &fl->u[i];
            if (torn && (mix64(h ^ mix64(u->off / LABFS_PAGE)) & 1)) {
                fs->torn_kept++;
                continue;
            }
            if (pwrite(fl->fd, u->old, u->len, (off_t)u->off) != (ssize_t)u->len)
                log_error("labfs: crash: undoing an in-flight flush of %s failed: %s", fl->path,
                          strerror(errno));
            fs->torn_lost += torn;
            fs->dropped_bytes += u->len;
        }
        if (ftruncate(fl->fd, (off_t)fl->old_size) != 0)
            log_error("labfs: crash: restoring the size of %s failed: %s", fl->path,
                      strerror(errno));
        fl->undone = 1;
        fs->undone_flushes++;
    }
}

/* Drops every non-durable thing; returns the inode numbers to invalidate in
 * the kernel (malloc'd), to be done without the lock. */
static fuse_ino_t *crash_locked(struct labfs *fs, int torn, size_t *ninos)
{
    fs->crashes++;
    fs->dropped_bytes = fs->dirty_pages * LABFS_PAGE;
    fs->dropped_names = pending_names(fs);
    fs->torn_kept = fs->torn_lost = fs->undone_flushes = 0;
    crash_flights(fs, torn);
    size_t cnt = 0;
    for (struct lnode *n = fs->all.anext; n != &fs->all; n = n->anext)
        cnt++;
    fuse_ino_t *inos = malloc((cnt + 1) * sizeof *inos);
    size_t i = 0;
    for (struct lnode *n = fs->all.anext; n != &fs->all; n = n->anext) {
        if (torn && n->kind == LK_REG && n->pages.n)
            torn_file(fs, n);
        node_drop_pages(fs, n);
        if (inos && n != fs->ctl && (n->nlookup || n == fs->root))
            inos[i++] = node_ino(fs, n);
    }
    fs->crashed = 1;
    fs->frozen = 0;
    pthread_cond_broadcast(&fs->thaw_cv);
    /* Parked syncs never happened. */
    for (struct parked *pk = fs->parked, *nx; pk; pk = nx) {
        nx = pk->next;
        fuse_reply_err(pk->req, EIO);
        pk->n->nopen--;
        free(pk);
    }
    fs->parked = NULL;
    fs->parked_tail = &fs->parked;
    fs->gc_pending = 1;
    *ninos = i;
    return inos;
}

/* `thaw`: the parked syncs run now, in arrival order. */
static uint64_t thaw_locked(struct labfs *fs)
{
    uint64_t c = 0;
    fs->frozen = 0;
    pthread_cond_broadcast(&fs->thaw_cv);
    struct parked *pk = fs->parked;
    fs->parked = NULL;
    fs->parked_tail = &fs->parked;
    for (struct parked *nx; pk; pk = nx, c++) {
        nx = pk->next;
        int rc = pk->dir                 ? dur_dir(fs, pk->n)
                 : pk->n->kind == LK_REG ? dur_file(fs, pk->n, pk->datasync, 0)
                                         : 0;
        fuse_reply_err(pk->req, -rc);
        pk->n->nopen--;
        free(pk);
    }
    fs->gc_pending = 1;
    gc(fs);
    return c;
}

/* Parks a sync request while frozen; 1 if parked (or answered). */
static int park(struct labfs *fs, fuse_req_t req, struct lnode *n, int datasync, int dir)
{
    if (!fs->frozen)
        return 0;
    struct parked *pk = calloc(1, sizeof *pk);
    if (!pk) {
        fuse_reply_err(req, ENOMEM);
        return 1;
    }
    *pk = (struct parked){.req = req, .n = n, .datasync = datasync, .dir = dir};
    n->nopen++;
    *fs->parked_tail = pk;
    fs->parked_tail = &pk->next;
    return 1;
}

static void crash_invalidate(struct labfs *fs, fuse_ino_t *inos, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fuse_lowlevel_notify_inval_inode(fs->se, inos[i], 0, 0);
    free(inos);
}

/* ---- control commands ---------------------------------------------------- */

static char *ctl_exec(struct labfs *fs, const char *cmd)
{
    char *out = NULL;
    char word[32];
    size_t l = 0;
    while (*cmd == ' ' || *cmd == '\t' || *cmd == '\n')
        cmd++;
    while (cmd[l] && cmd[l] != ' ' && cmd[l] != '\n' && l < sizeof word - 1) {
        word[l] = cmd[l];
        l++;
    }
    word[l] = '\0';
    pthread_mutex_lock(&fs->mu);
    if (!strcmp(word, "stats")) {
        uint64_t files = 0, nflights = 0, nparked = 0;
        for (struct lnode *n = fs->all.anext; n != &fs->all && !fs->crashed; n = n->anext)
            files += n->pages.n > 0 ||
                     (n->kind == LK_REG && (n->size != n->dsize || n->keep != n->dsize));
        for (struct flight *fl = fs->flights; fl; fl = fl->next)
            nflights++;
        for (struct parked *pk = fs->parked; pk; pk = pk->next)
            nparked++;
        if (asprintf(&out,
                     "ok pid=%ld crashed=%d dirty_bytes=%" PRIu64 " dirty_files=%" PRIu64
                     " pending_names=%" PRIu64 " fsyncs=%" PRIu64 " fsyncdirs=%" PRIu64
                     " synced_bytes=%" PRIu64 " crashes=%" PRIu64 " dropped_bytes=%" PRIu64
                     " dropped_names=%" PRIu64 " torn_pages_kept=%" PRIu64
                     " torn_pages_lost=%" PRIu64 " undone_flushes=%" PRIu64 " frozen=%d"
                     " flushes_in_flight=%" PRIu64 " parked_syncs=%" PRIu64 " seed=%" PRIu64
                     " full=%d enospc=%" PRIu64 "\n",
                     (long)getpid(), fs->crashed, fs->dirty_pages * LABFS_PAGE, files,
                     fs->crashed ? 0 : pending_names(fs), fs->fsyncs, fs->fsyncdirs,
                     fs->synced_bytes, fs->crashes, fs->dropped_bytes, fs->dropped_names,
                     fs->torn_kept, fs->torn_lost, fs->undone_flushes, fs->frozen, nflights,
                     nparked, fs->seed, fs->full, fs->enospc) < 0)
            out = NULL;
        pthread_mutex_unlock(&fs->mu);
    } else if (!strcmp(word, "crash") || !strcmp(word, "torn")) {
        int torn = word[0] == 't';
        if (fs->crashed) {
            pthread_mutex_unlock(&fs->mu);
            return strdup("error already crashed: unmount and mount again\n");
        }
        size_t ni = 0;
        fuse_ino_t *inos = crash_locked(fs, torn, &ni);
        int r;
        if (torn)
            r = asprintf(&out,
                         "ok crashed dropped_bytes=%" PRIu64 " dropped_names=%" PRIu64
                         " undone_flushes=%" PRIu64 " torn_pages_kept=%" PRIu64
                         " torn_pages_lost=%" PRIu64 "\n",
                         fs->dropped_bytes, fs->dropped_names, fs->undone_flushes, fs->torn_kept,
                         fs->torn_lost);
        else
            r = asprintf(&out,
                         "ok crashed dropped_bytes=%" PRIu64 " dropped_names=%" PRIu64
                         " undone_flushes=%" PRIu64 "\n",
                         fs->dropped_bytes, fs->dropped_names, fs->undone_flushes);
        if (r < 0)
            out = NULL;
        pthread_mutex_unlock(&fs->mu);
        log_warn("labfs: %s: dropped %" PRIu64 " dirty bytes and %" PRIu64 " names", word,
                 fs->dropped_bytes, fs->dropped_names);
        crash_invalidate(fs, inos, ni);
    } else if (!strcmp(word, "freeze")) {
        uint64_t nf = 0;
        for (struct flight *fl = fs->flights; fl; fl = fl->next)
            nf++;
        int was = fs->frozen, crashed = fs->crashed;
        if (!crashed)
            fs->frozen = 1;
        pthread_mutex_unlock(&fs->mu);
        if (crashed)
            return strdup("error crashed: unmount and mount again\n");
        if (asprintf(&out, "ok frozen%s flushes_in_flight=%" PRIu64 "\n", was ? " (already)" : "",
                     nf) < 0)
            out = NULL;
    } else if (!strcmp(word, "thaw")) {
        if (fs->crashed) {
            pthread_mutex_unlock(&fs->mu);
            return strdup("error crashed: unmount and mount again\n");
        }
        uint64_t c = thaw_locked(fs);
        pthread_mutex_unlock(&fs->mu);
        if (asprintf(&out, "ok thawed completed_syncs=%" PRIu64 "\n", c) < 0)
            out = NULL;
    } else if (!strcmp(word, "sync")) {
        int rc = fs->crashed ? -EIO : fs->frozen ? -EAGAIN : dur_all(fs);
        pthread_mutex_unlock(&fs->mu);
        if (asprintf(&out, rc ? "error sync: %s\n" : "ok synced\n", strerror(-rc)) < 0)
            out = NULL;
    } else if (!strcmp(word, "full")) {
        const char *arg = cmd + l;
        while (*arg == ' ' || *arg == '\t')
            arg++;
        size_t al = strcspn(arg, " \t\n");
        int on = al == 2 && !strncmp(arg, "on", 2), off = al == 3 && !strncmp(arg, "off", 3);
        if (fs->crashed) {
            pthread_mutex_unlock(&fs->mu);
            return strdup("error crashed: unmount and mount again\n");
        }
        if (al && !on && !off) {
            pthread_mutex_unlock(&fs->mu);
            return strdup("error full takes on or off\n");
        }
        if (on || off)
            fs->full = on;
        int now = fs->full;
        uint64_t n = fs->enospc;
        pthread_mutex_unlock(&fs->mu);
        if (on || off)
            log_warn("labfs: full %s", on ? "on: writes needing space fail with ENOSPC" : "off");
        if (asprintf(&out, "ok full=%d enospc=%" PRIu64 "\n", now, n) < 0)
            out = NULL;
    } else {
        pthread_mutex_unlock(&fs->mu);
        if (asprintf(&out,
                     "error unknown command '%s' (crash, torn, freeze, thaw, stats, sync, full)\n",
                     word) < 0)
            out = NULL;
    }
    return out;
}

/* ---- FUSE operations ----------------------------------------------------- */

#define FS(req) ((struct labfs *)fuse_req_userdata(req))

/* Takes the lock; EIO (and no lock) once crashed. */
static int enter(fuse_req_t req, struct labfs *fs)
{
    pthread_mutex_lock(&fs->mu);
    if (!fs->crashed)
        return 0;
    pthread_mutex_unlock(&fs->mu);
    fuse_reply_err(req, EIO);
    return -1;
}

static void reply_entry(fuse_req_t req, struct labfs *fs, struct lnode *n)
{
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    e.ino = node_ino(fs, n);
    e.generation = n->serial;
    e.attr_timeout = LABFS_TIMEOUT;
    e.entry_timeout = LABFS_TIMEOUT;
    node_stat(fs, n, &e.attr);
    n->nlookup++;
    fuse_reply_entry(req, &e);
}

static void op_init(void *ud, struct fuse_conn_info *conn)
{
    /* Every write must reach us when the process makes it (no kernel-side
     * write-back), and we are the only writer, so cached data stays valid. */
    conn->want &= ~(unsigned)(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_AUTO_INVAL_DATA);
}

static void op_destroy(void *ud)
{
    struct labfs *fs = ud;
    pthread_mutex_lock(&fs->mu);
    if (!fs->crashed) {
        int rc = dur_all(fs);
        if (rc)
            log_error("labfs: making everything durable at unmount: %s", strerror(-rc));
    }
    pthread_mutex_unlock(&fs->mu);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct labfs *fs = FS(req);
    struct lnode *p = ino_node(fs, parent), *n = NULL;
    int rc = 0;
    /* The control file and the root's attributes stay reachable after a
     * crash: they are how the crash is inspected and the fs unmounted. */
    if (p == fs->root && !strcmp(name, LABFS_CTL_NAME)) {
        pthread_mutex_lock(&fs->mu);
        reply_entry(req, fs, fs->ctl);
        pthread_mutex_unlock(&fs->mu);
        return;
    }
    if (enter(req, fs))
        return;
    if (p->kind != LK_DIR)
        rc = ENOTDIR;
    else if ((rc = -dir_load(fs, p)) == 0 && !(n = v_find(fs, p, name)))
        rc = ENOENT;
    if (n)
        reply_entry(req, fs, n);
    else
        fuse_reply_err(req, rc);
    pthread_mutex_unlock(&fs->mu);
}

static void forget_one(struct labfs *fs, fuse_ino_t ino, uint64_t nl)
{
    struct lnode *n = ino_node(fs, ino);
    n->nlookup = n->nlookup > nl ? n->nlookup - nl : 0;
    node_maybe_free(fs, n);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nl)
{
    struct labfs *fs = FS(req);
    pthread_mutex_lock(&fs->mu);
    forget_one(fs, ino, nl);
    pthread_mutex_unlock(&fs->mu);
    fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
    struct labfs *fs = FS(req);
    pthread_mutex_lock(&fs->mu);
    for (size_t i = 0; i < count; i++)
        forget_one(fs, f[i].ino, f[i].nlookup);
    pthread_mutex_unlock(&fs->mu);
    fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct labfs *fs = FS(req);
    struct lnode *n = ino_node(fs, ino);
    pthread_mutex_lock(&fs->mu);
    if (fs->crashed && n != fs->root && n != fs->ctl) {
        pthread_mutex_unlock(&fs->mu);
        fuse_reply_err(req, EIO);
        return;
    }
    struct stat st;
    node_stat(fs, n, &st);
    pthread_mutex_unlock(&fs->mu);
    fuse_reply_attr(req, &st, LABFS_TIMEOUT);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *a, int set,
                       struct fuse_file_info *fi)
{
    struct labfs *fs = FS(req);
    if (enter(req, fs))
        return;
    struct lnode *n = ino_node(fs, ino);
    int rc = 0;
    if (n == fs->ctl) {
        rc = set & FUSE_SET_ATTR_SIZE ? 0 : EPERM; /* O_TRUNC on the control file */
        goto out;
    }
    if (set & FUSE_SET_ATTR_SIZE) {
        if (n->kind != LK_REG) {
            rc = n->kind == LK_DIR ? EISDIR : EINVAL;
            goto out;
        }
        if ((rc = -node_resize(fs, n, (uint64_t)a->st_size)))
            goto out;
    }
    if (set & FUSE_SET_ATTR_MODE) {
        n->mode = (n->mode & S_IFMT) | (a->st_mode & 07777);
        n->meta_dirty = 1;
    }
    if (set & FUSE_SET_ATTR_UID) {
        n->uid = a->st_uid;
        n->meta_dirty = 1;
    }
    if (set & FUSE_SET_ATTR_GID) {
        n->gid = a->st_gid;
        n->meta_dirty = 1;
    }
    if (set & FUSE_SET_ATTR_ATIME_NOW)
        now_ts(&n->atime);
    else if (set & FUSE_SET_ATTR_ATIME)
        n->atime = a->st_atim;
    if (set & FUSE_SET_ATTR_MTIME_NOW)
        now_ts(&n->mtime);
    else if (set & FUSE_SET_ATTR_MTIME)
        n->mtime = a->st_mtim;
    now_ts(&n->ctime);
out:
    if (rc) {
        fuse_reply_err(req, rc);
    } else {
        struct stat st;
        node_stat(fs, n, &st);
        fuse_reply_attr(req, &st, LABFS_TIMEOUT);
    }
    pthread_mutex_unlock(&fs->mu);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
    struct labfs *fs = FS(req);
    if (enter(req, fs))
        return;
    struct lnode *n = ino_node(fs, ino);
    if (n->kind == LK_LNK)
        fuse_reply_readlink(req, n->target);
    else
        fuse_reply_err(req, EINVAL);
    pthread_mutex_unlock(&fs->mu);
}

/* Creates a view-only node under parent; *out set. Errors as errno. */
static int make_node(fuse_req_t req, struct labfs *fs, fuse_ino_t parent, const char *name,
                     enum lkind k, mode_t mode, const char *target, struct lnode **out)
{
    struct lnode *p = ino_node(fs, parent);
    int rc;
    if (p->kind != LK_DIR)
        return ENOTDIR;
    if (p == fs->root && !strcmp(name, LABFS_CTL_NAME))
        return EEXIST;
    if ((rc = dir_load(fs, p)))
        return -rc;
    if (v_find(fs, p, name))
        return EEXIST;
    if (strlen(name) > NAME_MAX)
        return ENAMETOOLONG;
    const struct fuse_ctx *c = fuse_req_ctx(req);
    struct lnode *n = node_new(fs, k, mode);
    if (!n)
        return ENOMEM;
    n->uid = c->uid;
    n->gid = c->gid;
    if (p->mode & S_ISGID) {
        n->gid = p->gid;
        if (k == LK_DIR)
            n->mode |= S_ISGID;
    }
    if (k == LK_DIR)
        n->loaded = 1;
    if ((target && !(n->target = strdup(target))) || v_attach(fs, n, p, name)) {
        node_maybe_free(fs, n);
        return ENOMEM;
    }
    p->mtime = p->ctime = n->mtime;
    *out = n;
    return 0;
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    struct labfs *fs = FS(req);
    if (enter(req, fs))
        return;
    struct lnode *n;
    int rc = S_ISREG(mode) ? make_node(req, fs, parent, name, LK_REG, mode, NULL, &n) : EPERM;
    if (rc)
        fuse_reply_err(req, rc);
    else
        reply_entry(req, fs, n);
    pthread_mutex_unlock(&fs->mu);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    struct labfs *fs = FS(req);
    if (enter(req, fs))
        return;
    struct lnode *n;
    int rc;
    if (fs->full) /* a directory needs a block for its entries */
        fs->enospc++, rc = ENOSPC;
    else
        rc = make_node(req, fs, parent, name, LK_DIR, S_IFDIR | (mode & 07777), NULL, &n);
    if (rc)
        fuse_reply_err(req, rc);
    else
        reply_entry(req, fs, n);
    pthread_mutex_unlock(&fs->mu);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    struct labfs *fs = FS(req);
    if (enter(req, fs))
        return;
    struct lnode *n;
    int rc;
    if (fs->full) /* the target's bytes need a block */
        fs->enospc++, rc = ENOSPC;
    else
        rc = make_node(req, fs, parent, name, LK_LNK, S_IFLNK | 0777, link, &n);
    if (rc)
        fuse_reply_err(req, rc);
    else
        reply_entry(req, fs, n);
    pthread_mutex_unlock(&fs->mu);
}

static void remove_name(fuse_req_t req, fuse_ino_t parent, const char *name, int dir)
{
    struct labfs *fs = FS(req);
    if (enter(req, fs))
        return;
    struct lnode *p = ino_node(fs, parent), *n = NULL;
    int rc = 0;
    if (p == fs->root && !strcmp(name, LABFS_CTL_NAME))
        rc = EPERM;
    else if ((rc = -dir_load(fs, p)) == 0 && !(n = v_find(fs, p, name)))
        rc = ENOENT;
    else if (!rc && dir && n->kind != LK_DIR)
        rc = ENOTDIR;
    else if (!rc && !dir && n->kind == LK_DIR)
        rc = EISDIR;
    else if (!rc && dir && !(rc = -dir_load(fs, n)) && n->vkids)
        rc = ENOTEMPTY;
    if (!rc) {
        v_detach(fs, n);
        now_ts(&p->mtime);
        p->ctime = n->ctime = p->mtime;
        node_maybe_free(fs, n);
    }
    fuse_reply_err(req, rc);
    pthread_mutex_unlock(&fs->mu);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    remove_name(req, parent, name, 0);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    remove_name(req, parent, name, 1);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    struct labfs *fs = FS(req);
    if (enter(req, fs))
        return;
    struct lnode *p = ino_node(fs, parent), *q = ino_node(fs, newparent), *s = NULL, *t = NULL;
    int rc = 0;
    if (flags & ~(unsigned)RENAME_NOREPLACE) {
        rc = EINVAL; /* RENAME_EXCHANGE, RENAME_WHITEOUT: not supported */
        goto out;
    }
    if ((p == fs->root && !strcmp(name, LABFS_CTL_NAME)) ||
        (q == fs->root && !strcmp(newname, LABFS_CTL_NAME))) {
        rc = EPERM;
        goto out;
    }
    if ((rc = -dir_load(fs, p)) || (rc = -dir_load(fs, q)))
        goto out;
    if (!(s = v_find(fs, p, name))) {
        rc = ENOENT;
        goto out;
    }
    if (strlen(newname) > NAME_MAX) {
        rc = ENAMETOOLONG;
        goto out;
    }
    for (struct lnode *x = q; x != fs->root; x = x->v.parent)
        if (x == s) {
            rc = EINVAL; /* into its own subtree */
            goto out;
        }
    t = v_find(fs, q, newname);
    if (t == s)
        goto out;
    if (t) {
        if (flags & RENAME_NOREPLACE)
            rc = EEXIST;
        else if (s->kind == LK_DIR && t->kind != LK_DIR)
            rc = ENOTDIR;
        else if (s->kind != LK_DIR && t->kind == LK_DIR)
            rc = EISDIR;
        else if (t->kind == LK_DIR && !(rc = -dir_load(fs, t)) && t->vkids)
            rc = ENOTEMPTY;
        if (rc)
            goto out;
        v_detach(fs, t);
        now_ts(&t->ctime);
    }
    v_detach(fs, s);
    if ((rc = -v_attach(fs, s, q, newname))) {
        /* Out of memory half-way: put s back where it was. */
        if (v_attach(fs, s, p, name))
            log_error("labfs: rename lost %s (out of memory)", name);
        goto out;
    }
    now_ts(&s->ctime);
    p->mtime = p->ctime = q->mtime = q->ctime = s->ctime;
    if (t)
        node_maybe_free(fs, t);
out:
    fuse_reply_err(req, rc);
    pthread_mutex_unlock(&fs->mu);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    fuse_reply_err(req, EPERM); /* hard links are not supported (docs/labfs.md) */
}

static int open_handle(struct labfs *fs, struct lnode *n, struct fuse_file_info *fi)
{
    struct lhandle *h = calloc(1, sizeof *h);
    if (!h)
        return ENOMEM;
    h->n = n;
    h->flags = fi->flags;
    n->nopen++;
    fi->fh = (uint64_t)(uintptr_t)h;
    if (n == fs->ctl) {
        fi->direct_io = 1;
        fi->nonseekable = 1;
    } else {
        fi->keep_cache = 1;
    }
    return 0;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct labfs *fs = FS(req);
    struct lnode *n = ino_node(fs, ino);
    pthread_mutex_lock(&fs->mu);
    int rc = 0;
    if (fs->crashed && n != fs->ctl) {
        rc = EIO;
    } else if (n->kind == LK_DIR) {
        rc = EISDIR;
    } else if (n->kind == LK_REG) {
        /* Keep the backing file open while the node is: an unlink made
         * durable later must not cut an open file off its bytes. */
        if (n->in_d && n->bfd < 0 && n->dsize > 0) {
            int fd = node_bfd(fs, n);
            rc = fd < 0 ? -fd : 0;
        }
        if (!rc && (fi->flags & O_TRUNC))
            rc = -node_resize(fs, n, 0);
    }
    if (!rc)
        rc = open_handle(fs, n, fi);
    if (rc)
        fuse_reply_err(req, rc);
    else
        fuse_reply_open(req, fi);
    pthread_mutex_unlock(&fs->mu);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    struct labfs *fs = FS(req);
    if (enter(req, fs))
        return;
    struct lnode *n;
    int rc = make_node(req, fs, parent, name, LK_REG, S_IFREG | (mode & 07777), NULL, &n);
    if (!rc && (rc = open_handle(fs, n, fi)))
        v_detach(fs, n), node_maybe_free(fs, n);
    if (rc) {
        fuse_reply_err(req, rc);
    } else {
        struct fuse_entry_param e;
        memset(&e, 0, sizeof e);
        e.ino = node_ino(fs, n);
        e.generation = n->serial;
        e.attr_timeout = e.entry_timeout = LABFS_TIMEOUT;
        node_stat(fs, n, &e.attr);
        n->nlookup++;
        fuse_reply_create(req, &e, fi);
    }
    pthread_mutex_unlock(&fs->mu);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    struct labfs *fs = FS(req);
    struct lhandle *h = (struct lhandle *)(uintptr_t)fi->fh;
    if (h->n == fs->ctl) {
        /* The cursor moves before the reply: once the reply is out, the
         * reader's next read may already run on another thread. */
        pthread_mutex_lock(&fs->mu);
        size_t left = h->reply_len - h->reply_off;
        size_t n = size < left ? size : left;
        char *copy = n ? malloc(n) : NULL;
        if (copy)
            memcpy(copy, h->reply + h->reply_off, n);
        h->reply_off += copy ? n : 0;
        pthread_mutex_unlock(&fs->mu);
        if (n && !copy)
            fuse_reply_err(req, ENOMEM);
        else
            fuse_reply_buf(req, copy, n);
        free(copy);
        return;
    }
    if (enter(req, fs))
        return;
    struct lnode *n = h->n;
    uint64_t o = (uint64_t)off;
    size_t len = o >= n->size ? 0 : (n->size - o < size ? (size_t)(n->size - o) : size);
    unsigned char *buf = len ? malloc(len) : NULL;
    int rc = len && !buf ? -ENOMEM : len ? node_read(fs, n, buf, len, o) : 0;
    pthread_mutex_unlock(&fs->mu);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_buf(req, (const char *)buf, len);
    free(buf);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    struct labfs *fs = FS(req);
    struct lhandle *h = (struct lhandle *)(uintptr_t)fi->fh;
    if (h->n == fs->ctl) {
        char cmd[64];
        size_t l = size < sizeof cmd - 1 ? size : sizeof cmd - 1;
        memcpy(cmd, buf, l);
        cmd[l] = '\0';
        char *r = ctl_exec(fs, cmd);
        pthread_mutex_lock(&fs->mu);
        free(h->reply);
        h->reply = r;
        h->reply_len = r ? strlen(r) : 0;
        h->reply_off = 0;
        pthread_mutex_unlock(&fs->mu);
        if (r)
            fuse_reply_write(req, size);
        else
            fuse_reply_err(req, ENOMEM);
        return;
    }
    if (enter(req, fs))
        return;
    int rc;
    /* Full: an overwrite of bytes the file has needs no new block; a write
     * that grows the file does, and fails whole (no short write). */
    if (fs->full && (uint64_t)off + size > h->n->size) {
        fs->enospc++;
        rc = -ENOSPC;
    } else {
        rc = node_write(fs, h->n, buf, size, (uint64_t)off);
    }
    pthread_mutex_unlock(&fs->mu);
    if (rc)
        fuse_reply_err(req, -rc);
    else
        fuse_reply_write(req, size);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fuse_reply_err(req, 0); /* close() is not a durability point */
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct labfs *fs = FS(req);
    struct lhandle *h = (struct lhandle *)(uintptr_t)fi->fh;
    pthread_mutex_lock(&fs->mu);
    h->n->nopen--;
    node_maybe_free(fs, h->n);
    pthread_mutex_unlock(&fs->mu);
    free(h->reply);
    free(h);
    fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    struct labfs *fs = FS(req);
    if (enter(req, fs))
        return;
    struct lnode *n = ino_node(fs, ino);
    int rc = 0;
    if (n != fs->ctl && park(fs, req, n, datasync, 0)) {
        fs->fsyncs++;
        pthread_mutex_unlock(&fs->mu);
        return;
    }
    if (n != fs->ctl) {
        fs->fsyncs++;
        n->nopen++; /* pinned while the lock is dropped */
        rc = dur_file(fs, n, datasync, 1);
        n->nopen--;
        if (rc)
            log_warn("labfs: fsync: %s", strerror(-rc));
        gc(fs);
    }
    pthread_mutex_unlock(&fs->mu);
    fuse_reply_err(req, -rc);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct labfs *fs = FS(req);
    if (enter(req, fs))
        return;
    struct lnode *d = ino_node(fs, ino);
    struct ldirh *h = NULL;
    int rc = d->kind != LK_DIR ? ENOTDIR : -dir_load(fs, d);
    if (!rc) {
        size_t cnt = 2;
        for (struct lent *e = d->vkids; e; e = e->snext)
            cnt++;
        h = calloc(1, sizeof *h);
        if (!h || !(h->e = calloc(cnt, sizeof *h->e))) {
            rc = ENOMEM;
        } else {
            h->e[0].name = strdup(".");
            h->e[0].ino = node_ino(fs, d);
            h->e[0].type = S_IFDIR;
            h->e[1].name = strdup("..");
            h->e[1].ino = d->in_v ? node_ino(fs, d->v.parent) : node_ino(fs, d);
            h->e[1].type = S_IFDIR;
            h->n = 2;
            for (struct lent *e = d->vkids; e; e = e->snext, h->n++) {
                h->e[h->n].name = strdup(e->name);
                h->e[h->n].ino = node_ino(fs, e->self);
                h->e[h->n].type = e->self->mode & S_IFMT;
            }
            for (size_t i = 0; i < h->n; i++)
                if (!h->e[i].name)
                    rc = ENOMEM;
        }
    }
    pthread_mutex_unlock(&fs->mu);
    if (rc) {
        if (h) {
            for (size_t i = 0; h->e && i < h->n; i++)
                free(h->e[i].name);
            free(h->e);
            free(h);
        }
        fuse_reply_err(req, rc);
        return;
    }
    fi->fh = (uint64_t)(uintptr_t)h;
    fuse_reply_open(req, fi);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    struct labfs *fs = FS(req);
    struct ldirh *h = (struct ldirh *)(uintptr_t)fi->fh;
    if (fs->crashed) { /* a racy read is fine: the snapshot is harmless */
        fuse_reply_err(req, EIO);
        return;
    }
    char *buf = malloc(size);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    size_t used = 0;
    for (size_t i = (size_t)off; i < h->n; i++) {
        struct stat st;
        memset(&st, 0, sizeof st);
        st.st_ino = h->e[i].ino;
        st.st_mode = h->e[i].type;
        size_t l = fuse_add_direntry(req, buf + used, size - used, h->e[i].name, &st, (off_t)i + 1);
        if (l > size - used)
            break;
        used += l;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct ldirh *h = (struct ldirh *)(uintptr_t)fi->fh;
    for (size_t i = 0; i < h->n; i++)
        free(h->e[i].name);
    free(h->e);
    free(h);
    fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    struct labfs *fs = FS(req);
    if (enter(req, fs))
        return;
    fs->fsyncdirs++;
    if (park(fs, req, ino_node(fs, ino), datasync, 1)) {
        pthread_mutex_unlock(&fs->mu);
        return;
    }
    int rc = dur_dir(fs, ino_node(fs, ino));
    if (rc)
        log_warn("labfs: fsync of a directory: %s", strerror(-rc));
    gc(fs);
    pthread_mutex_unlock(&fs->mu);
    fuse_reply_err(req, -rc);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct labfs *fs = FS(req);
    struct statvfs sv;
    if (fstatvfs(fs->rootfd, &sv) != 0) {
        fuse_reply_err(req, errno);
        return;
    }
    pthread_mutex_lock(&fs->mu);
    if (fs->full) /* df shows what the writes see */
        sv.f_bfree = sv.f_bavail = 0;
    pthread_mutex_unlock(&fs->mu);
    fuse_reply_statfs(req, &sv);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                         struct fuse_file_info *fi)
{
    struct labfs *fs = FS(req);
    if (mode & ~FALLOC_FL_KEEP_SIZE) {
        fuse_reply_err(req, EOPNOTSUPP);
        return;
    }
    if (enter(req, fs))
        return;
    struct lnode *n = ino_node(fs, ino);
    int rc = 0;
    if (n->kind != LK_REG)
        rc = ENODEV;
    else if (fs->full) /* fallocate is asking for blocks */
        fs->enospc++, rc = ENOSPC;
    else if (!(mode & FALLOC_FL_KEEP_SIZE) && (uint64_t)(off + len) > n->size)
        rc = -node_resize(fs, n, (uint64_t)(off + len));
    pthread_mutex_unlock(&fs->mu);
    fuse_reply_err(req, rc);
}

static const struct fuse_lowlevel_ops labfs_ops = {
    .init = op_init,
    .destroy = op_destroy,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .symlink = op_symlink,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .rename = op_rename,
    .link = op_link,
    .open = op_open,
    .create = op_create,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .fsyncdir = op_fsyncdir,
    .statfs = op_statfs,
    .fallocate = op_fallocate,
};

/* ---- life cycle ---------------------------------------------------------- */

static int fs_init(struct labfs *fs, const struct labfs_opts *o, struct nerr *err)
{
    memset(fs, 0, sizeof *fs);
    pthread_mutex_init(&fs->mu, NULL);
    pthread_cond_init(&fs->thaw_cv, NULL);
    fs->parked_tail = &fs->parked;
    fs->all.anext = fs->all.aprev = &fs->all;
    fs->seed = o->seed;
    fs->no_sync = o->no_backing_sync;
    fs->rootfd = open(o->backing, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fs->rootfd < 0)
        return nerr_sys(err, errno, "labfs: backing directory %s", o->backing);
    struct stat st;
    if (fstat(fs->rootfd, &st) != 0)
        return nerr_sys(err, errno, "labfs: stat %s", o->backing);
    fs->root = node_new(fs, LK_DIR, st.st_mode);
    fs->ctl = node_new(fs, LK_CTL, S_IFREG | 0600);
    if (!fs->root || !fs->ctl)
        return nerr_set(err, NERR_NOMEM, "labfs: out of memory");
    fs->root->uid = st.st_uid;
    fs->root->gid = st.st_gid;
    fs->root->in_v = fs->root->in_d = 1;
    fs->ctl->uid = getuid();
    fs->ctl->gid = getgid();
    return 0;
}

static void fs_free(struct labfs *fs)
{
    for (struct parked *pk = fs->parked, *nx; pk; pk = nx) {
        nx = pk->next; /* the kernel is gone: nobody waits for an answer */
        free(pk);
    }
    for (struct lnode *n = fs->all.anext, *nx; n != &fs->all; n = nx) {
        nx = n->anext;
        if (n->in_v && n != fs->root)
            free(n->v.name);
        if (n->in_d && n != fs->root)
            free(n->d.name);
        pm_clear(&n->pages);
        if (n->bfd >= 0)
            close(n->bfd);
        free(n->target);
        free(n);
    }
    free(fs->vt.b);
    free(fs->dt.b);
    if (fs->rootfd >= 0)
        close(fs->rootfd);
    pthread_cond_destroy(&fs->thaw_cv);
    pthread_mutex_destroy(&fs->mu);
}

static void ready_say(int *fd, const char *msg)
{
    if (*fd < 0)
        return;
    ssize_t r = write(*fd, msg, strlen(msg));
    (void)r;
    close(*fd);
    *fd = -1;
}

int labfs_run(const struct labfs_opts *o, int ready_fd, struct nerr *err)
{
    struct labfs fs;
    struct fuse_session *se = NULL;
    struct fuse_loop_config *cfg = NULL;
    int rc, mounted = 0, handlers = 0;
    char msg[NERR_MSG_MAX + 8];
    char *argv[] = {"labfs", "-o", "fsname=labfs,subtype=labfs,allow_other,default_permissions",
                    NULL};
    struct fuse_args args = FUSE_ARGS_INIT(3, argv);

    if ((rc = labfs_check_opts(o, err)))
        goto fail_early;
    if ((rc = fs_init(&fs, o, err)))
        goto fail;
    se = fuse_session_new(&args, &labfs_ops, sizeof labfs_ops, &fs);
    if (!se) {
        rc = nerr_set(err, NERR_IO, "labfs: fuse_session_new failed");
        goto fail;
    }
    fs.se = se;
    if (fuse_set_signal_handlers(se) != 0) {
        rc = nerr_set(err, NERR_IO, "labfs: cannot install signal handlers");
        goto fail;
    }
    handlers = 1;
    if (fuse_session_mount(se, o->mountpoint) != 0) {
        rc = nerr_set(err, NERR_IO, "labfs: mount %s failed (is /dev/fuse usable?)", o->mountpoint);
        goto fail;
    }
    mounted = 1;
    log_info("labfs: %s mounted over %s (seed %" PRIu64 ")", o->mountpoint, o->backing, o->seed);
    ready_say(&ready_fd, "OK\n");
    cfg = fuse_loop_cfg_create();
    if (!cfg) {
        rc = nerr_set(err, NERR_NOMEM, "labfs: out of memory");
        goto fail;
    }
    fuse_loop_cfg_set_max_threads(cfg, 16);
    fuse_loop_cfg_set_idle_threads(cfg, 4);
    int lrc = fuse_session_loop_mt(se, cfg);
    if (lrc != 0 && lrc != -ENODEV && lrc != ENODEV)
        log_warn("labfs: the FUSE loop ended with error %d", lrc);
    log_info("labfs: %s: the kernel let go; finishing", o->mountpoint);
    rc = 0;
fail:
    if (rc) {
        snprintf(msg, sizeof msg, "ERR %s\n", err ? err->msg : "labfs failed");
        ready_say(&ready_fd, msg);
    }
    if (cfg)
        fuse_loop_cfg_destroy(cfg);
    if (mounted)
        fuse_session_unmount(se);
    if (handlers)
        fuse_remove_signal_handlers(se);
    if (se)
        fuse_session_destroy(se); /* calls op_destroy: everything durable */
    fuse_opt_free_args(&args); /* fuse_session_new may have copied them */
    fs_free(&fs);
    if (!rc)
        log_info("labfs: %s unmounted", o->mountpoint);
    return rc;
fail_early:
    fuse_opt_free_args(&args);
    snprintf(msg, sizeof msg, "ERR %s\n", err ? err->msg : "labfs: bad options");
    ready_say(&ready_fd, msg);
    return rc;
}
