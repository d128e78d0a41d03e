/*
 * raft.h — the deterministic consensus core of one replication-group member
 * (Raft, Ongaro & Ousterhout 2014, with pre-vote, check-quorum, leader
 * leases and a gray-failure check). Protocol and lease argument:
 * docs/replication.md, "Protocol".
 *
 * The module does no I/O, reads no clock, starts no thread and keeps no
 * global state. The host drives it with three inputs:
 *   raft_step(r, m)    a message from a peer;
 *   raft_tick(r)       one logical tick (the host calls it every RAFT_TICK_MS
 *                      of its own clock; raft_elapse(r, n) for n owed at
 *                      once after a stall);
 *   raft_propose(...)  a new command (leader only);
 * and drains its outputs through raft_ready_get / raft_ready_advance
 * (etcd-raft style). Randomness (election timeouts) comes from the seed in
 * struct raft_config, so a run replays exactly.
 *
 * Roles:
 *
 *   follower --timeout, no peer hears the leader--> pre-candidate
 *   pre-candidate --quorum of pre-votes--> candidate (term+1, votes for self)
 *   candidate --quorum of votes--> leader (appends an empty entry)
 *   any --message with a higher term (not a sticky-ignored vote)--> follower
 *   leader --no quorum heard within election_ticks (check-quorum)--> follower
 *   leader --raft_hand_over (its host's disk failed)--> follower; the chosen
 *     follower gets TIMEOUT_NOW and becomes candidate at once (no pre-vote),
 *     and its votes are granted even by members that heard the old leader
 *     within E ticks (the old leader gave its lease up)
 *   leader --a configuration without it as a storage member committed-->
 *     follower, TIMEOUT_NOW as above ("Membership change")
 *
 * Invariants (the cheap parts checked in raft.c with NINES_ASSERT, on in
 * every build; all of them checked by t/unit/test_raft_sim.c):
 *  I1 At most one leader per term: a vote is granted at most once per term
 *     and the (term, vote) pair is persisted before the grant is sent.
 *  I2 Log matching: entries with the same index and term are identical, and
 *     so are the logs up to them (the append consistency check, §5.3).
 *  I3 Leader completeness: an entry is committed only once a quorum has
 *     persisted it, and a leader commits directly only entries of its own
 *     term (§5.4.2); votes go only to candidates whose log is at least as
 *     up to date (§5.4.1).
 *  I4 The commit index never decreases; entries at or below it are never
 *     truncated.
 *  I5 Lease: while raft_lease_valid(r) is true, no other member can have
 *     committed an entry this leader has not, provided every member's tick
 *     rate is within ±drift_ppm of nominal (see raft_lease_valid).
 *
 * Caller obligations:
 *  - Serialise all calls on one struct raft (it is not thread-safe; distinct
 *    instances are independent).
 *  - After raft_ready_get returned 1, process the ready IN THIS ORDER, and
 *    call no other raft_ function on r until raft_ready_advance:
 *      1. if snapshot != NULL: persist and install it (replace the state
 *         machine, drop every persisted log entry);
 *      2. persist entries: drop every persisted entry with index >=
 *         entries[0].index, then append entries[] in order;
 *      3. if has_hard_state: persist hs;
 *      4. make 1-3 durable (fdatasync) — only then
 *      5. send msgs (each to msgs[i].to; loss, duplication, reordering are
 *         tolerated);
 *      6. apply committed[] in order;
 *    then call raft_ready_advance. Sending before persisting breaks I1 and
 *    I3 (a vote or an ack would not survive a crash).
 *  - On restart, build the module from what was persisted: the hard state,
 *    the last snapshot and the entries after it (struct raft_config).
 *
 * Membership (raft_propose_conf, "Membership change" below): members are
 * ids 1..RAFT_MAX_MEMBERS; the configuration is a set of voters, each of
 * kind storage (applies, may lead) or log (persists and acknowledges the
 * log and votes, never leads). A change goes through a joint configuration
 * (Raft §6): every quorum above (commit, votes, pre-votes, check-quorum,
 * lease acknowledgements, quiescence) is then a majority of the new voters
 * AND a majority of the outgoing ones.
 *
 * Ownership: raft_new copies everything in the config. Everything a ready
 * points to is owned by r and valid until raft_ready_advance. raft_step
 * borrows m for the call. raft_propose and raft_compact copy their data.
 *
 * Errors: raft_new returns NULL on bad config or no memory (reason in e).
 * raft_propose: NERR_BUSY when this member is not the leader (the host
 * forwards or retries), NERR_LIMIT for an oversized entry, NERR_NOMEM.
 * raft_propose_conf: see there. raft_step returns 0 when the message was
 * taken, NERR_INVALID when it was dropped as malformed or forged (also
 * counted in raft_stats.dropped; among them an entry of unknown type or a
 * CONF entry that does not decode) and NERR_NOMEM. A malformed message
 * never changes state.
 */
