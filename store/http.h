/*
 * http.h — ninesd's HTTP/1.1 front end (libmicrohttpd) for the DynamoDB API.
 *
 * Every request is POST / with Content-Type application/x-amz-json-1.0 and
 * X-Amz-Target DynamoDB_20120810.<Operation>; GET / answers a health line.
 * The server checks the transport (method, size ≤ 16 MiB, content type,
 * target), verifies SigV4 when the cluster has credentials, and hands the body
 * to api_call. Writes complete on the applier thread: the connection is
 * suspended meanwhile, so a handful of server threads serve many clients.
 * Every response carries x-amzn-RequestId.
 *
 * http_stop waits (bounded by drain_ms) for the requests in flight to be
 * answered, then closes the listening socket and every connection.
 */
#ifndef NINES_HTTP_H
#define NINES_HTTP_H

#include "lib/err.h"
#include "store/api.h"

#define HTTP_MAX_BODY (16u * 1024 * 1024)

struct http_server;

struct http_options {
    const char *host; /* numeric address to bind, e.g. "127.0.0.1" or "::1" */
    int port;         /* 0 = any free port (see http_port) */
    int threads;      /* server threads; 0 = number of CPUs */
    struct api *api;
    const char *access_key_id; /* NULL: no authentication (auth: none) */
    const char *secret_access_key;
    const char *node_id;
};

int http_start(const struct http_options *opt, struct http_server **out, struct nerr *err);
int http_port(const struct http_server *s);
void http_stop(struct http_server *s, int drain_ms);

#endif
