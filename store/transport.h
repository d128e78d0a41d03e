/*
 * transport.h — node-to-node message transport of the replication layer:
 * opaque messages addressed to (node, group) over TCP, framed and checksummed,
 * batched per peer. Wire format: docs/transport.md, "Wire format".
 *
 * Model. A transport belongs to one node of one cluster. It listens on the
 * node's peer address and keeps one outgoing TCP connection to every other
 * node of the cluster file. Outgoing connections only send; accepted
 * connections only receive. Each connection opens with a HELLO frame carrying
 * the cluster name and the sender's node id; after that it carries BATCH
 * frames, each holding any number of (group id, message) records.
 *
 * Identity (with o->tls). Every connection is mutual TLS (OpenSSL over
 * memory BIOs on the libuv streams; TLS 1.3 only). Both ends present a
 * certificate signed by the cluster's CA whose subjectAltName holds the URI
 * nines://CLUSTER/NODE; a peer IS the node its certificate names. An
 * accepting transport refuses, before it decodes a single frame: a peer
 * without a certificate or with one the CA did not sign (DROP_TLS), a
 * certificate of another cluster (DROP_CERT_CLUSTER), of a node that is not
 * a peer or without a nines URI (DROP_CERT_PEER), and then a HELLO naming
 * any node but the certificate's (DROP_HELLO_MISMATCH). A connecting
 * transport likewise checks that the node it reached is the one it dialled,
 * and closes the link otherwise (counted in connect_failures). Without
 * o->tls the HELLO is believed: anyone who reaches the port and knows the
 * cluster name and a node id can inject messages (a warning is logged at
 * start when a peer or the listener is not on loopback).
 *
 * Handshake bounds (with or without TLS). An accepted connection must
 * complete its handshake (TLS, then a HELLO of at most
 * TRANSPORT_MAX_HELLO payload bytes) within handshake_timeout_ms, or it is
 * closed (DROP_HANDSHAKE_TIMEOUT); a bigger first frame is DROP_TOO_LONG
 * before its payload is read. At most max_pending accepted connections may
 * be in their handshake at once: one more is closed at once and counted in
 * refused_conns. Each peer keeps at most one authenticated inbound
 * connection: a newer one (a peer that restarted) replaces the older.
 *
 * Threads. transport_start runs a libuv loop on a thread of its own (the
 * "transport thread"). transport_send and transport_get_stats may be called
 * from any thread at any time between transport_start and transport_stop;
 * transport_send only appends to the peer's queue under a mutex and wakes the
 * loop (uv_async_t). The receive callback runs on the transport thread; it
 * may call transport_send and transport_get_stats, never transport_stop, and
 * it should return quickly (it holds up every other peer's traffic).
 *
 * Batching. Every message queued for one peer when the loop flushes (one loop
 * iteration, and while the previous frame to that peer is still being
 * written) leaves as one BATCH frame, so the heartbeats of thousands of
 * groups between two nodes cost one frame per tick. At most one write is in
 * flight per peer.
 *
 * Delivery. At most once, in order per (sender, receiver) connection, no
 * retransmission: a message can be lost when a connection breaks, when the
 * queue is full, or when the receiver rejects a frame. The consensus layer
 * above tolerates loss. While a peer is unreachable its messages stay queued
 * (bounded, see below) and leave once the connection is back.
 *
 * Back-pressure. Each peer has a queue bounded by max_queue_bytes, counting
 * for each message its length plus TRANSPORT_MSG_OVERHEAD, from
 * transport_send until the frame carrying it has been written (or failed).
 * A message that would exceed the bound is dropped, counted in
 * stats.dropped_queue_full, and transport_send returns NERR_BUSY.
 *
 * Connection state of one outgoing peer link (transport thread only):
 *
 *   idle --timer--> connecting --connected--> up (HELLO written first)
 *     ^                 |  (refused, error, connect timeout)  |  (EOF, error,
 *     |                 v                                     v   bytes from peer)
 *     +--backoff timer-- closing <----------------------------+
 *
 * The backoff doubles from reconnect_min_ms up to reconnect_max_ms and is
 * reset by a successful connect, so a dead peer costs at most one attempt per
 * reconnect_min_ms..reconnect_max_ms, never a busy loop.
 *
 * Bad input. A frame failing any check (magic, version, length over
 * TRANSPORT_MAX_PAYLOAD, CRC32C, type, payload layout, a stream cut inside a
 * frame), a HELLO from another cluster or claiming an id that is not a peer
 * in the cluster file, or a BATCH before the HELLO, is dropped and counted
 * under its reason (enum transport_drop); the connection is then closed.
 * Nothing from a rejected frame reaches the receive callback.
 *
 * Not provided: DNS re-resolution (peer hosts resolve once, at start),
 * certificate revocation (a node's key that leaks is retired by a new CA),
 * authentication without o->tls.
 */
