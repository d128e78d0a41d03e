/* The write-ahead log on real files: round trip across segments, release,
 * torn-tail truncation, refusal of middle corruption with file and offset,
 * group commit under concurrency, I/O failure, SIGKILL crashes, truncation. */
#include "lib/clock.h"
#include "lib/crc32c.h"
#include "lib/rng.h"
#include "lib/log.h"
#include "store/wal.h"
#include "t/tap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SEG_HDR 32 /* docs/wal.md: the tests compute offsets from the documented layout */
#define REC_HDR 16

static uint64_t g_seed;

/* ---- helpers ----------------------------------------------------------- */

static uint64_t mix(uint64_t z)
{
    return rng_mix64(z + UINT64_C(0x9E3779B97F4A7C15)); /* splitmix64's step */
}

/* The payload of record lsn in a run tagged tag: its length and bytes are a
 * function of (seed, tag, lsn), so any process can check a record exactly. */
static size_t payload(uint64_t tag, uint64_t lsn, size_t maxlen, unsigned char *buf)
{
    uint64_t h = mix(g_seed ^ mix(tag) ^ lsn);
    size_t len = 1 + (size_t)(h % maxlen);
    for (size_t i = 0; i < len; i++) {
        if (i % 8 == 0)
            h = mix(h);
        buf[i] = (unsigned char)(h >> (8 * (i % 8)));
    }
    return len;
}

static double now_s(void)
{
    return (double)clock_mono_ns() / 1e9;
}

static char g_top[256];

static void mkdirf(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", g_top, name);
}

static char *seg_file(char *out, size_t cap, const char *dir, uint64_t first)
{
    snprintf(out, cap, "%s/%020llu.wal", dir, (unsigned long long)first);
    return out;
}

static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* The first LSNs of the segment files in dir, ascending; returns the count. */
static int list_segs(const char *dir, uint64_t *out, int cap)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    if (!d)
        return -1;
    while ((de = readdir(d))) {
        if (strlen(de->d_name) == 24 && !strcmp(de->d_name + 20, ".wal") && n < cap)
            out[n++] = strtoull(de->d_name, NULL, 10);
    }
    closedir(d);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && out[j - 1] > out[j]; j--) {
            uint64_t t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return n;
}

static void flip_byte(const char *path, long long off)
{
    int fd = open(path, O_RDWR);
    unsigned char b;
    if (fd < 0 || pread(fd, &b, 1, off) != 1)
        bail_out("flip_byte: cannot read");
    b ^= 0x40;
    if (pwrite(fd, &b, 1, off) != 1)
        bail_out("flip_byte: cannot write");
    close(fd);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(p);
}

/* Captures what the log writes to stderr between capture_begin and capture_end. */
struct capture {
    int saved;
    int fd;
    char text[4096];
};

static void capture_begin(struct capture *c)
{
    char path[300];
    snprintf(path, sizeof path, "%s/stderr.XXXXXX", g_top);
    c->fd = mkstemp(path);
    if (c->fd < 0)
        bail_out("mkstemp");
    unlink(path);
    fflush(stderr);
    c->saved = dup(2);
    dup2(c->fd, 2);
}

static const char *capture_end(struct capture *c)
{
    dup2(c->saved, 2);
    close(c->saved);
    ssize_t n = pread(c->fd, c->text, sizeof c->text - 1, 0);
    c->text[n > 0 ? n : 0] = '\0';
    close(c->fd);
    return c->text;
}

/* Completion tracker: checks per-WAL LSN order and single firing. */
struct acks {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t n;       /* callbacks seen */
    uint64_t last;    /* last LSN seen */
    int out_of_order; /* an LSN not equal to last + 1 */
    int bad_status;   /* callbacks with status != expect_status */
    int expect_status;
    uint64_t *fired; /* per-LSN count, when non-NULL */
    size_t fired_cap;
};

static void acks_init(struct acks *a, uint64_t start_last, size_t cap)
{
    memset(a, 0, sizeof *a);
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    a->last = start_last;
    if (cap) {
        a->fired = calloc(cap + 1, sizeof *a->fired);
        a->fired_cap = cap;
    }
}

static void acks_free(struct acks *a)
{
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a->fired);
}

static void on_done(void *arg, uint64_t lsn, int status)
{
    struct acks *a = arg;
    pthread_mutex_lock(&a->mu);
    if (lsn != a->last + 1)
        a->out_of_order++;
    a->last = lsn;
    if (status != a->expect_status)
        a->bad_status++;
    if (a->fired && lsn <= a->fired_cap)
        a->fired[lsn]++;
    a->n++;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

/* Waits (at most 30 s) for n callbacks; returns how many arrived. */
static uint64_t acks_wait(struct acks *a, uint64_t n)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 30;
    pthread_mutex_lock(&a->mu);
    while (a->n < n && pthread_cond_timedwait(&a->cv, &a->mu, &dl) == 0)
        ;
    uint64_t got = a->n;
    pthread_mutex_unlock(&a->mu);
    return got;
}

/* Replay collector: checks each record against payload(tag, lsn). */
struct check {
    uint64_t tag;
    size_t maxlen;
    uint64_t first, last, n;
    int mismatches;
    int gaps;
    uint64_t stop_at; /* return 7 at this LSN; 0 = never */
};

static int on_replay(void *arg, uint64_t lsn, const void *data, size_t len)
{
    struct check *c = arg;
    unsigned char buf[4096];
    size_t want = payload(c->tag, lsn, c->maxlen, buf);
    if (len != want || memcmp(buf, data, len) != 0)
        c->mismatches++;
    if (c->n == 0)
        c->first = lsn;
    else if (lsn != c->last + 1)
        c->gaps++;
    c->last = lsn;
    c->n++;
    return c->stop_at && lsn == c->stop_at ? 7 : 0;
}

/* Submits records from+1..to with payload(tag, lsn) and waits for all. */
static int write_records(struct wal *w, uint64_t tag, size_t maxlen, uint64_t count)
{
    struct acks a;
    unsigned char buf[4096];
    uint64_t base = wal_last_lsn(w);
    acks_init(&a, base, 0);
    int bad = 0;
    for (uint64_t i = 1; i <= count; i++) {
        uint64_t lsn = 0;
        size_t len = payload(tag, base + i, maxlen, buf);
        if (wal_submit(w, buf, len, on_done, &a, &lsn) != 0 || lsn != base + i)
            bad++;
    }
    if (acks_wait(&a, count) != count || a.out_of_order || a.bad_status)
        bad++;
    acks_free(&a);
    return bad;
}

