/* chaos/power.c — power drivers; see power.h for the contract and SAFETY. */
#include "chaos/power.h"
#include "chaos/labfs.h"
#include "net/shquote.h"
#include "lib/fsutil.h"
#include "lib/strbuf.h"

#include "lib/log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <ifaddrs.h>
#include <jansson.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TEMPLATE_MAX 8192
#define QMP_LINE_MAX 65536
#define QMP_MAX_MESSAGES 256 /* events skipped while waiting for one reply */

/* --- time ------------------------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long timeout_ms_of(const struct inv_host *h)
{
    uint64_t ns = h->power.timeout_ns ? h->power.timeout_ns : INV_DEFAULT_TIMEOUT_NS;
    return (long)(ns / 1000000u);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Appends s quoted for POSIX sh (chaos/shquote.h, the one quoting the SSH
 * layer uses too). */
static void strbuf_add_quoted(struct strbuf *b, const char *s)
{
    char *q = NULL;
    if (shquote_arg(s, &q, NULL) != 0) {
        b->oom = 1;
        return;
    }
    strbuf_add(b, q, strlen(q));
    free(q);
}

/* --- templates ------------------------------------------------------------- */

enum { PH_NAME = 1, PH_ADDRESS = 2, PH_AZ = 4, PH_RACK = 8, PH_DATA = 16 };

static const struct {
    const char *name;
    unsigned bit;
} placeholders[] = {
    {"name", PH_NAME}, {"address", PH_ADDRESS}, {"az", PH_AZ}, {"rack", PH_RACK}, {"data", PH_DATA},
};

static const char *ph_value(const struct inv_host *h, unsigned bit)
{
    switch (bit) {
    case PH_NAME:
        return h->name;
    case PH_ADDRESS:
        return h->address;
    case PH_AZ:
        return h->az;
    case PH_RACK:
        return h->rack;
    case PH_DATA:
        return h->data;
    }
    return "";
}

/* Walks tmpl once: checks it, records the placeholders used, and when h and
 * out are given writes the expansion. */
static int tmpl_walk(const char *tmpl, const struct inv_host *h, struct strbuf *out, unsigned *used,
                     struct nerr *err)
{
    size_t len = strlen(tmpl);
    if (len > TEMPLATE_MAX)
        return nerr_set(err, NERR_INVALID, "template longer than %d bytes", TEMPLATE_MAX);
    for (size_t i = 0; i < len;) {
        char c = tmpl[i];
        if (c == '{' && tmpl[i + 1] == '{') {
            if (out)
                strbuf_add(out, "{", 1);
            i += 2;
        } else if (c == '}' && tmpl[i + 1] == '}') {
            if (out)
                strbuf_add(out, "}", 1);
            i += 2;
        } else if (c == '}') {
            return nerr_set(err, NERR_INVALID,
                            "unbalanced '}' at offset %zu of the template (write '}}' for a "
                            "literal brace)",
                            i);
        } else if (c == '{') {
            const char *end = strchr(tmpl + i + 1, '}');
            if (!end)
                return nerr_set(err, NERR_INVALID,
                                "unbalanced '{' at offset %zu of the template (write '{{' for a "
                                "literal brace)",
                                i);
            size_t n = (size_t)(end - (tmpl + i + 1));
            unsigned bit = 0;
            for (size_t k = 0; k < sizeof placeholders / sizeof placeholders[0]; k++)
                if (strlen(placeholders[k].name) == n &&
                    memcmp(placeholders[k].name, tmpl + i + 1, n) == 0)
                    bit = placeholders[k].bit;
            if (!bit)
                return nerr_set(err, NERR_INVALID,
                                "unknown placeholder '{%.*s}' (known: {name}, {address}, {az}, "
                                "{rack}, {data})",
                                (int)(n > 40 ? 40 : n), tmpl + i + 1);
            if (used)
                *used |= bit;
            if (out && h)
                strbuf_add_quoted(out, ph_value(h, bit));
            i += n + 2;
        } else {
            if (out)
                strbuf_add(out, &c, 1);
            i++;
        }
    }
    return 0;
}

int power_template_expand(const char *tmpl, const struct inv_host *h, char **out, struct nerr *err)
{
    struct strbuf b = {0};
    int rc = tmpl_walk(tmpl, h, h && out ? &b : NULL, NULL, err);
    if (rc == 0 && h && out)
        return strbuf_finish(&b, out) ? nerr_set(err, NERR_NOMEM, "out of memory") : 0;
    strbuf_free(&b);
    return rc;
}

/* --- running a command under a deadline ------------------------------------ */

struct capture {
    int fd;
    char *buf; /* may be NULL: read and discard */
    size_t len;
};

/* Reads what is there; returns 1 at EOF or error, else 0. */
static int capture_read(struct capture *c)
{
    char tmp[4096];
    ssize_t r = read(c->fd, tmp, sizeof tmp);
    if (r < 0)
        return errno == EINTR || errno == EAGAIN ? 0 : 1;
    if (r == 0)
        return 1;
    if (c->buf && c->len < POWER_OUT_MAX) {
        size_t n = (size_t)r;
        if (n > POWER_OUT_MAX - c->len)
            n = POWER_OUT_MAX - c->len;
        memcpy(c->buf + c->len, tmp, n);
        c->len += n;
        c->buf[c->len] = '\0';
    }
    return 0;
}

int power_run(char *const argv[], long timeout_ms, int *status, char *out, char *errout,
              struct nerr *err)
{
    int po[2] = {-1, -1}, pe[2] = {-1, -1}, devnull = -1, rc = 0, st = 0;
    pid_t pid = -1;
    struct capture cap[2] = {{.fd = -1, .buf = out}, {.fd = -1, .buf = errout}};
    if (out)
        out[0] = '\0';
    if (errout)
        errout[0] = '\0';

    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0 || pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC)) {
        rc = nerr_sys(err, errno, "run %s: pipe", argv[0]);
        goto fail;
    }
    int64_t deadline = now_ms() + timeout_ms;
    pid = fork();
    if (pid < 0) {
        rc = nerr_sys(err, errno, "run %s: fork", argv[0]);
        goto fail;
    }
    if (pid == 0) {
        /* Own process group, so that a timeout can kill the command and
         * everything it started, and nothing else. */
        setpgid(0, 0);
        signal(SIGPIPE, SIG_DFL);
        if (dup2(devnull, 0) < 0 || dup2(po[1], 1) < 0 || dup2(pe[1], 2) < 0)
            _exit(126);
        execvp(argv[0], argv);
        dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid); /* also from here: whichever runs first wins the race */
    close(po[1]);
    close(pe[1]);
    po[1] = pe[1] = -1;
    cap[0].fd = po[0];
    cap[1].fd = pe[0];

    int exited = 0;
    while (!exited) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL); /* in case setpgid lost to exec */
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
            rc = nerr_set(err, NERR_TIMEOUT, "%s did not finish within %ld ms (killed)", argv[0],
                          timeout_ms);
            goto fail;
        }
        struct pollfd pf[2];
        nfds_t n = 0;
        for (int i = 0; i < 2; i++)
            if (cap[i].fd >= 0)
                pf[n++] = (struct pollfd){.fd = cap[i].fd, .events = POLLIN};
        /* Short waits: the child's exit is noticed by waitpid, not by EOF,
         * since a daemon it started may hold the pipes open. */
        int wait = left < 50 ? (int)left : 50;
        int pr = poll(n ? pf : NULL, n, wait);
        if (pr > 0) {
            for (nfds_t k = 0; k < n; k++) {
                if (!(pf[k].revents & (POLLIN | POLLHUP | POLLERR)))
                    continue;
                for (int i = 0; i < 2; i++)
                    if (cap[i].fd >= 0 && cap[i].fd == pf[k].fd && capture_read(&cap[i])) {
                        close(cap[i].fd);
                        cap[i].fd = -1;
                        *(i == 0 ? &po[0] : &pe[0]) = -1;
                    }
            }
        }
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            exited = 1;
        else if (w < 0 && errno != EINTR) {
            rc = nerr_sys(err, errno, "run %s: waitpid", argv[0]);
            pid = -1;
            goto fail;
        }
    }
    /* Collect what the command wrote just before it exited; bounded reads,
     * non-blocking, since a surviving grandchild may keep the pipe open. */
    for (int i = 0; i < 2; i++) {
        if (cap[i].fd < 0)
            continue;
        fcntl(cap[i].fd, F_SETFL, O_NONBLOCK);
        for (int k = 0; k < 64; k++) {
            errno = 0;
            if (capture_read(&cap[i]) || errno == EAGAIN)
                break;
        }
    }
    *status = st;
    rc = 0;
