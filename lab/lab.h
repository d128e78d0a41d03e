/*
 * lab.h — the lab: game-day hosts made of Linux network namespaces on this
 * machine, each with its own address and its own OpenSSH sshd, described by
 * an inventory (fault/inventory.h) whose power driver is `lab`
 * (fault/power.h). The same playbooks run against a lab and against real
 * machines; only the inventory differs.
 *
 * This header is the door of lab/ (lab.c, lab_cli.c for `nines lab`). The
 * power-loss file system each host's data sits on has its own door,
 * lab/labfs.h (labfs.c is the FUSE daemon, labfs_ctl.c talks to it from
 * outside, labfs_cli.c is `nines labfs`).
 *
 * What lab_up makes, for a lab with the random short id ID (6 hex digits,
 * chosen so that no namespace or link of that id exists yet):
 *
 *   bridge  nlIDbr in the calling namespace, up, holding the gateway address
 *           NET.1/24, so this machine reaches every host;
 *   host i  (i = 1..N, named hI) the network namespace nlab-ID-hI, with `lo`
 *           up and `eth0` (a veth whose other end, nlIDvI, is a port of the
 *           bridge) holding NET.(1+i)/24. NO default route: the only route
 *           is the subnet's own.
 *   DIR/    lab.state (what was made, see below), keys/id_ed25519{,.pub}
 *           (the one client key), known_hosts (every host key),
 *           inventory.yaml, and hosts/hI/ holding sshd_config, the ed25519
 *           host key, `boot`, boot.d/, data/, backing/, log/ and run/.
 *   labfs   (unless spec->no_labfs) host i's data/ is a labfs mount
 *           (lab/labfs.h) over hosts/hI/backing/, served by a detached
 *           daemon (log: hosts/hI/log/labfs.log). The inventory names it as
 *           the lab power mapping's `fs`, so the lab power driver cuts power
 *           the way hardware does: what was not fsync'd is gone after a
 *           power-off (fault/power.h). Power on (and so lab_up) mounts it.
 *
 * Host i sits in AZ "az(1 + (i-1) % A)" and, within its AZ, in rack
 * "r(1 + ((i-1) / A) % R)": round robin over AZs, then over racks.
 *
 * `boot` is the host's power-on: the lab driver runs it inside the namespace.
 * It moves into a UTS namespace of its own named after the host (so
 * `hostname` answers hI; the machine's own name is never changed: the script
 * renames only a namespace that differs from the one it started in), starts
 * sshd, then starts every executable of boot.d/ in the background (setsid,
 * output to log/NAME.log, pid to run/NAME.pid). That is how a deployed ninesd
 * comes back after a power cycle. Power off (power.h) kills every process of
 * the namespace, by pid; nothing else is touched.
 *
 * The state file. Before each resource is created, a line naming it is
 * appended to DIR/lab.state and synced; when creating it fails, a line
 * cancelling it follows. lab_down reads that file, so it cleans up after a
 * complete lab, after an `up` that failed (lab_up calls it itself) and after
 * one that crashed, and running it twice is harmless. lab_down acts only on
 * names that carry the lab's own id prefix, so a damaged state file cannot
 * make it delete anything else.
 *
 * Caller obligations: root (CAP_NET_ADMIN, CAP_SYS_ADMIN, signalling
 * processes), iproute2's `ip`, OpenSSH's sshd and ssh-keygen, util-linux's
 * unshare and setsid. DIR's absolute path may hold only [A-Za-z0-9._/+-]
 * (it is written into sshd_config, shell scripts and YAML). Calls that
 * change one lab must not run concurrently on it: up and down take an
 * exclusive lock on DIR/lab.state and fail with NERR_BUSY when it is held.
 *
 * Errors: NERR_INVALID (bad spec, unsafe DIR, not root, missing tools, a
 * subnet that overlaps one in use), NERR_EXISTS (DIR is not empty or is
 * already a lab), NERR_NOTFOUND (no lab at DIR, unknown host), NERR_BUSY,
 * NERR_TIMEOUT (an sshd did not answer in time), NERR_IO (a command or
 * system call failed; its stderr is in the message), NERR_AUTH (SSH),
 * NERR_CLOSED (up was cancelled), NERR_CORRUPT (an unreadable state file),
 * NERR_NOMEM.
 *
 * Logging: lab_up logs one line (log_info) naming the lab's id, subnet and
 * bridge before it makes anything, so a failed or killed up can be traced.
 *
 * Ownership: spec and env strings are borrowed for the call. struct lab
 * (lab_open) owns its strings and inventory until lab_close.
 * Thread-safety: none of these share state; a struct lab may be read by
 * several threads, but lab_exec's SSH session is its own per call.
 */
