/*
 * gameday/plan.c — a loaded playbook to a resolved plan (contract in
 * playbook.h): repeats expanded, every fault step's hosts picked by the
 * shared target rules (fault/targets.h) and checked by its kind, durations
 * drawn, all from the seed.
 */
#include "gameday/playbook.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_S 1000000000ull

struct planner {
    const struct playbook *pb;
    struct fault_world w;
    struct pb_plan *plan;
    struct nerr *err;
    int runtime_inject; /* the held select: leader inject (1-based), 0 none */
};

/* Every planning error names the step's position. */
static int plan_err(struct planner *p, const struct pb_step *st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int plan_err(struct planner *p, const struct pb_step *st, const char *fmt, ...)
{
    char msg[NERR_MSG_MAX - 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return nerr_set(p->err, NERR_INVALID, "%s:%d:%d: %s", p->pb->path, st->line, st->col, msg);
}

/* A targets.c error, at the step (out of memory stays as it is). */
static int step_err(struct planner *p, const struct pb_step *st, int rc, const struct nerr *e)
{
    if (rc == NERR_NOMEM)
        return nerr_set(p->err, rc, "%s", e->msg);
    return plan_err(p, st, "%s", e->msg);
}

struct fault_call pb_action_call(const struct pb_action *a)
{
    return (struct fault_call){.hosts = a->hosts, .nhosts = a->nhosts, .params = a->params};
}

static struct pb_action *new_action(struct planner *p, const struct pb_step *st, const char *prefix)
{
    struct pb_plan *pl = p->plan;
    if (pl->n >= PB_MAX_STEPS) {
        plan_err(p, st, "the plan has more than %d steps", PB_MAX_STEPS);
        return NULL;
    }
    struct pb_action *a = realloc(pl->a, (pl->n + 1) * sizeof *a);
    if (!a) {
        nerr_set(p->err, NERR_NOMEM, "out of memory");
        return NULL;
    }
    pl->a = a;
    a = &pl->a[pl->n++];
    memset(a, 0, sizeof *a);
    a->index = (int)pl->n;
    a->kind = st->kind;
    a->fault = st->fault;
    a->line = st->line;
    a->col = st->col;
    a->quorum_safe = st->targets.quorum_safe;
    a->params = st->params;
    a->expect = st->expect;
    snprintf(a->label, sizeof a->label, "%s%s", prefix, pb_step_name(st->kind, st->fault));
    return a;
}

static uint64_t draw_range(struct planner *p, uint64_t lo, uint64_t hi)
{
    if (hi <= lo)
        return lo;
    /* Whole milliseconds, so plans read well and replay exactly. */
    uint64_t span = (hi - lo) / 1000000u;
    return lo + fault_world_below(&p->w, span + 1) * 1000000u;
}

static int plan_inject(struct planner *p, const struct pb_step *st, struct pb_action *a)
{
    struct nerr e = {0};
    const struct fault_targets *t = &st->targets;
    int rc = fault_targets_pick(&p->w, t, &a->hosts, &a->nhosts, &e);
    if (rc)
        return step_err(p, st, rc, &e);
    if (t->by_leader) {
        const struct pb_traffic *tr = &p->pb->traffic;
        if (!t->table && !tr->enabled)
            return plan_err(p, st,
                            "select: leader needs leader_of.table (the playbook has no traffic "
                            "table to default to)");
        if ((!t->table || (tr->enabled && !strcmp(t->table, tr->table))) &&
            (unsigned)t->partition >= tr->partitions)
            return plan_err(p, st, "leader_of.partition %d: table %s has %u partitions",
                            t->partition, tr->table, tr->partitions);
        if (p->runtime_inject && !st->dur_max && !st->fault->instant)
            return plan_err(p, st,
                            "step %d's select: leader fault is still held: one at a time",
                            p->runtime_inject);
        a->runtime = t; /* hosts come at run time; the kind checks them then */
    } else {
        struct fault_call call = pb_action_call(a);
        if (st->fault->check && (rc = st->fault->check(p->w.inv, &call, &e)))
            return step_err(p, st, rc, &e);
    }
    a->hold_ns = draw_range(p, st->dur_min, st->dur_max);
    if (!a->hold_ns && !st->fault->instant) { /* held until a heal step */
        fault_world_hold(&p->w, a->hosts, a->nhosts, fault_kind_id(st->fault));
        if (t->by_leader) {
            fault_world_hold_runtime(&p->w, fault_kind_id(st->fault));
            p->runtime_inject = a->index;
        }
    }
    return 0;
}

static int plan_heal(struct planner *p, const struct pb_step *st, struct pb_action *a)
{
    struct nerr e = {0};
    int runtime = 0;
    int rc = fault_targets_heal(&p->w, &st->targets, fault_kind_id(st->fault), &a->hosts,
                                &a->nhosts, &runtime, &e);
    if (rc)
        return step_err(p, st, rc, &e);
    if (runtime) {
        a->heals_runtime = p->runtime_inject;
        p->runtime_inject = 0;
    }
    return 0;
}

static int plan_steps(struct planner *p, const struct pb_step *st, size_t n, const char *prefix)
{
    for (size_t i = 0; i < n; i++) {
        const struct pb_step *s = &st[i];
        int rc = 0;
        if (s->kind == PB_REPEAT) {
            for (int r = 1; r <= s->times; r++) {
                char pre[96];
                snprintf(pre, sizeof pre, "%sround %d/%d: ", prefix, r, s->times);
                if ((rc = plan_steps(p, s->steps, s->nsteps, pre)))
                    return rc;
            }
            continue;
        }
        struct pb_action *a = new_action(p, s, prefix);
        if (!a)
            return p->err ? p->err->code : NERR_NOMEM;
        switch (s->kind) {
        case PB_INJECT:
            rc = plan_inject(p, s, a);
            break;
        case PB_HEAL:
            rc = plan_heal(p, s, a);
            break;
        case PB_SLEEP:
            a->hold_ns = draw_range(p, s->dur_min, s->dur_max);
            break;
        default:
            break;
        }
        if (rc)
            return rc;
        a->timeout_ns =
            s->timeout_ns ? s->timeout_ns : pb_default_timeout(a->kind, a->fault, a->hold_ns);
        if (a->timeout_ns < a->hold_ns)
            return plan_err(p, s, "timeout is shorter than the step's duration");
        p->plan->bound_ns += a->timeout_ns;
        p->plan->hold_ns += a->hold_ns;
    }
    return 0;
}

int playbook_plan(const struct playbook *pb, const struct inventory *inv, uint64_t seed,
                  struct pb_plan **out, struct nerr *err)
{
    struct planner p = {.pb = pb, .err = err};
    int rc;
    *out = NULL;
    if (!(p.plan = calloc(1, sizeof *p.plan)) || fault_world_init(&p.w, inv, seed)) {
        free(p.plan);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    p.plan->seed = seed;
    if ((rc = plan_steps(&p, pb->steps, pb->nsteps, ""))) {
        pb_plan_free(p.plan);
        fault_world_free(&p.w);
        return rc;
    }
    fault_world_free(&p.w);
    *out = p.plan;
    return 0;
}

void pb_plan_free(struct pb_plan *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->a[i].hosts);
    free(p->a);
    free(p);
}

void pb_action_what(const struct pb_action *a, const struct inventory *inv, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = 0;
    if (!a->fault) {
        snprintf(buf, cap, "-");
        return;
    }
    if (!a->nhosts && a->runtime) {
        snprintf(buf, cap, "the %s holding the leader of %s partition %d (chosen when the step runs)",
                 fault_unit_name(a->runtime->unit),
                 a->runtime->table ? a->runtime->table : "the traffic table", a->runtime->partition);
        return;
    }
    if (!a->nhosts && a->heals_runtime) {
        snprintf(buf, cap, "the hosts step %d chose when it ran", a->heals_runtime);
        return;
    }
    if (!a->nhosts) {
        snprintf(buf, cap, "no host");
        return;
    }
    len += (size_t)snprintf(buf, cap, "%s ", a->nhosts > 1 ? "nodes" : "node");
    for (size_t i = 0; i < a->nhosts && len + 1 < cap; i++) {
        const struct inv_host *h = &inv->hosts[a->hosts[i]];
        len += (size_t)snprintf(buf + len, cap - len, "%s%s(%s/%s)", i ? " " : "", h->name, h->az,
                                h->rack);
    }
}

static void fmt_dur(uint64_t ns, char *buf, size_t cap)
{
    if (ns % NS_PER_S == 0)
        snprintf(buf, cap, "%llus", (unsigned long long)(ns / NS_PER_S));
    else
        snprintf(buf, cap, "%.3fs", (double)ns / 1e9);
}

void pb_plan_print(const struct pb_plan *p, const struct inventory *inv, FILE *f)
{
    char what[1024], d[32], t[32], b[32], h[32], extra[256];
    fprintf(f, "plan: seed %llu, %zu steps, inventory %s (%zu hosts)\n",
            (unsigned long long)p->seed, p->n, inv->name, inv->n_hosts);
    for (size_t i = 0; i < p->n; i++) {
        const struct pb_action *a = &p->a[i];
        pb_action_what(a, inv, what, sizeof what);
        fmt_dur(a->timeout_ns, t, sizeof t);
        fprintf(f, "%4d  %-36s ", a->index, a->label);
        if (a->fault)
            fprintf(f, "%s", what);
        if (a->kind == PB_INJECT) {
            if (a->hold_ns) {
                fmt_dur(a->hold_ns, d, sizeof d);
                fprintf(f, " for %s", d);
            } else {
                fprintf(f, " %s", a->fault->held_until);
            }
            extra[0] = 0;
            if (a->fault->describe)
                a->fault->describe(a->params, extra, sizeof extra);
            fprintf(f, "%s", extra);
        }
        if (a->kind == PB_SLEEP) {
            fmt_dur(a->hold_ns, d, sizeof d);
            fprintf(f, "%s", d);
        }
        fprintf(f, "  [timeout %s, line %d]\n", t, a->line);
    }
    fmt_dur(p->hold_ns, h, sizeof h);
    fmt_dur(p->bound_ns, b, sizeof b);
    fprintf(f, "time: at least %s of faults and sleep, at most %s (every step's timeout)\n", h, b);
}
