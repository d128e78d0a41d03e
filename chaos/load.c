/*
 * load.c — `nines load`; the pieces and their contracts are in load.h.
 *
 * Cost per request is kept small because the generator shares two cores with
 * the server it measures: each connection owns one curl easy handle, a body
 * buffer, a response buffer and a header list made of curl_slist nodes that
 * live inside the connection (curl only reads the list), so an unsigned
 * request allocates nothing; a signed one allocates only the short-lived
 * buffers of the SigV4 computation.
 */
#include "chaos/load.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "lib/log.h"
#include "store/sigv4.h"

#define RESP_CAP 4096
#define CONTENT_TYPE "application/x-amz-json-1.0"

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ================= options ================= */

void load_usage(FILE *f)
{
    fprintf(
        f,
        "usage: nines load [OPTIONS]\n"
        "\n"
        "Drives PutItem/GetItem traffic against DynamoDB-compatible endpoints and reports\n"
        "throughput, errors by type and latency percentiles per operation.\n"
        "\n"
        "  --endpoint URL         endpoint, repeatable or comma-separated; connections are\n"
        "                         spread round-robin (default http://127.0.0.1:8101)\n"
        "  --table NAME           table (default \"load\")\n"
        "  --create               create the table (hash key \"pk\", type S) if it does not exist\n"
        "  --partitions N         with --create: partition count (tag nines:partitions)\n"
        "  --op put|get|mix       operation (default put); mix uses --read-ratio\n"
        "  --read-ratio F         fraction of gets in a mix, 0..1 (default 0.5)\n"
        "  --concurrency N        connections (default 64)\n"
        "  --rate R               open loop at R requests/s, latency measured from each\n"
        "                         request's intended start; without it, closed loop\n"
        "  --duration S           measured seconds (default 10, max 3600)\n"
        "  --requests N           stop after N measured requests (the duration still bounds)\n"
        "  --warmup S             seconds of traffic before measuring (default 0)\n"
        "  --keys N               key space k0..k<N-1> (default 100000)\n"
        "  --value-size B         bytes in each put's value (default 100)\n"
        "  --seed N               seed for keys and operations (default 1)\n"
        "  --timeout MS           per-request timeout (default 5000)\n"
        "  --access-key-id ID     sign with SigV4 (default $AWS_ACCESS_KEY_ID; unsigned if none)\n"
        "  --secret-access-key K  (default $AWS_SECRET_ACCESS_KEY)\n"
        "  --region R             (default $AWS_REGION, $AWS_DEFAULT_REGION, us-east-1)\n"
        "  --json                 print the summary as one JSON object\n"
        "  --help                 this text\n"
        "\n"
        "Exit status: 0 when the run completed (request errors are reported, not fatal),\n"
        "1 when it could not run (curl, --create), 2 on bad options.\n");
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    if (!s || !*s)
        return -1;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int add_endpoint(struct load_opts *o, const char *s, size_t n, struct nerr *e)
{
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    if (!n)
        return nerr_set(e, NERR_INVALID, "--endpoint: empty endpoint");
    int has_scheme = (n > 7 && !strncmp(s, "http://", 7)) || (n > 8 && !strncmp(s, "https://", 8));
    if (!has_scheme && memmem(s, n, "://", 3))
        return nerr_set(e, NERR_INVALID,
                        "--endpoint '%.*s': only http:// and https:// are supported", (int)n, s);
    char **v = realloc(o->endpoints, (o->nendpoints + 1) * sizeof *v);
    if (!v)
        return nerr_set(e, NERR_NOMEM, "out of memory");
    o->endpoints = v;
    char *u = malloc(n + 8 + 1);
    if (!u)
        return nerr_set(e, NERR_NOMEM, "out of memory");
    snprintf(u, n + 9, "%s%.*s", has_scheme ? "" : "http://", (int)n, s);
    /* A trailing slash would make curl request "//" paths. */
    size_t ul = strlen(u);
    while (ul > 8 && u[ul - 1] == '/')
        u[--ul] = '\0';
    o->endpoints[o->nendpoints++] = u;
    return 0;
}

static int valid_table(const char *t)
{
    size_t n = strlen(t);
    if (n < 3 || n > 255)
        return 0;
    for (; *t; t++)
        if (!isalnum((unsigned char)*t) && *t != '_' && *t != '-' && *t != '.')
            return 0;
    return 1;
}

static int copy_opt(char *dst, size_t cap, const char *v, const char *name, struct nerr *e)
{
    if (strlen(v) >= cap)
        return nerr_set(e, NERR_INVALID, "%s: value too long (at most %zu bytes)", name, cap - 1);
    strcpy(dst, v);
    return 0;
}

int load_opts_parse(int argc, char **argv, struct load_opts *o, struct nerr *e)
{
    enum {
        O_ENDPOINT = 256,
        O_TABLE,
        O_CREATE,
        O_PARTITIONS,
        O_OP,
        O_READ_RATIO,
        O_CONCURRENCY,
        O_RATE,
        O_DURATION,
        O_REQUESTS,
        O_WARMUP,
        O_KEYS,
        O_VALUE_SIZE,
        O_SEED,
        O_TIMEOUT,
        O_AKID,
        O_SECRET,
        O_REGION,
        O_JSON,
        O_HELP
    };
    static const struct option longopts[] = {
        {"endpoint", required_argument, NULL, O_ENDPOINT},
        {"table", required_argument, NULL, O_TABLE},
        {"create", no_argument, NULL, O_CREATE},
        {"partitions", required_argument, NULL, O_PARTITIONS},
        {"op", required_argument, NULL, O_OP},
        {"read-ratio", required_argument, NULL, O_READ_RATIO},
        {"concurrency", required_argument, NULL, O_CONCURRENCY},
        {"rate", required_argument, NULL, O_RATE},
        {"duration", required_argument, NULL, O_DURATION},
        {"requests", required_argument, NULL, O_REQUESTS},
        {"warmup", required_argument, NULL, O_WARMUP},
        {"keys", required_argument, NULL, O_KEYS},
        {"value-size", required_argument, NULL, O_VALUE_SIZE},
        {"seed", required_argument, NULL, O_SEED},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"access-key-id", required_argument, NULL, O_AKID},
        {"secret-access-key", required_argument, NULL, O_SECRET},
        {"region", required_argument, NULL, O_REGION},
        {"json", no_argument, NULL, O_JSON},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int rc = 0, saw_secret = 0, saw_akid = 0;
    uint64_t u;
    memset(o, 0, sizeof *o);
    strcpy(o->table, "load");
    o->mix = LOAD_MIX_PUT;
    o->read_ratio = 0.5;
    o->concurrency = 64;
    o->duration_s = 10;
    o->keys = 100000;
    o->value_size = 100;
    o->seed = 1;
    o->timeout_ms = 5000;

    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        const char *v = optarg;
        switch (c) {
        case O_ENDPOINT:
            for (const char *s = v;;) {
                const char *comma = strchr(s, ',');
                size_t n = comma ? (size_t)(comma - s) : strlen(s);
                if ((rc = add_endpoint(o, s, n, e)))
                    goto fail;
                if (!comma)
                    break;
                s = comma + 1;
            }
            break;
        case O_TABLE:
            if (!valid_table(v)) {
                rc = nerr_set(e, NERR_INVALID,
                              "--table '%s': 3 to 255 characters of a-z A-Z 0-9 _ - .", v);
                goto fail;
            }
            strcpy(o->table, v);
            break;
        case O_CREATE:
            o->create = 1;
            break;
        case O_PARTITIONS:
            if (parse_u64(v, 1, 4096, &u)) {
                rc = nerr_set(e, NERR_INVALID, "--partitions '%s': an integer 1..4096", v);
                goto fail;
            }
            o->partitions = (unsigned)u;
            break;
        case O_OP:
            if (!strcmp(v, "put"))
                o->mix = LOAD_MIX_PUT;
            else if (!strcmp(v, "get"))
                o->mix = LOAD_MIX_GET;
            else if (!strcmp(v, "mix"))
                o->mix = LOAD_MIX_BOTH;
            else {
                rc = nerr_set(e, NERR_INVALID, "--op '%s': one of put, get, mix", v);
                goto fail;
            }
            break;
        case O_READ_RATIO:
            if (parse_double(v, 0, 1, &o->read_ratio)) {
                rc = nerr_set(e, NERR_INVALID, "--read-ratio '%s': a number 0..1", v);
                goto fail;
            }
            break;
        case O_CONCURRENCY:
            if (parse_u64(v, 1, 4096, &u)) {
                rc = nerr_set(e, NERR_INVALID, "--concurrency '%s': an integer 1..4096", v);
                goto fail;
            }
            o->concurrency = (unsigned)u;
            break;
        case O_RATE:
            if (parse_double(v, 0, 10e6, &o->rate) || o->rate <= 0) {
                rc = nerr_set(e, NERR_INVALID, "--rate '%s': requests per second, > 0 and <= 1e7",
                              v);
                goto fail;
            }
            break;
        case O_DURATION:
            if (parse_double(v, 0, LOAD_MAX_DURATION_S, &o->duration_s) || o->duration_s <= 0) {
                rc = nerr_set(e, NERR_INVALID, "--duration '%s': seconds, > 0 and <= %.0f", v,
                              LOAD_MAX_DURATION_S);
                goto fail;
            }
            break;
        case O_REQUESTS:
            if (parse_u64(v, 1, UINT64_C(1000000000000), &o->requests)) {
                rc = nerr_set(e, NERR_INVALID, "--requests '%s': an integer >= 1", v);
                goto fail;
            }
            break;
        case O_WARMUP:
            if (parse_double(v, 0, LOAD_MAX_DURATION_S, &o->warmup_s)) {
                rc = nerr_set(e, NERR_INVALID, "--warmup '%s': seconds, 0..%.0f", v,
                              LOAD_MAX_DURATION_S);
                goto fail;
            }
            break;
        case O_KEYS:
            if (parse_u64(v, 1, UINT64_C(1000000000000), &o->keys)) {
                rc = nerr_set(e, NERR_INVALID, "--keys '%s': an integer >= 1", v);
                goto fail;
            }
            break;
        case O_VALUE_SIZE:
            /* DynamoDB's item limit is 400 KB, key and names included. */
            if (parse_u64(v, 1, 399000, &u)) {
                rc = nerr_set(e, NERR_INVALID, "--value-size '%s': bytes, 1..399000", v);
                goto fail;
            }
            o->value_size = (size_t)u;
            break;
        case O_SEED:
            if (parse_u64(v, 0, UINT64_MAX, &o->seed)) {
                rc = nerr_set(e, NERR_INVALID, "--seed '%s': an unsigned integer", v);
                goto fail;
            }
            break;
        case O_TIMEOUT:
            if (parse_u64(v, 1, 600000, &u)) {
                rc = nerr_set(e, NERR_INVALID, "--timeout '%s': milliseconds, 1..600000", v);
                goto fail;
            }
            o->timeout_ms = (unsigned)u;
            break;
        case O_AKID:
            if ((rc = copy_opt(o->akid, sizeof o->akid, v, "--access-key-id", e)))
                goto fail;
            saw_akid = 1;
            break;
        case O_SECRET:
            if ((rc = copy_opt(o->secret, sizeof o->secret, v, "--secret-access-key", e)))
                goto fail;
            saw_secret = 1;
            break;
        case O_REGION:
            if ((rc = copy_opt(o->region, sizeof o->region, v, "--region", e)))
                goto fail;
            break;
        case O_JSON:
            o->json = 1;
            break;
        case O_HELP:
            o->help = 1;
            return 0;
        default:
            rc = nerr_set(e, NERR_INVALID, "unknown option or missing value: '%s'",
                          argv[optind - 1]);
            goto fail;
        }
    }
    if (optind < argc) {
        rc = nerr_set(e, NERR_INVALID, "unexpected argument '%s'", argv[optind]);
        goto fail;
    }
    if (!o->nendpoints && (rc = add_endpoint(o, "http://127.0.0.1:8101", 21, e)))
        goto fail;
    if (!saw_akid && getenv("AWS_ACCESS_KEY_ID") &&
        (rc = copy_opt(o->akid, sizeof o->akid, getenv("AWS_ACCESS_KEY_ID"), "AWS_ACCESS_KEY_ID",
                       e)))
        goto fail;
    if (!saw_secret && getenv("AWS_SECRET_ACCESS_KEY") &&
        (rc = copy_opt(o->secret, sizeof o->secret, getenv("AWS_SECRET_ACCESS_KEY"),
                       "AWS_SECRET_ACCESS_KEY", e)))
        goto fail;
    if (!o->region[0]) {
        const char *r = getenv("AWS_REGION");
        if (!r || !*r)
            r = getenv("AWS_DEFAULT_REGION");
        if ((rc =
                 copy_opt(o->region, sizeof o->region, r && *r ? r : "us-east-1", "AWS_REGION", e)))
            goto fail;
    }
    if (!o->akid[0] != !o->secret[0]) {
        rc = nerr_set(e, NERR_INVALID,
                      "signing needs both an access key id and a secret access key"
                      " (--access-key-id/--secret-access-key or the AWS_ variables)");
        goto fail;
    }
    if (o->akid[0]) {
        struct sigv4_signer probe;
        if (sigv4_signer_init(&probe, o->akid, o->secret, o->region, "dynamodb")) {
            rc = nerr_set(e, NERR_INVALID,
                          "the access key id, secret or region cannot be used for "
                          "signing (too long, or contains '/')");
            goto fail;
        }
    }
    if (o->partitions && !o->create) {
        rc = nerr_set(e, NERR_INVALID, "--partitions only makes sense with --create");
        goto fail;
    }
    return 0;
fail:
    load_opts_free(o);
    return rc;
}

