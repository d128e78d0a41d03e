#include "store/wal.h"

#include "lib/clock.h"
#include "lib/crc32c.h"
#include "lib/le.h"
#include "lib/log.h"

#include "lib/invariant.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* Byte layout: docs/wal.md. All integers little-endian. */
#define SEG_MAGIC "NINESWAL"
#define SEG_VERSION 1u
#define SEG_HDR 32u /* magic[8] version[4] hdr_size[4] first_lsn[8] reserved[4] crc[4] */
#define REC_HDR 16u /* len[4] lsn[8] crc[4]; crc covers len, lsn, payload */
#define SEG_NAME_DIGITS 20
#define SEG_NAME_LEN (SEG_NAME_DIGITS + 4) /* "%020llu.wal" */
#define BATCH_IOV 512                      /* below every IOV_MAX we meet (1024 on Linux) */

struct wal_rec {
    struct wal_rec *next;
    uint64_t lsn;
    wal_done_fn done;
    void *arg;
    uint32_t len;          /* payload bytes */
    unsigned char bytes[]; /* REC_HDR header (filled by the pool thread) + payload */
};

struct wal_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct wal *head, *tail; /* WALs with pending records, FIFO for fairness */
    int stop;
    int nthreads;
    pthread_t *threads;
};

struct wal {
    char *dir;
    int dirfd;
    struct wal_options opt;
    struct wal_pool *pool;
    struct wal *qnext; /* pool queue link; guarded by pool->mu */

    /* Serialises wal_release, wal_truncate_suffix and wal_reset, so that
     * segment files are always deleted in an order that leaves a contiguous
     * log on disk should the node crash midway. Taken before mu. */
    pthread_mutex_t admin_mu;

    pthread_mutex_t mu;     /* guards the fields down to stats */
    pthread_cond_t idle_cv; /* broadcast when scheduled drops to 0 */
    struct wal_rec *pend_head, *pend_tail;
    uint64_t last_lsn; /* last LSN assigned */
    uint64_t base_lsn; /* LSN of the first stored (or next) record */
    int scheduled;     /* queued in the pool or being written by a pool thread */
    int failed;
    int closing;
    uint64_t *segs; /* first LSN of each segment file, ascending */
    size_t nsegs, segs_cap;
    struct wal_stats stats;

    /* The current segment. Touched only by the single pool thread running a
     * batch for this WAL, or by a quiescent caller (open, truncate, reset). */
    int cur_fd;
    uint64_t cur_size;         /* bytes of header and records, header included */
    uint64_t cur_alloc;        /* bytes in the file: cur_size plus zeroed space ahead */
    uint64_t cur_records;      /* records in the file */
    int cur_dirty;             /* written since the last fdatasync */
    uint64_t unsafe_synced_ms; /* unsafe mode: when its last fdatasync began */
};

/* ---- encoding ---------------------------------------------------------- */

static void seg_header_encode(unsigned char *h, uint64_t first_lsn)
{
    memcpy(h, SEG_MAGIC, 8);
    le_put32(h + 8, SEG_VERSION);
    le_put32(h + 12, SEG_HDR);
    le_put64(h + 16, first_lsn);
    le_put32(h + 24, 0);
    le_put32(h + 28, crc32c(0, h, 28));
}

/* 0 if h holds a valid header for a segment named after first_lsn, else why not. */
static const char *seg_header_check(const unsigned char *h, size_t size, uint64_t first_lsn)
{
    if (size < SEG_HDR)
        return "incomplete segment header";
    if (memcmp(h, SEG_MAGIC, 8) != 0)
        return "bad segment magic";
    if (le_get32(h + 28) != crc32c(0, h, 28))
        return "bad segment header CRC";
    if (le_get32(h + 8) != SEG_VERSION || le_get32(h + 12) != SEG_HDR)
        return "unsupported segment format version";
    if (le_get64(h + 16) != first_lsn)
        return "segment header LSN does not match its file name";
    return NULL;
}

static void rec_header_encode(struct wal_rec *r)
{
    le_put32(r->bytes, r->len);
    le_put64(r->bytes + 4, r->lsn);
    uint32_t c = crc32c(0, r->bytes, 12);
    le_put32(r->bytes + 12, crc32c(c, r->bytes + REC_HDR, r->len));
}

/* Checks the record at off in a segment image of size bytes. On success
 * returns NULL and sets *len and *lsn; otherwise says what is wrong. The LSN
 * is not judged here: the caller knows what it expects. */
static const char *rec_check(const unsigned char *base, size_t size, size_t off, uint32_t *len,
                             uint64_t *lsn)
{
    if (size - off < REC_HDR)
        return "short record header";
    const unsigned char *p = base + off;
    uint32_t n = le_get32(p);
    if (n == 0)
        return "zero length";
    if (n > WAL_MAX_PAYLOAD)
        return "length over the limit";
    if (size - off - REC_HDR < n)
        return "short payload";
    uint32_t c = crc32c(crc32c(0, p, 12), p + REC_HDR, n);
    if (c != le_get32(p + 12))
        return "bad CRC";
    *len = n;
    *lsn = le_get64(p + 4);
    return NULL;
}