#ifndef NINES_RAFT_H
#define NINES_RAFT_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define RAFT_TICK_MS 10
#define RAFT_MAX_MEMBERS 9
#define RAFT_MAX_BATCH 64                /* entries per append message */
#define RAFT_MAX_ENTRY (4u << 20)        /* bytes per entry */
#define RAFT_MAX_SNAPSHOT (256u << 20)   /* bytes per in-memory snapshot payload */
#define RAFT_MAX_APPEND_BYTES (1u << 20) /* entry bytes per append (one larger entry alone) */

enum raft_role { RAFT_FOLLOWER, RAFT_PRE_CANDIDATE, RAFT_CANDIDATE, RAFT_LEADER };

enum raft_msg_type {
    RAFT_MSG_APPEND = 1,     /* entries after (index, log_term); commit */
    RAFT_MSG_APPEND_RESP,    /* reject=0: has up to index; reject=1: hint */
    RAFT_MSG_HEARTBEAT,      /* commit; ctx = leader's tick when sent; hint =
                                RAFT_HB_QUIESCE: the leader goes to sleep, its
                                (index, log_term) = last entry (raft_quiescent) */
    RAFT_MSG_HEARTBEAT_RESP, /* ctx echoed: the lease acknowledgement */
    RAFT_MSG_PREVOTE,        /* term = proposed term; (index, log_term) = last */
    RAFT_MSG_PREVOTE_RESP,
    RAFT_MSG_VOTE,
    RAFT_MSG_VOTE_RESP,
    RAFT_MSG_SNAPSHOT,    /* snapshot at (index, log_term); payload data, or none
                             (metadata only: the host moves the bytes, see
                             raft_compact) */
    RAFT_MSG_PROBE,       /* gray-failure check: "do you hear the leader?" */
    RAFT_MSG_PROBE_RESP,  /* reject=0: yes, within election_ticks */
    RAFT_MSG_TIMEOUT_NOW, /* leader hand-over: campaign at once (raft_hand_over) */
    RAFT_MSG_TYPE_END
};

/* hint of a HEARTBEAT that puts the group to sleep (see "Quiescence"). */
#define RAFT_HB_QUIESCE 1

/* Entry types. A CONF entry's data is the module's encoding of a struct
 * raft_conf (RAFT_CONF_ENC_LEN bytes, all little-endian u32: version 1,
 * voters, voters_out, log); it is made only by the module
 * (raft_propose_conf and auto-leave). The host persists and sends `type`
 * with the entry and hands it back on restart. */
#define RAFT_ENTRY_NORMAL 0
#define RAFT_ENTRY_CONF 1
#define RAFT_CONF_ENC_LEN 16

struct raft_entry {
    uint64_t term;
    uint64_t index;
    uint32_t len;
    unsigned char *data; /* len bytes; NULL when len == 0 (leader no-op) */
    uint32_t type;       /* RAFT_ENTRY_*; last so that {term, index, len, data}
                            initialisers keep meaning a NORMAL entry */
};

/* A configuration: bitmasks of member ids (bit i = id i, 1..RAFT_MAX_MEMBERS;
 * bit 0 is never set).
 *   voters      the (incoming, when joint) voters;
 *   voters_out  != 0: joint, these are the outgoing voters;
 *   log         the log members among voters | voters_out (the others are
 *               storage members).
 * Valid (raft_conf_check): voters != 0, no bit outside 1..RAFT_MAX_MEMBERS,
 * log a subset of voters | voters_out, and storage members a majority of
 * voters (and of voters_out when joint). The last rule keeps a group
 * available: every committed entry is then on a storage member, and with
 * every member up, the most up-to-date storage member gets the votes of
 * the other storage members. With a log majority a group can commit
 * entries that only log members hold, and then nobody can lead. All zero
 * in struct raft_config or a snapshot means "not given" (see there). */
