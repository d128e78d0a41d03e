/* CRC-32C: both code paths give the standard values, chain, and agree with a
 * bit-at-a-time reference on random buffers of random lengths and alignments. */
#include "lib/crc32c.h"
#include "t/tap.h"

#include <stdint.h>
#include <time.h>

/* The definition itself, one bit at a time: independent of the tables and of SSE4.2. */
static uint32_t crc_ref(uint32_t crc, const unsigned char *p, size_t len)
{
    uint32_t c = ~crc;
    for (size_t i = 0; i < len; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64: a seeded, reproducible sequence */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

static void check_vectors(const char *name, crc_fn f)
{
    unsigned char buf[32];

    is_int(f(0, "123456789", 9), 0xE3069283u, "%s: check value of \"123456789\"", name);
    is_int(f(0x1234, "", 0), 0x1234, "%s: zero length returns crc unchanged", name);
    /* RFC 3720 (iSCSI) appendix B.4 test vectors */
    memset(buf, 0, sizeof buf);
    is_int(f(0, buf, 32), 0x8A9136AAu, "%s: 32 zero bytes", name);
    memset(buf, 0xff, sizeof buf);
    is_int(f(0, buf, 32), 0x62A8AB43u, "%s: 32 0xFF bytes", name);
    for (int i = 0; i < 32; i++)
        buf[i] = (unsigned char)i;
    is_int(f(0, buf, 32), 0x46DD794Eu, "%s: bytes 0..31", name);
    for (int i = 0; i < 32; i++)
        buf[i] = (unsigned char)(31 - i);
    is_int(f(0, buf, 32), 0x113FDB5Cu, "%s: bytes 31..0", name);
    is_int(f(f(0, "1234", 4), "56789", 5), 0xE3069283u, "%s: chains across a split", name);
}

int main(void)
{
    uint64_t seed = (uint64_t)time(NULL);
    const char *env = getenv("NINES_SEED");
    if (env)
        seed = strtoull(env, NULL, 0);
    note("seed %llu (set NINES_SEED to replay)", (unsigned long long)seed);
    uint64_t s = seed;

    check_vectors("sw", crc32c_sw);
    check_vectors("dispatch", crc32c);
    int hw = crc32c_hw_available();
    if (hw)
        check_vectors("sse4.2", crc32c_hw);
    else
        skip(7, "no SSE4.2 on this CPU");

    /* Random buffers: every length 0..4096 region at every offset mod 16 gets exercised
     * in proportion; sizes chosen so the tails and the alignment prologue both vary. */
    enum { BUF = 1 << 16, ROUNDS = 3000 };
    unsigned char *big = malloc(BUF + 16);
    for (size_t i = 0; i < BUF + 16; i++)
        big[i] = (unsigned char)rng_next(&s);
    int bad_sw = 0, bad_hw = 0, bad_chain = 0;
    for (int r = 0; r < ROUNDS; r++) {
        size_t off = rng_next(&s) % 16;
        size_t len = (r % 10 == 0) ? rng_next(&s) % BUF : rng_next(&s) % 300;
        uint32_t init = (r & 1) ? (uint32_t)rng_next(&s) : 0;
        uint32_t want = crc_ref(init, big + off, len);
        if (crc32c_sw(init, big + off, len) != want)
            bad_sw++;
        if (crc32c_hw(init, big + off, len) != want || crc32c(init, big + off, len) != want)
            bad_hw++;
        size_t cut = len ? rng_next(&s) % (len + 1) : 0;
        if (crc32c(crc32c(init, big + off, cut), big + off + cut, len - cut) != want)
            bad_chain++;
    }
    is_int(bad_sw, 0, "sw matches the bitwise reference on %d random buffers", ROUNDS);
    is_int(bad_hw, 0, "hw/dispatch match the bitwise reference on %d random buffers", ROUNDS);
    is_int(bad_chain, 0, "chaining at a random split gives the same CRC");

    /* Throughput figures for the report; not asserted beyond sanity. */
    enum { REPS = 256 };
    double t0 = now_s();
    uint32_t acc = 0;
    for (int i = 0; i < REPS; i++)
        acc ^= crc32c_sw(acc, big, BUF);
    double t1 = now_s();
    for (int i = 0; i < REPS; i++)
        acc ^= crc32c(acc, big, BUF);
    double t2 = now_s();
    double mb = (double)REPS * BUF / 1e6;
    note("throughput: sw %.0f MB/s, dispatch (%s) %.0f MB/s (acc %08x)", mb / (t1 - t0),
         hw ? "sse4.2" : "sw", mb / (t2 - t1), acc);
    ok(t2 > t0, "throughput measured");
    free(big);
    return done_testing();
}
