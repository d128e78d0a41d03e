/*
 * test_load_stop.c — load_opts_init gives what load_opts_parse gives with no
 * option, and load_stop ends a run early: a run with a 30 s --duration,
 * stopped from another thread after 300 ms, returns within seconds, counts
 * no requests it never had to send, and still runs its final read phase.
 *
 * The endpoint is a minimal HTTP/1.1 keep-alive server on a thread of this
 * process that answers every request 200 "{}" (PutItem succeeded, GetItem
 * found nothing), so the test needs no ninesd and is not slowed by one.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "chaos/load.h"
#include "t/tap.h"

static atomic_int srv_quit;
static atomic_long srv_requests, srv_final_reads;

/* Serves one connection until the peer closes it or srv_quit is set. */
static void *serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[65536];
    size_t have = 0;
    while (!atomic_load(&srv_quit)) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = '\0';
        for (;;) {
            char *eoh = strstr(buf, "\r\n\r\n");
            if (!eoh)
                break;
            size_t clen = 0;
            const char *cl = strcasestr(buf, "\r\nContent-Length:");
            if (cl && cl < eoh)
                clen = strtoul(cl + 17, NULL, 10);
            size_t total = (size_t)(eoh + 4 - buf) + clen;
            if (have < total)
                break;
            atomic_fetch_add(&srv_requests, 1);
            if (memmem(eoh + 4, clen, "\"ConsistentRead\":true", 21))
                atomic_fetch_add(&srv_final_reads, 1);
            static const char resp[] = "HTTP/1.1 200 OK\r\n"
                                       "Content-Type: application/x-amz-json-1.0\r\n"
                                       "Content-Length: 2\r\n\r\n{}";
            if (write(fd, resp, sizeof resp - 1) != (ssize_t)(sizeof resp - 1))
                goto done;
            memmove(buf, buf + total, have - total);
            have -= total;
            buf[have] = '\0';
        }
        if (have == sizeof buf - 1)
            break; /* a request larger than this server takes */
    }
done:
    close(fd);
    return NULL;
}

static void *serve(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    while (!atomic_load(&srv_quit)) {
        struct pollfd p = {lfd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_t t;
        if (pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)fd))
            close(fd);
        else
            pthread_detach(t);
    }
    return NULL;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct stopper {
    struct load_stop *stop;
    unsigned after_ms;
};

static void *stop_later(void *arg)
{
    struct stopper *s = arg;
    struct timespec ts = {0, (long)s->after_ms * 1000000L};
    nanosleep(&ts, NULL);
    load_stop(s->stop);
    return NULL;
}

static uint64_t errors_of(const struct load_stats *st, const char *type)
{
    uint64_t n = 0;
    for (int op = 0; op < LOAD_NOPS; op++)
        for (size_t i = 0; i < st->op[op].nerr; i++)
            if (!strcmp(st->op[op].err[i].type, type))
                n += st->op[op].err[i].n;
    return n;
}

/* One run of opts o stopped after_ms after it starts (0: before it starts);
 * returns load_run's code and the run's wall time. */
static int run_stopped(struct load_opts *o, struct load_stats *st, unsigned after_ms,
                       uint64_t *took_ms)
{
    struct load_stop stop = {0};
    struct load_hooks hooks = {NULL, NULL, &stop};
    struct stopper sp = {&stop, after_ms};
    pthread_t t;
    struct nerr e;
    nerr_clear(&e);
    if (!after_ms)
        load_stop(&stop);
    else if (pthread_create(&t, NULL, stop_later, &sp))
        return -1;
    uint64_t t0 = now_ms();
    int rc = load_run(o, st, &hooks, &e);
    *took_ms = now_ms() - t0;
    if (after_ms)
        pthread_join(t, NULL);
    if (rc)
        diag("load_run: %s", e.msg);
    return rc;
}

