/* Mutual TLS on the peer transport (127.0.0.1 only), with certificates made
 * by cluster/certs.h in a temporary directory: three nodes deliver to each
 * other over TLS; forged peers are refused before anything they sent is
 * decoded — no certificate, a certificate of another CA, one of another
 * cluster signed by the right CA, one naming a node that does not exist,
 * a real node's certificate with a HELLO claiming another node, plain TCP
 * to a TLS port — each counted under its drop reason, its connection
 * closed, and not one of its messages delivered. Then the handshake bounds:
 * a connection that sends nothing is closed after the deadline, and
 * connections beyond max_pending are refused at once. docs/transport.md. */
#include "cluster/certs.h"
#include "lib/clock.h"
#include "lib/crc32c.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "store/transport.h"
#include "t/tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define CLUSTER "tcluster"
#define FORGED_GROUP 0xF0F0F0F0ull
#define NNODES 3

static const char *const ids[NNODES] = {"a", "b", "c"};
static char dir[256];

/* ---- an inbox per node --------------------------------------------------- */

struct inbox {
    pthread_mutex_t mu;
    size_t n, forged;
    size_t bytes;
};

static void on_recv(void *arg, const char *from, uint64_t group, const void *msg, size_t len)
{
    struct inbox *b = arg;
    (void)from;
    (void)msg;
    pthread_mutex_lock(&b->mu);
    b->n++;
    b->bytes += len;
    if (group == FORGED_GROUP)
        b->forged++;
    pthread_mutex_unlock(&b->mu);
}

static size_t inbox_get(struct inbox *b, size_t *forged)
{
    pthread_mutex_lock(&b->mu);
    size_t n = b->n;
    if (forged)
        *forged = b->forged;
    pthread_mutex_unlock(&b->mu);
    return n;
}

/* bail_out with a formatted reason. */
#define BAIL(...)                                                                                  \
    do {                                                                                           \
        char bail_msg[600];                                                                        \
        snprintf(bail_msg, sizeof bail_msg, __VA_ARGS__);                                          \
        bail_out(bail_msg);                                                                        \
    } while (0)

static double now_ms(void)
{
    return (double)clock_mono_ns() / 1e6;
}

#define WAIT_FOR(cond, ms)                                                                         \
    ({                                                                                             \
        double wf_end = now_ms() + (ms);                                                           \
        int wf_ok;                                                                                 \
        while (!(wf_ok = !!(cond)) && now_ms() < wf_end)                                           \
            usleep(2000);                                                                          \
        wf_ok;                                                                                     \
    })

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

static const char *path(const char *name)
{
    static char bufs[16][512];
    static int k;
    char *b = bufs[k++ % 16];
    snprintf(b, 512, "%s/%s", dir, name);
    return b;
}

/* ---- certificates ------------------------------------------------------- */

static void make_certs(void)
{
    struct certs_ca *ca = NULL, *other = NULL;
    struct nerr err;
    const char *hosts[] = {"127.0.0.1"};
    if (certs_ca_new("test CA", 2, &ca, &err) || certs_ca_new("another CA", 2, &other, &err))
        BAIL("CA: %s", err.msg);
    if (certs_ca_write(ca, path("ca.pem"), NULL, &err))
        BAIL("ca.pem: %s", err.msg);
    for (int i = 0; i < NNODES; i++) {
        char c[64], k[64];
        snprintf(c, sizeof c, "%s.pem", ids[i]);
        snprintf(k, sizeof k, "%s.key", ids[i]);
        if (certs_node_issue(ca, CLUSTER, ids[i], hosts, 1, NULL, 2, path(c), path(k), &err))
            BAIL("%s: %s", c, err.msg);
    }
    /* The forgers' certificates. */
    if (certs_node_issue(ca, "othercluster", "b", hosts, 1, NULL, 2, path("wrongcl.pem"),
                         path("wrongcl.key"), &err) ||
        certs_node_issue(other, CLUSTER, "b", hosts, 1, NULL, 2, path("otherca.pem"),
                         path("otherca.key"), &err) ||
        certs_node_issue(ca, CLUSTER, "zz", hosts, 1, NULL, 2, path("nonode.pem"),
                         path("nonode.key"), &err) ||
        certs_node_issue(ca, CLUSTER, "b", hosts, 1, "https://example.com/b", 2, path("nouri.pem"),
                         path("nouri.key"), &err))
        BAIL("forged certificates: %s", err.msg);
    struct stat st;
    ok(stat(path("a.key"), &st) == 0 && (st.st_mode & 0777) == 0600, "a key file is 0600");
    certs_ca_free(ca);
    certs_ca_free(other);
}