void load_opts_free(struct load_opts *o)
{
    for (size_t i = 0; i < o->nendpoints; i++)
        free(o->endpoints[i]);
    free(o->endpoints);
    o->endpoints = NULL;
    o->nendpoints = 0;
}

/* ================= generation ================= */

/* splitmix64: tiny, fast, and a seed replays a run exactly. */
static uint64_t gen_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void load_gen_init(struct load_gen *g, const struct load_opts *o)
{
    memset(g, 0, sizeof *g);
    g->rng = o->seed;
    g->keys = o->keys;
    g->mix = o->mix;
    g->read_ratio = o->read_ratio;
    g->value_size = o->value_size;
    snprintf(g->table, sizeof g->table, "%s", o->table);
}

void load_gen_next(struct load_gen *g, struct load_req *rq)
{
    uint64_t r = gen_rand(&g->rng);
    switch (g->mix) {
    case LOAD_MIX_PUT:
        rq->op = LOAD_PUT;
        break;
    case LOAD_MIX_GET:
        rq->op = LOAD_GET;
        break;
    default:
        rq->op = (double)(gen_rand(&g->rng) >> 11) / 9007199254740992.0 < g->read_ratio ? LOAD_GET
                                                                                        : LOAD_PUT;
    }
    /* Multiply-shift maps r onto [0, keys) without modulo bias worth noting. */
    rq->key = (uint64_t)(((unsigned __int128)r * g->keys) >> 64);
    rq->seq = g->seq++;
}

