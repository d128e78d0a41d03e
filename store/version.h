/* version.h — the store's version string, reported by ninesd --version and DescribeEndpoints. */
#ifndef NINES_VERSION_H
#define NINES_VERSION_H
#define NINES_VERSION "0.1.0"
const char *nines_version(void);
#endif
