/*
 * test_av.c — AttributeValues, exact numbers and the key encoding (proto/av.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/av.h"
#include "t/tap.h"

static char *dump(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

/* ------------------------------------------------------------ numbers */

static void test_num_parse_format(void)
{
    static const struct {
        const char *in, *out;
    } good[] = {
        {"0", "0"},
        {"-0", "0"},
        {"+0.000", "0"},
        {"0e999999", "0"},
        {"00.010", "0.01"},
        {"1.50", "1.5"},
        {"1e3", "1000"},
        {"1E+3", "1000"},
        {"-1.5e-3", "-0.0015"},
        {".5", "0.5"},
        {"5.", "5"},
        {"+7", "7"},
        {"123.456", "123.456"},
        {"-100", "-100"},
        {"1200e-2", "12"},
        {"0001000", "1000"},
        /* 38 significant digits, with leading and trailing zeros around them */
        {"12345678901234567890123456789012345678", "12345678901234567890123456789012345678"},
        {"0.00012345678901234567890123456789012345678000",
         "0.00012345678901234567890123456789012345678"},
        {"1000000000000000000000000000000000000000000000",
         "1000000000000000000000000000000000000000000000"},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        struct av_num n;
        struct nerr err = {0};
        char buf[AV_NUM_STR_MAX];
        int rc = av_num_parse(good[i].in, &n, &err);
        is_int(rc, 0, "parse %s (%s)", good[i].in, err.msg);
        if (rc == 0) {
            av_num_format(&n, buf, sizeof buf);
            is(buf, good[i].out, "format %s", good[i].in);
            /* canonical text re-parses to the same number */
            struct av_num m;
            ok(av_num_parse(buf, &m, NULL) == 0 && av_num_cmp(&n, &m) == 0 && m.mant == n.mant &&
                   m.exp == n.exp && m.neg == n.neg,
               "round trip %s", good[i].in);
        }
    }
    /* the range limits, with expected text built from digit counts */
    static const struct {
        const char *in, *head;
        int zeros;
        const char *tail;
    } lim[] = {
        {"99999999999999999999999999999999999999e88", "99999999999999999999999999999999999999", 88,
         ""},
        {"1e125", "1", 125, ""},
        {"-1e-130", "-0.", 129, "1"},
        {"9.9999999999999999999999999999999999999e125", "99999999999999999999999999999999999999",
         88, ""},
    };
    for (size_t i = 0; i < sizeof lim / sizeof lim[0]; i++) {
        char want[AV_NUM_STR_MAX], got[AV_NUM_STR_MAX];
        struct av_num x;
        size_t o = (size_t)snprintf(want, sizeof want, "%s", lim[i].head);
        memset(want + o, '0', (size_t)lim[i].zeros);
        snprintf(want + o + (size_t)lim[i].zeros, sizeof want - o - (size_t)lim[i].zeros, "%s",
                 lim[i].tail);
        is_int(av_num_parse(lim[i].in, &x, NULL), 0, "parse limit %s", lim[i].in);
        av_num_format(&x, got, sizeof got);
        is(got, want, "format limit %s", lim[i].in);
    }
    /* the longest text fits AV_NUM_STR_MAX and too small a buffer is refused */
    struct av_num n;
    char buf[AV_NUM_STR_MAX];
    av_num_parse("-1.2345678901234567890123456789012345678e-130", &n, NULL);
    int len = av_num_format(&n, buf, sizeof buf);
    cmp_ok(len, ">", 160, "longest canonical text has %d chars", len);
    is_int(av_num_format(&n, buf, 10), NERR_LIMIT, "short buffer refused");

    static const struct {
        const char *in, *msg;
    } bad[] = {
        {"", "The parameter cannot be converted to a numeric value"},
        {"b", "The parameter cannot be converted to a numeric value: b"},
        {"1x", "The parameter cannot be converted to a numeric value: 1x"},
        {"-", "The parameter cannot be converted to a numeric value: -"},
        {".", "The parameter cannot be converted to a numeric value: ."},
        {"1e", "The parameter cannot be converted to a numeric value: 1e"},
        {"1e+", "The parameter cannot be converted to a numeric value: 1e+"},
        {" 1", "The parameter cannot be converted to a numeric value:  1"},
        {"1.2.3", "The parameter cannot be converted to a numeric value: 1.2.3"},
        {"NaN", "The parameter cannot be converted to a numeric value: NaN"},
        {"Infinity", "The parameter cannot be converted to a numeric value: Infinity"},
        {"0x10", "The parameter cannot be converted to a numeric value: 0x10"},
        {"123456789012345678901234567890123456789",
         "Attempting to store more than 38 significant digits in a Number"},
        {"-1.23456789012345678901234567890123456789",
         "Attempting to store more than 38 significant digits in a Number"},
        {"1.00000000000000000000000000000000000001",
         "Attempting to store more than 38 significant digits in a Number"},
        {"1e126", "Number overflow. Attempting to store a number with magnitude larger than "
                  "supported range"},
        {"-1e126", "Number overflow. Attempting to store a number with magnitude larger than "
                   "supported range"},
        {"10e125", "Number overflow. Attempting to store a number with magnitude larger than "
                   "supported range"},
        {"1e99999999999999999", "Number overflow. Attempting to store a number with magnitude "
                                "larger than supported range"},
        {"1e-131", "Number underflow. Attempting to store a number with magnitude smaller than "
                   "supported range"},
        {"-0.1e-130", "Number underflow. Attempting to store a number with magnitude smaller than "
                      "supported range"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct nerr err = {0};
        int rc = av_num_parse(bad[i].in, &n, &err);
        is_int(rc, NERR_INVALID, "reject '%s'", bad[i].in);
        is(err.msg, bad[i].msg, "message for '%s'", bad[i].in);
    }
}

static void num_op(const char *a, const char *op, const char *b, const char *want,
                   const char *want_err)
{
    struct av_num x, y, r;
    struct nerr err = {0};
    char buf[AV_NUM_STR_MAX];
    av_num_parse(a, &x, NULL);
    av_num_parse(b, &y, NULL);
    int rc = op[0] == '+' ? av_num_add(&x, &y, &r, &err) : av_num_sub(&x, &y, &r, &err);
    if (want) {
        char wbuf[AV_NUM_STR_MAX];
        struct av_num w;
        av_num_parse(want, &w, NULL); /* expected value, written compactly */
        av_num_format(&w, wbuf, sizeof wbuf);
        if (rc == 0)
            av_num_format(&r, buf, sizeof buf);
        is(rc == 0 ? buf : err.msg, wbuf, "%s %s %s", a, op, b);
    } else {
        is_int(rc, NERR_INVALID, "%s %s %s fails", a, op, b);
        is(err.msg, want_err, "%s %s %s message", a, op, b);
    }
}

static void test_num_arith(void)
{
    num_op("1", "+", "2", "3", NULL);
    num_op("0.1", "+", "0.2", "0.3", NULL);
    num_op("999", "+", "1", "1000", NULL);
    num_op("1000", "-", "1", "999", NULL);
    num_op("1", "-", "1000", "-999", NULL);
    num_op("-5", "+", "5", "0", NULL);
    num_op("-5", "-", "-5", "0", NULL);
    num_op("0", "-", "7.25", "-7.25", NULL);
    num_op("1.005", "-", "0.005", "1", NULL);
    num_op("-1.5", "+", "-2.75", "-4.25", NULL);
    /* carries through all 38 digits */
    num_op("99999999999999999999999999999999999999", "+", "1",
           "100000000000000000000000000000000000000", NULL);
    /* borrow through all digits */
    num_op("100000000000000000000000000000000000000", "-", "1",
           "99999999999999999999999999999999999999", NULL);
    /* wildly different exponents, still exact within 38 digits */
    num_op("1e20", "+", "1e-17", "100000000000000000000.00000000000000001", NULL);
    num_op("1e125", "-", "1e125", "0", NULL);
    num_op("1e-130", "+", "1e-130", "2e-130", NULL);
    num_op("1e100", "-", "-1e100", "2e100", NULL);
    /* exact result would need more digits */
    num_op("1e20", "+", "1e-18", NULL,
           "Attempting to store more than 38 significant digits in a Number");
    num_op("1e125", "+", "1e-130", NULL,
           "Attempting to store more than 38 significant digits in a Number");
    num_op("99999999999999999999999999999999999999", "+", "0.1", NULL,
           "Attempting to store more than 38 significant digits in a Number");
    num_op(
        "9.9e125", "+", "1e125", NULL,
        "Number overflow. Attempting to store a number with magnitude larger than supported range");
    num_op(
        "-9.9e125", "-", "1e125", NULL,
        "Number overflow. Attempting to store a number with magnitude larger than supported range");
    num_op("1.1e-130", "-", "1e-130", NULL,
           "Number underflow. Attempting to store a number with magnitude smaller than supported "
           "range");

    static const struct {
        const char *a, *b;
        int c;
    } cmps[] = {{"1", "2", -1},
                {"2", "1", 1},
                {"1.0", "1", 0},
                {"-1", "1", -1},
                {"-2", "-1", -1},
                {"0", "-0.0001", 1},
                {"0.1", "0.09999", 1},
                {"1e10", "9999999999", 1},
                {"-1e10", "-9999999999", -1},
                {"12", "120", -1},
                {"0", "0e5", 0}};
    for (size_t i = 0; i < sizeof cmps / sizeof cmps[0]; i++) {
        struct av_num x, y;
        av_num_parse(cmps[i].a, &x, NULL);
        av_num_parse(cmps[i].b, &y, NULL);
        is_int(av_num_cmp(&x, &y), cmps[i].c, "cmp %s %s", cmps[i].a, cmps[i].b);
    }
}

/* ------------------------------------------------------------ validation */

static void test_validate(void)
{
    static const struct {
        const char *in, *out;
    } good[] = {
        {"{\"S\":\"x\"}", "{\"S\":\"x\"}"},
        {"{\"S\":\"\"}", "{\"S\":\"\"}"},
        {"{\"N\":\"012.50\"}", "{\"N\":\"12.5\"}"},
        {"{\"B\":\"AAEC\"}", "{\"B\":\"AAEC\"}"},
        {"{\"B\":\"Yh==\"}", "{\"B\":\"Yg==\"}"}, /* pad bits zeroed */
        {"{\"B\":\"\"}", "{\"B\":\"\"}"},
        {"{\"BOOL\":false}", "{\"BOOL\":false}"},
        {"{\"NULL\":true}", "{\"NULL\":true}"},
        {"{\"M\":{\"a\":{\"N\":\"1e2\"},\"b\":{\"L\":[{\"N\":\"-0\"},{\"S\":\"s\"}]}}}",
         "{\"M\":{\"a\":{\"N\":\"100\"},\"b\":{\"L\":[{\"N\":\"0\"},{\"S\":\"s\"}]}}}"},
        {"{\"L\":[]}", "{\"L\":[]}"},
        {"{\"M\":{}}", "{\"M\":{}}"},
        {"{\"SS\":[\"b\",\"a\"]}", "{\"SS\":[\"b\",\"a\"]}"},
        {"{\"NS\":[\"1.0\",\"2e1\",\"-3\"]}", "{\"NS\":[\"1\",\"20\",\"-3\"]}"},
        {"{\"BS\":[\"Yg==\",\"Yw==\"]}", "{\"BS\":[\"Yg==\",\"Yw==\"]}"},
        {"{\"S\":\"x\",\"extra\":1}", "{\"S\":\"x\"}"}, /* unknown members dropped */
        {"{\"S\":\"x\",\"N\":null}", "{\"S\":\"x\"}"},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        json_t *j = json_loads(good[i].in, 0, NULL);
        struct nerr err = {0};
        int rc = av_validate(j, &err);
        is_int(rc, 0, "valid %s (%s)", good[i].in, err.msg);
        char *d = dump(j);
        is(d, good[i].out, "normalized %s", good[i].in);
        /* validation is idempotent: a second pass keeps the bytes */
        av_validate(j, NULL);
        char *d2 = dump(j);
        is(d2, d, "idempotent %s", good[i].in);
        free(d);
        free(d2);
        json_decref(j);
    }

    static const struct {
        const char *in;
        int code;
        const char *msg;
    } bad[] = {
        {"{}", NERR_INVALID,
         "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"},
        {"{\"X\":1}", NERR_INVALID,
         "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"},
        {"{\"S\":\"a\",\"N\":\"1\"}", NERR_INVALID,
         "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the "
         "supported datatypes"},
        {"{\"NULL\":false}", NERR_INVALID,
         "One or more parameter values were invalid: Null attribute value types must have the "
         "value of true"},
        {"{\"SS\":[]}", NERR_INVALID,
         "One or more parameter values were invalid: An string set  may not be empty"},
        {"{\"NS\":[]}", NERR_INVALID,
         "One or more parameter values were invalid: An number set  may not be empty"},
        {"{\"BS\":[]}", NERR_INVALID,
         "One or more parameter values were invalid: Binary sets should not be empty"},
        {"{\"SS\":[\"a\",\"a\"]}", NERR_INVALID,
         "One or more parameter values were invalid: Input collection [a, a] contains duplicates."},
        {"{\"BS\":[\"Yg==\",\"Yg==\"]}", NERR_INVALID,
         "One or more parameter values were invalid: Input collection [Yg==, Yg==]of type BS "
         "contains duplicates."},
        {"{\"NS\":[\"1\",\"1.0\"]}", NERR_INVALID, "Input collection contains duplicates"},
        {"{\"NS\":[\"1\",\"b\"]}", NERR_INVALID,
         "The parameter cannot be converted to a numeric value: b"},
        {"{\"N\":\"1e126\"}", NERR_INVALID,
         "Number overflow. Attempting to store a number with magnitude larger than supported "
         "range"},
        {"{\"M\":{\"a\":{\"L\":[{}]}}}", NERR_INVALID,
         "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"},
        {"{\"L\":[{\"SS\":[]}]}", NERR_INVALID,
         "One or more parameter values were invalid: An string set  may not be empty"},
        {"{\"S\":5}", NERR_PARSE, "Unexpected JSON type for S: expected a string"},
        {"{\"B\":\"abc\"}", NERR_PARSE,
         "Base64 encoded length is expected a multiple of 4 bytes but found: 3"},
        {"{\"B\":\"ab!=\"}", NERR_PARSE, "Invalid Base64 character: '!'"},
        {"{\"BOOL\":\"true\"}", NERR_PARSE, "Unexpected JSON type for BOOL: expected a boolean"},
        {"\"x\"", NERR_PARSE, "Start of structure or map found where not expected"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *j = json_loads(bad[i].in, JSON_DECODE_ANY, NULL);
        struct nerr err = {0};
        is_int(av_validate(j, &err), bad[i].code, "invalid %s", bad[i].in);
        is(err.msg, bad[i].msg, "message for %s", bad[i].in);
        json_decref(j);
    }

    /* nesting: 32 levels of M/L are fine, 33 are not */
    for (int levels = 32; levels <= 33; levels++) {
        json_t *v = json_pack("{s:s}", "S", "leaf");
        for (int i = 0; i < levels; i++)
            v = i % 2 ? json_pack("{s:[o]}", "L", v) : json_pack("{s:{s:o}}", "M", "k", v);
        struct nerr err = {0};
        int rc = av_validate(v, &err);
        if (levels == 32)
            is_int(rc, 0, "32 nesting levels accepted");
        else
            is(err.msg, "Nesting Levels have exceeded supported limits",
               "33 nesting levels refused");
        json_decref(v);
    }

    /* items */
    json_t *item = json_loads("{\"pk\":{\"S\":\"a\"},\"n\":{\"N\":\"1.50\"}}", 0, NULL);
    is_int(av_validate_item(item, NULL), 0, "item valid");
    is(json_string_value(json_object_get(json_object_get(item, "n"), "N")), "1.5",
       "item N normalized");
    json_decref(item);
    item = json_loads("{\"\":{\"S\":\"a\"}}", 0, NULL);
    is_int(av_validate_item(item, NULL), NERR_INVALID, "empty attribute name refused");
    json_decref(item);
    item = json_loads("{\"a\":{\"NS\":[]}}", 0, NULL);
    struct nerr err = {0};
    av_validate_item(item, &err);
    is(err.msg, "One or more parameter values were invalid: An number set  may not be empty",
       "item value checked");
    json_decref(item);
}

static void test_size(void)
{
    static const struct {
        const char *item;
        size_t size;
    } t[] = {
        {"{\"ab\":{\"S\":\"xyz\"}}", 2 + 3},
        {"{\"a\":{\"S\":\"\xc3\xa9\"}}", 1 + 2},    /* UTF-8 bytes */
        {"{\"a\":{\"N\":\"12345\"}}", 1 + 3 + 1},   /* (5+1)/2 + 1 */
        {"{\"a\":{\"N\":\"1000000\"}}", 1 + 1 + 1}, /* one significant digit */
        {"{\"a\":{\"N\":\"-12345678901234567890123456789012345678\"}}", 1 + 19 + 1},
        {"{\"a\":{\"B\":\"AAEC\"}}", 1 + 3},
        {"{\"a\":{\"B\":\"Yg==\"}}", 1 + 1},
        {"{\"a\":{\"BOOL\":true},\"b\":{\"NULL\":true}}", 1 + 1 + 1 + 1},
        {"{\"a\":{\"L\":[{\"S\":\"xy\"},{\"N\":\"1\"}]}}", 1 + 3 + (1 + 2) + (1 + 2)},
        {"{\"a\":{\"M\":{\"kk\":{\"S\":\"v\"}}}}", 1 + 3 + (2 + 1 + 1)},
        {"{\"a\":{\"SS\":[\"x\",\"yz\"]},\"b\":{\"NS\":[\"1\",\"123\"]},\"c\":{\"BS\":[\"AAEC\"]}}",
         1 + 3 + 1 + (2 + 3) + 1 + 3},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        json_t *j = json_loads(t[i].item, 0, NULL);
        av_validate_item(j, NULL);
        is_int(av_item_size(j), t[i].size, "size of %s", t[i].item);
        json_decref(j);
    }
}

static void test_equal_compare(void)
{
    static const struct {
        const char *a, *b;
        int eq;
    } eqs[] = {
        {"{\"N\":\"1\"}", "{\"N\":\"1.00\"}", 1},
        {"{\"N\":\"1\"}", "{\"S\":\"1\"}", 0},
        {"{\"S\":\"a\"}", "{\"S\":\"a\"}", 1},
        {"{\"S\":\"a\"}", "{\"S\":\"A\"}", 0},
        {"{\"B\":\"Yg==\"}", "{\"B\":\"Yh==\"}", 1},
        {"{\"SS\":[\"a\",\"b\"]}", "{\"SS\":[\"b\",\"a\"]}", 1},
        {"{\"SS\":[\"a\",\"b\"]}", "{\"SS\":[\"a\",\"c\"]}", 0},
        {"{\"NS\":[\"1\",\"2.0\"]}", "{\"NS\":[\"2\",\"1e0\"]}", 1},
        {"{\"BS\":[\"Yg==\",\"Yw==\"]}", "{\"BS\":[\"Yw==\",\"Yg==\"]}", 1},
        {"{\"L\":[{\"N\":\"1\"},{\"S\":\"x\"}]}", "{\"L\":[{\"N\":\"1.0\"},{\"S\":\"x\"}]}", 1},
        {"{\"L\":[{\"N\":\"1\"},{\"S\":\"x\"}]}", "{\"L\":[{\"S\":\"x\"},{\"N\":\"1\"}]}", 0},
        {"{\"M\":{\"a\":{\"N\":\"1\"},\"b\":{\"NULL\":true}}}",
         "{\"M\":{\"b\":{\"NULL\":true},\"a\":{\"N\":\"1\"}}}", 1},
        {"{\"M\":{\"a\":{\"N\":\"1\"}}}", "{\"M\":{\"a\":{\"N\":\"1\"},\"b\":{\"NULL\":true}}}", 0},
        {"{\"BOOL\":true}", "{\"BOOL\":false}", 0},
        {"{\"BOOL\":true}", "{\"BOOL\":true}", 1},
    };
    for (size_t i = 0; i < sizeof eqs / sizeof eqs[0]; i++) {
        json_t *a = json_loads(eqs[i].a, 0, NULL), *b = json_loads(eqs[i].b, 0, NULL);
        is_int(av_equal(a, b), eqs[i].eq, "%s %s %s", eqs[i].a, eqs[i].eq ? "==" : "!=", eqs[i].b);
        json_decref(a);
        json_decref(b);
    }
    static const struct {
        const char *a, *b;
        int rc, c;
    } cmps[] = {
        {"{\"S\":\"a\"}", "{\"S\":\"b\"}", 0, -1},
        {"{\"S\":\"ab\"}", "{\"S\":\"a\"}", 0, 1},
        {"{\"S\":\"Z\"}", "{\"S\":\"a\"}", 0, -1},
        {"{\"S\":\"\xc3\xa9\"}", "{\"S\":\"z\"}", 0, 1}, /* bytewise UTF-8 */
        {"{\"N\":\"10\"}", "{\"N\":\"9\"}", 0, 1},       /* numeric, not textual */
        {"{\"N\":\"-10\"}", "{\"N\":\"-9\"}", 0, -1},
        {"{\"B\":\"AP8=\"}", "{\"B\":\"AQ==\"}", 0, -1}, /* 00ff < 01 */
        {"{\"B\":\"/w==\"}", "{\"B\":\"AQ==\"}", 0, 1},  /* ff > 01, unsigned */
        {"{\"S\":\"1\"}", "{\"N\":\"1\"}", NERR_INVALID, 0},
        {"{\"BOOL\":true}", "{\"BOOL\":true}", NERR_INVALID, 0},
    };
    for (size_t i = 0; i < sizeof cmps / sizeof cmps[0]; i++) {
        json_t *a = json_loads(cmps[i].a, 0, NULL), *b = json_loads(cmps[i].b, 0, NULL);
        int c = 99;
        int rc = av_compare(a, b, &c);
        is_int(rc, cmps[i].rc, "compare %s %s rc", cmps[i].a, cmps[i].b);
        if (rc == 0)
            is_int(c, cmps[i].c, "compare %s %s", cmps[i].a, cmps[i].b);
        json_decref(a);
        json_decref(b);
    }
}

/* ------------------------------------------------------------ keys */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
    /* xorshift64*: deterministic, so a failure replays */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static json_t *random_num(void)
{
    char buf[128];
    size_t o = 0;
    if (rnd() % 10 == 0)
        return json_pack("{s:s}", "N", "0");
    if (rnd() % 2)
        buf[o++] = '-';
    int nd = 1 + (int)(rnd() % 38);
    /* a few clustered exponents so that equal adjusted exponents are common */
    int adj = rnd() % 3 ? (int)(rnd() % 5) - 2 : (int)(rnd() % 256) - 130;
    for (int i = 0; i < nd; i++)
        buf[o++] = (char)('0' + (i == 0 ? 1 + rnd() % 9 : rnd() % 10));
    o += (size_t)snprintf(buf + o, sizeof buf - o, "e%d", adj - (nd - 1));
    buf[o] = '\0';
    json_t *j = json_pack("{s:s}", "N", buf);
    if (av_validate(j, NULL) < 0) {
        json_decref(j);
        return json_pack("{s:s}", "N", "1");
    }
    return j;
}

static json_t *random_str(void)
{
    static const char *const parts[] = {"a",    "b",   "", "\xc3\xa9", "\xf0\x9f\x98\x80",
                                        "\x7f", "\x01"};
    char buf[64];
    size_t o = 0;
    int n = (int)(rnd() % 6);
    for (int i = 0; i < n; i++) {
        size_t r = rnd() % 8;
        if (r == 7) {
            buf[o++] = '\0'; /* embedded NUL bytes must order correctly too */
            continue;
        }
        size_t l = strlen(parts[r]);
        memcpy(buf + o, parts[r], l);
        o += l;
    }
    return json_pack("{s:s%}", "S", buf, o);
}

static const char B64A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static json_t *random_bin(void)
{
    unsigned char raw[8];
    char enc[16];
    size_t n = rnd() % 7, o = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rnd() % 4;
        raw[i] = r == 0 ? 0x00 : r == 1 ? 0xFF : (unsigned char)rnd();
    }
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)raw[i] << 16 | (i + 1 < n ? (uint32_t)raw[i + 1] << 8 : 0) |
                     (i + 2 < n ? raw[i + 2] : 0);
        enc[o++] = B64A[w >> 18 & 63];
        enc[o++] = B64A[w >> 12 & 63];
        enc[o++] = i + 1 < n ? B64A[w >> 6 & 63] : '=';
        enc[o++] = i + 2 < n ? B64A[w & 63] : '=';
    }
    enc[o] = '\0';
    return json_pack("{s:s}", "B", enc);
}

