/*
 * router.c — the operation table, the routing decision (router.h's table),
 * forwarding, waiting and retrying, and requests split over partitions.
 */
#include "store/router.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "store/api_internal.h"
#include "proto/av.h"
#include "proto/clusterfile.h"
#include "store/forward.h"

static void split_scan(struct rcall *rc);
static void split_batch(struct rcall *rc);

/* The operation table. A row's split runs when a MULTI request touches a
 * partition this node cannot serve. */
struct op_row {
    struct api_opdef def;
    void (*split)(struct rcall *rc);
};

#define R_ API_OP_READ
#define W_ API_OP_WRITE
static const struct op_row op_table[] = {
    {{"PutItem", ops_put_item, W_ | API_OP_POINT | API_OP_TABLE, "Item", NULL}, NULL},
    {{"GetItem", ops_get_item, R_ | API_OP_POINT | API_OP_CONSISTENT | API_OP_TABLE, "Key", NULL},
     NULL},
    {{"DeleteItem", ops_delete_item, W_ | API_OP_POINT | API_OP_TABLE, "Key", NULL}, NULL},
    {{"UpdateItem", ops_update_item, W_ | API_OP_POINT | API_OP_TABLE, "Key", NULL}, NULL},
    {{"Query", ops_query, R_ | API_OP_RANGE | API_OP_CONSISTENT | API_OP_TABLE, NULL, NULL}, NULL},
    /* A Scan with NinesPartition reads one partition (RANGE); without, every
     * partition of the table (MULTI). */
    {{"Scan", ops_scan, R_ | API_OP_RANGE | API_OP_MULTI | API_OP_CONSISTENT | API_OP_TABLE, NULL,
      NULL},
     split_scan},
    {{"BatchWriteItem", ops_batch_write, W_ | API_OP_MULTI, NULL, NULL}, split_batch},
    {{"BatchGetItem", ops_batch_get, R_ | API_OP_MULTI | API_OP_CONSISTENT, NULL, NULL},
     split_batch},
    {{"CreateTable", ops_create_table, W_ | API_OP_META, NULL, NULL}, NULL},
    {{"DescribeTable", ops_describe_table, R_ | API_OP_TABLE, NULL, NULL}, NULL},
    {{"ListTables", ops_list_tables, R_, NULL, NULL}, NULL},
    {{"DeleteTable", ops_delete_table, W_ | API_OP_META | API_OP_TABLE, NULL, NULL}, NULL},
    {{"DescribeEndpoints", ops_describe_endpoints, R_, NULL, NULL}, NULL},
    {{"DescribeLimits", ops_describe_limits, R_, NULL, NULL}, NULL},
    {{"DescribeContinuousBackups", ops_describe_backups, R_ | API_OP_TABLE, NULL, NULL}, NULL},
    {{"UpdateContinuousBackups", ops_update_backups, R_ | API_OP_TABLE, NULL, NULL}, NULL},
    /* Runs where the client sent it: that node writes the items and
     * reports the restore's progress (ops_backup.c). */
    {{"RestoreTableToPointInTime", ops_restore_pitr, W_, NULL, NULL}, NULL},
    {{"Status", admin_status, R_ | API_OP_ADMIN, NULL, NULL}, NULL},
    {{"Catalog", admin_catalog, R_ | API_OP_ADMIN, NULL, NULL}, NULL},
    {{"ScrubMark", admin_scrub_mark, W_ | API_OP_ADMIN, NULL, NULL}, NULL},
    {{"ScrubDigest", admin_scrub_digest, R_ | API_OP_ADMIN, NULL, NULL}, NULL},
    {{"ScrubKeys", admin_scrub_keys, R_ | API_OP_ADMIN, NULL, NULL}, NULL},
    {{"ScrubItem", admin_scrub_item, R_ | API_OP_ADMIN, NULL, NULL}, NULL},
    {{"ScrubRepair", admin_scrub_repair, W_ | API_OP_ADMIN, NULL, NULL}, NULL},
    {{"ScrubDeep", admin_scrub_deep, R_ | API_OP_ADMIN, NULL, NULL}, NULL},
    {{"ScrubDeepStatus", admin_scrub_deep_status, R_ | API_OP_ADMIN, NULL, NULL}, NULL},
    {{"ScrubDeepCancel", admin_scrub_deep_cancel, R_ | API_OP_ADMIN, NULL, NULL}, NULL},
    {{"ReplaceReplica", admin_replace_replica, W_ | API_OP_ADMIN, NULL, NULL}, NULL},
};
#undef R_
#undef W_

