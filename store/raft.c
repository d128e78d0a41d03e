/*
 * raft.c — see raft.h for the contract and docs/replication.md for the
 * protocol and the lease argument. Membership change is in raft_conf.c;
 * raft_internal.h says what the two files share.
 */
#include "store/raft_internal.h"

#include <stdlib.h>
#include <string.h>

#include "lib/invariant.h"
#include "lib/rng.h"

/* Values at or above this are never legitimate terms, indexes or ticks. */
#define RAFT_ABSURD (UINT64_C(1) << 62)

/* This member may campaign: a storage member of its configuration, or of
 * the one before while the latest (which removed it or made it a log
 * member) is uncommitted. The latter may hold the only up-to-date log a
 * storage member has (the old leader lost its leadership before its
 * leave-joint entry committed, and the others that have it are log
 * members): it counts votes by its latest configuration, leads until that
 * is committed and hands over (raft__conf_progress). Found by test_raft_sim. */
static int can_campaign(const struct raft *r)
{
    return raft__storage_member(r, r->id) ||
           (r->conf_index > r->commit &&
            ((r->prev.voters | r->prev.voters_out) & ~r->prev.log & raft__bit(r->id)));
}

/* The cheap invariants raft.h promises, checked after every input (always
 * on: lib/invariant.h). I4: the commit index never passes the log's end or
 * falls below what was applied or compacted; a leader leads as itself. */
void raft__check_state(const struct raft *r)
{
    /* Membership: the configuration in effect is valid; a leader that is
     * no storage member of it leads only until that configuration (not
     * joint) is committed (raft.h, "Leader removal"). */
    NINES_ASSERT(r->conf.voters != 0 && (raft__members(r) & ~r->known) == 0);
    NINES_ASSERT(r->role != RAFT_LEADER || raft__storage_member(r, r->id) || raft__joint(r) ||
                 r->conf_index > r->commit);
    NINES_ASSERT(r->commit <= raft__last_index(r));
    NINES_ASSERT(r->applied <= r->commit);
    NINES_ASSERT(r->snap.index <= r->commit);
    NINES_ASSERT(r->stable <= raft__last_index(r));
    NINES_ASSERT(r->role != RAFT_LEADER || (r->leader == r->id && r->vote == r->id));
}

/* Term of the entry at i; 0 when unknown (compacted away or beyond the log).
 * Index 0 has term 0 by definition, which is also what callers compare. */
int raft__term_at(const struct raft *r, uint64_t i, uint64_t *t)
{
    if (i == r->snap.index) {
        *t = r->snap.term;
        return 0;
    }
    if (i < raft__first_index(r) || i > raft__last_index(r))
        return -1;
    *t = r->log[i - raft__first_index(r)].term;
    return 0;
}

static void new_timeout(struct raft *r)
{
    r->timeout = r->E + (uint32_t)(rng_next(&r->rng) % r->E);
    r->elapsed = 0;
}

static int log_reserve(struct raft *r, size_t n)
{
    if (r->log_len + n <= r->log_cap)
        return 0;
    size_t cap = r->log_cap ? r->log_cap : 8;
    while (cap < r->log_len + n)
        cap *= 2;
    struct raft_entry *nl = realloc(r->log, cap * sizeof(*nl));
    if (!nl)
        return NERR_NOMEM;
    r->log = nl;
    r->log_cap = cap;
    return 0;
}

/* Appends a copy of e (whose index must be last + 1). A CONF entry (its
 * data already decoded by the caller's checks) takes effect at once. */
int raft__log_append(struct raft *r, uint64_t term, const void *data, uint32_t len, uint32_t type)
{
    /* I2's premise: terms never decrease along the log, and no entry is of a
     * term this member has not reached. */
    NINES_ASSERT(term <= r->term &&
                 term >= (r->log_len ? r->log[r->log_len - 1].term : r->snap.term));
    if (log_reserve(r, 1))
        return NERR_NOMEM;
    struct raft_entry *ne = &r->log[r->log_len];
    ne->term = term;
    ne->index = raft__last_index(r) + 1;
    ne->len = len;
    ne->data = NULL;
    ne->type = type;
    if (len) {
        ne->data = malloc(len);
        if (!ne->data)
            return NERR_NOMEM;
        memcpy(ne->data, data, len);
    }
    r->log_len++;
    if (ne->index < r->unstable_from)
        r->unstable_from = ne->index;
    if (type == RAFT_ENTRY_CONF) {
        struct raft_conf c;
        int rc = raft_conf_decode(data, len, &c);
        NINES_ASSERT(rc == 0);
        raft__conf_adopt(r, &c, ne->index);
        r->open = 1;
    }
    return 0;
}

/* Drops entries with index >= from. Never below the commit index (I4), and
 * never on a leader (it only appends: Leader Append-Only, §5.3). */
static void log_truncate(struct raft *r, uint64_t from)
{
    NINES_ASSERT(from > r->commit && r->role != RAFT_LEADER);
    while (raft__last_index(r) >= from) {
        free(r->log[r->log_len - 1].data);
        r->log_len--;
    }
    if (from < r->unstable_from)
        r->unstable_from = from;
    if (r->stable >= from)
        r->stable = from - 1;
    /* A configuration whose entry is gone reverts to the one before it
     * (and the one before that becomes prev again). */
    if (r->conf_index >= from) {
        struct raft_conf c, pc = r->snap.conf;
        uint64_t at, pat;
        raft__conf_at(r, raft__last_index(r), &c, &at);
        if (at > r->snap.index)
            raft__conf_at(r, at - 1, &pc, &pat);
        raft__conf_adopt(r, &c, at);
        r->prev = pc;
    }
}

struct raft_msg *raft__outbox_add(struct raft *r, uint32_t type, uint32_t to)
{
    if (r->n_msgs == r->cap_msgs) {
        size_t cap = r->cap_msgs ? r->cap_msgs * 2 : 4;
        struct raft_msg *nm = realloc(r->msgs, cap * sizeof(*nm));
        if (!nm) {
            r->nomem = 1;
            return NULL;
        }
        r->msgs = nm;
        r->cap_msgs = cap;
    }
    struct raft_msg *m = &r->msgs[r->n_msgs++];
    memset(m, 0, sizeof(*m));
    m->group = r->group;
    m->type = type;
    m->from = r->id;
    m->to = to;
    m->term = r->term;
    return m;
}

static void send_snapshot(struct raft *r, uint32_t p)
{
    /* A snapshot can be large: resend at most every E/2 ticks. */
    if (r->snap_sent[p] && r->now + 1 - r->snap_sent[p] < r->E / 2)
        return;
    struct raft_msg *m = raft__outbox_add(r, RAFT_MSG_SNAPSHOT, p);
    if (!m)
        return;
    m->index = r->snap.index;
    m->log_term = r->snap.term;
    m->commit = r->commit;
    m->conf = r->snap.conf;
    if (r->snap.len) {
        m->data = malloc(r->snap.len);
        if (!m->data) {
            r->n_msgs--;
            r->nomem = 1;
            return;
        }
        memcpy(m->data, r->snap.data, r->snap.len);
        m->data_len = r->snap.len;
    }
    r->snap_sent[p] = r->now + 1;
}

