/*
 * scrub.h — `nines scrub`: prove that the replicas of every partition hold
 * the same data (docs/scrub.md).
 *
 * Live compare. The scrubber asks every node of the cluster file for its
 * status (NinesAdmin.Status) to learn each partition's members, then, for
 * each partition (in parallel, SCRUB_WORKERS at a time):
 *   1. ScrubMark through one reachable member: a scrub marker enters the
 *      partition's log like a write; the answer carries its log index;
 *   2. ScrubDigest of every member, polled until each has applied the
 *      marker (or the timeout): each replica's digest at exactly that index;
 *   3. the fingerprints are compared. A replica that disagrees with a
 *      majority that agrees differs at the marker; the differing buckets
 *      (of 256, by key) are named from the markers' bucket digests;
 *   4. the drill-down: per differing bucket, every replica's sub-bucket
 *      digests (ScrubKeys SubDigests), then the differing sub-buckets
 *      listed on every replica (ScrubKeys Sub), compared key by key
 *      against the majority state of each key: missing, extra, different.
 *      A key difference is kept only when it persists: a second listing
 *      after a fresh marker every replica applied shows the same replica,
 *      kind and hashes (docs/scrub.md, "Drill-down").
 * A replica that does not answer, has not applied the marker in time, or
 * keeps no digest leaves its partition undecided: never reported clean.
 *
 * Repair (--repair, never by default): each key finding is rewritten on
 * its replica with a majority replica's stored bytes (ScrubItem), through
 * the partition's log (ScrubRepair, op.h OP_REPAIR: applied by the target
 * only while it still holds what the scrubber saw); then every partition
 * is scrubbed again. Refused as a whole before any change when a key or
 * partition has no majority, a finding is not located to a key, or there
 * are more key findings than --max-repairs (default 10).
 *
 * Exit codes: 0 every partition compared and all replicas agree (with
 * --repair: after the repair); 1 at least one finding (remaining); 2
 * something could not be decided (a node unreachable, a marker not applied
 * in time; each named), a repair refused, or bad usage.
 *
 * Report: a summary on stdout and, with --json FILE (docs/scrub.md),
 *   {"run": ID, "cluster": NAME, "partitions": N, "compared": N,
 *    "findings": [{"table","partition","key","replica","kind","holds",...}],
 *    "partitions_differing": [{"table","partition","replica","lsn","items",
 *                              "majority_items","buckets"}],
 *    "undecided": [{"table","partition","replica","why"}],
 *    "keys_read": N, "keys_scanned": N, "repair"?: {...}, "seconds": S}
 *
 * Threads: scrub_main runs its workers and joins them; nothing outlives it.
 */
#ifndef NINES_SCRUBBER_SCRUB_H
#define NINES_SCRUBBER_SCRUB_H

#define SCRUB_WORKERS 8

int scrub_main(int argc, char **argv);

#endif