fail:
    if (po[0] >= 0)
        close(po[0]);
    if (pe[0] >= 0)
        close(pe[0]);
    if (po[1] >= 0)
        close(po[1]);
    if (pe[1] >= 0)
        close(pe[1]);
    if (devnull >= 0)
        close(devnull);
    return rc;
}

/* --- is it this machine? --------------------------------------------------- */

static int addr_is_local(const struct sockaddr *sa, const char *text, char *why, size_t cap)
{
    char buf[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct in_addr *a = &((const struct sockaddr_in *)sa)->sin_addr;
        uint32_t v = ntohl(a->s_addr);
        if ((v >> 24) == 127) {
            snprintf(why, cap, "%s is a loopback address", text);
            return 1;
        }
        if (v == 0) {
            snprintf(why, cap, "%s is the unspecified address, which means this machine", text);
            return 1;
        }
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a)) {
            snprintf(why, cap, "%s is the IPv6 loopback address", text);
            return 1;
        }
        if (IN6_IS_ADDR_UNSPECIFIED(a)) {
            snprintf(why, cap, "%s is the unspecified address, which means this machine", text);
            return 1;
        }
        if (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127) {
            snprintf(why, cap, "%s is a v4-mapped loopback address", text);
            return 1;
        }
    } else {
        return 0;
    }

    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) != 0)
        return 0;
    int local = 0;
    for (struct ifaddrs *i = ifs; i && !local; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != sa->sa_family)
            continue;
        if (sa->sa_family == AF_INET)
            local = memcmp(&((struct sockaddr_in *)i->ifa_addr)->sin_addr,
                           &((const struct sockaddr_in *)sa)->sin_addr, 4) == 0;
        else
            local = memcmp(&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr,
                           &((const struct sockaddr_in6 *)sa)->sin6_addr, 16) == 0;
        if (local) {
            const void *src = sa->sa_family == AF_INET
                                  ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                                  : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
            inet_ntop(sa->sa_family, src, buf, sizeof buf);
            snprintf(why, cap, "%s is address %s of this machine's interface %s", text, buf,
                     i->ifa_name);
        }
    }
    freeifaddrs(ifs);
    return local;
}

/* name equals this machine's hostname, whole or up to its first dot. */
static int is_local_hostname(const char *name)
{
    char hn[HOST_NAME_MAX + 1];
    if (gethostname(hn, sizeof hn) != 0)
        return 0;
    hn[HOST_NAME_MAX] = '\0';
    if (strcasecmp(name, hn) == 0)
        return 1;
    size_t a = strcspn(name, "."), b = strcspn(hn, ".");
    /* "db1" against "db1.example.com", or the reverse. */
    return a == b && a > 0 && strncasecmp(name, hn, a) == 0 && (name[a] == '\0' || hn[b] == '\0');
}

int power_address_is_local(const char *address, char *why, size_t cap)
{
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET, address, &s4.sin_addr) == 1)
        return addr_is_local((struct sockaddr *)&s4, address, why, cap);
    if (inet_pton(AF_INET6, address, &s6.sin6_addr) == 1)
        return addr_is_local((struct sockaddr *)&s6, address, why, cap);

    size_t n = strlen(address);
    if (strcasecmp(address, "localhost") == 0 ||
        (n > 10 && strcasecmp(address + n - 10, ".localhost") == 0)) {
        snprintf(why, cap, "%s names this machine", address);
        return 1;
    }
    if (is_local_hostname(address)) {
        snprintf(why, cap, "%s is this machine's hostname", address);
        return 1;
    }
    /* A name may still resolve to one of our addresses. An unresolvable
     * name cannot be reached by SSH either, so it is not refused here. */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(address, NULL, &hints, &res) != 0)
        return 0;
    int local = 0;
    for (struct addrinfo *a = res; a && !local; a = a->ai_next) {
        char one[256];
        local = addr_is_local(a->ai_addr, address, one, sizeof one);
        if (local)
            snprintf(why, cap, "%s resolves to this machine (%s)", address, one);
    }
    freeaddrinfo(res);
    return local;
}

/* A template that would halt whatever runs it, with no host in it, halts
 * this machine: the command driver runs templates locally. */
static const char *dangerous_word(const char *tmpl)
{
    /* Words whose templates are refused (safety: never run here). */
    static const char *const words[] = {"poweroff", "power-off", "reboot",  "halt",
                                        "shutdown", /* refused */
                                        "sysrq",    "kexec",     "telinit", NULL};
    char low[TEMPLATE_MAX + 1];
    size_t n = strlen(tmpl);
    if (n > TEMPLATE_MAX)
        n = TEMPLATE_MAX;
    for (size_t i = 0; i < n; i++)
        low[i] = (char)tolower((unsigned char)tmpl[i]);
    low[n] = '\0';
    for (int i = 0; words[i]; i++)
        if (strstr(low, words[i]))
            return words[i];
    /* "init 0" / "init 6" as a word, with any run of blanks: refused too. */
    for (const char *p = strstr(low, "init"); p; p = strstr(p + 1, "init")) {
        if (p > low && (isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == '-'))
            continue;
        const char *q = p + 4;
        if (*q != ' ' && *q != '\t')
            continue;
        while (*q == ' ' || *q == '\t')
            q++;
        if ((*q == '0' || *q == '6') && !isalnum((unsigned char)q[1]))
            return *q == '0' ? "init 0" : "init 6"; /* the word refused */
    }
    return NULL;
}

static int check_command_template(const struct inv_host *h, const char *what, const char *tmpl,
                                  struct nerr *err)
{
    if (!tmpl)
        return 0;
    unsigned used = 0;
    int rc = tmpl_walk(tmpl, NULL, NULL, &used, err);
    if (rc)
        return rc;
    const char *w = dangerous_word(tmpl);
    if (w && !(used & (PH_NAME | PH_ADDRESS)))
        return nerr_set(err, NERR_INVALID,
                        "refusing to power host '%s': its '%s' command mentions '%s' but names "
                        "no host ({name} or {address}), so it would act on this machine",
                        h->name, what, w);
    return 0;
}

