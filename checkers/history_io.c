/*
 * history_io.c — the two history loaders (docs/history.md).
 *
 * JSONL is read by a purpose-built parser for flat JSON objects rather than
 * a general JSON library: a million-operation history is two million lines,
 * and building a DOM per line cost more than the whole check (measured,
 * docs/checkers.md). It still accepts any valid JSON line; fields it does not
 * know are skipped whatever their shape.
 *
 * EDN goes through edn.c. Jepsen's independent-key histories carry the key
 * inside the value ([k v]); the loader first scans the history to see
 * whether every value has that shape, then reads it again to build.
 */
#include "checkers/history.h"
#include "checkers/edn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ JSONL */

struct jcur {
    const char *p, *end, *line_start;
    uint32_t line;
    const char *name;
    struct nerr *e;
};

/* A growable scratch buffer for unescaped strings. */
struct sbuf {
    char *s;
    size_t len, cap;
};

static int sbuf_put(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 256;
        while (nc < b->len + n + 1)
            nc *= 2;
        char *x = realloc(b->s, nc);
        if (!x)
            return NERR_NOMEM;
        b->s = x;
        b->cap = nc;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
    return 0;
}

static int jerr(struct jcur *c, const char *why)
{
    return nerr_set(c->e, NERR_PARSE, "%s:%u:%u: %s", c->name, c->line,
                    (unsigned)(c->p - c->line_start) + 1, why);
}

static void jws(struct jcur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r'))
        c->p++;
}

enum jkind { J_STR, J_NUM, J_TRUE, J_FALSE, J_NULL, J_ARR, J_OBJ };

struct jval {
    enum jkind kind;
    const char *s; /* J_STR: text (in a scratch buffer or the line); others: raw slice */
    size_t len;
};

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static int jstring(struct jcur *c, struct sbuf *sb, struct jval *v)
{
    c->p++; /* opening quote */
    const char *start = c->p;
    while (c->p < c->end && *c->p != '"' && *c->p != '\\') {
        if ((unsigned char)*c->p < 0x20)
            return jerr(c, "control character in string");
        c->p++;
    }
    if (c->p < c->end && *c->p == '"') { /* the common case: no escapes */
        v->kind = J_STR;
        v->s = start;
        v->len = (size_t)(c->p - start);
        c->p++;
        return 0;
    }
    sb->len = 0;
    if (sbuf_put(sb, start, (size_t)(c->p - start)))
        return nerr_set(c->e, NERR_NOMEM, "out of memory");
    while (c->p < c->end && *c->p != '"') {
        if ((unsigned char)*c->p < 0x20)
            return jerr(c, "control character in string");
        if (*c->p != '\\') {
            const char *s = c->p;
            while (c->p < c->end && *c->p != '"' && *c->p != '\\' && (unsigned char)*c->p >= 0x20)
                c->p++;
            if (sbuf_put(sb, s, (size_t)(c->p - s)))
                return nerr_set(c->e, NERR_NOMEM, "out of memory");
            continue;
        }
        if (c->end - c->p < 2)
            return jerr(c, "unterminated string");
        char esc = c->p[1], out[4];
        size_t n = 1;
        switch (esc) {
        case '"': out[0] = '"'; break;
        case '\\': out[0] = '\\'; break;
        case '/': out[0] = '/'; break;
        case 'b': out[0] = '\b'; break;
        case 'f': out[0] = '\f'; break;
        case 'n': out[0] = '\n'; break;
        case 'r': out[0] = '\r'; break;
        case 't': out[0] = '\t'; break;
        case 'u': {
            unsigned cp;
            if (c->end - c->p < 6 || hex4(c->p + 2, &cp))
                return jerr(c, "bad \\u escape");
            if (cp >= 0xD800 && cp < 0xDC00) {
                unsigned lo;
                if (c->end - c->p < 12 || c->p[6] != '\\' || c->p[7] != 'u' ||
                    hex4(c->p + 8, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    return jerr(c, "unpaired surrogate in \\u escape");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                c->p += 6;
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                return jerr(c, "unpaired surrogate in \\u escape");
            }
            if (cp < 0x80) {
                out[0] = (char)cp;
            } else if (cp < 0x800) {
                out[0] = (char)(0xC0 | (cp >> 6));
                out[1] = (char)(0x80 | (cp & 0x3F));
                n = 2;
            } else if (cp < 0x10000) {
                out[0] = (char)(0xE0 | (cp >> 12));
                out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[2] = (char)(0x80 | (cp & 0x3F));
                n = 3;
            } else {
                out[0] = (char)(0xF0 | (cp >> 18));
                out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
                out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[3] = (char)(0x80 | (cp & 0x3F));
                n = 4;
            }
            c->p += 4;
            break;
        }
        default:
            return jerr(c, "unknown escape in string");
        }
        c->p += 2;
        if (sbuf_put(sb, out, n))
            return nerr_set(c->e, NERR_NOMEM, "out of memory");
    }
    if (c->p >= c->end)
        return jerr(c, "unterminated string");
    c->p++;
    v->kind = J_STR;
    v->s = sb->s;
    v->len = sb->len;
    return 0;
}

static int jnumber(struct jcur *c, struct jval *v)
{
    const char *s = c->p;
    if (c->p < c->end && *c->p == '-')
        c->p++;
    if (c->p >= c->end || *c->p < '0' || *c->p > '9')
        return jerr(c, "malformed number");
    if (*c->p == '0' && c->p + 1 < c->end && c->p[1] >= '0' && c->p[1] <= '9')
        return jerr(c, "leading zero in number");
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
        c->p++;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (c->p >= c->end || *c->p < '0' || *c->p > '9')
            return jerr(c, "malformed number");
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
            c->p++;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
            c->p++;
        if (c->p >= c->end || *c->p < '0' || *c->p > '9')
            return jerr(c, "malformed number");
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
            c->p++;
    }
    v->kind = J_NUM;
    v->s = s;
    v->len = (size_t)(c->p - s);
    return 0;
}

static int jliteral(struct jcur *c, const char *word, enum jkind k, struct jval *v)
{
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n))
        return jerr(c, "unexpected character");
    v->kind = k;
    v->s = c->p;
    v->len = n;
    c->p += n;
    return 0;
}

