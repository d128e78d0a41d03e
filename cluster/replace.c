/*
 * replace.c — `nines cluster replace NODE [--to NODE2]` and
 * `nines cluster decommission NODE`: move every replica NODE holds to
 * other nodes, one partition's replacement at a time per partition and at
 * most --parallel partitions at once (docs/cluster.md, "Replacing a node";
 * the store side: store/admin_member.c and store/healer.h).
 *
 * For each table (ListTables, DescribeTable: its Placement lists the
 * members of every partition now), each partition NODE holds a member of
 * is asked to replace it (NinesAdmin.ReplaceReplica, sent to the nodes in
 * file order until a member of the metadata group takes it); the
 * partition's leader then changes the configuration by joint consensus
 * and the healers finish it once the new member has caught up. Progress is
 * read back from DescribeTable: a partition is done when NODE is no longer
 * in its Placement. NODE need not answer (it may be dead): only the other
 * nodes are asked. The metadata group's members are fixed by the cluster
 * file and are not moved: a NODE that is one of them is refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/cluster.h"
#include "lib/clock.h"
#include "proto/ddb.h"

struct work {
    char *table;
    int part;
    int state; /* 0 to start, 1 started, 2 done */
    int64_t started_ms;
    char with[64];
};

struct rrun {
    const struct cluster_conf *c;
    const char *node, *to;
    struct ddb_client **cls; /* per node of the file; NULL for NODE itself */
    FILE *out;
};

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* One call to the first node (file order, NODE skipped) that answers it
 * with 200, or the last answer: 0 with *status and *resp, or the last
 * transport error. */
static int call_any(struct rrun *r, const char *op, json_t *req, int *status, json_t **resp,
                    struct nerr *err)
{
    int rc = NERR_IO;
    *resp = NULL;
    nerr_set(err, rc, "no node answered");
    for (size_t i = 0; i < r->c->nnodes; i++) {
        if (!r->cls[i])
            continue;
        json_t *j = NULL;
        int st = 0;
        struct nerr e = {0};
        if (ddb_call(r->cls[i], op, req, &st, &j, &e)) {
            nerr_set(err, NERR_IO, "node %s: %s", r->c->nodes[i].id, e.msg);
            continue;
        }
        json_decref(*resp);
        *resp = j;
        *status = st;
        rc = 0;
        /* Not a meta member, or no leader there: the next node. */
        if (st == 200 || st < 500)
            break;
    }
    return rc;
}

/* The partitions of every table that NODE holds a member of, appended to
 * *w; *done counts those of earlier work that no longer have it. */
static int scan(struct rrun *r, struct work **w, size_t *n, int first, struct nerr *err)
{
    json_t *start = NULL;
    for (;;) {
        json_t *req = json_object(), *resp = NULL;
        if (start)
            json_object_set(req, "ExclusiveStartTableName", start);
        int st = 0;
        if (call_any(r, "ListTables", req, &st, &resp, err) || st != 200) {
            if (st && resp)
                nerr_set(err, NERR_IO, "ListTables: HTTP %d", st);
            json_decref(req);
            json_decref(resp);
            json_decref(start);
            return NERR_IO;
        }
        json_decref(req);
        size_t i;
        json_t *tn;
        json_array_foreach(json_object_get(resp, "TableNames"), i, tn)
        {
            json_t *dr = json_pack("{s:O}", "TableName", tn), *d = NULL;
            int ds = 0;
            if (call_any(r, "DescribeTable", dr, &ds, &d, err) || ds != 200) {
                json_decref(dr);
                json_decref(d);
                continue; /* deleted meanwhile */
            }
            json_decref(dr);
            const char *name = json_string_value(tn);
            size_t p;
            json_t *slots;
            json_array_foreach(json_object_get(json_object_get(d, "Table"), "Placement"), p, slots)
            {
                int holds = 0;
                size_t k;
                json_t *s;
                json_array_foreach(slots, k, s) holds |=
                    json_is_string(s) && !strcmp(json_string_value(s), r->node);
                struct work *x = NULL;
                for (size_t j = 0; j < *n && !x; j++)
                    if ((*w)[j].part == (int)p && !strcmp((*w)[j].table, name))
                        x = &(*w)[j];
                if (x) {
                    if (!holds && x->state != 2) {
                        x->state = 2;
                        fprintf(r->out, "  %s partition %d: %s replaced by %s (%.1f s)\n", name,
                                x->part, r->node, x->with[0] ? x->with : "?",
                                x->started_ms ? (double)(clock_mono_ms() - x->started_ms) / 1000
                                              : 0.0);
                    }
                    continue;
                }
                if (!holds || !first)
                    continue;
                struct work *nw = realloc(*w, (*n + 1) * sizeof *nw);
                if (!nw) {
                    json_decref(d);
                    json_decref(resp);
                    json_decref(start);
                    return nerr_set(err, NERR_NOMEM, "out of memory");
                }
                *w = nw;
                (*w)[*n] = (struct work){.table = strdup(name), .part = (int)p};
                (*n)++;
            }
            json_decref(d);
        }
        json_t *last = json_object_get(resp, "LastEvaluatedTableName");
        json_decref(start);
        start = last ? json_incref(last) : NULL;
        json_decref(resp);
        if (!start)
            return 0;
    }
}

