/*
 * expr.c — parser and evaluator of DynamoDB expressions (contract in expr.h).
 *
 * The parser is recursive descent over a token array. Recursion is bounded by
 * EXPR_MAX_NESTING (parentheses, NOT chains and nested functions all count),
 * so a hostile expression cannot exhaust the stack. All AST nodes live in one
 * arena owned by the struct expr and are freed together.
 */
#include "store/expr.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum expr_kind { EK_CONDITION, EK_UPDATE, EK_PROJECTION, EK_KEY };

/* ---------------------------------------------------------------- AST */

struct pelem {
    const char *name; /* NULL for a list index */
    uint32_t index;
};

struct path {
    struct pelem *el;
    int n;
};

enum opnd_kind { O_PATH, O_VALUE, O_SIZE, O_PLUS, O_MINUS, O_APPEND, O_IFNE };

struct operand {
    enum opnd_kind k;
    struct path path;    /* O_PATH, O_SIZE, O_IFNE */
    const json_t *value; /* O_VALUE: borrowed from the values object */
    struct operand *a, *b;
};

enum cond_kind {
    C_CMP,
    C_BETWEEN,
    C_IN,
    C_AND,
    C_OR,
    C_NOT,
    C_EXISTS,
    C_NEXISTS,
    C_TYPE,
    C_BEGINS,
    C_CONTAINS
};
enum cmp_op { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE };
static const char *const CMP_TEXT[] = {"=", "<>", "<", "<=", ">", ">="};

struct cond {
    enum cond_kind k;
    enum cmp_op op;
    struct cond *l, *r;
    struct operand *a, *b, *c;
    struct operand **list;
    int nlist;
};

enum act_kind { A_SET, A_REMOVE, A_ADD, A_DELETE };

struct action {
    enum act_kind k;
    struct path path;
    struct operand *val;
};

/* A trie of document paths, used to find overlapping paths (projection and
 * update) and to project items. */
struct pnode {
    const char *name; /* NULL: list index */
    uint32_t index;
    int terminal;
    const struct path *path; /* set on terminal nodes */
    struct pnode *child, *next;
};