struct raft_conf {
    uint32_t voters, voters_out, log;
};

struct raft_msg {
    uint64_t group;
    uint32_t type;     /* enum raft_msg_type */
    uint32_t from, to; /* member ids, 1..n_members */
    uint64_t term;
    uint64_t index;    /* APPEND: prev index; *_RESP: match or rejected index;
                          VOTE: last index; SNAPSHOT: snapshot index */
    uint64_t log_term; /* term at index */
    uint64_t commit;
    uint64_t hint; /* APPEND_RESP reject: the follower's backtrack hint */
    uint64_t ctx;  /* HEARTBEAT(_RESP): leader tick at send; VOTE: 1 = a
                      hand-over vote (overrides leader stickiness) */
    uint32_t reject;
    uint32_t n_entries;
    struct raft_entry *entries; /* APPEND only */
    uint32_t data_len;
    unsigned char *data;   /* SNAPSHOT only */
    struct raft_conf conf; /* SNAPSHOT: the configuration at index; all zero =
                              the receiver's initial one (a host that does not
                              carry it: every configuration is the initial) */
};

struct raft_hard_state {
    uint64_t term;
    uint32_t vote; /* 0 = none this term */
    uint64_t commit;
};

struct raft_snapshot {
    uint64_t index, term; /* last entry the payload includes; 0 = none */
    uint32_t len;
    unsigned char *data;   /* opaque to the module */
    struct raft_conf conf; /* the configuration in effect at index (the
                              latest CONF entry at or before it); all zero =
                              the initial one (raft_config.conf) */
};

struct raft_config {
    uint64_t group;
    uint32_t id;              /* 1..n_members, or 1..RAFT_MAX_MEMBERS with conf */
    uint32_t n_members;       /* voting members, odd, <= RAFT_MAX_MEMBERS;
                                 only read when conf is all zero */
    uint32_t election_ticks;  /* E: timeouts are random in [E, 2E); >= 4 */
    uint32_t heartbeat_ticks; /* < E/2 */
    uint32_t drift_ppm;       /* ρ: every member ticks within ±ρ of nominal */
    uint64_t seed;
    /* Quiescence: 0 = never (the default). Otherwise a leader that has been
     * idle this many ticks with every follower caught up puts its group to
     * sleep. Only for a host that reports node liveness with
     * raft_peer_down / raft_peer_up (see "Quiescence"). */
    uint32_t quiesce_ticks;
    /* Persisted state (all zero for a brand-new member). */
    struct raft_hard_state hs;
    struct raft_snapshot snapshot;    /* copied */
    const struct raft_entry *entries; /* copied; snapshot.index+1 onward */
    size_t n_entries;
    uint64_t applied; /* host state includes entries <= applied
                         (>= snapshot.index) */
    /* The initial configuration: all zero = ids 1..n_members, all storage
     * (every host that never changes its membership). A member added by a
     * change is created (empty) with the configuration it joins, as the
     * leader proposed it (the joint one), so that it accepts its leader.
     * The configuration in effect is the latest CONF entry in entries[],
     * else snapshot.conf, else this (Raft §6: an entry takes effect when it
     * is appended, committed or not). */
    struct raft_conf conf;
};

struct raft_ready {
    int has_hard_state;
    struct raft_hard_state hs;
    const struct raft_snapshot *snapshot; /* NULL or: persist and install */
    const struct raft_entry *entries;     /* to persist */
    size_t n_entries;
    const struct raft_msg *msgs; /* to send after persisting */
    size_t n_msgs;
    const struct raft_entry *committed; /* to apply, in order */
    size_t n_committed;
};

