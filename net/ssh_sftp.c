/*
 * ssh_sftp.c — the SFTP file API of ssh.h ("SFTP files"): stat, mkdir -p,
 * atomic put (fsync, posix-rename@openssh.com), get, list, remove, rename,
 * fsync, each bounded by the session's io deadline.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "net/ssh_internal.h"

/* ---- SFTP files ---- */

/* Bytes handed to one libssh2_sftp_write: libssh2 queues a request per
 * 30000 bytes of it at once, so this bounds what is queued. */
#define SSH_PUT_CHUNK (256 * 1024)
/* The largest packet the posix-rename channel accepts (VERSION, STATUS). */
#define SSH_XPACKET_MAX 65536
#define SSH_FXP_INIT 1
#define SSH_FXP_VERSION 2
#define SSH_FXP_STATUS 101
#define SSH_FXP_EXTENDED 200

/* The verdict on a libssh2 call that returned lrc (after SSH_RETRY). */
static int ssh_sftp_check(struct ssh_session *s, int lrc, struct nerr *e, const char *what,
                          const char *path)
{
    if (lrc == 0)
        return 0;
    if (lrc == LIBSSH2_ERROR_TIMEOUT) {
        char msg[320];
        snprintf(msg, sizeof(msg), "sftp %s %.280s", what, path);
        return ssh_fail_dead(s, e, NERR_TIMEOUT, msg);
    }
    return ssh_sftp_fail(s, e, what, path);
}

static void ssh_attrs_conv(const LIBSSH2_SFTP_ATTRIBUTES *a, struct ssh_sftp_attrs *out)
{
    out->type = SSH_FT_OTHER;
    if ((a->flags & LIBSSH2_SFTP_ATTR_PERMISSIONS) && LIBSSH2_SFTP_S_ISREG(a->permissions))
        out->type = SSH_FT_REG;
    else if ((a->flags & LIBSSH2_SFTP_ATTR_PERMISSIONS) && LIBSSH2_SFTP_S_ISDIR(a->permissions))
        out->type = SSH_FT_DIR;
    out->size = (a->flags & LIBSSH2_SFTP_ATTR_SIZE) ? a->filesize : 0;
}

static int ssh_stat_ex(struct ssh_session *s, const char *path, int how, struct ssh_sftp_attrs *out,
                       struct nerr *e)
{
    LIBSSH2_SFTP_ATTRIBUTES a;
    memset(&a, 0, sizeof(a));
    int64_t deadline = clock_mono_ms() + s->io_timeout_ms;
    int lrc;
    SSH_RETRY(s, deadline, lrc,
              libssh2_sftp_stat_ex(s->sftp, path, (unsigned)strlen(path), how, &a));
    int rc = ssh_sftp_check(s, lrc, e, "stat", path);
    if (rc == 0)
        ssh_attrs_conv(&a, out);
    return rc;
}

int ssh_sftp_stat(struct ssh_session *s, const char *path, struct ssh_sftp_attrs *out,
                  struct nerr *e)
{
    if (!s || !path || !*path || !out)
        return nerr_set(e, NERR_INVALID, "ssh_sftp_stat: arguments required");
    int rc = ssh_sftp(s, e);
    if (rc)
        return rc;
    return ssh_stat_ex(s, path, LIBSSH2_SFTP_STAT, out, e);
}

