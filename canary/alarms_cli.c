/*
 * `nines alarms run|backtest|lint --rules FILE` — the customer-facing-alarm
 * evaluator (cfa.h) wired to PostgreSQL, Alertmanager and a command hook.
 *
 * run: every evaluate_every, reads the canary_samples rows inserted since the
 * last read (a 30 s overlap, deduplicated by id, covers COPY transactions
 * that commit after a later one started), evaluates, records each state
 * change in alarm_transitions, pushes firing and resolved alerts to
 * Alertmanager (firing ones again every resend_every; a failed push is
 * retried at the next evaluation) and runs the hook. Starts from the rows of
 * the longest window, so a restart re-derives the conditions; the alarms'
 * states themselves (firing since, last sent) are kept in alarm_state
 * (written on every state change and push) and restored at start, so an
 * evaluator restarted after the condition ended sends the resolve that its
 * predecessor never could, instead of leaving the alert to expire. With a
 * `source: server` rule it also reads server_samples; several canaries
 * scrape the same node, so one row per (interval, endpoint, table,
 * operation) counts and the others are ignored. SIGTERM/SIGINT stop it;
 * firing alerts then expire in Alertmanager after 4 x resend_every unless
 * a restarted evaluator takes them over.
 *
 * Windows end at the data's time, not the wall clock's: at the end of the
 * newest interval every recently heard canary has closed (eval_time).
 *
 * backtest: loads the rows of [from - longest window, to), evaluates at
 * every evaluate_every step from `from` to `to`, prints each state change;
 * writes nothing. Times: RFC 3339 UTC ("2026-11-21T07:00:00Z"), "@EPOCH",
 * "now" or "now-90m" (units s, m, h, d).
 *
 * lint: parses the rules (environment expanded), prints a summary, exit 1
 * with FILE:LINE:COL on the first error.
 */
#include <getopt.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "canary/alertmgr.h"
#include "canary/cfa.h"
#include "canary/pgsink.h"
#include "canary/rules.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "lib/proc.h"
#include "net/http.h"

int alarms_main(int argc, char **argv);

#define OVERLAP_US 30000000ll
#define MAX_HOOKS 16

static void usage(FILE *f)
{
    fprintf(f, "usage: nines alarms run --rules FILE\n"
               "       nines alarms backtest --rules FILE --from T --to T\n"
               "       nines alarms lint --rules FILE\n"
               "T: 2026-11-21T07:00:00Z, @EPOCH_SECONDS, now, now-90m. See docs/canary.md.\n");
}

static int parse_time(const char *s, int64_t now, int64_t *out)
{
    if (!strncmp(s, "now", 3)) {
        if (!s[3]) {
            *out = now;
            return 0;
        }
        char *end;
        double v = strtod(s + 4, &end);
        int64_t mul = *end == 's' ? 1000 : *end == 'm' ? 60000 : *end == 'h' ? 3600000
                      : *end == 'd' ? 86400000 : 0;
        if (s[3] != '-' || !mul || end[1] || v < 0)
            return -1;
        *out = now - (int64_t)(v * (double)mul);
        return 0;
    }
    if (s[0] == '@') {
        char *end;
        double v = strtod(s + 1, &end);
        if (*end || end == s + 1)
            return -1;
        *out = (int64_t)(v * 1000);
        return 0;
    }
    struct tm tm = {0};
    const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest || (*rest && strcmp(rest, "Z")))
        return -1;
    *out = (int64_t)timegm(&tm) * 1000;
    return 0;
}

/* ---- loading samples --------------------------------------------------------- */

/* Keys (interval start, endpoint, table, op) of the server rows taken, so
 * that the copies other canaries scraped are skipped: open addressing over
 * 64-bit hashes (0 = empty), rebuilt without old entries when half full. */
struct seen {
    uint64_t *h;
    int64_t *ts;
    size_t cap, n;
    int64_t keep_from;
};

/* How far each canary's samples are complete: the end of the newest
 * interval a canary AZ wrote (a canary writes an interval's rows together,
 * once no probe due in it can still run). */
#define MAX_SOURCES 64
struct source {
    char az[64];
    int64_t end_ms;
};

struct loader {
    int server; /* server_samples rows (deduplicated by key) */
    int64_t cursor_us;
    int64_t *prev, *cur; /* ids seen in the overlap window, sorted */
    size_t nprev, ncur, capprev, capcur;
    uint64_t rows;
    struct seen seen;
    struct source src[MAX_SOURCES]; /* canary_samples rows only */
    size_t nsrc;
};

