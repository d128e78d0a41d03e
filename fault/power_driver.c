/*
 * fault/power_driver.c — what every power driver shares: the process runner,
 * the refusal of this machine, command templates run through /bin/sh, the
 * off modes, and the dispatch to the host's driver (contracts in power.h
 * and power_driver.h).
 */
#include "fault/power_driver.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/proc.h"

/* --- time ------------------------------------------------------------------ */

long power_timeout_ms(const struct inv_host *h)
{
    uint64_t ns = h->power.timeout_ns ? h->power.timeout_ns : INV_DEFAULT_TIMEOUT_NS;
    return (long)(ns / 1000000u);
}

void power_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* --- running a command under a deadline ------------------------------------ */

int power_run(char *const argv[], long timeout_ms, int *status, char *out, char *errout,
              struct nerr *err)
{
    /* lib/proc: its own process group (a timeout kills the command and
     * everything it started, nothing else), stdin from /dev/null, the exit
     * noticed by waitpid rather than by the end of the output (a daemon the
     * command started may hold the pipes open). */
    struct proc_spec spec = {.argv = argv, .in = {.kind = PROC_IO_NULL}, .flags = PROC_NEW_PGROUP};
    struct proc_output o = {0};
    if (out)
        out[0] = '\0';
    if (errout)
        errout[0] = '\0';
    int rc = proc_run(&spec, timeout_ms, POWER_OUT_MAX, &o, err);
    if (out && o.out)
        snprintf(out, POWER_OUT_MAX + 1, "%s", o.out);
    if (errout && o.err)
        snprintf(errout, POWER_OUT_MAX + 1, "%s", o.err);
    if (rc == NERR_TIMEOUT)
        rc = nerr_set(err, NERR_TIMEOUT, "%s did not finish within %ld ms (killed)", argv[0],
                      timeout_ms);
    else if (rc == 0)
        *status = o.status;
    proc_output_free(&o);
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
    char low[INV_TEMPLATE_MAX + 1];
    size_t n = strlen(tmpl);
    if (n > INV_TEMPLATE_MAX)
        n = INV_TEMPLATE_MAX;
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

int power_check_command_template(const struct inv_host *h, const char *what, const char *tmpl,
                                 struct nerr *err)
{
    if (!tmpl)
        return 0;
    unsigned used = 0;
    int rc = inventory_template_uses(tmpl, &used, err);
    if (rc)
        return rc;
    const char *w = dangerous_word(tmpl);
    if (w && !(used & (INV_PH_NAME | INV_PH_ADDRESS)))
        return nerr_set(err, NERR_INVALID,
                        "refusing to power host '%s': its '%s' command mentions '%s' but names "
                        "no host ({name} or {address}), so it would act on this machine",
                        h->name, what, w);
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
    const struct power_driver *d = power_driver_for(h->power.driver);
    if (!d)
        return nerr_set(err, NERR_INVALID, "host '%s': unknown power driver %d", h->name,
                        (int)h->power.driver);
    return d->check(env, h, err);
}

/* --- command templates ------------------------------------------------------ */

void power_one_line(char *s)
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

int power_run_template(const struct inv_host *h, const char *what, const char *tmpl, char *out,
                       char *errout, int check_exit, struct nerr *err)
{
    char *cmd = NULL;
    int rc, st = 0;
    if ((rc = inventory_template_expand(tmpl, h, &cmd, err)))
        return rc;
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    rc = power_run(argv, power_timeout_ms(h), &st, out, errout, err);
    if (rc == NERR_TIMEOUT) {
        rc = nerr_set(err, NERR_TIMEOUT,
                      "host '%s': %s command did not finish within %ld ms and was killed: %s",
                      h->name, what, power_timeout_ms(h), cmd);
    } else if (rc == 0 && check_exit && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        char how[64];
        power_one_line(out);
        power_one_line(errout);
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

/* --- off modes ------------------------------------------------------------ */

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

/* The drivers by inventory id; a new driver is a file and a line here. */
static const struct power_driver *const drivers[] = {&power_driver_lab, &power_driver_command,
                                                     &power_driver_qmp};

const struct power_driver *power_driver_for(enum inv_driver d)
{
    for (size_t i = 0; i < sizeof drivers / sizeof drivers[0]; i++)
        if (drivers[i]->id == d)
            return drivers[i];
    return NULL;
}

int power_check_mode(const struct inv_host *h, enum power_off_mode mode, struct nerr *err)
{
    const struct power_driver *d = power_driver_for(h->power.driver);
    if (!d)
        return nerr_set(err, NERR_INVALID, "host '%s': unknown power driver %d", h->name,
                        (int)h->power.driver);
    return d->check_mode ? d->check_mode(h, mode, err) : 0;
}

const char *power_off_mode_word(const struct inv_host *h, enum power_off_mode mode)
{
    const struct power_driver *d = power_driver_for(h->power.driver);
    return d && d->mode_word ? d->mode_word(h, mode) : "power";
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

int power_off_group(const struct power_env *env, const struct inv_host *const *hosts, size_t n,
                    enum power_off_mode mode, struct nerr *err)
{
    const struct inv_host **sub = calloc(n ? n : 1, sizeof *sub);
    unsigned char *taken = calloc(n ? n : 1, 1), *subtaken = calloc(n ? n : 1, 1);
    size_t *idx = calloc(n ? n : 1, sizeof *idx);
    int rc = 0;
    if (!sub || !taken || !subtaken || !idx) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    /* Every refusal before any host is touched. */
    for (size_t i = 0; i < n; i++)
        if ((rc = power_check_target(env, hosts[i], err)) ||
            (rc = power_check_mode(hosts[i], mode, err)))
            goto out;
    /* The drivers that cut several hosts at one instant go first, each
     * with all of its hosts. */
    for (size_t k = 0; k < sizeof drivers / sizeof drivers[0]; k++) {
        const struct power_driver *d = drivers[k];
        size_t m = 0;
        if (!d->off_group)
            continue;
        for (size_t i = 0; i < n; i++)
            if (hosts[i]->power.driver == d->id) {
                idx[m] = i;
                sub[m++] = hosts[i];
            }
        memset(subtaken, 0, m ? m : 1);
        struct nerr e;
        nerr_clear(&e);
        int r = d->off_group(env, sub, m, mode, subtaken, &e);
        if (r && !rc) {
            rc = r;
            if (err)
                *err = e;
        }
        for (size_t j = 0; j < m; j++)
            taken[idx[j]] = subtaken[j];
    }
    for (size_t i = 0; i < n; i++) {
        if (taken[i])
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
    free(sub);
    free(taken);
    free(subtaken);
    free(idx);
    return rc;
}
