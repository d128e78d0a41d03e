/*
 * snapstream.c — snapshot streams between members (contract in
 * snapstream.h; design in docs/replication.md, "Snapshots").
 *
 * Everything runs on the module's thread: the inbox (chunks and acks from
 * the transport's receive path), the outgoing streams (measure, produce,
 * send, resend, give up) and the incoming ones (write, verify, deliver).
 * The mutex guards the inbox, the registry list and the published progress
 * counters; the file and LMDB work happens outside it.
 */
#include "store/snapstream.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/crc32c.h"
#include "lib/fsutil.h"
#include "lib/invariant.h"
#include "lib/le.h"
#include "lib/log.h"
#include "store/raftwire.h"

#define PROGRESS_LOG_MS 5000
#define COOLDOWN_OK_MS 5000   /* after a stream the receiver verified */
#define COOLDOWN_FAIL_MS 1000 /* after a stream that failed */
#define LOOP_MS 5

/* ---- the SNAPSHOT file header ---- */

void snapfile_header(unsigned char b[SNAPFILE_HEADER], const struct snapfile *f)
{
    memset(b, 0, SNAPFILE_HEADER);
    memcpy(b, "N9SS", 4);
    le_put32(b + 4, 3);
    le_put64(b + 8, f->index);
    le_put64(b + 16, f->term);
    le_put64(b + 24, f->len);
    le_put32(b + 32, f->crc);
    le_put32(b + 36, f->flags);
    le_put32(b + 40, f->conf.voters);
    le_put32(b + 44, f->conf.voters_out);
    le_put32(b + 48, f->conf.log);
    le_put32(b + 52, crc32c(0, b, 52));
}

int snapfile_parse(const unsigned char *b, size_t n, uint64_t file_len, struct snapfile *f,
                   struct nerr *err)
{
    memset(f, 0, sizeof *f);
    uint32_t v = n >= 8 && !memcmp(b, "N9SS", 4) ? le_get32(b + 4) : 0;
    if (v == 1 && n >= 32) {
        f->index = le_get64(b + 8);
        f->term = le_get64(b + 16);
        f->crc = le_get32(b + 24);
        f->len = le_get32(b + 28);
        f->off = 32;
    } else if ((v == 2 && n >= SNAPFILE_HEADER_V2 && le_get32(b + 40) == crc32c(0, b, 40) &&
                !le_get32(b + 44)) ||
               (v == 3 && n >= SNAPFILE_HEADER && le_get32(b + 52) == crc32c(0, b, 52) &&
                !le_get32(b + 56) && !le_get32(b + 60))) {
        f->index = le_get64(b + 8);
        f->term = le_get64(b + 16);
        f->len = le_get64(b + 24);
        f->crc = le_get32(b + 32);
        f->flags = le_get32(b + 36);
        f->off = v == 2 ? SNAPFILE_HEADER_V2 : SNAPFILE_HEADER;
        if (v == 3) {
            f->conf.voters = le_get32(b + 40);
            f->conf.voters_out = le_get32(b + 44);
            f->conf.log = le_get32(b + 48);
            if ((f->conf.voters || f->conf.voters_out || f->conf.log) &&
                raft_conf_check(&f->conf, 0, NULL))
                return nerr_set(err, NERR_CORRUPT, "snapshot header with an invalid configuration");
        }
        if (f->flags & ~SNAPFILE_META || ((f->flags & SNAPFILE_META) && f->len))
            return nerr_set(err, NERR_CORRUPT, "snapshot header with unknown flags");
    } else {
        return nerr_set(err, NERR_CORRUPT, "not a snapshot header");
    }
    if (f->off + f->len != file_len)
        return nerr_set(err, NERR_CORRUPT,
                        "snapshot of %" PRIu64 " payload bytes in a file of %" PRIu64, f->len,
                        file_len);
    return 0;
}

int snapfile_read(int fd, const char *path, struct snapfile *f, struct nerr *err)
{
    unsigned char b[SNAPFILE_HEADER];
    struct stat sb;
    if (fstat(fd, &sb))
        return nerr_sys(err, errno, "%s", path);
    ssize_t n = pread(fd, b, sizeof b, 0);
    if (n < 0)
        return nerr_sys(err, errno, "%s", path);
    if (snapfile_parse(b, (size_t)n, (uint64_t)sb.st_size, f, err))
        return nerr_set(err, NERR_CORRUPT, "%s: %s", path, err->msg);
    return 0;
}

int snapfile_crc(int fd, const struct snapfile *f, uint32_t *crc, struct nerr *err)
{
    size_t cap = 1u << 20;
    unsigned char *b = malloc(cap);
    if (!b)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    uint32_t c = 0;
    for (uint64_t at = 0; at < f->len;) {
        size_t want = f->len - at < cap ? (size_t)(f->len - at) : cap;
        ssize_t n = pread(fd, b, want, (off_t)(f->off + at));
        if (n <= 0) {
            free(b);
            return n < 0 ? nerr_sys(err, errno, "reading a snapshot")
                         : nerr_set(err, NERR_CORRUPT, "snapshot file cut short");
        }
        c = crc32c(c, b, (size_t)n);
        at += (uint64_t)n;
    }
    free(b);
    *crc = c;
    return 0;
}