/* Searches byte by byte from off for a record whose CRC verifies and whose
 * LSN is above after_lsn: proof that the damage at the caller's offset is not
 * a torn tail. The LSN must also be reachable in the bytes left (each record
 * takes at least REC_HDR + 1 bytes), which rejects almost every position
 * before paying for a CRC. Returns the offset or -1. */
static long long find_valid_after(const unsigned char *base, size_t size, size_t off,
                                  uint64_t after_lsn)
{
    for (; off + REC_HDR < size; off++) {
        const unsigned char *p = base + off;
        uint32_t n = le_get32(p);
        uint64_t lsn = le_get64(p + 4);
        if (n == 0 || n > WAL_MAX_PAYLOAD || size - off - REC_HDR < n)
            continue;
        if (lsn <= after_lsn || lsn - after_lsn > (size - off) / (REC_HDR + 1) + 1)
            continue;
        uint32_t l;
        uint64_t s;
        if (!rec_check(base, size, off, &l, &s))
            return (long long)off;
    }
    return -1;
}

/* ---- files ------------------------------------------------------------- */

static void seg_name(uint64_t first_lsn, char *buf, size_t cap)
{
    snprintf(buf, cap, "%020llu.wal", (unsigned long long)first_lsn);
}

static void seg_path(const struct wal *w, uint64_t first_lsn, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%020llu.wal", w->dir, (unsigned long long)first_lsn);
}

