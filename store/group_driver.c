/*
 * group_driver.c — the driver thread of a group host (group.h). It owns
 * every struct raft of the node: it feeds peer messages, proposals and
 * ticks, persists each ready in the order raft.h demands (SNAPSHOT, then
 * entries and a changed term and vote, a HARDSTATE record, to the node
 * log), sends messages once what they acknowledge is durable, matches this
 * node's proposals with committed entries and hands those to the applier
 * (group_applier.c).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/invariant.h"
#include "lib/le.h"
#include "lib/log.h"
#include "store/group_internal.h"
#include "store/nodelog.h"
#include "store/raftwire.h"

/* Round coalescing: after a round of at least this many events the driver
 * waits this long before taking the next (docs/replication.md, "Batching"). */
#define DRIVER_COALESCE_EVENTS 8
#define DRIVER_COALESCE_US 500

/* Appends the chain first..last (last->next already set) to a FIFO of
 * entries kept as head and tail pointers. */
static void q_append(struct gentry **head, struct gentry **tail, struct gentry *first,
                     struct gentry *last)
{
    if (*tail)
        (*tail)->next = first;
    else
        *head = first;
    *tail = last;
}

void group__dev_post(struct group_host *h, struct dev *d)
{
    pthread_mutex_lock(&h->dmu);
    if (h->dtail)
        h->dtail->next = d;
    else
        h->dhead = d;
    h->dtail = d;
    pthread_cond_signal(&h->dcv);
    pthread_mutex_unlock(&h->dmu);
}

static struct group **bucket_of(struct group_host *h, uint64_t gid)
{
    return &h->buckets[(gid * 0x9E3779B97F4A7C15ull) >> 48 & (GID_BUCKETS - 1)];
}

static struct group *find_gid(struct group_host *h, uint64_t gid)
{
    for (struct group *g = *bucket_of(h, gid); g; g = g->hnext)
        if (g->mem.gid == gid)
            return g;
    return NULL;
}

/* Publishes the member's state for other threads (driver thread). */
void group__publish(struct group *g)
{
    struct raft *r = g->r;
    atomic_store(&g->s_role, (int)raft_role(r));
    atomic_store(&g->s_leader, raft_leader(r));
    atomic_store(&g->s_term, raft_term(r));
    atomic_store(&g->s_commit, raft_commit(r));
    atomic_store(&g->s_last, raft_last_index(r));
    atomic_store(&g->s_first, raft_first_index(r));
    int lease = raft_lease_valid(r) && !g->wal_failed;
    atomic_store(&g->s_lease_ns, lease ? clock_mono_ns() : 0);
    atomic_store(&g->s_lease, lease);
    atomic_store(&g->s_failed, g->wal_failed);
    /* The leader's match index of each member (group_member_match). */
    if (raft_role(r) == RAFT_LEADER || g->match_term) {
        for (uint32_t k = 1; k <= RAFT_MAX_MEMBERS; k++)
            atomic_store_explicit(&g->s_match[k], raft_match(r, k), memory_order_relaxed);
        g->match_term = raft_role(r) == RAFT_LEADER;
    }
    struct group_conf_info ci = {.index = raft_conf_index(r)};
    raft_get_conf(r, &ci.conf);
    ci.committed = ci.index <= raft_commit(r);
    /* group.h: all zero = the initial configuration of a group opened
     * without one (ids 1..n, all storage), which the core spells out. */
    if (!ci.index && !g->mem.conf.voters && !g->mem.conf.voters_out && !g->mem.conf.log)
        ci.conf = (struct raft_conf){0};
    pthread_mutex_lock(&g->smu);
    g->pconf = ci;
    pthread_mutex_unlock(&g->smu);
    int q = raft_quiescent(r);
    if (atomic_exchange(&g->s_quiet, q) != q) {
        if (q)
            atomic_fetch_add(&g->h->st_quiet, 1);
        else
            atomic_fetch_sub(&g->h->st_quiet, 1);
    }
}

/* Quiescence (raft.h): h->active holds the groups the driver ticks. A
 * group leaves it at a tick once asleep with nothing in flight or pending
 * (its clock then stands at tick_at); any input for it puts it back first,
 * after advancing its clock by the ticks it slept (O(1) for a sleeper). */
static void activate(struct group_host *h, struct group *g)
{
    if (g->act)
        return;
    if (h->ticks > g->tick_at && !g->closed)
        raft_elapse(g->r, h->ticks - g->tick_at);
    g->act = 1;
    g->actnext = h->active;
    h->active = g;
}

static int can_sleep(const struct group *g)
{
    return raft_quiescent(g->r) && !g->in_flight && !g->missed_ticks && !g->pending &&
           !g->fwd_pending && !g->pbatch && !g->deferred && !g->pend_down && !g->pend_up &&
           !g->pend_wake && !g->dirty;
}

static void mark_dirty(struct group_host *h, struct group *g)
{
    if (!g->closed && !g->dirty) {
        g->dirty = 1;
        g->dnext = h->dirty;
        h->dirty = g;
    }
}

/* The peer node named id (added when new: it has until E ticks from now to
 * be heard). */
static struct gpeer *peer_find(struct group_host *h, const char *id, int add)
{
    for (size_t i = 0; i < h->npeers; i++)
        if (!strcmp(h->peers[i].id, id))
            return &h->peers[i];
    if (!add || strlen(id) >= sizeof h->peers[0].id)
        return NULL;
    if (h->npeers == h->cap_peers) {
        size_t cap = h->cap_peers ? h->cap_peers * 2 : 8;
        struct gpeer *np = realloc(h->peers, cap * sizeof *np);
        if (!np)
            return NULL;
        h->peers = np;
        h->cap_peers = cap;
    }
    struct gpeer *p = &h->peers[h->npeers++];
    memset(p, 0, sizeof *p);
    snprintf(p->id, sizeof p->id, "%s", id);
    p->heard_tick = h->ticks;
    return p;
}

/* The member ids (bit k = id k) whose slot in g is node id, g's self
 * aside: usually one, two while a member is replaced on the same node. */
static uint32_t member_of(const struct group *g, const char *id)
{
    uint32_t ids = 0;
    for (uint32_t k = 0; k < RAFT_MAX_MEMBERS; k++)
        if (k + 1 != g->mem.self && g->slots.node[k] && !strcmp(g->slots.node[k], id))
            ids |= 1u << (k + 1);
    return ids;
}

/* The node of member id now ("?" when its slot is empty), for messages. */
static const char *slot_name(const struct group *g, uint32_t id)
{
    return id >= 1 && id <= RAFT_MAX_MEMBERS && g->slots.node[id - 1] ? g->slots.node[id - 1] : "?";
}

/* A peer node went down (up = 0) or came back (up = 1): tell every group
 * it is a member of, at the end of the round (a group whose ready is in
 * flight takes it once the ready is done). O(groups), on a change only. */
static void peer_event(struct group_host *h, const struct gpeer *p, int up)
{
    for (struct group *g = h->all; g; g = g->anext) {
        uint32_t m = member_of(g, p->id);
        if (!m || g->closed || g->wal_failed)
            continue;
        if (up)
            g->pend_up |= m;
        else
            g->pend_down |= m;
        activate(h, g);
        mark_dirty(h, g);
    }
}

