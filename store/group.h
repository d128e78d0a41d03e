/*
 * group.h — a replication group's slot in the node: the single path every
 * write takes between the API and the WAL, and from the WAL into LMDB.
 *
 *   API ──group_propose──> driver: raft_propose ──> WAL (group commit) ──> peers
 *                                  quorum persisted ──> committed ──> applier ──> LMDB
 *                                                                      └──> done(arg, status,
 * result)
 *
 * Every group runs the consensus core (store/raft.h), one member per node;
 * a group of one member (a one-node cluster) commits on its own fsync. The
 * host's driver thread owns every struct raft: it feeds peer messages,
 * proposals and ticks (every RAFT_TICK_MS), and processes each ready in the
 * order raft.h demands: entries, then a changed term or vote (a HARDSTATE
 * record), to the group's stream of the node log (store/nodelog.h: one WAL
 * for every group of the node, so one fdatasync makes a round of all groups
 * durable, votes included), and only once they are durable does it send
 * messages (a vote or vote request included) and queue committed entries
 * for the applier. The driver keeps its groups in gid order: the metadata
 * group (gid 1) is ticked and driven first in every round. Stream LSN =
 * raft log index; an entry is stored as an 8-byte prefix, term | type << 56
 * (u64 LE; type RAFT_ENTRY_NORMAL or RAFT_ENTRY_CONF, so a term is below
 * 2^56), followed by the entry. A log written before membership changes
 * has type 0 (NORMAL) there; an unknown type is NERR_CORRUPT at load. A
 * conflicting uncommitted suffix is cut (nls_cut, durable) before new
 * entries are written. A committed CONF entry is never given to the state
 * machine: the applier moves the applied LSN past it in its transaction.
 *
 * Compaction. Once a member's log holds compact_entries entries, the driver
 * reads LMDB's applied index S of the group (a read transaction), makes
 * LMDB durable at or past S (mdb_env_sync: the meta page is otherwise
 * synced lazily), writes a metadata-only <group_dir>/SNAPSHOT (index S, its
 * term, the configuration at S: raft_conf_at; temp + fsync + rename),
 * hands S to the core (raft_compact, no
 * payload: the log before S goes) and releases its stream up to S (node
 * log segments nobody needs go). The state at S is LMDB itself: nothing is
 * copied. A group that pins the oldest segment of a grown node log
 * compacts early (nodelog.h, invariant 3).
 *
 * Catch-up by snapshot (docs/replication.md, "Snapshots"). When the core
 * asks for a snapshot for a follower, the driver hands the snapshot thread
 * (snapstream.h) a read transaction at the applied index and the state
 * machine's database (or, without snapshot_dbi, its serialised state);
 * that thread streams it in bounded chunks. The follower's snapshot thread
 * writes, syncs and verifies the stream into SNAPSHOT.ready.<S>; only then
 * is the core told (a metadata-only snapshot message); the driver renames
 * the file to SNAPSHOT, resets the stream to S and the applier replaces the
 * state machine's state with the file's payload (mapped, not copied). On
 * restart the SNAPSHOT is the log's base; if LMDB is behind S (a crash
 * before the restored state was committed), a SNAPSHOT with a payload is
 * restored first, a metadata-only one is damage (NERR_CORRUPT).
 *
 * Invariants (1 and 2's counting are checked with NINES_ASSERT in every build;
 * the consensus core checks its own, raft.h)
 *  1. Entries of one group are applied in log order, each exactly once: the
 *     applied LSN is written in the same LMDB transaction as the entry's effects
 *     (state.h). On restart the log is loaded from the WAL and committed
 *     entries after the applied LSN are applied again once the group learns
 *     the commit index (from the leader, or at once in a one-member group).
 *  2. done() is called once per accepted proposal: status 0 after a quorum
 *     persisted the entry AND this node applied it: in the applier's open LMDB
 *     write transaction, with every item it wrote published in the host's
 *     overlay (overlay.h). Point reads consult the overlay first; range reads
 *     call group_host_barrier. Otherwise one of:
 *       NERR_BUSY    the entry is known never to commit as this proposal, so
 *                    the caller may propose it again (the router does): it
 *                    was never appended to any log (no leader, the leader
 *                    refused a forwarded proposal), it was overwritten in
 *                    this member's log, or it was forwarded to the leader of
 *                    term T and an entry of a later term committed without it
 *                    (a forwarded proposal is appended only by the leader of
 *                    the term it was sent for, so it would lie before that
 *                    entry);
 *       NERR_TIMEOUT outcome unknown: not committed within
 *                    GROUP_PROPOSAL_TIMEOUT_MS, or a snapshot installed here
 *                    may hold it;
 *       NERR_IO      outcome unknown: this member's disk failed;
 *       NERR_CLOSED  the group closed.
 *     An entry still pending when this member stops leading stays pending:
 *     it commits or is overwritten later, and done() says which.
 *     A proposal rejected synchronously (non-zero return) never gets a callback.
 *  3. A WAL or LMDB failure makes the group (WAL) or the whole host (LMDB)
 *     failed: every pending and later proposal completes with NERR_IO, and the
 *     failed member falls silent so the other members carry on without it.
 *     A failed leader first hands leadership over (raft_hand_over: its most
 *     up-to-date follower campaigns at once), so the group does not wait an
 *     election timeout for it.
 *     The node never acknowledges a write it could not make durable and never
 *     retries fsync.
 *  4. Messages are sent only after what they acknowledge is durable (raft.h,
 *     caller obligations).
 *
 * Threads. group_propose and the status getters are thread-safe. The driver
 * thread runs raft; state-machine callbacks (apply, committed) and done() of
 * applied entries run on the host's single applier thread, in log order per
 * group; done() with a failure may run on the driver thread. Callbacks must
 * not block on other groups' proposals.
 */
