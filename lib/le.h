/*
 * le.h — fixed-width little-endian integers in byte buffers, for the on-disk
 * and on-wire formats (WAL records, transport frames, applied LSNs). Byte by
 * byte, so alignment and host byte order never matter.
 */
#ifndef NINES_LE_H
#define NINES_LE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline void le_put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static inline void le_put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline void le_put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint16_t le_get16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t le_get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t le_get64(const unsigned char *p)
{
    return (uint64_t)le_get32(p) | (uint64_t)le_get32(p + 4) << 32;
}

/* n 16-bit values to and from their little-endian bytes: one copy on a
 * little-endian host (the digest records, store/digest.c, are 1,024 lanes
 * each and are read and written on the write path). */
static inline void le_get16_array(uint16_t *dst, const unsigned char *src, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(dst, src, 2 * n);
#else
    for (size_t i = 0; i < n; i++)
        dst[i] = le_get16(src + 2 * i);
#endif
}

static inline void le_put16_array(unsigned char *dst, const uint16_t *src, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(dst, src, 2 * n);
#else
    for (size_t i = 0; i < n; i++)
        le_put16(dst + 2 * i, src[i]);
#endif
}

#endif
