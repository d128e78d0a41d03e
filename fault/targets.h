/*
 * targets.h — which hosts a fault step hits: the target spec every fault
 * kind shares (parsed from the step's YAML, checked against the inventory)
 * and the seeded, quorum-aware choice of hosts while a plan is made.
 *
 * A spec (docs/gameday.md):
 *   target: node | rack | az          the unit (default node)
 *   select: random | names | leader   (names alone mean select: names;
 *                                      leader_of alone means select: leader)
 *   names: [h1, az1/r2, r1, az3]      racks as AZ/RACK, or RACK in any AZ
 *   count: N | percent: P             random: how many units (default 1)
 *   leader_of: {table: T, partition: P}
 *                                     leader: the unit holding the leader of
 *                                     partition P (default 0) of table T
 *                                     (default: the playbook's traffic table)
 *   quorum_safe: true                 (the inject step's; default true)
 * A heal step takes only target and names (no names: every host the kind
 * holds down).
 *
 * Run-time targets. A leader is known only when the step runs: the planner
 * gives a select: leader step no hosts (the runner resolves them from the
 * cluster's status just before the inject, gameday/run.h) and the world
 * remembers that kind K holds a unit it cannot name. Under quorum_safe such
 * a step needs every host up when it runs, and nothing else may go down
 * while it is held (the unit's AZ is unknown, so no other AZ is safe); the
 * kind's heal step without names heals it, one with names is refused.
 *
 * The quorum rule. With three replicas of every partition in three distinct
 * AZs (store/placement.h), a cluster loses no quorum as long as the hosts
 * down at once are all in one AZ. quorum_safe (the default) keeps every plan
 * within that: a random pick first chooses the AZ (the one already down, if
 * any), then units in it; names in a second AZ are refused. Only
 * `quorum_safe: false` in the playbook lets a step take more.
 *
 * struct fault_world is the planner's simulation: which host is held down
 * by which kind after every step, and the seeded generator (lib/rng.h,
 * splitmix64 of the plan's seed: the same seed gives the same plan). Every
 * function is pure over it: nothing is touched.
 *
 * Errors: NERR_INVALID with a message WITHOUT a position (the planner puts
 * the step's FILE:LINE:COL in front), NERR_NOMEM.
 * Ownership: a spec owns its names; host arrays handed out are malloc'd and
 * the caller's. Thread-safety: none shared.
 */
#ifndef NINES_FAULT_TARGETS_H
#define NINES_FAULT_TARGETS_H

#include <stddef.h>
#include <stdint.h>

#include "fault/inventory.h"
#include "lib/err.h"
#include "lib/rng.h"
#include "lib/yamltree.h"

/* Where parse errors go: the playbook's collector (every error is pushed
 * and parsing goes on, so lint shows all of them). */
struct fault_errs {
    void (*push)(void *arg, const struct nerr *e);
    void *arg;
};
/* Pushes e when rc is non-zero; returns rc. */
int fault_chk(const struct fault_errs *x, int rc, const struct nerr *e);
/* Pushes "FILE:LINE:COL: message" at node at. */
void fault_errf(const struct fault_errs *x, const struct yt_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

enum fault_unit { FAULT_NODE = 1, FAULT_RACK, FAULT_AZ };

struct fault_name {
    char *s;
    int line, col;
};

struct fault_targets {
    enum fault_unit unit;
    int by_name; /* select: names */
    struct fault_name *names;
    size_t nnames;
    int count, percent; /* one of them (count 1 by default) */
    int quorum_safe;    /* default 1 */
    int by_leader;      /* select: leader (see "Run-time targets") */
    char *table;        /* leader_of.table; NULL: the traffic table */
    int partition;      /* leader_of.partition (default 0) */
};

/* "node", "rack", "az". */
const char *fault_unit_name(enum fault_unit u);

/* The keys of an inject step's spec, in the order messages list them;
 * "quorum_safe" comes separately (it is read after the kind's duration). */
extern const char *const fault_target_keys[]; /* target select names count percent leader_of */

/* Fills t from the step's map m (already checked to be a map), pushing every
 * error. heal: only target and names. quorum_safe is not read here. */
void fault_targets_parse(const struct fault_errs *x, const struct yt_node *m, int heal,
                         struct fault_targets *t);
void fault_targets_free(struct fault_targets *t);

/* Pushes "FILE:LINE:COL: UNIT 'NAME' is not in the inventory INV" for every
 * name of t that inv lacks. */
void fault_targets_check(const struct fault_targets *t, const struct inventory *inv,
                         const char *file, const struct fault_errs *x);

/* ---- planning ---- */

struct fault_world {
    const struct inventory *inv;
    struct rng rng;
    const char **azs; /* distinct AZs in inventory order */
    size_t nazs;
    unsigned char *down; /* per host: 0 up, else the holding kind's id (> 0) */
    unsigned char runtime_held; /* kind id holding a unit chosen at run time, 0 none */
};

int fault_world_init(struct fault_world *w, const struct inventory *inv, uint64_t seed);
void fault_world_free(struct fault_world *w);

/* Uniform in [0, n) from the world's generator (0 when n is 0). */
uint64_t fault_world_below(struct fault_world *w, uint64_t n);

/* The hosts an inject step hits now, ascending in *hosts (malloc'd). Names:
 * every unit named, refusing one that is already (partly) down; random:
 * count or percent of the units entirely up. Both under the quorum rule when
 * t->quorum_safe. Leader: no hosts (*n = 0, chosen at run time), refused
 * under quorum_safe while anything is down. The world is not changed
 * (fault_world_hold / fault_world_hold_runtime do). */
int fault_targets_pick(struct fault_world *w, const struct fault_targets *t, size_t **hosts,
                       size_t *n, struct nerr *err);

/* Marks hosts as held down by kind id (0: up again). */
void fault_world_hold(struct fault_world *w, const size_t *hosts, size_t n, unsigned char id);
/* Kind id holds a unit chosen at run time (select: leader). */
void fault_world_hold_runtime(struct fault_world *w, unsigned char id);

/* The hosts a heal step of kind id brings back, ascending: without names,
 * every host id holds down, and *runtime = 1 when id also holds a unit
 * chosen at run time (the runner adds its hosts); with names, each named
 * unit's hosts, refusing a host id does not hold, and refusing names while
 * id holds a run-time unit. Marks them up. */
int fault_targets_heal(struct fault_world *w, const struct fault_targets *t, unsigned char id,
                       size_t **hosts, size_t *n, int *runtime, struct nerr *err);

#endif
