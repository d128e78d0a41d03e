/*
 * Checker behaviours on small hand-written histories: JSONL errors with
 * line and column, info semantics, bounds giving "unknown" with a window,
 * lost writes against the final read, sessions and staleness, checksummed
 * values, model enforcement.
 */
#include <string.h>

#include "checkers/check.h"
#include "checkers/cval.h"
#include "t/tap.h"

static struct chk_opts opts(void)
{
    struct chk_opts o;
    memset(&o, 0, sizeof o);
    o.lin.time_limit = 10;
    o.lin.memory_limit = (size_t)256 << 20;
    o.sessions_enforce = 1;
    return o;
}

/* Parses text and runs the checkers; returns the verdict or -1. */
static int run(const char *text, struct chk_opts o, struct history **hp, struct chk_result **rp)
{
    struct nerr e;
    nerr_clear(&e);
    *hp = NULL;
    *rp = NULL;
    if (history_parse(text, strlen(text), "t", hp, &e) || chk_run(*hp, &o, rp, &e)) {
        diag("%s", e.msg);
        return -1;
    }
    return (int)(*rp)->verdict;
}

static void done(struct history *h, struct chk_result *r)
{
    chk_result_free(r);
    history_free(h);
}

#define J(p, t, f, rest) "{\"process\":" #p ",\"type\":\"" t "\",\"f\":\"" f "\"" rest "}\n"

static void parse_errors(void)
{
    struct history *h = NULL;
    struct nerr e;
    const char *t1 = J(1, "invoke", "read", "") "{\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"value\":tru}\n";
    nerr_clear(&e);
    ok(history_parse(t1, strlen(t1), "h.jsonl", &h, &e) == NERR_PARSE &&
           strstr(e.msg, "h.jsonl:2:45:"),
       "bad literal: file, line and column (%s)", e.msg);
    const char *t2 = J(1, "invoke", "write", ",\"value\":1") "{\"process\":1,\"f\":\"write\"}\n";
    nerr_clear(&e);
    ok(history_parse(t2, strlen(t2), "h.jsonl", &h, &e) == NERR_PARSE &&
           strstr(e.msg, "h.jsonl:2:1: missing field \"type\""),
       "missing field named (%s)", e.msg);
    const char *t3 = J(1, "invoke", "write", ",\"value\":1") J(2, "ok", "write", ",\"value\":1");
    nerr_clear(&e);
    ok(history_parse(t3, strlen(t3), "h.jsonl", &h, &e) == NERR_INVALID &&
           strstr(e.msg, "line 2") && strstr(e.msg, "no pending invocation"),
       "completion without invocation (%s)", e.msg);
    const char *t4 = J(1, "invoke", "frobnicate", "");
    nerr_clear(&e);
    ok(history_parse(t4, strlen(t4), "h.jsonl", &h, &e) == NERR_PARSE && strstr(e.msg, ":1:"),
       "unknown f (%s)", e.msg);
    const char *t5 = "[{:process 1 :type :invoke :f :read}\n {:process 1 :type :ok :f :read :value [1 }]";
    nerr_clear(&e);
    ok(history_parse(t5, strlen(t5), "h.edn", &h, &e) == NERR_PARSE && strstr(e.msg, "line 2"),
       "EDN error carries the line (%s)", e.msg);
    const char *t6 = J(1, "invoke", "write", ",\"value\":\"a\\u00e9\\n\",\"key\":\"k\\\"1\",\"extra\":{\"x\":[1,{\"y\":null}]}")
        J(1, "ok", "write", ",\"value\":\"a\\u00e9\\n\",\"key\":\"k\\\"1\"");
    nerr_clear(&e);
    int rc = history_parse(t6, strlen(t6), "h.jsonl", &h, &e);
    size_t kl;
    ok(rc == 0 && h->nops == 1 && !strcmp(history_key(h, h->ops[0].key, &kl), "k\"1") &&
           !strcmp(history_value(h, h->ops[0].value, NULL), "a\xc3\xa9\n"),
       "escapes decoded, unknown nested fields skipped");
    history_free(h);
}

