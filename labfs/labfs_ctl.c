/*
 * labfs_ctl.c — everything that talks to a labfs daemon from outside:
 * option checks, spawning the daemon, the control file, unmounting.
 * Contracts in lab/labfs.h.
 */
#include "labfs/labfs.h"
#include "lib/fsutil.h"
#include "lib/proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int dir_is_empty(const char *path, int *empty)
{
    DIR *d = opendir(path);
    if (!d)
        return -errno;
    struct dirent *de;
    *empty = 1;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            *empty = 0;
            break;
        }
    closedir(d);
    return 0;
}

/* 1 when a is b or lies under b (both canonical). */
static int path_within(const char *a, const char *b)
{
    size_t lb = strlen(b);
    if (!strcmp(b, "/"))
        return 1;
    return !strncmp(a, b, lb) && (a[lb] == '\0' || a[lb] == '/');
}

int labfs_check_opts(const struct labfs_opts *o, struct nerr *err)
{
    struct stat st, pst;
    char rb[PATH_MAX], rm[PATH_MAX], parent[PATH_MAX + 4];
    int empty = 0;

    if (!o || !o->backing || !o->mountpoint || !*o->backing || !*o->mountpoint)
        return nerr_set(err, NERR_INVALID,
                        "labfs: a backing directory and a mountpoint are needed");
    if (stat(o->backing, &st) != 0) {
        if (errno == ENOENT)
            return nerr_set(err, NERR_NOTFOUND, "labfs: backing directory %s does not exist",
                            o->backing);
        return nerr_sys(err, errno, "labfs: backing directory %s", o->backing);
    }
    if (!S_ISDIR(st.st_mode))
        return nerr_set(err, NERR_INVALID, "labfs: backing %s is not a directory", o->backing);
    if (access(o->backing, R_OK | W_OK | X_OK) != 0)
        return nerr_sys(err, errno, "labfs: backing directory %s is not usable", o->backing);
    if (stat(o->mountpoint, &st) != 0) {
        if (errno == ENOENT)
            return nerr_set(err, NERR_NOTFOUND, "labfs: mountpoint %s does not exist",
                            o->mountpoint);
        return nerr_sys(err, errno, "labfs: mountpoint %s", o->mountpoint);
    }
    if (!S_ISDIR(st.st_mode))
        return nerr_set(err, NERR_INVALID, "labfs: mountpoint %s is not a directory",
                        o->mountpoint);
    if (!realpath(o->backing, rb) || !realpath(o->mountpoint, rm))
        return nerr_sys(err, errno, "labfs: resolving %s and %s", o->backing, o->mountpoint);
    snprintf(parent, sizeof parent, "%s/..", rm);
    if (stat(parent, &pst) == 0 && (pst.st_dev != st.st_dev || pst.st_ino == st.st_ino))
        return nerr_set(err, NERR_INVALID, "labfs: %s is already a mount point", o->mountpoint);
    int rc = dir_is_empty(rm, &empty);
    if (rc)
        return nerr_sys(err, -rc, "labfs: reading mountpoint %s", o->mountpoint);
    if (!empty)
        return nerr_set(err, NERR_INVALID, "labfs: mountpoint %s is not empty", o->mountpoint);
    if (path_within(rm, rb) || path_within(rb, rm))
        return nerr_set(err, NERR_INVALID,
                        "labfs: mountpoint %s and backing %s overlap (one contains the other)", rm,
                        rb);
    return 0;
}

/* The nines binary that can run `labfs mount`: this program when it is
 * nines, else a nines beside it or in ../bin (test binaries live in
 * build/t). */
static int labfs_binary(char *out, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return -1;
    self[n] = '\0';
    const char *base = strrchr(self, '/');
    base = base ? base + 1 : self;
    if (!strcmp(base, "nines")) {
        snprintf(out, cap, "%s", self);
        return 0;
    }
    size_t dl = (size_t)(base - self);
    const char *cands[] = {"nines", "../bin/nines"};
    for (size_t i = 0; i < 2; i++) {
        if ((size_t)snprintf(out, cap, "%.*s%s", (int)dl, self, cands[i]) < cap &&
            access(out, X_OK) == 0)
            return 0;
    }
    return -1;
}