int ssh_sftp_mkdirs(struct ssh_session *s, const char *path, mode_t mode, struct nerr *e)
{
    if (!s || !path || !*path)
        return nerr_set(e, NERR_INVALID, "ssh_sftp_mkdirs: arguments required");
    int rc = ssh_sftp(s, e);
    if (rc)
        return rc;
    struct ssh_sftp_attrs st;
    rc = ssh_stat_ex(s, path, LIBSSH2_SFTP_STAT, &st, e);
    if (rc == 0 && st.type == SSH_FT_DIR)
        return 0;
    if (rc == 0)
        return nerr_set(e, NERR_IO, "ssh %s: sftp mkdir %s: exists and is not a directory",
                        s->label, path);
    if (rc != NERR_NOTFOUND)
        return rc;
    /* The parent first: SFTP's MKDIR makes one level. */
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    while (n > 0 && path[n - 1] != '/')
        n--;
    while (n > 1 && path[n - 1] == '/')
        n--;
    if (n > 1 || (n == 1 && path[0] != '/')) {
        char *parent = strndup(path, n);
        if (!parent)
            return nerr_set(e, NERR_NOMEM, "ssh: out of memory");
        rc = ssh_sftp_mkdirs(s, parent, mode, e);
        free(parent);
        if (rc)
            return rc;
    }
    int64_t deadline = clock_mono_ms() + s->io_timeout_ms;
    int lrc;
    SSH_RETRY(s, deadline, lrc,
              libssh2_sftp_mkdir_ex(s->sftp, path, (unsigned)strlen(path), (long)mode));
    if (lrc == 0)
        return 0;
    struct nerr why;
    rc = ssh_sftp_check(s, lrc, &why, "mkdir", path);
    /* Another writer may have made it meanwhile (OpenSSH answers EEXIST
     * with a bare "failure"). */
    if (lrc == LIBSSH2_ERROR_SFTP_PROTOCOL &&
        ssh_stat_ex(s, path, LIBSSH2_SFTP_STAT, &st, NULL) == 0 && st.type == SSH_FT_DIR)
        return 0;
    if (e)
        *e = why;
    return rc;
}

int ssh_sftp_remove(struct ssh_session *s, const char *path, struct nerr *e)
{
    if (!s || !path || !*path)
        return nerr_set(e, NERR_INVALID, "ssh_sftp_remove: arguments required");
    int rc = ssh_sftp(s, e);
    if (rc)
        return rc;
    int64_t deadline = clock_mono_ms() + s->io_timeout_ms;
    int lrc;
    SSH_RETRY(s, deadline, lrc, libssh2_sftp_unlink_ex(s->sftp, path, (unsigned)strlen(path)));
    return ssh_sftp_check(s, lrc, e, "remove", path);
}

int ssh_sftp_fsync(struct ssh_session *s, const char *path, struct nerr *e)
{
    if (!s || !path || !*path)
        return nerr_set(e, NERR_INVALID, "ssh_sftp_fsync: arguments required");
    int rc = ssh_sftp(s, e);
    if (rc)
        return rc;
    /* OpenSSH's sftp-server opens a directory read-only as it would a
     * file, and fsync@openssh.com then syncs it. */
    LIBSSH2_SFTP_HANDLE *h = ssh_sftp_open(s, path, LIBSSH2_FXF_READ, 0, e, &rc);
    if (!h)
        return rc;
    int64_t deadline = clock_mono_ms() + s->io_timeout_ms;
    int lrc;
    SSH_RETRY(s, deadline, lrc, libssh2_sftp_fsync(h));
    rc = ssh_sftp_check(s, lrc, e, "fsync", path);
    if (rc) {
        if (!s->dead)
            ssh_sftp_close(s, h, NULL, path);
        return rc;
    }
    return ssh_sftp_close(s, h, e, path);
}

/* ---- posix-rename@openssh.com on a channel of our own ----
 * An SFTP packet: u32 length, u8 type, then the fields (RFC draft
 * "SSH File Transfer Protocol" version 3, sections 3 and 4; OpenSSH's
 * PROTOCOL file, section 4.3, for the extension). */

struct ssh_xbuf {
    unsigned char *p;
    size_t len, cap;
};

