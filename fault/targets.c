/*
 * fault/targets.c — target specs and the seeded, quorum-aware choice of
 * hosts (contract in targets.h). Moved out of the playbook's planner, so
 * that every fault kind shares one rule.
 */
#include "fault/targets.h"

#include "fault/fault.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fault_chk(const struct fault_errs *x, int rc, const struct nerr *e)
{
    if (rc && x && x->push)
        x->push(x->arg, e);
    return rc;
}

void fault_errf(const struct fault_errs *x, const struct yt_node *at, const char *fmt, ...)
{
    char msg[NERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct nerr e = {0};
    yt_errf(&e, at, "%s", msg);
    fault_chk(x, NERR_INVALID, &e);
}

/* Runs a yt_* check; on failure pushes its error. Returns the code. */
#define CHK(x, call)                                                                               \
    ({                                                                                             \
        struct nerr e_ = {0};                                                                      \
        (void)e_;                                                                                  \
        int rc_ = call;                                                                            \
        fault_chk((x), rc_, &e_);                                                                  \
    })
#define E (&e_)

static const char *const unit_names[] = {"", "node", "rack", "az"};

const char *fault_unit_name(enum fault_unit u)
{
    return u >= FAULT_NODE && u <= FAULT_AZ ? unit_names[u] : "?";
}

const char *const fault_target_keys[] = {"target", "select",    "names",
                                         "count",  "percent",   "leader_of",
                                         NULL};

/* leader_of: {table: T, partition: P}. */
static void get_leader_of(const struct fault_errs *x, const struct yt_node *v,
                          struct fault_targets *t)
{
    static const char *const keys[] = {"table", "partition", NULL};
    if (CHK(x, yt_expect_map(v, E)) || CHK(x, yt_check_keys(v, keys, E)))
        return;
    const char *tab = NULL;
    if (!CHK(x, yt_get_str(v, "table", YT_OPTIONAL, &tab, E)) && tab) {
        if (!*tab)
            fault_errf(x, yt_map_get(v, "table"), "table is empty");
        else if (!(t->table = strdup(tab)))
            return;
    }
    int64_t p = 0;
    if (!CHK(x, yt_get_int(v, "partition", YT_OPTIONAL, 0, 65535, &p, E)))
        t->partition = (int)p;
}

static int get_unit(const struct fault_errs *x, const struct yt_node *m, enum fault_unit *t)
{
    const struct yt_node *v;
    if (CHK(x, yt_get(m, "target", YT_OPTIONAL, &v, E)) || !v)
        return 0;
    const char *s;
    if (CHK(x, yt_as_str(v, &s, E)))
        return -1;
    for (int i = 1; i <= 3; i++)
        if (!strcmp(s, unit_names[i])) {
            *t = (enum fault_unit)i;
            return 0;
        }
    fault_errf(x, v, "target must be node, rack or az, got '%s'", s);
    return -1;
}

static int get_names(const struct fault_errs *x, const struct yt_node *m, struct fault_targets *t)
{
    const struct yt_node *v;
    if (CHK(x, yt_get(m, "names", YT_OPTIONAL, &v, E)) || !v)
        return 0;
    if (v->kind == YT_SCALAR) { /* one name needs no list */
        const char *s;
        if (CHK(x, yt_as_str(v, &s, E)))
            return -1;
        t->names = calloc(1, sizeof *t->names);
        if (!t->names || !(t->names[0].s = strdup(s)))
            return -1;
        t->names[0].line = v->line;
        t->names[0].col = v->col;
        t->nnames = 1;
        return 0;
    }
    if (CHK(x, yt_expect_seq(v, E)))
        return -1;
    if (!v->n) {
        fault_errf(x, v, "names is empty");
        return -1;
    }
    t->names = calloc(v->n, sizeof *t->names);
    if (!t->names)
        return -1;
    for (size_t i = 0; i < v->n; i++) {
        const char *s;
        if (CHK(x, yt_as_str(v->items[i], &s, E)))
            continue;
        for (size_t j = 0; j < t->nnames; j++)
            if (!strcmp(t->names[j].s, s)) {
                fault_errf(x, v->items[i], "'%s' is named twice", s);
                s = NULL;
                break;
            }
        if (!s || !(t->names[t->nnames].s = strdup(s)))
            continue;
        t->names[t->nnames].line = v->items[i]->line;
        t->names[t->nnames].col = v->items[i]->col;
        t->nnames++;
    }
    return 0;
}

void fault_targets_parse(const struct fault_errs *x, const struct yt_node *m, int heal,
                         struct fault_targets *t)
{
    t->unit = FAULT_NODE;
    t->quorum_safe = 1;
    t->count = 1;
    get_unit(x, m, &t->unit);
    if (heal) {
        get_names(x, m, t);
        return;
    }
    const char *sel = "random";
    const struct yt_node *selnode = yt_map_get(m, "select");
    CHK(x, yt_get_str(m, "select", YT_OPTIONAL, &sel, E));
    const struct yt_node *lo = yt_map_get(m, "leader_of");
    if (!strcmp(sel, "names") || !strcmp(sel, "by name") || !strcmp(sel, "by_name"))
        t->by_name = 1;
    else if (!strcmp(sel, "leader") || (lo && !selnode))
        t->by_leader = 1;
    else if (strcmp(sel, "random"))
        fault_errf(x, selnode, "select must be random, names or leader, got '%s'", sel);
    if (lo && !t->by_leader)
        fault_errf(x, yt_map_key(m, "leader_of"), "leader_of is only for select: leader");
    else if (lo)
        get_leader_of(x, lo, t);
    get_names(x, m, t);
    if (yt_map_get(m, "names") && !t->by_name && selnode)
        fault_errf(x, yt_map_key(m, "names"), "names is only for select: names");
    else if (t->nnames && !selnode)
        t->by_name = 1; /* names alone mean select: names */
    if (t->by_name && !t->nnames && !yt_map_get(m, "names"))
        fault_errf(x, m, "select: names needs a names list");
    int64_t v = 0;
    const struct yt_node *cn = yt_map_get(m, "count"), *pn = yt_map_get(m, "percent");
    if (cn && pn)
        fault_errf(x, yt_map_key(m, "percent"), "give count or percent, not both");
    if ((t->by_name || t->by_leader) && (cn || pn))
        fault_errf(x, yt_map_key(m, cn ? "count" : "percent"),
                   "count and percent are for select: random");
    if (!CHK(x, yt_get_int(m, "count", YT_OPTIONAL, 1, INV_MAX_HOSTS, &v, E)) && cn)
        t->count = (int)v;
    if (!CHK(x, yt_get_int(m, "percent", YT_OPTIONAL, 1, 100, &v, E)) && pn) {
        t->percent = (int)v;
        t->count = 0;
    }
}

void fault_targets_free(struct fault_targets *t)
{
    for (size_t i = 0; i < t->nnames; i++)
        free(t->names[i].s);
    free(t->names);
    free(t->table);
    t->names = NULL;
    t->nnames = 0;
    t->table = NULL;
}

/* ---- names against the inventory ---- */

static int unit_exists(const struct inventory *inv, enum fault_unit t, const char *name)
{
    if (t == FAULT_NODE)
        return inventory_host(inv, name) != NULL;
    if (t == FAULT_AZ)
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

void fault_targets_check(const struct fault_targets *t, const struct inventory *inv,
                         const char *file, const struct fault_errs *x)
{
    for (size_t j = 0; j < t->nnames; j++)
        if (!unit_exists(inv, t->unit, t->names[j].s)) {
            struct nerr e = {0};
            nerr_set(&e, NERR_INVALID, "%s:%d:%d: %s '%s' is not in the inventory %s", file,
                     t->names[j].line, t->names[j].col, fault_unit_name(t->unit), t->names[j].s,
                     inv->path ? inv->path : inv->name);
            fault_chk(x, NERR_INVALID, &e);
        }
}

/* ---- the world ---- */

int fault_world_init(struct fault_world *w, const struct inventory *inv, uint64_t seed)
{
    memset(w, 0, sizeof *w);
    w->inv = inv;
    rng_seed(&w->rng, seed);
    w->azs = calloc(inv->n_hosts + 1, sizeof *w->azs);
    w->down = calloc(inv->n_hosts + 1, 1);
    if (!w->azs || !w->down) {
        fault_world_free(w);
        return NERR_NOMEM;
    }
    w->nazs = inventory_azs(inv, w->azs, inv->n_hosts);
    return 0;
}

void fault_world_free(struct fault_world *w)
{
    free(w->azs);
    free(w->down);
    w->azs = NULL;
    w->down = NULL;
}

/* The modulo (not rng_below's multiply-shift) keeps the plans that seeds
 * gave before the planner moved here: a printed seed replays its plan. */
uint64_t fault_world_below(struct fault_world *w, uint64_t n)
{
    return n ? rng_next(&w->rng) % n : 0;
}

void fault_world_hold(struct fault_world *w, const size_t *hosts, size_t n, unsigned char id)
{
    for (size_t i = 0; i < n; i++)
        w->down[hosts[i]] = id;
}

void fault_world_hold_runtime(struct fault_world *w, unsigned char id)
{
    w->runtime_held = id;
}

/* ---- units ---- */

/* A target unit: a node, a rack or an AZ, and its hosts. */
struct unit {
    char name[160];
    size_t az; /* index into the AZ list */
    size_t *hosts;
    size_t nhosts;
};

static size_t az_index(const struct fault_world *w, const char *az)
{
    for (size_t i = 0; i < w->nazs; i++)
        if (!strcmp(w->azs[i], az))
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
static int units_of(const struct fault_world *w, enum fault_unit t, struct unit **out, size_t *nout)
{
    const struct inventory *inv = w->inv;
    struct unit *u = calloc(inv->n_hosts ? inv->n_hosts : 1, sizeof *u);
    size_t n = 0;
    if (!u)
        return NERR_NOMEM;
    for (size_t h = 0; h < inv->n_hosts; h++) {
        const struct inv_host *ho = &inv->hosts[h];
        char name[160];
        if (t == FAULT_NODE)
            snprintf(name, sizeof name, "%s", ho->name);
        else if (t == FAULT_RACK)
            snprintf(name, sizeof name, "%s/%s", ho->az, ho->rack);
        else
            snprintf(name, sizeof name, "%s", ho->az);
        size_t i;
        for (i = 0; i < n && strcmp(u[i].name, name); i++)
            ;
        if (i == n) {
            snprintf(u[n].name, sizeof u[n].name, "%s", name);
            u[n].az = az_index(w, ho->az);
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
static int unit_matches(const struct unit *u, enum fault_unit t, const char *name)
{
    if (!strcmp(u->name, name))
        return 1;
    if (t == FAULT_RACK && !strchr(name, '/')) {
        const char *slash = strchr(u->name, '/');
        return slash && !strcmp(slash + 1, name);
    }
    return 0;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static void down_list(const struct fault_world *w, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = 0;
    for (size_t h = 0; h < w->inv->n_hosts && len + 1 < cap; h++)
        if (w->down[h])
            len += (size_t)snprintf(buf + len, cap - len, "%s%s", len ? "," : "",
                                    w->inv->hosts[h].name);
    if (w->runtime_held && len + 1 < cap)
        len += (size_t)snprintf(buf + len, cap - len, "%sa unit chosen at run time (select: leader)",
                                len ? "," : "");
    if (!len)
        snprintf(buf, cap, "none");
}

/* The AZ (index) of the hosts down now, or -1 when none is down. */
static long down_az(const struct fault_world *w)
{
    for (size_t h = 0; h < w->inv->n_hosts; h++)
        if (w->down[h])
            return (long)az_index(w, w->inv->hosts[h].az);
    return -1;
}

static int unit_all_up(const struct fault_world *w, const struct unit *u)
{
    for (size_t i = 0; i < u->nhosts; i++)
        if (w->down[u->hosts[i]])
            return 0;
    return 1;
}

int fault_targets_pick(struct fault_world *w, const struct fault_targets *st, size_t **hosts,
                       size_t *nhosts, struct nerr *err)
{
    struct unit *u = NULL;
    size_t nu = 0, *pick = NULL, npick = 0, *out = NULL, nout = 0;
    const char *tname = fault_unit_name(st->unit);
    int rc = units_of(w, st->unit, &u, &nu);
    *hosts = NULL;
    *nhosts = 0;
    if (rc)
        return nerr_set(err, rc, "out of memory");
    char downs[512];
    down_list(w, downs, sizeof downs);
    if (!(pick = calloc(nu + 1, sizeof *pick))) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    long daz = down_az(w);
    if (st->quorum_safe && (w->runtime_held || (st->by_leader && daz >= 0))) {
        /* A unit chosen at run time may be in any AZ. */
        rc = nerr_set(err, NERR_INVALID,
                      st->by_leader ? "quorum_safe: select: leader chooses its %s when the step "
                                      "runs, in any AZ, so nothing may be down then (down: %s)"
                                    : "quorum_safe: no %s may go down while a fault on a unit "
                                      "chosen at run time (select: leader, any AZ) is held "
                                      "(down: %s)",
                      tname, downs);
        goto out;
    }
    if (st->by_leader) {
        if (!(*hosts = calloc(1, sizeof **hosts)))
            rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    if (st->by_name) {
        for (size_t j = 0; j < st->nnames; j++) {
            size_t found = 0;
            for (size_t i = 0; i < nu; i++) {
                if (!unit_matches(&u[i], st->unit, st->names[j].s))
                    continue;
                found++;
                if (!unit_all_up(w, &u[i])) {
                    rc = nerr_set(err, NERR_INVALID,
                                  "%s %s is already (partly) down at this point (down: %s)", tname,
                                  u[i].name, downs);
                    goto out;
                }
                size_t k;
                for (k = 0; k < npick && pick[k] != i; k++)
                    ;
                if (k == npick)
                    pick[npick++] = i;
            }
            if (!found) {
                rc = nerr_set(err, NERR_INVALID, "%s '%s' is not in the inventory", tname,
                              st->names[j].s);
                goto out;
            }
        }
        if (st->quorum_safe)
            for (size_t k = 0; k < npick; k++) {
                long z = (long)u[pick[k]].az;
                if (daz >= 0 && z != daz) {
                    rc = nerr_set(err, NERR_INVALID,
                                  "quorum_safe: %s would have hosts of AZs %s and %s down at once "
                                  "(down: %s)",
                                  u[pick[k]].name, w->azs[daz], w->azs[z], downs);
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
            rc = nerr_set(err, NERR_NOMEM, "out of memory");
            goto out;
        }
        if (st->quorum_safe) {
            /* Pick an AZ first (the one already down, if any), then units in
             * it: units of two AZs are never down together. */
            size_t *okaz = calloc(w->nazs + 1, sizeof *okaz), nok = 0;
            if (!okaz) {
                free(cand);
                rc = nerr_set(err, NERR_NOMEM, "out of memory");
                goto out;
            }
            for (size_t z = 0; z < w->nazs; z++) {
                size_t have = 0;
                if (daz >= 0 && (long)z != daz)
                    continue;
                for (size_t i = 0; i < nu; i++)
                    have += u[i].az == z && unit_all_up(w, &u[i]);
                if (have >= want)
                    okaz[nok++] = z;
            }
            if (!nok) {
                free(cand);
                free(okaz);
                rc = nerr_set(err, NERR_INVALID,
                              "quorum_safe: no AZ has %zu %s%s up that could go down without "
                              "hosts of a second AZ down (down: %s)",
                              want, tname, want > 1 ? "s" : "", downs);
                goto out;
            }
            size_t z = okaz[fault_world_below(w, nok)];
            free(okaz);
            for (size_t i = 0; i < nu; i++)
                if (u[i].az == z && unit_all_up(w, &u[i]))
                    cand[nc++] = i;
        } else {
            for (size_t i = 0; i < nu; i++)
                if (unit_all_up(w, &u[i]))
                    cand[nc++] = i;
            if (nc < want) {
                free(cand);
                rc = nerr_set(err, NERR_INVALID,
                              "%zu %s%s to take down, but only %zu are up (down: %s)", want, tname,
                              want > 1 ? "s" : "", nc, downs);
                goto out;
            }
        }
        /* Partial Fisher-Yates. */
        for (size_t k = 0; k < want; k++) {
            size_t j = k + (size_t)fault_world_below(w, nc - k);
            size_t t = cand[k];
            cand[k] = cand[j];
            cand[j] = t;
            pick[npick++] = cand[k];
        }
        free(cand);
    }
    if (!(out = calloc(w->inv->n_hosts + 1, sizeof *out))) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t k = 0; k < npick; k++)
        for (size_t i = 0; i < u[pick[k]].nhosts; i++)
            out[nout++] = u[pick[k]].hosts[i];
    qsort(out, nout, sizeof *out, cmp_size);
    *hosts = out;
    *nhosts = nout;
out:
    free(pick);
    units_free(u, nu);
    return rc;
}

int fault_targets_heal(struct fault_world *w, const struct fault_targets *st, unsigned char id,
                       size_t **hosts, size_t *nhosts, int *runtime, struct nerr *err)
{
    size_t *out = calloc(w->inv->n_hosts + 1, sizeof *out), nout = 0;
    *hosts = NULL;
    *nhosts = 0;
    *runtime = 0;
    if (!out)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    if (st->nnames && id && w->runtime_held == id) {
        free(out);
        return nerr_set(err, NERR_INVALID,
                        "this kind holds a unit chosen at run time (select: leader): heal it "
                        "without names");
    }
    if (!st->nnames) {
        if (id && w->runtime_held == id) {
            *runtime = 1;
            w->runtime_held = 0;
        }
        for (size_t h = 0; h < w->inv->n_hosts; h++)
            if (w->down[h] == id) {
                out[nout++] = h;
                w->down[h] = 0;
            }
        *hosts = out;
        *nhosts = nout;
        return 0;
    }
    struct unit *u = NULL;
    size_t nu = 0;
    int rc = units_of(w, st->unit, &u, &nu);
    if (rc) {
        free(out);
        return nerr_set(err, rc, "out of memory");
    }
    for (size_t j = 0; j < st->nnames && !rc; j++) {
        size_t found = 0;
        for (size_t i = 0; i < nu && !rc; i++) {
            if (!unit_matches(&u[i], st->unit, st->names[j].s))
                continue;
            found++;
            for (size_t k = 0; k < u[i].nhosts; k++) {
                size_t h = u[i].hosts[k];
                if (w->down[h] != id) {
                    /* power's heal is power_on: "off" is its word */
                    const char *kn = id && id <= fault_kind_count() ? fault_kinds[id - 1]->name : "?";
                    if (!strcmp(kn, "power"))
                        rc = nerr_set(err, NERR_INVALID, "host %s is not off at this point",
                                      w->inv->hosts[h].name);
                    else
                        rc = nerr_set(err, NERR_INVALID, "host %s is not held by %s at this point",
                                      w->inv->hosts[h].name, kn);
                    break;
                }
                w->down[h] = 0;
                out[nout++] = h;
            }
        }
        if (!found && !rc)
            rc = nerr_set(err, NERR_INVALID, "%s '%s' is not in the inventory",
                          fault_unit_name(st->unit), st->names[j].s);
    }
    qsort(out, nout, sizeof *out, cmp_size);
    units_free(u, nu);
    *hosts = out;
    *nhosts = nout;
    return rc;
}
