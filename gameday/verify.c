/*
 * gameday/verify.c — the verification at the end of a run: the checkers on
 * the recorded history (checkers/check.h) and the status checks, each as a
 * JSON object of the report (contract in run.h).
 */
#include "gameday/run.h"

#include "fault/bit_rot.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "checkers/check.h"
#include "checkers/history.h"
#include "lib/proc.h"

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
        size_t kl = 0;
        const char *key = history_key(h, res->anomalies[i].key, &kl);
        json_array_append_new(first, json_pack("{s:s,s:s,s:s,s:s%}", "kind",
                                               chk_kind_name(res->anomalies[i].kind), "detail",
                                               res->anomalies[i].detail, "op", d, "key",
                                               key ? key : "", key ? kl : (size_t)0));
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

/* The nines program next to the running one (build/bin/nines; a test
 * binary in build/t finds it in ../bin), else "nines" through PATH. */
static void nines_program(char *buf, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    snprintf(buf, cap, "nines");
    if (n <= 0)
        return;
    self[n] = 0;
    char *sl = strrchr(self, '/');
    if (!sl)
        return;
    *sl = 0;
    gd_fmt(buf, cap, "%s/nines", self);
    if (access(buf, X_OK))
        gd_fmt(buf, cap, "%s/../bin/nines", self);
    if (access(buf, X_OK))
        snprintf(buf, cap, "nines");
}

json_t *gd_verify_scrub(struct gd_run *g, int *ok)
{
    char prog[PATH_MAX], conf[PATH_MAX + 16], out[PATH_MAX + 16], tmo[32];
    struct proc_output o = {0};
    struct nerr e = {0};
    json_t *j = json_object();
    *ok = 0;
    nines_program(prog, sizeof prog);
    if (g->pb->deploy)
        gd_fmt(conf, sizeof conf, "%s/cluster.yaml", g->dir);
    else
        gd_fmt(conf, sizeof conf, "%s", g->pb->cluster_file);
    gd_fmt(out, sizeof out, "%s/scrub.json", g->dir);
    unsigned long secs = (unsigned long)(g->pb->verify.timeout_ns / NS_PER_S);
    gd_fmt(tmo, sizeof tmo, "%lu", secs ? secs : 1);
    char *argv[] = {prog, "scrub", "--cluster", conf, "--json", out, "--timeout", tmo, NULL, NULL};
    if (g->pb->verify.scrub_deep) { /* every replica re-reads its items at rest */
        memmove(argv + 3, argv + 2, 7 * sizeof *argv);
        argv[2] = "--deep";
    }
    struct proc_spec sp = {.argv = argv, .in = {PROC_IO_NULL, -1}, .flags = PROC_NEW_PGROUP};
    /* The scrub's own deadline is --timeout per wait; the process gets that
     * twice over plus a minute before it is killed. */
    if (proc_run(&sp, (long)(2 * secs + 60) * 1000, 1 << 16, &o, &e)) {
        json_object_set_new(j, "error", json_string(e.msg));
        goto out;
    }
    int code = proc_status_code(o.status);
    json_error_t je;
    json_t *rep = json_load_file(out, 0, &je);
    json_object_set_new(j, "exit", json_integer(code));
    if (rep) {
        json_object_set(j, "partitions", json_object_get(rep, "partitions"));
        json_object_set(j, "compared", json_object_get(rep, "compared"));
        json_object_set(j, "findings", json_object_get(rep, "findings"));
        json_object_set(j, "undecided", json_object_get(rep, "undecided"));
        if (g->pb->verify.scrub_deep) { /* the deep report counts replica units */
            json_object_set(j, "units", json_object_get(rep, "units"));
            json_object_set(j, "scrubbed", json_object_get(rep, "scrubbed"));
        }
        json_decref(rep);
    }
    *ok = code == 0 && rep;
    /* Every replica unit re-read, or the deep scrub proved nothing. */
    if (*ok && g->pb->verify.scrub_deep &&
        json_integer_value(json_object_get(j, "scrubbed")) !=
            json_integer_value(json_object_get(j, "units")))
        *ok = 0;
    char why[300];
    /* A fault that changed data at rest (bit_rot): the deep scrub must name
     * exactly the items it corrupted, on their hosts, and nothing else. */
    const struct bit_rot_item *rot = NULL;
    size_t nrot = bit_rot_corrupted(g->fstate[fault_kind_id(&fault_bit_rot) - 1], &rot);
    if (nrot && rep) {
        size_t found = 0, other = 0;
        json_t *f, *k;
        size_t i, ki;
        json_array_foreach(json_object_get(j, "findings"), i, f)
        {
            const char *replica = json_string_value(json_object_get(f, "replica"));
            json_t *keys = json_object_get(f, "keys");
            if (!json_array_size(keys))
                other++;
            json_array_foreach(keys, ki, k)
            {
                char *key = json_dumps(json_object_get(k, "key"), JSON_COMPACT | JSON_SORT_KEYS);
                int hit = 0;
                for (size_t r = 0; key && replica && r < nrot && !hit; r++)
                    hit = !strcmp(rot[r].key, key) && !strcmp(rot[r].host, replica);
                if (hit)
                    found++;
                else
                    other++;
                free(key);
            }
        }
        json_t *exp = json_array();
        for (size_t r = 0; r < nrot; r++)
            json_array_append_new(exp, json_pack("{s:s, s:s, s:s}", "host", rot[r].host, "table",
                                                 rot[r].table, "key", rot[r].key));
        json_object_set_new(j, "bit_rot", exp);
        *ok = g->pb->verify.scrub_deep && found == nrot && !other;
        if (!g->pb->verify.scrub_deep)
            gd_fmt(why, sizeof why, "%zu item(s) were corrupted at rest, but the scrub was not "
                                    "deep: it cannot see them", nrot);
        else if (*ok)
            gd_fmt(why, sizeof why, "found exactly the %zu item(s) bit_rot corrupted, on their "
                                    "hosts, and nothing else", nrot);
        else
            gd_fmt(why, sizeof why, "bit_rot corrupted %zu item(s): the deep scrub named %zu of "
                                    "them and %zu other finding(s)", nrot, found, other);
        json_object_set_new(j, "detail", json_string(why));
        goto out;
    }
    if (code == 1)
        gd_fmt(why, sizeof why, "replicas differ: %zu finding(s), see scrub.json",
               json_array_size(json_object_get(j, "findings")));
    else if (code != 0 || !rep) {
        /* The last line of what it said names the cause. */
        const char *msg = o.err && *o.err ? o.err : (o.out ? o.out : "");
        size_t L = strlen(msg);
        while (L && msg[L - 1] == '\n')
            L--;
        const char *nl = L ? memrchr(msg, '\n', L) : NULL;
        const char *last = nl ? nl + 1 : msg;
        gd_fmt(why, sizeof why, "could not decide (exit %d): %.*s", code,
               (int)(L - (size_t)(last - msg)), last);
    } else if (g->pb->verify.scrub_deep)
        gd_fmt(why, sizeof why, "deep: %lld of %lld replica(s) of every partition re-read%s",
               (long long)json_integer_value(json_object_get(j, "scrubbed")),
               (long long)json_integer_value(json_object_get(j, "units")),
               *ok ? ", nothing rotted" : " (not all: nothing is proved of the rest)");
    else
        gd_fmt(why, sizeof why, "%lld partition(s) compared, every replica agrees",
               (long long)json_integer_value(json_object_get(j, "compared")));
    json_object_set_new(j, "detail", json_string(why));
out:
    json_object_set_new(j, "passed", json_boolean(*ok));
    proc_output_free(&o);
    return j;
}