static int ssh_xbuf_put(struct ssh_xbuf *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *np = realloc(b->p, cap);
        if (!np)
            return NERR_NOMEM;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

static int ssh_xbuf_u32(struct ssh_xbuf *b, uint32_t v)
{
    unsigned char be[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                           (unsigned char)(v >> 8), (unsigned char)v};
    return ssh_xbuf_put(b, be, 4);
}

static int ssh_xbuf_str(struct ssh_xbuf *b, const char *str)
{
    size_t n = strlen(str);
    return ssh_xbuf_u32(b, (uint32_t)n) || ssh_xbuf_put(b, str, n) ? NERR_NOMEM : 0;
}

static uint32_t ssh_get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads a string at *off of a packet of len bytes; 0, or -1 when short. */
static int ssh_get_str(const unsigned char *p, size_t len, size_t *off, const unsigned char **s,
                       uint32_t *n)
{
    if (len - *off < 4)
        return -1;
    *n = ssh_get_u32(p + *off);
    if (len - *off - 4 < *n)
        return -1;
    *s = p + *off + 4;
    *off += 4 + *n;
    return 0;
}

/* Gives up on the rename channel: a later rename opens a new one. */
static void ssh_x_drop(struct ssh_session *s)
{
    if (s->xch && !s->dead && ssh_abandon_channel(s, s->xch) != 0)
        s->dead = 1;
    s->xch = NULL;
    s->xstate = 0;
}

static int ssh_x_write(struct ssh_session *s, const unsigned char *p, size_t n, struct nerr *e)
{
    int64_t deadline = clock_mono_ms() + s->io_timeout_ms;
    while (n) {
        ssize_t w = libssh2_channel_write(s->xch, (const char *)p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            deadline = clock_mono_ms() + s->io_timeout_ms;
        } else if (w == LIBSSH2_ERROR_EAGAIN || w == 0) {
            if (ssh_wait(s, deadline) != 0)
                return ssh_fail_dead(s, e, NERR_TIMEOUT, "sftp posix-rename channel write");
        } else {
            return ssh_fail_dead(s, e, NERR_IO, "sftp posix-rename channel write");
        }
    }
    return 0;
}

static int ssh_x_read(struct ssh_session *s, unsigned char *p, size_t n, struct nerr *e)
{
    int64_t deadline = clock_mono_ms() + s->io_timeout_ms;
    while (n) {
        ssize_t r = libssh2_channel_read(s->xch, (char *)p, n);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            deadline = clock_mono_ms() + s->io_timeout_ms;
        } else if (r == LIBSSH2_ERROR_EAGAIN || (r == 0 && !libssh2_channel_eof(s->xch))) {
            if (ssh_wait(s, deadline) != 0)
                return ssh_fail_dead(s, e, NERR_TIMEOUT, "sftp posix-rename channel read");
        } else if (r == 0) {
            ssh_x_drop(s);
            return nerr_set(e, NERR_IO, "ssh %s: the server closed the sftp posix-rename channel",
                            s->label);
        } else {
            return ssh_fail_dead(s, e, NERR_IO, "sftp posix-rename channel read");
        }
    }
    return 0;
}

/* Sends the packet b holds (its first 4 bytes reserved for the length)
 * and reads the answer into *pkt (malloc'd: type, then the fields). */
static int ssh_x_roundtrip(struct ssh_session *s, struct ssh_xbuf *b, unsigned char **pkt,
                           uint32_t *plen, struct nerr *e)
{
    *pkt = NULL;
    uint32_t n = (uint32_t)(b->len - 4);
    b->p[0] = (unsigned char)(n >> 24);
    b->p[1] = (unsigned char)(n >> 16);
    b->p[2] = (unsigned char)(n >> 8);
    b->p[3] = (unsigned char)n;
    int rc = ssh_x_write(s, b->p, b->len, e);
    unsigned char be[4];
    if (rc || (rc = ssh_x_read(s, be, 4, e)))
        return rc;
    *plen = ssh_get_u32(be);
    if (*plen < 1 || *plen > SSH_XPACKET_MAX) {
        ssh_x_drop(s);
        return nerr_set(e, NERR_IO, "ssh %s: sftp posix-rename channel: bad packet length %u",
                        s->label, *plen);
    }
    *pkt = malloc(*plen);
    if (!*pkt)
        return nerr_set(e, NERR_NOMEM, "ssh: out of memory");
    rc = ssh_x_read(s, *pkt, *plen, e);
    if (rc) {
        free(*pkt);
        *pkt = NULL;
    }
    return rc;
}

/* Opens the second sftp channel and learns whether the server offers
 * posix-rename@openssh.com (s->xstate 1 or -1). */
