/*
 * playbook.c — playbook YAML to struct playbook, and to a resolved plan.
 * The contract is in playbook.h; docs/gameday.md is the user's reference.
 */
#include "chaos/playbook.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

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

const char *pb_kind_name(enum pb_kind k)
{
    switch (k) {
    case PB_POWER_OFF: return "power_off";
    case PB_POWER_ON: return "power_on";
    case PB_WAIT_HEALTHY: return "wait_healthy";
    case PB_SLEEP: return "sleep";
    case PB_REPEAT: return "repeat";
    }
    return "?";
}

uint64_t pb_default_timeout(enum pb_kind k, uint64_t hold_ns)
{
    switch (k) {
    case PB_POWER_OFF: return hold_ns + 60 * NS_PER_S;
    case PB_POWER_ON: return 60 * NS_PER_S;
    case PB_WAIT_HEALTHY: return 120 * NS_PER_S;
    case PB_SLEEP: return hold_ns + 5 * NS_PER_S;
    default: return 60 * NS_PER_S;
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

static const char *const target_names[] = {"", "node", "rack", "az"};

static int get_target(struct pctx *c, const struct yt_node *m, enum pb_target *t)
{
    const struct yt_node *v;
    if (CHK(c, yt_get(m, "target", YT_OPTIONAL, &v, E)) || !v)
        return 0;
    const char *s;
    if (CHK(c, yt_as_str(v, &s, E)))
        return -1;
    for (int i = 1; i <= 3; i++)
        if (!strcmp(s, target_names[i])) {
            *t = (enum pb_target)i;
            return 0;
        }
    pushf(c, v, "target must be node, rack or az, got '%s'", s);
    return -1;
}

static int get_names(struct pctx *c, const struct yt_node *m, struct pb_step *st)
{
    const struct yt_node *v;
    if (CHK(c, yt_get(m, "names", YT_OPTIONAL, &v, E)) || !v)
        return 0;
    if (v->kind == YT_SCALAR) { /* one name needs no list */
        const char *s;
        if (CHK(c, yt_as_str(v, &s, E)))
            return -1;
        st->names = calloc(1, sizeof *st->names);
        if (!st->names || !(st->names[0].s = strdup(s)))
            return -1;
        st->names[0].line = v->line;
        st->names[0].col = v->col;
        st->nnames = 1;
        return 0;
    }
    if (CHK(c, yt_expect_seq(v, E)))
        return -1;
    if (!v->n) {
        pushf(c, v, "names is empty");
        return -1;
    }
    st->names = calloc(v->n, sizeof *st->names);
    if (!st->names)
        return -1;
    for (size_t i = 0; i < v->n; i++) {
        const char *s;
        if (CHK(c, yt_as_str(v->items[i], &s, E)))
            continue;
        for (size_t j = 0; j < st->nnames; j++)
            if (!strcmp(st->names[j].s, s)) {
                pushf(c, v->items[i], "'%s' is named twice", s);
                s = NULL;
                break;
            }
        if (!s || !(st->names[st->nnames].s = strdup(s)))
            continue;
        st->names[st->nnames].line = v->items[i]->line;
        st->names[st->nnames].col = v->items[i]->col;
        st->nnames++;
    }
    return 0;
}

static void step_free(struct pb_step *st)
{
    for (size_t i = 0; i < st->nnames; i++)
        free(st->names[i].s);
    free(st->names);
    for (size_t i = 0; i < st->nsteps; i++)
        step_free(&st->steps[i]);
    free(st->steps);
}

static int parse_steps(struct pctx *c, const struct yt_node *seq, struct pb_step **out,
                       size_t *nout, int depth);

static void get_timeout(struct pctx *c, const struct yt_node *m, struct pb_step *st)
{
    CHK(c, yt_get_duration(m, "timeout", YT_OPTIONAL, NS_PER_S / 10, MAX_DURATION_NS,
                           &st->timeout_ns, E));
}

static void parse_power_off(struct pctx *c, const struct yt_node *m, struct pb_step *st)
{
    static const char *const keys[] = {"target",      "select",  "names", "count", "percent",
                                       "duration",    "mode",    "quorum_safe", "timeout", NULL};
    st->target = PB_TARGET_NODE;
    st->quorum_safe = 1;
    if (CHK(c, yt_expect_map(m, E)))
        return;
    CHK(c, yt_check_keys(m, keys, E));
    get_target(c, m, &st->target);
    const char *sel = "random";
    const struct yt_node *selnode = yt_map_get(m, "select");
    CHK(c, yt_get_str(m, "select", YT_OPTIONAL, &sel, E));
    if (!strcmp(sel, "names") || !strcmp(sel, "by name") || !strcmp(sel, "by_name"))
        st->by_name = 1;
    else if (strcmp(sel, "random"))
        pushf(c, selnode, "select must be random or names, got '%s'", sel);
    get_names(c, m, st);
    if (yt_map_get(m, "names") && !st->by_name && selnode)
        pushf(c, yt_map_key(m, "names"), "names is only for select: names");
    else if (st->nnames && !selnode)
        st->by_name = 1; /* names alone mean select: names */
    if (st->by_name && !st->nnames && !yt_map_get(m, "names"))
        pushf(c, m, "select: names needs a names list");
    int64_t v = 0;
    const struct yt_node *cn = yt_map_get(m, "count"), *pn = yt_map_get(m, "percent");
    if (cn && pn)
        pushf(c, yt_map_key(m, "percent"), "give count or percent, not both");
    if (st->by_name && (cn || pn))
        pushf(c, yt_map_key(m, cn ? "count" : "percent"),
              "count and percent are for select: random");
    st->count = 1;
    if (!CHK(c, yt_get_int(m, "count", YT_OPTIONAL, 1, INV_MAX_HOSTS, &v, E)) && cn)
        st->count = (int)v;
    if (!CHK(c, yt_get_int(m, "percent", YT_OPTIONAL, 1, 100, &v, E)) && pn) {
        st->percent = (int)v;
        st->count = 0;
    }
    const struct yt_node *dn;
    if (!CHK(c, yt_get(m, "duration", YT_OPTIONAL, &dn, E)) && dn)
        get_range(c, dn, NS_PER_S / 10, &st->dur_min, &st->dur_max);
    CHK(c, yt_get_bool(m, "quorum_safe", YT_OPTIONAL, &st->quorum_safe, E));
    const char *mode = NULL;
    if (!CHK(c, yt_get_str(m, "mode", YT_OPTIONAL, &mode, E)) && mode &&
        (power_off_mode_parse(mode, &st->mode) || st->mode == POWER_OFF_DEFAULT))
        pushf(c, yt_map_get(m, "mode"), "mode must be crash, torn or kill, got '%s'", mode);
    get_timeout(c, m, st);
}

static void parse_step(struct pctx *c, const struct yt_node *item, struct pb_step *st, int depth)
{
    static const char *const kinds[] = {"power_off", "power_on", "wait_healthy", "sleep",
                                        "repeat", NULL};
    st->line = item->line;
    st->col = item->col;
    if (CHK(c, yt_expect_map(item, E)))
        return;
    if (CHK(c, yt_check_keys(item, kinds, E)))
        return;
    if (item->n != 1) {
        pushf(c, item->n ? item->pairs[1].key : item,
              "a step has exactly one of power_off, power_on, wait_healthy, sleep, repeat");
        return;
    }
    const char *k = item->pairs[0].key->text;
    const struct yt_node *v = item->pairs[0].value;
    st->line = item->pairs[0].key->line;
    st->col = item->pairs[0].key->col;
    for (int i = 0; kinds[i]; i++)
        if (!strcmp(k, kinds[i]))
            st->kind = (enum pb_kind)(i + 1);
    switch (st->kind) {
    case PB_POWER_OFF:
        parse_power_off(c, v, st);
        break;
    case PB_POWER_ON: {
        static const char *const keys[] = {"target", "names", "timeout", NULL};
        st->target = PB_TARGET_NODE;
        if (yt_is_null(v))
            break;
        if (CHK(c, yt_expect_map(v, E)))
            break;
        CHK(c, yt_check_keys(v, keys, E));
        get_target(c, v, &st->target);
        get_names(c, v, st);
        get_timeout(c, v, st);
        break;
    }
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
    static const char *const keys[] = {"rate", "duration", "mix", "keys", "distribution",
                                       "endpoints", "concurrency", "timeout", "partitions",
                                       "table", NULL};
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
            pushf(c, yt_map_get(m, "distribution"), "distribution must be uniform or zipf, got '%s'",
                  s);
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
    if (!CHK(c, yt_get_duration(m, "timeout", YT_OPTIONAL, NS_PER_S / 100, 60 * NS_PER_S, &to,
                                E)) &&
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
        pushf(c, d ? yt_map_key(m, "existing") : m, "cluster needs exactly one of deploy, existing");
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
    static const char *const dk[] = {"ninesd", "args", "api_port", "peer_port", "partitions",
                                     "boot_script", "fresh", NULL};
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
    static const char *const keys[] = {"checkers", "replicas", "caught_up", "timeout", NULL};
    if (CHK(c, yt_expect_map(m, E)))
        return;
    CHK(c, yt_check_keys(m, keys, E));
    CHK(c, yt_get_bool(m, "checkers", YT_OPTIONAL, &v->checkers, E));
    CHK(c, yt_get_bool(m, "replicas", YT_OPTIONAL, &v->replicas, E));
    CHK(c, yt_get_bool(m, "caught_up", YT_OPTIONAL, &v->caught_up, E));
    CHK(c, yt_get_duration(m, "timeout", YT_OPTIONAL, NS_PER_S, MAX_DURATION_NS, &v->timeout_ns,
                           E));
}

/* ---- names against the inventory ---- */

static int unit_exists(const struct inventory *inv, enum pb_target t, const char *name)
{
    if (t == PB_TARGET_NODE)
        return inventory_host(inv, name) != NULL;
    if (t == PB_TARGET_AZ)
        return inventory_by_az(inv, name, NULL, 0) > 0;
    const char *slash = strchr(name, '/');
    if (!slash)
        return inventory_by_rack(inv, NULL, name, NULL, 0) > 0;
    char az[256];
    size_t l = (size_t)(slash - name);
    if (l >= sizeof az)
        return 0;
    memcpy(az, name, l);
    az[l] = 0;
    return inventory_by_rack(inv, az, slash + 1, NULL, 0) > 0;
}

static void check_names(struct pctx *c, const struct pb_step *st, size_t n,
                        const struct inventory *inv, const char *file)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < st[i].nnames; j++)
            if (!unit_exists(inv, st[i].target, st[i].names[j].s)) {
                struct nerr e = {0};
                nerr_set(&e, NERR_INVALID, "%s:%d:%d: %s '%s' is not in the inventory %s", file,
                         st[i].names[j].line, st[i].names[j].col, target_names[st[i].target],
                         st[i].names[j].s, inv->path ? inv->path : inv->name);
                push(c, &e);
            }
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
    static const char *const keys[] = {"name", "inventory", "cluster", "traffic", "steps",
                                       "verify", NULL};
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
    pb->verify = (struct pb_verify){1, 1, 1, 120 * NS_PER_S};

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
    for (size_t i = 0; i < pb->nsteps; i++)
        step_free(&pb->steps[i]);
    free(pb->steps);
    free(pb);
}

/* ---- planning ---- */

/* A target unit: a node, a rack or an AZ, and its hosts. */
struct unit {
    char name[160];
    size_t az; /* index into the AZ list */
    size_t *hosts;
    size_t nhosts;
};

struct planner {
    const struct playbook *pb;
    const struct inventory *inv;
    uint64_t rng;
    const char *azs[INV_MAX_HOSTS];
    size_t nazs;
    unsigned char *down; /* per host */
    struct pb_plan *plan;
    struct nerr *err;
};

/* splitmix64 (Steele, Lea, Flood 2014): a seed in, a stream out; enough
 * for choosing victims and tiny to replay. */
static uint64_t rnd(struct planner *p)
{
    uint64_t z = (p->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rnd_below(struct planner *p, uint64_t n)
{
    return n ? rnd(p) % n : 0;
}

static size_t az_index(const struct planner *p, const char *az)
{
    for (size_t i = 0; i < p->nazs; i++)
        if (!strcmp(p->azs[i], az))
            return i;
    return 0;
}

static void units_free(struct unit *u, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(u[i].hosts);
    free(u);
}

/* Every unit of kind t, in inventory order. */
static int units_of(const struct planner *p, enum pb_target t, struct unit **out, size_t *nout)
{
    const struct inventory *inv = p->inv;
    struct unit *u = calloc(inv->n_hosts ? inv->n_hosts : 1, sizeof *u);
    size_t n = 0;
    if (!u)
        return NERR_NOMEM;
    for (size_t h = 0; h < inv->n_hosts; h++) {
        const struct inv_host *ho = &inv->hosts[h];
        char name[160];
        if (t == PB_TARGET_NODE)
            snprintf(name, sizeof name, "%s", ho->name);
        else if (t == PB_TARGET_RACK)
            snprintf(name, sizeof name, "%s/%s", ho->az, ho->rack);
        else
            snprintf(name, sizeof name, "%s", ho->az);
        size_t i;
        for (i = 0; i < n && strcmp(u[i].name, name); i++)
            ;
        if (i == n) {
            snprintf(u[n].name, sizeof u[n].name, "%s", name);
            u[n].az = az_index(p, ho->az);
            if (!(u[n].hosts = calloc(inv->n_hosts, sizeof *u[n].hosts))) {
                units_free(u, n);
                return NERR_NOMEM;
            }
            n++;
        }
        u[i].hosts[u[i].nhosts++] = h;
    }
    *out = u;
    *nout = n;
    return 0;
}

/* Does unit u match a name written in the playbook ("r1" matches a rack r1
 * in any AZ)? */
static int unit_matches(const struct unit *u, enum pb_target t, const char *name)
{
    if (!strcmp(u->name, name))
        return 1;
    if (t == PB_TARGET_RACK && !strchr(name, '/')) {
        const char *slash = strchr(u->name, '/');
        return slash && !strcmp(slash + 1, name);
    }
    return 0;
}

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

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static void down_list(const struct planner *p, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = 0;
    for (size_t h = 0; h < p->inv->n_hosts && len + 1 < cap; h++)
        if (p->down[h])
            len += (size_t)snprintf(buf + len, cap - len, "%s%s", len ? "," : "",
                                    p->inv->hosts[h].name);
    if (!len)
        snprintf(buf, cap, "none");
}

/* The AZ (index) of the hosts down now, or -1 when none is down. */
static long down_az(const struct planner *p)
{
    for (size_t h = 0; h < p->inv->n_hosts; h++)
        if (p->down[h])
            return (long)az_index(p, p->inv->hosts[h].az);
    return -1;
}

static int unit_all_up(const struct planner *p, const struct unit *u)
{
    for (size_t i = 0; i < u->nhosts; i++)
        if (p->down[u->hosts[i]])
            return 0;
    return 1;
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
    a->line = st->line;
    a->col = st->col;
    a->quorum_safe = st->quorum_safe;
    a->mode = st->mode;
    snprintf(a->label, sizeof a->label, "%s%s", prefix, pb_kind_name(st->kind));
    return a;
}

static uint64_t draw_range(struct planner *p, uint64_t lo, uint64_t hi)
{
    if (hi <= lo)
        return lo;
    /* Whole milliseconds, so plans read well and replay exactly. */
    uint64_t span = (hi - lo) / 1000000u;
    return lo + rnd_below(p, span + 1) * 1000000u;
}

static int plan_power_off(struct planner *p, const struct pb_step *st, struct pb_action *a)
{
    struct unit *u = NULL;
    size_t nu = 0, *pick = NULL, npick = 0;
    int rc = units_of(p, st->target, &u, &nu);
    if (rc)
        return nerr_set(p->err, rc, "out of memory");
    char downs[512];
    down_list(p, downs, sizeof downs);
    if (!(pick = calloc(nu + 1, sizeof *pick))) {
        rc = nerr_set(p->err, NERR_NOMEM, "out of memory");
        goto out;
    }
    long daz = down_az(p);
    if (st->by_name) {
        for (size_t j = 0; j < st->nnames; j++) {
            size_t found = 0;
            for (size_t i = 0; i < nu; i++) {
                if (!unit_matches(&u[i], st->target, st->names[j].s))
                    continue;
                found++;
                if (!unit_all_up(p, &u[i])) {
                    rc = plan_err(p, st, "%s %s is already (partly) off at this point (down: %s)",
                                  target_names[st->target], u[i].name, downs);
                    goto out;
                }
                size_t k;
                for (k = 0; k < npick && pick[k] != i; k++)
                    ;
                if (k == npick)
                    pick[npick++] = i;
            }
            if (!found) {
                rc = plan_err(p, st, "%s '%s' is not in the inventory", target_names[st->target],
                              st->names[j].s);
                goto out;
            }
        }
        if (st->quorum_safe)
            for (size_t k = 0; k < npick; k++) {
                long z = (long)u[pick[k]].az;
                if (daz >= 0 && z != daz) {
                    rc = plan_err(p, st,
                                  "quorum_safe: %s would have hosts of AZs %s and %s down at once "
                                  "(down: %s)",
                                  u[pick[k]].name, p->azs[daz], p->azs[z], downs);
                    goto out;
                }
                daz = z;
            }
    } else {
        size_t want = st->percent ? (size_t)st->percent * nu / 100 : (size_t)st->count;
        if (!want)
            want = 1;
        size_t *cand = calloc(nu + 1, sizeof *cand), nc = 0;
        if (!cand) {
            rc = nerr_set(p->err, NERR_NOMEM, "out of memory");
            goto out;
        }
        if (st->quorum_safe) {
            /* Pick an AZ first (the one already down, if any), then units in
             * it: units of two AZs are never down together. */
            size_t okaz[INV_MAX_HOSTS], nok = 0;
            for (size_t z = 0; z < p->nazs; z++) {
                size_t have = 0;
                if (daz >= 0 && (long)z != daz)
                    continue;
                for (size_t i = 0; i < nu; i++)
                    have += u[i].az == z && unit_all_up(p, &u[i]);
                if (have >= want)
                    okaz[nok++] = z;
            }
            if (!nok) {
                free(cand);
                rc = plan_err(p, st,
                              "quorum_safe: no AZ has %zu %s%s up that could go down without "
                              "hosts of a second AZ down (down: %s)",
                              want, target_names[st->target], want > 1 ? "s" : "", downs);
                goto out;
            }
            size_t z = okaz[rnd_below(p, nok)];
            for (size_t i = 0; i < nu; i++)
                if (u[i].az == z && unit_all_up(p, &u[i]))
                    cand[nc++] = i;
        } else {
            for (size_t i = 0; i < nu; i++)
                if (unit_all_up(p, &u[i]))
                    cand[nc++] = i;
            if (nc < want) {
                free(cand);
                rc = plan_err(p, st, "%zu %s%s to power off, but only %zu are up (down: %s)", want,
                              target_names[st->target], want > 1 ? "s" : "", nc, downs);
                goto out;
            }
        }
        /* Partial Fisher-Yates. */
        for (size_t k = 0; k < want; k++) {
            size_t j = k + (size_t)rnd_below(p, nc - k);
            size_t t = cand[k];
            cand[k] = cand[j];
            cand[j] = t;
            pick[npick++] = cand[k];
        }
        free(cand);
    }
    if (!(a->hosts = calloc(p->inv->n_hosts + 1, sizeof *a->hosts))) {
        rc = nerr_set(p->err, NERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t k = 0; k < npick; k++)
        for (size_t i = 0; i < u[pick[k]].nhosts; i++)
            a->hosts[a->nhosts++] = u[pick[k]].hosts[i];
    qsort(a->hosts, a->nhosts, sizeof *a->hosts, cmp_size);
    /* A power cut that would not lose unsynced writes is refused here, not
     * half-way through the run (the lab driver refuses it too). */
    if (st->mode == POWER_OFF_CRASH || st->mode == POWER_OFF_TORN)
        for (size_t i = 0; i < a->nhosts; i++) {
            const struct inv_host *h = &p->inv->hosts[a->hosts[i]];
            if (h->power.driver == INV_DRIVER_LAB && !h->power.fs) {
                rc = plan_err(p, st,
                              "mode %s: lab host %s has no labfs (`fs`), so its power-off "
                              "would not lose unsynced writes",
                              power_off_mode_name(st->mode), h->name);
                goto out;
            }
        }
    a->hold_ns = draw_range(p, st->dur_min, st->dur_max);
    if (!a->hold_ns) /* stays off until a power_on */
        for (size_t i = 0; i < a->nhosts; i++)
            p->down[a->hosts[i]] = 1;
out:
    free(pick);
    units_free(u, nu);
    return rc;
}

static int plan_power_on(struct planner *p, const struct pb_step *st, struct pb_action *a)
{
    if (!(a->hosts = calloc(p->inv->n_hosts + 1, sizeof *a->hosts)))
        return nerr_set(p->err, NERR_NOMEM, "out of memory");
    if (!st->nnames) {
        for (size_t h = 0; h < p->inv->n_hosts; h++)
            if (p->down[h]) {
                a->hosts[a->nhosts++] = h;
                p->down[h] = 0;
            }
        return 0;
    }
    struct unit *u = NULL;
    size_t nu = 0;
    int rc = units_of(p, st->target, &u, &nu);
    if (rc)
        return nerr_set(p->err, rc, "out of memory");
    for (size_t j = 0; j < st->nnames && !rc; j++) {
        size_t found = 0;
        for (size_t i = 0; i < nu && !rc; i++) {
            if (!unit_matches(&u[i], st->target, st->names[j].s))
                continue;
            found++;
            for (size_t k = 0; k < u[i].nhosts; k++) {
                size_t h = u[i].hosts[k];
                if (!p->down[h]) {
                    rc = plan_err(p, st, "host %s is not off at this point",
                                  p->inv->hosts[h].name);
                    break;
                }
                p->down[h] = 0;
                a->hosts[a->nhosts++] = h;
            }
        }
        if (!found && !rc)
            rc = plan_err(p, st, "%s '%s' is not in the inventory", target_names[st->target],
                          st->names[j].s);
    }
    qsort(a->hosts, a->nhosts, sizeof *a->hosts, cmp_size);
    units_free(u, nu);
    return rc;
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
        case PB_POWER_OFF:
            rc = plan_power_off(p, s, a);
            break;
        case PB_POWER_ON:
            rc = plan_power_on(p, s, a);
            break;
        case PB_SLEEP:
            a->hold_ns = draw_range(p, s->dur_min, s->dur_max);
            break;
        default:
            break;
        }
        if (rc)
            return rc;
        a->timeout_ns = s->timeout_ns ? s->timeout_ns : pb_default_timeout(a->kind, a->hold_ns);
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
    struct planner p = {.pb = pb, .inv = inv, .rng = seed, .err = err};
    int rc;
    *out = NULL;
    if (!(p.plan = calloc(1, sizeof *p.plan)) || !(p.down = calloc(inv->n_hosts + 1, 1))) {
        free(p.plan);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    p.plan->seed = seed;
    p.nazs = inventory_azs(inv, p.azs, INV_MAX_HOSTS);
    if ((rc = plan_steps(&p, pb->steps, pb->nsteps, ""))) {
        pb_plan_free(p.plan);
        free(p.down);
        return rc;
    }
    free(p.down);
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
    if (a->kind != PB_POWER_OFF && a->kind != PB_POWER_ON) {
        snprintf(buf, cap, "-");
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
    char what[1024], d[32], t[32], b[32], h[32];
    fprintf(f, "plan: seed %llu, %zu steps, inventory %s (%zu hosts)\n",
            (unsigned long long)p->seed, p->n, inv->name, inv->n_hosts);
    for (size_t i = 0; i < p->n; i++) {
        const struct pb_action *a = &p->a[i];
        pb_action_what(a, inv, what, sizeof what);
        fmt_dur(a->timeout_ns, t, sizeof t);
        fprintf(f, "%4d  %-36s ", a->index, a->label);
        if (a->kind == PB_POWER_OFF || a->kind == PB_POWER_ON)
            fprintf(f, "%s", what);
        if (a->kind == PB_POWER_OFF) {
            if (a->hold_ns) {
                fmt_dur(a->hold_ns, d, sizeof d);
                fprintf(f, " for %s", d);
            } else {
                fprintf(f, " until powered on");
            }
            if (a->mode != POWER_OFF_DEFAULT)
                fprintf(f, " (mode %s)", power_off_mode_name(a->mode));
        }
        if (a->kind == PB_SLEEP) {
            fmt_dur(a->hold_ns, d, sizeof d);
            fprintf(f, "%s", d);
        }
        fprintf(f, "  [timeout %s, line %d]\n", t, a->line);
    }
    fmt_dur(p->hold_ns, h, sizeof h);
    fmt_dur(p->bound_ns, b, sizeof b);
    fprintf(f, "time: at least %s of power-off and sleep, at most %s (every step's timeout)\n", h,
            b);
}
