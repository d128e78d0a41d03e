#include "store/group.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/crc32c.h"
#include "lib/fsutil.h"
#include "lib/le.h"
#include "lib/log.h"
#include "store/nodelog.h"
#include "store/overlay.h"
#include "store/raftwire.h"

#define GID_BUCKETS 1024
/* Round coalescing: after a round of at least this many events the driver
 * waits this long before taking the next (docs/replication.md, "Batching"). */
#define DRIVER_COALESCE_EVENTS 8
#define DRIVER_COALESCE_US 500
/* A forwarded proposal's entry: magic byte, u64 request id, then the entry
 * the state machine sees. (A state machine's own entries never start with
 * this byte: op.h and the catalog write JSON.) */
#define GROUP_FRAME_MAGIC 0x01
#define GROUP_FRAME 9
#define HS_MAGIC "N9HS1\n"

/* A proposal (done != NULL) or a committed entry on its way to the applier.
 * Proposals wait in the group's pending list (by index) until committed. */
struct gentry {
    struct group *g;
    uint64_t lsn;  /* raft index */
    uint64_t term; /* proposals: the term they were appended in (forwarded:
                      sent for; another member's: its sender meant) */
    uint64_t t_ns; /* proposals: when appended (for GROUP_PROPOSAL_TIMEOUT_MS) */
    int status;
    void *op;
    group_done_fn done; /* NULL: an entry this node did not propose */
    void *arg;
    unsigned char *data; /* proposal bytes until proposed; committed bytes when op is NULL */
    size_t len;
    int snap;        /* a snapshot to restore at lsn (data/len: its payload) */
    uint64_t rid;    /* forwarded proposals: the request id in the entry's frame */
    int fwd;         /* this node's proposal, to be forwarded if it does not lead */
    uint32_t origin; /* proposals a member forwarded here: its member number */
    struct gentry *next;
};

/* Work for the driver thread. */
enum dev_kind { DEV_MSG = 1, DEV_PROPOSE, DEV_DURABLE, DEV_CLOSE };
struct dev {
    enum dev_kind kind;
    uint64_t gid;
    struct group *g; /* PROPOSE, DURABLE, CLOSE */
    struct raft_msg msg;
    char from[64];
    struct gentry *prop;
    int status; /* DURABLE */
    struct dev *next;
};

struct group_host {
    struct state *st;
    struct nodelog *nl; /* every group's log (nodelog.h) */
    struct overlay *ov;
    struct group_timing timing;
    group_send_fn send;
    void *send_arg;
    /* Driver thread: owns every struct raft. */
    pthread_t driver;
    pthread_mutex_t dmu;
    pthread_cond_t dcv;
    struct dev *dhead, *dtail;
    int dstop;
    struct group *buckets[GID_BUCKETS]; /* by gid; driver thread only */
    struct group *all;                  /* every open group; driver thread only */
    struct group *dirty;                /* groups to drive at the end of the round */
    uint64_t seed;
    _Atomic uint64_t rid_next; /* request ids of forwarded proposals */
    _Atomic uint64_t st_in, st_out, st_malformed, st_forged, st_unknown, st_raft, st_sendfail;
    pthread_t applier;
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* applier: work, barrier or stop */
    pthread_cond_t committed;   /* barrier waiters */
    struct gentry *head, *tail; /* durable entries waiting to be applied */
    int stopping;
    int failed;   /* an LMDB commit failed: nothing more is applied */
    int barriers; /* threads waiting in group_host_barrier */
    int txn_open; /* the applier holds uncommitted applied entries */
    uint64_t commit_seq;
    /* Applier-only state. */
    MDB_txn *txn;
    struct timespec txn_start;
    struct group **touched; /* groups with entries in the open transaction */
    size_t ntouched, cap_touched;
};

struct group {
    struct group_host *h;
    char *name;
    char *hs_path;
    struct nls *log; /* its stream in the node log */
    const struct group_sm *sm;
    void *sm_arg;
    struct group_members mem;
    pthread_mutex_t mu;
    pthread_cond_t idle;
    long inflight; /* proposals accepted, done() not yet run */
    long queued;   /* entries handed to the applier, not yet applied */
    int closing;
    int closed; /* the driver let go of it */
    _Atomic uint64_t applied;
    /* Driver-thread state. */
    struct raft *r;
    struct raft_ready rd;
    int in_flight;  /* a ready is being persisted */
    int rd_applied; /* its committed entries were queued already */
    int rd_sent;    /* its replication messages went out already */
    int wal_failed;
    uint32_t missed_ticks;
    struct dev *deferred, *deferred_tail;  /* events that arrived while in flight */
    struct gentry *pending, *pending_tail; /* proposed, by index */
    struct gentry *pbatch, *pbatch_tail;   /* to propose together, at the end of the round */
    struct gentry *fwd_pending, *fwd_tail; /* forwarded to the leader, by time */
    int dirty;
    struct group *dnext;
    struct raft_hard_state hs_saved;
    char *snap_path;
    uint64_t last_compact_ns;
    struct group *hnext, *anext; /* bucket chain, list of all */
    /* Published by the driver for other threads. */
    _Atomic int s_role, s_lease, s_failed;
    _Atomic uint32_t s_leader;
    _Atomic uint64_t s_term, s_commit, s_last, s_first, s_lease_ns;
    /* Release bookkeeping, touched only by the applier thread. */
    uint64_t applied_lsn;   /* applier: last LSN applied (committed or not) */
    uint64_t committed_lsn; /* applier: applied LSN of the last commit */
    time_t last_release;
    int touched; /* in h->touched */
};

static void *applier_main(void *arg);
static void *driver_main(void *arg);

/* Appends the chain first..last (last->next already set) to a FIFO of
 * entries kept as head and tail pointers. */
static void q_append(struct gentry **head, struct gentry **tail, struct gentry *first,
                     struct gentry *last)
{
    if (*tail)
        (*tail)->next = first;
    else
        *head = first;
    *tail = last;
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

int group_host_start(struct state *st, const char *log_dir, const struct wal_options *wopt,
                     const struct group_timing *timing, group_send_fn send, void *send_arg,
                     struct group_host **out, struct nerr *err)
{
    struct group_host *h = calloc(1, sizeof *h);
    int rc;
    if (!h)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    h->st = st;
    h->send = send;
    h->send_arg = send_arg;
    if (timing)
        h->timing = *timing;
    if (!h->timing.election_ticks)
        h->timing.election_ticks = 10;
    if (!h->timing.heartbeat_ticks)
        h->timing.heartbeat_ticks = 2;
    if (!h->timing.drift_ppm)
        h->timing.drift_ppm = 50000;
    if (!h->timing.compact_entries)
        h->timing.compact_entries = 50000;
    h->seed = now_ns() ^ ((uint64_t)getpid() << 32);
    /* Request ids: a random base per process, then a counter. */
    atomic_store(&h->rid_next, (h->seed * 0x9E3779B97F4A7C15ull) & ~0xFFFFFFFFFull);
    if (!(h->ov = overlay_new())) {
        free(h);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_init(&h->dmu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* deadlines are monotonic */
    pthread_cond_init(&h->cv, &ca);
    pthread_cond_init(&h->dcv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&h->committed, NULL);
    rc = nodelog_open(log_dir, wopt, &h->nl, err);
    if (rc)
        goto fail;
    if (pthread_create(&h->applier, NULL, applier_main, h) != 0) {
        nodelog_close(h->nl);
        rc = nerr_set(err, NERR_IO, "cannot start the applier thread");
        goto fail;
    }
    if (pthread_create(&h->driver, NULL, driver_main, h) != 0) {
        pthread_mutex_lock(&h->mu);
        h->stopping = 1;
        pthread_cond_signal(&h->cv);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->applier, NULL);
        nodelog_close(h->nl);
        rc = nerr_set(err, NERR_IO, "cannot start the driver thread");
        goto fail;
    }
    *out = h;
    return 0;
fail:
    pthread_cond_destroy(&h->cv);
    pthread_cond_destroy(&h->dcv);
    pthread_cond_destroy(&h->committed);
    pthread_mutex_destroy(&h->mu);
    pthread_mutex_destroy(&h->dmu);
    overlay_free(h->ov);
    free(h);
    return rc;
}

void group_host_stop(struct group_host *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->dmu);
    h->dstop = 1;
    pthread_cond_signal(&h->dcv);
    pthread_mutex_unlock(&h->dmu);
    pthread_join(h->driver, NULL);
    for (struct dev *d = h->dhead, *n; d; d = n) {
        n = d->next;
        raft_msg_release(&d->msg);
        free(d);
    }
    pthread_mutex_lock(&h->mu);
    h->stopping = 1;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->applier, NULL);
    nodelog_close(h->nl);
    pthread_cond_destroy(&h->cv);
    pthread_cond_destroy(&h->dcv);
    pthread_cond_destroy(&h->committed);
    pthread_mutex_destroy(&h->mu);
    pthread_mutex_destroy(&h->dmu);
    overlay_free(h->ov);
    free(h->touched);
    free(h);
}

