/*
 * faults_net.c — the partition, pause and degrade fault kinds driven
 * through their struct fault_kind against real hosts: a lab of network
 * namespaces (t/gameday/faults_net.t brings it up and hands its inventory
 * over in NINES_FNET_INV, the ninesd binary in NINES_FNET_NINESD). Every
 * check observes the hosts: TCP connects and UDP datagrams between them, a
 * ninesd that answers HTTP or not, /proc/PID/status, the nft table left on
 * a host. Latency is measured in t/gameday/faults_delay.c.
 *
 * Without NINES_FNET_INV only the refusal of this machine is tested (it
 * needs no lab: nothing is sent anywhere).
 */
#include "fault/fault.h"
#include "fault/hostcmd.h"
#include "lib/clock.h"
#include "net/shquote.h"
#include "t/gameday/fk_test.h"
#include "t/tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern const struct fault_kind fault_partition, fault_pause, fault_degrade;

static void changed_cb(void *arg, const struct inv_host *h)
{
    (void)arg;
    diag("host_changed called for %s (no kind here restarts anything)", h->name);
    ok(0, "host_changed is not called by partition, pause or degrade");
}

/* On host from: does a TCP connect to addr:port succeed within 2 s? 1 yes,
 * 0 no, -1 the probe itself failed. */
static int tcp_from(const struct inv_host *from, const char *addr, int port, double *secs)
{
    char cmd[512];
    struct hostcmd_result r;
    struct nerr e = {0};
    snprintf(cmd, sizeof cmd,
             "timeout 2 bash -c 'exec 3<>/dev/tcp/%s/%d' 2>/dev/null && echo open || echo closed",
             addr, port);
    uint64_t t0 = clock_mono_ns();
    int rc = hostcmd_run(from, cmd, 15000, &r, &e);
    if (secs)
        *secs = (double)(clock_mono_ns() - t0) / 1e9;
    int res = rc ? -1 : strstr(r.out, "open") ? 1 : strstr(r.out, "closed") ? 0 : -1;
    if (res < 0)
        diag("tcp probe on %s: %s %s", from->name, rc ? e.msg : r.out, rc ? "" : r.err);
    hostcmd_result_free(&r);
    return res;
}

static char tmpdir[] = "/tmp/nines-fnet-XXXXXX";
static int udp_port = 41000;

/* Does a UDP datagram sent from `from` reach `to`? The receiver (perl,
 * on `to`, bound to its address) writes what it got to a file in tmpdir:
 * the lab's hosts share this machine's file system. 1 yes, 0 no, -1 the
 * probe failed. */
static int udp_from(const struct inv_host *from, const struct inv_host *to)
{
    char out[512], cmd[2048];
    struct hostcmd_result r;
    struct nerr e = {0};
    int port = udp_port++;
    snprintf(out, sizeof out, "%s/udp-%d.txt", tmpdir, port);
    snprintf(cmd, sizeof cmd,
             "setsid -f perl -MIO::Socket::INET -e '$|=1; my $s=IO::Socket::INET->new(LocalAddr"
             "=>$ARGV[0],LocalPort=>$ARGV[1],Proto=>\"udp\") or die \"bind: $!\\n\"; print "
             "\"ready\\n\"; my $m=\"\"; my $g=eval{local $SIG{ALRM}=sub{die \"t\\n\"}; alarm 10; "
             "$s->recv($m,64); alarm 0; 1}; print $g ? \"got $m\\n\" : \"none\\n\"' %s %d "
             ">%s 2>&1 </dev/null",
             to->address, port, out);
    if (hostcmd_run_ok(to, "udp receiver", cmd, 10000, NULL, &e)) {
        diag("%s", e.msg);
        return -1;
    }
    for (int i = 0; i < 150 && !strstr(slurp(out), "ready"); i++)
        sleep_ms(20);
    if (!strstr(slurp(out), "ready")) {
        diag("udp receiver on %s did not start: %s", to->name, slurp(out));
        return -1;
    }
    snprintf(cmd, sizeof cmd,
             "bash -c 'for i in 1 2 3 4 5 6 7 8 9 10; do echo hi-%s >/dev/udp/%s/%d; "
             "sleep 0.1; done' 2>/dev/null; true",
             from->name, to->address, port);
    if (hostcmd_run(from, cmd, 10000, &r, &e)) {
        diag("%s", e.msg);
        hostcmd_result_free(&r);
        return -1;
    }
    hostcmd_result_free(&r);
    /* The receiver prints at its first datagram; one sent 1 s ago that
     * has not arrived 1.5 s later was dropped. (It gives up by itself
     * after 10 s.) */
    const char *s = "";
    for (int i = 0; i < 75; i++) {
        s = slurp(out);
        if (strstr(s, "got ") || strstr(s, "none"))
            break;
        sleep_ms(20);
    }
    unlink(out);
    if (strstr(s, "got hi-"))
        return 1;
    if (!strstr(s, "bind") && strstr(s, "ready"))
        return 0;
    diag("udp receiver on %s said: %s", to->name, s);
    return -1;
}

