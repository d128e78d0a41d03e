/*
 * certs.h — a private certificate authority for one nines cluster: `nines
 * cluster certs --config FILE --out DIR` (docs/cluster-file.md, "tls"), and
 * the tests that need certificates of their own (forged peers).
 *
 * What a node certificate says (what ninesd checks, docs/transport.md):
 *   - it is signed by the cluster's CA (one level: no intermediates);
 *   - its subjectAltName holds exactly one URI nines://CLUSTER/NODE — the
 *     node's identity; a peer is who its certificate says, not who its
 *     HELLO says — plus the IP addresses or DNS names the node listens on,
 *     so that HTTPS clients (the AWS CLI, libcurl) verify the API's host;
 *   - its extended key usage allows both TLS server and client, since a
 *     node accepts and opens peer connections with the same certificate.
 * Keys are ECDSA P-256 (fast handshakes; the suite's nodes handshake
 * often). Key files are created 0600, certificates 0644.
 *
 * Ownership: a struct certs_ca is the caller's (certs_ca_free). Errors:
 * NERR_IO (files, naming the path and the system's reason), NERR_INVALID
 * (bad arguments, an unusable cluster file), NERR_INTERNAL (OpenSSL refused:
 * its reason is in the message). Not thread-safe in any interesting way:
 * one caller at a time per struct.
 */
#ifndef NINES_CLUSTER_CERTS_H
#define NINES_CLUSTER_CERTS_H

#include <stddef.h>

#include "lib/err.h"
#include "proto/clusterfile.h"

struct certs_ca;

/* A new CA: a fresh key and a self-signed certificate with this common name,
 * valid from an hour ago for `days` days. */
int certs_ca_new(const char *cn, int days, struct certs_ca **out, struct nerr *err);

/* Writes the CA's certificate (0644) and, when key_path is not NULL, its key
 * (0600), replacing files that exist. */
int certs_ca_write(const struct certs_ca *ca, const char *cert_path, const char *key_path,
                   struct nerr *err);

/* Issues a node certificate for nines://cluster/node_id, signed by ca, with
 * the given hosts (numeric IPv4/IPv6 addresses or DNS names) as further
 * subjectAltNames, valid `days` days; writes it (0644) and its new key
 * (0600). uri may override the identity URI verbatim (tests forge odd
 * ones); NULL for the standard one. */
int certs_node_issue(const struct certs_ca *ca, const char *cluster, const char *node_id,
                     const char *const *hosts, size_t nhosts, const char *uri, int days,
                     const char *cert_path, const char *key_path, struct nerr *err);

void certs_ca_free(struct certs_ca *ca);

/* Everything `nines cluster certs` does: DIR/ca.pem, DIR/ca.key, DIR/ID.pem
 * and DIR/ID.key for every node of c, and DIR/cluster.yaml — c with
 * `tls: {ca: ca.pem}` (peers and API over TLS). DIR is created (0700) when
 * missing. */
int certs_make_cluster(const struct cluster_conf *c, const char *dir, struct nerr *err);

/* Writes c as a cluster file to path, with a tls block naming ca_path (and
 * the nodes' certificates next to it). Keys the loader knows are written
 * with their loaded values; data paths are written absolute. */
int certs_write_cluster_file(const struct cluster_conf *c, const char *path, const char *ca_path,
                             struct nerr *err);

#endif
