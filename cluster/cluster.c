/*
 * cluster.c — local cluster processes and the merged status view; the
 * contracts are in cluster.h.
 */
#include "cluster/cluster.h"
#include "proto/ddb.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/fsutil.h"
#include "lib/proc.h"
#include "net/http.h"
#include "proto/sigv4.h"
#include "proto/admin.h"

/* A status report bigger than this is refused: thousands of groups fit in a
 * few MiB. */
#define STATUS_MAX_BYTES (64u << 20)

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ================= locality ================= */

int cluster_host_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (!host)
        return 0;
    if (!strcasecmp(host, "localhost"))
        return 1; /* RFC 6761: always the loopback */
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6))
            return 1;
        return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
    }
    return 0;
}

int cluster_check_local(const struct cluster_conf *c, struct nerr *err)
{
    for (size_t i = 0; i < c->nnodes; i++) {
        const struct cluster_node *n = &c->nodes[i];
        const char *what = NULL, *host = NULL;
        if (!cluster_host_is_loopback(n->api_host))
            what = "api", host = n->api;
        else if (!cluster_host_is_loopback(n->peer_host))
            what = "peer", host = n->peer;
        if (what)
            return nerr_set(err, NERR_INVALID,
                            "%s:%d:%d: node %s: %s address %s is not a loopback address "
                            "(127.0.0.0/8, ::1 or localhost); `nines cluster up` starts local "
                            "nodes only",
                            c->path, n->line, n->col, n->id, what, host);
    }
    return 0;
}

/* ================= processes ================= */

static int node_file(const struct cluster_node *n, const char *name, char *buf, size_t cap,
                     struct nerr *err)
{
    if ((size_t)snprintf(buf, cap, "%s/%s", n->data, name) >= cap)
        return nerr_set(err, NERR_INVALID, "node %s: data path too long", n->id);
    return 0;
}

int cluster_pidfile_path(const struct cluster_node *n, char *buf, size_t cap, struct nerr *err)
{
    return node_file(n, "ninesd.pid", buf, cap, err);
}

int cluster_logfile_path(const struct cluster_node *n, char *buf, size_t cap, struct nerr *err)
{
    return node_file(n, "ninesd.log", buf, cap, err);
}

int cluster_pid_is_node(pid_t pid, const char *node_id)
{
    char path[64], buf[8192];
    if (pid <= 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len == sizeof buf - 1)
            break;
    }
    close(fd);
    if (!len)
        return 0; /* a zombie or a kernel thread: not a running ninesd */
    buf[len] = '\0';
    /* argv[0]'s last path component must be exactly "ninesd". */
    const char *argv0 = buf, *base = strrchr(argv0, '/');
    base = base ? base + 1 : argv0;
    if (strcmp(base, "ninesd"))
        return 0;
    size_t idlen = strlen(node_id);
    for (const char *a = buf + strlen(buf) + 1; a < buf + len; a += strlen(a) + 1) {
        if (!strcmp(a, "--node")) {
            const char *v = a + strlen(a) + 1;
            return v < buf + len && !strcmp(v, node_id);
        }
        if (!strncmp(a, "--node=", 7) && strlen(a + 7) == idlen && !strcmp(a + 7, node_id))
            return 1;
    }
    return 0;
}

int cluster_node_pid(const struct cluster_node *n, pid_t *pid, int *stale, struct nerr *err)
{
    char path[4200], *text = NULL;
    size_t len;
    int rc;
    *pid = 0;
    *stale = 0;
    if ((rc = cluster_pidfile_path(n, path, sizeof path, err)))
        return rc;
    struct nerr e2 = {0};
    if (fs_read_file(path, 64, &text, &len, &e2)) {
        if (access(path, F_OK) != 0 && errno == ENOENT)
            return 0;
        /* Anything else unreadable (permissions, a directory, too long) is
         * not a pid file we wrote; call it stale rather than guess. */
        if (e2.code == NERR_IO && access(path, R_OK) != 0)
            return nerr_sys(err, errno, "%s", path);
        *stale = 1;
        return 0;
    }
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    while (*end == '\n' || *end == ' ')
        end++;
    if (!errno && end != text && !*end && v > 0 && v < INT32_MAX &&
        cluster_pid_is_node((pid_t)v, n->id))
        *pid = (pid_t)v;
    else
        *stale = 1;
    free(text);
    return 0;
}

