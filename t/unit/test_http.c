/*
 * test_http.c — net/http.h and proto/ddb.h against a small HTTP server in
 * this process (loopback, one thread per connection): status and body,
 * keep-alive (two calls, one connection), the body cap, a timeout, a
 * refused connection and their failure names, N requests in parallel
 * taking one slow answer's time rather than N, the DynamoDB error typing
 * on raw bytes and after ddb_call, and ddb_ensure_table (a 500 retried,
 * ResourceInUseException taken as "exists", ResourceNotFoundException
 * waited out until ACTIVE).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/clock.h"
#include "net/http.h"
#include "proto/ddb.h"
#include "t/tap.h"

/* ---- the server ------------------------------------------------------------- */

static int listen_fd = -1, port;
static atomic_int stopping, connections, creates, describes;

static void reply(int fd, int status, const char *body)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d X\r\nContent-Type: application/x-amz-json-1.0\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     status, strlen(body));
    if (write(fd, head, (size_t)n) < 0 || write(fd, body, strlen(body)) < 0)
        return;
}

/* Answers one request; 0 to keep the connection, -1 to close it. */
static int answer(int fd, const char *req)
{
    const char *target = strstr(req, "X-Amz-Target: DynamoDB_20120810.");
    if (!strncmp(req, "GET /ok ", 8)) {
        reply(fd, 200, "hello");
    } else if (!strncmp(req, "GET /big ", 9)) {
        static char big[100001];
        memset(big, 'x', sizeof big - 1);
        reply(fd, 200, big);
    } else if (!strncmp(req, "GET /slow ", 10)) {
        usleep(6000 * 1000);
        reply(fd, 200, "late");
    } else if (!strncmp(req, "GET /wait1000 ", 14)) {
        usleep(1000 * 1000);
        reply(fd, 200, "waited");
    } else if (target && !strncmp(target + 32, "CreateTable", 11)) {
        /* First a 500 without a body type (retryable), then "exists". */
        if (atomic_fetch_add(&creates, 1) == 0)
            reply(fd, 500, "oops");
        else
            reply(fd, 400,
                  "{\"__type\":\"com.amazonaws.dynamodb.v20120810#"
                  "ResourceInUseException\",\"message\":\"exists\"}");
    } else if (target && !strncmp(target + 32, "DescribeTable", 13)) {
        if (atomic_fetch_add(&describes, 1) < 2)
            reply(fd, 400,
                  "{\"__type\":\"com.amazonaws.dynamodb.v20120810#"
                  "ResourceNotFoundException\"}");
        else
            reply(fd, 200, "{\"Table\":{\"TableName\":\"t\",\"TableStatus\":\"ACTIVE\"}}");
    } else if (target && !strncmp(target + 32, "GetItem", 7)) {
        reply(fd, 200, "not json");
    } else {
        reply(fd, 404, "{}");
    }
    return 0;
}

static void *conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[65536];
    size_t len = 0;
    while (!atomic_load(&stopping)) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (!end)
            continue;
        size_t hdr = (size_t)(end + 4 - buf), body = 0;
        const char *cl = strcasestr(buf, "Content-Length:");
        if (cl && cl < end)
            body = (size_t)atol(cl + 15);
        if (len < hdr + body)
            continue;
        if (answer(fd, buf))
            break;
        memmove(buf, buf + hdr + body, len - hdr - body);
        len -= hdr + body;
    }
    close(fd);
    return NULL;
}

static void *server_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&stopping)) {
        struct pollfd p = {.fd = listen_fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        atomic_fetch_add(&connections, 1);
        pthread_t t;
        if (pthread_create(&t, NULL, conn_main, (void *)(intptr_t)fd) == 0)
            pthread_detach(t);
        else
            close(fd);
    }
    return NULL;
}

static int server_start(pthread_t *t)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(listen_fd, (struct sockaddr *)&a, &alen) || listen(listen_fd, 16))
        return -1;
    port = ntohs(a.sin_port);
    return pthread_create(t, NULL, server_main, NULL);
}

/* A loopback port nothing listens on: bound, never listened to. */
static int dead_port(int *fd)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    if (*fd < 0 || bind(*fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(*fd, (struct sockaddr *)&a, &alen))
        return -1;
    return ntohs(a.sin_port);
}

/* ---- the tests -------------------------------------------------------------- */

