#include "canary/canary.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "canary/agg.h"
#include "canary/pgsink.h"
#include "net/retry.h"
#include "canary/scrape.h"
#include "proto/ddb.h"
#include "lib/clock.h"
#include "lib/hist.h"
#include "lib/log.h"
#include "lib/rng.h"
#include "lib/strbuf.h"

#define NO_DUE UINT64_MAX

struct canary;

struct endpoint {
    struct canary *c;
    size_t idx;
    pthread_mutex_t mu;
    uint64_t next_slot;
    uint64_t *inflight; /* per worker: due time of its probe, NO_DUE when idle */
    struct retry_quota quota;
    struct hist lag; /* schedule lag: actual start - due */
    uint64_t probes;
    uint64_t last_create_ns; /* CreateTable retried at most every 5 s */
};

struct worker {
    struct endpoint *ep;
    size_t w;
    pthread_t thread;
    int started;
    struct rng rng;
};

struct canary {
    const struct canary_config *cfg;
    struct agg agg;
    struct endpoint *eps;
    struct worker *workers;
    size_t nworkers;
    uint64_t start_mono, period_ns;
    int64_t wall0_ms;   /* wall clock at start_mono */
    volatile int stopping;
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cv;
    struct pgsink *sink;
    struct pgsink *server_sink; /* server_samples, fed by the scraper */
    struct scraper *scraper;
    struct MHD_Daemon *mhd;
    uint64_t rows;
};

static int64_t mono_to_wall_ms(const struct canary *c, uint64_t mono)
{
    return c->wall0_ms + (int64_t)((mono - c->start_mono) / 1000000ull);
}

/* Sleeps until mono time t or until stopping; returns 1 when stopping. */
static int sleep_until(struct canary *c, uint64_t t)
{
    pthread_mutex_lock(&c->stop_mu);
    while (!c->stopping && clock_mono_ns() < t) {
        struct timespec ts = {.tv_sec = (time_t)(t / 1000000000ull),
                              .tv_nsec = (long)(t % 1000000000ull)};
        pthread_cond_timedwait(&c->stop_cv, &c->stop_mu, &ts);
    }
    int s = c->stopping;
    pthread_mutex_unlock(&c->stop_mu);
    return s;
}

/* ---- one step with the SDK's standard retries ----------------------------- */

struct step_result {
    int ok;
    char err_type[AGG_ERR_NAME];
    int retries;
    json_t *resp; /* the successful answer (owned) */
};

static void ensure_table(struct worker *wk, struct ddb_client *cl, const char *table);

static void call_with_retry(struct worker *wk, struct ddb_client *cl, const char *op, json_t *req,
                            struct step_result *r)
{
    struct endpoint *ep = wk->ep;
    const struct canary_config *cfg = ep->c->cfg;
    int taken = 0;
    memset(r, 0, sizeof *r);
    for (int attempt = 1;; attempt++) {
        int status = 0;
        json_t *resp = NULL;
        struct nerr e;
        int rc = ddb_call(cl, op, req, &status, &resp, &e);
        if (!rc && status < 300) {
            pthread_mutex_lock(&ep->mu);
            retry_quota_success(&ep->quota, taken);
            pthread_mutex_unlock(&ep->mu);
            r->ok = 1;
            r->resp = resp;
            return;
        }
        /* One error typing for every nines client (proto/ddb.h). */
        const char *type = ddb_client_error_type(cl);
        enum retry_class cls = retry_classify(rc, status, rc ? NULL : type);
        snprintf(r->err_type, sizeof r->err_type, "%s", type ? type : "unknown");
        if (type && !strcmp(type, "ResourceNotFoundException"))
            ensure_table(wk, cl, json_string_value(json_object_get(req, "TableName")));
        json_decref(resp);
        if (cls == RETRY_NO || attempt >= cfg->max_attempts || ep->c->stopping)
            return;
        pthread_mutex_lock(&ep->mu);
        int cost = retry_quota_acquire(&ep->quota, cls);
        pthread_mutex_unlock(&ep->mu);
        if (!cost) {
            /* The SDK gives up at once when the quota cannot pay. */
            return;
        }
        taken += cost;
        r->retries++;
        uint64_t d = retry_backoff_ns(attempt, cfg->retry_base_ns, cfg->retry_max_backoff_ns,
                                      rng_unit(&wk->rng));
        if (sleep_until(ep->c, clock_mono_ns() + d))
            return;
    }
}