/* Feeds the waiting peer reports and wake-up to the core (no ready in
 * flight): every down before any up (a restart is both). */
static void host_inputs(struct group *g)
{
    for (uint32_t m = 1; m <= RAFT_MAX_MEMBERS; m++)
        if (g->pend_down & (1u << m))
            raft_peer_down(g->r, m);
    for (uint32_t m = 1; m <= RAFT_MAX_MEMBERS; m++)
        if (g->pend_up & (1u << m))
            raft_peer_up(g->r, m);
    g->pend_down = g->pend_up = 0;
    if (g->pend_wake)
        raft_wake(g->r);
    g->pend_wake = 0;
}

/* A peer's node heartbeat. */
static void beat(struct group_host *h, const struct dev *d)
{
    atomic_fetch_add(&h->st_beats_in, 1);
    struct gpeer *p = peer_find(h, d->from, 1);
    if (!p)
        return;
    p->heard = 1;
    if (p->inc && p->inc != d->msg.ctx) {
        log_info("node %s restarted (a new incarnation): waking the groups it is a member of",
                 p->id);
        atomic_fetch_add(&h->st_peer_restarts, 1);
        if (!p->down)
            peer_event(h, p, 0);
        p->down = 0;
        peer_event(h, p, 1);
    } else if (p->down) {
        log_info("node %s is reachable again", p->id);
        p->down = 0;
        peer_event(h, p, 1);
    }
    p->inc = d->msg.ctx;
}

/* At a tick: node heartbeats out every heartbeat interval, and peers
 * silent for E ticks (no node heartbeat, no message) reported down. A peer heard since the last
 * tick counts as heard now, however many ticks this one advanced (a stalled driver hears the beats
 * that waited for it first). */
static void liveness_tick(struct group_host *h)
{
    if (!h->send)
        return;
    if (h->ticks >= h->next_beat) {
        h->next_beat = h->ticks + h->timing.heartbeat_ticks;
        struct raft_msg m = {.type = RAFTWIRE_NODE_BEAT, .ctx = h->incarnation};
        unsigned char *buf;
        size_t len;
        if (!raftwire_encode(&m, &buf, &len)) {
            for (size_t i = 0; i < h->npeers; i++)
                if (h->send(h->send_arg, h->peers[i].id, 0, buf, len))
                    atomic_fetch_add(&h->st_sendfail, 1);
            free(buf);
        }
    }
    for (size_t i = 0; i < h->npeers; i++) {
        struct gpeer *p = &h->peers[i];
        if (p->heard) {
            p->heard = 0;
            p->heard_tick = h->ticks;
            continue;
        }
        if (p->down || h->ticks - p->heard_tick < h->timing.election_ticks)
            continue;
        p->down = 1;
        atomic_fetch_add(&h->st_peer_downs, 1);
        log_warn("node %s: no node heartbeat for %u ticks; its groups here elect without it", p->id,
                 h->timing.election_ticks);
        peer_event(h, p, 0);
    }
}

/* done() for a proposal that will not be applied (any thread but the applier's
 * own transaction). */
static void fail_prop(struct gentry *e, int status)
{
    struct group *g = e->g;
    e->done(e->arg, status, NULL);
    free(e->data);
    free(e);
    pthread_mutex_lock(&g->mu);
    NINES_ASSERT(g->inflight > 0); /* invariant 2: done() once per proposal */
    if (--g->inflight == 0)
        pthread_cond_broadcast(&g->idle);
    pthread_mutex_unlock(&g->mu);
}

/* WAL pool thread: the last entry of a ready is durable (or failed). */
static void on_durable(void *arg, uint64_t lsn, int status)
{
    struct group *g = arg;
    struct dev *d = calloc(1, sizeof *d);
    if (!d) {
        log_error("group %s: out of memory reporting durability; the group stalls", g->name);
        return;
    }
    d->kind = DEV_DURABLE;
    d->g = g;
    d->status = status;
    group__dev_post(g->h, d);
}

static void fail_list(struct gentry *e, int status);

static void send_raw(struct group *g, const struct raft_msg *m);

static void group_fail(struct group *g, int status)
{
    if (!g->wal_failed)
        log_error("group %s: the WAL failed (%s); this replica stops taking part (restart the "
                  "node once the disk is fixed)",
                  g->name, nerr_name(status));
    g->wal_failed = 1;
    /* A leader that falls silent would leave the others waiting a whole
     * election timeout, and the writes routed to it with them: it hands
     * leadership to its most up-to-date follower at once (raft_hand_over).
     * wal_failed is set first, so no lease read is served from here on. */
    struct raft_msg to;
    if (g->h->send && raft_hand_over(g->r, &to) == 0) {
        log_warn("group %s: handing leadership over to member %u (%s)", g->name, to.to,
                 slot_name(g, to.to));
        send_raw(g, &to);
    }
    for (struct gentry *e = g->pending, *n; e; e = n) {
        n = e->next;
        fail_prop(e, NERR_IO);
    }
    g->pending = g->pending_tail = NULL;
    fail_list(g->pbatch, NERR_IO);
    g->pbatch = g->pbatch_tail = NULL;
    fail_list(g->fwd_pending, NERR_IO);
    g->fwd_pending = g->fwd_tail = NULL;
    group__publish(g);
}

/* A leader's replication messages may leave before its own entries are
 * durable (Raft thesis §10.2.1): they ask followers to persist, and the
 * leader counts itself only once its own write is done (raft.c, stable).
 * Every other message acknowledges something and waits for the disk. */
static int leader_msg(const struct raft_msg *m)
{
    return m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
           m->type == RAFT_MSG_SNAPSHOT;
}

/* Hands one encoded message to the transport. No message may come near
 * the transport's queue bound (raftwire.h, RAFTWIRE_MAX_MSG): a queue then
 * refuses only when full, and that is logged (once a second per group),
 * never silent. */
static void send_encoded(struct group *g, uint32_t to, uint32_t type, const unsigned char *buf,
                         size_t len)
{
    struct group_host *h = g->h;
    NINES_ASSERT(len <= RAFTWIRE_MAX_MSG);
    /* An id without a node (a member being added before group_set_members,
     * one removed after): dropped, counted as a refused send. */
    const char *node = to >= 1 && to <= RAFT_MAX_MEMBERS ? g->slots.node[to - 1] : NULL;
    int rc = node ? h->send(h->send_arg, node, g->mem.gid, buf, len) : NERR_NOTFOUND;
    if (!rc) {
        atomic_fetch_add(&h->st_out, 1);
        return;
    }
    atomic_fetch_add(&h->st_sendfail, 1);
    g->sendfail_n++;
    uint64_t now = clock_mono_ns();
    if (now - g->sendfail_log_ns >= 1000000000ull) {
        log_warn("group %s: the transport refused %llu message(s) in the last second, the last a "
                 "%s of %zu bytes to %s (%s)",
                 g->name, (unsigned long long)g->sendfail_n, raft_msg_type_name(type), len,
                 slot_name(g, to), nerr_name(rc));
        g->sendfail_log_ns = now;
        g->sendfail_n = 0;
    }
}

