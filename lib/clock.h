/*
 * clock.h — the one monotonic clock every nines module reads.
 *
 * Contract: clock_mono_ns() and clock_mono_ms() read CLOCK_MONOTONIC, which
 * never jumps with wall-clock changes, so they are the only clock deadlines,
 * timeouts and latencies may use. clock_wall_ms() reads CLOCK_REALTIME and is
 * for timestamps people read (logs, reports, history records), never for a
 * deadline. All three are thread-safe and cannot fail on Linux.
 *
 * Code whose time a test must control (the consensus core, the alarm engine)
 * takes "now" as a parameter instead of calling these.
 */
#ifndef NINES_CLOCK_H
#define NINES_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int64_t clock_mono_ms(void)
{
    return (int64_t)(clock_mono_ns() / 1000000u);
}

static inline int64_t clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The monotonic time ms from now, as a timespec (for pthread_cond_timedwait
 * on a condition variable whose clock is CLOCK_MONOTONIC). */
static inline struct timespec clock_mono_after_ms(int64_t ms)
{
    uint64_t ns = clock_mono_ns() + (uint64_t)(ms < 0 ? 0 : ms) * 1000000u;
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u)};
    return ts;
}

#endif
