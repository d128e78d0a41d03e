/*
 * api_internal.h — what the files of the API layer share, and nothing else
 * includes: api.c (entry, replies, request-parsing helpers), router.c (the
 * operation table, routing, forwarding, retries, split/fan-out), ops_table.c,
 * ops_item.c, ops_query.c (the DynamoDB operations), admin.c (NinesAdmin)
 * and metrics.c. The layer's door is api.h; this header is libuv's
 * "internal.h": its names carry the api_/ops_/router_ prefixes but make no
 * promise outside store/api*, store/ops_*, store/router.c and store/admin.c.
 *
 * The life of a request. api_call_hops copies the body into a struct rcall,
 * parses it once (rc->req), finds its row in the operation table (router.h)
 * and hands it to router_route. The router resolves the table and the
 * partition once (rc->t, rc->p), decides (router.h's decision table) and
 * either forwards it, waits and routes again, splits it, or dispatches it to
 * the row's handler here with a struct call. A handler answers through the
 * api_reply_* functions exactly once.
 *
 * Ownership of the rcall. During dispatch the router owns it and frees it
 * when the handler returns, unless the handler took it (call_take: an
 * asynchronous write that may have to be routed again when the group says
 * NERR_BUSY). A handler that took it either gives it back to the router with
 * router_retry (which then owns it) or answers and frees it with
 * router_finish. The taken flag lives in the struct call on the
 * dispatcher's stack, never in the rcall, because the write may complete on
 * another thread before the handler returns.
 */
#ifndef NINES_API_INTERNAL_H
#define NINES_API_INTERNAL_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "store/api.h"
#include "store/catalog.h"
#include "store/expr.h"
#include "store/metrics.h"
#include "store/router.h"

#define PAGE_BYTES (1024 * 1024) /* DynamoDB's 1 MB page for Query and Scan */
#define BATCH_WRITE_MAX 25
#define BATCH_GET_MAX 100

struct api {
    struct api_options opt;
    struct state *st;
    _Atomic unsigned long long requests, client_errors, server_errors;
    struct metrics *metrics;
    /* Where the next forward to a partition's members starts: requests that
     * must leave this node spread over the replicas that can take them. */
    _Atomic unsigned rotate;
    struct deepscrub *deep; /* deep scrub jobs (deepscrub.h) */
};

/* A routed request. Owned by the router (see the header comment). */
struct rcall {
    struct api *a;
    const struct api_opdef *op; /* its row of the operation table; NULL: unknown */
    char opname[48];
    char *body; /* the client's bytes, NUL-terminated: forwarded as they are */
    size_t len;
    json_t *req;     /* body parsed once; NULL when it is not JSON */
    json_error_t je; /* why it is not */
    /* Resolved once by the router (router.c, resolve): the table TableName
     * names (a reference) and, for a request on one partition, the
     * partition of its key. NULL when there is none or it cannot be told. */
    struct table *t;
    struct partition *p;
    int hops;
    api_reply_fn reply;
    void *arg;
    int64_t deadline; /* clock_mono_ms: routing and retries stop here */
    int attempt;
    unsigned first;       /* where the rotation over members starts (api.rotate) */
    int retrying;         /* a retry timer holds it */
    char leader_node[64]; /* the node a consistent read goes to (router.c,
                             route_replica): a copy, as the group's slots
                             may change meanwhile */
    /* A forwarded CreateTable/DeleteTable that succeeded: its answer, held
     * until this node's catalog shows the change (bounded). */
    long held_status;
    char *held_body;
    int polls;
};

/* One request being answered by a handler. */
struct call {
    struct api *a;
    api_reply_fn reply;
    void *arg;
    struct rcall *rc; /* the routed request; NULL for admin calls and batch members */
    int taken;        /* set by call_take: the handler owns rc now */
};

/* The handler keeps the routed request beyond dispatch; NULL when there is
 * none. Must be called before the work that completes asynchronously starts. */
static inline struct rcall *call_take(struct call *c)
{
    if (c->rc)
        c->taken = 1;
    return c->rc;
}

