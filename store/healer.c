/*
 * healer.c — see healer.h.
 */
#include "store/healer.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "net/http.h"
#include "proto/clusterfile.h"
#include "store/catalog.h"
#include "store/group.h"

#define PACE_SLOTS 256

struct pace {
    uint64_t gid;
    uint64_t next_ms; /* no step before this */
    uint64_t seen_ms; /* when this node first saw the replacement (for the log) */
};

struct healer {
    struct catalog *c;
    const struct cluster_conf *conf;
    const char *self;
    /* Dead nodes (the metadata leader's; healer thread only). */
    int64_t lead_since_ms; /* when this node last became the metadata leader; 0 = it is not */
    int64_t next_probe_ms;
    int64_t *last_ok_ms; /* per node of the file: last answer (or lead_since_ms) */
    int *said;           /* per node: its death was logged */
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    struct pace pace[PACE_SLOTS]; /* healer thread only */
    _Atomic uint64_t confs, finished, errors, in_progress, dead_starts;
    _Atomic int inflight; /* member_done proposals whose done() has not run */
};

static struct pace *pace_of(struct healer *h, uint64_t gid, uint64_t now)
{
    struct pace *free_slot = NULL, *oldest = &h->pace[0];
    for (int i = 0; i < PACE_SLOTS; i++) {
        if (h->pace[i].gid == gid)
            return &h->pace[i];
        if (!h->pace[i].gid && !free_slot)
            free_slot = &h->pace[i];
        if (h->pace[i].seen_ms < oldest->seen_ms)
            oldest = &h->pace[i];
    }
    struct pace *p = free_slot ? free_slot : oldest;
    *p = (struct pace){.gid = gid, .next_ms = 0, .seen_ms = now};
    return p;
}

static void finish_done(void *arg, int status, void *result)
{
    struct healer *h = arg;
    struct catalog_result *r = result;
    if (status || !r || r->status)
        atomic_fetch_add(&h->errors, 1);
    else
        atomic_fetch_add(&h->finished, 1);
    catalog_result_free(r);
    atomic_fetch_sub(&h->inflight, 1);
}

/* Step 2: the metadata entry member_done, here or through a meta member. */
static void finish(struct healer *h, struct table *t, struct partition *p, struct pace *pc,
                   uint64_t now)
{
    struct catalog *c = h->c;
    if (catalog_meta(c)) {
        atomic_fetch_add(&h->inflight, 1);
        int rc = catalog_propose_member_done(c, t->name, t->id, p->index, finish_done, h);
        if (rc) {
            atomic_fetch_sub(&h->inflight, 1);
            atomic_fetch_add(&h->errors, 1);
            return;
        }
    } else {
        json_t *body = json_pack("{s:s,s:i,s:b,s:s}", "TableName", t->name, "Partition", p->index,
                                 "Finish", 1, "TableId", t->id);
        char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        json_decref(body);
        struct nerr e = {0};
        int rc = text ? catalog_meta_call(c, "ReplaceReplica", text, NULL, &e) : NERR_NOMEM;
        free(text);
        if (rc) {
            atomic_fetch_add(&h->errors, 1);
            log_warn("partition %s: finishing the replacement: %s", p->name, e.msg);
            return;
        }
        atomic_fetch_add(&h->finished, 1);
    }
    log_info("partition %s: replacement done in %.1f s here (the configuration changed, the new "
             "member caught up); the old member's slot is cleared",
             p->name, (double)(now - pc->seen_ms) / 1000.0);
}

static void one_partition(struct healer *h, struct table *t, struct partition *p, uint64_t now)
{
    const struct pmembers *pm = partition_members(p);
    struct group *g = p->g;
    if (!pm->chg_add || !g)
        return;
    struct group_status st;
    group_status(g, &st);
    if (st.role != RAFT_LEADER)
        return;
    atomic_fetch_add(&h->in_progress, 1);
    struct pace *pc = pace_of(h, p->gid, now);
    if (now < pc->next_ms)
        return;
    /* Step 1 may be tried at every pass (a second proposal while the first
     * is in flight is refused by the core as busy); finishing and failures
     * wait HEALER_RETRY_MS. */
    uint32_t add = (uint32_t)pm->chg_add, remove = (uint32_t)pm->chg_remove;
    struct raft_conf base, target;
    catalog_member_conf(pm, 0, &base); /* the voters before the change */
    target = (struct raft_conf){.voters = (base.voters & ~(1u << remove)) | (1u << add)};
    struct group_conf_info ci;
    group_conf_get(g, &ci);
    uint32_t cur = ci.conf.voters;
    if (!cur && !ci.conf.voters_out) {
        /* The initial configuration: ids 1..n as opened. */
        uint32_t n = group_members_of(g)->n;
        cur = ((1u << (n + 1)) - 1) & ~1u;
    }
    if (ci.conf.voters_out || !ci.committed)
        return; /* joint or not yet committed: the group moves on by itself */
    if (cur == base.voters) {
        char node[64];
        if (group_member_node(g, add, node, sizeof node))
            return; /* this member has not learnt the new slot yet */
        struct nerr e = {0};
        int rc = group_propose_conf(g, &target, &e);
        if (rc) {
            if (rc != NERR_BUSY) {
                pc->next_ms = now + HEALER_RETRY_MS;
                atomic_fetch_add(&h->errors, 1);
                log_warn("partition %s: proposing the configuration with member %u (%s) for %u: %s",
                         p->name, add, node, remove, e.msg);
            }
            return;
        }
        atomic_fetch_add(&h->confs, 1);
        log_info("partition %s: replacing member %u (%s) by %u (%s): joint configuration proposed",
                 p->name, remove, pm->slots[remove - 1], add, node);
        return;
    }
    if (cur == target.voters) {
        uint64_t match = group_member_match(g, add);
        if (match < ci.index)
            return; /* the new member is catching up (entries or a snapshot) */
        pc->next_ms = now + HEALER_RETRY_MS;
        finish(h, t, p, pc, now);
        return;
    }
    pc->next_ms = now + 10 * HEALER_RETRY_MS;
    atomic_fetch_add(&h->errors, 1);
    log_warn("partition %s: configuration %#x is neither the one before the replacement (%#x) nor "
             "its target (%#x); left alone",
             p->name, cur, base.voters, target.voters);
}