int main(void)
{
    plan(19);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    /* ---- load_opts_init is load_opts_parse without options ---- */
    static const char *const env[][2] = {
        {NULL, NULL}, {"AKIDEXAMPLE", "secret"}, {"AKIDEXAMPLE", NULL}};
    for (size_t i = 0; i < 3; i++) {
        unsetenv("AWS_REGION");
        unsetenv("AWS_DEFAULT_REGION");
        env[i][0] ? setenv("AWS_ACCESS_KEY_ID", env[i][0], 1) : unsetenv("AWS_ACCESS_KEY_ID");
        env[i][1] ? setenv("AWS_SECRET_ACCESS_KEY", env[i][1], 1)
                  : unsetenv("AWS_SECRET_ACCESS_KEY");
        if (i == 1)
            setenv("AWS_DEFAULT_REGION", "eu-west-3", 1);
        struct load_opts a, b;
        struct nerr e;
        char *argv[] = {"load", NULL};
        load_opts_init(&a);
        int rc = load_opts_parse(1, argv, &b, &e);
        if (i < 2)
            ok(!rc && !memcmp(&a, &b, sizeof a), "environment %zu: init == parse of no option", i);
        else
            ok(rc == NERR_INVALID && !a.akid[0] && !a.secret[0],
               "a half credential pair: parse refuses it, init leaves signing off");
        if (!rc)
            load_opts_free(&b);
    }
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_DEFAULT_REGION");

    /* ---- the endpoint ---- */
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 64) ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl)) {
        diag("listen: %s", strerror(errno));
        return 1;
    }
    pthread_t srv;
    pthread_create(&srv, NULL, serve, (void *)(intptr_t)lfd);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", ntohs(sa.sin_port));
    char hist[] = "/tmp/nines-load-stop-XXXXXX";
    int hfd = mkstemp(hist);
    if (hfd >= 0)
        close(hfd);

    struct load_opts o;
    load_opts_init(&o);
    o.endpoints = malloc(sizeof *o.endpoints);
    o.endpoints[0] = strdup(url);
    o.nendpoints = 1;
    o.concurrency = 4;
    o.duration_s = 30;
    o.keys = 1000;
    o.timeout_ms = 2000;
    snprintf(o.history, sizeof o.history, "%s", hist);
    struct load_stats *st = calloc(1, sizeof *st);
    uint64_t took;

    /* ---- closed loop ---- */
    int rc = run_stopped(&o, st, 300, &took);
    ok(rc == 0, "closed loop: load_run succeeds");
    cmp_ok(took, "<", 10000, "closed loop: a 30 s run stopped after 300 ms returns early (%llu ms)",
           (unsigned long long)took);
    cmp_ok(took, ">=", 300, "closed loop: and not before the stop");
    ok(st->op[LOAD_PUT].ok > 0, "closed loop: requests were served before the stop (%llu)",
       (unsigned long long)st->op[LOAD_PUT].ok);
    ok(st->measured_s > 0.2 && st->measured_s < 10,
       "closed loop: the measured period ends at the stop (%.3f s)", st->measured_s);
    ok(st->final_keys > 0 && st->final_ok == st->final_keys,
       "closed loop: the final phase read every written key (%llu of %llu)",
       (unsigned long long)st->final_ok, (unsigned long long)st->final_keys);
    cmp_ok(atomic_load(&srv_final_reads), "==", (long)st->final_keys,
           "closed loop: the endpoint saw those consistent reads");

    /* ---- open loop: what was never due is not "unsent" ---- */
    o.rate = 200;
    atomic_store(&srv_requests, 0);
    rc = run_stopped(&o, st, 300, &took);
    ok(rc == 0, "open loop: load_run succeeds");
    cmp_ok(took, "<", 10000, "open loop: a 30 s run stopped after 300 ms returns early (%llu ms)",
           (unsigned long long)took);
    uint64_t unsent = errors_of(st, "unsent");
    cmp_ok(unsent, "<", 100, "open loop: only requests due before the stop can be unsent (%llu)",
           (unsigned long long)unsent);
    ok(st->op[LOAD_PUT].ok >= 20 && st->op[LOAD_PUT].ok <= 200,
       "open loop: about 300 ms of 200/s were served (%llu)",
       (unsigned long long)st->op[LOAD_PUT].ok);
    ok(st->final_keys > 0 && st->final_ok == st->final_keys, "open loop: the final phase ran");

    /* ---- stopped before it starts ---- */
    o.rate = 0;
    atomic_store(&srv_requests, 0);
    atomic_store(&srv_final_reads, 0);
    rc = run_stopped(&o, st, 0, &took);
    ok(rc == 0, "stopped before the start: load_run succeeds");
    cmp_ok(took, "<", 5000, "stopped before the start: returns at once (%llu ms)",
           (unsigned long long)took);
    ok(st->op[LOAD_PUT].ok == 0 && st->op[LOAD_PUT].errors == 0 && st->final_keys == 0,
       "stopped before the start: nothing issued, nothing to read back");
    cmp_ok(atomic_load(&srv_requests), "==", 0,
           "stopped before the start: the endpoint saw nothing");

    free(st);
    load_opts_free(&o);
    unlink(hist);
    atomic_store(&srv_quit, 1);
    pthread_join(srv, NULL);
    close(lfd);
    curl_global_cleanup();
    return done_testing();
}
