/*
 * check_run.c — chk_run: runs the linearizability search, classifies what it
 * found, then the value, lost-write and session checks (see check.h).
 */
#include "checkers/check_impl.h"
#include "checkers/cval.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint32_t chk_written(const struct history_op *op)
{
    return op->f == HISTORY_CAS ? op->value2 : op->f == HISTORY_DELETE ? HISTORY_NIL : op->value;
}

static int ref_cmp(const void *a, const void *b)
{
    const struct chk_ref *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->value != y->value)
        return x->value < y->value ? -1 : 1;
    return x->op < y->op ? -1 : x->op > y->op; /* ops are in invocation order */
}

int chk_index_build(const struct history *h, struct chk_index *x)
{
    memset(x, 0, sizeof *x);
    size_t n = h->nops ? h->nops : 1;
    x->w = malloc(n * sizeof *x->w);
    x->r = malloc(n * sizeof *x->r);
    x->fw = malloc(n * sizeof *x->fw);
    if (!x->w || !x->r || !x->fw) {
        chk_index_free(x);
        return NERR_NOMEM;
    }
    for (size_t i = 0; i < h->nops; i++) {
        const struct history_op *op = &h->ops[i];
        struct chk_ref ref = {op->key, 0, (uint32_t)i};
        if (op->f == HISTORY_READ) {
            if (op->status == HISTORY_S_OK && op->value != HISTORY_ANY) {
                ref.value = op->value;
                x->r[x->nr++] = ref;
            }
        } else {
            ref.value = chk_written(op);
            if (op->status == HISTORY_S_FAIL)
                x->fw[x->nfw++] = ref;
            else
                x->w[x->nw++] = ref;
        }
    }
    qsort(x->w, x->nw, sizeof *x->w, ref_cmp);
    qsort(x->r, x->nr, sizeof *x->r, ref_cmp);
    qsort(x->fw, x->nfw, sizeof *x->fw, ref_cmp);
    return 0;
}

void chk_index_free(struct chk_index *x)
{
    free(x->w);
    free(x->r);
    free(x->fw);
    memset(x, 0, sizeof *x);
}

static const struct chk_ref *range(const struct chk_ref *a, size_t n, uint32_t key,
                                   uint32_t value, size_t *cnt)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (a[mid].key < key || (a[mid].key == key && a[mid].value < value))
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t end = lo;
    while (end < n && a[end].key == key && a[end].value == value)
        end++;
    *cnt = end - lo;
    return *cnt ? a + lo : NULL;
}

const struct chk_ref *chk_writers(const struct chk_index *x, uint32_t key, uint32_t value,
                                  size_t *n)
{
    return range(x->w, x->nw, key, value, n);
}

const struct chk_ref *chk_failed_writers(const struct chk_index *x, uint32_t key,
                                         uint32_t value, size_t *n)
{
    return range(x->fw, x->nfw, key, value, n);
}

int chk_value_read(const struct chk_index *x, uint32_t key, uint32_t value)
{
    size_t n;
    return range(x->r, x->nr, key, value, &n) != NULL;
}

void chk_add(struct chk_result *r, enum chk_kind kind, const char *check, uint32_t key,
             uint32_t op, uint32_t related, const char *fmt, ...)
{
    r->counts[kind]++;
    if (r->nanomalies >= CHK_MAX_ANOMALIES)
        return;
    struct chk_anomaly *a = &r->anomalies[r->nanomalies++];
    a->kind = kind;
    a->check = check;
    a->key = key;
    a->op = op;
    a->related = related;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->detail, sizeof a->detail, fmt, ap);
    va_end(ap);
}

static const char *vtext(const struct history *h, uint32_t v)
{
    return history_value(h, v, NULL);
}

