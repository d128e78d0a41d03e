/*
 * test_raft_sim.c — seeded simulation of store/raft: several replication
 * groups on 3 or 5 nodes, with message loss, duplication, reordering and
 * delay, partitions that heal, crashes and restarts from persisted state only,
 * snapshots, per-node clock drift within the bound the module states, and
 * stalled hosts (messages stepped at a stale clock, the owed ticks advanced
 * at once with raft_elapse).
 *
 * After every event it checks: at most one leader per term; log matching on
 * the persisted logs (same index and term => same chain hash of the prefix);
 * no committed entry lost or changed (every apply and every snapshot matches
 * the global committed record; every new leader holds every committed entry);
 * replicas apply the same entries in the same order; lease safety (a member
 * whose lease is valid has committed everything committed anywhere). At the
 * end of each seed the network heals and a leader must commit a proposal.
 *
 * Quiescence (raft.h): in every other seed the groups may sleep
 * (quiesce_ticks 2E) and proposals come in bursts with idle gaps, so groups
 * fall asleep and wake under all of the above. Each node's host models
 * node-level liveness as ninesd does: a peer it cannot reach (down, across
 * a partition, or stalled: no node heartbeats) for E ticks is reported with
 * raft_peer_down to all its members, and raft_peer_up once reachable again;
 * a restart (new incarnation) is reported as down then up. Checked besides
 * the invariants: a sleeping member sends nothing on a tick, and at the end
 * (healed, idle) every group falls asleep, then wakes and commits again.
 *
 * Membership (raft.h, "Membership change"): in every third seed each
 * group's leader, while the group is busy, now and then replaces one voter
 * (the leader itself included) by a member on a spare node (3 spare nodes
 * for 3 members, 2 for 5), of storage or (30 %) log kind; ids are never
 * reused. The new member is created empty with the joint configuration;
 * nodes that host no member of a group sit idle for it; a host shuts a
 * member down once a committed configuration removed it (replica GC) or
 * its joint entry lost its index to another committed entry. Checked
 * besides the invariants above: consecutive committed configurations are
 * joint-linked (C_old -> C_old∧C_new -> C_new, so no two configurations in
 * effect at once have disjoint quorums), no log member ever leads, a
 * genuine message from a member of the receiver's configuration is never
 * dropped, and at the end every group has finished its change. The other
 * seeds run exactly as before (configuration from n_members).
 *
 * NINES_SEEDS=n sets the seed count (default 10000); NINES_SEED=s replays
 * one seed; NINES_SIM_DEBUG=1 prints the members of a group that failed a
 * liveness check; NINES_SIM_TRACE=g prints every message group g delivers.
 */
#include "lib/clock.h"
#include "lib/rng.h"
#include "store/raft.h"
#include "t/tap.h"

#include <stdint.h>
#include <time.h>

#define MAXN 8 /* nodes: up to 5 initial members and spares (membership seeds) */
#define MAXG 3
#define UNIT 1000 /* simulated time units per nominal tick */
#define RUN_TICKS 600
#define LIVE_TICKS 200
#define E_TICKS 10
#define H_TICKS 2
#define DRIFT_PPM 50000
#define KEYTAB (1u << 15)

struct sent {
    struct raft_entry e;
    uint64_t chain; /* hash of (term, data) of every entry up to this one */
};

/* What one member persisted: all a restart may use. */
struct store {
    struct raft_hard_state hs;
    uint64_t snap_index, snap_term;
    unsigned char snap_data[24];
    uint32_t snap_len;
    struct raft_conf snap_conf;
    struct sent *ents;
    size_t n, cap;
};

/* The replicated state machine, also the snapshot payload. */
struct replica {
    uint64_t applied, chain, count;
};

struct member {
    struct raft *r;
    struct store st;
    struct replica rep;
    uint64_t checked_term;           /* leader completeness checked for this term */
    int exists;                      /* the node hosts a member of the group (maybe down) */
    struct raft_conf init;           /* cfg.conf it was created with */
    struct raft_conf applied_conf;   /* the host's: latest CONF applied */
    uint64_t joined_at, joined_term; /* added by the joint entry at (index, term) */
};

/* A host's view of a peer node (node-level liveness). */
struct peerview {
    uint64_t last_ok;
    uint32_t inc_seen;
    int reported;
};

struct node {
    int up;
    uint32_t inc; /* incarnation: bumped at every restart */
    struct peerview pv[MAXN];
    int side; /* partition side */
    uint64_t period, next_tick, down_until;
    /* A stalled host (its thread unscheduled): messages are still stepped,
     * at its stale clock, but ticks are owed and advanced at once at the
     * end (raft_elapse), as ninesd's driver does. */
    uint64_t stall_left, owed;
};

struct inflight {
    uint64_t at;
    uint64_t group_ix;
    struct raft_msg m;
};

struct key {
    uint64_t index, term, chain;
};

struct gstate {
    uint32_t *leader_of; /* by term */
    size_t leader_cap;
    uint64_t *c_term, *c_chain; /* committed record by index */
    size_t c_cap;
    uint64_t max_commit;
    /* The term of the leader that first committed each index (up to
     * lead_hi): leader completeness is owed only to leaders of later terms
     * (a candidate of an older term may still win on a late vote). */
    uint64_t *cm_term;
    size_t cm_cap;
    uint64_t lead_hi;
    struct key *keys; /* (index, term) -> chain, open addressing */
    /* Membership seeds: ids ever members (never reused), ids ever log
     * members (never leaders), and the committed configuration sequence's
     * latest (consecutive ones must be joint-linked). */
    uint32_t used, log_ids, ever; /* ever: in some committed configuration */
    struct raft_conf last_conf;
    uint64_t last_conf_index;
};

struct totals {
    uint64_t seeds, events, commits, elections, crashes, partitions, stalls, snapshots_installed,
        lease_reads, drops_loss, proposals, dups;
    uint64_t quiesces, wakes, wakes_peer_down, peer_downs, quiet_seeds, quiet_ticks;
    uint64_t conf_seeds, conf_proposed, conf_committed, conf_log_added, conf_stepdowns,
        conf_leader_removed, conf_gc;
};

