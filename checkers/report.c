/*
 * report.c — text, JSON and HTML renderings of a chk_result (see report.h).
 */
#include "checkers/report.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int open_ended(const struct history_op *op)
{
    return op->status == HISTORY_S_INFO || op->ret == HISTORY_NONE;
}

/* Ops of c's key (other than c, not failed) whose intervals overlap c's. */
static uint32_t concurrent(const struct history *h, uint32_t c, uint32_t *out, uint32_t cap,
                           uint32_t *total)
{
    const struct history_op *op = &h->ops[c];
    const uint32_t *ko = h->key_ops + h->key_off[op->key];
    uint32_t n = h->key_off[op->key + 1] - h->key_off[op->key], k = 0;
    *total = 0;
    for (uint32_t j = 0; j < n; j++) {
        const struct history_op *q = &h->ops[ko[j]];
        if (ko[j] == c || q->status == HISTORY_S_FAIL)
            continue;
        if (q->inv < op->ret && (open_ended(q) || q->ret > op->inv)) {
            (*total)++;
            if (k < cap)
                out[k++] = ko[j];
        }
    }
    return k;
}

static const char *keyname(const struct history *h, uint32_t k)
{
    size_t len;
    const char *s = history_key(h, k, &len);
    return len ? s : "(the register)";
}

static void print_ms(FILE *f, const struct history *h, int64_t v)
{
    if (h->has_time)
        fprintf(f, "%.3f ms", (double)v / 1e6);
    else
        fprintf(f, "%lld events", (long long)v);
}

