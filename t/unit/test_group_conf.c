/*
 * test_group_conf.c — membership change carried by the group host
 * (group.h, "membership change"): four group hosts in one process, each
 * with its own LMDB state, node log and group directory under a temporary
 * directory, wired by a send function that hands every message to the
 * destination host's group_host_recv.
 *
 *  - a group {1,2,3} on hosts n1..n3 commits entries;
 *  - member 4 is opened empty on n4 with the joint configuration it joins,
 *    every member learns slot 4 (group_set_members), the leader proposes
 *    {1,2,4} (group_propose_conf): the change commits, member 4 catches up
 *    and holds the same state as the leader;
 *  - member 3 is closed and its slot cleared: the group commits without it;
 *  - member 4 and the leader restart: the configuration is {1,2,4} again,
 *    read from the node log (the configuration they are opened with says
 *    otherwise);
 *  - with a small compact_entries, the log is compacted past the
 *    configuration entries; after another restart the configuration comes
 *    from the SNAPSHOT file, whose header holds it.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "lib/le.h"
#include "store/group.h"
#include "store/group_internal.h" /* group__load_one: the node log record */
#include "store/snapstream.h"
#include "store/state.h"
#include "t/tap.h"

#define NHOSTS 5
#define GID 7

static const char *names[NHOSTS] = {"n1", "n2", "n3", "n4", "n5"};

struct host {
    struct state *st;
    struct group_host *h;
    struct group *g;
    MDB_dbi kv;
    char dir[300];
};

static struct host hosts[NHOSTS];
static pthread_rwlock_t net = PTHREAD_RWLOCK_INITIALIZER; /* guards hosts[].h for senders */
static char root[64];

static _Noreturn void bail(const char *what, const char *msg)
{
    printf("Bail out! %s: %s\n", what, msg);
    exit(255);
}

/* The transport: straight into the destination host's receive path. */
static int tsend(void *arg, const char *to, uint64_t gid, const void *msg, size_t len)
{
    const char *from = arg;
    int rc = NERR_NOTFOUND;
    pthread_rwlock_rdlock(&net);
    for (int i = 0; i < NHOSTS; i++)
        if (!strcmp(names[i], to) && hosts[i].h) {
            group_host_recv(hosts[i].h, from, gid, msg, len);
            rc = 0;
        }
    pthread_rwlock_unlock(&net);
    return rc;
}

/* The state machine: every entry is a key of the host's "kv" database. */
struct op {
    size_t len;
    char data[32];
};

static int kv_apply(void *sm, MDB_txn *txn, uint64_t lsn, const void *data, size_t len, void *op,
                    void **result, struct nerr *err)
{
    struct host *x = sm;
    (void)result;
    if (op) {
        data = ((struct op *)op)->data;
        len = ((struct op *)op)->len;
    }
    MDB_val k = {len, (void *)data}, v = {sizeof lsn, &lsn};
    int rc = mdb_put(txn, x->kv, &k, &v, 0);
    return rc ? state_mdb_err(err, rc, "kv put") : 0;
}

static int kv_snapshot(void *sm, MDB_txn *txn, unsigned char **out, size_t *len, struct nerr *err)
{
    return state_dbi_snapshot(txn, ((struct host *)sm)->kv, out, len, err);
}

static int kv_restore(void *sm, MDB_txn *txn, const void *data, size_t len, struct nerr *err)
{
    return state_dbi_restore(txn, ((struct host *)sm)->kv, data, len, err);
}

static int kv_dbi(void *sm, MDB_dbi *dbi)
{
    *dbi = ((struct host *)sm)->kv;
    return 0;
}

static const struct group_sm kv_sm = {
    .apply = kv_apply, .snapshot = kv_snapshot, .restore = kv_restore, .snapshot_dbi = kv_dbi};

static size_t kv_count(struct host *x)
{
    MDB_txn *txn;
    MDB_stat ms = {0};
    struct nerr e = {0};
    group_host_barrier(x->h); /* what was applied is committed */
    if (state_read_begin(x->st, &txn, &e))
        return 0;
    mdb_stat(txn, x->kv, &ms);
    state_read_end(x->st, txn);
    return ms.ms_entries;
}