static void info_semantics(void)
{
    struct history *h;
    struct chk_result *r;
    struct chk_opts o = opts();
    o.initial = "0";
    o.initial_len = 1;
    /* the write crashes; a later read sees it: it took effect late */
    const char *a = J(1, "invoke", "write", ",\"value\":1") J(1, "info", "write", ",\"value\":1")
        J(2, "invoke", "read", "") J(2, "ok", "read", ",\"value\":0")
        J(3, "invoke", "read", "") J(3, "ok", "read", ",\"value\":1");
    is_int(run(a, o, &h, &r), CHK_VALID, "info write may take effect after its completion");
    done(h, r);
    /* it never takes effect */
    const char *b = J(1, "invoke", "write", ",\"value\":1") J(1, "info", "write", ",\"value\":1")
        J(2, "invoke", "read", "") J(2, "ok", "read", ",\"value\":0");
    is_int(run(b, o, &h, &r), CHK_VALID, "info write may never take effect");
    done(h, r);
    /* but not before it was invoked */
    const char *c = J(2, "invoke", "read", "") J(2, "ok", "read", ",\"value\":1")
        J(1, "invoke", "write", ",\"value\":1") J(1, "info", "write", ",\"value\":1");
    is_int(run(c, o, &h, &r), CHK_INVALID, "info write cannot take effect before its invocation");
    ok(r && r->first_op != HISTORY_NONE && h->ops[r->first_op].process == 2,
       "the early read is the culprit");
    done(h, r);
    /* and only once */
    const char *d = J(1, "invoke", "write", ",\"value\":1") J(1, "info", "write", ",\"value\":1")
        J(2, "invoke", "read", "") J(2, "ok", "read", ",\"value\":1")
        J(3, "invoke", "write", ",\"value\":2") J(3, "ok", "write", ",\"value\":2")
        J(2, "invoke", "read", "") J(2, "ok", "read", ",\"value\":1");
    is_int(run(d, o, &h, &r), CHK_INVALID, "an info write takes effect at most once");
    done(h, r);
    /* an invocation with no completion at all is info too */
    const char *f = J(1, "invoke", "write", ",\"value\":1")
        J(2, "invoke", "read", "") J(2, "ok", "read", ",\"value\":1");
    is_int(run(f, o, &h, &r), CHK_VALID, "a never-completed write is info");
    ok(h && h->crashed == 1, "and is counted as never completed");
    done(h, r);
    /* failed writes take no effect */
    const char *g = J(1, "invoke", "write", ",\"value\":1") J(1, "fail", "write", ",\"value\":1")
        J(2, "invoke", "read", "") J(2, "ok", "read", ",\"value\":1");
    is_int(run(g, o, &h, &r), CHK_INVALID, "a failed write is never visible");
    is_int(r ? (int)r->first_kind : -1, CHK_PHANTOM, "named value out of nowhere");
    done(h, r);
}

/* n concurrent writes, then two sequential reads that cannot both hold:
 * the search has to try every subset of the writes. */
static char *hard_history(int n)
{
    size_t cap = (size_t)n * 200 + 1000, len = 0;
    char *s = malloc(cap);
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len, J(%d, "invoke", "write", ",\"value\":%d"), i, i);
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len, J(%d, "ok", "write", ",\"value\":%d"), i, i);
    len += (size_t)snprintf(s + len, cap - len,
                            J(100, "invoke", "read", "") J(100, "ok", "read", ",\"value\":1")
                            J(100, "invoke", "read", "") J(100, "ok", "read", ",\"value\":2"));
    return s;
}

static void bounds(void)
{
    struct history *h;
    struct chk_result *r;
    char *text = hard_history(40);
    struct chk_opts o = opts();
    o.lin.time_limit = 0.3;
    is_int(run(text, o, &h, &r), CHK_UNKNOWN, "time bound: unknown, not a crash");
    ok(r && r->lin->keys[0].verdict == LIN_UNKNOWN && !strcmp(r->lin->keys[0].reason, "time limit"),
       "the key says why (%s)", r ? r->lin->keys[0].reason : "-");
    ok(r && r->lin->keys[0].window_hi >= r->lin->keys[0].window_lo &&
           r->lin->keys[0].window_hi >= 80,
       "with a window of events (%u-%u)", r ? r->lin->keys[0].window_lo : 0,
       r ? r->lin->keys[0].window_hi : 0);
    done(h, r);
    o = opts();
    o.lin.memory_limit = 2 << 20;
    o.lin.time_limit = 30;
    is_int(run(text, o, &h, &r), CHK_UNKNOWN, "memory bound: unknown, not out of memory");
    ok(r && !strcmp(r->lin->keys[0].reason, "memory limit"), "the key says memory limit");
    ok(r && r->lin->peak_memory <= (2u << 20), "search memory stayed within the bound (%zu)",
       r ? r->lin->peak_memory : 0);
    done(h, r);
    free(text);
    /* small enough to finish: the same shape with 12 writes is invalid */
    text = hard_history(12);
    is_int(run(text, opts(), &h, &r), CHK_INVALID, "12 concurrent writes: resolved, invalid");
    done(h, r);
    free(text);
}