static struct wal *open_ok(const char *dir, const struct wal_options *o, struct wal_pool *p,
                           const char *what)
{
    struct wal *w = NULL;
    struct nerr err = {0};
    int rc = wal_open(dir, o, p, &w, &err);
    if (!ok(rc == 0, "%s: wal_open succeeds", what))
        diag("%s: %s", nerr_name(rc), err.msg);
    return rc == 0 ? w : NULL;
}

/* ---- tests ------------------------------------------------------------- */

static void test_round_trip(struct wal_pool *pool)
{
    char dir[512], path[PATH_MAX];
    struct wal_options o = {.segment_bytes = 4096};
    enum { N = 300, MAXLEN = 600 };
    struct nerr err = {0};

    note("round trip, rotation, replay, release");
    mkdirf(dir, sizeof dir, "rt/nested");
    struct wal *w = open_ok(dir, &o, pool, "fresh nested dir");
    if (!w)
        return;
    is_int(wal_last_lsn(w), 0, "empty log: last_lsn 0");
    is_int(wal_first_lsn(w), 0, "empty log: first_lsn 0");
    unsigned char one = 1;
    is_int(wal_submit(w, &one, 0, NULL, NULL, NULL), NERR_LIMIT, "zero-length record: NERR_LIMIT");
    is_int(wal_submit(w, &one, (size_t)WAL_MAX_PAYLOAD + 1, NULL, NULL, NULL), NERR_LIMIT,
           "payload over 64 MiB: NERR_LIMIT");
    is_int(write_records(w, 1, MAXLEN, N), 0, "%d records acknowledged with LSNs 1..%d in order", N,
           N);
    struct wal_stats st;
    wal_get_stats(w, &st);
    is_int(st.records, N, "stats: records");
    cmp_ok(st.segments, ">", 10, "rotation happened (%llu segments of ~4 KiB)",
           (unsigned long long)st.segments);
    uint64_t segs[512];
    int nseg = list_segs(dir, segs, 512);
    is_int(nseg, st.segments, "segment files on disk match stats");
    is_int(segs[0], 1, "first segment is named after LSN 1");
    wal_close(w);

    w = open_ok(dir, &o, pool, "reopen");
    if (!w)
        return;
    is_int(wal_last_lsn(w), N, "reopen: last_lsn %d", N);
    is_int(wal_first_lsn(w), 1, "reopen: first_lsn 1");
    struct check c = {.tag = 1, .maxlen = MAXLEN};
    is_int(wal_replay(w, 0, on_replay, &c, &err), 0, "replay from 0");
    ok(c.n == N && c.first == 1 && c.last == N && !c.gaps && !c.mismatches,
       "replay from 0: %llu records 1..%llu, exact bytes (%d mismatches)", (unsigned long long)c.n,
       (unsigned long long)c.last, c.mismatches);
    /* Start in the middle of a segment other than the first. */
    c = (struct check){.tag = 1, .maxlen = MAXLEN};
    is_int(wal_replay(w, 137, on_replay, &c, &err), 0, "replay from 137");
    ok(c.n == N - 137 && c.first == 138 && c.last == N && !c.gaps && !c.mismatches,
       "replay from 137: records 138..%d exact, crossing segments", N);
    /* Start exactly at a segment's first record. */
    c = (struct check){.tag = 1, .maxlen = MAXLEN};
    is_int(wal_replay(w, segs[3] - 1, on_replay, &c, &err), 0, "replay from a segment boundary");
    ok(c.first == segs[3] && c.n == N - segs[3] + 1 && !c.mismatches,
       "replay from segment boundary starts at LSN %llu", (unsigned long long)segs[3]);
    c = (struct check){.tag = 1, .maxlen = MAXLEN, .stop_at = 10};
    is_int(wal_replay(w, 0, on_replay, &c, &err), 7, "callback's non-zero return stops replay");
    is_int(c.n, 10, "replay stopped after LSN 10");
    c = (struct check){.tag = 1, .maxlen = MAXLEN};
    is_int(wal_replay(w, N, on_replay, &c, &err), 0, "replay from last: nothing");
    is_int(c.n, 0, "replay from last calls back 0 times");
    is_int(wal_replay(w, N + 1, on_replay, &c, &err), NERR_INVALID,
           "replay from beyond the log: NERR_INVALID");

    /* Release: upto falls inside segment 5 (index 4), so 0..3 go. */
    uint64_t upto = segs[4] + 1;
    is_int(wal_release(w, upto, &err), 0, "release up to %llu", (unsigned long long)upto);
    uint64_t after[512];
    int nafter = list_segs(dir, after, 512);
    ok(nafter == nseg - 4 && after[0] == segs[4],
       "release deleted exactly the 4 fully-applied sealed segments (%d -> %d files)", nseg,
       nafter);
    is_int(wal_first_lsn(w), segs[4], "first_lsn moved to the first kept segment");
    is_int(wal_replay(w, 0, on_replay, &c, &err), NERR_NOTFOUND,
           "replay from 0 after release: NERR_NOTFOUND");
    c = (struct check){.tag = 1, .maxlen = MAXLEN};
    is_int(wal_replay(w, segs[4] - 1, on_replay, &c, &err), 0, "replay from the kept start");
    ok(c.first == segs[4] && c.last == N && !c.mismatches, "kept records intact");
    /* Releasing everything keeps the current segment. */
    is_int(wal_release(w, N, &err), 0, "release up to the last LSN");
    nafter = list_segs(dir, after, 512);
    ok(nafter == 1 && after[0] == segs[nseg - 1], "only the current segment remains");
    ok(file_size(seg_file(path, sizeof path, dir, after[0])) > SEG_HDR,
       "current segment still holds its records");
    wal_close(w);
    w = open_ok(dir, &o, pool, "reopen after release");
    if (!w)
        return;
    ok(wal_first_lsn(w) == segs[nseg - 1] && wal_last_lsn(w) == N,
       "reopen after release: first %llu last %llu", (unsigned long long)wal_first_lsn(w),
       (unsigned long long)wal_last_lsn(w));
    is_int(write_records(w, 1, MAXLEN, 5), 0, "appends continue after release");
    wal_close(w);
}

