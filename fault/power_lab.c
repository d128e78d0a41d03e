/*
 * fault/power_lab.c — the `lab` power driver: a lab host's network
 * namespace, and its labfs power cut (contract in power.h): the labfs hooks
 * of struct power_env, the namespace scan, the phased cut of several hosts
 * at one instant, and power-on with a fresh labfs daemon.
 */
#include "fault/power_driver.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "labfs/labfs.h"
#include "lib/clock.h"
#include "lib/proc.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "lib/rng.h"

/* --- labfs hooks ----------------------------------------------------------- */

static int real_fs_control(void *arg, const char *mnt, const char *cmd, char *reply, size_t cap,
                           struct nerr *err)
{
    return labfs_control(mnt, cmd, reply, cap, err);
}

static int pid_gone_within(pid_t pid, int64_t deadline)
{
    while (proc_running(pid)) {
        if (clock_mono_ms() >= deadline)
            return 0;
        power_sleep_ms(10);
    }
    return 1;
}

int power_labfs_umount(const char *mnt, int lazy, int timeout_ms, struct nerr *err)
{
    char reply[512];
    uint64_t pid = 0;
    struct nerr e;
    int64_t deadline = clock_mono_ms() + timeout_ms;
    nerr_clear(&e);
    /* The daemon's own word for its pid, asked before the mount goes. */
    if (labfs_control(mnt, "stats", reply, sizeof reply, &e) == 0)
        labfs_reply_u64(reply, "pid", &pid);
    int first = timeout_ms > 300 && pid > 1 ? 300 : timeout_ms;
    int rc = labfs_umount(mnt, lazy ? LABFS_UMOUNT_LAZY : 0, first, err);
    if (rc != NERR_TIMEOUT || pid <= 1 || (pid_t)pid == getpid())
        return rc;
    /* Unmounted here, but a copy of the mount in another mount namespace
     * (every `ip netns exec` makes one, and this machine's mounts do not
     * propagate) keeps the FUSE connection, so the daemon never hears of
     * the unmount. Stop it: SIGTERM is a clean stop (durable first, unless
     * crashed), and leaves those copies dead (ENOTCONN) instead of serving
     * a stale file system. */
    if (kill((pid_t)pid, SIGTERM) != 0 && errno != ESRCH)
        return nerr_sys(err, errno, "labfs %s: stopping daemon %" PRIu64, mnt, pid);
    if (pid_gone_within((pid_t)pid,
                        deadline > clock_mono_ms() + 2000 ? deadline : clock_mono_ms() + 2000))
        return 0;
    kill((pid_t)pid, SIGKILL);
    if (pid_gone_within((pid_t)pid, clock_mono_ms() + 2000))
        return 0;
    return nerr_set(err, NERR_TIMEOUT, "labfs %s: daemon %" PRIu64 " does not exit", mnt, pid);
}

static int real_fs_umount(void *arg, const char *mnt, int lazy, int timeout_ms, struct nerr *err)
{
    return power_labfs_umount(mnt, lazy, timeout_ms, err);
}

static int real_fs_mounted(void *arg, const char *mnt)
{
    char parent[PATH_MAX];
    struct stat st, pst;
    if (stat(mnt, &st) != 0)
        return errno == ENOTCONN || errno == ECONNABORTED;
    if ((size_t)snprintf(parent, sizeof parent, "%s/..", mnt) >= sizeof parent ||
        stat(parent, &pst) != 0)
        return 0;
    return st.st_dev != pst.st_dev;
}

/* labfs_spawn from an intermediate child that exits at once: the daemon is
 * then adopted by init instead of becoming a zombie of a long-running caller
 * (the game-day runner), and the intermediate closes every descriptor but
 * its pipe first, so the daemon holds none of the caller's sockets. The
 * result comes back as one line: "OK PID" or "ERR CODE MESSAGE". */