static int jvalue(struct jcur *c, struct sbuf *sb, struct jval *v, int depth);

/* Skips an array or object, keeping its raw text as the value. */
static int jcompound(struct jcur *c, struct sbuf *sb, struct jval *v, int depth)
{
    if (depth > 64)
        return jerr(c, "nesting too deep");
    const char *s = c->p;
    char close = *c->p == '[' ? ']' : '}';
    int obj = close == '}';
    c->p++;
    jws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
    } else {
        for (;;) {
            struct jval tmp;
            jws(c);
            if (obj) {
                if (c->p >= c->end || *c->p != '"')
                    return jerr(c, "expected a string key");
                int rc = jstring(c, sb, &tmp);
                if (rc)
                    return rc;
                jws(c);
                if (c->p >= c->end || *c->p != ':')
                    return jerr(c, "expected ':'");
                c->p++;
                jws(c);
            }
            int rc = jvalue(c, sb, &tmp, depth + 1);
            if (rc)
                return rc;
            jws(c);
            if (c->p < c->end && *c->p == ',') {
                c->p++;
                continue;
            }
            if (c->p < c->end && *c->p == close) {
                c->p++;
                break;
            }
            return jerr(c, obj ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    v->kind = obj ? J_OBJ : J_ARR;
    v->s = s;
    v->len = (size_t)(c->p - s);
    return 0;
}

static int jvalue(struct jcur *c, struct sbuf *sb, struct jval *v, int depth)
{
    jws(c);
    if (c->p >= c->end)
        return jerr(c, "unexpected end of line");
    switch (*c->p) {
    case '"': return jstring(c, sb, v);
    case '[':
    case '{': return jcompound(c, sb, v, depth);
    case 't': return jliteral(c, "true", J_TRUE, v);
    case 'f': return jliteral(c, "false", J_FALSE, v);
    case 'n': return jliteral(c, "null", J_NULL, v);
    default: return jnumber(c, v);
    }
}

/* Turns a scalar into an event value slot (text kept in `keep`). */
static int jslot(struct jcur *c, const struct jval *v, struct sbuf *keep,
                 enum history_vkind *kind, const char **s, size_t *len)
{
    if (v->kind == J_NULL) {
        *kind = HISTORY_V_NULL;
        return 0;
    }
    keep->len = 0;
    if (sbuf_put(keep, v->s, v->len))
        return nerr_set(c->e, NERR_NOMEM, "out of memory");
    *kind = HISTORY_V_TEXT;
    *s = keep->s;
    *len = keep->len;
    return 0;
}

static int key_is(const struct jval *k, const char *name)
{
    size_t n = strlen(name);
    return k->len == n && !memcmp(k->s, name, n);
}

struct jscratch {
    struct sbuf tmp, key, v1, v2;
};

static int parse_f(const char *s, size_t n, enum history_f *f)
{
    static const struct {
        const char *name;
        enum history_f f;
    } fs[] = {{"read", HISTORY_READ},   {"get", HISTORY_READ},      {"write", HISTORY_WRITE},
              {"put", HISTORY_WRITE},   {"cas", HISTORY_CAS},       {"delete", HISTORY_DELETE},
              {"append", HISTORY_APPEND}};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        if (strlen(fs[i].name) == n && !memcmp(fs[i].name, s, n)) {
            *f = fs[i].f;
            return 0;
        }
    return -1;
}

static int parse_type(const char *s, size_t n, enum history_type *t)
{
    static const char *names[] = {"invoke", "ok", "fail", "info"};
    for (int i = 0; i < 4; i++)
        if (strlen(names[i]) == n && !memcmp(names[i], s, n)) {
            *t = (enum history_type)i;
            return 0;
        }
    return -1;
}

/* The cas value [expected, new]: two scalars. */
static int jcas(struct jcur *c, struct jscratch *js, const struct jval *arr,
                struct history_event *ev)
{
    struct jcur sub = *c;
    sub.p = arr->s + 1;
    sub.end = arr->s + arr->len - 1;
    struct jval a, b;
    int rc = jvalue(&sub, &js->tmp, &a, 1);
    if (rc)
        return rc;
    if (a.kind == J_ARR || a.kind == J_OBJ)
        return jerr(&sub, "cas values must be scalars");
    rc = jslot(c, &a, &js->v1, &ev->value_kind, &ev->value, &ev->value_len);
    if (rc)
        return rc;
    jws(&sub);
    if (sub.p >= sub.end || *sub.p != ',')
        return jerr(&sub, "cas value must be [expected, new]");
    sub.p++;
    rc = jvalue(&sub, &js->tmp, &b, 1);
    if (rc)
        return rc;
    if (b.kind == J_ARR || b.kind == J_OBJ)
        return jerr(&sub, "cas values must be scalars");
    rc = jslot(c, &b, &js->v2, &ev->value2_kind, &ev->value2, &ev->value2_len);
    if (rc)
        return rc;
    jws(&sub);
    if (sub.p != sub.end)
        return jerr(&sub, "cas value must be [expected, new]");
    return 0;
}

static int jline(struct jcur *c, struct jscratch *js, struct history_builder *b)
{
    struct history_event ev;
    memset(&ev, 0, sizeof ev);
    ev.consistent = 1;
    ev.line = c->line;
    int have_process = 0, have_type = 0, have_f = 0, rc;
    struct jval value = {J_NULL, NULL, 0};
    int have_value = 0;
    const char *value_at = NULL;
    jws(c);
    if (c->p >= c->end || *c->p != '{')
        return jerr(c, "expected a JSON object");
    c->p++;
    jws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
    } else {
        for (;;) {
            struct jval k, v;
            jws(c);
            if (c->p >= c->end || *c->p != '"')
                return jerr(c, "expected a string key");
            /* Known keys never need unescaping; keep them in tmp only if they do. */
            rc = jstring(c, &js->tmp, &k);
            if (rc)
                return rc;
            char kbuf[16];
            size_t kl = k.len < sizeof kbuf - 1 ? k.len : sizeof kbuf - 1;
            memcpy(kbuf, k.s, kl);
            kbuf[kl] = '\0';
            struct jval kk = {J_STR, kbuf, k.len};
            jws(c);
            if (c->p >= c->end || *c->p != ':')
                return jerr(c, "expected ':'");
            c->p++;
            jws(c);
            const char *at = c->p;
            struct sbuf *dst = key_is(&kk, "key") ? &js->key : &js->tmp;
            rc = jvalue(c, dst, &v, 1);
            if (rc)
                return rc;
            if (key_is(&kk, "process")) {
                if (v.kind != J_NUM)
                    return c->p = at, jerr(c, "process must be an integer");
                char *endp;
                errno = 0;
                ev.process = strtoll(v.s, &endp, 10);
                if (errno || endp != v.s + v.len)
                    return c->p = at, jerr(c, "process must be an integer");
                have_process = 1;
            } else if (key_is(&kk, "type")) {
                if (v.kind != J_STR || parse_type(v.s, v.len, &ev.type))
                    return c->p = at, jerr(c, "type must be \"invoke\", \"ok\", \"fail\" or \"info\"");
                have_type = 1;
            } else if (key_is(&kk, "f")) {
                if (v.kind != J_STR || parse_f(v.s, v.len, &ev.f))
                    return c->p = at,
                           jerr(c, "f must be read, get, write, put, cas, delete or append");
                have_f = 1;
            } else if (key_is(&kk, "key")) {
                if (v.kind == J_NULL) {
                    ev.key = NULL;
                } else if (v.kind == J_STR || v.kind == J_NUM) {
                    if (v.s != js->key.s) { /* unescaped strings are already there */
                        js->key.len = 0;
                        if (sbuf_put(&js->key, v.s, v.len))
                            return nerr_set(c->e, NERR_NOMEM, "out of memory");
                    }
                    ev.key = js->key.s;
                    ev.key_len = v.len;
                } else {
                    return c->p = at, jerr(c, "key must be a string or a number");
                }
            } else if (key_is(&kk, "value")) {
                value = v;
                have_value = 1;
                value_at = at;
                if (v.kind == J_STR) { /* may live in tmp, which later keys reuse */
                    rc = jslot(c, &v, &js->v1, &ev.value_kind, &ev.value, &ev.value_len);
                    if (rc)
                        return rc;
                    value.s = ev.value;
                }
            } else if (key_is(&kk, "time")) {
                char *endp;
                errno = 0;
                if (v.kind == J_NUM)
                    ev.time = strtoll(v.s, &endp, 10);
                if (v.kind != J_NUM || errno || endp != v.s + v.len)
                    return c->p = at, jerr(c, "time must be an integer (nanoseconds)");
                ev.has_time = 1;
            } else if (key_is(&kk, "consistent")) {
                if (v.kind != J_TRUE && v.kind != J_FALSE)
                    return c->p = at, jerr(c, "consistent must be true or false");
                ev.consistent = v.kind == J_TRUE;
            }
            jws(c);
            if (c->p < c->end && *c->p == ',') {
                c->p++;
                continue;
            }
            if (c->p < c->end && *c->p == '}') {
                c->p++;
                break;
            }
            return jerr(c, "expected ',' or '}'");
        }
    }
    jws(c);
    if (c->p != c->end)
        return jerr(c, "trailing characters after the object");
    const char *missing = !have_process ? "process" : !have_type ? "type" : !have_f ? "f" : NULL;
    if (missing) {
        c->p = c->line_start;
        char why[64];
        snprintf(why, sizeof why, "missing field \"%s\"", missing);
        return jerr(c, why);
    }
    if (have_value) {
        if (ev.f == HISTORY_CAS && value.kind != J_NULL) {
            if (value.kind != J_ARR) {
                c->p = value_at;
                return jerr(c, "cas value must be [expected, new]");
            }
            rc = jcas(c, js, &value, &ev);
            if (rc)
                return rc;
        } else if (value.kind != J_STR) {
            rc = jslot(c, &value, &js->v1, &ev.value_kind, &ev.value, &ev.value_len);
            if (rc)
                return rc;
        }
    }
    rc = history_builder_add(b, &ev, c->e);
    return rc;
}

/* Parses the complete lines of buf[0..len); with final set, a last line
 * without a newline too. Returns the bytes consumed or a negative error;
 * *line counts lines across calls. */
static long parse_jsonl_chunk(const char *buf, size_t len, int final, const char *name,
                              struct history_builder *b, struct jscratch *js, uint32_t *line,
                              struct nerr *e)
{
    struct jcur c = {buf, buf, buf, *line, name, e};
    const char *end = buf + len;
    while (c.p < end) {
        const char *nl = memchr(c.p, '\n', (size_t)(end - c.p));
        if (!nl && !final)
            break;
        const char *le = nl ? nl : end;
        c.line++;
        c.line_start = c.p;
        c.end = le;
        const char *q = c.p;
        while (q < le && (*q == ' ' || *q == '\t' || *q == '\r'))
            q++;
        if (q < le) {
            int rc = jline(&c, js, b);
            if (rc)
                return rc;
        }
        c.p = nl ? nl + 1 : end;
    }
    *line = c.line;
    return (long)(c.p - buf);
}

static void jscratch_free(struct jscratch *js)
{
    free(js->tmp.s);
    free(js->key.s);
    free(js->v1.s);
    free(js->v2.s);
}

static int parse_jsonl(const char *buf, size_t len, const char *name, struct history_builder *b,
                       struct nerr *e)
{
    struct jscratch js = {0};
    uint32_t line = 0;
    long rc = parse_jsonl_chunk(buf, len, 1, name, b, &js, &line, e);
    jscratch_free(&js);
    return rc < 0 ? (int)rc : 0;
}

/* -------------------------------------------------------------------- EDN */

static int edn_print(const struct edn_value *v, struct sbuf *out);

static int edn_print_seq(const struct edn_value *v, const char *open, const char *close,
                         struct sbuf *out)
{
    if (sbuf_put(out, open, strlen(open)))
        return NERR_NOMEM;
    for (size_t i = 0; i < v->u.seq.n; i++) {
        if (i && sbuf_put(out, " ", 1))
            return NERR_NOMEM;
        if (edn_print(v->u.seq.items[i], out))
            return NERR_NOMEM;
    }
    return sbuf_put(out, close, strlen(close));
}

/* Canonical text of a value: what two equal EDN values print identically as. */
static int edn_print(const struct edn_value *v, struct sbuf *out)
{
    switch (v->type) {
    case EDN_NIL: return sbuf_put(out, "nil", 3);
    case EDN_BOOL: return v->u.b ? sbuf_put(out, "true", 4) : sbuf_put(out, "false", 5);
    case EDN_INT:
        if (v->u.num.fits) {
            char b[32];
            int n = snprintf(b, sizeof b, "%lld", (long long)v->u.num.i);
            return sbuf_put(out, b, (size_t)n);
        }
        return sbuf_put(out, v->u.num.text, strlen(v->u.num.text));
    case EDN_FLOAT: return sbuf_put(out, v->u.num.text, strlen(v->u.num.text));
    case EDN_STRING:
    case EDN_CHAR:
    case EDN_SYMBOL: return sbuf_put(out, v->u.str.s, v->u.str.len);
    case EDN_KEYWORD: return sbuf_put(out, ":", 1) || sbuf_put(out, v->u.str.s, v->u.str.len);
    case EDN_LIST: return edn_print_seq(v, "(", ")", out);
    case EDN_VECTOR: return edn_print_seq(v, "[", "]", out);
    case EDN_SET: return edn_print_seq(v, "#{", "}", out);
    case EDN_MAP: return edn_print_seq(v, "{", "}", out);
    }
    return 0;
}

static int is_seq2(const struct edn_value *v)
{
    return v && (v->type == EDN_VECTOR || v->type == EDN_LIST) && v->u.seq.n == 2;
}

struct edn_ctx {
    const char *name;
    struct nerr *e;
    int independent;
    struct sbuf key, v1, v2;
};

static int eerr(struct edn_ctx *x, const struct edn_value *at, const char *why)
{
    return nerr_set(x->e, NERR_PARSE, "%s:%u:%u: %s", x->name, at->line, at->col, why);
}

/* Fills a value slot: nil -> V_NULL, anything else -> its canonical text. */
static int eslot(struct edn_ctx *x, const struct edn_value *v, struct sbuf *keep,
                 enum history_vkind *kind, const char **s, size_t *len)
{
    if (!v || v->type == EDN_NIL) {
        *kind = v ? HISTORY_V_NULL : HISTORY_V_NONE;
        return 0;
    }
    keep->len = 0;
    if (edn_print(v, keep))
        return nerr_set(x->e, NERR_NOMEM, "out of memory");
    *kind = HISTORY_V_TEXT;
    *s = keep->s ? keep->s : "";
    *len = keep->len;
    return 0;
}

/* Classifies one op map. Returns 1 for a client op, 0 for an op to skip
 * (non-integer process, e.g. :nemesis), negative on error. */
static int eop_basic(struct edn_ctx *x, const struct edn_value *m, struct history_event *ev)
{
    if (m->type != EDN_MAP)
        return eerr(x, m, "expected an operation map");
    const struct edn_value *p = edn_map_get(m, "process");
    const struct edn_value *t = edn_map_get(m, "type");
    const struct edn_value *f = edn_map_get(m, "f");
    if (!p)
        return eerr(x, m, "operation has no :process");
    if (p->type != EDN_INT || !p->u.num.fits)
        return 0;
    if (!t || t->type != EDN_KEYWORD || parse_type(t->u.str.s, t->u.str.len, &ev->type))
        return eerr(x, t ? t : m, ":type must be :invoke, :ok, :fail or :info");
    if (!f || (f->type != EDN_KEYWORD && f->type != EDN_STRING) ||
        parse_f(f->u.str.s, f->u.str.len, &ev->f))
        return eerr(x, f ? f : m, ":f must be :read, :write, :cas, :delete or :append");
    ev->process = p->u.num.i;
    ev->line = m->line;
    ev->consistent = 1;
    const struct edn_value *tm = edn_map_get(m, "time");
    if (tm && tm->type == EDN_INT && tm->u.num.fits) {
        ev->has_time = 1;
        ev->time = tm->u.num.i;
    }
    return 1;
}

/* Would this op fit Jepsen's independent [k v] shape? */
static int eop_independent_shape(const struct history_event *ev, const struct edn_value *val)
{
    if (!val || val->type == EDN_NIL)
        return 1;
    if (!is_seq2(val))
        return 0;
    if (ev->f == HISTORY_CAS) {
        const struct edn_value *inner = val->u.seq.items[1];
        return inner->type == EDN_NIL || is_seq2(inner);
    }
    return 1;
}

static int eop_build(struct edn_ctx *x, const struct edn_value *m, struct history_event *ev,
                     struct history_builder *b)
{
    const struct edn_value *val = edn_map_get(m, "value");
    const struct edn_value *key = edn_map_get(m, "key");
    int rc;
    if (x->independent && val && val->type != EDN_NIL) {
        key = val->u.seq.items[0];
        val = val->u.seq.items[1];
    }
    if (key && key->type != EDN_NIL) {
        x->key.len = 0;
        if (edn_print(key, &x->key))
            return nerr_set(x->e, NERR_NOMEM, "out of memory");
        ev->key = x->key.s ? x->key.s : "";
        ev->key_len = x->key.len;
    }
    if (ev->f == HISTORY_CAS && val && val->type != EDN_NIL) {
        if (!is_seq2(val))
            return eerr(x, val, "cas value must be [expected new]");
        rc = eslot(x, val->u.seq.items[0], &x->v1, &ev->value_kind, &ev->value, &ev->value_len);
        if (!rc)
            rc = eslot(x, val->u.seq.items[1], &x->v2, &ev->value2_kind, &ev->value2,
                       &ev->value2_len);
    } else if (ev->f == HISTORY_READ && val && val->type == EDN_NIL) {
        /* Knossos reads nil as "value not known": it matches any state. */
        ev->value_kind = HISTORY_V_NONE;
        rc = 0;
    } else {
        rc = eslot(x, val, &x->v1, &ev->value_kind, &ev->value, &ev->value_len);
    }
    if (rc)
        return rc;
    return history_builder_add(b, ev, x->e);
}

/* One pass over the EDN text: either checks the independent shape (b NULL)
 * or builds. */
static int edn_pass(struct edn_ctx *x, const char *buf, size_t len, struct history_builder *b,
                    int *shape_ok, size_t *nops)
{
    struct edn_reader r;
    struct edn_arena a;
    struct edn_value *v;
    int rc;
    edn_reader_init(&r, buf, len);
    edn_arena_init(&a);
    rc = edn_enter(&r, x->e);
    if (rc < 0)
        goto done;
    while ((rc = edn_read(&r, &a, &v, x->e)) > 0) {
        struct history_event ev;
        memset(&ev, 0, sizeof ev);
        rc = eop_basic(x, v, &ev);
        if (rc < 0)
            goto done;
        if (rc == 0) {
            if (b)
                history_builder_skip(b);
        } else if (!b) {
            (*nops)++;
            if (!eop_independent_shape(&ev, edn_map_get(v, "value")) || edn_map_get(v, "key"))
                *shape_ok = 0;
        } else {
            rc = eop_build(x, v, &ev, b);
            if (rc < 0)
                goto done;
        }
        edn_arena_reset(&a);
    }
done:
    edn_arena_free(&a);
    if (rc == NERR_PARSE && x->e && strncmp(x->e->msg, "line ", 5) == 0) {
        char msg[NERR_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", x->e->msg);
        nerr_set(x->e, NERR_PARSE, "%s: %.400s", x->name, msg);
    }
    return rc;
}

static int parse_edn(const char *buf, size_t len, const char *name, struct history_builder *b,
                     int *independent, struct nerr *e)
{
    struct edn_ctx x = {.name = name, .e = e};
    int shape_ok = 1;
    size_t nops = 0;
    int rc = edn_pass(&x, buf, len, NULL, &shape_ok, &nops);
    if (rc < 0)
        goto done;
    x.independent = shape_ok && nops > 0;
    rc = edn_pass(&x, buf, len, b, &shape_ok, &nops);
    *independent = x.independent;
done:
    free(x.key.s);
    free(x.v1.s);
    free(x.v2.s);
    return rc < 0 ? rc : 0;
}

/* --------------------------------------------------------------- dispatch */

static int looks_jsonl(const char *buf, size_t len)
{
    size_t i = 0;
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n'))
        i++;
    if (i >= len || buf[i] != '{')
        return 0;
    i++;
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r'))
        i++;
    return i < len && (buf[i] == '"' || buf[i] == '}');
}

int history_parse(const char *buf, size_t len, const char *name, struct history **out,
                  struct nerr *e)
{
    struct history_builder *b;
    int independent = 0;
    int rc = history_builder_new(&b, e);
    if (rc)
        return rc;
    if (looks_jsonl(buf, len)) {
        rc = parse_jsonl(buf, len, name, b, e);
    } else {
        rc = parse_edn(buf, len, name, b, &independent, e);
    }
    if (rc) {
        history_builder_free(b);
        return rc;
    }
    rc = history_builder_finish(b, out, e);
    if (rc)
        return rc;
    (*out)->independent = independent;
    snprintf((*out)->source, sizeof (*out)->source, "%s", name);
    return 0;
}

/* JSONL is parsed as it is read, a few MiB at a time, so that the file is
 * never held whole in memory; EDN needs two passes over the whole text. */
int history_load_file(const char *path, struct history **out, struct nerr *e)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 4 << 20;
    struct history_builder *b = NULL;
    struct jscratch js = {0};
    uint32_t line = 0;
    int rc, eof = 0;
    if (!f)
        return nerr_sys(e, errno, "cannot open %s", path);
    buf = malloc(cap);
    if (!buf) {
        rc = nerr_set(e, NERR_NOMEM, "out of memory reading %s", path);
        goto done;
    }
    /* enough to tell the format */
    while (!eof && len < 4096) {
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        eof = n == 0;
    }
    if (ferror(f)) {
        rc = nerr_sys(e, errno, "cannot read %s", path);
        goto done;
    }
    if (!looks_jsonl(buf, len)) {
        while (!eof) {
            if (cap - len < 65536) {
                char *nb = realloc(buf, cap * 2);
                if (!nb) {
                    rc = nerr_set(e, NERR_NOMEM, "out of memory reading %s", path);
                    goto done;
                }
                buf = nb;
                cap *= 2;
            }
            size_t n = fread(buf + len, 1, cap - len, f);
            len += n;
            eof = n == 0;
        }
        if (ferror(f)) {
            rc = nerr_sys(e, errno, "cannot read %s", path);
            goto done;
        }
        rc = history_parse(buf, len, path, out, e);
        goto done;
    }
    rc = history_builder_new(&b, e);
    if (rc)
        goto done;
    for (;;) {
        long used = parse_jsonl_chunk(buf, len, eof, path, b, &js, &line, e);
        if (used < 0) {
            rc = (int)used;
            goto done;
        }
        memmove(buf, buf + used, len - (size_t)used);
        len -= (size_t)used;
        if (eof)
            break;
        if (cap - len < 65536) { /* a line longer than the buffer */
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = nerr_set(e, NERR_NOMEM, "out of memory reading %s", path);
                goto done;
            }
            buf = nb;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        if (n == 0) {
            if (ferror(f)) {
                rc = nerr_sys(e, errno, "cannot read %s", path);
                goto done;
            }
            eof = 1;
        }
        len += n;
    }
    rc = history_builder_finish(b, out, e);
    b = NULL;
    if (!rc)
        snprintf((*out)->source, sizeof (*out)->source, "%s", path);
done:
    history_builder_free(b);
    jscratch_free(&js);
    free(buf);
    fclose(f);
    return rc;
}
