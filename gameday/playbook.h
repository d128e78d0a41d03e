/*
 * playbook.h — game-day playbooks (docs/gameday.md): loading and checking
 * the YAML (lib/yamltree.h, gameday/playbook.c), and resolving its schedule
 * of fault steps into a concrete plan against an inventory
 * (fault/inventory.h) with a seed (gameday/plan.c).
 *
 * A playbook names the inventory (optional; `--inventory` overrides), the
 * cluster (deploy ninesd over SSH, or an existing cluster file), the traffic
 * (`nines load`'s shape), the steps and the verification at the end. A step
 * is a fault step of a kind in fault/fault.h's registry (its inject step,
 * e.g. power_off, or its heal step, e.g. power_on), or one of the runner's
 * own: wait_healthy, sleep, repeat. This file names no fault kind.
 *
 * Errors are COLLECTED, not stopped at: playbook_load checks every key it
 * can and every step, and gives back every "FILE:LINE:COL: message" in
 * struct pb_errors, so `nines gameday lint` shows them all at once. The
 * return code is that of the first error (NERR_IO, NERR_PARSE, NERR_LIMIT
 * from the YAML loader; NERR_INVALID for the schema), its message in err.
 * With an inventory, names (hosts, racks, AZs) are checked against it at the
 * name's position.
 *
 * Planning (playbook_plan) is a pure function of (playbook, inventory,
 * seed): it expands repeats, draws random targets (fault/targets.h,
 * splitmix64 of the seed) and durations from ranges, and simulates which
 * hosts each fault kind holds down after every step. quorum_safe (default
 * true) means the plan never has hosts of two AZs down at once (the quorum
 * rule in fault/targets.h). A step the planner cannot satisfy (too few
 * candidates, names in two AZs, healing a host the kind does not hold, what
 * the kind's check refuses, e.g. a power_off `mode: crash|torn` on a lab
 * host without labfs) is an error at the step's position. Nothing is
 * touched.
 *
 * Ownership: struct playbook owns every string and step, and each fault
 * step's params (freed by its kind); struct pb_plan owns its actions and
 * host index arrays and borrows the steps' params, so the playbook must
 * outlive the plan; host indexes point into the inventory the plan was made
 * with, which must outlive the plan's use.
 * Thread-safety: none shared; a loaded playbook and a plan are read-only.
 */
#ifndef NINES_GAMEDAY_PLAYBOOK_H
#define NINES_GAMEDAY_PLAYBOOK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "fault/fault.h"
#include "fault/inventory.h"
#include "lib/err.h"

#define PB_MAX_STEPS 10000 /* resolved steps of a plan */
#define PB_MAX_REPEAT 1000 /* times of one repeat */
#define PB_MAX_ERRORS 100  /* collected messages (the rest are counted) */
#define PB_NOPS 5          /* put, get, cget, cas, delete, as load/load.h */
#define PB_DEFAULT_API_PORT 8101
#define PB_DEFAULT_PEER_PORT 7101

/* PB_INJECT and PB_HEAL are a fault kind's steps (pb_step.fault); the
 * others are the runner's own. */
enum pb_kind { PB_INJECT = 1, PB_HEAL, PB_WAIT_HEALTHY, PB_SLEEP, PB_REPEAT };

struct pb_step {
    enum pb_kind kind;
    const struct fault_kind *fault; /* PB_INJECT, PB_HEAL */
    int line, col;                  /* of the step's key ("power_off") */
    uint64_t timeout_ns;            /* 0: the kind's default */
    struct fault_targets targets;   /* PB_INJECT; PB_HEAL: unit and names */
    uint64_t dur_min, dur_max;      /* inject: 0,0 = held until healed; sleep: the pause */
    void *params;                   /* PB_INJECT: the kind's, freed by fault->free_params */
    struct pb_expect *expect;       /* PB_INJECT: its `expect:`, or NULL */
    /* repeat */
    int times;
    struct pb_step *steps;
    size_t nsteps;
};

struct pb_traffic {
    int enabled;          /* a traffic section was given */
    double rate;          /* requests/s, open loop */
    uint64_t duration_ns; /* 0: for the whole run */
    double mix[PB_NOPS];  /* weights in load/load.h's op order */
    uint64_t keys;
    int zipf;   /* 0 uniform, 1 zipf */
    int per_az; /* endpoints: one per AZ (else every node) */
    unsigned concurrency;
    unsigned timeout_ms;
    unsigned partitions; /* of the table */
    char *table;
};

