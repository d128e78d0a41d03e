/*
 * fault/disk_full.c — the disk_full fault kind (fault.h): the playbook's
 * disk_full step makes its hosts' data file system answer ENOSPC to every
 * write that needs new space; free_disk, the end of the step's duration or
 * heal_all gives the space back. Nothing that was written is lost.
 *
 * Two ways, chosen per host (label "labfs" or "ballast"):
 *  - a lab host with labfs (inventory power `fs`): the labfs control
 *    command `full on` / `full off` (labfs/labfs.h). Nothing is allocated
 *    anywhere: this machine's disk, which backs every lab host, is never
 *    filled.
 *  - any other host (real machines over SSH, fault/hostcmd.h): a ballast
 *    file DATA/.nines-ballast allocated with fallocate(1) until the file
 *    system has less than DF_SLACK bytes free (free blocks as the SSH user
 *    sees them: root may use the reserved blocks, so for root the reserve is
 *    filled too), removed at heal.
 * A lab host WITHOUT labfs is refused (at plan time, by check): its data
 * directory is a plain directory on this machine, and a ballast there
 * would fill this machine's disk.
 *
 * heal_all: `full off` on every labfs host whose mount answers, and the
 * ballast removed from every other host that is not refused (each SSH
 * command bounded: BALLAST_HEAL_MS for a host this run filled,
 * BALLAST_SWEEP_MS for the others, which only look for a ballast left
 * behind by an earlier run).
 */
#include "fault/fault.h"
#include "fault/hostcmd.h"
#include "labfs/labfs.h"
#include "net/shquote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_S 1000000000ull
#define BALLAST_NAME ".nines-ballast"
#define DF_SLACK 65536        /* below this many free bytes the ballast is done */
#define BALLAST_FILL_MS 60000 /* the whole fill on one host */
#define BALLAST_HEAL_MS 30000 /* removing it */
#define BALLAST_SWEEP_MS 5000 /* heal_all on a host this run did not fill */

/* What this run did to each host (inventory index): the kind's view. */
enum df_mark { DF_NONE = 0, DF_LABFS = 1, DF_BALLAST = 2 };

struct df_state {
    unsigned char *mark;
    size_t n;
};

static int uses_labfs(const struct inv_host *h)
{
    return h->power.driver == INV_DRIVER_LAB && h->power.fs;
}

/* The kind's one refusal besides hostcmd_check_target: a lab host's data
 * directory is on this machine unless labfs serves it. */
static int refuse_local_data(const struct inv_host *h, struct nerr *err)
{
    if (h->power.driver == INV_DRIVER_LAB && !h->power.fs)
        return nerr_set(err, NERR_INVALID,
                        "disk_full: host '%s' is a lab host without labfs: its data directory is "
                        "on this machine, whose disk a ballast would fill (use a lab with labfs)",
                        h->name);
    return 0;
}

static int df_check(const struct inventory *inv, const struct fault_call *c, struct nerr *err)
{
    for (size_t i = 0; i < c->nhosts; i++) {
        int rc = refuse_local_data(&inv->hosts[c->hosts[i]], err);
        if (rc)
            return rc;
    }
    return 0;
}

static void df_describe(const void *params, char *buf, size_t cap)
{
    (void)params;
    if (cap)
        buf[0] = 0;
}

static const char *df_label(const struct inv_host *h, const void *params)
{
    (void)params;
    return uses_labfs(h) ? "labfs" : "ballast";
}

