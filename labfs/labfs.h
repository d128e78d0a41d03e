/*
 * labfs.h — the lab's power-loss file system: a FUSE mount over a backing
 * directory that loses, on command, every write that was not made durable.
 *
 * Why: after `kill -9` the kernel still writes out what a process wrote but
 * did not fsync, so killing processes is not a power cut. labfs keeps
 * everything that is not yet durable in its own memory, and the backing
 * directory holds exactly the durable state; `crash` throws the memory away
 * atomically, as a power cut does (docs/labfs.md has the whole rule).
 *
 * The durability rule (the intersection of what ext4, XFS and btrfs give):
 *  - file data and size: durable when an fsync or fdatasync of the file has
 *    returned (also O_SYNC/O_DSYNC and RWF_DSYNC writes and msync(MS_SYNC):
 *    the kernel turns them into FUSE fsyncs). A flush still running when the
 *    power is cut did not happen: the crash restores what it overwrote.
 *    sync_file_range, sync and syncfs reach no FUSE request, so they make
 *    nothing durable.
 *  - a name (create, mkdir, symlink, rename, unlink, rmdir): durable when its
 *    directory is fsync'd, or when the inode it names is fsync'd — an fsync'd
 *    inode is reachable after a crash at the path it had at fsync time (its
 *    ancestors' names included). Other names in the same directory are not.
 *  - a clean unmount (or SIGTERM, or ctl `sync`) makes everything durable.
 *  - `torn`: like `crash`, but each dirty 4 KiB page that overwrites durable
 *    bytes (and each page of a flush in flight) survives or not by a coin
 *    seeded from the mount's seed, the file's backing path and the page
 *    index. Sizes and names never tear.
 * docs/labfs.md gives the reasons.
 *
 * A power-off is: `freeze` (the instant of the cut: from then on no fsync
 * completes), stop the processes, `crash` or `torn`, kill the processes.
 *
 * Process model: the file system is a daemon process (labfs_spawn, or
 * `nines labfs mount`); everything else talks to it by the mountpoint's
 * path: a control file `.labfs` in the mount root (not listed by readdir)
 * takes one command per open+write, and the reply is read back on the same
 * descriptor. labfs_control does exactly that.
 *
 * Errors: functions return 0 or a negative NERR_* code with a message in
 * err (which may be NULL). None of them keep pointers to their arguments.
 * Thread-safety: every function may be called from any thread; labfs_run
 * and labfs_spawn serve / start a daemon and must not be called twice for
 * one mountpoint.
 */
#ifndef NINES_LAB_LABFS_H
#define NINES_LAB_LABFS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/err.h"

/* The page granularity of dirty data and of torn writes. */
#define LABFS_PAGE 4096

/* Name of the control file in the mount root. */
#define LABFS_CTL_NAME ".labfs"

struct labfs_opts {
    const char *backing;    /* existing directory; borrowed for the call */
    const char *mountpoint; /* existing empty directory, not inside backing */
    uint64_t seed;          /* seeds `torn`; same seed + same writes = same tear */
    int no_backing_sync;    /* 1: skip fdatasync/fsync on the backing files.
                               Durability semantics are unchanged (a simulated
                               crash never touches the backing page cache),
                               only timing and host-crash safety differ. */
    const char *log_path;   /* daemon's stderr (append); NULL: /dev/null when
                               detached, inherited otherwise */
    int detach;             /* labfs_spawn: new session, stdio to /dev/null */
};

/* Checks that o names a usable backing directory and an empty, unmounted
 * mountpoint that does not overlap it. NERR_INVALID / NERR_NOTFOUND with a
 * message naming the path and the problem. */
int labfs_check_opts(const struct labfs_opts *o, struct nerr *err);

