/*
 * report_html.c — gd_report_html (gameday/report_html.h) on fixture reports:
 * the page's parts and hooks are there with the report's numbers, every
 * string from the JSON is escaped (a report whose every string and key
 * holds < & " ' characters), an old report without the timeline keys and a
 * report of the wrong types still render, a 1-hour run at 1 s intervals
 * renders in well under a second into a bounded page, and the error paths
 * (not an object, a path that cannot be written) return their codes and
 * leave no file. What Chromium makes of the page is report_html_chromium.t.
 */
#include "gameday/report_html.h"
#include "lib/fsutil.h"
#include "t/tap.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char tmp[256];

static json_t *fixture(const char *name)
{
    char path[512];
    const char *top = getenv("NINES_TOP");
    snprintf(path, sizeof path, "%s/t/gameday/fixtures/%s", top ? top : ".", name);
    json_error_t je;
    json_t *r = json_load_file(path, 0, &je);
    if (!r)
        diag("%s: %s", path, je.text);
    return r;
}

/* Renders r into tmp/name and returns the page (malloc'd), or NULL. */
static char *render(const json_t *r, const char *name, double *secs)
{
    char path[512];
    struct nerr e = {0};
    struct timespec a, b;
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    clock_gettime(CLOCK_MONOTONIC, &a);
    int rc = gd_report_html(r, path, &e);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (secs)
        *secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    if (rc) {
        diag("gd_report_html: %s: %s", nerr_name(rc), e.msg);
        return NULL;
    }
    char *text = NULL;
    size_t len;
    if (fs_read_file(path, 64 << 20, &text, &len, &e)) {
        diag("%s", e.msg);
        return NULL;
    }
    return text;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0, l = strlen(needle);
    for (const char *p = hay ? strstr(hay, needle) : NULL; p; p = strstr(p + l, needle))
        n++;
    return n;
}

/* The element (from its opening tag to the first "</tag") that contains
 * attr, e.g. id="traffic-ok"; "" if none. Static buffer. */
static const char *element(const char *page, const char *attr)
{
    static char buf[4096];
    buf[0] = 0;
    const char *at = page ? strstr(page, attr) : NULL;
    if (!at)
        return buf;
    const char *open = at;
    while (open > page && *open != '<')
        open--;
    const char *close = strstr(at, "</");
    if (!close)
        return buf;
    const char *end = strchr(close, '>');
    size_t n = (size_t)((end ? end + 1 : close) - open);
    if (n >= sizeof buf)
        n = sizeof buf - 1;
    memcpy(buf, open, n);
    buf[n] = 0;
    return buf;
}

/* The page's x for s seconds, from the scale the svg declares. */
static double x_of(const char *page, double s)
{
    const char *t1 = strstr(page, "data-t1=\"");
    return 70.0 + s / (t1 ? strtod(t1 + 9, NULL) : 1) * (1330.0 - 70.0);
}

