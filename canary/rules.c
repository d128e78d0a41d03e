#include "canary/rules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canary/agg.h"
#include "canary/cconfig.h"
#include "lib/yamltree.h"

#define MS 1000000ull /* ns per ms */

void cfa_rules_free(struct cfa_rules *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->rules[i].name);
        for (char **t = r->rules[i].tables; t && *t; t++)
            free(*t);
        free(r->rules[i].tables);
        for (char **t = r->rules[i].server_ops; t && *t; t++)
            free(*t);
        free(r->rules[i].server_ops);
    }
    free(r->rules);
    free(r->pg_dsn);
    free(r->am_url);
    free(r->hook);
    memset(r, 0, sizeof *r);
}

const char *cfa_fmt_ms(int64_t ms, char *buf, size_t cap)
{
    if (ms % 3600000 == 0 && ms)
        snprintf(buf, cap, "%lldh", (long long)(ms / 3600000));
    else if (ms % 60000 == 0 && ms)
        snprintf(buf, cap, "%lldm", (long long)(ms / 60000));
    else if (ms % 1000 == 0)
        snprintf(buf, cap, "%llds", (long long)(ms / 1000));
    else
        snprintf(buf, cap, "%lldms", (long long)ms);
    return buf;
}

int64_t cfa_rules_max_window(const struct cfa_rules *r)
{
    int64_t m = 0;
    for (size_t i = 0; i < r->n; i++) {
        const struct cfa_rule *c = &r->rules[i];
        for (int t = 0; t < c->ntiers; t++)
            if (c->tiers[t].long_ms > m)
                m = c->tiers[t].long_ms;
        if (c->blind_after_ms * 2 > m)
            m = c->blind_after_ms * 2;
        /* Thresholds look at `of` intervals; an hour covers any sane interval. */
        if (c->kind == CFA_THRESHOLD && m < 3600000)
            m = 3600000;
    }
    return m;
}

static int get_ms(const struct yt_node *map, const char *key, enum yt_presence p, int64_t min_ms,
                  int64_t *out, struct nerr *err)
{
    uint64_t ns = (uint64_t)*out * MS;
    int rc = yt_get_duration(map, key, p, (uint64_t)min_ms * MS, 90ull * 86400 * 1000 * MS, &ns,
                             err);
    if (!rc)
        *out = (int64_t)(ns / MS);
    return rc;
}

static int get_severity(const struct yt_node *map, char *out, struct nerr *err)
{
    const char *s = NULL;
    int rc = yt_get_str(map, "severity", YT_OPTIONAL, &s, err);
    if (rc || !s)
        return rc;
    if (!*s || strlen(s) >= CFA_SEVERITY)
        return yt_errf(err, yt_map_get(map, "severity"), "severity must be 1-%d characters",
                       CFA_SEVERITY - 1);
    strcpy(out, s);
    return 0;
}

static int parse_tier(const struct yt_node *n, struct cfa_tier *t, struct nerr *err)
{
    static const char *const keys[] = {"long", "short", "factor", "severity", NULL};
    int rc;
    const struct yt_node *f;
    if ((rc = yt_expect_map(n, err)) || (rc = yt_check_keys(n, keys, err)) ||
        (rc = get_ms(n, "long", YT_REQUIRED, 1000, &t->long_ms, err)) ||
        (rc = get_ms(n, "short", YT_REQUIRED, 1000, &t->short_ms, err)) ||
        (rc = yt_get(n, "factor", YT_REQUIRED, &f, err)) ||
        (rc = cconf_number(f, 0.001, 1e9, 0, &t->factor, err)))
        return rc;
    strcpy(t->severity, "page");
    if ((rc = get_severity(n, t->severity, err)))
        return rc;
    if (t->short_ms >= t->long_ms)
        return yt_errf(err, yt_map_get(n, "short"), "the short window must be shorter than the long one");
    return 0;
}

