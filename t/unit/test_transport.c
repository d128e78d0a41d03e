/* The peer transport on real sockets (127.0.0.1 only): delivery with sender
 * and group, batching of 1000 groups into few frames, reconnect after a node
 * restarts on the same port, crafted bad frames from a raw socket (each
 * dropped, counted under its reason, the connection closed, nothing applied),
 * and the bounded send queue. Frame layout: docs/transport.md. */
#include "lib/clock.h"
#include "lib/crc32c.h"
#include "lib/log.h"
#include "store/transport.h"
#include "t/tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CLUSTER "tcluster"
#define MAXREC 8192
#define KEEP 64

/* ---- an inbox per node, filled by the receive callback ------------------ */

struct rec {
    char from[32];
    uint64_t group;
    size_t len;
    uint32_t crc; /* of the whole message, for messages longer than KEEP */
    unsigned char data[KEEP];
};

struct inbox {
    pthread_mutex_t mu;
    struct rec r[MAXREC];
    size_t n;
    size_t overflow;
};

static void on_recv(void *arg, const char *from, uint64_t group, const void *msg, size_t len)
{
    struct inbox *b = arg;
    pthread_mutex_lock(&b->mu);
    if (b->n < MAXREC) {
        struct rec *r = &b->r[b->n++];
        snprintf(r->from, sizeof r->from, "%s", from);
        r->group = group;
        r->len = len;
        memcpy(r->data, msg, len < KEEP ? len : KEEP);
        r->crc = crc32c(0, msg, len);
    } else {
        b->overflow++;
    }
    pthread_mutex_unlock(&b->mu);
}

/* Number of records in b from `from` (NULL = anyone) with this group and,
 * when data is non-NULL, exactly these bytes. */
static size_t inbox_count(struct inbox *b, const char *from, uint64_t group, const void *data,
                          size_t len)
{
    size_t k = 0;
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->n; i++) {
        struct rec *r = &b->r[i];
        if (from && strcmp(r->from, from) != 0)
            continue;
        if (r->group != group)
            continue;
        if (data && (r->len != len || memcmp(r->data, data, len < KEEP ? len : KEEP) != 0))
            continue;
        k++;
    }
    pthread_mutex_unlock(&b->mu);
    return k;
}

static size_t inbox_total(struct inbox *b)
{
    pthread_mutex_lock(&b->mu);
    size_t n = b->n;
    pthread_mutex_unlock(&b->mu);
    return n;
}

static double now_ms(void)
{
    return (double)clock_mono_ns() / 1e6;
}

/* Polls cond every 2 ms for at most ms milliseconds; evaluates to the last
 * value of cond (evaluated once per poll: cond may have side effects). */
#define WAIT_FOR(cond, ms)                                                                         \
    ({                                                                                             \
        double wf_end = now_ms() + (ms);                                                           \
        int wf_ok;                                                                                 \
        while (!(wf_ok = !!(cond)) && now_ms() < wf_end)                                           \
            usleep(2000);                                                                          \
        wf_ok;                                                                                     \
    })

/* A port that was free a moment ago (bound, read, closed). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) < 0)
        bail_out("cannot find a free port");
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- nodes -------------------------------------------------------------- */

#define NNODES 3
static const char *const ids[NNODES] = {"a", "b", "c"};

struct node {
    struct transport *t;
    struct inbox *box;
};

struct cluster {
    struct transport_peer peers[NNODES];
    struct node n[NNODES];
};

static int node_start(struct cluster *c, int i, struct nerr *err)
{
    struct transport_options o = {
        .cluster = CLUSTER,
        .self_id = ids[i],
        .listen_host = "127.0.0.1",
        .listen_port = c->peers[i].port,
        .peers = c->peers,
        .npeers = NNODES,
        .on_recv = on_recv,
        .arg = c->n[i].box,
        .reconnect_min_ms = 20,
        .reconnect_max_ms = 200,
        .connect_timeout_ms = 1000,
    };
    return transport_start(&o, &c->n[i].t, err);
}

static void stats(struct transport *t, struct transport_stats *s)
{
    transport_get_stats(t, s);
}

/* ---- raw frames, built from the documented layout ----------------------- */

