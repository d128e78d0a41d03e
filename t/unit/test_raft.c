/*
 * test_raft.c — scenario tests of store/raft on a small synchronous network:
 * every tick, each member ticks, then queued messages are delivered until
 * none is left. Links can be cut one direction at a time; members can crash
 * and restart from what they persisted (raft_net.h).
 */
#include "t/unit/raft_net.h"

static int logs_equal(struct net *nt, int a, int b)
{
    struct raft *x = nt->r[a], *y = nt->r[b];
    if (raft_last_index(x) != raft_last_index(y))
        return 0;
    uint64_t from =
        raft_first_index(x) > raft_first_index(y) ? raft_first_index(x) : raft_first_index(y);
    for (uint64_t i = from; i <= raft_last_index(x); i++) {
        const struct raft_entry *e = raft_entry_at(x, i), *f = raft_entry_at(y, i);
        if (e->term != f->term || e->len != f->len || (e->len && memcmp(e->data, f->data, e->len)))
            return 0;
    }
    return 1;
}

static void test_election(void)
{
    struct net nt;
    net_init(&nt, 3, 1);
    int l = run_until_leader(&nt, 100);
    cmp_ok(l, ">", 0, "election: a single leader emerges within 100 ticks");
    run(&nt, 5);
    is_int(leader_of(&nt), l, "election: still exactly one leader");
    for (int k = 1; k <= 3; k++)
        is_int(raft_leader(nt.r[k]), l, "election: member %d knows the leader", k);
    const struct raft_entry *e = raft_entry_at(nt.r[l], raft_first_index(nt.r[l]));
    ok(e && e->len == 0 && e->term == raft_term(nt.r[l]), "election: leader appended a no-op");
    is_int(nt.vote_unpersisted, 0, "election: every vote was persisted before its grant");
    uint64_t term = raft_term(nt.r[l]);
    net_free(&nt);

    /* Same seed, same history; other seeds elect other members. */
    net_init(&nt, 3, 1);
    is_int(run_until_leader(&nt, 100), l, "election: deterministic for a seed");
    is_int(raft_term(nt.r[l]), term, "election: same term for the same seed");
    net_free(&nt);
    int seen[4] = {0};
    for (uint64_t s = 2; s < 12; s++) {
        net_init(&nt, 3, s * 7919);
        int w = run_until_leader(&nt, 100);
        if (w > 0)
            seen[w] = 1;
        net_free(&nt);
    }
    ok(seen[1] + seen[2] + seen[3] >= 2, "election: randomized timeouts vary the winner");
}

static void test_prevote(void)
{
    struct net nt;
    net_init(&nt, 3, 3);
    int l = run_until_leader(&nt, 100);
    int f = l % 3 + 1;
    uint64_t term = raft_term(nt.r[l]);
    isolate(&nt, f, 1);
    run(&nt, 200);
    struct raft_stats st;
    raft_get_stats(nt.r[f], &st);
    cmp_ok(st.prevotes_started, ">", 0, "prevote: the partitioned member tried pre-votes");
    is_int(st.elections_started, 0, "prevote: but never started a real election");
    is_int(raft_term(nt.r[f]), term, "prevote: its term did not move");
    isolate(&nt, f, 0);
    run(&nt, 30);
    is_int(leader_of(&nt), l, "prevote: on rejoin the leader is not deposed");
    is_int(raft_term(nt.r[l]), term, "prevote: and the term is unchanged");
    ok(logs_equal(&nt, l, f), "prevote: the rejoined member caught up");
    net_free(&nt);
}

static void test_check_quorum_and_lease(void)
{
    struct net nt;
    net_init(&nt, 3, 5);
    int l = run_until_leader(&nt, 100);
    ok(!raft_lease_valid(nt.r[l]), "lease: a new leader does not serve lease reads at once");
    run(&nt, 9);
    ok(!raft_lease_valid(nt.r[l]), "lease: not before it waited out E ticks");
    run(&nt, 3);
    ok(raft_lease_valid(nt.r[l]), "lease: valid once old leases are over and a quorum acked");
    is_int(raft_lease_ticks(nt.r[l]), 7, "lease: floor(9 * 0.95/1.05) - 1 = 7 ticks for E=10, 5%%");

    /* Stickiness: a follower that hears the leader ignores a vote request. */
    int f = l % 3 + 1, o = f % 3 + 1;
    if (o == l)
        o = o % 3 + 1;
    struct raft_msg v = {.group = GROUP,
                         .type = RAFT_MSG_VOTE,
                         .from = (uint32_t)o,
                         .to = (uint32_t)f,
                         .term = raft_term(nt.r[f]) + 5,
                         .index = raft_last_index(nt.r[f]) + 10,
                         .log_term = raft_term(nt.r[f]) + 5};
    uint64_t term = raft_term(nt.r[f]);
    is_int(raft_step(nt.r[f], &v), 0, "lease: vote request taken");
    struct raft_ready rd;
    raft_ready_get(nt.r[f], &rd);
    is_int(rd.n_msgs, 0, "lease: no vote granted while the leader is live");
    raft_ready_advance(nt.r[f]);
    is_int(raft_term(nt.r[f]), term, "lease: and no term bump");
    struct raft_stats st;
    raft_get_stats(nt.r[f], &st);
    is_int(st.votes_ignored, 1, "lease: the refusal is counted");

    /* Isolate the leader: the lease lapses first, then check-quorum steps it
     * down, and no one else leads while its lease could still be valid. */
    isolate(&nt, l, 1);
    int lapsed = -1, other = -1, stepped = -1;
    for (int t = 1; t <= 60; t++) {
        run(&nt, 1);
        if (lapsed < 0 && !raft_lease_valid(nt.r[l]))
            lapsed = t;
        if (stepped < 0 && raft_role(nt.r[l]) != RAFT_LEADER)
            stepped = t;
        for (int k = 1; k <= 3; k++)
            if (k != l && other < 0 && raft_role(nt.r[k]) == RAFT_LEADER)
                other = t;
    }
    ok(lapsed > 0 && lapsed <= 7, "lease: lapses within lease_ticks of the last ack (%d)", lapsed);
    ok(stepped > 0 && stepped <= 20, "check-quorum: isolated leader steps down (tick %d)", stepped);
    raft_get_stats(nt.r[l], &st);
    is_int(st.checkquorum_stepdowns, 1, "check-quorum: counted once");
    ok(other > lapsed, "lease: the next leader came after the lease lapsed (%d > %d)", other,
       lapsed);
    net_free(&nt);
}

