/* The node log (store/nodelog.h) on real files: many streams in one WAL
 * against an in-memory model across reopenings (appends, cuts, resets,
 * releases, drops, hard states, tiny segments so that segments rotate and
 * go), the latest hard state surviving a crash and the deletion of its
 * segment (refreshed at the tail), one
 * fdatasync serving several streams, torn tails, damaged and malformed
 * records refused, the oldest segment's pinners asked to compact, and a
 * failed fdatasync failing every stream. NINES_SEED replays a run. */
#include "lib/le.h"
#include "lib/rng.h"
#include "lib/log.h"
#include "store/nodelog.h"
#include "t/tap.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct rng g_rng;
static uint64_t rnd(void)
{
    return rng_next(&g_rng);
}

static char g_top[] = "/tmp/nines-nodelog-XXXXXX";

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)flag;
    (void)f;
    return remove(p);
}

static void subdir(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", g_top, name);
}

static int count_segments(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        n += strstr(de->d_name, ".wal") != NULL;
    if (d)
        closedir(d);
    return n;
}

/* ---- the model ---------------------------------------------------------- */

#define NS 5
#define MAXE 4000
struct mstream {
    char name[32];
    int exists;
    uint64_t first, last, released;
    int has_hs;
    uint64_t term;
    uint32_t vote;
    uint32_t val[MAXE + 2]; /* entry lsn's value (payload = name + value) */
};
static struct mstream M[NS];

static size_t make_payload(const struct mstream *m, uint64_t lsn, uint32_t v, unsigned char *buf)
{
    size_t len = 8 + (v % 61);
    le_put64(buf, lsn ^ ((uint64_t)v << 32));
    for (size_t i = 8; i < len; i++)
        buf[i] = (unsigned char)(m->name[i % 4] + v + i);
    return len;
}

struct check_ctx {
    const struct mstream *m;
    uint64_t next;
    int bad;
};

static int check_one(void *arg, uint64_t lsn, const void *data, size_t len)
{
    struct check_ctx *c = arg;
    unsigned char want[80];
    if (lsn != c->next || lsn > c->m->last) {
        c->bad = 1;
        return 1;
    }
    size_t wl = make_payload(c->m, lsn, c->m->val[lsn], want);
    if (wl != len || memcmp(want, data, len))
        c->bad = 1;
    c->next++;
    return c->bad;
}