static const struct op_row *row_of(const struct api_opdef *d)
{
    return (const struct op_row *)d; /* def is the row's first member */
}

const struct api_opdef *router_op(const char *name, int admin)
{
    for (size_t i = 0; i < sizeof op_table / sizeof op_table[0]; i++)
        if (!strcmp(op_table[i].def.name, name) &&
            !!(op_table[i].def.flags & API_OP_ADMIN) == !!admin)
            return &op_table[i].def;
    return NULL;
}

void router_rcall_free(struct rcall *rc)
{
    if (!rc)
        return;
    table_put(rc->t);
    json_decref(rc->req);
    free(rc->held_body);
    free(rc->body);
    free(rc);
}

void router_finish(struct rcall *rc)
{
    router_rcall_free(rc);
}

static const char *node_api(struct api *a, const char *id)
{
    const struct cluster_conf *conf = a->opt.conf;
    for (size_t i = 0; conf && i < conf->nnodes; i++)
        if (!strcmp(conf->nodes[i].id, id))
            return conf->nodes[i].api;
    return NULL;
}

/* ---- resolution: once per request ---- */

/* The hash attribute of a Query's key condition (new reference), or NULL
 * when it cannot be told (the handler then answers the validation error). */
static json_t *query_hash(struct table *t, json_t *req)
{
    const char *kce = json_string_value(json_object_get(req, "KeyConditionExpression"));
    char htype[2] = {t->hash_type, 0}, rtype[2] = {t->range_type, 0};
    struct expr_key_schema schema = {t->hash_name, htype, t->range_name,
                                     t->range_name ? rtype : NULL};
    struct expr_key_cond kc = {0};
    struct expr *kexpr = NULL;
    struct nerr e = {0};
    if (!kce || expr_parse_key_condition(kce, json_object_get(req, "ExpressionAttributeNames"),
                                         json_object_get(req, "ExpressionAttributeValues"), &schema,
                                         &kexpr, &kc, &e))
        return NULL;
    json_t *h = json_incref((json_t *)kc.hash);
    expr_free(kexpr);
    return h;
}

/* The table TableName names (rc->t) and, for a request on one partition,
 * that partition (rc->p). A table not found is looked for again after a
 * catalog sync: it may have been created through another node a moment ago.
 * Run at every attempt until found; a found table is kept. */
static void resolve(struct rcall *rc)
{
    struct api *a = rc->a;
    unsigned fl = rc->op->flags;
    json_t *req = rc->req;
    if (!(fl & API_OP_TABLE) || rc->t)
        return;
    const char *name = json_string_value(json_object_get(req, "TableName"));
    if (!name)
        return;
    rc->t = catalog_get(a->opt.cat, name);
    if (!rc->t && (fl & (API_OP_POINT | API_OP_RANGE | API_OP_MULTI))) {
        catalog_sync_now(a->opt.cat);
        rc->t = catalog_get(a->opt.cat, name);
    }
    struct table *t = rc->t;
    if (!t)
        return;
    if (fl & API_OP_POINT) {
        json_t *hash = json_object_get(json_object_get(req, rc->op->key_member), t->hash_name);
        if (hash && av_type(hash) && t->hash_type == av_type(hash)[0])
            rc->p = table_partition_for(t, hash);
    } else if ((fl & API_OP_RANGE) && !(fl & API_OP_MULTI)) {
        json_t *hash = query_hash(t, req);
        if (hash && av_type(hash) && t->hash_type == av_type(hash)[0])
            rc->p = table_partition_for(t, hash);
        json_decref(hash);
    } else if (fl & API_OP_RANGE) {
        /* A sub-Scan of one partition (NinesPartition, split_scan). */
        json_t *np = json_object_get(req, "NinesPartition");
        if (json_is_integer(np) && json_integer_value(np) >= 0 &&
            json_integer_value(np) < t->nparts)
            rc->p = &t->parts[json_integer_value(np)];
    }
}

