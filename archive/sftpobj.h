/*
 * sftpobj.h — archive objects on an SSH server (sftp:// URLs), the backend
 * behind archive.h's "where objects go" when the URL says sftp://.
 *
 * Callers are fileobj.c's archive_* functions, which check every object
 * name (name_ok) before it gets here and sort what the listings return; the
 * contract each function keeps is the one of its archive_* counterpart.
 *
 * Connection. sftpobj_open connects with net/ssh.h (public-key auth, strict
 * known_hosts: an unknown or changed host key is NERR_AUTH). The session is
 * kept; a call that finds it dead (the server restarted, a deadline passed)
 * connects once more before failing, so a handle outlives a server restart.
 * Every request is bounded (connect 10 s, each SFTP request 30 s without
 * progress). Errors name the URL or the remote path and what failed.
 *
 * Ownership: url, key_path and known_hosts are copied. Not thread-safe: one
 * thread at a time, as an archive handle.
 */
#ifndef NINES_ARCHIVE_SFTPOBJ_H
#define NINES_ARCHIVE_SFTPOBJ_H

#include <stddef.h>

#include "lib/err.h"

struct sftpobj;

/* url is sftp://user@host[:port]/absolute/path; key_path and known_hosts
 * must not be NULL. With create the directory is made when missing;
 * without, NERR_NOTFOUND when it is not there. */
int sftpobj_open(const char *url, int create, const char *key_path, const char *known_hosts,
                 struct sftpobj **out, struct nerr *err);
void sftpobj_close(struct sftpobj *o);

int sftpobj_put(struct sftpobj *o, const char *name, const void *buf, size_t len, struct nerr *err);
int sftpobj_get(struct sftpobj *o, const char *name, size_t max, unsigned char **buf, size_t *len,
                struct nerr *err);
int sftpobj_remove(struct sftpobj *o, const char *name, struct nerr *err);

/* Calls add(arg, name) for every object under the archive (recursive, names
 * relative to its root) or, with dir, for every entry directly in dir (last
 * components; nothing when dir does not exist). Unsorted. add returns 0 or
 * NERR_NOMEM, which stops the walk. */
typedef int (*sftpobj_name_fn)(void *arg, const char *name);
int sftpobj_list(struct sftpobj *o, const char *dir, sftpobj_name_fn add, void *arg,
                 struct nerr *err);

#endif
