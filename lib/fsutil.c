#include "lib/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int fs_mkdir_p(const char *path, struct nerr *err)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return nerr_set(err, NERR_INVALID, "bad directory path '%s'", path);
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return nerr_sys(err, errno, "mkdir %s", buf);
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return nerr_sys(err, errno, "mkdir %s", buf);
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
        return nerr_set(err, NERR_IO, "%s exists and is not a directory", buf);
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int r = (flag == FTW_DP) ? rmdir(path) : unlink(path);
    return r != 0 && errno != ENOENT ? -1 : 0;
}

int fs_rm_rf(const char *path, struct nerr *err)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : nerr_sys(err, errno, "stat %s", path);
    if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return nerr_sys(err, errno, "remove %s", path);
    return 0;
}

int fs_fsync_dir(const char *path, struct nerr *err)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return nerr_sys(err, errno, "open directory %s", path);
    int rc = 0;
    if (fsync(fd) != 0)
        rc = nerr_sys(err, errno, "fsync directory %s", path);
    close(fd);
    return rc;
}

int fs_read_file(const char *path, size_t max, char **out, size_t *len, struct nerr *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return nerr_sys(err, errno, "%s", path);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    int rc = 0;
    if (!buf) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    for (;;) {
        if (n == cap) {
            if (cap >= max) {
                rc = nerr_set(err, NERR_LIMIT, "%s: larger than %zu bytes", path, max);
                goto out;
            }
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                rc = nerr_set(err, NERR_NOMEM, "out of memory");
                goto out;
            }
            buf = nb;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = nerr_sys(err, errno, "read %s", path);
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

int fs_write_file_atomic(const char *path, const void *data, size_t len, struct nerr *err)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return nerr_set(err, NERR_INVALID, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return nerr_sys(err, errno, "create %s", tmp);
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return nerr_sys(err, e, "write %s", tmp);
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return nerr_sys(err, e, "fsync %s", tmp);
    }
    close(fd);
    if (rename(tmp, path) != 0)
        return nerr_sys(err, errno, "rename %s", tmp);
    snprintf(dir, sizeof dir, "%s", path);
    return fs_fsync_dir(dirname(dir), err);
}

size_t fs_read_line_timeout(int fd, char *buf, size_t cap, int timeout_ms, int *timed_out)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t got = 0;
    *timed_out = 0;
    while (got < cap - 1 && !memchr(buf, '\n', got)) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        long left =
            timeout_ms - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0) {
            *timed_out = 1;
            break;
        }
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int pr = poll(&pf, 1, (int)left);
        if (pr <= 0) {
            if (pr < 0 && errno != EINTR)
                break;
            continue; /* interrupted, or time is up: checked above */
        }
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    return got;
}

int fs_write_file(const char *path, const char *text, unsigned mode, struct nerr *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
    if (fd < 0)
        return nerr_sys(err, errno, "create %s", path);
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            close(fd);
            return nerr_sys(err, e, "write %s", path);
        }
        off += (size_t)w;
    }
    if (fchmod(fd, (mode_t)mode) != 0) {
        int e = errno;
        close(fd);
        return nerr_sys(err, e, "chmod %s", path);
    }
    if (close(fd) != 0)
        return nerr_sys(err, errno, "close %s", path);
    return 0;
}
