#include "canary/pgsink.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"
#include "lib/strbuf.h"

#define SAMPLE_COLUMNS                                                                             \
    "ts, interval_ms, canary_az, endpoint, endpoint_az, tbl, op, attempts, successes, retries, "  \
    "stale, errors, hist_idx, hist_cnt"

static const char *const migrations[] = {
    /* 1 */
    "CREATE TABLE canary_samples ("
    " id bigserial PRIMARY KEY, ts timestamptz NOT NULL, interval_ms integer NOT NULL,"
    " canary_az text NOT NULL, endpoint text NOT NULL, endpoint_az text NOT NULL,"
    " tbl text NOT NULL, op text NOT NULL, attempts bigint NOT NULL, successes bigint NOT NULL,"
    " retries bigint NOT NULL, stale bigint NOT NULL, errors jsonb NOT NULL,"
    " hist_idx integer[] NOT NULL, hist_cnt bigint[] NOT NULL,"
    " inserted_at timestamptz NOT NULL DEFAULT now());"
    "CREATE INDEX canary_samples_ts ON canary_samples USING brin (ts);"
    "CREATE INDEX canary_samples_inserted ON canary_samples USING brin (inserted_at);",
    /* 2 */
    "CREATE TABLE alarm_transitions ("
    " id bigserial PRIMARY KEY, at timestamptz NOT NULL, alarm text NOT NULL,"
    " severity text NOT NULL, window_spec text NOT NULL, group_key text NOT NULL,"
    " labels jsonb NOT NULL, from_state text NOT NULL, to_state text NOT NULL,"
    " value double precision, error_ratio double precision, recorded_at timestamptz NOT NULL"
    " DEFAULT now());"
    "CREATE INDEX alarm_transitions_at ON alarm_transitions (at);",
    /* 3 */
    "CREATE TABLE server_samples ("
    " id bigserial PRIMARY KEY, ts timestamptz NOT NULL, interval_ms integer NOT NULL,"
    " endpoint text NOT NULL, endpoint_az text NOT NULL, tbl text NOT NULL, op text NOT NULL,"
    " requests bigint NOT NULL, errors bigint NOT NULL,"
    " inserted_at timestamptz NOT NULL DEFAULT now());"
    "CREATE INDEX server_samples_ts ON server_samples USING brin (ts);",
};

/* PQerrorMessage ends in a newline (and may hold several lines): one log
 * line per message reads better. */
static const char *pg_msg(PGconn *c, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", PQerrorMessage(c));
    for (char *p = buf; *p; p++)
        if (*p == '\n')
            *p = p[1] ? ' ' : 0;
    return buf;
}

static int exec_ok(PGconn *c, const char *sql, struct nerr *err)
{
    char mb[400];
    PGresult *r = PQexec(c, sql);
    int st = PQresultStatus(r);
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = nerr_set(err, NERR_IO, "postgres: %s", pg_msg(c, mb, sizeof mb));
    PQclear(r);
    return rc;
}

int pgsink_migrate(PGconn *c, struct nerr *err)
{
    char mb[400];
    int rc;
    int n = (int)(sizeof migrations / sizeof migrations[0]);
    if ((rc = exec_ok(c, "BEGIN", err)))
        return rc;
    if ((rc = exec_ok(c, "SELECT pg_advisory_xact_lock(7007007);"
                         "CREATE TABLE IF NOT EXISTS nines_schema (version integer NOT NULL);",
                      err)))
        goto fail;
    PGresult *r = PQexec(c, "SELECT coalesce(max(version), 0) FROM nines_schema");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = nerr_set(err, NERR_IO, "postgres: %s", pg_msg(c, mb, sizeof mb));
        PQclear(r);
        goto fail;
    }
    int have = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (have > n) {
        rc = nerr_set(err, NERR_UNSUPPORTED,
                      "the database's schema version %d is newer than this nines (%d)", have, n);
        goto fail;
    }
    for (int v = have + 1; v <= n; v++) {
        char sql[96];
        if ((rc = exec_ok(c, migrations[v - 1], err)))
            goto fail;
        snprintf(sql, sizeof sql, "DELETE FROM nines_schema; INSERT INTO nines_schema VALUES (%d)",
                 v);
        if ((rc = exec_ok(c, sql, err)))
            goto fail;
        log_info("postgres schema migrated to version %d", v);
    }
    return exec_ok(c, "COMMIT", err);
fail:
    PQclear(PQexec(c, "ROLLBACK"));
    return rc;
}

void pgsink_copy_escape(struct strbuf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '\\': strbuf_str(b, "\\\\"); break;
        case '\t': strbuf_str(b, "\\t"); break;
        case '\n': strbuf_str(b, "\\n"); break;
        case '\r': strbuf_str(b, "\\r"); break;
        default: strbuf_ch(b, *s);
        }
    }
}