/* ---- transports ---------------------------------------------------------- */

struct node {
    struct transport *t;
    struct inbox box;
};

static struct transport_peer peers[NNODES];
static struct node nodes[NNODES];

static int node_start(int i, unsigned handshake_ms, unsigned max_pending, struct nerr *err)
{
    char c[64], k[64];
    snprintf(c, sizeof c, "%s.pem", ids[i]);
    snprintf(k, sizeof k, "%s.key", ids[i]);
    struct transport_tls tls = {path("ca.pem"), path(c), path(k)};
    struct transport_options o = {
        .cluster = CLUSTER,
        .self_id = ids[i],
        .listen_host = "127.0.0.1",
        .listen_port = peers[i].port,
        .peers = peers,
        .npeers = NNODES,
        .on_recv = on_recv,
        .arg = &nodes[i].box,
        .reconnect_min_ms = 20,
        .reconnect_max_ms = 200,
        .connect_timeout_ms = 2000,
        .tls = &tls,
        .handshake_timeout_ms = handshake_ms,
        .max_pending = max_pending,
    };
    return transport_start(&o, &nodes[i].t, err);
}

static struct transport_stats stats_of(int i)
{
    struct transport_stats s;
    transport_get_stats(nodes[i].t, &s);
    return s;
}

/* ---- a forger: a TLS client built on OpenSSL directly -------------------- */

static size_t frame(unsigned char *out, uint16_t type, const void *pl, uint32_t plen)
{
    uint32_t magic = 0x5054394Eu;
    uint16_t ver = 1;
    memcpy(out, &magic, 4); /* little-endian, as is this host */
    memcpy(out + 4, &ver, 2);
    memcpy(out + 6, &type, 2);
    memcpy(out + 8, &plen, 4);
    memcpy(out + 16, pl, plen);
    uint32_t crc = crc32c(crc32c(0, out, 12), out + 16, plen);
    memcpy(out + 12, &crc, 4);
    return 16 + plen;
}

/* HELLO(cluster, id) then a BATCH of one message to FORGED_GROUP. */
static size_t forged_frames(unsigned char *out, const char *cluster, const char *id)
{
    unsigned char pl[600];
    uint16_t cl = (uint16_t)strlen(cluster), il = (uint16_t)strlen(id);
    memcpy(pl, &cl, 2);
    memcpy(pl + 2, cluster, cl);
    memcpy(pl + 2 + cl, &il, 2);
    memcpy(pl + 4 + cl, id, il);
    size_t n = frame(out, 1, pl, 4u + cl + il);
    const char *msg = "forged PutItem";
    uint32_t count = 1, ml = (uint32_t)strlen(msg);
    uint64_t g = FORGED_GROUP;
    memcpy(pl, &count, 4);
    memcpy(pl + 4, &g, 8);
    memcpy(pl + 12, &ml, 4);
    memcpy(pl + 16, msg, ml);
    return n + frame(out + n, 2, pl, 16 + ml);
}

static int tcp_connect(int port, int rcv_timeout_s)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {.tv_sec = rcv_timeout_s};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* 1 when the TLS stream (or TCP stream when ssl is NULL) ends within ~10 s:
 * EOF, reset or a fatal alert, never application data. */
static int closed_by_server(int fd, SSL *ssl)
{
    char b[256];
    for (int i = 0; i < 5; i++) {
        if (ssl) {
            int r = SSL_read(ssl, b, sizeof b);
            if (r > 0)
                return 0; /* the transport never sends on an inbound link */
            int e = SSL_get_error(ssl, r);
            ERR_clear_error();
            if (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SSL)
                return 1;
            if (e == SSL_ERROR_SYSCALL && (errno == 0 || errno == ECONNRESET || errno == EPIPE))
                return 1;
            continue; /* receive timeout: try again */
        }
        ssize_t n = recv(fd, b, sizeof b, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return 1;
    }
    return 0;
}

/* Connects to node `to` as a forger with (cert, key) or none, sends a HELLO
 * claiming (cluster, claim) and a BATCH, and reports whether the server
 * closed the connection. */
static int forge(int to, const char *cert, const char *key, const char *cluster, const char *claim)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    int fd = -1, closed = 0;
    if (!ctx)
        bail_out("SSL_CTX_new");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (cert && (SSL_CTX_use_certificate_file(ctx, path(cert), SSL_FILETYPE_PEM) != 1 ||
                 SSL_CTX_use_PrivateKey_file(ctx, path(key), SSL_FILETYPE_PEM) != 1))
        BAIL("forger certificate %s", cert);
    if ((fd = tcp_connect(peers[to].port, 2)) < 0)
        bail_out("connect");
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    unsigned char buf[2048];
    size_t n = forged_frames(buf, cluster, claim);
    /* TLS 1.3: the client finishes before the server has judged its
     * certificate, so the frames do leave; the server must not read them. */
    if (SSL_connect(ssl) == 1)
        SSL_write(ssl, buf, (int)n);
    ERR_clear_error();
    closed = closed_by_server(fd, ssl);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return closed;
}