static size_t frame(unsigned char *out, uint32_t magic, uint16_t ver, uint16_t type, const void *pl,
                    uint32_t plen)
{
    unsigned char *h = out;
    memcpy(h, &magic, 4); /* the format is little-endian, as is this host (x86-64) */
    memcpy(h + 4, &ver, 2);
    memcpy(h + 6, &type, 2);
    memcpy(h + 8, &plen, 4);
    memcpy(h + 16, pl, plen);
    uint32_t crc = crc32c(crc32c(0, h, 12), h + 16, plen);
    memcpy(h + 12, &crc, 4);
    return 16 + plen;
}

#define MAGIC 0x5054394Eu
#define HELLO 1
#define BATCH 2

static size_t hello_payload(unsigned char *p, const char *cluster, const char *id)
{
    uint16_t cl = (uint16_t)strlen(cluster), il = (uint16_t)strlen(id);
    memcpy(p, &cl, 2);
    memcpy(p + 2, cluster, cl);
    memcpy(p + 2 + cl, &il, 2);
    memcpy(p + 4 + cl, id, il);
    return 4u + cl + il;
}

/* A BATCH payload with one record (group, msg) but claiming `count` records. */
static size_t batch_payload(unsigned char *p, uint32_t count, uint64_t group, const char *msg)
{
    uint32_t ml = (uint32_t)strlen(msg);
    memcpy(p, &count, 4);
    memcpy(p + 4, &group, 8);
    memcpy(p + 12, &ml, 4);
    memcpy(p + 16, msg, ml);
    return 16u + ml;
}