int cluster_child_exited(pid_t pid, int *status)
{
    int st;
    if (proc_wait(pid, 0, &st, NULL))
        return 0;
    *status = proc_status_code(st);
    return 1;
}

int cluster_node_start(const char *ninesd, const char *cluster_path, const struct cluster_node *n,
                       pid_t *pid, struct nerr *err)
{
    char pidfile[4200], logfile[4200];
    pid_t running;
    int stale, rc;
    *pid = 0;
    if ((rc = cluster_pidfile_path(n, pidfile, sizeof pidfile, err)) ||
        (rc = cluster_logfile_path(n, logfile, sizeof logfile, err)))
        return rc;
    if ((rc = cluster_node_pid(n, &running, &stale, err)))
        return rc;
    if (running)
        return nerr_set(err, NERR_EXISTS, "node %s is already running (pid %d, %s)", n->id,
                        (int)running, pidfile);
    if ((rc = fs_mkdir_p(n->data, err)))
        return rc;
    int logfd = open(logfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0)
        return nerr_sys(err, errno, "%s", logfile);
    /* A bare name means the file here, as execv would take it, not a PATH
     * lookup. */
    char exe[4200];
    snprintf(exe, sizeof exe, "%s%s", strchr(ninesd, '/') ? "" : "./", ninesd);
    char *argv[] = {exe, "--cluster", (char *)cluster_path, "--node", n->id, NULL};
    /* Its own session: a terminal's hang-up or ^C aimed at `nines` must not
     * reach the node. lib/proc passes it nothing else of ours (curl
     * sockets, files). */
    struct proc_spec ps = {.argv = argv,
                           .in = {PROC_IO_NULL, -1},
                           .out = {PROC_IO_FD, logfd},
                           .err = {PROC_IO_STDOUT, -1},
                           .flags = PROC_NEW_SESSION};
    pid_t child;
    rc = proc_spawn(&ps, &child, err);
    close(logfd);
    if (rc)
        return rc;
    *pid = child;
    char text[32];
    int len = snprintf(text, sizeof text, "%d\n", (int)child);
    if ((rc = fs_write_file_atomic(pidfile, text, (size_t)len, err))) {
        /* Without a pid file nobody could stop it later: stop it now. */
        proc_kill(child, NULL, NULL);
        *pid = 0;
        return rc;
    }
    return 0;
}

