/* Unit tests for the canary's pure parts: burn-rate math and the CFA state
 * machine (hand-computed cases, missing data, flapping), rules parsing and
 * lint positions, the SDK standard retry mode, and lib/hist's error bound
 * and mergeability as the canary relies on them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canary/cconfig.h"
#include "canary/cfa.h"
#include "canary/envsub.h"
#include "net/retry.h"
#include "canary/rules.h"
#include "lib/hist.h"
#include "t/tap.h"

struct rec {
    int n;
    char what[32][160];
};

static void on_ev(void *arg, const struct cfa_event *e)
{
    struct rec *r = arg;
    if (r->n < 32)
        snprintf(r->what[r->n++], 160, "%s %s->%s %s %s", e->rule->name, cfa_state_name(e->from),
                 cfa_state_name(e->to), e->window, e->group_key);
}

static int has(const struct rec *r, const char *needle)
{
    for (int i = 0; i < r->n; i++)
        if (strstr(r->what[i], needle))
            return 1;
    return 0;
}

static int load_rules(const char *text, struct cfa_rules *r, struct nerr *e)
{
    return cfa_rules_parse("rules.yaml", text, strlen(text), r, e);
}

static void add(struct cfa_engine *eng, int64_t ts, const char *eaz, uint64_t att, uint64_t errs)
{
    struct cfa_sample s = {ts, 10000, "az1", eaz, eaz, "t1", "put", att, errs, 0};
    cfa_engine_add(eng, &s);
}

static void test_burn_math(void)
{
    /* 99.9 %: budget 0.1 %. 144 errors in 10000 = 1.44 % = 14.4x. */
    ok(fabs(cfa_burn_rate(144, 10000, 0.999) - 14.4) < 1e-9, "burn 144/10000 at 99.9%% is 14.4");
    ok(fabs(cfa_burn_rate(1, 10000, 0.9999) - 1.0) < 1e-9, "burn 1/10000 at 99.99%% is 1");
    ok(fabs(cfa_burn_rate(600, 1000, 0.9) - 6.0) < 1e-9, "burn 600/1000 at 90%% is 6");
    ok(cfa_burn_rate(5, 0, 0.999) == 0, "no attempts: burn 0");
}

static void test_burn_engine(void)
{
    struct cfa_rules r;
    struct nerr e;
    struct cfa_engine *eng;
    const char *y = "alarms:\n"
                    "  - name: avail\n"
                    "    objective: 99.9%\n"
                    "    group_by: [endpoint_az]\n"
                    "    burn_rates:\n"
                    "      - {long: 60s, short: 20s, factor: 14.4, severity: page}\n";
    is_int(load_rules(y, &r, &e), 0, "rules parse");
    cfa_engine_new(&r, &eng, &e);
    /* Six 10 s intervals from t=0: az1 all fine; az2 at 2 % errors over the
     * last two intervals only. Long window (60 s): az2 errors 40/600 = 6.7 %
     * -> burn 66.7; short (20 s): 40/200 = 20 % -> burn 200: fires. */
    for (int i = 0; i < 6; i++) {
        add(eng, i * 10000, "az1", 100, 0);
        add(eng, i * 10000, "az2", 100, i >= 4 ? 20 : 0);
    }
    struct rec rec = {0};
    cfa_engine_eval(eng, 49999, on_ev, &rec);
    is_int(rec.n, 0, "the bad interval [40 s, 50 s) is not counted before it ends");
    cfa_engine_eval(eng, 50000, on_ev, &rec);
    is_int(rec.n, 1, "one transition at t=50 s");
    ok(has(&rec, "avail ok->firing 1m/20s endpoint_az=az2"), "az2 fires: %s", rec.what[0]);
    ok(!has(&rec, "az1"), "az1 does not");
    /* Just below the factor: 14 errors in 1000 over the long window at
     * 99.9 % is 14x < 14.4: must not fire. */
    struct cfa_engine *e2;
    cfa_engine_new(&r, &e2, &e);
    for (int i = 0; i < 6; i++)
        add(e2, i * 10000, "az3", i == 5 ? 100 : 180, i == 5 ? 14 : 0);
    struct rec r2 = {0};
    cfa_engine_eval(e2, 60000, on_ev, &r2);
    is_int(r2.n, 0, "burn 14.0 (14/1000) below 14.4 does not fire");
    add(e2, 50000, "az3", 0, 1); /* 15/1000: 15x long; short 15/280 -> 53x */
    cfa_engine_eval(e2, 60000, on_ev, &r2);
    ok(has(&r2, "ok->firing"), "burn 15.0 fires");
    cfa_engine_free(e2);

    /* Missing data: no samples after t=60 s. The alarm must stay firing (no
     * silent OK) while its windows empty out. */
    rec.n = 0;
    for (int64_t t = 61000; t <= 200000; t += 1000)
        cfa_engine_eval(eng, t, on_ev, &rec);
    ok(!has(&rec, "->ok"), "missing data never resolves (%d transitions)", rec.n);
    /* Data comes back clean: the short window clears it. */
    for (int i = 20; i < 23; i++)
        add(eng, i * 10000, "az2", 100, 0);
    cfa_engine_eval(eng, 230000, on_ev, &rec);
    ok(has(&rec, "avail firing->ok"), "clean data resolves");
    cfa_engine_free(eng);
    cfa_rules_free(&r);
}