void chk_report_text(FILE *f, const struct history *h, const struct chk_result *r)
{
    const struct lin_result *L = r->lin;
    char buf[512];
    fprintf(f, "nines check: %s: %zu ops on %u key%s, %u events (%u never completed, %u ignored)\n",
            h->source, h->nops, h->nkeys, h->nkeys == 1 ? "" : "s", h->nevents, h->crashed,
            h->skipped);
    fprintf(f, "verdict: %s\n", r->verdict == CHK_VALID     ? "VALID"
                                : r->verdict == CHK_INVALID ? "INVALID"
                                                            : "UNKNOWN (a search bound was hit)");
    uint32_t nvalid = L->nkeys - r->invalid_keys - r->unknown_keys;
    fprintf(f,
            "linearizability (%s, initial %s): %u valid, %u invalid, %u unknown key%s; "
            "%llu configurations in %.2f s on %d thread%s, peak search memory %.1f MiB\n",
            lin_model_name(L->model), history_value(h, r->initial, NULL), nvalid,
            r->invalid_keys, r->unknown_keys, L->nkeys == 1 ? "" : "s",
            (unsigned long long)L->configs, L->seconds, L->threads, L->threads == 1 ? "" : "s",
            (double)L->peak_memory / (1 << 20));
    if (r->first_op != HISTORY_NONE) {
        const struct lin_key *lk = &L->keys[r->first_key];
        chk_op_describe(h, r->first_op, buf, sizeof buf);
        fprintf(f, "  first operation that cannot be linearized (key %s):\n    %s\n",
                keyname(h, r->first_key), buf);
        for (size_t i = 0; i < r->nanomalies; i++)
            if (r->anomalies[i].op == r->first_op && !strcmp(r->anomalies[i].check,
                                                            "linearizability")) {
                fprintf(f, "    %s: %s\n", chk_kind_title(r->anomalies[i].kind),
                        r->anomalies[i].detail);
                break;
            }
        uint32_t conc[CHK_TEXT_MAX_CONCURRENT], total;
        uint32_t nc = concurrent(h, r->first_op, conc, CHK_TEXT_MAX_CONCURRENT, &total);
        fprintf(f, "  concurrent with it: %u operation%s\n", total, total == 1 ? "" : "s");
        for (uint32_t i = 0; i < nc; i++) {
            chk_op_describe(h, conc[i], buf, sizeof buf);
            fprintf(f, "    %s\n", buf);
        }
        if (total > nc)
            fprintf(f, "    ... and %u more (see --json / --html)\n", total - nc);
        fprintf(f, "  states possible just before it:");
        for (uint32_t i = 0; i < lk->nstates; i++)
            fprintf(f, "%s %s", i ? "," : "",
                    lk->states[i] == LIN_DEAD ? "(a value nobody reads)"
                                              : history_value(h, lk->states[i], NULL));
        fprintf(f, "%s\n", lk->states_truncated ? ", ..." : lk->nstates ? "" : " none");
        if (r->invalid_keys > 1)
            fprintf(f, "  %u other keys are not linearizable either (see --json)\n",
                    r->invalid_keys - 1);
    }
    if (r->unknown_keys) {
        uint32_t shown = 0;
        for (uint32_t k = 0; k < L->nkeys && shown < 5; k++) {
            const struct lin_key *lk = &L->keys[k];
            if (lk->verdict != LIN_UNKNOWN)
                continue;
            fprintf(f, "  unknown: key %s (%u ops): %s hit; events %u-%u unresolved\n",
                    keyname(h, k), lk->nops, lk->reason, lk->window_lo, lk->window_hi);
            shown++;
        }
        if (r->unknown_keys > shown)
            fprintf(f, "  ... and %u more unknown keys\n", r->unknown_keys - shown);
    }
    fprintf(f, "values: %llu reads checked, %llu out of nowhere, %llu corrupted\n",
            (unsigned long long)r->reads_checked, (unsigned long long)r->counts[CHK_PHANTOM],
            (unsigned long long)r->counts[CHK_CORRUPT]);
    uint64_t lost = 0;
    for (size_t i = 0; i < r->nanomalies; i++)
        lost += r->anomalies[i].kind == CHK_LOST_WRITE && !strcmp(r->anomalies[i].check,
                                                                  "lost-writes");
    fprintf(f,
            "lost writes: %llu acknowledged, %llu verified by a final read, %llu lost; "
            "%u key%s without a final read\n",
            (unsigned long long)r->acked_writes, (unsigned long long)r->verified_writes,
            (unsigned long long)lost, r->unverified_keys, r->unverified_keys == 1 ? "" : "s");
    fprintf(f,
            "sessions: %llu eventually consistent reads, %llu read-your-writes and %llu "
            "monotonic-reads violations\n",
            (unsigned long long)r->ec_reads,
            (unsigned long long)r->counts[CHK_READ_YOUR_WRITES],
            (unsigned long long)r->counts[CHK_MONOTONIC_READS]);
    if (r->stale_versions.n) {
        fprintf(f, "  staleness: %llu stale; versions behind p50 %lld p99 %lld max %lld; ",
                (unsigned long long)r->stale_versions.nonzero, (long long)r->stale_versions.p50,
                (long long)r->stale_versions.p99, (long long)r->stale_versions.max);
        fprintf(f, "time behind p50 ");
        print_ms(f, h, r->stale_ns.p50);
        fprintf(f, " p99 ");
        print_ms(f, h, r->stale_ns.p99);
        fprintf(f, " max ");
        print_ms(f, h, r->stale_ns.max);
        fprintf(f, "\n");
    }
    size_t total = 0;
    for (int k = 0; k < CHK_NKINDS; k++)
        total += r->counts[k];
    if (total) {
        fprintf(f, "anomalies:");
        for (int k = 0; k < CHK_NKINDS; k++)
            if (r->counts[k])
                fprintf(f, " %s %llu;", chk_kind_title((enum chk_kind)k),
                        (unsigned long long)r->counts[k]);
        fprintf(f, "\n");
        size_t shown = 0;
        for (size_t i = 0; i < r->nanomalies && shown < 5; i++) {
            const struct chk_anomaly *a = &r->anomalies[i];
            if (a->op == r->first_op && !strcmp(a->check, "linearizability"))
                continue;
            chk_op_describe(h, a->op, buf, sizeof buf);
            fprintf(f, "  %s (%s, key %s): %s\n    %s\n", chk_kind_title(a->kind), a->check,
                    keyname(h, a->key), a->detail, buf);
            shown++;
        }
        if (total > shown + (r->first_op != HISTORY_NONE))
            fprintf(f, "  ... %zu in all (see --json)\n", total);
    }
}

/* ------------------------------------------------------------------ JSON */