int main(void)
{
    plan(34);
    pthread_t srv;
    if (http_global_init() || server_start(&srv)) {
        printf("Bail out! cannot start the test server\n");
        return 1;
    }
    char url[128];
    struct http_client *c;
    struct http_response rs = {0};
    struct nerr err;
    ok(http_client_new(&c, &err) == 0, "a client");

    snprintf(url, sizeof url, "http://127.0.0.1:%d/ok", port);
    struct http_request rq = {.method = "GET", .url = url, .timeout_ms = 2000};
    int rc = http_call(c, &rq, &rs, &err);
    ok(rc == 0 && rs.status == 200, "GET answers 200");
    is(rs.body, "hello", "with its body");
    rc = http_call(c, &rq, &rs, &err);
    ok(rc == 0 && rs.len == 5, "a second call on the same client");
    is_int(atomic_load(&connections), 1, "reuses the connection (keep-alive)");

    snprintf(url, sizeof url, "http://127.0.0.1:%d/big", port);
    rq.max_body = 1000;
    rc = http_call(c, &rq, &rs, &err);
    is_int(rc, NERR_LIMIT, "a body over max_body fails with NERR_LIMIT");
    is(http_fail_name(rs.fail), "too-large", "named too-large");
    ok(strstr(err.msg, url) != NULL, "the message names the URL (%s)", err.msg);
    rq.max_body = 0;
    rc = http_call(c, &rq, &rs, &err);
    ok(rc == 0 && rs.len == 100000, "the default cap takes it");

    snprintf(url, sizeof url, "http://127.0.0.1:%d/slow", port);
    rq.timeout_ms = 200;
    int64_t t0 = clock_mono_ms();
    rc = http_call(c, &rq, &rs, &err);
    is_int(rc, NERR_TIMEOUT, "a slow answer times out");
    is(http_fail_name(rs.fail), "timeout", "named timeout");
    /* Bounded well below the 6 s answer, with room for a busy machine. */
    cmp_ok(clock_mono_ms() - t0, "<", 4000, "at the timeout, not at the 6 s answer");

    int dfd;
    int dp = dead_port(&dfd);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", dp);
    rq.timeout_ms = 2000;
    rc = http_call(c, &rq, &rs, &err);
    is_int(rc, NERR_IO, "a refused connection is NERR_IO");
    is(http_fail_name(rs.fail), "connect", "named connect");
    ok(rs.error[0] != '\0', "with a reason (%s)", rs.error);

    /* Three answers of 1 s each, at once: about 1 s, not 3. */
    char urls[3][128];
    struct http_request all[3];
    struct http_response out[3] = {{0}};
    for (int i = 0; i < 3; i++) {
        snprintf(urls[i], sizeof urls[i], "http://127.0.0.1:%d/wait1000", port);
        all[i] = (struct http_request){.method = "GET", .url = urls[i], .timeout_ms = 5000};
    }
    t0 = clock_mono_ms();
    rc = http_call_all(all, 3, out, &err);
    int64_t took = clock_mono_ms() - t0;
    ok(rc == 0 && out[0].status == 200 && out[1].status == 200 && out[2].status == 200,
       "http_call_all: every answer");
    is(out[2].body, "waited", "with its body");
    cmp_ok(took, "<", 2500, "in parallel (%lld ms for three 1 s answers)", (long long)took);
    for (int i = 0; i < 3; i++)
        http_response_free(&out[i]);

    http_response_free(&rs);
    http_client_free(c);

    /* ---- DynamoDB error typing ---- */
    char t[DDB_ERROR_TYPE_MAX];
    const char *b1 = "{\"__type\":\"com.amazonaws.dynamodb.v20120810#"
                     "ConditionalCheckFailedException\",\"message\":\"no\"}";
    is(ddb_error_type(400, b1, strlen(b1), t, sizeof t), "ConditionalCheckFailedException",
       "the name after '#'");
    const char *b2 = "{\"message\":\"x\",\"__type\":\"ValidationException\"}";
    is(ddb_error_type(400, b2, strlen(b2), t, sizeof t), "ValidationException",
       "a name without '#'");
    is(ddb_error_type(503, "busy", 4, t, sizeof t), "http-503", "no __type: http-STATUS");
    ok(ddb_error_type(200, "{}", 2, t, sizeof t) == NULL, "a success has no error type");
    is(ddb_error_type(400, b1, 20, t, sizeof t), "http-400", "a cut body: http-STATUS");

    struct ddb_client *dc, *dead;
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    struct ddb_client_options o = {.endpoint = url, .timeout_ms = 2000};
    ok(ddb_client_new(&o, &dc, &err) == 0, "a DynamoDB client");
    int status = 0;
    json_t *resp = NULL, *req = json_pack("{s:s}", "TableName", "t");
    rc = ddb_call(dc, "DescribeTable", req, &status, &resp, &err);
    ok(rc == 0 && status == 400, "an error answer is not a transport failure");
    is(ddb_client_error_type(dc), "ResourceNotFoundException", "and is typed");
    json_decref(resp);
    rc = ddb_call(dc, "GetItem", req, &status, &resp, &err);
    is_int(rc, NERR_CORRUPT, "a body that is not JSON is NERR_CORRUPT");
    is(ddb_client_error_type(dc), "bad-response", "typed bad-response");
    snprintf(urls[0], sizeof urls[0], "http://127.0.0.1:%d", dp);
    struct ddb_client_options od = {.endpoint = urls[0], .timeout_ms = 1000};
    ddb_client_new(&od, &dead, &err);
    rc = ddb_call(dead, "GetItem", req, &status, &resp, &err);
    is_int(rc, NERR_IO, "no server: NERR_IO");
    is(ddb_client_error_type(dead), "connect", "typed connect");
    json_decref(req);

    /* ensure: CreateTable 500 then ResourceInUse; DescribeTable twice not
     * found, then ACTIVE. */
    atomic_store(&describes, 0);
    json_t *create = json_pack("{s:s}", "TableName", "t");
    struct ddb_client *two[2] = {dc, dc};
    struct ddb_ensure_opts eo = {.create_tries = 3, .active_wait_ms = 5000};
    rc = ddb_ensure_table(two, 2, create, &eo, &err);
    ok(rc == 0, "ddb_ensure_table: retried the 500, took ResourceInUse, waited for ACTIVE%s%s",
       rc ? ": " : "", rc ? err.msg : "");
    is_int(atomic_load(&creates), 2, "two CreateTable calls");
    cmp_ok(atomic_load(&describes), ">=", 4, "DescribeTable until ACTIVE, on every client");
    eo.create_tries = 2;
    rc = ddb_ensure_table(&dead, 1, create, &eo, &err);
    is_int(rc, NERR_IO, "an endpoint that never answers fails after the tries (%s)", err.msg);
    json_decref(create);
    ddb_client_free(dc);
    ddb_client_free(dead);
    close(dfd);

    atomic_store(&stopping, 1);
    pthread_join(srv, NULL);
    close(listen_fd);
    return tap_failed ? 1 : 0;
}