#ifndef NINES_GROUP_H
#define NINES_GROUP_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"
#include "store/raft.h"
#include "store/state.h"
#include "store/wal.h"

struct group_host;
struct group;

/* A replicated state machine. */
struct group_sm {
    /* Applies one committed entry within txn. op is the proposer's decoded form
     * of the entry (borrowed), or NULL for an entry this node did not propose
     * (or proposed before a restart), when apply must decode data itself. *result receives the
     * outcome handed to done() (owned by whoever receives it; may stay NULL). Per-entry outcomes
     * such as a failed condition belong in *result: a negative return means the transaction itself
     * failed (LMDB error) and is fatal for the host. Must be deterministic: same state + same entry
     * = same effects.
     * GROUP_APPLY_POISONED: the entry's bytes are not an entry this state machine can decode (a
     * poisoned entry). apply must then have changed nothing in txn and left *result NULL; err says
     * why. The applier applies it as a no-op (the applied LSN moves past it, on every replica
     * alike, so replicas stay equal and a restart does not stop at it again), logs it, counts it
     * (group_host_stats.poisoned_entries) and completes its proposal, if any, with
     * NERR_CORRUPT. Decoding must not depend on anything but the bytes and the state machine's
     * configuration, so that every replica reaches the same verdict. */
    int (*apply)(void *sm, MDB_txn *txn, uint64_t lsn, const void *data, size_t len, void *op,
                 void **result, struct nerr *err);
    /* Optional: called in the applier's write transaction, for every group
     * that applied an entry in it, just before it commits: state that apply
     * keeps in memory across the entries of one transaction is written here.
     * An error fails the transaction (as one from apply does). */
    int (*before_commit)(void *sm, MDB_txn *txn, struct nerr *err);
    /* Optional: called after the entry was applied (and committed, with
     * commit_before_done), before done(). op is NULL for an entry another
     * node proposed; data/len are then its bytes. */
    void (*committed)(void *sm, uint64_t lsn, void *op, const void *data, size_t len, void *result);
    /* Frees an apply result nobody asked for (an entry another node proposed). */
    void (*free_result)(void *result);
    /* Snapshots (log compaction and catch-up of a replica whose log was
     * compacted away): serialise the state machine's whole state as read by
     * txn into *out (malloc'd); replace the whole state with such bytes
     * within txn. Both required. */
    int (*snapshot)(void *sm, MDB_txn *txn, unsigned char **out, size_t *len, struct nerr *err);
    int (*restore)(void *sm, MDB_txn *txn, const void *data, size_t len, struct nerr *err);
    /* Optional: the state is one named database whose state_dbi_snapshot
     * payload is what snapshot would return; streams to followers then read
     * it piecewise (state_dbi_stream) instead of copying it into memory. */
    int (*snapshot_dbi)(void *sm, MDB_dbi *dbi);
    /* Commit LMDB before done() of this group's entries (see invariant 2). */
    int commit_before_done;
    /* This state machine's groups are archived (store/archiver.h): on a
     * host with group_host_hold_logs on, compaction keeps every entry
     * after the group's hold (group_log_hold), which starts at 0 (keep
     * everything) until the archiver says what it has archived. */
    int archived;
};