static json_t *jval(const struct history *h, uint32_t v)
{
    if (v == HISTORY_NIL)
        return json_null();
    size_t len;
    const char *s = history_value(h, v, &len);
    return json_stringn(s, len);
}

static json_t *jop(const struct history *h, uint32_t i)
{
    if (i == HISTORY_NONE)
        return json_null();
    const struct history_op *op = &h->ops[i];
    size_t klen;
    const char *k = history_key(h, op->key, &klen);
    json_t *o = json_object();
    json_object_set_new(o, "index", json_integer(i));
    json_object_set_new(o, "process", json_integer(op->process));
    json_object_set_new(o, "f", json_string(history_f_name(op->f)));
    json_object_set_new(o, "status", json_string(history_status_name(op->status)));
    json_object_set_new(o, "key", json_stringn(k, klen));
    if (op->f == HISTORY_CAS) {
        json_object_set_new(o, "value", json_pack("[oo]", jval(h, op->value), jval(h, op->value2)));
    } else if (op->f != HISTORY_DELETE) {
        json_object_set_new(o, "value", op->value == HISTORY_ANY ? json_null() : jval(h, op->value));
    }
    if (op->f == HISTORY_READ)
        json_object_set_new(o, "consistent", json_boolean(op->consistent));
    json_object_set_new(o, "invoke_event", json_integer(op->inv));
    json_object_set_new(o, "complete_event",
                        op->ret == HISTORY_NONE ? json_null() : json_integer(op->ret));
    if (op->line_inv)
        json_object_set_new(o, "line", json_integer(op->line_ret ? op->line_ret : op->line_inv));
    if (h->has_time) {
        json_object_set_new(o, "time_invoke", json_integer(op->t_inv));
        json_object_set_new(o, "time_complete",
                            op->ret == HISTORY_NONE ? json_null() : json_integer(op->t_ret));
    }
    return o;
}

static json_t *jdist(const struct chk_dist *d)
{
    return json_pack("{sIsIsIsIsI}", "n", (json_int_t)d->n, "nonzero", (json_int_t)d->nonzero,
                     "p50", (json_int_t)d->p50, "p99", (json_int_t)d->p99, "max",
                     (json_int_t)d->max);
}

static json_t *jinvalid_key(const struct history *h, const struct chk_result *r, uint32_t k)
{
    const struct lin_key *lk = &r->lin->keys[k];
    json_t *o = json_object();
    size_t klen;
    const char *ks = history_key(h, k, &klen);
    json_object_set_new(o, "key", json_stringn(ks, klen));
    json_object_set_new(o, "op", jop(h, lk->culprit));
    for (size_t i = 0; i < r->nanomalies; i++)
        if (r->anomalies[i].op == lk->culprit && !strcmp(r->anomalies[i].check, "linearizability")) {
            json_object_set_new(o, "kind", json_string(chk_kind_name(r->anomalies[i].kind)));
            json_object_set_new(o, "detail", json_string(r->anomalies[i].detail));
            break;
        }
    json_t *st = json_array();
    for (uint32_t i = 0; i < lk->nstates; i++)
        json_array_append_new(st, lk->states[i] == LIN_DEAD ? json_string("(a value nobody reads)")
                                                            : jval(h, lk->states[i]));
    json_object_set_new(o, "possible_states", st);
    json_object_set_new(o, "possible_states_truncated", json_boolean(lk->states_truncated));
    uint32_t total;
    uint32_t *conc = malloc(sizeof *conc * 256);
    json_t *ca = json_array();
    if (conc) {
        uint32_t nc = concurrent(h, lk->culprit, conc, 256, &total);
        for (uint32_t i = 0; i < nc; i++)
            json_array_append_new(ca, jop(h, conc[i]));
        json_object_set_new(o, "concurrent_total", json_integer(total));
        free(conc);
    }
    json_object_set_new(o, "concurrent", ca);
    json_object_set_new(o, "ops_searched", json_integer(lk->nops));
    json_object_set_new(o, "configurations", json_integer((json_int_t)lk->configs));
    return o;
}

