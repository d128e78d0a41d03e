/* fault/power: templates and their quoting, the command driver (success,
 * failing exit, timeout with its process group killed), the local-machine
 * refusals (each proven by a marker command that must not have run), the lab
 * driver against a fake /proc with an injected kill, and the QMP driver
 * against a fake QMP server thread. Nothing here can power anything off. */
#include "fault/power_driver.h"
#include "t/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[64];

static long long ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int exists(const char *name)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static char *slurp(const char *name)
{
    static char buf[8192];
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    buf[0] = '\0';
    FILE *f = fopen(p, "r");
    if (!f)
        return buf;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void rm(const char *name)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    unlink(p);
}

/* A host that is certainly not this machine: TEST-NET-1, never contacted. */
static struct inv_host host(const char *name, const char *addr, enum inv_driver d)
{
    struct inv_host h = {0};
    h.name = (char *)name;
    h.address = (char *)addr;
    h.port = 22;
    h.user = "root";
    h.az = "az1";
    h.rack = "r1";
    h.data = "/var/lib/nines";
    h.power.driver = d;
    h.power.timeout_ns = 5000000000ull;
    return h;
}

/* Templates carry the temp dir in their text, the {dir} of the brief. */
static char *tmpl(const char *fmt)
{
    static char bufs[16][1024];
    static int next;
    char *b = bufs[next++ % 16];
    const char *p = strstr(fmt, "DIR");
    if (!p)
        snprintf(b, 1024, "%s", fmt);
    else
        snprintf(b, 1024, "%.*s%s%s", (int)(p - fmt), fmt, dir, p + 3);
    /* Up to two DIRs. */
    char *q = strstr(b, "DIR");
    if (q) {
        char t[1024];
        snprintf(t, sizeof t, "%.*s%s%s", (int)(q - b), b, dir, q + 3);
        snprintf(b, 1024, "%s", t);
    }
    return b;
}

static void test_templates(void)
{
    struct nerr err;
    char *out = NULL;
    struct inv_host h = host("h1", "192.0.2.10", INV_DRIVER_COMMAND);

    is_int(inventory_template_expand("virsh destroy {name} {{x}} {az}/{rack}", &h, &out, &err), 0,
           "expand");
    is(out, "virsh destroy h1 {x} az1/r1",
       "values quoted by shquote (plain words stay bare), {{ }} literal");
    free(out);
    out = NULL;
    is_int(inventory_template_expand("x {nmae}", NULL, NULL, &err), NERR_INVALID,
           "unknown placeholder");
    is(err.msg, "unknown placeholder '{nmae}' (known: {name}, {address}, {az}, {rack}, {data})",
       "message names it and the known ones");
    is_int(inventory_template_expand("x }", NULL, NULL, &err), NERR_INVALID, "lone }");
    is_int(inventory_template_expand("x {name", NULL, NULL, &err), NERR_INVALID, "lone {");

    /* Hostile values: printed back verbatim by the shell, and nothing they
     * try to run is run. */
    const char *hostile[] = {
        "a'b",
        "'; touch DIR/pwned; '",
        "$(touch DIR/pwned)",
        "`touch DIR/pwned`",
        "x\" ; touch DIR/pwned ; \"",
        "a\nb; touch DIR/pwned",
        "\\'$HOME*?[a]{b}",
        "",
    };
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        char *val = strdup(tmpl(hostile[i]));
        h.data = val;
        out = NULL;
        is_int(inventory_template_expand("printf %s {data}", &h, &out, &err), 0,
               "expand hostile %zu", i);
        char *argv[] = {"/bin/sh", "-c", out, NULL};
        char so[POWER_OUT_MAX + 1], se[POWER_OUT_MAX + 1];
        int st = -1;
        is_int(power_run(argv, 5000, &st, so, se, &err), 0, "run hostile %zu", i);
        ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "hostile %zu: exit 0", i);
        is(so, val, "hostile %zu comes back verbatim", i);
        ok(!exists("pwned"), "hostile %zu ran nothing", i);
        free(out);
        free(val);
    }
}

