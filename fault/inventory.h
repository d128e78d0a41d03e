/*
 * inventory.h — the hosts a game day may touch: where they are (address,
 * SSH port/user/key/known_hosts), where they sit (AZ, rack), where the store
 * keeps its files on them (data) and how their power is driven (power).
 *
 * The file is YAML (lib/yamltree.h), so every mistake is reported as
 * "FILE:LINE:COL: message" at the offending node:
 *
 *   inventory: lab1
 *   defaults: {user: root, port: 22, key: keys/id, known_hosts: keys/kh}  # optional
 *   hosts:
 *     - name: h1
 *       address: 10.77.0.11            # IPv4, IPv6 or a DNS name
 *       port: 22                       # optional; defaults, then 22
 *       user: root                     # optional; defaults, then "root"
 *       key: /path/to/key              # optional; defaults, then none
 *       known_hosts: /path/kh          # optional; defaults, then none
 *       az: az1
 *       rack: r1
 *       data: /var/lib/nines/h1        # a path ON THE HOST, kept as written
 *       power: {driver: lab, netns: nines-lab-h1, start: "..."}
 *       # power: {driver: command, off: "virsh destroy {name}",
 *       #         on: "virsh start {name}", status: "virsh domstate {name}"}
 *       # power: {driver: qmp, socket: /run/qemu/h1.qmp, start: "..."}
 *
 * Every power mapping also takes an optional `timeout` (a duration, default
 * 30s, 100ms..1h) that bounds each power action.
 *
 * A lab power mapping may also name the host's power-loss file system
 * (labfs/labfs.h), which `nines lab up` writes:
 *
 *       power: {driver: lab, netns: ..., start: "...",
 *               fs: /lab/hosts/h1/data,     # the labfs mount point (absolute
 *                                           # after load; relative = against
 *                                           # the inventory's directory)
 *               fs_mode: crash}             # crash (default) | torn
 *
 * Its backing directory is `backing` beside the mount point and its daemon's
 * log `log/labfs.log` beside it (power_lab_fs_layout, fault/power_driver.h). fs and
 * fs_mode are refused on other drivers, and fs_mode without fs.
 *
 * Templates (command off/on/status, lab start, qmp start) may use the
 * placeholders {name} {address} {az} {rack} {data}; "{{" and "}}" stand for
 * literal braces. An unknown placeholder or an unbalanced brace is a load
 * error at the template. Values are shell-quoted when substituted
 * (inventory_template_expand below; the power drivers run them).
 *
 * Refused at load, each at its node: unknown keys (with a "did you mean"),
 * missing required keys, wrong types, a duplicate host name or address, an
 * unknown driver, a bad placeholder, a host or netns name with characters
 * outside [A-Za-z0-9._-]. Relative `key`, `known_hosts` and qmp `socket`
 * paths are made absolute against the inventory file's directory; `data` is
 * not (it names a directory on the remote host).
 *
 * Loading does NOT decide whether a host is this machine; the power drivers
 * do, before every action (fault/power.h), so that an inventory naming
 * 127.0.0.1 for SSH tests still loads.
 *
 * Errors: those of yt_load_file (NERR_IO, NERR_PARSE, NERR_LIMIT), and
 * NERR_INVALID for every schema error; NERR_LIMIT above INV_MAX_HOSTS hosts;
 * NERR_NOMEM.
 *
 * Ownership: struct inventory owns every string and host; inventory_host and
 * the selection helpers hand out pointers borrowed until inventory_free.
 * The loaded inventory is read-only: several threads may read it at once.
 */
#ifndef NINES_FAULT_INVENTORY_H
#define NINES_FAULT_INVENTORY_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define INV_MAX_HOSTS 4096
#define INV_DEFAULT_TIMEOUT_NS (30ull * 1000000000ull)

enum inv_driver { INV_DRIVER_LAB = 1, INV_DRIVER_COMMAND = 2, INV_DRIVER_QMP = 3 };