static void test_commit_rules(void)
{
    struct net nt;
    net_init(&nt, 3, 9);
    int l = run_until_leader(&nt, 100);
    run(&nt, 3);
    for (int k = 1; k <= 3; k++)
        if (k != l)
            nt.cut[l][k] = 1;
    uint64_t c0 = raft_commit(nt.r[l]);
    uint64_t idx = propose(&nt, l, 42);
    cmp_ok(idx, ">", 0, "commit: the leader takes a proposal");
    run(&nt, 1);
    is_int(raft_commit(nt.r[l]), c0, "commit: not committed with no follower reached");
    int f = l % 3 + 1;
    nt.cut[l][f] = 0;
    run(&nt, 3);
    cmp_ok(raft_commit(nt.r[l]), ">=", idx, "commit: committed with one follower (2 of 3)");
    uint64_t dummy;
    is_int(raft_propose(nt.r[f], "x", 1, &dummy), NERR_BUSY, "commit: followers refuse proposals");
    net_free(&nt);

    /* §5.4.2: member 1 holds entries of term 1 nobody else has; as leader
     * of term 2 it must not commit them by counting, only with its no-op. */
    memset(&nt, 0, sizeof(nt));
    nt.n = 3;
    nt.seed = 11;
    unsigned char a = 'a', b = 'b';
    struct raft_entry old[2] = {{1, 1, 1, &a, RAFT_ENTRY_NORMAL}, {1, 2, 1, &b, RAFT_ENTRY_NORMAL}};
    nt.st[1].hs.term = 1;
    nt.st[1].ents = malloc(sizeof(old));
    memcpy(nt.st[1].ents, old, sizeof(old));
    for (int i = 0; i < 2; i++) {
        nt.st[1].ents[i].data = malloc(1);
        nt.st[1].ents[i].data[0] = old[i].data[0];
    }
    nt.st[1].n = nt.st[1].cap = 2;
    for (int k = 1; k <= 3; k++)
        nt.r[k] = mk(&nt, k);
    nt.cut[2][3] = nt.cut[3][2] = 1; /* only member 1 can win */
    int w = run_until_leader(&nt, 100);
    is_int(w, 1, "5.4.2: the member with the longest log wins");
    run(&nt, 3);
    cmp_ok(raft_commit(nt.r[1]), ">=", 3, "5.4.2: old entries commit together with the no-op");
    is_int(nt.old_term_commit, 0, "5.4.2: no commit point ever landed on an old-term entry");
    is_int(nt.apply_gap, 0, "commit: entries applied in order without gaps");
    net_free(&nt);
}

/* Drives one member by hand into leadership of term 2 with two term-1
 * entries only it has, then feeds acknowledgements (§5.4.2, Figure 8). */
static void test_old_term_not_counted(void)
{
    unsigned char a = 'a', b = 'b';
    struct raft_entry old[2] = {{1, 1, 1, &a, RAFT_ENTRY_NORMAL}, {1, 2, 1, &b, RAFT_ENTRY_NORMAL}};
    struct raft_config cfg = {.group = GROUP,
                              .id = 1,
                              .n_members = 3,
                              .election_ticks = 10,
                              .heartbeat_ticks = 2,
                              .drift_ppm = 50000,
                              .seed = 5,
                              .hs = {1, 0, 0},
                              .entries = old,
                              .n_entries = 2};
    struct raft *r = raft_new(&cfg, NULL);
    tick_until_campaign(r);
    struct raft_ready rd;
    is_int(raft_role(r), RAFT_PRE_CANDIDATE, "5.4.2: member starts a pre-election");
    struct raft_msg m = {
        .group = GROUP, .type = RAFT_MSG_PREVOTE_RESP, .from = 2, .to = 1, .term = 2};
    raft_step(r, &m);
    is_int(raft_role(r), RAFT_CANDIDATE, "5.4.2: pre-vote quorum makes it a candidate");
    m.type = RAFT_MSG_VOTE_RESP;
    raft_step(r, &m);
    is_int(raft_role(r), RAFT_LEADER, "5.4.2: vote quorum makes it leader of term 2");
    while (raft_ready_get(r, &rd))
        raft_ready_advance(r); /* persists the no-op at index 3 */
    m.type = RAFT_MSG_APPEND_RESP;
    m.index = 2;
    is_int(raft_step(r, &m), 0, "5.4.2: ack of index 2 taken");
    is_int(raft_commit(r), 0, "5.4.2: a quorum holding old-term index 2 commits nothing");
    m.index = 3;
    raft_step(r, &m);
    is_int(raft_commit(r), 3, "5.4.2: the current-term no-op commits everything before it");
    raft_free(r);
}