static void forged_case(const char *name, const char *cert, const char *key, const char *cluster,
                        const char *claim, enum transport_drop want)
{
    const int to = 1; /* node b */
    struct transport_stats before = stats_of(to);
    size_t forged0;
    size_t total0 = inbox_get(&nodes[to].box, &forged0);
    ok(forge(to, cert, key, cluster, claim), "%s: the connection is closed", name);
    int counted = WAIT_FOR(stats_of(to).dropped[want] > before.dropped[want], 5000);
    ok(counted, "%s: counted as %s", name, transport_drop_name(want));
    /* Legitimate traffic is a check that delivery still runs: whatever the
     * forger sent had its chance to arrive before this does. */
    static uint64_t seq = 1000;
    uint64_t g = seq++;
    transport_send(nodes[0].t, "b", g, "after", 5);
    WAIT_FOR(inbox_get(&nodes[to].box, NULL) > total0, 5000);
    size_t forged;
    inbox_get(&nodes[to].box, &forged);
    ok(forged == forged0, "%s: nothing it sent was delivered", name);
}

static void test_forged(void)
{
    forged_case("no certificate", NULL, NULL, CLUSTER, "c", TRANSPORT_DROP_TLS);
    forged_case("a certificate of another CA", "otherca.pem", "otherca.key", CLUSTER, "a",
                TRANSPORT_DROP_TLS);
    forged_case("the right CA, another cluster", "wrongcl.pem", "wrongcl.key", CLUSTER, "a",
                TRANSPORT_DROP_CERT_CLUSTER);
    forged_case("the right CA, a node that does not exist", "nonode.pem", "nonode.key", CLUSTER,
                "a", TRANSPORT_DROP_CERT_PEER);
    forged_case("the right CA, no nines:// identity", "nouri.pem", "nouri.key", CLUSTER, "a",
                TRANSPORT_DROP_CERT_PEER);
    forged_case("node c's certificate claiming to be a", "c.pem", "c.key", CLUSTER, "a",
                TRANSPORT_DROP_HELLO_MISMATCH);

    /* Plain TCP to a TLS port: the HELLO and BATCH bytes are a bad TLS
     * record, never frames. */
    struct transport_stats before = stats_of(1);
    size_t forged0;
    inbox_get(&nodes[1].box, &forged0);
    int fd = tcp_connect(peers[1].port, 2);
    unsigned char buf[2048];
    size_t n = forged_frames(buf, CLUSTER, "a");
    ok(fd >= 0 && send(fd, buf, n, MSG_NOSIGNAL) == (ssize_t)n, "plain TCP: frames sent");
    ok(closed_by_server(fd, NULL), "plain TCP to a TLS port: closed");
    close(fd);
    ok(WAIT_FOR(stats_of(1).dropped[TRANSPORT_DROP_TLS] > before.dropped[TRANSPORT_DROP_TLS], 5000),
       "plain TCP to a TLS port: counted as tls");
    size_t forged;
    inbox_get(&nodes[1].box, &forged);
    ok(forged == forged0, "plain TCP to a TLS port: nothing delivered");
}

static void test_delivery(void)
{
    /* Every ordered pair, and a 1 MiB message (many TLS records). */
    size_t base[NNODES];
    for (int i = 0; i < NNODES; i++)
        base[i] = inbox_get(&nodes[i].box, NULL);
    for (int i = 0; i < NNODES; i++)
        for (int j = 0; j < NNODES; j++)
            if (i != j)
                transport_send(nodes[i].t, ids[j], 7, "hello over tls", 14);
    int all = 1;
    for (int j = 0; j < NNODES; j++)
        all &= WAIT_FOR(inbox_get(&nodes[j].box, NULL) >= base[j] + NNODES - 1, 10000);
    ok(all, "every node receives from every other over TLS");
    size_t big = 1u << 20;
    unsigned char *m = malloc(big);
    for (size_t i = 0; i < big; i++)
        m[i] = (unsigned char)(i * 131);
    size_t b0 = nodes[2].box.bytes;
    ok(transport_send(nodes[0].t, "c", 9, m, big) == 0, "a 1 MiB message queued");
    ok(WAIT_FOR(({
                    pthread_mutex_lock(&nodes[2].box.mu);
                    size_t b = nodes[2].box.bytes;
                    pthread_mutex_unlock(&nodes[2].box.mu);
                    b;
                }) >= b0 + big,
                10000),
       "and delivered whole over TLS");
    free(m);
    struct transport_stats s = stats_of(0);
    ok(s.connected == NNODES - 1, "a has both links up (%llu)", (unsigned long long)s.connected);
}

