/*
 * deepscrub.c — deep scrub jobs (deepscrub.h) and their NinesAdmin calls:
 *
 *   ScrubDeep       {TableName, Partition, RateMBps?, RateItems?} -> {Job}
 *                   queues a deep scrub of this node's replica (RateMBps:
 *                   megabytes (10^6) of keys and values per second,
 *                   default 20; RateItems: items per second, default
 *                   25,000; RateMBps 0 alone = unthrottled, RateItems 0 = no
 *                   item bound).
 *   ScrubDeepStatus {Job} -> {Job, TableName, Partition, State, ScannedBytes,
 *                   Items, TotalBytes, StoreBytes, RateBps, MeasuredBps,
 *                   ElapsedMs, Lsn, Result?: {Match, RecordsAgree, Buckets: [b..],
 *                   Items, MaintainedItems, Bytes, MaintainedBytes}, Error?}
 *   ScrubDeepCancel {Job} -> {Job, State}
 *
 * An unknown job is ResourceNotFoundException; a node with
 * DEEPSCRUB_MAX_LIVE jobs queued or running answers LimitExceededException.
 */
#include "store/deepscrub.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/clock.h"
#include "store/api_internal.h"
#include "store/catalog.h"
#include "store/state.h"

const char *deepscrub_state_name(enum deepscrub_state s)
{
    switch (s) {
    case DEEPSCRUB_QUEUED:
        return "queued";
    case DEEPSCRUB_RUNNING:
        return "running";
    case DEEPSCRUB_DONE:
        return "done";
    case DEEPSCRUB_CANCELLED:
        return "cancelled";
    case DEEPSCRUB_FAILED:
        return "failed";
    }
    return "?";
}

/* ---- the scan ---- */

#define PROGRESS_BYTES (64 * 1024)
#define PROGRESS_NS (200 * 1000000ull)
#define SLEEP_SLICE_MS 100
#define CHECK_EVERY 16

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

