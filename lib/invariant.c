#include "lib/invariant.h"

#include <stdio.h>
#include <stdlib.h>

_Noreturn void nines_assert_fail(const char *expr, const char *file, int line, const char *func)
{
    /* stderr directly, not the logger: the logger may hold the lock whose
     * invariant just broke. */
    fprintf(stderr, "nines: invariant failed: %s (%s:%d, %s)\n", expr, file, line, func);
    fflush(stderr);
    abort();
}
