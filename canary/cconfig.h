/*
 * cconfig.h — the canary's config file (`nines canary run --config FILE`).
 *
 *   az: ${NINES_CANARY_AZ:-az1}        # the AZ this canary runs in
 *   endpoints: ${NINES_ENDPOINTS}      # "AZ=URL,..." (envsub.h) or a list of
 *                                      #   {name: n1, az: az1, url: http://...}
 *   tables: [nines_canary]             # probe tables, created if missing
 *   rate: 10                           # probes/s per endpoint (decimal allowed)
 *   interval: 10s                      # aggregation interval
 *   timeout: 2s                        # per attempt
 *   workers: 8                         # concurrent probes per endpoint
 *   retry: {max_attempts: 3, base: 1s, max_backoff: 20s, quota: 500}
 *   credentials: {access_key_id: A, secret_access_key: S, region: local}
 *   sink: {postgres: ${NINES_PG}, buffer: 100000, flush_every: 1s}
 *   metrics: {listen: 127.0.0.1:9464}
 *   server_metrics: true               # scrape each endpoint's GET /metrics into
 *                                      #   server_samples (scrape.h; needs the sink),
 *                                      #   signed with `credentials` when given
 *
 * Every string value goes through envsub_expand. Only `endpoints` is
 * required; the sink and metrics are optional (a canary without either only
 * logs a summary per interval).
 *
 * Errors: "FILE:LINE:COL: message" (yamltree.h) with NERR_INVALID/NERR_PARSE/
 * NERR_IO. Ownership: the struct owns every string; canary_config_free.
 */
#ifndef NINES_CANARY_CCONFIG_H
#define NINES_CANARY_CCONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "canary/envsub.h"
#include "lib/err.h"

#define CANARY_MAX_ENDPOINTS 64
#define CANARY_MAX_TABLES 16
#define CANARY_MAX_WORKERS 256

/* One closed cell as an in-process observer sees it (borrowed for the
 * call): what a canary_samples row holds, without the histogram. */
struct canary_sample {
    int64_t start_ms, interval_ms;
    const char *canary_az, *endpoint, *endpoint_az, *table, *op;
    uint64_t attempts, errors, retries;
    uint64_t p99_ns; /* 0 when no request succeeded */
};

struct canary_config {
    char *az;
    struct envsub_endpoint *endpoints;
    size_t nendpoints;
    char **tables;
    size_t ntables;
    double rate;          /* probes per second per endpoint */
    uint64_t interval_ns; /* aggregation interval */
    uint64_t timeout_ns;  /* per attempt */
    int workers;
    int max_attempts;
    uint64_t retry_base_ns, retry_max_backoff_ns;
    int retry_quota;
    char *access_key_id, *secret_access_key, *region;
    int create_tables;
    char *pg_dsn;          /* NULL: no PostgreSQL sink */
    uint64_t buffer_rows;  /* bound on rows held while PostgreSQL is away */
    uint64_t flush_ns;
    char *metrics_host;    /* NULL: no /metrics */
    int metrics_port;
    int server_metrics;
    /* Not from the file: an in-process observer of every closed cell
     * (NULL: none), called on the thread that calls canary_tick or
     * canary_finish. The game-day runner feeds its alarm engine with it. */
    void (*on_sample)(void *arg, const struct canary_sample *s);
    void *on_sample_arg;
};

int canary_config_load(const char *path, struct canary_config *out, struct nerr *err);
int canary_config_parse(const char *name, const char *text, size_t len, struct canary_config *out,
                        struct nerr *err);
void canary_config_free(struct canary_config *c);

/* Shared with the rules parser: a scalar through envsub_expand (*out
 * malloc'd), and a decimal number in [min, max] ("99.99%" allowed when
 * percent is set: gives 0.9999). */
struct yt_node;
int cconf_str(const struct yt_node *n, char **out, struct nerr *err);
int cconf_number(const struct yt_node *n, double min, double max, int percent, double *out,
                 struct nerr *err);

#endif