int deepscrub_scan(MDB_txn *txn, MDB_dbi dbi, MDB_dbi ddbi, const char *name, double rate_bps,
                   double rate_items, const _Atomic int *cancel, struct deepscrub_status *st,
                   void (*progress)(void *arg, const struct deepscrub_status *st), void *arg,
                   struct nerr *err)
{
    struct digest *want = malloc(sizeof *want);
    uint16_t(*wb)[DIGEST_BUCKET_LANES] = calloc(DIGEST_BUCKETS, sizeof *wb);
    uint16_t(*gb)[DIGEST_BUCKET_LANES] = calloc(DIGEST_BUCKETS, sizeof *gb);
    MDB_cursor *cur = NULL;
    int rc = 0;
    if (!want || !wb || !gb) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = digest_get(txn, ddbi, name, want, err)))
        goto fail; /* NERR_NOTFOUND: keeps no digest */
    if ((rc = digest_get_buckets(txn, ddbi, name, wb, err)))
        goto fail;
    MDB_stat ms;
    if ((rc = mdb_stat(txn, dbi, &ms))) {
        rc = state_mdb_err(err, rc, "deep scrub stat");
        goto fail;
    }
    st->store_bytes =
        (uint64_t)(ms.ms_branch_pages + ms.ms_leaf_pages + ms.ms_overflow_pages) * ms.ms_psize;
    st->total_bytes = want->bytes;
    st->maintained_items = want->items;
    st->maintained_bytes = want->bytes;
    st->rate_bps = rate_bps;
    st->rate_items = rate_items;
    st->state = DEEPSCRUB_RUNNING;
    if ((rc = mdb_cursor_open(txn, dbi, &cur))) {
        rc = state_mdb_err(err, rc, "deep scrub cursor");
        goto fail;
    }
    if (progress)
        progress(arg, st); /* the totals, before the first item */
    uint64_t t0 = clock_mono_ns(), reported = 0, reported_ns = t0;
    uint16_t h[DIGEST_BUCKET_LANES];
    MDB_val k, v;
    int mrc;
    for (int op = MDB_FIRST; !(mrc = mdb_cursor_get(cur, &k, &v, op)); op = MDB_NEXT) {
        /* The bucket lanes only (deepscrub.h, "What is compared"): one
         * block of keystream per item, not 32. */
        if ((rc = digest_elem_lanes(k.mv_data, k.mv_size, v.mv_data, v.mv_size, h,
                                    DIGEST_BUCKET_LANES, err)))
            goto fail;
        unsigned b = digest_bucket(k.mv_data, k.mv_size);
        for (size_t i = 0; i < DIGEST_BUCKET_LANES; i++)
            gb[b][i] = (uint16_t)(gb[b][i] + h[i]);
        st->items++;
        st->scanned_bytes += k.mv_size + v.mv_size;
        /* The clock, the cancel flag and the rate every CHECK_EVERY items
         * (a clock read per item cost a tenth of the scan). */
        if (st->items % CHECK_EVERY)
            continue;
        if (cancel && atomic_load(cancel))
            break;
        uint64_t now = clock_mono_ns();
        st->elapsed_ms = (int64_t)((now - t0) / 1000000);
        if (st->elapsed_ms > 0)
            st->measured_bps = (double)st->scanned_bytes * 1000.0 / (double)st->elapsed_ms;
        if (st->scanned_bytes - reported >= PROGRESS_BYTES || now - reported_ns >= PROGRESS_NS) {
            reported = st->scanned_bytes;
            reported_ns = now;
            if (progress)
                progress(arg, st);
        }
        /* Ahead of the rate: sleep (holding the read transaction; see the
         * header for its cost), in slices that see a cancel. */
        while ((rate_bps > 0 || rate_items > 0) && !(cancel && atomic_load(cancel))) {
            double due_ms = rate_bps > 0 ? (double)st->scanned_bytes * 1000.0 / rate_bps : 0;
            if (rate_items > 0 && (double)st->items * 1000.0 / rate_items > due_ms)
                due_ms = (double)st->items * 1000.0 / rate_items;
            double ahead = due_ms - (double)(clock_mono_ns() - t0) / 1e6;
            if (ahead < 1)
                break;
            sleep_ms(ahead > SLEEP_SLICE_MS ? SLEEP_SLICE_MS : (int64_t)ahead);
        }
    }
    if (!(cancel && atomic_load(cancel)) && mrc != MDB_NOTFOUND) {
        rc = state_mdb_err(err, mrc, "deep scrub read");
        goto fail;
    }
    uint64_t t1 = clock_mono_ns();
    st->elapsed_ms = (int64_t)((t1 - t0) / 1000000);
    if (t1 > t0)
        st->measured_bps = (double)st->scanned_bytes * 1e9 / (double)(t1 - t0);
    if (cancel && atomic_load(cancel)) {
        st->state = DEEPSCRUB_CANCELLED;
    } else {
        st->state = DEEPSCRUB_DONE;
        /* The maintained records must agree with each other: the buckets'
         * lanes summed are the whole digest's first lanes (digest.h). A
         * record damaged at rest breaks that even where the items agree. */
        uint16_t sum[DIGEST_BUCKET_LANES] = {0};
        for (unsigned b = 0; b < DIGEST_BUCKETS; b++)
            for (size_t i = 0; i < DIGEST_BUCKET_LANES; i++)
                sum[i] = (uint16_t)(sum[i] + wb[b][i]);
        st->records_agree = !memcmp(sum, want->lane, sizeof sum);
        st->nbad = 0;
        for (unsigned b = 0; b < DIGEST_BUCKETS; b++)
            if (memcmp(gb[b], wb[b], sizeof gb[b]))
                st->bad[st->nbad++] = (unsigned char)b;
        st->match = st->nbad == 0 && st->records_agree && st->items == want->items &&
                    st->scanned_bytes == want->bytes;
    }
    if (progress)
        progress(arg, st);
    rc = 0;
fail:
    if (cur)
        mdb_cursor_close(cur);
    if (rc && !st->error[0])
        snprintf(st->error, sizeof st->error, "%.255s", err->msg);
    free(want);
    free(wb);
    free(gb);
    return rc;
}

/* ---- jobs ---- */

struct job {
    struct job *next; /* in start order */
    struct table *t;  /* a reference until the job ends */
    struct partition *p;
    _Atomic int cancel;
    int64_t ended_ms;           /* clock_mono_ms; 0 while queued or running */
    struct deepscrub_status st; /* under ds->mu */
};

struct deepscrub {
    struct state *state;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *jobs;
    int stop;
    int started; /* the thread runs */
    pthread_t th;
    unsigned long long seq;
    long long boot_ms; /* in the ids: an id from before a restart is unknown */
};

static int finished(const struct job *j)
{
    return j->st.state != DEEPSCRUB_QUEUED && j->st.state != DEEPSCRUB_RUNNING;
}

