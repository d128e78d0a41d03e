/*
 * clusterfile.c — the cluster file's schema, checked on lib/yamltree.
 *
 * Checks run in a fixed order (unknown keys of a mapping before its
 * values), so one file always yields the same first error.
 */
#include "proto/clusterfile.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/yamltree.h"

#define NAME_MAX_LEN 64
#define NAME_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
#define REGION_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-"

static const char *const top_keys[] = {"cluster", "auth",  "region",  "partitions", "storage",
                                       "tls",     "nodes", "archive", "healing",    NULL};
static const char *const healing_keys[] = {"dead_after", NULL};
static const char *const auth_keys[] = {"access_key_id", "secret_access_key", NULL};
static const char *const storage_keys[] = {"wal_segment_size", "map_size",      "max_tables",
                                           "compact_entries",  "snapshot_rate", NULL};
static const char *const archive_keys[] = {"url",         "seal_after",
                                           "piece_size",  "verify_after",
                                           "max_behind",  "snapshot_every",
                                           "retention",   "ssh_key",
                                           "known_hosts", NULL};
static const char *const node_keys[] = {"id", "az", "rack", "api", "peer", "data", NULL};

/* One listener, for the "no two listeners share an address" check. */
struct listener {
    char key[300]; /* canonical host, '|', port */
    const struct yt_node *at;
    const char *node_id, *role;
};

static int nomem(struct nerr *err)
{
    return nerr_set(err, NERR_NOMEM, "out of memory");
}

static int dup_str(const char *s, char **out, struct nerr *err)
{
    if (!(*out = strdup(s)))
        return nomem(err);
    return 0;
}

/* A name used in ARNs, metrics and file names: [A-Za-z0-9_.-]+. */
static int get_name(const struct yt_node *map, const char *key, const char *label, char **out,
                    struct nerr *err)
{
    const struct yt_node *v;
    const char *s;
    char q[256];
    int rc;
    if ((rc = yt_get(map, key, YT_REQUIRED, &v, err)) || (rc = yt_as_str(v, &s, err)))
        return rc;
    size_t len = strlen(s);
    if (len == 0 || len > NAME_MAX_LEN || strspn(s, NAME_CHARS) != len)
        return yt_errf(err, v, "invalid %s %s: use 1 to %d letters, digits, '_', '.' or '-'", label,
                       yt_describe(v, q, sizeof q), NAME_MAX_LEN);
    return dup_str(s, out, err);
}

static int load_auth(const struct yt_node *root, struct cluster_conf *c, struct nerr *err)
{
    const struct yt_node *v;
    const char *id, *secret;
    char d[256];
    int rc;
    if ((rc = yt_get(root, "auth", YT_REQUIRED, &v, err)))
        return rc;
    if (v->kind == YT_SCALAR && !yt_is_null(v) && !strcmp(v->text, "none")) {
        c->auth = CLUSTER_AUTH_NONE;
        return 0;
    }
    if (v->kind != YT_MAP)
        return yt_errf(err, v,
                       "expected 'none' or a mapping with access_key_id and "
                       "secret_access_key, got %s",
                       yt_describe(v, d, sizeof d));
    if ((rc = yt_check_keys(v, auth_keys, err)) ||
        (rc = yt_get_str(v, "access_key_id", YT_REQUIRED, &id, err)))
        return rc;
    if (!*id)
        return yt_errf(err, yt_map_get(v, "access_key_id"), "access_key_id must not be empty");
    if ((rc = yt_get_str(v, "secret_access_key", YT_REQUIRED, &secret, err)))
        return rc;
    if (!*secret)
        return yt_errf(err, yt_map_get(v, "secret_access_key"),
                       "secret_access_key must not be empty");
    c->auth = CLUSTER_AUTH_SIGV4;
    if ((rc = dup_str(id, &c->access_key_id, err)) ||
        (rc = dup_str(secret, &c->secret_access_key, err)))
        return rc;
    return 0;
}