static int ssh_x_open(struct ssh_session *s, struct nerr *e)
{
    int64_t deadline = clock_mono_ms() + s->io_timeout_ms;
    for (;;) {
        s->xch = libssh2_channel_open_session(s->ls);
        if (s->xch || libssh2_session_last_errno(s->ls) != LIBSSH2_ERROR_EAGAIN)
            break;
        if (ssh_wait(s, deadline) != 0)
            return ssh_fail_dead(s, e, NERR_TIMEOUT, "open sftp posix-rename channel");
    }
    if (!s->xch)
        return ssh_fail_dead(s, e, NERR_IO, "open sftp posix-rename channel");
    int lrc;
    /* Whatever the server writes to stderr must not fill the window. */
    SSH_RETRY(s, deadline, lrc,
              libssh2_channel_handle_extended_data2(s->xch, LIBSSH2_CHANNEL_EXTENDED_DATA_IGNORE));
    if (lrc == 0)
        SSH_RETRY(s, deadline, lrc, libssh2_channel_subsystem(s->xch, "sftp"));
    if (lrc == LIBSSH2_ERROR_TIMEOUT)
        return ssh_fail_dead(s, e, NERR_TIMEOUT, "sftp posix-rename channel subsystem request");
    if (lrc) {
        /* Refused (a channel limit, a server without the subsystem on a
         * second channel): rename the plain way. */
        ssh_x_drop(s);
        s->xstate = -1;
        return 0;
    }
    struct ssh_xbuf b = {0};
    unsigned char *pkt = NULL;
    uint32_t plen = 0;
    int rc = ssh_xbuf_u32(&b, 0) || ssh_xbuf_put(&b, "\x01", 1) || ssh_xbuf_u32(&b, 3)
                 ? nerr_set(e, NERR_NOMEM, "ssh: out of memory")
                 : ssh_x_roundtrip(s, &b, &pkt, &plen, e);
    free(b.p);
    if (rc)
        return rc;
    int found = 0;
    if (pkt[0] != SSH_FXP_VERSION || plen < 5) {
        free(pkt);
        ssh_x_drop(s);
        return nerr_set(e, NERR_IO, "ssh %s: sftp posix-rename channel: no VERSION from the server",
                        s->label);
    }
    for (size_t off = 5; off < plen;) {
        const unsigned char *name, *data;
        uint32_t nlen, dlen;
        if (ssh_get_str(pkt, plen, &off, &name, &nlen) ||
            ssh_get_str(pkt, plen, &off, &data, &dlen))
            break;
        if (nlen == 24 && !memcmp(name, "posix-rename@openssh.com", 24))
            found = 1;
    }
    free(pkt);
    if (!found) {
        ssh_x_drop(s);
        s->xstate = -1;
        return 0;
    }
    s->xstate = 1;
    return 0;
}

static int ssh_x_posix_rename(struct ssh_session *s, const char *from, const char *to,
                              struct nerr *e)
{
    uint32_t id = ++s->xid;
    struct ssh_xbuf b = {0};
    unsigned char *pkt = NULL;
    uint32_t plen = 0;
    unsigned char type = SSH_FXP_EXTENDED;
    int rc = ssh_xbuf_u32(&b, 0) || ssh_xbuf_put(&b, &type, 1) || ssh_xbuf_u32(&b, id) ||
                     ssh_xbuf_str(&b, "posix-rename@openssh.com") || ssh_xbuf_str(&b, from) ||
                     ssh_xbuf_str(&b, to)
                 ? nerr_set(e, NERR_NOMEM, "ssh: out of memory")
                 : ssh_x_roundtrip(s, &b, &pkt, &plen, e);
    free(b.p);
    if (rc)
        return rc;
    if (pkt[0] != SSH_FXP_STATUS || plen < 9 || ssh_get_u32(pkt + 1) != id) {
        rc = nerr_set(e, NERR_IO,
                      "ssh %s: sftp rename %s: unexpected answer (type %u) to posix-rename",
                      s->label, to, pkt[0]);
        free(pkt);
        ssh_x_drop(s);
        return rc;
    }
    unsigned long fx = ssh_get_u32(pkt + 5);
    free(pkt);
    if (fx == LIBSSH2_FX_OK)
        return 0;
    int code = (fx == LIBSSH2_FX_NO_SUCH_FILE || fx == LIBSSH2_FX_NO_SUCH_PATH) ? NERR_NOTFOUND
               : fx == LIBSSH2_FX_PERMISSION_DENIED                             ? NERR_AUTH
                                                                                : NERR_IO;
    return nerr_set(e, code, "ssh %s: sftp rename %s to %s: %s (SFTP status %lu)", s->label, from,
                    to, ssh_fx_text(fx), fx);
}

