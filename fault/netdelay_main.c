/*
 * netdelay_main.c — nines-netdelay, the host-side half of the degrade fault
 * kind's latency on a kernel without netem (fault/degrade.c): it binds an
 * NFQUEUE queue in the network namespace it runs in, holds every packet
 * the kind's iptables rule queues there for latency +- jitter, then accepts
 * it (the schedule: fault/netdelay.h).
 *
 *   nines-netdelay --queue N --latency 200ms [--jitter 20ms] --max-seconds S
 *                  [--max-held 4096] [--seed N] [--pid-file PATH]
 *                  [--daemon [--log PATH]]
 *
 * Why a tool on the host: without sch_netem the kernel cannot hold a packet
 * for a time; NFQUEUE hands it to user space, which can. The kind uploads
 * this binary to DATA/nines-netdelay, as bit_rot does its tool, and starts
 * it with --daemon over SSH before it installs the rules.
 *
 * Bounds and failure behaviour:
 *  - at most --max-held packets are held; more are accepted at once and
 *    counted (a line in the log the first time, and in the summary);
 *  - the queue is bound with NFQA_CFG_F_FAIL_OPEN and a kernel queue
 *    length of max-held + 1024: a packet the kernel cannot queue or tell us
 *    about passes instead of being dropped (a gap in the packet ids is
 *    counted as such), and the kind's rules carry --queue-bypass, so when
 *    this process is gone the links are normal again, never black-holed;
 *  - it exits after --max-seconds (the kind sets it from the step's
 *    timeout plus a margin), and on SIGTERM, SIGINT or SIGHUP; either way
 *    it first accepts every packet it holds, removes its pid file (when it
 *    still names this process) and prints a summary.
 * --daemon: the process forks; the child starts a session of its own, binds
 * the queue, writes the pid file and then tells the parent, which prints
 * "nines-netdelay: pid N, queue Q" and exits 0, or prints the child's error
 * and exits 1. So a command that started it knows the queue is bound.
 *
 * Exit status: 0 (stopped by a signal or at --max-seconds), 1 failed (a
 * message on stderr), 2 bad usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <linux/netlink.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fault/netdelay.h"

#define QUEUE_SLACK 1024    /* kernel queue length beyond max-held */
#define RCVBUF (8 << 20)    /* the netlink socket's receive buffer */
#define READS_PER_ROUND 256 /* messages read before releasing again */
#define READY_WAIT_MS 10000 /* --daemon: the parent's wait for the child */

struct delayer {
    struct netdelay_opts o;
    struct netdelay_sched s;
    struct nfq_handle *h;
    struct nfq_q_handle *qh;
    uint32_t last_id; /* the last packet id seen, 0 none */
    uint64_t skipped; /* ids never delivered to us: the kernel let them pass */
    uint64_t verdict_errors;
    int over_said;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, NETDELAY_TOOL ": %s\n", line);
}

static void accept_now(struct delayer *d, uint32_t id)
{
    if (nfq_set_verdict(d->qh, id, NF_ACCEPT, 0, NULL) < 0)
        d->verdict_errors++;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *m, struct nfq_data *nfa, void *arg)
{
    (void)qh, (void)m;
    struct delayer *d = arg;
    struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
    if (!ph)
        return 0;
    uint32_t id = ntohl(ph->packet_id);
    /* Ids are consecutive per queue: one we never got was a message the
     * socket could not take, which fail-open let pass. */
    if (d->last_id && id > d->last_id + 1)
        d->skipped += id - d->last_id - 1;
    if (id > d->last_id)
        d->last_id = id;
    if (netdelay_sched_add(&d->s, id, now_ns(), NULL) == NETDELAY_OVER) {
        accept_now(d, id);
        if (!d->over_said) {
            say("%zu packets held (--max-held): accepting further packets at once, "
                "undelayed, until some are released (counted in the summary)",
                d->o.max_held);
            d->over_said = 1;
        }
    }
    return 0;
}

