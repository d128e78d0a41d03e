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
 * Stateless beyond pacing: each step is decided from what the catalog and
 * the group say now, so a leader change, a restart or a lost answer only
 * delays the step, which whoever leads then takes. A step is tried again
 * at most every HEALER_RETRY_MS per partition.
 *
 * Threads: its own; stops (healer_stop) before the catalog closes.
 */
#ifndef NINES_HEALER_H
#define NINES_HEALER_H

#include <stdint.h>

#include "lib/err.h"

#define HEALER_TICK_MS 100
#define HEALER_RETRY_MS 1000

struct catalog;
struct healer;

int healer_start(struct catalog *c, struct healer **out, struct nerr *err);
void healer_stop(struct healer *h);

struct healer_stats {
    uint64_t confs_proposed; /* step 1 taken */
    uint64_t finished;       /* step 2 taken (member_done accepted) */
    uint64_t errors;         /* steps refused or failed (tried again) */
    uint64_t in_progress;    /* partitions led here with a replacement, at the last pass */
};
void healer_stats(struct healer *h, struct healer_stats *out);

#endif
