#include "canary/cfa.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canary/agg.h"

struct point {
    int64_t ts, iv;
    uint64_t attempts, errors;
};

struct tstate {
    enum cfa_state st;
    int64_t since;      /* FIRING since */
    int64_t cond_since; /* PENDING / CLEARING since */
    double value, ratio;
};

struct group {
    char *labels[4];
    char *key;
    int64_t iv; /* the longest interval seen */
    struct point *pts;
    size_t n, cap;
    struct tstate *ts; /* one per tier (1 for threshold and blind) */
};

struct rgroups {
    struct group **g;
    size_t n, cap;
};

struct cfa_engine {
    const struct cfa_rules *r;
    struct rgroups *per_rule;
};

const char *cfa_state_name(enum cfa_state s)
{
    static const char *const n[] = {"ok", "pending", "firing", "clearing"};
    return (unsigned)s < 4 ? n[s] : "?";
}

double cfa_burn_rate(uint64_t errors, uint64_t attempts, double objective)
{
    if (!attempts)
        return 0;
    return ((double)errors / (double)attempts) / (1.0 - objective);
}

int cfa_engine_new(const struct cfa_rules *rules, struct cfa_engine **out, struct nerr *err)
{
    struct cfa_engine *e = calloc(1, sizeof *e);
    if (!e || !(e->per_rule = calloc(rules->n ? rules->n : 1, sizeof *e->per_rule))) {
        free(e);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    e->r = rules;
    *out = e;
    return 0;
}

static void group_free(struct group *g)
{
    for (int i = 0; i < 4; i++)
        free(g->labels[i]);
    free(g->key);
    free(g->pts);
    free(g->ts);
    free(g);
}

void cfa_engine_free(struct cfa_engine *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->r->n; i++) {
        for (size_t j = 0; j < e->per_rule[i].n; j++)
            group_free(e->per_rule[i].g[j]);
        free(e->per_rule[i].g);
    }
    free(e->per_rule);
    free(e);
}

static const char *const dim_names[4] = {"table", "endpoint_az", "canary_az", "endpoint"};

static int wants(const struct cfa_rule *r, const struct cfa_sample *s)
{
    if (r->server != !!s->server)
        return 0;
    if (r->tables) {
        int hit = 0;
        for (char **t = r->tables; *t && !hit; t++)
            hit = !strcmp(*t, s->table);
        if (!hit)
            return 0;
    }
    if (r->server) {
        if (!r->server_ops)
            return 1;
        for (char **o = r->server_ops; *o; o++)
            if (!strcmp(*o, s->op))
                return 1;
        return 0;
    }
    for (int op = 0; op < COP_N; op++)
        if (!strcmp(s->op, canary_op_names[op]))
            return (r->ops >> op) & 1;
    return 0;
}

/* vals: the dimensions in dim_names order; only those grouped by are read. */
static struct group *find_group(struct cfa_engine *e, size_t ri, const char *const vals[4])
{
    const struct cfa_rule *r = &e->r->rules[ri];
    struct rgroups *rg = &e->per_rule[ri];
    char key[1024];
    size_t off = 0;
    key[0] = 0;
    for (int d = 0; d < 4; d++)
        if (r->group_by & (1u << d))
            off += (size_t)snprintf(key + off, off < sizeof key ? sizeof key - off : 0, "%s%s=%s",
                                    off ? "," : "", dim_names[d], vals[d]);
    if (!off)
        snprintf(key, sizeof key, "all");
    for (size_t i = 0; i < rg->n; i++)
        if (!strcmp(rg->g[i]->key, key))
            return rg->g[i];
    struct group *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    int nt = r->kind == CFA_BURN ? r->ntiers : 1;
    g->key = strdup(key);
    g->ts = calloc((size_t)nt, sizeof *g->ts);
    int ok = g->key && g->ts;
    for (int d = 0; d < 4 && ok; d++)
        if (r->group_by & (1u << d))
            ok = (g->labels[d] = strdup(vals[d])) != NULL;
    if (ok && rg->n == rg->cap) {
        size_t nc = rg->cap ? rg->cap * 2 : 8;
        struct group **ng = realloc(rg->g, nc * sizeof *ng);
        if (ng) {
            rg->g = ng;
            rg->cap = nc;
        } else
            ok = 0;
    }
    if (!ok) {
        group_free(g);
        return NULL;
    }
    rg->g[rg->n++] = g;
    return g;
}

static int add_point(struct group *g, const struct cfa_sample *s)
{
    if (s->interval_ms > g->iv)
        g->iv = s->interval_ms;
    /* Samples arrive nearly in order: search from the end. */
    size_t i = g->n;
    while (i > 0 && g->pts[i - 1].ts > s->ts_ms)
        i--;
    if (i > 0 && g->pts[i - 1].ts == s->ts_ms) {
        g->pts[i - 1].attempts += s->attempts;
        g->pts[i - 1].errors += s->errors;
        if (s->interval_ms > g->pts[i - 1].iv)
            g->pts[i - 1].iv = s->interval_ms;
        return 0;
    }
    if (g->n == g->cap) {
        size_t nc = g->cap ? g->cap * 2 : 64;
        struct point *np = realloc(g->pts, nc * sizeof *np);
        if (!np)
            return NERR_NOMEM;
        g->pts = np;
        g->cap = nc;
    }
    memmove(&g->pts[i + 1], &g->pts[i], (g->n - i) * sizeof *g->pts);
    g->pts[i] = (struct point){s->ts_ms, s->interval_ms, s->attempts, s->errors};
    g->n++;
    return 0;
}

