/*
 * fault/hostfault.c — the host-side fault kinds' common ground (contract in
 * hostfault.h).
 */
#include "fault/hostfault.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/strbuf.h"
#include "net/shquote.h"
#include "net/ssh.h"

int hf_check_call(const struct fault_env *env, const struct fault_call *c, const char *verb,
                  struct nerr *err)
{
    for (size_t i = 0; i < c->nhosts; i++) {
        int rc = hostcmd_check_target(&env->inv->hosts[c->hosts[i]], verb, err);
        if (rc)
            return rc;
    }
    return 0;
}

static int in_call(const struct fault_call *c, size_t h)
{
    for (size_t i = 0; i < c->nhosts; i++)
        if (c->hosts[i] == h)
            return 1;
    return 0;
}

/* Appends addr to b (", " between elements) unless it is there already. */
static void add_elem(struct strbuf *b, const char *addr)
{
    if (b->p) {
        /* Exact element match within the ", "-separated list. */
        size_t n = strlen(addr);
        for (const char *p = b->p; (p = strstr(p, addr)) != NULL; p += n)
            if ((p == b->p || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0'))
                return;
    }
    if (b->len)
        strbuf_str(b, ", ");
    strbuf_str(b, addr);
}

int hf_peers(const struct inventory *inv, const struct fault_call *c, char **v4, char **v6,
             size_t *n, struct nerr *err)
{
    struct strbuf b4 = {0}, b6 = {0};
    size_t np = 0;
    int rc = 0;
    *v4 = *v6 = NULL;
    *n = 0;
    for (size_t h = 0; h < inv->n_hosts && !rc; h++) {
        if (in_call(c, h))
            continue;
        const struct inv_host *ho = &inv->hosts[h];
        struct in_addr a4;
        struct in6_addr a6;
        np++;
        if (inet_pton(AF_INET, ho->address, &a4) == 1) {
            add_elem(&b4, ho->address);
            continue;
        }
        if (inet_pton(AF_INET6, ho->address, &a6) == 1) {
            add_elem(&b6, ho->address);
            continue;
        }
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        struct addrinfo *res = NULL;
        int g = getaddrinfo(ho->address, NULL, &hints, &res);
        if (g) {
            rc = nerr_set(err, NERR_INVALID, "peer host %s: cannot resolve '%s': %s", ho->name,
                          ho->address, gai_strerror(g));
            break;
        }
        for (struct addrinfo *a = res; a; a = a->ai_next) {
            char text[INET6_ADDRSTRLEN];
            if (a->ai_family == AF_INET &&
                inet_ntop(AF_INET, &((struct sockaddr_in *)a->ai_addr)->sin_addr, text,
                          sizeof text))
                add_elem(&b4, text);
            else if (a->ai_family == AF_INET6 &&
                     inet_ntop(AF_INET6, &((struct sockaddr_in6 *)a->ai_addr)->sin6_addr, text,
                               sizeof text))
                add_elem(&b6, text);
        }
        freeaddrinfo(res);
    }
    if (rc) {
        strbuf_free(&b4);
        strbuf_free(&b6);
        return rc;
    }
    if (strbuf_finish(&b4, v4) || strbuf_finish(&b6, v6)) {
        free(*v4);
        strbuf_free(&b6);
        *v4 = *v6 = NULL;
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    *n = np;
    return 0;
}

void hf_drop_action(unsigned loss_bp, char *buf, size_t cap)
{
    if (loss_bp >= 10000)
        snprintf(buf, cap, "drop");
    else
        snprintf(buf, cap, "numgen random mod 10000 < %u drop", loss_bp);
}

/* One chain: hook, and a rule per address family with peers. */
static void chain(struct strbuf *b, const char *name, const char *dir, const char *v4,
                  const char *v6, const char *action)
{
    char line[256];
    snprintf(line, sizeof line,
             "  chain %s {\n    type filter hook %s priority filter - 10; policy accept;\n", name,
             name);
    strbuf_str(b, line);
    if (*v4) {
        strbuf_str(b, "    ip ");
        strbuf_str(b, dir);
        strbuf_str(b, " { ");
        strbuf_str(b, v4);
        strbuf_str(b, " } ");
        strbuf_str(b, action);
        strbuf_ch(b, '\n');
    }
    if (*v6) {
        strbuf_str(b, "    ip6 ");
        strbuf_str(b, dir);
        strbuf_str(b, " { ");
        strbuf_str(b, v6);
        strbuf_str(b, " } ");
        strbuf_str(b, action);
        strbuf_ch(b, '\n');
    }
    strbuf_str(b, "  }\n");
}

int hf_nft_install(const char *table, const char *v4, const char *v6, int in, int out,
                   const char *action, char **cmd, struct nerr *err)
{
    struct strbuf b = {0};
    char *script = NULL, *q = NULL;
    *cmd = NULL;
    /* Declare, delete, declare: one transaction that replaces a leftover
     * table of the same name, or makes the first one. */
    strbuf_str(&b, "table inet ");
    strbuf_str(&b, table);
    strbuf_str(&b, "\ndelete table inet ");
    strbuf_str(&b, table);
    strbuf_str(&b, "\ntable inet ");
    strbuf_str(&b, table);
    strbuf_str(&b, " {\n");
    if (in)
        chain(&b, "input", "saddr", v4, v6, action);
    if (out)
        chain(&b, "output", "daddr", v4, v6, action);
    strbuf_str(&b, "}\n");
    if (strbuf_finish(&b, &script))
        return nerr_set(err, NERR_NOMEM, "out of memory");
    int rc = shquote_arg(script, &q, err);
    free(script);
    if (rc)
        return rc;
    if (asprintf(cmd,
                 HF_SUDO "command -v nft >/dev/null 2>&1 || { echo 'nft (nftables) is not "
                         "installed' >&2; exit 127; }; printf '%%s' %s | $S timeout 15 nft -f -",
                 q) < 0) {
        *cmd = NULL;
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
    }
    free(q);
    return rc;
}

int hf_nft_remove(const char *table, char **cmd, struct nerr *err)
{
    *cmd = NULL;
    if (asprintf(cmd,
                 HF_SUDO "command -v nft >/dev/null 2>&1 || exit 0; "
                         "if $S timeout 15 nft list table inet %s >/dev/null 2>&1; then "
                         "$S timeout 15 nft delete table inet %s; fi",
                 table, table) < 0) {
        *cmd = NULL;
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    return 0;
}

static void *job_main(void *arg)
{
    struct hf_job *j = arg;
    j->rc = hostcmd_run_ok(j->h, j->what, j->cmd, j->timeout_ms, &j->res, &j->err);
    return NULL;
}

int hf_run_jobs(struct hf_job *jobs, size_t n, struct nerr *err)
{
    pthread_t tids[HF_MAX_PARALLEL];
    for (size_t base = 0; base < n; base += HF_MAX_PARALLEL) {
        size_t m = n - base < HF_MAX_PARALLEL ? n - base : HF_MAX_PARALLEL;
        unsigned char started[HF_MAX_PARALLEL] = {0};
        for (size_t i = 0; i < m; i++) {
            struct hf_job *j = &jobs[base + i];
            nerr_clear(&j->err);
            if (pthread_create(&tids[i], NULL, job_main, j) == 0)
                started[i] = 1;
            else
                job_main(j); /* no thread to spare: run it here */
        }
        for (size_t i = 0; i < m; i++)
            if (started[i])
                pthread_join(tids[i], NULL);
    }
    for (size_t i = 0; i < n; i++)
        if (jobs[i].rc) {
            if (err)
                *err = jobs[i].err;
            return jobs[i].rc;
        }
    return 0;
}

void hf_jobs_free(struct hf_job *jobs, size_t n)
{
    for (size_t i = 0; jobs && i < n; i++) {
        free(jobs[i].cmd);
        hostcmd_result_free(&jobs[i].res);
    }
    free(jobs);
}

int hf_run_call(const struct fault_env *env, const struct fault_call *c, const char *what,
                hf_make_cmd make, void *arg, struct hf_job **jobs_out, struct nerr *err)
{
    struct hf_job *jobs = calloc(c->nhosts + 1, sizeof *jobs);
    int rc = 0;
    if (jobs_out)
        *jobs_out = NULL;
    if (!jobs)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    for (size_t i = 0; i < c->nhosts && !rc; i++) {
        jobs[i] = (struct hf_job){
            .h = &env->inv->hosts[c->hosts[i]], .what = what, .timeout_ms = HF_CMD_TIMEOUT_MS};
        rc = make(jobs[i].h, arg, &jobs[i].cmd, err);
    }
    if (!rc)
        rc = hf_run_jobs(jobs, c->nhosts, err);
    if (jobs_out)
        *jobs_out = jobs;
    else
        hf_jobs_free(jobs, c->nhosts);
    return rc;
}

void hf_sweep(const struct fault_env *env, const char *what, hf_make_cmd make, void *arg)
{
    const struct inventory *inv = env->inv;
    struct hf_job *jobs = calloc(inv->n_hosts + 1, sizeof *jobs);
    size_t n = 0;
    if (!jobs) {
        fault_notef(env, "%s: out of memory", what);
        return;
    }
    for (size_t h = 0; h < inv->n_hosts; h++) {
        struct nerr e = {0};
        const struct inv_host *ho = &inv->hosts[h];
        if (hostcmd_check_target(ho, what, &e)) {
            fault_notef(env, "%s skipped: %s", what, e.msg);
            continue;
        }
        char *cmd = NULL;
        if (make(ho, arg, &cmd, &e)) {
            fault_notef(env, "%s on %s: %s", what, ho->name, e.msg);
            continue;
        }
        jobs[n++] =
            (struct hf_job){.h = ho, .what = what, .cmd = cmd, .timeout_ms = HF_SWEEP_TIMEOUT_MS};
    }
    hf_run_jobs(jobs, n, NULL);
    for (size_t i = 0; i < n; i++)
        if (jobs[i].rc)
            fault_notef(env, "%s: %s", what, jobs[i].err.msg);
    hf_jobs_free(jobs, n);
}

int hf_local_tool(const char *name, char *out, size_t cap, struct nerr *err)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        char *sl = strrchr(self, '/');
        if (sl)
            *sl = 0;
        const char *cands[] = {"", "/../bin"};
        for (size_t i = 0; i < 2; i++)
            if ((size_t)snprintf(out, cap, "%s%s/%s", self, cands[i], name) < cap &&
                access(out, X_OK) == 0)
                return 0;
    }
    return nerr_set(err, NERR_NOTFOUND,
                    "no %s next to this program or in ../bin (build the target %s)", name, name);
}

int hf_upload(const struct inv_host *h, const char *local, const char *remote, unsigned mode,
              const char *what, struct nerr *err)
{
    struct ssh_host_opts o;
    struct ssh_session *s = NULL;
    inventory_ssh_opts(h, HOSTCMD_CONNECT_MS, &o);
    o.io_timeout_ms = HF_UPLOAD_MS;
    int rc = ssh_connect(&o, &s, err);
    if (!rc)
        rc = ssh_upload(s, local, remote, (mode_t)mode, err);
    ssh_close(s);
    if (rc) {
        char msg[NERR_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
        return nerr_set(err, rc, "host %s (%s): uploading %s: %s", h->name, h->address, what, msg);
    }
    return 0;
}
