/*
 * fileobj.c — archive objects in a directory (file:// URLs; archive.h,
 * "where objects go"), and the archive_* entry points, which check names
 * and hand sftp:// archives to sftpobj.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive/archive.h"
#include "archive/sftpobj.h"
#include "lib/fsutil.h"

struct archive {
    char *url;
    char *root;           /* file://: the absolute directory */
    struct sftpobj *sftp; /* sftp://: the backend; root is NULL */
};

int archive_open(const char *url, int create, struct archive **out, struct nerr *err)
{
    return archive_open_ssh(url, create, NULL, NULL, out, err);
}

/* path, else $env, else ~/.ssh/file. */
static int ssh_file(const char *path, const char *env, const char *file, char *buf, size_t cap,
                    struct nerr *err)
{
    const char *v = path ? path : getenv(env);
    if (v && *v) {
        snprintf(buf, cap, "%s", v);
        return 0;
    }
    const char *home = getenv("HOME");
    struct passwd *pw = NULL;
    if (!home || !*home)
        home = (pw = getpwuid(getuid())) ? pw->pw_dir : NULL;
    if (!home)
        return nerr_set(err, NERR_INVALID, "no home directory to find ~/.ssh/%s; set %s", file,
                        env);
    snprintf(buf, cap, "%s/.ssh/%s", home, file);
    return 0;
}