/* Is inet table NAME on h? 1 yes, 0 no, -1 probe failed. */
static int has_table(const struct inv_host *h, const char *name)
{
    char cmd[256];
    struct hostcmd_result r;
    struct nerr e = {0};
    snprintf(cmd, sizeof cmd, "nft list table inet %s >/dev/null 2>&1 && echo yes || echo no",
             name);
    int rc = hostcmd_run(h, cmd, 10000, &r, &e);
    int res = rc ? -1 : strstr(r.out, "yes") ? 1 : 0;
    hostcmd_result_free(&r);
    return res;
}

static int ssh_works(const struct inv_host *h)
{
    struct hostcmd_result r;
    struct nerr e = {0};
    int rc = hostcmd_run(h, "echo alive", 10000, &r, &e);
    int res = !rc && strstr(r.out, "alive");
    hostcmd_result_free(&r);
    return res;
}

/* ---- hostcmd (fault/hostcmd.h), which every kind here runs on ---- */

static void test_hostcmd(const struct inventory *inv)
{
    const struct inv_host *h1 = &inv->hosts[host_index(inv, "h1")];
    struct hostcmd_result r;
    struct nerr e = {0};
    char want[512];

    ok(hostcmd_run(h1, "hostname; echo oops >&2; exit 7", 10000, &r, &e) == 0,
       "a command that exits 7 is no error of hostcmd_run (%s)", e.msg);
    ok(r.exit_status == 7 && !strcmp(r.out, "h1\n") && !strcmp(r.err, "oops\n"),
       "exit status, stdout (the lab host's own hostname) and stderr come back");
    hostcmd_result_free(&r);
    nerr_clear(&e);
    is_int(hostcmd_run_ok(h1, "the check", "echo first >&2; echo second >&2; exit 3", 10000, NULL,
                          &e),
           NERR_IO, "hostcmd_run_ok: a non-zero exit is NERR_IO");
    snprintf(want, sizeof want, "host h1 (%s): `the check` failed: exit status 3: first",
             h1->address);
    is(e.msg, want, "naming the host, what, the status and stderr's first line");

    uint64_t t0 = clock_mono_ns();
    is_int(hostcmd_run(h1, "sleep 5", 1500, &r, &e), NERR_TIMEOUT, "a command past its timeout");
    double secs = (double)(clock_mono_ns() - t0) / 1e9;
    hostcmd_result_free(&r);
    cmp_ok(secs * 1000, "<", 4000, "returns within the bound (%.2f s for 1.5 s)", secs);
    snprintf(want, sizeof want, "host h1 (%s): `sleep 5` timed out after 1500 ms", h1->address);
    is(e.msg, want, "and says so, naming the host");

    /* Strict host keys: a known_hosts that lacks the host refuses it. */
    char kh[256];
    snprintf(kh, sizeof kh, "%s/empty_known_hosts", tmpdir);
    FILE *f = fopen(kh, "w");
    if (f)
        fclose(f);
    struct inv_host stranger = *h1;
    stranger.known_hosts = kh;
    is_int(hostcmd_run(&stranger, "true", 10000, &r, &e), NERR_AUTH,
           "an unknown host key is refused (strict known_hosts)");
    hostcmd_result_free(&r);
    snprintf(want, sizeof want, "host h1 (%s): ", h1->address);
    ok(!strncmp(e.msg, want, strlen(want)) && strstr(e.msg, "unknown host key"), "%s", e.msg);
    f = fopen(kh, "r");
    char line[64] = "";
    if (f) {
        if (!fgets(line, sizeof line, f))
            line[0] = 0;
        fclose(f);
    }
    is(line, "", "and not recorded");
    unlink(kh);
}

