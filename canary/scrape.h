/*
 * scrape.h — server-side request counts: the canary scrapes every endpoint's
 * `GET /metrics` (ninesd, Prometheus text format) once per interval and
 * stores per-interval DELTAS in server_samples, so the CFA evaluator can
 * measure availability on the server's side too (`source: server` rules).
 *
 * What is read: only
 *     nines_api_requests_total{table="T",op="PutItem",outcome="ok"} 123
 * with outcome ok, client_error or server_error (table "-" for requests
 * without one). Other lines, comments and unknown outcomes are skipped.
 *
 * Deltas (scrape_delta): per (table, op), this scrape minus the previous
 * one. Counters only grow while ninesd runs; when any series went down or
 * vanished, the node restarted between the scrapes and every counter began
 * again at 0, so the delta of every series is its current value (as
 * Prometheus' rate() treats a reset). A delta is therefore never negative.
 * A series new since the previous scrape counts from 0.
 *
 * Schedule (scraper_start): one thread per endpoint wakes on every interval
 * boundary of the wall clock (the canary's own intervals line up on the same
 * boundaries) and scrapes; the delta between the scrapes at t0 and t1 becomes
 * rows with ts = t0 and interval_ms = t1 - t0 (longer than one interval when
 * scrapes failed in between: the counts are still right, just coarser). The
 * first scrape only sets the baseline. Series that saw no request in the
 * interval give no row (an idle table is not a sample of anything). An
 * endpoint that does not serve /metrics (404) is logged once and retried
 * quietly.
 *
 * Signing: with credentials in the config (cconfig.h), every scrape is a
 * SigV4-signed GET (Host and X-Amz-Date signed, empty body), as a node
 * whose cluster has credentials answers /metrics only to that
 * (docs/security.md). A refused scrape (400 with the DynamoDB error: no or
 * wrong credentials) is logged once, with the error, like any failure.
 *
 * Ownership: a snapshot owns its array (scrape_snapshot_free). The scraper
 * borrows cfg and sink until scraper_stop, which joins every thread.
 * Errors: scrape_parse: NERR_NOMEM only (bad lines are skipped).
 * scraper_start: NERR_NOMEM, or pthread_create's error.
 * Thread-safety: the pure functions are reentrant; scraper_stats from any
 * thread.
 */
#ifndef NINES_CANARY_SCRAPE_H
#define NINES_CANARY_SCRAPE_H

#include <stddef.h>
#include <stdint.h>

#include "canary/cconfig.h"
#include "canary/pgsink.h"
#include "lib/err.h"

enum { SCRAPE_OK = 0, SCRAPE_CLIENT_ERROR, SCRAPE_SERVER_ERROR, SCRAPE_NOUTCOMES };

#define SCRAPE_TABLE 256
#define SCRAPE_OP 64

struct scrape_series {
    char table[SCRAPE_TABLE];
    char op[SCRAPE_OP];
    uint64_t n[SCRAPE_NOUTCOMES];
};

/* Series sorted by (table, op), one entry each. */
struct scrape_snapshot {
    struct scrape_series *v;
    size_t n;
};

int scrape_parse(const char *text, struct scrape_snapshot *out, struct nerr *err);
void scrape_snapshot_free(struct scrape_snapshot *s);

/* out (malloc'd, cur->n entries, in cur's order) = cur - prev as described
 * above; *reset tells whether a restart was detected. 0 or NERR_NOMEM. */
int scrape_delta(const struct scrape_snapshot *prev, const struct scrape_snapshot *cur,
                 struct scrape_series **out, int *reset);

struct scraper;

struct scraper_stats {
    uint64_t scrapes, failures, rows, resets;
};

/* interval_ms and the per-scrape timeout come from cfg (interval, timeout). */
int scraper_start(const struct canary_config *cfg, struct pgsink *sink, struct scraper **out,
                  struct nerr *err);
void scraper_stats(struct scraper *s, struct scraper_stats *out);
void scraper_stop(struct scraper *s);

#endif
