/*
 * gameday/traffic.c — the game day's traffic: load/load.h's load_run on a
 * thread of its own, its options from the playbook, and the on_complete
 * hook that counts every request per step and measures, for every inject
 * step, the time until each affected partition takes a write again
 * (contract in run.h; "recovery time" in gameday.h).
 */
#include "gameday/run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/clock.h"
#include "proto/av.h"

static unsigned key_partition(uint64_t key, unsigned nparts)
{
    char k[32];
    gd_fmt(k, sizeof k, "k%llu", (unsigned long long)key);
    json_t *av = json_pack("{s:s}", "S", k);
    unsigned p = av ? av_partition_of(av, nparts) : 0;
    json_decref(av);
    return p;
}

static void on_complete(void *arg, const struct load_result *r)
{
    struct gd_run *g = arg;
    if (r->final || !r->measured)
        return;
    enum load_op op = r->req->op;
    int write = op == LOAD_PUT || op == LOAD_CAS || op == LOAD_DELETE;
    /* A cas whose condition was false got a correct answer: for
     * availability it counts as served, not as an error. */
    int served = r->ok || (r->error && !strcmp(r->error, "ConditionalCheckFailedException"));
    gd_obs_traffic(g, r->endpoint, served, r->done_ns,
                   r->done_ns > r->intended_ns ? r->done_ns - r->intended_ns : 0);
    pthread_mutex_lock(&g->mu);
    unsigned part = write && r->ok && g->nparts ? key_partition(r->req->key, g->nparts) : 0;
    if (served)
        g->total_ok++;
    else
        g->total_err++;
    int cur = atomic_load(&g->cur);
    if (cur >= 0 && (size_t)cur < g->plan->n) {
        struct step_rec *s = &g->rec[cur];
        if (served) {
            s->ok++;
            hist_record(s->lat, r->done_ns > r->intended_ns ? r->done_ns - r->intended_ns : 0);
        } else {
            s->errors++;
        }
    }
    if (write && r->ok && g->nparts)
        for (size_t i = 0; i < g->plan->n; i++) {
            struct step_rec *s = &g->rec[i];
            if (!s->off_ns || s->recovery_ns || !s->affected[part] || s->recovered_ns[part] ||
                r->intended_ns < s->off_ns)
                continue;
            s->recovered_ns[part] = r->done_ns;
            if (++s->n_recovered == s->n_affected)
                s->recovery_ns = r->done_ns - s->off_ns;
        }
    pthread_mutex_unlock(&g->mu);
}

static void *traffic_main(void *arg)
{
    struct gd_run *g = arg;
    struct load_hooks hooks = {.on_complete = on_complete, .arg = g, .stop = &g->stop};
    g->load_rc = load_run(&g->lo, &g->ls, &hooks, &g->load_err);
    atomic_store(&g->traffic_done, 1);
    return NULL;
}

/* The playbook's traffic as load options: one endpoint per node (or per AZ),
 * the table created with the playbook's partitions, the history recorded
 * for the checkers, the plan's seed. The playbook's checks keep every value
 * within what load_opts_parse accepts. */
static int traffic_opts(struct gd_run *g, struct nerr *err)
{
    const struct pb_traffic *t = &g->pb->traffic;
    struct load_opts *o = &g->lo;
    const char **seen_az = calloc(g->conf->nnodes + 1, sizeof *seen_az);
    size_t nseen = 0;
    int rc = 0;
    load_opts_init(o);
    if (!seen_az || !(o->endpoints = calloc(g->conf->nnodes + 1, sizeof *o->endpoints)) ||
        !(g->ep_az = calloc(g->conf->nnodes + 1, sizeof *g->ep_az))) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < g->conf->nnodes; i++) {
        const struct cluster_node *n = &g->conf->nodes[i];
        if (t->per_az) {
            size_t j;
            for (j = 0; j < nseen && strcmp(seen_az[j], n->az); j++)
                ;
            if (j < nseen)
                continue;
            seen_az[nseen++] = n->az;
        }
        if (asprintf(&o->endpoints[o->nendpoints], "http://%s", n->api) < 0) {
            rc = nerr_set(err, NERR_NOMEM, "out of memory");
            goto out;
        }
        g->ep_az[o->nendpoints] = -1;
        for (size_t z = 0; z < g->naz; z++)
            if (!strcmp(g->az[z], n->az))
                g->ep_az[o->nendpoints] = (int)z;
        o->nendpoints++;
    }
    gd_fmt(o->table, sizeof o->table, "%s", t->table);
    o->create = 1;
    o->partitions = t->partitions;
    double sum = 0;
    for (int i = 0; i < PB_NOPS; i++)
        sum += t->mix[i];
    for (int i = 0; i < PB_NOPS; i++)
        o->weight[i] = t->mix[i] / sum;
    o->mix = LOAD_MIX_WEIGHTS;
    o->dist = t->zipf ? LOAD_DIST_ZIPF : LOAD_DIST_UNIFORM;
    if ((size_t)snprintf(o->history, sizeof o->history, "%s/history.jsonl", g->dir) >=
        sizeof o->history) {
        rc = nerr_set(err, NERR_LIMIT, "report directory %s: path too long", g->dir);
        goto out;
    }
    o->rate = t->rate;
    /* "For the whole run": the longest the run can take; the runner stops
     * it when the steps are done. */
    double d = t->duration_ns ? gd_secs(t->duration_ns) : gd_secs(g->plan->bound_ns) + 120;
    o->duration_s = d > LOAD_MAX_DURATION_S ? LOAD_MAX_DURATION_S : d;
    o->keys = t->keys;
    o->concurrency = t->concurrency;
    o->timeout_ms = t->timeout_ms;
    o->seed = g->plan->seed | 1;
    o->final_timeout_s = 60;
