/*
 * opts.c — the options of `nines load`: defaults, parsing and the usage
 * text, all from one table (OPTS below: one row per option with its name,
 * argument, field, bounds and help line). Contract in load/load.h.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/fsutil.h"
#include "load/load.h"
#include "load/load_int.h"
#include "proto/sigv4.h"

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

/* "put=40,get=30,cget=10,cas=10,delete=10": weights, any positive scale. */
static int parse_mix(struct load_opts *o, const char *v, struct nerr *e)
{
    double w[LOAD_NOPS] = {0}, sum = 0;
    const char *s = v;
    for (;;) {
        size_t n = strcspn(s, ",");
        const char *eq = memchr(s, '=', n);
        int op = -1;
        for (int i = 0; eq && i < LOAD_NOPS; i++)
            if (strlen(load_op_name((enum load_op)i)) == (size_t)(eq - s) &&
                !strncmp(s, load_op_name((enum load_op)i), (size_t)(eq - s)))
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
                            load_op_name((enum load_op)op));
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

/* The value of environment variable name when it is set, not empty and fits
 * cap bytes with its NUL; NULL otherwise. */
static const char *env_fit(const char *name, size_t cap)
{
    const char *v = getenv(name);
    return v && *v && strlen(v) < cap ? v : NULL;
}

void load_opts_init(struct load_opts *o)
{
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
    const char *akid = env_fit("AWS_ACCESS_KEY_ID", sizeof o->akid);
    const char *secret = env_fit("AWS_SECRET_ACCESS_KEY", sizeof o->secret);
    if (akid && secret) {
        strcpy(o->akid, akid);
        strcpy(o->secret, secret);
    }
    const char *ca = env_fit("AWS_CA_BUNDLE", sizeof o->ca_bundle);
    if (ca)
        strcpy(o->ca_bundle, ca);
    const char *region = getenv("AWS_REGION");
    if (!region || !*region)
        region = getenv("AWS_DEFAULT_REGION");
    snprintf(o->region, sizeof o->region, "%s",
             region && *region && strlen(region) < sizeof o->region ? region : "us-east-1");
}

/* ---- options that need more than a bounded number or a string ---- */

static int opt_endpoint(struct load_opts *o, const char *v, struct nerr *e)
{
    for (const char *s = v;;) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        int rc = add_endpoint(o, s, n, e);
        if (rc)
            return rc;
        if (!comma)
            return 0;
        s = comma + 1;
    }
}

static int opt_table(struct load_opts *o, const char *v, struct nerr *e)
{
    if (!valid_table(v))
        return nerr_set(e, NERR_INVALID, "--table '%s': 3 to 255 characters of a-z A-Z 0-9 _ - .",
                        v);
    strcpy(o->table, v);
    return 0;
}

static int opt_op(struct load_opts *o, const char *v, struct nerr *e)
{
    if (!strcmp(v, "put"))
        o->mix = LOAD_MIX_PUT;
    else if (!strcmp(v, "get"))
        o->mix = LOAD_MIX_GET;
    else if (!strcmp(v, "mix"))
        o->mix = LOAD_MIX_BOTH;
    else
        return nerr_set(e, NERR_INVALID, "--op '%s': one of put, get, mix", v);
    return 0;
}

static int opt_dist(struct load_opts *o, const char *v, struct nerr *e)
{
    if (!strcmp(v, "uniform"))
        o->dist = LOAD_DIST_UNIFORM;
    else if (!strcmp(v, "zipf"))
        o->dist = LOAD_DIST_ZIPF;
    else if (!strncmp(v, "zipf:", 5) && !parse_double(v + 5, 0, 100, &o->zipf_s) && o->zipf_s > 0)
        o->dist = LOAD_DIST_ZIPF;
    else
        return nerr_set(e, NERR_INVALID, "--dist '%s': uniform, zipf or zipf:S with 0 < S <= 100",
                        v);
    return 0;
}

