/*
 * run.h — inside the game-day runner (gameday.h is the door): the state of
 * one run and the stages' entry points, one file per concern:
 *
 *   runner.c   the stages in order, progress lines, the steps, heal-all
 *   deploy.c   the cluster file, ninesd over SSH, log collection
 *   traffic.c  the load on its own thread, per-step counts, recovery times
 *   health.c   the cluster's status judged (every node up, every member
 *              live), polling until a predicate holds
 *   verify.c   the checkers on the history and the final status checks
 *   report.c   report.json and the printed summary
 *
 * Two threads: the traffic (load_run, which calls the on_complete hook for
 * every request it completes) and the caller's, which runs everything else.
 * They share struct gd_run's counters under mu; the step index is atomic.
 * Everything else is the caller's thread's.
 */
#ifndef NINES_GAMEDAY_RUN_H
#define NINES_GAMEDAY_RUN_H

#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "load/load.h"
#include "net/ssh.h"
#include "fault/fault.h"
#include "gameday/gameday.h"
#include "gameday/playbook.h"
#include "lib/hist.h"
#include "proto/clusterfile.h"

#define NS_PER_S 1000000000ull
#define GD_MAX_PARTS 256
#define GD_MAX_FAULT_KINDS 16

struct gd_run;

/* ---- observe.c: what customers see ----
 *
 * Per-AZ series, one slot per second since the run's start (t0): the
 * traffic's requests by the AZ of the node each went to (ok, errors, the
 * latencies of the served ones, in microseconds), and the canaries' samples
 * by endpoint AZ (attempts, errors). The alarm engine (canary/cfa.h) runs on
 * the observer's own thread over the canaries' samples; its firing and
 * resolved changes are kept with their times. The observer also evaluates
 * the stop conditions every second while the steps run, and the runner asks
 * it for the steady state and, at the end, judges every step's expect:.
 * Everything below is under obs_mu unless said otherwise. */
#define GD_MAX_AZS 16
#define GD_MAX_LAT_SAMPLES (16u << 20) /* latencies kept in all (64 MiB) */

struct gd_slot {
    uint64_t ok, err;
    uint32_t *lat; /* microseconds (traffic only) */
    uint32_t nlat, caplat;
};
struct gd_series {
    struct gd_slot *s[GD_MAX_AZS];
    size_t n[GD_MAX_AZS], cap[GD_MAX_AZS];
};
struct gd_alarm_ev {
    double at_s;
    char *alarm, *severity, *window;
    char *label[4]; /* cfa_event order; NULL: not grouped */
    int firing;     /* 1 firing, 0 resolved */
};
struct gd_obs;

int gd_obs_start(struct gd_run *g, struct nerr *err);       /* canaries, alarms, the thread */
void gd_obs_stop(struct gd_run *g);                          /* joins, finishes the canaries */
void gd_obs_free(struct gd_run *g);
/* The traffic's hook: a request to endpoint ep done at done_ns. */
void gd_obs_traffic(struct gd_run *g, unsigned ep, int served, uint64_t done_ns, uint64_t lat_ns);
/* Steady state: 1 when every probe holds (json: the verdicts appended to
 * out, phase "steady_state_before"/"steady_state_after"), polling each
 * second up to the probes' timeout (before: until the sources have `over`
 * seconds of data after warm-up). */
int gd_obs_steady(struct gd_run *g, const char *phase, json_t *out);
/* Every expect: of the steps that ran, appended to out; 1 when all hold.
 * Waits (bounded) for fires: deadlines that have not passed yet. */
int gd_obs_expectations(struct gd_run *g, json_t *out);
/* The report's timeline, canary_timeline, alarms and canaries keys. */
void gd_obs_report(struct gd_run *g, json_t *rep);

struct step_rec {
    uint64_t start_ns, end_ns;
    uint64_t ok, errors;
    struct hist *lat;
    int done, failed;
    char error[NERR_MSG_MAX];
    /* an inject step: recovery of writes */
    uint64_t off_ns;                      /* when the fault was injected */
    unsigned char affected[GD_MAX_PARTS]; /* partitions with a replica on a host hit */
    uint64_t recovered_ns[GD_MAX_PARTS];  /* 0: not yet */
    int n_affected, n_recovered;
    uint64_t recovery_ns; /* 0 until every affected partition recovered */
    /* a select: leader step with expect.leader_moves: when a host it did
     * not hit led the partition (0: not seen), and which node */
    uint64_t leader_moved_ns;
    char new_leader[64];
};

struct gd_run {
    const struct gd_opts *o;
    struct playbook *pb;
    struct inventory *inv;
    struct pb_plan *plan;
    struct fault_env fenv;
    void *fstate[GD_MAX_FAULT_KINDS]; /* per fault kind (registry order), from its open */
    struct ssh_pool *pool;
    struct cluster_conf *conf;
    char dir[PATH_MAX];
    char ninesd[PATH_MAX];
    uint64_t t0;
    int *node_host; /* conf node index -> inventory host index, -1 none */

    /* traffic */
    pthread_t thr;
    int thr_started;
    struct load_opts lo;
    struct load_stats ls;
    int load_rc;
    struct nerr load_err;
    struct load_stop stop; /* the runner's way to end the traffic */
    atomic_int traffic_done;
    pthread_mutex_t mu;
    uint64_t total_ok, total_err; /* under mu */
    atomic_int cur;               /* the step running, -1 none */
    struct step_rec *rec;
    unsigned nparts; /* of the traffic's table, 0 unknown */

    /* progress */
    uint64_t last_prog_ns, last_prog_ops;
    int prog_dirty;

