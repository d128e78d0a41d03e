/*
 * certs.c — see certs.h. OpenSSL's libcrypto API only; no openssl CLI.
 */
#include "cluster/certs.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "lib/fsutil.h"
#include "lib/strbuf.h"

#include <stdarg.h>

/* printf into a strbuf (an allocation failure sticks, as strbuf's own). */
__attribute__((format(printf, 2, 3))) static void sbf(struct strbuf *b, const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    strbuf_add(b, s, (size_t)n);
    free(s);
}

struct certs_ca {
    EVP_PKEY *key;
    X509 *cert;
};

/* The OpenSSL error queue's last reason, emptied. */
static int ossl_fail(struct nerr *err, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char buf[256] = "unknown reason";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    return nerr_set(err, NERR_INTERNAL, "%s: %s", what, buf);
}

static EVP_PKEY *new_key(void)
{
    return EVP_EC_gen("P-256");
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ex)
        return -1;
    int ok = X509_add_ext(cert, ex, -1);
    X509_EXTENSION_free(ex);
    return ok ? 0 : -1;
}

/* A certificate with a random serial, the validity window, subject CN. */
static X509 *new_cert(EVP_PKEY *key, const char *cn, const char *ou, int days)
{
    X509 *x = X509_new();
    BIGNUM *bn = BN_new();
    if (!x || !bn)
        goto fail;
    if (!X509_set_version(x, 2) || !BN_rand(bn, 120, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
        !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
        goto fail;
    /* An hour of slack for clocks a little behind the machine that signed. */
    if (!X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400L))
        goto fail;
    if (!X509_set_pubkey(x, key))
        goto fail;
    X509_NAME *name = X509_get_subject_name(x);
    if (ou && !X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_UTF8, (const unsigned char *)ou, -1,
                                          -1, 0))
        goto fail;
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                    0))
        goto fail;
    BN_free(bn);
    return x;
fail:
    BN_free(bn);
    X509_free(x);
    return NULL;
}

int certs_ca_new(const char *cn, int days, struct certs_ca **out, struct nerr *err)
{
    struct certs_ca *ca = calloc(1, sizeof *ca);
    int rc;
    *out = NULL;
    if (!ca)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    if (!(ca->key = new_key())) {
        rc = ossl_fail(err, "CA key");
        goto fail;
    }
    if (!(ca->cert = new_cert(ca->key, cn, NULL, days)) ||
        !X509_set_issuer_name(ca->cert, X509_get_subject_name(ca->cert)) ||
        add_ext(ca->cert, ca->cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
        add_ext(ca->cert, ca->cert, NID_key_usage, "critical,keyCertSign,cRLSign") ||
        add_ext(ca->cert, ca->cert, NID_subject_key_identifier, "hash") ||
        !X509_sign(ca->cert, ca->key, EVP_sha256())) {
        rc = ossl_fail(err, "CA certificate");
        goto fail;
    }
    *out = ca;
    return 0;
fail:
    certs_ca_free(ca);
    return rc;
}

void certs_ca_free(struct certs_ca *ca)
{
    if (!ca)
        return;
    EVP_PKEY_free(ca->key);
    X509_free(ca->cert);
    free(ca);
}

/* Opens path for writing with exactly this mode, even when it existed with
 * another (a key file left 0644 by hand is tightened). */
static FILE *open_mode(const char *path, mode_t mode, struct nerr *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        nerr_sys(err, errno, "%s", path);
        return NULL;
    }
    if (fchmod(fd, mode) < 0) {
        nerr_sys(err, errno, "%s: chmod", path);
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        nerr_sys(err, errno, "%s", path);
        close(fd);
    }
    return f;
}

static int close_checked(FILE *f, const char *path, int ok, struct nerr *err)
{
    int werr = ferror(f);
    if (fclose(f) != 0 || werr)
        return nerr_sys(err, errno ? errno : EIO, "%s: write", path);
    if (!ok)
        return ossl_fail(err, path);
    return 0;
}

static int write_cert(X509 *x, const char *path, struct nerr *err)
{
    FILE *f = open_mode(path, 0644, err);
    if (!f)
        return err ? err->code : NERR_IO;
    int ok = PEM_write_X509(f, x);
    return close_checked(f, path, ok, err);
}

