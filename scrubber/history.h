/*
 * history.h — what makes `nines scrub` safe and useful as a nightly job:
 * a lock file so two runs never overlap, and the run's history in
 * PostgreSQL (docs/scrub.md, "Nightly").
 *
 * Lock. scrub_lock takes an exclusive, non-blocking flock(2) on a file
 * (created 0600 when missing) and writes the holder's pid into it. The lock
 * belongs to the open descriptor: it is released by scrub_unlock, and by
 * the kernel when the process exits in any way (kill -9 included), so a
 * crashed run never leaves a stale lock behind; the pid in the file only
 * tells the next run who holds it. NERR_BUSY when another process holds it
 * (the message names its pid), NERR_IO when the file cannot be opened.
 *
 * History. scrub_history_record writes one row per run into scrub_runs and
 * one per finding into scrub_findings, in one transaction, creating both
 * tables when they are missing:
 *
 *   scrub_runs(run_id text primary key, cluster text, started_at timestamptz,
 *              seconds double precision, mode text, partitions int,
 *              compared int, findings int, undecided int, exit_code int,
 *              report jsonb)
 *   scrub_findings(run_id text references scrub_runs, n int, table_name
 *              text, partition int, replica text, kind text, key jsonb,
 *              detail jsonb, primary key (run_id, n))
 *
 * `report` is the run's whole JSON report (docs/scrub.md), so nothing the
 * run knew is lost; the columns are what a dashboard or an alert queries.
 * A run id that is already there is refused (NERR_EXISTS), never
 * overwritten. Connection and SQL errors are NERR_IO with PostgreSQL's
 * message. The report is borrowed.
 *
 * Thread-safety: none needed (called from the scrub's main thread).
 */
#ifndef NINES_SCRUBBER_HISTORY_H
#define NINES_SCRUBBER_HISTORY_H

#include <jansson.h>

#include "lib/err.h"

int scrub_lock(const char *path, int *fd, struct nerr *err);
/* The default lock file of a cluster file:
 * /run/lock/nines-scrub-CLUSTER-HASH.lock (HASH: 8 hex digits of the file's
 * real path, so two clusters that share a name, as test clusters do, do not
 * share a lock) when /run/lock is writable, else in $TMPDIR (or /tmp). */
void scrub_lock_default(const char *cluster, const char *cluster_file, char *buf, size_t cap);
void scrub_unlock(int fd);

/* started_ms: the run's start, wall clock in ms since the epoch. */
int scrub_history_record(const char *conninfo, const json_t *report, long long started_ms,
                         int exit_code, struct nerr *err);

#endif