int cluster_stop(const struct cluster_conf *c, long timeout_ms, FILE *out, struct nerr *err)
{
    pid_t *pids = calloc(c->nnodes ? c->nnodes : 1, sizeof *pids);
    int rc = 0;
    char path[4200];
    if (!pids)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    for (size_t i = 0; i < c->nnodes; i++) {
        const struct cluster_node *n = &c->nodes[i];
        int stale;
        if ((rc = cluster_node_pid(n, &pids[i], &stale, err)))
            goto fail;
        if (pids[i]) {
            kill(pids[i], SIGTERM);
        } else if (stale) {
            if ((rc = cluster_pidfile_path(n, path, sizeof path, err)))
                goto fail;
            unlink(path);
            if (out)
                fprintf(out, "%s: not running (stale pid file %s removed, nothing signalled)\n",
                        n->id, path);
        } else if (out) {
            fprintf(out, "%s: not running\n", n->id);
        }
    }
    /* SIGTERM went to all at once, so the nodes shut down in parallel; then
     * SIGKILL for whoever outlives the timeout, re-checked first so a pid
     * that was reused meanwhile is never hit. */
    for (int phase = 0; phase < 2; phase++) {
        uint64_t deadline = (uint64_t)clock_mono_ms() + (uint64_t)(phase == 0 ? timeout_ms : 5000);
        for (;;) {
            int left = 0;
            for (size_t i = 0; i < c->nnodes; i++)
                if (pids[i] && cluster_pid_is_node(pids[i], c->nodes[i].id))
                    left++;
            if (!left || (uint64_t)clock_mono_ms() >= deadline)
                break;
            sleep_ms(20);
        }
        if (phase == 0)
            for (size_t i = 0; i < c->nnodes; i++)
                if (pids[i] && cluster_pid_is_node(pids[i], c->nodes[i].id)) {
                    if (out)
                        fprintf(out, "%s: still running %ld ms after SIGTERM, sending SIGKILL\n",
                                c->nodes[i].id, timeout_ms);
                    kill(pids[i], SIGKILL);
                }
    }
    for (size_t i = 0; i < c->nnodes; i++) {
        const struct cluster_node *n = &c->nodes[i];
        if (!pids[i])
            continue;
        if (cluster_pid_is_node(pids[i], n->id)) {
            rc = nerr_set(err, NERR_TIMEOUT, "node %s (pid %d) survived SIGKILL", n->id,
                          (int)pids[i]);
            continue;
        }
        if (!cluster_pidfile_path(n, path, sizeof path, NULL))
            unlink(path);
        if (out)
            fprintf(out, "%s: stopped (pid %d)\n", n->id, (int)pids[i]);
    }
fail:
    free(pids);
    return rc;
}

/* ================= status: fetch ================= */

/* The header lines of the status call, signed when signer is set. h holds
 * the lines' text; lines gets pointers into it, NULL-terminated. */
struct status_headers {
    char date[64], auth[700], host[300];
    const char *lines[8];
};

static int status_headers(const struct cluster_node *n, struct sigv4_signer *signer,
                          struct status_headers *h)
{
    static const char body[] = "{}";
    size_t k = 0;
    h->lines[k++] = "Content-Type: application/x-amz-json-1.0";
    h->lines[k++] = "X-Amz-Target: " CLUSTER_STATUS_TARGET;
    h->lines[k++] = "Expect:";
    h->lines[k++] = "Accept:";
    if (signer) {
        /* A node whose cluster has credentials refuses an unsigned
         * status call (docs/security.md). */
        struct sigv4_header hs[3] = {{"Host", n->api},
                                     {"Content-Type", "application/x-amz-json-1.0"},
                                     {"X-Amz-Target", CLUSTER_STATUS_TARGET}};
        struct sigv4_request sr = {"POST", "/", "", hs, 3, body, sizeof body - 1};
        char date[17], auth[512];
        if (sigv4_signer_sign(signer, &sr, time(NULL), date, auth, sizeof auth))
            return -1;
        snprintf(h->host, sizeof h->host, "Host: %s", n->api);
        snprintf(h->date, sizeof h->date, "X-Amz-Date: %s", date);
        snprintf(h->auth, sizeof h->auth, "Authorization: %s", auth);
        h->lines[k++] = h->host;
        h->lines[k++] = h->date;
        h->lines[k++] = h->auth;
    }
    h->lines[k] = NULL;
    return 0;
}