static int real_fs_mount(void *arg, const char *backing, const char *mnt, const char *log,
                         uint64_t seed, struct nerr *err)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return nerr_sys(err, errno, "labfs mount of %s: pipe", mnt);
    pid_t c = fork();
    if (c < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return nerr_sys(err, e, "labfs mount of %s: fork", mnt);
    }
    if (c == 0) {
        char msg[NERR_MSG_MAX + 32];
        struct nerr e;
        pid_t d = 0;
        nerr_clear(&e);
        if (p[1] != 3 && dup2(p[1], 3) < 0)
            _exit(127);
        close_range(4, ~0u, 0);
        struct labfs_opts o = {
            .backing = backing, .mountpoint = mnt, .seed = seed, .log_path = log, .detach = 1};
        int rc = labfs_spawn(&o, &d, &e);
        int n = rc ? snprintf(msg, sizeof msg, "ERR %d %s\n", rc, e.msg)
                   : snprintf(msg, sizeof msg, "OK %ld\n", (long)d);
        if (n > 0 && write(3, msg, (size_t)n) < 0)
            _exit(126);
        _exit(rc ? 1 : 0);
    }
    close(p[1]);
    /* The daemon inherits the pipe's write end, so read up to the newline,
     * not to EOF. labfs_spawn is bounded by 20 s; allow a little more. */
    char buf[NERR_MSG_MAX + 32];
    int timed_out;
    size_t got = fs_read_line_timeout(p[0], buf, sizeof buf, 25000, &timed_out);
    close(p[0]);
    if (!memchr(buf, '\n', got))
        kill(c, SIGKILL); /* only our intermediate child, by its pid */
    while (waitpid(c, NULL, 0) < 0 && errno == EINTR) {
    }
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = '\0';
    if (!strncmp(buf, "OK ", 3))
        return 0;
    int code = 0, off = 0;
    if (sscanf(buf, "ERR %d %n", &code, &off) >= 1 && code < 0 && off > 0)
        return nerr_set(err, code, "%s", buf + off);
    return nerr_set(err, NERR_IO, "labfs mount of %s: no answer from the mount helper (%s)", mnt,
                    got ? buf : "it died");
}

static int fs_control(const struct power_env *env, const char *mnt, const char *cmd, char *reply,
                      size_t cap, struct nerr *err)
{
    return (env->fs_control ? env->fs_control : real_fs_control)(env->fs_arg, mnt, cmd, reply, cap,
                                                                 err);
}

static int fs_umount(const struct power_env *env, const char *mnt, int lazy, int timeout_ms,
                     struct nerr *err)
{
    return (env->fs_umount ? env->fs_umount : real_fs_umount)(env->fs_arg, mnt, lazy, timeout_ms,
                                                              err);
}

static int fs_mount(const struct power_env *env, const char *backing, const char *mnt,
                    const char *log, uint64_t seed, struct nerr *err)
{
    return (env->fs_mount ? env->fs_mount : real_fs_mount)(env->fs_arg, backing, mnt, log, seed,
                                                           err);
}

static int fs_mounted(const struct power_env *env, const char *mnt)
{
    return (env->fs_mounted ? env->fs_mounted : real_fs_mounted)(env->fs_arg, mnt);
}

int power_lab_fs_layout(const char *fs, char *backing, size_t bcap, char *log, size_t lcap,
                        struct nerr *err)
{
    const char *slash = fs ? strrchr(fs, '/') : NULL;
    if (!slash || slash == fs || slash[1] == '\0')
        return nerr_set(err, NERR_INVALID, "labfs mount point '%s' has no parent directory",
                        fs ? fs : "");
    int pl = (int)(slash - fs);
    if ((size_t)snprintf(backing, bcap, "%.*s/backing", pl, fs) >= bcap ||
        (size_t)snprintf(log, lcap, "%.*s/log/labfs.log", pl, fs) >= lcap)
        return nerr_set(err, NERR_LIMIT, "labfs paths beside '%s' are too long", fs);
    return 0;
}

const char *power_fs_state_name(enum power_fs_state s)
{
    switch (s) {
    case POWER_FS_NONE:
        return "none";
    case POWER_FS_UNMOUNTED:
        return "unmounted";
    case POWER_FS_MOUNTED:
        return "mounted";
    case POWER_FS_FROZEN:
        return "frozen";
    case POWER_FS_CRASHED:
        return "crashed";
    case POWER_FS_DEAD:
        return "dead";
    }
    return "?";
}

