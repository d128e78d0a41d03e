/*
 * group.c — lifecycle of the replication groups of a node and the public
 * calls of group.h (contract there; the split into files in
 * group_internal.h).
 */
#include "store/group.h"

#include "lib/invariant.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/le.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "store/group_internal.h"
#include "store/nodelog.h"
#include "store/overlay.h"
#include "store/raftwire.h"

static void snap_deliver(void *arg, uint64_t gid, const char *from, const struct raft_msg *m);

int group_host_start(struct state *st, const char *log_dir, const struct wal_options *wopt,
                     const struct group_timing *timing, group_send_fn send, void *send_arg,
                     struct group_host **out, struct nerr *err)
{
    struct group_host *h = calloc(1, sizeof *h);
    int rc;
    if (!h)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    h->st = st;
    h->send = send;
    h->send_arg = send_arg;
    if (timing)
        h->timing = *timing;
    if (!h->timing.election_ticks)
        h->timing.election_ticks = 10;
    if (!h->timing.heartbeat_ticks)
        h->timing.heartbeat_ticks = 2;
    if (!h->timing.drift_ppm)
        h->timing.drift_ppm = 50000;
    if (!h->timing.compact_entries)
        h->timing.compact_entries = 50000;
    if (!h->timing.quiesce_ticks)
        h->timing.quiesce_ticks = 2 * h->timing.election_ticks;
    /* Differs at every start: the wall clock, the pid and the monotonic clock. */
    h->incarnation =
        ((uint64_t)clock_wall_ms() * 1000003u ^ ((uint64_t)getpid() << 40) ^ clock_mono_ns()) &
        ((UINT64_C(1) << 62) - 1);
    if (!h->incarnation)
        h->incarnation = 1;
    h->seed = clock_mono_ns() ^ ((uint64_t)getpid() << 32);
    /* Request ids: a random base per process, then a counter. */
    atomic_store(&h->rid_next, (h->seed * 0x9E3779B97F4A7C15ull) & ~0xFFFFFFFFFull);
    if (!(h->ov = overlay_new())) {
        free(h);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_init(&h->dmu, NULL);
    pthread_rwlock_init(&h->vlock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* deadlines are monotonic */
    pthread_cond_init(&h->cv, &ca);
    pthread_cond_init(&h->dcv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&h->committed, NULL);
    rc = nodelog_open(log_dir, wopt, &h->nl, err);
    if (rc)
        goto fail;
    if (send) {
        struct snapstream_config sc = {.rate = h->timing.snapshot_rate,
                                       .st = st,
                                       .send = send,
                                       .send_arg = send_arg,
                                       .deliver = snap_deliver,
                                       .arg = h};
        if ((rc = snapstream_start(&sc, &h->ss, err))) {
            nodelog_close(h->nl);
            goto fail;
        }
    }
    if (pthread_create(&h->applier, NULL, group__applier_main, h) != 0) {
        nodelog_close(h->nl);
        snapstream_stop(h->ss);
        rc = nerr_set(err, NERR_IO, "cannot start the applier thread");
        goto fail;
    }
    if (pthread_create(&h->driver, NULL, group__driver_main, h) != 0) {
        pthread_mutex_lock(&h->mu);
        h->stopping = 1;
        pthread_cond_signal(&h->cv);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->applier, NULL);
        nodelog_close(h->nl);
        snapstream_stop(h->ss);
        rc = nerr_set(err, NERR_IO, "cannot start the driver thread");
        goto fail;
    }
    *out = h;
    return 0;
fail:
    pthread_cond_destroy(&h->cv);
    pthread_cond_destroy(&h->dcv);
    pthread_cond_destroy(&h->committed);
    pthread_mutex_destroy(&h->mu);
    pthread_mutex_destroy(&h->dmu);
    pthread_rwlock_destroy(&h->vlock);
    overlay_free(h->ov);
    free(h);
    return rc;
}

void group_host_stop(struct group_host *h)
{
    if (!h)
        return;
    /* First: its thread hands verified snapshots to the driver. */
    snapstream_stop(h->ss);
    h->ss = NULL;
    pthread_mutex_lock(&h->dmu);
    h->dstop = 1;
    pthread_cond_signal(&h->dcv);
    pthread_mutex_unlock(&h->dmu);
    pthread_join(h->driver, NULL);
    for (struct dev *d = h->dhead, *n; d; d = n) {
        n = d->next;
        raft_msg_release(&d->msg);
        free(d);
    }
    pthread_mutex_lock(&h->mu);
    h->stopping = 1;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->applier, NULL);
    nodelog_close(h->nl);
    free(h->peers);
    pthread_cond_destroy(&h->cv);
    pthread_cond_destroy(&h->dcv);
    pthread_cond_destroy(&h->committed);
    pthread_mutex_destroy(&h->mu);
    pthread_mutex_destroy(&h->dmu);
    pthread_rwlock_destroy(&h->vlock);
    overlay_free(h->ov);
    free(h->touched);
    free(h);
}

int group_host_drop(struct group_host *h, const char *name, struct nerr *err)
{
    return nodelog_drop(h->nl, name, err);
}

void group_host_log_stats(struct group_host *h, struct nodelog_stats *out)
{
    nodelog_get_stats(h->nl, out);
}

