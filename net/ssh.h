/*
 * ssh.h — the SSH layer of nines' clients (libssh2): sessions with
 * public-key authentication and known_hosts checking, command execution
 * with a deadline, SFTP upload/download, and a per-host session pool that
 * reconnects after a host was powered off and on.
 *
 * Host keys. The server's key is looked up in opts->known_hosts (OpenSSH
 * format; hashed entries are understood). A key that is not there is
 * refused under SSH_HOSTKEY_STRICT (the default) and appended to the file
 * under SSH_HOSTKEY_ACCEPT_NEW ("[host]:port" when port != 22, as OpenSSH
 * writes it). A key that differs from a recorded key of the same type is
 * always refused. Both refusals return NERR_AUTH with a message holding the
 * key type and its SHA256 fingerprint as OpenSSH prints it
 * ("SHA256:<base64 without padding>") and the words "unknown host key" or
 * "host key CHANGED".
 *
 * Deadlines. Every call is bounded. The session runs libssh2 in
 * non-blocking mode and polls its socket: ssh_connect within
 * opts->connect_timeout_ms (TCP, handshake, host key, auth together);
 * ssh_exec within its timeout_ms; SFTP transfers fail when no byte moves
 * for opts->io_timeout_ms.
 *
 * Session state:  LIVE --(transport error, I/O deadline)--> DEAD
 * A DEAD session fails every call with NERR_CLOSED; only ssh_close is
 * useful on it. ssh_exec's own timeout does NOT make a session dead: the
 * channel is closed (the remote command is not killed — libssh2 1.10 cannot
 * send signals — it gets EOF on stdin and its output is discarded) and the
 * session stays usable. If the channel cannot even be closed within a short
 * grace period, the session is marked DEAD.
 *
 * SFTP files. Besides streaming a local file up or down, a session serves
 * as a remote object store (archive/sftpobj.c): ssh_sftp_put writes a
 * buffer under a temporary name, fsyncs it (fsync@openssh.com), renames it
 * over the final name and fsyncs the directory, so the name holds either
 * the old bytes or the new ones, durably; ssh_sftp_get, _stat, _list,
 * _mkdirs, _remove, _rename and _fsync do the rest. Each of their requests
 * is bounded by opts->io_timeout_ms, like a transfer that stops moving.
 * Replacing a file needs POSIX rename semantics, which SFTP v3 (what
 * OpenSSH speaks) lacks: its RENAME fails when the target exists, and
 * libssh2 1.10 sends nothing else (its RENAME_OVERWRITE/ATOMIC/NATIVE
 * flags exist only in SFTP v5+). OpenSSH offers the extension
 * posix-rename@openssh.com, which libssh2 cannot send, so ssh_sftp_rename
 * sends it itself on a second "sftp" subsystem channel of the same session
 * (opened on the first rename, kept until ssh_close), and falls back to
 * libssh2's rename with those flags where the server does not offer it.
 *
 * Errors: NERR_INVALID (bad arguments), NERR_IO (socket or protocol
 * failure, connection refused), NERR_TIMEOUT, NERR_AUTH (host key refused,
 * authentication failed, SFTP permission denied), NERR_NOTFOUND (SFTP path
 * missing, local file missing), NERR_LIMIT (ssh_sftp_get above its max),
 * NERR_UNSUPPORTED (the server lacks an SFTP extension a call needs, e.g.
 * fsync@openssh.com), NERR_NOMEM, NERR_CLOSED (dead session).
 *
 * Ownership: opts strings are copied by ssh_connect. ssh_result buffers are
 * malloc'd, owned by the caller, released by ssh_result_free.
 * Thread-safety: a session, like a libssh2 session, belongs to one thread
 * at a time. Different sessions may be used from different threads.
 * libssh2's global init is done once, under pthread_once.
 */
#ifndef NINES_NET_SSH_H
#define NINES_NET_SSH_H

