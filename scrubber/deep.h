/*
 * deep.h — `nines scrub --deep`: every replica of every partition re-reads
 * its items at rest and compares what it reads with the digest it maintains
 * (store/deepscrub.h; docs/scrub.md, "Deep scrub").
 *
 * For each partition and each replica (a unit) the scrubber starts a job on
 * the replica's node (NinesAdmin.ScrubDeep at --rate and --item-rate), one job per node at a
 * time (nodes work in parallel), and polls it (NinesAdmin.ScrubDeepStatus).
 * On a terminal a progress line goes to stderr (scanned, rate, % done, ETA);
 * a summary goes to stdout and, with --json FILE, the report
 *   {"run", "cluster", "mode": "deep", "units", "scrubbed", "resumed",
 *    "findings": [{"table","partition","replica","kind": "rot","buckets":[b..],
 *                  "items","maintained_items","lsn"}],
 *    "undecided": [{"table","partition","replica","why"}],
 *    "bytes", "seconds"}
 *
 * Checkpoint. With --resume STATE (a JSON file; created when absent) every
 * finished unit's result is saved as soon as it is known, and units already
 * in STATE are not scrubbed again (their findings are reported again). On
 * SIGINT or SIGTERM the running jobs are cancelled, STATE is saved and the
 * exit code is 2.
 *
 * Exit codes (as scrub.h): 0 every replica read back what it maintains; 1 a
 * finding; 2 something undecided (a node unreachable, a job failed, lost or
 * stalled for --timeout, an interruption) or bad usage.
 *
 * Threads: one; nothing outlives scrub_deep_main.
 */
#ifndef NINES_SCRUBBER_DEEP_H
#define NINES_SCRUBBER_DEEP_H

#define DEEP_DEFAULT_RATE_MBPS 20.0

/* argv as `nines scrub` got it (with --deep among the options). */
int scrub_deep_main(int argc, char **argv);

#endif