struct kv {
    json_t *v;
    unsigned char *key;
    size_t len;
};

static int bytes_cmp(const unsigned char *a, size_t na, const unsigned char *b, size_t nb)
{
    size_t n = na < nb ? na : nb;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c < 0 ? -1 : 1;
    return na < nb ? -1 : na > nb;
}

static int kv_cmp_value(const void *x, const void *y)
{
    int c = 0;
    av_compare(((const struct kv *)x)->v, ((const struct kv *)y)->v, &c);
    return c;
}

static int sgn(int x)
{
    return (x > 0) - (x < 0);
}

static void check_order(const char *what, json_t *(*gen)(void), int count)
{
    json_t *hash = json_pack("{s:s}", "S", "h");
    struct kv *kv = calloc((size_t)count, sizeof *kv);
    int bad_order = 0, bad_decode = 0, bad_prefix = 0;
    unsigned char *pre;
    size_t plen;
    av_key_prefix(hash, &pre, &plen, NULL);
    for (int i = 0; i < count; i++) {
        kv[i].v = gen();
        if (av_key_encode(hash, kv[i].v, &kv[i].key, &kv[i].len, NULL) < 0)
            bad_decode++;
    }
    qsort(kv, (size_t)count, sizeof *kv, kv_cmp_value);
    for (int i = 0; i < count; i++) {
        if (i > 0) {
            int cv = 0;
            av_compare(kv[i - 1].v, kv[i].v, &cv);
            int ck = bytes_cmp(kv[i - 1].key, kv[i - 1].len, kv[i].key, kv[i].len);
            if (sgn(cv) != sgn(ck)) {
                if (bad_order++ < 3) {
                    char *a = dump(kv[i - 1].v), *b = dump(kv[i].v);
                    diag("order mismatch: %s vs %s (value %d, bytes %d)", a, b, cv, ck);
                    free(a);
                    free(b);
                }
            }
        }
        if (kv[i].len < plen || memcmp(kv[i].key, pre, plen))
            bad_prefix++;
        json_t *h = NULL, *r = NULL;
        if (av_key_decode(kv[i].key, kv[i].len, av_type(kv[i].v), &h, &r, NULL) < 0 ||
            !av_equal(h, hash) || !av_equal(r, kv[i].v))
            bad_decode++;
        json_decref(h);
        json_decref(r);
    }
    is_int(bad_order, 0, "%s: byte order equals value order over %d keys", what, count);
    is_int(bad_decode, 0, "%s: every key decodes to its values", what);
    is_int(bad_prefix, 0, "%s: every key starts with the hash prefix", what);
    for (int i = 0; i < count; i++) {
        json_decref(kv[i].v);
        free(kv[i].key);
    }
    free(kv);
    free(pre);
    json_decref(hash);
}

