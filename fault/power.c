/*
 * fault/power.c — the power fault kind (fault.h): the playbook's power_off
 * step (targets, duration, `mode`) cuts the power of its hosts at one
 * instant through the inventory's drivers (power.h), power_on or the end of
 * the step's duration brings them back, and heal_all powers on every host
 * its driver reports off.
 */
#include "fault/fault.h"
#include "fault/power.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_S 1000000000ull

struct power_params {
    enum power_off_mode mode; /* DEFAULT: the host's fs_mode with labfs, else kill */
};

enum power_off_mode power_fault_mode(const void *params)
{
    return params ? ((const struct power_params *)params)->mode : POWER_OFF_DEFAULT;
}

static const char *const keys[] = {"mode", NULL};

static int pw_parse(const struct fault_errs *x, const struct yt_node *m, void **params)
{
    struct power_params *p = calloc(1, sizeof *p);
    if (!p)
        return NERR_NOMEM;
    *params = p;
    const char *mode = NULL;
    struct nerr e = {0};
    if (!fault_chk(x, yt_get_str(m, "mode", YT_OPTIONAL, &mode, &e), &e) && mode &&
        (power_off_mode_parse(mode, &p->mode) || p->mode == POWER_OFF_DEFAULT))
        fault_errf(x, yt_map_get(m, "mode"), "mode must be crash, torn or kill, got '%s'", mode);
    return 0;
}

static void pw_free(void *params)
{
    free(params);
}

/* A power cut that would not lose unsynced writes is refused here, not
 * half-way through the run (the driver refuses it too). */
static int pw_check(const struct inventory *inv, const struct fault_call *c, struct nerr *err)
{
    enum power_off_mode mode = power_fault_mode(c->params);
    for (size_t i = 0; i < c->nhosts; i++) {
        struct nerr e = {0};
        if (power_check_mode(&inv->hosts[c->hosts[i]], mode, &e))
            return nerr_set(err, NERR_INVALID, "mode %s: %s", power_off_mode_name(mode), e.msg);
    }
    return 0;
}

static void pw_describe(const void *params, char *buf, size_t cap)
{
    enum power_off_mode mode = power_fault_mode(params);
    if (mode != POWER_OFF_DEFAULT)
        snprintf(buf, cap, " (mode %s)", power_off_mode_name(mode));
    else if (cap)
        buf[0] = 0;
}

static const char *pw_label(const struct inv_host *h, const void *params)
{
    return power_off_mode_word(h, power_fault_mode(params));
}

static int pw_open(const struct fault_env *env, void **state, struct nerr *err)
{
    struct power_env *pe = calloc(1, sizeof *pe);
    if (!pe)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    power_env_default(pe);
    *state = pe;
    return 0;
}

static void pw_close(void *state)
{
    free(state);
}

static void changed(const struct fault_env *env, const struct inv_host *h)
{
    if (env->host_changed)
        env->host_changed(env->arg, h);
}

/* One instant for every host of the step (a rack, an AZ). */
static int pw_inject(void *state, const struct fault_env *env, const struct fault_call *c,
                     struct nerr *err)
{
    const struct inv_host **hs = calloc(c->nhosts ? c->nhosts : 1, sizeof *hs);
    if (!hs)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    for (size_t i = 0; i < c->nhosts; i++)
        hs[i] = &env->inv->hosts[c->hosts[i]];
    int rc = power_off_group(state, hs, c->nhosts, power_fault_mode(c->params), err);
    for (size_t i = 0; i < c->nhosts; i++)
        changed(env, hs[i]);
    free(hs);
    return rc;
}

static int pw_heal(void *state, const struct fault_env *env, const struct fault_call *c,
                   struct nerr *err)
{
    for (size_t i = 0; i < c->nhosts; i++) {
        const struct inv_host *h = &env->inv->hosts[c->hosts[i]];
        int rc = power_on(state, h, err);
        if (rc)
            return rc;
        changed(env, h);
    }
    return 0;
}

/* Whatever happened: every host the driver says is off goes on again. */
static void pw_heal_all(void *state, const struct fault_env *env)
{
    for (size_t i = 0; i < env->inv->n_hosts; i++) {
        const struct inv_host *h = &env->inv->hosts[i];
        enum power_state st = POWER_UNKNOWN;
        struct nerr e = {0};
        if (power_status(state, h, &st, NULL, 0, &e)) {
            fault_notef(env, "power status of %s: %s", h->name, e.msg);
            continue;
        }
        if (st != POWER_OFF)
            continue;
        fault_notef(env, "powering %s back on", h->name);
        if (power_on(state, h, &e))
            fault_notef(env, "power on %s failed: %s", h->name, e.msg);
        changed(env, h);
    }
}

const struct fault_kind fault_power = {
    .name = "power",
    .inject_step = "power_off",
    .heal_step = "power_on",
    .held_until = "until powered on",
    .keys = keys,
    .inject_timeout_ns = 60 * NS_PER_S,
    .heal_timeout_ns = 60 * NS_PER_S,
    .parse = pw_parse,
    .free_params = pw_free,
    .check = pw_check,
    .describe = pw_describe,
    .label = pw_label,
    .open = pw_open,
    .close = pw_close,
    .inject = pw_inject,
    .heal = pw_heal,
    .heal_all = pw_heal_all,
};
