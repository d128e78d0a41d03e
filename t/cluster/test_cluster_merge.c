/*
 * test_cluster_merge.c — cluster/cluster.h without a running cluster:
 *   - cluster_merge on hand-written node reports (3 nodes in 3 AZs, one
 *     down, a partition without a leader, a deposed leader that has not
 *     heard, lag, a node answering under another id or another cluster);
 *   - cluster_merged_healthy and the text rendering;
 *   - the loopback check;
 *   - pid files: cluster_pid_is_node and cluster_stop on a stand-in process
 *     whose command line looks like ninesd (a shell started as "ninesd"),
 *     and a stale pid file naming a process that is not ninesd, which must
 *     survive.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "t/tap.h"

static struct cluster_node NODES[3] = {
    {.id = "n1", .az = "az1", .rack = "r1", .api = "127.0.0.1:1", .api_host = "127.0.0.1"},
    {.id = "n2", .az = "az2", .rack = "r1", .api = "127.0.0.1:2", .api_host = "127.0.0.1"},
    {.id = "n3", .az = "az3", .rack = "r1", .api = "127.0.0.1:3", .api_host = "127.0.0.1"},
};

static struct cluster_conf conf(void)
{
    struct cluster_conf c = {0};
    c.path = "test.yaml";
    c.name = "demo";
    c.nodes = NODES;
    c.nnodes = 3;
    return c;
}

static json_t *parse(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j)
        bail_out(je.text);
    return j;
}

/* n1 and n2 answer; n3 is down (connection refused). */
static const char *N1 =
    "{\"node\":\"n1\",\"az\":\"az1\",\"rack\":\"r1\",\"cluster\":\"demo\",\"time_ms\":1,\"groups\":"
    "["
    /* meta: n1 leads */
    "{\"group\":\"meta\",\"table\":null,\"table_id\":null,\"partition\":null,"
    " \"members\":[\"n1\",\"n2\",\"n3\"],\"role\":\"leader\",\"leader\":\"n1\",\"term\":3,"
    " \"commit\":100,\"applied\":100,\"last_index\":100,\"lease\":true},"
    /* orders/0: n2 leads, n1 follows */
    "{\"group\":\"p.t5.0\",\"table\":\"orders\",\"table_id\":\"t5\",\"partition\":0,"
    " \"members\":[\"n1\",\"n2\",\"n3\"],\"role\":\"follower\",\"leader\":\"n2\",\"term\":2,"
    " \"commit\":48,\"applied\":45,\"last_index\":48,\"lease\":false},"
    /* orders/1: an election in progress, nobody leads */
    "{\"group\":\"p.t5.1\",\"table\":\"orders\",\"table_id\":\"t5\",\"partition\":1,"
    " \"members\":[\"n1\",\"n2\",\"n3\"],\"role\":\"candidate\",\"leader\":null,\"term\":5,"
    " \"commit\":7,\"applied\":7,\"last_index\":9,\"lease\":false},"
    /* accounts/0: n1 was deposed in term 4 and does not know yet */
    "{\"group\":\"p.t7.0\",\"table\":\"accounts\",\"table_id\":\"t7\",\"partition\":0,"
    " \"members\":[\"n1\",\"n2\",\"n3\"],\"role\":\"leader\",\"leader\":\"n1\",\"term\":4,"
    " \"commit\":10,\"applied\":10,\"last_index\":12,\"lease\":false}"
    "]}";

