/*
 * yamltree.h — YAML documents as a read-only tree whose every node knows
 * where it was written, plus the checks that turn a tree into a config.
 *
 * Every nines input file (cluster file, inventory, playbooks, canary and
 * alarm rules) goes through this layer so that every bad input gets the same
 * kind of answer: "FILE:LINE:COL: message", never a crash.
 *
 * Loading (libyaml's event API):
 *   - one document per input; an empty input is a plain null scalar at 1:1;
 *   - nodes: mapping (ordered pairs, keys must be scalars), sequence, scalar
 *     (its text, byte length, style and explicit tag, so `"123"` and `123`,
 *     or `~` and `"~"`, can be told apart);
 *   - line and column are 1-based and mark the start of the node (for a
 *     mapping written in block style, its first key);
 *   - aliases are resolved by sharing: an alias IS the anchored node, so it
 *     carries the anchor's position. A document is refused when its size with
 *     every alias expanded exceeds YT_MAX_EXPANDED nodes ("billion laughs"):
 *     a consumer walking the tree therefore never visits more than that;
 *   - an alias to an enclosing node (a cycle) or to an unknown anchor, a
 *     duplicate key in one mapping (reported at the second key), a
 *     non-scalar key, a second document, nesting deeper than YT_MAX_DEPTH:
 *     all refused. YAML merge keys (`<<`) get no special meaning.
 *
 * Errors (struct nerr, lib/err.h), the message always "FILE:LINE:COL: ...":
 *   NERR_PARSE   libyaml's syntax errors, at the position libyaml reports;
 *   NERR_INVALID structure (duplicate key, alias errors) and schema checks;
 *   NERR_LIMIT   alias expansion, depth or input size over the bounds;
 *   NERR_IO      the file cannot be read: "FILE: No such file or directory";
 *   NERR_NOMEM   allocation failed.
 *
 * Ownership: a struct yt_doc owns every node, string and the name; all
 * pointers handed out (nodes, yt_get_str's strings, node->file) are borrowed
 * until yt_free. Nodes are read-only for callers.
 *
 * Thread-safety: no shared state. A loaded document may be read from several
 * threads at once; yt_free must not race with readers.
 *
 * The checkers (yt_as_*, yt_get_*) follow one pattern: they return 0 and
 * write *out, or return a negative code with err set at the offending node and
 * *out untouched. yt_get_* look a key up in a mapping first: a missing
 * YT_REQUIRED key is an error at the mapping ("missing required key 'k'"); a
 * missing YT_OPTIONAL key returns 0 and leaves *out as it was (the default).
 * An optional key whose value is null ("storage:" with every sub-key
 * commented out, or "partitions: ~") counts as missing; a required one does
 * not, and gets the type error ("expected a sequence, got null").
 */
#ifndef NINES_YAMLTREE_H
#define NINES_YAMLTREE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

/* Bounds applied by the loader. */
#define YT_MAX_EXPANDED (1u << 20) /* nodes, with aliases expanded */
#define YT_MAX_DEPTH 256           /* nesting of collections */
#define YT_MAX_INPUT (16u << 20)   /* bytes of input */

enum yt_kind { YT_SCALAR = 1, YT_SEQ = 2, YT_MAP = 3 };

enum yt_style {
    YT_PLAIN = 0,
    YT_SINGLE_QUOTED,
    YT_DOUBLE_QUOTED,
    YT_LITERAL, /* | */
    YT_FOLDED   /* > */
};

struct yt_pair;

struct yt_node {
    enum yt_kind kind;
    int line, col;    /* 1-based start of the node */
    const char *file; /* the document's name, for messages */
    char *tag; /* explicit tag after libyaml resolved it ("tag:yaml.org,2002:str"), or NULL */

    /* YT_SCALAR: text is NUL-terminated; len counts bytes and may be more
     * than strlen(text) when the YAML held "\0" (yt_as_str refuses that). */
    char *text;
    size_t len;
    enum yt_style style;

    /* YT_SEQ: items[0..n); YT_MAP: pairs[0..n) in document order. */
    struct yt_node **items;
    struct yt_pair *pairs;
    size_t n;

    /* Private to the loader. */
    uint64_t weight;          /* nodes in this subtree with aliases expanded */
    struct yt_node *next_all; /* every node of the document, for yt_free */
};

struct yt_pair {
    struct yt_node *key; /* always a scalar */
    struct yt_node *value;
};

struct yt_doc; /* opaque */

/* Reads and parses path. *out is set only on success; free it with yt_free.
 * The path as given is the FILE of every message. */
int yt_load_file(const char *path, struct yt_doc **out, struct nerr *err);

/* Parses len bytes of text; name is copied and used as FILE in messages. */
int yt_load_string(const char *name, const char *text, size_t len, struct yt_doc **out,
                   struct nerr *err);

/* Frees the document and every node; NULL is allowed. */
void yt_free(struct yt_doc *doc);

/* The root node; never NULL for a loaded document. */
const struct yt_node *yt_root(const struct yt_doc *doc);

/* The name given at load time. */
const char *yt_name(const struct yt_doc *doc);