/* Parses a segment file name; 0 and *first set when it is one. */
static int seg_parse_name(const char *name, uint64_t *first)
{
    if (strlen(name) != SEG_NAME_LEN || strcmp(name + SEG_NAME_DIGITS, ".wal") != 0)
        return -1;
    uint64_t v = 0;
    for (int i = 0; i < SEG_NAME_DIGITS; i++) {
        if (name[i] < '0' || name[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (v == 0)
        return -1;
    *first = v;
    return 0;
}

static int mkdir_p(const char *path, struct nerr *err)
{
    char *tmp = strdup(path);
    if (!tmp)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    for (char *p = tmp + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
            int e = errno;
            int rc = nerr_sys(err, e, "wal: mkdir %s", tmp);
            free(tmp);
            return rc;
        }
        if (c == '\0')
            break;
        *p = c;
    }
    free(tmp);
    return 0;
}

/* A read-only image of one segment file. */
struct seg_map {
    unsigned char *base;
    size_t size;
};

static int seg_map_open(struct wal *w, uint64_t first, struct seg_map *m, struct nerr *err)
{
    char path[PATH_MAX];
    char name[SEG_NAME_LEN + 1];
    struct stat st;
    int rc = 0;

    seg_path(w, first, path, sizeof path);
    seg_name(first, name, sizeof name);
    m->base = NULL;
    m->size = 0;
    int fd = openat(w->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return nerr_sys(err, errno, "wal: open %s", path);
    if (fstat(fd, &st) != 0) {
        rc = nerr_sys(err, errno, "wal: stat %s", path);
        goto out;
    }
    m->size = (size_t)st.st_size;
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            rc = nerr_sys(err, errno, "wal: mmap %s", path);
            m->size = 0;
            goto out;
        }
        m->base = p;
    }
out:
    close(fd);
    return rc;
}

static void seg_map_close(struct seg_map *m)
{
    if (m->base)
        munmap(m->base, m->size);
    m->base = NULL;
    m->size = 0;
}

static int dir_sync(struct wal *w, struct nerr *err)
{
    if (fsync(w->dirfd) != 0)
        return nerr_sys(err, errno, "wal: fsync directory %s", w->dir);
    return 0;
}

/* Deletes segment files [from, nsegs) newest first, each deletion made
 * durable before the next, so a crash leaves a contiguous prefix. */
static int segs_unlink_tail(struct wal *w, size_t from, struct nerr *err)
{
    char name[SEG_NAME_LEN + 1];
    while (w->nsegs > from) {
        uint64_t first = w->segs[w->nsegs - 1];
        seg_name(first, name, sizeof name);
        if (unlinkat(w->dirfd, name, 0) != 0 && errno != ENOENT)
            return nerr_sys(err, errno, "wal: unlink %s/%s", w->dir, name);
        int rc = dir_sync(w, err);
        if (rc)
            return rc;
        w->nsegs--;
        w->stats.segments = w->nsegs;
    }
    return 0;
}

static int segs_reserve(struct wal *w, size_t n)
{
    if (n <= w->segs_cap)
        return 0;
    size_t cap = w->segs_cap ? w->segs_cap * 2 : 16;
    while (cap < n)
        cap *= 2;
    uint64_t *s = realloc(w->segs, cap * sizeof *s);
    if (!s)
        return -1;
    w->segs = s;
    w->segs_cap = cap;
    return 0;
}

/* ---- batch I/O (pool thread) ------------------------------------------- */

static int io_fault(struct wal *w, enum wal_io_op op)
{
    return w->opt.test_io_hook ? w->opt.test_io_hook(w->opt.test_io_arg, op) : 0;
}

/* Writes every iovec at off, resuming after short writes. 0 or an errno. */
static int write_all(struct wal *w, int fd, struct iovec *iov, int n, uint64_t off)
{
    int e = io_fault(w, WAL_IO_WRITE);
    if (e)
        return e;
    while (n > 0) {
        ssize_t r = pwritev(fd, iov, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        off += (uint64_t)r;
        while (n > 0 && (size_t)r >= iov->iov_len) {
            r -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + r;
            iov->iov_len -= (size_t)r;
        }
    }
    return 0;
}

static int datasync(struct wal *w, int fd, uint64_t *syncs)
{
    int e = io_fault(w, WAL_IO_FDATASYNC);
    if (e)
        return e;
    (*syncs)++;
    return fdatasync(fd) != 0 ? errno : 0;
}

/* Makes the current segment's written bytes durable. 0 or an errno. */
static int cur_sync(struct wal *w, uint64_t *syncs)
{
    if (!w->cur_dirty)
        return 0;
    int e = datasync(w, w->cur_fd, syncs);
    if (!e)
        w->cur_dirty = 0;
    return e;
}

/* Zero-fills the current segment up to at least need bytes, a step ahead.
 *
 * Why: fdatasync after an append that grows a file must also commit the file
 * system's metadata (ext4: a journal commit, serialised across every file),
 * which costs about as much as the data itself. Writing zeros ahead of the
 * records, a step at a time, turns the common case into an overwrite of
 * allocated blocks, whose fdatasync flushes data only. Zeros are written, not
 * fallocate'd: unwritten extents would need their own metadata update on the
 * first write. Recovery tells this zero space from a torn tail (all zero). */
#define WAL_PREALLOC_STEP (1u << 20)
static int prealloc(struct wal *w, uint64_t need)
{
    static const unsigned char zeros[65536];
    if (need <= w->cur_alloc)
        return 0;
    /* A step ahead, but not past the segment's size (nor past what a record
     * larger than the segment needs). */
    uint64_t cap = w->opt.segment_bytes > need ? w->opt.segment_bytes : need;
    uint64_t target = need + WAL_PREALLOC_STEP < cap ? need + WAL_PREALLOC_STEP : cap;
    while (w->cur_alloc < target) {
        size_t n =
            target - w->cur_alloc < sizeof zeros ? (size_t)(target - w->cur_alloc) : sizeof zeros;
        ssize_t r = pwrite(w->cur_fd, zeros, n, (off_t)w->cur_alloc);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? errno : EIO;
        w->cur_alloc += (uint64_t)r;
    }
    w->cur_dirty = 1;
    return 0;
}

/* Before a segment is sealed: cut the zero space off, so that a sealed
 * segment ends at its last record (recovery holds sealed segments to that). */
static int seal_trim(struct wal *w)
{
    if (w->cur_fd < 0 || w->cur_alloc <= w->cur_size)
        return 0;
    if (ftruncate(w->cur_fd, (off_t)w->cur_size) != 0)
        return errno;
    w->cur_alloc = w->cur_size;
    w->cur_dirty = 1;
    return 0;
}

/* Seals the current segment (already synced by the caller) and starts a new
 * one whose first record is first_lsn: create, header, fdatasync, directory
 * fsync, all before any record of it can be acknowledged. 0 or an errno. */
static int seg_start(struct wal *w, uint64_t first_lsn, int mu_held, uint64_t *syncs)
{
    char name[SEG_NAME_LEN + 1];
    unsigned char h[SEG_HDR];
    int e = 0;

    if (!mu_held)
        pthread_mutex_lock(&w->mu);
    e = segs_reserve(w, w->nsegs + 1) ? ENOMEM : 0;
    if (!mu_held)
        pthread_mutex_unlock(&w->mu);
    if (e)
        return e;
    if (w->cur_fd >= 0) {
        close(w->cur_fd);
        w->cur_fd = -1;
    }
    seg_name(first_lsn, name, sizeof name);
    int fd = openat(w->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return errno;
    seg_header_encode(h, first_lsn);
    struct iovec iov = {.iov_base = h, .iov_len = SEG_HDR};
    if ((e = write_all(w, fd, &iov, 1, 0)) || (e = datasync(w, fd, syncs)))
        goto fail;
    if ((e = io_fault(w, WAL_IO_DIRSYNC)) || (fsync(w->dirfd) != 0 && (e = errno)))
        goto fail;
    if (!mu_held)
        pthread_mutex_lock(&w->mu);
    w->segs[w->nsegs++] = first_lsn;
    w->stats.segments = w->nsegs;
    if (w->nsegs == 1)
        w->base_lsn = first_lsn;
    if (!mu_held)
        pthread_mutex_unlock(&w->mu);
    w->cur_fd = fd;
    w->cur_size = SEG_HDR;
    w->cur_alloc = SEG_HDR;
    w->cur_records = 0;
    w->cur_dirty = 0;
    return 0;
fail:
    /* Recovery removes a last segment with no valid record anyway; this only
     * keeps the directory tidy. */
    close(fd);
    unlinkat(w->dirfd, name, 0);
    return e;
}

/* Writes the batch, rotating segments as they fill; the caller syncs the tail. */
static int batch_write(struct wal *w, struct wal_rec *list, uint64_t *syncs, uint64_t *bytes)
{
    struct iovec iov[BATCH_IOV];
    int n = 0, e = 0;
    uint64_t woff = w->cur_size;

    for (struct wal_rec *r = list; r; r = r->next) {
        rec_header_encode(r);
        if (w->cur_fd < 0 || (w->cur_records > 0 && w->cur_size >= w->opt.segment_bytes)) {
            if (n > 0 &&
                ((e = prealloc(w, w->cur_size)) || (e = write_all(w, w->cur_fd, iov, n, woff))))
                return e;
            n = 0;
            if (w->cur_fd >= 0 && ((e = seal_trim(w)) || (e = cur_sync(w, syncs))))
                return e;
            if ((e = seg_start(w, r->lsn, 0, syncs)))
                return e;
            woff = w->cur_size;
        }
        iov[n].iov_base = r->bytes;
        iov[n].iov_len = REC_HDR + r->len;
        n++;
        w->cur_size += REC_HDR + r->len;
        w->cur_records++;
        w->cur_dirty = 1;
        *bytes += REC_HDR + r->len;
        if (n == BATCH_IOV) {
            if ((e = prealloc(w, w->cur_size)) || (e = write_all(w, w->cur_fd, iov, n, woff)))
                return e;
            n = 0;
            woff = w->cur_size;
        }
    }
    if (n > 0 && !(e = prealloc(w, w->cur_size)))
        e = write_all(w, w->cur_fd, iov, n, woff);
    return e;
}

static void pool_enqueue(struct wal_pool *p, struct wal *w)
{
    pthread_mutex_lock(&p->mu);
    w->qnext = NULL;
    if (p->tail)
        p->tail->qnext = w;
    else
        p->head = w;
    p->tail = w;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void mark_failed(struct wal *w, const char *what, int e)
{
    log_error("wal %s: %s failed: %s; the log refuses further writes (reopen to recover)", w->dir,
              what, strerror(e));
    pthread_mutex_lock(&w->mu);
    w->failed = 1;
    pthread_mutex_unlock(&w->mu);
}

/* One group commit round for w, on a pool thread. */
static void wal_run(struct wal *w)
{
    uint64_t syncs = 0, bytes = 0, nrec = 0;
    int status = 0, e;

    pthread_mutex_lock(&w->mu);
    struct wal_rec *list = w->pend_head;
    w->pend_head = w->pend_tail = NULL;
    int failed = w->failed;
    pthread_mutex_unlock(&w->mu);

    for (struct wal_rec *r = list; r; r = r->next)
        nrec++;
    if (failed) {
        status = NERR_IO;
    } else if ((e = batch_write(w, list, &syncs, &bytes)) ||
               (!w->opt.unsafe_ack_before_sync && (e = cur_sync(w, &syncs)))) {
        mark_failed(w, "write or fdatasync", e);
        status = NERR_IO;
    }
    /* Stats first, so that a caller woken by its callback sees them. */
    pthread_mutex_lock(&w->mu);
    w->stats.syncs += syncs;
    if (!status) {
        w->stats.records += nrec;
        w->stats.bytes += bytes;
    }
    pthread_mutex_unlock(&w->mu);
    for (struct wal_rec *r = list; r; r = r->next)
        if (r->done)
            r->done(r->arg, r->lsn, status);
    syncs = 0;
    if (!status && w->opt.unsafe_ack_before_sync) {
        /* The planted bug (wal.h): the acknowledged batch waits for the
         * interval's flush. Bounded: at most WAL_UNSAFE_SYNC_MS. */
        uint64_t now = clock_mono_ms(), due = w->unsafe_synced_ms + WAL_UNSAFE_SYNC_MS;
        if (now < due)
            usleep((useconds_t)(due - now) * 1000);
        w->unsafe_synced_ms = clock_mono_ms();
        if ((e = cur_sync(w, &syncs)))
            mark_failed(w, "fdatasync", e);
    }

    pthread_mutex_lock(&w->mu);
    w->stats.syncs += syncs;
    if (w->pend_head)
        pool_enqueue(w->pool, w);
    else
        w->scheduled = 0;
    pthread_cond_broadcast(&w->idle_cv); /* close and wait_quiet watch rounds end */
    pthread_mutex_unlock(&w->mu);

    while (list) {
        struct wal_rec *next = list->next;
        free(list);
        list = next;
    }
}

static void *pool_main(void *arg)
{
    pthread_setname_np(pthread_self(), "nines-walsync");
    struct wal_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        if (!p->head)
            break;
        struct wal *w = p->head;
        p->head = w->qnext;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        wal_run(w);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int wal_pool_start(int threads, struct wal_pool **out, struct nerr *err)
{
    if (threads < 1 || threads > 64)
        return nerr_set(err, NERR_INVALID, "wal: pool of %d threads (want 1..64)", threads);
    struct wal_pool *p = calloc(1, sizeof *p);
    if (!p || !(p->threads = calloc((size_t)threads, sizeof *p->threads))) {
        free(p);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (; p->nthreads < threads; p->nthreads++) {
        int e = pthread_create(&p->threads[p->nthreads], NULL, pool_main, p);
        if (e) {
            wal_pool_stop(p);
            return nerr_sys(err, e, "wal: starting sync thread");
        }
    }
    *out = p;
    return 0;
}

void wal_pool_stop(struct wal_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    NINES_ASSERT(!p->head); /* every WAL was closed first */
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

/* ---- recovery ---------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Fills w->segs with the segment files in the directory, in LSN order. */
static int list_segments(struct wal *w, struct nerr *err)
{
    int fd = dup(w->dirfd);
    if (fd < 0)
        return nerr_sys(err, errno, "wal: dup");
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return nerr_sys(err, errno, "wal: opendir %s", w->dir);
    }
    rewinddir(d);
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        uint64_t first;
        if (seg_parse_name(de->d_name, &first) != 0) {
            size_t l = strlen(de->d_name);
            if (l > 4 && strcmp(de->d_name + l - 4, ".wal") == 0)
                log_warn("wal %s: ignoring %s: not a segment file name", w->dir, de->d_name);
            continue;
        }
        if (segs_reserve(w, w->nsegs + 1)) {
            rc = nerr_set(err, NERR_NOMEM, "out of memory");
            break;
        }
        w->segs[w->nsegs++] = first;
    }
    closedir(d);
    if (!rc && w->nsegs > 1)
        qsort(w->segs, w->nsegs, sizeof *w->segs, cmp_u64);
    return rc;
}

static int truncate_file(struct wal *w, uint64_t first, uint64_t size, struct nerr *err)
{
    char path[PATH_MAX];
    seg_path(w, first, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return nerr_sys(err, errno, "wal: open %s", path);
    int rc = 0;
    if (ftruncate(fd, (off_t)size) != 0)
        rc = nerr_sys(err, errno, "wal: truncate %s", path);
    else if (fsync(fd) != 0)
        rc = nerr_sys(err, errno, "wal: fsync %s", path);
    close(fd);
    return rc;
}

/* Validates segment i. *next_lsn is the LSN its first record must carry (0
 * for the first segment: any) and on return the LSN after its last record.
 * Sets *removed when an incomplete last segment was deleted, *end to the
 * byte length of its valid part. */
static int recover_segment(struct wal *w, size_t i, uint64_t *next_lsn, int *removed, uint64_t *end,
                           struct nerr *err)
{
    char path[PATH_MAX];
    struct seg_map m;
    uint64_t first = w->segs[i];
    int last = i + 1 == w->nsegs;
    int rc;

    *removed = 0;
    seg_path(w, first, path, sizeof path);
    if ((rc = seg_map_open(w, first, &m, err)))
        return rc;
    const char *why = seg_header_check(m.base, m.size, first);
    if (why) {
        /* A crash while a new segment was being created leaves its header
         * incomplete; nothing in it was acknowledged (the header is fsync'd
         * before any record is written). Anything that looks like a record
         * after it means the header was damaged later instead. */
        long long vo = m.size > SEG_HDR ? find_valid_after(m.base, m.size, SEG_HDR, first - 1) : -1;
        if (!last || vo >= 0) {
            rc = nerr_set(err, NERR_CORRUPT,
                          "%s: corrupt segment header at offset 0 (%s)%s; refusing to start", path,
                          why, last ? "; valid records follow" : " in a sealed segment");
            goto out;
        }
        size_t size = m.size;
        seg_map_close(&m);
        char name[SEG_NAME_LEN + 1];
        seg_name(first, name, sizeof name);
        if (unlinkat(w->dirfd, name, 0) != 0) {
            rc = nerr_sys(err, errno, "wal: unlink %s", path);
            goto out;
        }
        if ((rc = dir_sync(w, err)))
            goto out;
        log_warn("wal: %s: %s (%llu bytes, no record): removed, a crash during rotation", path, why,
                 (unsigned long long)size);
        *removed = 1;
        goto out;
    }
    if (*next_lsn != 0 && first != *next_lsn) {
        rc = nerr_set(err, NERR_CORRUPT,
                      "%s: corrupt log at offset 0 (segment starts at LSN %llu but the previous "
                      "one ends at %llu: %s); refusing to start",
                      path, (unsigned long long)first, (unsigned long long)(*next_lsn - 1),
                      first > *next_lsn ? "gap" : "overlap");
        goto out;
    }

    uint64_t expect = first;
    size_t off = SEG_HDR;
    while (off < m.size) {
        uint32_t len;
        uint64_t lsn;
        why = rec_check(m.base, m.size, off, &len, &lsn);
        if (!why) {
            if (lsn != expect) {
                rc = nerr_set(err, NERR_CORRUPT,
                              "%s: corrupt record at offset %zu (LSN %llu where %llu was "
                              "expected: %s); refusing to start",
                              path, off, (unsigned long long)lsn, (unsigned long long)expect,
                              lsn > expect ? "gap" : "duplicate");
                goto out;
            }
            off += REC_HDR + len;
            expect++;
            continue;
        }
        /* All zeros to the end: the space prealloc() wrote ahead, not damage.
         * In a sealed segment (a crash between sealing and trimming) this is
         * safe too: the next segment must start at the LSN after this one's
         * last record, so records lost to zeros show up as a gap. */
        size_t z = off;
        while (z < m.size && m.base[z] == 0)
            z++;
        if (z == m.size)
            break;
        if (!last) {
            rc = nerr_set(err, NERR_CORRUPT,
                          "%s: corrupt record at offset %zu (%s) in a sealed segment; refusing "
                          "to start",
                          path, off, why);
            goto out;
        }
        long long vo = find_valid_after(m.base, m.size, off + 1, expect - 1);
        if (vo >= 0) {
            rc = nerr_set(err, NERR_CORRUPT,
                          "%s: corrupt record at offset %zu (%s); valid records follow (offset "
                          "%lld); refusing to start",
                          path, off, why, vo);
            goto out;
        }
        size_t size = m.size;
        seg_map_close(&m);
        if ((rc = truncate_file(w, first, off, err)))
            goto out;
        log_warn("wal: %s: torn tail at offset %zu (%s): truncated, %zu bytes dropped; the log "
                 "ends at LSN %llu",
                 path, off, why, size - off, (unsigned long long)(expect - 1));
        break;
    }
    *next_lsn = expect;
    *end = off;
out:
    seg_map_close(&m);
    return rc;
}

static int recover(struct wal *w, struct nerr *err)
{
    int rc;
    uint64_t next = 0, end = 0, prev_end = 0, removed_first = 0;

    if ((rc = list_segments(w, err)))
        return rc;
    for (size_t i = 0; i < w->nsegs; i++) {
        int removed;
        prev_end = end;
        if ((rc = recover_segment(w, i, &next, &removed, &end, err)))
            return rc;
        if (removed) {
            removed_first = w->segs[i];
            w->nsegs--; /* it was the last one */
            end = prev_end;
        }
    }
    w->stats.segments = w->nsegs;
    if (w->nsegs == 0) {
        /* An only segment removed for its incomplete header still tells
         * where the log was to start (after a wal_reset, say). */
        w->base_lsn = removed_first ? removed_first : 1;
        w->last_lsn = w->base_lsn - 1;
        return 0;
    }
    uint64_t first = w->segs[w->nsegs - 1];
    char name[SEG_NAME_LEN + 1];
    seg_name(first, name, sizeof name);
    w->cur_fd = openat(w->dirfd, name, O_WRONLY | O_CLOEXEC);
    if (w->cur_fd < 0)
        return nerr_sys(err, errno, "wal: open %s/%s", w->dir, name);
    w->cur_size = end;
    struct stat st;
    w->cur_alloc =
        fstat(w->cur_fd, &st) == 0 && (uint64_t)st.st_size > end ? (uint64_t)st.st_size : end;
    w->cur_records = next - first;
    w->last_lsn = next - 1;
    w->base_lsn = w->segs[0];
    return 0;
}

/* ---- public API -------------------------------------------------------- */

int wal_open(const char *dir, const struct wal_options *opt, struct wal_pool *pool,
             struct wal **out, struct nerr *err)
{
    int rc;
    if (!dir || !*dir || !pool || !out)
        return nerr_set(err, NERR_INVALID, "wal_open: missing argument");
    if (strlen(dir) + 1 + SEG_NAME_LEN + 1 > PATH_MAX)
        return nerr_set(err, NERR_INVALID, "wal_open: directory path too long");
    struct wal *w = calloc(1, sizeof *w);
    if (!w)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    w->dirfd = -1;
    w->cur_fd = -1;
    pthread_mutex_init(&w->mu, NULL);
    pthread_mutex_init(&w->admin_mu, NULL);
    pthread_cond_init(&w->idle_cv, NULL);
    if (opt)
        w->opt = *opt;
    if (w->opt.segment_bytes == 0)
        w->opt.segment_bytes = WAL_DEFAULT_SEGMENT_BYTES;
    w->pool = pool;
    if (!(w->dir = strdup(dir))) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = mkdir_p(dir, err)))
        goto fail;
    w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dirfd < 0) {
        rc = nerr_sys(err, errno, "wal: open directory %s", dir);
        goto fail;
    }
    if ((rc = recover(w, err)))
        goto fail;
    *out = w;
    return 0;
fail:
    wal_close(w);
    return rc;
}

void wal_close(struct wal *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->closing = 1;
    while (w->scheduled)
        pthread_cond_wait(&w->idle_cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    NINES_ASSERT(!w->pend_head);
    if (w->cur_fd >= 0)
        close(w->cur_fd);
    if (w->dirfd >= 0)
        close(w->dirfd);
    pthread_mutex_destroy(&w->mu);
    pthread_mutex_destroy(&w->admin_mu);
    pthread_cond_destroy(&w->idle_cv);
    free(w->segs);
    free(w->dir);
    free(w);
}

uint64_t wal_first_lsn(struct wal *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t v = w->last_lsn >= w->base_lsn ? w->base_lsn : 0;
    pthread_mutex_unlock(&w->mu);
    return v;
}

uint64_t wal_last_lsn(struct wal *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t v = w->last_lsn;
    pthread_mutex_unlock(&w->mu);
    return v;
}

void wal_get_stats(struct wal *w, struct wal_stats *out)
{
    pthread_mutex_lock(&w->mu);
    *out = w->stats;
    pthread_mutex_unlock(&w->mu);
}

int wal_submit(struct wal *w, const void *data, size_t len, wal_done_fn done, void *arg,
               uint64_t *lsn_out)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    return wal_submitv(w, &iov, 1, done, arg, lsn_out);
}

int wal_submitv(struct wal *w, const struct iovec *iov, int iovcnt, wal_done_fn done, void *arg,
                uint64_t *lsn_out)
{
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > WAL_MAX_PAYLOAD)
            return NERR_LIMIT;
        len += iov[i].iov_len;
    }
    if (len == 0 || len > WAL_MAX_PAYLOAD)
        return NERR_LIMIT;
    struct wal_rec *r = malloc(sizeof *r + REC_HDR + len);
    if (!r)
        return NERR_NOMEM;
    unsigned char *p = r->bytes + REC_HDR;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len)
            memcpy(p, iov[i].iov_base, iov[i].iov_len);
        p += iov[i].iov_len;
    }
    r->next = NULL;
    r->done = done;
    r->arg = arg;
    r->len = (uint32_t)len;

    pthread_mutex_lock(&w->mu);
    int rc = w->closing ? NERR_CLOSED : w->failed ? NERR_IO : 0;
    if (rc) {
        pthread_mutex_unlock(&w->mu);
        free(r);
        return rc;
    }
    r->lsn = ++w->last_lsn;
    if (lsn_out)
        *lsn_out = r->lsn;
    if (w->pend_tail)
        w->pend_tail->next = r;
    else
        w->pend_head = r;
    w->pend_tail = r;
    if (!w->scheduled) {
        w->scheduled = 1;
        pool_enqueue(w->pool, w);
    }
    pthread_mutex_unlock(&w->mu);
    return 0;
}