static void add_done(void *arg, int status, void *result)
{
    struct healer *h = arg;
    struct catalog_result *r = result;
    if (status || !r || r->status)
        atomic_fetch_add(&h->errors, 1);
    else
        atomic_fetch_add(&h->dead_starts, 1);
    catalog_result_free(r);
    atomic_fetch_sub(&h->inflight, 1);
}

/* The metadata leader asks every other node whether it answers (GET / of
 * its API, all at once, HEALER_PROBE_TIMEOUT_MS each): the time a node
 * last answered, counted from when this node became the leader. */
static void probe(struct healer *h, int64_t now)
{
    const struct cluster_conf *conf = h->conf;
    size_t n = conf->nnodes;
    struct http_request *rq = calloc(n, sizeof *rq);
    struct http_response *rs = calloc(n, sizeof *rs);
    char(*urls)[300] = calloc(n, sizeof *urls);
    const struct cluster_node *me = cluster_conf_node(conf, h->self);
    if (rq && rs && urls) {
        for (size_t i = 0; i < n; i++) {
            cluster_conf_api_url(conf, conf->nodes[i].api, urls[i], sizeof urls[i]);
            rq[i] = (struct http_request){.method = "GET",
                                          .url = urls[i],
                                          .timeout_ms = HEALER_PROBE_TIMEOUT_MS,
                                          .connect_timeout_ms = HEALER_PROBE_TIMEOUT_MS,
                                          .no_proxy = 1,
                                          .ca_file = conf->tls_api ? conf->tls_ca : NULL,
                                          .cert_file = conf->tls_api && me ? me->tls_cert : NULL,
                                          .key_file = conf->tls_api && me ? me->tls_key : NULL};
        }
        if (!http_call_all(rq, n, rs, NULL))
            for (size_t i = 0; i < n; i++)
                if (rs[i].fail == HTTP_FAIL_NONE && rs[i].status == 200) {
                    h->last_ok_ms[i] = now;
                    if (h->said[i])
                        log_info("node %s answers again", conf->nodes[i].id);
                    h->said[i] = 0;
                }
    }
    for (size_t i = 0; rs && i < n; i++)
        http_response_free(&rs[i]);
    free(rq);
    free(rs);
    free(urls);
}

/* On the metadata leader: every partition replica of a node silent for
 * healing.dead_after is replaced (the same as NinesAdmin.ReplaceReplica),
 * at most HEALER_MAX_STARTS per pass. */
