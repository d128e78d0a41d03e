/*
 * transport.c — see transport.h for the contract, docs/transport.md for the
 * wire format.
 *
 * Layout in memory: struct transport holds the loop, the listener, the wake-up
 * async handle and an array of struct peer (one per other node), each with its
 * outgoing TCP handle, its reconnect timer and its mutex-protected queue.
 * Accepted connections are struct inconn, kept in a list so stop can close
 * them. Everything except the queues and the stats is touched only by the
 * transport thread.
 */
#include "store/transport.h"

#include "lib/crc32c.h"
#include "lib/le.h"
#include "lib/log.h"

#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

#define HDR_LEN 16
#define MAGIC 0x5054394Eu /* "N9TP" little-endian */
#define VERSION 1
#define TYPE_HELLO 1
#define TYPE_BATCH 2
#define REC_HDR 12 /* u64 group, u32 length */
#define READ_CHUNK 65536
#define TLS_CHUNK 16384 /* ciphertext read at a time: one TLS record */
#define TLS_WRITE_STEP (1u << 20)
#define URI_PREFIX "nines://"

enum link_state { LINK_IDLE, LINK_CONNECTING, LINK_UP, LINK_CLOSING };

/* One TLS session over a libuv stream: ciphertext read from the socket goes
 * into rb, ciphertext SSL wants sent comes out of wb. ssl is NULL without
 * TLS. */
struct tlsconn {
    SSL *ssl;
    BIO *rb, *wb;
    int up; /* handshake done and the peer's identity accepted */
};

struct tmsg {
    struct tmsg *next;
    uint64_t group;
    size_t len;
    unsigned char data[];
};

struct transport;

struct peer {
    struct transport *t;
    char *id;
    char *host;
    int port;
    struct sockaddr_storage addr;

    /* Transport thread only. */
    uv_tcp_t tcp;
    uv_timer_t timer; /* backoff while idle, connect deadline while connecting */
    uv_connect_t creq;
    enum link_state state;
    int writing;         /* a write is in flight */
    unsigned backoff_ms; /* next reconnect delay */
    struct tlsconn tls;
    char sink[TLS_CHUNK]; /* read buffer of the send-only link: EOF, TLS records */

    /* Under mu: the queue and the bytes charged against max_queue_bytes
     * (queued plus in flight). */
    pthread_mutex_t mu;
    struct tmsg *head, *tail;
    size_t qbytes;
};

struct inconn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* the handshake deadline */
    struct transport *t;
    struct inconn *prev, *next;
    unsigned char *buf; /* plaintext frames */
    size_t len, cap;
    const char *from;    /* peer id once the HELLO is accepted, else NULL */
    const char *cert_id; /* with TLS: the peer id its certificate names */
    int closing, open_handles;
    int pending; /* counted in t->npending: handshake not complete */
    struct tlsconn tls;
    char addr[64]; /* the remote address, for the logs */
    unsigned char rx[TLS_CHUNK];
};

struct wreq {
    uv_write_t req;
    struct peer *p;
    unsigned char *buf;
    size_t charged; /* bytes to release from p->qbytes when done */
    uint64_t nrec;
    int hello;
    int ctl; /* TLS handshake bytes: no frame, no accounting */
};

struct transport {
    char *cluster;
    char *self_id;
    transport_recv_fn on_recv;
    void *arg;
    size_t max_queue_bytes;
    unsigned rc_min_ms, rc_max_ms, connect_timeout_ms;
    unsigned handshake_timeout_ms, max_pending;
    int port;
    SSL_CTX *ssl_ctx;  /* NULL: plain TCP */
    unsigned npending; /* transport thread only */

    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t wake;
    uv_thread_t thread;
    struct peer *peers;
    size_t npeers;
    struct inconn *conns;

    /* stopping is set under the write lock; senders hold the read lock while
     * they touch `wake`, so no uv_async_send can reach a closed handle. */
    pthread_rwlock_t stop_lock;
    int stopping;
    int halted; /* transport_halt returned: the thread is joined, t is still allocated */
    struct transport_stats st; /* each field updated with __atomic */
};

static const char *const drop_names[TRANSPORT_DROP__COUNT] = {
    "bad_magic", "bad_version",        "too_long",          "bad_crc",        "truncated",
    "bad_type",  "bad_payload",        "no_hello",          "wrong_cluster",  "unknown_peer",
    "tls",       "cert_wrong_cluster", "cert_unknown_peer", "hello_mismatch", "handshake_timeout",
};

const char *transport_drop_name(int reason)
{
    if (reason < 0 || reason >= TRANSPORT_DROP__COUNT)
        return "unknown";
    return drop_names[reason];
}

static void stat_add(uint64_t *field, uint64_t n)
{
    __atomic_fetch_add(field, n, __ATOMIC_RELAXED);
}

static void stat_sub(uint64_t *field, uint64_t n)
{
    __atomic_fetch_sub(field, n, __ATOMIC_RELAXED);
}

/* ---- encoding ----------------------------------------------------------- */

/* Writes the header of a frame whose payload is already at hdr + HDR_LEN. */
static void seal_frame(unsigned char *hdr, uint16_t type, uint32_t plen)
{
    le_put32(hdr, MAGIC);
    le_put16(hdr + 4, VERSION);
    le_put16(hdr + 6, type);
    le_put32(hdr + 8, plen);
    uint32_t crc = crc32c(0, hdr, 12);
    crc = crc32c(crc, hdr + HDR_LEN, plen);
    le_put32(hdr + 12, crc);
}

static struct peer *find_peer(struct transport *t, const char *id, size_t len);

/* ---- TLS ---------------------------------------------------------------- */

/* The OpenSSL error queue's last reason into buf (and the queue emptied):
 * each thread has its own queue, so nothing of another connection leaks in. */
static const char *ssl_reason(SSL *ssl, char *buf, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (vr != X509_V_OK)
        snprintf(buf, cap, "certificate: %s", X509_verify_cert_error_string(vr));
    else if (e)
        ERR_error_string_n(e, buf, cap);
    else
        snprintf(buf, cap, "handshake failed");
    ERR_clear_error();
    return buf;
}

/* The identity of a certificate: its one nines://CLUSTER/NODE URI
 * subjectAltName. Returns 0 and fills cluster and node (NUL-terminated),
 * or -1 when there is no such URI, or more than one. */