enum power_fs_state power_lab_fs_state(const struct power_env *env, const struct inv_host *h,
                                       char *detail, size_t cap)
{
    char reply[1024], dummy[8];
    struct nerr e;
    uint64_t crashed = 0, frozen = 0, dirty = 0, fsyncs = 0, seed = 0;
    if (!detail) {
        detail = dummy;
        cap = sizeof dummy;
    }
    detail[0] = '\0';
    if (h->power.driver != INV_DRIVER_LAB || !h->power.fs)
        return POWER_FS_NONE;
    if (!fs_mounted(env, h->power.fs))
        return POWER_FS_UNMOUNTED;
    nerr_clear(&e);
    if (fs_control(env, h->power.fs, "stats", reply, sizeof reply, &e) != 0) {
        snprintf(detail, cap, "%s", e.msg);
        return POWER_FS_DEAD;
    }
    labfs_reply_u64(reply, "crashed", &crashed);
    labfs_reply_u64(reply, "frozen", &frozen);
    labfs_reply_u64(reply, "dirty_bytes", &dirty);
    labfs_reply_u64(reply, "fsyncs", &fsyncs);
    labfs_reply_u64(reply, "seed", &seed);
    snprintf(detail, cap, "dirty_bytes=%" PRIu64 " fsyncs=%" PRIu64 " seed=%" PRIu64, dirty, fsyncs,
             seed);
    return crashed ? POWER_FS_CRASHED : frozen ? POWER_FS_FROZEN : POWER_FS_MOUNTED;
}

/* --- lab driver ------------------------------------------------------------ */

static int stat_path(const char *a, const char *b, const char *c, struct stat *st)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s%s", a, b, c) >= sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return stat(path, st);
}

/* The netns file's identity, refusing this machine's own namespace. */
static int lab_netns_id(const struct power_env *env, const struct inv_host *h, struct stat *ns,
                        struct nerr *err)
{
    static const char *const roots[] = {"1", "self"};
    if (stat_path(env->netns_dir, h->power.netns, "", ns) != 0) {
        if (errno == ENOENT)
            return nerr_set(err, NERR_NOTFOUND, "host '%s': no network namespace %s/%s", h->name,
                            env->netns_dir, h->power.netns);
        return nerr_sys(err, errno, "host '%s': stat %s/%s", h->name, env->netns_dir,
                        h->power.netns);
    }
    for (int i = 0; i < 2; i++) {
        struct stat r;
        if (stat_path(env->proc_root, roots[i], "/ns/net", &r) != 0)
            continue; /* /proc/1 may be unreadable without privileges; self is always there */
        if (r.st_dev == ns->st_dev && r.st_ino == ns->st_ino)
            return nerr_set(err, NERR_INVALID,
                            "refusing to power host '%s': netns '%s' is the network namespace "
                            "of %s (%s/%s/ns/net), i.e. this machine",
                            h->name, h->power.netns, i == 0 ? "init" : "nines itself",
                            env->proc_root, roots[i]);
    }
    return 0;
}

static int cmp_pid(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
    return (x > y) - (x < y);
}

static int lab_scan(const struct power_env *env, const struct stat *ns, pid_t *pids, size_t cap,
                    size_t *n, struct nerr *err)
{
    DIR *d = opendir(env->proc_root);
    if (!d)
        return nerr_sys(err, errno, "opendir %s", env->proc_root);
    size_t count = 0, scanned = 0;
    struct dirent *e;
    /* Bounded by the directory's size, which the kernel caps by pid_max. */
    while ((e = readdir(d)) && scanned++ < 4u * POWER_MAX_PIDS) {
        char *end;
        errno = 0;
        long v = strtol(e->d_name, &end, 10);
        if (*end || end == e->d_name || v <= 0 || v > INT_MAX || errno)
            continue;
        struct stat st;
        /* Gone, or a zombie, or not ours to see: not a live member. */
        if (stat_path(env->proc_root, e->d_name, "/ns/net", &st) != 0)
            continue;
        if (st.st_dev != ns->st_dev || st.st_ino != ns->st_ino)
            continue;
        if (count < cap)
            pids[count] = (pid_t)v;
        count++;
    }
    closedir(d);
    *n = count;
    if (count > 1 && cap > 1)
        qsort(pids, count < cap ? count : cap, sizeof *pids, cmp_pid);
    if (count > cap)
        return nerr_set(err, NERR_LIMIT, "more than %zu processes in the namespace", cap);
    return 0;
}

