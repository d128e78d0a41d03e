/*
 * netdelay.h — the kernel-free core of nines-netdelay (fault/netdelay_main.c),
 * the host-side delayer of the degrade fault kind (fault/degrade.c) on a
 * kernel without netem: its command line, and the schedule of the packets it
 * holds.
 *
 * What the tool does with it: the kind's iptables rule sends the packets a
 * degraded host sends to its peers to an NFQUEUE queue; the tool reads each
 * packet's id as it arrives (netdelay_sched_add at the monotonic time of
 * arrival), and gives the kernel NF_ACCEPT for it when its release time has
 * come (netdelay_sched_pop_due). The release time is arrival + latency +
 * a uniform draw in [-jitter, +jitter], never before arrival (a negative
 * sum is 0). Packets leave in release order, so jitter reorders them, as
 * netem's jitter does; two packets with the same release time leave in
 * arrival order.
 *
 * Bounds: at most max_held packets are held; a packet arriving when that
 * many are held is not held (netdelay_sched_add says NETDELAY_OVER and
 * counts it) and the tool accepts it at once. The tool's lifetime
 * (max_seconds) is the caller's to keep.
 *
 * No clock, no randomness of its own: time comes in as arguments and the
 * jitter comes from a splitmix64 generator seeded by the caller, so a test
 * replays a schedule exactly. No global state; no allocation after
 * netdelay_sched_init.
 *
 * Errors: netdelay_parse_args returns NETDELAY_USAGE with a one-line
 * message in msg for a bad command line; netdelay_sched_init returns -1
 * when out of memory. Ownership: the strings in struct netdelay_opts point
 * into argv (borrowed for as long as argv lives). Thread-safety: none; one
 * thread uses a schedule.
 */
#ifndef NINES_FAULT_NETDELAY_H
#define NINES_FAULT_NETDELAY_H

#include <stddef.h>
#include <stdint.h>

#define NETDELAY_TOOL "nines-netdelay"
#define NETDELAY_MAX_DELAY_NS (60ull * 1000000000ull) /* latency and jitter: at most 1 min */
#define NETDELAY_DEFAULT_MAX_HELD 4096
#define NETDELAY_MAX_HELD_LIMIT 1000000
#define NETDELAY_MAX_SECONDS_LIMIT (7 * 86400) /* --max-seconds: at most a week */

/* netdelay_parse_args's results. */
enum { NETDELAY_RUN = 0, NETDELAY_HELP = 1, NETDELAY_USAGE = 2 };

struct netdelay_opts {
    unsigned queue;       /* --queue N: the NFQUEUE number, 0..65535 (required) */
    uint64_t latency_ns;  /* --latency D (required) */
    uint64_t jitter_ns;   /* --jitter D (default 0) */
    size_t max_held;      /* --max-held N, 1..NETDELAY_MAX_HELD_LIMIT */
    unsigned max_seconds; /* --max-seconds N, 1..NETDELAY_MAX_SECONDS_LIMIT (required) */
    uint64_t seed;        /* --seed N; seeded == 0: the caller picks one */
    int seeded;
    const char *pid_file; /* --pid-file PATH, or NULL */
    const char *log_file; /* --log PATH (daemon's stdout and stderr), or NULL */
    int daemon;           /* --daemon */
};

/* The usage text, for --help and after a usage error. */
extern const char netdelay_usage[];

/* Reads argv[1..argc-1] into *o. NETDELAY_RUN, NETDELAY_HELP (--help), or
 * NETDELAY_USAGE with "--latency: expected a duration such as 200ms, got
 * 'x'"-like text in msg. A duration is a whole number followed by ns, us,
 * ms or s. */
int netdelay_parse_args(int argc, char **argv, struct netdelay_opts *o, char *msg, size_t cap);

/* "200ms", "1500us" -> ns; 0 on success, -1 when s is not one. */
int netdelay_parse_duration(const char *s, uint64_t *ns);

/* One held packet. */
struct netdelay_pkt {
    uint64_t release_ns;
    uint64_t seq; /* arrival order, for ties */
    uint32_t id;  /* the kernel's packet id */
};

struct netdelay_stats {
    uint64_t held;     /* packets ever held */
    uint64_t released; /* popped (due or at the end) */
    uint64_t over;     /* not held: max_held were held already */
    size_t peak;       /* most held at once */
};

struct netdelay_sched {
    struct netdelay_pkt *heap; /* min-heap on (release_ns, seq) */
    size_t n, cap;             /* cap == max_held */
    uint64_t latency_ns, jitter_ns;
    uint64_t rng; /* splitmix64 state */
    uint64_t next_seq;
    struct netdelay_stats st;
};

enum { NETDELAY_HELD = 0, NETDELAY_OVER = 1 };

/* A schedule holding at most max_held (>= 1) packets. 0, or -1 (no memory). */
int netdelay_sched_init(struct netdelay_sched *s, size_t max_held, uint64_t latency_ns,
                        uint64_t jitter_ns, uint64_t seed);
void netdelay_sched_free(struct netdelay_sched *s);

/* Packet id arrived at now_ns: NETDELAY_HELD (its release time in
 * *release_ns when not NULL), or NETDELAY_OVER (max_held are held: the
 * caller accepts it at once; counted in st.over). */
int netdelay_sched_add(struct netdelay_sched *s, uint32_t id, uint64_t now_ns,
                       uint64_t *release_ns);

/* The earliest release time held, UINT64_MAX when none. */
uint64_t netdelay_sched_next(const struct netdelay_sched *s);

/* 1 and the packet whose release time is the earliest and <= now_ns, or 0
 * when none is due. UINT64_MAX as now_ns pops whatever is held (the end). */
int netdelay_sched_pop_due(struct netdelay_sched *s, uint64_t now_ns, struct netdelay_pkt *out);

#endif