static void model_run(const char *name)
{
    char dir[300];
    subdir(dir, sizeof dir, name);
    memset(M, 0, sizeof M);
    struct wal_options wo = {.segment_bytes = 4096};
    struct nodelog *nl;
    struct nls *h[NS] = {0};
    struct nerr err = {0};
    for (int i = 0; i < NS; i++)
        snprintf(M[i].name, sizeof M[i].name, "p.t%d.%d", 7 + i, i);
    int reopen_ok = 1, check_ok = 1, append_ok = 1, max_segs = 0;
    int rounds = 12;
    for (int round = 0; round < rounds; round++) {
        if (nodelog_open(dir, &wo, &nl, &err)) {
            reopen_ok = 0;
            diag("reopen %d: %s", round, err.msg);
            break;
        }
        /* Every stream comes back as the model says. */
        for (int i = 0; i < NS; i++) {
            struct mstream *m = &M[i];
            if (nodelog_stream_open(nl, m->name, &h[i], &err)) {
                check_ok = 0;
                diag("open %s: %s", m->name, err.msg);
                continue;
            }
            uint64_t last = nls_last_lsn(h[i]);
            if (last != (m->exists ? m->last : 0)) {
                check_ok = 0;
                diag("round %d %s: last %llu, model %llu", round, m->name, (unsigned long long)last,
                     (unsigned long long)m->last);
            }
            if (m->exists && m->last > m->released) {
                struct check_ctx c = {m, m->released + 1, 0};
                int rc = nls_replay(h[i], m->released, check_one, &c, &err);
                if (rc || c.bad || c.next != m->last + 1) {
                    check_ok = 0;
                    diag("round %d %s: replay rc %d bad %d reached %llu of %llu (%s)", round,
                         m->name, rc, c.bad, (unsigned long long)c.next - 1,
                         (unsigned long long)m->last, err.msg);
                }
            }
            uint64_t term = 1;
            uint32_t vote = 1;
            int has = nls_hard_state(h[i], &term, &vote);
            if (has != m->has_hs || term != m->term || vote != m->vote) {
                check_ok = 0;
                diag("round %d %s: hard state %d (%llu, %u), model %d (%llu, %u)", round, m->name,
                     has, (unsigned long long)term, vote, m->has_hs, (unsigned long long)m->term,
                     m->vote);
            }
            if (m->exists && m->released)
                nls_release(h[i], m->released, &err);
            if (!m->exists) { /* an opened stream exists, empty */
                m->exists = 1;
                m->first = 1;
                m->last = m->released = 0;
            }
        }
        /* Random work. */
        for (int op = 0; op < 400; op++) {
            int i = (int)(rnd() % NS);
            struct mstream *m = &M[i];
            uint64_t r = rnd() % 100;
            if (r < 80 && m->last < MAXE) {
                unsigned char buf[80];
                uint32_t v = (uint32_t)rnd();
                size_t len = make_payload(m, m->last + 1, v, buf);
                uint64_t lsn = 0;
                if (nls_append(h[i], buf, 5, buf + 5, len - 5, NULL, NULL, &lsn) ||
                    lsn != m->last + 1)
                    append_ok = 0;
                m->val[++m->last] = v;
            } else if (r < 86 && m->last > m->released + 1) {
                uint64_t to = m->released + 1 + rnd() % (m->last - m->released);
                if (nls_cut(h[i], to, &err))
                    append_ok = 0;
                if (to < m->last)
                    m->last = to;
            } else if (r < 96 && m->last > m->released) {
                uint64_t to = m->released + 1 + rnd() % (m->last - m->released);
                if (nls_release(h[i], to, &err))
                    append_ok = 0;
                m->released = to;
            } else if (r < 92 && rnd() % 2) { /* a hard state (shares the cut's share) */
                uint64_t term = m->term + rnd() % 3;
                uint32_t vote = term > m->term ? (uint32_t)(rnd() % 4) : m->vote;
                if (!vote && rnd() % 2)
                    vote = 1 + (uint32_t)(rnd() % 3);
                if (nls_set_hard_state(h[i], term, vote, NULL, NULL))
                    append_ok = 0;
                m->has_hs = 1;
                m->term = term;
                m->vote = vote;
            } else if (r < 98) {
                uint64_t to = m->last + rnd() % 50;
                if (nls_reset(h[i], to, &err))
                    append_ok = 0;
                m->last = m->released = to;
            } else if (r < 99) { /* a deleted group: drop, then a new one of the same name */
                nls_close(h[i]);
                if (nodelog_drop(nl, m->name, &err) ||
                    nodelog_stream_open(nl, m->name, &h[i], &err))
                    append_ok = 0;
                m->last = m->released = 0;
                m->has_hs = 0;
                m->term = m->vote = 0;
            }
            if (op % 50 == 49) /* refreshes hard states, deletes segments */
                nodelog_tick(nl);
            int s = count_segments(dir);
            if (s > max_segs)
                max_segs = s;
        }
        for (int i = 0; i < NS; i++)
            nls_close(h[i]);
        nodelog_close(nl);
    }
    ok(reopen_ok, "the node log reopens %d times", rounds);
    ok(append_ok, "appends get the next lsn; cuts, resets, releases and drops succeed");
    ok(check_ok,
       "after every reopening each of %d streams holds exactly the model's entries and latest "
       "hard state",
       NS);
    int segs = count_segments(dir);
    ok(max_segs > 3, "segments rotated (up to %d at once)", max_segs);
    /* Release everything: only the current segment may stay, and the
     * segments of the hard states, which nodelog_tick refreshes once the
     * log is past NODELOG_SOFT_SEGMENTS. */
    int hs_ok = 1;
    if (!nodelog_open(dir, &wo, &nl, &err)) {
        for (int i = 0; i < NS; i++)
            if (!nodelog_stream_open(nl, M[i].name, &h[i], &err)) {
                nls_release(h[i], M[i].last, &err);
                nls_close(h[i]);
            }
        for (int k = 0; k < 20 && count_segments(dir) > NODELOG_SOFT_SEGMENTS; k++) {
            nodelog_tick(nl);
            usleep(20000);
        }
        nodelog_close(nl);
    }
    cmp_ok(count_segments(dir), "<=", NODELOG_SOFT_SEGMENTS,
           "once every stream released everything, the segments went (%d before)", segs);
    if (!nodelog_open(dir, &wo, &nl, &err)) {
        for (int i = 0; i < NS; i++) {
            uint64_t term = 0;
            uint32_t vote = 0;
            if (nodelog_stream_open(nl, M[i].name, &h[i], &err) ||
                nls_hard_state(h[i], &term, &vote) != M[i].has_hs || term != M[i].term ||
                vote != M[i].vote)
                hs_ok = 0;
            nls_close(h[i]);
        }
        nodelog_close(nl);
    } else
        hs_ok = 0;
    ok(hs_ok, "... and every stream's latest hard state is still there");
}

