/*
 * fault/hostcmd.c — one shell command on an inventory host over SSH
 * (contract in hostcmd.h).
 */
#include "fault/hostcmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "fault/power_driver.h" /* power_address_is_local: the one refusal of this machine */
#include "lib/clock.h"
#include "net/ssh.h"

void hostcmd_result_free(struct hostcmd_result *r)
{
    if (!r)
        return;
    free(r->out);
    free(r->err);
    *r = (struct hostcmd_result){.exit_status = -1};
}

/* Prefixes err's message with the host, so that every error names it. */
static int with_host(const struct inv_host *h, int rc, struct nerr *err)
{
    if (err && rc) {
        char msg[NERR_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", err->msg);
        nerr_set(err, rc, "host %s (%s): %s", h->name, h->address, msg);
    }
    return rc;
}

int hostcmd_run(const struct inv_host *h, const char *cmd, int timeout_ms, struct hostcmd_result *r,
                struct nerr *err)
{
    struct ssh_session *s = NULL;
    struct ssh_host_opts o;
    struct ssh_result sr = {.max_output = HOSTCMD_OUT_MAX};
    int rc;

    *r = (struct hostcmd_result){.exit_status = -1};
    if (!h || !cmd || !*cmd)
        return nerr_set(err, NERR_INVALID, "hostcmd: no host or empty command");
    if (timeout_ms < HOSTCMD_TIMEOUT_MIN_MS)
        timeout_ms = HOSTCMD_TIMEOUT_MIN_MS;
    if (timeout_ms > HOSTCMD_TIMEOUT_MAX_MS)
        timeout_ms = HOSTCMD_TIMEOUT_MAX_MS;

    int64_t deadline = clock_mono_ms() + timeout_ms;
    int connect_ms = timeout_ms < HOSTCMD_CONNECT_MS ? timeout_ms : HOSTCMD_CONNECT_MS;
    inventory_ssh_opts(h, connect_ms, &o);
    if ((rc = ssh_connect(&o, &s, err)))
        return with_host(h, rc, err);

    int64_t left = deadline - clock_mono_ms();
    if (left < 1) {
        ssh_close(s);
        return nerr_set(err, NERR_TIMEOUT,
                        "host %s (%s): `%.200s` timed out after %d ms "
                        "(connecting took it all)",
                        h->name, h->address, cmd, timeout_ms);
    }
    rc = ssh_exec(s, cmd, (int)left, &sr, err);
    ssh_close(s);

    r->exit_status = sr.exit_status;
    snprintf(r->exit_signal, sizeof r->exit_signal, "%s", sr.exit_signal);
    r->out = sr.out, r->out_len = sr.out_len, r->out_truncated = sr.out_truncated;
    r->err = sr.err, r->err_len = sr.err_len, r->err_truncated = sr.err_truncated;
    if (!r->out && (r->out = calloc(1, 1)) == NULL)
        rc = rc ? rc : nerr_set(err, NERR_NOMEM, "hostcmd: out of memory");
    if (!r->err && (r->err = calloc(1, 1)) == NULL)
        rc = rc ? rc : nerr_set(err, NERR_NOMEM, "hostcmd: out of memory");
    if (rc == NERR_TIMEOUT)
        return nerr_set(err, NERR_TIMEOUT, "host %s (%s): `%.200s` timed out after %d ms", h->name,
                        h->address, cmd, timeout_ms);
    return with_host(h, rc, err);
}

/* The first non-blank line of s, at most cap - 1 bytes, into buf. */
static void first_line(const char *s, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (!s)
        return;
    while (*s == '\n' || *s == '\r' || *s == ' ' || *s == '\t')
        s++;
    size_t n = strcspn(s, "\r\n");
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
}

int hostcmd_run_ok(const struct inv_host *h, const char *what, const char *cmd, int timeout_ms,
                   struct hostcmd_result *r, struct nerr *err)
{
    struct hostcmd_result own;
    struct hostcmd_result *res = r ? r : &own;
    int rc = hostcmd_run(h, cmd, timeout_ms, res, err);
    if (rc == 0 && res->exit_status != 0) {
        char line[256];
        first_line(res->err && *res->err ? res->err : res->out, line, sizeof line);
        if (res->exit_status == -1 && res->exit_signal[0])
            rc = nerr_set(err, NERR_IO, "host %s (%s): `%.200s` failed: killed by SIG%s%s%s",
                          h->name, h->address, what ? what : cmd, res->exit_signal,
                          *line ? ": " : "", line);
        else
            rc =
                nerr_set(err, NERR_IO, "host %s (%s): `%.200s` failed: exit status %d%s%s", h->name,
                         h->address, what ? what : cmd, res->exit_status, *line ? ": " : "", line);
    }
    if (!r)
        hostcmd_result_free(&own);
    return rc;
}

int hostcmd_check_target(const struct inv_host *h, const char *verb, struct nerr *err)
{
    char why[512];
    if (power_address_is_local(h->address, why, sizeof why))
        return nerr_set(err, NERR_INVALID, "refusing to %s host '%s': %s", verb, h->name, why);
    char hn[256];
    if (strcasecmp(h->name, "localhost") == 0 ||
        (gethostname(hn, sizeof hn) == 0 &&
         (hn[sizeof hn - 1] = '\0', strcasecmp(h->name, hn) == 0)))
        return nerr_set(err, NERR_INVALID,
                        "refusing to %s host '%s': that is this machine's hostname", verb, h->name);
    return 0;
}