struct sim {
    uint64_t seed, now, end;
    struct rng rng;
    int n, ng;       /* nodes (initial members and spares), groups */
    int nv;          /* initial members: ids 1..nv */
    int members;     /* membership seed: the leaders replace members */
    int trace_group; /* NINES_SIM_TRACE=g: print the messages of group g (+1) */
    struct node nodes[MAXN];
    struct member mem[MAXG][MAXN];
    struct gstate g[MAXG];
    struct inflight *q;
    size_t nq, capq;
    uint32_t loss_ppm, dup_ppm, long_delay_ppm;
    uint64_t heal_at;
    int partitioned, calm, idle;
    uint32_t quiesce; /* cfg.quiesce_ticks of this seed's members */
    uint64_t next_value;
    char why[512];
    int failed;
    struct totals *tot;
};

static uint64_t rnd(struct sim *s)
{
    return rng_next(&s->rng);
}

static uint64_t below(struct sim *s, uint64_t n)
{
    return n ? rnd(s) % n : 0;
}
static int chance(struct sim *s, uint32_t ppm)
{
    return below(s, 1000000) < ppm;
}

static uint64_t mix(uint64_t h, uint64_t term, const unsigned char *d, uint32_t len)
{
    uint64_t x = h ^ (term * UINT64_C(0x9e3779b97f4a7c15));
    for (uint32_t i = 0; i < len; i++)
        x = (x ^ d[i]) * UINT64_C(0x100000001b3);
    x ^= len;
    x = (x ^ (x >> 31)) * UINT64_C(0xbf58476d1ce4e5b9);
    return x ^ (x >> 29);
}

static void fail(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct sim *s, const char *fmt, ...)
{
    if (s->failed)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof(s->why), fmt, ap);
    va_end(ap);
    s->failed = 1;
}

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    unsigned char *np = realloc(p, c * elem);
    if (!np)
        abort();
    memset(np + *cap * elem, 0, (c - *cap) * elem);
    *cap = c;
    return np;
}

/* Log matching: an (index, term) pair must always carry the same prefix. */
static void check_key(struct sim *s, int g, uint64_t index, uint64_t term, uint64_t chain)
{
    struct key *t = s->g[g].keys;
    uint64_t h = (index * UINT64_C(0x9e3779b97f4a7c15) ^ term) & (KEYTAB - 1);
    for (uint32_t probe = 0; probe < KEYTAB; probe++, h = (h + 1) & (KEYTAB - 1)) {
        if (t[h].index == 0) {
            t[h] = (struct key){index, term, chain};
            return;
        }
        if (t[h].index == index && t[h].term == term) {
            if (t[h].chain != chain)
                fail(s, "group %d: log matching violated at index %llu term %llu", g,
                     (unsigned long long)index, (unsigned long long)term);
            return;
        }
    }
    fail(s, "key table full");
}

static void record_commit(struct sim *s, int g, uint64_t index, uint64_t term, uint64_t chain,
                          const char *what, int node)
{
    struct gstate *gs = &s->g[g];
    if (index == 0)
        return;
    if (gs->c_term[index]) {
        if (gs->c_term[index] != term || gs->c_chain[index] != chain)
            fail(s,
                 "group %d node %d: %s index %llu differs from the committed entry "
                 "(term %llu vs %llu)",
                 g, node + 1, what, (unsigned long long)index, (unsigned long long)term,
                 (unsigned long long)gs->c_term[index]);
        return;
    }
    gs->c_term[index] = term;
    gs->c_chain[index] = chain;
    s->tot->commits++;
}

static void ensure_commit_cap(struct gstate *gs, uint64_t index)
{
    size_t cap = gs->c_cap;
    gs->c_term = grow(gs->c_term, &cap, index + 1, sizeof(uint64_t));
    size_t cap2 = gs->c_cap;
    gs->c_chain = grow(gs->c_chain, &cap2, index + 1, sizeof(uint64_t));
    gs->c_cap = cap;
}

static void store_snapshot(struct store *st, uint64_t index, uint64_t term,
                           const struct replica *rep, const struct raft_conf *conf)
{
    st->snap_index = index;
    st->snap_term = term;
    st->snap_conf = *conf;
    memcpy(st->snap_data, rep, sizeof(*rep));
    st->snap_len = sizeof(*rep);
}

static void store_truncate(struct store *st, uint64_t from)
{
    while (st->n && st->ents[st->n - 1].e.index >= from) {
        free(st->ents[st->n - 1].e.data);
        st->n--;
    }
}

static void enqueue(struct sim *s, int g, const struct raft_msg *m)
{
    if (s->nodes[m->from - 1].side != s->nodes[m->to - 1].side || chance(s, s->loss_ppm)) {
        s->tot->drops_loss++;
        return;
    }
    int copies = chance(s, s->dup_ppm) ? 2 : 1;
    for (int c = 0; c < copies; c++) {
        s->q = grow(s->q, &s->capq, s->nq + 1, sizeof(*s->q));
        struct inflight *f = &s->q[s->nq];
        uint64_t d = 50 + below(s, 3 * UNIT);
        if (chance(s, s->long_delay_ppm))
            d += below(s, 20 * UNIT);
        f->at = s->now + d;
        f->group_ix = (uint64_t)g;
        if (raft_msg_copy(&f->m, m))
            abort();
        s->nq++;
        if (c)
            s->tot->dups++;
    }
}