static void test_catch_up(void)
{
    struct net nt;
    net_init(&nt, 3, 13);
    int l = run_until_leader(&nt, 100);
    run(&nt, 3);
    /* The old leader keeps proposing while isolated: those entries must be
     * overwritten after a new leader commits others. */
    isolate(&nt, l, 1);
    for (uint64_t v = 0; v < 30; v++)
        propose(&nt, l, 1000 + v);
    run(&nt, 40);
    int nl = leader_of(&nt);
    ok(nl > 0 && nl != l, "catch-up: a new leader in the majority");
    for (uint64_t v = 0; v < 100 && nl > 0; v++)
        propose(&nt, nl, 2000 + v);
    run(&nt, 3);
    uint64_t rejects0 = nt.rejects;
    isolate(&nt, l, 0);
    run(&nt, 40);
    ok(nl > 0 && logs_equal(&nt, nl, l), "catch-up: the old leader's log now equals the new one");
    cmp_ok(nt.rejects - rejects0, "<=", 4, "catch-up: fast backtracking needs few rejects (%llu)",
           (unsigned long long)(nt.rejects - rejects0));
    is_int(raft_commit(nt.r[l]), raft_commit(nt.r[nl]), "catch-up: commit index caught up");
    net_free(&nt);

    /* A follower far behind a newly elected leader: one hint, not one
     * reject per missing entry. */
    net_init(&nt, 3, 31);
    l = run_until_leader(&nt, 100);
    run(&nt, 3);
    int lag = l % 3 + 1;
    isolate(&nt, lag, 1);
    for (uint64_t v = 0; v < 100; v++)
        propose(&nt, l, v);
    run(&nt, 3);
    /* Restart the leader so another member leads with next = its last + 1. */
    crash(&nt, l);
    run(&nt, 5);
    restart(&nt, l);
    nl = run_until_leader(&nt, 100);
    run(&nt, 3);
    rejects0 = nt.rejects;
    isolate(&nt, lag, 0);
    run(&nt, 20);
    ok(nl > 0 && logs_equal(&nt, nl, lag), "catch-up: the lagging member caught up");
    cmp_ok(nt.rejects - rejects0, "<=", 3, "catch-up: 100 missing entries cost few rejects (%llu)",
           (unsigned long long)(nt.rejects - rejects0));
    net_free(&nt);

    /* Snapshot path: the leader compacted what the follower lacks. */
    net_init(&nt, 3, 17);
    l = run_until_leader(&nt, 100);
    run(&nt, 3);
    int f = l % 3 + 1;
    isolate(&nt, f, 1);
    for (uint64_t v = 0; v < 50; v++)
        propose(&nt, l, v);
    run(&nt, 3);
    uint64_t ap = nt.applied[l];
    const char snap[] = "state-at-applied";
    is_int(raft_compact(nt.r[l], ap, snap, sizeof(snap)), 0, "snapshot: leader compacts");
    is_int(raft_compact(nt.r[l], ap + 100, snap, sizeof(snap)), NERR_INVALID,
           "snapshot: cannot compact beyond applied");
    is_int(raft_first_index(nt.r[l]), ap + 1, "snapshot: log starts after the snapshot");
    for (uint64_t v = 0; v < 5; v++)
        propose(&nt, l, 500 + v);
    isolate(&nt, f, 0);
    run(&nt, 20);
    is_int(nt.snapshots_installed, 1, "snapshot: the follower installed one snapshot");
    is_int(nt.st[f].snap.index, ap, "snapshot: at the compacted index");
    ok(nt.st[f].snap.len == sizeof(snap) && !memcmp(nt.st[f].snap.data, snap, sizeof(snap)),
       "snapshot: the payload arrived intact");
    is_int(raft_last_index(nt.r[f]), raft_last_index(nt.r[l]), "snapshot: then entries after it");
    is_int(nt.applied[f], raft_commit(nt.r[l]), "snapshot: follower applied up to commit");
    net_free(&nt);
}

static void test_gray_failure(void)
{
    struct net nt;
    net_init(&nt, 3, 19);
    int l = run_until_leader(&nt, 100);
    run(&nt, 3);
    uint64_t term = raft_term(nt.r[l]);
    int f = l % 3 + 1;
    struct raft_stats st0;
    raft_get_stats(nt.r[f], &st0);
    nt.cut[l][f] = 1; /* only leader -> f is broken */
    run(&nt, 300);
    is_int(leader_of(&nt), l, "gray: the leader stays leader with one bad link");
    is_int(raft_term(nt.r[l]), term, "gray: no term change");
    struct raft_stats st;
    raft_get_stats(nt.r[f], &st);
    cmp_ok(st.elections_avoided, ">", 5, "gray: the cut-off follower asked peers and held off");
    is_int(st.prevotes_started - st0.prevotes_started, 0, "gray: it never started a pre-election");
    /* Control: when no peer hears the leader either, it does campaign. */
    isolate(&nt, l, 1);
    run(&nt, 60);
    int nl = leader_of(&nt);
    ok(nl > 0 && nl != l, "gray: with the leader really gone a new one is elected");
    net_free(&nt);
}

static void test_malformed(void)
{
    struct net nt;
    net_init(&nt, 3, 23);
    int l = run_until_leader(&nt, 100);
    run(&nt, 3);
    propose(&nt, l, 7);
    run(&nt, 2);
    int f = l % 3 + 1;
    struct raft *r = nt.r[f];
    uint64_t term = raft_term(r), commit = raft_commit(r), last = raft_last_index(r);
    struct raft_entry good = {term, last + 1, 1, (unsigned char *)"z", RAFT_ENTRY_NORMAL};
    struct raft_entry bad_seq[2] = {{term, last + 1, 0, NULL, RAFT_ENTRY_NORMAL},
                                    {term, last + 3, 0, NULL, RAFT_ENTRY_NORMAL}};
    struct raft_entry future = {term + 9, last + 1, 0, NULL, RAFT_ENTRY_NORMAL};
    struct raft_msg base = {.group = GROUP,
                            .type = RAFT_MSG_APPEND,
                            .from = (uint32_t)l,
                            .to = (uint32_t)f,
                            .term = term,
                            .index = last,
                            .log_term = raft_entry_at(r, last)->term,
                            .commit = commit};
    struct raft_msg ms[14];
    for (int i = 0; i < 14; i++)
        ms[i] = base;
    ms[0].group = GROUP + 1;                      /* another group */
    ms[1].from = 0;                               /* not a member */
    ms[2].from = (uint32_t)f;                     /* from itself */
    ms[3].type = 99;                              /* unknown type */
    ms[4].term = UINT64_C(1) << 63;               /* absurd term */
    ms[4].index = UINT64_C(1) << 62;              /*   with a bogus index */
    ms[5].n_entries = 2, ms[5].entries = bad_seq; /* entries out of sequence */
    ms[6].n_entries = 1, ms[6].entries = &future; /* entry term beyond message */
    ms[7].commit = last + 5;                      /* commit beyond what is sent */
    ms[8].type = RAFT_MSG_HEARTBEAT, ms[8].n_entries = 1, ms[8].entries = &good;
    ms[9].log_term = term + 1; /* prev term above term */
    ms[10].to = 9;             /* not addressed to us */
    ms[11].type = RAFT_MSG_VOTE, ms[11].data_len = 4, ms[11].data = (unsigned char *)"junk";
    ms[12].n_entries = 1000, ms[12].entries = &good; /* count beyond the batch limit */
    ms[13].type = RAFT_MSG_SNAPSHOT, ms[13].index = 0;
    struct raft_stats st0, st1;
    raft_get_stats(r, &st0);
    int all = 1;
    for (int i = 0; i < 14; i++)
        if (raft_step(r, &ms[i]) != NERR_INVALID) {
            diag("message %d was accepted", i);
            all = 0;
        }
    ok(all, "malformed: every forged message is refused with NERR_INVALID");
    raft_get_stats(r, &st1);
    is_int(st1.dropped - st0.dropped, 14, "malformed: and counted");
    struct raft_ready rd;
    is_int(raft_ready_get(r, &rd), 0, "malformed: nothing to persist, send or apply");
    ok(raft_term(r) == term && raft_commit(r) == commit && raft_last_index(r) == last &&
           raft_role(r) == RAFT_FOLLOWER,
       "malformed: state unchanged");

    /* At the leader: acks of entries it never had, heartbeats from the future. */
    struct raft *L = nt.r[l];
    struct raft_msg ack = {.group = GROUP,
                           .type = RAFT_MSG_APPEND_RESP,
                           .from = (uint32_t)f,
                           .to = (uint32_t)l,
                           .term = raft_term(L),
                           .index = raft_last_index(L) + 100};
    is_int(raft_step(L, &ack), NERR_INVALID, "malformed: ack beyond the leader's log dropped");
    ack.type = RAFT_MSG_HEARTBEAT_RESP, ack.index = 0, ack.ctx = 1u << 30;
    is_int(raft_step(L, &ack), NERR_INVALID, "malformed: lease ack from the future dropped");
    ack.type = RAFT_MSG_APPEND_RESP, ack.term = raft_term(L) + 3, ack.index = 1;
    is_int(raft_step(L, &ack), NERR_INVALID, "malformed: success from a future term dropped");
    is_int(raft_role(L), RAFT_LEADER, "malformed: the leader is undisturbed");

    /* Random garbage: never a crash, never a broken invariant. */
    uint64_t x = 0x1234567;
    for (int i = 0; i < 20000; i++) {
        struct raft_entry ents[3];
        struct raft_msg m;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memset(&m, 0, sizeof(m));
        m.group = (x & 7) ? GROUP : x;
        m.type = (uint32_t)(x >> 8) % 14;
        m.from = (uint32_t)(x >> 12) % 5;
        m.to = (x >> 15) & 1 ? (uint32_t)f : (uint32_t)(x >> 16) % 5;
        m.term = term + ((x >> 20) % 3) - 1;
        m.index = raft_last_index(r) + ((x >> 24) % 8) - 4;
        m.log_term = (x >> 28) % (term + 2);
        m.commit = (x >> 32) % (m.index + 3);
        m.reject = (x >> 40) & 1;
        m.hint = (x >> 41) % 8;
        m.ctx = (x >> 44) % 100;
        if (m.type == RAFT_MSG_APPEND && (x >> 50) & 1) {
            m.n_entries = (uint32_t)(x >> 51) % 3 + 1;
            for (uint32_t j = 0; j < m.n_entries; j++)
                ents[j] = (struct raft_entry){m.term, m.index + 1 + j, 0, NULL, RAFT_ENTRY_NORMAL};
            m.entries = ents;
        }
        raft_step(r, &m);
        if (raft_commit(r) > raft_last_index(r) || raft_commit(r) < commit) {
            ok(0, "fuzz: commit index broken at message %d", i);
            break;
        }
        if (raft_ready_get(r, &rd))
            raft_ready_advance(r);
        if (i % 10 == 0)
            raft_tick(r);
    }
    ok(1, "fuzz: 20000 random messages without a crash");
    net_free(&nt);
}

