#include "canary/agg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const canary_op_names[COP_N] = {"put", "get_consistent", "get_eventual", "delete",
                                            "probe"};

struct agg_interval {
    int64_t start_ms;
    struct agg_interval *next;
    struct agg_cell cells[]; /* nendpoints * ntables * COP_N */
};

static size_t ncells(const struct agg *a)
{
    return a->nendpoints * a->ntables * COP_N;
}

static size_t cell_index(const struct agg *a, size_t ep, size_t tbl, enum canary_op op)
{
    return (ep * a->ntables + tbl) * COP_N + (size_t)op;
}

static void cells_init(struct agg_cell *c, size_t n)
{
    memset(c, 0, n * sizeof *c);
    for (size_t i = 0; i < n; i++)
        hist_init(&c[i].lat);
}

int agg_init(struct agg *a, size_t nendpoints, size_t ntables, int64_t interval_ms,
             struct nerr *err)
{
    memset(a, 0, sizeof *a);
    a->nendpoints = nendpoints;
    a->ntables = ntables;
    a->interval_ms = interval_ms > 0 ? interval_ms : 10000;
    a->total = malloc(ncells(a) * sizeof *a->total);
    if (!a->total)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    cells_init(a->total, ncells(a));
    pthread_mutex_init(&a->mu, NULL);
    return 0;
}

void agg_destroy(struct agg *a)
{
    while (a->open) {
        struct agg_interval *n = a->open->next;
        free(a->open);
        a->open = n;
    }
    free(a->total);
    pthread_mutex_destroy(&a->mu);
}

uint64_t agg_cell_errors(const struct agg_cell *c)
{
    return c->attempts > c->successes ? c->attempts - c->successes : 0;
}

static void add_error(struct agg_cell *c, const char *type, uint64_t n)
{
    for (int i = 0; i < AGG_MAX_ERR_TYPES; i++) {
        if (!c->err_name[i][0]) {
            snprintf(c->err_name[i], AGG_ERR_NAME, "%s", type);
            c->err_count[i] = n;
            return;
        }
        if (!strncmp(c->err_name[i], type, AGG_ERR_NAME - 1)) {
            c->err_count[i] += n;
            return;
        }
    }
    c->err_other += n;
}

void agg_cell_add_counts(struct agg_cell *dst, const struct agg_cell *src)
{
    dst->attempts += src->attempts;
    dst->successes += src->successes;
    dst->retries += src->retries;
    dst->stale += src->stale;
    for (int i = 0; i < AGG_MAX_ERR_TYPES && src->err_name[i][0]; i++)
        add_error(dst, src->err_name[i], src->err_count[i]);
    dst->err_other += src->err_other;
}

int agg_record(struct agg *a, int64_t sched_ms, size_t ep, size_t tbl, enum canary_op op, int ok,
               const char *err_type, int retries, int stale, uint64_t latency_ns)
{
    int64_t start = sched_ms - (((sched_ms % a->interval_ms) + a->interval_ms) % a->interval_ms);
    int rc = 0;
    pthread_mutex_lock(&a->mu);
    struct agg_interval **pp = &a->open;
    while (*pp && (*pp)->start_ms < start)
        pp = &(*pp)->next;
    if (!*pp || (*pp)->start_ms != start) {
        struct agg_interval *iv = malloc(sizeof *iv + ncells(a) * sizeof(struct agg_cell));
        if (!iv) {
            rc = NERR_NOMEM;
            goto out;
        }
        iv->start_ms = start;
        cells_init(iv->cells, ncells(a));
        iv->next = *pp;
        *pp = iv;
    }
    struct agg_cell *c = &(*pp)->cells[cell_index(a, ep, tbl, op)];
    c->attempts++;
    if (ok)
        c->successes++;
    else
        add_error(c, err_type ? err_type : "unknown", 1);
    c->retries += (uint64_t)(retries > 0 ? retries : 0);
    c->stale += stale ? 1 : 0;
    hist_record(&c->lat, latency_ns);
out:
    pthread_mutex_unlock(&a->mu);
    return rc;
}

int agg_close_until(struct agg *a, int64_t watermark_ms, agg_cell_fn fn, void *arg)
{
    int closed = 0;
    pthread_mutex_lock(&a->mu);
    while (a->open && a->open->start_ms + a->interval_ms <= watermark_ms) {
        struct agg_interval *iv = a->open;
        a->open = iv->next;
        for (size_t ep = 0; ep < a->nendpoints; ep++)
            for (size_t t = 0; t < a->ntables; t++)
                for (int op = 0; op < COP_N; op++) {
                    size_t i = cell_index(a, ep, t, (enum canary_op)op);
                    if (!iv->cells[i].attempts)
                        continue;
                    if (fn)
                        fn(arg, iv->start_ms, a->interval_ms, ep, t, (enum canary_op)op,
                           &iv->cells[i]);
                    agg_cell_add_counts(&a->total[i], &iv->cells[i]);
                    /* The cumulative histogram keeps the last interval's
                     * latencies only: a scrape wants "now", not since start. */
                    a->total[i].lat = iv->cells[i].lat;
                }
        free(iv);
        closed++;
    }
    pthread_mutex_unlock(&a->mu);
    return closed;
}

void agg_total(struct agg *a, size_t ep, size_t tbl, enum canary_op op, struct agg_cell *out)
{
    pthread_mutex_lock(&a->mu);
    *out = a->total[cell_index(a, ep, tbl, op)];
    pthread_mutex_unlock(&a->mu);
}