/* ---- partition ---- */

static void test_partition(const struct fault_env *env)
{
    const struct inventory *inv = env->inv;
    int i1 = host_index(inv, "h1"), i2 = host_index(inv, "h2"), i3 = host_index(inv, "h3");
    const struct inv_host *h1 = &inv->hosts[i1], *h2 = &inv->hosts[i2], *h3 = &inv->hosts[i3];
    struct nerr e;

    ok(tcp_from(h1, h2->address, 22, NULL) == 1 && tcp_from(h2, h1->address, 22, NULL) == 1,
       "before: h1 and h2 reach each other's sshd");

    void *both = params_of(&fault_partition, "{}");
    ok(act(&fault_partition, env, 0, (size_t)i1, both, &e) == 0, "partition h1 (both ways) (%s)",
       e.msg);
    double secs = 0;
    is_int(tcp_from(h1, h2->address, 22, &secs), 0, "h1 -> h2:22 fails");
    cmp_ok(secs * 1000, "<", 8000, "within a bounded time (%.1f s)", secs);
    is_int(tcp_from(h2, h1->address, 22, NULL), 0, "h2 -> h1:22 fails");
    is_int(tcp_from(h3, h1->address, 22, NULL), 0, "h3 -> h1:22 fails");
    is_int(tcp_from(h2, h3->address, 22, NULL), 1, "h2 -> h3:22 still works (not isolated)");
    ok(ssh_works(h1), "the controller still reaches h1 over SSH");
    is_int(has_table(h1, "nines_fault_partition"), 1, "h1 holds the table inet nines_fault_partition");
    is_int(has_table(h2, "nines_fault_partition"), 0, "h2 holds none (only isolated hosts do)");
    ok(act(&fault_partition, env, 1, (size_t)i1, NULL, &e) == 0, "heal h1 (%s)", e.msg);
    ok(tcp_from(h1, h2->address, 22, NULL) == 1 && tcp_from(h2, h1->address, 22, NULL) == 1,
       "after heal: h1 -> h2 and h2 -> h1 connect again");
    is_int(has_table(h1, "nines_fault_partition"), 0, "and the table is gone");
    ok(act(&fault_partition, env, 1, (size_t)i1, NULL, &e) == 0,
       "a second heal (nothing left to remove) succeeds (%s)", e.msg);

    /* Two hosts isolated together still talk to each other. */
    size_t pair[2] = {(size_t)i1, (size_t)i2};
    struct fault_call c2 = {pair, 2, both};
    nerr_clear(&e);
    ok(fault_partition.inject(NULL, env, &c2, &e) == 0, "partition {h1, h2} (%s)", e.msg);
    is_int(tcp_from(h1, h2->address, 22, NULL), 1, "h1 -> h2 works inside the isolated set");
    is_int(tcp_from(h1, h3->address, 22, NULL), 0, "h1 -> h3 fails");
    is_int(tcp_from(h3, h2->address, 22, NULL), 0, "h3 -> h2 fails");
    c2.params = NULL;
    ok(fault_partition.heal(NULL, env, &c2, &e) == 0, "heal {h1, h2}");
    is_int(tcp_from(h3, h2->address, 22, NULL), 1, "h3 -> h2 works again");
    fault_partition.free_params(both);

    /* One way: out drops what h1 sends to the others, in what it receives.
     * A datagram shows the direction (TCP needs both ways, so its
     * handshake fails either way). */
    ok(udp_from(h1, h2) == 1 && udp_from(h2, h1) == 1, "before: UDP h1 -> h2 and h2 -> h1 arrive");
    void *out = params_of(&fault_partition, "{direction: out}");
    ok(act(&fault_partition, env, 0, (size_t)i1, out, &e) == 0, "partition h1, direction out (%s)",
       e.msg);
    is_int(udp_from(h1, h2), 0, "out: UDP from h1 to h2 is dropped");
    is_int(udp_from(h2, h1), 1, "out: UDP from h2 to h1 still arrives");
    is_int(tcp_from(h2, h1->address, 22, NULL), 0,
           "out: a TCP connect h2 -> h1 fails too (h1's SYN-ACK is dropped)");
    ok(ssh_works(h1), "out: the controller still reaches h1");
    ok(act(&fault_partition, env, 1, (size_t)i1, NULL, &e) == 0, "heal (%s)", e.msg);
    is_int(udp_from(h1, h2), 1, "after heal: UDP h1 -> h2 arrives again");
    fault_partition.free_params(out);

    void *in = params_of(&fault_partition, "{direction: in}");
    ok(act(&fault_partition, env, 0, (size_t)i1, in, &e) == 0, "partition h1, direction in (%s)",
       e.msg);
    is_int(udp_from(h1, h2), 1, "in: UDP from h1 to h2 still arrives");
    is_int(udp_from(h2, h1), 0, "in: UDP from h2 to h1 is dropped");
    ok(act(&fault_partition, env, 1, (size_t)i1, NULL, &e) == 0, "heal (%s)", e.msg);
    is_int(udp_from(h2, h1), 1, "after heal: UDP h2 -> h1 arrives again");
    fault_partition.free_params(in);
}

