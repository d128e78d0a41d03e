#include "canary/scrape.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "net/http.h"
#include "proto/sigv4.h"

#define METRIC "nines_api_requests_total{"
#define MAX_BODY (16u << 20) /* a /metrics page larger than this fails the scrape */

/* Reads one label value after its opening quote into out (cap bytes,
 * truncated); returns the position after the closing quote, or NULL. */
static const char *label_value(const char *p, char *out, size_t cap)
{
    size_t o = 0;
    for (; *p && *p != '"' && *p != '\n'; p++) {
        char ch = *p;
        if (ch == '\\' && p[1] && p[1] != '\n') {
            p++;
            ch = *p == 'n' ? '\n' : *p;
        }
        if (o + 1 < cap)
            out[o++] = ch;
    }
    out[o] = 0;
    return *p == '"' ? p + 1 : NULL;
}

/* Parses one sample line; 1 when it is a usable series. */
static int parse_line(const char *p, struct scrape_series *s, int *outcome)
{
    char key[32], val[SCRAPE_TABLE], outc[32] = "";
    int have_t = 0, have_o = 0;
    p += strlen(METRIC);
    memset(s, 0, sizeof *s);
    while (*p && *p != '}') {
        size_t k = strcspn(p, "=}\n");
        if (p[k] != '=' || p[k + 1] != '"')
            return 0;
        snprintf(key, sizeof key, "%.*s", (int)(k < sizeof key ? k : sizeof key - 1), p);
        if (!(p = label_value(p + k + 2, val, sizeof val)))
            return 0;
        if (!strcmp(key, "table")) {
            snprintf(s->table, sizeof s->table, "%s", val);
            have_t = 1;
        } else if (!strcmp(key, "op")) {
            snprintf(s->op, sizeof s->op, "%.63s", val);
            have_o = 1;
        } else if (!strcmp(key, "outcome"))
            snprintf(outc, sizeof outc, "%.31s", val);
        if (*p == ',')
            p++;
    }
    if (*p != '}' || !have_t || !have_o)
        return 0;
    p++;
    static const char *const names[SCRAPE_NOUTCOMES] = {"ok", "client_error", "server_error"};
    *outcome = -1;
    for (int i = 0; i < SCRAPE_NOUTCOMES; i++)
        if (!strcmp(outc, names[i]))
            *outcome = i;
    if (*outcome < 0)
        return 0;
    char *end;
    double v = strtod(p, &end);
    if (end == p || v < 0 || v != v || (*end && *end != ' ' && *end != '\n' && *end != '\r'))
        return 0;
    s->n[*outcome] = (uint64_t)v;
    return 1;
}

static int cmp_series(const void *a, const void *b)
{
    const struct scrape_series *x = a, *y = b;
    int c = strcmp(x->table, y->table);
    return c ? c : strcmp(x->op, y->op);
}

int scrape_parse(const char *text, struct scrape_snapshot *out, struct nerr *err)
{
    size_t cap = 0;
    out->v = NULL;
    out->n = 0;
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, METRIC, strlen(METRIC)))
            continue;
        struct scrape_series s;
        int outcome;
        if (!parse_line(p, &s, &outcome))
            continue;
        if (out->n == cap) {
            size_t nc = cap ? cap * 2 : 32;
            struct scrape_series *nv = realloc(out->v, nc * sizeof *nv);
            if (!nv) {
                scrape_snapshot_free(out);
                return nerr_set(err, NERR_NOMEM, "out of memory");
            }
            out->v = nv;
            cap = nc;
        }
        out->v[out->n++] = s;
    }
    if (!out->n)
        return 0;
    /* One entry per (table, op): the outcomes come on separate lines. */
    qsort(out->v, out->n, sizeof *out->v, cmp_series);
    size_t w = 0;
    for (size_t i = 1; i < out->n; i++) {
        if (!cmp_series(&out->v[w], &out->v[i])) {
            for (int k = 0; k < SCRAPE_NOUTCOMES; k++)
                out->v[w].n[k] += out->v[i].n[k];
        } else
            out->v[++w] = out->v[i];
    }
    out->n = w + 1;
    return 0;
}

