/*
 * fault.h — the door of fault/: the fault interface every fault kind
 * implements, and the registry of kinds (Jepsen's nemesis packages,
 * docs/architecture.md, "Faults").
 *
 * A fault kind is one file, fault/<kind>.c, that fills a struct fault_kind
 * and adds one line to fault/registry.c. The game-day playbook and runner
 * (gameday/) know faults only through this table: a playbook step whose key
 * is a kind's inject_step ("power_off") or heal_step ("power_on") becomes a
 * step of that kind; the planner picks its hosts with the shared target spec
 * (fault/targets.h); the runner calls inject, heal after the step's
 * duration, heal for a heal step, and heal_all of every kind at the end
 * whatever happened. Power (fault/power.c) is the first kind.
 *
 * The life of one inject step:
 *   parse     the step's YAML map -> the kind's opaque params (errors at
 *             FILE:LINE:COL, collected, never stopping at the first);
 *   plan      the planner picks hosts (targets.h, seeded, quorum-aware);
 *             the kind's check refuses what it cannot do on those hosts;
 *   inject    at the step's time, on those hosts;
 *   heal      after the step's drawn duration (none: held until a heal
 *             step of the kind, or the end of the run);
 *   heal_all  at the end of every run, from the kind's own view of the
 *             machines (not from the plan: a run may stop half-way);
 *   report    label (one word for what the fault did, e.g. "crash").
 *
 * Contract for kinds: parse and check are pure (nothing touched). inject,
 * heal and heal_all act on hosts only through the kind's own drivers, each
 * bounded in time, and must refuse this machine (as the power drivers do,
 * fault/power.h SAFETY). heal_all must be safe to call when nothing was
 * injected. env->host_changed is called for every host whose processes a
 * fault restarted, so that the runner drops its cached connections.
 *
 * Ownership: params belong to the kind (free_params); the plan borrows them
 * from the playbook, which must outlive the plan. state (open/close) belongs
 * to the kind for one run. Thread-safety: a kind's functions are called
 * from the runner's step thread only.
 */
#ifndef NINES_FAULT_FAULT_H
#define NINES_FAULT_FAULT_H

#include <stddef.h>
#include <stdint.h>

#include "fault/inventory.h"
#include "fault/targets.h"
#include "lib/err.h"
#include "lib/yamltree.h"

/* What the runner lends the kinds for a run. */
struct fault_env {
    const struct inventory *inv;
    /* A progress line (may be NULL). */
    void (*note)(void *arg, const char *msg);
    /* h's processes were stopped or restarted (may be NULL). */
    void (*host_changed)(void *arg, const struct inv_host *h);
    /* The cluster's table catalog as JSON text ({"tables": [description,
     * ...]}, what NinesAdmin.Catalog answers; malloc'd, the caller frees),
     * from any node that answers; NULL when there is none or no runner to
     * ask (the hook itself may be NULL). For kinds that must name data on
     * a node that keeps no catalog of its own (bit_rot). */
    char *(*catalog)(void *arg);
    void *arg;
};

/* One planned step as a kind sees it. */
struct fault_call {
    const size_t *hosts; /* inventory indexes, ascending */
    size_t nhosts;
    const void *params; /* the inject step's params; NULL for a heal step */
};

struct fault_kind {
    const char *name;        /* "power" */
    const char *inject_step; /* the step key: "power_off" */
    const char *heal_step;   /* "power_on", or NULL: healed only by duration or heal_all */
    const char *held_until;  /* plan text for no duration: "until powered on" */
    /* The inject step's own keys (NULL-terminated; NULL: none), beside the
     * shared target, select, names, count, percent, duration, quorum_safe,
     * timeout. */
    const char *const *keys;
    /* Default step timeouts: inject's is added to the drawn duration. */
    uint64_t inject_timeout_ns, heal_timeout_ns;
    /* 1: the inject is over when it returns (bit_rot: the node runs again,
     * its data changed); the planner does not hold its hosts afterwards. */
    int instant;
    /* 1: the fault changes data at rest; a playbook that injects it must end
     * with a deep scrub (verify: {scrub: deep}), which must find exactly
     * what it changed (gameday/verify.c). */
    int at_rest;

    /* Reads the kind's keys of the inject step's map m (already checked to be
     * a map with known keys), pushing every error to x; *params may stay
     * NULL. NERR_NOMEM only: schema errors go to x. */
    int (*parse)(const struct fault_errs *x, const struct yt_node *m, void **params);
    void (*free_params)(void *params);
    /* Refuses (NERR_INVALID, a message without position) an inject step the
     * kind cannot do on these hosts. May be NULL. */
    int (*check)(const struct inventory *inv, const struct fault_call *c, struct nerr *err);
    /* Plan text after the hosts and the duration (" (mode torn)"), "" for
     * none. */
    void (*describe)(const void *params, char *buf, size_t cap);
    /* The report's one word for what the inject did to host h ("crash",
     * "kill", "power"); NULL when the kind has none. */
    const char *(*label)(const struct inv_host *h, const void *params);

    int (*open)(const struct fault_env *env, void **state, struct nerr *err);
    void (*close)(void *state);
    int (*inject)(void *state, const struct fault_env *env, const struct fault_call *c,
                  struct nerr *err);
    int (*heal)(void *state, const struct fault_env *env, const struct fault_call *c,
                struct nerr *err);
    void (*heal_all)(void *state, const struct fault_env *env);
};

/* A progress line through env->note (nothing when it is NULL), formatted;
 * at most NERR_MSG_MAX + 256 bytes. */
void fault_notef(const struct fault_env *env, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The registry, NULL-terminated, in a fixed order (the runner heals in
 * reverse). A kind's id is its index + 1 (fault_world's down[] marks). */
extern const struct fault_kind *const fault_kinds[];
size_t fault_kind_count(void);
unsigned char fault_kind_id(const struct fault_kind *k);

/* The kind with inject_step (*heal = 0) or heal_step (*heal = 1) named
 * step, or NULL. */
const struct fault_kind *fault_kind_for_step(const char *step, int *heal);

/* Writes the step keys of every kind ("power_off", "power_on", ...) and
 * then the extra ones (NULL-terminated) into out, NULL-terminated, at most
 * cap entries with the NULL; returns how many keys. */
size_t fault_step_keys(const char **out, size_t cap, const char *const *extra);

#endif
