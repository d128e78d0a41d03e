/*
 * test_snapstream.c — snapshot streams in chunks (store/snapstream.h): two
 * modules wired to each other through a lossy link. A damaged chunk is
 * refused, a lost chunk is sent again from the last acknowledged offset
 * (not from the start), duplicates and chunks out of order are ignored, a
 * truncated stream or one whose whole CRC does not match is never handed
 * over, and the LMDB stream produces the same bytes as the in-memory
 * snapshot.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/crc32c.h"
#include "lib/fsutil.h"
#include "store/raftwire.h"
#include "store/snapstream.h"
#include "store/state.h"
#include "t/tap.h"

enum mode { CLEAN, CORRUPT, DROP, REORDER, TRUNCATE };

struct link {
    struct snapstream *dst;
    const char *from;
    enum mode mode;
    int chunks;          /* chunks seen on this link */
    int done_fault;      /* the one-off fault happened */
    unsigned char *held; /* REORDER: a chunk held back */
    size_t held_len;
    uint64_t held_gid;
    uint64_t cut; /* TRUNCATE: chunks at or past this offset are lost */
    pthread_mutex_t mu;
};

static struct link a2b, b2a;
static pthread_mutex_t dmu = PTHREAD_MUTEX_INITIALIZER;
static int delivered[16];
static uint64_t delivered_index[16];
static struct raft_conf delivered_conf[16];

static void pass(struct link *l, uint64_t gid, const void *msg, size_t len)
{
    struct raft_msg m;
    struct nerr e = {0};
    if (raftwire_decode(msg, len, gid, &m, &e))
        return;
    snapstream_recv(l->dst, l->from, gid, &m);
    raft_msg_release(&m);
}

static int link_send(void *arg, const char *to, uint64_t gid, const void *msg, size_t len)
{
    struct link *l = arg;
    (void)to;
    struct raft_msg m;
    struct nerr e = {0};
    if (raftwire_decode(msg, len, gid, &m, &e))
        return NERR_INVALID;
    int chunk = m.type == RAFTWIRE_SNAP_CHUNK;
    uint64_t off = m.commit;
    raft_msg_release(&m);
    pthread_mutex_lock(&l->mu);
    int n = chunk ? ++l->chunks : 0;
    enum mode mode = chunk ? l->mode : CLEAN;
    pthread_mutex_unlock(&l->mu);
    if (mode == CORRUPT && n == 2 && !l->done_fault) {
        l->done_fault = 1;
        unsigned char *bad = malloc(len);
        memcpy(bad, msg, len);
        bad[len - 10] ^= 0x40; /* a payload byte: the chunk's CRC no longer matches */
        pass(l, gid, bad, len);
        free(bad);
        return 0;
    }
    if (mode == DROP && n == 3 && !l->done_fault) {
        l->done_fault = 1;
        return 0;
    }
    if (mode == TRUNCATE && off >= l->cut)
        return 0;
    if (mode == REORDER && n == 1 && !l->done_fault) {
        l->done_fault = 1;
        l->held = malloc(len);
        memcpy(l->held, msg, len);
        l->held_len = len;
        l->held_gid = gid;
        return 0;
    }
    pass(l, gid, msg, len);
    if (mode == REORDER && n == 2 && l->held) {
        pass(l, l->held_gid, l->held, l->held_len); /* chunk 1 after chunk 2 */
        pass(l, gid, msg, len);                     /* chunk 2 again, in order now */
        pass(l, gid, msg, len);                     /* and a duplicate of it */
        free(l->held);
        l->held = NULL;
    }
    return 0;
}

static void deliver(void *arg, uint64_t gid, const char *from, const struct raft_msg *m)
{
    (void)arg;
    (void)from;
    pthread_mutex_lock(&dmu);
    if (gid < 16) {
        delivered[gid]++;
        delivered_index[gid] = m->index;
        delivered_conf[gid] = m->conf;
    }
    pthread_mutex_unlock(&dmu);
}

static int got(uint64_t gid)
{
    pthread_mutex_lock(&dmu);
    int n = delivered[gid];
    pthread_mutex_unlock(&dmu);
    return n;
}

static int wait_delivered(uint64_t gid, int ms)
{
    int64_t end = (int64_t)clock_mono_ms() + ms;
    while ((int64_t)clock_mono_ms() < end && !got(gid))
        usleep(2000);
    return got(gid);
}

