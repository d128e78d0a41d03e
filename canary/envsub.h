/*
 * envsub.h — ${VAR} and ${VAR:-default} in config strings, and the
 * NINES_ENDPOINTS list format, so one canary or rules file runs anywhere.
 *
 * envsub_expand: "$$" is a literal "$"; a "$" not followed by "{" or "$" is
 * kept as is. An unset (or empty) variable without a default is an error
 * naming it. getenv is the injected lookup (tests pass their own); NULL means
 * the process environment.
 *
 * envsub_endpoints parses "az1=http://127.0.0.1:8101,az2=http://...": each
 * item is AZ=URL, optionally NAME@AZ=URL to name the endpoint; without a name
 * the endpoint is called by its URL's host:port.
 *
 * Ownership: every output string is malloc'd and owned by the caller.
 * Errors: NERR_INVALID (message says what), NERR_NOMEM. Thread-safety: pure
 * apart from the lookup.
 */
#ifndef NINES_CANARY_ENVSUB_H
#define NINES_CANARY_ENVSUB_H

#include <stddef.h>

#include "lib/err.h"

typedef const char *(*envsub_lookup_fn)(const char *name);

int envsub_expand(const char *in, envsub_lookup_fn lookup, char **out, struct nerr *err);

struct envsub_endpoint {
    char *name, *az, *url;
};

/* *out is an array of *n entries; free with envsub_endpoints_free. */
int envsub_endpoints(const char *spec, struct envsub_endpoint **out, size_t *n, struct nerr *err);
void envsub_endpoints_free(struct envsub_endpoint *e, size_t n);

#endif