#ifndef NINES_LAB_LAB_H
#define NINES_LAB_LAB_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "fault/inventory.h"
#include "fault/power.h"
#include "net/ssh.h"
#include "lib/err.h"

#define LAB_MAX_HOSTS 250
#define LAB_ID_LEN 6
#define LAB_SSH_WAIT_MS 30000    /* default bound on waiting for the sshds */
#define LAB_NETNS_PREFIX "nlab-" /* + ID + "-" + host name */
#define LAB_LINK_PREFIX "nl"     /* + ID + "br" | "v" + i | "p" + i */
#define LAB_NAME_MAX 64

/* What the lab runs; tests replace sshd to provoke failures. */
struct lab_env {
    struct power_env power; /* proc, /run/netns, ip, kill: see power.h */
    const char *sshd;       /* "/usr/sbin/sshd" */
    const char *ssh_keygen; /* "ssh-keygen" */
    int require_root;       /* 1: refuse unless euid 0 (the default) */
};

/* The real machine; honours NINES_LAB_SSHD (the sshd binary, for tests). */
void lab_env_default(struct lab_env *env);

struct lab_spec {
    const char *dir;    /* created; its parent must exist */
    int hosts;          /* 1..LAB_MAX_HOSTS */
    int azs;            /* 1..hosts */
    int racks;          /* racks per AZ, 1..hosts/azs; 0 means 1 */
    const char *subnet; /* "A.B.C.0/24" in 10/8, 172.16/12 or 192.168/16, or
                           NULL: a free /24 in 10/8 */
    int ssh_wait_ms;    /* bound on waiting for every sshd; 0 = LAB_SSH_WAIT_MS */
    /* When not NULL and it becomes non-zero (a signal handler sets it), up
     * stops at its next step, removes what it made and fails with
     * NERR_CLOSED. */
    const volatile sig_atomic_t *cancel;
    int no_labfs; /* 1: plain data directories, kill-only power-off */
};

/* Checks the numbers of spec (not the machine). */
int lab_spec_check(const struct lab_spec *spec, struct nerr *err);

/* Makes the lab and waits until every host's sshd accepts an authenticated
 * session. On failure everything made so far is removed again (DIR too when
 * this call created it); *id_out (may be NULL; LAB_ID_LEN + 1 bytes) gets
 * the lab's id on success. */
int lab_up(const struct lab_env *env, const struct lab_spec *spec, char *id_out, struct nerr *err);

/* Kills every process of every host namespace (power off), unmounts every
 * host's labfs (crashed first: what it held is thrown away with the lab;
 * lazily when a reference lingers) and so ends its daemon, deletes the
 * namespaces, veths and bridge, and removes what up made under DIR (all of
 * DIR when up created it). Nothing under DIR is removed while a data
 * directory is still a mount point. A DIR that does not exist is already
 * down (0). On any failure the state file is kept, so that down can be run
 * again. */
int lab_down(const struct lab_env *env, const char *dir, struct nerr *err);

/* --- using a lab ---------------------------------------------------------- */

struct lab {
    char *dir; /* absolute */
    char id[LAB_ID_LEN + 1];
    char subnet[32]; /* "A.B.C.0/24" */
    char bridge[16];
    int complete;          /* up finished */
    struct inventory *inv; /* DIR/inventory.yaml */
};

/* Reads DIR/lab.state and DIR/inventory.yaml. NERR_NOTFOUND when DIR is
 * not a lab; NERR_INVALID when up never finished (run down). */
int lab_open(const char *dir, struct lab **out, struct nerr *err);
void lab_close(struct lab *lab);

/* Retries an authenticated SSH session to h until one succeeds or
 * timeout_ms passes (NERR_TIMEOUT with the last error). */
int lab_wait_ssh(const struct inv_host *h, int timeout_ms, struct nerr *err);

struct lab_host_status {
    const struct inv_host *host; /* borrowed from lab->inv */
    enum power_state power;
    char power_detail[NERR_MSG_MAX]; /* "2 processes", or why the state is unknown */
    int ssh_ok;
    char ssh_error[NERR_MSG_MAX];
    enum power_fs_state fs; /* POWER_FS_NONE without labfs */
    char fs_detail[NERR_MSG_MAX];
};