static const char *N2 =
    "{\"node\":\"n2\",\"az\":\"az2\",\"rack\":\"r1\",\"cluster\":\"demo\",\"time_ms\":1,\"groups\":"
    "["
    "{\"group\":\"meta\",\"table\":null,\"table_id\":null,\"partition\":null,"
    " \"members\":[\"n1\",\"n2\",\"n3\"],\"role\":\"follower\",\"leader\":\"n1\",\"term\":3,"
    " \"commit\":100,\"applied\":97,\"last_index\":100,\"lease\":false},"
    "{\"group\":\"p.t5.0\",\"table\":\"orders\",\"table_id\":\"t5\",\"partition\":0,"
    " \"members\":[\"n1\",\"n2\",\"n3\"],\"role\":\"leader\",\"leader\":\"n2\",\"term\":2,"
    " \"commit\":50,\"applied\":50,\"last_index\":52,\"lease\":true},"
    "{\"group\":\"p.t5.1\",\"table\":\"orders\",\"table_id\":\"t5\",\"partition\":1,"
    " \"members\":[\"n1\",\"n2\",\"n3\"],\"role\":\"follower\",\"leader\":\"n3\",\"term\":4,"
    " \"commit\":7,\"applied\":6,\"last_index\":7,\"lease\":false},"
    /* accounts/0: n2 won term 6 with a new member list (n3 replaced by n4,
     * a node this file does not know) */
    "{\"group\":\"p.t7.0\",\"table\":\"accounts\",\"table_id\":\"t7\",\"partition\":0,"
    " \"members\":[\"n2\",\"n1\",\"n4\"],\"role\":\"leader\",\"leader\":\"n2\",\"term\":6,"
    " \"commit\":15,\"applied\":14,\"last_index\":16,\"lease\":true}"
    "]}";

static json_t *find_part(json_t *m, const char *group)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(m, "partitions"), i, p)
    {
        if (!strcmp(json_string_value(json_object_get(p, "group")), group))
            return p;
    }
    return NULL;
}

static json_t *find_member(json_t *p, const char *node)
{
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(p, "members"), i, m)
    {
        if (!strcmp(json_string_value(json_object_get(m, "node")), node))
            return m;
    }
    return NULL;
}

static const char *s(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : json_is_null(v) ? "(null)" : "(absent)";
}

static long long n(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (long long)json_integer_value(v) : -999;
}

