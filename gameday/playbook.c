/*
 * gameday/playbook.c — playbook YAML to struct playbook (the plan is
 * gameday/plan.c). The contract is in playbook.h; docs/gameday.md is the
 * user's reference. Fault steps are parsed through their kind (fault.h):
 * the shared keys here and in fault/targets.c, the kind's own in its file.
 */
#include "gameday/playbook.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "canary/rules.h"
#include "lib/yamltree.h"

#define NS_PER_S 1000000000ull
#define MAX_DURATION_NS (3600ull * NS_PER_S)

/* Parsing state: every error is pushed and parsing goes on, so that lint
 * shows all of them. */
struct pctx {
    struct pb_errors *errs;
    int first_code;
    struct nerr first;
    const char *dir; /* the playbook's directory, for relative paths */
};

static void push(struct pctx *c, const struct nerr *e)
{
    if (!c->first_code) {
        c->first_code = e->code ? e->code : NERR_INVALID;
        c->first = *e;
    }
    if (!c->errs)
        return;
    if (c->errs->n >= PB_MAX_ERRORS) {
        c->errs->dropped++;
        return;
    }
    char **m = realloc(c->errs->msg, (c->errs->n + 1) * sizeof *m);
    if (!m)
        return;
    c->errs->msg = m;
    if ((m[c->errs->n] = strdup(e->msg)))
        c->errs->n++;
}

/* Runs a yt_* check; on failure records its error. Returns the code. */
#define CHK(c, call)                                                                               \
    ({                                                                                             \
        struct nerr e_ = {0};                                                                      \
        (void)e_;                                                                                  \
        int rc_ = call;                                                                            \
        if (rc_)                                                                                   \
            push((c), &e_);                                                                        \
        rc_;                                                                                       \
    })
#define E (&e_)