struct state *group_host_state(struct group_host *h)
{
    return h->st;
}

struct overlay *group_host_overlay(struct group_host *h)
{
    return h->ov;
}

struct group_host *group_host_of(struct group *g)
{
    return g->h;
}

void group_host_stats(struct group_host *h, struct group_host_stats *o)
{
    o->msgs_in = atomic_load(&h->st_in);
    o->msgs_out = atomic_load(&h->st_out);
    o->dropped_malformed = atomic_load(&h->st_malformed);
    o->dropped_forged = atomic_load(&h->st_forged);
    o->dropped_unknown = atomic_load(&h->st_unknown);
    o->dropped_raft = atomic_load(&h->st_raft);
    o->send_failures = atomic_load(&h->st_sendfail);
    o->poisoned_entries = atomic_load(&h->st_poisoned);
    o->refused_proposals = atomic_load(&h->st_refused);
    o->quiescent_groups = atomic_load(&h->st_quiet);
    o->active_groups = atomic_load(&h->st_active);
    o->node_beats_in = atomic_load(&h->st_beats_in);
    o->peer_down_reports = atomic_load(&h->st_peer_downs);
    o->peer_restarts = atomic_load(&h->st_peer_restarts);
    if (h->ss) {
        struct snapstream_stats s;
        snapstream_stats(h->ss, &s);
        o->snap_streams_done = s.streams_done;
        o->snap_streams_failed = s.streams_failed;
        o->snap_chunks_resent = s.chunks_resent;
        o->snap_send_refused = s.send_refused;
    }
}

void group_host_set_validator(struct group_host *h, group_validate_fn fn, void *arg)
{
    pthread_rwlock_wrlock(&h->vlock);
    h->validate = fn;
    h->validate_arg = arg;
    pthread_rwlock_unlock(&h->vlock);
}

/* A forwarded proposal the validator refuses never reaches the driver: the
 * sender gets FWD_NACK ("nothing was proposed"), as from a member that does
 * not lead. Returns 0 when d may go on to the driver. */
static int refuse_forwarded(struct group_host *h, const char *from, uint64_t gid,
                            struct raft_msg *m)
{
    struct nerr err = {0};
    int rc = 0;
    pthread_rwlock_rdlock(&h->vlock);
    if (m->data_len < GROUP_FRAME || m->data[0] != GROUP_FRAME_MAGIC)
        rc = nerr_set(&err, NERR_CORRUPT, "no proposal frame");
    else if (h->validate)
        rc = h->validate(h->validate_arg, gid, m->data + GROUP_FRAME, m->data_len - GROUP_FRAME,
                         &err);
    pthread_rwlock_unlock(&h->vlock);
    if (!rc)
        return 0;
    uint64_t n = atomic_fetch_add(&h->st_refused, 1);
    if (n < 10 || (n & (n - 1)) == 0)
        log_warn("refused a proposal forwarded by %s for group %llu: %s (%llu so far)", from,
                 (unsigned long long)gid, err.msg, (unsigned long long)n + 1);
    struct raft_msg nack = {
        .type = RAFTWIRE_FWD_NACK, .from = m->to, .to = m->from, .index = m->index};
    unsigned char *buf = NULL;
    size_t len = 0;
    if (h->send && !raftwire_encode(&nack, &buf, &len)) {
        if (h->send(h->send_arg, from, gid, buf, len))
            atomic_fetch_add(&h->st_sendfail, 1);
        else
            atomic_fetch_add(&h->st_out, 1);
    }
    free(buf);
    return -1;
}

int group_host_barrier(struct group_host *h)
{
    int rc = 0;
    pthread_mutex_lock(&h->mu);
    if (h->txn_open || h->head) {
        /* The next commit covers everything applied so far. */
        uint64_t target = h->commit_seq + 1;
        h->barriers++;
        pthread_cond_signal(&h->cv);
        while (h->commit_seq < target && !h->failed && !h->stopping)
            pthread_cond_wait(&h->committed, &h->mu);
        h->barriers--;
    }
    if (h->failed)
        rc = NERR_IO;
    pthread_mutex_unlock(&h->mu);
    return rc;
}

void group_host_recv(struct group_host *h, const char *from, uint64_t gid, const void *msg,
                     size_t len)
{
    struct nerr err = {0};
    struct dev *d = calloc(1, sizeof *d);
    if (!d)
        return;
    atomic_fetch_add(&h->st_in, 1);
    if (raftwire_decode(msg, len, gid, &d->msg, &err)) {
        uint64_t n = atomic_fetch_add(&h->st_malformed, 1);
        if (n < 10 || (n & (n - 1)) == 0)
            log_warn("dropped a malformed consensus message from %s for group %llu: %s "
                     "(%llu so far)",
                     from, (unsigned long long)gid, err.msg, (unsigned long long)n + 1);
        free(d);
        return;
    }
    if (d->msg.type == RAFTWIRE_NODE_BEAT) {
        d->kind = DEV_BEAT;
        snprintf(d->from, sizeof d->from, "%s", from);
        group__dev_post(h, d);
        return;
    }
    if (d->msg.type == RAFTWIRE_SNAP_CHUNK || d->msg.type == RAFTWIRE_SNAP_ACK) {
        if (h->ss)
            snapstream_recv(h->ss, from, gid, &d->msg);
        raft_msg_release(&d->msg);
        free(d);
        return;
    }
    if (d->msg.type == RAFT_MSG_SNAPSHOT) {
        /* A snapshot reaches the core only from this node's snapshot
         * thread, once its stream is verified (snap_deliver): one from the
         * wire names state this node does not have. */
        atomic_fetch_add(&h->st_malformed, 1);
        raft_msg_release(&d->msg);
        free(d);
        return;
    }
    if (d->msg.type == RAFTWIRE_FWD_PROPOSE && refuse_forwarded(h, from, gid, &d->msg)) {
        raft_msg_release(&d->msg);
        free(d);
        return;
    }
    d->kind = DEV_MSG;
    d->gid = gid;
    snprintf(d->from, sizeof d->from, "%s", from);
    group__dev_post(h, d);
}