static void test_merge(void)
{
    struct cluster_conf c = conf();
    struct cluster_report r[3];
    struct nerr e = {0};
    memset(r, 0, sizeof r);
    r[0].answered = 1;
    r[0].status = parse(N1);
    r[1].answered = 1;
    r[1].status = parse(N2);
    snprintf(r[2].error, sizeof r[2].error, "127.0.0.1:3: Couldn't connect to server");
    json_t *m = NULL;
    is_int(cluster_merge(&c, r, &m, &e), 0, "merge succeeds");

    /* nodes */
    json_t *nodes = json_object_get(m, "nodes");
    is_int(json_array_size(nodes), 3, "three nodes listed");
    json_t *n3 = json_array_get(nodes, 2);
    is(s(n3, "id"), "n3", "nodes in file order");
    is(s(n3, "az"), "az3", "with their AZ");
    ok(json_is_false(json_object_get(n3, "up")), "n3 is down");
    ok(strstr(s(n3, "error"), "connect") != NULL, "with the reason: %s", s(n3, "error"));
    ok(json_is_true(json_object_get(json_array_get(nodes, 0), "up")), "n1 is up");
    ok(!json_object_get(json_array_get(nodes, 0), "error"), "n1 has no error");

    /* order */
    json_t *parts = json_object_get(m, "partitions");
    is_int(json_array_size(parts), 4, "four groups");
    is(s(json_array_get(parts, 0), "group"), "meta", "meta first");
    is(s(json_array_get(parts, 1), "group"), "p.t7.0", "then accounts/0 (tables by name)");
    is(s(json_array_get(parts, 2), "group"), "p.t5.0", "then orders/0");
    is(s(json_array_get(parts, 3), "group"), "p.t5.1", "then orders/1");

    /* meta */
    json_t *meta = find_part(m, "meta");
    ok(json_is_null(json_object_get(meta, "table")), "meta: table null");
    ok(json_is_null(json_object_get(meta, "partition")), "meta: partition null");
    is(s(meta, "leader"), "n1", "meta: leader n1");
    is_int(n(meta, "term"), 3, "meta: term 3");
    ok(json_is_true(json_object_get(meta, "lease")), "meta: the leader's lease");
    json_t *mm = find_member(meta, "n2");
    is(s(mm, "role"), "follower", "meta/n2 follower");
    is(s(mm, "az"), "az2", "meta/n2 az2");
    is_int(n(mm, "commit"), 100, "meta/n2 commit");
    is_int(n(mm, "applied"), 97, "meta/n2 applied");
    is_int(n(mm, "lag"), 3, "meta/n2 lag = leader's last_index 100 - applied 97");
    is_int(n(find_member(meta, "n1"), "lag"), 0, "meta/n1 (leader) lag 0");
    mm = find_member(meta, "n3");
    is(s(mm, "role"), "down", "meta/n3 down");
    ok(json_is_null(json_object_get(mm, "applied")), "meta/n3 applied null");
    ok(json_is_null(json_object_get(mm, "lag")), "meta/n3 lag null");

    /* orders/0: lag measured against the leader's (n2's) last index */
    json_t *p0 = find_part(m, "p.t5.0");
    is(s(p0, "table"), "orders", "p.t5.0 table");
    is(s(p0, "table_id"), "t5", "p.t5.0 table_id");
    is_int(n(p0, "partition"), 0, "p.t5.0 partition 0");
    is(s(p0, "leader"), "n2", "p.t5.0 leader n2");
    ok(json_is_true(json_object_get(p0, "lease")), "p.t5.0 lease from n2's report");
    is_int(n(find_member(p0, "n1"), "lag"), 7, "p.t5.0/n1 lag = 52 - 45");
    is_int(n(find_member(p0, "n2"), "lag"), 2, "p.t5.0/n2 lag = 52 - 50");
    is_int(json_array_size(json_object_get(p0, "members")), 3, "p.t5.0 three members");
    is(s(json_array_get(json_object_get(p0, "members"), 0), "node"), "n1",
       "members in the group's own order");

    /* orders/1: no leader; followers' opinions do not make one */
    json_t *p1 = find_part(m, "p.t5.1");
    ok(json_is_null(json_object_get(p1, "leader")), "p.t5.1 has no leader (n2 thinks n3, down)");
    is_int(n(p1, "term"), 5, "p.t5.1 term = highest reported");
    ok(json_is_null(json_object_get(p1, "lease")), "p.t5.1 lease null without a leader");
    is(s(find_member(p1, "n1"), "role"), "candidate", "p.t5.1/n1 candidate");
    ok(json_is_null(json_object_get(find_member(p1, "n1"), "lag")), "no lag without a leader");

    /* accounts/0: two claim leadership; the higher term wins */
    json_t *pa = find_part(m, "p.t7.0");
    is(s(pa, "leader"), "n2", "p.t7.0: term-6 leader n2 beats deposed term-4 n1");
    is_int(n(pa, "term"), 6, "p.t7.0 term 6");
    json_t *ma = json_object_get(pa, "members");
    is_int(json_array_size(ma), 3, "p.t7.0 members from the winning leader's report");
    is(s(json_array_get(ma, 0), "node"), "n2", "in its order");
    is(s(find_member(pa, "n1"), "role"), "leader", "n1's own (stale) role is shown");
    is_int(n(find_member(pa, "n1"), "lag"), 6, "n1 lag = 16 - 10");
    json_t *n4 = find_member(pa, "n4");
    is(s(n4, "role"), "unknown", "a member the file does not know");
    ok(json_is_null(json_object_get(n4, "az")), "has no AZ");
    ok(!find_member(pa, "n3"), "n3 is no member of p.t7.0 any more");

    ok(!cluster_merged_healthy(m), "not healthy: p.t5.1 has no leader");

    /* The text view names every group and member. */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cluster_status_print(m, f);
    fclose(f);
    ok(strstr(text, "cluster demo: 2 of 3 nodes up, 4 groups") != NULL, "text: summary line");
    ok(strstr(text, "DOWN") != NULL, "text: n3 DOWN");
    ok(strstr(text, "p.t5.1") && strstr(text, "NONE"), "text: the leaderless group says NONE");
    ok(strstr(text, "candidate") != NULL, "text: roles");
    note("%s", text);
    free(text);
    json_decref(m);

    /* Every partition led: healthy. Drop orders/1 from both reports. */
    json_array_remove(json_object_get(r[0].status, "groups"), 2);
    json_array_remove(json_object_get(r[1].status, "groups"), 2);
    is_int(cluster_merge(&c, r, &m, &e), 0, "merge without p.t5.1");
    ok(cluster_merged_healthy(m), "healthy when every partition has a leader, n3 down or not");
    json_decref(m);

    /* Without a meta group: not healthy, whatever else. */
    json_array_remove(json_object_get(r[0].status, "groups"), 0);
    json_array_remove(json_object_get(r[1].status, "groups"), 0);
    is_int(cluster_merge(&c, r, &m, &e), 0, "merge without meta");
    ok(!cluster_merged_healthy(m), "not healthy without the meta group");
    json_decref(m);
    cluster_reports_free(r, 3);
}

