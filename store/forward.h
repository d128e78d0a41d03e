/*
 * forward.h — the router's outgoing side (store/router.h): DynamoDB requests
 * this node hands to another node's API, asynchronously, plus the timers of
 * the router's waits and retries. The router alone decides what goes where:
 * a request for a partition this node hosts no usable replica of goes to a
 * node that hosts one (writes included: that node's group gets the entry to
 * the leader, never an HTTP hop), and a strongly consistent read goes to
 * the leader this node knows. Nothing here knows about partitions.
 *
 * One thread runs a libcurl multi handle: fwd_send queues a request and
 * returns at once; done(arg, ...) runs later on the forwarder thread with
 * the HTTP status and body (status -1: the connection was refused, so the
 * request was not sent; status 0: no answer — a timeout or a broken
 * connection: the request may or may not have been executed). Requests are
 * signed with SigV4 when credentials are configured (the receiver checks
 * them like any client's) and carry X-Nines-Hops so that a request is
 * forwarded at most FWD_MAX_HOPS times. Connections are kept alive and reused.
 * With o->https the requests go over TLS, the other node authenticated by the
 * cluster's CA and this node by its own certificate.
 *
 * fwd_after(ms) runs fn(arg) on the forwarder thread after ms milliseconds
 * (the router's wait-and-retry while a partition elects a leader, and its
 * retry of a write the group refused with NERR_BUSY).
 *
 * Callbacks must not block. fwd_stop fails everything still queued or in
 * flight (done with status 0, fn of pending timers run) and joins the thread.
 * Thread-safe: fwd_send and fwd_after from any thread.
 */
#ifndef NINES_FORWARD_H
#define NINES_FORWARD_H

#include <stddef.h>

#include "lib/err.h"

#define FWD_MAX_HOPS 2

struct fwd;

struct fwd_options {
    const char *access_key_id, *secret_access_key; /* NULL: unsigned */
    const char *region;
    /* https: the nodes' APIs serve TLS. ca_file (required then) is the
     * cluster's CA, the only one trusted, and the receiving node's name is
     * verified against its certificate; cert_file and key_file are this
     * node's certificate, shown as the client's (the same identity as on
     * the peer transport). Files are read by libcurl at each connection. */
    int https;
    const char *ca_file, *cert_file, *key_file;
};

/* body is malloc'd (NUL-terminated) and owned by the callee; NULL when
 * status is 0 or -1. */
typedef void (*fwd_done_fn)(void *arg, long status, char *body);

int fwd_start(const struct fwd_options *o, struct fwd **out, struct nerr *err);
void fwd_stop(struct fwd *f);
/* hostport: "127.0.0.1:8101". op: "PutItem". body is copied. */
int fwd_send(struct fwd *f, const char *hostport, const char *op, const char *body, size_t len,
             int hops, long timeout_ms, fwd_done_fn done, void *arg);
int fwd_after(struct fwd *f, int ms, void (*fn)(void *arg), void *arg);

#endif