static void test_command(void)
{
    struct power_env env;
    struct nerr err;
    power_env_default(&env);
    struct inv_host h = host("h1", "192.0.2.10", INV_DRIVER_COMMAND);
    h.power.off = tmpl("echo off {name} {az} >> DIR/log");
    h.power.on = tmpl("echo on {name} >> DIR/log");
    h.power.status = tmpl("echo running");

    is_int(power_off(&env, &h, &err), 0, "command off (%s)", err.msg);
    is_int(power_on(&env, &h, &err), 0, "command on");
    is(slurp("log"), "off h1 az1\non h1\n", "both templates ran, values substituted");
    rm("log");

    enum power_state s = POWER_UNKNOWN;
    char detail[64];
    is_int(power_status(&env, &h, &s, detail, sizeof detail, &err), 0, "status");
    ok(s == POWER_ON, "'running' -> on");
    is(detail, "running", "detail");
    h.power.status = "echo 'shut off'";
    power_status(&env, &h, &s, detail, sizeof detail, &err);
    ok(s == POWER_OFF, "'shut off' -> off");
    h.power.status = "echo paused";
    power_status(&env, &h, &s, detail, sizeof detail, &err);
    ok(s == POWER_UNKNOWN, "'paused' -> unknown");
    h.power.status = NULL;
    is_int(power_status(&env, &h, &s, detail, sizeof detail, &err), 0, "no status template");
    ok(s == POWER_UNKNOWN, "-> unknown");

    /* A failing command: exit status and stderr in the error. */
    h.power.off = "echo partial; echo 'domain not found' >&2; exit 3";
    nerr_clear(&err);
    is_int(power_off(&env, &h, &err), NERR_IO, "exit 3 -> NERR_IO");
    ok(strstr(err.msg, "exit status 3") != NULL, "message has the exit status: %s", err.msg);
    ok(strstr(err.msg, "domain not found") != NULL, "message has stderr");
    ok(strstr(err.msg, "partial") != NULL, "message has stdout");
    h.power.off = "kill -TERM $$";
    is_int(power_off(&env, &h, &err), NERR_IO, "killed by a signal -> NERR_IO");
    ok(strstr(err.msg, "signal 15") != NULL, "message names the signal: %s", err.msg);

    /* A hanging command: killed at the timeout, with what it started. */
    h.power.timeout_ns = 300000000ull;
    h.power.off = tmpl("sh -c 'echo $$ > DIR/child.pid; exec sleep 30' & sleep 30");
    long long t0 = ms_now();
    is_int(power_off(&env, &h, &err), NERR_TIMEOUT, "sleep 30 -> NERR_TIMEOUT");
    long long took = ms_now() - t0;
    cmp_ok(took, "<", 5000, "timeout honoured (%lld ms for a 300 ms bound, not 30 s)", took);
    cmp_ok(took, ">=", 290, "not before the bound");
    ok(strstr(err.msg, "did not finish within 300 ms") != NULL, "timeout message: %s", err.msg);
    int child = atoi(slurp("child.pid"));
    ok(child > 1, "the background child wrote its pid");
    int gone = 0;
    for (int i = 0; i < 200 && child > 1 && !gone; i++) {
        char p[64], st[256] = "";
        snprintf(p, sizeof p, "/proc/%d/stat", child);
        FILE *f = fopen(p, "r");
        if (!f) {
            gone = 1;
            break;
        }
        if (fgets(st, sizeof st, f)) {
            char *rp = strrchr(st, ')');
            gone = rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
        }
        fclose(f);
        if (!gone)
            usleep(10000);
    }
    ok(gone, "the whole process group was killed (pid %d)", child);

    /* A command that leaves a daemon holding its stdout still returns when
     * the command itself exits. */
    h.power.timeout_ns = 5000000000ull;
    h.power.off = "sleep 8 & echo started";
    t0 = ms_now();
    is_int(power_off(&env, &h, &err), 0, "daemonizing command succeeds");
    took = ms_now() - t0;
    cmp_ok(took, "<", 5000, "and returns without waiting for the 8 s daemon (%lld ms)", took);

    /* A template naming its host may mention shutdown: it acts elsewhere. */
    h.power.off = tmpl("echo virsh shutdown {name} >> DIR/log");
    is_int(power_off(&env, &h, &err), 0, "shutdown with {name} is allowed");
    is(slurp("log"), "virsh shutdown h1\n", "and ran");
    rm("log");
    h.power.off = tmpl("echo initdb 0 >> DIR/log");
    /* Not refused: the refusal matches whole words only. */
    is_int(power_off(&env, &h, &err), 0, "'initdb 0' is not 'init 0' (never refused)");
    rm("log");
}

/* Asserts that power_off/on/status on h are refused with why in the
 * message, and that its marker template did not run. */
static void refused(struct power_env *env, struct inv_host *h, const char *why, const char *what)
{
    struct nerr err;
    enum power_state s;
    char detail[64];
    nerr_clear(&err);
    is_int(power_off(env, h, &err), NERR_INVALID, "%s: off refused", what);
    ok(strstr(err.msg, "refusing") && strstr(err.msg, why), "%s: says why: %s", what, err.msg);
    is_int(power_on(env, h, &err), NERR_INVALID, "%s: on refused", what);
    is_int(power_status(env, h, &s, detail, sizeof detail, &err), NERR_INVALID,
           "%s: status refused", what);
    ok(!exists("ran"), "%s: the marker command did not run", what);
    rm("ran");
}