/* Classifies the culprit of a non-linearizable key (see check.h). */
static void classify(const struct history *h, const struct chk_index *x, struct chk_result *r,
                     uint32_t key, uint32_t c)
{
    const struct history_op *op = &h->ops[c];
    const uint32_t *ko = h->key_ops + h->key_off[key];
    uint32_t nk = h->key_off[key + 1] - h->key_off[key];
    const char *what = op->f == HISTORY_CAS ? "expected" : "read";
    if (op->f != HISTORY_READ && op->f != HISTORY_CAS) {
        chk_add(r, CHK_NOT_LINEARIZABLE, "linearizability", key, c, HISTORY_NONE,
                "no order of the concurrent operations lets this %s take effect",
                history_f_name(op->f));
        return;
    }
    uint32_t v = op->value;
    size_t nw;
    const struct chk_ref *wr = chk_writers(x, key, v, &nw);
    if (!wr && v != r->initial) {
        size_t klen, vlen, nf;
        const char *ks = history_key(h, key, &klen);
        const char *vs = history_value(h, v, &vlen);
        enum cval_status st = v == HISTORY_NIL ? CVAL_PLAIN : cval_verify(ks, klen, vs, vlen);
        int all_ck = 1, any = 0;
        for (uint32_t j = 0; j < nk && all_ck; j++) {
            const struct history_op *w = &h->ops[ko[j]];
            if (w->f == HISTORY_READ || w->status == HISTORY_S_FAIL || w->f == HISTORY_DELETE)
                continue;
            size_t wl;
            const char *ws = history_value(h, chk_written(w), &wl);
            any = 1;
            all_ck = cval_verify(ks, klen, ws, wl) == CVAL_OK;
        }
        const struct chk_ref *fw = chk_failed_writers(x, key, v, &nf);
        if (st == CVAL_BAD || (any && all_ck && st != CVAL_OK))
            chk_add(r, CHK_CORRUPT, "linearizability", key, c, HISTORY_NONE,
                    "%s %s, which fails its checksum", what, vs);
        else
            chk_add(r, CHK_PHANTOM, "linearizability", key, c, fw ? fw->op : HISTORY_NONE,
                    "%s %s, which no write that may have taken effect wrote%s", what, vs,
                    fw ? " (only a failed write did)" : "");
        return;
    }
    /* The writer of the old value: the latest one invoked before c returned. */
    const struct history_op *old = NULL;
    uint32_t old_i = HISTORY_NONE;
    for (size_t j = 0; j < nw; j++) {
        const struct history_op *w = &h->ops[wr[j].op];
        if (w->t_inv < op->t_ret && (!old || w->t_inv > old->t_inv)) {
            old = w;
            old_i = wr[j].op;
        }
    }
    if (!old && v != r->initial) {
        chk_add(r, CHK_NOT_LINEARIZABLE, "linearizability", key, c, wr[0].op,
                "%s %s before any write of it was invoked", what, vtext(h, v));
        return;
    }
    int64_t old_ret = !old ? INT64_MIN : old->status == HISTORY_S_OK ? old->t_ret : INT64_MAX;
    /* The newest acknowledged write that had to come between the old value
     * and this op. */
    const struct history_op *nw_op = NULL;
    uint32_t nw_i = HISTORY_NONE;
    int64_t next_inv = INT64_MAX;
    for (uint32_t j = 0; j < nk; j++) {
        const struct history_op *w = &h->ops[ko[j]];
        if (w->f == HISTORY_READ || w->status == HISTORY_S_FAIL)
            continue;
        if (w->t_inv > op->t_inv && w->t_inv < next_inv && chk_written(w) != v)
            next_inv = w->t_inv;
        if (w->status != HISTORY_S_OK || chk_written(w) == v)
            continue;
        if (w->t_inv > old_ret && w->t_ret < op->t_inv && (!nw_op || w->t_ret > nw_op->t_ret)) {
            nw_op = w;
            nw_i = ko[j];
        }
    }
    if (!nw_op) {
        chk_add(r, CHK_NOT_LINEARIZABLE, "linearizability", key, c, old_i,
                "%s %s, which no order of the concurrent operations allows", what, vtext(h, v));
        return;
    }
    int seen_new = chk_value_read(x, key, chk_written(nw_op));
    int later_old = 0;
    for (uint32_t j = 0; j < nk && !later_old; j++) {
        const struct history_op *q = &h->ops[ko[j]];
        if (ko[j] == c || q->f != HISTORY_READ || q->status != HISTORY_S_OK || !q->consistent)
            continue;
        later_old = q->value == v && q->t_inv > op->t_ret && q->t_ret < next_inv;
    }
    const char *newv = vtext(h, chk_written(nw_op));
    if (!seen_new)
        chk_add(r, CHK_LOST_WRITE, "linearizability", key, c, nw_i,
                "%s %s after the acknowledged write of %s completed, and nobody ever read %s",
                what, vtext(h, v), newv, newv);
    else if (later_old)
        chk_add(r, CHK_DUPLICATE_WRITE, "linearizability", key, c, old_i,
                "%s %s again after %s had been read, and later reads keep returning it: "
                "the write of %s took effect twice",
                what, vtext(h, v), newv, vtext(h, v));
    else
        chk_add(r, CHK_STALE_READ, "linearizability", key, c, nw_i,
                "%s %s although the write of %s had completed before it began", what,
                vtext(h, v), newv);
}