#define GROUP_APPLY_POISONED 1

/* A proposal not committed within this long completes with NERR_TIMEOUT
 * (outcome unknown: it may still commit later). */
#define GROUP_PROPOSAL_TIMEOUT_MS 2500

/* Longest an applied entry waits in the open transaction before a commit. */
#define GROUP_COMMIT_MAX_MS 5

typedef void (*group_done_fn)(void *arg, int status, void *result);

/* Sends one encoded consensus message to node `to` for group `gid` (the
 * node's transport); NULL in a one-node host. Any thread. */
typedef int (*group_send_fn)(void *arg, const char *to, uint64_t gid, const void *msg, size_t len);

/* Consensus timing of every group of a host. */
struct group_timing {
    uint32_t election_ticks;  /* E; 0 = 10 (100 ms). ninesd (node.c) sets 30
                                 (300 ms): its driver can stall 100-300 ms on a
                                 saturated machine (docs/replication.md,
                                 "Elections under load"); failover takes
                                 about E to 2E */
    uint32_t heartbeat_ticks; /* 0 = 2; ninesd sets 3 (30 ms) */
    uint32_t drift_ppm;       /* clock-rate bound between nodes; 0 = 50000 (5%) */
    uint64_t compact_entries; /* snapshot once the log holds this many; 0 = 50000 */
    uint64_t snapshot_rate;   /* bytes a second of snapshot streams; 0 = 100 MiB */
    /* Idle ticks before a group sleeps (raft.h, "Quiescence"); 0 = 2E,
     * GROUP_QUIESCE_NEVER = never. Asleep, a group costs nothing per tick;
     * the host's node heartbeats (one per peer node per heartbeat interval)
     * wake it when the leader's node is silent for E ticks or restarts. */
    uint32_t quiesce_ticks;
};
#define GROUP_QUIESCE_NEVER UINT32_MAX

/* Starts the node-wide machinery: the node log in log_dir (nodelog.h; wopt
 * may be NULL), the driver thread and the applier thread. send may be NULL
 * when every group has one member. timing may be NULL (defaults). */
int group_host_start(struct state *st, const char *log_dir, const struct wal_options *wopt,
                     const struct group_timing *timing, group_send_fn send, void *send_arg,
                     struct group_host **out, struct nerr *err);

/* Forgets a deleted group's log durably (nodelog_drop); it must be closed. */
int group_host_drop(struct group_host *h, const char *name, struct nerr *err);
struct nodelog_stats;
void group_host_log_stats(struct group_host *h, struct nodelog_stats *out);

/* A message from node `from` for group gid (the transport's receive path).
 * Malformed or forged messages, and messages for groups not open here, are
 * dropped and counted (group_host_stats). Any thread. */