static void pushf(struct pctx *c, const struct yt_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pushf(struct pctx *c, const struct yt_node *at, const char *fmt, ...)
{
    char msg[NERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct nerr e = {0};
    yt_errf(&e, at, "%s", msg);
    push(c, &e);
}

void pb_errors_free(struct pb_errors *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++)
        free(e->msg[i]);
    free(e->msg);
    memset(e, 0, sizeof *e);
}

/* The fault kinds' parsers push into the same collector. */
static void push_cb(void *arg, const struct nerr *e)
{
    push(arg, e);
}

static struct fault_errs errs_of(struct pctx *c)
{
    return (struct fault_errs){push_cb, c};
}

static const char *const own_steps[] = {"wait_healthy", "sleep", "repeat", NULL};

const char *pb_step_name(enum pb_kind k, const struct fault_kind *fault)
{
    switch (k) {
    case PB_INJECT:
        return fault ? fault->inject_step : "?";
    case PB_HEAL:
        return fault && fault->heal_step ? fault->heal_step : "?";
    case PB_WAIT_HEALTHY:
        return "wait_healthy";
    case PB_SLEEP:
        return "sleep";
    case PB_REPEAT:
        return "repeat";
    }
    return "?";
}

uint64_t pb_default_timeout(enum pb_kind k, const struct fault_kind *fault, uint64_t hold_ns)
{
    switch (k) {
    case PB_INJECT:
        return hold_ns + fault->inject_timeout_ns;
    case PB_HEAL:
        return fault->heal_timeout_ns;
    case PB_WAIT_HEALTHY:
        return 120 * NS_PER_S;
    case PB_SLEEP:
        return hold_ns + 5 * NS_PER_S;
    default:
        return 60 * NS_PER_S;
    }
}

/* A path relative to the playbook's directory, made absolute. */
static char *resolve_path(const struct pctx *c, const char *p)
{
    if (p[0] == '/' || !c->dir)
        return strdup(p);
    char *out;
    if (asprintf(&out, "%s/%s", c->dir, p) < 0)
        return NULL;
    return out;
}

/* "5s" or "5s..20s": the range's bounds. A range is checked as two durations
 * at their own columns, so a bad half is pointed at. */
static int get_range(struct pctx *c, const struct yt_node *n, uint64_t min, uint64_t *lo,
                     uint64_t *hi)
{
    if (CHK(c, yt_expect_scalar(n, E)))
        return -1;
    const char *dots = strstr(n->text, "..");
    if (!dots)
        return CHK(c, yt_as_duration(n, min, MAX_DURATION_NS, lo, E)) ? -1 : (*hi = *lo, 0);
    int off = n->style == YT_SINGLE_QUOTED || n->style == YT_DOUBLE_QUOTED;
    size_t l1 = (size_t)(dots - n->text);
    char a[64], b[64];
    if (l1 >= sizeof a || strlen(dots + 2) >= sizeof b) {
        pushf(c, n, "duration range too long");
        return -1;
    }
    memcpy(a, n->text, l1);
    a[l1] = 0;
    strcpy(b, dots + 2);
    struct yt_node na = *n, nb = *n;
    na.text = a;
    na.len = strlen(a);
    na.col = n->col + off;
    nb.text = b;
    nb.len = strlen(b);
    nb.col = n->col + off + (int)l1 + 2;
    na.style = nb.style = YT_PLAIN;
    if (CHK(c, yt_as_duration(&na, min, MAX_DURATION_NS, lo, E)) ||
        CHK(c, yt_as_duration(&nb, min, MAX_DURATION_NS, hi, E)))
        return -1;
    if (*hi < *lo) {
        pushf(c, n, "range %s: the upper bound is below the lower one", n->text);
        return -1;
    }
    return 0;
}

static void expect_free(struct pb_expect *x);

static void step_free(struct pb_step *st)
{
    fault_targets_free(&st->targets);
    if (st->params && st->fault && st->fault->free_params)
        st->fault->free_params(st->params);
    for (size_t i = 0; i < st->nsteps; i++)
        step_free(&st->steps[i]);
    free(st->steps);
    expect_free(st->expect);
}

static int parse_steps(struct pctx *c, const struct yt_node *seq, struct pb_step **out,
                       size_t *nout, int depth);

static void parse_expect(struct pctx *c, const struct yt_node *m, struct pb_step *st);
static void expect_free(struct pb_expect *x);

static void get_timeout(struct pctx *c, const struct yt_node *m, struct pb_step *st)
{
    CHK(c, yt_get_duration(m, "timeout", YT_OPTIONAL, NS_PER_S / 10, MAX_DURATION_NS,
                           &st->timeout_ns, E));
}

/* A fault kind's inject step: the shared keys (targets, duration,
 * quorum_safe, timeout) and the kind's own, in the order messages list
 * them. */
static void parse_inject(struct pctx *c, const struct yt_node *m, struct pb_step *st)
{
    const char *keys[32];
    size_t nk = 0;
    const struct fault_kind *k = st->fault;
    struct fault_errs x = errs_of(c);
    for (size_t i = 0; fault_target_keys[i]; i++)
        keys[nk++] = fault_target_keys[i];
    keys[nk++] = "duration";
    for (size_t i = 0; k->keys && k->keys[i] && nk < 28; i++)
        keys[nk++] = k->keys[i];
    keys[nk++] = "quorum_safe";
    keys[nk++] = "timeout";
    keys[nk++] = "expect";
    keys[nk] = NULL;
    st->targets.unit = FAULT_NODE;
    st->targets.quorum_safe = 1;
    if (CHK(c, yt_expect_map(m, E)))
        return;
    CHK(c, yt_check_keys(m, keys, E));
    fault_targets_parse(&x, m, 0, &st->targets);
    const struct yt_node *dn;
    if (!CHK(c, yt_get(m, "duration", YT_OPTIONAL, &dn, E)) && dn)
        get_range(c, dn, NS_PER_S / 10, &st->dur_min, &st->dur_max);
    CHK(c, yt_get_bool(m, "quorum_safe", YT_OPTIONAL, &st->targets.quorum_safe, E));
    if (k->parse && k->parse(&x, m, &st->params)) {
        struct nerr e = {0};
        nerr_set(&e, NERR_NOMEM, "out of memory");
        push(c, &e);
    }
    get_timeout(c, m, st);
    const struct yt_node *xn;
    if (!CHK(c, yt_get(m, "expect", YT_OPTIONAL, &xn, E)) && xn)
        parse_expect(c, xn, st);
}

/* A fault kind's heal step: null (every host the kind holds) or a map of
 * target, names and timeout. */
static void parse_heal(struct pctx *c, const struct yt_node *v, struct pb_step *st)
{
    static const char *const keys[] = {"target", "names", "timeout", NULL};
    struct fault_errs x = errs_of(c);
    st->targets.unit = FAULT_NODE;
    if (yt_is_null(v))
        return;
    if (CHK(c, yt_expect_map(v, E)))
        return;
    CHK(c, yt_check_keys(v, keys, E));
    fault_targets_parse(&x, v, 1, &st->targets);
    get_timeout(c, v, st);
}

static void parse_step(struct pctx *c, const struct yt_node *item, struct pb_step *st, int depth)
{
    const char *kinds[64];
    size_t nkinds = fault_step_keys(kinds, sizeof kinds / sizeof kinds[0], own_steps);
    st->line = item->line;
    st->col = item->col;
    if (CHK(c, yt_expect_map(item, E)))
        return;
    if (CHK(c, yt_check_keys(item, kinds, E)))
        return;
    if (item->n != 1) {
        char list[512];
        size_t len = 0;
        list[0] = 0;
        for (size_t i = 0; i < nkinds && len < sizeof list; i++)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", kinds[i]);
        pushf(c, item->n ? item->pairs[1].key : item, "a step has exactly one of %s", list);
        return;
    }
    const char *k = item->pairs[0].key->text;
    const struct yt_node *v = item->pairs[0].value;
    int heal = 0;
    st->line = item->pairs[0].key->line;
    st->col = item->pairs[0].key->col;
    if ((st->fault = fault_kind_for_step(k, &heal)))
        st->kind = heal ? PB_HEAL : PB_INJECT;
    else if (!strcmp(k, "wait_healthy"))
        st->kind = PB_WAIT_HEALTHY;
    else if (!strcmp(k, "sleep"))
        st->kind = PB_SLEEP;
    else if (!strcmp(k, "repeat"))
        st->kind = PB_REPEAT;
    switch (st->kind) {
    case PB_INJECT:
        parse_inject(c, v, st);
        break;
    case PB_HEAL:
        parse_heal(c, v, st);
        break;
    case PB_WAIT_HEALTHY: {
        static const char *const keys[] = {"timeout", NULL};
        if (yt_is_null(v))
            break;
        if (CHK(c, yt_expect_map(v, E)))
            break;
        CHK(c, yt_check_keys(v, keys, E));
        get_timeout(c, v, st);
        break;
    }
    case PB_SLEEP:
        if (v->kind == YT_MAP) {
            static const char *const keys[] = {"duration", "timeout", NULL};
            const struct yt_node *dn;
            CHK(c, yt_check_keys(v, keys, E));
            if (!CHK(c, yt_get(v, "duration", YT_REQUIRED, &dn, E)))
                get_range(c, dn, 0, &st->dur_min, &st->dur_max);
            get_timeout(c, v, st);
        } else {
            get_range(c, v, 0, &st->dur_min, &st->dur_max);
        }
        break;
    case PB_REPEAT: {
        static const char *const keys[] = {"times", "steps", NULL};
        const struct yt_node *sn;
        int64_t t = 1;
        if (CHK(c, yt_expect_map(v, E)))
            break;
        CHK(c, yt_check_keys(v, keys, E));
        if (!CHK(c, yt_get_int(v, "times", YT_REQUIRED, 1, PB_MAX_REPEAT, &t, E)))
            st->times = (int)t;
        if (!CHK(c, yt_get(v, "steps", YT_REQUIRED, &sn, E)))
            parse_steps(c, sn, &st->steps, &st->nsteps, depth + 1);
        break;
    }
    }
}

static int parse_steps(struct pctx *c, const struct yt_node *seq, struct pb_step **out,
                       size_t *nout, int depth)
{
    if (depth > 8) {
        pushf(c, seq, "repeat nested deeper than 8");
        return -1;
    }
    if (CHK(c, yt_expect_seq(seq, E)))
        return -1;
    if (!seq->n) {
        pushf(c, seq, "no steps");
        return -1;
    }
    *out = calloc(seq->n, sizeof **out);
    if (!*out)
        return -1;
    *nout = seq->n;
    for (size_t i = 0; i < seq->n; i++)
        parse_step(c, seq->items[i], &(*out)[i], depth);
    return 0;
}

static const char *const op_names[PB_NOPS] = {"put", "get", "cget", "cas", "delete"};

static void parse_traffic(struct pctx *c, const struct yt_node *m, struct pb_traffic *t)
{
    static const char *const keys[] = {"rate",         "duration",  "mix",         "keys",
                                       "distribution", "endpoints", "concurrency", "timeout",
                                       "partitions",   "table",     NULL};
    t->enabled = 1;
    t->rate = 100;
    t->mix[0] = 1;
    t->keys = 1000;
    t->concurrency = 32;
    t->timeout_ms = 1000;
    t->partitions = 6;
    if (CHK(c, yt_expect_map(m, E)))
        return;
    CHK(c, yt_check_keys(m, keys, E));
    int64_t v;
    if (!CHK(c, yt_get_int(m, "rate", YT_OPTIONAL, 1, 100000, &v, E)) && yt_map_get(m, "rate"))
        t->rate = (double)v;
    const struct yt_node *dn = yt_map_get(m, "duration");
    if (dn && !(dn->kind == YT_SCALAR && (!strcmp(dn->text, "run") || yt_is_null(dn))))
        CHK(c, yt_as_duration(dn, NS_PER_S, MAX_DURATION_NS, &t->duration_ns, E));
    const struct yt_node *mx;
    if (!CHK(c, yt_get(m, "mix", YT_OPTIONAL, &mx, E)) && mx && !CHK(c, yt_expect_map(mx, E))) {
        static const char *const ops[] = {"put", "get", "cget", "cas", "delete", NULL};
        double sum = 0;
        CHK(c, yt_check_keys(mx, ops, E));
        for (int i = 0; i < PB_NOPS; i++) {
            t->mix[i] = 0;
            if (!CHK(c, yt_get_int(mx, op_names[i], YT_OPTIONAL, 0, 1000000, &v, E)) &&
                yt_map_get(mx, op_names[i]))
                t->mix[i] = (double)v;
            sum += t->mix[i];
        }
        if (sum <= 0)
            pushf(c, mx, "mix: every weight is 0");
    }
    if (!CHK(c, yt_get_int(m, "keys", YT_OPTIONAL, 1, 10000000, &v, E)) && yt_map_get(m, "keys"))
        t->keys = (uint64_t)v;
    const char *s = NULL;
    if (!CHK(c, yt_get_str(m, "distribution", YT_OPTIONAL, &s, E)) && s) {
        if (!strcmp(s, "zipf"))
            t->zipf = 1;
        else if (strcmp(s, "uniform"))
            pushf(c, yt_map_get(m, "distribution"),
                  "distribution must be uniform or zipf, got '%s'", s);
    }
    s = NULL;
    if (!CHK(c, yt_get_str(m, "endpoints", YT_OPTIONAL, &s, E)) && s) {
        if (!strcmp(s, "per_az"))
            t->per_az = 1;
        else if (strcmp(s, "all"))
            pushf(c, yt_map_get(m, "endpoints"), "endpoints must be all or per_az, got '%s'", s);
    }
    if (!CHK(c, yt_get_int(m, "concurrency", YT_OPTIONAL, 1, 1024, &v, E)) &&
        yt_map_get(m, "concurrency"))
        t->concurrency = (unsigned)v;
    uint64_t to = 0;
    if (!CHK(c,
             yt_get_duration(m, "timeout", YT_OPTIONAL, NS_PER_S / 100, 60 * NS_PER_S, &to, E)) &&
        to)
        t->timeout_ms = (unsigned)(to / 1000000u);
    if (!CHK(c, yt_get_int(m, "partitions", YT_OPTIONAL, 1, 256, &v, E)) &&
        yt_map_get(m, "partitions"))
        t->partitions = (unsigned)v;
    s = "gameday";
    if (!CHK(c, yt_get_str(m, "table", YT_OPTIONAL, &s, E))) {
        size_t l = strlen(s);
        int ok = l >= 3 && l <= 255;
        for (size_t i = 0; ok && i < l; i++)
            ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                 (s[i] >= '0' && s[i] <= '9') || strchr("_-.", s[i]);
        if (!ok)
            pushf(c, yt_map_get(m, "table"), "table: 3 to 255 of a-z A-Z 0-9 _ - .");
    }
    t->table = strdup(s);
}

static void parse_cluster(struct pctx *c, const struct yt_node *m, struct playbook *pb)
{
    static const char *const keys[] = {"deploy", "existing", NULL};
    pb->api_port = PB_DEFAULT_API_PORT;
    pb->peer_port = PB_DEFAULT_PEER_PORT;
    pb->partitions = 4;
    pb->fresh = 1;
    if (CHK(c, yt_expect_map(m, E)))
        return;
    if (CHK(c, yt_check_keys(m, keys, E)))
        return;
    const struct yt_node *d = yt_map_get(m, "deploy"), *x = yt_map_get(m, "existing");
    if (!!d == !!x) {
        pushf(c, d ? yt_map_key(m, "existing") : m,
              "cluster needs exactly one of deploy, existing");
        return;
    }
    if (x) {
        static const char *const xk[] = {"cluster_file", NULL};
        const char *p;
        if (CHK(c, yt_expect_map(x, E)) || CHK(c, yt_check_keys(x, xk, E)))
            return;
        if (!CHK(c, yt_get_str(x, "cluster_file", YT_REQUIRED, &p, E)))
            pb->cluster_file = resolve_path(c, p);
        return;
    }
    pb->deploy = 1;
    if (yt_is_null(d))
        return;
    static const char *const dk[] = {"ninesd",     "args",        "api_port", "peer_port",
                                     "partitions", "boot_script", "fresh",    NULL};
    if (CHK(c, yt_expect_map(d, E)))
        return;
    CHK(c, yt_check_keys(d, dk, E));
    const char *s = NULL;
    if (!CHK(c, yt_get_str(d, "ninesd", YT_OPTIONAL, &s, E)) && s)
        pb->ninesd = resolve_path(c, s);
    const struct yt_node *a;
    if (!CHK(c, yt_get(d, "args", YT_OPTIONAL, &a, E)) && a && !CHK(c, yt_expect_seq(a, E))) {
        pb->ninesd_args = calloc(a->n + 1, sizeof *pb->ninesd_args);
        for (size_t i = 0; pb->ninesd_args && i < a->n; i++)
            if (!CHK(c, yt_as_str(a->items[i], &s, E)))
                pb->ninesd_args[pb->nargs++] = strdup(s);
    }
    int64_t v;
    if (!CHK(c, yt_get_int(d, "api_port", YT_OPTIONAL, 1, 65535, &v, E)) &&
        yt_map_get(d, "api_port"))
        pb->api_port = (int)v;
    if (!CHK(c, yt_get_int(d, "peer_port", YT_OPTIONAL, 1, 65535, &v, E)) &&
        yt_map_get(d, "peer_port"))
        pb->peer_port = (int)v;
    if (pb->api_port == pb->peer_port)
        pushf(c, yt_map_get(d, "peer_port") ? yt_map_get(d, "peer_port") : d,
              "api_port and peer_port are both %d", pb->api_port);
    if (!CHK(c, yt_get_int(d, "partitions", YT_OPTIONAL, 1, 256, &v, E)) &&
        yt_map_get(d, "partitions"))
        pb->partitions = (int)v;
    s = NULL;
    if (!CHK(c, yt_get_str(d, "boot_script", YT_OPTIONAL, &s, E)) && s)
        pb->boot_script = strdup(s);
    CHK(c, yt_get_bool(d, "fresh", YT_OPTIONAL, &pb->fresh, E));
}

static void parse_verify(struct pctx *c, const struct yt_node *m, struct pb_verify *v)
{
    static const char *const keys[] = {"checkers", "replicas", "caught_up", "scrub",
                                              "timeout",  NULL};
    if (CHK(c, yt_expect_map(m, E)))
        return;
    CHK(c, yt_check_keys(m, keys, E));
    CHK(c, yt_get_bool(m, "checkers", YT_OPTIONAL, &v->checkers, E));
    CHK(c, yt_get_bool(m, "replicas", YT_OPTIONAL, &v->replicas, E));
    CHK(c, yt_get_bool(m, "caught_up", YT_OPTIONAL, &v->caught_up, E));
    const struct yt_node *sn = yt_map_get(m, "scrub");
    if (sn && sn->kind == YT_SCALAR && !strcmp(sn->text, "deep"))
        v->scrub = v->scrub_deep = 1;
    else if (sn && (sn->kind != YT_SCALAR || (strcmp(sn->text, "true") && strcmp(sn->text, "false"))))
        pushf(c, sn, "scrub is true, false or deep, got '%s'", sn->kind == YT_SCALAR ? sn->text : "?");
    else if (sn)
        v->scrub = !strcmp(sn->text, "true");
    CHK(c,
        yt_get_duration(m, "timeout", YT_OPTIONAL, NS_PER_S, MAX_DURATION_NS, &v->timeout_ns, E));
}


/* ---- canaries, alarms, expectations, steady state, stop conditions ---- */

/* "99.5" or "99.5%": a percentage in [0, 100]. */
static int get_pct(struct pctx *c, const struct yt_node *n, double *out)
{
    if (CHK(c, yt_expect_scalar(n, E)))
        return -1;
    char *end = NULL;
    errno = 0;
    double v = strtod(n->text, &end);
    if (end == n->text || errno || (*end && strcmp(end, "%")) || !(v >= 0 && v <= 100)) {
        pushf(c, n, "expected a percentage from 0 to 100 (99.5 or 99.5%%), got '%s'", n->text);
        return -1;
    }
    *out = v;
    return 0;
}

static const char *const label_keys[PB_NLABELS] = {"table", "endpoint_az", "canary_az",
                                                   "endpoint"};

static int known_template(const char *v)
{
    return !strcmp(v, "{{target.az}}") || !strcmp(v, "{{target.rack}}") ||
           !strcmp(v, "{{target.host}}") || !strstr(v, "{{");
}

/* {alarm: NAME, labels: {endpoint_az: V, ...}, within: 30s}; `az` is
 * endpoint_az. */
static void parse_match(struct pctx *c, const struct yt_node *m, struct pb_alarm_match *a,
                        int with_within)
{
    static const char *const keys[] = {"alarm", "labels", "within", NULL};
    static const char *const keys_nw[] = {"alarm", "labels", NULL};
    a->line = m->line;
    a->col = m->col;
    a->within_ns = 30 * NS_PER_S;
    if (yt_is_null(m))
        return;
    if (CHK(c, yt_expect_map(m, E)))
        return;
    CHK(c, yt_check_keys(m, with_within ? keys : keys_nw, E));
    const char *s = NULL;
    if (!CHK(c, yt_get_str(m, "alarm", YT_OPTIONAL, &s, E)) && s)
        a->alarm = strdup(s);
    if (with_within)
        CHK(c, yt_get_duration(m, "within", YT_OPTIONAL, NS_PER_S, MAX_DURATION_NS, &a->within_ns,
                               E));
    const struct yt_node *l;
    if (CHK(c, yt_get(m, "labels", YT_OPTIONAL, &l, E)) || !l || CHK(c, yt_expect_map(l, E)))
        return;
    static const char *const lk[] = {"table", "endpoint_az", "az", "canary_az", "endpoint", NULL};
    CHK(c, yt_check_keys(l, lk, E));
    for (size_t i = 0; i < l->n; i++) {
        const char *k = l->pairs[i].key->text;
        int idx = !strcmp(k, "az") ? 1 : -1;
        for (int j = 0; idx < 0 && j < PB_NLABELS; j++)
            if (!strcmp(k, label_keys[j]))
                idx = j;
        if (idx < 0 || CHK(c, yt_as_str(l->pairs[i].value, &s, E)))
            continue;
        int neg = s[0] == '!';
        if (!known_template(s + neg)) {
            pushf(c, l->pairs[i].value,
                  "unknown template in '%s' (known: {{target.az}}, {{target.rack}}, "
                  "{{target.host}})",
                  s);
            continue;
        }
        if (a->label[idx]) {
            pushf(c, l->pairs[i].key, "label %s given twice (az is endpoint_az)", k);
            continue;
        }
        a->neg[idx] = neg;
        a->label[idx] = strdup(s + neg);
    }
}

static void match_free(struct pb_alarm_match *a)
{
    free(a->alarm);
    for (int i = 0; i < PB_NLABELS; i++)
        free(a->label[i]);
}

static void get_scope(struct pctx *c, const struct yt_node *m, enum pb_scope *out)
{
    const char *s = NULL;
    if (CHK(c, yt_get_str(m, "scope", YT_OPTIONAL, &s, E)) || !s)
        return;
    if (!strcmp(s, "all"))
        *out = PB_SCOPE_ALL;
    else if (!strcmp(s, "unaffected"))
        *out = PB_SCOPE_UNAFFECTED;
    else if (!strcmp(s, "affected"))
        *out = PB_SCOPE_AFFECTED;
    else
        pushf(c, yt_map_get(m, "scope"), "scope must be all, unaffected or affected, got '%s'", s);
}

static void get_source(struct pctx *c, const struct yt_node *m, enum pb_source *out)
{
    const char *s = NULL;
    if (CHK(c, yt_get_str(m, "source", YT_OPTIONAL, &s, E)) || !s)
        return;
    if (!strcmp(s, "canaries"))
        *out = PB_SRC_CANARIES;
    else if (!strcmp(s, "traffic"))
        *out = PB_SRC_TRAFFIC;
    else
        pushf(c, yt_map_get(m, "source"), "source must be canaries or traffic, got '%s'", s);
}

static void parse_match_list(struct pctx *c, const struct yt_node *seq,
                             struct pb_alarm_match **out, size_t *n, int with_within)
{
    if (CHK(c, yt_expect_seq(seq, E)))
        return;
    if (!(*out = calloc(seq->n + 1, sizeof **out)))
        return;
    for (size_t i = 0; i < seq->n; i++)
        parse_match(c, seq->items[i], &(*out)[(*n)++], with_within);
}

static void parse_expect(struct pctx *c, const struct yt_node *m, struct pb_step *st)
{
    static const char *const keys[] = {"fires", "quiet",       "quiet_after", "availability",
                                       "p99",   "leader_moves", NULL};
    struct pb_expect *x = calloc(1, sizeof *x);
    if (!x)
        return;
    st->expect = x;
    x->avail_min = -1;
    x->quiet_after_ns = 30 * NS_PER_S;
    x->line = m->line;
    x->col = m->col;
    if (CHK(c, yt_expect_map(m, E)))
        return;
    CHK(c, yt_check_keys(m, keys, E));
    const struct yt_node *v;
    if (!CHK(c, yt_get(m, "fires", YT_OPTIONAL, &v, E)) && v)
        parse_match_list(c, v, &x->fires, &x->nfires, 1);
    if (!CHK(c, yt_get(m, "quiet", YT_OPTIONAL, &v, E)) && v)
        parse_match_list(c, v, &x->quiet, &x->nquiet, 0);
    CHK(c, yt_get_duration(m, "quiet_after", YT_OPTIONAL, 0, MAX_DURATION_NS, &x->quiet_after_ns,
                           E));
    const struct yt_node *lk = yt_map_key(m, "leader_moves");
    CHK(c, yt_get_duration(m, "leader_moves", YT_OPTIONAL, NS_PER_S / 10, MAX_DURATION_NS,
                           &x->leader_moves_ns, E));
    if (lk && !st->targets.by_leader) {
        struct nerr e = {0};
        yt_errf(&e, lk, "leader_moves is only for a select: leader step");
        push(c, &e);
    }
    if (!CHK(c, yt_get(m, "availability", YT_OPTIONAL, &v, E)) && v &&
        !CHK(c, yt_expect_map(v, E))) {
        static const char *const ak[] = {"min", "scope", "source", NULL};
        const struct yt_node *mn;
        CHK(c, yt_check_keys(v, ak, E));
        if (!CHK(c, yt_get(v, "min", YT_REQUIRED, &mn, E)))
            get_pct(c, mn, &x->avail_min);
        x->avail_scope = PB_SCOPE_ALL;
        get_scope(c, v, &x->avail_scope);
        get_source(c, v, &x->avail_source);
    }
    if (!CHK(c, yt_get(m, "p99", YT_OPTIONAL, &v, E)) && v && !CHK(c, yt_expect_map(v, E))) {
        static const char *const pk[] = {"max", "scope", NULL};
        CHK(c, yt_check_keys(v, pk, E));
        CHK(c, yt_get_duration(v, "max", YT_REQUIRED, 1000000, MAX_DURATION_NS, &x->p99_max_ns,
                               E));
        get_scope(c, v, &x->p99_scope);
    }
}

static void expect_free(struct pb_expect *x)
{
    if (!x)
        return;
    for (size_t i = 0; i < x->nfires; i++)
        match_free(&x->fires[i]);
    for (size_t i = 0; i < x->nquiet; i++)
        match_free(&x->quiet[i]);
    free(x->fires);
    free(x->quiet);
    free(x);
}

/* One item of steady_state (stop = 0) or stop_conditions (stop = 1): a map
 * with exactly one of availability, p99, no_alarm (steady state),
 * availability, alarm, alarm_outside_plan (stop conditions). */
static void parse_probe(struct pctx *c, const struct yt_node *item, struct pb_probe *p, int stop)
{
    static const char *const sk[] = {"availability", "p99", "no_alarm", NULL};
    static const char *const xk[] = {"availability", "alarm", "alarm_outside_plan", NULL};
    p->line = item->line;
    p->col = item->col;
    p->over_ns = 10 * NS_PER_S;
    p->timeout_ns = 90 * NS_PER_S;
    if (CHK(c, yt_expect_map(item, E)) || CHK(c, yt_check_keys(item, stop ? xk : sk, E)))
        return;
    if (item->n != 1) {
        pushf(c, item->n ? item->pairs[1].key : item, "a %s has exactly one of %s",
              stop ? "stop condition" : "steady-state probe",
              stop ? "availability, alarm, alarm_outside_plan" : "availability, p99, no_alarm");
        return;
    }
    const char *k = item->pairs[0].key->text;
    const struct yt_node *v = item->pairs[0].value;
    p->line = item->pairs[0].key->line;
    p->col = item->pairs[0].key->col;
    if (!strcmp(k, "availability")) {
        static const char *const ak[] = {"min", "over", "source", "timeout", NULL};
        static const char *const akx[] = {"min", "over", "source", "scope", NULL};
        const struct yt_node *mn;
        p->kind = PB_PROBE_AVAIL;
        p->scope = stop ? PB_SCOPE_UNAFFECTED : PB_SCOPE_ALL;
        if (CHK(c, yt_expect_map(v, E)))
            return;
        CHK(c, yt_check_keys(v, stop ? akx : ak, E));
        if (!CHK(c, yt_get(v, "min", YT_REQUIRED, &mn, E)))
            get_pct(c, mn, &p->min);
        CHK(c, yt_get_duration(v, "over", YT_OPTIONAL, NS_PER_S, 3600 * NS_PER_S, &p->over_ns, E));
        get_source(c, v, &p->source);
        if (stop)
            get_scope(c, v, &p->scope);
        CHK(c, yt_get_duration(v, "timeout", YT_OPTIONAL, NS_PER_S, MAX_DURATION_NS,
                               &p->timeout_ns, E));
    } else if (!strcmp(k, "p99")) {
        static const char *const pk[] = {"max", "over", "timeout", NULL};
        p->kind = PB_PROBE_P99;
        if (CHK(c, yt_expect_map(v, E)))
            return;
        CHK(c, yt_check_keys(v, pk, E));
        CHK(c, yt_get_duration(v, "max", YT_REQUIRED, 1000000, MAX_DURATION_NS, &p->max_ns, E));
        CHK(c, yt_get_duration(v, "over", YT_OPTIONAL, NS_PER_S, 3600 * NS_PER_S, &p->over_ns, E));
        CHK(c, yt_get_duration(v, "timeout", YT_OPTIONAL, NS_PER_S, MAX_DURATION_NS,
                               &p->timeout_ns, E));
    } else if (!strcmp(k, "no_alarm") || !strcmp(k, "alarm")) {
        p->kind = PB_PROBE_NO_ALARM;
        if (v->kind == YT_MAP && yt_map_get(v, "timeout")) {
            /* timeout is the probe's, the rest the alarm's */
            CHK(c, yt_get_duration(v, "timeout", YT_OPTIONAL, NS_PER_S, MAX_DURATION_NS,
                                   &p->timeout_ns, E));
            struct yt_node copy = *v;
            struct yt_pair pairs[16];
            size_t n = 0;
            for (size_t i = 0; i < v->n && n < 16; i++)
                if (strcmp(v->pairs[i].key->text, "timeout"))
                    pairs[n++] = v->pairs[i];
            copy.pairs = pairs;
            copy.n = n;
            parse_match(c, &copy, &p->match, 0);
        } else {
            parse_match(c, v, &p->match, 0);
        }
        if (stop && !p->match.alarm)
            pushf(c, v, "alarm: name the alarm (alarm_outside_plan: true stops on any alarm no "
                        "step expects)");
    } else {
        int on = 0;
        p->kind = PB_PROBE_OUTSIDE_PLAN;
        if (!CHK(c, yt_as_bool(v, &on, E)) && !on)
            p->kind = 0; /* alarm_outside_plan: false = no condition */
    }
}

static void parse_probes(struct pctx *c, const struct yt_node *seq, struct pb_probe **out,
                         size_t *n, int stop)
{
    if (CHK(c, yt_expect_seq(seq, E)))
        return;
    if (!(*out = calloc(seq->n + 1, sizeof **out)))
        return;
    for (size_t i = 0; i < seq->n; i++)
        parse_probe(c, seq->items[i], &(*out)[(*n)++], stop);
}

static void parse_canaries(struct pctx *c, const struct yt_node *m, struct pb_canaries *k)
{
    static const char *const keys[] = {"rate",     "interval", "timeout", "table",
                                       "postgres", "metrics",  NULL};
    k->enabled = 1;
    k->rate = 2;
    k->interval_ns = NS_PER_S;
    k->timeout_ns = NS_PER_S;
    const char *s = "nines_canary";
    if (!yt_is_null(m)) {
        if (CHK(c, yt_expect_map(m, E)))
            return;
        CHK(c, yt_check_keys(m, keys, E));
        int64_t v;
        if (!CHK(c, yt_get_int(m, "rate", YT_OPTIONAL, 1, 1000, &v, E)) && yt_map_get(m, "rate"))
            k->rate = (double)v;
        CHK(c, yt_get_duration(m, "interval", YT_OPTIONAL, NS_PER_S, 60 * NS_PER_S,
                               &k->interval_ns, E));
        if (k->interval_ns % 1000000u)
            pushf(c, yt_map_get(m, "interval"), "interval: whole milliseconds");
        CHK(c, yt_get_duration(m, "timeout", YT_OPTIONAL, NS_PER_S / 100, 60 * NS_PER_S,
                               &k->timeout_ns, E));
        CHK(c, yt_get_str(m, "table", YT_OPTIONAL, &s, E));
        const char *p = NULL;
        if (!CHK(c, yt_get_str(m, "postgres", YT_OPTIONAL, &p, E)) && p && *p) {
            if (!strcmp(p, "none"))
                k->no_postgres = 1;
            else if (strcmp(p, "private"))
                k->postgres = strdup(p);
        }
        const struct yt_node *mt;
        if (!CHK(c, yt_get(m, "metrics", YT_OPTIONAL, &mt, E)) && mt) {
            struct yt_hostport hp;
            if (!CHK(c, yt_as_hostport(mt, &hp, E)))
                k->metrics = strdup(mt->text);
        }
    }
    k->table = strdup(s);
}

static void parse_alarms(struct pctx *c, const struct yt_node *m, struct pb_alarms *a)
{
    static const char *const keys[] = {"rules", "alertmanager", NULL};
    a->line = m->line;
    a->col = m->col;
    if (CHK(c, yt_expect_map(m, E)))
        return;
    CHK(c, yt_check_keys(m, keys, E));
    const char *s = NULL;
    if (!CHK(c, yt_get_str(m, "rules", YT_REQUIRED, &s, E))) {
        a->enabled = 1;
        a->rules = resolve_path(c, s);
    }
    s = NULL;
    if (!CHK(c, yt_get_str(m, "alertmanager", YT_OPTIONAL, &s, E)) && s && *s)
        a->alertmanager = strdup(s);
}

/* Alarm names against the rules file (loaded here so that lint shows its
 * errors too). */
static void check_alarm_name(struct pctx *c, const struct cfa_rules *r, const char *file,
                             const struct pb_alarm_match *m)
{
    if (!m->alarm)
        return;
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->rules[i].name, m->alarm))
            return;
    char known[400];
    size_t o = 0;
    known[0] = 0;
    for (size_t i = 0; i < r->n && o < sizeof known; i++)
        o += (size_t)snprintf(known + o, sizeof known - o, "%s%s", i ? ", " : "",
                              r->rules[i].name);
    struct nerr e = {0};
    nerr_set(&e, NERR_INVALID, "%s:%d:%d: no alarm '%s' in the rules (they have: %s)", file,
             m->line, m->col, m->alarm, known);
    push(c, &e);
}