int cfa_engine_add(struct cfa_engine *e, const struct cfa_sample *s)
{
    for (size_t ri = 0; ri < e->r->n; ri++) {
        if (!wants(&e->r->rules[ri], s))
            continue;
        const char *vals[4] = {s->table, s->endpoint_az, s->canary_az, s->endpoint};
        struct group *g = find_group(e, ri, vals);
        if (!g || add_point(g, s))
            return NERR_NOMEM;
    }
    return 0;
}

static void window_sum(const struct group *g, int64_t now, int64_t w, uint64_t *att,
                       uint64_t *errs)
{
    *att = *errs = 0;
    for (size_t i = g->n; i-- > 0;) {
        const struct point *p = &g->pts[i];
        if (p->ts < now - w)
            break;
        if (p->ts + p->iv <= now) {
            *att += p->attempts;
            *errs += p->errors;
        }
    }
}

/* cond: 1 true, 0 false, -1 unknown; clear: the firing alarm may clear. */
static void step(const struct cfa_rule *r, struct tstate *t, int cond, int clear, int64_t now,
                 enum cfa_state *from)
{
    *from = t->st;
    if (cond < 0)
        return;
    switch (t->st) {
    case CFA_OK:
        if (cond) {
            t->cond_since = now;
            t->st = r->for_ms > 0 ? CFA_PENDING : CFA_FIRING;
            if (t->st == CFA_FIRING)
                t->since = now;
        }
        break;
    case CFA_PENDING:
        if (!cond)
            t->st = CFA_OK;
        else if (now - t->cond_since >= r->for_ms) {
            t->st = CFA_FIRING;
            t->since = now;
        }
        break;
    case CFA_FIRING:
        if (clear) {
            t->cond_since = now;
            t->st = r->clear_for_ms > 0 ? CFA_CLEARING : CFA_OK;
        }
        break;
    case CFA_CLEARING:
        if (!clear)
            t->st = CFA_FIRING;
        else if (now - t->cond_since >= r->clear_for_ms)
            t->st = CFA_OK;
        break;
    }
}

static void fill_event(struct cfa_event *ev, const struct cfa_rule *r, int tier,
                       const struct group *g, const struct tstate *t, int64_t now)
{
    memset(ev, 0, sizeof *ev);
    ev->rule = r;
    ev->severity = r->kind == CFA_BURN ? r->tiers[tier].severity : r->severity;
    char a[16], b[16];
    if (r->kind == CFA_BURN)
        snprintf(ev->window, sizeof ev->window, "%s/%s", cfa_fmt_ms(r->tiers[tier].long_ms, a, sizeof a),
                 cfa_fmt_ms(r->tiers[tier].short_ms, b, sizeof b));
    else if (r->kind == CFA_THRESHOLD)
        snprintf(ev->window, sizeof ev->window, "%d of %d x %s", r->in, r->of,
                 cfa_fmt_ms(g->iv, a, sizeof a));
    else
        snprintf(ev->window, sizeof ev->window, "blind %s", cfa_fmt_ms(r->blind_after_ms, a, sizeof a));
    for (int d = 0; d < 4; d++)
        ev->labels[d] = g->labels[d];
    ev->group_key = g->key;
    ev->at_ms = now;
    ev->since_ms = t->since;
    ev->cond_since_ms = t->cond_since;
    ev->value = t->value;
    ev->error_ratio = t->ratio;
    ev->from = ev->to = t->st;
}

