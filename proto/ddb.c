/*
 * ddb.c — the DynamoDB client; the contract is in ddb.h.
 */
#include "proto/ddb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/clock.h"
#include "lib/rng.h"
#include "net/http.h"
#include "net/retry.h"
#include "proto/sigv4.h"

struct ddb_client {
    struct http_client *http;
    struct http_response rs;
    char *endpoint, *host, *ca_file;
    int signing;
    struct sigv4_signer signer;
    long timeout_ms;
    char etype[DDB_ERROR_TYPE_MAX]; /* the last call's error name, "" after a success */
};

int ddb_client_new(const struct ddb_client_options *opt, struct ddb_client **out, struct nerr *err)
{
    struct ddb_client *c = calloc(1, sizeof *c);
    if (!c)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    c->endpoint = strdup(opt->endpoint);
    const char *h = strstr(opt->endpoint, "://");
    h = h ? h + 3 : opt->endpoint;
    c->host = strndup(h, strcspn(h, "/"));
    c->timeout_ms = opt->timeout_ms > 0 ? opt->timeout_ms : 10000;
    c->ca_file = opt->ca_file ? strdup(opt->ca_file) : NULL;
    if (http_client_new(&c->http, NULL) || !c->endpoint || !c->host ||
        (opt->ca_file && !c->ca_file)) {
        ddb_client_free(c);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    if (opt->access_key_id) {
        if (sigv4_signer_init(&c->signer, opt->access_key_id, opt->secret_access_key,
                              opt->region ? opt->region : "local", "dynamodb")) {
            ddb_client_free(c);
            return nerr_set(err, NERR_INVALID, "credentials too long");
        }
        c->signing = 1;
    }
    *out = c;
    return 0;
}

void ddb_client_free(struct ddb_client *c)
{
    if (!c)
        return;
    http_client_free(c->http);
    http_response_free(&c->rs);
    free(c->endpoint);
    free(c->host);
    free(c->ca_file);
    free(c);
}

const char *ddb_client_endpoint(const struct ddb_client *c)
{
    return c->endpoint;
}

const char *ddb_client_error_type(const struct ddb_client *c)
{
    return c->etype[0] ? c->etype : NULL;
}

/* Finds the string value of "__type" in a JSON object's bytes. Error
 * answers are small flat objects, so a scan for the key is exact enough
 * and needs no parse (the load generator types every failed answer). */
static int find_type(const char *body, size_t len, const char **v, size_t *vlen)
{
    const char *end = body + len;
    const char *t = body ? memmem(body, len, "\"__type\"", 8) : NULL;
    if (!t)
        return 0;
    const char *q = memchr(t + 8, '"', (size_t)(end - (t + 8)));
    if (!q)
        return 0;
    const char *s = q + 1;
    const char *e = memchr(s, '"', (size_t)(end - s));
    if (!e || e == s)
        return 0;
    const char *hash = memchr(s, '#', (size_t)(e - s));
    if (hash)
        s = hash + 1;
    *v = s;
    *vlen = (size_t)(e - s);
    return *vlen > 0;
}

const char *ddb_error_type(long status, const char *body, size_t len, char *out, size_t cap)
{
    const char *v;
    size_t n;
    if (status >= 200 && status < 300)
        return NULL;
    if (find_type(body, len, &v, &n) && n < cap)
        snprintf(out, cap, "%.*s", (int)n, v);
    else
        snprintf(out, cap, "http-%ld", status);
    return out;
}

int ddb_call(struct ddb_client *c, const char *op, json_t *req, int *status, json_t **resp,
             struct nerr *err)
{
    char target[128], hdr_target[160], hdr_date[64], hdr_auth[1024];
    const char *headers[5];
    size_t nh = 0;
    char *body = json_dumps(req, JSON_COMPACT);
    int rc = 0;
    snprintf(c->etype, sizeof c->etype, "transport");
    if (!body)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    snprintf(target, sizeof target, strchr(op, '.') ? "%s" : "DynamoDB_20120810.%s", op);
    snprintf(hdr_target, sizeof hdr_target, "X-Amz-Target: %s", target);
    headers[nh++] = "Content-Type: application/x-amz-json-1.0";
    headers[nh++] = hdr_target;
    if (c->signing) {
        struct sigv4_header hs[3] = {{"host", c->host},
                                     {"content-type", "application/x-amz-json-1.0"},
                                     {"x-amz-target", target}};
        struct sigv4_request r = {.method = "POST",
                                  .path = "/",
                                  .query = "",
                                  .headers = hs,
                                  .nheaders = 3,
                                  .body = body,
                                  .body_len = strlen(body)};
        char amz_date[17], auth[900];
        if (sigv4_signer_sign(&c->signer, &r, time(NULL), amz_date, auth, sizeof auth)) {
            rc = nerr_set(err, NERR_INTERNAL, "cannot sign the request");
            goto out;
        }
        snprintf(hdr_date, sizeof hdr_date, "X-Amz-Date: %s", amz_date);
        snprintf(hdr_auth, sizeof hdr_auth, "Authorization: %s", auth);
        headers[nh++] = hdr_date;
        headers[nh++] = hdr_auth;
    }
    headers[nh] = NULL;
    struct http_request rq = {.method = "POST",
                              .url = c->endpoint,
                              .headers = headers,
                              .body = body,
                              .body_len = strlen(body),
                              .timeout_ms = c->timeout_ms,
                              .ca_file = c->ca_file};
    int hrc = http_call(c->http, &rq, &c->rs, NULL);
    if (hrc) {
        snprintf(c->etype, sizeof c->etype, "%s", http_fail_name(c->rs.fail));
        rc = nerr_set(err, hrc == NERR_TIMEOUT || hrc == NERR_NOMEM ? hrc : NERR_IO, "%s: %s",
                      c->endpoint, c->rs.error);
        goto out;
    }
    long code = c->rs.status;
    *status = (int)code;
    json_error_t je;
    *resp = c->rs.len ? json_loadb(c->rs.body, c->rs.len, 0, &je) : json_object();
    if (!*resp) {
        snprintf(c->etype, sizeof c->etype, "bad-response");
        rc = nerr_set(err, NERR_CORRUPT, "%s: HTTP %ld with a body that is not JSON: %.80s",
                      c->endpoint, code, c->rs.body);
        goto out;
    }
    if (!ddb_error_type(code, c->rs.body, c->rs.len, c->etype, sizeof c->etype))
        c->etype[0] = '\0';
out:
    free(body);
    return rc;
}

/* ---- CreateTable if missing ------------------------------------------------ */

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
                          .tv_nsec = (long)(ns % 1000000000u)};
    nanosleep(&ts, NULL);
}

