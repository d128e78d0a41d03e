/*
 * cfa.h — the customer-facing-alarm engine: samples in, alarm state changes
 * out. Pure: no clock (the caller passes `now`), no I/O, so the live
 * evaluator and `backtest` run the same code and the tests drive it by hand.
 *
 * Samples (one canary_samples row each) are filed under every rule whose
 * table and operation filters they pass, in the group named by the rule's
 * group_by labels; samples of one group with the same interval start add up
 * (several canaries, several operations).
 *
 * A window [now - w, now) counts the samples whose whole interval lies in it
 * (start >= now - w and start + interval <= now): an interval still being
 * written is never half counted.
 *
 * Conditions, evaluated per (rule, tier, group):
 *   burn rate  burn(w) = (errors(w) / attempts(w)) / (1 - objective);
 *              true when burn(long) >= factor and burn(short) >= factor;
 *              clear when either falls below factor * clear_factor;
 *              UNKNOWN when either window holds no attempts.
 *   threshold  the last `of` complete intervals; true when at least `in` of
 *              them hold >= errors errors; UNKNOWN when the newest complete
 *              interval holds no sample (silence is not "no errors").
 *   blind      true when the group's newest complete interval ended more
 *              than `after` ago (the canary went silent); never unknown.
 *
 * State machine per (rule, tier, group), hysteresis from the rule:
 *
 *     OK --true--> PENDING --true for `for`--> FIRING --clear--> CLEARING
 *      ^  <-false-   (for = 0: straight to FIRING)   ^ <--true--   |
 *      +------------------------------------ clear for `clear_for` +
 *
 *   UNKNOWN changes nothing: missing data never resolves an alarm (the
 *   blind rule reports the silence instead) and never fires one.
 *   Every state change is reported; FIRING is "firing" until the step back
 *   to OK ("resolved").
 *
 * Ownership: the engine borrows the rules until cfa_engine_free; strings in
 * a struct cfa_sample are copied; a struct cfa_event passed to a callback is
 * borrowed for the call. Thread-safety: none (one thread drives it).
 */
#ifndef NINES_CANARY_CFA_H
#define NINES_CANARY_CFA_H

#include <stddef.h>
#include <stdint.h>

#include "canary/rules.h"
#include "lib/err.h"

/* server: a server_samples row (canary_az is ignored; op is an API
 * operation name); only rules of the same source take it. */
struct cfa_sample {
    int64_t ts_ms, interval_ms;
    const char *canary_az, *endpoint, *endpoint_az, *table, *op;
    uint64_t attempts, errors;
    int server;
};

enum cfa_state { CFA_OK = 0, CFA_PENDING, CFA_FIRING, CFA_CLEARING };
const char *cfa_state_name(enum cfa_state s);

struct cfa_event {
    const struct cfa_rule *rule;
    const char *severity;
    char window[48];        /* "1h/5m", "3 of 5 x 10s", "blind 1m" */
    const char *labels[4];  /* table, endpoint_az, canary_az, endpoint: NULL when not grouped */
    const char *group_key;  /* "table=t,endpoint_az=az2" ("all" when not grouped) */
    enum cfa_state from, to;
    int64_t at_ms;          /* the evaluation time */
    int64_t since_ms;       /* when it (last) started firing */
    int64_t cond_since_ms;  /* PENDING / CLEARING: since when */
    double value;           /* burn rate (long window), errors, or seconds silent */
    double error_ratio;     /* long window; threshold: errors / attempts over `of` */
};

typedef void (*cfa_event_fn)(void *arg, const struct cfa_event *e);

struct cfa_engine;

int cfa_engine_new(const struct cfa_rules *rules, struct cfa_engine **out, struct nerr *err);
void cfa_engine_free(struct cfa_engine *e);

/* 0 or NERR_NOMEM. A sample that no rule wants is ignored. */
int cfa_engine_add(struct cfa_engine *e, const struct cfa_sample *s);

/* Evaluates every rule at now_ms; fn sees each state change. */
void cfa_engine_eval(struct cfa_engine *e, int64_t now_ms, cfa_event_fn fn, void *arg);

/* fn sees every alarm currently FIRING or CLEARING (for re-sending). */
void cfa_engine_firing(struct cfa_engine *e, int64_t now_ms, cfa_event_fn fn, void *arg);

/* Restores one alarm's state saved by an earlier evaluator (alarm_state):
 * the rule named `alarm`, its tier whose window label is `window` (cfa_event
 * .window; ignored for threshold and blind rules), the group whose labels
 * are labels[] (cfa_event order; NULL when not grouped). The group is
 * created if no sample made it yet; its condition then stays UNKNOWN (the
 * state holds) until samples arrive, as after any gap. Returns 0, or
 * NERR_NOTFOUND when the rules no longer have that alarm or tier (a rules
 * file edited meanwhile), or NERR_INVALID for a state of CFA_OK or a group
 * that does not match the rule's group_by, or NERR_NOMEM. */
int cfa_engine_restore(struct cfa_engine *e, const char *alarm, const char *window,
                       const char *const labels[4], enum cfa_state st, int64_t since_ms,
                       int64_t cond_since_ms);

/* Forgets samples that started before keep_from_ms. */
void cfa_engine_prune(struct cfa_engine *e, int64_t keep_from_ms);

/* Burn rate math, exposed for tests: errors/attempts over (1 - objective);
 * 0 when attempts is 0. */
double cfa_burn_rate(uint64_t errors, uint64_t attempts, double objective);

#endif
