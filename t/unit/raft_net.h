/*
 * raft_net.h — the in-memory network that test_raft.c and test_raft_conf.c
 * drive store/raft on. Test code only.
 *
 * A tick is synchronous: every live member ticks and its ready is processed
 * (drain), then queued messages are delivered one by one, each processed
 * ready queueing more, until none is left. Links are cut one direction at a
 * time (cut[a][b]: a's messages to b are lost, whether queued or still to
 * come). A member crashes (raft_free) and restarts from what it persisted,
 * its struct pstore, which drain keeps as a host must: snapshot, entries and
 * hard state before messages leave.
 *
 * Members are built either from n_members (net_init, net_init_q: ids 1..n,
 * a group that never changes) or from a configuration (net_init_conf: the
 * ids listed, each with cfg.conf = init[k]). Everything a member's ready
 * shows is counted in struct net, so a test asserts on the counters after
 * the fact. The net owns its members, the persisted entries and snapshots
 * and the queued messages; net_free releases them all.
 */
#ifndef NINES_T_UNIT_RAFT_NET_H
#define NINES_T_UNIT_RAFT_NET_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/raft.h"
#include "t/tap.h"

#define N_MAX 6    /* the most member ids a net holds, 1..N_MAX */
#define GROUP 7    /* the group id of every member */
#define E_TICKS 10 /* election timeout; the heartbeat is every 2 ticks */

/* What a member persisted: what it restarts from. */
struct pstore {
    struct raft_hard_state hs;
    struct raft_entry *ents; /* owned, each entry's data too */
    size_t n, cap;
    struct raft_snapshot snap; /* data owned */
};

struct net {
    int n; /* cfg.n_members; 0 when built from a configuration */
    uint64_t seed;
    uint32_t quiesce; /* cfg.quiesce_ticks of the members mk builds */
    struct raft *r[N_MAX + 1];
    struct raft_conf init[N_MAX + 1];         /* cfg.conf each member was created with */
    struct raft_conf applied_conf[N_MAX + 1]; /* the host's: latest CONF applied */
    struct pstore st[N_MAX + 1];
    int cut[N_MAX + 1][N_MAX + 1]; /* cut[a][b]: a's messages to b are lost */
    struct raft_msg *q;
    size_t nq, capq;
    uint64_t applied[N_MAX + 1];
    uint64_t last_commit[N_MAX + 1];
    /* Violations seen while draining. */
    int vote_unpersisted, old_term_commit, apply_gap;
    int log_leader; /* readies processed while a log member led */
    int snapshots_installed;
    uint64_t rejects;      /* APPEND_RESP rejects sent */
    uint64_t appends_over; /* APPENDs of several entries over RAFT_MAX_APPEND_BYTES */
    uint64_t append_max;   /* the most entry bytes one APPEND carried */
    uint64_t sent;         /* messages sent (past the cuts or not) */
    /* hold_at: once member hold_l commits hold_idx, drop what is queued and
     * cut hold_l's messages (hold_mode 2), cut hold_l's messages to the ids
     * in hold_from and theirs to it from hold_to (hold_mode 4), or cut the
     * acknowledgements to hold_l (any other mode). 0 = no hold. */
    int hold_l, hold_mode;
    uint64_t hold_idx;
    uint32_t hold_from, hold_to;
};

/* Drops the persisted entries from index `from` on. */
static inline void ps_truncate(struct pstore *st, uint64_t from)
{
    while (st->n && st->ents[st->n - 1].index >= from)
        free(st->ents[--st->n].data);
}

static inline void cut_from(struct net *nt, int k, int on)
{
    for (int j = 1; j <= N_MAX; j++)
        nt->cut[k][j] = on;
}

static inline void cut_to(struct net *nt, int k, int on)
{
    for (int j = 1; j <= N_MAX; j++)
        nt->cut[j][k] = on;
}

static inline void isolate(struct net *nt, int k, int on)
{
    cut_from(nt, k, on);
    cut_to(nt, k, on);
}

static inline void heal(struct net *nt)
{
    memset(nt->cut, 0, sizeof(nt->cut));
}

/* Loses every queued message. */
static inline void drop_queue(struct net *nt)
{
    for (size_t i = 0; i < nt->nq; i++)
        raft_msg_release(&nt->q[i]);
    nt->nq = 0;
}

/* Processes every ready of member k as its host would: persists the
 * snapshot, entries and hard state, then queues the messages past the cuts
 * and applies what committed, counting what the net watches for. */
