#include "store/forward.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/sigv4.h"
#include "lib/clock.h"

struct freq {
    char url[300];
    char host[256];
    char target[96];
    char *body;
    size_t len;
    int hops;
    long timeout_ms;
    fwd_done_fn done;
    void *arg;
    CURL *easy;
    struct curl_slist *hl;
    char *resp;
    size_t rlen;
    struct freq *next;
    struct freq *aprev, *anext; /* in fwd.active while a transfer runs */
};

struct ftimer {
    unsigned long long at_ms;
    void (*fn)(void *);
    void *arg;
    struct ftimer *next;
};

struct fwd {
    CURLM *multi;
    pthread_t th;
    pthread_mutex_t mu;
    struct freq *queue;
    struct ftimer *timers;
    int stop;
    int signing;
    struct sigv4_signer signer;
    CURL *idle[64]; /* easy handles kept for reuse (their connections live in the multi) */
    int nidle;
    struct freq *active; /* transfers running (forwarder thread only) */
    int https;
    char *ca_file, *cert_file, *key_file; /* owned; NULL without https */
};

static void active_add(struct fwd *f, struct freq *r)
{
    r->aprev = NULL;
    r->anext = f->active;
    if (f->active)
        f->active->aprev = r;
    f->active = r;
}

static void active_del(struct fwd *f, struct freq *r)
{
    if (r->aprev)
        r->aprev->anext = r->anext;
    else if (f->active == r)
        f->active = r->anext;
    if (r->anext)
        r->anext->aprev = r->aprev;
    r->aprev = r->anext = NULL;
}

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
    struct freq *r = arg;
    size_t add = sz * n;
    if (r->rlen + add > (32u << 20))
        return 0;
    char *np = realloc(r->resp, r->rlen + add + 1);
    if (!np)
        return 0;
    memcpy(np + r->rlen, p, add);
    r->resp = np;
    r->rlen += add;
    r->resp[r->rlen] = 0;
    return add;
}

static void req_free(struct fwd *f, struct freq *r)
{
    if (r->easy) {
        curl_multi_remove_handle(f->multi, r->easy);
        if (f->nidle < (int)(sizeof f->idle / sizeof f->idle[0]))
            f->idle[f->nidle++] = r->easy;
        else
            curl_easy_cleanup(r->easy);
    }
    curl_slist_free_all(r->hl);
    free(r->body);
    free(r->resp);
    free(r);
}

static void start_req(struct fwd *f, struct freq *r)
{
    char h[512];
    r->easy = f->nidle ? f->idle[--f->nidle] : curl_easy_init();
    if (!r->easy) {
        r->done(r->arg, 0, NULL);
        req_free(f, r);
        return;
    }
    curl_easy_reset(r->easy);
    r->hl = curl_slist_append(r->hl, "Content-Type: application/x-amz-json-1.0");
    snprintf(h, sizeof h, "X-Amz-Target: %s", r->target);
    r->hl = curl_slist_append(r->hl, h);
    snprintf(h, sizeof h, "X-Nines-Hops: %d", r->hops);
    r->hl = curl_slist_append(r->hl, h);
    r->hl = curl_slist_append(r->hl, "Expect:");
    if (f->signing) {
        struct sigv4_header hs[3] = {{"host", r->host},
                                     {"content-type", "application/x-amz-json-1.0"},
                                     {"x-amz-target", r->target}};
        struct sigv4_request sr = {.method = "POST",
                                   .path = "/",
                                   .query = "",
                                   .headers = hs,
                                   .nheaders = 3,
                                   .body = r->body,
                                   .body_len = r->len};
        char amz_date[17], auth[900];
        if (!sigv4_signer_sign(&f->signer, &sr, time(NULL), amz_date, auth, sizeof auth)) {
            snprintf(h, sizeof h, "X-Amz-Date: %s", amz_date);
            r->hl = curl_slist_append(r->hl, h);
            char ah[1000];
            snprintf(ah, sizeof ah, "Authorization: %s", auth);
            r->hl = curl_slist_append(r->hl, ah);
        }
    }
    curl_easy_setopt(r->easy, CURLOPT_URL, r->url);
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long)r->len);
    curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->hl);
    curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
    curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, 500L);
    curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->easy, CURLOPT_TCP_NODELAY, 1L);
    if (f->https) {
        curl_easy_setopt(r->easy, CURLOPT_CAINFO, f->ca_file);
        curl_easy_setopt(r->easy, CURLOPT_SSLCERT, f->cert_file);
        curl_easy_setopt(r->easy, CURLOPT_SSLKEY, f->key_file);
    }
    if (curl_multi_add_handle(f->multi, r->easy) != CURLM_OK) {
        r->done(r->arg, 0, NULL);
        req_free(f, r);
        return;
    }
    active_add(f, r);
}

