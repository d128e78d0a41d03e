/*
 * ops_query.c — Query (one partition's key range) and Scan (a table's
 * partitions in order, or the one NinesPartition names): pages of at most
 * 1 MB read through an LMDB cursor after group_host_barrier, so that they
 * see every acknowledged write. Rows of the operation table (router.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/api_internal.h"
#include "proto/av.h"
#include "store/items.h"

static json_t *load_value(const MDB_val *v)
{
    json_error_t je;
    return json_loadb(v->mv_data, v->mv_size, JSON_ALLOW_NUL, &je);
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
    api_reply_json(c, out);
}

static void page_clear(struct page *pg)
{
    json_decref(pg->items);
    json_decref(pg->last_key);
    api_read_exprs_clear(&pg->rx);
}

static int parse_page_opts(struct call *c, json_t *req, struct page *pg)
{
    json_t *lim = json_object_get(req, "Limit");
    const char *sel;
    if (lim && (!json_is_integer(lim) || json_integer_value(lim) < 1)) {
        api_reply_err(c, "ValidationException",
                      "1 validation error detected: Value at 'limit' failed to satisfy constraint: "
                      "Member must have value greater than or equal to 1");
        return -1;
    }
    pg->limit = lim ? (long)json_integer_value(lim) : 0;
    if (api_get_str(c, req, "Select", &sel))
        return -1;
    if (sel && strcmp(sel, "ALL_ATTRIBUTES") && strcmp(sel, "COUNT") &&
        strcmp(sel, "SPECIFIC_ATTRIBUTES")) {
        api_reply_err(c, "ValidationException",
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

void ops_query(struct call *c, json_t *req)
{
    struct table *t = api_req_table(c, req, NULL);
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
    if (api_refuse_legacy(c, req) || api_req_names_values(c, req, &names, &values) ||
        api_get_str(c, req, "KeyConditionExpression", &kce) || parse_page_opts(c, req, &pg))
        goto out;
    if (!kce) {
        api_reply_err(c, "ValidationException",
                      "Either the KeyConditions or KeyConditionExpression parameter must be "
                      "specified in the request.");
        goto out;
    }
    char htype[2] = {t->hash_type, 0}, rtype[2] = {t->range_type, 0};
    struct expr_key_schema schema = {t->hash_name, htype, t->range_name,
                                     t->range_name ? rtype : NULL};
    if (expr_parse_key_condition(kce, names, values, &schema, &kexpr, &kc, &e)) {
        api_reply_validation(c, &e);
        goto out;
    }
    /* The unused-names check spans the key condition too. */
    if (api_parse_read_exprs(c, req, 1, kexpr, &pg.rx))
        goto out;
    {
        char ht[2] = {t->hash_type, 0};
        if (av_key_check(kc.hash, t->hash_name, ht, 1, 0, &e)) {
            api_reply_validation(c, &e);
            goto out;
        }
    }
    if (kc.op != AV_KEY_ALL) {
        char rt[2] = {t->range_type, 0};
        const char *ty1 = av_type(kc.v1), *ty2 = kc.v2 ? av_type(kc.v2) : rt;
        if (!ty1 || strcmp(ty1, rt) || !ty2 || strcmp(ty2, rt) ||
            (kc.op == AV_KEY_BEGINS_WITH && t->range_type == 'N')) {
            api_reply_err(c, "ValidationException",
                          "One or more parameter values were invalid: Condition parameter type "
                          "does not match schema type");
            goto out;
        }
    }
    if (av_key_query_range(kc.hash, kc.op, kc.v1, kc.v2, &kr, &e)) {
        api_reply_validation(c, &e);
        goto out;
    }
    if (esk) {
        json_t *skey = NULL;
        if (av_validate_item(esk, &e) || table_key(t, esk, 1, &skey, &start, &start_len, &e)) {
            api_reply_validation(c, &e);
            goto out;
        }
        int same = av_equal(json_object_get(skey, t->hash_name), kc.hash);
        json_decref(skey);
        if (!same) {
            api_reply_err(c, "ValidationException", "The provided starting key is invalid");
            goto out;
        }
    }
    struct partition *p = api_partition_of(c, t, kc.hash);
    struct group *g = p->g; /* read once: NULL once this node left the group */
    if (!g) {
        api_reply_err(c, "ServiceUnavailable", "no replica of this partition on this node");
        goto out;
    }
    /* A cursor sees committed data only: commit what was acknowledged. */
    if ((group_host_barrier(group_host_of(g)) &&
         nerr_set(&e, NERR_IO, "the node cannot commit writes")) ||
        state_read_begin(c->a->st, &txn, &e) ||
        (mdb_cursor_open(txn, p->dbi, &cur) && nerr_set(&e, NERR_IO, "cursor"))) {
        api_reply_validation(c, &e);
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
        api_reply_validation(c, &e);
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

void ops_scan(struct call *c, json_t *req)
{
    struct table *t = api_req_table(c, req, NULL);
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
    if (api_refuse_legacy(c, req) || parse_page_opts(c, req, &pg) ||
        api_parse_read_exprs(c, req, 1, NULL, &pg.rx))
        goto out;
    json_int_t segment = 0, segments = 1;
    if (!!seg != !!tseg) {
        api_reply_err(c, "ValidationException",
                      "The TotalSegments parameter is required but was not present in the request "
                      "when Segment parameter is present");
        goto out;
    }
    if (seg) {
        segment = json_is_integer(seg) ? json_integer_value(seg) : -1;
        segments = json_is_integer(tseg) ? json_integer_value(tseg) : -1;
        if (segments < 1 || segments > 1000000 || segment < 0 || segment >= segments) {
            api_reply_err(c, "ValidationException",
                          "The Segment parameter is zero-based and must be less than parameter "
                          "TotalSegments: Segment: %lld is out of bounds; TotalSegments: %lld",
                          (long long)segment, (long long)segments);
            goto out;
        }
    }
    if (esk) {
        json_t *skey = NULL;
        if (av_validate_item(esk, &e) || table_key(t, esk, 1, &skey, &start, &start_len, &e)) {
            api_reply_err(c, "ValidationException", "The provided starting key is invalid: %s",
                          e.msg);
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
            api_reply_err(c, "ValidationException",
                          "NinesPartition must name a partition of the "
                          "table (0..%d) holding ExclusiveStartKey",
                          t->nparts - 1);
            goto out;
        }
        first_part = last_part = (int)op_;
    }
    for (int pi = first_part; pi <= last_part; pi++)
        if (!t->parts[pi].g) {
            api_reply_err(c, "ServiceUnavailable", "no replica of partition %s on this node",
                          t->parts[pi].name);
            goto out;
        }
    if ((group_host_barrier(group_host_of(t->parts[first_part].g)) &&
         nerr_set(&e, NERR_IO, "the node cannot commit writes")) ||
        state_read_begin(c->a->st, &txn, &e)) {
        api_reply_validation(c, &e);
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
                if (av_key_decode(k.mv_data, k.mv_size,
                                  t->range_name ? (char[2]){t->range_type, 0} : NULL, &hv, &rv,
                                  &e) == 0) {
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
        api_reply_validation(c, &e);
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
