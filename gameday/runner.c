/*
 * gameday/runner.c — the game-day runner's stages in order (contract in
 * gameday.h; the run's state and the other stages' files in run.h): set-up
 * (playbook, inventory, plan), deploy, traffic, the steps, heal-all, stop
 * the traffic, verify, report.
 */
#include "gameday/run.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gameday/report_html.h"
#include "lib/clock.h"
#include "proto/ddb.h"

void gd_fmt(char *buf, size_t cap, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, cap, f, ap);
    va_end(ap);
}

double gd_secs(uint64_t ns)
{
    return (double)ns / 1e9;
}

/* Cancelled by the user (a signal), as opposed to stopped by a stop
 * condition: only the former skips the verification. */
static int user_cancelled(const struct gd_run *g)
{
    return g->o->cancel && *g->o->cancel;
}

int gd_cancelled(const struct gd_run *g)
{
    return user_cancelled(g) || atomic_load(&g->stopped);
}

/* ---- progress ---- */

void gd_progress(struct gd_run *g, int force)
{
    FILE *f = g->o->progress;
    uint64_t now = clock_mono_ns();
    uint64_t every = g->o->progress_tty ? NS_PER_S : 10 * NS_PER_S;
    if (!f || (!force && now - g->last_prog_ns < every))
        return;
    pthread_mutex_lock(&g->mu);
    uint64_t ops = g->total_ok + g->total_err, errs = g->total_err;
    pthread_mutex_unlock(&g->mu);
    double dt = g->last_prog_ns ? gd_secs(now - g->last_prog_ns) : 0;
    double rate = dt > 0 ? (double)(ops - g->last_prog_ops) / dt : 0;
    g->last_prog_ns = now;
    g->last_prog_ops = ops;
    int cur = atomic_load(&g->cur);
    char what[120];
    if (cur >= 0 && (size_t)cur < g->plan->n)
        gd_fmt(what, sizeof what, "step %d/%zu %s", cur + 1, g->plan->n, g->plan->a[cur].label);
    else
        gd_fmt(what, sizeof what, "%s", cur < 0 ? "setting up" : "verifying");
    fprintf(f, "%s%s | %.0f ops/s | %llu errors | %.0fs elapsed%s",
            g->o->progress_tty ? "\r\033[K" : "", what, rate, (unsigned long long)errs,
            gd_secs(now - g->t0), g->o->progress_tty ? "" : "\n");
    fflush(f);
    g->prog_dirty = g->o->progress_tty;
}

/* Ends the live line before something else is printed. */
void gd_progress_break(struct gd_run *g)
{
    if (g->prog_dirty && g->o->progress) {
        fputc('\n', g->o->progress);
        g->prog_dirty = 0;
    }
}

void gd_note(struct gd_run *g, const char *fmt, ...)
{
    if (!g->o->progress)
        return;
    gd_progress_break(g);
    va_list ap;
    va_start(ap, fmt);
    fprintf(g->o->progress, "[%6.1fs] ", gd_secs(clock_mono_ns() - g->t0));
    vfprintf(g->o->progress, fmt, ap);
    fputc('\n', g->o->progress);
    va_end(ap);
}

int gd_sleep_until(struct gd_run *g, uint64_t until)
{
    for (;;) {
        if (gd_cancelled(g))
            return NERR_CLOSED;
        uint64_t now = clock_mono_ns();
        if (now >= until)
            return 0;
        uint64_t d = until - now;
        if (d > 100000000u)
            d = 100000000u;
        struct timespec ts = {0, (long)d};
        nanosleep(&ts, NULL);
        gd_progress(g, 0);
    }
}

/* ---- the fault kinds' view of the runner ---- */

static void fault_note(void *arg, const char *msg)
{
    gd_note(arg, "%s", msg);
}

static void fault_host_changed(void *arg, const struct inv_host *h)
{
    gd_host_changed(arg, h);
}

int gd_node_client(const struct gd_run *g, size_t i, struct ddb_client **out, struct nerr *err)
{
    char url[300];
    gd_fmt(url, sizeof url, "http://%s", g->conf->nodes[i].api);
    struct ddb_client_options co = {.endpoint = url,
                                    .access_key_id = g->conf->access_key_id,
                                    .secret_access_key = g->conf->secret_access_key,
                                    .timeout_ms = 5000};
    return ddb_client_new(&co, out, err);
}