/* ---- the module ---- */

struct chunk {
    uint64_t off;
    uint32_t len;
    uint64_t sent_ns;
    unsigned char *data;
};

/* A stream this member sends. */
struct out {
    struct out *next;
    uint64_t gid;
    uint32_t peer, self;
    char to[256], name[128];
    uint64_t lterm, index, term;
    struct raft_conf conf; /* at index: carried by every chunk */
    struct snap_source src;
    struct state_dbi_stream *ds;
    size_t buf_off;
    int measured;
    uint64_t total, produced;
    uint32_t crc;
    _Atomic uint64_t acked;
    struct chunk *win;
    uint32_t n_win;
    uint64_t start_ns, progress_ns, log_ns;
    uint64_t resent;
};

/* A stream this member receives (one per group). */
struct in {
    int active;
    uint32_t from;
    uint64_t lterm, index, term, total;
    struct raft_conf conf; /* the first chunk's */
    uint32_t whole_crc, crc;
    _Atomic uint64_t next;
    int fd;
    uint64_t start_ns, log_ns;
};

struct reg {
    struct reg *next;
    uint64_t gid;
    char *name, *dir;
    char *nodes[RAFT_MAX_MEMBERS];
    uint32_t n, self;
    const _Atomic int *role;
    const _Atomic uint64_t *term;
    int dead;
    struct in in; /* the thread writes it; active..start_ns under mu */
    uint64_t done_index, done_term, done_lterm, done_total; /* the last stream kept */
    uint64_t ended_ns[RAFT_MAX_MEMBERS + 1]; /* when the last stream to member k ended */
    int ended_ok[RAFT_MAX_MEMBERS + 1];
};

struct inmsg {
    struct inmsg *next;
    uint64_t gid;
    char from[256];
    struct raft_msg m;
};

struct snapstream {
    struct snapstream_config c;
    pthread_t thr;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    struct inmsg *ihead, *itail;
    struct reg *regs;
    size_t ndead; /* regs marked dead, not reaped yet (under mu): an idle
                   * round walks no list of every group */
    struct out *outs;
    double tokens;
    uint64_t refill_ns, refused_log_ns, refused_since_log;
    struct snapstream_stats st;
    unsigned char *scratch; /* measuring pass */
};

static uint64_t ms_since(uint64_t now, uint64_t then)
{
    return now > then ? (now - then) / 1000000ull : 0;
}

static double mbps(uint64_t bytes, uint64_t ns)
{
    return ns ? (double)bytes / (1 << 20) / ((double)ns / 1e9) : 0.0;
}

/* Under ss->mu. */
static struct reg *find_reg(struct snapstream *ss, uint64_t gid)
{
    for (struct reg *r = ss->regs; r; r = r->next)
        if (r->gid == gid && !r->dead)
            return r;
    return NULL;
}

static struct out *find_out(struct snapstream *ss, uint64_t gid, uint32_t peer)
{
    for (struct out *o = ss->outs; o; o = o->next)
        if (o->gid == gid && o->peer == peer)
            return o;
    return NULL;
}

static void send_msg(struct snapstream *ss, const char *to, uint64_t gid, const struct raft_msg *m,
                     int *refused)
{
    unsigned char *buf;
    size_t len;
    if (raftwire_encode(m, &buf, &len))
        return;
    NINES_ASSERT(len <= RAFTWIRE_MAX_MSG);
    int rc = ss->c.send(ss->c.send_arg, to, gid, buf, len);
    free(buf);
    if (rc) {
        pthread_mutex_lock(&ss->mu);
        ss->st.send_refused++;
        pthread_mutex_unlock(&ss->mu);
        ss->refused_since_log++;
        uint64_t now = clock_mono_ns();
        if (ms_since(now, ss->refused_log_ns) >= 1000) {
            log_warn("snapshot: the transport refused %" PRIu64
                     " message(s) to %s (%s); they are sent again from the last acknowledged "
                     "offset",
                     ss->refused_since_log, to, nerr_name(rc));
            ss->refused_log_ns = now;
            ss->refused_since_log = 0;
        }
        if (refused)
            *refused = 1;
    }
}

static void free_out(struct snapstream *ss, struct out *o)
{
    state_dbi_stream_close(o->ds);
    if (o->src.txn && ss->c.st)
        state_read_end(ss->c.st, o->src.txn);
    free(o->src.buf);
    for (uint32_t i = 0; i < ss->c.window; i++)
        free(o->win[i].data);
    free(o->win);
    free(o);
}

