/* One bad entry must not stop a node (issue 13, section 4). A one-node store
 *  (state, group host, catalog, API) in a temporary directory:
 *
 *  - committed entries that no replica can decode (handed to the host as
 *    proposals forwarded by a member, with the leader's validator turned off
 *    through group_host_set_validator: the test's way of committing a
 *    poisoned entry) are applied as no-ops and counted, in a partition and
 *    in the metadata group, and the node keeps serving;
 *  - a proposal "forwarded" by a member (a FWD_PROPOSE message handed to the
 *    host's receive path, from the node itself, which is the one member of
 *    its groups) that does not decode is refused before it enters the log,
 *    and a valid one is let through;
 *  - the node restarts with its LMDB state removed, so every entry of the
 *    log, the poisoned ones included, is applied again: it starts, and the
 *    items written before and after the poisoned entry are there.
 * Before the fix the poisoned entry stopped the applier (every later write
 * failed, and the restart stopped at it again). */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/fsutil.h"
#include "lib/le.h"
#include "lib/log.h"
#include "proto/clusterfile.h"
#include "store/api.h"
#include "store/catalog.h"
#include "store/group.h"
#include "store/raftwire.h"
#include "store/state.h"
#include "t/tap.h"

struct node {
    struct state *st;
    struct group_host *h;
    struct catalog *cat;
    struct api *api;
};

static char dir[64];
static struct cluster_node self = {.id = "n1", .az = "az1", .rack = "r1"};
static struct cluster_conf conf = {.path = "test", .name = "test", .nodes = &self, .nnodes = 1};

static int node_up(struct node *n, struct nerr *err)
{
    char path[256], logdir[256];
    snprintf(path, sizeof path, "%s/state", dir);
    snprintf(logdir, sizeof logdir, "%s/log", dir);
    struct state_options so = {.map_size = 1ULL << 28, .max_dbs = 64};
    struct catalog_options co = {
        .conf = &conf, .self_id = "n1", .data_dir = dir, .max_partitions = 4, .max_dbs = 64};
    struct api_options ao = {
        .region = "local", .endpoint = "127.0.0.1:0", .default_partitions = 1, .max_partitions = 4};
    memset(n, 0, sizeof *n);
    int rc = state_open(path, &so, &n->st, err);
    if (!rc)
        rc = group_host_start(n->st, logdir, NULL, NULL, NULL, NULL, &n->h, err);
    if (!rc)
        rc = catalog_open(n->h, &co, &n->cat, err);
    ao.cat = n->cat;
    ao.host = n->h;
    if (!rc)
        rc = api_new(&ao, &n->api, err);
    return rc;
}

static void node_down(struct node *n)
{
    api_free(n->api);
    catalog_close(n->cat);
    group_host_stop(n->h);
    state_close(n->st);
}

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, status;
    char *body;
};

static void on_reply(void *arg, int status, char *body)
{
    struct waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    w->status = status;
    w->body = body;
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Waits at most 20 s (far beyond any apply on a busy machine). */
static int wait_for(struct waiter *w)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 20;
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &dl))
            break;
    int done = w->done;
    pthread_mutex_unlock(&w->mu);
    return done;
}

/* Calls op; returns the HTTP status (0 when no reply came) and frees the body
 * unless body is given. */
static int call(struct node *n, const char *op, const char *req, char **body)
{
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, NULL};
    api_call(n->api, op, req, strlen(req), on_reply, &w);
    if (!wait_for(&w))
        return 0;
    if (body)
        *body = w.body;
    else
        free(w.body);
    return w.status;
}

static int put(struct node *n, const char *pk)
{
    char req[256];
    snprintf(req, sizeof req,
             "{\"TableName\":\"tab\",\"Item\":{\"pk\":{\"S\":\"%s\"},\"v\":{\"N\":\"1\"}}}", pk);
    return call(n, "PutItem", req, NULL);
}

static int has(struct node *n, const char *pk)
{
    char req[256], *body = NULL;
    snprintf(req, sizeof req, "{\"TableName\":\"tab\",\"Key\":{\"pk\":{\"S\":\"%s\"}}}", pk);
    int st = call(n, "GetItem", req, &body);
    int found = st == 200 && body && strstr(body, "\"Item\"");
    free(body);
    return found;
}

/* A FWD_PROPOSE from member 1 (node n1) to member 1, as the transport would
 * hand it to the host. */
static void forward(struct group_host *h, uint64_t gid, const char *entry)
{
    size_t len = strlen(entry);
    unsigned char *framed = malloc(9 + len), *buf = NULL;
    size_t blen = 0;
    framed[0] = 0x01; /* GROUP_FRAME_MAGIC */
    le_put64(framed + 1, 77);
    memcpy(framed + 9, entry, len);
    struct raft_msg m = {.type = RAFTWIRE_FWD_PROPOSE,
                         .from = 1,
                         .to = 1,
                         .index = 77,
                         .data = framed,
                         .data_len = (uint32_t)(9 + len)};
    if (raftwire_encode(&m, &buf, &blen) == 0)
        group_host_recv(h, "n1", gid, buf, blen);
    free(buf);
    free(framed);
}