/* ---- one fdatasync for several streams ---------------------------------- */

struct gc_arg {
    struct nls *s;
    _Atomic int *done;
    _Atomic int *bad;
};

static void count_done(void *arg, uint64_t lsn, int status)
{
    struct gc_arg *a = arg;
    (void)lsn;
    if (status)
        atomic_fetch_add(a->bad, 1);
    atomic_fetch_add(a->done, 1);
}

static void *writer(void *arg)
{
    struct gc_arg *a = arg;
    for (int k = 0; k < 500; k++) {
        unsigned char b[100] = {1};
        while (k - atomic_load(a->done) / 8 > 50) /* bounded: the others progress too */
            usleep(100);
        if (nls_append(a->s, b, 8, b + 8, 92, count_done, a, NULL))
            atomic_fetch_add(a->bad, 1);
    }
    return NULL;
}

static void group_commit(void)
{
    char dir[300];
    subdir(dir, sizeof dir, "gc");
    struct nodelog *nl;
    struct nerr err = {0};
    if (nodelog_open(dir, NULL, &nl, &err))
        bail_out(err.msg);
    struct nls *s[8];
    pthread_t th[8];
    _Atomic int done = 0, bad = 0;
    struct gc_arg a[8];
    for (int i = 0; i < 8; i++) {
        char name[16];
        snprintf(name, sizeof name, "g%d", i);
        if (nodelog_stream_open(nl, name, &s[i], &err))
            bail_out(err.msg);
        a[i] = (struct gc_arg){s[i], &done, &bad};
        pthread_create(&th[i], NULL, writer, &a[i]);
    }
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    for (int w = 0; w < 10000 && atomic_load(&done) < 4000; w++)
        usleep(1000);
    struct nodelog_stats st;
    nodelog_get_stats(nl, &st);
    is_int(atomic_load(&done), 4000, "every append of 8 concurrent streams became durable");
    is_int(atomic_load(&bad), 0, "none failed");
    cmp_ok(st.wal.syncs, "<", 4000 / 2, "one fdatasync served several appends (%llu for 4000)",
           (unsigned long long)st.wal.syncs);
    is_int(st.streams, 8, "the log knows 8 streams");
    for (int i = 0; i < 8; i++)
        nls_close(s[i]);
    nodelog_close(nl);
}

/* ---- damage ------------------------------------------------------------- */

static int raw_records(const char *dir, const unsigned char *const *recs, const size_t *lens, int n)
{
    struct wal_pool *p;
    struct wal *w;
    struct nerr err = {0};
    if (wal_pool_start(1, &p, &err) || wal_open(dir, NULL, p, &w, &err))
        return -1;
    for (int i = 0; i < n; i++)
        wal_submit(w, recs[i], lens[i], NULL, NULL, NULL);
    wal_close(w);
    wal_pool_stop(p);
    return 0;
}

static size_t rec(unsigned char *b, int kind, const char *name, uint64_t lsn, const char *data)
{
    size_t n = strlen(name), d = data ? strlen(data) : 0;
    b[0] = (unsigned char)kind;
    b[1] = (unsigned char)n;
    memcpy(b + 2, name, n);
    le_put64(b + 2 + n, lsn);
    memcpy(b + 2 + n + 8, data ? data : "", d);
    return 2 + n + 8 + d;
}

