/*
 * gen.c — the request stream of `nines load`: which operation on which key
 * (deterministic from --seed), and each request's JSON body. Contract in
 * load/load.h ("generation").
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "checkers/cval.h"
#include "lib/rng.h"
#include "load/load.h"
#include "load/load_int.h"

/* Zipf by rejection-inversion (Hörmann & Derflinger, "Rejection-inversion
 * to generate variates from monotone discrete distributions", 1996), in the
 * form Apache Commons RNG uses: H is the integral of h(x) = x^-s, written with
 * log1p/expm1 so that s near 1 loses no precision. */
static double zipf_h(double s, double x)
{
    return exp(-s * log(x));
}

static double zipf_helper1(double x)
{
    return fabs(x) > 1e-8 ? log1p(x) / x : 1 - x * (0.5 - x * (1.0 / 3 - 0.25 * x));
}

static double zipf_helper2(double x)
{
    return fabs(x) > 1e-8 ? expm1(x) / x : 1 + x * 0.5 * (1 + x * (1.0 / 3) * (1 + 0.25 * x));
}

static double zipf_H(double s, double x)
{
    double lx = log(x);
    return zipf_helper2((1 - s) * lx) * lx;
}

static double zipf_Hinv(double s, double x)
{
    double t = x * (1 - s);
    if (t < -1)
        t = -1; /* rounding can push it past the domain */
    return exp(zipf_helper1(t) * x);
}

/* Rank 1..keys, rank 1 the most frequent. */
static uint64_t zipf_next(struct load_gen *g)
{
    for (int tries = 0;; tries++) {
        double u = g->z_hn + rng_unit(&g->rng) * (g->z_hx1 - g->z_hn);
        double x = zipf_Hinv(g->zs, u);
        double kd = floor(x + 0.5);
        uint64_t k = kd < 1 ? 1 : kd > (double)g->keys ? g->keys : (uint64_t)kd;
        if ((double)k - x <= g->z_s2 ||
            u >= zipf_H(g->zs, (double)k + 0.5) - zipf_h(g->zs, (double)k))
            return k;
        if (tries > 1000)
            return k; /* the acceptance rate is > 0.5; this only bounds the loop */
    }
}

void load_gen_init(struct load_gen *g, const struct load_opts *o)
{
    memset(g, 0, sizeof *g);
    rng_seed(&g->rng, o->seed);
    g->keys = o->keys;
    g->mix = o->mix;
    g->read_ratio = o->read_ratio;
    g->value_size = o->value_size;
    g->writer_id = o->writer_id;
    g->dist = o->dist;
    g->target = o->target;
    double c = 0;
    int last = 0;
    for (int i = 0; i < LOAD_NOPS; i++) {
        g->cum[i] = (c += o->weight[i]);
        if (o->weight[i] > 0)
            last = i;
    }
    /* Rounding must never leave a draw unassigned or give it to an op of
     * weight 0. */
    for (int i = last; i < LOAD_NOPS; i++)
        g->cum[i] = 2;
    if (g->dist == LOAD_DIST_ZIPF) {
        g->zs = o->zipf_s;
        g->z_hx1 = zipf_H(g->zs, 1.5) - 1;
        g->z_hn = zipf_H(g->zs, (double)g->keys + 0.5);
        g->z_s2 = 2 - zipf_Hinv(g->zs, zipf_H(g->zs, 2.5) - zipf_h(g->zs, 2));
    }
    snprintf(g->table, sizeof g->table, "%s", o->table);
}

void load_gen_next(struct load_gen *g, struct load_req *rq)
{
    uint64_t r = rng_next(&g->rng);
    switch (g->mix) {
    case LOAD_MIX_PUT:
        rq->op = LOAD_PUT;
        break;
    case LOAD_MIX_GET:
        rq->op = LOAD_GET;
        break;
    case LOAD_MIX_BOTH:
        rq->op = rng_unit(&g->rng) < g->read_ratio ? LOAD_GET : LOAD_PUT;
        break;
    case LOAD_MIX_WEIGHTS: {
        double u = rng_unit(&g->rng);
        int i = 0;
        while (i < LOAD_NOPS - 1 && u >= g->cum[i])
            i++; /* a weight of 0 adds nothing to cum, so u never stops there */
        rq->op = (enum load_op)i;
        break;
    }
    }
    if (g->dist == LOAD_DIST_ZIPF)
        rq->key = zipf_next(g) - 1;
    else /* Multiply-shift maps r onto [0, keys) without modulo bias worth noting. */
        rq->key = (uint64_t)(((unsigned __int128)r * g->keys) >> 64);
    rq->seq = g->seq++;
    rq->n = g->writer_id * LOAD_VALUE_WRITER_MULT + rq->seq;
    rq->expect = 0;
}