static void test_wrong_node(void)
{
    struct cluster_conf c = conf();
    struct cluster_report r[3];
    struct nerr e = {0};
    memset(r, 0, sizeof r);
    /* n1's address answers as n2; n2 answers for another cluster; n3 does
     * not implement the call. None may contribute a group. */
    r[0].answered = 1;
    r[0].status = parse(N2);
    r[1].answered = 1;
    r[1].status = parse(N2);
    json_object_set_new(r[1].status, "cluster", json_string("other"));
    r[2].answered = 1;
    r[2].unsupported = 1;
    snprintf(r[2].error, sizeof r[2].error, "does not implement NinesAdmin.Status");
    json_t *m = NULL;
    is_int(cluster_merge(&c, r, &m, &e), 0, "merge of unusable reports");
    json_t *nodes = json_object_get(m, "nodes");
    ok(strstr(s(json_array_get(nodes, 0), "error"), "answered as node 'n2'") != NULL, "n1: %s",
       s(json_array_get(nodes, 0), "error"));
    ok(strstr(s(json_array_get(nodes, 1), "error"), "cluster 'other'") != NULL, "n2: %s",
       s(json_array_get(nodes, 1), "error"));
    ok(json_is_true(json_object_get(json_array_get(nodes, 2), "up")), "n3 answered: up");
    is_int(json_array_size(json_object_get(m, "partitions")), 0, "no group from them");
    ok(!cluster_merged_healthy(m), "not healthy");
    json_decref(m);
    cluster_reports_free(r, 3);
}

static void test_loopback(void)
{
    ok(cluster_host_is_loopback("127.0.0.1"), "127.0.0.1");
    ok(cluster_host_is_loopback("127.255.3.4"), "127.255.3.4");
    ok(cluster_host_is_loopback("::1"), "::1");
    ok(cluster_host_is_loopback("::ffff:127.0.0.2"), "::ffff:127.0.0.2");
    ok(cluster_host_is_loopback("LocalHost"), "localhost");
    ok(!cluster_host_is_loopback("128.0.0.1"), "not 128.0.0.1");
    ok(!cluster_host_is_loopback("10.0.0.1"), "not 10.0.0.1");
    ok(!cluster_host_is_loopback("::2"), "not ::2");
    ok(!cluster_host_is_loopback("db1.example"), "not a host name");
    ok(!cluster_host_is_loopback("127.0.0.1.example"), "not a name that starts like one");

    struct cluster_node nodes[2] = {
        {.id = "a",
         .api = "127.0.0.1:1",
         .api_host = "127.0.0.1",
         .peer = "[::1]:2",
         .peer_host = "::1",
         .line = 4,
         .col = 5},
        {.id = "b",
         .api = "127.0.0.1:3",
         .api_host = "127.0.0.1",
         .peer = "10.1.2.3:4",
         .peer_host = "10.1.2.3",
         .line = 5,
         .col = 5},
    };
    struct cluster_conf c = {.path = "c.yaml", .name = "x", .nodes = nodes, .nnodes = 1};
    struct nerr e = {0};
    is_int(cluster_check_local(&c, &e), 0, "a loopback node passes");
    c.nnodes = 2;
    is_int(cluster_check_local(&c, &e), NERR_INVALID, "a remote peer address is refused");
    ok(strstr(e.msg, "c.yaml:5:5: node b: peer address 10.1.2.3:4 is not a loopback") != NULL,
       "message: %s", e.msg);
}

/* A process whose command line is "DIR/ninesd -c SCRIPT --node ID": a shell
 * under ninesd's name, blocked opening a FIFO nobody writes (so it has no
 * child that would outlive it). */
static pid_t fake_ninesd(const char *dir, const char *id)
{
    char path[512], fifo[512], script[600];
    snprintf(path, sizeof path, "%s/ninesd", dir);
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    snprintf(script, sizeof script, "read x < %s", fifo);
    if (access(path, X_OK) && symlink("/bin/sh", path))
        bail_out("symlink");
    if (access(fifo, F_OK) && mkfifo(fifo, 0600))
        bail_out("mkfifo");
    pid_t p = fork();
    if (p == 0) {
        execl(path, path, "-c", script, "--node", id, (char *)NULL);
        _exit(127);
    }
    return p;
}

