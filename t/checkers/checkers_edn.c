/* EDN reader: values, streaming, and malformed input rejected with line:col. */
#include <string.h>

#include "checkers/edn.h"
#include "t/tap.h"

static int read_one(const char *text, struct edn_arena *a, struct edn_value **v, struct nerr *e)
{
    struct edn_reader r;
    edn_reader_init(&r, text, strlen(text));
    return edn_read(&r, a, v, e);
}

static void bad(const char *text, const char *where, const char *why)
{
    struct edn_arena a;
    struct edn_value *v;
    struct nerr e;
    edn_arena_init(&a);
    nerr_clear(&e);
    struct edn_reader r;
    edn_reader_init(&r, text, strlen(text));
    int rc;
    while ((rc = edn_read(&r, &a, &v, &e)) > 0)
        ;
    ok(rc == NERR_PARSE && strstr(e.msg, where) != NULL, "rejects %s at %s (%s)", why, where,
       e.msg);
    edn_arena_free(&a);
}

int main(void)
{
    struct edn_arena a;
    struct edn_value *v;
    struct nerr e;
    edn_arena_init(&a);

    is_int(read_one("{:process 7, :type :invoke, :f :cas, :value [2 3]}", &a, &v, &e), 1,
           "reads a Jepsen op map");
    ok(v->type == EDN_MAP && v->u.seq.n == 8, "map with four pairs");
    const struct edn_value *p = edn_map_get(v, "process");
    ok(p && p->type == EDN_INT && p->u.num.i == 7, ":process is the integer 7");
    const struct edn_value *f = edn_map_get(v, "f");
    ok(f && f->type == EDN_KEYWORD && !strcmp(f->u.str.s, "cas"), ":f is the keyword :cas");
    const struct edn_value *val = edn_map_get(v, "value");
    ok(val && val->type == EDN_VECTOR && val->u.seq.n == 2 && val->u.seq.items[1]->u.num.i == 3,
       ":value is [2 3]");
    ok(edn_map_get(v, "time") == NULL, "absent key gives NULL");

    edn_arena_reset(&a);
    is_int(read_one("\"a\\\"b\\n\\u00e9\"", &a, &v, &e), 1, "string with escapes");
    ok(v->type == EDN_STRING && !strcmp(v->u.str.s, "a\"b\n\xc3\xa9"), "escapes decoded to UTF-8");

    edn_arena_reset(&a);
    is_int(read_one("#{1 -2 3.5e1 99999999999999999999N nil true \\a}", &a, &v, &e), 1, "set");
    ok(v->type == EDN_SET && v->u.seq.n == 7, "set of 7");
    ok(v->u.seq.items[1]->u.num.i == -2, "negative integer");
    ok(v->u.seq.items[2]->type == EDN_FLOAT, "float");
    ok(v->u.seq.items[3]->type == EDN_INT && !v->u.seq.items[3]->u.num.fits &&
           !strcmp(v->u.seq.items[3]->u.num.text, "99999999999999999999"),
       "bigint keeps its text");
    ok(v->u.seq.items[4]->type == EDN_NIL && v->u.seq.items[5]->type == EDN_BOOL &&
           v->u.seq.items[6]->type == EDN_CHAR,
       "nil, true and a character");

    edn_arena_reset(&a);
    is_int(read_one("#jepsen.history.Op{:index 0 :f :read} ", &a, &v, &e), 1, "tagged map");
    ok(v->type == EDN_MAP && v->tag && !strcmp(v->tag, "jepsen.history.Op"), "tag kept");

    edn_arena_reset(&a);
    is_int(read_one("; comment\n #_ {:ignored 1} [1 (2 3)]", &a, &v, &e), 1,
           "comments and discard skipped");
    ok(v->type == EDN_VECTOR && v->u.seq.n == 2 && v->u.seq.items[1]->type == EDN_LIST,
       "vector with a list");
    ok(v->line == 2, "form position is line 2 (got %u)", v->line);

    /* streaming a top-level vector */
    const char *hist = "[{:a 1}\n {:a 2}\n ; c\n {:a 3}]\n{:a 4}";
    struct edn_reader r;
    edn_reader_init(&r, hist, strlen(hist));
    is_int(edn_enter(&r, &e), 1, "enters the top-level vector");
    int n = 0, rc;
    while ((rc = edn_read(&r, &a, &v, &e)) > 0)
        n++;
    is_int(n, 3, "three elements inside");
    is_int(rc, 0, "then the closing bracket");
    is_int(edn_read(&r, &a, &v, &e), 1, "and the form after it");
    is_int(edn_read(&r, &a, &v, &e), 0, "then end of input");

    bad("[1 2", "line 1, column 1", "unterminated vector");
    bad("{:a 1\n :b}", "line 1, column 1", "odd map");
    bad("[1 2]\n  )", "line 2, column 3", "stray closer");
    bad("\"abc", "line 1, column 1", "unterminated string");
    bad("{:x \"a\\qb\"}", "line 1, column 7", "bad escape");
    bad("[1 12abc]", "line 1, column 4", "malformed number");
    bad("[:a\n  #!x]", "line 2, column 3", "bad dispatch");
    {
        char deep[EDN_MAX_DEPTH + 10];
        memset(deep, '[', sizeof deep - 1);
        deep[sizeof deep - 1] = '\0';
        bad(deep, "nesting deeper", "deep nesting");
    }
    edn_arena_free(&a);
    return done_testing();
}
