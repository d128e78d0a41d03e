/*
 * sftpobj.c — archive objects on an SSH server (sftp:// URLs; sftpobj.h).
 * The objects are files under the URL's directory, laid out as with
 * file:// (archive.h); net/ssh.h does the SSH and the SFTP.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive/archive.h"
#include "archive/sftpobj.h"
#include "net/ssh.h"

#define SFTPOBJ_CONNECT_MS 10000
#define SFTPOBJ_IO_MS 30000
#define SFTPOBJ_DEPTH 8 /* as the file backend's walk */

struct sftpobj {
    char *url;
    char *user, *host, *root; /* root: absolute, no trailing '/' (but "/") */
    int port;
    char *key_path, *known_hosts;
    struct ssh_session *s; /* NULL or DEAD: connect on the next call */
};

/* Prefixes err's message with the URL, so that every error names it. */
static int with_url(struct sftpobj *o, int rc, struct nerr *err)
{
    if (rc && err && err->code == rc) {
        char prev[NERR_MSG_MAX];
        snprintf(prev, sizeof prev, "%s", err->msg);
        nerr_set(err, rc, "%.200s: %.300s", o->url, prev);
    }
    return rc;
}

static char *dup_n(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

/* sftp://user@host[:port]/absolute/path (host may be [IPv6]); no password,
 * no percent-encoding, no ".." component. */
static int parse_url(struct sftpobj *o, const char *url, struct nerr *err)
{
    const char *p = url + 7, *at = strchr(p, '@'), *slash = strchr(p, '/');
    if (!at || at == p || (slash && slash < at))
        return nerr_set(err, NERR_INVALID,
                        "'%s' is not an sftp archive URL: sftp://user@host[:port]/absolute/dir",
                        url);
    if (memchr(p, ':', (size_t)(at - p)))
        return nerr_set(err, NERR_INVALID,
                        "%s: no password in an archive URL (public-key authentication only)", url);
    const char *h = at + 1, *hend, *rest;
    if (*h == '[') {
        hend = strchr(h, ']');
        if (!hend)
            return nerr_set(err, NERR_INVALID, "%s: unterminated [IPv6 address]", url);
        h++;
        rest = hend + 1;
    } else {
        hend = h + strcspn(h, ":/");
        rest = hend;
    }
    if (hend == h)
        return nerr_set(err, NERR_INVALID, "%s: no host", url);
    o->port = 22;
    if (*rest == ':') {
        char *end;
        long port = strtol(rest + 1, &end, 10);
        if (end == rest + 1 || port < 1 || port > 65535 || *end != '/')
            return nerr_set(err, NERR_INVALID, "%s: bad port (1..65535)", url);
        o->port = (int)port;
        rest = end;
    }
    if (*rest != '/')
        return nerr_set(err, NERR_INVALID, "%s: no absolute path after the host", url);
    size_t plen = strlen(rest);
    if (plen >= PATH_MAX - ARCHIVE_MAX_NAME - 80)
        return nerr_set(err, NERR_INVALID, "%s: path too long", url);
    if (strstr(rest, "/../") || (plen >= 3 && !strcmp(rest + plen - 3, "/..")))
        return nerr_set(err, NERR_INVALID, "%s: no '..' in an archive path", url);
    while (plen > 1 && rest[plen - 1] == '/')
        plen--;
    if (!(o->user = dup_n(p, (size_t)(at - p))) || !(o->host = dup_n(h, (size_t)(hend - h))) ||
        !(o->root = dup_n(rest, plen)))
        return nerr_set(err, NERR_NOMEM, "out of memory");
    return 0;
}

/* A live session: the kept one, or a new one when there is none or it died. */
static int session(struct sftpobj *o, struct nerr *err)
{
    if (o->s && !ssh_session_dead(o->s))
        return 0;
    ssh_close(o->s);
    o->s = NULL;
    struct ssh_host_opts opts = {.host = o->host,
                                 .port = o->port,
                                 .user = o->user,
                                 .key_path = o->key_path,
                                 .known_hosts = o->known_hosts,
                                 .hostkey_policy = SSH_HOSTKEY_STRICT,
                                 .connect_timeout_ms = SFTPOBJ_CONNECT_MS,
                                 .io_timeout_ms = SFTPOBJ_IO_MS};
    return with_url(o, ssh_connect(&opts, &o->s, err), err);
}

/* ROOT/name into buf. */
static int path_of(struct sftpobj *o, const char *name, char *buf, size_t cap, struct nerr *err)
{
    int n = snprintf(buf, cap, "%s%s%s", o->root, strcmp(o->root, "/") ? "/" : "", name);
    if (n < 0 || (size_t)n >= cap)
        return nerr_set(err, NERR_LIMIT, "%s/%s: path too long", o->url, name);
    return 0;
}

int sftpobj_open(const char *url, int create, const char *key_path, const char *known_hosts,
                 struct sftpobj **out, struct nerr *err)
{
    *out = NULL;
    struct sftpobj *o = calloc(1, sizeof *o);
    if (!o)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    int rc = 0;
    if (!(o->url = strdup(url)) || !(o->key_path = strdup(key_path)) ||
        !(o->known_hosts = strdup(known_hosts))) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = parse_url(o, url, err)) || (rc = session(o, err)))
        goto fail;
    if (create) {
        rc = with_url(o, ssh_sftp_mkdirs(o->s, o->root, 0755, err), err);
    } else {
        struct ssh_sftp_attrs st;
        rc = ssh_sftp_stat(o->s, o->root, &st, err);
        if (rc == NERR_NOTFOUND || (rc == 0 && st.type != SSH_FT_DIR))
            rc = nerr_set(err, NERR_NOTFOUND, "%s: no archive there (no such directory)", url);
        else
            with_url(o, rc, err);
    }
    if (rc)
        goto fail;
    *out = o;
    return 0;
