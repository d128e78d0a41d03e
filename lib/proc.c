/*
 * proc.c — spawning and reaping programs; the contract is in proc.h.
 *
 * The child side (between fork and exec) makes async-signal-safe calls only:
 * sigaction, sigprocmask, setsid, setpgid, fcntl, dup2, close, close_range,
 * chdir, execve, write, _exit. All signals are blocked in the caller's
 * thread across the fork so that no handler of the caller's runs in the
 * child before the child has reset them.
 */
#include "lib/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"

extern char **environ;

/* Keeps nerr_sys's message (which names the errno) under another code. */
static int recode(struct nerr *err, int code)
{
    if (err)
        err->code = code;
    return code;
}

/* Where the child failed, reported with its errno through the exec pipe. */
enum { STAGE_FDS = 1, STAGE_SESSION, STAGE_CWD, STAGE_EXEC };

static const char *stage_name(int stage)
{
    switch (stage) {
    case STAGE_FDS:
        return "setting up descriptors for";
    case STAGE_SESSION:
        return "setsid/setpgid for";
    case STAGE_CWD:
        return "chdir for";
    default:
        return "exec of";
    }
}

/* argv0 as a path: itself when it holds a '/', else its first executable
 * match in PATH. */
static int resolve(const char *argv0, char *out, size_t cap, struct nerr *err)
{
    if (strchr(argv0, '/')) {
        if ((size_t)snprintf(out, cap, "%s", argv0) >= cap)
            return nerr_set(err, NERR_INVALID, "program path too long: %s", argv0);
        return 0;
    }
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path;;) {
        size_t n = strcspn(p, ":");
        /* An empty PATH element means the current directory. */
        if ((size_t)snprintf(out, cap, "%.*s%s%s", (int)n, n ? p : ".", "/", argv0) < cap &&
            access(out, X_OK) == 0)
            return 0;
        if (!p[n])
            break;
        p += n + 1;
    }
    return nerr_set(err, NERR_NOTFOUND, "%s: not found in PATH", argv0);
}

/* The caller's environment with adds applied: a new array of borrowed
 * strings (free the array only). */
static char **build_env(char *const *adds, struct nerr *err)
{
    size_t ne = 0, na = 0;
    while (environ && environ[ne])
        ne++;
    while (adds && adds[na])
        na++;
    char **v = malloc((ne + na + 1) * sizeof *v);
    if (!v) {
        nerr_set(err, NERR_NOMEM, "out of memory");
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < ne; i++) {
        size_t nl = strcspn(environ[i], "=");
        int replaced = 0;
        for (size_t j = 0; j < na && !replaced; j++)
            replaced = !strncmp(adds[j], environ[i], nl) && adds[j][nl] == '=';
        if (!replaced)
            v[k++] = environ[i];
    }
    for (size_t j = 0; j < na; j++)
        v[k++] = adds[j];
    v[k] = NULL;
    return v;
}

/* Child side: moves fd out of the target range [0, base) so that the dup2s
 * below cannot overwrite a source before it is used. */
static int lift(int fd, int base)
{
    return fd >= 0 && fd < base ? fcntl(fd, F_DUPFD_CLOEXEC, base) : fd;
}

static void close_from(int lo, int hi_excl, int maxfd)
{
    if (hi_excl <= lo)
        return;
    if (syscall(SYS_close_range, (unsigned)lo, (unsigned)(hi_excl - 1), 0u) == 0)
        return;
    for (int fd = lo; fd < hi_excl && fd < maxfd; fd++)
        close(fd);
}

static _Noreturn void child_fail(int report, int stage)
{
    int msg[2] = {stage, errno};
    ssize_t w = write(report, msg, sizeof msg);
    (void)w;
    _exit(127);
}