static void test_five_and_restart(void)
{
    struct net nt;
    net_init(&nt, 5, 29);
    int l = run_until_leader(&nt, 100);
    run(&nt, 3);
    int down[2], nd = 0;
    for (int k = 1; k <= 5 && nd < 2; k++)
        if (k != l)
            down[nd++] = k;
    for (int i = 0; i < 2; i++)
        crash(&nt, down[i]);
    uint64_t idx = propose(&nt, l, 77);
    run(&nt, 3);
    cmp_ok(raft_commit(nt.r[l]), ">=", idx, "five: commits with 3 of 5 up");
    /* Restart from persisted state only. */
    for (int i = 0; i < 2; i++)
        restart(&nt, down[i]);
    uint64_t t0 = raft_term(nt.r[down[0]]);
    cmp_ok(t0, ">", 0, "restart: the persisted term came back");
    run(&nt, 20);
    is_int(leader_of(&nt), l, "restart: restarted members rejoin the same leader");
    ok(logs_equal(&nt, l, down[0]) && logs_equal(&nt, l, down[1]), "restart: logs converge");
    is_int(nt.vote_unpersisted, 0, "five: votes persisted before grants");
    net_free(&nt);
}

/* A follower that lost entries it had acknowledged (unsafe acks, a lost
 * disk) comes back with a shorter log: its heartbeat answers carry its last
 * index, and the leader replicates to it again instead of waiting forever. */
static void test_lost_log(void)
{
    struct net nt;
    net_init(&nt, 3, 41);
    int l = run_until_leader(&nt, 100);
    run(&nt, 3);
    uint64_t idx = 0;
    for (uint64_t v = 0; v < 20; v++)
        idx = propose(&nt, l, 500 + v);
    run(&nt, 3);
    int f = l % 3 + 1;
    cmp_ok(raft_last_index(nt.r[f]), ">=", idx, "lost log: the follower had every entry");
    /* It restarts with its term and vote but with none of its entries. */
    crash(&nt, f);
    ps_truncate(&nt.st[f], 0);
    nt.st[f].hs.commit = 0;
    restart(&nt, f);
    is_int(raft_last_index(nt.r[f]), 0, "lost log: it came back empty");
    run(&nt, 10);
    is_int(leader_of(&nt), l, "lost log: the leader stays");
    ok(logs_equal(&nt, l, f), "lost log: the leader replicated everything to it again");
    cmp_ok(raft_commit(nt.r[f]), ">=", idx, "lost log: and it knows the commit index");
    struct raft_stats rs;
    raft_get_stats(nt.r[l], &rs);
    cmp_ok(rs.lost_logs, ">=", 1, "lost log: the leader counted it");
    net_free(&nt);
}

/* A leader whose disk failed hands over at once (raft_hand_over): the
 * chosen follower campaigns on TIMEOUT_NOW and wins without a single tick,
 * although every member heard the old leader within E ticks. */