struct pb_verify {
    int checkers, replicas, caught_up, scrub;
    int scrub_deep; /* scrub: deep (every replica re-reads its items, docs/scrub.md) */
    uint64_t timeout_ns;
};

/* ---- what the customers see: canaries, alarms, expectations ----
 *
 * canaries: one in-process canary (canary/canary.h) per AZ of the inventory,
 * each probing every node's API, for the whole run. Their per-interval
 * samples feed the alarm engine directly (and PostgreSQL when `postgres`
 * names a database). */
struct pb_canaries {
    int enabled;
    double rate;          /* probes/s per endpoint per canary (default 2) */
    uint64_t interval_ns; /* aggregation interval (default 1 s) */
    uint64_t timeout_ns;  /* per attempt (default 1 s) */
    char *table;          /* default nines_canary */
    char *postgres;       /* a DSN; NULL: a private PostgreSQL the run starts (privpg.c) */
    int no_postgres;      /* postgres: none */
    char *metrics;        /* "HOST:PORT": AZ i's /metrics on PORT+i; NULL: none */
};

/* alarms: the CFA rules file (canary/rules.h) the run evaluates every
 * `evaluate_every` of the rules over the canaries' samples. */
struct pb_alarms {
    int enabled;
    char *rules;        /* absolute path */
    char *alertmanager; /* overrides the rules' alertmanager; NULL: the rules' */
    int line, col;
};

/* Matches an alarm state change (canary/cfa.h's cfa_event): the alarm's
 * name (NULL: any) and labels in cfa_event order (table, endpoint_az,
 * canary_az, endpoint; NULL: any). A label value may be a template naming
 * the step's targets — {{target.az}}, {{target.rack}}, {{target.host}} —
 * which matches when the value is one of the targets' (several hosts:
 * any); "!" in front negates ("!{{target.az}}": any AZ but the targets'). */
#define PB_NLABELS 4
struct pb_alarm_match {
    char *alarm;
    char *label[PB_NLABELS];
    int neg[PB_NLABELS];
    uint64_t within_ns; /* fires: from the inject (default 30 s) */
    int line, col;
};

enum pb_scope { PB_SCOPE_ALL = 0, PB_SCOPE_UNAFFECTED, PB_SCOPE_AFFECTED };
/* Where availability is measured: the canaries when the playbook has them,
 * else the traffic; both by the AZ of the node a request went to. */
enum pb_source { PB_SRC_DEFAULT = 0, PB_SRC_CANARIES, PB_SRC_TRAFFIC };

/* A fault step's `expect:`. Judged over the step's window: from the inject
 * to the step's end (the heal), plus `quiet_after` for quiet. */
struct pb_expect {
    struct pb_alarm_match *fires, *quiet;
    size_t nfires, nquiet;
    uint64_t quiet_after_ns; /* default 30 s: alarms lag their cause */
    double avail_min;        /* percent; < 0: none */
    enum pb_scope avail_scope;
    enum pb_source avail_source;
    uint64_t p99_max_ns; /* 0: none; from the traffic */
    enum pb_scope p99_scope;
    /* leader_moves: the partition a select: leader step targets has a
     * leader on a host the step did not hit within this long; 0: none. */
    uint64_t leader_moves_ns;
    int line, col;
};

/* A steady-state probe (before the first fault and at the end) or a stop
 * condition (evaluated every second while the steps run). */
enum pb_probe_kind { PB_PROBE_AVAIL = 1, PB_PROBE_P99, PB_PROBE_NO_ALARM, PB_PROBE_OUTSIDE_PLAN };
struct pb_probe {
    enum pb_probe_kind kind;
    double min;           /* AVAIL: percent, every AZ */
    uint64_t max_ns;      /* P99 */
    uint64_t over_ns;     /* AVAIL, P99: the last `over` (default 10 s) */
    enum pb_source source; /* AVAIL */
    enum pb_scope scope;   /* AVAIL: stop conditions default to unaffected (the AZs the
                              running step does not fault), steady state to all */
    struct pb_alarm_match match; /* NO_ALARM: which alarms (alarm NULL: any) */
    uint64_t timeout_ns; /* steady state at the end: how long it may take to hold again (90 s) */
    int line, col;
};