/* ---- the decision (router.h's table) ---- */

enum need { NEED_ANY, NEED_WRITE, NEED_CONSISTENT };

/* Another member to forward to, rotating: the router's counter picks the
 * start, each attempt moves one on. NULL when there is no other member. */
static const char *other_member(struct rcall *rc, int n, const char *const *members)
{
    const char *others[CATALOG_MAX_SLOTS];
    int k = 0;
    for (int i = 0; i < n && k < CATALOG_MAX_SLOTS; i++)
        if (!rc->a->opt.self_id || strcmp(members[i], rc->a->opt.self_id))
            others[k++] = members[i];
    return k ? others[(rc->first + (unsigned)rc->attempt) % (unsigned)k] : NULL;
}

/* Where an attempt on one replication group (local member g, or NULL, and
 * its n members) goes. */
static enum route_kind route_replica(struct rcall *rc, struct group *g, int n,
                                     const char *const *members, enum need need, const char **to)
{
    struct group_status st;
    if (g)
        group_status(g, &st);
    if (g && !st.failed) {
        uint32_t self = group_members_of(g)->self;
        int leader_known = st.role == RAFT_LEADER || (st.leader && st.leader != self);
        switch (need) {
        case NEED_ANY:
            return ROUTE_READ_LOCAL;
        case NEED_WRITE:
            /* The group hands the entry to the leader (group_propose). */
            return leader_known ? ROUTE_PROPOSE : ROUTE_WAIT;
        case NEED_CONSISTENT:
            if (st.role == RAFT_LEADER)
                return group_read_index(g, 500) == 0 ? ROUTE_READ_LOCAL : ROUTE_WAIT;
            if (!leader_known)
                return ROUTE_WAIT;
            /* The slots may change (group_set_members) on another
             * thread: a copy that lives as long as rc. */
            if (group_member_node(g, st.leader, rc->leader_node, sizeof rc->leader_node))
                return ROUTE_WAIT;
            *to = rc->leader_node;
            return ROUTE_FORWARD;
        }
    }
    /* No replica here that can serve it: a node that hosts one. */
    *to = other_member(rc, n, members);
    return *to ? ROUTE_FORWARD : ROUTE_WAIT;
}

static enum route_kind route_partition(struct rcall *rc, struct partition *p, enum need need,
                                       const char **to)
{
    const char *members[CATALOG_MAX_SLOTS];
    const struct pmembers *m = partition_members(p);
    for (int k = 0; k < m->nmembers; k++)
        members[k] = m->members[k];
    struct group *g = p->g;
    /* While a replacement is in progress (catalog.h) neither the member
     * being added (still catching up) nor the one leaving (which stops
     * hearing the group once the change commits, so a write it forwarded
     * would never learn its outcome) serves requests: they go to the
     * members that stay. */
    if (g && m->chg_add && rc->a->opt.self_id &&
        (!strcmp(m->slots[m->chg_add - 1], rc->a->opt.self_id) ||
         !strcmp(m->slots[m->chg_remove - 1], rc->a->opt.self_id)))
        g = NULL;
    return route_replica(rc, g, m->nmembers, members, need, to);
}

