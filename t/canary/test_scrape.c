/* Unit tests for the server side of the canary: parsing ninesd's /metrics,
 * per-interval deltas across counter resets, the COPY BINARY rows of the
 * sink, `source: server` rules (which samples they take, lint errors), and
 * restoring saved alarm states into the CFA engine. */
#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canary/cfa.h"
#include "canary/pgsink.h"
#include "canary/rules.h"
#include "canary/scrape.h"
#include "t/tap.h"

static const struct scrape_series *get(const struct scrape_snapshot *s, const char *t,
                                       const char *op)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i].table, t) && !strcmp(s->v[i].op, op))
            return &s->v[i];
    return NULL;
}

static void test_parse(void)
{
    const char *text =
        "# HELP nines_api_requests_total Requests answered to clients.\n"
        "# TYPE nines_api_requests_total counter\n"
        "nines_api_requests_total{table=\"t1\",op=\"PutItem\",outcome=\"ok\"} 120\n"
        "nines_api_requests_total{table=\"t1\",op=\"PutItem\",outcome=\"server_error\"} 3\n"
        "nines_api_requests_total{table=\"t1\",op=\"PutItem\",outcome=\"client_error\"} 7\n"
        "nines_api_requests_total{table=\"-\",op=\"ListTables\",outcome=\"ok\"} 2\n"
        "nines_api_requests_total{table=\"we\\\"ird\\\\t\",op=\"GetItem\",outcome=\"ok\"} 5\n"
        "nines_api_requests_total{table=\"t1\",op=\"GetItem\",outcome=\"bogus\"} 9\n"
        "nines_api_requests_total{table=\"t1\",outcome=\"ok\"} 9\n"
        "nines_api_requests_total{table=\"t1\",op=\"Scan\",outcome=\"ok\"} notanumber\n"
        "nines_other_total{table=\"t1\",op=\"PutItem\",outcome=\"ok\"} 1000\n"
        "nines_api_requests_total{table=\"t1\",op=\"DeleteItem\",outcome=\"ok\"} 1.5e3";
    struct scrape_snapshot s;
    struct nerr e;
    is_int(scrape_parse(text, &s, &e), 0, "parse");
    is_int((int)s.n, 4, "four series: outcomes of one (table, op) merged, bad lines skipped");
    const struct scrape_series *p = get(&s, "t1", "PutItem");
    ok(p && p->n[SCRAPE_OK] == 120 && p->n[SCRAPE_CLIENT_ERROR] == 7 &&
           p->n[SCRAPE_SERVER_ERROR] == 3,
       "t1 PutItem: ok 120, client 7, server 3");
    ok(get(&s, "-", "ListTables") && get(&s, "-", "ListTables")->n[SCRAPE_OK] == 2,
       "requests without a table under \"-\"");
    ok(get(&s, "we\"ird\\t", "GetItem") != NULL, "label escapes decoded");
    ok(get(&s, "t1", "DeleteItem") && get(&s, "t1", "DeleteItem")->n[SCRAPE_OK] == 1500,
       "float notation read (last line without newline)");
    ok(!get(&s, "t1", "GetItem") && !get(&s, "t1", "Scan"),
       "unknown outcome and bad value skipped");
    scrape_snapshot_free(&s);
    is_int(scrape_parse("", &s, &e), 0, "an empty page parses");
    is_int((int)s.n, 0, "to nothing");
}

static void snap(struct scrape_snapshot *s, const char *text)
{
    struct nerr e;
    scrape_parse(text, s, &e);
}

