/*
 * check_impl.h — what the parts of chk_run share (not a public API).
 *
 * An index of the history built once per run: the non-failed writes sorted
 * by (key, value written, invocation time) and the ok reads sorted by (key,
 * value), so that "who wrote this value to this key" and "did anyone read
 * it" are binary searches. Borrowed by the checks for the run's duration.
 */
#ifndef NINES_CHECKERS_CHECK_IMPL_H
#define NINES_CHECKERS_CHECK_IMPL_H

#include "checkers/check.h"

struct chk_ref {
    uint32_t key, value, op;
};

struct chk_index {
    struct chk_ref *w; /* writes, deletes and cas (value = the value written) */
    size_t nw;
    struct chk_ref *r; /* ok reads with a known value */
    size_t nr;
    struct chk_ref *fw; /* failed writes, for messages */
    size_t nfw;
};

int chk_index_build(const struct history *h, struct chk_index *x);
void chk_index_free(struct chk_index *x);
/* The non-failed writers of value on key (sorted by invocation); n = 0 if none. */
const struct chk_ref *chk_writers(const struct chk_index *x, uint32_t key, uint32_t value,
                                  size_t *n);
const struct chk_ref *chk_failed_writers(const struct chk_index *x, uint32_t key,
                                         uint32_t value, size_t *n);
int chk_value_read(const struct chk_index *x, uint32_t key, uint32_t value);
/* The value an op leaves in the register (write: value, cas: new, delete: nil). */
uint32_t chk_written(const struct history_op *op);

void chk_add(struct chk_result *r, enum chk_kind kind, const char *check, uint32_t key,
             uint32_t op, uint32_t related, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/* Values and lost writes (writes.c). */
int chk_writes(const struct history *h, const struct chk_index *x, struct chk_result *r);
/* Sessions and staleness (sessions.c). */
int chk_sessions(const struct history *h, const struct chk_index *x, struct chk_result *r);
/* Percentiles of v[0..n) (sorted in place). */
void chk_dist_fill(struct chk_dist *d, int64_t *v, size_t n);

#endif
