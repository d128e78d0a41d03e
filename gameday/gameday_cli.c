/*
 * gameday_cli.c — `nines gameday run|plan|lint|record|history` (contract
 * in gameday.h and results.h, reference in docs/gameday.md).
 *
 * What `run` adds around gameday_run, for unattended runs (cron, a systemd
 * timer; docs/gameday.md, "Scheduled operation"):
 *
 *   - a lock per inventory: an exclusive flock(2) on a file named after the
 *     SHA-256 of the inventory's real path, held for the whole run (see
 *     lock_inventory for where and why). The lock belongs to the open file
 *     description, so it dies with the process whatever kills it; the fd is
 *     close-on-exec, so nothing the run starts (a lab host's sshd) inherits
 *     it. The holder writes its pid and report dir into the file for the
 *     one it turns away.
 *   - results: once DIR/report.json is written, it is recorded in the
 *     results database (--results DSN, else $NINES_GAMEDAY_PG); a database
 *     that cannot take it changes nothing in the exit status.
 *   - exit codes: GD_EXIT_* below.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gameday/gameday.h"
#include "fault/inventory.h"
#include "gameday/playbook.h"
#include "gameday/results.h"
#include "net/http.h"

/* Exit status of every subcommand (docs/gameday.md lists the same). */
enum {
    GD_EXIT_PASSED = 0,      /* run: every step, expectation and verification passed */
    GD_EXIT_FAILED = 1,      /* run: something failed; record/history: the database */
    GD_EXIT_USAGE = 2,       /* usage, playbook, inventory, lock file, report file */
    GD_EXIT_LOCKED = 3,      /* another game day holds the inventory */
    GD_EXIT_INTERRUPTED = 4, /* SIGINT/SIGTERM/SIGHUP: healed, report says "cancelled" */
};

#define GD_HISTORY_LIMIT 20

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: nines gameday run|plan|lint PLAYBOOK [options]\n"
        "       nines gameday record DIR [--results DSN]\n"
        "       nines gameday history [--results DSN] [--limit N] [--name NAME] [--run ID]"
        " [--json]\n"
        "\n"
        "  run      deploy (or use) the cluster, run the traffic and every step, verify,\n"
        "           write DIR/report.json (and record it with --results); holds a lock on\n"
        "           the inventory for the whole run\n"
        "  plan     print the resolved schedule (targets, durations) without touching anything\n"
        "  lint     check the playbook and print every error as FILE:LINE:COL: message\n"
        "  record   record the report in DIR (a run's --report) in the results database\n"
        "  history  the recorded runs, newest first; --run ID: one run's steps,\n"
        "           expectations and verifications\n"
        "\n"
        "options:\n"
        "  --inventory FILE   the hosts (overrides the playbook's inventory:)\n"
        "  --seed N           seed of every random choice (default: from the clock, printed)\n"
        "  --report DIR       where the report, history and logs go\n"
        "                     (default ./gameday-NAME-SEED)\n"
        "  --ninesd PATH      the ninesd binary to deploy (default: the playbook's, else\n"
        "                     the one next to nines)\n"
        "  --results DSN      the results database (libpq conninfo or postgresql:// URI);\n"
        "                     default $NINES_GAMEDAY_PG; none: run records nothing\n"
        "  --limit N          history: at most N runs (default %d)\n"
        "  --name NAME        history: only the game days named NAME\n"
        "  --run ID           history: one run in detail\n"
        "  --json             history: JSON instead of a table\n"
        "  --help             this text\n"
        "\n"
        "Exit status: 0 passed (lint: no error); 1 failed (a step, an expectation, a\n"
        "verification; record/history: a database error); 2 usage, playbook, inventory or\n"
        "lock-file errors; 3 another game day holds the inventory's lock; 4 interrupted\n"
        "(SIGINT/SIGTERM: hosts healed, report written with failure \"cancelled\").\n"
        "The lock files are in $NINES_GAMEDAY_LOCK_DIR, else /run/lock, else /tmp.\n",
        GD_HISTORY_LIMIT);
}

static volatile sig_atomic_t cancel_flag;

static void on_signal(int sig)
{
    (void)sig;
    cancel_flag = 1;
}