/* NinesAdmin.Catalog from the first node that answers. */
static char *fault_catalog(void *arg)
{
    struct gd_run *g = arg;
    for (size_t i = 0; g->conf && i < g->conf->nnodes; i++) {
        struct ddb_client *cl = NULL;
        struct nerr e = {0};
        json_t *req = json_object(), *resp = NULL;
        int status = 0;
        char *text = NULL;
        if (!gd_node_client(g, i, &cl, &e) &&
            !ddb_call(cl, "NinesAdmin.Catalog", req, &status, &resp, &e) && status == 200 &&
            json_is_array(json_object_get(resp, "tables")))
            text = json_dumps(resp, JSON_COMPACT);
        json_decref(req);
        json_decref(resp);
        ddb_client_free(cl);
        if (text)
            return text;
    }
    return NULL;
}

/* ---- the fault journal ----
 *
 * Which fault kinds may have left something on this inventory's hosts: a
 * line per kind, appended (and fsync'd) before its first inject, removed
 * once a run has healed every kind it lists. A run that was killed outright
 * leaves it behind, and the next run on the same inventory heals those
 * kinds before it deploys. Only the kinds in the journal or injected by this
 * run are swept at the end: a kind's heal_all visits every host (SSH), too
 * slow to do for kinds that were never used. The file is
 * $NINES_GAMEDAY_STATE_DIR (else /var/lib/nines/gameday, else /tmp)
 * /faults-HASH, HASH of the inventory's real path: it must outlive this
 * process and this machine's reboot, unlike the lock. */
static void journal_path(struct gd_run *g, char *out, size_t cap)
{
    if (g->journal[0]) { /* computed once per run (realpath, mkdir) */
        gd_fmt(out, cap, "%s", g->journal);
        return;
    }
    const char *inv = g->o->inventory ? g->o->inventory : g->pb->inventory;
    char *real = inv ? realpath(inv, NULL) : NULL;
    const char *key = real ? real : inv ? inv : "";
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *c = key; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ull;
    free(real);
    const char *dir = getenv("NINES_GAMEDAY_STATE_DIR");
    if (!dir || !*dir) {
        dir = "/var/lib/nines/gameday";
        if (mkdir("/var/lib/nines", 0755) && errno != EEXIST)
            dir = "/tmp";
        else if (mkdir(dir, 0755) && errno != EEXIST)
            dir = "/tmp";
    }
    gd_fmt(g->journal, sizeof g->journal, "%s/faults-%016llx", dir, (unsigned long long)h);
    gd_fmt(out, cap, "%s", g->journal);
}

static unsigned journal_kinds(struct gd_run *g)
{
    char path[PATH_MAX], line[128];
    unsigned mask = 0;
    journal_path(g, path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        for (size_t k = 0; fault_kinds[k]; k++)
            if (!strcmp(fault_kinds[k]->name, line))
                mask |= 1u << k;
    }
    fclose(f);
    return mask;
}

static void journal_add(struct gd_run *g, const struct fault_kind *kind)
{
    unsigned bit = 1u << (fault_kind_id(kind) - 1);
    if (g->journaled & bit)
        return;
    char path[PATH_MAX];
    journal_path(g, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        gd_note(g, "fault journal %s: %s (a killed run could not be healed by the next)", path,
                strerror(errno));
        return;
    }
    char line[128];
    int n = snprintf(line, sizeof line, "%s\n", kind->name);
    if (write(fd, line, (size_t)n) != n || fsync(fd))
        gd_note(g, "fault journal %s: %s", path, strerror(errno));
    close(fd);
    g->journaled |= bit;
}

/* Every fault kind in mask heals what it left, the last registered first. */
static void heal_kinds(struct gd_run *g, unsigned mask)
{
    for (size_t k = fault_kind_count(); k-- > 0;)
        if ((mask & (1u << k)) && fault_kinds[k]->heal_all && g->fenv.inv)
            fault_kinds[k]->heal_all(g->fstate[k], &g->fenv);
}

/* Whatever happened: what this run injected and what the journal lists is
 * healed, and the journal goes. */
static void heal_all(struct gd_run *g)
{
    heal_kinds(g, g->journaled | journal_kinds(g));
    char path[PATH_MAX];
    journal_path(g, path, sizeof path);
    if (unlink(path) && errno != ENOENT)
        gd_note(g, "fault journal %s: %s", path, strerror(errno));
    g->journaled = 0;
}

