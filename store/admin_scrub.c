/*
 * admin_scrub.c — the NinesAdmin operations of the scrubber (docs/scrub.md):
 *
 *   ScrubMark   {TableName, Partition, Id}
 *               proposes a scrub marker (op.h, OP_SCRUB) on the partition's
 *               log through this node's replica (a follower hands it to the
 *               leader) and answers once this replica applied it:
 *               {Lsn, Id}. A node without a replica of the partition
 *               answers ValidationException naming the nodes that have one.
 *   ScrubDigest {TableName, Partition, Id, Buckets?}
 *               this replica's record of marker Id (digest.h):
 *               {Node, Lsn, Items, Bytes, ProposedMs, AppliedMs, Fingerprint
 *               (SHA-256 of the digest's lanes, hex), Buckets (with
 *               Buckets: true: 256 hex strings of the bucket lanes)}; or
 *               ResourceNotFoundException with {Applied} when this replica
 *               has not applied it yet (the caller polls).
 *
 *   ScrubKeys   {TableName, Partition, Bucket, Sub?, After?, Limit?, SubDigests?}
 *               this replica's items of one bucket (and sub-bucket), read
 *               now in one read transaction, in key order:
 *               {Node, Items: [{Key (DynamoDB JSON), KeyBytes (hex), Hash
 *               (digest_item_hash of the bytes read now, hex)}], Scanned,
 *               Next?}; Limit 1..10000 (default 1000), at most 200,000
 *               keys looked at per call; Next (when more) goes back as
 *               After. With SubDigests: true, instead {Node, SubDigests:
 *               [256 hex], Counts: [256], Scanned}: the bucket's
 *               sub-bucket digests (digest.h).
 *   ScrubItem   {TableName, Partition, Key}
 *               this replica's stored item of Key, read now: {Node,
 *               Present, Stored (the stored text), Item, Hash} or {Node,
 *               Present: false}. Not GetItem: that reads the leader's copy.
 *   ScrubRepair {TableName, Partition, Key, Replica, Expect, Item | Absent}
 *               proposes a repair (op.h, OP_REPAIR) through this node and
 *               answers once applied here: {Lsn, Repaired (this node is
 *               Replica and changed the key), Why (when Replica refused:
 *               its bytes no longer hash to Expect)}.
 *
 * All are admin calls: signed when the cluster has credentials
 * (docs/security.md). Only ScrubRepair changes an item.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/le.h"
#include "store/api_internal.h"
#include "proto/av.h"
#include "store/digest.h"
#include "store/items.h"
#include "store/op.h"
#include "store/state.h"

struct partition *admin_scrub_partition(struct call *c, json_t *req, struct table **t)
{
    const char *name;
    *t = NULL;
    if (api_get_str(c, req, "TableName", &name))
        return NULL;
    json_t *pj = json_object_get(req, "Partition");
    if (!name || !json_is_integer(pj)) {
        api_reply_err(c, "ValidationException", "TableName and Partition (a number) are required");
        return NULL;
    }
    if (!(*t = catalog_get(c->a->opt.cat, name))) {
        api_reply_no_table(c, name);
        return NULL;
    }
    json_int_t pi = json_integer_value(pj);
    if (pi < 0 || pi >= (*t)->nparts) {
        api_reply_err(c, "ValidationException", "table %s has partitions 0..%d", name,
                      (*t)->nparts - 1);
        table_put(*t);
        *t = NULL;
        return NULL;
    }
    struct partition *p = &(*t)->parts[pi];
    if (!p->g) {
        char nodes[256] = "";
        const struct pmembers *m = partition_members(p);
        for (int k = 0; k < m->nmembers; k++)
            snprintf(nodes + strlen(nodes), sizeof nodes - strlen(nodes), "%s%s", k ? ", " : "",
                     m->members[k]);
        api_reply_err(c, "ValidationException",
                      "this node holds no replica of %s partition %d; ask one of: %s", name,
                      (int)pi, nodes);
        table_put(*t);
        *t = NULL;
        return NULL;
    }
    return p;
}

/* The partition and the scrub id of a request ({TableName, Partition,
 * Id}); replies and returns NULL when either is wrong. *t as above. */
static struct partition *scrub_request(struct call *c, json_t *req, struct table **t,
                                       const char **id)
{
    struct partition *p = admin_scrub_partition(c, req, t);
    if (!p)
        return NULL;
    if (api_get_str(c, req, "Id", id))
        p = NULL;
    else if (!op_scrub_id_ok(*id)) {
        api_reply_err(c, "ValidationException", "Id: 1 to 64 characters of [A-Za-z0-9._-]");
        p = NULL;
    }
    if (!p) {
        table_put(*t);
        *t = NULL;
    }
    return p;
}