static void host_up(int i, const struct group_timing *t)
{
    struct host *x = &hosts[i];
    struct nerr e = {0};
    char sdir[400], ldir[400];
    snprintf(x->dir, sizeof x->dir, "%s/%s", root, names[i]);
    snprintf(sdir, sizeof sdir, "%s/state", x->dir);
    snprintf(ldir, sizeof ldir, "%s/log", x->dir);
    struct state_options so = {.map_size = 64ull << 20, .max_dbs = 16};
    struct group_host *h;
    MDB_txn *txn;
    if (fs_mkdir_p(x->dir, &e) || state_open(sdir, &so, &x->st, &e) ||
        state_write_begin(x->st, &txn, &e))
        bail("state", e.msg);
    if (mdb_dbi_open(txn, "kv", MDB_CREATE, &x->kv))
        bail("mdb_dbi_open", "kv");
    if (state_write_commit(x->st, txn, &e) ||
        group_host_start(x->st, ldir, NULL, t, tsend, (void *)names[i], &h, &e))
        bail("group_host_start", e.msg);
    pthread_rwlock_wrlock(&net);
    x->h = h;
    pthread_rwlock_unlock(&net);
}

static void host_down(int i)
{
    struct host *x = &hosts[i];
    group_close(x->g);
    x->g = NULL;
    pthread_rwlock_wrlock(&net);
    struct group_host *h = x->h;
    x->h = NULL;
    pthread_rwlock_unlock(&net);
    group_host_stop(h);
    state_close(x->st);
    x->st = NULL;
}

static void member_open(int i, const struct group_members *mem)
{
    struct host *x = &hosts[i];
    struct nerr e = {0};
    char gdir[400];
    snprintf(gdir, sizeof gdir, "%s/g%d", x->dir, GID);
    if (group_open(x->h, "g7", gdir, &kv_sm, x, mem, &x->g, &e))
        bail("group_open", e.msg);
}

static int leader(void)
{
    for (int i = 0; i < NHOSTS; i++)
        if (hosts[i].g) {
            struct group_status st;
            group_status(hosts[i].g, &st);
            if (st.role == RAFT_LEADER)
                return i;
        }
    return -1;
}

static int wait_leader(int ms)
{
    int64_t end = clock_mono_ms() + ms;
    int l;
    while ((l = leader()) < 0 && clock_mono_ms() < end)
        usleep(5000);
    return l;
}

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int left, failed;
};

static void on_done(void *arg, int status, void *result)
{
    struct op *o = arg;
    struct waiter *w = *(struct waiter **)(o + 1);
    (void)result;
    pthread_mutex_lock(&w->mu);
    w->left--;
    w->failed += status != 0;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    free(o);
}

/* Proposes n entries "<tag>-<k>" on the leader; 1 when all commit and apply
 * there within 20 s. */
static int propose_n(const char *tag, int n)
{
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    int64_t end = clock_mono_ms() + 20000;
    for (int k = 0; k < n;) {
        int l = leader();
        if (l < 0) {
            if (clock_mono_ms() > end)
                return 0;
            usleep(5000);
            continue;
        }
        struct op *o = malloc(sizeof *o + sizeof(struct waiter *));
        o->len = (size_t)snprintf(o->data, sizeof o->data, "%s-%d", tag, k);
        *(struct waiter **)(o + 1) = &w;
        pthread_mutex_lock(&w.mu);
        w.left++;
        pthread_mutex_unlock(&w.mu);
        if (group_propose(hosts[l].g, o->data, o->len, o, on_done, o)) {
            pthread_mutex_lock(&w.mu);
            w.left--;
            pthread_mutex_unlock(&w.mu);
            free(o);
            usleep(5000);
            if (clock_mono_ms() > end)
                return 0;
            continue;
        }
        k++;
    }
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 20;
    pthread_mutex_lock(&w.mu);
    while (w.left > 0)
        if (pthread_cond_timedwait(&w.cv, &w.mu, &dl))
            break;
    int good = w.left == 0 && w.failed == 0;
    pthread_mutex_unlock(&w.mu);
    return good;
}

