/*
 * raft_internal.h — what the files of the consensus core share: struct
 * raft, the small accessors both files use (inline), and the functions one
 * file calls in another (prefix raft__). Included only by raft.c and
 * raft_conf.c; everything else uses raft.h, whose contract covers both.
 *
 *   raft.c       the protocol: roles and elections (pre-vote, check-quorum,
 *                the gray-failure probe, hand-over), the log and its
 *                replication, the ready, compaction, leases, quiescence,
 *                raft_new and the invariant checks
 *   raft_conf.c  membership (raft.h, "Membership change"): configurations
 *                (check, encoding), the configuration at an index, adopting
 *                one, quorums over the configuration in effect (both halves
 *                when joint), the leader's side of a change (auto-leave,
 *                step-down, farewell to removed members) and the public
 *                membership calls (raft_propose_conf, raft_get_conf,
 *                raft_conf_index, raft_conf_at)
 *   raft_msg.c   message values (names, deep copies, release); it needs
 *                nothing from here
 *
 * All of it runs on the caller's thread under raft.h's rule: one struct
 * raft is never used by two calls at once.
 */
#ifndef NINES_RAFT_INTERNAL_H
#define NINES_RAFT_INTERNAL_H

#include <stdint.h>

#include "lib/rng.h"
#include "store/raft.h"

struct raft {
    uint64_t group;
    uint32_t id;
    /* Membership (raft.h, "Membership change"): the configuration in effect
     * is the latest CONF entry in the log, else the snapshot's (snap.conf,
     * always set), made by the entry at conf_index (snap.index for the
     * snapshot's). base is the initial one; known every id of every
     * configuration this member has had (messages from others are dropped). */
    struct raft_conf conf, base;
    uint64_t conf_index;
    uint32_t known;
    struct raft_conf prev; /* the configuration before conf */
    int open;              /* membership may change (cfg.conf given, or a CONF entry or
                              snapshot configuration seen): requests from unknown ids */
    uint32_t E, H, lease_ticks;
    struct rng rng; /* election timeouts, from cfg->seed: a run replays */

    /* Persistent state (mirrors what the host persisted once advanced). */
    uint64_t term;
    uint32_t vote;
    uint64_t commit;
    struct raft_hard_state prev_hs;

    /* Log: log[0] has index snap.index + 1. */
    struct raft_snapshot snap;
    struct raft_entry *log;
    size_t log_len, log_cap;
    uint64_t stable;        /* last index the host persisted */
    uint64_t unstable_from; /* first index the host has not persisted */
    int snap_pending;       /* snap arrived from the leader, to install */
    uint64_t applied;

    enum raft_role role;
    uint32_t leader;
    uint64_t now;          /* ticks since creation */
    uint64_t last_contact; /* tick we last heard from (or were) a leader */
    uint32_t elapsed, timeout;
    int probing;
    uint32_t probe_elapsed, probe_nacks;
    uint32_t granted, refused; /* bitmasks by member id */

    /* Leader state, indexed by member id. */
    uint64_t next[RAFT_MAX_MEMBERS + 1], match[RAFT_MAX_MEMBERS + 1];
    /* Pipelining: entries up to sent[p] went out and are presumed in flight;
     * the next append starts after them. A reject, or a heartbeat round with
     * no progress for E/2 ticks (a lost message), sends again from next[p]. */
    uint64_t sent[RAFT_MAX_MEMBERS + 1], hb_match[RAFT_MAX_MEMBERS + 1];
    uint64_t resent[RAFT_MAX_MEMBERS + 1];     /* tick of the last such resend */
    uint64_t match_tick[RAFT_MAX_MEMBERS + 1]; /* tick match[p] last rose */
    uint64_t ack[RAFT_MAX_MEMBERS + 1];        /* 1 + tick of latest acked heartbeat */
    uint64_t snap_sent[RAFT_MAX_MEMBERS + 1];  /* 1 + tick a snapshot went out */
    int active[RAFT_MAX_MEMBERS + 1];
    uint64_t lead_start, term_start;
    uint32_t hb_elapsed, cq_elapsed;

