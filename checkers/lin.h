/*
 * lin.h — linearizability of a register history, key by key.
 *
 * Purpose: decide whether the strongly consistent operations on each key of
 * a history can be ordered into a sequential register history that respects
 * real time (Herlihy & Wing). The search is Wing & Gong's, as improved by
 * Lowe ("Testing for linearizability", 2017): a depth-first walk over the
 * history's call/return entries that lifts an operation out when the model
 * accepts it, backtracks at a return it cannot pass, and remembers every
 * (linearized set, state) configuration it has explored, so that none is
 * explored twice. The set is a bitset; the cache is an open-addressing hash
 * table keyed by a Zobrist hash of the set and the state.
 *
 * Keys are independent (P-compositionality, Horn & Kroening 2015), so each
 * key is its own search and the keys are spread over threads.
 *
 * Which operations take part: ok reads that are strongly consistent and
 * whose value is known; ok and info writes, deletes and cas. Failed ops took
 * no effect and are left out. An info op may take effect at any point after
 * its invocation, or never. Two reductions keep the search small without
 * changing the verdict: a read that matches the current state is linearized
 * at once and never reconsidered (moving a read earlier inside its own
 * interval cannot hurt), values that no op ever reads are one state (no op can
 * tell them apart), and an info write or cas whose value nobody ever
 * observes is left out (dropping it from any linearization keeps it valid).
 *
 * Verdict per key: valid, invalid (with the first operation whose completion
 * no configuration can reach, the operations concurrent with it come from
 * the history, and the states that were possible just before it), or
 * unknown when the time or memory bound was hit (with the window of events
 * the search could not resolve). The whole result is invalid if any key is,
 * else unknown if any key is, else valid.
 *
 * Bounds: time_limit is wall-clock seconds for the whole check; when it
 * passes, keys still searching and keys not started yet are unknown.
 * memory_limit caps the bytes all searches' caches and stacks hold together;
 * a key that would exceed it is abandoned (unknown, its memory freed), and the
 * other keys go on. Memory for the history itself is the caller's.
 *
 * Ownership: lin_check only reads h (which must outlive the result, since
 * results name ops by index); the result belongs to the caller
 * (lin_result_free).
 *
 * Errors: NERR_INVALID when an op does not belong to the model (a cas in a
 * plain register history, an append), NERR_NOMEM when even the bookkeeping
 * cannot be allocated, NERR_INTERNAL if a thread cannot start. Running out of
 * the memory budget is not an error but an unknown verdict.
 *
 * Thread-safety: lin_check is reentrant; it starts and joins its own
 * threads (opts.threads, 0 = online CPUs) and returns after all have ended.
 */
#ifndef NINES_CHECKERS_LIN_H
#define NINES_CHECKERS_LIN_H

#include <stddef.h>
#include <stdint.h>

#include "checkers/history.h"
#include "lib/err.h"

enum lin_model { LIN_AUTO, LIN_REGISTER, LIN_CAS_REGISTER, LIN_KV };
enum lin_verdict { LIN_VALID = 0, LIN_INVALID = 1, LIN_UNKNOWN = 2 };

#define LIN_MAX_STATES 16
/* A state in lin_key.states standing for "a value nobody ever reads": all
 * such values behave alike, so the search keeps them as one state. */
#define LIN_DEAD (UINT32_MAX - 1)

struct lin_opts {
    enum lin_model model; /* LIN_AUTO: kv if deletes, cas-register if cas, else register */
    uint32_t initial;     /* value id of the initial state (HISTORY_NIL: absent) */
    double time_limit;    /* seconds, 0 = unbounded */
    size_t memory_limit;  /* bytes, 0 = unbounded */
    int threads;          /* 0 = online CPUs */
};

struct lin_key {
    enum lin_verdict verdict;
    uint32_t nops;      /* ops searched, after the reductions */
    uint64_t configs;   /* configurations explored */
    double seconds;
    /* LIN_INVALID: */
    uint32_t culprit;   /* index in h->ops of the op that cannot be linearized */
    uint32_t nstates;   /* possible states just before it (value ids) */
    uint32_t states[LIN_MAX_STATES];
    int states_truncated;
    /* LIN_UNKNOWN: */
    const char *reason; /* "time limit" or "memory limit" */
    uint32_t window_lo, window_hi; /* event indices of the unresolved window */
    /* LIN_VALID: the writes, deletes and cas in a witness linearization order
     * (indices in h->ops); NULL when the key has none. */
    uint32_t *order;
    uint32_t norder;
};

struct lin_result {
    enum lin_verdict verdict;
    enum lin_model model; /* the model used (resolved from LIN_AUTO) */
    uint32_t nkeys;
    struct lin_key *keys; /* indexed by key id */
    uint64_t configs;
    double seconds;
    size_t peak_memory;   /* bytes of search memory at the high-water mark */
    int threads;
};

int lin_check(const struct history *h, const struct lin_opts *o, struct lin_result **out,
              struct nerr *e);
void lin_result_free(struct lin_result *r);

const char *lin_model_name(enum lin_model m);
/* "register", "cas-register", "kv" or "auto"; -1 when unknown. */
int lin_model_parse(const char *s, enum lin_model *m);
const char *lin_verdict_name(enum lin_verdict v);

#endif
