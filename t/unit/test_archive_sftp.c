/* sftp:// archives (archive/archive.h, "sftp://") against a real OpenSSH
 * sshd that this test starts on 127.0.0.1: pieces and a snapshot written
 * over SFTP verify, and verify the same (byte for byte) when the directory
 * is opened as file://; replacing an object is atomic and leaves no
 * temporary; a missing object, a missing directory, a temporary left by a
 * crash; an unknown host key, a missing key, a closed port, a server that
 * never speaks, and sshd killed under an open archive all fail with an
 * error that names the URL, within their bound; `nines archive verify
 * sftp://...` with the environment variables. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "archive/archive.h"
#include "t/sshd_fixture.h"
#include "t/tap.h"

struct fix {
    char dir[64];
    int port;
    pid_t sshd;
    char key[128], kh[128], kh_empty[128], url[256], furl[256];
};

/* As t/unit/test_ssh.c: a private sshd (t/sshd_fixture.h). */
static int start_sshd(struct fix *f)
{
    return sshd_start(f->dir, f->port, "hk_ed", NULL, &f->sshd);
}

/* The server dies with every per-connection sshd it forked, so an
 * established session breaks too (as test_ssh.c's power-off). */
static void stop_sshd(struct fix *f)
{
    sshd_stop(&f->sshd);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

/* n entries from first, term = 1 + index / 100, data "entry <index>". */
static int put_range(struct archive *a, const char *group, uint64_t first, uint64_t last)
{
    size_t n = (size_t)(last - first + 1);
    struct archive_entry *e = calloc(n, sizeof *e);
    char(*bufs)[32] = calloc(n, sizeof *bufs);
    for (size_t i = 0; i < n; i++) {
        uint64_t ix = first + i;
        snprintf(bufs[i], 32, "entry %llu", (unsigned long long)ix);
        e[i] = (struct archive_entry){ix, 1 + ix / 100, (uint32_t)strlen(bufs[i]),
                                      (unsigned char *)bufs[i]};
    }
    struct archive_meta m = {group,         "orders", "n1", atoi(strrchr(group, 'p') + 1),
                             1765000000000, NULL};
    struct nerr err = {0};
    int rc = archive_put_log(a, &m, e, n, &err);
    if (rc)
        diag("put %llu..%llu: %s", (unsigned long long)first, (unsigned long long)last, err.msg);
    free(e);
    free(bufs);
    return rc;
}

static json_t *verify(struct archive *a, struct nerr *err)
{
    json_t *rep = NULL;
    if (archive_verify(a, &rep, err))
        return NULL;
    return rep;
}

/* The path of bin/nines next to this test's build/t/. */
static void nines_bin(char *buf, size_t cap)
{
    const char *b = getenv("NINES_BUILD");
    if (b) {
        snprintf(buf, cap, "%s/bin/nines", b);
        return;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[n > 0 ? n : 0] = 0;
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = 0;
    snprintf(buf, cap, "%s/../bin/nines", self);
}

/* Writes, verifies over SFTP, then compares with the same directory as file://. */
static void test_roundtrip(struct fix *f, struct archive *a)
{
    struct nerr err = {0};
    ok(!put_range(a, "t1.p3", 1, 100) && !put_range(a, "t1.p3", 101, 250),
       "two pieces of t1.p3 put over sftp");
    struct archive_item it[2] = {{1, 2, (unsigned char *)"a", (unsigned char *)"va"},
                                 {1, 2, (unsigned char *)"b", (unsigned char *)"vb"}};
    struct archive_meta sm = {"t1.p4", "orders", "n2", 4, 1765000000000, "00ff"};
    is_int(archive_put_snapshot(a, &sm, 500, 7, it, 2, &err), 0, "a snapshot of t1.p4 at 500 (%s)",
           err.msg);
    ok(!put_range(a, "t1.p4", 501, 520), "t1.p4: entries 501..520 after the snapshot");

    json_t *rep = verify(a, &err);
    ok(rep && json_is_true(json_object_get(rep, "ok")), "archive_verify over sftp: ok (%s)",
       rep ? "" : err.msg);
    is_int(json_integer_value(json_object_get(rep, "objects")), 8,
           "8 objects: 3 pieces and a snapshot, each with its manifest");
    is_int(json_array_size(json_object_get(rep, "incomplete")), 0, "no incomplete upload");
    is(json_string_value(json_object_get(rep, "url")), f->url, "the report names the sftp URL");

    struct archive *fa = NULL;
    is_int(archive_open(f->furl, 0, &fa, &err), 0, "the same directory opens as file://");
    json_t *frep = fa ? verify(fa, &err) : NULL;
    if (rep && frep) {
        json_object_del(rep, "url");
        json_object_del(frep, "url");
    }
    ok(rep && frep && json_equal(rep, frep), "file:// verifies identically (groups, objects)");
    json_decref(rep);
    json_decref(frep);

    char **sn = NULL, **fn = NULL;
    size_t ns = 0, nf = 0;
    is_int(archive_list(a, &sn, &ns, &err), 0, "archive_list over sftp");
    if (fa)
        archive_list(fa, &fn, &nf, &err);
    int same = ns == nf && ns == 8;
    for (size_t i = 0; same && i < ns; i++) {
        unsigned char *sb = NULL, *fb = NULL;
        size_t sl = 0, fl = 0;
        same = !strcmp(sn[i], fn[i]) &&
               !archive_get(a, sn[i], ARCHIVE_MAX_OBJECT, &sb, &sl, &err) &&
               !archive_get(fa, fn[i], ARCHIVE_MAX_OBJECT, &fb, &fl, &err) && sl == fl &&
               !memcmp(sb, fb, sl);
        if (!same)
            diag("%s differs (%s)", sn[i], err.msg);
        free(sb);
        free(fb);
    }
    ok(same, "the same names, sorted, and every object byte for byte the same both ways");
    for (size_t i = 1; i < ns; i++)
        if (strcmp(sn[i - 1], sn[i]) >= 0)
            same = 0;
    ok(same, "names sorted bytewise");
    archive_names_free(sn, ns);
    archive_names_free(fn, nf);

    is_int(archive_list_dir(a, "t1.p3/log", &sn, &ns, &err), 0, "archive_list_dir t1.p3/log");
    ok(ns == 4 && !strcmp(sn[0], "00000000000000000001-00000000000000000100.json") &&
           !strcmp(sn[3], "00000000000000000101-00000000000000000250.piece"),
       "its 4 last components, sorted");
    archive_names_free(sn, ns);
    is_int(archive_list_dir(a, "t9.p0/log", &sn, &ns, &err), 0,
           "archive_list_dir of a missing directory: no error");
    is_int(ns, 0, "and no object");
    archive_names_free(sn, ns);

    unsigned char *b = NULL;
    size_t l = 0;
    is_int(archive_get(a, "t1.p3/log/nope.piece", 100, &b, &l, &err), NERR_NOTFOUND,
           "archive_get of a missing object: NERR_NOTFOUND (%s)", err.msg);
    is_int(archive_get(a, "t9.p9/log/nope.piece", 100, &b, &l, &err), NERR_NOTFOUND,
           "in a missing directory too");
    is_int(archive_remove(a, "t1.p3/log/nope.piece", &err), NERR_NOTFOUND,
           "archive_remove of a missing object: NERR_NOTFOUND");
    char piece[256];
    archive_piece_name("t1.p3", 1, 100, piece, sizeof piece);
    is_int(archive_get(a, piece, 100, &b, &l, &err), NERR_LIMIT,
           "archive_get above max: NERR_LIMIT (%s)", err.msg);
    is_int(archive_get(a, "t1.p3", 1 << 20, &b, &l, &err), NERR_CORRUPT,
           "archive_get of a directory: not a regular file");
    ok(archive_put(a, "../escape", "x", 1, &err) == NERR_INVALID &&
           archive_put(a, "g/.hidden", "x", 1, &err) == NERR_INVALID,
       "bad object names are refused before reaching the server");

    /* Replacing an object: rename(2) over it, no temporary left. */
    is_int(archive_put(a, "x/deep/obj", "one", 3, &err), 0, "put x/deep/obj (directories made)");
    is_int(archive_put(a, "x/deep/obj", "second", 6, &err), 0, "put it again: replaced (%s)",
           err.msg);
    is_int(archive_get(a, "x/deep/obj", 100, &b, &l, &err), 0, "get it");
    ok(l == 6 && !memcmp(b, "second", 6), "holds the second version");
    free(b);
    is_int(archive_list_dir(a, "x/deep", &sn, &ns, &err), 0, "list x/deep");
    ok(ns == 1 && !strcmp(sn[0], "obj"), "only the object: no temporary left behind");
    archive_names_free(sn, ns);
    is_int(archive_put(a, "x/deep/empty", "", 0, &err), 0, "an empty object");
    is_int(archive_get(a, "x/deep/empty", 100, &b, &l, &err), 0, "reads back");
    ok(b && l == 0, "as 0 bytes");
    free(b);
    is_int(archive_remove(a, "x/deep/obj", &err), 0, "archive_remove");
    is_int(archive_remove(a, "x/deep/empty", &err), 0, "archive_remove");
    is_int(archive_get(a, "x/deep/obj", 100, &b, &l, &err), NERR_NOTFOUND, "gone");
    char path[512];
    snprintf(path, sizeof path, "%s/arch/x/deep", f->dir);
    rmdir(path);
    snprintf(path, sizeof path, "%s/arch/x", f->dir);
    rmdir(path);

    /* A crash mid-upload leaves a temporary: listed as incomplete. */
    snprintf(path, sizeof path, "%s/arch/t1.p3/log/.00000000000000000251.piece.tmp-1-0", f->dir);
    FILE *t = fopen(path, "w");
    if (t) {
        fputs("partial", t);
        fclose(t);
    }
    rep = verify(a, &err);
    json_t *inc = json_object_get(rep, "incomplete");
    ok(rep && json_is_true(json_object_get(rep, "ok")) && json_array_size(inc) == 1 &&
           !strcmp(json_string_value(json_array_get(inc, 0)),
                   "t1.p3/log/.00000000000000000251.piece.tmp-1-0"),
       "a leftover temporary: listed as incomplete over sftp, not a problem");
    frep = fa ? verify(fa, &err) : NULL;
    ok(frep && inc && json_equal(json_object_get(frep, "incomplete"), inc),
       "and the same as file://");
    json_decref(rep);
    json_decref(frep);
    unlink(path);
    archive_close(fa);
}

static void test_refusals(struct fix *f)
{
    struct archive *a = NULL;
    struct nerr err = {0};
    char url[300];
    snprintf(url, sizeof url, "sftp://root@127.0.0.1:%d%s/missing", f->port, f->dir);
    is_int(archive_open_ssh(url, 0, f->key, f->kh, &a, &err), NERR_NOTFOUND,
           "a reader does not take a missing directory for an empty archive");
    ok(strstr(err.msg, url) != NULL, "names the URL: %s", err.msg);

    int64_t t0 = now_ms();
    is_int(archive_open_ssh(f->url, 0, f->key, f->kh_empty, &a, &err), NERR_AUTH,
           "unknown host key (empty known_hosts): NERR_AUTH");
    ok(strstr(err.msg, "unknown host key") && strstr(err.msg, "SHA256:") && strstr(err.msg, f->url),
       "names the URL, the host key and its fingerprint: %s", err.msg);
    ok(a == NULL, "no archive");

    char other[160];
    snprintf(other, sizeof other, "%s/id_other", f->dir);
    is_int(archive_open_ssh(f->url, 0, other, f->kh, &a, &err), NERR_AUTH,
           "a key the server does not know: NERR_AUTH");
    ok(strstr(err.msg, "authentication") && strstr(err.msg, f->url), "says so: %s", err.msg);
    snprintf(other, sizeof other, "%s/no_such_key", f->dir);
    is_int(archive_open_ssh(f->url, 0, other, f->kh, &a, &err), NERR_NOTFOUND,
           "a missing private key: NERR_NOTFOUND");
    ok(strstr(err.msg, "no_such_key") != NULL, "names it: %s", err.msg);

    int closed = free_port();
    snprintf(url, sizeof url, "sftp://root@127.0.0.1:%d%s/arch", closed, f->dir);
    t0 = now_ms();
    int rc = archive_open_ssh(url, 0, f->key, f->kh, &a, &err);
    int64_t dt = now_ms() - t0;
    ok(rc == NERR_IO && strstr(err.msg, url) && strstr(err.msg, "refused"),
       "a closed port: connection refused, naming the URL (%s: %s)", nerr_name(rc), err.msg);
    cmp_ok(dt, "<", 10000, "within the connect timeout (%lld ms)", (long long)dt);

    /* A server that accepts TCP and never speaks: the 10 s connect bound. */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    bind(lfd, (struct sockaddr *)&sa, sizeof(sa));
    listen(lfd, 4);
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    snprintf(url, sizeof url, "sftp://root@127.0.0.1:%d%s/arch", ntohs(sa.sin_port), f->dir);
    t0 = now_ms();
    rc = archive_open_ssh(url, 0, f->key, f->kh, &a, &err);
    dt = now_ms() - t0;
    ok(rc == NERR_TIMEOUT && strstr(err.msg, url), "a silent server: NERR_TIMEOUT (%s)", err.msg);
    cmp_ok(dt, "<", 15000, "bounded by the 10 s connect timeout (%lld ms)", (long long)dt);
    close(lfd);

    ok(archive_open_ssh("sftp://root@127.0.0.1", 0, f->key, f->kh, &a, &err) == NERR_INVALID &&
           archive_open_ssh("sftp://127.0.0.1/x", 0, f->key, f->kh, &a, &err) == NERR_INVALID &&
           archive_open_ssh("sftp://u:pw@127.0.0.1/x", 0, f->key, f->kh, &a, &err) ==
               NERR_INVALID &&
           archive_open_ssh("sftp://u@127.0.0.1:0/x", 0, f->key, f->kh, &a, &err) == NERR_INVALID &&
           archive_open_ssh("sftp://u@127.0.0.1/a/../b", 0, f->key, f->kh, &a, &err) ==
               NERR_INVALID,
       "malformed sftp URLs (no path, no user, a password, port 0, '..'): NERR_INVALID");
}

static void test_cli(struct fix *f)
{
    char nines[PATH_MAX + 32];
    nines_bin(nines, sizeof nines);
    if (access(nines, X_OK) != 0) {
        skip(3, "bin/nines not built");
        return;
    }
    int rc =
        run("NINES_ARCHIVE_SSH_KEY='%s' NINES_ARCHIVE_KNOWN_HOSTS='%s' timeout 60 '%s' archive "
            "verify '%s' > '%s/cli.out' 2>&1",
            f->key, f->kh, nines, f->url, f->dir);
    is_int(rc, 0, "nines archive verify sftp://... exits 0 on the good archive");
    char path[256];
    snprintf(path, sizeof path, "%s/cli.out", f->dir);
    ok(run("grep -q VERIFIED '%s'", path) == 0, "and says VERIFIED");
    rc = run("NINES_ARCHIVE_SSH_KEY='%s' NINES_ARCHIVE_KNOWN_HOSTS='%s' timeout 60 '%s' archive "
             "ls '%s' > '%s/cli.out' 2>&1",
             f->key, f->kh_empty, nines, f->url, f->dir);
    ok(rc == 2 && run("grep -q 'unknown host key' '%s'", path) == 0,
       "with an empty known_hosts: exit 2 (%d), unknown host key", rc);
}

/* sshd killed under an open archive: the next calls fail (bounded), and
 * the archive works again once the server is back. */
static void test_server_loss(struct fix *f, struct archive *a)
{
    struct nerr err = {0};
    unsigned char *b = NULL;
    size_t l = 0;
    char piece[256];
    archive_piece_name("t1.p3", 1, 100, piece, sizeof piece);
    is_int(archive_get(a, piece, ARCHIVE_MAX_OBJECT, &b, &l, &err), 0, "the session works");
    free(b);
    stop_sshd(f);
    int64_t t0 = now_ms();
    int rc = archive_get(a, piece, ARCHIVE_MAX_OBJECT, &b, &l, &err);
    int64_t dt = now_ms() - t0;
    ok(rc != 0 && strstr(err.msg, f->url), "after sshd was killed, archive_get fails (%s: %s)",
       nerr_name(rc), err.msg);
    cmp_ok(dt, "<", 10000, "at once, not a hang (%lld ms)", (long long)dt);
    t0 = now_ms();
    json_t *rep = NULL;
    rc = archive_verify(a, &rep, &err);
    ok(rc != 0 && !rep, "archive_verify fails too (%s)", err.msg);
    rc = archive_put(a, "x/y", "z", 1, &err);
    ok(rc != 0, "and archive_put (%s)", err.msg);
    cmp_ok(now_ms() - t0, "<", 10000, "each bounded");
    if (start_sshd(f) != 0)
        bail_out("sshd did not restart");
    is_int(archive_get(a, piece, ARCHIVE_MAX_OBJECT, &b, &l, &err), 0,
           "with sshd back, the same handle reconnects (%s)", err.msg);
    free(b);
}

int main(void)
{
    if (access(SSHD, X_OK) != 0) {
        printf("1..0 # SKIP %s not installed\n", SSHD);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    struct fix f = {0};
    snprintf(f.dir, sizeof(f.dir), "/tmp/nines-asftp-XXXXXX");
    if (!mkdtemp(f.dir))
        bail_out("mkdtemp");
    mkdir("/run/sshd", 0755); /* sshd's privilege-separation directory */
    f.port = free_port();
    if (run("cd %s && ssh-keygen -q -t ed25519 -N '' -f hk_ed && ssh-keygen -q -t ed25519 -N '' "
            "-f id_ed && ssh-keygen -q -t ed25519 -N '' -f id_other && cp id_ed.pub "
            "authorized_keys && printf '[127.0.0.1]:%d ' > known_hosts && cut -d' ' -f1,2 "
            "hk_ed.pub >> known_hosts && : > known_hosts_empty",
            f.dir, f.port) != 0)
        bail_out("ssh-keygen failed");
    snprintf(f.key, sizeof f.key, "%s/id_ed", f.dir);
    snprintf(f.kh, sizeof f.kh, "%s/known_hosts", f.dir);
    snprintf(f.kh_empty, sizeof f.kh_empty, "%s/known_hosts_empty", f.dir);
    snprintf(f.url, sizeof f.url, "sftp://root@127.0.0.1:%d%s/arch", f.port, f.dir);
    snprintf(f.furl, sizeof f.furl, "file://%s/arch", f.dir);
    if (start_sshd(&f) != 0)
        bail_out("sshd did not start");
    note("sshd pid %d on 127.0.0.1:%d, dir %s", (int)f.sshd, f.port, f.dir);

    struct archive *a = NULL;
    struct nerr err = {0};
    int64_t t0 = now_ms();
    is_int(archive_open_ssh(f.url, 1, f.key, f.kh, &a, &err), 0, "open %s with create (%s)", f.url,
           err.msg);
    diag("open (connect, auth, mkdir -p) %lld ms", (long long)(now_ms() - t0));
    if (!a)
        bail_out("no archive");
    t0 = now_ms();
    test_roundtrip(&f, a);
    diag("round trip %lld ms", (long long)(now_ms() - t0));
    test_refusals(&f);
    test_cli(&f);
    test_server_loss(&f, a);
    archive_close(a);

    /* archive_open takes the key and known_hosts from the environment. */
    setenv("NINES_ARCHIVE_SSH_KEY", f.key, 1);
    setenv("NINES_ARCHIVE_KNOWN_HOSTS", f.kh, 1);
    is_int(archive_open(f.url, 0, &a, &err), 0, "archive_open with the environment variables (%s)",
           err.msg);
    archive_close(a);
    setenv("NINES_ARCHIVE_KNOWN_HOSTS", f.kh_empty, 1);
    is_int(archive_open(f.url, 0, &a, &err), NERR_AUTH, "which it does use");

    stop_sshd(&f);
    nftw(f.dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return done_testing();
}
