/*
 * err.h — the error values every nines module returns.
 *
 * Contract: a function that can fail returns int: 0 (NERR_OK) on success or
 * one of the negative codes below. Results travel through out-parameters.
 * A caller that wants a human-readable reason passes a struct nerr, which the
 * callee fills with the code and a message (nerr_set); a NULL struct nerr is
 * always allowed and simply discards the message.
 *
 * The codes are a closed set shared by all components (as canonical/raft's
 * err.h), so a code can cross a module boundary and still be named.
 */
#ifndef NINES_ERR_H
#define NINES_ERR_H

#include <stddef.h>

enum nerr_code {
    NERR_OK = 0,
    NERR_NOMEM = -1,       /* allocation failed */
    NERR_IO = -2,          /* a system call failed; errno text in msg */
    NERR_CORRUPT = -3,     /* on-disk or on-wire data failed a check */
    NERR_INVALID = -4,     /* the caller's input is malformed */
    NERR_NOTFOUND = -5,    /* the named thing does not exist */
    NERR_EXISTS = -6,      /* the named thing already exists */
    NERR_CONDITION = -7,   /* a conditional write's condition was false */
    NERR_TIMEOUT = -8,     /* a deadline passed */
    NERR_AUTH = -9,        /* authentication failed */
    NERR_LIMIT = -10,      /* a size or count limit was exceeded */
    NERR_INTERNAL = -11,   /* a bug or an impossible state */
    NERR_BUSY = -12,       /* try again later */
    NERR_CLOSED = -13,     /* the object is shutting down or closed */
    NERR_PARSE = -14,      /* text could not be parsed (line/col in msg) */
    NERR_UNSUPPORTED = -15 /* valid but not implemented */
};

#define NERR_MSG_MAX 512

struct nerr {
    int code;
    char msg[NERR_MSG_MAX];
};

/* The symbolic name of a code ("NERR_IO"); never NULL. */
const char *nerr_name(int code);

/* Fills e (if non-NULL) with code and a printf-formatted message. Returns
 * code, so that `return nerr_set(e, NERR_IO, "...")` reads naturally. */
int nerr_set(struct nerr *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like nerr_set, appending ": strerror(errno_value)". */
int nerr_sys(struct nerr *e, int errno_value, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Resets e to NERR_OK with an empty message. */
void nerr_clear(struct nerr *e);

#endif