/* Ends an outgoing stream (snap thread). */
static void end_out(struct snapstream *ss, struct out *o, int ok, const char *why)
{
    uint64_t now = clock_mono_ns(), dt = now - o->start_ns;
    if (ok)
        log_info("group %s: snapshot at %" PRIu64 " sent to member %u (%s): %" PRIu64
                 " bytes in %.1f s (%.1f MB/s, %" PRIu64 " chunks sent again)",
                 o->name, o->index, o->peer, o->to, o->total, (double)dt / 1e9, mbps(o->total, dt),
                 o->resent);
    else
        log_warn("group %s: snapshot stream at %" PRIu64
                 " to member %u (%s) given up after %" PRIu64 " of %" PRIu64 " bytes: %s",
                 o->name, o->index, o->peer, o->to, atomic_load(&o->acked), o->total, why);
    pthread_mutex_lock(&ss->mu);
    for (struct out **pp = &ss->outs; *pp; pp = &(*pp)->next)
        if (*pp == o) {
            *pp = o->next;
            break;
        }
    struct reg *r = find_reg(ss, o->gid);
    if (r) {
        r->ended_ns[o->peer] = now;
        r->ended_ok[o->peer] = ok;
    }
    if (ok)
        ss->st.streams_done++;
    else
        ss->st.streams_failed++;
    pthread_mutex_unlock(&ss->mu);
    free_out(ss, o);
}

/* The next up to cap bytes of the stream. */
static int produce(struct out *o, unsigned char *buf, size_t cap, size_t *n, struct nerr *err)
{
    if (o->ds)
        return state_dbi_stream_read(o->ds, buf, cap, n, err);
    size_t left = o->src.len - o->buf_off;
    *n = left < cap ? left : cap;
    memcpy(buf, o->src.buf + o->buf_off, *n);
    o->buf_off += *n;
    return 0;
}

/* One pass over the source: its length and CRC, then back to the start. */
static int measure(struct snapstream *ss, struct out *o, struct nerr *err)
{
    uint64_t total = 0;
    uint32_t crc = 0;
    for (;;) {
        size_t n;
        if (produce(o, ss->scratch, ss->c.chunk, &n, err))
            return -1;
        if (!n)
            break;
        crc = crc32c(crc, ss->scratch, n);
        total += n;
    }
    if (total > SNAP_MAX_TOTAL)
        return nerr_set(err, NERR_LIMIT, "snapshot of %" PRIu64 " bytes is over the limit", total);
    o->total = total;
    o->crc = crc;
    o->buf_off = 0;
    if (o->ds && state_dbi_stream_rewind(o->ds, err))
        return -1;
    o->measured = 1;
    log_info("group %s: snapshot stream at %" PRIu64 " (term %" PRIu64
             ") to member %u (%s): %" PRIu64 " bytes, chunks of %u, window %u, %.1f MB/s limit",
             o->name, o->index, o->term, o->peer, o->to, total, ss->c.chunk, ss->c.window,
             (double)ss->c.rate / (1 << 20));
    return 0;
}

static void send_chunk(struct snapstream *ss, struct out *o, struct chunk *c, uint64_t now)
{
    struct raft_msg m = {.type = RAFTWIRE_SNAP_CHUNK,
                         .from = o->self,
                         .to = o->peer,
                         .term = o->lterm,
                         .index = o->index,
                         .log_term = o->term,
                         .commit = c->off,
                         .hint = o->total,
                         .ctx = o->crc,
                         .reject = crc32c(0, c->data, c->len),
                         .data_len = c->len,
                         .data = c->data,
                         .conf = o->conf};
    c->sent_ns = now;
    ss->tokens -= c->len;
    send_msg(ss, o->to, o->gid, &m, NULL);
    pthread_mutex_lock(&ss->mu);
    ss->st.chunks_sent++;
    pthread_mutex_unlock(&ss->mu);
}

/* Refills the token bucket: rate bytes a second, bursts up to a quarter
 * second (at least one chunk). */
static void refill(struct snapstream *ss, uint64_t now)
{
    double burst = (double)ss->c.rate / 4;
    if (burst < ss->c.chunk)
        burst = ss->c.chunk;
    ss->tokens += (double)ss->c.rate * (double)(now - ss->refill_ns) / 1e9;
    if (ss->tokens > burst)
        ss->tokens = burst;
    ss->refill_ns = now;
}