/* Member i has applied at least lsn (within ms). */
static int wait_applied(int i, uint64_t lsn, int ms)
{
    int64_t end = clock_mono_ms() + ms;
    while (group_applied_lsn(hosts[i].g) < lsn && clock_mono_ms() < end)
        usleep(5000);
    return group_applied_lsn(hosts[i].g) >= lsn;
}

static int conf_is(int i, uint32_t voters, uint32_t out, uint32_t logm, struct group_conf_info *ci)
{
    group_conf_get(hosts[i].g, ci);
    return ci->conf.voters == voters && ci->conf.voters_out == out && ci->conf.log == logm;
}

static int wait_conf(int i, uint32_t voters, int ms, struct group_conf_info *ci)
{
    int64_t end = clock_mono_ms() + ms;
    while (!(conf_is(i, voters, 0, 0, ci) && ci->committed) && clock_mono_ms() < end)
        usleep(5000);
    return conf_is(i, voters, 0, 0, ci) && ci->committed;
}

#define B(id) (1u << (id))

/* The node log record of an entry (group.h): prefix term | type << 56. */
static void test_records(void)
{
    struct nerr e = {0};
    struct group__load_ctx lc = {.err = &e};
    unsigned char r[8 + RAFT_CONF_ENC_LEN];
    struct raft_conf c = {.voters = 0x16};
    struct raft_entry en = {.term = 5, .index = 1, .type = RAFT_ENTRY_CONF};
    ok(group__entry_prefix(&en, r) == 0 && le_get64(r) == (5 | (UINT64_C(1) << 56)),
       "a CONF entry's prefix is term | 1 << 56");
    en.term = UINT64_C(1) << 56;
    is_int(group__entry_prefix(&en, r), NERR_INVALID, "a term of 2^56 cannot be stored");
    /* An old record (top byte 0): NORMAL. */
    le_put64(r, 7);
    memcpy(r + 8, "abc", 3);
    ok(group__load_one(&lc, 1, r, 11) == 0 && lc.n == 1 && lc.v[0].type == RAFT_ENTRY_NORMAL &&
           lc.v[0].term == 7 && lc.v[0].len == 3,
       "a record without a type loads as a NORMAL entry of its term");
    le_put64(r, 7 | (UINT64_C(1) << 56));
    raft_conf_encode(&c, r + 8);
    ok(group__load_one(&lc, 2, r, sizeof r) == 0 && lc.n == 2 && lc.v[1].type == RAFT_ENTRY_CONF &&
           lc.v[1].term == 7 && lc.v[1].len == RAFT_CONF_ENC_LEN,
       "a CONF record loads with its type and term");
    le_put64(r, 7 | (UINT64_C(2) << 56));
    is_int(group__load_one(&lc, 3, r, sizeof r), NERR_CORRUPT, "type 2 is refused (%s)", e.msg);
    le_put64(r, 7 | (UINT64_C(1) << 56));
    is_int(group__load_one(&lc, 3, r, 12), NERR_CORRUPT, "a CONF record of 4 bytes is refused (%s)",
           e.msg);
    for (size_t i = 0; i < lc.n; i++)
        free(lc.v[i].data);
    free(lc.v);
}