static void apply_one(struct sim *s, int g, int k, const struct raft_entry *e)
{
    struct member *mb = &s->mem[g][k];
    if (e->index != mb->rep.applied + 1) {
        fail(s, "group %d node %d: applied index %llu after %llu", g, k + 1,
             (unsigned long long)e->index, (unsigned long long)mb->rep.applied);
        return;
    }
    mb->rep.applied = e->index;
    mb->rep.chain = mix(mb->rep.chain, e->term, e->data, e->len);
    mb->rep.count++;
    ensure_commit_cap(&s->g[g], e->index);
    record_commit(s, g, e->index, e->term, mb->rep.chain, "applied", k);
    if (e->index > s->g[g].max_commit)
        s->g[g].max_commit = e->index;
    if (e->type != RAFT_ENTRY_CONF)
        return;
    struct raft_conf c;
    if (raft_conf_decode(e->data, e->len, &c)) {
        fail(s, "group %d node %d: committed CONF entry %llu does not decode", g, k + 1,
             (unsigned long long)e->index);
        return;
    }
    mb->applied_conf = c;
    struct gstate *gs = &s->g[g];
    if (e->index <= gs->last_conf_index)
        return;
    /* The committed sequence: C_old -> C_old∧C_new -> C_new, never a jump
     * between configurations whose quorums could be disjoint. */
    const struct raft_conf *p = &gs->last_conf;
    int linked = p->voters_out ? !c.voters_out && c.voters == p->voters : c.voters_out == p->voters;
    if (!linked)
        fail(s,
             "group %d: committed configuration %#x/%#x at %llu follows %#x/%#x: not joint-linked",
             g, c.voters, c.voters_out, (unsigned long long)e->index, p->voters, p->voters_out);
    gs->last_conf = c;
    gs->last_conf_index = e->index;
    gs->ever |= c.voters | c.voters_out;
    s->tot->conf_committed++;
}

static void drain(struct sim *s, int g, int k)
{
    struct member *mb = &s->mem[g][k];
    struct raft_ready rd;
    for (int round = 0; round < 64 && raft_ready_get(mb->r, &rd); round++) {
        struct store *st = &mb->st;
        if (rd.snapshot) {
            struct replica rep;
            if (rd.snapshot->len != sizeof(rep)) {
                fail(s, "snapshot payload of %u bytes", rd.snapshot->len);
                return;
            }
            memcpy(&rep, rd.snapshot->data, sizeof(rep));
            if (rep.applied != rd.snapshot->index)
                fail(s, "snapshot index %llu but payload at %llu",
                     (unsigned long long)rd.snapshot->index, (unsigned long long)rep.applied);
            ensure_commit_cap(&s->g[g], rep.applied);
            record_commit(s, g, rep.applied, rd.snapshot->term, rep.chain, "snapshot", k);
            store_truncate(st, 0);
            store_snapshot(st, rd.snapshot->index, rd.snapshot->term, &rep, &rd.snapshot->conf);
            mb->rep = rep;
            mb->applied_conf = rd.snapshot->conf;
            s->tot->snapshots_installed++;
        }
        if (rd.n_entries) {
            store_truncate(st, rd.entries[0].index);
            uint64_t prev_index = st->n ? st->ents[st->n - 1].e.index : st->snap_index;
            uint64_t chain =
                st->n ? st->ents[st->n - 1].chain : ((struct replica *)st->snap_data)->chain;
            if (!st->n && st->snap_len == 0)
                chain = 0;
            if (rd.entries[0].index != prev_index + 1)
                fail(s, "group %d node %d: persist gap: %llu after %llu", g, k + 1,
                     (unsigned long long)rd.entries[0].index, (unsigned long long)prev_index);
            for (size_t i = 0; i < rd.n_entries; i++) {
                const struct raft_entry *e = &rd.entries[i];
                st->ents = grow(st->ents, &st->cap, st->n + 1, sizeof(*st->ents));
                struct sent *se = &st->ents[st->n++];
                se->e = *e;
                se->e.data = NULL;
                if (e->len) {
                    se->e.data = malloc(e->len);
                    memcpy(se->e.data, e->data, e->len);
                }
                chain = mix(chain, e->term, e->data, e->len);
                se->chain = chain;
                check_key(s, g, e->index, e->term, chain);
            }
        }
        if (rd.has_hard_state) {
            if (rd.hs.term < st->hs.term ||
                (rd.hs.term == st->hs.term && st->hs.vote && rd.hs.vote != st->hs.vote))
                fail(s, "group %d node %d: hard state went back or vote changed in term %llu", g,
                     k + 1, (unsigned long long)rd.hs.term);
            st->hs = rd.hs;
        }
        for (size_t i = 0; i < rd.n_msgs; i++)
            enqueue(s, g, &rd.msgs[i]);
        for (size_t i = 0; i < rd.n_committed; i++)
            apply_one(s, g, k, &rd.committed[i]);
        raft_ready_advance(mb->r);
    }
    struct gstate *gs = &s->g[g];
    if (raft_role(mb->r) == RAFT_LEADER && raft_commit(mb->r) > gs->lead_hi) {
        gs->cm_term = grow(gs->cm_term, &gs->cm_cap, raft_commit(mb->r) + 1, sizeof(uint64_t));
        for (uint64_t i = gs->lead_hi + 1; i <= raft_commit(mb->r); i++)
            gs->cm_term[i] = raft_term(mb->r);
        gs->lead_hi = raft_commit(mb->r);
    }
    if (raft_commit(mb->r) > s->g[g].max_commit) {
        /* Committed at the leader but not yet applied: count it as committed
         * anywhere already, which only makes the lease check stricter. */
        s->g[g].max_commit = raft_commit(mb->r);
    }
}

static void start_member(struct sim *s, int g, int k)
{
    struct member *mb = &s->mem[g][k];
    struct store *st = &mb->st;
    struct raft_entry *ents = calloc(st->n + 1, sizeof(*ents));
    for (size_t i = 0; i < st->n; i++)
        ents[i] = st->ents[i].e;
    struct raft_config cfg = {
        .group = 100 + (uint64_t)g,
        .id = (uint32_t)k + 1,
        .n_members = (uint32_t)s->nv,
        .election_ticks = E_TICKS,
        .heartbeat_ticks = H_TICKS,
        .drift_ppm = DRIFT_PPM,
        .seed = s->seed * 131 + (uint64_t)g * 17 + s->now,
        .quiesce_ticks = s->quiesce,
        .hs = st->hs,
        .snapshot = {st->snap_index, st->snap_term, st->snap_len,
                     st->snap_len ? st->snap_data : NULL, st->snap_conf},
        .entries = ents,
        .n_entries = st->n,
        .applied = st->snap_index,
        .conf = mb->init,
    };
    struct nerr e;
    mb->r = raft_new(&cfg, &e);
    free(ents);
    if (!mb->r) {
        fail(s, "raft_new on restart: %s", e.msg);
        return;
    }
    memset(&mb->rep, 0, sizeof(mb->rep));
    if (st->snap_len)
        memcpy(&mb->rep, st->snap_data, sizeof(mb->rep));
    mb->applied_conf = st->snap_index ? st->snap_conf : mb->init;
    mb->exists = 1;
    mb->checked_term = 0;
    /* The host tells a new member which peers it holds down. */
    for (int p = 0; p < s->n; p++)
        if (p != k && s->nodes[k].pv[p].reported)
            raft_peer_down(mb->r, (uint32_t)p + 1);
    drain(s, g, k);
}