size_t load_gen_body_max(const struct load_gen *g)
{
    return strlen(g->table) + g->value_size + 128;
}

static char *put_u64(char *p, uint64_t v)
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

static char *put_str(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

size_t load_gen_body(const struct load_gen *g, const struct load_req *rq, char *buf, size_t cap)
{
    if (cap < load_gen_body_max(g))
        return 0;
    char *p = buf;
    p = put_str(p, "{\"TableName\":\"");
    p = put_str(p, g->table);
    p = put_str(p, rq->op == LOAD_PUT ? "\",\"Item\":{\"pk\":{\"S\":\"k"
                                      : "\",\"Key\":{\"pk\":{\"S\":\"k");
    p = put_u64(p, rq->key);
    if (rq->op == LOAD_GET) {
        p = put_str(p, "\"}}}");
        return (size_t)(p - buf);
    }
    p = put_str(p, "\"},\"v\":{\"S\":\"");
    /* seq in hex first (distinct values for the checkers), filler after. */
    static const char hex[] = "0123456789abcdef";
    char h[16];
    size_t hn = 0;
    uint64_t s = rq->seq;
    do {
        h[hn++] = hex[s & 15];
        s >>= 4;
    } while (s);
    size_t n = 0;
    while (hn && n < g->value_size)
        p[n++] = h[--hn];
    if (n < g->value_size) {
        memset(p + n, 'x', g->value_size - n);
        n = g->value_size;
    }
    p += n;
    p = put_str(p, "\"}}}");
    return (size_t)(p - buf);
}

const char *load_op_target(enum load_op op)
{
    return op == LOAD_GET ? "DynamoDB_20120810.GetItem" : "DynamoDB_20120810.PutItem";
}

const char *load_op_name(enum load_op op)
{
    return op == LOAD_GET ? "get" : "put";
}

/* ================= accounting ================= */

void load_stats_init(struct load_stats *s)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < LOAD_NOPS; i++)
        hist_init(&s->op[i].latency);
}

