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

#include "checkers/cval.h"
#include "lib/log.h"
#include "proto/sigv4.h"

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
        "                         spread round-robin (default http://127.0.0.1:8101);\n"
        "                         --endpoints is the same option\n"
        "  --target T             dynamodb (default) or etcd: etcd 3.4's v3 JSON gateway\n"
        "                         (put, get = serializable range, cget = linearizable range)\n"
        "  --table NAME           table (default \"load\")\n"
        "  --create               create the table (hash key \"pk\", type S) if it does not exist\n"
        "  --partitions N         with --create: partition count (tag nines:partitions)\n"
        "  --op put|get|mix       operation (default put); mix uses --read-ratio\n"
        "  --read-ratio F         fraction of gets in a mix, 0..1 (default 0.5)\n"
        "  --mix OP=W,...         weighted mix of put, get (eventually consistent), cget\n"
        "                         (ConsistentRead), cas, delete; overrides --op\n"
        "  --dist uniform|zipf[:S] key distribution (default uniform; zipf exponent 0.99)\n"
        "  --history FILE         record every request in the checkers' JSONL history, then\n"
        "                         read every written key with ConsistentRead\n"
        "  --final-timeout S      bound of that final read phase (default 60)\n"
        "  --writer-id N          written values are numbered N*10^12 + seq (default 0);\n"
        "                         give concurrent generators distinct ids\n"
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

static const char *const OP_NAMES[LOAD_NOPS] = {"put", "get", "cget", "cas", "delete"};

/* "put=40,get=30,cget=10,cas=10,delete=10": weights, any positive scale. */
static int parse_mix(const char *v, struct load_opts *o, struct nerr *e)
{
    double w[LOAD_NOPS] = {0}, sum = 0;
    const char *s = v;
    for (;;) {
        size_t n = strcspn(s, ",");
        const char *eq = memchr(s, '=', n);
        int op = -1;
        for (int i = 0; eq && i < LOAD_NOPS; i++)
            if (strlen(OP_NAMES[i]) == (size_t)(eq - s) &&
                !strncmp(s, OP_NAMES[i], (size_t)(eq - s)))
                op = i;
        char num[32];
        double x;
        if (op < 0 || n - (size_t)(eq - s) - 1 >= sizeof num)
            return nerr_set(e, NERR_INVALID,
                            "--mix '%s': OP=WEIGHT,... with OP one of put, get, cget, cas, delete",
                            v);
        memcpy(num, eq + 1, n - (size_t)(eq - s) - 1);
        num[n - (size_t)(eq - s) - 1] = '\0';
        if (parse_double(num, 0, 1e9, &x))
            return nerr_set(e, NERR_INVALID, "--mix '%s': weight of %s is not a number >= 0", v,
                            OP_NAMES[op]);
        w[op] = x;
        if (!s[n])
            break;
        s += n + 1;
    }
    for (int i = 0; i < LOAD_NOPS; i++)
        sum += w[i];
    if (sum <= 0)
        return nerr_set(e, NERR_INVALID, "--mix '%s': the weights add up to 0", v);
    for (int i = 0; i < LOAD_NOPS; i++)
        o->weight[i] = w[i] / sum;
    o->mix = LOAD_MIX_WEIGHTS;
    return 0;
}