struct arena_blk {
    struct arena_blk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

struct expr {
    enum expr_kind kind;
    const char *label;
    struct arena_blk *arena;
    json_t *names, *values;
    json_t *used_names, *used_values; /* sets: key -> true */
    struct cond *cond;
    struct action *acts;
    int nacts;
    struct pnode root;
};

static void *ar_alloc(struct expr *e, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct arena_blk *b = e->arena;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 8192 ? n : 8192;
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->cap = cap;
        b->used = 0;
        b->next = e->arena;
        e->arena = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

void expr_free(struct expr *e)
{
    if (!e)
        return;
    while (e->arena) {
        struct arena_blk *n = e->arena->next;
        free(e->arena);
        e->arena = n;
    }
    json_decref(e->names);
    json_decref(e->values);
    json_decref(e->used_names);
    json_decref(e->used_values);
    free(e);
}

/* ---------------------------------------------------------------- tokens */

enum tok_kind {
    T_EOF,
    T_NAME,
    T_HASH,
    T_VALUE,
    T_NUM,
    T_LP,
    T_RP,
    T_LB,
    T_RB,
    T_COMMA,
    T_DOT,
    T_EQ,
    T_NE,
    T_LT,
    T_LE,
    T_GT,
    T_GE,
    T_PLUS,
    T_MINUS
};

struct tok {
    enum tok_kind k;
    size_t start, len;
};

struct parser {
    struct expr *e;
    const char *text;
    size_t tlen;
    struct tok *toks;
    size_t ntok, pos;
    int depth, nops;
    struct nerr *err;
};

static int p_fail(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int p_fail(struct parser *p, const char *fmt, ...)
{
    char msg[NERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return nerr_set(p->err, NERR_INVALID, "Invalid %s: %s", p->e->label, msg);
}

static int p_nomem(struct parser *p)
{
    return nerr_set(p->err, NERR_NOMEM, "out of memory");
}

/* DynamoDB names the offending token and shows the text from the token
 * before it to the token after it. */
static int p_syntax_at(struct parser *p, size_t i)
{
    const struct tok *t = &p->toks[i];
    size_t from = i > 0 ? p->toks[i - 1].start : t->start;
    size_t to = i + 1 < p->ntok && p->toks[i + 1].k != T_EOF
                    ? p->toks[i + 1].start + p->toks[i + 1].len
                    : t->start + t->len;
    if (t->k == T_EOF)
        return p_fail(p, "Syntax error; token: \"<EOF>\", near: \"%.*s\"", (int)(to - from),
                      p->text + from);
    return p_fail(p, "Syntax error; token: \"%.*s\", near: \"%.*s\"", (int)t->len,
                  p->text + t->start, (int)(to - from), p->text + from);
}

static int p_syntax(struct parser *p)
{
    return p_syntax_at(p, p->pos);
}

static int is_ident_start(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_ident_char(int c)
{
    return is_ident_start(c) || (c >= '0' && c <= '9') || c == '_';
}

static int tokenize(struct parser *p)
{
    const char *s = p->text;
    size_t n = p->tlen, i = 0;
    p->toks = malloc((n + 1) * sizeof *p->toks);
    if (!p->toks)
        return p_nomem(p);
    p->ntok = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        struct tok t = {T_EOF, i, 1};
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            i++;
            continue;
        }
        if (is_ident_start(c)) {
            t.k = T_NAME;
            while (i + t.len < n && is_ident_char((unsigned char)s[i + t.len]))
                t.len++;
        } else if ((c == '#' || c == ':') && i + 1 < n && is_ident_char((unsigned char)s[i + 1])) {
            t.k = c == '#' ? T_HASH : T_VALUE;
            while (i + t.len < n && is_ident_char((unsigned char)s[i + t.len]))
                t.len++;
        } else if (c >= '0' && c <= '9') {
            t.k = T_NUM;
            while (i + t.len < n && s[i + t.len] >= '0' && s[i + t.len] <= '9')
                t.len++;
        } else if (c == '<' && i + 1 < n && (s[i + 1] == '>' || s[i + 1] == '=')) {
            t.k = s[i + 1] == '>' ? T_NE : T_LE;
            t.len = 2;
        } else if (c == '>' && i + 1 < n && s[i + 1] == '=') {
            t.k = T_GE;
            t.len = 2;
        } else {
            switch (c) {
            case '(':
                t.k = T_LP;
                break;
            case ')':
                t.k = T_RP;
                break;
            case '[':
                t.k = T_LB;
                break;
            case ']':
                t.k = T_RB;
                break;
            case ',':
                t.k = T_COMMA;
                break;
            case '.':
                t.k = T_DOT;
                break;
            case '=':
                t.k = T_EQ;
                break;
            case '<':
                t.k = T_LT;
                break;
            case '>':
                t.k = T_GT;
                break;
            case '+':
                t.k = T_PLUS;
                break;
            case '-':
                t.k = T_MINUS;
                break;
            default: {
                /* The offending character (a whole UTF-8 sequence) and the
                 * text around it. */
                size_t cl = 1;
                while (i + cl < n && ((unsigned char)s[i + cl] & 0xC0) == 0x80)
                    cl++;
                size_t from = p->ntok ? p->toks[p->ntok - 1].start : i;
                size_t to = i + cl < n ? i + cl + 1 : n;
                return p_fail(p, "Syntax error; token: \"%.*s\", near: \"%.*s\"", (int)cl, s + i,
                              (int)(to - from), s + from);
            }
            }
        }
        p->toks[p->ntok++] = t;
        i += t.len;
    }
    p->toks[p->ntok++] = (struct tok){T_EOF, n, 0};
    return 0;
}

static const struct tok *peek(struct parser *p)
{
    return &p->toks[p->pos];
}

static const struct tok *peek2(struct parser *p)
{
    return &p->toks[p->pos + 1 < p->ntok ? p->pos + 1 : p->pos];
}

static int tok_is_kw(struct parser *p, const struct tok *t, const char *kw)
{
    size_t n = strlen(kw);
    return t->k == T_NAME && t->len == n && strncasecmp(p->text + t->start, kw, n) == 0;
}

static int tok_is_keyword(struct parser *p, const struct tok *t)
{
    static const char *const kws[] = {"AND", "OR",     "NOT", "BETWEEN", "IN",
                                      "SET", "REMOVE", "ADD", "DELETE"};
    for (size_t i = 0; i < sizeof kws / sizeof kws[0]; i++)
        if (tok_is_kw(p, t, kws[i]))
            return 1;
    return 0;
}

static int tok_text_is(struct parser *p, const struct tok *t, const char *s)
{
    return t->k == T_NAME && t->len == strlen(s) && !memcmp(p->text + t->start, s, t->len);
}

static int expect(struct parser *p, enum tok_kind k)
{
    if (peek(p)->k != k)
        return p_syntax(p);
    p->pos++;
    return 0;
}

static int count_op(struct parser *p)
{
    if (++p->nops > EXPR_MAX_OPERATORS)
        return p_fail(p, "The expression contains too many operators; operator count: %d", p->nops);
    return 0;
}

static int enter(struct parser *p)
{
    if (++p->depth > EXPR_MAX_NESTING)
        return p_fail(p, "The expression has too many nesting levels; maximum: %d",
                      EXPR_MAX_NESTING);
    return 0;
}

static char *ar_strndup(struct expr *e, const char *s, size_t n)
{
    char *d = ar_alloc(e, n + 1);
    if (d)
        memcpy(d, s, n);
    return d;
}

static int mark_used(json_t *set, const char *key)
{
    return json_object_set_new(set, key, json_true()) < 0 ? NERR_NOMEM : 0;
}

/* Resolves #name. */
static int resolve_name(struct parser *p, const struct tok *t, const char **out)
{
    char key[256];
    if (t->len >= sizeof key)
        return p_fail(p,
                      "An expression attribute name used in the document path is not defined; "
                      "attribute name: %.*s",
                      (int)t->len, p->text + t->start);
    memcpy(key, p->text + t->start, t->len);
    key[t->len] = '\0';
    json_t *v = p->e->names ? json_object_get(p->e->names, key) : NULL;
    if (!json_is_string(v))
        return p_fail(p,
                      "An expression attribute name used in the document path is not defined; "
                      "attribute name: %s",
                      key);
    if (mark_used(p->e->used_names, key) < 0)
        return p_nomem(p);
    *out = json_string_value(v);
    return 0;
}

/* Resolves :value, validating it once. */
static int resolve_value(struct parser *p, const struct tok *t, const json_t **out)
{
    char key[256];
    struct nerr verr;
    if (t->len >= sizeof key)
        return p_fail(p,
                      "An expression attribute value used in expression is not defined; "
                      "attribute value: %.*s",
                      (int)t->len, p->text + t->start);
    memcpy(key, p->text + t->start, t->len);
    key[t->len] = '\0';
    json_t *v = p->e->values ? json_object_get(p->e->values, key) : NULL;
    if (!v)
        return p_fail(p,
                      "An expression attribute value used in expression is not defined; "
                      "attribute value: %s",
                      key);
    if (!json_object_get(p->e->used_values, key)) {
        int rc = av_validate(v, &verr);
        if (rc == NERR_NOMEM)
            return p_nomem(p);
        if (rc < 0)
            return nerr_set(p->err, rc,
                            "ExpressionAttributeValues contains invalid value: %s for key %s",
                            verr.msg, key);
        if (mark_used(p->e->used_values, key) < 0)
            return p_nomem(p);
    }
    *out = v;
    return 0;
}

static int parse_path(struct parser *p, struct path *out)
{
    struct pelem el[AV_MAX_DEPTH];
    int n = 0, rc;
    const struct tok *t = peek(p);

    for (;;) {
        if (n == AV_MAX_DEPTH)
            return p_fail(p, "The document path has too many nesting levels; nesting levels: %d",
                          n + 1);
        t = peek(p);
        if (t->k == T_NAME && !tok_is_keyword(p, t)) {
            el[n].name = ar_strndup(p->e, p->text + t->start, t->len);
            if (!el[n].name)
                return p_nomem(p);
        } else if (t->k == T_HASH) {
            if ((rc = resolve_name(p, t, &el[n].name)) < 0)
                return rc;
        } else {
            return p_syntax(p);
        }
        n++;
        p->pos++;
        for (;;) {
            t = peek(p);
            if (t->k == T_LB) {
                p->pos++;
                t = peek(p);
                if (t->k != T_NUM)
                    return p_syntax(p);
                if (t->len > 9)
                    return p_fail(p, "List index is too large; index: %.*s", (int)t->len,
                                  p->text + t->start);
                if (n == AV_MAX_DEPTH)
                    return p_fail(
                        p, "The document path has too many nesting levels; nesting levels: %d",
                        n + 1);
                el[n].name = NULL;
                el[n].index = (uint32_t)strtoul(p->text + t->start, NULL, 10);
                n++;
                p->pos++;
                if ((rc = expect(p, T_RB)) < 0)
                    return rc;
                continue;
            }
            break;
        }
        if (peek(p)->k != T_DOT)
            break;
        p->pos++;
    }
    out->el = ar_alloc(p->e, (size_t)n * sizeof *el);
    if (!out->el)
        return p_nomem(p);
    memcpy(out->el, el, (size_t)n * sizeof *el);
    out->n = n;
    return 0;
}

static struct operand *new_operand(struct parser *p, enum opnd_kind k)
{
    struct operand *o = ar_alloc(p->e, sizeof *o);
    if (o)
        o->k = k;
    return o;
}

static int starts_path(const struct tok *t)
{
    return t->k == T_NAME || t->k == T_HASH;
}

/* Reads "name(" names a function when the next token is '('. */
static int is_call(struct parser *p)
{
    return peek(p)->k == T_NAME && peek2(p)->k == T_LP;
}

/* A condition operand: path, :value or size(path). */
static int parse_operand(struct parser *p, struct operand **out)
{
    const struct tok *t = peek(p);
    struct operand *o;
    int rc;

    if (t->k == T_VALUE) {
        if (!(o = new_operand(p, O_VALUE)))
            return p_nomem(p);
        if ((rc = resolve_value(p, t, &o->value)) < 0)
            return rc;
        p->pos++;
    } else if (is_call(p)) {
        if (!tok_text_is(p, t, "size")) {
            if (tok_text_is(p, t, "attribute_exists") ||
                tok_text_is(p, t, "attribute_not_exists") || tok_text_is(p, t, "attribute_type") ||
                tok_text_is(p, t, "begins_with") || tok_text_is(p, t, "contains") ||
                tok_text_is(p, t, "if_not_exists") || tok_text_is(p, t, "list_append"))
                return p_fail(p,
                              "The function is not allowed to be used this way in an expression; "
                              "function: %.*s",
                              (int)t->len, p->text + t->start);
            return p_fail(p, "Invalid function name; function: %.*s", (int)t->len,
                          p->text + t->start);
        }
        if ((rc = count_op(p)) < 0)
            return rc;
        p->pos += 2;
        if (!starts_path(peek(p)))
            return p_fail(
                p, "Operator or function requires a document path; operator or function: size");
        if (!(o = new_operand(p, O_SIZE)))
            return p_nomem(p);
        if ((rc = parse_path(p, &o->path)) < 0 || (rc = expect(p, T_RP)) < 0)
            return rc;
    } else if (starts_path(t) && !tok_is_keyword(p, t)) {
        if (!(o = new_operand(p, O_PATH)))
            return p_nomem(p);
        if ((rc = parse_path(p, &o->path)) < 0)
            return rc;
    } else {
        return p_syntax(p);
    }
    *out = o;
    return 0;
}

static const char *lit_type(const struct operand *o)
{
    return o->k == O_VALUE ? av_type(o->value) : NULL;
}

/* Literal operands of ordering operators must be S, N or B. */
static int check_orderable(struct parser *p, const char *op, const struct operand *o)
{
    const char *t = lit_type(o);
    if (t && strcmp(t, "S") && strcmp(t, "N") && strcmp(t, "B"))
        return p_fail(p,
                      "Incorrect operand type for operator or function; operator or function: %s, "
                      "operand type: %s",
                      op, t);
    return 0;
}

static void render_literal(const json_t *v, char *buf, size_t cap)
{
    const char *t = av_type(v);
    json_t *pl = av_payload(v);
    snprintf(buf, cap, "AttributeValue: {%s:%s}", t ? t : "?",
             json_is_string(pl) ? json_string_value(pl) : "...");
}

static struct cond *new_cond(struct parser *p, enum cond_kind k)
{
    struct cond *c = ar_alloc(p->e, sizeof *c);
    if (c)
        c->k = k;
    return c;
}

static int parse_or(struct parser *p, struct cond **out);

static const char *const COND_FUNCS[] = {"attribute_exists", "attribute_not_exists",
                                         "attribute_type", "begins_with", "contains"};

static int parse_function_cond(struct parser *p, struct cond **out)
{
    const struct tok *t = peek(p);
    enum cond_kind k;
    struct cond *c;
    int rc, f;

    for (f = 0; f < 5; f++)
        if (tok_text_is(p, t, COND_FUNCS[f]))
            break;
    if (f == 5) {
        if (tok_text_is(p, t, "size"))
            return 1; /* an operand: the caller parses a comparison */
        if (tok_text_is(p, t, "if_not_exists") || tok_text_is(p, t, "list_append"))
            return p_fail(p,
                          "The function is not allowed to be used this way in an expression; "
                          "function: %.*s",
                          (int)t->len, p->text + t->start);
        return p_fail(p, "Invalid function name; function: %.*s", (int)t->len, p->text + t->start);
    }
    const char *fname = COND_FUNCS[f];
    k = f == 0 ? C_EXISTS : f == 1 ? C_NEXISTS : f == 2 ? C_TYPE : f == 3 ? C_BEGINS : C_CONTAINS;
    if ((rc = count_op(p)) < 0)
        return rc;
    p->pos += 2;
    if (!(c = new_cond(p, k)))
        return p_nomem(p);
    if (!starts_path(peek(p)) || tok_is_keyword(p, peek(p))) {
        if (peek(p)->k == T_VALUE || is_call(p))
            return p_fail(p,
                          "Operator or function requires a document path; operator or function: %s",
                          fname);
        return p_syntax(p);
    }
    if (!(c->a = new_operand(p, O_PATH)))
        return p_nomem(p);
    if ((rc = parse_path(p, &c->a->path)) < 0)
        return rc;
    if (k == C_TYPE || k == C_BEGINS || k == C_CONTAINS) {
        if ((rc = expect(p, T_COMMA)) < 0)
            return rc;
        if ((rc = parse_operand(p, &c->b)) < 0)
            return rc;
        const char *lt = lit_type(c->b);
        if (k == C_TYPE) {
            static const char *const names[] = {"S", "N", "B",  "BOOL", "NULL",
                                                "M", "L", "SS", "NS",   "BS"};
            if (c->b->k != O_VALUE)
                return p_fail(p,
                              "Incorrect operand type for operator or function; operator or "
                              "function: attribute_type, operand type: %s",
                              c->b->k == O_SIZE ? "N" : "PATH");
            if (strcmp(lt, "S"))
                return p_fail(p,
                              "Incorrect operand type for operator or function; operator or "
                              "function: attribute_type, operand type: %s",
                              lt);
            const char *want = json_string_value(av_payload(c->b->value));
            size_t i;
            for (i = 0; i < 10; i++)
                if (!strcmp(want, names[i]))
                    break;
            if (i == 10)
                return p_fail(p,
                              "Invalid attribute type name found; type: %s, valid types: "
                              "{ B,NULL,SS,BOOL,L,BS,N,NS,S,M }",
                              want);
        } else if (k == C_BEGINS && lt && strcmp(lt, "S") && strcmp(lt, "B")) {
            return p_fail(p,
                          "Incorrect operand type for operator or function; operator or function: "
                          "begins_with, operand type: %s",
                          lt);
        }
    }
    if ((rc = expect(p, T_RP)) < 0)
        return rc;
    if (peek(p)->k >= T_EQ && peek(p)->k <= T_GE)
        return p_fail(
            p, "The function is not allowed to be used this way in an expression; function: %s",
            fname);
    *out = c;
    return 0;
}

static int parse_primary(struct parser *p, struct cond **out)
{
    const struct tok *t = peek(p);
    struct cond *c;
    struct operand *a;
    int rc;

    if (t->k == T_LP) {
        if ((rc = enter(p)) < 0)
            return rc;
        p->pos++;
        if ((rc = parse_or(p, out)) < 0 || (rc = expect(p, T_RP)) < 0)
            return rc;
        p->depth--;
        return 0;
    }
    if (is_call(p)) {
        rc = parse_function_cond(p, out);
        if (rc <= 0)
            return rc;
    }
    if ((rc = parse_operand(p, &a)) < 0)
        return rc;
    t = peek(p);
    if (t->k >= T_EQ && t->k <= T_GE) {
        static const enum cmp_op map[] = {CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE};
        if ((rc = count_op(p)) < 0)
            return rc;
        if (!(c = new_cond(p, C_CMP)))
            return p_nomem(p);
        c->op = map[t->k - T_EQ];
        c->a = a;
        p->pos++;
        if ((rc = parse_operand(p, &c->b)) < 0)
            return rc;
        if (c->op >= CMP_LT && ((rc = check_orderable(p, CMP_TEXT[c->op], a)) < 0 ||
                                (rc = check_orderable(p, CMP_TEXT[c->op], c->b)) < 0))
            return rc;
    } else if (tok_is_kw(p, t, "BETWEEN")) {
        if ((rc = count_op(p)) < 0)
            return rc;
        if (!(c = new_cond(p, C_BETWEEN)))
            return p_nomem(p);
        c->a = a;
        p->pos++;
        if ((rc = parse_operand(p, &c->b)) < 0)
            return rc;
        if (!tok_is_kw(p, peek(p), "AND"))
            return p_syntax(p);
        p->pos++;
        if ((rc = parse_operand(p, &c->c)) < 0)
            return rc;
        if ((rc = check_orderable(p, "BETWEEN", a)) < 0 ||
            (rc = check_orderable(p, "BETWEEN", c->b)) < 0 ||
            (rc = check_orderable(p, "BETWEEN", c->c)) < 0)
            return rc;
        int cmp;
        if (c->b->k == O_VALUE && c->c->k == O_VALUE &&
            av_compare(c->b->value, c->c->value, &cmp) == 0 && cmp > 0) {
            char lo[200], hi[200];
            render_literal(c->b->value, lo, sizeof lo);
            render_literal(c->c->value, hi, sizeof hi);
            return p_fail(
                p,
                "The BETWEEN operator requires upper bound to be greater than or equal to "
                "lower bound; lower bound operand: %s, upper bound operand: %s",
                lo, hi);
        }
    } else if (tok_is_kw(p, t, "IN")) {
        struct operand *items[EXPR_MAX_IN + 1];
        int n = 0;
        if ((rc = count_op(p)) < 0)
            return rc;
        p->pos++;
        if ((rc = expect(p, T_LP)) < 0)
            return rc;
        for (;;) {
            if (n == EXPR_MAX_IN) {
                /* Count the rest for the message without keeping them. */
                int total = n;
                while (peek(p)->k != T_EOF && peek(p)->k != T_RP) {
                    if (peek(p)->k == T_COMMA)
                        total++;
                    p->pos++;
                }
                return p_fail(p,
                              "The IN operator is provided with too many operands; number of "
                              "operands: %d",
                              total + 1);
            }
            if ((rc = parse_operand(p, &items[n])) < 0)
                return rc;
            n++;
            if (peek(p)->k != T_COMMA)
                break;
            p->pos++;
        }
        if ((rc = expect(p, T_RP)) < 0)
            return rc;
        if (!(c = new_cond(p, C_IN)) || !(c->list = ar_alloc(p->e, (size_t)n * sizeof *items)))
            return p_nomem(p);
        memcpy(c->list, items, (size_t)n * sizeof *items);
        c->nlist = n;
        c->a = a;
    } else {
        return p_syntax(p);
    }
    *out = c;
    return 0;
}

static int parse_not(struct parser *p, struct cond **out)
{
    int rc;
    if (tok_is_kw(p, peek(p), "NOT")) {
        struct cond *c = new_cond(p, C_NOT);
        if (!c)
            return p_nomem(p);
        if ((rc = count_op(p)) < 0 || (rc = enter(p)) < 0)
            return rc;
        p->pos++;
        if ((rc = parse_not(p, &c->l)) < 0)
            return rc;
        p->depth--;
        *out = c;
        return 0;
    }
    return parse_primary(p, out);
}

static int parse_and(struct parser *p, struct cond **out)
{
    struct cond *l;
    int rc = parse_not(p, &l);
    if (rc < 0)
        return rc;
    while (tok_is_kw(p, peek(p), "AND")) {
        struct cond *c = new_cond(p, C_AND);
        if (!c)
            return p_nomem(p);
        if ((rc = count_op(p)) < 0)
            return rc;
        p->pos++;
        c->l = l;
        if ((rc = parse_not(p, &c->r)) < 0)
            return rc;
        l = c;
    }
    *out = l;
    return 0;
}

static int parse_or(struct parser *p, struct cond **out)
{
    struct cond *l;
    int rc = parse_and(p, &l);
    if (rc < 0)
        return rc;
    while (tok_is_kw(p, peek(p), "OR")) {
        struct cond *c = new_cond(p, C_OR);
        if (!c)
            return p_nomem(p);
        if ((rc = count_op(p)) < 0)
            return rc;
        p->pos++;
        c->l = l;
        if ((rc = parse_and(p, &c->r)) < 0)
            return rc;
        l = c;
    }
    *out = l;
    return 0;
}

/* ---------------------------------------------------------------- path trie */

static void render_path(const struct path *pa, char *buf, size_t cap)
{
    size_t o = 0;
    int w = snprintf(buf, cap, "[");
    o = w > 0 ? (size_t)w : 0;
    for (int i = 0; i < pa->n && o < cap; i++) {
        if (pa->el[i].name)
            w = snprintf(buf + o, cap - o, "%s%s", i ? ", " : "", pa->el[i].name);
        else
            w = snprintf(buf + o, cap - o, "%s[%u]", i ? ", " : "", pa->el[i].index);
        if (w < 0)
            break;
        o += (size_t)w;
    }
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

static const struct path *any_terminal(const struct pnode *n)
{
    for (; n; n = n->next) {
        if (n->terminal)
            return n->path;
        const struct path *pa = any_terminal(n->child);
        if (pa)
            return pa;
    }
    return NULL;
}

static int path_clash(struct parser *p, const char *what, const struct path *one,
                      const struct path *two)
{
    char a[200], b[200];
    render_path(one, a, sizeof a);
    render_path(two, b, sizeof b);
    return p_fail(
        p,
        "Two document paths %s with each other; must remove or rewrite one of these paths; "
        "path one: %s, path two: %s",
        what, a, b);
}

/* Inserts a path into the trie; two paths overlap when one is a prefix of the
 * other, and conflict when one indexes a list where the other names a map
 * member. List children are kept sorted by index so projection keeps order. */
static int trie_insert(struct parser *p, struct pnode *root, const struct path *pa)
{
    struct pnode *node = root;
    for (int i = 0; i < pa->n; i++) {
        const struct pelem *el = &pa->el[i];
        struct pnode **link = &node->child, *c;
        if (node->terminal)
            return path_clash(p, "overlap", node->path, pa);
        for (c = node->child; c; c = c->next) {
            if ((c->name == NULL) != (el->name == NULL))
                return path_clash(p, "conflict", c->terminal ? c->path : any_terminal(c->child),
                                  pa);
            if (el->name ? !strcmp(c->name, el->name) : c->index == el->index)
                break;
        }
        if (!c) {
            if (!el->name)
                while (*link && (*link)->index < el->index)
                    link = &(*link)->next;
            if (!(c = ar_alloc(p->e, sizeof *c)))
                return p_nomem(p);
            c->name = el->name;
            c->index = el->index;
            c->next = *link;
            *link = c;
        }
        node = c;
    }
    if (node->terminal)
        return path_clash(p, "overlap", node->path, pa);
    if (node->child)
        return path_clash(p, "overlap", any_terminal(node->child), pa);
    node->terminal = 1;
    node->path = pa;
    return 0;
}

/* ---------------------------------------------------------------- parse entry points */

static int parser_start(struct parser *p, enum expr_kind kind, const char *label, const char *text,
                        json_t *names, json_t *values, struct nerr *err)
{
    memset(p, 0, sizeof *p);
    p->err = err;
    p->text = text ? text : "";
    p->tlen = strlen(p->text);
    p->e = calloc(1, sizeof *p->e);
    if (!p->e)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    p->e->kind = kind;
    p->e->label = label;
    p->e->names = json_incref(names);
    p->e->values = json_incref(values);
    p->e->used_names = json_object();
    p->e->used_values = json_object();
    if (!p->e->used_names || !p->e->used_values)
        return p_nomem(p);
    if (p->tlen > EXPR_MAX_TEXT)
        return p_fail(p,
                      "Expression size has exceeded the maximum allowed size; expression size: %zu",
                      p->tlen);
    int rc = tokenize(p);
    if (rc < 0)
        return rc;
    if (p->ntok == 1)
        return p_fail(p, "The expression can not be empty;");
    return 0;
}

static int parser_end(struct parser *p, int rc, struct expr **out)
{
    free(p->toks);
    if (rc < 0) {
        expr_free(p->e);
        *out = NULL;
        return rc;
    }
    *out = p->e;
    return 0;
}

int expr_parse_condition(const char *text, const char *label, json_t *names, json_t *values,
                         struct expr **out, struct nerr *err)
{
    struct parser p;
    int rc = parser_start(&p, EK_CONDITION, label ? label : "ConditionExpression", text, names,
                          values, err);
    if (rc == 0)
        rc = parse_or(&p, &p.e->cond);
    if (rc == 0 && peek(&p)->k != T_EOF)
        rc = p_syntax(&p);
    return parser_end(&p, rc, out);
}

int expr_parse_projection(const char *text, json_t *names, struct expr **out, struct nerr *err)
{
    struct parser p;
    int rc = parser_start(&p, EK_PROJECTION, "ProjectionExpression", text, names, NULL, err);
    while (rc == 0) {
        struct path *pa = ar_alloc(p.e, sizeof *pa);
        if (!pa) {
            rc = p_nomem(&p);
            break;
        }
        if ((rc = parse_path(&p, pa)) < 0 || (rc = trie_insert(&p, &p.e->root, pa)) < 0)
            break;
        if (peek(&p)->k == T_EOF)
            break;
        rc = expect(&p, T_COMMA);
    }
    return parser_end(&p, rc, out);
}

/* SET right-hand side operand: path | :value | if_not_exists(path, x) |
 * list_append(x, x). */
static int parse_set_operand(struct parser *p, struct operand **out)
{
    const struct tok *t = peek(p);
    struct operand *o;
    int rc;

    if (is_call(p)) {
        int ifne = tok_text_is(p, t, "if_not_exists"), app = tok_text_is(p, t, "list_append");
        if (!ifne && !app) {
            for (int f = 0; f < 5; f++)
                if (tok_text_is(p, t, COND_FUNCS[f]) || tok_text_is(p, t, "size"))
                    return p_fail(
                        p, "The function is not allowed in an update expression; function: %.*s",
                        (int)t->len, p->text + t->start);
            return p_fail(p, "Invalid function name; function: %.*s", (int)t->len,
                          p->text + t->start);
        }
        if ((rc = count_op(p)) < 0 || (rc = enter(p)) < 0)
            return rc;
        p->pos += 2;
        if (!(o = new_operand(p, ifne ? O_IFNE : O_APPEND)))
            return p_nomem(p);
        if (ifne) {
            if (!starts_path(peek(p)))
                return p_fail(
                    p, "Operator or function requires a document path; operator or function: "
                       "if_not_exists");
            if ((rc = parse_path(p, &o->path)) < 0)
                return rc;
        } else if ((rc = parse_set_operand(p, &o->a)) < 0) {
            return rc;
        }
        if ((rc = expect(p, T_COMMA)) < 0 || (rc = parse_set_operand(p, &o->b)) < 0 ||
            (rc = expect(p, T_RP)) < 0)
            return rc;
        if (app) {
            const char *ta = lit_type(o->a), *tb = lit_type(o->b);
            if ((ta && strcmp(ta, "L")) || (tb && strcmp(tb, "L")))
                return p_fail(
                    p,
                    "Incorrect operand type for operator or function; operator or function: "
                    "list_append, operand type: %s",
                    ta && strcmp(ta, "L") ? ta : tb);
        }
        p->depth--;
        *out = o;
        return 0;
    }
    if (t->k == T_VALUE) {
        if (!(o = new_operand(p, O_VALUE)))
            return p_nomem(p);
        if ((rc = resolve_value(p, t, &o->value)) < 0)
            return rc;
        p->pos++;
        *out = o;
        return 0;
    }
    if (starts_path(t) && !tok_is_keyword(p, t)) {
        if (!(o = new_operand(p, O_PATH)))
            return p_nomem(p);
        if ((rc = parse_path(p, &o->path)) < 0)
            return rc;
        *out = o;
        return 0;
    }
    return p_syntax(p);
}

static int parse_set_value(struct parser *p, struct operand **out)
{
    struct operand *a;
    int rc = parse_set_operand(p, &a);
    if (rc < 0)
        return rc;
    enum tok_kind k = peek(p)->k;
    if (k == T_PLUS || k == T_MINUS) {
        struct operand *o = new_operand(p, k == T_PLUS ? O_PLUS : O_MINUS);
        if (!o)
            return p_nomem(p);
        if ((rc = count_op(p)) < 0)
            return rc;
        p->pos++;
        o->a = a;
        if ((rc = parse_set_operand(p, &o->b)) < 0)
            return rc;
        const char *ta = lit_type(o->a), *tb = lit_type(o->b);
        if ((ta && strcmp(ta, "N")) || (tb && strcmp(tb, "N")))
            return p_fail(
                p,
                "Incorrect operand type for operator or function; operator or function: %s, "
                "operand type: %s",
                k == T_PLUS ? "+" : "-", ta && strcmp(ta, "N") ? ta : tb);
        a = o;
    }
    *out = a;
    return 0;
}

static const char *type_word(const char *t)
{
    static const char *const m[][2] = {
        {"S", "STRING"},      {"N", "NUMBER"},     {"B", "BINARY"}, {"BOOL", "BOOLEAN"},
        {"NULL", "NULL"},     {"M", "MAP"},        {"L", "LIST"},   {"SS", "STRING SET"},
        {"NS", "NUMBER SET"}, {"BS", "BINARY SET"}};
    for (size_t i = 0; t && i < sizeof m / sizeof m[0]; i++)
        if (!strcmp(m[i][0], t))
            return m[i][1];
    return "UNKNOWN";
}

int expr_parse_update(const char *text, json_t *names, json_t *values, struct expr **out,
                      struct nerr *err)
{
    static const char *const clause_kw[] = {"SET", "REMOVE", "ADD", "DELETE"};
    struct parser p;
    struct action *acts = NULL;
    int nacts = 0, cap = 0, seen[4] = {0};
    int rc = parser_start(&p, EK_UPDATE, "UpdateExpression", text, names, values, err);

    while (rc == 0 && peek(&p)->k != T_EOF) {
        int k;
        for (k = 0; k < 4; k++)
            if (tok_is_kw(&p, peek(&p), clause_kw[k]))
                break;
        if (k == 4) {
            rc = p_syntax(&p);
            break;
        }
        if (seen[k]++) {
            rc = p_fail(&p, "The \"%s\" section can only be used once in an update expression;",
                        clause_kw[k]);
            break;
        }
        p.pos++;
        for (;;) {
            if (nacts == cap) {
                int ncap = cap ? cap * 2 : 8;
                struct action *na = ar_alloc(p.e, (size_t)ncap * sizeof *na);
                if (!na) {
                    rc = p_nomem(&p);
                    break;
                }
                if (nacts)
                    memcpy(na, acts, (size_t)nacts * sizeof *na);
                acts = na;
                cap = ncap;
            }
            struct action *a = &acts[nacts];
            a->k = (enum act_kind)k;
            if ((rc = count_op(&p)) < 0 || (rc = parse_path(&p, &a->path)) < 0)
                break;
            if (k == A_SET) {
                if ((rc = expect(&p, T_EQ)) < 0 || (rc = parse_set_value(&p, &a->val)) < 0)
                    break;
            } else if (k == A_ADD || k == A_DELETE) {
                if (peek(&p)->k != T_VALUE) {
                    rc = p_syntax(&p);
                    break;
                }
                if (!(a->val = new_operand(&p, O_VALUE))) {
                    rc = p_nomem(&p);
                    break;
                }
                if ((rc = resolve_value(&p, peek(&p), &a->val->value)) < 0)
                    break;
                const char *t = av_type(a->val->value);
                int okt = k == A_ADD ? (!strcmp(t, "N") || !strcmp(t, "SS") || !strcmp(t, "NS") ||
                                        !strcmp(t, "BS"))
                                     : (!strcmp(t, "SS") || !strcmp(t, "NS") || !strcmp(t, "BS"));
                if (!okt) {
                    rc = p_fail(&p,
                                "Incorrect operand type for operator or function; operator: %s, "
                                "operand type: %s",
                                clause_kw[k], type_word(t));
                    break;
                }
                p.pos++;
            }
            nacts++;
            if (peek(&p)->k != T_COMMA)
                break;
            p.pos++;
        }
    }
    for (int i = 0; rc == 0 && i < nacts; i++)
        rc = trie_insert(&p, &p.e->root, &acts[i].path);
    if (rc == 0) {
        p.e->acts = acts;
        p.e->nacts = nacts;
    }
    return parser_end(&p, rc, out);
}

/* ---------------------------------------------------------------- key conditions */

static int key_fail(struct parser *p, const char *fmt, const char *arg)
{
    return nerr_set(p->err, NERR_INVALID, fmt, arg);
}

static const char *cond_op_name(const struct cond *c)
{
    switch (c->k) {
    case C_AND:
        return "AND";
    case C_OR:
        return "OR";
    case C_NOT:
        return "NOT";
    case C_IN:
        return "IN";
    case C_EXISTS:
        return "attribute_exists";
    case C_NEXISTS:
        return "attribute_not_exists";
    case C_TYPE:
        return "attribute_type";
    case C_CONTAINS:
        return "contains";
    case C_BEGINS:
        return "begins_with";
    case C_BETWEEN:
        return "BETWEEN";
    case C_CMP:
        return CMP_TEXT[c->op];
    }
    return "?";
}

/* One leaf of a key condition: which attribute, which op, which values. */
static int key_leaf(struct parser *p, const struct cond *c, const char **attr, enum av_key_op *op,
                    const json_t **v1, const json_t **v2)
{
    const struct operand *path, *val;
    if (c->k == C_CMP) {
        static const enum av_key_op fwd[] = {AV_KEY_EQ, AV_KEY_ALL, AV_KEY_LT,
                                             AV_KEY_LE, AV_KEY_GT,  AV_KEY_GE};
        static const enum av_key_op rev[] = {AV_KEY_EQ, AV_KEY_ALL, AV_KEY_GT,
                                             AV_KEY_GE, AV_KEY_LT,  AV_KEY_LE};
        if (c->op == CMP_NE)
            return p_fail(p, "Invalid operator used in KeyConditionExpression: <>");
        if (c->a->k == O_PATH && c->b->k == O_VALUE) {
            path = c->a, val = c->b;
            *op = fwd[c->op];
        } else if (c->a->k == O_VALUE && c->b->k == O_PATH) {
            path = c->b, val = c->a;
            *op = rev[c->op];
        } else {
            return p_fail(p,
                          "The expression must contain exactly one key attribute and one value in "
                          "each condition");
        }
        *v1 = val->value;
    } else if (c->k == C_BETWEEN) {
        if (c->a->k != O_PATH || c->b->k != O_VALUE || c->c->k != O_VALUE)
            return p_fail(p,
                          "The expression must contain exactly one key attribute and one value in "
                          "each condition");
        path = c->a;
        *op = AV_KEY_BETWEEN;
        *v1 = c->b->value;
        *v2 = c->c->value;
    } else if (c->k == C_BEGINS) {
        if (c->b->k != O_VALUE)
            return p_fail(p,
                          "The expression must contain exactly one key attribute and one value in "
                          "each condition");
        path = c->a;
        *op = AV_KEY_BEGINS_WITH;
        *v1 = c->b->value;
    } else {
        return p_fail(p, "Invalid operator used in KeyConditionExpression: %s", cond_op_name(c));
    }
    if (path->path.n != 1 || !path->path.el[0].name)
        return p_fail(p, "KeyConditionExpressions cannot have conditions on nested attributes");
    *attr = path->path.el[0].name;
    return 0;
}

int expr_parse_key_condition(const char *text, json_t *names, json_t *values,
                             const struct expr_key_schema *schema, struct expr **out,
                             struct expr_key_cond *kc, struct nerr *err)
{
    struct parser p;
    const struct cond *leaves[2];
    int nleaves = 0, have_hash = 0, have_range = 0;
    int rc = parser_start(&p, EK_KEY, "KeyConditionExpression", text, names, values, err);

    memset(kc, 0, sizeof *kc);
    if (rc == 0)
        rc = parse_or(&p, &p.e->cond);
    if (rc == 0 && peek(&p)->k != T_EOF)
        rc = p_syntax(&p);
    if (rc < 0)
        return parser_end(&p, rc, out);
    const struct cond *root = p.e->cond;
    if (root->k == C_AND) {
        if (root->l->k == C_AND || root->r->k == C_AND) {
            rc = key_fail(&p, "KeyConditionExpressions must only contain one condition per key",
                          NULL);
            return parser_end(&p, rc, out);
        }
        leaves[nleaves++] = root->l;
        leaves[nleaves++] = root->r;
    } else {
        leaves[nleaves++] = root;
    }
    const char *unknown = NULL;
    for (int i = 0; i < nleaves && rc == 0; i++) {
        const char *attr = NULL;
        enum av_key_op op = AV_KEY_ALL;
        const json_t *v1 = NULL, *v2 = NULL;
        if ((rc = key_leaf(&p, leaves[i], &attr, &op, &v1, &v2)) < 0)
            break;
        if (!strcmp(attr, schema->hash_name)) {
            if (have_hash++) {
                rc = key_fail(&p, "KeyConditionExpressions must only contain one condition per key",
                              NULL);
                break;
            }
            if (op != AV_KEY_EQ) {
                rc = key_fail(&p, "Query key condition not supported", NULL);
                break;
            }
            if (strcmp(av_type(v1), schema->hash_type)) {
                rc = key_fail(&p,
                              "One or more parameter values were invalid: Condition parameter type "
                              "does not match schema type",
                              NULL);
                break;
            }
            kc->hash = v1;
        } else if (schema->range_name && !strcmp(attr, schema->range_name)) {
            if (have_range++) {
                rc = key_fail(&p, "KeyConditionExpressions must only contain one condition per key",
                              NULL);
                break;
            }
            const char *t1 = av_type(v1), *t2 = v2 ? av_type(v2) : NULL;
            if (op == AV_KEY_BEGINS_WITH && strcmp(schema->range_type, "S") &&
                strcmp(schema->range_type, "B")) {
                rc =
                    p_fail(&p,
                           "Incorrect operand type for operator or function; operator or function: "
                           "begins_with, operand type: %s",
                           schema->range_type);
                break;
            }
            if (strcmp(t1, schema->range_type) || (t2 && strcmp(t2, schema->range_type))) {
                rc = key_fail(&p,
                              "One or more parameter values were invalid: Condition parameter type "
                              "does not match schema type",
                              NULL);
                break;
            }
            kc->op = op;
            kc->v1 = v1;
            kc->v2 = v2;
        } else {
            unknown = attr;
        }
    }
    if (rc == 0 && !have_hash)
        rc = key_fail(&p, "Query condition missed key schema element: %s", schema->hash_name);
    if (rc == 0 && unknown)
        rc = key_fail(&p, "Query condition missed key schema element: %s",
                      schema->range_name ? schema->range_name : unknown);
    return parser_end(&p, rc, out);
}

/* ---------------------------------------------------------------- evaluation */

static const json_t *path_get(const json_t *item, const struct path *pa)
{
    if (!item)
        return NULL;
    const json_t *cur = json_object_get(item, pa->el[0].name);
    for (int i = 1; cur && i < pa->n; i++) {
        const char *t = av_type(cur);
        json_t *pl = av_payload(cur);
        if (pa->el[i].name)
            cur = t && !strcmp(t, "M") ? json_object_get(pl, pa->el[i].name) : NULL;
        else
            cur = t && !strcmp(t, "L") ? json_array_get(pl, pa->el[i].index) : NULL;
    }
    return cur;
}

static json_t *num_json(long long v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    return json_pack("{s:s}", "N", buf);
}

/* Evaluates a condition operand: a new reference, or NULL when missing. */
static int eval_operand(const struct operand *o, const json_t *item, json_t **out)
{
    *out = NULL;
    switch (o->k) {
    case O_VALUE:
        *out = json_incref((json_t *)o->value);
        return 0;
    case O_PATH:
        *out = json_incref((json_t *)path_get(item, &o->path));
        return 0;
    case O_SIZE: {
        const json_t *v = path_get(item, &o->path);
        const char *t = v ? av_type(v) : NULL;
        json_t *pl = v ? av_payload(v) : NULL;
        long long n;
        if (!t)
            return 0;
        if (!strcmp(t, "S"))
            n = (long long)json_string_length(pl); /* UTF-8 bytes */
        else if (!strcmp(t, "B")) {
            size_t len = json_string_length(pl);
            const char *s = json_string_value(pl);
            n = len < 4 ? 0 : (long long)(len / 4 * 3 - (s[len - 1] == '=') - (s[len - 2] == '='));
        } else if (!strcmp(t, "M"))
            n = (long long)json_object_size(pl);
        else if (!strcmp(t, "L") || !strcmp(t, "SS") || !strcmp(t, "NS") || !strcmp(t, "BS"))
            n = (long long)json_array_size(pl);
        else
            return 0; /* size() of N, BOOL, NULL is undefined: the comparison is false */
        *out = num_json(n);
        return *out ? 0 : NERR_NOMEM;
    }
    default:
        break;
    }
    return NERR_INTERNAL;
}

static int cmp_holds(enum cmp_op op, int c)
{
    switch (op) {
    case CMP_LT:
        return c < 0;
    case CMP_LE:
        return c <= 0;
    case CMP_GT:
        return c > 0;
    case CMP_GE:
        return c >= 0;
    case CMP_EQ:
        return c == 0;
    case CMP_NE:
        return c != 0;
    }
    return 0;
}

static int bytes_contains(const char *h, size_t hn, const char *n, size_t nn)
{
    if (nn == 0)
        return 1;
    for (size_t i = 0; i + nn <= hn; i++)
        if (!memcmp(h + i, n, nn))
            return 1;
    return 0;
}

static int decode_b(const json_t *av, unsigned char **raw, size_t *n)
{
    json_t *pl = av_payload(av);
    return av_b64_decode(json_string_value(pl), json_string_length(pl), raw, n, NULL);
}

static int eval_contains(const json_t *a, const json_t *b, int *res)
{
    const char *ta = av_type(a), *tb = av_type(b);
    json_t *pa = av_payload(a), *pb = av_payload(b);
    *res = 0;
    if (!ta || !tb)
        return 0;
    if (!strcmp(ta, "S") && !strcmp(tb, "S")) {
        *res = bytes_contains(json_string_value(pa), json_string_length(pa), json_string_value(pb),
                              json_string_length(pb));
    } else if (!strcmp(ta, "B") && !strcmp(tb, "B")) {
        unsigned char *x = NULL, *y = NULL;
        size_t nx, ny;
        if (decode_b(a, &x, &nx) == 0 && decode_b(b, &y, &ny) == 0)
            *res = bytes_contains((char *)x, nx, (char *)y, ny);
        free(x);
        free(y);
    } else if ((ta[1] == 'S' && ta[0] == tb[0] && tb[1] == '\0')) {
        /* SS/NS/BS membership of an S/N/B element. */
        size_t i;
        json_t *el;
        json_array_foreach(pa, i, el)
        {
            json_t *wrap = json_pack("{s:O}", tb, el);
            if (!wrap)
                return NERR_NOMEM;
            int eq = av_equal(wrap, b);
            json_decref(wrap);
            if (eq) {
                *res = 1;
                break;
            }
        }
    } else if (!strcmp(ta, "L")) {
        size_t i;
        json_t *el;
        json_array_foreach(pa, i, el)
        {
            if (av_equal(el, b)) {
                *res = 1;
                break;
            }
        }
    }
    return 0;
}

static int eval_begins(const json_t *a, const json_t *b, int *res)
{
    const char *ta = av_type(a), *tb = av_type(b);
    *res = 0;
    if (!ta || !tb || strcmp(ta, tb))
        return 0;
    if (!strcmp(ta, "S")) {
        json_t *pa = av_payload(a), *pb = av_payload(b);
        size_t na = json_string_length(pa), nb = json_string_length(pb);
        *res = nb <= na && !memcmp(json_string_value(pa), json_string_value(pb), nb);
    } else if (!strcmp(ta, "B")) {
        unsigned char *x = NULL, *y = NULL;
        size_t nx, ny;
        if (decode_b(a, &x, &nx) == 0 && decode_b(b, &y, &ny) == 0)
            *res = ny <= nx && (ny == 0 || !memcmp(x, y, ny));
        free(x);
        free(y);
    }
    return 0;
}

static int eval_cond(const struct cond *c, const json_t *item, int *res)
{
    json_t *a = NULL, *b = NULL, *x = NULL;
    int rc = 0, l, cmp;

    switch (c->k) {
    case C_AND:
        if ((rc = eval_cond(c->l, item, &l)) < 0)
            return rc;
        if (!l) {
            *res = 0;
            return 0;
        }
        return eval_cond(c->r, item, res);
    case C_OR:
        if ((rc = eval_cond(c->l, item, &l)) < 0)
            return rc;
        if (l) {
            *res = 1;
            return 0;
        }
        return eval_cond(c->r, item, res);
    case C_NOT:
        if ((rc = eval_cond(c->l, item, &l)) < 0)
            return rc;
        *res = !l;
        return 0;
    case C_EXISTS:
    case C_NEXISTS:
        l = path_get(item, &c->a->path) != NULL;
        *res = c->k == C_EXISTS ? l : !l;
        return 0;
    default:
        break;
    }
    *res = 0;
    if ((rc = eval_operand(c->a, item, &a)) < 0)
        goto out;
    if (c->b && (rc = eval_operand(c->b, item, &b)) < 0)
        goto out;
    switch (c->k) {
    case C_CMP:
        if (c->op == CMP_EQ || c->op == CMP_NE) {
            int eq = a && b && av_equal(a, b);
            *res = c->op == CMP_EQ ? eq : !eq;
        } else if (a && b && av_compare(a, b, &cmp) == 0) {
            *res = cmp_holds(c->op, cmp);
        }
        break;
    case C_BETWEEN:
        if ((rc = eval_operand(c->c, item, &x)) < 0)
            goto out;
        if (a && b && x) {
            int c1, c2;
            *res = av_compare(a, b, &c1) == 0 && av_compare(a, x, &c2) == 0 && c1 >= 0 && c2 <= 0;
        }
        break;
    case C_IN:
        for (int i = 0; a && i < c->nlist && !*res; i++) {
            json_t *v;
            if ((rc = eval_operand(c->list[i], item, &v)) < 0)
                goto out;
            *res = v && av_equal(a, v);
            json_decref(v);
        }
        break;
    case C_TYPE: {
        const char *t = a ? av_type(a) : NULL;
        *res = t && b && !strcmp(t, json_string_value(av_payload(b)));
        break;
    }
    case C_BEGINS:
        if (a && b)
            rc = eval_begins(a, b, res);
        break;
    case C_CONTAINS:
        if (a && b)
            rc = eval_contains(a, b, res);
        break;
    default:
        rc = NERR_INTERNAL;
    }
out:
    json_decref(a);
    json_decref(b);
    json_decref(x);
    return rc;
}

int expr_eval_condition(const struct expr *e, const json_t *item, int *result, struct nerr *err)
{
    if (!e || !e->cond)
        return nerr_set(err, NERR_INVALID, "not a condition expression");
    int rc = eval_cond(e->cond, item, result);
    if (rc == NERR_NOMEM)
        return nerr_set(err, rc, "out of memory");
    if (rc < 0)
        return nerr_set(err, rc, "condition evaluation failed");
    return 0;
}

/* ---------------------------------------------------------------- updates */

static int upd_fail(struct nerr *err, const char *msg)
{
    return nerr_set(err, NERR_INVALID, "%s", msg);
}

#define MSG_BAD_PATH "The document path provided in the update expression is invalid for update"
#define MSG_NO_ATTR "The provided expression refers to an attribute that does not exist in the item"
#define MSG_BAD_TYPE "An operand in the update expression has an incorrect data type"

/* Evaluates a SET right-hand side against the original item. */
static int eval_set(const struct operand *o, const json_t *item, json_t **out, struct nerr *err)
{
    json_t *a = NULL, *b = NULL;
    int rc = 0;
    *out = NULL;
    switch (o->k) {
    case O_VALUE:
        *out = json_deep_copy(o->value);
        return *out ? 0 : nerr_set(err, NERR_NOMEM, "out of memory");
    case O_PATH: {
        const json_t *v = path_get(item, &o->path);
        if (!v)
            return upd_fail(err, MSG_NO_ATTR);
        *out = json_deep_copy(v);
        return *out ? 0 : nerr_set(err, NERR_NOMEM, "out of memory");
    }
    case O_IFNE: {
        const json_t *v = path_get(item, &o->path);
        if (v) {
            *out = json_deep_copy(v);
            return *out ? 0 : nerr_set(err, NERR_NOMEM, "out of memory");
        }
        return eval_set(o->b, item, out, err);
    }
    case O_PLUS:
    case O_MINUS:
    case O_APPEND:
        break;
    default:
        return nerr_set(err, NERR_INTERNAL, "bad operand in SET");
    }
    if ((rc = eval_set(o->a, item, &a, err)) < 0 || (rc = eval_set(o->b, item, &b, err)) < 0)
        goto out;
    if (o->k == O_APPEND) {
        const char *ta = av_type(a), *tb = av_type(b);
        if (strcmp(ta, "L") || strcmp(tb, "L")) {
            rc = nerr_set(
                err, NERR_INVALID,
                "Invalid UpdateExpression: Incorrect operand type for operator or function; "
                "operator or function: list_append, operand type: %s",
                strcmp(ta, "L") ? ta : tb);
            goto out;
        }
        if (json_array_extend(av_payload(a), av_payload(b)) < 0) {
            rc = nerr_set(err, NERR_NOMEM, "out of memory");
            goto out;
        }
        *out = a;
        a = NULL;
        goto out;
    }
    struct av_num x, y, r;
    if (strcmp(av_type(a), "N") || strcmp(av_type(b), "N")) {
        rc =
            nerr_set(err, NERR_INVALID,
                     "Invalid UpdateExpression: Incorrect operand type for operator or function; "
                     "operator or function: %s, operand type: %s",
                     o->k == O_PLUS ? "+" : "-", strcmp(av_type(a), "N") ? av_type(a) : av_type(b));
        goto out;
    }
    if ((rc = av_num_from_json(a, &x, err)) < 0 || (rc = av_num_from_json(b, &y, err)) < 0)
        goto out;
    rc = o->k == O_PLUS ? av_num_add(&x, &y, &r, err) : av_num_sub(&x, &y, &r, err);
    if (rc < 0)
        goto out;
    if (!(*out = av_num_to_json(&r)))
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
out:
    json_decref(a);
    json_decref(b);
    return rc;
}

/* The container (a map payload object or a list payload array) that holds
 * the last element of the path; NULL when the parent does not exist or has
 * the wrong type. */
static json_t *parent_of(json_t *item, const struct path *pa)
{
    json_t *cur = item; /* the item itself acts as the top-level map */
    for (int i = 0; i < pa->n - 1; i++) {
        json_t *av = pa->el[i].name ? json_object_get(cur, pa->el[i].name)
                                    : json_array_get(cur, pa->el[i].index);
        if (!av)
            return NULL;
        const char *want = pa->el[i + 1].name ? "M" : "L";
        const char *t = av_type(av);
        if (!t || strcmp(t, want))
            return NULL;
        cur = av_payload(av);
    }
    return cur;
}

/* Reports whether the container matches the last element's kind. */
static int parent_ok(json_t *parent, const struct path *pa)
{
    return parent && (pa->el[pa->n - 1].name ? json_is_object(parent) : json_is_array(parent));
}

static int put_at(json_t *item, const struct path *pa, json_t *v, struct nerr *err)
{
    json_t *parent = parent_of(item, pa);
    const struct pelem *last = &pa->el[pa->n - 1];
    if (!parent_ok(parent, pa)) {
        json_decref(v);
        return upd_fail(err, MSG_BAD_PATH);
    }
    int rc;
    if (last->name)
        rc = json_object_set_new(parent, last->name, v);
    else if (last->index < json_array_size(parent))
        rc = json_array_set_new(parent, last->index, v);
    else
        rc = json_array_append_new(parent, v); /* past the end appends, as DynamoDB */
    return rc < 0 ? nerr_set(err, NERR_NOMEM, "out of memory") : 0;
}

static json_t *get_at(json_t *item, const struct path *pa)
{
    json_t *parent = parent_of(item, pa);
    const struct pelem *last = &pa->el[pa->n - 1];
    if (!parent_ok(parent, pa))
        return NULL;
    return last->name ? json_object_get(parent, last->name) : json_array_get(parent, last->index);
}

static int remove_at(json_t *item, const struct path *pa, struct nerr *err)
{
    json_t *parent = parent_of(item, pa);
    const struct pelem *last = &pa->el[pa->n - 1];
    if (!parent_ok(parent, pa))
        return pa->n == 1 ? 0 : upd_fail(err, MSG_BAD_PATH);
    if (last->name)
        json_object_del(parent, last->name);
    else if (last->index < json_array_size(parent))
        json_array_remove(parent, last->index);
    return 0;
}

/* REMOVE order: list indexes are those of the original item, so remove
 * higher indexes of one list first. */
static int remove_order(const void *x, const void *y)
{
    const struct action *a = *(const struct action *const *)x,
                        *b = *(const struct action *const *)y;
    for (int i = 0; i < a->path.n && i < b->path.n; i++) {
        const struct pelem *ea = &a->path.el[i], *eb = &b->path.el[i];
        if (ea->name && eb->name) {
            int c = strcmp(ea->name, eb->name);
            if (c)
                return c;
        } else if (!ea->name && !eb->name) {
            if (ea->index != eb->index)
                return ea->index > eb->index ? -1 : 1;
        } else {
            return ea->name ? -1 : 1;
        }
    }
    return a->path.n - b->path.n;
}

static int set_op(json_t *cur, const json_t *val, int add, json_t **out, struct nerr *err)
{
    const char *t = av_type(cur);
    json_t *res = json_deep_copy(cur), *arr;
    size_t i;
    json_t *el;
    if (!res)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    arr = av_payload(res);
    json_array_foreach(av_payload(val), i, el)
    {
        /* Membership by DynamoDB value (1 and 1.0 are one number). */
        size_t j, found = (size_t)-1;
        json_t *x;
        json_t *probe = json_pack("{s:O}", t[0] == 'S' ? "S" : t[0] == 'N' ? "N" : "B", el);
        if (!probe)
            goto nomem;
        json_array_foreach(arr, j, x)
        {
            json_t *px = json_pack("{s:O}", t[0] == 'S' ? "S" : t[0] == 'N' ? "N" : "B", x);
            int eq = px && av_equal(px, probe);
            json_decref(px);
            if (eq) {
                found = j;
                break;
            }
        }
        json_decref(probe);
        if (add && found == (size_t)-1 && json_array_append(arr, el) < 0)
            goto nomem;
        if (!add && found != (size_t)-1)
            json_array_remove(arr, found);
    }
    *out = res;
    return 0;
nomem:
    json_decref(res);
    return nerr_set(err, NERR_NOMEM, "out of memory");
}

int expr_apply_update(const struct expr *e, json_t *item, const char *const *key_names,
                      size_t nkeys, struct nerr *err)
{
    json_t **vals = NULL, *work = NULL;
    const struct action **rem = NULL;
    int rc = 0, nrem = 0;

    if (!e || e->kind != EK_UPDATE || !json_is_object(item))
        return nerr_set(err, NERR_INVALID, "not an update expression");
    for (int i = 0; i < e->nacts; i++)
        for (size_t k = 0; k < nkeys; k++)
            if (e->acts[i].path.el[0].name && !strcmp(e->acts[i].path.el[0].name, key_names[k]))
                return nerr_set(
                    err, NERR_INVALID,
                    "One or more parameter values were invalid: Cannot update attribute %s. "
                    "This attribute is part of the key",
                    key_names[k]);
    vals = calloc((size_t)e->nacts + 1, sizeof *vals);
    rem = calloc((size_t)e->nacts + 1, sizeof *rem);
    work = json_deep_copy(item);
    if (!vals || !rem || !work) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    /* Every SET value reads the item as it was before the update. */
    for (int i = 0; i < e->nacts; i++)
        if (e->acts[i].k == A_SET && (rc = eval_set(e->acts[i].val, item, &vals[i], err)) < 0)
            goto out;
    for (int i = 0; i < e->nacts; i++) {
        const struct action *a = &e->acts[i];
        if (a->k == A_SET) {
            rc = put_at(work, &a->path, vals[i], err);
            vals[i] = NULL;
            if (rc < 0)
                goto out;
        } else if (a->k == A_REMOVE) {
            rem[nrem++] = a;
        }
    }
    qsort(rem, (size_t)nrem, sizeof *rem, remove_order);
    for (int i = 0; i < nrem; i++)
        if ((rc = remove_at(work, &rem[i]->path, err)) < 0)
            goto out;
    for (int i = 0; i < e->nacts; i++) {
        const struct action *a = &e->acts[i];
        if (a->k != A_ADD && a->k != A_DELETE)
            continue;
        const json_t *val = a->val->value;
        const char *tv = av_type(val);
        json_t *cur = get_at(work, &a->path), *res = NULL;
        if (!cur && a->path.n > 1 && !parent_ok(parent_of(work, &a->path), &a->path)) {
            rc = upd_fail(err, MSG_BAD_PATH);
            goto out;
        }
        if (!cur) {
            if (a->k == A_DELETE)
                continue;
            res = json_deep_copy(val);
        } else if (strcmp(av_type(cur), tv)) {
            rc = upd_fail(err, MSG_BAD_TYPE);
            goto out;
        } else if (!strcmp(tv, "N")) {
            struct av_num x, y, r;
            if ((rc = av_num_from_json(cur, &x, err)) < 0 ||
                (rc = av_num_from_json(val, &y, err)) < 0 || (rc = av_num_add(&x, &y, &r, err)) < 0)
                goto out;
            res = av_num_to_json(&r);
        } else if ((rc = set_op(cur, val, a->k == A_ADD, &res, err)) < 0) {
            goto out;
        }
        if (!res) {
            rc = nerr_set(err, NERR_NOMEM, "out of memory");
            goto out;
        }
        if (json_array_size(av_payload(res)) == 0 && strcmp(tv, "N")) {
            json_decref(res);
            rc = remove_at(work, &a->path, err); /* an emptied set disappears */
        } else {
            rc = put_at(work, &a->path, res, err);
        }
        if (rc < 0)
            goto out;
    }
    if (json_object_clear(item) < 0 || json_object_update(item, work) < 0)
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
out:
    for (int i = 0; vals && i < e->nacts; i++)
        json_decref(vals[i]);
    free(vals);
    free(rem);
    json_decref(work);
    return rc;
}

/* ---------------------------------------------------------------- projection */

static json_t *project_node(const json_t *av, const struct pnode *node)
{
    if (node->terminal)
        return json_deep_copy(av);
    const char *t = av_type(av);
    json_t *pl = av_payload(av), *res = NULL, *inner;
    if (!t || !node->child)
        return NULL;
    if (node->child->name && !strcmp(t, "M")) {
        inner = json_object();
        for (const struct pnode *c = node->child; inner && c; c = c->next) {
            const json_t *v = json_object_get(pl, c->name);
            json_t *pv = v ? project_node(v, c) : NULL;
            if (pv)
                json_object_set_new(inner, c->name, pv);
        }
        if (inner && json_object_size(inner))
            res = json_pack("{s:o}", "M", inner);
        else
            json_decref(inner);
    } else if (!node->child->name && !strcmp(t, "L")) {
        inner = json_array();
        for (const struct pnode *c = node->child; inner && c; c = c->next) {
            const json_t *v = json_array_get(pl, c->index);
            json_t *pv = v ? project_node(v, c) : NULL;
            if (pv)
                json_array_append_new(inner, pv);
        }
        if (inner && json_array_size(inner))
            res = json_pack("{s:o}", "L", inner);
        else
            json_decref(inner);
    }
    return res;
}

json_t *expr_project(const struct expr *e, const json_t *item)
{
    json_t *out = json_object();
    if (!out || !e || e->kind != EK_PROJECTION)
        return out;
    for (const struct pnode *c = e->root.child; c; c = c->next) {
        const json_t *v = json_object_get(item, c->name);
        json_t *pv = v ? project_node(v, c) : NULL;
        if (pv && json_object_set_new(out, c->name, pv) < 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* ---------------------------------------------------------------- request-level checks */

int expr_check_attribute_maps(const json_t *names, const json_t *values, struct nerr *err)
{
    const char *key;
    json_t *v;
    if (names) {
        if (!json_is_object(names))
            return nerr_set(err, NERR_PARSE, "ExpressionAttributeNames must be a map");
        if (json_object_size(names) == 0)
            return nerr_set(err, NERR_INVALID, "ExpressionAttributeNames must not be empty");
        json_object_foreach((json_t *)names, key, v)
        {
            size_t n = strlen(key);
            int ok = n >= 2 && key[0] == '#';
            for (size_t i = 1; ok && i < n; i++)
                ok = is_ident_char((unsigned char)key[i]);
            if (!ok)
                return nerr_set(
                    err, NERR_INVALID,
                    "ExpressionAttributeNames contains invalid key: Syntax error; key: \"%s\"",
                    key);
            if (!json_is_string(v))
                return nerr_set(err, NERR_PARSE, "ExpressionAttributeNames values must be strings");
            if (json_string_length(v) == 0)
                return nerr_set(
                    err, NERR_INVALID,
                    "ExpressionAttributeNames contains invalid value: Empty attribute name "
                    "for key %s",
                    key);
        }
    }
    if (values) {
        if (!json_is_object(values))
            return nerr_set(err, NERR_PARSE, "ExpressionAttributeValues must be a map");
        if (json_object_size(values) == 0)
            return nerr_set(err, NERR_INVALID, "ExpressionAttributeValues must not be empty");
        json_object_foreach((json_t *)values, key, v)
        {
            size_t n = strlen(key);
            int ok = n >= 2 && key[0] == ':';
            for (size_t i = 1; ok && i < n; i++)
                ok = is_ident_char((unsigned char)key[i]);
            if (!ok)
                return nerr_set(
                    err, NERR_INVALID,
                    "ExpressionAttributeValues contains invalid key: Syntax error; key: \"%s\"",
                    key);
        }
    }
    return 0;
}

static int unused_check(const json_t *map, const char *field, struct expr *const *exprs, size_t n,
                        int values, struct nerr *err)
{
    char list[400];
    size_t o = 0;
    int count = 0;
    const char *key;
    json_t *v;

    if (!map)
        return 0;
    list[0] = '\0';
    json_object_foreach((json_t *)map, key, v)
    {
        int used = 0;
        for (size_t i = 0; i < n && !used; i++)
            used = exprs[i] &&
                   json_object_get(values ? exprs[i]->used_values : exprs[i]->used_names, key);
        if (used)
            continue;
        int w = snprintf(list + o, sizeof list - o, "%s%s", count ? ", " : "", key);
        if (w > 0 && (size_t)w < sizeof list - o)
            o += (size_t)w;
        count++;
    }
    if (count)
        return nerr_set(err, NERR_INVALID, "Value provided in %s unused in expressions: keys: {%s}",
                        field, list);
    return 0;
}

int expr_check_unused(const json_t *names, const json_t *values, struct expr *const *exprs,
                      size_t n, struct nerr *err)
{
    int rc = unused_check(names, "ExpressionAttributeNames", exprs, n, 0, err);
    if (rc == 0)
        rc = unused_check(values, "ExpressionAttributeValues", exprs, n, 1, err);
    return rc;
}