void group_host_recv(struct group_host *h, const char *from, uint64_t gid, const void *msg,
                     size_t len);

struct group_host_stats {
    uint64_t msgs_in, msgs_out;
    uint64_t snap_streams_done, snap_streams_failed, snap_chunks_resent, snap_send_refused;
    uint64_t dropped_malformed; /* undecodable (raftwire_decode refused) */
    uint64_t dropped_forged;    /* sender is not the member it claims, or not a member */
    uint64_t dropped_unknown;   /* no such group open on this node */
    uint64_t dropped_raft;      /* refused by the consensus core (raft_step) */
    uint64_t send_failures;     /* transport refused (queue full, unknown peer) */
    uint64_t poisoned_entries;  /* committed entries applied as no-ops (GROUP_APPLY_POISONED) */
    uint64_t refused_proposals; /* forwarded proposals the validator refused (FWD_NACK) */
    uint64_t quiescent_groups;  /* members asleep right now (a gauge) */
    uint64_t active_groups;     /* members the driver ticks (a gauge, at the last tick) */
    uint64_t node_beats_in;     /* node heartbeats received */
    uint64_t peer_down_reports; /* peer nodes found silent for E ticks */
    uint64_t peer_restarts;     /* peer nodes seen with a new incarnation */
};
void group_host_stats(struct group_host *h, struct group_host_stats *out);

/* Checks a proposal another member forwarded to this node (FWD_PROPOSE)
 * before it can enter the log: gid is its group, data/len the entry the
 * state machine would apply (frame removed). Returns 0 to let it through;
 * otherwise the proposal is refused with FWD_NACK (nothing is appended),
 * logged with err's message and counted (refused_proposals). Runs on the
 * transport's receive thread: it must not block on groups. */
typedef int (*group_validate_fn)(void *arg, uint64_t gid, const void *data, size_t len,
                                 struct nerr *err);
/* Sets (fn != NULL) or clears the host's validator. After a call that
 * clears it returns, the old validator is no longer running or called.
 * Any thread. Without a validator every forwarded proposal is let through. */
void group_host_set_validator(struct group_host *h, group_validate_fn fn, void *arg);
/* Stops the applier after every queued entry was applied. All groups must be
 * closed first. */
void group_host_stop(struct group_host *h);
struct state *group_host_state(struct group_host *h);

/* The host's overlay of applied, uncommitted items (overlay.h). */
struct overlay *group_host_overlay(struct group_host *h);

/* Returns once everything applied before the call is committed to LMDB, so a
 * range read (cursor) that starts afterwards sees it. Cheap when nothing is
 * pending. NERR_IO if the host failed. */
int group_host_barrier(struct group_host *h);

/* The host a group runs on. */
struct group_host *group_host_of(struct group *g);

/* Who the members of a group are: slots. nodes[k] is the node of member
 * id k+1 (NULL: no member has that id now); self is this node's member id
 * (1..n). Member 1 is the preferred leader: it campaigns first when the
 * group starts. The slots say only WHERE each id runs; WHICH ids vote (and
 * which are log members) is the configuration, which lives in the group's
 * log (raft.h, "Membership change") and changes by group_propose_conf.
 *   conf all zero: the group never changed its membership: ids 1..n all
 *                  vote as storage members, n odd, every slot set (every
 *                  group before membership changes existed);
 *   conf given:    the configuration a member starts from when its log and
 *                  SNAPSHOT hold none (a member added by a change is opened
 *                  empty with the configuration it joins); n is the highest
 *                  id with a node, and every voter of conf has a node. */
struct group_members {
    uint64_t gid; /* the group's id on the wire, unique in the cluster */
    uint32_t n;   /* 1..RAFT_MAX_MEMBERS */
    uint32_t self;
    const char *nodes[RAFT_MAX_MEMBERS];
    struct raft_conf conf;
};