int group_host_drop(struct group_host *h, const char *name, struct nerr *err)
{
    return nodelog_drop(h->nl, name, err);
}

void group_host_log_stats(struct group_host *h, struct nodelog_stats *out)
{
    nodelog_get_stats(h->nl, out);
}

struct state *group_host_state(struct group_host *h)
{
    return h->st;
}

struct overlay *group_host_overlay(struct group_host *h)
{
    return h->ov;
}

struct group_host *group_host_of(struct group *g)
{
    return g->h;
}

void group_host_stats(struct group_host *h, struct group_host_stats *o)
{
    o->msgs_in = atomic_load(&h->st_in);
    o->msgs_out = atomic_load(&h->st_out);
    o->dropped_malformed = atomic_load(&h->st_malformed);
    o->dropped_forged = atomic_load(&h->st_forged);
    o->dropped_unknown = atomic_load(&h->st_unknown);
    o->dropped_raft = atomic_load(&h->st_raft);
    o->send_failures = atomic_load(&h->st_sendfail);
}

int group_host_barrier(struct group_host *h)
{
    int rc = 0;
    pthread_mutex_lock(&h->mu);
    if (h->txn_open || h->head) {
        /* The next commit covers everything applied so far. */
        uint64_t target = h->commit_seq + 1;
        h->barriers++;
        pthread_cond_signal(&h->cv);
        while (h->commit_seq < target && !h->failed && !h->stopping)
            pthread_cond_wait(&h->committed, &h->mu);
        h->barriers--;
    }
    if (h->failed)
        rc = NERR_IO;
    pthread_mutex_unlock(&h->mu);
    return rc;
}

static void dev_post(struct group_host *h, struct dev *d)
{
    pthread_mutex_lock(&h->dmu);
    if (h->dtail)
        h->dtail->next = d;
    else
        h->dhead = d;
    h->dtail = d;
    pthread_cond_signal(&h->dcv);
    pthread_mutex_unlock(&h->dmu);
}

void group_host_recv(struct group_host *h, const char *from, uint64_t gid, const void *msg,
                     size_t len)
{
    struct nerr err = {0};
    struct dev *d = calloc(1, sizeof *d);
    if (!d)
        return;
    atomic_fetch_add(&h->st_in, 1);
    if (raftwire_decode(msg, len, gid, &d->msg, &err)) {
        uint64_t n = atomic_fetch_add(&h->st_malformed, 1);
        if (n < 10 || (n & (n - 1)) == 0)
            log_warn("dropped a malformed consensus message from %s for group %llu: %s "
                     "(%llu so far)",
                     from, (unsigned long long)gid, err.msg, (unsigned long long)n + 1);
        free(d);
        return;
    }
    d->kind = DEV_MSG;
    d->gid = gid;
    snprintf(d->from, sizeof d->from, "%s", from);
    dev_post(h, d);
}

/* ---- persistence of the consensus state ---- */

struct load_ctx {
    struct raft_entry *v;
    size_t n, cap;
    struct nerr *err;
};

static int load_one(void *arg, uint64_t lsn, const void *data, size_t len)
{
    struct load_ctx *c = arg;
    if (len < 8)
        return nerr_set(c->err, NERR_CORRUPT, "WAL record %llu is not a log entry (%zu bytes)",
                        (unsigned long long)lsn, len);
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 1024;
        struct raft_entry *v = realloc(c->v, nc * sizeof *v);
        if (!v)
            return nerr_set(c->err, NERR_NOMEM, "out of memory");
        c->v = v;
        c->cap = nc;
    }
    struct raft_entry *e = &c->v[c->n];
    e->index = lsn;
    e->term = le_get64(data);
    e->len = (uint32_t)(len - 8);
    e->data = NULL;
    if (e->len) {
        if (!(e->data = malloc(e->len)))
            return nerr_set(c->err, NERR_NOMEM, "out of memory");
        memcpy(e->data, (const unsigned char *)data + 8, e->len);
    }
    c->n++;
    return 0;
}

static int hs_load(struct group *g, struct raft_hard_state *hs, struct nerr *err)
{
    char *buf = NULL;
    size_t len;
    struct nerr rerr = {0};
    memset(hs, 0, sizeof *hs);
    if (fs_read_file(g->hs_path, 4096, &buf, &len, &rerr)) {
        if (errno == ENOENT)
            return 0;
        return nerr_set(err, rerr.code, "%s", rerr.msg);
    }
    unsigned long long term = 0;
    unsigned vote = 0;
    int ok = len > strlen(HS_MAGIC) && !memcmp(buf, HS_MAGIC, strlen(HS_MAGIC)) &&
             sscanf(buf + strlen(HS_MAGIC), "term %llu\nvote %u\n", &term, &vote) == 2 &&
             vote <= g->mem.n;
    free(buf);
    if (!ok)
        return nerr_set(err, NERR_CORRUPT, "%s: not a hard-state file of this group", g->hs_path);
    hs->term = term;
    hs->vote = vote;
    return 0;
}

static int hs_save(struct group *g, const struct raft_hard_state *hs, struct nerr *err)
{
    char buf[128];
    int n = snprintf(buf, sizeof buf, HS_MAGIC "term %llu\nvote %u\n", (unsigned long long)hs->term,
                     hs->vote);
    return fs_write_file_atomic(g->hs_path, buf, (size_t)n, err);
}

static struct group **bucket_of(struct group_host *h, uint64_t gid)
{
    return &h->buckets[(gid * 0x9E3779B97F4A7C15ull) >> 54 & (GID_BUCKETS - 1)];
}

static struct group *find_gid(struct group_host *h, uint64_t gid)
{
    for (struct group *g = *bucket_of(h, gid); g; g = g->hnext)
        if (g->mem.gid == gid)
            return g;
    return NULL;
}

/* Publishes the member's state for other threads (driver thread). */
static void publish(struct group *g)
{
    struct raft *r = g->r;
    atomic_store(&g->s_role, (int)raft_role(r));
    atomic_store(&g->s_leader, raft_leader(r));
    atomic_store(&g->s_term, raft_term(r));
    atomic_store(&g->s_commit, raft_commit(r));
    atomic_store(&g->s_last, raft_last_index(r));
    atomic_store(&g->s_first, raft_first_index(r));
    int lease = raft_lease_valid(r) && !g->wal_failed;
    atomic_store(&g->s_lease_ns, lease ? now_ns() : 0);
    atomic_store(&g->s_lease, lease);
    atomic_store(&g->s_failed, g->wal_failed);
}

#define SNAP_HEADER 32

/* <wal_dir>/SNAPSHOT: "N9SS" u32 version, u64 index, u64 term, u32 crc32c,
 * u32 length, payload. Written atomically (fs_write_file_atomic). */
static int snap_save(struct group *g, uint64_t index, uint64_t term, const void *data, size_t len,
                     struct nerr *err)
{
    unsigned char *b = malloc(SNAP_HEADER + len);
    if (!b)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    memcpy(b, "N9SS", 4);
    le_put32(b + 4, 1);
    le_put64(b + 8, index);
    le_put64(b + 16, term);
    le_put32(b + 24, crc32c(0, data, len));
    le_put32(b + 28, (uint32_t)len);
    if (len)
        memcpy(b + SNAP_HEADER, data, len);
    int rc = fs_write_file_atomic(g->snap_path, b, SNAP_HEADER + len, err);
    free(b);
    return rc;
}

