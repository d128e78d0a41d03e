/*
 * http.h — ninesd's HTTP/1.1 front end (libmicrohttpd) for the DynamoDB API.
 *
 * Every request is POST / with Content-Type application/x-amz-json-1.0 and
 * X-Amz-Target DynamoDB_20120810.<Operation> or NinesAdmin.<Operation>;
 * GET /metrics answers the Prometheus text, GET / a health line. The server
 * checks the transport (method, size ≤ 16 MiB, content type, target),
 * verifies SigV4 when the cluster has credentials, and hands the body to
 * api_call (api_admin for NinesAdmin).
 *
 * Authentication (docs/security.md). With access_key_id set, every POST
 * (DynamoDB and NinesAdmin alike) and GET /metrics must carry a valid SigV4
 * signature over method, path, query, signed headers and body (a GET's
 * body is empty); else HTTP 400 with DynamoDB's error
 * (MissingAuthenticationToken, UnrecognizedClient, InvalidSignature,
 * IncompleteSignature). GET / stays open: it names the node and nothing
 * else, and is what liveness probes ask. Writes complete on the applier thread: the connection is
 * suspended meanwhile, so a handful of server threads serve many clients.
 * Every response carries x-amzn-RequestId.
 *
 * http_stop waits (bounded by drain_ms) for the requests in flight to be
 * answered, then closes the listening socket and every connection.
 *
 * TLS. With tls_cert_file and tls_key_file (PEM; the node's certificate,
 * docs/cluster-file.md "tls") the server speaks HTTPS only (GnuTLS inside
 * libmicrohttpd); clients trust the cluster's CA (aws --ca-bundle).
 *
 * Bounds before a request is authenticated (docs/transport.md, "Edges"):
 *   - headers: at most HTTP_MAX_HEADER_BYTES per connection (MHD's memory
 *     pool; a bigger request head is answered 431 by MHD and closed);
 *   - with credentials, a request whose Authorization header is missing or
 *     names an unknown access key is answered without its body being
 *     buffered (the body is read and discarded);
 *   - a body is buffered only up to its declared Content-Length, at most
 *     HTTP_MAX_BODY (else 413, the body discarded), and all bodies buffered
 *     before their signature was checked share one budget,
 *     max_unverified_bytes (else 503 ServiceUnavailable, which SDKs retry);
 *   - connections: max_connections in all, max_per_ip from one address,
 *     each closed after idle_timeout_s without traffic.
 */
#ifndef NINES_HTTP_H
#define NINES_HTTP_H

#include "lib/err.h"
#include "store/api.h"

#define HTTP_MAX_BODY (16u * 1024 * 1024)
#define HTTP_MAX_HEADER_BYTES (32u * 1024)

struct http_server;

struct http_options {
    const char *host; /* numeric address to bind, e.g. "127.0.0.1" or "::1" */
    int port;         /* 0 = any free port (see http_port) */
    int threads;      /* server threads; 0 = number of CPUs */
    struct api *api;
    const char *access_key_id; /* NULL: no authentication (auth: none) */
    const char *secret_access_key;
    const char *node_id;
    const char *tls_cert_file, *tls_key_file; /* both or neither: HTTPS */
    unsigned max_connections;                 /* 0 = 4096 */
    unsigned max_per_ip;                      /* 0 = 1024 */
    unsigned idle_timeout_s;                  /* 0 = 120 */
    size_t max_unverified_bytes;              /* 0 = 256 MiB */
};

int http_start(const struct http_options *opt, struct http_server **out, struct nerr *err);
int http_port(const struct http_server *s);
void http_stop(struct http_server *s, int drain_ms);

#endif
