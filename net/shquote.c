/* shquote.c — POSIX sh single-quote quoting; see shquote.h. */
#include "net/shquote.h"

#include <stdlib.h>
#include <string.h>

static int shq_is_bare(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        if (!strchr("_@%+:,./-", c))
            return 0;
    }
    return 1;
}

/* Bytes needed for the quoted form of s, without a terminator. */
static size_t shq_len(const char *s)
{
    if (shq_is_bare(s))
        return strlen(s);
    size_t n = 2;
    for (; *s; s++)
        n += *s == '\'' ? 4 : 1;
    return n;
}

/* Writes the quoted form of s at dst; returns the byte after it. */
static char *shq_put(char *dst, const char *s)
{
    if (shq_is_bare(s)) {
        size_t n = strlen(s);
        memcpy(dst, s, n);
        return dst + n;
    }
    *dst++ = '\'';
    for (; *s; s++) {
        if (*s == '\'') {
            memcpy(dst, "'\\''", 4);
            dst += 4;
        } else {
            *dst++ = *s;
        }
    }
    *dst++ = '\'';
    return dst;
}

int shquote_arg(const char *arg, char **out, struct nerr *e)
{
    const char *argv[2] = {arg, NULL};
    return shquote_join(argv, out, e);
}

int shquote_join(const char *const argv[], char **out, struct nerr *e)
{
    *out = NULL;
    if (!argv || !argv[0])
        return nerr_set(e, NERR_INVALID, "shquote: empty argument vector");
    size_t total = 0;
    for (size_t i = 0; argv[i]; i++) {
        /* Each argument can grow at most 4x + 2; checking per step keeps the
         * sum far from size_t overflow. */
        size_t n = shq_len(argv[i]);
        total += n + (i ? 1 : 0);
        if (total > SHQUOTE_MAX)
            return nerr_set(e, NERR_LIMIT, "shquote: command line longer than %zu bytes",
                            SHQUOTE_MAX);
    }
    char *buf = malloc(total + 1);
    if (!buf)
        return nerr_set(e, NERR_NOMEM, "shquote: out of memory");
    char *p = buf;
    for (size_t i = 0; argv[i]; i++) {
        if (i)
            *p++ = ' ';
        p = shq_put(p, argv[i]);
    }
    *p = '\0';
    *out = buf;
    return 0;
}
