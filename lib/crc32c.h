/*
 * crc32c.h — CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum of WAL records and segment headers (docs/wal.md).
 *
 * Contract: crc32c(0, buf, len) is the standard CRC-32C of buf (initial value
 * and final XOR 0xFFFFFFFF are applied inside), so "123456789" gives
 * 0xE3069283. The value chains: crc32c(crc32c(0, a, n), b, m) equals the CRC of
 * a followed by b. buf is only read and may have any alignment; len 0 returns
 * crc unchanged. No errors, no allocation, no state: every function is
 * thread-safe.
 *
 * crc32c() uses the SSE4.2 crc32 instruction when the CPU has it and a
 * slicing-by-8 table otherwise; both give the same value. crc32c_sw and
 * crc32c_hw expose the two paths so a test can compare them; crc32c_hw may
 * only be called when crc32c_hw_available() is non-zero.
 */
#ifndef NINES_CRC32C_H
#define NINES_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The table-driven path, on every CPU. */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);

/* Non-zero when this CPU runs the SSE4.2 path (x86-64 with SSE4.2 only). */
int crc32c_hw_available(void);

/* The SSE4.2 path; falls back to crc32c_sw where the instruction is absent. */
uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len);

#endif
