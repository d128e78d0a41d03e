/* lib/yamltree: positions, structure errors, bounds, and every checker's
 * accepts and rejects, by exact "FILE:LINE:COL: message" text. */
#include "lib/yamltree.h"
#include "t/tap.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int load(const char *text, struct yt_doc **doc, struct nerr *err)
{
    nerr_clear(err);
    *doc = NULL;
    return yt_load_string("t.yaml", text, strlen(text), doc, err);
}

/* Loads text expecting failure; checks code and the whole message. */
static void load_fails(const char *text, int code, const char *msg, const char *what)
{
    struct yt_doc *doc;
    struct nerr err;
    int rc = load(text, &doc, &err);
    is_int(rc, code, "%s: code %s", what, nerr_name(code));
    is(err.msg, msg, "%s: message", what);
    ok(doc == NULL, "%s: no document handed out", what);
    yt_free(doc);
}

static void pos(const struct yt_node *n, int line, int col, const char *what)
{
    ok(n != NULL, "%s exists", what);
    if (!n)
        return;
    ok(n->line == line && n->col == col, "%s at %d:%d (got %d:%d)", what, line, col, n->line,
       n->col);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_positions(void)
{
    const char *text = "a: 1\n"
                       "b:\n"
                       "  c: \"x\"\n"
                       "  d: [1, {e: f}]\n"
                       "list:\n"
                       "  - x\n"
                       "  - y: 2\n";
    struct yt_doc *doc;
    struct nerr err;
    int rc = load(text, &doc, &err);
    is_int(rc, 0, "sample loads");
    if (rc)
        return;
    const struct yt_node *root = yt_root(doc), *b = yt_map_get(root, "b");
    is_int(root->kind, YT_MAP, "root is a mapping");
    is_int(root->n, 3, "root has 3 pairs");
    pos(root, 1, 1, "root");
    pos(yt_map_key(root, "b"), 2, 1, "key b");
    pos(yt_map_get(root, "a"), 1, 4, "value of a");
    pos(b, 3, 3, "block mapping under b (its first key)");
    pos(yt_map_get(b, "c"), 3, 6, "quoted scalar c");
    is_int(yt_map_get(b, "c")->style, YT_DOUBLE_QUOTED, "c is double-quoted");
    const struct yt_node *d = yt_map_get(b, "d");
    pos(d, 4, 6, "flow sequence d");
    ok(d && d->kind == YT_SEQ && d->n == 2, "d is a 2-item sequence");
    pos(d->items[1], 4, 10, "flow mapping in d");
    pos(yt_map_get(d->items[1], "e"), 4, 14, "scalar f");
    const struct yt_node *list = yt_map_get(root, "list");
    pos(list, 6, 3, "block sequence (its first dash)");
    pos(list->items[0], 6, 5, "first item");
    pos(list->items[1], 7, 5, "mapping item");
    pos(yt_map_get(list->items[1], "y"), 7, 8, "value 2");
    is(root->file, "t.yaml", "node knows its file");
    is(yt_name(doc), "t.yaml", "document name");
    ok(yt_map_get(root, "zzz") == NULL, "absent key gives NULL");
    ok(yt_map_get(list, "x") == NULL, "yt_map_get on a sequence gives NULL");
    is_int(yt_errf(&err, yt_map_get(b, "c"), "bad %s %d", "thing", 7), NERR_INVALID,
           "yt_errf returns NERR_INVALID");
    is(err.msg, "t.yaml:3:6: bad thing 7", "yt_errf formats FILE:LINE:COL");
    yt_free(doc);
}

static void test_styles_and_null(void)
{
    const char *text = "a: 123\nb: \"123\"\nc: ~\nd: \"~\"\ne: null\nf: 'null'\ng:\n"
                       "h: !!str 5\ni: |\n  lit\nj: !!null ''\n";
    struct yt_doc *doc;
    struct nerr err;
    int64_t v = -1;
    if (load(text, &doc, &err)) {
        ok(0, "styles doc loads: %s", err.msg);
        return;
    }
    const struct yt_node *r = yt_root(doc);
    is_int(yt_map_get(r, "a")->style, YT_PLAIN, "123 is plain");
    is_int(yt_map_get(r, "b")->style, YT_DOUBLE_QUOTED, "\"123\" is double-quoted");
    is_int(yt_map_get(r, "f")->style, YT_SINGLE_QUOTED, "'null' is single-quoted");
    is_int(yt_map_get(r, "i")->style, YT_LITERAL, "| is literal");
    is(yt_map_get(r, "i")->text, "lit\n", "literal text");
    ok(yt_is_null(yt_map_get(r, "c")), "~ is null");
    ok(!yt_is_null(yt_map_get(r, "d")), "\"~\" is not null");
    ok(yt_is_null(yt_map_get(r, "e")), "null is null");
    ok(!yt_is_null(yt_map_get(r, "f")), "'null' is not null");
    ok(yt_is_null(yt_map_get(r, "g")), "empty value is null");
    ok(yt_is_null(yt_map_get(r, "j")), "!!null '' is null");
    ok(!yt_is_null(yt_map_get(r, "a")), "123 is not null");
    is_int(yt_as_int(yt_map_get(r, "a"), 0, 1000, &v, &err), 0, "plain 123 is an integer");
    is_int(v, 123, "its value");
    is_int(yt_as_int(yt_map_get(r, "b"), 0, 1000, &v, &err), NERR_INVALID,
           "quoted \"123\" is not an integer");
    is(err.msg, "t.yaml:2:4: expected an integer, got the string \"123\"", "message says why");
    is_int(yt_as_int(yt_map_get(r, "h"), 0, 1000, &v, &err), NERR_INVALID,
           "!!str 5 is not an integer");
    is(yt_map_get(r, "h")->tag, "tag:yaml.org,2002:str", "explicit tag kept, resolved");
    yt_free(doc);
}

static void test_structure_errors(void)
{
    load_fails("a: 1\nb: 2\na: 3\n", NERR_INVALID,
               "t.yaml:3:1: duplicate key 'a' (first at line 1, column 1)", "duplicate key");
    load_fails("x:\n  k: 1\n  j: 2\n  k: 3\n", NERR_INVALID,
               "t.yaml:4:3: duplicate key 'k' (first at line 2, column 3)",
               "duplicate key in a nested mapping");
    load_fails("{a: 1, \"a\": 2}", NERR_INVALID,
               "t.yaml:1:8: duplicate key 'a' (first at line 1, column 2)",
               "quoting does not make a key different");

    /* More than 16 keys takes the sorting path; the earliest second
     * occurrence wins, whichever key it is. */
    char big[4096];
    size_t o = 0;
    for (int i = 0; i < 60; i++) {
        int k = i == 40 ? 7 : i == 30 ? 12 : i == 50 ? 7 : i;
        o += (size_t)snprintf(big + o, sizeof big - o, "k%d: %d\n", k, i);
    }
    load_fails(big, NERR_INVALID, "t.yaml:31:1: duplicate key 'k12' (first at line 13, column 1)",
               "duplicate in a large mapping");

    load_fails("? [a]\n: 1\n", NERR_INVALID,
               "t.yaml:1:3: a mapping key must be a scalar, not a sequence", "non-scalar key");
    load_fails("--- 1\n--- 2\n", NERR_INVALID,
               "t.yaml:2:1: expected a single YAML document, found a second one", "two documents");
    load_fails("x: &a [1, 2]\ny: *a\nz: *b\n", NERR_INVALID, "t.yaml:3:4: undefined alias '*b'",
               "undefined alias");
    load_fails("x: &a [1, *a]\n", NERR_INVALID,
               "t.yaml:1:11: alias '*a' refers to a node that contains it", "recursive alias");
}

static void test_syntax_errors(void)
{
    load_fails("a: [1, 2\nb: 3\n", NERR_PARSE,
               "t.yaml:2:2: did not find expected ',' or ']' (while parsing a flow sequence at "
               "line 1, column 4)",
               "unclosed flow sequence");
    load_fails("a: b: c\n", NERR_PARSE,
               "t.yaml:1:5: mapping values are not allowed in this context",
               "mapping value in a plain scalar");
    load_fails("a:\n\t- b\n", NERR_PARSE,
               "t.yaml:2:1: found character that cannot start any token (while scanning for the "
               "next token at line 2, column 1)",
               "tab indentation");
    load_fails("a: 1\nb: \"x\xff\"\n", NERR_PARSE,
               "t.yaml:2:6: invalid leading UTF-8 octet (byte 0xff)",
               "invalid UTF-8 reported at its byte");
    load_fails("ok: 1\nbad: \"abc\n", NERR_PARSE,
               "t.yaml:3:1: found unexpected end of stream (while scanning a quoted scalar at "
               "line 2, column 6)",
               "unterminated quote");
}

static void test_empty_and_files(void)
{
    struct yt_doc *doc;
    struct nerr err;
    is_int(load("", &doc, &err), 0, "empty input loads");
    const struct yt_node *r = doc ? yt_root(doc) : NULL;
    ok(r && yt_is_null(r), "as a null root");
    pos(r, 1, 1, "empty root");
    if (r) {
        is_int(yt_expect_map(r, &err), NERR_INVALID, "a null root is not a mapping");
        is(err.msg, "t.yaml:1:1: expected a mapping, got null", "and says so at 1:1");
    }
    yt_free(doc);

    is_int(yt_load_file("/nonexistent/x.yaml", &doc, &err), NERR_IO, "missing file: NERR_IO");
    is(err.msg, "/nonexistent/x.yaml: No such file or directory", "missing file message");

    char path[] = "/tmp/yt_test_XXXXXX";
    int fd = mkstemp(path);
    const char *text = "k:\n  - v\n";
    ok(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text), "temp file written");
    close(fd);
    doc = NULL;
    is_int(yt_load_file(path, &doc, &err), 0, "file loads");
    if (doc) {
        pos(yt_map_get(yt_root(doc), "k")->items[0], 2, 5, "item from file");
        is(yt_root(doc)->file, path, "file name is the path as given");
    }
    yt_free(doc);
    unlink(path);

    is_int(yt_load_file("/tmp", &doc, &err), NERR_IO, "a directory: NERR_IO");
    is(err.msg, "/tmp: Is a directory", "directory message");
}