/* Prefix-freeness: no hash key's prefix is a prefix of another hash's key,
 * so each hash key's items are exactly one contiguous range. */
static void test_prefix_property(void)
{
    const char *hs[] = {"{\"S\":\"a\"}",    "{\"S\":\"ab\"}",   "{\"S\":\"\"}",
                        "{\"N\":\"1\"}",    "{\"N\":\"10\"}",   "{\"B\":\"YQ==\"}",
                        "{\"B\":\"YQA=\"}", "{\"B\":\"YQAB\"}", "{\"B\":\"AA==\"}",
                        "{\"S\":\"1\"}",    "{\"N\":\"-1\"}"};
    const size_t nh = sizeof hs / sizeof hs[0];
    json_t *hv[16];
    json_t *ranges[4];
    int violations = 0, first_byte_ok = 1, self_ok = 1;
    ranges[0] = json_pack("{s:s%}", "S", "\0\0", (size_t)2);
    ranges[1] = json_pack("{s:s}", "S", "zzz");
    ranges[2] = json_pack("{s:s}", "B", "AQ==");
    ranges[3] = json_pack("{s:s}", "S", "\x01");
    for (size_t i = 0; i < nh; i++)
        hv[i] = json_loads(hs[i], 0, NULL);
    hv[nh] = json_pack("{s:s%}", "S", "a\0", (size_t)2);
    hv[nh + 1] = json_pack("{s:s%}", "S", "a\0\x01", (size_t)3);
    size_t n = nh + 2;
    for (size_t i = 0; i < n; i++) {
        unsigned char *pi;
        size_t li;
        av_key_prefix(hv[i], &pi, &li, NULL);
        if (pi[0] < 0x01)
            first_byte_ok = 0;
        for (size_t j = 0; j < n; j++) {
            for (size_t r = 0; r < 4; r++) {
                unsigned char *k;
                size_t lk;
                av_key_encode(hv[j], ranges[r], &k, &lk, NULL);
                int starts = lk >= li && !memcmp(k, pi, li);
                if (i == j && !starts)
                    self_ok = 0;
                if (i != j && starts)
                    violations++;
                free(k);
            }
        }
        free(pi);
    }
    ok(first_byte_ok, "every key's first byte is >= 0x01");
    ok(self_ok, "keys start with their own hash prefix");
    is_int(violations, 0,
           "no key starts with another hash key's prefix (NUL bytes, prefixes of each other)");
    for (size_t i = 0; i < n; i++)
        json_decref(hv[i]);
    for (int r = 0; r < 4; r++)
        json_decref(ranges[r]);

    /* hash: stable across runs and machines (fixed algorithm, fixed constants) */
    json_t *a = json_pack("{s:s}", "S", "user#1"), *b = json_pack("{s:s}", "S", "user#2");
    json_t *c = json_pack("{s:s}", "N", "1"), *d = json_pack("{s:s}", "S", "1");
    json_t *e = json_pack("{s:s}", "N", "1.0");
    av_validate(e, NULL);
    uint64_t ha = av_key_hash(a);
    cmp_ok(ha, "!=", 0, "hash is non-zero");
    is_int(av_key_hash(a) == ha, 1, "hash is deterministic within a run");
    ok(av_key_hash(a) != av_key_hash(b), "different keys hash differently");
    ok(av_key_hash(c) != av_key_hash(d), "N 1 and S \"1\" hash differently");
    ok(av_key_hash(c) == av_key_hash(e), "N 1 and N 1.0 hash the same");
    note("hash(S user#1) = %016llx", (unsigned long long)ha);
    /* Pinned: a change here would move every item to another partition. */
    ok(ha == 0xdf9e8857d4f06b58ULL, "hash value is the recorded one (stable across builds)");
    json_decref(a);
    json_decref(b);
    json_decref(c);
    json_decref(d);
    json_decref(e);
}

