/*
 * faults_delay.c — the degrade fault kind's latency, measured: round trips
 * between the hosts of a real lab (t/gameday/faults_delay.t brings one up
 * and hands its inventory over in NINES_FDELAY_INV) before, during and after
 * a `degrade: {latency: ...}`, whichever mechanism the kernel allows
 * (fault/degrade.c: netem, or NFQUEUE and nines-netdelay where there is no
 * netem; `latency_via: nfqueue` forces the second, so it is tested on a
 * kernel with netem too). What is observed: TCP connect times to the
 * hosts' sshd measured inside the namespaces (a connect takes one round
 * trip, so it grows by latency when either end is degraded), UDP datagrams
 * counted, the delayer's process in /proc, its pid file and log, and the
 * iptables-legacy rules, nft table and qdiscs left in a host's netns.
 *
 * Without NINES_FDELAY_INV only the playbook keys are tested (parse and
 * plan text: no lab needed).
 */
#include "fault/fault.h"
#include "fault/hostcmd.h"
#include "lib/clock.h"
#include "t/gameday/fk_test.h"
#include "t/tap.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern const struct fault_kind fault_degrade;

#define NSAMPLES 8
#define TOOL "nines-netdelay"

static void changed_cb(void *arg, const struct inv_host *h)
{
    (void)arg;
    ok(0, "host_changed is not called by degrade (%s)", h->name);
}

/* A live process (not a zombie). */
static int alive(long pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    const char *s = strrchr(slurp(path), ')');
    return s && s[1] == ' ' && s[2] && s[2] != 'Z';
}

static const char *cmdline(long pid)
{
    static char buf[4096];
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    for (size_t i = 0; i < n; i++)
        if (!buf[i])
            buf[i] = ' ';
    buf[n] = 0;
    return buf;
}

/* On from: NSAMPLES TCP connects to addr:22, each timed (ms) by perl,
 * inside from's netns. Returns how many succeeded, their times in ms[]
 * sorted ascending. */
static int connect_times(const struct inv_host *from, const char *addr, double *ms)
{
    char cmd[1024];
    struct hostcmd_result r;
    struct nerr e = {0};
    snprintf(cmd, sizeof cmd,
             "perl -MTime::HiRes=time -MIO::Socket::INET -e 'for (1..%d) { my $t = time; "
             "my $s = IO::Socket::INET->new(PeerAddr => \"%s\", PeerPort => 22, Proto => "
             "\"tcp\", Timeout => 5); printf \"%%.3f\\n\", $s ? (time - $t) * 1000 : -1; "
             "close $s if $s; select(undef, undef, undef, 0.05) }'",
             NSAMPLES, addr);
    int n = 0;
    if (hostcmd_run(from, cmd, 60000, &r, &e)) {
        diag("connect times on %s: %s", from->name, e.msg);
        hostcmd_result_free(&r);
        return 0;
    }
    for (char *l = r.out; l && *l && n < NSAMPLES;) {
        double v = atof(l);
        if (v >= 0)
            ms[n++] = v;
        l = strchr(l, '\n');
        l = l ? l + 1 : NULL;
    }
    hostcmd_result_free(&r);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && ms[j - 1] > ms[j]; j--) {
            double t = ms[j];
            ms[j] = ms[j - 1];
            ms[j - 1] = t;
        }
    return n;
}

struct rtt {
    int n;
    double min, med, max;
};

static struct rtt measure(const struct inv_host *from, const struct inv_host *to)
{
    double ms[NSAMPLES];
    struct rtt r = {0};
    r.n = connect_times(from, to->address, ms);
    if (r.n) {
        r.min = ms[0], r.med = ms[r.n / 2], r.max = ms[r.n - 1];
        note("%s -> %s: %d connects, min %.1f ms, median %.1f ms, max %.1f ms", from->name,
             to->name, r.n, r.min, r.med, r.max);
    }
    return r;
}

/* What `cmd` prints on h (trimmed to the buffer), or "" when it failed. */
static const char *on_host(const struct inv_host *h, const char *cmd)
{
    static char buf[8192];
    struct hostcmd_result r;
    struct nerr e = {0};
    buf[0] = 0;
    if (!hostcmd_run(h, cmd, 20000, &r, &e))
        snprintf(buf, sizeof buf, "%s", r.out);
    else
        diag("%s: %s", h->name, e.msg);
    hostcmd_result_free(&r);
    return buf;
}