static int cert_identity(X509 *x, char *cluster, size_t ccap, char *node, size_t ncap)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int found = 0;
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        if (g->type != GEN_URI)
            continue;
        const char *u = (const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
        int ulen = ASN1_STRING_length(g->d.uniformResourceIdentifier);
        size_t pl = sizeof URI_PREFIX - 1;
        if (ulen < 0 || (size_t)ulen <= pl || memcmp(u, URI_PREFIX, pl) != 0 ||
            memchr(u, 0, (size_t)ulen))
            continue;
        const char *rest = u + pl, *end = u + ulen;
        const char *slash = memchr(rest, '/', (size_t)(end - rest));
        if (!slash || slash == rest || slash + 1 == end ||
            memchr(slash + 1, '/', (size_t)(end - slash - 1)) || (size_t)(slash - rest) >= ccap ||
            (size_t)(end - slash - 1) >= ncap) {
            found = 2; /* malformed counts as "not one identity" */
            continue;
        }
        memcpy(cluster, rest, (size_t)(slash - rest));
        cluster[slash - rest] = 0;
        memcpy(node, slash + 1, (size_t)(end - slash - 1));
        node[end - slash - 1] = 0;
        found++;
    }
    GENERAL_NAMES_free(names);
    return found == 1 ? 0 : -1;
}

/* Checks the verified peer certificate of a finished handshake. Returns -1
 * and sets *peer when it names a peer of this cluster, else a drop reason. */
static int tls_peer_check(struct transport *t, SSL *ssl, struct peer **peer, char *who, size_t wcap)
{
    char cl[TRANSPORT_MAX_NAME + 1], id[TRANSPORT_MAX_NAME + 1];
    X509 *x = SSL_get0_peer_certificate(ssl);
    snprintf(who, wcap, "(no identity)");
    if (!x || SSL_get_verify_result(ssl) != X509_V_OK)
        return TRANSPORT_DROP_TLS;
    if (cert_identity(x, cl, sizeof cl, id, sizeof id) < 0)
        return TRANSPORT_DROP_CERT_PEER;
    snprintf(who, wcap, "nines://%s/%s", cl, id);
    if (strcmp(cl, t->cluster) != 0)
        return TRANSPORT_DROP_CERT_CLUSTER;
    struct peer *p = find_peer(t, id, strlen(id));
    if (!p)
        return TRANSPORT_DROP_CERT_PEER;
    *peer = p;
    return -1;
}

static int tls_open(struct transport *t, struct tlsconn *tc, int server)
{
    memset(tc, 0, sizeof *tc);
    if (!(tc->ssl = SSL_new(t->ssl_ctx)))
        return UV_ENOMEM;
    tc->rb = BIO_new(BIO_s_mem());
    tc->wb = BIO_new(BIO_s_mem());
    if (!tc->rb || !tc->wb) {
        BIO_free(tc->rb);
        BIO_free(tc->wb);
        SSL_free(tc->ssl);
        tc->ssl = NULL;
        return UV_ENOMEM;
    }
    /* An empty read BIO means "wait for more", not end of stream. */
    BIO_set_mem_eof_return(tc->rb, -1);
    SSL_set_bio(tc->ssl, tc->rb, tc->wb);
    if (server)
        SSL_set_accept_state(tc->ssl);
    else
        SSL_set_connect_state(tc->ssl);
    return 0;
}

static void tls_close(struct tlsconn *tc)
{
    SSL_free(tc->ssl); /* frees both BIOs */
    memset(tc, 0, sizeof *tc);
}

/* The ciphertext SSL has produced, taken out of wb: a malloc'd buffer, or
 * NULL (*len 0) when there is none or memory ran out. */
static unsigned char *tls_take(struct tlsconn *tc, size_t *len)
{
    size_t n = (size_t)BIO_ctrl_pending(tc->wb);
    *len = 0;
    if (n == 0)
        return NULL;
    unsigned char *b = malloc(n);
    if (!b)
        return NULL;
    int got = BIO_read(tc->wb, b, (int)n);
    if (got <= 0) {
        free(b);
        return NULL;
    }
    *len = (size_t)got;
    return b;
}

static void ctl_write_cb(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    (void)status; /* a broken stream shows on its read side */
    free(w->buf);
    free(w);
}

/* Sends whatever ciphertext SSL has pending (handshake, alerts, key
 * updates) on s, in order with every earlier write. 0 or a libuv error. */
static int tls_flush_ctl(struct tlsconn *tc, uv_stream_t *s)
{
    size_t n;
    unsigned char *b = tls_take(tc, &n);
    if (!b)
        return BIO_ctrl_pending(tc->wb) ? UV_ENOMEM : 0;
    struct wreq *w = calloc(1, sizeof *w);
    if (!w) {
        free(b);
        return UV_ENOMEM;
    }
    w->buf = b;
    w->ctl = 1;
    uv_buf_t ub = uv_buf_init((char *)b, (unsigned)n);
    int rc = uv_write(&w->req, s, &ub, 1, ctl_write_cb);
    if (rc < 0) {
        free(b);
        free(w);
    }
    return rc;
}

/* Encrypts plain[0..len) (freed) into a new buffer of ciphertext. */
static unsigned char *tls_seal(struct tlsconn *tc, unsigned char *plain, size_t len,
                               size_t *out_len)
{
    for (size_t off = 0; off < len;) {
        size_t step = len - off < TLS_WRITE_STEP ? len - off : TLS_WRITE_STEP;
        int n = SSL_write(tc->ssl, plain + off, (int)step);
        if (n <= 0) {
            free(plain);
            ERR_clear_error();
            return NULL;
        }
        off += (size_t)n;
    }
    free(plain);
    return tls_take(tc, out_len);
}

static int is_loopback(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >> 24) == 127;
    if (a->ss_family == AF_INET6) {
        const struct in6_addr *x = &((const struct sockaddr_in6 *)a)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(x) || (IN6_IS_ADDR_V4MAPPED(x) && x->s6_addr[12] == 127);
    }
    return 0;
}

/* ---- outgoing links ----------------------------------------------------- */

static void peer_connect(struct peer *p);
static void peer_flush(struct peer *p);
static void retry_cb(uv_timer_t *tm);

