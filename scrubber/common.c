/*
 * common.c — see common.h.
 */
#include "scrubber/common.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "scrubber/history.h"

int scrub_args_end(int argc, char **argv, const char *cluster, void (*usage)(FILE *))
{
    if (optind < argc) {
        fprintf(stderr, "nines scrub: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!cluster) {
        fprintf(stderr, "nines scrub: --cluster FILE is required\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

int scrub_begin(const char *cluster_file, const char **lock, char *lockbuf, size_t cap,
                struct cluster_conf **conf, int *lockfd)
{
    struct nerr err = {0};
    if (cluster_conf_load(cluster_file, conf, &err)) {
        fprintf(stderr, "nines scrub: %s\n", err.msg);
        return 2;
    }
    /* One scrub of a cluster at a time, deep or not (cron, a timer and a
     * person alike). */
    if (!*lock) {
        scrub_lock_default((*conf)->name, cluster_file, lockbuf, cap);
        *lock = lockbuf;
    }
    *lockfd = -1;
    if (scrub_lock(*lock, lockfd, &err)) {
        fprintf(stderr, "nines scrub: %s\n", err.msg);
        cluster_conf_free(*conf);
        *conf = NULL;
        return 2;
    }
    return 0;
}

struct ddb_client *scrub_client(const struct cluster_conf *c, size_t node, struct nerr *err)
{
    char url[512];
    if (cluster_conf_api_url(c, c->nodes[node].api, url, sizeof url) < 0) {
        nerr_set(err, NERR_INVALID, "node %s: api address too long", c->nodes[node].id);
        return NULL;
    }
    struct ddb_client_options co = {
        .endpoint = url,
        .access_key_id = c->auth ? c->access_key_id : NULL,
        .secret_access_key = c->auth ? c->secret_access_key : NULL,
        .region = c->region,
        .timeout_ms = 10000,
        .ca_file = c->tls_api ? c->tls_ca : NULL,
    };
    struct ddb_client *cl = NULL;
    return ddb_client_new(&co, &cl, err) ? NULL : cl;
}

int scrub_node_index(const struct cluster_conf *c, const char *id)
{
    for (size_t i = 0; i < c->nnodes; i++)
        if (!strcmp(c->nodes[i].id, id))
            return (int)i;
    return -1;
}

int scrub_wanted(const char *const *tables, int n, const char *table)
{
    if (!n)
        return 1;
    for (int i = 0; i < n; i++)
        if (!strcmp(tables[i], table))
            return 1;
    return 0;
}