static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* 1 when the other side closed the connection within the receive timeout. */
static int peer_closed(int fd)
{
    char b[64];
    for (int i = 0; i < 100; i++) {
        ssize_t n = recv(fd, b, sizeof b, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return 1;
        if (n < 0)
            return 0; /* timeout */
    }
    return 0;
}

/* ---- the tests ---------------------------------------------------------- */

static void test_start_errors(void)
{
    struct inbox *box = calloc(1, sizeof *box);
    pthread_mutex_init(&box->mu, NULL);
    struct transport *t = NULL;
    struct nerr err;
    struct transport_peer dup[2] = {{"x", "127.0.0.1", 1}, {"x", "127.0.0.1", 2}};
    struct transport_options o = {.cluster = CLUSTER,
                                  .self_id = "a",
                                  .listen_host = "127.0.0.1",
                                  .on_recv = on_recv,
                                  .arg = box};

    o.cluster = NULL;
    is_int(transport_start(&o, &t, &err), NERR_INVALID, "start: no cluster name -> NERR_INVALID");
    ok(t == NULL, "start: nothing returned on error");
    o.cluster = CLUSTER;
    o.peers = dup;
    o.npeers = 2;
    is_int(transport_start(&o, &t, &err), NERR_INVALID, "start: duplicate peer id -> NERR_INVALID");
    ok(strstr(err.msg, "duplicate") != NULL, "start: message names the problem (%s)", err.msg);

    /* A port someone else listens on. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    listen(fd, 1);
    getsockname(fd, (struct sockaddr *)&a, &al);
    o.peers = NULL;
    o.npeers = 0;
    o.listen_port = ntohs(a.sin_port);
    is_int(transport_start(&o, &t, &err), NERR_IO, "start: port in use -> NERR_IO (%s)", err.msg);
    close(fd);

    o.listen_port = 0;
    is_int(transport_start(&o, &t, &err), 0, "start: port 0 picks a free port");
    cmp_ok(transport_port(t), ">", 0, "transport_port reports it (%d)", t ? transport_port(t) : 0);
    transport_stop(t);
    pthread_mutex_destroy(&box->mu);
    free(box);
}

static void test_delivery(struct cluster *c)
{
    struct transport *A = c->n[0].t, *C = c->n[2].t;
    struct inbox *ba = c->n[0].box, *bb = c->n[1].box, *bc = c->n[2].box;

    is_int(transport_send(A, "b", 7, "to-b", 4), 0, "a->b queued");
    is_int(transport_send(A, "c", 8, "to-c", 4), 0, "a->c queued");
    is_int(transport_send(C, "a", 9, "c-to-a", 6), 0, "c->a queued");
    is_int(transport_send(c->n[1].t, "c", UINT64_MAX, "", 0), 0, "b->c empty message queued");
    ok(WAIT_FOR(inbox_count(bb, "a", 7, "to-b", 4) == 1, 3000), "b got a's message, group 7");
    ok(WAIT_FOR(inbox_count(bc, "a", 8, "to-c", 4) == 1, 3000), "c got a's message, group 8");
    ok(WAIT_FOR(inbox_count(ba, "c", 9, "c-to-a", 6) == 1, 3000), "a got c's message, group 9");
    ok(WAIT_FOR(inbox_count(bc, "b", UINT64_MAX, "", 0) == 1, 3000),
       "c got b's empty message, group 2^64-1");
    is_int(inbox_count(bb, NULL, 8, NULL, 0), 0, "b did not get c's message");

    is_int(transport_send(A, "a", 1, "x", 1), NERR_NOTFOUND, "send to self -> NERR_NOTFOUND");
    is_int(transport_send(A, "zz", 1, "x", 1), NERR_NOTFOUND,
           "send to a stranger -> NERR_NOTFOUND");
    is_int(transport_send(A, "b", 1, "x", (size_t)TRANSPORT_MAX_MSG + 1), NERR_LIMIT,
           "message over TRANSPORT_MAX_MSG -> NERR_LIMIT");
}

static void test_batching(struct cluster *c)
{
    struct transport *A = c->n[0].t, *B = c->n[1].t;
    struct inbox *bb = c->n[1].box;
    struct transport_stats a0, b0, a1, b1;
    char msg[32];

    /* The link must be up, else the flush happens at connect time anyway. */
    stats(A, &a0);
    stats(B, &b0);
    int sent = 0;
    for (uint64_t g = 1000; g < 2000; g++) {
        int n = snprintf(msg, sizeof msg, "hb-%llu", (unsigned long long)g);
        sent += transport_send(A, "b", g, msg, (size_t)n) == 0;
    }
    is_int(sent, 1000, "1000 groups' heartbeats queued for b");
    int all = WAIT_FOR(({
                           int k = 1;
                           for (uint64_t g = 1000; g < 2000 && k; g += 111)
                               k = inbox_count(bb, "a", g, NULL, 0) == 1;
                           k &&inbox_total(bb) >= 1000 + 1;
                       }),
                       3000);
    ok(all, "b received them");
    size_t good = 0;
    for (uint64_t g = 1000; g < 2000; g++) {
        int n = snprintf(msg, sizeof msg, "hb-%llu", (unsigned long long)g);
        good += inbox_count(bb, "a", g, msg, (size_t)n) == 1;
    }
    is_int(good, 1000, "each of the 1000 groups got exactly its own message, intact");
    WAIT_FOR(({
                 stats(A, &a1);
                 a1.records_sent - a0.records_sent >= 1000;
             }),
             1000);
    stats(B, &b1);
    uint64_t fs = a1.frames_sent - a0.frames_sent, fr = b1.frames_recv - b0.frames_recv;
    is_int(a1.records_sent - a0.records_sent, 1000, "a counted 1000 records sent");
    is_int(b1.records_recv - b0.records_recv, 1000, "b counted 1000 records received");
    /* Usually 1-3; the bound leaves room for a preempted sender thread on a
     * loaded machine while still failing a frame-per-message transport. */
    cmp_ok(fs, "<=", 50, "they went out in few frames (%llu)", (unsigned long long)fs);
    is_int(fr, fs, "b received as many frames as a sent");
    note("batching: 1000 messages in %llu frame(s), %llu bytes", (unsigned long long)fs,
         (unsigned long long)(a1.bytes_sent - a0.bytes_sent));
}

static void test_large(struct cluster *c)
{
    struct inbox *bb = c->n[1].box;
    size_t len = 3u * 1024 * 1024 + 17;
    unsigned char *big = malloc(len);
    for (size_t i = 0; i < len; i++)
        big[i] = (unsigned char)(i * 2654435761u >> 13);
    uint32_t want = crc32c(0, big, len);
    is_int(transport_send(c->n[0].t, "b", 31337, big, len), 0, "a 3 MiB message is queued");
    free(big); /* the transport copied it */
    int found = WAIT_FOR(({
                             int f = 0;
                             pthread_mutex_lock(&bb->mu);
                             for (size_t i = 0; i < bb->n; i++)
                                 f |= bb->r[i].group == 31337 && bb->r[i].len == len &&
                                      bb->r[i].crc == want;
                             pthread_mutex_unlock(&bb->mu);
                             f;
                         }),
                         3000);
    ok(found, "it arrives whole (length and CRC of the content match)");
}

struct sender {
    struct transport *t;
    int id;
    int okc;
};

static void *sender_main(void *arg)
{
    struct sender *s = arg;
    char msg[32];
    for (int i = 0; i < 500; i++) {
        int n = snprintf(msg, sizeof msg, "s%d-%03d", s->id, i);
        s->okc += transport_send(s->t, "b", 5000 + (uint64_t)s->id, msg, (size_t)n) == 0;
    }
    return NULL;
}

/* Four threads send to the same peer at once: every message arrives, and
 * each thread's messages keep their order (one connection, FIFO queue). */
static void test_concurrent(struct cluster *c)
{
    struct inbox *bb = c->n[1].box;
    pthread_t th[4];
    struct sender sd[4];
    for (int i = 0; i < 4; i++) {
        sd[i] = (struct sender){c->n[0].t, i, 0};
        pthread_create(&th[i], NULL, sender_main, &sd[i]);
    }
    int okc = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        okc += sd[i].okc;
    }
    is_int(okc, 2000, "4 threads queued 500 messages each");
    ok(WAIT_FOR(({
                    size_t k = 0;
                    for (int i = 0; i < 4; i++)
                        k += inbox_count(bb, "a", 5000 + (uint64_t)i, NULL, 0);
                    k == 2000;
                }),
                3000),
       "all 2000 arrive");
    int ordered = 1;
    int next[4] = {0, 0, 0, 0};
    pthread_mutex_lock(&bb->mu);
    for (size_t i = 0; i < bb->n; i++) {
        struct rec *r = &bb->r[i];
        if (r->group < 5000 || r->group > 5003)
            continue;
        int id = (int)(r->group - 5000);
        char want[32];
        int n = snprintf(want, sizeof want, "s%d-%03d", id, next[id]);
        if (r->len != (size_t)n || memcmp(r->data, want, (size_t)n) != 0)
            ordered = 0;
        next[id]++;
    }
    pthread_mutex_unlock(&bb->mu);
    ok(ordered, "each sender's messages arrive intact and in its order");
}

