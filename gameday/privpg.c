/*
 * gameday/privpg.c — the private PostgreSQL a game day starts for its
 * canaries' samples when the playbook names none (contract in run.h,
 * "privpg.c"): initdb in DIR/pg/data (as the postgres system user when run
 * as root: PostgreSQL refuses to run as root), listening on a unix socket in
 * DIR/pg only (no TCP), started with pg_ctl and stopped at the end of the
 * run. The data directory stays in the report directory, so the samples can
 * be read later (`pg_ctl -D DIR/pg/data start`).
 */
#include "gameday/run.h"

#include <dirent.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/proc.h"

#define PG_USER "postgres"
#define PG_TIMEOUT_MS 60000

/* The newest /usr/lib/postgresql/N/bin with an initdb. */
static int pg_bindir(char *out, size_t cap)
{
    DIR *d = opendir("/usr/lib/postgresql");
    if (!d)
        return -1;
    long best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        long v = strtol(e->d_name, &end, 10);
        char p[PATH_MAX];
        if (end == e->d_name || *end || v <= best)
            continue;
        snprintf(p, sizeof p, "/usr/lib/postgresql/%ld/bin/initdb", v);
        if (!access(p, X_OK))
            best = v;
    }
    closedir(d);
    if (best < 0)
        return -1;
    snprintf(out, cap, "/usr/lib/postgresql/%ld/bin", best);
    return 0;
}

/* Runs argv (as the postgres user when we are root), its output appended
 * to log; NERR_IO with the log's tail when it fails. */
static int as_pg(const char *log, char *const argv[], struct nerr *err)
{
    char *full[24];
    size_t n = 0;
    if (geteuid() == 0) {
        full[n++] = "runuser";
        full[n++] = "-u";
        full[n++] = PG_USER;
        full[n++] = "--";
    }
    for (size_t i = 0; argv[i] && n < sizeof full / sizeof full[0] - 1; i++)
        full[n++] = argv[i];
    full[n] = NULL;
    struct proc_output o = {0};
    struct proc_spec sp = {.argv = full, .in = {PROC_IO_NULL, -1}, .flags = PROC_NEW_PGROUP};
    int rc = proc_run(&sp, PG_TIMEOUT_MS, 1 << 14, &o, err);
    if (!rc && proc_status_code(o.status)) {
        const char *msg = o.err && *o.err ? o.err : (o.out ? o.out : "");
        size_t l = strlen(msg);
        char how[64];
        rc = nerr_set(err, NERR_IO, "%s %s: %s", argv[0],
                      proc_status_text(o.status, how, sizeof how), l > 300 ? msg + l - 300 : msg);
    }
    FILE *f = fopen(log, "a");
    if (f) {
        fprintf(f, "%s%s", o.out ? o.out : "", o.err ? o.err : "");
        fclose(f);
    }
    proc_output_free(&o);
    return rc;
}