/* CreateTable once, as the canary always did: a probe that finds no
 * table tries again (ensure_table), so there is no wait here for the
 * table to become ACTIVE, and no retry that would hold up probes. */
static int create_table(struct ddb_client *cl, const char *table, struct nerr *err)
{
    json_t *req = json_pack("{s:s, s:[{s:s, s:s}], s:[{s:s, s:s}], s:s}", "TableName", table,
                            "KeySchema", "AttributeName", "pk", "KeyType", "HASH",
                            "AttributeDefinitions", "AttributeName", "pk", "AttributeType", "S",
                            "BillingMode", "PAY_PER_REQUEST");
    struct ddb_ensure_opts o = {.create_tries = 1, .active_wait_ms = 0};
    int rc =
        req ? ddb_ensure_table(&cl, 1, req, &o, err) : nerr_set(err, NERR_NOMEM, "out of memory");
    json_decref(req);
    return rc;
}

static void ensure_table(struct worker *wk, struct ddb_client *cl, const char *table)
{
    struct endpoint *ep = wk->ep;
    uint64_t now = clock_mono_ns();
    if (!table || !ep->c->cfg->create_tables)
        return;
    pthread_mutex_lock(&ep->mu);
    int go = now - ep->last_create_ns > 5000000000ull || !ep->last_create_ns;
    if (go)
        ep->last_create_ns = now;
    pthread_mutex_unlock(&ep->mu);
    struct nerr e;
    if (go && create_table(cl, table, &e))
        log_warn("canary: %s", e.msg);
}

/* ---- one probe ------------------------------------------------------------ */

static void record(struct worker *wk, uint64_t due, size_t tbl, enum canary_op op,
                   const struct step_result *r, int stale, uint64_t lat)
{
    struct canary *c = wk->ep->c;
    agg_record(&c->agg, mono_to_wall_ms(c, due), wk->ep->idx, tbl, op, r->ok,
               r->ok ? NULL : r->err_type, r->retries, stale, lat);
}

static void run_probe(struct worker *wk, struct ddb_client *cl, uint64_t slot, uint64_t due)
{
    struct endpoint *ep = wk->ep;
    struct canary *c = ep->c;
    const struct canary_config *cfg = c->cfg;
    size_t tbl = (size_t)(slot % cfg->ntables);
    const char *table = cfg->tables[tbl];
    char key[160], val[40];
    snprintf(key, sizeof key, "canary/%s/%s/%" PRIu64 "/%016" PRIx64, c->cfg->az,
             cfg->endpoints[ep->idx].name, slot, rng_next(&wk->rng));
    snprintf(val, sizeof val, "%016" PRIx64, rng_next(&wk->rng));
    struct step_result r = {0}, probe = {.ok = 1};
    uint64_t t0 = due, t1;
    int total_retries = 0;
    enum canary_op steps[] = {COP_PUT, COP_CGET, COP_GET, COP_DELETE};
    for (int s = 0; s < 4; s++) {
        json_t *req;
        const char *op;
        switch (steps[s]) {
        case COP_PUT:
            op = "PutItem";
            req = json_pack("{s:s, s:{s:{s:s}, s:{s:s}}}", "TableName", table, "Item", "pk", "S",
                            key, "v", "S", val);
            break;
        case COP_CGET:
        case COP_GET:
            op = "GetItem";
            req = json_pack("{s:s, s:{s:{s:s}}, s:b}", "TableName", table, "Key", "pk", "S", key,
                            "ConsistentRead", steps[s] == COP_CGET);
            break;
        default:
            op = "DeleteItem";
            req = json_pack("{s:s, s:{s:{s:s}}}", "TableName", table, "Key", "pk", "S", key);
        }
        if (!req) {
            log_error("canary: out of memory");
            return;
        }
        call_with_retry(wk, cl, op, req, &r);
        json_decref(req);
        t1 = clock_mono_ns();
        int stale = 0;
        if (r.ok && (steps[s] == COP_CGET || steps[s] == COP_GET)) {
            const char *got = json_string_value(
                json_object_get(json_object_get(json_object_get(r.resp, "Item"), "v"), "S"));
            int match = got && !strcmp(got, val);
            if (!match && steps[s] == COP_CGET) {
                r.ok = 0;
                snprintf(r.err_type, sizeof r.err_type, "consistent_read_mismatch");
            }
            stale = !match && steps[s] == COP_GET;
        }
        json_decref(r.resp);
        r.resp = NULL;
        record(wk, due, tbl, steps[s], &r, stale, t1 - t0);
        total_retries += r.retries;
        t0 = t1;
        if (!r.ok) {
            probe.ok = 0;
            snprintf(probe.err_type, sizeof probe.err_type, "%.16s_%.30s", canary_op_names[steps[s]],
                     r.err_type);
            break;
        }
    }
    probe.retries = total_retries;
    record(wk, due, tbl, COP_PROBE, &probe, 0, t0 - due);
}

