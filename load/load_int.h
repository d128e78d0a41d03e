/*
 * load_int.h — what the files of load/ share and nobody else uses: the
 * body-writing helpers of the generator and the etcd target's three
 * differences (its request bodies, its error typing, the options it
 * refuses). The public contract is load/load.h; nothing outside load/
 * includes this file.
 */
#ifndef NINES_LOAD_INT_H
#define NINES_LOAD_INT_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"
#include "load/load.h"

/* Decimal digits of v at p (no NUL); returns the end. */
char *load_put_u64(char *p, uint64_t v);
/* s without its NUL at p; returns the end. */
char *load_put_str(char *p, const char *s);

/* etcd v3 gateway bodies (/v3/kv/put and /v3/kv/range) for rq; cap is at
 * least load_gen_body_max(g). Returns the length. */
size_t load_etcd_body(const struct load_gen *g, const struct load_req *rq, char *buf, size_t cap);
/* The error type of a non-200 gateway answer: "grpc-<code>", else
 * "http-<status>". */
void load_etcd_error_type(const char *body, size_t len, long http, char *out, size_t cap);
/* What the etcd target cannot do, refused by name rather than ignored;
 * signing: credentials were given as options. NERR_INVALID. */
int load_etcd_opts_check(const struct load_opts *o, int signing, struct nerr *e);

#endif
