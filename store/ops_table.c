/*
 * ops_table.c — the table operations: CreateTable and DeleteTable (through
 * the metadata group), DescribeTable, ListTables, DescribeEndpoints and
 * DescribeLimits. Rows of the operation table (router.c).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "store/api_internal.h"

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
    if (t) {
        /* The members now (the description keeps the placement at
         * creation; replacements change it, catalog.h): one list of slots
         * per partition (member id k+1 at index k, null = no member), and
         * the replacements in progress. */
        json_t *pl = json_array(), *ch = json_array();
        for (int p = 0; pl && ch && p < t->nparts; p++) {
            const struct pmembers *m = partition_members(&t->parts[p]);
            json_t *slots = json_array();
            int used = 0;
            for (int k = 0; k < m->nslots; k++)
                if (m->slots[k][0])
                    used = k + 1;
            for (int k = 0; slots && k < used; k++)
                json_array_append_new(slots,
                                      m->slots[k][0] ? json_string(m->slots[k]) : json_null());
            json_array_append_new(pl, slots);
            if (m->chg_add)
                json_array_append_new(ch, json_pack("{s:i,s:s,s:s}", "Partition", p, "Replacing",
                                                    m->slots[m->chg_remove - 1], "With",
                                                    m->slots[m->chg_add - 1]));
        }
        json_object_set_new(d, "Placement", pl);
        json_object_set_new(d, "NinesReplacements", ch);
        json_object_del(d, "Changes");
    }
    /* The partition count is ours; DynamoDB clients ignore unknown members. */
    json_object_set(d, "NinesPartitions", json_object_get(d, "Partitions"));
    json_object_del(d, "Partitions");
    return d;
}

/* ---- CreateTable / DeleteTable / DescribeTable / ListTables ---- */

/* A metadata proposal the group refused with NERR_BUSY was never appended
 * (or was overwritten): the router proposes it again while the request's
 * deadline allows (router.h), else it is answered "not made". cc (malloc'd)
 * goes first: the retry may run on another thread at once. */
static void table_busy(struct call *cc)
{
    struct call c = *cc;
    free(cc);
    if (c.rc && router_retry(c.rc))
        return;
    api_reply_err(&c, "ServiceUnavailable",
                  "no leader of the metadata group accepted the change; it was not made; retry");
    router_finish(c.rc);
}

static void table_done(void *arg, int status, void *result)
{
    struct call *c = arg;
    struct catalog_result *r = result;
    if (status == NERR_BUSY) {
        catalog_result_free(r);
        table_busy(c);
        return;
    }
    if (status || !r) {
        api_reply_err(c, "InternalServerError", "metadata write failed: %s", nerr_name(status));
    } else if (r->status == NERR_EXISTS) {
        api_reply_err(c, "ResourceInUseException", "Table already exists: %s",
                      json_string_value(json_object_get(r->desc, "TableName")));
    } else if (r->status == NERR_NOTFOUND) {
        api_reply_err(c, "ResourceNotFoundException", "Requested resource not found");
    } else if (r->status == NERR_LIMIT) {
        api_reply_err(c, "LimitExceededException",
                      "Too many partitions on this node (storage.max_tables in the cluster file "
                      "bounds them); delete tables or raise it and restart");
    } else if (r->status) {
        api_reply_err(c, "InternalServerError", "table could not be opened");
    } else {
        /* ACTIVE at once: the partitions exist when this reply is sent. A
         * deleted table's description says DELETING, as DynamoDB's does. */
        int deleted = json_object_get(r->desc, "_deleting") != NULL;
        json_object_del(r->desc, "_deleting");
        api_reply_json(c,
                       json_pack("{s:o}", "TableDescription",
                                 describe(c->a, r->desc, deleted ? "DELETING" : "ACTIVE", NULL)));
    }
    catalog_result_free(r);
    router_finish(c->rc);
    free(c);
}

/* A proposal refused synchronously: routed again (NERR_BUSY), or answered. */
static void table_refused(struct call *cc, int rc)
{
    if (rc == NERR_BUSY) {
        table_busy(cc);
        return;
    }
    api_reply_err(cc, "InternalServerError", "metadata group unavailable: %s", nerr_name(rc));
    router_finish(cc->rc);
    free(cc);
}