struct mark_call {
    struct call c;
    struct table *t;
    struct partition *p;
    char id[65];
    struct op op; /* the proposal's op: a local proposal carries one (group.h) */
};

static int read_mark(struct api *a, struct partition *p, const char *id, struct digest_mark *m,
                     uint64_t *applied, struct nerr *e)
{
    MDB_txn *txn;
    int rc = state_read_begin(a->st, &txn, e);
    if (rc)
        return rc;
    rc = digest_mark_get(txn, p->ddbi, p->name, id, m, e);
    if (applied && state_applied_get(a->st, txn, p->name, applied, e))
        *applied = 0;
    state_read_end(a->st, txn);
    return rc;
}

/* On the applier thread, right after the marker was applied here (its
 * LMDB transaction commits a few ms later: the answer carries the index
 * from the apply's result, not from a read of LMDB). */
static void mark_done(void *arg, int status, void *result)
{
    struct mark_call *mc = arg;
    struct op_result *r = result;
    if (status)
        api_reply_err(&mc->c, status == NERR_BUSY ? "ServiceUnavailable" : "InternalServerError",
                      "the scrub marker was not applied (%s); retry", nerr_name(status));
    else if (!r || !r->lsn)
        api_reply_err(&mc->c, "InternalServerError",
                      "the scrub marker was applied without an index");
    else
        api_reply_json(&mc->c, json_pack("{s:I,s:s}", "Lsn", (json_int_t)r->lsn, "Id", mc->id));
    op_result_free(r);
    op_clear(&mc->op);
    table_put(mc->t);
    free(mc);
}

void admin_scrub_mark(struct call *c, json_t *req)
{
    struct table *t;
    const char *id;
    struct partition *p = scrub_request(c, req, &t, &id);
    if (!p)
        return;
    char *bytes = NULL;
    size_t len = 0;
    struct nerr e = {0};
    struct mark_call *mc = calloc(1, sizeof *mc);
    if (mc) {
        mc->op.kind = OP_SCRUB;
        mc->op.scrub_id = strdup(id);
        mc->op.scrub_ms = clock_wall_ms();
    }
    if (!mc || !mc->op.scrub_id || op_encode(&mc->op, &bytes, &len, &e)) {
        if (mc)
            op_clear(&mc->op);
        free(mc);
        table_put(t);
        api_reply_err(c, "InternalServerError", "out of memory");
        return;
    }
    mc->c = *c;
    mc->t = t;
    mc->p = p;
    snprintf(mc->id, sizeof mc->id, "%s", id);
    struct group *g = p->g; /* NULL once this node left the group */
    int rc = g ? group_propose(g, bytes, len, &mc->op, mark_done, mc) : NERR_BUSY;
    free(bytes);
    if (rc)
        mark_done(mc, rc, NULL);
}

static char *hex_of(const unsigned char *b, size_t n)
{
    static const char hx[] = "0123456789abcdef";
    char *s = malloc(2 * n + 1);
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        s[2 * i] = hx[b[i] >> 4];
        s[2 * i + 1] = hx[b[i] & 15];
    }
    s[2 * n] = 0;
    return s;
}

void admin_scrub_digest(struct call *c, json_t *req)
{
    struct table *t;
    const char *id;
    struct partition *p = scrub_request(c, req, &t, &id);
    if (!p)
        return;
    int want_buckets = json_is_true(json_object_get(req, "Buckets"));
    struct digest_mark *m = calloc(1, sizeof *m);
    struct nerr e = {0};
    uint64_t applied = 0;
    int rc = m ? read_mark(c->a, p, id, m, &applied, &e) : NERR_NOMEM;
    if (rc == NERR_NOTFOUND) {
        api_reply_err(c, "ResourceNotFoundException",
                      "this replica has not applied scrub marker %s (applied index %llu)", id,
                      (unsigned long long)applied);
    } else if (rc) {
        api_reply_err(c, "InternalServerError", "%s", e.msg);
    } else {
        unsigned char lanes[2 * DIGEST_LANES], fp[32];
        for (size_t i = 0; i < DIGEST_LANES; i++)
            le_put16(lanes + 2 * i, m->d.lane[i]);
        unsigned fl = 0;
        EVP_Digest(lanes, sizeof lanes, fp, &fl, EVP_sha256(), NULL);
        char *fph = hex_of(fp, sizeof fp);
        json_t *o =
            json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:b,s:s?}", "Node",
                      c->a->opt.self_id ? c->a->opt.self_id : "", "Lsn", (json_int_t)m->lsn,
                      "Items", (json_int_t)m->d.items, "Bytes", (json_int_t)m->d.bytes,
                      "ProposedMs", (json_int_t)m->proposed_ms, "AppliedMs",
                      (json_int_t)m->applied_ms, "HasDigest", m->has_digest, "Fingerprint", fph);
        free(fph);
        if (o && want_buckets) {
            json_t *arr = json_array();
            for (size_t b = 0; arr && b < DIGEST_BUCKETS; b++) {
                unsigned char bl[2 * DIGEST_BUCKET_LANES];
                for (size_t i = 0; i < DIGEST_BUCKET_LANES; i++)
                    le_put16(bl + 2 * i, m->bucket[b][i]);
                char *h = hex_of(bl, sizeof bl);
                json_array_append_new(arr, json_string(h ? h : ""));
                free(h);
            }
            json_object_set_new(o, "Buckets", arr);
        }
        if (o)
            api_reply_json(c, o);
        else
            api_reply_err(c, "InternalServerError", "out of memory");
    }
    free(m);
    table_put(t);
}

