/*
 * shquote.h — quoting for POSIX sh command lines sent to remote hosts.
 *
 * Purpose: SSH carries a single command string that the remote user's login
 * shell parses. To pass a vector of arguments so that each reaches the
 * remote program as exactly one argv element, every argument is wrapped in
 * single quotes, inside which POSIX sh (XCU 2.2.2) gives no character a
 * special meaning; an embedded ' is written as '\'' (close, escaped quote,
 * reopen). Arguments made only of characters that no shell treats specially
 * ([A-Za-z0-9_@%+:,./-]; not "=", which would make a first word an assignment) are left bare so that logged command lines stay
 * readable; the empty string becomes ''.
 *
 * Caller obligations: the remote login shell must be a POSIX sh (sh, bash,
 * dash, ksh, zsh). csh/tcsh treat '!' and newlines inside quotes differently
 * and are not supported. C strings cannot carry NUL bytes, so neither can an
 * argument.
 *
 * Ownership: every *out string is malloc'd and owned by the caller (free()).
 * Errors: NERR_NOMEM, NERR_INVALID (NULL or empty argv), NERR_LIMIT (the
 * result would exceed SHQUOTE_MAX bytes). On error *out is NULL.
 * Thread-safety: pure functions, safe from any thread.
 */
#ifndef NINES_NET_SHQUOTE_H
#define NINES_NET_SHQUOTE_H

#include <stddef.h>

#include "lib/err.h"

/* An upper bound for one command line; Linux's ARG_MAX-like limits on the
 * remote side are lower anyway, so anything larger is a caller bug. */
#define SHQUOTE_MAX ((size_t)64 << 20)

/* Quotes one argument. */
int shquote_arg(const char *arg, char **out, struct nerr *e);

/* Quotes each of argv[0..] (NULL-terminated, at least one element) and joins
 * them with single spaces. */
int shquote_join(const char *const argv[], char **out, struct nerr *e);

#endif