struct raft_stats {
    uint64_t dropped;           /* malformed or forged messages */
    uint64_t votes_ignored;     /* (pre-)votes refused under leader stickiness */
    uint64_t elections_avoided; /* gray-failure check: a peer hears the leader */
    uint64_t prevotes_started;
    uint64_t elections_started;
    uint64_t checkquorum_stepdowns;
    uint64_t lost_logs;       /* a follower's log turned out shorter than it had acknowledged */
    uint64_t hand_overs;      /* raft_hand_over calls that stepped down */
    uint64_t quiesces;        /* times this member went to sleep */
    uint64_t wakes;           /* times it woke (any cause) */
    uint64_t wakes_peer_down; /* of which: its leader's node reported down */
    uint64_t conf_changes;    /* configuration entries this member appended
                                 as leader (joint and leave-joint) */
    uint64_t conf_stepdowns;  /* leader steps-down: not a storage voter of
                                 the configuration it committed */
};

struct raft;

/* Creates a member from cfg (see the restart rule above). A persisted
 * entry is a configuration entry when its type is RAFT_ENTRY_CONF and its
 * data decodes (raft_conf_decode); any other entry is read as NORMAL: a
 * host that does not persist `type` yet (ninesd today) may hand back
 * entries whose type field it never set, and it never proposed a change.
 * NULL (NERR_INVALID) for an invalid cfg.conf or snapshot.conf. */
struct raft *raft_new(const struct raft_config *cfg, struct nerr *e);
void raft_free(struct raft *r);

/* Feeds one peer message. Messages for another group, from a non-member,
 * of unknown type or with impossible indexes/terms are dropped (NERR_INVALID)
 * and counted. */
int raft_step(struct raft *r, const struct raft_msg *m);

/* Advances the logical clock by one tick: raft_elapse(r, 1). */
void raft_tick(struct raft *r);

/* Advances the logical clock by n ticks at once, for a host that was
 * stalled (its thread unscheduled, a long disk wait) and owes n tick
 * periods. The clock moves by all n, so a leader's lease ends in real time;
 * but nothing runs n times, and no timer fires on a stall alone:
 *  - a leader sends one round of heartbeats when any was due;
 *  - a timer (election timeout, gray-failure probe, a leader's
 *    check-quorum) that would run out inside an advance of n > 1 stops one
 *    tick short and fires at the next advance, so the host steps the
 *    messages that arrived during the stall (the leader's heartbeats, the
 *    followers' answers) first. A timer already one tick short fires
 *    whatever n is: a host that only ever advances in bulk still times out;
 *  - sticky resume: a follower that heard its leader since the previous
 *    advance (stepped at the old tick, received at some time since) counts
 *    it as heard at the new tick: it stays sticky for E ticks from there
 *    (raft_lease_valid's argument counts from the receipt) and its election
 *    timer restarts.
 * raft_elapse(r, 0) does nothing. */
void raft_elapse(struct raft *r, uint64_t n);

/* Appends a command to the leader's log; *index receives its log index.
 * The command is committed once committed[] of a later ready contains it
 * (which also means a quorum persisted it). */
int raft_propose(struct raft *r, const void *data, uint32_t len, uint64_t *index);

/* Appends n commands (one append message per peer for all of them);
 * *first receives the index of the first. On NERR_NOMEM the commands
 * before the failing one are proposed (indexes *first onward). */
int raft_propose_batch(struct raft *r, const void *const *data, const uint32_t *len, size_t n,
                       uint64_t *first);

/* The host took a snapshot of its state at applied index `index` (<= the
 * applied index): the module keeps a copy of the payload to send to lagging
 * followers and drops its log up to index. The host may then drop its
 * persisted entries <= index after persisting the snapshot.
 * Metadata-only snapshots: with len 0 (data NULL) the module keeps only
 * (index, term); a SNAPSHOT message it queues for a lagging follower then
 * carries no payload and asks the host to bring the follower its state by
 * other means (ninesd streams it in chunks, store/snapstream.h). A
 * follower's core takes a metadata-only SNAPSHOT like any other: its ready
 * holds the snapshot with len 0 and the host installs the state it received
 * itself. The module repeats such a request at most every E/2 ticks while
 * the follower stays behind; the host ignores repeats while a transfer is
 * in progress. */
int raft_compact(struct raft *r, uint64_t index, const void *data, uint32_t len);