int ssh_sftp_rename(struct ssh_session *s, const char *from, const char *to, struct nerr *e)
{
    if (!s || !from || !to || !*from || !*to)
        return nerr_set(e, NERR_INVALID, "ssh_sftp_rename: arguments required");
    if (strlen(from) > 4096 || strlen(to) > 4096)
        return nerr_set(e, NERR_INVALID, "ssh_sftp_rename: path too long");
    int rc = ssh_sftp(s, e);
    if (rc)
        return rc;
    if (s->xstate == 0 && (rc = ssh_x_open(s, e)))
        return rc;
    if (s->xstate == 1)
        return ssh_x_posix_rename(s, from, to, e);
    /* Honoured by SFTP v5+ servers; a v3 server refuses an existing target. */
    int64_t deadline = clock_mono_ms() + s->io_timeout_ms;
    int lrc;
    SSH_RETRY(s, deadline, lrc,
              libssh2_sftp_rename_ex(s->sftp, from, (unsigned)strlen(from), to,
                                     (unsigned)strlen(to),
                                     LIBSSH2_SFTP_RENAME_OVERWRITE | LIBSSH2_SFTP_RENAME_ATOMIC |
                                         LIBSSH2_SFTP_RENAME_NATIVE));
    rc = ssh_sftp_check(s, lrc, e, "rename", from);
    if (rc && e && !s->dead) {
        char prev[NERR_MSG_MAX];
        snprintf(prev, sizeof(prev), "%s", e->msg);
        nerr_set(e, rc, "%.300s, to %.100s (the server offers no posix-rename@openssh.com)", prev,
                 to);
    }
    return rc;
}

int ssh_sftp_put(struct ssh_session *s, const char *path, const void *buf, size_t len, mode_t mode,
                 struct nerr *e)
{
    if (!s || !path || (!buf && len))
        return nerr_set(e, NERR_INVALID, "ssh_sftp_put: arguments required");
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
        return nerr_set(e, NERR_INVALID, "ssh_sftp_put: '%s' does not name a file", path);
    int rc = ssh_sftp(s, e);
    if (rc)
        return rc;
    char *tmp = NULL, *dir = NULL;
    LIBSSH2_SFTP_HANDLE *h = NULL;
    int created = 0, renamed = 0;
    uint32_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != sizeof(r))
        r = (uint32_t)clock_mono_ms();
    /* A temporary never looks like a finished file: its name starts with '.'. */
    if (asprintf(&tmp, "%.*s.%s.tmp-%d-%08x", (int)(base - path), path, base, (int)getpid(), r) <
        0) {
        tmp = NULL;
        rc = nerr_set(e, NERR_NOMEM, "ssh: out of memory");
        goto out;
    }
    dir = !slash ? strdup(".") : slash == path ? strdup("/") : strndup(path, slash - path);
    if (!dir) {
        rc = nerr_set(e, NERR_NOMEM, "ssh: out of memory");
        goto out;
    }
    h = ssh_sftp_open(s, tmp, LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_EXCL, (long)mode,
                      e, &rc);
    if (!h)
        goto out;
    created = 1;
    const char *p = buf;
    size_t off = 0;
    int64_t deadline = clock_mono_ms() + s->io_timeout_ms;
    while (off < len) {
        size_t n = len - off < SSH_PUT_CHUNK ? len - off : SSH_PUT_CHUNK;
        ssize_t w = libssh2_sftp_write(h, p + off, n);
        if (w > 0) {
            off += (size_t)w;
            deadline = clock_mono_ms() + s->io_timeout_ms;
        } else if (w == LIBSSH2_ERROR_EAGAIN || w == 0) {
            if (ssh_wait(s, deadline) != 0) {
                rc = ssh_sftp_check(s, LIBSSH2_ERROR_TIMEOUT, e, "write", tmp);
                goto out;
            }
        } else {
            rc = ssh_sftp_fail(s, e, "write", tmp);
            goto out;
        }
    }
    int lrc;
    deadline = clock_mono_ms() + s->io_timeout_ms;
    SSH_RETRY(s, deadline, lrc, libssh2_sftp_fsync(h));
    if ((rc = ssh_sftp_check(s, lrc, e, "fsync", tmp)))
        goto out;
    rc = ssh_sftp_close(s, h, e, tmp);
    h = NULL;
    if (rc)
        goto out;
    if ((rc = ssh_sftp_rename(s, tmp, path, e)))
        goto out;
    renamed = 1;
    rc = ssh_sftp_fsync(s, dir, e);