static void lost_writes(void)
{
    struct history *h;
    struct chk_result *r;
    const char *t = J(1, "invoke", "write", ",\"key\":\"a\",\"value\":\"x\"")
        J(1, "ok", "write", ",\"key\":\"a\",\"value\":\"x\"")
        J(1, "invoke", "write", ",\"key\":\"a\",\"value\":\"y\"")
        J(1, "ok", "write", ",\"key\":\"a\",\"value\":\"y\"")
        J(2, "invoke", "read", ",\"key\":\"a\"") J(2, "ok", "read", ",\"key\":\"a\",\"value\":\"x\"")
        J(1, "invoke", "write", ",\"key\":\"b\",\"value\":\"z\"")
        J(1, "ok", "write", ",\"key\":\"b\",\"value\":\"z\"");
    is_int(run(t, opts(), &h, &r), CHK_INVALID, "final read misses an acknowledged write");
    int found = 0;
    for (size_t i = 0; r && i < r->nanomalies; i++)
        found |= r->anomalies[i].kind == CHK_LOST_WRITE &&
                 !strcmp(r->anomalies[i].check, "lost-writes") &&
                 !strcmp(history_value(h, h->ops[r->anomalies[i].op].value, NULL), "y");
    ok(found, "the lost write of y is named by the lost-writes check");
    ok(r && r->unverified_keys == 1, "key b has no final read: unverified, not failed");
    ok(r && r->acked_writes == 3 && r->verified_writes == 1, "3 acknowledged, 1 verified");
    done(h, r);
}

static void sessions(void)
{
    struct history *h;
    struct chk_result *r;
    const char *t = J(1, "invoke", "write", ",\"value\":\"a\",\"time\":10")
        J(1, "ok", "write", ",\"value\":\"a\",\"time\":20")
        J(1, "invoke", "write", ",\"value\":\"b\",\"time\":30")
        J(1, "ok", "write", ",\"value\":\"b\",\"time\":40")
        J(1, "invoke", "read", ",\"consistent\":false,\"time\":100")
        J(1, "ok", "read", ",\"value\":\"a\",\"consistent\":false,\"time\":110")
        J(2, "invoke", "read", ",\"consistent\":false,\"time\":200")
        J(2, "ok", "read", ",\"value\":\"b\",\"consistent\":false,\"time\":210")
        J(2, "invoke", "read", ",\"consistent\":false,\"time\":300")
        J(2, "ok", "read", ",\"value\":\"a\",\"consistent\":false,\"time\":310")
        J(3, "invoke", "read", ",\"time\":400") J(3, "ok", "read", ",\"value\":\"b\",\"time\":410");
    struct chk_opts o = opts();
    is_int(run(t, o, &h, &r), CHK_INVALID, "session anomalies are invalid when enforced");
    is_int(r ? (long long)r->counts[CHK_READ_YOUR_WRITES] : -1, 1, "one read-your-writes violation");
    is_int(r ? (long long)r->counts[CHK_MONOTONIC_READS] : -1, 1, "one monotonic-reads violation");
    is_int(r ? r->ec_reads : 0, 3, "three eventually consistent reads");
    ok(r && r->stale_versions.max == 1 && r->stale_versions.nonzero == 2,
       "two reads one version behind");
    is_int(r ? r->stale_ns.max : -1, 300 - 40, "staleness in time: since b was acknowledged");
    done(h, r);
    o.sessions_enforce = 0;
    is_int(run(t, o, &h, &r), CHK_VALID, "--sessions report: counted, not failed");
    done(h, r);
    /* concurrent writes are ordered either way: no violation */
    const char *c = J(1, "invoke", "write", ",\"value\":\"a\",\"time\":10")
        J(2, "invoke", "write", ",\"value\":\"b\",\"time\":11")
        J(1, "ok", "write", ",\"value\":\"a\",\"time\":20")
        J(2, "ok", "write", ",\"value\":\"b\",\"time\":21")
        J(1, "invoke", "read", ",\"consistent\":false,\"time\":30")
        J(1, "ok", "read", ",\"value\":\"b\",\"consistent\":false,\"time\":31")
        J(1, "invoke", "read", ",\"consistent\":false,\"time\":40")
        J(1, "ok", "read", ",\"value\":\"a\",\"consistent\":false,\"time\":41");
    o.sessions_enforce = 1;
    is_int(run(c, o, &h, &r), CHK_VALID, "reads of concurrent writes in any order are fine");
    done(h, r);
}

