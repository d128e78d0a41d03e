/*
 * test_netdelay.c — nines-netdelay without a kernel: its command line
 * (fault/netdelay.h: netdelay_parse_args, and the built binary's exit
 * status and message for a bad one) and its schedule (hold and release
 * order, jitter within its bounds and never below zero, the bound on held
 * packets, replay from a seed). The queue itself is tested against a lab
 * in t/gameday/faults_delay.c.
 */
#include "fault/netdelay.h"
#include "t/tap.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define MS 1000000ull

static int parse(const char *line, struct netdelay_opts *o, char *msg, size_t cap)
{
    static char buf[1024]; /* o's strings point into it until the next call */
    char *argv[32];
    int argc = 0;
    snprintf(buf, sizeof buf, "nines-netdelay %s", line);
    for (char *t = strtok(buf, " "); t && argc < 31; t = strtok(NULL, " "))
        argv[argc++] = t;
    argv[argc] = NULL;
    return netdelay_parse_args(argc, argv, o, msg, cap);
}

static void test_args(void)
{
    struct netdelay_opts o;
    char msg[256];

    is_int(
        parse("--queue 2533 --latency 200ms --jitter 20ms --max-seconds 90", &o, msg, sizeof msg),
        NETDELAY_RUN, "a full command line parses (%s)", msg);
    ok(o.queue == 2533 && o.latency_ns == 200 * MS && o.jitter_ns == 20 * MS &&
           o.max_seconds == 90 && o.max_held == NETDELAY_DEFAULT_MAX_HELD && !o.daemon &&
           !o.seeded && !o.pid_file,
       "queue, latency, jitter, max-seconds; max-held defaults to %d", NETDELAY_DEFAULT_MAX_HELD);
    is_int(parse("--queue 0 --latency 1500us --max-seconds 1 --max-held 3 --seed 7 --daemon "
                 "--log /tmp/x.log --pid-file /tmp/x.pid",
                 &o, msg, sizeof msg),
           NETDELAY_RUN, "every option (%s)", msg);
    ok(o.latency_ns == 1500000 && o.jitter_ns == 0 && o.max_held == 3 && o.seeded && o.seed == 7 &&
           o.daemon && o.log_file && !strcmp(o.log_file, "/tmp/x.log") && o.pid_file &&
           !strcmp(o.pid_file, "/tmp/x.pid"),
       "their values");
    is_int(parse("--help", &o, msg, sizeof msg), NETDELAY_HELP, "--help");

    static const struct {
        const char *line, *msg;
    } bad[] = {
        {"--latency 200ms --max-seconds 9", "--queue is required (the NFQUEUE number)"},
        {"--queue 1 --max-seconds 9", "--latency is required"},
        {"--queue 1 --latency 1ms", "--max-seconds is required (the delayer never runs unbounded)"},
        {"--queue 65536 --latency 1ms --max-seconds 9",
         "--queue: expected a queue number 0..65535, got '65536'"},
        {"--queue 1 --latency 200 --max-seconds 9",
         "--latency: expected a duration such as 200ms (ns, us, ms or s), got '200'"},
        {"--queue 1 --latency -5ms --max-seconds 9",
         "--latency: expected a duration such as 200ms (ns, us, ms or s), got '-5ms'"},
        {"--queue 1 --latency 61s --max-seconds 9", "--latency: at most 60s, got '61s'"},
        {"--queue 1 --latency 1ms --jitter 2m --max-seconds 9",
         "--jitter: expected a duration such as 200ms (ns, us, ms or s), got '2m'"},
        {"--queue 1 --latency 1ms --max-seconds 0",
         "--max-seconds: expected 1..604800 seconds, got '0'"},
        {"--queue 1 --latency 1ms --max-seconds 9 --max-held 0",
         "--max-held: expected 1..1000000 packets, got '0'"},
        {"--queue 1 --latency 1ms --max-seconds 9 --max-held 12x",
         "--max-held: expected 1..1000000 packets, got '12x'"},
        {"--queue 1 --latency 1ms --max-seconds 9 --bogus", "unknown option '--bogus'"},
        {"--queue 1 --latency 1ms --max-seconds", "--max-seconds needs a value"},
        {"--queue 1 --latency 1ms --max-seconds 9 --log /tmp/l",
         "--log goes with --daemon (in the foreground, the output is stderr)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = parse(bad[i].line, &o, msg, sizeof msg);
        ok(rc == NETDELAY_USAGE && !strcmp(msg, bad[i].msg), "refused: %s -> %s", bad[i].line, msg);
        if (strcmp(msg, bad[i].msg))
            diag("expected: %s", bad[i].msg);
    }

    uint64_t ns = 0;
    ok(!netdelay_parse_duration("0ns", &ns) && ns == 0, "0ns");
    ok(!netdelay_parse_duration("3s", &ns) && ns == 3000000000ull, "3s");
    ok(netdelay_parse_duration("3 s", &ns) && netdelay_parse_duration("", &ns) &&
           netdelay_parse_duration("ms", &ns) &&
           netdelay_parse_duration("99999999999999999999s", &ns),
       "'3 s', '', 'ms' and an overflow are not durations");
}

/* The built tool: exit 2 and the reason on stderr for a bad command line,
 * exit 0 and the usage for --help. */
static void test_binary(void)
{
    const char *build = getenv("NINES_BUILD");
    char tool[1024], cmd[2048], out[4096] = "";
    snprintf(tool, sizeof tool, "%s/bin/nines-netdelay", build ? build : "build");
    FILE *f = fopen(tool, "r");
    if (!f) {
        skip(3, "nines-netdelay not built");
        return;
    }
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s --queue 1 --latency fast --max-seconds 5 2>&1", tool);
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = 0;
    int st = p ? pclose(p) : -1;
    ok(WIFEXITED(st) && WEXITSTATUS(st) == 2, "a bad command line: exit status 2");
    const char *want = "nines-netdelay: --latency: expected a duration such as 200ms (ns, us, "
                       "ms or s), got 'fast'\nusage: nines-netdelay ";
    ok(!strncmp(out, want, strlen(want)), "the reason, then the usage: %.120s", out);
    snprintf(cmd, sizeof cmd, "%s --help >/dev/null 2>&1", tool);
    st = system(cmd);
    ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "--help: exit status 0");
}