static void peer_closed_cb(uv_handle_t *h)
{
    struct peer *p = h->data;
    struct transport *t = p->t;
    p->state = LINK_IDLE;
    tls_close(&p->tls);
    if (__atomic_load_n(&t->stopping, __ATOMIC_ACQUIRE))
        return;
    unsigned delay = p->backoff_ms;
    p->backoff_ms = p->backoff_ms * 2 > t->rc_max_ms ? t->rc_max_ms : p->backoff_ms * 2;
    uv_timer_start(&p->timer, retry_cb, delay, 0);
}

static void peer_close(struct peer *p, const char *why)
{
    if (p->state == LINK_CLOSING || p->state == LINK_IDLE)
        return;
    if (p->state == LINK_UP) {
        stat_sub(&p->t->st.connected, 1);
        log_debug("transport: link to %s closed: %s", p->id, why);
    }
    p->state = LINK_CLOSING;
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->tcp, peer_closed_cb);
}

static void retry_cb(uv_timer_t *tm)
{
    struct peer *p = tm->data;
    if (p->state == LINK_IDLE)
        peer_connect(p);
    else if (p->state == LINK_CONNECTING) {
        stat_add(&p->t->st.connect_failures, 1);
        peer_close(p, "connect timeout");
    }
}

static void write_cb(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct peer *p = w->p;
    struct transport *t = p->t;
    if (w->charged) {
        pthread_mutex_lock(&p->mu);
        p->qbytes -= w->charged;
        pthread_mutex_unlock(&p->mu);
    }
    p->writing = 0;
    if (status < 0) {
        if (w->nrec)
            stat_add(&t->st.dropped_send_error, w->nrec);
        peer_close(p, uv_strerror(status));
    } else if (!w->hello) {
        stat_add(&t->st.frames_sent, 1);
        stat_add(&t->st.records_sent, w->nrec);
    }
    free(w->buf);
    free(w);
    if (status == 0 && p->state == LINK_UP)
        peer_flush(p);
}

static void out_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct peer *p = h->data;
    (void)hint;
    /* Plain TCP: contents are discarded, peers never send on our link.
     * TLS: the handshake's records and, later, alerts and key updates. */
    *b = uv_buf_init(p->sink, sizeof p->sink);
}

static void link_up(struct peer *p);

/* Ciphertext from the peer of an outgoing TLS link. */
static void out_tls_input(struct peer *p, const char *data, size_t n)
{
    struct transport *t = p->t;
    char why[256];
    if (BIO_write(p->tls.rb, data, (int)n) != (int)n) {
        peer_close(p, "out of memory");
        return;
    }
    if (!p->tls.up) {
        int r = SSL_do_handshake(p->tls.ssl);
        int rc = tls_flush_ctl(&p->tls, (uv_stream_t *)&p->tcp);
        if (r <= 0) {
            int e = SSL_get_error(p->tls.ssl, r);
            if (e == SSL_ERROR_WANT_READ && rc == 0)
                return;
            stat_add(&t->st.connect_failures, 1);
            log_warn("transport: TLS handshake with %s (%s:%d) failed: %s", p->id, p->host, p->port,
                     ssl_reason(p->tls.ssl, why, sizeof why));
            peer_close(p, "TLS handshake failed");
            return;
        }
        struct peer *named = NULL;
        char who[TRANSPORT_MAX_NAME * 2 + 16];
        int drop = tls_peer_check(t, p->tls.ssl, &named, who, sizeof who);
        if (drop >= 0 || named != p) {
            stat_add(&t->st.connect_failures, 1);
            log_warn("transport: %s:%d should be node %s but its certificate is %s; closing",
                     p->host, p->port, p->id, who);
            peer_close(p, "wrong peer certificate");
            return;
        }
        p->tls.up = 1;
        link_up(p);
        return;
    }
    /* After the handshake nothing but TLS's own records may arrive. */
    char tmp[256];
    int r = SSL_read(p->tls.ssl, tmp, sizeof tmp);
    if (tls_flush_ctl(&p->tls, (uv_stream_t *)&p->tcp) < 0) {
        peer_close(p, "write failed");
        return;
    }
    if (r > 0) {
        peer_close(p, "unexpected bytes");
        return;
    }
    int e = SSL_get_error(p->tls.ssl, r);
    if (e != SSL_ERROR_WANT_READ) {
        ERR_clear_error();
        peer_close(p, e == SSL_ERROR_ZERO_RETURN ? "closed by peer" : "TLS error");
    }
}

static void out_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct peer *p = s->data;
    if (nread == 0)
        return;
    if (nread > 0 && p->tls.ssl) {
        out_tls_input(p, b->base, (size_t)nread);
        return;
    }
    /* EOF or error: the peer went away. Bytes: the peer broke the protocol
     * (outgoing links are send-only), so start over. */
    peer_close(p, nread < 0 ? uv_strerror((int)nread) : "unexpected bytes");
}

/* Writes a whole frame buffer (taken) for w: encrypted first on a TLS link. */
static int peer_write(struct peer *p, struct wreq *w, unsigned char *buf, size_t len)
{
    if (p->tls.ssl) {
        buf = tls_seal(&p->tls, buf, len, &len);
        if (!buf)
            return UV_ENOMEM;
    }
    w->buf = buf;
    uv_buf_t ub = uv_buf_init((char *)buf, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&p->tcp, &ub, 1, write_cb);
    if (rc < 0) {
        free(buf);
        w->buf = NULL;
    }
    return rc;
}

static int send_hello(struct peer *p)
{
    struct transport *t = p->t;
    size_t cl = strlen(t->cluster), il = strlen(t->self_id);
    size_t plen = 2 + cl + 2 + il;
    struct wreq *w = calloc(1, sizeof *w);
    unsigned char *buf = malloc(HDR_LEN + plen);
    if (!w || !buf) {
        free(w);
        free(buf);
        return UV_ENOMEM;
    }
    unsigned char *q = buf + HDR_LEN;
    le_put16(q, (uint16_t)cl);
    memcpy(q + 2, t->cluster, cl);
    le_put16(q + 2 + cl, (uint16_t)il);
    memcpy(q + 4 + cl, t->self_id, il);
    seal_frame(buf, TYPE_HELLO, (uint32_t)plen);
    w->p = p;
    w->hello = 1;
    int rc = peer_write(p, w, buf, HDR_LEN + plen);
    if (rc < 0) {
        free(w);
        return rc;
    }
    p->writing = 1;
    return 0;
}

