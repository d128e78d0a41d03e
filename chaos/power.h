/*
 * power.h — turning an inventory host's power off and on, and asking its
 * state, through the driver the inventory names (chaos/inventory.h):
 *
 *   command  off/on/status templates run locally by /bin/sh -c, values
 *            shell-quoted; the exit status decides success, and stdout and
 *            stderr (first POWER_OUT_MAX bytes each) go into the error.
 *            status: exit 0 and output "running"/"on"/"up" -> on,
 *            "shut off"/"off"/"stopped"/"down" -> off, else unknown.
 *   qmp      a QEMU QMP unix socket: greeting, qmp_capabilities, then
 *            off = quit, on = system_reset + cont (or, when nothing listens,
 *            the optional `start` template), status = query-status (nothing
 *            listening = off).
 *   lab      a lab host's network namespace: off = SIGKILL, by pid, every
 *            process whose /proc/PID/ns/net is the namespace's inode, repeated
 *            until none is left; on = `ip netns exec NETNS /bin/sh -c START`;
 *            status = on when the namespace holds a process.
 *
 * SAFETY. Every action first refuses a target that is the machine nines runs
 * on, before anything is executed or sent (NERR_INVALID, the reason in the
 * message): an address that is loopback, or one of this machine's interface
 * addresses (getifaddrs), or that a DNS name resolves to; the local hostname
 * or "localhost"; a command template that mentions poweroff, reboot, halt,
 * shutdown, init 0/6, telinit, kexec or sysrq (refused) without a {name} or {address}
 * placeholder; a lab netns whose inode is that of PROC/1/ns/net or
 * PROC/self/ns/net, or that holds this very process. Nothing here ever
 * signals pid 1 or the calling process.
 *
 * Bounds: each action ends within the host's power.timeout (a command's whole
 * process group is SIGKILLed, by its pid, when it overruns); the lab kill
 * loop makes at most POWER_LAB_ROUNDS passes; a QMP reply is awaited at most
 * until the same deadline.
 *
 * Errors: NERR_INVALID (refusal, bad template), NERR_TIMEOUT, NERR_IO
 * (a command failed: "exit status 3; stderr: ..."; a socket or /proc error),
 * NERR_NOTFOUND (no such netns), NERR_CORRUPT (a QMP reply that is not
 * JSON or is an error), NERR_NOMEM.
 *
 * Ownership: env and host are borrowed for the call. Thread-safety: calls
 * share no state; concurrent calls on different hosts are fine (commands are
 * forked, so a caller mixing threads and fork must accept fork's usual rules).
 */
#ifndef NINES_POWER_H
#define NINES_POWER_H

#include <stddef.h>
#include <sys/types.h>

#include "chaos/inventory.h"
#include "lib/err.h"

#define POWER_OUT_MAX 4096  /* bytes kept of a command's stdout and of its stderr */
#define POWER_LAB_ROUNDS 50 /* kill passes before lab off gives up */
#define POWER_MAX_PIDS 65536

enum power_state { POWER_UNKNOWN = 0, POWER_ON = 1, POWER_OFF = 2 };

/* What the drivers touch on this machine; tests point it elsewhere. */
struct power_env {
    const char *proc_root; /* "/proc" */
    const char *netns_dir; /* "/run/netns" */
    const char *ip;        /* the ip(8) program, "ip" looked up in PATH */
    /* Sends sig to pid; default kill(2). Return 0 or -1 with errno set. */
    int (*kill_fn)(void *arg, pid_t pid, int sig);
    void *kill_arg;
};

/* The real machine. */
void power_env_default(struct power_env *env);

/* The driver interface. Each function is called only after the local-target
 * refusal has passed; call them through power_off/on/status. */
struct power_driver {
    const char *name;
    int (*off)(const struct power_env *env, const struct inv_host *h, struct nerr *err);
    int (*on)(const struct power_env *env, const struct inv_host *h, struct nerr *err);
    int (*status)(const struct power_env *env, const struct inv_host *h, enum power_state *state,
                  char *detail, size_t cap, struct nerr *err);
};
const struct power_driver *power_driver_for(enum inv_driver d);

/* Refusal check then the host's driver. detail (may be NULL) gets the
 * driver's words for the state ("running", "shut off", "3 processes"). */
int power_off(const struct power_env *env, const struct inv_host *h, struct nerr *err);
int power_on(const struct power_env *env, const struct inv_host *h, struct nerr *err);
int power_status(const struct power_env *env, const struct inv_host *h, enum power_state *state,
                 char *detail, size_t cap, struct nerr *err);

/* 0 when h may be acted on, else NERR_INVALID saying why (see SAFETY). */
int power_check_target(const struct power_env *env, const struct inv_host *h, struct nerr *err);

/* 1 (with why filled) when address is this machine, else 0. */
int power_address_is_local(const char *address, char *why, size_t cap);

/* Expands {name} {address} {az} {rack} {data} from h, each value quoted by
 * shquote_arg (POSIX single quotes; plain words stay bare); "{{" and "}}"
 * are literal braces. With h NULL it only
 * checks the template (out may then be NULL). *out is malloc'd. */
int power_template_expand(const char *tmpl, const struct inv_host *h, char **out, struct nerr *err);

/* Runs argv (argv[0] a path or a name in PATH) in its own process group,
 * stdin from /dev/null, for at most timeout_ms. Returns 0 with *status the
 * wait status, and up to POWER_OUT_MAX bytes of stdout/stderr NUL-terminated
 * in out/errout (each may be NULL); NERR_TIMEOUT after killing the group. */
int power_run(char *const argv[], long timeout_ms, int *status, char *out, char *errout,
              struct nerr *err);

/* The pids whose network namespace is netns (by inode of
 * env->netns_dir/netns), in ascending order. *n counts them all even beyond
 * cap; NERR_LIMIT when more than cap. */
int power_lab_pids(const struct power_env *env, const char *netns, pid_t *pids, size_t cap,
                   size_t *n, struct nerr *err);

#endif