static void test_hysteresis(void)
{
    struct cfa_rules r;
    struct nerr e;
    struct cfa_engine *eng;
    const char *y = "alarms:\n"
                    "  - name: flappy\n"
                    "    objective: 99%\n"
                    "    burn_rates: [{long: 20s, short: 10s, factor: 10}]\n"
                    "    hysteresis: {for: 20s, clear_for: 30s}\n";
    is_int(load_rules(y, &r, &e), 0, "hysteresis rules parse: %s", e.msg);
    cfa_engine_new(&r, &eng, &e);
    struct rec rec = {0};
    /* Alternate bad and good 10 s intervals: the 10 s window flips every
     * interval. Without hysteresis this would page 5 times. */
    int fired = 0;
    for (int i = 0; i < 10; i++) {
        add(eng, i * 10000, "az1", 100, i % 2 ? 0 : 50);
        cfa_engine_eval(eng, (i + 1) * 10000, on_ev, &rec);
    }
    for (int i = 0; i < rec.n; i++)
        fired += strstr(rec.what[i], "->firing") != NULL;
    is_int(fired, 0, "alternating intervals never hold for 20 s: no page");
    ok(has(&rec, "ok->pending"), "but they do go pending");
    /* Then sustained errors: fires after 20 s, not before. */
    rec.n = 0;
    for (int i = 10; i < 13; i++) {
        add(eng, i * 10000, "az1", 100, 50);
        cfa_engine_eval(eng, (i + 1) * 10000, on_ev, &rec);
        if (i == 10)
            ok(!has(&rec, "->firing"), "pending, not firing, after 10 s");
    }
    ok(has(&rec, "pending->firing"), "fires once the condition held for 20 s");
    /* A good interval alone does not resolve (clear_for 30 s). */
    rec.n = 0;
    add(eng, 130000, "az1", 100, 0);
    cfa_engine_eval(eng, 140000, on_ev, &rec);
    ok(has(&rec, "firing->clearing"), "clearing starts");
    add(eng, 140000, "az1", 100, 50);
    cfa_engine_eval(eng, 150000, on_ev, &rec);
    ok(has(&rec, "clearing->firing"), "a bad interval within clear_for keeps it firing");
    for (int i = 15; i < 20; i++) {
        add(eng, i * 10000, "az1", 100, 0);
        cfa_engine_eval(eng, (i + 1) * 10000, on_ev, &rec);
    }
    ok(has(&rec, "clearing->ok"), "30 s clean resolves");
    cfa_engine_free(eng);
    cfa_rules_free(&r);
}

static void test_threshold_and_blind(void)
{
    struct cfa_rules r;
    struct nerr e;
    struct cfa_engine *eng;
    const char *y = "alarms:\n"
                    "  - name: thr\n"
                    "    threshold: {errors: 5, in: 3, of: 5}\n"
                    "    group_by: [endpoint]\n"
                    "  - name: blind\n"
                    "    blind: {after: 30s}\n";
    is_int(load_rules(y, &r, &e), 0, "threshold/blind rules parse: %s", e.msg);
    cfa_engine_new(&r, &eng, &e);
    struct rec rec = {0};
    /* errors per interval: 5 0 5 4 -> 2 intervals >= 5 of 4: no. */
    int errs[] = {5, 0, 5, 4, 6};
    for (int i = 0; i < 4; i++)
        add(eng, i * 10000, "az1", 100, (uint64_t)errs[i]);
    cfa_engine_eval(eng, 40000, on_ev, &rec);
    ok(!has(&rec, "thr"), "2 of 5 intervals with >= 5 errors: quiet");
    add(eng, 40000, "az1", 100, 6);
    cfa_engine_eval(eng, 50000, on_ev, &rec);
    ok(has(&rec, "thr ok->firing 3 of 5 x 10s endpoint=az1"), "3 of 5: fires");
    ok(!has(&rec, "blind"), "data flowing: not blind");
    /* Silence: the last interval ended at 50 s; blind after 30 s. */
    rec.n = 0;
    cfa_engine_eval(eng, 80000, on_ev, &rec);
    ok(!has(&rec, "blind ok->firing"), "30 s silent is not yet blind");
    cfa_engine_eval(eng, 80001, on_ev, &rec);
    ok(has(&rec, "blind ok->firing blind 30s canary_az=az1,endpoint=az1"), "31 s silent: blind");
    ok(!has(&rec, "thr firing->ok"), "the threshold alarm does not resolve on silence");
    add(eng, 80000, "az1", 100, 0);
    cfa_engine_eval(eng, 90000, on_ev, &rec);
    ok(has(&rec, "blind firing->ok"), "data again: blind resolves");
    cfa_engine_free(eng);
    cfa_rules_free(&r);
}