static void fold_stats(struct sim *s, struct raft *r)
{
    struct raft_stats st;
    raft_get_stats(r, &st);
    s->tot->quiesces += st.quiesces;
    s->tot->wakes += st.wakes;
    s->tot->wakes_peer_down += st.wakes_peer_down;
    s->tot->conf_stepdowns += st.conf_stepdowns;
}

/* Node-level liveness of node k's host (see the top): a peer is reachable
 * when up, on the same side and not stalled (a stalled host sends no node
 * heartbeat). */
static void liveness(struct sim *s, int k, int resumed)
{
    struct node *nd = &s->nodes[k];
    for (int p = 0; p < s->n; p++) {
        if (p == k)
            continue;
        struct peerview *v = &nd->pv[p];
        struct node *pn = &s->nodes[p];
        int reach = pn->up && pn->side == nd->side && !pn->stall_left;
        if (reach) {
            int restarted = v->inc_seen != pn->inc, was_down = v->reported;
            v->last_ok = s->now;
            v->inc_seen = pn->inc;
            v->reported = 0;
            if (!restarted && !was_down)
                continue;
            for (int g = 0; g < s->ng && !s->failed; g++) {
                if (!s->mem[g][k].r)
                    continue;
                if (restarted && !was_down)
                    raft_peer_down(s->mem[g][k].r, (uint32_t)p + 1);
                raft_peer_up(s->mem[g][k].r, (uint32_t)p + 1);
                drain(s, g, k);
            }
            continue;
        }
        /* Its own stall is no news about the peer: count from the resume. */
        if (resumed)
            v->last_ok = s->now > v->last_ok + UNIT ? s->now - UNIT : v->last_ok;
        if (v->reported || s->now - v->last_ok < (uint64_t)E_TICKS * UNIT)
            continue;
        v->reported = 1;
        s->tot->peer_downs++;
        for (int g = 0; g < s->ng && !s->failed; g++) {
            if (!s->mem[g][k].r)
                continue;
            raft_peer_down(s->mem[g][k].r, (uint32_t)p + 1);
            drain(s, g, k);
        }
    }
}

static void crash(struct sim *s, int k)
{
    for (int g = 0; g < s->ng; g++) {
        if (!s->mem[g][k].r)
            continue;
        fold_stats(s, s->mem[g][k].r);
        raft_free(s->mem[g][k].r);
        s->mem[g][k].r = NULL;
    }
    s->nodes[k].up = 0;
    s->nodes[k].stall_left = s->nodes[k].owed = 0;
    s->nodes[k].down_until = s->now + (5 + below(s, 50)) * UNIT;
    s->tot->crashes++;
}

static void restart(struct sim *s, int k)
{
    s->nodes[k].up = 1;
    s->nodes[k].inc++;
    /* A new host: it has heard nothing yet and counts from now. */
    for (int p = 0; p < s->n; p++)
        s->nodes[k].pv[p] =
            (struct peerview){.last_ok = s->now, .inc_seen = s->nodes[p].inc, .reported = 0};
    s->nodes[k].next_tick = s->now + below(s, s->nodes[k].period);
    for (int g = 0; g < s->ng; g++)
        if (s->mem[g][k].exists)
            start_member(s, g, k);
}

/* Membership seeds: leader k of group g replaces one voter (maybe itself)
 * by a member on a spare node, of storage or log kind. Ids are never
 * reused (a removed id's late acknowledgements must not count for a fresh
 * log: raft.h). The new member is created, empty, with the joint
 * configuration it joins, on its node if that node is up. */
static void maybe_change(struct sim *s, int g, int k)
{
    struct member *mb = &s->mem[g][k];
    struct gstate *gs = &s->g[g];
    struct raft_conf cur;
    raft_get_conf(mb->r, &cur);
    if (cur.voters_out || raft_conf_index(mb->r) > raft_commit(mb->r))
        return;
    uint32_t spare = 0;
    for (int p = 0; p < s->n; p++)
        if (!(gs->used & (1u << (p + 1))) && s->nodes[p].up)
            spare |= 1u << (p + 1);
    if (!spare)
        return;
    uint32_t add = 0, out = 0;
    for (uint32_t pick = (uint32_t)below(s, (uint64_t)__builtin_popcount(spare)); !add;)
        for (uint32_t id = 1; id <= MAXN && !add; id++)
            if ((spare & (1u << id)) && pick-- == 0)
                add = id;
    for (uint32_t pick = (uint32_t)below(s, (uint64_t)__builtin_popcount(cur.voters)); !out;)
        for (uint32_t id = 1; id <= MAXN && !out; id++)
            if ((cur.voters & (1u << id)) && pick-- == 0)
                out = id;
    struct raft_conf t = {(cur.voters & ~(1u << out)) | (1u << add), 0, cur.log & ~(1u << out)};
    if (chance(s, 300000))
        t.log |= 1u << add;
    if (raft_conf_check(&t, 1, NULL))
        return; /* no storage voter left: not this one */
    uint64_t idx;
    int rc = raft_propose_conf(mb->r, &t, &idx);
    if (rc == NERR_BUSY)
        return;
    if (rc) {
        fail(s, "group %d: raft_propose_conf: %s", g, nerr_name(rc));
        return;
    }
    s->tot->conf_proposed++;
    s->tot->conf_log_added += (t.log >> add) & 1;
    s->tot->conf_leader_removed += out == (uint32_t)k + 1;
    gs->used |= 1u << add;
    gs->log_ids |= t.log;
    struct member *nm = &s->mem[g][add - 1];
    raft_get_conf(mb->r, &nm->init); /* the joint configuration it joins */
    nm->joined_at = idx;
    nm->joined_term = raft_term(mb->r);
    drain(s, g, k);
    start_member(s, g, (int)add - 1);
}