static void test_aliases(void)
{
    struct yt_doc *doc;
    struct nerr err;
    is_int(load("base: &b {x: 1}\nuse: *b\nlist: [*b, *b]\n", &doc, &err), 0, "aliases load");
    if (doc) {
        const struct yt_node *r = yt_root(doc), *use = yt_map_get(r, "use");
        ok(use && use->kind == YT_MAP && use == yt_map_get(r, "base"),
           "alias is the anchored node");
        is(yt_map_get(use, "x")->text, "1", "its content is reachable");
        pos(use, 1, 7, "an alias carries the anchor's position");
    }
    yt_free(doc);

    /* Billion laughs: 9 levels of 10 aliases would be 10^9 nodes. */
    char bomb[2048];
    size_t o = (size_t)snprintf(bomb, sizeof bomb, "a0: &a0 [x]\n");
    for (int l = 1; l <= 9; l++) {
        o += (size_t)snprintf(bomb + o, sizeof bomb - o, "a%d: &a%d [", l, l);
        for (int i = 0; i < 10; i++)
            o += (size_t)snprintf(bomb + o, sizeof bomb - o, "%s*a%d", i ? ", " : "", l - 1);
        o += (size_t)snprintf(bomb + o, sizeof bomb - o, "]\n");
    }
    double t0 = now();
    int rc = load(bomb, &doc, &err);
    double dt = now() - t0;
    is_int(rc, NERR_LIMIT, "alias bomb refused with NERR_LIMIT");
    /* Level 6 holds 10^6 + ... nodes: the 5th alias there tips it past 2^20. */
    is(err.msg, "t.yaml:7:30: document too large with aliases expanded (more than 1048576 nodes)",
       "at the alias that crossed the bound");
    cmp_ok(dt * 1000, "<", 1000, "refused in %.1f ms", dt * 1000);
    yt_free(doc);

    /* Five levels (10^5 expanded nodes) stays under the bound and loads. */
    char *cut = strstr(bomb, "a6:");
    *cut = '\0';
    is_int(load(bomb, &doc, &err), 0, "five levels of aliases load");
    yt_free(doc);
}

