/*
 * test_expr.c — parsing and evaluation of DynamoDB expressions (store/expr.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/expr.h"
#include "t/tap.h"

static json_t *J(const char *s)
{
    json_error_t e;
    json_t *j = json_loads(s, 0, &e);
    if (!j)
        bail_out(e.text);
    return j;
}

static char *dump(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

static const char *ITEM =
    "{\"pk\":{\"S\":\"k\"},\"n\":{\"N\":\"5\"},\"s\":{\"S\":\"hello\"},\"b\":{\"B\":\"AAEC\"},"
    "\"t\":{\"BOOL\":true},\"z\":{\"NULL\":true},"
    "\"l\":{\"L\":[{\"N\":\"1\"},{\"S\":\"x\"},{\"M\":{\"a\":{\"N\":\"2\"}}}]},"
    "\"m\":{\"M\":{\"x\":{\"S\":\"y\"},\"deep\":{\"M\":{\"v\":{\"N\":\"7\"}}}}},"
    "\"ss\":{\"SS\":[\"a\",\"b\"]},\"ns\":{\"NS\":[\"1\",\"2\"]},\"bs\":{\"BS\":[\"Yg==\"]},"
    "\"a.b\":{\"S\":\"dotted\"}}";

static const char *VALUES =
    "{\":five\":{\"N\":\"5.0\"},\":four\":{\"N\":\"4\"},\":six\":{\"N\":\"6\"},\":one\":{\"N\":"
    "\"1\"},"
    "\":two\":{\"N\":\"2\"},\":three\":{\"N\":\"3\"},\":zero\":{\"N\":\"0\"},"
    "\":hello\":{\"S\":\"hello\"},\":he\":{\"S\":\"he\"},\":ell\":{\"S\":\"ell\"},\":a\":{\"S\":"
    "\"a\"},"
    "\":c\":{\"S\":\"c\"},\":x\":{\"S\":\"x\"},\":y\":{\"S\":\"y\"},\":tS\":{\"S\":\"S\"},\":tN\":{"
    "\"S\":\"N\"},"
    "\":tM\":{\"S\":\"M\"},\":tX\":{\"S\":\"X\"},\":tru\":{\"BOOL\":true},\":b01\":{\"B\":\"AAE=\"}"
    ","
    "\":b12\":{\"B\":\"AQI=\"},\":bg\":{\"B\":\"Yg==\"},\":dotted\":{\"S\":\"dotted\"},"
    "\":lst\":{\"L\":[{\"S\":\"new\"}]},\":ssa\":{\"SS\":[\"a\"]},\":ssab\":{\"SS\":[\"a\",\"b\"]},"
    "\":ssbc\":{\"SS\":[\"b\",\"c\"]},\":ns1\":{\"NS\":[\"1.0\",\"3\"]},\":m\":{\"M\":{\"q\":{"
    "\"N\":\"1\"}}}}";

static const char *NAMES = "{\"#n\":\"n\",\"#ab\":\"a.b\",\"#deep\":\"deep\",\"#pk\":\"pk\"}";

/* ------------------------------------------------------------ conditions */

static void test_condition_eval(void)
{
    static const struct {
        const char *expr;
        int want;
    } t[] = {
        {"n = :five", 1},
        {"n <> :five", 0},
        {"n < :six", 1},
        {"n <= :four", 0},
        {"n > :four", 1},
        {"n >= :five", 1},
        {"n < :five", 0},
        {":four < n", 1},
        {"s = :five", 0},
        {"s <> :five", 1},
        {"s < :five", 0},
        {"s >= :five", 0},
        {"nope = :five", 0},
        {"nope <> :five", 1},
        {"nope < :five", 0},
        {"s > :he", 1},
        {"s < :hello", 0},
        {"b > :b01", 1},
        {"b < :b12", 1},
        {"n BETWEEN :four AND :six", 1},
        {"n BETWEEN :one AND :four", 0},
        {"n BETWEEN :five AND :five", 1},
        {"s BETWEEN :four AND :six", 0},
        {"s IN (:a, :hello)", 1},
        {"n IN (:one, :four)", 0},
        {"n IN (:one, :five)", 1},
        {"nope IN (:one)", 0},
        {"attribute_exists(m.deep.v)", 1},
        {"attribute_exists(m.deep.w)", 0},
        {"attribute_not_exists(nope)", 1},
        {"attribute_not_exists(s)", 0},
        {"attribute_exists(l[2].a)", 1},
        {"attribute_exists(l[3])", 0},
        {"attribute_exists(s.x)", 0},
        {"attribute_exists(l.a)", 0},
        {"attribute_exists(m[0])", 0},
        {"attribute_type(n, :tN)", 1},
        {"attribute_type(s, :tN)", 0},
        {"attribute_type(m, :tM)", 1},
        {"attribute_type(nope, :tS)", 0},
        {"begins_with(s, :he)", 1},
        {"begins_with(s, :ell)", 0},
        {"begins_with(b, :b01)", 1},
        {"begins_with(b, :b12)", 0},
        {"begins_with(n, :he)", 0},
        {"begins_with(s, :hello)", 1},
        {"contains(s, :ell)", 1},
        {"contains(s, :c)", 0},
        {"contains(ss, :a)", 1},
        {"contains(ss, :c)", 0},
        {"contains(ns, :one)", 1},
        {"contains(ns, :four)", 0},
        {"contains(l, :x)", 1},
        {"contains(l, :one)", 1},
        {"contains(l, :y)", 0},
        {"contains(bs, :bg)", 1},
        {"contains(b, :b12)", 1},
        {"contains(n, :one)", 0},
        {"contains(nope, :one)", 0},
        {"size(s) = :five", 1},
        {"size(l) = :three", 1},
        {"size(m) = :two", 1},
        {"size(ss) = :two", 1},
        {"size(b) = :three", 1},
        {"size(n) = :one", 0},
        {"size(nope) = :zero", 0},
        {"size(s) > :four", 1},
        {"NOT n = :five", 0},
        {"NOT (n = :four)", 1},
        {"n = :five AND s = :hello", 1},
        {"n = :four OR s = :hello", 1},
        {"n = :four OR s = :a", 0},
        /* AND binds tighter than OR; NOT tighter than AND */
        {"n = :five OR n = :four AND s = :a", 1},
        {"NOT n = :four AND NOT s = :a", 1},
        {"(n = :four OR n = :five) AND t = :tru", 1},
        {"NOT NOT n = :five", 1},
        {"m.deep.v > n", 1},
        {"l[2].a = :two", 1},
        {"l[0] = :one", 1},
        {"m.x = :y", 1},
        {"#n = :five", 1},
        {"#ab = :dotted", 1},
        {"m.#deep.v > :six", 1},
        {"a.b = :dotted", 0}, /* a path, not the attribute named "a.b" */
        {"t = :tru", 1},
        {"z <> :tru", 1},
        {"n = n", 1},
        {"ss = ss", 1},
        {"n between :four and :six", 1},
        {"not n in (:one)", 1},
    };
    json_t *item = J(ITEM), *values = J(VALUES), *names = J(NAMES);
    av_validate_item(item, NULL);
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct expr *e = NULL;
        struct nerr err = {0};
        int res = -1;
        int rc = expr_parse_condition(t[i].expr, "ConditionExpression", names, values, &e, &err);
        if (rc == 0)
            rc = expr_eval_condition(e, item, &res, &err);
        if (rc < 0)
            diag("%s: %s", t[i].expr, err.msg);
        is_int(res, t[i].want, "%s -> %d", t[i].expr, t[i].want);
        expr_free(e);
    }
    /* a missing item: every path is missing */
    struct expr *e;
    int res = -1;
    expr_parse_condition("attribute_not_exists(pk) AND NOT attribute_exists(n)", NULL, NULL, NULL,
                         &e, NULL);
    expr_eval_condition(e, NULL, &res, NULL);
    is_int(res, 1, "condition on a missing item");
    expr_free(e);
    json_decref(item);
    json_decref(values);
    json_decref(names);
}