/* The members of the group's latest committed configuration. */
static uint32_t group_members(struct sim *s, int g)
{
    return s->g[g].last_conf.voters | s->g[g].last_conf.voters_out;
}

/* The host's replica GC (as CockroachDB's): a member removed by a
 * committed configuration, or added by a joint entry that did not commit
 * (another entry is committed at its index), is shut down and its node
 * stops hosting the group. It may never learn of it itself, and would
 * campaign on (waking a sleeping group) for nothing. */
static int gc_due(struct sim *s, int g, int k)
{
    struct gstate *gs = &s->g[g];
    struct member *mb = &s->mem[g][k];
    uint32_t b = 1u << (k + 1);
    if (group_members(s, g) & b)
        return 0;
    if (gs->ever & b)
        return 1;
    return mb->joined_at && mb->joined_at < gs->c_cap && gs->c_term[mb->joined_at] &&
           gs->c_term[mb->joined_at] != mb->joined_term;
}

static void check(struct sim *s)
{
    for (int g = 0; g < s->ng && !s->failed; g++) {
        struct gstate *gs = &s->g[g];
        for (int k = 0; k < s->n; k++) {
            struct member *mb = &s->mem[g][k];
            if (!mb->r)
                continue;
            if (mb->rep.applied < raft_commit(mb->r))
                fail(s, "group %d node %d: drained but applied %llu < commit %llu", g, k + 1,
                     (unsigned long long)mb->rep.applied, (unsigned long long)raft_commit(mb->r));
            if (raft_role(mb->r) != RAFT_LEADER)
                continue;
            if (gs->log_ids & (1u << (k + 1)))
                fail(s, "group %d: log member %d leads", g, k + 1);
            uint64_t t = raft_term(mb->r);
            gs->leader_of = grow(gs->leader_of, &gs->leader_cap, t + 1, sizeof(uint32_t));
            if (gs->leader_of[t] && gs->leader_of[t] != (uint32_t)k + 1)
                fail(s, "group %d: two leaders in term %llu: %u and %d", g, (unsigned long long)t,
                     gs->leader_of[t], k + 1);
            if (!gs->leader_of[t])
                s->tot->elections++;
            gs->leader_of[t] = (uint32_t)k + 1;
            if (mb->checked_term != t) {
                /* Leader completeness: every entry committed in an earlier
                 * term is in its log (an index whose committing term is
                 * unknown is checked too). */
                mb->checked_term = t;
                for (uint64_t i = raft_first_index(mb->r); i <= gs->max_commit; i++) {
                    if (i >= gs->c_cap || gs->c_term[i] == 0)
                        continue;
                    if (i <= gs->lead_hi && gs->cm_term[i] >= t)
                        continue;
                    const struct raft_entry *e = raft_entry_at(mb->r, i);
                    if (!e || e->term != gs->c_term[i]) {
                        fail(s, "group %d: leader %d of term %llu lacks committed index %llu", g,
                             k + 1, (unsigned long long)t, (unsigned long long)i);
                        break;
                    }
                }
            }
            /* A stalled host serves no lease read: its clock is behind
             * (ninesd trusts a published lease for one tick period only). */
            int behind = s->nodes[k].stall_left || s->nodes[k].owed;
            if (!behind && raft_lease_valid(mb->r)) {
                s->tot->lease_reads++;
                if (raft_commit(mb->r) < gs->max_commit)
                    fail(s,
                         "group %d: node %d serves a lease read at commit %llu but %llu is "
                         "committed",
                         g, k + 1, (unsigned long long)raft_commit(mb->r),
                         (unsigned long long)gs->max_commit);
            }
        }
    }
}

static void chaos(struct sim *s)
{
    if (s->calm)
        return;
    /* Crash a node (rarely, so groups make progress in between). */
    if (chance(s, 3000)) {
        int k = (int)below(s, (uint64_t)s->n);
        if (s->nodes[k].up)
            crash(s, k);
    }
    if (!s->partitioned && chance(s, 3000)) {
        for (int k = 0; k < s->n; k++)
            s->nodes[k].side = (int)below(s, 2);
        s->partitioned = 1;
        s->heal_at = s->now + (10 + below(s, 60)) * UNIT;
        s->tot->partitions++;
    }
}

static void heal(struct sim *s)
{
    for (int k = 0; k < s->n; k++)
        s->nodes[k].side = 0;
    s->partitioned = 0;
}

static void node_tick(struct sim *s, int k)
{
    struct node *nd = &s->nodes[k];
    if (nd->stall_left) {
        nd->stall_left--;
        nd->owed++;
        nd->next_tick += nd->period;
        return;
    }
    uint64_t adv = nd->owed + 1;
    nd->owed = 0;
    if (!s->calm && chance(s, 5000)) {
        nd->stall_left = 1 + below(s, 4 * E_TICKS);
        s->tot->stalls++;
    }
    if (s->quiesce)
        liveness(s, k, adv > 1);
    /* Proposals come in bursts: 80 busy ticks, 80 idle (quiescence seeds). */
    int busy = !s->idle && (!s->quiesce || (s->now / (80 * UNIT)) % 2 == 0);
    for (int g = 0; g < s->ng && !s->failed; g++) {
        struct member *mb = &s->mem[g][k];
        if (mb->r && s->members && gc_due(s, g, k)) {
            fold_stats(s, mb->r);
            raft_free(mb->r);
            mb->r = NULL;
            mb->exists = 0;
            s->tot->conf_gc++;
        }
        if (!mb->r)
            continue; /* not a member of this group (yet, or any more) */
        int was_quiet = raft_quiescent(mb->r);
        if (was_quiet)
            s->tot->quiet_ticks++;
        if (adv == 1)
            raft_tick(mb->r);
        else
            raft_elapse(mb->r, adv);
        struct raft_ready rd;
        if (was_quiet && raft_ready_get(mb->r, &rd) && rd.n_msgs)
            fail(s, "group %d node %d: a sleeping member sent %zu message(s) on a tick", g, k + 1,
                 rd.n_msgs);
        drain(s, g, k);
        if (busy && chance(s, 150000)) {
            uint64_t v = s->next_value++;
            uint64_t idx;
            int rc = raft_propose(mb->r, &v, sizeof(v), &idx);
            if (rc == 0)
                s->tot->proposals++;
            else if (rc != NERR_BUSY)
                fail(s, "propose: %s", nerr_name(rc));
            drain(s, g, k);
        }
        if (s->members && busy && raft_role(mb->r) == RAFT_LEADER && chance(s, 10000))
            maybe_change(s, g, k);
        /* Host-driven compaction: snapshot the replica every so often. */
        uint64_t first = raft_first_index(mb->r);
        if (mb->rep.applied >= first + 16 && chance(s, 100000)) {
            const struct raft_entry *e = raft_entry_at(mb->r, mb->rep.applied);
            if (raft_compact(mb->r, mb->rep.applied, &mb->rep, sizeof(mb->rep)))
                fail(s, "raft_compact refused a valid request");
            store_snapshot(&mb->st, mb->rep.applied, e ? e->term : 0, &mb->rep, &mb->applied_conf);
            size_t keep = 0;
            for (size_t i = 0; i < mb->st.n; i++) {
                if (mb->st.ents[i].e.index <= mb->rep.applied)
                    free(mb->st.ents[i].e.data);
                else
                    mb->st.ents[keep++] = mb->st.ents[i];
            }
            mb->st.n = keep;
        }
    }
    s->nodes[k].next_tick += s->nodes[k].period;
}

