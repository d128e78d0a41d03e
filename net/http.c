/*
 * http.c — the HTTP client over libcurl; the contract is in http.h.
 */
#include "net/http.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"

struct http_client {
    CURL *easy;
};

/* ---- global init ----------------------------------------------------------- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK;

static void global_init_once(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int http_global_init(void)
{
    pthread_once(&global_once, global_init_once);
    return global_rc == CURLE_OK ? 0 : NERR_INTERNAL;
}

/* ---- failure classes ----------------------------------------------------- */

enum http_fail http_fail_of_curl(int curl_code)
{
    switch ((CURLcode)curl_code) {
    case CURLE_OK:
        return HTTP_FAIL_NONE;
    case CURLE_OPERATION_TIMEDOUT:
        return HTTP_FAIL_TIMEOUT;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return HTTP_FAIL_CONNECT;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
        return HTTP_FAIL_LOST;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_USE_SSL_FAILED:
        return HTTP_FAIL_TLS;
    default:
        return HTTP_FAIL_OTHER;
    }
}

const char *http_fail_name(enum http_fail f)
{
    switch (f) {
    case HTTP_FAIL_NONE:
        return NULL;
    case HTTP_FAIL_TIMEOUT:
        return "timeout";
    case HTTP_FAIL_CONNECT:
        return "connect";
    case HTTP_FAIL_LOST:
        return "connection-lost";
    case HTTP_FAIL_TOO_BIG:
        return "too-large";
    case HTTP_FAIL_TLS:
        return "tls";
    default:
        return "transport";
    }
}

static int fail_code(enum http_fail f)
{
    switch (f) {
    case HTTP_FAIL_NONE:
        return 0;
    case HTTP_FAIL_TIMEOUT:
        return NERR_TIMEOUT;
    case HTTP_FAIL_TOO_BIG:
        return NERR_LIMIT;
    default:
        return NERR_IO;
    }
}

/* ---- one transfer --------------------------------------------------------- */

/* What the write callback needs while a transfer runs. */
struct sink {
    struct http_response *rs;
    size_t max_body;
    int too_big, nomem;
};

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
    struct sink *s = arg;
    struct http_response *rs = s->rs;
    size_t add = size * nmemb;
    if (rs->len + add > s->max_body) {
        s->too_big = 1;
        return 0; /* libcurl ends the transfer with CURLE_WRITE_ERROR */
    }
    if (rs->len + add + 1 > rs->cap) {
        size_t nc = rs->cap ? rs->cap : 8192;
        while (nc < rs->len + add + 1)
            nc *= 2;
        char *nb = realloc(rs->body, nc);
        if (!nb) {
            s->nomem = 1;
            return 0;
        }
        rs->body = nb;
        rs->cap = nc;
    }
    memcpy(rs->body + rs->len, p, add);
    rs->len += add;
    rs->body[rs->len] = '\0';
    return add;
}

/* Empties rs for a new answer, keeping its buffer. */
static int response_reset(struct http_response *rs)
{
    if (!rs->body) {
        rs->body = malloc(8192);
        if (!rs->body)
            return NERR_NOMEM;
        rs->cap = 8192;
    }
    rs->len = 0;
    rs->body[0] = '\0';
    rs->status = 0;
    rs->fail = HTTP_FAIL_NONE;
    rs->error[0] = '\0';
    return 0;
}

/* Sets every option of rq on e; *hl receives the header list to free after
 * the transfer. Returns 0 or NERR_NOMEM / NERR_INVALID. */
static int setup(CURL *e, const struct http_request *rq, struct sink *s, struct curl_slist **hl)
{
    *hl = NULL;
    if (!rq->url)
        return NERR_INVALID;
    for (const char *const *h = rq->headers; h && *h; h++) {
        struct curl_slist *l = curl_slist_append(*hl, *h);
        if (!l)
            return NERR_NOMEM;
        *hl = l;
    }
    long tmo = rq->timeout_ms > 0 ? rq->timeout_ms : 10000;
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, rq->url) != CURLE_OK;
    if (rq->body) {
        bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, rq->body) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)rq->body_len) != CURLE_OK;
    } else if (!rq->method || !strcmp(rq->method, "GET")) {
        bad |= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) != CURLE_OK;
    }
    if (rq->method && strcmp(rq->method, rq->body ? "POST" : "GET"))
        bad |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, rq->method) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, *hl) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, s) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, tmo) != CURLE_OK;
    if (rq->connect_timeout_ms > 0)
        bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, rq->connect_timeout_ms) != CURLE_OK;
    /* Threads and signals: libcurl must not use SIGALRM for its timeouts. */
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    /* A client reuses its easy handle: options a previous call set stay set
     * unless cleared, so the TLS ones are always written (NULL resets). */
    bad |= curl_easy_setopt(e, CURLOPT_CAINFO, rq->ca_file) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_SSLCERT, rq->cert_file) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_SSLKEY, rq->key_file) != CURLE_OK;
    if (rq->no_proxy)
        bad |= curl_easy_setopt(e, CURLOPT_NOPROXY, "*") != CURLE_OK;
    return bad ? NERR_NOMEM : 0;
}