void load_stats_ok(struct load_stats *s, enum load_op op, uint64_t latency_ns, int hit)
{
    struct load_op_stats *o = &s->op[op];
    o->ok++;
    if (op == LOAD_GET) {
        if (hit)
            o->hits++;
        else
            o->misses++;
    }
    hist_record(&o->latency, latency_ns);
}

void load_stats_error(struct load_stats *s, enum load_op op, const char *type)
{
    struct load_op_stats *o = &s->op[op];
    o->errors++;
    for (size_t i = 0; i < o->nerr; i++) {
        if (!strcmp(o->err[i].type, type)) {
            o->err[i].n++;
            return;
        }
    }
    if (o->nerr == LOAD_MAX_ERROR_TYPES) {
        /* The last slot collects every type beyond the table's size. */
        snprintf(o->err[LOAD_MAX_ERROR_TYPES - 1].type, sizeof o->err[0].type, "other");
        o->err[LOAD_MAX_ERROR_TYPES - 1].n++;
        return;
    }
    snprintf(o->err[o->nerr].type, sizeof o->err[0].type, "%s", type);
    o->err[o->nerr++].n = 1;
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

void load_stats_print(const struct load_stats *s, FILE *f)
{
    double secs = s->measured_s > 0 ? s->measured_s : 1;
    uint64_t tok = 0, terr = 0;
    fprintf(f, "%-5s %10s %8s %10s %8s %8s %9s %8s\n", "op", "ok", "errors", "ops/s", "p50 ms",
            "p99 ms", "p99.9 ms", "max ms");
    for (int i = 0; i < LOAD_NOPS; i++) {
        const struct load_op_stats *o = &s->op[i];
        if (!o->ok && !o->errors)
            continue;
        tok += o->ok;
        terr += o->errors;
        fprintf(f, "%-5s %10" PRIu64 " %8" PRIu64 " %10.0f %8.3f %8.3f %9.3f %8.3f\n",
                load_op_name((enum load_op)i), o->ok, o->errors, (double)o->ok / secs,
                ms(hist_percentile(&o->latency, 50)), ms(hist_percentile(&o->latency, 99)),
                ms(hist_percentile(&o->latency, 99.9)), ms(hist_max(&o->latency)));
    }
    fprintf(f, "%-5s %10" PRIu64 " %8" PRIu64 " %10.0f   over %.2f s\n", "total", tok, terr,
            (double)tok / secs, s->measured_s);
    if (s->op[LOAD_GET].ok)
        fprintf(f, "gets: %" PRIu64 " found, %" PRIu64 " not found\n", s->op[LOAD_GET].hits,
                s->op[LOAD_GET].misses);
    for (int i = 0; i < LOAD_NOPS; i++)
        for (size_t k = 0; k < s->op[i].nerr; k++)
            fprintf(f, "error %s %s: %" PRIu64 "\n", load_op_name((enum load_op)i),
                    s->op[i].err[k].type, s->op[i].err[k].n);
}

int load_stats_print_json(const struct load_stats *s, const struct load_opts *o, FILE *f)
{
    double secs = s->measured_s > 0 ? s->measured_s : 1;
    uint64_t tok = 0, terr = 0;
    json_t *root = json_object(), *ops = json_object();
    int rc = NERR_NOMEM;
    if (!root || !ops)
        goto fail;
    json_object_set_new(root, "measured_s", json_real(s->measured_s));
    json_object_set_new(root, "mode", json_string(o->rate > 0 ? "open" : "closed"));
    if (o->rate > 0)
        json_object_set_new(root, "rate", json_real(o->rate));
    json_object_set_new(root, "concurrency", json_integer(o->concurrency));
    json_object_set_new(root, "signed", json_boolean(o->akid[0] != 0));
    for (int i = 0; i < LOAD_NOPS; i++) {
        const struct load_op_stats *st = &s->op[i];
        if (!st->ok && !st->errors)
            continue;
        tok += st->ok;
        terr += st->errors;
        json_t *j = json_object(), *errs = json_object(), *lat = json_object();
        if (!j || !errs || !lat) {
            json_decref(j);
            json_decref(errs);
            json_decref(lat);
            goto fail;
        }
        json_object_set_new(j, "ok", json_integer((json_int_t)st->ok));
        json_object_set_new(j, "errors", json_integer((json_int_t)st->errors));
        json_object_set_new(j, "ops_per_s", json_real((double)st->ok / secs));
        if (i == LOAD_GET) {
            json_object_set_new(j, "found", json_integer((json_int_t)st->hits));
            json_object_set_new(j, "not_found", json_integer((json_int_t)st->misses));
        }
        for (size_t k = 0; k < st->nerr; k++)
            json_object_set_new(errs, st->err[k].type, json_integer((json_int_t)st->err[k].n));
        json_object_set_new(j, "errors_by_type", errs);
        json_object_set_new(lat, "p50", json_real(ms(hist_percentile(&st->latency, 50))));
        json_object_set_new(lat, "p99", json_real(ms(hist_percentile(&st->latency, 99))));
        json_object_set_new(lat, "p99_9", json_real(ms(hist_percentile(&st->latency, 99.9))));
        json_object_set_new(lat, "max", json_real(ms(hist_max(&st->latency))));
        json_object_set_new(lat, "mean", json_real(hist_mean(&st->latency) / 1e6));
        json_object_set_new(j, "latency_ms", lat);
        json_object_set_new(ops, load_op_name((enum load_op)i), j);
    }
    json_object_set_new(root, "ops", ops);
    ops = NULL;
    json_object_set_new(root, "ok", json_integer((json_int_t)tok));
    json_object_set_new(root, "errors", json_integer((json_int_t)terr));
    json_object_set_new(root, "ops_per_s", json_real((double)tok / secs));
    char *text = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(6));
    if (!text)
        goto fail;
    fprintf(f, "%s\n", text);
    free(text);
    rc = 0;
fail:
    json_decref(ops);
    json_decref(root);
    return rc;
}