/* What the etcd target cannot do, refused by name rather than ignored. */
static int etcd_opts_check(const struct load_opts *o, int signing, struct nerr *e)
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
        O_HELP,
        O_MIX,
        O_DIST,
        O_HISTORY,
        O_FINAL_TIMEOUT,
        O_WRITER_ID,
        O_TARGET
    };
    static const struct option longopts[] = {
        {"endpoint", required_argument, NULL, O_ENDPOINT},
        {"endpoints", required_argument, NULL, O_ENDPOINT},
        {"target", required_argument, NULL, O_TARGET},
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
        {"mix", required_argument, NULL, O_MIX},
        {"dist", required_argument, NULL, O_DIST},
        {"history", required_argument, NULL, O_HISTORY},
        {"final-timeout", required_argument, NULL, O_FINAL_TIMEOUT},
        {"writer-id", required_argument, NULL, O_WRITER_ID},
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
    o->zipf_s = 0.99;
    o->final_timeout_s = 60;

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
        case O_MIX:
            if ((rc = parse_mix(v, o, e)))
                goto fail;
            break;
        case O_DIST:
            if (!strcmp(v, "uniform")) {
                o->dist = LOAD_DIST_UNIFORM;
            } else if (!strcmp(v, "zipf")) {
                o->dist = LOAD_DIST_ZIPF;
            } else if (!strncmp(v, "zipf:", 5) && !parse_double(v + 5, 0, 100, &o->zipf_s) &&
                       o->zipf_s > 0) {
                o->dist = LOAD_DIST_ZIPF;
            } else {
                rc = nerr_set(e, NERR_INVALID,
                              "--dist '%s': uniform, zipf or zipf:S with 0 < S <= 100", v);
                goto fail;
            }
            break;
        case O_HISTORY:
            if (!*v) {
                rc = nerr_set(e, NERR_INVALID, "--history: empty file name");
                goto fail;
            }
            if ((rc = copy_opt(o->history, sizeof o->history, v, "--history", e)))
                goto fail;
            break;
        case O_FINAL_TIMEOUT:
            if (parse_double(v, 0, LOAD_MAX_DURATION_S, &o->final_timeout_s) ||
                o->final_timeout_s <= 0) {
                rc = nerr_set(e, NERR_INVALID, "--final-timeout '%s': seconds, > 0 and <= %.0f", v,
                              LOAD_MAX_DURATION_S);
                goto fail;
            }
            break;
        case O_WRITER_ID:
            if (parse_u64(v, 0, 18000000, &o->writer_id)) {
                rc = nerr_set(e, NERR_INVALID, "--writer-id '%s': an integer 0..18000000", v);
                goto fail;
            }
            break;
        case O_TARGET:
            if (!strcmp(v, "dynamodb")) {
                o->target = LOAD_TARGET_DYNAMODB;
            } else if (!strcmp(v, "etcd")) {
                o->target = LOAD_TARGET_ETCD;
            } else {
                rc = nerr_set(e, NERR_INVALID, "--target '%s': dynamodb or etcd", v);
                goto fail;
            }
            break;
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
    if (o->target == LOAD_TARGET_ETCD && (rc = etcd_opts_check(o, saw_akid || saw_secret, e)))
        goto fail;
    /* etcd takes no AWS credentials: the environment's are for DynamoDB. */
    if (o->target != LOAD_TARGET_ETCD && !saw_akid && getenv("AWS_ACCESS_KEY_ID") &&
        (rc = copy_opt(o->akid, sizeof o->akid, getenv("AWS_ACCESS_KEY_ID"), "AWS_ACCESS_KEY_ID",
                       e)))
        goto fail;
    if (o->target != LOAD_TARGET_ETCD && !saw_secret && getenv("AWS_SECRET_ACCESS_KEY") &&
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
    int tracked = o->history[0] || (o->mix == LOAD_MIX_WEIGHTS && o->weight[LOAD_CAS] > 0);
    if (tracked && o->keys > LOAD_MAX_TRACKED_KEYS) {
        rc = nerr_set(e, NERR_INVALID,
                      "--keys %" PRIu64 ": --history and cas keep per-key state, at most %u keys",
                      o->keys, LOAD_MAX_TRACKED_KEYS);
        goto fail;
    }
    if (o->history[0] && o->value_size > LOAD_MAX_HISTORY_VALUE) {
        rc = nerr_set(e, NERR_INVALID, "--value-size %zu: at most %u bytes with --history",
                      o->value_size, LOAD_MAX_HISTORY_VALUE);
        goto fail;
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

static double unit(uint64_t *rng)
{
    return (double)(gen_rand(rng) >> 11) / 9007199254740992.0;
}

/* Rank 1..keys, rank 1 the most frequent. */
static uint64_t zipf_next(struct load_gen *g)
{
    for (int tries = 0;; tries++) {
        double u = g->z_hn + unit(&g->rng) * (g->z_hx1 - g->z_hn);
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
    g->rng = o->seed;
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
    uint64_t r = gen_rand(&g->rng);
    switch (g->mix) {
    case LOAD_MIX_PUT:
        rq->op = LOAD_PUT;
        break;
    case LOAD_MIX_GET:
        rq->op = LOAD_GET;
        break;
    case LOAD_MIX_BOTH:
        rq->op = unit(&g->rng) < g->read_ratio ? LOAD_GET : LOAD_PUT;
        break;
    case LOAD_MIX_WEIGHTS: {
        double u = unit(&g->rng);
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

size_t load_gen_value(const struct load_gen *g, uint64_t key, uint64_t n, char *buf, size_t cap)
{
    char k[24];
    *put_u64(k + 1, key) = '\0';
    k[0] = 'k';
    size_t kl = strlen(k);
    size_t base = cval_format(NULL, 0, k, kl, n, 0);
    /* With padding the value is base + '.' + padding bytes. */
    size_t pad = g->value_size > base + 1 ? g->value_size - base - 1 : 0;
    return cval_format(buf, cap, k, kl, n, pad);
}

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
static size_t etcd_body(const struct load_gen *g, const struct load_req *rq, char *buf, size_t cap)
{
    char k[24], *p = buf;
    k[0] = 'k';
    size_t kl = (size_t)(put_u64(k + 1, rq->key) - k);
    p = put_str(p, "{\"key\":\"");
    p = put_b64(p, k, kl);
    if (rq->op == LOAD_PUT) {
        /* The value goes through the scratch end of buf: base64 output
         * (4/3 of it) is written before it, never over unread input. */
        size_t vmax = g->value_size + 48;
        char *v = buf + cap - vmax;
        size_t vl = load_gen_value(g, rq->key, rq->n, v, vmax);
        p = put_str(p, "\",\"value\":\"");
        memmove(buf + cap - vl, v, vl); /* flush against the end */
        p = put_b64(p, buf + cap - vl, vl);
        p = put_str(p, "\"}");
    } else {
        p = put_str(p, rq->op == LOAD_GET ? "\",\"serializable\":true}" : "\"}");
    }
    return (size_t)(p - buf);
}

size_t load_gen_body(const struct load_gen *g, const struct load_req *rq, char *buf, size_t cap)
{
    if (cap < load_gen_body_max(g))
        return 0;
    if (g->target == LOAD_TARGET_ETCD)
        return etcd_body(g, rq, buf, cap);
    char *p = buf;
    int write = rq->op == LOAD_PUT || rq->op == LOAD_CAS;
    p = put_str(p, "{\"TableName\":\"");
    p = put_str(p, g->table);
    p = put_str(p, write ? "\",\"Item\":{\"pk\":{\"S\":\"k" : "\",\"Key\":{\"pk\":{\"S\":\"k");
    p = put_u64(p, rq->key);
    if (!write) {
        p = put_str(p, rq->op == LOAD_CGET ? "\"}},\"ConsistentRead\":true}" : "\"}}}");
        return (size_t)(p - buf);
    }
    p = put_str(p, "\"},\"v\":{\"S\":\"");
    p += load_gen_value(g, rq->key, rq->n, p, cap - (size_t)(p - buf));
    p = put_str(p, "\"}}");
    if (rq->op == LOAD_CAS) {
        /* "#v": DynamoDB's reserved words are many; a name placeholder is
         * always safe. */
        if (rq->expect) {
            p = put_str(p, ",\"ConditionExpression\":\"#v = :e\",\"ExpressionAttributeNames\":"
                           "{\"#v\":\"v\"},\"ExpressionAttributeValues\":{\":e\":{\"S\":\"");
            p += load_gen_value(g, rq->key, rq->expect - 1, p, cap - (size_t)(p - buf));
            p = put_str(p, "\"}}");
        } else {
            p = put_str(p, ",\"ConditionExpression\":\"attribute_not_exists(pk)\"");
        }
    }
    p = put_str(p, "}");
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
    return op >= 0 && op < LOAD_NOPS ? OP_NAMES[op] : "?";
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
    if (op == LOAD_GET || op == LOAD_CGET) {
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
    if (s->op[LOAD_CGET].ok)
        fprintf(f, "cgets: %" PRIu64 " found, %" PRIu64 " not found\n", s->op[LOAD_CGET].hits,
                s->op[LOAD_CGET].misses);
    if (s->final_keys)
        fprintf(f, "final reads: %" PRIu64 " keys, %" PRIu64 " read, %" PRIu64 " unread\n",
                s->final_keys, s->final_ok, s->final_failed);
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
    if (o->target == LOAD_TARGET_ETCD)
        json_object_set_new(root, "target", json_string("etcd"));
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
        if (i == LOAD_GET || i == LOAD_CGET) {
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
    if (o->history[0]) {
        json_t *fin = json_object();
        if (!fin)
            goto fail;
        json_object_set_new(fin, "keys", json_integer((json_int_t)s->final_keys));
        json_object_set_new(fin, "ok", json_integer((json_int_t)s->final_ok));
        json_object_set_new(fin, "failed", json_integer((json_int_t)s->final_failed));
        json_object_set_new(root, "final_reads", fin);
    }
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
    unsigned idx;
    unsigned endpoint;
    int busy;
    struct load_req req;
    uint64_t intended_ns, sent_ns;
    int measured;
    int final;
    char *body;
    size_t body_len;
    char *url_put, *url_range; /* etcd target: the gateway's two paths */
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
    /* Per key, what the generator last saw: 0 = absent, else the value's
     * number + 1. Feeds cas' expected value. NULL unless tracked. */
    uint64_t *known;
    /* --history: keys any write, cas or delete was sent to; the final phase
     * clears a key's bit once its read succeeded. */
    uint8_t *written;
    FILE *hist;
    char *hist_buf;
    int hist_err; /* errno of the first failed history write */
    char *val;    /* scratch for one value, body_cap bytes */
    uint64_t final_inflight;
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
static void link_headers(struct conn *c, int signed_req, int etcd)
{
    int order[H_MAX], n = 0;
    order[n++] = H_CTYPE;
    if (!etcd)
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
    c->idx = idx;
    c->endpoint = idx % (unsigned)o->nendpoints;
    c->body = malloc(r->body_cap);
    c->easy = curl_easy_init();
    if (!c->body || !c->easy)
        return nerr_set(e, NERR_NOMEM, "out of memory setting up connection %u", idx);
    int etcd = o->target == LOAD_TARGET_ETCD;
    c->hdr[H_CTYPE].data =
        etcd ? (char *)"Content-Type: application/json" : (char *)"Content-Type: " CONTENT_TYPE;
    if (etcd) {
        size_t ul = strlen(o->endpoints[c->endpoint]) + 16;
        c->url_put = malloc(ul);
        c->url_range = malloc(ul);
        if (!c->url_put || !c->url_range)
            return nerr_set(e, NERR_NOMEM, "out of memory setting up connection %u", idx);
        snprintf(c->url_put, ul, "%s/v3/kv/put", o->endpoints[c->endpoint]);
        snprintf(c->url_range, ul, "%s/v3/kv/range", o->endpoints[c->endpoint]);
    }
    c->hdr[H_TARGET].data = c->target_hdr;
    /* Without these, curl would wait for "100 Continue" on large bodies and
     * send an Accept nobody reads. */
    c->hdr[H_EXPECT].data = (char *)"Expect:";
    c->hdr[H_ACCEPT].data = (char *)"Accept:";
    snprintf(c->host_hdr, sizeof c->host_hdr, "Host: %s", r->hosts[c->endpoint]);
    c->hdr[H_HOST].data = c->host_hdr;
    c->hdr[H_DATE].data = c->date_hdr;
    c->hdr[H_AUTH].data = c->auth_hdr;
    link_headers(c, r->sign, etcd);
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

/* ---- history (docs/history.md's JSONL) ---- */

static const char *hist_f(enum load_op op)
{
    switch (op) {
    case LOAD_PUT:
        return "write";
    case LOAD_CAS:
        return "cas";
    case LOAD_DELETE:
        return "delete";
    default:
        return "read";
    }
}

/* A JSON string; values read back may hold anything. */
static void hist_str(FILE *f, const char *s, size_t n)
{
    putc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            putc(ch, f);
    }
    putc('"', f);
}

/* Our own values are [a-z0-9.-] only: no escaping needed. */
static void hist_value(struct runner *r, uint64_t key, uint64_t n)
{
    size_t len = load_gen_value(&r->gen, key, n, r->val, r->body_cap);
    putc('"', r->hist);
    fwrite(r->val, 1, len, r->hist);
    putc('"', r->hist);
}

/* One event. read_value: the value read (reads' ok completion only), with
 * read_absent for "no item"; error: the error type of fail/info. */
static void hist_event(struct runner *r, const struct conn *c, const char *type, uint64_t t,
                       const char *read_value, size_t read_len, int read_absent, const char *error)
{
    const struct load_req *rq = &c->req;
    FILE *f = r->hist;
    fprintf(f, "{\"process\":%u,\"type\":\"%s\",\"f\":\"%s\",\"key\":\"k%" PRIu64 "\"", c->idx,
            type, hist_f(rq->op), rq->key);
    switch (rq->op) {
    case LOAD_PUT:
        fputs(",\"value\":", f);
        hist_value(r, rq->key, rq->n);
        break;
    case LOAD_CAS:
        fputs(",\"value\":[", f);
        if (rq->expect)
            hist_value(r, rq->key, rq->expect - 1);
        else
            fputs("null", f);
        putc(',', f);
        hist_value(r, rq->key, rq->n);
        putc(']', f);
        break;
    case LOAD_GET:
    case LOAD_CGET:
        if (read_absent)
            fputs(",\"value\":null", f);
        else if (read_value) {
            fputs(",\"value\":", f);
            hist_str(f, read_value, read_len);
        }
        fputs(rq->op == LOAD_CGET ? ",\"consistent\":true" : ",\"consistent\":false", f);
        break;
    default:
        break;
    }
    if (error) {
        fputs(",\"error\":", f);
        hist_str(f, error, strlen(error));
    }
    if (c->final)
        fputs(",\"final\":true", f);
    if (fprintf(f, ",\"time\":%" PRIu64 "}\n", t) < 0 && !r->hist_err)
        r->hist_err = errno ? errno : EIO;
}

/* Reads' outcome from a GetItem response: 1 and *absent when there is no
 * Item, 1 and the value (copied into r->val) when there is, 0 when the body
 * cannot be parsed (truncated or not JSON). */
static int read_result(struct runner *r, const struct conn *c, size_t *len, int *absent)
{
    json_error_t je;
    json_t *root = json_loadb(c->resp, c->resp_len, 0, &je);
    int ok = 0;
    *absent = 0;
    *len = 0;
    if (!json_is_object(root))
        goto done;
    json_t *item = json_object_get(root, "Item");
    if (!item) {
        *absent = 1;
        ok = 1;
        goto done;
    }
    json_t *v = json_object_get(json_object_get(item, "v"), "S");
    /* An item without a string "v" is not something this generator wrote;
     * record a marker the checkers will flag as a value out of nowhere. */
    const char *txt = json_is_string(v) ? json_string_value(v) : "(item without a string v)";
    size_t n = json_is_string(v) ? json_string_length(v) : strlen(txt);
    if (n >= r->body_cap)
        goto done;
    memcpy(r->val, txt, n);
    r->val[n] = '\0';
    *len = n;
    ok = 1;
done:
    json_decref(root);
    return ok;
}

/* The number n of a value this generator's settings would write for key, or
 * 0 when the value is not one (then nothing is learnt from it). */
static int value_number(struct runner *r, uint64_t key, const char *v, size_t len, uint64_t *n)
{
    if (len < 2 || v[0] != 'v')
        return 0;
    uint64_t x = 0;
    size_t i = 1;
    for (; i < len && i < 21 && v[i] >= '0' && v[i] <= '9'; i++)
        x = x * 10 + (uint64_t)(v[i] - '0');
    char want[4096];
    size_t wl = load_gen_value(&r->gen, key, x, want, sizeof want);
    if (wl != len || wl >= sizeof want || memcmp(want, v, len))
        return 0;
    *n = x;
    return 1;
}

/* Prepares and starts one request on an idle connection: the generator's
 * next one, or *forced (the final phase's reads). */
static int issue(struct runner *r, struct conn *c, uint64_t intended_ns, int measured,
                 const struct load_req *forced)
{
    if (forced)
        c->req = *forced;
    else
        load_gen_next(&r->gen, &c->req);
    c->final = forced != NULL;
    if (c->req.op == LOAD_CAS && r->known)
        c->req.expect = r->known[c->req.key];
    c->body_len = load_gen_body(&r->gen, &c->req, c->body, r->body_cap);
    if (r->o->target == LOAD_TARGET_ETCD)
        /* Same host and port for both paths: curl keeps the connection. */
        curl_easy_setopt(c->easy, CURLOPT_URL, c->req.op == LOAD_PUT ? c->url_put : c->url_range);
    else
        snprintf(c->target_hdr, sizeof c->target_hdr, "X-Amz-Target: %s",
                 load_op_target(c->req.op));
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
    if (c->final)
        r->final_inflight++;
    if (r->hist) {
        if (c->req.op == LOAD_PUT || c->req.op == LOAD_CAS || c->req.op == LOAD_DELETE)
            r->written[c->req.key >> 3] |= (uint8_t)(1u << (c->req.key & 7));
        hist_event(r, c, "invoke", c->sent_ns, NULL, 0, 0, NULL);
    }
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

/* etcd's gateway answers errors as {"error":..., "code":N, "message":...}
 * with N a gRPC status code: "grpc-14" (Unavailable) and so on. */
static void etcd_error_type(const char *body, size_t len, long http, char *out, size_t cap)
{
    const char *t = memmem(body, len, "\"code\":", 7);
    if (t && t + 7 < body + len && isdigit((unsigned char)t[7])) {
        snprintf(out, cap, "grpc-%d", atoi(t + 7));
        return;
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

/* What a completion teaches: the history event, cas' expectations, and
 * which final reads are done. */
static void record(struct runner *r, struct conn *c, const struct load_result *res, CURLcode cc,
                   long http, uint64_t done)
{
    const struct load_req *rq = &c->req;
    int is_read = rq->op == LOAD_GET || rq->op == LOAD_CGET;
    size_t vlen = 0;
    int absent = 0, parsed = 0;
    if (!r->hist && !r->known)
        return;
    if (res->ok && is_read && (r->hist || rq->op == LOAD_CGET))
        parsed = read_result(r, c, &vlen, &absent);
    if (res->ok && r->known) {
        uint64_t n;
        if (rq->op == LOAD_PUT || rq->op == LOAD_CAS)
            r->known[rq->key] = rq->n + 1;
        else if (rq->op == LOAD_DELETE)
            r->known[rq->key] = 0;
        /* Only strongly consistent reads: a stale value would make the next
         * cas fail for nothing. */
        else if (rq->op == LOAD_CGET && parsed && absent)
            r->known[rq->key] = 0;
        else if (rq->op == LOAD_CGET && parsed && value_number(r, rq->key, r->val, vlen, &n))
            r->known[rq->key] = n + 1;
    }
    if (!r->hist)
        return;
    if (res->ok && is_read && !parsed) {
        hist_event(r, c, "info", done, NULL, 0, 0, "unparsed-response");
    } else if (res->ok) {
        hist_event(r, c, "ok", done, is_read ? r->val : NULL, vlen, absent, NULL);
        if (c->final)
            r->written[rq->key >> 3] &= (uint8_t) ~(1u << (rq->key & 7));
    } else {
        /* A 4xx is DynamoDB saying the request was refused (condition,
         * validation, throttling): it certainly did not take effect. Anything
         * else — timeout, lost connection, 5xx — may have. */
        int definite = cc == CURLE_OK && http >= 400 && http < 500;
        hist_event(r, c, definite ? "fail" : "info", done, NULL, 0, 0, res->error);
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
    res.conn = c->idx;
    res.final = c->final;
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
        int etcd = r->o->target == LOAD_TARGET_ETCD;
        if (http == 200) {
            res.ok = 1;
            /* etcd leaves "kvs" out of a range that found nothing. */
            res.hit = (c->req.op == LOAD_GET || c->req.op == LOAD_CGET) &&
                      (etcd ? memmem(c->resp, c->resp_len, "\"kvs\"", 5)
                            : memmem(c->resp, c->resp_len, "\"Item\"", 6)) != NULL;
        } else {
            if (etcd)
                etcd_error_type(c->resp, c->resp_len, http, buf, sizeof buf);
            else
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
    record(r, c, &res, cc, http, done);
    if (c->final)
        r->final_inflight--;
    if (r->hooks && r->hooks->on_complete)
        r->hooks->on_complete(r->hooks->arg, &res);
    r->idle[r->nidle++] = c;
}

/* One blocking JSON 1.0 call for --create on connection ci; the response
 * body goes to out. */
static int call_once(struct runner *r, size_t ci, const char *target, const char *body, long *http,
                     char *out, size_t cap)
{
    struct conn *c = &r->conns[ci];
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
    /* A transport error or a 5xx is retried (bounded: 10 tries, 200 ms
     * apart), as an AWS SDK does: a node that just started may drop a
     * connection, and a second CreateTable gets ResourceInUseException. */
    for (int t = 1;; t++) {
        int crc = call_once(r, 0, "DynamoDB_20120810.CreateTable", body, &http, resp, sizeof resp);
        if (!crc && http < 500)
            break;
        if (t == 10) {
            if (crc)
                return nerr_set(e, NERR_IO, "CreateTable on %s: %s", o->endpoints[0], resp);
            break;
        }
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (http != 200) {
        error_type(resp, strlen(resp), http, type, sizeof type);
        if (strcmp(type, "ResourceInUseException"))
            return nerr_set(e, NERR_IO, "CreateTable on %s: HTTP %ld %s: %.300s", o->endpoints[0],
                            http, type, resp);
    }
    /* Wait (bounded: 30 s in all) until every endpoint says the table is
     * ACTIVE: the nodes of a cluster learn of a new table at their next
     * catalog sync, and until then they do not know it (not found). */
    snprintf(body, sizeof body, "{\"TableName\":\"%s\"}", o->table);
    int waits = 0;
    for (size_t ep = 0; ep < o->nendpoints && ep < o->concurrency; ep++) {
        size_t ci = ep; /* connection ci talks to endpoint ci % nendpoints */
        for (;;) {
            if (call_once(r, ci, "DynamoDB_20120810.DescribeTable", body, &http, resp,
                          sizeof resp))
                return nerr_set(e, NERR_IO, "DescribeTable on %s: %s", o->endpoints[ep], resp);
            if (http == 200 && strstr(resp, "\"TableStatus\":\"ACTIVE\""))
                break;
            error_type(resp, strlen(resp), http, type, sizeof type);
            if (http != 200 && strcmp(type, "ResourceNotFoundException"))
                return nerr_set(e, NERR_IO, "DescribeTable on %s: HTTP %ld: %.300s",
                                o->endpoints[ep], http, resp);
            if (++waits > 300)
                return nerr_set(e, NERR_TIMEOUT, "table %s not ACTIVE on %s after 30 s",
                                o->table, o->endpoints[ep]);
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return 0;
}

/* Reads every key in r->written with ConsistentRead, on the idle
 * connections, in up to three passes (a key whose read failed is read
 * again), within o->final_timeout_s plus one request timeout for draining.
 * Runs after the timed phase has drained, so each read is invoked after
 * every acknowledged write of its key completed (what the lost-write check
 * needs). */
static int final_phase(struct runner *r, struct nerr *e)
{
    const struct load_opts *o = r->o;
    uint64_t keys = o->keys, total = 0;
    for (uint64_t k = 0; k < keys; k++)
        total += (r->written[k >> 3] >> (k & 7)) & 1;
    r->stats->final_keys = total;
    uint64_t stop_issuing = mono_ns() + (uint64_t)(o->final_timeout_s * 1e9);
    uint64_t hard_end = stop_issuing + (uint64_t)o->timeout_ms * 1000000u + 1000000000u;
    for (int pass = 0; pass < 3; pass++) {
        uint64_t cursor = 0;
        for (;;) {
            uint64_t now = mono_ns();
            if (now >= stop_issuing)
                cursor = keys;
            while (r->nidle && cursor < keys) {
                if (!r->written[cursor >> 3]) {
                    cursor = (cursor | 7) + 1;
                    continue;
                }
                if ((r->written[cursor >> 3] >> (cursor & 7)) & 1) {
                    struct load_req rq = {.op = LOAD_CGET, .key = cursor};
                    int rc = issue(r, r->idle[--r->nidle], now, 0, &rq);
                    if (rc)
                        return nerr_set(e, rc, "could not start a final read");
                }
                cursor++;
            }
            if (cursor >= keys && !r->final_inflight)
                break;
            if (now >= hard_end)
                break; /* never outlive the bound; the rest stay unverified */
            int running;
            curl_multi_perform(r->multi, &running);
            CURLMsg *m;
            int left, completed = 0;
            while ((m = curl_multi_info_read(r->multi, &left))) {
                if (m->msg != CURLMSG_DONE)
                    continue;
                struct conn *c = NULL;
                curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
                complete(r, c, m->data.result);
                completed++;
            }
            if (!completed)
                curl_multi_poll(r->multi, NULL, 0, 50, NULL);
        }
        if (mono_ns() >= stop_issuing)
            break;
    }
    uint64_t left = 0;
    for (uint64_t k = 0; k < keys; k++)
        left += (r->written[k >> 3] >> (k & 7)) & 1;
    r->stats->final_ok = total - left;
    r->stats->final_failed = left;
    return 0;
}

static int hist_open(struct runner *r, struct nerr *e)
{
    const struct load_opts *o = r->o;
    r->written = calloc((size_t)(o->keys + 7) / 8, 1);
    r->hist_buf = malloc(1 << 20);
    if (!r->written || !r->hist_buf)
        return nerr_set(e, NERR_NOMEM, "out of memory");
    if (!(r->hist = fopen(o->history, "w")))
        return nerr_sys(e, errno, "--history %s", o->history);
    /* One large buffer: an event costs a memcpy, and the file sees 1 MiB
     * writes. */
    setvbuf(r->hist, r->hist_buf, _IOFBF, 1 << 20);
    return 0;
}

static int hist_close(struct runner *r, struct nerr *e)
{
    int rc = 0;
    if (!r->hist)
        return 0;
    if (fflush(r->hist) && !r->hist_err)
        r->hist_err = errno ? errno : EIO;
    if (fclose(r->hist) && !r->hist_err)
        r->hist_err = errno ? errno : EIO;
    r->hist = NULL;
    if (r->hist_err)
        rc = nerr_sys(e, r->hist_err, "writing --history %s", r->o->history);
    return rc;
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
            free(c->url_put);
            free(c->url_range);
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
    if (r->hist)
        fclose(r->hist); /* an error path: its own error is already set */
    free(r->hist_buf);
    free(r->written);
    free(r->known);
    free(r->val);
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
    r.val = malloc(r.body_cap);
    if (!r.val) {
        rc = nerr_set(e, NERR_NOMEM, "out of memory");
        goto fail;
    }
    if (o->history[0] || (o->mix == LOAD_MIX_WEIGHTS && o->weight[LOAD_CAS] > 0)) {
        if (o->keys > LOAD_MAX_TRACKED_KEYS) {
            rc = nerr_set(e, NERR_INVALID, "too many keys to track (at most %u)",
                          LOAD_MAX_TRACKED_KEYS);
            goto fail;
        }
        if (!(r.known = calloc((size_t)o->keys, sizeof *r.known))) {
            rc = nerr_set(e, NERR_NOMEM, "out of memory");
            goto fail;
        }
    }
    if (o->history[0] && (rc = hist_open(&r, e)))
        goto fail;
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
                if ((rc = issue(&r, r.idle[--r.nidle], due, measured, NULL))) {
                    nerr_set(e, rc, "could not start a request");
                    goto fail;
                }
                scheduled++;
                counted += (uint64_t)measured;
            }
        } else if (!stopped) {
            while (r.nidle && !(o->requests && counted >= o->requests)) {
                int measured = now >= warm_end;
                if ((rc = issue(&r, r.idle[--r.nidle], now, measured, NULL))) {
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
    if (r.hist && (rc = final_phase(&r, e)))
        goto fail;
    rc = hist_close(&r, e);
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
        fprintf(stderr,
                "nines load: %s%s, %s loop, %u connections, %zu endpoint(s), table %s, %s\n",
                o.target == LOAD_TARGET_ETCD ? "etcd " : "",
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
