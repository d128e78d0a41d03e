/*
 * fault/power_command.c — the `command` power driver: off/on/status
 * templates run locally by /bin/sh -c (contract in power.h).
 */
#include "fault/power_driver.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int cmd_off(const struct power_env *env, const struct inv_host *h, enum power_off_mode mode,
                   struct nerr *err)
{
    char out[POWER_OUT_MAX + 1], eo[POWER_OUT_MAX + 1];
    return power_run_template(h, "off", h->power.off, out, eo, 1, err);
}

static int cmd_on(const struct power_env *env, const struct inv_host *h, struct nerr *err)
{
    char out[POWER_OUT_MAX + 1], eo[POWER_OUT_MAX + 1];
    return power_run_template(h, "on", h->power.on, out, eo, 1, err);
}

static int starts_word(const char *s, const char *w)
{
    size_t n = strlen(w);
    return strncasecmp(s, w, n) == 0 && !isalnum((unsigned char)s[n]);
}

static int cmd_status(const struct power_env *env, const struct inv_host *h,
                      enum power_state *state, char *detail, size_t cap, struct nerr *err)
{
    char out[POWER_OUT_MAX + 1], eo[POWER_OUT_MAX + 1];
    int rc;
    *state = POWER_UNKNOWN;
    if (!h->power.status) {
        snprintf(detail, cap, "no status command");
        return 0;
    }
    if ((rc = power_run_template(h, "status", h->power.status, out, eo, 1, err)))
        return rc;
    const char *s = out;
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t n = strcspn(s, "\r\n");
    snprintf(detail, cap, "%.*s", (int)n, s);
    if (starts_word(s, "running") || starts_word(s, "on") || starts_word(s, "up"))
        *state = POWER_ON;
    else if (starts_word(s, "shut off") || starts_word(s, "shutoff") || starts_word(s, "off") ||
             starts_word(s, "stopped") || starts_word(s, "down"))
        *state = POWER_OFF;
    return 0;
}

static int cmd_check(const struct power_env *env, const struct inv_host *h, struct nerr *err)
{
    int rc;
    if ((rc = power_check_command_template(h, "off", h->power.off, err)) ||
        (rc = power_check_command_template(h, "on", h->power.on, err)) ||
        (rc = power_check_command_template(h, "status", h->power.status, err)))
        return rc;
    return 0;
}

const struct power_driver power_driver_command = {
    .name = "command",
    .id = INV_DRIVER_COMMAND,
    .check = cmd_check,
    .off = cmd_off,
    .on = cmd_on,
    .status = cmd_status,
};
