/*
 * rules.h — customer-facing-alarm rules (`nines alarms ... --rules FILE`).
 *
 *   postgres: "${NINES_PG}"                  # where the canary samples are
 *   alertmanager: "${NINES_ALERTMANAGER:-}"  # base URL; empty: no push
 *   evaluate_every: 2s
 *   resend_every: 30s                        # firing alerts are re-pushed
 *   hook: "logger -t nines-alarm"            # optional, run on fire/resolve
 *   alarms:
 *     - name: availability_by_az
 *       objective: 99.99%                    # burn-rate alarm
 *       tables: [nines_canary]               # default: every table
 *       operations: [put, get_consistent, get_eventual, delete]  # default
 *       group_by: [table, endpoint_az]       # table endpoint_az canary_az endpoint
 *       burn_rates:                          # default: the SRE workbook's four
 *         - {long: 1h, short: 5m, factor: 14.4, severity: page}
 *       hysteresis: {for: 0s, clear_for: 30s, clear_factor: 1}
 *     - name: errors_by_endpoint
 *       threshold: {errors: 5, in: 3, of: 5} # >= 5 errors in 3 of the last 5 intervals
 *       severity: ticket
 *     - name: server_availability_by_az
 *       source: server                       # ninesd's own counts (server_samples)
 *       objective: 99.9%
 *       operations: [PutItem, GetItem]       # API operations; default: all
 *       group_by: [endpoint_az]              # table endpoint_az endpoint
 *     - name: canary_blind
 *       blind: {after: 60s}                  # no sample for 60 s
 *       group_by: [canary_az, endpoint]
 *
 * Each alarm is exactly one of objective / threshold / blind. Burn rate is
 * error_ratio / (1 - objective) (SRE workbook, ch. 5); a tier fires when
 * both its long and short windows burn at >= factor.
 *
 * source: canary (default) reads canary_samples, where an error is any
 * failed operation after the SDK retries; source: server reads the
 * server_samples the canaries scrape from ninesd (scrape.h), where attempts
 * are every request the node answered and errors its server errors (5xx;
 * a client's own mistakes are not the service's unavailability). A server
 * rule cannot group by canary_az, and its operations are API names.
 *
 * Errors: "FILE:LINE:COL: message" (yamltree.h). Ownership: struct
 * cfa_rules owns everything; cfa_rules_free. No threads involved.
 */
#ifndef NINES_CANARY_RULES_H
#define NINES_CANARY_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

enum cfa_kind { CFA_BURN = 1, CFA_THRESHOLD = 2, CFA_BLIND = 3 };

enum cfa_dim {
    CFA_BY_TABLE = 1,
    CFA_BY_ENDPOINT_AZ = 2,
    CFA_BY_CANARY_AZ = 4,
    CFA_BY_ENDPOINT = 8
};

#define CFA_MAX_TIERS 8
#define CFA_SEVERITY 24

struct cfa_tier {
    int64_t long_ms, short_ms;
    double factor;
    char severity[CFA_SEVERITY];
};

struct cfa_rule {
    char *name;
    enum cfa_kind kind;
    char **tables; /* NULL-terminated filter, or NULL: every table */
    unsigned ops;  /* bit i: canary_op i counts (agg.h); COP_PROBE excluded by default */
    unsigned group_by;
    int server;          /* source: server */
    char **server_ops;   /* source: server: NULL-terminated API operations, or NULL: all */
    /* CFA_BURN */
    double objective;
    struct cfa_tier tiers[CFA_MAX_TIERS];
    int ntiers;
    /* CFA_THRESHOLD */
    uint64_t min_errors;
    int in, of;
    /* CFA_THRESHOLD and CFA_BLIND */
    char severity[CFA_SEVERITY];
    int64_t blind_after_ms;
    /* hysteresis */
    int64_t for_ms, clear_for_ms;
    double clear_factor; /* burn must drop below factor * clear_factor to clear */
    int line, col;
};

struct cfa_rules {
    struct cfa_rule *rules;
    size_t n;
    char *pg_dsn, *am_url, *hook; /* NULL when absent or empty */
    int64_t eval_every_ms, resend_ms;
};

int cfa_rules_load(const char *path, struct cfa_rules *out, struct nerr *err);
int cfa_rules_parse(const char *name, const char *text, size_t len, struct cfa_rules *out,
                    struct nerr *err);
void cfa_rules_free(struct cfa_rules *r);

/* The longest window any rule looks at (ms), for loading and pruning. */
int64_t cfa_rules_max_window(const struct cfa_rules *r);

/* "1h", "5m", "30s" or "1500ms" for window labels. */
const char *cfa_fmt_ms(int64_t ms, char *buf, size_t cap);

#endif
