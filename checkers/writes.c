/*
 * writes.c — values and lost writes (check.h, checks 2 and 3).
 *
 * Both are linear scans of each key's ops, independent of the
 * linearizability search, so they also give evidence on keys whose search
 * ran out of time or memory.
 */
#include "checkers/check_impl.h"
#include "checkers/cval.h"

#include <stdlib.h>

static int is_write(const struct history_op *op)
{
    return op->f != HISTORY_READ && op->status != HISTORY_S_FAIL;
}

static void check_values(const struct history *h, const struct chk_index *x,
                         struct chk_result *r, uint32_t key)
{
    const uint32_t *ko = h->key_ops + h->key_off[key];
    uint32_t n = h->key_off[key + 1] - h->key_off[key];
    size_t klen;
    const char *ks = history_key(h, key, &klen);
    int all_ck = 1, any = 0, deleted = 0;
    for (uint32_t j = 0; j < n; j++) {
        const struct history_op *w = &h->ops[ko[j]];
        if (!is_write(w))
            continue;
        if (w->f == HISTORY_DELETE) {
            deleted = 1;
            continue;
        }
        size_t wl;
        const char *ws = history_value(h, chk_written(w), &wl);
        any = 1;
        if (all_ck && cval_verify(ks, klen, ws, wl) != CVAL_OK)
            all_ck = 0;
    }
    for (uint32_t j = 0; j < n; j++) {
        const struct history_op *op = &h->ops[ko[j]];
        if (op->f != HISTORY_READ || op->status != HISTORY_S_OK || op->value == HISTORY_ANY)
            continue;
        r->reads_checked++;
        /* The linearizability check already named and classified it. */
        if (r->lin->keys[key].verdict == LIN_INVALID && r->lin->keys[key].culprit == ko[j])
            continue;
        uint32_t v = op->value;
        size_t nw, nf;
        if (v == r->initial || chk_writers(x, key, v, &nw))
            continue;
        if (v == HISTORY_NIL) {
            if (!deleted)
                chk_add(r, CHK_PHANTOM, "values", key, ko[j], HISTORY_NONE,
                        "read nothing (absent) although the key starts as %s and was never "
                        "deleted",
                        history_value(h, r->initial, NULL));
            continue;
        }
        size_t vl;
        const char *vs = history_value(h, v, &vl);
        enum cval_status st = cval_verify(ks, klen, vs, vl);
        const struct chk_ref *fw = chk_failed_writers(x, key, v, &nf);
        if (st == CVAL_BAD || (any && all_ck && st != CVAL_OK))
            chk_add(r, CHK_CORRUPT, "values", key, ko[j], HISTORY_NONE,
                    "read %s, which fails its checksum", vs);
        else
            chk_add(r, CHK_PHANTOM, "values", key, ko[j], fw ? fw->op : HISTORY_NONE,
                    "read %s, which no write that may have taken effect wrote%s", vs,
                    fw ? " (only a failed write did)" : "");
    }
}

static void check_lost(const struct history *h, const struct chk_index *x, struct chk_result *r,
                       uint32_t key)
{
    const uint32_t *ko = h->key_ops + h->key_off[key];
    uint32_t n = h->key_off[key + 1] - h->key_off[key];
    int64_t last_ack = INT64_MIN;
    uint64_t nacked = 0;
    for (uint32_t j = 0; j < n; j++) {
        const struct history_op *w = &h->ops[ko[j]];
        if (w->f != HISTORY_READ && w->status == HISTORY_S_OK) {
            nacked++;
            if (w->t_ret > last_ack)
                last_ack = w->t_ret;
        }
    }
    if (!nacked)
        return;
    r->acked_writes += nacked;
    uint32_t fin = HISTORY_NONE;
    for (uint32_t j = 0; j < n; j++) {
        const struct history_op *q = &h->ops[ko[j]];
        if (q->f != HISTORY_READ || q->status != HISTORY_S_OK || !q->consistent ||
            q->value == HISTORY_ANY || q->t_inv <= last_ack)
            continue;
        if (fin == HISTORY_NONE || q->t_ret > h->ops[fin].t_ret)
            fin = ko[j];
    }
    if (fin == HISTORY_NONE) {
        r->unverified_keys++;
        return;
    }
    uint32_t R = h->ops[fin].value;
    size_t nr;
    const struct chk_ref *wr = chk_writers(x, key, R, &nr);
    if (!wr && R != r->initial)
        return; /* reported by the value check */
    for (uint32_t j = 0; j < n; j++) {
        const struct history_op *w = &h->ops[ko[j]];
        if (w->f == HISTORY_READ || w->status != HISTORY_S_OK)
            continue;
        if (chk_written(w) == R) {
            r->verified_writes++;
            continue;
        }
        /* Lost when everything that could have produced R was over before w
         * began: w had to come after it, so the final read should show w or
         * something later. */
        int lost = 1;
        for (size_t i = 0; i < nr && lost; i++) {
            const struct history_op *p = &h->ops[wr[i].op];
            lost = p->status == HISTORY_S_OK && p->t_ret < w->t_inv;
        }
        if (!lost) {
            r->verified_writes++;
            continue;
        }
        chk_add(r, CHK_LOST_WRITE, "lost-writes", key, ko[j], fin,
                "acknowledged write of %s is gone: the final read returned %s, %s",
                history_value(h, chk_written(w), NULL), history_value(h, R, NULL),
                nr ? "whose writes all completed before this one began"
                   : "the initial value");
    }
}

int chk_writes(const struct history *h, const struct chk_index *x, struct chk_result *r)
{
    for (uint32_t k = 0; k < h->nkeys; k++) {
        check_values(h, x, r, k);
        check_lost(h, x, r, k);
    }
    return 0;
}
