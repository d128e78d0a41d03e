/*
 * sessions.c — read-your-writes, monotonic reads and staleness of
 * eventually consistent reads (check.h, check 4).
 *
 * Versions: the key's writes numbered in the witness linearization's order
 * when the key is linearizable; otherwise (invalid or unknown) in order of
 * completion, which is the order a linearizable store would have to respect
 * for writes that do not overlap. The initial value is version 0.
 */
#include "checkers/check_impl.h"

#include <stdlib.h>
#include <string.h>

struct vv {
    uint32_t value, version;
};

static int vv_cmp(const void *a, const void *b)
{
    const struct vv *x = a, *y = b;
    if (x->value != y->value)
        return x->value < y->value ? -1 : 1;
    return x->version < y->version ? -1 : x->version > y->version;
}

struct tv {
    int64_t t;
    uint32_t version;
};

static int tv_cmp(const void *a, const void *b)
{
    const struct tv *x = a, *y = b;
    return x->t < y->t ? -1 : x->t > y->t;
}

static int i64_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

void chk_dist_fill(struct chk_dist *d, int64_t *v, size_t n)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    if (!n)
        return;
    qsort(v, n, sizeof *v, i64_cmp);
    for (size_t i = 0; i < n; i++)
        d->nonzero += v[i] != 0;
    d->p50 = v[(n - 1) * 50 / 100];
    d->p99 = v[(n - 1) * 99 / 100];
    d->max = v[n - 1];
}



/* Did the write of version a (HISTORY_NONE: the initial value) complete
 * before the write of version b began? */
static int precedes(const struct history *h, uint32_t a, uint32_t b)
{
    if (a == HISTORY_NONE)
        return 1;
    const struct history_op *x = &h->ops[a], *y = &h->ops[b];
    return x->status == HISTORY_S_OK && x->t_ret < y->t_inv;
}

static int proc_cmp_h(const struct history *h, uint32_t a, uint32_t b)
{
    const struct history_op *x = &h->ops[a], *y = &h->ops[b];
    if (x->process != y->process)
        return x->process < y->process ? -1 : 1;
    return a < b ? -1 : a > b; /* op index = invocation order */
}

/* Insertion-merge sort of op indices by (process, invocation): qsort has no
 * context argument, and a key's op list is short enough for this. */