struct playbook {
    char *path, *name;
    char *inventory; /* absolute, or NULL */
    int inv_line, inv_col;
    /* cluster: deploy or existing */
    int deploy;
    char *ninesd; /* absolute, or NULL: next to the nines binary */
    char **ninesd_args;
    size_t nargs;
    int api_port, peer_port;
    int partitions;     /* cluster file's default partitions */
    char *boot_script;  /* template on the host, {data} {name}: where power-on starts ninesd */
    int fresh;          /* remove {data}/store before starting */
    char *cluster_file; /* existing: absolute path */
    struct pb_traffic traffic;
    struct pb_step *steps;
    size_t nsteps;
    struct pb_verify verify;
    struct pb_canaries canaries;
    struct pb_alarms alarms;
    struct pb_probe *steady, *stops; /* steady_state, stop_conditions */
    size_t nsteady, nstops;
};

struct pb_errors {
    char **msg;
    size_t n, dropped;
};
void pb_errors_free(struct pb_errors *e);

/* Loads path (or text, when text is not NULL: len bytes named path) and
 * checks it; inv (may be NULL) checks names. *out is set only when there
 * was no error. errs (may be NULL) collects every message. */
int playbook_load(const char *path, const char *text, size_t len, const struct inventory *inv,
                  struct playbook **out, struct pb_errors *errs, struct nerr *err);
void playbook_free(struct playbook *pb);

/* Checks names of pb against inv, collecting into errs (used when the
 * inventory comes from the playbook itself, known only after loading). */
int playbook_check_inventory(const struct playbook *pb, const struct inventory *inv,
                             struct pb_errors *errs, struct nerr *err);

/* ---- plans ---- */

struct pb_action {
    int index;                      /* 1-based */
    enum pb_kind kind;              /* never PB_REPEAT */
    const struct fault_kind *fault; /* PB_INJECT, PB_HEAL */
    int line, col;
    char label[96]; /* "round 3/10: power_off" */
    size_t *hosts;  /* inventory indexes, ascending */
    size_t nhosts;
    uint64_t hold_ns; /* inject: healed after; sleep: the pause */
    uint64_t timeout_ns;
    int quorum_safe;
    const void *params; /* PB_INJECT: the step's, borrowed from the playbook */
    const struct pb_expect *expect; /* PB_INJECT: borrowed from the playbook, or NULL */
    /* Run-time targets (fault/targets.h): an inject with select: leader has
     * no hosts in the plan; `runtime` (borrowed from the playbook) says
     * whose leader, and the runner fills hosts just before the inject. A
     * heal step that heals such a fault names the inject (1-based index in
     * heals_runtime) and the runner adds that inject's hosts to its own. */
    const struct fault_targets *runtime;
    int heals_runtime;
};

struct pb_plan {
    uint64_t seed;
    struct pb_action *a;
    size_t n;
    uint64_t bound_ns; /* sum of every step's timeout: the run's upper bound */
    uint64_t hold_ns;  /* sum of fault holds and sleeps: a lower bound */
};

int playbook_plan(const struct playbook *pb, const struct inventory *inv, uint64_t seed,
                  struct pb_plan **out, struct nerr *err);
void pb_plan_free(struct pb_plan *p);

/* The plan as text, one line per action; the same for the same seed. */
void pb_plan_print(const struct pb_plan *p, const struct inventory *inv, FILE *f);

/* "node h3 (az3/r1)", "nodes h1,h4 (az1)" for an action's hosts. */
void pb_action_what(const struct pb_action *a, const struct inventory *inv, char *buf, size_t cap);

/* The step's key: the fault kind's inject or heal step ("power_off"), or
 * "wait_healthy", "sleep", "repeat". fault is NULL for the runner's own. */
const char *pb_step_name(enum pb_kind k, const struct fault_kind *fault);

/* The default timeout of a step holding hold_ns. */
uint64_t pb_default_timeout(enum pb_kind k, const struct fault_kind *fault, uint64_t hold_ns);

/* The fault call of a fault action (PB_INJECT, PB_HEAL). */
struct fault_call pb_action_call(const struct pb_action *a);

#endif
