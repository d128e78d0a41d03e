/*
 * load.h — `nines load`, the project's one traffic generator: PutItem and
 * GetItem against one or more DynamoDB-compatible endpoints (JSON 1.0 over
 * HTTP/1.1 keep-alive, libcurl multi, one thread), optionally SigV4-signed.
 *
 This header is the door of load/; the pieces are kept apart, one file each:
 *
 *   options     (struct load_opts)  opts.c: defaults, parsing and the usage
 *                                   text, from one table of options.
 *   generation  (struct load_gen)   gen.c: which operation on which key, and
 *                                   its JSON body; deterministic from --seed.
 *   issuing     (load_run)          issue.c: connections, schedule, timeouts,
 *                                   signing, --create, the final phase;
 *                                   reports every completed request through
 *                                   struct load_hooks.
 *   accounting  (struct load_stats) stats.c: counts, errors by type, latency
 *                                   histograms per operation kind; printing.
 *   etcd target                     etcd.c: its bodies, errors and refusals.
 *   `nines load`                    load_cli.c.
 * The history file is written through checkers/history_write.h (the
 * checkers own the format).
 *
 * Two schedules:
 *   closed loop (no --rate): each of --concurrency connections sends its next
 *     request as soon as the previous one completes; latency is measured from
 *     the moment the request is sent.
 *   open loop (--rate R): request i is due at start + i/R whatever happens to
 *     earlier requests; it is sent on the first free connection, and its
 *     latency is measured from its due ("intended") time, so a stall shows up
 *     as latency rather than as missing samples (no coordinated omission).
 *     Requests still unsent when the run is over are counted as "unsent"
 *     errors, never silently dropped.
 *
 * Every request carries a timeout (--timeout), and the run as a whole is
 * bounded by --duration (at most LOAD_MAX_DURATION_S) plus --warmup plus one
 * timeout for draining, so a dead endpoint can never make it hang.
 *
 * Stopping early: a caller that runs load_run on a thread of its own (the
 * game-day runner) passes a struct load_stop in its hooks and calls
 * load_stop() from any thread. The run then stops issuing requests, ends
 * the measured period at that moment, drains what is in flight and runs
 * the final read phase, exactly as if --duration had ended then. It notices
 * the request within about 100 ms (its longest poll).
 *
 * Operations: put (PutItem), get (GetItem, eventually consistent), cget
 * (GetItem with ConsistentRead), cas (PutItem conditional on the value the
 * generator last saw for the key: `#v = :expected`, or
 * `attribute_not_exists(pk)` when it saw none) and delete (DeleteItem).
 * Every written value is a checksummed value (checkers/cval.h) whose number
 * n = writer * 10^12 + the request's seq, so values are unique per writer.
 *
 * History (--history FILE): every request is recorded as an invoke event
 * when it is handed to curl and an ok / fail / info event when it completes,
 * in docs/history.md's JSONL (process = connection index, time = monotonic
 * ns). fail means certain failure (HTTP 4xx); info means unknown (timeout,
 * transport error, 5xx). After the timed run a final phase reads every key
 * that any write, cas or delete was sent to with ConsistentRead (at most
 * three attempts per key, bounded by --final-timeout), so the checkers can
 * find lost writes. The file is written through a large stdio buffer and
 * flushed at the end; a write error makes load_run fail with NERR_IO.
 *
 * Targets (--target): dynamodb (the default, everything above) or etcd, so
 * that the same load shape can be compared with etcd 3.4 through its v3 JSON
 * gateway: put is POST /v3/kv/put {"key","value"} (base64), get is POST
 * /v3/kv/range {"key","serializable":true} (any member answers from its own
 * state), cget the same without "serializable" (linearizable, through the
 * leader). Keys and values are exactly those of the dynamodb target
 * ("k<key>", the checksummed value of --value-size bytes). The etcd target
 * does put, get and cget only, and refuses --create, --partitions,
 * --history and signing.
 *
 * Ownership: struct load_opts owns its endpoint strings (load_opts_free).
 * load_run borrows opts, stats and hooks for the call only.
 * Errors: load_opts_parse returns NERR_INVALID with a message naming the
 * option; load_run returns NERR_INVALID, NERR_NOMEM or NERR_IO (curl could not
 * be set up, --create failed). Request failures are not errors of load_run:
 * they are counted in the stats.
 * Thread-safety: everything runs on the calling thread, except load_stop,
 * which any thread may call. libcurl's global init happens in load_main,
 * before any thread exists (a caller that runs load_run elsewhere does it).
 */