static void test_full(void)
{
    json_t *r = fixture("report-full.json");
    char *p = r ? render(r, "full.html", NULL) : NULL;
    ok(p != NULL, "the full fixture renders");
    if (!p) {
        json_decref(r);
        return;
    }
    ok(!strncmp(p, "<!DOCTYPE html>", 15), "an HTML document");
    is_int(count(p, "<script"), 0, "no script element, not even the one in the name");
    ok(!strstr(p, "http://") || count(p, "http://") == count(p, "xmlns=\"http://www.w3.org/"),
       "no URL other than the SVG namespace (nothing to fetch)");
    ok(strstr(p, "<span id=\"name\">az &lt;power&gt; &amp; &quot;quotes&quot; &#39;n&#39; "
                 "&lt;script&gt;alert(1)&lt;/script&gt;</span>") != NULL,
       "the name, escaped");
    is(element(p, "id=\"verdict\""), "<p id=\"verdict\" class=\"verdict fail\">FAILED</p>",
       "FAILED");
    ok(strstr(element(p, "id=\"stop\""), "stopped at 20.5 s: <span class=\"reason\">alarm "
                                         "latency&lt;p99&gt; &amp; &quot;x&quot;"),
       "the stop reason");
    is(element(p, "id=\"date\""), "<dd id=\"date\">2025-12-06 05:46:40 UTC</dd>",
       "the date of t0_wall_ms in UTC");
    is(element(p, "id=\"elapsed\""), "<dd id=\"elapsed\" data-value=\"41.25\">41.2 s</dd>",
       "elapsed, exact and rounded");
    is(element(p, "id=\"traffic-ok\""),
       "<td id=\"traffic-ok\" class=\"n\" data-value=\"12345\">12345</td>", "traffic ok");
    is(element(p, "id=\"recovery-median\""),
       "<td id=\"recovery-median\" class=\"n\" data-value=\"0.875\">0.88 s</td>",
       "recovery median");
    is(element(p, "id=\"canary-errors\""),
       "<td id=\"canary-errors\" class=\"n\" data-value=\"56\">56</td>", "canary errors");

    /* The timeline. */
    is_int(count(p, "<svg id=\"timeline\""), 1, "one timeline");
    is_int(count(p, "<g class=\"series\""), 3, "three series");
    ok(strstr(p, "<g class=\"series\" data-az=\"az1\"") &&
           strstr(p, "<g class=\"series\" data-az=\"az2\"") &&
           strstr(p, "<g class=\"series\" data-az=\"az3\""),
       "one per AZ");
    ok(strstr(p, "<g class=\"fault\" data-kind=\"power\" data-hosts=\"h2,h5\" data-azs=\"az2\" "
                 "data-start=\"5.1\" data-end=\"9.8\">"),
       "the first fault window");
    ok(strstr(p, "data-hosts=\"h1\" data-azs=\"az1\" data-start=\"18\" data-held=\"true\">"),
       "the fault held to the end");
    ok(strstr(p, "<text class=\"fault-label\" x=\"") && strstr(p, "\">power h2,h5</text>"),
       "fault labelled with kind and hosts");
    is_int(count(p, "<g class=\"alarm\" data-state=\"firing\""), 2, "two firing marks");
    is_int(count(p, "<g class=\"alarm\" data-state=\"resolved\""), 1, "one resolved mark");
    char want[128];
    snprintf(want, sizeof want, "data-at=\"12.3\" data-severity=\"page\"><line x1=\"%.1f\"",
             x_of(p, 12.3));
    ok(strstr(p, want), "the alarm at 12.3 s is at x %.1f", x_of(p, 12.3));
    ok(fabs(x_of(p, 41.25) - 1330.0) < 1e-9, "the axis ends at elapsed_s (the latest time)");
    ok(strstr(p, ">availability_by_az{endpoint_az=az2,table=nines_canary} firing</text>"),
       "the alarm's name and labels as visible text");
    ok(strstr(p, ">latency&lt;p99&gt; &amp; &quot;x&quot;{endpoint_az=az1} firing</text>"),
       "an alarm name with < & \" escaped");
    is_int(count(p, "<g class=\"step-mark\""), 4, "four step boundaries");
    ok(strstr(p, "<g class=\"stop\" data-at=\"20.5\">"), "the stop mark");

    /* Tables. */
    is_int(count(p, "<tr class=\"step"), 4, "four step rows");
    ok(strstr(element(p, "id=\"step-4\""), "<tr class=\"step failed\" id=\"step-4\">"),
       "step 4 failed");
    ok(strstr(p, "<td class=\"n recovery none\">none</td>"), "unrecovered step: none");
    ok(strstr(p, "<td class=\"n p99\" data-value=\"250.75\">250.8</td>"), "a step's p99");
    is_int(count(p, "<tr class=\"expectation pass\""), 2, "two expectations met");
    is_int(count(p, "<tr class=\"expectation fail\""), 2, "two not");
    ok(strstr(p, ">2 of 4 expectations met</p>"), "the summary of expectations");
    ok(strstr(p, "<td class=\"detail\">did not fire within 30s &lt;never&gt; &amp; "
                 "&#39;never&#39;</td>"),
       "an expectation's detail, escaped");
    ok(strstr(p, "<div class=\"check fail\" id=\"verify-checkers\""), "checkers FAIL");
    ok(strstr(p, "<div class=\"check pass\" id=\"verify-replicas\""), "replicas PASS");
    ok(strstr(p, "<div class=\"check fail\" id=\"verify-scrub\""), "scrub FAIL");
    ok(strstr(p, "<tr class=\"anomaly\" id=\"anomaly-1\" data-kind=\"lost-write\">") &&
           strstr(p, "<tr class=\"anomaly\" id=\"anomaly-3\" data-kind=\"stale-read\">"),
       "anomaly rows with ids");
    ok(strstr(p, "<td class=\"key\">k&lt;17&gt;&amp;&#39;&quot;</td>"), "an anomaly's key");
    ok(strstr(p, "<tr data-kind=\"lost-write\"><td class=\"kind\">lost-write</td><td "
                 "class=\"n count\" data-value=\"2\">2</td></tr>") &&
           !strstr(p, "data-kind=\"g1c\""),
       "anomaly counts, the zero ones left out");
    ok(strstr(p, "<tr class=\"finding\" id=\"finding-1\">") &&
           strstr(p, "<td class=\"key\">k&lt;9&gt;&amp;&quot;&#39;</td><td "
                     "class=\"node\">h3</td><td class=\"what\">missing</td>"),
       "a scrub finding with its key and node");
    free(p);
    json_decref(r);
}