/* 0 with snap->index 0 when there is none. */
static int snap_load(struct group *g, struct raft_snapshot *snap, struct nerr *err)
{
    char *buf = NULL;
    size_t len;
    struct nerr rerr = {0};
    memset(snap, 0, sizeof *snap);
    if (fs_read_file(g->snap_path, RAFT_MAX_SNAPSHOT + SNAP_HEADER, &buf, &len, &rerr)) {
        if (errno == ENOENT)
            return 0;
        return nerr_set(err, rerr.code ? rerr.code : NERR_IO, "%s", rerr.msg);
    }
    const unsigned char *b = (const unsigned char *)buf;
    if (len < SNAP_HEADER || memcmp(b, "N9SS", 4) || le_get32(b + 4) != 1 ||
        le_get32(b + 28) != len - SNAP_HEADER ||
        crc32c(0, b + SNAP_HEADER, len - SNAP_HEADER) != le_get32(b + 24)) {
        free(buf);
        return nerr_set(err, NERR_CORRUPT, "%s: damaged snapshot (bad header, length or CRC)",
                        g->snap_path);
    }
    snap->index = le_get64(b + 8);
    snap->term = le_get64(b + 16);
    snap->len = (uint32_t)(len - SNAP_HEADER);
    snap->data = malloc(snap->len ? snap->len : 1);
    if (!snap->data) {
        free(buf);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    memcpy(snap->data, b + SNAP_HEADER, snap->len);
    free(buf);
    return 0;
}

static void queue_committed(struct group *g, const struct raft_ready *rd);

/* A group directory with WAL segments of its own is from before the node
 * log (docs/wal.md): its entries would be ignored, so refuse it. */
static int refuse_old_wal(const char *dir, struct nerr *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return nerr_sys(err, errno, "group: cannot read %s", dir);
    struct dirent *de;
    int rc = 0;
    while (!rc && (de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n > 4 && !strcmp(de->d_name + n - 4, ".wal"))
            rc = nerr_set(err, NERR_CORRUPT,
                          "%s/%s: a per-group WAL segment from an older nines; this version keeps "
                          "every group's log in the node log (<data>/log). Start from an empty "
                          "data dir or rebuild this replica from its peers",
                          dir, de->d_name);
    }
    closedir(d);
    return rc;
}

/* group_open of a one-member group: processes readies in this thread (the
 * driver does not know the group yet) until the member leads and every
 * committed entry is applied. */
static int drive_sync(struct group *g, struct nerr *err)
{
    struct raft_ready rd;
    int rounds = 0;
    while (raft_ready_get(g->r, &rd)) {
        if (++rounds > 1000)
            return nerr_set(err, NERR_INTERNAL, "group %s: start-up did not settle", g->name);
        if (rd.has_hard_state &&
            (rd.hs.term != g->hs_saved.term || rd.hs.vote != g->hs_saved.vote)) {
            int rc = hs_save(g, &rd.hs, err);
            if (rc)
                return rc;
            g->hs_saved = rd.hs;
        }
        if (rd.n_entries) {
            struct nls_waiter w;
            nls_waiter_init(&w);
            int rc = 0;
            if (rd.entries[0].index <= nls_last_lsn(g->log))
                rc = nls_cut(g->log, rd.entries[0].index - 1, err);
            for (size_t i = 0; !rc && i < rd.n_entries; i++) {
                const struct raft_entry *e = &rd.entries[i];
                unsigned char term[8];
                le_put64(term, e->term);
                int last = i + 1 == rd.n_entries;
                rc = nls_append(g->log, term, 8, e->data, e->len, last ? nls_waiter_done : NULL,
                                last ? &w : NULL, NULL);
                if (rc)
                    nerr_set(err, rc, "group %s: node log append failed", g->name);
            }
            if (rc) {
                nls_waiter_destroy(&w);
                return rc;
            }
            if ((rc = nls_waiter_wait(&w)))
                return nerr_set(err, rc, "group %s: node log sync failed", g->name);
        }
        queue_committed(g, &rd);
        raft_ready_advance(g->r);
    }
    /* Wait for the applier (unless this is the applier: a table created by
     * a catalog entry; its new group holds only the empty entry). */
    pthread_mutex_lock(&g->mu);
    while (g->queued > 0 && !pthread_equal(pthread_self(), g->h->applier))
        pthread_cond_wait(&g->idle, &g->mu);
    pthread_mutex_unlock(&g->mu);
    if (raft_role(g->r) != RAFT_LEADER)
        return nerr_set(err, NERR_INTERNAL, "group %s: a lone member did not become leader",
                        g->name);
    return 0;
}

int group_open(struct group_host *h, const char *name, const char *wal_dir,
               const struct group_sm *sm, void *sm_arg, const struct group_members *mem,
               struct group **out, struct nerr *err)
{
    struct group *g = calloc(1, sizeof *g);
    struct load_ctx lc = {.err = err};
    MDB_txn *rtxn = NULL;
    uint64_t applied = 0;
    int rc;
    struct raft_snapshot snap = {0};
    if (!g || !(g->name = strdup(name)) || asprintf(&g->hs_path, "%s/HARDSTATE", wal_dir) < 0 ||
        asprintf(&g->snap_path, "%s/SNAPSHOT", wal_dir) < 0) {
        if (g) {
            free(g->name);
            free(g->hs_path);
        }
        free(g);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    g->h = h;
    g->sm = sm;
    g->sm_arg = sm_arg;
    if (mem)
        g->mem = *mem;
    else
        g->mem = (struct group_members){.gid = 0, .n = 1, .self = 1, .nodes = {"self"}};
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->idle, NULL);
    if (g->mem.n < 1 || g->mem.n > RAFT_MAX_MEMBERS || g->mem.n % 2 == 0 || g->mem.self < 1 ||
        g->mem.self > g->mem.n || (g->mem.n > 1 && !h->send)) {
        rc = nerr_set(err, NERR_INVALID, "group %s: bad membership (%u members, self %u)", name,
                      g->mem.n, g->mem.self);
        goto fail;
    }
    if ((rc = fs_mkdir_p(wal_dir, err)) || (rc = refuse_old_wal(wal_dir, err)) ||
        (rc = nodelog_stream_open(h->nl, name, &g->log, err)))
        goto fail;
    struct raft_hard_state hs;
    if ((rc = hs_load(g, &hs, err)))
        goto fail;
    if ((rc = state_read_begin(h->st, &rtxn, err)))
        goto fail;
    rc = state_applied_get(h->st, rtxn, name, &applied, err);
    state_read_end(h->st, rtxn);
    if (rc)
        goto fail;
    if ((rc = snap_load(g, &snap, err)))
        goto fail;
    if (applied < snap.index) {
        /* LMDB lost commits after the snapshot was taken (its meta page is
         * synced lazily): start from the snapshot. */
        MDB_txn *wtxn;
        if ((rc = state_write_begin(h->st, &wtxn, err)))
            goto fail;
        if ((rc = sm->restore(sm_arg, wtxn, snap.data, snap.len, err)) ||
            (rc = state_applied_put(h->st, wtxn, name, snap.index, err))) {
            mdb_txn_abort(wtxn);
            goto fail;
        }
        if ((rc = state_write_commit(h->st, wtxn, err)))
            goto fail;
        log_info("group %s: state restored from the snapshot at %llu (it was at %llu)", name,
                 (unsigned long long)snap.index, (unsigned long long)applied);
        applied = snap.index;
    }
    uint64_t last = nls_last_lsn(g->log);
    if (last < snap.index) {
        /* A snapshot installed after the WAL was reset, or a crash between
         * the two: the log continues after the snapshot. */
        if ((rc = nls_reset(g->log, snap.index, err)))
            goto fail;
        last = snap.index;
    }
    if (applied > last) {
        rc = nerr_set(err, NERR_CORRUPT,
                      "group %s: state applied LSN %llu but its log ends at %llu; "
                      "the node log lost acknowledged records",
                      name, (unsigned long long)applied, (unsigned long long)last);
        goto fail;
    }
    if (last > snap.index && nls_first_lsn(g->log) > snap.index + 1) {
        rc = nerr_set(err, NERR_CORRUPT,
                      "group %s: its log starts at %llu but the snapshot in %s ends at %llu: "
                      "entries are missing",
                      name, (unsigned long long)nls_first_lsn(g->log), wal_dir,
                      (unsigned long long)snap.index);
        goto fail;
    }
    if (last > snap.index && (rc = nls_replay(g->log, snap.index, load_one, &lc, err)))
        goto fail;
    /* What the snapshot holds is not needed from the log. */
    if (snap.index && (rc = nls_release(g->log, snap.index, err)))
        goto fail;
    if (lc.n && lc.v[lc.n - 1].term > hs.term)
        hs.term = lc.v[lc.n - 1].term; /* the term file lags a crash after the append */
    hs.commit = applied;
    g->hs_saved = hs;
    struct raft_config cfg = {.group = g->mem.gid,
                              .id = g->mem.self,
                              .n_members = g->mem.n,
                              .election_ticks = h->timing.election_ticks,
                              .heartbeat_ticks = h->timing.heartbeat_ticks,
                              .drift_ppm = h->timing.drift_ppm,
                              .seed = h->seed ^ (g->mem.gid * 0x9E3779B97F4A7C15ull) ^ g->mem.self,
                              .hs = hs,
                              .snapshot = snap,
                              .entries = lc.v,
                              .n_entries = lc.n,
                              .applied = applied};
    g->r = raft_new(&cfg, err);
    if (!g->r) {
        rc = err->code ? err->code : NERR_INVALID;
        goto fail;
    }
    if (applied < last)
        log_info("group %s: log %llu..%llu loaded; entries after %llu apply once committed", name,
                 (unsigned long long)nls_first_lsn(g->log), (unsigned long long)last,
                 (unsigned long long)applied);
    for (size_t i = 0; i < lc.n; i++)
        free(lc.v[i].data);
    free(lc.v);
    lc.v = NULL;
    free(snap.data);
    snap.data = NULL;
    atomic_store(&g->applied, applied);
    g->applied_lsn = g->committed_lsn = applied;
    if (g->mem.n == 1) {
        /* A lone member elects itself and applies its whole log now, so the
         * group serves as soon as group_open returns (like a restarted
         * single-node store replaying its WAL). The state machine may look
         * for its group (the overlay) while applying: publish it first. */
        *out = g;
        for (uint32_t i = 0; i < 2 * h->timing.election_ticks; i++)
            raft_tick(g->r);
        if ((rc = drive_sync(g, err))) {
            *out = NULL;
            goto fail;
        }
    } else if (g->mem.self == 1) {
        /* The preferred leader times out first. */
        for (uint32_t i = 0; i + 1 < h->timing.election_ticks; i++)
            raft_tick(g->r);
    }
    publish(g);
    /* Hand it to the driver. */
    struct dev *d = calloc(1, sizeof *d);
    if (!d) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto fail;
    }
    d->kind = DEV_PROPOSE; /* with prop == NULL: registration */
    d->g = g;
    *out = g; /* before the driver can apply anything (the overlay needs it) */
    dev_post(h, d);
    return 0;
fail:
    for (size_t i = 0; i < lc.n; i++)
        free(lc.v[i].data);
    free(lc.v);
    free(snap.data);
    raft_free(g->r);
    nls_close(g->log);
    pthread_cond_destroy(&g->idle);
    pthread_mutex_destroy(&g->mu);
    free(g->hs_path);
    free(g->snap_path);
    free(g->name);
    free(g);
    return rc;
}