static void *worker_main(void *arg)
{
    struct worker *wk = arg;
    struct endpoint *ep = wk->ep;
    struct canary *c = ep->c;
    const struct canary_config *cfg = c->cfg;
    struct ddb_client *cl = NULL;
    struct nerr e;
    struct ddb_client_options o = {.endpoint = cfg->endpoints[ep->idx].url,
                                   .access_key_id = cfg->access_key_id,
                                   .secret_access_key = cfg->secret_access_key,
                                   .region = cfg->region,
                                   .timeout_ms = (long)(cfg->timeout_ns / 1000000ull)};
    if (o.timeout_ms < 1)
        o.timeout_ms = 1;
    if (ddb_client_new(&o, &cl, &e)) {
        log_error("canary: %s", e.msg);
        return NULL;
    }
    if (wk->w == 0 && cfg->create_tables)
        for (size_t t = 0; t < cfg->ntables; t++)
            if (create_table(cl, cfg->tables[t], &e))
                log_warn("canary: endpoint %s: %s (will retry when probes see "
                         "ResourceNotFoundException)",
                         cfg->endpoints[ep->idx].name, e.msg);
    uint64_t budget = cfg->timeout_ns * (uint64_t)cfg->max_attempts;
    for (;;) {
        pthread_mutex_lock(&ep->mu);
        uint64_t slot = ep->next_slot++;
        uint64_t due = c->start_mono + (uint64_t)((double)slot * (double)c->period_ns);
        ep->inflight[wk->w] = due;
        pthread_mutex_unlock(&ep->mu);
        if (sleep_until(c, due)) {
            pthread_mutex_lock(&ep->mu);
            ep->inflight[wk->w] = NO_DUE;
            pthread_mutex_unlock(&ep->mu);
            break;
        }
        uint64_t now = clock_mono_ns();
        pthread_mutex_lock(&ep->mu);
        hist_record(&ep->lag, now - due);
        ep->probes++;
        pthread_mutex_unlock(&ep->mu);
        if (now - due > budget) {
            struct step_result r = {.ok = 0};
            snprintf(r.err_type, sizeof r.err_type, "not_sent");
            record(wk, due, (size_t)(slot % cfg->ntables), COP_PUT, &r, 0, now - due);
            snprintf(r.err_type, sizeof r.err_type, "put_not_sent");
            record(wk, due, (size_t)(slot % cfg->ntables), COP_PROBE, &r, 0, now - due);
        } else {
            run_probe(wk, cl, slot, due);
        }
        pthread_mutex_lock(&ep->mu);
        ep->inflight[wk->w] = NO_DUE;
        pthread_mutex_unlock(&ep->mu);
    }
    ddb_client_free(cl);
    return NULL;
}

/* ---- sinks ---------------------------------------------------------------- */

