/*
 * history.h — a recorded history of client operations, in memory.
 *
 * Purpose: the one representation every checker reads. A history is built
 * from events (an invocation, then its completion: ok, fail or info) either
 * by a loader (history_load_file / history_parse: nines JSONL or Jepsen EDN,
 * told apart by content; docs/history.md) or directly by a program such as
 * the game-day runner (history_builder_*), with no I/O involved.
 *
 * Model: events are ordered by time when every event carries one (ties put
 * invocations first, which makes the ops concurrent: the lenient reading),
 * else by their order of arrival. Each invocation is paired with the next
 * completion of the same process. An invocation never completed, or followed
 * by another invocation of the same process, is an `info` op (outcome
 * unknown, may take effect at any time after its invocation, or never).
 * Keys, values and processes are interned: a value is a uint32 id, with
 * HISTORY_NIL for "absent / nil" and HISTORY_ANY for a read whose value is
 * unknown (Jepsen's ok read of nil, which Knossos accepts in any state).
 * Values compare by their text: the integer 1 and the string "1" are equal.
 *
 * Ownership: a struct history owns all its memory; pointers returned by
 * history_value / history_key stay valid until history_free. Builders copy
 * every byte they are given.
 *
 * Errors: NERR_PARSE (with "FILE:LINE:COL: why" or "line L: why"),
 * NERR_INVALID (a well-formed event that makes no sense, e.g. a completion
 * without an invocation, or an unknown f), NERR_IO, NERR_NOMEM.
 *
 * Thread-safety: building is single-threaded; a finished history is
 * read-only and may be shared by any number of threads.
 */
#ifndef NINES_CHECKERS_HISTORY_H
#define NINES_CHECKERS_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define HISTORY_NIL 0u  /* absent / nil */
#define HISTORY_ANY 1u  /* a read whose value is unknown */
#define HISTORY_NONE UINT32_MAX

enum history_type { HISTORY_INVOKE, HISTORY_OK, HISTORY_FAIL, HISTORY_INFO };
enum history_f { HISTORY_READ, HISTORY_WRITE, HISTORY_CAS, HISTORY_DELETE, HISTORY_APPEND };
enum history_vkind { HISTORY_V_NONE, HISTORY_V_NULL, HISTORY_V_TEXT };

/* One event as a producer hands it to history_builder_add. Strings are
 * borrowed for the duration of the call. */
struct history_event {
    int64_t process;
    enum history_type type;
    enum history_f f;
    const char *key; /* NULL: the history's one unnamed key */
    size_t key_len;
    /* read: the value read (on the completion); write: the value written;
     * cas: value = expected, value2 = new. */
    enum history_vkind value_kind, value2_kind;
    const char *value, *value2;
    size_t value_len, value2_len;
    int has_time;
    int64_t time;     /* nanoseconds, monotonic clock, any origin */
    int consistent;   /* reads: 1 strongly consistent, 0 eventually consistent */
    uint32_t line;    /* source line for messages, 0 when none */
};

enum history_status { HISTORY_S_OK, HISTORY_S_FAIL, HISTORY_S_INFO };

/* One operation: an invocation and its completion. */
struct history_op {
    uint32_t key;
    /* Event indices in history order (without timestamps: the position in
     * the source, ignored events included, as Jepsen numbers ops); ret is
     * HISTORY_NONE when the op never
     * completed. An op whose status is info is open-ended whatever ret says:
     * ret and t_ret then only date the info event, for display. */
    uint32_t inv, ret;
    int64_t process;
    int64_t t_inv, t_ret; /* times (event indices without times); t_ret INT64_MAX if never completed */
    uint32_t value, value2;
    uint8_t f, status, consistent;
    uint32_t line_inv, line_ret;
};

struct history {
    struct history_op *ops; /* ordered by invocation */
    size_t nops;
    uint32_t nevents;
    uint32_t nkeys;
    uint32_t *key_off; /* ops of key k: key_ops[key_off[k] .. key_off[k+1]), invocation order */
    uint32_t *key_ops;
    int has_time;      /* op times are real timestamps, not event indices */
    int independent;   /* EDN: keys came from [k v] tuples */
    uint32_t skipped;  /* events ignored (e.g. Jepsen :nemesis ops) */
    uint32_t crashed;  /* invocations never completed or superseded */
    char source[256];  /* file name or "memory" */
    struct history_intern *values, *keys;
};

struct history_builder;

int history_builder_new(struct history_builder **out, struct nerr *e);
/* Adds one event in arrival order. */
int history_builder_add(struct history_builder *b, const struct history_event *ev, struct nerr *e);
/* Counts an event the producer chose to ignore (shown in summaries). */
void history_builder_skip(struct history_builder *b);
/* Orders, pairs and indexes the events; always consumes b (also on error). */
int history_builder_finish(struct history_builder *b, struct history **out, struct nerr *e);
void history_builder_free(struct history_builder *b);

/* Format by content: JSONL when the first form is a JSON object ({"...),
 * EDN otherwise. name labels messages. */
int history_parse(const char *buf, size_t len, const char *name, struct history **out,
                  struct nerr *e);
int history_load_file(const char *path, struct history **out, struct nerr *e);

void history_free(struct history *h);

/* The text of value id v (NUL-terminated) and its length; "nil" for
 * HISTORY_NIL and "?" for HISTORY_ANY. */
const char *history_value(const struct history *h, uint32_t v, size_t *len);
/* Interns text as a value of h (used for --initial); HISTORY_NIL for NULL. */
int history_value_id(struct history *h, const char *text, size_t len, uint32_t *id,
                     struct nerr *e);
/* Looks up text without adding it; HISTORY_NONE when absent. */
uint32_t history_value_find(const struct history *h, const char *text, size_t len);
const char *history_key(const struct history *h, uint32_t k, size_t *len);
uint32_t history_nvalues(const struct history *h);

const char *history_f_name(int f);
const char *history_status_name(int s);

#endif