static void test_hand_over(void)
{
    struct net nt;
    net_init(&nt, 3, 11);
    int l = run_until_leader(&nt, 100);
    run(&nt, 3);
    uint64_t idx = propose(&nt, l, 42);
    cmp_ok(idx, ">", 0, "hand-over: an entry was proposed");
    uint64_t term = raft_term(nt.r[l]);
    int f = l % 3 + 1;
    struct raft_msg m;
    is_int(raft_hand_over(nt.r[f], &m), NERR_BUSY,
           "hand-over: a follower has nothing to hand over");
    is_int(raft_hand_over(nt.r[l], &m), 0, "hand-over: the leader hands over");
    ok(m.type == RAFT_MSG_TIMEOUT_NOW && m.to != (uint32_t)l && m.to >= 1 && m.to <= 3 &&
           m.term == term,
       "hand-over: TIMEOUT_NOW for a follower, in the leader's term");
    is_int(raft_role(nt.r[l]), RAFT_FOLLOWER, "hand-over: the old leader steps down at once");
    ok(!raft_lease_valid(nt.r[l]), "hand-over: and holds no lease");
    struct raft_stats st;
    raft_get_stats(nt.r[l], &st);
    is_int(st.hand_overs, 1, "hand-over: counted");
    /* The old leader falls silent, as a member whose disk failed does,
     * once its TIMEOUT_NOW is out. */
    isolate(&nt, l, 1);
    inject(&nt, &m); /* no tick: only the messages it causes */
    int nl = leader_of(&nt);
    is_int(nl, (int)m.to, "hand-over: the chosen follower leads without waiting for a timeout");
    if (nl <= 0) {
        net_free(&nt);
        return;
    }
    is_int(raft_term(nt.r[nl]), term + 1, "hand-over: in the next term");
    cmp_ok(raft_commit(nt.r[nl]), ">=", idx, "hand-over: the new leader committed the old entries");
    uint64_t j = propose(&nt, nl, 43);
    cmp_ok(j, ">", idx, "hand-over: the new leader takes proposals");
    cmp_ok(raft_commit(nt.r[nl]), ">=", j, "hand-over: and commits them with the other member");
    is_int(nt.vote_unpersisted, 0, "hand-over: every vote was persisted before its grant");
    /* A stale TIMEOUT_NOW (an older term) changes nothing. */
    struct raft_msg stale = m;
    stale.from = (uint32_t)l;
    stale.to = (uint32_t)(6 - l - nl);
    uint64_t t2 = raft_term(nt.r[stale.to]);
    inject(&nt, &stale);
    is_int(raft_term(nt.r[stale.to]), t2, "hand-over: a stale TIMEOUT_NOW is ignored");
    is_int(leader_of(&nt), nl, "hand-over: and the leader stays");
    net_free(&nt);
}

/* Appends are bounded by bytes, not only by count: a follower catching up
 * on large entries gets several small appends, never one huge message. */
static void test_append_bytes(void)
{
    struct net nt;
    net_init(&nt, 3, 77);
    int l = run_until_leader(&nt, 100);
    run(&nt, 3);
    int f = l % 3 + 1;
    isolate(&nt, f, 1);
    size_t big = 300u << 10;
    unsigned char *data = calloc(1, big);
    for (int i = 0; i < 12 && l > 0; i++) {
        uint64_t idx;
        data[0] = (unsigned char)i;
        raft_propose(nt.r[l], data, (uint32_t)big, &idx);
    }
    free(data);
    run(&nt, 5);
    isolate(&nt, f, 0);
    run(&nt, 60);
    ok(l > 0 && logs_equal(&nt, l, f), "append bytes: the follower caught up on 12 x 300 KB");
    is_int(nt.appends_over, 0, "append bytes: no append of several entries over %u bytes",
           RAFT_MAX_APPEND_BYTES);
    cmp_ok(nt.append_max, "<=", RAFT_MAX_APPEND_BYTES,
           "append bytes: the largest append carried %llu bytes of entries",
           (unsigned long long)nt.append_max);
    net_free(&nt);
}

/* Counts the messages of one type in a member's next ready, then lets the
 * net process that ready (drain). */
static int count_out(struct net *nt, int k, uint32_t type)
{
    struct raft_ready rd;
    int c = 0;
    if (raft_ready_get(nt->r[k], &rd))
        for (size_t i = 0; i < rd.n_msgs; i++)
            c += rd.msgs[i].type == type;
    drain(nt, k);
    return c;
}

/* raft_elapse: a stalled host advances its clock in one call; nothing runs
 * n times and no timer fires on the stall alone (E = 10, H = 2 here). */
