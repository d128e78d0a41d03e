/*
 * gameday/results.c — game-day results in PostgreSQL through libpq
 * (contract in results.h). The rows of a run are cut out of its report by
 * PostgreSQL itself (jsonb functions over the stored report), so the report
 * crosses the wire once and the rows can never disagree with it.
 */
#include "gameday/results.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

struct gdres {
    PGconn *c;
};

/* Versioned migrations: entry v-1 brings the schema from v-1 to v. Never
 * edit one that shipped; append. */
static const char *const migrations[] = {
    /* 1 */
    "CREATE TABLE gameday_runs ("
    " id bigserial PRIMARY KEY, run_key text NOT NULL UNIQUE, name text NOT NULL,"
    " playbook text, inventory text, seed bigint NOT NULL, started_at timestamptz NOT NULL,"
    " elapsed_s double precision NOT NULL, passed boolean NOT NULL, failure text,"
    " report_dir text NOT NULL, report jsonb NOT NULL,"
    " recorded_at timestamptz NOT NULL DEFAULT now());"
    "CREATE INDEX gameday_runs_started ON gameday_runs (started_at DESC, id DESC);"
    "CREATE INDEX gameday_runs_name ON gameday_runs (name, started_at DESC);"
    "CREATE TABLE gameday_steps ("
    " run_id bigint NOT NULL REFERENCES gameday_runs (id) ON DELETE CASCADE,"
    " idx integer NOT NULL, label text NOT NULL, kind text NOT NULL, hosts text[] NOT NULL,"
    " start_s double precision, end_s double precision, ok bigint, errors bigint,"
    " p99_ms double precision, recovery_s double precision, failed boolean NOT NULL,"
    " error text, PRIMARY KEY (run_id, idx));"
    "CREATE TABLE gameday_expectations ("
    " run_id bigint NOT NULL REFERENCES gameday_runs (id) ON DELETE CASCADE,"
    " ord integer NOT NULL, phase text, step integer, what text NOT NULL,"
    " passed boolean NOT NULL, detail text, PRIMARY KEY (run_id, ord));"
    "CREATE TABLE gameday_verifications ("
    " run_id bigint NOT NULL REFERENCES gameday_runs (id) ON DELETE CASCADE,"
    " name text NOT NULL, passed boolean NOT NULL, detail jsonb NOT NULL,"
    " PRIMARY KEY (run_id, name));",
};

/* A JSON member of the row's jsonb `o` as a number of SQL type t, NULL when
 * it is missing or not a number (a report of an older or newer runner). */
#define NUM(o, k, t)                                                                               \
    "CASE WHEN jsonb_typeof(" o "->'" k "') = 'number' THEN (" o "->>'" k "')::" t " END"
#define BOOL(o, k) "(jsonb_typeof(" o "->'" k "') = 'boolean' AND (" o "->>'" k "')::boolean)"
/* A string member, or its JSON text when it is something else. */
#define TEXT(o, k)                                                                                 \
    "CASE jsonb_typeof(" o "->'" k "') WHEN 'string' THEN " o "->>'" k "' WHEN 'null' THEN NULL"   \
    " ELSE (" o "->'" k "')::text END"
#define ARRAY_OR_EMPTY(x) "CASE WHEN jsonb_typeof(" x ") = 'array' THEN " x " ELSE '[]' END"