/* With mu held: lets a round already taken by a pool thread finish (its
 * callbacks may still be running when their caller decides the WAL is idle),
 * then says whether records are still queued. Never call from a callback. */
static int wait_quiet(struct wal *w)
{
    while (w->scheduled && !w->pend_head)
        pthread_cond_wait(&w->idle_cv, &w->mu);
    return w->pend_head ? NERR_BUSY : 0;
}

int wal_replay(struct wal *w, uint64_t from_lsn,
               int (*cb)(void *arg, uint64_t lsn, const void *data, size_t len), void *arg,
               struct nerr *err)
{
    char path[PATH_MAX];
    int rc = 0;

    pthread_mutex_lock(&w->mu);
    int busy = wait_quiet(w);
    uint64_t last = w->last_lsn, base = w->base_lsn;
    pthread_mutex_unlock(&w->mu);
    if (busy)
        return nerr_set(err, NERR_BUSY, "wal %s: replay while records are pending", w->dir);
    if (from_lsn > last)
        return nerr_set(err, NERR_INVALID,
                        "wal %s: replay from LSN %llu but the log ends at LSN %llu", w->dir,
                        (unsigned long long)from_lsn, (unsigned long long)last);
    if (from_lsn == last)
        return 0;
    if (from_lsn + 1 < base)
        return nerr_set(err, NERR_NOTFOUND,
                        "wal %s: records %llu..%llu were released; the log starts at LSN %llu",
                        w->dir, (unsigned long long)from_lsn + 1, (unsigned long long)base - 1,
                        (unsigned long long)base);