static void deliver(struct sim *s, size_t qi)
{
    struct inflight f = s->q[qi];
    s->q[qi] = s->q[--s->nq];
    int k = (int)f.m.to - 1, g = (int)f.group_ix;
    if (s->nodes[k].up && s->mem[g][k].r && s->nodes[f.m.from - 1].side == s->nodes[k].side) {
        if (s->trace_group == g + 1)
            diag("t=%.2f g%d %s %u->%u term %llu idx %llu lt %llu commit %llu hint %llu rej %u "
                 "n %u quiet %d",
                 (double)s->now / UNIT, g, raft_msg_type_name(f.m.type), f.m.from, f.m.to,
                 (unsigned long long)f.m.term, (unsigned long long)f.m.index,
                 (unsigned long long)f.m.log_term, (unsigned long long)f.m.commit,
                 (unsigned long long)f.m.hint, f.m.reject, f.m.n_entries,
                 raft_quiescent(s->mem[g][k].r));
        int rc = raft_step(s->mem[g][k].r, &f.m);
        if (rc && rc != NERR_INVALID)
            fail(s, "raft_step: %s", nerr_name(rc));
        struct raft_conf c;
        raft_get_conf(s->mem[g][k].r, &c);
        if (rc == NERR_INVALID && ((c.voters | c.voters_out) & (1u << f.m.from)))
            fail(s, "a genuine %s message was dropped as malformed", raft_msg_type_name(f.m.type));
        drain(s, g, k);
    }
    raft_msg_release(&f.m);
}

/* One event: the earliest of node ticks, restarts, heal and deliveries. */
static void step_sim(struct sim *s)
{
    uint64_t best = UINT64_MAX;
    int kind = -1, who = -1;
    for (int k = 0; k < s->n; k++) {
        uint64_t t = s->nodes[k].up ? s->nodes[k].next_tick : s->nodes[k].down_until;
        if (t < best) {
            best = t;
            kind = s->nodes[k].up ? 0 : 1;
            who = k;
        }
    }
    for (size_t i = 0; i < s->nq; i++)
        if (s->q[i].at < best) {
            best = s->q[i].at;
            kind = 2;
            who = (int)i;
        }
    if (s->partitioned && s->heal_at < best) {
        best = s->heal_at;
        kind = 3;
    }
    s->now = best;
    s->tot->events++;
    switch (kind) {
    case 0:
        node_tick(s, who);
        chaos(s);
        break;
    case 1:
        restart(s, who);
        break;
    case 2:
        deliver(s, (size_t)who);
        break;
    case 3:
        heal(s);
        break;
    }
    check(s);
}

static void sim_free(struct sim *s)
{
    for (int g = 0; g < MAXG; g++) {
        for (int k = 0; k < MAXN; k++) {
            struct member *mb = &s->mem[g][k];
            if (mb->r)
                fold_stats(s, mb->r);
            raft_free(mb->r);
            store_truncate(&mb->st, 0);
            free(mb->st.ents);
        }
        free(s->g[g].leader_of);
        free(s->g[g].c_term);
        free(s->g[g].c_chain);
        free(s->g[g].cm_term);
        free(s->g[g].keys);
    }
    for (size_t i = 0; i < s->nq; i++)
        raft_msg_release(&s->q[i].m);
    free(s->q);
}

static int group_asleep(struct sim *s, int g)
{
    for (int k = 0; k < s->n; k++)
        if ((group_members(s, g) & (1u << (k + 1))) &&
            (!s->mem[g][k].r || !raft_quiescent(s->mem[g][k].r)))
            return 0;
    return 1;
}

/* Quiescence seeds, healed and calm: with no proposal every group falls
 * asleep within LIVE_TICKS ticks; then a proposal at each leader
 * wakes its group and commits on every member. */