static int stat_path(const char *a, const char *b, const char *c, struct stat *st)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s%s", a, b, c) >= sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return stat(path, st);
}

/* The netns file's identity, refusing this machine's own namespace. */
static int lab_netns_id(const struct power_env *env, const struct inv_host *h, struct stat *ns,
                        struct nerr *err)
{
    static const char *const roots[] = {"1", "self"};
    if (stat_path(env->netns_dir, h->power.netns, "", ns) != 0) {
        if (errno == ENOENT)
            return nerr_set(err, NERR_NOTFOUND, "host '%s': no network namespace %s/%s", h->name,
                            env->netns_dir, h->power.netns);
        return nerr_sys(err, errno, "host '%s': stat %s/%s", h->name, env->netns_dir,
                        h->power.netns);
    }
    for (int i = 0; i < 2; i++) {
        struct stat r;
        if (stat_path(env->proc_root, roots[i], "/ns/net", &r) != 0)
            continue; /* /proc/1 may be unreadable without privileges; self is always there */
        if (r.st_dev == ns->st_dev && r.st_ino == ns->st_ino)
            return nerr_set(err, NERR_INVALID,
                            "refusing to power host '%s': netns '%s' is the network namespace "
                            "of %s (%s/%s/ns/net), i.e. this machine",
                            h->name, h->power.netns, i == 0 ? "init" : "nines itself",
                            env->proc_root, roots[i]);
    }
    return 0;
}

int power_check_target(const struct power_env *env, const struct inv_host *h, struct nerr *err)
{
    char why[512];
    if (power_address_is_local(h->address, why, sizeof why))
        return nerr_set(err, NERR_INVALID, "refusing to power host '%s': %s", h->name, why);
    if (is_local_hostname(h->name) || strcasecmp(h->name, "localhost") == 0)
        return nerr_set(err, NERR_INVALID,
                        "refusing to power host '%s': that is this machine's hostname", h->name);
    switch (h->power.driver) {
    case INV_DRIVER_COMMAND: {
        int rc;
        if ((rc = check_command_template(h, "off", h->power.off, err)) ||
            (rc = check_command_template(h, "on", h->power.on, err)) ||
            (rc = check_command_template(h, "status", h->power.status, err)))
            return rc;
        return 0;
    }
    case INV_DRIVER_LAB: {
        struct stat ns;
        return lab_netns_id(env, h, &ns, err);
    }
    case INV_DRIVER_QMP:
        return check_command_template(h, "start", h->power.start, err);
    }
    return nerr_set(err, NERR_INVALID, "host '%s': unknown power driver %d", h->name,
                    (int)h->power.driver);
}

/* --- command driver -------------------------------------------------------- */

/* Output goes into a one-line error message: no trailing blank, no line
 * breaks. */
static void one_line(char *s)
{
    if (!s)
        return;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\n' || s[i] == '\r')
            s[i] = ' ';
}