static int write_key(EVP_PKEY *k, const char *path, struct nerr *err)
{
    FILE *f = open_mode(path, 0600, err);
    if (!f)
        return err ? err->code : NERR_IO;
    int ok = PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    return close_checked(f, path, ok, err);
}

int certs_ca_write(const struct certs_ca *ca, const char *cert_path, const char *key_path,
                   struct nerr *err)
{
    int rc = write_cert(ca->cert, cert_path, err);
    if (!rc && key_path)
        rc = write_key(ca->key, key_path, err);
    return rc;
}

int certs_node_issue(const struct certs_ca *ca, const char *cluster, const char *node_id,
                     const char *const *hosts, size_t nhosts, const char *uri, int days,
                     const char *cert_path, const char *key_path, struct nerr *err)
{
    struct strbuf san = {0};
    char *sans = NULL;
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    int rc;
    if (uri)
        sbf(&san, "URI:%s", uri);
    else
        sbf(&san, "URI:nines://%s/%s", cluster, node_id);
    for (size_t i = 0; i < nhosts; i++) {
        unsigned char a[16];
        int dup = 0;
        for (size_t j = 0; j < i; j++)
            dup |= !strcmp(hosts[i], hosts[j]);
        if (dup)
            continue;
        int ip = inet_pton(AF_INET, hosts[i], a) == 1 || inet_pton(AF_INET6, hosts[i], a) == 1;
        sbf(&san, ",%s:%s", ip ? "IP" : "DNS", hosts[i]);
    }
    if (strbuf_finish(&san, &sans))
        return nerr_set(err, NERR_NOMEM, "out of memory");
    if (!(key = new_key())) {
        rc = ossl_fail(err, "node key");
        goto fail;
    }
    if (!(x = new_cert(key, node_id, cluster, days)) ||
        !X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) ||
        add_ext(x, ca->cert, NID_basic_constraints, "critical,CA:FALSE") ||
        add_ext(x, ca->cert, NID_key_usage, "critical,digitalSignature,keyEncipherment") ||
        add_ext(x, ca->cert, NID_ext_key_usage, "serverAuth,clientAuth") ||
        add_ext(x, ca->cert, NID_authority_key_identifier, "keyid") ||
        add_ext(x, ca->cert, NID_subject_alt_name, sans) || !X509_sign(x, ca->key, EVP_sha256())) {
        rc = ossl_fail(err, "node certificate");
        goto fail;
    }
    if ((rc = write_cert(x, cert_path, err)) || (rc = write_key(key, key_path, err)))
        goto fail;
    rc = 0;
fail:
    free(sans);
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

/* YAML double-quoted scalar of s (paths may hold ':' or '#'). */
static void yq(struct strbuf *b, const char *s)
{
    strbuf_ch(b, '"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            strbuf_ch(b, '\\');
        strbuf_ch(b, *s);
    }
    strbuf_ch(b, '"');
}