static void test_condition_errors(void)
{
    static const struct {
        const char *expr, *msg;
    } t[] = {
        {"a AND AND b",
         "Invalid ConditionExpression: Syntax error; token: \"AND\", near: \"a AND AND\""},
        {"a =", "Invalid ConditionExpression: Syntax error; token: \"<EOF>\", near: \"=\""},
        {"a = :one :two",
         "Invalid ConditionExpression: Syntax error; token: \":two\", near: \":one :two\""},
        {"", "Invalid ConditionExpression: The expression can not be empty;"},
        {"   ", "Invalid ConditionExpression: The expression can not be empty;"},
        {"_a = :one", "Invalid ConditionExpression: Syntax error; token: \"_\", near: \"_a\""},
        {"a = :one AND !b",
         "Invalid ConditionExpression: Syntax error; token: \"!\", near: \"AND !b\""},
        {"(a = :one",
         "Invalid ConditionExpression: Syntax error; token: \"<EOF>\", near: \":one\""},
        {"a = :one)", "Invalid ConditionExpression: Syntax error; token: \")\", near: \":one)\""},
        {"a[x] = :one", "Invalid ConditionExpression: Syntax error; token: \"x\", near: \"[x]\""},
        {"#nope = :one", "Invalid ConditionExpression: An expression attribute name used in the "
                         "document path is not defined; "
                         "attribute name: #nope"},
        {"a = :nope", "Invalid ConditionExpression: An expression attribute value used in "
                      "expression is not defined; "
                      "attribute value: :nope"},
        {"foo(a)", "Invalid ConditionExpression: Invalid function name; function: foo"},
        {"attribute_exists(:one)", "Invalid ConditionExpression: Operator or function requires a "
                                   "document path; operator or function: "
                                   "attribute_exists"},
        {"size(:one) = :one", "Invalid ConditionExpression: Operator or function requires a "
                              "document path; operator or function: size"},
        {"attribute_exists(a) = :one", "Invalid ConditionExpression: The function is not allowed "
                                       "to be used this way in an expression; "
                                       "function: attribute_exists"},
        {"a = attribute_exists(b)", "Invalid ConditionExpression: The function is not allowed to "
                                    "be used this way in an expression; "
                                    "function: attribute_exists"},
        {"a < :tru", "Invalid ConditionExpression: Incorrect operand type for operator or "
                     "function; operator or function: "
                     "<, operand type: BOOL"},
        {"begins_with(a, :one)", "Invalid ConditionExpression: Incorrect operand type for operator "
                                 "or function; operator or function: "
                                 "begins_with, operand type: N"},
        {"attribute_type(a, :tX)",
         "Invalid ConditionExpression: Invalid attribute type name found; type: X, valid types: "
         "{ B,NULL,SS,BOOL,L,BS,N,NS,S,M }"},
        {"attribute_type(a, :one)", "Invalid ConditionExpression: Incorrect operand type for "
                                    "operator or function; operator or function: "
                                    "attribute_type, operand type: N"},
        {"a BETWEEN :six AND :four", "Invalid ConditionExpression: The BETWEEN operator requires "
                                     "upper bound to be greater than or equal to "
                                     "lower bound; lower bound operand: AttributeValue: {N:6}, "
                                     "upper bound operand: AttributeValue: {N:4}"},
        {"a = :bad", "ExpressionAttributeValues contains invalid value: One or more parameter "
                     "values were invalid: An "
                     "string set  may not be empty for key :bad"},
        {"AND = :one",
         "Invalid ConditionExpression: Syntax error; token: \"AND\", near: \"AND =\""},
    };
    json_t *values = J("{\":one\":{\"N\":\"1\"},\":two\":{\"N\":\"2\"},\":four\":{\"N\":\"4\"},\":"
                       "six\":{\"N\":\"6\"},"
                       "\":tru\":{\"BOOL\":true},\":tX\":{\"S\":\"X\"},\":bad\":{\"SS\":[]}}");
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct expr *e = (struct expr *)1;
        struct nerr err = {0};
        int rc = expr_parse_condition(t[i].expr, "ConditionExpression", NULL, values, &e, &err);
        is_int(rc, NERR_INVALID, "reject '%s'", t[i].expr);
        is(err.msg, t[i].msg, "message for '%s'", t[i].expr);
        ok(e == NULL, "no expr on error");
    }
    struct nerr err = {0};
    struct expr *e;
    expr_parse_condition("a = :nope", "FilterExpression", NULL, NULL, &e, &err);
    is(err.msg,
       "Invalid FilterExpression: An expression attribute value used in expression is not defined; "
       "attribute "
       "value: :nope",
       "label names the request field");
    json_decref(values);
}