static void on_cell(void *arg, int64_t start_ms, int64_t interval_ms, size_t ep, size_t tbl,
                    enum canary_op op, const struct agg_cell *cell)
{
    struct canary *c = arg;
    const struct canary_config *cfg = c->cfg;
    c->rows++;
    if (op == COP_PROBE && !cfg->on_sample) { /* an observer reports for itself */
        char ts[40], errs[256] = "";
        size_t off = 0;
        pgsink_fmt_ts(start_ms, ts, sizeof ts);
        for (int i = 0; i < AGG_MAX_ERR_TYPES && cell->err_name[i][0] && off < sizeof errs; i++)
            off += (size_t)snprintf(errs + off, sizeof errs - off, " %s=%" PRIu64,
                                    cell->err_name[i], cell->err_count[i]);
        log_info("interval %s %s/%s table %s: probes %" PRIu64 " ok %" PRIu64 " retries %" PRIu64
                 " p50 %.1fms p99 %.1fms%s",
                 ts, cfg->endpoints[ep].az, cfg->endpoints[ep].name, cfg->tables[tbl],
                 cell->attempts, cell->successes, cell->retries,
                 (double)hist_percentile(&cell->lat, 50) / 1e6,
                 (double)hist_percentile(&cell->lat, 99) / 1e6, errs);
    }
    if (cfg->on_sample) {
        struct canary_sample s = {start_ms,
                                  interval_ms,
                                  cfg->az,
                                  cfg->endpoints[ep].name,
                                  cfg->endpoints[ep].az,
                                  cfg->tables[tbl],
                                  canary_op_names[op],
                                  cell->attempts,
                                  agg_cell_errors(cell),
                                  cell->retries,
                                  cell->lat.count ? (uint64_t)hist_percentile(&cell->lat, 99) : 0};
        cfg->on_sample(cfg->on_sample_arg, &s);
    }
    if (!c->sink)
        return;
    struct pgsink_labels l = {cfg->az, cfg->endpoints[ep].name, cfg->endpoints[ep].az,
                              cfg->tables[tbl], canary_op_names[op]};
    struct pgsink_row *row = NULL;
    if (pgsink_row_sample(start_ms, interval_ms, &l, cell, &row))
        log_error("canary: out of memory formatting a sample");
    else
        pgsink_push(c->sink, row);
}

static uint64_t watermark(struct canary *c)
{
    uint64_t wm = NO_DUE;
    for (size_t i = 0; i < c->cfg->nendpoints; i++) {
        struct endpoint *ep = &c->eps[i];
        pthread_mutex_lock(&ep->mu);
        uint64_t next = c->start_mono + (uint64_t)((double)ep->next_slot * (double)c->period_ns);
        if (next < wm)
            wm = next;
        for (int w = 0; w < c->cfg->workers; w++)
            if (ep->inflight[w] < wm)
                wm = ep->inflight[w];
        pthread_mutex_unlock(&ep->mu);
    }
    return wm;
}

int canary_tick(struct canary *c)
{
    uint64_t wm = watermark(c);
    /* Nothing in flight below the next due time: every interval that ends
     * before it is complete. */
    int64_t wms = wm == NO_DUE ? INT64_MAX : mono_to_wall_ms(c, wm);
    return agg_close_until(&c->agg, wms, on_cell, c);
}

void canary_stats(struct canary *c, struct canary_stats *out)
{
    memset(out, 0, sizeof *out);
    struct hist *lag = malloc(sizeof *lag);
    if (lag)
        hist_init(lag);
    for (size_t i = 0; i < c->cfg->nendpoints; i++) {
        pthread_mutex_lock(&c->eps[i].mu);
        out->probes += c->eps[i].probes;
        if (lag)
            hist_merge(lag, &c->eps[i].lag);
        pthread_mutex_unlock(&c->eps[i].mu);
    }
    if (lag) {
        out->lag_p50_ns = hist_percentile(lag, 50);
        out->lag_p99_ns = hist_percentile(lag, 99);
        out->lag_max_ns = hist_max(lag);
        free(lag);
    }
    out->rows = c->rows;
    if (c->sink) {
        struct pgsink_stats st;
        pgsink_stats(c->sink, &st);
        out->dropped = st.dropped;
        out->written = st.written;
    }
}

/* ---- /metrics --------------------------------------------------------------- */

static void prom_label(struct strbuf *b, const char *k, const char *v, int comma)
{
    if (comma)
        strbuf_ch(b, ',');
    strbuf_str(b, k);
    strbuf_str(b, "=\"");
    for (; *v; v++) {
        if (*v == '"' || *v == '\\')
            strbuf_ch(b, '\\');
        if (*v == '\n') {
            strbuf_str(b, "\\n");
            continue;
        }
        strbuf_ch(b, *v);
    }
    strbuf_ch(b, '"');
}