static int opt_history(struct load_opts *o, const char *v, struct nerr *e)
{
    if (!*v)
        return nerr_set(e, NERR_INVALID, "--history: empty file name");
    return copy_opt(o->history, sizeof o->history, v, "--history", e);
}

static int opt_target(struct load_opts *o, const char *v, struct nerr *e)
{
    if (!strcmp(v, "dynamodb"))
        o->target = LOAD_TARGET_DYNAMODB;
    else if (!strcmp(v, "etcd"))
        o->target = LOAD_TARGET_ETCD;
    else
        return nerr_set(e, NERR_INVALID, "--target '%s': dynamodb or etcd", v);
    return 0;
}

/* ---- the table ---- */

/* --secret-file: the secret's first line (the file may end with a newline),
 * so the secret never has to be on a command line, where ps and shell
 * history show it. */
static int secret_from_file(struct load_opts *o, const char *v, struct nerr *e)
{
    char *text = NULL;
    size_t len = 0;
    struct nerr ferr = {0};
    if (fs_read_file(v, 4096, &text, &len, &ferr))
        return nerr_set(e, NERR_INVALID, "--secret-file '%s': %s", v, ferr.msg);
    text[strcspn(text, "\r\n")] = 0;
    int rc = text[0] ? copy_opt(o->secret, sizeof o->secret, text, "--secret-file", e)
                     : nerr_set(e, NERR_INVALID, "--secret-file '%s': the file is empty", v);
    memset(text, 0, len);
    free(text);
    return rc;
}

enum opt_kind {
    K_FLAG,     /* int field set to 1 */
    K_HELP,     /* --help: usage wanted, nothing else is looked at */
    K_U64,      /* uint64_t field, integer in [ulo, uhi] */
    K_UNSIGNED, /* unsigned field, integer in [ulo, uhi] */
    K_SIZE,     /* size_t field, integer in [ulo, uhi] */
    K_DOUBLE,   /* double field in [dlo, dhi]; above dlo when above_lo */
    K_STR,      /* char[size] field, copied */
    K_FN,       /* fn does it */
};

struct opt {
    const char *name; /* without "--" */
    const char *arg;  /* the value's name in the usage; NULL: no value */
    enum opt_kind kind;
    size_t off, size; /* the field of struct load_opts */
    uint64_t ulo, uhi;
    double dlo, dhi;
    int above_lo;
    int (*fn)(struct load_opts *o, const char *v, struct nerr *e);
    /* Bounded kinds: what a bad value is told ("--NAME 'V': " + this, a
     * printf format given dhi). */
    const char *what;
    /* The usage text; "\n" starts a continuation line. NULL: an alias,
     * described by the row it aliases. */
    const char *help;
};

#define FIELD(x) .off = offsetof(struct load_opts, x), .size = sizeof(((struct load_opts *)0)->x)

