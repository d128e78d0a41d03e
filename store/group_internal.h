/*
 * group_internal.h — what the files of the replication group share: the
 * host, group and entry structs and the functions one file calls in
 * another (prefix group__). Included only by group.c, group_files.c,
 * group_driver.c and group_applier.c; everything else uses group.h, whose
 * contract covers all four.
 *
 *   group.c          lifecycle (host start/stop, group open/close) and the
 *                    public calls of group.h (propose, status, read index,
 *                    barrier, receive path)
 *   group_files.c    the per-group files: SNAPSHOT, an old HARDSTATE
 *                    file (carried over to the node log), and loading the
 *                    log from the node log
 *   group_driver.c   the driver thread: owns every struct raft, persists
 *                    readies, sends, matches proposals with committed entries
 *   group_applier.c  the applier thread: applies committed entries to LMDB in
 *                    one open transaction, then runs done()
 *
 * Threads (which file runs where): the driver thread runs group_driver.c;
 * the applier thread runs group_applier.c; group.c runs on the callers'
 * threads and hands work to the driver through group__dev_post. A struct
 * group's fields are grouped below by the thread that owns them.
 */
#ifndef NINES_GROUP_INTERNAL_H
#define NINES_GROUP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "store/group.h"
#include "store/snapstream.h"

#define GID_BUCKETS 65536 /* a power of two; 10,000+ groups keep chains short */
/* A forwarded proposal's entry: magic byte, u64 request id, then the entry
 * the state machine sees. (A state machine's own entries never start with
 * this byte: op.h and the catalog write JSON.) */
#define GROUP_FRAME_MAGIC 0x01
#define GROUP_FRAME 9

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
    int snap; /* a snapshot to restore at lsn: from the file at snap_fd
                 (its header in snapf), closed by the applier */
    int snap_fd;
    struct snapfile snapf;
    uint64_t rid;    /* forwarded proposals: the request id in the entry's frame */
    int fwd;         /* this node's proposal, to be forwarded if it does not lead */
    uint32_t origin; /* proposals a member forwarded here: its member number */
    uint32_t type;   /* committed entries: RAFT_ENTRY_NORMAL or RAFT_ENTRY_CONF (never
                        given to the state machine: the applier only moves the applied
                        LSN past it) */
    struct gentry *next;
};

/* Work for the driver thread. WAKE: a reader wants a sleeping leader's
 * lease (group_read_index); BEAT: a peer node's heartbeat (node-level
 * liveness, from names the node, msg.ctx its incarnation); MEMBERS: new
 * slots (group_set_members, in slots); CONF: a configuration change to
 * propose (group_propose_conf, logreq with mode 3), answered like LOG but
 * run only when no ready is in flight (raft.h: no call between
 * raft_ready_get and raft_ready_advance). */
enum dev_kind {
    DEV_MSG = 1,
    DEV_PROPOSE,
    DEV_DURABLE,
    DEV_CLOSE,
    DEV_WAKE,
    DEV_BEAT,
    DEV_LOG,
    DEV_MEMBERS,
    DEV_CONF
};

/* A group's slots (group.h, struct group_members): node[k] is member id
 * k+1's node (malloc'd; NULL = none), n the highest id with a node. */
struct gslots {
    uint32_t n;
    char *node[RAFT_MAX_MEMBERS];
};
void group__slots_free(struct gslots *s);
/* The node log prefix of an entry: term | type << 56 (group.h); NERR_INVALID
 * for a term at or over 2^56 or an unknown type. */
int group__entry_prefix(const struct raft_entry *e, unsigned char out[8]);

/* A request for entries or a term of the consensus log (group_log_copy,
 * group_log_term), answered by the driver. Two references: the caller's
 * and the driver's; the last one frees it. */
