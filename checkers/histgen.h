/*
 * histgen.h — generated histories of a simulated register store, for tests
 * and benchmarks of the checkers (`nines histgen`).
 *
 * The simulation: P client processes each run one operation at a time
 * against K keys. Every operation gets an invocation time, a completion time
 * and a linearization point strictly between them; the store's state is
 * computed by applying the operations in linearization-point order, so the
 * history is linearizable by construction. Reads are strongly consistent
 * unless drawn as eventually consistent (they then return a version no older
 * than the process's own writes and reads, possibly behind the latest).
 * Cas ops succeed when their expected value holds at their point, else fail.
 * A fraction of operations is info: the client crashed (the process id is
 * retired, as Jepsen does) or timed out; the effect happens or not, possibly
 * after the client gave up. A fraction of writes fails (rejected, no effect).
 * Values are checksummed (cval.h), unique per write. Optionally one final
 * strongly consistent read per key follows everything.
 *
 * One anomaly can be injected, chosen so that it is observable:
 *   stale-read      a strongly consistent read returns the value before a
 *                   write that had completed before the read began (and
 *                   whose value another read saw);
 *   lost-write      an acknowledged write never takes effect, and a later
 *                   read shows the value before it;
 *   phantom         a read returns a well-formed value nobody wrote;
 *   duplicate-write an old write takes effect a second time after a newer
 *                   one was read; two later reads see the old value;
 *   corrupt         a read returns a written value with a damaged checksum.
 * When no operation in the history can host the anomaly, generation fails
 * with NERR_NOTFOUND (make the history longer).
 *
 * Determinism: the same options (seed included) give the same history.
 *
 * Ownership: hg_generate returns an event list the caller frees with
 * hg_free; hg_history builds a struct history from it (caller frees with
 * history_free); hg_write_jsonl writes it to a FILE the caller owns.
 *
 * Errors: NERR_INVALID (bad options), NERR_NOTFOUND (no injection point),
 * NERR_NOMEM, NERR_IO.
 *
 * Thread-safety: no shared state; distinct calls are independent.
 */
#ifndef NINES_CHECKERS_HISTGEN_H
#define NINES_CHECKERS_HISTGEN_H

#include <stdint.h>
#include <stdio.h>

#include "checkers/history.h"
#include "lib/err.h"

enum hg_anomaly { HG_NONE, HG_STALE_READ, HG_LOST_WRITE, HG_PHANTOM, HG_DUPLICATE_WRITE, HG_CORRUPT };

struct hg_opts {
    uint64_t seed;
    uint32_t ops, keys, processes;
    double read_rate;  /* of all ops (default 0.5 when all rates are 0) */
    double cas_rate;   /* of all ops; 0 gives a plain register history */
    double info_rate;  /* ops whose outcome is unknown */
    double fail_rate;  /* writes rejected without effect */
    double ec_rate;    /* reads that are eventually consistent */
    int final_reads;   /* one strongly consistent read per key at the end */
    size_t padding;    /* extra value bytes */
    enum hg_anomaly anomaly;
};

/* What was injected: the op at fault, for test messages. */
struct hg_truth {
    enum hg_anomaly anomaly;
    int64_t process;  /* the op that shows the anomaly (a read, or the lost write) */
    int64_t t_inv;
    char key[32];
    char what[160];
};

struct hg_events;

void hg_opts_default(struct hg_opts *o);
int hg_generate(const struct hg_opts *o, struct hg_events **out, struct hg_truth *truth,
                struct nerr *e);
int hg_history(const struct hg_events *ev, struct history **out, struct nerr *e);
int hg_write_jsonl(const struct hg_events *ev, FILE *f, struct nerr *e);
size_t hg_nevents(const struct hg_events *ev);
void hg_free(struct hg_events *ev);

const char *hg_anomaly_name(enum hg_anomaly a);
int hg_anomaly_parse(const char *s, enum hg_anomaly *a);

/* `nines histgen`: writes a generated history as JSONL. */
int histgen_main(int argc, char **argv);

#endif