static void check_alarm_names(struct pctx *c, const struct playbook *pb, const struct cfa_rules *r,
                              const struct pb_step *st, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        check_alarm_names(c, pb, r, st[i].steps, st[i].nsteps);
        for (size_t k = 0; st[i].expect && k < st[i].expect->nfires; k++)
            check_alarm_name(c, r, pb->path, &st[i].expect->fires[k]);
        for (size_t k = 0; st[i].expect && k < st[i].expect->nquiet; k++)
            check_alarm_name(c, r, pb->path, &st[i].expect->quiet[k]);
    }
}

static void check_rules(struct pctx *c, const struct playbook *pb)
{
    struct cfa_rules r;
    struct nerr e = {0};
    if (!pb->alarms.enabled || !pb->alarms.rules)
        return;
    if (cfa_rules_load(pb->alarms.rules, &r, &e)) {
        push(c, &e);
        return;
    }
    check_alarm_names(c, pb, &r, pb->steps, pb->nsteps);
    for (size_t i = 0; i < pb->nsteady; i++)
        check_alarm_name(c, &r, pb->path, &pb->steady[i].match);
    for (size_t i = 0; i < pb->nstops; i++)
        check_alarm_name(c, &r, pb->path, &pb->stops[i].match);
    cfa_rules_free(&r);
}