static int load_storage(const struct yt_node *root, struct cluster_conf *c, struct nerr *err)
{
    const struct yt_node *s;
    int64_t v;
    int rc;
    if ((rc = yt_get(root, "storage", YT_OPTIONAL, &s, err)) || !s)
        return rc;
    if ((rc = yt_check_keys(s, storage_keys, err)) ||
        (rc = yt_get_size(s, "wal_segment_size", YT_OPTIONAL, 64ull << 10, 1ull << 30,
                          &c->wal_segment_size, err)) ||
        (rc = yt_get_size(s, "map_size", YT_OPTIONAL, 1ull << 20, 64ull << 40, &c->map_size, err)))
        return rc;
    v = c->max_tables;
    if ((rc = yt_get_int(s, "max_tables", YT_OPTIONAL, 1, 32767, &v, err)))
        return rc;
    c->max_tables = (int)v;
    if ((rc = yt_get_int(s, "compact_entries", YT_OPTIONAL, 100, 100000000, &c->compact_entries,
                         err)))
        return rc;
    if ((rc = yt_get_size(s, "snapshot_rate", YT_OPTIONAL, 1ull << 20, 64ull << 30,
                          &c->snapshot_rate, err)))
        return rc;
    return 0;
}

static int resolve_data(const char *cluster_path, const char *data, char **out, struct nerr *err);

/* healing: {dead_after} (docs/cluster-file.md): "off" or a duration. */
static int load_healing(const struct yt_node *root, struct cluster_conf *c, struct nerr *err)
{
    const struct yt_node *h, *v;
    int rc;
    if ((rc = yt_get(root, "healing", YT_OPTIONAL, &h, err)) || !h)
        return rc;
    if ((rc = yt_check_keys(h, healing_keys, err)) ||
        (rc = yt_get(h, "dead_after", YT_OPTIONAL, &v, err)))
        return rc;
    const char *off = v && v->kind == YT_SCALAR ? v->text : NULL;
    if (off && !strcmp(off, "off")) {
        c->healing_dead_after_ns = 0;
        return 0;
    }
    return yt_get_duration(h, "dead_after", YT_OPTIONAL, 1000000000ull, 30ull * 86400000000000ull,
                           &c->healing_dead_after_ns, err);
}

/* archive: {url, seal_after, piece_size, verify_after, max_behind,
 * snapshot_every, retention, ssh_key, known_hosts} (docs/archive.md). */
static int load_archive(const struct yt_node *root, struct cluster_conf *c, struct nerr *err)
{
    const struct yt_node *a, *u;
    const char *url;
    char q[256];
    int rc;
    if ((rc = yt_get(root, "archive", YT_OPTIONAL, &a, err)) || !a)
        return rc;
    if ((rc = yt_expect_map(a, err)) || (rc = yt_check_keys(a, archive_keys, err)) ||
        (rc = yt_get(a, "url", YT_REQUIRED, &u, err)) || (rc = yt_as_str(u, &url, err)))
        return rc;
    int sftp = !strncmp(url, "sftp://", 7);
    const char *at = sftp ? strchr(url + 7, '@') : NULL, *slash = at ? strchr(at, '/') : NULL;
    if (sftp && (!at || at == url + 7 || !slash || slash == at + 1 || strlen(url) > 1024))
        return yt_errf(err, u, "archive url %s: expected sftp://USER@HOST[:PORT]/ABSOLUTE/DIR",
                       yt_describe(u, q, sizeof q));
    if (!sftp && (strncmp(url, "file:///", 8) || strlen(url) > 1024))
        return yt_errf(err, u,
                       "archive url %s: expected file:///ABSOLUTE/DIR or "
                       "sftp://USER@HOST[:PORT]/ABSOLUTE/DIR",
                       yt_describe(u, q, sizeof q));
    /* sftp://: the private key and known_hosts ninesd uses (relative to
     * the cluster file); strict host keys, never learnt (archive.h). */
    const char *kp = NULL, *khp = NULL;
    if ((rc = yt_get_str(a, "ssh_key", YT_OPTIONAL, &kp, err)) ||
        (rc = yt_get_str(a, "known_hosts", YT_OPTIONAL, &khp, err)))
        return rc;
    if (!sftp && (kp || khp))
        return yt_errf(err, yt_map_key(a, kp ? "ssh_key" : "known_hosts"),
                       "%s is for sftp:// archives only", kp ? "ssh_key" : "known_hosts");
    if ((kp && (rc = resolve_data(c->path, kp, &c->archive_ssh_key, err))) ||
        (khp && (rc = resolve_data(c->path, khp, &c->archive_known_hosts, err))))
        return rc;
    if ((rc = dup_str(url, &c->archive_url, err)) ||
        (rc = yt_get_duration(a, "seal_after", YT_OPTIONAL, 100000000ull, 86400000000000ull,
                              &c->archive_seal_after_ns, err)) ||
        (rc = yt_get_size(a, "piece_size", YT_OPTIONAL, 4096, 256ull << 20, &c->archive_piece_size,
                          err)) ||
        (rc = yt_get_duration(a, "verify_after", YT_OPTIONAL, 100000000ull, 86400000000000ull,
                              &c->archive_verify_after_ns, err)) ||
        (rc = yt_get_int(a, "max_behind", YT_OPTIONAL, 1000, 1000000000, &c->archive_max_behind,
                         err)) ||
        (rc = yt_get_int(a, "snapshot_every", YT_OPTIONAL, 100, 1000000000,
                         &c->archive_snapshot_every, err)) ||
        (rc = yt_get_duration(a, "retention", YT_OPTIONAL, 1000000000ull,
                              3650ull * 86400 * 1000000000ull, &c->archive_retention_ns, err)))
        return rc;
    return 0;
}

