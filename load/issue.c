/*
 * issue.c — `nines load`'s issuing: connections, the schedule (closed or
 * open loop), timeouts, signing, completions, --create, the final read
 * phase and the history it records. Contract in load/load.h ("issuing").
 *
 * Cost per request is kept small because the generator shares two cores with
 * the server it measures: each connection owns one curl easy handle, a body
 * buffer, a response buffer and a header list made of curl_slist nodes that
 * live inside the connection (curl only reads the list), so an unsigned
 * request allocates nothing; a signed one allocates only the short-lived
 * buffers of the SigV4 computation.
 */
#include <errno.h>
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

#include "checkers/history_write.h"
#include "lib/clock.h"
#include "load/load.h"
#include "load/load_int.h"
#include "net/http.h"
#include "proto/ddb.h"
#include "proto/sigv4.h"

#define RESP_CAP 4096
#define CONTENT_TYPE "application/x-amz-json-1.0"

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
    /* Free connections, a FIFO ring of capacity concurrency: the one idle
     * longest goes next, so that connections whose endpoint fails fast (a
     * node that is down refuses at once) do not take every request while
     * the others wait: each endpoint keeps its share of the traffic. */
    struct conn **idle;
    size_t nidle, idle_head, idle_cap;
    struct load_gen gen;
    size_t body_cap;
    struct sigv4_signer signer;
    int sign;
    char *const *endpoints; /* o's, or the default when o has none */
    size_t nendpoints;
    char **hosts; /* "host:port" of each endpoint, for the signed Host header */
    int timerfd;  /* open loop: wakes the poll at the next due time */
    /* Per key, what the generator last saw: 0 = absent, else the value's
     * number + 1. Feeds cas' expected value. NULL unless tracked. */
    uint64_t *known;
    /* --history: keys any write, cas or delete was sent to; the final phase
     * clears a key's bit once its read succeeded. */
    uint8_t *written;
    struct history_writer *history; /* --history, else NULL */
    char *val, *val2;               /* scratch for two values (a cas'), body_cap bytes each */
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
    c->endpoint = idx % (unsigned)r->nendpoints;
    c->body = malloc(r->body_cap);
    c->easy = curl_easy_init();
    if (!c->body || !c->easy)
        return nerr_set(e, NERR_NOMEM, "out of memory setting up connection %u", idx);
    int etcd = o->target == LOAD_TARGET_ETCD;
    c->hdr[H_CTYPE].data =
        etcd ? (char *)"Content-Type: application/json" : (char *)"Content-Type: " CONTENT_TYPE;
    if (etcd) {
        size_t ul = strlen(r->endpoints[c->endpoint]) + 16;
        c->url_put = malloc(ul);
        c->url_range = malloc(ul);
        if (!c->url_put || !c->url_range)
            return nerr_set(e, NERR_NOMEM, "out of memory setting up connection %u", idx);
        snprintf(c->url_put, ul, "%s/v3/kv/put", r->endpoints[c->endpoint]);
        snprintf(c->url_range, ul, "%s/v3/kv/range", r->endpoints[c->endpoint]);
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
    bad |= curl_easy_setopt(h, CURLOPT_URL, r->endpoints[c->endpoint]) != CURLE_OK;
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
    if (o->ca_bundle[0])
        bad |= curl_easy_setopt(h, CURLOPT_CAINFO, o->ca_bundle) != CURLE_OK;
    if (bad)
        return nerr_set(e, NERR_IO, "curl_easy_setopt failed for %s", r->endpoints[c->endpoint]);
    return 0;
}

/* ---- history (docs/history.md's JSONL, checkers/history_write.h) ---- */

static const char *history_f_of(enum load_op op)
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

/* The value this generator writes for key with number n, in buf. */
static struct history_wval gen_value(struct runner *r, char *buf, uint64_t key, uint64_t n)
{
    size_t len = load_gen_value(&r->gen, key, n, buf, r->body_cap);
    return (struct history_wval){HISTORY_WV_STR, buf, len};
}

/* One event of c's request. read_value: the value read (reads' ok
 * completion only), with read_absent for "no item"; error: the error type
 * of fail/info. read_value may be r->val: reads generate no value. */