/* Runs a template through /bin/sh; *status gets the wait status. */
static int run_template(const struct inv_host *h, const char *what, const char *tmpl, char *out,
                        char *errout, int check_exit, struct nerr *err)
{
    char *cmd = NULL;
    int rc, st = 0;
    if ((rc = power_template_expand(tmpl, h, &cmd, err)))
        return rc;
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    rc = power_run(argv, timeout_ms_of(h), &st, out, errout, err);
    if (rc == NERR_TIMEOUT) {
        rc = nerr_set(err, NERR_TIMEOUT,
                      "host '%s': %s command did not finish within %ld ms and was killed: %s",
                      h->name, what, timeout_ms_of(h), cmd);
    } else if (rc == 0 && check_exit && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        char how[64];
        one_line(out);
        one_line(errout);
        if (WIFEXITED(st))
            snprintf(how, sizeof how, "exit status %d", WEXITSTATUS(st));
        else
            snprintf(how, sizeof how, "signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
        rc = nerr_set(err, NERR_IO,
                      "host '%s': %s command failed with %s: %s; stderr: %.200s%s%.100s", h->name,
                      what, how, cmd, errout ? errout : "", out && out[0] ? "; stdout: " : "",
                      out ? out : "");
    }
    free(cmd);
    return rc;
}

static int cmd_off(const struct power_env *env, const struct inv_host *h, enum power_off_mode mode,
                   struct nerr *err)
{
    char out[POWER_OUT_MAX + 1], eo[POWER_OUT_MAX + 1];
    return run_template(h, "off", h->power.off, out, eo, 1, err);
}

static int cmd_on(const struct power_env *env, const struct inv_host *h, struct nerr *err)
{
    char out[POWER_OUT_MAX + 1], eo[POWER_OUT_MAX + 1];
    return run_template(h, "on", h->power.on, out, eo, 1, err);
}

static int starts_word(const char *s, const char *w)
{
    size_t n = strlen(w);
    return strncasecmp(s, w, n) == 0 && !isalnum((unsigned char)s[n]);
}

static int cmd_status(const struct power_env *env, const struct inv_host *h,
                      enum power_state *state, char *detail, size_t cap, struct nerr *err)
{
    char out[POWER_OUT_MAX + 1], eo[POWER_OUT_MAX + 1];
    int rc;
    *state = POWER_UNKNOWN;
    if (!h->power.status) {
        snprintf(detail, cap, "no status command");
        return 0;
    }
    if ((rc = run_template(h, "status", h->power.status, out, eo, 1, err)))
        return rc;
    const char *s = out;
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t n = strcspn(s, "\r\n");
    snprintf(detail, cap, "%.*s", (int)n, s);
    if (starts_word(s, "running") || starts_word(s, "on") || starts_word(s, "up"))
        *state = POWER_ON;
    else if (starts_word(s, "shut off") || starts_word(s, "shutoff") || starts_word(s, "off") ||
             starts_word(s, "stopped") || starts_word(s, "down"))
        *state = POWER_OFF;
    return 0;
}

/* --- labfs hooks ----------------------------------------------------------- */

static int real_fs_control(void *arg, const char *mnt, const char *cmd, char *reply, size_t cap,
                           struct nerr *err)
{
    return labfs_control(mnt, cmd, reply, cap, err);
}

static int pid_gone_within(pid_t pid, int64_t deadline)
{
    char path[64], buf[512];
    for (;;) {
        snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return 1;
        ssize_t r = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (r <= 0)
            return 1;
        buf[r] = '\0';
        const char *rp = strrchr(buf, ')');
        if (rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'))
            return 1;
        if (now_ms() >= deadline)
            return 0;
        sleep_ms(10);
    }
}

int power_labfs_umount(const char *mnt, int lazy, int timeout_ms, struct nerr *err)
{
    char reply[512];
    uint64_t pid = 0;
    struct nerr e;
    int64_t deadline = now_ms() + timeout_ms;
    nerr_clear(&e);
    /* The daemon's own word for its pid, asked before the mount goes. */
    if (labfs_control(mnt, "stats", reply, sizeof reply, &e) == 0)
        labfs_reply_u64(reply, "pid", &pid);
    int first = timeout_ms > 300 && pid > 1 ? 300 : timeout_ms;
    int rc = labfs_umount(mnt, lazy ? LABFS_UMOUNT_LAZY : 0, first, err);
    if (rc != NERR_TIMEOUT || pid <= 1 || (pid_t)pid == getpid())
        return rc;
    /* Unmounted here, but a copy of the mount in another mount namespace
     * (every `ip netns exec` makes one, and this machine's mounts do not
     * propagate) keeps the FUSE connection, so the daemon never hears of
     * the unmount. Stop it: SIGTERM is a clean stop (durable first, unless
     * crashed), and leaves those copies dead (ENOTCONN) instead of serving
     * a stale file system. */
    if (kill((pid_t)pid, SIGTERM) != 0 && errno != ESRCH)
        return nerr_sys(err, errno, "labfs %s: stopping daemon %" PRIu64, mnt, pid);
    if (pid_gone_within((pid_t)pid, deadline > now_ms() + 2000 ? deadline : now_ms() + 2000))
        return 0;
    kill((pid_t)pid, SIGKILL);
    if (pid_gone_within((pid_t)pid, now_ms() + 2000))
        return 0;
    return nerr_set(err, NERR_TIMEOUT, "labfs %s: daemon %" PRIu64 " does not exit", mnt, pid);
}

static int real_fs_umount(void *arg, const char *mnt, int lazy, int timeout_ms, struct nerr *err)
{
    return power_labfs_umount(mnt, lazy, timeout_ms, err);
}

static int real_fs_mounted(void *arg, const char *mnt)
{
    char parent[PATH_MAX];
    struct stat st, pst;
    if (stat(mnt, &st) != 0)
        return errno == ENOTCONN || errno == ECONNABORTED;
    if ((size_t)snprintf(parent, sizeof parent, "%s/..", mnt) >= sizeof parent ||
        stat(parent, &pst) != 0)
        return 0;
    return st.st_dev != pst.st_dev;
}

/* labfs_spawn from an intermediate child that exits at once: the daemon is
 * then adopted by init instead of becoming a zombie of a long-running caller
 * (the game-day runner), and the intermediate closes every descriptor but
 * its pipe first, so the daemon holds none of the caller's sockets. The
 * result comes back as one line: "OK PID" or "ERR CODE MESSAGE". */
static int real_fs_mount(void *arg, const char *backing, const char *mnt, const char *log,
                         uint64_t seed, struct nerr *err)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return nerr_sys(err, errno, "labfs mount of %s: pipe", mnt);
    pid_t c = fork();
    if (c < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return nerr_sys(err, e, "labfs mount of %s: fork", mnt);
    }
    if (c == 0) {
        char msg[NERR_MSG_MAX + 32];
        struct nerr e;
        pid_t d = 0;
        nerr_clear(&e);
        if (p[1] != 3 && dup2(p[1], 3) < 0)
            _exit(127);
        close_range(4, ~0u, 0);
        struct labfs_opts o = {
            .backing = backing, .mountpoint = mnt, .seed = seed, .log_path = log, .detach = 1};
        int rc = labfs_spawn(&o, &d, &e);
        int n = rc ? snprintf(msg, sizeof msg, "ERR %d %s\n", rc, e.msg)
                   : snprintf(msg, sizeof msg, "OK %ld\n", (long)d);
        if (n > 0 && write(3, msg, (size_t)n) < 0)
            _exit(126);
        _exit(rc ? 1 : 0);
    }
    close(p[1]);
    /* The daemon inherits the pipe's write end, so read up to the newline,
     * not to EOF. labfs_spawn is bounded by 20 s; allow a little more. */
    char buf[NERR_MSG_MAX + 32];
    int timed_out;
    size_t got = fs_read_line_timeout(p[0], buf, sizeof buf, 25000, &timed_out);
    close(p[0]);
    if (!memchr(buf, '\n', got))
        kill(c, SIGKILL); /* only our intermediate child, by its pid */
    while (waitpid(c, NULL, 0) < 0 && errno == EINTR) {
    }
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = '\0';
    if (!strncmp(buf, "OK ", 3))
        return 0;
    int code = 0, off = 0;
    if (sscanf(buf, "ERR %d %n", &code, &off) >= 1 && code < 0 && off > 0)
        return nerr_set(err, code, "%s", buf + off);
    return nerr_set(err, NERR_IO, "labfs mount of %s: no answer from the mount helper (%s)", mnt,
                    got ? buf : "it died");
}

static int fs_control(const struct power_env *env, const char *mnt, const char *cmd, char *reply,
                      size_t cap, struct nerr *err)
{
    return (env->fs_control ? env->fs_control : real_fs_control)(env->fs_arg, mnt, cmd, reply, cap,
                                                                 err);
}

static int fs_umount(const struct power_env *env, const char *mnt, int lazy, int timeout_ms,
                     struct nerr *err)
{
    return (env->fs_umount ? env->fs_umount : real_fs_umount)(env->fs_arg, mnt, lazy, timeout_ms,
                                                              err);
}

static int fs_mount(const struct power_env *env, const char *backing, const char *mnt,
                    const char *log, uint64_t seed, struct nerr *err)
{
    return (env->fs_mount ? env->fs_mount : real_fs_mount)(env->fs_arg, backing, mnt, log, seed,
                                                           err);
}

static int fs_mounted(const struct power_env *env, const char *mnt)
{
    return (env->fs_mounted ? env->fs_mounted : real_fs_mounted)(env->fs_arg, mnt);
}

int power_lab_fs_layout(const char *fs, char *backing, size_t bcap, char *log, size_t lcap,
                        struct nerr *err)
{
    const char *slash = fs ? strrchr(fs, '/') : NULL;
    if (!slash || slash == fs || slash[1] == '\0')
        return nerr_set(err, NERR_INVALID, "labfs mount point '%s' has no parent directory",
                        fs ? fs : "");
    int pl = (int)(slash - fs);
    if ((size_t)snprintf(backing, bcap, "%.*s/backing", pl, fs) >= bcap ||
        (size_t)snprintf(log, lcap, "%.*s/log/labfs.log", pl, fs) >= lcap)
        return nerr_set(err, NERR_LIMIT, "labfs paths beside '%s' are too long", fs);
    return 0;
}

const char *power_fs_state_name(enum power_fs_state s)
{
    switch (s) {
    case POWER_FS_NONE:
        return "none";
    case POWER_FS_UNMOUNTED:
        return "unmounted";
    case POWER_FS_MOUNTED:
        return "mounted";
    case POWER_FS_FROZEN:
        return "frozen";
    case POWER_FS_CRASHED:
        return "crashed";
    case POWER_FS_DEAD:
        return "dead";
    }
    return "?";
}

enum power_fs_state power_lab_fs_state(const struct power_env *env, const struct inv_host *h,
                                       char *detail, size_t cap)
{
    char reply[1024], dummy[8];
    struct nerr e;
    uint64_t crashed = 0, frozen = 0, dirty = 0, fsyncs = 0, seed = 0;
    if (!detail) {
        detail = dummy;
        cap = sizeof dummy;
    }
    detail[0] = '\0';
    if (h->power.driver != INV_DRIVER_LAB || !h->power.fs)
        return POWER_FS_NONE;
    if (!fs_mounted(env, h->power.fs))
        return POWER_FS_UNMOUNTED;
    nerr_clear(&e);
    if (fs_control(env, h->power.fs, "stats", reply, sizeof reply, &e) != 0) {
        snprintf(detail, cap, "%s", e.msg);
        return POWER_FS_DEAD;
    }
    labfs_reply_u64(reply, "crashed", &crashed);
    labfs_reply_u64(reply, "frozen", &frozen);
    labfs_reply_u64(reply, "dirty_bytes", &dirty);
    labfs_reply_u64(reply, "fsyncs", &fsyncs);
    labfs_reply_u64(reply, "seed", &seed);
    snprintf(detail, cap, "dirty_bytes=%" PRIu64 " fsyncs=%" PRIu64 " seed=%" PRIu64, dirty, fsyncs,
             seed);
    return crashed ? POWER_FS_CRASHED : frozen ? POWER_FS_FROZEN : POWER_FS_MOUNTED;
}

const char *power_off_mode_name(enum power_off_mode m)
{
    switch (m) {
    case POWER_OFF_DEFAULT:
        return "default";
    case POWER_OFF_KILL:
        return "kill";
    case POWER_OFF_CRASH:
        return "crash";
    case POWER_OFF_TORN:
        return "torn";
    }
    return "?";
}

int power_off_mode_parse(const char *s, enum power_off_mode *out)
{
    static const enum power_off_mode all[] = {POWER_OFF_DEFAULT, POWER_OFF_KILL, POWER_OFF_CRASH,
                                              POWER_OFF_TORN};
    for (size_t i = 0; s && i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(s, power_off_mode_name(all[i]))) {
            *out = all[i];
            return 0;
        }
    return NERR_INVALID;
}

/* --- lab driver ------------------------------------------------------------ */

static int cmp_pid(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
    return (x > y) - (x < y);
}

static int lab_scan(const struct power_env *env, const struct stat *ns, pid_t *pids, size_t cap,
                    size_t *n, struct nerr *err)
{
    DIR *d = opendir(env->proc_root);
    if (!d)
        return nerr_sys(err, errno, "opendir %s", env->proc_root);
    size_t count = 0, scanned = 0;
    struct dirent *e;
    /* Bounded by the directory's size, which the kernel caps by pid_max. */
    while ((e = readdir(d)) && scanned++ < 4u * POWER_MAX_PIDS) {
        char *end;
        errno = 0;
        long v = strtol(e->d_name, &end, 10);
        if (*end || end == e->d_name || v <= 0 || v > INT_MAX || errno)
            continue;
        struct stat st;
        /* Gone, or a zombie, or not ours to see: not a live member. */
        if (stat_path(env->proc_root, e->d_name, "/ns/net", &st) != 0)
            continue;
        if (st.st_dev != ns->st_dev || st.st_ino != ns->st_ino)
            continue;
        if (count < cap)
            pids[count] = (pid_t)v;
        count++;
    }
    closedir(d);
    *n = count;
    if (count > 1 && cap > 1)
        qsort(pids, count < cap ? count : cap, sizeof *pids, cmp_pid);
    if (count > cap)
        return nerr_set(err, NERR_LIMIT, "more than %zu processes in the namespace", cap);
    return 0;
}

int power_lab_pids(const struct power_env *env, const char *netns, pid_t *pids, size_t cap,
                   size_t *n, struct nerr *err)
{
    struct stat ns;
    if (stat_path(env->netns_dir, netns, "", &ns) != 0)
        return errno == ENOENT ? nerr_set(err, NERR_NOTFOUND, "no network namespace %s/%s",
                                          env->netns_dir, netns)
                               : nerr_sys(err, errno, "stat %s/%s", env->netns_dir, netns);
    return lab_scan(env, &ns, pids, cap, n, err);
}

/* Never signal init or ourselves, whatever the namespace scan says. */
static int refuse_special(const struct inv_host *h, const pid_t *pids, size_t n, struct nerr *err)
{
    for (size_t i = 0; i < n; i++)
        if (pids[i] == 1 || pids[i] == getpid())
            return nerr_set(
                err, NERR_INVALID, "refusing to power off host '%s': netns '%s' holds %s (pid %d)",
                h->name, h->power.netns, pids[i] == 1 ? "init" : "nines itself", (int)pids[i]);
    return 0;
}

/* SIGSTOPs every process of the namespace, rescanning until a pass finds
 * none it has not stopped yet: a stopped process forks no more, and one
 * forked during a pass shows up in the next. Bounded like the kill loop. */
static int lab_stop_all(const struct power_env *env, const struct inv_host *h,
                        const struct stat *ns, pid_t *pids, int64_t deadline, struct nerr *err)
{
    pid_t *stopped = malloc(POWER_MAX_PIDS * sizeof *stopped);
    size_t n_stopped = 0, n = 0;
    int rc = 0;
    if (!stopped)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    for (int round = 0; round < POWER_LAB_ROUNDS; round++) {
        if ((rc = lab_scan(env, ns, pids, POWER_MAX_PIDS, &n, err)) ||
            (rc = refuse_special(h, pids, n, err)))
            goto out;
        size_t fresh = 0, before = n_stopped;
        for (size_t i = 0; i < n; i++) {
            if (bsearch(&pids[i], stopped, before, sizeof *stopped, cmp_pid))
                continue;
            if (env->kill_fn(env->kill_arg, pids[i], SIGSTOP) != 0 && errno != ESRCH)
                log_warn("power off %s: stop %d: %s", h->name, (int)pids[i], strerror(errno));
            if (n_stopped < POWER_MAX_PIDS)
                stopped[n_stopped++] = pids[i];
            fresh++;
        }
        if (!fresh || now_ms() >= deadline)
            goto out;
        qsort(stopped, n_stopped, sizeof *stopped, cmp_pid);
    }
out:
    free(stopped);
    return rc;
}

/* SIGKILLs every process of the namespace until none is left. */
static int lab_kill_all(const struct power_env *env, const struct inv_host *h,
                        const struct stat *ns, pid_t *pids, int64_t deadline, struct nerr *err)
{
    size_t n = 0;
    int rc, round;
    /* Killed processes' children may be forked in between: rescan until the
     * namespace is empty, a bounded number of times. */
    for (round = 0; round < POWER_LAB_ROUNDS; round++) {
        if ((rc = lab_scan(env, ns, pids, POWER_MAX_PIDS, &n, err)))
            return rc;
        if (n == 0)
            return 0;
        if ((rc = refuse_special(h, pids, n, err)))
            return rc;
        for (size_t i = 0; i < n; i++)
            if (env->kill_fn(env->kill_arg, pids[i], SIGKILL) != 0 && errno != ESRCH)
                log_warn("power off %s: kill %d: %s", h->name, (int)pids[i], strerror(errno));
        if (now_ms() >= deadline) {
            round++;
            break;
        }
        sleep_ms(20);
    }
    return nerr_set(err, NERR_TIMEOUT,
                    "host '%s': %zu processes still in netns '%s' after %d kill rounds in %ld ms",
                    h->name, n, h->power.netns, round, timeout_ms_of(h));
}

/* Unmounts the host's labfs: a plain unmount first, retried briefly (a
 * process killed a moment ago may still be releasing its files), then a
 * lazy one, which detaches the mount whatever still refers to it. */
static int lab_fs_unmount(const struct power_env *env, const struct inv_host *h, int64_t deadline,
                          struct nerr *err)
{
    struct nerr e;
    int rc = 0;
    nerr_clear(&e);
    for (int attempt = 0; attempt < 20; attempt++) {
        int64_t left = deadline - now_ms();
        int t = left > POWER_FS_UMOUNT_MS ? POWER_FS_UMOUNT_MS : left > 100 ? (int)left : 100;
        rc = fs_umount(env, h->power.fs, 0, t, &e);
        if (rc != NERR_BUSY)
            break;
        if (now_ms() + 50 >= deadline)
            break;
        sleep_ms(50);
    }
    if (rc == NERR_BUSY) {
        log_warn("power off %s: %s; unmounting lazily", h->name, e.msg);
        rc = fs_umount(env, h->power.fs, 1, POWER_FS_UMOUNT_MS, &e);
    }
    if (rc == NERR_NOTFOUND && !fs_mounted(env, h->power.fs))
        rc = 0; /* nothing (left) to unmount */
    if (rc)
        return nerr_set(err, rc, "host '%s': unmounting labfs %s: %s", h->name, h->power.fs, e.msg);
    return 0;
}

/* What a lab power-off of h with mode will do: KILL, CRASH or TORN;
 * NERR_INVALID for crash/torn without fs. */
static int lab_resolve_mode(const struct inv_host *h, enum power_off_mode mode,
                            enum power_off_mode *out, struct nerr *err)
{
    if (!h->power.fs && (mode == POWER_OFF_CRASH || mode == POWER_OFF_TORN))
        return nerr_set(err, NERR_INVALID,
                        "host '%s': power-off mode %s needs a labfs (`fs` in its power mapping): "
                        "killing its processes would not lose its unsynced writes",
                        h->name, power_off_mode_name(mode));
    if (mode == POWER_OFF_DEFAULT)
        mode = !h->power.fs                      ? POWER_OFF_KILL
               : h->power.fs_mode == INV_FS_TORN ? POWER_OFF_TORN
                                                 : POWER_OFF_CRASH;
    *out = mode;
    return 0;
}

/* The power cut of n lab hosts with labfs at one instant: every phase runs
 * over all of them before the next begins (freeze all, stop all, crash all,
 * kill all, unmount all), as a rack or an AZ loses power at once. Each phase
 * goes on after a host's failure; the first error is returned. A host
 * whose fs is not mounted was off already (power off twice is fine): it only
 * gets the stop and kill passes. */
static int lab_cut(const struct power_env *env, const struct inv_host *const *hs,
                   const enum power_off_mode *modes, size_t n, struct nerr *err)
{
    struct cut_host {
        struct stat ns;
        int ok, mounted, frc;
        struct nerr fe;
    } *c = calloc(n ? n : 1, sizeof *c);
    pid_t *pids = malloc(POWER_MAX_PIDS * sizeof *pids);
    char reply[512];
    int first = 0, rc;
    struct nerr e;
    int64_t deadline = now_ms();
    if (!c || !pids) {
        free(c);
        free(pids);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
#define KEEP(x)                                                                                    \
    do {                                                                                           \
        int r_ = (x);                                                                              \
        if (r_ && !first) {                                                                        \
            first = r_;                                                                            \
            if (err)                                                                               \
                *err = e;                                                                          \
        }                                                                                          \
    } while (0)
    for (size_t i = 0; i < n; i++) {
        if (now_ms() + timeout_ms_of(hs[i]) > deadline)
            deadline = now_ms() + timeout_ms_of(hs[i]);
        nerr_clear(&e);
        KEEP(rc = lab_netns_id(env, hs[i], &c[i].ns, &e));
        c[i].ok = rc == 0;
    }
    /* 1. The instant of the cut. */
    for (size_t i = 0; i < n; i++) {
        if (!c[i].ok)
            continue;
        c[i].mounted = fs_mounted(env, hs[i]->power.fs);
        nerr_clear(&c[i].fe);
        c[i].frc = c[i].mounted
                       ? fs_control(env, hs[i]->power.fs, "freeze", reply, sizeof reply, &c[i].fe)
                       : NERR_NOTFOUND;
    }
    /* 2. Nothing runs on from here. */
    for (size_t i = 0; i < n; i++)
        if (c[i].ok) {
            nerr_clear(&e);
            KEEP(rc = lab_stop_all(env, hs[i], &c[i].ns, pids, deadline, &e));
            c[i].ok = rc == 0;
        }
    /* 3. What was not durable is gone. */
    for (size_t i = 0; i < n; i++) {
        if (!c[i].ok || !c[i].mounted)
            continue;
        const char *cmd = modes[i] == POWER_OFF_TORN ? "torn" : "crash";
        nerr_clear(&e);
        if (c[i].frc) {
            KEEP(nerr_set(&e, c[i].frc,
                          "host '%s': labfs freeze at %s failed (%s); the processes were "
                          "killed, but unsynced writes may have survived",
                          hs[i]->name, hs[i]->power.fs, c[i].fe.msg));
        } else if ((rc = fs_control(env, hs[i]->power.fs, cmd, reply, sizeof reply, &c[i].fe))) {
            KEEP(nerr_set(&e, rc,
                          "host '%s': labfs %s at %s failed (%s); the processes were "
                          "killed, but unsynced writes may have survived",
                          hs[i]->name, cmd, hs[i]->power.fs, c[i].fe.msg));
        }
    }
    /* 4. and 5. */
    for (size_t i = 0; i < n; i++)
        if (c[i].ok) {
            nerr_clear(&e);
            KEEP(rc = lab_kill_all(env, hs[i], &c[i].ns, pids, deadline, &e));
            c[i].ok = rc == 0;
        }
    for (size_t i = 0; i < n; i++)
        if (c[i].ok && c[i].mounted) {
            nerr_clear(&e);
            KEEP(lab_fs_unmount(env, hs[i], deadline, &e));
        }
#undef KEEP
    free(c);
    free(pids);
    return first;
}

static int lab_off(const struct power_env *env, const struct inv_host *h, enum power_off_mode mode,
                   struct nerr *err)
{
    struct stat ns;
    int rc;
    if ((rc = lab_resolve_mode(h, mode, &mode, err)))
        return rc;
    if (mode != POWER_OFF_KILL)
        return lab_cut(env, &h, &mode, 1, err);
    pid_t *pids = malloc(POWER_MAX_PIDS * sizeof *pids);
    if (!pids)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    if (!(rc = lab_netns_id(env, h, &ns, err)))
        rc = lab_kill_all(env, h, &ns, pids, now_ms() + timeout_ms_of(h), err);
    free(pids);
    return rc;
}

int power_off_group(const struct power_env *env, const struct inv_host *const *hosts, size_t n,
                    enum power_off_mode mode, struct nerr *err)
{
    const struct inv_host **cut = calloc(n ? n : 1, sizeof *cut);
    enum power_off_mode *modes = calloc(n ? n : 1, sizeof *modes);
    size_t ncut = 0;
    int rc = 0;
    if (!cut || !modes) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    /* Every refusal before any host is touched. */
    for (size_t i = 0; i < n; i++) {
        enum power_off_mode m = mode;
        if ((rc = power_check_target(env, hosts[i], err)))
            goto out;
        if (hosts[i]->power.driver != INV_DRIVER_LAB)
            continue;
        if ((rc = lab_resolve_mode(hosts[i], mode, &m, err)))
            goto out;
        if (m != POWER_OFF_KILL) {
            cut[ncut] = hosts[i];
            modes[ncut++] = m;
        }
    }
    rc = lab_cut(env, cut, modes, ncut, err);
    for (size_t i = 0; i < n; i++) {
        int in_cut = 0;
        for (size_t k = 0; k < ncut && !in_cut; k++)
            in_cut = cut[k] == hosts[i];
        if (in_cut)
            continue;
        struct nerr e;
        nerr_clear(&e);
        int r = power_driver_for(hosts[i]->power.driver)->off(env, hosts[i], mode, &e);
        if (r && !rc) {
            rc = r;
            if (err)
                *err = e;
        }
    }
out:
    free(cut);
    free(modes);
    return rc;
}

/* Makes sure a live, uncrashed labfs is mounted at the host's fs: a crashed
 * or dead mount goes first, then a fresh daemon with a new seed. */
static int lab_fs_up(const struct power_env *env, const struct inv_host *h, struct nerr *err)
{
    char backing[PATH_MAX], log[PATH_MAX];
    int64_t deadline = now_ms() + timeout_ms_of(h);
    int rc;
    enum power_fs_state st = power_lab_fs_state(env, h, NULL, 0);
    if (st == POWER_FS_MOUNTED)
        return 0;
    if (st == POWER_FS_FROZEN)
        return nerr_set(err, NERR_BUSY,
                        "host '%s': its labfs %s is frozen (a power-off is under way)", h->name,
                        h->power.fs);
    if (st == POWER_FS_CRASHED || st == POWER_FS_DEAD) {
        if ((rc = lab_fs_unmount(env, h, deadline, err)))
            return rc;
    }
    if ((rc = power_lab_fs_layout(h->power.fs, backing, sizeof backing, log, sizeof log, err)))
        return rc;
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
        seed = (uint64_t)now_ms() * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
    return fs_mount(env, backing, h->power.fs, log, seed, err);
}

static int lab_on(const struct power_env *env, const struct inv_host *h, struct nerr *err)
{
    char *cmd = NULL, out[POWER_OUT_MAX + 1], eo[POWER_OUT_MAX + 1];
    struct stat ns;
    int rc, st = 0;
    if ((rc = lab_netns_id(env, h, &ns, err)) ||
        (rc = power_template_expand(h->power.start, h, &cmd, err)))
        return rc;
    if (h->power.fs && (rc = lab_fs_up(env, h, err))) {
        free(cmd);
        return rc;
    }
    char *argv[] = {(char *)env->ip, "netns", "exec", h->power.netns, "/bin/sh", "-c", cmd, NULL};
    rc = power_run(argv, timeout_ms_of(h), &st, out, eo, err);
    if (rc == NERR_TIMEOUT)
        rc = nerr_set(err, NERR_TIMEOUT, "host '%s': start command timed out after %ld ms: %s",
                      h->name, timeout_ms_of(h), cmd);
    else if (rc == 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        one_line(eo);
        rc = nerr_set(err, NERR_IO,
                      "host '%s': start command failed (status %d): %s; stderr: %.200s", h->name,
                      WIFEXITED(st) ? WEXITSTATUS(st) : -1, cmd, eo);
    }
    free(cmd);
    return rc;
}

static int lab_status(const struct power_env *env, const struct inv_host *h,
                      enum power_state *state, char *detail, size_t cap, struct nerr *err)
{
    struct stat ns;
    size_t n = 0;
    int rc;
    pid_t *pids = malloc(POWER_MAX_PIDS * sizeof *pids);
    if (!pids)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    if (!(rc = lab_netns_id(env, h, &ns, err)) &&
        !(rc = lab_scan(env, &ns, pids, POWER_MAX_PIDS, &n, err))) {
        *state = n ? POWER_ON : POWER_OFF;
        if (h->power.fs) {
            char fsd[256];
            enum power_fs_state fst = power_lab_fs_state(env, h, fsd, sizeof fsd);
            snprintf(detail, cap, "%zu processes, labfs %s%s%s", n, power_fs_state_name(fst),
                     fsd[0] ? " " : "", fsd);
        } else {
            snprintf(detail, cap, "%zu processes", n);
        }
    }
    free(pids);
    return rc;
}

/* --- qmp driver ------------------------------------------------------------ */

struct qmp {
    int fd;
    int64_t deadline;
    char buf[QMP_LINE_MAX];
    size_t len;
    const struct inv_host *h;
};

/* 0 connected; NERR_CLOSED when nothing listens (QEMU is not running). */
static int qmp_connect(struct qmp *q, const struct inv_host *h, struct nerr *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    q->fd = -1;
    q->len = 0;
    q->h = h;
    q->deadline = now_ms() + timeout_ms_of(h);
    if (strlen(h->power.socket) >= sizeof sa.sun_path)
        return nerr_set(err, NERR_INVALID, "host '%s': socket path too long", h->name);
    strcpy(sa.sun_path, h->power.socket);
    q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (q->fd < 0)
        return nerr_sys(err, errno, "socket");
    if (connect(q->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(q->fd);
        q->fd = -1;
        if (e == ENOENT || e == ECONNREFUSED)
            return nerr_set(err, NERR_CLOSED, "host '%s': nothing listens on %s", h->name,
                            h->power.socket);
        return nerr_sys(err, e, "host '%s': connect %s", h->name, h->power.socket);
    }
    return 0;
}

/* Next JSON object, one per line as QEMU writes them. NERR_CLOSED at EOF. */
static int qmp_read(struct qmp *q, json_t **out, struct nerr *err)
{
    for (;;) {
        char *nl = memchr(q->buf, '\n', q->len);
        if (nl) {
            size_t n = (size_t)(nl - q->buf) + 1;
            json_error_t je;
            json_t *j = json_loadb(q->buf, n, 0, &je);
            memmove(q->buf, q->buf + n, q->len - n);
            q->len -= n;
            if (!j || !json_is_object(j)) {
                json_decref(j);
                return nerr_set(err, NERR_CORRUPT,
                                "host '%s': QMP sent a line that is not a "
                                "JSON object",
                                q->h->name);
            }
            *out = j;
            return 0;
        }
        if (q->len == sizeof q->buf)
            return nerr_set(err, NERR_LIMIT, "host '%s': QMP message longer than %d bytes",
                            q->h->name, QMP_LINE_MAX);
        int64_t left = q->deadline - now_ms();
        if (left <= 0)
            return nerr_set(err, NERR_TIMEOUT, "host '%s': no QMP reply within %ld ms", q->h->name,
                            timeout_ms_of(q->h));
        struct pollfd pf = {.fd = q->fd, .events = POLLIN};
        int pr = poll(&pf, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (pr < 0 && errno != EINTR)
            return nerr_sys(err, errno, "poll");
        if (pr <= 0)
            continue;
        ssize_t r = read(q->fd, q->buf + q->len, sizeof q->buf - q->len);
        if (r < 0 && errno != EINTR && errno != EAGAIN)
            return nerr_sys(err, errno, "host '%s': read QMP", q->h->name);
        if (r == 0)
            return nerr_set(err, NERR_CLOSED, "host '%s': QMP connection closed", q->h->name);
        if (r > 0)
            q->len += (size_t)r;
    }
}

/* Sends {"execute": cmd} and waits for its return (events skipped). *ret,
 * when given, gets the "return" value (a new reference). */
static int qmp_exec(struct qmp *q, const char *cmd, json_t **ret, struct nerr *err)
{
    char line[128];
    int n = snprintf(line, sizeof line, "{\"execute\": \"%s\"}\n", cmd);
    for (int off = 0; off < n;) {
        ssize_t w = send(q->fd, line + off, (size_t)(n - off), MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return nerr_sys(err, errno, "host '%s': send QMP %s", q->h->name, cmd);
        }
        off += (int)w;
    }
    for (int i = 0; i < QMP_MAX_MESSAGES; i++) {
        json_t *j = NULL;
        int rc = qmp_read(q, &j, err);
        if (rc)
            return rc;
        json_t *r = json_object_get(j, "return");
        json_t *e = json_object_get(j, "error");
        if (r) {
            if (ret)
                *ret = json_incref(r);
            json_decref(j);
            return 0;
        }
        if (e) {
            const char *desc = json_string_value(json_object_get(e, "desc"));
            rc = nerr_set(err, NERR_CORRUPT, "host '%s': QMP %s failed: %s", q->h->name, cmd,
                          desc ? desc : "(no description)");
            json_decref(j);
            return rc;
        }
        json_decref(j); /* an asynchronous event */
    }
    return nerr_set(err, NERR_LIMIT, "host '%s': no reply to QMP %s among %d messages", q->h->name,
                    cmd, QMP_MAX_MESSAGES);
}

/* Connect, greeting, capabilities negotiation. */
static int qmp_open(struct qmp *q, const struct inv_host *h, struct nerr *err)
{
    json_t *g = NULL;
    int rc;
    if ((rc = qmp_connect(q, h, err)))
        return rc;
    if ((rc = qmp_read(q, &g, err)))
        goto fail;
    if (!json_object_get(g, "QMP")) {
        json_decref(g);
        rc = nerr_set(err, NERR_CORRUPT, "host '%s': %s did not greet with QMP", h->name,
                      h->power.socket);
        goto fail;
    }
    json_decref(g);
    if ((rc = qmp_exec(q, "qmp_capabilities", NULL, err)))
        goto fail;
    return 0;
fail:
    close(q->fd);
    q->fd = -1;
    return rc;
}

static int qmp_off(const struct power_env *env, const struct inv_host *h, enum power_off_mode mode,
                   struct nerr *err)
{
    struct qmp *q = malloc(sizeof *q);
    if (!q)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    int rc = qmp_open(q, h, err);
    if (rc == NERR_CLOSED) {
        rc = 0; /* no QEMU: already off */
        nerr_clear(err);
    } else if (rc == 0) {
        rc = qmp_exec(q, "quit", NULL, err);
        /* QEMU may exit before its reply reaches us. */
        if (rc == NERR_CLOSED) {
            rc = 0;
            nerr_clear(err);
        }
        close(q->fd);
    }
    free(q);
    return rc;
}

static int qmp_on(const struct power_env *env, const struct inv_host *h, struct nerr *err)
{
    struct qmp *q = malloc(sizeof *q);
    if (!q)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    int rc = qmp_open(q, h, err);
    if (rc == NERR_CLOSED) {
        if (h->power.start) {
            char out[POWER_OUT_MAX + 1], eo[POWER_OUT_MAX + 1];
            nerr_clear(err);
            rc = run_template(h, "start", h->power.start, out, eo, 1, err);
        } else {
            rc = nerr_set(err, NERR_CLOSED,
                          "host '%s': QEMU is not running (nothing listens on %s) and the "
                          "inventory gives no start command",
                          h->name, h->power.socket);
        }
    } else if (rc == 0) {
        /* Reset is the power cycle; cont resumes a guest that was stopped. */
        if (!(rc = qmp_exec(q, "system_reset", NULL, err)))
            rc = qmp_exec(q, "cont", NULL, err);
        close(q->fd);
    }
    free(q);
    return rc;
}

static int qmp_status(const struct power_env *env, const struct inv_host *h,
                      enum power_state *state, char *detail, size_t cap, struct nerr *err)
{
    json_t *r = NULL;
    struct qmp *q = malloc(sizeof *q);
    if (!q)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    int rc = qmp_open(q, h, err);
    if (rc == NERR_CLOSED) {
        nerr_clear(err);
        *state = POWER_OFF;
        snprintf(detail, cap, "not running");
        rc = 0;
    } else if (rc == 0) {
        if (!(rc = qmp_exec(q, "query-status", &r, err))) {
            const char *s = json_string_value(json_object_get(r, "status"));
            json_t *run = json_object_get(r, "running");
            if (!s || !json_is_boolean(run)) {
                rc = nerr_set(err, NERR_CORRUPT,
                              "host '%s': query-status reply lacks "
                              "status/running",
                              h->name);
            } else {
                *state = json_is_true(run) ? POWER_ON : POWER_OFF;
                snprintf(detail, cap, "%s", s);
            }
            json_decref(r);
        }
        close(q->fd);
    }
    free(q);
    return rc;
}

/* --- dispatch -------------------------------------------------------------- */

static int real_kill(void *arg, pid_t pid, int sig)
{
    return kill(pid, sig);
}

void power_env_default(struct power_env *env)
{
    *env = (struct power_env){
        .proc_root = "/proc", .netns_dir = "/run/netns", .ip = "ip", .kill_fn = real_kill};
}

static const struct power_driver drivers[] = {
    {"lab", lab_off, lab_on, lab_status},
    {"command", cmd_off, cmd_on, cmd_status},
    {"qmp", qmp_off, qmp_on, qmp_status},
};

const struct power_driver *power_driver_for(enum inv_driver d)
{
    switch (d) {
    case INV_DRIVER_LAB:
        return &drivers[0];
    case INV_DRIVER_COMMAND:
        return &drivers[1];
    case INV_DRIVER_QMP:
        return &drivers[2];
    }
    return NULL;
}

int power_off_as(const struct power_env *env, const struct inv_host *h, enum power_off_mode mode,
                 struct nerr *err)
{
    int rc = power_check_target(env, h, err);
    return rc ? rc : power_driver_for(h->power.driver)->off(env, h, mode, err);
}

int power_off(const struct power_env *env, const struct inv_host *h, struct nerr *err)
{
    return power_off_as(env, h, POWER_OFF_DEFAULT, err);
}

int power_on(const struct power_env *env, const struct inv_host *h, struct nerr *err)
{
    int rc = power_check_target(env, h, err);
    return rc ? rc : power_driver_for(h->power.driver)->on(env, h, err);
}

int power_status(const struct power_env *env, const struct inv_host *h, enum power_state *state,
                 char *detail, size_t cap, struct nerr *err)
{
    char dummy[8];
    if (!detail) {
        detail = dummy;
        cap = sizeof dummy;
    }
    *state = POWER_UNKNOWN;
    detail[0] = '\0';
    int rc = power_check_target(env, h, err);
    return rc ? rc : power_driver_for(h->power.driver)->status(env, h, state, detail, cap, err);
}