void group_close(struct group *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->mu);
    g->closing = 1;
    pthread_mutex_unlock(&g->mu);
    struct dev *d = calloc(1, sizeof *d);
    if (d) {
        d->kind = DEV_CLOSE;
        d->g = g;
        dev_post(g->h, d);
    }
    /* The driver lets go (failing pending proposals), then the applier
     * drains what it was handed. */
    pthread_mutex_lock(&g->mu);
    while (!g->closed || g->inflight > 0 || g->queued > 0)
        pthread_cond_wait(&g->idle, &g->mu);
    pthread_mutex_unlock(&g->mu);
    /* Its last entries may be applied but not yet committed: the applier's
     * open transaction still names this group (h->touched). Commit before
     * freeing it. The applier itself closes only groups it just opened,
     * which have no entries (catalog.c), and must not wait for itself. */
    if (!pthread_equal(pthread_self(), g->h->applier))
        group_host_barrier(g->h);
    else
        assert(!g->touched);
    nls_close(g->log);
    raft_free(g->r);
    pthread_cond_destroy(&g->idle);
    pthread_mutex_destroy(&g->mu);
    free(g->hs_path);
    free(g->snap_path);
    free(g->name);
    free(g);
}

const char *group_name(const struct group *g)
{
    return g->name;
}

uint64_t group_applied_lsn(struct group *g)
{
    return atomic_load(&g->applied);
}

uint64_t group_last_lsn(struct group *g)
{
    return nls_last_lsn(g->log);
}

const struct group_members *group_members_of(const struct group *g)
{
    return &g->mem;
}

void group_status(struct group *g, struct group_status *st)
{
    st->role = (enum raft_role)atomic_load(&g->s_role);
    st->leader = atomic_load(&g->s_leader);
    st->term = atomic_load(&g->s_term);
    st->commit = atomic_load(&g->s_commit);
    st->last_index = atomic_load(&g->s_last);
    st->first_index = atomic_load(&g->s_first);
    st->applied = atomic_load(&g->applied);
    uint64_t at = atomic_load(&g->s_lease_ns);
    /* raft_lease_valid holds until the next tick at least (lease_ticks
     * keeps one tick of margin, docs/replication.md): a value published
     * within the last tick period is still good. */
    st->lease = atomic_load(&g->s_lease) && at && now_ns() - at < RAFT_TICK_MS * 1000000ull;
    st->failed = atomic_load(&g->s_failed);
}