static int lint_or_plan(int plan, const char *path, const char *invp, uint64_t seed, int have_seed)
{
    struct pb_errors errs = {0};
    struct playbook *pb = NULL;
    struct inventory *inv = NULL;
    struct pb_plan *p = NULL;
    struct nerr e = {0};
    int status = 2, rc;
    /* The inventory: --inventory, checked along with everything else; or
     * the playbook's own, known only once the playbook loaded. */
    if (invp && inventory_load(invp, &inv, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        goto out;
    }
    rc = playbook_load(path, NULL, 0, inv, &pb, &errs, &e);
    if (!rc && !inv && pb->inventory) {
        if (inventory_load(pb->inventory, &inv, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            goto out;
        }
        rc = playbook_check_inventory(pb, inv, &errs, &e);
    }
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msg[i]);
    if (errs.dropped)
        fprintf(stderr, "... and %zu more errors\n", errs.dropped);
    if (rc) {
        if (!errs.n)
            fprintf(stderr, "%s\n", e.msg);
        goto out;
    }
    if (!inv) {
        if (plan) {
            fprintf(stderr, "%s: no inventory (give --inventory FILE)\n", path);
            goto out;
        }
        fprintf(stderr, "%s: no inventory given: host, rack and AZ names not checked\n", path);
    } else if ((rc = playbook_plan(pb, inv, seed, &p, &e))) {
        /* The planner's refusals (quorum_safe, too few hosts) are lint
         * errors as well. */
        fprintf(stderr, "%s\n", e.msg);
        goto out;
    }
    if (plan) {
        pb_plan_print(p, inv, stdout);
        if (!have_seed)
            printf("(seed chosen from the clock; give --seed %llu to get this plan again)\n",
                   (unsigned long long)seed);
    } else {
        printf("%s: ok\n", path);
    }
    status = 0;
out:
    pb_plan_free(p);
    inventory_free(inv);
    playbook_free(pb);
    pb_errors_free(&errs);
    return status;
}

/* ---- the inventory lock ---- */

/* Where lock files live. /run/lock (a tmpfs, emptied at boot, writable by
 * every user) rather than beside the inventory: the inventory's directory
 * may be read-only (/etc, a deploy checkout) or a repository that must not
 * collect lock files; and a name from the inventory's real path makes every
 * spelling of it (relative, through a symlink) one lock. The lock is per
 * machine: two machines running game days on one inventory are not
 * excluded (schedule them on one). */
static const char *lock_dir(void)
{
    const char *d = getenv("NINES_GAMEDAY_LOCK_DIR");
    struct stat st;
    if (d && *d)
        return d;
    return stat("/run/lock", &st) == 0 && S_ISDIR(st.st_mode) ? "/run/lock" : "/tmp";
}

/* The holder's note as one line ("pid 12, report /x, ..."), from the lock
 * file. The holder writes it right after taking the lock, so an empty file
 * is read again a few times before giving up. */
static void read_holder(int fd, char *buf, size_t cap)
{
    ssize_t n = 0;
    for (int i = 0; i < 40; i++) {
        n = pread(fd, buf, cap - 1, 0);
        if (n > 0)
            break;
        struct timespec ts = {0, 25000000};
        nanosleep(&ts, NULL);
    }
    if (n <= 0) {
        snprintf(buf, cap, "holder unknown");
        return;
    }
    buf[n] = 0;
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = 0;
    for (char *p = buf; *p; p++)
        if (*p == '\n')
            *p = ';';
}

/* Takes the lock of the inventory at inv_real (a real path) for this
 * process: *fd stays open (close-on-exec) until unlock_inventory or the
 * process's end. Returns GD_EXIT_PASSED (locked), GD_EXIT_LOCKED (held:
 * the holder printed), or GD_EXIT_USAGE (the lock file cannot be made).
 *
 * The holder removes the file before it lets go (so lock files do not pile
 * up), hence the check after flock: a lock won on a file that was removed
 * meanwhile is no lock (the next run creates a new file), so it is taken
 * again on the file now at the path. A run killed outright leaves its file,
 * unlocked; the next run takes it over. */
static int lock_inventory(const char *inv_real, const char *playbook, const char *report_abs,
                          char *path, size_t cap, int *fd)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    char hex[17], note[PATH_MAX * 3 + 200], holder[1024], when[32];
    int f = -1;
    *fd = -1;
    if (!EVP_Digest(inv_real, strlen(inv_real), md, &mdlen, EVP_sha256(), NULL) || mdlen < 8) {
        fprintf(stderr, "nines gameday: cannot hash %s\n", inv_real);
        return GD_EXIT_USAGE;
    }
    for (int i = 0; i < 8; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    snprintf(path, cap, "%s/nines-gameday-%s.lock", lock_dir(), hex);
    for (int tries = 0;; tries++) {
        struct stat a, b;
        f = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (f < 0) {
            fprintf(stderr, "nines gameday: lock file %s: %s (set NINES_GAMEDAY_LOCK_DIR)\n", path,
                    strerror(errno));
            return GD_EXIT_USAGE;
        }
        if (flock(f, LOCK_EX | LOCK_NB)) {
            int e = errno;
            if (e == EWOULDBLOCK) {
                read_holder(f, holder, sizeof holder);
                fprintf(stderr,
                        "nines gameday: inventory %s is in use by another game day (%s); lock "
                        "file %s\n",
                        inv_real, holder, path);
                close(f);
                return GD_EXIT_LOCKED;
            }
            fprintf(stderr, "nines gameday: lock file %s: %s\n", path, strerror(e));
            close(f);
            return GD_EXIT_USAGE;
        }
        if (fstat(f, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino)
            break;
        close(f);
        if (tries == 20) {
            fprintf(stderr, "nines gameday: lock file %s keeps being replaced\n", path);
            return GD_EXIT_USAGE;
        }
    }
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int len =
        snprintf(note, sizeof note, "pid %ld\nreport %s\nstarted %s\nplaybook %s\ninventory %s\n",
                 (long)getpid(), report_abs, when, playbook, inv_real);
    if (len < 0 || (size_t)len >= sizeof note)
        len = (int)strlen(note);
    if (ftruncate(f, 0) || pwrite(f, note, (size_t)len, 0) != len) {
        /* Only the note is lost; the lock holds. */
        fprintf(stderr, "nines gameday: lock file %s: cannot write the holder: %s\n", path,
                strerror(errno));
    }
    *fd = f;
    return GD_EXIT_PASSED;
}

/* Ends the lock: the file goes first, while still held (lock_inventory's
 * check makes that safe). */
static void unlock_inventory(int fd, const char *path)
{
    if (fd < 0)
        return;
    unlink(path);
    close(fd);
}

/* ---- results ---- */

/* The results DSN: --results, else $NINES_GAMEDAY_PG; NULL: none. */
static const char *results_dsn(const char *opt)
{
    if (opt)
        return opt;
    const char *e = getenv("NINES_GAMEDAY_PG");
    return e && *e ? e : NULL;
}

/* Records dir; prints what happened. Returns 0 or an nerr code. */
static int record_dir(const char *dsn, const char *dir, int quiet_ok)
{
    struct gdres *r = NULL;
    struct nerr e = {0};
    int64_t id = 0;
    int existed = 0;
    int rc = gdres_open(dsn, &r, &e);
    if (!rc)
        rc = gdres_record(r, dir, &id, &existed, &e);
    gdres_close(r);
    if (rc) {
        fprintf(stderr, "nines gameday: %s: not recorded: %s\n", dir, e.msg);
        return rc;
    }
    if (!quiet_ok || existed)
        printf("%s: %s as run %" PRId64 "\n", dir, existed ? "already recorded" : "recorded", id);
    else
        printf("recorded as run %" PRId64 " (nines gameday history --run %" PRId64 ")\n", id, id);
    return 0;
}

static int cmd_record(const char *dsn, const char *dir)
{
    char path[PATH_MAX + 16];
    /* A missing report is the caller's mistake (2), not the database's. */
    snprintf(path, sizeof path, "%s/report.json", dir);
    if (access(path, R_OK)) {
        fprintf(stderr, "nines gameday record: %s: %s\n", path, strerror(errno));
        return GD_EXIT_USAGE;
    }
    int rc = record_dir(dsn, dir, 0);
    if (!rc)
        return GD_EXIT_PASSED;
    return rc == NERR_PARSE || rc == NERR_INVALID ? GD_EXIT_USAGE : GD_EXIT_FAILED;
}

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "-";
}

static long long jint(const json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

/* "12.3" or "-" for a missing number. */
static const char *jnum(const json_t *o, const char *k, const char *fmt, char *buf, size_t cap)
{
    const json_t *v = json_object_get(o, k);
    if (!json_is_number(v))
        return "-";
    snprintf(buf, cap, fmt, json_number_value(v));
    return buf;
}

/* "2026-11-21T05:00:00.123Z" -> "2026-11-21 05:00:00". */
static void short_time(const char *iso, char *buf, size_t cap)
{
    snprintf(buf, cap, "%.19s", iso);
    if (strlen(buf) > 10 && buf[10] == 'T')
        buf[10] = ' ';
}

static void print_history(const json_t *runs)
{
    size_t i;
    json_t *r;
    if (!json_array_size(runs)) {
        printf("no game days recorded\n");
        return;
    }
    printf("%6s  %-19s  %-24s  %10s  %-6s  %9s  %6s  %6s  %-40s  %s\n", "id", "started (UTC)",
           "name", "seed", "result", "elapsed", "steps", "expect", "failure", "report");
    json_array_foreach(runs, i, r)
    {
        char when[32], el[32], st[32], ex[32], fail[44];
        short_time(jstr(r, "started_at"), when, sizeof when);
        snprintf(st, sizeof st, "%lld/%lld", jint(r, "failed_steps"), jint(r, "steps"));
        if (jint(r, "expectations"))
            snprintf(ex, sizeof ex, "%lld/%lld", jint(r, "failed_expectations"),
                     jint(r, "expectations"));
        else
            snprintf(ex, sizeof ex, "-");
        const char *f = jstr(r, "failure");
        if (strlen(f) > 40)
            snprintf(fail, sizeof fail, "%.37s...", f);
        else
            snprintf(fail, sizeof fail, "%s", f);
        printf("%6lld  %-19s  %-24s  %10" PRIu64 "  %-6s  %9s  %6s  %6s  %-40s  %s\n",
               jint(r, "id"), when, jstr(r, "name"), (uint64_t)jint(r, "seed"),
               json_is_true(json_object_get(r, "passed")) ? "PASSED" : "FAILED",
               jnum(r, "elapsed_s", "%.1fs", el, sizeof el), st, ex, fail, jstr(r, "report_dir"));
    }
    printf("(steps, expect: failed/total)\n");
}

static void print_run(const json_t *d)
{
    const json_t *r = json_object_get(d, "run"), *s;
    char when[32], b1[32], b2[32], b3[32], b4[32];
    size_t i;
    short_time(jstr(r, "started_at"), when, sizeof when);
    printf("run %lld  %s  seed %" PRIu64 "  %s\n", jint(r, "id"), jstr(r, "name"),
           (uint64_t)jint(r, "seed"),
           json_is_true(json_object_get(r, "passed")) ? "PASSED" : "FAILED");
    printf("started   %s UTC, elapsed %s\n", when, jnum(r, "elapsed_s", "%.1fs", b1, sizeof b1));
    printf("playbook  %s\ninventory %s\nreport    %s\n", jstr(r, "playbook"), jstr(r, "inventory"),
           jstr(r, "report_dir"));
    if (json_is_string(json_object_get(r, "failure")))
        printf("failure   %s\n", jstr(r, "failure"));
    printf("\n%4s %8s %8s  %-34s %-20s %8s %7s %9s %9s\n", "step", "start", "end", "what", "hit",
           "ok", "errors", "p99 ms", "recovery");
    json_array_foreach(json_object_get(d, "steps"), i, s)
    {
        char hit[256] = "";
        size_t len = 0, k;
        json_t *h;
        json_array_foreach(json_object_get(s, "hosts"), k, h) if (len < sizeof hit) len +=
            (size_t)snprintf(hit + len, sizeof hit - len, "%s%s", k ? "," : "",
                             json_string_value(h) ? json_string_value(h) : "?");
        printf("%4lld %8s %8s  %-34.34s %-20.20s %8lld %7lld %9s %9s%s%s\n", jint(s, "index"),
               jnum(s, "start_s", "%.1fs", b1, sizeof b1), jnum(s, "end_s", "%.1fs", b2, sizeof b2),
               jstr(s, "label"), hit[0] ? hit : "-", jint(s, "ok"), jint(s, "errors"),
               jnum(s, "p99_ms", "%.1f", b3, sizeof b3),
               jnum(s, "recovery_s", "%.2fs", b4, sizeof b4),
               json_is_true(json_object_get(s, "failed")) ? "  FAILED: " : "",
               json_is_true(json_object_get(s, "failed")) ? jstr(s, "error") : "");
    }
    const json_t *ex = json_object_get(d, "expectations");
    if (json_array_size(ex)) {
        printf("\nexpectations\n");
        json_array_foreach(ex, i, s)
        {
            char when2[48];
            if (json_is_integer(json_object_get(s, "step")))
                snprintf(when2, sizeof when2, "%s %lld", jstr(s, "phase"), jint(s, "step"));
            else
                snprintf(when2, sizeof when2, "%s", jstr(s, "phase"));
            printf("  %s  %-22s %s%s%s\n",
                   json_is_true(json_object_get(s, "passed")) ? "PASS" : "FAIL", when2,
                   jstr(s, "what"), json_is_string(json_object_get(s, "detail")) ? ": " : "",
                   json_is_string(json_object_get(s, "detail")) ? jstr(s, "detail") : "");
        }
    }
    const json_t *ver = json_object_get(d, "verifications");
    if (json_array_size(ver)) {
        printf("\nverifications\n");
        json_array_foreach(ver, i, s)
        {
            const json_t *det = json_object_get(s, "detail");
            const char *why = json_string_value(json_object_get(det, "detail"));
            if (!why)
                why = json_string_value(json_object_get(det, "error"));
            printf("  %s  %-10s%s%s\n",
                   json_is_true(json_object_get(s, "passed")) ? "PASS" : "FAIL", jstr(s, "name"),
                   why && *why ? " " : "", why && *why ? why : "");
        }
    }
}

static int cmd_history(const char *dsn, const char *name, long limit, int64_t run_id, int as_json)
{
    struct gdres *r = NULL;
    struct nerr e = {0};
    json_t *out = NULL;
    int rc = gdres_open(dsn, &r, &e);
    if (!rc)
        rc = run_id ? gdres_run(r, run_id, &out, &e) : gdres_history(r, name, limit, &out, &e);
    gdres_close(r);
    if (rc) {
        fprintf(stderr, "nines gameday history: %s\n", e.msg);
        return GD_EXIT_FAILED;
    }
    if (as_json) {
        json_dumpf(out, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
    } else if (run_id) {
        print_run(out);
    } else {
        print_history(out);
    }
    json_decref(out);
    return GD_EXIT_PASSED;
}

/* ---- run ---- */

/* report.json in dir, written at or after t0 (so not an earlier run's). */
static int fresh_report(const char *dir, const struct timespec *t0)
{
    char path[PATH_MAX + 16];
    struct stat st;
    snprintf(path, sizeof path, "%s/report.json", dir);
    if (stat(path, &st))
        return 0;
    return st.st_mtim.tv_sec > t0->tv_sec ||
           (st.st_mtim.tv_sec == t0->tv_sec && st.st_mtim.tv_nsec >= t0->tv_nsec);
}

static int cmd_run(const char *path, const char *invp, const char *report, const char *ninesd,
                   uint64_t seed, const char *dsn)
{
    struct pb_errors errs = {0};
    struct playbook *pb = NULL;
    struct inventory *inv = NULL;
    struct nerr e = {0};
    struct timespec t0;
    char inv_real[PATH_MAX], dir[PATH_MAX], dir_abs[PATH_MAX * 2], lock_path[PATH_MAX + 64];
    int lock_fd = -1, status = GD_EXIT_USAGE, passed = 0;
    clock_gettime(CLOCK_REALTIME, &t0);
    /* Signals first: one that comes while the lock is taken must still
     * count as an interruption. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* The playbook and the inventory are read here too (gameday_run reads
     * them again): the lock needs the inventory's path, which may come from
     * the playbook, and their errors are usage errors (2), found before
     * anything is locked or touched. */
    if (playbook_load(path, NULL, 0, NULL, &pb, &errs, &e)) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msg[i]);
        if (errs.dropped)
            fprintf(stderr, "... and %zu more errors\n", errs.dropped);
        if (!errs.n)
            fprintf(stderr, "nines gameday: %s\n", e.msg);
        goto out;
    }
    if (!invp)
        invp = pb->inventory;
    if (!invp) {
        fprintf(stderr, "nines gameday: %s: no inventory (give --inventory FILE)\n", path);
        goto out;
    }
    if (inventory_load(invp, &inv, &e)) {
        fprintf(stderr, "nines gameday: %s\n", e.msg);
        goto out;
    }
    if (!realpath(invp, inv_real)) {
        fprintf(stderr, "nines gameday: %s: %s\n", invp, strerror(errno));
        goto out;
    }
    /* The same default as the runner's (gameday.h). */
    if (report)
        snprintf(dir, sizeof dir, "%s", report);
    else
        snprintf(dir, sizeof dir, "gameday-%s-%" PRIu64, pb->name, seed);
    char cwd[PATH_MAX];
    if (dir[0] != '/' && getcwd(cwd, sizeof cwd))
        snprintf(dir_abs, sizeof dir_abs, "%s/%s", cwd, dir);
    else
        snprintf(dir_abs, sizeof dir_abs, "%s", dir);
    if ((status = lock_inventory(inv_real, path, dir_abs, lock_path, sizeof lock_path, &lock_fd)) !=
        GD_EXIT_PASSED)
        goto out;
    if (cancel_flag) {
        fprintf(stderr, "nines gameday: interrupted before the run started\n");
        status = GD_EXIT_INTERRUPTED;
        goto out;
    }
    if (http_global_init()) {
        fprintf(stderr, "nines gameday: cannot initialise libcurl\n");
        status = GD_EXIT_FAILED;
        goto out;
    }
    struct gd_opts o = {.playbook = path,
                        .inventory = invp,
                        .report_dir = dir,
                        .ninesd = ninesd,
                        .seed = seed,
                        .out = stdout,
                        .progress = stderr,
                        .progress_tty = isatty(2),
                        .cancel = &cancel_flag};
    nerr_clear(&e);
    int rc = gameday_run(&o, &passed, &e);
    curl_global_cleanup();
    if (rc == NERR_CLOSED || cancel_flag)
        status = GD_EXIT_INTERRUPTED;
    else if (rc)
        status = rc == NERR_INVALID || rc == NERR_PARSE ? GD_EXIT_USAGE : GD_EXIT_FAILED;
    else
        status = passed ? GD_EXIT_PASSED : GD_EXIT_FAILED;
    if (rc)
        fprintf(stderr, "nines gameday: %s\n", e.msg);
    if (status == GD_EXIT_INTERRUPTED)
        fprintf(stderr, "nines gameday: interrupted: every fault healed, report in %s\n", dir);
    fflush(stdout);
    /* The verdict is the game day's: a results database that cannot take
     * the report only adds a message, and the report stays on disk. */
    if (dsn && fresh_report(dir, &t0) && record_dir(dsn, dir, 1))
        fprintf(stderr,
                "nines gameday: the game day's verdict stands (exit %d); record it later with: "
                "nines gameday record %s --results DSN\n",
                status, dir_abs);
out:
    unlock_inventory(lock_fd, lock_path);
    inventory_free(inv);
    playbook_free(pb);
    pb_errors_free(&errs);
    return status;
}

/* ---- the command line ---- */

static int parse_num(const char *opt, const char *arg, long long min, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(arg, &end, 10);
    if (errno || *end || !*arg || v < min) {
        fprintf(stderr, "nines gameday: %s '%s': an integer >= %lld\n", opt, arg, min);
        return -1;
    }
    *out = v;
    return 0;
}

int gameday_main(int argc, char **argv)
{
    enum { O_RESULTS = 256, O_LIMIT, O_NAME, O_RUN, O_JSON };
    static const struct option longopts[] = {
        {"inventory", required_argument, NULL, 'i'},
        {"seed", required_argument, NULL, 's'},
        {"report", required_argument, NULL, 'r'},
        {"ninesd", required_argument, NULL, 'n'},
        {"results", required_argument, NULL, O_RESULTS},
        {"limit", required_argument, NULL, O_LIMIT},
        {"name", required_argument, NULL, O_NAME},
        {"run", required_argument, NULL, O_RUN},
        {"json", no_argument, NULL, O_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *invp = NULL, *report = NULL, *ninesd = NULL, *results = NULL, *name = NULL;
    uint64_t seed = 0;
    long long limit = GD_HISTORY_LIMIT, run_id = 0;
    int have_seed = 0, as_json = 0, c;
    /* Which options were given: each subcommand refuses those it ignores. */
    int run_opts = 0, hist_opts = 0;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'i':
            invp = optarg;
            run_opts++;
            break;
        case 'r':
            report = optarg;
            run_opts++;
            break;
        case 'n':
            ninesd = optarg;
            run_opts++;
            break;
        case 's': {
            char *end;
            errno = 0;
            seed = strtoull(optarg, &end, 10);
            if (errno || *end || !*optarg || *optarg == '-') {
                fprintf(stderr, "nines gameday: --seed '%s': a non-negative integer\n", optarg);
                return GD_EXIT_USAGE;
            }
            have_seed = 1;
            run_opts++;
            break;
        }
        case O_RESULTS:
            if (!*optarg) {
                fprintf(stderr, "nines gameday: --results: an empty DSN\n");
                return GD_EXIT_USAGE;
            }
            results = optarg;
            break;
        case O_LIMIT:
            if (parse_num("--limit", optarg, 1, &limit))
                return GD_EXIT_USAGE;
            hist_opts++;
            break;
        case O_NAME:
            name = optarg;
            hist_opts++;
            break;
        case O_RUN:
            if (parse_num("--run", optarg, 1, &run_id))
                return GD_EXIT_USAGE;
            hist_opts++;
            break;
        case O_JSON:
            as_json = 1;
            hist_opts++;
            break;
        case 'h':
            usage(stdout);
            return GD_EXIT_PASSED;
        default:
            fprintf(stderr, "nines gameday: unknown or incomplete option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return GD_EXIT_USAGE;
        }
    }
    if (argc - optind < 1) {
        usage(stderr);
        return GD_EXIT_USAGE;
    }
    const char *cmd = argv[optind];
    int nargs = argc - optind - 1, is_hist = !strcmp(cmd, "history"),
        is_rec = !strcmp(cmd, "record");
    if (is_hist || is_rec) {
        const char *dsn = results_dsn(results);
        if (nargs != (is_rec ? 1 : 0) || run_opts || (is_rec && hist_opts)) {
            fprintf(stderr, "nines gameday %s: wrong arguments\n", cmd);
            usage(stderr);
            return GD_EXIT_USAGE;
        }
        if (!dsn) {
            fprintf(stderr,
                    "nines gameday %s: no results database (give --results DSN or set "
                    "NINES_GAMEDAY_PG)\n",
                    cmd);
            return GD_EXIT_USAGE;
        }
        if (is_rec)
            return cmd_record(dsn, argv[optind + 1]);
        if (run_id && (name || limit != GD_HISTORY_LIMIT)) {
            fprintf(stderr, "nines gameday history: --run shows one run: no --name or --limit\n");
            return GD_EXIT_USAGE;
        }
        return cmd_history(dsn, name, (long)limit, (int64_t)run_id, as_json);
    }
    if (nargs != 1 || hist_opts) {
        usage(stderr);
        return GD_EXIT_USAGE;
    }
    const char *path = argv[optind + 1];
    if (!have_seed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t)ts.tv_sec * 1000003u) ^ (uint64_t)ts.tv_nsec;
        seed %= 1000000000u; /* short enough to type back */
    }
    if (!strcmp(cmd, "lint") || !strcmp(cmd, "plan")) {
        if (results) {
            fprintf(stderr, "nines gameday %s: --results is for run, record and history\n", cmd);
            return GD_EXIT_USAGE;
        }
        return lint_or_plan(!strcmp(cmd, "plan"), path, invp, seed, have_seed);
    }
    if (strcmp(cmd, "run")) {
        fprintf(stderr, "nines gameday: unknown command '%s'\n", cmd);
        usage(stderr);
        return GD_EXIT_USAGE;
    }
    return cmd_run(path, invp, report, ninesd, seed, results_dsn(results));
}