/* What the sections need of each other, at the first position that needs
 * it. */
static void check_needs(struct pctx *c, const struct playbook *pb, const struct pb_step *st,
                        size_t n)
{
    for (size_t i = 0; i < n; i++) {
        check_needs(c, pb, st[i].steps, st[i].nsteps);
        if (st[i].kind == PB_INJECT && st[i].fault->at_rest &&
            !(pb->verify.scrub && pb->verify.scrub_deep)) {
            struct nerr e = {0};
            nerr_set(&e, NERR_INVALID,
                     "%s:%d:%d: %s changes data at rest: only a deep scrub finds it; add "
                     "verify: {scrub: deep}",
                     pb->path, st[i].line, st[i].col, st[i].fault->inject_step);
            push(c, &e);
        }
        const struct pb_expect *x = st[i].expect;
        if (!x)
            continue;
        struct nerr e = {0};
        if ((x->nfires || x->nquiet) && !pb->alarms.enabled) {
            nerr_set(&e, NERR_INVALID, "%s:%d:%d: expect: fires/quiet need an alarms: section",
                     pb->path, x->line, x->col);
            push(c, &e);
        }
        enum pb_source src = x->avail_source;
        if (x->avail_min >= 0 &&
            ((src == PB_SRC_CANARIES && !pb->canaries.enabled) ||
             (src != PB_SRC_CANARIES && !pb->canaries.enabled && !pb->traffic.enabled) ||
             (src == PB_SRC_TRAFFIC && !pb->traffic.enabled))) {
            nerr_set(&e, NERR_INVALID,
                     "%s:%d:%d: expect: availability needs %s", pb->path, x->line, x->col,
                     src == PB_SRC_TRAFFIC ? "a traffic: section"
                                           : "a canaries: or traffic: section");
            push(c, &e);
        }
        if (x->p99_max_ns && !pb->traffic.enabled) {
            nerr_set(&e, NERR_INVALID, "%s:%d:%d: expect: p99 needs a traffic: section", pb->path,
                     x->line, x->col);
            push(c, &e);
        }
    }
}