static const struct cfa_tier workbook[] = {
    {3600000, 300000, 14.4, "page"},
    {21600000, 1800000, 6, "page"},
    {86400000, 7200000, 3, "ticket"},
    {259200000, 21600000, 1, "ticket"},
};

static int parse_rule(const struct yt_node *n, struct cfa_rule *r, struct nerr *err)
{
    static const char *const keys[] = {"name", "objective", "tables", "operations", "group_by",
                                       "burn_rates", "threshold", "blind", "severity",
                                       "hysteresis", "source", NULL};
    const struct yt_node *v;
    int rc;
    if ((rc = yt_expect_map(n, err)) || (rc = yt_check_keys(n, keys, err)))
        return rc;
    r->line = n->line;
    r->col = n->col;
    if ((rc = yt_get(n, "name", YT_REQUIRED, &v, err)) || (rc = cconf_str(v, &r->name, err)))
        return rc;
    if (!*r->name || strspn(r->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") != strlen(r->name))
        return yt_errf(err, v, "an alarm name is [A-Za-z0-9_.-]+");
    int kinds = !!yt_map_get(n, "objective") + !!yt_map_get(n, "threshold") + !!yt_map_get(n, "blind");
    if (kinds != 1)
        return yt_errf(err, n, "alarm '%s' needs exactly one of objective, threshold, blind",
                       r->name);
    r->ops = (1u << COP_PUT) | (1u << COP_CGET) | (1u << COP_GET) | (1u << COP_DELETE);
    r->clear_factor = 1;
    strcpy(r->severity, "page");
    if ((rc = get_severity(n, r->severity, err)))
        return rc;
    if ((rc = yt_get(n, "tables", YT_OPTIONAL, &v, err)))
        return rc;
    if (v) {
        if ((rc = yt_expect_seq(v, err)))
            return rc;
        if (!(r->tables = calloc(v->n + 1, sizeof *r->tables)))
            return nerr_set(err, NERR_NOMEM, "out of memory");
        for (size_t i = 0; i < v->n; i++)
            if ((rc = cconf_str(v->items[i], &r->tables[i], err)))
                return rc;
    }
    if ((rc = yt_get(n, "source", YT_OPTIONAL, &v, err)))
        return rc;
    if (v) {
        const char *src;
        if ((rc = yt_as_str(v, &src, err)))
            return rc;
        if (!strcmp(src, "server"))
            r->server = 1;
        else if (strcmp(src, "canary"))
            return yt_errf(err, v, "source must be canary or server, not '%s'", src);
    }
    if ((rc = yt_get(n, "operations", YT_OPTIONAL, &v, err)))
        return rc;
    if (v && r->server) {
        if ((rc = yt_expect_seq(v, err)))
            return rc;
        if (!v->n)
            return yt_errf(err, v, "at least one operation is needed");
        if (!(r->server_ops = calloc(v->n + 1, sizeof *r->server_ops)))
            return nerr_set(err, NERR_NOMEM, "out of memory");
        for (size_t i = 0; i < v->n; i++)
            if ((rc = cconf_str(v->items[i], &r->server_ops[i], err)))
                return rc;
    } else if (v) {
        if ((rc = yt_expect_seq(v, err)))
            return rc;
        r->ops = 0;
        for (size_t i = 0; i < v->n; i++) {
            const char *s;
            if ((rc = yt_as_str(v->items[i], &s, err)))
                return rc;
            int op = -1;
            for (int k = 0; k < COP_N; k++)
                if (!strcmp(s, canary_op_names[k]))
                    op = k;
            if (op < 0)
                return yt_errf(err, v->items[i],
                               "unknown operation '%s' (put, get_consistent, get_eventual, "
                               "delete, probe)", s);
            r->ops |= 1u << op;
        }
        if (!r->ops)
            return yt_errf(err, v, "at least one operation is needed");
    }
    if ((rc = yt_get(n, "group_by", YT_OPTIONAL, &v, err)))
        return rc;
    if (v) {
        if ((rc = yt_expect_seq(v, err)))
            return rc;
        for (size_t i = 0; i < v->n; i++) {
            const char *s;
            if ((rc = yt_as_str(v->items[i], &s, err)))
                return rc;
            if (!strcmp(s, "table"))
                r->group_by |= CFA_BY_TABLE;
            else if (!strcmp(s, "endpoint_az") || !strcmp(s, "az"))
                r->group_by |= CFA_BY_ENDPOINT_AZ;
            else if (!strcmp(s, "canary_az"))
                r->group_by |= CFA_BY_CANARY_AZ;
            else if (!strcmp(s, "endpoint"))
                r->group_by |= CFA_BY_ENDPOINT;
            else
                return yt_errf(err, v->items[i],
                               "cannot group by '%s' (table, endpoint_az, canary_az, endpoint)", s);
        }
    }
    if ((v = yt_map_get(n, "objective"))) {
        r->kind = CFA_BURN;
        if ((rc = cconf_number(v, 0.5, 0.999999, 1, &r->objective, err)))
            return rc;
        if ((rc = yt_get(n, "burn_rates", YT_OPTIONAL, &v, err)))
            return rc;
        if (v) {
            if ((rc = yt_expect_seq(v, err)))
                return rc;
            if (!v->n || v->n > CFA_MAX_TIERS)
                return yt_errf(err, v, "between 1 and %d burn-rate tiers", CFA_MAX_TIERS);
            for (size_t i = 0; i < v->n; i++)
                if ((rc = parse_tier(v->items[i], &r->tiers[r->ntiers++], err)))
                    return rc;
        } else {
            memcpy(r->tiers, workbook, sizeof workbook);
            r->ntiers = (int)(sizeof workbook / sizeof workbook[0]);
        }
    } else if ((v = yt_map_get(n, "threshold"))) {
        static const char *const tk[] = {"errors", "in", "of", NULL};
        int64_t e = 1, in = 1, of = 1;
        r->kind = CFA_THRESHOLD;
        if ((rc = yt_expect_map(v, err)) || (rc = yt_check_keys(v, tk, err)) ||
            (rc = yt_get_int(v, "errors", YT_REQUIRED, 1, INT64_MAX, &e, err)) ||
            (rc = yt_get_int(v, "in", YT_OPTIONAL, 1, 1000, &in, err)) ||
            (rc = yt_get_int(v, "of", YT_OPTIONAL, 1, 1000, &of, err)))
            return rc;
        if (in > of)
            return yt_errf(err, yt_map_get(v, "in"), "'in' (%lld) cannot exceed 'of' (%lld)",
                           (long long)in, (long long)of);
        r->min_errors = (uint64_t)e;
        r->in = (int)in;
        r->of = (int)of;
    } else {
        static const char *const bk[] = {"after", NULL};
        v = yt_map_get(n, "blind");
        r->kind = CFA_BLIND;
        r->blind_after_ms = 60000;
        if ((rc = yt_expect_map(v, err)) || (rc = yt_check_keys(v, bk, err)) ||
            (rc = get_ms(v, "after", YT_OPTIONAL, 1000, &r->blind_after_ms, err)))
            return rc;
        if (!r->group_by)
            r->group_by = r->server ? CFA_BY_ENDPOINT : CFA_BY_CANARY_AZ | CFA_BY_ENDPOINT;
    }
    if (r->server && (r->group_by & CFA_BY_CANARY_AZ))
        return yt_errf(err, yt_map_get(n, "group_by") ? yt_map_get(n, "group_by") : n,
                       "a source: server alarm cannot group by canary_az (ninesd counts "
                       "requests, not who sent them)");
    if (r->kind != CFA_BURN && yt_map_get(n, "burn_rates"))
        return yt_errf(err, yt_map_key(n, "burn_rates"), "burn_rates needs an objective");
    if ((rc = yt_get(n, "hysteresis", YT_OPTIONAL, &v, err)))
        return rc;
    if (v) {
        static const char *const hk[] = {"for", "clear_for", "clear_factor", NULL};
        const struct yt_node *f;
        if ((rc = yt_expect_map(v, err)) || (rc = yt_check_keys(v, hk, err)) ||
            (rc = get_ms(v, "for", YT_OPTIONAL, 0, &r->for_ms, err)) ||
            (rc = get_ms(v, "clear_for", YT_OPTIONAL, 0, &r->clear_for_ms, err)))
            return rc;
        if ((f = yt_map_get(v, "clear_factor")) &&
            (rc = cconf_number(f, 0.01, 1, 0, &r->clear_factor, err)))
            return rc;
    }
    return 0;
}

static int parse_root(const struct yt_node *root, struct cfa_rules *out, struct nerr *err)
{
    static const char *const keys[] = {"postgres", "alertmanager", "evaluate_every",
                                       "resend_every", "hook", "alarms", NULL};
    const struct yt_node *v;
    int rc;
    out->eval_every_ms = 2000;
    out->resend_ms = 30000;
    if ((rc = yt_expect_map(root, err)) || (rc = yt_check_keys(root, keys, err)))
        return rc;
    char **strs[] = {&out->pg_dsn, &out->am_url, &out->hook};
    const char *names[] = {"postgres", "alertmanager", "hook"};
    for (int i = 0; i < 3; i++) {
        if ((rc = yt_get(root, names[i], YT_OPTIONAL, &v, err)))
            return rc;
        if (v && (rc = cconf_str(v, strs[i], err)))
            return rc;
        if (*strs[i] && !**strs[i]) {
            free(*strs[i]);
            *strs[i] = NULL;
        }
    }
    if (out->am_url && strncmp(out->am_url, "http://", 7) && strncmp(out->am_url, "https://", 8))
        return yt_errf(err, yt_map_get(root, "alertmanager"),
                       "alertmanager must be an http:// or https:// URL");
    if ((rc = get_ms(root, "evaluate_every", YT_OPTIONAL, 100, &out->eval_every_ms, err)) ||
        (rc = get_ms(root, "resend_every", YT_OPTIONAL, 1000, &out->resend_ms, err)))
        return rc;
    if ((rc = yt_get(root, "alarms", YT_REQUIRED, &v, err)) || (rc = yt_expect_seq(v, err)))
        return rc;
    if (!v->n)
        return yt_errf(err, v, "no alarms");
    if (!(out->rules = calloc(v->n, sizeof *out->rules)))
        return nerr_set(err, NERR_NOMEM, "out of memory");
    for (size_t i = 0; i < v->n; i++) {
        out->n++;
        if ((rc = parse_rule(v->items[i], &out->rules[i], err)))
            return rc;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(out->rules[j].name, out->rules[i].name))
                return yt_errf(err, yt_map_get(v->items[i], "name"),
                               "alarm name '%s' already used at line %d", out->rules[i].name,
                               out->rules[j].line);
    }
    return 0;
}

static int finish(struct yt_doc *doc, int rc, struct cfa_rules *out, struct nerr *err)
{
    memset(out, 0, sizeof *out);
    if (!rc)
        rc = parse_root(yt_root(doc), out, err);
    yt_free(doc);
    if (rc)
        cfa_rules_free(out);
    return rc;
}

int cfa_rules_load(const char *path, struct cfa_rules *out, struct nerr *err)
{
    struct yt_doc *doc = NULL;
    int rc = yt_load_file(path, &doc, err);
    return finish(doc, rc, out, err);
}

int cfa_rules_parse(const char *name, const char *text, size_t len, struct cfa_rules *out,
                    struct nerr *err)
{
    struct yt_doc *doc = NULL;
    int rc = yt_load_string(name, text, len, &doc, err);
    return finish(doc, rc, out, err);
}
