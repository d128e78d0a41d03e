/*
 * healer.h — moves replacements of replicas on (catalog.h, "Membership of
 * one partition"; docs/replication.md, "Replacing a replica").
 *
 * A thread on every node. Every HEALER_TICK_MS it looks at each partition
 * this node leads whose placement records a replacement in progress
 * ({add, remove}: catalog_propose_member_add was applied) and takes the
 * next step:
 *   1. the new member's slot is known to this member (group_member_node)
 *      and the configuration in effect is the old one (committed, not
 *      joint): propose the target, the old voters without `remove` and
 *      with `add` (group_propose_conf: one joint step, then auto-leave);
 *   2. the target is in effect and committed, and the new member has
 *      caught up with it (its match index is at or past the entry that
 *      made the target): finish, the metadata entry member_done (proposed
 *      here when this node is a meta member, else sent to one,
 *      catalog_meta_call). The node left then closes its member.
 * Dead nodes. On the metadata group's leader, with healing.dead_after
 * set (the cluster file; default 5 min): every HEALER_PROBE_MS it asks
 * every other node's API (GET /, all at once); a node that has not
 * answered for dead_after (counted from when this node became the leader,
 * so a new leader waits the whole time again) has each partition replica
 * it holds replaced on another node (catalog_choose_replacement, never a
 * dead node; the metadata entry member_add, as NinesAdmin.ReplaceReplica),
 * at most HEALER_MAX_STARTS per probe (and twice as many tries: a node
 * with no room for one is tried again at the next); steps 1 and 2 then
 * run as above. A
 * node that answers again before that simply catches up; one that answers
 * after keeps nothing it held (its members left, catalog.h).
 *
 * Stateless beyond pacing: each step is decided from what the catalog and
 * the group say now, so a leader change, a restart or a lost answer only
 * delays the step, which whoever leads then takes. Step 1 may be tried
 * at every pass (the core refuses a second change while one is in
 * flight); step 2 and failed steps are tried again after HEALER_RETRY_MS.
 *
 * Threads: its own; stops (healer_stop) before the catalog closes.
 */
#ifndef NINES_HEALER_H
#define NINES_HEALER_H

#include <stdint.h>

#include "lib/err.h"

#define HEALER_TICK_MS 100
#define HEALER_RETRY_MS 1000
#define HEALER_PROBE_MS 1000
#define HEALER_PROBE_TIMEOUT_MS 800
#define HEALER_MAX_STARTS 16

struct catalog;
struct cluster_conf;
struct healer;

/* conf and self (this node's id) are borrowed until healer_stop. */
int healer_start(struct catalog *c, const struct cluster_conf *conf, const char *self,
                 struct healer **out, struct nerr *err);
void healer_stop(struct healer *h);

struct healer_stats {
    uint64_t confs_proposed; /* step 1 taken */
    uint64_t finished;       /* step 2 taken (member_done accepted) */
    uint64_t errors;         /* steps refused or failed (tried again) */
    uint64_t in_progress;    /* partitions led here with a replacement, at the last pass */
    uint64_t dead_starts;    /* replacements begun for dead nodes (member_add accepted) */
};
void healer_stats(struct healer *h, struct healer_stats *out);

#endif
