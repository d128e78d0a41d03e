/*
 * common.h — what the live compare (scrub.c) and the deep scrub (deep.c)
 * both need of a cluster file: an admin client per node, a node's index,
 * the --table filter.
 */
#ifndef NINES_SCRUBBER_COMMON_H
#define NINES_SCRUBBER_COMMON_H

#include <stddef.h>
#include <stdio.h>

#include "lib/err.h"
#include "proto/clusterfile.h"
#include "proto/ddb.h"

/* A DynamoDB client of node `node`'s API: the cluster's credentials (admin
 * calls are signed when it has some), its CA when the API is HTTPS, 10 s
 * per call. NULL with *err set when it cannot be made. */
struct ddb_client *scrub_client(const struct cluster_conf *c, size_t node, struct nerr *err);
/* The index of node id in the cluster file, or -1. */
int scrub_node_index(const struct cluster_conf *c, const char *id);
/* The start of every scrub run: loads the cluster file into *conf and takes
 * the run's lock (*lock NULL: scrub_lock_default's path, written into
 * lockbuf, which must outlive the run, and *lock set to it). 0, or 2 (the
 * exit code) after printing why on stderr, with nothing left to free. */
int scrub_begin(const char *cluster_file, const char **lock, char *lockbuf, size_t cap,
                struct cluster_conf **conf, int *lockfd);
/* The end of an option parse (getopt's optind): 0, or 2 after saying on
 * stderr that an argument was left over or --cluster was not given (then
 * with usage(stderr)). */
int scrub_args_end(int argc, char **argv, const char *cluster, void (*usage)(FILE *));
/* 1 when table is wanted: no filter (n == 0), or one of tables[0..n). */
int scrub_wanted(const char *const *tables, int n, const char *table);

#endif