static void send_append(struct raft *r, uint32_t p)
{
    uint64_t prev = r->next[p] - 1, prev_term;
    if (r->sent[p] > prev && r->sent[p] <= raft__last_index(r) &&
        !raft__term_at(r, r->sent[p], &prev_term))
        prev = r->sent[p];
    else
        r->sent[p] = 0;
    if (raft__term_at(r, prev, &prev_term)) {
        send_snapshot(r, p);
        return;
    }
    uint64_t n = raft__last_index(r) - prev;
    if (n > RAFT_MAX_BATCH)
        n = RAFT_MAX_BATCH;
    /* Bounded by bytes too: at most RAFT_MAX_APPEND_BYTES of entries, or
     * one entry when that one alone is larger (raftwire.h, the message bound). */
    size_t bytes = 0;
    for (uint64_t i = 0; i < n; i++) {
        bytes += r->log[prev + 1 + i - raft__first_index(r)].len;
        if (bytes > RAFT_MAX_APPEND_BYTES && i > 0) {
            n = i;
            break;
        }
    }
    struct raft_msg *m = raft__outbox_add(r, RAFT_MSG_APPEND, p);
    if (!m)
        return;
    m->index = prev;
    m->log_term = prev_term;
    m->commit = r->commit < prev + n ? r->commit : prev + n;
    if (n) {
        m->entries = calloc(n, sizeof(*m->entries));
        if (!m->entries)
            goto fail;
        m->n_entries = (uint32_t)n;
        for (uint64_t i = 0; i < n; i++) {
            const struct raft_entry *src = &r->log[prev + 1 + i - raft__first_index(r)];
            m->entries[i] = *src;
            m->entries[i].data = NULL;
            if (src->len) {
                m->entries[i].data = malloc(src->len);
                if (!m->entries[i].data)
                    goto fail;
                memcpy(m->entries[i].data, src->data, src->len);
            }
        }
        r->sent[p] = prev + n;
    }
    return;
fail:
    raft_msg_release(m);
    r->n_msgs--;
    r->nomem = 1;
}

void raft__broadcast_append(struct raft *r)
{
    for (uint32_t left = raft__peers(r); left; left &= left - 1)
        send_append(r, raft__low_id(left));
}

/* A leader's fresh view of member p: nothing known acknowledged. */
void raft__reset_progress(struct raft *r, uint32_t p)
{
    r->next[p] = raft__last_index(r) + 1;
    r->match[p] = 0;
    r->ack[p] = 0;
    r->active[p] = 0;
    r->snap_sent[p] = 0;
    r->sent[p] = 0;
    r->hb_match[p] = 0;
    r->resent[p] = r->now;
    r->match_tick[p] = r->now;
}

void raft__become_follower(struct raft *r, uint64_t term, uint32_t leader)
{
    r->quiet = 0;
    r->vouch_until = 0;
    if (term > r->term) {
        r->term = term;
        r->vote = 0;
    }
    r->role = RAFT_FOLLOWER;
    r->leader = leader;
    r->probing = 0;
    new_timeout(r);
}

static void become_leader(struct raft *r)
{
    NINES_ASSERT(r->role == RAFT_CANDIDATE);
    r->role = RAFT_LEADER;
    r->leader = r->id;
    r->quiet = 0;
    r->idle_since = r->now;
    for (uint32_t p = 1; p <= RAFT_MAX_MEMBERS; p++)
        raft__reset_progress(r, p);
    r->lead_start = r->now;
    r->last_contact = r->now;
    r->hb_elapsed = r->cq_elapsed = 0;
    /* The no-op entry lets the leader commit the earlier terms' entries
     * indirectly (§5.4.2, §8). */
    if (raft__log_append(r, r->term, NULL, 0, RAFT_ENTRY_NORMAL)) {
        r->nomem = 1;
        return;
    }
    r->term_start = raft__last_index(r);
    raft__broadcast_append(r);
}

/* Ticks a follower waits at most for answers to its gray-failure probe
 * before it starts a pre-election anyway: E/3, at least 2. It starts at
 * once when every member but itself and the leader answers that it does
 * not hear the leader either (a dead leader never answers), so the wait
 * only lasts when some answer is late. Long enough for a loaded host: with
 * quiescence a follower that missed its leader's last heartbeat probes a
 * live, sleeping leader, and the probe wakes it; 20 ms was too short for
 * the leader's heartbeat or a peer's "yes" on a saturated 2-core machine,
 * and the follower started pre-elections (churn.t). */
static uint32_t probe_ticks(const struct raft *r)
{
    return r->E / 3 > 2 ? r->E / 3 : 2;
}

/* Asks every other member for its (pre-)vote for term, on our last entry;
 * ctx 1 marks the votes of a hand-over (TIMEOUT_NOW). */
static void ask_votes(struct raft *r, uint32_t type, uint64_t term, uint64_t ctx)
{
    uint64_t lt = 0;
    raft__term_at(r, raft__last_index(r), &lt);
    for (uint32_t left = raft__peers(r); left; left &= left - 1) {
        uint32_t p = raft__low_id(left);
        struct raft_msg *m = raft__outbox_add(r, type, p);
        if (m) {
            m->term = term;
            m->index = raft__last_index(r);
            m->log_term = lt;
            m->ctx = ctx;
        }
    }
}

static void campaign(struct raft *r, uint64_t hand_over)
{
    NINES_ASSERT(can_campaign(r));
    r->term++;
    r->vote = r->id;
    r->role = RAFT_CANDIDATE;
    r->leader = 0;
    r->quiet = 0;
    r->vouch_until = 0;
    r->granted = 1u << r->id;
    r->refused = 0;
    r->stats.elections_started++;
    new_timeout(r);
    if (raft__has_quorum(r, r->granted)) {
        become_leader(r);
        return;
    }
    ask_votes(r, RAFT_MSG_VOTE, r->term, hand_over);
}

static void pre_campaign(struct raft *r)
{
    if (!can_campaign(r)) {
        /* A log member, or no member of its configuration: it never
         * campaigns (raft.h, "Membership change"); its timer starts over. */
        r->probing = 0;
        new_timeout(r);
        return;
    }
    r->role = RAFT_PRE_CANDIDATE;
    r->leader = 0;
    r->probing = 0;
    r->quiet = 0;
    r->vouch_until = 0;
    r->granted = 1u << r->id;
    r->refused = 0;
    r->stats.prevotes_started++;
    new_timeout(r);
    if (raft__has_quorum(r, r->granted)) {
        campaign(r, 0);
        return;
    }
    ask_votes(r, RAFT_MSG_PREVOTE, r->term + 1, 0);
}

/* Leader stickiness, the lease guard: a member that heard from a leader
 * within E ticks (or leads) grants no (pre-)vote. A fresh or restarted
 * member counts as having just heard from one: it may have acknowledged a
 * lease before it crashed. */
static int in_lease(const struct raft *r)
{
    if (r->role == RAFT_LEADER || r->now - r->last_contact < r->E)
        return 1;
    /* Quiescence (raft.h): asleep, or woken by a message less than E ticks
     * ago, a follower is sticky while its host does not report the
     * leader's node down. Only ever more refusals than the E ticks above. */
    return r->role == RAFT_FOLLOWER && r->leader != 0 && !(r->down & (1u << r->leader)) &&
           (r->quiet || r->now < r->vouch_until);
}