static void test_refusals(void)
{
    struct power_env env;
    power_env_default(&env);
    struct inv_host h = host("h1", "127.0.0.1", INV_DRIVER_COMMAND);
    h.power.off = h.power.on = h.power.status = tmpl("touch DIR/ran");

    refused(&env, &h, "127.0.0.1 is a loopback address", "127.0.0.1");
    h.address = "127.3.4.5";
    refused(&env, &h, "loopback", "127.3.4.5");
    h.address = "::1";
    refused(&env, &h, "IPv6 loopback", "::1");
    h.address = "::ffff:127.0.0.1";
    refused(&env, &h, "v4-mapped loopback", "v4-mapped");
    h.address = "0.0.0.0";
    refused(&env, &h, "unspecified", "0.0.0.0");
    h.address = "localhost";
    refused(&env, &h, "localhost names this machine", "localhost");

    char hn[HOST_NAME_MAX + 1] = "";
    gethostname(hn, sizeof hn);
    h.address = hn;
    refused(&env, &h, "hostname", "address = hostname");
    h.address = "192.0.2.10";
    h.name = hn;
    refused(&env, &h, "hostname", "name = hostname");
    h.name = "h1";

    /* A non-loopback address of one of this machine's interfaces. */
    struct ifaddrs *ifs = NULL, *i;
    char a[INET6_ADDRSTRLEN] = "";
    if (getifaddrs(&ifs) == 0) {
        for (i = ifs; i && !a[0]; i = i->ifa_next)
            if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET) {
                struct in_addr in = ((struct sockaddr_in *)i->ifa_addr)->sin_addr;
                if ((ntohl(in.s_addr) >> 24) != 127)
                    inet_ntop(AF_INET, &in, a, sizeof a);
            }
        freeifaddrs(ifs);
    }
    if (a[0]) {
        h.address = a;
        refused(&env, &h, "of this machine's interface", "own interface address");
    } else {
        skip(5, "no non-loopback IPv4 interface address");
    }

    /* Templates that would halt whatever runs them, naming no host: each must
     * be refused before it runs. Safety: the dangerous word only ever stands
     * after a '#', so even a broken refusal would run nothing but `touch`. */
    h.address = "192.0.2.10";
    const char *bad[] = {"touch DIR/ran # systemctl poweroff",           /* refused */
                         "touch DIR/ran # reboot -f",                    /* refused */
                         "touch DIR/ran # halt",                         /* refused */
                         "touch DIR/ran # shutdown -h now",              /* refused */
                         "touch DIR/ran # init 0",                       /* refused */
                         "touch DIR/ran # INIT\t6",                      /* refused */
                         "touch DIR/ran # echo o > /proc/sysrq-trigger", /* refused */
                         "touch DIR/ran # kexec -e",                     /* refused */
                         "touch DIR/ran # {az} {rack} poweroff"};        /* refused */
    /* The word each refusal message must name. */
    const char *word[] = {
        "poweroff", /* refused */ "reboot", /* refused */ "halt",   /* refused */
        "shutdown", /* refused */ "init 0", /* refused */ "init 6", /* refused */
        "sysrq",    /* refused */ "kexec",  /* refused */ "poweroff" /* refused */};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        struct inv_host c = h;
        c.power.off = tmpl(bad[k]);
        c.power.on = tmpl("touch DIR/ran");
        c.power.status = NULL;
        struct nerr err;
        nerr_clear(&err);
        is_int(power_off(&env, &c, &err), NERR_INVALID, "template %zu refused", k);
        ok(strstr(err.msg, word[k]) && strstr(err.msg, "names no host"), "says why: %s", err.msg);
        /* on is refused too: the host's configuration is unsafe as a whole. */
        is_int(power_on(&env, &c, &err), NERR_INVALID, "template %zu: on refused as well", k);
        ok(!exists("ran"), "template %zu: nothing ran", k);
        rm("ran");
    }
}

/* --- lab, on a fake /proc ---------------------------------------------------- */

struct kills {
    int pids[64];
    int sigs[64];
    int n;
    int remove; /* simulate death by unlinking PROC/PID/ns/net */
    const char *proc;
};

static int fake_kill(void *arg, pid_t pid, int sig)
{
    struct kills *k = arg;
    if (k->n < 64) {
        k->pids[k->n] = pid;
        k->sigs[k->n] = sig;
        k->n++;
    }
    if (k->remove) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%d/ns/net", k->proc, (int)pid);
        unlink(p);
    }
    return 0;
}

static void mkfile(const char *rel)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    int fd = open(p, O_CREAT | O_WRONLY, 0644);
    close(fd);
}

static void mkdirs(const char *rel)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    for (char *s = p + strlen(dir) + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            mkdir(p, 0755);
            *s = '/';
        }
    mkdir(p, 0755);
}

static void link_rel(const char *from, const char *to)
{
    char a[PATH_MAX], b[PATH_MAX];
    snprintf(a, sizeof a, "%s/%s", dir, from);
    snprintf(b, sizeof b, "%s/%s", dir, to);
    unlink(b);
    if (link(a, b) != 0)
        diag("link %s %s: %s", a, b, strerror(errno));
}

/* proc/{1,self,100,200,300,abc}/ns/net; netns/lab1 is 100's and 300's. */
static void fake_proc(void)
{
    const char *ids[] = {"1", "self", "100", "200", "300", "abc"};
    for (int i = 0; i < 6; i++) {
        char d[64], f[64];
        snprintf(d, sizeof d, "proc/%s/ns", ids[i]);
        snprintf(f, sizeof f, "proc/%s/ns/net", ids[i]);
        mkdirs(d);
        mkfile(f);
    }
    mkdirs("netns");
    link_rel("proc/100/ns/net", "netns/lab1");
    link_rel("proc/100/ns/net", "proc/300/ns/net");
    link_rel("proc/100/ns/net", "proc/abc/ns/net");
    link_rel("proc/1/ns/net", "netns/rootns");
    link_rel("proc/self/ns/net", "netns/selfns");
    mkfile("netns/empty");
}

