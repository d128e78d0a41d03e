/*
 * yamltree.c — libyaml events folded into a tree with positions.
 *
 * The builder keeps a stack of open collections. A finished node is handed
 * to the top frame (or becomes the root). Every node is also threaded on the
 * document's all-nodes list, which is how yt_free releases a tree whose
 * aliases make it a DAG without walking it.
 *
 * Alias expansion is bounded by weights: a node's weight is the size of its
 * subtree with aliases expanded. A frame adds each child's weight as it
 * arrives and refuses to pass YT_MAX_EXPANDED, so the check costs O(1) per
 * event and the refusal points at the alias that tipped it over.
 *
 * An anchor is registered when its node is complete, so an alias can only
 * name a finished node and the tree can never contain a cycle.
 */
#include "lib/yamltree.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

struct yt_doc {
    char *name;
    struct yt_node *root;
    struct yt_node *all;
};

struct anchor {
    char *name;
    struct yt_node *node;
};

struct frame {
    struct yt_node *node;
    struct yt_node *key; /* a mapping's key waiting for its value */
    size_t cap;
    char *anchor; /* owned; registered when the frame closes */
};

struct builder {
    struct yt_doc *doc;
    const unsigned char *input; /* for turning reader-error offsets into positions */
    size_t input_len;
    struct frame stack[YT_MAX_DEPTH];
    size_t depth;
    struct anchor *anchors; /* open addressing, power-of-two size */
    size_t nanchors, anchor_cap;
    int ndocs;
    struct nerr *err;
};

/* ---- errors and messages ---- */

static int vset_at(struct nerr *err, int code, const char *file, int line, int col, const char *fmt,
                   va_list ap)
{
    if (!err)
        return code;
    err->code = code;
    int n = snprintf(err->msg, sizeof err->msg, "%s:%d:%d: ", file, line, col);
    if (n < 0 || (size_t)n >= sizeof err->msg)
        return code;
    vsnprintf(err->msg + n, sizeof err->msg - (size_t)n, fmt, ap);
    return code;
}

static int set_at(struct nerr *err, int code, const char *file, int line, int col, const char *fmt,
                  ...) __attribute__((format(printf, 6, 7)));
static int set_at(struct nerr *err, int code, const char *file, int line, int col, const char *fmt,
                  ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset_at(err, code, file, line, col, fmt, ap);
    va_end(ap);
    return code;
}