static void check_probe_needs(struct pctx *c, const struct playbook *pb, const struct pb_probe *p,
                              size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct nerr e = {0};
        const char *need = NULL;
        if ((p[i].kind == PB_PROBE_NO_ALARM || p[i].kind == PB_PROBE_OUTSIDE_PLAN) &&
            !pb->alarms.enabled)
            need = "an alarms: section";
        else if (p[i].kind == PB_PROBE_P99 && !pb->traffic.enabled)
            need = "a traffic: section";
        else if (p[i].kind == PB_PROBE_AVAIL &&
                 ((p[i].source == PB_SRC_CANARIES && !pb->canaries.enabled) ||
                  (p[i].source == PB_SRC_TRAFFIC && !pb->traffic.enabled) ||
                  (!pb->canaries.enabled && !pb->traffic.enabled)))
            need = p[i].source == PB_SRC_CANARIES ? "a canaries: section"
                   : p[i].source == PB_SRC_TRAFFIC ? "a traffic: section"
                                                   : "a canaries: or traffic: section";
        if (need) {
            nerr_set(&e, NERR_INVALID, "%s:%d:%d: this needs %s", pb->path, p[i].line, p[i].col,
                     need);
            push(c, &e);
        }
    }
}

/* ---- names against the inventory ---- */