static void test_old(void)
{
    json_t *r = fixture("report-old.json");
    char *p = r ? render(r, "old.html", NULL) : NULL;
    ok(p != NULL, "a report without the new keys renders");
    is(element(p, "id=\"verdict\""), "<p id=\"verdict\" class=\"verdict pass\">PASSED</p>",
       "PASSED");
    ok(strstr(p ? p : "", "no per-AZ timeline in this report"), "says there is no timeline");
    is_int(count(p, "<g class=\"series\""), 0, "no series");
    is_int(count(p, "class=\"expectation"), 0, "no expectations");
    is(element(p, "id=\"date\""), "<dd id=\"date\">-</dd>", "no date");
    is_int(count(p, "<g class=\"step-mark\""), 2, "the steps still mark the timeline");
    ok(strstr(p ? p : "", "<p id=\"no-anomalies\">"), "no anomalies");
    free(p);
    json_decref(r);
}

/* Every string and object key of v with m prepended (a fresh value). */
static json_t *poison(const json_t *v, const char *m)
{
    char buf[1024];
    if (json_is_string(v)) {
        snprintf(buf, sizeof buf, "%s%s", m, json_string_value(v));
        return json_string(buf);
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i;
        const json_t *x;
        json_array_foreach(v, i, x) json_array_append_new(a, poison(x, m));
        return a;
    }
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *k;
        const json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            /* The renderer reads the report's own keys; poison the keys
             * that are data (AZ names, label names, anomaly kinds). */
            int data_key = json_object_get(v, "az1") || json_object_get(v, "endpoint_az") ||
                           json_object_get(v, "lost-write");
            snprintf(buf, sizeof buf, "%s%s", data_key ? m : "", k);
            json_object_set_new(o, buf, poison(x, m));
        }
        return o;
    }
    return json_deep_copy(v);
}

static void test_escaping(void)
{
    const char *m = "QZ<&\"'>";
    const char *m_esc = "QZ&lt;&amp;&quot;&#39;&gt;";
    json_t *r0 = fixture("report-full.json");
    json_t *r = r0 ? poison(r0, m) : NULL;
    /* The timeline's AZ list must name the poisoned series keys too. */
    char *p = r ? render(r, "poison.html", NULL) : NULL;
    ok(p != NULL, "a report whose every string holds < & \" ' renders");
    size_t raw = count(p, "QZ"), escaped = count(p, m_esc);
    cmp_ok(escaped, ">", 60, "the strings are on the page (%zu)", escaped);
    is_int(raw, escaped, "and every one of them is escaped");
    ok(strstr(p ? p : "", "<g class=\"series\" data-az=\"QZ&lt;&amp;&quot;&#39;&gt;az1\""),
       "an AZ name in an attribute");
    ok(strstr(p ? p : "", "{QZ&lt;&amp;&quot;&#39;&gt;endpoint_az=QZ&lt;"),
       "a label name and value");
    free(p);
    json_decref(r);
    json_decref(r0);
}

