#include "store/api.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/strbuf.h"
#include "store/api_internal.h"
#include "store/archiver.h"
#include "store/deepscrub.h"
#include "proto/av.h"
#include "store/op.h"

int api_new(const struct api_options *opt, struct api **out, struct nerr *err)
{
    struct api *a = calloc(1, sizeof *a);
    if (!a || !(a->metrics = metrics_new())) {
        free(a);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    a->opt = *opt;
    a->st = catalog_state(opt->cat);
    if (deepscrub_new(a->st, &a->deep, err)) {
        metrics_free(a->metrics);
        free(a);
        return err->code;
    }
    *out = a;
    return 0;
}

void api_free(struct api *a)
{
    if (!a)
        return;
    deepscrub_free(a->deep); /* joins its thread: before the catalog closes */
    metrics_free(a->metrics);
    free(a);
}

/* The request counters, then the node's counters of bad input that was
 * contained rather than fatal (docs/security.md): committed entries applied
 * as no-ops because no replica could decode them, and forwarded proposals
 * refused before they could enter a log. */
char *api_metrics_text(struct api *a)
{
    char *text = metrics_text(a->metrics);
    if (!text || !a->opt.host)
        return text;
    struct group_host_stats hs = {0};
    group_host_stats(a->opt.host, &hs);
    char *out = NULL;
    if (asprintf(&out,
                 "%s# HELP nines_poisoned_entries_total Committed log entries that could not be "
                 "decoded and were applied as no-ops.\n# TYPE nines_poisoned_entries_total "
                 "counter\nnines_poisoned_entries_total %llu\n# HELP "
                 "nines_refused_proposals_total Proposals forwarded by other nodes that were "
                 "refused before entering the log.\n# TYPE nines_refused_proposals_total "
                 "counter\nnines_refused_proposals_total %llu\n",
                 text, (unsigned long long)hs.poisoned_entries,
                 (unsigned long long)hs.refused_proposals) < 0)
        out = NULL;
    free(text);
    struct archiver *ar = catalog_archiver(a->opt.cat);
    if (out && ar) {
        struct strbuf b = {0};
        char *more = NULL;
        strbuf_str(&b, out);
        archiver_metrics(ar, &b);
        if (!strbuf_finish(&b, &more)) {
            free(out);
            out = more;
        }
    }
    return out;
}

void api_get_stats(struct api *a, struct api_stats *out)
{
    out->requests = atomic_load(&a->requests);
    out->client_errors = atomic_load(&a->client_errors);
    out->server_errors = atomic_load(&a->server_errors);
}

/* Messages quote pieces of the request (an expression token, a name), and a
 * quote cut at a byte limit can split a UTF-8 sequence; JSON needs valid
 * UTF-8, so every invalid byte becomes '?'. */
static void utf8_sanitize(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : (*p >> 3) == 30 ? 4 : 0;
        int ok = n > 0;
        for (int i = 1; ok && i < n; i++)
            ok = (p[i] & 0xC0) == 0x80;
        if (ok && n == 2)
            ok = *p >= 0xC2; /* overlong */
        else if (ok && n == 3)
            ok = !(p[0] == 0xE0 && p[1] < 0xA0) && !(p[0] == 0xED && p[1] >= 0xA0);
        else if (ok && n == 4)
            ok = !(p[0] == 0xF0 && p[1] < 0x90) && !(p[0] == 0xF4 && p[1] >= 0x90) && p[0] <= 0xF4;
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

char *api_error_body(const char *type, const char *msg)
{
    char clean[NERR_MSG_MAX * 2 + 1];
    snprintf(clean, sizeof clean, "%s", msg ? msg : "");
    utf8_sanitize(clean);
    json_t *o = json_pack("{s:s, s:s}", "__type", type, "message", clean);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* ---- replies ---- */

void api_reply_json(struct call *c, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s) {
        atomic_fetch_add(&c->a->server_errors, 1);
        c->reply(c->arg, 500, api_error_body(API_TYPE_DDB "InternalServerError", "out of memory"));
        return;
    }
    c->reply(c->arg, 200, s);
}

void api_reply_err(struct call *c, const char *type, const char *fmt, ...)
{
    char msg[1024], full[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int server = !strcmp(type, "InternalServerError") || !strcmp(type, "ServiceUnavailable");
    const char *prefix =
        (!strcmp(type, "SerializationException") || !strcmp(type, "UnknownOperationException"))
            ? API_TYPE_CORAL
            : API_TYPE_DDB;
    snprintf(full, sizeof full, "%s%s", prefix, type);
    atomic_fetch_add(server ? &c->a->server_errors : &c->a->client_errors, 1);
    c->reply(c->arg, server ? (strcmp(type, "ServiceUnavailable") ? 500 : 503) : 400,
             api_error_body(full, msg));
}

void api_reply_validation(struct call *c, const struct nerr *e)
{
    /* av.h: a value of the wrong wire shape ({"S":5}, bad base64) is what
     * DynamoDB calls a SerializationException. */
    if (e->code == NERR_PARSE) {
        api_reply_err(c, "SerializationException", "%s", e->msg);
        return;
    }
    if (e->code == NERR_NOMEM || e->code == NERR_IO || e->code == NERR_CORRUPT ||
        e->code == NERR_INTERNAL)
        api_reply_err(c, "InternalServerError", "%s", e->msg[0] ? e->msg : nerr_name(e->code));
    else
        api_reply_err(c, "ValidationException", "%s", e->msg[0] ? e->msg : "Invalid request");
}

void api_reply_no_table(struct call *c, const char *name)
{
    (void)name;
    api_reply_err(c, "ResourceNotFoundException", "Requested resource not found");
}

/* ---- request parsing helpers ---- */

/* A string member: absent -> NULL (ok); present but not a string -> error. */
int api_get_str(struct call *c, json_t *req, const char *key, const char **out)
{
    json_t *v = json_object_get(req, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        api_reply_err(c, "SerializationException", "NUMBER_VALUE cannot be converted to String");
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

int api_valid_table_name(const char *n)
{
    size_t len = strlen(n);
    if (len < 3 || len > 255)
        return 0;
    for (const char *p = n; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
            return 0;
    return 1;
}

void api_reply_bad_table_name(struct call *c, const char *name)
{
    api_reply_err(c, "ValidationException",
                  "1 validation error detected: Value '%s' at 'tableName' failed to satisfy "
                  "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and "
                  "have length between 3 and 255",
                  name);
}

/* Looks up TableName; replies with the right error when it cannot. The
 * router looked the request's table up already: that lookup is reused. */
struct table *api_req_table(struct call *c, json_t *req, const char *key)
{
    const char *name;
    if (api_get_str(c, req, key ? key : "TableName", &name))
        return NULL;
    if (!name) {
        api_reply_err(c, "ValidationException",
                      "1 validation error detected: Value null at 'tableName' failed to satisfy "
                      "constraint: Member must not be null");
        return NULL;
    }
    if (!api_valid_table_name(name)) {
        api_reply_bad_table_name(c, name);
        return NULL;
    }
    struct table *t = c->rc ? c->rc->t : NULL;
    if (t && !strcmp(t->name, name))
        atomic_fetch_add(&t->refs, 1);
    else
        t = catalog_get(c->a->opt.cat, name);
    if (!t)
        api_reply_no_table(c, name);
    return t;
}

/* Legacy parameters we do not implement are refused, never ignored. */
int api_refuse_legacy(struct call *c, json_t *req)
{
    static const char *legacy[] = {
        "Expected",      "ConditionalOperator", "AttributeUpdates", "AttributesToGet",
        "KeyConditions", "QueryFilter",         "ScanFilter",       "IndexName"};
    for (size_t i = 0; i < sizeof legacy / sizeof legacy[0]; i++)
        if (json_object_get(req, legacy[i])) {
            api_reply_err(c, "ValidationException", "%s is not supported by ninesd%s", legacy[i],
                          strcmp(legacy[i], "IndexName") ? "; use expressions instead" : "");
            return -1;
        }
    return 0;
}

/* names/values of the request (borrowed), checked for shape. */
int api_req_names_values(struct call *c, json_t *req, json_t **names, json_t **values)
{
    *names = json_object_get(req, "ExpressionAttributeNames");
    *values = json_object_get(req, "ExpressionAttributeValues");
    if (*names && !json_is_object(*names)) {
        api_reply_err(c, "SerializationException", "ExpressionAttributeNames must be a map");
        return -1;
    }
    if (*values && !json_is_object(*values)) {
        api_reply_err(c, "SerializationException", "ExpressionAttributeValues must be a map");
        return -1;
    }
    if (*names && json_object_size(*names) == 0) {
        api_reply_err(c, "ValidationException", "ExpressionAttributeNames must not be empty");
        return -1;
    }
    if (*values) {
        if (json_object_size(*values) == 0) {
            api_reply_err(c, "ValidationException", "ExpressionAttributeValues must not be empty");
            return -1;
        }
        const char *k;
        json_t *v;
        struct nerr e = {0};
        json_object_foreach(*values, k, v)
        {
            if (av_validate(v, &e)) {
                if (e.code == NERR_PARSE) {
                    api_reply_validation(c, &e);
                    return -1;
                }
                api_reply_err(c, "ValidationException",
                              "ExpressionAttributeValues contains invalid value: %s for key %s",
                              e.msg, k);
                return -1;
            }
        }
    }
    return 0;
}

/* ---- reads ---- */

/* Idempotent: a failed api_parse_read_exprs has cleared already, and the
 * caller's cleanup path clears again. */
void api_read_exprs_clear(struct read_exprs *r)
{
    expr_free(r->filter);
    expr_free(r->proj);
    r->filter = r->proj = NULL;
}

/* Parses ProjectionExpression (and FilterExpression when filter != 0). */
int api_parse_read_exprs(struct call *c, json_t *req, int filter, struct expr *extra,
                         struct read_exprs *out)
{
    struct nerr e = {0};
    json_t *names, *values;
    const char *proj, *flt = NULL;
    memset(out, 0, sizeof *out);
    if (api_req_names_values(c, req, &names, &values) ||
        api_get_str(c, req, "ProjectionExpression", &proj) ||
        (filter && api_get_str(c, req, "FilterExpression", &flt)))
        return -1;
    if ((proj && expr_parse_projection(proj, names, &out->proj, &e)) ||
        (flt && expr_parse_condition(flt, "FilterExpression", names, values, &out->filter, &e)))
        goto invalid;
    struct expr *exprs[3] = {out->proj, out->filter, extra};
    if (expr_check_unused(names, values, exprs, 3, &e))
        goto invalid;
    return 0;
invalid:
    api_read_exprs_clear(out);
    api_reply_validation(c, &e);
    return -1;
}

/* ---- entry ---- */

struct counted {
    struct api *a;
    char op[48];
    char table[256];
    api_reply_fn reply;
    void *arg;
};

static void counted_reply(void *arg, int status, char *body)
{
    struct counted *k = arg;
    metrics_count(k->a->metrics, k->table[0] ? k->table : "-", k->op, status);
    k->reply(k->arg, status, body);
    free(k);
}

void api_call_hops(struct api *a, const char *op, const char *body, size_t len, int hops,
                   api_reply_fn reply, void *arg)
{
    atomic_fetch_add(&a->requests, 1);
    struct rcall *rc = calloc(1, sizeof *rc);
    if (!rc || strlen(op) >= sizeof rc->opname || !(rc->body = malloc(len + 1))) {
        struct call c = {a, reply, arg, NULL, 0};
        int unknown = strlen(op) >= sizeof rc->opname;
        free(rc);
        api_reply_err(&c, unknown ? "UnknownOperationException" : "InternalServerError", "%s",
                      unknown ? "" : "out of memory");
        return;
    }
    memcpy(rc->body, body, len);
    rc->body[len] = 0;
    rc->len = len;
    strcpy(rc->opname, op);
    rc->op = router_op(op, 0);
    /* The one parse of the body: the router and the handler share it. */
    rc->req = json_loadb(rc->body, rc->len, JSON_ALLOW_NUL, &rc->je);
    rc->a = a;
    rc->hops = hops;
    rc->deadline = clock_mono_ms() + ROUTE_DEADLINE_MS;
    struct counted *k = hops == 0 ? calloc(1, sizeof *k) : NULL;
    if (k) {
        /* Metrics count requests answered to clients, by the table the
         * parsed request names. */
        const char *tn = json_string_value(json_object_get(rc->req, "TableName"));
        k->a = a;
        strcpy(k->op, op);
        if (tn && strlen(tn) < sizeof k->table)
            strcpy(k->table, tn);
        k->reply = reply;
        k->arg = arg;
        reply = counted_reply;
        arg = k;
    }
    rc->reply = reply;
    rc->arg = arg;
    router_route(rc);
}

void api_call(struct api *a, const char *op, const char *body, size_t len, api_reply_fn reply,
              void *arg)
{
    api_call_hops(a, op, body, len, 0, reply, arg);
}