/* Fills r from a finished call. */
static void fetch_result(const struct cluster_node *n, const struct http_response *rs,
                         struct cluster_report *r)
{
    long http = rs->status;
    if (rs->fail != HTTP_FAIL_NONE) {
        snprintf(r->error, sizeof r->error, "%s: %s", n->api,
                 rs->fail == HTTP_FAIL_TOO_BIG ? "report too large" : rs->error);
        return;
    }
    r->answered = 1;
    const char *body = rs->body ? rs->body : "";
    json_error_t je;
    json_t *j = json_loadb(body, rs->len, 0, &je);
    if (http == 200 && json_is_object(j)) {
        r->status = j;
        return;
    }
    const char *type = json_string_value(json_object_get(j, "__type"));
    if (type && strstr(type, "UnknownOperationException")) {
        r->unsupported = 1;
        snprintf(r->error, sizeof r->error,
                 "%s does not implement " CLUSTER_STATUS_TARGET
                 " (HTTP %ld UnknownOperationException): this ninesd predates the status call",
                 n->api, http);
    } else if (http == 200) {
        snprintf(r->error, sizeof r->error, "%s: HTTP 200 with a body that is not a JSON object",
                 n->api);
    } else {
        /* Keep the message on one line. */
        char snippet[160];
        size_t k = 0;
        for (size_t i = 0; i < rs->len && k < sizeof snippet - 1; i++)
            snippet[k++] = isprint((unsigned char)body[i]) ? body[i] : ' ';
        snippet[k] = '\0';
        snprintf(r->error, sizeof r->error, "%s: HTTP %ld: %s", n->api, http, snippet);
    }
    json_decref(j);
}

int cluster_status_fetch(const struct cluster_conf *c, long timeout_ms, struct cluster_report *out,
                         struct nerr *err)
{
    static const char body[] = "{}";
    size_t n = c->nnodes;
    struct http_request *rq = calloc(n ? n : 1, sizeof *rq);
    struct http_response *rs = calloc(n ? n : 1, sizeof *rs);
    struct status_headers *hs = calloc(n ? n : 1, sizeof *hs);
    char(*urls)[300] = calloc(n ? n : 1, sizeof *urls);
    struct sigv4_signer signer, *sp = NULL;
    int rc = 0;
    memset(out, 0, n * sizeof *out);
    if (!rq || !rs || !hs || !urls) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto fail;
    }
    if (c->auth == CLUSTER_AUTH_SIGV4) {
        if (sigv4_signer_init(&signer, c->access_key_id, c->secret_access_key, c->region,
                              "dynamodb")) {
            rc = nerr_set(err, NERR_INVALID, "%s: the credentials cannot be used for signing",
                          c->path);
            goto fail;
        }
        sp = &signer;
    }
    for (size_t i = 0; i < n; i++) {
        if (status_headers(&c->nodes[i], sp, &hs[i])) {
            rc = nerr_set(err, NERR_IO, "setting up the status call to node %s", c->nodes[i].id);
            goto fail;
        }
        cluster_conf_api_url(c, c->nodes[i].api, urls[i], sizeof urls[i]);
        rq[i] = (struct http_request){.method = "POST",
                                      .url = urls[i],
                                      .headers = hs[i].lines,
                                      .body = body,
                                      .body_len = sizeof body - 1,
                                      .timeout_ms = timeout_ms,
                                      .connect_timeout_ms = timeout_ms,
                                      .max_body = STATUS_MAX_BYTES,
                                      .no_proxy = 1,
                                      .ca_file = c->tls_api ? c->tls_ca : NULL};
    }
    /* All nodes at once: a status view must not take n timeouts when
     * several nodes are down. */
    if ((rc = http_call_all(rq, n, rs, err)))
        goto fail;
    for (size_t i = 0; i < n; i++)
        fetch_result(&c->nodes[i], &rs[i], &out[i]);
fail:
    for (size_t i = 0; rs && i < n; i++)
        http_response_free(&rs[i]);
    free(rq);
    free(rs);
    free(hs);
    free(urls);
    if (rc)
        cluster_reports_free(out, n);
    return rc;
}

void cluster_reports_free(struct cluster_report *r, size_t n)
{
    for (size_t i = 0; r && i < n; i++) {
        json_decref(r[i].status);
        r[i].status = NULL;
    }
}

/* ================= status: merge ================= */

/* One group as seen by all nodes. */
struct mgroup {
    const char *name;
    const struct admin_group **rep; /* per node (file order): its report of the group, or NULL */
    int auth;                       /* node whose report is authoritative (members, table) */
    int leader;                     /* node that reports leader with the highest term, or -1 */
    json_int_t term;                /* highest term reported */
};

