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

#endif