static int open_sftp(const char *url, int create, const char *key_path, const char *known_hosts,
                     struct archive **out, struct nerr *err)
{
    char key[PATH_MAX], kh[PATH_MAX];
    int rc = ssh_file(key_path, "NINES_ARCHIVE_SSH_KEY", "id_ed25519", key, sizeof key, err);
    if (!rc)
        rc = ssh_file(known_hosts, "NINES_ARCHIVE_KNOWN_HOSTS", "known_hosts", kh, sizeof kh, err);
    if (rc)
        return rc;
    struct archive *a = calloc(1, sizeof *a);
    if (!a || !(a->url = strdup(url))) {
        free(a);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    rc = sftpobj_open(url, create, key, kh, &a->sftp, err);
    if (rc) {
        archive_close(a);
        return rc;
    }
    *out = a;
    return 0;
}

int archive_open_ssh(const char *url, int create, const char *key_path, const char *known_hosts,
                     struct archive **out, struct nerr *err)
{
    *out = NULL;
    if (!url)
        return nerr_set(err, NERR_INVALID, "no archive URL");
    if (!strncmp(url, "sftp://", 7))
        return open_sftp(url, create, key_path, known_hosts, out, err);
    if (strncmp(url, "file://", 7) || url[7] != '/')
        return nerr_set(err, NERR_INVALID,
                        "'%s' is not an archive URL: file:///absolute/dir or "
                        "sftp://user@host[:port]/absolute/dir",
                        url);
    const char *path = url + 7;
    if (strlen(path) >= PATH_MAX - ARCHIVE_MAX_NAME - 80)
        return nerr_set(err, NERR_INVALID, "%s: path too long", url);
    if (strstr(path, "/../") || !strcmp(path + strlen(path) - (strlen(path) >= 3 ? 3 : 0), "/.."))
        return nerr_set(err, NERR_INVALID, "%s: no '..' in an archive path", url);
    struct stat st;
    if (create) {
        int rc = fs_mkdir_p(path, err);
        if (rc)
            return rc;
    } else if (stat(path, &st) || !S_ISDIR(st.st_mode)) {
        return nerr_set(err, NERR_NOTFOUND, "%s: no archive there (no such directory)", url);
    }
    struct archive *a = calloc(1, sizeof *a);
    if (!a || !(a->url = strdup(url)) || !(a->root = strdup(path))) {
        if (a)
            free(a->url);
        free(a);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    size_t n = strlen(a->root);
    while (n > 1 && a->root[n - 1] == '/')
        a->root[--n] = 0;
    *out = a;
    return 0;
}

void archive_close(struct archive *a)
{
    if (!a)
        return;
    sftpobj_close(a->sftp);
    free(a->url);
    free(a->root);
    free(a);
}

const char *archive_url(const struct archive *a)
{
    return a->url;
}

/* A relative object name: components of [A-Za-z0-9._-], none empty, none
 * starting with '.' (those are temporaries), no more than 4 deep. */
static int name_ok(const char *name)
{
    if (!name || !*name || strlen(name) > ARCHIVE_MAX_NAME + 64)
        return 0;
    int depth = 0;
    for (const char *p = name; *p;) {
        const char *s = strchr(p, '/');
        size_t n = s ? (size_t)(s - p) : strlen(p);
        if (!n || p[0] == '.' || ++depth > 4)
            return 0;
        for (size_t i = 0; i < n; i++) {
            char c = p[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-'))
                return 0;
        }
        p += n + (s ? 1 : 0);
        if (s && !*p)
            return 0;
    }
    return 1;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int archive_put(struct archive *a, const char *name, const void *buf, size_t len, struct nerr *err)
{
    if (!name_ok(name))
        return nerr_set(err, NERR_INVALID, "'%s' is not an archive object name", name);
    if (a->sftp)
        return sftpobj_put(a->sftp, name, buf, len, err);
    char path[PATH_MAX], dir[PATH_MAX], tmp[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", a->root, name);
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = 0;
    int rc = fs_mkdir_p(dir, err);
    if (rc)
        return rc;
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, 0) != sizeof r)
        r = (uint32_t)getpid();
    /* A temporary never looks like an object: its name starts with '.'. */
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp-%d-%08x", dir, strrchr(path, '/') + 1, (int)getpid(), r);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return nerr_sys(err, errno, "create %s", tmp);
    if (write_all(fd, buf, len) || fsync(fd)) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return nerr_sys(err, e, "write %s", tmp);
    }
    if (close(fd)) {
        int e = errno;
        unlink(tmp);
        return nerr_sys(err, e, "close %s", tmp);
    }
    if (rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return nerr_sys(err, e, "rename %s to %s", tmp, path);
    }
    return fs_fsync_dir(dir, err);
}

int archive_get(struct archive *a, const char *name, size_t max, unsigned char **buf, size_t *len,
                struct nerr *err)
{
    *buf = NULL;
    *len = 0;
    if (!name_ok(name))
        return nerr_set(err, NERR_INVALID, "'%s' is not an archive object name", name);
    if (a->sftp)
        return sftpobj_get(a->sftp, name, max, buf, len, err);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", a->root, name);
    struct stat st;
    if (stat(path, &st))
        return errno == ENOENT ? nerr_set(err, NERR_NOTFOUND, "%s: no such object", name)
                               : nerr_sys(err, errno, "stat %s", path);
    if (!S_ISREG(st.st_mode))
        return nerr_set(err, NERR_CORRUPT, "%s: not a regular file", name);
    if ((uint64_t)st.st_size > max)
        return nerr_set(err, NERR_LIMIT, "%s: %lld bytes, over the %zu limit", name,
                        (long long)st.st_size, max);
    char *b;
    size_t n;
    int rc = fs_read_file(path, max, &b, &n, err);
    if (rc)
        return rc;
    *buf = (unsigned char *)b;
    *len = n;
    return 0;
}

int archive_remove(struct archive *a, const char *name, struct nerr *err)
{
    if (!name_ok(name))
        return nerr_set(err, NERR_INVALID, "'%s' is not an archive object name", name);
    if (a->sftp)
        return sftpobj_remove(a->sftp, name, err);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", a->root, name);
    if (unlink(path))
        return errno == ENOENT ? nerr_set(err, NERR_NOTFOUND, "%s: no such object", name)
                               : nerr_sys(err, errno, "unlink %s", path);
    *strrchr(path, '/') = 0;
    return fs_fsync_dir(path, err);
}

struct names {
    char **v;
    size_t n, cap;
};

static int add_name(struct names *ns, const char *s)
{
    if (ns->n == ns->cap) {
        size_t nc = ns->cap ? ns->cap * 2 : 64;
        char **nv = realloc(ns->v, nc * sizeof *nv);
        if (!nv)
            return NERR_NOMEM;
        ns->v = nv;
        ns->cap = nc;
    }
    if (!(ns->v[ns->n] = strdup(s)))
        return NERR_NOMEM;
    ns->n++;
    return 0;
}

static int add_name_fn(void *arg, const char *s)
{
    return add_name(arg, s);
}

/* Walks dir (relative rel) depth first; every non-directory is a name. */
static int walk(const char *root, const char *rel, int depth, struct names *ns, struct nerr *err)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s%s%s", root, *rel ? "/" : "", rel) >= (int)sizeof path)
        return nerr_set(err, NERR_LIMIT, "%s/%s: path too long", root, rel);
    DIR *d = opendir(path);
    if (!d)
        return nerr_sys(err, errno, "open directory %s", path);
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char sub[PATH_MAX];
        if (snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", de->d_name) >=
            (int)sizeof sub) {
            rc = nerr_set(err, NERR_LIMIT, "%s/%s: path too long", path, de->d_name);
            break;
        }
        int isdir = de->d_type == DT_DIR;
        if (de->d_type == DT_UNKNOWN) {
            struct stat st;
            char full[PATH_MAX + 260];
            isdir = snprintf(full, sizeof full, "%s/%s", path, de->d_name) < (int)sizeof full &&
                    !lstat(full, &st) && S_ISDIR(st.st_mode);
        }
        if (isdir && depth < 8)
            rc = walk(root, sub, depth + 1, ns, err);
        else if (add_name(ns, sub))
            rc = nerr_set(err, NERR_NOMEM, "out of memory");
    }
    closedir(d);
    return rc;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int archive_list(struct archive *a, char ***names, size_t *n, struct nerr *err)
{
    struct names ns = {0};
    int rc = a->sftp ? sftpobj_list(a->sftp, NULL, add_name_fn, &ns, err)
                     : walk(a->root, "", 0, &ns, err);
    if (rc) {
        archive_names_free(ns.v, ns.n);
        return rc;
    }
    if (ns.n)
        qsort(ns.v, ns.n, sizeof *ns.v, cmp_names);
    *names = ns.v;
    *n = ns.n;
    return 0;
}

void archive_names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

int archive_list_dir(struct archive *a, const char *dir, char ***names, size_t *n, struct nerr *err)
{
    struct names ns = {0};
    char path[PATH_MAX];
    *names = NULL;
    *n = 0;
    if (!name_ok(dir))
        return nerr_set(err, NERR_INVALID, "'%s' is not an archive directory name", dir);
    int rc = 0;
    if (a->sftp) {
        rc = sftpobj_list(a->sftp, dir, add_name_fn, &ns, err);
    } else {
        if (snprintf(path, sizeof path, "%s/%s", a->root, dir) >= (int)sizeof path)
            return nerr_set(err, NERR_LIMIT, "%s/%s: path too long", a->root, dir);
        DIR *d = opendir(path);
        if (!d) {
            if (errno == ENOENT)
                return 0;
            return nerr_sys(err, errno, "open directory %s", path);
        }
        struct dirent *de;
        while (!rc && (de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && add_name(&ns, de->d_name))
                rc = nerr_set(err, NERR_NOMEM, "out of memory");
        closedir(d);
    }
    if (rc) {
        archive_names_free(ns.v, ns.n);
        return rc;
    }
    if (ns.n)
        qsort(ns.v, ns.n, sizeof *ns.v, cmp_names);
    *names = ns.v;
    *n = ns.n;
    return 0;
}