int group_read_index(struct group *g, int timeout_ms)
{
    uint64_t start = now_ns(), deadline = start + (uint64_t)timeout_ms * 1000000ull;
    /* The lease is published at every tick and after every disk round; a
     * leader busy with its disk may have published it a moment ago: wait
     * briefly for a fresh one rather than sending the read elsewhere. */
    uint64_t lease_wait = start + 30000000ull;
    struct group_status st;
    for (;;) {
        group_status(g, &st);
        if (st.role != RAFT_LEADER || st.failed)
            return NERR_BUSY;
        /* A lone member needs no lease: no other member can commit anything. */
        if (st.lease || g->mem.n == 1)
            break;
        if (now_ns() > lease_wait || now_ns() > deadline)
            return NERR_BUSY;
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    uint64_t target = st.commit;
    while (atomic_load(&g->applied) < target) {
        if (now_ns() > deadline)
            return NERR_TIMEOUT;
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

int group_propose(struct group *g, const void *data, size_t len, void *op, group_done_fn done,
                  void *arg)
{
    if (atomic_load(&g->s_failed))
        return NERR_IO;
    /* A member that does not lead hands the entry to the leader it knows
     * (FWD_PROPOSE) and answers once it has applied it itself. */
    int fwd = 0;
    if (atomic_load(&g->s_role) != RAFT_LEADER) {
        uint32_t leader = atomic_load(&g->s_leader);
        if (!leader || leader == g->mem.self || !g->h->send)
            return NERR_BUSY;
        fwd = 1;
    }
    if (len == 0 || len + GROUP_FRAME > RAFT_MAX_ENTRY)
        return NERR_LIMIT;
    struct gentry *e = calloc(1, sizeof *e);
    struct dev *d = calloc(1, sizeof *d);
    size_t flen = fwd ? len + GROUP_FRAME : len;
    if (!e || !d || !(e->data = malloc(flen))) {
        free(e);
        free(d);
        return NERR_NOMEM;
    }
    if (fwd) {
        e->fwd = 1;
        e->rid = atomic_fetch_add(&g->h->rid_next, 1);
        e->data[0] = GROUP_FRAME_MAGIC;
        le_put64(e->data + 1, e->rid);
        memcpy(e->data + GROUP_FRAME, data, len);
    } else {
        memcpy(e->data, data, len);
    }
    e->len = flen;
    e->g = g;
    e->op = op;
    e->done = done;
    e->arg = arg;
    pthread_mutex_lock(&g->mu);
    if (g->closing) {
        pthread_mutex_unlock(&g->mu);
        free(e->data);
        free(e);
        free(d);
        return NERR_CLOSED;
    }
    g->inflight++;
    pthread_mutex_unlock(&g->mu);
    d->kind = DEV_PROPOSE;
    d->g = g;
    d->prop = e;
    dev_post(g->h, d);
    return 0;
}

/* done() for a proposal that will not be applied (any thread but the applier's
 * own transaction). */
static void fail_prop(struct gentry *e, int status)
{
    struct group *g = e->g;
    e->done(e->arg, status, NULL);
    free(e->data);
    free(e);
    pthread_mutex_lock(&g->mu);
    if (--g->inflight == 0)
        pthread_cond_broadcast(&g->idle);
    pthread_mutex_unlock(&g->mu);
}

static void finish(struct gentry *e, int status, void *result)
{
    struct group *g = e->g;
    if (e->done)
        e->done(e->arg, status, result);
    else if (result && g->sm->free_result)
        g->sm->free_result(result);
    pthread_mutex_lock(&g->mu);
    if (e->done && --g->inflight == 0)
        pthread_cond_broadcast(&g->idle);
    if (--g->queued == 0)
        pthread_cond_broadcast(&g->idle);
    pthread_mutex_unlock(&g->mu);
    free(e->data);
    free(e);
}

/* ---- the driver thread ---- */

/* WAL pool thread: the last entry of a ready is durable (or failed). */
static void on_durable(void *arg, uint64_t lsn, int status)
{
    struct group *g = arg;
    struct dev *d = calloc(1, sizeof *d);
    if (!d) {
        log_error("group %s: out of memory reporting durability; the group stalls", g->name);
        return;
    }
    d->kind = DEV_DURABLE;
    d->g = g;
    d->status = status;
    dev_post(g->h, d);
}

static void fail_list(struct gentry *e, int status);

static void send_raw(struct group *g, const struct raft_msg *m);

static void group_fail(struct group *g, int status)
{
    if (!g->wal_failed)
        log_error("group %s: the WAL failed (%s); this replica stops taking part (restart the "
                  "node once the disk is fixed)",
                  g->name, nerr_name(status));
    g->wal_failed = 1;
    /* A leader that falls silent would leave the others waiting a whole
     * election timeout, and the writes routed to it with them: it hands
     * leadership to its most up-to-date follower at once (raft_hand_over).
     * wal_failed is set first, so no lease read is served from here on. */
    struct raft_msg to;
    if (g->h->send && raft_hand_over(g->r, &to) == 0) {
        log_warn("group %s: handing leadership over to member %u (%s)", g->name, to.to,
                 g->mem.nodes[to.to - 1]);
        send_raw(g, &to);
    }
    for (struct gentry *e = g->pending, *n; e; e = n) {
        n = e->next;
        fail_prop(e, NERR_IO);
    }
    g->pending = g->pending_tail = NULL;
    fail_list(g->pbatch, NERR_IO);
    g->pbatch = g->pbatch_tail = NULL;
    fail_list(g->fwd_pending, NERR_IO);
    g->fwd_pending = g->fwd_tail = NULL;
    publish(g);
}

/* A leader's replication messages may leave before its own entries are
 * durable (Raft thesis §10.2.1): they ask followers to persist, and the
 * leader counts itself only once its own write is done (raft.c, stable).
 * Every other message acknowledges something and waits for the disk. */
static int leader_msg(const struct raft_msg *m)
{
    return m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
           m->type == RAFT_MSG_SNAPSHOT;
}

/* which: 0 every message, 1 a leader's replication messages only, 2 the
 * others only. */
static void send_msgs(struct group *g, const struct raft_ready *rd, int which)
{
    struct group_host *h = g->h;
    for (size_t i = 0; i < rd->n_msgs; i++) {
        const struct raft_msg *m = &rd->msgs[i];
        unsigned char *buf;
        size_t len;
        if (m->to < 1 || m->to > g->mem.n || m->to == g->mem.self || !h->send)
            continue;
        if ((which == 1 && !leader_msg(m)) || (which == 2 && leader_msg(m)))
            continue;
        if (raftwire_encode(m, &buf, &len))
            continue;
        if (h->send(h->send_arg, g->mem.nodes[m->to - 1], g->mem.gid, buf, len))
            atomic_fetch_add(&h->st_sendfail, 1);
        else
            atomic_fetch_add(&h->st_out, 1);
        free(buf);
    }
}

/* Hands committed entries to the applier, matching them with this node's
 * proposals by (index, term). */
static void queue_committed(struct group *g, const struct raft_ready *rd)
{
    struct group_host *h = g->h;
    struct gentry *first = NULL, *last = NULL;
    long n = 0;
    for (size_t i = 0; i < rd->n_committed; i++) {
        const struct raft_entry *ce = &rd->committed[i];
        struct gentry *e = NULL;
        /* Proposals below this index that are still pending lost their slot. */
        while (g->pending && g->pending->lsn < ce->index) {
            struct gentry *p = g->pending;
            g->pending = p->next;
            fail_prop(p, NERR_BUSY);
        }
        if (g->pending && g->pending->lsn == ce->index) {
            e = g->pending;
            g->pending = e->next;
            if (e->term != ce->term) {
                fail_prop(e, NERR_BUSY);
                e = NULL;
            } else {
                free(e->data); /* the applier uses op */
                e->data = NULL;
            }
        }
        if (!g->pending)
            g->pending_tail = NULL;
        if (!e && ce->len >= GROUP_FRAME && ce->data[0] == GROUP_FRAME_MAGIC && g->fwd_pending) {
            uint64_t rid = le_get64(ce->data + 1);
            for (struct gentry **pp = &g->fwd_pending; *pp; pp = &(*pp)->next)
                if ((*pp)->rid == rid) {
                    e = *pp;
                    *pp = e->next;
                    if (g->fwd_tail == e) {
                        g->fwd_tail = NULL;
                        for (struct gentry *x = g->fwd_pending; x; x = x->next)
                            g->fwd_tail = x;
                    }
                    free(e->data); /* the applier uses op */
                    e->data = NULL;
                    e->len = 0;
                    break;
                }
        }
        /* A forwarded proposal could only be appended in the term it was
         * sent for (flush_props). Once an entry of a later term commits,
         * every committed entry of that term lies before it and has been
         * seen here: the proposal never commits, so the caller may retry.
         * fwd_pending is in sending order, so its terms never decrease. */
        while (g->fwd_pending && g->fwd_pending->term < ce->term) {
            struct gentry *p = g->fwd_pending;
            g->fwd_pending = p->next;
            if (!g->fwd_pending)
                g->fwd_tail = NULL;
            fail_prop(p, NERR_BUSY);
        }
        if (!e) {
            e = calloc(1, sizeof *e);
            if (!e) {
                log_error("group %s: out of memory; stopping this replica", g->name);
                group_fail(g, NERR_NOMEM);
                break;
            }
            e->g = g;
            if (ce->len) {
                if (!(e->data = malloc(ce->len))) {
                    free(e);
                    group_fail(g, NERR_NOMEM);
                    break;
                }
                memcpy(e->data, ce->data, ce->len);
            }
            e->len = ce->len;
        }
        e->lsn = ce->index;
        e->next = NULL;
        if (last)
            last->next = e;
        else
            first = e;
        last = e;
        n++;
    }
    if (!first)
        return;
    pthread_mutex_lock(&g->mu);
    g->queued += n;
    pthread_mutex_unlock(&g->mu);
    pthread_mutex_lock(&h->mu);
    q_append(&h->head, &h->tail, first, last);
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

static void finish_ready(struct group *g)
{
    /* The commit index is published before the messages that carry it go
     * out: a follower may apply and answer a write as soon as it hears it,
     * and a lease read on this leader must then wait for that entry
     * (group_read_index reads s_commit). */
    atomic_store(&g->s_commit, raft_commit(g->r));
    send_msgs(g, &g->rd, g->rd_sent ? 2 : 0);
    g->rd_sent = 0;
    if (!g->rd_applied)
        queue_committed(g, &g->rd);
    g->rd_applied = 0;
    raft_ready_advance(g->r);
    g->in_flight = 0;
    /* Ticks that passed while the disk was busy count before anything is
     * published: the lease must not outlive real time. */
    for (uint32_t i = 0; i < g->missed_ticks && i < 1000; i++)
        raft_tick(g->r);
    g->missed_ticks = 0;
    publish(g);
}

/* A snapshot from the leader: persist it, restart the WAL after it, and have
 * the applier replace the state with it (before any later entry). */
static int install_snapshot(struct group *g, const struct raft_snapshot *sn)
{
    struct nerr err = {0};
    struct gentry *e = calloc(1, sizeof *e);
    if (!e || !(e->data = malloc(sn->len ? sn->len : 1))) {
        free(e);
        group_fail(g, NERR_NOMEM);
        return -1;
    }
    if (snap_save(g, sn->index, sn->term, sn->data, sn->len, &err) ||
        nls_reset(g->log, sn->index, &err)) {
        log_error("group %s: installing the snapshot at %llu: %s", g->name,
                  (unsigned long long)sn->index, err.msg);
        free(e->data);
        free(e);
        group_fail(g, NERR_IO);
        return -1;
    }
    /* Proposals the snapshot may hold committed are never matched with
     * their entries: their outcome is unknown. Later ones stay pending. */
    while (g->pending && g->pending->lsn <= sn->index) {
        struct gentry *p = g->pending;
        g->pending = p->next;
        fail_prop(p, NERR_TIMEOUT);
    }
    if (!g->pending)
        g->pending_tail = NULL;
    for (struct gentry **pp = &g->fwd_pending; *pp;) {
        struct gentry *p = *pp;
        if (p->term > sn->term) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        fail_prop(p, NERR_TIMEOUT);
    }
    g->fwd_tail = NULL;
    for (struct gentry *x = g->fwd_pending; x; x = x->next)
        g->fwd_tail = x;
    memcpy(e->data, sn->data, sn->len);
    e->len = sn->len;
    e->snap = 1;
    e->lsn = sn->index;
    e->g = g;
    pthread_mutex_lock(&g->mu);
    g->queued++;
    pthread_mutex_unlock(&g->mu);
    struct group_host *h = g->h;
    pthread_mutex_lock(&h->mu);
    q_append(&h->head, &h->tail, e, e);
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    log_info("group %s: installed the leader's snapshot at %llu (%u bytes)", g->name,
             (unsigned long long)sn->index, sn->len);
    return 0;
}

/* Log compaction (group.h): snapshot what LMDB last committed, keep it
 * durably, let the core drop the log before it, release WAL segments. */
static void maybe_compact(struct group *g, uint64_t now)
{
    struct group_host *h = g->h;
    struct raft *r = g->r;
    uint64_t first = raft_first_index(r), last = raft_last_index(r);
    if (last < first || now - g->last_compact_ns < 1000000000ull ||
        (last - first + 1 < h->timing.compact_entries && !nls_compact_wanted(g->log)))
        return;
    g->last_compact_ns = now;
    struct nerr err = {0};
    MDB_txn *txn;
    uint64_t at = 0;
    unsigned char *buf = NULL;
    size_t len = 0;
    if (state_read_begin(h->st, &txn, &err))
        goto fail;
    if (state_applied_get(h->st, txn, g->name, &at, &err) || at < first ||
        g->sm->snapshot(g->sm_arg, txn, &buf, &len, &err)) {
        state_read_end(h->st, txn);
        goto fail;
    }
    state_read_end(h->st, txn);
    const struct raft_entry *e = raft_entry_at(r, at);
    if (!e || len > RAFT_MAX_SNAPSHOT) {
        nerr_set(&err, NERR_LIMIT, "snapshot at %llu not possible (%zu bytes)",
                 (unsigned long long)at, len);
        goto fail;
    }
    uint64_t term = e->term;
    if (snap_save(g, at, term, buf, len, &err))
        goto fail;
    if (raft_compact(r, at, buf, (uint32_t)len)) {
        nerr_set(&err, NERR_INTERNAL, "the core refused the snapshot at %llu",
                 (unsigned long long)at);
        goto fail;
    }
    free(buf);
    buf = NULL;
    if (nls_release(g->log, at, &err))
        log_warn("group %s: releasing node log segments: %s", g->name, err.msg);
    log_info("group %s: snapshot at %llu (%zu bytes); log now starts at %llu", g->name,
             (unsigned long long)at, len, (unsigned long long)raft_first_index(r));
    return;
fail:
    free(buf);
    if (err.msg[0])
        log_warn("group %s: no snapshot this time: %s", g->name, err.msg);
}

/* Processes readies until the core has nothing more or a ready waits for
 * the disk. */
static void drive(struct group *g)
{
    struct nerr err = {0};
    while (!g->in_flight && !g->wal_failed && !g->closed && raft_ready_get(g->r, &g->rd)) {
        struct raft_ready *rd = &g->rd;
        if (rd->snapshot && install_snapshot(g, rd->snapshot))
            return;
        if (rd->has_hard_state &&
            (rd->hs.term != g->hs_saved.term || rd->hs.vote != g->hs_saved.vote)) {
            if (hs_save(g, &rd->hs, &err)) {
                log_error("group %s: %s", g->name, err.msg);
                group_fail(g, NERR_IO);
                return;
            }
            g->hs_saved = rd->hs;
        }
        if (rd->n_entries) {
            /* Committed entries are durable on a quorum already: apply them
             * now rather than after this ready's fsync (raft.h allows the
             * host to apply while it persists new entries). */
            if (rd->n_committed) {
                queue_committed(g, rd);
                g->rd_applied = 1;
            }
            uint64_t first = rd->entries[0].index;
            if (first <= nls_last_lsn(g->log)) {
                if (nls_cut(g->log, first - 1, &err)) {
                    log_error("group %s: %s", g->name, err.msg);
                    group_fail(g, NERR_IO);
                    return;
                }
                /* Our proposals at or after `first` were overwritten. */
                struct gentry **pp = &g->pending;
                while (*pp && (*pp)->lsn < first)
                    pp = &(*pp)->next;
                for (struct gentry *e = *pp, *n; e; e = n) {
                    n = e->next;
                    fail_prop(e, NERR_BUSY);
                }
                *pp = NULL;
                g->pending_tail = NULL;
                for (struct gentry *e = g->pending; e; e = e->next)
                    g->pending_tail = e;
            }
            for (size_t i = 0; i < rd->n_entries; i++) {
                const struct raft_entry *e = &rd->entries[i];
                unsigned char term[8];
                le_put64(term, e->term);
                uint64_t lsn = 0;
                int last = i + 1 == rd->n_entries;
                int rc = nls_append(g->log, term, 8, e->data, e->len, last ? on_durable : NULL,
                                    last ? g : NULL, &lsn);
                if (rc || lsn != e->index) {
                    log_error("group %s: WAL append of entry %llu failed (%s)", g->name,
                              (unsigned long long)e->index, rc ? nerr_name(rc) : "LSN mismatch");
                    group_fail(g, rc ? rc : NERR_INTERNAL);
                    return;
                }
            }
            /* The leader's appends go out while its own write runs. Not when
             * this ready changes term or vote: those must be durable first. */
            if (raft_role(g->r) == RAFT_LEADER && !rd->snapshot &&
                !(rd->has_hard_state &&
                  (rd->hs.term != g->hs_saved.term || rd->hs.vote != g->hs_saved.vote))) {
                atomic_store(&g->s_commit, raft_commit(g->r));
                send_msgs(g, rd, 1);
                g->rd_sent = 1;
            }
            g->in_flight = 1;
            return;
        }
        finish_ready(g);
    }
}

/* Sends one message outside a ready (host messages, a hand-over). */
static void send_raw(struct group *g, const struct raft_msg *m)
{
    unsigned char *buf;
    size_t blen;
    if (m->to < 1 || m->to > g->mem.n || m->to == g->mem.self || !g->h->send ||
        raftwire_encode(m, &buf, &blen))
        return;
    if (g->h->send(g->h->send_arg, g->mem.nodes[m->to - 1], g->mem.gid, buf, blen))
        atomic_fetch_add(&g->h->st_sendfail, 1);
    else
        atomic_fetch_add(&g->h->st_out, 1);
    free(buf);
}

/* term: FWD_PROPOSE only, the term of the leader it is meant for. */
static void send_host_msg(struct group *g, uint32_t to, uint32_t type, uint64_t rid, uint64_t term,
                          const void *data, size_t len)
{
    struct raft_msg m = {.type = type,
                         .from = g->mem.self,
                         .to = to,
                         .index = rid,
                         .term = term,
                         .data_len = (uint32_t)len,
                         .data = (unsigned char *)data};
    send_raw(g, &m);
}

static void proposal(struct group *g, struct gentry *e)
{
    if (e->fwd && raft_role(g->r) != RAFT_LEADER && !g->wal_failed && !g->closed) {
        uint32_t leader = raft_leader(g->r);
        if (!leader || leader == g->mem.self) {
            fail_prop(e, NERR_BUSY);
            return;
        }
        /* Only the leader of this term may append it (flush_props): then a
         * committed entry of a later term without it proves it never
         * commits (queue_committed). */
        e->term = raft_term(g->r);
        send_host_msg(g, leader, RAFTWIRE_FWD_PROPOSE, e->rid, e->term, e->data, e->len);
        e->t_ns = now_ns();
        e->next = NULL;
        q_append(&g->fwd_pending, &g->fwd_tail, e, e);
        return;
    }
    e->next = NULL;
    q_append(&g->pbatch, &g->pbatch_tail, e, e);
}

static void fail_list(struct gentry *e, int status)
{
    for (struct gentry *n; e; e = n) {
        n = e->next;
        if (e->origin) { /* another member's: tell it nothing was proposed */
            send_host_msg(e->g, e->origin, RAFTWIRE_FWD_NACK, e->rid, 0, NULL, 0);
            free(e->data);
            free(e);
            continue;
        }
        fail_prop(e, status);
    }
}

/* Proposes the round's proposals in one batch: one append per follower. */
static void flush_props(struct group *g)
{
    struct gentry *batch = g->pbatch;
    g->pbatch = g->pbatch_tail = NULL;
    if (!batch)
        return;
    if (g->wal_failed || g->closed || raft_role(g->r) != RAFT_LEADER) {
        fail_list(batch, g->wal_failed ? NERR_IO : g->closed ? NERR_CLOSED : NERR_BUSY);
        return;
    }
    /* Another member's proposal meant for this member's leadership of an
     * earlier term is refused (its sender retries): see proposal(). */
    for (struct gentry **pp = &batch; *pp;) {
        struct gentry *e = *pp;
        if (e->origin && e->term && e->term != raft_term(g->r)) {
            *pp = e->next;
            e->next = NULL;
            fail_list(e, NERR_BUSY);
            continue;
        }
        pp = &e->next;
    }
    if (!batch)
        return;
    size_t n = 0;
    for (struct gentry *e = batch; e; e = e->next)
        n++;
    const void **data = malloc(n * sizeof *data);
    uint32_t *len = malloc(n * sizeof *len);
    if (!data || !len) {
        free(data);
        free(len);
        fail_list(batch, NERR_NOMEM);
        return;
    }
    size_t i = 0;
    for (struct gentry *e = batch; e; e = e->next, i++) {
        data[i] = e->data;
        len[i] = (uint32_t)e->len;
    }
    uint64_t first = 0, term = raft_term(g->r), now = now_ns();
    int rc = raft_propose_batch(g->r, data, len, n, &first);
    free(data);
    free(len);
    uint64_t appended = raft_last_index(g->r) >= first ? raft_last_index(g->r) - first + 1 : 0;
    i = 0;
    for (struct gentry *e = batch, *nx; e; e = nx, i++) {
        nx = e->next;
        if (rc && i >= appended) {
            e->next = NULL;
            fail_list(e, rc); /* never appended */
            continue;
        }
        if (e->origin) { /* another member's: it matches the entry itself */
            free(e->data);
            free(e);
            continue;
        }
        e->lsn = first + i;
        e->term = term;
        e->t_ns = now;
        e->next = NULL;
        q_append(&g->pending, &g->pending_tail, e, e);
    }
}

/* A proposal that no quorum acknowledged in time: its outcome is unknown
 * (it may still commit, then it is applied like any entry, without done). */
static void expire_pending(struct group *g, uint64_t now)
{
    uint64_t limit = (uint64_t)GROUP_PROPOSAL_TIMEOUT_MS * 1000000ull;
    /* A proposal forwarded to a leader that died or was deposed waits: the
     * next leader either commits it or commits an entry of its own term
     * first, which proves it never will (queue_committed). */
    while (g->fwd_pending && now - g->fwd_pending->t_ns > limit) {
        struct gentry *e = g->fwd_pending;
        g->fwd_pending = e->next;
        if (!g->fwd_pending)
            g->fwd_tail = NULL;
        fail_prop(e, NERR_TIMEOUT);
    }
    while (g->pending && now - g->pending->t_ns > limit) {
        struct gentry *e = g->pending;
        g->pending = e->next;
        if (!g->pending)
            g->pending_tail = NULL;
        fail_prop(e, NERR_TIMEOUT);
    }
}

static void message(struct group *g, struct dev *d)
{
    struct group_host *h = g->h;
    /* The transport authenticated the sending node's id (HELLO); the message
     * must claim that node's member number. */
    uint32_t from = 0;
    for (uint32_t k = 0; k < g->mem.n; k++)
        if (!strcmp(g->mem.nodes[k], d->from))
            from = k + 1;
    if (!from || d->msg.from != from || d->msg.to != g->mem.self) {
        atomic_fetch_add(&h->st_forged, 1);
        return;
    }
    if (g->wal_failed)
        return;
    if (d->msg.type == RAFTWIRE_FWD_PROPOSE) {
        struct gentry *e = calloc(1, sizeof *e);
        if (!e) {
            send_host_msg(g, from, RAFTWIRE_FWD_NACK, d->msg.index, 0, NULL, 0);
            return;
        }
        e->g = g;
        e->origin = from;
        e->rid = d->msg.index;
        e->term = d->msg.term; /* the term its sender meant (0: any) */
        e->data = d->msg.data; /* taken over */
        e->len = d->msg.data_len;
        d->msg.data = NULL;
        d->msg.data_len = 0;
        proposal(g, e); /* flush_props NACKs it if this member does not lead */
        return;
    }
    if (d->msg.type == RAFTWIRE_FWD_NACK) {
        for (struct gentry **pp = &g->fwd_pending; *pp; pp = &(*pp)->next)
            if ((*pp)->rid == d->msg.index) {
                struct gentry *e = *pp;
                *pp = e->next;
                if (g->fwd_tail == e) {
                    g->fwd_tail = NULL;
                    for (struct gentry *x = g->fwd_pending; x; x = x->next)
                        g->fwd_tail = x;
                }
                fail_prop(e, NERR_BUSY);
                break;
            }
        return;
    }
    if (raft_step(g->r, &d->msg))
        atomic_fetch_add(&h->st_raft, 1);
}

/* Runs one event whose group is not waiting for the disk. */
static void run_event(struct group *g, struct dev *d)
{
    if (d->kind == DEV_MSG)
        message(g, d);
    else if (d->kind == DEV_PROPOSE && d->prop)
        proposal(g, d->prop);
}

static void unregister(struct group_host *h, struct group *g)
{
    for (struct group **pp = bucket_of(h, g->mem.gid); *pp; pp = &(*pp)->hnext)
        if (*pp == g) {
            *pp = g->hnext;
            break;
        }
    for (struct group **pp = &h->all; *pp; pp = &(*pp)->anext)
        if (*pp == g) {
            *pp = g->anext;
            break;
        }
}

static void close_now(struct group *g)
{
    if (g->dirty) {
        for (struct group **pp = &g->h->dirty; *pp; pp = &(*pp)->dnext)
            if (*pp == g) {
                *pp = g->dnext;
                break;
            }
        g->dirty = 0;
    }
    fail_list(g->pbatch, NERR_CLOSED);
    g->pbatch = g->pbatch_tail = NULL;
    fail_list(g->fwd_pending, NERR_CLOSED);
    g->fwd_pending = g->fwd_tail = NULL;
    for (struct dev *d = g->deferred, *n; d; d = n) {
        n = d->next;
        if (d->kind == DEV_PROPOSE && d->prop)
            fail_prop(d->prop, NERR_CLOSED);
        raft_msg_release(&d->msg);
        free(d);
    }
    g->deferred = g->deferred_tail = NULL;
    for (struct gentry *e = g->pending, *n; e; e = n) {
        n = e->next;
        fail_prop(e, NERR_CLOSED);
    }
    g->pending = g->pending_tail = NULL;
    unregister(g->h, g);
    pthread_mutex_lock(&g->mu);
    g->closed = 1;
    pthread_cond_broadcast(&g->idle);
    pthread_mutex_unlock(&g->mu);
}

static void defer_event(struct group *g, struct dev *d)
{
    d->next = NULL;
    if (g->deferred_tail)
        g->deferred_tail->next = d;
    else
        g->deferred = d;
    g->deferred_tail = d;
}

static void *driver_main(void *arg)
{
    pthread_setname_np(pthread_self(), "nines-driver");
    struct group_host *h = arg;
    uint64_t next_tick = now_ns() + RAFT_TICK_MS * 1000000ull, next_log_tick = 0;
    size_t last_round = 0; /* events the last round handled */
    for (;;) {
        pthread_mutex_lock(&h->dmu);
        while (!h->dhead && !h->dstop && now_ns() < next_tick) {
            struct timespec dl = {(time_t)(next_tick / 1000000000ull),
                                  (long)(next_tick % 1000000000ull)};
            pthread_cond_timedwait(&h->dcv, &h->dmu, &dl);
        }
        /* Under load, gather a bigger round: every stage after this one
         * (appends per follower, node log writes, acks, applier hand-offs)
         * then costs the same for more writes. A replicated host only: its
         * rounds wake the most threads. */
        if (h->dhead && !h->dstop && h->send && last_round >= DRIVER_COALESCE_EVENTS) {
            pthread_mutex_unlock(&h->dmu);
            usleep(DRIVER_COALESCE_US);
            pthread_mutex_lock(&h->dmu);
        }
        struct dev *batch = h->dhead;
        h->dhead = h->dtail = NULL;
        int stop = h->dstop;
        pthread_mutex_unlock(&h->dmu);
        if (stop) {
            for (struct dev *d = batch, *n; d; d = n) {
                n = d->next;
                raft_msg_release(&d->msg);
                free(d);
            }
            break;
        }
        last_round = 0;
        for (struct dev *d = batch, *n; d; d = n) {
            n = d->next;
            struct group *g = d->g;
            last_round++;
            if (d->kind == DEV_MSG) {
                g = find_gid(h, d->gid);
                if (!g) {
                    atomic_fetch_add(&h->st_unknown, 1);
                    raft_msg_release(&d->msg);
                    free(d);
                    continue;
                }
            }
            if (d->kind == DEV_PROPOSE && !d->prop) { /* registration */
                if (find_gid(h, g->mem.gid)) {
                    log_error("group %s: group id %llu is already open", g->name,
                              (unsigned long long)g->mem.gid);
                    g->wal_failed = 1;
                } else {
                    g->hnext = *bucket_of(h, g->mem.gid);
                    *bucket_of(h, g->mem.gid) = g;
                }
                g->anext = h->all;
                h->all = g;
                free(d);
                drive(g);
                continue;
            }
            if (d->kind == DEV_DURABLE) {
                if (d->status)
                    group_fail(g, d->status);
                else
                    finish_ready(g);
                free(d);
            } else if (d->kind == DEV_CLOSE) {
                if (g->in_flight) {
                    defer_event(g, d); /* after the durable event */
                    continue;
                }
                free(d);
                close_now(g);
                continue;
            } else if (g->in_flight) {
                defer_event(g, d);
                continue;
            } else {
                run_event(g, d);
                raft_msg_release(&d->msg);
                free(d);
            }
            /* Deferred events run once the ready is done. */
            while (!g->in_flight && g->deferred && !g->closed) {
                struct dev *e = g->deferred;
                g->deferred = e->next;
                if (!g->deferred)
                    g->deferred_tail = NULL;
                if (e->kind == DEV_CLOSE) {
                    free(e);
                    close_now(g);
                    break;
                }
                run_event(g, e);
                raft_msg_release(&e->msg);
                free(e);
            }
            /* Readies wait for the end of the round, so that its
             * proposals and messages are handled together. */
            if (!g->closed && !g->dirty) {
                g->dirty = 1;
                g->dnext = h->dirty;
                h->dirty = g;
            }
        }
        while (h->dirty) {
            struct group *g = h->dirty;
            h->dirty = g->dnext;
            g->dirty = 0;
            if (g->closed)
                continue;
            if (!g->in_flight)
                flush_props(g);
            drive(g);
        }
        uint64_t now = now_ns();
        if (now >= next_tick) {
            uint64_t ticks = (now - next_tick) / (RAFT_TICK_MS * 1000000ull) + 1;
            next_tick += ticks * RAFT_TICK_MS * 1000000ull;
            /* LMDB failed (a full disk): this node applies nothing more, so
             * its replicas must not keep voting and acknowledging as if
             * they were healthy; they fall silent and the others carry on. */
            pthread_mutex_lock(&h->mu);
            int state_failed = h->failed;
            pthread_mutex_unlock(&h->mu);
            if (state_failed)
                for (struct group *g = h->all; g; g = g->anext)
                    if (!g->wal_failed && !g->closed && !g->in_flight) {
                        log_error("group %s: the node's state store failed; this replica "
                                  "stops taking part",
                                  g->name);
                        group_fail(g, NERR_IO);
                    }
            if (now >= next_log_tick) {
                nodelog_tick(h->nl); /* which groups pin the oldest log segment */
                next_log_tick = now + 1000000000ull;
            }
            for (struct group *g = h->all, *n; g; g = n) {
                n = g->anext;
                if (g->wal_failed || g->closed)
                    continue;
                if (g->in_flight) {
                    g->missed_ticks += (uint32_t)ticks;
                    continue;
                }
                expire_pending(g, now);
                maybe_compact(g, now);
                uint64_t k = ticks + g->missed_ticks;
                g->missed_ticks = 0;
                /* A stalled loop must not make the lease look longer: each
                 * elapsed tick period counts. */
                for (uint64_t i = 0; i < k && i < 1000; i++)
                    raft_tick(g->r);
                drive(g);
                publish(g);
            }
        }
    }
    return NULL;
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Commits the open transaction with every touched group's applied LSN. */
static void commit_txn(struct group_host *h)
{
    struct nerr err = {0};
    int rc = 0;
    if (!h->txn)
        return;
    for (size_t i = 0; !rc && i < h->ntouched; i++)
        rc =
            state_applied_put(h->st, h->txn, h->touched[i]->name, h->touched[i]->applied_lsn, &err);
    if (!rc)
        rc = state_write_commit(h->st, h->txn, &err);
    else
        mdb_txn_abort(h->txn);
    h->txn = NULL;
    if (rc) {
        /* Invariant 3. Entries already acknowledged are durable in the WAL and
         * stay readable from the overlay (not cleared); the node applies
         * nothing more and must be restarted to recover from the WAL. */
        log_error("applier: %s; the node stops applying writes (restart to recover from the "
                  "WAL)",
                  err.msg[0] ? err.msg : nerr_name(rc));
        pthread_mutex_lock(&h->mu);
        h->failed = 1;
        h->txn_open = 0;
        pthread_cond_broadcast(&h->committed);
        pthread_mutex_unlock(&h->mu);
        return;
    }
    overlay_clear(h->ov);
    for (size_t i = 0; i < h->ntouched; i++) {
        struct group *g = h->touched[i];
        /* WAL segments are kept: the consensus log starts at index 1 until
         * snapshots exist (docs/replication.md, "Limits"). */
        g->committed_lsn = g->applied_lsn;
        g->touched = 0;
    }
    h->ntouched = 0;
    pthread_mutex_lock(&h->mu);
    h->commit_seq++;
    h->txn_open = 0;
    pthread_cond_broadcast(&h->committed);
    pthread_mutex_unlock(&h->mu);
}

static int touch(struct group_host *h, struct group *g)
{
    if (g->touched)
        return 0;
    if (h->ntouched == h->cap_touched) {
        size_t nc = h->cap_touched ? 2 * h->cap_touched : 64;
        struct group **n = realloc(h->touched, nc * sizeof *n);
        if (!n)
            return NERR_NOMEM;
        h->touched = n;
        h->cap_touched = nc;
    }
    h->touched[h->ntouched++] = g;
    g->touched = 1;
    return 0;
}

/* Applies one batch of durable entries in the open transaction (beginning
 * one if needed), then acknowledges them. */
static void apply_batch(struct group_host *h, struct gentry *batch)
{
    struct nerr err = {0};
    void **results = NULL;
    size_t n = 0, i = 0;
    int rc = 0, commit_first = 0;
    for (struct gentry *e = batch; e; e = e->next)
        n++;
    results = calloc(n, sizeof *results);
    if (!results || h->failed)
        rc = h->failed ? NERR_IO : NERR_NOMEM;
    if (!rc && !h->txn) {
        rc = state_write_begin(h->st, &h->txn, &err);
        clock_gettime(CLOCK_MONOTONIC, &h->txn_start);
    }
    if (!rc) {
        pthread_mutex_lock(&h->mu);
        h->txn_open = 1;
        pthread_mutex_unlock(&h->mu);
    }
    for (struct gentry *e = batch; !rc && e; e = e->next, i++) {
        if (e->status)
            continue; /* the WAL could not make it durable: never applied */
        if ((rc = touch(h, e->g)))
            break;
        if (e->snap) {
            rc = e->g->sm->restore(e->g->sm_arg, h->txn, e->data, e->len, &err);
            if (!rc) {
                e->g->applied_lsn = e->lsn;
                commit_first = 1; /* no reads of the emptied state from the overlay */
            }
            continue;
        }
        if (!e->op && !e->len) { /* a leader's empty entry */
            e->g->applied_lsn = e->lsn;
            continue;
        }
        const unsigned char *ad = e->data;
        size_t al = e->len;
        if (!e->op && al >= GROUP_FRAME && ad[0] == GROUP_FRAME_MAGIC) {
            ad += GROUP_FRAME; /* a forwarded proposal's frame */
            al -= GROUP_FRAME;
        }
        rc = e->g->sm->apply(e->g->sm_arg, h->txn, e->lsn, e->op ? NULL : ad, al, e->op,
                             &results[i], &err);
        if (!rc) {
            e->g->applied_lsn = e->lsn;
            commit_first |= e->g->sm->commit_before_done;
        }
    }
    if (rc && h->txn) {
        /* An apply failed inside LMDB: the transaction is unusable. */
        mdb_txn_abort(h->txn);
        h->txn = NULL;
        log_error("applier: %s; the node stops applying writes (restart to recover from the "
                  "WAL)",
                  err.msg[0] ? err.msg : nerr_name(rc));
        pthread_mutex_lock(&h->mu);
        h->failed = 1;
        h->txn_open = 0;
        pthread_cond_broadcast(&h->committed);
        pthread_mutex_unlock(&h->mu);
    } else if (commit_first) {
        commit_txn(h);
        rc = h->failed ? NERR_IO : 0;
    }
    i = 0;
    for (struct gentry *e = batch, *next; e; e = next, i++) {
        next = e->next;
        struct group *g = e->g;
        if (!rc && !e->status) {
            atomic_store(&g->applied, e->lsn);
            if (g->sm->committed && (e->op || e->len) && !e->snap)
                g->sm->committed(g->sm_arg, e->lsn, e->op, e->data, e->len, results[i]);
            finish(e, 0, results[i]);
        } else {
            /* Results of a failed transaction describe effects that never
             * happened; they are dropped (their owners free them in done). */
            finish(e, e->status ? e->status : (rc ? rc : NERR_IO), NULL);
        }
    }
    free(results);
}

static void *applier_main(void *arg)
{
    pthread_setname_np(pthread_self(), "nines-apply");
    struct group_host *h = arg;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        /* Wait for work; with a transaction open, wait at most until it is
         * GROUP_COMMIT_MAX_MS old. Committing on a timer rather than whenever
         * the queue runs dry keeps LMDB's fdatasync (one per commit) from
         * running once per small batch: acknowledgements do not wait for it
         * (invariant 2), and range reads ask for it (barrier). */
        while (!h->head && !h->stopping && !(h->txn && h->barriers)) {
            if (!h->txn) {
                pthread_cond_wait(&h->cv, &h->mu);
                continue;
            }
            struct timespec dl = h->txn_start;
            dl.tv_nsec += GROUP_COMMIT_MAX_MS * 1000000L;
            if (dl.tv_nsec >= 1000000000L) {
                dl.tv_sec++;
                dl.tv_nsec -= 1000000000L;
            }
            if (pthread_cond_timedwait(&h->cv, &h->mu, &dl) == ETIMEDOUT)
                break;
        }
        struct gentry *batch = h->head;
        h->head = h->tail = NULL;
        int stop = h->stopping, barrier = h->barriers > 0;
        pthread_mutex_unlock(&h->mu);
        if (batch)
            apply_batch(h, batch);
        if (h->txn && (barrier || stop || ms_since(&h->txn_start) >= GROUP_COMMIT_MAX_MS))
            commit_txn(h);
        if (!batch && stop && !h->txn)
            break;
    }
    return NULL;
}