int chk_run(struct history *h, const struct chk_opts *o, struct chk_result **out, struct nerr *e)
{
    double t0 = now_s();
    struct chk_index x = {0};
    struct chk_result *r = calloc(1, sizeof *r);
    int rc;
    if (!r || !(r->anomalies = calloc(CHK_MAX_ANOMALIES, sizeof *r->anomalies))) {
        rc = nerr_set(e, NERR_NOMEM, "out of memory");
        goto fail;
    }
    r->first_op = r->first_key = HISTORY_NONE;
    rc = history_value_id(h, o->initial, o->initial_len, &r->initial, e);
    if (rc)
        goto fail;
    struct lin_opts lo = o->lin;
    lo.initial = r->initial;
    rc = lin_check(h, &lo, &r->lin, e);
    if (rc)
        goto fail;
    if (chk_index_build(h, &x)) {
        rc = nerr_set(e, NERR_NOMEM, "out of memory indexing the history");
        goto fail;
    }
    for (uint32_t k = 0; k < r->lin->nkeys; k++) {
        const struct lin_key *lk = &r->lin->keys[k];
        if (lk->verdict == LIN_UNKNOWN)
            r->unknown_keys++;
        if (lk->verdict != LIN_INVALID)
            continue;
        r->invalid_keys++;
        size_t before = r->nanomalies;
        classify(h, &x, r, k, lk->culprit);
        const struct history_op *c = &h->ops[lk->culprit];
        if (r->first_op == HISTORY_NONE || c->ret < h->ops[r->first_op].ret) {
            r->first_op = lk->culprit;
            r->first_key = k;
            r->first_kind = before < r->nanomalies ? r->anomalies[before].kind
                                                   : CHK_NOT_LINEARIZABLE;
        }
    }
    rc = chk_writes(h, &x, r);
    if (!rc)
        rc = chk_sessions(h, &x, r);
    if (rc) {
        rc = nerr_set(e, rc, "out of memory in the value and session checks");
        goto fail;
    }
    uint64_t bad = 0;
    for (int k = 0; k < CHK_NKINDS; k++)
        if (o->sessions_enforce || (k != CHK_READ_YOUR_WRITES && k != CHK_MONOTONIC_READS))
            bad += r->counts[k];
    r->verdict = bad ? CHK_INVALID : r->unknown_keys ? CHK_UNKNOWN : CHK_VALID;
    chk_index_free(&x);
    r->seconds = now_s() - t0;
    *out = r;
    return 0;
fail:
    chk_index_free(&x);
    chk_result_free(r);
    return rc;
}

void chk_result_free(struct chk_result *r)
{
    if (!r)
        return;
    lin_result_free(r->lin);
    free(r->anomalies);
    free(r);
}

const char *chk_kind_title(enum chk_kind k)
{
    static const char *t[] = {"not linearizable", "stale read",       "lost write",
                              "value out of nowhere", "duplicated write", "corrupted value",
                              "read-your-writes violation", "monotonic-reads violation"};
    return (unsigned)k < CHK_NKINDS ? t[k] : "?";
}

const char *chk_kind_name(enum chk_kind k)
{
    static const char *t[] = {"not-linearizable", "stale-read",       "lost-write",
                              "value-out-of-nowhere", "duplicated-write", "corrupted-value",
                              "read-your-writes", "monotonic-reads"};
    return (unsigned)k < CHK_NKINDS ? t[k] : "?";
}

const char *chk_verdict_name(enum chk_verdict v)
{
    return v == CHK_VALID ? "valid" : v == CHK_INVALID ? "invalid" : "unknown";
}

void chk_op_describe(const struct history *h, uint32_t i, char *buf, size_t size)
{
    const struct history_op *op = &h->ops[i];
    size_t klen;
    const char *key = history_key(h, op->key, &klen);
    char val[160];
    if (op->f == HISTORY_CAS)
        snprintf(val, sizeof val, " [%s %s]", history_value(h, op->value, NULL),
                 history_value(h, op->value2, NULL));
    else if (op->f == HISTORY_DELETE)
        val[0] = '\0';
    else if (op->f == HISTORY_READ && op->status != HISTORY_S_OK)
        val[0] = '\0';
    else
        snprintf(val, sizeof val, " %s", history_value(h, op->value, NULL));
    char where[64];
    if (op->ret != HISTORY_NONE)
        snprintf(where, sizeof where, "events %u-%u", op->inv, op->ret);
    else
        snprintf(where, sizeof where, "event %u, never completed", op->inv);
    char lines[48] = "";
    if (op->line_inv)
        snprintf(lines, sizeof lines, ", line %u", op->line_ret ? op->line_ret : op->line_inv);
    snprintf(buf, size, "process %lld %s %s%s%s%s%s%s [%s%s]", (long long)op->process,
             history_status_name(op->status), op->consistent ? "" : "eventual ",
             history_f_name(op->f), klen ? " " : "", klen ? key : "", val,
             "", where, lines);
}
