/*
 * fault/pause.c — the process pause fault kind (fault.h): the playbook's
 * `pause` step freezes its hosts' ninesd with SIGSTOP, `resume` or the end
 * of the step's duration thaws it with SIGCONT, and heal_all sends SIGCONT
 * to the ninesd of every host (harmless to one that runs).
 *
 * A gray failure: the process keeps its sockets, so peers' connections
 * stay open and the kernel still completes TCP handshakes into its listen
 * backlog, but nothing is answered — unlike a crash, which peers see at
 * once as refused or reset connections. Nothing restarts, so host_changed
 * is not called.
 *
 * Which process: the pid in DATA/ninesd.pid (DATA = the host's inventory
 * `data`; gameday/deploy.c writes it), trusted only when /proc/PID/cmdline
 * mentions ninesd (the rule deploy.c uses), so a stale pid file never gets
 * another process stopped. The inject waits (bounded) until
 * /proc/PID/status shows state T, and resume until it no longer does: the
 * step starts with the process really stopped.
 */
#include "fault/fault.h"
#include "fault/hostfault.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/shquote.h"

#define NS_PER_S 1000000000ull

/* The shell that finds the trusted pid in $p (or exits 3 with why, or 0
 * silently when quiet). %1$s is the quoted pid file. */
#define FIND_PID                                                                                   \
    "f=%1$s; if [ ! -r \"$f\" ]; then %2$s; fi; p=$(cat \"$f\"); case \"$p\" in ''|*[!0-9]*) "     \
    "%3$s;; esac; case \"$(tr '\\0' ' ' </proc/$p/cmdline 2>/dev/null)\" in *ninesd*) ;; *) "      \
    "%4$s;; esac; "
/* Waits at most 2 s until /proc/$p/status shows state T (%6$s "=") or
 * another (%6$s "!="); %7$s names the signal sent. */
#define WAIT_STATE                                                                                 \
    "i=0; while [ $i -lt 100 ]; do s=$(sed -n 's/^State:[[:space:]]*\\([A-Za-z]\\).*/\\1/p' "      \
    "/proc/$p/status 2>/dev/null); if [ \"$s\" %6$s T ]; then echo \"$p $s\"; exit 0; fi; "        \
    "sleep 0.02; i=$((i+1)); done; echo \"ninesd (pid $p) is in state '$s' after %7$s\" >&2; "     \
    "exit 5"

enum sig_what { PAUSE_STOP, PAUSE_CONT, PAUSE_SWEEP };

static int pause_cmd(const struct inv_host *h, void *arg, char **cmd, struct nerr *err)
{
    enum sig_what w = *(const enum sig_what *)arg;
    char pidfile[4096], *q = NULL;
    *cmd = NULL;
    snprintf(pidfile, sizeof pidfile, "%s/ninesd.pid", h->data);
    int rc = shquote_arg(pidfile, &q, err);
    if (rc)
        return rc;
    int n;
    if (w == PAUSE_SWEEP)
        /* heal_all: nothing deployed or nothing running is fine. */
        n = asprintf(cmd, HF_SUDO FIND_PID "$S kill -CONT \"$p\"", q, "exit 0", "exit 0", "exit 0");
    else
        n = asprintf(cmd, HF_SUDO FIND_PID "$S kill -%5$s \"$p\" || exit 4; " WAIT_STATE, q,
                     "echo \"no pid file $f (is ninesd deployed?)\" >&2; exit 3",
                     "echo \"pid file $f holds no pid\" >&2; exit 3",
                     "echo \"pid $p of $f is not a running ninesd\" >&2; exit 3",
                     w == PAUSE_STOP ? "STOP" : "CONT",
                     w == PAUSE_STOP ? "=" : "!=", w == PAUSE_STOP ? "SIGSTOP" : "SIGCONT");
    free(q);
    if (n < 0) {
        *cmd = NULL;
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    return 0;
}

static void pa_describe(const void *params, char *buf, size_t cap)
{
    (void)params;
    snprintf(buf, cap, " (SIGSTOP ninesd)");
}

static const char *pa_label(const struct inv_host *h, const void *params)
{
    (void)h, (void)params;
    return "pause";
}

static int pa_inject(void *state, const struct fault_env *env, const struct fault_call *c,
                     struct nerr *err)
{
    (void)state;
    enum sig_what w = PAUSE_STOP;
    int rc = hf_check_call(env, c, "pause", err);
    return rc ? rc : hf_run_call(env, c, "SIGSTOP ninesd", pause_cmd, &w, NULL, err);
}

static int pa_heal(void *state, const struct fault_env *env, const struct fault_call *c,
                   struct nerr *err)
{
    (void)state;
    enum sig_what w = PAUSE_CONT;
    int rc = hf_check_call(env, c, "resume", err);
    return rc ? rc : hf_run_call(env, c, "SIGCONT ninesd", pause_cmd, &w, NULL, err);
}

static void pa_heal_all(void *state, const struct fault_env *env)
{
    (void)state;
    enum sig_what w = PAUSE_SWEEP;
    hf_sweep(env, "resume", pause_cmd, &w);
}

const struct fault_kind fault_pause = {
    .name = "pause",
    .inject_step = "pause",
    .heal_step = "resume",
    .held_until = "until resume",
    .keys = NULL,
    .inject_timeout_ns = 60 * NS_PER_S,
    .heal_timeout_ns = 60 * NS_PER_S,
    .describe = pa_describe,
    .label = pa_label,
    .inject = pa_inject,
    .heal = pa_heal,
    .heal_all = pa_heal_all,
};