/* A MULTI request is served here when every partition it touches is. */
static enum route_kind route_multi(struct rcall *rc, enum need need)
{
    struct api *a = rc->a;
    json_t *req = rc->req;
    json_t *tables = NULL;
    if (rc->op->flags & API_OP_TABLE) {
        /* Scan: its one table, resolved already. */
        if (!rc->t)
            return ROUTE_LOCAL; /* the handler answers (no such table, ...) */
        for (int p = 0; p < rc->t->nparts; p++) {
            const char *dummy = NULL;
            enum route_kind pk = route_partition(rc, &rc->t->parts[p], need, &dummy);
            if (pk != ROUTE_READ_LOCAL)
                return ROUTE_SPLIT;
        }
        return ROUTE_LOCAL;
    }
    tables = json_object_get(req, "RequestItems");
    if (!json_is_object(tables))
        return ROUTE_LOCAL;
    if (need == NEED_ANY) {
        const char *k;
        json_t *v;
        json_object_foreach(tables, k, v) if (json_is_true(json_object_get(v, "ConsistentRead")))
            need = NEED_CONSISTENT;
    }
    enum route_kind want = need == NEED_WRITE ? ROUTE_PROPOSE : ROUTE_READ_LOCAL;
    enum route_kind res = ROUTE_LOCAL;
    const char *k;
    json_t *v;
    json_object_foreach(tables, k, v)
    {
        struct table *t = catalog_get(a->opt.cat, k);
        if (!t) {
            catalog_sync_now(a->opt.cat);
            t = catalog_get(a->opt.cat, k);
        }
        for (int p = 0; t && p < t->nparts && res == ROUTE_LOCAL; p++) {
            const char *dummy = NULL;
            if (route_partition(rc, &t->parts[p], need, &dummy) != want)
                res = ROUTE_SPLIT;
        }
        table_put(t);
    }
    return res;
}

/* Decides one attempt. LOCAL also when the request is malformed: the
 * handler then answers the validation error. */
static enum route_kind route_decide(struct rcall *rc, const char **to)
{
    struct api *a = rc->a;
    unsigned fl = rc->op->flags;
    if (fl & API_OP_META) {
        const char *nodes[CATALOG_MAX_REPLICAS];
        int n = catalog_meta_nodes(a->opt.cat, nodes);
        return route_replica(rc, catalog_meta(a->opt.cat), n, nodes, NEED_WRITE, to);
    }
    if (!(fl & (API_OP_POINT | API_OP_RANGE | API_OP_MULTI)))
        return ROUTE_LOCAL;
    enum need need =
        (fl & API_OP_WRITE) ? NEED_WRITE
        : ((fl & API_OP_CONSISTENT) && json_is_true(json_object_get(rc->req, "ConsistentRead")))
            ? NEED_CONSISTENT
            : NEED_ANY;
    if (rc->p)
        return route_partition(rc, rc->p, need, to);
    if ((fl & API_OP_MULTI) && !json_object_get(rc->req, "NinesPartition"))
        return route_multi(rc, need);
    return ROUTE_LOCAL;
}

/* ---- attempts, waits and retries ---- */

static void route_timer(void *arg)
{
    struct rcall *rc = arg;
    rc->retrying = 0;
    router_route(rc);
}

/* Schedules another attempt. 0 when the deadline or the attempt bound is
 * reached, or there is no timer (the caller answers). */
int router_retry(struct rcall *rc)
{
    if (rc->retrying)
        return 1;
    if (clock_mono_ms() + ROUTE_RETRY_MS >= rc->deadline || !rc->a->opt.fwd ||
        rc->attempt + 1 >= ROUTE_MAX_ATTEMPTS)
        return 0;
    rc->attempt++;
    rc->retrying = 1;
    if (fwd_after(rc->a->opt.fwd, ROUTE_RETRY_MS, route_timer, rc)) {
        rc->retrying = 0;
        return 0;
    }
    return 1;
}

static void route_unavailable(struct rcall *rc, const char *why)
{
    struct call c = {rc->a, rc->reply, rc->arg, NULL, 0};
    api_reply_err(&c, "ServiceUnavailable", "%s", why);
    router_rcall_free(rc);
}

/* A forwarded CreateTable/DeleteTable succeeded: its answer waits until this
 * node's catalog shows the change (polled, bounded). */
