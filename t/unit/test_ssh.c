/* test_ssh.c — net/ssh against a real OpenSSH sshd that this test starts
 * on 127.0.0.1 with generated host and client keys: known_hosts policies,
 * exec (status, signal, streams, size, timeout), ed25519 and RSA client
 * keys, SFTP round trip, injection-proof quoting, and the pool reconnecting
 * after sshd (and every connection it held) was killed and restarted. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

#include "net/ssh.h"
#include "t/sshd_fixture.h"
#include "t/tap.h"

struct fix {
    char dir[64];
    int port;
    pid_t sshd;
};

/* First line of a command's stdout, newline stripped. */
static void capture(char *buf, size_t cap, const char *cmd)
{
    buf[0] = '\0';
    FILE *f = popen(cmd, "r");
    if (!f)
        return;
    if (!fgets(buf, (int)cap, f))
        buf[0] = '\0';
    pclose(f);
    buf[strcspn(buf, "\n")] = '\0';
}

/* The SHA256 fingerprint ssh-keygen prints for a public key file. */
static void keygen_fp(struct fix *f, const char *pub, char *out, size_t cap)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "ssh-keygen -lf %s/%s | cut -d' ' -f2", f->dir, pub);
    capture(out, cap, cmd);
}

static int start_sshd(struct fix *f, const char *hostkey)
{
    /* libssh2 1.10 signs RSA with SHA-1 only ("ssh-rsa"), for host keys
     * and user auth; OpenSSH >= 8.8 refuses that by default. */
    return sshd_start(f->dir, f->port, hostkey,
                      "PubkeyAcceptedAlgorithms +ssh-rsa\nHostKeyAlgorithms +ssh-rsa\n", &f->sshd);
}

/* Power-off as a host sees it: the listener and every per-connection sshd
 * it forked die at once, so established sessions break too. */
static void stop_sshd(struct fix *f)
{
    sshd_stop(&f->sshd);
}

static struct ssh_host_opts opts(struct fix *f, const char *key, enum ssh_hostkey_policy pol)
{
    static char keypath[256], kh[256];
    snprintf(keypath, sizeof(keypath), "%s/%s", f->dir, key);
    snprintf(kh, sizeof(kh), "%s/known_hosts", f->dir);
    struct ssh_host_opts o = {.host = "127.0.0.1",
                              .port = f->port,
                              .user = "root",
                              .key_path = keypath,
                              .known_hosts = kh,
                              .hostkey_policy = pol,
                              .connect_timeout_ms = 5000,
                              .io_timeout_ms = 10000};
    return o;
}

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static int files_equal(const char *a, const char *b)
{
    return run("cmp -s '%s' '%s'", a, b) == 0;
}

