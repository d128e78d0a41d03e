#include "store/node.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/fsutil.h"
#include "lib/log.h"
#include "store/api.h"
#include "store/archiver.h"
#include "store/catalog.h"
#include "store/healer.h"
#include "store/group.h"
#include "store/http.h"
#include "store/state.h"
#include "store/forward.h"
#include "store/transport.h"

#define MAX_PARTITIONS 1024

struct node {
    const struct cluster_node *self;
    struct state *st;
    struct group_host *host;
    struct transport *tp;
    struct fwd *fwd;
    struct catalog *cat;
    struct archiver *arch;
    struct healer *heal;
    struct api *api;
    struct http_server *http;
};

/* The group directories (HARDSTATE, SNAPSHOT) were <data>/wal/<group>/
 * before December 2026, a name left from when each group had a WAL of its
 * own. Such a data directory is carried over by one atomic rename. */
static int groups_dir_upgrade(const char *data, struct nerr *err)
{
    char old[PATH_MAX], cur[PATH_MAX];
    struct stat st;
    if (snprintf(old, sizeof old, "%s/wal", data) >= (int)sizeof old ||
        snprintf(cur, sizeof cur, "%s/groups", data) >= (int)sizeof cur)
        return nerr_set(err, NERR_INVALID, "data path too long");
    if (lstat(old, &st) != 0)
        return errno == ENOENT ? 0 : nerr_sys(err, errno, "%s", old);
    if (lstat(cur, &st) == 0)
        return nerr_set(err, NERR_CORRUPT,
                        "%s and %s both exist: %s is the old name of %s; remove the one "
                        "that does not hold this node's groups",
                        old, cur, old, cur);
    if (rename(old, cur) != 0)
        return nerr_sys(err, errno, "rename %s to %s", old, cur);
    log_info("moved %s to %s (the group directories' new name)", old, cur);
    return fs_fsync_dir(data, err);
}

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

static int tp_send(void *arg, const char *to, uint64_t gid, const void *msg, size_t len)
{
    struct node *n = arg;
    return n->tp ? transport_send(n->tp, to, gid, msg, len) : NERR_CLOSED;
}

