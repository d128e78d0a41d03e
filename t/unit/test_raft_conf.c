/*
 * test_raft_conf.c — membership change in store/raft (raft.h, "Membership
 * change"): joint consensus with auto-leave, storage and log members, and
 * one deterministic scenario per known membership bug:
 *  1. a new leader accepts no change before it committed an entry of its
 *     term (Ongaro 2015, the single-server bug);
 *  2. a member added (here a log member) votes and its acknowledgements
 *     count as soon as the configuration that holds it is in its log
 *     (etcd #10998);
 *  3. the lease is not stuck in a joint configuration, and while joint it
 *     needs acknowledgements from a quorum of both (CockroachDB #83687);
 *  4. a change survives a restart of every member at every step (etcd
 *     #19557);
 *  5. add before remove: at every step, losing any one member leaves a
 *     quorum of every configuration in effect (CockroachDB #25392).
 * Also: invalid targets and one change at a time; messages from unknown
 * ids and malformed CONF entries; a configuration taken from a snapshot
 * and reverted by truncation; a member that lags behind a change hears
 * the leader the change added; a removed leader whose removal is still
 * uncommitted campaigns when it holds the only up-to-date storage log.
 *
 * The network is test_raft.c's (raft_net.h): every tick each member ticks,
 * then queued messages are delivered until none is left; links are cut one
 * direction at a time; members crash and restart from what they persisted.
 */
#include "t/unit/raft_net.h"

static uint32_t bits(const char *ids)
{
    uint32_t m = 0;
    for (; *ids; ids++)
        m |= 1u << (*ids - '0');
    return m;
}

static int conf_eq(const struct raft_conf *a, const struct raft_conf *b)
{
    return a->voters == b->voters && a->voters_out == b->voters_out && a->log == b->log;
}

/* A leader after a few ticks, its no-op committed everywhere. */
static int settle(struct net *nt)
{
    int l = run_until_leader(nt, 200);
    run(nt, 3);
    return l;
}

/* Members `ids` start with configuration c and settle: the leader. With
 * none, the test point "<what>: no leader" fails, the net is freed and 0
 * comes back. */
static int start(struct net *nt, const char *ids, struct raft_conf c, uint64_t seed,
                 const char *what)
{
    net_init_conf(nt, ids, c, seed);
    int l = settle(nt);
    if (l <= 0) {
        ok(0, "%s: no leader", what);
        net_free(nt);
    }
    return l;
}

/* Members 1, 2 and 3 start with configuration c and settle under leader 1,
 * trying the 20 seeds after `seed` too: 1 if so. Else the test point
 * "<what>: member 1 never led" fails, the net is freed and 0 comes back. */
static int start_led_by_1(struct net *nt, struct raft_conf c, uint64_t seed, const char *what)
{
    net_init_conf(nt, "123", c, seed);
    int l = settle(nt);
    for (uint64_t s = seed + 1; l != 1 && s <= seed + 20; s++) {
        net_free(nt);
        net_init_conf(nt, "123", c, s);
        l = settle(nt);
    }
    if (l != 1) {
        ok(0, "%s: member 1 never led", what);
        net_free(nt);
        return 0;
    }
    return 1;
}

/* Leader l proposes the change to t (idx: its index), then l's ready is
 * processed and all that follows delivered; raft_propose_conf's code. */
static int change(struct net *nt, int l, const struct raft_conf *t, uint64_t *idx)
{
    int rc = raft_propose_conf(nt->r[l], t, idx);
    flush(nt, l);
    return rc;
}

static struct raft_conf conf_of(struct net *nt, int k)
{
    struct raft_conf c = {0};
    if (nt->r[k])
        raft_get_conf(nt->r[k], &c);
    return c;
}

/* The configuration the persisted state of k says (the restart rule):
 * the latest CONF entry, else the snapshot's, else the initial one. */
static struct raft_conf persisted_conf(struct net *nt, int k)
{
    struct pstore *st = &nt->st[k];
    struct raft_conf c = nt->init[k];
    if (st->snap.index && (st->snap.conf.voters | st->snap.conf.voters_out))
        c = st->snap.conf;
    for (size_t i = 0; i < st->n; i++)
        if (st->ents[i].type == RAFT_ENTRY_CONF)
            raft_conf_decode(st->ents[i].data, st->ents[i].len, &c);
    return c;
}

/* A quorum of c (a majority of voters, and of voters_out when joint). */
static int quorum_of(const struct raft_conf *c, uint32_t set)
{
    int v = __builtin_popcount(c->voters), o = __builtin_popcount(c->voters_out);
    return __builtin_popcount(set & c->voters) * 2 > v &&
           (!o || __builtin_popcount(set & c->voters_out) * 2 > o);
}