/* The cursor range of every Query operator holds exactly the keys the
 * operator selects. */
static void check_query_ranges(const char *what, json_t *(*gen)(void), int count)
{
    json_t *h = json_pack("{s:s}", "S", "h");
    json_t *other[2] = {json_pack("{s:s}", "S", "g"), json_pack("{s:s%}", "S", "h\0", (size_t)2)};
    json_t **vals = calloc((size_t)count, sizeof *vals);
    int wrong = 0, checked = 0;
    for (int i = 0; i < count; i++)
        vals[i] = gen();
    for (int q = 0; q < 40; q++) {
        const json_t *v1 = vals[rnd() % (size_t)count], *v2 = vals[rnd() % (size_t)count];
        for (int op = AV_KEY_ALL; op <= AV_KEY_BEGINS_WITH; op++) {
            const char *t = av_type(v1);
            if (op == AV_KEY_BEGINS_WITH && !strcmp(t, "N"))
                continue;
            struct av_key_range r;
            if (av_key_query_range(h, (enum av_key_op)op, v1, v2, &r, NULL) < 0) {
                wrong++;
                continue;
            }
            for (int i = 0; i < count; i++) {
                for (int hh = 0; hh < 3; hh++) {
                    unsigned char *k;
                    size_t lk;
                    av_key_encode(hh == 0 ? h : other[hh - 1], vals[i], &k, &lk, NULL);
                    int in = bytes_cmp(k, lk, r.lo, r.lo_len) >= 0 &&
                             bytes_cmp(k, lk, r.hi, r.hi_len) < 0;
                    int want = 0, c1 = 0, c2 = 0;
                    if (hh == 0) {
                        av_compare(vals[i], v1, &c1);
                        av_compare(vals[i], v2, &c2);
                        switch (op) {
                        case AV_KEY_ALL:
                            want = 1;
                            break;
                        case AV_KEY_EQ:
                            want = c1 == 0;
                            break;
                        case AV_KEY_LT:
                            want = c1 < 0;
                            break;
                        case AV_KEY_LE:
                            want = c1 <= 0;
                            break;
                        case AV_KEY_GT:
                            want = c1 > 0;
                            break;
                        case AV_KEY_GE:
                            want = c1 >= 0;
                            break;
                        case AV_KEY_BETWEEN:
                            want = c1 >= 0 && c2 <= 0;
                            break;
                        case AV_KEY_BEGINS_WITH: {
                            unsigned char *x, *y;
                            size_t nx, ny;
                            json_t *px = json_object_get(vals[i], t), *py = json_object_get(v1, t);
                            if (!strcmp(t, "S")) {
                                want = json_string_length(py) <= json_string_length(px) &&
                                       !memcmp(json_string_value(px), json_string_value(py),
                                               json_string_length(py));
                            } else {
                                av_b64_decode(json_string_value(px), json_string_length(px), &x,
                                              &nx, NULL);
                                av_b64_decode(json_string_value(py), json_string_length(py), &y,
                                              &ny, NULL);
                                want = ny <= nx && (ny == 0 || !memcmp(x, y, ny));
                                free(x);
                                free(y);
                            }
                            break;
                        }
                        }
                    }
                    if (in != want && wrong++ < 3) {
                        char *a = dump(vals[i]), *b = dump(v1);
                        diag("%s op %d: key %s bound %s hash %d: in=%d want=%d", what, op, a, b, hh,
                             in, want);
                        free(a);
                        free(b);
                    }
                    checked++;
                    free(k);
                }
            }
            av_key_range_free(&r);
        }
    }
    is_int(wrong, 0, "%s: %d cursor-range memberships match the operators", what, checked);
    for (int i = 0; i < count; i++)
        json_decref(vals[i]);
    free(vals);
    json_decref(h);
    json_decref(other[0]);
    json_decref(other[1]);
}