static void test_lab(void)
{
    struct power_env env;
    struct kills k = {0};
    struct nerr err;
    char proc[PATH_MAX], netns[PATH_MAX], ip[PATH_MAX];
    snprintf(proc, sizeof proc, "%s/proc", dir);
    snprintf(netns, sizeof netns, "%s/netns", dir);
    fake_proc();
    power_env_default(&env);
    env.proc_root = proc;
    env.netns_dir = netns;
    env.kill_fn = fake_kill;
    env.kill_arg = &k;
    k.proc = proc;

    pid_t pids[8];
    size_t n = 0;
    is_int(power_lab_pids(&env, "lab1", pids, 8, &n, &err), 0, "pids of lab1");
    ok(n == 2 && pids[0] == 100 && pids[1] == 300, "exactly 100 and 300, sorted (n=%zu)", n);
    is_int(power_lab_pids(&env, "lab1", pids, 1, &n, &err), NERR_LIMIT, "cap 1 -> NERR_LIMIT");
    is_int((long long)n, 2, "but counts them all");
    is_int(power_lab_pids(&env, "empty", pids, 8, &n, &err), 0, "empty namespace");
    is_int((long long)n, 0, "no pids");
    is_int(power_lab_pids(&env, "nope", pids, 8, &n, &err), NERR_NOTFOUND, "missing netns");

    struct inv_host h = host("h1", "10.77.0.11", INV_DRIVER_LAB);
    h.power.netns = "lab1";
    h.power.start = tmpl("echo started {name} >> DIR/on.log");
    enum power_state s;
    char detail[64];
    is_int(power_status(&env, &h, &s, detail, sizeof detail, &err), 0, "lab status");
    ok(s == POWER_ON, "on while processes live");
    is(detail, "2 processes", "detail counts them");

    k.remove = 1;
    is_int(power_off(&env, &h, &err), 0, "lab off (%s)", err.msg);
    ok(k.n == 2 && k.pids[0] == 100 && k.pids[1] == 300 && k.sigs[0] == SIGKILL &&
           k.sigs[1] == SIGKILL,
       "SIGKILL to 100 and 300 only, by pid (%d kills)", k.n);
    power_status(&env, &h, &s, detail, sizeof detail, &err);
    ok(s == POWER_OFF, "off afterwards");
    is(detail, "0 processes", "none left");

    /* Processes that will not die: bounded by the timeout. */
    link_rel("netns/lab1", "proc/200/ns/net"); /* 200 joins lab1 now */
    k.remove = 0;
    k.n = 0;
    h.power.timeout_ns = 200000000ull;
    long long t0 = ms_now();
    is_int(power_off(&env, &h, &err), NERR_TIMEOUT, "unkillable -> NERR_TIMEOUT");
    long long took = ms_now() - t0;
    cmp_ok(took, "<", 5000, "bounded (%lld ms)", took);
    ok(strstr(err.msg, "1 processes still in netns 'lab1'") != NULL, "message: %s", err.msg);
    ok(k.n >= 1 && k.pids[0] == 200, "it kept trying pid 200 (%d tries)", k.n);
    h.power.timeout_ns = 5000000000ull;

    /* lab on: ip netns exec NETNS /bin/sh -c START, via a fake ip. */
    snprintf(ip, sizeof ip, "%s/fake-ip", dir);
    FILE *f = fopen(ip, "w");
    fprintf(f, "#!/bin/sh\necho \"$1 $2 $3 $4\" >> %s/ip.log\nshift 3\nexec \"$@\"\n", dir);
    fclose(f);
    chmod(ip, 0755);
    env.ip = ip;
    is_int(power_on(&env, &h, &err), 0, "lab on (%s)", err.msg);
    is(slurp("ip.log"), "netns exec lab1 /bin/sh\n", "ran through ip netns exec lab1");
    is(slurp("on.log"), "started h1\n", "the start template ran inside");
    h.power.start = "echo no >&2; exit 4";
    is_int(power_on(&env, &h, &err), NERR_IO, "failing start -> NERR_IO");
    ok(strstr(err.msg, "status 4") && strstr(err.msg, "no"), "message: %s", err.msg);

    /* Refusals: the root namespace and our own, before any kill. */
    k.n = 0;
    rm("ip.log");
    h.power.start = tmpl("touch DIR/ran");
    h.power.netns = "rootns";
    refused(&env, &h, "network namespace of init", "netns = PROC/1/ns/net");
    h.power.netns = "selfns";
    refused(&env, &h, "network namespace of nines itself", "netns = PROC/self/ns/net");
    is_int(k.n, 0, "no kill was attempted");
    ok(!exists("ip.log"), "ip was never run");
    h.power.netns = "nope";
    is_int(power_off(&env, &h, &err), NERR_NOTFOUND, "missing netns -> NERR_NOTFOUND");

    /* The same refusal against the real /proc: a netns file that is this
     * process's namespace. The kill is still the recorder, so even a wrong
     * answer could not hurt anything. */
    char real[PATH_MAX];
    snprintf(real, sizeof real, "%s/netns/real-self", dir);
    ok(symlink("/proc/self/ns/net", real) == 0, "symlink to our own netns");
    env.proc_root = "/proc";
    h.power.netns = "real-self";
    refused(&env, &h, "this machine", "real /proc: our own namespace");
    is_int(k.n, 0, "no kill was attempted");
}