fail:
    sftpobj_close(o);
    return rc;
}

void sftpobj_close(struct sftpobj *o)
{
    if (!o)
        return;
    ssh_close(o->s);
    free(o->url);
    free(o->user);
    free(o->host);
    free(o->root);
    free(o->key_path);
    free(o->known_hosts);
    free(o);
}

int sftpobj_put(struct sftpobj *o, const char *name, const void *buf, size_t len, struct nerr *err)
{
    char path[PATH_MAX];
    int rc = path_of(o, name, path, sizeof path, err);
    if (rc || (rc = session(o, err)))
        return rc;
    rc = ssh_sftp_put(o->s, path, buf, len, 0644, err);
    if (rc == NERR_NOTFOUND) {
        /* The object's directory does not exist yet: make it and retry. A
         * directory first looked for costs a round trip on every put. */
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", path);
        *strrchr(dir, '/') = 0;
        if (!*dir)
            snprintf(dir, sizeof dir, "/");
        rc = ssh_sftp_mkdirs(o->s, dir, 0755, err);
        if (!rc)
            rc = ssh_sftp_put(o->s, path, buf, len, 0644, err);
    }
    return with_url(o, rc, err);
}

int sftpobj_get(struct sftpobj *o, const char *name, size_t max, unsigned char **buf, size_t *len,
                struct nerr *err)
{
    *buf = NULL;
    *len = 0;
    char path[PATH_MAX];
    int rc = path_of(o, name, path, sizeof path, err);
    if (rc || (rc = session(o, err)))
        return rc;
    /* The same verdicts, in the same words, as the file backend. */
    struct ssh_sftp_attrs st;
    rc = ssh_sftp_stat(o->s, path, &st, err);
    if (rc == NERR_NOTFOUND)
        return nerr_set(err, NERR_NOTFOUND, "%s: no such object", name);
    if (rc)
        return with_url(o, rc, err);
    if (st.type != SSH_FT_REG)
        return nerr_set(err, NERR_CORRUPT, "%s: not a regular file", name);
    if (st.size > max)
        return nerr_set(err, NERR_LIMIT, "%s: %llu bytes, over the %zu limit", name, st.size, max);
    rc = ssh_sftp_get(o->s, path, max, buf, len, err);
    if (rc == NERR_NOTFOUND) /* removed since the stat */
        return nerr_set(err, NERR_NOTFOUND, "%s: no such object", name);
    return with_url(o, rc, err);
}

int sftpobj_remove(struct sftpobj *o, const char *name, struct nerr *err)
{
    char path[PATH_MAX];
    int rc = path_of(o, name, path, sizeof path, err);
    if (rc || (rc = session(o, err)))
        return rc;
    rc = ssh_sftp_remove(o->s, path, err);
    if (rc == NERR_NOTFOUND)
        return nerr_set(err, NERR_NOTFOUND, "%s: no such object", name);
    if (rc)
        return with_url(o, rc, err);
    *strrchr(path, '/') = 0;
    return with_url(o, ssh_sftp_fsync(o->s, *path ? path : "/", err), err);
}

/* Walks ROOT/rel depth first; every non-directory is a name. */
static int walk(struct sftpobj *o, const char *rel, int depth, sftpobj_name_fn add, void *arg,
                struct nerr *err)
{
    char path[PATH_MAX];
    int rc = *rel ? path_of(o, rel, path, sizeof path, err)
                  : (snprintf(path, sizeof path, "%s", o->root), 0);
    if (rc)
        return rc;
    struct ssh_dirent *v = NULL;
    size_t n = 0;
    if ((rc = ssh_sftp_list(o->s, path, &v, &n, err)))
        return with_url(o, rc, err);
    for (size_t i = 0; !rc && i < n; i++) {
        char sub[PATH_MAX];
        if (snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", v[i].name) >=
            (int)sizeof sub) {
            rc = nerr_set(err, NERR_LIMIT, "%s/%s: path too long", path, v[i].name);
            break;
        }
        if (v[i].is_dir && depth < SFTPOBJ_DEPTH)
            rc = walk(o, sub, depth + 1, add, arg, err);
        else if (add(arg, sub))
            rc = nerr_set(err, NERR_NOMEM, "out of memory");
    }
    ssh_sftp_list_free(v, n);
    return rc;
}

int sftpobj_list(struct sftpobj *o, const char *dir, sftpobj_name_fn add, void *arg,
                 struct nerr *err)
{
    int rc = session(o, err);
    if (rc)
        return rc;
    if (!dir)
        return walk(o, "", 0, add, arg, err);
    char path[PATH_MAX];
    if ((rc = path_of(o, dir, path, sizeof path, err)))
        return rc;
    struct ssh_dirent *v = NULL;
    size_t n = 0;
    rc = ssh_sftp_list(o->s, path, &v, &n, err);
    if (rc == NERR_NOTFOUND)
        return 0;
    if (rc)
        return with_url(o, rc, err);
    for (size_t i = 0; !rc && i < n; i++)
        if (add(arg, v[i].name))
            rc = nerr_set(err, NERR_NOMEM, "out of memory");
    ssh_sftp_list_free(v, n);
    return rc;
}