static void source_seen(struct loader *ld, const char *az, int64_t end_ms)
{
    size_t i;
    for (i = 0; i < ld->nsrc && strcmp(ld->src[i].az, az); i++)
        ;
    if (i == ld->nsrc) {
        if (ld->nsrc == MAX_SOURCES || strlen(az) >= sizeof ld->src[0].az)
            return; /* not followed: eval_time then only errs towards now */
        snprintf(ld->src[i].az, sizeof ld->src[i].az, "%s", az);
        ld->src[i].end_ms = end_ms;
        ld->nsrc++;
    } else if (end_ms > ld->src[i].end_ms) {
        ld->src[i].end_ms = end_ms;
    }
}

/* When the run loop evaluates: at the end of the newest interval that every
 * canary heard from within DATA_LAG_MAX_MS has closed, so that no window
 * ends in seconds whose samples are still on their way. A canary waiting
 * on a hanging endpoint (a paused or partitioned node: each probe waits out
 * its attempts) closes its intervals seconds late; a window of a few
 * seconds ending at the wall clock would then hold none of them, its
 * condition would be unknown, and the gray failure would never fire.
 * Never past now, never backwards; now when no canary is that recent (a
 * silent fleet must still be able to raise the blind alarm). */
#define DATA_LAG_MAX_MS 30000
static int64_t eval_time(const struct loader *ld, int64_t now, int64_t last)
{
    int64_t t = INT64_MAX;
    for (size_t i = 0; i < ld->nsrc; i++)
        if (ld->src[i].end_ms >= now - DATA_LAG_MAX_MS && ld->src[i].end_ms < t)
            t = ld->src[i].end_ms;
    if (t > now)
        t = now;
    return t < last ? last : t;
}

static uint64_t key_hash(int64_t ts, const char *a, const char *b, const char *c)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)ts;
    const char *parts[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        for (const char *p = parts[i]; *p; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull; /* separator: "ab"+"c" != "a"+"bc" */
    }
    return h ? h : 1;
}

static void seen_put(struct seen *s, uint64_t h, int64_t ts)
{
    size_t i = (size_t)h & (s->cap - 1);
    while (s->h[i])
        i = (i + 1) & (s->cap - 1);
    s->h[i] = h;
    s->ts[i] = ts;
    s->n++;
}

/* 1: new key (now remembered), 0: seen before, -1: out of memory. */
static int seen_add(struct seen *s, uint64_t h, int64_t ts)
{
    if (s->cap) {
        for (size_t i = (size_t)h & (s->cap - 1); s->h[i]; i = (i + 1) & (s->cap - 1))
            if (s->h[i] == h)
                return 0;
    }
    if ((s->n + 1) * 2 > s->cap) {
        struct seen old = *s;
        size_t live = 0;
        for (size_t i = 0; i < old.cap; i++)
            live += old.h[i] && old.ts[i] >= old.keep_from;
        size_t nc = 1024;
        while (nc < (live + 1) * 4)
            nc *= 2;
        s->h = calloc(nc, sizeof *s->h);
        s->ts = calloc(nc, sizeof *s->ts);
        if (!s->h || !s->ts) {
            free(s->h);
            free(s->ts);
            *s = old;
            return -1;
        }
        s->cap = nc;
        s->n = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.h[i] && old.ts[i] >= old.keep_from)
                seen_put(s, old.h[i], old.ts[i]);
        free(old.h);
        free(old.ts);
    }
    seen_put(s, h, ts);
    return 1;
}