int chk_report_json(const char *path, const struct history *h, const struct chk_result *r,
                    struct nerr *e)
{
    const struct lin_result *L = r->lin;
    json_t *root = json_object();
    if (!root)
        return nerr_set(e, NERR_NOMEM, "out of memory");
    json_object_set_new(root, "verdict", json_string(chk_verdict_name(r->verdict)));
    json_object_set_new(root, "exit_code", json_integer((int)r->verdict));
    json_object_set_new(root, "history",
                        json_pack("{sssIsIsIsIsIsb}", "source", h->source, "ops",
                                  (json_int_t)h->nops, "keys", (json_int_t)h->nkeys, "events",
                                  (json_int_t)h->nevents, "never_completed",
                                  (json_int_t)h->crashed, "ignored", (json_int_t)h->skipped,
                                  "timestamps", h->has_time));
    json_t *lin = json_object();
    json_object_set_new(lin, "model", json_string(lin_model_name(L->model)));
    json_object_set_new(lin, "initial", jval(h, r->initial));
    json_object_set_new(lin, "valid_keys",
                        json_integer(L->nkeys - r->invalid_keys - r->unknown_keys));
    json_object_set_new(lin, "invalid_keys", json_integer(r->invalid_keys));
    json_object_set_new(lin, "unknown_keys", json_integer(r->unknown_keys));
    json_object_set_new(lin, "configurations", json_integer((json_int_t)L->configs));
    json_object_set_new(lin, "seconds", json_real(L->seconds));
    json_object_set_new(lin, "threads", json_integer(L->threads));
    json_object_set_new(lin, "peak_search_memory_bytes", json_integer((json_int_t)L->peak_memory));
    json_object_set_new(lin, "first",
                        r->first_op == HISTORY_NONE ? json_null()
                                                    : jinvalid_key(h, r, r->first_key));
    json_t *inv = json_array(), *unk = json_array();
    for (uint32_t k = 0; k < L->nkeys; k++) {
        const struct lin_key *lk = &L->keys[k];
        if (lk->verdict == LIN_INVALID) {
            json_array_append_new(inv, jinvalid_key(h, r, k));
        } else if (lk->verdict == LIN_UNKNOWN) {
            size_t klen;
            const char *ks = history_key(h, k, &klen);
            json_array_append_new(unk, json_pack("{s:s%,s:s,s:i,s:[II]}", "key", ks, klen,
                                                 "reason", lk->reason, "ops_searched",
                                                 (int)lk->nops, "window",
                                                 (json_int_t)lk->window_lo,
                                                 (json_int_t)lk->window_hi));
        }
    }
    json_object_set_new(lin, "invalid", inv);
    json_object_set_new(lin, "unknown", unk);
    json_object_set_new(root, "linearizability", lin);
    json_object_set_new(root, "values",
                        json_pack("{sIsIsI}", "reads_checked", (json_int_t)r->reads_checked,
                                  "out_of_nowhere", (json_int_t)r->counts[CHK_PHANTOM],
                                  "corrupted", (json_int_t)r->counts[CHK_CORRUPT]));
    json_object_set_new(root, "lost_writes",
                        json_pack("{sIsIsI}", "acknowledged", (json_int_t)r->acked_writes,
                                  "verified", (json_int_t)r->verified_writes,
                                  "keys_without_final_read", (json_int_t)r->unverified_keys));
    json_t *ses = json_object();
    json_object_set_new(ses, "eventually_consistent_reads", json_integer((json_int_t)r->ec_reads));
    json_object_set_new(ses, "unversioned_reads", json_integer((json_int_t)r->ec_unversioned));
    json_object_set_new(ses, "read_your_writes_violations",
                        json_integer((json_int_t)r->counts[CHK_READ_YOUR_WRITES]));
    json_object_set_new(ses, "monotonic_reads_violations",
                        json_integer((json_int_t)r->counts[CHK_MONOTONIC_READS]));
    json_object_set_new(ses, "staleness_versions", jdist(&r->stale_versions));
    json_object_set_new(ses, h->has_time ? "staleness_ns" : "staleness_events",
                        jdist(&r->stale_ns));
    json_object_set_new(root, "sessions", ses);
    json_t *counts = json_object();
    for (int k = 0; k < CHK_NKINDS; k++)
        json_object_set_new(counts, chk_kind_name((enum chk_kind)k),
                            json_integer((json_int_t)r->counts[k]));
    json_object_set_new(root, "anomaly_counts", counts);
    json_t *an = json_array();
    for (size_t i = 0; i < r->nanomalies; i++) {
        const struct chk_anomaly *a = &r->anomalies[i];
        size_t klen;
        const char *ks = history_key(h, a->key, &klen);
        json_array_append_new(an, json_pack("{s:s,s:s,s:s%,s:o,s:o,s:s}", "kind",
                                            chk_kind_name(a->kind), "check", a->check, "key",
                                            ks, klen, "op", jop(h, a->op), "related",
                                            jop(h, a->related), "detail", a->detail));
    }
    json_object_set_new(root, "anomalies", an);
    json_object_set_new(root, "anomalies_truncated",
                        json_boolean(r->nanomalies == CHK_MAX_ANOMALIES));
    json_object_set_new(root, "seconds", json_real(r->seconds));
    int rc = json_dump_file(root, path, JSON_INDENT(1) | JSON_ENSURE_ASCII);
    json_decref(root);
    if (rc)
        return nerr_sys(e, errno, "cannot write %s", path);
    return 0;
}