static void heartbeat_round(struct raft *r)
{
    for (uint32_t left = raft__peers(r); left; left &= left - 1) {
        uint32_t p = raft__low_id(left);
        struct raft_msg *m = raft__outbox_add(r, RAFT_MSG_HEARTBEAT, p);
        if (m) {
            m->commit = r->commit < r->match[p] ? r->commit : r->match[p];
            m->ctx = r->now;
        }
    }
}

/* Wakes a sleeping member. vouch: a follower stays sticky for E ticks (its
 * host has not reported the leader's node down). */
void raft__wake(struct raft *r, int vouch)
{
    if (!r->quiet)
        return;
    r->quiet = 0;
    r->stats.wakes++;
    if (r->role == RAFT_LEADER) {
        r->idle_since = r->now;
        r->hb_elapsed = r->cq_elapsed = 0;
        for (uint32_t p = 1; p <= RAFT_MAX_MEMBERS; p++) {
            r->active[p] = 0;
            r->ack[p] = 0; /* the lease restarts from this round */
        }
        heartbeat_round(r);
        return;
    }
    r->elapsed = 0;
    r->probing = 0;
    if (vouch && r->leader && !(r->down & (1u << r->leader)))
        r->vouch_until = r->now + r->E;
}

/* The leader's quiescence test, at a tick (raft.h, "Quiescence"). */
static void maybe_quiesce(struct raft *r)
{
    uint64_t last = raft__last_index(r), lt = 0;
    if (!r->Q || r->quiet || r->role != RAFT_LEADER || r->now - r->idle_since < r->Q ||
        r->commit < r->term_start || r->commit != last || r->stable != last ||
        (r->down & raft__members(r)) || raft__term_at(r, last, &lt) || raft__joint(r) ||
        r->conf_index > r->commit)
        return;
    for (uint32_t left = raft__peers(r); left; left &= left - 1) {
        uint32_t p = raft__low_id(left);
        if (r->match[p] != last || !r->ack[p] || r->now - (r->ack[p] - 1) > r->E / 2 + r->H)
            return;
    }
    r->quiet = 1;
    r->stats.quiesces++;
    for (uint32_t left = raft__peers(r); left; left &= left - 1) {
        uint32_t p = raft__low_id(left);
        struct raft_msg *m = raft__outbox_add(r, RAFT_MSG_HEARTBEAT, p);
        if (m) {
            m->commit = r->commit;
            m->ctx = r->now;
            m->index = last;
            m->log_term = lt;
            m->hint = RAFT_HB_QUIESCE;
        }
    }
}

/* Whether a message wakes a sleeping member: anything but what is stale or
 * redundant (raft.h, "Quiescence"). */
static int wakes(const struct raft *r, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_PREVOTE_RESP:
    case RAFT_MSG_VOTE_RESP:
    case RAFT_MSG_PROBE_RESP:
        return 0; /* answers to a campaign or probe this sleeper no longer runs */
    case RAFT_MSG_APPEND_RESP:
    case RAFT_MSG_HEARTBEAT_RESP:
        if (m->term < r->term)
            return 0;
        if (r->role != RAFT_LEADER || m->term != r->term)
            return 1;
        if (m->type == RAFT_MSG_APPEND_RESP)
            return m->reject || m->index > raft__last_index(r);
        return m->index != raft__last_index(r);
    case RAFT_MSG_HEARTBEAT:
        /* A repeated RAFT_HB_QUIESCE, or a heartbeat the leader sent before
         * it (overtaken on the way). */
        return !(r->role == RAFT_FOLLOWER && m->term == r->term && m->from == r->leader &&
                 (m->hint == RAFT_HB_QUIESCE || m->ctx <= r->quiet_ctx));
    case RAFT_MSG_APPEND:
        /* A late duplicate: nothing we lack (the leader's entries of one
         * term never change, and our log ends at its last entry). */
        return !(r->role == RAFT_FOLLOWER && m->term == r->term && m->from == r->leader &&
                 m->index + m->n_entries <= raft__last_index(r));
    default:
        return 1;
    }
}

static int log_up_to_date(const struct raft *r, uint64_t index, uint64_t term)
{
    uint64_t lt = 0;
    raft__term_at(r, raft__last_index(r), &lt);
    return term > lt || (term == lt && index >= raft__last_index(r));
}

/* The TIMEOUT_NOW of a leader that hands over to p (raft_hand_over, and
 * a removed leader's step-down). */
void raft__fill_timeout_now(const struct raft *r, uint32_t p, struct raft_msg *out)
{
    memset(out, 0, sizeof(*out));
    out->group = r->group;
    out->type = RAFT_MSG_TIMEOUT_NOW;
    out->from = r->id;
    out->to = p;
    out->term = r->term;
    out->index = raft__last_index(r);
    out->commit = r->commit;
}

/* The storage member (not us) with the longest acknowledged log, ties: the
 * one heard from last; 0 when there is none. */
uint32_t raft__hand_over_target(const struct raft *r)
{
    uint32_t best = 0;
    for (uint32_t left = raft__peers(r) & raft__members(r) & ~r->conf.log; left; left &= left - 1) {
        uint32_t p = raft__low_id(left);
        if (!best || r->match[p] > r->match[best] ||
            (r->match[p] == r->match[best] && r->ack[p] > r->ack[best]))
            best = p;
    }
    return best;
}

static void maybe_commit(struct raft *r)
{
    uint64_t before = r->commit;
    uint64_t val[RAFT_MAX_MEMBERS + 1] = {0};
    for (uint32_t left = raft__members(r); left; left &= left - 1) {
        uint32_t p = raft__low_id(left);
        val[p] = p == r->id ? r->stable : r->match[p];
    }
    uint64_t q = raft__quorum_value(r, val), t;
    /* Only entries of the current term commit by counting (§5.4.2). */
    if (q > r->commit && !raft__term_at(r, q, &t) && t == r->term)
        r->commit = q;
    if (before < r->conf_index && r->conf_index <= r->commit)
        for (uint32_t gone =
                 (r->prev.voters | r->prev.voters_out) & ~raft__members(r) & ~raft__bit(r->id);
             gone; gone &= gone - 1)
            raft__farewell(r, raft__low_id(gone));
    raft__conf_progress(r);
}

static int drop(struct raft *r)
{
    r->stats.dropped++;
    return NERR_INVALID;
}