static void test_schedule(void)
{
    struct netdelay_sched s;
    struct netdelay_pkt p;
    uint64_t rel = 0;

    /* No jitter: FIFO, each held exactly latency. */
    if (netdelay_sched_init(&s, 16, 100 * MS, 0, 1))
        bail_out("no memory");
    is_int(netdelay_sched_next(&s) == UINT64_MAX, 1, "empty: nothing to release");
    for (uint32_t id = 1; id <= 5; id++) {
        is_int(netdelay_sched_add(&s, id, id * 10 * MS, &rel), NETDELAY_HELD, "packet %u held", id);
        ok(rel == id * 10 * MS + 100 * MS, "released at arrival + 100 ms");
    }
    ok(netdelay_sched_next(&s) == 110 * MS, "the next release is the first packet's");
    is_int(netdelay_sched_pop_due(&s, 110 * MS - 1, &p), 0, "nothing is due 1 ns early");
    int order_ok = 1;
    for (uint32_t id = 1; id <= 5; id++)
        order_ok &= netdelay_sched_pop_due(&s, 200 * MS, &p) == 1 && p.id == id;
    ok(order_ok, "released in arrival order");
    is_int(netdelay_sched_pop_due(&s, UINT64_MAX, &p), 0, "and nothing is left");
    netdelay_sched_free(&s);

    /* Jitter: each delay in [latency - jitter, latency + jitter], released
     * in non-decreasing time, equal times in arrival order. */
    const int N = 2000;
    if (netdelay_sched_init(&s, (size_t)N, 10 * MS, 5 * MS, 42))
        bail_out("no memory");
    uint64_t lo = UINT64_MAX, hi = 0, sum = 0;
    int in_bounds = 1;
    for (int i = 0; i < N; i++) {
        uint64_t now = (uint64_t)i * 1000; /* one packet per microsecond */
        netdelay_sched_add(&s, (uint32_t)i + 1, now, &rel);
        uint64_t d = rel - now;
        in_bounds &= d >= 5 * MS && d <= 15 * MS;
        lo = d < lo ? d : lo, hi = d > hi ? d : hi, sum += d;
    }
    ok(in_bounds, "every delay within 10 ms +- 5 ms");
    ok(lo < 5 * MS + 100000 && hi > 15 * MS - 100000,
       "and the draws cover the range (%.3f..%.3f ms)", lo / 1e6, hi / 1e6);
    cmp_ok((long)(sum / N / 1000), ">=", 9800, "mean delay %.3f ms ~ 10 ms", sum / (double)N / 1e6);
    cmp_ok((long)(sum / N / 1000), "<=", 10200, "(within 0.2 ms)");
    is_int(s.st.peak, N, "all %d held at once", N);
    uint64_t last = 0, last_seq = 0;
    int sorted = 1, popped = 0, reordered = 0;
    uint32_t prev_id = 0;
    while (netdelay_sched_pop_due(&s, UINT64_MAX, &p)) {
        sorted &=
            p.release_ns > last || (p.release_ns == last && (popped == 0 || p.seq > last_seq));
        reordered += p.id < prev_id;
        last = p.release_ns, last_seq = p.seq, prev_id = p.id, popped++;
    }
    ok(sorted && popped == N, "released in time order (%d packets)", popped);
    cmp_ok(reordered, ">", 0, "jitter reorders packets, as netem's does (%d inversions)",
           reordered);
    netdelay_sched_free(&s);

    /* Jitter larger than latency: never before arrival. */
    if (netdelay_sched_init(&s, 1000, 1 * MS, 10 * MS, 3))
        bail_out("no memory");
    int zero = 0, neg = 0;
    for (int i = 0; i < 1000; i++) {
        netdelay_sched_add(&s, (uint32_t)i, 50 * MS, &rel);
        neg += rel < 50 * MS;
        zero += rel == 50 * MS;
    }
    ok(!neg && zero > 300, "latency 1 ms, jitter 10 ms: no delay below 0 (%d of 1000 are 0)", zero);
    netdelay_sched_free(&s);

    /* The bound. */
    if (netdelay_sched_init(&s, 3, 100 * MS, 0, 1))
        bail_out("no memory");
    for (uint32_t id = 1; id <= 3; id++)
        netdelay_sched_add(&s, id, 0, NULL);
    is_int(netdelay_sched_add(&s, 4, 0, NULL), NETDELAY_OVER, "the 4th packet over max-held 3");
    is_int(netdelay_sched_add(&s, 5, 0, NULL), NETDELAY_OVER, "and the 5th");
    ok(s.st.over == 2 && s.n == 3, "counted, not held");
    ok(netdelay_sched_pop_due(&s, 100 * MS, &p) && p.id == 1, "one released");
    is_int(netdelay_sched_add(&s, 6, 100 * MS, &rel), NETDELAY_HELD, "then one more is held");
    ok(rel == 200 * MS, "for its full latency");
    netdelay_sched_free(&s);

    /* A seed replays the schedule. */
    struct netdelay_sched a, b;
    netdelay_sched_init(&a, 100, 50 * MS, 20 * MS, 99);
    netdelay_sched_init(&b, 100, 50 * MS, 20 * MS, 99);
    int same = 1;
    for (uint32_t i = 0; i < 100; i++) {
        uint64_t ra, rb;
        netdelay_sched_add(&a, i, i, &ra);
        netdelay_sched_add(&b, i, i, &rb);
        same &= ra == rb;
    }
    ok(same, "the same seed gives the same delays");
    netdelay_sched_free(&a);
    netdelay_sched_free(&b);
}

int main(void)
{
    test_args();
    test_binary();
    test_schedule();
    return done_testing();
}
