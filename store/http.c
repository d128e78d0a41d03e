#include "store/http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/fsutil.h"
#include "lib/log.h"
#include "lib/strbuf.h"
#include "proto/sigv4.h"

struct http_server {
    struct http_options opt;
    struct MHD_Daemon *d;
    int port;
    char id_prefix[17];
    _Atomic unsigned long long next_id;
    _Atomic long inflight;     /* requests handed to the API and not yet answered */
    _Atomic int stopping;      /* http_stop began: no request is handed to the API any more */
    _Atomic size_t unverified; /* body bytes reserved by requests not yet authenticated */
    size_t max_unverified;
    char *tls_cert, *tls_key; /* PEM text, alive as long as the daemon */
};

/* One request. Lives from the first access callback to MHD's completion. */
struct req {
    struct http_server *s;
    struct MHD_Connection *conn;
    char *body;
    size_t len, cap;
    int too_big;
    int no_buffer;   /* discard the body: refused before it matters */
    int over_budget; /* the unverified-bytes budget was full */
    size_t charged;  /* bytes reserved in s->unverified */
    pthread_mutex_t mu;
    int dispatched, answered, suspended;
    int status;
    char *resp;
};

static void release_charge(struct req *r)
{
    if (r->charged) {
        atomic_fetch_sub(&r->s->unverified, r->charged);
        r->charged = 0;
    }
}

static void req_free(struct req *r)
{
    if (!r)
        return;
    release_charge(r);
    free(r->body);
    free(r->resp);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static enum MHD_Result send_body(struct http_server *s, struct MHD_Connection *conn, int status,
                                 char *body /* taken */, const char *ctype)
{
    char rid[64];
    unsigned long long n = atomic_fetch_add(&s->next_id, 1);
    snprintf(rid, sizeof rid, "%s%020llu", s->id_prefix, n);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(body ? strlen(body) : 0, body ? body : (void *)"",
                                        body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "x-amzn-RequestId", rid);
    enum MHD_Result r = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return r;
}

static enum MHD_Result send_error(struct http_server *s, struct MHD_Connection *conn, int status,
                                  const char *type, const char *msg)
{
    return send_body(s, conn, status, api_error_body(type, msg), "application/x-amz-json-1.0");
}

/* api_call's reply: may run on this thread (before api_call returns) or on
 * the applier thread; the mutex orders it against suspension. */
static void on_reply(void *arg, int status, char *body)
{
    struct req *r = arg;
    struct http_server *s = r->s;
    pthread_mutex_lock(&r->mu);
    r->status = status;
    r->resp = body;
    r->answered = 1;
    if (r->suspended) {
        r->suspended = 0;
        MHD_resume_connection(r->conn);
    }
    pthread_mutex_unlock(&r->mu);
    atomic_fetch_sub(&s->inflight, 1);
}

struct hdrs {
    struct sigv4_header h[64];
    size_t n;
};

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    struct hdrs *hs = cls;
    (void)kind;
    if (hs->n < sizeof hs->h / sizeof hs->h[0]) {
        hs->h[hs->n].name = key;
        hs->h[hs->n].value = value ? value : "";
        hs->n++;
    }
    return MHD_YES;
}

static const char *lookup_secret(void *arg, const char *akid)
{
    struct http_server *s = arg;
    return strcmp(akid, s->opt.access_key_id) ? NULL : s->opt.secret_access_key;
}

/* RFC 3986 encoding of s into b: unreserved characters kept, the rest %XX. */
static void query_encode(struct strbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            strbuf_ch(b, (char)*p);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            strbuf_add(b, e, 3);
        }
    }
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    struct strbuf *b = cls;
    (void)kind;
    if (b->len)
        strbuf_ch(b, '&');
    query_encode(b, key);
    strbuf_ch(b, '=');
    query_encode(b, value ? value : "");
    return MHD_YES;
}

/* SigV4 over method, path and query, the headers and the body (empty for a
 * GET). Returns 0 when the request may proceed, else queues the error.
 * MHD hands over the path without its query and the query's arguments
 * decoded: the query is rebuilt from them, each name and value encoded
 * again, which is the same canonical query once sigv4 sorts it. */
