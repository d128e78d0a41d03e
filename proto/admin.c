#include "proto/admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- encoding ---- */

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *int_or_null(int64_t v)
{
    return v == ADMIN_ABSENT ? json_null() : json_integer((json_int_t)v);
}

static json_t *bool_or_null(int v)
{
    return v == ADMIN_ABSENT ? json_null() : json_boolean(v);
}

static json_t *str_array(const char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t k = 0; a && k < n; k++)
        if (json_array_append_new(a, json_string(v[k] ? v[k] : ""))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *conf_to_json(const struct admin_group *g)
{
    json_t *o = json_object(), *v = str_array(g->conf_voters, g->nconf_voters),
           *l = str_array(g->conf_log, g->nconf_log),
           *vo = g->conf_joint == 1 ? str_array(g->conf_voters_out, g->nconf_voters_out) : NULL;
    int bad = !o || !v || !l || (g->conf_joint == 1 && !vo);
    if (!bad) {
        bad = json_object_set_new(o, "voters", v);
        v = NULL;
        if (!bad && vo) {
            bad = json_object_set_new(o, "voters_out", vo);
            vo = NULL;
        }
        if (!bad) {
            bad = json_object_set_new(o, "log", l);
            l = NULL;
        }
        bad = bad || json_object_set_new(o, "joint", bool_or_null(g->conf_joint)) ||
              json_object_set_new(o, "epoch", int_or_null(g->conf_epoch)) ||
              json_object_set_new(o, "committed", bool_or_null(g->conf_committed));
    }
    json_decref(v);
    json_decref(vo);
    json_decref(l);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Members are set in the wire order (admin.h): jansson keeps insertion
 * order, which is what makes the dump byte-compatible. */
static json_t *group_to_json(const struct admin_group *g)
{
    json_t *members = json_array();
    for (size_t k = 0; members && k < g->nmembers; k++)
        if (json_array_append_new(members, json_string(g->members[k]))) {
            json_decref(members);
            return NULL;
        }
    if (!members)
        return NULL;
    json_t *o = json_pack(
        "{s:s, s:o, s:o, s:o, s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "group",
        g->group ? g->group : "", "table", str_or_null(g->table), "table_id",
        str_or_null(g->table_id), "partition", int_or_null(g->partition), "members", members,
        "role", g->role ? g->role : "", "leader", str_or_null(g->leader), "term",
        int_or_null(g->term), "commit", int_or_null(g->commit), "applied", int_or_null(g->applied),
        "last_index", int_or_null(g->last_index), "first_index", int_or_null(g->first_index),
        "lease", bool_or_null(g->lease), "failed", bool_or_null(g->failed));
    if (o && g->quiescent == 1 && json_object_set_new(o, "quiescent", json_true())) {
        json_decref(o);
        return NULL;
    }
    if (o && g->snap_active) {
        json_t *sn =
            json_pack("{s:b, s:I, s:I, s:I, s:I, s:I, s:I}", "sending", g->snap_sending,
                      "peer_member", (json_int_t)g->snap_peer, "index", (json_int_t)g->snap_index,
                      "bytes", (json_int_t)g->snap_bytes, "total", (json_int_t)g->snap_total,
                      "rate_bps", (json_int_t)g->snap_rate, "eta_ms", (json_int_t)g->snap_eta_ms);
        if (!sn || json_object_set_new(o, "snapshot", sn)) {
            json_decref(o);
            return NULL;
        }
    }
    if (o && g->has_conf) {
        json_t *c = conf_to_json(g);
        if (!c || json_object_set_new(o, "conf", c)) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

int admin_status_to_json(const struct admin_status *s, json_t **out, struct nerr *err)
{
    json_t *groups = json_array();
    for (size_t i = 0; groups && i < s->ngroups; i++) {
        json_t *g = group_to_json(&s->groups[i]);
        if (!g || json_array_append_new(groups, g)) {
            json_decref(groups);
            groups = NULL;
        }
    }
    if (!groups)
        return nerr_set(err, NERR_NOMEM, "out of memory encoding the status");
    const struct admin_messages *m = &s->messages;
    const struct admin_node_log *l = &s->node_log;
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:o, s:o, s:{s:o, s:o, s:o, s:o, s:o, s:o, s:o}, "
        "s:{s:o, s:o, s:o, s:o, s:o}}",
        "node", s->node ? s->node : "", "az", s->az ? s->az : "", "rack", s->rack ? s->rack : "",
        "cluster", s->cluster ? s->cluster : "", "time_ms", int_or_null(s->time_ms), "groups",
        groups, "messages", "in", int_or_null(m->in), "out", int_or_null(m->out),
        "dropped_malformed", int_or_null(m->dropped_malformed), "dropped_forged",
        int_or_null(m->dropped_forged), "dropped_unknown_group",
        int_or_null(m->dropped_unknown_group), "dropped_by_raft", int_or_null(m->dropped_by_raft),
        "send_failures", int_or_null(m->send_failures), "node_log", "records",
        int_or_null(l->records), "syncs", int_or_null(l->syncs), "bytes", int_or_null(l->bytes),
        "segments", int_or_null(l->segments), "streams", int_or_null(l->streams));
    if (!o)
        return nerr_set(err, NERR_NOMEM, "out of memory encoding the status");
    if (s->has_quiescence) {
        json_t *q =
            json_pack("{s:I, s:I, s:I, s:I}", "asleep", (json_int_t)s->q_asleep, "ticked",
                      (json_int_t)s->q_ticked, "peer_down_reports", (json_int_t)s->q_peer_downs,
                      "peer_restarts", (json_int_t)s->q_peer_restarts);
        if (!q || json_object_set_new(o, "quiescence", q)) {
            json_decref(o);
            return nerr_set(err, NERR_NOMEM, "out of memory encoding the status");
        }
    }
    if (s->has_summary) {
        json_t *q = json_pack("{s:o, s:o, s:o, s:o}", "groups", int_or_null(s->sum_groups),
                              "leading", int_or_null(s->sum_leading), "asleep",
                              int_or_null(s->sum_asleep), "failed", int_or_null(s->sum_failed));
        if (!q || json_object_set_new(o, "summary", q)) {
            json_decref(o);
            return nerr_set(err, NERR_NOMEM, "out of memory encoding the status");
        }
    }
    *out = o;
    return 0;
}

/* ---- decoding ---- */

/* Where a decoding error is: "group 3 (p.t5.0)" or "the report". */
struct where {
    char text[160];
};

static int bad(struct nerr *err, const struct where *w, const char *key, const char *want)
{
    return nerr_set(err, NERR_PARSE, "NinesAdmin.Status: %s: \"%s\" is not %s", w->text, key, want);
}

/* A string or null member; absent: NULL. */
static int get_str(const json_t *o, const char *key, int required, const char **out,
                   const struct where *w, struct nerr *err)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (required)
            return nerr_set(err, NERR_PARSE, "NinesAdmin.Status: %s lacks \"%s\"", w->text, key);
        return 0;
    }
    if (!json_is_string(v))
        return bad(err, w, key, "a string");
    *out = json_string_value(v);
    return 0;
}

/* A non-negative integer or null member; absent or null: ADMIN_ABSENT. */
static int get_int(const json_t *o, const char *key, int64_t *out, const struct where *w,
                   struct nerr *err)
{
    json_t *v = json_object_get(o, key);
    *out = ADMIN_ABSENT;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return bad(err, w, key, "a non-negative integer");
    *out = (int64_t)json_integer_value(v);
    return 0;
}

static int get_bool(const json_t *o, const char *key, int *out, const struct where *w,
                    struct nerr *err)
{
    json_t *v = json_object_get(o, key);
    *out = ADMIN_ABSENT;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return bad(err, w, key, "a boolean");
    *out = json_is_true(v);
    return 0;
}

/* An optional object member; absent: NULL. */
static int get_obj(const json_t *o, const char *key, const json_t **out, const struct where *w,
                   struct nerr *err)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return bad(err, w, key, "an object");
    *out = v;
    return 0;
}