int power_lab_pids(const struct power_env *env, const char *netns, pid_t *pids, size_t cap,
                   size_t *n, struct nerr *err)
{
    struct stat ns;
    if (stat_path(env->netns_dir, netns, "", &ns) != 0)
        return errno == ENOENT ? nerr_set(err, NERR_NOTFOUND, "no network namespace %s/%s",
                                          env->netns_dir, netns)
                               : nerr_sys(err, errno, "stat %s/%s", env->netns_dir, netns);
    return lab_scan(env, &ns, pids, cap, n, err);
}

/* Never signal init or ourselves, whatever the namespace scan says. */
static int refuse_special(const struct inv_host *h, const pid_t *pids, size_t n, struct nerr *err)
{
    for (size_t i = 0; i < n; i++)
        if (pids[i] == 1 || pids[i] == getpid())
            return nerr_set(
                err, NERR_INVALID, "refusing to power off host '%s': netns '%s' holds %s (pid %d)",
                h->name, h->power.netns, pids[i] == 1 ? "init" : "nines itself", (int)pids[i]);
    return 0;
}

/* SIGSTOPs every process of the namespace, rescanning until a pass finds
 * none it has not stopped yet: a stopped process forks no more, and one
 * forked during a pass shows up in the next. Bounded like the kill loop. */
static int lab_stop_all(const struct power_env *env, const struct inv_host *h,
                        const struct stat *ns, pid_t *pids, int64_t deadline, struct nerr *err)
{
    pid_t *stopped = malloc(POWER_MAX_PIDS * sizeof *stopped);
    size_t n_stopped = 0, n = 0;
    int rc = 0;
    if (!stopped)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    for (int round = 0; round < POWER_LAB_ROUNDS; round++) {
        if ((rc = lab_scan(env, ns, pids, POWER_MAX_PIDS, &n, err)) ||
            (rc = refuse_special(h, pids, n, err)))
            goto out;
        size_t fresh = 0, before = n_stopped;
        for (size_t i = 0; i < n; i++) {
            if (bsearch(&pids[i], stopped, before, sizeof *stopped, cmp_pid))
                continue;
            if (env->kill_fn(env->kill_arg, pids[i], SIGSTOP) != 0 && errno != ESRCH)
                log_warn("power off %s: stop %d: %s", h->name, (int)pids[i], strerror(errno));
            if (n_stopped < POWER_MAX_PIDS)
                stopped[n_stopped++] = pids[i];
            fresh++;
        }
        if (!fresh || clock_mono_ms() >= deadline)
            goto out;
        qsort(stopped, n_stopped, sizeof *stopped, cmp_pid);
    }
out:
    free(stopped);
    return rc;
}

/* SIGKILLs every process of the namespace until none is left. */
static int lab_kill_all(const struct power_env *env, const struct inv_host *h,
                        const struct stat *ns, pid_t *pids, int64_t deadline, struct nerr *err)
{
    size_t n = 0;
    int rc, round;
    /* Killed processes' children may be forked in between: rescan until the
     * namespace is empty, a bounded number of times. */
    for (round = 0; round < POWER_LAB_ROUNDS; round++) {
        if ((rc = lab_scan(env, ns, pids, POWER_MAX_PIDS, &n, err)))
            return rc;
        if (n == 0)
            return 0;
        if ((rc = refuse_special(h, pids, n, err)))
            return rc;
        for (size_t i = 0; i < n; i++)
            if (env->kill_fn(env->kill_arg, pids[i], SIGKILL) != 0 && errno != ESRCH)
                log_warn("power off %s: kill %d: %s", h->name, (int)pids[i], strerror(errno));
        if (clock_mono_ms() >= deadline) {
            round++;
            break;
        }
        power_sleep_ms(20);
    }
    return nerr_set(err, NERR_TIMEOUT,
                    "host '%s': %zu processes still in netns '%s' after %d kill rounds in %ld ms",
                    h->name, n, h->power.netns, round, power_timeout_ms(h));
}

/* Unmounts the host's labfs: a plain unmount first, retried briefly (a
 * process killed a moment ago may still be releasing its files), then a
 * lazy one, which detaches the mount whatever still refers to it. */