static void test_exec(struct ssh_session *s)
{
    struct ssh_result r = {0};
    struct nerr e;
    is_int(ssh_exec(s, "exit 0", 5000, &r, &e), 0, "exec 'exit 0' succeeds");
    is_int(r.exit_status, 0, "exit status 0");
    ssh_result_free(&r);
    is_int(ssh_exec(s, "exit 3", 5000, &r, &e), 0, "exec 'exit 3' returns 0 (status is data)");
    is_int(r.exit_status, 3, "exit status 3");
    ssh_result_free(&r);
    is_int(ssh_exec(s, "kill -KILL $$", 5000, &r, &e), 0, "exec of a self-killing shell");
    is(r.exit_signal, "KILL", "killed-by-signal reported as KILL");
    is_int(r.exit_status, -1, "no exit status when killed");
    ssh_result_free(&r);
    is_int(ssh_exec(s, "echo to-out; echo to-err >&2; exit 7", 5000, &r, &e), 0,
           "exec with both streams");
    is(r.out, "to-out\n", "stdout kept apart");
    is(r.err, "to-err\n", "stderr kept apart");
    is_int(r.exit_status, 7, "status alongside output");
    ssh_result_free(&r);

    int64_t t0 = now_ms();
    is_int(ssh_exec(s, "head -c 1048576 /dev/zero | tr '\\0' x", 20000, &r, &e), 0, "1 MiB output");
    int64_t t1 = now_ms();
    is_int(r.out_len, 1048576, "all 1 MiB received");
    int allx = r.out != NULL;
    for (size_t i = 0; allx && i < r.out_len; i++)
        allx = r.out[i] == 'x';
    ok(allx && !r.out_truncated, "1 MiB content intact, not truncated");
    diag("1 MiB exec output in %lld ms", (long long)(t1 - t0));
    ssh_result_free(&r);

    r.max_output = 1000;
    is_int(ssh_exec(s, "head -c 100000 /dev/zero; echo e >&2", 20000, &r, &e), 0,
           "exec past the output cap");
    is_int(r.out_len, 1000, "stdout cut at max_output");
    ok(r.out_truncated && !r.err_truncated, "truncation flagged on stdout only");
    is(r.err, "e\n", "stderr still complete after stdout overflowed");
    ssh_result_free(&r);

    t0 = now_ms();
    int rc = ssh_exec(s, "sleep 10", 500, &r, &e);
    t1 = now_ms();
    is_int(rc, NERR_TIMEOUT, "sleep 10 with 500 ms timeout is NERR_TIMEOUT");
    /* Bounds here are far below what a wrong implementation does (wait for
     * the 10 s command, or forever) and far above a busy machine's stalls. */
    cmp_ok(t1 - t0, "<", 5000, "timeout returned in %lld ms, not after the 10 s command",
           (long long)(t1 - t0));
    diag("exec timeout (500 ms) returned after %lld ms: %s", (long long)(t1 - t0), e.msg);
    ssh_result_free(&r);
    ok(!ssh_session_dead(s), "session is still live after an exec timeout");
    r.max_output = 1 << 20;
    t0 = now_ms();
    rc = ssh_exec(s, "yes", 500, &r, &e);
    t1 = now_ms();
    is_int(rc, NERR_TIMEOUT, "a command that never stops writing times out too");
    cmp_ok(t1 - t0, "<", 5000, "in %lld ms, output kept %zu bytes", (long long)(t1 - t0),
           r.out_len);
    ssh_result_free(&r);
    is_int(ssh_exec(s, "echo alive", 5000, &r, &e), 0, "next exec on same session works");
    is(r.out, "alive\n", "and returns its output");
    ssh_result_free(&r);
}

static void test_quoting(struct fix *f, struct ssh_session *s)
{
    char marker[128], inj1[160], inj2[160], inj3[160], fname[512];
    snprintf(marker, sizeof(marker), "/tmp/PWNED-%d-%ld", (int)getpid(), (long)now_ms());
    unlink(marker);
    snprintf(inj1, sizeof(inj1), "; touch %s", marker);
    snprintf(inj2, sizeof(inj2), "$(touch %s)", marker);
    snprintf(inj3, sizeof(inj3), "`touch %s`", marker);
    /* The format reaches printf as the 4 bytes %s\n; printf turns \n into a newline. */
    const char *argv[] = {"printf", "%s\\n", inj1, inj2,           inj3,         "$(id)",
                          "`id`",   "a\nb",  "'",  "\"",           "it's \"x\"", "*",
                          "  lead", "-n",    "",   "|| touch x &", "héllo",      NULL};
    size_t want_len = 0;
    char want[2048] = "";
    for (int i = 2; argv[i]; i++) {
        strcat(want, argv[i]);
        strcat(want, "\n");
    }
    want_len = strlen(want);
    struct ssh_result r = {0};
    struct nerr e;
    is_int(ssh_exec_argv(s, argv, 5000, &r, &e), 0, "exec_argv with hostile arguments");
    ok(r.out_len == want_len && memcmp(r.out, want, want_len) == 0,
       "every hostile argument came back byte-identical as its own argv element");
    is_int(r.exit_status, 0, "printf exit status 0");
    ssh_result_free(&r);

    /* A hostile file name, created remotely, must exist under exactly that name. */
    /* No '/' inside the name itself; an injected touch would create
     * "PWNED-..." in the remote working directory (root's home). */
    char rmarker[48];
    snprintf(rmarker, sizeof(rmarker), "PWNED-%d-f", (int)getpid());
    snprintf(fname, sizeof(fname), "%s/x; touch %s $(touch %s) `touch %s` '\"\n*", f->dir, rmarker,
             rmarker, rmarker);
    const char *touch[] = {"touch", "--", fname, NULL};
    is_int(ssh_exec_argv(s, touch, 5000, &r, &e), 0, "touch a hostile file name");
    is_int(r.exit_status, 0, "touch exit 0");
    ssh_result_free(&r);
    struct stat st;
    ok(stat(fname, &st) == 0, "file with the hostile name exists exactly");
    const char *ls[] = {"ls", "--", fname, NULL};
    is_int(ssh_exec_argv(s, ls, 5000, &r, &e), 0, "ls the hostile file name");
    is_int(r.exit_status, 0, "ls finds it (exit 0)");
    ssh_result_free(&r);
    unlink(fname);
    ok(stat(marker, &st) != 0, "marker %s was never created", marker);
    unlink(marker);
    const char *home = getenv("HOME") ? getenv("HOME") : "/root";
    char rpath[512];
    snprintf(rpath, sizeof(rpath), "%s/%s", home, rmarker);
    ok(stat(rpath, &st) != 0, "marker %s was never created", rpath);
    unlink(rpath);
}

