/* The TAP library reports passes, failures and the plan as prove expects. */
#include "t/tap.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs body in a child with stdout captured; returns its exit status. */
static int capture(void (*body)(void), char *out, size_t cap)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, 2); /* the child's diagnostics are expected noise */
        close(p[0]);
        tap_planned = -1; /* the child starts a fresh TAP stream */
        tap_run = tap_failed = 0;
        body();
        _exit(99);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(p[0], out + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = 0;
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void one_failure(void)
{
    plan(3);
    ok(1, "a");
    is("x", "y", "b");
    cmp_ok(2, "<", 3, "c");
    _exit(done_testing());
}

static void all_pass_no_plan(void)
{
    ok(1, "a");
    is_int(4, 4, "b");
    _exit(done_testing());
}

int main(void)
{
    char out[4096];
    plan(6);
    int rc = capture(one_failure, out, sizeof out);
    is_int(rc, 1, "one failure exits 1");
    ok(strstr(out, "1..3\n") == out, "plan printed first");
    ok(strstr(out, "not ok 2 - b") != NULL, "failed point is 'not ok'");
    ok(strstr(out, "#          got: 'x'") != NULL, "is() shows what it got");
    rc = capture(all_pass_no_plan, out, sizeof out);
    is_int(rc, 0, "all passing exits 0");
    ok(strstr(out, "ok 2 - b\n1..2\n") != NULL, "done_testing prints the plan at the end");
    return done_testing();
}
