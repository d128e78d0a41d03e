/*
 * api.h — DynamoDB's JSON 1.0 operations on this node, independent of HTTP.
 *
 * api_call takes the operation name (the part of X-Amz-Target after
 * "DynamoDB_20120810.") and the request body, and answers through reply()
 * exactly once with an HTTP status and a JSON body (malloc'd, ownership passes
 * to reply). reply may run before api_call returns (reads, validation errors)
 * or later on the applier thread (writes, after the write is durable and
 * applied). Errors are DynamoDB's: HTTP 400 with
 *   {"__type":"com.amazonaws.dynamodb.v20120810#ValidationException","message":"..."}
 * and HTTP 500 InternalServerError only for a real internal fault.
 *
 * Supported: CreateTable, DescribeTable, ListTables, DeleteTable, PutItem,
 * GetItem, DeleteItem, UpdateItem, Query, Scan, BatchWriteItem, BatchGetItem,
 * DescribeEndpoints, DescribeLimits. Everything else: UnknownOperationException.
 *
 * Where a request runs is the router's decision (store/router.h: the
 * operation table and the decision table); the body is parsed once, the
 * table and the partition are looked up once. The layer's files share
 * store/api_internal.h: api.c (this entry, replies, parsing helpers),
 * router.c, ops_table.c, ops_item.c, ops_query.c, admin.c, metrics.c.
 *
 * Thread-safe: many threads may call api_call at once.
 */
#ifndef NINES_API_H
#define NINES_API_H

#include <stddef.h>

#include "store/catalog.h"

#define API_TYPE_DDB "com.amazonaws.dynamodb.v20120810#"
#define API_TYPE_CORAL "com.amazon.coral.service#"

struct api;

struct cluster_conf;
struct fwd;
struct api_options {
    struct catalog *cat;
    const struct cluster_conf *conf; /* node ids -> API addresses, for routing */
    const char *self_id;
    struct fwd *fwd; /* NULL: nothing is forwarded (one node) */
    struct group_host *host;
    const char *region;      /* for ARNs */
    const char *endpoint;    /* host:port, for DescribeEndpoints */
    int default_partitions;  /* CreateTable without a partition count */
    int max_partitions;
};

typedef void (*api_reply_fn)(void *arg, int http_status, char *body);

int api_new(const struct api_options *opt, struct api **out, struct nerr *err);
void api_free(struct api *a);

void api_call(struct api *a, const char *op, const char *body, size_t len, api_reply_fn reply,
              void *arg);
/* The same for a request another node forwarded `hops` times (X-Nines-Hops):
 * it is forwarded again only while hops < FWD_MAX_HOPS. */
void api_call_hops(struct api *a, const char *op, const char *body, size_t len, int hops,
                   api_reply_fn reply, void *arg);
/* NinesAdmin.<op> with its JSON body (len 0: none): "Status" (this node's
 * groups and their consensus state, docs/replication.md; the wire form is
 * proto/admin.h's) and "Catalog" (every table description this node knows),
 * answered at once; "ScrubMark" and "ScrubDigest" (store/admin_scrub.c,
 * docs/scrub.md), ScrubMark once the marker is applied here;
 * "ScrubDeep", "ScrubDeepStatus", "ScrubDeepCancel" (store/deepscrub.c,
 * docs/scrub.md "Deep scrub"), answered at once. The HTTP
 * server has checked the signature first when the cluster has credentials
 * (http.h). */
void api_admin(struct api *a, const char *op, const char *body, size_t len, api_reply_fn reply,
               void *arg);
/* Prometheus text: nines_api_requests_total{table,op,outcome} for requests
 * answered to clients here (forwarded hops are counted where the client
 * sent them). malloc'd; NULL when out of memory. */
char *api_metrics_text(struct api *a);

/* {"__type": type, "message": msg} as a malloc'd string; type is the full
 * name ("com.amazon.coral.service#SerializationException"). */
char *api_error_body(const char *type, const char *msg);

struct api_stats {
    unsigned long long requests, client_errors, server_errors;
};
void api_get_stats(struct api *a, struct api_stats *out);

#endif