static void loader_free(struct loader *ld)
{
    free(ld->prev);
    free(ld->cur);
    free(ld->seen.h);
    free(ld->seen.ts);
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Runs sql (params $1 $2 $3 as text) and feeds new rows to the engine. */
static int load(PGconn *conn, const char *sql, const char *const *params, int nparams,
                struct cfa_engine *eng, struct loader *ld, struct nerr *err)
{
    PGresult *r = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = nerr_set(err, NERR_IO, "postgres: %s", PQerrorMessage(conn));
        PQclear(r);
        return rc;
    }
    int n = PQntuples(r);
    ld->ncur = 0;
    int64_t maxins = ld->cursor_us;
    for (int i = 0; i < n; i++) {
        int64_t id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
        int64_t ins = strtoll(PQgetvalue(r, i, 10), NULL, 10);
        if (ins > maxins)
            maxins = ins;
        if (ld->ncur == ld->capcur) {
            size_t nc = ld->capcur ? ld->capcur * 2 : 1024;
            int64_t *np = realloc(ld->cur, nc * sizeof *np);
            if (!np) {
                PQclear(r);
                return nerr_set(err, NERR_NOMEM, "out of memory");
            }
            ld->cur = np;
            ld->capcur = nc;
        }
        ld->cur[ld->ncur++] = id;
        if (ld->nprev && bsearch(&id, ld->prev, ld->nprev, sizeof id, cmp_id))
            continue;
        int64_t ts = strtoll(PQgetvalue(r, i, 1), NULL, 10);
        if (ld->server) {
            int fresh = seen_add(&ld->seen,
                                 key_hash(ts, PQgetvalue(r, i, 4), PQgetvalue(r, i, 6),
                                          PQgetvalue(r, i, 7)),
                                 ts);
            if (fresh < 0) {
                PQclear(r);
                return nerr_set(err, NERR_NOMEM, "out of memory");
            }
            if (!fresh)
                continue;
        }
        if (!ld->server)
            source_seen(ld, PQgetvalue(r, i, 3), ts + strtoll(PQgetvalue(r, i, 2), NULL, 10));
        struct cfa_sample s = {
            .ts_ms = ts,
            .interval_ms = strtoll(PQgetvalue(r, i, 2), NULL, 10),
            .canary_az = PQgetvalue(r, i, 3),
            .endpoint = PQgetvalue(r, i, 4),
            .endpoint_az = PQgetvalue(r, i, 5),
            .table = PQgetvalue(r, i, 6),
            .op = PQgetvalue(r, i, 7),
            .attempts = strtoull(PQgetvalue(r, i, 8), NULL, 10),
            .errors = strtoull(PQgetvalue(r, i, 9), NULL, 10),
            .server = ld->server,
        };
        if (cfa_engine_add(eng, &s)) {
            PQclear(r);
            return nerr_set(err, NERR_NOMEM, "out of memory");
        }
        ld->rows++;
    }
    PQclear(r);
    /* The next read's overlap starts 30 s before the new cursor: keep the ids
     * of rows inserted since then. */
    ld->cursor_us = maxins;
    if (ld->ncur)
        qsort(ld->cur, ld->ncur, sizeof *ld->cur, cmp_id);
    int64_t *t = ld->prev;
    size_t tc = ld->capprev;
    ld->prev = ld->cur;
    ld->capprev = ld->capcur;
    ld->nprev = ld->ncur;
    ld->cur = t;
    ld->capcur = tc;
    return 0;
}

#define SELECT_SAMPLES                                                                             \
    "SELECT id, (extract(epoch from ts) * 1000)::int8, interval_ms, canary_az, endpoint,"        \
    " endpoint_az, tbl, op, attempts, attempts - successes,"                                      \
    " (extract(epoch from inserted_at) * 1000000)::int8 FROM canary_samples "
/* The same columns from server_samples (no canary AZ: the node's view). */
#define SELECT_SERVER                                                                              \
    "SELECT id, (extract(epoch from ts) * 1000)::int8, interval_ms, '', endpoint,"               \
    " endpoint_az, tbl, op, requests, errors,"                                                    \
    " (extract(epoch from inserted_at) * 1000000)::int8 FROM server_samples "

static int wants_server(const struct cfa_rules *r)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->rules[i].server)
            return 1;
    return 0;
}

/* ---- events ------------------------------------------------------------------ */

struct runner {
    const struct cfa_rules *rules;
    PGconn *conn;
    struct am_client *am;
    json_t *outbox; /* alerts not yet accepted by Alertmanager */
    int backtest;
    pid_t hooks[MAX_HOOKS];
    int64_t hook_started[MAX_HOOKS];
    uint64_t fired, resolved;
};

