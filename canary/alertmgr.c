#include "canary/alertmgr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net/http.h"

struct am_client {
    struct http_client *http;
    struct http_response rs;
    char *url;
};

int am_client_new(const char *base_url, struct am_client **out, struct nerr *err)
{
    struct am_client *c = calloc(1, sizeof *c);
    if (!c || http_client_new(&c->http, NULL) ||
        asprintf(&c->url, "%s%sapi/v2/alerts", base_url,
                 base_url[strlen(base_url) - 1] == '/' ? "" : "/") < 0) {
        if (c)
            http_client_free(c->http);
        free(c);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    *out = c;
    return 0;
}

void am_client_free(struct am_client *c)
{
    if (!c)
        return;
    http_client_free(c->http);
    http_response_free(&c->rs);
    free(c->url);
    free(c);
}

void am_fmt_time(int64_t ms, char *buf, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

json_t *am_alert_json(const struct cfa_event *e, int resolved, int64_t ttl_ms)
{
    static const char *const lname[4] = {"table", "az", "canary_az", "endpoint"};
    char starts[80], ends[80], num[64], summary[512]; /* room for any year am_fmt_time can print */
    json_t *labels = json_object(), *ann = json_object();
    json_object_set_new(labels, "alertname", json_string(e->rule->name));
    json_object_set_new(labels, "severity", json_string(e->severity));
    json_object_set_new(labels, "window", json_string(e->window));
    json_object_set_new(labels, "source", json_string("nines-cfa"));
    for (int d = 0; d < 4; d++)
        if (e->labels[d])
            json_object_set_new(labels, lname[d], json_string(e->labels[d]));
    const char *vname = e->rule->kind == CFA_BURN        ? "burn_rate"
                        : e->rule->kind == CFA_THRESHOLD ? "errors"
                                                         : "silent_seconds";
    snprintf(num, sizeof num, "%.4g", e->value);
    json_object_set_new(ann, vname, json_string(num));
    snprintf(num, sizeof num, "%.6f", e->error_ratio);
    json_object_set_new(ann, "error_ratio", json_string(num));
    json_object_set_new(ann, "window", json_string(e->window));
    if (e->rule->kind == CFA_BURN)
        snprintf(summary, sizeof summary, "%s: error budget burning at %.1fx over %s (%s)",
                 e->rule->name, e->value, e->window, e->group_key);
    else if (e->rule->kind == CFA_THRESHOLD)
        snprintf(summary, sizeof summary, "%s: %.0f errors, %s (%s)", e->rule->name, e->value,
                 e->window, e->group_key);
    else
        snprintf(summary, sizeof summary, "%s: canary silent for %.0f s (%s)", e->rule->name,
                 e->value, e->group_key);
    json_object_set_new(ann, "summary", json_string(summary));
    am_fmt_time(e->since_ms ? e->since_ms : e->at_ms, starts, sizeof starts);
    am_fmt_time(resolved ? e->at_ms : e->at_ms + ttl_ms, ends, sizeof ends);
    return json_pack("{s:o, s:o, s:s, s:s, s:s}", "labels", labels, "annotations", ann,
                     "startsAt", starts, "endsAt", ends, "generatorURL",
                     "http://localhost/nines/cfa");
}

int am_push(struct am_client *c, json_t *alerts, struct nerr *err)
{
    static const char *const headers[] = {"Content-Type: application/json", NULL};
    char *body = json_dumps(alerts, JSON_COMPACT);
    int rc = 0;
    if (!body)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    /* Alertmanager answers a push with a short status; 1 MiB is far more
     * than it ever sends. */
    struct http_request rq = {.method = "POST",
                              .url = c->url,
                              .headers = headers,
                              .body = body,
                              .body_len = strlen(body),
                              .timeout_ms = 5000,
                              .max_body = 1u << 20};
    if (http_call(c->http, &rq, &c->rs, NULL)) {
        rc = nerr_set(err, NERR_IO, "alertmanager %s: %s", c->url, c->rs.error);
        goto out;
    }
    if (c->rs.status < 200 || c->rs.status >= 300)
        rc = nerr_set(err, NERR_IO, "alertmanager %s: HTTP %ld: %.200s", c->url, c->rs.status,
                      c->rs.body);
out:
    free(body);
    return rc;
}
