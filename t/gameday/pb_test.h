/*
 * pb_test.h — what the playbook tests (lint_plan.c, lint_faults.c,
 * lint_disk.c) share: a playbook loaded from text with every error
 * collected, an error looked up by its exact text, a plan printed to a
 * string, and the six-host inventory they plan against. Test code only.
 */
#ifndef NINES_T_GAMEDAY_PB_TEST_H
#define NINES_T_GAMEDAY_PB_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault/inventory.h"
#include "gameday/playbook.h"
#include "t/tap.h"

/* Six hosts, three AZs, two racks per AZ, as `nines lab up --hosts 6 --azs 3
 * --racks 2` places them. The power commands are never run. */
#define PB_TEST_INV6                                                                               \
    "inventory: t6\n"                                                                              \
    "hosts:\n"                                                                                     \
    "  - {name: h1, address: 10.9.0.2, az: az1, rack: r1, data: /d/h1, power: {driver: command, "  \
    "off: 'echo {name}', on: 'echo {name}'}}\n"                                                    \
    "  - {name: h2, address: 10.9.0.3, az: az2, rack: r1, data: /d/h2, power: {driver: command, "  \
    "off: 'echo {name}', on: 'echo {name}'}}\n"                                                    \
    "  - {name: h3, address: 10.9.0.4, az: az3, rack: r1, data: /d/h3, power: {driver: command, "  \
    "off: 'echo {name}', on: 'echo {name}'}}\n"                                                    \
    "  - {name: h4, address: 10.9.0.5, az: az1, rack: r2, data: /d/h4, power: {driver: command, "  \
    "off: 'echo {name}', on: 'echo {name}'}}\n"                                                    \
    "  - {name: h5, address: 10.9.0.6, az: az2, rack: r2, data: /d/h5, power: {driver: command, "  \
    "off: 'echo {name}', on: 'echo {name}'}}\n"                                                    \
    "  - {name: h6, address: 10.9.0.7, az: az3, rack: r2, data: /d/h6, power: {driver: command, "  \
    "off: 'echo {name}', on: 'echo {name}'}}\n"

/* An inventory from text (bails out on an error). */
static inline struct inventory *pbt_inventory(const char *text)
{
    struct inventory *inv = NULL;
    struct nerr e = {0};
    if (inventory_load_string("inv.yaml", text, strlen(text), "/", &inv, &e))
        bail_out(e.msg);
    return inv;
}

/* The playbook "pb.yaml" from text, or NULL with every error in errs (the
 * caller frees errs) and the first in e. */
static inline struct playbook *load(const char *text, const struct inventory *inv,
                                    struct pb_errors *errs, struct nerr *e)
{
    struct playbook *pb = NULL;
    memset(errs, 0, sizeof *errs);
    nerr_clear(e);
    playbook_load("pb.yaml", text, strlen(text), inv, &pb, errs, e);
    return pb;
}

static inline int has_err(const struct pb_errors *errs, const char *want)
{
    for (size_t i = 0; i < errs->n; i++)
        if (!strcmp(errs->msg[i], want))
            return 1;
    return 0;
}

/* A playbook that must load: the errors are shown when it does not. */
static inline struct playbook *must(const char *text, const struct inventory *inv)
{
    struct pb_errors errs;
    struct nerr e;
    struct playbook *pb = load(text, inv, &errs, &e);
    if (!pb) {
        diag("load: %s", e.msg);
        for (size_t i = 0; i < errs.n; i++)
            diag("  %s", errs.msg[i]);
    }
    pb_errors_free(&errs);
    return pb;
}

/* The plan of pb as `nines gameday plan` prints it (malloc'd), or NULL with
 * the planner's error in *e; *keep (may be NULL) gets the plan itself. */
static inline char *plan_string(const struct playbook *pb, const struct inventory *inv,
                                uint64_t seed, struct pb_plan **keep, struct nerr *e)
{
    struct pb_plan *p = NULL;
    nerr_clear(e);
    if (playbook_plan(pb, inv, seed, &p, e))
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    pb_plan_print(p, inv, f);
    fclose(f);
    if (keep)
        *keep = p;
    else
        pb_plan_free(p);
    return buf;
}

#endif