static void check_names(struct pctx *c, const struct pb_step *st, size_t n,
                        const struct inventory *inv, const char *file)
{
    struct fault_errs x = errs_of(c);
    for (size_t i = 0; i < n; i++) {
        fault_targets_check(&st[i].targets, inv, file, &x);
        check_names(c, st[i].steps, st[i].nsteps, inv, file);
    }
}

int playbook_check_inventory(const struct playbook *pb, const struct inventory *inv,
                             struct pb_errors *errs, struct nerr *err)
{
    struct pctx c = {.errs = errs};
    check_names(&c, pb->steps, pb->nsteps, inv, pb->path);
    if (c.first_code && err)
        *err = c.first;
    return c.first_code;
}

int playbook_load(const char *path, const char *text, size_t len, const struct inventory *inv,
                  struct playbook **out, struct pb_errors *errs, struct nerr *err)
{
    static const char *const keys[] = {"name",         "inventory", "cluster",
                                       "traffic",      "canaries",  "alarms",
                                       "steady_state", "steps",     "stop_conditions",
                                       "verify",       NULL};
    struct yt_doc *doc = NULL;
    struct playbook *pb = NULL;
    struct pctx c = {.errs = errs};
    char *dir = NULL;
    int rc;
    *out = NULL;
    rc = text ? yt_load_string(path, text, len, &doc, err) : yt_load_file(path, &doc, err);
    if (rc) {
        push(&c, err);
        return rc;
    }
    if (!(pb = calloc(1, sizeof *pb)) || !(pb->path = strdup(path)) || !(dir = strdup(path)))
        goto nomem;
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        strcpy(dir, ".");
    c.dir = dir;
    pb->verify = (struct pb_verify){.checkers = 1, .replicas = 1, .caught_up = 1, .scrub = 1,
                                    .timeout_ns = 120 * NS_PER_S};