/* A relative data directory is relative to the cluster file, not to the
 * working directory, so one file means the same wherever ninesd starts. */
static int resolve_data(const char *cluster_path, const char *data, char **out, struct nerr *err)
{
    char *copy = NULL, real[PATH_MAX];
    int rc = 0;
    if (data[0] == '/')
        return dup_str(data, out, err);
    if (!(copy = strdup(cluster_path)))
        return nomem(err);
    if (!realpath(dirname(copy), real)) {
        rc = nerr_sys(err, errno, "%s: cannot resolve its directory", cluster_path);
        goto fail;
    }
    while (data[0] == '.' && data[1] == '/')
        for (data += 2; *data == '/'; data++)
            ;
    if (asprintf(out, "%s%s%s", real, strcmp(real, "/") ? "/" : "", data) < 0) {
        *out = NULL;
        rc = nomem(err);
    }
fail:
    free(copy);
    return rc;
}

/* The tls block (docs/cluster-file.md, "tls"): the CA, the directory of
 * the nodes' certificates and keys, and what runs over TLS. Paths resolve
 * like data: against the cluster file's directory. */
static const char *const tls_keys[] = {"ca", "certs", "peers", "api", NULL};

static int load_tls(const struct yt_node *root, struct cluster_conf *c, struct nerr *err)
{
    const struct yt_node *t;
    const char *ca, *certs = NULL;
    int rc, peers = 1, api = 1;
    if ((rc = yt_get(root, "tls", YT_OPTIONAL, &t, err)) || !t)
        return rc;
    if ((rc = yt_expect_map(t, err)) || (rc = yt_check_keys(t, tls_keys, err)) ||
        (rc = yt_get_str(t, "ca", YT_REQUIRED, &ca, err)) ||
        (rc = yt_get_str(t, "certs", YT_OPTIONAL, &certs, err)) ||
        (rc = yt_get_bool(t, "peers", YT_OPTIONAL, &peers, err)) ||
        (rc = yt_get_bool(t, "api", YT_OPTIONAL, &api, err)))
        return rc;
    if (!*ca)
        return yt_errf(err, yt_map_get(t, "ca"), "ca must not be empty");
    if (certs && !*certs)
        return yt_errf(err, yt_map_get(t, "certs"), "certs must not be empty");
    if (!peers && !api)
        return yt_errf(err, t,
                       "tls with peers: false and api: false turns nothing on; "
                       "remove the tls block instead");
    if ((rc = resolve_data(c->path, ca, &c->tls_ca, err)))
        return rc;
    if (certs)
        rc = resolve_data(c->path, certs, &c->tls_certs, err);
    else {
        /* The certificates live next to the CA unless told otherwise. */
        char *copy = strdup(c->tls_ca);
        if (!copy)
            return nomem(err);
        rc = dup_str(dirname(copy), &c->tls_certs, err);
        free(copy);
    }
    if (rc)
        return rc;
    c->tls_peers = peers;
    c->tls_api = api;
    return 0;
}

/* Each node's certificate and key: CERTS/ID.pem and CERTS/ID.key. */
static int tls_node_files(struct cluster_conf *c, struct nerr *err)
{
    if (!c->tls_ca)
        return 0;
    for (size_t i = 0; i < c->nnodes; i++) {
        struct cluster_node *n = &c->nodes[i];
        if (asprintf(&n->tls_cert, "%s/%s.pem", c->tls_certs, n->id) < 0) {
            n->tls_cert = NULL;
            return nomem(err);
        }
        if (asprintf(&n->tls_key, "%s/%s.key", c->tls_certs, n->id) < 0) {
            n->tls_key = NULL;
            return nomem(err);
        }
    }
    return 0;
}