out:
    if (h && !s->dead)
        ssh_sftp_close(s, h, NULL, tmp);
    if (created && !renamed && !s->dead)
        ssh_sftp_remove(s, tmp, NULL);
    free(tmp);
    free(dir);
    return rc;
}

int ssh_sftp_get(struct ssh_session *s, const char *path, size_t max, unsigned char **buf,
                 size_t *len, struct nerr *e)
{
    if (buf)
        *buf = NULL;
    if (len)
        *len = 0;
    if (!s || !path || !*path || !buf || !len || max >= SIZE_MAX)
        return nerr_set(e, NERR_INVALID, "ssh_sftp_get: arguments required");
    int rc = ssh_sftp(s, e);
    if (rc)
        return rc;
    LIBSSH2_SFTP_HANDLE *h = ssh_sftp_open(s, path, LIBSSH2_FXF_READ, 0, e, &rc);
    if (!h)
        return rc;
    LIBSSH2_SFTP_ATTRIBUTES a;
    memset(&a, 0, sizeof(a));
    int64_t deadline = clock_mono_ms() + s->io_timeout_ms;
    int lrc;
    SSH_RETRY(s, deadline, lrc, libssh2_sftp_fstat_ex(h, &a, 0));
    unsigned char *b = NULL;
    size_t n = 0, cap = 0;
    if ((rc = ssh_sftp_check(s, lrc, e, "fstat", path)))
        goto fail;
    if ((a.flags & LIBSSH2_SFTP_ATTR_SIZE) && a.filesize > max) {
        rc = nerr_set(e, NERR_LIMIT, "ssh %s: sftp read %s: %llu bytes, over the %zu limit",
                      s->label, path, (unsigned long long)a.filesize, max);
        goto fail;
    }
    /* The size is a hint: the file may grow or shrink while it is read. */
    cap = ((a.flags & LIBSSH2_SFTP_ATTR_SIZE) ? (size_t)a.filesize : 0) + 1;
    b = malloc(cap);
    if (!b) {
        rc = nerr_set(e, NERR_NOMEM, "ssh: out of memory");
        goto fail;
    }
    char chunk[SSH_CHUNK];
    deadline = clock_mono_ms() + s->io_timeout_ms;
    for (;;) {
        ssize_t r = libssh2_sftp_read(h, chunk, sizeof(chunk));
        if (r == LIBSSH2_ERROR_EAGAIN) {
            if (ssh_wait(s, deadline) != 0) {
                rc = ssh_sftp_check(s, LIBSSH2_ERROR_TIMEOUT, e, "read", path);
                goto fail;
            }
            continue;
        }
        if (r < 0) {
            rc = ssh_sftp_fail(s, e, "read", path);
            goto fail;
        }
        if (r == 0)
            break;
        deadline = clock_mono_ms() + s->io_timeout_ms;
        if ((size_t)r > max - n) {
            rc = nerr_set(e, NERR_LIMIT, "ssh %s: sftp read %s: more than the %zu limit", s->label,
                          path, max);
            goto fail;
        }
        if (n + (size_t)r + 1 > cap) {
            size_t nc = cap * 2 > n + (size_t)r + 1 ? cap * 2 : n + (size_t)r + 1;
            if (nc > max + 1)
                nc = max + 1;
            unsigned char *nb = realloc(b, nc);
            if (!nb) {
                rc = nerr_set(e, NERR_NOMEM, "ssh: out of memory");
                goto fail;
            }
            b = nb;
            cap = nc;
        }
        memcpy(b + n, chunk, (size_t)r);
        n += (size_t)r;
    }
    rc = ssh_sftp_close(s, h, e, path);
    h = NULL;
    if (rc)
        goto fail;
    b[n] = 0;
    *buf = b;
    *len = n;
    return 0;
fail:
    if (h && !s->dead)
        ssh_sftp_close(s, h, NULL, path);
    free(b);
    return rc;
}