/* At the start: what a run that was killed left behind. */
static void heal_leftovers(struct gd_run *g)
{
    unsigned mask = journal_kinds(g);
    if (!mask)
        return;
    char names[256];
    size_t o = 0;
    names[0] = 0;
    for (size_t k = 0; fault_kinds[k] && o < sizeof names; k++)
        if (mask & (1u << k))
            o += (size_t)snprintf(names + o, sizeof names - o, "%s%s", o ? ", " : "",
                                  fault_kinds[k]->name);
    gd_note(g, "an earlier run on this inventory did not finish: healing %s first", names);
    heal_all(g);
}

/* ---- steps ---- */

/* Gives the action the hosts it hits now (fault/targets.h "Run-time
 * targets"): a select: leader inject resolves its unit from the cluster's
 * status; a heal of such a fault adds the hosts that inject chose. The
 * hosts are written into the plan (under g->mu: the observers read them),
 * so the report, the expectations and the heal all see them. */
static int resolve_runtime(struct gd_run *g, struct pb_action *a, uint64_t deadline,
                           struct nerr *err)
{
    size_t *hosts = NULL, n = 0;
    if (a->kind == PB_INJECT && a->runtime) {
        char leader[128];
        int rc = gd_leader_unit(g, a->runtime, deadline, &hosts, &n, leader, sizeof leader, err);
        if (rc)
            return rc;
        gd_note(g, "step %d: the leader of %s partition %d is node %s", a->index,
                a->runtime->table ? a->runtime->table : g->pb->traffic.table,
                a->runtime->partition, leader);
        struct fault_call call = {.hosts = hosts, .nhosts = n, .params = a->params};
        if (a->fault->check && (rc = a->fault->check(g->inv, &call, err))) {
            free(hosts);
            return rc;
        }
    } else if (a->kind == PB_HEAL && a->heals_runtime) {
        const struct pb_action *in = &g->plan->a[a->heals_runtime - 1];
        if (!(hosts = calloc(a->nhosts + in->nhosts + 1, sizeof *hosts)))
            return nerr_set(err, NERR_NOMEM, "out of memory");
        for (size_t i = 0; i < a->nhosts + in->nhosts; i++) {
            size_t h = i < a->nhosts ? a->hosts[i] : in->hosts[i - a->nhosts], k;
            for (k = 0; k < n && hosts[k] != h; k++)
                ;
            if (k == n)
                hosts[n++] = h;
        }
        for (size_t i = 1; i < n; i++) /* ascending, as the kinds expect */
            for (size_t j = i; j > 0 && hosts[j - 1] > hosts[j]; j--) {
                size_t t = hosts[j];
                hosts[j] = hosts[j - 1];
                hosts[j - 1] = t;
            }
    } else {
        return 0;
    }
    pthread_mutex_lock(&g->mu);
    free(a->hosts);
    a->hosts = hosts;
    a->nhosts = n;
    pthread_mutex_unlock(&g->mu);
    return 0;
}

/* expect.leader_moves of a select: leader step: polls the cluster's status
 * until a host the step did not hit leads the partition, bounded by the
 * expectation and the step's hold; the time goes to r (judged with the
 * other expectations, gameday/observe.c). */
static void watch_leader(struct gd_run *g, const struct pb_action *a, struct step_rec *r)
{
    const char *table = a->runtime->table ? a->runtime->table : g->pb->traffic.table;
    uint64_t until = r->off_ns + a->expect->leader_moves_ns;
    if (a->hold_ns && r->off_ns + a->hold_ns < until)
        until = r->off_ns + a->hold_ns;
    for (;;) {
        char leader[64];
        long h;
        int hit = 0;
        if (gd_leader_now(g, table, a->runtime->partition, leader, sizeof leader, &h) > 0 &&
            h >= 0) {
            for (size_t i = 0; i < a->nhosts; i++)
                hit |= a->hosts[i] == (size_t)h;
            if (!hit) {
                uint64_t now = clock_mono_ns();
                pthread_mutex_lock(&g->mu);
                r->leader_moved_ns = now;
                snprintf(r->new_leader, sizeof r->new_leader, "%s", leader);
                pthread_mutex_unlock(&g->mu);
                gd_note(g, "step %d: node %s leads %s partition %d, %.1fs after the fault",
                        a->index, leader, table, a->runtime->partition, gd_secs(now - r->off_ns));
                return;
            }
        }
        uint64_t now = clock_mono_ns();
        if (now >= until || gd_sleep_until(g, now + 250000000u < until ? now + 250000000u : until))
            return;
    }
}