/* Structural checks that need no state beyond the membership. */
static int malformed(const struct raft *r, const struct raft_msg *m)
{
    if (m->group != r->group || m->to != r->id || m->from == 0 || m->from > RAFT_MAX_MEMBERS ||
        m->from == r->id)
        return 1;
    if (m->type < RAFT_MSG_APPEND || m->type >= RAFT_MSG_TYPE_END)
        return 1;
    /* A sender in no configuration we know: dropped, unless membership may
     * change and it is a leader's or a candidate's request. A member that
     * lags behind a change must still hear a leader that was added by it,
     * and vote for one (raft.h, "Membership change"). Answers and probes
     * only matter to who asked, who knows its members. */
    if (!(r->known & raft__bit(m->from)) &&
        !(r->open && (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
                      m->type == RAFT_MSG_SNAPSHOT || m->type == RAFT_MSG_TIMEOUT_NOW ||
                      m->type == RAFT_MSG_PREVOTE || m->type == RAFT_MSG_VOTE)))
        return 1;
    /* Only a refusal or a probe can come from a member that never saw a
     * term yet. */
    if (m->term == 0 && m->type != RAFT_MSG_PREVOTE_RESP && m->type != RAFT_MSG_PROBE &&
        m->type != RAFT_MSG_PROBE_RESP)
        return 1;
    if (m->term >= RAFT_ABSURD || m->index >= RAFT_ABSURD || m->commit >= RAFT_ABSURD ||
        m->ctx >= RAFT_ABSURD || m->log_term > m->term)
        return 1;
    if (m->n_entries &&
        (m->type != RAFT_MSG_APPEND || !m->entries || m->n_entries > RAFT_MAX_BATCH))
        return 1;
    if (m->data_len &&
        (m->type != RAFT_MSG_SNAPSHOT || !m->data || m->data_len > RAFT_MAX_SNAPSHOT))
        return 1;
    switch (m->type) {
    case RAFT_MSG_APPEND: {
        if (m->commit > m->index + m->n_entries || (m->index == 0 && m->log_term != 0))
            return 1;
        uint64_t pt = m->log_term;
        for (uint32_t i = 0; i < m->n_entries; i++) {
            const struct raft_entry *e = &m->entries[i];
            struct raft_conf c;
            if (e->index != m->index + 1 + i || e->term < pt || e->term > m->term ||
                e->len > RAFT_MAX_ENTRY || (e->len && !e->data) ||
                (e->type != RAFT_ENTRY_NORMAL && e->type != RAFT_ENTRY_CONF) ||
                (e->type == RAFT_ENTRY_CONF && raft_conf_decode(e->data, e->len, &c)))
                return 1;
            pt = e->term;
        }
        break;
    }
    case RAFT_MSG_APPEND_RESP:
        if (m->reject && m->hint > m->index)
            return 1;
        break;
    case RAFT_MSG_SNAPSHOT: {
        const struct raft_conf *c = &m->conf;
        if (m->index == 0 || m->log_term == 0 || m->commit < m->index ||
            ((c->voters | c->voters_out | c->log) && raft_conf_check(c, 0, NULL)))
            return 1;
        break;
    }
    default:
        break;
    }
    return 0;
}

static void reply_append(struct raft *r, uint32_t to, uint64_t index, int reject, uint64_t hint)
{
    struct raft_msg *m = raft__outbox_add(r, RAFT_MSG_APPEND_RESP, to);
    if (m) {
        m->index = index;
        m->reject = (uint32_t)reject;
        m->hint = hint;
    }
}

static void heard_leader(struct raft *r, uint32_t from)
{
    if (r->role != RAFT_FOLLOWER)
        raft__become_follower(r, r->term, from);
    r->leader = from;
    r->last_contact = r->now;
    r->elapsed = 0;
    r->probing = 0;
}

static int handle_append(struct raft *r, const struct raft_msg *m)
{
    heard_leader(r, m->from);
    if (m->index < r->commit) {
        reply_append(r, m->from, r->commit, 0, 0);
        return 0;
    }
    uint64_t t;
    if (raft__term_at(r, m->index, &t) || t != m->log_term) {
        /* Fast backtracking: the largest index that could still match is
         * the last one whose term is <= the leader's term at m->index. */
        uint64_t hint = m->index > raft__last_index(r) ? raft__last_index(r) : m->index - 1;
        NINES_ASSERT(m->index > 0 || hint == 0);
        while (hint > r->commit && !raft__term_at(r, hint, &t) && t > m->log_term)
            hint--;
        reply_append(r, m->from, m->index, 1, hint);
        return 0;
    }
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (e->index <= raft__last_index(r)) {
            raft__term_at(r, e->index, &t);
            if (t == e->term)
                continue;
            log_truncate(r, e->index);
        }
        if (raft__log_append(r, e->term, e->data, e->len, e->type))
            return NERR_NOMEM;
    }
    uint64_t last_new = m->index + m->n_entries;
    uint64_t c = m->commit < last_new ? m->commit : last_new;
    if (c > r->commit)
        r->commit = c;
    reply_append(r, m->from, last_new, 0, 0);
    return 0;
}

static int handle_snapshot(struct raft *r, const struct raft_msg *m)
{
    heard_leader(r, m->from);
    uint64_t t;
    if (m->index <= r->commit) {
        reply_append(r, m->from, r->commit, 0, 0);
        return 0;
    }
    if (!raft__term_at(r, m->index, &t) && t == m->log_term) {
        /* Our log already holds it: entries after it may be acknowledged
         * by us, so keep them and just advance the commit index. */
        r->commit = m->index;
        reply_append(r, m->from, m->index, 0, 0);
        return 0;
    }
    /* Our entry at m->index differs from the leader's or is missing, so no
     * entry of ours after it can be committed: drop the whole log. */
    unsigned char *d = NULL;
    if (m->data_len) {
        d = malloc(m->data_len);
        if (!d)
            return NERR_NOMEM;
        memcpy(d, m->data, m->data_len);
    }
    while (r->log_len)
        free(r->log[--r->log_len].data);
    free(r->snap.data);
    r->snap.index = m->index;
    r->snap.term = m->log_term;
    r->snap.len = m->data_len;
    r->snap.data = d;
    r->snap.conf = (m->conf.voters | m->conf.voters_out) ? m->conf : r->base;
    r->open |= (m->conf.voters | m->conf.voters_out) != 0;
    raft__conf_adopt(r, &r->snap.conf, m->index);
    r->snap_pending = 1;
    r->commit = r->applied = r->stable = m->index;
    r->unstable_from = m->index + 1;
    reply_append(r, m->from, m->index, 0, 0);
    return 0;
}

static void handle_append_resp(struct raft *r, const struct raft_msg *m)
{
    uint32_t p = m->from;
    if (!raft__peer(r, p)) {
        /* Removed since: no progress to track. Not on a refusal or an
         * acknowledgement of the farewell itself: no ping-pong. */
        if (!m->reject && m->index < r->conf_index)
            raft__farewell(r, p);
        return;
    }
    r->active[p] = 1;
    if (!m->reject) {
        if (m->index > r->match[p]) {
            r->match[p] = m->index;
            r->match_tick[p] = r->now;
        }
        if (r->next[p] < m->index + 1)
            r->next[p] = m->index + 1;
        maybe_commit(r);
        if (r->next[p] <= raft__last_index(r))
            send_append(r, p);
        return;
    }
    if (m->index != r->next[p] - 1) {
        /* A pipelined append the follower could not take (one before it
         * was lost): send again from next[p]. Older rejects are stale. */
        if (m->index > r->next[p] - 1 && m->index <= r->sent[p]) {
            r->sent[p] = 0;
            send_append(r, p);
        }
        return;
    }
    r->sent[p] = 0;
    uint64_t nx = m->hint + 1 < r->next[p] - 1 ? m->hint + 1 : r->next[p] - 1;
    if (nx < r->match[p] + 1)
        nx = r->match[p] + 1;
    r->next[p] = nx;
    send_append(r, p);
}