    /* The segment holding from_lsn + 1: the last one starting at or before it. */
    size_t i = 0;
    while (i + 1 < w->nsegs && w->segs[i + 1] <= from_lsn + 1)
        i++;
    uint64_t expect = w->segs[i];
    for (; i < w->nsegs && !rc && expect <= last; i++) {
        struct seg_map m;
        if ((rc = seg_map_open(w, w->segs[i], &m, err)))
            break;
        seg_path(w, w->segs[i], path, sizeof path);
        size_t off = SEG_HDR;
        if (seg_header_check(m.base, m.size, w->segs[i]) || w->segs[i] != expect)
            rc = nerr_set(err, NERR_CORRUPT,
                          "%s: corrupt segment header at offset 0 (changed "
                          "since open)",
                          path);
        /* A segment's records end where the next segment's begin (its file
         * may continue with zeros, see prealloc). */
        uint64_t seg_end = i + 1 < w->nsegs ? w->segs[i + 1] : last + 1;
        while (!rc && off < m.size && expect <= last && expect < seg_end) {
            uint32_t len;
            uint64_t lsn;
            const char *why = rec_check(m.base, m.size, off, &len, &lsn);
            if (why || lsn != expect) {
                rc = nerr_set(err, NERR_CORRUPT,
                              "%s: corrupt record at offset %zu (%s; changed since open)", path,
                              off, why ? why : "unexpected LSN");
                break;
            }
            if (lsn > from_lsn)
                rc = cb(arg, lsn, m.base + off + REC_HDR, len);
            off += REC_HDR + len;
            expect++;
        }
        seg_map_close(&m);
    }
    if (!rc && expect <= last)
        rc = nerr_set(err, NERR_CORRUPT, "wal %s: records %llu..%llu missing (changed since open)",
                      w->dir, (unsigned long long)expect, (unsigned long long)last);
    return rc;
}