static int write_pid(const char *dir, pid_t pid)
{
    char path[512];
    snprintf(path, sizeof path, "%s/ninesd.pid", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "%d\n", (int)pid);
    return fclose(f);
}

static int alive(pid_t p)
{
    return kill(p, 0) == 0;
}

static void wait_cmdline(pid_t p, const char *id)
{
    /* fork, then exec: the command line is ninesd's only after the exec. */
    for (int i = 0; i < 200 && !cluster_pid_is_node(p, id); i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static void test_pids(void)
{
    char dir[] = "/tmp/nines-cluster-merge-XXXXXX";
    if (!mkdtemp(dir))
        bail_out("mkdtemp");
    struct cluster_node nd = {.id = "n1", .data = dir};
    struct cluster_conf c = {.path = "c.yaml", .name = "x", .nodes = &nd, .nnodes = 1};
    struct nerr e = {0};
    pid_t pid;
    int stale;

    is_int(cluster_node_pid(&nd, &pid, &stale, &e), 0, "no pid file: ok");
    ok(pid == 0 && !stale, "no pid file: not running, not stale");

    pid_t fake = fake_ninesd(dir, "n1");
    wait_cmdline(fake, "n1");
    ok(cluster_pid_is_node(fake, "n1"), "a process named ninesd with --node n1 is node n1");
    ok(!cluster_pid_is_node(fake, "n2"), "but not node n2");
    ok(!cluster_pid_is_node(getpid(), "n1"), "this test is not a ninesd");

    /* A stale pid file naming a process that is not ninesd (a sleep). */
    pid_t sleeper = fork();
    if (sleeper == 0) {
        execl("/bin/sleep", "sleep", "30", (char *)NULL);
        _exit(127);
    }
    write_pid(dir, sleeper);
    is_int(cluster_node_pid(&nd, &pid, &stale, &e), 0, "stale pid file read");
    ok(pid == 0 && stale, "a pid file naming a sleep is stale");
    is_int(cluster_stop(&c, 2000, NULL, &e), 0, "down with a stale pid file");
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    ok(alive(sleeper) && waitpid(sleeper, NULL, WNOHANG) == 0, "the sleep was not signalled");
    char pf[600];
    snprintf(pf, sizeof pf, "%s/ninesd.pid", dir);
    ok(access(pf, F_OK) != 0, "the stale pid file is removed");

    write_pid(dir, 999999999);
    is_int(cluster_node_pid(&nd, &pid, &stale, &e), 0, "pid file with a dead pid");
    ok(pid == 0 && stale, "is stale");
    FILE *f = fopen(pf, "w");
    fputs("garbage\n", f);
    fclose(f);
    is_int(cluster_node_pid(&nd, &pid, &stale, &e), 0, "pid file with garbage");
    ok(pid == 0 && stale, "is stale");

    /* The stand-in ninesd: found, stopped, pid file removed. */
    write_pid(dir, fake);
    is_int(cluster_node_pid(&nd, &pid, &stale, &e), 0, "live pid file");
    ok(pid == fake && !stale, "names the running node");
    char out[2048] = "";
    FILE *o = fmemopen(out, sizeof out - 1, "w");
    is_int(cluster_stop(&c, 5000, o, &e), 0, "down stops it");
    fclose(o);
    ok(strstr(out, "n1: stopped") != NULL, "says so: %s", out);
    int st = 0;
    ok(waitpid(fake, &st, WNOHANG) == fake && WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM,
       "it died of SIGTERM");
    ok(access(pf, F_OK) != 0, "pid file removed");
    is_int(cluster_stop(&c, 1000, NULL, &e), 0, "down again: idempotent");

    ok(alive(sleeper), "the sleep is still alive after everything");
    kill(sleeper, SIGKILL);
    waitpid(sleeper, NULL, 0);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        diag("could not remove %s", dir);
}

int main(void)
{
    test_merge();
    test_wrong_node();
    test_loopback();
    test_pids();
    return done_testing();
}