/* ================= issuing ================= */

enum { H_CTYPE, H_TARGET, H_EXPECT, H_ACCEPT, H_HOST, H_DATE, H_AUTH, H_MAX };

struct conn {
    CURL *easy;
    struct runner *run;
    unsigned endpoint;
    int busy;
    struct load_req req;
    uint64_t intended_ns, sent_ns;
    int measured;
    char *body;
    size_t body_len;
    char resp[RESP_CAP + 1];
    size_t resp_len;
    struct curl_slist hdr[H_MAX];
    char target_hdr[64];
    char host_hdr[300];
    char date_hdr[32];
    char auth_hdr[512];
};

struct runner {
    const struct load_opts *o;
    struct load_stats *stats;
    const struct load_hooks *hooks;
    CURLM *multi;
    struct conn *conns;
    struct conn **idle; /* stack of free connections */
    size_t nidle;
    struct load_gen gen;
    size_t body_cap;
    struct sigv4_signer signer;
    int sign;
    char **hosts; /* "host:port" of each endpoint, for the signed Host header */
    int timerfd;  /* open loop: wakes the poll at the next due time */
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    struct conn *c = arg;
    size_t len = size * n;
    size_t room = RESP_CAP - c->resp_len;
    size_t take = len < room ? len : room;
    memcpy(c->resp + c->resp_len, p, take);
    c->resp_len += take;
    return len; /* the rest is dropped: only the error type and "Item" matter */
}

/* "host:port" of an http(s) URL. */
static char *url_host(const char *url)
{
    const char *s = strstr(url, "://");
    s = s ? s + 3 : url;
    size_t n = strcspn(s, "/?#");
    char *h = malloc(n + 1);
    if (h) {
        memcpy(h, s, n);
        h[n] = '\0';
    }
    return h;
}

/* Links the header nodes that are in use for this request. */
static void link_headers(struct conn *c, int signed_req)
{
    int order[H_MAX], n = 0;
    order[n++] = H_CTYPE;
    order[n++] = H_TARGET;
    order[n++] = H_EXPECT;
    order[n++] = H_ACCEPT;
    if (signed_req) {
        order[n++] = H_HOST;
        order[n++] = H_DATE;
        order[n++] = H_AUTH;
    }
    for (int i = 0; i < n; i++)
        c->hdr[order[i]].next = i + 1 < n ? &c->hdr[order[i + 1]] : NULL;
}

static int conn_setup(struct runner *r, struct conn *c, unsigned idx, struct nerr *e)
{
    const struct load_opts *o = r->o;
    c->run = r;
    c->endpoint = idx % (unsigned)o->nendpoints;
    c->body = malloc(r->body_cap);
    c->easy = curl_easy_init();
    if (!c->body || !c->easy)
        return nerr_set(e, NERR_NOMEM, "out of memory setting up connection %u", idx);
    c->hdr[H_CTYPE].data = (char *)"Content-Type: " CONTENT_TYPE;
    c->hdr[H_TARGET].data = c->target_hdr;
    /* Without these, curl would wait for "100 Continue" on large bodies and
     * send an Accept nobody reads. */
    c->hdr[H_EXPECT].data = (char *)"Expect:";
    c->hdr[H_ACCEPT].data = (char *)"Accept:";
    snprintf(c->host_hdr, sizeof c->host_hdr, "Host: %s", r->hosts[c->endpoint]);
    c->hdr[H_HOST].data = c->host_hdr;
    c->hdr[H_DATE].data = c->date_hdr;
    c->hdr[H_AUTH].data = c->auth_hdr;
    link_headers(c, r->sign);
    CURL *h = c->easy;
    int bad = 0;
    bad |= curl_easy_setopt(h, CURLOPT_URL, o->endpoints[c->endpoint]) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_POST, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, &c->hdr[H_CTYPE]) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_WRITEDATA, c) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_PRIVATE, c) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)o->timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)o->timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1) != CURLE_OK;
    if (bad)
        return nerr_set(e, NERR_IO, "curl_easy_setopt failed for %s", o->endpoints[c->endpoint]);
    return 0;
}