/* Is there anything of degrade's in h's netns: the chain, the table, a
 * qdisc? */
static int has_chain(const struct inv_host *h)
{
    return strstr(on_host(h, "grep -qx mangle /proc/net/ip_tables_names && "
                             "iptables-legacy -w 5 -t mangle -S 2>&1; true"),
                  "NINES_DEGRADE") != NULL;
}

static int has_table(const struct inv_host *h)
{
    return strstr(on_host(h, "nft list table inet nines_fault_degrade >/dev/null 2>&1 && echo "
                             "yes || echo no"),
                  "yes") != NULL;
}

static int has_qdisc(const struct inv_host *h)
{
    return strstr(on_host(h, "tc qdisc show"), "htb 9e5:") != NULL;
}

/* The delayer's pid from h's pid file, 0 when none. */
static long delayer_pid(const struct inv_host *h)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/" TOOL ".pid", h->data);
    return atol(slurp(path));
}

static int wait_gone(long pid, int ms)
{
    for (int i = 0; i < ms / 20 && alive(pid); i++)
        sleep_ms(20);
    return !alive(pid);
}

/* How many of 200 UDP datagrams sent from `from` reach `to` (a perl
 * receiver on `to` counts for 4 s after its first). -1: probe failed. */
static char tmpdir[] = "/tmp/nines-fdelay-XXXXXX";
static int udp_port = 42000;

static int udp_count(const struct inv_host *from, const struct inv_host *to)
{
    char out[512], cmd[2048];
    struct hostcmd_result r;
    struct nerr e = {0};
    int port = udp_port++, n = -1;
    snprintf(out, sizeof out, "%s/count-%d.txt", tmpdir, port);
    snprintf(cmd, sizeof cmd,
             "setsid -f perl -MIO::Socket::INET -e '$|=1; my $s=IO::Socket::INET->new("
             "LocalAddr=>$ARGV[0],LocalPort=>$ARGV[1],Proto=>\"udp\") or die; print "
             "\"ready\\n\"; my $n=0; eval{local $SIG{ALRM}=sub{die \"t\\n\"}; alarm 6; "
             "while(1){my $m; $s->recv($m,64); $n++}}; print \"count $n\\n\"' %s %d >%s "
             "2>&1 </dev/null",
             to->address, port, out);
    if (hostcmd_run_ok(to, "udp counter", cmd, 10000, NULL, &e)) {
        diag("%s", e.msg);
        return -1;
    }
    for (int i = 0; i < 150 && !strstr(slurp(out), "ready"); i++)
        sleep_ms(20);
    snprintf(cmd, sizeof cmd,
             "bash -c 'for i in $(seq 1 200); do echo x >/dev/udp/%s/%d; done' 2>/dev/null; true",
             to->address, port);
    if (!hostcmd_run(from, cmd, 10000, &r, &e))
        for (int i = 0; i < 500 && !strstr(slurp(out), "count"); i++)
            sleep_ms(20);
    hostcmd_result_free(&r);
    const char *c = strstr(slurp(out), "count ");
    n = c ? atoi(c + 6) : -1;
    unlink(out);
    return n;
}

/* ---- the tests ---- */

static struct rtt base12, base21, base23;

static void test_baseline(const struct fault_env *env)
{
    const struct inventory *inv = env->inv;
    const struct inv_host *h1 = &inv->hosts[host_index(inv, "h1")],
                          *h2 = &inv->hosts[host_index(inv, "h2")],
                          *h3 = &inv->hosts[host_index(inv, "h3")];
    struct nerr e;
    /* Nothing of a previous run in the way. */
    fault_degrade.heal_all(NULL, env);
    (void)e;
    base12 = measure(h1, h2);
    base21 = measure(h2, h1);
    base23 = measure(h2, h3);
    ok(base12.n == NSAMPLES && base21.n == NSAMPLES && base23.n == NSAMPLES,
       "baseline: every connect between the hosts works");
    cmp_ok((long)base12.med, "<", 100, "baseline h1 -> h2: median %.1f ms", base12.med);
}