static int run_action(struct gd_run *g, size_t idx, struct nerr *err)
{
    struct pb_action *a = &g->plan->a[idx];
    struct step_rec *r = &g->rec[idx];
    uint64_t deadline = clock_mono_ns() + a->timeout_ns;
    char what[512];
    int rc = resolve_runtime(g, a, deadline, err);
    if (rc)
        return rc == NERR_CLOSED ? nerr_set(err, NERR_CLOSED, "%s",
                                            atomic_load(&g->stopped) ? "stopped" : "cancelled")
                                 : rc;
    pb_action_what(a, g->inv, what, sizeof what);
    gd_note(g, "step %d/%zu %s %s", a->index, g->plan->n, a->label, a->fault ? what : "");
    struct fault_call call = pb_action_call(a);
    void *fs = a->fault ? g->fstate[fault_kind_id(a->fault) - 1] : NULL;
    switch (a->kind) {
    case PB_INJECT:
        journal_add(g, a->fault);
        if ((rc = a->fault->inject(fs, &g->fenv, &call, err)))
            break;
        pthread_mutex_lock(&g->mu);
        r->off_ns = clock_mono_ns();
        pthread_mutex_unlock(&g->mu);
        if (a->runtime && a->expect && a->expect->leader_moves_ns)
            watch_leader(g, a, r);
        if (a->hold_ns) {
            if ((rc = gd_sleep_until(g, r->off_ns + a->hold_ns)))
                break;
            rc = a->fault->heal(fs, &g->fenv, &call, err);
        }
        break;
    case PB_HEAL:
        rc = a->fault->heal(fs, &g->fenv, &call, err);
        break;
    case PB_SLEEP:
        rc = gd_sleep_until(g, clock_mono_ns() + a->hold_ns);
        break;
    case PB_WAIT_HEALTHY: {
        struct health h;
        rc = gd_wait_for(g, a->timeout_ns, gd_all_up_and_live, NULL, &h, NULL, err);
        break;
    }
    default:
        break;
    }
    if (rc == NERR_CLOSED || (rc && atomic_load(&g->stopped)))
        return nerr_set(err, NERR_CLOSED, "%s", atomic_load(&g->stopped) ? "stopped" : "cancelled");
    if (!rc && clock_mono_ns() > deadline)
        rc = nerr_set(err, NERR_TIMEOUT, "step overran its timeout of %.1fs",
                      gd_secs(a->timeout_ns));
    return rc;
}

/* ---- the run ---- */

static void find_ninesd(struct gd_run *g)
{
    if (g->o->ninesd) {
        gd_fmt(g->ninesd, sizeof g->ninesd, "%s", g->o->ninesd);
        return;
    }
    if (g->pb->ninesd) {
        gd_fmt(g->ninesd, sizeof g->ninesd, "%s", g->pb->ninesd);
        return;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        gd_fmt(g->ninesd, sizeof g->ninesd, "ninesd");
        return;
    }
    self[n] = 0;
    char *sl = strrchr(self, '/');
    if (sl)
        *sl = 0;
    gd_fmt(g->ninesd, sizeof g->ninesd, "%s/ninesd", self);
    if (access(g->ninesd, X_OK)) /* a test binary in build/t: the daemon is in build/bin */
        gd_fmt(g->ninesd, sizeof g->ninesd, "%s/../bin/ninesd", self);
}

