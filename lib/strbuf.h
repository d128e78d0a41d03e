/*
 * strbuf.h — a growable NUL-terminated string. An allocation failure sticks
 * (.oom) and makes every later append a no-op, so a builder appends freely and
 * checks once, at strbuf_finish. Start from a zeroed struct.
 */
#ifndef NINES_STRBUF_H
#define NINES_STRBUF_H

#include <stddef.h>

struct strbuf {
    char *p;
    size_t len, cap;
    int oom;
};

void strbuf_add(struct strbuf *b, const char *s, size_t n);
void strbuf_str(struct strbuf *b, const char *s);
void strbuf_ch(struct strbuf *b, char c);

/* Hands the string (never NULL, "" when nothing was added) to the caller, who
 * frees it; or frees everything and returns NERR_NOMEM. */
int strbuf_finish(struct strbuf *b, char **out);

/* Frees the buffer without handing it out. */
void strbuf_free(struct strbuf *b);

#endif
