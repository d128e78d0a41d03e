/*
 * placement.h — where a table's partitions live: each partition is a
 * replication group of `replicas` members (3) on nodes in distinct
 * availability zones.
 *
 * Contract. placement_compute is a pure function of its inputs (no clock, no
 * randomness beyond `salt`), so every node that computes the placement of the
 * same table from the same node list gets the same answer; the result is also
 * stored in the table's catalog entry, so a later change of the node list
 * never moves existing partitions silently.
 *
 * Guarantees, for nodes in at least `replicas` distinct AZs:
 *  1. the members of every partition are in pairwise distinct AZs;
 *  2. replicas are spread evenly: AZs are chosen least-loaded first (load =
 *     replicas already placed per node of the AZ), nodes within an AZ
 *     least-loaded first, then the rack with fewer replicas, so no node holds
 *     more than one replica above the lightest node of its AZ;
 *  3. preferred leaders (member 0) are spread evenly over the chosen nodes.
 * Fewer AZs than replicas: NERR_INVALID naming the AZs found.
 */
#ifndef NINES_PLACEMENT_H
#define NINES_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

struct placement_node {
    const char *id, *az, *rack;
};

/* Fills members[p * replicas + k] (k = 0 is the preferred leader) with node
 * indexes for partitions p = 0 .. nparts-1. salt varies the tie-breaking
 * between tables (e.g. a hash of the table id) so that small tables do not
 * all land on the same nodes. */
int placement_compute(const struct placement_node *nodes, size_t nnodes, int nparts, int replicas,
                      uint64_t salt, int *members, struct nerr *err);

/* A new member for a group that loses one: self-healing (a log or storage
 * replica in place of a suspect or dead one), `nines cluster replace` or
 * `decommission` (issue 17; docs/replication.md). members[0..nmembers) are
 * the group's node indexes and `lost` is one of them; load[i] is how many
 * replicas node i holds (every table's); usable[i] is nonzero when node i
 * may take a replica (reachable, not being decommissioned). Picks *out:
 *  1. never a node of the group, never an unusable one;
 *  2. the AZ: the lost member's, when it has a usable node (the group keeps
 *     its spread); else an AZ no other member is in; else the one with the
 *     fewest other members (two members then share an AZ: the best the
 *     cluster allows until the lost AZ has room again); ties go to the
 *     AZ whose usable nodes carry the fewest replicas per node;
 *  3. within it, the least-loaded node, then the rack with fewer replicas,
 *     then the salt's tie-breaker.
 * NERR_INVALID when lost is not a member or an index is out of range;
 * NERR_NOTFOUND (naming the group's size and the usable nodes) when no
 * usable node is outside the group. Pure, like placement_compute: every
 * node that asks gets the same answer. */
int placement_replace(const struct placement_node *nodes, size_t nnodes, const int *members,
                      size_t nmembers, int lost, const long *load, const unsigned char *usable,
                      uint64_t salt, int *out, struct nerr *err);

#endif