int main(void)
{
    log_init("test_group_conf", LOG_WARN);
    snprintf(root, sizeof root, "/tmp/nines-gconf-XXXXXX");
    if (!mkdtemp(root))
        bail("mkdtemp", root);
    struct group_timing t = {.quiesce_ticks = GROUP_QUIESCE_NEVER};
    struct nerr e = {0};
    struct group_conf_info ci;
    test_records();

    /* 1. A group {1,2,3}. */
    for (int i = 0; i < 3; i++)
        host_up(i, &t);
    struct group_members m3 = {.gid = GID, .n = 3, .nodes = {"n1", "n2", "n3"}};
    for (int i = 0; i < 3; i++) {
        m3.self = (uint32_t)i + 1;
        member_open(i, &m3);
    }
    int l = wait_leader(10000);
    ok(l >= 0, "the group {1,2,3} elects a leader (member %d)", l + 1);
    ok(propose_n("a", 20), "20 entries commit");
    group_conf_get(hosts[l].g, &ci);
    ok(!ci.conf.voters && !ci.conf.voters_out && ci.index == 0,
       "a group that never changed shows the initial configuration (all zero, index 0)");
    if (ci.conf.voters || ci.index)
        diag("leader %d: conf voters %#x out %#x log %#x index %llu", l + 1, ci.conf.voters,
             ci.conf.voters_out, ci.conf.log, (unsigned long long)ci.index);

    /* Refusals before the new member has a node. */
    struct raft_conf target = {.voters = B(1) | B(2) | B(4)};
    is_int(group_propose_conf(hosts[l].g, &target, &e), NERR_INVALID,
           "a target naming an id without a node is refused (%s)", e.msg);
    struct raft_conf logmaj = {.voters = B(1) | B(2) | B(3), .log = B(2) | B(3)};
    is_int(group_propose_conf(hosts[l].g, &logmaj, &e), NERR_INVALID,
           "a target with a majority of log members is refused (%s)", e.msg);
    struct group_members bad = {.gid = GID, .n = 2, .self = (uint32_t)l + 1, .nodes = {"n1", "n2"}};
    if (l < 2)
        is_int(group_set_members(hosts[l].g, &bad, &e), NERR_INVALID,
               "slots that drop a voter in effect are refused (%s)", e.msg);
    else
        ok(1, "skip: the leader is member 3");

    /* 2. Member 4 joins: opened empty with the joint configuration. */
    host_up(3, &t);
    struct group_members m4 = {
        .gid = GID,
        .n = 4,
        .self = 4,
        .nodes = {"n1", "n2", "n3", "n4"},
        .conf = {.voters = B(1) | B(2) | B(4), .voters_out = B(1) | B(2) | B(3)}};
    member_open(3, &m4);
    int set_ok = 1;
    for (int i = 0; i < 3; i++) {
        struct group_members s = m4;
        s.self = (uint32_t)i + 1;
        s.conf = (struct raft_conf){0};
        set_ok &= group_set_members(hosts[i].g, &s, &e) == 0;
    }
    ok(set_ok, "every member learns slot 4 (group_set_members)");
    char node[64];
    ok(group_member_node(hosts[0].g, 4, node, sizeof node) == 0 && !strcmp(node, "n4"),
       "group_member_node(4) is n4");
    l = wait_leader(5000);
    int prc = NERR_BUSY;
    int64_t end = clock_mono_ms() + 10000;
    while (l >= 0 && (prc = group_propose_conf(hosts[l].g, &target, &e)) == NERR_BUSY &&
           clock_mono_ms() < end) {
        usleep(10000);
        l = wait_leader(5000);
    }
    is_int(prc, 0, "the leader (member %d) proposes {1,2,4} (%s)", l + 1, prc ? e.msg : "ok");
    int okc = wait_conf(l, B(1) | B(2) | B(4), 10000, &ci);
    ok(okc && ci.index > 20, "the leader shows {1,2,4} committed (index %llu)",
       (unsigned long long)ci.index);
    uint64_t conf_index = ci.index;
    uint64_t target_lsn = group_applied_lsn(hosts[l].g);
    ok(wait_applied(3, target_lsn, 10000) && wait_conf(3, B(1) | B(2) | B(4), 5000, &ci),
       "member 4 applied everything up to %llu and shows {1,2,4}", (unsigned long long)target_lsn);
    is_int(kv_count(&hosts[3]), kv_count(&hosts[l]),
           "member 4 holds the leader's state (%zu items)", kv_count(&hosts[l]));
    is_int(kv_count(&hosts[3]), 20, "... which is every entry proposed");
    {
        int ll = leader();
        uint64_t m4 = ll >= 0 ? group_member_match(hosts[ll].g, 4) : 0;
        ok(m4 >= conf_index, "group_member_match on the leader: member 4 has %llu (>= %llu)",
           (unsigned long long)m4, (unsigned long long)conf_index);
        is_int(group_member_match(hosts[ll == 0 ? 1 : 0].g, 4), 0,
               "group_member_match on a follower is 0");
    }
    struct group_members got;
    char buf[256];
    ok(group_members_get(hosts[l].g, &got, buf, sizeof buf) == 0 && got.n == 4 && got.nodes[3] &&
           !strcmp(got.nodes[3], "n4") && got.conf.voters == (B(1) | B(2) | B(4)),
       "group_members_get shows the slots and the configuration");
    is_int(group_members_get(hosts[l].g, &got, buf, 4), NERR_LIMIT,
           "group_members_get with a small buffer is NERR_LIMIT");

    /* 3. Member 3 goes; its slot is cleared; the group commits without it. */
    /* A removed leader hands over once the change commits (raft.h). */
    end = clock_mono_ms() + 10000;
    while (((l = leader()) < 0 || l == 2) && clock_mono_ms() < end)
        usleep(5000);
    ok(l >= 0 && l != 2, "the leader is member %d, not the removed member 3", l + 1);
    struct group_members m124 = {.gid = GID, .n = 4, .nodes = {"n1", "n2", NULL, "n4"}};
    set_ok = 1;
    for (int i = 0; i < NHOSTS; i++)
        if (hosts[i].g && i != 2) {
            m124.self = (uint32_t)i + 1;
            set_ok &= group_set_members(hosts[i].g, &m124, &e) == 0;
        }
    ok(set_ok, "slot 3 is cleared on every remaining member");
    /* The removed member keeps running until its host closes it (as the
     * catalog does later): it must do no harm meanwhile. */
    ok(propose_n("b", 10), "10 more entries commit without member 3");
    usleep(400000); /* several election timeouts of member 3 */
    struct group_status s3;
    group_status(hosts[2].g, &s3);
    ok(s3.role != RAFT_LEADER && leader() != 2,
       "the removed member 3, still running, does not lead (role %d, term %llu)", (int)s3.role,
       (unsigned long long)s3.term);
    group_close(hosts[2].g);
    hosts[2].g = NULL;
    target_lsn = group_applied_lsn(hosts[leader() >= 0 ? leader() : 0].g);
    ok(wait_applied(3, target_lsn, 10000) && kv_count(&hosts[3]) == 30,
       "member 4 applied them (30 items)");
    struct group_host_stats hs;
    group_host_stats(hosts[0].h, &hs);
    note("n1: %llu message(s) dropped as forged (member 3's, after its slot was cleared)",
         (unsigned long long)hs.dropped_forged);

    /* 4. Member 4 and the leader restart: the configuration is read from
     * the node log (they are opened with a different one). */
    int lead = leader();
    int back[2] = {lead, 3};
    for (int k = 0; k < 2; k++)
        host_down(back[k]);
    struct group_timing tc = t;
    tc.compact_entries = 10;
    for (int k = 0; k < 2; k++) {
        host_up(back[k], &tc);
        struct group_members mm = m124;
        mm.self = (uint32_t)back[k] + 1;
        mm.conf = (struct raft_conf){.voters = B(1) | B(2) | B(4), .log = B(4)};
        member_open(back[k], &mm);
        int okl = conf_is(back[k], B(1) | B(2) | B(4), 0, 0, &ci) && ci.index == conf_index;
        ok(okl, "after a restart member %d shows {1,2,4} from its log (index %llu of %llu)",
           back[k] + 1, (unsigned long long)ci.index, (unsigned long long)conf_index);
        if (!okl)
            diag("conf voters %#x out %#x log %#x", ci.conf.voters, ci.conf.voters_out,
                 ci.conf.log);
    }
    ok(wait_leader(10000) >= 0, "a leader is elected after the restart");
    ok(propose_n("c", 30), "30 more entries commit");
    /* Member 2 too, so that whoever leads compacts (step 6). */
    int other = back[0] == 0 ? 1 : 0; /* of members 1 and 2, the one not restarted yet */
    host_down(other);
    host_up(other, &tc);
    {
        struct group_members mm = m124;
        mm.self = (uint32_t)other + 1;
        mm.conf = (struct raft_conf){.voters = B(1) | B(2) | B(4)};
        member_open(other, &mm);
    }
    /* 5. Compaction (compact_entries 10) moves the log past the
     * configuration entries; the SNAPSHOT holds the configuration. */
    end = clock_mono_ms() + 15000;
    struct group_status s1 = {0}, s4 = {0};
    while (clock_mono_ms() < end) {
        group_status(hosts[back[0]].g, &s1);
        group_status(hosts[3].g, &s4);
        if (s1.first_index > conf_index + 1 && s4.first_index > conf_index + 1)
            break;
        if (propose_n("d", 5) == 0)
            break;
        usleep(100000);
    }
    ok(s1.first_index > conf_index + 1 && s4.first_index > conf_index + 1,
       "both compacted past the configuration entry (logs start at %llu and %llu)",
       (unsigned long long)s1.first_index, (unsigned long long)s4.first_index);
    for (int k = 0; k < 2; k++)
        host_down(back[k]);
    for (int k = 0; k < 2; k++) {
        char p[600];
        snprintf(p, sizeof p, "%s/g%d/SNAPSHOT", hosts[back[k]].dir, GID);
        int fd = open(p, O_RDONLY);
        struct snapfile f = {0};
        int okf = fd >= 0 && !snapfile_read(fd, p, &f, &e);
        ok(okf && f.conf.voters == (B(1) | B(2) | B(4)) && !f.conf.voters_out && !f.conf.log &&
               f.index > conf_index,
           "member %d's SNAPSHOT at %llu holds {1,2,4}", back[k] + 1, (unsigned long long)f.index);
        if (fd >= 0)
            close(fd);
        host_up(back[k], &tc);
        struct group_members mm = m124;
        mm.self = (uint32_t)back[k] + 1;
        mm.conf = (struct raft_conf){.voters = B(1) | B(2) | B(4), .log = B(4)};
        member_open(back[k], &mm);
        struct group_status st;
        group_status(hosts[back[k]].g, &st);
        int okc2 = conf_is(back[k], B(1) | B(2) | B(4), 0, 0, &ci);
        ok(okc2 && ci.index + 1 == st.first_index,
           "after a restart member %d shows {1,2,4} from its SNAPSHOT (index %llu, log from %llu)",
           back[k] + 1, (unsigned long long)ci.index, (unsigned long long)st.first_index);
    }
    ok(wait_leader(10000) >= 0 && propose_n("e", 5), "the group still commits");

    target_lsn = group_applied_lsn(hosts[leader()].g);
    size_t want = kv_count(&hosts[leader()]);
    int same = 1;
    for (int i = 0; i < NHOSTS; i++)
        if (hosts[i].g)
            same &= wait_applied(i, target_lsn, 10000) && kv_count(&hosts[i]) == want;
    ok(same, "members 1, 2 and 4 hold the same state (%zu items)", want);

    /* 6. Member 5 joins after the leader compacted: it is brought up by a
     * snapshot stream, which carries the configuration. */
    l = wait_leader(10000);
    end = clock_mono_ms() + 15000;
    struct group_status sl = {0};
    while (l >= 0 && clock_mono_ms() < end) {
        group_status(hosts[l].g, &sl);
        if (sl.first_index > 1)
            break;
        propose_n("f", 5);
        usleep(100000);
        l = wait_leader(5000);
    }
    ok(l >= 0 && sl.first_index > 1, "the leader (member %d) compacted (log from %llu)", l + 1,
       (unsigned long long)sl.first_index);
    host_up(4, &tc);
    struct group_members m5 = {
        .gid = GID,
        .n = 5,
        .self = 5,
        .nodes = {"n1", "n2", NULL, "n4", "n5"},
        .conf = {.voters = B(1) | B(2) | B(4) | B(5), .voters_out = B(1) | B(2) | B(4)}};
    member_open(4, &m5);
    set_ok = 1;
    for (int i = 0; i < 4; i++)
        if (hosts[i].g) {
            struct group_members x = m5;
            x.self = (uint32_t)i + 1;
            x.conf = (struct raft_conf){0};
            set_ok &= group_set_members(hosts[i].g, &x, &e) == 0;
        }
    ok(set_ok, "every member learns slot 5");
    struct raft_conf t5 = {.voters = B(1) | B(2) | B(4) | B(5)};
    prc = NERR_BUSY;
    end = clock_mono_ms() + 10000;
    while ((l = wait_leader(5000)) >= 0 &&
           (prc = group_propose_conf(hosts[l].g, &t5, &e)) == NERR_BUSY && clock_mono_ms() < end)
        usleep(10000);
    is_int(prc, 0, "the leader proposes {1,2,4,5} (%s)", prc ? e.msg : "ok");
    okc = wait_conf(l, t5.voters, 10000, &ci);
    ok(okc, "the leader shows {1,2,4,5} committed (index %llu)", (unsigned long long)ci.index);
    ok(propose_n("g", 3), "entries commit in {1,2,4,5}");
    l = leader();
    target_lsn = group_applied_lsn(hosts[l].g);
    want = kv_count(&hosts[l]);
    int c5 = wait_applied(4, target_lsn, 20000) && wait_conf(4, t5.voters, 5000, &ci);
    ok(c5 && kv_count(&hosts[4]) == want,
       "member 5 caught up (applied %llu, %zu items) and shows {1,2,4,5}",
       (unsigned long long)group_applied_lsn(hosts[4].g), kv_count(&hosts[4]));
    group_host_stats(hosts[l].h, &hs);
    struct group_status s5;
    group_status(hosts[4].g, &s5);
    ok(s5.first_index > 1 && hs.snap_streams_done >= 1,
       "... by a snapshot stream (its log starts at %llu; streams done by the leader: %llu)",
       (unsigned long long)s5.first_index, (unsigned long long)hs.snap_streams_done);
    {
        char p[600];
        snprintf(p, sizeof p, "%s/g%d/SNAPSHOT", hosts[4].dir, GID);
        int fd = open(p, O_RDONLY);
        struct snapfile f = {0};
        int okf = fd >= 0 && !snapfile_read(fd, p, &f, &e);
        uint32_t allowed = B(1) | B(2) | B(4) | B(5);
        ok(okf && f.conf.voters && !(f.conf.voters & ~allowed) && f.len > 0,
           "member 5's SNAPSHOT from the stream holds a configuration (voters %#x out %#x at %llu)",
           f.conf.voters, f.conf.voters_out, (unsigned long long)f.index);
        if (fd >= 0)
            close(fd);
    }
    host_down(4);
    host_up(4, &tc);
    member_open(4, &m5);
    ok(conf_is(4, t5.voters, 0, 0, &ci), "after a restart member 5 shows {1,2,4,5} (index %llu)",
       (unsigned long long)ci.index);
    ok(propose_n("h", 3), "the group commits with member 5 back");
    l = leader();
    target_lsn = group_applied_lsn(hosts[l].g);
    want = kv_count(&hosts[l]);
    ok(wait_applied(4, target_lsn, 10000) && kv_count(&hosts[4]) == want,
       "member 5 holds the leader's state (%zu items)", want);
    uint64_t poisoned = 0;
    for (int i = 0; i < NHOSTS; i++)
        if (hosts[i].h) {
            group_host_stats(hosts[i].h, &hs);
            poisoned += hs.poisoned_entries;
        }
    is_int(poisoned, 0, "no configuration entry reached a state machine as a poisoned entry");

    for (int i = 0; i < NHOSTS; i++)
        if (hosts[i].h)
            host_down(i);
    fs_rm_rf(root, &e);
    return done_testing();
}
