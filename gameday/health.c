/*
 * gameday/health.c — the cluster's state as the runner judges it: the
 * merged NinesAdmin.Status of every node (cluster/cluster.h) read into struct
 * health, and polling until a predicate holds (contract in run.h).
 */
#include "gameday/run.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "lib/clock.h"

#define STATUS_TIMEOUT_MS 2000
#define POLL_NS (250ull * 1000000u)

static int fetch_merged(struct gd_run *g, json_t **merged, struct nerr *err)
{
    struct cluster_report *rep = calloc(g->conf->nnodes, sizeof *rep);
    if (!rep)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    int rc = cluster_status_fetch(g->conf, STATUS_TIMEOUT_MS, rep, err);
    if (!rc)
        rc = cluster_merge(g->conf, rep, merged, err);
    cluster_reports_free(rep, g->conf->nnodes);
    free(rep);
    return rc;
}

static void why(struct health *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void why(struct health *h, const char *fmt, ...)
{
    if (h->why[0])
        return; /* the first reason is enough */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->why, sizeof h->why, fmt, ap);
    va_end(ap);
}

static void health_eval(const json_t *m, const char *table, struct health *h)
{
    memset(h, 0, sizeof *h);
    size_t i, j;
    json_t *n, *p, *mem;
    json_array_foreach(json_object_get(m, "nodes"), i, n)
    {
        h->nodes++;
        if (json_is_true(json_object_get(n, "up")))
            h->nodes_up++;
        else
            why(h, "node %s is down", json_string_value(json_object_get(n, "id")));
    }
    json_array_foreach(json_object_get(m, "partitions"), i, p)
    {
        const char *tab = json_string_value(json_object_get(p, "table"));
        const char *grp = json_string_value(json_object_get(p, "group"));
        h->parts++;
        if (table && tab && !strcmp(tab, table))
            h->table_parts++;
        json_t *leader = json_object_get(p, "leader");
        int led = json_is_string(leader);
        if (led)
            h->parts_led++;
        else
            why(h, "group %s has no leader", grp ? grp : "?");
        json_int_t commit = -1;
        json_array_foreach(json_object_get(p, "members"), j, mem)
        {
            const char *role = json_string_value(json_object_get(mem, "role"));
            if (role && !strcmp(role, "leader") && led &&
                !strcmp(json_string_value(json_object_get(mem, "node")), json_string_value(leader)))
                commit = json_integer_value(json_object_get(mem, "commit"));
        }
        /* The group's members are its placement (the catalog's replicas):
         * full when every one of them is live, however many the placement
         * gives a group. */
        int live = 0, placed = (int)json_array_size(json_object_get(p, "members"));
        json_array_foreach(json_object_get(p, "members"), j, mem)
        {
            const char *role = json_string_value(json_object_get(mem, "role"));
            const char *node = json_string_value(json_object_get(mem, "node"));
            h->members++;
            if (role && (!strcmp(role, "leader") || !strcmp(role, "follower"))) {
                live++;
                h->members_live++;
            } else {
                why(h, "group %s: member %s is %s", grp ? grp : "?", node ? node : "?",
                    role ? role : "?");
            }
            json_t *ap = json_object_get(mem, "applied");
            if (commit >= 0 && (!json_is_integer(ap) || json_integer_value(ap) < commit)) {
                h->members_behind++;
                if (!h->why[0] && json_is_integer(ap))
                    why(h, "group %s: member %s applied %lld < leader's commit %lld",
                        grp ? grp : "?", node ? node : "?", (long long)json_integer_value(ap),
                        (long long)commit);
            }
        }
        if (placed > 0 && live == placed)
            h->parts_full++;
    }
    if (!h->parts)
        why(h, "no group reported");
}

/* wait_healthy's test: every node answers, every group has a leader and
 * every member is a live leader or follower. (Not cluster/cluster.c's
 * cluster_merged_healthy, which asks only for the metadata and a leader in
 * every group.) */
static int all_up_and_live(const struct health *h)
{
    return h->nodes && h->nodes_up == h->nodes && h->parts && h->parts_led == h->parts &&
           h->members_live == h->members;
}

/* Polls the cluster until pred holds or timeout; the last health in *h. */
int gd_wait_for(struct gd_run *g, uint64_t timeout_ns, gd_pred pred, void *arg, struct health *h,
                json_t **last, struct nerr *err)
{
    uint64_t deadline = clock_mono_ns() + timeout_ns;
    for (;;) {
        json_t *m = NULL;
        struct nerr e = {0};
        int rc = fetch_merged(g, &m, &e);
        if (rc == NERR_NOMEM)
            return nerr_set(err, rc, "%s", e.msg);
        if (!rc) {
            health_eval(m, g->pb->traffic.table, h);
            if (pred(h, arg)) {
                if (last) {
                    json_decref(*last);
                    *last = m;
                } else
                    json_decref(m);
                return 0;
            }
        } else {
            memset(h, 0, sizeof *h);
            gd_fmt(h->why, sizeof h->why, "%s", e.msg);
        }
        if (last) {
            json_decref(*last);
            *last = m;
        } else {
            json_decref(m);
        }
        if (clock_mono_ns() >= deadline)
            return nerr_set(err, NERR_TIMEOUT, "not healthy after %.0fs: %s", gd_secs(timeout_ns),
                            h->why[0] ? h->why : "no answer");
        if ((rc = gd_sleep_until(g, clock_mono_ns() + POLL_NS)))
            return nerr_set(err, rc, "cancelled");
    }
}