static void connect_cb(uv_connect_t *req, int status)
{
    struct peer *p = req->data;
    struct transport *t = p->t;
    if (status == UV_ECANCELED || p->state != LINK_CONNECTING)
        return; /* closed meanwhile (timeout or stop) */
    uv_timer_stop(&p->timer);
    if (status < 0) {
        stat_add(&t->st.connect_failures, 1);
        log_debug("transport: connect to %s (%s:%d): %s", p->id, p->host, p->port,
                  uv_strerror(status));
        peer_close(p, uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&p->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&p->tcp, out_alloc_cb, out_read_cb);
    if (rc == 0 && t->ssl_ctx) {
        /* The link is up once the TLS handshake is done and the peer's
         * certificate is the node dialled; the same deadline again. */
        if ((rc = tls_open(t, &p->tls, 0)) == 0) {
            int r = SSL_do_handshake(p->tls.ssl);
            if (r <= 0 && SSL_get_error(p->tls.ssl, r) != SSL_ERROR_WANT_READ)
                rc = UV_EPROTO;
            else
                rc = tls_flush_ctl(&p->tls, (uv_stream_t *)&p->tcp);
        }
        if (rc == 0) {
            uv_timer_start(&p->timer, retry_cb, t->connect_timeout_ms, 0);
            return;
        }
        stat_add(&t->st.connect_failures, 1);
        ERR_clear_error();
    }
    if (rc == 0) {
        link_up(p);
        return;
    }
    peer_close(p, uv_strerror(rc));
}

static void link_up(struct peer *p)
{
    struct transport *t = p->t;
    uv_timer_stop(&p->timer);
    p->state = LINK_UP;
    p->backoff_ms = t->rc_min_ms;
    stat_add(&t->st.connects, 1);
    stat_add(&t->st.connected, 1);
    int rc = send_hello(p);
    if (rc < 0)
        peer_close(p, uv_strerror(rc));
}

static void peer_connect(struct peer *p)
{
    struct transport *t = p->t;
    int rc = uv_tcp_init(&t->loop, &p->tcp);
    if (rc < 0) {
        /* Nothing to close; try again after the backoff. */
        stat_add(&t->st.connect_failures, 1);
        uv_timer_start(&p->timer, retry_cb, p->backoff_ms, 0);
        return;
    }
    p->tcp.data = p;
    p->creq.data = p;
    p->state = LINK_CONNECTING;
    rc = uv_tcp_connect(&p->creq, &p->tcp, (const struct sockaddr *)&p->addr, connect_cb);
    if (rc < 0) {
        stat_add(&t->st.connect_failures, 1);
        peer_close(p, uv_strerror(rc));
        return;
    }
    uv_timer_start(&p->timer, retry_cb, t->connect_timeout_ms, 0);
}

/* Takes the whole queue and writes it as BATCH frames of at most
 * TRANSPORT_MAX_PAYLOAD each, in one write. */
static void peer_flush(struct peer *p)
{
    struct transport *t = p->t;
    if (p->state != LINK_UP || p->writing)
        return;
    pthread_mutex_lock(&p->mu);
    struct tmsg *list = p->head;
    p->head = p->tail = NULL;
    pthread_mutex_unlock(&p->mu);
    if (!list)
        return;

    size_t total = 0, nmsg = 0, frames = 0, cur = 0;
    for (struct tmsg *m = list; m; m = m->next) {
        size_t r = REC_HDR + m->len;
        if (cur == 0 || cur + r > TRANSPORT_MAX_PAYLOAD) {
            frames++;
            total += HDR_LEN + 4;
            cur = 4;
        }
        cur += r;
        total += r;
        nmsg++;
    }
    size_t charged = 0;
    struct wreq *w = calloc(1, sizeof *w);
    unsigned char *buf = malloc(total);
    if (!w || !buf) {
        free(w);
        free(buf);
        for (struct tmsg *m = list, *n; m; m = n) {
            n = m->next;
            charged += m->len + TRANSPORT_MSG_OVERHEAD;
            free(m);
        }
        pthread_mutex_lock(&p->mu);
        p->qbytes -= charged;
        pthread_mutex_unlock(&p->mu);
        stat_add(&t->st.dropped_send_error, nmsg);
        return;
    }
    unsigned char *frame = NULL, *q = buf;
    uint32_t count = 0;
    cur = 0;
    for (struct tmsg *m = list, *n; m; m = n) {
        n = m->next;
        size_t r = REC_HDR + m->len;
        if (frame == NULL || cur + r > TRANSPORT_MAX_PAYLOAD) {
            if (frame) {
                le_put32(frame + HDR_LEN, count);
                seal_frame(frame, TYPE_BATCH, (uint32_t)cur);
            }
            frame = q;
            q += HDR_LEN + 4;
            cur = 4;
            count = 0;
        }
        le_put64(q, m->group);
        le_put32(q + 8, (uint32_t)m->len);
        memcpy(q + REC_HDR, m->data, m->len);
        q += r;
        cur += r;
        count++;
        charged += m->len + TRANSPORT_MSG_OVERHEAD;
        free(m);
    }
    le_put32(frame + HDR_LEN, count);
    seal_frame(frame, TYPE_BATCH, (uint32_t)cur);

    w->p = p;
    w->charged = charged;
    w->nrec = nmsg;
    int rc = peer_write(p, w, buf, total);
    if (rc < 0) {
        pthread_mutex_lock(&p->mu);
        p->qbytes -= charged;
        pthread_mutex_unlock(&p->mu);
        stat_add(&t->st.dropped_send_error, nmsg);
        free(w);
        peer_close(p, uv_strerror(rc));
        return;
    }
    p->writing = 1;
    /* Frames beyond the first are counted in write_cb as one; add the rest
     * here so frames_sent counts frames, not writes. */
    if (frames > 1)
        stat_add(&t->st.frames_sent, frames - 1);
    stat_add(&t->st.bytes_sent, total);
}

/* ---- incoming connections ----------------------------------------------- */

static void inconn_closed_cb(uv_handle_t *h)
{
    struct inconn *c = h->data;
    struct transport *t = c->t;
    if (--c->open_handles > 0)
        return;
    tls_close(&c->tls);
    if (c->prev)
        c->prev->next = c->next;
    else
        t->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c->buf);
    free(c);
}

static void inconn_close(struct inconn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->pending) {
        c->pending = 0;
        c->t->npending--;
    }
    uv_close((uv_handle_t *)&c->tcp, inconn_closed_cb);
    uv_close((uv_handle_t *)&c->timer, inconn_closed_cb);
}