/* The snapshot thread verified a stream: the core learns the snapshot
 * (metadata only) as if the leader had sent it. */
static void snap_deliver(void *arg, uint64_t gid, const char *from, const struct raft_msg *m)
{
    struct group_host *h = arg;
    struct dev *d = calloc(1, sizeof *d);
    if (!d)
        return; /* the leader asks again */
    d->kind = DEV_MSG;
    d->gid = gid;
    d->local = 1;
    d->msg = *m;
    d->msg.data = NULL;
    d->msg.data_len = 0;
    d->msg.entries = NULL;
    d->msg.n_entries = 0;
    snprintf(d->from, sizeof d->from, "%s", from);
    group__dev_post(h, d);
}

static int conf_given(const struct raft_conf *c)
{
    return c->voters || c->voters_out || c->log;
}

void group__slots_free(struct gslots *s)
{
    for (uint32_t k = 0; k < RAFT_MAX_MEMBERS; k++) {
        free(s->node[k]);
        s->node[k] = NULL;
    }
    s->n = 0;
}

/* Copies the slots of m (its strings) into *s. */
static int slots_dup(const struct group_members *m, struct gslots *s, struct nerr *err)
{
    memset(s, 0, sizeof *s);
    for (uint32_t k = 0; k < m->n && k < RAFT_MAX_MEMBERS; k++)
        if (m->nodes[k] && !(s->node[k] = strdup(m->nodes[k]))) {
            group__slots_free(s);
            return nerr_set(err, NERR_NOMEM, "out of memory");
        }
    s->n = m->n;
    return 0;
}

/* The slots of m make sense (group.h, struct group_members). */
static int check_members(const struct group_members *m, const struct group_host *h,
                         const char *name, struct nerr *err)
{
    struct nerr cerr = {0};
    if (m->n < 1 || m->n > RAFT_MAX_MEMBERS || m->self < 1 || m->self > m->n ||
        !m->nodes[m->self - 1] || (m->n > 1 && !h->send))
        return nerr_set(err, NERR_INVALID, "group %s: bad membership (%u members, self %u)", name,
                        m->n, m->self);
    if (!conf_given(&m->conf)) {
        if (m->n % 2 == 0)
            return nerr_set(err, NERR_INVALID, "group %s: bad membership (%u members, self %u)",
                            name, m->n, m->self);
        for (uint32_t k = 0; k < m->n; k++)
            if (!m->nodes[k])
                return nerr_set(err, NERR_INVALID, "group %s: member %u has no node", name, k + 1);
        return 0;
    }
    if (raft_conf_check(&m->conf, 0, &cerr))
        return nerr_set(err, NERR_INVALID, "group %s: bad configuration: %s", name, cerr.msg);
    uint32_t vs = m->conf.voters | m->conf.voters_out;
    for (uint32_t id = 1; id <= RAFT_MAX_MEMBERS; id++)
        if ((vs & (1u << id)) && (id > m->n || !m->nodes[id - 1]))
            return nerr_set(err, NERR_INVALID,
                            "group %s: voter %u of the configuration has no node", name, id);
    return 0;
}

int group__entry_prefix(const struct raft_entry *e, unsigned char out[8])
{
    if (e->term >> 56 || (e->type != RAFT_ENTRY_NORMAL && e->type != RAFT_ENTRY_CONF))
        return NERR_INVALID;
    le_put64(out, e->term | (uint64_t)e->type << 56);
    return 0;
}

/* group_open of a one-member group: processes readies in this thread (the
 * driver does not know the group yet) until the member leads and every
 * committed entry is applied. */
