/*
 * report.h — a checker result for people and programs.
 *
 *   chk_report_text: the one-screen summary `nines check` prints (verdict,
 *       the first operation that cannot be linearized, the operations
 *       concurrent with it, the states that were possible, the other checks'
 *       counts, and the unknown keys with their windows);
 *   chk_report_json: the full result as one JSON document (docs/checkers.md);
 *   chk_report_html: a self-contained page (inline CSS and SVG, no scripts,
 *       no external resources) with a timeline of the offending key: one row
 *       per process, operations as bars, the impossible one marked. At most
 *       CHK_HTML_MAX_OPS operations around the culprit are drawn however big
 *       the history, so the page stays small.
 *
 * Contract: h and r as returned by chk_run; the functions only read them.
 * Text goes to the FILE given (borrowed, not closed). The JSON and HTML
 * writers take a path and create or truncate that file.
 *
 * Errors: NERR_IO (with the path and errno text), NERR_NOMEM.
 *
 * Thread-safety: none needed; they share nothing.
 */
#ifndef NINES_CHECKERS_REPORT_H
#define NINES_CHECKERS_REPORT_H

#include <stdio.h>

#include "checkers/check.h"

#define CHK_HTML_MAX_OPS 200
#define CHK_TEXT_MAX_CONCURRENT 8

void chk_report_text(FILE *f, const struct history *h, const struct chk_result *r);
int chk_report_json(const char *path, const struct history *h, const struct chk_result *r,
                    struct nerr *e);
int chk_report_html(const char *path, const struct history *h, const struct chk_result *r,
                    struct nerr *e);

#endif