struct bad_case {
    const char *name;
    int reason;
    size_t (*build)(unsigned char *buf); /* the bytes to send */
    int half_close;                      /* shutdown(SHUT_WR) after sending */
};

static unsigned char scratch[1024];

static size_t with_hello(unsigned char *buf)
{
    size_t n = hello_payload(scratch, CLUSTER, "a");
    return frame(buf, MAGIC, 1, HELLO, scratch, (uint32_t)n);
}

static size_t b_magic(unsigned char *buf)
{
    size_t n = hello_payload(scratch, CLUSTER, "a");
    return frame(buf, 0x4E395450u, 1, HELLO, scratch, (uint32_t)n);
}

static size_t b_version(unsigned char *buf)
{
    size_t n = hello_payload(scratch, CLUSTER, "a");
    return frame(buf, MAGIC, 99, HELLO, scratch, (uint32_t)n);
}

/* A first frame announcing 1 MiB before any HELLO: a handshake is small,
 * so it is refused on its header, without waiting for the payload. */
static size_t b_big_first(unsigned char *buf)
{
    frame(buf, MAGIC, 1, HELLO, "", 0);
    uint32_t big = 1u << 20;
    memcpy(buf + 8, &big, 4);
    return 16;
}

static size_t b_too_long(unsigned char *buf)
{
    size_t off = with_hello(buf);
    frame(buf + off, MAGIC, 1, BATCH, "", 0);
    uint32_t big = TRANSPORT_MAX_PAYLOAD + 1;
    memcpy(buf + off + 8, &big, 4);
    return off + 16;
}

