#include "proto/ddb.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/sigv4.h"

struct ddb_client {
    CURL *curl;
    char *endpoint, *host;
    int signing;
    struct sigv4_signer signer;
    long timeout_ms;
    char *buf;
    size_t len, cap;
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    struct ddb_client *c = arg;
    size_t add = size * n;
    if (c->len + add + 1 > c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 8192;
        while (nc < c->len + add + 1)
            nc *= 2;
        char *nb = realloc(c->buf, nc);
        if (!nb)
            return 0;
        c->buf = nb;
        c->cap = nc;
    }
    memcpy(c->buf + c->len, p, add);
    c->len += add;
    c->buf[c->len] = 0;
    return add;
}

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
    c->curl = curl_easy_init();
    if (!c->curl || !c->endpoint || !c->host) {
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
    if (c->curl)
        curl_easy_cleanup(c->curl);
    free(c->endpoint);
    free(c->host);
    free(c->buf);
    free(c);
}

const char *ddb_error_type(const json_t *resp)
{
    const char *t = json_string_value(json_object_get(resp, "__type"));
    if (!t)
        return NULL;
    const char *hash = strrchr(t, '#');
    return hash ? hash + 1 : t;
}

int ddb_call(struct ddb_client *c, const char *op, json_t *req, int *status, json_t **resp,
             struct nerr *err)
{
    char target[128], hdr_target[160], hdr_date[64], hdr_auth[1024];
    char *body = json_dumps(req, JSON_COMPACT);
    struct curl_slist *hl = NULL;
    int rc = 0;
    if (!body)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    snprintf(target, sizeof target, "DynamoDB_20120810.%s", op);
    snprintf(hdr_target, sizeof hdr_target, "X-Amz-Target: %s", target);
    hl = curl_slist_append(hl, "Content-Type: application/x-amz-json-1.0");
    hl = curl_slist_append(hl, hdr_target);
    if (c->signing) {
        struct sigv4_header hs[3] = {{"host", c->host},
                                     {"content-type", "application/x-amz-json-1.0"},
                                     {"x-amz-target", target}};
        struct sigv4_request r = {.method = "POST", .path = "/", .query = "", .headers = hs,
                                  .nheaders = 3, .body = body, .body_len = strlen(body)};
        char amz_date[17], auth[900];
        if (sigv4_signer_sign(&c->signer, &r, time(NULL), amz_date, auth, sizeof auth)) {
            rc = nerr_set(err, NERR_INTERNAL, "cannot sign the request");
            goto out;
        }
        snprintf(hdr_date, sizeof hdr_date, "X-Amz-Date: %s", amz_date);
        snprintf(hdr_auth, sizeof hdr_auth, "Authorization: %s", auth);
        hl = curl_slist_append(hl, hdr_date);
        hl = curl_slist_append(hl, hdr_auth);
    }
    c->len = 0;
    curl_easy_setopt(c->curl, CURLOPT_URL, c->endpoint);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    CURLcode cr = curl_easy_perform(c->curl);
    if (cr != CURLE_OK) {
        rc = nerr_set(err, cr == CURLE_OPERATION_TIMEDOUT ? NERR_TIMEOUT : NERR_IO, "%s: %s",
                      c->endpoint, curl_easy_strerror(cr));
        goto out;
    }
    long code = 0;
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &code);
    *status = (int)code;
    json_error_t je;
    *resp = c->len ? json_loadb(c->buf, c->len, 0, &je) : json_object();
    if (!*resp)
        rc = nerr_set(err, NERR_CORRUPT, "%s: HTTP %ld with a body that is not JSON: %.80s",
                      c->endpoint, code, c->buf);
out:
    curl_slist_free_all(hl);
    free(body);
    return rc;
}
