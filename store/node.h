/*
 * node.h — one ninesd node: its data directory, LMDB state, groups, catalog,
 * API and HTTP server, started and stopped as a unit.
 *
 * Data directory layout (docs/store.md):
 *   NODE         "cluster <name>\nnode <id>\n": a data directory belongs to one
 *                node of one cluster; starting another node on it is refused.
 *   state/       the LMDB environment (data.mdb, lock.mdb): every replica's
 *                items, the catalog, each group's applied LSN
 *   log/         the node log (nodelog.h): one WAL holding the Raft log of
 *                every group on the node, one stream per group
 *   groups/meta/ the metadata group's SNAPSHOT (its term and vote are in the
 *                node log; a HARDSTATE file of an older dir is carried over)
 *   groups/p.<table id>.<n>/   the same for each partition replica
 * A data directory from before December 2026 has wal/ where groups/ is now
 * (a name left from one WAL per group); node_start renames it once.
 *
 * node_stop: stops taking requests, answers those in flight, closes every
 * group (their node log streams) and the environment. A stop by SIGKILL or
 * power loss instead is recovered at the next start from the node log
 * (group.h, state.h).
 */
#ifndef NINES_NODE_H
#define NINES_NODE_H

#include "lib/err.h"
#include "proto/clusterfile.h"

struct node;

struct node_options {
    const struct cluster_conf *conf; /* borrowed until node_stop */
    const char *node_id;
    int http_threads;          /* 0 = number of CPUs */
    int unsafe_ack_before_sync; /* TEST ONLY: see wal.h */
};

int node_start(const struct node_options *opt, struct node **out, struct nerr *err);
int node_api_port(const struct node *n);
void node_stop(struct node *n);

#endif