/* An optional array of strings (malloc'd *out, borrowing the strings). */
static int get_strs(const json_t *o, const char *key, const char *const **out, size_t *n,
                    const struct where *w, struct nerr *err)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    *n = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return bad(err, w, key, "an array");
    size_t len = json_array_size(v);
    const char **ids = len ? calloc(len, sizeof *ids) : NULL;
    if (len && !ids)
        return nerr_set(err, NERR_NOMEM, "out of memory decoding the status");
    *out = ids;
    *n = len;
    for (size_t k = 0; k < len; k++)
        if (!(ids[k] = json_string_value(json_array_get(v, k))))
            return bad(err, w, key, "an array of strings");
    return 0;
}

static int group_from_json(const json_t *j, size_t index, struct admin_group *g, struct nerr *err)
{
    struct where w;
    memset(g, 0, sizeof *g);
    snprintf(w.text, sizeof w.text, "group %zu", index + 1);
    if (!json_is_object(j))
        return nerr_set(err, NERR_PARSE, "NinesAdmin.Status: %s is not an object", w.text);
    if (get_str(j, "group", 1, &g->group, &w, err))
        return NERR_PARSE;
    snprintf(w.text, sizeof w.text, "group %zu (%.100s)", index + 1, g->group);
    json_t *members = json_object_get(j, "members");
    if (members && !json_is_null(members)) {
        if (!json_is_array(members))
            return bad(err, &w, "members", "an array");
        size_t n = json_array_size(members);
        const char **ids = n ? calloc(n, sizeof *ids) : NULL;
        if (n && !ids)
            return nerr_set(err, NERR_NOMEM, "out of memory decoding the status");
        g->members = ids;
        g->nmembers = n;
        for (size_t k = 0; k < n; k++)
            if (!(ids[k] = json_string_value(json_array_get(members, k))))
                return bad(err, &w, "members", "an array of strings");
    }
    if (get_str(j, "table", 0, &g->table, &w, err) ||
        get_str(j, "table_id", 0, &g->table_id, &w, err) ||
        get_int(j, "partition", &g->partition, &w, err) ||
        get_str(j, "role", 0, &g->role, &w, err) || get_str(j, "leader", 0, &g->leader, &w, err) ||
        get_int(j, "term", &g->term, &w, err) || get_int(j, "commit", &g->commit, &w, err) ||
        get_int(j, "applied", &g->applied, &w, err) ||
        get_int(j, "last_index", &g->last_index, &w, err) ||
        get_int(j, "first_index", &g->first_index, &w, err) ||
        get_bool(j, "lease", &g->lease, &w, err) || get_bool(j, "failed", &g->failed, &w, err) ||
        get_bool(j, "quiescent", &g->quiescent, &w, err))
        return NERR_PARSE;
    const json_t *sn = json_object_get(j, "snapshot");
    if (sn && !json_is_null(sn)) {
        int sending = 0;
        if (!json_is_object(sn) || get_bool(sn, "sending", &sending, &w, err) ||
            get_int(sn, "peer_member", &g->snap_peer, &w, err) ||
            get_int(sn, "index", &g->snap_index, &w, err) ||
            get_int(sn, "bytes", &g->snap_bytes, &w, err) ||
            get_int(sn, "total", &g->snap_total, &w, err) ||
            get_int(sn, "rate_bps", &g->snap_rate, &w, err) ||
            get_int(sn, "eta_ms", &g->snap_eta_ms, &w, err))
            return bad(err, &w, "snapshot", "an object of a snapshot stream's progress");
        g->snap_active = 1;
        g->snap_sending = sending == 1;
    }
    const json_t *cf = json_object_get(j, "conf");
    if (cf && !json_is_null(cf)) {
        if (!json_is_object(cf))
            return bad(err, &w, "conf", "an object");
        g->has_conf = 1;
        int rc = get_strs(cf, "voters", &g->conf_voters, &g->nconf_voters, &w, err);
        if (!rc)
            rc = get_strs(cf, "voters_out", &g->conf_voters_out, &g->nconf_voters_out, &w, err);
        if (!rc)
            rc = get_strs(cf, "log", &g->conf_log, &g->nconf_log, &w, err);
        if (rc || get_bool(cf, "joint", &g->conf_joint, &w, err) ||
            get_int(cf, "epoch", &g->conf_epoch, &w, err) ||
            get_bool(cf, "committed", &g->conf_committed, &w, err))
            return rc ? rc : NERR_PARSE;
    }
    return 0;
}