static const char sql_steps[] =
    "INSERT INTO gameday_steps (run_id, idx, label, kind, hosts, start_s, end_s, ok, errors,"
    " p99_ms, recovery_s, failed, error)"
    " SELECT r.id, (s->>'index')::integer, s->>'label', s->>'kind',"
    " ARRAY(SELECT jsonb_array_elements_text(" ARRAY_OR_EMPTY(
        "s->'hosts'") ")),"
                      " " NUM(
                          "s", "start_s",
                          "float8") ","
                                    " " NUM(
                                        "s", "end_s",
                                        "float8") ","
                                                  " " NUM(
                                                      "s",
                                                      "ok", "numeric::bigint") ","
                                                                               " " NUM(
                                                                                   "s", "errors",
                                                                                   "numeric::"
                                                                                   "bigint") ","
                                                                                             " " NUM(
                                                                                                 "s",
                                                                                                 "p"
                                                                                                 "9"
                                                                                                 "9"
                                                                                                 "_"
                                                                                                 "m"
                                                                                                 "s",
                                                                                                 "f"
                                                                                                 "l"
                                                                                                 "o"
                                                                                                 "a"
                                                                                                 "t"
                                                                                                 "8") ","
                                                                                                      " " NUM(
                                                                                                          "s",
                                                                                                          "recovery_s",
                                                                                                          "float8") ","
                                                                                                                    " " BOOL(
                                                                                                                        "s",
                                                                                                                        "failed") ","
                                                                                                                                  " " TEXT(
                                                                                                                                      "s",
                                                                                                                                      "error") " FROM gameday_runs r, jsonb_array_elements(r.report->'steps') s WHERE r.id = $1";

static const char sql_expectations[] =
    "INSERT INTO gameday_expectations (run_id, ord, phase, step, what, passed, detail)"
    " SELECT r.id, e.ord,"
    " " TEXT(
        "e.x",
        "phase") ","
                 " " NUM(
                     "e.x", "step",
                     "numeric::integer") ","
                                         " coalesce(" TEXT(
                                             "e.x",
                                             "what") ", ''),"
                                                     " " BOOL(
                                                         "e.x",
                                                         "passed") ","
                                                                   " " TEXT(
                                                                       "e.x",
                                                                       "detail") " FROM "
                                                                                 "gameday_runs r,"
                                                                                 " jsonb_array_"
                                                                                 "elements"
                                                                                 "(" ARRAY_OR_EMPTY(
                                                                                     "r.report->'"
                                                                                     "expectations"
                                                                                     "'") ")"
                                                                                          " WITH "
                                                                                          "ORDINALI"
                                                                                          "TY AS "
                                                                                          "e(x, "
                                                                                          "ord) "
                                                                                          "WHERE "
                                                                                          "r.id = "
                                                                                          "$1";

static const char sql_verifications[] =
    "INSERT INTO gameday_verifications (run_id, name, passed, detail)"
    " SELECT r.id, v.key, " BOOL("v.value",
                                 "passed") ", v.value FROM gameday_runs r,"
                                           " jsonb_each(CASE WHEN jsonb_typeof(r.report->'verify') "
                                           "= 'object' THEN r.report->'verify'"
                                           " ELSE '{}' END) v WHERE r.id = $1";

/* One history entry; its WHERE follows. */
static const char sql_run_obj[] =
    "SELECT json_build_object('id', r.id,"
    " 'started_at', to_char(r.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    " 'name', r.name, 'seed', r.seed, 'passed', r.passed, 'elapsed_s', r.elapsed_s,"
    " 'steps', (SELECT count(*) FROM gameday_steps s WHERE s.run_id = r.id),"
    " 'failed_steps', (SELECT count(*) FROM gameday_steps s WHERE s.run_id = r.id AND s.failed),"
    " 'expectations', (SELECT count(*) FROM gameday_expectations e WHERE e.run_id = r.id),"
    " 'failed_expectations', (SELECT count(*) FROM gameday_expectations e"
    "   WHERE e.run_id = r.id AND NOT e.passed),"
    " 'failed_verifications', (SELECT count(*) FROM gameday_verifications v"
    "   WHERE v.run_id = r.id AND NOT v.passed),"
    " 'failure', r.failure, 'report_dir', r.report_dir, 'playbook', r.playbook,"
    " 'inventory', r.inventory, 'run_key', r.run_key)::text FROM gameday_runs r ";

/* PQerrorMessage ends in a newline and may hold several lines: one line. */
static const char *pg_msg(PGconn *c, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", PQerrorMessage(c));
    for (char *p = buf; *p; p++)
        if (*p == '\n')
            *p = p[1] ? ' ' : 0;
    return buf;
}

