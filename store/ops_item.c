/*
 * ops_item.c — the item operations: PutItem, UpdateItem, DeleteItem and
 * BatchWriteItem (proposed to the partition's group), GetItem and
 * BatchGetItem (read from this node's replica). Rows of the operation table
 * (router.c), which resolved the table and the partition already.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "store/api_internal.h"
#include "proto/av.h"
#include "store/items.h"
#include "store/op.h"

/* ---- item writes ---- */

struct wcall {
    struct call c;
    struct table *t;
    struct op op;
    struct batch *batch; /* BatchWriteItem member, or NULL */
    json_t *request;     /* BatchWriteItem: the original request entry */
};

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
    api_reply_json(&c, out);
}

static void wcall_free(struct wcall *w)
{
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
    /* NERR_BUSY: never appended, or overwritten; it cannot commit as this
     * proposal, so the router proposes it again (router.h). This attempt's
     * state goes first: the retry may run on another thread at once. */
    if (status == NERR_BUSY && w->c.rc) {
        struct call c = w->c;
        op_result_free(r);
        wcall_free(w);
        if (router_retry(c.rc))
            return;
        api_reply_err(&c, "ServiceUnavailable",
                      "no leader of the partition accepted the write in time; it was not "
                      "applied; retry");
        router_finish(c.rc);
        return;
    }
    if (status == NERR_TIMEOUT) {
        api_reply_err(
            &w->c, "InternalServerError",
            "no quorum of replicas acknowledged the write in time; its outcome is unknown");
    } else if (status == NERR_BUSY) {
        api_reply_err(&w->c, "ServiceUnavailable",
                      "no leader of the partition accepted the write; it was not applied; retry");
    } else if (status) {
        api_reply_err(&w->c, "InternalServerError", "the write could not be made durable (%s)",
                      nerr_name(status));
    } else if (!r) {
        api_reply_err(&w->c, "InternalServerError", "no result");
    } else if (r->status == NERR_CONDITION) {
        api_reply_err(&w->c, "ConditionalCheckFailedException", "The conditional request failed");
    } else if (r->status == NERR_NOTFOUND) {
        api_reply_no_table(&w->c, w->t->name);
    } else if (r->status) {
        api_reply_err(&w->c, "ValidationException", "%s", r->msg);
    } else {
        json_t *out = json_object();
        json_t *attrs = r->old_item ? r->old_item : r->new_item;
        if (attrs && json_object_size(attrs) > 0)
            json_object_set(out, "Attributes", attrs);
        api_reply_json(&w->c, out);
    }
    op_result_free(r);
    router_finish(w->c.rc);
    wcall_free(w);
}

/* Proposes w->op on its partition (the router's when it resolved it); on a
 * synchronous failure replies (or records it in the batch), or has the
 * router retry it, and frees w. */
static void propose_write(struct wcall *w)
{
    char *bytes = NULL;
    size_t len = 0;
    struct nerr e = {0};
    w->op.wall_ms = clock_wall_ms(); /* when it was proposed (op.h) */
    int rc = op_encode(&w->op, &bytes, &len, &e);
    if (!rc) {
        struct partition *p =
            api_partition_of(&w->c, w->t, json_object_get(w->op.key, w->t->hash_name));
        struct group *g = p->g; /* read once: NULL once this node left the group */
        rc = g ? group_propose(g, bytes, len, &w->op, write_done, w) : NERR_BUSY;
    }
    free(bytes);
    if (rc)
        write_done(w, rc, NULL);
}

