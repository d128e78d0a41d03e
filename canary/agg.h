/*
 * agg.h — per-interval aggregation of canary probe outcomes.
 *
 * Key: (endpoint, table, operation) within one canary (whose AZ is fixed),
 * per interval. An outcome belongs to the interval that holds its probe's
 * *scheduled* time, so a stall shows up in the interval it was meant for.
 * Each cell counts attempts (operations scheduled, whatever their fate),
 * successes, retries (extra attempts the SDK retry mode made), stale reads
 * (eventually consistent reads that missed the write), errors by type (the
 * first AGG_MAX_ERR_TYPES names seen, then "other") and a latency histogram
 * (lib/hist.h: log-linear, <= 0.4 % relative error, mergeable).
 *
 * Lifecycle of an interval: open (records arrive) -> closed by
 * agg_close_until(watermark) once no probe scheduled inside it can still be
 * running; the caller's callback sees each non-empty cell once, then the
 * interval is folded into the cumulative totals (for /metrics) and freed.
 *
 * Ownership: struct agg owns its intervals. Cells handed to the callback are
 * borrowed for the call.
 * Thread-safety: every function takes the agg's mutex; the callback runs
 * with it held, so it must not call back into the agg.
 */
#ifndef NINES_CANARY_AGG_H
#define NINES_CANARY_AGG_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"
#include "lib/hist.h"

enum canary_op { COP_PUT = 0, COP_CGET, COP_GET, COP_DELETE, COP_PROBE, COP_N };
extern const char *const canary_op_names[COP_N]; /* put get_consistent get_eventual delete probe */

#define AGG_MAX_ERR_TYPES 8
#define AGG_ERR_NAME 48

struct agg_cell {
    uint64_t attempts, successes, retries, stale;
    char err_name[AGG_MAX_ERR_TYPES][AGG_ERR_NAME];
    uint64_t err_count[AGG_MAX_ERR_TYPES];
    uint64_t err_other;
    struct hist lat; /* nanoseconds */
};

struct agg_interval;

struct agg {
    pthread_mutex_t mu;
    size_t nendpoints, ntables;
    int64_t interval_ms;
    struct agg_interval *open; /* sorted by start */
    struct agg_cell *total;    /* cumulative, nendpoints * ntables * COP_N */
    uint64_t late;             /* records for intervals already closed */
};

int agg_init(struct agg *a, size_t nendpoints, size_t ntables, int64_t interval_ms,
             struct nerr *err);
void agg_destroy(struct agg *a);

/* One outcome. ok: the operation succeeded; err_type: its error name when not
 * (NULL when ok); retries: extra attempts; stale: an eventual read that did
 * not see the write. sched_ms: the probe's scheduled wall-clock time (ms). */
int agg_record(struct agg *a, int64_t sched_ms, size_t ep, size_t tbl, enum canary_op op, int ok,
               const char *err_type, int retries, int stale, uint64_t latency_ns);

typedef void (*agg_cell_fn)(void *arg, int64_t start_ms, int64_t interval_ms, size_t ep, size_t tbl,
                            enum canary_op op, const struct agg_cell *cell);

/* Closes every interval that ends at or before watermark_ms, oldest first.
 * Returns how many intervals were closed. */
int agg_close_until(struct agg *a, int64_t watermark_ms, agg_cell_fn fn, void *arg);

/* Adds cell's counters (not its histogram) into dst. */
void agg_cell_add_counts(struct agg_cell *dst, const struct agg_cell *src);

/* Total errors of a cell (attempts - successes). */
uint64_t agg_cell_errors(const struct agg_cell *c);

/* Copies the cumulative cell under the lock (for /metrics). */
void agg_total(struct agg *a, size_t ep, size_t tbl, enum canary_op op, struct agg_cell *out);

#endif