/* Reads the merged view (cluster.h), not a node's report. */
static json_int_t jint(const json_t *o, const char *k, json_int_t dflt)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? json_integer_value(v) : dflt;
}

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static json_int_t term_of(const struct admin_group *g)
{
    return g->term == ADMIN_ABSENT ? 0 : g->term;
}

/* Whether group report g is more authoritative than the report than. */
static int better(const struct admin_group *g, const struct admin_group *than)
{
    int lg = admin_group_role_is(g, "leader"), lt = admin_group_role_is(than, "leader");
    if (lg != lt)
        return lg > lt;
    return term_of(g) > term_of(than);
}

/* Decodes node n's report into *st (proto/admin.h). Returns why it cannot be
 * used, or NULL when it can. */
static const char *report_problem(const struct cluster_conf *c, const struct cluster_node *n,
                                  const json_t *report, struct admin_status *st, char *buf,
                                  size_t cap)
{
    struct nerr e = {0};
    if (admin_status_from_json(report, st, &e)) {
        snprintf(buf, cap, "%s: %s", n->api, e.msg);
        return buf;
    }
    /* A node listening at another node's address (a copied file, a port
     * clash) would otherwise be counted twice under the wrong name. */
    if (strcmp(st->node, n->id)) {
        snprintf(buf, cap, "%s answered as node '%.64s', not %s", n->api, st->node, n->id);
        return buf;
    }
    if (st->cluster && strcmp(st->cluster, c->name)) {
        snprintf(buf, cap, "%s belongs to cluster '%.64s', not %s", n->api, st->cluster, c->name);
        return buf;
    }
    return NULL;
}

/* Orders groups: meta first, then by table name, partition, group name. */
static int partition_cmp(const void *pa, const void *pb)
{
    const json_t *a = *(json_t *const *)pa, *b = *(json_t *const *)pb;
    const char *ga = jstr(a, "group"), *gb = jstr(b, "group");
    int ma = !strcmp(ga, "meta"), mb = !strcmp(gb, "meta");
    if (ma != mb)
        return mb - ma;
    const char *ta = jstr(a, "table"), *tb = jstr(b, "table");
    int c = strcmp(ta ? ta : "", tb ? tb : "");
    if (c)
        return c;
    json_int_t pa_ = jint(a, "partition", -1), pb_ = jint(b, "partition", -1);
    if (pa_ != pb_)
        return pa_ < pb_ ? -1 : 1;
    return strcmp(ga, gb);
}

