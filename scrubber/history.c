/*
 * history.c — the scrub's lock file and its rows in PostgreSQL (history.h).
 */
#include "scrubber/history.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int scrub_lock(const char *path, int *fd, struct nerr *err)
{
    *fd = -1;
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (f < 0)
        return nerr_sys(err, errno, "lock file %s", path);
    if (flock(f, LOCK_EX | LOCK_NB)) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(f, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn(pid, "\n")] = 0;
        close(f);
        if (e == EWOULDBLOCK)
            return nerr_set(err, NERR_BUSY,
                            "another scrub holds %s (pid %s); not starting a second", path,
                            *pid ? pid : "unknown");
        return nerr_sys(err, e, "lock %s", path);
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(f, 0) || pwrite(f, pid, (size_t)len, 0) != len) {
        int e = errno;
        close(f);
        return nerr_sys(err, e, "write %s", path);
    }
    *fd = f;
    return 0;
}

void scrub_lock_default(const char *cluster, const char *cluster_file, char *buf, size_t cap)
{
    char real[PATH_MAX];
    const char *f = realpath(cluster_file, real) ? real : cluster_file;
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = f; p && *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    const char *dir = "/run/lock";
    if (access(dir, W_OK)) {
        dir = getenv("TMPDIR");
        if (!dir || !*dir)
            dir = "/tmp";
    }
    snprintf(buf, cap, "%s/nines-scrub-%s-%08x.lock", dir,
             cluster && *cluster ? cluster : "cluster", h);
}

void scrub_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* the lock goes with the descriptor */
}

/* One line of PostgreSQL's message. */
static int pg_err(PGconn *c, struct nerr *err)
{
    char mb[400];
    snprintf(mb, sizeof mb, "%s", PQerrorMessage(c));
    for (char *p = mb; *p; p++)
        if (*p == '\n')
            *p = p[1] ? ' ' : 0;
    return nerr_set(err, NERR_IO, "postgres: %s", mb);
}

static int exec_cmd(PGconn *c, const char *sql, int n, const char *const *params, struct nerr *err)
{
    /* Without parameters several statements may go at once (the schema). */
    PGresult *r = n ? PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0) : PQexec(c, sql);
    int st = PQresultStatus(r);
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        rc = pg_err(c, err);
        if (state && !strcmp(state, "23505")) /* unique_violation */
            rc = nerr_set(err, NERR_EXISTS, "scrub run already recorded: %s", err->msg);
    }
    PQclear(r);
    return rc;
}

static const char schema[] =
    "SET LOCAL client_min_messages = warning;"
    "SELECT pg_advisory_xact_lock(7007014);"
    "CREATE TABLE IF NOT EXISTS scrub_runs ("
    " run_id text PRIMARY KEY, cluster text NOT NULL, started_at timestamptz NOT NULL,"
    " seconds double precision, mode text NOT NULL, partitions integer, compared integer,"
    " findings integer NOT NULL, undecided integer NOT NULL, exit_code integer NOT NULL,"
    " report jsonb NOT NULL);"
    "CREATE TABLE IF NOT EXISTS scrub_findings ("
    " run_id text NOT NULL REFERENCES scrub_runs (run_id), n integer NOT NULL,"
    " table_name text, partition integer, replica text, kind text NOT NULL, key jsonb,"
    " detail jsonb NOT NULL, PRIMARY KEY (run_id, n));"
    "CREATE INDEX IF NOT EXISTS scrub_runs_started ON scrub_runs (started_at);";

/* A JSON value as text for a parameter ("null" prints as SQL NULL: NULL). */
static char *dump_or_null(const json_t *v)
{
    return v && !json_is_null(v) ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

int scrub_history_record(const char *conninfo, const json_t *report, long long started_ms,
                         int exit_code, struct nerr *err)
{
    PGconn *c = PQconnectdb(conninfo);
    int rc = 0;
    if (PQstatus(c) != CONNECTION_OK) {
        rc = pg_err(c, err);
        PQfinish(c);
        return rc;
    }
    const json_t *findings = json_object_get(report, "findings");
    const json_t *undecided = json_object_get(report, "undecided");
    const char *run = json_string_value(json_object_get(report, "run"));
    const char *cluster = json_string_value(json_object_get(report, "cluster"));
    const char *mode = json_string_value(json_object_get(report, "mode"));
    char started[64], secs[64], parts[32], cmp[32], nf[32], nu[32], code[32];
    snprintf(started, sizeof started, "%.3f", (double)started_ms / 1000.0);
    snprintf(secs, sizeof secs, "%.3f", json_number_value(json_object_get(report, "seconds")));
    snprintf(parts, sizeof parts, "%lld",
             (long long)json_integer_value(json_object_get(report, "partitions")));
    snprintf(cmp, sizeof cmp, "%lld",
             (long long)json_integer_value(json_object_get(report, "compared")));
    snprintf(nf, sizeof nf, "%zu", json_array_size(findings));
    snprintf(nu, sizeof nu, "%zu", json_array_size(undecided));
    snprintf(code, sizeof code, "%d", exit_code);
    char *whole = json_dumps(report, JSON_COMPACT);
    if (!run || !whole) {
        free(whole);
        PQfinish(c);
        return nerr_set(err, NERR_INVALID, "the scrub report has no run id");
    }
    if ((rc = exec_cmd(c, "BEGIN", 0, NULL, err)) || (rc = exec_cmd(c, schema, 0, NULL, err)))
        goto out;
    {
        const char *p[] = {run,
                           cluster ? cluster : "",
                           started,
                           secs,
                           mode ? mode : "live",
                           parts,
                           cmp,
                           nf,
                           nu,
                           code,
                           whole};
        if ((rc = exec_cmd(c,
                           "INSERT INTO scrub_runs (run_id, cluster, started_at, seconds, mode,"
                           " partitions, compared, findings, undecided, exit_code, report)"
                           " VALUES ($1, $2, to_timestamp($3::double precision), $4, $5, $6,"
                           " $7, $8, $9, $10, $11::jsonb)",
                           11, p, err)))
            goto out;
    }
    size_t i;
    json_t *f;
    json_array_foreach(findings, i, f)
    {
        char n[32], partition[32];
        snprintf(n, sizeof n, "%zu", i);
        const json_t *pj = json_object_get(f, "partition");
        snprintf(partition, sizeof partition, "%lld", (long long)json_integer_value(pj));
        char *key = dump_or_null(json_object_get(f, "key"));
        char *detail = json_dumps(f, JSON_COMPACT);
        const char *kind = json_string_value(json_object_get(f, "kind"));
        const char *p[] = {run,
                           n,
                           json_string_value(json_object_get(f, "table")),
                           pj ? partition : NULL,
                           json_string_value(json_object_get(f, "replica")),
                           kind ? kind : "unknown",
                           key,
                           detail ? detail : "{}"};
        rc = exec_cmd(c,
                      "INSERT INTO scrub_findings (run_id, n, table_name, partition, replica,"
                      " kind, key, detail) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb)",
                      8, p, err);
        free(key);
        free(detail);
        if (rc)
            goto out;
    }
    rc = exec_cmd(c, "COMMIT", 0, NULL, err);
out:
    if (rc)
        PQclear(PQexec(c, "ROLLBACK"));
    free(whole);
    PQfinish(c);
    return rc;
}