uint64_t wal_oldest_segment_end(struct wal *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t end = w->nsegs > 1 ? w->segs[1] - 1 : 0;
    pthread_mutex_unlock(&w->mu);
    return end;
}

int wal_release(struct wal *w, uint64_t upto, struct nerr *err)
{
    char name[SEG_NAME_LEN + 1];
    int rc = 0;

    pthread_mutex_lock(&w->admin_mu);
    pthread_mutex_lock(&w->mu);
    size_t k = 0;
    /* Segment k holds records segs[k]..segs[k+1]-1; the last one is current. */
    while (k + 1 < w->nsegs && w->segs[k + 1] - 1 <= upto)
        k++;
    uint64_t *gone = NULL;
    if (k > 0 && !(gone = malloc(k * sizeof *gone)))
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
    if (gone) {
        memcpy(gone, w->segs, k * sizeof *gone);
        memmove(w->segs, w->segs + k, (w->nsegs - k) * sizeof *w->segs);
        w->nsegs -= k;
        w->base_lsn = w->segs[0];
        w->stats.segments = w->nsegs;
    }
    pthread_mutex_unlock(&w->mu);

    /* Oldest first, each durable before the next: a crash leaves a contiguous
     * suffix. Stop at the first failure for the same reason. */
    for (size_t j = 0; j < k && gone && !rc; j++) {
        seg_name(gone[j], name, sizeof name);
        if (unlinkat(w->dirfd, name, 0) != 0 && errno != ENOENT)
            rc = nerr_sys(err, errno, "wal: unlink %s/%s", w->dir, name);
        else
            rc = dir_sync(w, err);
    }
    free(gone);
    pthread_mutex_unlock(&w->admin_mu);
    return rc;
}