static void test_delta(void)
{
    struct scrape_snapshot a, b, c, d;
    struct scrape_series *out = NULL;
    int reset = -1;
    snap(&a, "nines_api_requests_total{table=\"t\",op=\"PutItem\",outcome=\"ok\"} 100\n"
             "nines_api_requests_total{table=\"t\",op=\"PutItem\",outcome=\"server_error\"} 4\n"
             "nines_api_requests_total{table=\"t\",op=\"GetItem\",outcome=\"ok\"} 50\n");
    snap(&b, "nines_api_requests_total{table=\"t\",op=\"PutItem\",outcome=\"ok\"} 130\n"
             "nines_api_requests_total{table=\"t\",op=\"PutItem\",outcome=\"server_error\"} 6\n"
             "nines_api_requests_total{table=\"t\",op=\"GetItem\",outcome=\"ok\"} 50\n"
             "nines_api_requests_total{table=\"u\",op=\"GetItem\",outcome=\"client_error\"} 3\n");
    is_int(scrape_delta(&a, &b, &out, &reset), 0, "delta");
    is_int(reset, 0, "growing counters: no reset");
    /* b is sorted: (t,GetItem) (t,PutItem) (u,GetItem). */
    ok(!strcmp(out[1].op, "PutItem") && out[1].n[SCRAPE_OK] == 30 &&
           out[1].n[SCRAPE_SERVER_ERROR] == 2,
       "PutItem: 30 ok, 2 server errors in the interval");
    ok(out[0].n[SCRAPE_OK] == 0, "an idle series gives 0");
    ok(!strcmp(out[2].table, "u") && out[2].n[SCRAPE_CLIENT_ERROR] == 3,
       "a new series counts from 0");
    free(out);
    /* ninesd restarted: PutItem went back to 12 ok; GetItem still shows 50
     * by coincidence (it also began again: every counter did). */
    snap(&c, "nines_api_requests_total{table=\"t\",op=\"PutItem\",outcome=\"ok\"} 12\n"
             "nines_api_requests_total{table=\"t\",op=\"GetItem\",outcome=\"ok\"} 50\n"
             "nines_api_requests_total{table=\"u\",op=\"GetItem\",outcome=\"client_error\"} 3\n");
    is_int(scrape_delta(&b, &c, &out, &reset), 0, "delta across a restart");
    is_int(reset, 1, "a counter that went down is a restart");
    ok(out[1].n[SCRAPE_OK] == 12 && out[1].n[SCRAPE_SERVER_ERROR] == 0,
       "after a reset the delta is the new value (12), never negative");
    ok(out[0].n[SCRAPE_OK] == 50, "and every series counts from 0 (50)");
    free(out);
    /* A series that vanished (its counter has not been hit since the
     * restart) is a reset too. */
    snap(&d, "nines_api_requests_total{table=\"t\",op=\"PutItem\",outcome=\"ok\"} 40\n"
             "nines_api_requests_total{table=\"t\",op=\"GetItem\",outcome=\"ok\"} 60\n");
    is_int(scrape_delta(&c, &d, &out, &reset), 0, "delta with a vanished series");
    is_int(reset, 1, "a vanished series is a restart");
    ok(out[0].n[SCRAPE_OK] == 60 && out[1].n[SCRAPE_OK] == 40, "values taken whole");
    free(out);
    scrape_snapshot_free(&a);
    scrape_snapshot_free(&b);
    scrape_snapshot_free(&c);
    scrape_snapshot_free(&d);
}

static uint32_t be32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return be32toh(v);
}

static uint64_t be64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return be64toh(v);
}

static void test_rows(void)
{
    struct pgsink_server_sample x = {.start_ms = 946684800000ll + 1500,
                                     .interval_ms = 2000,
                                     .endpoint = "n1",
                                     .endpoint_az = "az1",
                                     .table = "t",
                                     .op = "PutItem",
                                     .requests = 10,
                                     .errors = 2,
                                     .client_errors = 1};
    struct pgsink_row *r = NULL;
    is_int(pgsink_row_server(&x, &r), 0, "server row");
    const unsigned char *p = r->data;
    ok(p[0] == 0 && p[1] == 9, "9 fields");
    ok(be32(p + 2) == 8 && be64(p + 6) == 1500000, "ts: microseconds since 2000-01-01");
    ok(be32(p + 14) == 4 && be32(p + 18) == 2000, "interval_ms int4");
    ok(be32(p + 22) == 2 && !memcmp(p + 26, "n1", 2), "endpoint text");
    /* n1, az1, t, PutItem, then three int8. */
    size_t off = 22 + 4 + 2 + 4 + 3 + 4 + 1 + 4 + 7;
    ok(be64(p + off + 4) == 10 && be64(p + off + 16) == 2 && be64(p + off + 28) == 1,
       "requests, errors, client_errors");
    is_int((int)r->len, (int)(off + 36), "row length is exact");
    free(r);
}

struct rec {
    int n;
    char what[16][160];
};

static void on_ev(void *arg, const struct cfa_event *e)
{
    struct rec *r = arg;
    if (r->n < 16)
        snprintf(r->what[r->n++], 160, "%s %s->%s %s %s since=%lld", e->rule->name,
                 cfa_state_name(e->from), cfa_state_name(e->to), e->window, e->group_key,
                 (long long)e->since_ms);
}

static int has(const struct rec *r, const char *needle)
{
    for (int i = 0; i < r->n; i++)
        if (strstr(r->what[i], needle))
            return 1;
    return 0;
}

static void add(struct cfa_engine *eng, int server, int64_t ts, const char *op, uint64_t att,
                uint64_t errs)
{
    struct cfa_sample s = {ts, 10000, "az1", "n1", "az1", "t", op, att, errs, server};
    cfa_engine_add(eng, &s);
}