/* Writes n records of exactly len bytes whose last byte is fill, so offsets
 * in the file are known: record k starts at SEG_HDR + (k-1) * (REC_HDR + len). */
static int write_fixed(struct wal *w, uint64_t n, size_t len, unsigned char fill)
{
    struct acks a;
    unsigned char buf[256];
    acks_init(&a, wal_last_lsn(w), 0);
    memset(buf, fill, sizeof buf);
    int bad = 0;
    for (uint64_t i = 0; i < n; i++) {
        buf[0] = (unsigned char)i;
        if (wal_submit(w, buf, len, on_done, &a, NULL) != 0)
            bad++;
    }
    if (acks_wait(&a, n) != n || a.bad_status || a.out_of_order)
        bad++;
    acks_free(&a);
    return bad;
}

struct fixed_check {
    uint64_t n, last;
    size_t len;
    unsigned char fill;
    int bad;
};

static int on_fixed(void *arg, uint64_t lsn, const void *data, size_t len)
{
    struct fixed_check *c = arg;
    const unsigned char *p = data;
    c->n++;
    c->last = lsn;
    if (len != c->len || p[len - 1] != c->fill)
        c->bad++;
    return 0;
}

static void torn_case(struct wal_pool *pool, const char *name, long long cut, long long extend)
{
    char dir[512], path[PATH_MAX];
    struct nerr err = {0};
    const long long rec = REC_HDR + 100;

    mkdirf(dir, sizeof dir, name);
    struct wal *w = open_ok(dir, NULL, pool, name);
    if (!w)
        return;
    write_fixed(w, 10, 100, 0xAA);
    wal_close(w);
    seg_file(path, sizeof path, dir, 1);
    /* The WAL writes zeros ahead of its records; start from the records only. */
    if (truncate(path, SEG_HDR + 10 * rec) != 0)
        bail_out("trim failed");
    if (cut >= 0 && truncate(path, cut) != 0)
        bail_out("truncate failed");
    if (extend > 0 && truncate(path, file_size(path) + extend) != 0) /* zero-filled */
        bail_out("extend failed");
    if (cut == -2) /* bit rot in the very last record, nothing after it */
        flip_byte(path, SEG_HDR + 9 * rec + REC_HDR + 50);

    uint64_t want_last = extend > 0 ? 10 : 9;
    long long want_size = SEG_HDR + (long long)want_last * rec;
    long long dropped = file_size(path) - want_size;
    struct capture cap;
    capture_begin(&cap);
    w = open_ok(dir, NULL, pool, name);
    const char *log = capture_end(&cap);
    char want[128];
    if (extend > 0) {
        /* Zeros after the last record are what the WAL writes ahead of its
         * records (prealloc): not a torn tail, nothing to warn about. */
        ok(!strstr(log, "torn tail"), "%s: a zero-filled tail is not reported as torn", name);
        if (!w)
            return;
        is_int(wal_last_lsn(w), want_last, "%s: last_lsn is the last record", name);
        ok(file_size(path) >= want_size, "%s: no record was cut", name);
    } else {
        snprintf(want, sizeof want, "torn tail at offset %lld ", want_size);
        ok(strstr(log, path) && strstr(log, want) && strstr(log, "WARN"),
           "%s: warning names the file and offset %lld", name, want_size);
        snprintf(want, sizeof want, "%lld bytes dropped", dropped);
        if (!ok(strstr(log, want) != NULL, "%s: warning says %s", name, want))
            diag("log: %s", log);
        if (!w)
            return;
        is_int(wal_last_lsn(w), want_last, "%s: last_lsn is the last complete record", name);
        is_int(file_size(path), want_size, "%s: file truncated to that record's end", name);
    }
    uint64_t lsn = 0;
    struct acks a;
    acks_init(&a, want_last, 0);
    unsigned char buf[100];
    memset(buf, 0xBB, sizeof buf);
    is_int(wal_submit(w, buf, 100, on_done, &a, &lsn), 0, "%s: submit after recovery", name);
    is_int(lsn, want_last + 1, "%s: new record gets last+1", name);
    acks_wait(&a, 1);
    acks_free(&a);
    wal_close(w);
    w = open_ok(dir, NULL, pool, name);
    if (!w)
        return;
    struct fixed_check c = {.len = 100, .fill = 0xAA};
    wal_replay(w, 0, on_fixed, &c, &err);
    /* The 0xBB record fails the 0xAA check: exactly one, the last. */
    ok(c.n == want_last + 1 && c.last == want_last + 1 && c.bad == 1,
       "%s: old records 1..%llu intact, then the new one", name, (unsigned long long)want_last);
    c = (struct fixed_check){.len = 100, .fill = 0xBB};
    wal_replay(w, want_last, on_fixed, &c, &err);
    ok(c.n == 1 && c.last == want_last + 1 && !c.bad, "%s: the new record replays after them",
       name);
    wal_close(w);
}

