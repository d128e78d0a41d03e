/*
 * alertmgr.h — pushes alarms to Alertmanager's API v2 (POST /api/v2/alerts).
 *
 * Each alarm becomes one alert with labels alertname (the rule), severity,
 * window, and the group's table / az (the endpoint AZ) / canary_az /
 * endpoint, and annotations burn_rate (or value), error_ratio, window,
 * summary. A firing alert carries startsAt and endsAt = now + 4 x resend
 * interval, as Prometheus does, so an evaluator that dies lets its alerts
 * expire instead of paging forever; a resolved one carries endsAt = now.
 *
 * Ownership: am_alert_json returns a new reference. am_push borrows alerts.
 * Errors: NERR_IO (no answer, or a non-2xx answer, with the body's start).
 * Thread-safety: one struct am_client per thread.
 */
#ifndef NINES_CANARY_ALERTMGR_H
#define NINES_CANARY_ALERTMGR_H

#include <jansson.h>
#include <stdint.h>

#include "canary/cfa.h"
#include "lib/err.h"

struct am_client;

int am_client_new(const char *base_url, struct am_client **out, struct nerr *err);
void am_client_free(struct am_client *c);

/* resolved: endsAt = at; else endsAt = at + ttl_ms. */
json_t *am_alert_json(const struct cfa_event *e, int resolved, int64_t ttl_ms);

/* alerts: a JSON array. */
int am_push(struct am_client *c, json_t *alerts, struct nerr *err);

/* RFC 3339 UTC with milliseconds. */
void am_fmt_time(int64_t ms, char *buf, size_t cap);

#endif
