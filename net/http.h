/*
 * http.h — the one HTTP client of nines (a thin layer over libcurl's easy
 * and multi handles), used by the store's catalog sync, the cluster status
 * view, the DynamoDB client (proto/ddb.h), the canary's scraper and its
 * Alertmanager push.
 *
 * What it does: one request (method, URL, header lines, body, timeout) and
 * its answer (status, body in a growing buffer with a size cap, the class
 * of a transport failure and its reason in words; the struct nerr message
 * names the URL too). A struct
 * http_client is one easy handle, so consecutive calls to the same host
 * reuse the connection (keep-alive). http_call_all runs N requests at once
 * on a multi handle, for "ask every node" views.
 *
 * Init: http_global_init() runs curl_global_init once per process; the
 * process's main() calls it before any thread starts (libcurl's rule: the
 * global init is not thread-safe). A client made without it still works:
 * libcurl then initialises itself on first use, which is safe only while
 * one thread runs, so mains with threads must call it.
 *
 * Errors (return values): 0 when an HTTP answer came back, whatever its
 * status; NERR_TIMEOUT when the timeout passed first; NERR_LIMIT when the
 * body was longer than max_body; NERR_IO for any other transport failure
 * (connect refused, connection reset, bad URL); NERR_NOMEM; NERR_INVALID
 * for a request without a URL. rs->fail classifies a transport failure
 * more finely (connect vs. lost connection) and http_fail_name() names the
 * class, the names every nines client reports ("timeout", "connect", ...).
 *
 * Ownership: every pointer in struct http_request is borrowed for the call.
 * struct http_response belongs to the caller: a call overwrites it and
 * reuses its buffer's capacity; http_response_free releases the buffer.
 * rs->body is always NUL-terminated (an empty string when no body came).
 *
 * Threads: a client belongs to one thread at a time; different clients may
 * be used from different threads at once. No callback is ever made.
 */
#ifndef NINES_NET_HTTP_H
#define NINES_NET_HTTP_H

#include <stddef.h>

#include "lib/err.h"

/* The default body cap: big enough for a status report of thousands of
 * groups, small enough that a confused peer cannot exhaust memory. */
#define HTTP_MAX_BODY_DEFAULT (64u << 20)

struct http_request {
    const char *method;         /* "GET", "POST", ...; NULL: POST with a body, else GET */
    const char *url;            /* "http://127.0.0.1:8101/" */
    const char *const *headers; /* "Name: value" lines, NULL-terminated; NULL for none */
    const char *body;           /* NULL: no body */
    size_t body_len;
    long timeout_ms;         /* the whole transfer; <= 0: 10000 */
    long connect_timeout_ms; /* <= 0: bounded by timeout_ms only */
    size_t max_body;         /* 0: HTTP_MAX_BODY_DEFAULT */
    int no_proxy;            /* 1: never go through a proxy from the environment */
    /* HTTPS (an https:// url): ca_file, a PEM file of the CAs to trust
     * instead of the system's (a nines cluster's own CA); cert_file and
     * key_file, a client certificate and its key (a node calling another
     * node). NULL: the system's CAs, no client certificate. The server's
     * name is always verified against its certificate. */
    const char *ca_file, *cert_file, *key_file;
};

enum http_fail {
    HTTP_FAIL_NONE = 0, /* an answer came back */
    HTTP_FAIL_TIMEOUT,  /* no (complete) answer within timeout_ms */
    HTTP_FAIL_CONNECT,  /* no connection: refused, unreachable, unknown host */
    HTTP_FAIL_LOST,     /* connected, then the connection broke or closed early */
    HTTP_FAIL_TOO_BIG,  /* the body was longer than max_body */
    HTTP_FAIL_TLS,      /* TLS: the handshake failed or the certificate was not trusted */
    HTTP_FAIL_OTHER     /* anything else (bad URL, out of memory) */
};

struct http_response {
    long status; /* the HTTP status when the call returned 0 */
    char *body;  /* NUL-terminated; owned by the response */
    size_t len, cap;
    enum http_fail fail; /* HTTP_FAIL_NONE when the call returned 0 */
    char error[256];     /* the reason when the call failed, else ""; the
                          * struct nerr message is "URL: reason" */
};

/* curl_global_init once per process (later calls do nothing). Returns 0,
 * or NERR_INTERNAL when libcurl cannot initialise. */
int http_global_init(void);

struct http_client;

int http_client_new(struct http_client **out, struct nerr *err);
void http_client_free(struct http_client *c);

/* Sends rq on c's connection (opening one when none is open) and fills rs. */
int http_call(struct http_client *c, const struct http_request *rq, struct http_response *rs,
              struct nerr *err);

/* Sends the n requests at once, each on a fresh connection, and fills
 * rs[i] for rq[i] (each with its own outcome). Returns 0 when every
 * request was sent (whatever each outcome), NERR_NOMEM otherwise. Ends
 * within the longest timeout plus two seconds; a transfer still running
 * then ends as HTTP_FAIL_TIMEOUT. */
int http_call_all(const struct http_request *rq, size_t n, struct http_response *rs,
                  struct nerr *err);

void http_response_free(struct http_response *rs);

/* "timeout", "connect", "connection-lost", "too-large", "transport"; NULL
 * for HTTP_FAIL_NONE. */
const char *http_fail_name(enum http_fail f);

/* The class of a libcurl CURLcode, for code that drives libcurl itself
 * (the load generator's multi loop) and must still name its failures the
 * same way. */
enum http_fail http_fail_of_curl(int curl_code);

#endif