static json_t *int_or_null(int64_t v)
{
    return v != ADMIN_ABSENT ? json_integer((json_int_t)v) : json_null();
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static int node_index(const struct cluster_conf *c, const char *id)
{
    for (size_t i = 0; id && i < c->nnodes; i++)
        if (!strcmp(c->nodes[i].id, id))
            return (int)i;
    return -1;
}

/* The merged entry of one member. */
static json_t *member_json(const struct cluster_conf *c, const struct cluster_report *reports,
                           const int *usable, const struct mgroup *g, const char *id)
{
    int ni = node_index(c, id);
    const struct admin_group *r = ni >= 0 ? g->rep[ni] : NULL;
    const struct admin_group *lr = g->leader >= 0 ? g->rep[g->leader] : NULL;
    json_t *m = json_object();
    if (!m)
        return NULL;
    const char *role = r                       ? (r->role ? r->role : "?")
                       : ni < 0                ? "unknown"
                       : !reports[ni].answered ? "down"
                       : !usable[ni]           ? "unreported"
                                               : "missing";
    json_object_set_new(m, "node", json_string(id));
    json_object_set_new(m, "az", str_or_null(ni >= 0 ? c->nodes[ni].az : NULL));
    json_object_set_new(m, "role", json_string(role));
    json_object_set_new(m, "commit", int_or_null(r ? r->commit : ADMIN_ABSENT));
    json_object_set_new(m, "applied", int_or_null(r ? r->applied : ADMIN_ABSENT));
    if (r && lr && r->applied != ADMIN_ABSENT && lr->last_index != ADMIN_ABSENT) {
        json_int_t lag = lr->last_index - r->applied;
        json_object_set_new(m, "lag", json_integer(lag < 0 ? 0 : lag));
    } else {
        json_object_set_new(m, "lag", json_null());
    }
    return m;
}

static json_t *partition_json(const struct cluster_conf *c, const struct cluster_report *reports,
                              const int *usable, const struct mgroup *g)
{
    const struct admin_group *a = g->rep[g->auth];
    const struct admin_group *lr = g->leader >= 0 ? g->rep[g->leader] : NULL;
    json_t *p = json_object(), *members = json_array();
    if (!p || !members)
        goto fail;
    json_object_set_new(p, "table", str_or_null(a->table));
    json_object_set_new(p, "table_id", str_or_null(a->table_id));
    json_object_set_new(p, "partition", int_or_null(a->partition));
    json_object_set_new(p, "group", json_string(g->name));
    json_object_set_new(p, "leader", str_or_null(g->leader >= 0 ? c->nodes[g->leader].id : NULL));
    json_object_set_new(p, "term", json_integer(g->term));
    json_object_set_new(p, "lease",
                        lr && lr->lease != ADMIN_ABSENT ? json_boolean(lr->lease) : json_null());
    /* The authoritative member list first, then any node that reports the
     * group without being in it (a removed member that has not heard). */
    json_t *seen = json_object();
    if (!seen)
        goto fail;
    for (size_t k = 0; k < a->nmembers; k++) {
        const char *id = a->members[k];
        if (json_object_get(seen, id))
            continue;
        json_object_set_new(seen, id, json_true());
        json_t *m = member_json(c, reports, usable, g, id);
        if (!m || json_array_append_new(members, m)) {
            json_decref(seen);
            goto fail;
        }
    }
    for (size_t i = 0; i < c->nnodes; i++) {
        if (!g->rep[i] || json_object_get(seen, c->nodes[i].id))
            continue;
        json_t *m = member_json(c, reports, usable, g, c->nodes[i].id);
        if (!m || json_array_append_new(members, m)) {
            json_decref(seen);
            goto fail;
        }
    }
    json_decref(seen);
    json_object_set_new(p, "members", members);
    return p;
fail:
    json_decref(p);
    json_decref(members);
    return NULL;
}

int cluster_merge(const struct cluster_conf *c, const struct cluster_report *reports, json_t **out,
                  struct nerr *err)
{
    json_t *root = json_object(), *nodes = json_array(), *parts = json_array();
    json_t *index = json_object(); /* group name -> position in groups */
    struct mgroup *groups = NULL;
    size_t ngroups = 0;
    int *usable = calloc(c->nnodes ? c->nnodes : 1, sizeof *usable);
    struct admin_status *st = calloc(c->nnodes ? c->nnodes : 1, sizeof *st);
    json_t **sorted = NULL;
    int rc = NERR_NOMEM;
    if (!root || !nodes || !parts || !index || !usable || !st)
        goto fail;
    for (size_t i = 0; i < c->nnodes; i++) {
        const struct cluster_node *n = &c->nodes[i];
        const struct cluster_report *r = &reports[i];
        char why[NERR_MSG_MAX + 200];
        const char *problem = r->error[0] ? r->error : NULL;
        if (r->status && !problem)
            problem = report_problem(c, n, r->status, &st[i], why, sizeof why);
        if (!r->status && !problem)
            problem = "no report";
        usable[i] = r->status && !problem;
        json_t *jn = json_object();
        if (!jn || json_array_append_new(nodes, jn))
            goto fail;
        json_object_set_new(jn, "id", json_string(n->id));
        json_object_set_new(jn, "az", json_string(n->az));
        json_object_set_new(jn, "up", json_boolean(r->answered));
        if (problem)
            json_object_set_new(jn, "error", json_string(problem));
        if (!usable[i])
            continue;
        for (size_t k = 0; k < st[i].ngroups; k++) {
            const struct admin_group *g = &st[i].groups[k];
            const char *name = g->group;
            json_t *pos = json_object_get(index, name);
            struct mgroup *mg;
            if (!pos) {
                struct mgroup *ng = realloc(groups, (ngroups + 1) * sizeof *ng);
                if (!ng)
                    goto fail;
                groups = ng;
                mg = &groups[ngroups];
                memset(mg, 0, sizeof *mg);
                mg->name = name;
                mg->leader = -1;
                mg->auth = (int)i;
                mg->term = -1;
                if (!(mg->rep = calloc(c->nnodes, sizeof *mg->rep)))
                    goto fail;
                if (json_object_set_new(index, name, json_integer((json_int_t)ngroups)))
                    goto fail;
                ngroups++;
            } else {
                mg = &groups[json_integer_value(pos)];
            }
            if (mg->rep[i])
                continue; /* a group listed twice by one node: the first counts */
            mg->rep[i] = g;
            json_int_t term = term_of(g);
            if (term > mg->term)
                mg->term = term;
            if (admin_group_role_is(g, "leader") &&
                (mg->leader < 0 || term > term_of(mg->rep[mg->leader])))
                mg->leader = (int)i;
            /* Members and table come from the leader with the highest term,
             * else from the report with the highest term: the freshest. */
            if (better(g, mg->rep[mg->auth]))
                mg->auth = (int)i;
        }
    }
    for (size_t i = 0; i < ngroups; i++) {
        json_t *p = partition_json(c, reports, usable, &groups[i]);
        if (!p || json_array_append_new(parts, p))
            goto fail;
    }
    /* Sort through a plain array of borrowed pointers. */
    if (ngroups) {
        if (!(sorted = malloc(ngroups * sizeof *sorted)))
            goto fail;
        for (size_t i = 0; i < ngroups; i++)
            sorted[i] = json_incref(json_array_get(parts, i));
        qsort(sorted, ngroups, sizeof *sorted, partition_cmp);
        json_array_clear(parts);
        for (size_t i = 0; i < ngroups; i++) {
            json_array_append_new(parts, sorted[i]);
            sorted[i] = NULL;
        }
    }
    json_object_set_new(root, "cluster", json_string(c->name));
    json_object_set_new(root, "nodes", nodes);
    nodes = NULL;
    json_object_set_new(root, "partitions", parts);
    parts = NULL;
    *out = root;
    root = NULL;
    rc = 0;
fail:
    if (rc)
        nerr_set(err, rc, "out of memory merging status reports");
    for (size_t i = 0; sorted && i < ngroups; i++)
        json_decref(sorted[i]);
    free(sorted);
    for (size_t i = 0; i < ngroups; i++)
        free(groups[i].rep);
    free(groups);
    free(usable);
    for (size_t i = 0; st && i < c->nnodes; i++)
        admin_status_clear(&st[i]);
    free(st);
    json_decref(index);
    json_decref(nodes);
    json_decref(parts);
    json_decref(root);
    return rc;
}

int cluster_merged_healthy(const json_t *merged)
{
    int meta = 0;
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(merged, "partitions"), i, p)
    {
        if (!jstr(p, "leader"))
            return 0;
        if (!strcmp(jstr(p, "group"), "meta"))
            meta = 1;
    }
    return meta;
}