static void test_wrong_types(void)
{
    json_error_t je;
    json_t *r = json_loads(
        "{\"name\": 5, \"passed\": \"yes\", \"steps\": \"x\", \"seed\": null, \"elapsed_s\": [],"
        " \"timeline\": {\"interval_s\": -1, \"azs\": [1, \"az1\", \"az1\"], \"series\": {\"az1\": "
        "{\"ok\": [1, \"a\", null, {}], \"errors\": 7, \"p99_ms\": [null]}, \"az2\": 3}},"
        " \"faults\": [{\"start_s\": \"x\"}, 4, {\"start_s\": 1, \"end_s\": 0.5, \"hosts\": [1]}],"
        " \"alarms\": [{\"at_s\": -3, \"labels\": [1]}, null],"
        " \"expectations\": [{\"passed\": 1, \"step\": \"x\"}], \"stop\": {\"at_s\": 1e300},"
        " \"canaries\": [], \"verify\": {\"checkers\": {\"anomalies\": [], \"first\": [1, {}]},"
        " \"scrub\": {\"findings\": [2, {\"table\": \"t\", \"partition\": 2, \"key\": "
        "{\"pk\": {\"S\": \"k<1>\"}}, \"replica\": \"n3\", \"kind\": \"missing\"}]}, \"x\": 1}}",
        0, &je);
    ok(r != NULL, "the odd report parses: %s", r ? "" : je.text);
    char *p = r ? render(r, "odd.html", NULL) : NULL;
    ok(p != NULL, "a report of the wrong types still renders");
    is(element(p, "id=\"verdict\""), "<p id=\"verdict\" class=\"verdict fail\">FAILED</p>",
       "passed that is not true is FAILED");
    ok(strstr(p ? p : "", "<td class=\"key\">{&quot;pk&quot;:{&quot;S&quot;:&quot;k&lt;1&gt;"),
       "a key given as an AttributeValue shows as its JSON");
    ok(strstr(p ? p : "", "<td class=\"group\">t/2</td><td class=\"key\">") &&
           strstr(p ? p : "", "<td class=\"node\">n3</td><td class=\"what\">missing</td>"),
       "a finding as nines scrub --json writes it: table/partition, replica, kind");
    is_int(count(p, "<g class=\"series\""), 2,
           "one group per series key, however often azs names it");
    free(p);
    json_decref(r);
}

/* A 1-hour run at 1 s intervals: 3 AZs x 3600 points, 120 faults, 400
 * alarms, 240 steps. */
static json_t *big_report(void)
{
    json_t *r = json_pack("{s:s,s:i,s:b,s:f,s:I}", "name", "hour", "seed", 1, "passed", 1,
                          "elapsed_s", 3600.0, "t0_wall_ms", (json_int_t)1765000000000);
    json_t *series = json_object(), *azs = json_array();
    for (int z = 0; z < 3; z++) {
        char az[8];
        snprintf(az, sizeof az, "az%d", z + 1);
        json_t *okv = json_array(), *er = json_array(), *p99 = json_array();
        for (int i = 0; i < 3600; i++) {
            json_array_append_new(okv, json_integer(100 + (i * 7 + z) % 50));
            json_array_append_new(er, json_integer(i % 97 == 0 ? 5 : 0));
            json_array_append_new(p99, i % 50 == 3 ? json_null() : json_real(10 + i % 13 * 0.5));
        }
        json_object_set_new(series, az,
                            json_pack("{s:o,s:o,s:o}", "ok", okv, "errors", er, "p99_ms", p99));
        json_array_append_new(azs, json_string(az));
    }
    json_object_set_new(r, "timeline",
                        json_pack("{s:i,s:o,s:o}", "interval_s", 1, "azs", azs, "series", series));
    json_t *faults = json_array(), *alarms = json_array(), *steps = json_array();
    for (int i = 0; i < 120; i++)
        json_array_append_new(faults,
                              json_pack("{s:i,s:s,s:s,s:[s],s:[s],s:f,s:f}", "step", i, "kind",
                                        "power", "label", "round", "hosts", "h2", "azs", "az2",
                                        "start_s", i * 30.0 + 1, "end_s", i * 30.0 + 11));
    for (int i = 0; i < 400; i++)
        json_array_append_new(alarms, json_pack("{s:f,s:s,s:{s:s},s:s}", "at_s", i * 9.0, "alarm",
                                                "availability_by_az", "labels", "endpoint_az",
                                                "az2", "state", i % 2 ? "resolved" : "firing"));
    for (int i = 0; i < 240; i++)
        json_array_append_new(steps, json_pack("{s:i,s:s,s:f,s:f,s:i,s:i}", "index", i + 1, "label",
                                               "step", "start_s", i * 15.0, "end_s", i * 15.0 + 15,
                                               "ok", 1500, "errors", 0));
    json_object_set_new(r, "faults", faults);
    json_object_set_new(r, "alarms", alarms);
    json_object_set_new(r, "steps", steps);
    return r;
}