#ifndef NINES_LOAD_LOAD_H
#define NINES_LOAD_LOAD_H

#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>

#include "lib/err.h"
#include "lib/hist.h"
#include "lib/rng.h"

#define LOAD_MAX_DURATION_S 3600.0
#define LOAD_MAX_ERROR_TYPES 32

enum load_op { LOAD_PUT = 0, LOAD_GET = 1, LOAD_CGET, LOAD_CAS, LOAD_DELETE, LOAD_NOPS };
/* WEIGHTS: --mix, each op drawn with probability weight[op] / sum. */
enum load_mix { LOAD_MIX_PUT, LOAD_MIX_GET, LOAD_MIX_BOTH, LOAD_MIX_WEIGHTS };
enum load_dist { LOAD_DIST_UNIFORM, LOAD_DIST_ZIPF };
enum load_target { LOAD_TARGET_DYNAMODB = 0, LOAD_TARGET_ETCD = 1 };

/* Key spaces of runs that keep per-key state (cas in the mix, --history). */
#define LOAD_MAX_TRACKED_KEYS 10000000u
/* --value-size bound with --history: a read's whole response must fit the
 * response buffer, or its value could not be recorded. */
#define LOAD_MAX_HISTORY_VALUE 2048u
#define LOAD_VALUE_WRITER_MULT UINT64_C(1000000000000)

struct load_opts {
    enum load_target target;
    char **endpoints; /* "http://host:port", owned */
    size_t nendpoints;
    char table[256];
    int create;
    unsigned partitions; /* 0: let the server choose */
    enum load_mix mix;
    double read_ratio;        /* for LOAD_MIX_BOTH */
    double weight[LOAD_NOPS]; /* for LOAD_MIX_WEIGHTS; sum > 0 */
    enum load_dist dist;
    double zipf_s;          /* zipf exponent (> 0), default 0.99 */
    uint64_t writer_id;     /* n = writer_id * 10^12 + seq in written values */
    char history[4096];     /* --history FILE, "" = none */
    double final_timeout_s; /* bound of the final read phase */
    unsigned concurrency;
    double rate;       /* requests/s; 0 = closed loop */
    double duration_s; /* measured period, after the warm-up */
    uint64_t requests; /* 0 = no limit; counts measured requests */
    double warmup_s;
    uint64_t keys;
    size_t value_size;
    uint64_t seed;
    unsigned timeout_ms;
    char akid[129], secret[129], region[64]; /* signed when akid[0] */
    char ca_bundle[4096]; /* PEM CAs to trust for https:// endpoints; "" = the system's */
    int json;
    int help; /* --help was given: usage printed, nothing to run */
};

#define LOAD_DEFAULT_ENDPOINT "http://127.0.0.1:8101"

/* The defaults: exactly what load_opts_parse gives when argv holds no
 * option, for callers that fill the struct themselves (the game-day runner).
 * That includes the environment: AWS_ACCESS_KEY_ID with
 * AWS_SECRET_ACCESS_KEY (both, or neither is taken) sign the requests, and
 * AWS_REGION / AWS_DEFAULT_REGION / us-east-1 is the region; a variable too
 * long for its field is left out here, where load_opts_parse refuses it.
 * No endpoint is set: an empty list means LOAD_DEFAULT_ENDPOINT. Nothing is
 * allocated; endpoints a caller adds are malloc'd strings that
 * load_opts_free frees. */
void load_opts_init(struct load_opts *o);
/* Fills o from argv (argv[0] is "load"), starting from load_opts_init's
 * defaults; environment variables AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
 * and AWS_REGION / AWS_DEFAULT_REGION supply what the options do not. */
int load_opts_parse(int argc, char **argv, struct load_opts *o, struct nerr *e);
void load_opts_free(struct load_opts *o);
/* Usage text, as printed by --help. */
void load_usage(FILE *f);

/* ---- generation ---- */

struct load_req {
    enum load_op op;
    uint64_t key; /* item "k<key>" */
    uint64_t seq; /* 0, 1, 2 ... in generation order; unique per run */
    uint64_t n;   /* put/cas: the written value's number (writer * 10^12 + seq) */
    /* cas: the expected value's number plus one; 0 = expect absent.
     * Filled by the issuer from what it last saw (load_gen_next sets 0). */
    uint64_t expect;
};