static void test_key_check(void)
{
    static const struct {
        const char *av, *type;
        int is_hash, in_item;
        const char *msg;
    } t[] = {
        {NULL, "S", 1, 0, "The provided key element does not match the schema"},
        {NULL, "S", 1, 1,
         "One or more parameter values were invalid: Missing the key pk in the item"},
        {"{\"N\":\"1\"}", "S", 1, 0, "The provided key element does not match the schema"},
        {"{\"N\":\"1\"}", "S", 1, 1,
         "One or more parameter values were invalid: Type mismatch for key pk expected: S actual: "
         "N"},
        {"{\"BOOL\":true}", "S", 1, 0, "The provided key element does not match the schema"},
        {"{\"S\":\"\"}", "S", 1, 0,
         "One or more parameter values are not valid. The AttributeValue for a key attribute "
         "cannot contain an empty string value. Key: pk"},
        {"{\"B\":\"\"}", "B", 0, 0,
         "One or more parameter values are not valid. The AttributeValue for a key attribute "
         "cannot contain an empty binary value. Key: pk"},
        {"{\"S\":\"x\"}", "S", 1, 0, NULL},
        {"{\"N\":\"0\"}", "N", 0, 0, NULL},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        json_t *j = t[i].av ? json_loads(t[i].av, 0, NULL) : NULL;
        struct nerr err = {0};
        int rc = av_key_check(j, "pk", t[i].type, t[i].is_hash, t[i].in_item, &err);
        if (t[i].msg)
            is(err.msg, t[i].msg, "key check %s as %s", t[i].av ? t[i].av : "(missing)", t[i].type);
        else
            is_int(rc, 0, "key check %s as %s passes", t[i].av, t[i].type);
        json_decref(j);
    }
    char big[2100];
    memset(big, 'x', sizeof big);
    json_t *j = json_pack("{s:s%}", "S", big, (size_t)2049);
    struct nerr err = {0};
    av_key_check(j, "pk", "S", 1, 0, &err);
    is(err.msg,
       "One or more parameter values were invalid: Size of hashkey has exceeded the maximum size "
       "limit of2048 bytes",
       "hash key over 2048 bytes");
    json_decref(j);
    j = json_pack("{s:s%}", "S", big, (size_t)2048);
    is_int(av_key_check(j, "pk", "S", 1, 0, NULL), 0, "hash key of 2048 bytes");
    is_int(av_key_check(j, "sk", "S", 0, 0, &err), NERR_INVALID, "range key over 1024 bytes");
    is(err.msg,
       "One or more parameter values were invalid: Aggregated size of all range keys has exceeded "
       "the size limit of 1024 bytes",
       "range key message");
    json_decref(j);
}

int main(void)
{
    test_num_parse_format();
    test_num_arith();
    test_validate();
    test_size();
    test_equal_compare();
    check_order("N", random_num, 3000);
    check_order("S", random_str, 3000);
    check_order("B", random_bin, 3000);
    test_prefix_property();
    check_query_ranges("N", random_num, 150);
    check_query_ranges("S", random_str, 150);
    check_query_ranges("B", random_bin, 150);
    test_key_check();
    return done_testing();
}