/* ---- degrade ---- */

static void test_degrade(const struct fault_env *env)
{
    const struct inventory *inv = env->inv;
    int i1 = host_index(inv, "h1"), i2 = host_index(inv, "h2"), i3 = host_index(inv, "h3");
    const struct inv_host *h1 = &inv->hosts[i1], *h2 = &inv->hosts[i2], *h3 = &inv->hosts[i3];
    struct nerr e;

    void *all = params_of(&fault_degrade, "{loss: 100%}");
    ok(act(&fault_degrade, env, 0, (size_t)i1, all, &e) == 0, "degrade h1, loss 100%% (%s)",
       e.msg);
    is_int(tcp_from(h1, h2->address, 22, NULL), 0, "loss 100%%: h1 -> h2:22 fails");
    is_int(tcp_from(h3, h1->address, 22, NULL), 0, "loss 100%%: h3 -> h1:22 fails");
    ok(ssh_works(h1), "the controller still reaches h1");
    is_int(has_table(h1, "nines_fault_degrade"), 1, "h1 holds the table inet nines_fault_degrade");
    ok(act(&fault_degrade, env, 1, (size_t)i1, NULL, &e) == 0, "restore h1 (%s)", e.msg);
    ok(tcp_from(h1, h2->address, 22, NULL) == 1 && tcp_from(h3, h1->address, 22, NULL) == 1,
       "after restore: both connects work");
    is_int(has_table(h1, "nines_fault_degrade"), 0, "and the table is gone");
    fault_degrade.free_params(all);

    /* 50%: some of 40 datagrams... measured as TCP connects is too slow;
     * count what a receiver gets of 200 UDP datagrams instead. */
    void *half = params_of(&fault_degrade, "{loss: 50%}");
    ok(act(&fault_degrade, env, 0, (size_t)i1, half, &e) == 0, "degrade h1, loss 50%% (%s)", e.msg);
    {
        char out[512], cmd[2048];
        struct hostcmd_result r;
        int port = udp_port++;
        snprintf(out, sizeof out, "%s/count-%d.txt", tmpdir, port);
        snprintf(cmd, sizeof cmd,
                 "setsid -f perl -MIO::Socket::INET -e '$|=1; my $s=IO::Socket::INET->new("
                 "LocalAddr=>$ARGV[0],LocalPort=>$ARGV[1],Proto=>\"udp\") or die; print "
                 "\"ready\\n\"; my $n=0; eval{local $SIG{ALRM}=sub{die \"t\\n\"}; alarm 4; "
                 "while(1){my $m; $s->recv($m,64); $n++}}; print \"count $n\\n\"' %s %d >%s "
                 "2>&1 </dev/null",
                 h2->address, port, out);
        int n = -1;
        if (!hostcmd_run_ok(h2, "udp counter", cmd, 10000, NULL, &e)) {
            for (int i = 0; i < 150 && !strstr(slurp(out), "ready"); i++)
                sleep_ms(20);
            snprintf(cmd, sizeof cmd,
                     "bash -c 'for i in $(seq 1 200); do echo x >/dev/udp/%s/%d; done' "
                     "2>/dev/null; true",
                     h2->address, port);
            if (!hostcmd_run(h1, cmd, 10000, &r, &e))
                for (int i = 0; i < 300 && !strstr(slurp(out), "count"); i++)
                    sleep_ms(20);
            hostcmd_result_free(&r);
            const char *c = strstr(slurp(out), "count ");
            n = c ? atoi(c + 6) : -1;
        }
        unlink(out);
        ok(n > 40 && n < 160, "loss 50%%: h2 got %d of 200 datagrams from h1 (40 < n < 160)", n);
    }
    ok(act(&fault_degrade, env, 1, (size_t)i1, NULL, &e) == 0, "restore h1 (%s)", e.msg);
    fault_degrade.free_params(half);

    /* Latency (netem, or NFQUEUE and nines-netdelay without it) is
     * measured in t/gameday/faults_delay.c. */
}