/* Forgets jobs that ended more than DEEPSCRUB_KEEP_MS ago, then the oldest
 * finished ones beyond DEEPSCRUB_MAX_JOBS. Under ds->mu. */
static void prune(struct deepscrub *ds)
{
    int64_t now = clock_mono_ms();
    size_t n = 0;
    for (struct job **pp = &ds->jobs; *pp;) {
        struct job *j = *pp;
        if (finished(j) && now - j->ended_ms > DEEPSCRUB_KEEP_MS) {
            *pp = j->next;
            free(j);
        } else {
            n++;
            pp = &j->next;
        }
    }
    for (struct job **pp = &ds->jobs; *pp && n > DEEPSCRUB_MAX_JOBS;) {
        struct job *j = *pp;
        if (finished(j)) {
            *pp = j->next;
            free(j);
            n--;
        } else {
            pp = &j->next;
        }
    }
}

static struct job *find(struct deepscrub *ds, const char *id)
{
    for (struct job *j = ds->jobs; j; j = j->next)
        if (!strcmp(j->st.job, id))
            return j;
    return NULL;
}

struct progress_arg {
    struct deepscrub *ds;
    struct job *j;
};

static void job_progress(void *arg, const struct deepscrub_status *st)
{
    struct progress_arg *pa = arg;
    pthread_mutex_lock(&pa->ds->mu);
    pa->j->st = *st;
    pthread_mutex_unlock(&pa->ds->mu);
}

static void run_job(struct deepscrub *ds, struct job *j)
{
    struct deepscrub_status st;
    pthread_mutex_lock(&ds->mu);
    st = j->st;
    pthread_mutex_unlock(&ds->mu);
    struct nerr e = {0};
    MDB_txn *txn = NULL;
    int rc;
    if (atomic_load(&j->t->deleted))
        rc = nerr_set(&e, NERR_NOTFOUND, "table %s was deleted", j->t->name);
    else if (!j->p->ddbi)
        rc = nerr_set(&e, NERR_NOTFOUND, "partition %s keeps no digest here", j->p->name);
    else if (!(rc = state_read_begin(ds->state, &txn, &e))) {
        uint64_t lsn = 0;
        struct nerr e2 = {0};
        if (!state_applied_get(ds->state, txn, j->p->name, &lsn, &e2))
            st.lsn = lsn;
        struct progress_arg pa = {ds, j};
        rc = deepscrub_scan(txn, j->p->dbi, j->p->ddbi, j->p->name, st.rate_bps, st.rate_items,
                            &j->cancel, &st, job_progress, &pa, &e);
        if (rc == NERR_NOTFOUND)
            snprintf(st.error, sizeof st.error,
                     "partition %s keeps no digest here (rebuilt when the node opens it)",
                     j->p->name);
        state_read_end(ds->state, txn);
    }
    if (rc) {
        st.state = DEEPSCRUB_FAILED;
        if (!st.error[0])
            snprintf(st.error, sizeof st.error, "%.255s", e.msg);
    }
    table_put(j->t);
    pthread_mutex_lock(&ds->mu);
    j->t = NULL;
    j->p = NULL;
    j->st = st;
    j->ended_ms = clock_mono_ms();
    pthread_mutex_unlock(&ds->mu);
}

static void *worker(void *arg)
{
    struct deepscrub *ds = arg;
    pthread_mutex_lock(&ds->mu);
    while (!ds->stop) {
        struct job *j = ds->jobs;
        while (j && j->st.state != DEEPSCRUB_QUEUED)
            j = j->next;
        if (!j) {
            pthread_cond_wait(&ds->cv, &ds->mu);
            continue;
        }
        j->st.state = DEEPSCRUB_RUNNING;
        pthread_mutex_unlock(&ds->mu);
        run_job(ds, j);
        pthread_mutex_lock(&ds->mu);
    }
    pthread_mutex_unlock(&ds->mu);
    return NULL;
}

int deepscrub_new(struct state *st, struct deepscrub **out, struct nerr *err)
{
    struct deepscrub *ds = calloc(1, sizeof *ds);
    if (!ds)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    ds->state = st;
    ds->boot_ms = (long long)clock_wall_ms();
    pthread_mutex_init(&ds->mu, NULL);
    pthread_cond_init(&ds->cv, NULL);
    *out = ds;
    return 0;
}

