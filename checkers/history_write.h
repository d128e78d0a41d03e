/*
 * history_write.h — the writer side of docs/history.md's JSONL: one line
 * per event, for programs that record what their clients did (`nines load
 * --history`). The readers are in checkers/history.h; the format belongs
 * to the checkers, so both sides live here.
 *
 * A line carries, in this order: process, type, f, key, value (when the
 * event has one), consistent (reads), error, final (final-phase reads) and
 * time. Strings are JSON-escaped (a value read back may hold anything);
 * text that needs no escaping is copied as is, so writing the generator's
 * own values costs a scan and a copy.
 *
 * Writes go through one large stdio buffer (HISTORY_WRITER_BUF bytes), so
 * an event costs a few memcpys and the file sees large writes. Write errors
 * are not returned per event: the first one is kept, and
 * history_writer_close reports it (NERR_IO naming the errno and the file).
 *
 * Ownership: history_writer_open allocates the writer, history_writer_close
 * frees it (also on error). Everything an event points to is borrowed for
 * the call. Thread-safety: none; one writer belongs to one thread.
 */
#ifndef NINES_CHECKERS_HISTORY_WRITE_H
#define NINES_CHECKERS_HISTORY_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define HISTORY_WRITER_BUF (1u << 20)

/* One value field: absent (no "value" at all), JSON null, or a string. */
enum history_wvalue { HISTORY_WV_NONE = 0, HISTORY_WV_NULL, HISTORY_WV_STR };

struct history_wval {
    enum history_wvalue kind;
    const char *s; /* HISTORY_WV_STR: len bytes, no NUL needed */
    size_t len;
};

struct history_wevent {
    unsigned process;
    const char *type; /* "invoke", "ok", "fail", "info" */
    const char *f;    /* "write", "read", "cas", "delete" */
    const char *key;  /* NUL-terminated */
    /* write: value; read: value (completions); cas: [expected, value],
     * written as a pair whenever f is "cas" (a NONE expected is null). */
    struct history_wval value, expected;
    int consistent;    /* reads: 1 true, 0 false; -1 no field */
    const char *error; /* NULL: no field */
    int final;         /* 1: "final":true */
    uint64_t time;     /* monotonic ns */
};

struct history_writer;

/* Creates (truncates) path. NERR_IO naming path and the errno, NERR_NOMEM. */
int history_writer_open(struct history_writer **out, const char *path, struct nerr *e);
/* Appends one line. */
void history_writer_event(struct history_writer *w, const struct history_wevent *ev);
/* Flushes, closes and frees w: NERR_IO for the first failed write, flush
 * or close. w may be NULL (nothing to do). */
int history_writer_close(struct history_writer *w, struct nerr *e);
/* Closes and frees w without reporting anything (an error path whose own
 * error is already set). */
void history_writer_discard(struct history_writer *w);

#endif