static int drive_sync(struct group *g, struct nerr *err)
{
    struct raft_ready rd;
    int rounds = 0;
    while (raft_ready_get(g->r, &rd)) {
        if (++rounds > 1000)
            return nerr_set(err, NERR_INTERNAL, "group %s: start-up did not settle", g->name);
        int hs_new =
            rd.has_hard_state && (rd.hs.term != g->hs_saved.term || rd.hs.vote != g->hs_saved.vote);
        if (rd.n_entries || hs_new) {
            /* Entries, then the hard state, in the node log; the done of the
             * last record covers them all (nodelog.h, invariant 1). */
            struct nls_waiter w;
            nls_waiter_init(&w);
            int rc = 0;
            if (rd.n_entries && rd.entries[0].index <= nls_last_lsn(g->log))
                rc = nls_cut(g->log, rd.entries[0].index - 1, err);
            for (size_t i = 0; !rc && i < rd.n_entries; i++) {
                const struct raft_entry *e = &rd.entries[i];
                unsigned char term[8];
                if (group__entry_prefix(e, term)) {
                    rc = nerr_set(err, NERR_INTERNAL, "group %s: entry %llu cannot be stored",
                                  g->name, (unsigned long long)e->index);
                    break;
                }
                int last = i + 1 == rd.n_entries && !hs_new;
                rc = nls_append(g->log, term, 8, e->data, e->len, last ? nls_waiter_done : NULL,
                                last ? &w : NULL, NULL);
                if (rc)
                    nerr_set(err, rc, "group %s: node log append failed", g->name);
            }
            if (!rc && hs_new) {
                if ((rc = nls_set_hard_state(g->log, rd.hs.term, rd.hs.vote, nls_waiter_done, &w)))
                    nerr_set(err, rc, "group %s: node log append failed", g->name);
                else
                    g->hs_saved = rd.hs;
            }
            if (rc) {
                nls_waiter_destroy(&w);
                return rc;
            }
            if ((rc = nls_waiter_wait(&w)))
                return nerr_set(err, rc, "group %s: node log sync failed", g->name);
        }
        group__queue_committed(g, &rd);
        raft_ready_advance(g->r);
    }
    /* Wait for the applier (unless this is the applier: a table created by
     * a catalog entry; its new group holds only the empty entry). */
    pthread_mutex_lock(&g->mu);
    while (g->queued > 0 && !pthread_equal(pthread_self(), g->h->applier))
        pthread_cond_wait(&g->idle, &g->mu);
    pthread_mutex_unlock(&g->mu);
    if (raft_role(g->r) != RAFT_LEADER)
        return nerr_set(err, NERR_INTERNAL, "group %s: a lone member did not become leader",
                        g->name);
    return 0;
}

