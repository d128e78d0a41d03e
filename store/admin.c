/*
 * admin.c — the NinesAdmin operations (api.h: api_admin): Status, this
 * node's groups and their consensus state (docs/replication.md), and
 * Catalog, every table description this node knows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "store/api_internal.h"
#include "store/archiver.h"
#include "proto/clusterfile.h"
#include "store/nodelog.h"
#include "proto/admin.h"

static const char *role_name(enum raft_role r)
{
    switch (r) {
    case RAFT_LEADER:
        return "leader";
    case RAFT_CANDIDATE:
        return "candidate";
    case RAFT_PRE_CANDIDATE:
        return "pre-candidate";
    default:
        return "follower";
    }
}

/* The groups of this node, collected for the status. A table may be
 * deleted (and its group closed) once catalog_each_group has moved on, so
 * every string is copied: one block per group, which the group's members
 * array points at. */
struct groups_acc {
    struct admin_group *g;
    size_t n, cap;
    int nomem;
    int list;                               /* 0: the summary only ({"Groups": false}) */
    int64_t total, leading, asleep, failed; /* the summary */
};

/* Copies the strings of g (borrowed from the group, its table and a
 * stack buffer) into one malloc'd block that g->members points at: the
 * pointer arrays (members, then the configuration's lists), then the
 * strings. */
static int own_strings(struct admin_group *g)
{
    const char *strs[4] = {g->group, g->table, g->table_id, g->leader};
    const char *const *lists[4] = {g->members, g->conf_voters, g->conf_voters_out, g->conf_log};
    size_t lens[4] = {g->nmembers, g->nconf_voters, g->nconf_voters_out, g->nconf_log};
    size_t slots = 1, bytes = 0;
    for (int i = 0; i < 4; i++)
        bytes += strs[i] ? strlen(strs[i]) + 1 : 0;
    for (int l = 0; l < 4; l++) {
        slots += lens[l];
        for (size_t k = 0; k < lens[l]; k++)
            bytes += strlen(lists[l][k]) + 1;
    }
    const char **block = malloc(slots * sizeof(char *) + bytes);
    if (!block)
        return -1;
    char *p = (char *)(block + slots);
    const char **fields[4] = {&g->group, &g->table, &g->table_id, &g->leader};
    for (int i = 0; i < 4; i++)
        if (strs[i]) {
            *fields[i] = strcpy(p, strs[i]);
            p += strlen(p) + 1;
        }
    const char *const **lfields[4] = {&g->members, &g->conf_voters, &g->conf_voters_out,
                                      &g->conf_log};
    const char **q = block;
    for (int l = 0; l < 4; l++) {
        *lfields[l] = q;
        for (size_t k = 0; k < lens[l]; k++) {
            *q++ = strcpy(p, lists[l][k]);
            p += strlen(p) + 1;
        }
    }
    return 0;
}

/* The node ids of the member ids in mask (an id without a node: "#id"),
 * into out[] (names[] holds the "#id" strings). */
static size_t ids_of(uint32_t mask, const struct group_members *m, const char **out,
                     char names[][8])
{
    size_t n = 0;
    for (uint32_t id = 1; id <= RAFT_MAX_MEMBERS; id++)
        if (mask & (1u << id)) {
            if (m->nodes[id - 1]) {
                out[n++] = m->nodes[id - 1];
            } else {
                snprintf(names[id - 1], sizeof names[0], "#%u", id);
                out[n++] = names[id - 1];
            }
        }
    return n;
}

static void status_group(void *arg, struct table *t, int part, struct group *g)
{
    struct groups_acc *acc = arg;
    struct group_status st;
    struct group_members m;
    struct group_conf_info ci;
    char buf[RAFT_MAX_MEMBERS * 128], names[RAFT_MAX_MEMBERS][8];
    const char *members[RAFT_MAX_MEMBERS], *voters[RAFT_MAX_MEMBERS], *voters_out[RAFT_MAX_MEMBERS],
        *logm[RAFT_MAX_MEMBERS];
    group_status(g, &st);
    acc->total++;
    acc->leading += st.role == RAFT_LEADER;
    acc->asleep += st.quiescent != 0;
    acc->failed += st.failed != 0;
    if (!acc->list)
        return;
    /* The slots now (they change with group_set_members), copied. */
    if (group_members_get(g, &m, buf, sizeof buf)) {
        acc->nomem = 1;
        return;
    }
    group_conf_get(g, &ci);
    size_t nmembers = 0;
    for (uint32_t k = 0; k < RAFT_MAX_MEMBERS; k++)
        if (m.nodes[k])
            members[nmembers++] = m.nodes[k];
    /* All zero: the initial configuration, ids 1..n storage voters. */
    uint32_t vmask = ci.conf.voters;
    if (!vmask)
        for (uint32_t id = 1; id <= m.n; id++)
            vmask |= 1u << id;
    if (acc->n == acc->cap) {
        size_t cap = acc->cap ? acc->cap * 2 : 16;
        struct admin_group *ng = realloc(acc->g, cap * sizeof *ng);
        if (!ng) {
            acc->nomem = 1;
            return;
        }
        acc->g = ng;
        acc->cap = cap;
    }
    struct admin_group *o = &acc->g[acc->n++];
    *o = (struct admin_group){
        .group = group_name(g),
        .table = t ? t->name : NULL,
        .table_id = t ? t->id : NULL,
        .partition = t ? part : ADMIN_ABSENT,
        .members = members,
        .nmembers = nmembers,
        .role = role_name(st.role),
        .leader = st.leader && st.leader <= RAFT_MAX_MEMBERS ? m.nodes[st.leader - 1] : NULL,
        .term = (int64_t)st.term,
        .commit = (int64_t)st.commit,
        .applied = (int64_t)st.applied,
        .last_index = (int64_t)st.last_index,
        .first_index = (int64_t)st.first_index,
        .lease = st.lease != 0,
        .quiescent = st.quiescent != 0,
        .failed = st.failed != 0,
        .snap_active = st.snap_active,
        .snap_sending = st.snap_sending,
        .snap_peer = st.snap_peer,
        .snap_index = (int64_t)st.snap_index,
        .snap_bytes = (int64_t)st.snap_bytes,
        .snap_total = (int64_t)st.snap_total,
        .snap_rate = (int64_t)st.snap_rate,
        .snap_eta_ms = (int64_t)st.snap_eta_ms,
        .has_conf = 1,
        .conf_voters = voters,
        .nconf_voters = ids_of(vmask, &m, voters, names),
        .conf_voters_out = voters_out,
        .nconf_voters_out = ids_of(ci.conf.voters_out, &m, voters_out, names),
        .conf_log = logm,
        .nconf_log = ids_of(ci.conf.log, &m, logm, names),
        .conf_joint = ci.conf.voters_out != 0,
        .conf_epoch = (int64_t)ci.index,
        .conf_committed = ci.committed != 0,
    };
    if (own_strings(o)) {
        acc->n--;
        acc->nomem = 1;
    }
}