static void test_torn_tail(struct wal_pool *pool)
{
    const long long rec = REC_HDR + 100;
    note("torn tails are truncated");
    torn_case(pool, "torn-payload", SEG_HDR + 9 * rec + REC_HDR + 50, 0);
    torn_case(pool, "torn-header", SEG_HDR + 9 * rec + 7, 0);
    torn_case(pool, "zero-tail", -1, 4096);
    torn_case(pool, "bitrot-last", -2, 0);

    /* A crash while creating a segment leaves a short header: the file goes.
     * 300-byte segments take 3 records of 116 bytes (32 + 3 * 116 >= 300),
     * so after 9 records the next one starts segment 10. */
    char dir[512], path[PATH_MAX];
    mkdirf(dir, sizeof dir, "torn-rotation");
    struct wal_options o = {.segment_bytes = 300};
    struct wal *w = open_ok(dir, &o, pool, "torn-rotation");
    if (!w)
        return;
    write_fixed(w, 9, 100, 0xAA);
    wal_close(w);
    uint64_t segs[64];
    int n = list_segs(dir, segs, 64);
    ok(n == 3 && segs[2] == 7, "9 records fill segments 1, 4, 7");
    seg_file(path, sizeof path, dir, 10);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0 || write(fd, "NINESW", 6) != 6)
        bail_out("cannot create partial segment");
    close(fd);
    struct capture cap;
    capture_begin(&cap);
    w = open_ok(dir, &o, pool, "torn-rotation");
    const char *log = capture_end(&cap);
    if (!ok(strstr(log, path) && strstr(log, "incomplete segment header (6 bytes"),
            "removal is logged with the file and its size"))
        diag("log: %s", log);
    if (!w)
        return;
    ok(access(path, F_OK) != 0 && errno == ENOENT, "segment with an incomplete header removed");
    is_int(list_segs(dir, segs, 64), n, "the other segments stay");
    is_int(wal_last_lsn(w), 9, "last_lsn 9");
    is_int(write_fixed(w, 3, 100, 0xAA), 0, "appends continue");
    is_int(wal_last_lsn(w), 12, "segment 10 recreated with 10..12");
    ok(file_size(path) >= SEG_HDR + 3 * (REC_HDR + 100), "segment 10 holds the three records");
    wal_close(w);
}

/* wal_open must fail NERR_CORRUPT naming path and offset; the file is left alone. */
static void expect_corrupt(struct wal_pool *pool, const char *dir, const struct wal_options *o,
                           const char *path, long long off, const char *what)
{
    struct wal *w = NULL;
    struct nerr err = {0};
    long long size = file_size(path);
    int rc = wal_open(dir, o, pool, &w, &err);
    is_int(rc, NERR_CORRUPT, "%s: wal_open fails NERR_CORRUPT", what);
    char want[64];
    snprintf(want, sizeof want, "at offset %lld ", off);
    ok(strstr(err.msg, path) != NULL, "%s: message names the file", what);
    if (!ok(strstr(err.msg, want) != NULL, "%s: message gives offset %lld", what, off))
        diag("message: %s", err.msg);
    note("%s: %s", what, err.msg);
    is_int(file_size(path), size, "%s: nothing was truncated", what);
    if (w)
        wal_close(w);
}

static void test_corruption(struct wal_pool *pool)
{
    char dir[512], path[PATH_MAX];
    const long long rec = REC_HDR + 100;

    note("middle corruption is refused with file and offset");
    mkdirf(dir, sizeof dir, "mid");
    struct wal *w = open_ok(dir, NULL, pool, "mid");
    if (!w)
        return;
    write_fixed(w, 10, 100, 0xAA);
    wal_close(w);
    seg_file(path, sizeof path, dir, 1);
    long long off5 = SEG_HDR + 4 * rec; /* record with LSN 5 */
    flip_byte(path, off5 + REC_HDR + 10);
    expect_corrupt(pool, dir, NULL, path, off5, "payload byte of record 5");
    flip_byte(path, off5 + REC_HDR + 10); /* restore */
    flip_byte(path, off5 + 1);            /* its length field */
    expect_corrupt(pool, dir, NULL, path, off5, "length of record 5");
    flip_byte(path, off5 + 1);
    w = open_ok(dir, NULL, pool, "restored bytes");
    if (w) {
        is_int(wal_last_lsn(w), 10, "restored log opens whole");
        wal_close(w);
    }

    /* A sealed segment: 600-byte segments of 116-byte records hold 5 each. */
    struct wal_options o = {.segment_bytes = 600};
    mkdirf(dir, sizeof dir, "sealed");
    w = open_ok(dir, &o, pool, "sealed");
    if (!w)
        return;
    write_fixed(w, 12, 100, 0xAA);
    wal_close(w);
    uint64_t segs[8];
    ok(list_segs(dir, segs, 8) == 3 && segs[1] == 6 && segs[2] == 11,
       "segments start at LSNs 1, 6, 11");
    seg_file(path, sizeof path, dir, 1);
    is_int(file_size(path), SEG_HDR + 5 * rec, "first segment holds 5 records");
    long long last_off = SEG_HDR + 4 * rec; /* its last record: nothing after it in the file */
    flip_byte(path, last_off + REC_HDR + 99);
    expect_corrupt(pool, dir, &o, path, last_off, "last record of a sealed segment");
    flip_byte(path, last_off + REC_HDR + 99);
    /* A short sealed segment is damage too, never a torn tail. */
    if (truncate(path, last_off + 20) != 0)
        bail_out("truncate");
    expect_corrupt(pool, dir, &o, path, last_off, "sealed segment cut short");

    /* LSN gap: a whole segment missing in the middle. */
    mkdirf(dir, sizeof dir, "gap");
    w = open_ok(dir, &o, pool, "gap");
    if (!w)
        return;
    write_fixed(w, 12, 100, 0xAA);
    wal_close(w);
    seg_file(path, sizeof path, dir, 6);
    unlink(path);
    seg_file(path, sizeof path, dir, 11);
    expect_corrupt(pool, dir, &o, path, 0, "segment missing in the middle (LSN gap)");
}

struct gc_thread {
    struct wal *w;
    struct acks *a;
    uint64_t tag;
    int count;
    int errors;
};

static void *gc_main(void *arg)
{
    struct gc_thread *t = arg;
    unsigned char buf[512];
    for (int i = 0; i < t->count; i++) {
        uint64_t h = mix(t->tag * 1000003u + (uint64_t)i);
        size_t len = 1 + h % sizeof buf;
        memset(buf, (int)(h >> 40), len);
        if (wal_submit(t->w, buf, len, on_done, t->a, NULL) != 0)
            t->errors++;
    }
    return NULL;
}

/* A closed-loop writer: submits, waits for its own ack, repeats. */
struct cl_writer {
    struct wal *w;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int count;
    int errors;
};