/* Advances one outgoing stream; 0 while it goes on. */
static void service_out(struct snapstream *ss, struct out *o, uint64_t now)
{
    struct nerr err = {0};
    pthread_mutex_lock(&ss->mu);
    struct reg *r = find_reg(ss, o->gid);
    int leads = r && atomic_load(r->role) == RAFT_LEADER && atomic_load(r->term) == o->lterm;
    pthread_mutex_unlock(&ss->mu);
    if (!leads) {
        end_out(ss, o, 0, r ? "no longer the leader of that term" : "the group closed");
        return;
    }
    if (!o->measured) {
        if (measure(ss, o, &err))
            end_out(ss, o, 0, err.msg);
        else
            o->progress_ns = now;
        return;
    }
    if (ms_since(now, o->progress_ns) > ss->c.stall_ms) {
        end_out(ss, o, 0, "no progress");
        return;
    }
    /* Nothing acknowledged for resend_ms: the window is sent again, from
     * the last acknowledged offset (a lost or refused chunk, a reconnect). */
    if (o->n_win && ms_since(now, o->progress_ns) >= ss->c.resend_ms &&
        ms_since(now, o->win[0].sent_ns) >= ss->c.resend_ms) {
        if (ss->tokens < (double)o->win[0].len)
            return;
        log_info("group %s: snapshot stream to member %u resumes at offset %" PRIu64
                 " (%u chunk(s) unacknowledged for %u ms)",
                 o->name, o->peer, o->win[0].off, o->n_win, ss->c.resend_ms);
        for (uint32_t i = 0; i < o->n_win; i++) {
            send_chunk(ss, o, &o->win[i], now);
            o->resent++;
            pthread_mutex_lock(&ss->mu);
            ss->st.chunks_resent++;
            pthread_mutex_unlock(&ss->mu);
        }
        return;
    }
    while (o->n_win < ss->c.window && o->produced < o->total && ss->tokens >= 0) {
        struct chunk *c = &o->win[o->n_win];
        if (!c->data && !(c->data = malloc(ss->c.chunk))) {
            end_out(ss, o, 0, "out of memory");
            return;
        }
        size_t n;
        if (produce(o, c->data, ss->c.chunk, &n, &err) || !n) {
            end_out(ss, o, 0, n ? err.msg : "the state ended before its measured length");
            return;
        }
        if (o->produced + n > o->total) {
            end_out(ss, o, 0, "the state grew while it was streamed");
            return;
        }
        c->off = o->produced;
        c->len = (uint32_t)n;
        o->produced += n;
        o->n_win++;
        send_chunk(ss, o, c, now);
    }
    if (ms_since(now, o->log_ns) >= PROGRESS_LOG_MS) {
        uint64_t a = atomic_load(&o->acked), dt = now - o->start_ns;
        if (o->log_ns)
            log_info("group %s: snapshot to member %u: %" PRIu64 " of %" PRIu64
                     " bytes (%.1f MB/s)",
                     o->name, o->peer, a, o->total, mbps(a, dt));
        o->log_ns = now;
    }
}

static void on_ack(struct snapstream *ss, struct inmsg *im, uint64_t now)
{
    struct raft_msg *m = &im->m;
    struct out *o = find_out(ss, im->gid, m->from);
    if (!o || o->index != m->index || o->term != m->log_term || o->lterm != m->term || !o->measured)
        return;
    /* The sender of an ack must be the member the stream goes to. */
    if (strcmp(im->from, o->to) || m->to != o->self)
        return;
    if (m->reject) {
        end_out(ss, o, 0, "the receiver refused it (restart or failed verification)");
        return;
    }
    uint64_t upto = m->commit, acked = atomic_load(&o->acked);
    if (upto > o->produced)
        return; /* acknowledges what was never sent: ignore */
    if (upto < acked) {
        /* The receiver lost what it had acknowledged (it restarted): the
         * window no longer reaches back there. */
        end_out(ss, o, 0, "the receiver lost the stream (restarted?)");
        return;
    }
    if (upto > acked) {
        uint32_t k = 0;
        while (k < o->n_win && o->win[k].off + o->win[k].len <= upto)
            k++;
        /* Keep the buffers of acknowledged chunks for reuse at the end. */
        struct chunk keep[64];
        NINES_ASSERT(k <= 64);
        memcpy(keep, o->win, k * sizeof *keep);
        memmove(o->win, o->win + k, (o->n_win - k) * sizeof *o->win);
        for (uint32_t i = 0; i < k; i++) {
            o->win[o->n_win - k + i] = keep[i];
            o->win[o->n_win - k + i].len = 0;
        }
        o->n_win -= k;
        atomic_store(&o->acked, upto);
        o->progress_ns = now;
    }
    if (m->ctx == 1 && upto == o->total)
        end_out(ss, o, 1, NULL);
}

/* ---- receiving ---- */

/* Under ss->mu (the progress reader looks at active). */
static void in_reset(struct reg *r, int unlink_partial)
{
    if (r->in.fd >= 0) {
        close(r->in.fd);
        r->in.fd = -1;
    }
    if (unlink_partial && r->in.active) {
        char p[4096];
        snprintf(p, sizeof p, "%s/SNAPSHOT.recv", r->dir);
        unlink(p);
    }
    r->in.active = 0;
    atomic_store(&r->in.next, 0);
}

static void send_ack(struct snapstream *ss, struct reg *r, const char *to, const struct raft_msg *c,
                     uint64_t next, int reject, int done)
{
    struct raft_msg a = {.type = RAFTWIRE_SNAP_ACK,
                         .from = r->self,
                         .to = c->from,
                         .term = c->term,
                         .index = c->index,
                         .log_term = c->log_term,
                         .commit = next,
                         .reject = (uint32_t)reject,
                         .ctx = (uint64_t)done};
    send_msg(ss, to, r->gid, &a, NULL);
}

static void count(struct snapstream *ss, uint64_t *field)
{
    pthread_mutex_lock(&ss->mu);
    (*field)++;
    pthread_mutex_unlock(&ss->mu);
}

