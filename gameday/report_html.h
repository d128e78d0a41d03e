/*
 * report_html.h — a game day's report.html: the page a person opens next to
 * report.json (docs/gameday.md, "report.html"), generated from that JSON
 * alone.
 *
 * The page is self-contained: inline CSS and an inline SVG timeline, no
 * JavaScript, no fetches, so it opens from disk or as a CI artifact. It
 * shows the header (name, seed, PASSED/FAILED with the failure and the stop
 * reason, elapsed, the UTC date of s = 0), the timeline (per-AZ requests/s,
 * errors/s and p99, fault windows, alarm marks, step boundaries, the stop),
 * the totals, the steps, the expectations and the verifications (checker
 * anomalies as rows #anomaly-N, scrub findings as rows #finding-N, N from 1).
 *
 * Input contract: report is report.json's object (gameday/report.c plus the
 * keys t0_wall_ms, timeline, faults, alarms, expectations, stop, canaries).
 * Every key may be missing, null or of an unexpected type (an older report,
 * a run that failed early): what is there is rendered, the rest is left out
 * or shown as "-". Every string from it is HTML-escaped. The timeline's
 * polylines are reduced to at most two points per pixel column (the min and
 * max of the samples falling in it), so the page stays a few hundred KB
 * whatever the run's length.
 *
 * Stable hooks for tests and people: <svg id="timeline"> with data-x0,
 * data-x1 (the plot's left and right edges in SVG units) and data-t1 (the
 * seconds at data-x1; data-x0 is s = 0); <g class="series" data-az>,
 * <g class="fault" data-hosts data-kind>, <g class="alarm" data-state
 * data-alarm data-at>, <g class="step-mark" data-step>, <g class="stop">;
 * <tr class="expectation pass|fail">, <tr class="step" id="step-N">; ids of
 * the numbers (seed, elapsed, traffic-ok, ...). Numbers carry data-value
 * (exact, as in the JSON) beside the rounded text.
 *
 * gd_report_html writes path atomically (temp file, fsync, rename): a reader
 * sees the old page or the new one, never a part. Returns 0, NERR_INVALID
 * (report is not an object), NERR_NOMEM, or NERR_IO (with the path in err).
 *
 * Ownership: report is borrowed for the call and not modified. Thread-safety:
 * no shared state; concurrent calls on different paths are fine.
 */
#ifndef NINES_GAMEDAY_REPORT_HTML_H
#define NINES_GAMEDAY_REPORT_HTML_H

#include <jansson.h>

#include "lib/err.h"

int gd_report_html(const json_t *report, const char *path, struct nerr *err);

#endif
