/*
 * history.c — interning, the event builder, and pairing of invocations with
 * completions (see history.h). Loaders live in history_io.c.
 */
#include "checkers/history.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Interned strings: ids are dense, the text lives in one growing buffer
 * (offsets, not pointers, so that the buffer may move). */
struct history_intern {
    char *buf;
    size_t len, cap;
    uint32_t *offs, *lens;
    uint32_t n, capn;
    uint32_t *slots; /* id + 1, 0 = empty; open addressing */
    uint32_t nslots;
};

static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (len * 0xff51afd7ed558ccdull);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        s += 8;
        len -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, len);
    h = (h ^ w) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

static struct history_intern *intern_new(void)
{
    return calloc(1, sizeof(struct history_intern));
}

static void intern_free(struct history_intern *t)
{
    if (!t)
        return;
    free(t->buf);
    free(t->offs);
    free(t->lens);
    free(t->slots);
    free(t);
}

static const char *intern_text(const struct history_intern *t, uint32_t id, size_t *len)
{
    if (len)
        *len = t->lens[id];
    return t->buf + t->offs[id];
}

static int intern_rehash(struct history_intern *t)
{
    uint32_t ns = t->nslots ? t->nslots * 2 : 1024;
    uint32_t *slots = calloc(ns, sizeof *slots);
    if (!slots)
        return NERR_NOMEM;
    for (uint32_t id = 0; id < t->n; id++) {
        if (t->lens[id] == UINT32_MAX) /* reserved ids are not findable */
            continue;
        uint64_t h = hash_bytes(t->buf + t->offs[id], t->lens[id]);
        uint32_t s = (uint32_t)h & (ns - 1);
        while (slots[s])
            s = (s + 1) & (ns - 1);
        slots[s] = id + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->nslots = ns;
    return 0;
}

/* Appends text as a new id without making it findable (reserved names). */
static int intern_append(struct history_intern *t, const char *s, size_t len, uint32_t *id)
{
    if (len >= UINT32_MAX || t->len + len + 1 > UINT32_MAX)
        return NERR_LIMIT;
    if (t->n == t->capn) {
        uint32_t nc = t->capn ? t->capn * 2 : 256;
        uint32_t *o = realloc(t->offs, nc * sizeof *o);
        if (!o)
            return NERR_NOMEM;
        t->offs = o;
        uint32_t *l = realloc(t->lens, nc * sizeof *l);
        if (!l)
            return NERR_NOMEM;
        t->lens = l;
        t->capn = nc;
    }
    if (t->len + len + 1 > t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 4096;
        while (nc < t->len + len + 1)
            nc *= 2;
        char *b = realloc(t->buf, nc);
        if (!b)
            return NERR_NOMEM;
        t->buf = b;
        t->cap = nc;
    }
    memcpy(t->buf + t->len, s, len);
    t->buf[t->len + len] = '\0';
    t->offs[t->n] = (uint32_t)t->len;
    t->lens[t->n] = (uint32_t)len;
    t->len += len + 1;
    *id = t->n++;
    return 0;
}

static uint32_t intern_find(const struct history_intern *t, const char *s, size_t len)
{
    if (!t->nslots)
        return HISTORY_NONE;
    uint64_t h = hash_bytes(s, len);
    uint32_t i = (uint32_t)h & (t->nslots - 1);
    while (t->slots[i]) {
        uint32_t id = t->slots[i] - 1;
        if (t->lens[id] == len && !memcmp(t->buf + t->offs[id], s, len))
            return id;
        i = (i + 1) & (t->nslots - 1);
    }
    return HISTORY_NONE;
}

static int intern_get(struct history_intern *t, const char *s, size_t len, uint32_t *id)
{
    uint32_t found = intern_find(t, s, len);
    if (found != HISTORY_NONE) {
        *id = found;
        return 0;
    }
    if ((uint64_t)(t->n + 1) * 2 > t->nslots) {
        int rc = intern_rehash(t);
        if (rc)
            return rc;
    }
    int rc = intern_append(t, s, len, id);
    if (rc)
        return rc;
    uint64_t h = hash_bytes(s, len);
    uint32_t i = (uint32_t)h & (t->nslots - 1);
    while (t->slots[i])
        i = (i + 1) & (t->nslots - 1);
    t->slots[i] = *id + 1;
    return 0;
}

/* ---- builder ---- */

struct bev {
    int64_t process, time;
    uint32_t key, v1, v2, line, seq;
    uint8_t type, f, consistent, k1, k2, has_key;
};

struct history_builder {
    struct bev *ev;
    size_t n, cap;
    int all_time;
    uint32_t skipped;
    uint32_t seq; /* events seen, ignored ones included: Jepsen's op index */
    struct history_intern *values, *keys;
};

int history_builder_new(struct history_builder **out, struct nerr *e)
{
    struct history_builder *b = calloc(1, sizeof *b);
    uint32_t id;
    if (!b)
        goto nomem;
    b->all_time = 1;
    b->values = intern_new();
    b->keys = intern_new();
    if (!b->values || !b->keys)
        goto nomem;
    /* Reserved: HISTORY_NIL and HISTORY_ANY, never matched by text, so that
     * a string "nil" read from a history stays a value of its own. */
    if (intern_append(b->values, "nil", 3, &id) || intern_append(b->values, "?", 1, &id))
        goto nomem;
    b->values->lens[HISTORY_NIL] = UINT32_MAX;
    b->values->lens[HISTORY_ANY] = UINT32_MAX;
    *out = b;
    return 0;
nomem:
    history_builder_free(b);
    return nerr_set(e, NERR_NOMEM, "out of memory building a history");
}

void history_builder_free(struct history_builder *b)
{
    if (!b)
        return;
    free(b->ev);
    intern_free(b->values);
    intern_free(b->keys);
    free(b);
}

void history_builder_skip(struct history_builder *b)
{
    b->skipped++;
    b->seq++;
}

static int value_of(struct history_builder *b, enum history_vkind k, const char *s, size_t len,
                    uint32_t *id)
{
    if (k != HISTORY_V_TEXT) {
        *id = HISTORY_NIL;
        return 0;
    }
    return intern_get(b->values, s, len, id);
}

int history_builder_add(struct history_builder *b, const struct history_event *ev, struct nerr *e)
{
    if (b->n >= UINT32_MAX - 1)
        return nerr_set(e, NERR_LIMIT, "history has too many events");
    if ((unsigned)ev->type > HISTORY_INFO || (unsigned)ev->f > HISTORY_APPEND)
        return nerr_set(e, NERR_INVALID, "line %u: bad event type or f", ev->line);
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 1024;
        struct bev *nv = realloc(b->ev, nc * sizeof *nv);
        if (!nv)
            return nerr_set(e, NERR_NOMEM, "out of memory building a history");
        b->ev = nv;
        b->cap = nc;
    }
    struct bev *x = &b->ev[b->n];
    memset(x, 0, sizeof *x);
    x->process = ev->process;
    x->time = ev->time;
    x->line = ev->line;
    x->seq = b->seq;
    x->type = (uint8_t)ev->type;
    x->f = (uint8_t)ev->f;
    x->consistent = ev->consistent ? 1 : 0;
    x->k1 = (uint8_t)ev->value_kind;
    x->k2 = (uint8_t)ev->value2_kind;
    x->has_key = ev->key != NULL;
    if (!ev->has_time)
        b->all_time = 0;
    int rc = intern_get(b->keys, ev->key ? ev->key : "", ev->key ? ev->key_len : 0, &x->key);
    if (!rc)
        rc = value_of(b, ev->value_kind, ev->value, ev->value_len, &x->v1);
    if (!rc)
        rc = value_of(b, ev->value2_kind, ev->value2, ev->value2_len, &x->v2);
    if (rc)
        return nerr_set(e, rc, "out of memory building a history");
    b->n++;
    b->seq++;
    return 0;
}