static void test_lint(void)
{
    struct cfa_rules r;
    struct nerr e;
    static const struct {
        const char *yaml, *msg;
    } bad[] = {
        {"alarms:\n  - name: a\n    objective: 99.99%\n    threshold: {errors: 1}\n",
         "rules.yaml:2:5: alarm 'a' needs exactly one of"},
        {"alarms:\n  - name: a\n    objective: 120%\n", "rules.yaml:3:16: 1.2 is out of range"},
        {"alarms:\n  - name: a\n    objective: 99%\n    group_by: [rack]\n",
         "rules.yaml:4:16: cannot group by 'rack'"},
        {"alarms:\n  - name: a\n    objective: 99%\n    burn_rates:\n"
         "      - {long: 5m, short: 1h, factor: 2}\n",
         "rules.yaml:5:27: the short window must be shorter"},
        {"alarms:\n  - name: a\n    threshold: {errors: 1, in: 4, of: 3}\n",
         "rules.yaml:3:32: 'in' (4) cannot exceed 'of' (3)"},
        {"alarm:\n  - name: a\n", "rules.yaml:1:1: unknown key 'alarm', did you mean 'alarms'?"},
        {"alarms:\n  - name: a\n    blind: {after: 1m}\n  - name: a\n    blind: {}\n",
         "rules.yaml:4:11: alarm name 'a' already used at line 2"},
        {"alarms:\n  - name: a\n    objective: 99%\n    operations: [scan]\n",
         "rules.yaml:4:18: unknown operation 'scan'"},
        {"alertmanager: ftp://x\nalarms:\n  - name: a\n    blind: {}\n",
         "rules.yaml:1:15: alertmanager must be an http"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = load_rules(bad[i].yaml, &r, &e);
        ok(rc != 0 && !strncmp(e.msg, bad[i].msg, strlen(bad[i].msg)), "lint %zu: %s", i, e.msg);
    }
    setenv("CFA_TEST_AM", "http://127.0.0.1:9093", 1);
    unsetenv("CFA_TEST_UNSET");
    const char *good = "alertmanager: \"${CFA_TEST_AM}\"\npostgres: \"${CFA_TEST_UNSET:-host=/x}\"\n"
                       "alarms:\n  - name: a\n    objective: 99.99%\n";
    is_int(load_rules(good, &r, &e), 0, "env expansion: %s", e.msg);
    is(r.am_url, "http://127.0.0.1:9093", "alertmanager from the environment");
    is(r.pg_dsn, "host=/x", "default when the variable is unset");
    is_int(r.rules[0].ntiers, 4, "default tiers: the workbook's four");
    ok(r.rules[0].tiers[0].long_ms == 3600000 && r.rules[0].tiers[0].short_ms == 300000 &&
           r.rules[0].tiers[0].factor == 14.4,
       "first tier 1h/5m 14.4x");
    ok(r.rules[0].tiers[3].factor == 1 && !strcmp(r.rules[0].tiers[3].severity, "ticket"),
       "last tier 1x ticket");
    cfa_rules_free(&r);
    const char *unset = "postgres: \"${CFA_TEST_UNSET}\"\nalarms:\n  - name: a\n    blind: {}\n";
    ok(load_rules(unset, &r, &e) && strstr(e.msg, "rules.yaml:1:11: environment variable "
                                                  "CFA_TEST_UNSET is not set"),
       "unset variable named with its position: %s", e.msg);

    struct envsub_endpoint *ep;
    size_t n;
    is_int(envsub_endpoints("az1=http://127.0.0.1:8101,n2@az2=http://h:8102", &ep, &n, &e), 0,
           "NINES_ENDPOINTS parses");
    ok(n == 2 && !strcmp(ep[0].az, "az1") && !strcmp(ep[0].name, "127.0.0.1:8101") &&
           !strcmp(ep[1].name, "n2") && !strcmp(ep[1].az, "az2") &&
           !strcmp(ep[1].url, "http://h:8102"),
       "endpoints: names and AZs");
    envsub_endpoints_free(ep, n);
    ok(envsub_endpoints("az1=127.0.0.1:8101", &ep, &n, &e) != 0, "an URL without scheme: %s", e.msg);

    struct canary_config cc;
    const char *cy = "endpoints: az1=http://a:1\nrate: 0\n";
    ok(canary_config_parse("c.yaml", cy, strlen(cy), &cc, &e) && strstr(e.msg, "c.yaml:2:7:"),
       "canary config: bad rate at 2:7: %s", e.msg);
    cy = "endpoints:\n  - {az: az1, url: http://a:1}\n  - {az: az2, url: http://b:1, nmae: x}\n";
    ok(canary_config_parse("c.yaml", cy, strlen(cy), &cc, &e) &&
           strstr(e.msg, "c.yaml:3:32: unknown key 'nmae', did you mean 'name'?"),
       "canary config: typo at 3:32: %s", e.msg);
}

static void test_retry(void)
{
    ok(retry_classify(0, 200, NULL) == RETRY_NO, "200: final");
    ok(retry_classify(0, 400, "ProvisionedThroughputExceededException") == RETRY_THROTTLE,
       "throughput exceeded: throttle");
    ok(retry_classify(0, 400, "ThrottlingException") == RETRY_THROTTLE, "ThrottlingException");
    ok(retry_classify(0, 400, "ConditionalCheckFailedException") == RETRY_NO,
       "conditional check: final");
    ok(retry_classify(0, 400, "ValidationException") == RETRY_NO, "validation: final");
    ok(retry_classify(0, 500, "InternalServerError") == RETRY_TRANSIENT, "500: transient");
    ok(retry_classify(0, 503, NULL) == RETRY_TRANSIENT, "503: transient");
    ok(retry_classify(0, 501, NULL) == RETRY_NO, "501: final");
    ok(retry_classify(0, 400, "RequestTimeout") == RETRY_TRANSIENT, "RequestTimeout: transient");
    ok(retry_classify(NERR_IO, 0, NULL) == RETRY_TRANSIENT, "connection refused: transient");
    ok(retry_classify(NERR_TIMEOUT, 0, NULL) == RETRY_TIMEOUT, "timeout");
    uint64_t s = 1000000000ull, cap = 20 * s;
    ok(retry_backoff_ns(1, s, cap, 0.5) == s / 2, "retry 1: u * 1 s");
    ok(retry_backoff_ns(2, s, cap, 0.5) == s, "retry 2: u * 2 s");
    ok(retry_backoff_ns(10, s, cap, 0.5) == cap / 2, "capped at 20 s");
    ok(retry_backoff_ns(1, s, cap, 0.0) == 0, "full jitter reaches 0");
    struct retry_quota q;
    retry_quota_init(&q, 500);
    int n = 0;
    while (retry_quota_acquire(&q, RETRY_TRANSIENT))
        n++;
    is_int(n, 100, "500 tokens pay 100 retries at 5");
    retry_quota_success(&q, 0);
    is_int(q.tokens, 1, "a success without retry gives 1 back");
    retry_quota_init(&q, 500);
    is_int(retry_quota_acquire(&q, RETRY_TIMEOUT), 10, "a timeout retry costs 10");
    retry_quota_success(&q, 10);
    is_int(q.tokens, 500, "a success refunds its retries, capped at capacity");
    ok(!retry_quota_acquire(&q, RETRY_NO), "no retry for a final error");
}

static void test_hist(void)
{
    /* The issue asks <= 1 % relative error and mergeable. */
    struct hist *a = malloc(sizeof *a), *b = malloc(sizeof *b), *c = malloc(sizeof *c);
    hist_init(a);
    hist_init(b);
    hist_init(c);
    double worst = 0;
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t v = 1000 + x % 5000000000ull;
        struct hist *h = i % 2 ? a : b;
        hist_record(h, v);
        hist_record(c, v);
        uint64_t lo, hi;
        hist_bucket_bounds(hist_bucket_of(v), &lo, &hi);
        double mid = ((double)lo + (double)hi) / 2;
        double rel = fabs(mid - (double)v) / (double)v;
        if (rel > worst)
            worst = rel;
    }
    ok(worst <= 0.01, "bucket midpoint within 1%% of every value (worst %.4f%%)", worst * 100);
    hist_merge(a, b);
    int same = 1;
    for (double p = 1; p <= 100; p += 1)
        same &= hist_percentile(a, p) == hist_percentile(c, p);
    ok(same && hist_count(a) == 20000, "merged halves give the same percentiles as the whole");
    free(a);
    free(b);
    free(c);
}

int main(void)
{
    test_burn_math();
    test_burn_engine();
    test_hysteresis();
    test_threshold_and_blind();
    test_lint();
    test_retry();
    test_hist();
    return done_testing();
}