int group_open(struct group_host *h, const char *name, const char *group_dir,
               const struct group_sm *sm, void *sm_arg, const struct group_members *mem,
               struct group **out, struct nerr *err)
{
    struct group *g = calloc(1, sizeof *g);
    struct group__load_ctx lc = {.err = err};
    MDB_txn *rtxn = NULL;
    uint64_t applied = 0;
    int rc;
    struct raft_snapshot snap = {0};
    struct snapfile sf;
    int registered = 0;
    if (!g || !(g->name = strdup(name)) || asprintf(&g->hs_path, "%s/HARDSTATE", group_dir) < 0 ||
        asprintf(&g->snap_path, "%s/SNAPSHOT", group_dir) < 0 || !(g->dir = strdup(group_dir))) {
        if (g) {
            free(g->name);
            free(g->hs_path);
            free(g->snap_path);
        }
        free(g);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    g->h = h;
    g->sm = sm;
    g->sm_arg = sm_arg;
    atomic_store(&g->hold, sm->archived && h->hold_logs ? 0 : UINT64_MAX);
    if (mem)
        g->mem = *mem;
    else
        g->mem = (struct group_members){.gid = 0, .n = 1, .self = 1, .nodes = {"self"}};
    pthread_mutex_init(&g->smu, NULL);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->idle, NULL);
    if ((rc = check_members(&g->mem, h, name, err)) || (rc = slots_dup(&g->mem, &g->slots, err)) ||
        (rc = slots_dup(&g->mem, &g->pslots, err)))
        goto fail;
    if ((rc = fs_mkdir_p(group_dir, err)) || (rc = group__refuse_old_wal(group_dir, err)) ||
        (rc = nodelog_stream_open(h->nl, name, &g->log, err)))
        goto fail;
    struct raft_hard_state hs;
    if ((rc = group__hs_load(g, &hs, err)))
        goto fail;
    if ((rc = state_read_begin(h->st, &rtxn, err)))
        goto fail;
    rc = state_applied_get(h->st, rtxn, name, &applied, err);
    state_read_end(h->st, rtxn);
    if (rc)
        goto fail;
    group__snap_cleanup(g);
    if ((rc = group__snap_meta(g, &sf, err)))
        goto fail;
    snap.index = sf.index;
    snap.term = sf.term;
    snap.conf = sf.conf;
    if (applied < snap.index) {
        /* A snapshot installed from a leader's stream whose restored state
         * LMDB had not made durable (its meta page is synced lazily):
         * restore it again. A metadata-only one was written after LMDB was
         * synced past it, so LMDB cannot be behind it. */
        if (sf.flags & SNAPFILE_META) {
            rc = nerr_set(err, NERR_CORRUPT,
                          "group %s: LMDB is at %llu but %s says it was synced at %llu; rebuild "
                          "this replica from its peers",
                          name, (unsigned long long)applied, g->snap_path,
                          (unsigned long long)sf.index);
            goto fail;
        }
        int fd = open(g->snap_path, O_RDONLY | O_CLOEXEC);
        uint32_t crc = 0;
        if (fd < 0) {
            rc = nerr_sys(err, errno, "%s", g->snap_path);
            goto fail;
        }
        if ((rc = snapfile_crc(fd, &sf, &crc, err)) ||
            (crc != sf.crc &&
             (rc = nerr_set(err, NERR_CORRUPT, "%s: damaged snapshot (CRC)", g->snap_path)))) {
            close(fd);
            goto fail;
        }
        MDB_txn *wtxn;
        if ((rc = state_write_begin(h->st, &wtxn, err))) {
            close(fd);
            goto fail;
        }
        if ((rc = group__snap_restore(g, wtxn, fd, &sf, err)) ||
            (rc = state_applied_put(h->st, wtxn, name, snap.index, err))) {
            mdb_txn_abort(wtxn);
            close(fd);
            goto fail;
        }
        close(fd);
        if ((rc = state_write_commit(h->st, wtxn, err)))
            goto fail;
        log_info("group %s: state restored from the snapshot at %llu (it was at %llu)", name,
                 (unsigned long long)snap.index, (unsigned long long)applied);
        applied = snap.index;
    }
    uint64_t last = nls_last_lsn(g->log);
    if (last < snap.index) {
        /* A snapshot installed after the WAL was reset, or a crash between
         * the two: the log continues after the snapshot. */
        if ((rc = nls_reset(g->log, snap.index, err)))
            goto fail;
        last = snap.index;
    }
    if (applied > last) {
        rc = nerr_set(err, NERR_CORRUPT,
                      "group %s: state applied LSN %llu but its log ends at %llu; "
                      "the node log lost acknowledged records",
                      name, (unsigned long long)applied, (unsigned long long)last);
        goto fail;
    }
    if (last > snap.index && nls_first_lsn(g->log) > snap.index + 1) {
        rc = nerr_set(err, NERR_CORRUPT,
                      "group %s: its log starts at %llu but the snapshot in %s ends at %llu: "
                      "entries are missing",
                      name, (unsigned long long)nls_first_lsn(g->log), group_dir,
                      (unsigned long long)snap.index);
        goto fail;
    }
    if (last > snap.index && (rc = nls_replay(g->log, snap.index, group__load_one, &lc, err)))
        goto fail;
    /* What the snapshot holds is not needed from the log. */
    if (snap.index && (rc = nls_release(g->log, snap.index, err)))
        goto fail;
    if (lc.n && lc.v[lc.n - 1].term > hs.term)
        hs.term = lc.v[lc.n - 1].term; /* the term file lags a crash after the append */
    hs.commit = applied;
    g->hs_saved = hs;
    struct raft_config cfg = {.group = g->mem.gid,
                              .id = g->mem.self,
                              .n_members = g->mem.n,
                              .election_ticks = h->timing.election_ticks,
                              .heartbeat_ticks = h->timing.heartbeat_ticks,
                              .drift_ppm = h->timing.drift_ppm,
                              .seed = h->seed ^ (g->mem.gid * 0x9E3779B97F4A7C15ull) ^ g->mem.self,
                              .quiesce_ticks = h->timing.quiesce_ticks == GROUP_QUIESCE_NEVER
                                                   ? 0
                                                   : h->timing.quiesce_ticks,
                              .hs = hs,
                              .snapshot = snap,
                              .entries = lc.v,
                              .n_entries = lc.n,
                              .applied = applied,
                              .conf = g->mem.conf};
    g->r = raft_new(&cfg, err);
    if (!g->r) {
        rc = err->code ? err->code : NERR_INVALID;
        goto fail;
    }
    if (applied < last)
        log_info("group %s: log %llu..%llu loaded; entries after %llu apply once committed", name,
                 (unsigned long long)nls_first_lsn(g->log), (unsigned long long)last,
                 (unsigned long long)applied);
    for (size_t i = 0; i < lc.n; i++)
        free(lc.v[i].data);
    free(lc.v);
    lc.v = NULL;
    free(snap.data);
    snap.data = NULL;
    atomic_store(&g->applied, applied);
    g->applied_lsn = g->committed_lsn = applied;
    if (g->mem.n == 1) {
        /* A lone member elects itself and applies its whole log now, so the
         * group serves as soon as group_open returns (like a restarted
         * single-node store replaying its WAL). The state machine may look
         * for its group (the overlay) while applying: publish it first. */
        *out = g;
        for (uint32_t i = 0; i < 2 * h->timing.election_ticks; i++)
            raft_tick(g->r);
        if ((rc = drive_sync(g, err))) {
            *out = NULL;
            goto fail;
        }
    } else if (g->mem.self == 1) {
        /* The preferred leader times out first. */
        for (uint32_t i = 0; i + 1 < h->timing.election_ticks; i++)
            raft_tick(g->r);
    }
    group__publish(g);
    if (h->ss && g->mem.n > 1) {
        if ((rc = snapstream_register(h->ss, g->mem.gid, name, group_dir,
                                      (const char *const *)g->slots.node, g->slots.n, g->mem.self,
                                      &g->s_role, &g->s_term, err)))
            goto fail;
        registered = 1;
    }
    /* Hand it to the driver. */
    struct dev *d = calloc(1, sizeof *d);
    if (!d) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto fail;
    }
    d->kind = DEV_PROPOSE; /* with prop == NULL: registration */
    d->g = g;
    *out = g; /* before the driver can apply anything (the overlay needs it) */
    group__dev_post(h, d);
    return 0;
