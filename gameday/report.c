/*
 * gameday/report.c — what a run leaves: DIR/report.json and the printed
 * summary, both from the run's records (contract in gameday.h).
 */
#include "gameday/run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Recovery over the inject steps: how many recovered (rounds), how many
 * had affected partitions that never took a write again, the median and
 * the slowest. */
struct recovery {
    size_t rounds, unrecovered;
    uint64_t median_ns, max_ns;
};

static void recovery_of(const struct gd_run *g, struct recovery *rv)
{
    uint64_t rec[PB_MAX_STEPS];
    size_t n = 0;
    memset(rv, 0, sizeof *rv);
    for (size_t i = 0; i < g->plan->n; i++) {
        const struct step_rec *r = &g->rec[i];
        if (!r->off_ns)
            continue;
        if (r->recovery_ns)
            rec[n++] = r->recovery_ns;
        else if (r->n_affected)
            rv->unrecovered++;
    }
    qsort(rec, n, sizeof rec[0], cmp_u64);
    rv->rounds = n;
    if (n) {
        rv->median_ns = n % 2 ? rec[n / 2] : (rec[n / 2 - 1] + rec[n / 2]) / 2;
        rv->max_ns = rec[n - 1];
    }
}

json_t *gd_report_json(struct gd_run *g, int passed, double elapsed)
{
    json_t *steps = json_array();
    struct recovery rv;
    recovery_of(g, &rv);
    for (size_t i = 0; i < g->plan->n; i++) {
        const struct pb_action *a = &g->plan->a[i];
        const struct step_rec *r = &g->rec[i];
        json_t *hosts = json_array();
        for (size_t k = 0; k < a->nhosts; k++)
            json_array_append_new(hosts, json_string(g->inv->hosts[a->hosts[k]].name));
        json_t *s = json_pack("{s:i,s:s,s:s,s:o,s:b,s:b}", "index", a->index, "label", a->label,
                              "kind", pb_step_name(a->kind, a->fault), "hosts", hosts, "done",
                              r->done, "failed", r->failed);
        if (r->done) {
            json_object_set_new(s, "start_s", json_real(gd_secs(r->start_ns - g->t0)));
            json_object_set_new(s, "end_s", json_real(gd_secs(r->end_ns - g->t0)));
        }
        if (a->hold_ns)
            json_object_set_new(s, "hold_s", json_real(gd_secs(a->hold_ns)));
        if (a->kind == PB_INJECT && a->nhosts && a->fault->label)
            json_object_set_new(
                s, "mode", json_string(a->fault->label(&g->inv->hosts[a->hosts[0]], a->params)));
        json_object_set_new(s, "ok", json_integer((json_int_t)r->ok));
        json_object_set_new(s, "errors", json_integer((json_int_t)r->errors));
        json_object_set_new(s, "p99_ms",
                            hist_count(r->lat)
                                ? json_real((double)hist_percentile(r->lat, 99) / 1e6)
                                : json_null());
        if (r->off_ns) {
            json_object_set_new(s, "affected_partitions", json_integer(r->n_affected));
            json_object_set_new(s, "recovery_s",
                                r->recovery_ns ? json_real(gd_secs(r->recovery_ns)) : json_null());
        }
        if (r->error[0])
            json_object_set_new(s, "error", json_string(r->error));
        json_array_append_new(steps, s);
    }
    json_t *recj = json_object();
    json_object_set_new(recj, "rounds", json_integer((json_int_t)rv.rounds));
    json_object_set_new(recj, "unrecovered", json_integer((json_int_t)rv.unrecovered));
    json_object_set_new(recj, "median_s",
                        rv.rounds ? json_real(gd_secs(rv.median_ns)) : json_null());
    json_object_set_new(recj, "max_s", rv.rounds ? json_real(gd_secs(rv.max_ns)) : json_null());
    json_t *traffic =
        json_pack("{s:s?,s:f,s:I,s:I}", "table", g->pb->traffic.table, "rate", g->pb->traffic.rate,
                  "ok", (json_int_t)g->total_ok, "errors", (json_int_t)g->total_err);
    if (g->thr_started) {
        json_object_set_new(traffic, "final_keys", json_integer((json_int_t)g->ls.final_keys));
        json_object_set_new(traffic, "final_failed", json_integer((json_int_t)g->ls.final_failed));
    }
    json_t *r = json_pack("{s:s,s:s,s:I,s:s,s:b,s:f,s:o,s:o,s:o}", "playbook", g->pb->path, "name",
                          g->pb->name, "seed", (json_int_t)g->plan->seed, "inventory",
                          g->inv->path ? g->inv->path : g->inv->name, "passed", passed, "elapsed_s",
                          elapsed, "steps", steps, "recovery", recj, "traffic", traffic);
    json_object_set(r, "verify", g->verify ? g->verify : json_null());
    json_object_set_new(r, "failure", g->failure[0] ? json_string(g->failure) : json_null());
    /* The fault windows, by kind and target (the HTML report shades them). */
    json_t *faults = json_array();
    for (size_t i = 0; i < g->plan->n; i++) {
        const struct pb_action *a = &g->plan->a[i];
        const struct step_rec *rr = &g->rec[i];
        if (a->kind != PB_INJECT || !rr->off_ns)
            continue;
        json_t *hosts = json_array(), *azs = json_array();
        for (size_t k = 0; k < a->nhosts; k++) {
            const struct inv_host *h = &g->inv->hosts[a->hosts[k]];
            json_array_append_new(hosts, json_string(h->name));
            int seen = 0;
            for (size_t j = 0; j < k && !seen; j++)
                seen = !strcmp(g->inv->hosts[a->hosts[j]].az, h->az);
            if (!seen)
                json_array_append_new(azs, json_string(h->az));
        }
        /* A fault with a duration ends with its step; one held until a heal
         * step ends there (or, never healed, at the end: null). */
        json_t *end = json_null();
        if (a->hold_ns && rr->end_ns)
            end = json_real(gd_secs(rr->end_ns - g->t0));
        for (size_t j = i + 1; !a->hold_ns && j < g->plan->n; j++)
            if (g->plan->a[j].kind == PB_HEAL && g->plan->a[j].fault == a->fault &&
                g->rec[j].end_ns) {
                int covers = 0;
                for (size_t x = 0; x < g->plan->a[j].nhosts && !covers; x++)
                    for (size_t y = 0; y < a->nhosts && !covers; y++)
                        covers = g->plan->a[j].hosts[x] == a->hosts[y];
                if (covers) {
                    end = json_real(gd_secs(g->rec[j].end_ns - g->t0));
                    break;
                }
            }
        json_array_append_new(faults,
                              json_pack("{s:i, s:s, s:s, s:o, s:o, s:f, s:o}", "step", a->index,
                                        "kind", a->fault->name, "label", a->label, "hosts", hosts,
                                        "azs", azs, "start_s", gd_secs(rr->off_ns - g->t0),
                                        "end_s", end));
    }
    json_object_set_new(r, "faults", faults);
    gd_obs_report(g, r);
    json_object_set(r, "expectations", g->expectations ? g->expectations : json_array());
    json_object_set_new(r, "stop",
                        atomic_load(&g->stopped)
                            ? json_pack("{s:f, s:s}", "at_s", g->stop_at_s, "reason",
                                        g->stop_reason)
                            : json_null());
    return r;
}