/* Opens a group: opens its stream of the node log (named `name`), takes
 * its term and vote from it (carrying over and deleting the HARDSTATE file
 * of an older data dir, group_internal.h: group__hs_load) and its SNAPSHOT
 * file from group_dir (created if missing; a directory
 * with WAL segments of an older layout is refused with NERR_CORRUPT), loads
 * the log into the consensus core and registers it with the driver.
 * Committed entries after the applied LSN recorded in LMDB are applied again
 * as the core reports them committed. name is the key of its applied LSN.
 * mem NULL = one member (this node). sm, sm_arg and mem's strings are
 * borrowed until group_close. NERR_EXISTS when gid is already open. */
int group_open(struct group_host *h, const char *name, const char *group_dir,
               const struct group_sm *sm, void *sm_arg, const struct group_members *mem,
               struct group **out, struct nerr *err);

/* Waits until every accepted proposal has completed, then closes its stream. */
void group_close(struct group *g);

/* Proposes an entry. data (copied) is what the WAL stores and replay decodes;
 * op is the decoded form, borrowed until done() runs. On the leader the entry
 * joins the driver's next batch. A member that follows a known leader frames
 * the entry with a request id and forwards it to that leader (FWD_PROPOSE,
 * raftwire.h) for the leader's current term; done() runs once this member
 * has applied the committed entry itself, or with NERR_BUSY when the leader
 * refused it (FWD_NACK) or an entry of a later term committed first
 * (invariant 2). Returns 0 (done() will run exactly once), or without
 * calling done(): NERR_BUSY when no leader is known (nothing was appended;
 * the caller may retry), NERR_LIMIT (empty or oversized entry), NERR_NOMEM,
 * NERR_CLOSED, NERR_IO (this member failed). */
int group_propose(struct group *g, const void *data, size_t len, void *op, group_done_fn done,
                  void *arg);

/* ---- the log, for the archiver (store/archiver.h) ----
 *
 * Holding. On a host where group_host_hold_logs(h, 1) was called before
 * its groups opened, a group whose state machine is `archived` compacts
 * only entries up to its hold: max(hold, 0) entries are kept from the
 * compaction point on. group_log_hold(g, upto) moves it (UINT64_MAX: no
 * hold). Compaction also waits for it when the node log asks a group to
 * compact (nodelog.h, invariant 3): the node log then grows, which the
 * archiver bounds by releasing the hold (archiver.h, max_behind). */
void group_host_hold_logs(struct group_host *h, int on);
void group_log_hold(struct group *g, uint64_t upto);

/* One committed entry, as the consensus log holds it (data: exactly the
 * bytes of the entry, a forwarded proposal's frame included). */
struct group_log_entry {
    uint64_t index, term;
    uint32_t len;
    const unsigned char *data;
};
/* Copies the committed entries first..last (last <= the commit index this
 * member knows) from the consensus log, on the driver thread, into *out
 * (one malloc'd block: the array, then the bytes; free(*out)). At most
 * max_bytes of entry data: *n may then be less than last - first + 1 (at
 * least one entry). NERR_NOTFOUND when first was compacted away (the log
 * starts after it), NERR_INVALID when last is past the commit index or
 * first > last, NERR_CLOSED, NERR_TIMEOUT (the driver did not answer in
 * 5 s). Any thread but the driver's; the caller keeps g open. */
int group_log_copy(struct group *g, uint64_t first, uint64_t last, size_t max_bytes,
                   struct group_log_entry **out, size_t *n, struct nerr *err);
/* The term of entry `index` (the compaction point's included): errors as
 * group_log_copy. */
int group_log_term(struct group *g, uint64_t index, uint64_t *term, struct nerr *err);
/* The bytes of entries first..last (without copying them): as above. */
int group_log_bytes(struct group *g, uint64_t first, uint64_t last, uint64_t *bytes,
                    struct nerr *err);

const char *group_name(const struct group *g);
uint64_t group_applied_lsn(struct group *g);
uint64_t group_last_lsn(struct group *g);