int certs_write_cluster_file(const struct cluster_conf *c, const char *path, const char *ca_path,
                             struct nerr *err)
{
    struct strbuf b = {0};
    char *text = NULL;
    sbf(&b,
        "# Written by `nines cluster certs` from %s: the same cluster, with\n"
        "# mutual TLS between the nodes and HTTPS on the API.\n",
        c->path);
    sbf(&b, "cluster: %s\n", c->name);
    if (c->auth == CLUSTER_AUTH_SIGV4) {
        strbuf_str(&b, "auth: {access_key_id: ");
        yq(&b, c->access_key_id);
        strbuf_str(&b, ", secret_access_key: ");
        yq(&b, c->secret_access_key);
        strbuf_str(&b, "}\n");
    } else {
        strbuf_str(&b, "auth: none\n");
    }
    sbf(&b, "region: %s\npartitions: %d\n", c->region, c->default_partitions);
    sbf(&b,
        "storage: {wal_segment_size: %llu, map_size: %llu, max_tables: %d, "
        "compact_entries: %lld, snapshot_rate: %llu}\n",
        (unsigned long long)c->wal_segment_size, (unsigned long long)c->map_size, c->max_tables,
        (long long)c->compact_entries, (unsigned long long)c->snapshot_rate);
    if (c->archive_url) {
        strbuf_str(&b, "archive: {url: ");
        yq(&b, c->archive_url);
        sbf(&b,
            ", seal_after: %llums, piece_size: %llu, verify_after: %llums, max_behind: %lld, "
            "snapshot_every: %lld, retention: %llus",
            (unsigned long long)(c->archive_seal_after_ns / 1000000),
            (unsigned long long)c->archive_piece_size,
            (unsigned long long)(c->archive_verify_after_ns / 1000000),
            (long long)c->archive_max_behind, (long long)c->archive_snapshot_every,
            (unsigned long long)(c->archive_retention_ns / 1000000000ull));
        if (c->archive_ssh_key) {
            strbuf_str(&b, ", ssh_key: ");
            yq(&b, c->archive_ssh_key);
        }
        if (c->archive_known_hosts) {
            strbuf_str(&b, ", known_hosts: ");
            yq(&b, c->archive_known_hosts);
        }
        strbuf_str(&b, "}\n");
    }
    strbuf_str(&b, "tls: {ca: ");
    yq(&b, ca_path);
    strbuf_str(&b, ", peers: true, api: true}\nnodes:\n");
    for (size_t i = 0; i < c->nnodes; i++) {
        const struct cluster_node *n = &c->nodes[i];
        sbf(&b, "  - {id: %s, az: %s, rack: %s, api: \"%s\", peer: \"%s\", data: ", n->id, n->az,
            n->rack, n->api, n->peer);
        yq(&b, n->data);
        strbuf_str(&b, "}\n");
    }
    if (strbuf_finish(&b, &text))
        return nerr_set(err, NERR_NOMEM, "out of memory");
    /* 0600: the file may hold the cluster's secret access key. */
    int rc = fs_write_file(path, text, 0600, err);
    free(text);
    return rc;
}

int certs_make_cluster(const struct cluster_conf *c, const char *dir, struct nerr *err)
{
    struct certs_ca *ca = NULL;
    char p1[4200], p2[4200];
    int rc;
    struct stat sb;
    if (strlen(dir) > 4000)
        return nerr_set(err, NERR_INVALID, "%.60s...: path too long", dir);
    if (stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode))
        return nerr_set(err, NERR_INVALID, "%s: exists and is not a directory", dir);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return nerr_sys(err, errno, "%s: cannot create the output directory", dir);
    if (access(dir, W_OK | X_OK) < 0)
        return nerr_sys(err, errno, "%s: the output directory is not writable", dir);
    char cn[128];
    snprintf(cn, sizeof cn, "nines cluster %s CA", c->name);
    if ((rc = certs_ca_new(cn, 3650, &ca, err)))
        return rc;
    snprintf(p1, sizeof p1, "%s/ca.pem", dir);
    snprintf(p2, sizeof p2, "%s/ca.key", dir);
    if ((rc = certs_ca_write(ca, p1, p2, err)))
        goto fail;
    for (size_t i = 0; i < c->nnodes; i++) {
        const struct cluster_node *n = &c->nodes[i];
        /* The hosts the node is reached on, plus loopback names for local
         * clients of a lab cluster. */
        const char *hosts[2] = {n->api_host, n->peer_host};
        snprintf(p1, sizeof p1, "%s/%s.pem", dir, n->id);
        snprintf(p2, sizeof p2, "%s/%s.key", dir, n->id);
        if ((rc = certs_node_issue(ca, c->name, n->id, hosts, 2, NULL, 825, p1, p2, err)))
            goto fail;
    }
    char abs[PATH_MAX];
    if (!realpath(dir, abs)) {
        rc = nerr_sys(err, errno, "%s", dir);
        goto fail;
    }
    snprintf(p1, sizeof p1, "%s/cluster.yaml", dir);
    snprintf(p2, sizeof p2, "%s/ca.pem", abs);
    rc = certs_write_cluster_file(c, p1, p2, err);
fail:
    certs_ca_free(ca);
    return rc;
}