void ops_create_table(struct call *c, json_t *req)
{
    const char *name, *billing;
    json_t *ks = json_object_get(req, "KeySchema"),
           *ad = json_object_get(req, "AttributeDefinitions");
    if (api_get_str(c, req, "TableName", &name) || api_get_str(c, req, "BillingMode", &billing))
        return;
    if (!name || !api_valid_table_name(name)) {
        api_reply_bad_table_name(c, name ? name : "null");
        return;
    }
    if (!json_is_array(ks) || json_array_size(ks) < 1 || json_array_size(ks) > 2) {
        api_reply_err(c, "ValidationException",
                      "1 validation error detected: Value at 'keySchema' failed to satisfy "
                      "constraint: Member must have length less than or equal to 2 and greater "
                      "than or equal to 1");
        return;
    }
    if (!json_is_array(ad) || json_array_size(ad) < 1) {
        api_reply_err(c, "ValidationException",
                      "One or more parameter values were invalid: Some index key attributes are "
                      "not defined in AttributeDefinitions");
        return;
    }
    static const char *unsupported[] = {"GlobalSecondaryIndexes", "LocalSecondaryIndexes",
                                        "StreamSpecification", "SSESpecification"};
    for (size_t i = 0; i < 4; i++)
        if (json_object_get(req, unsupported[i])) {
            api_reply_err(c, "ValidationException", "%s are not supported by ninesd",
                          unsupported[i]);
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
            api_reply_err(c, "ValidationException",
                          "1 validation error detected: Value at 'keySchema' failed to satisfy "
                          "constraint: KeyType must be HASH or RANGE and AttributeName non-empty");
            return;
        }
        if (!strcmp(kt, "HASH"))
            nhash++;
        else
            nrange++;
        if (!strcmp(kt, "HASH") && i != 0) {
            api_reply_err(c, "ValidationException",
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
                    api_reply_err(
                        c, "ValidationException",
                        "1 validation error detected: Value '%s' at "
                        "'attributeDefinitions.%zu.member.attributeType' failed to satisfy "
                        "constraint: Member must satisfy enum value set: [B, N, S]",
                        dt ? dt : "null", j + 1);
                    return;
                }
            }
        }
        if (!found) {
            api_reply_err(
                c, "ValidationException",
                "One or more parameter values were invalid: Some index key attributes "
                "are not defined in AttributeDefinitions. Keys: [%s], AttributeDefinitions: "
                "[...]",
                an);
            return;
        }
    }
    if (nhash != 1 || nrange > 1) {
        api_reply_err(c, "ValidationException",
                      "Invalid KeySchema: Some index key schema element is not valid");
        return;
    }
    if (json_array_size(ad) != json_array_size(ks)) {
        api_reply_err(
            c, "ValidationException",
            "One or more parameter values were invalid: Number of attributes in KeySchema "
            "does not exactly match number of attributes defined in AttributeDefinitions");
        return;
    }
    json_t *pt = json_object_get(req, "ProvisionedThroughput");
    if (billing && strcmp(billing, "PROVISIONED") && strcmp(billing, "PAY_PER_REQUEST")) {
        api_reply_err(
            c, "ValidationException",
            "1 validation error detected: Value '%s' at 'billingMode' failed to satisfy "
            "constraint: Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]",
            billing);
        return;
    }
    if ((!billing || !strcmp(billing, "PROVISIONED")) && !pt) {
        api_reply_err(c, "ValidationException",
                      "One or more parameter values were invalid: ReadCapacityUnits and "
                      "WriteCapacityUnits must both be specified when BillingMode is PROVISIONED");
        return;
    }
    if (billing && !strcmp(billing, "PAY_PER_REQUEST") && pt) {
        api_reply_err(c, "ValidationException",
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
        api_reply_err(
            c, "ValidationException",
            "The partition count (tag nines:partitions) must be an integer between 1 and %d",
            c->a->opt.max_partitions);
        return;
    }
    int64_t now = clock_wall_ms();
    json_t *def = json_pack("{s:O, s:O, s:I, s:f}", "KeySchema", ks, "AttributeDefinitions", ad,
                            "Partitions", (json_int_t)parts, "CreationDateTime",
                            (double)(now / 1000) + (double)(now % 1000) / 1000.0);
    if (pt) {
        json_t *r = json_object_get(pt, "ReadCapacityUnits"),
               *w = json_object_get(pt, "WriteCapacityUnits");
        if (!json_is_integer(r) || !json_is_integer(w) || json_integer_value(r) < 1 ||
            json_integer_value(w) < 1) {
            json_decref(def);
            api_reply_err(c, "ValidationException",
                          "One or more parameter values were invalid: ReadCapacityUnits and "
                          "WriteCapacityUnits must both be positive integers");
            return;
        }
        json_object_set_new(
            def, "ProvisionedThroughput",
            json_pack("{s:O, s:O}", "ReadCapacityUnits", r, "WriteCapacityUnits", w));
    }
    json_object_set_new(def, "BillingMode", json_string(billing ? billing : "PROVISIONED"));
    struct call *cc = malloc(sizeof *cc);
    if (!cc) {
        json_decref(def);
        api_reply_err(c, "InternalServerError", "out of memory");
        return;
    }
    *cc = *c;
    cc->rc = call_take(c);
    int rc = catalog_propose_create(c->a->opt.cat, name, def, table_done, cc);
    json_decref(def);
    if (rc)
        table_refused(cc, rc);
}

