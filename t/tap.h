/*
 * tap.h — a small Test Anything Protocol library for nines' C tests.
 *
 *   plan(n) or no plan and done_testing() at the end;
 *   ok(cond, fmt, ...)             one test point;
 *   is(got, expected, fmt, ...)    strings (NULL-safe), prints both on failure;
 *   is_int(got, expected, ...)     integers;
 *   cmp_ok(a, op, b, fmt, ...)     integers with "==", "!=", "<", "<=", ">", ">=";
 *   diag(fmt, ...)  note(fmt, ...) comments on stderr / stdout;
 *   skip(n, why)                   n skipped test points;
 *   done_testing()                 prints the plan if none was given and
 *                                  returns the process exit code (0 when all passed).
 *
 * Header-only; a test file is one process, so the counters are file-static.
 * Output goes to stdout, unbuffered, so a crash keeps what was printed.
 */
#ifndef NINES_TAP_H
#define NINES_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_planned = -1;
static int tap_run = 0;
static int tap_failed = 0;

static inline void plan(int n)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    tap_planned = n;
    printf("1..%d\n", n);
}

static inline void tap_vreport(int pass, const char *file, int line, const char *fmt, va_list ap)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    tap_run++;
    if (!pass)
        tap_failed++;
    printf("%s %d - ", pass ? "ok" : "not ok", tap_run);
    vprintf(fmt, ap);
    printf("\n");
    if (!pass)
        printf("#   Failed test at %s line %d.\n", file, line);
}

static inline int tap_ok(int pass, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline int tap_ok(int pass, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tap_vreport(pass, file, line, fmt, ap);
    va_end(ap);
    return pass;
}

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

static inline int tap_is(const char *got, const char *exp, const char *file, int line,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static inline int tap_is(const char *got, const char *exp, const char *file, int line,
                         const char *fmt, ...)
{
    int pass = (got == NULL && exp == NULL) || (got && exp && strcmp(got, exp) == 0);
    va_list ap;
    va_start(ap, fmt);
    tap_vreport(pass, file, line, fmt, ap);
    va_end(ap);
    if (!pass) {
        printf("#          got: %s%s%s\n", got ? "'" : "", got ? got : "NULL", got ? "'" : "");
        printf("#     expected: %s%s%s\n", exp ? "'" : "", exp ? exp : "NULL", exp ? "'" : "");
    }
    return pass;
}

#define is(got, exp, ...) tap_is((got), (exp), __FILE__, __LINE__, __VA_ARGS__)

static inline int tap_cmp(long long a, const char *op, long long b, const char *file, int line,
                          const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static inline int tap_cmp(long long a, const char *op, long long b, const char *file, int line,
                          const char *fmt, ...)
{
    int pass;
    if (!strcmp(op, "=="))
        pass = a == b;
    else if (!strcmp(op, "!="))
        pass = a != b;
    else if (!strcmp(op, "<"))
        pass = a < b;
    else if (!strcmp(op, "<="))
        pass = a <= b;
    else if (!strcmp(op, ">"))
        pass = a > b;
    else if (!strcmp(op, ">="))
        pass = a >= b;
    else {
        printf("# cmp_ok: unknown operator '%s'\n", op);
        pass = 0;
    }
    va_list ap;
    va_start(ap, fmt);
    tap_vreport(pass, file, line, fmt, ap);
    va_end(ap);
    if (!pass)
        printf("#     %lld\n#         %s\n#     %lld\n", a, op, b);
    return pass;
}

#define cmp_ok(a, op, b, ...) tap_cmp((long long)(a), (op), (long long)(b), __FILE__, __LINE__, __VA_ARGS__)
#define is_int(got, exp, ...) tap_cmp((long long)(got), "==", (long long)(exp), __FILE__, __LINE__, __VA_ARGS__)

static inline void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void diag(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fprintf(stderr, "# ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static inline void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("# ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

static inline void skip(int n, const char *why)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    for (int i = 0; i < n; i++)
        printf("ok %d # skip %s\n", ++tap_run, why);
}

/* Stops the whole test file: "Bail out!" tells prove to stop. */
static inline _Noreturn void bail_out(const char *why)
{
    printf("Bail out! %s\n", why);
    exit(255);
}

static inline int done_testing(void)
{
    if (tap_planned < 0)
        printf("1..%d\n", tap_run);
    else if (tap_planned != tap_run)
        diag("planned %d tests but ran %d", tap_planned, tap_run);
    if (tap_failed)
        diag("failed %d of %d tests", tap_failed, tap_run);
    return tap_failed ? (tap_failed > 254 ? 254 : tap_failed)
                      : (tap_planned >= 0 && tap_planned != tap_run ? 255 : 0);
}

#endif