static void test_big(void)
{
    json_t *r = big_report();
    double secs = 0;
    char *p = render(r, "big.html", &secs);
    ok(p != NULL, "a 1-hour report renders");
    cmp_ok((long)(secs * 1000), "<", 300, "in %.3f s (well under a second)", secs);
    size_t len = p ? strlen(p) : 0;
    cmp_ok((long)len, "<", 2 << 20, "into %zu bytes", len);
    /* At most two points per pixel column: 1260 columns. */
    const char *ok_path = p ? strstr(p, "<path class=\"ok\"") : NULL;
    const char *end = ok_path ? strstr(ok_path, "/>") : NULL;
    size_t pts = 0;
    for (const char *c = ok_path; c && c < end; c++)
        pts += *c == 'L' || *c == 'M';
    cmp_ok((long)pts, ">", 1000, "the ok line keeps the shape (%zu points)", pts);
    cmp_ok((long)pts, "<=", 2 * 1261, "and at most two points a pixel");
    is_int(count(p, "<g class=\"alarm\""), 400, "every alarm is marked");
    free(p);
    json_decref(r);
}

static void test_errors(void)
{
    struct nerr e = {0};
    char path[512];
    json_t *a = json_array();
    snprintf(path, sizeof path, "%s/array.html", tmp);
    is_int(gd_report_html(a, path, &e), NERR_INVALID, "an array is not a report");
    ok(access(path, F_OK) != 0, "and nothing was written");
    json_decref(a);
    json_t *r = json_pack("{s:s}", "name", "x");
    snprintf(path, sizeof path, "%s/no/such/dir/report.html", tmp);
    is_int(gd_report_html(r, path, &e), NERR_IO, "a directory that does not exist: NERR_IO");
    ok(strstr(e.msg, "no/such/dir") != NULL, "naming the path: %s", e.msg);

    /* Atomic replacement: the old page is replaced whole, no temp left. */
    snprintf(path, sizeof path, "%s/atomic", tmp);
    struct nerr e2 = {0};
    fs_mkdir_p(path, &e2);
    snprintf(path, sizeof path, "%s/atomic/report.html", tmp);
    fs_write_file(path, "old page that is longer than nothing", 0644, &e2);
    is_int(gd_report_html(r, path, &e), 0, "over an existing page");
    char *text = NULL;
    size_t len = 0;
    fs_read_file(path, 1 << 20, &text, &len, &e2);
    ok(text && !strncmp(text, "<!DOCTYPE html>", 15) && !strstr(text, "old page"),
       "the new page replaced it");
    free(text);
    snprintf(path, sizeof path, "%s/atomic", tmp);
    DIR *d = opendir(path);
    int n = 0;
    for (struct dirent *de; d && (de = readdir(d));)
        n += de->d_name[0] != '.';
    if (d)
        closedir(d);
    is_int(n, 1, "and no temporary file is left beside it");
    json_decref(r);
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/nines-rhtml-XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_full();
    test_old();
    test_escaping();
    test_wrong_types();
    test_big();
    test_errors();
    struct nerr e = {0};
    fs_rm_rf(tmp, &e);
    return done_testing();
}