static char *metrics_text(struct canary *c)
{
    const struct canary_config *cfg = c->cfg;
    struct strbuf b = {0};
    char num[256];
    struct agg_cell *cell = malloc(sizeof *cell);
    if (!cell)
        return NULL;
    strbuf_str(&b, "# HELP nines_canary_requests_total Canary operations scheduled, by outcome.\n"
                   "# TYPE nines_canary_requests_total counter\n"
                   "# HELP nines_canary_errors_total Canary operation failures after retries, by "
                   "type.\n# TYPE nines_canary_errors_total counter\n"
                   "# HELP nines_canary_retries_total Extra attempts made by the SDK retry mode.\n"
                   "# TYPE nines_canary_retries_total counter\n"
                   "# HELP nines_canary_stale_reads_total Eventually consistent reads that missed "
                   "the write.\n# TYPE nines_canary_stale_reads_total counter\n"
                   "# HELP nines_canary_latency_seconds Latency in the last closed interval.\n"
                   "# TYPE nines_canary_latency_seconds summary\n");
    for (size_t ep = 0; ep < cfg->nendpoints; ep++)
        for (size_t t = 0; t < cfg->ntables; t++)
            for (int op = 0; op < COP_N; op++) {
                agg_total(&c->agg, ep, t, (enum canary_op)op, cell);
                struct strbuf l = {0};
                char *ls = NULL;
                prom_label(&l, "canary_az", cfg->az, 0);
                prom_label(&l, "endpoint", cfg->endpoints[ep].name, 1);
                prom_label(&l, "endpoint_az", cfg->endpoints[ep].az, 1);
                prom_label(&l, "table", cfg->tables[t], 1);
                prom_label(&l, "op", canary_op_names[op], 1);
                if (strbuf_finish(&l, &ls))
                    continue;
                snprintf(num, sizeof num, "\",outcome=\"ok\"} %" PRIu64 "\n", cell->successes);
                strbuf_str(&b, "nines_canary_requests_total{");
                strbuf_str(&b, ls);
                strbuf_add(&b, num + 1, strlen(num + 1));
                snprintf(num, sizeof num, ",outcome=\"error\"} %" PRIu64 "\n",
                         agg_cell_errors(cell));
                strbuf_str(&b, "nines_canary_requests_total{");
                strbuf_str(&b, ls);
                strbuf_str(&b, num);
                for (int i = 0; i < AGG_MAX_ERR_TYPES && cell->err_name[i][0]; i++) {
                    strbuf_str(&b, "nines_canary_errors_total{");
                    strbuf_str(&b, ls);
                    prom_label(&b, "type", cell->err_name[i], 1);
                    snprintf(num, sizeof num, "} %" PRIu64 "\n", cell->err_count[i]);
                    strbuf_str(&b, num);
                }
                const char *names[] = {"nines_canary_retries_total{",
                                       "nines_canary_stale_reads_total{"};
                uint64_t vals[] = {cell->retries, cell->stale};
                for (int i = 0; i < 2; i++) {
                    strbuf_str(&b, names[i]);
                    strbuf_str(&b, ls);
                    snprintf(num, sizeof num, "} %" PRIu64 "\n", vals[i]);
                    strbuf_str(&b, num);
                }
                const double qs[] = {0.5, 0.9, 0.99, 0.999};
                for (int i = 0; i < 4 && hist_count(&cell->lat); i++) {
                    strbuf_str(&b, "nines_canary_latency_seconds{");
                    strbuf_str(&b, ls);
                    snprintf(num, sizeof num, ",quantile=\"%g\"} %.6f\n", qs[i],
                             (double)hist_percentile(&cell->lat, qs[i] * 100) / 1e9);
                    strbuf_str(&b, num);
                }
                free(ls);
            }
    free(cell);
    struct canary_stats st;
    canary_stats(c, &st);
    snprintf(num, sizeof num,
             "# TYPE nines_canary_schedule_lag_seconds summary\n"
             "nines_canary_schedule_lag_seconds{quantile=\"0.5\"} %.6f\n",
             (double)st.lag_p50_ns / 1e9);
    strbuf_str(&b, num);
    snprintf(num, sizeof num, "nines_canary_schedule_lag_seconds{quantile=\"0.99\"} %.6f\n",
             (double)st.lag_p99_ns / 1e9);
    strbuf_str(&b, num);
    snprintf(num, sizeof num, "nines_canary_schedule_lag_seconds{quantile=\"1\"} %.6f\n",
             (double)st.lag_max_ns / 1e9);
    strbuf_str(&b, num);
    snprintf(num, sizeof num, "# TYPE nines_canary_probes_total counter\nnines_canary_probes_total %"
                              PRIu64 "\n", st.probes);
    strbuf_str(&b, num);
    if (c->sink) {
        struct pgsink_stats ps;
        pgsink_stats(c->sink, &ps);
        snprintf(num, sizeof num,
                 "# TYPE nines_canary_sink_rows_total counter\nnines_canary_sink_rows_total{"
                 "state=\"written\"} %" PRIu64 "\n",
                 ps.written);
        strbuf_str(&b, num);
        snprintf(num, sizeof num, "nines_canary_sink_rows_total{state=\"dropped\"} %" PRIu64 "\n",
                 ps.dropped);
        strbuf_str(&b, num);
        snprintf(num, sizeof num,
                 "# TYPE nines_canary_sink_queued gauge\nnines_canary_sink_queued %" PRIu64
                 "\n# TYPE nines_canary_sink_connected gauge\nnines_canary_sink_connected %d\n",
                 ps.queued, ps.connected);
        strbuf_str(&b, num);
    }
    char *out = NULL;
    return strbuf_finish(&b, &out) ? NULL : out;
}