/* Called with admin_mu and mu held on a quiescent WAL. */
static int do_reset(struct wal *w, uint64_t last_lsn, struct nerr *err)
{
    uint64_t syncs = 0;
    if (w->cur_fd >= 0) {
        close(w->cur_fd);
        w->cur_fd = -1;
    }
    int rc = segs_unlink_tail(w, 0, err);
    if (rc)
        return rc;
    int e = seg_start(w, last_lsn + 1, 1, &syncs);
    w->stats.syncs += syncs;
    if (e)
        return nerr_sys(err, e, "wal %s: starting segment %llu", w->dir,
                        (unsigned long long)last_lsn + 1);
    w->last_lsn = last_lsn;
    w->base_lsn = last_lsn + 1;
    return 0;
}

/* Called with admin_mu and mu held on a quiescent WAL with lsn inside the log. */
static int do_truncate(struct wal *w, uint64_t lsn, struct nerr *err)
{
    size_t k = 0;
    while (k + 1 < w->nsegs && w->segs[k + 1] <= lsn)
        k++;
    if (w->cur_fd >= 0) {
        close(w->cur_fd);
        w->cur_fd = -1;
    }
    int rc = segs_unlink_tail(w, k + 1, err);
    if (rc)
        return rc;

    /* Find where record lsn ends in segment k; recovery validated these bytes. */
    struct seg_map m;
    uint64_t first = w->segs[k];
    char path[PATH_MAX];
    seg_path(w, first, path, sizeof path);
    if ((rc = seg_map_open(w, first, &m, err)))
        return rc;
    size_t off = SEG_HDR;
    for (uint64_t expect = first; expect <= lsn; expect++) {
        uint32_t len;
        uint64_t got;
        const char *why = off < m.size ? rec_check(m.base, m.size, off, &len, &got) : "missing";
        if (why || got != expect) {
            seg_map_close(&m);
            return nerr_set(err, NERR_CORRUPT, "%s: corrupt record at offset %zu (%s)", path, off,
                            why ? why : "unexpected LSN");
        }
        off += REC_HDR + len;
    }
    seg_map_close(&m);
    if ((rc = truncate_file(w, first, off, err)))
        return rc;
    char name[SEG_NAME_LEN + 1];
    seg_name(first, name, sizeof name);
    w->cur_fd = openat(w->dirfd, name, O_WRONLY | O_CLOEXEC);
    if (w->cur_fd < 0)
        return nerr_sys(err, errno, "wal: open %s", path);
    w->cur_size = off;
    w->cur_alloc = off;
    w->cur_records = lsn - first + 1;
    w->cur_dirty = 0;
    w->last_lsn = lsn;
    return 0;
}