/* --- lab with labfs: the power cut's order, on fakes -------------------------- */

/* One log for signals and file-system calls, so the order between them is
 * what is checked. */
struct cut {
    char log[4096];
    int mounted, crashed, frozen;
    int fail_crash;
    const char *proc;
    char mount_args[512];
};

static void cut_add(struct cut *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cut_add(struct cut *c, const char *fmt, ...)
{
    size_t n = strlen(c->log);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->log + n, sizeof c->log - n, fmt, ap);
    va_end(ap);
}

static int cut_kill(void *arg, pid_t pid, int sig)
{
    struct cut *c = arg;
    cut_add(c, "%s %d;", sig == SIGSTOP ? "STOP" : sig == SIGKILL ? "KILL" : "SIG?", (int)pid);
    if (sig == SIGKILL) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%d/ns/net", c->proc, (int)pid);
        unlink(p);
    }
    return 0;
}

static int cut_control(void *arg, const char *mnt, const char *cmd, char *reply, size_t cap,
                       struct nerr *err)
{
    struct cut *c = arg;
    if (strcmp(cmd, "stats") != 0)
        cut_add(c, "%s;", cmd);
    if (!c->mounted)
        return nerr_set(err, NERR_NOTFOUND, "not a labfs mount");
    if (!strcmp(cmd, "freeze"))
        c->frozen = 1;
    if (!strcmp(cmd, "crash") || !strcmp(cmd, "torn")) {
        if (c->fail_crash)
            return nerr_set(err, NERR_INVALID, "labfs %s: error injected", mnt);
        c->crashed = 1;
        c->frozen = 0;
    }
    snprintf(reply, cap, "ok pid=4242 crashed=%d frozen=%d dirty_bytes=8192 fsyncs=3 seed=7",
             c->crashed, c->frozen);
    return 0;
}

static int cut_umount(void *arg, const char *mnt, int lazy, int timeout_ms, struct nerr *err)
{
    struct cut *c = arg;
    cut_add(c, "umount%s %s;", lazy ? " -l" : "", strrchr(mnt, '/') + 1);
    c->mounted = c->crashed = c->frozen = 0;
    return 0;
}

static int cut_mount(void *arg, const char *backing, const char *mnt, const char *log,
                     uint64_t seed, struct nerr *err)
{
    struct cut *c = arg;
    cut_add(c, "mount;");
    snprintf(c->mount_args, sizeof c->mount_args, "%s|%s|%s", backing, mnt, log);
    c->mounted = 1;
    return 0;
}

static int cut_mounted(void *arg, const char *mnt)
{
    return ((struct cut *)arg)->mounted;
}