static void test_depth(void)
{
    char deep[YT_MAX_DEPTH + 100];
    memset(deep, '[', sizeof deep - 1);
    deep[sizeof deep - 1] = '\0';
    load_fails(deep, NERR_LIMIT, "t.yaml:1:257: nesting deeper than 256 levels", "nesting bound");
}

static void test_kinds_and_keys(void)
{
    struct yt_doc *doc;
    struct nerr err;
    if (load("m: {nodes: 1, ndoes: 2, zzzzzz: 3, x: 4}\ns: [1]\nv: 5\nn:\n", &doc, &err)) {
        ok(0, "keys doc loads: %s", err.msg);
        return;
    }
    const struct yt_node *r = yt_root(doc), *m = yt_map_get(r, "m"), *s = yt_map_get(r, "s"),
                         *v = yt_map_get(r, "v");
    is_int(yt_expect_map(m, &err), 0, "mapping is a mapping");
    is_int(yt_expect_seq(s, &err), 0, "sequence is a sequence");
    is_int(yt_expect_scalar(v, &err), 0, "scalar is a scalar");
    is_int(yt_expect_map(s, &err), NERR_INVALID, "sequence is not a mapping");
    is(err.msg, "t.yaml:2:4: expected a mapping, got a sequence", "expected a mapping");
    yt_expect_seq(v, &err);
    is(err.msg, "t.yaml:3:4: expected a sequence, got '5'", "expected a sequence");
    yt_expect_scalar(m, &err);
    is(err.msg, "t.yaml:1:4: expected a scalar, got a mapping", "expected a scalar");

    static const char *const a1[] = {"nodes", "ndoes", "zzzzzz", "x", NULL};
    is_int(yt_check_keys(m, a1, &err), 0, "all keys allowed");
    static const char *const a2[] = {"nodes", "zzzzzz", "x", NULL};
    is_int(yt_check_keys(m, a2, &err), NERR_INVALID, "ndoes refused");
    is(err.msg, "t.yaml:1:15: unknown key 'ndoes', did you mean 'nodes'?",
       "transposition is one edit: hint");
    static const char *const a3[] = {"nodes", "ndoes", "x", "zzzzzq", NULL};
    yt_check_keys(m, a3, &err);
    is(err.msg, "t.yaml:1:25: unknown key 'zzzzzz', did you mean 'zzzzzq'?", "substitution hint");
    static const char *const a4[] = {"nodes", "ndoes", "cluster", "x", NULL};
    yt_check_keys(m, a4, &err);
    is(err.msg, "t.yaml:1:25: unknown key 'zzzzzz'", "no close key: no hint");
    static const char *const a5[] = {"nodes", "ndoes", "zzzzzz", "id", NULL};
    yt_check_keys(m, a5, &err);
    is(err.msg, "t.yaml:1:36: unknown key 'x'", "'x' is not offered 'id' (every letter differs)");
    is_int(yt_check_keys(s, a1, &err), NERR_INVALID, "check_keys on a sequence fails");

    const struct yt_node *got = NULL;
    is_int(yt_get(m, "absent", YT_REQUIRED, &got, &err), NERR_INVALID, "missing required key");
    is(err.msg, "t.yaml:1:4: missing required key 'absent'", "reported at the mapping");
    got = v;
    is_int(yt_get(m, "absent", YT_OPTIONAL, &got, &err), 0, "missing optional key is fine");
    ok(got == NULL, "and gives NULL");
    int64_t i = 42;
    is_int(yt_get_int(m, "absent", YT_OPTIONAL, 0, 100, &i, &err), 0, "optional int absent");
    is_int(i, 42, "leaves the default");
    is_int(yt_get_int(r, "n", YT_OPTIONAL, 0, 100, &i, &err), 0, "optional int null");
    is_int(i, 42, "null counts as absent for an optional key");
    is_int(yt_get_int(r, "n", YT_REQUIRED, 0, 100, &i, &err), NERR_INVALID,
           "but not for a required one");
    is(err.msg, "t.yaml:4:3: expected an integer, got null", "type error at the null");
    is_int(yt_get_int(m, "x", YT_OPTIONAL, 0, 100, &i, &err), 0, "present int");
    is_int(i, 4, "is read");
    is_int(yt_get_int(m, "x", YT_OPTIONAL, 0, 3, &i, &err), NERR_INVALID, "range checked");
    is(err.msg, "t.yaml:1:39: 4 is out of range (0..3)", "range message at the value");
    is_int(i, 4, "out untouched on error");
    is_int(yt_get_int(s, "x", YT_OPTIONAL, 0, 3, &i, &err), NERR_INVALID,
           "yt_get_* on a non-mapping fails");
    yt_free(doc);
}