static int lab_fs_unmount(const struct power_env *env, const struct inv_host *h, int64_t deadline,
                          struct nerr *err)
{
    struct nerr e;
    int rc = 0;
    nerr_clear(&e);
    for (int attempt = 0; attempt < 20; attempt++) {
        int64_t left = deadline - clock_mono_ms();
        int t = left > POWER_FS_UMOUNT_MS ? POWER_FS_UMOUNT_MS : left > 100 ? (int)left : 100;
        rc = fs_umount(env, h->power.fs, 0, t, &e);
        if (rc != NERR_BUSY)
            break;
        if (clock_mono_ms() + 50 >= deadline)
            break;
        power_sleep_ms(50);
    }
    if (rc == NERR_BUSY) {
        log_warn("power off %s: %s; unmounting lazily", h->name, e.msg);
        rc = fs_umount(env, h->power.fs, 1, POWER_FS_UMOUNT_MS, &e);
    }
    if (rc == NERR_NOTFOUND && !fs_mounted(env, h->power.fs))
        rc = 0; /* nothing (left) to unmount */
    if (rc)
        return nerr_set(err, rc, "host '%s': unmounting labfs %s: %s", h->name, h->power.fs, e.msg);
    return 0;
}

/* What a lab power-off of h with mode will do: KILL, CRASH or TORN;
 * NERR_INVALID for crash/torn without fs. */
static int lab_resolve_mode(const struct inv_host *h, enum power_off_mode mode,
                            enum power_off_mode *out, struct nerr *err)
{
    if (!h->power.fs && (mode == POWER_OFF_CRASH || mode == POWER_OFF_TORN))
        return nerr_set(err, NERR_INVALID,
                        "host '%s': power-off mode %s needs a labfs (`fs` in its power mapping): "
                        "killing its processes would not lose its unsynced writes",
                        h->name, power_off_mode_name(mode));
    if (mode == POWER_OFF_DEFAULT)
        mode = !h->power.fs                      ? POWER_OFF_KILL
               : h->power.fs_mode == INV_FS_TORN ? POWER_OFF_TORN
                                                 : POWER_OFF_CRASH;
    *out = mode;
    return 0;
}

/* The power cut of n lab hosts with labfs at one instant: every phase runs
 * over all of them before the next begins (freeze all, stop all, crash all,
 * kill all, unmount all), as a rack or an AZ loses power at once. Each phase
 * goes on after a host's failure; the first error is returned. A host
 * whose fs is not mounted was off already (power off twice is fine): it only
 * gets the stop and kill passes. */