/* The summary, from the run's own records (the same that report.json
 * holds, not read back from it). */
void gd_print_summary(struct gd_run *g, int passed, FILE *f)
{
    fprintf(f, "\ngame day %s  seed %llu  report %s\n", g->pb->name,
            (unsigned long long)g->plan->seed, g->dir);
    fprintf(f, "%4s %8s  %-34s %-28s %8s %7s %9s %9s\n", "step", "at", "what", "hit", "ok",
            "errors", "p99 ms", "recovery");
    for (size_t i = 0; i < g->plan->n; i++) {
        const struct pb_action *a = &g->plan->a[i];
        const struct step_rec *r = &g->rec[i];
        char hit[256] = "", p99[32] = "-", recov[32] = "-", at[32] = "-";
        size_t len = 0;
        for (size_t k = 0; k < a->nhosts && len < sizeof hit; k++)
            len += (size_t)snprintf(hit + len, sizeof hit - len, "%s%s", k ? "," : "",
                                    g->inv->hosts[a->hosts[k]].name);
        if (!hit[0])
            gd_fmt(hit, sizeof hit, "-");
        if (hist_count(r->lat))
            gd_fmt(p99, sizeof p99, "%.1f", (double)hist_percentile(r->lat, 99) / 1e6);
        if (r->off_ns && r->recovery_ns)
            gd_fmt(recov, sizeof recov, "%.2fs", gd_secs(r->recovery_ns));
        else if (r->off_ns)
            gd_fmt(recov, sizeof recov, "none");
        if (r->done)
            gd_fmt(at, sizeof at, "%.1fs", gd_secs(r->start_ns - g->t0));
        fprintf(f, "%4d %8s  %-34.34s %-28.28s %8lld %7lld %9s %9s%s%s\n", a->index, at, a->label,
                hit, (long long)r->ok, (long long)r->errors, p99, recov,
                r->failed ? "  FAILED: " : "", r->failed ? r->error : "");
    }
    struct recovery rv;
    recovery_of(g, &rv);
    if (rv.rounds)
        fprintf(f,
                "recovery (power off -> first write to the affected partitions): %zu rounds, "
                "median %.2fs, max %.2fs%s\n",
                rv.rounds, gd_secs(rv.median_ns), gd_secs(rv.max_ns),
                rv.unrecovered ? " (some never recovered)" : "");
    size_t k0;
    json_t *x;
    json_array_foreach(g->expectations, k0, x)
    {
        json_t *st = json_object_get(x, "step");
        char where[48];
        if (json_is_integer(st))
            gd_fmt(where, sizeof where, "step %lld", (long long)json_integer_value(st));
        else
            gd_fmt(where, sizeof where, "%s", json_string_value(json_object_get(x, "phase")));
        fprintf(f, "expect %-22s %s %s: %s\n", where,
                json_is_true(json_object_get(x, "passed")) ? "PASS" : "FAIL",
                json_string_value(json_object_get(x, "what")),
                json_string_value(json_object_get(x, "detail")));
    }
    if (atomic_load(&g->stopped))
        fprintf(f, "stopped at %.1fs: %s\n", g->stop_at_s, g->stop_reason);
    /* The verification objects are the run's own record of it (report.json
     * embeds the same objects). */
    json_t *vj = g->verify;
    const char *key;
    json_t *v;
    json_object_foreach(vj, key, v)
    {
        const char *detail = json_string_value(json_object_get(v, "detail"));
        const char *err = json_string_value(json_object_get(v, "error"));
        fprintf(f, "verify %-10s %s", key,
                json_is_true(json_object_get(v, "passed")) ? "PASS" : "FAIL");
        if (!strcmp(key, "checkers") && json_object_get(v, "verdict")) {
            json_t *an = json_object_get(v, "anomalies"), *cnt;
            const char *kind;
            long long lost = json_integer_value(json_object_get(an, "lost-write")), other = 0;
            json_object_foreach(an, kind, cnt) other +=
                strcmp(kind, "lost-write") ? json_integer_value(cnt) : 0;
            fprintf(f, " (%s; %lld acknowledged writes, %lld lost writes, %lld other anomalies)",
                    json_string_value(json_object_get(v, "verdict")),
                    (long long)json_integer_value(json_object_get(v, "acked_writes")), lost, other);
        }
        if (detail && *detail)
            fprintf(f, ": %s", detail);
        if (err)
            fprintf(f, ": %s", err);
        fputc('\n', f);
        json_t *first = json_object_get(v, "first");
        size_t k;
        json_t *a;
        json_array_foreach(first, k, a)
        {
            if (k >= 5)
                break;
            fprintf(f, "  %s: %s\n", json_string_value(json_object_get(a, "kind")),
                    json_string_value(json_object_get(a, "detail")));
        }
    }
    if (g->failure[0])
        fprintf(f, "run failed: %s\n", g->failure);
    fprintf(f, "report %s/report.html (and report.json)\n", g->dir);
    fprintf(f, "%s\n", passed ? "PASSED" : "FAILED");
}