#include <stddef.h>
#include <sys/types.h>

#include "lib/err.h"

enum ssh_hostkey_policy {
    SSH_HOSTKEY_STRICT = 0, /* unknown or changed key: refuse */
    SSH_HOSTKEY_ACCEPT_NEW, /* unknown key: record and accept; changed: refuse */
};

struct ssh_host_opts {
    const char *host; /* name or address */
    int port;         /* 0 means 22 */
    const char *user;
    const char *key_path;    /* private key, OpenSSH or PEM format, no passphrase;
                                key_path.pub is used if present */
    const char *known_hosts; /* required */
    enum ssh_hostkey_policy hostkey_policy;
    int connect_timeout_ms; /* 0 means 10000 */
    int io_timeout_ms;      /* SFTP idle limit; 0 means 30000 */
};

struct ssh_session;

/* Default and hard cap of each of stdout and stderr kept by ssh_exec. */
#define SSH_OUTPUT_MAX ((size_t)16 << 20)

struct ssh_result {
    int exit_status;      /* the command's exit status, or -1 if killed by a signal
                             or the server sent none */
    char exit_signal[32]; /* signal name without "SIG" ("KILL"), "" if none */
    char *out, *err;      /* NUL-terminated; may hold NUL bytes before out_len */
    size_t out_len, err_len;
    int out_truncated, err_truncated; /* more was produced than kept (and discarded) */
    size_t max_output;                /* in: cap per stream; 0 means SSH_OUTPUT_MAX */
};

/* Opens an authenticated session. On success *out is owned by the caller
 * (ssh_close); on error *out is NULL. */
int ssh_connect(const struct ssh_host_opts *opts, struct ssh_session **out, struct nerr *e);

/* Disconnects (politely when still live, within a short grace period) and
 * frees. NULL is allowed. */
void ssh_close(struct ssh_session *s);

/* 1 if the session has hit a transport error and must be replaced. */
int ssh_session_dead(const struct ssh_session *s);

/* Runs cmdline through the remote user's shell. out's fields are reset
 * (except max_output) and filled; the caller frees them with
 * ssh_result_free even on error. A non-zero exit status is not an error:
 * the call returns 0 and reports it in out->exit_status. */
int ssh_exec(struct ssh_session *s, const char *cmdline, int timeout_ms, struct ssh_result *out,
             struct nerr *e);

/* Like ssh_exec with argv (NULL-terminated) quoted by shquote_join, so that
 * each element reaches the remote program as one argument. Requires a POSIX
 * login shell on the remote side. */
int ssh_exec_argv(struct ssh_session *s, const char *const argv[], int timeout_ms,
                  struct ssh_result *out, struct nerr *e);

void ssh_result_free(struct ssh_result *r);

/* Streams local_path to remote_path (created or truncated, then given
 * mode) in fixed-size chunks. The remote directory must exist. */
int ssh_upload(struct ssh_session *s, const char *local_path, const char *remote_path, mode_t mode,
               struct nerr *e);

/* Streams remote_path into local_path. Written to a temporary file next to
 * local_path and renamed on success, so a failed download leaves no
 * partial file behind. */
int ssh_download(struct ssh_session *s, const char *remote_path, const char *local_path,
                 struct nerr *e);

/* ---- SFTP files (see "SFTP files" above) ----
 * Paths are the server's (absolute, or relative to the login directory).
 * An SFTP status error (a missing path, permission denied, an unsupported
 * extension) leaves the session live; a transport failure or a request that
 * gets no answer within io_timeout_ms marks it DEAD. */

enum ssh_ftype { SSH_FT_REG = 1, SSH_FT_DIR, SSH_FT_OTHER };

struct ssh_sftp_attrs {
    enum ssh_ftype type;
    unsigned long long size; /* bytes, as the server reports them */
};

/* Attributes of path (symbolic links followed); NERR_NOTFOUND when absent. */
int ssh_sftp_stat(struct ssh_session *s, const char *path, struct ssh_sftp_attrs *out,
                  struct nerr *e);