fail:
    for (size_t i = 0; i < lc.n; i++)
        free(lc.v[i].data);
    free(lc.v);
    free(snap.data);
    if (registered)
        snapstream_unregister(h->ss, g->mem.gid);
    raft_free(g->r);
    nls_close(g->log);
    group__slots_free(&g->slots);
    group__slots_free(&g->pslots);
    pthread_mutex_destroy(&g->smu);
    pthread_cond_destroy(&g->idle);
    pthread_mutex_destroy(&g->mu);
    free(g->hs_path);
    free(g->snap_path);
    free(g->dir);
    free(g->name);
    free(g);
    return rc;
}

void group_close(struct group *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->mu);
    g->closing = 1;
    pthread_mutex_unlock(&g->mu);
    struct dev *d = calloc(1, sizeof *d);
    if (d) {
        d->kind = DEV_CLOSE;
        d->g = g;
        group__dev_post(g->h, d);
    }
    /* The driver lets go (failing pending proposals), then the applier
     * drains what it was handed. */
    pthread_mutex_lock(&g->mu);
    while (!g->closed || g->inflight > 0 || g->queued > 0)
        pthread_cond_wait(&g->idle, &g->mu);
    pthread_mutex_unlock(&g->mu);
    /* Its last entries may be applied but not yet committed: the applier's
     * open transaction still names this group (h->touched). Commit before
     * freeing it. The applier itself closes only groups it just opened,
     * which have no entries (catalog.c), and must not wait for itself. */
    if (!pthread_equal(pthread_self(), g->h->applier))
        group_host_barrier(g->h);
    else
        NINES_ASSERT(!g->touched);
    if (g->h->ss && g->mem.n > 1)
        snapstream_unregister(g->h->ss, g->mem.gid);
    nls_close(g->log);
    raft_free(g->r);
    group__slots_free(&g->slots);
    group__slots_free(&g->pslots);
    pthread_mutex_destroy(&g->smu);
    pthread_cond_destroy(&g->idle);
    pthread_mutex_destroy(&g->mu);
    free(g->hs_path);
    free(g->snap_path);
    free(g->dir);
    free(g->name);
    free(g);
}

void group_host_hold_logs(struct group_host *h, int on)
{
    h->hold_logs = on;
}

void group_log_hold(struct group *g, uint64_t upto)
{
    atomic_store(&g->hold, upto);
}

void group__logreq_put(struct glogreq *q)
{
    pthread_mutex_lock(&q->mu);
    int last = --q->refs == 0;
    pthread_mutex_unlock(&q->mu);
    if (!last)
        return;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q->v);
    free(q);
}

/* Posts d to the driver unless the group is closing: queued before
 * group_close's DEV_CLOSE, or not at all (the driver never sees it for a
 * group it let go). 1 posted; 0 not (d is the caller's still). */
static int post_unless_closing(struct group *g, struct dev *d)
{
    pthread_mutex_lock(&g->mu);
    int closing = g->closing;
    if (!closing)
        group__dev_post(g->h, d);
    pthread_mutex_unlock(&g->mu);
    return !closing;
}

/* Hands q to the driver and waits (at most 5 s) for its answer. */
static int logreq_run(struct group *g, struct glogreq *q, enum dev_kind kind, struct nerr *err)
{
    struct dev *d = calloc(1, sizeof *d);
    if (!d)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cv, &ca);
    pthread_condattr_destroy(&ca);
    q->refs = 2;
    d->kind = kind;
    d->g = g;
    d->logreq = q;
    if (!post_unless_closing(g, d)) {
        free(d);
        q->refs = 1;
        return nerr_set(err, NERR_CLOSED, "group %s is closing", g->name);
    }
    uint64_t dl = clock_mono_ns() + 5000000000ull;
    struct timespec ts = {(time_t)(dl / 1000000000ull), (long)(dl % 1000000000ull)};
    int rc = 0;
    pthread_mutex_lock(&q->mu);
    while (!q->done && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&q->cv, &q->mu, &ts);
    int done = q->done;
    pthread_mutex_unlock(&q->mu);
    if (!done)
        return nerr_set(err, NERR_TIMEOUT, "group %s: the driver did not answer in 5 s", g->name);
    if (q->status)
        return nerr_set(err, q->status, "group %s: %s", g->name, q->msg);
    return 0;
}

int group_log_copy(struct group *g, uint64_t first, uint64_t last, size_t max_bytes,
                   struct group_log_entry **out, size_t *n, struct nerr *err)
{
    struct glogreq *q = calloc(1, sizeof *q);
    if (!q)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    q->first = first;
    q->last = last;
    q->max_bytes = max_bytes;
    int rc = logreq_run(g, q, DEV_LOG, err);
    if (!rc) {
        *out = q->v;
        *n = q->n;
        q->v = NULL;
    }
    group__logreq_put(q);
    return rc;
}

int group_log_term(struct group *g, uint64_t index, uint64_t *term, struct nerr *err)
{
    struct glogreq *q = calloc(1, sizeof *q);
    if (!q)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    q->first = q->last = index;
    q->mode = 1;
    int rc = logreq_run(g, q, DEV_LOG, err);
    if (!rc)
        *term = q->term;
    group__logreq_put(q);
    return rc;
}

int group_log_bytes(struct group *g, uint64_t first, uint64_t last, uint64_t *bytes,
                    struct nerr *err)
{
    struct glogreq *q = calloc(1, sizeof *q);
    if (!q)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    q->first = first;
    q->last = last;
    q->mode = 2;
    int rc = logreq_run(g, q, DEV_LOG, err);
    if (!rc)
        *bytes = q->term;
    group__logreq_put(q);
    return rc;
}