/* Mounts and serves in the calling process until the file system is
 * unmounted or the process gets SIGTERM/SIGINT/SIGHUP (both end with every
 * pending write made durable unless the fs crashed). When ready_fd >= 0,
 * writes "OK\n" to it once the mount is live, or "ERR message\n" if mounting
 * failed, and closes it. Returns 0 after a clean stop. */
int labfs_run(const struct labfs_opts *o, int ready_fd, struct nerr *err);

/* Starts a daemon running labfs_run and returns once the mount is live,
 * with the daemon's pid in *pid (the caller's child: reap it with waitpid or
 * lib/proc, or let it be reparented when o->detach). The daemon is a fresh
 * exec of the nines binary (`nines labfs mount --foreground --ready-fd 3`,
 * through lib/proc), never a fork of the caller, so a threaded caller is
 * safe; NERR_NOTFOUND when no nines binary is found (this program, or nines
 * or ../bin/nines next to it). Bounded: fails with NERR_TIMEOUT if the
 * mount is not live within 20 s (the child is then killed). */
int labfs_spawn(const struct labfs_opts *o, pid_t *pid, struct nerr *err);

/* Sends one command and copies the reply (NUL-terminated, truncated to
 * cap-1) to reply. Commands:
 *   freeze the power-cut instant: fsync/fsyncdir requests from now on get
 *          no answer, and flushes already running cannot finish, until
 *          `crash`/`torn` (they fail with EIO and leave nothing durable) or
 *          `thaw` (they complete). Other I/O goes on in memory.
 *          Reply: "ok frozen flushes_in_flight=N".
 *   thaw   undo a freeze: "ok thawed completed_syncs=N".
 *   crash  drop everything not durable (undoing flushes in flight); from
 *          then on every file operation fails with EIO until the file
 *          system is unmounted and mounted again. Reply: "ok crashed
 *          dropped_bytes=N dropped_names=N undone_flushes=N".
 *   torn   the same, but dirty pages over durable bytes survive by the seeded
 *          coin. Reply adds "torn_pages_kept=N torn_pages_lost=N".
 *   stats  "ok pid=N crashed=0|1 dirty_bytes=N dirty_files=N pending_names=N
 *          fsyncs=N fsyncdirs=N synced_bytes=N crashes=N dropped_bytes=N
 *          dropped_names=N torn_pages_kept=N torn_pages_lost=N
 *          undone_flushes=N frozen=0|1 flushes_in_flight=N parked_syncs=N
 *          seed=N full=0|1 enospc=N"
 *   sync   make everything durable (a syncfs); refused after a crash and
 *          while frozen.
 *   full on|off  a disk with no free block, without allocating anything:
 *          while on, a write that grows a file, fallocate, mkdir and
 *          symlink fail with ENOSPC (overwrites inside a file's size,
 *          creating empty files, truncates, renames, unlinks and fsyncs go
 *          on), and statfs shows no free block. Nothing already written is
 *          touched. A property of the running daemon: a fresh mount (power
 *          on) is not full. `full` alone reports. Reply: "ok full=0|1
 *          enospc=N" (N: requests refused since the mount). Refused after
 *          a crash.
 * A reply starting with "error" gives NERR_INVALID; an unreachable or
 * non-labfs mountpoint NERR_IO / NERR_NOTFOUND. */
int labfs_control(const char *mountpoint, const char *cmd, char *reply, size_t cap,
                  struct nerr *err);

/* Parses "key=N" out of a stats or crash reply into *out. NERR_NOTFOUND if
 * the key is absent. */
int labfs_reply_u64(const char *reply, const char *key, uint64_t *out);

#define LABFS_UMOUNT_LAZY 1 /* detach even if files are open (MNT_DETACH) */

/* Unmounts mountpoint and waits (bounded by timeout_ms) until its daemon
 * has exited. Without LABFS_UMOUNT_LAZY an open file gives NERR_BUSY and
 * nothing changes. A mount whose daemon died is detached. */
int labfs_umount(const char *mountpoint, int flags, int timeout_ms, struct nerr *err);

#endif