/* A snapshot of the member's consensus state (atomics the driver updates
 * after every step; may be one step old). */
struct group_status {
    enum raft_role role;
    uint32_t leader; /* member number, 0 = unknown */
    uint64_t term, commit, applied, last_index;
    uint64_t first_index; /* the log starts here (snapshot index + 1) */
    int lease;            /* leader with a valid lease, checked within the last 5 ms */
    int failed;           /* the WAL failed: this member is silent */
    int quiescent;        /* asleep (raft.h, "Quiescence"): no lease until woken */
    /* A snapshot stream in flight (snapstream.h): to (snap_sending) or from
     * member snap_peer; snap_total 0 while the sender measures it. */
    int snap_active, snap_sending;
    uint32_t snap_peer;
    uint64_t snap_index, snap_bytes, snap_total, snap_rate, snap_eta_ms;
};
void group_status(struct group *g, struct group_status *st);
/* gid and self of the group (never change). Its nodes[] are the slots as
 * opened: use group_member_node or group_members_get for the current ones. */
const struct group_members *group_members_of(const struct group *g);
/* The node of member id `id` now, copied into buf (cap bytes): 0, or
 * NERR_NOTFOUND (no such id or an empty slot). Thread-safe. */
int group_member_node(struct group *g, uint32_t id, char *buf, size_t cap);
/* The slots as this member knows them now (group_set_members changes them):
 * copied into *out, node ids into buf (cap bytes; each nodes[k] points
 * into buf). NERR_LIMIT when buf is too small. Thread-safe. */
int group_members_get(struct group *g, struct group_members *out, char *buf, size_t cap);

/* ---- membership change (raft.h, "Membership change") ----
 *
 * Replaces the slots (who runs which id) of an open group: a member about
 * to be added gets its node before the configuration that names it is
 * proposed, and a removed member's slot is cleared after the configuration
 * without it committed. mem->gid and mem->self must be the group's; mem's
 * strings are copied; mem->conf is ignored. Messages to an id without a
 * node are dropped (counted as send failures); messages from a node that
 * is not the one in the sender's slot are forged (dropped, counted).
 * Thread-safe; takes effect on the driver thread before the next round.
 * NERR_INVALID (with the reason) for a slot list that drops self or a
 * voter of the configuration in effect. */
int group_set_members(struct group *g, const struct group_members *mem, struct nerr *err);

/* On the leader: proposes the change from the configuration in effect to
 * target (raft_propose_conf: one joint entry, then auto-leave). Every id of
 * target must have a node (group_set_members first). Waits (at most 5 s)
 * for the driver's answer: 0 = the joint entry is appended (done once
 * group_conf_get shows target committed); NERR_BUSY = not the leader, no
 * entry of its term committed yet, or a change in progress (try again
 * later); NERR_INVALID (reason in err); NERR_CLOSED; NERR_TIMEOUT. */
int group_propose_conf(struct group *g, const struct raft_conf *target, struct nerr *err);

/* The configuration in effect at this member (all zero: the initial one
 * of a group that never changed: ids 1..n storage voters), the index of
 * the entry that made it (raft_conf_index) and whether that is committed.
 * May be one driver step old. Thread-safe. */
struct group_conf_info {
    struct raft_conf conf;
    uint64_t index;
    int committed;
};
void group_conf_get(struct group *g, struct group_conf_info *out);
/* On the leader: the highest index member `id` acknowledged (its match
 * index: everything up to it is in its log); 0 when unknown, or when this
 * member does not lead. Thread-safe (answered by the driver, at most 5 s;
 * 0 on timeout or close). */
uint64_t group_member_match(struct group *g, uint32_t id);

/* For a strongly consistent read on this member: 0 once this member is the
 * leader holding a valid lease and has applied everything committed when
 * the call began (waits for the applier, at most timeout_ms); NERR_BUSY
 * when it is not the leader or has no lease; NERR_TIMEOUT. */
int group_read_index(struct group *g, int timeout_ms);

#endif