static unsigned char *pattern(size_t len, unsigned seed)
{
    unsigned char *b = malloc(len);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        b[i] = (unsigned char)(x >> 16);
    }
    return b;
}

/* The received file for gid holds exactly want[0..len). */
static int file_holds(const char *dir, uint64_t index, const unsigned char *want, size_t len)
{
    char p[512];
    snprintf(p, sizeof p, "%s/SNAPSHOT.ready.%llu", dir, (unsigned long long)index);
    int fd = open(p, O_RDONLY);
    if (fd < 0)
        return 0;
    struct snapfile f;
    struct nerr e = {0};
    int okf = !snapfile_read(fd, p, &f, &e) && f.index == index && f.len == len &&
              f.crc == crc32c(0, want, len);
    unsigned char *b = malloc(len + 1);
    okf = okf && pread(fd, b, len, (off_t)f.off) == (ssize_t)len && !memcmp(b, want, len);
    free(b);
    close(fd);
    return okf;
}

static int any_ready(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    while (d && (de = readdir(d)))
        n += !strncmp(de->d_name, "SNAPSHOT.ready.", 15);
    if (d)
        closedir(d);
    return n;
}

int main(void)
{
    plan(29);
    char tmpl[] = "/tmp/test_snapstream.XXXXXX";
    char *root = mkdtemp(tmpl);
    char adir[256], bdir[256];
    snprintf(adir, sizeof adir, "%s/a", root);
    snprintf(bdir, sizeof bdir, "%s/b", root);
    mkdir(adir, 0700);
    mkdir(bdir, 0700);
    struct nerr e = {0};
    struct snapstream *A, *B;
    pthread_mutex_init(&a2b.mu, NULL);
    pthread_mutex_init(&b2a.mu, NULL);
    struct snapstream_config ca = {.rate = 64ull << 20,
                                   .chunk = 64 << 10,
                                   .window = 3,
                                   .resend_ms = 150,
                                   .stall_ms = 5000,
                                   .send = link_send,
                                   .send_arg = &a2b,
                                   .deliver = deliver};
    struct snapstream_config cb = ca;
    cb.send_arg = &b2a;
    if (snapstream_start(&ca, &A, &e) || snapstream_start(&cb, &B, &e)) {
        printf("Bail out! %s\n", e.msg);
        return 1;
    }
    a2b.dst = B, a2b.from = "a";
    b2a.dst = A, b2a.from = "b";
    const char *nodes[3] = {"a", "b", "c"};
    _Atomic int lead = RAFT_LEADER, follow = RAFT_FOLLOWER;
    _Atomic uint64_t term = 5;
    for (uint64_t gid = 1; gid <= 6; gid++) {
        ok(!snapstream_register(A, gid, "g", adir, nodes, 3, 1, &lead, &term, &e) &&
               !snapstream_register(B, gid, "g", bdir, nodes, 3, 2, &follow, &term, &e),
           "group %llu registered on both", (unsigned long long)gid);
    }

    /* 1. A clean stream of 10 chunks arrives whole. */
    size_t len = 10 * (64 << 10) - 123;
    unsigned char *data = pattern(len, 1);
    struct snap_source src = {.buf = malloc(len), .len = len};
    memcpy(src.buf, data, len);
    a2b.mode = CLEAN;
    struct raft_conf conf = {.voters = 0x16, .voters_out = 0x0e, .log = 0};
    ok(!snapstream_offer(A, 1, 2, 5, 100, 4, &conf, &src, &e), "a stream is offered");
    struct snap_source again = {.buf = malloc(8), .len = 8};
    is_int(snapstream_offer(A, 1, 2, 5, 100, 4, NULL, &again, &e), NERR_EXISTS,
           "a second stream to the same member is refused while one is in flight");
    free(again.buf);
    ok(wait_delivered(1, 5000) && delivered_index[1] == 100, "the clean stream is handed over");
    ok(file_holds(bdir, 100, data, len), "... its file holds exactly the stream");
    ok(delivered_conf[1].voters == 0x16 && delivered_conf[1].voters_out == 0x0e &&
           delivered_conf[1].log == 0,
       "the delivered SNAPSHOT message carries the snapshot's configuration");
    {
        char p[512];
        snprintf(p, sizeof p, "%s/SNAPSHOT.ready.100", bdir);
        int fd = open(p, O_RDONLY);
        struct snapfile f = {0};
        ok(fd >= 0 && !snapfile_read(fd, p, &f, &e) && f.conf.voters == 0x16 &&
               f.conf.voters_out == 0x0e && f.conf.log == 0 && f.off == SNAPFILE_HEADER,
           "the received file's header holds the configuration (version 3)");
        if (fd >= 0)
            close(fd);
    }
    {
        /* A version-2 header (before membership changes) still reads, conf zero. */
        unsigned char v2[SNAPFILE_HEADER_V2] = {0};
        memcpy(v2, "N9SS", 4);
        v2[4] = 2;
        v2[8] = 77; /* index */
        v2[16] = 3; /* term */
        v2[36] = 1; /* SNAPFILE_META */
        uint32_t c = crc32c(0, v2, 40);
        memcpy(v2 + 40, &c, 4); /* little-endian hosts only, as the rest of the suite */
        struct snapfile f;
        ok(!snapfile_parse(v2, sizeof v2, sizeof v2, &f, &e) && f.index == 77 && f.term == 3 &&
               f.flags == SNAPFILE_META && f.off == SNAPFILE_HEADER_V2 && !f.conf.voters &&
               !f.conf.voters_out && !f.conf.log,
           "a version-2 SNAPSHOT header still reads, with conf zero");
    }

    /* 2. A damaged chunk is refused; the stream resumes and completes. */
    struct snapstream_stats s0, s1;
    snapstream_stats(B, &s0);
    struct snapstream_stats a0, a1;
    snapstream_stats(A, &a0);
    pthread_mutex_lock(&a2b.mu);
    a2b.mode = CORRUPT, a2b.chunks = 0, a2b.done_fault = 0;
    pthread_mutex_unlock(&a2b.mu);
    src = (struct snap_source){.buf = malloc(len), .len = len};
    memcpy(src.buf, data, len);
    ok(!snapstream_offer(A, 2, 2, 5, 200, 4, NULL, &src, &e),
       "stream with a damaged chunk offered");
    ok(wait_delivered(2, 5000) && file_holds(bdir, 200, data, len),
       "the damaged chunk was refused and sent again: the file is intact");
    snapstream_stats(B, &s1);
    snapstream_stats(A, &a1);
    cmp_ok(s1.chunks_bad - s0.chunks_bad, ">=", 1, "the receiver counted the damaged chunk");
    cmp_ok(a1.chunks_resent - a0.chunks_resent, ">=", 1, "the sender resent");
    cmp_ok(a1.chunks_resent - a0.chunks_resent, "<=", 3,
           "... only the window from the last acknowledged chunk, not the whole stream");

    /* 3. A lost chunk: resumed from the last acknowledged offset. */
    snapstream_stats(A, &a0);
    pthread_mutex_lock(&a2b.mu);
    a2b.mode = DROP, a2b.chunks = 0, a2b.done_fault = 0;
    pthread_mutex_unlock(&a2b.mu);
    src = (struct snap_source){.buf = malloc(len), .len = len};
    memcpy(src.buf, data, len);
    ok(!snapstream_offer(A, 3, 2, 5, 300, 4, NULL, &src, &e), "stream with a lost chunk offered");
    ok(wait_delivered(3, 5000) && file_holds(bdir, 300, data, len),
       "a lost chunk is sent again and the stream completes");
    snapstream_stats(A, &a1);
    cmp_ok(a1.chunks_resent - a0.chunks_resent, "<=", 3, "... resumed, not restarted");

    /* 4. Out of order and duplicated chunks are ignored. */
    snapstream_stats(B, &s0);
    pthread_mutex_lock(&a2b.mu);
    a2b.mode = REORDER, a2b.chunks = 0, a2b.done_fault = 0;
    pthread_mutex_unlock(&a2b.mu);
    src = (struct snap_source){.buf = malloc(len), .len = len};
    memcpy(src.buf, data, len);
    ok(!snapstream_offer(A, 4, 2, 5, 400, 4, NULL, &src, &e),
       "stream with reordered chunks offered");
    ok(wait_delivered(4, 5000) && file_holds(bdir, 400, data, len),
       "reordered and duplicated chunks do not damage the file");
    snapstream_stats(B, &s1);
    cmp_ok(s1.chunks_ignored - s0.chunks_ignored, ">=", 2, "... they were ignored (%llu)",
           (unsigned long long)(s1.chunks_ignored - s0.chunks_ignored));

    /* 5. A truncated stream is never handed over. */
    int ready_before = any_ready(bdir);
    pthread_mutex_lock(&a2b.mu);
    a2b.mode = TRUNCATE, a2b.cut = 5 * (64 << 10);
    pthread_mutex_unlock(&a2b.mu);
    src = (struct snap_source){.buf = malloc(len), .len = len};
    memcpy(src.buf, data, len);
    ok(!snapstream_offer(A, 5, 2, 5, 500, 4, NULL, &src, &e), "stream cut after 5 chunks offered");
    ok(!wait_delivered(5, 1200), "a truncated stream is not handed over");
    is_int(any_ready(bdir), ready_before, "... and leaves no ready file");

    /* 6. Chunks whose whole-stream CRC does not match: never handed over. */
    snapstream_stats(B, &s0);
    unsigned char one[100];
    memset(one, 7, sizeof one);
    struct raft_msg c = {.type = RAFTWIRE_SNAP_CHUNK,
                         .from = 1,
                         .to = 2,
                         .term = 5,
                         .index = 600,
                         .log_term = 4,
                         .commit = 0,
                         .hint = sizeof one,
                         .ctx = crc32c(0, one, sizeof one) ^ 1,
                         .reject = crc32c(0, one, sizeof one),
                         .data_len = sizeof one};
    c.data = malloc(sizeof one);
    memcpy(c.data, one, sizeof one);
    snapstream_recv(B, "a", 6, &c);
    raft_msg_release(&c);
    usleep(300000);
    snapstream_stats(B, &s1);
    ok(!got(6) && s1.installs_refused == s0.installs_refused + 1,
       "a stream whose whole CRC does not match is refused, not handed over");

    snapstream_stop(A);
    snapstream_stop(B);
    free(data);

    /* The LMDB stream is byte for byte state_dbi_snapshot's payload. */
    char sdir[256];
    snprintf(sdir, sizeof sdir, "%s/state", root);
    struct state *st;
    MDB_txn *txn;
    MDB_dbi dbi;
    struct state_options so = {.map_size = 64 << 20};
    int okd = !state_open(sdir, &so, &st, &e) && !state_write_begin(st, &txn, &e) &&
              !mdb_dbi_open(txn, "p", MDB_CREATE, &dbi);
    for (int i = 0; okd && i < 500; i++) {
        char k[32];
        unsigned char *v = pattern((size_t)(i * 37 % 3000), (unsigned)i);
        snprintf(k, sizeof k, "key%05d", i);
        MDB_val mk = {strlen(k), k}, mv = {(size_t)(i * 37 % 3000), v};
        okd = !mdb_put(txn, dbi, &mk, &mv, 0);
        free(v);
    }
    okd = okd && !state_write_commit(st, txn, &e) && !state_read_begin(st, &txn, &e);
    unsigned char *whole = NULL, *piece = malloc(1u << 20);
    size_t wlen = 0, plen = 0;
    struct state_dbi_stream *ds = NULL;
    okd = okd && !state_dbi_snapshot(txn, dbi, &whole, &wlen, &e) &&
          !state_dbi_stream_open(txn, dbi, &ds, &e);
    for (int pass_no = 0; okd && pass_no < 2; pass_no++) {
        plen = 0;
        for (;;) {
            size_t n;
            /* odd piece sizes cut records anywhere */
            if (state_dbi_stream_read(ds, piece + plen, 777, &n, &e)) {
                okd = 0;
                break;
            }
            if (!n)
                break;
            plen += n;
        }
        okd = okd && plen == wlen && !memcmp(piece, whole, wlen);
        if (okd)
            state_dbi_stream_rewind(ds, &e);
    }
    ok(okd, "the LMDB stream equals the in-memory snapshot (%zu bytes), also after a rewind", wlen);
    state_dbi_stream_close(ds);
    free(whole);
    free(piece);
    if (okd) {
        state_read_end(st, txn);
        state_close(st);
    }
    fs_rm_rf(root, &e);
    return 0;
}