static void handle_vote(struct raft *r, const struct raft_msg *m)
{
    /* Stickiness holds in the current term too: a member that took a
     * higher term from a message that names no leader (a refused pre-vote)
     * still protects the lease of the leader it heard within E ticks. */
    int grant = (r->vote == 0 || r->vote == m->from) && r->role == RAFT_FOLLOWER &&
                (r->vote == m->from || m->ctx == 1 || !in_lease(r)) &&
                log_up_to_date(r, m->index, m->log_term);
    if (grant) {
        /* Persisted through the ready's hard state before the reply goes. */
        r->vote = m->from;
        r->elapsed = 0;
    }
    struct raft_msg *o = raft__outbox_add(r, RAFT_MSG_VOTE_RESP, m->from);
    if (o)
        o->reject = !grant;
}

static void handle_prevote(struct raft *r, const struct raft_msg *m)
{
    int grant = m->term > r->term && log_up_to_date(r, m->index, m->log_term);
    struct raft_msg *o = raft__outbox_add(r, RAFT_MSG_PREVOTE_RESP, m->from);
    if (o) {
        o->reject = !grant;
        o->term = grant ? m->term : r->term;
    }
}

static void handle_probe(struct raft *r, const struct raft_msg *m)
{
    raft__farewell(r, m->from);
    int heard = r->leader != 0 && in_lease(r);
    struct raft_msg *o = raft__outbox_add(r, RAFT_MSG_PROBE_RESP, m->from);
    if (o) {
        o->reject = !heard;
        o->hint = r->leader;
    }
}

int raft_step(struct raft *r, const struct raft_msg *m)
{
    if (!m || malformed(r, m))
        return drop(r);
    /* State-dependent forgery checks: an acknowledgement of entries we never
     * had, or of a heartbeat from our future. */
    if (r->role == RAFT_LEADER && m->term == r->term) {
        if (m->type == RAFT_MSG_APPEND_RESP && !m->reject && m->index > raft__last_index(r))
            return drop(r);
        if (m->type == RAFT_MSG_HEARTBEAT_RESP && m->ctx > r->now)
            return drop(r);
    }
    if (m->term > r->term &&
        (m->type == RAFT_MSG_APPEND_RESP || m->type == RAFT_MSG_HEARTBEAT_RESP ||
         m->type == RAFT_MSG_VOTE_RESP) &&
        !m->reject)
        return drop(r); /* nobody accepts anything in a term we never reached */

    r->nomem = 0;
    if (r->quiet && wakes(r, m))
        raft__wake(r, 1);
    switch (m->type) {
    case RAFT_MSG_PROBE:
        handle_probe(r, m);
        goto out;
    case RAFT_MSG_PROBE_RESP:
        if (r->probing && !m->reject) {
            r->probing = 0;
            new_timeout(r);
            r->stats.elections_avoided++;
        } else if (r->probing) {
            r->probe_nacks |= raft__bit(m->from);
            /* Every other member but the leader (if it is one) said no. */
            uint32_t others = raft__members(r) & ~raft__bit(r->id);
            if (r->leader && r->leader != r->id && (others & raft__bit(r->leader)) &&
                !(r->probe_nacks & raft__bit(r->leader)))
                others &= ~raft__bit(r->leader);
            if (others && (r->probe_nacks & others) == others)
                pre_campaign(r);
        }
        goto out;
    default:
        break;
    }

    if (m->term > r->term) {
        if (m->type == RAFT_MSG_PREVOTE || m->type == RAFT_MSG_VOTE) {
            /* A hand-over vote comes with the old leader's consent: it gave
             * its lease up before it sent TIMEOUT_NOW (raft_hand_over). */
            if (in_lease(r) && !(m->type == RAFT_MSG_VOTE && m->ctx == 1)) {
                r->stats.votes_ignored++;
                goto out;
            }
            if (m->type == RAFT_MSG_PREVOTE) {
                handle_prevote(r, m);
                goto out;
            }
            raft__become_follower(r, m->term, 0);
        } else if (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject) {
            /* A granted pre-vote carries the proposed term; handled below. */
        } else {
            int from_leader = m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
                              m->type == RAFT_MSG_SNAPSHOT || m->type == RAFT_MSG_TIMEOUT_NOW;
            raft__become_follower(r, m->term, from_leader ? m->from : 0);
        }
    } else if (m->term < r->term) {
        if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
            m->type == RAFT_MSG_SNAPSHOT)
            reply_append(r, m->from, m->index, 1, 0); /* our term deposes it */
        else if (m->type == RAFT_MSG_PREVOTE)
            handle_prevote(r, m);
        goto out;
    }

    switch (m->type) {
    case RAFT_MSG_APPEND:
        if (handle_append(r, m))
            return NERR_NOMEM;
        break;
    case RAFT_MSG_HEARTBEAT: {
        heard_leader(r, m->from);
        uint64_t c = m->commit < raft__last_index(r) ? m->commit : raft__last_index(r);
        if (c > r->commit)
            r->commit = c;
        struct raft_msg *o = raft__outbox_add(r, RAFT_MSG_HEARTBEAT_RESP, m->from);
        if (o) {
            o->ctx = m->ctx;
            o->index = raft__last_index(r); /* lets a leader see a log that lost entries */
        }
        /* The leader goes to sleep: so do we, when our log ends at its last
         * entry and we know its commit index (raft.h, "Quiescence"). */
        uint64_t lt;
        if (m->hint == RAFT_HB_QUIESCE && r->Q && !r->quiet && r->role == RAFT_FOLLOWER &&
            !(r->down & (1u << m->from)) && !r->snap_pending && raft__last_index(r) == m->index &&
            !raft__term_at(r, m->index, &lt) && lt == m->log_term && r->commit == m->commit) {
            r->quiet = 1;
            r->quiet_ctx = m->ctx;
            r->vouch_until = 0;
            r->stats.quiesces++;
        }
        break;
    }
    case RAFT_MSG_SNAPSHOT:
        if (handle_snapshot(r, m))
            return NERR_NOMEM;
        break;
    case RAFT_MSG_APPEND_RESP:
        if (r->role == RAFT_LEADER)
            handle_append_resp(r, m);
        break;
    case RAFT_MSG_HEARTBEAT_RESP:
        if (!raft__peer(r, m->from))
            raft__farewell(r, m->from);
        else if (r->role == RAFT_LEADER) {
            r->active[m->from] = 1;
            if (m->ctx + 1 > r->ack[m->from])
                r->ack[m->from] = m->ctx + 1;
            /* (A heartbeat sent after the tick match rose: the follower had
             * processed that append before the heartbeat existed.) */
            if (m->index < r->match[m->from] && m->ctx > r->match_tick[m->from]) {
                /* The follower's log is shorter than what it acknowledged
                 * (its disk lost entries: a node run with acknowledgements
                 * before fdatasync, a lost disk): replicate to it again
                 * rather than wait for it forever. Commit never goes back. */
                r->match[m->from] = m->index;
                r->next[m->from] = m->index + 1;
                r->hb_match[m->from] = m->index;
                r->sent[m->from] = 0;
                r->stats.lost_logs++;
            }
            if (r->match[m->from] < raft__last_index(r)) {
                /* No progress since the last heartbeat answer, nor for E/2
                 * ticks: what is in flight was lost; send it again. Not
                 * sooner: a follower whose disk is slow answers several
                 * heartbeats at once after one write, and sending it what
                 * it is writing again (up to 1 MiB an append) only slows
                 * it more. */
                uint32_t p = m->from;
                if (r->match[p] == r->hb_match[p] && r->now - r->match_tick[p] >= r->E / 2 &&
                    r->now - r->resent[p] >= r->E / 2) {
                    r->sent[p] = 0;
                    r->resent[p] = r->now;
                }
                r->hb_match[m->from] = r->match[m->from];
                send_append(r, m->from);
            }
        }
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        /* The leader of this term hands over (raft_hand_over): campaign
         * now, without the pre-vote round or the gray-failure probe. */
        if ((r->role == RAFT_FOLLOWER || r->role == RAFT_PRE_CANDIDATE) && can_campaign(r))
            campaign(r, 1);
        break;
    case RAFT_MSG_VOTE:
        handle_vote(r, m);
        break;
    case RAFT_MSG_PREVOTE:
        handle_prevote(r, m);
        break;
    case RAFT_MSG_VOTE_RESP:
        if (r->role != RAFT_CANDIDATE)
            break;
        if (m->reject)
            r->refused |= raft__bit(m->from);
        else
            r->granted |= raft__bit(m->from);
        if (raft__has_quorum(r, r->granted))
            become_leader(r);
        else if (raft__quorum_lost(r, r->refused))
            raft__become_follower(r, r->term, 0);
        break;
    case RAFT_MSG_PREVOTE_RESP:
        if (r->role != RAFT_PRE_CANDIDATE)
            break;
        if (!m->reject && m->term == r->term + 1)
            r->granted |= raft__bit(m->from);
        else if (m->reject)
            r->refused |= raft__bit(m->from);
        if (raft__has_quorum(r, r->granted))
            campaign(r, 0);
        else if (raft__quorum_lost(r, r->refused))
            raft__become_follower(r, r->term, 0);
        break;
    default:
        break;
    }