int admin_status_from_json(const json_t *j, struct admin_status *out, struct nerr *err)
{
    struct admin_status s;
    struct where w = {"the report"};
    const json_t *m = NULL, *l = NULL, *sum = NULL;
    int rc = NERR_PARSE;
    memset(&s, 0, sizeof s);
    memset(out, 0, sizeof *out);
    if (!json_is_object(j)) {
        nerr_set(err, NERR_PARSE, "NinesAdmin.Status: the report is not a JSON object");
        goto fail;
    }
    json_t *groups = json_object_get(j, "groups");
    if (get_str(j, "node", 1, &s.node, &w, err) || get_str(j, "az", 0, &s.az, &w, err) ||
        get_str(j, "rack", 0, &s.rack, &w, err) || get_str(j, "cluster", 0, &s.cluster, &w, err) ||
        get_int(j, "time_ms", &s.time_ms, &w, err) || get_obj(j, "messages", &m, &w, err) ||
        get_obj(j, "node_log", &l, &w, err) || get_obj(j, "summary", &sum, &w, err))
        goto fail;
    if (!json_is_array(groups)) {
        nerr_set(err, NERR_PARSE, "NinesAdmin.Status: the report lacks \"groups\" (an array)");
        goto fail;
    }
    struct where wm = {"\"messages\""}, wl = {"\"node_log\""};
    if (get_int(m, "in", &s.messages.in, &wm, err) ||
        get_int(m, "out", &s.messages.out, &wm, err) ||
        get_int(m, "dropped_malformed", &s.messages.dropped_malformed, &wm, err) ||
        get_int(m, "dropped_forged", &s.messages.dropped_forged, &wm, err) ||
        get_int(m, "dropped_unknown_group", &s.messages.dropped_unknown_group, &wm, err) ||
        get_int(m, "dropped_by_raft", &s.messages.dropped_by_raft, &wm, err) ||
        get_int(m, "send_failures", &s.messages.send_failures, &wm, err) ||
        get_int(l, "records", &s.node_log.records, &wl, err) ||
        get_int(l, "syncs", &s.node_log.syncs, &wl, err) ||
        get_int(l, "bytes", &s.node_log.bytes, &wl, err) ||
        get_int(l, "segments", &s.node_log.segments, &wl, err) ||
        get_int(l, "streams", &s.node_log.streams, &wl, err))
        goto fail;
    struct where wsum = {"\"summary\""};
    s.has_summary = sum != NULL;
    if (get_int(sum, "groups", &s.sum_groups, &wsum, err) ||
        get_int(sum, "leading", &s.sum_leading, &wsum, err) ||
        get_int(sum, "asleep", &s.sum_asleep, &wsum, err) ||
        get_int(sum, "failed", &s.sum_failed, &wsum, err))
        goto fail;
    size_t n = json_array_size(groups);
    if (n && !(s.groups = calloc(n, sizeof *s.groups))) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory decoding the status");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        s.ngroups = i + 1; /* the group being read is freed too on failure */
        if ((rc = group_from_json(json_array_get(groups, i), i, &s.groups[i], err)))
            goto fail;
    }
    s.src = json_incref((json_t *)j);
    *out = s;
    return 0;
fail:
    admin_status_clear(&s);
    return rc;
}

void admin_status_clear(struct admin_status *s)
{
    for (size_t i = 0; s->groups && i < s->ngroups; i++) {
        free((void *)s->groups[i].members);
        free((void *)s->groups[i].conf_voters);
        free((void *)s->groups[i].conf_voters_out);
        free((void *)s->groups[i].conf_log);
    }
    free(s->groups);
    json_decref(s->src);
    memset(s, 0, sizeof *s);
}

int admin_group_role_is(const struct admin_group *g, const char *role)
{
    return g->role && !strcmp(g->role, role);
}
