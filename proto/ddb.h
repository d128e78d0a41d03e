/*
 * ddbclient.h — a small synchronous DynamoDB JSON 1.0 client (libcurl, keep-alive),
 * for nines' own tools: the demo, tests, and later canaries and the game-day
 * runner. One client is one connection; use one per thread.
 *
 * ddb_call sends {op, request} and returns the HTTP status and the parsed JSON
 * answer. A DynamoDB error answer (4xx/5xx with __type) is not a transport
 * failure: it returns 0 with *status >= 400, and ddb_error_type() names it
 * ("ConditionalCheckFailedException"). Transport failures (connect, timeout,
 * unparsable body) return NERR_IO / NERR_TIMEOUT / NERR_CORRUPT.
 * Requests are signed with SigV4 when credentials are given.
 */
#ifndef NINES_CHAOS_DDBCLIENT_H
#define NINES_CHAOS_DDBCLIENT_H

#include <jansson.h>

#include "lib/err.h"

struct ddb_client;

struct ddb_client_options {
    const char *endpoint; /* "http://127.0.0.1:8101" */
    const char *access_key_id, *secret_access_key; /* NULL: unsigned */
    const char *region;   /* default "local" */
    long timeout_ms;      /* per request; default 10000 */
};

int ddb_client_new(const struct ddb_client_options *opt, struct ddb_client **out,
                   struct nerr *err);
void ddb_client_free(struct ddb_client *c);

/* req is borrowed. *resp is a new reference (an object; {} for an empty body). */
int ddb_call(struct ddb_client *c, const char *op, json_t *req, int *status, json_t **resp,
             struct nerr *err);

/* The error name of an error answer ("ValidationException"), or NULL. Borrowed from resp. */
const char *ddb_error_type(const json_t *resp);

#endif