/* The NFQUEUE mechanism (forced, or where there is no netem). */
static void test_nfqueue(const struct fault_env *env, int forced)
{
    const struct inventory *inv = env->inv;
    int i1 = host_index(inv, "h1");
    const struct inv_host *h1 = &inv->hosts[i1], *h2 = &inv->hosts[host_index(inv, "h2")],
                          *h3 = &inv->hosts[host_index(inv, "h3")];
    struct nerr e;
    char path[1024];

    /* 1. latency alone: never less than configured. */
    void *p = params_of(&fault_degrade,
                        forced ? "{latency: 200ms, latency_via: nfqueue}" : "{latency: 200ms}");
    notes[0] = 0;
    ok(act(&fault_degrade, env, 0, (size_t)i1, p, &e) == 0, "degrade h1, latency 200ms (%s)",
       e.msg);
    ok(strstr(notes, "degrade h1: latency by " TOOL " (pid "), "noted: %s", notes);
    long pid = delayer_pid(h1);
    ok(pid > 1 && alive(pid) && strstr(cmdline(pid), TOOL),
       "the delayer runs, its pid in DATA/" TOOL ".pid (%ld: %s)", pid, cmdline(pid));
    ok(pid > 1 && strstr(cmdline(pid), "--max-seconds 3720 "),
       "a step without duration: --max-seconds is an hour + the inject timeout + 60 s");
    const char *rules = on_host(h1, "iptables-legacy -w 5 -t mangle -S");
    ok(strstr(rules, "-A OUTPUT -j NINES_DEGRADE") && strstr(rules, "-A NINES_DEGRADE -d ") &&
           strstr(rules, "-j NFQUEUE --queue-num 2533 --queue-bypass"),
       "h1's netns: the chain NINES_DEGRADE, jumped to from mangle OUTPUT, queues to the peers "
       "with --queue-bypass");
    ok(!strstr(rules, h1->address), "and not to h1's own address");
    struct rtt d12 = measure(h1, h2), d21 = measure(h2, h1), d23 = measure(h2, h3);
    ok(d12.n == NSAMPLES && d21.n == NSAMPLES, "every connect works while degraded");
    cmp_ok((long)(d12.min * 1000), ">=", 200000,
           "h1 -> h2: the fastest of %d connects took %.1f ms >= 200 ms (baseline %.1f)", d12.n,
           d12.min, base12.min);
    cmp_ok((long)d12.med, "<", 200 + 150, "and the median %.1f ms < 200 + 150 ms", d12.med);
    cmp_ok((long)(d21.min * 1000), ">=", 200000,
           "h2 -> h1 (h1's answer is delayed): fastest %.1f ms >= 200 ms", d21.min);
    cmp_ok((long)d23.med, "<", 100, "h2 -> h3, neither degraded: median %.1f ms, as before (%.1f)",
           d23.med, base23.med);

    ok(act(&fault_degrade, env, 1, (size_t)i1, NULL, &e) == 0, "restore h1 (%s)", e.msg);
    ok(wait_gone(pid, 1000), "the delayer (pid %ld) is gone", pid);
    snprintf(path, sizeof path, "%s/" TOOL ".log", h1->data);
    ok(strstr(slurp(path), "stopping (SIGTERM)"), "it stopped cleanly on SIGTERM (its log)");
    snprintf(path, sizeof path, "%s/" TOOL ".pid", h1->data);
    ok(access(path, F_OK) != 0, "its pid file is gone");
    is_int(has_chain(h1), 0, "no NINES_DEGRADE chain is left in h1's netns");
    struct rtt a12 = measure(h1, h2);
    cmp_ok((long)a12.med, "<", (long)base12.med + 50,
           "after restore h1 -> h2: median %.1f ms, near the baseline %.1f ms", a12.med,
           base12.med);
    fault_degrade.free_params(p);

    /* 2. jitter: within latency +- jitter, and it varies. */
    p = params_of(&fault_degrade,
                  forced ? "{latency: 200ms, jitter: 40ms, duration: 5s, latency_via: nfqueue}"
                         : "{latency: 200ms, jitter: 40ms, duration: 5s}");
    ok(act(&fault_degrade, env, 0, (size_t)i1, p, &e) == 0,
       "degrade h1, latency 200ms, jitter 40ms (%s)", e.msg);
    pid = delayer_pid(h1);
    ok(pid > 1 && strstr(cmdline(pid), "--max-seconds 125 "),
       "duration 5s: --max-seconds is 5 s + the inject timeout + 60 s (%s)", cmdline(pid));
    struct rtt j12 = measure(h1, h2);
    cmp_ok((long)(j12.min * 1000), ">=", 160000, "fastest %.1f ms >= 200 - 40 ms", j12.min);
    cmp_ok((long)j12.max, "<", 240 + 150, "slowest %.1f ms < 200 + 40 + 150 ms", j12.max);
    cmp_ok((long)((j12.max - j12.min) * 1000), ">=", 5000,
           "the delay varies: %.1f ms between the fastest and the slowest", j12.max - j12.min);
    ok(act(&fault_degrade, env, 1, (size_t)i1, NULL, &e) == 0, "restore h1 (%s)", e.msg);
    ok(wait_gone(pid, 1000), "the delayer is gone");
    fault_degrade.free_params(p);

    /* 3. latency and loss together: both hold. */
    p = params_of(&fault_degrade, forced ? "{latency: 100ms, loss: 50%, latency_via: nfqueue}"
                                         : "{latency: 100ms, loss: 50%}");
    ok(act(&fault_degrade, env, 0, (size_t)i1, p, &e) == 0,
       "degrade h1, latency 100ms and loss 50%% (%s)", e.msg);
    ok(has_table(h1) == 1 && has_chain(h1) == 1, "h1 holds the loss table and the chain");
    int n = udp_count(h1, h2);
    ok(n > 40 && n < 160, "loss 50%% with latency: h2 got %d of 200 datagrams (40 < n < 160)", n);
    pid = delayer_pid(h1);
    ok(act(&fault_degrade, env, 1, (size_t)i1, NULL, &e) == 0, "restore h1 (%s)", e.msg);
    ok(wait_gone(pid, 1000) && has_table(h1) == 0 && has_chain(h1) == 0,
       "the delayer, the table and the chain are gone");
    fault_degrade.free_params(p);

    /* 4. the orchestrator dies while h1 is degraded: a fresh heal_all
     * (what the fault journal runs on the next start) finds the delayer by
     * its pid file. (Forced whatever the kernel: latency_via is tested.) */
    p = params_of(&fault_degrade, "{latency: 200ms, latency_via: nfqueue}");
    ok(act(&fault_degrade, env, 0, (size_t)i1, p, &e) == 0, "degrade h1 again (%s)", e.msg);
    pid = delayer_pid(h1);
    notes[0] = 0;
    fault_degrade.heal_all(NULL, env);
    ok(wait_gone(pid, 1000), "after the crash, heal_all alone stops the delayer (pid %ld)", pid);
    is_int(has_chain(h1), 0, "and removes the chain");
    is(notes, "", "heal_all noted nothing wrong");
    struct rtt c12 = measure(h1, h2);
    cmp_ok((long)c12.med, "<", (long)base12.med + 50, "h1 -> h2: median %.1f ms again", c12.med);
    fault_degrade.free_params(p);

    /* 5. fail-open: a delayer that dies leaves the links working, not cut;
     * heal then clears a pid file that names no delayer. */
    p = params_of(&fault_degrade,
                  forced ? "{latency: 200ms, latency_via: nfqueue}" : "{latency: 200ms}");
    ok(act(&fault_degrade, env, 0, (size_t)i1, p, &e) == 0, "degrade h1 again (%s)", e.msg);
    pid = delayer_pid(h1);
    /* Our test started it, through the kind: ours to kill, by its pid. */
    ok(pid > 1 && strstr(cmdline(pid), TOOL) && kill((pid_t)pid, SIGKILL) == 0 &&
           wait_gone(pid, 2000),
       "the delayer killed (SIGKILL)");
    struct rtt k12 = measure(h1, h2);
    ok(k12.n == NSAMPLES && k12.med < base12.med + 50,
       "the rules still there, with no delayer packets pass at once (--queue-bypass): %d "
       "connects, median %.1f ms",
       k12.n, k12.med);
    ok(act(&fault_degrade, env, 1, (size_t)i1, NULL, &e) == 0,
       "restore h1 with a stale pid file (%s)", e.msg);
    snprintf(path, sizeof path, "%s/" TOOL ".pid", h1->data);
    ok(access(path, F_OK) != 0 && has_chain(h1) == 0, "the pid file and the chain are gone");
    fault_degrade.free_params(p);

    /* 6. a pid file naming another process: never signalled. */
    pid_t other = fork();
    if (other == 0) {
        execlp("sleep", "sleep", "30", (char *)NULL);
        _exit(127);
    }
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "%d\n", (int)other);
        fclose(f);
    }
    sleep_ms(100);
    ok(act(&fault_degrade, env, 1, (size_t)i1, NULL, &e) == 0,
       "restore with a pid file naming `sleep` (%s)", e.msg);
    ok(alive(other), "that process was not signalled");
    kill(other, SIGKILL);
    waitpid(other, NULL, 0);
    unlink(path);

    /* 7. an inject failing half-way leaves the host as it was: the queue is
     * taken (by a delayer of this test, with a pid file of its own), so the
     * kind's delayer cannot bind it. */
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s/" TOOL " --queue 2533 --latency 1ms --max-seconds 60 --daemon --pid-file "
             "%s/squatter.pid",
             h1->data, tmpdir);
    const char *out = on_host(h1, cmd);
    long squatter = (out = strstr(out, "pid ")) ? atol(out + 4) : 0;
    ok(squatter > 1, "a delayer of ours holds queue 2533 on h1 (pid %ld)", squatter);
    p = params_of(&fault_degrade, forced ? "{latency: 200ms, loss: 10%, latency_via: nfqueue}"
                                         : "{latency: 200ms, loss: 10%}");
    int rc = act(&fault_degrade, env, 0, (size_t)i1, p, &e);
    ok(rc != 0 && strstr(e.msg, "host h1") && strstr(e.msg, "cannot bind NFQUEUE queue 2533"),
       "the inject fails, saying why: %s", e.msg);
    ok(has_chain(h1) == 0 && has_table(h1) == 0 && delayer_pid(h1) == 0,
       "and leaves nothing behind: no chain, no loss table, no pid file");
    ok(squatter > 1 && alive(squatter), "the other delayer was not touched");
    if (squatter > 1 && strstr(cmdline(squatter), TOOL))
        kill((pid_t)squatter, SIGTERM);
    ok(squatter > 1 && wait_gone(squatter, 2000), "and stops on SIGTERM");
    fault_degrade.free_params(p);

    /* 8. the delayer bounds its own life. */
    snprintf(cmd, sizeof cmd,
             "%s/" TOOL " --queue 2534 --latency 1ms --max-seconds 1 --daemon --log %s/short.log "
             "--pid-file %s/short.pid",
             h1->data, tmpdir, tmpdir);
    out = on_host(h1, cmd);
    long spid = 0;
    const char *pp = strstr(out, "pid ");
    if (pp)
        spid = atol(pp + 4);
    ok(spid > 1, "a delayer started with --max-seconds 1: %s", out);
    ok(spid > 1 && wait_gone(spid, 4000), "it exits by itself");
    snprintf(path, sizeof path, "%s/short.log", tmpdir);
    ok(strstr(slurp(path), "stopping (--max-seconds reached)"), "saying why: %s", slurp(path));
    unlink(path);
}

