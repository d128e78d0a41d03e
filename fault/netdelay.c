/*
 * fault/netdelay.c — nines-netdelay's command line and schedule (contract in
 * netdelay.h). Compiled into the tool and into the fault library, where the
 * tests reach it.
 */
#include "fault/netdelay.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char netdelay_usage[] =
    "usage: " NETDELAY_TOOL " --queue N --latency D [--jitter D] --max-seconds N\n"
    "                      [--max-held N] [--seed N] [--pid-file PATH] [--daemon [--log PATH]]\n"
    "Holds every packet of NFQUEUE queue N for latency +- a uniform jitter (never less\n"
    "than 0), then accepts it. D is a whole number with ns, us, ms or s (200ms); at most\n"
    "1m each. At most --max-held packets (default 4096) are held: more are accepted at\n"
    "once, and counted. Exits after --max-seconds, on SIGTERM, SIGINT or SIGHUP, releasing\n"
    "what it holds. The queue fails open: when the tool is gone or full, packets pass.\n"
    "--daemon: returns once the queue is bound (exit 0, the pid on stdout), running on in\n"
    "its own session; its output goes to --log (default /dev/null).\n";

int netdelay_parse_duration(const char *s, uint64_t *ns)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {{"ns", 1}, {"us", 1000}, {"ms", 1000000}, {"s", 1000000000}};
    uint64_t v = 0;
    const char *p = s;
    if (!s || !isdigit((unsigned char)*p))
        return -1;
    for (; isdigit((unsigned char)*p); p++) {
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(p, units[i].unit)) {
            if (v > UINT64_MAX / units[i].mult)
                return -1;
            *ns = v * units[i].mult;
            return 0;
        }
    return -1;
}