/* ---- replies (api.c) ---- */
void api_reply_json(struct call *c, json_t *o); /* takes o */
void api_reply_err(struct call *c, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void api_reply_validation(struct call *c, const struct nerr *e);
void api_reply_no_table(struct call *c, const char *name);
void api_reply_bad_table_name(struct call *c, const char *name);

/* ---- request parsing helpers (api.c); each replies on failure ---- */
/* A string member: absent -> NULL (ok); present but not a string -> error. */
int api_get_str(struct call *c, json_t *req, const char *key, const char **out);
int api_valid_table_name(const char *n);
/* Looks up TableName (or key); the router's resolution when it is the same
 * table. A new reference, or NULL after replying with the right error. */
struct table *api_req_table(struct call *c, json_t *req, const char *key);
/* Legacy parameters we do not implement are refused, never ignored. */
int api_refuse_legacy(struct call *c, json_t *req);
/* names/values of the request (borrowed), checked for shape. */
int api_req_names_values(struct call *c, json_t *req, json_t **names, json_t **values);

struct read_exprs {
    struct expr *filter, *proj;
};
/* Parses ProjectionExpression (and FilterExpression when filter != 0);
 * extra joins the unused-names check. */
int api_parse_read_exprs(struct call *c, json_t *req, int filter, struct expr *extra,
                         struct read_exprs *out);
/* Idempotent. */
void api_read_exprs_clear(struct read_exprs *r);

/* The partition of a key's hash attribute: the router's resolution when it
 * made one for this table, else computed. */
static inline struct partition *api_partition_of(struct call *c, struct table *t,
                                                 const json_t *hash)
{
    if (c->rc && c->rc->t == t && c->rc->p)
        return c->rc->p;
    return table_partition_for(t, hash);
}

/* ---- handlers: rows of the operation table (router.c) ---- */
void ops_create_table(struct call *c, json_t *req);
void ops_delete_table(struct call *c, json_t *req);
void ops_describe_table(struct call *c, json_t *req);
void ops_list_tables(struct call *c, json_t *req);
void ops_describe_endpoints(struct call *c, json_t *req);
void ops_describe_limits(struct call *c, json_t *req);
/* ops_backup.c: point-in-time recovery (docs/archive.md). */
void ops_describe_backups(struct call *c, json_t *req);
void ops_update_backups(struct call *c, json_t *req);
void ops_restore_pitr(struct call *c, json_t *req);
/* A restore this node ran into `table`: 1 with its RestoreSummary (new
 * reference) and whether it is still writing; 0 when none. */
int ops_restore_summary(const char *table, json_t **summary, int *in_progress);
void ops_put_item(struct call *c, json_t *req);
void ops_get_item(struct call *c, json_t *req);
void ops_update_item(struct call *c, json_t *req);
void ops_delete_item(struct call *c, json_t *req);
void ops_batch_write(struct call *c, json_t *req);
void ops_batch_get(struct call *c, json_t *req);
void ops_query(struct call *c, json_t *req);
void ops_scan(struct call *c, json_t *req);
void admin_status(struct call *c, json_t *req);
void admin_catalog(struct call *c, json_t *req);
/* admin_scrub.c: the partition of a request ({TableName, Partition}) with
 * a replica on this node; replies (ValidationException naming the nodes
 * that have one, or the table's range) and returns NULL otherwise. *t
 * holds a reference the caller puts. */
struct partition *admin_scrub_partition(struct call *c, json_t *req, struct table **t);
void admin_scrub_mark(struct call *c, json_t *req); /* admin_scrub.c */
void admin_scrub_digest(struct call *c, json_t *req);
void admin_scrub_keys(struct call *c, json_t *req);
void admin_scrub_item(struct call *c, json_t *req);
void admin_scrub_repair(struct call *c, json_t *req);
void admin_scrub_deep(struct call *c, json_t *req); /* deepscrub.c */
void admin_scrub_deep_status(struct call *c, json_t *req);
void admin_scrub_deep_cancel(struct call *c, json_t *req);
void admin_replace_replica(struct call *c, json_t *req); /* admin_member.c */

/* ---- router.c, for handlers ---- */
/* Routes rc again after ROUTE_RETRY_MS (a write the group refused with
 * NERR_BUSY: it was never appended, or was overwritten, so it is safe to
 * propose again). 1: the router owns rc again; 0: the deadline or the
 * attempt bound is reached (or there is no timer): the caller answers and
 * calls router_finish. */
int router_retry(struct rcall *rc);
/* Frees a request the handler took, after it answered. NULL is fine. */
void router_finish(struct rcall *rc);
/* Routes a request (api_call_hops, the retry timer, sub-requests). */
void router_route(struct rcall *rc);
void router_rcall_free(struct rcall *rc);

#endif