static void *fwd_main(void *arg)
{
    pthread_setname_np(pthread_self(), "nines-forward");
    struct fwd *f = arg;
    for (;;) {
        pthread_mutex_lock(&f->mu);
        struct freq *q = f->queue;
        f->queue = NULL;
        int stop = f->stop;
        /* Due timers, in order. */
        unsigned long long now = (unsigned long long)clock_mono_ms();
        struct ftimer *due = NULL, **tp = &f->timers;
        while (*tp) {
            if (stop || (*tp)->at_ms <= now) {
                struct ftimer *t = *tp;
                *tp = t->next;
                t->next = due;
                due = t;
            } else {
                tp = &(*tp)->next;
            }
        }
        unsigned long long next = now + 100;
        for (struct ftimer *t = f->timers; t; t = t->next)
            if (t->at_ms < next)
                next = t->at_ms;
        pthread_mutex_unlock(&f->mu);
        /* Reverse to run in deadline-ish order (the list was LIFO). */
        struct ftimer *ord = NULL;
        while (due) {
            struct ftimer *t = due;
            due = t->next;
            t->next = ord;
            ord = t;
        }
        while (ord) {
            struct ftimer *t = ord;
            ord = t->next;
            t->fn(t->arg);
            free(t);
        }
        while (q) {
            struct freq *r = q;
            q = q->next;
            if (stop) {
                r->done(r->arg, 0, NULL);
                req_free(f, r);
            } else {
                start_req(f, r);
            }
        }
        if (stop)
            break;
        int running = 0;
        curl_multi_perform(f->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(f->multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            struct freq *r = NULL;
            long status = 0;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            if (m->data.result == CURLE_OK)
                curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            else if (m->data.result == CURLE_COULDNT_CONNECT)
                status = -1; /* refused: nothing was sent */
            char *body = status > 0 ? r->resp : NULL;
            if (status > 0 && !body)
                body = strdup("");
            if (status > 0)
                r->resp = NULL;
            active_del(f, r);
            r->done(r->arg, status, body);
            req_free(f, r);
        }
        long wait = (long)(next > (unsigned long long)clock_mono_ms()
                               ? next - (unsigned long long)clock_mono_ms()
                               : 0);
        curl_multi_poll(f->multi, NULL, 0, (int)(wait > 100 ? 100 : wait), NULL);
    }
    return NULL;
}

static void free_tls(struct fwd *f)
{
    free(f->ca_file);
    free(f->cert_file);
    free(f->key_file);
}

int fwd_start(const struct fwd_options *o, struct fwd **out, struct nerr *err)
{
    struct fwd *f = calloc(1, sizeof *f);
    if (!f)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    if (o && o->access_key_id) {
        if (sigv4_signer_init(&f->signer, o->access_key_id, o->secret_access_key,
                              o->region ? o->region : "local", "dynamodb")) {
            free(f);
            return nerr_set(err, NERR_INVALID, "forwarder: bad credentials");
        }
        f->signing = 1;
    }
    if (o && o->https) {
        if (!o->ca_file) {
            free(f);
            return nerr_set(err, NERR_INVALID, "forwarder: https needs the CA file");
        }
        f->https = 1;
        f->ca_file = strdup(o->ca_file);
        f->cert_file = o->cert_file ? strdup(o->cert_file) : NULL;
        f->key_file = o->key_file ? strdup(o->key_file) : NULL;
        if (!f->ca_file || (o->cert_file && !f->cert_file) || (o->key_file && !f->key_file)) {
            free_tls(f);
            free(f);
            return nerr_set(err, NERR_NOMEM, "out of memory");
        }
    }
    if (!(f->multi = curl_multi_init())) {
        free_tls(f);
        free(f);
        return nerr_set(err, NERR_NOMEM, "curl_multi_init failed");
    }
    curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, 256L);
    pthread_mutex_init(&f->mu, NULL);
    if (pthread_create(&f->th, NULL, fwd_main, f)) {
        curl_multi_cleanup(f->multi);
        pthread_mutex_destroy(&f->mu);
        free_tls(f);
        free(f);
        return nerr_set(err, NERR_IO, "cannot start the forwarder thread");
    }
    *out = f;
    return 0;
}