void scrape_snapshot_free(struct scrape_snapshot *s)
{
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

static const struct scrape_series *find(const struct scrape_snapshot *s,
                                        const struct scrape_series *key)
{
    return s->n ? bsearch(key, s->v, s->n, sizeof *s->v, cmp_series) : NULL;
}

int scrape_delta(const struct scrape_snapshot *prev, const struct scrape_snapshot *cur,
                 struct scrape_series **out, int *reset)
{
    *reset = 0;
    for (size_t i = 0; i < prev->n && !*reset; i++) {
        const struct scrape_series *c = find(cur, &prev->v[i]);
        if (!c)
            *reset = 1;
        for (int k = 0; c && k < SCRAPE_NOUTCOMES; k++)
            if (c->n[k] < prev->v[i].n[k])
                *reset = 1;
    }
    *out = malloc((cur->n ? cur->n : 1) * sizeof **out);
    if (!*out)
        return NERR_NOMEM;
    for (size_t i = 0; i < cur->n; i++) {
        const struct scrape_series *p = *reset ? NULL : find(prev, &cur->v[i]);
        (*out)[i] = cur->v[i];
        for (int k = 0; p && k < SCRAPE_NOUTCOMES; k++)
            (*out)[i].n[k] -= p->n[k];
    }
    return 0;
}

/* ---- the scraping threads -------------------------------------------------- */

struct target {
    struct scraper *s;
    size_t idx;
    pthread_t thread;
    int started;
    char *url;
    char *host;       /* host[:port] of url, for the signed Host header */
    const char *path; /* url's path ("/metrics"), inside url */
    int signing;
    struct sigv4_signer signer; /* used by this target's thread only */
    struct scrape_snapshot prev;
    int64_t prev_ms; /* boundary of prev; 0: no baseline */
    int warned;
    struct http_response rs; /* the last answer; its buffer is reused */
};

struct scraper {
    const struct canary_config *cfg;
    struct pgsink *sink;
    int64_t interval_ms;
    struct target *t;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
    struct scraper_stats st;
};

/* Sleeps until wall-clock ms t or stop; 1 when stopping. */
static int sleep_until(struct scraper *s, int64_t t)
{
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        int64_t left = t - clock_wall_ms();
        if (left <= 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(left / 1000);
        ts.tv_nsec += (long)(left % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    int st = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* One scrape into cur. 0, or 1 (logged once per failure streak). */
static int fetch(struct target *t, struct http_client *http, struct scrape_snapshot *cur)
{
    const struct envsub_endpoint *ep = &t->s->cfg->endpoints[t->idx];
    struct nerr err;
    /* A scrape must end before the next boundary. */
    long tmo = (long)(t->s->cfg->timeout_ns / 1000000);
    if (tmo > t->s->interval_ms / 2)
        tmo = (long)(t->s->interval_ms / 2);
    /* A node whose cluster has credentials answers /metrics only to a
     * signed GET (docs/security.md): signed like the canary's DynamoDB
     * calls, over Host and X-Amz-Date, with the empty body. */
    char host_h[300], date_h[64], auth_h[1000];
    const char *headers[4] = {NULL};
    if (t->signing) {
        struct sigv4_header hs[1] = {{"host", t->host}};
        struct sigv4_request sr = {.method = "GET",
                                   .path = t->path,
                                   .query = "",
                                   .headers = hs,
                                   .nheaders = 1,
                                   .body = "",
                                   .body_len = 0};
        char amz_date[17], auth[900];
        if (sigv4_signer_sign(&t->signer, &sr, time(NULL), amz_date, auth, sizeof auth)) {
            if (!t->warned++)
                log_warn("canary: server metrics of endpoint %s (%s): cannot sign the request",
                         ep->name, t->url);
            return 1;
        }
        snprintf(host_h, sizeof host_h, "Host: %s", t->host);
        snprintf(date_h, sizeof date_h, "X-Amz-Date: %s", amz_date);
        snprintf(auth_h, sizeof auth_h, "Authorization: %s", auth);
        headers[0] = host_h;
        headers[1] = date_h;
        headers[2] = auth_h;
    }
    struct http_request rq = {.method = "GET",
                              .url = t->url,
                              .headers = headers,
                              .timeout_ms = tmo > 0 ? tmo : 1L,
                              .max_body = MAX_BODY};
    int rc = http_call(http, &rq, &t->rs, NULL);
    if (rc || t->rs.status != 200 || !t->rs.len) {
        char why[300];
        if (rc)
            snprintf(why, sizeof why, "%s", t->rs.error);
        else if (t->rs.status == 404)
            snprintf(why, sizeof why, "not served (404); server-side counts unavailable");
        else if (t->rs.status == 400 || t->rs.status == 403)
            /* The DynamoDB error's type says what the node refused:
             * MissingAuthenticationToken (no credentials in the canary's
             * config), InvalidSignature or UnrecognizedClient (others). */
            snprintf(why, sizeof why, "refused (HTTP %ld: %.120s)", t->rs.status,
                     t->rs.body ? t->rs.body : "");
        else
            snprintf(why, sizeof why, "bad answer (HTTP %ld)", t->rs.status);
        if (!t->warned++)
            log_warn("canary: server metrics of endpoint %s (%s): %s", ep->name, t->url, why);
        return 1;
    }
    if (scrape_parse(t->rs.body, cur, &err)) {
        log_error("canary: %s", err.msg);
        return 1;
    }
    if (t->warned)
        log_info("canary: server metrics of endpoint %s readable again", ep->name);
    t->warned = 0;
    return 0;
}

static void emit(struct target *t, int64_t now_ms, const struct scrape_snapshot *cur)
{
    struct scraper *s = t->s;
    const struct envsub_endpoint *ep = &s->cfg->endpoints[t->idx];
    struct scrape_series *d = NULL;
    int reset = 0;
    if (scrape_delta(&t->prev, cur, &d, &reset)) {
        log_error("canary: out of memory computing server deltas");
        return;
    }
    if (reset)
        log_info("canary: endpoint %s restarted (its counters went back); counting from 0",
                 ep->name);
    uint64_t rows = 0;
    for (size_t i = 0; i < cur->n; i++) {
        /* A node keeps a counter for every table it ever saw: idle ones
         * would be rows of zeros, interval after interval. */
        if (!d[i].n[SCRAPE_OK] && !d[i].n[SCRAPE_CLIENT_ERROR] && !d[i].n[SCRAPE_SERVER_ERROR])
            continue;
        struct pgsink_server_sample x = {
            .start_ms = t->prev_ms,
            .interval_ms = now_ms - t->prev_ms,
            .endpoint = ep->name,
            .endpoint_az = ep->az,
            .table = d[i].table,
            .op = d[i].op,
            .requests =
                d[i].n[SCRAPE_OK] + d[i].n[SCRAPE_CLIENT_ERROR] + d[i].n[SCRAPE_SERVER_ERROR],
            .errors = d[i].n[SCRAPE_SERVER_ERROR],
            .client_errors = d[i].n[SCRAPE_CLIENT_ERROR],
        };
        struct pgsink_row *row;
        if (pgsink_row_server(&x, &row)) {
            log_error("canary: out of memory formatting a server sample");
            break;
        }
        pgsink_push(s->sink, row);
        rows++;
    }
    free(d);
    pthread_mutex_lock(&s->mu);
    s->st.rows += rows;
    s->st.resets += (uint64_t)reset;
    pthread_mutex_unlock(&s->mu);
}

static void *target_main(void *arg)
{
    struct target *t = arg;
    struct scraper *s = t->s;
    struct http_client *http;
    if (http_client_new(&http, NULL)) {
        log_error("canary: out of memory (HTTP client)");
        return NULL;
    }
    int64_t iv = s->interval_ms;
    for (;;) {
        int64_t now = clock_wall_ms();
        int64_t next = now - now % iv + iv;
        if (sleep_until(s, next))
            break;
        struct scrape_snapshot cur = {0};
        int failed = fetch(t, http, &cur);
        pthread_mutex_lock(&s->mu);
        s->st.scrapes++;
        s->st.failures += (uint64_t)failed;
        pthread_mutex_unlock(&s->mu);
        if (failed)
            continue; /* the next success spans the gap */
        if (t->prev_ms)
            emit(t, next, &cur);
        scrape_snapshot_free(&t->prev);
        t->prev = cur;
        t->prev_ms = next;
    }
    http_client_free(http);
    return NULL;
}

void scraper_stats(struct scraper *s, struct scraper_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    pthread_mutex_unlock(&s->mu);
}

void scraper_stop(struct scraper *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < s->cfg->nendpoints; i++) {
        struct target *t = &s->t[i];
        if (t->started)
            pthread_join(t->thread, NULL);
        scrape_snapshot_free(&t->prev);
        free(t->url);
        free(t->host);
        http_response_free(&t->rs);
    }
    free(s->t);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

int scraper_start(const struct canary_config *cfg, struct pgsink *sink, struct scraper **out,
                  struct nerr *err)
{
    struct scraper *s = calloc(1, sizeof *s);
    if (!s)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    s->cfg = cfg;
    s->sink = sink;
    s->interval_ms = (int64_t)(cfg->interval_ns / 1000000);
    if (s->interval_ms < 1)
        s->interval_ms = 1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    s->t = calloc(cfg->nendpoints ? cfg->nendpoints : 1, sizeof *s->t);
    if (!s->t) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    int rc = 0;
    for (size_t i = 0; i < cfg->nendpoints && !rc; i++) {
        struct target *t = &s->t[i];
        const char *u = cfg->endpoints[i].url;
        size_t l = strlen(u);
        t->s = s;
        t->idx = i;
        if (asprintf(&t->url, "%.*s/metrics", (int)(l && u[l - 1] == '/' ? l - 1 : l), u) < 0) {
            t->url = NULL;
            rc = nerr_set(err, NERR_NOMEM, "out of memory");
            break;
        }
        const char *h = strstr(t->url, "://");
        h = h ? h + 3 : t->url;
        t->path = h + strcspn(h, "/");
        if (!(t->host = strndup(h, (size_t)(t->path - h)))) {
            rc = nerr_set(err, NERR_NOMEM, "out of memory");
            break;
        }
        if (cfg->access_key_id) {
            if (sigv4_signer_init(&t->signer, cfg->access_key_id, cfg->secret_access_key,
                                  cfg->region ? cfg->region : "local", "dynamodb")) {
                rc = nerr_set(err, NERR_INVALID, "canary credentials too long to sign with");
                break;
            }
            t->signing = 1;
        }
        int e = pthread_create(&t->thread, NULL, target_main, t);
        if (e)
            rc = nerr_sys(err, e, "pthread_create");
        else
            t->started = 1;
    }
    if (rc) {
        scraper_stop(s);
        return rc;
    }
    *out = s;
    return 0;
}
