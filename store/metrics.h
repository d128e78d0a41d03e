/*
 * metrics.h — the API's request counters for GET /metrics (Prometheus text):
 * nines_api_requests_total{table,op,outcome}, for requests answered to
 * clients on this node (a forwarded hop is counted where the client sent
 * it). The table label comes from the parsed request ("-" when there is
 * none); the outcome from the HTTP status (ok < 400 <= client_error < 500 <=
 * server_error).
 *
 * Bounded: at most METRICS_MAX_SERIES (table, op) pairs are kept, so unknown
 * table names sent by clients cannot grow it forever; later pairs are not
 * counted. Thread-safe (one mutex). metrics_text's result is malloc'd (NULL
 * when out of memory).
 */
#ifndef NINES_METRICS_H
#define NINES_METRICS_H

#define METRICS_MAX_SERIES 100000

struct metrics;

struct metrics *metrics_new(void); /* NULL when out of memory */
void metrics_free(struct metrics *m);
void metrics_count(struct metrics *m, const char *table, const char *op, int http_status);
char *metrics_text(struct metrics *m);

#endif