out:
    free(seen_az);
    return rc;
}

int gd_start_traffic(struct gd_run *g, struct nerr *err)
{
    int rc = traffic_opts(g, err);
    if (rc)
        return rc;
    if ((rc = pthread_create(&g->thr, NULL, traffic_main, g)))
        return nerr_sys(err, rc, "pthread_create");
    g->thr_started = 1;
    /* Wait for the table (load --create makes it) with every partition led,
     * and learn its placement for the recovery measurement. */
    unsigned want = g->pb->traffic.partitions;
    struct health h;
    json_t *m = NULL;
    if ((rc = gd_wait_for(g, 60 * NS_PER_S, gd_table_ready, &want, &h, &m, err))) {
        json_decref(m);
        return rc;
    }
    unsigned char(*holds)[GD_MAX_PARTS] = calloc(g->inv->n_hosts + 1, sizeof *holds);
    if (!holds) {
        json_decref(m);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    pthread_mutex_lock(&g->mu);
    gd_learn_partitions(g, m, holds, g->inv->n_hosts);
    for (size_t i = 0; i < g->plan->n; i++) {
        const struct pb_action *a = &g->plan->a[i];
        if (a->kind != PB_INJECT)
            continue;
        for (size_t k = 0; k < a->nhosts; k++)
            for (unsigned p = 0; p < g->nparts; p++)
                if (holds[a->hosts[k]][p] && !g->rec[i].affected[p]) {
                    g->rec[i].affected[p] = 1;
                    g->rec[i].n_affected++;
                }
    }
    pthread_mutex_unlock(&g->mu);
    free(holds);
    json_decref(m);
    /* The table is led everywhere, but the load may still be setting up
     * (waiting until every endpoint says ACTIVE): the first fault must not
     * meet its set-up, or the traffic fails before it began. The steps
     * start once a first request has completed (bounded). */
    uint64_t until = clock_mono_ns() + 60 * NS_PER_S;
    for (;;) {
        pthread_mutex_lock(&g->mu);
        uint64_t seen = g->total_ok + g->total_err;
        pthread_mutex_unlock(&g->mu);
        if (seen)
            break;
        if (atomic_load(&g->traffic_done))
            return nerr_set(err, g->load_rc ? g->load_rc : NERR_IO,
                            "traffic ended before it began: %s",
                            g->load_err.msg[0] ? g->load_err.msg : "no request was made");
        if (clock_mono_ns() > until)
            return nerr_set(err, NERR_TIMEOUT,
                            "traffic: no request completed within 60 s of the "
                            "table being ready");
        if (gd_cancelled(g))
            return nerr_set(err, NERR_CLOSED, "cancelled");
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
        gd_progress(g, 0);
    }
    gd_note(g, "traffic running: table %s with %u partitions, %.0f requests/s",
            g->pb->traffic.table, g->nparts, g->pb->traffic.rate);
    return 0;
}

void gd_stop_traffic(struct gd_run *g)
{
    if (!g->thr_started)
        return;
    load_stop(&g->stop);
    gd_note(g, "stopping traffic; reading every key");
    while (!atomic_load(&g->traffic_done)) {
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
        gd_progress(g, 0);
    }
    pthread_join(g->thr, NULL);
    g->thr_started = 2; /* joined */
}