int labfs_spawn(const struct labfs_opts *o, pid_t *pid, struct nerr *err)
{
    int p[2];
    int rc = labfs_check_opts(o, err);
    if (rc)
        return rc;
    if (pipe2(p, O_CLOEXEC) != 0)
        return nerr_sys(err, errno, "labfs: pipe");
    /* The daemon is a fresh program (exec of the nines binary), never a
     * forked copy of the caller: a fork of a threaded caller inherits its
     * locks (the allocator's among them, held by another thread at the
     * fork) and its open descriptors. lib/proc execs it with the ready pipe
     * as fd 3 and nothing else of ours. */
    char exe[PATH_MAX], seed[32], rfd[16] = "3";
    if (labfs_binary(exe, sizeof exe) != 0) {
        close(p[0]);
        close(p[1]);
        return nerr_set(err, NERR_NOTFOUND,
                        "labfs: no nines binary to run the daemon (this program, or nines or "
                        "../bin/nines next to it)");
    }
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    const char *argv[16];
    int ac = 0;
    argv[ac++] = exe;
    argv[ac++] = "labfs";
    argv[ac++] = "mount";
    argv[ac++] = "--foreground";
    argv[ac++] = "--seed";
    argv[ac++] = seed;
    argv[ac++] = "--ready-fd";
    argv[ac++] = rfd;
    if (o->no_backing_sync)
        argv[ac++] = "--no-backing-sync";
    argv[ac++] = o->backing;
    argv[ac++] = o->mountpoint;
    argv[ac] = NULL;
    int logfd = -1;
    struct proc_spec ps = {.argv = (char *const *)argv, .pass_fds = &p[1], .npass = 1};
    if (o->detach) {
        /* A daemon: its own session, and no terminal descriptors. */
        ps.flags = PROC_NEW_SESSION;
        ps.in = ps.out = ps.err = (struct proc_io){PROC_IO_NULL, -1};
    }
    if (o->log_path &&
        (logfd = open(o->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) >= 0)
        ps.err = (struct proc_io){PROC_IO_FD, logfd};
    pid_t c;
    rc = proc_spawn(&ps, &c, err);
    if (logfd >= 0)
        close(logfd);
    if (rc) {
        close(p[0]);
        close(p[1]);
        return rc;
    }
    close(p[1]);
    char buf[NERR_MSG_MAX + 16];
    int timed_out;
    size_t got = fs_read_line_timeout(p[0], buf, sizeof buf, 20000, &timed_out);
    close(p[0]);
    if (timed_out) {
        proc_kill(c, NULL, NULL);
        return nerr_set(err, NERR_TIMEOUT, "labfs: mount of %s not ready within 20 s",
                        o->mountpoint);
    }
    if (!strncmp(buf, "OK", 2)) {
        *pid = c;
        return 0;
    }
    /* It said why and is exiting; a daemon that does not is stopped. */
    if (proc_wait(c, 5000, NULL, NULL) == NERR_TIMEOUT)
        proc_terminate(c, 5000, 0, NULL, NULL);
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = '\0';
    return nerr_set(err, NERR_IO, "%s", got > 4 ? buf + 4 : "labfs: the daemon died at start-up");
}

int labfs_control(const char *mountpoint, const char *cmd, char *reply, size_t cap,
                  struct nerr *err)
{
    char path[PATH_MAX];
    int rc = 0;
    if (cap)
        reply[0] = '\0';
    if (snprintf(path, sizeof path, "%s/%s", mountpoint, LABFS_CTL_NAME) >= (int)sizeof path)
        return nerr_set(err, NERR_INVALID, "labfs: path too long");
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return nerr_set(err, NERR_NOTFOUND, "labfs: %s is not a labfs mount", mountpoint);
        return nerr_sys(err, errno, "labfs: control file of %s", mountpoint);
    }
    size_t cl = strlen(cmd);
    ssize_t w = write(fd, cmd, cl);
    if (w != (ssize_t)cl) {
        rc = nerr_sys(err, w < 0 ? errno : EIO, "labfs: sending '%s' to %s", cmd, mountpoint);
        goto out;
    }
    size_t got = 0;
    char tmp[256];
    for (;;) {
        ssize_t r = read(fd, tmp, sizeof tmp);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = nerr_sys(err, errno, "labfs: reading the reply from %s", mountpoint);
            goto out;
        }
        if (r == 0)
            break;
        for (ssize_t i = 0; i < r && cap && got < cap - 1; i++)
            reply[got++] = tmp[i];
    }
    if (cap)
        reply[got] = '\0';
    while (got && cap && (reply[got - 1] == '\n' || reply[got - 1] == ' '))
        reply[--got] = '\0';
    if (cap && strncmp(reply, "ok", 2))
        rc = nerr_set(err, NERR_INVALID, "labfs %s: %s", mountpoint, reply);
