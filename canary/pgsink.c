#include "canary/pgsink.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/clock.h"
#include "lib/log.h"

#define SAMPLE_COLUMNS                                                                             \
    "ts, interval_ms, canary_az, endpoint, endpoint_az, tbl, op, attempts, successes, retries, "   \
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
    /* 4 */
    "CREATE TABLE alarm_state ("
    " alarm text NOT NULL, window_spec text NOT NULL, group_key text NOT NULL,"
    " severity text NOT NULL, labels jsonb NOT NULL, state text NOT NULL,"
    " since_ms bigint NOT NULL, cond_since_ms bigint NOT NULL, last_sent_ms bigint NOT NULL,"
    " value double precision, error_ratio double precision,"
    " updated_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (alarm, window_spec, group_key));"
    "ALTER TABLE server_samples ADD COLUMN client_errors bigint NOT NULL DEFAULT 0;"
    "CREATE INDEX server_samples_inserted ON server_samples USING brin (inserted_at);",
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
    /* SET LOCAL: the "already exists, skipping" notice of every start is
     * noise in the canary's log. */
    if ((rc = exec_ok(c,
                      "SET LOCAL client_min_messages = warning;"
                      "SELECT pg_advisory_xact_lock(7007007);"
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

void pgsink_fmt_ts(int64_t ms, char *buf, size_t cap)
{
    time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    int frac = (int)(ms - (int64_t)t * 1000);
    snprintf(buf, cap, "%04d-%02d-%02d %02d:%02d:%02d.%03d+00", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

/* ---- COPY BINARY tuples ---------------------------------------------------
 *
 * A writer runs twice over the same row: first with p == NULL to measure,
 * then into one exact allocation, so a row costs one malloc and no copy.
 * Every number is big-endian (PostgreSQL's send/recv formats). */

struct wr {
    unsigned char *p; /* NULL: measure only */
    size_t off;
};

static void w_bytes(struct wr *w, const void *b, size_t n)
{
    if (w->p)
        memcpy(w->p + w->off, b, n);
    w->off += n;
}

static void w_u16(struct wr *w, uint16_t v)
{
    v = htobe16(v);
    w_bytes(w, &v, 2);
}

static void w_u32(struct wr *w, uint32_t v)
{
    v = htobe32(v);
    w_bytes(w, &v, 4);
}

static void w_u64(struct wr *w, uint64_t v)
{
    v = htobe64(v);
    w_bytes(w, &v, 8);
}

static void f_int4(struct wr *w, int32_t v)
{
    w_u32(w, 4);
    w_u32(w, (uint32_t)v);
}

static void f_int8(struct wr *w, uint64_t v)
{
    w_u32(w, 8);
    w_u64(w, v);
}

static void f_text(struct wr *w, const char *s)
{
    size_t n = strlen(s);
    w_u32(w, (uint32_t)n);
    w_bytes(w, s, n);
}

/* timestamptz: microseconds since 2000-01-01 00:00:00 UTC. */
static void f_ts(struct wr *w, int64_t ms)
{
    f_int8(w, (uint64_t)((ms - 946684800000ll) * 1000));
}

/* jsonb: a version byte (1) and the JSON text. */
static void f_jsonb(struct wr *w, const char *js, size_t n)
{
    w_u32(w, (uint32_t)n + 1);
    w_bytes(w, "\1", 1);
    w_bytes(w, js, n);
}

#define OID_INT4 23
#define OID_INT8 20

/* A one-dimensional array header (an empty array has no dimension). */
static void f_array_head(struct wr *w, size_t n, size_t elem_bytes, uint32_t oid)
{
    w_u32(w, (uint32_t)(n ? 20 + n * (4 + elem_bytes) : 12));
    w_u32(w, n ? 1 : 0); /* ndim */
    w_u32(w, 0);         /* no NULLs */
    w_u32(w, oid);
    if (n) {
        w_u32(w, (uint32_t)n);
        w_u32(w, 1); /* lower bound */
    }
}

/* The cell's errors as JSON text into buf (bounded: at most
 * AGG_MAX_ERR_TYPES names of AGG_ERR_NAME bytes, each escaped to at most 6
 * bytes a byte). Returns its length. */
#define ERRS_JSON_MAX (AGG_MAX_ERR_TYPES * (AGG_ERR_NAME * 6 + 26) + 40)

static size_t errors_json(const struct agg_cell *c, char *buf)
{
    size_t o = 0;
    buf[o++] = '{';
    for (int i = 0; i < AGG_MAX_ERR_TYPES && c->err_name[i][0]; i++) {
        if (i)
            buf[o++] = ',';
        buf[o++] = '"';
        for (const char *s = c->err_name[i]; *s; s++) {
            unsigned char ch = (unsigned char)*s;
            if (ch == '"' || ch == '\\') {
                buf[o++] = '\\';
                buf[o++] = (char)ch;
            } else if (ch < 0x20)
                o += (size_t)sprintf(buf + o, "\\u%04x", ch);
            else
                buf[o++] = (char)ch;
        }
        o += (size_t)sprintf(buf + o, "\":%" PRIu64, c->err_count[i]);
    }
    if (c->err_other)
        o += (size_t)sprintf(buf + o, "%s\"other\":%" PRIu64, c->err_name[0][0] ? "," : "",
                             c->err_other);
    buf[o++] = '}';
    return o;
}

static void sample_fields(struct wr *w, int64_t start_ms, int64_t interval_ms,
                          const struct pgsink_labels *l, const struct agg_cell *c, const char *js,
                          size_t jn, uint32_t lo, uint32_t hi, size_t nb)
{
    w_u16(w, 14);
    f_ts(w, start_ms);
    f_int4(w, (int32_t)interval_ms);
    f_text(w, l->canary_az);
    f_text(w, l->endpoint);
    f_text(w, l->endpoint_az);
    f_text(w, l->table);
    f_text(w, l->op);
    f_int8(w, c->attempts);
    f_int8(w, c->successes);
    f_int8(w, c->retries);
    f_int8(w, c->stale);
    f_jsonb(w, js, jn);
    f_array_head(w, nb, 4, OID_INT4);
    for (uint32_t i = lo; i < hi; i++)
        if (c->lat.buckets[i])
            f_int4(w, (int32_t)i);
    f_array_head(w, nb, 8, OID_INT8);
    for (uint32_t i = lo; i < hi; i++)
        if (c->lat.buckets[i])
            f_int8(w, c->lat.buckets[i]);
}

int pgsink_row_sample(int64_t start_ms, int64_t interval_ms, const struct pgsink_labels *l,
                      const struct agg_cell *c, struct pgsink_row **out)
{
    char js[ERRS_JSON_MAX];
    size_t jn = errors_json(c, js);
    /* Only the buckets between min and max can be non-empty: scanning those
     * instead of all 7424 is what keeps a row cheap. */
    uint32_t lo = 0, hi = 0;
    size_t nb = 0;
    if (hist_count(&c->lat)) {
        lo = hist_bucket_of(hist_min(&c->lat));
        hi = hist_bucket_of(hist_max(&c->lat)) + 1;
        if (hi > HIST_NBUCKETS)
            hi = HIST_NBUCKETS;
        for (uint32_t i = lo; i < hi; i++)
            nb += c->lat.buckets[i] != 0;
    }
    struct wr w = {0};
    sample_fields(&w, start_ms, interval_ms, l, c, js, jn, lo, hi, nb);
    struct pgsink_row *r = malloc(sizeof *r + w.off);
    if (!r)
        return NERR_NOMEM;
    r->len = (uint32_t)w.off;
    w = (struct wr){r->data, 0};
    sample_fields(&w, start_ms, interval_ms, l, c, js, jn, lo, hi, nb);
    *out = r;
    return 0;
}

static void server_fields(struct wr *w, const struct pgsink_server_sample *x)
{
    w_u16(w, 9);
    f_ts(w, x->start_ms);
    f_int4(w, (int32_t)x->interval_ms);
    f_text(w, x->endpoint);
    f_text(w, x->endpoint_az);
    f_text(w, x->table);
    f_text(w, x->op);
    f_int8(w, x->requests);
    f_int8(w, x->errors);
    f_int8(w, x->client_errors);
}

int pgsink_row_server(const struct pgsink_server_sample *x, struct pgsink_row **out)
{
    struct wr w = {0};
    server_fields(&w, x);
    struct pgsink_row *r = malloc(sizeof *r + w.off);
    if (!r)
        return NERR_NOMEM;
    r->len = (uint32_t)w.off;
    w = (struct wr){r->data, 0};
    server_fields(&w, x);
    *out = r;
    return 0;
}

/* ---- the queue and its workers -------------------------------------------- */

#define MAX_STREAMS 8
#define GATHER_BYTES (1 << 18)

struct stream {
    struct pgsink *s;
    pthread_t thread;
    int started;
    PGconn *conn;
    int connected, warned;
    struct pgsink_row **batch;
    unsigned char *gather; /* rows are sent in GATHER_BYTES chunks */
};

struct pgsink {
    char *dsn, *copy_sql;
    uint64_t max_rows, flush_ns;
    size_t batch_rows;
    int nstreams;
    struct stream streams[MAX_STREAMS];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* A ring of rows: q[(head + i) % cap] for i < n. */
    struct pgsink_row **q;
    size_t head, n, cap;
    size_t inflight; /* rows taken by streams, not yet stored or put back */
    int stopping;
    uint64_t drain_deadline; /* CLOCK_MONOTONIC ns, when stopping */
    struct pgsink_stats st;
    uint64_t dropped_logged;
};

static void abs_deadline(struct timespec *ts, uint64_t ns_from_now)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    uint64_t t = (uint64_t)ts->tv_nsec + ns_from_now % 1000000000ull;
    ts->tv_sec += (time_t)(ns_from_now / 1000000000ull + t / 1000000000ull);
    ts->tv_nsec = (long)(t % 1000000000ull);
}

/* Makes room for one more row; the lock is held. 0 or NERR_NOMEM. */
static int ring_grow(struct pgsink *s)
{
    if (s->n < s->cap)
        return 0;
    size_t nc = s->cap ? s->cap * 2 : 1024;
    struct pgsink_row **nq = malloc(nc * sizeof *nq);
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

void pgsink_push(struct pgsink *s, struct pgsink_row *row)
{
    pthread_mutex_lock(&s->mu);
    while (s->n && s->n + s->inflight >= s->max_rows)
        drop_oldest(s);
    if (s->n + s->inflight >= s->max_rows || ring_grow(s)) {
        free(row);
        s->st.dropped++;
    } else {
        s->q[(s->head + s->n) % s->cap] = row;
        s->n++;
        /* A full batch wakes one idle stream; a partial one waits for the
         * flush timer, so small loads still go in few COPYs. */
        if (s->n % s->batch_rows == 0)
            pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
}

void pgsink_stats(struct pgsink *s, struct pgsink_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    out->queued = s->n + s->inflight;
    out->connected = 0;
    for (int i = 0; i < s->nstreams; i++)
        out->connected += s->streams[i].connected;
    pthread_mutex_unlock(&s->mu);
}

static int connect_db(struct stream *w, struct nerr *err)
{
    if (w->conn && PQstatus(w->conn) == CONNECTION_OK)
        return 0;
    if (w->conn) {
        PQfinish(w->conn);
        w->conn = NULL;
    }
    /* connect_timeout bounds a connect to a host that does not answer. */
    const char *keys[] = {"dbname", "connect_timeout", NULL};
    const char *vals[] = {w->s->dsn, "3", NULL};
    w->conn = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(w->conn) != CONNECTION_OK) {
        char mb[400];
        int rc = nerr_set(err, NERR_IO, "postgres: %s", pg_msg(w->conn, mb, sizeof mb));
        PQfinish(w->conn);
        w->conn = NULL;
        return rc;
    }
    int rc = pgsink_migrate(w->conn, err);
    if (rc) {
        PQfinish(w->conn);
        w->conn = NULL;
    }
    return rc;
}

/* Sends rows[0..n) with one COPY. The lock is NOT held. */
static int copy_batch(struct stream *w, struct pgsink_row **rows, size_t n, struct nerr *err)
{
    static const unsigned char header[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";
    static const unsigned char trailer[2] = {0xff, 0xff};
    char mb[400];
    PGconn *c = w->conn;
    PGresult *r = PQexec(c, w->s->copy_sql);
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        PQclear(r);
        return nerr_set(err, NERR_IO, "postgres COPY: %s", pg_msg(c, mb, sizeof mb));
    }
    PQclear(r);
    /* Rows are gathered into chunks: one PQputCopyData per row costs a call
     * and a buffer check each, for nothing. */
    unsigned char *buf = w->gather;
    size_t used = sizeof header;
    memcpy(buf, header, sizeof header);
    int ok = 1;
    for (size_t i = 0; i <= n && ok; i++) {
        const unsigned char *p = i < n ? rows[i]->data : trailer;
        size_t l = i < n ? rows[i]->len : sizeof trailer;
        if (used + l > GATHER_BYTES) {
            ok = PQputCopyData(c, (const char *)buf, (int)used) == 1;
            used = 0;
        }
        if (l > GATHER_BYTES)
            ok = ok && PQputCopyData(c, (const char *)p, (int)l) == 1;
        else {
            memcpy(buf + used, p, l);
            used += l;
        }
    }
    if (ok && used)
        ok = PQputCopyData(c, (const char *)buf, (int)used) == 1;
    if (PQputCopyEnd(c, ok ? NULL : "client failed") != 1)
        ok = 0;
    int rc = 0;
    while ((r = PQgetResult(c))) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK && !rc)
            rc = nerr_set(err, NERR_IO, "postgres COPY: %s", pg_msg(c, mb, sizeof mb));
        PQclear(r);
    }
    if (!ok && !rc)
        rc = nerr_set(err, NERR_IO, "postgres COPY: %s", pg_msg(c, mb, sizeof mb));
    return rc;
}

/* Puts a failed batch back in front, oldest first; what no longer fits the
 * bound is the oldest, and is dropped. The lock is held. */
static void put_back(struct pgsink *s, struct pgsink_row **batch, size_t k)
{
    for (size_t i = k; i-- > 0;) {
        if (s->n + s->inflight + 1 > s->max_rows || ring_grow(s)) {
            free(batch[i]);
            s->st.dropped++;
            continue;
        }
        s->head = (s->head + s->cap - 1) % s->cap;
        s->q[s->head] = batch[i];
        s->n++;
    }
}

static void *worker(void *arg)
{
    struct stream *w = arg;
    struct pgsink *s = w->s;
    uint64_t backoff = 200000000ull;
    struct nerr err;
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
        if (s->stopping && (!s->n || clock_mono_ns() >= s->drain_deadline))
            break;
        if (!s->n)
            continue;
        pthread_mutex_unlock(&s->mu);
        int rc = connect_db(w, &err);
        pthread_mutex_lock(&s->mu);
        if (rc) {
            w->connected = 0;
            if (!w->warned++)
                log_warn("canary sink: %s (buffering up to %" PRIu64 " rows)", err.msg,
                         s->max_rows);
            if (s->stopping && clock_mono_ns() + backoff >= s->drain_deadline)
                break;
            struct timespec ts;
            abs_deadline(&ts, backoff);
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            backoff = backoff * 2 > 5000000000ull ? 5000000000ull : backoff * 2;
            continue;
        }
        if (!w->connected) {
            if (w->warned) {
                log_info("canary sink: connected to postgres again");
                s->st.reconnects++;
            }
            w->warned = 0;
        }
        w->connected = 1;
        backoff = 200000000ull;
        if (!s->n)
            continue; /* another stream took it while this one connected */
        /* Take a batch off the front; it stays counted as in flight. */
        size_t k = s->n < s->batch_rows ? s->n : s->batch_rows;
        for (size_t i = 0; i < k; i++)
            w->batch[i] = s->q[(s->head + i) % s->cap];
        s->head = (s->head + k) % s->cap;
        s->n -= k;
        s->inflight += k;
        pthread_mutex_unlock(&s->mu);
        rc = copy_batch(w, w->batch, k, &err);
        if (!rc)
            for (size_t i = 0; i < k; i++)
                free(w->batch[i]);
        pthread_mutex_lock(&s->mu);
        s->inflight -= k;
        if (!rc) {
            s->st.written += k;
            s->st.batches++;
        } else {
            log_warn("canary sink: %s; will retry", err.msg);
            w->connected = 0;
            w->warned = 1;
            PQfinish(w->conn);
            w->conn = NULL;
            put_back(s, w->batch, k);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void free_sink(struct pgsink *s)
{
    for (int i = 0; i < MAX_STREAMS; i++) {
        if (s->streams[i].conn)
            PQfinish(s->streams[i].conn);
        free(s->streams[i].batch);
        free(s->streams[i].gather);
    }
    while (s->n)
        drop_oldest(s);
    free(s->q);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->dsn);
    free(s->copy_sql);
    free(s);
}

static void stop_streams(struct pgsink *s, uint64_t timeout_ns)
{
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    s->drain_deadline = clock_mono_ns() + timeout_ns;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->nstreams; i++)
        if (s->streams[i].started)
            pthread_join(s->streams[i].thread, NULL);
}

int pgsink_open(const struct pgsink_opts *o, struct pgsink **out, struct nerr *err)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(o->dsn, &perr);
    if (!opts) {
        nerr_set(err, NERR_INVALID, "postgres DSN: %s", perr ? perr : "out of memory");
        PQfreemem(perr);
        return NERR_INVALID;
    }
    PQconninfoFree(opts);
    struct pgsink *s = calloc(1, sizeof *s);
    if (!s)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    s->max_rows = o->max_rows ? o->max_rows : 100000;
    s->flush_ns = o->flush_ns ? o->flush_ns : 1000000000ull;
    s->batch_rows = o->batch_rows ? o->batch_rows : 20000;
    s->nstreams = o->streams > 0 ? (o->streams < MAX_STREAMS ? o->streams : MAX_STREAMS) : 2;
    s->dsn = strdup(o->dsn);
    if (asprintf(&s->copy_sql, "COPY %s (%s) FROM STDIN WITH (FORMAT binary)",
                 o->table ? o->table : "canary_samples",
                 o->columns ? o->columns : SAMPLE_COLUMNS) < 0)
        s->copy_sql = NULL;
    int ok = s->dsn && s->copy_sql;
    for (int i = 0; i < s->nstreams && ok; i++) {
        struct stream *w = &s->streams[i];
        w->s = s;
        w->batch = malloc(s->batch_rows * sizeof *w->batch);
        w->gather = malloc(GATHER_BYTES);
        ok = w->batch && w->gather;
    }
    if (!ok) {
        free_sink(s);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < s->nstreams; i++) {
        int e = pthread_create(&s->streams[i].thread, NULL, worker, &s->streams[i]);
        if (e) {
            stop_streams(s, 0);
            free_sink(s);
            return nerr_sys(err, e, "pthread_create");
        }
        s->streams[i].started = 1;
    }
    *out = s;
    return 0;
}

int pgsink_close(struct pgsink *s, uint64_t timeout_ns, struct nerr *err)
{
    int rc = 0;
    if (!s)
        return 0;
    stop_streams(s, timeout_ns);
    if (s->n) {
        rc = nerr_set(err, NERR_TIMEOUT, "%zu samples could not be written before the deadline",
                      s->n);
        log_warn("canary sink: %s", err ? err->msg : "samples unsent at exit");
    }
    free_sink(s);
    return rc;
}