static void damage(void)
{
    char dir[300];
    struct nodelog *nl;
    struct nerr err = {0};
    unsigned char r1[64], r2[64], r3[64];
    const unsigned char *rs[3] = {r1, r2, r3};
    size_t ls[3];

    /* A checksummed record that is not a stream record. */
    subdir(dir, sizeof dir, "malformed");
    ls[0] = rec(r1, 1, "s", 1, "x");
    memcpy(r2, "\x09garbage", 8);
    ls[1] = 8;
    raw_records(dir, rs, ls, 2);
    int rc = nodelog_open(dir, NULL, &nl, &err);
    ok(rc == NERR_CORRUPT && strstr(err.msg, "record 2") && strstr(err.msg, dir),
       "a malformed record is refused, naming the log and the record: %s", err.msg);

    /* A gap in a stream. */
    subdir(dir, sizeof dir, "gap");
    ls[0] = rec(r1, 1, "p.t1.0", 1, "a");
    ls[1] = rec(r2, 1, "p.t1.0", 2, "b");
    ls[2] = rec(r3, 1, "p.t1.0", 4, "d");
    raw_records(dir, rs, ls, 3);
    err.msg[0] = 0;
    rc = nodelog_open(dir, NULL, &nl, &err);
    ok(rc == NERR_CORRUPT && strstr(err.msg, "p.t1.0") && strstr(err.msg, "entry 4"),
       "a stream with a gap is refused, naming the stream and entry: %s", err.msg);

    /* A cut makes a repeated lsn legal; a drop forgets the stream. */
    subdir(dir, sizeof dir, "cutdrop");
    ls[0] = rec(r1, 1, "a", 1, "x");
    ls[1] = rec(r2, 2, "a", 0, NULL);
    ls[2] = rec(r3, 1, "a", 1, "y");
    raw_records(dir, rs, ls, 3);
    rc = nodelog_open(dir, NULL, &nl, &err);
    ok(rc == 0, "a cut followed by the same lsn recovers");
    if (!rc) {
        struct nls *s;
        nodelog_stream_open(nl, "a", &s, &err);
        is_int(nls_last_lsn(s), 1, "... to one entry");
        nls_close(s);
        ok(nodelog_drop(nl, "a", &err) == 0, "drop of a closed stream");
        nodelog_close(nl);
        rc = nodelog_open(dir, NULL, &nl, &err);
        struct nodelog_stats st = {0};
        if (!rc)
            nodelog_get_stats(nl, &st);
        ok(!rc && st.streams == 0, "after a reopening the dropped stream is gone");
        if (!rc)
            nodelog_close(nl);
    }

    /* A torn tail: the last record cut short is dropped, the rest stays. */
    subdir(dir, sizeof dir, "torn");
    if (nodelog_open(dir, NULL, &nl, &err))
        bail_out(err.msg);
    struct nls *s;
    nodelog_stream_open(nl, "t", &s, &err);
    unsigned char b[40] = {7};
    uint64_t lsn;
    for (int i = 0; i < 10; i++)
        nls_append(s, b, 8, b + 8, 32, NULL, NULL, &lsn);
    nls_close(s);
    nodelog_close(nl);
    char seg[400];
    snprintf(seg, sizeof seg, "%s/00000000000000000001.wal", dir);
    /* The file has zeros ahead: find the records' end by their lengths. */
    size_t end = 32 + 10 * (16 + 2 + 1 + 8 + 40);
    if (truncate(seg, (off_t)(end - 5)))
        bail_out("truncate");
    rc = nodelog_open(dir, NULL, &nl, &err);
    ok(rc == 0, "a torn tail recovers");
    if (!rc) {
        nodelog_stream_open(nl, "t", &s, &err);
        is_int(nls_last_lsn(s), 9, "... without its last, incomplete record");
        nls_close(s);
        nodelog_close(nl);
    }
}

/* ---- the oldest segment's pinners are asked to compact ------------------ */

static void pinning(void)
{
    char dir[300];
    subdir(dir, sizeof dir, "pin");
    struct wal_options wo = {.segment_bytes = 4096};
    struct nodelog *nl;
    struct nerr err = {0};
    struct nls *idle, *busy;
    if (nodelog_open(dir, &wo, &nl, &err) || nodelog_stream_open(nl, "idle", &idle, &err) ||
        nodelog_stream_open(nl, "busy", &busy, &err))
        bail_out(err.msg);
    unsigned char b[200] = {3};
    uint64_t lsn = 0;
    nls_append(idle, b, 8, b + 8, 100, NULL, NULL, &lsn);
    _Atomic int done = 0, bad = 0;
    struct gc_arg ga = {busy, &done, &bad};
    for (int i = 0; i < 200; i++)
        nls_append(busy, b, 8, b + 8, 190, i == 199 ? count_done : NULL, &ga, &lsn);
    for (int w = 0; w < 5000 && !atomic_load(&done); w++)
        usleep(1000);
    nls_release(busy, lsn, &err); /* busy compacts as it goes */
    nodelog_tick(nl);
    int before = count_segments(dir);
    cmp_ok(before, ">", NODELOG_SOFT_SEGMENTS, "an idle stream's record kept %d segments", before);
    ok(nls_compact_wanted(idle) && !nls_compact_wanted(busy),
       "the idle stream is asked to compact, the busy one is not");
    nls_release(idle, 1, &err);
    nodelog_tick(nl);
    cmp_ok(count_segments(dir), "<=", 1, "its release lets the segments go");
    ok(!nls_compact_wanted(idle), "... and the request ends");
    nls_close(idle);
    nls_close(busy);
    nodelog_close(nl);
}