/* Membership change (joint consensus, Raft §6; etcd's ConfChangeV2 with
 * auto-leave).
 *
 *   C_old --raft_propose_conf(C_new)--> C_old∧C_new (joint entry appended)
 *         --joint entry committed--> the leader appends the leave-joint
 *           entry C_new itself (auto-leave) --committed--> done
 *
 * A replacement {A,B,C} -> {A,B,L} is one call: {A,B,L}∧{A,B,C}, then
 * {A,B,L}; the new member is in the configuration (and replicated to)
 * before the old one leaves (add before remove), so losing any one member
 * at any step leaves a quorum of every configuration in effect. Each
 * committed configuration shares a half with the one before it, so no two
 * configurations in effect at once have disjoint quorums.
 *
 * Rules (each member, leader or not):
 *  - A configuration takes effect when its entry is appended to the
 *    member's log, committed or not, and reverts to the previous one when
 *    that entry is truncated; a restart takes the latest CONF entry of the
 *    persisted log, else the snapshot's, else raft_config.conf.
 *  - Quorums: a majority of voters, and of voters_out when joint.
 *  - Only a storage member of its current configuration (in voters or
 *    voters_out, not in log) pre-campaigns, campaigns, or is picked by
 *    raft_hand_over or a leader's step-down — with one exception: a member
 *    whose latest CONF entry removed it (or made it a log member) and is
 *    still uncommitted may campaign as the storage member it was in the
 *    configuration before. It may hold the only up-to-date log a storage
 *    member has (the removed leader lost its leadership before its
 *    leave-joint entry committed, and the others that have that entry are
 *    log members: found by test_raft_sim); it counts votes by its latest
 *    configuration, leads until that is committed, then steps down and
 *    hands over (below). A log member runs the gray-failure probe when its
 *    timer runs out (it wakes a sleeping leader whose quiesce heartbeat it
 *    missed) but never starts a pre-election; a member of no configuration
 *    it has does nothing on a timeout. Every member grants (pre-)votes by
 *    the ordinary rules and acknowledges appends and heartbeats.
 *  - Messages from an id that is in no configuration this member has known
 *    (its initial one, its snapshot's, any CONF entry it appended) are
 *    dropped and counted as malformed, as before membership changes
 *    existed — except, once membership may change (cfg.conf was given, or
 *    a CONF entry or a snapshot's configuration was seen), a leader's or a
 *    candidate's request (APPEND, HEARTBEAT, SNAPSHOT, TIMEOUT_NOW, PREVOTE,
 *    VOTE): a member that lags behind a change must still hear the leader
 *    the change added, and vote for it. A host that changes membership
 *    creates its members with cfg.conf. A leader sends to the members of
 *    its configuration, and while its latest CONF entry is uncommitted to
 *    those of the one before too (a member being removed hears of it).
 *  - Farewell: when its CONF entry commits, and whenever a member it
 *    removed talks to it (a late answer, a probe), a leader sends that
 *    member an empty APPEND after the CONF entry with the commit index up
 *    to it. A removed member whose log holds the entry thus learns that its
 *    removal is committed and does nothing on a timeout from then on. One
 *    that missed the entry (it is not sent once committed) campaigns on to
 *    no effect but waking a sleeping group: its host shuts it down once the
 *    group committed its removal (as CockroachDB's replica GC does;
 *    test_raft_sim models it).
 *  - Only one change in flight: raft_propose_conf refuses while joint or
 *    while the latest CONF entry is uncommitted.
 *  - A new leader proposes no change (and does not auto-leave) before it
 *    committed an entry of its term (its no-op): until then an uncommitted
 *    CONF entry of an earlier term may still be replaced (Ongaro 2015, the
 *    single-server bug).
 *  - Auto-leave: a leader whose joint CONF entry is committed (and which
 *    committed an entry of its term) appends the leave-joint entry
 *    {voters, 0, log & voters} at once; a leader elected in a joint
 *    configuration does so once its no-op commits.
 *  - Leader removal: a leader that is not a storage voter of its
 *    configuration once that configuration's (non-joint) entry is
 *    committed steps down in its term and queues a TIMEOUT_NOW, as
 *    raft_hand_over does, to the storage voter of the new configuration
 *    with the longest acknowledged log (the new leader needs no election
 *    timeout; the old leader's lease ends with its leadership). Until then
 *    it leads, counting itself only in the configurations it belongs to.
 *  - Quiescence: a leader does not go to sleep while joint or while its
 *    latest CONF entry is uncommitted.
 *
 * Log members. The core treats a log member like any other follower: its
 * ready holds the entries to persist, the hard state, the messages, and
 * committed[] and snapshots as for a storage member. Its host persists the
 * log, the hard state and a snapshot's metadata (index, term, conf), and
 * ignores committed[] and the snapshot payload (it has no state machine);
 * it may call raft_compact with a metadata-only snapshot to release log.
 * A log member never leads, so nobody reads from it (a storage member
 * being made a log member may lead as the storage member it was until that
 * change is committed, see above; then it hands over).
 */