static inline void drain(struct net *nt, int k)
{
    struct raft *r = nt->r[k];
    struct pstore *st = &nt->st[k];
    struct raft_ready rd;
    while (raft_ready_get(r, &rd)) {
        if (rd.snapshot) {
            ps_truncate(st, 0);
            free(st->snap.data);
            st->snap = *rd.snapshot;
            st->snap.data = malloc(rd.snapshot->len ? rd.snapshot->len : 1);
            memcpy(st->snap.data, rd.snapshot->data, rd.snapshot->len);
            nt->applied[k] = rd.snapshot->index;
            nt->applied_conf[k] = rd.snapshot->conf;
            nt->snapshots_installed++;
        }
        if (rd.n_entries)
            ps_truncate(st, rd.entries[0].index);
        for (size_t i = 0; i < rd.n_entries; i++) {
            if (st->n == st->cap) {
                st->cap = st->cap ? st->cap * 2 : 64;
                st->ents = realloc(st->ents, st->cap * sizeof(*st->ents));
            }
            struct raft_entry *e = &st->ents[st->n++];
            *e = rd.entries[i];
            e->data = NULL;
            if (rd.entries[i].len) {
                e->data = malloc(rd.entries[i].len);
                memcpy(e->data, rd.entries[i].data, rd.entries[i].len);
            }
        }
        if (rd.has_hard_state)
            st->hs = rd.hs;
        nt->sent += rd.n_msgs;
        for (size_t i = 0; i < rd.n_msgs; i++) {
            const struct raft_msg *m = &rd.msgs[i];
            /* A granted vote must be durable before the grant leaves. */
            if (m->type == RAFT_MSG_VOTE_RESP && !m->reject &&
                (st->hs.vote != m->to || st->hs.term != m->term))
                nt->vote_unpersisted++;
            if (m->type == RAFT_MSG_APPEND_RESP && m->reject)
                nt->rejects++;
            if (m->type == RAFT_MSG_APPEND) {
                uint64_t b = 0;
                for (uint32_t j = 0; j < m->n_entries; j++)
                    b += m->entries[j].len;
                if (m->n_entries > 1 && b > RAFT_MAX_APPEND_BYTES)
                    nt->appends_over++;
                if (b > nt->append_max)
                    nt->append_max = b;
            }
            if (nt->cut[m->from][m->to])
                continue;
            if (nt->nq == nt->capq) {
                nt->capq = nt->capq ? nt->capq * 2 : 64;
                nt->q = realloc(nt->q, nt->capq * sizeof(*nt->q));
            }
            raft_msg_copy(&nt->q[nt->nq++], m);
        }
        for (size_t i = 0; i < rd.n_committed; i++) {
            const struct raft_entry *e = &rd.committed[i];
            if (e->index != nt->applied[k] + 1)
                nt->apply_gap++;
            nt->applied[k] = e->index;
            if (e->type == RAFT_ENTRY_CONF)
                raft_conf_decode(e->data, e->len, &nt->applied_conf[k]);
        }
        raft_ready_advance(r);
        uint64_t c = raft_commit(r);
        if (raft_role(r) == RAFT_LEADER) {
            /* §5.4.2: a leader's commit point lands on an entry of its term. */
            const struct raft_entry *e = c != nt->last_commit[k] ? raft_entry_at(r, c) : NULL;
            if (e && e->term != raft_term(r))
                nt->old_term_commit++;
            struct raft_conf lc;
            raft_get_conf(r, &lc);
            if (lc.log & (1u << k))
                nt->log_leader++; /* checked only outside a demotion */
        }
        nt->last_commit[k] = c;
    }
}

/* Builds member k from what it persisted and the net's settings. */
static inline struct raft *mk(struct net *nt, int k)
{
    struct pstore *st = &nt->st[k];
    struct raft_config cfg = {.group = GROUP,
                              .id = (uint32_t)k,
                              .n_members = (uint32_t)nt->n,
                              .election_ticks = E_TICKS,
                              .heartbeat_ticks = 2,
                              .drift_ppm = 50000,
                              .seed = nt->seed,
                              .quiesce_ticks = nt->quiesce,
                              .hs = st->hs,
                              .snapshot = st->snap,
                              .entries = st->ents,
                              .n_entries = st->n,
                              .applied = st->snap.index,
                              .conf = nt->init[k]};
    struct nerr e;
    struct raft *r = raft_new(&cfg, &e);
    if (!r)
        bail_out(e.msg);
    nt->applied[k] = st->snap.index;
    nt->applied_conf[k] = st->snap.index ? st->snap.conf : nt->init[k];
    return r;
}

/* Members 1..n of a group that never changes, sleeping after `quiesce`
 * idle ticks (0: never). */
static inline void net_init_q(struct net *nt, int n, uint64_t seed, uint32_t quiesce)
{
    memset(nt, 0, sizeof(*nt));
    nt->n = n;
    nt->seed = seed;
    nt->quiesce = quiesce;
    for (int k = 1; k <= n; k++)
        nt->r[k] = mk(nt, k);
}

static inline void net_init(struct net *nt, int n, uint64_t seed)
{
    net_init_q(nt, n, seed, 0);
}