static int check_auth(struct http_server *s, struct MHD_Connection *conn, const char *method,
                      const char *url, struct req *r, enum MHD_Result *ret)
{
    if (!s->opt.access_key_id)
        return 0;
    struct hdrs hs = {.n = 0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_header, &hs);
    struct strbuf qb = {0};
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, &qb);
    char *query = NULL;
    if (strbuf_finish(&qb, &query)) {
        *ret = send_error(s, conn, 500, API_TYPE_DDB "InternalServerError", "out of memory");
        return -1;
    }
    struct sigv4_request sr = {.method = method,
                               .path = url,
                               .query = query ? query : "",
                               .headers = hs.h,
                               .nheaders = hs.n,
                               .body = r->body ? r->body : "",
                               .body_len = r->len};
    char why[512] = "";
    enum sigv4_verdict v = sigv4_verify(&sr, lookup_secret, s, time(NULL), why, sizeof why);
    free(query);
    const char *type = NULL, *msg = why;
    switch (v) {
    case SIGV4_OK:
        return 0;
    case SIGV4_MISSING:
        type = API_TYPE_CORAL "MissingAuthenticationTokenException";
        msg = "Request is missing Authentication Token";
        break;
    case SIGV4_MALFORMED:
        type = API_TYPE_CORAL "IncompleteSignatureException";
        break;
    case SIGV4_UNRECOGNIZED_CLIENT:
        type = API_TYPE_CORAL "UnrecognizedClientException";
        msg = "The security token included in the request is invalid.";
        break;
    case SIGV4_INVALID_SIGNATURE:
        type = API_TYPE_CORAL "InvalidSignatureException";
        msg = "The request signature we calculated does not match the signature you provided. "
              "Check your AWS Secret Access Key and signing method. Consult the service "
              "documentation for details.";
        break;
    case SIGV4_EXPIRED:
        type = API_TYPE_CORAL "InvalidSignatureException";
        break;
    }
    *ret = send_error(s, conn, 400, type, msg);
    return -1;
}

/* Reserves n body bytes in the server's budget of unverified bytes. */
static int charge(struct http_server *s, struct req *r, size_t n)
{
    size_t cur = atomic_load(&s->unverified);
    do {
        if (cur + n > s->max_unverified)
            return -1;
    } while (!atomic_compare_exchange_weak(&s->unverified, &cur, cur + n));
    r->charged += n;
    return 0;
}

/* The header-time checks of a POST, before any of its body is read:
 * without an Authorization header naming our access key the body will
 * never be looked at, so it is not buffered; otherwise room for the
 * declared length is reserved in the budget (or the request is refused). */