static void test_sftp(struct fix *f, struct ssh_session *s)
{
    char src[256], dst[256], back[256], bad[256];
    snprintf(src, sizeof(src), "%s/src.bin", f->dir);
    snprintf(dst, sizeof(dst), "%s/remote.bin", f->dir);
    snprintf(back, sizeof(back), "%s/back.bin", f->dir);
    snprintf(bad, sizeof(bad), "%s/no-such-dir/remote.bin", f->dir);
    run("head -c 5242880 /dev/urandom > '%s'", src);
    struct nerr e;
    int64_t t0 = now_ms();
    is_int(ssh_upload(s, src, dst, 0640, &e), 0, "upload 5 MiB");
    int64_t t1 = now_ms();
    struct stat st;
    ok(stat(dst, &st) == 0 && (st.st_mode & 07777) == 0640, "remote file has mode 0640");
    is_int(ssh_download(s, dst, back, &e), 0, "download it back");
    int64_t t2 = now_ms();
    ok(files_equal(src, back), "5 MiB round trip is byte-identical");
    diag("SFTP 5 MiB: upload %lld ms, download %lld ms", (long long)(t1 - t0),
         (long long)(t2 - t1));

    int rc = ssh_upload(s, src, bad, 0644, &e);
    is_int(rc, NERR_NOTFOUND, "upload into a missing directory is NERR_NOTFOUND");
    ok(strstr(e.msg, "no such") && strstr(e.msg, "no-such-dir"), "clear error: %s", e.msg);
    ok(!ssh_session_dead(s), "an SFTP status error leaves the session live");
    unlink(back);
    rc = ssh_download(s, bad, back, &e);
    is_int(rc, NERR_NOTFOUND, "download of a missing file is NERR_NOTFOUND");
    ok(stat(back, &st) != 0, "no local file left behind");
    is_int(ssh_upload(s, "/nonexistent/file", dst, 0644, &e), NERR_NOTFOUND,
           "upload of a missing local file is NERR_NOTFOUND");
    unlink(src);
    unlink(dst);
}

