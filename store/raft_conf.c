/*
 * raft_conf.c — membership change by joint consensus (raft.h, "Membership
 * change"; Raft §6): configurations, their encoding as CONF entries, the
 * configuration at an index, quorums over the configuration in effect and
 * the leader's side of a change. The protocol that uses them is in raft.c;
 * raft_internal.h says what the two share.
 */
#include "store/raft_internal.h"

static uint32_t popcount(uint32_t x)
{
    return (uint32_t)__builtin_popcount(x);
}

/* set holds a majority of voters (an empty voter set: no constraint). */
static int majority(uint32_t set, uint32_t voters)
{
    return voters == 0 || popcount(set & voters) > popcount(voters) / 2;
}

/* A quorum of the configuration in effect: a majority of voters, and of
 * voters_out when joint (Raft §6). */
int raft__has_quorum(const struct raft *r, uint32_t set)
{
    return majority(set, r->conf.voters) && majority(set, r->conf.voters_out);
}

/* Refusals from a majority of either half: the campaign is lost (as
 * before for one configuration: refusals from a quorum). */
int raft__quorum_lost(const struct raft *r, uint32_t set)
{
    return (r->conf.voters && majority(set, r->conf.voters)) ||
           (raft__joint(r) && majority(set, r->conf.voters_out));
}

/* The largest x such that a majority of the ids in voters have val >= x. */
static uint64_t majority_value(const uint64_t *val, uint32_t voters)
{
    uint64_t a[RAFT_MAX_MEMBERS] = {0}; /* voters is never empty; gcc -O3 cannot tell */
    uint32_t k = 0;
    for (uint32_t left = voters; left; left &= left - 1)
        a[k++] = val[raft__low_id(left)];
    /* Descending insertion sort; k is tiny. */
    for (uint32_t i = 1; i < k; i++)
        for (uint32_t j = i; j > 0 && a[j] > a[j - 1]; j--) {
            uint64_t t = a[j];
            a[j] = a[j - 1];
            a[j - 1] = t;
        }
    return a[k / 2];
}

/* The same over the configuration in effect (both halves when joint). */
uint64_t raft__quorum_value(const struct raft *r, const uint64_t *val)
{
    uint64_t q = majority_value(val, r->conf.voters);
    if (raft__joint(r)) {
        uint64_t o = majority_value(val, r->conf.voters_out);
        if (o < q)
            q = o;
    }
    return q;
}

#define RAFT_CONF_VERSION 1

