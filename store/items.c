#include "store/items.h"
#include "store/digest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"
#include "proto/av.h"
#include "store/archiver.h"
#include "store/catalog.h"
#include "store/expr.h"
#include "store/overlay.h"

int items_read(struct state *st, const struct partition *p, const unsigned char *k, size_t klen,
               char **value, size_t *vlen, struct nerr *err)
{
    switch (p->ov ? overlay_get(p->ov, p->dbi, k, klen, value, vlen) : OVERLAY_MISS) {
    case OVERLAY_VALUE:
        return 0;
    case OVERLAY_TOMBSTONE:
        return NERR_NOTFOUND;
    case OVERLAY_NOMEM:
        return nerr_set(err, NERR_NOMEM, "out of memory");
    case OVERLAY_MISS:
        break;
    }
    MDB_txn *txn;
    MDB_val v;
    int rc = state_read_begin(st, &txn, err);
    if (rc)
        return rc;
    rc = items_get_raw(txn, p, k, klen, &v, err);
    if (!rc) {
        char *c = malloc(v.mv_size + 1);
        if (c) {
            memcpy(c, v.mv_data, v.mv_size);
            c[v.mv_size] = 0;
            *value = c;
            *vlen = v.mv_size;
        } else {
            rc = nerr_set(err, NERR_NOMEM, "out of memory");
        }
    }
    state_read_end(st, txn);
    return rc;
}

int items_get_raw(MDB_txn *txn, const struct partition *p, const unsigned char *k, size_t klen,
                  MDB_val *val, struct nerr *err)
{
    MDB_val key = {klen, (void *)k};
    int rc = mdb_get(txn, p->dbi, &key, val);
    if (rc == MDB_NOTFOUND)
        return NERR_NOTFOUND;
    return rc ? state_mdb_err(err, rc, "get") : 0;
}