static void test_elapse(void)
{
    struct net nt;
    net_init(&nt, 3, 21);
    int l = run_until_leader(&nt, 100);
    run(&nt, 15);
    if (l <= 0) {
        ok(0, "elapse: no leader");
        net_free(&nt);
        return;
    }
    int f = l % 3 + 1, o = 6 - l - f;
    uint64_t term = raft_term(nt.r[l]);
    ok(raft_lease_valid(nt.r[l]), "elapse: the leader holds a lease before the stall");

    /* The leader's host stalls 3E ticks; its followers' answers wait. A loop
     * of raft_tick would have run check-quorum with nothing heard and
     * stepped down, and sent 15 rounds of heartbeats. */
    raft_elapse(nt.r[l], 30);
    is_int(raft_role(nt.r[l]), RAFT_LEADER, "elapse: a stalled leader does not step down at once");
    ok(!raft_lease_valid(nt.r[l]), "elapse: but its clock moved: the lease ran out");
    is_int(count_out(&nt, l, RAFT_MSG_HEARTBEAT), 2, "elapse: one round of heartbeats, not 15");
    deliver_all(&nt);   /* the answers arrive */
    raft_tick(nt.r[l]); /* check-quorum fires now, with the answers counted */
    flush(&nt, l);
    is_int(raft_role(nt.r[l]), RAFT_LEADER,
           "elapse: it keeps leading once the answers are stepped");
    run(&nt, 3);
    ok(raft_lease_valid(nt.r[l]), "elapse: and regains its lease");

    /* A leader whose followers are really gone still steps down: the
     * timer fires at the next advance, whatever its size. */
    isolate(&nt, l, 1);
    raft_elapse(nt.r[l], 30);
    drain(&nt, l);
    is_int(raft_role(nt.r[l]), RAFT_LEADER, "elapse: cut off, still leader after one bulk advance");
    int adv = 1;
    for (; adv < 5 && raft_role(nt.r[l]) == RAFT_LEADER; adv++) {
        raft_elapse(nt.r[l], 30);
        drain(&nt, l);
    }
    is_int(raft_role(nt.r[l]), RAFT_FOLLOWER, "elapse: check-quorum fires at a later advance");
    cmp_ok(adv, "<=", 4, "elapse: within two check-quorum windows (%d advances)", adv);
    isolate(&nt, l, 0);
    l = run_until_leader(&nt, 100);
    run(&nt, 15);
    if (l <= 0) {
        ok(0, "elapse: no leader after the step-down");
        net_free(&nt);
        return;
    }
    f = l % 3 + 1;
    o = 6 - l - f;
    term = raft_term(nt.r[l]);

    /* A stalled follower whose leader's heartbeat was stepped at the old
     * tick (sticky resume): no probe, no pre-vote, and it refuses the other
     * follower's pre-vote for E ticks from the resume. */
    struct raft_stats st0, st1;
    raft_get_stats(nt.r[f], &st0);
    struct raft_msg hb = {.group = GROUP,
                          .type = RAFT_MSG_HEARTBEAT,
                          .from = (uint32_t)l,
                          .to = (uint32_t)f,
                          .term = term,
                          .commit = 0,
                          .ctx = 1};
    raft_step(nt.r[f], &hb);
    drain(&nt, f);
    raft_elapse(nt.r[f], 50); /* beyond any timeout, 2E - 1 */
    is_int(count_out(&nt, f, RAFT_MSG_PROBE), 0, "elapse: a resumed follower sends no probe");
    is_int(raft_role(nt.r[f]), RAFT_FOLLOWER, "elapse: and stays a follower");
    struct raft_msg pv = {.group = GROUP,
                          .type = RAFT_MSG_PREVOTE,
                          .from = (uint32_t)o,
                          .to = (uint32_t)f,
                          .term = term + 1,
                          .index = raft_last_index(nt.r[f]),
                          .log_term = term};
    raft_step(nt.r[f], &pv);
    raft_get_stats(nt.r[f], &st1);
    is_int(st1.votes_ignored - st0.votes_ignored, 1,
           "elapse: it refuses a pre-vote right after resuming (sticky for E ticks)");
    drain(&nt, f);
    drop_queue(&nt);

    /* Without a heartbeat during the stall the timeout is postponed by one
     * advance only: a host that only advances in bulk still probes, and
     * then pre-votes when nobody answers. */
    isolate(&nt, f, 1);
    int probed = 0, pre = 0;
    for (int i = 0; i < 20 && !pre; i++) {
        raft_elapse(nt.r[f], 5);
        probed += count_out(&nt, f, RAFT_MSG_PROBE);
        pre = raft_role(nt.r[f]) == RAFT_PRE_CANDIDATE;
    }
    is_int(probed, 2, "elapse: a cut-off follower advancing 5 ticks at a time probes its peers");
    ok(pre, "elapse: then starts a pre-election (nobody answered)");
    is_int(raft_term(nt.r[f]), term, "elapse: a pre-election does not change the term");
    isolate(&nt, f, 0);
    run(&nt, 30);
    is_int(leader_of(&nt), l, "elapse: the leader never changed");
    is_int(raft_term(nt.r[l]), term, "elapse: nor the term");
    raft_elapse(nt.r[l], 0);
    is_int(raft_role(nt.r[l]), RAFT_LEADER, "elapse: 0 ticks changes nothing");

    /* raft_heartbeat: a leader whose ready is in flight keeps its followers
     * from timing out. */
    struct raft_msg h;
    is_int(raft_heartbeat(nt.r[f], l, &h), NERR_BUSY, "heartbeat: a follower sends none");
    is_int(raft_heartbeat(nt.r[l], (uint32_t)l, &h), NERR_BUSY, "heartbeat: not to itself");
    uint64_t before = raft_last_index(nt.r[l]);
    raft_propose(nt.r[l], "x", 1, NULL);
    struct raft_ready rd;
    ok(raft_ready_get(nt.r[l], &rd), "heartbeat: a ready is in flight");
    is_int(raft_heartbeat(nt.r[l], (uint32_t)f, &h), 0, "heartbeat: made while it is");
    ok(h.type == RAFT_MSG_HEARTBEAT && h.term == raft_term(nt.r[l]) && h.from == (uint32_t)l &&
           h.to == (uint32_t)f && h.commit == 0 && h.n_entries == 0,
       "heartbeat: of the leader's term, no commit index, no entries");
    drain(&nt, l);   /* the ready completes */
    drop_queue(&nt); /* its appends are lost: only the heartbeats reach f */
    int probes = 0;
    for (int i = 0; i < 100; i++) {
        raft_tick(nt.r[f]);
        if (i % 3 == 0) {
            raft_heartbeat(nt.r[l], (uint32_t)f, &h);
            raft_step(nt.r[f], &h);
        }
        probes += count_out(&nt, f, RAFT_MSG_PROBE);
        drop_queue(&nt);
    }
    is_int(probes, 0, "heartbeat: 100 ticks of them, the follower never times out");
    is_int(raft_commit(nt.r[f]) <= before, 1, "heartbeat: and its commit index did not move");
    net_free(&nt);
}

/* Appends to f with entries in l's next ready (the net then processes it). */
static int appends_to(struct net *nt, int l, int f)
{
    struct raft_ready rd;
    int c = 0;
    if (raft_ready_get(nt->r[l], &rd))
        for (size_t i = 0; i < rd.n_msgs; i++)
            c += rd.msgs[i].type == RAFT_MSG_APPEND && rd.msgs[i].to == (uint32_t)f &&
                 rd.msgs[i].n_entries > 0;
    drain(nt, l);
    return c;
}

/* A heartbeat answer without progress resends what is in flight only once
 * the follower made no progress for E/2 ticks: a slow disk answers several
 * heartbeats at once; a lost append is still sent again. */
static void test_resend_gate(void)
{
    struct net nt;
    net_init(&nt, 3, 31);
    int l = run_until_leader(&nt, 100);
    run(&nt, 15);
    if (l <= 0) {
        ok(0, "resend: no leader");
        net_free(&nt);
        return;
    }
    int f = l % 3 + 1;
    uint64_t a = propose(&nt, l, 1); /* f acknowledges a: its match rose now */
    nt.cut[l][f] = 1;
    uint64_t b = propose(&nt, l, 2); /* the append of b to f is lost */
    cmp_ok(b, ">", a, "resend: b proposed after a");
    nt.cut[l][f] = 0;
    struct raft_msg hr = {.group = GROUP,
                          .type = RAFT_MSG_HEARTBEAT_RESP,
                          .from = (uint32_t)f,
                          .to = (uint32_t)l,
                          .term = raft_term(nt.r[l]),
                          .index = a};
    raft_step(nt.r[l], &hr);
    int first = appends_to(&nt, l, f);
    raft_step(nt.r[l], &hr);
    int second = appends_to(&nt, l, f);
    is_int(first + second, 0, "resend: two answers without progress right after some: no resend");
    drop_queue(&nt);
    for (int i = 0; i < 5; i++) {
        raft_tick(nt.r[l]);
        drain(&nt, l);
    }
    drop_queue(&nt);
    raft_step(nt.r[l], &hr);
    is_int(appends_to(&nt, l, f), 1, "resend: after E/2 ticks without progress, b is sent again");
    deliver_all(&nt);
    run(&nt, 3);
    ok(logs_equal(&nt, l, f), "resend: and the follower has it");
    net_free(&nt);
}