static void heal_dead(struct healer *h, int64_t now)
{
    struct catalog *c = h->c;
    const struct cluster_conf *conf = h->conf;
    struct group *meta = catalog_meta(c);
    struct group_status ms;
    if (meta)
        group_status(meta, &ms);
    if (!meta || ms.role != RAFT_LEADER || !conf->healing_dead_after_ns) {
        h->lead_since_ms = 0;
        return;
    }
    if (!h->lead_since_ms) {
        h->lead_since_ms = now;
        for (size_t i = 0; i < conf->nnodes; i++)
            h->last_ok_ms[i] = now;
    }
    /* Probes and the scan for dead nodes' replicas: once a probe
     * interval (the scan reads every partition). */
    if (now < h->next_probe_ms)
        return;
    h->next_probe_ms = now + HEALER_PROBE_MS;
    probe(h, now);
    int64_t dead_ms = (int64_t)(conf->healing_dead_after_ns / 1000000);
    const char *dead[64];
    size_t ndead = 0;
    for (size_t i = 0; i < conf->nnodes && ndead < 64; i++)
        if (strcmp(conf->nodes[i].id, h->self) && now - h->last_ok_ms[i] >= dead_ms)
            dead[ndead++] = conf->nodes[i].id;
    if (!ndead)
        return;
    char **names = NULL;
    size_t nt = 0;
    if (catalog_names(c, &names, &nt))
        return;
    /* Bounded work per pass: choosing a node reads every table's members. */
    int starts = 0, tries = 0;
    for (size_t d = 0; d < ndead; d++) {
        size_t di = 0;
        while (strcmp(conf->nodes[di].id, dead[d]))
            di++;
        int held = 0;
        for (size_t i = 0; i < nt; i++) {
            struct table *t = catalog_get(c, names[i]);
            for (int p = 0; t && p < t->nparts; p++) {
                const struct pmembers *pm = partition_members(&t->parts[p]);
                int slot = 0;
                for (int k = 0; k < pm->nslots; k++)
                    if (!strcmp(pm->slots[k], dead[d]))
                        slot = k + 1;
                if (!slot)
                    continue;
                held++;
                if (pm->chg_add || starts >= HEALER_MAX_STARTS || tries >= 2 * HEALER_MAX_STARTS)
                    continue; /* one change at a time; the rest at the next pass */
                tries++;
                const char *to = NULL;
                struct nerr e = {0};
                if (catalog_choose_replacement(c, t, p, dead[d], dead, ndead, &to, &e)) {
                    atomic_fetch_add(&h->errors, 1);
                    continue;
                }
                int add = catalog_new_member_id(pm, to);
                if (!add)
                    continue;
                atomic_fetch_add(&h->inflight, 1);
                if (catalog_propose_member_add(c, t->name, t->id, p, add, to, slot, add_done, h)) {
                    atomic_fetch_sub(&h->inflight, 1);
                    continue;
                }
                starts++;
                log_info("partition %s: member %d's node %s is dead; replacing it by %d on %s",
                         t->parts[p].name, slot, dead[d], add, to);
            }
            table_put(t);
        }
        if (held && !h->said[di]) {
            h->said[di] = 1;
            log_warn("node %s silent for %.1f s (healing.dead_after %.0f s): rebuilding its "
                     "partition replicas on other nodes",
                     dead[d], (double)(now - h->last_ok_ms[di]) / 1000.0, (double)dead_ms / 1000.0);
        }
    }
    for (size_t i = 0; i < nt; i++)
        free(names[i]);
    free(names);
}

static void pass(struct healer *h)
{
    char **names = NULL;
    size_t n = 0;
    if (catalog_names(h->c, &names, &n))
        return;
    uint64_t now = clock_mono_ms();
    atomic_store(&h->in_progress, 0);
    for (size_t i = 0; i < n; i++) {
        struct table *t = catalog_get(h->c, names[i]);
        for (int p = 0; t && p < t->nparts; p++)
            one_partition(h, t, &t->parts[p], now);
        table_put(t);
        free(names[i]);
    }
    free(names);
    if (h->conf)
        heal_dead(h, (int64_t)now);
}

static void *healer_main(void *arg)
{
    struct healer *h = arg;
    pthread_setname_np(pthread_self(), "nines-healer");
    pthread_mutex_lock(&h->mu);
    while (!h->stop) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_nsec += HEALER_TICK_MS * 1000000L;
        while (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&h->cv, &h->mu, &dl);
        if (h->stop)
            break;
        pthread_mutex_unlock(&h->mu);
        pass(h);
        pthread_mutex_lock(&h->mu);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

int healer_start(struct catalog *c, const struct cluster_conf *conf, const char *self,
                 struct healer **out, struct nerr *err)
{
    struct healer *h = calloc(1, sizeof *h);
    if (!h || !(h->last_ok_ms = calloc(conf->nnodes ? conf->nnodes : 1, sizeof *h->last_ok_ms)) ||
        !(h->said = calloc(conf->nnodes ? conf->nnodes : 1, sizeof *h->said))) {
        if (h) {
            free(h->last_ok_ms);
            free(h);
        }
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    h->c = c;
    h->conf = conf;
    h->self = self;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    if (pthread_create(&h->th, NULL, healer_main, h)) {
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->cv);
        free(h->last_ok_ms);
        free(h->said);
        free(h);
        return nerr_set(err, NERR_IO, "cannot start the healer thread");
    }
    *out = h;
    return 0;
}

void healer_stop(struct healer *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->th, NULL);
    /* A proposal's done() runs exactly once, within the group's proposal
     * timeout (group.h): wait for the ones still out. */
    while (atomic_load(&h->inflight) > 0)
        nanosleep(&(struct timespec){0, 10000000L}, NULL);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h->last_ok_ms);
    free(h->said);
    free(h);
}

void healer_stats(struct healer *h, struct healer_stats *out)
{
    *out = (struct healer_stats){0};
    if (!h)
        return;
    out->confs_proposed = atomic_load(&h->confs);
    out->finished = atomic_load(&h->finished);
    out->errors = atomic_load(&h->errors);
    out->in_progress = atomic_load(&h->in_progress);
    out->dead_starts = atomic_load(&h->dead_starts);
}
