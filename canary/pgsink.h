/*
 * pgsink.h — the canary's PostgreSQL sink: schema, migrations, batched COPY,
 * and a bounded buffer that rides out a lost connection.
 *
 * Schema (pgsink_migrate; version kept in nines_schema, applied under an
 * advisory lock so several canaries and evaluators can start together):
 *   1  canary_samples: one row per (interval, canary AZ, endpoint, endpoint
 *      AZ, table, operation): attempts, successes, retries, stale, errors
 *      (jsonb, by type), the latency histogram's non-empty buckets
 *      (hist_idx[] / hist_cnt[], lib/hist.h indices), inserted_at.
 *   2  alarm_transitions: every CFA state change (cfa.h).
 *   3  server_samples: server-side request and error counts per interval
 *      (scraped from ninesd when it serves them).
 *
 * Rows are queued as ready COPY text lines (pgsink_format_sample). A worker
 * thread sends what is queued every flush interval (or sooner when a batch is
 * full) with one COPY per batch, in its own transaction: a batch is either
 * wholly stored or wholly kept for the next try. When PostgreSQL is away, the
 * worker reconnects with capped exponential backoff (0.2 s .. 5 s) and the
 * queue grows up to max_rows (queued + in flight); beyond that the OLDEST
 * rows are dropped and counted (pgsink_stats .dropped, and a log line), so a
 * long outage costs old samples, never the process.
 *
 * Lost acknowledgement: if the connection dies after the server committed a
 * COPY but before we saw the result, that batch is sent again (duplicate
 * rows). PostgreSQL gives no cheaper way to know; the evaluator tolerates it
 * (a duplicate row can only make a burn rate look like its true value).
 *
 * Ownership: pgsink_push takes the line (malloc'd) in every case.
 * Errors: pgsink_open fails only for a bad DSN syntax or no memory (it does
 * not need PostgreSQL up). pgsink_close returns NERR_TIMEOUT when rows were
 * still unsent at the deadline (they are counted as dropped).
 * Thread-safety: push and stats from any thread; open/close from one.
 */
#ifndef NINES_CANARY_PGSINK_H
#define NINES_CANARY_PGSINK_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "canary/agg.h"
#include "lib/err.h"

struct pgsink;

struct pgsink_opts {
    const char *dsn;
    uint64_t max_rows; /* default 100000 */
    uint64_t flush_ns; /* default 1 s */
    size_t batch_rows; /* default 50000 */
    const char *table; /* default "canary_samples" */
    const char *columns; /* COPY column list; default the sample columns */
};

struct pgsink_stats {
    uint64_t queued, written, dropped, batches, reconnects;
    int connected;
};

int pgsink_open(const struct pgsink_opts *o, struct pgsink **out, struct nerr *err);
void pgsink_push(struct pgsink *s, char *line);
void pgsink_stats(struct pgsink *s, struct pgsink_stats *out);
/* Flushes (bounded by timeout_ns), stops the worker, frees everything. */
int pgsink_close(struct pgsink *s, uint64_t timeout_ns, struct nerr *err);

/* Brings the schema to the latest version. 0 or NERR_IO with PG's message. */
int pgsink_migrate(PGconn *conn, struct nerr *err);

/* One canary_samples line (no trailing newline issue: it ends in "\n"). */
struct pgsink_labels {
    const char *canary_az, *endpoint, *endpoint_az, *table, *op;
};
int pgsink_format_sample(int64_t start_ms, int64_t interval_ms, const struct pgsink_labels *l,
                         const struct agg_cell *c, char **out);

/* COPY text escaping of s appended to b (strbuf). */
struct strbuf;
void pgsink_copy_escape(struct strbuf *b, const char *s);
/* "YYYY-MM-DD HH:MM:SS.mmm+00" for a wall-clock time in ms. */
void pgsink_fmt_ts(int64_t ms, char *buf, size_t cap);

#endif