/* ================= status: text ================= */

static void fmt_int(const json_t *v, char *buf, size_t cap)
{
    if (json_is_integer(v))
        snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        snprintf(buf, cap, "-");
}

static int max_int(int a, int b)
{
    return a > b ? a : b;
}

void cluster_status_print(const json_t *merged, FILE *f)
{
    json_t *nodes = json_object_get(merged, "nodes"),
           *parts = json_object_get(merged, "partitions");
    size_t i, k;
    json_t *n, *p, *m;
    size_t up = 0;
    int wid = 4, waz = 2, wgroup = 5, wtable = 5;
    json_array_foreach(nodes, i, n)
    {
        up += json_is_true(json_object_get(n, "up"));
        wid = max_int(wid, (int)strlen(jstr(n, "id")));
        waz = max_int(waz, (int)strlen(jstr(n, "az")));
    }
    json_array_foreach(parts, i, p)
    {
        wgroup = max_int(wgroup, (int)strlen(jstr(p, "group")));
        if (jstr(p, "table"))
            wtable = max_int(wtable, (int)strlen(jstr(p, "table")));
        json_array_foreach(json_object_get(p, "members"), k, m) wid =
            max_int(wid, (int)strlen(jstr(m, "node")));
    }
    fprintf(f, "cluster %s: %zu of %zu nodes up, %zu groups\n", jstr(merged, "cluster"), up,
            json_array_size(nodes), json_array_size(parts));
    json_array_foreach(nodes, i, n)
    {
        const char *e = jstr(n, "error");
        const char *state = json_is_true(json_object_get(n, "up")) ? "up" : "DOWN";
        if (e)
            fprintf(f, "  %-*s %-*s %-4s  %s\n", wid, jstr(n, "id"), waz, jstr(n, "az"), state, e);
        else
            fprintf(f, "  %-*s %-*s %s\n", wid, jstr(n, "id"), waz, jstr(n, "az"), state);
    }
    if (!json_array_size(parts))
        return;
    int wl = max_int(wid, 6);
    fprintf(f, "\n%-*s %-*s %4s %6s %-*s %-5s %-*s %-*s %-11s %10s %10s %8s\n", wgroup, "GROUP",
            wtable, "TABLE", "PART", "TERM", wl, "LEADER", "LEASE", wid, "NODE", waz, "AZ", "ROLE",
            "COMMIT", "APPLIED", "LAG");
    json_array_foreach(parts, i, p)
    {
        char part[24], term[24], commit[24], applied[24], lag[24];
        const char *leader = jstr(p, "leader"), *table = jstr(p, "table");
        json_t *lease = json_object_get(p, "lease");
        fmt_int(json_object_get(p, "partition"), part, sizeof part);
        fmt_int(json_object_get(p, "term"), term, sizeof term);
        json_t *members = json_object_get(p, "members");
        /* The group's columns on its first line only. */
        fprintf(f, "%-*s %-*s %4s %6s %-*s %-5s", wgroup, jstr(p, "group"), wtable,
                table ? table : "-", part, term, wl, leader ? leader : "NONE",
                json_is_boolean(lease) ? (json_is_true(lease) ? "yes" : "no") : "-");
        if (!json_array_size(members))
            fputc('\n', f);
        json_array_foreach(members, k, m)
        {
            fmt_int(json_object_get(m, "commit"), commit, sizeof commit);
            fmt_int(json_object_get(m, "applied"), applied, sizeof applied);
            fmt_int(json_object_get(m, "lag"), lag, sizeof lag);
            const char *az = jstr(m, "az");
            if (k > 0)
                fprintf(f, "%*s", wgroup + wtable + wl + 20, "");
            fprintf(f, " %-*s %-*s %-11s %10s %10s %8s\n", wid, jstr(m, "node"), waz, az ? az : "?",
                    jstr(m, "role"), commit, applied, lag);
        }
    }
}

struct ddb_client *cluster_node_client(const struct cluster_conf *c, size_t i, long timeout_ms,
                                       struct nerr *err)
{
    char url[512];
    if (cluster_conf_api_url(c, c->nodes[i].api, url, sizeof url) < 0) {
        nerr_set(err, NERR_INVALID, "node %s: api address too long", c->nodes[i].id);
        return NULL;
    }
    struct ddb_client_options co = {
        .endpoint = url,
        .access_key_id = c->auth ? c->access_key_id : NULL,
        .secret_access_key = c->auth ? c->secret_access_key : NULL,
        .region = c->region,
        .timeout_ms = timeout_ms,
        .ca_file = c->tls_api ? c->tls_ca : NULL,
    };
    struct ddb_client *cl = NULL;
    return ddb_client_new(&co, &cl, err) ? NULL : cl;
}