static int pg_fail(struct gdres *r, struct nerr *err)
{
    char mb[400];
    return nerr_set(err, NERR_IO, "postgres: %s", pg_msg(r->c, mb, sizeof mb));
}

/* Runs sql with text parameters; *res (may be NULL: cleared here) gets a
 * successful result. */
static int exec_params(struct gdres *r, const char *sql, int n, const char *const *v,
                       PGresult **res, struct nerr *err)
{
    PGresult *q = PQexecParams(r->c, sql, n, NULL, v, NULL, NULL, 0);
    int st = PQresultStatus(q);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        int rc = pg_fail(r, err);
        PQclear(q);
        return rc;
    }
    if (res)
        *res = q;
    else
        PQclear(q);
    return 0;
}

static int exec_ok(struct gdres *r, const char *sql, struct nerr *err)
{
    PGresult *q = PQexec(r->c, sql);
    int st = PQresultStatus(q);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : pg_fail(r, err);
    PQclear(q);
    return rc;
}

static void rollback(struct gdres *r)
{
    PQclear(PQexec(r->c, "ROLLBACK"));
}

int gdres_open(const char *dsn, struct gdres **out, struct nerr *err)
{
    char mb[400], timeout[16];
    *out = NULL;
    struct gdres *r = calloc(1, sizeof *r);
    if (!r)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    snprintf(timeout, sizeof timeout, "%d", GDRES_CONNECT_TIMEOUT_S);
    /* Keywords are taken in order and the last one wins: the DSN (expanded
     * from dbname) may override the timeout and the application name. */
    const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *vals[] = {timeout, "nines gameday", dsn, NULL};
    r->c = PQconnectdbParams(keys, vals, 1);
    if (!r->c) {
        free(r);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    if (PQstatus(r->c) != CONNECTION_OK) {
        int rc =
            nerr_set(err, NERR_IO, "postgres: cannot connect: %s", pg_msg(r->c, mb, sizeof mb));
        gdres_close(r);
        return rc;
    }
    *out = r;
    return 0;
}

void gdres_close(struct gdres *r)
{
    if (!r)
        return;
    PQfinish(r->c);
    free(r);
}

int gdres_migrate(struct gdres *r, struct nerr *err)
{
    int rc, n = (int)(sizeof migrations / sizeof migrations[0]);
    PGresult *q = NULL;
    char lock[96];
    snprintf(lock, sizeof lock, "SELECT pg_advisory_xact_lock(%d)", GDRES_ADVISORY_KEY);
    if ((rc = exec_ok(r, "BEGIN", err)))
        return rc;
    /* The lock first: two recorders on an empty database would otherwise
     * race to create the same tables. SET LOCAL: IF NOT EXISTS notices are
     * noise. */
    if ((rc = exec_ok(r, "SET LOCAL client_min_messages = warning", err)) ||
        (rc = exec_ok(r, lock, err)) ||
        (rc = exec_ok(r,
                      "CREATE TABLE IF NOT EXISTS nines_gameday_schema (version integer NOT NULL)",
                      err)) ||
        (rc = exec_params(r, "SELECT coalesce(max(version), 0) FROM nines_gameday_schema", 0, NULL,
                          &q, err)))
        goto fail;
    int have = atoi(PQgetvalue(q, 0, 0));
    PQclear(q);
    if (have > n) {
        rc = nerr_set(err, NERR_UNSUPPORTED,
                      "postgres: the database's game-day schema version %d is newer than this "
                      "nines (%d)",
                      have, n);
        goto fail;
    }
    for (int v = have + 1; v <= n; v++) {
        char sql[128];
        snprintf(sql, sizeof sql,
                 "DELETE FROM nines_gameday_schema; INSERT INTO nines_gameday_schema VALUES (%d)",
                 v);
        if ((rc = exec_ok(r, migrations[v - 1], err)) || (rc = exec_ok(r, sql, err)))
            goto fail;
    }
    return exec_ok(r, "COMMIT", err);
fail:
    rollback(r);
    return rc;
}

/* ---- reading a report ---- */

static int check_report(const json_t *rep, const char *path, struct nerr *err)
{
    const char *key = NULL;
    if (!json_is_object(rep))
        return nerr_set(err, NERR_INVALID, "%s: not a JSON object", path);
    if (!json_is_string(json_object_get(rep, "name")))
        key = "\"name\" (a string)";
    else if (!json_is_integer(json_object_get(rep, "seed")))
        key = "\"seed\" (an integer)";
    else if (!json_is_boolean(json_object_get(rep, "passed")))
        key = "\"passed\" (a boolean)";
    else if (!json_is_number(json_object_get(rep, "elapsed_s")))
        key = "\"elapsed_s\" (a number)";
    else if (!json_is_array(json_object_get(rep, "steps")))
        key = "\"steps\" (an array)";
    if (key)
        return nerr_set(err, NERR_INVALID, "%s: no %s: not a game-day report", path, key);
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(rep, "steps"), i, s)
    {
        if (!json_is_integer(json_object_get(s, "index")) ||
            !json_is_string(json_object_get(s, "label")) ||
            !json_is_string(json_object_get(s, "kind")))
            return nerr_set(err, NERR_INVALID,
                            "%s: steps[%zu] needs \"index\" (an integer), \"label\" and \"kind\" "
                            "(strings)",
                            path, i);
    }
    const json_t *ex = json_object_get(rep, "expectations");
    if (ex && !json_is_null(ex)) {
        if (!json_is_array(ex))
            return nerr_set(err, NERR_INVALID, "%s: \"expectations\" is not an array", path);
        json_array_foreach(ex, i,
                           s) if (!json_is_object(s) ||
                                  !json_is_boolean(json_object_get(
                                      s, "passed"))) return nerr_set(err, NERR_INVALID,
                                                                     "%s: expectations[%zu] has no "
                                                                     "\"passed\" (a boolean)",
                                                                     path, i);
    }
    const json_t *ver = json_object_get(rep, "verify");
    if (ver && !json_is_null(ver)) {
        const char *k;
        json_t *v;
        if (!json_is_object(ver))
            return nerr_set(err, NERR_INVALID, "%s: \"verify\" is not an object", path);
        json_object_foreach((json_t *)ver, k, v) if (!json_is_object(v)) return nerr_set(
            err, NERR_INVALID, "%s: verify.%s is not an object", path, k);
    }
    const json_t *t0 = json_object_get(rep, "t0_wall_ms");
    if (t0 && !json_is_null(t0) && !json_is_number(t0))
        return nerr_set(err, NERR_INVALID, "%s: \"t0_wall_ms\" is not a number", path);
    return 0;
}