/* Prepares and starts one request on an idle connection. */
static int issue(struct runner *r, struct conn *c, uint64_t intended_ns, int measured)
{
    load_gen_next(&r->gen, &c->req);
    c->body_len = load_gen_body(&r->gen, &c->req, c->body, r->body_cap);
    snprintf(c->target_hdr, sizeof c->target_hdr, "X-Amz-Target: %s", load_op_target(c->req.op));
    if (r->sign) {
        struct sigv4_header hs[3] = {{"Host", c->host_hdr + 6},
                                     {"Content-Type", CONTENT_TYPE},
                                     {"X-Amz-Target", load_op_target(c->req.op)}};
        struct sigv4_request sr = {"POST", "/", "", hs, 3, c->body, c->body_len};
        char date[17];
        int rc = sigv4_signer_sign(&r->signer, &sr, time(NULL), date, c->auth_hdr + 15,
                                   sizeof c->auth_hdr - 15);
        if (rc)
            return rc;
        memcpy(c->auth_hdr, "Authorization: ", 15);
        snprintf(c->date_hdr, sizeof c->date_hdr, "X-Amz-Date: %s", date);
    }
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, c->body);
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE, (long)c->body_len);
    c->resp_len = 0;
    c->intended_ns = intended_ns;
    c->measured = measured;
    c->sent_ns = mono_ns();
    if (curl_multi_add_handle(r->multi, c->easy) != CURLM_OK)
        return NERR_IO;
    c->busy = 1;
    return 0;
}

/* The DynamoDB error name from a JSON error body: the text after '#' in
 * "__type" (or the whole value if it has no '#'). */
static void error_type(const char *body, size_t len, long http, char *out, size_t cap)
{
    const char *t = memmem(body, len, "\"__type\"", 8);
    if (t) {
        const char *end = body + len;
        const char *q = memchr(t + 8, '"', (size_t)(end - (t + 8)));
        if (q) {
            const char *v = q + 1;
            const char *ve = memchr(v, '"', (size_t)(end - v));
            if (ve && ve > v) {
                const char *hash = memchr(v, '#', (size_t)(ve - v));
                if (hash)
                    v = hash + 1;
                size_t n = (size_t)(ve - v);
                if (n && n < cap) {
                    memcpy(out, v, n);
                    out[n] = '\0';
                    return;
                }
            }
        }
    }
    snprintf(out, cap, "http-%ld", http);
}

static const char *curl_error_type(CURLcode cc, char *buf, size_t cap)
{
    switch (cc) {
    case CURLE_OPERATION_TIMEDOUT:
        return "timeout";
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
        return "connect";
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
        return "connection-lost";
    default:
        snprintf(buf, cap, "curl-%d", (int)cc);
        return buf;
    }
}

static void complete(struct runner *r, struct conn *c, CURLcode cc)
{
    uint64_t done = mono_ns();
    long http = 0;
    char buf[64];
    struct load_result res = {0};
    curl_multi_remove_handle(r->multi, c->easy);
    c->busy = 0;
    c->resp[c->resp_len] = '\0';
    res.req = &c->req;
    res.intended_ns = c->intended_ns;
    res.sent_ns = c->sent_ns;
    res.done_ns = done;
    res.measured = c->measured;
    res.response = c->resp;
    res.response_len = c->resp_len;
    if (cc != CURLE_OK) {
        res.error = curl_error_type(cc, buf, sizeof buf);
    } else {
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &http);
        if (http == 200) {
            res.ok = 1;
            res.hit = c->req.op == LOAD_GET && memmem(c->resp, c->resp_len, "\"Item\"", 6) != NULL;
        } else {
            error_type(c->resp, c->resp_len, http, buf, sizeof buf);
            res.error = buf;
        }
    }
    if (c->measured) {
        uint64_t from = r->o->rate > 0 ? c->intended_ns : c->sent_ns;
        if (res.ok)
            load_stats_ok(r->stats, c->req.op, done - from, res.hit);
        else
            load_stats_error(r->stats, c->req.op, res.error);
    }
    if (r->hooks && r->hooks->on_complete)
        r->hooks->on_complete(r->hooks->arg, &res);
    r->idle[r->nidle++] = c;
}

/* One blocking JSON 1.0 call for --create; the response body goes to out. */
static int call_once(struct runner *r, const char *target, const char *body, long *http, char *out,
                     size_t cap)
{
    struct conn *c = &r->conns[0];
    CURL *h = c->easy;
    snprintf(c->target_hdr, sizeof c->target_hdr, "X-Amz-Target: %s", target);
    size_t len = strlen(body);
    if (r->sign) {
        struct sigv4_header hs[3] = {
            {"Host", c->host_hdr + 6}, {"Content-Type", CONTENT_TYPE}, {"X-Amz-Target", target}};
        struct sigv4_request sr = {"POST", "/", "", hs, 3, body, len};
        char date[17];
        int rc = sigv4_signer_sign(&r->signer, &sr, time(NULL), date, c->auth_hdr + 15,
                                   sizeof c->auth_hdr - 15);
        if (rc)
            return rc;
        memcpy(c->auth_hdr, "Authorization: ", 15);
        snprintf(c->date_hdr, sizeof c->date_hdr, "X-Amz-Date: %s", date);
    }
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)len);
    c->resp_len = 0;
    CURLcode cc = curl_easy_perform(h);
    c->resp[c->resp_len] = '\0';
    snprintf(out, cap, "%s", c->resp);
    *http = 0;
    if (cc != CURLE_OK) {
        snprintf(out, cap, "%s", curl_easy_strerror(cc));
        return NERR_IO;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, http);
    return 0;
}