/* One value per document ("v: TEXT"), so every message is at 1:4. */
struct case_ {
    const char *text;
    int rc;
    const char *out; /* expected value printed with %llu/%lld, or message */
};

typedef int (*conv_fn)(const struct yt_node *, char *, size_t, struct nerr *);

static void run_cases(const char *what, const struct case_ *cases, size_t n, conv_fn fn)
{
    for (size_t i = 0; i < n; i++) {
        char text[256], got[256];
        struct yt_doc *doc;
        struct nerr err;
        snprintf(text, sizeof text, "v: %s\n", cases[i].text);
        if (load(text, &doc, &err)) {
            ok(0, "%s %s loads: %s", what, cases[i].text, err.msg);
            continue;
        }
        nerr_clear(&err);
        got[0] = '\0';
        int rc = fn(yt_map_get(yt_root(doc), "v"), got, sizeof got, &err);
        is_int(rc, cases[i].rc, "%s %s: rc", what, cases[i].text);
        is(rc ? err.msg : got, cases[i].out, "%s %s: %s", what, cases[i].text,
           rc ? "message" : "value");
        yt_free(doc);
    }
}

static int conv_str(const struct yt_node *n, char *buf, size_t cap, struct nerr *err)
{
    const char *s = NULL;
    int rc = yt_as_str(n, &s, err);
    if (!rc)
        snprintf(buf, cap, "%s", s);
    return rc;
}

