/*
 * check.h — every nines checker over one history, and its verdict.
 *
 * Purpose: the C API behind `nines check`, for the game-day runner and any
 * other program that holds a history in memory. chk_run does no I/O: give it
 * a struct history (history.h: loaded from a file or built event by event)
 * and it returns a struct chk_result; report.h turns that into text, JSON
 * or HTML.
 *
 * The checks:
 *  1. Linearizability per key (lin.h) of the strongly consistent ops. When a
 *     key is not linearizable, the first op whose completion cannot be
 *     reached is named, and classified from the history around it:
 *       value out of nowhere - it read a value no write that may have taken
 *                              effect ever wrote (and that is not initial);
 *       corrupted value      - the same, and the value fails its checksum
 *                              (cval.h);
 *       lost write           - it read an older value, and the newer
 *                              acknowledged write it skipped was never read
 *                              by anyone;
 *       duplicated write     - it read an older value after the newer one had
 *                              been read, and later reads keep returning the
 *                              older value (the old write was applied again);
 *       stale read           - it read an older value, and the register came
 *                              back afterwards;
 *       not linearizable     - none of the above fits.
 *     The classification is a diagnosis for people; the verdict itself is
 *     the search's.
 *  2. Values: every ok read (of any consistency) must return the initial
 *     value or a value some non-failed write wrote to that key; a value that
 *     fails its checksum is corrupted.
 *  3. Lost writes: for each key, the final read is the last ok strongly
 *     consistent read invoked after every acknowledged write of that key had
 *     completed. An acknowledged write is lost when every write of the value
 *     that final read returned completed before it was invoked (so it should
 *     have replaced it). Keys with acknowledged writes but no final read are
 *     counted as unverified, not failed.
 *  4. Sessions, for eventually consistent reads: read-your-writes and
 *     monotonic reads per process and key, against the version order of the
 *     key's writes (the witness linearization when the key is linearizable,
 *     else completion order; a violation is only reported when the two
 *     versions' writes are ordered in real time, as concurrent writes may
 *     have taken effect in either order), and staleness: how many versions and how long
 *     the value read had been superseded when the read began.
 *
 * Verdict: invalid if any check found an anomaly (session anomalies only
 * when sessions_enforce is set), else unknown if any key's search hit a
 * bound, else valid.
 *
 * Ownership: chk_run interns the initial value into h (hence non-const) and
 * otherwise only reads it; h must outlive the result. The result is the
 * caller's (chk_result_free).
 *
 * Errors: those of lin_check (NERR_INVALID for ops outside the model,
 * NERR_NOMEM); a bound being hit is a verdict, not an error.
 *
 * Thread-safety: chk_run is reentrant (lin_check runs its own threads).
 */
#ifndef NINES_CHECKERS_CHECK_H
#define NINES_CHECKERS_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "checkers/history.h"
#include "checkers/lin.h"
#include "lib/err.h"

enum chk_verdict { CHK_VALID = 0, CHK_INVALID = 1, CHK_UNKNOWN = 2 };

enum chk_kind {
    CHK_NOT_LINEARIZABLE,
    CHK_STALE_READ,
    CHK_LOST_WRITE,
    CHK_PHANTOM, /* value out of nowhere */
    CHK_DUPLICATE_WRITE,
    CHK_CORRUPT,
    CHK_READ_YOUR_WRITES,
    CHK_MONOTONIC_READS,
    CHK_NKINDS
};

#define CHK_MAX_ANOMALIES 10000

struct chk_anomaly {
    enum chk_kind kind;
    const char *check; /* "linearizability", "values", "lost-writes", "sessions" */
    uint32_t key;
    uint32_t op;       /* the op at fault, index in h->ops */
    uint32_t related;  /* the other op involved, or HISTORY_NONE */
    char detail[240];
};

/* A distribution: count, how many were non-zero, and percentiles. */
struct chk_dist {
    uint64_t n, nonzero;
    int64_t p50, p99, max;
};

struct chk_opts {
    struct lin_opts lin;     /* lin.initial is set by chk_run from `initial` */
    const char *initial;     /* initial value's text; NULL = nil (absent) */
    size_t initial_len;
    int sessions_enforce;    /* session anomalies make the verdict invalid */
};

struct chk_result {
    enum chk_verdict verdict;
    struct lin_result *lin;
    uint32_t initial;        /* value id */
    /* The first op that cannot be linearized (earliest completion over all
     * invalid keys), its classification and the anomaly describing it. */
    uint32_t first_op, first_key;
    enum chk_kind first_kind;
    struct chk_anomaly *anomalies; /* at most CHK_MAX_ANOMALIES, in discovery order */
    size_t nanomalies;
    uint64_t counts[CHK_NKINDS];   /* every anomaly found, also past the cap */
    uint32_t invalid_keys, unknown_keys;
    /* values and lost writes */
    uint64_t reads_checked, acked_writes, verified_writes;
    uint32_t unverified_keys;
    /* sessions */
    uint64_t ec_reads, ec_unversioned;
    struct chk_dist stale_versions, stale_ns;
    double seconds;
};

int chk_run(struct history *h, const struct chk_opts *o, struct chk_result **out,
            struct nerr *e);
void chk_result_free(struct chk_result *r);

/* "stale read", "lost write", ... (for people) and "stale-read", ... (for
 * JSON and tests). */
const char *chk_kind_title(enum chk_kind k);
const char *chk_kind_name(enum chk_kind k);
const char *chk_verdict_name(enum chk_verdict v);

/* "process 3 ok read k1 = v7-...  [event 12, line 14]" into buf. */
void chk_op_describe(const struct history *h, uint32_t op, char *buf, size_t size);

#endif
