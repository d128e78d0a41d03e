#include "store/op.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/catalog.h"
#include "store/expr.h"

static const char *kind_names[] = {NULL, "put", "delete", "update", "scrub", "repair", "seal"};
static const char *rv_names[] = {"NONE", "ALL_OLD", "ALL_NEW", "UPDATED_OLD", "UPDATED_NEW"};

int op_encode(const struct op *op, char **out, size_t *len, struct nerr *err)
{
    json_t *o = json_object();
    if (!o)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    json_object_set_new(o, "k", json_string(kind_names[op->kind]));
    if (op->kind == OP_SCRUB) {
        json_object_set_new(o, "id", json_string(op->scrub_id ? op->scrub_id : ""));
        json_object_set_new(o, "t", json_integer(op->scrub_ms));
    } else if (op->kind == OP_SEAL) {
        json_object_set_new(o, "f", json_integer((json_int_t)op->seal_first));
    } else if (op->kind == OP_REPAIR) {
        json_object_set(o, "key", op->key);
        json_object_set_new(o, "node", json_string(op->repair_node ? op->repair_node : ""));
        json_object_set_new(o, "x", json_string(op->repair_expect));
        if (op->repair_stored)
            json_object_set_new(o, "s", json_string(op->repair_stored));
    } else if (op->kind == OP_PUT)
        json_object_set(o, "i", op->item);
    else
        json_object_set(o, "key", op->key);
    if (op->cond)
        json_object_set_new(o, "c", json_string(op->cond));
    if (op->update)
        json_object_set_new(o, "u", json_string(op->update));
    if (op->names)
        json_object_set(o, "n", op->names);
    if (op->values)
        json_object_set(o, "v", op->values);
    if (op->rv)
        json_object_set_new(o, "r", json_string(rv_names[op->rv]));
    if (op->wall_ms > 0)
        json_object_set_new(o, "w", json_integer(op->wall_ms));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    *out = s;
    *len = strlen(s);
    return 0;
}

int op_scrub_id_ok(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n < 1 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
              (id[i] >= '0' && id[i] <= '9') || id[i] == '.' || id[i] == '_' || id[i] == '-'))
            return 0;
    return 1;
}

int op_repair_expect_ok(const char *x)
{
    if (!x)
        return 0;
    if (!strcmp(x, "absent"))
        return 1;
    if (strlen(x) != 64)
        return 0;
    for (size_t i = 0; i < 64; i++)
        if (!((x[i] >= '0' && x[i] <= '9') || (x[i] >= 'a' && x[i] <= 'f')))
            return 0;
    return 1;
}

/* The repair fields of o into op (key, kbytes, node, expectation, stored
 * bytes); the stored bytes must be a JSON object whose key is op's key. */
static int decode_repair(json_t *o, const struct table *t, struct op *op, struct nerr *err)
{
    const char *node = json_string_value(json_object_get(o, "node"));
    const char *x = json_string_value(json_object_get(o, "x"));
    json_t *s = json_object_get(o, "s");
    json_t *key = json_object_get(o, "key");
    if (!node || !*node || strlen(node) > 63 || !op_repair_expect_ok(x) || !key ||
        (s && !json_is_string(s)))
        return nerr_set(err, NERR_CORRUPT, "log entry is not a valid repair");
    int rc = table_key(t, key, 1, &op->key, &op->kbytes, &op->klen, err);
    if (rc)
        return rc;
    snprintf(op->repair_expect, sizeof op->repair_expect, "%s", x);
    if (!(op->repair_node = strdup(node)))
        return nerr_set(err, NERR_NOMEM, "out of memory");
    if (!s)
        return 0;
    if (!(op->repair_stored = strdup(json_string_value(s))))
        return nerr_set(err, NERR_NOMEM, "out of memory");
    json_t *item = json_loads(op->repair_stored, 0, NULL), *ikey = NULL;
    unsigned char *kb = NULL;
    size_t kl = 0;
    struct nerr e = {0};
    int same = json_is_object(item) && !table_key(t, item, 0, &ikey, &kb, &kl, &e) &&
               kl == op->klen && !memcmp(kb, op->kbytes, kl);
    json_decref(item);
    json_decref(ikey);
    free(kb);
    return same ? 0 : nerr_set(err, NERR_CORRUPT, "a repair's item is not an item of its key");
}