static void test_lab_fs(void)
{
    struct power_env env;
    struct cut c = {0};
    struct nerr err;
    char proc[PATH_MAX], netns[PATH_MAX], ip[PATH_MAX], fs[PATH_MAX], want[PATH_MAX * 3];
    snprintf(proc, sizeof proc, "%s/proc", dir);
    snprintf(netns, sizeof netns, "%s/netns", dir);
    snprintf(ip, sizeof ip, "%s/fake-ip", dir);
    snprintf(fs, sizeof fs, "%s/hosts/h1/data", dir);
    power_env_default(&env);
    env.proc_root = proc;
    env.netns_dir = netns;
    env.ip = ip;
    env.kill_fn = cut_kill;
    env.kill_arg = &c;
    env.fs_control = cut_control;
    env.fs_umount = cut_umount;
    env.fs_mount = cut_mount;
    env.fs_mounted = cut_mounted;
    env.fs_arg = &c;
    c.proc = proc;

    struct inv_host h = host("h1", "10.77.0.11", INV_DRIVER_LAB);
    h.power.netns = "lab1";
    h.power.start = tmpl("echo booted >> DIR/fs-on.log");
    h.power.fs = fs;

    /* Layout: backing and log beside the mount point. */
    char b[PATH_MAX], l[PATH_MAX];
    is_int(power_lab_fs_layout("/lab/hosts/h1/data", b, sizeof b, l, sizeof l, &err), 0, "layout");
    is(b, "/lab/hosts/h1/backing", "backing beside the mount point");
    is(l, "/lab/hosts/h1/log/labfs.log", "log in log/ beside it");
    is_int(power_lab_fs_layout("/data", b, sizeof b, l, sizeof l, &err), NERR_INVALID,
           "a mount point right under / has no parent of its own");

    /* Power on of a host whose fs is not mounted: mount first, then boot. */
    fake_proc(); /* 100 and 300 live in lab1 again */
    is_int(power_on(&env, &h, &err), 0, "lab on with fs (%s)", err.msg);
    is(c.log, "mount;", "mounted (the status probe sent no command)");
    snprintf(want, sizeof want, "%s/hosts/h1/backing|%s|%s/hosts/h1/log/labfs.log", dir, fs, dir);
    is(c.mount_args, want, "over the backing beside it, log beside it");
    is(slurp("fs-on.log"), "booted\n", "then the start template ran");

    enum power_state ps;
    char detail[256];
    is_int(power_status(&env, &h, &ps, detail, sizeof detail, &err), 0, "status");
    is(detail, "2 processes, labfs mounted dirty_bytes=8192 fsyncs=3 seed=7",
       "status reports the fs and its counters");

    /* The power cut: freeze, STOP all, crash, KILL all, unmount. */
    c.log[0] = '\0';
    is_int(power_off(&env, &h, &err), 0, "lab off with fs (%s)", err.msg);
    is(c.log, "freeze;STOP 100;STOP 300;crash;KILL 100;KILL 300;umount data;",
       "freeze -> SIGSTOP every process -> crash -> SIGKILL every process -> unmount");
    ok(!c.mounted, "nothing mounted afterwards");
    is_int(power_status(&env, &h, &ps, detail, sizeof detail, &err), 0, "status when off");
    is(detail, "0 processes, labfs unmounted", "off, fs unmounted");
    ok(ps == POWER_OFF, "power state off");

    /* fs_mode torn is the default when the inventory says so; a playbook
     * mode overrides it. */
    fake_proc();
    c.mounted = 1;
    c.log[0] = '\0';
    h.power.fs_mode = INV_FS_TORN;
    is_int(power_off(&env, &h, &err), 0, "torn off");
    is(c.log, "freeze;STOP 100;STOP 300;torn;KILL 100;KILL 300;umount data;",
       "fs_mode torn: the same order with torn");
    fake_proc();
    c.mounted = 1;
    c.log[0] = '\0';
    is_int(power_off_as(&env, &h, POWER_OFF_CRASH, &err), 0, "mode crash over fs_mode torn");
    is(c.log, "freeze;STOP 100;STOP 300;crash;KILL 100;KILL 300;umount data;",
       "the explicit mode wins");
    h.power.fs_mode = INV_FS_CRASH;

    /* kill: the old semantics, the fs untouched and still mounted. */
    fake_proc();
    c.mounted = 1;
    c.log[0] = '\0';
    is_int(power_off_as(&env, &h, POWER_OFF_KILL, &err), 0, "mode kill");
    is(c.log, "KILL 100;KILL 300;", "kill: SIGKILL only, no labfs command, no unmount");
    ok(c.mounted, "the labfs stays mounted, with its memory");

    /* Power on over a live, uncrashed mount keeps it; over a crashed one
     * remounts. */
    c.log[0] = '\0';
    is_int(power_on(&env, &h, &err), 0, "on over a live mount");
    is(c.log, "", "a live mount is kept");
    c.crashed = 1;
    is_int(power_on(&env, &h, &err), 0, "on over a crashed mount");
    is(c.log, "umount data;mount;", "a crashed mount is unmounted and mounted afresh");

    /* A failing crash: the processes still die and the mount still goes,
     * but the power-off reports that unsynced writes may have survived. */
    fake_proc();
    c.log[0] = '\0';
    c.fail_crash = 1;
    is_int(power_off(&env, &h, &err), NERR_INVALID, "failing crash -> error");
    ok(strstr(err.msg, "unsynced writes may have survived") != NULL, "message: %s", err.msg);
    is(c.log, "freeze;STOP 100;STOP 300;crash;KILL 100;KILL 300;umount data;",
       "but every process was killed and the fs unmounted");
    c.fail_crash = 0;

    /* Off twice: nothing mounted, no process: fine, and nothing is sent. */
    c.log[0] = '\0';
    is_int(power_off(&env, &h, &err), 0, "off when already off (%s)", err.msg);
    is(c.log, "", "no freeze, no signal, no unmount");

    /* crash/torn without labfs is refused before anything happens. */
    fake_proc();
    h.power.fs = NULL;
    c.log[0] = '\0';
    is_int(power_off_as(&env, &h, POWER_OFF_TORN, &err), NERR_INVALID, "torn without fs refused");
    ok(strstr(err.msg, "needs a labfs") != NULL, "message: %s", err.msg);
    is(c.log, "", "nothing was signalled");
    is_int(power_off(&env, &h, &err), 0, "default without fs = kill");
    is(c.log, "KILL 100;KILL 300;", "SIGKILL only");

    /* The SAFETY refusal holds with fs too: no freeze, no signal. */
    h.power.fs = fs;
    h.power.netns = "rootns";
    c.mounted = 1;
    c.log[0] = '\0';
    is_int(power_off(&env, &h, &err), NERR_INVALID, "root netns refused with fs");
    is(c.log, "", "no labfs command and no signal before the refusal");

    /* Two hosts at one instant: each phase over both before the next. */
    char fs2[PATH_MAX];
    snprintf(fs2, sizeof fs2, "%s/hosts/h2/data", dir);
    fake_proc();
    link_rel("proc/200/ns/net", "netns/lab2");
    struct inv_host h2 = host("h2", "10.77.0.12", INV_DRIVER_LAB);
    h2.power.netns = "lab2";
    h2.power.start = "true";
    h2.power.fs = fs2;
    h.power.netns = "lab1";
    c.mounted = 1;
    c.log[0] = '\0';
    const struct inv_host *both[] = {&h, &h2};
    is_int(power_off_group(&env, both, 2, POWER_OFF_DEFAULT, &err), 0, "group off (%s)", err.msg);
    is(c.log,
       "freeze;freeze;STOP 100;STOP 300;STOP 200;crash;crash;KILL 100;KILL 300;KILL 200;"
       "umount data;umount data;",
       "freeze both, stop both, crash both, kill both, unmount both");
    /* A refusal of one host stops the whole group before anything happens. */
    fake_proc();
    c.mounted = 1;
    c.log[0] = '\0';
    h2.power.fs = NULL;
    is_int(power_off_group(&env, both, 2, POWER_OFF_TORN, &err), NERR_INVALID,
           "group with a host that cannot be torn: refused");
    is(c.log, "", "no host was touched");
    h2.power.fs = fs2;

    /* Mode names. */
    enum power_off_mode m = POWER_OFF_DEFAULT;
    ok(power_off_mode_parse("torn", &m) == 0 && m == POWER_OFF_TORN, "parse torn");
    ok(power_off_mode_parse("kill", &m) == 0 && m == POWER_OFF_KILL, "parse kill");
    is_int(power_off_mode_parse("zap", &m), NERR_INVALID, "parse zap -> NERR_INVALID");
}