/* Shared frame of truncate and reset: locks and quiescence. A change that
 * fails halfway leaves memory and disk out of step, so the WAL turns failed. */
static int admin_change(struct wal *w, uint64_t lsn, int reset, struct nerr *err)
{
    int rc = 0;
    pthread_mutex_lock(&w->admin_mu);
    pthread_mutex_lock(&w->mu);
    if (w->closing) {
        rc = nerr_set(err, NERR_CLOSED, "wal %s: closing", w->dir);
    } else if (w->failed) {
        rc = nerr_set(err, NERR_IO, "wal %s: failed earlier; reopen it", w->dir);
    } else if (wait_quiet(w)) {
        rc = nerr_set(err, NERR_BUSY, "wal %s: records are pending", w->dir);
    } else {
        if (reset || (lsn < w->last_lsn && (w->nsegs == 0 || lsn < w->segs[0])))
            rc = do_reset(w, lsn, err);
        else if (lsn < w->last_lsn)
            rc = do_truncate(w, lsn, err);
        if (rc) {
            log_error("wal %s: %s; the log refuses further writes (reopen to recover)", w->dir,
                      err ? err->msg : nerr_name(rc));
            w->failed = 1;
        }
    }
    pthread_mutex_unlock(&w->mu);
    pthread_mutex_unlock(&w->admin_mu);
    return rc;
}

int wal_truncate_suffix(struct wal *w, uint64_t lsn, struct nerr *err)
{
    return admin_change(w, lsn, 0, err);
}

int wal_reset(struct wal *w, uint64_t last_lsn, struct nerr *err)
{
    return admin_change(w, last_lsn, 1, err);
}