/* Formats "FILE:LINE:COL: message" for node into err and returns
 * NERR_INVALID. node may be NULL only if err's message needs no position. */
int yt_errf(struct nerr *err, const struct yt_node *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --- Inspecting nodes ----------------------------------------------------- */

/* What node is, for "expected X, got Y" messages of one's own: "a mapping",
 * "a sequence", "null", "'abc'" (plain) or "the string \"123\"" (quoted),
 * at most 40 bytes of the text, control bytes escaped. Returns buf or a
 * constant; cap of 256 always suffices. */
const char *yt_describe(const struct yt_node *node, char *buf, size_t cap);

/* True for a plain untagged scalar "", "~", "null", "Null" or "NULL", or one
 * tagged !!null. */
int yt_is_null(const struct yt_node *node);

/* The value of key in map, or NULL when map is not a mapping or lacks key. */
const struct yt_node *yt_map_get(const struct yt_node *map, const char *key);

/* The key node (for its position), or NULL as yt_map_get. */
const struct yt_node *yt_map_key(const struct yt_node *map, const char *key);

/* 0 if node has the kind, else NERR_INVALID with "expected a mapping, got
 * ..." (sequence, scalar) at the node. */
int yt_expect_map(const struct yt_node *node, struct nerr *err);
int yt_expect_seq(const struct yt_node *node, struct nerr *err);
int yt_expect_scalar(const struct yt_node *node, struct nerr *err);

/* Every key of map must be in allowed (NULL-terminated). The first key that
 * is not gives "unknown key 'foo'" at the key, with ", did you mean 'bar'?"
 * when an allowed key is within edit distance 2 (and not wholly different). */
int yt_check_keys(const struct yt_node *map, const char *const allowed[], struct nerr *err);

/* --- Converting scalars --------------------------------------------------- */

/* Any non-null scalar without NUL bytes; *out borrowed until yt_free. */
int yt_as_str(const struct yt_node *node, const char **out, struct nerr *err);

/* A plain decimal integer ("-12", "+7", "4096"), min <= value <= max. A
 * quoted "123" is a string, not an integer. */
int yt_as_int(const struct yt_node *node, int64_t min, int64_t max, int64_t *out, struct nerr *err);

/* Plain true/false (also True/TRUE/False/FALSE; not yes/no/on/off, which
 * YAML 1.1 tools disagree about). */
int yt_as_bool(const struct yt_node *node, int *out, struct nerr *err);

/* Bytes: an integer, optionally followed (with or without a space) by B, KiB,
 * MiB, GiB, TiB or PiB: "65536", "64KiB", "1 GiB". Decimal units (kB, MB)
 * are refused as ambiguous. min <= bytes <= max. */
int yt_as_size(const struct yt_node *node, uint64_t min, uint64_t max, uint64_t *out,
               struct nerr *err);

/* Nanoseconds: one or more number+unit terms, units ns, us, ms, s, m, h, and
 * a decimal fraction allowed: "500ms", "10s", "2m", "1h30m", "1.5s". A bare
 * number has no unit and is refused. min <= ns <= max. */
int yt_as_duration(const struct yt_node *node, uint64_t min, uint64_t max, uint64_t *out,
                   struct nerr *err);

/* HOST:PORT with HOST an IPv4 address, a bracketed IPv6 address or a DNS
 * name, and 1 <= PORT <= 65535. host gets the address without brackets. */
struct yt_hostport {
    char host[256];
    int port;
    int family; /* 4, 6, or 0 for a DNS name */
};
int yt_as_hostport(const struct yt_node *node, struct yt_hostport *out, struct nerr *err);

/* --- The same, looked up in a mapping -------------------------------------- */

enum yt_presence { YT_OPTIONAL = 0, YT_REQUIRED = 1 };

/* The value node for key: *out NULL when optional and absent or null. */
int yt_get(const struct yt_node *map, const char *key, enum yt_presence p,
           const struct yt_node **out, struct nerr *err);
int yt_get_str(const struct yt_node *map, const char *key, enum yt_presence p, const char **out,
               struct nerr *err);
int yt_get_int(const struct yt_node *map, const char *key, enum yt_presence p, int64_t min,
               int64_t max, int64_t *out, struct nerr *err);
int yt_get_bool(const struct yt_node *map, const char *key, enum yt_presence p, int *out,
                struct nerr *err);
int yt_get_size(const struct yt_node *map, const char *key, enum yt_presence p, uint64_t min,
                uint64_t max, uint64_t *out, struct nerr *err);
int yt_get_duration(const struct yt_node *map, const char *key, enum yt_presence p, uint64_t min,
                    uint64_t max, uint64_t *out, struct nerr *err);
int yt_get_hostport(const struct yt_node *map, const char *key, enum yt_presence p,
                    struct yt_hostport *out, struct nerr *err);

/* Writes bytes as the largest IEC unit that divides it exactly ("64KiB",
 * "1000B") into buf; returns buf. For messages and docs. */
const char *yt_fmt_size(uint64_t bytes, char *buf, size_t cap);

#endif