/* Checks of invalid targets and of one change at a time. */
static void test_propose_rules(void)
{
    struct net nt;
    struct raft_conf c123 = {bits("123"), 0, 0};
    net_init_conf(&nt, "123", c123, 3);
    int l = settle(&nt);
    cmp_ok(l, ">", 0, "rules: a leader");
    struct raft *L = nt.r[l];
    uint64_t idx;
    struct {
        struct raft_conf c;
        const char *what;
    } bad[] = {
        {{0, 0, 0}, "no voter"},
        {{bits("12") | 1u, 0, 0}, "id 0"},
        {{bits("12") | 1u << (RAFT_MAX_MEMBERS + 1), 0, 0}, "id above RAFT_MAX_MEMBERS"},
        {{0xffffffffu, 0, 0}, "more than RAFT_MAX_MEMBERS members"},
        {{bits("12"), 0, bits("3")}, "a log member that is no voter"},
        {{bits("12"), 0, bits("12")}, "no storage voter"},
        {{bits("123"), 0, bits("23")}, "log members a majority"},
        {{bits("124"), bits("123"), 0}, "a joint target"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct nerr e = {0};
        int rc = raft_conf_check(&bad[i].c, 1, &e);
        ok(rc == NERR_INVALID && raft_propose_conf(L, &bad[i].c, &idx) == NERR_INVALID,
           "rules: %s is NERR_INVALID (%s)", bad[i].what, e.msg);
    }
    int f = l % 3 + 1;
    struct raft_conf t = {(1u << l) | (1u << f) | (1u << 4), 0, 0};
    is_int(raft_propose_conf(nt.r[f], &t, &idx), NERR_BUSY, "rules: a follower refuses");
    add_member(&nt, 4, (struct raft_conf){t.voters, bits("123"), 0});
    cut_to(&nt, l, 1);
    is_int(raft_propose_conf(L, &t, &idx), 0, "rules: the leader takes a change");
    struct raft_conf c = conf_of(&nt, l);
    ok(c.voters == t.voters && c.voters_out == bits("123"),
       "rules: the joint configuration takes effect at the leader on append");
    flush(&nt, l);
    struct raft_conf t2 = {bits("123"), 0, 0};
    is_int(raft_propose_conf(L, &t2, &idx), NERR_BUSY, "rules: a second change while joint: busy");
    /* The joint entry commits; the leave entry is appended at the leader
     * and its acknowledgements are lost: not joint, but uncommitted. */
    nt.hold_l = l;
    nt.hold_idx = idx;
    nt.hold_mode = 3;
    cut_to(&nt, l, 0);
    for (int i = 0; i < 2 * E_TICKS && nt.hold_l; i++)
        run(&nt, 1);
    c = conf_of(&nt, l);
    ok(conf_eq(&c, &t) && raft_conf_index(L) > raft_commit(L),
       "rules: auto-leave: the leader appended the leave-joint entry by itself");
    is_int(raft_propose_conf(L, &t2, &idx), NERR_BUSY,
           "rules: a change while a configuration entry is uncommitted: busy");
    heal(&nt);
    run(&nt, 3 * E_TICKS);
    c = conf_of(&nt, l);
    ok(raft_role(L) == RAFT_LEADER && conf_eq(&c, &t) && raft_conf_index(L) <= raft_commit(L),
       "rules: the change is done");
    if (raft_role(L) != RAFT_LEADER || !conf_eq(&c, &t))
        diag("leader %d role %d conf %#x/%#x conf_index %llu commit %llu", l, raft_role(L),
             c.voters, c.voters_out, (unsigned long long)raft_conf_index(L),
             (unsigned long long)raft_commit(L));
    /* The removed member knows its removal is committed (the leader's
     * farewell append told it) and never campaigns. */
    int x = 6 - l - f;
    struct raft_conf cx = conf_of(&nt, x);
    struct raft_stats st0, st1;
    raft_get_stats(nt.r[x], &st0);
    run(&nt, 100);
    raft_get_stats(nt.r[x], &st1);
    ok(!(cx.voters & (1u << x)) && raft_conf_index(nt.r[x]) <= raft_commit(nt.r[x]),
       "rules: the removed member knows it was removed, committed");
    is_int(st1.prevotes_started - st0.prevotes_started, 0,
           "rules: and a member not in its configuration never campaigns");
    is_int(leader_of(&nt), l, "rules: the leader is undisturbed");
    is_int(nt.vote_unpersisted + nt.apply_gap, 0, "rules: votes persisted, no apply gap");
    net_free(&nt);
}

/* Messages from ids this member never knew are dropped; a CONF entry that
 * does not decode, or a snapshot with an invalid configuration, too. A
 * brand-new member created with the configuration it joins accepts its
 * leader. */
static void test_conf_messages(void)
{
    struct net nt;
    struct raft_conf c123 = {bits("123"), 0, 0};
    net_init_conf(&nt, "123", c123, 5);
    int l = settle(&nt);
    int f = l % 3 + 1;
    struct raft *r = nt.r[f];
    uint64_t term = raft_term(r), last = raft_last_index(r);
    struct raft_stats st0, st1;
    raft_get_stats(r, &st0);
    struct raft_msg hb = {.group = GROUP,
                          .type = RAFT_MSG_HEARTBEAT_RESP,
                          .from = 5,
                          .to = (uint32_t)f,
                          .term = term};
    is_int(raft_step(r, &hb), NERR_INVALID, "messages: an answer from an unknown id: dropped");
    unsigned char junk[RAFT_CONF_ENC_LEN] = {9};
    struct raft_entry bad = {term, last + 1, sizeof(junk), junk, RAFT_ENTRY_CONF};
    struct raft_msg ap = {.group = GROUP,
                          .type = RAFT_MSG_APPEND,
                          .from = (uint32_t)l,
                          .to = (uint32_t)f,
                          .term = term,
                          .index = last,
                          .log_term = term,
                          .n_entries = 1,
                          .entries = &bad};
    is_int(raft_step(r, &ap), NERR_INVALID, "messages: a CONF entry that does not decode: dropped");
    struct raft_conf nolead = {bits("12"), 0, bits("12")};
    unsigned char enc[RAFT_CONF_ENC_LEN];
    raft_conf_encode(&nolead, enc);
    bad.data = enc;
    is_int(raft_step(r, &ap), NERR_INVALID,
           "messages: a CONF entry of an invalid configuration: dropped");
    bad.type = 7;
    is_int(raft_step(r, &ap), NERR_INVALID, "messages: an entry of unknown type: dropped");
    struct raft_msg sn = {.group = GROUP,
                          .type = RAFT_MSG_SNAPSHOT,
                          .from = (uint32_t)l,
                          .to = (uint32_t)f,
                          .term = term,
                          .index = last + 5,
                          .log_term = term,
                          .commit = last + 5,
                          .conf = {0, bits("12"), 0}};
    is_int(raft_step(r, &sn), NERR_INVALID, "messages: a snapshot with an invalid configuration");
    raft_get_stats(r, &st1);
    is_int(st1.dropped - st0.dropped, 5, "messages: all counted");
    ok(raft_last_index(r) == last && raft_term(r) == term, "messages: nothing changed");
    /* A leader's request from an id it does not know yet is taken: it may
     * lag behind the change that added that leader. A member of a group
     * that never changed (built from n_members) drops it as before. */
    hb.type = RAFT_MSG_PREVOTE;
    hb.term = term + 1;
    hb.index = last;
    hb.log_term = term;
    is_int(raft_step(r, &hb), 0, "messages: a pre-vote from an id not known yet is taken");
    drain(&nt, f);
    struct raft_config c3 = {.group = GROUP,
                             .id = 1,
                             .n_members = 3,
                             .election_ticks = E_TICKS,
                             .heartbeat_ticks = 2,
                             .drift_ppm = 50000};
    struct raft *old = raft_new(&c3, NULL);
    hb.to = 1;
    hb.from = 4;
    is_int(raft_step(old, &hb), NERR_INVALID,
           "messages: a group built from n_members drops it, as before membership existed");
    raft_free(old);

    /* Member 5 joins {1,2,3}∧{1,2,5}: created empty with that configuration,
     * it takes the leader's appends from the first entry on. */
    struct raft_conf t = {bits("12") | 1u << 5, 0, 0};
    if (l == 3)
        t.voters = bits("13") | 1u << 5;
    struct raft_conf j = {t.voters, bits("123"), 0};
    add_member(&nt, 5, j);
    uint64_t idx;
    is_int(change(&nt, l, &t, &idx), 0, "messages: replace a member by 5");
    run(&nt, 5);
    is_int(raft_leader(nt.r[5]), l, "messages: the new member accepts its leader");
    struct raft_conf c = conf_of(&nt, 5);
    ok(conf_eq(&c, &t), "messages: and has the new configuration");
    is_int(raft_last_index(nt.r[5]), raft_last_index(nt.r[l]), "messages: and the whole log");
    net_free(&nt);
}

/* Bug 1 (Ongaro 2015): a new leader accepts no change before it committed
 * an entry of its term. Member 1 is driven into leadership of term 2 by
 * hand; its no-op is acknowledged only later. */
static void test_new_leader_must_commit(void)
{
    struct raft_conf c123 = {bits("123"), 0, 0};
    struct raft_config cfg = {.group = GROUP,
                              .id = 1,
                              .election_ticks = E_TICKS,
                              .heartbeat_ticks = 2,
                              .drift_ppm = 50000,
                              .seed = 5,
                              .hs = {1, 0, 0},
                              .conf = c123};
    struct raft *r = raft_new(&cfg, NULL);
    tick_until_campaign(r);
    struct raft_ready rd;
    struct raft_msg m = {
        .group = GROUP, .type = RAFT_MSG_PREVOTE_RESP, .from = 2, .to = 1, .term = 2};
    raft_step(r, &m);
    m.type = RAFT_MSG_VOTE_RESP;
    raft_step(r, &m);
    is_int(raft_role(r), RAFT_LEADER, "bug 1: member 1 leads term 2");
    while (raft_ready_get(r, &rd))
        raft_ready_advance(r);
    struct raft_conf t = {bits("124"), 0, 0};
    uint64_t idx;
    is_int(raft_propose_conf(r, &t, &idx), NERR_BUSY,
           "bug 1: no change before the leader committed an entry of its term");
    is_int(raft_last_index(r), 1, "bug 1: nothing appended");
    m.type = RAFT_MSG_APPEND_RESP;
    m.index = 1;
    raft_step(r, &m);
    is_int(raft_commit(r), 1, "bug 1: its no-op commits");
    is_int(raft_propose_conf(r, &t, &idx), 0, "bug 1: then the change is taken");
    is_int(idx, 2, "bug 1: at index 2");
    const struct raft_entry *e = raft_entry_at(r, 2);
    struct raft_conf c;
    ok(e && e->type == RAFT_ENTRY_CONF && !raft_conf_decode(e->data, e->len, &c) &&
           c.voters == bits("124") && c.voters_out == bits("123"),
       "bug 1: as one joint entry {1,2,4}∧{1,2,3}");
    raft_free(r);
}

/* Holds a replacement proposed at leader l at a given step:
 *   0 joint entry appended at the leader only
 *   1 joint entry appended everywhere, uncommitted (acks lost)
 *   2 joint committed at the leader, leave entry appended there only
 *   3 leave entry appended everywhere, uncommitted (acks lost)
 *   4 leave entry committed everywhere */
static void hold_at(struct net *nt, int l, const struct raft_conf *t, int step)
{
    uint64_t idx;
    if (step == 0)
        cut_from(nt, l, 1);
    else
        cut_to(nt, l, 1);
    if (change(nt, l, t, &idx))
        bail_out("hold_at: propose_conf refused");
    if (step <= 1)
        return;
    cut_to(nt, l, 0);
    if (step <= 3) {
        nt->hold_l = l;
        nt->hold_idx = idx;
        nt->hold_mode = step;
        for (int i = 0; i < 3 * E_TICKS && nt->hold_l; i++)
            run(nt, 1);
        if (nt->hold_l)
            bail_out("hold_at: the joint entry did not commit");
        return;
    }
    run(nt, E_TICKS);
}

/* Every live member of c has configuration c. */
static int all_conf(struct net *nt, const struct raft_conf *c)
{
    for (int k = 1; k <= N_MAX; k++)
        if ((c->voters & (1u << k)) && nt->r[k]) {
            struct raft_conf x = conf_of(nt, k);
            if (!conf_eq(&x, c))
                return 0;
        }
    return 1;
}

/* Runs until the change is done at every live member of t and a fresh
 * proposal committed on a quorum; the ticks it took or 0. */
static int finishes(struct net *nt, const struct raft_conf *t, int max)
{
    uint64_t want = 0;
    for (int tk = 1; tk <= max; tk++) {
        run(nt, 1);
        int l = leader_of(nt);
        if (l <= 0)
            continue;
        struct raft *L = nt->r[l];
        struct raft_conf c = conf_of(nt, l);
        uint64_t idx;
        if (!conf_eq(&c, t) && !c.voters_out && raft_conf_index(L) <= raft_commit(L))
            raft_propose_conf(L, t, &idx); /* the change was lost: the host retries */
        if (!all_conf(nt, t) || raft_conf_index(L) > raft_commit(L))
            continue;
        if (!want)
            want = propose(nt, l, 99);
        else if (raft_commit(L) >= want)
            return tk;
    }
    return 0;
}

/* Bug 4 (etcd #19557): at each step of a replacement {1,2,3} -> {l,s,4}
 * (l the leader, s another member, the third replaced by new member 4),
 * every member restarts from what it persisted: it comes back with the
 * configuration of its persisted log (or snapshot), the one it had, and
 * the group finishes the change. Bug 5 (CockroachDB #25392): at each step,
 * every configuration any member uses keeps a quorum when any one member
 * is lost; and with any one member crashed there, the group still commits
 * and finishes the change (proposed again when it was lost with the
 * leader). */
static void test_restart_and_loss_at_every_step(void)
{
    struct raft_conf c123 = {bits("123"), 0, 0};
    int restart_ok = 1, finish_ok = 1, quorum_ok = 1, loss_ok = 1, joint_seen = 0;
    for (int step = 0; step <= 4; step++) {
        for (int y = 0; y <= 4; y++) { /* y 0: restart all; else crash y */
            struct net nt;
            net_init_conf(&nt, "123", c123, 100 + (uint64_t)step);
            int l = settle(&nt);
            if (l <= 0) {
                ok(0, "steps: no leader (step %d)", step);
                net_free(&nt);
                return;
            }
            int s = l % 3 + 1;
            struct raft_conf t = {(1u << l) | (1u << s) | (1u << 4), 0, 0};
            add_member(&nt, 4, (struct raft_conf){t.voters, c123.voters, 0});
            hold_at(&nt, l, &t, step);
            uint32_t all = bits("1234");
            for (int k = 1; k <= 4; k++) {
                struct raft_conf c = conf_of(&nt, k);
                joint_seen |= c.voters_out != 0;
                for (int z = 1; z <= 4; z++)
                    if (!quorum_of(&c, all & ~(1u << z))) {
                        diag("step %d: member %d's configuration %#x/%#x loses its quorum "
                             "without %d",
                             step, k, c.voters, c.voters_out, z);
                        quorum_ok = 0;
                    }
            }
            if (y == 0) {
                for (int k = 1; k <= 4; k++) {
                    struct raft_conf before = conf_of(&nt, k);
                    restart(&nt, k);
                    struct raft_conf after = conf_of(&nt, k), want = persisted_conf(&nt, k);
                    if (!conf_eq(&after, &want) || !conf_eq(&after, &before)) {
                        diag("step %d: member %d restarted with voters %#x/%#x, had %#x/%#x", step,
                             k, after.voters, after.voters_out, before.voters, before.voters_out);
                        restart_ok = 0;
                    }
                }
                heal(&nt);
                if (!finishes(&nt, &t, 300)) {
                    diag("step %d: the change did not finish after restarts", step);
                    finish_ok = 0;
                }
            } else {
                crash(&nt, y);
                heal(&nt);
                if (!finishes(&nt, &t, 300)) {
                    diag("step %d: the change did not finish with member %d lost", step, y);
                    loss_ok = 0;
                }
            }
            net_free(&nt);
        }
    }
    ok(joint_seen, "steps: the joint configuration was in use");
    ok(restart_ok, "bug 4: at every step, a restarted member has its persisted configuration");
    ok(finish_ok, "bug 4: at every step, after every member restarted the change finishes");
    ok(quorum_ok, "bug 5: at every step, losing any one member leaves a quorum of every "
                  "configuration in effect");
    ok(loss_ok, "bug 5: at every step, with any one member lost the group finishes the change");
}

/* Restart from a snapshot, and catch-up by snapshot: the snapshot's
 * configuration is the one in effect. */
static void test_snapshot_conf(void)
{
    struct net nt;
    struct raft_conf c123 = {bits("123"), 0, 0};
    int l = start(&nt, "123", c123, 7, "snapshot");
    if (l <= 0)
        return;
    int f = l % 3 + 1;
    struct raft_conf t = {(1u << l) | (1u << f) | (1u << 4), 0, 1u << 4};
    struct raft_conf j = {t.voters, c123.voters, 1u << 4};
    add_member(&nt, 4, j);
    uint64_t idx;
    is_int(change(&nt, l, &t, &idx), 0, "snapshot: change to {l,f,4 (log)}");
    run(&nt, 5);
    propose(&nt, l, 1);
    run(&nt, 2);
    uint64_t ap = nt.applied[f];
    struct raft_conf hc = nt.applied_conf[f];
    ok(conf_eq(&hc, &t) && ap == raft_commit(nt.r[l]),
       "snapshot: the host applied the configuration entries");
    /* f compacts everything it applied and restarts from the snapshot. */
    is_int(raft_compact(nt.r[f], ap, "s", 1), 0, "snapshot: a follower compacts");
    struct pstore *st = &nt.st[f];
    free(st->snap.data);
    st->snap = (struct raft_snapshot){ap, 0, 1, malloc(1), hc};
    st->snap.data[0] = 's';
    raft_term_at(nt.r[f], ap, &st->snap.term);
    size_t keep = 0;
    for (size_t i = 0; i < st->n; i++) {
        if (st->ents[i].index <= ap)
            free(st->ents[i].data);
        else
            st->ents[keep++] = st->ents[i];
    }
    st->n = keep;
    restart(&nt, f);
    struct raft_conf c = conf_of(&nt, f);
    ok(conf_eq(&c, &t) && raft_first_index(nt.r[f]) == ap + 1,
       "snapshot: restarted from the snapshot alone, it has its configuration");
    /* 4 loses its disk while the leader compacts: it comes back empty with
     * the configuration it joined and catches up by a snapshot. */
    crash(&nt, 4);
    for (int v = 0; v < 5; v++)
        propose(&nt, l, 10 + (uint64_t)v);
    run(&nt, 2);
    is_int(raft_compact(nt.r[l], nt.applied[l], "s", 1), 0, "snapshot: the leader compacts");
    ps_truncate(&nt.st[4], 0);
    memset(&nt.st[4].hs, 0, sizeof(nt.st[4].hs));
    restart(&nt, 4);
    run(&nt, 10);
    c = conf_of(&nt, 4);
    ok(conf_eq(&c, &t) && nt.st[4].snap.index > 0 && conf_eq(&nt.st[4].snap.conf, &t),
       "snapshot: a member caught up by snapshot takes the snapshot's configuration");
    is_int(raft_last_index(nt.r[4]), raft_last_index(nt.r[l]), "snapshot: and the log after it");
    net_free(&nt);
}

/* Bug 2 (etcd #10998): a member added by a change (here 4, a log member)
 * acknowledges and votes as soon as the configuration that holds it is in
 * its log: with storage member 2 down during the joint phase, the change
 * commits only on 4's acknowledgements; then with the leader down, the
 * remaining storage member is elected only with 4's vote. */
static void test_added_member_votes(void)
{
    struct net nt;
    struct raft_conf c123 = {bits("123"), 0, 0};
    int l = start(&nt, "123", c123, 11, "bug 2");
    if (l <= 0)
        return;
    /* Keep the leader and one other storage member s; replace the third
     * member x by log member 4. */
    int s = l % 3 + 1, x = 6 - l - s;
    struct raft_conf t = {(1u << l) | (1u << s) | (1u << 4), 0, 1u << 4};
    struct raft_conf j = {t.voters, c123.voters, 1u << 4};
    add_member(&nt, 4, j);
    uint64_t idx;
    /* s is down: the new half {l,s,4} has a quorum only with 4. */
    crash(&nt, s);
    is_int(change(&nt, l, &t, &idx), 0, "bug 2: {l,s,x} -> {l,s,4 (log)}");
    run(&nt, 5);
    struct raft_conf c = conf_of(&nt, l);
    ok(conf_eq(&c, &t) && raft_conf_index(nt.r[l]) <= raft_commit(nt.r[l]),
       "bug 2: with s down the change committed: 4's acknowledgements count");
    struct raft_stats st;
    raft_get_stats(nt.r[4], &st);
    restart(&nt, s);
    run(&nt, 5);
    /* The leader goes; x is removed and down. s must win with 4's vote. */
    crash(&nt, x);
    crash(&nt, l);
    int nl = 0, t0;
    for (t0 = 1; t0 <= 6 * E_TICKS && nl <= 0; t0++) {
        run(&nt, 1);
        nl = leader_of(&nt);
    }
    is_int(nl, s, "bug 2: the storage member is elected with the log member's vote");
    raft_get_stats(nt.r[4], &st);
    is_int(st.prevotes_started + st.elections_started, 0, "bug 2: the log member never campaigns");
    is_int(nt.log_leader, 0, "bug 2: no log member ever led");
    ok(propose(&nt, s, 5) > 0 && (run(&nt, 2), raft_commit(nt.r[s]) == raft_last_index(nt.r[s])),
       "bug 2: and commits with it");
    struct raft_msg h;
    ok(raft_hand_over(nt.r[s], &h) == 0 && h.to == (uint32_t)l,
       "bug 2: raft_hand_over picks the (down) storage member, never the log member");
    net_free(&nt);
}

/* Bug 3 (CockroachDB #83687): the leader is the member removed. The group
 * leaves the joint configuration, the old leader steps down and hands over
 * to a storage member of the new configuration, and a new leader holds a
 * valid lease within a bounded number of ticks. While joint, the lease
 * needs acknowledgements from a quorum of both halves. */
static void test_leader_removed(void)
{
    struct net nt;
    struct raft_conf c123 = {bits("123"), 0, 0};
    net_init_conf(&nt, "123", c123, 13);
    int l = settle(&nt);
    run(&nt, E_TICKS + 2);
    if (l <= 0 || !raft_lease_valid(nt.r[l])) {
        ok(0, "bug 3: no leader with a lease");
        net_free(&nt);
        return;
    }
    /* Replace the leader and one follower: {l,a,b} -> {a,4,5}. */
    int a = l % 3 + 1;
    struct raft_conf t = {(1u << a) | (1u << 4) | (1u << 5), 0, 0};
    struct raft_conf j = {t.voters, c123.voters, 0};
    add_member(&nt, 4, j);
    add_member(&nt, 5, j);
    /* Joint, with 4 and 5 unable to answer yet: the old half alone acks. */
    nt.cut[4][l] = nt.cut[5][l] = 1;
    uint64_t idx;
    ok(raft_lease_valid(nt.r[l]), "bug 3: the leader holds a lease");
    is_int(change(&nt, l, &t, &idx), 0, "bug 3: the leader proposes its removal");
    run(&nt, 1);
    ok(raft_role(nt.r[l]) == RAFT_LEADER && raft_conf_index(nt.r[l]) > raft_commit(nt.r[l]),
       "bug 3: joint and uncommitted while 4 and 5 cannot answer");
    ok(!raft_lease_valid(nt.r[l]),
       "bug 3: while joint, acks from a quorum of the old half only give no lease");
    heal(&nt);
    int stepped = 0, nl = 0, lease = 0;
    for (int tk = 1; tk <= 4 * E_TICKS && !lease; tk++) {
        run(&nt, 1);
        if (!stepped && raft_role(nt.r[l]) != RAFT_LEADER)
            stepped = tk;
        int k = leader_of(&nt);
        if (k > 0 && k != l && !nl)
            nl = tk;
        if (k > 0 && k != l && raft_lease_valid(nt.r[k]))
            lease = tk;
    }
    ok(stepped > 0 && stepped <= 3,
       "bug 3: the removed leader steps down once the change commits (tick %d)", stepped);
    ok(nl > 0 && nl <= stepped + 1,
       "bug 3: a new leader at once by hand-over (tick %d, stepped down at %d)", nl, stepped);
    int k = leader_of(&nt);
    ok(k > 0 && (t.voters & (1u << k)),
       "bug 3: the new leader is a member of the new configuration (%d)", k);
    ok(lease > 0 && lease <= nl + E_TICKS + 3,
       "bug 3: and holds a valid lease within E + 3 ticks of its election (tick %d)", lease);
    struct raft_stats st;
    raft_get_stats(nt.r[l], &st);
    is_int(st.conf_stepdowns, 1, "bug 3: the step-down is counted");
    uint64_t pv = st.prevotes_started;
    run(&nt, 100);
    raft_get_stats(nt.r[l], &st);
    is_int(st.prevotes_started, pv, "bug 3: the removed leader never campaigns again");
    is_int(leader_of(&nt), k, "bug 3: the new leader keeps leading");
    net_free(&nt);
}

/* A configuration whose entry is truncated reverts to the one before. */
static void test_conf_truncated(void)
{
    struct net nt;
    struct raft_conf c = {bits("12345"), 0, 0};
    int l = start(&nt, "12345", c, 17, "truncate");
    if (l <= 0)
        return;
    int f = l % 5 + 1, g = f % 5 + 1;
    struct raft_conf t = {c.voters & ~(1u << g), 0, 0};
    /* The joint entry reaches f only; acknowledgements are lost. */
    cut_from(&nt, l, 1);
    nt.cut[l][f] = 0;
    cut_to(&nt, l, 1);
    uint64_t idx;
    is_int(change(&nt, l, &t, &idx), 0, "truncate: a change reaches one follower");
    struct raft_conf x = conf_of(&nt, f);
    ok(x.voters_out == c.voters && raft_conf_index(nt.r[f]) == idx,
       "truncate: the follower is joint");
    /* The leader and that follower are cut off; the other three elect. */
    heal(&nt);
    for (int k = 1; k <= 5; k++)
        if (k != l && k != f)
            nt.cut[l][k] = nt.cut[f][k] = nt.cut[k][l] = nt.cut[k][f] = 1;
    run(&nt, 4 * E_TICKS);
    int nl = 0;
    for (int k = 1; k <= 5; k++)
        if (k != l && k != f && raft_role(nt.r[k]) == RAFT_LEADER)
            nl = k;
    ok(nl > 0, "truncate: the majority elects %d", nl);
    if (nl > 0)
        propose(&nt, nl, 3);
    heal(&nt);
    run(&nt, 3 * E_TICKS);
    x = conf_of(&nt, f);
    ok(conf_eq(&x, &c) && raft_conf_index(nt.r[f]) == 0,
       "truncate: its joint entry overwritten, the follower is back to the old configuration");
    x = conf_of(&nt, l);
    ok(conf_eq(&x, &c), "truncate: and so is the old leader");
    net_free(&nt);
}

/* A member that missed a change hears the leader the change added: 2 is
 * cut off while {1,2,3} becomes {1,2,4} and 4 takes over; 2 does not know
 * 4, yet takes its appends and catches up. */
static void test_lagging_member(void)
{
    struct net nt;
    struct raft_conf c123 = {bits("123"), 0, 0}, t = {bits("124"), 0, 0};
    if (!start_led_by_1(&nt, c123, 19, "lagging"))
        return;
    isolate(&nt, 2, 1);
    add_member(&nt, 4, (struct raft_conf){t.voters, c123.voters, 0});
    uint64_t idx;
    is_int(change(&nt, 1, &t, &idx), 0, "lagging: {1,2,3} -> {1,2,4} without 2");
    run(&nt, 5);
    struct raft_msg h;
    is_int(raft_hand_over(nt.r[1], &h), 0, "lagging: 1 hands over");
    is_int(h.to, 4, "lagging: to 4, the storage member with the longest log");
    inject(&nt, &h);
    is_int(leader_of(&nt), 4, "lagging: 4 leads");
    struct raft_conf c = conf_of(&nt, 2);
    ok(conf_eq(&c, &c123), "lagging: 2 still has {1,2,3} and does not know 4");
    heal(&nt);
    run(&nt, 10);
    c = conf_of(&nt, 2);
    ok(conf_eq(&c, &t) && raft_leader(nt.r[2]) == 4 &&
           raft_last_index(nt.r[2]) == raft_last_index(nt.r[4]),
       "lagging: healed, 2 takes 4's appends and catches up");
    is_int(leader_of(&nt), 4, "lagging: and 4 still leads");
    net_free(&nt);
}

/* A removed leader that lost its leadership before its leave-joint entry
 * committed may campaign as the storage member it was: here it and log
 * member 5 are the only ones with that entry, 3 is down, and neither 2 nor
 * 4 can win the old half {1,2,3} without 1's vote. Found by the
 * simulation; without the exception nobody leads. */
static void test_removed_leader_campaigns(void)
{
    struct net nt;
    struct raft_conf c123 = {bits("123"), 0, 0}, t = {bits("245"), 0, bits("5")};
    struct raft_conf j = {t.voters, c123.voters, bits("5")};
    if (!start_led_by_1(&nt, c123, 19, "removed leader"))
        return;
    crash(&nt, 3);
    add_member(&nt, 4, j);
    add_member(&nt, 5, j);
    uint64_t idx;
    is_int(raft_propose_conf(nt.r[1], &t, &idx), 0, "removed leader: {1,2,3} -> {2,4,5 (log)}");
    /* Once the joint entry commits, the leave-joint entry reaches 5 only
     * and its acknowledgement is lost. */
    nt.hold_l = 1;
    nt.hold_idx = idx;
    nt.hold_mode = 4;
    nt.hold_from = bits("24");
    nt.hold_to = bits("5");
    flush(&nt, 1);
    struct raft_conf c1 = conf_of(&nt, 1), c2 = conf_of(&nt, 2), c5 = conf_of(&nt, 5);
    ok(conf_eq(&c1, &t) && conf_eq(&c5, &t) && c2.voters_out &&
           raft_conf_index(nt.r[1]) > raft_commit(nt.r[1]),
       "removed leader: the leave entry is at 1 and 5 only, uncommitted");
    /* 1 loses its leadership (check-quorum) while cut off; then the links
     * heal, 3 stays down. */
    isolate(&nt, 1, 1);
    run(&nt, 3 * E_TICKS);
    is_int(raft_role(nt.r[1]) == RAFT_LEADER, 0, "removed leader: 1 stepped down");
    heal(&nt);
    int nl = 0;
    for (int tk = 0; tk < 20 * E_TICKS && !(nl == 2 || nl == 4); tk++) {
        run(&nt, 1);
        nl = leader_of(&nt);
    }
    ok(nl == 2 || nl == 4, "removed leader: a storage member of {2,4,5} leads (%d)", nl);
    struct raft_conf c = nl > 0 ? conf_of(&nt, nl) : (struct raft_conf){0};
    ok(nl > 0 && conf_eq(&c, &t) && raft_conf_index(nt.r[nl]) <= raft_commit(nt.r[nl]),
       "removed leader: the change is done");
    struct raft_stats st;
    raft_get_stats(nt.r[1], &st);
    cmp_ok(st.elections_started, ">", 0, "removed leader: 1 campaigned to get there");
    is_int(nt.log_leader, 0, "removed leader: the log member never led");
    net_free(&nt);
}

int main(void)
{
    test_propose_rules();
    test_conf_messages();
    test_new_leader_must_commit();
    test_restart_and_loss_at_every_step();
    test_snapshot_conf();
    test_added_member_votes();
    test_leader_removed();
    test_conf_truncated();
    test_lagging_member();
    test_removed_leader_campaigns();
    return done_testing();
}