static void run_hook(struct runner *rn, const struct cfa_event *e, const char *state)
{
    int slot = -1;
    for (int i = 0; i < MAX_HOOKS && slot < 0; i++)
        if (!rn->hooks[i])
            slot = i;
    if (slot < 0) {
        log_warn("alarms: %d hooks still running; not running another", MAX_HOOKS);
        return;
    }
    char v[64], r[64];
    snprintf(v, sizeof v, "%.6g", e->value);
    snprintf(r, sizeof r, "%.6f", e->error_ratio);
    const char *const names[] = {
        "NINES_ALARM",       "NINES_ALARM_STATE", "NINES_ALARM_SEVERITY",   "NINES_ALARM_WINDOW",
        "NINES_ALARM_GROUP", "NINES_ALARM_VALUE", "NINES_ALARM_ERROR_RATIO"};
    const char *const vals[] = {e->rule->name, state, e->severity, e->window, e->group_key, v, r};
    char *env[8] = {NULL}; /* NULL-terminated "NAME=VALUE" additions */
    int bad = 0;
    for (int i = 0; i < 7 && !bad; i++)
        if (asprintf(&env[i], "%s=%s", names[i], vals[i]) < 0) {
            env[i] = NULL;
            bad = 1;
        }
    char *argv[] = {"/bin/sh", "-c", (char *)rn->rules->hook, NULL};
    struct proc_spec ps = {.argv = argv, .env = env};
    pid_t pid = 0;
    struct nerr err;
    if (bad)
        log_warn("alarms: out of memory for the hook's environment");
    else if (proc_spawn(&ps, &pid, &err))
        log_warn("alarms: the hook could not start: %s", err.msg);
    for (int i = 0; i < 7; i++)
        free(env[i]);
    if (!pid)
        return;
    rn->hooks[slot] = pid;
    rn->hook_started[slot] = clock_wall_ms();
}

static void reap_hooks(struct runner *rn)
{
    for (int i = 0; i < MAX_HOOKS; i++) {
        if (!rn->hooks[i])
            continue;
        int st;
        if (proc_wait(rn->hooks[i], 0, &st, NULL) == 0) {
            if (!WIFEXITED(st) || WEXITSTATUS(st))
                log_warn("alarms: hook exited with status %d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
            rn->hooks[i] = 0;
        } else if (clock_wall_ms() - rn->hook_started[i] > 30000) {
            /* A hook gets 30 s; a hung one must not pile up. */
            proc_kill(rn->hooks[i], NULL, NULL);
            log_warn("alarms: hook still running after 30 s: killed");
            rn->hooks[i] = 0;
        }
    }
}

static void fmt_labels(const struct cfa_event *e, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s severity=%s window=%s %s", e->rule->name, e->severity, e->window,
             e->group_key);
}

/* alarm_state keeps every alarm not OK: one row per (alarm, window,
 * group), upserted on each change and push, deleted on the way back to OK.
 * A failed write is logged; the next change or push writes the row again. */
