#include "lib/strbuf.h"

#include <stdlib.h>
#include <string.h>

#include "lib/err.h"

void strbuf_add(struct strbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void strbuf_str(struct strbuf *b, const char *s)
{
    strbuf_add(b, s, strlen(s));
}

void strbuf_ch(struct strbuf *b, char c)
{
    strbuf_add(b, &c, 1);
}

int strbuf_finish(struct strbuf *b, char **out)
{
    strbuf_add(b, "", 0); /* a string even when nothing was added */
    if (b->oom || !b->p) {
        strbuf_free(b);
        return NERR_NOMEM;
    }
    *out = b->p;
    b->p = NULL;
    b->len = b->cap = 0;
    return 0;
}

void strbuf_free(struct strbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