static void inconn_reject_why(struct inconn *c, enum transport_drop why, const char *detail)
{
    stat_add(&c->t->st.dropped[why], 1);
    log_warn("transport: refused input from %s (%s)%s%s: %s; closing the connection", c->addr,
             c->from      ? c->from
             : c->cert_id ? c->cert_id
                          : "no hello yet",
             detail ? ": " : "", detail ? detail : "", drop_names[why]);
    inconn_close(c);
}

static void inconn_reject(struct inconn *c, enum transport_drop why)
{
    inconn_reject_why(c, why, NULL);
}

static void handshake_timeout_cb(uv_timer_t *tm)
{
    struct inconn *c = tm->data;
    if (!c->closing && !c->from)
        inconn_reject(c, TRANSPORT_DROP_HANDSHAKE_TIMEOUT);
}

static struct peer *find_peer(struct transport *t, const char *id, size_t len)
{
    for (size_t i = 0; i < t->npeers; i++)
        if (strlen(t->peers[i].id) == len && memcmp(t->peers[i].id, id, len) == 0)
            return &t->peers[i];
    return NULL;
}

/* Returns a drop reason, or -1 when the HELLO is accepted. */
static int handle_hello(struct inconn *c, const unsigned char *pl, uint32_t len)
{
    struct transport *t = c->t;
    if (c->from)
        return TRANSPORT_DROP_BAD_TYPE;
    if (len < 2)
        return TRANSPORT_DROP_BAD_PAYLOAD;
    size_t cl = le_get16(pl);
    if (len < 2 + cl + 2)
        return TRANSPORT_DROP_BAD_PAYLOAD;
    size_t il = le_get16(pl + 2 + cl);
    if (len != 2 + cl + 2 + il || il == 0)
        return TRANSPORT_DROP_BAD_PAYLOAD;
    if (cl != strlen(t->cluster) || memcmp(pl + 2, t->cluster, cl) != 0)
        return TRANSPORT_DROP_WRONG_CLUSTER;
    struct peer *p = find_peer(t, (const char *)pl + 4 + cl, il);
    if (!p)
        return TRANSPORT_DROP_UNKNOWN_PEER;
    /* With TLS the certificate says who this is; the HELLO must agree. */
    if (t->ssl_ctx && p->id != c->cert_id)
        return TRANSPORT_DROP_HELLO_MISMATCH;
    c->from = p->id;
    uv_timer_stop(&c->timer);
    if (c->pending) {
        c->pending = 0;
        t->npending--;
    }
    /* One authenticated inbound connection per peer: the newest (a peer
     * that restarted or reconnected) replaces any older one. */
    for (struct inconn *o = t->conns; o; o = o->next)
        if (o != c && o->from == c->from && !o->closing) {
            log_debug("transport: %s reconnected; closing its older connection", c->from);
            inconn_close(o);
        }
    return -1;
}

static int handle_batch(struct inconn *c, const unsigned char *pl, uint32_t len)
{
    struct transport *t = c->t;
    if (!c->from)
        return TRANSPORT_DROP_NO_HELLO;
    if (len < 4)
        return TRANSPORT_DROP_BAD_PAYLOAD;
    /* Check the whole layout before delivering anything: a frame is applied
     * entirely or not at all. */
    uint32_t count = le_get32(pl);
    size_t off = 4;
    for (uint32_t i = 0; i < count; i++) {
        if (len - off < REC_HDR)
            return TRANSPORT_DROP_BAD_PAYLOAD;
        uint32_t ml = le_get32(pl + off + 8);
        if (len - off - REC_HDR < ml)
            return TRANSPORT_DROP_BAD_PAYLOAD;
        off += REC_HDR + ml;
    }
    if (off != len)
        return TRANSPORT_DROP_BAD_PAYLOAD;
    stat_add(&t->st.frames_recv, 1);
    stat_add(&t->st.records_recv, count);
    stat_add(&t->st.bytes_recv, HDR_LEN + len);
    off = 4;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t g = le_get64(pl + off);
        uint32_t ml = le_get32(pl + off + 8);
        t->on_recv(t->arg, c->from, g, pl + off + REC_HDR, ml);
        off += REC_HDR + ml;
    }
    return -1;
}

/* Consumes every whole frame in c->buf. Returns 0, or -1 after closing c. */
static int inconn_parse(struct inconn *c)
{
    size_t pos = 0;
    while (!c->closing && c->len - pos >= HDR_LEN) {
        const unsigned char *h = c->buf + pos;
        if (le_get32(h) != MAGIC) {
            inconn_reject(c, TRANSPORT_DROP_BAD_MAGIC);
            break;
        }
        if (le_get16(h + 4) != VERSION) {
            inconn_reject(c, TRANSPORT_DROP_BAD_VERSION);
            break;
        }
        uint32_t plen = le_get32(h + 8);
        /* Until the HELLO is accepted only a HELLO-sized frame is read. */
        if (plen > TRANSPORT_MAX_PAYLOAD || (!c->from && plen > TRANSPORT_MAX_HELLO)) {
            inconn_reject(c, TRANSPORT_DROP_TOO_LONG);
            break;
        }
        if (c->len - pos < HDR_LEN + (size_t)plen)
            break; /* wait for the rest */
        uint32_t crc = crc32c(crc32c(0, h, 12), h + HDR_LEN, plen);
        if (crc != le_get32(h + 12)) {
            inconn_reject(c, TRANSPORT_DROP_BAD_CRC);
            break;
        }
        int why;
        uint16_t type = le_get16(h + 6);
        if (type == TYPE_HELLO)
            why = handle_hello(c, h + HDR_LEN, plen);
        else if (type == TYPE_BATCH)
            why = handle_batch(c, h + HDR_LEN, plen);
        else
            why = TRANSPORT_DROP_BAD_TYPE;
        if (why >= 0) {
            inconn_reject(c, (enum transport_drop)why);
            break;
        }
        pos += HDR_LEN + plen;
    }
    if (c->closing)
        return -1;
    if (pos > 0) {
        memmove(c->buf, c->buf + pos, c->len - pos);
        c->len -= pos;
    }
    return 0;
}

