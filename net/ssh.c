/* ssh.c — libssh2 sessions, exec with deadlines, SFTP, and the pool; see ssh.h. */
#include "net/ssh.h"

#include <errno.h>
#include <fcntl.h>
#include <libssh2.h>
#include <libssh2_sftp.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "net/shquote.h"
#include "net/ssh_internal.h"
#include "lib/clock.h"
#include "lib/log.h"

/* How long a timed-out channel or a disconnect may take before we give up
 * on the peer's cooperation. */

static pthread_once_t ssh_once = PTHREAD_ONCE_INIT;
static int ssh_init_rc;

static void ssh_global_init(void)
{
    ssh_init_rc = libssh2_init(0);
}

static const char *ssh_lasterr(struct ssh_session *s)
{
    char *msg = NULL;
    libssh2_session_last_error(s->ls, &msg, NULL, 0);
    return msg ? msg : "unknown libssh2 error";
}

/* Marks the session dead and records why. */
int ssh_fail_dead(struct ssh_session *s, struct nerr *e, int code, const char *what)
{
    s->dead = 1;
    if (code == NERR_TIMEOUT)
        return nerr_set(e, code, "ssh %s: %s: timed out", s->label, what);
    return nerr_set(e, code, "ssh %s: %s: %s", s->label, what, ssh_lasterr(s));
}

/* Waits until the socket is ready in the directions libssh2 is blocked on,
 * or the deadline passes. */
int ssh_wait(struct ssh_session *s, int64_t deadline)
{
    int64_t left = deadline - clock_mono_ms();
    if (left <= 0)
        return NERR_TIMEOUT;
    int dir = libssh2_session_block_directions(s->ls);
    struct pollfd pfd = {.fd = s->fd, .events = 0};
    if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
        pfd.events |= POLLIN;
    if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
        pfd.events |= POLLOUT;
    if (!pfd.events)
        pfd.events = POLLIN; /* libssh2 may not know yet; a short poll is harmless */
    int ms = left > 100 ? 100 : (int)left;
    if (poll(&pfd, 1, ms) < 0 && errno != EINTR)
        return NERR_IO;
    return 0;
}

/* TCP connect to one of the host's addresses within the deadline. */
static int ssh_tcp_connect(const char *host, int port, int64_t deadline, int *fd_out,
                           struct nerr *e)
{
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    int grc = getaddrinfo(host, portstr, &hints, &ai);
    if (grc != 0)
        return nerr_set(e, NERR_IO, "ssh: resolve %s: %s", host, gai_strerror(grc));
    int last_errno = 0, timed_out = 0;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        int fd =
            socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            *fd_out = fd;
            freeaddrinfo(ai);
            return 0;
        }
        if (errno == EINPROGRESS) {
            for (;;) {
                int64_t left = deadline - clock_mono_ms();
                if (left <= 0) {
                    timed_out = 1;
                    break;
                }
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                int pr = poll(&pfd, 1, (int)left);
                if (pr < 0 && errno == EINTR)
                    continue;
                if (pr <= 0)
                    continue;
                int soerr = 0;
                socklen_t sl = sizeof(soerr);
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
                if (soerr == 0) {
                    *fd_out = fd;
                    freeaddrinfo(ai);
                    return 0;
                }
                last_errno = soerr;
                break;
            }
        } else {
            last_errno = errno;
        }
        close(fd);
        if (timed_out)
            break;
    }
    freeaddrinfo(ai);
    if (timed_out)
        return nerr_set(e, NERR_TIMEOUT, "ssh: connect to %s port %d: timed out", host, port);
    return nerr_sys(e, last_errno, "ssh: connect to %s port %d", host, port);
}

static const char *ssh_keytype_name(int type)
{
    switch (type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA:
        return "RSA";
    case LIBSSH2_HOSTKEY_TYPE_DSS:
        return "DSA";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
        return "ECDSA";
    case LIBSSH2_HOSTKEY_TYPE_ED25519:
        return "ED25519";
    default:
        return "UNKNOWN";
    }
}

static int ssh_keytype_knownhost(int type)
{
    switch (type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA:
        return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
    case LIBSSH2_HOSTKEY_TYPE_DSS:
        return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
        return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
        return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
        return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
    case LIBSSH2_HOSTKEY_TYPE_ED25519:
        return LIBSSH2_KNOWNHOST_KEY_ED25519;
    default:
        return 0;
    }
}