    const struct yt_node *root = yt_root(doc), *v;
    if (CHK(&c, yt_expect_map(root, E)))
        goto done;
    CHK(&c, yt_check_keys(root, keys, E));
    const char *s = NULL;
    if (!CHK(&c, yt_get_str(root, "name", YT_OPTIONAL, &s, E)) && s)
        pb->name = strdup(s);
    else {
        const char *b = strrchr(path, '/');
        pb->name = strdup(b ? b + 1 : path);
        char *dot = pb->name ? strrchr(pb->name, '.') : NULL;
        if (dot && dot != pb->name)
            *dot = 0;
    }
    s = NULL;
    if (!CHK(&c, yt_get_str(root, "inventory", YT_OPTIONAL, &s, E)) && s) {
        pb->inventory = resolve_path(&c, s);
        pb->inv_line = yt_map_get(root, "inventory")->line;
        pb->inv_col = yt_map_get(root, "inventory")->col;
    }
    if (!CHK(&c, yt_get(root, "cluster", YT_REQUIRED, &v, E)))
        parse_cluster(&c, v, pb);
    if (!CHK(&c, yt_get(root, "traffic", YT_OPTIONAL, &v, E)) && v)
        parse_traffic(&c, v, &pb->traffic);
    if (!CHK(&c, yt_get(root, "steps", YT_REQUIRED, &v, E)))
        parse_steps(&c, v, &pb->steps, &pb->nsteps, 0);
    if (!CHK(&c, yt_get(root, "verify", YT_OPTIONAL, &v, E)) && v)
        parse_verify(&c, v, &pb->verify);
    if (!CHK(&c, yt_get(root, "canaries", YT_OPTIONAL, &v, E)) && v)
        parse_canaries(&c, v, &pb->canaries);
    if (!CHK(&c, yt_get(root, "alarms", YT_OPTIONAL, &v, E)) && v)
        parse_alarms(&c, v, &pb->alarms);
    if (!CHK(&c, yt_get(root, "steady_state", YT_OPTIONAL, &v, E)) && v)
        parse_probes(&c, v, &pb->steady, &pb->nsteady, 0);
    if (!CHK(&c, yt_get(root, "stop_conditions", YT_OPTIONAL, &v, E)) && v)
        parse_probes(&c, v, &pb->stops, &pb->nstops, 1);
    if (pb->alarms.enabled && !pb->canaries.enabled) {
        struct nerr e = {0};
        nerr_set(&e, NERR_INVALID, "%s:%d:%d: alarms need a canaries: section (their samples)",
                 path, pb->alarms.line, pb->alarms.col);
        push(&c, &e);
    }
    check_needs(&c, pb, pb->steps, pb->nsteps);
    check_rules(&c, pb);
    check_probe_needs(&c, pb, pb->steady, pb->nsteady);
    check_probe_needs(&c, pb, pb->stops, pb->nstops);
    if (inv)
        check_names(&c, pb->steps, pb->nsteps, inv, path);
done:
    free(dir);
    yt_free(doc);
    if (c.first_code) {
        if (err)
            *err = c.first;
        playbook_free(pb);
        return c.first_code;
    }
    *out = pb;
    return 0;
nomem:
    free(dir);
    yt_free(doc);
    playbook_free(pb);
    return nerr_set(err, NERR_NOMEM, "out of memory");
}

void playbook_free(struct playbook *pb)
{
    if (!pb)
        return;
    free(pb->path);
    free(pb->name);
    free(pb->inventory);
    free(pb->ninesd);
    for (size_t i = 0; i < pb->nargs; i++)
        free(pb->ninesd_args[i]);
    free(pb->ninesd_args);
    free(pb->boot_script);
    free(pb->cluster_file);
    free(pb->traffic.table);
    free(pb->canaries.table);
    free(pb->canaries.postgres);
    free(pb->canaries.metrics);
    free(pb->alarms.rules);
    free(pb->alarms.alertmanager);
    for (size_t i = 0; i < pb->nsteady; i++)
        match_free(&pb->steady[i].match);
    for (size_t i = 0; i < pb->nstops; i++)
        match_free(&pb->stops[i].match);
    free(pb->steady);
    free(pb->stops);
    for (size_t i = 0; i < pb->nsteps; i++)
        step_free(&pb->steps[i]);
    free(pb->steps);
    free(pb);
}