/* Room for READ_CHUNK more bytes at c->buf + c->len; -1 when out of memory. */
static int inconn_reserve(struct inconn *c)
{
    /* The buffer only grows past one frame plus READ_CHUNK: a header is
     * checked (length limit included) as soon as it is complete. */
    if (c->cap - c->len < READ_CHUNK) {
        size_t ncap = c->cap ? c->cap * 2 : 2 * READ_CHUNK;
        while (ncap - c->len < READ_CHUNK)
            ncap *= 2;
        unsigned char *nb = realloc(c->buf, ncap);
        if (!nb)
            return -1;
        c->buf = nb;
        c->cap = ncap;
    }
    return 0;
}

static void in_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct inconn *c = h->data;
    (void)hint;
    if (c->tls.ssl) {
        *b = uv_buf_init((char *)c->rx, sizeof c->rx);
        return;
    }
    if (c->cap - c->len < READ_CHUNK) {
        size_t ncap = c->cap ? c->cap * 2 : 2 * READ_CHUNK;
        while (ncap - c->len < READ_CHUNK)
            ncap *= 2;
        unsigned char *nb = realloc(c->buf, ncap);
        if (!nb) {
            *b = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
            return;
        }
        c->buf = nb;
        c->cap = ncap;
    }
    *b = uv_buf_init((char *)c->buf + c->len, (unsigned)(c->cap - c->len));
}

/* Ciphertext from an inbound TLS connection: the handshake and the identity
 * check first, then plaintext into c->buf and the frame parser. */
static void in_tls_input(struct inconn *c, const char *data, size_t n)
{
    struct transport *t = c->t;
    char why[256];
    if (BIO_write(c->tls.rb, data, (int)n) != (int)n) {
        inconn_close(c);
        return;
    }
    if (!c->tls.up) {
        int r = SSL_do_handshake(c->tls.ssl);
        int rc = tls_flush_ctl(&c->tls, (uv_stream_t *)&c->tcp);
        if (r <= 0) {
            if (SSL_get_error(c->tls.ssl, r) == SSL_ERROR_WANT_READ && rc == 0)
                return;
            inconn_reject_why(c, TRANSPORT_DROP_TLS, ssl_reason(c->tls.ssl, why, sizeof why));
            return;
        }
        struct peer *p = NULL;
        char who[TRANSPORT_MAX_NAME * 2 + 16];
        int drop = tls_peer_check(t, c->tls.ssl, &p, who, sizeof who);
        if (drop >= 0) {
            inconn_reject_why(c, (enum transport_drop)drop, who);
            return;
        }
        c->cert_id = p->id;
        c->tls.up = 1;
    }
    for (;;) {
        if (inconn_reserve(c) < 0) {
            inconn_close(c);
            return;
        }
        size_t room = c->cap - c->len;
        int r = SSL_read(c->tls.ssl, c->buf + c->len, room > INT32_MAX ? INT32_MAX : (int)room);
        if (r <= 0) {
            int e = SSL_get_error(c->tls.ssl, r);
            if (tls_flush_ctl(&c->tls, (uv_stream_t *)&c->tcp) < 0) {
                inconn_close(c);
                return;
            }
            if (e == SSL_ERROR_WANT_READ)
                return;
            if (e == SSL_ERROR_ZERO_RETURN && c->len == 0) {
                inconn_close(c);
                return;
            }
            inconn_reject_why(
                c, e == SSL_ERROR_ZERO_RETURN ? TRANSPORT_DROP_TRUNCATED : TRANSPORT_DROP_TLS,
                ssl_reason(c->tls.ssl, why, sizeof why));
            return;
        }
        c->len += (size_t)r;
        if (inconn_parse(c) < 0)
            return;
    }
}

static void in_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct inconn *c = s->data;
    if (nread > 0 && c->tls.ssl) {
        in_tls_input(c, b->base, (size_t)nread);
        if (!c->closing && c->len == 0 && c->cap > 4 * READ_CHUNK) {
            free(c->buf);
            c->buf = NULL;
            c->cap = 0;
        }
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF && c->len > 0) {
            inconn_reject(c, TRANSPORT_DROP_TRUNCATED);
            return;
        }
        inconn_close(c);
        return;
    }
    c->len += (size_t)nread;
    inconn_parse(c);
    /* Keep memory proportional to what is buffered once a big frame is gone. */
    if (!c->closing && c->len == 0 && c->cap > 4 * READ_CHUNK) {
        free(c->buf);
        c->buf = NULL;
        c->cap = 0;
    }
}

static void accept_cb(uv_stream_t *server, int status)
{
    struct transport *t = server->data;
    if (status < 0) {
        log_warn("transport: accept: %s", uv_strerror(status));
        return;
    }
    struct inconn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->t = t;
    if (uv_tcp_init(&t->loop, &c->tcp) < 0) {
        free(c);
        return;
    }
    uv_timer_init(&t->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    c->pending = 1;
    t->npending++;
    snprintf(c->addr, sizeof c->addr, "?");
    c->next = t->conns;
    if (t->conns)
        t->conns->prev = c;
    t->conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        inconn_close(c);
        return;
    }
    struct sockaddr_storage ra;
    int ralen = sizeof ra;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ra, &ralen) == 0) {
        char h[INET6_ADDRSTRLEN] = "?";
        int port = 0;
        if (ra.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ra, h, sizeof h);
            port = ntohs(((struct sockaddr_in6 *)&ra)->sin6_port);
        } else {
            uv_ip4_name((struct sockaddr_in *)&ra, h, sizeof h);
            port = ntohs(((struct sockaddr_in *)&ra)->sin_port);
        }
        snprintf(c->addr, sizeof c->addr, "%s:%d", h, port);
    }
    /* Over the bound of connections still in their handshake: close at
     * once, before reading anything (a flood of idle connections must not
     * keep the real peers out for longer than a handshake deadline). */
    if (t->npending > t->max_pending) {
        stat_add(&t->st.refused_conns, 1);
        log_warn("transport: refused connection from %s: %u connections already in their "
                 "handshake",
                 c->addr, t->max_pending);
        inconn_close(c);
        return;
    }
    if ((t->ssl_ctx && tls_open(t, &c->tls, 1) < 0) ||
        uv_read_start((uv_stream_t *)&c->tcp, in_alloc_cb, in_read_cb) < 0) {
        inconn_close(c);
        return;
    }
    uv_timer_start(&c->timer, handshake_timeout_cb, t->handshake_timeout_ms, 0);
    stat_add(&t->st.accepted, 1);
}

/* ---- the loop thread ---------------------------------------------------- */