/* "SHA256:<base64, no padding>", as ssh-keygen -l prints it. */
static void ssh_fingerprint(struct ssh_session *s, char *buf, size_t cap)
{
    const unsigned char *h =
        (const unsigned char *)libssh2_hostkey_hash(s->ls, LIBSSH2_HOSTKEY_HASH_SHA256);
    if (!h) {
        snprintf(buf, cap, "SHA256:?");
        return;
    }
    unsigned char b64[64];
    int n = EVP_EncodeBlock(b64, h, 32);
    while (n > 0 && b64[n - 1] == '=')
        n--;
    b64[n] = '\0';
    snprintf(buf, cap, "SHA256:%s", b64);
}

/* Appends one line to known_hosts; the file is never rewritten, so entries
 * libssh2 could not parse survive. */
static int ssh_knownhost_append(LIBSSH2_KNOWNHOSTS *kh, struct libssh2_knownhost *entry,
                                const char *path, struct nerr *e)
{
    char line[8192];
    size_t len = 0;
    if (libssh2_knownhost_writeline(kh, entry, line, sizeof(line), &len,
                                    LIBSSH2_KNOWNHOST_FILE_OPENSSH) != 0)
        return nerr_set(e, NERR_INTERNAL, "ssh: cannot format known_hosts line");
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return nerr_sys(e, errno, "ssh: open %s", path);
    /* A file whose last line lacks a newline would glue our entry to it. */
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) == 0 && st.st_size > 0) {
        char last = '\n';
        if (pread(fd, &last, 1, st.st_size - 1) == 1 && last != '\n' && write(fd, "\n", 1) != 1)
            rc = nerr_sys(e, errno, "ssh: write %s", path);
    }
    if (rc == 0 && write(fd, line, len) != (ssize_t)len)
        rc = nerr_sys(e, errno, "ssh: write %s", path);
    if (rc == 0 && fsync(fd) != 0)
        rc = nerr_sys(e, errno, "ssh: fsync %s", path);
    close(fd);
    return rc;
}