/* Waits (at most 10 s) until g's last index reaches want. */
static uint64_t wait_last(struct group *g, uint64_t want)
{
    for (int i = 0; i < 1000 && group_last_lsn(g) < want; i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    return group_last_lsn(g);
}

int main(void)
{
    struct nerr err = {0};
    struct node n;
    char tmpl[] = "/tmp/nines-poison-XXXXXX";
    if (!mkdtemp(tmpl))
        bail_out("mkdtemp");
    snprintf(dir, sizeof dir, "%s", tmpl);
    log_init("test_poison", LOG_ERROR);
    if (node_up(&n, &err))
        bail_out(err.msg);
    const char *create =
        "{\"TableName\":\"tab\",\"BillingMode\":\"PAY_PER_REQUEST\",\"AttributeDefinitions\":"
        "[{\"AttributeName\":\"pk\",\"AttributeType\":\"S\"}],\"KeySchema\":[{\"AttributeName\":"
        "\"pk\",\"KeyType\":\"HASH\"}]}";
    is_int(call(&n, "CreateTable", create, NULL), 200, "CreateTable");
    is_int(put(&n, "before"), 200, "a write before the poisoned entry");

    struct table *t = catalog_get(n.cat, "tab");
    if (!t || !t->parts[0].g)
        bail_out("table tab has no group here");
    struct group *g = t->parts[0].g;
    uint64_t gid = group_members_of(g)->gid;
    table_put(t);

    /* Committing a poisoned entry: the leader's validator is what keeps
     * undecodable proposals out of the log, so the test turns it off (as a
     * node of an older version, or a bug, would have let them in) and hands
     * the host forwarded proposals. */
    uint64_t last = group_last_lsn(g), mlast = group_last_lsn(catalog_meta(n.cat));
    group_host_set_validator(n.h, NULL, NULL);
    forward(n.h, gid, "{\"k\":\"put\",\"i\":{\"no-key\":{\"S\":\"x\"}}}");
    forward(n.h, gid, "not json at all");
    forward(n.h, 1, "{\"k\":\"drop-everything\",\"name\":\"tab\"}");
    is_int(wait_last(g, last + 2), last + 2, "two undecodable entries entered the partition's log");
    is_int(wait_last(catalog_meta(n.cat), mlast + 1), mlast + 1,
           "one entered the metadata group's log");
    struct group_host_stats hs = {0};
    for (int i = 0; i < 1000 && hs.poisoned_entries < 3; i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
        group_host_stats(n.h, &hs);
    }
    is_int(hs.poisoned_entries, 3, "the three were applied as no-ops and counted");
    char *metrics = api_metrics_text(n.api);
    ok(metrics && strstr(metrics, "nines_poisoned_entries_total 3\n"), "and reported in /metrics");
    free(metrics);
    is_int(put(&n, "after"), 200, "the node keeps serving writes");
    ok(has(&n, "before") && has(&n, "after"), "and reads");
    is_int(call(&n, "DescribeTable", "{\"TableName\":\"tab\"}", NULL), 200,
           "the table survived the poisoned metadata entry");

    /* With the validator (catalog_open installs it), forwarded proposals are
     * checked before they enter the log. */
    catalog_close(n.cat);
    group_host_set_validator(n.h, NULL, NULL);
    api_free(n.api);
    group_host_stop(n.h);
    state_close(n.st);
    if (node_up(&n, &err))
        bail_out(err.msg);
    t = catalog_get(n.cat, "tab");
    if (!t || !t->parts[0].g)
        bail_out("table tab has no group after the restart");
    g = t->parts[0].g;
    table_put(t);
    last = group_last_lsn(g);
    forward(n.h, gid, "{\"k\":\"put\",\"i\":{\"v\":{\"N\":\"1\"}}}");
    forward(n.h, gid, "\xff\xfe garbage");
    forward(n.h, 1, "{\"k\":\"drop-everything\",\"name\":\"tab\"}");
    group_host_stats(n.h, &hs);
    is_int(hs.refused_proposals, 3, "three undecodable forwarded proposals are refused");
    forward(n.h, gid, "{\"k\":\"put\",\"i\":{\"pk\":{\"S\":\"fwd\"}}}");
    is_int(wait_last(g, last + 1), last + 1,
           "a valid one enters the log, the refused ones did not");
    group_host_stats(n.h, &hs);
    is_int(hs.refused_proposals, 3, "and is not counted as refused");
    is_int(hs.poisoned_entries, 0, "nothing was poisoned since the restart");
    for (int i = 0; i < 500 && !has(&n, "fwd"); i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    ok(has(&n, "fwd"), "the forwarded item was applied");

    /* Restart from the log alone: every entry, the poisoned ones too, is
     * applied again. */
    node_down(&n);
    char state[128];
    snprintf(state, sizeof state, "%s/state", dir);
    ok(fs_rm_rf(state, &err) == 0, "LMDB state removed: the restart replays the whole log");
    int rc = node_up(&n, &err);
    is_int(rc, 0, "the node restarts over the poisoned entries (%s)", err.msg);
    if (rc)
        bail_out("restart failed");
    /* The applier replays the log after node_up returns: wait for it (on a
     * busy machine it can take a while), then look. */
    for (int i = 0; i < 1000; i++) {
        group_host_stats(n.h, &hs);
        if (hs.poisoned_entries >= 2 && has(&n, "before") && has(&n, "after") && has(&n, "fwd"))
            break;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    group_host_stats(n.h, &hs);
    ok(hs.poisoned_entries >= 2, "the replay met them again (%llu) and went on",
       (unsigned long long)hs.poisoned_entries);
    ok(has(&n, "before") && has(&n, "after") && has(&n, "fwd"),
       "every item written around them is there");
    is_int(put(&n, "restarted"), 200, "and it serves writes");
    node_down(&n);
    fs_rm_rf(dir, NULL);
    return done_testing();
}