static void precheck(struct http_server *s, struct MHD_Connection *conn, struct req *r,
                     unsigned long long want)
{
    if (s->opt.access_key_id) {
        const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
        const char *cred = auth ? strstr(auth, "Credential=") : NULL;
        size_t kl = strlen(s->opt.access_key_id);
        if (!cred || strncmp(cred + 11, s->opt.access_key_id, kl) || cred[11 + kl] != '/') {
            r->no_buffer = 1; /* check_auth answers it from the headers alone */
            return;
        }
    }
    if (want > 0 && charge(s, r, (size_t)want) < 0) {
        r->no_buffer = 1;
        r->over_budget = 1;
        return;
    }
    if (want > 0 && (r->body = malloc((size_t)want + 1)) != NULL)
        r->cap = (size_t)want + 1;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct http_server *s = cls;
    struct req *r = *con_cls;
    (void)version;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        r->s = s;
        r->conn = conn;
        pthread_mutex_init(&r->mu, NULL);
        *con_cls = r;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        unsigned long long want = cl ? strtoull(cl, NULL, 10) : 0;
        if (want > HTTP_MAX_BODY)
            r->too_big = 1;
        else if (!strcmp(method, "POST"))
            precheck(s, conn, r, want);
        else
            r->no_buffer = 1; /* only a POST has a body that counts: a GET is signed
                               * with the empty one, other methods are refused */
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!r->too_big && r->len + *upload_data_size > HTTP_MAX_BODY)
            r->too_big = 1;
        /* Beyond the declared length (chunked uploads): the same budget. */
        if (!r->too_big && !r->no_buffer && r->len + *upload_data_size > r->charged &&
            charge(s, r, r->len + *upload_data_size - r->charged) < 0)
            r->no_buffer = 1;
        if (!r->too_big && !r->no_buffer) {
            if (r->len + *upload_data_size + 1 > r->cap) {
                size_t nc = r->cap ? r->cap : 4096;
                while (nc < r->len + *upload_data_size + 1)
                    nc *= 2;
                char *nb = realloc(r->body, nc);
                if (!nb)
                    return MHD_NO;
                r->body = nb;
                r->cap = nc;
            }
            memcpy(r->body + r->len, upload_data, *upload_data_size);
            r->len += *upload_data_size;
            r->body[r->len] = 0;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    /* The whole request is here. */
    pthread_mutex_lock(&r->mu);
    if (r->dispatched) {
        /* Resumed after an asynchronous reply. */
        int st = r->status;
        char *body = r->resp;
        r->resp = NULL;
        pthread_mutex_unlock(&r->mu);
        return send_body(s, conn, st, body, "application/x-amz-json-1.0");
    }
    pthread_mutex_unlock(&r->mu);
    /* GET / is the liveness line and needs no signature (docs/security.md:
     * it names the node and nothing else). /metrics names every table and
     * its rates: signed like any other call when the cluster has
     * credentials (a GET with an empty body). */
    if (!strcmp(method, "GET") && !strcmp(url, "/metrics")) {
        enum MHD_Result ret;
        if (check_auth(s, conn, method, url, r, &ret))
            return ret;
        char *text = api_metrics_text(s->opt.api);
        if (!text)
            return send_error(s, conn, 500, API_TYPE_DDB "InternalServerError", "out of memory");
        return send_body(s, conn, 200, text, "text/plain; version=0.0.4");
    }
    if (!strcmp(method, "GET") && !strcmp(url, "/")) {
        char line[256];
        snprintf(line, sizeof line, "healthy: ninesd %s\n", s->opt.node_id ? s->opt.node_id : "");
        return send_body(s, conn, 200, strdup(line), "text/plain");
    }
    if (strcmp(method, "POST"))
        return send_error(s, conn, 405, API_TYPE_CORAL "UnknownOperationException",
                          "Only POST is supported");
    if (r->too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "Request size exceeded the maximum of %u bytes", HTTP_MAX_BODY);
        return send_error(s, conn, 413, API_TYPE_CORAL "RequestEntityTooLarge", msg);
    }
    if (r->over_budget)
        return send_error(s, conn, 503, API_TYPE_CORAL "ServiceUnavailableException",
                          "Too many unauthenticated request bytes buffered; retry");
    const char *ctype = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    size_t cl = ctype ? strcspn(ctype, ";") : 0;
    if (!ctype || !((cl == 26 && !strncasecmp(ctype, "application/x-amz-json-1.0", 26)) ||
                    (cl == 16 && !strncasecmp(ctype, "application/json", 16)))) {
        char msg[300];
        snprintf(msg, sizeof msg,
                 "Unsupported Content-Type '%.200s'; expected application/x-amz-json-1.0",
                 ctype ? ctype : "");
        return send_error(s, conn, 400, API_TYPE_CORAL "SerializationException", msg);
    }
    enum MHD_Result ret;
    const char *target = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Amz-Target");
    static const char admin[] = "NinesAdmin.";
    int is_admin = target && !strncmp(target, admin, sizeof admin - 1);
    /* Admin calls too: the status names every group, member and leader,
     * the catalog every table. Peers sign theirs with the cluster's
     * credentials (store/catalog.c, store/forward.c). */
    if (check_auth(s, conn, method, url, r, &ret))
        return ret;
    /* Authenticated (or no credentials): the body no longer counts against
     * the budget of unverified bytes. */
    release_charge(r);
    static const char prefix[] = "DynamoDB_20120810.";
    if (!target || (!is_admin && strncmp(target, prefix, sizeof prefix - 1)))
        return send_error(s, conn, 400, API_TYPE_CORAL "UnknownOperationException", "");
    const char *hops_h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Nines-Hops");
    int hops = hops_h ? atoi(hops_h) : 0;
    /* Counted before the check, and http_stop sets stopping before it
     * waits for the count (both sequentially consistent): either it waits
     * for this request, or this request sees it stopping and is not
     * suspended. A connection suspended after the wait would make
     * MHD_stop_daemon abort the process ("called while we have suspended
     * connections": a canary's request arriving during a stop did). */
    atomic_fetch_add(&s->inflight, 1);
    if (atomic_load(&s->stopping)) {
        atomic_fetch_sub(&s->inflight, 1);
        return send_error(s, conn, 503, API_TYPE_CORAL "ServiceUnavailableException",
                          "the node is stopping; retry on another node");
    }
    r->dispatched = 1;
    if (is_admin)
        api_admin(s->opt.api, target + sizeof admin - 1, r->body ? r->body : "", r->len,
                  on_reply, r);
    else
        api_call_hops(s->opt.api, target + sizeof prefix - 1, r->body ? r->body : "", r->len,
                      hops < 0 ? 0 : hops, on_reply, r);
    pthread_mutex_lock(&r->mu);
    if (r->answered) {
        int st = r->status;
        char *body = r->resp;
        r->resp = NULL;
        pthread_mutex_unlock(&r->mu);
        return send_body(s, conn, st, body, "application/x-amz-json-1.0");
    }
    r->suspended = 1;
    MHD_suspend_connection(conn);
    pthread_mutex_unlock(&r->mu);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct req *r = *con_cls;
    if (r) {
        /* A client that went away while its write was pending is completed
         * as soon as on_reply resumes the connection, possibly before
         * on_reply has released r->mu: take it once so that on_reply is done
         * with r before r is freed. */
        pthread_mutex_lock(&r->mu);
        pthread_mutex_unlock(&r->mu);
    }
    req_free(r);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = 0;
    log_warn("http: %s", msg);
}