/* Binds the queue; 0, or -1 with the reason in why. */
static int bind_queue(struct delayer *d, char *why, size_t cap)
{
    if (!(d->h = nfq_open())) {
        snprintf(why, cap, "cannot open an nfnetlink socket: %s", strerror(errno));
        return -1;
    }
    /* A no-op on kernels >= 3.8; older ones need it. */
    nfq_bind_pf(d->h, AF_INET);
    nfq_bind_pf(d->h, AF_INET6);
    if (!(d->qh = nfq_create_queue(d->h, (uint16_t)d->o.queue, on_packet, d))) {
        snprintf(why, cap,
                 "cannot bind NFQUEUE queue %u: %s (another process holds it, no "
                 "CAP_NET_ADMIN, or no CONFIG_NETFILTER_NETLINK_QUEUE)",
                 d->o.queue, strerror(errno));
        return -1;
    }
    /* Only the id is needed: no payload is copied to us. */
    if (nfq_set_mode(d->qh, NFQNL_COPY_META, 0) < 0) {
        snprintf(why, cap, "queue %u: cannot set copy mode: %s", d->o.queue, strerror(errno));
        return -1;
    }
    if (nfq_set_queue_flags(d->qh, NFQA_CFG_F_FAIL_OPEN, NFQA_CFG_F_FAIL_OPEN) < 0) {
        snprintf(why, cap, "queue %u: the kernel refuses fail-open (NFQA_CFG_F_FAIL_OPEN): %s",
                 d->o.queue, strerror(errno));
        return -1;
    }
    if (nfq_set_queue_maxlen(d->qh, (uint32_t)(d->o.max_held + QUEUE_SLACK)) < 0) {
        snprintf(why, cap, "queue %u: cannot set its length: %s", d->o.queue, strerror(errno));
        return -1;
    }
    int fd = nfq_fd(d->h), one = 1, sz = RCVBUF;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    /* An overrun is no error to us: fail-open passed those packets. */
    setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return 0;
}

static int write_pid_file(const char *path, char *why, size_t cap)
{
    char tmp[4096], text[32];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        snprintf(why, cap, "--pid-file: path too long");
        return -1;
    }
    int n = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, text, (size_t)n) != n || close(fd) < 0 || rename(tmp, path) < 0) {
        snprintf(why, cap, "cannot write the pid file %s: %s", path, strerror(errno));
        if (fd >= 0)
            unlink(tmp);
        return -1;
    }
    return 0;
}

/* Removes the pid file when it still names this process (a newer delayer
 * may have replaced it). */
static void remove_pid_file(const char *path)
{
    char buf[32] = {0};
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n > 0 && atol(buf) == (long)getpid())
        unlink(path);
}

/* The main loop: until a signal or the deadline. Returns what ended it. */
static const char *run(struct delayer *d, int sfd)
{
    uint64_t end = now_ns() + (uint64_t)d->o.max_seconds * 1000000000ull;
    int fd = nfq_fd(d->h);
    static char buf[65536] __attribute__((aligned));
    for (;;) {
        uint64_t t = now_ns();
        struct netdelay_pkt p;
        while (netdelay_sched_pop_due(&d->s, t, &p))
            accept_now(d, p.id);
        if (t >= end)
            return "--max-seconds reached";
        uint64_t next = netdelay_sched_next(&d->s);
        uint64_t wake = next < end ? next : end;
        uint64_t wait = wake > t ? wake - t : 0;
        struct timespec ts = {(time_t)(wait / 1000000000ull), (long)(wait % 1000000000ull)};
        struct pollfd pf[2] = {{fd, POLLIN, 0}, {sfd, POLLIN, 0}};
        int r = ppoll(pf, 2, &ts, NULL);
        if (r < 0 && errno != EINTR) {
            say("poll: %s", strerror(errno));
            return "an error";
        }
        if (r > 0 && pf[1].revents) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
                return si.ssi_signo == SIGTERM  ? "SIGTERM"
                       : si.ssi_signo == SIGINT ? "SIGINT"
                                                : "SIGHUP";
        }
        if (r > 0 && pf[0].revents) {
            for (int i = 0; i < READS_PER_ROUND; i++) {
                ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
                if (n < 0 && errno == EINTR)
                    continue;
                /* ENOBUFS: messages lost, their packets passed (fail-open). */
                if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS) {
                    say("reading the queue: %s", strerror(errno));
                    return "an error";
                }
                if (n <= 0)
                    break;
                nfq_handle_packet(d->h, buf, (int)n);
            }
        }
    }
}

