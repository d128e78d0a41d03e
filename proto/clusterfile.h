/*
 * clusterfile.h — the cluster file: which nodes make up a nines cluster, where
 * each one listens and keeps its data, and the cluster-wide settings.
 *
 * ninesd (--cluster FILE --node ID) and every nines subcommand that talks to
 * a cluster load it with cluster_conf_load. The format, every key, its type
 * and default are in docs/cluster-file.md.
 *
 * What a successful load guarantees (callers need not re-check):
 *   - name matches [A-Za-z0-9_.-]+ (at most 64 bytes); region [A-Za-z0-9-]+;
 *   - auth is CLUSTER_AUTH_NONE (both keys NULL) or CLUSTER_AUTH_SIGV4 (both
 *     keys non-empty);
 *   - 1 <= default_partitions <= 256; wal_segment_size >= 64KiB; map_size >=
 *     1MiB; 1 <= max_tables <= 32767;
 *   - nnodes >= 1; ids, azs and racks match [A-Za-z0-9_.-]+; ids are unique;
 *     no two listeners (api or peer, of any nodes) share one address; ports
 *     are 1..65535; data is an absolute path (a relative one in the file is
 *     resolved against the directory holding the cluster file);
 *   - tls: tls_ca is NULL (no TLS), or tls_ca, tls_certs and every node's
 *     tls_cert and tls_key are absolute paths, and tls_peers or tls_api is
 *     set. The files themselves are read (and checked) by their users.
 *
 * Errors: NERR_IO for a file that cannot be read ("FILE: No such file or
 * directory"); NERR_PARSE for YAML syntax; NERR_INVALID for anything the
 * schema refuses (unknown key, wrong type, bad value, missing key,
 * duplicate); NERR_LIMIT for inputs over lib/yamltree.h's bounds;
 * NERR_NOMEM. The message always starts "FILE:LINE:COL: " when the error has
 * a place in the file, and the first error found is the one reported.
 *
 * Ownership: *out and everything it points to belongs to the caller, who
 * frees it with cluster_conf_free; nothing refers back to the YAML tree.
 * A loaded cluster_conf is immutable and may be read from any thread.
 */
#ifndef NINES_PROTO_CLUSTERFILE_H
#define NINES_PROTO_CLUSTERFILE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

enum cluster_auth { CLUSTER_AUTH_NONE = 0, CLUSTER_AUTH_SIGV4 = 1 };

struct cluster_node {
    char *id, *az, *rack;
    char *api, *peer;           /* as written, "host:port" or "[v6]:port" */
    char *api_host, *peer_host; /* without brackets */
    int api_port, peer_port;
    char *data; /* absolute */
    /* With tls: this node's certificate and key, CERTS/ID.pem and
     * CERTS/ID.key (absolute; not checked for existence here). NULL without. */
    char *tls_cert, *tls_key;
    int line, col; /* where the node's entry starts, for later checks' messages */
};

struct cluster_conf {
    char *path; /* as passed to cluster_conf_load */
    char *name, *region;
    int auth; /* enum cluster_auth */
    char *access_key_id, *secret_access_key;
    int default_partitions;
    uint64_t wal_segment_size, map_size;
    int max_tables;
    int64_t compact_entries; /* log entries kept per replica before a snapshot */
    /* tls (docs/cluster-file.md): NULL tls_ca = no TLS anywhere. Otherwise
     * the CA certificate and the directory of the nodes' certificates
     * (absolute), and which of the two edges use them (at least one). */
    char *tls_ca, *tls_certs;
    int tls_peers, tls_api;
    uint64_t snapshot_rate;  /* bytes a second a node streams snapshots at */
    /* archive (docs/archive.md): NULL archive_url = no archive. */
    char *archive_url;
    uint64_t archive_seal_after_ns;   /* seal a piece at least this often */
    uint64_t archive_piece_size;      /* ... or once it holds this many bytes */
    uint64_t archive_verify_after_ns; /* followers check the upload after this */
    int64_t archive_max_behind;       /* entries kept for the archive at most */
    int64_t archive_snapshot_every;   /* entries between archived snapshots */
    uint64_t archive_retention_ns;    /* how long archived log is kept */
    char *archive_ssh_key, *archive_known_hosts; /* sftp://; absolute; NULL: the defaults */
    /* healing (docs/cluster-file.md): a node silent this long has its
     * partition replicas rebuilt elsewhere (store/healer.h); 0 = off. */
    uint64_t healing_dead_after_ns;
    struct cluster_node *nodes;
    size_t nnodes;
};

/* Defaults for the optional keys. */
#define CLUSTER_DEFAULT_REGION "local"
#define CLUSTER_DEFAULT_PARTITIONS 4
#define CLUSTER_DEFAULT_WAL_SEGMENT_SIZE (64ull << 20)
#define CLUSTER_DEFAULT_MAP_SIZE (16ull << 30)
#define CLUSTER_DEFAULT_MAX_TABLES 256
#define CLUSTER_DEFAULT_COMPACT_ENTRIES 50000
#define CLUSTER_DEFAULT_SNAPSHOT_RATE (100ull << 20)
#define CLUSTER_DEFAULT_ARCHIVE_SEAL_AFTER_NS 10000000000ull /* 10 s */
#define CLUSTER_DEFAULT_ARCHIVE_PIECE_SIZE (4ull << 20)
#define CLUSTER_DEFAULT_ARCHIVE_VERIFY_AFTER_NS 5000000000ull /* 5 s */
#define CLUSTER_DEFAULT_ARCHIVE_MAX_BEHIND 1000000
#define CLUSTER_DEFAULT_ARCHIVE_SNAPSHOT_EVERY 200000
#define CLUSTER_DEFAULT_HEALING_DEAD_AFTER_NS (300ull * 1000000000ull) /* CockroachDB's 5 min */
#define CLUSTER_DEFAULT_ARCHIVE_RETENTION_NS (35ull * 86400 * 1000000000ull) /* DynamoDB's 35 days */

/* Reads, parses and checks the cluster file at path. *out is set only on
 * success. */
int cluster_conf_load(const char *path, struct cluster_conf **out, struct nerr *err);

/* Frees c and everything it owns; NULL is allowed. */
void cluster_conf_free(struct cluster_conf *c);

/* "http://API/" or, with tls api on, "https://API/" into buf; api is a
 * node's api as written ("127.0.0.1:8101"). -1 when it does not fit. */
int cluster_conf_api_url(const struct cluster_conf *c, const char *api, char *buf, size_t cap);

/* The node with this id, or NULL; borrowed until cluster_conf_free. */
const struct cluster_node *cluster_conf_node(const struct cluster_conf *c, const char *id);

#endif