#ifndef NINES_TRANSPORT_H
#define NINES_TRANSPORT_H

#include "lib/err.h"

#include <stddef.h>
#include <stdint.h>

/* Frame limits (docs/transport.md). */
#define TRANSPORT_MAX_PAYLOAD (64u * 1024 * 1024)
/* A single message must fit a BATCH frame on its own. */
#define TRANSPORT_MAX_MSG (TRANSPORT_MAX_PAYLOAD - 4 - 12)
/* Longest cluster name and node id, in bytes. */
#define TRANSPORT_MAX_NAME 255
/* The largest HELLO payload (two names at most TRANSPORT_MAX_NAME each). */
#define TRANSPORT_MAX_HELLO (2 + TRANSPORT_MAX_NAME + 2 + TRANSPORT_MAX_NAME)
/* Bytes charged to the peer's queue per message on top of its length. */
#define TRANSPORT_MSG_OVERHEAD 32

/* Why a received frame was dropped (index into transport_stats.dropped). */
enum transport_drop {
    TRANSPORT_DROP_BAD_MAGIC = 0,  /* header magic is not "N9TP" */
    TRANSPORT_DROP_BAD_VERSION,    /* unknown protocol version */
    TRANSPORT_DROP_TOO_LONG,       /* payload length over TRANSPORT_MAX_PAYLOAD */
    TRANSPORT_DROP_BAD_CRC,        /* CRC32C over header and payload mismatch */
    TRANSPORT_DROP_TRUNCATED,      /* the stream ended inside a frame */
    TRANSPORT_DROP_BAD_TYPE,       /* unknown frame type, or a second HELLO */
    TRANSPORT_DROP_BAD_PAYLOAD,    /* payload layout inconsistent with its lengths */
    TRANSPORT_DROP_NO_HELLO,       /* a BATCH before the HELLO */
    TRANSPORT_DROP_WRONG_CLUSTER,  /* HELLO names another cluster */
    TRANSPORT_DROP_UNKNOWN_PEER,   /* HELLO claims an id that is not a peer */
    TRANSPORT_DROP_TLS,            /* TLS handshake failed: no certificate, not the CA's, bad TLS */
    TRANSPORT_DROP_CERT_CLUSTER,   /* the certificate is another cluster's */
    TRANSPORT_DROP_CERT_PEER,      /* the certificate names no peer of this cluster */
    TRANSPORT_DROP_HELLO_MISMATCH, /* HELLO names another node than the certificate */
    TRANSPORT_DROP_HANDSHAKE_TIMEOUT, /* no complete handshake within the deadline */
    TRANSPORT_DROP__COUNT
};

/* A short lower-case name of a drop reason ("bad_crc"); never NULL. */
const char *transport_drop_name(int reason);

/* One node of the cluster file. id and host are copied by transport_start. */
struct transport_peer {
    const char *id;
    const char *host; /* numeric address or host name */
    int port;
};

/* Called on the transport thread for every message received. from is the
 * sender's node id (as given in the cluster file), msg is borrowed for the
 * duration of the call only. */
typedef void (*transport_recv_fn)(void *arg, const char *from, uint64_t group, const void *msg,
                                  size_t len);

/* Mutual TLS between the nodes (docs/transport.md, "TLS"). PEM files, read
 * by transport_start. */
struct transport_tls {
    const char *ca_file;   /* the cluster's CA certificate */
    const char *cert_file; /* this node's certificate: nines://CLUSTER/SELF_ID */
    const char *key_file;  /* its private key */
};