static void wake_cb(uv_async_t *a)
{
    struct transport *t = a->data;
    if (__atomic_load_n(&t->stopping, __ATOMIC_ACQUIRE)) {
        uv_close((uv_handle_t *)&t->wake, NULL);
        uv_close((uv_handle_t *)&t->listener, NULL);
        for (size_t i = 0; i < t->npeers; i++) {
            struct peer *p = &t->peers[i];
            peer_close(p, "stopping");
            uv_close((uv_handle_t *)&p->timer, NULL);
        }
        for (struct inconn *c = t->conns; c; c = c->next)
            inconn_close(c);
        return;
    }
    for (size_t i = 0; i < t->npeers; i++)
        peer_flush(&t->peers[i]);
}

static void loop_thread(void *arg)
{
    pthread_setname_np(pthread_self(), "nines-peer");
    struct transport *t = arg;
    for (size_t i = 0; i < t->npeers; i++)
        peer_connect(&t->peers[i]);
    uv_run(&t->loop, UV_RUN_DEFAULT);
}

/* ---- public API --------------------------------------------------------- */

static int resolve(const char *host, int port, struct sockaddr_storage *out, struct nerr *err)
{
    struct addrinfo hints, *res = NULL;
    char portstr[16];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0 || !res)
        return nerr_set(err, NERR_INVALID, "transport: cannot resolve %s:%d: %s", host, port,
                        gai_strerror(rc));
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

/* One context for both roles: a node accepts and dials with the same
 * certificate. TLS 1.3 only; the peer's certificate is required and
 * verified against the CA; no session tickets (nothing would resume them,
 * and the server would write them on a receive-only link). */