int http_start(const struct http_options *opt, struct http_server **out, struct nerr *err)
{
    struct http_server *s = calloc(1, sizeof *s);
    if (!s)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    s->opt = *opt;
    unsigned char rnd[8] = {0};
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        memset(rnd, 0x5a, sizeof rnd);
    for (int i = 0; i < 8; i++)
        snprintf(s->id_prefix + 2 * i, 3, "%02X", rnd[i]);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, opt->host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)opt->port);
    } else if (inet_pton(AF_INET6, opt->host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)opt->port);
        flags |= MHD_USE_IPv6;
    } else {
        free(s);
        return nerr_set(err, NERR_INVALID, "API address '%s' is not a numeric IP address",
                        opt->host);
    }
    s->max_unverified = opt->max_unverified_bytes ? opt->max_unverified_bytes : 256u << 20;
    if (!opt->tls_cert_file != !opt->tls_key_file) {
        free(s);
        return nerr_set(err, NERR_INVALID, "https needs both a certificate and a key");
    }
    if (opt->tls_cert_file) {
        size_t len;
        int rc;
        if ((rc = fs_read_file(opt->tls_cert_file, 1u << 20, &s->tls_cert, &len, err)) ||
            (rc = fs_read_file(opt->tls_key_file, 1u << 20, &s->tls_key, &len, err))) {
            free(s->tls_cert);
            free(s);
            return rc;
        }
        flags |= MHD_USE_TLS;
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned threads = (unsigned)(opt->threads > 0 ? opt->threads : (ncpu > 0 ? ncpu : 2));
    /* MHD_OPTION_ARRAY lets the TLS options be there or not. */
    struct MHD_OptionItem tls_opts[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key},
        {MHD_OPTION_END, 0, NULL},
    };
    if (!s->tls_cert)
        tls_opts[0].option = MHD_OPTION_END;
    s->d = MHD_start_daemon(
        flags, (uint16_t)opt->port, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
        s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_CONNECTION_LIMIT, opt->max_connections ? opt->max_connections : 4096u,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, opt->max_per_ip ? opt->max_per_ip : 1024u,
        MHD_OPTION_CONNECTION_TIMEOUT, opt->idle_timeout_s ? opt->idle_timeout_s : 120u,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_MAX_HEADER_BYTES, MHD_OPTION_ARRAY,
        tls_opts, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    if (!s->d) {
        free(s->tls_cert);
        free(s->tls_key);
        free(s);
        return nerr_set(err, NERR_IO, "cannot listen on %s:%d (address in use%s?)", opt->host,
                        opt->port, opt->tls_cert_file ? ", or a bad certificate or key" : "");
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : opt->port;
    *out = s;
    return 0;
}

int http_port(const struct http_server *s)
{
    return s->port;
}

void http_stop(struct http_server *s, int drain_ms)
{
    if (!s)
        return;
    /* MHD_quiesce_daemon is not used: with a thread pool and epoll it races
     * with the worker threads and can abort the process ("Failed to remove
     * listen FD from epoll set", seen in tests). Requests that arrive while
     * the ones in flight drain are served or cut by MHD_stop_daemon. */
    /* Requests in flight are writes waiting for the applier; they finish by
     * themselves. Closing their connections earlier would drop answers.
     * Requests that come in from now on get 503 (see the dispatch). */
    atomic_store(&s->stopping, 1);
    for (int waited = 0; atomic_load(&s->inflight) > 0 && waited < drain_ms; waited += 10)
        usleep(10000);
    if (atomic_load(&s->inflight) > 0)
        log_warn("http: stopping with %ld requests unanswered", atomic_load(&s->inflight));
    MHD_stop_daemon(s->d);
    free(s->tls_cert);
    if (s->tls_key) /* not left behind in freed heap */
        explicit_bzero(s->tls_key, strlen(s->tls_key));
    free(s->tls_key);
    free(s);
}
