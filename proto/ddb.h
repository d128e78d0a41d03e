/*
 * ddb.h — nines' DynamoDB client (JSON 1.0 over net/http.h, keep-alive,
 * SigV4 when credentials are given): one call, the one error typing every
 * nines client reports, and the one "create the table if it is missing and
 * wait until it is ACTIVE". Used by the demo, the canaries and the
 * benchmarks. One client is one connection; use one per thread.
 *
 * ddb_call sends {op, request} and returns the HTTP status and the parsed
 * JSON answer. A DynamoDB error answer (4xx/5xx with __type) is not a
 * transport failure: it returns 0 with *status >= 400. Transport failures
 * (connect, timeout, unparsable body) return NERR_IO / NERR_TIMEOUT /
 * NERR_CORRUPT.
 *
 * Error typing: every outcome that is not a success has one short name,
 * the same in every tool (canary metrics, load statistics, game-day
 * reports):
 *   - an answer with a DynamoDB error: the name in its "__type", after the
 *     '#' ("ConditionalCheckFailedException", "ResourceNotFoundException");
 *   - an error answer without one: "http-<status>" ("http-503");
 *   - no answer: net/http.h's names ("timeout", "connect",
 *     "connection-lost", "too-large", "transport"), and "bad-response" for
 *     a body that is not JSON.
 * ddb_error_type() types an answer from its raw bytes (so a caller that
 * drives libcurl itself need not parse JSON); ddb_client_error_type() gives
 * the name of the last ddb_call's outcome.
 *
 * Retries: ddb_call makes one attempt. The policy of the AWS SDKs
 * (net/retry.h) is applied by ddb_ensure_table and by callers with their
 * own pacing (the canary shares one retry quota per endpoint).
 *
 * Ownership: options are copied by ddb_client_new. Threads: a client
 * belongs to one thread at a time.
 */
#ifndef NINES_PROTO_DDB_H
#define NINES_PROTO_DDB_H

#include <jansson.h>
#include <stddef.h>

#include "lib/err.h"

/* Room for any name ddb_error_type writes. */
#define DDB_ERROR_TYPE_MAX 96

struct ddb_client;

struct ddb_client_options {
    const char *endpoint;                          /* "http://127.0.0.1:8101" */
    const char *access_key_id, *secret_access_key; /* NULL: unsigned */
    const char *region;                            /* default "local" */
    long timeout_ms;                               /* per request; default 10000 */
    const char *ca_file; /* https://: PEM CAs to trust (NULL: the system's) */
};

int ddb_client_new(const struct ddb_client_options *opt, struct ddb_client **out, struct nerr *err);
void ddb_client_free(struct ddb_client *c);

/* req is borrowed. *resp is a new reference (an object; {} for an empty body).
 * op is a DynamoDB operation ("PutItem": the target DynamoDB_20120810.op),
 * or a whole target with its prefix ("NinesAdmin.Status"). */
int ddb_call(struct ddb_client *c, const char *op, json_t *req, int *status, json_t **resp,
             struct nerr *err);

/* The name of an HTTP answer as above, written to out (cap bytes; at least
 * DDB_ERROR_TYPE_MAX is never truncated) and returned; NULL for a success
 * (status below 300). body need not be NUL-terminated. */
const char *ddb_error_type(long status, const char *body, size_t len, char *out, size_t cap);

/* The name of the last ddb_call's outcome, NULL when it succeeded (or no
 * call was made). Valid until the next call on c. */
const char *ddb_client_error_type(const struct ddb_client *c);

/* The endpoint c talks to, as given. */
const char *ddb_client_endpoint(const struct ddb_client *c);

struct ddb_ensure_opts {
    int create_tries;    /* CreateTable attempts under the SDK retry policy; <= 0: 10 */
    long active_wait_ms; /* how long to wait for ACTIVE on all clients; 0: do not wait;
                          * < 0: 30000 */
};

/* Sends the CreateTable request `create` (borrowed; its "TableName" names
 * the table) on clients[0], retrying what the SDKs retry (transport
 * failures, 5xx, throttling) within create_tries, and takes
 * ResourceInUseException as "it exists". Then, when active_wait_ms is not
 * 0, asks every client in turn (DescribeTable, every 100 ms) until it says
 * ACTIVE: the nodes of a cluster learn of a new table at their next
 * catalog sync, and until then they answer ResourceNotFoundException.
 * Errors: NERR_IO (CreateTable or DescribeTable refused, or no answer
 * after the tries; the message names the endpoint and the error type),
 * NERR_TIMEOUT (not ACTIVE everywhere within active_wait_ms), NERR_INVALID
 * (no TableName, n == 0), NERR_NOMEM. */
int ddb_ensure_table(struct ddb_client *const *clients, size_t n, json_t *create,
                     const struct ddb_ensure_opts *o, struct nerr *err);

#endif