/* The last byte is in: sync, verify, keep, deliver. */
static void in_finish(struct snapstream *ss, struct reg *r, struct inmsg *im, uint64_t now)
{
    struct raft_msg *m = &im->m;
    char tmp[4096], ready[4200];
    snprintf(tmp, sizeof tmp, "%s/SNAPSHOT.recv", r->dir);
    snprintf(ready, sizeof ready, "%s/SNAPSHOT.ready.%" PRIu64, r->dir, r->in.index);
    struct snapfile f = {.index = r->in.index,
                         .term = r->in.term,
                         .len = r->in.total,
                         .off = SNAPFILE_HEADER,
                         .crc = r->in.crc,
                         .conf = r->in.conf};
    unsigned char h[SNAPFILE_HEADER];
    const char *why = NULL;
    int e = 0;
    if (fdatasync(r->in.fd))
        why = "fdatasync", e = errno;
    else if (r->in.crc != r->in.whole_crc)
        why = "the stream's CRC-32C does not match";
    else if (atomic_load(&r->in.next) != r->in.total)
        why = "the stream's length does not match";
    if (!why) {
        snapfile_header(h, &f);
        if (pwrite(r->in.fd, h, sizeof h, 0) != (ssize_t)sizeof h || fdatasync(r->in.fd))
            why = "writing its header", e = errno;
    }
    if (!why && rename(tmp, ready))
        why = "rename", e = errno;
    struct nerr err = {0};
    if (!why && fs_fsync_dir(r->dir, &err))
        why = "directory fsync", e = errno;
    if (why) {
        log_error("group %s: snapshot at %" PRIu64 " from member %u refused: %s%s%s", r->name,
                  r->in.index, r->in.from, why, e ? ": " : "", e ? strerror(e) : "");
        pthread_mutex_lock(&ss->mu);
        in_reset(r, 1);
        pthread_mutex_unlock(&ss->mu);
        unlink(ready);
        count(ss, &ss->st.installs_refused);
        send_ack(ss, r, im->from, m, 0, 1, 0);
        return;
    }
    uint64_t dt = now - r->in.start_ns;
    log_info("group %s: snapshot at %" PRIu64 " received from member %u and verified: %" PRIu64
             " bytes in %.1f s (%.1f MB/s)",
             r->name, r->in.index, r->in.from, r->in.total, (double)dt / 1e9,
             mbps(r->in.total, dt));
    close(r->in.fd);
    pthread_mutex_lock(&ss->mu);
    r->in.fd = -1;
    r->in.active = 0;
    atomic_store(&r->in.next, 0);
    r->done_index = f.index;
    r->done_term = f.term;
    r->done_lterm = m->term;
    r->done_total = f.len;
    ss->st.installs_ready++;
    pthread_mutex_unlock(&ss->mu);
    /* The core learns the snapshot's index and term (and the leader) with
     * no payload: the host installs the ready file. */
    struct raft_msg sn = {.group = r->gid,
                          .type = RAFT_MSG_SNAPSHOT,
                          .from = m->from,
                          .to = r->self,
                          .term = m->term,
                          .index = f.index,
                          .log_term = f.term,
                          .commit = f.index,
                          .conf = f.conf};
    ss->c.deliver(ss->c.arg, r->gid, im->from, &sn);
    send_ack(ss, r, im->from, m, f.len, 0, 1);
}