static int lab_cut(const struct power_env *env, const struct inv_host *const *hs,
                   const enum power_off_mode *modes, size_t n, struct nerr *err)
{
    struct cut_host {
        struct stat ns;
        int ok, mounted, frc;
        struct nerr fe;
    } *c = calloc(n ? n : 1, sizeof *c);
    pid_t *pids = malloc(POWER_MAX_PIDS * sizeof *pids);
    char reply[512];
    int first = 0, rc;
    struct nerr e;
    int64_t deadline = clock_mono_ms();
    if (!c || !pids) {
        free(c);
        free(pids);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
#define KEEP(x)                                                                                    \
    do {                                                                                           \
        int r_ = (x);                                                                              \
        if (r_ && !first) {                                                                        \
            first = r_;                                                                            \
            if (err)                                                                               \
                *err = e;                                                                          \
        }                                                                                          \
    } while (0)
    for (size_t i = 0; i < n; i++) {
        if (clock_mono_ms() + power_timeout_ms(hs[i]) > deadline)
            deadline = clock_mono_ms() + power_timeout_ms(hs[i]);
        nerr_clear(&e);
        KEEP(rc = lab_netns_id(env, hs[i], &c[i].ns, &e));
        c[i].ok = rc == 0;
    }
    /* 1. The instant of the cut. */
    for (size_t i = 0; i < n; i++) {
        if (!c[i].ok)
            continue;
        c[i].mounted = fs_mounted(env, hs[i]->power.fs);
        nerr_clear(&c[i].fe);
        c[i].frc = c[i].mounted
                       ? fs_control(env, hs[i]->power.fs, "freeze", reply, sizeof reply, &c[i].fe)
                       : NERR_NOTFOUND;
    }
    /* 2. Nothing runs on from here. */
    for (size_t i = 0; i < n; i++)
        if (c[i].ok) {
            nerr_clear(&e);
            KEEP(rc = lab_stop_all(env, hs[i], &c[i].ns, pids, deadline, &e));
            c[i].ok = rc == 0;
        }
    /* 3. What was not durable is gone. */
    for (size_t i = 0; i < n; i++) {
        if (!c[i].ok || !c[i].mounted)
            continue;
        const char *cmd = modes[i] == POWER_OFF_TORN ? "torn" : "crash";
        nerr_clear(&e);
        if (c[i].frc) {
            KEEP(nerr_set(&e, c[i].frc,
                          "host '%s': labfs freeze at %s failed (%s); the processes were "
                          "killed, but unsynced writes may have survived",
                          hs[i]->name, hs[i]->power.fs, c[i].fe.msg));
        } else if ((rc = fs_control(env, hs[i]->power.fs, cmd, reply, sizeof reply, &c[i].fe))) {
            KEEP(nerr_set(&e, rc,
                          "host '%s': labfs %s at %s failed (%s); the processes were "
                          "killed, but unsynced writes may have survived",
                          hs[i]->name, cmd, hs[i]->power.fs, c[i].fe.msg));
        }
    }
    /* 4. and 5. */
    for (size_t i = 0; i < n; i++)
        if (c[i].ok) {
            nerr_clear(&e);
            KEEP(rc = lab_kill_all(env, hs[i], &c[i].ns, pids, deadline, &e));
            c[i].ok = rc == 0;
        }
    for (size_t i = 0; i < n; i++)
        if (c[i].ok && c[i].mounted) {
            nerr_clear(&e);
            KEEP(lab_fs_unmount(env, hs[i], deadline, &e));
        }
#undef KEEP
    free(c);
    free(pids);
    return first;
}

static int lab_off(const struct power_env *env, const struct inv_host *h, enum power_off_mode mode,
                   struct nerr *err)
{
    struct stat ns;
    int rc;
    if ((rc = lab_resolve_mode(h, mode, &mode, err)))
        return rc;
    if (mode != POWER_OFF_KILL)
        return lab_cut(env, &h, &mode, 1, err);
    pid_t *pids = malloc(POWER_MAX_PIDS * sizeof *pids);
    if (!pids)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    if (!(rc = lab_netns_id(env, h, &ns, err)))
        rc = lab_kill_all(env, h, &ns, pids, clock_mono_ms() + power_timeout_ms(h), err);
    free(pids);
    return rc;
}

/* Makes sure a live, uncrashed labfs is mounted at the host's fs: a crashed
 * or dead mount goes first, then a fresh daemon with a new seed. */
static int lab_fs_up(const struct power_env *env, const struct inv_host *h, struct nerr *err)
{
    char backing[PATH_MAX], log[PATH_MAX];
    int64_t deadline = clock_mono_ms() + power_timeout_ms(h);
    int rc;
    enum power_fs_state st = power_lab_fs_state(env, h, NULL, 0);
    if (st == POWER_FS_MOUNTED)
        return 0;
    if (st == POWER_FS_FROZEN)
        return nerr_set(err, NERR_BUSY,
                        "host '%s': its labfs %s is frozen (a power-off is under way)", h->name,
                        h->power.fs);
    if (st == POWER_FS_CRASHED || st == POWER_FS_DEAD) {
        if ((rc = lab_fs_unmount(env, h, deadline, err)))
            return rc;
    }
    if ((rc = power_lab_fs_layout(h->power.fs, backing, sizeof backing, log, sizeof log, err)))
        return rc;
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
        seed = rng_mix64((uint64_t)clock_mono_ms() ^ ((uint64_t)getpid() << 32));
    return fs_mount(env, backing, h->power.fs, log, seed, err);
}

static int lab_on(const struct power_env *env, const struct inv_host *h, struct nerr *err)
{
    char *cmd = NULL, out[POWER_OUT_MAX + 1], eo[POWER_OUT_MAX + 1];
    struct stat ns;
    int rc, st = 0;
    if ((rc = lab_netns_id(env, h, &ns, err)) ||
        (rc = inventory_template_expand(h->power.start, h, &cmd, err)))
        return rc;
    if (h->power.fs && (rc = lab_fs_up(env, h, err))) {
        free(cmd);
        return rc;
    }
    char *argv[] = {(char *)env->ip, "netns", "exec", h->power.netns, "/bin/sh", "-c", cmd, NULL};
    rc = power_run(argv, power_timeout_ms(h), &st, out, eo, err);
    if (rc == NERR_TIMEOUT)
        rc = nerr_set(err, NERR_TIMEOUT, "host '%s': start command timed out after %ld ms: %s",
                      h->name, power_timeout_ms(h), cmd);
    else if (rc == 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        power_one_line(eo);
        rc = nerr_set(err, NERR_IO,
                      "host '%s': start command failed (status %d): %s; stderr: %.200s", h->name,
                      WIFEXITED(st) ? WEXITSTATUS(st) : -1, cmd, eo);
    }
    free(cmd);
    return rc;
}

static int lab_status(const struct power_env *env, const struct inv_host *h,
                      enum power_state *state, char *detail, size_t cap, struct nerr *err)
{
    struct stat ns;
    size_t n = 0;
    int rc;
    pid_t *pids = malloc(POWER_MAX_PIDS * sizeof *pids);
    if (!pids)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    if (!(rc = lab_netns_id(env, h, &ns, err)) &&
        !(rc = lab_scan(env, &ns, pids, POWER_MAX_PIDS, &n, err))) {
        *state = n ? POWER_ON : POWER_OFF;
        if (h->power.fs) {
            char fsd[256];
            enum power_fs_state fst = power_lab_fs_state(env, h, fsd, sizeof fsd);
            snprintf(detail, cap, "%zu processes, labfs %s%s%s", n, power_fs_state_name(fst),
                     fsd[0] ? " " : "", fsd);
        } else {
            snprintf(detail, cap, "%zu processes", n);
        }
    }
    free(pids);
    return rc;
}

static int lab_check(const struct power_env *env, const struct inv_host *h, struct nerr *err)
{
    struct stat ns;
    return lab_netns_id(env, h, &ns, err);
}

/* A power cut that would not lose unsynced writes is refused (planners ask
 * before the run; lab_resolve_mode refuses it again at the power-off). */
static int lab_check_mode(const struct inv_host *h, enum power_off_mode mode, struct nerr *err)
{
    if (!h->power.fs && (mode == POWER_OFF_CRASH || mode == POWER_OFF_TORN))
        return nerr_set(err, NERR_INVALID,
                        "lab host %s has no labfs (`fs`), so its power-off would not lose "
                        "unsynced writes",
                        h->name);
    return 0;
}

static const char *lab_mode_word(const struct inv_host *h, enum power_off_mode mode)
{
    enum power_off_mode m = POWER_OFF_KILL;
    if (lab_resolve_mode(h, mode, &m, NULL))
        return power_off_mode_name(mode);
    return power_off_mode_name(m);
}

/* The hosts whose mode resolves to a cut (crash or torn) go through
 * lab_cut together; kill-mode hosts are left to lab_off one by one. */
static int lab_off_group(const struct power_env *env, const struct inv_host *const *hosts, size_t n,
                         enum power_off_mode mode, unsigned char *taken, struct nerr *err)
{
    const struct inv_host **cut = calloc(n ? n : 1, sizeof *cut);
    enum power_off_mode *modes = calloc(n ? n : 1, sizeof *modes);
    size_t ncut = 0;
    int rc = 0;
    if (!cut || !modes) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        enum power_off_mode m = mode;
        if ((rc = lab_resolve_mode(hosts[i], mode, &m, err)))
            goto out;
        if (m != POWER_OFF_KILL) {
            cut[ncut] = hosts[i];
            modes[ncut++] = m;
            taken[i] = 1;
        }
    }
    rc = lab_cut(env, cut, modes, ncut, err);
out:
    free(cut);
    free(modes);
    return rc;
}

const struct power_driver power_driver_lab = {
    .name = "lab",
    .id = INV_DRIVER_LAB,
    .check = lab_check,
    .check_mode = lab_check_mode,
    .mode_word = lab_mode_word,
    .off_group = lab_off_group,
    .off = lab_off,
    .on = lab_on,
    .status = lab_status,
};