void pgsink_fmt_ts(int64_t ms, char *buf, size_t cap)
{
    time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    int frac = (int)(ms - (int64_t)t * 1000);
    snprintf(buf, cap, "%04d-%02d-%02d %02d:%02d:%02d.%03d+00", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

static void json_str(struct strbuf *b, const char *s)
{
    strbuf_ch(b, '"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            strbuf_ch(b, '\\');
            strbuf_ch(b, (char)ch);
        } else if (ch < 0x20) {
            char u[8];
            snprintf(u, sizeof u, "\\u%04x", ch);
            strbuf_str(b, u);
        } else
            strbuf_ch(b, (char)ch);
    }
    strbuf_ch(b, '"');
}

int pgsink_format_sample(int64_t start_ms, int64_t interval_ms, const struct pgsink_labels *l,
                         const struct agg_cell *c, char **out)
{
    struct strbuf b = {0}, j = {0};
    char num[64];
    char *js = NULL;
    pgsink_fmt_ts(start_ms, num, sizeof num);
    strbuf_str(&b, num);
    snprintf(num, sizeof num, "\t%" PRId64 "\t", interval_ms);
    strbuf_str(&b, num);
    const char *labels[] = {l->canary_az, l->endpoint, l->endpoint_az, l->table, l->op};
    for (int i = 0; i < 5; i++) {
        pgsink_copy_escape(&b, labels[i]);
        strbuf_ch(&b, '\t');
    }
    snprintf(num, sizeof num, "%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t", c->attempts,
             c->successes, c->retries, c->stale);
    strbuf_str(&b, num);
    strbuf_ch(&j, '{');
    for (int i = 0; i < AGG_MAX_ERR_TYPES && c->err_name[i][0]; i++) {
        if (i)
            strbuf_ch(&j, ',');
        json_str(&j, c->err_name[i]);
        snprintf(num, sizeof num, ":%" PRIu64, c->err_count[i]);
        strbuf_str(&j, num);
    }
    if (c->err_other) {
        if (c->err_name[0][0])
            strbuf_ch(&j, ',');
        snprintf(num, sizeof num, "\"other\":%" PRIu64, c->err_other);
        strbuf_str(&j, num);
    }
    strbuf_ch(&j, '}');
    if (strbuf_finish(&j, &js)) {
        strbuf_free(&b);
        return NERR_NOMEM;
    }
    pgsink_copy_escape(&b, js);
    free(js);
    /* Histogram buckets: walk the counters directly (hist_export would need
     * a second array); only non-empty ones are stored. */
    struct strbuf cnt = {0};
    char *cs = NULL;
    strbuf_str(&b, "\t{");
    strbuf_ch(&cnt, '{');
    int first = 1;
    /* Only the buckets between min and max can be non-empty: scanning those
     * instead of all 7424 is what makes formatting cheap. */
    uint32_t lo = hist_count(&c->lat) ? hist_bucket_of(hist_min(&c->lat)) : 0;
    uint32_t hi = hist_count(&c->lat) ? hist_bucket_of(hist_max(&c->lat)) + 1 : 0;
    for (uint32_t i = lo; i < hi && i < HIST_NBUCKETS; i++) {
        if (!c->lat.buckets[i])
            continue;
        snprintf(num, sizeof num, "%s%" PRIu32, first ? "" : ",", i);
        strbuf_str(&b, num);
        snprintf(num, sizeof num, "%s%" PRIu64, first ? "" : ",", c->lat.buckets[i]);
        strbuf_str(&cnt, num);
        first = 0;
    }
    strbuf_str(&b, "}\t");
    strbuf_ch(&cnt, '}');
    if (strbuf_finish(&cnt, &cs)) {
        strbuf_free(&b);
        return NERR_NOMEM;
    }
    strbuf_str(&b, cs);
    free(cs);
    strbuf_ch(&b, '\n');
    return strbuf_finish(&b, out) ? NERR_NOMEM : 0;
}

/* ---- the worker ---------------------------------------------------------- */

struct pgsink {
    char *dsn, *copy_sql;
    uint64_t max_rows, flush_ns;
    size_t batch_rows;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    /* A ring of lines: q[(head + i) % cap] for i < n. */
    char **q;
    size_t head, n, cap;
    size_t inflight;
    int stopping;
    uint64_t drain_deadline; /* CLOCK_MONOTONIC ns, when stopping */
    struct pgsink_stats st;
    PGconn *conn;
    uint64_t dropped_logged;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void abs_deadline(struct timespec *ts, uint64_t ns_from_now)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    uint64_t t = (uint64_t)ts->tv_nsec + ns_from_now % 1000000000ull;
    ts->tv_sec += (time_t)(ns_from_now / 1000000000ull + t / 1000000000ull);
    ts->tv_nsec = (long)(t % 1000000000ull);
}

/* Makes room for one more line at the back; the lock is held. 0 or NERR_NOMEM. */
static int ring_grow(struct pgsink *s)
{
    if (s->n < s->cap)
        return 0;
    size_t nc = s->cap ? s->cap * 2 : 1024;
    char **nq = malloc(nc * sizeof *nq);
    if (!nq)
        return NERR_NOMEM;
    for (size_t i = 0; i < s->n; i++)
        nq[i] = s->q[(s->head + i) % s->cap];
    free(s->q);
    s->q = nq;
    s->head = 0;
    s->cap = nc;
    return 0;
}

static void drop_oldest(struct pgsink *s)
{
    free(s->q[s->head]);
    s->head = (s->head + 1) % s->cap;
    s->n--;
    s->st.dropped++;
}

void pgsink_push(struct pgsink *s, char *line)
{
    pthread_mutex_lock(&s->mu);
    while (s->n && s->n + s->inflight >= s->max_rows)
        drop_oldest(s);
    if (s->n + s->inflight >= s->max_rows || ring_grow(s)) {
        free(line);
        s->st.dropped++;
    } else {
        s->q[(s->head + s->n) % s->cap] = line;
        s->n++;
        if (s->n >= s->batch_rows)
            pthread_cond_signal(&s->cv);
    }
    s->st.queued = s->n + s->inflight;
    pthread_mutex_unlock(&s->mu);
}

void pgsink_stats(struct pgsink *s, struct pgsink_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    out->queued = s->n + s->inflight;
    pthread_mutex_unlock(&s->mu);
}

static int connect_db(struct pgsink *s, struct nerr *err)
{
    if (s->conn && PQstatus(s->conn) == CONNECTION_OK)
        return 0;
    if (s->conn) {
        PQfinish(s->conn);
        s->conn = NULL;
    }
    /* connect_timeout bounds a connect to a host that does not answer. */
    const char *keys[] = {"dbname", "connect_timeout", NULL};
    const char *vals[] = {s->dsn, "3", NULL};
    s->conn = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(s->conn) != CONNECTION_OK) {
        char mb[400];
        int rc = nerr_set(err, NERR_IO, "postgres: %s", pg_msg(s->conn, mb, sizeof mb));
        PQfinish(s->conn);
        s->conn = NULL;
        return rc;
    }
    int rc = pgsink_migrate(s->conn, err);
    if (rc) {
        PQfinish(s->conn);
        s->conn = NULL;
    }
    return rc;
}