static void cl_done(void *arg, uint64_t lsn, int status)
{
    struct cl_writer *c = arg;
    pthread_mutex_lock(&c->mu);
    c->done = 1;
    c->errors += status != 0;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void *cl_main(void *arg)
{
    struct cl_writer *c = arg;
    unsigned char buf[200];
    memset(buf, 0x5A, sizeof buf);
    for (int i = 0; i < c->count; i++) {
        pthread_mutex_lock(&c->mu);
        c->done = 0;
        pthread_mutex_unlock(&c->mu);
        if (wal_submit(c->w, buf, sizeof buf, cl_done, c, NULL) != 0) {
            c->errors++;
            continue;
        }
        pthread_mutex_lock(&c->mu);
        while (!c->done)
            pthread_cond_wait(&c->cv, &c->mu);
        pthread_mutex_unlock(&c->mu);
    }
    return NULL;
}

static void test_group_commit(struct wal_pool *pool)
{
    enum { THREADS = 8, PER = 250, TOTAL = THREADS * PER };
    char dir[2][512];
    struct wal *w[2];
    struct acks a[2];
    struct gc_thread t[THREADS];
    pthread_t th[THREADS];
    struct wal_options o = {.segment_bytes = 256 << 10};

    note("group commit: %d threads, %d records over 2 WALs sharing one pool", THREADS, TOTAL);
    for (int k = 0; k < 2; k++) {
        mkdirf(dir[k], sizeof dir[k], k ? "gc1" : "gc0");
        if (!(w[k] = open_ok(dir[k], &o, pool, "group commit")))
            return;
        acks_init(&a[k], 0, TOTAL);
    }
    double t0 = now_s();
    for (int i = 0; i < THREADS; i++) {
        t[i] = (struct gc_thread){.w = w[i % 2], .a = &a[i % 2], .tag = (uint64_t)i, .count = PER};
        pthread_create(&th[i], NULL, gc_main, &t[i]);
    }
    int errors = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        errors += t[i].errors;
    }
    uint64_t got = acks_wait(&a[0], TOTAL / 2) + acks_wait(&a[1], TOTAL / 2);
    double dt = now_s() - t0;
    is_int(errors, 0, "every submit accepted");
    is_int(got, TOTAL, "every callback fired");
    struct wal_stats st[2];
    for (int k = 0; k < 2; k++) {
        int once = 1;
        for (uint64_t l = 1; l <= TOTAL / 2; l++)
            once &= a[k].fired[l] == 1;
        ok(once && a[k].fired[TOTAL / 2 + 1] == 0, "WAL %d: each LSN 1..%d acknowledged once", k,
           TOTAL / 2);
        is_int(a[k].out_of_order, 0, "WAL %d: callbacks in LSN order", k);
        is_int(a[k].bad_status, 0, "WAL %d: every status 0", k);
        wal_get_stats(w[k], &st[k]);
    }
    uint64_t recs = st[0].records + st[1].records, syncs = st[0].syncs + st[1].syncs;
    is_int(recs, TOTAL, "stats count %d records", TOTAL);
    cmp_ok(syncs * 4, "<=", recs, "group commit: %llu fdatasyncs for %llu records",
           (unsigned long long)syncs, (unsigned long long)recs);
    note("group commit: %d records in %.3f s (%.0f/s), %.1f records per fdatasync", TOTAL, dt,
         TOTAL / dt, (double)recs / (double)(syncs ? syncs : 1));

    /* Closed loop: each writer waits for its own ack, so only concurrency batches. */
    struct acks c;
    acks_init(&c, wal_last_lsn(w[0]), 0);
    uint64_t s0 = st[0].syncs, r0 = st[0].records;
    t0 = now_s();
    for (int i = 0; i < 200; i++) {
        unsigned char b = (unsigned char)i;
        wal_submit(w[0], &b, 1, on_done, &c, NULL);
        acks_wait(&c, (uint64_t)i + 1);
    }
    dt = now_s() - t0;
    wal_get_stats(w[0], &st[0]);
    note("single writer, closed loop: %.0f acks/s, %.0f us per durable append (%llu syncs)",
         200 / dt, dt / 200 * 1e6, (unsigned long long)(st[0].syncs - s0));
    is_int(st[0].records - r0, 200, "closed loop: 200 records");
    acks_free(&c);

    /* Closed loop, 8 writers on one WAL: batching comes only from writers
     * that wait at the same time, which is what group commit is for. */
    struct cl_writer cw[THREADS];
    s0 = st[0].syncs;
    r0 = st[0].records;
    t0 = now_s();
    for (int i = 0; i < THREADS; i++) {
        cw[i] = (struct cl_writer){.w = w[0], .count = 100};
        pthread_mutex_init(&cw[i].mu, NULL);
        pthread_cond_init(&cw[i].cv, NULL);
        pthread_create(&th[i], NULL, cl_main, &cw[i]);
    }
    errors = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        errors += cw[i].errors;
        pthread_mutex_destroy(&cw[i].mu);
        pthread_cond_destroy(&cw[i].cv);
    }
    dt = now_s() - t0;
    wal_get_stats(w[0], &st[0]);
    uint64_t cl_recs = st[0].records - r0, cl_syncs = st[0].syncs - s0;
    is_int(errors, 0, "8 closed-loop writers: every ack status 0");
    is_int(cl_recs, THREADS * 100, "8 closed-loop writers: %d records", THREADS * 100);
    cmp_ok(cl_syncs, "<", cl_recs, "8 closed-loop writers share fdatasyncs (%llu for %llu)",
           (unsigned long long)cl_syncs, (unsigned long long)cl_recs);
    note("8 closed-loop writers: %.0f acks/s, %.1f records per fdatasync", cl_recs / dt,
         (double)cl_recs / (double)(cl_syncs ? cl_syncs : 1));

    for (int k = 0; k < 2; k++) {
        wal_close(w[k]);
        acks_free(&a[k]);
        w[k] = open_ok(dir[k], &o, pool, "group commit reopen");
        if (w[k]) {
            is_int(wal_last_lsn(w[k]), k ? TOTAL / 2 : TOTAL / 2 + 200 + THREADS * 100,
                   "WAL %d: all records back", k);
            wal_close(w[k]);
        }
    }
}

/* Failure injection: the hook fails the chosen op once armed, and can hold
 * the pool thread inside the hook until the test lets it go. */
struct fault {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    enum wal_io_op op;
    int armed;
    int hold;   /* block in the hook until released */
    int inside; /* a pool thread is blocked in the hook */
    int release;
    int hits;
};