void admin_catalog(struct call *c, json_t *req)
{
    (void)req;
    json_t *d = catalog_descs(c->a->opt.cat);
    api_reply_json(c, json_pack("{s:o}", "tables", d ? d : json_array()));
}

/* The status is encoded by proto/admin.h, the model every reader decodes. */
void admin_status(struct call *c, json_t *req)
{
    struct api *a = c->a;
    const struct cluster_conf *conf = a->opt.conf;
    const struct cluster_node *self = conf ? cluster_conf_node(conf, a->opt.self_id) : NULL;
    /* {"Groups": false}: the counts without the list of every group (a
     * node with 100,000 partitions answers megabytes otherwise). */
    json_t *want = json_object_get(req, "Groups");
    if (want && !json_is_boolean(want)) {
        api_reply_err(c, "ValidationException", "Groups: a boolean");
        return;
    }
    struct groups_acc acc = {.list = !want || json_is_true(want)};
    catalog_each_group(a->opt.cat, status_group, &acc);
    struct group_host_stats hs = {0};
    struct nodelog_stats ls = {0};
    if (a->opt.host) {
        group_host_stats(a->opt.host, &hs);
        group_host_log_stats(a->opt.host, &ls);
    }
    struct admin_status s = {
        .node = a->opt.self_id ? a->opt.self_id : "",
        .az = self ? self->az : "",
        .rack = self ? self->rack : "",
        .cluster = conf ? conf->name : "",
        .time_ms = clock_wall_ms(),
        .groups = acc.g,
        .ngroups = acc.n,
        .messages = {(int64_t)hs.msgs_in, (int64_t)hs.msgs_out, (int64_t)hs.dropped_malformed,
                     (int64_t)hs.dropped_forged, (int64_t)hs.dropped_unknown,
                     (int64_t)hs.dropped_raft, (int64_t)hs.send_failures},
        .has_quiescence = a->opt.host != NULL,
        .q_asleep = (int64_t)hs.quiescent_groups,
        .q_ticked = (int64_t)hs.active_groups,
        .q_peer_downs = (int64_t)hs.peer_down_reports,
        .q_peer_restarts = (int64_t)hs.peer_restarts,
        .has_summary = 1,
        .sum_groups = acc.total,
        .sum_leading = acc.leading,
        .sum_asleep = acc.asleep,
        .sum_failed = acc.failed,
        .node_log = {(int64_t)ls.wal.records, (int64_t)ls.wal.syncs, (int64_t)ls.wal.bytes,
                     (int64_t)ls.wal.segments, (int64_t)ls.streams},
    };
    json_t *o = NULL;
    struct nerr e = {0};
    if (acc.nomem || admin_status_to_json(&s, &o, &e)) {
        api_reply_err(c, "InternalServerError", "out of memory");
    } else {
        struct archiver *ar = catalog_archiver(a->opt.cat);
        if (ar)
            json_object_set_new(o, "archive", archiver_status(ar));
        api_reply_json(c, o);
    }
    for (size_t i = 0; i < acc.n; i++)
        free((void *)acc.g[i].members);
    free(acc.g);
}

void api_admin(struct api *a, const char *op, const char *body, size_t len, api_reply_fn reply,
               void *arg)
{
    struct call c = {a, reply, arg, NULL, 0};
    const struct api_opdef *d = router_op(op, 1);
    if (!d) {
        api_reply_err(&c, "UnknownOperationException", "%s", "");
        return;
    }
    /* The request: a JSON object, or nothing (Status and Catalog take no
     * arguments). Handlers borrow it. */
    json_error_t je;
    json_t *req = len ? json_loadb(body, len, 0, &je) : json_object();
    if (!req || !json_is_object(req)) {
        json_decref(req);
        api_reply_err(&c, "SerializationException", "the request body is not a JSON object");
        return;
    }
    d->handler(&c, req);
    json_decref(req);
}
