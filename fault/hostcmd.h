/*
 * hostcmd.h — running one shell command on an inventory host over SSH, for
 * the fault kinds that act inside a host (partition, pause, degrade, disk
 * full, bit rot) rather than on its power.
 *
 * What a call does: connects to h as the inventory says (inventory_ssh_opts:
 * address, port, user, key, known_hosts, host keys checked STRICTLY — an
 * unknown or changed key is refused, never recorded), runs cmd through the
 * remote user's login shell (a POSIX sh: quote values with net/shquote.h),
 * and disconnects. No session is kept between calls, so a host that was
 * powered off and on in between needs nothing special.
 *
 * Bounds: the whole call — TCP connect, handshake, authentication and the
 * command — ends within timeout_ms (HOSTCMD_TIMEOUT_MIN_MS..
 * HOSTCMD_TIMEOUT_MAX_MS, clamped); the connect alone within at most
 * HOSTCMD_CONNECT_MS of it. On a timeout the channel is closed but the
 * remote command is NOT killed (libssh2 cannot signal it, net/ssh.h): a
 * command that could hang should bound itself (`timeout 5 nft ...`).
 *
 * Results: a non-zero exit status is not an error of hostcmd_run (it is in
 * r->exit_status); hostcmd_run_ok makes it one. Each of stdout and stderr
 * keeps at most HOSTCMD_OUT_MAX bytes (the rest is dropped, *_truncated set).
 *
 * Errors name the host, so a caller may pass them on as they are:
 *   "host h2 (10.67.197.3): ssh: <net/ssh.h's reason>"           (connect)
 *   "host h2 (10.67.197.3): `nft ...` timed out after 5000 ms"
 *   "host h2 (10.67.197.3): `nft ...` failed: exit status 1: <stderr>" (_ok)
 * Codes: those of ssh_connect/ssh_exec (NERR_IO, NERR_TIMEOUT, NERR_AUTH,
 * NERR_CLOSED, NERR_NOMEM); NERR_INVALID for a NULL/empty command; and
 * from hostcmd_run_ok NERR_IO for a non-zero exit status.
 *
 * SAFETY: hostcmd_run itself does not refuse this machine (tests run it
 * against an sshd on 127.0.0.1). A fault kind MUST call
 * hostcmd_check_target(h, ...) before it injects or heals anything on h;
 * it refuses, as the power drivers do (fault/power.h SAFETY), a host whose
 * address is loopback/unspecified, one of this machine's interface
 * addresses, a name resolving to one, "localhost", or this machine's host
 * name. Lab hosts live in network namespaces of their own, so their
 * addresses are not this machine's and pass.
 *
 * Ownership: h and cmd are borrowed for the call. r's buffers are malloc'd
 * and owned by the caller: hostcmd_result_free, also after an error.
 * Thread-safety: calls share no state; concurrent calls (even on the same
 * host) are fine.
 */
#ifndef NINES_FAULT_HOSTCMD_H
#define NINES_FAULT_HOSTCMD_H

#include <stddef.h>

#include "fault/inventory.h"
#include "lib/err.h"

#define HOSTCMD_TIMEOUT_MIN_MS 100
#define HOSTCMD_TIMEOUT_MAX_MS (3600 * 1000)
#define HOSTCMD_CONNECT_MS 10000           /* at most this much of timeout_ms goes to connecting */
#define HOSTCMD_OUT_MAX ((size_t)64 << 10) /* bytes kept of stdout, and of stderr */

struct hostcmd_result {
    int exit_status;      /* the command's exit status; -1 when killed by a signal or none sent */
    char exit_signal[32]; /* "KILL" (without "SIG"), "" if none */
    char *out, *err;      /* NUL-terminated (never NULL after a call that reached exec) */
    size_t out_len, err_len;
    int out_truncated, err_truncated;
};

/* Runs cmd on h within timeout_ms (see above). r is reset first. */
int hostcmd_run(const struct inv_host *h, const char *cmd, int timeout_ms, struct hostcmd_result *r,
                struct nerr *err);

/* hostcmd_run, and a non-zero exit status becomes NERR_IO whose message
 * names the host, what (a short description, e.g. "nft add table"; NULL:
 * cmd itself), the status and the first line of stderr (or stdout). r may
 * be NULL when the output is not wanted. */
int hostcmd_run_ok(const struct inv_host *h, const char *what, const char *cmd, int timeout_ms,
                   struct hostcmd_result *r, struct nerr *err);

/* 0 when h may be acted on, else NERR_INVALID:
 * "refusing to <verb> host 'h1': 127.0.0.1 is a loopback address".
 * verb: "partition", "pause", ... Touches nothing (may resolve a DNS name). */
int hostcmd_check_target(const struct inv_host *h, const char *verb, struct nerr *err);

/* NULL is allowed; r is reset to empty. */
void hostcmd_result_free(struct hostcmd_result *r);

#endif