char *gdres_run_key(const json_t *rep)
{
    const json_t *t0 = json_object_get(rep, "t0_wall_ms");
    const char *name = json_string_value(json_object_get(rep, "name"));
    char *key = NULL;
    if (json_is_number(t0) && name) {
        if (asprintf(&key, "%s/%" JSON_INTEGER_FORMAT "/%.0f", name,
                     json_integer_value(json_object_get(rep, "seed")), json_number_value(t0)) < 0)
            return NULL;
        return key;
    }
    /* No start time: the report's own content names the run; two runs never
     * write the same report (elapsed_s alone differs). */
    char *text = json_dumps(rep, JSON_COMPACT | JSON_SORT_KEYS);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (!text)
        return NULL;
    int ok = EVP_Digest(text, strlen(text), md, &mdlen, EVP_sha256(), NULL);
    free(text);
    if (!ok || !(key = malloc(7 + 2 * mdlen + 1)))
        return NULL;
    memcpy(key, "sha256:", 7);
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(key + 7 + 2 * i, 3, "%02x", md[i]);
    return key;
}

int gdres_record(struct gdres *r, const char *dir, int64_t *run_id, int *existed, struct nerr *err)
{
    char path[PATH_MAX + 16], absdir[PATH_MAX];
    json_t *rep = NULL;
    char *key = NULL, *text = NULL;
    PGresult *q = NULL;
    int rc;
    struct stat st;
    *run_id = 0;
    *existed = 0;
    snprintf(path, sizeof path, "%s/report.json", dir);
    if (stat(path, &st) || !realpath(dir, absdir))
        return nerr_sys(err, errno, "%s", path);
    json_error_t je;
    if (!(rep = json_load_file(path, 0, &je))) {
        rc = nerr_set(err, NERR_PARSE, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        goto out;
    }
    if ((rc = check_report(rep, path, err)))
        goto out;
    double elapsed = json_number_value(json_object_get(rep, "elapsed_s"));
    const json_t *t0 = json_object_get(rep, "t0_wall_ms");
    double start_ms = json_is_number(t0) ? json_number_value(t0)
                                         : (double)st.st_mtim.tv_sec * 1e3 +
                                               (double)st.st_mtim.tv_nsec / 1e6 - elapsed * 1e3;
    if (!(key = gdres_run_key(rep)) || !(text = json_dumps(rep, JSON_COMPACT))) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    char seed[32], start[40], el[40];
    snprintf(seed, sizeof seed, "%" JSON_INTEGER_FORMAT,
             json_integer_value(json_object_get(rep, "seed")));
    snprintf(start, sizeof start, "%.3f", start_ms);
    snprintf(el, sizeof el, "%.17g", elapsed);
    const json_t *fail = json_object_get(rep, "failure");
    const char *v[] = {key,
                       json_string_value(json_object_get(rep, "name")),
                       json_string_value(json_object_get(rep, "playbook")),
                       json_string_value(json_object_get(rep, "inventory")),
                       seed,
                       start,
                       el,
                       json_is_true(json_object_get(rep, "passed")) ? "t" : "f",
                       json_string_value(fail),
                       absdir,
                       text};
    if ((rc = gdres_migrate(r, err)) || (rc = exec_ok(r, "BEGIN", err)))
        goto out;
    if ((rc = exec_params(r,
                          "INSERT INTO gameday_runs (run_key, name, playbook, inventory, seed,"
                          " started_at, elapsed_s, passed, failure, report_dir, report)"
                          " VALUES ($1, $2, $3, $4, $5, to_timestamp($6::float8 / 1000), $7, $8,"
                          " $9, $10, $11::jsonb) ON CONFLICT (run_key) DO NOTHING RETURNING id",
                          11, v, &q, err)))
        goto fail;
    if (PQntuples(q) == 0) {
        /* Recorded before (or by a recorder racing us, whose row we waited
         * for on the unique index). */
        PQclear(q);
        q = NULL;
        *existed = 1;
        if ((rc = exec_params(r, "SELECT id FROM gameday_runs WHERE run_key = $1", 1, v, &q, err)))
            goto fail;
        if (PQntuples(q) == 1)
            *run_id = strtoll(PQgetvalue(q, 0, 0), NULL, 10);
        rc = exec_ok(r, "COMMIT", err);
        goto out;
    }
    *run_id = strtoll(PQgetvalue(q, 0, 0), NULL, 10);
    const char *id[] = {PQgetvalue(q, 0, 0)};
    if ((rc = exec_params(r, sql_steps, 1, id, NULL, err)) ||
        (rc = exec_params(r, sql_expectations, 1, id, NULL, err)) ||
        (rc = exec_params(r, sql_verifications, 1, id, NULL, err)) ||
        (rc = exec_ok(r, "COMMIT", err)))
        goto fail;
    goto out;
fail:
    rollback(r);
    *run_id = 0;
    *existed = 0;
out:
    PQclear(q);
    free(text);
    free(key);
    json_decref(rep);
    return rc;
}

/* ---- reading back ---- */

/* Appends column 0 of every row (JSON text) to arr. */
static int rows_json(struct gdres *r, const char *sql, int n, const char *const *v, json_t *arr,
                     struct nerr *err)
{
    PGresult *q = NULL;
    int rc = exec_params(r, sql, n, v, &q, err);
    if (rc)
        return rc;
    for (int i = 0; i < PQntuples(q) && !rc; i++) {
        json_error_t je;
        json_t *o = json_loads(PQgetvalue(q, i, 0), JSON_DECODE_ANY, &je);
        if (!o || json_array_append_new(arr, o))
            rc = nerr_set(err, NERR_INTERNAL, "postgres: a row is not JSON: %s", je.text);
    }
    PQclear(q);
    return rc;
}

/* 1 when the tables exist (a database nothing was recorded in has none). */
static int have_schema(struct gdres *r, int *yes, struct nerr *err)
{
    PGresult *q = NULL;
    int rc = exec_params(r, "SELECT to_regclass('gameday_runs') IS NOT NULL", 0, NULL, &q, err);
    if (rc)
        return rc;
    *yes = !strcmp(PQgetvalue(q, 0, 0), "t");
    PQclear(q);
    return 0;
}

int gdres_history(struct gdres *r, const char *name, long limit, json_t **out, struct nerr *err)
{
    char lim[24], sql[sizeof sql_run_obj + 200];
    int yes = 0, rc;
    json_t *arr = json_array();
    *out = NULL;
    if (!arr)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    if ((rc = have_schema(r, &yes, err)))
        goto fail;
    if (yes) {
        snprintf(lim, sizeof lim, "%ld", limit);
        snprintf(sql, sizeof sql,
                 "%sWHERE ($1::text IS NULL OR r.name = $1)"
                 " ORDER BY r.started_at DESC, r.id DESC LIMIT $2::bigint",
                 sql_run_obj);
        const char *v[] = {name, lim};
        if ((rc = rows_json(r, sql, 2, v, arr, err)))
            goto fail;
    }
    *out = arr;
    return 0;
fail:
    json_decref(arr);
    return rc;
}

int gdres_run(struct gdres *r, int64_t id, json_t **out, struct nerr *err)
{
    char ids[24], sql[sizeof sql_run_obj + 64];
    int yes = 0, rc;
    json_t *runs = json_array(), *steps = json_array(), *ex = json_array(), *ver = json_array();
    *out = NULL;
    if (!runs || !steps || !ex || !ver) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto fail;
    }
    snprintf(ids, sizeof ids, "%" PRId64, id);
    const char *v[] = {ids};
    snprintf(sql, sizeof sql, "%sWHERE r.id = $1::bigint", sql_run_obj);
    if ((rc = have_schema(r, &yes, err)) || (yes && (rc = rows_json(r, sql, 1, v, runs, err))))
        goto fail;
    if (json_array_size(runs) != 1) {
        rc = nerr_set(err, NERR_NOTFOUND, "no game-day run %" PRId64 " recorded", id);
        goto fail;
    }
    if ((rc = rows_json(r,
                        "SELECT json_build_object('index', idx, 'label', label, 'kind', kind,"
                        " 'hosts', to_json(hosts), 'start_s', start_s, 'end_s', end_s, 'ok', ok,"
                        " 'errors', errors, 'p99_ms', p99_ms, 'recovery_s', recovery_s,"
                        " 'failed', failed, 'error', error)::text"
                        " FROM gameday_steps WHERE run_id = $1::bigint ORDER BY idx",
                        1, v, steps, err)) ||
        (rc = rows_json(r,
                        "SELECT json_build_object('phase', phase, 'step', step, 'what', what,"
                        " 'passed', passed, 'detail', detail)::text"
                        " FROM gameday_expectations WHERE run_id = $1::bigint ORDER BY ord",
                        1, v, ex, err)) ||
        (rc = rows_json(r,
                        "SELECT json_build_object('name', name, 'passed', passed,"
                        " 'detail', detail)::text"
                        " FROM gameday_verifications WHERE run_id = $1::bigint ORDER BY name",
                        1, v, ver, err)))
        goto fail;
    *out = json_pack("{s:O,s:o,s:o,s:o}", "run", json_array_get(runs, 0), "steps", steps,
                     "expectations", ex, "verifications", ver);
    json_decref(runs);
    return *out ? 0 : nerr_set(err, NERR_NOMEM, "out of memory");
fail:
    json_decref(runs);
    json_decref(steps);
    json_decref(ex);
    json_decref(ver);
    return rc;
}