static size_t b_crc(unsigned char *buf)
{
    size_t off = with_hello(buf);
    size_t n = batch_payload(scratch, 1, 777, "forged");
    off += frame(buf + off, MAGIC, 1, BATCH, scratch, (uint32_t)n);
    buf[off - 1] ^= 0x01; /* one bit of the message */
    return off;
}

static size_t b_truncated(unsigned char *buf)
{
    size_t off = with_hello(buf);
    size_t n = batch_payload(scratch, 1, 777, "cut short in the middle");
    return off + frame(buf + off, MAGIC, 1, BATCH, scratch, (uint32_t)n) - 10;
}

static size_t b_type(unsigned char *buf)
{
    size_t off = with_hello(buf);
    size_t n = batch_payload(scratch, 1, 777, "typed");
    return off + frame(buf + off, MAGIC, 1, 9, scratch, (uint32_t)n);
}

static size_t b_payload(unsigned char *buf)
{
    size_t off = with_hello(buf);
    size_t n = batch_payload(scratch, 2, 777, "one of two"); /* claims 2, holds 1 */
    return off + frame(buf + off, MAGIC, 1, BATCH, scratch, (uint32_t)n);
}

static size_t b_no_hello(unsigned char *buf)
{
    size_t n = batch_payload(scratch, 1, 777, "no hello");
    return frame(buf, MAGIC, 1, BATCH, scratch, (uint32_t)n);
}

static size_t b_cluster(unsigned char *buf)
{
    size_t off, n = hello_payload(scratch, "othercluster", "a");
    off = frame(buf, MAGIC, 1, HELLO, scratch, (uint32_t)n);
    n = batch_payload(scratch, 1, 777, "from afar");
    return off + frame(buf + off, MAGIC, 1, BATCH, scratch, (uint32_t)n);
}

static size_t b_unknown(unsigned char *buf)
{
    size_t off, n = hello_payload(scratch, CLUSTER, "mallory");
    off = frame(buf, MAGIC, 1, HELLO, scratch, (uint32_t)n);
    n = batch_payload(scratch, 1, 777, "from mallory");
    return off + frame(buf + off, MAGIC, 1, BATCH, scratch, (uint32_t)n);
}

static size_t b_second_hello(unsigned char *buf)
{
    size_t off = with_hello(buf);
    return off + with_hello(buf + off);
}