static int node_err(struct nerr *err, int code, const struct yt_node *node, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int node_err(struct nerr *err, int code, const struct yt_node *node, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset_at(err, code, node->file, node->line, node->col, fmt, ap);
    va_end(ap);
    return code;
}

int yt_errf(struct nerr *err, const struct yt_node *node, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (node) {
        vset_at(err, NERR_INVALID, node->file, node->line, node->col, fmt, ap);
    } else if (err) {
        err->code = NERR_INVALID;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    va_end(ap);
    return NERR_INVALID;
}

/* Quotes at most 40 bytes of s for a message, control bytes escaped, so a
 * hostile file cannot put terminal escapes into an operator's log. */
static const char *quote(const char *s, size_t len, char *buf, size_t cap)
{
    size_t o = 0, i;
    for (i = 0; i < len && i < 40 && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
        else
            buf[o++] = (char)c;
    }
    if (i < len && o + 4 < cap) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

const char *yt_describe(const struct yt_node *node, char *buf, size_t cap)
{
    char q[200];
    switch (node->kind) {
    case YT_MAP:
        return "a mapping";
    case YT_SEQ:
        return "a sequence";
    case YT_SCALAR:
        break;
    }
    if (yt_is_null(node))
        return "null";
    quote(node->text, node->len, q, sizeof q);
    if (node->style == YT_PLAIN)
        snprintf(buf, cap, "'%s'", q);
    else
        snprintf(buf, cap, "the string \"%s\"", q);
    return buf;
}

static int expected(struct nerr *err, const struct yt_node *node, const char *what)
{
    char d[256];
    return node_err(err, NERR_INVALID, node, "expected %s, got %s", what,
                    yt_describe(node, d, sizeof d));
}

/* ---- building ---- */

static struct yt_node *new_node(struct builder *b, enum yt_kind kind, const yaml_mark_t *mark,
                                const yaml_char_t *tag)
{
    struct yt_node *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->kind = kind;
    n->line = (int)mark->line + 1;
    n->col = (int)mark->column + 1;
    n->file = b->doc->name;
    n->weight = 1;
    n->next_all = b->doc->all;
    b->doc->all = n;
    if (tag && !(n->tag = strdup((const char *)tag)))
        return NULL;
    return n;
}

static int nomem(struct nerr *err)
{
    return nerr_set(err, NERR_NOMEM, "out of memory");
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static struct anchor *anchor_slot(struct builder *b, const char *name)
{
    size_t mask = b->anchor_cap - 1;
    for (size_t i = hash_str(name) & mask;; i = (i + 1) & mask)
        if (!b->anchors[i].name || !strcmp(b->anchors[i].name, name))
            return &b->anchors[i];
}

/* A later anchor with the same name replaces the earlier one (YAML 1.2 §3.2.2.2). */
static int anchor_put(struct builder *b, char *name, struct yt_node *node)
{
    if ((b->nanchors + 1) * 2 > b->anchor_cap) {
        size_t ncap = b->anchor_cap ? b->anchor_cap * 2 : 16;
        struct anchor *old = b->anchors;
        size_t ocap = b->anchor_cap;
        b->anchors = calloc(ncap, sizeof *b->anchors);
        if (!b->anchors) {
            b->anchors = old;
            free(name);
            return nomem(b->err);
        }
        b->anchor_cap = ncap;
        for (size_t i = 0; i < ocap; i++)
            if (old[i].name)
                *anchor_slot(b, old[i].name) = old[i];
        free(old);
    }
    struct anchor *a = anchor_slot(b, name);
    if (a->name) {
        free(name);
    } else {
        a->name = name;
        b->nanchors++;
    }
    a->node = node;
    return 0;
}

static struct yt_node *anchor_get(struct builder *b, const char *name)
{
    if (!b->anchor_cap)
        return NULL;
    struct anchor *a = anchor_slot(b, name);
    return a->name ? a->node : NULL;
}

static int key_eq(const struct yt_node *a, const struct yt_node *b)
{
    return a->len == b->len && memcmp(a->text, b->text, a->len) == 0;
}

static int key_cmp(const void *pa, const void *pb)
{
    const struct yt_pair *a = *(const struct yt_pair *const *)pa;
    const struct yt_pair *b = *(const struct yt_pair *const *)pb;
    size_t n = a->key->len < b->key->len ? a->key->len : b->key->len;
    int c = memcmp(a->key->text, b->key->text, n);
    if (c)
        return c;
    if (a->key->len != b->key->len)
        return a->key->len < b->key->len ? -1 : 1;
    return a < b ? -1 : a > b; /* document order among equal keys */
}

/* Reports the duplicate that appears earliest in the document, at its key. */
static int check_duplicates(struct builder *b, const struct yt_node *map)
{
    const struct yt_pair *dup = NULL, *first = NULL;
    size_t n = map->n;
    if (n < 2)
        return 0;
    if (n <= 16) {
        for (size_t j = 1; j < n && !dup; j++)
            for (size_t i = 0; i < j; i++)
                if (key_eq(map->pairs[i].key, map->pairs[j].key)) {
                    dup = &map->pairs[j];
                    first = &map->pairs[i];
                    break;
                }
    } else {
        const struct yt_pair **v = malloc(n * sizeof *v);
        if (!v)
            return nomem(b->err);
        for (size_t i = 0; i < n; i++)
            v[i] = &map->pairs[i];
        qsort(v, n, sizeof *v, key_cmp);
        /* Runs of equal keys are in document order; the second of a run is
         * its first duplicate. */
        for (size_t s = 0, e; s < n; s = e) {
            for (e = s + 1; e < n && key_eq(v[s]->key, v[e]->key); e++)
                ;
            if (e - s > 1 && (!dup || v[s + 1] < dup)) {
                dup = v[s + 1];
                first = v[s];
            }
        }
        free(v);
    }
    if (!dup)
        return 0;
    char q[200];
    return set_at(b->err, NERR_INVALID, dup->key->file, dup->key->line, dup->key->col,
                  "duplicate key '%s' (first at line %d, column %d)",
                  quote(dup->key->text, dup->key->len, q, sizeof q), first->key->line,
                  first->key->col);
}

/* Hands a finished node to the open collection; mark is where the node was
 * referenced (an alias's own position, not its anchor's). */
static int add_child(struct builder *b, struct yt_node *node, const yaml_mark_t *mark)
{
    if (b->depth == 0) {
        b->doc->root = node;
        return 0;
    }
    struct frame *f = &b->stack[b->depth - 1];
    struct yt_node *p = f->node;
    if (p->kind == YT_MAP && !f->key) {
        if (node->kind != YT_SCALAR)
            return set_at(b->err, NERR_INVALID, b->doc->name, (int)mark->line + 1,
                          (int)mark->column + 1, "a mapping key must be a scalar, not %s",
                          node->kind == YT_MAP ? "a mapping" : "a sequence");
        f->key = node;
    } else {
        if (p->n == f->cap) {
            size_t ncap = f->cap ? f->cap * 2 : 4;
            if (p->kind == YT_MAP) {
                struct yt_pair *np = realloc(p->pairs, ncap * sizeof *np);
                if (!np)
                    return nomem(b->err);
                p->pairs = np;
            } else {
                struct yt_node **ni = realloc(p->items, ncap * sizeof *ni);
                if (!ni)
                    return nomem(b->err);
                p->items = ni;
            }
            f->cap = ncap;
        }
        if (p->kind == YT_MAP) {
            p->pairs[p->n].key = f->key;
            p->pairs[p->n].value = node;
            f->key = NULL;
        } else {
            p->items[p->n] = node;
        }
        p->n++;
    }
    /* Both weights are <= YT_MAX_EXPANDED, so the sum cannot overflow. */
    p->weight += node->weight;
    if (p->weight > YT_MAX_EXPANDED)
        return set_at(b->err, NERR_LIMIT, b->doc->name, (int)mark->line + 1, (int)mark->column + 1,
                      "document too large with aliases expanded (more than %u nodes)",
                      (unsigned)YT_MAX_EXPANDED);
    return 0;
}

static int open_collection(struct builder *b, enum yt_kind kind, const yaml_event_t *ev,
                           const yaml_char_t *anchor, const yaml_char_t *tag)
{
    if (b->depth == YT_MAX_DEPTH)
        return set_at(b->err, NERR_LIMIT, b->doc->name, (int)ev->start_mark.line + 1,
                      (int)ev->start_mark.column + 1, "nesting deeper than %d levels",
                      YT_MAX_DEPTH);
    struct yt_node *n = new_node(b, kind, &ev->start_mark, tag);
    if (!n)
        return nomem(b->err);
    struct frame *f = &b->stack[b->depth++];
    memset(f, 0, sizeof *f);
    f->node = n;
    if (anchor && !(f->anchor = strdup((const char *)anchor)))
        return nomem(b->err);
    return 0;
}

static int close_collection(struct builder *b)
{
    struct frame *f = &b->stack[b->depth - 1];
    struct yt_node *n = f->node;
    int rc;
    if (n->kind == YT_MAP && (rc = check_duplicates(b, n)))
        return rc;
    b->depth--;
    if (f->anchor) {
        char *name = f->anchor;
        f->anchor = NULL;
        if ((rc = anchor_put(b, name, n)))
            return rc;
    }
    yaml_mark_t m = {.line = (size_t)n->line - 1, .column = (size_t)n->col - 1};
    return add_child(b, n, &m);
}

static int on_scalar(struct builder *b, const yaml_event_t *ev)
{
    struct yt_node *n = new_node(b, YT_SCALAR, &ev->start_mark, ev->data.scalar.tag);
    if (!n)
        return nomem(b->err);
    size_t len = ev->data.scalar.length;
    if (!(n->text = malloc(len + 1)))
        return nomem(b->err);
    memcpy(n->text, ev->data.scalar.value, len);
    n->text[len] = '\0';
    n->len = len;
    switch (ev->data.scalar.style) {
    case YAML_SINGLE_QUOTED_SCALAR_STYLE:
        n->style = YT_SINGLE_QUOTED;
        break;
    case YAML_DOUBLE_QUOTED_SCALAR_STYLE:
        n->style = YT_DOUBLE_QUOTED;
        break;
    case YAML_LITERAL_SCALAR_STYLE:
        n->style = YT_LITERAL;
        break;
    case YAML_FOLDED_SCALAR_STYLE:
        n->style = YT_FOLDED;
        break;
    default:
        n->style = YT_PLAIN;
        break;
    }
    if (ev->data.scalar.anchor) {
        char *name = strdup((const char *)ev->data.scalar.anchor);
        int rc;
        if (!name)
            return nomem(b->err);
        if ((rc = anchor_put(b, name, n)))
            return rc;
    }
    return add_child(b, n, &ev->start_mark);
}

static int on_alias(struct builder *b, const yaml_event_t *ev)
{
    const char *name = (const char *)ev->data.alias.anchor;
    struct yt_node *target = anchor_get(b, name);
    char q[200];
    if (target)
        return add_child(b, target, &ev->start_mark);
    for (size_t i = 0; i < b->depth; i++)
        if (b->stack[i].anchor && !strcmp(b->stack[i].anchor, name))
            return set_at(b->err, NERR_INVALID, b->doc->name, (int)ev->start_mark.line + 1,
                          (int)ev->start_mark.column + 1,
                          "alias '*%s' refers to a node that contains it",
                          quote(name, strlen(name), q, sizeof q));
    return set_at(b->err, NERR_INVALID, b->doc->name, (int)ev->start_mark.line + 1,
                  (int)ev->start_mark.column + 1, "undefined alias '*%s'",
                  quote(name, strlen(name), q, sizeof q));
}

/* libyaml's reader errors carry a byte offset, not a mark. Columns count
 * characters, as libyaml's marks do. */
static void offset_to_pos(const struct builder *b, size_t off, int *line, int *col)
{
    int l = 1, c = 1;
    for (size_t i = 0; i < off && i < b->input_len; i++) {
        unsigned char ch = b->input[i];
        if (ch == '\n') {
            l++;
            c = 1;
        } else if ((ch & 0xc0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

static int syntax_error(struct builder *b, const yaml_parser_t *p)
{
    const char *problem = p->problem ? p->problem : "syntax error";
    int line, col;
    if (p->error == YAML_MEMORY_ERROR)
        return nomem(b->err);
    if (p->error == YAML_READER_ERROR) {
        offset_to_pos(b, p->problem_offset, &line, &col);
        if (p->problem_value != -1)
            return set_at(b->err, NERR_PARSE, b->doc->name, line, col, "%s (byte 0x%02x)", problem,
                          (unsigned)p->problem_value & 0xffu);
        return set_at(b->err, NERR_PARSE, b->doc->name, line, col, "%s", problem);
    }
    line = (int)p->problem_mark.line + 1;
    col = (int)p->problem_mark.column + 1;
    if (p->context)
        return set_at(b->err, NERR_PARSE, b->doc->name, line, col, "%s (%s at line %d, column %d)",
                      problem, p->context, (int)p->context_mark.line + 1,
                      (int)p->context_mark.column + 1);
    return set_at(b->err, NERR_PARSE, b->doc->name, line, col, "%s", problem);
}

static int build(struct builder *b, yaml_parser_t *parser)
{
    for (;;) {
        yaml_event_t ev;
        int rc = 0, done = 0;
        if (!yaml_parser_parse(parser, &ev))
            return syntax_error(b, parser);
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++b->ndocs > 1)
                rc = set_at(b->err, NERR_INVALID, b->doc->name, (int)ev.start_mark.line + 1,
                            (int)ev.start_mark.column + 1,
                            "expected a single YAML document, found a second one");
            break;
        case YAML_SCALAR_EVENT:
            rc = on_scalar(b, &ev);
            break;
        case YAML_ALIAS_EVENT:
            rc = on_alias(b, &ev);
            break;
        case YAML_SEQUENCE_START_EVENT:
            rc = open_collection(b, YT_SEQ, &ev, ev.data.sequence_start.anchor,
                                 ev.data.sequence_start.tag);
            break;
        case YAML_MAPPING_START_EVENT:
            rc = open_collection(b, YT_MAP, &ev, ev.data.mapping_start.anchor,
                                 ev.data.mapping_start.tag);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            rc = close_collection(b);
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
        if (rc)
            return rc;
        if (done)
            return 0;
    }
}

static void free_nodes(struct yt_node *n)
{
    while (n) {
        struct yt_node *next = n->next_all;
        free(n->tag);
        free(n->text);
        free(n->items);
        free(n->pairs);
        free(n);
        n = next;
    }
}

void yt_free(struct yt_doc *doc)
{
    if (!doc)
        return;
    free_nodes(doc->all);
    free(doc->name);
    free(doc);
}

int yt_load_string(const char *name, const char *text, size_t len, struct yt_doc **out,
                   struct nerr *err)
{
    struct builder b;
    yaml_parser_t parser;
    int rc;
    memset(&b, 0, sizeof b);
    if (len > YT_MAX_INPUT)
        return nerr_set(err, NERR_LIMIT, "%s: input is larger than %u bytes", name,
                        (unsigned)YT_MAX_INPUT);
    b.err = err;
    b.input = (const unsigned char *)text;
    b.input_len = len;
    if (!(b.doc = calloc(1, sizeof *b.doc)) || !(b.doc->name = strdup(name))) {
        free(b.doc);
        return nomem(err);
    }
    if (!yaml_parser_initialize(&parser)) {
        yt_free(b.doc);
        return nomem(err);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    rc = build(&b, &parser);
    yaml_parser_delete(&parser);
    if (rc == 0 && !b.doc->root) {
        /* An empty stream is a null document, so schema checks still get a
         * node (and a position) to complain about. */
        yaml_mark_t m = {0};
        struct yt_node *n = new_node(&b, YT_SCALAR, &m, NULL);
        if (!n || !(n->text = strdup("")))
            rc = nomem(err);
        else
            b.doc->root = n;
    }
    for (size_t i = 0; i < b.depth; i++)
        free(b.stack[i].anchor);
    for (size_t i = 0; i < b.anchor_cap; i++)
        free(b.anchors[i].name);
    free(b.anchors);
    if (rc) {
        yt_free(b.doc);
        return rc;
    }
    *out = b.doc;
    return 0;
}

int yt_load_file(const char *path, struct yt_doc **out, struct nerr *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc;
    if (fd < 0)
        return nerr_sys(err, errno, "%s", path);
    /* Read to EOF rather than trusting st_size, so pipes and /dev/stdin work;
     * the bound keeps a wrong path (a device, a huge log) from eating memory. */
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 16384;
            if (cap > YT_MAX_INPUT) {
                rc = nerr_set(err, NERR_LIMIT, "%s: file is larger than %u bytes", path,
                              (unsigned)YT_MAX_INPUT);
                goto fail;
            }
            char *nb = realloc(buf, ncap);
            if (!nb) {
                rc = nomem(err);
                goto fail;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = nerr_sys(err, errno, "%s", path);
            goto fail;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    rc = yt_load_string(path, buf, len, out, err);
fail:
    free(buf);
    close(fd);
    return rc;
}

const struct yt_node *yt_root(const struct yt_doc *doc)
{
    return doc->root;
}

const char *yt_name(const struct yt_doc *doc)
{
    return doc->name;
}

/* ---- inspecting ---- */

int yt_is_null(const struct yt_node *node)
{
    if (!node || node->kind != YT_SCALAR)
        return 0;
    if (node->tag)
        return !strcmp(node->tag, "tag:yaml.org,2002:null");
    if (node->style != YT_PLAIN)
        return 0;
    return !strcmp(node->text, "") || !strcmp(node->text, "~") || !strcmp(node->text, "null") ||
           !strcmp(node->text, "Null") || !strcmp(node->text, "NULL");
}

static const struct yt_pair *map_pair(const struct yt_node *map, const char *key)
{
    if (!map || map->kind != YT_MAP)
        return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < map->n; i++) {
        const struct yt_node *k = map->pairs[i].key;
        if (k->len == kl && !memcmp(k->text, key, kl))
            return &map->pairs[i];
    }
    return NULL;
}

const struct yt_node *yt_map_get(const struct yt_node *map, const char *key)
{
    const struct yt_pair *p = map_pair(map, key);
    return p ? p->value : NULL;
}

const struct yt_node *yt_map_key(const struct yt_node *map, const char *key)
{
    const struct yt_pair *p = map_pair(map, key);
    return p ? p->key : NULL;
}

int yt_expect_map(const struct yt_node *node, struct nerr *err)
{
    return node->kind == YT_MAP ? 0 : expected(err, node, "a mapping");
}

int yt_expect_seq(const struct yt_node *node, struct nerr *err)
{
    return node->kind == YT_SEQ ? 0 : expected(err, node, "a sequence");
}

int yt_expect_scalar(const struct yt_node *node, struct nerr *err)
{
    return node->kind == YT_SCALAR ? 0 : expected(err, node, "a scalar");
}

/* Optimal string alignment distance (Levenshtein plus adjacent swaps, so
 * "ndoes" is one edit from "nodes"). Inputs are at most 64 bytes. */
static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
    size_t d[65][65];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            size_t v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v)
                v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[la][lb];
}

int yt_check_keys(const struct yt_node *map, const char *const allowed[], struct nerr *err)
{
    int rc;
    if ((rc = yt_expect_map(map, err)))
        return rc;
    for (size_t i = 0; i < map->n; i++) {
        const struct yt_node *k = map->pairs[i].key;
        const char *best = NULL;
        size_t best_d = 3;
        int known = 0;
        for (size_t a = 0; allowed[a] && !known; a++) {
            size_t al = strlen(allowed[a]);
            if (k->len == al && !memcmp(k->text, allowed[a], al)) {
                known = 1;
            } else if (k->len <= 64 && al <= 64) {
                size_t d = edit_distance(k->text, k->len, allowed[a], al);
                /* d < al: "x" is not a misspelling of "id", though two edits apart. */
                if (d < best_d && d < al) {
                    best_d = d;
                    best = allowed[a];
                }
            }
        }
        if (known)
            continue;
        char q[200];
        quote(k->text, k->len, q, sizeof q);
        if (best)
            return node_err(err, NERR_INVALID, k, "unknown key '%s', did you mean '%s'?", q, best);
        return node_err(err, NERR_INVALID, k, "unknown key '%s'", q);
    }
    return 0;
}

/* ---- converting ---- */

int yt_as_str(const struct yt_node *node, const char **out, struct nerr *err)
{
    if (node->kind != YT_SCALAR || yt_is_null(node))
        return expected(err, node, "a string");
    if (memchr(node->text, '\0', node->len))
        return node_err(err, NERR_INVALID, node, "string contains a NUL byte");
    *out = node->text;
    return 0;
}

/* Parses an unsigned decimal at *s, advancing it; 0 on success, 1 when no
 * digit, 2 on overflow. */
static int parse_u64(const char **s, uint64_t *out)
{
    const char *p = *s;
    uint64_t v = 0;
    int over = 0;
    if (!isdigit((unsigned char)*p))
        return 1;
    for (; isdigit((unsigned char)*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            over = 1;
        else
            v = v * 10 + d;
    }
    *s = p;
    *out = v;
    return over ? 2 : 0;
}

int yt_as_int(const struct yt_node *node, int64_t min, int64_t max, int64_t *out, struct nerr *err)
{
    char q[200];
    if (node->kind != YT_SCALAR || yt_is_null(node) || node->style != YT_PLAIN ||
        (node->tag && strcmp(node->tag, "tag:yaml.org,2002:int")))
        return expected(err, node, "an integer");
    const char *p = node->text;
    int neg = 0;
    uint64_t mag;
    if (*p == '-' || *p == '+')
        neg = *p++ == '-';
    int r = parse_u64(&p, &mag);
    if (r == 1 || *p || (size_t)(p - node->text) != node->len)
        return expected(err, node, "an integer");
    /* Magnitudes past int64 are out of any range a caller can pass. */
    int in = r == 0 && (neg ? mag <= (uint64_t)INT64_MAX + 1 : mag <= (uint64_t)INT64_MAX);
    int64_t v = 0;
    if (in)
        v = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    if (!in || v < min || v > max)
        return node_err(err, NERR_INVALID, node, "%s is out of range (%lld..%lld)",
                        quote(node->text, node->len, q, sizeof q), (long long)min, (long long)max);
    *out = v;
    return 0;
}

int yt_as_bool(const struct yt_node *node, int *out, struct nerr *err)
{
    static const char *const t[] = {"true", "True", "TRUE"}, *const f[] = {"false", "False",
                                                                           "FALSE"};
    if (node->kind == YT_SCALAR && node->style == YT_PLAIN &&
        (!node->tag || !strcmp(node->tag, "tag:yaml.org,2002:bool")))
        for (int i = 0; i < 3; i++) {
            if (!strcmp(node->text, t[i])) {
                *out = 1;
                return 0;
            }
            if (!strcmp(node->text, f[i])) {
                *out = 0;
                return 0;
            }
        }
    return expected(err, node, "a boolean (true or false)");
}

const char *yt_fmt_size(uint64_t bytes, char *buf, size_t cap)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;
    while (bytes && u < 6 && bytes % 1024 == 0) {
        bytes /= 1024;
        u++;
    }
    snprintf(buf, cap, "%llu%s", (unsigned long long)bytes, units[u]);
    return buf;
}

static int scalar_text(const struct yt_node *node, const char *what, struct nerr *err)
{
    if (node->kind != YT_SCALAR || yt_is_null(node) || memchr(node->text, '\0', node->len))
        return expected(err, node, what);
    return 0;
}

int yt_as_size(const struct yt_node *node, uint64_t min, uint64_t max, uint64_t *out,
               struct nerr *err)
{
    static const struct {
        const char *name;
        int shift;
    } units[] = {{"", 0},     {"B", 0},    {"KiB", 10}, {"MiB", 20},
                 {"GiB", 30}, {"TiB", 40}, {"PiB", 50}};
    static const char *const decimal[] = {"k", "K",  "kB", "KB", "M", "MB",
                                          "G", "GB", "T",  "TB", "P", "PB"};
    const char *what = "a size (bytes, or with a unit: 64KiB, 16MiB, 1GiB)";
    char q[200], a[32], b2[32];
    uint64_t v;
    int rc;
    if ((rc = scalar_text(node, what, err)))
        return rc;
    const char *p = node->text;
    int r = parse_u64(&p, &v);
    if (r == 1)
        return expected(err, node, what);
    while (*p == ' ')
        p++;
    quote(node->text, node->len, q, sizeof q);
    for (size_t i = 0; i < sizeof decimal / sizeof *decimal; i++)
        if (!strcmp(p, decimal[i]))
            return node_err(err, NERR_INVALID, node,
                            "ambiguous size unit '%s' in '%s': use B, KiB, MiB, GiB, TiB or PiB",
                            decimal[i], q);
    for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
        if (strcmp(p, units[i].name))
            continue;
        if (r == 2 || (units[i].shift && v > (UINT64_MAX >> units[i].shift)))
            return node_err(err, NERR_INVALID, node, "size '%s' is too large", q);
        v <<= units[i].shift;
        if (v < min)
            return node_err(err, NERR_INVALID, node, "size '%s' is below the minimum of %s", q,
                            yt_fmt_size(min, a, sizeof a));
        if (v > max)
            return node_err(err, NERR_INVALID, node, "size '%s' is above the maximum of %s", q,
                            yt_fmt_size(max, b2, sizeof b2));
        *out = v;
        return 0;
    }
    return expected(err, node, what);
}

static const char *fmt_duration(uint64_t ns, char *buf, size_t cap)
{
    static const struct {
        const char *name;
        uint64_t ns;
    } units[] = {{"h", 3600000000000ull}, {"m", 60000000000ull}, {"s", 1000000000ull},
                 {"ms", 1000000ull},      {"us", 1000ull},       {"ns", 1}};
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (ns % units[i].ns == 0) {
            snprintf(buf, cap, "%llu%s", (unsigned long long)(ns / units[i].ns), units[i].name);
            break;
        }
    return buf;
}

int yt_as_duration(const struct yt_node *node, uint64_t min, uint64_t max, uint64_t *out,
                   struct nerr *err)
{
    /* Longer names first, so "ms" is not read as "m" followed by junk. */
    static const struct {
        const char *name;
        uint64_t ns;
    } units[] = {{"ns", 1},
                 {"us", 1000ull},
                 {"ms", 1000000ull},
                 {"s", 1000000000ull},
                 {"m", 60000000000ull},
                 {"h", 3600000000000ull}};
    const char *what = "a duration (500ms, 10s, 2m, 1h30m)";
    char q[200], a[32];
    unsigned __int128 total = 0;
    int rc;
    if ((rc = scalar_text(node, what, err)))
        return rc;
    const char *p = node->text;
    quote(node->text, node->len, q, sizeof q);
    if (!strcmp(p, "0")) {
        p++;
    } else if (!*p) {
        return expected(err, node, what);
    }
    while (*p) {
        uint64_t ip = 0, fp = 0, scale = 1;
        int r = parse_u64(&p, &ip), any = r != 1;
        if (r == 2)
            return node_err(err, NERR_INVALID, node, "duration '%s' is too large", q);
        if (*p == '.') {
            p++;
            /* Digits past the 18th cannot change a nanosecond count of any unit here. */
            for (; isdigit((unsigned char)*p); p++, any = 1)
                if (scale < 1000000000000000000ull) {
                    fp = fp * 10 + (uint64_t)(*p - '0');
                    scale *= 10;
                }
        }
        if (!any)
            return expected(err, node, what);
        size_t u, ul = 0;
        for (u = 0; u < sizeof units / sizeof *units; u++) {
            ul = strlen(units[u].name);
            if (!strncmp(p, units[u].name, ul) && !isalpha((unsigned char)p[ul]))
                break;
        }
        if (u == sizeof units / sizeof *units)
            return expected(err, node, what);
        p += ul;
        total += (unsigned __int128)ip * units[u].ns + (unsigned __int128)fp * units[u].ns / scale;
        if (total > UINT64_MAX)
            return node_err(err, NERR_INVALID, node, "duration '%s' is too large", q);
    }
    if ((uint64_t)total < min)
        return node_err(err, NERR_INVALID, node, "duration '%s' is below the minimum of %s", q,
                        fmt_duration(min, a, sizeof a));
    if ((uint64_t)total > max)
        return node_err(err, NERR_INVALID, node, "duration '%s' is above the maximum of %s", q,
                        fmt_duration(max, a, sizeof a));
    *out = (uint64_t)total;
    return 0;
}

/* RFC 1123 host name: dot-separated labels of letters, digits and inner
 * hyphens, each at most 63 bytes, 253 in all. */
static int valid_dns_name(const char *s, size_t len)
{
    size_t label = 0;
    if (len == 0 || len > 253)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
        } else if (isalnum((unsigned char)c) || (c == '-' && label > 0)) {
            if (++label > 63)
                return 0;
        } else {
            return 0;
        }
    }
    return label > 0 && s[len - 1] != '-';
}

int yt_as_hostport(const struct yt_node *node, struct yt_hostport *out, struct nerr *err)
{
    const char *what = "HOST:PORT (127.0.0.1:8101, [::1]:8101, db1.example:8101)";
    char q[200], host[256];
    const char *h, *colon;
    size_t hl;
    int family, rc;
    if ((rc = scalar_text(node, what, err)))
        return rc;
    const char *s = node->text;
    quote(s, node->len, q, sizeof q);
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return expected(err, node, what);
        h = s + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
        family = 6;
    } else {
        colon = strrchr(s, ':');
        if (!colon || colon == s)
            return expected(err, node, what);
        h = s;
        hl = (size_t)(colon - s);
        if (memchr(h, ':', hl))
            return node_err(err, NERR_INVALID, node,
                            "an IPv6 address needs brackets, as in [::1]:8101, in '%s'", q);
        family = strspn(h, "0123456789.") == hl ? 4 : 0;
    }
    if (hl == 0 || hl >= sizeof host)
        return expected(err, node, what);
    memcpy(host, h, hl);
    host[hl] = '\0';
    unsigned char addr[16];
    if (family == 6 && inet_pton(AF_INET6, host, addr) != 1)
        return node_err(err, NERR_INVALID, node, "invalid IPv6 address '%s'", host);
    if (family == 4 && inet_pton(AF_INET, host, addr) != 1)
        return node_err(err, NERR_INVALID, node, "invalid IPv4 address '%s'", host);
    if (family == 0 && !valid_dns_name(host, hl))
        return node_err(err, NERR_INVALID, node, "invalid host name in '%s'", q);
    const char *p = colon + 1;
    uint64_t port;
    int r = parse_u64(&p, &port);
    if (r == 1 || *p)
        return expected(err, node, what);
    if (r == 2 || port < 1 || port > 65535)
        return node_err(err, NERR_INVALID, node, "port %s is out of range (1..65535)",
                        quote(colon + 1, strlen(colon + 1), q, sizeof q));
    memcpy(out->host, host, hl + 1);
    out->port = (int)port;
    out->family = family;
    return 0;
}

/* ---- looked up in a mapping ---- */

int yt_get(const struct yt_node *map, const char *key, enum yt_presence p,
           const struct yt_node **out, struct nerr *err)
{
    int rc;
    if ((rc = yt_expect_map(map, err)))
        return rc;
    const struct yt_node *v = yt_map_get(map, key);
    if (!v && p == YT_REQUIRED)
        return node_err(err, NERR_INVALID, map, "missing required key '%s'", key);
    *out = p == YT_OPTIONAL && yt_is_null(v) ? NULL : v;
    return 0;
}

int yt_get_str(const struct yt_node *map, const char *key, enum yt_presence p, const char **out,
               struct nerr *err)
{
    const struct yt_node *v = NULL;
    int rc = yt_get(map, key, p, &v, err);
    return rc || !v ? rc : yt_as_str(v, out, err);
}

int yt_get_int(const struct yt_node *map, const char *key, enum yt_presence p, int64_t min,
               int64_t max, int64_t *out, struct nerr *err)
{
    const struct yt_node *v = NULL;
    int rc = yt_get(map, key, p, &v, err);
    return rc || !v ? rc : yt_as_int(v, min, max, out, err);
}

int yt_get_bool(const struct yt_node *map, const char *key, enum yt_presence p, int *out,
                struct nerr *err)
{
    const struct yt_node *v = NULL;
    int rc = yt_get(map, key, p, &v, err);
    return rc || !v ? rc : yt_as_bool(v, out, err);
}

int yt_get_size(const struct yt_node *map, const char *key, enum yt_presence p, uint64_t min,
                uint64_t max, uint64_t *out, struct nerr *err)
{
    const struct yt_node *v = NULL;
    int rc = yt_get(map, key, p, &v, err);
    return rc || !v ? rc : yt_as_size(v, min, max, out, err);
}

int yt_get_duration(const struct yt_node *map, const char *key, enum yt_presence p, uint64_t min,
                    uint64_t max, uint64_t *out, struct nerr *err)
{
    const struct yt_node *v = NULL;
    int rc = yt_get(map, key, p, &v, err);
    return rc || !v ? rc : yt_as_duration(v, min, max, out, err);
}

int yt_get_hostport(const struct yt_node *map, const char *key, enum yt_presence p,
                    struct yt_hostport *out, struct nerr *err)
{
    const struct yt_node *v = NULL;
    int rc = yt_get(map, key, p, &v, err);
    return rc || !v ? rc : yt_as_hostport(v, out, err);
}