static void table_wait(void *arg)
{
    struct rcall *rc = arg;
    const char *name = json_string_value(json_object_get(rc->req, "TableName"));
    catalog_sync_now(rc->a->opt.cat);
    struct table *t = name ? catalog_get(rc->a->opt.cat, name) : NULL;
    int want = rc->op->handler == ops_create_table; /* else DeleteTable: until gone */
    int done = !name || (want == (t != NULL));
    table_put(t);
    if (!done && ++rc->polls < 100 && fwd_after(rc->a->opt.fwd, 10, table_wait, rc) == 0)
        return;
    rc->reply(rc->arg, (int)rc->held_status, rc->held_body);
    rc->held_body = NULL;
    router_rcall_free(rc);
}

static void on_forwarded(void *arg, long status, char *body)
{
    struct rcall *rc = arg;
    int write = (rc->op->flags & API_OP_WRITE) != 0;
    /* 503, or a refused connection: the receiver did not execute it. No
     * answer at all: a read may be tried again; a write may have happened,
     * so the client decides. */
    if (status == 503 || status == -1 || (status == 0 && !write)) {
        free(body);
        if (router_retry(rc))
            return;
        route_unavailable(rc, "no replica could serve the request in time (leader election "
                              "in progress or replicas down); retry");
        return;
    }
    if (status == 0) {
        route_unavailable(rc, "the node the request was forwarded to did not answer");
        return;
    }
    if (status == 200 && (rc->op->flags & API_OP_META)) {
        /* Usable here as soon as the client hears: hold the answer until
         * this node's catalog shows the change. */
        rc->held_status = status;
        rc->held_body = body;
        table_wait(rc);
        return;
    }
    if (status >= 500)
        atomic_fetch_add(&rc->a->server_errors, 1);
    else if (status >= 400)
        atomic_fetch_add(&rc->a->client_errors, 1);
    rc->reply(rc->arg, (int)status, body);
    router_rcall_free(rc);
}

/* Runs the request here: the row's handler, with the router's resolution. */
static void dispatch(struct rcall *rc)
{
    struct call c = {rc->a, rc->reply, rc->arg, rc, 0};
    if (!rc->req) {
        c.rc = NULL;
        api_reply_err(&c, "SerializationException",
                      "Start of structure or map found where not expected (%s at line %d, "
                      "column %d)",
                      rc->je.text, rc->je.line, rc->je.column);
        router_rcall_free(rc);
        return;
    }
    if (!json_is_object(rc->req)) {
        c.rc = NULL;
        api_reply_err(&c, "SerializationException",
                      "Start of structure or map found where not expected");
        router_rcall_free(rc);
        return;
    }
    rc->op->handler(&c, rc->req);
    if (!c.taken)
        router_rcall_free(rc); /* else the handler (or its retry) owns it */
}

void router_route(struct rcall *rc)
{
    if (!rc->op) {
        struct call c = {rc->a, rc->reply, rc->arg, NULL, 0};
        api_reply_err(&c, "UnknownOperationException", "%s", "");
        router_rcall_free(rc);
        return;
    }
    if (!rc->req || !json_is_object(rc->req)) {
        dispatch(rc); /* answers the SerializationException */
        return;
    }
    if (rc->attempt == 0)
        rc->first = atomic_fetch_add(&rc->a->rotate, 1);
    resolve(rc);
    const char *to = NULL;
    enum route_kind k = route_decide(rc, &to);
    switch (k) {
    case ROUTE_LOCAL:
    case ROUTE_PROPOSE:
    case ROUTE_READ_LOCAL:
        dispatch(rc);
        return;
    case ROUTE_SPLIT:
        row_of(rc->op)->split(rc);
        return;
    case ROUTE_FORWARD:
        if (to && rc->hops < FWD_MAX_HOPS && rc->a->opt.fwd && node_api(rc->a, to) &&
            strcmp(to, rc->a->opt.self_id)) {
            if (fwd_send(rc->a->opt.fwd, node_api(rc->a, to), rc->opname, rc->body, rc->len,
                         rc->hops + 1, 5000, on_forwarded, rc) == 0)
                return;
            if (!router_retry(rc))
                route_unavailable(rc, "cannot forward the request");
            return;
        }
        break;
    case ROUTE_WAIT:
        break;
    }
    /* A forwarded request that cannot be served here goes back at once:
     * the router that sent it knows where else to try. */
    if (rc->hops > 0 || !router_retry(rc))
        route_unavailable(rc, "no leader for this partition is known here; retry");
}

