/*
 * edn.c — EDN reader (see edn.h). A recursive-descent parser over a byte
 * buffer; every value goes into a bump arena so that a caller streaming a
 * large history frees a whole operation at once.
 */
#include "checkers/edn.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_CHUNK (64 * 1024)

struct edn_arena_chunk {
    struct edn_arena_chunk *next;
    size_t size, used;
    max_align_t data[];
};

void edn_arena_init(struct edn_arena *a)
{
    a->head = NULL;
}

void edn_arena_free(struct edn_arena *a)
{
    struct edn_arena_chunk *c = a->head;
    while (c) {
        struct edn_arena_chunk *n = c->next;
        free(c);
        c = n;
    }
    a->head = NULL;
}

void edn_arena_reset(struct edn_arena *a)
{
    if (!a->head)
        return;
    /* Keep the newest chunk only if it is the standard size; an oversized
     * chunk made for one large string should not be pinned forever. */
    struct edn_arena_chunk *keep = a->head;
    struct edn_arena_chunk *c = keep->next;
    while (c) {
        struct edn_arena_chunk *n = c->next;
        free(c);
        c = n;
    }
    if (keep->size != ARENA_CHUNK) {
        free(keep);
        a->head = NULL;
        return;
    }
    keep->next = NULL;
    keep->used = 0;
    a->head = keep;
}