static void quiet_end(struct sim *s)
{
    s->idle = 1;
    uint64_t until = s->now + (uint64_t)LIVE_TICKS * UNIT;
    int asleep = 0;
    for (uint32_t i = 0; i < 400000 && !s->failed && s->now < until && asleep < s->ng; i++) {
        step_sim(s);
        asleep = 0;
        for (int g = 0; g < s->ng; g++)
            asleep += group_asleep(s, g);
    }
    if (s->failed)
        return;
    if (asleep < s->ng) {
        if (getenv("NINES_SIM_DEBUG"))
            for (int g = 0; g < s->ng; g++)
                for (int k = 0; k < s->n; k++) {
                    struct raft *r = s->mem[g][k].r;
                    if (!r)
                        continue;
                    struct raft_conf c;
                    raft_get_conf(r, &c);
                    struct raft_stats st;
                    raft_get_stats(r, &st);
                    diag("g%d n%d role %d term %llu leader %u last %llu commit %llu quiet %d conf "
                         "%#x/%#x/%#x at %llu sleeps %llu wakes %llu",
                         g, k + 1, raft_role(r), (unsigned long long)raft_term(r), raft_leader(r),
                         (unsigned long long)raft_last_index(r), (unsigned long long)raft_commit(r),
                         raft_quiescent(r), c.voters, c.voters_out, c.log,
                         (unsigned long long)raft_conf_index(r), (unsigned long long)st.quiesces,
                         (unsigned long long)st.wakes);
                }
        if (getenv("NINES_SIM_DEBUG"))
            for (int k = 0; k < s->n; k++)
                for (int p = 0; p < s->n; p++)
                    if (s->nodes[k].pv[p].reported)
                        diag("node %d reports node %d down", k + 1, p + 1);
        fail(s, "quiescence: only %d of %d idle groups fell asleep", asleep, s->ng);
        return;
    }
    s->tot->quiet_seeds++;
    uint64_t want[MAXG] = {0};
    for (int g = 0; g < s->ng; g++)
        for (int k = 0; k < s->n; k++) {
            struct member *mb = &s->mem[g][k];
            if (!mb->r || raft_role(mb->r) != RAFT_LEADER)
                continue;
            uint64_t v = s->next_value++;
            if (raft_propose(mb->r, &v, sizeof(v), &want[g]))
                fail(s, "quiescence: the sleeping leader refused a proposal");
            drain(s, g, k);
        }
    until = s->now + (uint64_t)LIVE_TICKS * UNIT;
    int done = 0;
    for (uint32_t i = 0; i < 400000 && !s->failed && s->now < until && done < s->ng; i++) {
        step_sim(s);
        done = 0;
        for (int g = 0; g < s->ng; g++) {
            int all = want[g] > 0;
            for (int k = 0; k < s->n; k++)
                if ((group_members(s, g) & (1u << (k + 1))) && s->mem[g][k].rep.applied < want[g])
                    all = 0;
            done += all;
        }
    }
    if (!s->failed && done < s->ng)
        fail(s, "quiescence: only %d of %d woken groups applied a proposal on every member", done,
             s->ng);
}

/* Runs one seed; returns 0 when every check held. */
static int run_seed(uint64_t seed, struct totals *tot, char *why, size_t whylen)
{
    struct sim *s = calloc(1, sizeof(*s));
    s->seed = seed;
    rng_seed(&s->rng, seed * UINT64_C(0x2545f4914f6cdd1d) + 1);
    if (getenv("NINES_SIM_TRACE"))
        s->trace_group = atoi(getenv("NINES_SIM_TRACE")) + 1;
    s->tot = tot;
    s->n = chance(s, 200000) ? 5 : 3;
    s->ng = 1 + (int)below(s, MAXG);
    s->loss_ppm = (uint32_t)below(s, 200000);
    s->dup_ppm = (uint32_t)below(s, 50000);
    s->long_delay_ppm = (uint32_t)below(s, 50000);
    s->next_value = seed << 24;
    s->quiesce = seed % 2 ? 0 : 2 * E_TICKS;
    /* Membership seeds: every third; spare nodes up to 6 (3 members) or 7
     * (5 members). The others run exactly as before membership existed. */
    s->nv = s->n;
    s->members = seed % 3 == 0;
    if (s->members) {
        s->n = s->nv == 3 ? 6 : 7;
        tot->conf_seeds++;
    }
    uint32_t initial = ((1u << s->nv) - 1) << 1;
    for (int k = 0; k < s->n; k++) {
        /* Each clock runs at nominal rate × (1 + v), |v| <= ρ (DRIFT_PPM). */
        double v = ((double)below(s, 2 * DRIFT_PPM + 1) - DRIFT_PPM) / 1e6;
        s->nodes[k].period = (uint64_t)(UNIT / (1 + v));
        s->nodes[k].up = 1;
        s->nodes[k].next_tick = below(s, UNIT);
    }
    for (int g = 0; g < s->ng; g++) {
        s->g[g].keys = calloc(KEYTAB, sizeof(struct key));
        s->g[g].last_conf = (struct raft_conf){initial, 0, 0};
        s->g[g].used = s->g[g].ever = initial;
        for (int k = 0; k < s->nv; k++) {
            /* Membership seeds give the configuration; the others use
             * n_members (what ninesd does). */
            if (s->members)
                s->mem[g][k].init = s->g[g].last_conf;
            start_member(s, g, k);
        }
    }
    uint64_t end = (uint64_t)RUN_TICKS * UNIT;
    for (uint32_t i = 0; i < 400000 && !s->failed && s->now < end; i++)
        step_sim(s);

    /* Liveness: heal everything, then each group must elect a leader and
     * commit a fresh proposal. */
    s->calm = 1;
    heal(s);
    s->loss_ppm = s->dup_ppm = s->long_delay_ppm = 0;
    for (int k = 0; k < s->n; k++)
        if (!s->nodes[k].up)
            s->nodes[k].down_until = s->now;
    uint64_t live_end = s->now + (uint64_t)LIVE_TICKS * UNIT;
    uint64_t want[MAXG] = {0};
    int done = 0;
    for (uint32_t i = 0; i < 400000 && !s->failed && s->now < live_end && done < s->ng; i++) {
        step_sim(s);
        done = 0;
        for (int g = 0; g < s->ng; g++) {
            for (int k = 0; k < s->n; k++) {
                struct member *mb = &s->mem[g][k];
                if (!mb->r || raft_role(mb->r) != RAFT_LEADER)
                    continue;
                struct raft_conf c;
                raft_get_conf(mb->r, &c);
                if (want[g] && raft_commit(mb->r) >= want[g] && mb->rep.applied >= want[g] &&
                    !c.voters_out && raft_conf_index(mb->r) <= raft_commit(mb->r))
                    done++; /* and any membership change finished */
                else if (!want[g] || raft_entry_at(mb->r, want[g]) == NULL ||
                         raft_entry_at(mb->r, want[g])->term != raft_term(mb->r)) {
                    uint64_t v = s->next_value++, idx;
                    if (raft_propose(mb->r, &v, sizeof(v), &idx) == 0) {
                        want[g] = idx;
                        drain(s, g, k);
                    }
                }
                break;
            }
        }
    }
    if (!s->failed && done < s->ng && getenv("NINES_SIM_DEBUG"))
        for (int g = 0; g < s->ng; g++)
            for (int k = 0; k < s->n; k++) {
                struct raft *r = s->mem[g][k].r;
                if (!r)
                    continue;
                struct raft_conf c;
                raft_get_conf(r, &c);
                struct raft_stats st;
                raft_get_stats(r, &st);
                diag("g%d n%d role %d term %llu leader %u last %llu commit %llu conf %#x/%#x/%#x "
                     "at %llu dropped %llu prevotes %llu",
                     g, k + 1, raft_role(r), (unsigned long long)raft_term(r), raft_leader(r),
                     (unsigned long long)raft_last_index(r), (unsigned long long)raft_commit(r),
                     c.voters, c.voters_out, c.log, (unsigned long long)raft_conf_index(r),
                     (unsigned long long)st.dropped, (unsigned long long)st.prevotes_started);
            }
    if (!s->failed && done < s->ng)
        fail(s,
             "liveness: only %d of %d groups committed a proposal (and finished their "
             "membership change) within %d healed ticks",
             done, s->ng, LIVE_TICKS);
    if (s->quiesce && !s->failed)
        quiet_end(s);
    int rc = s->failed;
    if (rc)
        snprintf(why, whylen, "%s (at t=%.2f ticks, %d nodes, %d groups)", s->why,
                 (double)s->now / UNIT, s->n, s->ng);
    sim_free(s);
    free(s);
    return rc;
}