static void values(void)
{
    char v[64], w[64];
    size_t n = cval_format(v, sizeof v, "k1", 2, 42, 0);
    ok(n == strlen(v) && !strncmp(v, "v42-", 4), "format: %s", v);
    is_int(cval_verify("k1", 2, v, n), CVAL_OK, "verifies under its key");
    is_int(cval_verify("k2", 2, v, n), CVAL_BAD, "fails under another key (misdirected)");
    memcpy(w, v, n + 1);
    w[1] = '3';
    is_int(cval_verify("k1", 2, w, n), CVAL_BAD, "a damaged body fails");
    is_int(cval_verify("k1", 2, "hello", 5), CVAL_PLAIN, "a plain value is not checked");
    n = cval_format(v, sizeof v, "k1", 2, 7, 16);
    ok(n == strlen(v) && strstr(v, "v7.xxxx") == v, "padded: %s", v);
    is_int(cval_verify("k1", 2, v, n), CVAL_OK, "padded value verifies");
    char tiny[8];
    ok(cval_format(tiny, sizeof tiny, "k", 1, 1, 0) > sizeof tiny - 1 && tiny[0] == '\0',
       "too small a buffer: needed size returned, nothing written");

    struct history *h;
    struct chk_result *r;
    char t[1024];
    cval_format(v, sizeof v, "k", 1, 1, 0);
    memcpy(w, v, strlen(v) + 1);
    w[strlen(w) - 1] = w[strlen(w) - 1] == '0' ? '1' : '0';
    snprintf(t, sizeof t,
             J(1, "invoke", "write", ",\"key\":\"k\",\"value\":\"%s\"")
             J(1, "ok", "write", ",\"key\":\"k\",\"value\":\"%s\"")
             J(2, "invoke", "read", ",\"key\":\"k\",\"consistent\":false")
             J(2, "ok", "read", ",\"key\":\"k\",\"consistent\":false,\"value\":\"%s\""),
             v, v, w);
    is_int(run(t, opts(), &h, &r), CHK_INVALID, "a corrupted eventually consistent read fails");
    is_int(r ? (long long)r->counts[CHK_CORRUPT] : -1, 1, "named corrupted");
    done(h, r);
}

static void models(void)
{
    struct history *h;
    struct chk_result *r;
    struct nerr e;
    const char *t = J(1, "invoke", "cas", ",\"value\":[null,1]") J(1, "ok", "cas", ",\"value\":[null,1]");
    struct chk_opts o = opts();
    o.lin.model = LIN_REGISTER;
    nerr_clear(&e);
    ok(history_parse(t, strlen(t), "t", &h, &e) == 0, "cas from absent parses");
    ok(chk_run(h, &o, &r, &e) == NERR_INVALID && strstr(e.msg, "cas-register"),
       "cas refused by the register model (%s)", e.msg);
    o.lin.model = LIN_AUTO;
    ok(chk_run(h, &o, &r, &e) == 0 && r->verdict == CHK_VALID &&
           r->lin->model == LIN_CAS_REGISTER,
       "auto picks cas-register");
    chk_result_free(r);
    history_free(h);
    const char *d = J(1, "invoke", "put", ",\"value\":1") J(1, "ok", "put", ",\"value\":1")
        J(1, "invoke", "delete", "") J(1, "ok", "delete", "")
        J(1, "invoke", "get", "") J(1, "ok", "get", ",\"value\":null");
    is_int(run(d, opts(), &h, &r), CHK_VALID, "kv: put, delete, get of absent");
    ok(r && r->lin->model == LIN_KV, "auto picks kv for deletes");
    done(h, r);
    const char *d2 = J(1, "invoke", "put", ",\"value\":1") J(1, "ok", "put", ",\"value\":1")
        J(1, "invoke", "get", "") J(1, "ok", "get", ",\"value\":null");
    is_int(run(d2, opts(), &h, &r), CHK_INVALID, "kv: a get of absent after a put fails");
    done(h, r);
}

int main(void)
{
    parse_errors();
    info_semantics();
    bounds();
    lost_writes();
    sessions();
    values();
    models();
    return done_testing();
}