static void save_state(struct runner *rn, const struct cfa_event *e, int64_t last_sent_ms)
{
    if (!rn->conn)
        return;
    PGresult *r;
    if (e->to == CFA_OK) {
        const char *p[] = {e->rule->name, e->window, e->group_key};
        r = PQexecParams(rn->conn,
                         "DELETE FROM alarm_state WHERE alarm = $1 AND window_spec = $2"
                         " AND group_key = $3",
                         3, NULL, p, NULL, NULL, 0);
    } else {
        char since[32], cond[32], sent[32], val[40], ratio[40], *labels_s = NULL;
        json_t *labels = json_object();
        static const char *const ln[4] = {"table", "endpoint_az", "canary_az", "endpoint"};
        for (int d = 0; d < 4; d++)
            if (e->labels[d])
                json_object_set_new(labels, ln[d], json_string(e->labels[d]));
        labels_s = json_dumps(labels, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(labels);
        snprintf(since, sizeof since, "%" PRId64, e->since_ms);
        snprintf(cond, sizeof cond, "%" PRId64, e->cond_since_ms);
        snprintf(sent, sizeof sent, "%" PRId64, last_sent_ms);
        snprintf(val, sizeof val, "%.17g", e->value);
        snprintf(ratio, sizeof ratio, "%.17g", e->error_ratio);
        const char *p[] = {e->rule->name, e->window, e->group_key, e->severity,
                           labels_s ? labels_s : "{}", cfa_state_name(e->to), since, cond, sent,
                           val, ratio};
        /* last_sent 0 means "not sent by this change": keep the stored one. */
        r = PQexecParams(
            rn->conn,
            "INSERT INTO alarm_state (alarm, window_spec, group_key, severity, labels, state,"
            " since_ms, cond_since_ms, last_sent_ms, value, error_ratio) VALUES ($1, $2, $3, $4,"
            " $5::jsonb, $6, $7, $8, $9, $10, $11) ON CONFLICT (alarm, window_spec, group_key)"
            " DO UPDATE SET severity = EXCLUDED.severity, labels = EXCLUDED.labels,"
            " state = EXCLUDED.state, since_ms = EXCLUDED.since_ms,"
            " cond_since_ms = EXCLUDED.cond_since_ms, last_sent_ms ="
            " greatest(alarm_state.last_sent_ms, EXCLUDED.last_sent_ms),"
            " value = EXCLUDED.value, error_ratio = EXCLUDED.error_ratio, updated_at = now()",
            11, NULL, p, NULL, NULL, 0);
        free(labels_s);
    }
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        log_warn("alarms: saving the alarm state failed: %s", PQerrorMessage(rn->conn));
    PQclear(r);
}

/* Takes over the alarms a previous evaluator left in alarm_state. */
static int restore_state(struct runner *rn, struct cfa_engine *eng, struct nerr *err)
{
    PGresult *r = PQexec(rn->conn, "SELECT alarm, window_spec, group_key, state, since_ms,"
                                   " cond_since_ms, last_sent_ms, labels->>'table',"
                                   " labels->>'endpoint_az', labels->>'canary_az',"
                                   " labels->>'endpoint' FROM alarm_state");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = nerr_set(err, NERR_IO, "postgres: %s", PQerrorMessage(rn->conn));
        PQclear(r);
        return rc;
    }
    int n = PQntuples(r), restored = 0;
    for (int i = 0; i < n; i++) {
        const char *st_s = PQgetvalue(r, i, 3);
        enum cfa_state st = CFA_OK;
        for (int k = CFA_PENDING; k <= CFA_CLEARING; k++)
            if (!strcmp(st_s, cfa_state_name((enum cfa_state)k)))
                st = (enum cfa_state)k;
        const char *labels[4];
        for (int d = 0; d < 4; d++)
            labels[d] = PQgetisnull(r, i, 7 + d) ? NULL : PQgetvalue(r, i, 7 + d);
        int rc = st == CFA_OK ? NERR_INVALID
                              : cfa_engine_restore(eng, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                                                   labels, st, strtoll(PQgetvalue(r, i, 4), NULL, 10),
                                                   strtoll(PQgetvalue(r, i, 5), NULL, 10));
        if (rc == NERR_NOMEM) {
            PQclear(r);
            return nerr_set(err, rc, "out of memory");
        }
        if (rc) {
            /* The rules changed under it: nothing will ever resolve it here. */
            log_warn("alarms: saved state of %s %s %s no longer matches the rules; dropped",
                     PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
            const char *p[] = {PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2)};
            PQclear(PQexecParams(rn->conn,
                                 "DELETE FROM alarm_state WHERE alarm = $1 AND window_spec = $2"
                                 " AND group_key = $3",
                                 3, NULL, p, NULL, NULL, 0));
            continue;
        }
        char since[40], sent[40];
        am_fmt_time(strtoll(PQgetvalue(r, i, 4), NULL, 10), since, sizeof since);
        am_fmt_time(strtoll(PQgetvalue(r, i, 6), NULL, 10), sent, sizeof sent);
        log_info("alarms: resuming %s %s %s: %s since %s, last sent %s", PQgetvalue(r, i, 0),
                 PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), st_s, since, sent);
        restored++;
    }
    PQclear(r);
    if (restored)
        log_info("alarms: %d alarm states restored from postgres", restored);
    return 0;
}