static int df_open(const struct fault_env *env, void **state, struct nerr *err)
{
    struct df_state *s = calloc(1, sizeof *s);
    size_t n = env->inv ? env->inv->n_hosts : 0;
    if (!s || !(s->mark = calloc(n ? n : 1, 1))) {
        free(s);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    s->n = n;
    *state = s;
    return 0;
}

static void df_close(void *state)
{
    struct df_state *s = state;
    if (s)
        free(s->mark);
    free(s);
}

/* DATA/.nines-ballast, shell-quoted (malloc'd). */
static int ballast_path(const struct inv_host *h, char **q, struct nerr *err)
{
    char p[4096];
    if ((size_t)snprintf(p, sizeof p, "%s/%s", h->data, BALLAST_NAME) >= sizeof p)
        return nerr_set(err, NERR_INVALID, "host %s: data path too long", h->name);
    return shquote_arg(p, q, err);
}

/* Fills h's data file system with the ballast (see the header). The loop
 * is bounded (24 rounds): each round allocates what statfs says is free,
 * or half of it when that fails (metadata took some), until less than
 * DF_SLACK is left. */
static int ballast_fill(const struct inv_host *h, struct nerr *err)
{
    char *qb = NULL, *qd = NULL, *cmd = NULL;
    int rc;
    if ((rc = ballast_path(h, &qb, err)) || (rc = shquote_arg(h->data, &qd, err)))
        goto out;
    if (asprintf(&cmd,
                 "cd %s || exit 3; b=%s; rm -f \"$b\"; "
                 "if [ \"$(id -u)\" = 0 ]; then f=%%f; else f=%%a; fi; "
                 "free_bytes() { set -- $(stat -f -c \"$f %%S\" .); echo $(($1 * $2)); }; "
                 "sz=0; i=0; "
                 "while [ $i -lt 24 ]; do i=$((i + 1)); n=$(free_bytes); "
                 "[ \"$n\" -lt %d ] && break; "
                 "fallocate -o \"$sz\" -l \"$n\" \"$b\" 2>/dev/null || "
                 "fallocate -o \"$sz\" -l $((n / 2)) \"$b\" || exit 4; "
                 "sz=$(stat -c %%s \"$b\"); done; "
                 "echo \"ballast $sz bytes, $(free_bytes) bytes free\"",
                 qd, qb, DF_SLACK) < 0) {
        cmd = NULL;
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    rc = hostcmd_run_ok(h, "fallocate " BALLAST_NAME, cmd, BALLAST_FILL_MS, NULL, err);
out:
    free(qb), free(qd), free(cmd);
    return rc;
}

static int ballast_remove(const struct inv_host *h, int timeout_ms, struct nerr *err)
{
    char *qb = NULL, *cmd = NULL;
    int rc = ballast_path(h, &qb, err);
    if (rc)
        return rc;
    if (asprintf(&cmd, "rm -f -- %s", qb) < 0) {
        free(qb);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    rc = hostcmd_run_ok(h, "rm " BALLAST_NAME, cmd, timeout_ms, NULL, err);
    free(qb), free(cmd);
    return rc;
}

static int labfs_full(const struct inv_host *h, int on, struct nerr *err)
{
    char reply[128];
    struct nerr e = {0};
    int rc = labfs_control(h->power.fs, on ? "full on" : "full off", reply, sizeof reply, &e);
    if (rc)
        return nerr_set(err, rc, "host %s: labfs %s: %s", h->name, on ? "full on" : "full off",
                        e.msg);
    return 0;
}

static int df_inject(void *state, const struct fault_env *env, const struct fault_call *c,
                     struct nerr *err)
{
    struct df_state *s = state;
    /* Every host is checked before any is touched. */
    for (size_t i = 0; i < c->nhosts; i++) {
        const struct inv_host *h = &env->inv->hosts[c->hosts[i]];
        int rc;
        if ((rc = refuse_local_data(h, err)) ||
            (rc = hostcmd_check_target(h, "fill the disk of", err)))
            return rc;
    }
    for (size_t i = 0; i < c->nhosts; i++) {
        size_t hi = c->hosts[i];
        const struct inv_host *h = &env->inv->hosts[hi];
        int rc;
        if (uses_labfs(h)) {
            rc = labfs_full(h, 1, err);
            if (!rc && hi < s->n)
                s->mark[hi] = DF_LABFS;
        } else {
            /* Marked first: a fill that fails half-way leaves a ballast. */
            if (hi < s->n)
                s->mark[hi] = DF_BALLAST;
            rc = ballast_fill(h, err);
        }
        if (rc)
            return rc;
        fault_notef(env, "disk_full %s: %s", h->name,
              uses_labfs(h) ? "labfs full on" : "ballast " BALLAST_NAME " allocated");
    }
    return 0;
}

static int heal_one(struct df_state *s, const struct fault_env *env, size_t hi, int timeout_ms,
                    struct nerr *err)
{
    const struct inv_host *h = &env->inv->hosts[hi];
    int rc = hostcmd_check_target(h, "free the disk of", err);
    if (!rc)
        rc = uses_labfs(h) ? labfs_full(h, 0, err) : ballast_remove(h, timeout_ms, err);
    if (!rc && hi < s->n)
        s->mark[hi] = DF_NONE;
    return rc;
}

static int df_heal(void *state, const struct fault_env *env, const struct fault_call *c,
                   struct nerr *err)
{
    for (size_t i = 0; i < c->nhosts; i++) {
        const struct inv_host *h = &env->inv->hosts[c->hosts[i]];
        if (refuse_local_data(h, err))
            return err ? err->code : NERR_INVALID;
        int rc = heal_one(state, env, c->hosts[i], BALLAST_HEAL_MS, err);
        if (rc)
            return rc;
        fault_notef(env, "free_disk %s: %s", h->name,
              uses_labfs(h) ? "labfs full off" : "ballast removed");
    }
    return 0;
}

/* From the machines, not the plan: every labfs host that answers is set
 * not full (harmless when it was not), every other host loses a ballast
 * if it has one. A labfs that is not mounted (the host is off) is not
 * full: a fresh mount never is. */
static void df_heal_all(void *state, const struct fault_env *env)
{
    struct df_state *s = state;
    for (size_t i = 0; i < env->inv->n_hosts; i++) {
        const struct inv_host *h = &env->inv->hosts[i];
        struct nerr e = {0};
        int was = i < s->n ? s->mark[i] : DF_NONE;
        if (refuse_local_data(h, &e) || hostcmd_check_target(h, "free the disk of", &e))
            continue;
        if (uses_labfs(h)) {
            char reply[128];
            if (labfs_control(h->power.fs, "full", reply, sizeof reply, &e) ||
                !strstr(reply, "full=1"))
                continue;
        }
        if (heal_one(s, env, i, was ? BALLAST_HEAL_MS : BALLAST_SWEEP_MS, &e)) {
            if (was)
                fault_notef(env, "free_disk %s failed: %s", h->name, e.msg);
            continue;
        }
        if (was || uses_labfs(h))
            fault_notef(env, "free_disk %s: %s", h->name,
                  uses_labfs(h) ? "labfs full off" : "ballast removed");
    }
}

const struct fault_kind fault_disk_full = {
    .name = "disk_full",
    .inject_step = "disk_full",
    .heal_step = "free_disk",
    .held_until = "until free_disk",
    .keys = NULL,
    .inject_timeout_ns = 90 * NS_PER_S,
    .heal_timeout_ns = 60 * NS_PER_S,
    .parse = NULL,
    .free_params = NULL,
    .check = df_check,
    .describe = df_describe,
    .label = df_label,
    .open = df_open,
    .close = df_close,
    .inject = df_inject,
    .heal = df_heal,
    .heal_all = df_heal_all,
};