int gd_pg_start(struct gd_run *g, struct nerr *err)
{
    char bin[256], dir[PATH_MAX + 8], data[PATH_MAX + 16], conf[PATH_MAX + 48], log[PATH_MAX + 16],
        initdb[300], pgctl[300];
    if (pg_bindir(bin, sizeof bin))
        return nerr_set(err, NERR_NOTFOUND,
                        "canaries: no PostgreSQL server (/usr/lib/postgresql/N/bin/initdb) for "
                        "the private sink; install postgresql, name a database with "
                        "postgres: DSN, or say postgres: none");
    gd_fmt(initdb, sizeof initdb, "%s/initdb", bin);
    gd_fmt(pgctl, sizeof pgctl, "%s/pg_ctl", bin);
    char *real = realpath(g->dir, NULL);
    if (!real)
        return nerr_sys(err, errno, "%s", g->dir);
    gd_fmt(dir, sizeof dir, "%s/pg", real);
    gd_fmt(data, sizeof data, "%s/data", dir);
    gd_fmt(log, sizeof log, "%s/commands.log", dir);
    free(real);
    if (strlen(dir) > 90) /* a unix socket path is at most 107 bytes */
        return nerr_set(err, NERR_LIMIT,
                        "canaries: the report directory's path is too long for the private "
                        "PostgreSQL's socket (%s)",
                        dir);
    if (mkdir(dir, 0755) && errno != EEXIST)
        return nerr_sys(err, errno, "%s", dir);
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam(PG_USER);
        if (!pw)
            return nerr_set(err, NERR_NOTFOUND, "canaries: no user %s to run PostgreSQL as",
                            PG_USER);
        if (chown(dir, pw->pw_uid, pw->pw_gid))
            return nerr_sys(err, errno, "chown %s", dir);
        /* The postgres user must reach DIR/pg: when a directory above the
         * report dir is closed to it (/root, a mkdtemp directory), the
         * database goes to a directory of its own under /tmp instead,
         * removed when it stops (the samples stay in report.json). */
        char *t[] = {"test", "-w", dir, NULL};
        struct nerr ignored = {0};
        if (as_pg("/dev/null", t, &ignored)) {
            rmdir(dir);
            char tmpl[] = "/tmp/nines-gameday-pg-XXXXXX";
            if (!mkdtemp(tmpl))
                return nerr_sys(err, errno, "mkdtemp %s", tmpl);
            if (chown(tmpl, pw->pw_uid, pw->pw_gid))
                return nerr_sys(err, errno, "chown %s", tmpl);
            chmod(tmpl, 0755);
            gd_fmt(dir, sizeof dir, "%s", tmpl);
            gd_fmt(data, sizeof data, "%s/data", dir);
            gd_fmt(log, sizeof log, "%s/commands.log", dir);
            g->pg_tmp = 1;
        }
    }
    gd_fmt(g->pg_dir, sizeof g->pg_dir, "%s", dir);
    struct stat st;
    int rc;
    if (stat(data, &st)) { /* a fresh one (a re-run into the same report dir keeps its data) */
        char *a[] = {initdb, "-D", data, "-U", "nines", "--auth=trust", "-E", "UTF8", "--no-sync",
                     NULL};
        if ((rc = as_pg(log, a, err)))
            return rc;
        gd_fmt(conf, sizeof conf, "%s/postgresql.conf", data);
        char line[PATH_MAX + 200];
        gd_fmt(line, sizeof line,
               "\n# nines gameday: a private sink, a unix socket only\nlisten_addresses = ''\n"
               "unix_socket_directories = '%s'\nshared_buffers = 32MB\nmax_connections = 40\n"
               "synchronous_commit = off\n",
               dir);
        char *sh = NULL;
        if (asprintf(&sh, "printf '%%s' \"$1\" >> \"$2\"") < 0)
            return nerr_set(err, NERR_NOMEM, "out of memory");
        char *b[] = {"sh", "-c", sh, "sh", line, conf, NULL};
        rc = as_pg(log, b, err);
        free(sh);
        if (rc)
            return rc;
    }
    /* The server's own log is written by the server (postgres); what the
     * commands print goes to LOG (written by this process). */
    char srvlog[PATH_MAX + 16];
    gd_fmt(srvlog, sizeof srvlog, "%s/server.log", dir);
    char *s[] = {pgctl, "-D", data, "-w", "-t", "30", "-l", srvlog, "start", NULL};
    if ((rc = as_pg(log, s, err)))
        return rc;
    g->pg_started = 1;
    gd_fmt(g->pg_dsn, sizeof g->pg_dsn, "host=%s user=nines dbname=postgres", dir);
    gd_note(g, "canaries: a private PostgreSQL in %s (%s)", dir, g->pg_dsn);
    return 0;
}

void gd_pg_stop(struct gd_run *g)
{
    if (!g->pg_started)
        return;
    char bin[256], data[PATH_MAX + 16], log[PATH_MAX + 16], pgctl[300];
    struct nerr e = {0};
    if (pg_bindir(bin, sizeof bin))
        return;
    gd_fmt(data, sizeof data, "%s/data", g->pg_dir);
    gd_fmt(log, sizeof log, "%s/commands.log", g->pg_dir);
    gd_fmt(pgctl, sizeof pgctl, "%s/pg_ctl", bin);
    char *s[] = {pgctl, "-D", data, "-w", "-t", "30", "-m", "fast", "stop", NULL};
    int rc = as_pg(log, s, &e);
    if (rc)
        gd_note(g, "the private PostgreSQL did not stop: %s", e.msg);
    g->pg_started = 0;
    if (!rc && g->pg_tmp && !strncmp(g->pg_dir, "/tmp/nines-gameday-pg-", 22)) {
        char *rm[] = {"rm", "-rf", "--", g->pg_dir, NULL};
        struct proc_output o = {0};
        struct proc_spec sp = {.argv = rm, .in = {PROC_IO_NULL, -1}};
        if (proc_run(&sp, PG_TIMEOUT_MS, 1 << 12, &o, &e))
            gd_note(g, "%s not removed: %s", g->pg_dir, e.msg);
        proc_output_free(&o);
    }
}