struct glogreq {
    uint64_t first, last;
    size_t max_bytes;
    int mode;              /* 0 copy, 1 term, 2 bytes (in term), 3 propose conf (DEV_CONF) */
    struct raft_conf conf; /* mode 3: the target */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs, done, status;
    char msg[160];
    struct group_log_entry *v; /* one block: array then bytes */
    size_t n;
    uint64_t term;
};
void group__logreq_put(struct glogreq *q);
void group__logreq_answer(struct group *g, struct glogreq *q); /* driver */

/* Node-level liveness of one peer node (driver thread only): a node
 * heartbeat (RAFTWIRE_NODE_BEAT) every heartbeat interval; silent for E
 * ticks = down (raft_peer_down to every group it is a member of); a beat
 * with another incarnation = restarted (down, then up). */
struct gpeer {
    char id[64];
    uint64_t heard_tick; /* h->ticks when last heard */
    uint64_t inc;        /* its incarnation; 0 = not heard yet */
    int heard;           /* a beat was taken since the last tick */
    int down;
};
struct dev {
    enum dev_kind kind;
    uint64_t gid;
    struct group *g; /* PROPOSE, DURABLE, CLOSE */
    struct raft_msg msg;
    char from[64];
    struct gentry *prop;
    int status;             /* DURABLE */
    int local;              /* MSG: made on this node (a verified snapshot stream), not received */
    struct glogreq *logreq; /* LOG, CONF */
    struct gslots *slots;   /* MEMBERS (taken over by the driver) */
    struct dev *next;
};

struct group_host {
    struct state *st;
    struct nodelog *nl; /* every group's log (nodelog.h) */
    struct overlay *ov;
    struct group_timing timing;
    int hold_logs; /* group_host_hold_logs */
    group_send_fn send;
    void *send_arg;
    struct snapstream *ss; /* snapshot streams; NULL in a one-node host */
    /* Driver thread: owns every struct raft. */
    pthread_t driver;
    pthread_mutex_t dmu;
    pthread_cond_t dcv;
    struct dev *dhead, *dtail;
    int dstop;
    struct group *buckets[GID_BUCKETS]; /* by gid; driver thread only */
    struct group *all;                  /* every open group; driver thread only */
    struct group *dirty;                /* groups to drive at the end of the round */
    /* Quiescence (raft.h): only active groups are ticked; a group leaves
     * the list once asleep and idle, and any input puts it back. */
    struct group *active; /* driver thread only */
    uint64_t ticks;       /* ticks counted since start (driver) */
    uint64_t next_beat;   /* h->ticks of the next node heartbeat */
    uint64_t incarnation; /* this host's, in its node heartbeats */
    struct gpeer *peers;  /* driver thread only */
    size_t npeers, cap_peers;
    _Atomic uint64_t st_quiet, st_active, st_beats_in, st_peer_downs, st_peer_restarts;
    uint64_t seed;
    _Atomic uint64_t rid_next; /* request ids of forwarded proposals */
    _Atomic uint64_t st_in, st_out, st_malformed, st_forged, st_unknown, st_raft, st_sendfail;
    _Atomic uint64_t st_poisoned, st_refused;
    pthread_rwlock_t vlock; /* guards validate/validate_arg (group_host_set_validator) */
    group_validate_fn validate;
    void *validate_arg;
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
    uint64_t txn_start_ns;  /* clock_mono_ns() when the open transaction began */
    struct group **touched; /* groups with entries in the open transaction */
    size_t ntouched, cap_touched;
};