static int make_ssl_ctx(struct transport *t, const struct transport_tls *tls, struct nerr *err)
{
    char why[256];
    char cl[TRANSPORT_MAX_NAME + 1], id[TRANSPORT_MAX_NAME + 1];
    if (!tls->ca_file || !tls->cert_file || !tls->key_file)
        return nerr_set(err, NERR_INVALID, "transport: tls needs a CA, a certificate and a key");
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (!ctx)
        return nerr_set(err, NERR_NOMEM, "transport: SSL_CTX_new: %s",
                        ssl_reason(NULL, why, sizeof why));
    t->ssl_ctx = ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_verify_depth(ctx, 2);
    if (SSL_CTX_load_verify_locations(ctx, tls->ca_file, NULL) != 1)
        return nerr_set(err, NERR_INVALID, "transport: CA %s: %s", tls->ca_file,
                        ssl_reason(NULL, why, sizeof why));
    if (SSL_CTX_use_certificate_chain_file(ctx, tls->cert_file) != 1)
        return nerr_set(err, NERR_INVALID, "transport: certificate %s: %s", tls->cert_file,
                        ssl_reason(NULL, why, sizeof why));
    if (SSL_CTX_use_PrivateKey_file(ctx, tls->key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1)
        return nerr_set(err, NERR_INVALID, "transport: key %s (for %s): %s", tls->key_file,
                        tls->cert_file, ssl_reason(NULL, why, sizeof why));
    /* Our own certificate must say who we are, or every peer refuses us. */
    X509 *self = SSL_CTX_get0_certificate(ctx);
    if (!self || cert_identity(self, cl, sizeof cl, id, sizeof id) < 0 || strcmp(cl, t->cluster) ||
        strcmp(id, t->self_id))
        return nerr_set(err, NERR_INVALID,
                        "transport: certificate %s does not name this node: its "
                        "subjectAltName must hold the one URI nines://%s/%s",
                        tls->cert_file, t->cluster, t->self_id);
    return 0;
}

static int name_ok(const char *s)
{
    return s && s[0] && strlen(s) <= TRANSPORT_MAX_NAME;
}

static void free_transport(struct transport *t)
{
    for (size_t i = 0; i < t->npeers; i++) {
        struct peer *p = &t->peers[i];
        for (struct tmsg *m = p->head, *n; m; m = n) {
            n = m->next;
            free(m);
        }
        pthread_mutex_destroy(&p->mu);
        free(p->id);
        free(p->host);
    }
    free(t->peers);
    SSL_CTX_free(t->ssl_ctx);
    pthread_rwlock_destroy(&t->stop_lock);
    free(t->cluster);
    free(t->self_id);
    free(t);
}

int transport_start(const struct transport_options *o, struct transport **out, struct nerr *err)
{
    struct transport *t = NULL;
    int rc, loop_ok = 0;
    *out = NULL;
    if (!o || !name_ok(o->cluster) || !name_ok(o->self_id) || !o->on_recv ||
        (o->npeers && !o->peers) || o->listen_port < 0 || o->listen_port > 65535)
        return nerr_set(err, NERR_INVALID,
                        "transport: cluster, self_id (1..%d bytes), on_recv and a valid port are "
                        "required",
                        TRANSPORT_MAX_NAME);
    t = calloc(1, sizeof *t);
    if (!t)
        return nerr_set(err, NERR_NOMEM, "transport: out of memory");
    pthread_rwlock_init(&t->stop_lock, NULL);
    t->cluster = strdup(o->cluster);
    t->self_id = strdup(o->self_id);
    t->peers = calloc(o->npeers ? o->npeers : 1, sizeof *t->peers);
    if (!t->cluster || !t->self_id || !t->peers) {
        rc = nerr_set(err, NERR_NOMEM, "transport: out of memory");
        goto fail;
    }
    t->on_recv = o->on_recv;
    t->arg = o->arg;
    t->max_queue_bytes = o->max_queue_bytes ? o->max_queue_bytes : 16u * 1024 * 1024;
    t->rc_min_ms = o->reconnect_min_ms ? o->reconnect_min_ms : 50;
    t->rc_max_ms = o->reconnect_max_ms ? o->reconnect_max_ms : 2000;
    if (t->rc_max_ms < t->rc_min_ms)
        t->rc_max_ms = t->rc_min_ms;
    t->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 3000;
    t->handshake_timeout_ms = o->handshake_timeout_ms ? o->handshake_timeout_ms : 5000;
    t->max_pending = o->max_pending ? o->max_pending : 64;
    if (o->tls && (rc = make_ssl_ctx(t, o->tls, err)) < 0)
        goto fail;

    for (size_t i = 0; i < o->npeers; i++) {
        const struct transport_peer *src = &o->peers[i];
        if (!name_ok(src->id) || !src->host || src->port <= 0 || src->port > 65535) {
            rc = nerr_set(err, NERR_INVALID,
                          "transport: peer %zu needs an id (1..%d bytes), a "
                          "host and a port",
                          i, TRANSPORT_MAX_NAME);
            goto fail;
        }
        if (strcmp(src->id, o->self_id) == 0)
            continue;
        if (find_peer(t, src->id, strlen(src->id))) {
            rc = nerr_set(err, NERR_INVALID, "transport: duplicate peer id '%s'", src->id);
            goto fail;
        }
        struct peer *p = &t->peers[t->npeers];
        if ((rc = resolve(src->host, src->port, &p->addr, err)) < 0)
            goto fail;
        p->id = strdup(src->id);
        p->host = strdup(src->host);
        if (!p->id || !p->host) {
            free(p->id);
            free(p->host);
            rc = nerr_set(err, NERR_NOMEM, "transport: out of memory");
            goto fail;
        }
        pthread_mutex_init(&p->mu, NULL);
        p->t = t;
        p->port = src->port;
        p->backoff_ms = t->rc_min_ms;
        p->state = LINK_IDLE;
        t->npeers++;
    }

    if ((rc = uv_loop_init(&t->loop)) < 0) {
        rc = nerr_set(err, NERR_IO, "transport: uv_loop_init: %s", uv_strerror(rc));
        goto fail;
    }
    loop_ok = 1;
    uv_async_init(&t->loop, &t->wake, wake_cb);
    t->wake.data = t;
    uv_tcp_init(&t->loop, &t->listener);
    t->listener.data = t;
    for (size_t i = 0; i < t->npeers; i++) {
        uv_timer_init(&t->loop, &t->peers[i].timer);
        t->peers[i].timer.data = &t->peers[i];
    }

    struct sockaddr_storage la;
    const char *lh = o->listen_host ? o->listen_host : "0.0.0.0";
    if ((rc = resolve(lh, o->listen_port, &la, err)) < 0)
        goto fail;
    if (!t->ssl_ctx) {
        int open_net = !is_loopback(&la);
        for (size_t i = 0; i < t->npeers; i++)
            open_net |= !is_loopback(&t->peers[i].addr);
        if (open_net)
            log_warn("transport: peers are not all on loopback and the cluster file has no "
                     "tls: anyone who reaches port %d and knows a node id can write; "
                     "add tls (docs/cluster-file.md)",
                     o->listen_port);
    }
    if ((rc = uv_tcp_bind(&t->listener, (const struct sockaddr *)&la, 0)) < 0 ||
        (rc = uv_listen((uv_stream_t *)&t->listener, 128, accept_cb)) < 0) {
        rc = nerr_set(err, NERR_IO, "transport: listen on %s:%d: %s", lh, o->listen_port,
                      uv_strerror(rc));
        goto fail;
    }
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    uv_tcp_getsockname(&t->listener, (struct sockaddr *)&bound, &blen);
    t->port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                          : ntohs(((struct sockaddr_in *)&bound)->sin_port);

    if ((rc = uv_thread_create(&t->thread, loop_thread, t)) < 0) {
        rc = nerr_set(err, NERR_IO, "transport: thread: %s", uv_strerror(rc));
        goto fail;
    }
    *out = t;
    return 0;

fail:
    if (loop_ok) {
        /* Nothing has run yet: close the handles and let the loop finish them. */
        uv_close((uv_handle_t *)&t->wake, NULL);
        uv_close((uv_handle_t *)&t->listener, NULL);
        for (size_t i = 0; i < t->npeers; i++)
            uv_close((uv_handle_t *)&t->peers[i].timer, NULL);
        uv_run(&t->loop, UV_RUN_DEFAULT);
        uv_loop_close(&t->loop);
    }
    free_transport(t);
    return rc;
}

int transport_send(struct transport *t, const char *to, uint64_t group, const void *msg, size_t len)
{
    if (len > TRANSPORT_MAX_MSG)
        return NERR_LIMIT;
    struct peer *p = to ? find_peer(t, to, strlen(to)) : NULL;
    if (!p)
        return NERR_NOTFOUND;
    size_t charge = len + TRANSPORT_MSG_OVERHEAD;
    struct tmsg *m = malloc(sizeof *m + len);
    if (!m)
        return NERR_NOMEM;
    m->next = NULL;
    m->group = group;
    m->len = len;
    if (len)
        memcpy(m->data, msg, len);
    pthread_rwlock_rdlock(&t->stop_lock);
    if (t->stopping) {
        pthread_rwlock_unlock(&t->stop_lock);
        free(m);
        return NERR_CLOSED;
    }
    pthread_mutex_lock(&p->mu);
    if (p->qbytes + charge > t->max_queue_bytes) {
        pthread_mutex_unlock(&p->mu);
        pthread_rwlock_unlock(&t->stop_lock);
        free(m);
        stat_add(&t->st.dropped_queue_full, 1);
        return NERR_BUSY;
    }
    p->qbytes += charge;
    if (p->tail)
        p->tail->next = m;
    else
        p->head = m;
    p->tail = m;
    pthread_mutex_unlock(&p->mu);
    /* libuv coalesces wake-ups: many sends before the loop runs cost one
     * callback, which is what turns them into one frame. */
    uv_async_send(&t->wake);
    pthread_rwlock_unlock(&t->stop_lock);
    return 0;
}

/* transport_get_stats copies the struct word by word. */
_Static_assert(sizeof(struct transport_stats) % sizeof(uint64_t) == 0,
               "transport_stats holds only uint64_t fields");

void transport_get_stats(struct transport *t, struct transport_stats *out)
{
    const uint64_t *src = (const uint64_t *)&t->st;
    uint64_t *dst = (uint64_t *)out;
    for (size_t i = 0; i < sizeof *out / sizeof(uint64_t); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

int transport_port(const struct transport *t)
{
    return t->port;
}

void transport_halt(struct transport *t)
{
    if (!t || t->halted)
        return;
    pthread_rwlock_wrlock(&t->stop_lock);
    __atomic_store_n(&t->stopping, 1, __ATOMIC_RELEASE);
    uv_async_send(&t->wake);
    pthread_rwlock_unlock(&t->stop_lock);
    uv_thread_join(&t->thread);
    uv_loop_close(&t->loop);
    t->halted = 1;
}

void transport_stop(struct transport *t)
{
    if (!t)
        return;
    transport_halt(t);
    free_transport(t);
}
