/*
 * power.h — turning an inventory host's power off and on, and asking its
 * state, through the driver the inventory names (fault/inventory.h). This is
 * the door of the power drivers (fault/power_driver.h is their inside: the
 * driver vtable, one file per driver) and of the power fault kind
 * (fault/power.c, the playbook's power_off/power_on steps, fault/fault.h):
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
 *            With `fs` (the host's labfs mount point, labfs/labfs.h) a
 *            power-off is a power cut, in this order, which is required
 *            (docs/labfs.md: without the freeze an fsync in flight would
 *            complete and lose nothing):
 *              1. labfs `freeze` (the instant of the cut: no fsync completes
 *                 from now on),
 *              2. SIGSTOP every process of the namespace (rescanned until no
 *                 new one appears),
 *              3. labfs `crash` (or `torn`): everything not durable is gone,
 *              4. SIGKILL every process (as without fs),
 *              5. unmount (lazily if a reference lingers), so nothing of the
 *                 old mount's memory or kernel cache survives.
 *            Power on then mounts a fresh labfs daemon (new random seed)
 *            over the same backing directory before running START; a mount
 *            that is already there and has not crashed is kept.
 *
 * Off modes (power_off_as): POWER_OFF_DEFAULT is the host's fs_mode when it
 * has fs, else a kill; POWER_OFF_KILL kills the processes only (the labfs
 * keeps its memory: the old, kill -9 semantics); POWER_OFF_CRASH and
 * POWER_OFF_TORN need fs on a lab host (refused with NERR_INVALID without
 * it: the power-off would not lose what it claims to). command and qmp
 * drivers cut real power whatever the mode, so they ignore it.
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
 * loop makes at most POWER_LAB_ROUNDS passes (power_driver.h); a QMP reply is awaited at most
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
#ifndef NINES_FAULT_POWER_H
#define NINES_FAULT_POWER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fault/inventory.h"
#include "lib/err.h"

#define POWER_OUT_MAX 4096       /* bytes kept of a command's stdout and of its stderr */
#define POWER_FS_UMOUNT_MS 10000 /* bound on one labfs unmount (daemon exit included) */

enum power_state { POWER_UNKNOWN = 0, POWER_ON = 1, POWER_OFF = 2 };

enum power_off_mode { POWER_OFF_DEFAULT = 0, POWER_OFF_KILL, POWER_OFF_CRASH, POWER_OFF_TORN };

/* What the drivers touch on this machine; tests point it elsewhere. */
struct power_env {
    const char *proc_root; /* "/proc" */
    const char *netns_dir; /* "/run/netns" */
    const char *ip;        /* the ip(8) program, "ip" looked up in PATH */
    /* Sends sig to pid; default kill(2). Return 0 or -1 with errno set. */
    int (*kill_fn)(void *arg, pid_t pid, int sig);
    void *kill_arg;
    /* The lab's labfs (labfs/labfs.h). A NULL hook means the real one:
     * fs_control = labfs_control; fs_umount = labfs_umount (lazy: with
     * LABFS_UMOUNT_LAZY); fs_mount = labfs_spawn of a detached daemon, from a
     * short-lived intermediate child so that the daemon is nobody's zombie
     * and inherits none of the caller's descriptors; fs_mounted = 1 when mnt
     * is a mount point (its device differs from its parent's) or a dead FUSE
     * mount (ENOTCONN), else 0. */
    int (*fs_control)(void *arg, const char *mnt, const char *cmd, char *reply, size_t cap,
                      struct nerr *err);
    int (*fs_umount)(void *arg, const char *mnt, int lazy, int timeout_ms, struct nerr *err);
    int (*fs_mount)(void *arg, const char *backing, const char *mnt, const char *log, uint64_t seed,
                    struct nerr *err);
    int (*fs_mounted)(void *arg, const char *mnt);
    void *fs_arg;
};

/* The real machine. */
void power_env_default(struct power_env *env);

/* Refusal check then the host's driver. detail (may be NULL) gets the
 * driver's words for the state ("running", "shut off", "3 processes"). */