static int add_listener(struct listener *ls, size_t *n, const struct yt_node *at,
                        const struct yt_hostport *hp, const char *node_id, const char *role,
                        struct nerr *err)
{
    struct listener *l = &ls[*n];
    char host[256];
    unsigned char addr[16];
    /* Spell each address one way, so 127.0.0.1 and [::1] forms that differ
     * only in writing ([::0001]) still collide. */
    if (hp->family && inet_pton(hp->family == 6 ? AF_INET6 : AF_INET, hp->host, addr) == 1)
        inet_ntop(hp->family == 6 ? AF_INET6 : AF_INET, addr, host, sizeof host);
    else
        for (size_t i = 0; i < sizeof host; i++)
            if (!(host[i] = (char)tolower((unsigned char)hp->host[i])))
                break;
    snprintf(l->key, sizeof l->key, "%s|%d", host, hp->port);
    for (size_t i = 0; i < *n; i++)
        if (!strcmp(ls[i].key, l->key))
            return yt_errf(err, at,
                           "address '%s' is already used by node %s's %s (line %d, column %d)",
                           at->text, ls[i].node_id, ls[i].role, ls[i].at->line, ls[i].at->col);
    l->at = at;
    l->node_id = node_id;
    l->role = role;
    (*n)++;
    return 0;
}

static int load_node(const struct yt_node *item, struct cluster_conf *c, struct cluster_node *n,
                     struct listener *ls, size_t *nls, struct nerr *err)
{
    struct yt_hostport api, peer;
    const char *data;
    int rc;
    if ((rc = yt_expect_map(item, err)) || (rc = yt_check_keys(item, node_keys, err)) ||
        (rc = get_name(item, "id", "node id", &n->id, err)))
        return rc;
    n->line = item->line;
    n->col = item->col;
    for (size_t i = 0; c->nodes + i < n; i++)
        if (!strcmp(c->nodes[i].id, n->id))
            return yt_errf(err, yt_map_get(item, "id"),
                           "duplicate node id '%s' (the node at line %d, column %d has it too)",
                           n->id, c->nodes[i].line, c->nodes[i].col);
    if ((rc = get_name(item, "az", "az", &n->az, err)) ||
        (rc = get_name(item, "rack", "rack", &n->rack, err)) ||
        (rc = yt_get_hostport(item, "api", YT_REQUIRED, &api, err)) ||
        (rc = add_listener(ls, nls, yt_map_get(item, "api"), &api, n->id, "api", err)) ||
        (rc = yt_get_hostport(item, "peer", YT_REQUIRED, &peer, err)) ||
        (rc = add_listener(ls, nls, yt_map_get(item, "peer"), &peer, n->id, "peer", err)) ||
        (rc = yt_get_str(item, "data", YT_REQUIRED, &data, err)))
        return rc;
    if (!*data)
        return yt_errf(err, yt_map_get(item, "data"), "data must not be empty");
    if ((rc = dup_str(yt_map_get(item, "api")->text, &n->api, err)) ||
        (rc = dup_str(yt_map_get(item, "peer")->text, &n->peer, err)) ||
        (rc = dup_str(api.host, &n->api_host, err)) ||
        (rc = dup_str(peer.host, &n->peer_host, err)) ||
        (rc = resolve_data(c->path, data, &n->data, err)))
        return rc;
    n->api_port = api.port;
    n->peer_port = peer.port;
    return 0;
}

static int load_nodes(const struct yt_node *root, struct cluster_conf *c, struct nerr *err)
{
    const struct yt_node *seq;
    struct listener *ls = NULL;
    size_t nls = 0;
    int rc;
    if ((rc = yt_get(root, "nodes", YT_REQUIRED, &seq, err)) || (rc = yt_expect_seq(seq, err)))
        return rc;
    if (seq->n == 0)
        return yt_errf(err, seq, "a cluster needs at least one node");
    if (!(c->nodes = calloc(seq->n, sizeof *c->nodes)) || !(ls = calloc(seq->n * 2, sizeof *ls))) {
        rc = nomem(err);
        goto fail;
    }
    for (size_t i = 0; i < seq->n; i++) {
        /* nnodes counts entries that may own memory, for cluster_conf_free. */
        c->nnodes = i + 1;
        if ((rc = load_node(seq->items[i], c, &c->nodes[i], ls, &nls, err)))
            goto fail;
    }
fail:
    free(ls);
    return rc;
}

