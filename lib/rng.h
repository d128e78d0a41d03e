/*
 * rng.h — the one seeded pseudo-random generator of nines (splitmix64).
 *
 * Contract: a struct rng holds its whole state in one word; the same seed
 * gives the same sequence on every machine, so a seed printed by a run
 * replays it (load generation, fault target choice, election timeouts in the
 * simulation). Not for anything secret: keys and nonces come from OpenSSL.
 * Not thread-safe: each thread owns its own struct rng.
 *
 * rng_mix64() is splitmix64's finaliser on its own, a cheap well-mixed hash
 * of one 64-bit word (used to spread keys and seeds, never as a checksum).
 */
#ifndef NINES_RNG_H
#define NINES_RNG_H

#include <stdint.h>

struct rng {
    uint64_t s;
};

static inline uint64_t rng_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static inline void rng_seed(struct rng *r, uint64_t seed)
{
    r->s = seed;
}

static inline uint64_t rng_next(struct rng *r)
{
    return rng_mix64(r->s += UINT64_C(0x9e3779b97f4a7c15));
}

/* Uniform in [0, n); n > 0. Lemire's multiply-shift: no modulo bias worth
 * measuring for n far below 2^64. */
static inline uint64_t rng_below(struct rng *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

/* Uniform in [0, 1). */
static inline double rng_unit(struct rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

#endif