/* --- qmp, against a fake server thread --------------------------------------- */

struct fake_qmp {
    char path[100];
    int listen_fd;
    int mute; /* greet, then never answer (but obey quit) */
    int running;
    char cmds[32][32];
    int n_cmds;
    int conns;
    pthread_t thr;
};

static void qsend(int fd, const char *s)
{
    if (write(fd, s, strlen(s)) < 0) {
    }
}

static void *qmp_server(void *arg)
{
    struct fake_qmp *q = arg;
    long long end = ms_now() + 10000;
    int quit = 0;
    while (!quit && ms_now() < end) {
        struct pollfd pf = {.fd = q->listen_fd, .events = POLLIN};
        if (poll(&pf, 1, 100) <= 0)
            continue;
        int c = accept(q->listen_fd, NULL, NULL);
        if (c < 0)
            continue;
        q->conns++;
        qsend(c, "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 8}}, \"capabilities\": []}}\r\n");
        char buf[4096];
        size_t len = 0;
        while (ms_now() < end) {
            struct pollfd cp = {.fd = c, .events = POLLIN};
            if (poll(&cp, 1, 100) <= 0)
                continue;
            ssize_t r = read(c, buf + len, sizeof buf - 1 - len);
            if (r <= 0)
                break;
            len += (size_t)r;
            char *nl;
            while ((nl = memchr(buf, '\n', len))) {
                json_t *j = json_loadb(buf, (size_t)(nl - buf), 0, NULL);
                const char *cmd = json_string_value(json_object_get(j, "execute"));
                if (cmd && q->n_cmds < 32)
                    snprintf(q->cmds[q->n_cmds++], 32, "%s", cmd);
                if (cmd && q->mute && strcmp(cmd, "quit") == 0) {
                    quit = 1; /* even a mute server stops when the test says so */
                } else if (!q->mute && cmd) {
                    if (strcmp(cmd, "query-status") == 0) {
                        qsend(c, "{\"event\": \"RESUME\", \"timestamp\": {}}\r\n");
                        qsend(c, q->running ? "{\"return\": {\"status\": \"running\", "
                                              "\"running\": true}}\r\n"
                                            : "{\"return\": {\"status\": \"paused\", "
                                              "\"running\": false}}\r\n");
                    } else if (strcmp(cmd, "nope") == 0) {
                        qsend(c, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": "
                                 "\"no\"}}\r\n");
                    } else {
                        if (strcmp(cmd, "cont") == 0)
                            q->running = 1;
                        qsend(c, "{\"return\": {}}\r\n");
                        if (strcmp(cmd, "quit") == 0)
                            quit = 1;
                    }
                }
                json_decref(j);
                memmove(buf, nl + 1, len - (size_t)(nl + 1 - buf));
                len -= (size_t)(nl + 1 - buf);
            }
            if (quit)
                break;
        }
        close(c);
    }
    /* QEMU gone: nothing listens any more. */
    close(q->listen_fd);
    unlink(q->path);
    return NULL;
}

