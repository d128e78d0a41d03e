#include "store/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/strbuf.h"

struct counter {
    char table[256];
    char op[48];
    unsigned long long n[3]; /* ok, client_error, server_error */
    struct counter *next;
};
#define COUNTER_BUCKETS 256

struct metrics {
    pthread_mutex_t mu;
    struct counter *counters[COUNTER_BUCKETS];
    size_t ncounters;
};

struct metrics *metrics_new(void)
{
    struct metrics *m = calloc(1, sizeof *m);
    if (m)
        pthread_mutex_init(&m->mu, NULL);
    return m;
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    for (int i = 0; i < COUNTER_BUCKETS; i++)
        for (struct counter *c = m->counters[i], *n; c; c = n) {
            n = c->next;
            free(c);
        }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void metrics_count(struct metrics *m, const char *table, const char *op, int status)
{
    int cls = status < 400 ? 0 : status < 500 ? 1 : 2;
    unsigned h = 5381;
    for (const char *p = table; *p; p++)
        h = h * 33 + (unsigned char)*p;
    for (const char *p = op; *p; p++)
        h = h * 33 + (unsigned char)*p;
    h %= COUNTER_BUCKETS;
    pthread_mutex_lock(&m->mu);
    struct counter *c = m->counters[h];
    while (c && (strcmp(c->table, table) || strcmp(c->op, op)))
        c = c->next;
    if (!c && m->ncounters < METRICS_MAX_SERIES && (c = calloc(1, sizeof *c))) {
        snprintf(c->table, sizeof c->table, "%s", table);
        snprintf(c->op, sizeof c->op, "%s", op);
        c->next = m->counters[h];
        m->counters[h] = c;
        m->ncounters++;
    }
    if (c)
        c->n[cls]++;
    pthread_mutex_unlock(&m->mu);
}

static void metric_label(struct strbuf *b, const char *v)
{
    for (const char *p = v; *p; p++) {
        if (*p == '\\' || *p == '"')
            strbuf_ch(b, '\\');
        if (*p == '\n')
            strbuf_str(b, "\\n");
        else
            strbuf_ch(b, *p);
    }
}

char *metrics_text(struct metrics *m)
{
    static const char *names[3] = {"ok", "client_error", "server_error"};
    struct strbuf b = {0};
    char line[160];
    char *out = NULL;
    strbuf_str(&b, "# HELP nines_api_requests_total Requests answered to clients, by table, "
                   "operation and outcome.\n# TYPE nines_api_requests_total counter\n");
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < COUNTER_BUCKETS; i++)
        for (struct counter *c = m->counters[i]; c; c = c->next)
            for (int k = 0; k < 3; k++) {
                if (!c->n[k])
                    continue;
                strbuf_str(&b, "nines_api_requests_total{table=\"");
                metric_label(&b, c->table);
                strbuf_str(&b, "\",op=\"");
                metric_label(&b, c->op);
                snprintf(line, sizeof line, "\",outcome=\"%s\"} %llu\n", names[k], c->n[k]);
                strbuf_str(&b, line);
            }
    pthread_mutex_unlock(&m->mu);
    strbuf_finish(&b, &out);
    return out;
}