/* In the order of the usage text. */
static const struct opt OPTS[] = {
    {.name = "endpoint",
     .arg = "URL",
     .kind = K_FN,
     .fn = opt_endpoint,
     .help = "endpoint, repeatable or comma-separated; connections are\n"
             "spread round-robin (default " LOAD_DEFAULT_ENDPOINT ");\n"
             "--endpoints is the same option"},
    {.name = "endpoints", .arg = "URL", .kind = K_FN, .fn = opt_endpoint},
    {.name = "target",
     .arg = "T",
     .kind = K_FN,
     .fn = opt_target,
     .help = "dynamodb (default) or etcd: etcd 3.4's v3 JSON gateway\n"
             "(put, get = serializable range, cget = linearizable range)"},
    {.name = "table",
     .arg = "NAME",
     .kind = K_FN,
     .fn = opt_table,
     .help = "table (default \"load\")"},
    {.name = "create",
     .kind = K_FLAG,
     FIELD(create),
     .help = "create the table (hash key \"pk\", type S) if it does not exist"},
    {.name = "partitions",
     .arg = "N",
     .kind = K_UNSIGNED,
     FIELD(partitions),
     .ulo = 1,
     .uhi = 4096,
     .what = "an integer 1..4096",
     .help = "with --create: partition count (tag nines:partitions)"},
    {.name = "op",
     .arg = "put|get|mix",
     .kind = K_FN,
     .fn = opt_op,
     .help = "operation (default put); mix uses --read-ratio"},
    {.name = "read-ratio",
     .arg = "F",
     .kind = K_DOUBLE,
     FIELD(read_ratio),
     .dhi = 1,
     .what = "a number 0..1",
     .help = "fraction of gets in a mix, 0..1 (default 0.5)"},
    {.name = "mix",
     .arg = "OP=W,...",
     .kind = K_FN,
     .fn = parse_mix,
     .help = "weighted mix of put, get (eventually consistent), cget\n"
             "(ConsistentRead), cas, delete; overrides --op"},
    {.name = "dist",
     .arg = "uniform|zipf[:S]",
     .kind = K_FN,
     .fn = opt_dist,
     .help = "key distribution (default uniform; zipf exponent 0.99)"},
    {.name = "history",
     .arg = "FILE",
     .kind = K_FN,
     .fn = opt_history,
     .help = "record every request in the checkers' JSONL history, then\n"
             "read every written key with ConsistentRead"},
    {.name = "final-timeout",
     .arg = "S",
     .kind = K_DOUBLE,
     FIELD(final_timeout_s),
     .dhi = LOAD_MAX_DURATION_S,
     .above_lo = 1,
     .what = "seconds, > 0 and <= %.0f",
     .help = "bound of that final read phase (default 60)"},
    {.name = "writer-id",
     .arg = "N",
     .kind = K_U64,
     FIELD(writer_id),
     .uhi = 18000000,
     .what = "an integer 0..18000000",
     .help = "written values are numbered N*10^12 + seq (default 0);\n"
             "give concurrent generators distinct ids"},
    {.name = "concurrency",
     .arg = "N",
     .kind = K_UNSIGNED,
     FIELD(concurrency),
     .ulo = 1,
     .uhi = 4096,
     .what = "an integer 1..4096",
     .help = "connections (default 64)"},
    {.name = "rate",
     .arg = "R",
     .kind = K_DOUBLE,
     FIELD(rate),
     .dhi = 10e6,
     .above_lo = 1,
     .what = "requests per second, > 0 and <= 1e7",
     .help = "open loop at R requests/s, latency measured from each\n"
             "request's intended start; without it, closed loop"},
    {.name = "duration",
     .arg = "S",
     .kind = K_DOUBLE,
     FIELD(duration_s),
     .dhi = LOAD_MAX_DURATION_S,
     .above_lo = 1,
     .what = "seconds, > 0 and <= %.0f",
     .help = "measured seconds (default 10, max 3600)"},
    {.name = "requests",
     .arg = "N",
     .kind = K_U64,
     FIELD(requests),
     .ulo = 1,
     .uhi = UINT64_C(1000000000000),
     .what = "an integer >= 1",
     .help = "stop after N measured requests (the duration still bounds)"},
    {.name = "warmup",
     .arg = "S",
     .kind = K_DOUBLE,
     FIELD(warmup_s),
     .dhi = LOAD_MAX_DURATION_S,
     .what = "seconds, 0..%.0f",
     .help = "seconds of traffic before measuring (default 0)"},
    {.name = "keys",
     .arg = "N",
     .kind = K_U64,
     FIELD(keys),
     .ulo = 1,
     .uhi = UINT64_C(1000000000000),
     .what = "an integer >= 1",
     .help = "key space k0..k<N-1> (default 100000)"},
    /* DynamoDB's item limit is 400 KB, key and names included. */
    {.name = "value-size",
     .arg = "B",
     .kind = K_SIZE,
     FIELD(value_size),
     .ulo = 1,
     .uhi = 399000,
     .what = "bytes, 1..399000",
     .help = "bytes in each put's value (default 100)"},
    {.name = "seed",
     .arg = "N",
     .kind = K_U64,
     FIELD(seed),
     .uhi = UINT64_MAX,
     .what = "an unsigned integer",
     .help = "seed for keys and operations (default 1)"},
    {.name = "timeout",
     .arg = "MS",
     .kind = K_UNSIGNED,
     FIELD(timeout_ms),
     .ulo = 1,
     .uhi = 600000,
     .what = "milliseconds, 1..600000",
     .help = "per-request timeout (default 5000)"},
    {.name = "access-key-id",
     .arg = "ID",
     .kind = K_STR,
     FIELD(akid),
     .help = "sign with SigV4 (default $AWS_ACCESS_KEY_ID; unsigned if none)"},
    {.name = "secret-access-key",
     .arg = "K",
     .kind = K_STR,
     FIELD(secret),
     .help = "(default $AWS_SECRET_ACCESS_KEY) discouraged: the secret shows in ps\n"
             "and shell history; use the variable or --secret-file"},
    {.name = "secret-file",
     .arg = "FILE",
     .kind = K_FN,
     .fn = secret_from_file,
     .help = "read the secret access key from FILE (its first line)"},
    {.name = "region",
     .arg = "R",
     .kind = K_STR,
     FIELD(region),
     .help = "(default $AWS_REGION, $AWS_DEFAULT_REGION, us-east-1)"},
    {.name = "ca-bundle",
     .arg = "FILE",
     .kind = K_STR,
     FIELD(ca_bundle),
     .help = "trust the CAs in FILE (PEM) for https:// endpoints, as the AWS CLI's\n"
             "--ca-bundle (default $AWS_CA_BUNDLE, else the system's CAs)"},
    {.name = "json", .kind = K_FLAG, FIELD(json), .help = "print the summary as one JSON object"},
    {.name = "help", .kind = K_HELP, .help = "this text"},
};