static int conv_int(const struct yt_node *n, char *buf, size_t cap, struct nerr *err)
{
    int64_t v;
    int rc = yt_as_int(n, -1000, INT64_MAX, &v, err);
    if (!rc)
        snprintf(buf, cap, "%lld", (long long)v);
    return rc;
}

static int conv_int_full(const struct yt_node *n, char *buf, size_t cap, struct nerr *err)
{
    int64_t v;
    int rc = yt_as_int(n, INT64_MIN, INT64_MAX, &v, err);
    if (!rc)
        snprintf(buf, cap, "%lld", (long long)v);
    return rc;
}

static int conv_bool(const struct yt_node *n, char *buf, size_t cap, struct nerr *err)
{
    int v;
    int rc = yt_as_bool(n, &v, err);
    if (!rc)
        snprintf(buf, cap, "%d", v);
    return rc;
}

static int conv_size(const struct yt_node *n, char *buf, size_t cap, struct nerr *err)
{
    uint64_t v;
    int rc = yt_as_size(n, 1, 1ull << 50, &v, err);
    if (!rc)
        snprintf(buf, cap, "%llu", (unsigned long long)v);
    return rc;
}

static int conv_size_min(const struct yt_node *n, char *buf, size_t cap, struct nerr *err)
{
    uint64_t v;
    int rc = yt_as_size(n, 64ull << 10, 1ull << 30, &v, err);
    if (!rc)
        snprintf(buf, cap, "%llu", (unsigned long long)v);
    return rc;
}

