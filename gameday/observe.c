/*
 * gameday/observe.c — what customers see during a game day (contract in
 * run.h, "observe.c"): the canaries of every AZ, the alarm engine over
 * their samples (pushing to Alertmanager when one is named), the per-AZ
 * series of the traffic and the canaries, the stop conditions, the steady
 * state and the judgement of every step's expect:.
 *
 * Threads: the observer thread owns the canaries' ticks and the alarm
 * engine (canary/cfa.h is single-threaded; the canaries call on_sample from
 * canary_tick, on this thread). The traffic thread calls gd_obs_traffic.
 * The runner's thread reads through the gd_obs_* calls. The series, the
 * events and the firing set are under g->obs_mu.
 */
#include "gameday/run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "canary/alertmgr.h"
#include "canary/canary.h"
#include "canary/cfa.h"
#include "canary/rules.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "proto/ddb.h"

#define OBS_TICK_NS (200u * 1000000u)
#define WARMUP_S 3 /* seconds after the sources start that no verdict looks at */

struct gd_obs {
    pthread_t thr;
    int started;
    atomic_int quit;
    struct canary_config cfg[GD_MAX_AZS];
    struct canary *can[GD_MAX_AZS];
    size_t ncan;
    struct cfa_rules rules;
    int have_rules;
    struct cfa_engine *eng;
    struct am_client *am;
    json_t *outbox; /* Alertmanager alerts not yet sent */
    int64_t last_eval_ms, last_resend_ms;
    /* The end of the newest interval the canaries closed: the engine
     * evaluates at this time, not at the wall clock. A canary closes an
     * interval only when no probe due in it can still be running, so its
     * samples arrive seconds late while a node hangs (a probe waits out its
     * attempts); windows that end at the wall clock would then hold no
     * sample of their last seconds, the condition would be unknown, and a
     * gray failure would never fire. */
    int64_t data_end_ms;
    double src_start_s; /* when the canaries began */
    uint64_t probes, probe_errors;
};

static double now_s(const struct gd_run *g)
{
    return gd_secs(clock_mono_ns() - g->t0);
}

static double wall_to_s(const struct gd_run *g, int64_t ms)
{
    return (double)(ms - g->t0_wall_ms) / 1000.0;
}

/* ---- series ---------------------------------------------------------------- */

static struct gd_slot *slot(struct gd_series *s, size_t az, long sec)
{
    if (sec < 0 || sec > 10 * 24 * 3600 || az >= GD_MAX_AZS)
        return NULL;
    if ((size_t)sec >= s->cap[az]) {
        size_t cap = s->cap[az] ? s->cap[az] : 64;
        while (cap <= (size_t)sec)
            cap *= 2;
        struct gd_slot *n = realloc(s->s[az], cap * sizeof *n);
        if (!n)
            return NULL;
        memset(n + s->cap[az], 0, (cap - s->cap[az]) * sizeof *n);
        s->s[az] = n;
        s->cap[az] = cap;
    }
    if ((size_t)sec >= s->n[az])
        s->n[az] = (size_t)sec + 1;
    return &s->s[az][sec];
}

static void series_free(struct gd_series *s)
{
    for (size_t a = 0; a < GD_MAX_AZS; a++) {
        for (size_t i = 0; i < s->n[a]; i++)
            free(s->s[a][i].lat);
        free(s->s[a]);
    }
    memset(s, 0, sizeof *s);
}

