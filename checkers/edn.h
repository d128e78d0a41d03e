/*
 * edn.h — a small reader for EDN (extensible data notation), the text format
 * Jepsen and Knossos write histories in.
 *
 * Purpose: turn EDN text into a tree of struct edn_value, one top-level form
 * at a time, so that a history of a million operations is read in constant
 * memory (the caller resets the arena between forms).
 *
 * Supported: nil, true, false, integers (with an optional N suffix; values
 * beyond 64 bits keep only their text), floats (M suffix allowed), strings
 * with \" \\ \n \t \r \b \f \uXXXX escapes, characters (\a, \newline, ...),
 * keywords, symbols, lists (), vectors [], maps {}, sets #{}, comments ';',
 * discard '#_', commas as whitespace, and tagged elements (#inst "...",
 * #jepsen.history.Op{...}): the tag is kept and the element read as usual.
 *
 * Streaming: edn_enter() steps into a top-level vector or list so that its
 * elements come back one by one from edn_read(); edn_read() returns 0 at the
 * matching closing bracket, then continues with the forms after it.
 *
 * Ownership: every edn_value and every string it points to lives in the
 * struct edn_arena passed to edn_read(), until edn_arena_reset() or
 * edn_arena_free(). The reader borrows the input buffer, which must outlive
 * it; the values never point into the input.
 *
 * Errors: NERR_PARSE with "line L, column C: reason" in the nerr message
 * (lines and columns count from 1, columns in bytes); NERR_NOMEM. After an
 * error the reader must not be used again. Nesting deeper than
 * EDN_MAX_DEPTH is a parse error, so hostile input cannot exhaust the stack.
 *
 * Thread-safety: a reader and an arena belong to one thread at a time;
 * distinct readers are independent.
 */
#ifndef NINES_CHECKERS_EDN_H
#define NINES_CHECKERS_EDN_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define EDN_MAX_DEPTH 256

enum edn_type {
    EDN_NIL,
    EDN_BOOL,
    EDN_INT,     /* u.num: i holds the value when fits is set */
    EDN_FLOAT,   /* u.num: text only */
    EDN_STRING,  /* u.str, unescaped */
    EDN_CHAR,    /* u.str, the character as UTF-8 */
    EDN_KEYWORD, /* u.str without the leading ':' */
    EDN_SYMBOL,  /* u.str */
    EDN_LIST,    /* u.seq */
    EDN_VECTOR,  /* u.seq */
    EDN_SET,     /* u.seq */
    EDN_MAP,     /* u.seq, n even: key, value, key, value, ... */
};

struct edn_value {
    enum edn_type type;
    uint32_t line, col; /* where the form starts */
    const char *tag;    /* "#tag" name without '#' when the form was tagged, else NULL */
    union {
        int b;
        struct {
            int64_t i;
            int fits;         /* i is exact (integers within int64) */
            const char *text; /* NUL-terminated source text without N/M suffix */
        } num;
        struct {
            const char *s; /* NUL-terminated; len excludes the NUL */
            size_t len;
        } str;
        struct {
            struct edn_value **items;
            size_t n;
        } seq;
    } u;
};

struct edn_arena_chunk;
struct edn_arena {
    struct edn_arena_chunk *head;
};

struct edn_reader {
    const char *p, *end;
    uint32_t line, col;
    char closer;    /* ']' or ')' while inside an entered sequence, else 0 */
    uint32_t open_line, open_col;
};

void edn_arena_init(struct edn_arena *a);
/* Forgets every value allocated so far; keeps one chunk for reuse. */
void edn_arena_reset(struct edn_arena *a);
void edn_arena_free(struct edn_arena *a);

void edn_reader_init(struct edn_reader *r, const char *buf, size_t len);

/* Steps into a top-level vector or list. Returns 1 if one was entered, 0 if
 * the next form is something else (nothing consumed but whitespace and
 * comments), or a negative error. */
int edn_enter(struct edn_reader *r, struct nerr *e);

/* Reads the next form into *out (allocated in a). Returns 1 with a value, 0 at
 * the end of the input or at the closing bracket of an entered sequence, or a
 * negative error. */
int edn_read(struct edn_reader *r, struct edn_arena *a, struct edn_value **out, struct nerr *e);

/* Looks up keyword key `name` (without ':') in map m; NULL when absent or when
 * m is not a map. */
const struct edn_value *edn_map_get(const struct edn_value *m, const char *name);

#endif