static int create_table(struct runner *r, struct nerr *e)
{
    const struct load_opts *o = r->o;
    char body[1024], resp[RESP_CAP + 1], type[64];
    long http;
    int n = snprintf(body, sizeof body,
                     "{\"TableName\":\"%s\",\"AttributeDefinitions\":[{\"AttributeName\":\"pk\","
                     "\"AttributeType\":\"S\"}],\"KeySchema\":[{\"AttributeName\":\"pk\","
                     "\"KeyType\":\"HASH\"}],\"BillingMode\":\"PAY_PER_REQUEST\"",
                     o->table);
    if (o->partitions)
        n += snprintf(body + n, sizeof body - (size_t)n,
                      ",\"Tags\":[{\"Key\":\"nines:partitions\",\"Value\":\"%u\"}]", o->partitions);
    snprintf(body + n, sizeof body - (size_t)n, "}");
    if (call_once(r, "DynamoDB_20120810.CreateTable", body, &http, resp, sizeof resp))
        return nerr_set(e, NERR_IO, "CreateTable on %s: %s", o->endpoints[0], resp);
    if (http != 200) {
        error_type(resp, strlen(resp), http, type, sizeof type);
        if (strcmp(type, "ResourceInUseException"))
            return nerr_set(e, NERR_IO, "CreateTable on %s: HTTP %ld %s: %.300s", o->endpoints[0],
                            http, type, resp);
    }
    /* Wait (bounded) until the table is ACTIVE. */
    snprintf(body, sizeof body, "{\"TableName\":\"%s\"}", o->table);
    for (int i = 0; i < 300; i++) {
        if (call_once(r, "DynamoDB_20120810.DescribeTable", body, &http, resp, sizeof resp))
            return nerr_set(e, NERR_IO, "DescribeTable on %s: %s", o->endpoints[0], resp);
        if (http == 200 && strstr(resp, "\"TableStatus\":\"ACTIVE\""))
            return 0;
        if (http != 200)
            return nerr_set(e, NERR_IO, "DescribeTable on %s: HTTP %ld: %.300s", o->endpoints[0],
                            http, resp);
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return nerr_set(e, NERR_TIMEOUT, "table %s not ACTIVE after 30 s", o->table);
}

static void runner_free(struct runner *r)
{
    if (r->conns) {
        for (unsigned i = 0; i < r->o->concurrency; i++) {
            struct conn *c = &r->conns[i];
            if (c->easy) {
                if (c->busy && r->multi)
                    curl_multi_remove_handle(r->multi, c->easy);
                curl_easy_cleanup(c->easy);
            }
            free(c->body);
        }
    }
    if (r->multi)
        curl_multi_cleanup(r->multi);
    if (r->timerfd >= 0)
        close(r->timerfd);
    if (r->hosts)
        for (size_t i = 0; i < r->o->nendpoints; i++)
            free(r->hosts[i]);
    free(r->hosts);
    free(r->conns);
    free(r->idle);
}

int load_run(const struct load_opts *o, struct load_stats *stats, const struct load_hooks *hooks,
             struct nerr *e)
{
    struct runner r = {0};
    int rc = 0;
    r.o = o;
    r.stats = stats;
    r.hooks = hooks;
    r.timerfd = -1;
    load_stats_init(stats);
    if (!o->nendpoints || !o->concurrency)
        return nerr_set(e, NERR_INVALID, "no endpoint or zero concurrency");
    load_gen_init(&r.gen, o);
    r.body_cap = load_gen_body_max(&r.gen);
    if (o->akid[0]) {
        if (sigv4_signer_init(&r.signer, o->akid, o->secret, o->region, "dynamodb"))
            return nerr_set(e, NERR_INVALID, "credentials cannot be used for signing");
        r.sign = 1;
    }
    r.hosts = calloc(o->nendpoints, sizeof *r.hosts);
    r.conns = calloc(o->concurrency, sizeof *r.conns);
    r.idle = calloc(o->concurrency, sizeof *r.idle);
    r.multi = curl_multi_init();
    if (o->rate > 0 &&
        (r.timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK)) < 0) {
        rc = nerr_sys(e, errno, "timerfd_create");
        goto fail;
    }
    if (!r.hosts || !r.conns || !r.idle || !r.multi) {
        rc = nerr_set(e, NERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < o->nendpoints; i++)
        if (!(r.hosts[i] = url_host(o->endpoints[i]))) {
            rc = nerr_set(e, NERR_NOMEM, "out of memory");
            goto fail;
        }
    /* Keep every connection in the pool between requests (keep-alive). */
    curl_multi_setopt(r.multi, CURLMOPT_MAXCONNECTS, (long)o->concurrency + 8);
    for (unsigned i = 0; i < o->concurrency; i++) {
        if ((rc = conn_setup(&r, &r.conns[i], i, e)))
            goto fail;
        r.idle[r.nidle++] = &r.conns[o->concurrency - 1 - i];
    }
    if (o->create && (rc = create_table(&r, e)))
        goto fail;

    uint64_t start = mono_ns();
    uint64_t warm_end = start + (uint64_t)(o->warmup_s * 1e9);
    uint64_t end = warm_end + (uint64_t)(o->duration_s * 1e9);
    uint64_t drain_deadline = end + (uint64_t)o->timeout_ms * 1000000u + 1000000000u;
    double interval = o->rate > 0 ? 1e9 / o->rate : 0;
    uint64_t scheduled = 0; /* open loop: requests whose due time has been handed out */
    uint64_t counted = 0;   /* measured requests issued */
    uint64_t last_done = warm_end;
    int stopped = 0, running = 0;

    for (;;) {
        uint64_t now = mono_ns();
        if (!stopped && (now >= end || (o->requests && counted >= o->requests)))
            stopped = 1;
        if (o->rate > 0) {
            /* Hand due requests to free connections; requests due but not
             * yet sent wait here, and their latency keeps growing. */
            for (;;) {
                uint64_t due = start + (uint64_t)((double)scheduled * interval);
                if (due > now || due >= end || (o->requests && counted >= o->requests))
                    break;
                if (!r.nidle)
                    break;
                int measured = due >= warm_end;
                if ((rc = issue(&r, r.idle[--r.nidle], due, measured))) {
                    nerr_set(e, rc, "could not start a request");
                    goto fail;
                }
                scheduled++;
                counted += (uint64_t)measured;
            }
        } else if (!stopped) {
            while (r.nidle && !(o->requests && counted >= o->requests)) {
                int measured = now >= warm_end;
                if ((rc = issue(&r, r.idle[--r.nidle], now, measured))) {
                    nerr_set(e, rc, "could not start a request");
                    goto fail;
                }
                counted += (uint64_t)measured;
            }
        }
        curl_multi_perform(r.multi, &running);
        CURLMsg *m;
        int left, completed = 0;
        while ((m = curl_multi_info_read(r.multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            struct conn *c = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            CURLcode cc = m->data.result;
            complete(&r, c, cc);
            completed++;
            if (c->measured)
                last_done = mono_ns();
        }
        now = mono_ns();
        int backlog = 0;
        if (o->rate > 0) {
            uint64_t due = start + (uint64_t)((double)scheduled * interval);
            backlog = due < end && !(o->requests && counted >= o->requests);
            if (backlog && now >= drain_deadline)
                break;
        }
        if (stopped && r.nidle == o->concurrency && !backlog)
            break;
        if (now >= drain_deadline + 1000000000u)
            break; /* belt and braces: never outlive the bound */
        int wait_ms = 100;
        struct curl_waitfd timer = {r.timerfd, CURL_WAIT_POLLIN, 0};
        int use_timer = 0;
        if (o->rate > 0 && backlog && r.nidle) {
            /* The next request is due within the poll: curl_multi_poll only
             * has millisecond timeouts, so an absolute timerfd wakes us at the
             * exact due time without spinning. */
            uint64_t due = start + (uint64_t)((double)scheduled * interval);
            if (due <= now)
                continue;
            struct itimerspec its = {{0, 0},
                                     {(time_t)(due / 1000000000u), (long)(due % 1000000000u)}};
            use_timer = timerfd_settime(r.timerfd, TFD_TIMER_ABSTIME, &its, NULL) == 0;
            if (!use_timer)
                wait_ms = 1;
        }
        if (!stopped && o->rate <= 0 && end > now) {
            int to_end = (int)((end - now) / 1000000u) + 1;
            if (to_end < wait_ms)
                wait_ms = to_end;
        }
        /* A completion freed a connection: reuse it at once rather than
         * sleeping in poll while it sits idle. */
        if (completed && (!stopped || (o->rate > 0 && backlog)))
            continue;
        curl_multi_poll(r.multi, use_timer ? &timer : NULL, use_timer ? 1 : 0, wait_ms, NULL);
        if (use_timer && timer.revents) {
            uint64_t expirations;
            ssize_t n = read(r.timerfd, &expirations, sizeof expirations);
            (void)n;
        }
    }
    /* Requests that were due but never sent: the server (or the generator)
     * could not keep up; count them rather than hide them. */
    if (o->rate > 0) {
        uint64_t limit_end = (uint64_t)ceil((double)(end - start) / interval);
        uint64_t due_total = limit_end;
        if (o->requests) {
            uint64_t warm_n = (uint64_t)ceil((double)(warm_end - start) / interval);
            if (warm_n + o->requests < due_total)
                due_total = warm_n + o->requests;
        }
        struct load_gen g = r.gen;
        for (uint64_t i = scheduled; i < due_total; i++) {
            struct load_req rq;
            load_gen_next(&g, &rq);
            if (start + (uint64_t)((double)i * interval) >= warm_end)
                load_stats_error(stats, rq.op, "unsent");
        }
    }
    stats->measured_s = (double)((last_done > end ? last_done : end) - warm_end) / 1e9;
    if (o->requests && last_done < end)
        stats->measured_s = (double)(last_done - warm_end) / 1e9;
    if (stats->measured_s <= 0)
        stats->measured_s = 1e-9;
fail:
    runner_free(&r);
    return rc;
}

/* ================= main ================= */

int load_main(int argc, char **argv)
{
    struct load_opts o;
    struct nerr e;
    nerr_clear(&e);
    if (load_opts_parse(argc, argv, &o, &e)) {
        fprintf(stderr, "nines load: %s\n(see nines load --help)\n", e.msg);
        return 2;
    }
    if (o.help) {
        load_usage(stdout);
        load_opts_free(&o);
        return 0;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "nines load: curl_global_init failed\n");
        load_opts_free(&o);
        return 1;
    }
    struct load_stats *st = malloc(sizeof *st);
    int rc = 1;
    if (!st) {
        fprintf(stderr, "nines load: out of memory\n");
        goto done;
    }
    if (!o.json)
        fprintf(stderr, "nines load: %s, %s loop, %u connections, %zu endpoint(s), table %s, %s\n",
                o.mix == LOAD_MIX_PUT   ? "put"
                : o.mix == LOAD_MIX_GET ? "get"
                                        : "mix",
                o.rate > 0 ? "open" : "closed", o.concurrency, o.nendpoints, o.table,
                o.akid[0] ? "SigV4-signed" : "unsigned");
    if (load_run(&o, st, NULL, &e)) {
        fprintf(stderr, "nines load: %s\n", e.msg);
        goto done;
    }
    if (o.json) {
        if (load_stats_print_json(st, &o, stdout)) {
            fprintf(stderr, "nines load: out of memory\n");
            goto done;
        }
    } else {
        load_stats_print(st, stdout);
    }
    rc = 0;
done:
    free(st);
    load_opts_free(&o);
    curl_global_cleanup();
    return rc;
}