static int ssh_check_hostkey(struct ssh_session *s, const struct ssh_host_opts *o, int port,
                             struct nerr *e)
{
    size_t klen = 0;
    int ktype = 0;
    const char *key = libssh2_session_hostkey(s->ls, &klen, &ktype);
    if (!key)
        return nerr_set(e, NERR_IO, "ssh %s: no host key from server", s->label);
    char fp[80];
    ssh_fingerprint(s, fp, sizeof(fp));
    int khtype = ssh_keytype_knownhost(ktype);
    if (!khtype)
        return nerr_set(e, NERR_AUTH, "ssh %s: unsupported host key type %d (%s)", s->label, ktype,
                        fp);
    LIBSSH2_KNOWNHOSTS *kh = libssh2_knownhost_init(s->ls);
    if (!kh)
        return nerr_set(e, NERR_NOMEM, "ssh: knownhost_init failed");
    int rc = 0;
    if (access(o->known_hosts, F_OK) == 0 &&
        libssh2_knownhost_readfile(kh, o->known_hosts, LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0) {
        rc = nerr_set(e, NERR_PARSE, "ssh: cannot read known_hosts %s: %s", o->known_hosts,
                      ssh_lasterr(s));
        goto out;
    }
    struct libssh2_knownhost *found = NULL;
    int typemask = LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | khtype;
    int check = libssh2_knownhost_checkp(kh, o->host, port, key, klen, typemask, &found);
    switch (check) {
    case LIBSSH2_KNOWNHOST_CHECK_MATCH:
        break;
    case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
        rc = nerr_set(e, NERR_AUTH,
                      "ssh %s: host key CHANGED: server offers %s key %s, which differs from "
                      "the key recorded in %s; refusing (possible man-in-the-middle, or the "
                      "host was reinstalled: remove the old entry to proceed)",
                      s->label, ssh_keytype_name(ktype), fp, o->known_hosts);
        break;
    case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
        if (o->hostkey_policy != SSH_HOSTKEY_ACCEPT_NEW) {
            rc = nerr_set(e, NERR_AUTH,
                          "ssh %s: unknown host key: %s key %s is not in %s; refusing "
                          "(strict host key checking)",
                          s->label, ssh_keytype_name(ktype), fp, o->known_hosts);
            break;
        }
        {
            char name[300];
            if (port == 22)
                snprintf(name, sizeof(name), "%s", o->host);
            else
                snprintf(name, sizeof(name), "[%s]:%d", o->host, port);
            struct libssh2_knownhost *added = NULL;
            if (libssh2_knownhost_addc(kh, name, NULL, key, klen, NULL, 0, typemask, &added) != 0) {
                rc = nerr_set(e, NERR_INTERNAL, "ssh %s: knownhost_addc: %s", s->label,
                              ssh_lasterr(s));
                break;
            }
            rc = ssh_knownhost_append(kh, added, o->known_hosts, e);
            if (rc == 0)
                log_info("ssh %s: added %s key %s to %s", s->label, ssh_keytype_name(ktype), fp,
                         o->known_hosts);
        }
        break;
    default:
        rc = nerr_set(e, NERR_AUTH, "ssh %s: host key check failed: %s", s->label, ssh_lasterr(s));
        break;
    }
out:
    libssh2_knownhost_free(kh);
    return rc;
}

int ssh_connect(const struct ssh_host_opts *o, struct ssh_session **out, struct nerr *e)
{
    *out = NULL;
    if (!o || !o->host || !o->user || !o->key_path || !o->known_hosts)
        return nerr_set(e, NERR_INVALID, "ssh: host, user, key_path and known_hosts are required");
    pthread_once(&ssh_once, ssh_global_init);
    if (ssh_init_rc != 0)
        return nerr_set(e, NERR_INTERNAL, "ssh: libssh2_init failed (%d)", ssh_init_rc);
    int port = o->port > 0 ? o->port : 22;
    int64_t deadline =
        clock_mono_ms() + (o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000);
    char *pub = NULL;
    int rc = 0;
    struct ssh_session *s = calloc(1, sizeof(*s));
    if (!s)
        return nerr_set(e, NERR_NOMEM, "ssh: out of memory");
    s->fd = -1;
    s->io_timeout_ms = o->io_timeout_ms > 0 ? o->io_timeout_ms : 30000;
    if (asprintf(&s->label, "%s@%s:%d", o->user, o->host, port) < 0) {
        s->label = NULL;
        rc = nerr_set(e, NERR_NOMEM, "ssh: out of memory");
        goto fail;
    }
    if (access(o->key_path, R_OK) != 0) {
        int err = errno;
        if (err == ENOENT)
            rc = nerr_set(e, NERR_NOTFOUND, "ssh %s: private key %s does not exist", s->label,
                          o->key_path);
        else
            rc = nerr_sys(e, err, "ssh %s: private key %s", s->label, o->key_path);
        goto fail;
    }
    rc = ssh_tcp_connect(o->host, port, deadline, &s->fd, e);
    if (rc)
        goto fail;
    s->ls = libssh2_session_init();
    if (!s->ls) {
        rc = nerr_set(e, NERR_NOMEM, "ssh: libssh2_session_init failed");
        goto fail;
    }
    libssh2_session_set_blocking(s->ls, 0);
    int lrc;
    SSH_RETRY(s, deadline, lrc, libssh2_session_handshake(s->ls, s->fd));
    if (lrc) {
        rc = lrc == LIBSSH2_ERROR_TIMEOUT
                 ? nerr_set(e, NERR_TIMEOUT, "ssh %s: handshake timed out", s->label)
                 : nerr_set(e, NERR_IO, "ssh %s: handshake: %s", s->label, ssh_lasterr(s));
        goto fail;
    }
    rc = ssh_check_hostkey(s, o, port, e);
    if (rc)
        goto fail;
    if (asprintf(&pub, "%s.pub", o->key_path) < 0) {
        pub = NULL;
        rc = nerr_set(e, NERR_NOMEM, "ssh: out of memory");
        goto fail;
    }
    if (access(pub, R_OK) != 0) {
        /* libssh2 (OpenSSL backend) derives the public key from the private one. */
        free(pub);
        pub = NULL;
    }
    SSH_RETRY(s, deadline, lrc,
              libssh2_userauth_publickey_fromfile(s->ls, o->user, pub, o->key_path, NULL));
    if (lrc) {
        if (lrc == LIBSSH2_ERROR_TIMEOUT)
            rc = nerr_set(e, NERR_TIMEOUT, "ssh %s: authentication timed out", s->label);
        else
            rc = nerr_set(e, NERR_AUTH, "ssh %s: public key authentication with %s failed: %s",
                          s->label, o->key_path, ssh_lasterr(s));
        goto fail;
    }
    free(pub);
    *out = s;
    return 0;
fail:
    free(pub);
    s->dead = 1; /* no polite disconnect for a half-open session */
    ssh_close(s);
    return rc;
}

int ssh_session_dead(const struct ssh_session *s)
{
    return !s || s->dead;
}

static void ssh_reap_orphans(struct ssh_session *s)
{
    int kept = 0;
    for (int i = 0; i < s->n_orphans; i++) {
        if (libssh2_channel_free(s->orphans[i]) == LIBSSH2_ERROR_EAGAIN)
            s->orphans[kept++] = s->orphans[i];
    }
    s->n_orphans = kept;
}

void ssh_close(struct ssh_session *s)
{
    if (!s)
        return;
    if (s->ls) {
        if (!s->dead) {
            if (s->xch)
                ssh_abandon_channel(s, s->xch);
            s->xch = NULL;
            int64_t deadline = clock_mono_ms() + SSH_GRACE_MS;
            int lrc;
            if (s->sftp)
                SSH_RETRY(s, deadline, lrc, libssh2_sftp_shutdown(s->sftp));
            SSH_RETRY(s, deadline, lrc,
                      libssh2_session_disconnect(s->ls, "nines: closing session"));
            (void)lrc;
        }
        /* libssh2_session_free first frees the channels left, and freeing a
         * channel whose command still runs (an exec that timed out) waits
         * for the server's CLOSE; in non-blocking mode it then returns
         * EAGAIN and frees nothing. Shutting the socket down first turns
         * that wait into an immediate disconnect, so the free completes. */
        if (s->fd >= 0)
            shutdown(s->fd, SHUT_RDWR);
        libssh2_session_set_timeout(s->ls, SSH_GRACE_MS);
        libssh2_session_set_blocking(s->ls, 1);
        for (int i = 0; i < 3 && libssh2_session_free(s->ls) == LIBSSH2_ERROR_EAGAIN; i++)
            ;
    }
    if (s->fd >= 0)
        close(s->fd);
    free(s->label);
    free(s);
}

void ssh_result_free(struct ssh_result *r)
{
    if (!r)
        return;
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
    r->out_len = r->err_len = 0;
}

struct ssh_buf {
    char *p;
    size_t len, cap, max;
    int truncated;
};

static int ssh_buf_add(struct ssh_buf *b, const char *data, size_t n)
{
    if (b->len + n > b->max) {
        b->truncated = 1;
        n = b->max - b->len;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > b->max + 1)
            cap = b->max + 1;
        char *np = realloc(b->p, cap);
        if (!np)
            return NERR_NOMEM;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

/* Gives a timed-out channel a short grace to close; if the server does not
 * answer in time the channel is parked and freed on a later call. Returns
 * nonzero if the transport itself failed. */
int ssh_abandon_channel(struct ssh_session *s, LIBSSH2_CHANNEL *ch)
{
    int64_t deadline = clock_mono_ms() + SSH_GRACE_MS;
    int lrc;
    SSH_RETRY(s, deadline, lrc, libssh2_channel_close(ch));
    if (lrc != 0 && lrc != LIBSSH2_ERROR_TIMEOUT)
        return -1;
    /* libssh2_channel_free only sends CLOSE if not yet sent and frees when
     * it can; in non-blocking mode it never waits for the server's CLOSE. */
    SSH_RETRY(s, deadline, lrc, libssh2_channel_free(ch));
    if (lrc == 0)
        return 0;
    if (lrc == LIBSSH2_ERROR_TIMEOUT && s->n_orphans < SSH_MAX_ORPHANS) {
        s->orphans[s->n_orphans++] = ch;
        return 0;
    }
    return -1; /* freed with the session */
}

int ssh_exec(struct ssh_session *s, const char *cmdline, int timeout_ms, struct ssh_result *r,
             struct nerr *e)
{
    size_t max = r->max_output && r->max_output < SSH_OUTPUT_MAX ? r->max_output : SSH_OUTPUT_MAX;
    memset(r, 0, sizeof(*r));
    r->max_output = max;
    r->exit_status = -1;
    if (!s || !cmdline || timeout_ms <= 0)
        return nerr_set(e, NERR_INVALID, "ssh_exec: session, command and timeout are required");
    if (s->dead)
        return nerr_set(e, NERR_CLOSED, "ssh %s: session is dead; reconnect", s->label);
    ssh_reap_orphans(s);
    int64_t deadline = clock_mono_ms() + timeout_ms;
    struct ssh_buf ob = {.max = max}, eb = {.max = max};
    LIBSSH2_CHANNEL *ch = NULL;
    int rc = 0, lrc;
    for (;;) {
        ch = libssh2_channel_open_session(s->ls);
        if (ch || libssh2_session_last_errno(s->ls) != LIBSSH2_ERROR_EAGAIN)
            break;
        if (ssh_wait(s, deadline) != 0) {
            rc = ssh_fail_dead(s, e, NERR_TIMEOUT, "open channel");
            goto out;
        }
    }
    if (!ch) {
        rc = ssh_fail_dead(s, e, NERR_IO, "open channel");
        goto out;
    }
    SSH_RETRY(s, deadline, lrc, libssh2_channel_exec(ch, cmdline));
    if (lrc == LIBSSH2_ERROR_TIMEOUT) {
        rc = nerr_set(e, NERR_TIMEOUT, "ssh %s: exec request timed out after %d ms", s->label,
                      timeout_ms);
        goto timeout;
    }
    if (lrc) {
        rc = ssh_fail_dead(s, e, NERR_IO, "exec");
        goto out;
    }
    /* Nothing will be written to the command's stdin. */
    SSH_RETRY(s, deadline, lrc, libssh2_channel_send_eof(ch));
    char buf[SSH_CHUNK];
    for (;;) {
        int progress = 0, done = 1;
        for (int stream = 0; stream < 2; stream++) {
            struct ssh_buf *b = stream ? &eb : &ob;
            for (;;) {
                ssize_t n = libssh2_channel_read_ex(ch, stream, buf, sizeof(buf));
                if (n > 0) {
                    progress = 1;
                    if (ssh_buf_add(b, buf, (size_t)n) != 0) {
                        rc = nerr_set(e, NERR_NOMEM, "ssh %s: out of memory", s->label);
                        goto timeout;
                    }
                    /* A producer faster than this reader never lets the
                     * stream run dry: the deadline ends the drain too. */
                    if (clock_mono_ms() >= deadline) {
                        done = 0;
                        break;
                    }
                    continue;
                }
                if (n == LIBSSH2_ERROR_EAGAIN) {
                    done = 0;
                    break;
                }
                if (n < 0) {
                    rc = ssh_fail_dead(s, e, NERR_IO, "read command output");
                    goto out;
                }
                break; /* 0: this stream is at EOF */
            }
        }
        if (done || (libssh2_channel_eof(ch) && !progress))
            break;
        /* A command that never stops writing always makes progress, so the
         * deadline is checked on every round, not only when idle. */
        if ((progress && clock_mono_ms() >= deadline) ||
            (!progress && ssh_wait(s, deadline) != 0)) {
            rc = nerr_set(e, NERR_TIMEOUT, "ssh %s: command timed out after %d ms: %.200s",
                          s->label, timeout_ms, cmdline);
            goto timeout;
        }
    }
    SSH_RETRY(s, deadline, lrc, libssh2_channel_close(ch));
    if (lrc == 0)
        SSH_RETRY(s, deadline, lrc, libssh2_channel_wait_closed(ch));
    if (lrc == LIBSSH2_ERROR_TIMEOUT) {
        rc = nerr_set(e, NERR_TIMEOUT, "ssh %s: command timed out after %d ms: %.200s", s->label,
                      timeout_ms, cmdline);
        goto timeout;
    }
    if (lrc) {
        rc = ssh_fail_dead(s, e, NERR_IO, "close channel");
        goto out;
    }
    char *sig = NULL;
    size_t siglen = 0;
    libssh2_channel_get_exit_signal(ch, &sig, &siglen, NULL, NULL, NULL, NULL);
    if (sig && siglen) {
        snprintf(r->exit_signal, sizeof(r->exit_signal), "%.*s", (int)siglen, sig);
        r->exit_status = -1;
    } else {
        r->exit_status = libssh2_channel_get_exit_status(ch);
    }
    free(sig); /* allocated with libssh2's default allocator, i.e. malloc */
    SSH_RETRY(s, deadline, lrc, libssh2_channel_free(ch));
    ch = NULL;
    goto out;
timeout:
    if (ssh_abandon_channel(s, ch) != 0)
        s->dead = 1;
    ch = NULL;
out:
    /* On a transport failure ch is left to libssh2_session_free. */
    r->out = ob.p;
    r->out_len = ob.len;
    r->out_truncated = ob.truncated;
    r->err = eb.p;
    r->err_len = eb.len;
    r->err_truncated = eb.truncated;
    if (!r->out)
        r->out = calloc(1, 1);
    if (!r->err)
        r->err = calloc(1, 1);
    return rc;
}

int ssh_exec_argv(struct ssh_session *s, const char *const argv[], int timeout_ms,
                  struct ssh_result *r, struct nerr *e)
{
    char *cmd = NULL;
    int rc = shquote_join(argv, &cmd, e);
    if (rc) {
        memset(r, 0, sizeof(*r));
        r->exit_status = -1;
        return rc;
    }
    rc = ssh_exec(s, cmd, timeout_ms, r, e);
    free(cmd);
    return rc;
}

/* Starts SFTP on first use. */
int ssh_sftp(struct ssh_session *s, struct nerr *e)
{
    if (s->dead)
        return nerr_set(e, NERR_CLOSED, "ssh %s: session is dead; reconnect", s->label);
    if (s->sftp)
        return 0;
    int64_t deadline = clock_mono_ms() + s->io_timeout_ms;
    for (;;) {
        s->sftp = libssh2_sftp_init(s->ls);
        if (s->sftp)
            return 0;
        if (libssh2_session_last_errno(s->ls) != LIBSSH2_ERROR_EAGAIN)
            return ssh_fail_dead(s, e, NERR_IO, "sftp init");
        if (ssh_wait(s, deadline) != 0)
            return ssh_fail_dead(s, e, NERR_TIMEOUT, "sftp init");
    }
}

const char *ssh_fx_text(unsigned long fx)
{
    switch (fx) {
    case LIBSSH2_FX_NO_SUCH_FILE:
        return "no such file";
    case LIBSSH2_FX_NO_SUCH_PATH:
        return "no such path";
    case LIBSSH2_FX_PERMISSION_DENIED:
        return "permission denied";
    case LIBSSH2_FX_FAILURE:
        return "failure";
    case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM:
        return "no space on filesystem";
    case LIBSSH2_FX_QUOTA_EXCEEDED:
        return "quota exceeded";
    case LIBSSH2_FX_FILE_ALREADY_EXISTS:
        return "file already exists";
    case LIBSSH2_FX_NOT_A_DIRECTORY:
        return "not a directory";
    case LIBSSH2_FX_OP_UNSUPPORTED:
        return "operation unsupported by the server";
    case LIBSSH2_FX_BAD_MESSAGE:
        return "bad message";
    default:
        return "sftp error";
    }
}

/* An SFTP-level failure leaves the session usable; a transport one does not. */
int ssh_sftp_fail(struct ssh_session *s, struct nerr *e, const char *what, const char *path)
{
    int lerr = libssh2_session_last_errno(s->ls);
    if (lerr == LIBSSH2_ERROR_SFTP_PROTOCOL) {
        unsigned long fx = libssh2_sftp_last_error(s->sftp);
        int code = (fx == LIBSSH2_FX_NO_SUCH_FILE || fx == LIBSSH2_FX_NO_SUCH_PATH) ? NERR_NOTFOUND
                   : fx == LIBSSH2_FX_PERMISSION_DENIED                             ? NERR_AUTH
                                                                                    : NERR_IO;
        if (fx == LIBSSH2_FX_OP_UNSUPPORTED)
            code = NERR_UNSUPPORTED;
        return nerr_set(e, code, "ssh %s: sftp %s %s: %s (SFTP status %lu)", s->label, what, path,
                        ssh_fx_text(fx), fx);
    }
    char msg[320];
    snprintf(msg, sizeof(msg), "sftp %s %.280s", what, path);
    return ssh_fail_dead(s, e, NERR_IO, msg);
}

LIBSSH2_SFTP_HANDLE *ssh_sftp_open(struct ssh_session *s, const char *path, unsigned long flags,
                                   long mode, struct nerr *e, int *rc)
{
    int64_t deadline = clock_mono_ms() + s->io_timeout_ms;
    for (;;) {
        LIBSSH2_SFTP_HANDLE *h = libssh2_sftp_open(s->sftp, path, flags, mode);
        if (h)
            return h;
        if (libssh2_session_last_errno(s->ls) != LIBSSH2_ERROR_EAGAIN) {
            *rc = ssh_sftp_fail(s, e, "open", path);
            return NULL;
        }
        if (ssh_wait(s, deadline) != 0) {
            *rc = ssh_fail_dead(s, e, NERR_TIMEOUT, "sftp open");
            return NULL;
        }
    }
}

int ssh_sftp_close(struct ssh_session *s, LIBSSH2_SFTP_HANDLE *h, struct nerr *e, const char *path)
{
    int64_t deadline = clock_mono_ms() + s->io_timeout_ms;
    int lrc;
    SSH_RETRY(s, deadline, lrc, libssh2_sftp_close_handle(h));
    if (lrc == LIBSSH2_ERROR_TIMEOUT)
        return ssh_fail_dead(s, e, NERR_TIMEOUT, "sftp close");
    if (lrc)
        return ssh_sftp_fail(s, e, "close", path);
    return 0;
}

int ssh_upload(struct ssh_session *s, const char *local_path, const char *remote_path, mode_t mode,
               struct nerr *e)
{
    if (!s || !local_path || !remote_path)
        return nerr_set(e, NERR_INVALID, "ssh_upload: arguments required");
    int rc = ssh_sftp(s, e);
    if (rc)
        return rc;
    int fd = open(local_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        if (err == ENOENT)
            return nerr_set(e, NERR_NOTFOUND, "ssh upload: %s does not exist", local_path);
        return nerr_sys(e, err, "ssh upload: open %s", local_path);
    }
    LIBSSH2_SFTP_HANDLE *h =
        ssh_sftp_open(s, remote_path, LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_TRUNC,
                      (long)mode, e, &rc);
    if (!h)
        goto fail;
    char buf[SSH_CHUNK];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = nerr_sys(e, errno, "ssh upload: read %s", local_path);
            goto fail_h;
        }
        if (n == 0)
            break;
        size_t off = 0;
        int64_t deadline = clock_mono_ms() + s->io_timeout_ms;
        while (off < (size_t)n) {
            ssize_t w = libssh2_sftp_write(h, buf + off, (size_t)n - off);
            if (w > 0) {
                off += (size_t)w;
                deadline = clock_mono_ms() + s->io_timeout_ms;
            } else if (w == LIBSSH2_ERROR_EAGAIN || w == 0) {
                if (ssh_wait(s, deadline) != 0) {
                    rc = ssh_fail_dead(s, e, NERR_TIMEOUT, "sftp write");
                    goto fail_h;
                }
            } else {
                rc = ssh_sftp_fail(s, e, "write", remote_path);
                goto fail_h;
            }
        }
    }
    /* The open's mode only applies to a new file and is subject to the
     * server's umask; set it explicitly. */
    LIBSSH2_SFTP_ATTRIBUTES attrs = {.flags = LIBSSH2_SFTP_ATTR_PERMISSIONS,
                                     .permissions = (unsigned long)mode & 07777};
    int64_t deadline = clock_mono_ms() + s->io_timeout_ms;
    int lrc;
    SSH_RETRY(s, deadline, lrc, libssh2_sftp_fsetstat(h, &attrs));
    if (lrc) {
        rc = lrc == LIBSSH2_ERROR_TIMEOUT ? ssh_fail_dead(s, e, NERR_TIMEOUT, "sftp fsetstat")
                                          : ssh_sftp_fail(s, e, "chmod", remote_path);
        goto fail_h;
    }
    rc = ssh_sftp_close(s, h, e, remote_path);
    close(fd);
    return rc;
fail_h:
    if (!s->dead)
        ssh_sftp_close(s, h, NULL, remote_path);
fail:
    close(fd);
    return rc;
}