/* Proposes the change from the current configuration to target (not joint:
 * voters_out 0) as one joint entry; *index receives its index. In the joint
 * configuration a member of target has its target kind, a member leaving
 * its old kind; the joint configuration must be valid too (a change of
 * kinds that would make log members a majority of the outgoing half is
 * refused: change kinds in a separate step).
 * An id that was removed must not be added again with an empty log: the
 * leader could count a late acknowledgement of its former incarnation for
 * entries the new one lacks. Hosts give a new member a fresh id. The group
 * then leaves the joint configuration by itself (auto-leave, above); the
 * change is done once raft_get_conf shows target and raft_conf_index(r) is
 * at most raft_commit(r). Errors: NERR_INVALID for an invalid target or
 * joint configuration (raft_conf_check says why); NERR_BUSY when r is not
 * the leader, has not committed an entry of its term yet, is joint, or its
 * latest CONF entry is uncommitted; NERR_NOMEM. */
int raft_propose_conf(struct raft *r, const struct raft_conf *target, uint64_t *index);

/* 0 when c is a valid configuration (see struct raft_conf), else
 * NERR_INVALID with the reason in e (e may be NULL). With target set, c
 * must also not be joint. */
int raft_conf_check(const struct raft_conf *c, int target, struct nerr *e);

/* The configuration in effect at this member (the latest appended), and the
 * index of the CONF entry that made it (the snapshot's index when it came
 * from a snapshot at a restart or an install; 0 for the initial one): it
 * is committed once that index is at most raft_commit. */
void raft_get_conf(const struct raft *r, struct raft_conf *conf);
uint64_t raft_conf_index(const struct raft *r);
/* The configuration in effect at index (clamped to the snapshot's index
 * and the last index): the latest CONF entry at or before it, else the
 * snapshot's; all zero = the initial one (raft_config.conf). What a host
 * writes beside a snapshot it takes at index (raft_compact). */
void raft_conf_at(const struct raft *r, uint64_t index, struct raft_conf *conf);

/* Encodes c as a CONF entry's data (RAFT_CONF_ENC_LEN bytes into out);
 * decodes one (NERR_INVALID: wrong length or version, or an invalid
 * configuration). */
void raft_conf_encode(const struct raft_conf *c, unsigned char out[RAFT_CONF_ENC_LEN]);
int raft_conf_decode(const void *data, uint32_t len, struct raft_conf *c);

/* Hands leadership over at once: for a leader whose host can no longer
 * persist (a failed disk) and would otherwise leave its followers waiting a
 * whole election timeout. Picks the follower with the longest acknowledged
 * log (ties: the one heard from last) among the storage voters of its
 * configuration (never a log member), fills *out with a TIMEOUT_NOW for it
 * (owned by the caller, no entries or data) and steps down to follower in
 * the same term. The host must stop serving lease reads before the call
 * (raft_lease_valid is false from then on) and send *out itself: unlike
 * every other call this one touches neither the outbox nor the log, so a
 * host that stops driving r may make it between raft_ready_get and
 * raft_ready_advance. NERR_BUSY when r is not the leader or has no storage
 * voter to hand over to. */
int raft_hand_over(struct raft *r, struct raft_msg *out);

