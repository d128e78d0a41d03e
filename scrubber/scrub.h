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
 *      majority that agrees is a finding ("different"); the differing
 *      buckets (of 256, by key) are named from the markers' bucket digests.
 * A replica that does not answer, has not applied the marker in time, or
 * keeps no digest leaves its partition undecided: never reported clean.
 *
 * Exit codes: 0 every partition compared and all replicas agree; 1 at
 * least one finding; 2 something could not be decided (a node unreachable,
 * a marker not applied in time; each named), or bad usage.
 *
 * Report: a summary on stdout and, with --json FILE,
 *   {"run": ID, "cluster": NAME, "partitions": N, "compared": N,
 *    "findings": [{"table","partition","replica","kind","lsn","buckets":[b..]}],
 *    "undecided": [{"table","partition","replica","why"}],
 *    "seconds": S}
 *
 * Threads: scrub_main runs its workers and joins them; nothing outlives it.
 */
#ifndef NINES_SCRUBBER_SCRUB_H
#define NINES_SCRUBBER_SCRUB_H

#define SCRUB_WORKERS 8

int scrub_main(int argc, char **argv);

#endif