/* ---- hard states: a crash keeps the latest durable one ------------------ */

static void hs_crash(void)
{
    char dir[300], copy[300], cmd[700];
    subdir(dir, sizeof dir, "hs");
    subdir(copy, sizeof copy, "hs-crashed");
    struct nodelog *nl;
    struct nerr err = {0};
    struct nls *a, *b2;
    if (nodelog_open(dir, NULL, &nl, &err) || nodelog_stream_open(nl, "a", &a, &err) ||
        nodelog_stream_open(nl, "b", &b2, &err))
        bail_out(err.msg);
    uint64_t term = 9;
    uint32_t vote = 9;
    ok(nls_hard_state(a, &term, &vote) == 0 && term == 0 && vote == 0,
       "a new stream has no hard state");
    unsigned char b[20] = {1};
    nls_append(a, b, 8, b + 8, 12, NULL, NULL, NULL);
    nls_set_hard_state(a, 3, 0, NULL, NULL);
    nls_set_hard_state(a, 4, 2, NULL, NULL);
    nls_set_hard_state(b2, 1, 1, NULL, NULL);
    nls_append(a, b, 8, b + 8, 12, NULL, NULL, NULL);
    struct nls_waiter w;
    nls_waiter_init(&w);
    nls_set_hard_state(a, 5, 3, nls_waiter_done, &w);
    is_int(nls_waiter_wait(&w), 0, "a hard state's done runs once it is durable");
    ok(nls_hard_state(a, &term, &vote) == 1 && term == 5 && vote == 3,
       "nls_hard_state returns the last one set");
    /* A crash: the files as they are now, the node log still open. */
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", dir, copy);
    if (system(cmd))
        bail_out("cp");
    struct nodelog *nl2;
    struct nls *a2, *bb;
    if (nodelog_open(copy, NULL, &nl2, &err) || nodelog_stream_open(nl2, "a", &a2, &err) ||
        nodelog_stream_open(nl2, "b", &bb, &err))
        bail_out(err.msg);
    int has = nls_hard_state(a2, &term, &vote);
    ok(has == 1 && term == 5 && vote == 3,
       "after a crash the latest durable hard state wins (term %llu, vote %u)",
       (unsigned long long)term, vote);
    ok(nls_hard_state(bb, &term, &vote) == 1 && term == 1 && vote == 1, "... of every stream");
    is_int(nls_last_lsn(a2), 2, "... and the entries around the hard states are there");
    nls_close(a2);
    nls_close(bb);
    nodelog_close(nl2);
    nls_close(a);
    nls_close(b2);
    ok(nodelog_drop(nl, "a", &err) == 0, "a dropped stream ...");
    nodelog_close(nl);
    if (nodelog_open(dir, NULL, &nl, &err) || nodelog_stream_open(nl, "a", &a, &err))
        bail_out(err.msg);
    ok(nls_hard_state(a, &term, &vote) == 0 && nls_last_lsn(a) == 0,
       "... comes back without its hard state");
    nls_close(a);
    nodelog_close(nl);
}

/* ---- a hard state in the oldest segment is refreshed -------------------- */