void deepscrub_free(struct deepscrub *ds)
{
    if (!ds)
        return;
    pthread_mutex_lock(&ds->mu);
    ds->stop = 1;
    for (struct job *j = ds->jobs; j; j = j->next)
        atomic_store(&j->cancel, 1);
    pthread_cond_broadcast(&ds->cv);
    pthread_mutex_unlock(&ds->mu);
    if (ds->started)
        pthread_join(ds->th, NULL);
    while (ds->jobs) {
        struct job *j = ds->jobs;
        ds->jobs = j->next;
        if (j->t)
            table_put(j->t); /* queued, never run */
        free(j);
    }
    pthread_cond_destroy(&ds->cv);
    pthread_mutex_destroy(&ds->mu);
    free(ds);
}

int deepscrub_start(struct deepscrub *ds, struct table *t, struct partition *p, double rate_bps,
                    double rate_items, char job[32], struct nerr *err)
{
    if (rate_bps < 0 || rate_items < 0 || !p->g) {
        table_put(t);
        return nerr_set(err, NERR_INVALID,
                        rate_bps < 0 ? "the rate cannot be negative"
                                     : "this node holds no replica of the partition");
    }
    struct job *j = calloc(1, sizeof *j);
    if (!j) {
        table_put(t);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    pthread_mutex_lock(&ds->mu);
    prune(ds);
    int live = 0;
    for (struct job *k = ds->jobs; k; k = k->next)
        live += !finished(k);
    int rc = 0;
    if (ds->stop)
        rc = nerr_set(err, NERR_CLOSED, "the node is stopping");
    else if (live >= DEEPSCRUB_MAX_LIVE)
        rc = nerr_set(err, NERR_LIMIT, "%d deep scrubs are queued or running on this node", live);
    else if (!ds->started) {
        if (pthread_create(&ds->th, NULL, worker, ds))
            rc = nerr_set(err, NERR_INTERNAL, "cannot start the deep scrub thread");
        else
            ds->started = 1;
    }
    if (rc) {
        pthread_mutex_unlock(&ds->mu);
        free(j);
        table_put(t);
        return rc;
    }
    j->t = t;
    j->p = p;
    snprintf(j->st.job, sizeof j->st.job, "d%lld-%llu", ds->boot_ms, ++ds->seq);
    snprintf(j->st.table, sizeof j->st.table, "%s", t->name);
    j->st.partition = p->index;
    j->st.state = DEEPSCRUB_QUEUED;
    j->st.rate_bps = rate_bps;
    j->st.rate_items = rate_items;
    struct job **pp = &ds->jobs;
    while (*pp)
        pp = &(*pp)->next;
    *pp = j;
    memcpy(job, j->st.job, 32);
    pthread_cond_broadcast(&ds->cv);
    pthread_mutex_unlock(&ds->mu);
    return 0;
}

int deepscrub_status(struct deepscrub *ds, const char *job, struct deepscrub_status *out,
                     struct nerr *err)
{
    pthread_mutex_lock(&ds->mu);
    prune(ds);
    struct job *j = find(ds, job);
    if (j)
        *out = j->st;
    pthread_mutex_unlock(&ds->mu);
    return j ? 0 : nerr_set(err, NERR_NOTFOUND, "no deep scrub job %s on this node", job);
}

int deepscrub_cancel(struct deepscrub *ds, const char *job, struct nerr *err)
{
    pthread_mutex_lock(&ds->mu);
    struct job *j = find(ds, job);
    struct table *put = NULL;
    if (j && !finished(j)) {
        atomic_store(&j->cancel, 1);
        if (j->st.state == DEEPSCRUB_QUEUED) {
            /* Never ran: it ends here (the worker skips it). */
            j->st.state = DEEPSCRUB_CANCELLED;
            j->ended_ms = clock_mono_ms();
            put = j->t;
            j->t = NULL;
            j->p = NULL;
        }
    }
    pthread_mutex_unlock(&ds->mu);
    if (put)
        table_put(put);
    return j ? 0 : nerr_set(err, NERR_NOTFOUND, "no deep scrub job %s on this node", job);
}

/* ---- NinesAdmin calls ---- */

static void reply_nerr(struct call *c, int rc, const struct nerr *e)
{
    api_reply_err(c,
                  rc == NERR_NOTFOUND  ? "ResourceNotFoundException"
                  : rc == NERR_LIMIT   ? "LimitExceededException"
                  : rc == NERR_INVALID ? "ValidationException"
                  : rc == NERR_CLOSED  ? "ServiceUnavailable"
                                       : "InternalServerError",
                  "%s", e->msg);
}

void admin_scrub_deep(struct call *c, json_t *req)
{
    json_t *rj = json_object_get(req, "RateMBps"), *ij = json_object_get(req, "RateItems");
    double rate = DEEPSCRUB_DEFAULT_RATE, items = DEEPSCRUB_DEFAULT_ITEM_RATE;
    if (rj) {
        if (!json_is_number(rj) || json_number_value(rj) < 0 || json_number_value(rj) > 1e6) {
            api_reply_err(c, "ValidationException",
                          "RateMBps: a number of megabytes per second, 0 (unthrottled) to 1e6");
            return;
        }
        rate = json_number_value(rj) * 1e6;
        if (rate == 0)
            items = 0; /* unthrottled unless RateItems says otherwise */
    }
    if (ij) {
        if (!json_is_number(ij) || json_number_value(ij) < 0 || json_number_value(ij) > 1e9) {
            api_reply_err(c, "ValidationException",
                          "RateItems: a number of items per second, 0 (no bound) to 1e9");
            return;
        }
        items = json_number_value(ij);
    }
    struct table *t;
    struct partition *p = admin_scrub_partition(c, req, &t);
    if (!p)
        return;
    char job[32];
    struct nerr e = {0};
    int rc = deepscrub_start(c->a->deep, t, p, rate, items, job, &e); /* takes t */
    if (rc)
        reply_nerr(c, rc, &e);
    else
        api_reply_json(c, json_pack("{s:s}", "Job", job));
}

static const char *job_of(struct call *c, json_t *req)
{
    const char *job = NULL;
    if (api_get_str(c, req, "Job", &job))
        return NULL;
    if (!job)
        api_reply_err(c, "ValidationException", "Job is required");
    return job;
}

void admin_scrub_deep_status(struct call *c, json_t *req)
{
    const char *job = job_of(c, req);
    if (!job)
        return;
    struct deepscrub_status *st = calloc(1, sizeof *st);
    struct nerr e = {0};
    int rc =
        st ? deepscrub_status(c->a->deep, job, st, &e) : nerr_set(&e, NERR_NOMEM, "out of memory");
    if (rc) {
        reply_nerr(c, rc, &e);
        free(st);
        return;
    }
    json_t *o = json_pack(
        "{s:s,s:s,s:i,s:s,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:I,s:I}", "Job", st->job, "TableName",
        st->table, "Partition", st->partition, "State", deepscrub_state_name(st->state),
        "ScannedBytes", (json_int_t)st->scanned_bytes, "Items", (json_int_t)st->items, "TotalBytes",
        (json_int_t)st->total_bytes, "StoreBytes", (json_int_t)st->store_bytes, "RateBps",
        st->rate_bps, "RateItems", st->rate_items, "MeasuredBps", st->measured_bps, "ElapsedMs",
        (json_int_t)st->elapsed_ms, "Lsn", (json_int_t)st->lsn);
    if (o && st->state == DEEPSCRUB_DONE) {
        json_t *b = json_array();
        for (int i = 0; b && i < st->nbad; i++)
            json_array_append_new(b, json_integer(st->bad[i]));
        json_object_set_new(o, "Result",
                            json_pack("{s:b,s:b,s:o,s:I,s:I,s:I,s:I}", "Match", st->match,
                                      "RecordsAgree", st->records_agree, "Buckets",
                                      b ? b : json_array(), "Items", (json_int_t)st->items,
                                      "MaintainedItems", (json_int_t)st->maintained_items, "Bytes",
                                      (json_int_t)st->scanned_bytes, "MaintainedBytes",
                                      (json_int_t)st->maintained_bytes));
    }
    if (o && st->error[0])
        json_object_set_new(o, "Error", json_string(st->error));
    free(st);
    if (o)
        api_reply_json(c, o);
    else
        api_reply_err(c, "InternalServerError", "out of memory");
}

void admin_scrub_deep_cancel(struct call *c, json_t *req)
{
    const char *job = job_of(c, req);
    if (!job)
        return;
    struct nerr e = {0};
    struct deepscrub_status *st = calloc(1, sizeof *st);
    int rc = st ? deepscrub_cancel(c->a->deep, job, &e) : nerr_set(&e, NERR_NOMEM, "out of memory");
    if (!rc)
        rc = deepscrub_status(c->a->deep, job, st, &e);
    if (rc)
        reply_nerr(c, rc, &e);
    else
        api_reply_json(
            c, json_pack("{s:s,s:s}", "Job", job, "State", deepscrub_state_name(st->state)));
    free(st);
}
