/*
 * proc.h — the one way nines starts a program: spawn, wait with a deadline,
 * terminate by pid, or run to completion capturing its output.
 *
 * Every child is a fresh exec, never a forked copy of the caller left
 * running: a fork of a threaded caller inherits the locks other threads held
 * at the fork (the allocator's among them), so between fork and exec the
 * child makes only async-signal-safe calls. Everything it needs (the
 * program's path resolved through PATH, the environment, the descriptors)
 * is prepared before the fork.
 *
 * What the child gets:
 *   - argv as given; argv[0] names the program: a path when it holds a '/',
 *     else looked up in PATH (the lookup happens in the caller, so a missing
 *     program is NERR_NOTFOUND before anything is forked);
 *   - the caller's environment, with spec.env's "NAME=VALUE" entries added
 *     (replacing a variable of the same name);
 *   - spec.cwd as its working directory when set;
 *   - stdin, stdout, stderr as spec.in/out/err say: inherited, /dev/null, a
 *     descriptor of the caller's (dup'd; the caller still owns and closes
 *     its own), or for stderr the same as stdout;
 *   - spec.pass_fds[i] as descriptor 3 + i, and no other descriptor of the
 *     caller: everything from 3 + npass up is closed before exec, whatever
 *     its close-on-exec flag (curl sockets, LMDB files, pipes of other
 *     children never leak into a daemon);
 *   - an empty signal mask and default dispositions for every signal;
 *   - its own session (PROC_NEW_SESSION: a terminal's hang-up or ^C aimed at
 *     the caller does not reach it) or its own process group
 *     (PROC_NEW_PGROUP: proc_run's deadline kills the group, so whatever the
 *     program started goes too).
 * An exec that fails is reported by proc_spawn itself (through a
 * close-on-exec pipe), with the errno named, and the child is reaped.
 *
 * Processes are addressed by pid only, never by name. proc_wait,
 * proc_terminate and proc_kill reap the child they wait for, so they are for
 * children of this process; a pid that is not one is NERR_INVALID (ECHILD).
 *
 * A wait status (as waitpid returns it) is turned into a shell-style code by
 * proc_status_code (exit code, or 128 + signal) and into words by
 * proc_status_text ("exited with 3", "killed by SIGKILL").
 *
 * Errors are values (lib/err.h): NERR_NOTFOUND (program not found),
 * NERR_IO (pipe, fork, exec, waitpid failed: the message names the call and
 * the errno), NERR_TIMEOUT (deadline passed), NERR_NOMEM, NERR_INVALID.
 * Thread-safety: every function may be called from any thread; each call
 * only touches the child it is given. proc_run and proc_spawn do not
 * change the caller's signal dispositions.
 */
#ifndef NINES_LIB_PROC_H
#define NINES_LIB_PROC_H

#include <stddef.h>
#include <sys/types.h>

#include "lib/err.h"

/* What one of the child's standard descriptors is. Zero is "inherit", so a
 * zero-initialised struct proc_spec leaves all three as the caller's. */
enum proc_io_kind {
    PROC_IO_INHERIT = 0,
    PROC_IO_NULL,   /* /dev/null (read for stdin, write for the others) */
    PROC_IO_FD,     /* dup of .fd, a descriptor of the caller (borrowed) */
    PROC_IO_STDOUT, /* stderr only: the same as the child's stdout (2>&1) */
};

struct proc_io {
    enum proc_io_kind kind;
    int fd;
};

enum {
    PROC_NEW_SESSION = 1 << 0, /* setsid(): a daemon that outlives the caller */
    PROC_NEW_PGROUP = 1 << 1,  /* setpgid(0, 0): proc_run kills the group */
};

#define PROC_MAX_PASS_FDS 8

/* Borrowed by proc_spawn / proc_run for the call only. */
struct proc_spec {
    char *const *argv; /* NULL-terminated, argv[0] the program */
    char *const *env;  /* NULL-terminated "NAME=VALUE" additions, or NULL */
    const char *cwd;   /* NULL: the caller's */
    struct proc_io in, out, err;
    const int *pass_fds; /* become the child's 3, 4, ... */
    size_t npass;        /* at most PROC_MAX_PASS_FDS */
    int flags;           /* PROC_NEW_SESSION, PROC_NEW_PGROUP */
};

/* Starts the program; *pid is its pid once exec has succeeded. */
int proc_spawn(const struct proc_spec *s, pid_t *pid, struct nerr *err);

/* Waits up to timeout_ms (0: just look) for child pid to exit, and reaps
 * it: *status is its wait status. NERR_TIMEOUT when it is still running
 * (nothing is signalled, it stays a child to wait for again). */
int proc_wait(pid_t pid, long timeout_ms, int *status, struct nerr *err);

/* SIGTERM to child pid, up to grace_ms for it to exit, then SIGKILL; reaps
 * it either way. *status (may be NULL) is its wait status. With
 * PROC_NEW_PGROUP children, group != 0 signals the whole process group. */
int proc_terminate(pid_t pid, long grace_ms, int group, int *status, struct nerr *err);

/* SIGKILL to child pid now, and reap it (crash tests, hung hooks). */
int proc_kill(pid_t pid, int *status, struct nerr *err);

/* 1 while process pid runs, 0 once it is gone or a zombie (read from
 * /proc/PID/stat, so it works for any process, not only children: a daemon
 * started by another program, whose exit this process cannot reap). */
int proc_running(pid_t pid);

/* Output of proc_run: what the program wrote, each stream NUL-terminated
 * and capped; *_truncated tells that more was written and dropped. Owned by
 * the caller: proc_output_free. */
struct proc_output {
    int status; /* wait status */
    char *out, *err;
    size_t out_len, err_len;
    int out_truncated, err_truncated;
};

/* Runs the program to completion within timeout_ms, capturing stdout and
 * stderr (s->out and s->err are ignored; stdin is as s->in says) up to cap
 * bytes each. The child's exit is noticed by waitpid, not by the end of its
 * output, since a daemon it started may hold the pipes open. Past the
 * deadline the child (its group with PROC_NEW_PGROUP) is killed with
 * SIGKILL and reaped, and NERR_TIMEOUT comes back with what it had written
 * so far in *o. A non-zero exit is not an error: read o->status. */
int proc_run(const struct proc_spec *s, long timeout_ms, size_t cap, struct proc_output *o,
             struct nerr *err);
void proc_output_free(struct proc_output *o);

/* The exit code of a wait status, or 128 + the signal that killed it. */
int proc_status_code(int status);
/* "exited with N" / "killed by SIGNAME"; returns buf. */
const char *proc_status_text(int status, char *buf, size_t cap);

#endif