/* latency_via: netem on a kernel without netem: a clear error, nothing
 * left; with netem, the delay is measured as for nfqueue. */
static int test_netem(const struct fault_env *env)
{
    const struct inventory *inv = env->inv;
    int i1 = host_index(inv, "h1");
    const struct inv_host *h1 = &inv->hosts[i1], *h2 = &inv->hosts[host_index(inv, "h2")];
    struct nerr e;
    void *p = params_of(&fault_degrade, "{latency: 200ms, loss: 10%, latency_via: netem}");
    int rc = act(&fault_degrade, env, 0, (size_t)i1, p, &e), have = 1;
    if (rc == NERR_UNSUPPORTED) {
        char want[512];
        snprintf(want, sizeof want,
                 "host h1 (%s): this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM): latency "
                 "cannot be injected with latency_via: netem (auto or nfqueue would use "
                 "nines-netdelay)",
                 h1->address);
        is(e.msg, want, "latency_via: netem without netem: a clear error naming the host");
        ok(has_qdisc(h1) == 0 && has_table(h1) == 0 && has_chain(h1) == 0 && delayer_pid(h1) == 0,
           "and nothing is left on h1 (no qdisc, table, chain or delayer)");
        have = 0;
    } else {
        ok(rc == 0, "degrade h1 with netem (%s)", e.msg);
        ok(has_qdisc(h1) == 1, "h1 has the htb 9e5: qdisc");
        struct rtt d = measure(h1, h2);
        cmp_ok((long)(d.min * 1000), ">=", 200000, "netem: fastest connect %.1f ms >= 200 ms",
               d.min);
        ok(act(&fault_degrade, env, 1, (size_t)i1, NULL, &e) == 0, "restore h1 (%s)", e.msg);
        ok(has_qdisc(h1) == 0, "the qdisc is gone");
    }
    fault_degrade.free_params(p);
    return have;
}