static void on_chunk(struct snapstream *ss, struct inmsg *im, uint64_t now)
{
    struct raft_msg *m = &im->m;
    pthread_mutex_lock(&ss->mu);
    struct reg *r = find_reg(ss, im->gid);
    /* The transport authenticated the sending node: it must be the member
     * the chunk claims to come from (the slots may change meanwhile:
     * snapstream_set_members, under mu). */
    int forged = r && (!m->from || m->from > r->n || m->to != r->self || !r->nodes[m->from - 1] ||
                       strcmp(r->nodes[m->from - 1], im->from));
    pthread_mutex_unlock(&ss->mu);
    if (!r || forged)
        return;
    count(ss, &ss->st.chunks_in);
    if (!m->data_len || crc32c(0, m->data, m->data_len) != (uint32_t)m->reject ||
        m->hint > SNAP_MAX_TOTAL || m->commit + m->data_len > m->hint || !m->index ||
        !m->log_term || m->log_term > m->term) {
        count(ss, &ss->st.chunks_bad);
        return; /* damaged: the sender resends from the last acknowledged offset */
    }
    struct in *in = &r->in;
    int same = in->active && in->index == m->index && in->term == m->log_term &&
               in->lterm == m->term && in->from == m->from;
    if (!same && r->done_index == m->index && r->done_term == m->log_term &&
        r->done_lterm == m->term && r->done_total == m->hint) {
        /* A chunk of the stream kept last (its final ack was lost). */
        count(ss, &ss->st.chunks_ignored);
        send_ack(ss, r, im->from, m, r->done_total, 0, 1);
        return;
    }
    if (!same) {
        if (m->commit != 0) {
            /* A chunk of a stream this member has not begun: its first
             * chunk was lost or comes later, or this member restarted. The
             * ack says "nothing yet": the sender resends from offset 0 if
             * it still holds it, and gives the stream up otherwise. */
            count(ss, &ss->st.chunks_ignored);
            send_ack(ss, r, im->from, m, 0, 0, 0);
            return;
        }
        if (in->active && m->term < in->lterm) {
            count(ss, &ss->st.chunks_ignored);
            return; /* an older leader's */
        }
        pthread_mutex_lock(&ss->mu);
        in_reset(r, 1);
        pthread_mutex_unlock(&ss->mu);
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s/SNAPSHOT.recv", r->dir);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        unsigned char zero[SNAPFILE_HEADER] = {0};
        if (fd < 0 || pwrite(fd, zero, sizeof zero, 0) != (ssize_t)sizeof zero) {
            log_error("group %s: cannot write %s: %s", r->name, tmp, strerror(errno));
            if (fd >= 0)
                close(fd);
            unlink(tmp);
            send_ack(ss, r, im->from, m, 0, 1, 0);
            return;
        }
        pthread_mutex_lock(&ss->mu);
        *in = (struct in){.active = 1,
                          .from = m->from,
                          .lterm = m->term,
                          .index = m->index,
                          .term = m->log_term,
                          .total = m->hint,
                          .conf = m->conf,
                          .whole_crc = (uint32_t)m->ctx,
                          .fd = fd,
                          .start_ns = now,
                          .log_ns = now};
        pthread_mutex_unlock(&ss->mu);
        log_info("group %s: receiving a snapshot at %" PRIu64 " (term %" PRIu64
                 ") from member %u (%s): %" PRIu64 " bytes",
                 r->name, m->index, m->log_term, m->from, im->from, m->hint);
    }
    if (m->hint != in->total || (uint32_t)m->ctx != in->whole_crc) {
        count(ss, &ss->st.chunks_bad);
        return;
    }
    uint64_t next = atomic_load(&in->next);
    if (m->commit != next) {
        /* A duplicate, or one from beyond a lost chunk: ignored; the ack
         * says where the stream stands. */
        count(ss, &ss->st.chunks_ignored);
        send_ack(ss, r, im->from, m, next, 0, 0);
        return;
    }
    if (pwrite(in->fd, m->data, m->data_len, (off_t)(SNAPFILE_HEADER + next)) !=
        (ssize_t)m->data_len) {
        log_error("group %s: writing the received snapshot: %s", r->name, strerror(errno));
        pthread_mutex_lock(&ss->mu);
        in_reset(r, 1);
        pthread_mutex_unlock(&ss->mu);
        send_ack(ss, r, im->from, m, 0, 1, 0);
        return;
    }
    in->crc = crc32c(in->crc, m->data, m->data_len);
    atomic_store(&in->next, next + m->data_len);
    if (next + m->data_len == in->total) {
        in_finish(ss, r, im, now);
        return;
    }
    if (ms_since(now, in->log_ns) >= PROGRESS_LOG_MS) {
        log_info("group %s: receiving the snapshot at %" PRIu64 ": %" PRIu64 " of %" PRIu64
                 " bytes (%.1f MB/s)",
                 r->name, in->index, next + m->data_len, in->total,
                 mbps(next + m->data_len, now - in->start_ns));
        in->log_ns = now;
    }
    send_ack(ss, r, im->from, m, next + m->data_len, 0, 0);
}

/* ---- the thread ---- */

static void reap_dead(struct snapstream *ss)
{
    pthread_mutex_lock(&ss->mu);
    if (!ss->ndead) {
        pthread_mutex_unlock(&ss->mu);
        return;
    }
    ss->ndead = 0;
    for (struct reg **pp = &ss->regs; *pp;) {
        struct reg *r = *pp;
        if (!r->dead) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        in_reset(r, 1);
        free(r->name);
        free(r->dir);
        for (uint32_t k = 0; k < RAFT_MAX_MEMBERS; k++)
            free(r->nodes[k]);
        free(r);
    }
    pthread_mutex_unlock(&ss->mu);
}

static void *snap_main(void *arg)
{
    struct snapstream *ss = arg;
    pthread_setname_np(pthread_self(), "nines-snap");
    for (;;) {
        pthread_mutex_lock(&ss->mu);
        if (!ss->ihead && !ss->stop) {
            uint64_t dl = clock_mono_ns() + LOOP_MS * 1000000ull;
            if (!ss->outs)
                dl += 95 * 1000000ull; /* idle: the inbox wakes it */
            struct timespec ts = {(time_t)(dl / 1000000000ull), (long)(dl % 1000000000ull)};
            pthread_cond_timedwait(&ss->cv, &ss->mu, &ts);
        }
        struct inmsg *batch = ss->ihead;
        ss->ihead = ss->itail = NULL;
        int stop = ss->stop;
        pthread_mutex_unlock(&ss->mu);
        uint64_t now = clock_mono_ns();
        for (struct inmsg *im = batch, *n; im; im = n) {
            n = im->next;
            if (!stop) {
                if (im->m.type == RAFTWIRE_SNAP_CHUNK)
                    on_chunk(ss, im, now);
                else
                    on_ack(ss, im, now);
            }
            raft_msg_release(&im->m);
            free(im);
        }
        if (stop)
            break;
        reap_dead(ss);
        refill(ss, now);
        /* A stream's service may end it (unlinking it): walk a snapshot
         * of the list. */
        struct out *list[64];
        size_t n = 0;
        pthread_mutex_lock(&ss->mu);
        for (struct out *o = ss->outs; o && n < 64; o = o->next)
            list[n++] = o;
        pthread_mutex_unlock(&ss->mu);
        for (size_t i = 0; i < n; i++)
            service_out(ss, list[i], now);
    }
    while (ss->outs)
        end_out(ss, ss->outs, 0, "the node stops");
    return NULL;
}