out:
    close(fd);
    return rc;
}

int labfs_reply_u64(const char *reply, const char *key, uint64_t *out)
{
    size_t kl = strlen(key);
    for (const char *p = reply; (p = strstr(p, key)); p += kl) {
        if ((p == reply || p[-1] == ' ') && p[kl] == '=') {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(p + kl + 1, &end, 10);
            if (errno || end == p + kl + 1)
                return NERR_PARSE;
            *out = v;
            return 0;
        }
    }
    return NERR_NOTFOUND;
}

static int run_fusermount(const char *mountpoint, int lazy, struct nerr *err)
{
    char *argv[] = {"fusermount3", lazy ? "-uz" : "-u", "--", (char *)mountpoint, NULL};
    struct proc_spec ps = {.argv = argv, .in = {PROC_IO_NULL, -1}};
    struct proc_output out;
    /* fusermount3 returns at once; the bound only keeps a hung one from
     * hanging the caller. */
    int rc = proc_run(&ps, 60000, 4096, &out, err);
    int st = out.status;
    proc_output_free(&out);
    if (rc)
        return rc;
    if (proc_status_code(st))
        return nerr_set(err, NERR_BUSY, "labfs: fusermount3 -u %s failed (files open?)",
                        mountpoint);
    return 0;
}

int labfs_umount(const char *mountpoint, int flags, int timeout_ms, struct nerr *err)
{
    char reply[512];
    uint64_t pid = 0;
    int lazy = flags & LABFS_UMOUNT_LAZY;
    struct nerr e;
    int rc = labfs_control(mountpoint, "stats", reply, sizeof reply, &e);
    if (rc == NERR_IO && strstr(e.msg, "not connected")) {
        lazy = 1; /* the daemon is gone: only the dead mount is left to detach */
    } else if (rc) {
        if (err)
            *err = e;
        return rc;
    } else if (labfs_reply_u64(reply, "pid", &pid)) {
        return nerr_set(err, NERR_PARSE, "labfs: no pid in the stats of %s", mountpoint);
    }
    if (geteuid() == 0) {
        if (umount2(mountpoint, lazy ? MNT_DETACH : 0) != 0) {
            if (errno == EBUSY)
                return nerr_set(err, NERR_BUSY,
                                "labfs: %s is busy (files open); "
                                "close them or unmount lazily",
                                mountpoint);
            return nerr_sys(err, errno, "labfs: umount %s", mountpoint);
        }
    } else if ((rc = run_fusermount(mountpoint, lazy, err))) {
        return rc;
    }
    /* The daemon makes everything durable after the kernel lets go of it;
     * the unmount is done when it has exited. */
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (pid && proc_running((pid_t)pid)) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > timeout_ms)
            return nerr_set(err, NERR_TIMEOUT,
                            "labfs: daemon %" PRIu64 " of %s still running "
                            "after %d ms",
                            pid, mountpoint, timeout_ms);
        struct timespec d = {0, 5 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
    return 0;
}