    /* Quiescence (raft.h). */
    uint32_t Q;           /* cfg.quiesce_ticks; 0 = never */
    int quiet;            /* asleep: ticks only advance the clock */
    uint64_t idle_since;  /* leader: tick of its last proposal, wake-up or election */
    uint64_t vouch_until; /* follower woken by a message: sticky until then */
    uint32_t down;        /* members whose node the host reports down (bitmask) */
    uint64_t quiet_ctx;   /* follower: the leader's tick in its RAFT_HB_QUIESCE */

    /* Outbox for the current ready. */
    struct raft_msg *msgs;
    size_t n_msgs, cap_msgs;
    uint64_t ready_applied, ready_last;
    int nomem; /* an allocation failed while queuing; reported by step */

    struct raft_stats stats;
};

#define RAFT_ID_BITS (((UINT32_C(1) << RAFT_MAX_MEMBERS) - 1) << 1) /* ids 1..MAX */

static inline uint32_t raft__bit(uint32_t id)
{
    return UINT32_C(1) << id;
}

/* Every id of the configuration in effect (incoming and outgoing voters). */
static inline uint32_t raft__members(const struct raft *r)
{
    return r->conf.voters | r->conf.voters_out;
}

/* p is another member of the configuration in effect, or of the one
 * before it while the latest is uncommitted: one a leader replicates to
 * (a member being removed thus hears of its removal). Quorums only ever
 * count the configuration in effect. */
static inline uint32_t raft__peers(const struct raft *r)
{
    uint32_t to =
        raft__members(r) | (r->conf_index > r->commit ? r->prev.voters | r->prev.voters_out : 0);
    return to & ~raft__bit(r->id);
}

static inline int raft__peer(const struct raft *r, uint32_t p)
{
    return (raft__peers(r) & raft__bit(p)) != 0;
}

/* The lowest id in a non-empty mask (to iterate: mask &= mask - 1). */
static inline uint32_t raft__low_id(uint32_t mask)
{
    return (uint32_t)__builtin_ctz(mask);
}

static inline int raft__joint(const struct raft *r)
{
    return r->conf.voters_out != 0;
}

/* A storage member of its configuration: the only kind that campaigns,
 * leads or is handed leadership. */
static inline int raft__storage_member(const struct raft *r, uint32_t p)
{
    return (raft__members(r) & ~r->conf.log & raft__bit(p)) != 0;
}

static inline uint64_t raft__first_index(const struct raft *r)
{
    return r->snap.index + 1;
}
static inline uint64_t raft__last_index(const struct raft *r)
{
    return r->snap.index + r->log_len;
}

/* ---- raft.c ---- */
void raft__check_state(const struct raft *r);
int raft__term_at(const struct raft *r, uint64_t i, uint64_t *t);
int raft__log_append(struct raft *r, uint64_t term, const void *data, uint32_t len, uint32_t type);
struct raft_msg *raft__outbox_add(struct raft *r, uint32_t type, uint32_t to);
void raft__broadcast_append(struct raft *r);
void raft__reset_progress(struct raft *r, uint32_t p);
void raft__become_follower(struct raft *r, uint64_t term, uint32_t leader);
void raft__wake(struct raft *r, int vouch);
void raft__fill_timeout_now(const struct raft *r, uint32_t p, struct raft_msg *out);
uint32_t raft__hand_over_target(const struct raft *r);

/* ---- raft_conf.c ---- */
int raft__has_quorum(const struct raft *r, uint32_t set);
int raft__quorum_lost(const struct raft *r, uint32_t set);
uint64_t raft__quorum_value(const struct raft *r, const uint64_t *val);
void raft__conf_at(const struct raft *r, uint64_t index, struct raft_conf *c, uint64_t *at);
void raft__conf_adopt(struct raft *r, const struct raft_conf *c, uint64_t index);
void raft__conf_progress(struct raft *r);
void raft__farewell(struct raft *r, uint32_t p);

#endif