/* The SFTP file API (ssh_sftp_*): what archive/sftpobj.c builds on. */
static void test_sftp_api(struct fix *f, struct ssh_session *s)
{
    char base[128], d[192], obj[256], other[256], path[300];
    snprintf(base, sizeof(base), "%s/api", f->dir);
    snprintf(d, sizeof(d), "%s/a/b", base);
    snprintf(obj, sizeof(obj), "%s/obj", d);
    snprintf(other, sizeof(other), "%s/other", d);
    struct nerr e;
    struct ssh_sftp_attrs st;
    is_int(ssh_sftp_mkdirs(s, d, 0755, &e), 0, "mkdirs makes api/a/b (%s)", e.msg);
    is_int(ssh_sftp_mkdirs(s, d, 0755, &e), 0, "and is fine when it exists");
    ok(ssh_sftp_stat(s, d, &st, &e) == 0 && st.type == SSH_FT_DIR, "stat: a directory");

    size_t big = 3u << 20;
    unsigned char *v1 = malloc(big), *v2 = malloc(big);
    for (size_t i = 0; i < big; i++) {
        v1[i] = (unsigned char)(i * 7 + (i >> 13));
        v2[i] = (unsigned char)(i * 13 + 1);
    }
    int64_t t0 = now_ms();
    is_int(ssh_sftp_put(s, obj, v1, big, 0644, &e), 0, "put 3 MiB (%s)", e.msg);
    int64_t t1 = now_ms();
    ok(ssh_sftp_stat(s, obj, &st, &e) == 0 && st.type == SSH_FT_REG && st.size == big,
       "stat: a regular file of 3 MiB");
    unsigned char *b = NULL;
    size_t l = 0;
    is_int(ssh_sftp_get(s, obj, big, &b, &l, &e), 0, "get it (max = its size)");
    ok(l == big && !memcmp(b, v1, big), "byte-identical");
    diag("ssh_sftp_put 3 MiB %lld ms, get %lld ms", (long long)(t1 - t0),
         (long long)(now_ms() - t1));
    free(b);
    is_int(ssh_sftp_put(s, obj, v2, big, 0644, &e), 0, "put over it (%s)", e.msg);
    is_int(ssh_sftp_get(s, obj, big, &b, &l, &e), 0, "get");
    ok(l == big && !memcmp(b, v2, big), "the new bytes replaced the old");
    free(b);
    is_int(ssh_sftp_get(s, obj, big - 1, &b, &l, &e), NERR_LIMIT, "get above max: NERR_LIMIT");
    ok(b == NULL && l == 0, "and nothing returned");
    free(v1);
    free(v2);

    is_int(ssh_sftp_put(s, other, "x", 1, 0644, &e), 0, "put a second file");
    is_int(ssh_sftp_mkdirs(s, "sub", 0755, &e), 0, "mkdirs of a relative path (login directory)");
    snprintf(path, sizeof(path), "%s/sub", d);
    is_int(ssh_sftp_mkdirs(s, path, 0755, &e), 0, "and a subdirectory");
    struct ssh_dirent *v = NULL;
    size_t n = 0;
    is_int(ssh_sftp_list(s, d, &v, &n, &e), 0, "list api/a/b");
    int files = 0, dirs = 0, other_names = 0;
    for (size_t i = 0; i < n; i++) {
        if ((!strcmp(v[i].name, "obj") || !strcmp(v[i].name, "other")) && !v[i].is_dir)
            files++;
        else if (!strcmp(v[i].name, "sub") && v[i].is_dir)
            dirs++;
        else
            other_names++;
    }
    ok(n == 3 && files == 2 && dirs == 1 && !other_names,
       "obj, other, sub/ and nothing else: no temporary left, no . or ..");
    ssh_sftp_list_free(v, n);

    is_int(ssh_sftp_rename(s, other, obj, &e), 0, "rename over an existing file (%s)", e.msg);
    is_int(ssh_sftp_get(s, obj, 100, &b, &l, &e), 0, "get the target");
    ok(l == 1 && b[0] == 'x', "holds the renamed file");
    free(b);
    is_int(ssh_sftp_stat(s, other, &st, &e), NERR_NOTFOUND, "the source is gone");
    is_int(ssh_sftp_fsync(s, d, &e), 0, "fsync of a directory (%s)", e.msg);
    is_int(ssh_sftp_fsync(s, obj, &e), 0, "fsync of a file");

    snprintf(path, sizeof(path), "%s/nope/x", base);
    is_int(ssh_sftp_put(s, path, "x", 1, 0644, &e), NERR_NOTFOUND,
           "put into a missing directory: NERR_NOTFOUND");
    ok(strstr(e.msg, "nope") != NULL, "naming it: %s", e.msg);
    is_int(ssh_sftp_get(s, path, 100, &b, &l, &e), NERR_NOTFOUND, "get of a missing file");
    is_int(ssh_sftp_stat(s, path, &st, &e), NERR_NOTFOUND, "stat of a missing file");
    is_int(ssh_sftp_remove(s, path, &e), NERR_NOTFOUND, "remove of a missing file");
    is_int(ssh_sftp_fsync(s, path, &e), NERR_NOTFOUND, "fsync of a missing file");
    is_int(ssh_sftp_rename(s, path, obj, &e), NERR_NOTFOUND, "rename of a missing file");
    snprintf(path, sizeof(path), "%s/nope", base);
    is_int(ssh_sftp_list(s, path, &v, &n, &e), NERR_NOTFOUND, "list of a missing directory");
    is_int(ssh_sftp_mkdirs(s, obj, 0755, &e), NERR_IO, "mkdirs over a file: NERR_IO (%s)", e.msg);
    ok(!ssh_session_dead(s), "SFTP status errors leave the session live");

    is_int(ssh_sftp_remove(s, obj, &e), 0, "remove");
    is_int(ssh_sftp_stat(s, obj, &st, &e), NERR_NOTFOUND, "gone");
    run("rm -rf '%s' \"$HOME/sub\"", base);
}