static void test_server_rules(void)
{
    struct cfa_rules r;
    struct nerr e;
    struct cfa_engine *eng;
    const char *y = "alarms:\n"
                    "  - name: srv\n"
                    "    source: server\n"
                    "    objective: 99%\n"
                    "    operations: [PutItem]\n"
                    "    group_by: [endpoint_az]\n"
                    "    burn_rates: [{long: 20s, short: 10s, factor: 10}]\n"
                    "  - name: can\n"
                    "    objective: 99%\n"
                    "    group_by: [endpoint_az]\n"
                    "    burn_rates: [{long: 20s, short: 10s, factor: 10}]\n";
    is_int(cfa_rules_parse("r.yaml", y, strlen(y), &r, &e), 0, "source: server parses: %s", e.msg);
    ok(r.rules[0].server && !r.rules[1].server, "source recorded");
    cfa_engine_new(&r, &eng, &e);
    /* Server side: PutItem fails 50 %; GetItem (not in the rule) too. The
     * canary side is clean. */
    for (int i = 0; i < 2; i++) {
        add(eng, 1, i * 10000, "PutItem", 100, 50);
        add(eng, 1, i * 10000, "GetItem", 100, 50);
        add(eng, 0, i * 10000, "put", 100, 0);
    }
    struct rec rec = {0};
    cfa_engine_eval(eng, 20000, on_ev, &rec);
    ok(has(&rec, "srv ok->firing"), "the server rule fires on server errors");
    ok(!has(&rec, "can "), "the canary rule does not see server samples");
    cfa_engine_free(eng);
    /* Only GetItem errors on the server, and canary errors: nothing for srv. */
    cfa_engine_new(&r, &eng, &e);
    for (int i = 0; i < 2; i++) {
        add(eng, 1, i * 10000, "PutItem", 100, 0);
        add(eng, 1, i * 10000, "GetItem", 100, 50);
        add(eng, 0, i * 10000, "put", 100, 50);
    }
    rec.n = 0;
    cfa_engine_eval(eng, 20000, on_ev, &rec);
    ok(!has(&rec, "srv "), "operations filter: GetItem errors do not count");
    ok(has(&rec, "can ok->firing"), "and the canary rule ignores server samples' clean PutItem");
    cfa_engine_free(eng);
    cfa_rules_free(&r);

    const char *bad = "alarms:\n"
                      "  - name: srv\n"
                      "    source: server\n"
                      "    objective: 99%\n"
                      "    group_by: [canary_az]\n";
    is_int(cfa_rules_parse("r.yaml", bad, strlen(bad), &r, &e), NERR_INVALID,
           "server rule grouped by canary_az refused");
    ok(strstr(e.msg, "r.yaml:5:") && strstr(e.msg, "canary_az"), "with its position: %s", e.msg);
    const char *bad2 = "alarms:\n"
                       "  - name: x\n"
                       "    source: elsewhere\n"
                       "    objective: 99%\n";
    is_int(cfa_rules_parse("r.yaml", bad2, strlen(bad2), &r, &e), NERR_INVALID,
           "unknown source refused");
    ok(strstr(e.msg, "r.yaml:3:13"), "at the value: %s", e.msg);
}

static void test_restore(void)
{
    struct cfa_rules r;
    struct nerr e;
    struct cfa_engine *eng;
    const char *y = "alarms:\n"
                    "  - name: avail\n"
                    "    objective: 99%\n"
                    "    group_by: [table, endpoint_az]\n"
                    "    burn_rates: [{long: 1m, short: 20s, factor: 10}]\n"
                    "    hysteresis: {clear_for: 0s}\n";
    is_int(cfa_rules_parse("r.yaml", y, strlen(y), &r, &e), 0, "rules parse");
    const char *labels[4] = {"t", "az1", NULL, NULL};
    const char *wrong[4] = {"t", NULL, NULL, NULL};
    cfa_engine_new(&r, &eng, &e);
    is_int(cfa_engine_restore(eng, "avail", "1h/5m", labels, CFA_FIRING, 1000, 1000), NERR_NOTFOUND,
           "a tier the rules no longer have: NOTFOUND");
    is_int(cfa_engine_restore(eng, "gone", "1m/20s", labels, CFA_FIRING, 1000, 1000), NERR_NOTFOUND,
           "an alarm the rules no longer have: NOTFOUND");
    is_int(cfa_engine_restore(eng, "avail", "1m/20s", wrong, CFA_FIRING, 1000, 1000), NERR_INVALID,
           "labels that do not match group_by: INVALID");
    is_int(cfa_engine_restore(eng, "avail", "1m/20s", labels, CFA_FIRING, 1000, 1000), 0,
           "restore firing since t=1 s");
    struct rec rec = {0};
    cfa_engine_eval(eng, 100000, on_ev, &rec);
    is_int(rec.n, 0, "no samples: the restored alarm holds (unknown changes nothing)");
    int resent = 0;
    struct rec fir = {0};
    cfa_engine_firing(eng, 100000, on_ev, &fir);
    resent = fir.n;
    is_int(resent, 1, "and is re-sent as firing");
    ok(has(&fir, "since=1000"), "with its original start: %s", fir.what[0]);
    /* Errors stopped while no evaluator ran: clean data resolves it. */
    for (int i = 0; i < 6; i++) {
        struct cfa_sample s = {
            100000 + i * 10000, 10000, "az1", "n1", "az1", "t", "put", 100, 0, 0};
        cfa_engine_add(eng, &s);
    }
    cfa_engine_eval(eng, 160000, on_ev, &rec);
    ok(has(&rec, "avail firing->ok 1m/20s table=t,endpoint_az=az1"),
       "clean data resolves the restored alarm (%s)", rec.n ? rec.what[0] : "no event");
    cfa_engine_free(eng);
    cfa_rules_free(&r);
}

int main(void)
{
    test_parse();
    test_delta();
    test_rows();
    test_server_rules();
    test_restore();
    return done_testing();
}
