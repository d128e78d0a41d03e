/*
 * cluster.h — `nines cluster up|down|status`: start and stop the ninesd
 * processes of a local cluster (every listener on loopback), and show the
 * state of every replication group of any running cluster by asking its
 * nodes (the NinesAdmin.Status call, docs/cluster.md).
 *
 * This header is the door of cluster/ (cluster.c, cluster_cli.c for `nines
 * cluster`, demo.c for `nines demo`). localnode.h, used inside the folder,
 * starts ninesd processes that belong to the caller; both start them through
 * lib/proc.h.
 *
 * Processes. A local node runs as `ninesd --cluster FILE --node ID`,
 * detached (its own session), with stdout and stderr appended to
 * DATA/ninesd.log and its pid in DATA/ninesd.pid (DATA is the node's data
 * directory). A pid file is trusted only after /proc/PID/cmdline shows a
 * program named ninesd with `--node ID` for this node's ID: a stale file whose
 * pid now belongs to another process is never signalled.
 *
 * Status. cluster_status_fetch asks every node of the file (local or not) in
 * parallel, each with its own timeout, and keeps what each one said;
 * cluster_merge is a pure function from those reports to the merged view that
 * `status --json` prints:
 *
 *   {"cluster":NAME,
 *    "nodes":[{"id","az","up":bool,"error":string|absent}],
 *    "partitions":[{"table","table_id","partition","group","leader","term",
 *                   "lease":bool|null,
 *                   "members":[{"node","az","role","commit","applied","lag"}]}]}
 *
 * Merge rules (the reasons are in cluster.c):
 *   - a node is up when it answered HTTP at all; its groups count only when
 *     the answer is a well-formed report naming this node and this cluster;
 *   - a group's members are the member list of its most authoritative report
 *     (the leader's with the highest term, else the highest term's);
 *   - the leader is a member that itself reports role "leader"; if several
 *     do, the highest term wins (the others are deposed and do not know yet);
 *     followers' opinions never make a leader;
 *   - term is the highest term any member reports; lease is the leader's;
 *   - a member's role is its own report's, or "down" (node not up) or
 *     "missing" (up, but it does not report the group); lag is the leader's
 *     last_index minus the member's applied, null without a leader or report;
 *   - partitions are ordered: meta first, then by table name and partition.
 *
 * Ownership: reports and merged views are jansson values owned by the caller
 * (json_decref / cluster_reports_free). A struct cluster_conf is borrowed.
 * Errors: NERR_INVALID (non-loopback address, bad arguments), NERR_IO
 * (fork, exec, files, curl), NERR_NOTFOUND (no ninesd to exec), NERR_EXISTS (node
 * already running), NERR_TIMEOUT,
 * NERR_NOMEM; always with a message naming the node.
 * Thread-safety: none; curl_global_init must have run (cluster_main does it).
 */
#ifndef NINES_CLUSTER_CLUSTER_H
#define NINES_CLUSTER_CLUSTER_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include <jansson.h>

#include "lib/err.h"
#include "proto/clusterfile.h"

#define CLUSTER_STATUS_TARGET "NinesAdmin.Status"

/* 1 when host (as in struct cluster_node: no brackets) is a loopback
 * address: 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104, or the name "localhost". */
int cluster_host_is_loopback(const char *host);

/* 0 when every node's api and peer host is loopback; NERR_INVALID naming the
 * first node that is not ("node n2 (FILE:L:C): api host 10.0.0.2 is not a
 * loopback address ..."). */
int cluster_check_local(const struct cluster_conf *c, struct nerr *err);

/* DATA/ninesd.pid and DATA/ninesd.log of node n. NERR_INVALID if too long. */
int cluster_pidfile_path(const struct cluster_node *n, char *buf, size_t cap, struct nerr *err);
int cluster_logfile_path(const struct cluster_node *n, char *buf, size_t cap, struct nerr *err);

/* 1 when process pid is alive (not a zombie) and its command line is a
 * program whose name is "ninesd" with the arguments "--node" node_id. */
