/*
 * gameday/verify.c — the verification at the end of a run: the checkers on
 * the recorded history (checkers/check.h) and the status checks, each as a
 * JSON object of the report (contract in run.h).
 */
#include "gameday/run.h"

#include <string.h>

#include "checkers/check.h"
#include "checkers/history.h"

json_t *gd_verify_checkers(struct gd_run *g, int *ok)
{
    char path[PATH_MAX + 16];
    struct history *h = NULL;
    struct chk_result *res = NULL;
    struct nerr e = {0};
    json_t *j = json_object();
    struct chk_opts co;
    memset(&co, 0, sizeof co);
    co.lin.time_limit = 60;
    co.lin.memory_limit = (size_t)1024 << 20;
    gd_fmt(path, sizeof path, "%s/history.jsonl", g->dir);
    *ok = 0;
    if (history_load_file(path, &h, &e) || chk_run(h, &co, &res, &e)) {
        json_object_set_new(j, "error", json_string(e.msg));
        goto out;
    }
    *ok = res->verdict == CHK_VALID;
    json_object_set_new(j, "verdict", json_string(chk_verdict_name(res->verdict)));
    json_object_set_new(j, "acked_writes", json_integer((json_int_t)res->acked_writes));
    json_object_set_new(j, "verified_writes", json_integer((json_int_t)res->verified_writes));
    json_object_set_new(j, "unverified_keys", json_integer(res->unverified_keys));
    json_t *counts = json_object();
    for (int k = 0; k < CHK_NKINDS; k++)
        json_object_set_new(counts, chk_kind_name((enum chk_kind)k),
                            json_integer((json_int_t)res->counts[k]));
    json_object_set_new(j, "anomalies", counts);
    json_t *first = json_array();
    for (size_t i = 0; i < res->nanomalies && i < 20; i++) {
        char d[600];
        chk_op_describe(h, res->anomalies[i].op, d, sizeof d);
        json_array_append_new(first, json_pack("{s:s,s:s,s:s}", "kind",
                                               chk_kind_name(res->anomalies[i].kind), "detail",
                                               res->anomalies[i].detail, "op", d));
    }
    json_object_set_new(j, "first", first);
out:
    json_object_set_new(j, "passed", json_boolean(*ok));
    chk_result_free(res);
    history_free(h);
    return j;
}

json_t *gd_verify_status(struct gd_run *g, gd_pred pred, const char *what, int *ok)
{
    struct health h;
    struct nerr e = {0};
    *ok = !gd_wait_for(g, g->pb->verify.timeout_ns, pred, NULL, &h, NULL, &e);
    return json_pack("{s:b,s:s,s:i,s:i,s:i,s:i,s:s}", "passed", *ok, "check", what, "groups",
                     h.parts, "groups_with_leader", h.parts_led, "groups_with_3_live", h.parts_full,
                     "members_behind", h.members_behind, "detail", *ok ? "" : e.msg);
}