int main(void)
{
    if (access(SSHD, X_OK) != 0) {
        printf("1..0 # SKIP %s not installed\n", SSHD);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    struct fix f = {0};
    snprintf(f.dir, sizeof(f.dir), "/tmp/nines-ssh-XXXXXX");
    if (!mkdtemp(f.dir))
        bail_out("mkdtemp");
    mkdir("/run/sshd", 0755); /* sshd's privilege-separation directory */
    if (run("cd %s && ssh-keygen -q -t ed25519 -N '' -f hk_ed && ssh-keygen -q -t ed25519 -N '' "
            "-f hk_ed2 && ssh-keygen -q -t rsa -b 2048 -N '' -f hk_rsa && ssh-keygen -q -t "
            "ed25519 -N '' -f id_ed && ssh-keygen -q -t rsa -b 2048 -N '' -f id_rsa && "
            "ssh-keygen -q -t ed25519 -N '' -f id_other && cat id_ed.pub id_rsa.pub > "
            "authorized_keys && rm id_rsa.pub",
            f.dir) != 0)
        bail_out("ssh-keygen failed");
    f.port = free_port();
    if (start_sshd(&f, "hk_ed") != 0)
        bail_out("sshd did not start");
    note("sshd pid %d on 127.0.0.1:%d, dir %s", (int)f.sshd, f.port, f.dir);

    char kh[256], fp[128];
    snprintf(kh, sizeof(kh), "%s/known_hosts", f.dir);
    keygen_fp(&f, "hk_ed.pub", fp, sizeof(fp));
    ok(strncmp(fp, "SHA256:", 7) == 0, "ssh-keygen fingerprint %s", fp);

    struct ssh_session *s = NULL;
    struct nerr e;
    struct ssh_host_opts o = opts(&f, "id_ed", SSH_HOSTKEY_STRICT);
    is_int(ssh_connect(&o, &s, &e), NERR_AUTH, "STRICT refuses an unknown host key");
    ok(s == NULL, "no session on refusal");
    ok(strstr(e.msg, "unknown host key") && strstr(e.msg, fp),
       "message says unknown and shows the fingerprint: %s", e.msg);
    is_int(count_lines(kh), 0, "STRICT wrote nothing to known_hosts");

    o = opts(&f, "id_ed", SSH_HOSTKEY_ACCEPT_NEW);
    int64_t t0 = now_ms();
    is_int(ssh_connect(&o, &s, &e), 0, "ACCEPT_NEW accepts an unknown key (%s)", e.msg);
    diag("connect+auth (ed25519 client key) %lld ms", (long long)(now_ms() - t0));
    is_int(count_lines(kh), 1, "one entry appended to known_hosts");
    is_int(run("ssh-keygen -F '[127.0.0.1]:%d' -f %s >/dev/null", f.port, kh), 0,
           "OpenSSH's ssh-keygen -F finds the written entry");
    ssh_close(s);
    s = NULL;

    o = opts(&f, "id_ed", SSH_HOSTKEY_STRICT);
    is_int(ssh_connect(&o, &s, &e), 0, "STRICT now accepts the recorded key (%s)", e.msg);
    is_int(count_lines(kh), 1, "and does not append again");
    if (s) {
        test_exec(s);
        test_quoting(&f, s);
        test_sftp(&f, s);
        test_sftp_api(&f, s);
    } else {
        bail_out("no session");
    }
    ssh_close(s);
    s = NULL;

    /* Closing a session right after an exec timed out, while the remote
     * command still runs: bounded, and (under ASan) nothing leaks. */
    o = opts(&f, "id_ed", SSH_HOSTKEY_STRICT);
    is_int(ssh_connect(&o, &s, &e), 0, "connect for close-after-timeout");
    {
        struct ssh_result tr = {0};
        is_int(ssh_exec(s, "sleep 10", 200, &tr, &e), NERR_TIMEOUT, "exec times out");
        ssh_result_free(&tr);
        t0 = now_ms();
        ssh_close(s);
        s = NULL;
        cmp_ok(now_ms() - t0, "<", 5000, "close with a running command took %lld ms, not 10 s",
               (long long)(now_ms() - t0));
    }

    o = opts(&f, "id_rsa", SSH_HOSTKEY_STRICT);
    is_int(ssh_connect(&o, &s, &e), 0, "RSA client key (no .pub file, derived) authenticates (%s)",
           e.msg);
    struct ssh_result r = {0};
    if (s) {
        is_int(ssh_exec(s, "id -un", 5000, &r, &e), 0, "exec over the RSA-authenticated session");
        is(r.out, "root\n", "runs as root");
        ssh_result_free(&r);
    } else {
        skip(2, "no RSA session");
    }
    ssh_close(s);
    s = NULL;
    o = opts(&f, "id_other", SSH_HOSTKEY_STRICT);
    is_int(ssh_connect(&o, &s, &e), NERR_AUTH, "a key not in authorized_keys is refused");
    ok(strstr(e.msg, "authentication"), "auth error says so: %s", e.msg);
    o = opts(&f, "missing_key", SSH_HOSTKEY_STRICT);
    is_int(ssh_connect(&o, &s, &e), NERR_NOTFOUND, "a missing private key file is NERR_NOTFOUND");

    /* A server that accepts TCP but never speaks: the handshake must time out. */
    {
        int lfd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t l = sizeof(a);
        bind(lfd, (struct sockaddr *)&a, sizeof(a));
        listen(lfd, 4);
        getsockname(lfd, (struct sockaddr *)&a, &l);
        o = opts(&f, "id_ed", SSH_HOSTKEY_STRICT);
        o.port = ntohs(a.sin_port);
        o.connect_timeout_ms = 500;
        t0 = now_ms();
        is_int(ssh_connect(&o, &s, &e), NERR_TIMEOUT, "silent server: NERR_TIMEOUT");
        cmp_ok(now_ms() - t0, "<", 5000, "at the 500 ms connect timeout, not the 10 s default");
        close(lfd);
    }

    /* Pool: reuse, then survive a power-off of the host. */
    struct ssh_pool *pool = NULL;
    is_int(ssh_pool_new(20, 15000, &pool, &e), 0, "pool created");
    o = opts(&f, "id_ed", SSH_HOSTKEY_STRICT);
    struct ssh_session *p1 = NULL, *p2 = NULL;
    is_int(ssh_pool_get(pool, &o, &p1, &e), 0, "pool connects");
    is_int(ssh_pool_get(pool, &o, &p2, &e), 0, "pool get again");
    ok(p1 && p1 == p2, "the live session is reused");
    stop_sshd(&f);
    int rc = ssh_exec(p1, "echo hi", 3000, &r, &e);
    ssh_result_free(&r);
    ok(rc != 0, "exec fails after the host lost power (%s: %s)", nerr_name(rc), e.msg);
    ok(ssh_session_dead(p1), "the failed call marked the session dead");
    {
        struct ssh_pool *quick = NULL;
        ssh_pool_new(3, 1000, &quick, NULL);
        struct ssh_session *qs = NULL;
        t0 = now_ms();
        rc = ssh_pool_get(quick, &o, &qs, &e);
        int64_t dt = now_ms() - t0;
        ok(rc != 0 && qs == NULL, "pool gives up while the host is down (%s)", e.msg);
        cmp_ok(dt, "<", 5000, "bounded: gave up after %lld ms (limit 1000 ms)", (long long)dt);
        ssh_pool_free(quick);
    }
    if (start_sshd(&f, "hk_ed") != 0)
        bail_out("sshd did not restart");
    t0 = now_ms();
    rc = ssh_pool_get(pool, &o, &p2, &e);
    is_int(rc, 0, "pool reconnects after the host came back (%s)", e.msg);
    diag("pool reconnect after restart: %lld ms", (long long)(now_ms() - t0));
    if (p2) {
        is_int(ssh_exec(p2, "echo back", 5000, &r, &e), 0, "exec on the reconnected session");
        is(r.out, "back\n", "with output");
        ssh_result_free(&r);
    } else {
        skip(2, "no session");
    }
    ssh_pool_reset(pool, "127.0.0.1");
    is_int(ssh_pool_get(pool, &o, &p1, &e), 0, "get after ssh_pool_reset connects anew");
    ok(p1 && !ssh_session_dead(p1), "fresh live session");
    ssh_pool_free(pool);

    /* The host comes back with a different key: refused even with ACCEPT_NEW. */
    stop_sshd(&f);
    if (start_sshd(&f, "hk_ed2") != 0)
        bail_out("sshd did not restart with the new key");
    keygen_fp(&f, "hk_ed2.pub", fp, sizeof(fp));
    o = opts(&f, "id_ed", SSH_HOSTKEY_ACCEPT_NEW);
    is_int(ssh_connect(&o, &s, &e), NERR_AUTH, "a changed host key is refused under ACCEPT_NEW");
    ok(strstr(e.msg, "CHANGED") && strstr(e.msg, fp),
       "message says CHANGED with the new fingerprint: %s", e.msg);
    is_int(count_lines(kh), 1, "known_hosts untouched");

    /* An RSA host key for a host that so far had only ed25519 recorded. */
    stop_sshd(&f);
    if (start_sshd(&f, "hk_rsa") != 0)
        bail_out("sshd did not restart with the RSA key");
    keygen_fp(&f, "hk_rsa.pub", fp, sizeof(fp));
    o = opts(&f, "id_ed", SSH_HOSTKEY_STRICT);
    is_int(ssh_connect(&o, &s, &e), NERR_AUTH, "STRICT refuses an unrecorded RSA host key");
    ok(strstr(e.msg, "RSA") && strstr(e.msg, fp), "with its fingerprint: %s", e.msg);
    o = opts(&f, "id_ed", SSH_HOSTKEY_ACCEPT_NEW);
    is_int(ssh_connect(&o, &s, &e), 0, "ACCEPT_NEW records the RSA host key (%s)", e.msg);
    ssh_close(s);
    is_int(count_lines(kh), 2, "second entry appended");

    stop_sshd(&f);
    run("rm -rf '%s'", f.dir);
    return done_testing();
}