/* ---- pause ---- */

static int http_answers(const char *addr, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, addr, &sa.sin_addr);
    if (fd < 0)
        return 0;
    int res = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) && errno != EINPROGRESS)
        goto out;
    struct pollfd p = {fd, POLLOUT, 0};
    if (poll(&p, 1, 1000) != 1)
        goto out;
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    if (soerr)
        goto out;
    const char req[] = "GET / HTTP/1.0\r\nHost: x\r\n\r\n";
    if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1))
        goto out;
    p = (struct pollfd){fd, POLLIN, 0};
    char buf[64] = {0};
    if (poll(&p, 1, 1500) == 1 && read(fd, buf, sizeof buf - 1) > 0)
        res = !strncmp(buf, "HTTP/1.", 7);
out:
    close(fd);
    return res;
}

static char proc_state(long pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    const char *s = strstr(slurp(path), "State:");
    if (!s)
        return '?';
    s += 6;
    while (*s == ' ' || *s == '\t')
        s++;
    return *s;
}

static long ninesd_pid = 0;

static void test_pause(const struct fault_env *env, const char *ninesd)
{
    const struct inventory *inv = env->inv;
    int i1 = host_index(inv, "h1"), i2 = host_index(inv, "h2");
    const struct inv_host *h1 = &inv->hosts[i1], *h2 = &inv->hosts[i2];
    struct nerr e = {0};
    char path[1024], script[4096], *q = NULL, cmd[8192];
    const int port = 18101;

    snprintf(path, sizeof path, "%s/cluster.yaml", h1->data);
    FILE *f = fopen(path, "w");
    if (!f)
        bail_out("cannot write h1's cluster file");
    fprintf(f,
            "cluster: fnet\nauth: none\nnodes:\n  - {id: n1, az: az1, rack: r1, api: %s:%d, "
            "peer: %s:%d, data: %s/n1}\n",
            h1->address, port, h1->address, port + 1, h1->data);
    fclose(f);
    /* As deploy.c's boot script: the pid file holds the shell that execs
     * ninesd. */
    snprintf(script, sizeof script,
             "echo $$ > %s/ninesd.pid; exec %s --cluster %s --node n1 >> %s/ninesd.log 2>&1",
             h1->data, ninesd, path, h1->data);
    if (shquote_arg(script, &q, &e))
        bail_out(e.msg);
    snprintf(cmd, sizeof cmd, "setsid -f sh -c %s </dev/null >/dev/null 2>&1", q);
    free(q);
    nerr_clear(&e);
    ok(hostcmd_run_ok(h1, "start ninesd", cmd, 10000, NULL, &e) == 0, "ninesd started on h1 (%s)",
       e.msg);
    int up = 0;
    for (int i = 0; i < 150 && !(up = http_answers(h1->address, port)); i++)
        sleep_ms(100);
    snprintf(path, sizeof path, "%s/ninesd.pid", h1->data);
    ninesd_pid = atol(slurp(path));
    if (!ok(up && ninesd_pid > 1, "ninesd on h1 answers HTTP (pid %ld)", ninesd_pid)) {
        snprintf(path, sizeof path, "%s/ninesd.log", h1->data);
        diag("%s", slurp(path));
        return;
    }

    ok(act(&fault_pause, env, 0, (size_t)i1, NULL, &e) == 0, "pause h1 (%s)", e.msg);
    is_int(proc_state(ninesd_pid), 'T', "ninesd is stopped (state T in /proc/PID/status)");
    is_int(http_answers(h1->address, port), 0, "and answers nothing while paused");
    ok(ssh_works(h1), "the host itself is up (SSH works)");
    ok(act(&fault_pause, env, 1, (size_t)i1, NULL, &e) == 0, "resume h1 (%s)", e.msg);
    ok(proc_state(ninesd_pid) != 'T', "ninesd runs again (state %c)", proc_state(ninesd_pid));
    ok(http_answers(h1->address, port), "and answers HTTP again");
    ok(act(&fault_pause, env, 1, (size_t)i1, NULL, &e) == 0, "resuming a running ninesd is harmless");

    /* h2 runs no ninesd: the inject fails and names the host. */
    snprintf(path, sizeof path, "%s/ninesd.pid", h2->data);
    unlink(path);
    is_int(act(&fault_pause, env, 0, (size_t)i2, NULL, &e), NERR_IO, "pause without a pid file fails");
    ok(strstr(e.msg, "host h2") && strstr(e.msg, "no pid file"), "naming the host: %s", e.msg);

    /* A stale pid file naming another process: never stopped. */
    pid_t other = fork();
    if (other == 0) {
        execlp("sleep", "sleep", "30", (char *)NULL);
        _exit(127);
    }
    f = fopen(path, "w");
    fprintf(f, "%d\n", (int)other);
    fclose(f);
    sleep_ms(100);
    is_int(act(&fault_pause, env, 0, (size_t)i2, NULL, &e), NERR_IO,
           "a pid file naming a process that is not ninesd is refused");
    ok(strstr(e.msg, "is not a running ninesd"), "saying so: %s", e.msg);
    ok(proc_state(other) != 'T', "and that process was not stopped (state %c)", proc_state(other));
    kill(other, SIGKILL);
    waitpid(other, NULL, 0);
    unlink(path);

    /* heal_all from a fresh state after a run that "died" paused. */
    ok(act(&fault_pause, env, 0, (size_t)i1, NULL, &e) == 0, "pause h1 again (%s)", e.msg);
    is_int(proc_state(ninesd_pid), 'T', "stopped");
    notes[0] = 0;
    fault_pause.heal_all(NULL, env);
    ok(proc_state(ninesd_pid) != 'T', "heal_all alone resumes it");
    ok(http_answers(h1->address, port), "and it answers again");
    ok(!strstr(notes, "failed"), "heal_all noted no failure (%s)", notes);
}