static void on_event(void *arg, const struct cfa_event *e)
{
    struct runner *rn = arg;
    char ts[40], desc[512];
    am_fmt_time(e->at_ms, ts, sizeof ts);
    fmt_labels(e, desc, sizeof desc);
    int fired = e->to == CFA_FIRING && (e->from == CFA_OK || e->from == CFA_PENDING);
    int resolved = e->to == CFA_OK && (e->from == CFA_FIRING || e->from == CFA_CLEARING);
    const char *vname = e->rule->kind == CFA_BURN ? "burn" : e->rule->kind == CFA_THRESHOLD
                                                                 ? "errors"
                                                                 : "silent_s";
    if (rn->backtest) {
        if (fired || resolved)
            printf("%s %-8s %s %s=%.4g error_ratio=%.6f\n", ts, fired ? "FIRING" : "RESOLVED", desc,
                   vname, e->value, e->error_ratio);
        rn->fired += fired;
        rn->resolved += resolved;
        return;
    }
    log_info("alarm %s -> %s: %s %s=%.4g error_ratio=%.6f", cfa_state_name(e->from),
             cfa_state_name(e->to), desc, vname, e->value, e->error_ratio);
    if (rn->conn) {
        char at[40], val[40], ratio[40], *labels_s = NULL;
        json_t *labels = json_object();
        static const char *const ln[4] = {"table", "endpoint_az", "canary_az", "endpoint"};
        for (int d = 0; d < 4; d++)
            if (e->labels[d])
                json_object_set_new(labels, ln[d], json_string(e->labels[d]));
        labels_s = json_dumps(labels, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(labels);
        snprintf(at, sizeof at, "%" PRId64, e->at_ms);
        snprintf(val, sizeof val, "%.17g", e->value);
        snprintf(ratio, sizeof ratio, "%.17g", e->error_ratio);
        const char *p[] = {at, e->rule->name, e->severity, e->window, e->group_key,
                           labels_s ? labels_s : "{}", cfa_state_name(e->from),
                           cfa_state_name(e->to), val, ratio};
        PGresult *r = PQexecParams(
            rn->conn,
            "INSERT INTO alarm_transitions (at, alarm, severity, window_spec, group_key, labels,"
            " from_state, to_state, value, error_ratio) VALUES (to_timestamp($1::float8 / 1000),"
            " $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10)",
            10, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            log_warn("alarms: recording the transition failed: %s", PQerrorMessage(rn->conn));
        PQclear(r);
        free(labels_s);
    }
    if ((fired || resolved) && rn->am && rn->outbox)
        json_array_append_new(rn->outbox, am_alert_json(e, resolved, 4 * rn->rules->resend_ms));
    save_state(rn, e, fired && rn->am ? e->at_ms : 0);
    if ((fired || resolved) && rn->rules->hook)
        run_hook(rn, e, fired ? "firing" : "resolved");
    rn->fired += fired;
    rn->resolved += resolved;
}

static void on_resend(void *arg, const struct cfa_event *e)
{
    struct runner *rn = arg;
    if (!rn->am)
        return;
    json_array_append_new(rn->outbox, am_alert_json(e, 0, 4 * rn->rules->resend_ms));
    save_state(rn, e, e->at_ms);
}

static void flush_outbox(struct runner *rn)
{
    struct nerr err;
    if (!rn->am || !json_array_size(rn->outbox))
        return;
    if (am_push(rn->am, rn->outbox, &err)) {
        log_warn("alarms: %s (will retry)", err.msg);
        /* Bound what waits: the newest alerts describe the present. */
        while (json_array_size(rn->outbox) > 1000)
            json_array_remove(rn->outbox, 0);
        return;
    }
    json_array_clear(rn->outbox);
}

/* ---- commands ------------------------------------------------------------------ */

static PGconn *pg_connect(const char *dsn, struct nerr *err)
{
    const char *keys[] = {"dbname", "connect_timeout", NULL};
    const char *vals[] = {dsn, "5", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(c) != CONNECTION_OK) {
        nerr_set(err, NERR_IO, "postgres: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    if (pgsink_migrate(c, err)) {
        PQfinish(c);
        return NULL;
    }
    return c;
}

static int cmd_lint(const char *path)
{
    struct cfa_rules r;
    struct nerr err;
    if (cfa_rules_load(path, &r, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    printf("%s: ok: %zu alarms, evaluated every %" PRId64 " ms%s%s\n", path, r.n, r.eval_every_ms,
           r.am_url ? ", pushed to " : "", r.am_url ? r.am_url : "");
    for (size_t i = 0; i < r.n; i++) {
        const struct cfa_rule *c = &r.rules[i];
        char a[16], b[16];
        if (c->kind == CFA_BURN) {
            printf("  %s: objective %.4f%%", c->name, c->objective * 100);
            for (int t = 0; t < c->ntiers; t++)
                printf(" [%s/%s %.4gx %s]", cfa_fmt_ms(c->tiers[t].long_ms, a, sizeof a),
                       cfa_fmt_ms(c->tiers[t].short_ms, b, sizeof b), c->tiers[t].factor,
                       c->tiers[t].severity);
            printf("\n");
        } else if (c->kind == CFA_THRESHOLD)
            printf("  %s: >= %" PRIu64 " errors in %d of %d intervals, %s\n", c->name,
                   c->min_errors, c->in, c->of, c->severity);
        else
            printf("  %s: blind after %s, %s\n", c->name, cfa_fmt_ms(c->blind_after_ms, a, sizeof a),
                   c->severity);
    }
    cfa_rules_free(&r);
    return 0;
}

static int cmd_backtest(const char *path, const char *from_s, const char *to_s)
{
    struct cfa_rules r;
    struct cfa_engine *eng = NULL;
    struct loader ld = {0}, sld = {.server = 1};
    struct nerr err;
    int64_t now = clock_wall_ms(), from, to;
    int rc = 1;
    PGconn *conn = NULL;
    if (cfa_rules_load(path, &r, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    if (parse_time(from_s, now, &from) || parse_time(to_s, now, &to) || from >= to) {
        fprintf(stderr, "nines alarms backtest: bad --from/--to (need from < to)\n");
        cfa_rules_free(&r);
        return 2;
    }
    if (!r.pg_dsn) {
        fprintf(stderr, "nines alarms backtest: the rules name no postgres\n");
        goto out;
    }
    if (!(conn = pg_connect(r.pg_dsn, &err)) || cfa_engine_new(&r, &eng, &err)) {
        fprintf(stderr, "nines alarms backtest: %s\n", err.msg);
        goto out;
    }
    char a[32], b[32];
    snprintf(a, sizeof a, "%" PRId64, from - cfa_rules_max_window(&r));
    snprintf(b, sizeof b, "%" PRId64, to);
    const char *p[] = {a, b};
    if (load(conn, SELECT_SAMPLES "WHERE ts >= to_timestamp($1::float8 / 1000)"
                                  " AND ts < to_timestamp($2::float8 / 1000) ORDER BY ts, id",
             p, 2, eng, &ld, &err) ||
        (wants_server(&r) &&
         load(conn, SELECT_SERVER "WHERE ts >= to_timestamp($1::float8 / 1000)"
                                  " AND ts < to_timestamp($2::float8 / 1000) ORDER BY ts, id",
              p, 2, eng, &sld, &err))) {
        fprintf(stderr, "nines alarms backtest: %s\n", err.msg);
        goto out;
    }
    struct runner rn = {.rules = &r, .backtest = 1};
    for (int64_t t = from; t <= to; t += r.eval_every_ms)
        cfa_engine_eval(eng, t, on_event, &rn);
    printf("backtest: %" PRIu64 " samples, %" PRIu64 " fired, %" PRIu64 " resolved\n",
           ld.rows + sld.rows,
           rn.fired, rn.resolved);
    rc = 0;
out:
    loader_free(&ld);
    loader_free(&sld);
    cfa_engine_free(eng);
    if (conn)
        PQfinish(conn);
    cfa_rules_free(&r);
    return rc;
}

static int cmd_run(const char *path)
{
    struct cfa_rules r;
    struct cfa_engine *eng = NULL;
    struct loader ld = {0}, sld = {.server = 1};
    struct nerr err;
    struct runner rn = {0};
    int restored = 0;
    int rc = 1;
    if (cfa_rules_load(path, &r, &err)) {
        fprintf(stderr, "nines alarms: %s\n", err.msg);
        return 2;
    }
    if (!r.pg_dsn) {
        fprintf(stderr, "nines alarms: %s names no postgres\n", path);
        cfa_rules_free(&r);
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    rn.rules = &r;
    rn.outbox = json_array();
    if (cfa_engine_new(&r, &eng, &err) ||
        (r.am_url && am_client_new(r.am_url, &rn.am, &err))) {
        fprintf(stderr, "nines alarms: %s\n", err.msg);
        goto out;
    }
    int64_t maxw = cfa_rules_max_window(&r), last_resend = 0, last_eval = 0;
    int server = wants_server(&r);
    log_info("alarms: %zu rules, evaluating every %" PRId64 " ms, longest window %" PRId64
             " s%s%s",
             r.n, r.eval_every_ms, maxw / 1000, r.am_url ? ", alertmanager " : "",
             r.am_url ? r.am_url : "");
    int warned = 0;
    for (;;) {
        int64_t t0 = clock_wall_ms();
        if (!rn.conn) {
            rn.conn = pg_connect(r.pg_dsn, &err);
            if (!rn.conn && !warned++)
                log_warn("alarms: %s (retrying)", err.msg);
            if (rn.conn && warned) {
                log_info("alarms: connected to postgres");
                warned = 0;
            }
        }
        if (rn.conn && !restored) {
            /* Before any sample: the restored states are what the first
             * evaluation moves on from. */
            if (restore_state(&rn, eng, &err)) {
                log_warn("alarms: restoring the alarm state: %s (reconnecting)", err.msg);
                PQfinish(rn.conn);
                rn.conn = NULL;
            } else
                restored = 1;
        }
        if (rn.conn) {
            char a[32], b[32], c[32];
            snprintf(a, sizeof a, "%" PRId64, ld.cursor_us);
            snprintf(b, sizeof b, "%" PRId64, t0 - maxw);
            snprintf(c, sizeof c, "%" PRId64, sld.cursor_us);
            const char *p[] = {a, b}, *ps[] = {c, b};
            if (load(rn.conn, SELECT_SAMPLES "WHERE inserted_at >= to_timestamp($1::float8 / 1e6)"
                                            " - interval '30 seconds' AND"
                                            " ts >= to_timestamp($2::float8 / 1000) ORDER BY id",
                     p, 2, eng, &ld, &err) ||
                (server &&
                 load(rn.conn, SELECT_SERVER "WHERE inserted_at >= to_timestamp($1::float8 / 1e6)"
                                            " - interval '30 seconds' AND"
                                            " ts >= to_timestamp($2::float8 / 1000) ORDER BY id",
                      ps, 2, eng, &sld, &err))) {
                log_warn("alarms: %s (reconnecting)", err.msg);
                PQfinish(rn.conn);
                rn.conn = NULL;
            }
        }
        int64_t now = clock_wall_ms();
        /* Without fresh data the engine still runs: silence must be able
         * to raise the blind alarm even while PostgreSQL is away. */
        last_eval = eval_time(&ld, now, last_eval);
        cfa_engine_eval(eng, last_eval, on_event, &rn);
        if (now - last_resend >= r.resend_ms) {
            /* Re-send everything firing (Alertmanager dedups by labels). */
            cfa_engine_firing(eng, now, on_resend, &rn);
            last_resend = now;
        }
        flush_outbox(&rn);
        cfa_engine_prune(eng, now - maxw - 60000);
        sld.seen.keep_from = now - maxw - 60000;
        reap_hooks(&rn);
        int64_t left = r.eval_every_ms - (clock_wall_ms() - t0);
        if (left < 10)
            left = 10;
        struct timespec ts = {(time_t)(left / 1000), (long)(left % 1000) * 1000000};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            log_info("alarms: stopping (%" PRIu64 " fired, %" PRIu64 " resolved)", rn.fired,
                     rn.resolved);
            break;
        }
    }
    rc = 0;
out:
    for (int i = 0; i < MAX_HOOKS; i++)
        if (rn.hooks[i])
            waitpid(rn.hooks[i], NULL, 0);
    loader_free(&ld);
    loader_free(&sld);
    json_decref(rn.outbox);
    am_client_free(rn.am);
    cfa_engine_free(eng);
    if (rn.conn)
        PQfinish(rn.conn);
    cfa_rules_free(&r);
    return rc;
}

int alarms_main(int argc, char **argv)
{
    /* Before any thread exists (libcurl's rule for its global init). */
    if (http_global_init()) {
        fprintf(stderr, "nines %s: cannot initialise libcurl\n", "alarms");
        return 1;
    }
    static const struct option opts[] = {{"rules", required_argument, 0, 'r'},
                                         {"from", required_argument, 0, 'f'},
                                         {"to", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *rules = NULL, *from = NULL, *to = NULL;
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h")) {
        usage(stdout);
        return 0;
    }
    optind = 2;
    int ch;
    while ((ch = getopt_long(argc, argv, "r:f:t:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'r': rules = optarg; break;
        case 'f': from = optarg; break;
        case 't': to = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!rules) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(sub, "run"))
        return cmd_run(rules);
    if (!strcmp(sub, "lint"))
        return cmd_lint(rules);
    if (!strcmp(sub, "backtest") && from && to)
        return cmd_backtest(rules, from, to);
    usage(stderr);
    return 2;
}