int gd_all_up_and_live(const struct health *h, void *arg)
{
    (void)arg;
    return all_up_and_live(h);
}

int gd_table_ready(const struct health *h, void *arg)
{
    unsigned want = *(unsigned *)arg;
    return all_up_and_live(h) && h->table_parts >= (int)want;
}

int gd_fully_replicated(const struct health *h, void *arg)
{
    (void)arg;
    return all_up_and_live(h) && h->parts_full == h->parts;
}

int gd_caught_up(const struct health *h, void *arg)
{
    (void)arg;
    return all_up_and_live(h) && h->members_behind == 0;
}

/* The traffic table's partitions -> the inventory hosts holding a replica,
 * from a merged status. */
void gd_learn_partitions(struct gd_run *g, const json_t *m, unsigned char (*holds)[GD_MAX_PARTS],
                         size_t nhosts)
{
    size_t i, j;
    json_t *p, *mem;
    unsigned n = 0;
    json_array_foreach(json_object_get(m, "partitions"), i, p)
    {
        const char *tab = json_string_value(json_object_get(p, "table"));
        json_int_t idx = json_integer_value(json_object_get(p, "partition"));
        if (!tab || strcmp(tab, g->pb->traffic.table) || idx < 0 || idx >= GD_MAX_PARTS)
            continue;
        if ((unsigned)idx + 1 > n)
            n = (unsigned)idx + 1;
        json_array_foreach(json_object_get(p, "members"), j, mem)
        {
            const char *node = json_string_value(json_object_get(mem, "node"));
            for (size_t k = 0; node && k < g->conf->nnodes; k++)
                if (!strcmp(g->conf->nodes[k].id, node) && g->node_host[k] >= 0 &&
                    (size_t)g->node_host[k] < nhosts)
                    holds[g->node_host[k]][idx] = 1;
        }
    }
    g->nparts = n;
}

/* The leader's node id of (table, part) in a merged status; 0 when the
 * partition is there without a leader, -1 when it is not there at all. */
static int leader_of(const json_t *m, const char *table, int part, char *out, size_t cap)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(m, "partitions"), i, p)
    {
        const char *tab = json_string_value(json_object_get(p, "table"));
        json_t *idx = json_object_get(p, "partition");
        if (!tab || strcmp(tab, table) || !json_is_integer(idx) ||
            json_integer_value(idx) != part)
            continue;
        const char *l = json_string_value(json_object_get(p, "leader"));
        if (!l)
            return 0;
        snprintf(out, cap, "%s", l);
        return 1;
    }
    return -1;
}

int gd_leader_now(struct gd_run *g, const char *table, int part, char *leader, size_t cap,
                  long *host)
{
    json_t *m = NULL;
    struct nerr e = {0};
    *host = -1;
    leader[0] = 0;
    if (fetch_merged(g, &m, &e))
        return -1;
    int seen = leader_of(m, table, part, leader, cap);
    json_decref(m);
    for (size_t k = 0; seen > 0 && k < g->conf->nnodes; k++)
        if (!strcmp(g->conf->nodes[k].id, leader))
            *host = g->node_host[k];
    return seen;
}

int gd_leader_unit(struct gd_run *g, const struct fault_targets *t, uint64_t deadline,
                   size_t **hosts, size_t *n, char *leader, size_t cap, struct nerr *err)
{
    const char *table = t->table ? t->table : g->pb->traffic.table;
    int seen, rc;
    long h = -1;
    *hosts = NULL;
    *n = 0;
    while ((seen = gd_leader_now(g, table, t->partition, leader, cap, &h)) <= 0) {
        if (clock_mono_ns() >= deadline)
            return nerr_set(err, NERR_TIMEOUT,
                            seen < 0 ? "select: leader: table %s has no partition %d in the "
                                       "cluster's status"
                                     : "select: leader: table %s partition %d has no leader",
                            table, t->partition);
        if ((rc = gd_sleep_until(g, clock_mono_ns() + POLL_NS)))
            return rc;
    }
    if (h < 0)
        return nerr_set(err, NERR_NOTFOUND,
                        "select: leader: the leader of %s partition %d is node %s, which is not "
                        "in the inventory",
                        table, t->partition, leader);
    const struct inv_host *lh = &g->inv->hosts[h];
    size_t *out = calloc(g->inv->n_hosts + 1, sizeof *out), k = 0;
    if (!out)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    for (size_t i = 0; i < g->inv->n_hosts; i++) {
        const struct inv_host *x = &g->inv->hosts[i];
        if (t->unit == FAULT_NODE ? (long)i == h
            : t->unit == FAULT_RACK ? !strcmp(x->az, lh->az) && !strcmp(x->rack, lh->rack)
                                    : !strcmp(x->az, lh->az))
            out[k++] = i;
    }
    *hosts = out;
    *n = k;
    return 0;
}