/* Stickiness holds in a term a member took from a message that names no
 * leader: found by the simulation with stalled hosts (seed 880). */
static void test_sticky_same_term(void)
{
    struct net nt;
    net_init(&nt, 3, 41);
    int l = run_until_leader(&nt, 100);
    run(&nt, 15);
    if (l <= 0) {
        ok(0, "sticky: no leader");
        net_free(&nt);
        return;
    }
    int f = l % 3 + 1, o = 6 - l - f;
    uint64_t t = raft_term(nt.r[f]);
    /* o refuses a pre-vote of f's in a higher term it holds (it restarted
     * after a campaign): f takes that term, with no leader. */
    struct raft_msg m = {.group = GROUP,
                         .type = RAFT_MSG_PREVOTE_RESP,
                         .from = (uint32_t)o,
                         .to = (uint32_t)f,
                         .term = t + 1,
                         .reject = 1};
    raft_step(nt.r[f], &m);
    drain(&nt, f);
    is_int(raft_term(nt.r[f]), t + 1, "sticky: the follower took the higher term");
    struct raft_msg v = {.group = GROUP,
                         .type = RAFT_MSG_VOTE,
                         .from = (uint32_t)o,
                         .to = (uint32_t)f,
                         .term = t + 1,
                         .index = raft_last_index(nt.r[f]),
                         .log_term = t};
    raft_step(nt.r[f], &v);
    struct raft_ready rd;
    int granted = 0;
    if (raft_ready_get(nt.r[f], &rd))
        for (size_t i = 0; i < rd.n_msgs; i++)
            granted += rd.msgs[i].type == RAFT_MSG_VOTE_RESP && !rd.msgs[i].reject;
    drain(&nt, f);
    is_int(granted, 0, "sticky: it refuses a vote in that term within E ticks of its leader");
    drop_queue(&nt);
    for (int i = 0; i < 10; i++) {
        raft_tick(nt.r[f]);
        drain(&nt, f);
    }
    drop_queue(&nt);
    granted = 0;
    raft_step(nt.r[f], &v);
    if (raft_ready_get(nt.r[f], &rd))
        for (size_t i = 0; i < rd.n_msgs; i++)
            granted += rd.msgs[i].type == RAFT_MSG_VOTE_RESP && !rd.msgs[i].reject;
    drain(&nt, f);
    is_int(granted, 1, "sticky: and grants it E ticks later");
    net_free(&nt);
}

static int all_quiet(struct net *nt)
{
    for (int k = 1; k <= nt->n; k++)
        if (nt->r[k] && !raft_quiescent(nt->r[k]))
            return 0;
    return 1;
}

/* Runs up to max ticks until every live member sleeps; the tick it did. */
static int run_until_quiet(struct net *nt, int max)
{
    for (int t = 1; t <= max; t++) {
        run(nt, 1);
        if (all_quiet(nt))
            return t;
    }
    return 0;
}

/* Quiescence (raft.h): sleeps only when caught up, idle ticks cost nothing,
 * proposals and messages wake, the lease needs a fresh round. E=10, H=2,
 * quiesce_ticks 20. */
static void test_quiesce(void)
{
    struct net nt;
    net_init_q(&nt, 3, 31, 20);
    int l = run_until_leader(&nt, 100);
    if (l <= 0) {
        ok(0, "quiesce: no leader");
        net_free(&nt);
        return;
    }
    int f = l % 3 + 1, o = 6 - l - f;
    run(&nt, 5);
    ok(!raft_quiescent(nt.r[l]), "quiesce: not before quiesce_ticks idle");

    /* A follower that misses the leader's messages keeps the group awake. */
    nt.cut[l][f] = 1;
    uint64_t idx = propose(&nt, l, 1);
    cmp_ok(idx, ">", 0, "quiesce: proposed");
    int slept = 0;
    for (int t = 0; t < 80; t++) {
        run(&nt, 1);
        if (raft_quiescent(nt.r[l]))
            slept = 1;
    }
    ok(!slept, "quiesce: the leader never sleeps while a follower lags");
    is_int(raft_commit(nt.r[l]), idx, "quiesce: the entry committed on the other quorum");
    nt.cut[l][f] = 0;
    int t = run_until_quiet(&nt, 100);
    ok(t > 0, "quiesce: once it caught up, the whole group sleeps (after %d ticks)", t);
    is_int(raft_last_index(nt.r[f]), idx, "quiesce: the lagging follower has every entry");
    is_int(raft_commit(nt.r[f]), idx, "quiesce: and knows the commit index");
    struct raft_stats st;
    raft_get_stats(nt.r[l], &st);
    cmp_ok(st.quiesces, ">=", 1, "quiesce: counted");

    /* Asleep: ticks send nothing and change nothing. */
    uint64_t sent = nt.sent, term = raft_term(nt.r[l]);
    run(&nt, 300);
    is_int(nt.sent - sent, 0, "quiesce: 300 idle ticks send no message");
    ok(all_quiet(&nt) && raft_role(nt.r[l]) == RAFT_LEADER && raft_term(nt.r[l]) == term,
       "quiesce: still asleep, same leader and term");
    ok(!raft_lease_valid(nt.r[l]), "quiesce: no lease while asleep");
    /* The host's in-flight heartbeat would wake the followers but not the
     * leader: they would time out under a live leader (churn.t). */
    struct raft_msg hb;
    is_int(raft_heartbeat(nt.r[l], (uint32_t)f, &hb), NERR_BUSY,
           "quiesce: a sleeping leader makes no host heartbeat");

    /* A lease read wakes it: valid again after one heartbeat round. */
    raft_wake(nt.r[l]);
    ok(!raft_quiescent(nt.r[l]), "quiesce: raft_wake wakes the leader");
    ok(!raft_lease_valid(nt.r[l]), "quiesce: no lease before the wake-up round is acked");
    flush(&nt, l);
    ok(raft_lease_valid(nt.r[l]), "quiesce: lease valid once the wake-up heartbeats are acked");
    t = run_until_quiet(&nt, 100);
    ok(t >= 20, "quiesce: asleep again after quiesce_ticks more (%d ticks)", t);

    /* A proposal wakes the leader; its append wakes the followers. */
    idx = propose(&nt, l, 2);
    ok(!raft_quiescent(nt.r[l]) && !raft_quiescent(nt.r[f]) && !raft_quiescent(nt.r[o]),
       "quiesce: a proposal wakes the leader and its append the followers");
    run(&nt, 2);
    ok(raft_commit(nt.r[f]) == idx && raft_commit(nt.r[o]) == idx,
       "quiesce: the proposal commits everywhere");
    ok(run_until_quiet(&nt, 100) > 0, "quiesce: and the group sleeps again");

    /* A message wakes a sleeper: a follower restarts with no leader known;
     * its pre-vote wakes the sleeping leader, which heartbeats; nobody is
     * deposed. */
    crash(&nt, f);
    run(&nt, 50);
    ok(all_quiet(&nt), "quiesce: the others sleep on while a follower is down (no liveness here)");
    restart(&nt, f);
    raft_get_stats(nt.r[l], &st);
    uint64_t wakes = st.wakes;
    int got = 0;
    for (t = 1; t <= 40 && !got; t++) {
        run(&nt, 1);
        got = raft_leader(nt.r[f]) == (uint32_t)l ? t : 0;
    }
    ok(got > 0, "quiesce: the restarted follower hears the sleeping leader (tick %d)", got);
    raft_get_stats(nt.r[l], &st);
    cmp_ok(st.wakes, ">", wakes, "quiesce: a message woke the leader");
    is_int(raft_term(nt.r[l]), term, "quiesce: and it was not deposed");
    is_int(leader_of(&nt), l, "quiesce: it still leads");
    ok(run_until_quiet(&nt, 100) > 0, "quiesce: the group sleeps again with the new member");
    is_int(nt.vote_unpersisted + nt.old_term_commit + nt.apply_gap, 0,
           "quiesce: no vote unpersisted, no old-term commit, no apply gap");
    net_free(&nt);
}

