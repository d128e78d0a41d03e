#include "store/api.h"

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"
#include "proto/av.h"
#include "proto/clusterfile.h"
#include "lib/strbuf.h"
#include "store/forward.h"
#include "store/expr.h"
#include "store/items.h"
#include "store/nodelog.h"
#include "store/op.h"

#define PAGE_BYTES (1024 * 1024) /* DynamoDB's 1 MB page for Query and Scan */
#define BATCH_WRITE_MAX 25
#define BATCH_GET_MAX 100

/* Requests answered to clients (not forwarded hops), per table, operation
 * and outcome, for GET /metrics. */
struct counter {
    char table[256];
    char op[48];
    unsigned long long n[3]; /* ok, client_error, server_error */
    struct counter *next;
};
#define COUNTER_BUCKETS 256

struct api {
    struct api_options opt;
    struct state *st;
    _Atomic unsigned long long requests, client_errors, server_errors;
    pthread_mutex_t cmu;
    struct counter *counters[COUNTER_BUCKETS];
    size_t ncounters;
};

int api_new(const struct api_options *opt, struct api **out, struct nerr *err)
{
    struct api *a = calloc(1, sizeof *a);
    if (!a)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    a->opt = *opt;
    a->st = catalog_state(opt->cat);
    pthread_mutex_init(&a->cmu, NULL);
    *out = a;
    return 0;
}

void api_free(struct api *a)
{
    if (!a)
        return;
    for (int i = 0; i < COUNTER_BUCKETS; i++)
        for (struct counter *c = a->counters[i], *n; c; c = n) {
            n = c->next;
            free(c);
        }
    pthread_mutex_destroy(&a->cmu);
    free(a);
}

static void count_request(struct api *a, const char *table, const char *op, int status)
{
    int cls = status < 400 ? 0 : status < 500 ? 1 : 2;
    unsigned h = 5381;
    for (const char *p = table; *p; p++)
        h = h * 33 + (unsigned char)*p;
    for (const char *p = op; *p; p++)
        h = h * 33 + (unsigned char)*p;
    h %= COUNTER_BUCKETS;
    pthread_mutex_lock(&a->cmu);
    struct counter *c = a->counters[h];
    while (c && (strcmp(c->table, table) || strcmp(c->op, op)))
        c = c->next;
    /* Bounded: unknown table names from clients must not grow it forever. */
    if (!c && a->ncounters < 100000 && (c = calloc(1, sizeof *c))) {
        snprintf(c->table, sizeof c->table, "%s", table);
        snprintf(c->op, sizeof c->op, "%s", op);
        c->next = a->counters[h];
        a->counters[h] = c;
        a->ncounters++;
    }
    if (c)
        c->n[cls]++;
    pthread_mutex_unlock(&a->cmu);
}

static void metric_label(struct strbuf *b, const char *v)
{
    for (const char *p = v; *p; p++) {
        if (*p == '\\' || *p == '"')
            strbuf_ch(b, '\\');
        if (*p == '\n')
            strbuf_str(b, "\\n");
        else
            strbuf_ch(b, *p);
    }
}

