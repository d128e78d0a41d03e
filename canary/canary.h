/*
 * canary.h — the canary daemon's engine: probes on a fixed schedule against
 * every endpoint, aggregation per interval, PostgreSQL and /metrics sinks.
 *
 * A probe is one small customer transaction against one endpoint and one
 * table: PutItem of a fresh key -> GetItem ConsistentRead (must return the
 * written value, else error "consistent_read_mismatch") -> GetItem eventually
 * consistent (a miss counts as stale, not as an error) -> DeleteItem. A step
 * that fails stops the probe (later steps are not attempted: they would only
 * echo the first failure). Each step retries as the SDK standard retry mode
 * (net/retry.h); the retry quota is per endpoint, as an SDK client's is.
 *
 * Schedule: probe i of an endpoint is due at start + i / rate, whatever
 * happened to earlier ones (open loop); `workers` threads per endpoint take
 * the next due probe. Latency is measured from the due time: step 1 from the
 * due time, step k from the end of step k-1, and the whole probe (op
 * "probe") from the due time. A probe that could not start before its whole
 * retry budget (timeout x attempts) had elapsed — every worker stuck on a
 * stalled endpoint — is recorded as failed ("not_sent") rather than skipped,
 * so a stall never shows as fewer samples.
 *
 * Intervals close (agg.h) when no probe due inside them can still be running:
 * the watermark is the earliest due time still in flight or not yet handed
 * out, over every endpoint. Closed cells go to the sink as rows and to the
 * log (one line per endpoint per interval).
 *
 * Clock: due times are CLOCK_MONOTONIC; rows carry wall-clock time mapped
 * from one (monotonic, realtime) pair read at start, and the schedule starts
 * on an interval boundary so rows line up across canaries.
 *
 * Lifecycle: canary_start (threads run) -> canary_stop (from any thread or a
 * signal-handling loop: stop scheduling) -> canary_finish (joins, closes
 * every interval, flushes the sink within flush_timeout, frees).
 * Errors: canary_start: NERR_INVALID (config), NERR_NOMEM, NERR_IO (the
 * metrics port cannot be bound). Probe failures are data, not errors.
 * Thread-safety: canary_stop and canary_stats may be called from any thread.
 */
#ifndef NINES_CANARY_CANARY_H
#define NINES_CANARY_CANARY_H

#include <stdint.h>

#include "canary/cconfig.h"
#include "lib/err.h"

struct canary;

/* cfg is borrowed until canary_finish. */
int canary_start(const struct canary_config *cfg, struct canary **out, struct nerr *err);

/* Closes finished intervals and hands them to the sinks; call every few
 * hundred ms from the main loop. Returns the number of intervals closed. */
int canary_tick(struct canary *c);

void canary_stop(struct canary *c);
int canary_finish(struct canary *c, uint64_t flush_timeout_ns, struct nerr *err);

struct canary_stats {
    uint64_t probes, rows, dropped, written;
    uint64_t lag_p50_ns, lag_p99_ns, lag_max_ns; /* schedule lag, all endpoints */
};
void canary_stats(struct canary *c, struct canary_stats *out);

#endif
