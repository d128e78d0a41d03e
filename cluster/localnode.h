/*
 * localnode.h — ninesd processes that belong to this process, on this
 * machine (loopback addresses): `nines demo`, benchmarks and tests start
 * one, wait until it serves, and stop it before they exit. `nines cluster
 * up` starts detached nodes instead (cluster.h: own session, pid files);
 * both go through the one spawn path, lib/proc.h.
 *
 * localnode_start writes nothing but what it is told to; the caller provides a
 * cluster file. The child's stdout and stderr go to log_path. The process is
 * stopped only by its pid (SIGTERM, then SIGKILL after a bound) — never by name.
 */
#ifndef NINES_CLUSTER_LOCALNODE_H
#define NINES_CLUSTER_LOCALNODE_H

#include <sys/types.h>

#include "lib/err.h"

struct localnode {
    pid_t pid;
    char url[128]; /* http://host:port */
};

/* The ninesd binary next to the running executable (…/bin/ninesd). */
int localnode_ninesd_path(char *buf, size_t cap, struct nerr *err);

/* A TCP port on 127.0.0.1 that was free a moment ago, chosen outside the
 * kernel's ephemeral range so that no outgoing connection (ours or a
 * node's) can take it as its local port before the node binds it. */
int localnode_free_port(int *port, struct nerr *err);

/* Starts `ninesd --cluster FILE --node ID [extra args]` and waits (up to
 * wait_ms) until GET / on api_hostport answers. extra may be NULL. */
int localnode_start(const char *ninesd, const char *cluster_file, const char *node_id,
                    const char *api_hostport, const char *log_path, char *const extra[],
                    int wait_ms, struct localnode *out, struct nerr *err);

/* SIGTERM, wait up to wait_ms for a clean exit, then SIGKILL. Returns the
 * exit status (or 128+signal); -1 when n runs nothing of ours. */
int localnode_stop(struct localnode *n, int wait_ms);

/* SIGKILL now (crash tests), and reap. */
void localnode_kill(struct localnode *n);

#endif