static void test_wrong_own_cert(void)
{
    /* A node started with another node's certificate would be refused by
     * everyone: transport_start says so instead. */
    struct transport_tls tls = {path("ca.pem"), path("b.pem"), path("b.key")};
    struct transport_options o = {.cluster = CLUSTER,
                                  .self_id = "a",
                                  .listen_host = "127.0.0.1",
                                  .listen_port = 0,
                                  .peers = peers,
                                  .npeers = NNODES,
                                  .on_recv = on_recv,
                                  .arg = &nodes[0].box,
                                  .tls = &tls};
    struct transport *t = NULL;
    struct nerr err = {0};
    int rc = transport_start(&o, &t, &err);
    ok(rc == NERR_INVALID && strstr(err.msg, "nines://" CLUSTER "/a"),
       "start with b's certificate as a: NERR_INVALID naming the identity (%s)", err.msg);
    transport_stop(t);
    struct transport_tls bad = {path("ca.pem"), path("a.pem"), path("b.key")};
    o.tls = &bad;
    rc = transport_start(&o, &t, &err);
    ok(rc == NERR_INVALID && strstr(err.msg, "b.key"), "a key that is not the certificate's: %s",
       err.msg);
    transport_stop(rc ? NULL : t);
}

/* Connect and send nothing: closed after the deadline, counted. */
static void test_slow_handshake(unsigned deadline_ms)
{
    struct transport_stats before = stats_of(1);
    double t0 = now_ms();
    int fd = tcp_connect(peers[1].port, 2);
    ok(fd >= 0, "an idle connection is accepted");
    int closed = closed_by_server(fd, NULL);
    double took = now_ms() - t0;
    close(fd);
    ok(closed, "an idle connection is closed (after %.0f ms; deadline %u ms)", took, deadline_ms);
    ok(took >= deadline_ms * 0.9, "not before the deadline");
    ok(stats_of(1).dropped[TRANSPORT_DROP_HANDSHAKE_TIMEOUT] >
           before.dropped[TRANSPORT_DROP_HANDSHAKE_TIMEOUT],
       "counted as handshake_timeout");
}

/* More idle connections than max_pending: the extra ones are closed at once
 * (well before the handshake deadline), the peers keep talking. */
static void test_pending_bound(unsigned max_pending, unsigned deadline_ms)
{
    struct transport_stats before = stats_of(1);
    int fds[16];
    unsigned n = max_pending + 3;
    for (unsigned i = 0; i < n; i++)
        fds[i] = tcp_connect(peers[1].port, 1);
    ok(WAIT_FOR(stats_of(1).refused_conns >= before.refused_conns + 3, deadline_ms / 2),
       "connections beyond max_pending (%u) are refused at once", max_pending);
    for (unsigned i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    size_t b0 = inbox_get(&nodes[1].box, NULL);
    transport_send(nodes[0].t, "b", 77, "still here", 10);
    ok(WAIT_FOR(inbox_get(&nodes[1].box, NULL) > b0, 10000), "the real peers still deliver");
}

int main(void)
{
    log_init("test_peer_tls", LOG_ERROR);
    signal(SIGPIPE, SIG_IGN); /* a forger writes into closed connections */
    snprintf(dir, sizeof dir, "/tmp/nines-peer-tls-XXXXXX");
    if (!mkdtemp(dir))
        bail_out("mkdtemp");
    make_certs();
    for (int i = 0; i < NNODES; i++) {
        peers[i] = (struct transport_peer){ids[i], "127.0.0.1", free_port()};
        pthread_mutex_init(&nodes[i].box.mu, NULL);
    }
    const unsigned deadline_ms = 1500, max_pending = 4;
    for (int i = 0; i < NNODES; i++) {
        struct nerr err;
        if (node_start(i, deadline_ms, max_pending, &err))
            BAIL("start %s: %s", ids[i], err.msg);
    }
    test_delivery();
    test_forged();
    test_wrong_own_cert();
    test_slow_handshake(deadline_ms);
    test_pending_bound(max_pending, deadline_ms);
    for (int i = 0; i < NNODES; i++)
        transport_stop(nodes[i].t);
    struct nerr e;
    fs_rm_rf(dir, &e);
    return done_testing();
}
