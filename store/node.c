#include "store/node.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/fsutil.h"
#include "lib/log.h"
#include "store/api.h"
#include "store/catalog.h"
#include "store/group.h"
#include "store/http.h"
#include "store/state.h"

#define MAX_PARTITIONS 256

struct node {
    const struct cluster_node *self;
    struct state *st;
    struct group_host *host;
    struct catalog *cat;
    struct api *api;
    struct http_server *http;
};

/* The NODE file binds a data directory to one node of one cluster. */
static int claim_data_dir(const struct cluster_conf *conf, const struct cluster_node *self,
                          struct nerr *err)
{
    char path[PATH_MAX], want[512];
    snprintf(path, sizeof path, "%s/NODE", self->data);
    snprintf(want, sizeof want, "cluster %s\nnode %s\n", conf->name, self->id);
    char *have = NULL;
    size_t len;
    struct nerr rerr = {0};
    int rc = fs_read_file(path, 4096, &have, &len, &rerr);
    if (rc == 0) {
        int same = !strcmp(have, want);
        free(have);
        if (!same)
            return nerr_set(err, NERR_INVALID,
                            "%s belongs to another node or cluster (see %s); refusing to start "
                            "node %s of cluster %s on it",
                            self->data, path, self->id, conf->name);
        return 0;
    }
    if (errno != ENOENT && rerr.code != NERR_IO)
        return nerr_set(err, rerr.code, "%s", rerr.msg);
    return fs_write_file_atomic(path, want, strlen(want), err);
}

int node_start(const struct node_options *opt, struct node **out, struct nerr *err)
{
    const struct cluster_conf *conf = opt->conf;
    const struct cluster_node *self = cluster_conf_node(conf, opt->node_id);
    char path[PATH_MAX];
    int rc;
    if (!self)
        return nerr_set(err, NERR_NOTFOUND, "%s: no node with id '%s'", conf->path, opt->node_id);
    struct node *n = calloc(1, sizeof *n);
    if (!n)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    n->self = self;
    if ((rc = fs_mkdir_p(self->data, err)) || (rc = claim_data_dir(conf, self, err)))
        goto fail;
    snprintf(path, sizeof path, "%s/state", self->data);
    struct state_options so = {.map_size = conf->map_size,
                               .max_dbs = conf->max_tables * 8 + 64};
    if ((rc = state_open(path, &so, &n->st, err)))
        goto fail;
    if ((rc = group_host_start(n->st, conf->sync_threads, &n->host, err)))
        goto fail;
    struct catalog_options co = {.data_dir = self->data,
                                 .wal_segment_size = conf->wal_segment_size,
                                 .unsafe_ack_before_sync = opt->unsafe_ack_before_sync,
                                 .max_partitions = MAX_PARTITIONS,
                                 .max_dbs = so.max_dbs};
    if ((rc = catalog_open(n->host, &co, &n->cat, err)))
        goto fail;
    struct api_options ao = {.cat = n->cat,
                             .region = conf->region,
                             .endpoint = self->api,
                             .default_partitions = conf->default_partitions,
                             .max_partitions = MAX_PARTITIONS};
    if ((rc = api_new(&ao, &n->api, err)))
        goto fail;
    struct http_options ho = {.host = self->api_host,
                              .port = self->api_port,
                              .threads = opt->http_threads,
                              .api = n->api,
                              .access_key_id =
                                  conf->auth == CLUSTER_AUTH_SIGV4 ? conf->access_key_id : NULL,
                              .secret_access_key = conf->secret_access_key,
                              .node_id = self->id};
    if ((rc = http_start(&ho, &n->http, err)))
        goto fail;
    if (opt->unsafe_ack_before_sync)
        log_warn("TEST ONLY: acknowledging writes before fdatasync (--unsafe-ack-before-sync); "
                 "a power loss WILL lose acknowledged writes");
    *out = n;
    return 0;
fail:
    node_stop(n);
    return rc;
}

int node_api_port(const struct node *n)
{
    return http_port(n->http);
}

void node_stop(struct node *n)
{
    if (!n)
        return;
    http_stop(n->http, 10000);
    api_free(n->api);
    catalog_close(n->cat);
    group_host_stop(n->host);
    state_close(n->st);
    free(n);
}