/* ---- the drill-down and the repair (docs/scrub.md) ---- */

/* Hex of bytes into a new JSON string. */
static json_t *hex_json(const void *b, size_t n)
{
    char *h = hex_of(b, n);
    json_t *s = h ? json_string(h) : NULL;
    free(h);
    return s;
}

/* Hex text into bytes (*out malloc'd). -1 when not even-length hex. */
static int unhex(const char *s, unsigned char **out, size_t *len)
{
    size_t n = strlen(s);
    if (n % 2 || !(*out = malloc(n / 2 + 1)))
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int v = 0;
        for (int j = 0; j < 2; j++) {
            char ch = s[2 * i + j];
            int d = ch >= '0' && ch <= '9'   ? ch - '0'
                    : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                    : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                             : -1;
            if (d < 0) {
                free(*out);
                *out = NULL;
                return -1;
            }
            v = v * 16 + d;
        }
        (*out)[i] = (unsigned char)v;
    }
    *len = n / 2;
    return 0;
}

/* An optional integer member in [lo, hi]; *out keeps its default when
 * absent. Replies and returns -1 when it is wrong. */
static int opt_int(struct call *c, json_t *req, const char *name, long long lo, long long hi,
                   long long *out)
{
    json_t *v = json_object_get(req, name);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        api_reply_err(c, "ValidationException", "%s: an integer from %lld to %lld", name, lo, hi);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

struct keys_acc {
    const struct table *t;
    json_t *items;
};

static int keys_fn(void *arg, const void *key, size_t klen, const void *item, size_t ilen,
                   const unsigned char hash[DIGEST_HASH_BYTES], struct nerr *err)
{
    (void)item, (void)ilen;
    struct keys_acc *a = arg;
    char hx[2 * DIGEST_HASH_BYTES + 1];
    digest_hash_hex(hash, hx);
    json_t *kj = items_key_json(a->t, key, klen);
    json_t *o = json_pack("{s:o,s:o,s:s}", "Key", kj ? kj : json_null(), "KeyBytes",
                          hex_json(key, klen), "Hash", hx);
    if (!o || json_array_append_new(a->items, o))
        return nerr_set(err, NERR_NOMEM, "out of memory");
    return 0;
}

#define KEYS_LIMIT_DEFAULT 1000
#define KEYS_LIMIT_MAX 10000
#define KEYS_EXAMINED_MAX 200000 /* keys looked at per page: bounds one call's work */

void admin_scrub_keys(struct call *c, json_t *req)
{
    struct table *t;
    struct partition *p = admin_scrub_partition(c, req, &t);
    if (!p)
        return;
    long long bucket = -1, sub = -1, limit = KEYS_LIMIT_DEFAULT;
    const char *after = NULL;
    unsigned char *after_b = NULL;
    size_t after_len = 0;
    json_t *out = NULL;
    struct nerr e = {0};
    MDB_txn *txn = NULL;
    if (!json_object_get(req, "Bucket")) {
        api_reply_err(c, "ValidationException", "Bucket (0..255) is required");
        goto done;
    }
    if (opt_int(c, req, "Bucket", 0, DIGEST_BUCKETS - 1, &bucket) ||
        opt_int(c, req, "Sub", 0, DIGEST_BUCKETS - 1, &sub) ||
        opt_int(c, req, "Limit", 1, KEYS_LIMIT_MAX, &limit) || api_get_str(c, req, "After", &after))
        goto done;
    if (after && (unhex(after, &after_b, &after_len) || !after_len || after_len > 511)) {
        api_reply_err(c, "ValidationException", "After: the Next of a previous answer");
        goto done;
    }
    int rc = state_read_begin(c->a->st, &txn, &e);
    if (rc)
        goto fail;
    const char *self = c->a->opt.self_id ? c->a->opt.self_id : "";
    if (json_is_true(json_object_get(req, "SubDigests"))) {
        unsigned char(*x)[DIGEST_HASH_BYTES] = malloc(DIGEST_BUCKETS * DIGEST_HASH_BYTES);
        uint32_t count[DIGEST_BUCKETS];
        size_t examined = 0;
        rc = x ? digest_sub_digests(txn, p->dbi, (unsigned)bucket, x, count, &examined, &e)
               : nerr_set(&e, NERR_NOMEM, "out of memory");
        json_t *subs = json_array(), *counts = json_array();
        for (size_t i = 0; !rc && i < DIGEST_BUCKETS; i++) {
            json_array_append_new(subs, hex_json(x[i], DIGEST_HASH_BYTES));
            json_array_append_new(counts, json_integer(count[i]));
        }
        free(x);
        if (!rc)
            out = json_pack("{s:s,s:o,s:o,s:I}", "Node", self, "SubDigests", subs, "Counts", counts,
                            "Scanned", (json_int_t)examined);
        else {
            json_decref(subs);
            json_decref(counts);
        }
    } else {
        struct keys_acc acc = {t, json_array()};
        struct digest_scan s = {.bucket = (unsigned)bucket,
                                .sub = (int)sub,
                                .after = after_b,
                                .after_len = after_len,
                                .limit = (size_t)limit,
                                .max_examined = KEYS_EXAMINED_MAX};
        struct digest_scan_end *end = calloc(1, sizeof *end);
        rc = !acc.items || !end ? nerr_set(&e, NERR_NOMEM, "out of memory")
                                : digest_bucket_scan(txn, p->dbi, &s, keys_fn, &acc, end, &e);
        if (!rc) {
            out = json_pack("{s:s,s:O,s:I}", "Node", self, "Items", acc.items, "Scanned",
                            (json_int_t)end->examined);
            if (out && end->more)
                json_object_set_new(out, "Next", hex_json(end->last, end->last_len));
        }
        json_decref(acc.items);
        free(end);
    }
    state_read_end(c->a->st, txn);
    if (rc)
        goto fail;
    if (!out) {
        api_reply_err(c, "InternalServerError", "out of memory");
        goto done;
    }
    api_reply_json(c, out);
    goto done;
fail:
    api_reply_err(c, "InternalServerError", "%s", e.msg);
done:
    free(after_b);
    table_put(t);
}

/* The Key of a request, checked against the table and the partition:
 * replies and returns -1 when it is wrong. */
static int request_key(struct call *c, json_t *req, struct table *t, struct partition *p,
                       json_t **key, unsigned char **kb, size_t *kl)
{
    struct nerr e = {0};
    json_t *k = json_object_get(req, "Key");
    if (!json_is_object(k)) {
        api_reply_err(c, "ValidationException", "Key (the key attributes) is required");
        return -1;
    }
    if (table_key(t, k, 1, key, kb, kl, &e)) {
        api_reply_validation(c, &e);
        return -1;
    }
    if (table_partition_for(t, json_object_get(*key, t->hash_name)) != p) {
        api_reply_err(c, "ValidationException", "the Key belongs to another partition");
        json_decref(*key);
        free(*kb);
        *key = NULL;
        *kb = NULL;
        return -1;
    }
    return 0;
}

void admin_scrub_item(struct call *c, json_t *req)
{
    struct table *t;
    struct partition *p = admin_scrub_partition(c, req, &t);
    if (!p)
        return;
    json_t *key = NULL, *out = NULL;
    unsigned char *kb = NULL;
    size_t kl = 0;
    struct nerr e = {0};
    MDB_txn *txn;
    if (request_key(c, req, t, p, &key, &kb, &kl))
        goto done;
    int rc = state_read_begin(c->a->st, &txn, &e);
    if (rc) {
        api_reply_err(c, "InternalServerError", "%s", e.msg);
        goto done;
    }
    MDB_val v;
    rc = items_get_raw(txn, p, kb, kl, &v, &e);
    const char *self = c->a->opt.self_id ? c->a->opt.self_id : "";
    if (rc == NERR_NOTFOUND) {
        out = json_pack("{s:s,s:b}", "Node", self, "Present", 0);
        rc = 0;
    } else if (!rc) {
        unsigned char h[DIGEST_HASH_BYTES];
        char hx[2 * DIGEST_HASH_BYTES + 1];
        if (!(rc = digest_item_hash(kb, kl, v.mv_data, v.mv_size, h, &e))) {
            digest_hash_hex(h, hx);
            out = json_pack("{s:s,s:b,s:s%,s:s}", "Node", self, "Present", 1, "Stored",
                            (const char *)v.mv_data, v.mv_size, "Hash", hx);
            json_t *item = json_loadb(v.mv_data, v.mv_size, 0, NULL);
            if (out && item)
                json_object_set_new(out, "Item", item);
            else
                json_decref(item);
        }
    }
    state_read_end(c->a->st, txn);
    if (rc)
        api_reply_err(c, "InternalServerError", "%s", e.msg);
    else if (!out)
        api_reply_err(c, "InternalServerError", "out of memory (or stored bytes not UTF-8)");
    else
        api_reply_json(c, out);
done:
    json_decref(key);
    free(kb);
    table_put(t);
}

/* On the applier thread, once the repair was applied here. */
static void repair_done(void *arg, int status, void *result)
{
    struct mark_call *mc = arg;
    struct op_result *r = result;
    if (status)
        api_reply_err(&mc->c, status == NERR_BUSY ? "ServiceUnavailable" : "InternalServerError",
                      "the repair was not applied (%s); retry", nerr_name(status));
    else if (!r)
        api_reply_err(&mc->c, "InternalServerError", "the repair was applied without a result");
    else if (r->status == NERR_NOTFOUND)
        api_reply_no_table(&mc->c, mc->t->name);
    else
        api_reply_json(&mc->c, json_pack("{s:I,s:b,s:s}", "Lsn", (json_int_t)r->lsn, "Repaired",
                                         r->repaired, "Why", r->status ? r->msg : ""));
    op_result_free(r);
    op_clear(&mc->op);
    table_put(mc->t);
    free(mc);
}

void admin_scrub_repair(struct call *c, json_t *req)
{
    struct table *t;
    struct partition *p = admin_scrub_partition(c, req, &t);
    if (!p)
        return;
    const char *replica = NULL, *expect = NULL, *stored = NULL;
    char *bytes = NULL;
    size_t len = 0;
    struct nerr e = {0};
    struct mark_call *mc = NULL;
    int absent = json_is_true(json_object_get(req, "Absent"));
    if (api_get_str(c, req, "Replica", &replica) || api_get_str(c, req, "Expect", &expect) ||
        api_get_str(c, req, "Item", &stored))
        goto fail;
    if (!replica || !*replica || strlen(replica) > 63 || !op_repair_expect_ok(expect) ||
        !!stored == absent) {
        api_reply_err(c, "ValidationException",
                      "Replica (a node id), Expect (64 hex digits or \"absent\") and either "
                      "Item (the majority's stored item text) or Absent: true are required");
        goto fail;
    }
    int member = 0;
    const struct pmembers *m = partition_members(p);
    for (int k = 0; k < m->nmembers; k++)
        member |= !strcmp(m->members[k], replica);
    if (!member) {
        api_reply_err(c, "ValidationException", "%s holds no replica of this partition", replica);
        goto fail;
    }
    if (!(mc = calloc(1, sizeof *mc))) {
        api_reply_err(c, "InternalServerError", "out of memory");
        goto fail;
    }
    mc->op.kind = OP_REPAIR;
    if (request_key(c, req, t, p, &mc->op.key, &mc->op.kbytes, &mc->op.klen))
        goto fail;
    snprintf(mc->op.repair_expect, sizeof mc->op.repair_expect, "%s", expect);
    mc->op.repair_node = strdup(replica);
    mc->op.repair_stored = stored ? strdup(stored) : NULL;
    if (!mc->op.repair_node || (stored && !mc->op.repair_stored) ||
        op_encode(&mc->op, &bytes, &len, &e)) {
        api_reply_err(c, "InternalServerError", "out of memory");
        goto fail;
    }
    /* The item must be an item of this key: decoding checks it, as every
     * replica will when it applies the entry. */
    struct op check;
    if (op_decode(bytes, len, t, &check, &e)) {
        api_reply_err(c, "ValidationException", "%s", e.msg);
        goto fail;
    }
    op_clear(&check);
    mc->c = *c;
    mc->t = t;
    mc->p = p;
    struct group *g = p->g; /* NULL once this node left the group */
    int rc = g ? group_propose(g, bytes, len, &mc->op, repair_done, mc) : NERR_BUSY;
    free(bytes);
    if (rc)
        repair_done(mc, rc, NULL);
    return;
fail:
    free(bytes);
    if (mc)
        op_clear(&mc->op);
    free(mc);
    table_put(t);
}