static void test_bad_frames(struct cluster *c)
{
    struct transport *B = c->n[1].t;
    struct inbox *bb = c->n[1].box;
    int port = c->peers[1].port;
    unsigned char buf[4096];
    struct transport_stats s0, s1;

    /* Positive control: the raw encoder follows the format, so each case
     * below differs from an accepted stream only by its defect. */
    int fd = raw_connect(port);
    ok(fd >= 0, "raw socket connects to b");
    size_t off = with_hello(buf);
    size_t n = batch_payload(scratch, 1, 555, "raw-ok");
    off += frame(buf + off, MAGIC, 1, BATCH, scratch, (uint32_t)n);
    send_all(fd, buf, off);
    ok(WAIT_FOR(inbox_count(bb, "a", 555, "raw-ok", 6) == 1, 2000),
       "a well-formed raw HELLO + BATCH is delivered");
    close(fd);

    static const struct bad_case cases[] = {
        {"bad magic", TRANSPORT_DROP_BAD_MAGIC, b_magic, 0},
        {"bad version", TRANSPORT_DROP_BAD_VERSION, b_version, 0},
        {"length over 64 MiB", TRANSPORT_DROP_TOO_LONG, b_too_long, 0},
        {"CRC mismatch", TRANSPORT_DROP_BAD_CRC, b_crc, 0},
        {"frame cut short", TRANSPORT_DROP_TRUNCATED, b_truncated, 1},
        {"unknown frame type", TRANSPORT_DROP_BAD_TYPE, b_type, 0},
        {"second HELLO", TRANSPORT_DROP_BAD_TYPE, b_second_hello, 0},
        {"record count beyond payload", TRANSPORT_DROP_BAD_PAYLOAD, b_payload, 0},
        {"BATCH before HELLO", TRANSPORT_DROP_NO_HELLO, b_no_hello, 0},
        {"HELLO from another cluster", TRANSPORT_DROP_WRONG_CLUSTER, b_cluster, 0},
        {"HELLO with an id not in the cluster", TRANSPORT_DROP_UNKNOWN_PEER, b_unknown, 0},
        {"a 1 MiB frame before the HELLO", TRANSPORT_DROP_TOO_LONG, b_big_first, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct bad_case *k = &cases[i];
        stats(B, &s0);
        fd = raw_connect(port);
        n = k->build(buf);
        int sent = fd >= 0 && send_all(fd, buf, n) == 0;
        if (k->half_close && fd >= 0)
            shutdown(fd, SHUT_WR);
        int counted = WAIT_FOR(({
                                   stats(B, &s1);
                                   s1.dropped[k->reason] > s0.dropped[k->reason];
                               }),
                               2000);
        ok(sent && counted, "%s: dropped and counted as %s", k->name,
           transport_drop_name(k->reason));
        uint64_t other = 0;
        for (int r = 0; r < TRANSPORT_DROP__COUNT; r++)
            if (r != k->reason)
                other += s1.dropped[r] - s0.dropped[r];
        ok(s1.dropped[k->reason] - s0.dropped[k->reason] == 1 && other == 0,
           "%s: counted once, under no other reason", k->name);
        ok(fd >= 0 && peer_closed(fd), "%s: b closed the connection", k->name);
        if (fd >= 0)
            close(fd);
    }
    is_int(inbox_count(bb, NULL, 777, NULL, 0), 0, "nothing from a rejected frame was delivered");

    is_int(transport_send(c->n[0].t, "b", 5, "still-fine", 10), 0, "a->b after the attacks");
    ok(WAIT_FOR(inbox_count(bb, "a", 5, "still-fine", 10) == 1, 2000),
       "b still receives from good peers");
}

static void test_restart(struct cluster *c)
{
    struct transport *A = c->n[0].t;
    struct inbox *bc = c->n[2].box;
    struct transport_stats s0, s1;
    struct nerr err;

    stats(A, &s0);
    is_int(s0.connected, 2, "a has both links up");
    transport_stop(c->n[2].t);
    c->n[2].t = NULL;
    ok(WAIT_FOR(({
                    stats(A, &s1);
                    s1.connected == 1;
                }),
                2000),
       "a notices c went away");
    /* c is down: a keeps a bounded queue and keeps retrying with backoff. */
    usleep(300 * 1000);
    stats(A, &s1);
    cmp_ok(s1.connect_failures - s0.connect_failures, ">=", 1, "a retried while c was down");
    cmp_ok(s1.connect_failures - s0.connect_failures, "<=", 20,
           "with backoff, not a busy loop (%llu attempts in ~300 ms)",
           (unsigned long long)(s1.connect_failures - s0.connect_failures));
    is_int(transport_send(A, "c", 42, "while-down", 10), 0, "a queues for c while it is down");

    pthread_mutex_lock(&bc->mu);
    bc->n = 0;
    pthread_mutex_unlock(&bc->mu);
    double t0 = now_ms();
    is_int(node_start(c, 2, &err), 0, "c restarts on the same port");
    if (!c->n[2].t)
        return;
    ok(WAIT_FOR(inbox_count(bc, "a", 42, "while-down", 10) == 1, 3000),
       "the message queued while c was down arrives after the reconnect");
    note("reconnect + delivery took %.0f ms", now_ms() - t0);
    is_int(transport_send(A, "c", 43, "after", 5), 0, "a->c after the restart");
    is_int(transport_send(c->n[1].t, "c", 44, "from-b", 6), 0, "b->c after the restart");
    is_int(transport_send(c->n[2].t, "a", 45, "c-is-back", 9), 0, "c->a after the restart");
    ok(WAIT_FOR(inbox_count(bc, "a", 43, "after", 5) == 1, 3000), "a's new message reaches c");
    ok(WAIT_FOR(inbox_count(bc, "b", 44, "from-b", 6) == 1, 3000), "b's new message reaches c");
    ok(WAIT_FOR(inbox_count(c->n[0].box, "c", 45, "c-is-back", 9) == 1, 3000),
       "the restarted c reaches a");
    stats(A, &s1);
    cmp_ok(s1.connects, ">", s0.connects, "a counted a new connection");
}

static void test_queue_full(void)
{
    struct inbox *bd = calloc(1, sizeof *bd), *bx = calloc(1, sizeof *bx);
    pthread_mutex_init(&bd->mu, NULL);
    pthread_mutex_init(&bx->mu, NULL);
    struct transport_peer peers[2] = {{"d", "127.0.0.1", free_port()},
                                      {"x", "127.0.0.1", free_port()}};
    struct transport_options o = {
        .cluster = CLUSTER,
        .self_id = "d",
        .listen_host = "127.0.0.1",
        .listen_port = peers[0].port,
        .peers = peers,
        .npeers = 2,
        .on_recv = on_recv,
        .arg = bd,
        .max_queue_bytes = 1000,
        .reconnect_min_ms = 20,
        .reconnect_max_ms = 100,
    };
    struct transport *D = NULL, *X = NULL;
    struct transport_stats s;
    struct nerr err;
    unsigned char msg[100];

    is_int(transport_start(&o, &D, &err), 0, "d starts; its peer x is not listening");
    if (!D)
        return;
    int fit = 1000 / (100 + TRANSPORT_MSG_OVERHEAD), okc = 0, busy = 0;
    for (int i = 0; i < 20; i++) {
        memset(msg, 'A' + i, sizeof msg);
        int rc = transport_send(D, "x", (uint64_t)i, msg, sizeof msg);
        okc += rc == 0;
        busy += rc == NERR_BUSY;
    }
    is_int(okc, fit, "the queue takes %d messages of 100 bytes under a 1000-byte bound", fit);
    is_int(busy, 20 - fit, "the rest are refused with NERR_BUSY");
    stats(D, &s);
    is_int(s.dropped_queue_full, 20 - fit, "and counted as dropped_queue_full");

    /* x appears: the queued messages drain, and the queue has room again. */
    o.self_id = "x";
    o.listen_port = peers[1].port;
    o.arg = bx;
    is_int(transport_start(&o, &X, &err), 0, "x starts");
    ok(WAIT_FOR(inbox_total(bx) == (size_t)fit, 3000), "x receives the %d queued messages", fit);
    memset(msg, 'A', sizeof msg);
    is_int(inbox_count(bx, "d", 0, msg, sizeof msg), 1, "first one intact");
    memset(msg, 'A' + fit - 1, sizeof msg);
    is_int(inbox_count(bx, "d", (uint64_t)fit - 1, msg, sizeof msg), 1, "last one intact");
    int room = WAIT_FOR(transport_send(D, "x", 99, "room", 4) == 0, 2000);
    ok(room, "after the drain d accepts messages for x again");
    ok(WAIT_FOR(inbox_count(bx, "d", 99, "room", 4) == 1, 2000), "and x receives them");
    transport_stop(D);
    transport_stop(X);
    pthread_mutex_destroy(&bd->mu);
    pthread_mutex_destroy(&bx->mu);
    free(bd);
    free(bx);
}

int main(void)
{
    log_init("test_transport", LOG_ERROR);
    double t0 = now_ms();
    test_start_errors();

    struct cluster c;
    memset(&c, 0, sizeof c);
    for (int i = 0; i < NNODES; i++) {
        c.peers[i] = (struct transport_peer){ids[i], "127.0.0.1", free_port()};
        c.n[i].box = calloc(1, sizeof *c.n[i].box);
        pthread_mutex_init(&c.n[i].box->mu, NULL);
    }
    int started = 0;
    for (int i = 0; i < NNODES; i++) {
        struct nerr err;
        int rc = node_start(&c, i, &err);
        started += rc == 0;
        if (rc)
            diag("start %s: %s", ids[i], err.msg);
    }
    if (started != NNODES)
        bail_out("could not start three transports");

    test_delivery(&c);
    test_batching(&c);
    test_large(&c);
    test_concurrent(&c);
    test_bad_frames(&c);
    test_restart(&c);
    for (int i = 0; i < NNODES; i++)
        transport_stop(c.n[i].t);
    for (int i = 0; i < NNODES; i++) {
        pthread_mutex_destroy(&c.n[i].box->mu);
        free(c.n[i].box);
    }
    test_queue_full();
    note("total %.0f ms", now_ms() - t0);
    return done_testing();
}
