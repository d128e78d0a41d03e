/*
 * playbook.h — game-day playbooks (docs/gameday.md): loading and checking
 * the YAML (lib/yamltree.h), and resolving its schedule of fault steps into a
 * concrete plan against an inventory (chaos/inventory.h) with a seed.
 *
 * A playbook names the inventory (optional; `--inventory` overrides), the
 * cluster (deploy ninesd over SSH, or an existing cluster file), the traffic
 * (`nines load`'s shape), the steps (power_off, power_on, wait_healthy,
 * sleep, repeat) and the verification at the end.
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
 * seed): it expands repeats, draws random targets with its own PRNG
 * (splitmix64 of the seed) and durations from ranges, and simulates which
 * hosts are down after every step. quorum_safe (default true) means the
 * plan never has hosts of two AZs down at once: with three replicas of every
 * partition in three distinct AZs (store/placement.h), that is what keeps
 * every partition with at most one replica down. A step the planner cannot
 * satisfy (too few candidates, names in two AZs, powering on a host that is
 * not off, a power_off `mode: crash|torn` on a lab host without labfs) is an
 * error at the step's position. Nothing is touched.
 *
 * Ownership: struct playbook owns every string and step; struct pb_plan owns
 * its steps and host index arrays; host indexes point into the inventory the
 * plan was made with, which must outlive the plan's use.
 * Thread-safety: none shared; a loaded playbook and a plan are read-only.
 */
#ifndef NINES_CHAOS_PLAYBOOK_H
#define NINES_CHAOS_PLAYBOOK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "chaos/inventory.h"
#include "chaos/power.h"
#include "lib/err.h"

#define PB_MAX_STEPS 10000     /* resolved steps of a plan */
#define PB_MAX_REPEAT 1000     /* times of one repeat */
#define PB_MAX_ERRORS 100      /* collected messages (the rest are counted) */
#define PB_NOPS 5              /* put, get, cget, cas, delete, as chaos/load.h */
#define PB_DEFAULT_API_PORT 8101
#define PB_DEFAULT_PEER_PORT 7101

enum pb_kind { PB_POWER_OFF = 1, PB_POWER_ON, PB_WAIT_HEALTHY, PB_SLEEP, PB_REPEAT };
enum pb_target { PB_TARGET_NODE = 1, PB_TARGET_RACK, PB_TARGET_AZ };

struct pb_name {
    char *s;
    int line, col;
};

struct pb_step {
    enum pb_kind kind;
    int line, col;         /* of the step's key ("power_off") */
    uint64_t timeout_ns;   /* 0: the kind's default */
    /* power_off (and power_on's names) */
    enum pb_target target;
    int by_name;           /* select: names */
    struct pb_name *names;
    size_t nnames;
    int count, percent;    /* one of them (count 1 by default) */
    uint64_t dur_min, dur_max; /* power_off: 0,0 = stays off; sleep: the pause */
    int quorum_safe;
    enum power_off_mode mode;  /* power_off: crash|torn|kill, or DEFAULT (the
                                  host's fs_mode with labfs, else kill) */
    /* repeat */
    int times;
    struct pb_step *steps;
    size_t nsteps;
};

struct pb_traffic {
    int enabled;           /* a traffic section was given */
    double rate;           /* requests/s, open loop */
    uint64_t duration_ns;  /* 0: for the whole run */
    double mix[PB_NOPS];   /* weights in chaos/load.h's op order */
    uint64_t keys;
    int zipf;              /* 0 uniform, 1 zipf */
    int per_az;            /* endpoints: one per AZ (else every node) */
    unsigned concurrency;
    unsigned timeout_ms;
    unsigned partitions;   /* of the table */
    char *table;
};

struct pb_verify {
    int checkers, replicas, caught_up;
    uint64_t timeout_ns;
};

struct playbook {
    char *path, *name;
    char *inventory;       /* absolute, or NULL */
    int inv_line, inv_col;
    /* cluster: deploy or existing */
    int deploy;
    char *ninesd;          /* absolute, or NULL: next to the nines binary */
    char **ninesd_args;
    size_t nargs;
    int api_port, peer_port;
    int partitions;        /* cluster file's default partitions */
    char *boot_script;     /* template on the host, {data} {name}: where power-on starts ninesd */
    int fresh;             /* remove {data}/store before starting */
    char *cluster_file;    /* existing: absolute path */
    struct pb_traffic traffic;
    struct pb_step *steps;
    size_t nsteps;
    struct pb_verify verify;
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
    int index;             /* 1-based */
    enum pb_kind kind;     /* never PB_REPEAT */
    int line, col;
    char label[96];        /* "round 3/10: power_off" */
    size_t *hosts;         /* inventory indexes, ascending */
    size_t nhosts;
    uint64_t hold_ns;      /* power_off: on again after; sleep: the pause */
    uint64_t timeout_ns;
    int quorum_safe;
    enum power_off_mode mode; /* power_off: passed to power_off_as */
};

struct pb_plan {
    uint64_t seed;
    struct pb_action *a;
    size_t n;
    uint64_t bound_ns;     /* sum of every step's timeout: the run's upper bound */
    uint64_t hold_ns;      /* sum of power-off holds and sleeps: a lower bound */
};

int playbook_plan(const struct playbook *pb, const struct inventory *inv, uint64_t seed,
                  struct pb_plan **out, struct nerr *err);
void pb_plan_free(struct pb_plan *p);

/* The plan as text, one line per action; the same for the same seed. */
void pb_plan_print(const struct pb_plan *p, const struct inventory *inv, FILE *f);

/* "node h3 (az3/r1)", "nodes h1,h4 (az1)" for an action's hosts. */
void pb_action_what(const struct pb_action *a, const struct inventory *inv, char *buf, size_t cap);

const char *pb_kind_name(enum pb_kind k);

/* The default timeout of a step of kind k holding hold_ns. */
uint64_t pb_default_timeout(enum pb_kind k, uint64_t hold_ns);

#endif
