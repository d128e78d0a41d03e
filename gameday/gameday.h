/*
 * gameday.h — `nines gameday run|plan|lint`: the game-day runner, the door
 * of gameday/ (its inside: run.h, playbook.h).
 *
 * A run (docs/gameday.md):
 *   1. loads the playbook (gameday/playbook.h) and the inventory, and resolves
 *      the plan with the seed (printed, and kept in the report);
 *   2. deploys the cluster over SSH (net/ssh.h): for every host, ninesd
 *      and a cluster file generated from the inventory (node id = host name,
 *      api/peer on the host's address) go to DATA/, an executable boot
 *      script (default DATA/../boot.d/ninesd, the lab's convention, so power
 *      on restarts it) is written, and ninesd is started; or, with
 *      `existing`, uses a running cluster's file. Then waits until every
 *      partition has a leader (NinesAdmin.Status, cluster/cluster.h);
 *   3. runs the traffic (load/load.h's load_run on a thread of its own,
 *      recording DIR/history.jsonl) and, while it runs, every step of the
 *      plan, each bounded by its timeout; a fault step goes through its
 *      kind (fault/fault.h: power_off/power_on through fault/power.h);
 *   4. stops the traffic (its final phase reads every key), and verifies:
 *      the checkers on the history (checkers/check.h), every partition with
 *      every replica of its placement healthy, every replica's applied index caught up with
 *      its leader's commit (bounded by verify.timeout);
 *   5. collects each host's DATA/ninesd.log into DIR/logs/, writes
 *      DIR/report.json and prints the summary.
 *
 * Whatever fails (a step overrunning its timeout, an SSH error, a signal
 * through opts->cancel, a stop condition), every fault kind's heal_all runs
 * before gameday_run returns (power: every host the power driver reports as
 * off is powered on again) — and also before the deploy, so that a run that
 * was killed outright is healed by the next one.
 *
 * With canaries and alarms (gameday/observe.c): a canary per AZ probes every
 * node for the whole run, the CFA engine evaluates their samples, the steady
 * state must hold before the first fault (else nothing is injected) and at
 * the end, stop conditions are checked every second while the steps run, and
 * every fault step's expect: (alarms that must fire, alarms that must stay
 * quiet, availability, p99) is judged; any that fails fails the run.
 *
 * Recovery time of a fault step (an inject step, e.g. power_off): from the
 * moment the fault was injected on its hosts to the first successful write
 * (put, cas, delete) to a partition with a replica on one of those hosts that was sent after that
 * moment, taken over the partitions affected (the slowest one); null when some affected partition
 * saw no successful write before the end of the traffic.
 *
 * Errors: NERR_INVALID (playbook, inventory, plan), NERR_IO (report
 * directory, SSH, power), NERR_TIMEOUT (deploy did not become healthy),
 * NERR_CLOSED (cancelled), NERR_NOMEM. A step or a verification that fails
 * is not an error of the call: it shows as *passed == 0 and in the report.
 *
 * Ownership: opts and its strings are borrowed for the call.
 * Thread-safety: one run per process at a time (libcurl's global init is the
 * caller's, gameday_main does it); the runner itself uses two threads (the
 * traffic and the steps).
 */
#ifndef NINES_GAMEDAY_GAMEDAY_H
#define NINES_GAMEDAY_GAMEDAY_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/err.h"

struct gd_opts {
    const char *playbook;
    const char *inventory;  /* overrides the playbook's; NULL: the playbook's */
    const char *report_dir; /* created if missing; NULL: gameday-NAME-SEED in the cwd */
    const char *ninesd;     /* overrides the playbook's; NULL: next to this program */
    uint64_t seed;
    FILE *out;                           /* the summary (stdout) */
    FILE *progress;                      /* progress lines (stderr), NULL: none */
    int progress_tty;                    /* rewrite one line in place instead of printing lines */
    const volatile sig_atomic_t *cancel; /* non-zero: stop, clean up, fail */
};

/* Runs a game day. Returns 0 when it ran to the end (then *passed says
 * whether every step and verification passed), else an error (above). */
int gameday_run(const struct gd_opts *o, int *passed, struct nerr *err);

/* `nines gameday run|plan|lint PLAYBOOK [--inventory FILE] [--seed N]
 * [--report DIR] [--ninesd PATH] [--results DSN]`, `nines gameday record DIR`
 * and `nines gameday history` (gameday/gameday_cli.c, gameday/results.h);
 * argv[0] is "gameday". `run` holds an exclusive lock per inventory for the
 * whole run and records the report in PostgreSQL when a results database is
 * named. Exit status: 0 passed / valid, 1 failed (a step, an expectation, a
 * verification, an error during the run), 2 usage, playbook or inventory
 * errors, 3 another game day holds the inventory's lock, 4 interrupted
 * (SIGINT/SIGTERM: every fault healed, the report written). */
int gameday_main(int argc, char **argv);

#endif
