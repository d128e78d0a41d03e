/*
 * cval.h — self-checking values: the format the traffic generator writes so
 * that a checker can tell a corrupted value from a legitimate one without
 * knowing what was written (docs/history.md, "Checksummed values").
 *
 *     value = body "-" crc
 *     body  = "v" decimal-n [ "." padding ]      padding: any bytes but '-'
 *     crc   = 8 lowercase hex digits of crc32c(key ":" body)
 *
 * The key is inside the checksum, so a value written to one key and found
 * under another (a misdirected write) fails the check as well. n is unique
 * per writer run, which makes every written value unique.
 *
 * Contract: pure functions, no allocation, thread-safe. cval_format writes at
 * most size bytes including the NUL and returns the length it needed (as
 * snprintf); padding bytes are 'x'.
 */
#ifndef NINES_CHECKERS_CVAL_H
#define NINES_CHECKERS_CVAL_H

#include <stddef.h>
#include <stdint.h>

enum cval_status {
    CVAL_PLAIN, /* does not have the shape of a checksummed value */
    CVAL_OK,    /* the checksum holds */
    CVAL_BAD,   /* the shape of a checksummed value whose checksum fails */
};

size_t cval_format(char *buf, size_t size, const char *key, size_t key_len, uint64_t n,
                   size_t padding);

enum cval_status cval_verify(const char *key, size_t key_len, const char *value, size_t len);

#endif
