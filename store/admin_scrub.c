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
 * Both are admin calls: signed when the cluster has credentials
 * (docs/security.md). Neither changes an item.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/le.h"
#include "store/api_internal.h"
#include "store/digest.h"
#include "store/op.h"
#include "store/state.h"

/* The partition of a request ({TableName, Partition}); replies and returns
 * NULL when there is none. *t holds a reference the caller puts. */
static struct partition *scrub_partition(struct call *c, json_t *req, struct table **t)
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
        for (int k = 0; k < p->nmembers; k++)
            snprintf(nodes + strlen(nodes), sizeof nodes - strlen(nodes), "%s%s", k ? ", " : "",
                     p->members[k]);
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
    struct partition *p = scrub_partition(c, req, t);
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
    int rc = group_propose(p->g, bytes, len, &mc->op, mark_done, mc);
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