static void test_limits(void)
{
    json_t *values = J("{\":v\":{\"N\":\"1\"}}");
    struct expr *e;
    struct nerr err = {0};
    char *buf = malloc(20000);

    /* 300 operators pass, 301 do not: "a = :v" joined by OR */
    for (int terms = 150; terms <= 151; terms++) {
        size_t o = 0;
        for (int i = 0; i < terms; i++)
            o += (size_t)sprintf(buf + o, "%sa = :v", i ? " OR " : "");
        int rc = expr_parse_condition(buf, NULL, NULL, values, &e, &err);
        if (terms == 150)
            is_int(rc, 0, "299 operators accepted");
        else
            is(err.msg,
               "Invalid ConditionExpression: The expression contains too many operators; operator "
               "count: 301",
               "301 operators refused");
        expr_free(rc == 0 ? e : NULL);
    }
    /* text size */
    memset(buf, ' ', 4097);
    memcpy(buf, "a = :v", 6);
    buf[4097] = '\0';
    is_int(expr_parse_condition(buf, NULL, NULL, values, &e, &err), NERR_INVALID,
           "4097-byte expression refused");
    is(err.msg,
       "Invalid ConditionExpression: Expression size has exceeded the maximum allowed size; "
       "expression size: 4097",
       "size message");
    buf[4096] = '\0';
    is_int(expr_parse_condition(buf, NULL, NULL, values, &e, NULL), 0,
           "4096-byte expression accepted");
    expr_free(e);
    /* IN operands */
    for (int n = 100; n <= 101; n++) {
        size_t o = (size_t)sprintf(buf, "a IN (");
        for (int i = 0; i < n; i++)
            o += (size_t)sprintf(buf + o, "%s:v", i ? "," : "");
        sprintf(buf + o, ")");
        int rc = expr_parse_condition(buf, NULL, NULL, values, &e, &err);
        if (n == 100)
            is_int(rc, 0, "IN with 100 operands");
        else
            is(err.msg,
               "Invalid ConditionExpression: The IN operator is provided with too many operands; "
               "number of operands: 101",
               "IN with 101 operands");
        expr_free(rc == 0 ? e : NULL);
    }
    /* nesting: parentheses and NOT chains are bounded, never deep recursion */
    static const int depths[] = {64, 65, 2000};
    for (size_t di = 0; di < 3; di++) {
        int depth = depths[di];
        size_t o = 0;
        for (int i = 0; i < depth; i++)
            buf[o++] = '(';
        o += (size_t)sprintf(buf + o, "a = :v");
        for (int i = 0; i < depth; i++)
            buf[o++] = ')';
        buf[o] = '\0';
        int rc = expr_parse_condition(buf, NULL, NULL, values, &e, &err);
        if (depth == 64) {
            is_int(rc, 0, "64 nested parentheses accepted");
            expr_free(e);
        } else {
            is_int(rc, NERR_INVALID, "%d nested parentheses refused", depth);
            is(err.msg,
               "Invalid ConditionExpression: The expression has too many nesting levels; maximum: "
               "64",
               "nesting message");
        }
    }
    {
        size_t o = 0;
        for (int i = 0; i < 250; i++)
            o += (size_t)sprintf(buf + o, "NOT ");
        sprintf(buf + o, "a = :v");
        is_int(expr_parse_condition(buf, NULL, NULL, values, &e, &err), NERR_INVALID,
               "NOT chain refused");
    }
    /* document path depth */
    for (int levels = 32; levels <= 33; levels++) {
        size_t o = (size_t)sprintf(buf, "a");
        for (int i = 1; i < levels; i++)
            o += (size_t)sprintf(buf + o, i % 2 ? ".b" : "[0]");
        sprintf(buf + o, " = :v");
        int rc = expr_parse_condition(buf, NULL, NULL, values, &e, &err);
        if (levels == 32) {
            is_int(rc, 0, "path of 32 levels accepted");
            expr_free(e);
        } else {
            is(err.msg,
               "Invalid ConditionExpression: The document path has too many nesting levels; "
               "nesting levels: 33",
               "path of 33 levels refused");
        }
    }
    /* random token soup: every input gets a result or an error, never a crash
     * (the sanitizer build checks memory) */
    static const char *const toks[] = {"a",
                                       "#n",
                                       ":v",
                                       "(",
                                       ")",
                                       "[",
                                       "]",
                                       "0",
                                       ".",
                                       ",",
                                       "=",
                                       "<>",
                                       "<",
                                       ">=",
                                       "AND",
                                       "OR",
                                       "NOT",
                                       "BETWEEN",
                                       "IN",
                                       "size",
                                       "contains",
                                       "attribute_exists",
                                       "begins_with",
                                       "SET",
                                       "REMOVE",
                                       "ADD",
                                       "DELETE",
                                       "+",
                                       "-",
                                       "list_append",
                                       "if_not_exists",
                                       "!",
                                       "\xc3\xa9",
                                       "7"};
    json_t *names = J("{\"#n\":\"n\"}");
    uint64_t s = 12345;
    int parsed = 0, refused = 0;
    for (int it = 0; it < 3000; it++) {
        size_t o = 0;
        int n = 1 + (int)(s % 14);
        for (int i = 0; i < n; i++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            o += (size_t)sprintf(buf + o, "%s ", toks[s % (sizeof toks / sizeof toks[0])]);
        }
        buf[o] = '\0';
        struct expr *x = NULL;
        int rc;
        switch (it % 3) {
        case 0:
            rc = expr_parse_condition(buf, NULL, names, values, &x, &err);
            break;
        case 1:
            rc = expr_parse_update(buf, names, values, &x, &err);
            break;
        default:
            rc = expr_parse_projection(buf, names, &x, &err);
            break;
        }
        if (rc == 0) {
            json_t *item = J("{\"a\":{\"N\":\"1\"},\"n\":{\"L\":[{\"N\":\"2\"}]}}");
            int r;
            if (it % 3 == 0)
                expr_eval_condition(x, item, &r, NULL);
            else if (it % 3 == 1)
                expr_apply_update(x, item, NULL, 0, NULL);
            else
                json_decref(expr_project(x, item));
            json_decref(item);
            parsed++;
        } else {
            refused += rc == NERR_INVALID;
        }
        expr_free(x);
    }
    is_int(parsed + refused, 3000, "token soup: %d parsed, %d refused with NERR_INVALID", parsed,
           refused);
    free(buf);
    json_decref(names);
    json_decref(values);
}