static int bev_cmp(const void *pa, const void *pb)
{
    const struct bev *a = pa, *b = pb;
    if (a->time != b->time)
        return a->time < b->time ? -1 : 1;
    int ai = a->type != HISTORY_INVOKE, bi = b->type != HISTORY_INVOKE;
    if (ai != bi)
        return ai - bi;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* process -> index of its pending op (open addressing over int64). */
struct pmap {
    int64_t *keys;
    uint32_t *vals; /* HISTORY_NONE = no pending op */
    uint8_t *used;
    uint32_t n, cap;
};

static uint32_t *pmap_slot(struct pmap *m, int64_t p)
{
    uint64_t h = (uint64_t)p * 0x9E3779B97F4A7C15ull;
    uint32_t i = (uint32_t)(h >> 32) & (m->cap - 1);
    while (m->used[i] && m->keys[i] != p)
        i = (i + 1) & (m->cap - 1);
    if (!m->used[i]) {
        m->used[i] = 1;
        m->keys[i] = p;
        m->vals[i] = HISTORY_NONE;
        m->n++;
    }
    return &m->vals[i];
}

static int pmap_init(struct pmap *m, uint32_t cap)
{
    m->cap = cap;
    m->n = 0;
    m->keys = malloc(cap * sizeof *m->keys);
    m->vals = malloc(cap * sizeof *m->vals);
    m->used = calloc(cap, 1);
    return m->keys && m->vals && m->used ? 0 : NERR_NOMEM;
}

static void pmap_free(struct pmap *m)
{
    free(m->keys);
    free(m->vals);
    free(m->used);
}

static int pmap_grow(struct pmap *m)
{
    struct pmap nm;
    if (pmap_init(&nm, m->cap * 2))
        goto fail;
    for (uint32_t i = 0; i < m->cap; i++)
        if (m->used[i])
            *pmap_slot(&nm, m->keys[i]) = m->vals[i];
    pmap_free(m);
    *m = nm;
    return 0;
fail:
    pmap_free(&nm);
    return NERR_NOMEM;
}

static const char *type_name(int t)
{
    static const char *n[] = {"invoke", "ok", "fail", "info"};
    return t >= 0 && t <= 3 ? n[t] : "?";
}

int history_builder_finish(struct history_builder *b, struct history **out, struct nerr *e)
{
    struct history *h = calloc(1, sizeof *h);
    struct pmap pm = {0};
    int rc;
    if (!h || pmap_init(&pm, 1024)) {
        rc = nerr_set(e, NERR_NOMEM, "out of memory building a history");
        goto fail;
    }
    snprintf(h->source, sizeof h->source, "memory");
    h->values = b->values;
    h->keys = b->keys;
    b->values = b->keys = NULL;
    h->skipped = b->skipped;
    h->has_time = b->all_time && b->n > 0;
    if (h->has_time)
        qsort(b->ev, b->n, sizeof *b->ev, bev_cmp);
    /* Without timestamps an event keeps its position in the source, ignored
     * events included, so that indices match Jepsen's and Knossos's. */
    h->nevents = h->has_time ? (uint32_t)b->n : b->seq;
    size_t ninv = 0;
    for (size_t i = 0; i < b->n; i++)
        ninv += b->ev[i].type == HISTORY_INVOKE;
    h->ops = calloc(ninv ? ninv : 1, sizeof *h->ops);
    h->nkeys = h->keys->n;
    h->key_off = calloc((size_t)h->nkeys + 1, sizeof *h->key_off);
    h->key_ops = malloc((ninv ? ninv : 1) * sizeof *h->key_ops);
    if (!h->ops || !h->key_off || !h->key_ops) {
        rc = nerr_set(e, NERR_NOMEM, "out of memory building a history");
        goto fail;
    }
    for (size_t i = 0; i < b->n; i++) {
        const struct bev *x = &b->ev[i];
        uint32_t idx = h->has_time ? (uint32_t)i : x->seq;
        int64_t t = h->has_time ? x->time : (int64_t)idx;
        if ((pm.n + 1) * 2 > pm.cap && pmap_grow(&pm)) {
            rc = nerr_set(e, NERR_NOMEM, "out of memory building a history");
            goto fail;
        }
        uint32_t *pending = pmap_slot(&pm, x->process);
        if (x->type == HISTORY_INVOKE) {
            if (*pending != HISTORY_NONE) /* the earlier op never completed */
                h->crashed++;
            struct history_op *op = &h->ops[h->nops];
            memset(op, 0, sizeof *op);
            op->key = x->key;
            op->inv = idx;
            op->ret = HISTORY_NONE;
            op->process = x->process;
            op->t_inv = t;
            op->t_ret = INT64_MAX;
            op->f = x->f;
            op->status = HISTORY_S_INFO;
            op->consistent = x->consistent;
            op->line_inv = x->line;
            op->value = x->f == HISTORY_READ ? HISTORY_ANY : x->v1;
            op->value2 = x->v2;
            if ((x->f == HISTORY_WRITE || x->f == HISTORY_CAS) && x->k1 == HISTORY_V_NONE)
                op->value = HISTORY_NONE; /* filled from the completion */
            if (x->f == HISTORY_CAS && x->k2 == HISTORY_V_NONE)
                op->value2 = HISTORY_NONE;
            *pending = (uint32_t)h->nops++;
            continue;
        }
        if (*pending == HISTORY_NONE) {
            rc = nerr_set(e, NERR_INVALID,
                          "line %u: %s %s of process %lld has no pending invocation", x->line,
                          type_name(x->type), history_f_name(x->f), (long long)x->process);
            goto fail;
        }
        struct history_op *op = &h->ops[*pending];
        if (op->f != x->f) {
            rc = nerr_set(e, NERR_INVALID,
                          "line %u: %s %s of process %lld completes a %s (line %u)", x->line,
                          type_name(x->type), history_f_name(x->f), (long long)x->process,
                          history_f_name(op->f), op->line_inv);
            goto fail;
        }
        *pending = HISTORY_NONE;
        op->ret = idx;
        op->t_ret = t;
        op->line_ret = x->line;
        op->status = x->type == HISTORY_OK     ? HISTORY_S_OK
                     : x->type == HISTORY_FAIL ? HISTORY_S_FAIL
                                               : HISTORY_S_INFO;
        if (op->f == HISTORY_READ && x->type == HISTORY_OK)
            op->value = x->k1 == HISTORY_V_NONE ? HISTORY_ANY : x->v1;
        if (op->value == HISTORY_NONE)
            op->value = x->k1 == HISTORY_V_NONE ? HISTORY_NONE : x->v1;
        if (op->value2 == HISTORY_NONE)
            op->value2 = x->k2 == HISTORY_V_NONE ? HISTORY_NONE : x->v2;
        if (!op->consistent && x->consistent)
            op->consistent = 1;
    }
    for (size_t i = 0; i < h->nops; i++) {
        struct history_op *op = &h->ops[i];
        if (op->ret == HISTORY_NONE)
            h->crashed++;
        if ((op->f == HISTORY_WRITE || op->f == HISTORY_CAS) && op->value == HISTORY_NONE) {
            rc = nerr_set(e, NERR_INVALID, "line %u: %s of process %lld has no value",
                          op->line_inv, history_f_name(op->f), (long long)op->process);
            goto fail;
        }
        if (op->f == HISTORY_CAS && op->value2 == HISTORY_NONE) {
            rc = nerr_set(e, NERR_INVALID,
                          "line %u: cas of process %lld needs [expected new] values",
                          op->line_inv, (long long)op->process);
            goto fail;
        }
        if (op->f != HISTORY_CAS)
            op->value2 = HISTORY_NIL;
        if (op->f == HISTORY_DELETE)
            op->value = HISTORY_NIL;
        h->key_off[op->key + 1]++;
    }
    for (uint32_t k = 0; k < h->nkeys; k++)
        h->key_off[k + 1] += h->key_off[k];
    {
        uint32_t *fill = calloc(h->nkeys ? h->nkeys : 1, sizeof *fill);
        if (!fill) {
            rc = nerr_set(e, NERR_NOMEM, "out of memory building a history");
            goto fail;
        }
        for (size_t i = 0; i < h->nops; i++) {
            uint32_t k = h->ops[i].key;
            h->key_ops[h->key_off[k] + fill[k]++] = (uint32_t)i;
        }
        free(fill);
    }
    pmap_free(&pm);
    history_builder_free(b);
    *out = h;
    return 0;
fail:
    pmap_free(&pm);
    history_builder_free(b);
    history_free(h);
    return rc;
}

void history_free(struct history *h)
{
    if (!h)
        return;
    free(h->ops);
    free(h->key_off);
    free(h->key_ops);
    intern_free(h->values);
    intern_free(h->keys);
    free(h);
}

const char *history_value(const struct history *h, uint32_t v, size_t *len)
{
    if (v == HISTORY_NIL || v == HISTORY_ANY) {
        if (len)
            *len = 1 + 2 * (v == HISTORY_NIL);
        return v == HISTORY_NIL ? "nil" : "?";
    }
    return intern_text(h->values, v, len);
}

int history_value_id(struct history *h, const char *text, size_t len, uint32_t *id, struct nerr *e)
{
    if (!text) {
        *id = HISTORY_NIL;
        return 0;
    }
    int rc = intern_get(h->values, text, len, id);
    return rc ? nerr_set(e, rc, "out of memory interning a value") : 0;
}

uint32_t history_value_find(const struct history *h, const char *text, size_t len)
{
    return intern_find(h->values, text, len);
}

const char *history_key(const struct history *h, uint32_t k, size_t *len)
{
    return intern_text(h->keys, k, len);
}

uint32_t history_nvalues(const struct history *h)
{
    return h->values->n;
}

const char *history_f_name(int f)
{
    static const char *n[] = {"read", "write", "cas", "delete", "append"};
    return f >= 0 && f <= HISTORY_APPEND ? n[f] : "?";
}

const char *history_status_name(int s)
{
    static const char *n[] = {"ok", "fail", "info"};
    return s >= 0 && s <= HISTORY_S_INFO ? n[s] : "?";
}