static int setup(struct gd_run *g, struct nerr *err)
{
    const struct gd_opts *o = g->o;
    struct pb_errors errs = {0};
    int rc;
    if ((rc = playbook_load(o->playbook, NULL, 0, NULL, &g->pb, &errs, err)))
        goto out;
    const char *invp = o->inventory ? o->inventory : g->pb->inventory;
    if (!invp) {
        rc = nerr_set(err, NERR_INVALID, "%s: no inventory (give --inventory FILE)", o->playbook);
        goto out;
    }
    if ((rc = inventory_load(invp, &g->inv, err)) ||
        (rc = playbook_check_inventory(g->pb, g->inv, NULL, err)) ||
        (rc = playbook_plan(g->pb, g->inv, o->seed, &g->plan, err)))
        goto out;
    if (o->report_dir)
        gd_fmt(g->dir, sizeof g->dir, "%s", o->report_dir);
    else
        gd_fmt(g->dir, sizeof g->dir, "gameday-%s-%llu", g->pb->name, (unsigned long long)o->seed);
    if (mkdir(g->dir, 0755) && errno != EEXIST) {
        rc = nerr_sys(err, errno, "%s", g->dir);
        goto out;
    }
    if (!(g->rec = calloc(g->plan->n + 1, sizeof *g->rec))) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < g->plan->n; i++) {
        if (!(g->rec[i].lat = malloc(sizeof *g->rec[i].lat))) {
            rc = nerr_set(err, NERR_NOMEM, "out of memory");
            goto out;
        }
        hist_init(g->rec[i].lat);
    }
    find_ninesd(g);
    if ((rc = ssh_pool_new(8, 30000, &g->pool, err)))
        goto out;
    g->fenv = (struct fault_env){
        .inv = g->inv,
        .note = fault_note,
        .host_changed = fault_host_changed,
        .catalog = fault_catalog,
        .arg = g};
    if (fault_kind_count() > GD_MAX_FAULT_KINDS) {
        rc = nerr_set(err, NERR_LIMIT, "more than %d fault kinds", GD_MAX_FAULT_KINDS);
        goto out;
    }
    for (size_t k = 0; fault_kinds[k]; k++)
        if (fault_kinds[k]->open && (rc = fault_kinds[k]->open(&g->fenv, &g->fstate[k], err)))
            goto out;
out:
    pb_errors_free(&errs);
    return rc;
}