/* Members `ids` (digits) start with configuration c; the other ids stay
 * empty. */
static inline void net_init_conf(struct net *nt, const char *ids, struct raft_conf c, uint64_t seed)
{
    memset(nt, 0, sizeof(*nt));
    nt->seed = seed;
    for (const char *p = ids; *p; p++) {
        int k = *p - '0';
        nt->init[k] = c;
        nt->r[k] = mk(nt, k);
    }
}

/* Creates the brand-new member k with the configuration it joins. */
static inline void add_member(struct net *nt, int k, struct raft_conf joins)
{
    nt->init[k] = joins;
    nt->r[k] = mk(nt, k);
}

static inline void net_free(struct net *nt)
{
    for (int k = 1; k <= N_MAX; k++) {
        raft_free(nt->r[k]);
        ps_truncate(&nt->st[k], 0);
        free(nt->st[k].ents);
        free(nt->st[k].snap.data);
    }
    for (size_t i = 0; i < nt->nq; i++)
        raft_msg_release(&nt->q[i]);
    free(nt->q);
}

static inline void crash(struct net *nt, int k)
{
    raft_free(nt->r[k]);
    nt->r[k] = NULL;
}

/* Member k (crashed or not) comes back from what it persisted. */
static inline void restart(struct net *nt, int k)
{
    if (nt->r[k])
        crash(nt, k);
    nt->r[k] = mk(nt, k);
}

/* Delivers queued messages until none is left (or 100000 went), applying
 * a pending hold once its index committed. */
static inline void deliver_all(struct net *nt)
{
    for (int rounds = 0; nt->nq && rounds < 100000; rounds++) {
        struct raft_msg m = nt->q[0];
        memmove(nt->q, nt->q + 1, (nt->nq - 1) * sizeof(*nt->q));
        nt->nq--;
        if (nt->r[m.to] && !nt->cut[m.from][m.to]) {
            raft_step(nt->r[m.to], &m);
            drain(nt, (int)m.to);
        }
        raft_msg_release(&m);
        if (nt->hold_l && raft_commit(nt->r[nt->hold_l]) >= nt->hold_idx) {
            if (nt->hold_mode == 2) {
                drop_queue(nt);
                cut_from(nt, nt->hold_l, 1);
            } else if (nt->hold_mode == 4) {
                for (int k = 1; k <= N_MAX; k++) {
                    nt->cut[nt->hold_l][k] |= (nt->hold_from >> k) & 1;
                    nt->cut[k][nt->hold_l] |= (nt->hold_to >> k) & 1;
                }
            } else {
                cut_to(nt, nt->hold_l, 1);
            }
            nt->hold_l = 0;
        }
    }
}

/* Processes member k's ready, then delivers all that follows from it. */
static inline void flush(struct net *nt, int k)
{
    drain(nt, k);
    deliver_all(nt);
}

/* Steps m (borrowed) at its addressee, then delivers all that follows. */
static inline void inject(struct net *nt, const struct raft_msg *m)
{
    raft_step(nt->r[m->to], m);
    flush(nt, (int)m->to);
}

static inline void run(struct net *nt, int ticks)
{
    for (int t = 0; t < ticks; t++) {
        for (int k = 1; k <= N_MAX; k++)
            if (nt->r[k]) {
                raft_tick(nt->r[k]);
                drain(nt, k);
            }
        deliver_all(nt);
    }
}

/* The one live leader, 0 if none, -1 if several. */
static inline int leader_of(struct net *nt)
{
    int l = 0;
    for (int k = 1; k <= N_MAX; k++)
        if (nt->r[k] && raft_role(nt->r[k]) == RAFT_LEADER) {
            if (l)
                return -1;
            l = k;
        }
    return l;
}

/* Runs up to max ticks until there is one leader; it, or 0. */
static inline int run_until_leader(struct net *nt, int max)
{
    for (int t = 0; t < max; t++) {
        run(nt, 1);
        if (leader_of(nt) > 0)
            return leader_of(nt);
    }
    return 0;
}

/* Proposes v at k and delivers all that follows; its index, or 0 when k
 * refused it. */
static inline uint64_t propose(struct net *nt, int k, uint64_t v)
{
    uint64_t idx = 0;
    if (raft_propose(nt->r[k], &v, sizeof(v), &idx))
        return 0;
    flush(nt, k);
    return idx;
}

/* Ticks r, a member outside any net, until it campaigns (40 ticks at the
 * most); what it would persist and send is dropped. */
static inline void tick_until_campaign(struct raft *r)
{
    struct raft_ready rd;
    for (int t = 0; t < 40 && raft_role(r) == RAFT_FOLLOWER; t++) {
        raft_tick(r);
        if (raft_ready_get(r, &rd))
            raft_ready_advance(r);
    }
}

#endif