static int fault_hook(void *arg, enum wal_io_op op)
{
    struct fault *f = arg;
    int rc = 0;
    pthread_mutex_lock(&f->mu);
    if (f->armed && op == f->op) {
        f->hits++;
        if (f->hold) {
            f->inside = 1;
            pthread_cond_broadcast(&f->cv);
            while (!f->release)
                pthread_cond_wait(&f->cv, &f->mu);
        }
        rc = EIO;
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static void fault_case(struct wal_pool *pool, enum wal_io_op op, const char *name)
{
    char dir[512];
    struct fault f = {.op = op};
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    /* Rotation at every record makes the DIRSYNC case reachable. */
    struct wal_options o = {.segment_bytes = op == WAL_IO_DIRSYNC ? 1 : 0,
                            .test_io_hook = fault_hook,
                            .test_io_arg = &f};
    struct nerr err = {0};

    mkdirf(dir, sizeof dir, name);
    struct wal *w = open_ok(dir, &o, pool, name);
    if (!w)
        return;
    is_int(write_fixed(w, 5, 50, 0xAA), 0, "%s: 5 records before the fault", name);

    pthread_mutex_lock(&f.mu);
    f.armed = 1;
    f.hold = 1;
    pthread_mutex_unlock(&f.mu);
    struct acks a;
    acks_init(&a, 5, 0);
    a.expect_status = NERR_IO;
    unsigned char buf[50];
    memset(buf, 0xCC, sizeof buf);
    wal_submit(w, buf, sizeof buf, on_done, &a, NULL);
    pthread_mutex_lock(&f.mu);
    while (!f.inside)
        pthread_cond_wait(&f.cv, &f.mu);
    pthread_mutex_unlock(&f.mu);
    /* The pool thread is stuck in the failing call: these wait for the next round. */
    int rc = 0;
    for (int i = 0; i < 3; i++)
        rc |= wal_submit(w, buf, sizeof buf, on_done, &a, NULL);
    is_int(rc, 0, "%s: submits during the failing batch are accepted", name);
    is_int(wal_truncate_suffix(w, 2, &err), NERR_BUSY, "%s: truncate while busy: NERR_BUSY", name);
    struct capture cap;
    capture_begin(&cap);
    pthread_mutex_lock(&f.mu);
    f.release = 1;
    pthread_cond_broadcast(&f.cv);
    pthread_mutex_unlock(&f.mu);
    is_int(acks_wait(&a, 4), 4, "%s: the failed batch and the pending records complete", name);
    const char *log = capture_end(&cap);
    ok(strstr(log, "ERROR") && strstr(log, dir) && strstr(log, "Input/output error"),
       "%s: the failure is logged with the WAL directory and errno text", name);
    is_int(a.bad_status, 0, "%s: all four completed with NERR_IO", name);
    is_int(a.out_of_order, 0, "%s: in LSN order", name);
    uint64_t lsn = 0;
    is_int(wal_submit(w, buf, sizeof buf, on_done, &a, &lsn), NERR_IO,
           "%s: a later submit fails NERR_IO at once", name);
    is_int(lsn, 0, "%s: and gets no LSN", name);
    is_int(wal_truncate_suffix(w, 2, &err), NERR_IO, "%s: truncate on a failed WAL: NERR_IO", name);
    is_int(f.hits, 1, "%s: the failed call was never retried", name);
    wal_close(w);
    acks_free(&a);

    o.test_io_hook = NULL;
    w = open_ok(dir, &o, pool, name);
    if (w) {
        /* A failed write never reached the file; a failed fsync may have. */
        uint64_t last = wal_last_lsn(w);
        ok(op == WAL_IO_WRITE ? last == 5 : last >= 5,
           "%s: reopen keeps the 5 acknowledged records (last_lsn %llu)", name,
           (unsigned long long)last);
        is_int(write_fixed(w, 2, 50, 0xAA), 0, "%s: reopened log accepts writes", name);
        wal_close(w);
    }
    pthread_mutex_destroy(&f.mu);
    pthread_cond_destroy(&f.cv);
}

/* Proves an ack comes after an fdatasync that began after its record was
 * written: the hook counts fdatasync calls and notes the count at every
 * write; a callback with no fdatasync since the last write is early (a
 * round's callbacks follow its own writes). With unsafe_ack_before_sync
 * the same check must catch early acks, which shows the check can fail. */
struct sync_order {
    pthread_mutex_t mu;
    uint64_t syncs;
    uint64_t syncs_at_write;
    int early;
    int acked;
};

static int count_syncs(void *arg, enum wal_io_op op)
{
    struct sync_order *s = arg;
    pthread_mutex_lock(&s->mu);
    if (op == WAL_IO_FDATASYNC)
        s->syncs++;
    else if (op == WAL_IO_WRITE)
        s->syncs_at_write = s->syncs;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static void on_sync_order(void *arg, uint64_t lsn, int status)
{
    struct sync_order *s = arg;
    pthread_mutex_lock(&s->mu);
    (void)lsn;
    if (s->syncs == s->syncs_at_write)
        s->early++;
    s->acked++;
    pthread_mutex_unlock(&s->mu);
}

static int acks_before_sync(struct wal_pool *pool, int unsafe, const char *name)
{
    char dir[512];
    struct sync_order s = {.early = 0};
    pthread_mutex_init(&s.mu, NULL);
    struct wal_options o = {
        .test_io_hook = count_syncs, .test_io_arg = &s, .unsafe_ack_before_sync = unsafe};
    mkdirf(dir, sizeof dir, name);
    struct wal *w = open_ok(dir, &o, pool, name);
    if (!w)
        return -1;
    for (uint64_t lsn = 1; lsn < 64; lsn++) {
        unsigned char b = (unsigned char)lsn;
        wal_submit(w, &b, 1, on_sync_order, &s, NULL);
        if (lsn % 8 == 0)
            usleep(2000); /* let some batches go out alone */
    }
    wal_close(w); /* every callback has returned */
    if (s.acked != 63)
        diag("%s: %d acks", name, s.acked);
    pthread_mutex_destroy(&s.mu);
    return s.early;
}

static void test_ack_after_sync(struct wal_pool *pool)
{
    note("acks follow fdatasync");
    is_int(acks_before_sync(pool, 0, "ack-order"), 0,
           "no record acknowledged before an fdatasync issued after its write");
    cmp_ok(acks_before_sync(pool, 1, "ack-unsafe"), ">", 0,
           "unsafe_ack_before_sync: the same check sees early acks");
}

static void test_failure(struct wal_pool *pool)
{
    note("write/fsync failures fail the WAL for good");
    fault_case(pool, WAL_IO_WRITE, "fail-write");
    fault_case(pool, WAL_IO_FDATASYNC, "fail-fdatasync");
    fault_case(pool, WAL_IO_DIRSYNC, "fail-dirsync");
}

/* ---- crash ------------------------------------------------------------- */

struct ack_msg {
    uint64_t lsn;
    uint32_t crc;
    uint32_t pad;
};

struct child_ctx {
    int fd;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int inflight;
};

static void child_done(void *arg, uint64_t lsn, int status)
{
    struct child_ctx *c = arg;
    if (status == 0) {
        unsigned char buf[4096];
        size_t len = payload(99, lsn, 3000, buf);
        struct ack_msg m = {.lsn = lsn, .crc = crc32c(0, buf, len)};
        if (write(c->fd, &m, sizeof m) != sizeof m)
            _exit(3);
    }
    pthread_mutex_lock(&c->mu);
    c->inflight--;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Child: appends payload(99, lsn) with up to 32 records in flight for at most
 * 3 s, reporting each acknowledged LSN on fd. Killed by the parent long before. */
static void crash_child(const char *dir, int fd)
{
    struct wal_pool *pool;
    struct wal *w;
    struct nerr err = {0};
    struct wal_options o = {.segment_bytes = 64 << 10};
    struct child_ctx c = {.fd = fd};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    if (wal_pool_start(2, &pool, &err) || wal_open(dir, &o, pool, &w, &err)) {
        fprintf(stderr, "child: %s\n", err.msg);
        _exit(2);
    }
    double end = now_s() + 3;
    unsigned char buf[4096];
    while (now_s() < end) {
        pthread_mutex_lock(&c.mu);
        while (c.inflight >= 32)
            pthread_cond_wait(&c.cv, &c.mu);
        c.inflight++;
        /* Holding c.mu keeps LSN assignment and payload choice together. */
        uint64_t next = wal_last_lsn(w) + 1;
        size_t len = payload(99, next, 3000, buf);
        uint64_t lsn;
        if (wal_submit(w, buf, len, child_done, &c, &lsn) != 0 || lsn != next)
            _exit(4);
        pthread_mutex_unlock(&c.mu);
    }
    _exit(0);
}

struct crash_check {
    int mismatches;
    uint64_t n;
    uint32_t *crc; /* crc[lsn] of the replayed payload */
    size_t cap;
};

static int on_crash_replay(void *arg, uint64_t lsn, const void *data, size_t len)
{
    struct crash_check *c = arg;
    unsigned char buf[4096];
    size_t want = payload(99, lsn, 3000, buf);
    if (want != len || memcmp(buf, data, len) != 0)
        c->mismatches++;
    if (lsn < c->cap)
        c->crc[lsn] = crc32c(0, data, len);
    c->n++;
    return 0;
}

struct acked {
    uint32_t crc;
    int seen;
};

static void test_crash(void)
{
    enum { ROUNDS = 10 };
    char dir[512];
    mkdirf(dir, sizeof dir, "crash");
    note("crash: %d rounds of SIGKILL during acknowledged appends", ROUNDS);
    uint64_t seed = g_seed;
    uint64_t total_acked = 0;
    int lost = 0, bad = 0, rounds_ok = 0, torn = 0, rotations = 0;
    struct wal_pool *pool;
    struct nerr err = {0};

    for (int r = 0; r < ROUNDS; r++) {
        int p[2];
        if (pipe(p) != 0)
            bail_out("pipe");
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            crash_child(dir, p[1]);
        }
        close(p[1]);
        seed = mix(seed);
        int delay_ms = 30 + (int)(seed % 250);
        double kill_at = now_s() + delay_ms / 1000.0;
        uint64_t max_acked = 0, acked = 0;
        struct acked *ack = NULL;
        size_t cap = 0;
        int killed = 0;
        struct ack_msg m;
        /* Read acks until the kill time, then kill and drain what was written. */
        fcntl(p[0], F_SETFL, O_NONBLOCK);
        for (;;) {
            ssize_t n = read(p[0], &m, sizeof m);
            if (n == (ssize_t)sizeof m) {
                if (m.lsn >= cap) {
                    size_t nc = cap ? cap * 2 : 4096;
                    while (nc <= m.lsn)
                        nc *= 2;
                    ack = realloc(ack, nc * sizeof *ack);
                    memset(ack + cap, 0, (nc - cap) * sizeof *ack);
                    cap = nc;
                }
                ack[m.lsn].crc = m.crc;
                ack[m.lsn].seen = 1;
                max_acked = m.lsn > max_acked ? m.lsn : max_acked;
                acked++;
                continue;
            }
            if (n == 0)
                break;
            if (!killed && now_s() >= kill_at) {
                kill(pid, SIGKILL);
                killed = 1;
                fcntl(p[0], F_SETFL, 0); /* now drain to EOF */
                continue;
            }
            usleep(1000);
        }
        close(p[0]);
        int st;
        waitpid(pid, &st, 0);
        if (!WIFSIGNALED(st))
            diag("round %d: child exited with %d before the kill", r, WEXITSTATUS(st));
        total_acked += acked;

        struct wal *w = NULL;
        if (wal_pool_start(1, &pool, &err))
            bail_out("pool");
        struct capture logcap;
        capture_begin(&logcap);
        int rc = wal_open(dir, NULL, pool, &w, &err);
        const char *log = capture_end(&logcap);
        torn += strstr(log, "torn tail") != NULL;
        rotations += strstr(log, "incomplete segment header") != NULL;
        if (rc) {
            diag("round %d: reopen failed: %s", r, err.msg);
            bad++;
        } else {
            uint64_t last = wal_last_lsn(w);
            struct crash_check cc = {.cap = last + 1};
            cc.crc = calloc(cc.cap, sizeof *cc.crc);
            if (wal_replay(w, 0, on_crash_replay, &cc, &err) != 0 || cc.mismatches || cc.n != last)
                bad++;
            if (last < max_acked)
                lost++;
            /* Every acknowledged LSN is in the log with the bytes the child sent. */
            for (uint64_t l = 1; l < cap && l <= max_acked; l++)
                if (ack[l].seen && (l > last || cc.crc[l] != ack[l].crc))
                    lost++;
            rounds_ok++;
            note("round %d: killed after %d ms, %llu acked (max LSN %llu), log holds %llu", r,
                 delay_ms, (unsigned long long)acked, (unsigned long long)max_acked,
                 (unsigned long long)last);
            free(cc.crc);
            wal_close(w);
        }
        wal_pool_stop(pool);
        free(ack);
    }
    note("crash: recovery truncated a torn tail in %d rounds, removed a half-made segment in %d",
         torn, rotations);
    is_int(rounds_ok, ROUNDS, "every round reopened");
    is_int(lost, 0, "every acknowledged record is present with the acknowledged bytes");
    is_int(bad, 0, "the log replays whole and every record is exact");
    cmp_ok(total_acked, ">", 0, "records were acknowledged (%llu in total)",
           (unsigned long long)total_acked);
}

static void test_truncate(struct wal_pool *pool)
{
    char dir[512];
    struct wal_options o = {.segment_bytes = 600};
    struct nerr err = {0};

    note("truncate_suffix and reset");
    mkdirf(dir, sizeof dir, "trunc");
    struct wal *w = open_ok(dir, &o, pool, "trunc");
    if (!w)
        return;
    write_fixed(w, 30, 100, 0xAA);
    uint64_t segs[16];
    is_int(list_segs(dir, segs, 16), 6, "30 records in 6 segments");
    is_int(wal_truncate_suffix(w, 40, &err), 0, "truncate beyond the end: no-op");
    is_int(wal_last_lsn(w), 30, "no-op kept last_lsn");
    is_int(wal_truncate_suffix(w, 12, &err), 0, "truncate_suffix(12)");
    is_int(wal_last_lsn(w), 12, "last_lsn 12");
    ok(list_segs(dir, segs, 16) == 3 && segs[2] == 11, "segments after LSN 12's are gone");
    is_int(write_fixed(w, 4, 100, 0xBB), 0, "submits continue at 13");
    is_int(wal_last_lsn(w), 16, "last_lsn 16");
    wal_close(w);
    w = open_ok(dir, &o, pool, "trunc reopen");
    if (!w)
        return;
    is_int(wal_last_lsn(w), 16, "reopen: last_lsn 16");
    struct fixed_check c = {.len = 100, .fill = 0xAA};
    wal_replay(w, 0, on_fixed, &c, &err);
    ok(c.n == 16 && c.bad == 4, "records 1..12 old, 13..16 new (%d differ)", c.bad);
    c = (struct fixed_check){.len = 100, .fill = 0xBB};
    wal_replay(w, 12, on_fixed, &c, &err);
    ok(c.n == 4 && c.bad == 0 && c.last == 16, "13..16 carry the new bytes");
    /* Truncate exactly at a segment end: the earlier segment becomes current. */
    is_int(wal_truncate_suffix(w, 10, &err), 0, "truncate at a segment boundary (10)");
    ok(list_segs(dir, segs, 16) == 2 && segs[1] == 6, "segment 11 removed");
    is_int(write_fixed(w, 1, 100, 0xCC), 0, "append after boundary truncate");
    ok(list_segs(dir, segs, 16) == 3 && segs[2] == 11, "rotation recreates segment 11");

    /* Below the first stored LSN: everything goes, numbering continues. */
    is_int(wal_release(w, 10, &err), 0, "release up to 10");
    is_int(wal_first_lsn(w), 11, "first_lsn 11");
    is_int(wal_truncate_suffix(w, 7, &err), 0, "truncate_suffix(7) below the first record");
    ok(wal_first_lsn(w) == 0 && wal_last_lsn(w) == 7, "empty log, last_lsn 7");
    is_int(write_fixed(w, 1, 100, 0xCC), 0, "next append");
    ok(wal_first_lsn(w) == 8 && wal_last_lsn(w) == 8, "gets LSN 8");
    is_int(wal_reset(w, 1000, &err), 0, "wal_reset(1000)");
    ok(list_segs(dir, segs, 16) == 1 && segs[0] == 1001, "one empty segment named 1001");
    wal_close(w);
    w = open_ok(dir, &o, pool, "reset reopen");
    if (!w)
        return;
    ok(wal_first_lsn(w) == 0 && wal_last_lsn(w) == 1000, "reopen after reset: empty, last 1000");
    struct fixed_check e = {.len = 100};
    is_int(wal_replay(w, 1000, on_fixed, &e, &err), 0, "replay from 1000: nothing to do");
    is_int(wal_replay(w, 999, on_fixed, &e, &err), NERR_NOTFOUND, "replay from 999: NOTFOUND");
    is_int(write_fixed(w, 2, 100, 0xDD), 0, "appends continue at 1001");
    is_int(wal_last_lsn(w), 1002, "last_lsn 1002");
    wal_close(w);
}

int main(void)
{
    struct wal_pool *pool;
    struct nerr err = {0};
    const char *env = getenv("NINES_SEED");
    g_seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
    note("seed %llu (set NINES_SEED to replay)", (unsigned long long)g_seed);
    log_init("test_wal", LOG_WARN);

    const char *tmp = getenv("TMPDIR");
    snprintf(g_top, sizeof g_top, "%s/nines-wal-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_top))
        bail_out("mkdtemp failed");

    if (wal_pool_start(4, &pool, &err))
        bail_out(err.msg);
    test_round_trip(pool);
    test_torn_tail(pool);
    test_corruption(pool);
    test_group_commit(pool);
    test_ack_after_sync(pool);
    test_failure(pool);
    test_truncate(pool);
    wal_pool_stop(pool);
    /* Forks: run with no other threads alive in this process. */
    test_crash();

    nftw(g_top, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return done_testing();
}
