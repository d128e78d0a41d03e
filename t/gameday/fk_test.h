/*
 * fk_test.h — what the fault kinds' lab tests (faults_net.c, faults_delay.c)
 * share: the progress notes a kind prints, a kind's params from a YAML flow
 * map, a host by name, one inject or heal on one host, a small file read
 * whole, a sleep. Test code only.
 */
#ifndef NINES_T_GAMEDAY_FK_TEST_H
#define NINES_T_GAMEDAY_FK_TEST_H

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fault/fault.h"
#include "lib/yamltree.h"
#include "t/tap.h"

/* Every note the kinds printed (fault_env.note), one per line. */
static char notes[8192];

static inline void note_cb(void *arg, const char *msg)
{
    (void)arg;
    size_t l = strlen(notes);
    snprintf(notes + l, sizeof notes - l, "%s\n", msg);
}

struct errs {
    char msg[8][NERR_MSG_MAX];
    int n;
};

static inline void push(void *arg, const struct nerr *e)
{
    struct errs *x = arg;
    if (x->n < 8)
        snprintf(x->msg[x->n++], sizeof x->msg[0], "%s", e->msg);
}

/* Kind k's params from a YAML flow map ("{direction: out}"); NULL for a
 * kind without params. Bails out when they do not parse. */
static inline void *params_of(const struct fault_kind *k, const char *yaml)
{
    struct yt_doc *doc = NULL;
    struct nerr e = {0};
    struct errs x = {0};
    struct fault_errs fx = {push, &x};
    void *p = NULL;
    if (!k->parse)
        return NULL;
    if (yt_load_string("step.yaml", yaml, strlen(yaml), &doc, &e))
        bail_out(e.msg);
    if (k->parse(&fx, yt_root(doc), &p) || x.n) {
        diag("%s", x.n ? x.msg[0] : "parse failed");
        bail_out("params do not parse");
    }
    yt_free(doc);
    return p;
}

static inline int host_index(const struct inventory *inv, const char *name)
{
    for (size_t i = 0; i < inv->n_hosts; i++)
        if (!strcmp(inv->hosts[i].name, name))
            return (int)i;
    bail_out("no such host in the lab");
}

/* Inject (heal 0) or heal of kind k on one host. */
static inline int act(const struct fault_kind *k, const struct fault_env *env, int heal,
                      size_t host, const void *params, struct nerr *e)
{
    size_t hosts[1] = {host};
    struct fault_call c = {hosts, 1, heal ? NULL : params};
    nerr_clear(e);
    return heal ? k->heal(NULL, env, &c, e) : k->inject(NULL, env, &c, e);
}

/* A small file's text (at most 8 KiB; "" when it cannot be read), in a
 * buffer the next call reuses. */
static inline const char *slurp(const char *path)
{
    static char buf[8192];
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    return buf;
}

static inline void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

#endif