/* ---- requests split over several partitions' nodes ----
 *
 * Scan pages through the partitions in order, one sub-Scan (with
 * NinesPartition) per partition, each routed like a point read, until the
 * page is full (Limit or a sub-Scan's own LastEvaluatedKey) or the table
 * ends. BatchGetItem and BatchWriteItem become one GetItem / PutItem /
 * DeleteItem per key, routed independently; an item that fails with a
 * retryable error is handed back in Unprocessed*, as DynamoDB does; a
 * client error (400) fails the batch with that error (items already written
 * stay written: a difference from DynamoDB, which validates first). */

static void sub_call(struct api *a, const char *op, json_t *req, api_reply_fn reply, void *arg)
{
    char *body = json_dumps(req, JSON_COMPACT);
    if (!body) {
        reply(arg, 500, api_error_body(API_TYPE_DDB "InternalServerError", "out of memory"));
        return;
    }
    struct rcall *rc = calloc(1, sizeof *rc);
    if (!rc) {
        free(body);
        reply(arg, 500, api_error_body(API_TYPE_DDB "InternalServerError", "out of memory"));
        return;
    }
    snprintf(rc->opname, sizeof rc->opname, "%s", op);
    rc->op = router_op(op, 0);
    rc->body = body;
    rc->len = strlen(body);
    /* Its own parse: a sub-request shares no JSON value with the others,
     * which complete on other threads. */
    rc->req = json_loadb(rc->body, rc->len, JSON_ALLOW_NUL, &rc->je);
    rc->a = a;
    rc->reply = reply;
    rc->arg = arg;
    rc->deadline = clock_mono_ms() + ROUTE_DEADLINE_MS;
    router_route(rc);
}

struct scan_split {
    struct rcall *rc;
    json_t *req;                      /* the client's request */
    json_t *items;                    /* collected */
    json_int_t count, scanned, limit; /* limit 0 = none */
    int part, nparts;
};

static void scan_next(struct scan_split *sp, int first);

static void scan_finish(struct scan_split *sp, int status, char *body)
{
    struct rcall *rc = sp->rc;
    if (!body) {
        json_t *out = json_pack("{s:I, s:I}", "Count", sp->count, "ScannedCount", sp->scanned);
        json_object_set(out, "Items", sp->items);
        body = json_dumps(out, JSON_COMPACT);
        json_decref(out);
        status = 200;
    }
    rc->reply(rc->arg, status, body);
    json_decref(sp->items);
    json_decref(sp->req);
    free(sp);
    router_rcall_free(rc);
}

static void scan_done(void *arg, int status, char *body)
{
    struct scan_split *sp = arg;
    if (status != 200) {
        scan_finish(sp, status, body);
        return;
    }
    json_t *r = json_loads(body, 0, NULL);
    free(body);
    if (!r) {
        scan_finish(sp, 500,
                    api_error_body(API_TYPE_DDB "InternalServerError",
                                   "a partition's Scan answer is not JSON"));
        return;
    }
    json_t *items = json_object_get(r, "Items");
    if (json_is_array(items))
        json_array_extend(sp->items, items);
    sp->count += json_integer_value(json_object_get(r, "Count"));
    sp->scanned += json_integer_value(json_object_get(r, "ScannedCount"));
    json_t *lek = json_object_get(r, "LastEvaluatedKey");
    if (lek || (sp->limit && sp->scanned >= sp->limit) || sp->part + 1 >= sp->nparts) {
        json_t *out = json_pack("{s:I, s:I}", "Count", sp->count, "ScannedCount", sp->scanned);
        const char *sel = json_string_value(json_object_get(sp->req, "Select"));
        if (json_object_get(r, "Items") || !sel || strcmp(sel, "COUNT"))
            json_object_set(out, "Items", sp->items);
        if (lek)
            json_object_set(out, "LastEvaluatedKey", lek);
        json_decref(r);
        char *b = json_dumps(out, JSON_COMPACT);
        json_decref(out);
        scan_finish(sp, 200, b);
        return;
    }
    json_decref(r);
    sp->part++;
    scan_next(sp, 0);
}