    /* what customers see (observe.c) */
    int64_t t0_wall_ms;
    size_t naz;
    const char *az[GD_MAX_AZS]; /* the inventory's AZs, borrowed */
    int *ep_az;                 /* traffic endpoint -> az index */
    pthread_mutex_t obs_mu;
    struct gd_series traffic_s, canary_s;
    uint64_t lat_kept, lat_dropped;
    struct gd_alarm_ev *ev;
    size_t nev, capev;
    struct gd_obs *obs;
    atomic_int stopped; /* a stop condition tripped: the steps end */
    char stop_reason[NERR_MSG_MAX];
    double stop_at_s;
    json_t *expectations; /* the verdicts, in the order judged */
    unsigned journaled; /* fault kinds (bit = registry index) in the fault journal */
    char journal[PATH_MAX + 64]; /* its path, "" until first needed */
    int pg_started, pg_tmp; /* pg_tmp: in a /tmp directory of its own, removed at stop */
    char pg_dir[PATH_MAX + 8];
    char pg_dsn[PATH_MAX + 64];

    /* results */
    int steps_failed;
    char failure[NERR_MSG_MAX];
    json_t *verify;
    int verified;
};

/* runner.c */
struct ddb_client;
/* A DynamoDB client of node i of the run's cluster (its credentials, 5 s
 * per request); the caller frees it with ddb_client_free. */
int gd_node_client(const struct gd_run *g, size_t i, struct ddb_client **out, struct nerr *err);
void gd_fmt(char *buf, size_t cap, const char *f, ...) __attribute__((format(printf, 3, 4)));
double gd_secs(uint64_t ns);
int gd_cancelled(const struct gd_run *g);
void gd_progress(struct gd_run *g, int force);
void gd_progress_break(struct gd_run *g);
void gd_note(struct gd_run *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sleeps until `until` (monotonic ns), keeping the progress line alive.
 * NERR_CLOSED when cancelled. */
int gd_sleep_until(struct gd_run *g, uint64_t until);

/* privpg.c: the private PostgreSQL of the canaries' samples when the
 * playbook names none: DIR/pg (a unix socket only), started before the
 * canaries and stopped after them; g->pg_dsn names it. */
int gd_pg_start(struct gd_run *g, struct nerr *err);
void gd_pg_stop(struct gd_run *g);

/* health.c */
struct health {
    int nodes, nodes_up;
    int parts, parts_led, parts_full; /* led: has a leader; full: every placed replica live */
    int members, members_live, members_behind;
    int table_parts; /* partitions of the traffic's table */
    char why[400];
};
typedef int (*gd_pred)(const struct health *h, void *arg);
/* Polls the cluster until pred holds or timeout; the last health in *h,
 * the last merged status in *last (may be NULL; replaced, the caller's). */
int gd_wait_for(struct gd_run *g, uint64_t timeout_ns, gd_pred pred, void *arg, struct health *h,
                json_t **last, struct nerr *err);
int gd_all_up_and_live(const struct health *h, void *arg); /* wait_healthy's test */
int gd_table_ready(const struct health *h, void *arg);     /* arg: unsigned partitions */
int gd_fully_replicated(const struct health *h, void *arg);
int gd_caught_up(const struct health *h, void *arg);
/* A run-time target (fault/targets.h "Run-time targets"): the inventory
 * hosts of the unit (t->unit) holding the leader of partition t->partition
 * of table t->table (NULL: the traffic table) now, ascending in *hosts
 * (malloc'd, the caller's). Polls until that partition has a leader or the
 * monotonic deadline: NERR_TIMEOUT names what it saw; NERR_NOTFOUND when
 * the leader's node is not in the inventory. *leader gets its node id. */
int gd_leader_unit(struct gd_run *g, const struct fault_targets *t, uint64_t deadline,
                   size_t **hosts, size_t *n, char *leader, size_t cap, struct nerr *err);
/* One look at the cluster: the node id leading (table, part) in *leader and
 * its inventory host in *host (-1: not in the inventory). 1: found; 0: the
 * partition has no leader; -1: not in the status or no status. */
int gd_leader_now(struct gd_run *g, const char *table, int part, char *leader, size_t cap,
                  long *host);
/* The traffic table's partitions -> the inventory hosts holding a replica,
 * from a merged status; sets g->nparts. */
void gd_learn_partitions(struct gd_run *g, const json_t *m, unsigned char (*holds)[GD_MAX_PARTS],
                         size_t nhosts);

/* deploy.c */
int gd_deploy(struct gd_run *g, struct nerr *err);
void gd_collect_logs(struct gd_run *g);
/* Drops h's cached SSH sessions (its processes were restarted). */
void gd_host_changed(struct gd_run *g, const struct inv_host *h);

/* traffic.c */
int gd_start_traffic(struct gd_run *g, struct nerr *err);
void gd_stop_traffic(struct gd_run *g);

/* verify.c */
json_t *gd_verify_checkers(struct gd_run *g, int *ok);
json_t *gd_verify_status(struct gd_run *g, gd_pred pred, const char *what, int *ok);
/* `nines scrub` (a live compare of every partition's replicas at a scrub
 * marker, docs/scrub.md) against the run's cluster, bounded by
 * verify.timeout; its JSON report is kept as DIR/scrub.json. *ok only when
 * it compared every partition and found nothing (exit 0). */
json_t *gd_verify_scrub(struct gd_run *g, int *ok);

/* report.c */
json_t *gd_report_json(struct gd_run *g, int passed, double elapsed);
void gd_print_summary(struct gd_run *g, int passed, FILE *f);

#endif