out:
    raft__check_state(r);
    return r->nomem ? NERR_NOMEM : 0;
}

/* A timer that runs out during an advance of n > 1 ticks (the host was
 * stalled) fires at the next advance instead: the messages that arrived
 * during the stall are stepped first. Returns 1 when the timer fires now.
 * *elapsed stops one tick short; a timer already there fires whatever n is,
 * so a host that only ever advances in bulk still times out. */
static int timer_run(uint32_t *elapsed, uint32_t limit, uint64_t n)
{
    if (*elapsed + n < limit) {
        *elapsed += (uint32_t)n;
        return 0;
    }
    if (n > 1 && *elapsed + 1 < limit) {
        *elapsed = limit - 1;
        return 0;
    }
    return 1;
}

void raft_elapse(struct raft *r, uint64_t n)
{
    if (n == 0)
        return;
    if (n > RAFT_ABSURD - r->now)
        n = RAFT_ABSURD - r->now;
    uint64_t before = r->now;
    r->now += n;
    raft__check_state(r);
    if (r->quiet) {
        /* Asleep: the clock moves (a leader's last lease runs out in real
         * time, last_contact ages), no timer runs. */
        if (r->role == RAFT_LEADER)
            r->last_contact = r->now;
        return;
    }
    if (r->role == RAFT_LEADER) {
        r->last_contact = r->now;
        if (r->hb_elapsed + n >= r->H) {
            r->hb_elapsed = 0; /* one round, however many were due */
            heartbeat_round(r);
        } else {
            r->hb_elapsed += (uint32_t)n;
        }
        if (timer_run(&r->cq_elapsed, r->E, n)) {
            r->cq_elapsed = 0;
            uint32_t act = raft__bit(r->id);
            for (uint32_t p = 1; p <= RAFT_MAX_MEMBERS; p++) {
                if (raft__peer(r, p) && r->active[p])
                    act |= raft__bit(p);
                r->active[p] = 0;
            }
            if (!raft__has_quorum(r, act)) {
                r->stats.checkquorum_stepdowns++;
                raft__become_follower(r, r->term, 0);
                return;
            }
        }
        maybe_quiesce(r);
        return;
    }
    /* Sticky resume: what this member stepped since the last advance was
     * stepped at the old tick, but may have arrived at any time since (the
     * host was stalled). A leader heard then was heard "now": its followers
     * stay sticky for E ticks from here (the lease argument counts from the
     * receipt), and the election timer restarts. */
    if (n > 1 && r->last_contact == before) {
        /* Also when a higher term made it forget that leader since, or it
         * stepped down itself: the votes it refuses protect a lease that
         * may rest on what it acknowledged at the old tick. */
        r->last_contact = r->now - 1;
        if (r->role == RAFT_FOLLOWER && r->leader != 0) {
            r->elapsed = 0;
            n = 1;
        }
    }
    if (r->probing) {
        if (timer_run(&r->probe_elapsed, probe_ticks(r), n))
            pre_campaign(r);
        return;
    }
    if (!timer_run(&r->elapsed, r->timeout, n))
        return;
    r->elapsed = r->timeout;
    if (!can_campaign(r) && !(raft__members(r) & raft__bit(r->id))) {
        /* No member of its configuration: it never campaigns and has no
         * leader to check on (raft.h, "Membership change"). A log member
         * still probes below: its probe wakes a sleeping leader whose
         * quiesce heartbeat it missed, as a storage member's does, but it
         * never starts a pre-election (pre_campaign). */
        new_timeout(r);
        return;
    }
    if (r->role == RAFT_FOLLOWER && r->leader != 0 && (raft__members(r) & ~raft__bit(r->id))) {
        /* Gray-failure check: maybe only our link to the leader is bad. */
        r->probing = 1;
        r->probe_elapsed = 0;
        r->probe_nacks = 0;
        for (uint32_t left = raft__peers(r); left; left &= left - 1) {
            struct raft_msg *m = raft__outbox_add(r, RAFT_MSG_PROBE, raft__low_id(left));
            if (m)
                m->hint = r->leader;
        }
        return;
    }
    pre_campaign(r);
}

void raft_tick(struct raft *r)
{
    raft_elapse(r, 1);
}

int raft_propose(struct raft *r, const void *data, uint32_t len, uint64_t *index)
{
    if (r->role != RAFT_LEADER)
        return NERR_BUSY;
    raft__wake(r, 0);
    r->idle_since = r->now;
    if (len > RAFT_MAX_ENTRY)
        return NERR_LIMIT;
    if (len && !data)
        return NERR_INVALID;
    if (raft__log_append(r, r->term, data, len, RAFT_ENTRY_NORMAL))
        return NERR_NOMEM;
    if (index)
        *index = raft__last_index(r);
    r->nomem = 0;
    raft__broadcast_append(r);
    return r->nomem ? NERR_NOMEM : 0;
}

int raft_propose_batch(struct raft *r, const void *const *data, const uint32_t *len, size_t n,
                       uint64_t *first)
{
    if (r->role != RAFT_LEADER)
        return NERR_BUSY;
    raft__wake(r, 0);
    r->idle_since = r->now;
    for (size_t i = 0; i < n; i++)
        if (len[i] > RAFT_MAX_ENTRY || (len[i] && !data[i]))
            return len[i] > RAFT_MAX_ENTRY ? NERR_LIMIT : NERR_INVALID;
    uint64_t f = raft__last_index(r) + 1;
    for (size_t i = 0; i < n; i++)
        if (raft__log_append(r, r->term, data[i], len[i], RAFT_ENTRY_NORMAL)) {
            /* Keep what was appended: those entries are proposed. */
            if (first)
                *first = f;
            raft__broadcast_append(r);
            return NERR_NOMEM;
        }
    if (first)
        *first = f;
    r->nomem = 0;
    raft__broadcast_append(r);
    return r->nomem ? NERR_NOMEM : 0;
}