static void test_heal_all(const struct fault_env *env)
{
    const struct inventory *inv = env->inv;
    int i1 = host_index(inv, "h1"), i2 = host_index(inv, "h2"), i3 = host_index(inv, "h3");
    const struct inv_host *h1 = &inv->hosts[i1], *h2 = &inv->hosts[i2], *h3 = &inv->hosts[i3];
    struct nerr e;

    notes[0] = 0;
    fault_partition.heal_all(NULL, env);
    fault_degrade.heal_all(NULL, env);
    fault_pause.heal_all(NULL, env);
    is(notes, "", "heal_all of every kind with nothing injected: nothing to say");

    void *both = params_of(&fault_partition, "{}");
    void *loss = params_of(&fault_degrade, "{loss: 100%}");
    ok(act(&fault_partition, env, 0, (size_t)i1, both, &e) == 0, "partition h1 (%s)", e.msg);
    ok(act(&fault_degrade, env, 0, (size_t)i3, loss, &e) == 0, "degrade h3 (%s)", e.msg);
    is_int(tcp_from(h2, h1->address, 22, NULL), 0, "h2 cannot reach h1");
    is_int(tcp_from(h2, h3->address, 22, NULL), 0, "nor h3");
    /* The run "dies" here: a fresh process would only call heal_all. */
    notes[0] = 0;
    fault_partition.heal_all(NULL, env);
    fault_degrade.heal_all(NULL, env);
    ok(tcp_from(h2, h1->address, 22, NULL) == 1 && tcp_from(h2, h3->address, 22, NULL) == 1,
       "after heal_all h2 reaches h1 and h3 again");
    ok(has_table(h1, "nines_fault_partition") == 0 && has_table(h3, "nines_fault_degrade") == 0,
       "no table of ours is left");
    is(notes, "", "heal_all noted nothing wrong");
    fault_partition.free_params(both);
    fault_degrade.free_params(loss);
}