void gd_obs_traffic(struct gd_run *g, unsigned ep, int served, uint64_t done_ns, uint64_t lat_ns)
{
    if (!g->ep_az)
        return;
    int az = g->ep_az[ep];
    if (az < 0)
        return;
    long sec = (long)((done_ns - g->t0) / NS_PER_S);
    pthread_mutex_lock(&g->obs_mu);
    struct gd_slot *sl = slot(&g->traffic_s, (size_t)az, sec);
    if (sl) {
        if (served)
            sl->ok++;
        else
            sl->err++;
        if (served && g->lat_kept < GD_MAX_LAT_SAMPLES) {
            if (sl->nlat == sl->caplat) {
                uint32_t cap = sl->caplat ? sl->caplat * 2 : 64;
                uint32_t *n = realloc(sl->lat, cap * sizeof *n);
                if (n) {
                    sl->lat = n;
                    sl->caplat = cap;
                }
            }
            if (sl->nlat < sl->caplat) {
                uint64_t us = lat_ns / 1000u;
                sl->lat[sl->nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
                g->lat_kept++;
            }
        } else if (served) {
            g->lat_dropped++;
        }
    }
    pthread_mutex_unlock(&g->obs_mu);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Totals of AZ az over seconds [from, to) (caller holds obs_mu); the p99 in
 * ms when p99 is not NULL (-1: no latency). */
static void window(struct gd_series *s, size_t az, long from, long to, uint64_t *ok,
                   uint64_t *err, double *p99)
{
    *ok = *err = 0;
    size_t nl = 0;
    if (from < 0)
        from = 0;
    for (long i = from; i < to && (size_t)i < s->n[az]; i++) {
        *ok += s->s[az][i].ok;
        *err += s->s[az][i].err;
        nl += s->s[az][i].nlat;
    }
    if (!p99)
        return;
    *p99 = -1;
    uint32_t *all = nl ? malloc(nl * sizeof *all) : NULL;
    if (!all)
        return;
    size_t k = 0;
    for (long i = from; i < to && (size_t)i < s->n[az]; i++) {
        memcpy(all + k, s->s[az][i].lat, s->s[az][i].nlat * sizeof *all);
        k += s->s[az][i].nlat;
    }
    qsort(all, k, sizeof *all, cmp_u32);
    size_t idx = (size_t)ceil(0.99 * (double)k);
    *p99 = (double)all[idx ? idx - 1 : 0] / 1000.0;
    free(all);
}

/* ---- alarms ---------------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* 0, or -1 when it could not be kept (out of memory). */
static int record_event(struct gd_run *g, const struct cfa_event *e, int firing)
{
    pthread_mutex_lock(&g->obs_mu);
    if (g->nev == g->capev) {
        size_t cap = g->capev ? g->capev * 2 : 32;
        struct gd_alarm_ev *n = realloc(g->ev, cap * sizeof *n);
        if (!n) {
            pthread_mutex_unlock(&g->obs_mu);
            log_error("gameday: out of memory keeping an alarm change");
            return -1;
        }
        g->ev = n;
        g->capev = cap;
    }
    struct gd_alarm_ev *v = &g->ev[g->nev++];
    memset(v, 0, sizeof *v);
    v->at_s = now_s(g); /* when it would have paged, not the data's time */
    v->alarm = strdup(e->rule->name);
    v->severity = dup_or_null(e->severity);
    v->window = strdup(e->window);
    for (int i = 0; i < 4; i++)
        v->label[i] = dup_or_null(e->labels[i]);
    v->firing = firing;
    pthread_mutex_unlock(&g->obs_mu);
    return 0;
}

/* What a template ({{target.az}}, {{target.rack}}, {{target.host}}) stands
 * for on host h. */
static const char *target_value(const struct inv_host *h, const char *tmpl)
{
    return !strcmp(tmpl, "{{target.az}}")     ? h->az
           : !strcmp(tmpl, "{{target.rack}}") ? h->rack
                                              : h->name;
}

/* Does v match tmpl: itself, or a template's value on one of a's hosts. */
static int template_matches(const struct gd_run *g, const struct pb_action *a, const char *tmpl,
                            const char *v)
{
    if (!strstr(tmpl, "{{"))
        return !strcmp(tmpl, v);
    for (size_t i = 0; a && i < a->nhosts; i++) {
        const char *x = target_value(&g->inv->hosts[a->hosts[i]], tmpl);
        if (x && !strcmp(x, v))
            return 1;
    }
    return 0;
}

static int match_event(const struct gd_run *g, const struct pb_alarm_match *m,
                       const struct pb_action *a, const char *alarm, char *const label[4])
{
    if (m->alarm && strcmp(m->alarm, alarm))
        return 0;
    for (int i = 0; i < PB_NLABELS; i++) {
        if (!m->label[i])
            continue;
        if (!label[i])
            return 0; /* the alarm is not grouped by that label */
        if (template_matches(g, a, m->label[i], label[i]) == m->neg[i])
            return 0;
    }
    return 1;
}

/* The matcher as text, its templates resolved against a's targets. */
static void match_text(const struct gd_run *g, const struct pb_alarm_match *m,
                       const struct pb_action *a, char *buf, size_t cap)
{
    static const char *const names[PB_NLABELS] = {"table", "endpoint_az", "canary_az",
                                                  "endpoint"};
    size_t o = (size_t)snprintf(buf, cap, "%s", m->alarm ? m->alarm : "any alarm");
    int any = 0;
    for (int i = 0; i < PB_NLABELS && o < cap; i++)
        if (m->label[i]) {
            char val[200];
            size_t vo = 0;
            val[0] = 0;
            if (a && strstr(m->label[i], "{{"))
                for (size_t k = 0; k < a->nhosts && vo < sizeof val; k++) {
                    const char *x = target_value(&g->inv->hosts[a->hosts[k]], m->label[i]);
                    if (!strstr(val, x))
                        vo += (size_t)snprintf(val + vo, sizeof val - vo, "%s%s", vo ? "|" : "",
                                               x);
                }
            else
                snprintf(val, sizeof val, "%s", m->label[i]);
            o += (size_t)snprintf(buf + o, cap - o, "%s%s%s%s", any ? "," : "{", names[i],
                                  m->neg[i] ? "!=" : "=", val);
            any = 1;
        }
    if (any && o < cap)
        snprintf(buf + o, cap - o, "}");
}

static void event_text(const struct gd_alarm_ev *v, char *buf, size_t cap)
{
    static const char *const names[4] = {"table", "endpoint_az", "canary_az", "endpoint"};
    size_t o = (size_t)snprintf(buf, cap, "%s", v->alarm);
    int any = 0;
    for (int i = 0; i < 4 && o < cap; i++)
        if (v->label[i]) {
            o += (size_t)snprintf(buf + o, cap - o, "%s%s=%s", any ? "," : "{", names[i],
                                  v->label[i]);
            any = 1;
        }
    if (any && o < cap)
        snprintf(buf + o, cap - o, "}");
}

/* Is the change v expected by a fires: of a step that has begun? */
static int planned(struct gd_run *g, const struct gd_alarm_ev *v)
{
    int cur = atomic_load(&g->cur);
    for (int i = 0; i <= cur && (size_t)i < g->plan->n; i++) {
        const struct pb_action *a = &g->plan->a[i];
        if (!a->expect)
            continue;
        for (size_t k = 0; k < a->expect->nfires; k++)
            if (match_event(g, &a->expect->fires[k], a, v->alarm, v->label))
                return 1;
    }
    return 0;
}

static void stop_run(struct gd_run *g, const char *why)
{
    int zero = 0;
    pthread_mutex_lock(&g->obs_mu);
    if (atomic_compare_exchange_strong(&g->stopped, &zero, 1)) {
        gd_fmt(g->stop_reason, sizeof g->stop_reason, "%s", why);
        g->stop_at_s = now_s(g);
    }
    pthread_mutex_unlock(&g->obs_mu);
}

static int steps_running(const struct gd_run *g)
{
    int cur = atomic_load(&g->cur);
    return cur >= 0 && (size_t)cur < g->plan->n;
}

static void on_event(void *arg, const struct cfa_event *e)
{
    struct gd_run *g = arg;
    int firing = e->to == CFA_FIRING && e->from != CFA_CLEARING;
    int resolved = e->to == CFA_OK && (e->from == CFA_FIRING || e->from == CFA_CLEARING);
    if (!firing && !resolved)
        return;
    if (record_event(g, e, firing))
        return;
    struct gd_obs *o = g->obs;
    if (o->am && o->outbox)
        json_array_append_new(o->outbox, am_alert_json(e, resolved, 4 * o->rules.resend_ms));
    pthread_mutex_lock(&g->obs_mu);
    struct gd_alarm_ev v = g->ev[g->nev - 1];
    pthread_mutex_unlock(&g->obs_mu);
    char what[256];
    event_text(&v, what, sizeof what);
    gd_note(g, "alarm %s %s", what, firing ? "FIRING" : "resolved");
    if (!firing || !steps_running(g))
        return;
    for (size_t i = 0; i < g->pb->nstops; i++) {
        const struct pb_probe *p = &g->pb->stops[i];
        char why[NERR_MSG_MAX];
        if (p->kind == PB_PROBE_OUTSIDE_PLAN && !planned(g, &v)) {
            gd_fmt(why, sizeof why, "stop condition (line %d): alarm %s fired outside the plan",
                   p->line, what);
            stop_run(g, why);
        } else if (p->kind == PB_PROBE_NO_ALARM && match_event(g, &p->match, NULL, v.alarm,
                                                                v.label)) {
            gd_fmt(why, sizeof why, "stop condition (line %d): alarm %s fired", p->line, what);
            stop_run(g, why);
        }
    }
}

static void resend(void *arg, const struct cfa_event *e)
{
    struct gd_obs *o = arg;
    json_array_append_new(o->outbox, am_alert_json(e, 0, 4 * o->rules.resend_ms));
}

/* The canaries' closed cells: the engine and the canary series. */
static void on_sample(void *arg, const struct canary_sample *s)
{
    struct gd_run *g = arg;
    struct gd_obs *o = g->obs;
    /* The first seconds of a canary are its set-up (connections, the first
     * leader of each partition it touches): no alarm is judged on them. */
    if (wall_to_s(g, s->start_ms) < o->src_start_s + WARMUP_S)
        return;
    if (s->start_ms + s->interval_ms > o->data_end_ms)
        o->data_end_ms = s->start_ms + s->interval_ms;
    if (o->eng) {
        struct cfa_sample cs = {.ts_ms = s->start_ms,
                                .interval_ms = s->interval_ms,
                                .canary_az = s->canary_az,
                                .endpoint = s->endpoint,
                                .endpoint_az = s->endpoint_az,
                                .table = s->table,
                                .op = s->op,
                                .attempts = s->attempts,
                                .errors = s->errors};
        if (cfa_engine_add(o->eng, &cs))
            log_error("gameday: out of memory adding a canary sample");
    }
    if (!strcmp(s->op, "probe")) {
        o->probes += s->attempts;
        o->probe_errors += s->errors;
        return; /* availability counts the requests, as the alarms do */
    }
    size_t az;
    for (az = 0; az < g->naz && strcmp(g->az[az], s->endpoint_az); az++)
        ;
    if (az == g->naz)
        return;
    long sec = (long)floor(wall_to_s(g, s->start_ms));
    pthread_mutex_lock(&g->obs_mu);
    struct gd_slot *sl = slot(&g->canary_s, az, sec);
    if (sl) {
        sl->ok += s->attempts - s->errors;
        sl->err += s->errors;
    }
    pthread_mutex_unlock(&g->obs_mu);
}

/* ---- availability over windows ----------------------------------------------- */

static struct gd_series *source_series(struct gd_run *g, enum pb_source src)
{
    int canaries = src == PB_SRC_CANARIES || (src == PB_SRC_DEFAULT && g->pb->canaries.enabled);
    return canaries ? &g->canary_s : &g->traffic_s;
}

static const char *source_name(struct gd_run *g, enum pb_source src)
{
    return source_series(g, src) == &g->canary_s ? "canaries" : "traffic";
}

/* Availability per AZ (in mask; 0: every AZ) over [from, to) seconds: the
 * lowest in *low (percent), the text in buf. 0 when some AZ in scope had
 * no request at all (silence is not availability). */
static int avail(struct gd_run *g, enum pb_source src, unsigned mask, long from, long to,
                 double *low, char *buf, size_t cap)
{
    struct gd_series *s = source_series(g, src);
    size_t o = 0;
    int ok = 1;
    *low = 100.0;
    buf[0] = 0;
    pthread_mutex_lock(&g->obs_mu);
    for (size_t a = 0; a < g->naz; a++) {
        if (mask && !(mask & (1u << a)))
            continue;
        uint64_t n_ok, n_err;
        window(s, a, from, to, &n_ok, &n_err, NULL);
        if (o < cap) {
            if (n_ok + n_err)
                o += (size_t)snprintf(buf + o, cap - o, "%s%s %.2f%% of %llu", o ? ", " : "",
                                      g->az[a], 100.0 * (double)n_ok / (double)(n_ok + n_err),
                                      (unsigned long long)(n_ok + n_err));
            else
                o += (size_t)snprintf(buf + o, cap - o, "%s%s no requests", o ? ", " : "",
                                      g->az[a]);
        }
        if (!(n_ok + n_err)) {
            ok = 0;
            *low = 0;
            continue;
        }
        double v = 100.0 * (double)n_ok / (double)(n_ok + n_err);
        if (v < *low)
            *low = v;
    }
    pthread_mutex_unlock(&g->obs_mu);
    return ok;
}

static int p99s(struct gd_run *g, unsigned mask, long from, long to, double *high, char *buf,
                size_t cap)
{
    size_t o = 0;
    int ok = 1;
    *high = 0;
    buf[0] = 0;
    pthread_mutex_lock(&g->obs_mu);
    for (size_t a = 0; a < g->naz; a++) {
        if (mask && !(mask & (1u << a)))
            continue;
        uint64_t n_ok, n_err;
        double p;
        window(&g->traffic_s, a, from, to, &n_ok, &n_err, &p);
        if (o < cap)
            o += p >= 0 ? (size_t)snprintf(buf + o, cap - o, "%s%s %.1f ms", o ? ", " : "",
                                           g->az[a], p)
                        : (size_t)snprintf(buf + o, cap - o, "%s%s no requests", o ? ", " : "",
                                           g->az[a]);
        if (p < 0) {
            ok = 0;
            continue;
        }
        if (p > *high)
            *high = p;
    }
    pthread_mutex_unlock(&g->obs_mu);
    return ok;
}

/* The AZs of an action's hosts as a mask. */
static unsigned target_azs(const struct gd_run *g, const struct pb_action *a)
{
    unsigned m = 0;
    for (size_t i = 0; i < a->nhosts; i++)
        for (size_t z = 0; z < g->naz; z++)
            if (!strcmp(g->inv->hosts[a->hosts[i]].az, g->az[z]))
                m |= 1u << z;
    return m;
}

static unsigned scope_mask(const struct gd_run *g, const struct pb_action *a, enum pb_scope sc)
{
    unsigned all = g->naz >= 32 ? ~0u : (1u << g->naz) - 1, t = target_azs(g, a);
    return sc == PB_SCOPE_AFFECTED ? t : sc == PB_SCOPE_UNAFFECTED ? (all & ~t) : all;
}

/* ---- stop conditions on availability, every second ---------------------- */

#define RECOVERY_GRACE_S 15 /* after a fault ends, its AZs may still be recovering */

/* The AZs a stop condition of scope sc looks at for a window starting at
 * `from`: with unaffected, not those of a fault that was in place during
 * the window (or ended less than RECOVERY_GRACE_S before it), nor those of
 * a fault held until a heal step that has not run yet. */
static unsigned stop_mask(struct gd_run *g, enum pb_scope sc, long from)
{
    unsigned all = g->naz >= 32 ? ~0u : (1u << g->naz) - 1, faulted = 0;
    if (sc == PB_SCOPE_ALL)
        return all;
    int cur = atomic_load(&g->cur);
    pthread_mutex_lock(&g->mu);
    for (int i = 0; i <= cur && (size_t)i < g->plan->n; i++) {
        const struct pb_action *a = &g->plan->a[i];
        const struct step_rec *r = &g->rec[i];
        if (a->kind != PB_INJECT || !r->off_ns)
            continue;
        int held = !a->hold_ns;
        for (int j = i + 1; held && j < cur; j++)
            held = !(g->plan->a[j].kind == PB_HEAL && g->plan->a[j].fault == a->fault);
        double end = r->end_ns ? gd_secs(r->end_ns - g->t0) : 1e18;
        if (held || end + RECOVERY_GRACE_S > (double)from)
            faulted |= target_azs(g, a);
    }
    pthread_mutex_unlock(&g->mu);
    return sc == PB_SCOPE_UNAFFECTED ? all & ~faulted : faulted;
}

static void check_stop_avail(struct gd_run *g)
{
    if (!steps_running(g) || atomic_load(&g->stopped))
        return;
    double t = now_s(g);
    for (size_t i = 0; i < g->pb->nstops; i++) {
        const struct pb_probe *p = &g->pb->stops[i];
        if (p->kind != PB_PROBE_AVAIL)
            continue;
        long to = (long)floor(t) - 1; /* the last whole second may still be filling */
        long from = to - (long)(p->over_ns / NS_PER_S);
        if (from < (long)g->obs->src_start_s + WARMUP_S)
            continue;
        double low;
        char buf[400];
        unsigned mask = stop_mask(g, p->scope, from);
        if (!mask)
            continue;
        if (!avail(g, p->source, mask, from, to, &low, buf, sizeof buf) || low < p->min) {
            char why[NERR_MSG_MAX];
            gd_fmt(why, sizeof why,
                   "stop condition (line %d): availability (%s) over the last %llus below "
                   "%.2f%%: %s",
                   p->line, source_name(g, p->source),
                   (unsigned long long)(p->over_ns / NS_PER_S), p->min, buf);
            stop_run(g, why);
        }
    }
}

/* ---- the thread -------------------------------------------------------------- */

static void flush_am(struct gd_obs *o)
{
    if (!o->am || !o->outbox || !json_array_size(o->outbox))
        return;
    struct nerr e = {0};
    if (am_push(o->am, o->outbox, &e))
        log_warn("gameday: alertmanager: %s (kept for the next try)", e.msg);
    else
        json_array_clear(o->outbox);
    if (json_array_size(o->outbox) > 10000)
        json_array_clear(o->outbox);
}

static void *obs_main(void *arg)
{
    struct gd_run *g = arg;
    struct gd_obs *o = g->obs;
    uint64_t last_stop_check = 0;
    while (!atomic_load(&o->quit)) {
        for (size_t i = 0; i < o->ncan; i++)
            canary_tick(o->can[i]);
        int64_t wall = clock_wall_ms();
        if (o->eng && o->data_end_ms && wall - o->last_eval_ms >= o->rules.eval_every_ms) {
            o->last_eval_ms = wall;
            cfa_engine_eval(o->eng, o->data_end_ms, on_event, g);
            if (o->am && wall - o->last_resend_ms >= o->rules.resend_ms) {
                o->last_resend_ms = wall;
                cfa_engine_firing(o->eng, o->data_end_ms, resend, o);
            }
            flush_am(o);
            int64_t keep = cfa_rules_max_window(&o->rules);
            cfa_engine_prune(o->eng, o->data_end_ms - keep - 60000);
        }
        uint64_t now = clock_mono_ns();
        if (now - last_stop_check >= NS_PER_S) {
            last_stop_check = now;
            check_stop_avail(g);
        }
        struct timespec ts = {0, OBS_TICK_NS};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* The canaries' table, created through the first node and ACTIVE on every
 * node before any canary starts: a probe must never meet its own set-up. */
static int canary_table(struct gd_run *g, struct nerr *err)
{
    size_t n = g->conf->nnodes;
    struct ddb_client **cl = calloc(n + 1, sizeof *cl);
    int rc = 0;
    if (!cl)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n && !rc; i++)
        rc = gd_node_client(g, i, &cl[i], err);
    json_t *req = rc ? NULL
                     : json_pack("{s:s, s:[{s:s, s:s}], s:[{s:s, s:s}], s:s}", "TableName",
                                 g->pb->canaries.table, "KeySchema", "AttributeName", "pk",
                                 "KeyType", "HASH", "AttributeDefinitions", "AttributeName", "pk",
                                 "AttributeType", "S", "BillingMode", "PAY_PER_REQUEST");
    struct ddb_ensure_opts eo = {.create_tries = 10, .active_wait_ms = 60000};
    if (!rc && !req)
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
    if (!rc && (rc = ddb_ensure_table(cl, n, req, &eo, err))) {
        char m[NERR_MSG_MAX];
        gd_fmt(m, sizeof m, "%s", err->msg);
        nerr_set(err, rc, "canary table %s: %s", g->pb->canaries.table, m);
    }
    json_decref(req);
    for (size_t i = 0; i < n; i++)
        ddb_client_free(cl[i]);
    free(cl);
    return rc;
}

static int setup_canaries(struct gd_run *g, struct nerr *err)
{
    struct gd_obs *o = g->obs;
    const struct pb_canaries *k = &g->pb->canaries;
    int trc = canary_table(g, err);
    if (trc)
        return trc;
    if (!k->postgres && !k->no_postgres && (trc = gd_pg_start(g, err)))
        return trc;
    char host[256] = "";
    int port = 0;
    if (k->metrics) {
        const char *colon = strrchr(k->metrics, ':');
        if (colon && (size_t)(colon - k->metrics) < sizeof host) {
            memcpy(host, k->metrics, (size_t)(colon - k->metrics));
            host[colon - k->metrics] = 0;
            port = atoi(colon + 1);
        }
    }
    for (size_t a = 0; a < g->naz; a++) {
        struct canary_config *c = &o->cfg[a];
        memset(c, 0, sizeof *c);
        if (!(c->az = strdup(g->az[a])) ||
            !(c->endpoints = calloc(g->conf->nnodes, sizeof *c->endpoints)) ||
            !(c->tables = calloc(1, sizeof *c->tables)) || !(c->tables[0] = strdup(k->table)))
            return nerr_set(err, NERR_NOMEM, "out of memory");
        c->ntables = 1;
        for (size_t i = 0; i < g->conf->nnodes; i++) {
            const struct cluster_node *n = &g->conf->nodes[i];
            struct envsub_endpoint *e = &c->endpoints[c->nendpoints++];
            e->name = strdup(n->id);
            e->az = strdup(n->az);
            if (asprintf(&e->url, "http://%s", n->api) < 0)
                e->url = NULL;
            if (!e->name || !e->az || !e->url)
                return nerr_set(err, NERR_NOMEM, "out of memory");
        }
        c->rate = k->rate;
        c->interval_ns = k->interval_ns;
        c->timeout_ns = k->timeout_ns;
        /* A probe against a node that hangs or elects takes up to its
         * attempts x timeout: enough workers that the healthy endpoints'
         * probes never wait for one (a probe that cannot start in time is
         * counted as failed, canary.h). */
        c->workers = 16;
        c->max_attempts = 3;
        c->retry_base_ns = NS_PER_S / 4;
        c->retry_max_backoff_ns = 2 * NS_PER_S;
        c->retry_quota = 500;
        c->create_tables = 1;
        c->buffer_rows = 100000;
        c->flush_ns = NS_PER_S;
        if (g->conf->access_key_id) {
            c->access_key_id = strdup(g->conf->access_key_id);
            c->secret_access_key = strdup(g->conf->secret_access_key);
            c->region = strdup("local");
        }
        const char *dsn = k->postgres ? k->postgres : g->pg_started ? g->pg_dsn : NULL;
        if (dsn && !(c->pg_dsn = strdup(dsn)))
            return nerr_set(err, NERR_NOMEM, "out of memory");
        if (port && (!(c->metrics_host = strdup(host))))
            return nerr_set(err, NERR_NOMEM, "out of memory");
        c->metrics_port = port ? port + (int)a : 0;
        c->on_sample = on_sample;
        c->on_sample_arg = g;
        int rc = canary_start(c, &o->can[a], err);
        if (rc)
            return rc;
        o->ncan = a + 1;
    }
    o->src_start_s = now_s(g);
    return 0;
}

int gd_obs_start(struct gd_run *g, struct nerr *err)
{
    struct gd_obs *o = calloc(1, sizeof *o);
    if (!o)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    g->obs = o;
    o->src_start_s = now_s(g);
    int rc = 0;
    if (g->pb->alarms.enabled) {
        if ((rc = cfa_rules_load(g->pb->alarms.rules, &o->rules, err)))
            return rc;
        o->have_rules = 1;
        if ((rc = cfa_engine_new(&o->rules, &o->eng, err)))
            return rc;
        const char *am = g->pb->alarms.alertmanager ? g->pb->alarms.alertmanager
                                                    : o->rules.am_url;
        if (am) {
            if ((rc = am_client_new(am, &o->am, err)))
                return rc;
            o->outbox = json_array();
        }
    }
    if (g->pb->canaries.enabled && (rc = setup_canaries(g, err)))
        return rc;
    if (g->pb->canaries.enabled || g->pb->nstops) {
        if (pthread_create(&o->thr, NULL, obs_main, g))
            return nerr_set(err, NERR_IO, "cannot start the observer thread");
        o->started = 1;
    }
    if (g->pb->canaries.enabled)
        gd_note(g, "canaries: one per AZ (%zu) probing %zu endpoints at %.0f/s each%s%s", g->naz,
                g->conf->nnodes, g->pb->canaries.rate, o->eng ? ", alarms from " : "",
                o->eng ? g->pb->alarms.rules : "");
    return 0;
}

void gd_obs_stop(struct gd_run *g)
{
    struct gd_obs *o = g->obs;
    if (!o)
        return;
    if (o->started) {
        atomic_store(&o->quit, 1);
        pthread_join(o->thr, NULL);
        o->started = 0;
    }
    for (size_t i = 0; i < o->ncan; i++) {
        struct nerr e = {0};
        canary_stop(o->can[i]);
        if (canary_finish(o->can[i], 5 * NS_PER_S, &e))
            log_warn("gameday: canary %s: %s", o->cfg[i].az, e.msg);
        o->can[i] = NULL;
    }
    o->ncan = 0;
    gd_pg_stop(g); /* after the canaries flushed their samples into it */
    if (o->eng && o->data_end_ms) {
        cfa_engine_eval(o->eng, o->data_end_ms, on_event, g);
        flush_am(o);
    }
}

void gd_obs_free(struct gd_run *g)
{
    struct gd_obs *o = g->obs;
    if (o) {
        gd_obs_stop(g);
        for (size_t a = 0; a < GD_MAX_AZS; a++)
            if (o->cfg[a].az) {
                o->cfg[a].on_sample = NULL;
                canary_config_free(&o->cfg[a]);
            }
        cfa_engine_free(o->eng);
        if (o->have_rules)
            cfa_rules_free(&o->rules);
        am_client_free(o->am);
        json_decref(o->outbox);
        free(o);
        g->obs = NULL;
    }
    series_free(&g->traffic_s);
    series_free(&g->canary_s);
    for (size_t i = 0; i < g->nev; i++) {
        free(g->ev[i].alarm);
        free(g->ev[i].severity);
        free(g->ev[i].window);
        for (int k = 0; k < 4; k++)
            free(g->ev[i].label[k]);
    }
    free(g->ev);
    g->ev = NULL;
    g->nev = g->capev = 0;
}

/* ---- verdicts ---------------------------------------------------------------- */

static void verdict(json_t *out, const char *phase, int step, const char *what, int passed,
                    const char *detail)
{
    json_array_append_new(out, json_pack("{s:s, s:o, s:s, s:b, s:s}", "phase", phase, "step",
                                         step > 0 ? json_integer(step) : json_null(), "what",
                                         what, "passed", passed, "detail", detail));
}

/* Is an alarm matching m firing at time t (its last change before t)? */
static int firing_at(struct gd_run *g, const struct pb_alarm_match *m, const struct pb_action *a,
                     double t, double *since)
{
    int any = 0;
    for (size_t i = 0; i < g->nev; i++) {
        const struct gd_alarm_ev *v = &g->ev[i];
        if (v->at_s > t || !match_event(g, m, a, v->alarm, v->label))
            continue;
        /* the latest change of this (alarm, labels, window) before t */
        int last = v->firing;
        for (size_t j = i + 1; j < g->nev && g->ev[j].at_s <= t; j++) {
            const struct gd_alarm_ev *w = &g->ev[j];
            int same = !strcmp(w->alarm, v->alarm) && !strcmp(w->window, v->window);
            for (int k = 0; same && k < 4; k++)
                same = (!w->label[k] && !v->label[k]) ||
                       (w->label[k] && v->label[k] && !strcmp(w->label[k], v->label[k]));
            if (same)
                last = w->firing;
        }
        if (last && v->firing) {
            any = 1;
            *since = v->at_s;
        }
    }
    return any;
}

static int probe_once(struct gd_run *g, const struct pb_probe *p, char *what, size_t wcap,
                      char *detail, size_t dcap)
{
    double t = now_s(g);
    long to = (long)floor(t) - 1, from = to - (long)(p->over_ns / NS_PER_S);
    switch (p->kind) {
    case PB_PROBE_AVAIL: {
        double low;
        gd_fmt(what, wcap, "availability (%s) >= %.2f%% in every AZ over %llus",
               source_name(g, p->source), p->min, (unsigned long long)(p->over_ns / NS_PER_S));
        int ok = avail(g, p->source, 0, from, to, &low, detail, dcap);
        return ok && low >= p->min;
    }
    case PB_PROBE_P99: {
        double high;
        gd_fmt(what, wcap, "p99 (traffic) <= %.1f ms in every AZ over %llus",
               (double)p->max_ns / 1e6, (unsigned long long)(p->over_ns / NS_PER_S));
        int ok = p99s(g, 0, from, to, &high, detail, dcap);
        return ok && high <= (double)p->max_ns / 1e6;
    }
    case PB_PROBE_NO_ALARM: {
        char m[200];
        match_text(g, &p->match, NULL, m, sizeof m);
        gd_fmt(what, wcap, "no alarm firing (%s)", m);
        size_t o = 0;
        int n = 0;
        detail[0] = 0;
        pthread_mutex_lock(&g->obs_mu);
        for (size_t i = 0; i < g->nev; i++) {
            double since;
            const struct gd_alarm_ev *v = &g->ev[i];
            struct pb_alarm_match exact = {0};
            exact.alarm = v->alarm;
            for (int k = 0; k < 4; k++)
                exact.label[k] = v->label[k];
            if (!v->firing || !match_event(g, &p->match, NULL, v->alarm, v->label) ||
                !firing_at(g, &exact, NULL, t + 1, &since) || since != v->at_s)
                continue;
            char e[200];
            event_text(v, e, sizeof e);
            if (o < dcap)
                o += (size_t)snprintf(detail + o, dcap - o, "%s%s firing since %.1fs",
                                      n ? "; " : "", e, since);
            n++;
        }
        pthread_mutex_unlock(&g->obs_mu);
        if (!n)
            gd_fmt(detail, dcap, "none firing");
        return n == 0;
    }
    default:
        gd_fmt(what, wcap, "?");
        gd_fmt(detail, dcap, "?");
        return 1;
    }
}

int gd_obs_steady(struct gd_run *g, const char *phase, json_t *out)
{
    if (!g->pb->nsteady)
        return 1;
    int before = !strcmp(phase, "steady_state_before");
    uint64_t longest = 0, over = 0;
    for (size_t i = 0; i < g->pb->nsteady; i++) {
        if (g->pb->steady[i].timeout_ns > longest)
            longest = g->pb->steady[i].timeout_ns;
        if (g->pb->steady[i].over_ns > over)
            over = g->pb->steady[i].over_ns;
    }
    /* Before: the window must lie after the sources' warm-up. */
    double first = before ? (g->obs ? g->obs->src_start_s : 0) + WARMUP_S +
                                (double)over / 1e9 + 2
                          : 0;
    uint64_t deadline = clock_mono_ns() + longest + (before ? over : 0);
    char what[300], detail[600];
    int all = 0;
    gd_note(g, "%s: %zu probe(s)", before ? "steady state before the first fault"
                                          : "steady state at the end",
            g->pb->nsteady);
    for (;;) {
        while (now_s(g) < first && !gd_cancelled(g))
            gd_sleep_until(g, clock_mono_ns() + NS_PER_S / 4);
        all = 1;
        for (size_t i = 0; i < g->pb->nsteady && all; i++)
            all = probe_once(g, &g->pb->steady[i], what, sizeof what, detail, sizeof detail);
        if (all || gd_cancelled(g) || clock_mono_ns() >= deadline)
            break;
        gd_sleep_until(g, clock_mono_ns() + NS_PER_S);
    }
    /* The verdicts as they stand now. */
    all = 1;
    for (size_t i = 0; i < g->pb->nsteady; i++) {
        int ok = probe_once(g, &g->pb->steady[i], what, sizeof what, detail, sizeof detail);
        verdict(out, phase, 0, what, ok, detail);
        if (!ok)
            gd_note(g, "%s FAILED: %s: %s", phase, what, detail);
        all &= ok;
    }
    return all;
}

static void judge_step(struct gd_run *g, size_t idx, json_t *out, int *all)
{
    const struct pb_action *a = &g->plan->a[idx];
    const struct step_rec *r = &g->rec[idx];
    const struct pb_expect *x = a->expect;
    char what[400], detail[600], m[200];
    pthread_mutex_lock(&g->mu);
    uint64_t off_ns = r->off_ns;
    pthread_mutex_unlock(&g->mu);
    if (!off_ns) {
        gd_fmt(what, sizeof what, "step %d (%s): its expectations", a->index, a->label);
        verdict(out, "step", a->index, what, 0, "the fault was never injected");
        *all = 0;
        return;
    }
    double off = gd_secs(off_ns - g->t0), end = gd_secs((r->end_ns ? r->end_ns : clock_mono_ns()) -
                                                        g->t0);
    pthread_mutex_lock(&g->obs_mu);
    for (size_t k = 0; k < x->nfires; k++) {
        const struct pb_alarm_match *f = &x->fires[k];
        match_text(g, f, a, m, sizeof m);
        gd_fmt(what, sizeof what, "fires %s within %.0fs", m, gd_secs(f->within_ns));
        double since = 0;
        int ok = 0;
        if (firing_at(g, f, a, off, &since)) {
            gd_fmt(detail, sizeof detail,
                   "already firing since %.1fs, before the fault at %.1fs: it proves nothing "
                   "about this fault (let it resolve first)",
                   since, off);
        } else {
            const struct gd_alarm_ev *hit = NULL;
            for (size_t i = 0; i < g->nev && !hit; i++)
                if (g->ev[i].firing && g->ev[i].at_s >= off &&
                    match_event(g, f, a, g->ev[i].alarm, g->ev[i].label))
                    hit = &g->ev[i];
            char e[200] = "";
            if (hit)
                event_text(hit, e, sizeof e);
            if (hit && hit->at_s - off <= gd_secs(f->within_ns)) {
                ok = 1;
                gd_fmt(detail, sizeof detail, "%s fired at %.1fs, %.1fs after the fault", e,
                       hit->at_s, hit->at_s - off);
            } else if (hit) {
                gd_fmt(detail, sizeof detail, "late: %s fired at %.1fs, %.1fs after the fault", e,
                       hit->at_s, hit->at_s - off);
            } else {
                gd_fmt(detail, sizeof detail,
                       "silent: nothing matching fired in the %.1fs after the fault", now_s(g) - off);
            }
        }
        verdict(out, "step", a->index, what, ok, detail);
        *all &= ok;
    }
    for (size_t k = 0; k < x->nquiet; k++) {
        const struct pb_alarm_match *q = &x->quiet[k];
        match_text(g, q, a, m, sizeof m);
        double until = end + gd_secs(x->quiet_after_ns);
        gd_fmt(what, sizeof what, "quiet %s from the fault to %.0fs after the step", m,
               gd_secs(x->quiet_after_ns));
        size_t o = 0;
        int n = 0;
        detail[0] = 0;
        for (size_t i = 0; i < g->nev; i++) {
            const struct gd_alarm_ev *v = &g->ev[i];
            if (!v->firing || v->at_s < off || v->at_s > until ||
                !match_event(g, q, a, v->alarm, v->label))
                continue;
            char e[200];
            event_text(v, e, sizeof e);
            if (o < sizeof detail)
                o += (size_t)snprintf(detail + o, sizeof detail - o, "%s%s fired at %.1fs",
                                      n ? "; " : "", e, v->at_s);
            n++;
        }
        if (!n)
            gd_fmt(detail, sizeof detail, "nothing matching fired from %.1fs to %.1fs", off,
                   until);
        else if (o < sizeof detail)
            snprintf(detail + o, sizeof detail - o, " (outside the faulted scope)");
        verdict(out, "step", a->index, what, n == 0, detail);
        *all &= n == 0;
    }
    pthread_mutex_unlock(&g->obs_mu);
    long from = (long)floor(off), to = (long)ceil(end);
    static const char *const scope_names[] = {"every AZ", "the unaffected AZs",
                                              "the affected AZs"};
    if (x->avail_min >= 0) {
        double low;
        unsigned mask = scope_mask(g, a, x->avail_scope);
        gd_fmt(what, sizeof what, "availability (%s) >= %.2f%% in %s during the fault",
               source_name(g, x->avail_source), x->avail_min, scope_names[x->avail_scope]);
        int ok = mask && avail(g, x->avail_source, mask, from, to, &low, detail, sizeof detail) &&
                 low >= x->avail_min;
        if (!mask)
            gd_fmt(detail, sizeof detail, "no AZ in that scope");
        verdict(out, "step", a->index, what, ok, detail);
        *all &= ok;
    }
    if (x->p99_max_ns) {
        double high;
        unsigned mask = scope_mask(g, a, x->p99_scope);
        gd_fmt(what, sizeof what, "p99 (traffic) <= %.1f ms in %s during the fault",
               (double)x->p99_max_ns / 1e6, scope_names[x->p99_scope]);
        int ok = mask && p99s(g, mask, from, to, &high, detail, sizeof detail) &&
                 high <= (double)x->p99_max_ns / 1e6;
        if (!mask)
            gd_fmt(detail, sizeof detail, "no AZ in that scope");
        verdict(out, "step", a->index, what, ok, detail);
        *all &= ok;
    }
    if (x->leader_moves_ns && a->runtime) {
        char who[64];
        pthread_mutex_lock(&g->mu);
        uint64_t moved = r->leader_moved_ns;
        snprintf(who, sizeof who, "%s", r->new_leader);
        pthread_mutex_unlock(&g->mu);
        gd_fmt(what, sizeof what, "the leader of %s partition %d moves off the hosts hit within %.1fs",
               a->runtime->table ? a->runtime->table : g->pb->traffic.table, a->runtime->partition,
               gd_secs(x->leader_moves_ns));
        int ok = moved && moved - off_ns <= x->leader_moves_ns;
        if (moved)
            gd_fmt(detail, sizeof detail, "node %s led %.1fs after the fault", who,
                   gd_secs(moved - off_ns));
        else
            gd_fmt(detail, sizeof detail, "no host outside the fault led it within %.1fs",
                   gd_secs(x->leader_moves_ns));
        verdict(out, "step", a->index, what, ok, detail);
        *all &= ok;
    }
}

int gd_obs_expectations(struct gd_run *g, json_t *out)
{
    /* Wait for fires: deadlines not yet passed and quiet: windows not yet
     * over, bounded by the longest of them. */
    double wait_until = 0;
    for (size_t i = 0; i < g->plan->n; i++) {
        const struct pb_action *a = &g->plan->a[i];
        if (!a->expect || !g->rec[i].off_ns)
            continue;
        double off = gd_secs(g->rec[i].off_ns - g->t0), end = gd_secs(g->rec[i].end_ns - g->t0);
        for (size_t k = 0; k < a->expect->nfires; k++)
            if (off + gd_secs(a->expect->fires[k].within_ns) > wait_until)
                wait_until = off + gd_secs(a->expect->fires[k].within_ns);
        if (a->expect->nquiet && end + gd_secs(a->expect->quiet_after_ns) > wait_until)
            wait_until = end + gd_secs(a->expect->quiet_after_ns);
    }
    if (wait_until > now_s(g) && !gd_cancelled(g)) {
        gd_note(g, "waiting %.0fs for the expectations' windows to close", wait_until - now_s(g));
        gd_sleep_until(g, g->t0 + (uint64_t)(wait_until * 1e9) + NS_PER_S);
    }
    int all = 1;
    for (size_t i = 0; i < g->plan->n; i++)
        if (g->plan->a[i].expect && g->rec[i].done)
            judge_step(g, i, out, &all);
    return all;
}

/* ---- the report ---------------------------------------------------------------- */

static json_t *series_json(struct gd_run *g, struct gd_series *s, int with_p99, size_t nsec)
{
    json_t *azs = json_array(), *series = json_object();
    for (size_t a = 0; a < g->naz; a++) {
        json_array_append_new(azs, json_string(g->az[a]));
        json_t *ok = json_array(), *err = json_array(), *p99 = json_array();
        for (size_t i = 0; i < nsec; i++) {
            const struct gd_slot *sl = i < s->n[a] ? &s->s[a][i] : NULL;
            json_array_append_new(ok, json_integer(sl ? (json_int_t)sl->ok : 0));
            json_array_append_new(err, json_integer(sl ? (json_int_t)sl->err : 0));
            if (with_p99) {
                double p;
                uint64_t o, e;
                window(s, a, (long)i, (long)i + 1, &o, &e, &p);
                json_array_append_new(p99, p >= 0 ? json_real(round(p * 100) / 100)
                                                  : json_null());
            }
        }
        json_t *one = json_pack("{s:o, s:o}", "ok", ok, "errors", err);
        if (with_p99)
            json_object_set_new(one, "p99_ms", p99);
        else
            json_decref(p99);
        json_object_set_new(series, g->az[a], one);
    }
    return json_pack("{s:i, s:o, s:o}", "interval_s", 1, "azs", azs, "series", series);
}

void gd_obs_report(struct gd_run *g, json_t *rep)
{
    json_object_set_new(rep, "t0_wall_ms", json_integer(g->t0_wall_ms));
    size_t nsec = (size_t)ceil(now_s(g));
    pthread_mutex_lock(&g->obs_mu);
    if (g->pb->traffic.enabled) {
        json_t *t = series_json(g, &g->traffic_s, 1, nsec);
        if (g->lat_dropped)
            json_object_set_new(t, "latencies_not_kept", json_integer((json_int_t)g->lat_dropped));
        json_object_set_new(rep, "timeline", t);
    }
    if (g->pb->canaries.enabled)
        json_object_set_new(rep, "canary_timeline", series_json(g, &g->canary_s, 0, nsec));
    json_t *al = json_array();
    for (size_t i = 0; i < g->nev; i++) {
        const struct gd_alarm_ev *v = &g->ev[i];
        static const char *const names[4] = {"table", "endpoint_az", "canary_az", "endpoint"};
        json_t *labels = json_object();
        for (int k = 0; k < 4; k++)
            if (v->label[k])
                json_object_set_new(labels, names[k], json_string(v->label[k]));
        json_array_append_new(al, json_pack("{s:f, s:s, s:s, s:o, s:s, s:s*}", "at_s",
                                            round(v->at_s * 10) / 10, "alarm", v->alarm,
                                            "window", v->window, "labels", labels, "state",
                                            v->firing ? "firing" : "resolved", "severity",
                                            v->severity));
    }
    pthread_mutex_unlock(&g->obs_mu);
    json_object_set_new(rep, "alarms", al);
    if (g->obs && g->pb->canaries.enabled) {
        json_t *azs = json_array();
        for (size_t a = 0; a < g->naz; a++)
            json_array_append_new(azs, json_string(g->az[a]));
        const char *dsn = g->pb->canaries.postgres ? g->pb->canaries.postgres
                          : g->pg_dsn[0]            ? g->pg_dsn
                                                    : NULL;
        json_object_set_new(rep, "canaries",
                            json_pack("{s:o, s:I, s:I, s:s?}", "azs", azs, "probes",
                                      (json_int_t)g->obs->probes, "errors",
                                      (json_int_t)g->obs->probe_errors, "postgres", dsn));
    }
}