char *api_metrics_text(struct api *a)
{
    static const char *names[3] = {"ok", "client_error", "server_error"};
    struct strbuf b = {0};
    char line[160];
    char *out = NULL;
    strbuf_str(&b, "# HELP nines_api_requests_total Requests answered to clients, by table, "
                   "operation and outcome.\n# TYPE nines_api_requests_total counter\n");
    pthread_mutex_lock(&a->cmu);
    for (int i = 0; i < COUNTER_BUCKETS; i++)
        for (struct counter *c = a->counters[i]; c; c = c->next)
            for (int k = 0; k < 3; k++) {
                if (!c->n[k])
                    continue;
                strbuf_str(&b, "nines_api_requests_total{table=\"");
                metric_label(&b, c->table);
                snprintf(line, sizeof line, "\",op=\"%s\",outcome=\"%s\"} %llu\n", c->op,
                         names[k], c->n[k]);
                strbuf_str(&b, line);
            }
    pthread_mutex_unlock(&a->cmu);
    strbuf_finish(&b, &out);
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

struct rcall;
struct call {
    struct api *a;
    api_reply_fn reply;
    void *arg;
    struct rcall *rc; /* the routed request, during its synchronous dispatch only */
};

static void reply_json(struct call *c, json_t *o)
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

static void reply_err(struct call *c, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reply_err(struct call *c, const char *type, const char *fmt, ...)
{
    char msg[1024], full[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int server = !strcmp(type, "InternalServerError") || !strcmp(type, "ServiceUnavailable");
    const char *prefix = (!strcmp(type, "SerializationException") ||
                          !strcmp(type, "UnknownOperationException"))
                             ? API_TYPE_CORAL
                             : API_TYPE_DDB;
    snprintf(full, sizeof full, "%s%s", prefix, type);
    atomic_fetch_add(server ? &c->a->server_errors : &c->a->client_errors, 1);
    c->reply(c->arg, server ? (strcmp(type, "ServiceUnavailable") ? 500 : 503) : 400,
             api_error_body(full, msg));
}

static void reply_validation(struct call *c, const struct nerr *e)
{
    /* av.h: a value of the wrong wire shape ({"S":5}, bad base64) is what
     * DynamoDB calls a SerializationException. */
    if (e->code == NERR_PARSE) {
        reply_err(c, "SerializationException", "%s", e->msg);
        return;
    }
    if (e->code == NERR_NOMEM || e->code == NERR_IO || e->code == NERR_CORRUPT ||
        e->code == NERR_INTERNAL)
        reply_err(c, "InternalServerError", "%s", e->msg[0] ? e->msg : nerr_name(e->code));
    else
        reply_err(c, "ValidationException", "%s", e->msg[0] ? e->msg : "Invalid request");
}

static void reply_no_table(struct call *c, const char *name)
{
    (void)name;
    reply_err(c, "ResourceNotFoundException", "Requested resource not found");
}

/* ---- request parsing helpers ---- */

/* A string member: absent -> NULL (ok); present but not a string -> error. */
static int get_str(struct call *c, json_t *req, const char *key, const char **out)
{
    json_t *v = json_object_get(req, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        reply_err(c, "SerializationException", "NUMBER_VALUE cannot be converted to String");
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

static int valid_table_name(const char *n)
{
    size_t len = strlen(n);
    if (len < 3 || len > 255)
        return 0;
    for (const char *p = n; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
            return 0;
    return 1;
}

static void reply_bad_table_name(struct call *c, const char *name)
{
    reply_err(c, "ValidationException",
              "1 validation error detected: Value '%s' at 'tableName' failed to satisfy "
              "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and "
              "have length between 3 and 255",
              name);
}

/* Looks up TableName; replies with the right error when it cannot. */
static struct table *req_table(struct call *c, json_t *req, const char *key)
{
    const char *name;
    if (get_str(c, req, key ? key : "TableName", &name))
        return NULL;
    if (!name) {
        reply_err(c, "ValidationException",
                  "1 validation error detected: Value null at 'tableName' failed to satisfy "
                  "constraint: Member must not be null");
        return NULL;
    }
    if (!valid_table_name(name)) {
        reply_bad_table_name(c, name);
        return NULL;
    }
    struct table *t = catalog_get(c->a->opt.cat, name);
    if (!t)
        reply_no_table(c, name);
    return t;
}

static int parse_rv(struct call *c, json_t *req, int allow_update, enum op_rv *rv)
{
    const char *s;
    *rv = RV_NONE;
    if (get_str(c, req, "ReturnValues", &s))
        return -1;
    if (!s || !strcmp(s, "NONE"))
        return 0;
    if (!strcmp(s, "ALL_OLD"))
        *rv = RV_ALL_OLD;
    else if (allow_update && !strcmp(s, "ALL_NEW"))
        *rv = RV_ALL_NEW;
    else if (allow_update && !strcmp(s, "UPDATED_OLD"))
        *rv = RV_UPDATED_OLD;
    else if (allow_update && !strcmp(s, "UPDATED_NEW"))
        *rv = RV_UPDATED_NEW;
    else {
        reply_err(c, "ValidationException", "ReturnValues can only be %s",
                  allow_update ? "NONE, ALL_OLD, UPDATED_OLD, ALL_NEW or UPDATED_NEW"
                               : "ALL_OLD or NONE");
        return -1;
    }
    return 0;
}

/* Legacy parameters we do not implement are refused, never ignored. */
static int refuse_legacy(struct call *c, json_t *req)
{
    static const char *legacy[] = {"Expected", "ConditionalOperator", "AttributeUpdates",
                                   "AttributesToGet", "KeyConditions", "QueryFilter",
                                   "ScanFilter", "IndexName"};
    for (size_t i = 0; i < sizeof legacy / sizeof legacy[0]; i++)
        if (json_object_get(req, legacy[i])) {
            reply_err(c, "ValidationException", "%s is not supported by ninesd%s", legacy[i],
                      strcmp(legacy[i], "IndexName") ? "; use expressions instead" : "");
            return -1;
        }
    return 0;
}

/* names/values of the request (borrowed), checked for shape. */
static int req_names_values(struct call *c, json_t *req, json_t **names, json_t **values)
{
    *names = json_object_get(req, "ExpressionAttributeNames");
    *values = json_object_get(req, "ExpressionAttributeValues");
    if (*names && !json_is_object(*names)) {
        reply_err(c, "SerializationException", "ExpressionAttributeNames must be a map");
        return -1;
    }
    if (*values && !json_is_object(*values)) {
        reply_err(c, "SerializationException", "ExpressionAttributeValues must be a map");
        return -1;
    }
    if (*names && json_object_size(*names) == 0) {
        reply_err(c, "ValidationException", "ExpressionAttributeNames must not be empty");
        return -1;
    }
    if (*values) {
        if (json_object_size(*values) == 0) {
            reply_err(c, "ValidationException", "ExpressionAttributeValues must not be empty");
            return -1;
        }
        const char *k;
        json_t *v;
        struct nerr e = {0};
        json_object_foreach(*values, k, v)
        {
            if (av_validate(v, &e)) {
                if (e.code == NERR_PARSE) {
                    reply_validation(c, &e);
                    return -1;
                }
                reply_err(c, "ValidationException",
                          "ExpressionAttributeValues contains invalid value: %s for key %s",
                          e.msg, k);
                return -1;
            }
        }
    }
    return 0;
}

/* ---- table description ---- */

static json_t *describe(struct api *a, json_t *desc, const char *status, struct table *t)
{
    json_t *d = json_deep_copy(desc);
    char arn[600];
    const char *name = json_string_value(json_object_get(desc, "TableName"));
    snprintf(arn, sizeof arn, "arn:aws:dynamodb:%s:000000000000:table/%s", a->opt.region, name);
    json_object_set_new(d, "TableArn", json_string(arn));
    json_object_set_new(d, "TableStatus", json_string(status));
    uint64_t items = 0, bytes = 0;
    if (t)
        table_stats(t, &items, &bytes);
    json_object_set_new(d, "ItemCount", json_integer((json_int_t)items));
    json_object_set_new(d, "TableSizeBytes", json_integer((json_int_t)bytes));
    json_t *pt = json_object_get(d, "ProvisionedThroughput");
    if (pt)
        json_object_set_new(pt, "NumberOfDecreasesToday", json_integer(0));
    const char *bm = json_string_value(json_object_get(d, "BillingMode"));
    if (bm) {
        json_object_set_new(d, "BillingModeSummary", json_pack("{s:s}", "BillingMode", bm));
        json_object_del(d, "BillingMode");
    }
    /* The partition count is ours; DynamoDB clients ignore unknown members. */
    json_object_set(d, "NinesPartitions", json_object_get(d, "Partitions"));
    json_object_del(d, "Partitions");
    return d;
}

/* ---- CreateTable / DeleteTable / DescribeTable / ListTables ---- */

static void table_done(void *arg, int status, void *result)
{
    struct call *c = arg;
    struct catalog_result *r = result;
    if (status || !r) {
        reply_err(c, "InternalServerError", "metadata write failed: %s", nerr_name(status));
    } else if (r->status == NERR_EXISTS) {
        reply_err(c, "ResourceInUseException", "Table already exists: %s",
                  json_string_value(json_object_get(r->desc, "TableName")));
    } else if (r->status == NERR_NOTFOUND) {
        reply_err(c, "ResourceNotFoundException", "Requested resource not found");
    } else if (r->status == NERR_LIMIT) {
        reply_err(c, "LimitExceededException",
                  "Too many partitions on this node (storage.max_tables in the cluster file "
                  "bounds them); delete tables or raise it and restart");
    } else if (r->status) {
        reply_err(c, "InternalServerError", "table could not be opened");
    } else {
        /* ACTIVE at once: the partitions exist when this reply is sent. A
         * deleted table's description says DELETING, as DynamoDB's does. */
        int deleted = json_object_get(r->desc, "_deleting") != NULL;
        json_object_del(r->desc, "_deleting");
        reply_json(c, json_pack("{s:o}", "TableDescription",
                                describe(c->a, r->desc, deleted ? "DELETING" : "ACTIVE", NULL)));
    }
    catalog_result_free(r);
    free(c);
}

static void op_create_table(struct call *c, json_t *req)
{
    const char *name, *billing;
    json_t *ks = json_object_get(req, "KeySchema"), *ad = json_object_get(req, "AttributeDefinitions");
    if (get_str(c, req, "TableName", &name) || get_str(c, req, "BillingMode", &billing))
        return;
    if (!name || !valid_table_name(name)) {
        reply_bad_table_name(c, name ? name : "null");
        return;
    }
    if (!json_is_array(ks) || json_array_size(ks) < 1 || json_array_size(ks) > 2) {
        reply_err(c, "ValidationException",
                  "1 validation error detected: Value at 'keySchema' failed to satisfy "
                  "constraint: Member must have length less than or equal to 2 and greater "
                  "than or equal to 1");
        return;
    }
    if (!json_is_array(ad) || json_array_size(ad) < 1) {
        reply_err(c, "ValidationException",
                  "One or more parameter values were invalid: Some index key attributes are "
                  "not defined in AttributeDefinitions");
        return;
    }
    static const char *unsupported[] = {"GlobalSecondaryIndexes", "LocalSecondaryIndexes",
                                        "StreamSpecification", "SSESpecification"};
    for (size_t i = 0; i < 4; i++)
        if (json_object_get(req, unsupported[i])) {
            reply_err(c, "ValidationException", "%s are not supported by ninesd", unsupported[i]);
            return;
        }
    int nhash = 0, nrange = 0;
    size_t i, j;
    json_t *e, *d;
    json_array_foreach(ks, i, e)
    {
        const char *an = json_string_value(json_object_get(e, "AttributeName"));
        const char *kt = json_string_value(json_object_get(e, "KeyType"));
        if (!an || !kt || (strcmp(kt, "HASH") && strcmp(kt, "RANGE")) || !an[0]) {
            reply_err(c, "ValidationException",
                      "1 validation error detected: Value at 'keySchema' failed to satisfy "
                      "constraint: KeyType must be HASH or RANGE and AttributeName non-empty");
            return;
        }
        if (!strcmp(kt, "HASH"))
            nhash++;
        else
            nrange++;
        if (!strcmp(kt, "HASH") && i != 0) {
            reply_err(c, "ValidationException",
                      "Invalid KeySchema: The first KeySchemaElement is not a HASH key type");
            return;
        }
        int found = 0;
        json_array_foreach(ad, j, d)
        {
            const char *dn = json_string_value(json_object_get(d, "AttributeName"));
            const char *dt = json_string_value(json_object_get(d, "AttributeType"));
            if (dn && !strcmp(dn, an)) {
                found = 1;
                if (!dt || (strcmp(dt, "S") && strcmp(dt, "N") && strcmp(dt, "B"))) {
                    reply_err(c, "ValidationException",
                              "1 validation error detected: Value '%s' at "
                              "'attributeDefinitions.%zu.member.attributeType' failed to satisfy "
                              "constraint: Member must satisfy enum value set: [B, N, S]",
                              dt ? dt : "null", j + 1);
                    return;
                }
            }
        }
        if (!found) {
            reply_err(c, "ValidationException",
                      "One or more parameter values were invalid: Some index key attributes "
                      "are not defined in AttributeDefinitions. Keys: [%s], AttributeDefinitions: "
                      "[...]",
                      an);
            return;
        }
    }
    if (nhash != 1 || nrange > 1) {
        reply_err(c, "ValidationException",
                  "Invalid KeySchema: Some index key schema element is not valid");
        return;
    }
    if (json_array_size(ad) != json_array_size(ks)) {
        reply_err(c, "ValidationException",
                  "One or more parameter values were invalid: Number of attributes in KeySchema "
                  "does not exactly match number of attributes defined in AttributeDefinitions");
        return;
    }
    json_t *pt = json_object_get(req, "ProvisionedThroughput");
    if (billing && strcmp(billing, "PROVISIONED") && strcmp(billing, "PAY_PER_REQUEST")) {
        reply_err(c, "ValidationException",
                  "1 validation error detected: Value '%s' at 'billingMode' failed to satisfy "
                  "constraint: Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]",
                  billing);
        return;
    }
    if ((!billing || !strcmp(billing, "PROVISIONED")) && !pt) {
        reply_err(c, "ValidationException",
                  "One or more parameter values were invalid: ReadCapacityUnits and "
                  "WriteCapacityUnits must both be specified when BillingMode is PROVISIONED");
        return;
    }
    if (billing && !strcmp(billing, "PAY_PER_REQUEST") && pt) {
        reply_err(c, "ValidationException",
                  "One or more parameter values were invalid: Neither ReadCapacityUnits nor "
                  "WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST");
        return;
    }
    /* The partition count: our own member NinesPartitions, or the tag
     * nines:partitions (which the AWS CLI can send), or the cluster default. */
    long parts = c->a->opt.default_partitions;
    json_t *np = json_object_get(req, "NinesPartitions");
    if (np)
        parts = json_is_integer(np) ? (long)json_integer_value(np) : -1;
    json_array_foreach(json_object_get(req, "Tags"), i, e)
    {
        const char *k = json_string_value(json_object_get(e, "Key"));
        const char *v = json_string_value(json_object_get(e, "Value"));
        if (k && !strcmp(k, "nines:partitions")) {
            char *end;
            parts = v ? strtol(v, &end, 10) : -1;
            if (!v || *end)
                parts = -1;
        }
    }
    if (parts < 1 || parts > c->a->opt.max_partitions) {
        reply_err(c, "ValidationException",
                  "The partition count (tag nines:partitions) must be an integer between 1 and %d",
                  c->a->opt.max_partitions);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    json_t *def = json_pack("{s:O, s:O, s:I, s:f}", "KeySchema", ks, "AttributeDefinitions", ad,
                            "Partitions", (json_int_t)parts, "CreationDateTime",
                            (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1000.0);
    if (pt) {
        json_t *r = json_object_get(pt, "ReadCapacityUnits"), *w = json_object_get(pt, "WriteCapacityUnits");
        if (!json_is_integer(r) || !json_is_integer(w) || json_integer_value(r) < 1 ||
            json_integer_value(w) < 1) {
            json_decref(def);
            reply_err(c, "ValidationException",
                      "One or more parameter values were invalid: ReadCapacityUnits and "
                      "WriteCapacityUnits must both be positive integers");
            return;
        }
        json_object_set_new(def, "ProvisionedThroughput",
                            json_pack("{s:O, s:O}", "ReadCapacityUnits", r, "WriteCapacityUnits", w));
    }
    json_object_set_new(def, "BillingMode", json_string(billing ? billing : "PROVISIONED"));
    struct call *cc = malloc(sizeof *cc);
    if (!cc) {
        json_decref(def);
        reply_err(c, "InternalServerError", "out of memory");
        return;
    }
    *cc = *c;
    int rc = catalog_propose_create(c->a->opt.cat, name, def, table_done, cc);
    json_decref(def);
    if (rc) {
        free(cc);
        reply_err(c, "InternalServerError", "metadata group unavailable: %s", nerr_name(rc));
    }
}

static void delete_done(void *arg, int status, void *result)
{
    struct catalog_result *r = result;
    if (r && r->desc)
        json_object_set_new(r->desc, "_deleting", json_true());
    table_done(arg, status, result);
}

static void op_delete_table(struct call *c, json_t *req)
{
    struct table *t = req_table(c, req, NULL);
    if (!t)
        return;
    char *name = strdup(t->name);
    table_put(t);
    struct call *cc = malloc(sizeof *cc);
    if (!cc || !name) {
        free(cc);
        free(name);
        reply_err(c, "InternalServerError", "out of memory");
        return;
    }
    *cc = *c;
    int rc = catalog_propose_delete(c->a->opt.cat, name, delete_done, cc);
    free(name);
    if (rc) {
        free(cc);
        reply_err(c, "InternalServerError", "metadata group unavailable: %s", nerr_name(rc));
    }
}

static void op_describe_table(struct call *c, json_t *req)
{
    struct table *t = req_table(c, req, NULL);
    if (!t)
        return;
    json_t *d = describe(c->a, t->desc, "ACTIVE", t);
    table_put(t);
    reply_json(c, json_pack("{s:o}", "Table", d));
}

static void op_list_tables(struct call *c, json_t *req)
{
    const char *start;
    if (get_str(c, req, "ExclusiveStartTableName", &start))
        return;
    json_t *lim = json_object_get(req, "Limit");
    json_int_t limit = 100;
    if (lim) {
        limit = json_is_integer(lim) ? json_integer_value(lim) : 0;
        if (limit < 1 || limit > 100) {
            reply_err(c, "ValidationException",
                      "1 validation error detected: Value at 'limit' failed to satisfy "
                      "constraint: Member must have value less than or equal to 100 and greater "
                      "than or equal to 1");
            return;
        }
    }
    char **names;
    size_t n;
    if (catalog_names(c->a->opt.cat, &names, &n)) {
        reply_err(c, "InternalServerError", "out of memory");
        return;
    }
    json_t *arr = json_array(), *out = json_object();
    const char *last = NULL;
    for (size_t i = 0; i < n; i++) {
        if (start && strcmp(names[i], start) <= 0)
            continue;
        if ((json_int_t)json_array_size(arr) == limit) {
            json_object_set_new(out, "LastEvaluatedTableName", json_string(last));
            break;
        }
        json_array_append_new(arr, json_string(names[i]));
        last = names[i];
    }
    json_object_set_new(out, "TableNames", arr);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    reply_json(c, out);
}

/* ---- item writes ---- */

struct wcall {
    struct call c;
    struct table *t;
    struct op op;
    struct batch *batch; /* BatchWriteItem member, or NULL */
    json_t *request;     /* BatchWriteItem: the original request entry */
    struct rcall *again; /* a copy of the routed request: done() with NERR_BUSY routes it again */
};

static void rcall_free(struct rcall *rc);
static struct rcall *rcall_clone(const struct rcall *rc);
static int route_retry(struct rcall *rc);

struct batch {
    struct call c;
    pthread_mutex_t mu;
    int pending;
    json_t *unprocessed; /* table -> [requests] */
    char failure[256];   /* the first validation failure, if any */
};

static void batch_finish(struct batch *b)
{
    json_t *out = json_pack("{s:o}", "UnprocessedItems", b->unprocessed);
    pthread_mutex_destroy(&b->mu);
    struct call c = b->c;
    free(b);
    reply_json(&c, out);
}

static void wcall_free(struct wcall *w)
{
    if (w->again)
        rcall_free(w->again);
    op_clear(&w->op);
    table_put(w->t);
    json_decref(w->request);
    free(w);
}

static void write_done(void *arg, int status, void *result)
{
    struct wcall *w = arg;
    struct op_result *r = result;
    if (w->batch) {
        struct batch *b = w->batch;
        pthread_mutex_lock(&b->mu);
        if (status || !r || r->status) {
            /* Not applied: hand it back to the client as DynamoDB does. */
            json_t *list = json_object_get(b->unprocessed, w->t->name);
            if (!list)
                json_object_set_new(b->unprocessed, w->t->name, list = json_array());
            json_array_append(list, w->request);
        }
        int last = --b->pending == 0;
        pthread_mutex_unlock(&b->mu);
        op_result_free(r);
        wcall_free(w);
        if (last)
            batch_finish(b);
        return;
    }
    if (status == NERR_BUSY && w->again && route_retry(w->again)) {
        /* Known never to commit (group.h): route it again, to the new leader. */
        w->again = NULL;
        wcall_free(w);
        return;
    }
    if (status == NERR_TIMEOUT) {
        reply_err(&w->c, "InternalServerError",
                  "no quorum of replicas acknowledged the write in time; its outcome is unknown");
    } else if (status == NERR_BUSY) {
        reply_err(&w->c, "InternalServerError",
                  "the partition's leader changed before the write committed; it was not applied");
    } else if (status) {
        reply_err(&w->c, "InternalServerError", "the write could not be made durable (%s)",
                  nerr_name(status));
    } else if (!r) {
        reply_err(&w->c, "InternalServerError", "no result");
    } else if (r->status == NERR_CONDITION) {
        reply_err(&w->c, "ConditionalCheckFailedException", "The conditional request failed");
    } else if (r->status == NERR_NOTFOUND) {
        reply_no_table(&w->c, w->t->name);
    } else if (r->status) {
        reply_err(&w->c, "ValidationException", "%s", r->msg);
    } else {
        json_t *out = json_object();
        json_t *attrs = r->old_item ? r->old_item : r->new_item;
        if (attrs && json_object_size(attrs) > 0)
            json_object_set(out, "Attributes", attrs);
        reply_json(&w->c, out);
    }
    op_result_free(r);
    wcall_free(w);
}

/* Proposes w->op on its partition; on a synchronous failure replies (or
 * records it in the batch) and frees w. */
static void propose_write(struct wcall *w)
{
    char *bytes = NULL;
    size_t len = 0;
    struct nerr e = {0};
    int rc = op_encode(&w->op, &bytes, &len, &e);
    if (!rc) {
        const json_t *hash = json_object_get(w->op.key, w->t->hash_name);
        struct partition *p = table_partition_for(w->t, hash);
        if (p->g && !w->batch && w->c.rc && !w->again)
            w->again = rcall_clone(w->c.rc);
        rc = p->g ? group_propose(p->g, bytes, len, &w->op, write_done, w) : NERR_BUSY;
    }
    free(bytes);
    if (rc == NERR_BUSY && !w->batch && w->c.rc && route_retry(w->c.rc)) {
        /* Leadership moved between routing and proposing: route again. */
        wcall_free(w);
        return;
    }
    if (rc)
        write_done(w, rc == NERR_CLOSED ? NERR_CLOSED : rc, NULL);
}

/* Builds the op of a PutItem / DeleteItem / UpdateItem request. Replies and
 * returns -1 on a validation failure. */
static int build_write(struct call *c, json_t *req, struct table *t, enum op_kind kind,
                       struct op *op)
{
    struct nerr e = {0};
    json_t *names, *values;
    const char *cond = NULL, *update = NULL;
    memset(op, 0, sizeof *op);
    op->kind = kind;
    if (refuse_legacy(c, req) || req_names_values(c, req, &names, &values) ||
        get_str(c, req, "ConditionExpression", &cond) ||
        (kind == OP_UPDATE && get_str(c, req, "UpdateExpression", &update)) ||
        parse_rv(c, req, kind == OP_UPDATE, &op->rv))
        return -1;
    if (kind == OP_PUT) {
        json_t *item = json_object_get(req, "Item");
        if (!item) {
            reply_err(c, "ValidationException",
                      "1 validation error detected: Value null at 'item' failed to satisfy "
                      "constraint: Member must not be null");
            return -1;
        }
        if (av_validate_item(item, &e)) {
            reply_validation(c, &e);
            return -1;
        }
        if (av_item_size(item) > ITEMS_MAX_BYTES) {
            reply_err(c, "ValidationException", "Item size has exceeded the maximum allowed size");
            return -1;
        }
        op->item = json_incref(item);
        if (table_key(t, item, 0, &op->key, &op->kbytes, &op->klen, &e))
            goto invalid;
    } else {
        json_t *key = json_object_get(req, "Key");
        if (!key) {
            reply_err(c, "ValidationException",
                      "1 validation error detected: Value null at 'key' failed to satisfy "
                      "constraint: Member must not be null");
            return -1;
        }
        if (av_validate_item(key, &e) || table_key(t, key, 1, &op->key, &op->kbytes, &op->klen, &e))
            goto invalid;
    }
    if (cond && !(op->cond = strdup(cond)))
        goto nomem;
    if (update && !(op->update = strdup(update)))
        goto nomem;
    op->names = json_incref(names);
    op->values = json_incref(values);
    if (op_parse_exprs(op, &e))
        goto invalid;
    struct expr *exprs[2] = {op->cond_ast, op->update_ast};
    if (expr_check_unused(names, values, exprs, 2, &e))
        goto invalid;
    return 0;
nomem:
    nerr_set(&e, NERR_NOMEM, "out of memory");
invalid:
    op_clear(op);
    reply_validation(c, &e);
    return -1;
}

static void op_write(struct call *c, json_t *req, enum op_kind kind)
{
    struct table *t = req_table(c, req, NULL);
    if (!t)
        return;
    struct wcall *w = calloc(1, sizeof *w);
    if (!w) {
        table_put(t);
        reply_err(c, "InternalServerError", "out of memory");
        return;
    }
    w->c = *c;
    w->t = t;
    if (build_write(c, req, t, kind, &w->op)) {
        table_put(t);
        free(w);
        return;
    }
    propose_write(w);
}

static void op_batch_write(struct call *c, json_t *req)
{
    json_t *ri = json_object_get(req, "RequestItems");
    const char *tname;
    json_t *list;
    size_t total = 0, i;
    if (!json_is_object(ri) || json_object_size(ri) == 0) {
        reply_err(c, "ValidationException",
                  "1 validation error detected: Value at 'requestItems' failed to satisfy "
                  "constraint: Member must have length greater than or equal to 1");
        return;
    }
    json_object_foreach(ri, tname, list)
    {
        if (!json_is_array(list) || json_array_size(list) == 0) {
            reply_err(c, "ValidationException",
                      "1 validation error detected: Value at 'requestItems' failed to satisfy "
                      "constraint: Map value must satisfy constraint: [Member must have length "
                      "less than or equal to 25, Member must have length greater than or equal "
                      "to 1]");
            return;
        }
        total += json_array_size(list);
    }
    if (total > BATCH_WRITE_MAX) {
        reply_err(c, "ValidationException",
                  "Too many items requested for the BatchWriteItem call");
        return;
    }
    /* Validate everything before proposing anything: a bad member fails the
     * whole call and nothing is written. */
    struct wcall *ws[BATCH_WRITE_MAX] = {0};
    size_t n = 0;
    int bad = 0;
    json_object_foreach(ri, tname, list)
    {
        json_t *treq = json_pack("{s:s}", "TableName", tname);
        struct table *t = req_table(c, treq, NULL);
        json_decref(treq);
        if (!t) {
            bad = 1;
            break;
        }
        json_t *e;
        json_array_foreach(list, i, e)
        {
            json_t *put = json_object_get(e, "PutRequest"), *del = json_object_get(e, "DeleteRequest");
            if (!!put == !!del || (put && !json_object_get(put, "Item")) ||
                (del && !json_object_get(del, "Key"))) {
                reply_err(c, "ValidationException",
                          "Supplied AttributeValue has more than one datatypes set, must contain "
                          "exactly one of PutRequest or DeleteRequest");
                bad = 1;
                break;
            }
            struct wcall *w = calloc(1, sizeof *w);
            if (!w) {
                reply_err(c, "InternalServerError", "out of memory");
                bad = 1;
                break;
            }
            w->c = *c;
            w->t = t;
            atomic_fetch_add(&t->refs, 1);
            w->request = json_incref(e);
            ws[n++] = w;
            if (build_write(c, put ? put : del, t, put ? OP_PUT : OP_DELETE, &w->op)) {
                bad = 1;
                break;
            }
            for (size_t k = 0; k + 1 < n; k++)
                if (ws[k]->t == t && ws[k]->op.klen == w->op.klen &&
                    !memcmp(ws[k]->op.kbytes, w->op.kbytes, w->op.klen)) {
                    reply_err(c, "ValidationException",
                              "Provided list of item keys contains duplicates");
                    bad = 1;
                    break;
                }
            if (bad)
                break;
        }
        table_put(t);
        if (bad)
            break;
    }
    struct batch *b = bad ? NULL : calloc(1, sizeof *b);
    if (!bad && !b) {
        reply_err(c, "InternalServerError", "out of memory");
        bad = 1;
    }
    if (bad) {
        for (size_t k = 0; k < n; k++)
            wcall_free(ws[k]);
        return;
    }
    b->c = *c;
    pthread_mutex_init(&b->mu, NULL);
    b->pending = (int)n;
    b->unprocessed = json_object();
    for (size_t k = 0; k < n; k++) {
        ws[k]->batch = b;
        propose_write(ws[k]);
    }
}

/* ---- reads ---- */

struct read_exprs {
    struct expr *filter, *proj;
};

/* Idempotent: a failed parse_read_exprs has cleared already, and the
 * caller's cleanup path clears again. */
static void read_exprs_clear(struct read_exprs *r)
{
    expr_free(r->filter);
    expr_free(r->proj);
    r->filter = r->proj = NULL;
}

/* Parses ProjectionExpression (and FilterExpression when filter != 0). */
static int parse_read_exprs(struct call *c, json_t *req, int filter, struct expr *extra,
                            struct read_exprs *out)
{
    struct nerr e = {0};
    json_t *names, *values;
    const char *proj, *flt = NULL;
    memset(out, 0, sizeof *out);
    if (req_names_values(c, req, &names, &values) || get_str(c, req, "ProjectionExpression", &proj) ||
        (filter && get_str(c, req, "FilterExpression", &flt)))
        return -1;
    if ((proj && expr_parse_projection(proj, names, &out->proj, &e)) ||
        (flt && expr_parse_condition(flt, "FilterExpression", names, values, &out->filter, &e)))
        goto invalid;
    struct expr *exprs[3] = {out->proj, out->filter, extra};
    if (expr_check_unused(names, values, exprs, 3, &e))
        goto invalid;
    return 0;
invalid:
    read_exprs_clear(out);
    reply_validation(c, &e);
    return -1;
}

static json_t *load_value(const MDB_val *v)
{
    json_error_t je;
    return json_loadb(v->mv_data, v->mv_size, JSON_ALLOW_NUL, &je);
}

static void op_get_item(struct call *c, json_t *req)
{
    struct table *t = req_table(c, req, NULL);
    if (!t)
        return;
    struct nerr e = {0};
    struct read_exprs rx;
    json_t *key = NULL, *k = json_object_get(req, "Key");
    unsigned char *kb = NULL;
    size_t klen;
    json_t *cr = json_object_get(req, "ConsistentRead");
    if (cr && !json_is_boolean(cr)) {
        reply_err(c, "SerializationException", "ConsistentRead must be a boolean");
        goto out_t;
    }
    if (refuse_legacy(c, req) || parse_read_exprs(c, req, 0, NULL, &rx))
        goto out_t;
    if (!k) {
        reply_err(c, "ValidationException",
                  "1 validation error detected: Value null at 'key' failed to satisfy "
                  "constraint: Member must not be null");
        goto out;
    }
    if (av_validate_item(k, &e) || table_key(t, k, 1, &key, &kb, &klen, &e)) {
        reply_validation(c, &e);
        goto out;
    }
    /* One node: every read sees every acknowledged write, which is both the
     * strongly consistent answer and the eventually consistent one. */
    struct partition *p = table_partition_for(t, json_object_get(key, t->hash_name));
    char *val = NULL;
    size_t vlen = 0;
    if (!p->g) {
        reply_err(c, "ServiceUnavailable", "no replica of this partition on this node");
        goto out;
    }
    int rc = items_read(c->a->st, p, kb, klen, &val, &vlen, &e);
    if (rc == NERR_NOTFOUND) {
        c->reply(c->arg, 200, strdup("{}"));
    } else if (rc) {
        reply_validation(c, &e);
    } else if (!rx.proj) {
        /* The stored bytes are already the wire form: no parse, no re-encode. */
        char *s = realloc(val, vlen + 10);
        if (s) {
            memmove(s + 8, s, vlen);
            memcpy(s, "{\"Item\":", 8);
            s[8 + vlen] = '}';
            s[9 + vlen] = 0;
            val = NULL;
            c->reply(c->arg, 200, s);
        } else {
            reply_err(c, "InternalServerError", "out of memory");
        }
    } else {
        json_error_t je;
        json_t *item = json_loadb(val, vlen, JSON_ALLOW_NUL, &je);
        if (!item) {
            reply_err(c, "InternalServerError", "stored item is not JSON");
        } else {
            json_t *pi = expr_project(rx.proj, item);
            json_decref(item);
            json_t *out = json_object();
            if (pi && json_object_size(pi) > 0)
                json_object_set(out, "Item", pi);
            json_decref(pi);
            reply_json(c, out);
        }
    }
    free(val);
out:
    read_exprs_clear(&rx);
out_t:
    json_decref(key);
    free(kb);
    table_put(t);
}

static void op_batch_get(struct call *c, json_t *req)
{
    json_t *ri = json_object_get(req, "RequestItems");
    const char *tname;
    json_t *spec;
    size_t total = 0;
    if (!json_is_object(ri) || json_object_size(ri) == 0) {
        reply_err(c, "ValidationException",
                  "1 validation error detected: Value at 'requestItems' failed to satisfy "
                  "constraint: Member must have length greater than or equal to 1");
        return;
    }
    json_object_foreach(ri, tname, spec)
    {
        json_t *keys = json_object_get(spec, "Keys");
        if (!json_is_array(keys) || json_array_size(keys) == 0) {
            reply_err(c, "ValidationException",
                      "1 validation error detected: Value at 'requestItems.%s.member.keys' "
                      "failed to satisfy constraint: Member must have length greater than or "
                      "equal to 1",
                      tname);
            return;
        }
        total += json_array_size(keys);
    }
    if (total > BATCH_GET_MAX) {
        reply_err(c, "ValidationException",
                  "Too many items requested for the BatchGetItem call");
        return;
    }
    json_t *responses = json_object();
    struct nerr e = {0};
    json_object_foreach(ri, tname, spec)
    {
        json_t *treq = json_pack("{s:s}", "TableName", tname);
        struct table *t = req_table(c, treq, NULL);
        json_decref(treq);
        struct read_exprs rx = {0};
        if (!t || refuse_legacy(c, spec) || parse_read_exprs(c, spec, 0, NULL, &rx)) {
            table_put(t);
            json_decref(responses);
            return;
        }
        json_t *list = json_array(), *k;
        size_t i;
        int fail = 0;
        json_array_foreach(json_object_get(spec, "Keys"), i, k)
        {
            json_t *key = NULL;
            unsigned char *kb = NULL;
            size_t klen;
            if (av_validate_item(k, &e) || table_key(t, k, 1, &key, &kb, &klen, &e)) {
                fail = 1;
                break;
            }
            for (size_t j = 0; j < i && !fail; j++) {
                json_t *other = json_array_get(json_object_get(spec, "Keys"), j);
                if (json_equal(other, k)) {
                    nerr_set(&e, NERR_INVALID, "Provided list of item keys contains duplicates");
                    fail = 1;
                }
            }
            struct partition *p = table_partition_for(t, json_object_get(key, t->hash_name));
            char *val = NULL;
            size_t vlen = 0;
            int rc = fail ? 0
                     : !p->g ? nerr_set(&e, NERR_IO, "no replica of partition %s on this node",
                                        p->name)
                             : items_read(c->a->st, p, kb, klen, &val, &vlen, &e);
            if (!fail && !rc) {
                json_error_t je;
                json_t *item = json_loadb(val, vlen, JSON_ALLOW_NUL, &je);
                json_t *pi = rx.proj && item ? expr_project(rx.proj, item) : json_incref(item);
                if (pi && json_object_size(pi))
                    json_array_append(list, pi);
                json_decref(pi);
                json_decref(item);
            }
            free(val);
            if (rc == NERR_NOTFOUND)
                rc = 0;
            json_decref(key);
            free(kb);
            if (rc)
                fail = 1;
            if (fail)
                break;
        }
        read_exprs_clear(&rx);
        table_put(t);
        if (fail) {
            json_decref(list);
            json_decref(responses);
            reply_validation(c, &e);
            return;
        }
        json_object_set_new(responses, tname, list);
    }
    reply_json(c, json_pack("{s:o, s:{}}", "Responses", responses, "UnprocessedKeys"));
}

/* ---- Query and Scan ---- */

struct page {
    json_t *items;
    long count, scanned;
    size_t bytes;
    long limit;
    int select_count;
    json_t *last_key; /* key attributes of the last item evaluated */
    struct read_exprs rx;
    struct table *t;
};

/* Evaluates one stored item for a page; returns 1 when the page is full. */
static int page_take(struct page *pg, const MDB_val *v, struct nerr *e, int *err)
{
    json_t *item = load_value(v);
    if (!item) {
        nerr_set(e, NERR_CORRUPT, "stored item is not JSON");
        *err = 1;
        return 1;
    }
    pg->scanned++;
    pg->bytes += v->mv_size;
    json_decref(pg->last_key);
    pg->last_key = json_object();
    json_object_set(pg->last_key, pg->t->hash_name, json_object_get(item, pg->t->hash_name));
    if (pg->t->range_name)
        json_object_set(pg->last_key, pg->t->range_name, json_object_get(item, pg->t->range_name));
    int keep = 1;
    if (pg->rx.filter && expr_eval_condition(pg->rx.filter, item, &keep, e)) {
        json_decref(item);
        *err = 1;
        return 1;
    }
    if (keep) {
        pg->count++;
        if (!pg->select_count) {
            json_t *pi = pg->rx.proj ? expr_project(pg->rx.proj, item) : json_incref(item);
            json_array_append_new(pg->items, pi ? pi : json_object());
        }
    }
    json_decref(item);
    return (pg->limit > 0 && pg->scanned >= pg->limit) || pg->bytes >= PAGE_BYTES;
}

static void page_reply(struct call *c, struct page *pg, int more)
{
    json_t *out = json_object();
    if (!pg->select_count)
        json_object_set(out, "Items", pg->items);
    json_object_set_new(out, "Count", json_integer(pg->count));
    json_object_set_new(out, "ScannedCount", json_integer(pg->scanned));
    if (more && pg->last_key)
        json_object_set(out, "LastEvaluatedKey", pg->last_key);
    reply_json(c, out);
}

static void page_clear(struct page *pg)
{
    json_decref(pg->items);
    json_decref(pg->last_key);
    read_exprs_clear(&pg->rx);
}

static int parse_page_opts(struct call *c, json_t *req, struct page *pg)
{
    json_t *lim = json_object_get(req, "Limit");
    const char *sel;
    if (lim && (!json_is_integer(lim) || json_integer_value(lim) < 1)) {
        reply_err(c, "ValidationException",
                  "1 validation error detected: Value at 'limit' failed to satisfy constraint: "
                  "Member must have value greater than or equal to 1");
        return -1;
    }
    pg->limit = lim ? (long)json_integer_value(lim) : 0;
    if (get_str(c, req, "Select", &sel))
        return -1;
    if (sel && strcmp(sel, "ALL_ATTRIBUTES") && strcmp(sel, "COUNT") &&
        strcmp(sel, "SPECIFIC_ATTRIBUTES")) {
        reply_err(c, "ValidationException",
                  "1 validation error detected: Value '%s' at 'select' failed to satisfy "
                  "constraint: Member must satisfy enum value set: [SPECIFIC_ATTRIBUTES, "
                  "COUNT, ALL_ATTRIBUTES, ALL_PROJECTED_ATTRIBUTES]",
                  sel);
        return -1;
    }
    pg->select_count = sel && !strcmp(sel, "COUNT");
    pg->items = json_array();
    return 0;
}

static int keycmp(const MDB_val *k, const unsigned char *b, size_t blen)
{
    size_t n = k->mv_size < blen ? k->mv_size : blen;
    int c = memcmp(k->mv_data, b, n);
    return c ? c : (k->mv_size < blen ? -1 : k->mv_size > blen);
}

static void op_query(struct call *c, json_t *req)
{
    struct table *t = req_table(c, req, NULL);
    if (!t)
        return;
    struct page pg = {.t = t};
    struct nerr e = {0};
    struct expr_key_cond kc = {0};
    struct expr *kexpr = NULL;
    struct av_key_range kr = {0};
    json_t *names, *values, *esk = json_object_get(req, "ExclusiveStartKey");
    const char *kce;
    json_t *fwd = json_object_get(req, "ScanIndexForward");
    int forward = !fwd || json_is_true(fwd);
    unsigned char *start = NULL;
    size_t start_len = 0;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    if (refuse_legacy(c, req) || req_names_values(c, req, &names, &values) ||
        get_str(c, req, "KeyConditionExpression", &kce) || parse_page_opts(c, req, &pg))
        goto out;
    if (!kce) {
        reply_err(c, "ValidationException",
                  "Either the KeyConditions or KeyConditionExpression parameter must be "
                  "specified in the request.");
        goto out;
    }
    char htype[2] = {t->hash_type, 0}, rtype[2] = {t->range_type, 0};
    struct expr_key_schema schema = {t->hash_name, htype, t->range_name,
                                     t->range_name ? rtype : NULL};
    if (expr_parse_key_condition(kce, names, values, &schema, &kexpr, &kc, &e)) {
        reply_validation(c, &e);
        goto out;
    }
    /* The unused-names check spans the key condition too. */
    if (parse_read_exprs(c, req, 1, kexpr, &pg.rx))
        goto out;
    {
        char ht[2] = {t->hash_type, 0};
        if (av_key_check(kc.hash, t->hash_name, ht, 1, 0, &e)) {
            reply_validation(c, &e);
            goto out;
        }
    }
    if (kc.op != AV_KEY_ALL) {
        char rt[2] = {t->range_type, 0};
        const char *ty1 = av_type(kc.v1), *ty2 = kc.v2 ? av_type(kc.v2) : rt;
        if (!ty1 || strcmp(ty1, rt) || !ty2 || strcmp(ty2, rt) ||
            (kc.op == AV_KEY_BEGINS_WITH && t->range_type == 'N')) {
            reply_err(c, "ValidationException",
                      "One or more parameter values were invalid: Condition parameter type "
                      "does not match schema type");
            goto out;
        }
    }
    if (av_key_query_range(kc.hash, kc.op, kc.v1, kc.v2, &kr, &e)) {
        reply_validation(c, &e);
        goto out;
    }
    if (esk) {
        json_t *skey = NULL;
        if (av_validate_item(esk, &e) || table_key(t, esk, 1, &skey, &start, &start_len, &e)) {
            reply_validation(c, &e);
            goto out;
        }
        int same = av_equal(json_object_get(skey, t->hash_name), kc.hash);
        json_decref(skey);
        if (!same) {
            reply_err(c, "ValidationException", "The provided starting key is invalid");
            goto out;
        }
    }
    struct partition *p = table_partition_for(t, kc.hash);
    if (!p->g) {
        reply_err(c, "ServiceUnavailable", "no replica of this partition on this node");
        goto out;
    }
    /* A cursor sees committed data only: commit what was acknowledged. */
    if ((group_host_barrier(group_host_of(p->g)) &&
         nerr_set(&e, NERR_IO, "the node cannot commit writes")) ||
        state_read_begin(c->a->st, &txn, &e) ||
        (mdb_cursor_open(txn, p->dbi, &cur) && nerr_set(&e, NERR_IO, "cursor"))) {
        reply_validation(c, &e);
        goto out;
    }
    MDB_val k, v;
    int rc, full = 0, err = 0;
    if (forward) {
        const unsigned char *from = kr.lo;
        size_t from_len = kr.lo_len;
        if (start && keycmp(&(MDB_val){start_len, start}, kr.lo, kr.lo_len) >= 0) {
            from = start;
            from_len = start_len;
        }
        k.mv_data = (void *)from;
        k.mv_size = from_len;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (!rc && start && from == start && keycmp(&k, start, start_len) == 0)
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        for (; !rc && !full; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (keycmp(&k, kr.hi, kr.hi_len) >= 0)
                break;
            full = page_take(&pg, &v, &e, &err);
        }
    } else {
        /* Backwards: from just below min(hi, start) down to lo. */
        const unsigned char *to = kr.hi;
        size_t to_len = kr.hi_len;
        if (start && keycmp(&(MDB_val){start_len, start}, kr.hi, kr.hi_len) < 0) {
            to = start;
            to_len = start_len;
        }
        k.mv_data = (void *)to;
        k.mv_size = to_len;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        rc = rc == MDB_NOTFOUND ? mdb_cursor_get(cur, &k, &v, MDB_LAST)
                                : mdb_cursor_get(cur, &k, &v, MDB_PREV);
        while (!rc && keycmp(&k, to, to_len) >= 0)
            rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
        for (; !rc && !full; rc = mdb_cursor_get(cur, &k, &v, MDB_PREV)) {
            if (keycmp(&k, kr.lo, kr.lo_len) < 0)
                break;
            full = page_take(&pg, &v, &e, &err);
        }
    }
    if (err)
        reply_validation(c, &e);
    else
        page_reply(c, &pg, full && !err);
out:
    if (cur)
        mdb_cursor_close(cur);
    if (txn)
        state_read_end(c->a->st, txn);
    free(start);
    av_key_range_free(&kr);
    expr_free(kexpr);
    page_clear(&pg);
    table_put(t);
}

static void op_scan(struct call *c, json_t *req)
{
    struct table *t = req_table(c, req, NULL);
    if (!t)
        return;
    struct page pg = {.t = t};
    struct nerr e = {0};
    json_t *esk = json_object_get(req, "ExclusiveStartKey");
    json_t *seg = json_object_get(req, "Segment"), *tseg = json_object_get(req, "TotalSegments");
    unsigned char *start = NULL;
    size_t start_len = 0;
    int first_part = 0;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    if (refuse_legacy(c, req) || parse_page_opts(c, req, &pg) ||
        parse_read_exprs(c, req, 1, NULL, &pg.rx))
        goto out;
    json_int_t segment = 0, segments = 1;
    if (!!seg != !!tseg) {
        reply_err(c, "ValidationException",
                  "The TotalSegments parameter is required but was not present in the request "
                  "when Segment parameter is present");
        goto out;
    }
    if (seg) {
        segment = json_is_integer(seg) ? json_integer_value(seg) : -1;
        segments = json_is_integer(tseg) ? json_integer_value(tseg) : -1;
        if (segments < 1 || segments > 1000000 || segment < 0 || segment >= segments) {
            reply_err(c, "ValidationException",
                      "The Segment parameter is zero-based and must be less than parameter "
                      "TotalSegments: Segment: %lld is out of bounds; TotalSegments: %lld",
                      (long long)segment, (long long)segments);
            goto out;
        }
    }
    if (esk) {
        json_t *skey = NULL;
        if (av_validate_item(esk, &e) || table_key(t, esk, 1, &skey, &start, &start_len, &e)) {
            reply_err(c, "ValidationException", "The provided starting key is invalid: %s", e.msg);
            goto out;
        }
        first_part = table_partition_for(t, json_object_get(skey, t->hash_name))->index;
        json_decref(skey);
    }
    /* NinesPartition: only that partition (the router pages a Scan across
     * nodes one partition at a time). */
    json_t *only = json_object_get(req, "NinesPartition");
    int last_part = t->nparts - 1;
    if (only) {
        json_int_t op_ = json_is_integer(only) ? json_integer_value(only) : -1;
        if (op_ < 0 || op_ >= t->nparts || (esk && first_part != op_)) {
            reply_err(c, "ValidationException", "NinesPartition must name a partition of the "
                                                "table (0..%d) holding ExclusiveStartKey",
                      t->nparts - 1);
            goto out;
        }
        first_part = last_part = (int)op_;
    }
    for (int pi = first_part; pi <= last_part; pi++)
        if (!t->parts[pi].g) {
            reply_err(c, "ServiceUnavailable", "no replica of partition %s on this node",
                      t->parts[pi].name);
            goto out;
        }
    if ((group_host_barrier(group_host_of(t->parts[first_part].g)) &&
         nerr_set(&e, NERR_IO, "the node cannot commit writes")) ||
        state_read_begin(c->a->st, &txn, &e)) {
        reply_validation(c, &e);
        goto out;
    }
    int full = 0, err = 0;
    /* Partitions in order, each in key order: a stable order for pagination.
     * With Segment/TotalSegments, a segment holds the items whose hash key
     * hashes to it, so parallel scanners see disjoint sets. */
    for (int pi = first_part; pi <= last_part && !full; pi++) {
        MDB_val k, v;
        int rc = mdb_cursor_open(txn, t->parts[pi].dbi, &cur);
        if (rc) {
            nerr_set(&e, NERR_IO, "cursor: %s", mdb_strerror(rc));
            err = 1;
            break;
        }
        if (start && pi == first_part) {
            k.mv_data = start;
            k.mv_size = start_len;
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
            if (!rc && keycmp(&k, start, start_len) == 0)
                rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        } else {
            rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        }
        for (; !rc && !full; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (segments > 1) {
                json_t *hv = NULL, *rv = NULL;
                if (av_key_decode(k.mv_data, k.mv_size, t->range_name ? (char[2]){t->range_type, 0} : NULL,
                                  &hv, &rv, &e) == 0) {
                    uint64_t h = av_key_hash(hv);
                    json_decref(hv);
                    json_decref(rv);
                    if ((json_int_t)(h % (uint64_t)segments) != segment)
                        continue;
                }
            }
            full = page_take(&pg, &v, &e, &err);
        }
        mdb_cursor_close(cur);
        cur = NULL;
        /* A page that ends exactly at the end of the last partition still
         * reports LastEvaluatedKey, as DynamoDB may; the next page is empty. */
    }
    if (err)
        reply_validation(c, &e);
    else
        page_reply(c, &pg, full);
out:
    if (cur)
        mdb_cursor_close(cur);
    if (txn)
        state_read_end(c->a->st, txn);
    free(start);
    page_clear(&pg);
    table_put(t);
}

static void op_describe_endpoints(struct call *c, json_t *req)
{
    (void)req;
    reply_json(c, json_pack("{s:[{s:s, s:i}]}", "Endpoints", "Address", c->a->opt.endpoint,
                            "CachePeriodInMinutes", 1440));
}

static void op_describe_limits(struct call *c, json_t *req)
{
    (void)req;
    reply_json(c, json_pack("{s:i, s:i, s:i, s:i}", "AccountMaxReadCapacityUnits", 80000,
                            "AccountMaxWriteCapacityUnits", 80000, "TableMaxReadCapacityUnits",
                            40000, "TableMaxWriteCapacityUnits", 40000));
}

/* ---- dispatch ---- */

static void op_put(struct call *c, json_t *r)
{
    op_write(c, r, OP_PUT);
}
static void op_delete(struct call *c, json_t *r)
{
    op_write(c, r, OP_DELETE);
}
static void op_update(struct call *c, json_t *r)
{
    op_write(c, r, OP_UPDATE);
}

/* ---- routing (docs/replication.md, "Routing") ----
 *
 * Every request arrives at some node. A write, or a read with
 * ConsistentRead, must run on its partition's leader; an eventually
 * consistent read on any replica; CreateTable/DeleteTable on the metadata
 * leader. The router serves the request here when this node can, forwards
 * it otherwise (to the leader this node knows, or to the members in turn),
 * and while a partition has no leader waits and tries again, up to
 * ROUTE_DEADLINE_MS; then the client gets 503 ServiceUnavailable, which the
 * AWS SDKs retry. A forwarded request that the receiver cannot serve comes
 * back 503 and is tried elsewhere: 503 always means "not executed". */

#define ROUTE_DEADLINE_MS 3000
#define ROUTE_RETRY_MS 15

struct rcall {
    struct api *a;
    char op[48];
    char *body;
    size_t len;
    int hops;
    api_reply_fn reply;
    void *arg;
    unsigned long long deadline;
    int attempt;
    int retrying; /* route_retry took it */
    /* A forwarded CreateTable/DeleteTable that succeeded: its answer, held
     * until this node's catalog shows the change (bounded). */
    long held_status;
    char *held_body;
    int polls;
};

static unsigned long long api_mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (unsigned long long)t.tv_sec * 1000ull + (unsigned long long)t.tv_nsec / 1000000ull;
}

static void rcall_free(struct rcall *rc)
{
    free(rc->held_body);
    free(rc->body);
    free(rc);
}

/* A copy of a routed request that can be routed again after the original
 * was freed (write_done). NULL when out of memory. */
static struct rcall *rcall_clone(const struct rcall *rc)
{
    struct rcall *c = malloc(sizeof *c);
    if (!c)
        return NULL;
    *c = *rc;
    c->retrying = 0;
    c->held_body = NULL;
    if (!(c->body = malloc(rc->len + 1))) {
        free(c);
        return NULL;
    }
    memcpy(c->body, rc->body, rc->len + 1);
    return c;
}

static const char *node_api(struct api *a, const char *id)
{
    const struct cluster_conf *conf = a->opt.conf;
    for (size_t i = 0; conf && i < conf->nnodes; i++)
        if (!strcmp(conf->nodes[i].id, id))
            return conf->nodes[i].api;
    return NULL;
}

enum route_kind { ROUTE_LOCAL, ROUTE_FORWARD, ROUTE_WAIT, ROUTE_SPLIT };

/* Where a request for partition p (members, local group g) goes. */
static enum route_kind route_group(struct rcall *rc, struct group *g, int n, const char *const *members,
                                   int need_leader, const char **to)
{
    if (g && !need_leader)
        return ROUTE_LOCAL;
    if (g) {
        struct group_status st;
        group_status(g, &st);
        if (st.role == RAFT_LEADER && !st.failed) {
            if (!need_leader || need_leader == 1)
                return ROUTE_LOCAL; /* a write: the proposal decides */
            /* A strongly consistent read: under the lease, once applied. */
            if (group_read_index(g, 500) == 0)
                return ROUTE_LOCAL;
            return ROUTE_WAIT;
        }
        const struct group_members *m = group_members_of(g);
        if (st.leader && st.leader != m->self && need_leader == 1 && !st.failed)
            return ROUTE_LOCAL; /* group_propose hands the entry to the leader */
        if (st.leader && st.leader != m->self) {
            *to = m->nodes[st.leader - 1];
            return ROUTE_FORWARD;
        }
        return ROUTE_WAIT;
    }
    if (n <= 0)
        return ROUTE_WAIT;
    *to = members[rc->attempt % n];
    return ROUTE_FORWARD;
}

/* need: 0 any replica, 1 leader (write), 2 leader + lease (consistent read). */
static enum route_kind route_partition(struct rcall *rc, struct partition *p, int need,
                                       const char **to)
{
    const char *members[CATALOG_MAX_REPLICAS];
    for (int k = 0; k < p->nmembers; k++)
        members[k] = p->members[k];
    return route_group(rc, p->g, p->nmembers, members, need, to);
}

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
                                         json_object_get(req, "ExpressionAttributeValues"),
                                         &schema, &kexpr, &kc, &e))
        return NULL;
    json_t *h = json_incref((json_t *)kc.hash);
    expr_free(kexpr);
    return h;
}

/* Decides for one request; LOCAL also when the request is malformed (the
 * handler then answers the validation error). */
static enum route_kind route_decide(struct rcall *rc, json_t *req, const char **to)
{
    struct api *a = rc->a;
    const char *op = rc->op;
    if (!strcmp(op, "CreateTable") || !strcmp(op, "DeleteTable")) {
        const char *nodes[CATALOG_MAX_REPLICAS];
        int n = catalog_meta_nodes(a->opt.cat, nodes);
        return route_group(rc, catalog_meta(a->opt.cat), n, nodes, 1, to);
    }
    int write = !strcmp(op, "PutItem") || !strcmp(op, "DeleteItem") || !strcmp(op, "UpdateItem");
    int point = write || !strcmp(op, "GetItem") || !strcmp(op, "Query");
    int multi = !strcmp(op, "Scan") || !strcmp(op, "BatchGetItem") ||
                !strcmp(op, "BatchWriteItem");
    if (!point && !multi)
        return ROUTE_LOCAL;
    int need = write ? 1 : json_is_true(json_object_get(req, "ConsistentRead")) ? 2 : 0;
    if (point) {
        const char *name = json_string_value(json_object_get(req, "TableName"));
        struct table *t = name ? catalog_get(a->opt.cat, name) : NULL;
        if (!t && name) {
            catalog_sync_now(a->opt.cat); /* created through another node a moment ago? */
            t = catalog_get(a->opt.cat, name);
        }
        if (!t)
            return ROUTE_LOCAL;
        json_t *hash = NULL;
        if (!strcmp(op, "Query"))
            hash = query_hash(t, req);
        else
            hash = json_incref(json_object_get(
                json_object_get(req, !strcmp(op, "PutItem") ? "Item" : "Key"), t->hash_name));
        enum route_kind k = ROUTE_LOCAL;
        if (hash && av_type(hash) && (t->hash_type == av_type(hash)[0]))
            k = route_partition(rc, table_partition_for(t, hash), need, to);
        json_decref(hash);
        table_put(t);
        return k;
    }
    if (!strcmp(op, "Scan") && json_object_get(req, "NinesPartition")) {
        const char *name = json_string_value(json_object_get(req, "TableName"));
        struct table *t = name ? catalog_get(a->opt.cat, name) : NULL;
        json_t *np = json_object_get(req, "NinesPartition");
        enum route_kind k = ROUTE_LOCAL;
        if (t && json_is_integer(np) && json_integer_value(np) >= 0 &&
            json_integer_value(np) < t->nparts)
            k = route_partition(rc, &t->parts[json_integer_value(np)], need, to);
        table_put(t);
        return k;
    }
    /* Scan and batches: served here when every partition they touch is. */
    json_t *tables = NULL;
    const char *tn = json_string_value(json_object_get(req, "TableName"));
    if (!strcmp(op, "Scan")) {
        tables = json_object();
        if (tn)
            json_object_set_new(tables, tn, json_null());
    } else {
        tables = json_incref(json_object_get(req, "RequestItems"));
        if (!strcmp(op, "BatchWriteItem"))
            need = 1;
        else if (json_is_object(tables)) {
            const char *k;
            json_t *v;
            json_object_foreach(tables, k, v) if (json_is_true(json_object_get(v, "ConsistentRead")))
                need = 2;
        }
    }
    enum route_kind res = ROUTE_LOCAL;
    const char *k;
    json_t *v;
    if (json_is_object(tables))
        json_object_foreach(tables, k, v)
        {
            struct table *t = catalog_get(a->opt.cat, k);
            if (!t) {
                catalog_sync_now(a->opt.cat);
                t = catalog_get(a->opt.cat, k);
            }
            for (int p = 0; t && p < t->nparts && res == ROUTE_LOCAL; p++) {
                const char *dummy = NULL;
                enum route_kind pk = route_partition(rc, &t->parts[p], need, &dummy);
                if (pk != ROUTE_LOCAL)
                    res = ROUTE_SPLIT;
            }
            table_put(t);
        }
    json_decref(tables);
    /* Not every partition has a replica (or a leader) here: split it. */
    return res == ROUTE_LOCAL ? ROUTE_LOCAL : ROUTE_SPLIT;
}

static void route(struct rcall *rc);

static void route_timer(void *arg)
{
    struct rcall *rc = arg;
    rc->retrying = 0;
    route(rc);
}

/* Schedules another routing attempt. 0 when the deadline passed (the caller
 * answers). */
static int route_retry(struct rcall *rc)
{
    if (rc->retrying)
        return 1;
    if (api_mono_ms() + ROUTE_RETRY_MS >= rc->deadline || !rc->a->opt.fwd)
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
    struct call c = {rc->a, rc->reply, rc->arg, NULL};
    reply_err(&c, "ServiceUnavailable", "%s", why);
    rcall_free(rc);
}

static int is_write_op(const char *op)
{
    return !strcmp(op, "PutItem") || !strcmp(op, "DeleteItem") || !strcmp(op, "UpdateItem") ||
           !strcmp(op, "BatchWriteItem") || !strcmp(op, "CreateTable") ||
           !strcmp(op, "DeleteTable");
}

static void table_wait(void *arg)
{
    struct rcall *rc = arg;
    json_t *req = json_loadb(rc->body, rc->len, JSON_ALLOW_NUL, NULL);
    const char *name = json_string_value(json_object_get(req, "TableName"));
    catalog_sync_now(rc->a->opt.cat);
    struct table *t = name ? catalog_get(rc->a->opt.cat, name) : NULL;
    int want = !strcmp(rc->op, "CreateTable");
    int done = !name || (want == (t != NULL));
    table_put(t);
    json_decref(req);
    if (!done && ++rc->polls < 100 && fwd_after(rc->a->opt.fwd, 10, table_wait, rc) == 0)
        return;
    rc->reply(rc->arg, (int)rc->held_status, rc->held_body);
    rc->held_body = NULL;
    rcall_free(rc);
}

static void on_forwarded(void *arg, long status, char *body)
{
    struct rcall *rc = arg;
    /* 503, or a refused connection: the receiver did not execute it. No
     * answer at all: a read may be tried again; a write may have happened,
     * so the client decides. */
    if (status == 503 || status == -1 || (status == 0 && !is_write_op(rc->op))) {
        free(body);
        if (route_retry(rc))
            return;
        route_unavailable(rc, "no replica could serve the request in time (leader election "
                              "in progress or replicas down); retry");
        return;
    }
    if (status == 0) {
        route_unavailable(rc, "the partition leader did not answer");
        return;
    }
    if (status == 200 && (!strcmp(rc->op, "CreateTable") || !strcmp(rc->op, "DeleteTable"))) {
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
    rcall_free(rc);
}

static void dispatch(struct rcall *rc, json_t *req);
static void split(struct rcall *rc, json_t *req);

static void route(struct rcall *rc)
{
    json_error_t je;
    json_t *req = json_loadb(rc->body, rc->len, JSON_ALLOW_NUL, &je);
    const char *to = NULL;
    enum route_kind k = req && json_is_object(req) ? route_decide(rc, req, &to) : ROUTE_LOCAL;
    if (k == ROUTE_FORWARD && to && rc->hops < FWD_MAX_HOPS && rc->a->opt.fwd &&
        node_api(rc->a, to) && strcmp(to, rc->a->opt.self_id)) {
        json_decref(req);
        if (fwd_send(rc->a->opt.fwd, node_api(rc->a, to), rc->op, rc->body, rc->len, rc->hops + 1,
                     5000, on_forwarded, rc) == 0)
            return;
        if (!route_retry(rc))
            route_unavailable(rc, "cannot forward the request");
        return;
    }
    if (k == ROUTE_SPLIT) {
        split(rc, req);
        json_decref(req);
        return;
    }
    if (k != ROUTE_LOCAL) {
        json_decref(req);
        /* A forwarded request that cannot be served here goes back at once:
         * the router that sent it knows where else to try. */
        if (rc->hops > 0 || !route_retry(rc))
            route_unavailable(rc, "no leader for this partition is known here; retry");
        return;
    }
    dispatch(rc, req);
    json_decref(req);
}

static const struct {
    const char *name;
    void (*fn)(struct call *, json_t *);
} ops[] = {
    {"PutItem", op_put},
    {"GetItem", op_get_item},
    {"DeleteItem", op_delete},
    {"UpdateItem", op_update},
    {"Query", op_query},
    {"Scan", op_scan},
    {"BatchWriteItem", op_batch_write},
    {"BatchGetItem", op_batch_get},
    {"CreateTable", op_create_table},
    {"DescribeTable", op_describe_table},
    {"ListTables", op_list_tables},
    {"DeleteTable", op_delete_table},
    {"DescribeEndpoints", op_describe_endpoints},
    {"DescribeLimits", op_describe_limits},
};

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
    snprintf(rc->op, sizeof rc->op, "%s", op);
    rc->body = body;
    rc->len = strlen(body);
    rc->a = a;
    rc->reply = reply;
    rc->arg = arg;
    rc->deadline = api_mono_ms() + ROUTE_DEADLINE_MS;
    route(rc);
}

struct scan_split {
    struct rcall *rc;
    json_t *req;   /* the client's request */
    json_t *items; /* collected */
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
    rcall_free(rc);
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
        scan_finish(sp, 500, api_error_body(API_TYPE_DDB "InternalServerError",
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
    rcall_free(rc);
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
            t = f->write ? json_array() : json_deep_copy(json_object_get(
                                              json_object_get(f->req, "RequestItems"), it->table));
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

static void split(struct rcall *rc, json_t *req)
{
    struct api *a = rc->a;
    if (!strcmp(rc->op, "Scan")) {
        const char *name = json_string_value(json_object_get(req, "TableName"));
        struct table *t = name ? catalog_get(a->opt.cat, name) : NULL;
        json_t *esk = json_object_get(req, "ExclusiveStartKey");
        struct scan_split *sp = t ? calloc(1, sizeof *sp) : NULL;
        if (!sp) {
            table_put(t);
            dispatch(rc, req); /* the handler answers (no such table, ...) */
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
        table_put(t);
        scan_next(sp, 1);
        return;
    }
    int write = !strcmp(rc->op, "BatchWriteItem");
    json_t *ri = json_object_get(req, "RequestItems");
    size_t n = 0;
    const char *tn;
    json_t *spec;
    json_object_foreach(ri, tn, spec) n += json_array_size(write ? spec : json_object_get(spec, "Keys"));
    if (!json_is_object(ri) || n == 0 || n > (write ? 25u : 100u)) {
        dispatch(rc, req); /* the handler's validation answers */
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

/* Runs the request here. req may be NULL (unparsable body). */
static void dispatch(struct rcall *rc, json_t *req)
{
    struct call c = {rc->a, rc->reply, rc->arg, rc};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        if (strcmp(rc->op, ops[i].name))
            continue;
        if (!req) {
            json_error_t je;
            json_t *r2 = json_loadb(rc->body, rc->len, JSON_ALLOW_NUL, &je);
            if (!r2) {
                c.rc = NULL;
                reply_err(&c, "SerializationException",
                          "Start of structure or map found where not expected (%s at line %d, "
                          "column %d)",
                          je.text, je.line, je.column);
                rcall_free(rc);
                return;
            }
            json_decref(r2);
        }
        if (!json_is_object(req)) {
            c.rc = NULL;
            reply_err(&c, "SerializationException",
                      "Start of structure or map found where not expected");
            rcall_free(rc);
            return;
        }
        ops[i].fn(&c, req);
        if (!rc->retrying)
            rcall_free(rc); /* else the retry timer owns it */
        return;
    }
    c.rc = NULL;
    reply_err(&c, "UnknownOperationException", "%s", "");
    rcall_free(rc);
}

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
    count_request(k->a, k->table[0] ? k->table : "-", k->op, status);
    k->reply(k->arg, status, body);
    free(k);
}

void api_call_hops(struct api *a, const char *op, const char *body, size_t len, int hops,
                   api_reply_fn reply, void *arg)
{
    atomic_fetch_add(&a->requests, 1);
    struct counted *k = hops == 0 && strlen(op) < sizeof k->op ? calloc(1, sizeof *k) : NULL;
    if (k) {
        /* The table for the metrics: a cheap look at the body, not a parse. */
        k->a = a;
        strcpy(k->op, op);
        const char *tn = memmem(body, len, "\"TableName\"", 11);
        if (tn) {
            const char *q = memchr(tn + 11, '"', len - (size_t)(tn + 11 - body));
            const char *e = q ? memchr(q + 1, '"', len - (size_t)(q + 1 - body)) : NULL;
            if (e && e - q - 1 < (long)sizeof k->table)
                memcpy(k->table, q + 1, (size_t)(e - q - 1));
        }
        k->reply = reply;
        k->arg = arg;
        reply = counted_reply;
        arg = k;
    }
    struct rcall *rc = calloc(1, sizeof *rc);
    if (!rc || strlen(op) >= sizeof rc->op || !(rc->body = malloc(len + 1))) {
        struct call c = {a, reply, arg, NULL};
        free(rc);
        reply_err(&c, strlen(op) >= 48 ? "UnknownOperationException" : "InternalServerError",
                  "%s", strlen(op) >= 48 ? "" : "out of memory");
        return;
    }
    memcpy(rc->body, body, len);
    rc->body[len] = 0;
    rc->len = len;
    strcpy(rc->op, op);
    rc->a = a;
    rc->hops = hops;
    rc->reply = reply;
    rc->arg = arg;
    rc->deadline = api_mono_ms() + ROUTE_DEADLINE_MS;
    route(rc);
}

void api_call(struct api *a, const char *op, const char *body, size_t len, api_reply_fn reply,
              void *arg)
{
    api_call_hops(a, op, body, len, 0, reply, arg);
}

static const char *role_name(enum raft_role r)
{
    switch (r) {
    case RAFT_LEADER:
        return "leader";
    case RAFT_CANDIDATE:
        return "candidate";
    case RAFT_PRE_CANDIDATE:
        return "pre-candidate";
    default:
        return "follower";
    }
}

static void status_group(void *arg, struct table *t, int part, struct group *g)
{
    json_t *arr = arg;
    struct group_status st;
    const struct group_members *m = group_members_of(g);
    group_status(g, &st);
    json_t *members = json_array();
    for (uint32_t k = 0; k < m->n; k++)
        json_array_append_new(members, json_string(m->nodes[k]));
    json_t *o = json_pack("{s:s, s:o, s:o, s:o, s:o, s:s, s:o, s:I, s:I, s:I, s:I, s:I, s:b, s:b}",
                          "group", group_name(g), "table", t ? json_string(t->name) : json_null(),
                          "table_id", t ? json_string(t->id) : json_null(), "partition",
                          t ? json_integer(part) : json_null(), "members", members, "role",
                          role_name(st.role), "leader",
                          st.leader ? json_string(m->nodes[st.leader - 1]) : json_null(), "term",
                          (json_int_t)st.term, "commit", (json_int_t)st.commit, "applied",
                          (json_int_t)st.applied, "last_index", (json_int_t)st.last_index,
                          "first_index", (json_int_t)st.first_index,
                          "lease", st.lease, "failed", st.failed);
    if (o)
        json_array_append_new(arr, o);
}

void api_admin(struct api *a, const char *op, api_reply_fn reply, void *arg)
{
    struct call c = {a, reply, arg, NULL};
    if (!strcmp(op, "Catalog")) {
        json_t *d = catalog_descs(a->opt.cat);
        reply_json(&c, json_pack("{s:o}", "tables", d ? d : json_array()));
        return;
    }
    if (!strcmp(op, "Status")) {
        const struct cluster_conf *conf = a->opt.conf;
        const struct cluster_node *self = conf ? cluster_conf_node(conf, a->opt.self_id) : NULL;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        json_t *groups = json_array();
        catalog_each_group(a->opt.cat, status_group, groups);
        struct group_host_stats hs = {0};
        struct nodelog_stats ls = {0};
        if (a->opt.host) {
            group_host_stats(a->opt.host, &hs);
            group_host_log_stats(a->opt.host, &ls);
        }
        json_t *o = json_pack(
            "{s:s, s:s, s:s, s:s, s:I, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I}, "
            "s:{s:I, s:I, s:I, s:I, s:I}}",
            "node",
            a->opt.self_id ? a->opt.self_id : "", "az", self ? self->az : "", "rack",
            self ? self->rack : "", "cluster", conf ? conf->name : "", "time_ms",
            (json_int_t)now.tv_sec * 1000 + now.tv_nsec / 1000000, "groups", groups, "messages",
            "in", (json_int_t)hs.msgs_in, "out", (json_int_t)hs.msgs_out, "dropped_malformed",
            (json_int_t)hs.dropped_malformed, "dropped_forged", (json_int_t)hs.dropped_forged,
            "dropped_unknown_group", (json_int_t)hs.dropped_unknown, "dropped_by_raft",
            (json_int_t)hs.dropped_raft, "send_failures", (json_int_t)hs.send_failures,
            "node_log", "records", (json_int_t)ls.wal.records, "syncs", (json_int_t)ls.wal.syncs,
            "bytes", (json_int_t)ls.wal.bytes, "segments", (json_int_t)ls.wal.segments,
            "streams", (json_int_t)ls.streams);
        reply_json(&c, o);
        return;
    }
    reply_err(&c, "UnknownOperationException", "%s", "");
}