int raft_compact(struct raft *r, uint64_t index, const void *data, uint32_t len)
{
    uint64_t t;
    if (index <= r->snap.index || index > r->applied || raft__term_at(r, index, &t))
        return NERR_INVALID;
    if (len > RAFT_MAX_SNAPSHOT || (len && !data))
        return NERR_LIMIT;
    unsigned char *d = NULL;
    if (len) {
        d = malloc(len);
        if (!d)
            return NERR_NOMEM;
        memcpy(d, data, len);
    }
    struct raft_conf c;
    uint64_t at;
    raft__conf_at(r, index, &c, &at);
    size_t drop_n = (size_t)(index - r->snap.index);
    for (size_t i = 0; i < drop_n; i++)
        free(r->log[i].data);
    memmove(r->log, r->log + drop_n, (r->log_len - drop_n) * sizeof(*r->log));
    r->log_len -= drop_n;
    free(r->snap.data);
    r->snap.index = index;
    r->snap.term = t;
    r->snap.len = len;
    r->snap.data = d;
    r->snap.conf = c;
    return 0;
}

int raft_hand_over(struct raft *r, struct raft_msg *out)
{
    uint32_t best = r->role == RAFT_LEADER ? raft__hand_over_target(r) : 0;
    if (!best)
        return NERR_BUSY;
    raft__fill_timeout_now(r, best, out);
    r->stats.hand_overs++;
    raft__become_follower(r, r->term, 0);
    return 0;
}

int raft_heartbeat(const struct raft *r, uint32_t to, struct raft_msg *out)
{
    if (r->role != RAFT_LEADER || r->quiet || to == 0 || to > RAFT_MAX_MEMBERS ||
        !raft__peer(r, to))
        return NERR_BUSY;
    memset(out, 0, sizeof(*out));
    out->group = r->group;
    out->type = RAFT_MSG_HEARTBEAT;
    out->from = r->id;
    out->to = to;
    out->term = r->term;
    out->ctx = r->now; /* commit 0: the follower's commit index stays */
    return 0;
}

int raft_ready_get(struct raft *r, struct raft_ready *rd)
{
    memset(rd, 0, sizeof(*rd));
    if (r->snap_pending)
        rd->snapshot = &r->snap;
    if (r->unstable_from <= raft__last_index(r)) {
        rd->entries = &r->log[r->unstable_from - raft__first_index(r)];
        rd->n_entries = (size_t)(raft__last_index(r) - r->unstable_from + 1);
    }
    struct raft_hard_state hs = {r->term, r->vote, r->commit};
    /* Against what the host persisted last: the term never decreases, a
     * vote is cast at most once per term (I1), the commit index never
     * decreases (I4). */
    NINES_ASSERT(hs.term >= r->prev_hs.term);
    NINES_ASSERT(hs.term > r->prev_hs.term || r->prev_hs.vote == 0 || hs.vote == r->prev_hs.vote);
    NINES_ASSERT(hs.commit >= r->prev_hs.commit);
    if (hs.term != r->prev_hs.term || hs.vote != r->prev_hs.vote ||
        hs.commit != r->prev_hs.commit) {
        rd->has_hard_state = 1;
        rd->hs = hs;
    }
    rd->msgs = r->msgs;
    rd->n_msgs = r->n_msgs;
    if (r->commit > r->applied) {
        rd->committed = &r->log[r->applied + 1 - raft__first_index(r)];
        rd->n_committed = (size_t)(r->commit - r->applied);
    }
    r->ready_applied = r->commit;
    r->ready_last = raft__last_index(r);
    return rd->snapshot || rd->n_entries || rd->has_hard_state || rd->n_msgs || rd->n_committed;
}

/* Asleep, with nothing to send: gives back the outbox and the log's spare
 * room (an idle group's memory; raft.h, "Quiescence"). Pointers into the
 * log were never stable across calls (appends move it too). */
static void trim_idle(struct raft *r)
{
    free(r->msgs);
    r->msgs = NULL;
    r->cap_msgs = 0;
    if (r->log_cap > 8 && r->log_cap > 2 * r->log_len) {
        size_t cap = r->log_len < 8 ? 8 : r->log_len;
        struct raft_entry *nl = realloc(r->log, cap * sizeof(*nl));
        if (nl) {
            r->log = nl;
            r->log_cap = cap;
        }
    }
}

void raft_ready_advance(struct raft *r)
{
    r->prev_hs = (struct raft_hard_state){r->term, r->vote, r->commit};
    r->stable = r->ready_last;
    r->unstable_from = r->ready_last + 1;
    r->snap_pending = 0;
    if (r->ready_applied > r->applied)
        r->applied = r->ready_applied;
    for (size_t i = 0; i < r->n_msgs; i++)
        raft_msg_release(&r->msgs[i]);
    r->n_msgs = 0;
    if (r->role == RAFT_LEADER)
        maybe_commit(r);
    if (r->quiet && !r->n_msgs)
        trim_idle(r);
    raft__check_state(r);
}

static int conf_given(const struct raft_conf *c)
{
    return (c->voters | c->voters_out | c->log) != 0;
}