#undef FIELD

#define NOPTS (sizeof OPTS / sizeof OPTS[0])

static const struct opt *opt_named(const char *name)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (!strcmp(OPTS[i].name, name))
            return &OPTS[i];
    return NULL;
}

void load_usage(FILE *f)
{
    fputs("usage: nines load [OPTIONS]\n"
          "\n"
          "Drives PutItem/GetItem traffic against DynamoDB-compatible endpoints and reports\n"
          "throughput, errors by type and latency percentiles per operation.\n"
          "\n",
          f);
    for (size_t i = 0; i < NOPTS; i++) {
        const struct opt *p = &OPTS[i];
        if (!p->help)
            continue;
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", p->name, p->arg ? " " : "", p->arg ? p->arg : "");
        const char *line = p->help;
        for (int first = 1; *line; first = 0) {
            size_t n = strcspn(line, "\n");
            if (first)
                fprintf(f, "  %-22s %.*s\n", left, (int)n, line);
            else
                fprintf(f, "%25s%.*s\n", "", (int)n, line);
            line += n + (line[n] == '\n');
        }
    }
    fputs("\n"
          "Exit status: 0 when the run completed (request errors are reported, not fatal),\n"
          "1 when it could not run (curl, --create), 2 on bad options.\n",
          f);
}

/* Applies row p with value v (NULL for options without one) to o. */
static int opt_apply(const struct opt *p, const char *v, struct load_opts *o, struct nerr *e)
{
    char *field = (char *)o + p->off;
    uint64_t u;
    double d;
    char what[128];
    switch (p->kind) {
    case K_FLAG:
        *(int *)field = 1;
        return 0;
    case K_HELP:
        o->help = 1;
        return 0;
    case K_FN:
        return p->fn(o, v, e);
    case K_STR: {
        char name[64];
        snprintf(name, sizeof name, "--%s", p->name);
        return copy_opt(field, p->size, v, name, e);
    }
    case K_U64:
    case K_UNSIGNED:
    case K_SIZE:
        if (parse_u64(v, p->ulo, p->uhi, &u))
            break;
        if (p->kind == K_U64)
            *(uint64_t *)field = u;
        else if (p->kind == K_UNSIGNED)
            *(unsigned *)field = (unsigned)u;
        else
            *(size_t *)field = (size_t)u;
        return 0;
    case K_DOUBLE:
        if (parse_double(v, p->dlo, p->dhi, &d) || (p->above_lo && d <= p->dlo))
            break;
        *(double *)field = d;
        return 0;
    }
    snprintf(what, sizeof what, p->what, p->dhi);
    return nerr_set(e, NERR_INVALID, "--%s '%s': %s", p->name, v, what);
}