static void scan_next(struct scan_split *sp, int first)
{
    json_t *sub = json_deep_copy(sp->req);
    if (!first)
        json_object_del(sub, "ExclusiveStartKey");
    json_object_set_new(sub, "NinesPartition", json_integer(sp->part));
    if (sp->limit)
        json_object_set_new(sub, "Limit", json_integer(sp->limit - sp->scanned));
    sub_call(sp->rc->a, "Scan", sub, (api_reply_fn)scan_done, sp);
    json_decref(sub);
}

struct fan {
    struct rcall *rc;
    pthread_mutex_t mu;
    int pending;
    int write;
    json_t *req;       /* the client's request */
    json_t *responses; /* BatchGetItem: table -> [items] */
    json_t *unproc;    /* table -> [request entries] (write) or {Keys:[...]} (get) */
    int err_status;
    char *err_body;
};

struct fan_item {
    struct fan *f;
    char table[256];
    json_t *entry; /* write: {"PutRequest":...}; get: the key */
};

static void fan_finish(struct fan *f)
{
    struct rcall *rc = f->rc;
    if (f->err_body) {
        rc->reply(rc->arg, f->err_status, f->err_body);
    } else {
        json_t *out = f->write ? json_pack("{s:O}", "UnprocessedItems", f->unproc)
                               : json_pack("{s:O, s:O}", "Responses", f->responses,
                                           "UnprocessedKeys", f->unproc);
        char *b = json_dumps(out, JSON_COMPACT);
        json_decref(out);
        rc->reply(rc->arg, 200, b);
    }
    json_decref(f->req);
    json_decref(f->responses);
    json_decref(f->unproc);
    pthread_mutex_destroy(&f->mu);
    free(f);
    router_rcall_free(rc);
}

static void fan_done(void *arg, int status, char *body)
{
    struct fan_item *it = arg;
    struct fan *f = it->f;
    json_t *r = status == 200 && body ? json_loads(body, 0, NULL) : NULL;
    pthread_mutex_lock(&f->mu);
    if (status == 200 && !f->write) {
        json_t *item = json_object_get(r, "Item");
        if (item) {
            json_t *list = json_object_get(f->responses, it->table);
            if (!list)
                json_object_set_new(f->responses, it->table, list = json_array());
            json_array_append(list, item);
        }
    } else if (status >= 400 && status < 500) {
        if (!f->err_body) {
            f->err_status = status;
            f->err_body = body;
            body = NULL;
        }
    } else if (status != 200) {
        json_t *t = json_object_get(f->unproc, it->table);
        if (!t) {
            t = f->write ? json_array()
                         : json_deep_copy(
                               json_object_get(json_object_get(f->req, "RequestItems"), it->table));
            if (!f->write)
                json_object_set_new(t, "Keys", json_array());
            json_object_set_new(f->unproc, it->table, t);
        }
        json_array_append(f->write ? t : json_object_get(t, "Keys"), it->entry);
    }
    int last = --f->pending == 0;
    pthread_mutex_unlock(&f->mu);
    json_decref(r);
    free(body);
    json_decref(it->entry);
    free(it);
    if (last)
        fan_finish(f);
}