/* ------------------------------------------------------------ updates */

static void test_update(void)
{
    static const struct {
        const char *before, *expr, *after;
    } t[] = {
        {"{\"pk\":{\"S\":\"k\"}}", "SET a = :one", "{\"a\":{\"N\":\"1\"},\"pk\":{\"S\":\"k\"}}"},
        {"{\"n\":{\"N\":\"5\"}}", "SET n = n + :one", "{\"n\":{\"N\":\"6\"}}"},
        {"{\"n\":{\"N\":\"5\"}}", "set n = n - :six", "{\"n\":{\"N\":\"-1\"}}"},
        {"{\"n\":{\"N\":\"0.1\"}}", "SET n = n + :pt2", "{\"n\":{\"N\":\"0.3\"}}"},
        {"{\"n\":{\"N\":\"5\"}}", "SET m = :one + n", "{\"m\":{\"N\":\"6\"},\"n\":{\"N\":\"5\"}}"},
        {"{\"l\":{\"L\":[{\"N\":\"1\"}]}}", "SET l = list_append(l, :lst)",
         "{\"l\":{\"L\":[{\"N\":\"1\"},{\"S\":\"new\"}]}}"},
        {"{\"l\":{\"L\":[{\"N\":\"1\"}]}}", "SET l = list_append(:lst, l)",
         "{\"l\":{\"L\":[{\"S\":\"new\"},{\"N\":\"1\"}]}}"},
        {"{}", "SET l = list_append(if_not_exists(l, :empty), :lst)",
         "{\"l\":{\"L\":[{\"S\":\"new\"}]}}"},
        {"{}", "SET c = if_not_exists(c, :zero)", "{\"c\":{\"N\":\"0\"}}"},
        {"{\"c\":{\"N\":\"9\"}}", "SET c = if_not_exists(c, :zero)", "{\"c\":{\"N\":\"9\"}}"},
        {"{}", "SET cnt = if_not_exists(cnt, :zero) + :one", "{\"cnt\":{\"N\":\"1\"}}"},
        {"{\"m\":{\"M\":{\"x\":{\"S\":\"y\"}}}}", "SET m.x = :hello, m.#new = :one",
         "{\"m\":{\"M\":{\"new\":{\"N\":\"1\"},\"x\":{\"S\":\"hello\"}}}}"},
        {"{\"l\":{\"L\":[{\"N\":\"1\"},{\"N\":\"2\"}]}}", "SET l[1] = :hello",
         "{\"l\":{\"L\":[{\"N\":\"1\"},{\"S\":\"hello\"}]}}"},
        {"{\"l\":{\"L\":[{\"N\":\"1\"}]}}", "SET l[10] = :hello",
         "{\"l\":{\"L\":[{\"N\":\"1\"},{\"S\":\"hello\"}]}}"},
        /* right-hand sides read the original item: a swap works */
        {"{\"a\":{\"N\":\"1\"},\"b\":{\"N\":\"2\"}}", "SET a = b, b = a",
         "{\"a\":{\"N\":\"2\"},\"b\":{\"N\":\"1\"}}"},
        {"{\"a\":{\"N\":\"1\"},\"b\":{\"N\":\"2\"}}", "SET c = a REMOVE a",
         "{\"b\":{\"N\":\"2\"},\"c\":{\"N\":\"1\"}}"},
        {"{\"a\":{\"N\":\"1\"},\"b\":{\"N\":\"2\"}}", "REMOVE a, nope", "{\"b\":{\"N\":\"2\"}}"},
        /* list indexes refer to the original list */
        {"{\"l\":{\"L\":[{\"N\":\"0\"},{\"N\":\"1\"},{\"N\":\"2\"},{\"N\":\"3\"}]}}",
         "REMOVE l[0], l[2], l[9]", "{\"l\":{\"L\":[{\"N\":\"1\"},{\"N\":\"3\"}]}}"},
        {"{\"m\":{\"M\":{\"x\":{\"S\":\"y\"},\"z\":{\"S\":\"w\"}}}}", "REMOVE m.x",
         "{\"m\":{\"M\":{\"z\":{\"S\":\"w\"}}}}"},
        {"{\"n\":{\"N\":\"5\"}}", "ADD n :one", "{\"n\":{\"N\":\"6\"}}"},
        {"{}", "ADD n :one", "{\"n\":{\"N\":\"1\"}}"},
        {"{\"ss\":{\"SS\":[\"a\",\"b\"]}}", "ADD ss :ssbc",
         "{\"ss\":{\"SS\":[\"a\",\"b\",\"c\"]}}"},
        {"{}", "ADD ss :ssbc", "{\"ss\":{\"SS\":[\"b\",\"c\"]}}"},
        {"{\"ns\":{\"NS\":[\"1\",\"2\"]}}", "ADD ns :ns1", "{\"ns\":{\"NS\":[\"1\",\"2\",\"3\"]}}"},
        {"{\"ss\":{\"SS\":[\"a\",\"b\"]}}", "DELETE ss :ssa", "{\"ss\":{\"SS\":[\"b\"]}}"},
        {"{\"ss\":{\"SS\":[\"a\",\"b\"]},\"k\":{\"S\":\"v\"}}", "DELETE ss :ssab",
         "{\"k\":{\"S\":\"v\"}}"},
        {"{\"k\":{\"S\":\"v\"}}", "DELETE ss :ssab", "{\"k\":{\"S\":\"v\"}}"},
        {"{\"ns\":{\"NS\":[\"1\",\"2\"]}}", "DELETE ns :ns1", "{\"ns\":{\"NS\":[\"2\"]}}"},
        {"{\"a\":{\"N\":\"1\"},\"b\":{\"N\":\"1\"},\"n\":{\"N\":\"1\"},\"ss\":{\"SS\":[\"a\",\"b\"]"
         "}}",
         "SET a = :two REMOVE b ADD n :one DELETE ss :ssa",
         "{\"a\":{\"N\":\"2\"},\"n\":{\"N\":\"2\"},\"ss\":{\"SS\":[\"b\"]}}"},
        {"{}", "DELETE x :ssa ADD y :one SET z = :one",
         "{\"y\":{\"N\":\"1\"},\"z\":{\"N\":\"1\"}}"},
    };
    json_t *values = J(
        "{\":one\":{\"N\":\"1\"},\":two\":{\"N\":\"2\"},\":six\":{\"N\":\"6\"},\":zero\":{\"N\":"
        "\"0\"},"
        "\":pt2\":{\"N\":\"0.2\"},\":hello\":{\"S\":\"hello\"},\":lst\":{\"L\":[{\"S\":\"new\"}]},"
        "\":empty\":{\"L\":[]},\":ssa\":{\"SS\":[\"a\"]},\":ssab\":{\"SS\":[\"a\",\"b\"]},"
        "\":ssbc\":{\"SS\":[\"b\",\"c\"]},\":ns1\":{\"NS\":[\"1.0\",\"3\"]}}");
    json_t *names = J("{\"#new\":\"new\"}");
    const char *keys[] = {"pk"};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct expr *e = NULL;
        struct nerr err = {0};
        json_t *item = J(t[i].before);
        int rc = expr_parse_update(t[i].expr, names, values, &e, &err);
        if (rc == 0)
            rc = expr_apply_update(e, item, keys, 1, &err);
        char *d = dump(item);
        is(rc == 0 ? d : err.msg, t[i].after, "%s on %s", t[i].expr, t[i].before);
        free(d);
        json_decref(item);
        expr_free(e);
    }
    json_decref(values);
    json_decref(names);
}