int ssh_sftp_list(struct ssh_session *s, const char *dir, struct ssh_dirent **out, size_t *n,
                  struct nerr *e)
{
    if (out)
        *out = NULL;
    if (n)
        *n = 0;
    if (!s || !dir || !*dir || !out || !n)
        return nerr_set(e, NERR_INVALID, "ssh_sftp_list: arguments required");
    int rc = ssh_sftp(s, e);
    if (rc)
        return rc;
    int64_t deadline = clock_mono_ms() + s->io_timeout_ms;
    LIBSSH2_SFTP_HANDLE *h;
    for (;;) {
        h = libssh2_sftp_open_ex(s->sftp, dir, (unsigned)strlen(dir), 0, 0, LIBSSH2_SFTP_OPENDIR);
        if (h)
            break;
        if (libssh2_session_last_errno(s->ls) != LIBSSH2_ERROR_EAGAIN)
            return ssh_sftp_fail(s, e, "opendir", dir);
        if (ssh_wait(s, deadline) != 0)
            return ssh_sftp_check(s, LIBSSH2_ERROR_TIMEOUT, e, "opendir", dir);
    }
    struct ssh_dirent *v = NULL;
    size_t cnt = 0, cap = 0;
    char name[1024];
    deadline = clock_mono_ms() + s->io_timeout_ms;
    for (;;) {
        LIBSSH2_SFTP_ATTRIBUTES a;
        memset(&a, 0, sizeof(a));
        int r = libssh2_sftp_readdir_ex(h, name, sizeof(name) - 1, NULL, 0, &a);
        if (r == LIBSSH2_ERROR_EAGAIN) {
            if (ssh_wait(s, deadline) != 0) {
                rc = ssh_sftp_check(s, LIBSSH2_ERROR_TIMEOUT, e, "readdir", dir);
                goto fail;
            }
            continue;
        }
        if (r < 0) {
            rc = r == LIBSSH2_ERROR_BUFFER_TOO_SMALL
                     ? nerr_set(e, NERR_LIMIT, "ssh %s: sftp readdir %s: a name over %zu bytes",
                                s->label, dir, sizeof(name) - 1)
                     : ssh_sftp_fail(s, e, "readdir", dir);
            goto fail;
        }
        if (r == 0)
            break;
        deadline = clock_mono_ms() + s->io_timeout_ms;
        name[r] = 0;
        if (!strcmp(name, ".") || !strcmp(name, ".."))
            continue;
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 32;
            struct ssh_dirent *nv = realloc(v, nc * sizeof(*nv));
            if (!nv) {
                rc = nerr_set(e, NERR_NOMEM, "ssh: out of memory");
                goto fail;
            }
            v = nv;
            cap = nc;
        }
        if (!(v[cnt].name = strdup(name))) {
            rc = nerr_set(e, NERR_NOMEM, "ssh: out of memory");
            goto fail;
        }
        struct ssh_sftp_attrs at;
        ssh_attrs_conv(&a, &at);
        v[cnt++].is_dir = at.type == SSH_FT_DIR;
    }
    rc = ssh_sftp_close(s, h, e, dir);
    h = NULL;
    if (rc)
        goto fail;
    *out = v;
    *n = cnt;
    return 0;
fail:
    if (h && !s->dead)
        ssh_sftp_close(s, h, NULL, dir);
    ssh_sftp_list_free(v, cnt);
    return rc;
}

void ssh_sftp_list_free(struct ssh_dirent *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].name);
    free(v);
}