int raft_conf_check(const struct raft_conf *c, int target, struct nerr *e)
{
    uint32_t all = c->voters | c->voters_out;
    if ((all | c->log) & ~RAFT_ID_BITS)
        return nerr_set(e, NERR_INVALID, "raft: member ids are 1..%d (at most %d members)",
                        RAFT_MAX_MEMBERS, RAFT_MAX_MEMBERS);
    if (c->voters == 0)
        return nerr_set(e, NERR_INVALID, "raft: a configuration needs at least one voter");
    if (target && c->voters_out)
        return nerr_set(e, NERR_INVALID,
                        "raft: a target configuration is not joint (voters_out must be 0)");
    if (c->log & ~all)
        return nerr_set(e, NERR_INVALID, "raft: log member %d is not a voter",
                        __builtin_ctz(c->log & ~all));
    if (!(c->voters & ~c->log) || (c->voters_out && !(c->voters_out & ~c->log)))
        return nerr_set(e, NERR_INVALID,
                        "raft: a configuration needs a storage voter (a log member never leads)");
    /* Storage members are a majority of the voters (of each half when
     * joint): then every committed entry is on a storage member, and with
     * every member up the most up-to-date storage member gets the votes of
     * the other storage members, a majority. With log members a majority,
     * a group can commit entries only log members hold and then no member
     * can lead (found by test_raft_sim). */
    if (popcount(c->voters & ~c->log) * 2 <= popcount(c->voters) ||
        popcount(c->voters_out & ~c->log) * 2 < popcount(c->voters_out) + (c->voters_out != 0))
        return nerr_set(e, NERR_INVALID,
                        "raft: log members must be a minority of the voters (%d of %d)",
                        popcount(c->voters & c->log), popcount(c->voters));
    return 0;
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void raft_conf_encode(const struct raft_conf *c, unsigned char out[RAFT_CONF_ENC_LEN])
{
    put32(out, RAFT_CONF_VERSION);
    put32(out + 4, c->voters);
    put32(out + 8, c->voters_out);
    put32(out + 12, c->log);
}

int raft_conf_decode(const void *data, uint32_t len, struct raft_conf *c)
{
    const unsigned char *p = data;
    if (len != RAFT_CONF_ENC_LEN || !p || get32(p) != RAFT_CONF_VERSION)
        return NERR_INVALID;
    struct raft_conf d = {get32(p + 4), get32(p + 8), get32(p + 12)};
    if (raft_conf_check(&d, 0, NULL))
        return NERR_INVALID;
    *c = d;
    return 0;
}

/* The configuration in effect at index (>= snap.index): the latest CONF
 * entry at or before it, else the snapshot's. */
void raft__conf_at(const struct raft *r, uint64_t index, struct raft_conf *c, uint64_t *at)
{
    if (index > raft__last_index(r))
        index = raft__last_index(r);
    for (uint64_t i = index; i > r->snap.index; i--) {
        const struct raft_entry *e = &r->log[i - raft__first_index(r)];
        if (e->type == RAFT_ENTRY_CONF && !raft_conf_decode(e->data, e->len, c)) {
            *at = i;
            return;
        }
    }
    *c = r->snap.conf;
    *at = r->snap.index;
}

/* c, made by the entry at index (or the snapshot at it), is now the
 * configuration in effect. A leader starts tracking the members it adds
 * (Raft §6: it replicates to them at once, before they count). */
void raft__conf_adopt(struct raft *r, const struct raft_conf *c, uint64_t index)
{
    uint32_t added = (c->voters | c->voters_out) & ~raft__members(r);
    r->prev = r->conf;
    r->conf = *c;
    r->conf_index = index;
    r->known |= raft__members(r);
    if (r->role == RAFT_LEADER)
        for (uint32_t p = 1; p <= RAFT_MAX_MEMBERS; p++)
            if ((added & raft__bit(p)) && p != r->id)
                raft__reset_progress(r, p);
}

/* The leader's side of a membership change once its latest CONF entry is
 * committed (raft.h, "Membership change"): leave a joint configuration, or
 * step down from one it is no storage member of. Not before it committed
 * an entry of its term (Ongaro 2015). */
void raft__conf_progress(struct raft *r)
{
    if (r->role != RAFT_LEADER || r->commit < r->term_start || r->conf_index > r->commit)
        return;
    if (raft__joint(r)) {
        /* Auto-leave: C_old∧C_new is committed, so C_new alone is safe. */
        struct raft_conf c = {r->conf.voters, 0, r->conf.log & r->conf.voters};
        unsigned char enc[RAFT_CONF_ENC_LEN];
        raft_conf_encode(&c, enc);
        if (raft__log_append(r, r->term, enc, sizeof(enc), RAFT_ENTRY_CONF)) {
            r->nomem = 1; /* tried again at the next commit or ready */
            return;
        }
        r->stats.conf_changes++;
        r->idle_since = r->now;
        raft__broadcast_append(r);
        return;
    }
    if (raft__storage_member(r, r->id))
        return;
    /* Removed (or made a log member): hand over to a storage member of the
     * new configuration, as raft_hand_over does. Its lease ends here. */
    uint32_t p = raft__hand_over_target(r);
    if (p) {
        struct raft_msg *m = raft__outbox_add(r, RAFT_MSG_TIMEOUT_NOW, p);
        if (m)
            raft__fill_timeout_now(r, p, m);
    }
    r->stats.conf_stepdowns++;
    raft__become_follower(r, r->term, 0);
}

/* Tells p, a member this leader's committed configuration removed, that
 * the removal is committed: an empty APPEND after the CONF entry, with the
 * commit index up to it. A p whose log holds that entry takes the commit
 * index (the consistency check makes it safe) and, no member and no
 * removal pending, stops checking on its leader and campaigning (raft.h,
 * "Membership change"); any other p refuses it, and its answer is
 * ignored. */
void raft__farewell(struct raft *r, uint32_t p)
{
    uint64_t t;
    if (r->role != RAFT_LEADER || r->conf_index > r->commit || raft__peer(r, p) ||
        !(r->known & raft__bit(p)) || raft__term_at(r, r->conf_index, &t))
        return;
    struct raft_msg *m = raft__outbox_add(r, RAFT_MSG_APPEND, p);
    if (m) {
        m->index = r->conf_index;
        m->log_term = t;
        m->commit = r->conf_index;
    }
}

int raft_propose_conf(struct raft *r, const struct raft_conf *target, uint64_t *index)
{
    if (!target || raft_conf_check(target, 1, NULL))
        return NERR_INVALID;
    /* One change at a time, and none before this leader committed an entry
     * of its term (raft.h, "Membership change"). */
    if (r->role != RAFT_LEADER || r->commit < r->term_start || raft__joint(r) ||
        r->conf_index > r->commit)
        return NERR_BUSY;
    raft__wake(r, 0);
    r->idle_since = r->now;
    /* The joint configuration: a member of the target has its new kind
     * already (the leave-joint entry keeps it), a member that leaves its
     * old one. A kind change that would leave log members a majority of
     * the outgoing half is refused: change kinds in a separate step. */
    struct raft_conf c = {target->voters, r->conf.voters,
                          (target->log & target->voters) | (r->conf.log & ~target->voters)};
    if (raft_conf_check(&c, 0, NULL))
        return NERR_INVALID;
    unsigned char enc[RAFT_CONF_ENC_LEN];
    raft_conf_encode(&c, enc);
    if (raft__log_append(r, r->term, enc, sizeof(enc), RAFT_ENTRY_CONF))
        return NERR_NOMEM;
    if (index)
        *index = raft__last_index(r);
    r->stats.conf_changes++;
    r->nomem = 0;
    raft__broadcast_append(r);
    raft__check_state(r);
    return r->nomem ? NERR_NOMEM : 0;
}

void raft_get_conf(const struct raft *r, struct raft_conf *conf)
{
    *conf = r->conf;
}

uint64_t raft_conf_index(const struct raft *r)
{
    return r->conf_index;
}

void raft_conf_at(const struct raft *r, uint64_t index, struct raft_conf *conf)
{
    uint64_t at;
    if (index < r->snap.index)
        index = r->snap.index;
    raft__conf_at(r, index, conf, &at);
}
