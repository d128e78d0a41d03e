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
 *   4  alarm_state: the evaluator's current non-OK alarms (cfa.h state,
 *      firing since, last sent), so a restarted evaluator resumes them;
 *      server_samples gains client_errors (errors counts server errors).
 *
 * Rows are queued ready to send, as COPY BINARY tuples (pgsink_row_sample,
 * pgsink_row_server): the server then parses no text, which is what made
 * timestamps and the histogram arrays costly, and the producer formats no
 * digits. `streams` worker threads, each with its own connection, take
 * batches off one queue and send each with one COPY in its own transaction
 * (two streams by default: one PostgreSQL backend is single-threaded and was
 * the limit once formatting was cheap). A batch is either wholly stored or
 * wholly put back at the front of the queue for the next try; rows of one
 * interval may therefore land out of order across streams (readers key on
 * ts and id, never on arrival order). When PostgreSQL is away, each worker
 * reconnects with capped exponential backoff (0.2 s .. 5 s) and the queue
 * grows up to max_rows (queued + in flight); beyond that the OLDEST rows are
 * dropped and counted (pgsink_stats .dropped, and a log line), so a long
 * outage costs old samples, never the process.
 *
 * Lost acknowledgement: if the connection dies after the server committed a
 * COPY but before we saw the result, that batch is sent again (duplicate
 * rows). PostgreSQL gives no cheaper way to know; the evaluator tolerates it
 * (a duplicate row can only make a burn rate look like its true value).
 *
 * Ownership: pgsink_push takes the row in every case (freed with free()).
 * Errors: pgsink_open fails only for a bad DSN syntax, no memory or no
 * thread (it does not need PostgreSQL up). pgsink_close returns NERR_TIMEOUT
 * when rows were still unsent at the deadline (they are counted as dropped).
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

/* One COPY BINARY tuple (field count, then each field's length and bytes),
 * one malloc'd block. */
struct pgsink_row {
    uint32_t len;
    unsigned char data[];
};

struct pgsink_opts {
    const char *dsn;
    uint64_t max_rows;   /* default 100000 */
    uint64_t flush_ns;   /* default 1 s */
    size_t batch_rows;   /* default 20000 */
    int streams;         /* parallel COPY connections, 1..8; default 2 */
    const char *table;   /* default "canary_samples" */
    const char *columns; /* COPY column list, matching the rows; default the sample columns */
};

/* The column list that pgsink_row_server's rows fill (table server_samples). */
#define PGSINK_SERVER_COLUMNS                                                                      \
    "ts, interval_ms, endpoint, endpoint_az, tbl, op, requests, errors, client_errors"

struct pgsink_stats {
    uint64_t queued, written, dropped, batches, reconnects;
    int connected; /* streams connected now */
};

int pgsink_open(const struct pgsink_opts *o, struct pgsink **out, struct nerr *err);
void pgsink_push(struct pgsink *s, struct pgsink_row *row);
void pgsink_stats(struct pgsink *s, struct pgsink_stats *out);
/* Flushes (bounded by timeout_ns), stops the workers, frees everything. */
int pgsink_close(struct pgsink *s, uint64_t timeout_ns, struct nerr *err);

/* Brings the schema to the latest version. 0 or NERR_IO with PG's message. */
int pgsink_migrate(PGconn *conn, struct nerr *err);

/* One canary_samples row: the cell's counters, its errors as a jsonb object
 * ({"type": count, ..., "other": n}) and its non-empty histogram buckets.
 * 0 or NERR_NOMEM; *out is malloc'd. */
struct pgsink_labels {
    const char *canary_az, *endpoint, *endpoint_az, *table, *op;
};
int pgsink_row_sample(int64_t start_ms, int64_t interval_ms, const struct pgsink_labels *l,
                      const struct agg_cell *c, struct pgsink_row **out);

/* One server_samples row (PGSINK_SERVER_COLUMNS). 0 or NERR_NOMEM. */
struct pgsink_server_sample {
    int64_t start_ms, interval_ms;
    const char *endpoint, *endpoint_az, *table, *op;
    uint64_t requests, errors, client_errors; /* errors: server errors (5xx) */
};
int pgsink_row_server(const struct pgsink_server_sample *x, struct pgsink_row **out);

/* "YYYY-MM-DD HH:MM:SS.mmm+00" for a wall-clock time in ms. */
void pgsink_fmt_ts(int64_t ms, char *buf, size_t cap);

#endif