/* --daemon: the parent's side. Waits for the child's word. */
static int parent_wait(int rfd, pid_t child)
{
    char msg[1024] = {0};
    size_t len = 0;
    struct pollfd pf = {rfd, POLLIN, 0};
    uint64_t end = now_ns() + READY_WAIT_MS * 1000000ull;
    while (len < sizeof msg - 1) {
        uint64_t t = now_ns();
        if (t >= end)
            break;
        if (poll(&pf, 1, (int)((end - t) / 1000000ull) + 1) <= 0)
            continue;
        ssize_t n = read(rfd, msg + len, sizeof msg - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    if (!strncmp(msg, "ok", 2)) {
        printf(NETDELAY_TOOL ": pid %ld%s\n", (long)child, msg + 2);
        return 0;
    }
    if (!len)
        snprintf(msg, sizeof msg, "the delayer (pid %ld) said nothing within %d ms", (long)child,
                 READY_WAIT_MS);
    fprintf(stderr, NETDELAY_TOOL ": %s\n", msg);
    return 1;
}

int main(int argc, char **argv)
{
    struct delayer d = {0};
    char why[512];
    int rc = netdelay_parse_args(argc, argv, &d.o, why, sizeof why);
    if (rc == NETDELAY_HELP) {
        fputs(netdelay_usage, stdout);
        return 0;
    }
    if (rc) {
        fprintf(stderr, NETDELAY_TOOL ": %s\n%s", why, netdelay_usage);
        return 2;
    }
    if (!d.o.seeded && getrandom(&d.o.seed, sizeof d.o.seed, 0) != (ssize_t)sizeof d.o.seed)
        d.o.seed = now_ns() ^ (uint64_t)getpid();

    int ready = -1; /* --daemon: the child's end of the pipe to the parent */
    if (d.o.daemon) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) {
            perror(NETDELAY_TOOL ": pipe");
            return 1;
        }
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            perror(NETDELAY_TOOL ": fork");
            return 1;
        }
        if (pid > 0) {
            close(p[1]);
            return parent_wait(p[0], pid);
        }
        close(p[0]);
        ready = p[1];
        setsid();
        const char *log = d.o.log_file ? d.o.log_file : "/dev/null";
        int in = open("/dev/null", O_RDONLY), out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (in < 0 || out < 0) {
            dprintf(ready, "cannot open %s: %s", log, strerror(errno));
            return 1;
        }
        dup2(in, 0), dup2(out, 1), dup2(out, 2);
        close(in), close(out);
    }
    setvbuf(stderr, NULL, _IOLBF, 0);

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM), sigaddset(&mask, SIGINT), sigaddset(&mask, SIGHUP);
    signal(SIGPIPE, SIG_IGN);
    int sfd = -1;
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 || (sfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0) {
        snprintf(why, sizeof why, "signalfd: %s", strerror(errno));
        goto fail;
    }
    if (netdelay_sched_init(&d.s, d.o.max_held, d.o.latency_ns, d.o.jitter_ns, d.o.seed)) {
        snprintf(why, sizeof why, "out of memory for %zu held packets", d.o.max_held);
        goto fail;
    }
    if (bind_queue(&d, why, sizeof why) ||
        (d.o.pid_file && write_pid_file(d.o.pid_file, why, sizeof why)))
        goto fail;
    say("pid %ld: queue %u, latency %lluus, jitter %lluus, max held %zu, max %u s", (long)getpid(),
        d.o.queue, (unsigned long long)(d.o.latency_ns / 1000),
        (unsigned long long)(d.o.jitter_ns / 1000), d.o.max_held, d.o.max_seconds);
    if (ready >= 0) {
        dprintf(ready, "ok, queue %u", d.o.queue);
        close(ready);
        ready = -1;
    }

    const char *why_end = run(&d, sfd);
    size_t left = d.s.n;
    struct netdelay_pkt p;
    while (netdelay_sched_pop_due(&d.s, UINT64_MAX, &p))
        accept_now(&d, p.id);
    say("stopping (%s): released %zu held packets at once; in all %llu held and released, %llu "
        "accepted undelayed over --max-held %zu (peak %zu held), %llu passed undelayed by the "
        "kernel (socket full), %llu verdicts failed",
        why_end, left, (unsigned long long)d.s.st.released, (unsigned long long)d.s.st.over,
        d.o.max_held, d.s.st.peak, (unsigned long long)d.skipped,
        (unsigned long long)d.verdict_errors);
    remove_pid_file(d.o.pid_file);
    nfq_destroy_queue(d.qh);
    nfq_close(d.h);
    netdelay_sched_free(&d.s);
    return strcmp(why_end, "an error") ? 0 : 1;

fail:
    say("%s", why);
    if (ready >= 0)
        dprintf(ready, "%s", why);
    if (d.qh)
        nfq_destroy_queue(d.qh);
    if (d.h)
        nfq_close(d.h);
    netdelay_sched_free(&d.s);
    return 1;
}