static int load_item(MDB_txn *txn, const struct partition *p, const struct op *op, json_t **out,
                     struct nerr *err)
{
    MDB_val v;
    *out = NULL;
    int rc = items_get_raw(txn, p, op->kbytes, op->klen, &v, err);
    if (rc == NERR_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    json_error_t je;
    *out = json_loadb(v.mv_data, v.mv_size, JSON_ALLOW_NUL, &je);
    if (!*out)
        return nerr_set(err, NERR_CORRUPT, "partition %s: stored item is not JSON: %s", p->name,
                        je.text);
    return 0;
}

/* Every applied write also goes to the overlay (overlay.h): it is
 * acknowledged (by this node, or by another replica whose client then reads
 * here) before the transaction commits. Entries applied without the
 * proposer's op (other nodes' proposals, entries applied again after a
 * restart) are published like the rest: a read that waited for the applied
 * index must find them. */
/* NINES_NO_DIGEST (cmake -DNINES_DIGEST=OFF): writes keep no digest, to
 * measure its cost (t/bench/scrub.sh); never a production build. */
#ifdef NINES_NO_DIGEST
#define DIGEST_KEPT(p) 0
#else
#define DIGEST_KEPT(p) ((p)->ddbi != 0)
#endif
/* Counts out of the digest what op's key holds before a write replaces it
 * (digest.h: hashed before the write, so no copy of the old bytes), unless
 * it is exactly `bytes` (then the write changes nothing the digest sees:
 * *same = 1). The changes wait in p->dpend until items_sm's
 * before_commit. */
static int digest_out_old(MDB_txn *txn, struct partition *p, const struct op *op, const char *bytes,
                          size_t blen, int *same, struct nerr *err)
{
    *same = 0;
    if (!DIGEST_KEPT(p))
        return 0;
    MDB_val k = {op->klen, op->kbytes}, v;
    int rc = mdb_get(txn, p->dbi, &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return state_mdb_err(err, rc, "get");
    if (bytes && v.mv_size == blen && !memcmp(v.mv_data, bytes, blen)) {
        *same = 1;
        return 0;
    }
    return digest_pending_add(&p->dpend, txn, p->ddbi, p->name, op->kbytes, op->klen, v.mv_data,
                              v.mv_size, -1, err);
}

static int store_item(MDB_txn *txn, struct partition *p, const struct op *op, json_t *item,
                      int publish, struct nerr *err)
{
    char *bytes = json_dumps(item, JSON_COMPACT | JSON_SORT_KEYS);
    if (!bytes)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    MDB_val k = {op->klen, op->kbytes}, v = {strlen(bytes), bytes};
    int same, rc = digest_out_old(txn, p, op, bytes, v.mv_size, &same, err);
    if (!rc && (rc = mdb_put(txn, p->dbi, &k, &v, 0)))
        rc = state_mdb_err(err, rc, "put");
    else if (!rc && DIGEST_KEPT(p) && !same &&
             (rc = digest_pending_add(&p->dpend, txn, p->ddbi, p->name, op->kbytes, op->klen, bytes,
                                      v.mv_size, 1, err)))
        ;
    else if (!rc && publish && p->ov &&
             overlay_put(p->ov, p->dbi, op->kbytes, op->klen, bytes, v.mv_size))
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
    free(bytes);
    return rc;
}

/* A repair (op.h, OP_REPAIR). Only the target replica acts, and only when
 * what it holds still hashes to what the scrubber saw there: a client
 * write to the key applied since then (on every replica, through the log)
 * changed those bytes, and the repair then changes nothing (docs/scrub.md,
 * "The race with client writes"). The digest is recomputed from the data,
 * not updated: the bytes being replaced may be bit rot the digest never
 * counted. A refusal is the op's outcome (r->status NERR_CONDITION), the
 * same on every replica given the same state, never an error. */
static int apply_repair(MDB_txn *txn, struct partition *p, const struct op *op, struct op_result *r,
                        struct nerr *err)
{
    const char *self = p->t->cat ? catalog_self(p->t->cat) : NULL;
    if (!self || strcmp(self, op->repair_node))
        return 0;
    MDB_val k = {op->klen, op->kbytes}, v;
    int rc = mdb_get(txn, p->dbi, &k, &v);
    if (rc && rc != MDB_NOTFOUND)
        return state_mdb_err(err, rc, "get");
    char now[2 * DIGEST_HASH_BYTES + 1] = "absent";
    if (!rc) {
        unsigned char h[DIGEST_HASH_BYTES];
        if ((rc = digest_item_hash(op->kbytes, op->klen, v.mv_data, v.mv_size, h, err)))
            return rc;
        digest_hash_hex(h, now);
    }
    if (strcmp(now, op->repair_expect)) {
        r->status = NERR_CONDITION;
        snprintf(r->msg, sizeof r->msg,
                 "replica %s holds %s for the key, not %s as the scrubber saw: written since; "
                 "nothing repaired",
                 self, now, op->repair_expect);
        return 0;
    }
    if (op->repair_stored) {
        MDB_val nv = {strlen(op->repair_stored), op->repair_stored};
        rc = mdb_put(txn, p->dbi, &k, &nv, 0);
    } else {
        rc = mdb_del(txn, p->dbi, &k, NULL);
        rc = rc == MDB_NOTFOUND ? 0 : rc;
    }
    if (rc)
        return state_mdb_err(err, rc, "repair");
    digest_pending_discard(&p->dpend); /* the rebuild counts everything again */
    if (p->ddbi && (rc = digest_rebuild(txn, p->ddbi, p->name, p->dbi, err)))
        return rc;
    if (p->ov && overlay_put(p->ov, p->dbi, op->kbytes, op->klen, op->repair_stored,
                             op->repair_stored ? strlen(op->repair_stored) : 0))
        return nerr_set(err, NERR_NOMEM, "out of memory");
    log_info("partition %s: scrub repair of a key (%s -> %s)", p->name, now,
             op->repair_stored ? "the majority's item" : "absent");
    r->repaired = 1;
    return 0;
}

/* Top-level attributes whose values differ between a and b, taken from src. */
static json_t *changed_attrs(json_t *a, json_t *b, json_t *src)
{
    json_t *out = json_object();
    const char *name;
    json_t *v;
    json_object_foreach(src, name, v)
    {
        json_t *x = a ? json_object_get(a, name) : NULL, *y = b ? json_object_get(b, name) : NULL;
        if (!x || !y || !av_equal(x, y))
            json_object_set(out, name, v);
    }
    return out;
}

/* Applies one item write. See op.h: the condition and update are evaluated
 * here, against the state at this LSN. */
static int items_apply(void *sm, MDB_txn *txn, uint64_t lsn, const void *data, size_t len,
                       void *opp, void **result, struct nerr *err)
{
    struct partition *p = sm;
    struct op decoded, *op = opp;
    struct op_result *res = NULL;
    json_t *old = NULL, *item = NULL;
    int rc = 0;
    if (!op) {
        if ((rc = op_decode(data, len, p->t, &decoded, err))) {
            /* Out of memory is this node's trouble, not the entry's: fatal,
             * so replicas never disagree about an entry. Any other failure
             * is the same on every replica: the entry is poisoned (group.h)
             * and changes nothing. */
            if (rc == NERR_NOMEM)
                return rc;
            char why[NERR_MSG_MAX];
            snprintf(why, sizeof why, "%s", err ? err->msg : "");
            nerr_set(err, NERR_CORRUPT, "partition %s: entry %llu is not an item operation: %s",
                     p->name, (unsigned long long)lsn, why);
            return GROUP_APPLY_POISONED;
        }
        op = &decoded;
    } else if (!(res = calloc(1, sizeof *res))) {
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    struct op_result scratch = {0}, *r = res ? res : &scratch;
    if (atomic_load(&p->t->deleted)) {
        r->status = NERR_NOTFOUND;
        goto out;
    }
    if (op->kind == OP_SCRUB) {
        /* A scrub marker: this replica's digest at this index (digest.h). */
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        if (p->ddbi &&
            ((rc = digest_flush(&p->dpend, txn, p->ddbi, p->name, err)) ||
             (rc = digest_mark_put(txn, p->ddbi, p->name, lsn, op->scrub_id, op->scrub_ms,
                                   (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000, err))))
            goto out;
        r->lsn = lsn;
        goto out; /* no item changes: the result is a plain success */
    }
    if (op->kind == OP_SEAL) {
        /* The archive's seal (archiver.h): closes a piece, or is stale. */
        int closed =
            p->ddbi ? archiver_seal_apply(txn, p->ddbi, p->name, op->seal_first, lsn, err) : 0;
        if (closed < 0) {
            rc = closed;
            goto out;
        }
        if (closed)
            archiver_sealed(p->t->cat ? catalog_archiver(p->t->cat) : NULL, p->name, op->seal_first,
                            lsn);
        r->lsn = closed ? lsn : 0;
        goto out;
    }
    if (op->kind == OP_REPAIR) {
        if ((rc = apply_repair(txn, p, op, r, err)))
            goto out;
        r->lsn = lsn;
        goto out;
    }
    int need_old = op->cond_ast || op->rv != RV_NONE || op->kind == OP_UPDATE;
    if (need_old && (rc = load_item(txn, p, op, &old, err)))
        goto out;
    if (op->cond_ast) {
        int ok = 0;
        struct nerr e = {0};
        if (expr_eval_condition(op->cond_ast, old, &ok, &e)) {
            r->status = NERR_INVALID;
            snprintf(r->msg, sizeof r->msg, "%s", e.msg);
            goto out;
        }
        if (!ok) {
            r->status = NERR_CONDITION;
            goto out;
        }
    }
    switch (op->kind) {
    case OP_PUT:
        if ((rc = store_item(txn, p, op, op->item, 1, err)))
            goto out;
        item = json_incref(op->item);
        break;
    case OP_DELETE:
        if (old || !need_old) {
            MDB_val k = {op->klen, op->kbytes};
            int same;
            if ((rc = digest_out_old(txn, p, op, NULL, 0, &same, err)))
                goto out;
            int d = mdb_del(txn, p->dbi, &k, NULL);
            if (d && d != MDB_NOTFOUND) {
                rc = state_mdb_err(err, d, "delete");
                goto out;
            }
            if (p->ov && overlay_put(p->ov, p->dbi, op->kbytes, op->klen, NULL, 0)) {
                rc = nerr_set(err, NERR_NOMEM, "out of memory");
                goto out;
            }
        }
        break;
    case OP_SCRUB: /* handled above */
    case OP_SEAL:
    case OP_REPAIR:
        break;
    case OP_UPDATE: {
        const char *keys[2] = {p->t->hash_name, p->t->range_name};
        struct nerr e = {0};
        item = old ? json_deep_copy(old) : json_deep_copy(op->key);
        if (!item) {
            rc = nerr_set(err, NERR_NOMEM, "out of memory");
            goto out;
        }
        /* No UpdateExpression: DynamoDB creates the item with its key only. */
        if (op->update_ast &&
            expr_apply_update(op->update_ast, item, keys, p->t->range_name ? 2 : 1, &e)) {
            r->status = NERR_INVALID;
            snprintf(r->msg, sizeof r->msg, "%s", e.msg);
            goto out;
        }
        if (av_item_size(item) > ITEMS_MAX_BYTES) {
            r->status = NERR_INVALID;
            snprintf(r->msg, sizeof r->msg,
                     "Item size to update has exceeded the maximum allowed size");
            goto out;
        }
        if ((rc = store_item(txn, p, op, item, 1, err)))
            goto out;
        break;
    }
    }
    if (res) {
        switch (op->rv) {
        case RV_ALL_OLD:
            res->old_item = json_incref(old);
            break;
        case RV_ALL_NEW:
            res->new_item = json_incref(item);
            break;
        case RV_UPDATED_OLD:
            res->old_item = old ? changed_attrs(old, item, old) : NULL;
            break;
        case RV_UPDATED_NEW:
            res->new_item = item ? changed_attrs(old, item, item) : NULL;
            break;
        case RV_NONE:
            break;
        }
    }
out:
    json_decref(old);
    json_decref(item);
    if (op == &decoded)
        op_clear(&decoded);
    if (rc) {
        op_result_free(res);
        return rc;
    }
    *result = res;
    return 0;
}

static int items_snapshot(void *sm, MDB_txn *txn, unsigned char **out, size_t *len,
                          struct nerr *err)
{
    struct partition *p = sm;
    return state_dbi_snapshot(txn, p->dbi, out, len, err);
}

static int items_snapshot_dbi(void *sm, MDB_dbi *dbi)
{
    *dbi = ((struct partition *)sm)->dbi;
    return 0;
}

static int items_restore(void *sm, MDB_txn *txn, const void *data, size_t len, struct nerr *err)
{
    struct partition *p = sm;
    digest_pending_discard(&p->dpend); /* the rebuild counts everything again */
    int rc = state_dbi_restore(txn, p->dbi, data, len, err);
    if (!rc && p->ddbi)
        rc = digest_rebuild(txn, p->ddbi, p->name, p->dbi, err);
    /* The leader's state came without its seal records: none recorded
     * here, so the next seal is taken as it comes (archiver.h). */
    if (!rc && p->ddbi)
        rc = archiver_seals_drop(txn, p->ddbi, p->name, err);
    return rc;
}

/* The digest changes the transaction's writes left pending (digest.h). */
static int items_before_commit(void *sm, MDB_txn *txn, struct nerr *err)
{
    struct partition *p = sm;
    return digest_flush(&p->dpend, txn, p->ddbi, p->name, err);
}

const struct group_sm items_sm = {.apply = items_apply,
                                  .before_commit = items_before_commit,
                                  .snapshot = items_snapshot,
                                  .restore = items_restore,
                                  .snapshot_dbi = items_snapshot_dbi,
                                  .committed = NULL,
                                  .free_result = (void (*)(void *))op_result_free,
                                  .commit_before_done = 0,
                                  .archived = 1};

json_t *items_key_json(const struct table *t, const void *k, size_t klen)
{
    json_t *h = NULL, *r = NULL;
    struct nerr e = {0};
    char rt[2] = {t->range_type, 0};
    if (av_key_decode(k, klen, t->range_name ? rt : NULL, &h, &r, &e))
        return NULL;
    json_t *o = json_object();
    if (o) {
        json_object_set_new(o, t->hash_name, h);
        h = NULL;
        if (t->range_name && r) {
            json_object_set_new(o, t->range_name, r);
            r = NULL;
        }
    }
    json_decref(h);
    json_decref(r);
    return o;
}