static void *arena_alloc(struct edn_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct edn_arena_chunk *c = a->head;
    if (!c || c->size - c->used < n) {
        size_t size = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        c = malloc(sizeof *c + size);
        if (!c)
            return NULL;
        c->size = size;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

static char *arena_strdup(struct edn_arena *a, const char *s, size_t len)
{
    char *d = arena_alloc(a, len + 1);
    if (!d)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

void edn_reader_init(struct edn_reader *r, const char *buf, size_t len)
{
    r->p = buf;
    r->end = buf + len;
    r->line = 1;
    r->col = 1;
    r->closer = 0;
    r->open_line = r->open_col = 0;
}

static int perr(struct edn_reader *r, struct nerr *e, uint32_t line, uint32_t col,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int perr(struct edn_reader *r, struct nerr *e, uint32_t line, uint32_t col,
                const char *fmt, ...)
{
    (void)r;
    char why[NERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return nerr_set(e, NERR_PARSE, "line %u, column %u: %s", line, col, why);
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == '\f' ||
           c == '\v';
}

static int is_delim(char c)
{
    return is_ws(c) || c == '(' || c == ')' || c == '[' || c == ']' || c == '{' ||
           c == '}' || c == '"' || c == ';';
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static void adv(struct edn_reader *r)
{
    if (*r->p == '\n') {
        r->line++;
        r->col = 1;
    } else {
        r->col++;
    }
    r->p++;
}

static void skip_ws(struct edn_reader *r)
{
    while (r->p < r->end) {
        char c = *r->p;
        if (is_ws(c)) {
            adv(r);
        } else if (c == ';') {
            while (r->p < r->end && *r->p != '\n')
                adv(r);
        } else {
            break;
        }
    }
}

/* A run of symbol/keyword/number characters starting at r->p. */
static size_t token_len(const struct edn_reader *r)
{
    const char *q = r->p;
    while (q < r->end && !is_delim(*q))
        q++;
    return (size_t)(q - r->p);
}

static int read_form(struct edn_reader *r, struct edn_arena *a, struct edn_value **out,
                     int depth, struct nerr *e);

static struct edn_value *new_value(struct edn_arena *a, enum edn_type t, uint32_t line,
                                   uint32_t col)
{
    struct edn_value *v = arena_alloc(a, sizeof *v);
    if (!v)
        return NULL;
    memset(v, 0, sizeof *v);
    v->type = t;
    v->line = line;
    v->col = col;
    return v;
}

static int read_seq(struct edn_reader *r, struct edn_arena *a, struct edn_value *v, char closer,
                    int depth, struct nerr *e)
{
    struct edn_value **tmp = NULL;
    size_t n = 0, cap = 0;
    int rc;
    for (;;) {
        skip_ws(r);
        if (r->p >= r->end) {
            rc = perr(r, e, v->line, v->col, "unterminated collection (expected '%c')", closer);
            goto fail;
        }
        if (*r->p == closer) {
            adv(r);
            break;
        }
        if (*r->p == ')' || *r->p == ']' || *r->p == '}') {
            rc = perr(r, e, r->line, r->col, "unexpected '%c' (expected '%c')", *r->p, closer);
            goto fail;
        }
        struct edn_value *item = NULL;
        rc = read_form(r, a, &item, depth + 1, e);
        if (rc < 0)
            goto fail;
        if (rc == 0) /* a discard (#_) right before the closer */
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            struct edn_value **t = realloc(tmp, ncap * sizeof *t);
            if (!t) {
                rc = nerr_set(e, NERR_NOMEM, "out of memory reading EDN");
                goto fail;
            }
            tmp = t;
            cap = ncap;
        }
        tmp[n++] = item;
    }
    if (v->type == EDN_MAP && n % 2) {
        rc = perr(r, e, v->line, v->col, "map literal has an odd number of forms (%zu)", n);
        goto fail;
    }
    v->u.seq.n = n;
    v->u.seq.items = NULL;
    if (n) {
        v->u.seq.items = arena_alloc(a, n * sizeof *tmp);
        if (!v->u.seq.items) {
            rc = nerr_set(e, NERR_NOMEM, "out of memory reading EDN");
            goto fail;
        }
        memcpy(v->u.seq.items, tmp, n * sizeof *tmp);
    }
    free(tmp);
    return 1;
fail:
    free(tmp);
    return rc;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static size_t put_utf8(char *d, unsigned cp)
{
    if (cp < 0x80) {
        d[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        d[0] = (char)(0xC0 | (cp >> 6));
        d[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    d[0] = (char)(0xE0 | (cp >> 12));
    d[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    d[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

static int read_string(struct edn_reader *r, struct edn_arena *a, struct edn_value *v,
                       struct nerr *e)
{
    adv(r); /* opening quote */
    const char *start = r->p;
    const char *q = start;
    int escapes = 0;
    while (q < r->end && *q != '"') {
        if (*q == '\\') {
            escapes = 1;
            q++;
        }
        q++;
    }
    if (q >= r->end)
        return perr(r, e, v->line, v->col, "unterminated string");
    size_t raw = (size_t)(q - start);
    /* Unescaping never makes a string longer. */
    char *d = arena_alloc(a, raw + 1);
    if (!d)
        return nerr_set(e, NERR_NOMEM, "out of memory reading EDN");
    size_t n = 0;
    if (!escapes) {
        memcpy(d, start, raw);
        n = raw;
        while (r->p < q)
            adv(r);
    } else {
        while (r->p < q) {
            char c = *r->p;
            if (c != '\\') {
                d[n++] = c;
                adv(r);
                continue;
            }
            uint32_t el = r->line, ec = r->col;
            adv(r);
            c = *r->p;
            adv(r);
            switch (c) {
            case '"': d[n++] = '"'; break;
            case '\\': d[n++] = '\\'; break;
            case 'n': d[n++] = '\n'; break;
            case 't': d[n++] = '\t'; break;
            case 'r': d[n++] = '\r'; break;
            case 'b': d[n++] = '\b'; break;
            case 'f': d[n++] = '\f'; break;
            case 'u': {
                unsigned cp = 0;
                for (int i = 0; i < 4; i++) {
                    int h = r->p < q ? hexval(*r->p) : -1;
                    if (h < 0)
                        return perr(r, e, el, ec, "bad \\u escape in string");
                    cp = cp * 16 + (unsigned)h;
                    adv(r);
                }
                /* \uXXXX is 6 bytes of input, at most 3 of UTF-8 output. */
                n += put_utf8(d + n, cp);
                break;
            }
            default:
                return perr(r, e, el, ec, "unknown escape '\\%c' in string", c);
            }
        }
    }
    d[n] = '\0';
    adv(r); /* closing quote */
    v->type = EDN_STRING;
    v->u.str.s = d;
    v->u.str.len = n;
    return 1;
}

static int read_char(struct edn_reader *r, struct edn_arena *a, struct edn_value *v,
                     struct nerr *e)
{
    adv(r); /* backslash */
    if (r->p >= r->end)
        return perr(r, e, v->line, v->col, "character literal at end of input");
    size_t len = token_len(r);
    if (len == 0) /* \( or \space-like delimiter characters */
        len = 1;
    const char *t = r->p;
    char buf[8];
    size_t n = 0;
    if (len == 1) {
        buf[n++] = t[0];
    } else if (len == 7 && !memcmp(t, "newline", 7)) {
        buf[n++] = '\n';
    } else if (len == 5 && !memcmp(t, "space", 5)) {
        buf[n++] = ' ';
    } else if (len == 3 && !memcmp(t, "tab", 3)) {
        buf[n++] = '\t';
    } else if (len == 6 && !memcmp(t, "return", 6)) {
        buf[n++] = '\r';
    } else if (len == 5 && t[0] == 'u' && hexval(t[1]) >= 0 && hexval(t[2]) >= 0 &&
               hexval(t[3]) >= 0 && hexval(t[4]) >= 0) {
        unsigned cp = (unsigned)(hexval(t[1]) << 12 | hexval(t[2]) << 8 | hexval(t[3]) << 4 |
                                 hexval(t[4]));
        n = put_utf8(buf, cp);
    } else if ((unsigned char)t[0] >= 0x80 && len <= 4) {
        memcpy(buf, t, len); /* one UTF-8 character */
        n = len;
    } else {
        return perr(r, e, v->line, v->col, "unknown character literal '\\%.*s'", (int)len, t);
    }
    for (size_t i = 0; i < len; i++)
        adv(r);
    v->type = EDN_CHAR;
    v->u.str.s = arena_strdup(a, buf, n);
    v->u.str.len = n;
    return v->u.str.s ? 1 : nerr_set(e, NERR_NOMEM, "out of memory reading EDN");
}

static int read_number(struct edn_reader *r, struct edn_arena *a, struct edn_value *v,
                       struct nerr *e)
{
    size_t len = token_len(r);
    const char *t = r->p;
    size_t i = 0;
    int is_float = 0;
    if (t[i] == '+' || t[i] == '-')
        i++;
    size_t digits = 0;
    while (i < len && is_digit(t[i])) {
        i++;
        digits++;
    }
    if (i < len && t[i] == '.') {
        is_float = 1;
        i++;
        while (i < len && is_digit(t[i]))
            i++;
    }
    if (i < len && (t[i] == 'e' || t[i] == 'E')) {
        is_float = 1;
        i++;
        if (i < len && (t[i] == '+' || t[i] == '-'))
            i++;
        size_t ed = 0;
        while (i < len && is_digit(t[i])) {
            i++;
            ed++;
        }
        if (!ed)
            return perr(r, e, v->line, v->col, "malformed number '%.*s'", (int)len, t);
    }
    size_t body = i;
    if (i < len && (t[i] == 'N' || t[i] == 'M')) {
        if (t[i] == 'M')
            is_float = 1;
        i++;
    }
    if (i != len || digits == 0)
        return perr(r, e, v->line, v->col, "malformed number '%.*s'", (int)len, t);
    char *text = arena_strdup(a, t[0] == '+' ? t + 1 : t, t[0] == '+' ? body - 1 : body);
    if (!text)
        return nerr_set(e, NERR_NOMEM, "out of memory reading EDN");
    v->type = is_float ? EDN_FLOAT : EDN_INT;
    v->u.num.text = text;
    if (!is_float) {
        errno = 0;
        char *endp;
        long long x = strtoll(text, &endp, 10);
        v->u.num.fits = errno == 0 && *endp == '\0';
        v->u.num.i = v->u.num.fits ? x : 0;
    }
    for (size_t k = 0; k < len; k++)
        adv(r);
    return 1;
}

static int read_symbolic(struct edn_reader *r, struct edn_arena *a, struct edn_value *v,
                         struct nerr *e)
{
    int keyword = *r->p == ':';
    if (keyword)
        adv(r);
    size_t len = token_len(r);
    if (len == 0)
        return perr(r, e, v->line, v->col, keyword ? "empty keyword" : "unexpected character '%c'",
                    r->p < r->end ? *r->p : ' ');
    const char *t = r->p;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c < 0x20 || c == '\\' || c == '@' || c == '^' || c == '~' || c == '`')
            return perr(r, e, r->line, r->col + (uint32_t)i, "invalid character '%c' in %s", c,
                        keyword ? "keyword" : "symbol");
    }
    if (!keyword && len == 3 && !memcmp(t, "nil", 3)) {
        v->type = EDN_NIL;
    } else if (!keyword && len == 4 && !memcmp(t, "true", 4)) {
        v->type = EDN_BOOL;
        v->u.b = 1;
    } else if (!keyword && len == 5 && !memcmp(t, "false", 5)) {
        v->type = EDN_BOOL;
        v->u.b = 0;
    } else {
        v->type = keyword ? EDN_KEYWORD : EDN_SYMBOL;
        v->u.str.s = arena_strdup(a, t, len);
        v->u.str.len = len;
        if (!v->u.str.s)
            return nerr_set(e, NERR_NOMEM, "out of memory reading EDN");
    }
    for (size_t i = 0; i < len; i++)
        adv(r);
    return 1;
}

/* Returns 1 with *out set, 0 when the form was discarded (#_ x) and nothing
 * else followed before a closing bracket or the end, or a negative error. */
static int read_form(struct edn_reader *r, struct edn_arena *a, struct edn_value **out,
                     int depth, struct nerr *e)
{
    if (depth > EDN_MAX_DEPTH)
        return perr(r, e, r->line, r->col, "nesting deeper than %d", EDN_MAX_DEPTH);
    for (;;) {
        skip_ws(r);
        if (r->p >= r->end)
            return perr(r, e, r->line, r->col, "unexpected end of input");
        uint32_t line = r->line, col = r->col;
        char c = *r->p;
        struct edn_value *v = new_value(a, EDN_NIL, line, col);
        if (!v)
            return nerr_set(e, NERR_NOMEM, "out of memory reading EDN");
        int rc;
        if (c == '(' || c == '[' || c == '{') {
            v->type = c == '(' ? EDN_LIST : c == '[' ? EDN_VECTOR : EDN_MAP;
            adv(r);
            rc = read_seq(r, a, v, c == '(' ? ')' : c == '[' ? ']' : '}', depth, e);
        } else if (c == ')' || c == ']' || c == '}') {
            return perr(r, e, line, col, "unexpected '%c'", c);
        } else if (c == '"') {
            rc = read_string(r, a, v, e);
        } else if (c == '\\') {
            rc = read_char(r, a, v, e);
        } else if (c == '#') {
            adv(r);
            if (r->p >= r->end)
                return perr(r, e, line, col, "'#' at end of input");
            char d = *r->p;
            if (d == '{') {
                v->type = EDN_SET;
                adv(r);
                rc = read_seq(r, a, v, '}', depth, e);
            } else if (d == '_') {
                adv(r);
                struct edn_value *ignored;
                rc = read_form(r, a, &ignored, depth + 1, e);
                if (rc < 0)
                    return rc;
                skip_ws(r);
                if (r->p >= r->end || *r->p == ')' || *r->p == ']' || *r->p == '}')
                    return 0;
                continue;
            } else if (d == '#') {
                adv(r); /* ##Inf, ##-Inf, ##NaN */
                size_t len = token_len(r);
                v->type = EDN_FLOAT;
                v->u.num.text = arena_strdup(a, r->p - 2, len + 2);
                if (!v->u.num.text)
                    return nerr_set(e, NERR_NOMEM, "out of memory reading EDN");
                for (size_t i = 0; i < len; i++)
                    adv(r);
                rc = 1;
            } else {
                size_t len = token_len(r);
                if (len == 0 || !((d >= 'a' && d <= 'z') || (d >= 'A' && d <= 'Z')))
                    return perr(r, e, line, col, "invalid dispatch '#%c'", d);
                char *tag = arena_strdup(a, r->p, len);
                if (!tag)
                    return nerr_set(e, NERR_NOMEM, "out of memory reading EDN");
                for (size_t i = 0; i < len; i++)
                    adv(r);
                struct edn_value *inner = NULL;
                rc = read_form(r, a, &inner, depth + 1, e);
                if (rc < 0)
                    return rc;
                if (rc == 0)
                    return perr(r, e, line, col, "tag #%s has no element", tag);
                inner->tag = tag;
                *out = inner;
                return 1;
            }
        } else if (is_digit(c) ||
                   ((c == '-' || c == '+') && r->p + 1 < r->end && is_digit(r->p[1]))) {
            rc = read_number(r, a, v, e);
        } else {
            rc = read_symbolic(r, a, v, e);
        }
        if (rc < 0)
            return rc;
        *out = v;
        return 1;
    }
}

int edn_enter(struct edn_reader *r, struct nerr *e)
{
    skip_ws(r);
    if (r->closer || r->p >= r->end)
        return 0;
    if (*r->p != '[' && *r->p != '(')
        return 0;
    r->closer = *r->p == '[' ? ']' : ')';
    r->open_line = r->line;
    r->open_col = r->col;
    adv(r);
    return 1;
}

int edn_read(struct edn_reader *r, struct edn_arena *a, struct edn_value **out, struct nerr *e)
{
    for (;;) {
        skip_ws(r);
        if (r->p >= r->end) {
            if (r->closer)
                return perr(r, e, r->open_line, r->open_col,
                            "unterminated collection (expected '%c')", r->closer);
            return 0;
        }
        if (r->closer && *r->p == r->closer) {
            adv(r);
            r->closer = 0;
            return 0;
        }
        int rc = read_form(r, a, out, 0, e);
        if (rc != 0)
            return rc;
        /* a trailing discard: loop to see what follows */
        if (r->p < r->end && !(r->closer && *r->p == r->closer))
            return perr(r, e, r->line, r->col, "unexpected '%c'", *r->p);
    }
}

const struct edn_value *edn_map_get(const struct edn_value *m, const char *name)
{
    if (!m || m->type != EDN_MAP)
        return NULL;
    size_t len = strlen(name);
    for (size_t i = 0; i + 1 < m->u.seq.n; i += 2) {
        const struct edn_value *k = m->u.seq.items[i];
        if (k->type == EDN_KEYWORD && k->u.str.len == len && !memcmp(k->u.str.s, name, len))
            return m->u.seq.items[i + 1];
    }
    return NULL;
}