static void qmp_start(struct fake_qmp *q, int mute, int running)
{
    memset(q->cmds, 0, sizeof q->cmds);
    q->n_cmds = q->conns = 0;
    q->mute = mute;
    q->running = running;
    snprintf(q->path, sizeof q->path, "%s/h1.qmp", dir);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", q->path);
    q->listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    unlink(q->path);
    if (bind(q->listen_fd, (struct sockaddr *)&sa, sizeof sa) || listen(q->listen_fd, 4))
        diag("bind %s: %s", q->path, strerror(errno));
    pthread_create(&q->thr, NULL, qmp_server, q);
}

/* Stops a server that did not get quit: connect and send quit ourselves. */
static void qmp_stop(struct fake_qmp *q, int already_quit)
{
    if (!already_quit) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", q->path);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            qsend(fd, "{\"execute\": \"quit\"}\n");
        pthread_join(q->thr, NULL);
        close(fd);
    } else {
        pthread_join(q->thr, NULL);
    }
}

static void cmds_are(struct fake_qmp *q, const char *want, const char *what)
{
    char got[512] = "";
    for (int i = 0; i < q->n_cmds; i++) {
        strcat(got, i ? "," : "");
        strcat(got, q->cmds[i]);
    }
    is(got, want, "%s: commands the server got", what);
}

static void test_qmp(void)
{
    struct power_env env;
    struct nerr err;
    struct fake_qmp q;
    enum power_state s;
    char detail[64];
    power_env_default(&env);
    struct inv_host h = host("h1", "192.0.2.10", INV_DRIVER_QMP);
    char sock[PATH_MAX];
    snprintf(sock, sizeof sock, "%s/h1.qmp", dir);
    h.power.socket = sock;

    qmp_start(&q, 0, 1);
    is_int(power_status(&env, &h, &s, detail, sizeof detail, &err), 0, "qmp status (%s)", err.msg);
    ok(s == POWER_ON, "running -> on (an event before the reply was skipped)");
    is(detail, "running", "detail");
    is_int(power_off(&env, &h, &err), 0, "qmp off (%s)", err.msg);
    qmp_stop(&q, 1);
    cmds_are(&q, "qmp_capabilities,query-status,qmp_capabilities,quit", "status then off");
    is_int(power_status(&env, &h, &s, detail, sizeof detail, &err), 0, "status with no QEMU");
    ok(s == POWER_OFF, "nothing listening -> off");
    is(detail, "not running", "detail");
    is_int(power_off(&env, &h, &err), 0, "off when already off is fine");
    is_int(power_on(&env, &h, &err), NERR_CLOSED, "on with no QEMU and no start -> NERR_CLOSED");
    ok(strstr(err.msg, "no start command") != NULL, "message: %s", err.msg);
    h.power.start = tmpl("echo start {name} >> DIR/qstart.log");
    is_int(power_on(&env, &h, &err), 0, "on with no QEMU runs the start template");
    is(slurp("qstart.log"), "start h1\n", "it ran");
    rm("qstart.log");

    qmp_start(&q, 0, 0);
    power_status(&env, &h, &s, detail, sizeof detail, &err);
    ok(s == POWER_OFF && strcmp(detail, "paused") == 0, "paused -> off, detail 'paused'");
    is_int(power_on(&env, &h, &err), 0, "qmp on (%s)", err.msg);
    ok(!exists("qstart.log"), "QEMU listening: start template not used");
    power_status(&env, &h, &s, detail, sizeof detail, &err);
    ok(s == POWER_ON, "running after on");
    qmp_stop(&q, 0);
    cmds_are(&q,
             "qmp_capabilities,query-status,qmp_capabilities,system_reset,cont,"
             "qmp_capabilities,query-status,quit",
             "on = system_reset + cont");

    /* A QEMU that greets and then says nothing: bounded by the timeout. */
    qmp_start(&q, 1, 1);
    h.power.timeout_ns = 300000000ull;
    long long t0 = ms_now();
    is_int(power_status(&env, &h, &s, detail, sizeof detail, &err), NERR_TIMEOUT,
           "mute QMP -> NERR_TIMEOUT");
    long long took = ms_now() - t0;
    cmp_ok(took, "<", 4000, "within the bound (%lld ms), not the 5 s default", took);
    qmp_stop(&q, 0);
    h.power.timeout_ns = 5000000000ull;

    /* Refused on a local address before connecting at all. */
    qmp_start(&q, 0, 1);
    h.address = "127.0.0.1";
    h.power.start = tmpl("touch DIR/ran");
    refused(&env, &h, "loopback", "qmp on 127.0.0.1");
    qmp_stop(&q, 0);
    is_int(q.conns, 1, "the server saw only the test's own stop connection");
    cmds_are(&q, "quit", "no command came from the refused calls");
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/nines-power-XXXXXX");
    if (!mkdtemp(dir))
        bail_out("mkdtemp");
    test_templates();
    test_command();
    test_refusals();
    test_lab();
    test_lab_fs();
    test_qmp();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        diag("cleanup of %s failed", dir);
    return done_testing();
}
