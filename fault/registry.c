/*
 * fault/registry.c — the fault kinds (contract in fault.h). A new kind is a
 * file and two lines here.
 */
#include "fault/fault.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

extern const struct fault_kind fault_power;
extern const struct fault_kind fault_disk_full;
extern const struct fault_kind fault_bit_rot;
extern const struct fault_kind fault_partition;
extern const struct fault_kind fault_pause;
extern const struct fault_kind fault_degrade;

const struct fault_kind *const fault_kinds[] = {
    &fault_power,
    &fault_disk_full,
    &fault_bit_rot,
    &fault_partition,
    &fault_pause,
    &fault_degrade,
    NULL,
};

size_t fault_kind_count(void)
{
    return sizeof fault_kinds / sizeof fault_kinds[0] - 1;
}

unsigned char fault_kind_id(const struct fault_kind *k)
{
    for (size_t i = 0; fault_kinds[i]; i++)
        if (fault_kinds[i] == k)
            return (unsigned char)(i + 1);
    return 0;
}

const struct fault_kind *fault_kind_for_step(const char *step, int *heal)
{
    for (size_t i = 0; fault_kinds[i]; i++) {
        if (!strcmp(fault_kinds[i]->inject_step, step)) {
            *heal = 0;
            return fault_kinds[i];
        }
        if (fault_kinds[i]->heal_step && !strcmp(fault_kinds[i]->heal_step, step)) {
            *heal = 1;
            return fault_kinds[i];
        }
    }
    return NULL;
}

size_t fault_step_keys(const char **out, size_t cap, const char *const *extra)
{
    size_t n = 0;
    for (size_t i = 0; fault_kinds[i] && n + 1 < cap; i++) {
        out[n++] = fault_kinds[i]->inject_step;
        if (fault_kinds[i]->heal_step && n + 1 < cap)
            out[n++] = fault_kinds[i]->heal_step;
    }
    for (size_t i = 0; extra && extra[i] && n + 1 < cap; i++)
        out[n++] = extra[i];
    out[n] = NULL;
    return n;
}

void fault_notef(const struct fault_env *env, const char *fmt, ...)
{
    char msg[NERR_MSG_MAX + 256];
    va_list ap;
    if (!env || !env->note)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    env->note(env->arg, msg);
}