void fwd_stop(struct fwd *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    f->stop = 1;
    pthread_mutex_unlock(&f->mu);
    curl_multi_wakeup(f->multi);
    pthread_join(f->th, NULL);
    /* Transfers still running: their callers get "no answer". */
    while (f->active) {
        struct freq *r = f->active;
        active_del(f, r);
        r->done(r->arg, 0, NULL);
        req_free(f, r);
    }
    for (int i = 0; i < f->nidle; i++)
        curl_easy_cleanup(f->idle[i]);
    curl_multi_cleanup(f->multi);
    pthread_mutex_destroy(&f->mu);
    free_tls(f);
    free(f);
}

int fwd_send(struct fwd *f, const char *hostport, const char *op, const char *body, size_t len,
             int hops, long timeout_ms, fwd_done_fn done, void *arg)
{
    struct freq *r = calloc(1, sizeof *r);
    if (!r || !(r->body = malloc(len + 1))) {
        free(r);
        return NERR_NOMEM;
    }
    memcpy(r->body, body, len);
    r->body[len] = 0;
    r->len = len;
    snprintf(r->url, sizeof r->url, "%s://%s/", f->https ? "https" : "http", hostport);
    snprintf(r->host, sizeof r->host, "%s", hostport);
    if (!strncmp(op, "NinesAdmin.", 11))
        snprintf(r->target, sizeof r->target, "%s", op);
    else
        snprintf(r->target, sizeof r->target, "DynamoDB_20120810.%s", op);
    r->hops = hops;
    r->timeout_ms = timeout_ms;
    r->done = done;
    r->arg = arg;
    pthread_mutex_lock(&f->mu);
    if (f->stop) {
        pthread_mutex_unlock(&f->mu);
        free(r->body);
        free(r);
        return NERR_CLOSED;
    }
    r->next = f->queue;
    f->queue = r;
    pthread_mutex_unlock(&f->mu);
    curl_multi_wakeup(f->multi);
    return 0;
}

int fwd_after(struct fwd *f, int ms, void (*fn)(void *), void *arg)
{
    struct ftimer *t = calloc(1, sizeof *t);
    if (!t)
        return NERR_NOMEM;
    t->at_ms = (unsigned long long)clock_mono_ms() + (unsigned long long)ms;
    t->fn = fn;
    t->arg = arg;
    pthread_mutex_lock(&f->mu);
    if (f->stop) {
        pthread_mutex_unlock(&f->mu);
        free(t);
        return NERR_CLOSED;
    }
    t->next = f->timers;
    f->timers = t;
    pthread_mutex_unlock(&f->mu);
    curl_multi_wakeup(f->multi);
    return 0;
}