const char *group_name(const struct group *g)
{
    return g->name;
}

uint64_t group_applied_lsn(struct group *g)
{
    return atomic_load(&g->applied);
}

uint64_t group_last_lsn(struct group *g)
{
    return nls_last_lsn(g->log);
}

const struct group_members *group_members_of(const struct group *g)
{
    return &g->mem;
}

int group_member_node(struct group *g, uint32_t id, char *buf, size_t cap)
{
    int rc = NERR_NOTFOUND;
    pthread_mutex_lock(&g->smu);
    if (id >= 1 && id <= RAFT_MAX_MEMBERS && g->pslots.node[id - 1]) {
        size_t n = strlen(g->pslots.node[id - 1]);
        if (n < cap) {
            memcpy(buf, g->pslots.node[id - 1], n + 1);
            rc = 0;
        } else {
            rc = NERR_LIMIT;
        }
    }
    pthread_mutex_unlock(&g->smu);
    return rc;
}

int group_members_get(struct group *g, struct group_members *out, char *buf, size_t cap)
{
    int rc = 0;
    size_t used = 0;
    memset(out, 0, sizeof *out);
    out->gid = g->mem.gid;
    out->self = g->mem.self;
    pthread_mutex_lock(&g->smu);
    out->n = g->pslots.n;
    out->conf = g->pconf.conf;
    for (uint32_t k = 0; k < RAFT_MAX_MEMBERS && !rc; k++) {
        const char *s = g->pslots.node[k];
        if (!s)
            continue;
        size_t n = strlen(s) + 1;
        if (used + n > cap) {
            rc = NERR_LIMIT;
            break;
        }
        memcpy(buf + used, s, n);
        out->nodes[k] = buf + used;
        used += n;
    }
    pthread_mutex_unlock(&g->smu);
    if (rc)
        memset(out->nodes, 0, sizeof out->nodes);
    return rc;
}

uint64_t group_member_match(struct group *g, uint32_t id)
{
    /* The core's match index (raft_match), published by the driver after
     * every step while this member leads. */
    if (id < 1 || id > RAFT_MAX_MEMBERS || atomic_load(&g->s_role) != RAFT_LEADER)
        return 0;
    return atomic_load(&g->s_match[id]);
}

void group_conf_get(struct group *g, struct group_conf_info *out)
{
    pthread_mutex_lock(&g->smu);
    *out = g->pconf;
    pthread_mutex_unlock(&g->smu);
}