struct load_gen {
    struct rng rng; /* lib/rng.h's splitmix64: --seed replays the stream */
    uint64_t seq;
    uint64_t keys;
    enum load_mix mix;
    double read_ratio;
    double cum[LOAD_NOPS]; /* LOAD_MIX_WEIGHTS: cumulative probabilities */
    enum load_dist dist;
    /* Zipf by rejection-inversion (Hörmann & Derflinger 1996): O(1) state
     * whatever the key space. */
    double zs, z_hx1, z_hn, z_s2;
    uint64_t writer_id;
    size_t value_size;
    char table[256];
    enum load_target target;
};

void load_gen_init(struct load_gen *g, const struct load_opts *o);
/* The next request of the stream. */
void load_gen_next(struct load_gen *g, struct load_req *rq);
/* Largest body load_gen_body can write for g. */
size_t load_gen_body_max(const struct load_gen *g);
/* Writes rq's JSON body into buf (cap >= load_gen_body_max) and returns its
 * length (for the etcd target, the gateway's body described above). A
 * written value ("v", type S) is cval_format's value for key
 * "k<key>" and number rq->n, padded to value_size bytes when value_size is
 * larger than the unpadded value. */
size_t load_gen_body(const struct load_gen *g, const struct load_req *rq, char *buf, size_t cap);
/* The value written for key with number n, NUL-terminated; returns its
 * length (as cval_format: the length needed, so compare with cap). */
size_t load_gen_value(const struct load_gen *g, uint64_t key, uint64_t n, char *buf, size_t cap);
/* "DynamoDB_20120810.PutItem" / "...GetItem" / "...DeleteItem". */
const char *load_op_target(enum load_op op);
const char *load_op_name(enum load_op op);

/* ---- accounting ---- */

struct load_error_count {
    char type[64];
    uint64_t n;
};

struct load_op_stats {
    uint64_t ok, errors;
    uint64_t hits, misses; /* gets only: item found / not found */
    struct hist latency;   /* successful requests, ns */
    struct load_error_count err[LOAD_MAX_ERROR_TYPES];
    size_t nerr;
};

struct load_stats {
    struct load_op_stats op[LOAD_NOPS];
    double measured_s; /* the measured period's length */
    /* --history only: keys read in the final phase, and those whose every
     * attempt failed (unverifiable by the checkers). */
    uint64_t final_keys, final_ok, final_failed;
};

void load_stats_init(struct load_stats *s);
void load_stats_ok(struct load_stats *s, enum load_op op, uint64_t latency_ns, int hit);
/* type: the DynamoDB error name, "timeout", "connect", "http-<code>", ... */
void load_stats_error(struct load_stats *s, enum load_op op, const char *type);
void load_stats_print(const struct load_stats *s, FILE *f);
/* The summary as one JSON object on one line. NERR_NOMEM. */
int load_stats_print_json(const struct load_stats *s, const struct load_opts *o, FILE *f);

/* ---- issuing ---- */

/* What became of one request; passed to hooks (borrowed for the call). */
struct load_result {
    const struct load_req *req;
    uint64_t intended_ns, sent_ns, done_ns; /* CLOCK_MONOTONIC */
    unsigned conn;                          /* connection index: the history's process */
    unsigned endpoint;                      /* index into load_opts.endpoints it was sent to */
    int measured;                           /* after the warm-up, counted in the stats */
    int final;                              /* a read of the final phase */
    int ok;                                 /* HTTP 200 */
    int hit;                                /* a get that returned an item */
    const char *error;                      /* the error type when !ok */
    const char *response;
    size_t response_len; /* truncated to a few KiB */
};

/* A request to end a run early, set from any thread (see the top of this
 * file). Zero-initialise it (or set requested to 0) before the run; it is
 * borrowed by load_run for the call. */
struct load_stop {
    atomic_int requested;
};

/* Asks the run that holds s in its hooks to stop as if its duration had
 * ended now. Safe from any thread, idempotent; a stop requested before
 * load_run starts ends the run right after its setup (and --create), with
 * nothing measured. */
void load_stop(struct load_stop *s);

struct load_hooks {
    void (*on_complete)(void *arg, const struct load_result *res);
    void *arg;
    struct load_stop *stop; /* NULL: the run ends by --duration/--requests only */
};

/* Runs the load described by o, accounting into stats (initialised here),
 * writing o->history when set (NERR_IO if it cannot be created or written).
 * hooks may be NULL. */
int load_run(const struct load_opts *o, struct load_stats *stats, const struct load_hooks *hooks,
             struct nerr *e);

/* `nines load ...`: parse, run, print. 0 on a completed run, 1 if the run
 * could not be done, 2 on bad options. */
int load_main(int argc, char **argv);

#endif
