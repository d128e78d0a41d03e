/*
 * etcd.c — what the etcd target (--target etcd) does differently from the
 * DynamoDB one: its request bodies for etcd 3.4's v3 JSON gateway, its
 * error typing, and the options it refuses. Contract in load/load.h
 * ("Targets") and load/load_int.h.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load/load.h"
#include "load/load_int.h"

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 (RFC 4648 §4, padded), as etcd's gateway wants bytes. */
static char *put_b64(char *p, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)u[i] << 16 | (uint32_t)u[i + 1] << 8 | u[i + 2];
        *p++ = B64[v >> 18];
        *p++ = B64[(v >> 12) & 63];
        *p++ = B64[(v >> 6) & 63];
        *p++ = B64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)u[i] << 16;
        *p++ = B64[v >> 18];
        *p++ = B64[(v >> 12) & 63];
        *p++ = '=';
        *p++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)u[i] << 16 | (uint32_t)u[i + 1] << 8;
        *p++ = B64[v >> 18];
        *p++ = B64[(v >> 12) & 63];
        *p++ = B64[(v >> 6) & 63];
        *p++ = '=';
    }
    return p;
}

/* etcd v3 gateway bodies: /v3/kv/put and /v3/kv/range. */
size_t load_etcd_body(const struct load_gen *g, const struct load_req *rq, char *buf, size_t cap)
{
    char k[24], *p = buf;
    k[0] = 'k';
    size_t kl = (size_t)(load_put_u64(k + 1, rq->key) - k);
    p = load_put_str(p, "{\"key\":\"");
    p = put_b64(p, k, kl);
    if (rq->op == LOAD_PUT) {
        /* The value goes through the scratch end of buf: base64 output
         * (4/3 of it) is written before it, never over unread input. */
        size_t vmax = g->value_size + 48;
        char *v = buf + cap - vmax;
        size_t vl = load_gen_value(g, rq->key, rq->n, v, vmax);
        p = load_put_str(p, "\",\"value\":\"");
        memmove(buf + cap - vl, v, vl); /* flush against the end */
        p = put_b64(p, buf + cap - vl, vl);
        p = load_put_str(p, "\"}");
    } else {
        p = load_put_str(p, rq->op == LOAD_GET ? "\",\"serializable\":true}" : "\"}");
    }
    return (size_t)(p - buf);
}

/* etcd's gateway answers errors as {"error":..., "code":N, "message":...}
 * with N a gRPC status code: "grpc-14" (Unavailable) and so on. */
void load_etcd_error_type(const char *body, size_t len, long http, char *out, size_t cap)
{
    const char *t = memmem(body, len, "\"code\":", 7);
    if (t && t + 7 < body + len && isdigit((unsigned char)t[7])) {
        snprintf(out, cap, "grpc-%d", atoi(t + 7));
        return;
    }
    snprintf(out, cap, "http-%ld", http);
}

/* What the etcd target cannot do, refused by name rather than ignored. */
int load_etcd_opts_check(const struct load_opts *o, int signing, struct nerr *e)
{
    const char *bad = o->create       ? "--create"
                      : o->partitions ? "--partitions"
                      : o->history[0] ? "--history"
                      : signing       ? "--access-key-id/--secret-access-key"
                                      : NULL;
    if (bad)
        return nerr_set(e, NERR_INVALID, "%s is not available with --target etcd", bad);
    int ops_ok =
        o->mix == LOAD_MIX_WEIGHTS ? o->weight[LOAD_CAS] <= 0 && o->weight[LOAD_DELETE] <= 0 : 1;
    if (!ops_ok)
        return nerr_set(e, NERR_INVALID,
                        "--target etcd does put, get and cget only (no cas, "
                        "delete in --mix)");
    return 0;
}