static void test_update_errors(void)
{
    static const struct {
        const char *expr;
        int at_apply;
        const char *msg;
    } t[] = {
        {"SET a = :one, a = :two", 0,
         "Invalid UpdateExpression: Two document paths overlap with each other; must remove or "
         "rewrite one of "
         "these paths; path one: [a], path two: [a]"},
        {"SET a.b = :one REMOVE a", 0,
         "Invalid UpdateExpression: Two document paths overlap with each other; must remove or "
         "rewrite one of "
         "these paths; path one: [a, b], path two: [a]"},
        {"REMOVE a ADD a.b[1] :one", 0,
         "Invalid UpdateExpression: Two document paths overlap with each other; must remove or "
         "rewrite one of "
         "these paths; path one: [a], path two: [a, b, [1]]"},
        {"SET a.b = :one, a[1] = :two", 0,
         "Invalid UpdateExpression: Two document paths conflict with each other; must remove or "
         "rewrite one of "
         "these paths; path one: [a, b], path two: [a, [1]]"},
        {"SET a = :one SET b = :two", 0,
         "Invalid UpdateExpression: The \"SET\" section can only be used once in an update "
         "expression;"},
        {"REMOVE a remove b", 0,
         "Invalid UpdateExpression: The \"REMOVE\" section can only be used once in an update "
         "expression;"},
        {"ADD s :hello", 0,
         "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: "
         "ADD, operand type: STRING"},
        {"DELETE s :one", 0,
         "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: "
         "DELETE, operand type: NUMBER"},
        {"SET a = :one,", 0,
         "Invalid UpdateExpression: Syntax error; token: \"<EOF>\", near: \",\""},
        {"SET a :one", 0,
         "Invalid UpdateExpression: Syntax error; token: \":one\", near: \"a :one\""},
        {"ADD a b", 0, "Invalid UpdateExpression: Syntax error; token: \"b\", near: \"a b\""},
        {"a = :one", 0, "Invalid UpdateExpression: Syntax error; token: \"a\", near: \"a =\""},
        {"SET l = list_append(l, :one)", 0,
         "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or "
         "function: "
         "list_append, operand type: N"},
        {"SET a = :hello + :one", 0,
         "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or "
         "function: +, "
         "operand type: S"},
        {"SET a = size(b)", 0,
         "Invalid UpdateExpression: The function is not allowed in an update expression; function: "
         "size"},
        {"SET a = #missing", 0,
         "Invalid UpdateExpression: An expression attribute name used in the document path is not "
         "defined; "
         "attribute name: #missing"},
        {"SET pk = :one", 1,
         "One or more parameter values were invalid: Cannot update attribute pk. This attribute is "
         "part of the key"},
        {"REMOVE sk", 1,
         "One or more parameter values were invalid: Cannot update attribute sk. This attribute is "
         "part of the key"},
        {"ADD s :one", 1, "An operand in the update expression has an incorrect data type"},
        {"ADD ss :one", 1, "An operand in the update expression has an incorrect data type"},
        {"DELETE ss :ns", 1, "An operand in the update expression has an incorrect data type"},
        {"SET a = s + :one", 1,
         "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or "
         "function: +, "
         "operand type: S"},
        {"SET a = nope", 1,
         "The provided expression refers to an attribute that does not exist in the item"},
        {"SET a = nope + :one", 1,
         "The provided expression refers to an attribute that does not exist in the item"},
        {"SET nope.x = :one", 1,
         "The document path provided in the update expression is invalid for update"},
        {"SET s.x = :one", 1,
         "The document path provided in the update expression is invalid for update"},
        {"SET s[0] = :one", 1,
         "The document path provided in the update expression is invalid for update"},
        {"REMOVE nope.x", 1,
         "The document path provided in the update expression is invalid for update"},
        {"ADD nope.x :one", 1,
         "The document path provided in the update expression is invalid for update"},
        {"SET a = l", 1,
         "The provided expression refers to an attribute that does not exist in the item"},
        {"SET a = :one, b = :big + :big", 1,
         "Attempting to store more than 38 significant digits in a Number"},
        {"SET a = list_append(s, :lst)", 1,
         "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or "
         "function: "
         "list_append, operand type: S"},
    };
    json_t *values =
        J("{\":one\":{\"N\":\"1\"},\":two\":{\"N\":\"2\"},\":hello\":{\"S\":\"hello\"},"
          "\":ns\":{\"NS\":[\"1\"]},\":lst\":{\"L\":[]},"
          "\":big\":{\"N\":\"99999999999999999999999999999999999999\"}}");
    const char *before =
        "{\"pk\":{\"S\":\"k\"},\"sk\":{\"N\":\"1\"},\"s\":{\"S\":\"str\"},\"ss\":{\"SS\":[\"a\"]}}";
    const char *keys[] = {"pk", "sk"};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct expr *e = NULL;
        struct nerr err = {0};
        json_t *item = J(before);
        int rc = expr_parse_update(t[i].expr, NULL, values, &e, &err);
        if (t[i].at_apply) {
            is_int(rc, 0, "'%s' parses (%s)", t[i].expr, err.msg);
            rc = expr_apply_update(e, item, keys, 2, &err);
        }
        is_int(rc, NERR_INVALID, "reject '%s'", t[i].expr);
        is(err.msg, t[i].msg, "message for '%s'", t[i].expr);
        char *d = dump(item);
        json_t *orig = J(before);
        char *o = dump(orig);
        is(d, o, "item unchanged after '%s'", t[i].expr);
        free(d);
        free(o);
        json_decref(orig);
        json_decref(item);
        expr_free(e);
    }
    json_decref(values);
}