/* A heartbeat from this leader to member `to`, for a host whose ready is in
 * flight (its own write waits for a slow disk) and whose followers would
 * otherwise hear nothing until it completes, ticks being owed meanwhile:
 * fills *out (owned by the caller, no entries or data) with a HEARTBEAT of
 * the current term and tick and no commit index. Sent later than its tick,
 * its acknowledgement only makes the lease more conservative. Like
 * raft_hand_over it touches neither the outbox nor the log, so the host may
 * call it between raft_ready_get and raft_ready_advance. NERR_BUSY when r
 * is not the leader, is asleep (raft_quiescent: its followers sleep too,
 * and a heartbeat would wake them but not it, so they would time out), or
 * `to` is not another member of its configuration. */
int raft_heartbeat(const struct raft *r, uint32_t to, struct raft_msg *out);

/* Quiescence (idle groups cost nothing).
 *
 * A leader with cfg.quiesce_ticks > 0 puts its group to sleep when, at a
 * tick: it has committed an entry of its term; its whole log is committed
 * and persisted (nothing proposed is pending); every follower's match index
 * is the last index and it acknowledged a heartbeat sent within the last
 * E/2 + H ticks; no follower's node is reported down; and no
 * proposal or wake-up came for quiesce_ticks ticks. It then sends every
 * follower a last HEARTBEAT with hint RAFT_HB_QUIESCE carrying its commit
 * index and (index, log_term) of its last entry, and sleeps. A follower
 * (with quiesce_ticks > 0) whose log ends at that same entry and whose
 * commit index equals it, and whose host does not report the leader's node
 * down, sleeps too. A sleeping member (raft_quiescent) does nothing on a
 * tick but advance its clock: raft_tick/raft_elapse are O(1) and fire no
 * timer; the host may skip its ticks and advance the clock by the ticks it
 * owes in one raft_elapse before its next input (it need not: a sleeping
 * member's clock only matters once it wakes, see the lease below).
 *
 * Waking. A member wakes on: raft_propose (leader), raft_wake, any message
 * of its group except stale or redundant ones (an answer of an older term,
 * a vote or probe answer, an acknowledgement of the leader's last entry, a
 * repeated RAFT_HB_QUIESCE), raft_peer_up of a member (a leader), and
 * raft_peer_down of its leader (a follower). A woken leader sends a
 * heartbeat round at once and restarts its heartbeat and check-quorum
 * timers; it forgets every heartbeat acknowledgement (the lease restarts
 * from the wake-up round). A woken follower restarts its election timer
 * from zero — except on raft_peer_down of its leader, see below.
 *
 * Liveness duty of the host. A sleeping follower cannot notice that its
 * leader died: its host must call raft_peer_down(r, leader) once its
 * node-level liveness (ninesd: a node heartbeat every heartbeat interval)
 * has heard nothing from the leader's node for E ticks, and when that node
 * restarted (a new incarnation, then raft_peer_up too). The follower then
 * forgets the leader and lets its election timer run out within [0, E)
 * ticks (its random timeout minus the E ticks the host already waited), so
 * a sleeping group fails over in E + [0, E) ticks, the same bound as a busy
 * one (E + [0, E) after the last heartbeat). raft_peer_up(r, p) when p's
 * node is reachable again or restarted wakes a sleeping leader, whose
 * heartbeat then reaches the returning member. Members whose node is
 * reported down block a leader from quiescing, and a follower never goes
 * to sleep under a leader reported down (a late RAFT_HB_QUIESCE).
 *
 * Leader stickiness while asleep. In addition to the E ticks after hearing
 * a leader (in_lease, which quiescence leaves untouched), a sleeping
 * follower refuses (pre-)votes while its host does not report the leader's
 * node down, and a follower woken by a message (say, the pre-vote of a
 * restarted member) keeps refusing for E ticks after the wake-up unless
 * the leader's node is reported down meanwhile: a leader whose node is
 * alive is woken by that restarted member's pre-vote (or raft_peer_up) and
 * is not deposed. A restarted follower therefore always gets a leader: its
 * pre-vote or its probe wakes the sleeping leader, which heartbeats; or the
 * leader's node is down and raft_peer_down lets the others elect.
 *
 * Safety. Quiescence changes only timers (which fire and when) and makes
 * vote refusals more frequent, never less: I1-I4 hold because every
 * message is handled by the same rules, and an election is the same
 * election whenever its timer fires. I5: a sleeping leader's lease is not
 * valid (raft_lease_valid returns 0 while asleep, and after a wake-up only
 * acknowledgements of heartbeats sent since count), and the E-tick
 * stickiness after a follower hears a leader is unchanged — raft_peer_down
 * only cancels the extra stickiness of sleep, never those E ticks. A host
 * that wants a lease read on a sleeping group calls raft_wake and waits for
 * the heartbeat round (ninesd: group_read_index).
 *
 * Edge cases. A leader dies while its group sleeps: its followers' hosts
 * report its node down after E ticks and they elect as above. A network
 * partition while asleep: the side without the leader reports it down and
 * elects if it has a quorum; the old leader sleeps without a lease and, on
 * a proposal, wakes, cannot commit, and steps down by check-quorum; when
 * the partition heals, raft_peer_up wakes it and the higher term deposes
 * it. A wake-up racing an election: both run the ordinary protocol — a
 * woken leader's heartbeats make followers refuse or defer pre-votes as
 * usual, and a candidate that wins deposes it by its higher term. */