/* ------------------------------------------------------------------ HTML */

static void esc(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static int64_t cmp_i64(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b;
}

int chk_report_html(const char *path, const struct history *h, const struct chk_result *r,
                    struct nerr *e)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return nerr_sys(e, errno, "cannot write %s", path);
    char buf[512];
    /* The key to draw: the first invalid one, else the first unknown one,
     * else the key of the first anomaly. */
    uint32_t key = r->first_key, focus = r->first_op;
    if (key == HISTORY_NONE)
        for (uint32_t k = 0; k < r->lin->nkeys; k++)
            if (r->lin->keys[k].verdict == LIN_UNKNOWN) {
                key = k;
                break;
            }
    if (key == HISTORY_NONE && r->nanomalies) {
        key = r->anomalies[0].key;
        focus = r->anomalies[0].op;
    }
    fprintf(f, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>nines check: %s</title>\n",
            chk_verdict_name(r->verdict));
    fputs("<style>body{font:14px sans-serif;margin:1em}svg{border:1px solid #ccc}"
          ".ok{fill:#7fb3e6}.info{fill:#ddd;stroke:#888;stroke-dasharray:4 2}"
          ".fail{fill:#f4f4f4;stroke:#bbb}.bad{fill:#e33;stroke:#900;stroke-width:2}"
          "text{font:11px monospace}pre{background:#f6f6f6;padding:.5em}</style></head><body>\n",
          f);
    fprintf(f, "<h1>nines check: %s</h1>\n<p>", chk_verdict_name(r->verdict));
    esc(f, h->source);
    fprintf(f, ": %zu ops on %u keys.</p>\n<pre>", h->nops, h->nkeys);
    size_t shown = 0;
    for (size_t i = 0; i < r->nanomalies && shown < 20; i++, shown++) {
        const struct chk_anomaly *a = &r->anomalies[i];
        snprintf(buf, sizeof buf, "%s (%s): %s\n", chk_kind_title(a->kind), a->check, a->detail);
        esc(f, buf);
    }
    if (!r->nanomalies)
        fputs("no anomalies\n", f);
    fputs("</pre>\n", f);
    if (key == HISTORY_NONE) {
        fputs("<p>Nothing to draw: every key is linearizable.</p></body></html>\n", f);
        goto done;
    }
    const uint32_t *ko = h->key_ops + h->key_off[key];
    uint32_t n = h->key_off[key + 1] - h->key_off[key];
    uint32_t at = 0;
    for (uint32_t j = 0; j < n; j++)
        if (ko[j] == focus)
            at = j;
    if (focus == HISTORY_NONE && r->lin->keys[key].verdict == LIN_UNKNOWN)
        for (uint32_t j = 0; j < n; j++)
            if (h->ops[ko[j]].inv >= r->lin->keys[key].window_lo) {
                at = j;
                break;
            }
    uint32_t lo = at > CHK_HTML_MAX_OPS / 2 ? at - CHK_HTML_MAX_OPS / 2 : 0;
    uint32_t hi = lo + CHK_HTML_MAX_OPS < n ? lo + CHK_HTML_MAX_OPS : n;
    size_t klen;
    const char *ks = history_key(h, key, &klen);
    fputs("<h2>Key ", f);
    esc(f, klen ? ks : "(the register)");
    fprintf(f, "</h2>\n<p>Operations %u to %u of the key's %u (by invocation), one row per "
               "process; time runs left to right. Red: the operation that cannot be "
               "linearized. Grey dashed: outcome unknown (info). Hover for details.</p>\n",
            lo + 1, hi, n);
    /* processes in the window, by first appearance */
    int64_t *procs = malloc((hi - lo + 1) * sizeof *procs);
    if (!procs) {
        fclose(f);
        return nerr_set(e, NERR_NOMEM, "out of memory");
    }
    uint32_t np = 0;
    int64_t tmin = INT64_MAX, tmax = INT64_MIN;
    for (uint32_t j = lo; j < hi; j++) {
        const struct history_op *q = &h->ops[ko[j]];
        uint32_t p = 0;
        while (p < np && procs[p] != q->process)
            p++;
        if (p == np)
            procs[np++] = q->process;
        int64_t a = h->has_time ? q->t_inv : q->inv;
        int64_t b = open_ended(q) ? a : h->has_time ? q->t_ret : q->ret;
        if (a < tmin)
            tmin = a;
        if (b > tmax)
            tmax = b;
    }
    if (tmax <= tmin)
        tmax = tmin + 1;
    double width = 1100, left = 90, rowh = 22;
    double span = (double)(tmax - tmin) * 1.1;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\">\n",
            left + width + 10, rowh * np + 10);
    for (uint32_t p = 0; p < np; p++)
        fprintf(f, "<text x=\"2\" y=\"%.0f\">p%lld</text>\n", rowh * p + 16, (long long)procs[p]);
    for (uint32_t j = lo; j < hi; j++) {
        const struct history_op *q = &h->ops[ko[j]];
        uint32_t p = 0;
        while (procs[p] != q->process)
            p++;
        int64_t a = h->has_time ? q->t_inv : q->inv;
        int64_t b = open_ended(q) ? tmax + (tmax - tmin) / 10
                                  : h->has_time ? q->t_ret : q->ret;
        if (cmp_i64(b, a) <= 0)
            b = a + 1;
        double x = left + (double)(a - tmin) / span * width;
        double w = (double)(b - a) / span * width;
        if (w < 3)
            w = 3;
        const char *cls = ko[j] == focus                 ? "bad"
                          : q->status == HISTORY_S_OK   ? "ok"
                          : q->status == HISTORY_S_FAIL ? "fail"
                                                        : "info";
        char label[96];
        if (q->f == HISTORY_CAS)
            snprintf(label, sizeof label, "cas %s->%s", history_value(h, q->value, NULL),
                     history_value(h, q->value2, NULL));
        else if (q->f == HISTORY_DELETE)
            snprintf(label, sizeof label, "del");
        else
            snprintf(label, sizeof label, "%c %s", q->f == HISTORY_READ ? 'r' : 'w',
                     q->f == HISTORY_READ && q->value == HISTORY_ANY
                         ? "?"
                         : history_value(h, q->value, NULL));
        chk_op_describe(h, ko[j], buf, sizeof buf);
        fputs("<g><title>", f);
        esc(f, buf);
        fprintf(f, "</title><rect class=\"%s\" x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" height=\"%.0f\"/>",
                cls, x, rowh * p + 3, w, rowh - 6);
        fprintf(f, "<text x=\"%.1f\" y=\"%.0f\">", x + 2, rowh * p + 16);
        /* keep labels short so the page stays small */
        label[24] = '\0';
        esc(f, label);
        fputs("</text></g>\n", f);
    }
    fputs("</svg>\n</body></html>\n", f);
    free(procs);
done:
    if (fclose(f))
        return nerr_sys(e, errno, "cannot write %s", path);
    return 0;
}