static void tp_recv(void *arg, const char *from, uint64_t gid, const void *msg, size_t len)
{
    struct node *n = arg;
    group_host_recv(n->host, from, gid, msg, len);
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
    if ((rc = fs_mkdir_p(self->data, err)) || (rc = claim_data_dir(conf, self, err)) ||
        (rc = groups_dir_upgrade(self->data, err)))
        goto fail;
    snprintf(path, sizeof path, "%s/state", self->data);
    struct state_options so = {.map_size = conf->map_size,
                               .max_dbs = conf->max_tables * 8 + 64,
                               .unsafe_no_sync = opt->unsafe_ack_before_sync};
    if ((rc = state_open(path, &so, &n->st, err)))
        goto fail;
    /* E = 300 ms, heartbeats every 30 ms: a saturated 2-core machine stalls
     * a node's driver for 100-300 ms (docs/replication.md, "Elections under
     * load"); E = 100 ms made elections without any fault. */
    struct group_timing gt = {.election_ticks = 30,
                              .heartbeat_ticks = 3,
                              .compact_entries = (uint64_t)conf->compact_entries,
                              .snapshot_rate = conf->snapshot_rate};
    /* Idle groups sleep after 2E (raft.h, "Quiescence"); NINES_NO_QUIESCE=1
     * keeps every group ticking (for comparisons: t/bench/scale.sh). */
    const char *nq = getenv("NINES_NO_QUIESCE");
    if (nq && *nq && strcmp(nq, "0"))
        gt.quiesce_ticks = GROUP_QUIESCE_NEVER;
    struct wal_options wo = {.segment_bytes = conf->wal_segment_size,
                             .unsafe_ack_before_sync = opt->unsafe_ack_before_sync};
    snprintf(path, sizeof path, "%s/log", self->data);
    if ((rc = group_host_start(n->st, path, &wo, &gt, conf->nnodes > 1 ? tp_send : NULL, n,
                               &n->host, err)))
        goto fail;
    /* With an archive, partitions keep their log until it is archived
     * (archiver.h): set before any partition opens. */
    group_host_hold_logs(n->host, conf->archive_url != NULL);
    if (conf->nnodes > 1) {
        struct transport_peer *peers = calloc(conf->nnodes, sizeof *peers);
        if (!peers) {
            rc = nerr_set(err, NERR_NOMEM, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < conf->nnodes; i++)
            peers[i] = (struct transport_peer){conf->nodes[i].id, conf->nodes[i].peer_host,
                                               conf->nodes[i].peer_port};
        struct transport_options to = {.cluster = conf->name,
                                       .self_id = self->id,
                                       .listen_host = self->peer_host,
                                       .listen_port = self->peer_port,
                                       .peers = peers,
                                       .npeers = conf->nnodes,
                                       .on_recv = tp_recv,
                                       .arg = n};
        struct transport_tls tt = {conf->tls_ca, self->tls_cert, self->tls_key};
        if (conf->tls_peers)
            to.tls = &tt;
        rc = transport_start(&to, &n->tp, err);
        free(peers);
        if (rc)
            goto fail;
    }
    struct catalog_options co = {.conf = conf,
                                 .self_id = self->id,
                                 .data_dir = self->data,
                                 .wal_segment_size = conf->wal_segment_size,
                                 .unsafe_ack_before_sync = opt->unsafe_ack_before_sync,
                                 .max_partitions = MAX_PARTITIONS,
                                 .max_dbs = so.max_dbs};
    if ((rc = catalog_open(n->host, &co, &n->cat, err)))
        goto fail;
    if (conf->archive_url) {
        struct archiver_options ar = {.url = conf->archive_url,
                                      .self_id = self->id,
                                      .seal_after_ns = conf->archive_seal_after_ns,
                                      .piece_size = conf->archive_piece_size,
                                      .verify_after_ns = conf->archive_verify_after_ns,
                                      .max_behind = (uint64_t)conf->archive_max_behind,
                                      .snapshot_every = (uint64_t)conf->archive_snapshot_every,
                                      .retention_ns = conf->archive_retention_ns};
        if ((rc = archiver_start(&ar, n->cat, &n->arch, err)))
            goto fail;
        catalog_set_archiver(n->cat, n->arch);
    }
    if (conf->nnodes > 1 && (rc = healer_start(n->cat, conf, self->id, &n->heal, err)))
        goto fail;
    {
        /* Also in a one-node cluster: its timers retry requests while a
         * group is busy (docs/replication.md, "Routing"). */
        struct fwd_options fo = {.access_key_id =
                                     conf->auth == CLUSTER_AUTH_SIGV4 ? conf->access_key_id : NULL,
                                 .secret_access_key = conf->secret_access_key,
                                 .region = conf->region};
        /* Another node's API is HTTPS when the cluster's is; this node
         * shows its own certificate there (forward.h). */
        if (conf->tls_api) {
            fo.https = 1;
            fo.ca_file = conf->tls_ca;
            fo.cert_file = self->tls_cert;
            fo.key_file = self->tls_key;
        }
        if ((rc = fwd_start(&fo, &n->fwd, err)))
            goto fail;
    }
    struct api_options ao = {.cat = n->cat,
                             .conf = conf,
                             .self_id = self->id,
                             .fwd = n->fwd,
                             .host = n->host,
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
    if (conf->tls_api) {
        ho.tls_cert_file = self->tls_cert;
        ho.tls_key_file = self->tls_key;
    }
    if ((rc = http_start(&ho, &n->http, err)))
        goto fail;
    if (opt->unsafe_ack_before_sync)
        log_warn("TEST ONLY: acknowledging writes before fdatasync, which follows every %d ms "
                 "(--unsafe-ack-before-sync); a power loss WILL lose acknowledged writes",
                 WAL_UNSAFE_SYNC_MS);
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
    fwd_stop(n->fwd);
    api_free(n->api);
    healer_stop(n->heal);   /* before the groups close: it proposes to them */
    archiver_stop(n->arch); /* its thread: before the groups close */
    catalog_close(n->cat);
    archiver_free(n->arch); /* after: an applier may still report a seal until then */
    /* Stop receiving before the host goes away, but free the transport only
     * after: the host's driver still sends (liveness) until it stops, and
     * a send to a freed transport was a use-after-free (ASan, at stop). */
    transport_halt(n->tp);
    group_host_stop(n->host);
    transport_stop(n->tp);
    state_close(n->st);
    free(n);
}
