/*
 * labfs_fx.h — fixture shared by the labfs C tests: a temp directory with
 * b/ (backing) and m/ (mountpoint), a labfs daemon spawned over them, and
 * cleanup at exit (also on SIGTERM from ctest.sh's timeout): unmount, kill
 * the daemon if it is still there, remove the directory.
 *
 * Header-only, one test process per file, so the fixture is file-static.
 */
#ifndef NINES_LABFS_FX_H
#define NINES_LABFS_FX_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "labfs/labfs.h"
#include "t/tap.h"

static struct {
    char dir[256], b[512], m[512], log[512];
    pid_t pid;
    int cleanup_set;
} fx;

static inline int fx_rm(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    return remove(p) != 0 && errno != ENOENT ? -1 : 0;
}

static inline void fx_reap(int timeout_ms)
{
    for (int i = 0; fx.pid > 0 && i < timeout_ms / 10; i++) {
        if (waitpid(fx.pid, NULL, WNOHANG) == fx.pid) {
            fx.pid = 0;
            return;
        }
        usleep(10000);
    }
    if (fx.pid > 0) {
        kill(fx.pid, SIGKILL);
        waitpid(fx.pid, NULL, 0);
        fx.pid = 0;
    }
}

static inline void fx_cleanup(void)
{
    if (fx.pid > 0) {
        struct nerr e;
        if (labfs_umount(fx.m, LABFS_UMOUNT_LAZY, 10000, &e))
            umount2(fx.m, MNT_DETACH);
        fx_reap(5000);
    }
    if (fx.dir[0] && !getenv("LABFS_KEEP"))
        nftw(fx.dir, fx_rm, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void fx_on_signal(int sig)
{
    exit(128 + sig); /* runs fx_cleanup */
}

/* 1..0 # SKIP when FUSE cannot work here; else creates the directories. */
static inline void fx_init(const char *name)
{
    if (access("/dev/fuse", R_OK | W_OK) != 0) {
        printf("1..0 # SKIP /dev/fuse is not usable: %s\n", strerror(errno));
        exit(0);
    }
    snprintf(fx.dir, sizeof fx.dir, "/tmp/nines-%s-XXXXXX", name);
    if (!mkdtemp(fx.dir)) {
        printf("Bail out! mkdtemp: %s\n", strerror(errno));
        exit(1);
    }
    snprintf(fx.b, sizeof fx.b, "%s/b", fx.dir);
    snprintf(fx.m, sizeof fx.m, "%s/m", fx.dir);
    snprintf(fx.log, sizeof fx.log, "%s/labfs.log", fx.dir);
    mkdir(fx.b, 0755);
    mkdir(fx.m, 0755);
    atexit(fx_cleanup);
    signal(SIGTERM, fx_on_signal);
    signal(SIGINT, fx_on_signal);
    signal(SIGPIPE, SIG_IGN);
}

static inline int fx_mount(uint64_t seed)
{
    struct labfs_opts o = {.backing = fx.b, .mountpoint = fx.m, .seed = seed, .log_path = fx.log};
    struct nerr e;
    int rc = labfs_spawn(&o, &fx.pid, &e);
    if (rc)
        diag("mount: %s", e.msg);
    return rc;
}

/* Clean unmount (everything durable unless crashed), daemon reaped. */
static inline int fx_umount(void)
{
    struct nerr e;
    int rc = labfs_umount(fx.m, 0, 10000, &e);
    if (rc)
        diag("umount: %s", e.msg);
    fx_reap(5000);
    return rc;
}

static inline int fx_ctl(const char *cmd, char *reply, size_t cap)
{
    struct nerr e;
    int rc = labfs_control(fx.m, cmd, reply, cap, &e);
    if (rc)
        diag("ctl %s: %s", cmd, e.msg);
    return rc;
}

static inline uint64_t fx_stat(const char *key)
{
    char r[1024];
    uint64_t v = (uint64_t)-1;
    if (!fx_ctl("stats", r, sizeof r))
        labfs_reply_u64(r, key, &v);
    return v;
}

/* Path under the mount (m) or the backing directory (b); a small ring of
 * buffers so that several may be used in one expression. */
static const char *fx_path(char which, const char *rel)
{
    static char ring[8][PATH_MAX];
    static int k;
    char *p = ring[k++ & 7];
    if (snprintf(p, PATH_MAX, "%s/%s", which == 'b' ? fx.b : fx.m, rel) >= PATH_MAX)
        abort();
    return p;
}
#define M(rel) fx_path('m', rel)
#define B(rel) fx_path('b', rel)

/* Whole file into buf (cap bytes); its length, or -errno. */
static inline long fx_read(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -errno;
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        if (r == 0 || (got += (size_t)r) == cap)
            break;
    }
    close(fd);
    return (long)got;
}

/* 1 when path holds exactly s. */
static inline int fx_has(const char *path, const char *s)
{
    char buf[65536];
    long l = fx_read(path, buf, sizeof buf);
    return l == (long)strlen(s) && !memcmp(buf, s, (size_t)l);
}

#define FX_FSYNC 1
#define FX_TRUNC 2
#define FX_APPEND 4

/* Writes s to path (created if needed); 0 or -errno. */
static inline int fx_write(const char *path, const char *s, int how)
{
    int fd =
        open(path,
             O_WRONLY | O_CREAT | (how & FX_TRUNC ? O_TRUNC : 0) | (how & FX_APPEND ? O_APPEND : 0),
             0644);
    if (fd < 0)
        return -errno;
    size_t l = strlen(s);
    int rc = write(fd, s, l) == (ssize_t)l ? 0 : -errno;
    if (!rc && (how & FX_FSYNC) && fsync(fd) != 0)
        rc = -errno;
    close(fd);
    return rc;
}

static inline int fx_fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) != 0 ? -errno : 0;
    close(fd);
    return rc;
}

static inline int fx_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

#endif
