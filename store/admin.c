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
#include "store/config.h"
#include "store/nodelog.h"

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

static void status_group(void *arg, struct table *t, int part, struct group *g)
{
    json_t *arr = arg;
    struct group_status st;
    const struct group_members *m = group_members_of(g);
    group_status(g, &st);
    json_t *members = json_array();
    for (uint32_t k = 0; k < m->n; k++)
        json_array_append_new(members, json_string(m->nodes[k]));
    json_t *o = json_pack(
        "{s:s, s:o, s:o, s:o, s:o, s:s, s:o, s:I, s:I, s:I, s:I, s:I, s:b, s:b}", "group",
        group_name(g), "table", t ? json_string(t->name) : json_null(), "table_id",
        t ? json_string(t->id) : json_null(), "partition", t ? json_integer(part) : json_null(),
        "members", members, "role", role_name(st.role), "leader",
        st.leader ? json_string(m->nodes[st.leader - 1]) : json_null(), "term", (json_int_t)st.term,
        "commit", (json_int_t)st.commit, "applied", (json_int_t)st.applied, "last_index",
        (json_int_t)st.last_index, "first_index", (json_int_t)st.first_index, "lease", st.lease,
        "failed", st.failed);
    if (o)
        json_array_append_new(arr, o);
}

void admin_catalog(struct call *c, json_t *req)
{
    (void)req;
    json_t *d = catalog_descs(c->a->opt.cat);
    api_reply_json(c, json_pack("{s:o}", "tables", d ? d : json_array()));
}

void admin_status(struct call *c, json_t *req)
{
    (void)req;
    struct api *a = c->a;
    const struct cluster_conf *conf = a->opt.conf;
    const struct cluster_node *self = conf ? cluster_conf_node(conf, a->opt.self_id) : NULL;
    json_t *groups = json_array();
    catalog_each_group(a->opt.cat, status_group, groups);
    struct group_host_stats hs = {0};
    struct nodelog_stats ls = {0};
    if (a->opt.host) {
        group_host_stats(a->opt.host, &hs);
        group_host_log_stats(a->opt.host, &ls);
    }
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:I, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I}, "
                  "s:{s:I, s:I, s:I, s:I, s:I}}",
                  "node", a->opt.self_id ? a->opt.self_id : "", "az", self ? self->az : "", "rack",
                  self ? self->rack : "", "cluster", conf ? conf->name : "", "time_ms",
                  (json_int_t)clock_wall_ms(), "groups", groups, "messages", "in",
                  (json_int_t)hs.msgs_in, "out", (json_int_t)hs.msgs_out, "dropped_malformed",
                  (json_int_t)hs.dropped_malformed, "dropped_forged", (json_int_t)hs.dropped_forged,
                  "dropped_unknown_group", (json_int_t)hs.dropped_unknown, "dropped_by_raft",
                  (json_int_t)hs.dropped_raft, "send_failures", (json_int_t)hs.send_failures,
                  "node_log", "records", (json_int_t)ls.wal.records, "syncs",
                  (json_int_t)ls.wal.syncs, "bytes", (json_int_t)ls.wal.bytes, "segments",
                  (json_int_t)ls.wal.segments, "streams", (json_int_t)ls.streams);
    api_reply_json(c, o);
}

void api_admin(struct api *a, const char *op, api_reply_fn reply, void *arg)
{
    struct call c = {a, reply, arg, NULL, 0};
    const struct api_opdef *d = router_op(op, 1);
    if (!d) {
        api_reply_err(&c, "UnknownOperationException", "%s", "");
        return;
    }
    d->handler(&c, NULL);
}