/* What a lab power-off does to the host's labfs by default. */
enum inv_fs_mode { INV_FS_CRASH = 0, INV_FS_TORN = 1 };

struct inv_power {
    enum inv_driver driver;
    uint64_t timeout_ns;      /* bound on each off/on/status */
    char *netns;              /* lab: name under /run/netns */
    char *start;              /* lab (required), qmp (optional): template to power on */
    char *off, *on;           /* command: templates (required) */
    char *status;             /* command: template (optional; NULL = unknown) */
    char *socket;             /* qmp: absolute path of the QMP unix socket */
    char *fs;                 /* lab: absolute labfs mount point, or NULL (no labfs) */
    enum inv_fs_mode fs_mode; /* lab with fs: crash (default) or torn */
};

struct inv_host {
    char *name;
    char *address;
    int port;
    char *user;
    char *key;         /* absolute, or NULL */
    char *known_hosts; /* absolute, or NULL */
    char *az;
    char *rack;
    char *data;
    struct inv_power power;
    int line, col; /* where the host's mapping starts, for later messages */
};

struct inventory {
    char *name;
    char *path; /* as given to inventory_load */
    struct inv_host *hosts;
    size_t n_hosts;
};

/* Loads and checks path. *out is set only on success; free with
 * inventory_free. */
int inventory_load(const char *path, struct inventory **out, struct nerr *err);

/* The same from memory: name is FILE in messages, basedir (NULL = the
 * current directory) is where relative paths resolve. */
int inventory_load_string(const char *name, const char *text, size_t len, const char *basedir,
                          struct inventory **out, struct nerr *err);

/* NULL is allowed. */
void inventory_free(struct inventory *inv);

/* The host named name, or NULL. */
const struct inv_host *inventory_host(const struct inventory *inv, const char *name);

/* Selection for fault targets. Each writes at most cap matches, in file
 * order, to out (which may be NULL when cap is 0) and returns how many
 * matches there are in all, so a caller can size its array. */
size_t inventory_by_az(const struct inventory *inv, const char *az, const struct inv_host **out,
                       size_t cap);
/* az NULL matches a rack name in any AZ. */
size_t inventory_by_rack(const struct inventory *inv, const char *az, const char *rack,
                         const struct inv_host **out, size_t cap);
/* The distinct AZ names in order of first appearance. */
size_t inventory_azs(const struct inventory *inv, const char **out, size_t cap);

/* The driver's name as written in the file ("lab", "command", "qmp"). */
const char *inventory_driver_name(enum inv_driver d);

/* ---- templates ---- */

#define INV_TEMPLATE_MAX 8192 /* bytes of one template */

/* The placeholders, as bits of inventory_template_uses's mask. */
enum inv_placeholder {
    INV_PH_NAME = 1,
    INV_PH_ADDRESS = 2,
    INV_PH_AZ = 4,
    INV_PH_RACK = 8,
    INV_PH_DATA = 16,
};

/* Expands {name} {address} {az} {rack} {data} from h, each value quoted by
 * shquote_arg (POSIX single quotes; plain words stay bare); "{{" and "}}"
 * are literal braces. With h NULL it only checks the template (out may then
 * be NULL). *out is malloc'd. NERR_INVALID (with the offset) for an unknown
 * placeholder, an unbalanced brace or a template over INV_TEMPLATE_MAX. */
int inventory_template_expand(const char *tmpl, const struct inv_host *h, char **out,
                              struct nerr *err);

/* Checks tmpl and ORs into *used the INV_PH_* bits of the placeholders it
 * names (the power drivers' refusal asks whether a template names a host). */
int inventory_template_uses(const char *tmpl, unsigned *used, struct nerr *err);

/* ---- SSH ---- */

struct ssh_host_opts;

/* The SSH options of h (net/ssh.h): its address, port, user, key and
 * known_hosts, strict host-key checking, connect_timeout_ms. The strings are
 * borrowed from h (valid until inventory_free). */
void inventory_ssh_opts(const struct inv_host *h, int connect_timeout_ms, struct ssh_host_opts *o);

#endif