size_t load_gen_body_max(const struct load_gen *g)
{
    /* A cas carries two values; a value is value_size bytes or, when that is
     * too small, its unpadded form (under 40 bytes). etcd's one value is
     * base64: 4 bytes per 3, and the key as well. */
    size_t ddb = strlen(g->table) + 2 * (g->value_size + 40) + 256;
    size_t etcd = 4 * ((g->value_size + 40 + 2) / 3) + 256;
    return ddb > etcd ? ddb : etcd;
}

char *load_put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

char *load_put_str(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

size_t load_gen_value(const struct load_gen *g, uint64_t key, uint64_t n, char *buf, size_t cap)
{
    char k[24];
    *load_put_u64(k + 1, key) = '\0';
    k[0] = 'k';
    size_t kl = strlen(k);
    size_t base = cval_format(NULL, 0, k, kl, n, 0);
    /* With padding the value is base + '.' + padding bytes. */
    size_t pad = g->value_size > base + 1 ? g->value_size - base - 1 : 0;
    return cval_format(buf, cap, k, kl, n, pad);
}

size_t load_gen_body(const struct load_gen *g, const struct load_req *rq, char *buf, size_t cap)
{
    if (cap < load_gen_body_max(g))
        return 0;
    if (g->target == LOAD_TARGET_ETCD)
        return load_etcd_body(g, rq, buf, cap);
    char *p = buf;
    int write = rq->op == LOAD_PUT || rq->op == LOAD_CAS;
    p = load_put_str(p, "{\"TableName\":\"");
    p = load_put_str(p, g->table);
    p = load_put_str(p, write ? "\",\"Item\":{\"pk\":{\"S\":\"k" : "\",\"Key\":{\"pk\":{\"S\":\"k");
    p = load_put_u64(p, rq->key);
    if (!write) {
        p = load_put_str(p, rq->op == LOAD_CGET ? "\"}},\"ConsistentRead\":true}" : "\"}}}");
        return (size_t)(p - buf);
    }
    p = load_put_str(p, "\"},\"v\":{\"S\":\"");
    p += load_gen_value(g, rq->key, rq->n, p, cap - (size_t)(p - buf));
    p = load_put_str(p, "\"}}");
    if (rq->op == LOAD_CAS) {
        /* "#v": DynamoDB's reserved words are many; a name placeholder is
         * always safe. */
        if (rq->expect) {
            p = load_put_str(p, ",\"ConditionExpression\":\"#v = :e\",\"ExpressionAttributeNames\":"
                                "{\"#v\":\"v\"},\"ExpressionAttributeValues\":{\":e\":{\"S\":\"");
            p += load_gen_value(g, rq->key, rq->expect - 1, p, cap - (size_t)(p - buf));
            p = load_put_str(p, "\"}}");
        } else {
            p = load_put_str(p, ",\"ConditionExpression\":\"attribute_not_exists(pk)\"");
        }
    }
    p = load_put_str(p, "}");
    return (size_t)(p - buf);
}

const char *load_op_target(enum load_op op)
{
    switch (op) {
    case LOAD_GET:
    case LOAD_CGET:
        return "DynamoDB_20120810.GetItem";
    case LOAD_DELETE:
        return "DynamoDB_20120810.DeleteItem";
    default:
        return "DynamoDB_20120810.PutItem";
    }
}

const char *load_op_name(enum load_op op)
{
    static const char *const names[LOAD_NOPS] = {"put", "get", "cget", "cas", "delete"};
    return op >= 0 && op < LOAD_NOPS ? names[op] : "?";
}
