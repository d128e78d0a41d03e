/*
 * hostfault.h — what the fault kinds that act inside a host over SSH share
 * (fault/partition.c, fault/pause.c, fault/degrade.c; include it only from
 * fault/ and from their tests): the refusal of this machine for every host
 * of a call, the peer addresses a network fault is aimed at, the nftables
 * scripts of our own tables, and running one command per host in parallel.
 *
 * Peers. A network fault on a set of hosts S (a node, a rack, an AZ) acts on
 * the traffic between S and every OTHER inventory host; traffic inside S
 * and with anything outside the inventory (the controller running nines,
 * the lab's gateway) is untouched, so nines keeps reaching S over SSH.
 * Addresses are resolved here, on the controller (numeric ones as they are,
 * DNS names through getaddrinfo, every IPv4 and IPv6 answer).
 *
 * nftables. Each kind owns one table of family inet named after it
 * ("nines_fault_partition", "nines_fault_degrade"), so that healing is
 * deleting the table and never touches anyone else's rules. The table is
 * (re)created atomically: one `nft -f -` transaction that declares it,
 * deletes it and declares it again with its chains (input and/or output
 * hooks at priority filter - 10, policy accept, dropping by peer address).
 *
 * Privileges. Remote commands run through the inventory's SSH user; when
 * that user is not root they are prefixed with `sudo -n` (which must then
 * be allowed without a password). nft and tc must be installed on the host.
 *
 * Errors: those of hostcmd.h (every message names the host); NERR_INVALID
 * for a refused host or an unresolvable peer; NERR_NOMEM.
 * Ownership: strings handed out are malloc'd and the caller's.
 * Thread-safety: hf_run_jobs runs its jobs on threads of its own, joined
 * before it returns; nothing else is shared.
 */
#ifndef NINES_FAULT_HOSTFAULT_H
#define NINES_FAULT_HOSTFAULT_H

#include <stddef.h>

#include "fault/fault.h"
#include "fault/hostcmd.h"

#define HF_CMD_TIMEOUT_MS 20000   /* bound on one host's inject or heal command */
#define HF_SWEEP_TIMEOUT_MS 10000 /* bound on one host's command in heal_all */
#define HF_MAX_PARALLEL 32        /* hosts acted on at once */

/* The shell prelude of every remote command: $S is "" for root, else
 * "sudo -n". */
#define HF_SUDO "S=; [ \"$(id -u)\" = 0 ] || S='sudo -n'; "

/* hostcmd_check_target(verb) for every host of c, before anything is done
 * to any of them. */
int hf_check_call(const struct fault_env *env, const struct fault_call *c, const char *verb,
                  struct nerr *err);

/* The addresses of every inventory host that is not in c, as nft set
 * elements: *v4 "10.0.0.3, 10.0.0.4" and *v6 (each "" when none), *n the
 * number of peer hosts. NERR_INVALID when a peer's name does not resolve. */
int hf_peers(const struct inventory *inv, const struct fault_call *c, char **v4, char **v6,
             size_t *n, struct nerr *err);

/* The drop action of a rule for a loss in hundredths of a percent:
 * "drop" for 10000, "numgen random mod 10000 < N drop" below. */
void hf_drop_action(unsigned loss_bp, char *buf, size_t cap);

/* The remote command that replaces table inet TABLE by one whose `input`
 * chain (when in) drops what comes from the peers and whose `output` chain
 * (when out) drops what goes to them, with action (hf_drop_action). */
int hf_nft_install(const char *table, const char *v4, const char *v6, int in, int out,
                   const char *action, char **cmd, struct nerr *err);

/* The remote command that deletes table inet TABLE when it exists (nothing
 * to delete is success). */
int hf_nft_remove(const char *table, char **cmd, struct nerr *err);

/* One host's command for hf_run_jobs. */
struct hf_job {
    const struct inv_host *h; /* borrowed */
    const char *what;         /* for messages ("nft add table"), borrowed */
    char *cmd;                /* owned by the job (hf_jobs_free) */
    int timeout_ms;
    /* out: */
    struct hostcmd_result res;
    int rc;
    struct nerr err;
};

/* Runs every job (hostcmd_run_ok) at most HF_MAX_PARALLEL at a time and
 * returns the first failed job's error in job order (0 when all passed).
 * Every job runs, whatever the others do. */
int hf_run_jobs(struct hf_job *jobs, size_t n, struct nerr *err);
void hf_jobs_free(struct hf_job *jobs, size_t n);

/* The command make writes for each host of c (in call order), run with
 * hf_run_jobs under HF_CMD_TIMEOUT_MS each. With jobs non-NULL the jobs are
 * handed to the caller (hf_jobs_free, c->nhosts of them) to look at each
 * host's exit status; the return value is hf_run_jobs's either way. */
typedef int (*hf_make_cmd)(const struct inv_host *h, void *arg, char **cmd, struct nerr *err);
int hf_run_call(const struct fault_env *env, const struct fault_call *c, const char *what,
                hf_make_cmd make, void *arg, struct hf_job **jobs, struct nerr *err);

/* heal_all's sweep: on every inventory host that is not this machine (a
 * refused host is skipped with a note), the command make writes for it
 * (malloc'd into *cmd), in parallel; every failure is a note naming the
 * host, nothing stops the sweep. what names the action in the notes. */
void hf_sweep(const struct fault_env *env, const char *what, hf_make_cmd make, void *arg);

/* A tool a kind runs on its hosts (bit_rot's ninesd-bitrot, degrade's
 * nines-netdelay). hf_local_tool: this machine's copy of `name`, next to
 * this program or in ../bin (test binaries live in build/t), into out;
 * NERR_NOTFOUND "no NAME next to this program or in ../bin (build the
 * target NAME)". hf_upload: the local file to `remote` on h over SFTP with
 * mode, at most HF_UPLOAD_MS without progress; errors "host H (ADDR):
 * uploading WHAT: why". */
#define HF_UPLOAD_MS 30000
int hf_local_tool(const char *name, char *out, size_t cap, struct nerr *err);
int hf_upload(const struct inv_host *h, const char *local, const char *remote, unsigned mode,
              const char *what, struct nerr *err);

#endif