int power_off(const struct power_env *env, const struct inv_host *h, struct nerr *err);
/* power_off with a mode (see "Off modes" above); power_off is
 * power_off_as(..., POWER_OFF_DEFAULT, ...). */
int power_off_as(const struct power_env *env, const struct inv_host *h, enum power_off_mode mode,
                 struct nerr *err);
/* Powers off n hosts at one instant: the lab hosts that get a power cut go
 * through each phase (freeze, stop, crash/torn, kill, unmount) together, so
 * that no fsync on one completes after another's cut, as when a rack or an
 * AZ loses power; other hosts are powered off one after the other after
 * that. Every host is checked (refusals, modes) before any is touched; after
 * that, a failure on one host does not stop the others, and the first error
 * is returned. */
int power_off_group(const struct power_env *env, const struct inv_host *const *hosts, size_t n,
                    enum power_off_mode mode, struct nerr *err);
/* "default", "kill", "crash", "torn"; parse gives NERR_INVALID for others. */
const char *power_off_mode_name(enum power_off_mode m);
int power_off_mode_parse(const char *s, enum power_off_mode *out);
/* 0 when h's driver can power it off with mode, else NERR_INVALID with the
 * reason, which names the host ("lab host h2 has no labfs (`fs`), so its
 * power-off would not lose unsynced writes"). For planners: nothing is
 * touched, no refusal check is made. */
int power_check_mode(const struct inv_host *h, enum power_off_mode mode, struct nerr *err);
/* The power-off h gets with mode, in a report's words: what the driver
 * resolves mode to ("kill", "crash", "torn"), or "power" for a driver that
 * cuts real power whatever the mode. */
const char *power_off_mode_word(const struct inv_host *h, enum power_off_mode mode);
int power_on(const struct power_env *env, const struct inv_host *h, struct nerr *err);
int power_status(const struct power_env *env, const struct inv_host *h, enum power_state *state,
                 char *detail, size_t cap, struct nerr *err);

/* A lab host's labfs as the driver sees it. */
enum power_fs_state {
    POWER_FS_NONE = 0,  /* the host has no fs */
    POWER_FS_UNMOUNTED, /* nothing mounted at fs (the host is off) */
    POWER_FS_MOUNTED,   /* a live labfs */
    POWER_FS_FROZEN,    /* a live labfs between freeze and crash */
    POWER_FS_CRASHED,   /* crashed, still mounted */
    POWER_FS_DEAD,      /* mounted, but its daemon is gone, or not a labfs */
};
const char *power_fs_state_name(enum power_fs_state s);
/* Reads h's labfs state (no refusal check: it only reads). detail (may be
 * NULL) gets the labfs counters that matter ("dirty_bytes=N fsyncs=N
 * seed=N") or why the state is what it is. */
enum power_fs_state power_lab_fs_state(const struct power_env *env, const struct inv_host *h,
                                       char *detail, size_t cap);

/* The real labfs unmount (env->fs_umount's default): labfs_umount, and
 * when the mount is gone here but its daemon does not exit within 300 ms
 * (another mount namespace holds a copy of the mount), SIGTERM, then
 * SIGKILL, to the pid the daemon reported in its stats. Bounded by
 * timeout_ms (at least 2 s more when the daemon must be stopped). */
int power_labfs_umount(const char *mnt, int lazy, int timeout_ms, struct nerr *err);

/* Runs argv (argv[0] a path or a name in PATH) in its own process group,
 * stdin from /dev/null, for at most timeout_ms. Returns 0 with *status the
 * wait status, and up to POWER_OUT_MAX bytes of stdout/stderr NUL-terminated
 * in out/errout (each may be NULL); NERR_TIMEOUT after killing the group.
 * (The power drivers' runner, on lib/proc.h's proc_run.) */
int power_run(char *const argv[], long timeout_ms, int *status, char *out, char *errout,
              struct nerr *err);

/* The power fault kind (fault/power.c, registered in fault/registry.c;
 * struct fault_kind is in fault/fault.h), and the off mode of a power_off
 * step's params (POWER_OFF_DEFAULT for NULL). */
struct fault_kind;
extern const struct fault_kind fault_power;
enum power_off_mode power_fault_mode(const void *params);

#endif