int group_set_members(struct group *g, const struct group_members *mem, struct nerr *err)
{
    if (mem->gid != g->mem.gid || mem->self != g->mem.self)
        return nerr_set(err, NERR_INVALID, "group %s: the slots are of another group or member",
                        g->name);
    if (mem->n < 1 || mem->n > RAFT_MAX_MEMBERS || mem->self > mem->n || !mem->nodes[mem->self - 1])
        return nerr_set(err, NERR_INVALID, "group %s: the slots drop this member (%u)", g->name,
                        mem->self);
    if (mem->n > 1 && !g->h->send)
        return nerr_set(err, NERR_INVALID, "group %s: no transport", g->name);
    /* A voter of the configuration in effect keeps its node: messages to
     * it would be lost, and a quorum with them. */
    struct group_conf_info ci;
    group_conf_get(g, &ci);
    uint32_t vs = ci.conf.voters | ci.conf.voters_out;
    if (!vs) /* the initial configuration: 1..n as opened */
        for (uint32_t id = 1; id <= g->mem.n; id++)
            vs |= 1u << id;
    for (uint32_t id = 1; id <= RAFT_MAX_MEMBERS; id++)
        if ((vs & (1u << id)) && (id > mem->n || !mem->nodes[id - 1]))
            return nerr_set(err, NERR_INVALID,
                            "group %s: member %u is a voter of the configuration in effect and "
                            "needs a node",
                            g->name, id);
    struct gslots *ds = calloc(1, sizeof *ds);
    struct gslots pub;
    struct dev *d = calloc(1, sizeof *d);
    int rc = 0;
    if (!ds || !d || slots_dup(mem, ds, err) || slots_dup(mem, &pub, err)) {
        if (ds)
            group__slots_free(ds);
        free(ds);
        free(d);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    if (g->h->ss && g->mem.n > 1 &&
        (rc = snapstream_set_members(g->h->ss, g->mem.gid, (const char *const *)pub.node, pub.n,
                                     err))) {
        group__slots_free(ds);
        group__slots_free(&pub);
        free(ds);
        free(d);
        return rc;
    }
    pthread_mutex_lock(&g->smu);
    struct gslots old = g->pslots;
    g->pslots = pub;
    pthread_mutex_unlock(&g->smu);
    group__slots_free(&old);
    d->kind = DEV_MEMBERS;
    d->g = g;
    d->slots = ds;
    if (!post_unless_closing(g, d)) {
        group__slots_free(ds);
        free(ds);
        free(d);
        return nerr_set(err, NERR_CLOSED, "group %s is closing", g->name);
    }
    return 0;
}

int group_propose_conf(struct group *g, const struct raft_conf *target, struct nerr *err)
{
    struct glogreq *q = calloc(1, sizeof *q);
    if (!q)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    q->mode = 3;
    q->conf = *target;
    int rc = logreq_run(g, q, DEV_CONF, err);
    group__logreq_put(q);
    return rc;
}

void group_status(struct group *g, struct group_status *st)
{
    st->role = (enum raft_role)atomic_load(&g->s_role);
    st->leader = atomic_load(&g->s_leader);
    st->term = atomic_load(&g->s_term);
    st->commit = atomic_load(&g->s_commit);
    st->last_index = atomic_load(&g->s_last);
    st->first_index = atomic_load(&g->s_first);
    st->applied = atomic_load(&g->applied);
    uint64_t at = atomic_load(&g->s_lease_ns);
    /* raft_lease_valid holds until the next tick at least (lease_ticks
     * keeps one tick of margin, docs/replication.md): a value published
     * within the last tick period is still good. */
    st->lease = atomic_load(&g->s_lease) && at && clock_mono_ns() - at < RAFT_TICK_MS * 1000000ull;
    st->failed = atomic_load(&g->s_failed);
    st->quiescent = atomic_load(&g->s_quiet);
    struct snapstream_progress p;
    st->snap_active = g->h->ss && snapstream_progress(g->h->ss, g->mem.gid, &p);
    if (st->snap_active) {
        st->snap_sending = p.sending;
        st->snap_peer = p.peer;
        st->snap_index = p.index;
        st->snap_bytes = p.bytes;
        st->snap_total = p.total;
        st->snap_rate = p.rate;
        st->snap_eta_ms = p.eta_ms;
    }
}

int group_read_index(struct group *g, int timeout_ms)
{
    uint64_t start = clock_mono_ns(), deadline = start + (uint64_t)timeout_ms * 1000000ull;
    /* The lease is published at every tick and after every disk round; a
     * leader busy with its disk may have published it a moment ago: wait
     * briefly for a fresh one rather than sending the read elsewhere. */
    uint64_t lease_wait = start + 30000000ull;
    struct group_status st;
    for (;;) {
        group_status(g, &st);
        if (st.role != RAFT_LEADER || st.failed)
            return NERR_BUSY;
        /* A lone member needs no lease: no other member can commit anything. */
        if (st.lease || g->mem.n == 1)
            break;
        /* A sleeping leader has no lease (raft.h, "Quiescence"): wake it
         * and wait for its heartbeat round to be acknowledged — a round
         * trip, given a generous 300 ms on a loaded machine. */
        if (st.quiescent) {
            if (!atomic_exchange(&g->wake_posted, 1)) {
                struct dev *d = calloc(1, sizeof *d);
                if (!d) {
                    atomic_store(&g->wake_posted, 0);
                    return NERR_NOMEM;
                }
                d->kind = DEV_WAKE;
                d->g = g;
                if (!post_unless_closing(g, d)) {
                    free(d);
                    return NERR_BUSY;
                }
            }
            lease_wait = start + 300000000ull;
        }
        if (clock_mono_ns() > lease_wait || clock_mono_ns() > deadline)
            return NERR_BUSY;
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    uint64_t target = st.commit;
    while (atomic_load(&g->applied) < target) {
        if (clock_mono_ns() > deadline)
            return NERR_TIMEOUT;
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

int group_propose(struct group *g, const void *data, size_t len, void *op, group_done_fn done,
                  void *arg)
{
    if (atomic_load(&g->s_failed))
        return NERR_IO;
    /* A member that does not lead hands the entry to the leader it knows
     * (FWD_PROPOSE) and answers once it has applied it itself. */
    int fwd = 0;
    if (atomic_load(&g->s_role) != RAFT_LEADER) {
        uint32_t leader = atomic_load(&g->s_leader);
        if (!leader || leader == g->mem.self || !g->h->send)
            return NERR_BUSY;
        fwd = 1;
    }
    if (len == 0 || len + GROUP_FRAME > RAFT_MAX_ENTRY)
        return NERR_LIMIT;
    struct gentry *e = calloc(1, sizeof *e);
    struct dev *d = calloc(1, sizeof *d);
    size_t flen = fwd ? len + GROUP_FRAME : len;
    if (!e || !d || !(e->data = malloc(flen))) {
        free(e);
        free(d);
        return NERR_NOMEM;
    }
    if (fwd) {
        e->fwd = 1;
        e->rid = atomic_fetch_add(&g->h->rid_next, 1);
        e->data[0] = GROUP_FRAME_MAGIC;
        le_put64(e->data + 1, e->rid);
        memcpy(e->data + GROUP_FRAME, data, len);
    } else {
        memcpy(e->data, data, len);
    }
    e->len = flen;
    e->g = g;
    e->op = op;
    e->done = done;
    e->arg = arg;
    pthread_mutex_lock(&g->mu);
    if (g->closing) {
        pthread_mutex_unlock(&g->mu);
        free(e->data);
        free(e);
        free(d);
        return NERR_CLOSED;
    }
    g->inflight++;
    pthread_mutex_unlock(&g->mu);
    d->kind = DEV_PROPOSE;
    d->g = g;
    d->prop = e;
    group__dev_post(g->h, d);
    return 0;
}