static void delete_done(void *arg, int status, void *result)
{
    struct catalog_result *r = result;
    if (r && r->desc)
        json_object_set_new(r->desc, "_deleting", json_true());
    table_done(arg, status, result);
}

void ops_delete_table(struct call *c, json_t *req)
{
    struct table *t = api_req_table(c, req, NULL);
    if (!t)
        return;
    char *name = strdup(t->name);
    table_put(t);
    struct call *cc = malloc(sizeof *cc);
    if (!cc || !name) {
        free(cc);
        free(name);
        api_reply_err(c, "InternalServerError", "out of memory");
        return;
    }
    *cc = *c;
    cc->rc = call_take(c);
    int rc = catalog_propose_delete(c->a->opt.cat, name, delete_done, cc);
    free(name);
    if (rc)
        table_refused(cc, rc);
}

void ops_describe_table(struct call *c, json_t *req)
{
    struct table *t = api_req_table(c, req, NULL);
    if (!t)
        return;
    json_t *summary = NULL;
    int restoring = 0;
    int restored = ops_restore_summary(t->name, &summary, &restoring);
    json_t *d = describe(c->a, t->desc, restoring ? "CREATING" : "ACTIVE", t);
    if (restored && d && summary)
        json_object_set_new(d, "RestoreSummary", summary);
    else
        json_decref(summary);
    table_put(t);
    api_reply_json(c, json_pack("{s:o}", "Table", d));
}

void ops_list_tables(struct call *c, json_t *req)
{
    const char *start;
    if (api_get_str(c, req, "ExclusiveStartTableName", &start))
        return;
    json_t *lim = json_object_get(req, "Limit");
    json_int_t limit = 100;
    if (lim) {
        limit = json_is_integer(lim) ? json_integer_value(lim) : 0;
        if (limit < 1 || limit > 100) {
            api_reply_err(
                c, "ValidationException",
                "1 validation error detected: Value at 'limit' failed to satisfy "
                "constraint: Member must have value less than or equal to 100 and greater "
                "than or equal to 1");
            return;
        }
    }
    char **names;
    size_t n;
    if (catalog_names(c->a->opt.cat, &names, &n)) {
        api_reply_err(c, "InternalServerError", "out of memory");
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
    api_reply_json(c, out);
}

void ops_describe_endpoints(struct call *c, json_t *req)
{
    (void)req;
    api_reply_json(c, json_pack("{s:[{s:s, s:i}]}", "Endpoints", "Address", c->a->opt.endpoint,
                                "CachePeriodInMinutes", 1440));
}

void ops_describe_limits(struct call *c, json_t *req)
{
    (void)req;
    api_reply_json(c, json_pack("{s:i, s:i, s:i, s:i}", "AccountMaxReadCapacityUnits", 80000,
                                "AccountMaxWriteCapacityUnits", 80000, "TableMaxReadCapacityUnits",
                                40000, "TableMaxWriteCapacityUnits", 40000));
}