/* A whole number in [lo, hi]; 0 or -1. */
static int parse_uint(const char *s, unsigned long long lo, unsigned long long hi,
                      unsigned long long *out)
{
    char *end = NULL;
    if (!s || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int usage_err(char *msg, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int usage_err(char *msg, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (cap)
        vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
    return NETDELAY_USAGE;
}

int netdelay_parse_args(int argc, char **argv, struct netdelay_opts *o, char *msg, size_t cap)
{
    int have_queue = 0, have_latency = 0, have_max = 0;
    *o = (struct netdelay_opts){.max_held = NETDELAY_DEFAULT_MAX_HELD};
    if (cap)
        msg[0] = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return NETDELAY_HELP;
        if (!strcmp(a, "--daemon")) {
            o->daemon = 1;
            continue;
        }
        static const char *const with_value[] = {"--queue",    "--latency", "--jitter",
                                                 "--max-held", "--seed",    "--max-seconds",
                                                 "--pid-file", "--log",     NULL};
        int known = 0;
        for (size_t k = 0; with_value[k]; k++)
            known |= !strcmp(a, with_value[k]);
        if (!known)
            return usage_err(msg, cap, "unknown option '%s'", a);
        if (i + 1 >= argc)
            return usage_err(msg, cap, "%s needs a value", a);
        const char *v = argv[++i];
        unsigned long long n = 0;
        if (!strcmp(a, "--queue")) {
            if (parse_uint(v, 0, 65535, &n))
                return usage_err(msg, cap, "%s: expected a queue number 0..65535, got '%s'", a, v);
            o->queue = (unsigned)n, have_queue = 1;
        } else if (!strcmp(a, "--latency") || !strcmp(a, "--jitter")) {
            uint64_t d = 0;
            if (netdelay_parse_duration(v, &d))
                return usage_err(msg, cap,
                                 "%s: expected a duration such as 200ms (ns, us, ms or s), got "
                                 "'%s'",
                                 a, v);
            if (d > NETDELAY_MAX_DELAY_NS)
                return usage_err(msg, cap, "%s: at most 60s, got '%s'", a, v);
            if (a[2] == 'l')
                o->latency_ns = d, have_latency = 1;
            else
                o->jitter_ns = d;
        } else if (!strcmp(a, "--max-held")) {
            if (parse_uint(v, 1, NETDELAY_MAX_HELD_LIMIT, &n))
                return usage_err(msg, cap, "%s: expected 1..1000000 packets, got '%s'", a, v);
            o->max_held = (size_t)n;
        } else if (!strcmp(a, "--max-seconds")) {
            if (parse_uint(v, 1, NETDELAY_MAX_SECONDS_LIMIT, &n))
                return usage_err(msg, cap, "%s: expected 1..604800 seconds, got '%s'", a, v);
            o->max_seconds = (unsigned)n, have_max = 1;
        } else if (!strcmp(a, "--seed")) {
            if (parse_uint(v, 0, UINT64_MAX, &n))
                return usage_err(msg, cap, "%s: expected a whole number, got '%s'", a, v);
            o->seed = n, o->seeded = 1;
        } else if (!*v) {
            return usage_err(msg, cap, "%s: expected a path, got '%s'", a, v);
        } else if (!strcmp(a, "--pid-file")) {
            o->pid_file = v;
        } else {
            o->log_file = v;
        }
    }
    if (!have_queue)
        return usage_err(msg, cap, "--queue is required (the NFQUEUE number)");
    if (!have_latency)
        return usage_err(msg, cap, "--latency is required");
    if (!have_max)
        return usage_err(msg, cap, "--max-seconds is required (the delayer never runs unbounded)");
    if (o->log_file && !o->daemon)
        return usage_err(msg, cap,
                         "--log goes with --daemon (in the foreground, the output is stderr)");
    return NETDELAY_RUN;
}

/* ---- the schedule ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int before(const struct netdelay_pkt *a, const struct netdelay_pkt *b)
{
    return a->release_ns < b->release_ns || (a->release_ns == b->release_ns && a->seq < b->seq);
}

int netdelay_sched_init(struct netdelay_sched *s, size_t max_held, uint64_t latency_ns,
                        uint64_t jitter_ns, uint64_t seed)
{
    *s = (struct netdelay_sched){.cap = max_held ? max_held : 1,
                                 .latency_ns = latency_ns,
                                 .jitter_ns = jitter_ns,
                                 .rng = seed};
    s->heap = calloc(s->cap, sizeof *s->heap);
    return s->heap ? 0 : -1;
}

void netdelay_sched_free(struct netdelay_sched *s)
{
    free(s->heap);
    s->heap = NULL;
    s->n = s->cap = 0;
}

/* latency + uniform [-jitter, +jitter], at least 0. */
static uint64_t draw_delay(struct netdelay_sched *s)
{
    if (!s->jitter_ns)
        return s->latency_ns;
    uint64_t span = 2 * s->jitter_ns + 1; /* jitter <= 1 min: no overflow */
    uint64_t off = (uint64_t)(((unsigned __int128)splitmix64(&s->rng) * span) >> 64);
    if (s->latency_ns + off < s->jitter_ns)
        return 0;
    return s->latency_ns + off - s->jitter_ns;
}

int netdelay_sched_add(struct netdelay_sched *s, uint32_t id, uint64_t now_ns, uint64_t *release_ns)
{
    if (s->n >= s->cap) {
        s->st.over++;
        return NETDELAY_OVER;
    }
    uint64_t d = draw_delay(s);
    struct netdelay_pkt p = {
        .release_ns = now_ns > UINT64_MAX - 1 - d ? UINT64_MAX - 1 : now_ns + d,
        .seq = s->next_seq++,
        .id = id,
    };
    size_t i = s->n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!before(&p, &s->heap[up]))
            break;
        s->heap[i] = s->heap[up];
        i = up;
    }
    s->heap[i] = p;
    s->st.held++;
    if (s->n > s->st.peak)
        s->st.peak = s->n;
    if (release_ns)
        *release_ns = p.release_ns;
    return NETDELAY_HELD;
}

uint64_t netdelay_sched_next(const struct netdelay_sched *s)
{
    return s->n ? s->heap[0].release_ns : UINT64_MAX;
}

int netdelay_sched_pop_due(struct netdelay_sched *s, uint64_t now_ns, struct netdelay_pkt *out)
{
    if (!s->n || (now_ns != UINT64_MAX && s->heap[0].release_ns > now_ns))
        return 0;
    *out = s->heap[0];
    struct netdelay_pkt last = s->heap[--s->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->n)
            break;
        if (c + 1 < s->n && before(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!before(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->n)
        s->heap[i] = last;
    s->st.released++;
    return 1;
}