static int load(const struct yt_node *root, struct cluster_conf *c, struct nerr *err)
{
    const char *region = CLUSTER_DEFAULT_REGION;
    const struct yt_node *v;
    int64_t parts = CLUSTER_DEFAULT_PARTITIONS;
    int rc;
    if ((rc = yt_check_keys(root, top_keys, err)) ||
        (rc = get_name(root, "cluster", "cluster name", &c->name, err)) ||
        (rc = load_auth(root, c, err)) || (rc = yt_get(root, "region", YT_OPTIONAL, &v, err)))
        return rc;
    if (v) {
        size_t len;
        char q[256];
        if ((rc = yt_as_str(v, &region, err)))
            return rc;
        len = strlen(region);
        if (len == 0 || len > NAME_MAX_LEN || strspn(region, REGION_CHARS) != len)
            return yt_errf(err, v, "invalid region %s: use 1 to %d letters, digits or '-'",
                           yt_describe(v, q, sizeof q), NAME_MAX_LEN);
    }
    if ((rc = dup_str(region, &c->region, err)) ||
        (rc = yt_get_int(root, "partitions", YT_OPTIONAL, 1, 256, &parts, err)))
        return rc;
    c->default_partitions = (int)parts;
    if ((rc = load_storage(root, c, err)) || (rc = load_archive(root, c, err)) ||
        (rc = load_healing(root, c, err)) || (rc = load_tls(root, c, err)) ||
        (rc = load_nodes(root, c, err)) || (rc = tls_node_files(c, err)))
        return rc;
    return 0;
}

int cluster_conf_load(const char *path, struct cluster_conf **out, struct nerr *err)
{
    struct yt_doc *doc = NULL;
    struct cluster_conf *c = calloc(1, sizeof *c);
    int rc;
    if (!c)
        return nomem(err);
    c->wal_segment_size = CLUSTER_DEFAULT_WAL_SEGMENT_SIZE;
    c->map_size = CLUSTER_DEFAULT_MAP_SIZE;
    c->max_tables = CLUSTER_DEFAULT_MAX_TABLES;
    c->compact_entries = CLUSTER_DEFAULT_COMPACT_ENTRIES;
    c->snapshot_rate = CLUSTER_DEFAULT_SNAPSHOT_RATE;
    c->archive_seal_after_ns = CLUSTER_DEFAULT_ARCHIVE_SEAL_AFTER_NS;
    c->archive_piece_size = CLUSTER_DEFAULT_ARCHIVE_PIECE_SIZE;
    c->archive_verify_after_ns = CLUSTER_DEFAULT_ARCHIVE_VERIFY_AFTER_NS;
    c->archive_max_behind = CLUSTER_DEFAULT_ARCHIVE_MAX_BEHIND;
    c->archive_snapshot_every = CLUSTER_DEFAULT_ARCHIVE_SNAPSHOT_EVERY;
    c->archive_retention_ns = CLUSTER_DEFAULT_ARCHIVE_RETENTION_NS;
    c->healing_dead_after_ns = CLUSTER_DEFAULT_HEALING_DEAD_AFTER_NS;
    if ((rc = dup_str(path, &c->path, err)) || (rc = yt_load_file(path, &doc, err)) ||
        (rc = load(yt_root(doc), c, err)))
        goto fail;
    yt_free(doc);
    *out = c;
    return 0;
fail:
    yt_free(doc);
    cluster_conf_free(c);
    return rc;
}

void cluster_conf_free(struct cluster_conf *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nnodes; i++) {
        struct cluster_node *n = &c->nodes[i];
        free(n->id);
        free(n->az);
        free(n->rack);
        free(n->api);
        free(n->peer);
        free(n->api_host);
        free(n->peer_host);
        free(n->data);
        free(n->tls_cert);
        free(n->tls_key);
    }
    free(c->nodes);
    free(c->path);
    free(c->name);
    free(c->region);
    free(c->tls_ca);
    free(c->archive_url);
    free(c->archive_ssh_key);
    free(c->archive_known_hosts);
    free(c->tls_certs);
    free(c->access_key_id);
    if (c->secret_access_key) /* not left behind in freed heap */
        explicit_bzero(c->secret_access_key, strlen(c->secret_access_key));
    free(c->secret_access_key);
    free(c);
}

const struct cluster_node *cluster_conf_node(const struct cluster_conf *c, const char *id)
{
    for (size_t i = 0; i < c->nnodes; i++)
        if (!strcmp(c->nodes[i].id, id))
            return &c->nodes[i];
    return NULL;
}

int cluster_conf_api_url(const struct cluster_conf *c, const char *api, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s://%s/", c->tls_api ? "https" : "http", api);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}