/* Sends lines[0..n) with one COPY. The lock is NOT held. */
static int copy_batch(struct pgsink *s, char **lines, size_t n, struct nerr *err)
{
    char mb[400];
    PGresult *r = PQexec(s->conn, s->copy_sql);
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        PQclear(r);
        return nerr_set(err, NERR_IO, "postgres COPY: %s", pg_msg(s->conn, mb, sizeof mb));
    }
    PQclear(r);
    /* Lines are gathered into 256 KiB chunks: one PQputCopyData per line
     * costs a function call and a buffer check each, for nothing. */
    char buf[1 << 18];
    size_t used = 0;
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++) {
        size_t l = strlen(lines[i]);
        if (used + l > sizeof buf) {
            ok = PQputCopyData(s->conn, buf, (int)used) == 1;
            used = 0;
        }
        if (l > sizeof buf)
            ok = ok && PQputCopyData(s->conn, lines[i], (int)l) == 1;
        else {
            memcpy(buf + used, lines[i], l);
            used += l;
        }
    }
    if (ok && used)
        ok = PQputCopyData(s->conn, buf, (int)used) == 1;
    if (PQputCopyEnd(s->conn, ok ? NULL : "client failed") != 1)
        ok = 0;
    int rc = 0;
    while ((r = PQgetResult(s->conn))) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK && !rc)
            rc = nerr_set(err, NERR_IO, "postgres COPY: %s", pg_msg(s->conn, mb, sizeof mb));
        PQclear(r);
    }
    if (!ok && !rc)
        rc = nerr_set(err, NERR_IO, "postgres COPY: %s", pg_msg(s->conn, mb, sizeof mb));
    return rc;
}

