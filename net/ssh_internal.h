/*
 * ssh_internal.h — what ssh.c (sessions, exec, transfers, the pool) and
 * ssh_sftp.c (the SFTP file API of ssh.h) share: the session struct and
 * the helpers that bound every libssh2 call. Included by those two only.
 */
#ifndef NINES_NET_SSH_INTERNAL_H
#define NINES_NET_SSH_INTERNAL_H

#include <libssh2.h>
#include <libssh2_sftp.h>
#include <stdint.h>

#include "lib/err.h"
#include "net/ssh.h"

#define SSH_CHUNK 32768
#define SSH_GRACE_MS 300
#define SSH_MAX_ORPHANS 16

struct ssh_session {
    int fd;
    LIBSSH2_SESSION *ls;
    LIBSSH2_SFTP *sftp;
    int dead;
    int io_timeout_ms;
    char *label; /* "user@host:port" for messages */
    /* Channels whose close timed out; freed when the peer finally answers. */
    LIBSSH2_CHANNEL *orphans[SSH_MAX_ORPHANS];
    int n_orphans;
    /* The second "sftp" channel for posix-rename@openssh.com (ssh_sftp_rename):
     * xstate 0 not tried yet, 1 open (xch), -1 the server does not offer it. */
    LIBSSH2_CHANNEL *xch;
    int xstate;
    uint32_t xid;
};

/* Repeats a libssh2 call while it says EAGAIN, waiting on the socket. On a
 * missed deadline rc_var is set to LIBSSH2_ERROR_TIMEOUT. */
#define SSH_RETRY(s, deadline, rc_var, call)                                                       \
    do {                                                                                           \
        while (((rc_var) = (call)) == LIBSSH2_ERROR_EAGAIN) {                                      \
            if (ssh_wait((s), (deadline)) != 0) {                                                  \
                (rc_var) = LIBSSH2_ERROR_TIMEOUT;                                                  \
                break;                                                                             \
            }                                                                                      \
        }                                                                                          \
    } while (0)

int ssh_fail_dead(struct ssh_session *s, struct nerr *e, int code, const char *what);
int ssh_wait(struct ssh_session *s, int64_t deadline);
int ssh_sftp(struct ssh_session *s, struct nerr *e);
const char *ssh_fx_text(unsigned long fx);
int ssh_sftp_fail(struct ssh_session *s, struct nerr *e, const char *what, const char *path);
LIBSSH2_SFTP_HANDLE *ssh_sftp_open(struct ssh_session *s, const char *path, unsigned long flags,
                                   long mode, struct nerr *e, int *rc);
int ssh_sftp_close(struct ssh_session *s, LIBSSH2_SFTP_HANDLE *h, struct nerr *e, const char *path);
int ssh_abandon_channel(struct ssh_session *s, LIBSSH2_CHANNEL *ch);

#endif