int cluster_pid_is_node(pid_t pid, const char *node_id);

/* What node n's pid file says: *pid = the live ninesd of this node, or 0 when
 * there is none; *stale = 1 when a pid file exists but does not name one
 * (missing process, reused pid, garbage). NERR_IO only for unreadable files
 * other than "no such file". */
int cluster_node_pid(const struct cluster_node *n, pid_t *pid, int *stale, struct nerr *err);

/* Starts node n: creates its data directory, spawns
 * `ninesd --cluster cluster_path --node ID` in a new session with stdin from
 * /dev/null and stdout/stderr appended to its log, writes the pid file.
 * NERR_EXISTS when the pid file names a live ninesd of this node. Does not
 * wait for the node to serve. The child is not reaped here: the caller
 * either waits for it (cluster_child_exited) or exits. */
int cluster_node_start(const char *ninesd, const char *cluster_path, const struct cluster_node *n,
                       pid_t *pid, struct nerr *err);

/* For a child started by this process: 1 (and *status as a shell would
 * show it) when it has exited, else 0. */
int cluster_child_exited(pid_t pid, int *status);

/* Stops every node of c that runs per its pid file: SIGTERM to all, waits up
 * to timeout_ms for them to go, SIGKILL to the rest, waits again (bounded),
 * removes their pid files (and stale ones). One line per node to out (may be
 * NULL). Returns 0, or NERR_TIMEOUT when a process outlived SIGKILL. */
int cluster_stop(const struct cluster_conf *c, long timeout_ms, FILE *out, struct nerr *err);

/* ---- status ---- */

struct cluster_report {
    int answered;    /* the node answered HTTP (any status) */
    int unsupported; /* it answered UnknownOperationException to the call */
    json_t *status;  /* its report when it was a 200 JSON object; owned */
    char error[300]; /* why status is NULL (or what is wrong with it) */
};

/* Asks every node of c (api address) for its status, all in parallel, each
 * call bounded by timeout_ms. out has c->nnodes entries, filled in file
 * order; free with cluster_reports_free. Requests are signed when the
 * cluster file has credentials. A node that fails is not an error of the
 * call: it is described in its report. NERR_NOMEM / NERR_IO (curl set-up). */
int cluster_status_fetch(const struct cluster_conf *c, long timeout_ms, struct cluster_report *out,
                         struct nerr *err);
void cluster_reports_free(struct cluster_report *r, size_t n);

/* The merged view (above) of reports (c->nnodes entries, in file order).
 * Pure: no I/O. *out is a new reference. NERR_NOMEM only. */
int cluster_merge(const struct cluster_conf *c, const struct cluster_report *reports, json_t **out,
                  struct nerr *err);

/* 1 when merged has the meta group and every partition has a leader. */
int cluster_merged_healthy(const json_t *merged);

/* The merged view as text: nodes, then one line per group member. */
void cluster_status_print(const json_t *merged, FILE *f);

/* A DynamoDB client for node i of c (its API URL, signed when c has
 * credentials, its CA for HTTPS), or NULL (reason in err). */
struct ddb_client;
struct ddb_client *cluster_node_client(const struct cluster_conf *c, size_t i, long timeout_ms,
                                       struct nerr *err);

/* `nines cluster replace|decommission`: moves every partition replica
 * `node` holds to other nodes (to: that one; NULL: placement's choice), at
 * most `parallel` partitions at once, within timeout_s; progress lines to
 * out. 0 done, 1 failed or timed out, 2 bad arguments (replace.c). */
int cluster_replace_run(const struct cluster_conf *c, const char *node, const char *to,
                        int parallel, double timeout_s, FILE *out);

/* `nines cluster ...`; argv[0] is "cluster". 0 success, 1 failure (status:
 * some partition without a leader), 2 usage or cluster-file errors. */
int cluster_main(int argc, char **argv);

/* `nines demo store` (demo.c): the single-node walkthrough; argv[0] is
 * "store". Exit 0 when every answer was the expected one. */
int demo_store_main(int argc, char **argv);

#endif