static void hs_refresh(void)
{
    char dir[300];
    subdir(dir, sizeof dir, "hs-refresh");
    struct wal_options wo = {.segment_bytes = 4096};
    struct nodelog *nl;
    struct nerr err = {0};
    struct nls *idle, *busy;
    if (nodelog_open(dir, &wo, &nl, &err) || nodelog_stream_open(nl, "idle", &idle, &err) ||
        nodelog_stream_open(nl, "busy", &busy, &err))
        bail_out(err.msg);
    unsigned char b[200] = {3};
    uint64_t lsn = 0;
    nls_append(idle, b, 8, b + 8, 100, NULL, NULL, &lsn);
    nls_set_hard_state(idle, 7, 2, NULL, NULL);
    _Atomic int done = 0, bad = 0;
    struct gc_arg ga = {busy, &done, &bad};
    for (int i = 0; i < 200; i++)
        nls_append(busy, b, 8, b + 8, 190, i == 199 ? count_done : NULL, &ga, &lsn);
    for (int w = 0; w < 5000 && !atomic_load(&done); w++)
        usleep(1000);
    nls_release(busy, lsn, &err);
    nls_release(idle, 1, &err); /* only its hard state holds the first segment now */
    int before = count_segments(dir);
    cmp_ok(before, ">", NODELOG_SOFT_SEGMENTS, "an idle stream's hard state kept %d segments",
           before);
    ok(!nls_compact_wanted(idle), "... which compacting would not help (not asked to)");
    int after = before;
    for (int k = 0; k < 100 && after > 2; k++) {
        nodelog_tick(nl);
        usleep(10000);
        after = count_segments(dir);
    }
    struct nodelog_stats st;
    nodelog_get_stats(nl, &st);
    cmp_ok(after, "<=", 2,
           "nodelog_tick refreshed it at the tail (%llu refresh(es)) and the "
           "segments went (%d left)",
           (unsigned long long)st.hs_refreshes, after);
    nls_append(idle, b, 8, b + 8, 50, NULL, NULL, &lsn);
    nls_close(idle);
    nls_close(busy);
    nodelog_close(nl);
    if (nodelog_open(dir, &wo, &nl, &err) || nodelog_stream_open(nl, "idle", &idle, &err))
        bail_out(err.msg);
    uint64_t term = 0;
    uint32_t vote = 0;
    int has = nls_hard_state(idle, &term, &vote);
    ok(has == 1 && term == 7 && vote == 2,
       "reopened, the idle stream's hard state is there (term %llu, vote %u)",
       (unsigned long long)term, vote);
    is_int(nls_last_lsn(idle), 2, "... and its log continues after what it released");
    nls_close(idle);
    nodelog_close(nl);
}

/* ---- a failed fdatasync ------------------------------------------------- */

static _Atomic int fail_syncs;
static int io_hook(void *arg, enum wal_io_op op)
{
    (void)arg;
    return op == WAL_IO_FDATASYNC && atomic_load(&fail_syncs) ? 5 /* EIO */ : 0;
}

static void failure(void)
{
    char dir[300];
    subdir(dir, sizeof dir, "fail");
    struct wal_options wo = {.test_io_hook = io_hook};
    struct nodelog *nl;
    struct nerr err = {0};
    struct nls *a, *b2;
    if (nodelog_open(dir, &wo, &nl, &err) || nodelog_stream_open(nl, "a", &a, &err) ||
        nodelog_stream_open(nl, "b", &b2, &err))
        bail_out(err.msg);
    _Atomic int done = 0, bad = 0;
    struct gc_arg ga = {a, &done, &bad}, gb = {b2, &done, &bad};
    unsigned char b[20] = {1};
    atomic_store(&fail_syncs, 1);
    nls_append(a, b, 8, b + 8, 12, count_done, &ga, NULL);
    nls_append(b2, b, 8, b + 8, 12, count_done, &gb, NULL);
    for (int w = 0; w < 5000 && atomic_load(&done) < 2; w++)
        usleep(1000);
    is_int(atomic_load(&bad), 2, "a failed fdatasync fails the pending appends of every stream");
    ok(nls_append(a, b, 8, b + 8, 12, NULL, NULL, NULL) == NERR_IO,
       "later appends are refused at once (NERR_IO)");
    ok(nls_cut(b2, 0, &err) == NERR_IO, "... and cuts too");
    nls_close(a);
    nls_close(b2);
    nodelog_close(nl);
}

int main(void)
{
    const char *seed = getenv("NINES_SEED");
    rng_seed(&g_rng, seed ? strtoull(seed, NULL, 0) : (uint64_t)time(NULL));
    log_init("test_nodelog", LOG_QUIET);
    if (!mkdtemp(g_top))
        bail_out("mkdtemp");
    note("seed %llu (NINES_SEED=%llu replays it)", (unsigned long long)g_rng.s,
         (unsigned long long)g_rng.s);
    uint64_t s0 = g_rng.s;
    /* Seed 6 once met a stream whose surviving segments began with records a
     * later cut had killed: reopening guessed "released" above the cut and
     * the next append broke the stream's order (nodelog.c, load). */
    struct rng keep = g_rng;
    rng_seed(&g_rng, 6);
    note("model run, seed 6 (regression)");
    model_run("model-seed6");
    g_rng = keep;
    note("model run, seed %llu", (unsigned long long)s0);
    model_run("model");
    group_commit();
    damage();
    pinning();
    hs_crash();
    hs_refresh();
    failure();
    nftw(g_top, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    if (tap_failed)
        diag("replay: NINES_SEED=%llu %s", (unsigned long long)s0, "build/t/test_nodelog");
    return done_testing();
}