/* Asks for one partition's replacement: 0 started (or under way), 1 to
 * try again later, -1 refused for good (said on stderr). */
static int start_one(struct rrun *r, struct work *x)
{
    json_t *req =
        json_pack("{s:s,s:i,s:s}", "TableName", x->table, "Partition", x->part, "Node", r->node);
    if (r->to)
        json_object_set_new(req, "To", json_string(r->to));
    json_object_set_new(req, "Avoid", json_pack("[s]", r->node));
    json_t *resp = NULL;
    int st = 0;
    struct nerr e = {0};
    int rc = call_any(r, "NinesAdmin.ReplaceReplica", req, &st, &resp, &e);
    json_decref(req);
    int out = 1;
    if (!rc && st == 200) {
        snprintf(x->with, sizeof x->with, "%s",
                 json_string_value(json_object_get(resp, "With"))
                     ? json_string_value(json_object_get(resp, "With"))
                     : "?");
        x->state = 1;
        x->started_ms = clock_mono_ms();
        fprintf(r->out, "  %s partition %d: replacing %s by %s%s\n", x->table, x->part, r->node,
                x->with,
                json_is_true(json_object_get(resp, "Already")) ? " (already under way)" : "");
        out = 0;
    } else if (!rc && st >= 400 && st < 500) {
        const char *msg = json_string_value(json_object_get(resp, "message"));
        if (!msg)
            msg = json_string_value(json_object_get(resp, "Message"));
        /* Another change of the partition first (a healer's): later. */
        if (msg && strstr(msg, "one change at a time")) {
            out = 1;
        } else {
            fprintf(stderr, "nines cluster: %s partition %d: %s\n", x->table, x->part,
                    msg ? msg : "refused");
            x->state = 2;
            out = -1;
        }
    }
    json_decref(resp);
    return out;
}

int cluster_replace_run(const struct cluster_conf *c, const char *node, const char *to,
                        int parallel, double timeout_s, FILE *out)
{
    if (!cluster_conf_node(c, node)) {
        fprintf(stderr, "nines cluster: %s is no node of %s\n", node, c->path);
        return 2;
    }
    if (to && (!cluster_conf_node(c, to) || !strcmp(to, node))) {
        fprintf(stderr, "nines cluster: --to %s: another node of %s is needed\n", to, c->path);
        return 2;
    }
    struct rrun r = {.c = c, .node = node, .to = to, .out = out};
    struct work *w = NULL;
    size_t n = 0;
    int rc = 1, failed = 0;
    struct nerr e = {0};
    r.cls = calloc(c->nnodes, sizeof *r.cls);
    if (!r.cls) {
        fprintf(stderr, "nines cluster: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < c->nnodes; i++)
        if (strcmp(c->nodes[i].id, node))
            r.cls[i] = cluster_node_client(c, i, 5000, &e);
    if (scan(&r, &w, &n, 1, &e)) {
        fprintf(stderr, "nines cluster: reading the tables: %s\n", e.msg);
        goto done;
    }
    fprintf(out, "%s holds %zu partition replica%s to move\n", node, n, n == 1 ? "" : "s");
    int64_t deadline = clock_mono_ms() + (int64_t)(timeout_s * 1000);
    for (;;) {
        size_t active = 0, left = 0;
        for (size_t i = 0; i < n; i++) {
            active += w[i].state == 1;
            left += w[i].state != 2;
        }
        if (!left)
            break;
        for (size_t i = 0; i < n && active < (size_t)parallel; i++)
            if (w[i].state == 0) {
                int s = start_one(&r, &w[i]);
                active += s == 0;
                failed += s < 0;
            }
        if (clock_mono_ms() >= deadline) {
            fprintf(stderr, "nines cluster: %zu of %zu replicas not moved after %.0f s\n", left, n,
                    timeout_s);
            goto done;
        }
        sleep_ms(300);
        if (scan(&r, &w, &n, 0, &e))
            fprintf(stderr, "nines cluster: reading progress: %s (trying again)\n", e.msg);
    }
    if (!failed) {
        fprintf(out, "%s holds no replica any more\n", node);
        rc = 0;
    }
done:
    for (size_t i = 0; i < n; i++)
        free(w[i].table);
    free(w);
    for (size_t i = 0; i < c->nnodes; i++)
        ddb_client_free(r.cls[i]);
    free(r.cls);
    return rc;
}