static void sort_by_process(const struct history *h, uint32_t *a, uint32_t n, uint32_t *tmp)
{
    if (n < 2)
        return;
    uint32_t m = n / 2;
    sort_by_process(h, a, m, tmp);
    sort_by_process(h, a + m, n - m, tmp);
    uint32_t i = 0, j = m, k = 0;
    while (i < m && j < n)
        tmp[k++] = proc_cmp_h(h, a[i], a[j]) <= 0 ? a[i++] : a[j++];
    while (i < m)
        tmp[k++] = a[i++];
    while (j < n)
        tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

int chk_sessions(const struct history *h, const struct chk_index *x, struct chk_result *r)
{
    (void)x;
    int64_t *lag_v = NULL, *lag_t = NULL;
    size_t nlag = 0, caplag = 0;
    struct vv *vv = NULL;
    struct tv *tv = NULL;
    int64_t *sufmin = NULL;
    uint32_t *ord = NULL, *tmp = NULL, *vop = NULL;
    struct vv *ov = NULL; /* (op index, version) of each write, sorted by op */
    int rc = NERR_NOMEM;
    for (uint32_t key = 0; key < h->nkeys; key++) {
        const uint32_t *ko = h->key_ops + h->key_off[key];
        uint32_t n = h->key_off[key + 1] - h->key_off[key];
        uint32_t nec = 0;
        for (uint32_t j = 0; j < n; j++) {
            const struct history_op *q = &h->ops[ko[j]];
            nec += q->f == HISTORY_READ && q->status == HISTORY_S_OK && !q->consistent &&
                   q->value != HISTORY_ANY;
        }
        if (!nec)
            continue;
        /* version order of the key's writes */
        free(vv);
        free(tv);
        free(sufmin);
        free(ord);
        free(tmp);
        free(vop);
        free(ov);
        ov = malloc((n + 1) * sizeof *ov);
        vv = malloc((n + 1) * sizeof *vv);
        tv = malloc((n + 1) * sizeof *tv);
        sufmin = malloc((n + 2) * sizeof *sufmin);
        ord = malloc((n + 1) * sizeof *ord);
        tmp = malloc((n + 1) * sizeof *tmp);
        vop = malloc((n + 1) * sizeof *vop);
        if (!vv || !tv || !sufmin || !ord || !tmp || !vop || !ov)
            goto done;
        uint32_t nv = 0;
        const struct lin_key *lk = &r->lin->keys[key];
        if (lk->verdict == LIN_VALID) {
            for (uint32_t j = 0; j < lk->norder; j++)
                ord[nv++] = lk->order[j];
        } else {
            struct tv *tmpv = tv;
            for (uint32_t j = 0; j < n; j++) {
                const struct history_op *w = &h->ops[ko[j]];
                if (w->f != HISTORY_READ && w->status == HISTORY_S_OK) {
                    tmpv[nv].t = w->t_ret;
                    tmpv[nv].version = ko[j];
                    nv++;
                }
            }
            qsort(tmpv, nv, sizeof *tmpv, tv_cmp);
            for (uint32_t j = 0; j < nv; j++)
                ord[j] = tmpv[j].version;
        }
        /* version v (1-based) is ord[v-1] */
        uint32_t nvv = 0, ntv = 0;
        vv[nvv++] = (struct vv){r->initial, 0};
        for (uint32_t j = 0; j < nv; j++) {
            const struct history_op *w = &h->ops[ord[j]];
            vv[nvv++] = (struct vv){chk_written(w), j + 1};
            ov[j] = (struct vv){ord[j], j + 1};
            vop[j + 1] = ord[j];
            if (w->status == HISTORY_S_OK)
                tv[ntv++] = (struct tv){w->t_ret, j + 1};
        }
        vop[0] = HISTORY_NONE;
        qsort(vv, nvv, sizeof *vv, vv_cmp);
        qsort(ov, nv, sizeof *ov, vv_cmp);
        qsort(tv, ntv, sizeof *tv, tv_cmp);
        /* sufmin[v]: the earliest completion among versions >= v */
        sufmin[nv + 1] = INT64_MAX;
        for (uint32_t v = nv + 1; v-- > 1;) {
            int64_t t = h->ops[ord[v - 1]].status == HISTORY_S_OK ? h->ops[ord[v - 1]].t_ret
                                                                   : INT64_MAX;
            sufmin[v] = t < sufmin[v + 1] ? t : sufmin[v + 1];
        }
        sufmin[0] = sufmin[1];
        /* prefix max of versions over completion time */
        for (uint32_t j = 1; j < ntv; j++)
            if (tv[j].version < tv[j - 1].version)
                tv[j].version = tv[j - 1].version;
        memcpy(tmp, ko, n * sizeof *tmp);
        uint32_t *byp = tmp;
        uint32_t *scratch = malloc((n + 1) * sizeof *scratch);
        if (!scratch)
            goto done;
        sort_by_process(h, byp, n, scratch);
        free(scratch);
        int64_t cur = INT64_MIN;
        uint32_t own = 0, seen = 0, own_op = HISTORY_NONE, seen_op = HISTORY_NONE;
        for (uint32_t j = 0; j < n; j++) {
            const struct history_op *q = &h->ops[byp[j]];
            if (j == 0 || q->process != cur) {
                cur = q->process;
                own = seen = 0;
                own_op = seen_op = HISTORY_NONE;
            }
            if (q->status != HISTORY_S_OK)
                continue;
            uint32_t val = q->f == HISTORY_READ ? q->value : chk_written(q);
            if (val == HISTORY_ANY)
                continue;
            /* A write's own version is exact. A read's value may be held by
             * several versions (the same value written twice; every delete
             * writes nil): judge the read by the highest of them, which is
             * the most favourable to it, and remember the lowest as what the
             * process has seen, so that duplicates never make a violation. */
            if (q->f != HISTORY_READ) {
                struct vv probe = {byp[j], 0};
                size_t lo = 0, hi = nv;
                while (lo < hi) {
                    size_t mid = (lo + hi) / 2;
                    if (ov[mid].value < probe.value)
                        lo = mid + 1;
                    else
                        hi = mid;
                }
                if (lo < nv && ov[lo].value == byp[j] && ov[lo].version > own) {
                    own = ov[lo].version;
                    own_op = byp[j];
                }
                continue;
            }
            struct vv probe = {val, UINT32_MAX};
            size_t lo = 0, hi = nvv;
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (vv_cmp(&vv[mid], &probe) < 0)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo == 0 || vv[lo - 1].value != val) {
                if (!q->consistent)
                    r->ec_unversioned++;
                continue;
            }
            uint32_t ver = vv[lo - 1].version;
            size_t first = lo - 1;
            while (first > 0 && vv[first - 1].value == val)
                first--;
            uint32_t ver_lo = vv[first].version;
            if (!q->consistent) {
                r->ec_reads++;
                /* Only versions whose writes are ordered in real time are
                 * ordered in every linearization; concurrent writes may have
                 * taken effect in either order, so they prove nothing. */
                if (ver < own && precedes(h, vop[ver], vop[own]))
                    chk_add(r, CHK_READ_YOUR_WRITES, "sessions", key, byp[j], own_op,
                            "eventually consistent read returned %s (version %u) after this "
                            "process wrote version %u",
                            history_value(h, val, NULL), ver, own);
                if (ver < seen && precedes(h, vop[ver], vop[seen]))
                    chk_add(r, CHK_MONOTONIC_READS, "sessions", key, byp[j], seen_op,
                            "eventually consistent read returned %s (version %u) after this "
                            "process had read version %u",
                            history_value(h, val, NULL), ver, seen);
                /* staleness: newest version acknowledged before the read began */
                size_t a = 0, b = ntv;
                while (a < b) {
                    size_t mid = (a + b) / 2;
                    if (tv[mid].t < q->t_inv)
                        a = mid + 1;
                    else
                        b = mid;
                }
                uint32_t known = a ? tv[a - 1].version : 0;
                int64_t lv = known > ver ? (int64_t)(known - ver) : 0;
                int64_t lt = 0;
                if (lv && sufmin[ver + 1] < q->t_inv)
                    lt = q->t_inv - sufmin[ver + 1];
                if (nlag == caplag) {
                    size_t nc = caplag ? caplag * 2 : 1024;
                    int64_t *a1 = realloc(lag_v, nc * sizeof *a1);
                    if (!a1)
                        goto done;
                    lag_v = a1;
                    int64_t *a2 = realloc(lag_t, nc * sizeof *a2);
                    if (!a2)
                        goto done;
                    lag_t = a2;
                    caplag = nc;
                }
                lag_v[nlag] = lv;
                lag_t[nlag] = lt;
                nlag++;
            }
            if (ver_lo > seen) {
                seen = ver_lo;
                seen_op = byp[j];
            }
        }
    }
    chk_dist_fill(&r->stale_versions, lag_v, nlag);
    chk_dist_fill(&r->stale_ns, lag_t, nlag);
    rc = 0;
done:
    free(lag_v);
    free(lag_t);
    free(vv);
    free(tv);
    free(sufmin);
    free(ord);
    free(tmp);
    free(vop);
    free(ov);
    return rc;
}