int load_opts_parse(int argc, char **argv, struct load_opts *o, struct nerr *e)
{
    struct option longopts[NOPTS + 1];
    int rc = 0;
    load_opts_init(o);
    for (size_t i = 0; i < NOPTS; i++)
        longopts[i] = (struct option){OPTS[i].name, OPTS[i].arg ? required_argument : no_argument,
                                      NULL, 256 + (int)i};
    longopts[NOPTS] = (struct option){NULL, 0, NULL, 0};
    int saw_akid = 0, saw_secret = 0, saw_region = 0;
    const struct opt *akid = opt_named("access-key-id"), *secret = opt_named("secret-access-key"),
                     *region = opt_named("region"), *secret_file = opt_named("secret-file");

    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c < 256 || c >= 256 + (int)NOPTS) {
            rc = nerr_set(e, NERR_INVALID, "unknown option or missing value: '%s'",
                          argv[optind - 1]);
            goto fail;
        }
        const struct opt *p = &OPTS[c - 256];
        if ((rc = opt_apply(p, optarg, o, e)))
            goto fail;
        if (p->kind == K_HELP)
            return 0;
        saw_akid |= p == akid;
        saw_secret |= p == secret || p == secret_file;
        if (p == secret)
            fprintf(stderr, "nines load: warning: --secret-access-key puts the secret on the "
                            "command line (ps, shell history); use AWS_SECRET_ACCESS_KEY or "
                            "--secret-file\n");
        saw_region |= p == region;
    }
    if (optind < argc) {
        rc = nerr_set(e, NERR_INVALID, "unexpected argument '%s'", argv[optind]);
        goto fail;
    }
    if (o->target == LOAD_TARGET_ETCD && (rc = load_etcd_opts_check(o, saw_akid || saw_secret, e)))
        goto fail;
    /* load_opts_init took the environment's credentials (when both fit);
     * they are resolved again here so that a half pair or a value too long
     * is refused by name rather than dropped. etcd takes no AWS credentials:
     * the environment's are for DynamoDB. */
    if (!saw_akid)
        o->akid[0] = '\0';
    if (!saw_secret)
        o->secret[0] = '\0';
    if (o->target != LOAD_TARGET_ETCD && !saw_akid && getenv("AWS_ACCESS_KEY_ID") &&
        (rc = copy_opt(o->akid, sizeof o->akid, getenv("AWS_ACCESS_KEY_ID"), "AWS_ACCESS_KEY_ID",
                       e)))
        goto fail;
    if (o->target != LOAD_TARGET_ETCD && !saw_secret && getenv("AWS_SECRET_ACCESS_KEY") &&
        (rc = copy_opt(o->secret, sizeof o->secret, getenv("AWS_SECRET_ACCESS_KEY"),
                       "AWS_SECRET_ACCESS_KEY", e)))
        goto fail;
    if (!saw_region || !o->region[0]) {
        const char *r = getenv("AWS_REGION");
        if (!r || !*r)
            r = getenv("AWS_DEFAULT_REGION");
        if ((rc =
                 copy_opt(o->region, sizeof o->region, r && *r ? r : "us-east-1", "AWS_REGION", e)))
            goto fail;
    }
    if (!o->ca_bundle[0] && getenv("AWS_CA_BUNDLE") && *getenv("AWS_CA_BUNDLE") &&
        (rc = copy_opt(o->ca_bundle, sizeof o->ca_bundle, getenv("AWS_CA_BUNDLE"),
                       "AWS_CA_BUNDLE", e)))
        goto fail;
    if (o->ca_bundle[0] && access(o->ca_bundle, R_OK)) {
        rc = nerr_set(e, NERR_INVALID, "--ca-bundle '%s': %s", o->ca_bundle, strerror(errno));
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
