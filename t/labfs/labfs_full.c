/*
 * labfs_full.c — `full on|off` (labfs/labfs.h): while full, every request
 * that needs new space fails with ENOSPC (a write that grows a file, in a
 * new file too, fallocate, mkdir, symlink) and statfs shows no free block;
 * overwrites inside a file, truncates, renames, unlinks and fsyncs go on;
 * nothing written before (durable or not) is lost; `full off` ends it; the
 * counters count the refusals; a fresh mount is not full; bad arguments are
 * refused (control file and CLI).
 */
#include "t/labfs/labfs_fx.h"

#include <sys/statvfs.h>

/* pwrite of len bytes of c at off into path (no create); 0 or -errno. */
static int put_at(const char *path, char c, size_t len, off_t off)
{
    char buf[8192];
    memset(buf, c, sizeof buf);
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -errno;
    int rc = pwrite(fd, buf, len, off) == (ssize_t)len ? 0 : -errno;
    close(fd);
    return rc;
}

static int cli_status(const char *args)
{
    const char *b = getenv("NINES_BUILD");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s/bin/nines labfs ctl %s %s >/dev/null 2>&1", b ? b : "build", fx.m,
             args);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(void)
{
    char r[1024], buf[16384];
    fx_init("labfs-full");
    if (fx_mount(1))
        bail_out("no mount");

    /* Before: a durable file, a pending one. */
    memset(buf, 'a', 8192);
    buf[8192] = 0;
    ok(!fx_write(M("durable"), buf, FX_FSYNC), "durable: 8 KiB written and fsync'd");
    ok(!fx_write(M("pending"), "not yet durable", 0), "pending: written, not fsync'd");

    ok(!fx_ctl("full", r, sizeof r), "`full` alone reports");
    is(r, "ok full=0 enospc=0", "... not full, nothing refused");
    ok(!fx_ctl("full on", r, sizeof r), "full on");
    is(r, "ok full=1 enospc=0", "... reply");

    /* What needs space fails. */
    int fd = open(M("durable"), O_WRONLY | O_APPEND);
    errno = 0;
    ok(fd >= 0 && write(fd, "x", 1) < 0 && errno == ENOSPC, "append to a file: ENOSPC");
    if (fd >= 0)
        close(fd);
    is_int(put_at(M("durable"), 'b', 4096, 6144), -ENOSPC,
           "a write that overlaps the end and grows the file: ENOSPC, whole");
    fd = open(M("new"), O_WRONLY | O_CREAT, 0644);
    ok(fd >= 0, "creating an empty file still works (an inode, no block)");
    errno = 0;
    ok(fd >= 0 && write(fd, "hello", 5) < 0 && errno == ENOSPC, "writing into it: ENOSPC");
    errno = 0;
    ok(fd >= 0 && posix_fallocate(fd, 0, 4096) == ENOSPC, "fallocate: ENOSPC");
    if (fd >= 0)
        close(fd);
    errno = 0;
    ok(mkdir(M("dir"), 0755) < 0 && errno == ENOSPC, "mkdir: ENOSPC");
    errno = 0;
    ok(symlink("durable", M("link")) < 0 && errno == ENOSPC, "symlink: ENOSPC");
    struct statvfs sv;
    ok(statvfs(fx.m, &sv) == 0 && sv.f_bavail == 0 && sv.f_bfree == 0,
       "statfs: no free block (bavail %llu)", (unsigned long long)sv.f_bavail);
    ok(!fx_ctl("stats", r, sizeof r) && strstr(r, " full=1 enospc=6"),
       "stats: full=1, 6 requests refused (%s)", strstr(r, "full=") ? strstr(r, "full=") : r);

    /* What needs none goes on. */
    ok(!put_at(M("durable"), 'b', 4096, 1024), "an overwrite inside the file works");
    ok(!fx_fsync_path(M("durable")), "fsync works");
    ok(!rename(M("new"), M("renamed")), "rename works");
    ok(!unlink(M("renamed")), "unlink works");
    ok(truncate(M("durable"), 9000) == 0,
       "a truncate that grows the file (a hole, no block) works");
    ok(truncate(M("durable"), 8192) == 0, "a truncate that shrinks it works");

    /* Bad arguments. */
    struct nerr e;
    ok(labfs_control(fx.m, "full maybe", r, sizeof r, &e) == NERR_INVALID &&
           !strcmp(r, "error full takes on or off"),
       "`full maybe` is refused (%s)", r);
    ok(!fx_ctl("full", r, sizeof r) && !strcmp(r, "ok full=1 enospc=6"),
       "... and changed nothing (%s)", r);
    is_int(cli_status("full maybe"), 2, "nines labfs ctl M full maybe: exit 2");
    is_int(cli_status("stats extra"), 2, "nines labfs ctl M stats extra: exit 2");

    /* Off again: everything works, nothing was lost. */
    is_int(cli_status("full off"), 0, "nines labfs ctl M full off: exit 0");
    ok(!fx_ctl("full", r, sizeof r) && !strcmp(r, "ok full=0 enospc=6"), "not full (%s)", r);
    ok(!fx_write(M("durable"), "tail", FX_APPEND), "append works again");
    ok(!mkdir(M("dir"), 0755), "mkdir works again");
    ok(statvfs(fx.m, &sv) == 0 && sv.f_bavail > 0, "statfs shows free blocks again");
    long l = fx_read(M("durable"), buf, sizeof buf);
    int same = l == 8196;
    for (long i = 0; same && i < 8192; i++)
        same = buf[i] == (i >= 1024 && i < 5120 ? 'b' : 'a');
    ok(same && !memcmp(buf + 8192, "tail", 4),
       "durable holds its bytes, the overwrite and the "
       "append (%ld bytes)",
       l);
    ok(fx_has(M("pending"), "not yet durable"), "pending (never fsync'd) is intact");

    /* Full again, then a fresh mount: not full, the durable state kept. */
    ok(!fx_ctl("full on", r, sizeof r), "full on again");
    ok(!fx_fsync_path(M("pending")) && !fx_fsync_path(M("")), "fsync while full still works");
    ok(!fx_umount(), "clean unmount while full");
    ok(!fx_mount(2), "mount again");
    ok(!fx_ctl("full", r, sizeof r) && !strcmp(r, "ok full=0 enospc=0"),
       "a fresh mount is not full (%s)", r);
    ok(fx_has(M("pending"), "not yet durable"), "pending survived (fsync'd while full)");
    ok(!fx_write(M("after"), "x", FX_FSYNC), "and takes writes");

    /* After a crash the command is refused. */
    ok(!fx_ctl("crash", r, sizeof r), "crash");
    ok(labfs_control(fx.m, "full on", r, sizeof r, &e) == NERR_INVALID && strstr(r, "crashed"),
       "full on after a crash is refused (%s)", r);
    fx_umount();
    return done_testing();
}