/* A Scan of a table not every partition of which is served here. */
static void split_scan(struct rcall *rc)
{
    json_t *req = rc->req;
    struct table *t = rc->t;
    json_t *esk = json_object_get(req, "ExclusiveStartKey");
    struct scan_split *sp = t ? calloc(1, sizeof *sp) : NULL;
    if (!sp) {
        dispatch(rc); /* the handler answers (no such table, ...) */
        return;
    }
    sp->rc = rc;
    sp->req = json_incref(req);
    sp->items = json_array();
    sp->nparts = t->nparts;
    json_t *lim = json_object_get(req, "Limit");
    sp->limit = json_is_integer(lim) && json_integer_value(lim) > 0 ? json_integer_value(lim) : 0;
    if (json_is_object(esk) && json_object_get(esk, t->hash_name))
        sp->part = table_partition_for(t, json_object_get(esk, t->hash_name))->index;
    scan_next(sp, 1);
}

/* BatchGetItem / BatchWriteItem: one routed sub-request per item. */
static void split_batch(struct rcall *rc)
{
    struct api *a = rc->a;
    json_t *req = rc->req;
    int write = (rc->op->flags & API_OP_WRITE) != 0;
    json_t *ri = json_object_get(req, "RequestItems");
    size_t n = 0;
    const char *tn;
    json_t *spec;
    json_object_foreach(ri, tn, spec) n +=
        json_array_size(write ? spec : json_object_get(spec, "Keys"));
    if (!json_is_object(ri) || n == 0 ||
        n > (write ? (size_t)BATCH_WRITE_MAX : (size_t)BATCH_GET_MAX)) {
        dispatch(rc); /* the handler's validation answers */
        return;
    }
    struct fan *f = calloc(1, sizeof *f);
    if (!f) {
        route_unavailable(rc, "out of memory");
        return;
    }
    f->rc = rc;
    f->write = write;
    f->req = json_incref(req);
    f->responses = json_object();
    f->unproc = json_object();
    f->pending = (int)n + 1; /* +1 until every sub-call is sent */
    pthread_mutex_init(&f->mu, NULL);
    json_object_foreach(ri, tn, spec)
    {
        size_t i;
        json_t *e;
        json_array_foreach(write ? spec : json_object_get(spec, "Keys"), i, e)
        {
            struct fan_item *it = calloc(1, sizeof *it);
            json_t *sub = NULL;
            const char *op = NULL;
            if (write && json_object_get(e, "PutRequest")) {
                op = "PutItem";
                sub = json_pack("{s:s, s:O}", "TableName", tn, "Item",
                                json_object_get(json_object_get(e, "PutRequest"), "Item"));
            } else if (write && json_object_get(e, "DeleteRequest")) {
                op = "DeleteItem";
                sub = json_pack("{s:s, s:O}", "TableName", tn, "Key",
                                json_object_get(json_object_get(e, "DeleteRequest"), "Key"));
            } else if (!write) {
                op = "GetItem";
                sub = json_deep_copy(spec);
                json_object_del(sub, "Keys");
                json_object_set_new(sub, "TableName", json_string(tn));
                json_object_set(sub, "Key", e);
            }
            if (!it || !sub || strlen(tn) >= sizeof it->table) {
                free(it);
                json_decref(sub);
                /* Malformed: the handler's validation answers (nothing was
                 * written, as no sub-call went out before a bad entry...
                 * unless earlier ones did: they stand). */
                pthread_mutex_lock(&f->mu);
                f->pending--;
                if (!f->err_body) {
                    f->err_status = 400;
                    f->err_body = api_error_body(API_TYPE_DDB "ValidationException",
                                                 "a request entry is neither a PutRequest nor "
                                                 "a DeleteRequest");
                }
                pthread_mutex_unlock(&f->mu);
                continue;
            }
            it->f = f;
            snprintf(it->table, sizeof it->table, "%s", tn);
            it->entry = json_incref(e);
            sub_call(a, op, sub, fan_done, it);
            json_decref(sub);
        }
    }
    pthread_mutex_lock(&f->mu);
    int last = --f->pending == 0;
    pthread_mutex_unlock(&f->mu);
    if (last)
        fan_finish(f);
}