int ssh_download(struct ssh_session *s, const char *remote_path, const char *local_path,
                 struct nerr *e)
{
    if (!s || !local_path || !remote_path)
        return nerr_set(e, NERR_INVALID, "ssh_download: arguments required");
    int rc = ssh_sftp(s, e);
    if (rc)
        return rc;
    char *tmp = NULL;
    int fd = -1;
    LIBSSH2_SFTP_HANDLE *h = ssh_sftp_open(s, remote_path, LIBSSH2_FXF_READ, 0, e, &rc);
    if (!h)
        return rc;
    if (asprintf(&tmp, "%s.partXXXXXX", local_path) < 0) {
        tmp = NULL;
        rc = nerr_set(e, NERR_NOMEM, "ssh download: out of memory");
        goto fail;
    }
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = nerr_sys(e, errno, "ssh download: create %s", tmp);
        free(tmp);
        tmp = NULL;
        goto fail;
    }
    char buf[SSH_CHUNK];
    int64_t deadline = clock_mono_ms() + s->io_timeout_ms;
    for (;;) {
        ssize_t n = libssh2_sftp_read(h, buf, sizeof(buf));
        if (n == LIBSSH2_ERROR_EAGAIN) {
            if (ssh_wait(s, deadline) != 0) {
                rc = ssh_fail_dead(s, e, NERR_TIMEOUT, "sftp read");
                goto fail;
            }
            continue;
        }
        if (n < 0) {
            rc = ssh_sftp_fail(s, e, "read", remote_path);
            goto fail;
        }
        if (n == 0)
            break;
        deadline = clock_mono_ms() + s->io_timeout_ms;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = nerr_sys(e, errno, "ssh download: write %s", tmp);
                goto fail;
            }
            off += w;
        }
    }
    rc = ssh_sftp_close(s, h, e, remote_path);
    h = NULL;
    if (rc)
        goto fail;
    if (fsync(fd) != 0) {
        rc = nerr_sys(e, errno, "ssh download: fsync %s", tmp);
        goto fail;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, local_path) != 0) {
        rc = nerr_sys(e, errno, "ssh download: rename %s to %s", tmp, local_path);
        goto fail;
    }
    free(tmp);
    return 0;
