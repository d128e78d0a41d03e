/*
 * test_proc.c — lib/proc with real child processes: exit status and output
 * capture (with its cap), the deadline kill (of the whole group), exec
 * failures named, SIGTERM then SIGKILL after the grace period, descriptor
 * hygiene (passed descriptors arrive, others do not leak), environment,
 * working directory and 2>&1. Every child is bounded (sleeps of at most
 * 30 s, killed by pid here); the test never signals a process it did not
 * start.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/proc.h"
#include "t/tap.h"

static struct proc_spec sh(const char *script)
{
    static char *argv[4];
    argv[0] = "sh";
    argv[1] = "-c";
    argv[2] = (char *)script;
    argv[3] = NULL;
    struct proc_spec s = {.argv = argv};
    return s;
}

/* 1 once pid is gone or a zombie (within 2 s). */
static int gone(pid_t pid)
{
    for (int i = 0; i < 200; i++) {
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "r");
        if (!f)
            return 1;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *rp = strrchr(buf, ')');
        if (rp && (rp[2] == 'Z' || rp[2] == 'X'))
            return 1;
        usleep(10000);
    }
    return 0;
}

int main(void)
{
    plan(35);
    struct nerr e;
    struct proc_output o;
    char txt[64];
    int rc;

    /* ---- run to completion: status and output ---- */
    struct proc_spec s = sh("echo hello; echo oops >&2; exit 3");
    rc = proc_run(&s, 5000, 4096, &o, &e);
    ok(rc == 0, "run: a failing program is not an error of proc_run");
    is_int(proc_status_code(o.status), 3, "run: exit status 3 reported");
    is(o.out, "hello\n", "run: stdout captured");
    is(o.err, "oops\n", "run: stderr captured apart");
    is(proc_status_text(o.status, txt, sizeof txt), "exited with 3", "run: status in words");
    proc_output_free(&o);

    /* ---- the cap ---- */
    s = sh("head -c 100000 /dev/zero | tr '\\0' x");
    rc = proc_run(&s, 5000, 1000, &o, &e);
    ok(rc == 0 && proc_status_code(o.status) == 0,
       "cap: a program writing more than the cap still runs to its end");
    ok(o.out_len == 1000 && o.out_truncated && strlen(o.out) == 1000,
       "cap: 1000 bytes kept, truncation reported (%zu)", o.out_len);
    proc_output_free(&o);

    /* ---- the deadline ---- */
    char *sleep_argv[] = {"sleep", "30", NULL};
    struct proc_spec sl = {.argv = sleep_argv};
    uint64_t t0 = clock_mono_ns();
    rc = proc_run(&sl, 200, 4096, &o, &e);
    uint64_t took = (clock_mono_ns() - t0) / 1000000u;
    is_int(rc, NERR_TIMEOUT, "deadline: NERR_TIMEOUT (%s)", e.msg);
    ok(took >= 200 && took < 3000, "deadline: killed at the deadline (%llu ms)",
       (unsigned long long)took);
    ok(WIFSIGNALED(o.status) && WTERMSIG(o.status) == SIGKILL,
       "deadline: the child died of SIGKILL");
    proc_output_free(&o);

    /* The group goes too: the shell's background sleep must not outlive it. */
    s = sh("sleep 30 & echo $!; wait");
    s.flags = PROC_NEW_PGROUP;
    rc = proc_run(&s, 500, 4096, &o, &e);
    pid_t grandchild = (pid_t)atoi(o.out);
    is_int(rc, NERR_TIMEOUT, "deadline, group: NERR_TIMEOUT");
    ok(grandchild > 0 && gone(grandchild),
       "deadline, group: the program's own child was killed too (pid %d)", (int)grandchild);
    proc_output_free(&o);

    /* ---- exec failures, named ---- */
    char *missing[] = {"/nonexistent/nines-no-such-program", NULL};
    struct proc_spec ms = {.argv = missing};
    pid_t pid = 0;
    rc = proc_spawn(&ms, &pid, &e);
    ok(rc == NERR_NOTFOUND && pid == 0 && strstr(e.msg, "No such file"),
       "exec failure: a missing path is NERR_NOTFOUND with its errno (%s)", e.msg);
    char *unknown[] = {"nines-no-such-program-in-path", NULL};
    ms.argv = unknown;
    rc = proc_spawn(&ms, &pid, &e);
    ok(rc == NERR_NOTFOUND && strstr(e.msg, "PATH"), "exec failure: not in PATH (%s)", e.msg);
    char plain[] = "/tmp/nines-proc-plain-XXXXXX";
    int pf = mkstemp(plain); /* mode 0600: not executable, even for root */
    char *notexec[] = {plain, NULL};
    ms.argv = notexec;
    rc = proc_spawn(&ms, &pid, &e);
    ok(pf >= 0 && rc == NERR_IO && strstr(e.msg, "Permission denied"),
       "exec failure: a file that is not executable names EACCES (%s)", e.msg);
    if (pf >= 0) {
        close(pf);
        unlink(plain);
    }
    char *nocwd[] = {"true", NULL};
    ms.argv = nocwd;
    ms.cwd = "/nonexistent-dir-of-nines";
    rc = proc_spawn(&ms, &pid, &e);
    ok(rc == NERR_IO && strstr(e.msg, "chdir"), "exec failure: a bad cwd is named (%s)", e.msg);

    /* ---- wait with a deadline, terminate ---- */
    rc = proc_spawn(&sl, &pid, &e);
    ok(rc == 0 && pid > 0, "spawn: sleep started");
    ok(proc_running(pid), "running: a sleeping child runs");
    int st = 0;
    rc = proc_wait(pid, 100, &st, &e);
    is_int(rc, NERR_TIMEOUT, "wait: still running after 100 ms is NERR_TIMEOUT");
    rc = proc_terminate(pid, 5000, 0, &st, &e);
    ok(rc == 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM,
       "terminate: a program that obeys SIGTERM dies of it");
    rc = proc_wait(pid, 0, &st, &e);
    is_int(rc, NERR_INVALID, "wait: a reaped pid is no child any more (%s)", e.msg);
    ok(!proc_running(pid), "running: not once reaped");
    /* A zombie (exited, not yet reaped) does not run either. */
    char *quick[] = {"true", NULL};
    struct proc_spec qs = {.argv = quick};
    rc = proc_spawn(&qs, &pid, &e);
    int zombie = 0;
    for (int k = 0; k < 500 && rc == 0 && !zombie; k++) { /* at most 5 s */
        siginfo_t si = {0};
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) == 0 && si.si_pid == pid)
            zombie = 1;
    }
    ok(zombie && !proc_running(pid), "running: an exited, unreaped child (a zombie) does not run");
    proc_wait(pid, 1000, &st, &e);

    /* SIGKILL after the grace period for one that ignores SIGTERM. */
    int rp[2];
    rc = pipe2(rp, O_CLOEXEC);
    s = sh("trap '' TERM; echo ready; exec sleep 30");
    s.out = (struct proc_io){PROC_IO_FD, rp[1]};
    rc = proc_spawn(&s, &pid, &e);
    close(rp[1]);
    char ready[16] = "";
    ssize_t rn = read(rp[0], ready, sizeof ready - 1);
    close(rp[0]);
    ok(rc == 0 && rn > 0 && !strncmp(ready, "ready", 5), "terminate: a TERM-ignoring child runs");
    t0 = clock_mono_ns();
    rc = proc_terminate(pid, 300, 0, &st, &e);
    took = (clock_mono_ns() - t0) / 1000000u;
    ok(rc == 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
       "terminate: SIGKILL after the grace period");
    ok(took >= 300 && took < 3000, "terminate: after 300 ms of grace (%llu ms)",
       (unsigned long long)took);

    /* proc_kill on no child of ours: refused, nothing signalled. */
    rc = proc_kill((pid_t)INT_MAX, &st, &e);
    is_int(rc, NERR_INVALID, "kill: not a child, refused (%s)", e.msg);

    /* ---- descriptors, environment, cwd ---- */
    /* Deliberately without O_CLOEXEC, and above the passed fd 3. */
    int leak = dup2(open("/dev/null", O_RDONLY), 20);
    int pp[2];
    rc = pipe2(pp, O_CLOEXEC);
    char script[256];
    snprintf(script, sizeof script,
             "test -e /proc/self/fd/%d && echo leaked || echo closed; echo via3 >&3", leak);
    s = sh(script);
    s.pass_fds = &pp[1];
    s.npass = 1;
    rc = proc_run(&s, 5000, 4096, &o, &e);
    close(pp[1]);
    char via[16] = "";
    rn = read(pp[0], via, sizeof via - 1);
    close(pp[0]);
    ok(rc == 0 && leak > 3 && !strcmp(o.out, "closed\n"),
       "fds: a descriptor without close-on-exec does not reach the child (%s)", o.out);
    ok(rn > 0 && !strncmp(via, "via3\n", 5), "fds: a passed descriptor arrives as fd 3");
    proc_output_free(&o);
    close(leak);

    char *env[] = {"NINES_PROC_T=42", "HOME=/nowhere", NULL};
    s = sh("echo $NINES_PROC_T $HOME $(pwd)");
    s.env = env;
    s.cwd = "/tmp";
    rc = proc_run(&s, 5000, 4096, &o, &e);
    is(o.out, "42 /nowhere /tmp\n", "env and cwd: added, replaced, and the directory set");
    proc_output_free(&o);

    char tmpl[] = "/tmp/nines-proc-XXXXXX";
    int tf = mkstemp(tmpl);
    s = sh("echo a; echo b >&2");
    s.out = (struct proc_io){PROC_IO_FD, tf};
    s.err = (struct proc_io){PROC_IO_STDOUT, 0};
    s.in = (struct proc_io){PROC_IO_NULL, 0};
    rc = proc_spawn(&s, &pid, &e);
    ok(rc == 0 && proc_wait(pid, 5000, &st, &e) == 0 && proc_status_code(st) == 0, "2>&1: ran");
    char buf[64] = "";
    ssize_t got = pread(tf, buf, sizeof buf - 1, 0);
    ok(got == 4 && !strcmp(buf, "a\nb\n"), "2>&1: both streams in the file");
    close(tf);
    unlink(tmpl);

    /* A new session: the child leads its own. */
    s = sh("exec cat /proc/self/stat");
    s.flags = PROC_NEW_SESSION;
    rc = proc_run(&s, 5000, 4096, &o, &e);
    int cpid = 0, sid = -1;
    const char *rpar = strrchr(o.out, ')');
    sscanf(o.out, "%d", &cpid);
    if (rpar)
        sscanf(rpar + 2, "%*c %*d %*d %d", &sid);
    ok(rc == 0 && cpid > 0 && sid == cpid, "session: the child leads a session of its own");
    proc_output_free(&o);

    /* A signal the caller ignores is back to default in the child. */
    signal(SIGUSR1, SIG_IGN);
    s = sh("kill -USR1 $$; sleep 5");
    rc = proc_run(&s, 5000, 4096, &o, &e);
    ok(rc == 0 && WIFSIGNALED(o.status) && WTERMSIG(o.status) == SIGUSR1,
       "signals: the caller's SIG_IGN does not reach the child");
    is(proc_status_text(o.status, txt, sizeof txt), "killed by SIGUSR1", "signals: in words");
    proc_output_free(&o);
    signal(SIGUSR1, SIG_DFL);
    return done_testing();
}