/* Wakes a sleeping member (no effect otherwise). */
void raft_wake(struct raft *r);
/* The host's node-level liveness: member id's node is unreachable (no node
 * heartbeat for E ticks) or restarted. Remembered until raft_peer_up. */
void raft_peer_down(struct raft *r, uint32_t id);
/* Member id's node is reachable (again); after a restart, call
 * raft_peer_down first. Wakes a sleeping leader. */
void raft_peer_up(struct raft *r, uint32_t id);
/* 1 while this member sleeps (see "Quiescence"). */
int raft_quiescent(const struct raft *r);

/* 1 and fills rd when there is something to persist, send or apply. */
int raft_ready_get(struct raft *r, struct raft_ready *rd);
/* The host processed the last ready (see the order above). */
void raft_ready_advance(struct raft *r);

/* True when this member is leader and may serve a strongly consistent read
 * from its state once it has applied up to raft_commit(r), without a round
 * trip. Holds while: (a) a quorum (self included) acknowledged a heartbeat
 * this leader sent at its tick t, and now < t + lease_ticks, where
 * lease_ticks = floor((E - 1)(1 - ρ)/(1 + ρ)) - 1; (b) the leader has
 * committed an entry of its term (so its commit index covers every earlier
 * commit); (c) at least E ticks passed since it became leader (it waits out
 * any older lease); (d) it is not asleep (raft_quiescent), and the
 * acknowledgement is of a heartbeat sent since it last woke. Voters refuse
 * (pre-)votes for E ticks after hearing from a leader, so no other leader
 * can be elected — and commit — before the lease ends. */
int raft_lease_valid(const struct raft *r);
uint32_t raft_lease_ticks(const struct raft *r);

enum raft_role raft_role(const struct raft *r);
uint64_t raft_term(const struct raft *r);
uint32_t raft_leader(const struct raft *r); /* 0 = unknown */
/* On the leader: the highest index member id is known to hold (its match
 * index; the leader's own last index for itself); 0 when r does not lead
 * or id is no member it replicates to. */
uint64_t raft_match(const struct raft *r, uint32_t id);
uint64_t raft_commit(const struct raft *r);
uint64_t raft_last_index(const struct raft *r);
uint64_t raft_first_index(const struct raft *r); /* snapshot index + 1 */
/* The term of the entry at index, including the snapshot's last entry;
 * NERR_NOTFOUND when compacted away or beyond the log. */
int raft_term_at(const struct raft *r, uint64_t index, uint64_t *term);
/* The in-memory entry at index, or NULL (compacted or beyond the log).
 * Borrowed until the next call on r. */
const struct raft_entry *raft_entry_at(const struct raft *r, uint64_t index);
void raft_get_stats(const struct raft *r, struct raft_stats *st);
const char *raft_msg_type_name(uint32_t type);

/* Deep copy of a message (entries and data), for hosts that queue messages;
 * release frees what raft_msg_copy allocated. */
int raft_msg_copy(struct raft_msg *dst, const struct raft_msg *src);
void raft_msg_release(struct raft_msg *m);

#endif