/* ---- no lab needed: the keys ---- */

static void test_keys(void)
{
    static const struct {
        const char *yaml, *err;
    } bad[] = {
        {"{latency: 200ms, latency_via: fast}",
         "step.yaml:1:31: latency_via must be auto, netem or nfqueue, got 'fast'"},
        {"{loss: 5%, latency_via: nfqueue}",
         "step.yaml:1:25: latency_via needs latency (it says how latency is made)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct yt_doc *doc = NULL;
        struct nerr e = {0};
        struct errs x = {0};
        struct fault_errs fx = {push, &x};
        void *p = NULL;
        if (yt_load_string("step.yaml", bad[i].yaml, strlen(bad[i].yaml), &doc, &e))
            bail_out(e.msg);
        fault_degrade.parse(&fx, yt_root(doc), &p);
        is(x.n ? x.msg[0] : "", bad[i].err, "%s is refused", bad[i].yaml);
        fault_degrade.free_params(p);
        yt_free(doc);
    }
    static const struct {
        const char *yaml, *text;
    } good[] = {
        {"{latency: 200ms, jitter: 20ms}", " (latency 200ms, jitter 20ms)"},
        {"{latency: 200ms, jitter: 20ms, latency_via: nfqueue}",
         " (latency 200ms, jitter 20ms, via nfqueue)"},
        {"{loss: 1%, latency: 5ms, latency_via: netem}", " (loss 1%, latency 5ms, via netem)"},
        {"{latency: 5ms, latency_via: auto}", " (latency 5ms)"},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        void *p = params_of(&fault_degrade, good[i].yaml);
        char buf[256];
        fault_degrade.describe(p, buf, sizeof buf);
        is(buf, good[i].text, "plan text of %s", good[i].yaml);
        fault_degrade.free_params(p);
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_keys();
    const char *invp = getenv("NINES_FDELAY_INV");
    if (!invp || !*invp) {
        note("no lab (NINES_FDELAY_INV unset): only the keys were tested");
        return done_testing();
    }
    struct inventory *inv = NULL;
    struct nerr e = {0};
    if (inventory_load(invp, &inv, &e))
        bail_out(e.msg);
    if (inv->n_hosts < 3)
        bail_out("the lab needs 3 hosts");
    if (!mkdtemp(tmpdir))
        bail_out("mkdtemp");
    udp_port = 42000 + (int)(getpid() % 2000) * 8;
    struct fault_env env = {.inv = inv, .note = note_cb, .host_changed = changed_cb};
    test_baseline(&env);
    int netem = test_netem(&env);
    /* auto: nfqueue where there is no netem; forced where there is. */
    test_nfqueue(&env, netem);
    fault_degrade.heal_all(NULL, &env);
    rmdir(tmpdir);
    inventory_free(inv);
    return done_testing();
}