int op_parse_exprs(struct op *op, struct nerr *err)
{
    int rc = 0;
    if (op->cond && !op->cond_ast)
        rc = expr_parse_condition(op->cond, "ConditionExpression", op->names, op->values,
                                  &op->cond_ast, err);
    if (!rc && op->update && !op->update_ast)
        rc = expr_parse_update(op->update, op->names, op->values, &op->update_ast, err);
    return rc;
}

static char *dup_str(json_t *s)
{
    const char *v = json_string_value(s);
    return v ? strdup(v) : NULL;
}

int op_decode(const void *data, size_t len, const struct table *t, struct op *op, struct nerr *err)
{
    json_error_t je;
    memset(op, 0, sizeof *op);
    json_t *o = json_loadb(data, len, JSON_ALLOW_NUL, &je);
    if (!o)
        return nerr_set(err, NERR_CORRUPT, "log entry is not JSON: %s", je.text);
    const char *k = json_string_value(json_object_get(o, "k"));
    int rc = NERR_CORRUPT;
    for (int i = 1; i <= 6; i++)
        if (k && !strcmp(k, kind_names[i]))
            op->kind = (enum op_kind)i;
    const char *rv = json_string_value(json_object_get(o, "r"));
    for (int i = 0; rv && i < 5; i++)
        if (!strcmp(rv, rv_names[i]))
            op->rv = (enum op_rv)i;
    if (!op->kind)
        goto corrupt;
    json_t *w = json_object_get(o, "w");
    if (w && (!json_is_integer(w) || json_integer_value(w) < 0))
        goto corrupt;
    op->wall_ms = w ? json_integer_value(w) : 0;
    if (op->kind == OP_SCRUB) {
        const char *id = json_string_value(json_object_get(o, "id"));
        json_t *tm = json_object_get(o, "t");
        if (!op_scrub_id_ok(id) || !json_is_integer(tm) || !(op->scrub_id = strdup(id)))
            goto corrupt;
        op->scrub_ms = json_integer_value(tm);
        json_decref(o);
        return 0;
    }
    if (op->kind == OP_SEAL) {
        json_t *f = json_object_get(o, "f");
        if (!json_is_integer(f) || json_integer_value(f) < 1)
            goto corrupt;
        op->seal_first = (unsigned long long)json_integer_value(f);
        json_decref(o);
        return 0;
    }
    if (op->kind == OP_REPAIR) {
        if ((rc = decode_repair(o, t, op, err)))
            goto fail;
        json_decref(o);
        return 0;
    }
    op->item = json_incref(json_object_get(o, "i"));
    op->cond = dup_str(json_object_get(o, "c"));
    op->update = dup_str(json_object_get(o, "u"));
    op->names = json_incref(json_object_get(o, "n"));
    op->values = json_incref(json_object_get(o, "v"));
    json_t *src = op->kind == OP_PUT ? op->item : json_object_get(o, "key");
    if (!src)
        goto corrupt;
    if ((rc = table_key(t, src, op->kind != OP_PUT, &op->key, &op->kbytes, &op->klen, err)))
        goto fail;
    if ((rc = op_parse_exprs(op, err)))
        goto fail;
    json_decref(o);
    return 0;
corrupt:
    rc = nerr_set(err, NERR_CORRUPT, "log entry is not a valid item operation");
fail:
    json_decref(o);
    op_clear(op);
    return rc;
}

void op_clear(struct op *op)
{
    json_decref(op->item);
    json_decref(op->key);
    free(op->kbytes);
    free(op->cond);
    free(op->update);
    free(op->scrub_id);
    free(op->repair_node);
    free(op->repair_stored);
    json_decref(op->names);
    json_decref(op->values);
    expr_free(op->cond_ast);
    expr_free(op->update_ast);
    memset(op, 0, sizeof *op);
}

void op_result_free(struct op_result *r)
{
    if (!r)
        return;
    json_decref(r->old_item);
    json_decref(r->new_item);
    free(r);
}