static _Noreturn void child(const struct proc_spec *s, const char *path, char *const *envp,
                            int devnull, int report, int maxfd)
{
    /* Default dispositions, then the empty mask: nothing of the caller's
     * signal handling reaches the program. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    if ((s->flags & PROC_NEW_SESSION) && setsid() < 0)
        child_fail(report, STAGE_SESSION);
    if ((s->flags & PROC_NEW_PGROUP) && !(s->flags & PROC_NEW_SESSION) && setpgid(0, 0) < 0)
        child_fail(report, STAGE_SESSION);

    int base = 3 + (int)s->npass;
    int src[3 + PROC_MAX_PASS_FDS];
    const struct proc_io *io[3] = {&s->in, &s->out, &s->err};
    for (int i = 0; i < 3; i++)
        src[i] = io[i]->kind == PROC_IO_NULL ? devnull : io[i]->kind == PROC_IO_FD ? io[i]->fd : -1;
    for (size_t i = 0; i < s->npass; i++)
        src[3 + i] = s->pass_fds[i];
    report = lift(report, base);
    for (int i = 0; i < base; i++)
        if (src[i] >= 0 && (src[i] = lift(src[i], base)) < 0)
            child_fail(report, STAGE_FDS);
    if (report < 0)
        _exit(127);
    for (int i = 0; i < base; i++)
        if (src[i] >= 0 && dup2(src[i], i) < 0)
            child_fail(report, STAGE_FDS);
    if (s->err.kind == PROC_IO_STDOUT && dup2(1, 2) < 0)
        child_fail(report, STAGE_FDS);
    /* Everything else goes, close-on-exec or not; only the report pipe
     * stays until exec closes it. */
    close_from(base, report, maxfd);
    close_from(report + 1, INT_MAX, maxfd);
    if (s->cwd && chdir(s->cwd) < 0)
        child_fail(report, STAGE_CWD);
    execve(path, s->argv, envp);
    child_fail(report, STAGE_EXEC);
}

int proc_spawn(const struct proc_spec *s, pid_t *pid, struct nerr *err)
{
    char path[PATH_MAX];
    char **envp = NULL;
    int devnull = -1, rep[2] = {-1, -1}, rc = 0;
    *pid = 0;
    if (!s || !s->argv || !s->argv[0] || s->npass > PROC_MAX_PASS_FDS ||
        (s->npass && !s->pass_fds) || s->in.kind == PROC_IO_STDOUT || s->out.kind == PROC_IO_STDOUT)
        return nerr_set(err, NERR_INVALID, "proc_spawn: bad spec");
    if ((rc = resolve(s->argv[0], path, sizeof path, err)))
        return rc;
    if (!(envp = build_env(s->env, err)))
        return NERR_NOMEM;
    if ((s->in.kind == PROC_IO_NULL || s->out.kind == PROC_IO_NULL ||
         s->err.kind == PROC_IO_NULL) &&
        (devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0) {
        rc = nerr_sys(err, errno, "spawn %s: /dev/null", s->argv[0]);
        goto out;
    }
    if (pipe2(rep, O_CLOEXEC) < 0) {
        rc = nerr_sys(err, errno, "spawn %s: pipe", s->argv[0]);
        goto out;
    }
    struct rlimit rl;
    int maxfd =
        getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 65536
            ? (int)rl.rlim_cur
            : 65536;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t c = fork();
    if (c == 0)
        child(s, path, envp, devnull, rep[1], maxfd);
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (c < 0) {
        rc = nerr_sys(err, fork_errno, "spawn %s: fork", s->argv[0]);
        goto out;
    }
    close(rep[1]);
    rep[1] = -1;
    int msg[2];
    ssize_t n;
    while ((n = read(rep[0], msg, sizeof msg)) < 0 && errno == EINTR)
        ;
    if (n == (ssize_t)sizeof msg) {
        /* The child reported its failure and exits with 127: reap it. */
        while (waitpid(c, NULL, 0) < 0 && errno == EINTR)
            ;
        rc = nerr_sys(err, msg[1], "%s %s", stage_name(msg[0]), path);
        if (msg[0] == STAGE_EXEC && msg[1] == ENOENT)
            rc = recode(err, NERR_NOTFOUND);
        goto out;
    }
    *pid = c;
out:
    if (rep[0] >= 0)
        close(rep[0]);
    if (rep[1] >= 0)
        close(rep[1]);
    if (devnull >= 0)
        close(devnull);
    free(envp);
    return rc;
}

/* One waitpid without blocking: 1 and *status when pid has exited, 0 while
 * it runs, an error when pid is not a child of ours. */
static int reap_now(pid_t pid, int *status, struct nerr *err)
{
    for (;;) {
        int st;
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) {
            if (status)
                *status = st;
            return 1;
        }
        if (w == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == ECHILD) {
            nerr_sys(err, errno, "pid %d is not a child of this process", (int)pid);
            return recode(err, NERR_INVALID);
        }
        return nerr_sys(err, errno, "waitpid %d", (int)pid);
    }
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    nanosleep(&ts, NULL);
}

