/*
 * fsutil.h — small file-system helpers shared by the store and the toolkit.
 * All return 0 or a NERR_* code with the path and errno text in err.
 */
#ifndef NINES_FSUTIL_H
#define NINES_FSUTIL_H

#include <stddef.h>

#include "lib/err.h"

/* mkdir -p with mode 0755; existing directories are fine. */
int fs_mkdir_p(const char *path, struct nerr *err);
/* rm -rf: removes path and everything below it; a missing path is fine.
 * Does not follow symbolic links. */
int fs_rm_rf(const char *path, struct nerr *err);
/* fsync of a directory, so that entries created or removed in it are durable. */
int fs_fsync_dir(const char *path, struct nerr *err);
/* Reads a whole file (NUL-terminated, length in *len). *out is malloc'd. */
int fs_read_file(const char *path, size_t max, char **out, size_t *len, struct nerr *err);
/* Creates or truncates path and writes text (a NUL-terminated string) to it
 * with exactly mode (fchmod: the umask does not narrow it, so a script stays
 * executable). Not atomic and not synced: for files nothing reads until the
 * call returned (lab scripts, generated configs). The message names the
 * path and the step that failed. */
int fs_write_file(const char *path, const char *text, unsigned mode, struct nerr *err);
/* Writes a file atomically and durably: temp file, fsync, rename, fsync dir. */
int fs_write_file_atomic(const char *path, const void *data, size_t len, struct nerr *err);
/* Reads fd into buf (cap > 0 bytes, NUL-terminated) until a newline has
 * arrived, EOF, a read error, or timeout_ms have passed (EINTR is retried).
 * Returns the bytes read; *timed_out says whether time ran out first. For a
 * child's "ready" line on a pipe whose write end others may hold too. */
size_t fs_read_line_timeout(int fd, char *buf, size_t cap, int timeout_ms, int *timed_out);

#endif