static int parse_rv(struct call *c, json_t *req, int allow_update, enum op_rv *rv)
{
    const char *s;
    *rv = RV_NONE;
    if (api_get_str(c, req, "ReturnValues", &s))
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
        api_reply_err(c, "ValidationException", "ReturnValues can only be %s",
                      allow_update ? "NONE, ALL_OLD, UPDATED_OLD, ALL_NEW or UPDATED_NEW"
                                   : "ALL_OLD or NONE");
        return -1;
    }
    return 0;
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
    if (api_refuse_legacy(c, req) || api_req_names_values(c, req, &names, &values) ||
        api_get_str(c, req, "ConditionExpression", &cond) ||
        (kind == OP_UPDATE && api_get_str(c, req, "UpdateExpression", &update)) ||
        parse_rv(c, req, kind == OP_UPDATE, &op->rv))
        return -1;
    if (kind == OP_PUT) {
        json_t *item = json_object_get(req, "Item");
        if (!item) {
            api_reply_err(c, "ValidationException",
                          "1 validation error detected: Value null at 'item' failed to satisfy "
                          "constraint: Member must not be null");
            return -1;
        }
        if (av_validate_item(item, &e)) {
            api_reply_validation(c, &e);
            return -1;
        }
        if (av_item_size(item) > ITEMS_MAX_BYTES) {
            api_reply_err(c, "ValidationException",
                          "Item size has exceeded the maximum allowed size");
            return -1;
        }
        op->item = json_incref(item);
        if (table_key(t, item, 0, &op->key, &op->kbytes, &op->klen, &e))
            goto invalid;
    } else {
        json_t *key = json_object_get(req, "Key");
        if (!key) {
            api_reply_err(c, "ValidationException",
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
    api_reply_validation(c, &e);
    return -1;
}

static void item_write(struct call *c, json_t *req, enum op_kind kind)
{
    struct table *t = api_req_table(c, req, NULL);
    if (!t)
        return;
    struct wcall *w = calloc(1, sizeof *w);
    if (!w) {
        table_put(t);
        api_reply_err(c, "InternalServerError", "out of memory");
        return;
    }
    w->c = *c;
    w->t = t;
    if (build_write(c, req, t, kind, &w->op)) {
        table_put(t);
        free(w);
        return;
    }
    w->c.rc = call_take(c); /* write_done may route it again */
    propose_write(w);
}

void ops_batch_write(struct call *c, json_t *req)
{
    json_t *ri = json_object_get(req, "RequestItems");
    const char *tname;
    json_t *list;
    size_t total = 0, i;
    if (!json_is_object(ri) || json_object_size(ri) == 0) {
        api_reply_err(c, "ValidationException",
                      "1 validation error detected: Value at 'requestItems' failed to satisfy "
                      "constraint: Member must have length greater than or equal to 1");
        return;
    }
    json_object_foreach(ri, tname, list)
    {
        if (!json_is_array(list) || json_array_size(list) == 0) {
            api_reply_err(c, "ValidationException",
                          "1 validation error detected: Value at 'requestItems' failed to satisfy "
                          "constraint: Map value must satisfy constraint: [Member must have length "
                          "less than or equal to 25, Member must have length greater than or equal "
                          "to 1]");
            return;
        }
        total += json_array_size(list);
    }
    if (total > BATCH_WRITE_MAX) {
        api_reply_err(c, "ValidationException",
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
        struct table *t = api_req_table(c, treq, NULL);
        json_decref(treq);
        if (!t) {
            bad = 1;
            break;
        }
        json_t *e;
        json_array_foreach(list, i, e)
        {
            json_t *put = json_object_get(e, "PutRequest"),
                   *del = json_object_get(e, "DeleteRequest");
            if (!!put == !!del || (put && !json_object_get(put, "Item")) ||
                (del && !json_object_get(del, "Key"))) {
                api_reply_err(
                    c, "ValidationException",
                    "Supplied AttributeValue has more than one datatypes set, must contain "
                    "exactly one of PutRequest or DeleteRequest");
                bad = 1;
                break;
            }
            struct wcall *w = calloc(1, sizeof *w);
            if (!w) {
                api_reply_err(c, "InternalServerError", "out of memory");
                bad = 1;
                break;
            }
            w->c = *c;
            w->c.rc = NULL; /* a member's failure goes to UnprocessedItems */
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
                    api_reply_err(c, "ValidationException",
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
        api_reply_err(c, "InternalServerError", "out of memory");
        bad = 1;
    }
    if (bad) {
        for (size_t k = 0; k < n; k++)
            wcall_free(ws[k]);
        return;
    }
    b->c = *c;
    b->c.rc = NULL;
    pthread_mutex_init(&b->mu, NULL);
    b->pending = (int)n;
    b->unprocessed = json_object();
    for (size_t k = 0; k < n; k++) {
        ws[k]->batch = b;
        propose_write(ws[k]);
    }
}

void ops_get_item(struct call *c, json_t *req)
{
    struct table *t = api_req_table(c, req, NULL);
    if (!t)
        return;
    struct nerr e = {0};
    struct read_exprs rx;
    json_t *key = NULL, *k = json_object_get(req, "Key");
    unsigned char *kb = NULL;
    size_t klen;
    json_t *cr = json_object_get(req, "ConsistentRead");
    if (cr && !json_is_boolean(cr)) {
        api_reply_err(c, "SerializationException", "ConsistentRead must be a boolean");
        goto out_t;
    }
    if (api_refuse_legacy(c, req) || api_parse_read_exprs(c, req, 0, NULL, &rx))
        goto out_t;
    if (!k) {
        api_reply_err(c, "ValidationException",
                      "1 validation error detected: Value null at 'key' failed to satisfy "
                      "constraint: Member must not be null");
        goto out;
    }
    if (av_validate_item(k, &e) || table_key(t, k, 1, &key, &kb, &klen, &e)) {
        api_reply_validation(c, &e);
        goto out;
    }
    /* One node: every read sees every acknowledged write, which is both the
     * strongly consistent answer and the eventually consistent one. */
    struct partition *p = api_partition_of(c, t, json_object_get(key, t->hash_name));
    char *val = NULL;
    size_t vlen = 0;
    if (!p->g) {
        api_reply_err(c, "ServiceUnavailable", "no replica of this partition on this node");
        goto out;
    }
    int rc = items_read(c->a->st, p, kb, klen, &val, &vlen, &e);
    if (rc == NERR_NOTFOUND) {
        c->reply(c->arg, 200, strdup("{}"));
    } else if (rc) {
        api_reply_validation(c, &e);
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
            api_reply_err(c, "InternalServerError", "out of memory");
        }
    } else {
        json_error_t je;
        json_t *item = json_loadb(val, vlen, JSON_ALLOW_NUL, &je);
        if (!item) {
            api_reply_err(c, "InternalServerError", "stored item is not JSON");
        } else {
            json_t *pi = expr_project(rx.proj, item);
            json_decref(item);
            json_t *out = json_object();
            if (pi && json_object_size(pi) > 0)
                json_object_set(out, "Item", pi);
            json_decref(pi);
            api_reply_json(c, out);
        }
    }
    free(val);
out:
    api_read_exprs_clear(&rx);
out_t:
    json_decref(key);
    free(kb);
    table_put(t);
}

void ops_batch_get(struct call *c, json_t *req)
{
    json_t *ri = json_object_get(req, "RequestItems");
    const char *tname;
    json_t *spec;
    size_t total = 0;
    if (!json_is_object(ri) || json_object_size(ri) == 0) {
        api_reply_err(c, "ValidationException",
                      "1 validation error detected: Value at 'requestItems' failed to satisfy "
                      "constraint: Member must have length greater than or equal to 1");
        return;
    }
    json_object_foreach(ri, tname, spec)
    {
        json_t *keys = json_object_get(spec, "Keys");
        if (!json_is_array(keys) || json_array_size(keys) == 0) {
            api_reply_err(c, "ValidationException",
                          "1 validation error detected: Value at 'requestItems.%s.member.keys' "
                          "failed to satisfy constraint: Member must have length greater than or "
                          "equal to 1",
                          tname);
            return;
        }
        total += json_array_size(keys);
    }
    if (total > BATCH_GET_MAX) {
        api_reply_err(c, "ValidationException",
                      "Too many items requested for the BatchGetItem call");
        return;
    }
    json_t *responses = json_object();
    struct nerr e = {0};
    json_object_foreach(ri, tname, spec)
    {
        json_t *treq = json_pack("{s:s}", "TableName", tname);
        struct table *t = api_req_table(c, treq, NULL);
        json_decref(treq);
        struct read_exprs rx = {0};
        if (!t || api_refuse_legacy(c, spec) || api_parse_read_exprs(c, spec, 0, NULL, &rx)) {
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
                     : !p->g
                         ? nerr_set(&e, NERR_IO, "no replica of partition %s on this node", p->name)
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
        api_read_exprs_clear(&rx);
        table_put(t);
        if (fail) {
            json_decref(list);
            json_decref(responses);
            api_reply_validation(c, &e);
            return;
        }
        json_object_set_new(responses, tname, list);
    }
    api_reply_json(c, json_pack("{s:o, s:{}}", "Responses", responses, "UnprocessedKeys"));
}

/* ---- the rows of the operation table ---- */

void ops_put_item(struct call *c, json_t *r)
{
    item_write(c, r, OP_PUT);
}
void ops_delete_item(struct call *c, json_t *r)
{
    item_write(c, r, OP_DELETE);
}
void ops_update_item(struct call *c, json_t *r)
{
    item_write(c, r, OP_UPDATE);
}