static void record_event(struct runner *r, const struct conn *c, const char *type, uint64_t t,
                         const char *read_value, size_t read_len, int read_absent,
                         const char *error)
{
    const struct load_req *rq = &c->req;
    char key[24];
    *load_put_u64(key + 1, rq->key) = '\0';
    key[0] = 'k';
    struct history_wevent ev = {.process = c->idx,
                                .type = type,
                                .f = history_f_of(rq->op),
                                .key = key,
                                .consistent = -1,
                                .error = error,
                                .final = c->final,
                                .time = t};
    switch (rq->op) {
    case LOAD_PUT:
        ev.value = gen_value(r, r->val, rq->key, rq->n);
        break;
    case LOAD_CAS:
        if (rq->expect)
            ev.expected = gen_value(r, r->val2, rq->key, rq->expect - 1);
        ev.value = gen_value(r, r->val, rq->key, rq->n);
        break;
    case LOAD_GET:
    case LOAD_CGET:
        if (read_absent)
            ev.value.kind = HISTORY_WV_NULL;
        else if (read_value)
            ev.value = (struct history_wval){HISTORY_WV_STR, read_value, read_len};
        ev.consistent = rq->op == LOAD_CGET;
        break;
    default:
        break;
    }
    history_writer_event(r->history, &ev);
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

static struct conn *idle_pop(struct runner *r)
{
    struct conn *c = r->idle[r->idle_head];
    r->idle_head = (r->idle_head + 1) % r->idle_cap;
    r->nidle--;
    return c;
}

static void idle_push(struct runner *r, struct conn *c)
{
    r->idle[(r->idle_head + r->nidle) % r->idle_cap] = c;
    r->nidle++;
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
    c->sent_ns = clock_mono_ns();
    if (curl_multi_add_handle(r->multi, c->easy) != CURLM_OK)
        return NERR_IO;
    c->busy = 1;
    if (c->final)
        r->final_inflight++;
    if (r->history) {
        if (c->req.op == LOAD_PUT || c->req.op == LOAD_CAS || c->req.op == LOAD_DELETE)
            r->written[c->req.key >> 3] |= (uint8_t)(1u << (c->req.key & 7));
        record_event(r, c, "invoke", c->sent_ns, NULL, 0, 0, NULL);
    }
    return 0;
}

/* A transport failure's name ("timeout", "connect", "connection-lost", ...):
 * the same names net/http gives every other client. */
static const char *curl_error_type(CURLcode cc)
{
    return http_fail_name(http_fail_of_curl((int)cc));
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
    if (!r->history && !r->known)
        return;
    if (res->ok && is_read && (r->history || rq->op == LOAD_CGET))
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
    if (!r->history)
        return;
    if (res->ok && is_read && !parsed) {
        record_event(r, c, "info", done, NULL, 0, 0, "unparsed-response");
    } else if (res->ok) {
        record_event(r, c, "ok", done, is_read ? r->val : NULL, vlen, absent, NULL);
        if (c->final)
            r->written[rq->key >> 3] &= (uint8_t) ~(1u << (rq->key & 7));
    } else {
        /* A 4xx is DynamoDB saying the request was refused (condition,
         * validation, throttling): it certainly did not take effect. Anything
         * else — timeout, lost connection, 5xx — may have. */
        int definite = cc == CURLE_OK && http >= 400 && http < 500;
        record_event(r, c, definite ? "fail" : "info", done, NULL, 0, 0, res->error);
    }
}

static void complete(struct runner *r, struct conn *c, CURLcode cc)
{
    uint64_t done = clock_mono_ns();
    long http = 0;
    char buf[64];
    struct load_result res = {0};
    curl_multi_remove_handle(r->multi, c->easy);
    c->busy = 0;
    c->resp[c->resp_len] = '\0';
    res.req = &c->req;
    res.conn = c->idx;
    res.endpoint = c->endpoint;
    res.final = c->final;
    res.intended_ns = c->intended_ns;
    res.sent_ns = c->sent_ns;
    res.done_ns = done;
    res.measured = c->measured;
    res.response = c->resp;
    res.response_len = c->resp_len;
    if (cc != CURLE_OK) {
        res.error = curl_error_type(cc);
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
                load_etcd_error_type(c->resp, c->resp_len, http, buf, sizeof buf);
            else if (!ddb_error_type(http, c->resp, c->resp_len, buf, sizeof buf))
                snprintf(buf, sizeof buf, "http-%ld", http); /* a 2xx other than 200 */
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
    idle_push(r, c);
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
    char body[1024], resp[RESP_CAP + 1], type[DDB_ERROR_TYPE_MAX] = "";
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
                return nerr_set(e, NERR_IO, "CreateTable on %s: %s", r->endpoints[0], resp);
            break;
        }
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (http != 200) {
        ddb_error_type(http, resp, strlen(resp), type, sizeof type);
        if (strcmp(type, "ResourceInUseException"))
            return nerr_set(e, NERR_IO, "CreateTable on %s: HTTP %ld %s: %.300s", r->endpoints[0],
                            http, type, resp);
    }
    /* Wait (bounded: 30 s in all) until every endpoint says the table is
     * ACTIVE: the nodes of a cluster learn of a new table at their next
     * catalog sync, and until then they do not know it (not found). */
    snprintf(body, sizeof body, "{\"TableName\":\"%s\"}", o->table);
    int waits = 0;
    for (size_t ep = 0; ep < r->nendpoints && ep < o->concurrency; ep++) {
        size_t ci = ep; /* connection ci talks to endpoint ci % nendpoints */
        for (;;) {
            if (call_once(r, ci, "DynamoDB_20120810.DescribeTable", body, &http, resp, sizeof resp))
                return nerr_set(e, NERR_IO, "DescribeTable on %s: %s", r->endpoints[ep], resp);
            if (http == 200 && strstr(resp, "\"TableStatus\":\"ACTIVE\""))
                break;
            ddb_error_type(http, resp, strlen(resp), type, sizeof type);
            if (http != 200 && strcmp(type, "ResourceNotFoundException"))
                return nerr_set(e, NERR_IO, "DescribeTable on %s: HTTP %ld: %.300s",
                                r->endpoints[ep], http, resp);
            if (++waits > 300)
                return nerr_set(e, NERR_TIMEOUT, "table %s not ACTIVE on %s after 30 s", o->table,
                                r->endpoints[ep]);
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
    uint64_t stop_issuing = clock_mono_ns() + (uint64_t)(o->final_timeout_s * 1e9);
    uint64_t hard_end = stop_issuing + (uint64_t)o->timeout_ms * 1000000u + 1000000000u;
    for (int pass = 0; pass < 3; pass++) {
        uint64_t cursor = 0;
        for (;;) {
            uint64_t now = clock_mono_ns();
            if (now >= stop_issuing)
                cursor = keys;
            while (r->nidle && cursor < keys) {
                if (!r->written[cursor >> 3]) {
                    cursor = (cursor | 7) + 1;
                    continue;
                }
                if ((r->written[cursor >> 3] >> (cursor & 7)) & 1) {
                    struct load_req rq = {.op = LOAD_CGET, .key = cursor};
                    int rc = issue(r, idle_pop(r), now, 0, &rq);
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
        if (clock_mono_ns() >= stop_issuing)
            break;
    }
    uint64_t left = 0;
    for (uint64_t k = 0; k < keys; k++)
        left += (r->written[k >> 3] >> (k & 7)) & 1;
    r->stats->final_ok = total - left;
    r->stats->final_failed = left;
    return 0;
}

static int record_open(struct runner *r, struct nerr *e)
{
    const struct load_opts *o = r->o;
    r->written = calloc((size_t)(o->keys + 7) / 8, 1);
    if (!r->written)
        return nerr_set(e, NERR_NOMEM, "out of memory");
    return history_writer_open(&r->history, o->history, e);
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
        for (size_t i = 0; i < r->nendpoints; i++)
            free(r->hosts[i]);
    free(r->hosts);
    free(r->conns);
    free(r->idle);
    history_writer_discard(r->history); /* an error path: its own error is already set */
    free(r->written);
    free(r->known);
    free(r->val);
    free(r->val2);
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
    static char *const default_endpoint[] = {LOAD_DEFAULT_ENDPOINT};
    r.endpoints = o->nendpoints ? o->endpoints : default_endpoint;
    r.nendpoints = o->nendpoints ? o->nendpoints : 1;
    load_stats_init(stats);
    if (!o->concurrency)
        return nerr_set(e, NERR_INVALID, "zero concurrency");
    load_gen_init(&r.gen, o);
    r.body_cap = load_gen_body_max(&r.gen);
    if (o->akid[0]) {
        if (sigv4_signer_init(&r.signer, o->akid, o->secret, o->region, "dynamodb"))
            return nerr_set(e, NERR_INVALID, "credentials cannot be used for signing");
        r.sign = 1;
    }
    r.hosts = calloc(r.nendpoints, sizeof *r.hosts);
    r.conns = calloc(o->concurrency, sizeof *r.conns);
    r.idle = calloc(o->concurrency, sizeof *r.idle);
    r.idle_cap = o->concurrency;
    r.multi = curl_multi_init();
    r.val = malloc(r.body_cap);
    r.val2 = malloc(r.body_cap);
    if (!r.val || !r.val2) {
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
    if (o->history[0] && (rc = record_open(&r, e)))
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
    for (size_t i = 0; i < r.nendpoints; i++)
        if (!(r.hosts[i] = url_host(r.endpoints[i]))) {
            rc = nerr_set(e, NERR_NOMEM, "out of memory");
            goto fail;
        }
    /* Keep every connection in the pool between requests (keep-alive). */
    curl_multi_setopt(r.multi, CURLMOPT_MAXCONNECTS, (long)o->concurrency + 8);
    for (unsigned i = 0; i < o->concurrency; i++) {
        if ((rc = conn_setup(&r, &r.conns[i], i, e)))
            goto fail;
        idle_push(&r, &r.conns[i]);
    }
    if (o->create && (rc = create_table(&r, e)))
        goto fail;

    uint64_t start = clock_mono_ns();
    uint64_t warm_end = start + (uint64_t)(o->warmup_s * 1e9);
    uint64_t end = warm_end + (uint64_t)(o->duration_s * 1e9);
    uint64_t drain_deadline = end + (uint64_t)o->timeout_ms * 1000000u + 1000000000u;
    double interval = o->rate > 0 ? 1e9 / o->rate : 0;
    uint64_t scheduled = 0; /* open loop: requests whose due time has been handed out */
    uint64_t counted = 0;   /* measured requests issued */
    uint64_t last_done = warm_end;
    int stopped = 0, halted = 0, running = 0;
    struct load_stop *stop = hooks ? hooks->stop : NULL;

    for (;;) {
        uint64_t now = clock_mono_ns();
        if (!halted && stop && atomic_load(&stop->requested)) {
            /* load_stop: the measured period ends now, as if --duration had
             * ended here; nothing more is issued (open loop: what was due
             * and unsent is counted as unsent below), what is in flight
             * drains within one request timeout. */
            halted = stopped = 1;
            if (now < end)
                end = now;
            drain_deadline = now + (uint64_t)o->timeout_ms * 1000000u + 1000000000u;
        }
        if (!stopped && (now >= end || (o->requests && counted >= o->requests)))
            stopped = 1;
        if (o->rate > 0 && !halted) {
            /* Hand due requests to free connections; requests due but not
             * yet sent wait here, and their latency keeps growing. */
            for (;;) {
                uint64_t due = start + (uint64_t)((double)scheduled * interval);
                if (due > now || due >= end || (o->requests && counted >= o->requests))
                    break;
                if (!r.nidle)
                    break;
                int measured = due >= warm_end;
                if ((rc = issue(&r, idle_pop(&r), due, measured, NULL))) {
                    nerr_set(e, rc, "could not start a request");
                    goto fail;
                }
                scheduled++;
                counted += (uint64_t)measured;
            }
        } else if (!stopped) {
            while (r.nidle && !(o->requests && counted >= o->requests)) {
                int measured = now >= warm_end;
                if ((rc = issue(&r, idle_pop(&r), now, measured, NULL))) {
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
                last_done = clock_mono_ns();
        }
        now = clock_mono_ns();
        int backlog = 0;
        if (o->rate > 0 && !halted) {
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
    if (r.history && (rc = final_phase(&r, e)))
        goto fail;
    rc = history_writer_close(r.history, e);
    r.history = NULL;
fail:
    runner_free(&r);
    return rc;
}

void load_stop(struct load_stop *s)
{
    atomic_store(&s->requested, 1);
}