int proc_wait(pid_t pid, long timeout_ms, int *status, struct nerr *err)
{
    if (pid <= 0)
        return nerr_set(err, NERR_INVALID, "proc_wait: no pid");
    uint64_t deadline = clock_mono_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
    /* Short sleeps first: most children asked to exit do so at once. */
    uint64_t step = 1000000u;
    for (;;) {
        int r = reap_now(pid, status, err);
        if (r)
            return r < 0 ? r : 0;
        uint64_t now = clock_mono_ns();
        if (now >= deadline)
            return nerr_set(err, NERR_TIMEOUT, "pid %d still running after %ld ms", (int)pid,
                            timeout_ms);
        sleep_ns(deadline - now < step ? deadline - now : step);
        if (step < 20000000u)
            step *= 2;
    }
}

/* Sends sig to pid (its group when group), then, when it is still there
 * after wait_ms, SIGKILL; reaps it. Only for children (checked first, so a
 * pid of somebody else's is never signalled). */
static int stop_child(pid_t pid, int sig, long wait_ms, int group, int *status, struct nerr *err)
{
    if (pid <= 0)
        return nerr_set(err, NERR_INVALID, "no pid to stop");
    int r = reap_now(pid, status, err);
    if (r)
        return r < 0 ? r : 0; /* already gone (reaped now), or not ours */
    kill(group ? -pid : pid, sig);
    if (sig != SIGKILL) {
        struct nerr e2;
        r = proc_wait(pid, wait_ms, status, &e2);
        if (r != NERR_TIMEOUT) {
            if (r && err)
                *err = e2;
            return r;
        }
        kill(group ? -pid : pid, SIGKILL);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return nerr_sys(err, errno, "waitpid %d", (int)pid);
    if (status)
        *status = st;
    return 0;
}

int proc_terminate(pid_t pid, long grace_ms, int group, int *status, struct nerr *err)
{
    return stop_child(pid, SIGTERM, grace_ms, group, status, err);
}

int proc_kill(pid_t pid, int *status, struct nerr *err)
{
    return stop_child(pid, SIGKILL, 0, 0, status, err);
}

struct capture {
    int fd;
    char *buf;
    size_t len, cap;
    int truncated;
};

/* Reads what is there; 1 at EOF or error, else 0. */
static int capture_read(struct capture *c)
{
    char tmp[4096];
    ssize_t r = read(c->fd, tmp, sizeof tmp);
    if (r < 0)
        return errno == EINTR || errno == EAGAIN ? 0 : 1;
    if (r == 0)
        return 1;
    size_t n = (size_t)r;
    if (n > c->cap - c->len) {
        n = c->cap - c->len;
        c->truncated = 1;
    }
    memcpy(c->buf + c->len, tmp, n);
    c->len += n;
    c->buf[c->len] = '\0';
    return 0;
}

int proc_run(const struct proc_spec *s, long timeout_ms, size_t cap, struct proc_output *o,
             struct nerr *err)
{
    int po[2] = {-1, -1}, pe[2] = {-1, -1}, rc = 0;
    struct capture cap2[2] = {{.fd = -1, .cap = cap}, {.fd = -1, .cap = cap}};
    pid_t pid = 0;
    memset(o, 0, sizeof *o);
    if (!s)
        return nerr_set(err, NERR_INVALID, "proc_run: bad spec");
    o->out = calloc(1, cap + 1);
    o->err = calloc(1, cap + 1);
    if (!o->out || !o->err) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    cap2[0].buf = o->out;
    cap2[1].buf = o->err;
    if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC)) {
        rc = nerr_sys(err, errno, "run %s: pipe", s->argv && s->argv[0] ? s->argv[0] : "?");
        goto out;
    }
    struct proc_spec sp = *s;
    sp.out = (struct proc_io){PROC_IO_FD, po[1]};
    sp.err = (struct proc_io){PROC_IO_FD, pe[1]};
    uint64_t deadline = clock_mono_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
    if ((rc = proc_spawn(&sp, &pid, err)))
        goto out;
    close(po[1]);
    close(pe[1]);
    po[1] = pe[1] = -1;
    cap2[0].fd = po[0];
    cap2[1].fd = pe[0];
    int group = (s->flags & (PROC_NEW_PGROUP | PROC_NEW_SESSION)) != 0;
    for (;;) {
        uint64_t now = clock_mono_ns();
        if (now >= deadline) {
            kill(group ? -pid : pid, SIGKILL);
            kill(pid, SIGKILL);
            while (waitpid(pid, &o->status, 0) < 0 && errno == EINTR)
                ;
            rc = nerr_set(err, NERR_TIMEOUT, "%s did not finish within %ld ms (killed)", s->argv[0],
                          timeout_ms);
            break;
        }
        struct pollfd pf[2];
        nfds_t n = 0;
        for (int i = 0; i < 2; i++)
            if (cap2[i].fd >= 0)
                pf[n++] = (struct pollfd){.fd = cap2[i].fd, .events = POLLIN};
        uint64_t left_ms = (deadline - now) / 1000000u + 1;
        int wait = left_ms < 50 ? (int)left_ms : 50;
        if (poll(n ? pf : NULL, n, wait) > 0)
            for (nfds_t k = 0; k < n; k++) {
                if (!(pf[k].revents & (POLLIN | POLLHUP | POLLERR)))
                    continue;
                for (int i = 0; i < 2; i++)
                    if (cap2[i].fd == pf[k].fd && capture_read(&cap2[i])) {
                        close(cap2[i].fd);
                        cap2[i].fd = -1;
                    }
            }
        int r = reap_now(pid, &o->status, err);
        if (r < 0) {
            rc = r;
            break;
        }
        if (r)
            break;
    }
    /* What the program wrote just before it exited; non-blocking and
     * bounded, since a surviving grandchild may keep the pipe open. */
    for (int i = 0; i < 2; i++) {
        if (cap2[i].fd < 0)
            continue;
        fcntl(cap2[i].fd, F_SETFL, O_NONBLOCK);
        for (int k = 0; k < 64; k++) {
            errno = 0;
            if (capture_read(&cap2[i]) || errno == EAGAIN)
                break;
        }
    }
out:
    for (int i = 0; i < 2; i++)
        if (cap2[i].fd >= 0)
            close(cap2[i].fd);
    if (po[1] >= 0)
        close(po[1]);
    if (pe[1] >= 0)
        close(pe[1]);
    o->out_len = cap2[0].len;
    o->err_len = cap2[1].len;
    o->out_truncated = cap2[0].truncated;
    o->err_truncated = cap2[1].truncated;
    return rc;
}

void proc_output_free(struct proc_output *o)
{
    free(o->out);
    free(o->err);
    o->out = o->err = NULL;
    o->out_len = o->err_len = 0;
}

int proc_status_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

const char *proc_status_text(int status, char *buf, size_t cap)
{
    if (WIFEXITED(status))
        snprintf(buf, cap, "exited with %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, cap, "killed by SIG%s",
                 sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?");
    else
        snprintf(buf, cap, "wait status %#x", (unsigned)status);
    return buf;
}

int proc_running(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t r = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (r <= 0)
        return 0;
    buf[r] = '\0';
    /* The state follows the command name's closing parenthesis. */
    const char *rp = strrchr(buf, ')');
    return !(rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'));
}