/* ------------------------------------------------------------ projection */

static void test_projection(void)
{
    static const struct {
        const char *expr, *want;
    } t[] = {
        {"pk", "{\"pk\":{\"S\":\"k\"}}"},
        {"pk, nope, n", "{\"n\":{\"N\":\"5\"},\"pk\":{\"S\":\"k\"}}"},
        {"m.deep.v", "{\"m\":{\"M\":{\"deep\":{\"M\":{\"v\":{\"N\":\"7\"}}}}}}"},
        {"l[2], l[0]", "{\"l\":{\"L\":[{\"N\":\"1\"},{\"M\":{\"a\":{\"N\":\"2\"}}}]}}"},
        {"l[2].a, m.x",
         "{\"l\":{\"L\":[{\"M\":{\"a\":{\"N\":\"2\"}}}]},\"m\":{\"M\":{\"x\":{\"S\":\"y\"}}}}"},
        {"l[7], m.nope, s.x", "{}"},
        {"#ab, #n", "{\"a.b\":{\"S\":\"dotted\"},\"n\":{\"N\":\"5\"}}"},
        {"m.x, m.deep",
         "{\"m\":{\"M\":{\"deep\":{\"M\":{\"v\":{\"N\":\"7\"}}},\"x\":{\"S\":\"y\"}}}}"},
    };
    json_t *item = J(ITEM), *names = J(NAMES);
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct expr *e = NULL;
        struct nerr err = {0};
        int rc = expr_parse_projection(t[i].expr, names, &e, &err);
        json_t *p = rc == 0 ? expr_project(e, item) : NULL;
        char *d = p ? dump(p) : NULL;
        is(d ? d : err.msg, t[i].want, "project %s", t[i].expr);
        free(d);
        json_decref(p);
        expr_free(e);
    }
    static const struct {
        const char *expr, *msg;
    } bad[] = {
        {"a, a.b",
         "Invalid ProjectionExpression: Two document paths overlap with each other; must remove or "
         "rewrite one of these paths; path one: [a], path two: [a, b]"},
        {"a.b, a",
         "Invalid ProjectionExpression: Two document paths overlap with each other; must remove or "
         "rewrite one of these paths; path one: [a, b], path two: [a]"},
        {"a, a",
         "Invalid ProjectionExpression: Two document paths overlap with each other; must remove or "
         "rewrite one of these paths; path one: [a], path two: [a]"},
        {"l[0], l.x", "Invalid ProjectionExpression: Two document paths conflict with each other; "
                      "must remove or "
                      "rewrite one of these paths; path one: [l, [0]], path two: [l, x]"},
        {"a,", "Invalid ProjectionExpression: Syntax error; token: \"<EOF>\", near: \",\""},
        {"!!! INVALID !!!",
         "Invalid ProjectionExpression: Syntax error; token: \"!\", near: \"!!\""},
        {"a = b", "Invalid ProjectionExpression: Syntax error; token: \"=\", near: \"a = b\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct expr *e = NULL;
        struct nerr err = {0};
        is_int(expr_parse_projection(bad[i].expr, names, &e, &err), NERR_INVALID, "reject '%s'",
               bad[i].expr);
        is(err.msg, bad[i].msg, "message for '%s'", bad[i].expr);
    }
    json_decref(item);
    json_decref(names);
}

