/* Consensus messages on the wire (store/raftwire.h) and what a node does
 * with bad ones: every field round-trips; every truncation, every layout
 * violation and random corruption is refused without a crash; and a node's
 * group host drops and counts malformed messages, forged senders and
 * messages for groups it does not hold, never applying them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/fsutil.h"
#include "lib/le.h"
#include "lib/log.h"
#include "store/group.h"
#include "store/raftwire.h"
#include "store/state.h"
#include "t/tap.h"

static void fill_append(struct raft_msg *m, struct raft_entry *es, unsigned char *d1, uint32_t n)
{
    memset(m, 0, sizeof *m);
    m->type = RAFT_MSG_APPEND;
    m->from = 2;
    m->to = 1;
    m->term = 7;
    m->index = 41;
    m->log_term = 6;
    m->commit = 40;
    m->n_entries = n;
    m->entries = es;
    for (uint32_t i = 0; i < n; i++) {
        es[i].term = 7;
        es[i].index = 42 + i;
        es[i].len = i == 1 ? 0 : 100 + i;
        es[i].data = i == 1 ? NULL : d1;
    }
}

static int same_msg(const struct raft_msg *a, const struct raft_msg *b)
{
    if (a->type != b->type || a->from != b->from || a->to != b->to || a->term != b->term ||
        a->index != b->index || a->log_term != b->log_term || a->commit != b->commit ||
        a->hint != b->hint || a->ctx != b->ctx || a->reject != b->reject ||
        a->n_entries != b->n_entries || a->data_len != b->data_len)
        return 0;
    for (uint32_t i = 0; i < a->n_entries; i++)
        if (a->entries[i].term != b->entries[i].term || a->entries[i].index != b->entries[i].index ||
            a->entries[i].len != b->entries[i].len ||
            (a->entries[i].len && memcmp(a->entries[i].data, b->entries[i].data, a->entries[i].len)))
            return 0;
    return !a->data_len || !memcmp(a->data, b->data, a->data_len);
}

static _Noreturn void bail(const char *what, const char *msg)
{
    printf("Bail out! %s: %s\n", what, msg);
    exit(255);
}

static int send_stub(void *arg, const char *to, uint64_t gid, const void *msg, size_t len)
{
    (void)arg, (void)to, (void)gid, (void)msg, (void)len;
    return 0;
}

static int nop_apply(void *sm, MDB_txn *txn, uint64_t lsn, const void *data, size_t len, void *op,
                     void **result, struct nerr *err)
{
    (*(int *)sm)++;
    return 0;
}

int main(void)
{
    log_init("test_raftwire", LOG_ERROR);
    unsigned char d1[200];
    for (int i = 0; i < 200; i++)
        d1[i] = (unsigned char)(i * 7);
    struct raft_entry es[3];
    struct raft_msg m, back;
    struct nerr e = {0};
    unsigned char *buf;
    size_t len;

    /* Round trips. */
    fill_append(&m, es, d1, 3);
    m.hint = 99;
    ok(raftwire_encode(&m, &buf, &len) == 0, "encode an APPEND with 3 entries (one empty)");
    ok(raftwire_decode(buf, len, 5, &back, &e) == 0 && same_msg(&m, &back) && back.group == 5,
       "it decodes to the same message, group from the record");
    raft_msg_release(&back);
    /* Every truncation is refused. */
    int cut_ok = 0;
    for (size_t k = 0; k < len; k++)
        cut_ok += raftwire_decode(buf, k, 5, &back, &e) == NERR_INVALID;
    is_int(cut_ok, (long)len, "every one of the %zu truncations is refused", len);
    /* Trailing bytes. */
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0;
    ok(raftwire_decode(longer, len + 1, 5, &back, &e) == NERR_INVALID, "a trailing byte is refused");
    free(longer);
    /* Field violations, each on a fresh copy. */
    struct {
        size_t off;
        unsigned char v;
        const char *what;
    } bad[] = {{0, 2, "unknown version"},       {1, 0, "type 0"},
               {1, RAFT_MSG_TYPE_END, "type past the last"}, {2, 1, "reserved bytes"},
               {16, 65, "65 entries (over RAFT_MAX_BATCH)"},  {72 + 8, 99, "entry index out of sequence"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unsigned char *c = malloc(len);
        memcpy(c, buf, len);
        c[bad[i].off] = bad[i].v;
        ok(raftwire_decode(c, len, 5, &back, &e) == NERR_INVALID, "refused: %s (%s)", bad[i].what,
           e.msg);
        free(c);
    }
    free(buf);
    /* Entries in a message type that carries none; data outside SNAPSHOT. */
    fill_append(&m, es, d1, 1);
    m.type = RAFT_MSG_HEARTBEAT;
    raftwire_encode(&m, &buf, &len);
    ok(raftwire_decode(buf, len, 1, &back, &e) == NERR_INVALID, "a HEARTBEAT with entries is refused");
    free(buf);
    memset(&m, 0, sizeof m);
    m.type = RAFT_MSG_VOTE;
    m.data_len = 10;
    m.data = d1;
    raftwire_encode(&m, &buf, &len);
    ok(raftwire_decode(buf, len, 1, &back, &e) == NERR_INVALID, "a VOTE with data is refused");
    m.type = RAFT_MSG_SNAPSHOT;
    free(buf);
    raftwire_encode(&m, &buf, &len);
    ok(raftwire_decode(buf, len, 1, &back, &e) == 0 && back.data_len == 10 &&
           !memcmp(back.data, d1, 10),
       "a SNAPSHOT carries its data");
    raft_msg_release(&back);
    free(buf);
    /* An entry length over RAFT_MAX_ENTRY. */
    fill_append(&m, es, d1, 1);
    raftwire_encode(&m, &buf, &len);
    le_put32(buf + 72 + 16, RAFT_MAX_ENTRY + 1);
    ok(raftwire_decode(buf, len, 1, &back, &e) == NERR_INVALID, "an oversized entry is refused");
    free(buf);
    /* Random corruption never crashes; whatever decodes is self-consistent. */
    srand(1);
    fill_append(&m, es, d1, 3);
    raftwire_encode(&m, &buf, &len);
    int decoded = 0, refused = 0;
    for (int it = 0; it < 20000; it++) {
        unsigned char *c = malloc(len);
        memcpy(c, buf, len);
        int flips = 1 + rand() % 4;
        for (int f = 0; f < flips; f++)
            c[rand() % len] ^= (unsigned char)(1 + rand() % 255);
        size_t l = rand() % 8 ? len : (size_t)rand() % (len + 1);
        if (raftwire_decode(c, l, 1, &back, &e) == 0) {
            decoded++;
            raft_msg_release(&back);
        } else {
            refused++;
        }
        free(c);
    }
    free(buf);
    ok(decoded + refused == 20000 && refused > 0,
       "20000 corrupted messages: %d refused, %d decoded (no crash)", refused, decoded);

    /* A node's group host: bad messages are dropped and counted. */
    char dir[] = "/tmp/nines-raftwire-XXXXXX";
    if (!mkdtemp(dir))
        bail("mkdtemp", "");
    char sdir[300], wdir[300], ldir[300];
    snprintf(sdir, sizeof sdir, "%s/state", dir);
    snprintf(ldir, sizeof ldir, "%s/log", dir);
    snprintf(wdir, sizeof wdir, "%s/wal", dir);
    struct state *st;
    struct group_host *h;
    struct group *g;
    struct state_options so = {.map_size = 64ull << 20, .max_dbs = 16};
    int applied = 0;
    struct group_sm sm = {.apply = nop_apply};
    struct group_members mem = {.gid = 77, .n = 3, .self = 1, .nodes = {"n1", "n2", "n3"}};
    if (state_open(sdir, &so, &st, &e) ||
        group_host_start(st, ldir, NULL, NULL, send_stub, NULL, &h, &e) ||
        group_open(h, "g77", wdir, &sm, &applied, &mem, &g, &e))
        bail("setup", e.msg);
    /* Garbage. */
    group_host_recv(h, "n2", 77, "garbage!", 8);
    /* A valid APPEND claiming member 3, sent by node n2: forged. */
    fill_append(&m, es, d1, 1);
    m.from = 3;
    m.index = 0;
    m.log_term = 0;
    es[0].index = 1;
    raftwire_encode(&m, &buf, &len);
    group_host_recv(h, "n2", 77, buf, len);
    /* From a node that is not a member. */
    group_host_recv(h, "n9", 77, buf, len);
    /* For a group this node does not hold. */
    group_host_recv(h, "n3", 78, buf, len);
    free(buf);
    struct group_host_stats hs = {0};
    for (int i = 0; i < 200; i++) {
        group_host_stats(h, &hs);
        if (hs.dropped_malformed + hs.dropped_forged + hs.dropped_unknown >= 4)
            break;
        usleep(5000);
    }
    is_int((long)hs.dropped_malformed, 1, "the undecodable message is dropped and counted");
    is_int((long)hs.dropped_forged, 2,
           "a message whose claimed member is not its sender, and one from a non-member, are "
           "dropped and counted");
    is_int((long)hs.dropped_unknown, 1, "a message for a group not held here is dropped and counted");
    struct group_status gs;
    group_status(g, &gs);
    ok(gs.last_index == 0 && gs.term == 0 && applied == 0,
       "nothing of them reached the log (last index %llu, term %llu)",
       (unsigned long long)gs.last_index, (unsigned long long)gs.term);
    group_close(g);
    group_host_stop(h);
    state_close(st);
    fs_rm_rf(dir, &e);
    return done_testing();
}