/* mkdir -p with mode (subject to the server's umask); existing directories
 * are fine, anything else in the way is NERR_IO. Not fsync'd. */
int ssh_sftp_mkdirs(struct ssh_session *s, const char *path, mode_t mode, struct nerr *e);

/* Atomically and durably creates or replaces path with len bytes of buf
 * (borrowed for the call): writes "DIR/.BASE.tmp-PID-RANDOM" (created
 * exclusively, mode subject to the server's umask), fsyncs it, renames it
 * over path (ssh_sftp_rename) and fsyncs DIR. The directory must exist
 * (NERR_NOTFOUND otherwise). On an error the temporary is removed when the
 * session still allows it; a crash leaves at most the temporary, whose
 * name starts with '.'. Needs fsync@openssh.com (NERR_UNSUPPORTED). */
int ssh_sftp_put(struct ssh_session *s, const char *path, const void *buf, size_t len, mode_t mode,
                 struct nerr *e);

/* Reads path whole into *buf (malloc'd, owned by the caller, NUL-terminated
 * past *len). NERR_NOTFOUND when absent, NERR_LIMIT when it holds more than
 * max bytes (nothing is returned then). */
int ssh_sftp_get(struct ssh_session *s, const char *path, size_t max, unsigned char **buf,
                 size_t *len, struct nerr *e);

/* The entries of directory dir, without "." and "..", in the server's
 * order. is_dir comes from the server's listing (OpenSSH: lstat, so a
 * symbolic link is not a directory). NERR_NOTFOUND when dir is absent.
 * *out is owned by the caller: ssh_sftp_list_free. */
struct ssh_dirent {
    char *name;
    int is_dir;
};
int ssh_sftp_list(struct ssh_session *s, const char *dir, struct ssh_dirent **out, size_t *n,
                  struct nerr *e);
void ssh_sftp_list_free(struct ssh_dirent *v, size_t n);

/* Removes the file path (NERR_NOTFOUND when absent). Not fsync'd: see
 * ssh_sftp_fsync. */
int ssh_sftp_remove(struct ssh_session *s, const char *path, struct nerr *e);

/* Renames from to to, replacing to atomically (rename(2) on the server,
 * through posix-rename@openssh.com; see "SFTP files" above). */
int ssh_sftp_rename(struct ssh_session *s, const char *from, const char *to, struct nerr *e);

/* fsync(2) of a file or a directory on the server (opened read-only, then
 * fsync@openssh.com), so that entries created or removed in a directory
 * are durable. */
int ssh_sftp_fsync(struct ssh_session *s, const char *path, struct nerr *e);

/*
 * The pool: one session per (host, port, user), reused across game-day
 * steps. ssh_pool_get returns the cached session when it is live and
 * otherwise (never connected, marked dead by a failed call, or reset)
 * connects anew, retrying up to max_attempts times within max_total_ms
 * with doubling pauses (from 100 ms), since a host coming back from a
 * power-off refuses connections for a while.
 *
 * The session returned is borrowed: valid until the next ssh_pool_get for
 * the same host that reconnects, ssh_pool_reset of that host, or
 * ssh_pool_free. The opts strings are copied at each (re)connection.
 * Not thread-safe: one pool per runner thread, or a lock around it.
 */
struct ssh_pool;

/* max_attempts <= 0 means 5; max_total_ms <= 0 means 30000. */
int ssh_pool_new(int max_attempts, int max_total_ms, struct ssh_pool **out, struct nerr *e);
int ssh_pool_get(struct ssh_pool *p, const struct ssh_host_opts *opts, struct ssh_session **out,
                 struct nerr *e);
/* Closes every cached session to host (any port or user). */
void ssh_pool_reset(struct ssh_pool *p, const char *host);
void ssh_pool_free(struct ssh_pool *p);

#endif
