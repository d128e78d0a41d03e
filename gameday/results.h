/*
 * results.h — game-day results in PostgreSQL (docs/gameday.md, "Scheduled
 * operation"): a finished run's DIR/report.json recorded as rows, and the
 * history read back.
 *
 * Tables (created by versioned migrations, version kept in
 * nines_gameday_schema; the canary's tables are not touched):
 *
 *   gameday_runs           one row per run: the report's name, playbook,
 *                          inventory, seed, passed, failure, elapsed_s,
 *                          started_at, the report dir and the whole report
 *                          (jsonb); run_key UNIQUE
 *   gameday_steps          one per report step (run_id, idx, ...)
 *   gameday_expectations   one per report "expectations" entry (may be none)
 *   gameday_verifications  one per report "verify" member: name, passed,
 *                          the member as jsonb
 *
 * The natural key of a run (run_key): "NAME/SEED/T0_WALL_MS" when the report
 * carries "t0_wall_ms" (the wall clock at the run's start), else
 * "sha256:" and the SHA-256 of the report's canonical JSON (sorted keys,
 * compact). Recording the same report twice finds the key and adds nothing.
 * started_at is t0_wall_ms when present, else report.json's modification
 * time minus elapsed_s (the report is written at the run's end).
 *
 * Concurrency: migrations run in one transaction under a transaction-level
 * advisory lock (GDRES_ADVISORY_KEY), so any number of recorders may start
 * on an empty database at once; each record is one transaction, and a race
 * on one run_key leaves one row (INSERT ... ON CONFLICT DO NOTHING).
 *
 * Errors (struct nerr, never a crash): NERR_IO (the database: connection
 * refused, a query failed; the message starts with "postgres:"; or the
 * report file cannot be read), NERR_PARSE / NERR_INVALID (report.json is
 * not JSON, or lacks name, seed, passed, elapsed_s or steps of the right
 * type), NERR_UNSUPPORTED (the database's schema is newer than this nines),
 * NERR_NOTFOUND (gdres_run: no such run id), NERR_NOMEM.
 *
 * Ownership: struct gdres is the caller's until gdres_close; strings passed
 * in are borrowed for the call; json_t results are the caller's (decref).
 * Thread-safety: one struct gdres per thread (a libpq connection).
 */
#ifndef NINES_GAMEDAY_RESULTS_H
#define NINES_GAMEDAY_RESULTS_H

#include <jansson.h>
#include <stdint.h>

#include "lib/err.h"

#define GDRES_ADVISORY_KEY 7007011 /* the canary's migrations use 7007007 */
#define GDRES_CONNECT_TIMEOUT_S 10 /* unless the DSN says connect_timeout */

struct gdres;

/* Connects to dsn (a libpq conninfo string or postgresql:// URI). Nothing
 * is created: gdres_record migrates. */
int gdres_open(const char *dsn, struct gdres **out, struct nerr *err);
void gdres_close(struct gdres *r);

/* Brings the schema to this nines' version (idempotent). */
int gdres_migrate(struct gdres *r, struct nerr *err);

/* Records DIR/report.json (migrating first). *run_id: the run's id;
 * *existed: 1 when the report was recorded before (nothing added). */
int gdres_record(struct gdres *r, const char *dir, int64_t *run_id, int *existed, struct nerr *err);

/* The most recent runs, newest first (started_at, then id), at most limit,
 * only those named name when name is not NULL. *out: a JSON array of
 * {id, started_at ("YYYY-MM-DDTHH:MM:SS.mmmZ"), name, seed, passed,
 * elapsed_s, steps, failed_steps, expectations, failed_expectations,
 * failure, report_dir, playbook, inventory}. An empty database (no schema
 * yet) gives an empty array. */
int gdres_history(struct gdres *r, const char *name, long limit, json_t **out, struct nerr *err);

/* One run: {run: {as a history entry}, steps: [...], expectations: [...],
 * verifications: [{name, passed, detail}]}. NERR_NOTFOUND for an unknown id. */
int gdres_run(struct gdres *r, int64_t id, json_t **out, struct nerr *err);

/* The run key of a parsed report (above); malloc'd, the caller's; NULL
 * when out of memory. */
char *gdres_run_key(const json_t *report);

#endif