/* The core asks for a snapshot for member p (a metadata-only SNAPSHOT in
 * a leader's ready): unless a stream to p is in flight, hand the snapshot
 * thread the state at LMDB's applied index (group.h, "Catch-up by
 * snapshot"). Opening a read transaction is cheap; the reading and sending
 * happen on that thread. */
static void start_snapshot_stream(struct group *g, uint32_t p)
{
    struct group_host *h = g->h;
    if (!h->ss || raft_role(g->r) != RAFT_LEADER || !snapstream_wanted(h->ss, g->mem.gid, p))
        return;
    struct nerr err = {0};
    struct snap_source src = {0};
    uint64_t at = 0, term = 0;
    MDB_txn *txn = NULL;
    if (state_read_begin(h->st, &txn, &err))
        goto fail;
    if (state_applied_get(h->st, txn, g->name, &at, &err))
        goto fail;
    /* The follower's log must continue after the snapshot: S at or after
     * the core's compaction point, and its term known. */
    if (at + 1 < raft_first_index(g->r) || raft_term_at(g->r, at, &term)) {
        nerr_set(&err, NERR_BUSY, "applied index %llu is not in the log (it starts at %llu)",
                 (unsigned long long)at, (unsigned long long)raft_first_index(g->r));
        goto fail;
    }
    if (g->sm->snapshot_dbi) {
        src.txn = txn;
        if (g->sm->snapshot_dbi(g->sm_arg, &src.dbi))
            goto fail;
    } else {
        if (g->sm->snapshot(g->sm_arg, txn, &src.buf, &src.len, &err))
            goto fail;
        state_read_end(h->st, txn);
        txn = NULL;
    }
    /* The configuration at the stream's index (not the core's snapshot
     * index: the stream carries LMDB's applied state). */
    struct raft_conf conf;
    raft_conf_at(g->r, at, &conf);
    if (snapstream_offer(h->ss, g->mem.gid, p, raft_term(g->r), at, term, &conf, &src, &err))
        goto fail;
    return;
fail:
    free(src.buf);
    if (txn)
        state_read_end(h->st, txn);
    if (err.code != NERR_EXISTS)
        log_warn("group %s: no snapshot stream to member %u this time: %s", g->name, p,
                 err.msg[0] ? err.msg : "the state machine has no snapshot");
}

/* which: 0 every message, 1 a leader's replication messages only, 2 the
 * others only. */
static void send_msgs(struct group *g, const struct raft_ready *rd, int which)
{
    struct group_host *h = g->h;
    for (size_t i = 0; i < rd->n_msgs; i++) {
        const struct raft_msg *m = &rd->msgs[i];
        unsigned char *buf;
        size_t len;
        if (m->to < 1 || m->to > RAFT_MAX_MEMBERS || m->to == g->mem.self || !h->send)
            continue;
        if ((which == 1 && !leader_msg(m)) || (which == 2 && leader_msg(m)))
            continue;
        if (m->type == RAFT_MSG_SNAPSHOT) {
            /* The state travels as a stream of chunks, never inside one
             * message (snapstream.h). */
            start_snapshot_stream(g, m->to);
            continue;
        }
        if (raftwire_encode(m, &buf, &len))
            continue;
        send_encoded(g, m->to, m->type, buf, len);
        free(buf);
    }
}

/* Hands committed entries to the applier, matching them with this node's
 * proposals by (index, term). */