static void eval_group(const struct cfa_rule *r, struct group *g, int64_t now, cfa_event_fn fn,
                       void *arg)
{
    int nt = r->kind == CFA_BURN ? r->ntiers : 1;
    for (int k = 0; k < nt; k++) {
        struct tstate *t = &g->ts[k];
        int cond = -1, clear = 0;
        if (r->kind == CFA_BURN) {
            const struct cfa_tier *ti = &r->tiers[k];
            uint64_t la, le, sa, se;
            window_sum(g, now, ti->long_ms, &la, &le);
            window_sum(g, now, ti->short_ms, &sa, &se);
            if (la && sa) {
                double bl = cfa_burn_rate(le, la, r->objective);
                double bs = cfa_burn_rate(se, sa, r->objective);
                cond = bl >= ti->factor && bs >= ti->factor;
                clear = bl < ti->factor * r->clear_factor || bs < ti->factor * r->clear_factor;
                t->value = bl;
                t->ratio = (double)le / (double)la;
            }
        } else if (r->kind == CFA_THRESHOLD) {
            int64_t iv = g->iv > 0 ? g->iv : 1;
            int64_t cur = now - (((now % iv) + iv) % iv);
            uint64_t per[1000] = {0}, att = 0, errs = 0;
            int seen = 0, hits = 0;
            for (size_t i = g->n; i-- > 0;) {
                const struct point *p = &g->pts[i];
                if (p->ts < cur - (int64_t)r->of * iv)
                    break;
                if (p->ts + p->iv > now || p->ts >= cur)
                    continue;
                int64_t j = (cur - p->ts - 1) / iv; /* 0 = the last complete interval */
                if (j < 0 || j >= r->of)
                    continue;
                per[j] += p->errors;
                att += p->attempts;
                errs += p->errors;
                seen |= j == 0;
            }
            for (int j = 0; j < r->of; j++)
                hits += per[j] >= r->min_errors;
            if (seen) {
                cond = hits >= r->in;
                clear = !cond;
                t->value = (double)errs;
                t->ratio = att ? (double)errs / (double)att : 0;
            }
        } else {
            int64_t last_end = INT64_MIN;
            for (size_t i = g->n; i-- > 0;)
                if (g->pts[i].ts + g->pts[i].iv <= now) {
                    last_end = g->pts[i].ts + g->pts[i].iv;
                    break;
                }
            if (last_end != INT64_MIN) {
                cond = now - last_end > r->blind_after_ms;
                clear = !cond;
                t->value = (double)(now - last_end) / 1000.0;
                t->ratio = 0;
            }
        }
        enum cfa_state from;
        step(r, t, cond, clear, now, &from);
        if (from != t->st && fn) {
            struct cfa_event ev;
            fill_event(&ev, r, k, g, t, now);
            ev.from = from;
            fn(arg, &ev);
        }
    }
}

void cfa_engine_eval(struct cfa_engine *e, int64_t now_ms, cfa_event_fn fn, void *arg)
{
    for (size_t ri = 0; ri < e->r->n; ri++)
        for (size_t j = 0; j < e->per_rule[ri].n; j++)
            eval_group(&e->r->rules[ri], e->per_rule[ri].g[j], now_ms, fn, arg);
}

void cfa_engine_firing(struct cfa_engine *e, int64_t now_ms, cfa_event_fn fn, void *arg)
{
    for (size_t ri = 0; ri < e->r->n; ri++) {
        const struct cfa_rule *r = &e->r->rules[ri];
        int nt = r->kind == CFA_BURN ? r->ntiers : 1;
        for (size_t j = 0; j < e->per_rule[ri].n; j++)
            for (int k = 0; k < nt; k++) {
                struct group *g = e->per_rule[ri].g[j];
                if (g->ts[k].st != CFA_FIRING && g->ts[k].st != CFA_CLEARING)
                    continue;
                struct cfa_event ev;
                fill_event(&ev, r, k, g, &g->ts[k], now_ms);
                fn(arg, &ev);
            }
    }
}

int cfa_engine_restore(struct cfa_engine *e, const char *alarm, const char *window,
                       const char *const labels[4], enum cfa_state st, int64_t since_ms,
                       int64_t cond_since_ms)
{
    if (st == CFA_OK || (unsigned)st > CFA_CLEARING)
        return NERR_INVALID;
    for (size_t ri = 0; ri < e->r->n; ri++) {
        const struct cfa_rule *r = &e->r->rules[ri];
        if (strcmp(r->name, alarm))
            continue;
        int tier = 0;
        if (r->kind == CFA_BURN) {
            tier = -1;
            for (int k = 0; k < r->ntiers && tier < 0; k++) {
                char a[16], b[16], w[48];
                snprintf(w, sizeof w, "%s/%s", cfa_fmt_ms(r->tiers[k].long_ms, a, sizeof a),
                         cfa_fmt_ms(r->tiers[k].short_ms, b, sizeof b));
                if (!strcmp(w, window))
                    tier = k;
            }
            if (tier < 0)
                return NERR_NOTFOUND;
        }
        for (int d = 0; d < 4; d++)
            if (!(r->group_by & (1u << d)) != !labels[d])
                return NERR_INVALID;
        struct group *g = find_group(e, ri, labels);
        if (!g)
            return NERR_NOMEM;
        struct tstate *t = &g->ts[tier];
        t->st = st;
        t->since = since_ms;
        t->cond_since = cond_since_ms;
        return 0;
    }
    return NERR_NOTFOUND;
}

void cfa_engine_prune(struct cfa_engine *e, int64_t keep_from_ms)
{
    for (size_t ri = 0; ri < e->r->n; ri++)
        for (size_t j = 0; j < e->per_rule[ri].n; j++) {
            struct group *g = e->per_rule[ri].g[j];
            size_t k = 0;
            while (k < g->n && g->pts[k].ts < keep_from_ms)
                k++;
            /* Keep the newest point: a blind rule needs to know when the
             * group was last heard from, however long ago. */
            if (k == g->n && k)
                k--;
            memmove(g->pts, g->pts + k, (g->n - k) * sizeof *g->pts);
            g->n -= k;
        }
}
