/*
 * power_driver.h — inside the power drivers (fault/power.h is their door;
 * include this only from fault/power_*.c and from the drivers' unit test).
 *
 * A power driver is one file, fault/power_<name>.c, that fills a struct
 * power_driver and is listed in power_driver.c's table under the inventory's
 * driver id (enum inv_driver, fault/inventory.h). Callers never switch on
 * the driver: what differs per driver (the refusal of this machine, which
 * off modes it can honour, how it names the power-off it gives, whether it
 * cuts several hosts at one instant) is a member of the vtable.
 *
 * Contract of every member: called only through power_driver.c, and
 * off/on/status/off_group only after power_check_target has passed for the
 * host (SAFETY in power.h); errors as in power.h; env and hosts borrowed for
 * the call; no state kept between calls.
 *
 * The shared helpers below are the drivers' common ground: the host's power
 * timeout, a sleep, the local-target refusal, running a command template
 * through /bin/sh under the host's timeout.
 */
#ifndef NINES_FAULT_POWER_DRIVER_H
#define NINES_FAULT_POWER_DRIVER_H

#include <stddef.h>
#include <sys/types.h>

#include "fault/power.h"

#define POWER_LAB_ROUNDS 50 /* kill passes before lab off gives up */
#define POWER_MAX_PIDS 65536

struct power_driver {
    const char *name;
    enum inv_driver id;
    /* The driver's own part of the refusal of this machine (power_check_target
     * has already refused local addresses and host names). */
    int (*check)(const struct power_env *env, const struct inv_host *h, struct nerr *err);
    /* NULL: every mode is accepted (real power is cut whatever the mode).
     * Else 0 or NERR_INVALID with power_check_mode's reason. */
    int (*check_mode)(const struct inv_host *h, enum power_off_mode mode, struct nerr *err);
    /* NULL: "power". Else the mode the driver resolves mode to. */
    const char *(*mode_word)(const struct inv_host *h, enum power_off_mode mode);
    /* NULL: power_off_group powers the driver's hosts off one by one. Else
     * powers off, at one instant, those of the n hosts (all of this driver,
     * already checked) it cuts together, setting taken[i] for each; the
     * others are then powered off one by one with off. The first error. */
    int (*off_group)(const struct power_env *env, const struct inv_host *const *hosts, size_t n,
                     enum power_off_mode mode, unsigned char *taken, struct nerr *err);
    int (*off)(const struct power_env *env, const struct inv_host *h, enum power_off_mode mode,
               struct nerr *err);
    int (*on)(const struct power_env *env, const struct inv_host *h, struct nerr *err);
    int (*status)(const struct power_env *env, const struct inv_host *h, enum power_state *state,
                  char *detail, size_t cap, struct nerr *err);
};

extern const struct power_driver power_driver_lab, power_driver_command, power_driver_qmp;

/* The driver for d, NULL for an unknown id. */
const struct power_driver *power_driver_for(enum inv_driver d);

/* 0 when h may be acted on, else NERR_INVALID saying why (see SAFETY in
 * power.h): local address or host name, then the driver's check. */
int power_check_target(const struct power_env *env, const struct inv_host *h, struct nerr *err);

/* 1 (with why filled) when address is this machine, else 0. */
int power_address_is_local(const char *address, char *why, size_t cap);

/* The refusal of a command template (command off/on/status, qmp start)
 * that mentions poweroff, reboot, halt, ... without naming a host ({name}
 * or {address}): run locally, it would act on this machine. what names the
 * template in the message. NULL tmpl passes. */
int power_check_command_template(const struct inv_host *h, const char *what, const char *tmpl,
                                 struct nerr *err);

/* The host's power.timeout in ms (INV_DEFAULT_TIMEOUT_NS when unset). */
long power_timeout_ms(const struct inv_host *h);
void power_sleep_ms(long ms);

/* Makes command output fit a one-line message: trailing blanks cut, line
 * breaks turned into spaces. NULL is allowed. */
void power_one_line(char *s);

/* Expands tmpl for h and runs it through /bin/sh under h's timeout; out and
 * errout (POWER_OUT_MAX + 1 bytes each) get its output. With check_exit, a
 * non-zero exit is NERR_IO with stderr in the message. what names the
 * template in messages. */
int power_run_template(const struct inv_host *h, const char *what, const char *tmpl, char *out,
                       char *errout, int check_exit, struct nerr *err);

/* Where a labfs mounted at fs keeps its durable bytes and its log: the
 * directory `backing` and the file `log/labfs.log` beside fs
 * (DIR/hosts/h1/data -> DIR/hosts/h1/backing, DIR/hosts/h1/log/labfs.log).
 * NERR_INVALID when fs has no parent, NERR_LIMIT when a path would not fit.
 * The lab driver's business (the lab writes the same layout, lab/lab.c). */
int power_lab_fs_layout(const char *fs, char *backing, size_t bcap, char *log, size_t lcap,
                        struct nerr *err);

/* The pids whose network namespace is netns (by inode of
 * env->netns_dir/netns), in ascending order. *n counts them all even beyond
 * cap; NERR_LIMIT when more than cap. */
int power_lab_pids(const struct power_env *env, const char *netns, pid_t *pids, size_t cap,
                   size_t *n, struct nerr *err);

#endif
