#include "store/version.h"
const char *nines_version(void)
{
    return NINES_VERSION;
}
