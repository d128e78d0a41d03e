/*
 * invariant.h — invariant checks that stay on in every build.
 *
 * NINES_ASSERT(cond) checks an invariant a header promises. Unlike assert(3)
 * it is not compiled out by NDEBUG: the suite runs the optimised build, and
 * an invariant that only holds in a Debug build is not one. A failed check
 * logs the file, line, function and expression and aborts (a core dump for
 * the post-mortem): continuing past a broken invariant of the consensus core
 * or the log could acknowledge a write that is not durable.
 *
 * Use it for cheap checks (comparisons of fields already in cache). A check
 * that walks a structure belongs under NINES_ASSERT_EXPENSIVE, which is on
 * only in Debug builds (NDEBUG unset).
 */
#ifndef NINES_INVARIANT_H
#define NINES_INVARIANT_H

#ifdef __cplusplus
extern "C" {
#endif

_Noreturn void nines_assert_fail(const char *expr, const char *file, int line, const char *func);

#ifdef __cplusplus
}
#endif

#define NINES_ASSERT(cond)                                                                         \
    do {                                                                                           \
        if (__builtin_expect(!(cond), 0))                                                          \
            nines_assert_fail(#cond, __FILE__, __LINE__, __func__);                                \
    } while (0)

#ifdef NDEBUG
#define NINES_ASSERT_EXPENSIVE(cond) ((void)0)
#else
#define NINES_ASSERT_EXPENSIVE(cond) NINES_ASSERT(cond)
#endif

#endif