static int conv_dur(const struct yt_node *n, char *buf, size_t cap, struct nerr *err)
{
    uint64_t v;
    int rc = yt_as_duration(n, 0, UINT64_MAX, &v, err);
    if (!rc)
        snprintf(buf, cap, "%llu", (unsigned long long)v);
    return rc;
}

static int conv_dur_range(const struct yt_node *n, char *buf, size_t cap, struct nerr *err)
{
    uint64_t v;
    int rc = yt_as_duration(n, 10000000, 120000000000ull, &v, err);
    if (!rc)
        snprintf(buf, cap, "%llu", (unsigned long long)v);
    return rc;
}

static int conv_hp(const struct yt_node *n, char *buf, size_t cap, struct nerr *err)
{
    struct yt_hostport hp;
    int rc = yt_as_hostport(n, &hp, err);
    if (!rc)
        snprintf(buf, cap, "%s|%d|%d", hp.host, hp.port, hp.family);
    return rc;
}

#define RUN(what, cases, fn) run_cases(what, cases, sizeof cases / sizeof *cases, fn)

static void test_converters(void)
{
    static const struct case_ str[] = {
        {"abc", 0, "abc"},
        {"123", 0, "123"},
        {"\"\"", 0, ""},
        {"'~'", 0, "~"},
        {"~", NERR_INVALID, "t.yaml:1:4: expected a string, got null"},
        {"[a]", NERR_INVALID, "t.yaml:1:4: expected a string, got a sequence"},
        {"\"a\\0b\"", NERR_INVALID, "t.yaml:1:4: string contains a NUL byte"},
        {"\"\\e[31mred\"", 0, "\x1b[31mred"},
    };
    RUN("str", str, conv_str);

    static const struct case_ ints[] = {
        {"0", 0, "0"},
        {"-5", 0, "-5"},
        {"+7", 0, "7"},
        {"4096", 0, "4096"},
        {"9223372036854775807", 0, "9223372036854775807"},
        {"-1001", NERR_INVALID, "t.yaml:1:4: -1001 is out of range (-1000..9223372036854775807)"},
        {"9223372036854775808", NERR_INVALID,
         "t.yaml:1:4: 9223372036854775808 is out of range (-1000..9223372036854775807)"},
        {"99999999999999999999999", NERR_INVALID,
         "t.yaml:1:4: 99999999999999999999999 is out of range (-1000..9223372036854775807)"},
        {"1.5", NERR_INVALID, "t.yaml:1:4: expected an integer, got '1.5'"},
        {"0x10", NERR_INVALID, "t.yaml:1:4: expected an integer, got '0x10'"},
        {"12abc", NERR_INVALID, "t.yaml:1:4: expected an integer, got '12abc'"},
        {"+", NERR_INVALID, "t.yaml:1:4: expected an integer, got '+'"},
        {"'12'", NERR_INVALID, "t.yaml:1:4: expected an integer, got the string \"12\""},
        {"null", NERR_INVALID, "t.yaml:1:4: expected an integer, got null"},
        {"{a: 1}", NERR_INVALID, "t.yaml:1:4: expected an integer, got a mapping"},
        {"!!int 12", 0, "12"},
        {"\"\\e[2J\"", NERR_INVALID,
         "t.yaml:1:4: expected an integer, got the string \"\\x1b[2J\""},
    };
    RUN("int", ints, conv_int);
    static const struct case_ ints_full[] = {
        {"-9223372036854775808", 0, "-9223372036854775808"},
        {"-9223372036854775809", NERR_INVALID,
         "t.yaml:1:4: -9223372036854775809 is out of range "
         "(-9223372036854775808..9223372036854775807)"},
    };
    RUN("int", ints_full, conv_int_full);

    static const struct case_ bools[] = {
        {"true", 0, "1"},
        {"False", 0, "0"},
        {"TRUE", 0, "1"},
        {"yes", NERR_INVALID, "t.yaml:1:4: expected a boolean (true or false), got 'yes'"},
        {"\"true\"", NERR_INVALID,
         "t.yaml:1:4: expected a boolean (true or false), got the string \"true\""},
        {"1", NERR_INVALID, "t.yaml:1:4: expected a boolean (true or false), got '1'"},
    };
    RUN("bool", bools, conv_bool);

    static const struct case_ sizes[] = {
        {"65536", 0, "65536"},
        {"100B", 0, "100"},
        {"64KiB", 0, "65536"},
        {"64MiB", 0, "67108864"},
        {"1GiB", 0, "1073741824"},
        {"1 GiB", 0, "1073741824"},
        {"\"16MiB\"", 0, "16777216"},
        {"2TiB", 0, "2199023255552"},
        {"1PiB", 0, "1125899906842624"},
        {"2PiB", NERR_INVALID, "t.yaml:1:4: size '2PiB' is above the maximum of 1PiB"},
        {"0", NERR_INVALID, "t.yaml:1:4: size '0' is below the minimum of 1B"},
        {"64MB", NERR_INVALID,
         "t.yaml:1:4: ambiguous size unit 'MB' in '64MB': use B, KiB, MiB, GiB, TiB or PiB"},
        {"1k", NERR_INVALID,
         "t.yaml:1:4: ambiguous size unit 'k' in '1k': use B, KiB, MiB, GiB, TiB or PiB"},
        {"1.5GiB", NERR_INVALID,
         "t.yaml:1:4: expected a size (bytes, or with a unit: 64KiB, 16MiB, 1GiB), got '1.5GiB'"},
        {"-1", NERR_INVALID,
         "t.yaml:1:4: expected a size (bytes, or with a unit: 64KiB, 16MiB, 1GiB), got '-1'"},
        {"MiB", NERR_INVALID,
         "t.yaml:1:4: expected a size (bytes, or with a unit: 64KiB, 16MiB, 1GiB), got 'MiB'"},
        {"5 apples", NERR_INVALID,
         "t.yaml:1:4: expected a size (bytes, or with a unit: 64KiB, 16MiB, 1GiB), got "
         "'5 apples'"},
        {"16777216TiB", NERR_INVALID, "t.yaml:1:4: size '16777216TiB' is too large"},
        {"99999999999999999999", NERR_INVALID,
         "t.yaml:1:4: size '99999999999999999999' is too large"},
        {"[1]", NERR_INVALID,
         "t.yaml:1:4: expected a size (bytes, or with a unit: 64KiB, 16MiB, 1GiB), got a "
         "sequence"},
    };
    RUN("size", sizes, conv_size);
    static const struct case_ sizes_min[] = {
        {"64KiB", 0, "65536"},
        {"65535", NERR_INVALID, "t.yaml:1:4: size '65535' is below the minimum of 64KiB"},
        {"1025MiB", NERR_INVALID, "t.yaml:1:4: size '1025MiB' is above the maximum of 1GiB"},
    };
    RUN("size", sizes_min, conv_size_min);

    static const struct case_ durs[] = {
        {"500ms", 0, "500000000"},
        {"10s", 0, "10000000000"},
        {"2m", 0, "120000000000"},
        {"1h30m", 0, "5400000000000"},
        {"1.5s", 0, "1500000000"},
        {"250us", 0, "250000"},
        {"7ns", 0, "7"},
        {"0", 0, "0"},
        {"0s", 0, "0"},
        {"1m30s500ms", 0, "90500000000"},
        {"10", NERR_INVALID, "t.yaml:1:4: expected a duration (500ms, 10s, 2m, 1h30m), got '10'"},
        {"10x", NERR_INVALID, "t.yaml:1:4: expected a duration (500ms, 10s, 2m, 1h30m), got '10x'"},
        {"1msx", NERR_INVALID,
         "t.yaml:1:4: expected a duration (500ms, 10s, 2m, 1h30m), got '1msx'"},
        {"s", NERR_INVALID, "t.yaml:1:4: expected a duration (500ms, 10s, 2m, 1h30m), got 's'"},
        {"-1s", NERR_INVALID, "t.yaml:1:4: expected a duration (500ms, 10s, 2m, 1h30m), got '-1s'"},
        {"~", NERR_INVALID, "t.yaml:1:4: expected a duration (500ms, 10s, 2m, 1h30m), got null"},
        {"6000000h", NERR_INVALID, "t.yaml:1:4: duration '6000000h' is too large"},
    };
    RUN("duration", durs, conv_dur);
    static const struct case_ durs_range[] = {
        {"10ms", 0, "10000000"},
        {"9ms", NERR_INVALID, "t.yaml:1:4: duration '9ms' is below the minimum of 10ms"},
        {"121s", NERR_INVALID, "t.yaml:1:4: duration '121s' is above the maximum of 2m"},
    };
    RUN("duration", durs_range, conv_dur_range);

    const char *hpw = "HOST:PORT (127.0.0.1:8101, [::1]:8101, db1.example:8101)";
    char m1[200], m2[200], m3[200], m4[200];
    snprintf(m1, sizeof m1, "t.yaml:1:4: expected %s, got '127.0.0.1'", hpw);
    snprintf(m2, sizeof m2, "t.yaml:1:4: expected %s, got the string \"[::1]\"", hpw);
    snprintf(m3, sizeof m3, "t.yaml:1:4: expected %s, got 'host:http'", hpw);
    snprintf(m4, sizeof m4, "t.yaml:1:4: expected %s, got the string \":8101\"", hpw);
    const struct case_ hps[] = {
        {"127.0.0.1:8101", 0, "127.0.0.1|8101|4"},
        {"\"[::1]:8101\"", 0, "::1|8101|6"},
        {"db-1.example:65535", 0, "db-1.example|65535|0"},
        {"localhost:1", 0, "localhost|1|0"},
        {"127.0.0.1:0", NERR_INVALID, "t.yaml:1:4: port 0 is out of range (1..65535)"},
        {"127.0.0.1:65536", NERR_INVALID, "t.yaml:1:4: port 65536 is out of range (1..65535)"},
        {"127.0.0.1", NERR_INVALID, m1},
        {"\"[::1]\"", NERR_INVALID, m2},
        {"host:http", NERR_INVALID, m3},
        {"\":8101\"", NERR_INVALID, m4},
        {"\"::1:8101\"", NERR_INVALID,
         "t.yaml:1:4: an IPv6 address needs brackets, as in [::1]:8101, in '::1:8101'"},
        {"\"[::g]:80\"", NERR_INVALID, "t.yaml:1:4: invalid IPv6 address '::g'"},
        {"1.2.3.256:80", NERR_INVALID, "t.yaml:1:4: invalid IPv4 address '1.2.3.256'"},
        {"bad_host:80", NERR_INVALID, "t.yaml:1:4: invalid host name in 'bad_host:80'"},
        {"-x.example:80", NERR_INVALID, "t.yaml:1:4: invalid host name in '-x.example:80'"},
    };
    RUN("hostport", hps, conv_hp);
}

static void test_fmt_size(void)
{
    char b[32];
    is(yt_fmt_size(65536, b, sizeof b), "64KiB", "64KiB");
    is(yt_fmt_size(1000, b, sizeof b), "1000B", "1000B");
    is(yt_fmt_size(0, b, sizeof b), "0B", "0B");
    is(yt_fmt_size(3ull << 30, b, sizeof b), "3GiB", "3GiB");
}

int main(void)
{
    test_positions();
    test_styles_and_null();
    test_structure_errors();
    test_syntax_errors();
    test_empty_and_files();
    test_aliases();
    test_depth();
    test_kinds_and_keys();
    test_converters();
    test_fmt_size();
    return done_testing();
}