fail:
    if (h && !s->dead)
        ssh_sftp_close(s, h, NULL, remote_path);
    if (fd >= 0)
        close(fd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    return rc;
}

/* ---- pool ---- */

struct ssh_pool_entry {
    char *host;
    char *user;
    int port;
    struct ssh_session *sess;
};

struct ssh_pool {
    int max_attempts;
    int max_total_ms;
    struct ssh_pool_entry *v;
    size_t n, cap;
};

int ssh_pool_new(int max_attempts, int max_total_ms, struct ssh_pool **out, struct nerr *e)
{
    *out = calloc(1, sizeof(**out));
    if (!*out)
        return nerr_set(e, NERR_NOMEM, "ssh pool: out of memory");
    (*out)->max_attempts = max_attempts > 0 ? max_attempts : 5;
    (*out)->max_total_ms = max_total_ms > 0 ? max_total_ms : 30000;
    return 0;
}

static void ssh_sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int ssh_pool_get(struct ssh_pool *p, const struct ssh_host_opts *o, struct ssh_session **out,
                 struct nerr *e)
{
    *out = NULL;
    if (!o || !o->host || !o->user)
        return nerr_set(e, NERR_INVALID, "ssh pool: host and user are required");
    int port = o->port > 0 ? o->port : 22;
    struct ssh_pool_entry *ent = NULL;
    for (size_t i = 0; i < p->n; i++) {
        if (p->v[i].port == port && !strcmp(p->v[i].host, o->host) &&
            !strcmp(p->v[i].user, o->user))
            ent = &p->v[i];
    }
    if (!ent) {
        if (p->n == p->cap) {
            size_t cap = p->cap ? p->cap * 2 : 8;
            struct ssh_pool_entry *nv = realloc(p->v, cap * sizeof(*nv));
            if (!nv)
                return nerr_set(e, NERR_NOMEM, "ssh pool: out of memory");
            p->v = nv;
            p->cap = cap;
        }
        ent = &p->v[p->n];
        memset(ent, 0, sizeof(*ent));
        ent->host = strdup(o->host);
        ent->user = strdup(o->user);
        ent->port = port;
        if (!ent->host || !ent->user) {
            free(ent->host);
            free(ent->user);
            return nerr_set(e, NERR_NOMEM, "ssh pool: out of memory");
        }
        p->n++;
    }
    if (ent->sess && !ent->sess->dead) {
        *out = ent->sess;
        return 0;
    }
    ssh_close(ent->sess);
    ent->sess = NULL;
    int64_t deadline = clock_mono_ms() + p->max_total_ms;
    int64_t pause = 100;
    int rc = NERR_INTERNAL;
    for (int attempt = 1; attempt <= p->max_attempts; attempt++) {
        struct ssh_host_opts oo = *o;
        int64_t left = deadline - clock_mono_ms();
        if (left <= 0)
            break;
        int ct = oo.connect_timeout_ms > 0 ? oo.connect_timeout_ms : 10000;
        oo.connect_timeout_ms = ct < left ? ct : (int)left;
        rc = ssh_connect(&oo, &ent->sess, e);
        if (rc == 0) {
            *out = ent->sess;
            return 0;
        }
        /* A refused host key or key will not fix itself by retrying. */
        if (rc == NERR_AUTH || rc == NERR_INVALID || rc == NERR_NOTFOUND || rc == NERR_PARSE)
            return rc;
        if (attempt < p->max_attempts) {
            left = deadline - clock_mono_ms();
            ssh_sleep_ms(pause < left ? pause : left);
            pause *= 2;
        }
    }
    if (e && e->code == rc) {
        char prev[NERR_MSG_MAX];
        snprintf(prev, sizeof(prev), "%s", e->msg);
        nerr_set(e, rc, "ssh pool: gave up on %s@%s:%d after %d attempts / %d ms: %.400s", o->user,
                 o->host, port, p->max_attempts, p->max_total_ms, prev);
    }
    return rc;
}

void ssh_pool_reset(struct ssh_pool *p, const char *host)
{
    for (size_t i = 0; i < p->n; i++) {
        if (!strcmp(p->v[i].host, host)) {
            ssh_close(p->v[i].sess);
            p->v[i].sess = NULL;
        }
    }
}

void ssh_pool_free(struct ssh_pool *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        ssh_close(p->v[i].sess);
        free(p->v[i].host);
        free(p->v[i].user);
    }
    free(p->v);
    free(p);
}
