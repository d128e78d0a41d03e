/*
 * history_write.c — docs/history.md's JSONL, written; contract in
 * checkers/history_write.h.
 */
#include "checkers/history_write.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct history_writer {
    FILE *f;
    char *buf;
    char *path;
    int err; /* errno of the first failed write */
};

int history_writer_open(struct history_writer **out, const char *path, struct nerr *e)
{
    struct history_writer *w = calloc(1, sizeof *w);
    *out = NULL;
    if (!w || !(w->buf = malloc(HISTORY_WRITER_BUF)) || !(w->path = strdup(path))) {
        if (w)
            free(w->buf);
        free(w);
        return nerr_set(e, NERR_NOMEM, "out of memory");
    }
    if (!(w->f = fopen(path, "w"))) {
        int rc = nerr_sys(e, errno, "history %s", path);
        free(w->path);
        free(w->buf);
        free(w);
        return rc;
    }
    setvbuf(w->f, w->buf, _IOFBF, HISTORY_WRITER_BUF);
    *out = w;
    return 0;
}

/* A JSON string: copied as is when nothing in it needs escaping. */
static void put_string(FILE *f, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && (unsigned char)s[i] >= 0x20 && s[i] != '"' && s[i] != '\\')
        i++;
    putc('"', f);
    if (i == n) {
        fwrite(s, 1, n, f);
    } else {
        for (i = 0; i < n; i++) {
            unsigned char ch = (unsigned char)s[i];
            if (ch == '"' || ch == '\\')
                fprintf(f, "\\%c", ch);
            else if (ch < 0x20)
                fprintf(f, "\\u%04x", ch);
            else
                putc(ch, f);
        }
    }
    putc('"', f);
}

static void put_value(FILE *f, const struct history_wval *v)
{
    if (v->kind == HISTORY_WV_STR)
        put_string(f, v->s, v->len);
    else
        fputs("null", f);
}

void history_writer_event(struct history_writer *w, const struct history_wevent *ev)
{
    FILE *f = w->f;
    fprintf(f, "{\"process\":%u,\"type\":\"%s\",\"f\":\"%s\",\"key\":", ev->process, ev->type,
            ev->f);
    put_string(f, ev->key, strlen(ev->key));
    if (!strcmp(ev->f, "cas")) {
        fputs(",\"value\":[", f);
        put_value(f, &ev->expected);
        putc(',', f);
        put_value(f, &ev->value);
        putc(']', f);
    } else if (ev->value.kind != HISTORY_WV_NONE) {
        fputs(",\"value\":", f);
        put_value(f, &ev->value);
    }
    if (ev->consistent >= 0)
        fputs(ev->consistent ? ",\"consistent\":true" : ",\"consistent\":false", f);
    if (ev->error) {
        fputs(",\"error\":", f);
        put_string(f, ev->error, strlen(ev->error));
    }
    if (ev->final)
        fputs(",\"final\":true", f);
    if (fprintf(f, ",\"time\":%" PRIu64 "}\n", ev->time) < 0 && !w->err)
        w->err = errno ? errno : EIO;
}

static void writer_free(struct history_writer *w)
{
    free(w->path);
    free(w->buf);
    free(w);
}

int history_writer_close(struct history_writer *w, struct nerr *e)
{
    int rc = 0;
    if (!w)
        return 0;
    if (fflush(w->f) && !w->err)
        w->err = errno ? errno : EIO;
    if (fclose(w->f) && !w->err)
        w->err = errno ? errno : EIO;
    if (w->err)
        rc = nerr_sys(e, w->err, "writing history %s", w->path);
    writer_free(w);
    return rc;
}

void history_writer_discard(struct history_writer *w)
{
    if (!w)
        return;
    fclose(w->f);
    writer_free(w);
}