struct group {
    struct group_host *h;
    char *name;
    char *hs_path;   /* an older data dir's HARDSTATE file (group__hs_load) */
    struct nls *log; /* its stream in the node log */
    const struct group_sm *sm;
    void *sm_arg;
    struct group_members mem; /* as opened: gid, self (and the caller's slots) */
    struct gslots slots;      /* driver thread: the slots now (group_set_members) */
    /* Published for other threads, under smu: the slots now and the
     * configuration of the last publish (group__publish). */
    pthread_mutex_t smu;
    struct gslots pslots;
    struct group_conf_info pconf;
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
    int act;                     /* in h->active */
    struct group *actnext;       /* h->active chain */
    uint64_t tick_at;            /* asleep: h->ticks its clock is at */
    uint32_t pend_down, pend_up; /* peer reports waiting for a ready in flight */
    int pend_wake;
    struct raft_hard_state hs_saved; /* the last term and vote handed to the node log */
    char *snap_path;
    char *dir; /* the group's directory */
    uint64_t last_compact_ns;
    _Atomic uint64_t hold;                /* compaction keeps entries after this (group_log_hold) */
    uint64_t sendfail_log_ns, sendfail_n; /* driver: refused sends, logged once a second */
    struct group *hnext, *anext;          /* bucket chain, list of all */
    /* Published by the driver for other threads. */
    _Atomic int s_role, s_lease, s_failed, s_quiet;
    _Atomic int wake_posted; /* a DEV_WAKE is on its way (group_read_index) */
    _Atomic uint32_t s_leader;
    _Atomic uint64_t s_term, s_commit, s_last, s_first, s_lease_ns;
    /* Leader: the match index of member k (raft_match, group_member_match);
     * all 0 otherwise. */
    _Atomic uint64_t s_match[RAFT_MAX_MEMBERS + 1];
    int match_term; /* driver: s_match was published as a leader's */
    /* Release bookkeeping, touched only by the applier thread. */
    uint64_t applied_lsn;   /* applier: last LSN applied (committed or not) */
    uint64_t committed_lsn; /* applier: applied LSN of the last commit */
    time_t last_release;
    int touched; /* in h->touched */
};

struct group__load_ctx {
    struct raft_entry *v;
    size_t n, cap;
    struct nerr *err;
};

/* group_files.c: the per-group files (group.h, "Compaction"). load_one
 * takes one node log record (8-byte prefix term | type << 56, then the
 * entry); NERR_CORRUPT for an unknown type or a bad CONF entry. */
int group__load_one(void *arg, uint64_t lsn, const void *data, size_t len);
/* The group's term and vote (g->log open): the node log's latest HARDSTATE
 * record (nodelog.h). A HARDSTATE file of an older data dir is carried
 * over: the later of file and log (by term; within a term, the one with a
 * vote) is written to the node log and made durable, then the file is
 * deleted (and the directory fsync'd). Zeros when neither has one. Written
 * by the driver with nls_set_hard_state (group_driver.c, drive). */
int group__hs_load(struct group *g, struct raft_hard_state *hs, struct nerr *err);
/* SNAPSHOT (snapstream.h's format). snap_meta reads its header (index 0
 * when there is none); snap_save_meta writes a metadata-only one (LMDB was
 * synced at or past index); snap_adopt takes a verified received file
 * SNAPSHOT.ready.<index> as the group's SNAPSHOT and returns it open;
 * snap_restore replaces the state machine's state with the payload of an
 * open file (mapped, never read into memory); snap_cleanup removes
 * partial and unused received files (group_open). */
int group__snap_meta(struct group *g, struct snapfile *f, struct nerr *err);
int group__snap_save_meta(struct group *g, uint64_t index, uint64_t term,
                          const struct raft_conf *conf, struct nerr *err);
int group__snap_adopt(struct group *g, uint64_t index, uint64_t term, int *fd, struct snapfile *f,
                      struct nerr *err);
int group__snap_restore(struct group *g, MDB_txn *txn, int fd, const struct snapfile *f,
                        struct nerr *err);
void group__snap_cleanup(struct group *g);
int group__refuse_old_wal(const char *dir, struct nerr *err);

/* group_driver.c: the driver thread and its queue. */
void *group__driver_main(void *arg);
void group__dev_post(struct group_host *h, struct dev *d);
void group__publish(struct group *g);
void group__queue_committed(struct group *g, const struct raft_ready *rd);

/* group_applier.c: the applier thread. */
void *group__applier_main(void *arg);

#endif