/* The leader dies while its group sleeps: followers sleep on until their
 * host reports its node down, then elect within E ticks; a follower whose
 * host still vouches for the leader refuses. */
static void test_quiesce_failover(void)
{
    struct net nt;
    net_init_q(&nt, 3, 37, 20);
    int l = run_until_leader(&nt, 100);
    if (l <= 0 || !run_until_quiet(&nt, 100)) {
        ok(0, "quiesce failover: no quiet leader");
        net_free(&nt);
        return;
    }
    int f = l % 3 + 1, o = 6 - l - f;
    uint64_t term = raft_term(nt.r[l]);
    crash(&nt, l);
    run(&nt, 100);
    ok(all_quiet(&nt) && leader_of(&nt) == 0,
       "quiesce failover: without a liveness report the followers sleep on");

    /* Only f's host reports the leader down: o refuses, nobody leads. */
    raft_peer_down(nt.r[f], (uint32_t)l);
    ok(!raft_quiescent(nt.r[f]) && raft_leader(nt.r[f]) == 0,
       "quiesce failover: raft_peer_down wakes the follower and forgets the leader");
    struct raft_stats st = {0};
    for (int i = 0; i < 12 && !st.prevotes_started; i++) {
        run(&nt, 1);
        raft_get_stats(nt.r[f], &st);
    }
    cmp_ok(st.prevotes_started, ">", 0, "quiesce failover: f asks for pre-votes within E ticks");
    is_int(leader_of(&nt), 0, "quiesce failover: the other follower, vouched for, refuses");
    raft_get_stats(nt.r[o], &st);
    cmp_ok(st.votes_ignored, ">", 0, "quiesce failover: its refusal is counted");
    is_int(raft_term(nt.r[o]), term, "quiesce failover: and its term did not move");

    /* Now o's host reports it too: f's next attempt wins. */
    raft_peer_down(nt.r[o], (uint32_t)l);
    int t = run_until_leader(&nt, 23);
    ok(t > 0 && t != l, "quiesce failover: a follower is elected");
    cmp_ok(raft_term(nt.r[t > 0 ? t : f]), ">", term, "quiesce failover: in a later term");
    net_free(&nt);

    /* Both hosts report at once, E ticks after the crash: the group elects
     * within E + 3 ticks (timeouts run out within [0, E) of the report). */
    int worst = 0, fast = 0, slow = 0;
    for (uint64_t seed = 41; seed < 61; seed++) {
        net_init_q(&nt, 3, seed, 20);
        l = run_until_leader(&nt, 100);
        if (l <= 0 || !run_until_quiet(&nt, 100)) {
            ok(0, "quiesce failover: no quiet leader (seed %llu)", (unsigned long long)seed);
            net_free(&nt);
            return;
        }
        crash(&nt, l);
        run(&nt, 10); /* the host's E ticks without a node heartbeat */
        for (int k = 1; k <= 3; k++)
            if (k != l)
                raft_peer_down(nt.r[k], (uint32_t)l);
        int got = 0;
        for (t = 1; t <= 40 && !got; t++) {
            run(&nt, 1);
            got = leader_of(&nt) > 0 ? t : 0;
        }
        if (got > worst)
            worst = got;
        fast += got > 0 && got <= 13;
        slow += !got;
        net_free(&nt);
    }
    ok(!slow && worst <= 23,
       "quiesce failover: 20 seeds: a leader within 2E + 3 ticks of the report (worst %d)", worst);
    cmp_ok(fast, ">=", 15, "quiesce failover: within E + 3 ticks unless the votes split");

    /* The old leader restarts: peer_down + peer_up (a new incarnation) wake
     * the sleeping new leader, and the restarted member follows it. */
    net_init_q(&nt, 3, 43, 20);
    l = run_until_leader(&nt, 100);
    run_until_quiet(&nt, 100);
    f = l % 3 + 1;
    restart(&nt, f);
    raft_peer_down(nt.r[l], (uint32_t)f);
    raft_peer_up(nt.r[l], (uint32_t)f);
    ok(!raft_quiescent(nt.r[l]), "quiesce: raft_peer_up wakes the sleeping leader");
    flush(&nt, l);
    is_int(raft_leader(nt.r[f]), l, "quiesce: its heartbeat reaches the restarted member at once");
    net_free(&nt);
}

int main(void)
{
    test_election();
    test_prevote();
    test_check_quorum_and_lease();
    test_commit_rules();
    test_old_term_not_counted();
    test_catch_up();
    test_gray_failure();
    test_malformed();
    test_five_and_restart();
    test_lost_log();
    test_hand_over();
    test_append_bytes();
    test_elapse();
    test_resend_gate();
    test_sticky_same_term();
    test_quiesce();
    test_quiesce_failover();
    return done_testing();
}