int main(void)
{
    struct totals tot = {0};
    char why[700];
    const char *one = getenv("NINES_SEED");
    if (one) {
        uint64_t seed = strtoull(one, NULL, 0);
        int rc = run_seed(seed, &tot, why, sizeof(why));
        ok(rc == 0, "seed %llu holds every invariant%s%s", (unsigned long long)seed, rc ? ": " : "",
           rc ? why : "");
        note("events %llu commits %llu elections %llu lease-reads %llu",
             (unsigned long long)tot.events, (unsigned long long)tot.commits,
             (unsigned long long)tot.elections, (unsigned long long)tot.lease_reads);
        return done_testing();
    }
    const char *cnt = getenv("NINES_SEEDS");
    uint64_t nseeds = cnt ? strtoull(cnt, NULL, 0) : 10000;
    uint64_t t0 = clock_mono_ns();
    uint64_t failed = 0;
    for (uint64_t seed = 1; seed <= nseeds; seed++) {
        if (run_seed(seed, &tot, why, sizeof(why))) {
            failed++;
            diag("seed %llu: %s", (unsigned long long)seed, why);
            diag("replay: NINES_SEED=%llu build/t/test_raft_sim", (unsigned long long)seed);
            if (failed >= 5)
                break;
        }
        tot.seeds++;
    }
    double secs = (double)(clock_mono_ns() - t0) / 1e9;
    ok(failed == 0, "%llu seeds: every invariant held after every event",
       (unsigned long long)nseeds);
    note("%.1f s; events %llu, commits %llu, elections %llu, crashes %llu, partitions %llu, "
         "stalls %llu, snapshots installed %llu, lease reads %llu, proposals %llu, lost %llu, "
         "dup %llu",
         secs, (unsigned long long)tot.events, (unsigned long long)tot.commits,
         (unsigned long long)tot.elections, (unsigned long long)tot.crashes,
         (unsigned long long)tot.partitions, (unsigned long long)tot.stalls,
         (unsigned long long)tot.snapshots_installed, (unsigned long long)tot.lease_reads,
         (unsigned long long)tot.proposals, (unsigned long long)tot.drops_loss,
         (unsigned long long)tot.dups);
    note("quiescence: %llu sleeps, %llu wake-ups (%llu on a peer-down report), %llu peer-down "
         "reports, %llu sleeping member-ticks, %llu seeds ended asleep",
         (unsigned long long)tot.quiesces, (unsigned long long)tot.wakes,
         (unsigned long long)tot.wakes_peer_down, (unsigned long long)tot.peer_downs,
         (unsigned long long)tot.quiet_ticks, (unsigned long long)tot.quiet_seeds);
    note("membership: %llu seeds, %llu changes proposed (%llu of the leader itself, %llu adding a "
         "log member), %llu configurations committed, %llu removed leaders stepped down, %llu "
         "members shut down by their host after removal",
         (unsigned long long)tot.conf_seeds, (unsigned long long)tot.conf_proposed,
         (unsigned long long)tot.conf_leader_removed, (unsigned long long)tot.conf_log_added,
         (unsigned long long)tot.conf_committed, (unsigned long long)tot.conf_stepdowns,
         (unsigned long long)tot.conf_gc);
    /* The run must actually have exercised what it claims to check. */
    cmp_ok(tot.crashes, ">", 0, "crashes and restarts happened");
    cmp_ok(tot.partitions, ">", 0, "partitions happened");
    cmp_ok(tot.stalls, ">", 0, "hosts stalled and advanced their clocks at once");
    cmp_ok(tot.snapshots_installed, ">", 0, "followers caught up by snapshot");
    cmp_ok(tot.lease_reads, ">", 0, "lease reads were checked");
    cmp_ok(tot.elections, ">", tot.seeds, "leaders changed within seeds");
    cmp_ok(tot.commits, ">", tot.seeds * 10, "entries committed");
    if (nseeds >= 100) {
        cmp_ok(tot.quiesces, ">", tot.seeds, "groups fell asleep");
        cmp_ok(tot.wakes_peer_down, ">", 0, "sleeping followers woke on a peer-down report");
        cmp_ok(tot.quiet_seeds, ">=", tot.seeds / 2, "every quiescence seed ended asleep");
        cmp_ok(tot.conf_committed, ">", tot.conf_seeds, "membership changes committed");
        cmp_ok(tot.conf_stepdowns, ">", 0, "removed leaders stepped down");
        cmp_ok(tot.conf_log_added, ">", 0, "log members were added");
    }
    return done_testing();
}