void group__queue_committed(struct group *g, const struct raft_ready *rd)
{
    struct group_host *h = g->h;
    struct gentry *first = NULL, *last = NULL;
    long n = 0;
    for (size_t i = 0; i < rd->n_committed; i++) {
        const struct raft_entry *ce = &rd->committed[i];
        struct gentry *e = NULL;
        /* Proposals below this index that are still pending lost their slot. */
        while (g->pending && g->pending->lsn < ce->index) {
            struct gentry *p = g->pending;
            g->pending = p->next;
            fail_prop(p, NERR_BUSY);
        }
        if (g->pending && g->pending->lsn == ce->index) {
            e = g->pending;
            g->pending = e->next;
            if (e->term != ce->term) {
                fail_prop(e, NERR_BUSY);
                e = NULL;
            } else {
                free(e->data); /* the applier uses op */
                e->data = NULL;
            }
        }
        if (!g->pending)
            g->pending_tail = NULL;
        if (!e && ce->type == RAFT_ENTRY_NORMAL && ce->len >= GROUP_FRAME &&
            ce->data[0] == GROUP_FRAME_MAGIC && g->fwd_pending) {
            uint64_t rid = le_get64(ce->data + 1);
            for (struct gentry **pp = &g->fwd_pending; *pp; pp = &(*pp)->next)
                if ((*pp)->rid == rid) {
                    e = *pp;
                    *pp = e->next;
                    if (g->fwd_tail == e) {
                        g->fwd_tail = NULL;
                        for (struct gentry *x = g->fwd_pending; x; x = x->next)
                            g->fwd_tail = x;
                    }
                    free(e->data); /* the applier uses op */
                    e->data = NULL;
                    e->len = 0;
                    break;
                }
        }
        /* A forwarded proposal could only be appended in the term it was
         * sent for (flush_props). Once an entry of a later term commits,
         * every committed entry of that term lies before it and has been
         * seen here: the proposal never commits, so the caller may retry.
         * fwd_pending is in sending order, so its terms never decrease. */
        while (g->fwd_pending && g->fwd_pending->term < ce->term) {
            struct gentry *p = g->fwd_pending;
            g->fwd_pending = p->next;
            if (!g->fwd_pending)
                g->fwd_tail = NULL;
            fail_prop(p, NERR_BUSY);
        }
        if (!e) {
            e = calloc(1, sizeof *e);
            if (!e) {
                log_error("group %s: out of memory; stopping this replica", g->name);
                group_fail(g, NERR_NOMEM);
                break;
            }
            e->g = g;
            if (ce->len) {
                if (!(e->data = malloc(ce->len))) {
                    free(e);
                    group_fail(g, NERR_NOMEM);
                    break;
                }
                memcpy(e->data, ce->data, ce->len);
            }
            e->len = ce->len;
        }
        e->lsn = ce->index;
        e->type = ce->type;
        e->next = NULL;
        if (last)
            last->next = e;
        else
            first = e;
        last = e;
        n++;
    }
    if (!first)
        return;
    pthread_mutex_lock(&g->mu);
    g->queued += n;
    pthread_mutex_unlock(&g->mu);
    pthread_mutex_lock(&h->mu);
    q_append(&h->head, &h->tail, first, last);
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

static void finish_ready(struct group *g)
{
    /* The commit index is published before the messages that carry it go
     * out: a follower may apply and answer a write as soon as it hears it,
     * and a lease read on this leader must then wait for that entry
     * (group_read_index reads s_commit). */
    atomic_store(&g->s_commit, raft_commit(g->r));
    send_msgs(g, &g->rd, g->rd_sent ? 2 : 0);
    g->rd_sent = 0;
    if (!g->rd_applied)
        group__queue_committed(g, &g->rd);
    g->rd_applied = 0;
    raft_ready_advance(g->r);
    g->in_flight = 0;
    /* Ticks that passed while the disk was busy (missed_ticks) count
     * before anything more is published: the lease must not outlive real
     * time. They are counted at the end of the round (catch_up_ticks),
     * after the messages that waited for this ready: a heartbeat that
     * arrived meanwhile must reset the election timer before the ticks
     * are counted, or every slow disk round would start elections. */
    if (!g->missed_ticks)
        group__publish(g);
}

/* Counts the ticks that passed while the group's ready was in flight (at
 * the end of the round, after its deferred messages), then publishes. */
static void catch_up_ticks(struct group *g)
{
    /* All at once (raft.h, raft_elapse): the lease ends in real time,
     * and a timer that runs out during the advance waits for the next
     * one, after the messages of this round. */
    raft_elapse(g->r, g->missed_ticks);
    g->missed_ticks = 0;
    group__publish(g);
}

/* A snapshot from the leader, its stream verified on disk (a
 * metadata-only snapshot in the ready: snapstream.h): make its file the
 * group's SNAPSHOT, restart the WAL after it, and have the applier replace
 * the state with it (before any later entry). */
static int install_snapshot(struct group *g, const struct raft_snapshot *sn)
{
    struct nerr err = {0};
    struct gentry *e = calloc(1, sizeof *e);
    if (!e) {
        group_fail(g, NERR_NOMEM);
        return -1;
    }
    e->snap_fd = -1;
    if (sn->len || group__snap_adopt(g, sn->index, sn->term, &e->snap_fd, &e->snapf, &err) ||
        nls_reset(g->log, sn->index, &err)) {
        log_error("group %s: installing the snapshot at %llu: %s", g->name,
                  (unsigned long long)sn->index,
                  sn->len ? "a snapshot payload arrived in a message" : err.msg);
        if (e->snap_fd >= 0)
            close(e->snap_fd);
        free(e);
        group_fail(g, NERR_IO);
        return -1;
    }
    /* Proposals the snapshot may hold committed are never matched with
     * their entries: their outcome is unknown. Later ones stay pending. */
    while (g->pending && g->pending->lsn <= sn->index) {
        struct gentry *p = g->pending;
        g->pending = p->next;
        fail_prop(p, NERR_TIMEOUT);
    }
    if (!g->pending)
        g->pending_tail = NULL;
    for (struct gentry **pp = &g->fwd_pending; *pp;) {
        struct gentry *p = *pp;
        if (p->term > sn->term) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        fail_prop(p, NERR_TIMEOUT);
    }
    g->fwd_tail = NULL;
    for (struct gentry *x = g->fwd_pending; x; x = x->next)
        g->fwd_tail = x;
    e->snap = 1;
    e->lsn = sn->index;
    e->g = g;
    pthread_mutex_lock(&g->mu);
    g->queued++;
    pthread_mutex_unlock(&g->mu);
    struct group_host *h = g->h;
    pthread_mutex_lock(&h->mu);
    q_append(&h->head, &h->tail, e, e);
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    log_info("group %s: installed the leader's snapshot at %llu (%llu bytes)", g->name,
             (unsigned long long)sn->index, (unsigned long long)e->snapf.len);
    return 0;
}

void group__logreq_answer(struct group *g, struct glogreq *q)
{
    struct raft *r = g->r;
    int status = 0;
    char msg[sizeof q->msg] = "";
    struct group_log_entry *v = NULL;
    size_t n = 0;
    uint64_t term = 0;
    if (g->closed || !r) {
        status = NERR_CLOSED;
        snprintf(msg, sizeof msg, "closed");
    } else if (q->first > q->last || q->last > raft_commit(r)) {
        status = NERR_INVALID;
        snprintf(msg, sizeof msg, "entries %llu..%llu: the commit index is %llu",
                 (unsigned long long)q->first, (unsigned long long)q->last,
                 (unsigned long long)raft_commit(r));
    } else if (q->mode == 2) {
        if (q->first < raft_first_index(r)) {
            status = NERR_NOTFOUND;
            snprintf(msg, sizeof msg, "entry %llu was compacted away (the log starts at %llu)",
                     (unsigned long long)q->first, (unsigned long long)raft_first_index(r));
        } else
            for (uint64_t i = q->first; i <= q->last; i++)
                term += raft_entry_at(r, i)->len;
    } else if (q->mode == 1) {
        if (raft_term_at(r, q->first, &term)) {
            status = NERR_NOTFOUND;
            snprintf(msg, sizeof msg, "entry %llu is not in the log (it starts at %llu)",
                     (unsigned long long)q->first, (unsigned long long)raft_first_index(r));
        }
    } else if (q->first < raft_first_index(r)) {
        status = NERR_NOTFOUND;
        snprintf(msg, sizeof msg, "entry %llu was compacted away (the log starts at %llu)",
                 (unsigned long long)q->first, (unsigned long long)raft_first_index(r));
    } else {
        size_t bytes = 0;
        uint64_t i;
        for (i = q->first; i <= q->last; i++) {
            const struct raft_entry *e = raft_entry_at(r, i);
            if (n && bytes + e->len > q->max_bytes)
                break;
            bytes += e->len;
            n++;
        }
        if (!(v = malloc(n * sizeof *v + bytes + 1))) {
            status = NERR_NOMEM;
            snprintf(msg, sizeof msg, "out of memory");
            n = 0;
        } else {
            unsigned char *p = (unsigned char *)(v + n);
            for (size_t k = 0; k < n; k++) {
                const struct raft_entry *e = raft_entry_at(r, q->first + k);
                v[k] = (struct group_log_entry){q->first + k, e->term, e->len, p};
                if (e->len)
                    memcpy(p, e->data, e->len);
                p += e->len;
            }
        }
    }
    pthread_mutex_lock(&q->mu);
    q->status = status;
    snprintf(q->msg, sizeof q->msg, "%s", msg);
    q->v = v;
    q->n = n;
    q->term = term;
    q->done = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    group__logreq_put(q);
}

/* Log compaction (group.h): snapshot what LMDB last committed, keep it
 * durably, let the core drop the log before it, release WAL segments. */
static void maybe_compact(struct group *g, uint64_t now)
{
    struct group_host *h = g->h;
    struct raft *r = g->r;
    uint64_t first = raft_first_index(r), last = raft_last_index(r);
    if (last < first || now - g->last_compact_ns < 1000000000ull ||
        (last - first + 1 < h->timing.compact_entries && !nls_compact_wanted(g->log)))
        return;
    g->last_compact_ns = now;
    struct nerr err = {0};
    MDB_txn *txn;
    uint64_t at = 0;
    if (state_read_begin(h->st, &txn, &err))
        goto fail;
    int rc = state_applied_get(h->st, txn, g->name, &at, &err);
    state_read_end(h->st, txn);
    if (rc || at < first)
        goto fail;
    /* The archive's hold (group.h): entries it has not seen archived stay. */
    uint64_t hold = atomic_load(&g->hold);
    if (at > hold) {
        if (hold < first)
            return;
        at = hold;
    }
    const struct raft_entry *e = raft_entry_at(r, at);
    if (!e) {
        nerr_set(&err, NERR_INTERNAL, "no entry at the applied index %llu", (unsigned long long)at);
        goto fail;
    }
    uint64_t term = e->term;
    /* The state at `at` is LMDB itself: make it durable (the meta page of
     * the last commit is otherwise synced by the next commit only), then
     * record the compaction point. Nothing is copied. */
    int mrc = mdb_env_sync(state_env(h->st), 1);
    if (mrc) {
        state_mdb_err(&err, mrc, "sync before compaction");
        goto fail;
    }
    struct raft_conf conf;
    raft_conf_at(r, at, &conf);
    if (group__snap_save_meta(g, at, term, &conf, &err))
        goto fail;
    if (raft_compact(r, at, NULL, 0)) {
        nerr_set(&err, NERR_INTERNAL, "the core refused the snapshot at %llu",
                 (unsigned long long)at);
        goto fail;
    }
    if (nls_release(g->log, at, &err))
        log_warn("group %s: releasing node log segments: %s", g->name, err.msg);
    log_info("group %s: compacted at %llu (LMDB synced); log now starts at %llu", g->name,
             (unsigned long long)at, (unsigned long long)raft_first_index(r));
    return;
fail:
    if (err.msg[0])
        log_warn("group %s: no snapshot this time: %s", g->name, err.msg);
}

/* Processes readies until the core has nothing more or a ready waits for
 * the disk. */
static void drive(struct group *g)
{
    struct nerr err = {0};
    while (!g->in_flight && !g->wal_failed && !g->closed && raft_ready_get(g->r, &g->rd)) {
        struct raft_ready *rd = &g->rd;
        if (rd->snapshot && install_snapshot(g, rd->snapshot))
            return;
        /* A new term or vote goes to the node log after the entries (one
         * fdatasync for the round of every group, not one per group and
         * vote); its messages (a vote, a vote request) wait for it like
         * acks wait for entries (raft.h, step 4). */
        int hs_new = rd->has_hard_state &&
                     (rd->hs.term != g->hs_saved.term || rd->hs.vote != g->hs_saved.vote);
        if (rd->n_entries) {
            /* Committed entries are durable on a quorum already: apply them
             * now rather than after this ready's fsync (raft.h allows the
             * host to apply while it persists new entries). */
            if (rd->n_committed) {
                group__queue_committed(g, rd);
                g->rd_applied = 1;
            }
            uint64_t first = rd->entries[0].index;
            if (first <= nls_last_lsn(g->log)) {
                if (nls_cut(g->log, first - 1, &err)) {
                    log_error("group %s: %s", g->name, err.msg);
                    group_fail(g, NERR_IO);
                    return;
                }
                /* Our proposals at or after `first` were overwritten. */
                struct gentry **pp = &g->pending;
                while (*pp && (*pp)->lsn < first)
                    pp = &(*pp)->next;
                for (struct gentry *e = *pp, *n; e; e = n) {
                    n = e->next;
                    fail_prop(e, NERR_BUSY);
                }
                *pp = NULL;
                g->pending_tail = NULL;
                for (struct gentry *e = g->pending; e; e = e->next)
                    g->pending_tail = e;
            }
            for (size_t i = 0; i < rd->n_entries; i++) {
                const struct raft_entry *e = &rd->entries[i];
                unsigned char term[8];
                if (group__entry_prefix(e, term)) {
                    log_error("group %s: entry %llu (term %llu, type %u) cannot be stored", g->name,
                              (unsigned long long)e->index, (unsigned long long)e->term, e->type);
                    group_fail(g, NERR_INTERNAL);
                    return;
                }
                uint64_t lsn = 0;
                int last = i + 1 == rd->n_entries && !hs_new;
                int rc = nls_append(g->log, term, 8, e->data, e->len, last ? on_durable : NULL,
                                    last ? g : NULL, &lsn);
                if (rc || lsn != e->index) {
                    log_error("group %s: WAL append of entry %llu failed (%s)", g->name,
                              (unsigned long long)e->index, rc ? nerr_name(rc) : "LSN mismatch");
                    group_fail(g, rc ? rc : NERR_INTERNAL);
                    return;
                }
            }
        }
        if (hs_new) {
            if (nls_set_hard_state(g->log, rd->hs.term, rd->hs.vote, on_durable, g)) {
                log_error("group %s: node log append of term %llu failed", g->name,
                          (unsigned long long)rd->hs.term);
                group_fail(g, NERR_IO);
                return;
            }
            g->hs_saved = rd->hs;
        }
        if (rd->n_entries || hs_new) {
            /* The leader's appends go out while its own write runs. Not when
             * this ready changes term or vote: those must be durable first. */
            if (raft_role(g->r) == RAFT_LEADER && !rd->snapshot && !hs_new) {
                atomic_store(&g->s_commit, raft_commit(g->r));
                send_msgs(g, rd, 1);
                g->rd_sent = 1;
            }
            g->in_flight = 1;
            return;
        }
        finish_ready(g);
    }
}

/* Sends one message outside a ready (host messages, a hand-over). */
static void send_raw(struct group *g, const struct raft_msg *m)
{
    unsigned char *buf;
    size_t blen;
    if (m->to < 1 || m->to > RAFT_MAX_MEMBERS || m->to == g->mem.self || !g->h->send ||
        raftwire_encode(m, &buf, &blen))
        return;
    send_encoded(g, m->to, m->type, buf, blen);
    free(buf);
}

/* term: FWD_PROPOSE only, the term of the leader it is meant for. */
static void send_host_msg(struct group *g, uint32_t to, uint32_t type, uint64_t rid, uint64_t term,
                          const void *data, size_t len)
{
    struct raft_msg m = {.type = type,
                         .from = g->mem.self,
                         .to = to,
                         .index = rid,
                         .term = term,
                         .data_len = (uint32_t)len,
                         .data = (unsigned char *)data};
    send_raw(g, &m);
}

static void proposal(struct group *g, struct gentry *e)
{
    if (e->fwd && raft_role(g->r) != RAFT_LEADER && !g->wal_failed && !g->closed) {
        uint32_t leader = raft_leader(g->r);
        if (!leader || leader == g->mem.self) {
            fail_prop(e, NERR_BUSY);
            return;
        }
        /* Only the leader of this term may append it (flush_props): then a
         * committed entry of a later term without it proves it never
         * commits (group__queue_committed). */
        e->term = raft_term(g->r);
        send_host_msg(g, leader, RAFTWIRE_FWD_PROPOSE, e->rid, e->term, e->data, e->len);
        e->t_ns = clock_mono_ns();
        e->next = NULL;
        q_append(&g->fwd_pending, &g->fwd_tail, e, e);
        return;
    }
    e->next = NULL;
    q_append(&g->pbatch, &g->pbatch_tail, e, e);
}

static void fail_list(struct gentry *e, int status)
{
    for (struct gentry *n; e; e = n) {
        n = e->next;
        if (e->origin) { /* another member's: tell it nothing was proposed */
            send_host_msg(e->g, e->origin, RAFTWIRE_FWD_NACK, e->rid, 0, NULL, 0);
            free(e->data);
            free(e);
            continue;
        }
        fail_prop(e, status);
    }
}

/* Proposes the round's proposals in one batch: one append per follower. */
static void flush_props(struct group *g)
{
    struct gentry *batch = g->pbatch;
    g->pbatch = g->pbatch_tail = NULL;
    if (!batch)
        return;
    if (g->wal_failed || g->closed || raft_role(g->r) != RAFT_LEADER) {
        fail_list(batch, g->wal_failed ? NERR_IO : g->closed ? NERR_CLOSED : NERR_BUSY);
        return;
    }
    /* Another member's proposal meant for this member's leadership of an
     * earlier term is refused (its sender retries): see proposal(). */
    for (struct gentry **pp = &batch; *pp;) {
        struct gentry *e = *pp;
        if (e->origin && e->term && e->term != raft_term(g->r)) {
            *pp = e->next;
            e->next = NULL;
            fail_list(e, NERR_BUSY);
            continue;
        }
        pp = &e->next;
    }
    if (!batch)
        return;
    size_t n = 0;
    for (struct gentry *e = batch; e; e = e->next)
        n++;
    const void **data = malloc(n * sizeof *data);
    uint32_t *len = malloc(n * sizeof *len);
    if (!data || !len) {
        free(data);
        free(len);
        fail_list(batch, NERR_NOMEM);
        return;
    }
    size_t i = 0;
    for (struct gentry *e = batch; e; e = e->next, i++) {
        data[i] = e->data;
        len[i] = (uint32_t)e->len;
    }
    uint64_t first = 0, term = raft_term(g->r), now = clock_mono_ns();
    int rc = raft_propose_batch(g->r, data, len, n, &first);
    free(data);
    free(len);
    uint64_t appended = raft_last_index(g->r) >= first ? raft_last_index(g->r) - first + 1 : 0;
    i = 0;
    for (struct gentry *e = batch, *nx; e; e = nx, i++) {
        nx = e->next;
        if (rc && i >= appended) {
            e->next = NULL;
            fail_list(e, rc); /* never appended */
            continue;
        }
        if (e->origin) { /* another member's: it matches the entry itself */
            free(e->data);
            free(e);
            continue;
        }
        e->lsn = first + i;
        e->term = term;
        e->t_ns = now;
        e->next = NULL;
        q_append(&g->pending, &g->pending_tail, e, e);
    }
}

/* A proposal that no quorum acknowledged in time: its outcome is unknown
 * (it may still commit, then it is applied like any entry, without done). */
static void expire_pending(struct group *g, uint64_t now)
{
    uint64_t limit = (uint64_t)GROUP_PROPOSAL_TIMEOUT_MS * 1000000ull;
    /* A proposal forwarded to a leader that died or was deposed waits: the
     * next leader either commits it or commits an entry of its own term
     * first, which proves it never will (group__queue_committed). */
    while (g->fwd_pending && now - g->fwd_pending->t_ns > limit) {
        struct gentry *e = g->fwd_pending;
        g->fwd_pending = e->next;
        if (!g->fwd_pending)
            g->fwd_tail = NULL;
        fail_prop(e, NERR_TIMEOUT);
    }
    while (g->pending && now - g->pending->t_ns > limit) {
        struct gentry *e = g->pending;
        g->pending = e->next;
        if (!g->pending)
            g->pending_tail = NULL;
        fail_prop(e, NERR_TIMEOUT);
    }
}

static void message(struct group *g, struct dev *d)
{
    struct group_host *h = g->h;
    /* The transport authenticated the sending node's id (HELLO); the
     * member the message claims must run on that node now (its slot). */
    uint32_t from = d->msg.from;
    if (from < 1 || from > RAFT_MAX_MEMBERS || !g->slots.node[from - 1] ||
        strcmp(g->slots.node[from - 1], d->from) || d->msg.to != g->mem.self) {
        atomic_fetch_add(&h->st_forged, 1);
        return;
    }
    if (g->wal_failed)
        return;
    if (d->msg.type == RAFTWIRE_FWD_PROPOSE) {
        struct gentry *e = calloc(1, sizeof *e);
        if (!e) {
            send_host_msg(g, from, RAFTWIRE_FWD_NACK, d->msg.index, 0, NULL, 0);
            return;
        }
        e->g = g;
        e->origin = from;
        e->rid = d->msg.index;
        e->term = d->msg.term; /* the term its sender meant (0: any) */
        e->data = d->msg.data; /* taken over */
        e->len = d->msg.data_len;
        d->msg.data = NULL;
        d->msg.data_len = 0;
        proposal(g, e); /* flush_props NACKs it if this member does not lead */
        return;
    }
    if (d->msg.type == RAFTWIRE_FWD_NACK) {
        for (struct gentry **pp = &g->fwd_pending; *pp; pp = &(*pp)->next)
            if ((*pp)->rid == d->msg.index) {
                struct gentry *e = *pp;
                *pp = e->next;
                if (g->fwd_tail == e) {
                    g->fwd_tail = NULL;
                    for (struct gentry *x = g->fwd_pending; x; x = x->next)
                        g->fwd_tail = x;
                }
                fail_prop(e, NERR_BUSY);
                break;
            }
        return;
    }
    if (d->local)
        log_info("group %s: the snapshot at %llu from member %u is ready (commit %llu, term %llu)",
                 g->name, (unsigned long long)d->msg.index, from,
                 (unsigned long long)raft_commit(g->r), (unsigned long long)raft_term(g->r));
    if (raft_step(g->r, &d->msg)) {
        atomic_fetch_add(&h->st_raft, 1);
        return;
    }
    /* An acknowledgement moves the leader's match index without a ready
     * (nothing new to commit): published here (group_member_match). */
    if (d->msg.type == RAFT_MSG_APPEND_RESP && raft_role(g->r) == RAFT_LEADER) {
        atomic_store_explicit(&g->s_match[from], raft_match(g->r, from), memory_order_relaxed);
        g->match_term = 1;
    }
}

/* Answers a DEV_CONF request (group_propose_conf) with status and msg. */
static void conf_answer(struct glogreq *q, int status, const char *msg)
{
    pthread_mutex_lock(&q->mu);
    q->status = status;
    snprintf(q->msg, sizeof q->msg, "%s", msg);
    q->done = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    group__logreq_put(q);
}

/* group_propose_conf on the driver (no ready in flight). */
static void propose_conf(struct group *g, struct glogreq *q)
{
    struct nerr err = {0};
    char msg[sizeof q->msg] = "";
    uint64_t index = 0;
    int rc = 0;
    if (g->closed || g->wal_failed) {
        rc = g->closed ? NERR_CLOSED : NERR_IO;
        snprintf(msg, sizeof msg, "%s", g->closed ? "closed" : "this member failed");
    } else if ((rc = raft_conf_check(&q->conf, 1, &err))) {
        snprintf(msg, sizeof msg, "%.150s", err.msg);
    } else {
        for (uint32_t id = 1; id <= RAFT_MAX_MEMBERS && !rc; id++)
            if ((q->conf.voters & (1u << id)) && !g->slots.node[id - 1]) {
                rc = NERR_INVALID;
                snprintf(msg, sizeof msg, "member %u has no node (group_set_members first)", id);
            }
        if (!rc && (rc = raft_propose_conf(g->r, &q->conf, &index)))
            snprintf(msg, sizeof msg, "%s",
                     rc == NERR_BUSY ? "not the leader, no entry of its term committed yet, or "
                                       "a change in progress"
                                     : "the core refused the configuration");
    }
    if (!rc)
        log_info("group %s: proposed the configuration voters %#x log %#x at %llu", g->name,
                 q->conf.voters, q->conf.log, (unsigned long long)index);
    conf_answer(q, rc, msg);
}

/* New slots (group_set_members): the driver's copy. */
static void set_slots(struct group *g, struct gslots *ns)
{
    group__slots_free(&g->slots);
    g->slots = *ns;
    free(ns);
    /* Peers this host holds down: a member on a new node learns it. */
    for (uint32_t m = 1; m <= RAFT_MAX_MEMBERS; m++) {
        struct gpeer *p = m != g->mem.self && g->h->send && g->slots.node[m - 1]
                              ? peer_find(g->h, g->slots.node[m - 1], 1)
                              : NULL;
        if (p && p->down && !g->wal_failed && !g->closed)
            raft_peer_down(g->r, m);
    }
}

/* Runs one event whose group is not waiting for the disk. */
static void run_event(struct group *g, struct dev *d)
{
    if (d->kind == DEV_MEMBERS) {
        set_slots(g, d->slots);
        d->slots = NULL;
    } else if (d->kind == DEV_CONF) {
        propose_conf(g, d->logreq);
        d->logreq = NULL;
    } else if (d->kind == DEV_MSG)
        message(g, d);
    else if (d->kind == DEV_PROPOSE && d->prop)
        proposal(g, d->prop);
    else if (d->kind == DEV_WAKE) {
        atomic_store(&g->wake_posted, 0);
        if (!g->wal_failed && !g->closed)
            raft_wake(g->r);
    }
}

static void unregister(struct group_host *h, struct group *g)
{
    for (struct group **pp = bucket_of(h, g->mem.gid); *pp; pp = &(*pp)->hnext)
        if (*pp == g) {
            *pp = g->hnext;
            break;
        }
    for (struct group **pp = &h->all; *pp; pp = &(*pp)->anext)
        if (*pp == g) {
            *pp = g->anext;
            break;
        }
}

static void close_now(struct group *g)
{
    if (g->dirty) {
        for (struct group **pp = &g->h->dirty; *pp; pp = &(*pp)->dnext)
            if (*pp == g) {
                *pp = g->dnext;
                break;
            }
        g->dirty = 0;
    }
    fail_list(g->pbatch, NERR_CLOSED);
    g->pbatch = g->pbatch_tail = NULL;
    fail_list(g->fwd_pending, NERR_CLOSED);
    g->fwd_pending = g->fwd_tail = NULL;
    for (struct dev *d = g->deferred, *n; d; d = n) {
        n = d->next;
        if (d->kind == DEV_PROPOSE && d->prop)
            fail_prop(d->prop, NERR_CLOSED);
        if (d->kind == DEV_CONF)
            conf_answer(d->logreq, NERR_CLOSED, "closed");
        if (d->kind == DEV_MEMBERS) {
            group__slots_free(d->slots);
            free(d->slots);
        }
        raft_msg_release(&d->msg);
        free(d);
    }
    g->deferred = g->deferred_tail = NULL;
    for (struct gentry *e = g->pending, *n; e; e = n) {
        n = e->next;
        fail_prop(e, NERR_CLOSED);
    }
    g->pending = g->pending_tail = NULL;
    unregister(g->h, g);
    for (struct group **pp = &g->h->active; *pp; pp = &(*pp)->actnext)
        if (*pp == g) {
            *pp = g->actnext;
            break;
        }
    g->act = 0;
    if (atomic_exchange(&g->s_quiet, 0))
        atomic_fetch_sub(&g->h->st_quiet, 1);
    pthread_mutex_lock(&g->mu);
    g->closed = 1;
    pthread_cond_broadcast(&g->idle);
    pthread_mutex_unlock(&g->mu);
}

static void defer_event(struct group *g, struct dev *d)
{
    d->next = NULL;
    if (g->deferred_tail)
        g->deferred_tail->next = d;
    else
        g->deferred = d;
    g->deferred_tail = d;
}

/* An election this member's timers started (a timeout, a check-quorum
 * step-down): what it saw, for the logs (docs/benchmarks.md, "Leader churn
 * under load"). k ticks were advanced at once, late_ns after they were due. */
static void log_tick_election(struct group *g, enum raft_role was, uint64_t k, uint64_t late_ns)
{
    static const char *const role[] = {"follower", "pre-candidate", "candidate", "leader"};
    struct raft_stats st;
    raft_get_stats(g->r, &st);
    enum raft_role now = raft_role(g->r);
    log_warn("group %s: %s on the tick: %s -> %s in term %llu (%llu tick(s) at once, the driver "
             "%llu ms late; pre-votes %llu, elections %llu, check-quorum step-downs %llu)",
             g->name, was == RAFT_LEADER ? "stepped down (check-quorum)" : "election timeout",
             role[was], role[now], (unsigned long long)raft_term(g->r), (unsigned long long)k,
             (unsigned long long)(late_ns / 1000000), (unsigned long long)st.prevotes_started,
             (unsigned long long)st.elections_started,
             (unsigned long long)st.checkquorum_stepdowns);
}

/* Drives the groups the round touched. */
static void drive_dirty(struct group_host *h)
{
    while (h->dirty) {
        struct group *g = h->dirty;
        h->dirty = g->dnext;
        g->dirty = 0;
        if (g->closed)
            continue;
        if (!g->in_flight && g->missed_ticks && !g->wal_failed)
            catch_up_ticks(g);
        if (!g->in_flight && !g->wal_failed)
            host_inputs(g);
        if (!g->in_flight)
            flush_props(g);
        drive(g);
        if (!g->in_flight && !g->missed_ticks && atomic_load(&g->s_quiet) != raft_quiescent(g->r))
            group__publish(g);
    }
}

void *group__driver_main(void *arg)
{
    pthread_setname_np(pthread_self(), "nines-driver");
    struct group_host *h = arg;
    uint64_t next_tick = clock_mono_ns() + RAFT_TICK_MS * 1000000ull, next_log_tick = 0;
    size_t last_round = 0; /* events the last round handled */
    for (;;) {
        pthread_mutex_lock(&h->dmu);
        while (!h->dhead && !h->dstop && clock_mono_ns() < next_tick) {
            struct timespec dl = {(time_t)(next_tick / 1000000000ull),
                                  (long)(next_tick % 1000000000ull)};
            pthread_cond_timedwait(&h->dcv, &h->dmu, &dl);
        }
        /* Under load, gather a bigger round: every stage after this one
         * (appends per follower, node log writes, acks, applier hand-offs)
         * then costs the same for more writes. A replicated host only: its
         * rounds wake the most threads. */
        if (h->dhead && !h->dstop && h->send && last_round >= DRIVER_COALESCE_EVENTS) {
            pthread_mutex_unlock(&h->dmu);
            usleep(DRIVER_COALESCE_US);
            pthread_mutex_lock(&h->dmu);
        }
        struct dev *batch = h->dhead;
        h->dhead = h->dtail = NULL;
        int stop = h->dstop;
        pthread_mutex_unlock(&h->dmu);
        if (stop) {
            for (struct dev *d = batch, *n; d; d = n) {
                n = d->next;
                if (d->kind == DEV_LOG || d->kind == DEV_CONF)
                    conf_answer(d->logreq, NERR_CLOSED, "the host is stopping");
                if (d->kind == DEV_MEMBERS) {
                    group__slots_free(d->slots);
                    free(d->slots);
                }
                raft_msg_release(&d->msg);
                free(d);
            }
            break;
        }
        last_round = 0;
        for (struct dev *d = batch, *n; d; d = n) {
            n = d->next;
            struct group *g = d->g;
            last_round++;
            if (d->kind == DEV_LOG) {
                /* A read of the log: served at once, in flight or asleep
                 * (committed entries never change), without waking it. */
                group__logreq_answer(g, d->logreq);
                free(d);
                continue;
            }
            if (d->kind == DEV_BEAT) {
                beat(h, d);
                raft_msg_release(&d->msg);
                free(d);
                continue;
            }
            if (d->kind == DEV_MSG) {
                /* Any message from a peer node shows it alive, not only its
                 * node heartbeats: under load (a driver running late) those
                 * alone would report busy peers down (liveness_tick). */
                struct gpeer *pn = h->npeers && !d->local ? peer_find(h, d->from, 0) : NULL;
                if (pn)
                    pn->heard = 1;
                g = find_gid(h, d->gid);
                if (!g) {
                    atomic_fetch_add(&h->st_unknown, 1);
                    raft_msg_release(&d->msg);
                    free(d);
                    continue;
                }
            }
            if (d->kind == DEV_PROPOSE && !d->prop) { /* registration */
                if (find_gid(h, g->mem.gid)) {
                    log_error("group %s: group id %llu is already open", g->name,
                              (unsigned long long)g->mem.gid);
                    g->wal_failed = 1;
                } else {
                    g->hnext = *bucket_of(h, g->mem.gid);
                    *bucket_of(h, g->mem.gid) = g;
                }
                /* h->all is kept in gid order, so the metadata group (gid 1,
                 * catalog.h) is ticked and driven first in every round:
                 * nothing else works while it has no leader. */
                struct group **pp = &h->all;
                while (*pp && (*pp)->mem.gid < g->mem.gid)
                    pp = &(*pp)->anext;
                g->anext = *pp;
                *pp = g;
                free(d);
                g->tick_at = h->ticks;
                activate(h, g);
                /* Peers this host holds down: the new member learns it. */
                for (uint32_t m = 1; m <= RAFT_MAX_MEMBERS; m++) {
                    struct gpeer *p = m != g->mem.self && h->send && g->slots.node[m - 1]
                                          ? peer_find(h, g->slots.node[m - 1], 1)
                                          : NULL;
                    if (p && p->down)
                        raft_peer_down(g->r, m);
                }
                drive(g);
                continue;
            }
            if (d->kind != DEV_CLOSE)
                activate(h, g);
            if (d->kind == DEV_DURABLE) {
                if (d->status)
                    group_fail(g, d->status);
                else
                    finish_ready(g);
                free(d);
            } else if (d->kind == DEV_CLOSE) {
                if (g->in_flight) {
                    defer_event(g, d); /* after the durable event */
                    continue;
                }
                free(d);
                close_now(g);
                continue;
            } else if (g->in_flight) {
                defer_event(g, d);
                continue;
            } else {
                run_event(g, d);
                raft_msg_release(&d->msg);
                free(d);
            }
            /* Deferred events run once the ready is done. */
            while (!g->in_flight && g->deferred && !g->closed) {
                struct dev *e = g->deferred;
                g->deferred = e->next;
                if (!g->deferred)
                    g->deferred_tail = NULL;
                if (e->kind == DEV_CLOSE) {
                    free(e);
                    close_now(g);
                    break;
                }
                run_event(g, e);
                raft_msg_release(&e->msg);
                free(e);
            }
            /* Readies wait for the end of the round, so that its
             * proposals and messages are handled together. */
            if (!g->closed && !g->dirty) {
                g->dirty = 1;
                g->dnext = h->dirty;
                h->dirty = g;
            }
        }
        drive_dirty(h);
        uint64_t now = clock_mono_ns();
        if (now >= next_tick) {
            uint64_t ticks = (now - next_tick) / (RAFT_TICK_MS * 1000000ull) + 1;
            next_tick += ticks * RAFT_TICK_MS * 1000000ull;
            /* LMDB failed (a full disk): this node applies nothing more, so
             * its replicas must not keep voting and acknowledging as if
             * they were healthy; they fall silent and the others carry on. */
            pthread_mutex_lock(&h->mu);
            int state_failed = h->failed;
            pthread_mutex_unlock(&h->mu);
            if (state_failed)
                for (struct group *g = h->all; g; g = g->anext)
                    if (!g->wal_failed && !g->closed && !g->in_flight) {
                        log_error("group %s: the node's state store failed; this replica "
                                  "stops taking part",
                                  g->name);
                        group_fail(g, NERR_IO);
                    }
            if (now >= next_log_tick) {
                nodelog_tick(h->nl); /* which groups pin the oldest log segment */
                next_log_tick = now + 1000000000ull;
                /* A sleeping group is not ticked, but the node log may still
                 * need it to compact (nodelog.h, invariant 3). */
                for (struct group *g = h->all; g; g = g->anext)
                    if (!g->act && !g->closed && !g->wal_failed && nls_compact_wanted(g->log))
                        maybe_compact(g, now);
            }
            h->ticks += ticks;
            size_t nactive = 0;
            for (struct group **pp = &h->active, *g; (g = *pp);) {
                if (g->wal_failed || g->closed || can_sleep(g)) {
                    /* Asleep and idle (or silent for good): off the list;
                     * its clock stands here until an input wakes it. */
                    *pp = g->actnext;
                    g->act = 0;
                    g->tick_at = h->ticks - ticks; /* it skips this tick */
                    continue;
                }
                pp = &g->actnext;
                nactive++;
                if (g->in_flight) {
                    uint32_t hb = h->timing.heartbeat_ticks, was = g->missed_ticks;
                    g->missed_ticks += (uint32_t)ticks;
                    /* A leader waiting for its own write (a slow disk) still
                     * heartbeats, or its followers time out: the ticks wait
                     * for the ready, the heartbeats do not (raft_heartbeat). */
                    if (h->send && raft_role(g->r) == RAFT_LEADER &&
                        was / hb != g->missed_ticks / hb)
                        for (uint32_t p = 1; p <= RAFT_MAX_MEMBERS; p++) {
                            struct raft_msg m;
                            if (p != g->mem.self && !raft_heartbeat(g->r, p, &m))
                                send_raw(g, &m);
                        }
                    continue;
                }
                expire_pending(g, now);
                maybe_compact(g, now);
                uint64_t k = ticks + g->missed_ticks;
                g->missed_ticks = 0;
                /* A stalled loop must not make the lease look longer: each
                 * elapsed tick period counts, in one advance (raft.h,
                 * raft_elapse: no timer fires on the stall alone). */
                enum raft_role was = raft_role(g->r);
                uint64_t was_term = raft_term(g->r);
                raft_elapse(g->r, k);
                if (raft_role(g->r) != was && was_term > 0) /* not a group's first election */
                    log_tick_election(g, was, k,
                                      now + ticks * RAFT_TICK_MS * 1000000ull - next_tick);
                drive(g);
                group__publish(g);
            }
            atomic_store(&h->st_active, nactive);
            liveness_tick(h);
            drive_dirty(h);
        }
    }
    return NULL;
}