static enum MHD_Result on_http(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *data,
                               size_t *data_size, void **req_cls)
{
    struct canary *c = cls;
    struct MHD_Response *resp;
    unsigned code = MHD_HTTP_OK;
    if (strcmp(method, "GET")) {
        static char msg[] = "method not allowed\n";
        code = MHD_HTTP_METHOD_NOT_ALLOWED;
        resp = MHD_create_response_from_buffer(strlen(msg), msg, MHD_RESPMEM_PERSISTENT);
    } else if (strcmp(url, "/metrics")) {
        static char msg[] = "not found: try /metrics\n";
        code = MHD_HTTP_NOT_FOUND;
        resp = MHD_create_response_from_buffer(strlen(msg), msg, MHD_RESPMEM_PERSISTENT);
    } else {
        char *text = metrics_text(c);
        if (!text)
            return MHD_NO;
        resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4");
    }
    enum MHD_Result r = MHD_queue_response(conn, code, resp);
    MHD_destroy_response(resp);
    return r;
}

/* ---- lifecycle ---------------------------------------------------------------- */

static void free_canary(struct canary *c)
{
    if (c->eps)
        for (size_t i = 0; i < c->cfg->nendpoints; i++) {
            free(c->eps[i].inflight);
            pthread_mutex_destroy(&c->eps[i].mu);
        }
    free(c->eps);
    free(c->workers);
    agg_destroy(&c->agg);
    pthread_mutex_destroy(&c->stop_mu);
    pthread_cond_destroy(&c->stop_cv);
    free(c);
}