/* CreateTable with the SDK's standard retries; 0 when created or it exists. */
static int create(struct ddb_client *c, json_t *req, const char *table, int tries, struct nerr *err)
{
    struct retry_quota q;
    struct rng rng;
    struct nerr e = {0};
    retry_quota_init(&q, 0);
    rng_seed(&rng, clock_mono_ns());
    for (int attempt = 1;; attempt++) {
        int status = 0;
        json_t *resp = NULL;
        int rc = ddb_call(c, "CreateTable", req, &status, &resp, &e);
        json_decref(resp);
        const char *type = ddb_client_error_type(c);
        if (!rc && !type)
            return 0;
        if (!rc && !strcmp(type, "ResourceInUseException"))
            return 0; /* it exists (or another client is creating it) */
        enum retry_class cls = retry_classify(rc, status, rc ? NULL : type);
        if (cls == RETRY_NO || attempt >= tries || !retry_quota_acquire(&q, cls)) {
            if (rc)
                return nerr_set(err, NERR_IO, "CreateTable %s on %s: %s (%s)", table, c->endpoint,
                                type, e.msg);
            return nerr_set(err, NERR_IO, "CreateTable %s on %s: HTTP %d %s: %.300s", table,
                            c->endpoint, status, type, c->rs.body);
        }
        sleep_ns(retry_backoff_ns(attempt, 100000000u, 2000000000u, rng_unit(&rng)));
    }
}

int ddb_ensure_table(struct ddb_client *const *clients, size_t n, json_t *create_req,
                     const struct ddb_ensure_opts *o, struct nerr *err)
{
    const char *table = json_string_value(json_object_get(create_req, "TableName"));
    int tries = o && o->create_tries > 0 ? o->create_tries : 10;
    long wait_ms = o ? o->active_wait_ms : -1;
    if (wait_ms < 0)
        wait_ms = 30000;
    if (!table || !n)
        return nerr_set(err, NERR_INVALID, "ddb_ensure_table: %s",
                        table ? "no endpoint" : "the request has no TableName");
    int rc = create(clients[0], create_req, table, tries, err);
    if (rc || !wait_ms)
        return rc;
    json_t *desc = json_pack("{s:s}", "TableName", table);
    if (!desc)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    int64_t deadline = clock_mono_ms() + wait_ms;
    for (size_t i = 0; i < n && !rc; i++) {
        struct ddb_client *c = clients[i];
        for (;;) {
            int status = 0;
            json_t *resp = NULL;
            struct nerr e;
            int crc = ddb_call(c, "DescribeTable", desc, &status, &resp, &e);
            const char *type = ddb_client_error_type(c);
            const char *ts =
                json_string_value(json_object_get(json_object_get(resp, "Table"), "TableStatus"));
            int active = !crc && !type && ts && !strcmp(ts, "ACTIVE");
            json_decref(resp);
            if (active)
                break;
            if (crc) {
                rc =
                    nerr_set(err, NERR_IO, "DescribeTable %s on %s: %s", table, c->endpoint, e.msg);
                break;
            }
            if (type && strcmp(type, "ResourceNotFoundException")) {
                rc = nerr_set(err, NERR_IO, "DescribeTable %s on %s: HTTP %d %s: %.300s", table,
                              c->endpoint, status, type, c->rs.body);
                break;
            }
            if (clock_mono_ms() >= deadline) {
                rc = nerr_set(err, NERR_TIMEOUT, "table %s not ACTIVE on %s after %ld ms", table,
                              c->endpoint, wait_ms);
                break;
            }
            sleep_ns(100000000u);
        }
    }
    json_decref(desc);
    return rc;
}
