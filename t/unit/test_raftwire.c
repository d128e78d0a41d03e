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
        es[i].type = RAFT_ENTRY_NORMAL;
    }
}

static int same_msg(const struct raft_msg *a, const struct raft_msg *b)
{
    if (a->type != b->type || a->from != b->from || a->to != b->to || a->term != b->term ||
        a->index != b->index || a->log_term != b->log_term || a->commit != b->commit ||
        a->hint != b->hint || a->ctx != b->ctx || a->reject != b->reject ||
        a->n_entries != b->n_entries || a->data_len != b->data_len ||
        a->conf.voters != b->conf.voters || a->conf.voters_out != b->conf.voters_out ||
        a->conf.log != b->conf.log)
        return 0;
    for (uint32_t i = 0; i < a->n_entries; i++)
        if (a->entries[i].term != b->entries[i].term ||
            a->entries[i].index != b->entries[i].index ||
            a->entries[i].type != b->entries[i].type || a->entries[i].len != b->entries[i].len ||
            (a->entries[i].len &&
             memcmp(a->entries[i].data, b->entries[i].data, a->entries[i].len)))
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

    /* Round trips, in version 2 (a configuration makes the encoder pick
     * it; without one it writes version 1, below). */
    fill_append(&m, es, d1, 3);
    m.hint = 99;
    m.conf.voters = 0x0e;
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
    ok(raftwire_decode(longer, len + 1, 5, &back, &e) == NERR_INVALID,
       "a trailing byte is refused");
    free(longer);
    /* Field violations, each on a fresh copy. */
    struct {
        size_t off;
        unsigned char v;
        const char *what;
    } bad[] = {{0, 3, "unknown version"},
               {1, 0, "type 0"},
               {1, RAFT_MSG_TYPE_END, "type past the last"},
               {2, 1, "reserved bytes"},
               {16, 65, "65 entries (over RAFT_MAX_BATCH)"},
               {RAFTWIRE_HEADER + 8, 99, "entry index out of sequence"},
               {RAFTWIRE_HEADER + 16, 2, "entry type 2"},
               {RAFTWIRE_HEADER + 16, 1, "a CONF entry of 100 bytes"}};
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
    ok(raftwire_decode(buf, len, 1, &back, &e) == NERR_INVALID,
       "a HEARTBEAT with entries is refused");
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
    m.conf.voters = 0x0e;
    raftwire_encode(&m, &buf, &len);
    le_put32(buf + RAFTWIRE_HEADER + 20, RAFT_MAX_ENTRY + 1);
    ok(raftwire_decode(buf, len, 1, &back, &e) == NERR_INVALID, "an oversized entry is refused");
    free(buf);

    /* Version 2: entry types and the configuration round-trip. */
    {
        struct raft_conf c = {.voters = 0x16, .voters_out = 0x0e, .log = 0x10};
        unsigned char enc[RAFT_CONF_ENC_LEN];
        raft_conf_encode(&c, enc);
        fill_append(&m, es, d1, 3);
        es[1].type = RAFT_ENTRY_CONF;
        es[1].len = RAFT_CONF_ENC_LEN;
        es[1].data = enc;
        m.conf = c;
        raftwire_encode(&m, &buf, &len);
        ok(buf[0] == 2 && raftwire_decode(buf, len, 1, &back, &e) == 0 && same_msg(&m, &back) &&
               back.entries[1].type == RAFT_ENTRY_CONF &&
               back.entries[0].type == RAFT_ENTRY_NORMAL && back.conf.voters == 0x16 &&
               back.conf.voters_out == 0x0e && back.conf.log == 0x10,
           "version 2: a CONF entry's type and the message's configuration round-trip");
        raft_msg_release(&back);
        free(buf);
        memset(&m, 0, sizeof m);
        m.type = RAFTWIRE_SNAP_CHUNK;
        m.from = 1;
        m.to = 4;
        m.term = 3;
        m.index = 100;
        m.data_len = 10;
        m.data = d1;
        m.conf = c;
        raftwire_encode(&m, &buf, &len);
        ok(raftwire_decode(buf, len, 1, &back, &e) == 0 && same_msg(&m, &back),
           "a SNAP_CHUNK carries the snapshot's configuration");
        raft_msg_release(&back);
        free(buf);
        /* A CONF entry must be exactly RAFT_CONF_ENC_LEN bytes. */
        fill_append(&m, es, d1, 1);
        es[0].type = RAFT_ENTRY_CONF;
        es[0].len = RAFT_CONF_ENC_LEN - 1;
        raftwire_encode(&m, &buf, &len);
        ok(raftwire_decode(buf, len, 1, &back, &e) == NERR_INVALID,
           "a CONF entry of %u bytes is refused (%s)", RAFT_CONF_ENC_LEN - 1, e.msg);
        free(buf);
        es[0].type = 7;
        es[0].len = 100;
        raftwire_encode(&m, &buf, &len);
        ok(raftwire_decode(buf, len, 1, &back, &e) == NERR_INVALID,
           "an entry of type 7 is refused (%s)", e.msg);
        free(buf);
    }
    /* Version 1 (a node not upgraded yet) still decodes: no configuration,
     * every entry NORMAL. Built by hand in the old layout. */
    {
        size_t n1 = RAFTWIRE_HEADER_V1 + 2 * 20 + 3 + 5 + 4;
        unsigned char *v = calloc(1, n1), *q = v + RAFTWIRE_HEADER_V1;
        v[0] = 1;
        v[1] = RAFT_MSG_APPEND;
        le_put32(v + 4, 2);
        le_put32(v + 8, 1);
        le_put32(v + 16, 2);
        le_put64(v + 20, 9);
        le_put64(v + 28, 10);
        le_put64(v + 36, 8);
        le_put64(v + 44, 10);
        for (int i = 0; i < 2; i++) {
            uint32_t l = i ? 5 : 3;
            le_put64(q, 9);
            le_put64(q + 8, 11 + (uint64_t)i);
            le_put32(q + 16, l);
            memcpy(q + 20, "abcde", l);
            q += 20 + l;
        }
        le_put32(q, 0);
        int r1 = raftwire_decode(v, n1, 3, &back, &e);
        ok(r1 == 0 && back.type == RAFT_MSG_APPEND && back.from == 2 && back.to == 1 &&
               back.term == 9 && back.index == 10 && back.n_entries == 2 &&
               back.entries[0].type == RAFT_ENTRY_NORMAL && back.entries[0].len == 3 &&
               back.entries[1].type == RAFT_ENTRY_NORMAL && back.entries[1].len == 5 &&
               back.entries[1].index == 12 && !memcmp(back.entries[1].data, "abcde", 5) &&
               back.conf.voters == 0 && back.conf.voters_out == 0 && back.conf.log == 0,
           "a version-1 APPEND decodes: entries NORMAL, configuration zero (%s)",
           r1 ? e.msg : "ok");
        if (!r1) {
            /* Nothing in it needs version 2: it encodes as version 1, the
             * very bytes (a node not upgraded yet understands it). */
            unsigned char *re = NULL;
            size_t rl = 0;
            ok(!raftwire_encode(&back, &re, &rl) && rl == n1 && !memcmp(re, v, n1),
               "... and encodes back to the same version-1 bytes");
            free(re);
            back.conf.voters = 0x0e;
            ok(!raftwire_encode(&back, &re, &rl) && re[0] == RAFTWIRE_VERSION &&
                   rl == n1 + (RAFTWIRE_HEADER - RAFTWIRE_HEADER_V1) + 2 * 4,
               "with a configuration it encodes as version %d", RAFTWIRE_VERSION);
            free(re);
            raft_msg_release(&back);
        }
        int cut1 = 0;
        for (size_t k = 0; k < n1; k++)
            cut1 += raftwire_decode(v, k, 3, &back, &e) == NERR_INVALID;
        is_int(cut1, (long)n1, "every truncation of the version-1 message is refused");
        v[0] = 3;
        ok(raftwire_decode(v, n1, 3, &back, &e) == NERR_INVALID, "version 3 is refused (%s)",
           e.msg);
        free(v);
    }
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
    is_int((long)hs.dropped_unknown, 1,
           "a message for a group not held here is dropped and counted");
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