/* Fills rs's outcome from a finished transfer and returns the call's code. */
static int finish(CURL *e, const struct http_request *rq, struct sink *s, CURLcode cc,
                  struct http_response *rs, struct nerr *err)
{
    if (cc == CURLE_OK) {
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &rs->status);
        return 0;
    }
    rs->status = 0;
    if (s->too_big) {
        rs->fail = HTTP_FAIL_TOO_BIG;
        snprintf(rs->error, sizeof rs->error, "answer longer than %zu bytes", s->max_body);
    } else if (s->nomem) {
        rs->fail = HTTP_FAIL_OTHER;
        snprintf(rs->error, sizeof rs->error, "out of memory");
        return nerr_set(err, NERR_NOMEM, "%s: %s", rq->url, rs->error);
    } else {
        rs->fail = http_fail_of_curl((int)cc);
        snprintf(rs->error, sizeof rs->error, "%s", curl_easy_strerror(cc));
    }
    return nerr_set(err, fail_code(rs->fail), "%s: %s", rq->url, rs->error);
}

int http_client_new(struct http_client **out, struct nerr *err)
{
    struct http_client *c = calloc(1, sizeof *c);
    if (!c || !(c->easy = curl_easy_init())) {
        free(c);
        return nerr_set(err, NERR_NOMEM, "out of memory (HTTP client)");
    }
    *out = c;
    return 0;
}

void http_client_free(struct http_client *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->easy);
    free(c);
}

int http_call(struct http_client *c, const struct http_request *rq, struct http_response *rs,
              struct nerr *err)
{
    struct sink s = {.rs = rs, .max_body = rq->max_body ? rq->max_body : HTTP_MAX_BODY_DEFAULT};
    struct curl_slist *hl = NULL;
    if (response_reset(rs))
        return nerr_set(err, NERR_NOMEM, "out of memory");
    /* A reset handle keeps its connection cache (keep-alive) but forgets
     * the previous request's options. */
    curl_easy_reset(c->easy);
    int rc = setup(c->easy, rq, &s, &hl);
    if (rc) {
        curl_slist_free_all(hl);
        rs->fail = HTTP_FAIL_OTHER;
        snprintf(rs->error, sizeof rs->error, "%s",
                 rc == NERR_INVALID ? "no URL" : "out of memory");
        return nerr_set(err, rc, "%s: %s", rq->url ? rq->url : "(no URL)", rs->error);
    }
    CURLcode cc = curl_easy_perform(c->easy);
    rc = finish(c->easy, rq, &s, cc, rs, err);
    curl_slist_free_all(hl);
    return rc;
}

int http_call_all(const struct http_request *rq, size_t n, struct http_response *rs,
                  struct nerr *err)
{
    struct one {
        CURL *easy;
        struct curl_slist *hl;
        struct sink s;
        int done;
    } *t = calloc(n ? n : 1, sizeof *t);
    CURLM *multi = curl_multi_init();
    long longest = 0;
    int rc = 0;
    if (!t || !multi) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        t[i].s = (struct sink){.rs = &rs[i],
                               .max_body = rq[i].max_body ? rq[i].max_body : HTTP_MAX_BODY_DEFAULT};
        if (response_reset(&rs[i]) || !(t[i].easy = curl_easy_init()) ||
            setup(t[i].easy, &rq[i], &t[i].s, &t[i].hl) ||
            curl_multi_add_handle(multi, t[i].easy) != CURLM_OK) {
            rc = nerr_set(err, NERR_NOMEM, "setting up the request to %s",
                          rq[i].url ? rq[i].url : "(no URL)");
            goto fail;
        }
        long tmo = rq[i].timeout_ms > 0 ? rq[i].timeout_ms : 10000;
        if (tmo > longest)
            longest = tmo;
    }
    /* Every transfer has its own timeout, so this loop ends; the deadline
     * is a second guard. */
    int64_t deadline = clock_mono_ms() + longest + 2000;
    int running = 1;
    while (running && clock_mono_ms() < deadline) {
        curl_multi_perform(multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            size_t i = 0;
            while (i < n && t[i].easy != m->easy_handle)
                i++;
            if (i < n && !t[i].done) {
                t[i].done = 1;
                finish(t[i].easy, &rq[i], &t[i].s, m->data.result, &rs[i], NULL);
            }
        }
        if (running)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    for (size_t i = 0; i < n; i++)
        if (!t[i].done) {
            rs[i].status = 0;
            rs[i].fail = HTTP_FAIL_TIMEOUT;
            snprintf(rs[i].error, sizeof rs[i].error, "no answer within %ld ms", rq[i].timeout_ms);
        }
fail:
    for (size_t i = 0; t && i < n; i++) {
        if (t[i].easy) {
            curl_multi_remove_handle(multi, t[i].easy);
            curl_easy_cleanup(t[i].easy);
        }
        curl_slist_free_all(t[i].hl);
    }
    free(t);
    if (multi)
        curl_multi_cleanup(multi);
    return rc;
}

void http_response_free(struct http_response *rs)
{
    if (!rs)
        return;
    free(rs->body);
    rs->body = NULL;
    rs->len = rs->cap = 0;
}