static void *worker(void *arg)
{
    struct pgsink *s = arg;
    uint64_t backoff = 200000000ull;
    char **batch = malloc(s->batch_rows * sizeof *batch);
    struct nerr err;
    int warned = 0;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (!s->stopping && s->n < s->batch_rows) {
            struct timespec ts;
            abs_deadline(&ts, s->flush_ns);
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        }
        if (s->st.dropped > s->dropped_logged) {
            log_warn("canary sink: buffer bound (%" PRIu64 " rows) hit: %" PRIu64
                     " samples dropped so far",
                     s->max_rows, s->st.dropped);
            s->dropped_logged = s->st.dropped;
        }
        if (s->stopping && (!s->n || mono_ns() >= s->drain_deadline))
            break;
        if (!s->n)
            continue;
        pthread_mutex_unlock(&s->mu);
        int rc = batch ? connect_db(s, &err) : NERR_NOMEM;
        pthread_mutex_lock(&s->mu);
        if (rc) {
            s->st.connected = 0;
            if (!warned++)
                log_warn("canary sink: %s (buffering up to %" PRIu64 " rows)", err.msg,
                         s->max_rows);
            if (s->stopping && mono_ns() + backoff >= s->drain_deadline)
                break;
            struct timespec ts;
            abs_deadline(&ts, backoff);
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            backoff = backoff * 2 > 5000000000ull ? 5000000000ull : backoff * 2;
            continue;
        }
        if (!s->st.connected) {
            if (warned)
                log_info("canary sink: connected to postgres again");
            s->st.reconnects += warned ? 1 : 0;
            warned = 0;
        }
        s->st.connected = 1;
        backoff = 200000000ull;
        /* Take a batch off the front; it stays counted as in flight. */
        size_t k = s->n < s->batch_rows ? s->n : s->batch_rows;
        for (size_t i = 0; i < k; i++)
            batch[i] = s->q[(s->head + i) % s->cap];
        s->head = (s->head + k) % s->cap;
        s->n -= k;
        s->inflight = k;
        pthread_mutex_unlock(&s->mu);
        rc = copy_batch(s, batch, k, &err);
        pthread_mutex_lock(&s->mu);
        s->inflight = 0;
        if (!rc) {
            for (size_t i = 0; i < k; i++)
                free(batch[i]);
            s->st.written += k;
            s->st.batches++;
        } else {
            log_warn("canary sink: %s; will retry", err.msg);
            s->st.connected = 0;
            warned = 1;
            PQfinish(s->conn);
            s->conn = NULL;
            /* Put the batch back in front, oldest first; what no longer fits
             * the bound is the oldest, and is dropped. */
            for (size_t i = k; i-- > 0;) {
                if (s->n + 1 > s->max_rows || ring_grow(s)) {
                    free(batch[i]);
                    s->st.dropped++;
                    continue;
                }
                s->head = (s->head + s->cap - 1) % s->cap;
                s->q[s->head] = batch[i];
                s->n++;
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    free(batch);
    return NULL;
}

int pgsink_open(const struct pgsink_opts *o, struct pgsink **out, struct nerr *err)
{
    struct pgsink *s = calloc(1, sizeof *s);
    char *perr = NULL;
    if (!s)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    PQconninfoOption *opts = PQconninfoParse(o->dsn, &perr);
    if (!opts) {
        nerr_set(err, NERR_INVALID, "postgres DSN: %s", perr ? perr : "out of memory");
        PQfreemem(perr);
        free(s);
        return NERR_INVALID;
    }
    PQconninfoFree(opts);
    s->dsn = strdup(o->dsn);
    s->max_rows = o->max_rows ? o->max_rows : 100000;
    s->flush_ns = o->flush_ns ? o->flush_ns : 1000000000ull;
    s->batch_rows = o->batch_rows ? o->batch_rows : 50000;
    if (asprintf(&s->copy_sql, "COPY %s (%s) FROM STDIN", o->table ? o->table : "canary_samples",
                 o->columns ? o->columns : SAMPLE_COLUMNS) < 0)
        s->copy_sql = NULL;
    if (!s->dsn || !s->copy_sql) {
        free(s->dsn);
        free(s->copy_sql);
        free(s);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    int e = pthread_create(&s->thread, NULL, worker, s);
    if (e) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s->dsn);
        free(s->copy_sql);
        free(s);
        return nerr_sys(err, e, "pthread_create");
    }
    *out = s;
    return 0;
}

int pgsink_close(struct pgsink *s, uint64_t timeout_ns, struct nerr *err)
{
    int rc = 0;
    if (!s)
        return 0;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    s->drain_deadline = mono_ns() + timeout_ns;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    if (s->n) {
        rc = nerr_set(err, NERR_TIMEOUT, "%zu samples could not be written before the deadline",
                      s->n);
        log_warn("canary sink: %s", err ? err->msg : "samples unsent at exit");
    }
    while (s->n)
        drop_oldest(s);
    free(s->q);
    if (s->conn)
        PQfinish(s->conn);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->dsn);
    free(s->copy_sql);
    free(s);
    return rc;
}