struct transport_options {
    const char *cluster;     /* cluster name, required, 1..TRANSPORT_MAX_NAME bytes */
    const char *self_id;     /* this node's id, required, 1..TRANSPORT_MAX_NAME bytes */
    const char *listen_host; /* address to listen on; NULL = "0.0.0.0" */
    int listen_port;         /* 0 = any free port, see transport_port() */
    /* The nodes of the cluster file. An entry whose id equals self_id is
     * skipped, so the whole cluster file may be passed. Ids must be unique. */
    const struct transport_peer *peers;
    size_t npeers;
    transport_recv_fn on_recv;       /* required */
    void *arg;                       /* passed to on_recv */
    size_t max_queue_bytes;          /* per peer; 0 = 16 MiB */
    unsigned reconnect_min_ms;       /* 0 = 50 */
    unsigned reconnect_max_ms;       /* 0 = 2000 */
    unsigned connect_timeout_ms;     /* 0 = 3000; with TLS, again for the handshake */
    const struct transport_tls *tls; /* NULL: plain TCP, peers trusted by their HELLO */
    unsigned handshake_timeout_ms;   /* inbound TLS + HELLO deadline; 0 = 5000 */
    unsigned max_pending;            /* inbound connections in their handshake; 0 = 64 */
};

/* Counters since transport_start. Frames count BATCH frames only (HELLOs are
 * not counted there); records count messages. */
struct transport_stats {
    uint64_t frames_sent, records_sent, bytes_sent; /* bytes: whole frames, headers included */
    uint64_t frames_recv, records_recv, bytes_recv;
    uint64_t dropped_queue_full;             /* messages refused by transport_send (NERR_BUSY) */
    uint64_t dropped_send_error;             /* messages in a frame whose write failed */
    uint64_t connects;                       /* outgoing connections established */
    uint64_t connect_failures;               /* outgoing attempts refused, failed or timed out */
    uint64_t accepted;                       /* incoming connections accepted */
    uint64_t refused_conns;                  /* closed at accept: max_pending reached */
    uint64_t connected;                      /* outgoing links up right now (a gauge) */
    uint64_t dropped[TRANSPORT_DROP__COUNT]; /* received frames rejected, per reason */
};

struct transport;

/* Validates o, resolves every peer host, binds and listens, then starts the
 * transport thread, which connects to every peer. o and everything it points
 * to are copied. On success *out owns the transport until transport_stop.
 * Errors: NERR_INVALID (missing or over-long fields, duplicate peer ids,
 * unresolvable host; with tls: unreadable or mismatched certificate or key,
 * or a certificate that is not nines://CLUSTER/SELF_ID), NERR_IO (bind/listen/thread failure; e.g.
 * port in use), NERR_NOMEM. On error nothing is left running and on_recv never fires. */
int transport_start(const struct transport_options *o, struct transport **out, struct nerr *err);

/* Queues a copy of msg[0..len) for node `to`, group `group`. Any thread.
 * Returns 0 when queued (delivery is still not guaranteed), NERR_NOTFOUND when
 * `to` is not a peer (self included), NERR_LIMIT when len > TRANSPORT_MAX_MSG,
 * NERR_BUSY when the peer's queue is full (the message is dropped and
 * counted), NERR_CLOSED once transport_stop has begun, NERR_NOMEM. Must not
 * be called after transport_stop has returned (t is freed). */
int transport_send(struct transport *t, const char *to, uint64_t group, const void *msg,
                   size_t len);

/* A consistent-enough snapshot of the counters (each read atomically). */
void transport_get_stats(struct transport *t, struct transport_stats *out);

/* The port actually listened on (useful with listen_port 0). */
int transport_port(const struct transport *t);

/* Closes every connection and the listener, stops and joins the transport
 * thread, frees queued messages and t. on_recv does not fire after it
 * returns. Must not be called from the transport thread (the receive
 * callback); call once. NULL is a no-op. */
void transport_stop(struct transport *t);
/* transport_stop without the free: on_recv does not fire after it returns,
 * and transport_send from any thread returns NERR_CLOSED until
 * transport_stop frees t. For an owner whose other threads may still send
 * while it stops them (node.c: the group host's driver). Idempotent. */
void transport_halt(struct transport *t);

#endif