/* Fills out[0..n_hosts) (cap must be >= lab->inv->n_hosts). Each SSH probe
 * is bounded by probe_ms. Per-host failures go into the entries. */
int lab_status(const struct lab_env *env, const struct lab *lab, struct lab_host_status *out,
               size_t cap, int probe_ms, struct nerr *err);

/* Powers host off (with mode, see power.h) or on through fault/power.h.
 * Powering on a host that is on is refused (NERR_EXISTS); after power on,
 * waits up to wait_ms (0: don't wait) for its sshd. */
int lab_power(const struct lab_env *env, const struct lab *lab, const char *host, int on,
              enum power_off_mode mode, int wait_ms, struct nerr *err);

/* Runs argv (quoted with shquote) on host over SSH within timeout_ms. The
 * caller frees res with ssh_result_free, even on error. */
int lab_exec(const struct lab *lab, const char *host, const char *const argv[], int timeout_ms,
             struct ssh_result *res, struct nerr *err);

/* --- pure parts (exposed for tests) ---------------------------------------- */

/* "A.B.C.0/24" -> network in host byte order. Only /24s in the private
 * ranges, with the host part zero. */
int lab_subnet_parse(const char *s, uint32_t *net, struct nerr *err);
/* Writes "A.B.C.D" (prefix 0: no suffix) or "A.B.C.D/P". */
void lab_addr_format(uint32_t addr, int prefix, char *buf, size_t cap);

/* Prefix networks in use (host byte order; masks are prefix masks). */
struct lab_net {
    uint32_t addr, mask;
};
/* 1 when the /24 at net overlaps one of used[0..n), with the index in *which. */
int lab_subnet_overlaps(uint32_t net, const struct lab_net *used, size_t n, size_t *which);
/* The first /24 of 10/8, scanning from 10.(seed>>8 & 255).(seed & 255).0 and
 * wrapping, that overlaps nothing in used. NERR_EXISTS when none is free. */
int lab_subnet_pick(const struct lab_net *used, size_t n, uint32_t seed, uint32_t *net,
                    struct nerr *err);

/* Host i (0-based): its address NET.(2+i), its AZ and rack numbers (1-based). */
uint32_t lab_host_addr(uint32_t net, int i);
void lab_placement(int i, int azs, int racks, int *az, int *rack);

/* Names of host i (0-based) in lab id; each buffer LAB_NAME_MAX bytes. Link
 * names are at most 15 characters (IFNAMSIZ - 1). */
struct lab_names {
    char host[LAB_NAME_MAX];  /* "h1" */
    char netns[LAB_NAME_MAX]; /* "nlab-ID-h1" */
    char veth[16];            /* "nlIDv1", the bridge's end */
    char peer[16];            /* "nlIDp1", renamed eth0 inside the namespace */
};
int lab_names_for(const char *id, int i, struct lab_names *out);
void lab_bridge_name(const char *id, char out[16]);

/* The state file. Each resource line is "+KIND NAME [EXTRA]" or "-KIND NAME"
 * (creation failed: not ours); kinds: bridge, netns (EXTRA = the host's
 * address), veth, path (a top-level entry of DIR), labfs (NAME = a host whose
 * DIR/hosts/NAME/data may be a labfs mount). Header lines: "nines-lab 1",
 * "id ID", "made-dir 0|1", "subnet NET/24"; "complete" ends a finished up. */
enum lab_res_kind { LAB_RES_BRIDGE = 1, LAB_RES_NETNS, LAB_RES_VETH, LAB_RES_PATH, LAB_RES_LABFS };
struct lab_res {
    enum lab_res_kind kind;
    char name[LAB_NAME_MAX];
    char extra[64];
    int cancelled;
};
struct lab_state {
    char id[LAB_ID_LEN + 1];
    int made_dir;
    char subnet[32];
    int complete;
    struct lab_res *res; /* in creation order */
    size_t n_res;
};
/* Parses text; resources that are not named after the lab's id (or, for
 * path, that are not one plain component) are refused (NERR_CORRUPT). A
 * truncated last line (a crash while appending) is ignored. */
int lab_state_parse(const char *text, size_t len, struct lab_state *st, struct nerr *err);
void lab_state_free(struct lab_state *st);

#endif