int snapstream_start(const struct snapstream_config *c, struct snapstream **out, struct nerr *err)
{
    struct snapstream *ss = calloc(1, sizeof *ss);
    if (!ss)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    ss->c = *c;
    if (!ss->c.rate)
        ss->c.rate = SNAP_DEFAULT_RATE;
    if (!ss->c.chunk)
        ss->c.chunk = SNAP_CHUNK_BYTES;
    if (ss->c.chunk > SNAP_MAX_CHUNK)
        ss->c.chunk = SNAP_MAX_CHUNK;
    if (!ss->c.window)
        ss->c.window = SNAP_WINDOW;
    if (ss->c.window > 64)
        ss->c.window = 64;
    if (!ss->c.resend_ms)
        ss->c.resend_ms = 2000;
    if (!ss->c.stall_ms)
        ss->c.stall_ms = 30000;
    if (!(ss->scratch = malloc(ss->c.chunk))) {
        free(ss);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    ss->refill_ns = clock_mono_ns();
    pthread_mutex_init(&ss->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ss->cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&ss->thr, NULL, snap_main, ss);
    if (rc) {
        pthread_cond_destroy(&ss->cv);
        pthread_mutex_destroy(&ss->mu);
        free(ss->scratch);
        free(ss);
        return nerr_sys(err, rc, "snapshot thread");
    }
    *out = ss;
    return 0;
}

void snapstream_stop(struct snapstream *ss)
{
    if (!ss)
        return;
    pthread_mutex_lock(&ss->mu);
    ss->stop = 1;
    pthread_cond_signal(&ss->cv);
    pthread_mutex_unlock(&ss->mu);
    pthread_join(ss->thr, NULL);
    for (struct inmsg *im = ss->ihead, *n; im; im = n) {
        n = im->next;
        raft_msg_release(&im->m);
        free(im);
    }
    for (struct reg *r = ss->regs; r; r = r->next) {
        r->dead = 1;
        ss->ndead++;
    }
    reap_dead(ss);
    pthread_cond_destroy(&ss->cv);
    pthread_mutex_destroy(&ss->mu);
    free(ss->scratch);
    free(ss);
}

int snapstream_register(struct snapstream *ss, uint64_t gid, const char *name, const char *dir,
                        const char *const *nodes, uint32_t n, uint32_t self,
                        const _Atomic int *role, const _Atomic uint64_t *term, struct nerr *err)
{
    struct reg *r = calloc(1, sizeof *r);
    if (!r || n > RAFT_MAX_MEMBERS || !(r->name = strdup(name)) || !(r->dir = strdup(dir)))
        goto nomem;
    for (uint32_t k = 0; k < n; k++)
        if (nodes[k] && !(r->nodes[k] = strdup(nodes[k])))
            goto nomem;
    r->gid = gid;
    r->n = n;
    r->self = self;
    r->role = role;
    r->term = term;
    r->in.fd = -1;
    pthread_mutex_lock(&ss->mu);
    r->next = ss->regs;
    ss->regs = r;
    pthread_mutex_unlock(&ss->mu);
    return 0;
nomem:
    if (r) {
        free(r->name);
        free(r->dir);
        for (uint32_t k = 0; k < n && k < RAFT_MAX_MEMBERS; k++)
            free(r->nodes[k]);
        free(r);
    }
    return nerr_set(err, NERR_NOMEM, "out of memory");
}

int snapstream_set_members(struct snapstream *ss, uint64_t gid, const char *const *nodes,
                           uint32_t n, struct nerr *err)
{
    char *nv[RAFT_MAX_MEMBERS] = {0};
    if (n > RAFT_MAX_MEMBERS)
        return nerr_set(err, NERR_INVALID, "%u members", n);
    for (uint32_t k = 0; k < n; k++)
        if (nodes[k] && !(nv[k] = strdup(nodes[k]))) {
            for (uint32_t j = 0; j < k; j++)
                free(nv[j]);
            return nerr_set(err, NERR_NOMEM, "out of memory");
        }
    pthread_mutex_lock(&ss->mu);
    struct reg *r = find_reg(ss, gid);
    if (r) {
        /* The thread reads r->nodes under mu only (on_chunk copies the
         * registration pointer, then compares: it takes mu first). */
        for (uint32_t k = 0; k < RAFT_MAX_MEMBERS; k++) {
            char *old = r->nodes[k];
            r->nodes[k] = nv[k];
            nv[k] = old;
        }
        r->n = n;
    }
    pthread_mutex_unlock(&ss->mu);
    for (uint32_t k = 0; k < RAFT_MAX_MEMBERS; k++)
        free(nv[k]);
    return r ? 0 : nerr_set(err, NERR_NOTFOUND, "group %" PRIu64 " is not registered", gid);
}

void snapstream_unregister(struct snapstream *ss, uint64_t gid)
{
    /* The thread reaps it (and ends its streams) on its next round; from
     * now on it no longer reads the group's role and term. */
    pthread_mutex_lock(&ss->mu);
    struct reg *r = find_reg(ss, gid);
    if (r) {
        r->dead = 1;
        ss->ndead++;
        r->role = NULL;
        r->term = NULL;
    }
    pthread_cond_signal(&ss->cv);
    pthread_mutex_unlock(&ss->mu);
}

/* Under ss->mu. */
static int wanted_locked(struct snapstream *ss, struct reg *r, uint64_t gid, uint32_t peer)
{
    if (!r || !peer || peer > r->n || peer == r->self || find_out(ss, gid, peer))
        return 0;
    uint64_t wait = r->ended_ok[peer] ? COOLDOWN_OK_MS : COOLDOWN_FAIL_MS;
    return !r->ended_ns[peer] || ms_since(clock_mono_ns(), r->ended_ns[peer]) >= wait;
}

int snapstream_wanted(struct snapstream *ss, uint64_t gid, uint32_t peer)
{
    pthread_mutex_lock(&ss->mu);
    int w = wanted_locked(ss, find_reg(ss, gid), gid, peer);
    pthread_mutex_unlock(&ss->mu);
    return w;
}

int snapstream_offer(struct snapstream *ss, uint64_t gid, uint32_t peer, uint64_t leader_term,
                     uint64_t index, uint64_t term, const struct raft_conf *conf,
                     struct snap_source *src, struct nerr *err)
{
    struct out *o = calloc(1, sizeof *o);
    if (o)
        o->win = calloc(ss->c.window, sizeof *o->win);
    if (!o || !o->win) {
        if (o)
            free(o->win);
        free(o);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    if (src->txn) {
        int rc = state_dbi_stream_open(src->txn, src->dbi, &o->ds, err);
        if (rc) {
            free(o->win);
            free(o);
            return rc;
        }
    }
    pthread_mutex_lock(&ss->mu);
    struct reg *r = find_reg(ss, gid);
    if (!wanted_locked(ss, r, gid, peer) || !r->nodes[peer - 1]) {
        pthread_mutex_unlock(&ss->mu);
        state_dbi_stream_close(o->ds);
        free(o->win);
        free(o);
        if (r && peer && peer <= r->n && peer != r->self && !r->nodes[peer - 1])
            return nerr_set(err, NERR_NOTFOUND, "member %u has no node", peer);
        return r ? nerr_set(err, NERR_EXISTS, "a snapshot stream to member %u is in flight", peer)
                 : nerr_set(err, NERR_NOTFOUND, "group %" PRIu64 " is not registered", gid);
    }
    o->gid = gid;
    o->peer = peer;
    o->self = r->self;
    snprintf(o->to, sizeof o->to, "%s", r->nodes[peer - 1]);
    snprintf(o->name, sizeof o->name, "%s", r->name);
    o->lterm = leader_term;
    o->index = index;
    o->term = term;
    if (conf)
        o->conf = *conf;
    o->src = *src;
    o->start_ns = o->progress_ns = clock_mono_ns();
    o->next = ss->outs;
    ss->outs = o;
    ss->st.streams_started++;
    pthread_cond_signal(&ss->cv);
    pthread_mutex_unlock(&ss->mu);
    return 0;
}

void snapstream_recv(struct snapstream *ss, const char *from, uint64_t gid, struct raft_msg *m)
{
    struct inmsg *im = calloc(1, sizeof *im);
    if (!im)
        return; /* lost like any message: the sender resends */
    im->gid = gid;
    snprintf(im->from, sizeof im->from, "%s", from);
    im->m = *m;
    m->data = NULL;
    m->data_len = 0;
    m->entries = NULL;
    m->n_entries = 0;
    pthread_mutex_lock(&ss->mu);
    if (ss->itail)
        ss->itail->next = im;
    else
        ss->ihead = im;
    ss->itail = im;
    pthread_cond_signal(&ss->cv);
    pthread_mutex_unlock(&ss->mu);
}

int snapstream_progress(struct snapstream *ss, uint64_t gid, struct snapstream_progress *p)
{
    memset(p, 0, sizeof *p);
    uint64_t now = clock_mono_ns(), start = 0;
    int found = 0;
    pthread_mutex_lock(&ss->mu);
    for (struct out *o = ss->outs; o && !found; o = o->next)
        if (o->gid == gid) {
            found = 1;
            *p = (struct snapstream_progress){.sending = 1,
                                              .peer = o->peer,
                                              .index = o->index,
                                              .bytes = atomic_load(&o->acked),
                                              .total = o->measured ? o->total : 0};
            start = o->start_ns;
        }
    struct reg *r = found ? NULL : find_reg(ss, gid);
    if (r && r->in.active) {
        found = 1;
        *p = (struct snapstream_progress){.sending = 0,
                                          .peer = r->in.from,
                                          .index = r->in.index,
                                          .bytes = atomic_load(&r->in.next),
                                          .total = r->in.total};
        start = r->in.start_ns;
    }
    pthread_mutex_unlock(&ss->mu);
    if (found && now > start) {
        p->rate = (uint64_t)((double)p->bytes * 1e9 / (double)(now - start));
        if (p->rate && p->total >= p->bytes)
            p->eta_ms = (p->total - p->bytes) * 1000 / p->rate;
    }
    return found;
}

void snapstream_stats(struct snapstream *ss, struct snapstream_stats *out)
{
    pthread_mutex_lock(&ss->mu);
    *out = ss->st;
    pthread_mutex_unlock(&ss->mu);
}