int gameday_run(const struct gd_opts *o, int *passed, struct nerr *err)
{
    struct gd_run g_, *g = &g_;
    memset(g, 0, sizeof *g);
    g->o = o;
    g->t0 = clock_mono_ns();
    g->t0_wall_ms = clock_wall_ms();
    atomic_init(&g->cur, -1);
    atomic_init(&g->traffic_done, 0);
    atomic_init(&g->stopped, 0);
    pthread_mutex_init(&g->mu, NULL);
    pthread_mutex_init(&g->obs_mu, NULL);
    g->expectations = json_array();
    *passed = 0;
    int rc = setup(g, err), run_rc = 0, steady_ok = 1, expect_ok = 1;
    if (rc)
        goto out;
    g->naz = inventory_azs(g->inv, g->az, GD_MAX_AZS);
    gd_note(g, "game day %s: seed %llu, %zu steps, report in %s", g->pb->name,
            (unsigned long long)g->plan->seed, g->plan->n, g->dir);
    /* A run that was killed (SIGKILL, a power cut of this machine) left its
     * faults in place: the kinds its journal lists heal first. */
    heal_leftovers(g);
    struct nerr e = {0};
    if ((run_rc = gd_deploy(g, &e)) ||
        (g->pb->traffic.enabled && (run_rc = gd_start_traffic(g, &e))) ||
        (run_rc = gd_obs_start(g, &e))) {
        gd_fmt(g->failure, sizeof g->failure, "set-up: %s", e.msg);
        goto cleanup;
    }
    if (!(steady_ok = gd_obs_steady(g, "steady_state_before", g->expectations))) {
        gd_fmt(g->failure, sizeof g->failure,
               "the steady state did not hold before the first fault: nothing was injected");
        goto cleanup;
    }
    for (size_t i = 0; i < g->plan->n; i++) {
        if (atomic_load(&g->stopped) || user_cancelled(g))
            break;
        struct step_rec *r = &g->rec[i];
        r->start_ns = clock_mono_ns();
        atomic_store(&g->cur, (int)i);
        nerr_clear(&e);
        int src = run_action(g, i, &e);
        r->end_ns = clock_mono_ns();
        r->done = 1;
        if (src) {
            r->failed = 1;
            gd_fmt(r->error, sizeof r->error, "%s", e.msg);
            g->steps_failed++;
            if (user_cancelled(g))
                gd_fmt(g->failure, sizeof g->failure, "cancelled");
            else
                gd_fmt(g->failure, sizeof g->failure, "step %d (%s): %s", g->plan->a[i].index,
                       g->plan->a[i].label, e.msg);
            gd_note(g, "step %d failed: %s", g->plan->a[i].index, e.msg);
            break;
        }
    }
    atomic_store(&g->cur, (int)g->plan->n);
    if (atomic_load(&g->stopped)) {
        gd_note(g, "STOPPED: %s", g->stop_reason);
        gd_fmt(g->failure, sizeof g->failure, "stopped: %s", g->stop_reason);
    }
cleanup:
    heal_all(g);
    if (g->obs && !user_cancelled(g) && steady_ok) {
        /* The expectations first (their windows close), then the steady
         * state must hold again: both while the canaries and traffic run. */
        atomic_store(&g->stopped, 0); /* the judging waits must not be cut short */
        expect_ok = gd_obs_expectations(g, g->expectations);
        if (!g->failure[0] && !gd_obs_steady(g, "steady_state_after", g->expectations))
            steady_ok = 0;
        if (g->stop_reason[0])
            atomic_store(&g->stopped, 1);
    }
    gd_obs_stop(g);
    gd_stop_traffic(g);
    if (g->thr_started && g->load_rc && !g->failure[0])
        gd_fmt(g->failure, sizeof g->failure, "traffic: %s", g->load_err.msg);
    if (g->conf && !user_cancelled(g)) {
        int ok1 = 1, ok2 = 1, ok3 = 1, ok4 = 1;
        g->verify = json_object();
        if (g->pb->verify.checkers && g->thr_started)
            json_object_set_new(g->verify, "checkers", gd_verify_checkers(g, &ok1));
        if (g->pb->verify.replicas)
            json_object_set_new(g->verify, "replicas",
                                gd_verify_status(g, gd_fully_replicated,
                                                 "every partition has all its replicas healthy",
                                                 &ok2));
        if (g->pb->verify.caught_up)
            json_object_set_new(g->verify, "caught_up",
                                gd_verify_status(g, gd_caught_up,
                                                 "every replica applied its leader's commit",
                                                 &ok3));
        /* Last: the markers wait for every replica, so a scrub after the
         * replicas caught up compares them all. */
        if (g->pb->verify.scrub)
            json_object_set_new(g->verify, "scrub", gd_verify_scrub(g, &ok4));
        g->verified = ok1 && ok2 && ok3 && ok4;
    }
    if (g->pb->deploy && g->conf)
        gd_collect_logs(g);
    if (user_cancelled(g) && !g->failure[0])
        gd_fmt(g->failure, sizeof g->failure, "cancelled");
    if (!g->failure[0] && !steady_ok)
        gd_fmt(g->failure, sizeof g->failure, "the steady state did not hold again at the end");
    {
        int ok = g->verified && !g->steps_failed && !g->failure[0] && steady_ok && expect_ok;
        json_t *rep = gd_report_json(g, ok, gd_secs(clock_mono_ns() - g->t0));
        char path[PATH_MAX + 16];
        gd_fmt(path, sizeof path, "%s/report.json", g->dir);
        gd_progress_break(g);
        if (!rep)
            rc = nerr_set(err, NERR_NOMEM, "cannot build the report (out of memory?)");
        else if (json_dump_file(rep, path, JSON_INDENT(2) | JSON_SORT_KEYS))
            rc = nerr_set(err, NERR_IO, "cannot write %s", path);
        else {
            struct nerr he = {0};
            gd_fmt(path, sizeof path, "%s/report.html", g->dir);
            if (gd_report_html(rep, path, &he))
                gd_note(g, "report.html not written: %s", he.msg);
        }
        if (o->out)
            gd_print_summary(g, ok, o->out);
        json_decref(rep);
        *passed = ok;
    }
    if (!rc && user_cancelled(g))
        rc = nerr_set(err, NERR_CLOSED, "cancelled");
out:
    if (g->thr_started == 1)
        gd_stop_traffic(g);
    if (g->rec)
        for (size_t i = 0; i < g->plan->n; i++)
            free(g->rec[i].lat);
    free(g->rec);
    free(g->node_host);
    gd_obs_free(g);
    free(g->ep_az);
    json_decref(g->expectations);
    json_decref(g->verify);
    if (g->conf)
        cluster_conf_free(g->conf);
    load_opts_free(&g->lo);
    for (size_t k = fault_kind_count(); k-- > 0;)
        if (g->fstate[k] && fault_kinds[k]->close)
            fault_kinds[k]->close(g->fstate[k]);
    ssh_pool_free(g->pool);
    pb_plan_free(g->plan);
    inventory_free(g->inv);
    playbook_free(g->pb);
    pthread_mutex_destroy(&g->mu);
    pthread_mutex_destroy(&g->obs_mu);
    return rc;
}