struct raft *raft_new(const struct raft_config *cfg, struct nerr *e)
{
    struct raft_conf base;
    if (cfg && conf_given(&cfg->conf)) {
        if (raft_conf_check(&cfg->conf, 0, e))
            return NULL;
        if (cfg->id == 0 || cfg->id > RAFT_MAX_MEMBERS) {
            nerr_set(e, NERR_INVALID, "raft: need 1 <= id <= %d", RAFT_MAX_MEMBERS);
            return NULL;
        }
        base = cfg->conf;
    } else if (!cfg || cfg->n_members == 0 || cfg->n_members > RAFT_MAX_MEMBERS ||
               cfg->n_members % 2 == 0 || cfg->id == 0 || cfg->id > cfg->n_members) {
        nerr_set(e, NERR_INVALID, "raft: need an odd member count <= %d and 1 <= id <= n",
                 RAFT_MAX_MEMBERS);
        return NULL;
    } else {
        base = (struct raft_conf){RAFT_ID_BITS & ((UINT32_C(1) << (cfg->n_members + 1)) - 1), 0, 0};
    }
    if (conf_given(&cfg->snapshot.conf) && raft_conf_check(&cfg->snapshot.conf, 0, e))
        return NULL;
    if (cfg->election_ticks < 4 || cfg->heartbeat_ticks == 0 ||
        cfg->heartbeat_ticks * 2 > cfg->election_ticks || cfg->drift_ppm >= 200000) {
        nerr_set(e, NERR_INVALID,
                 "raft: need election_ticks >= 4, 0 < heartbeat_ticks <= "
                 "election_ticks/2, drift_ppm < 200000");
        return NULL;
    }
    double rho = cfg->drift_ppm / 1e6;
    long lease = (long)((cfg->election_ticks - 1) * (1 - rho) / (1 + rho)) - 1;
    if (lease < 1) {
        nerr_set(e, NERR_INVALID, "raft: election_ticks too small for a lease");
        return NULL;
    }
    const struct raft_snapshot *s = &cfg->snapshot;
    uint64_t last = s->index + cfg->n_entries;
    if (cfg->applied < s->index || cfg->applied > last || (s->len && !s->data) ||
        cfg->hs.vote > RAFT_MAX_MEMBERS ||
        (!conf_given(&cfg->conf) && cfg->hs.vote > cfg->n_members) ||
        (cfg->n_entries && !cfg->entries)) {
        nerr_set(e, NERR_INVALID, "raft: inconsistent persisted state");
        return NULL;
    }
    for (size_t i = 0; i < cfg->n_entries; i++)
        if (cfg->entries[i].index != s->index + 1 + i ||
            cfg->entries[i].term < (i ? cfg->entries[i - 1].term : s->term) ||
            cfg->entries[i].term > cfg->hs.term) {
            nerr_set(e, NERR_CORRUPT, "raft: persisted entry %zu out of sequence", i);
            return NULL;
        }
    struct raft *r = calloc(1, sizeof(*r));
    if (!r)
        goto nomem;
    r->group = cfg->group;
    r->id = cfg->id;
    r->base = base;
    r->open = conf_given(&cfg->conf) || conf_given(&s->conf);
    r->E = cfg->election_ticks;
    r->H = cfg->heartbeat_ticks;
    r->Q = cfg->quiesce_ticks;
    r->lease_ticks = (uint32_t)lease;
    rng_seed(&r->rng, cfg->seed ^ (UINT64_C(0x5851f42d4c957f2d) * cfg->id));
    r->term = cfg->hs.term;
    r->vote = cfg->hs.vote;
    r->snap.index = s->index;
    r->snap.term = s->term;
    r->snap.conf = conf_given(&s->conf) ? s->conf : base;
    r->known = base.voters | base.voters_out;
    raft__conf_adopt(r, &r->snap.conf, s->index);
    if (s->len) {
        r->snap.data = malloc(s->len);
        if (!r->snap.data)
            goto nomem;
        memcpy(r->snap.data, s->data, s->len);
        r->snap.len = s->len;
    }
    for (size_t i = 0; i < cfg->n_entries; i++) {
        /* CONF only when it decodes: see raft_new in raft.h. */
        const struct raft_entry *pe = &cfg->entries[i];
        struct raft_conf c;
        uint32_t type = pe->type == RAFT_ENTRY_CONF && !raft_conf_decode(pe->data, pe->len, &c)
                            ? RAFT_ENTRY_CONF
                            : RAFT_ENTRY_NORMAL;
        if (raft__log_append(r, pe->term, pe->data, pe->len, type))
            goto nomem;
    }
    r->commit = cfg->hs.commit < last ? cfg->hs.commit : last;
    if (r->commit < s->index)
        r->commit = s->index;
    r->applied = cfg->applied;
    if (r->commit < r->applied)
        r->commit = r->applied;
    r->prev_hs = (struct raft_hard_state){r->term, r->vote, r->commit};
    r->stable = last;
    r->unstable_from = last + 1;
    r->role = RAFT_FOLLOWER;
    r->last_contact = 0; /* see in_lease: a restart is sticky for E ticks */
    new_timeout(r);
    return r;
nomem:
    raft_free(r);
    nerr_set(e, NERR_NOMEM, "raft: out of memory");
    return NULL;
}

void raft_free(struct raft *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->log_len; i++)
        free(r->log[i].data);
    free(r->log);
    free(r->snap.data);
    for (size_t i = 0; i < r->n_msgs; i++)
        raft_msg_release(&r->msgs[i]);
    free(r->msgs);
    free(r);
}

int raft_lease_valid(const struct raft *r)
{
    if (r->quiet || r->role != RAFT_LEADER || r->commit < r->term_start ||
        r->now < r->lead_start + r->E)
        return 0;
    /* The latest heartbeat a quorum acknowledged — of both configurations
     * when joint; we count as acknowledging every one where we vote. */
    uint64_t val[RAFT_MAX_MEMBERS + 1] = {0};
    for (uint32_t left = raft__members(r); left; left &= left - 1) {
        uint32_t p = raft__low_id(left);
        val[p] = p == r->id ? UINT64_MAX : r->ack[p];
    }
    uint64_t q = raft__quorum_value(r, val);
    if (q == UINT64_MAX)
        return 1; /* a quorum of ourselves alone */
    if (q == 0 || q - 1 < r->lead_start)
        return 0;
    return r->now < q - 1 + r->lease_ticks;
}

void raft_wake(struct raft *r)
{
    raft__wake(r, 1);
    raft__check_state(r);
}

void raft_peer_down(struct raft *r, uint32_t id)
{
    if (id == 0 || id > RAFT_MAX_MEMBERS || id == r->id)
        return;
    r->down |= 1u << id;
    /* A follower sleeping (or sticky after a wake-up) under that leader:
     * the host waited E ticks already; forget the leader and let the
     * election timer run out within [0, E) ticks (its timeout is random in
     * [E, 2E)). The E-tick stickiness after hearing it is left alone. */
    if (r->role == RAFT_FOLLOWER && r->leader == id && (r->quiet || r->now < r->vouch_until)) {
        if (r->quiet) {
            r->quiet = 0;
            r->stats.wakes++;
            r->stats.wakes_peer_down++;
        }
        r->vouch_until = 0;
        r->probing = 0;
        r->leader = 0;
        if (r->elapsed < r->E)
            r->elapsed = r->E;
    }
    raft__check_state(r);
}

void raft_peer_up(struct raft *r, uint32_t id)
{
    if (id == 0 || id > RAFT_MAX_MEMBERS || id == r->id)
        return;
    r->down &= ~(1u << id);
    if (r->role == RAFT_LEADER)
        raft__wake(r, 0);
    raft__check_state(r);
}

int raft_quiescent(const struct raft *r)
{
    return r->quiet;
}

uint32_t raft_lease_ticks(const struct raft *r)
{
    return r->lease_ticks;
}
enum raft_role raft_role(const struct raft *r)
{
    return r->role;
}
uint64_t raft_term(const struct raft *r)
{
    return r->term;
}
uint32_t raft_leader(const struct raft *r)
{
    return r->leader;
}
uint64_t raft_match(const struct raft *r, uint32_t id)
{
    if (r->role != RAFT_LEADER || id < 1 || id > RAFT_MAX_MEMBERS)
        return 0;
    return id == r->id ? raft__last_index(r) : r->match[id];
}
uint64_t raft_commit(const struct raft *r)
{
    return r->commit;
}
uint64_t raft_last_index(const struct raft *r)
{
    return raft__last_index(r);
}
uint64_t raft_first_index(const struct raft *r)
{
    return raft__first_index(r);
}

const struct raft_entry *raft_entry_at(const struct raft *r, uint64_t index)
{
    if (index < raft__first_index(r) || index > raft__last_index(r))
        return NULL;
    return &r->log[index - raft__first_index(r)];
}

void raft_get_stats(const struct raft *r, struct raft_stats *st)
{
    *st = r->stats;
}

int raft_term_at(const struct raft *r, uint64_t index, uint64_t *term)
{
    return raft__term_at(r, index, term) ? NERR_NOTFOUND : 0;
}