/* ---- no lab needed: this machine is refused ---- */

static void test_refusal(void)
{
    static const char *text =
        "inventory: local\nhosts:\n"
        "  - {name: me, address: 127.0.0.1, az: az1, rack: r1, data: /nonexistent/me,\n"
        "     power: {driver: command, off: 'true', on: 'true'}}\n";
    struct inventory *inv = NULL;
    struct nerr e = {0};
    if (inventory_load_string("local.yaml", text, strlen(text), "/", &inv, &e))
        bail_out(e.msg);
    struct fault_env env = {.inv = inv, .note = note_cb, .host_changed = changed_cb};
    const struct fault_kind *kinds[] = {&fault_partition, &fault_pause, &fault_degrade};
    const char *params[] = {"{}", NULL, "{loss: 5%}"};
    const char *verbs[] = {"partition", "pause", "degrade the network of"};
    for (int k = 0; k < 3; k++) {
        void *p = params[k] ? params_of(kinds[k], params[k]) : NULL;
        uint64_t t0 = clock_mono_ns();
        int rc = act(kinds[k], &env, 0, 0, p, &e);
        char want[256];
        snprintf(want, sizeof want, "refusing to %s host 'me': 127.0.0.1 is a loopback address",
                 verbs[k]);
        ok(rc == NERR_INVALID && !strcmp(e.msg, want), "%s refuses this machine: %s",
           kinds[k]->name, e.msg);
        cmp_ok((clock_mono_ns() - t0) / 1000000, "<", 1000, "at once, before any SSH");
        rc = act(kinds[k], &env, 1, 0, NULL, &e);
        ok(rc == NERR_INVALID && strstr(e.msg, "refusing to"), "%s's heal refuses it too (%s)",
           kinds[k]->name, e.msg);
        if (p)
            kinds[k]->free_params(p);
    }
    /* heal_all skips it with a note. */
    notes[0] = 0;
    fault_pause.heal_all(NULL, &env);
    ok(strstr(notes, "resume skipped: refusing to resume host 'me': 127.0.0.1 is a loopback"),
       "pause's heal_all skips this machine with a note");
    inventory_free(inv);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_refusal();
    const char *invp = getenv("NINES_FNET_INV"), *ninesd = getenv("NINES_FNET_NINESD");
    if (!invp || !*invp) {
        note("no lab (NINES_FNET_INV unset): only the refusals were tested");
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
    udp_port = 41000 + (int)(getpid() % 2000) * 8;
    struct fault_env env = {.inv = inv, .note = note_cb, .host_changed = changed_cb};
    test_hostcmd(inv);
    test_partition(&env);
    test_degrade(&env);
    test_heal_all(&env);
    if (ninesd && *ninesd)
        test_pause(&env, ninesd);
    else
        skip(1, "NINES_FNET_NINESD unset: no ninesd to pause");
    /* Our ninesd goes, whatever happened (by its pid: we started it). */
    if (ninesd_pid > 1) {
        kill((pid_t)ninesd_pid, SIGCONT);
        kill((pid_t)ninesd_pid, SIGKILL);
    }
    /* Leave the lab as it was found. */
    fault_partition.heal_all(NULL, &env);
    fault_degrade.heal_all(NULL, &env);
    rmdir(tmpdir);
    inventory_free(inv);
    return done_testing();
}