int canary_start(const struct canary_config *cfg, struct canary **out, struct nerr *err)
{
    struct canary *c = calloc(1, sizeof *c);
    int rc;
    if (!c)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    c->cfg = cfg;
    pthread_mutex_init(&c->stop_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->stop_cv, &ca);
    pthread_condattr_destroy(&ca);
    if ((rc = agg_init(&c->agg, cfg->nendpoints, cfg->ntables,
                       (int64_t)(cfg->interval_ns / 1000000ull), err))) {
        free(c);
        return rc;
    }
    c->eps = calloc(cfg->nendpoints, sizeof *c->eps);
    c->nworkers = cfg->nendpoints * (size_t)cfg->workers;
    c->workers = calloc(c->nworkers, sizeof *c->workers);
    if (!c->eps || !c->workers) {
        free(c->eps);
        c->eps = NULL;
        free_canary(c);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < cfg->nendpoints; i++) {
        struct endpoint *ep = &c->eps[i];
        ep->c = c;
        ep->idx = i;
        pthread_mutex_init(&ep->mu, NULL);
        retry_quota_init(&ep->quota, cfg->retry_quota);
        hist_init(&ep->lag);
        ep->inflight = malloc((size_t)cfg->workers * sizeof *ep->inflight);
        if (!ep->inflight) {
            free_canary(c);
            return nerr_set(err, NERR_NOMEM, "out of memory");
        }
        for (int w = 0; w < cfg->workers; w++)
            ep->inflight[w] = NO_DUE;
    }
    c->period_ns = (uint64_t)(1e9 / cfg->rate);
    /* Start on the next interval boundary (at most one interval away, but no
     * more than 2 s: a long interval should not delay the first probe). */
    uint64_t m = clock_mono_ns();
    int64_t w = clock_wall_ms();
    int64_t iv = c->agg.interval_ms;
    int64_t wait_ms = (iv - w % iv) % iv;
    if (wait_ms > 2000)
        wait_ms = (1000 - w % 1000) % 1000;
    c->start_mono = m + (uint64_t)wait_ms * 1000000ull;
    c->wall0_ms = w + wait_ms;
    if (cfg->pg_dsn) {
        struct pgsink_opts po = {.dsn = cfg->pg_dsn, .max_rows = cfg->buffer_rows,
                                 .flush_ns = cfg->flush_ns};
        if ((rc = pgsink_open(&po, &c->sink, err))) {
            free_canary(c);
            return rc;
        }
        if (cfg->server_metrics) {
            po.table = "server_samples";
            po.columns = PGSINK_SERVER_COLUMNS;
            po.streams = 1; /* a few rows per endpoint per interval */
            if ((rc = pgsink_open(&po, &c->server_sink, err)) ||
                (rc = scraper_start(cfg, c->server_sink, &c->scraper, err)))
                goto fail;
        }
    }
    if (cfg->metrics_host) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg->metrics_port)};
        if (inet_pton(AF_INET, cfg->metrics_host, &sa.sin_addr) != 1) {
            rc = nerr_set(err, NERR_INVALID, "metrics.listen: '%s' is not an IPv4 address",
                          cfg->metrics_host);
            goto fail;
        }
        c->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
                                  (uint16_t)cfg->metrics_port, NULL, NULL, on_http, c,
                                  MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                                  MHD_OPTION_END);
        if (!c->mhd) {
            rc = nerr_set(err, NERR_IO, "cannot listen on %s:%d for /metrics", cfg->metrics_host,
                          cfg->metrics_port);
            goto fail;
        }
    }
    for (size_t i = 0; i < c->nworkers; i++) {
        struct worker *wk = &c->workers[i];
        wk->ep = &c->eps[i / (size_t)cfg->workers];
        wk->w = i % (size_t)cfg->workers;
        rng_seed(&wk->rng, (m + i * 7919u) ^ ((uint64_t)getpid() << 32));
        int e = pthread_create(&wk->thread, NULL, worker_main, wk);
        if (e) {
            rc = nerr_sys(err, e, "pthread_create");
            canary_stop(c);
            canary_finish(c, 0, NULL);
            return rc;
        }
        wk->started = 1;
    }
    log_info("canary %s: %zu endpoints x %zu tables, %.3g probes/s each, interval %" PRId64
             " ms, %d workers per endpoint%s%s%s",
             cfg->az, cfg->nendpoints, cfg->ntables, cfg->rate, iv, cfg->workers,
             c->sink ? ", postgres sink" : "", c->mhd ? ", /metrics" : "",
             c->scraper ? ", scraping server metrics" : "");
    *out = c;
    return 0;
fail:
    scraper_stop(c->scraper);
    pgsink_close(c->server_sink, 0, NULL);
    if (c->sink)
        pgsink_close(c->sink, 0, NULL);
    free_canary(c);
    return rc;
}

void canary_stop(struct canary *c)
{
    pthread_mutex_lock(&c->stop_mu);
    c->stopping = 1;
    pthread_cond_broadcast(&c->stop_cv);
    pthread_mutex_unlock(&c->stop_mu);
}

int canary_finish(struct canary *c, uint64_t flush_timeout_ns, struct nerr *err)
{
    int rc = 0;
    for (size_t i = 0; i < c->nworkers; i++)
        if (c->workers[i].started)
            pthread_join(c->workers[i].thread, NULL);
    /* Every probe is over: close every interval, partial ones included. */
    agg_close_until(&c->agg, INT64_MAX, on_cell, c);
    if (c->mhd)
        MHD_stop_daemon(c->mhd);
    scraper_stop(c->scraper);
    if (c->server_sink) {
        struct nerr e2;
        if (pgsink_close(c->server_sink, flush_timeout_ns, &e2))
            log_warn("canary: server samples: %s", e2.msg);
    }
    if (c->sink) {
        struct pgsink_stats st;
        pgsink_stats(c->sink, &st);
        rc = pgsink_close(c->sink, flush_timeout_ns, err);
        log_info("canary: stopped; %" PRIu64 " rows written to postgres, %" PRIu64 " dropped",
                 st.written, st.dropped);
    }
    free_canary(c);
    return rc;
}