/* ------------------------------------------------------------ key conditions */

static int in_range(const struct av_key_range *r, const unsigned char *k, size_t n)
{
    size_t m = n < r->lo_len ? n : r->lo_len;
    int c = memcmp(k, r->lo, m);
    int ge_lo = c > 0 || (c == 0 && n >= r->lo_len);
    m = n < r->hi_len ? n : r->hi_len;
    c = memcmp(k, r->hi, m);
    int lt_hi = c < 0 || (c == 0 && n < r->hi_len);
    return ge_lo && lt_hi;
}

static void test_key_condition(void)
{
    static const struct {
        const char *expr;
        int op;
        const char *selected; /* which of sk = 1, 5, 10, 5.5 are selected, as "1010" */
    } good[] = {
        {"pk = :p", AV_KEY_ALL, "1111"},
        {"pk = :p AND sk = :five", AV_KEY_EQ, "0100"},
        {"pk = :p AND sk > :five", AV_KEY_GT, "0011"},
        {"pk = :p AND sk >= :five", AV_KEY_GE, "0111"},
        {"pk = :p AND sk < :five", AV_KEY_LT, "1000"},
        {"pk = :p AND sk <= :five", AV_KEY_LE, "1100"},
        {"sk BETWEEN :five AND :ten AND pk = :p", AV_KEY_BETWEEN, "0111"},
        {":five < sk AND #pk = :p", AV_KEY_GT, "0011"},
        {"(pk = :p) AND (sk <= :one)", AV_KEY_LE, "1000"},
    };
    json_t *values = J("{\":p\":{\"S\":\"k\"},\":one\":{\"N\":\"1\"},\":five\":{\"N\":\"5\"},\":"
                       "ten\":{\"N\":\"10\"},"
                       "\":s\":{\"S\":\"x\"},\":pn\":{\"N\":\"1\"}}");
    json_t *names = J("{\"#pk\":\"pk\"}");
    struct expr_key_schema schema = {"pk", "S", "sk", "N"};
    const char *sks[] = {"1", "5", "10", "5.5"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        struct expr *e = NULL;
        struct expr_key_cond kc;
        struct nerr err = {0};
        int rc = expr_parse_key_condition(good[i].expr, names, values, &schema, &e, &kc, &err);
        is_int(rc, 0, "key condition '%s' (%s)", good[i].expr, err.msg);
        if (rc < 0)
            continue;
        is_int(kc.op, good[i].op, "op of '%s'", good[i].expr);
        is(json_string_value(json_object_get(kc.hash, "S")), "k", "hash value of '%s'",
           good[i].expr);
        struct av_key_range r;
        char sel[5] = {0};
        av_key_query_range(kc.hash, kc.op, kc.v1, kc.v2, &r, NULL);
        for (int k = 0; k < 4; k++) {
            json_t *sk = json_pack("{s:s}", "N", sks[k]);
            unsigned char *key;
            size_t len;
            av_key_encode(kc.hash, sk, &key, &len, NULL);
            sel[k] = in_range(&r, key, len) ? '1' : '0';
            free(key);
            json_decref(sk);
        }
        is(sel, good[i].selected, "cursor range of '%s'", good[i].expr);
        av_key_range_free(&r);
        expr_free(e);
    }
    static const struct {
        const char *expr, *msg;
    } bad[] = {
        {"sk > :five", "Query condition missed key schema element: pk"},
        {"pk > :p", "Query key condition not supported"},
        {"pk = :p OR sk = :five",
         "Invalid KeyConditionExpression: Invalid operator used in KeyConditionExpression: OR"},
        {"NOT pk = :p",
         "Invalid KeyConditionExpression: Invalid operator used in KeyConditionExpression: NOT"},
        {"pk = :p AND sk IN (:one)",
         "Invalid KeyConditionExpression: Invalid operator used in KeyConditionExpression: IN"},
        {"pk = :p AND sk <> :one",
         "Invalid KeyConditionExpression: Invalid operator used in KeyConditionExpression: <>"},
        {"pk = :p AND attribute_exists(sk)", "Invalid KeyConditionExpression: Invalid operator "
                                             "used in KeyConditionExpression: attribute_exists"},
        {"pk = :p AND sk = :one AND sk = :five",
         "KeyConditionExpressions must only contain one condition per key"},
        {"pk = :p AND pk = :p", "KeyConditionExpressions must only contain one condition per key"},
        {"pk = :p AND other = :one", "Query condition missed key schema element: sk"},
        {"pk = :pn", "One or more parameter values were invalid: Condition parameter type does not "
                     "match schema type"},
        {"pk = :p AND sk = :s", "One or more parameter values were invalid: Condition parameter "
                                "type does not match schema type"},
        {"pk = :p AND begins_with(sk, :s)", "Invalid KeyConditionExpression: Incorrect operand "
                                            "type for operator or function; operator or function: "
                                            "begins_with, operand type: N"},
        {"pk = :p AND sk BETWEEN :ten AND :one",
         "Invalid KeyConditionExpression: The BETWEEN operator requires upper bound to be greater "
         "than or equal to "
         "lower bound; lower bound operand: AttributeValue: {N:10}, upper bound operand: "
         "AttributeValue: {N:1}"},
        {"pk = :p AND",
         "Invalid KeyConditionExpression: Syntax error; token: \"<EOF>\", near: \"AND\""},
        {"pk.x = :p", "Invalid KeyConditionExpression: KeyConditionExpressions cannot have "
                      "conditions on nested attributes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct expr *e = NULL;
        struct expr_key_cond kc;
        struct nerr err = {0};
        is_int(expr_parse_key_condition(bad[i].expr, names, values, &schema, &e, &kc, &err),
               NERR_INVALID, "reject '%s'", bad[i].expr);
        is(err.msg, bad[i].msg, "message for '%s'", bad[i].expr);
    }
    /* begins_with on an S range key */
    struct expr_key_schema sschema = {"pk", "S", "sk", "S"};
    json_t *sv = J("{\":p\":{\"S\":\"k\"},\":pre\":{\"S\":\"ab\"}}");
    struct expr *e;
    struct expr_key_cond kc;
    is_int(expr_parse_key_condition("pk = :p AND begins_with(sk, :pre)", NULL, sv, &sschema, &e,
                                    &kc, NULL),
           0, "begins_with on an S range key");
    struct av_key_range r;
    av_key_query_range(kc.hash, kc.op, kc.v1, kc.v2, &r, NULL);
    const char *cands[] = {"a", "ab", "abz", "ac", "b"};
    char sel[6] = {0};
    for (int k = 0; k < 5; k++) {
        json_t *sk = json_pack("{s:s}", "S", cands[k]);
        unsigned char *key;
        size_t len;
        av_key_encode(kc.hash, sk, &key, &len, NULL);
        sel[k] = in_range(&r, key, len) ? '1' : '0';
        free(key);
        json_decref(sk);
    }
    is(sel, "01100", "begins_with range selects ab, abz");
    av_key_range_free(&r);
    expr_free(e);
    json_decref(sv);
    json_decref(values);
    json_decref(names);
}

/* ------------------------------------------------------------ request-level checks */

static void test_unused(void)
{
    json_t *names = J("{\"#a\":\"a\",\"#b\":\"b\",\"#c\":\"c\"}");
    json_t *values = J("{\":x\":{\"N\":\"1\"},\":y\":{\"N\":\"2\"}}");
    struct expr *cond = NULL, *upd = NULL, *proj = NULL;
    struct nerr err = {0};

    expr_parse_condition("#a = :x", NULL, names, values, &cond, NULL);
    expr_parse_update("SET #b = :y", names, values, &upd, NULL);
    struct expr *two[] = {cond, upd};
    is_int(expr_check_unused(names, values, two, 2, &err), NERR_INVALID, "#c unused");
    is(err.msg, "Value provided in ExpressionAttributeNames unused in expressions: keys: {#c}",
       "names message");
    expr_parse_projection("#c", names, &proj, NULL);
    struct expr *three[] = {cond, upd, proj, NULL};
    is_int(expr_check_unused(names, values, three, 4, NULL), 0,
           "all used across three expressions");
    struct expr *one[] = {cond};
    json_t *n1 = J("{\"#a\":\"a\"}");
    is_int(expr_check_unused(n1, values, one, 1, &err), NERR_INVALID, ":y unused");
    is(err.msg, "Value provided in ExpressionAttributeValues unused in expressions: keys: {:y}",
       "values message");
    is_int(expr_check_unused(names, values, NULL, 0, &err), NERR_INVALID, "nothing used");
    is(err.msg,
       "Value provided in ExpressionAttributeNames unused in expressions: keys: {#a, #b, #c}",
       "lists every unused key");
    expr_free(cond);
    expr_free(upd);
    expr_free(proj);
    json_decref(n1);

    static const struct {
        const char *names, *values, *msg;
    } maps[] = {
        {"{\"a\":\"x\"}", NULL,
         "ExpressionAttributeNames contains invalid key: Syntax error; key: \"a\""},
        {"{\"#\":\"x\"}", NULL,
         "ExpressionAttributeNames contains invalid key: Syntax error; key: \"#\""},
        {"{}", NULL, "ExpressionAttributeNames must not be empty"},
        {NULL, "{}", "ExpressionAttributeValues must not be empty"},
        {NULL, "{\"x\":{\"N\":\"1\"}}",
         "ExpressionAttributeValues contains invalid key: Syntax error; key: \"x\""},
        {"{\"#a\":\"a\"}", "{\":a\":{\"N\":\"1\"}}", NULL},
    };
    for (size_t i = 0; i < sizeof maps / sizeof maps[0]; i++) {
        json_t *n = maps[i].names ? J(maps[i].names) : NULL,
               *v = maps[i].values ? J(maps[i].values) : NULL;
        struct nerr e2 = {0};
        int rc = expr_check_attribute_maps(n, v, &e2);
        if (maps[i].msg)
            is(e2.msg, maps[i].msg, "maps %s %s", maps[i].names, maps[i].values);
        else
            is_int(rc, 0, "valid maps");
        json_decref(n);
        json_decref(v);
    }
    json_decref(names);
    json_decref(values);
}

int main(void)
{
    test_condition_eval();
    test_condition_errors();
    test_limits();
    test_update();
    test_update_errors();
    test_projection();
    test_key_condition();
    test_unused();
    return done_testing();
}
