/* lab/lab.c — network-namespace lab hosts; see lab.h for the contract. */
#include "lab/lab.h"

#include "labfs/labfs.h"
#include "lib/clock.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "lib/strbuf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CMD_TIMEOUT_MS 20000 /* one ip or ssh-keygen run */
#define DOWN_POWER_TIMEOUT_NS (15ull * 1000000000ull)
#define STATE_FILE "lab.state"
#define STATE_MAX ((size_t)1 << 20)
#define MAX_USED_NETS 1024
#define DIR_MAX 200 /* DIR's absolute path; leaves room for what goes below it */
#define ID_ATTEMPTS 32

/* --- small helpers --------------------------------------------------------- */

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* snprintf into a path buffer, refusing truncation. */
__attribute__((format(printf, 4, 5))) static int pathf(struct nerr *err, char *buf, size_t cap,
                                                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap)
        return nerr_set(err, NERR_LIMIT, "path too long: %.100s...", buf);
    return 0;
}

static void one_line(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\n' || s[i] == '\r')
            s[i] = ' ';
}

/* Runs argv (NULL-terminated) and wants exit status 0; the failing command
 * line and its stderr go into the error. */
static int run_argv(char *const argv[], struct nerr *err)
{
    char eo[POWER_OUT_MAX + 1];
    int st = 0, rc = power_run(argv, CMD_TIMEOUT_MS, &st, NULL, eo, err);
    if (rc)
        return rc;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    char line[512];
    size_t off = 0;
    line[0] = '\0';
    for (int i = 0; argv[i] && off < sizeof line - 1; i++) {
        int n = snprintf(line + off, sizeof line - off, "%s%s", i ? " " : "", argv[i]);
        if (n < 0)
            break;
        off += (size_t)n;
    }
    one_line(eo);
    return nerr_set(err, NERR_IO, "`%.200s` failed (%s %d): %.250s", line,
                    WIFEXITED(st) ? "exit status" : "signal",
                    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), eo);
}

/* ip with up to 12 arguments. */
static int run_ip(const struct lab_env *env, struct nerr *err, ...)
{
    char *argv[16];
    int n = 0;
    argv[n++] = (char *)env->power.ip;
    va_list ap;
    va_start(ap, err);
    char *a;
    while ((a = va_arg(ap, char *)) && n < 15)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return run_argv(argv, err);
}

static int make_dir(const char *path, struct nerr *err)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return nerr_sys(err, errno, "mkdir %s", path);
    return 0;
}

/* The executable name resolves (a path, or a name in PATH); the path found
 * goes into out when out is not NULL. */
static int find_exec(const char *name, char *out, size_t cap)
{
    char buf[PATH_MAX];
    if (strchr(name, '/')) {
        if (access(name, X_OK) != 0)
            return -1;
        if (out)
            snprintf(out, cap, "%s", name);
        return 0;
    }
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t n = colon ? (size_t)(colon - path) : strlen(path);
        if (n > 0 && n < sizeof buf - strlen(name) - 2) {
            memcpy(buf, path, n);
            snprintf(buf + n, sizeof buf - n, "/%s", name);
            struct stat st;
            if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0) {
                if (out)
                    snprintf(out, cap, "%s", buf);
                return 0;
            }
        }
        path += n + (colon ? 1 : 0);
    }
    return -1;
}

static int link_exists(const char *name)
{
    return if_nametoindex(name) != 0;
}

/* --- pure parts ------------------------------------------------------------ */

int lab_spec_check(const struct lab_spec *s, struct nerr *err)
{
    if (!s->dir || !*s->dir)
        return nerr_set(err, NERR_INVALID, "--dir is required");
    if (s->hosts < 1 || s->hosts > LAB_MAX_HOSTS)
        return nerr_set(err, NERR_INVALID, "--hosts must be 1..%d (got %d)", LAB_MAX_HOSTS,
                        s->hosts);
    if (s->azs < 1)
        return nerr_set(err, NERR_INVALID, "--azs must be at least 1 (got %d)", s->azs);
    if (s->azs > s->hosts)
        return nerr_set(err, NERR_INVALID,
                        "--azs %d is more than --hosts %d: an AZ would have no host", s->azs,
                        s->hosts);
    int racks = s->racks ? s->racks : 1;
    if (racks < 1)
        return nerr_set(err, NERR_INVALID, "--racks must be at least 1 (got %d)", racks);
    if (racks > s->hosts / s->azs)
        return nerr_set(err, NERR_INVALID,
                        "--racks %d is more than the %d hosts of the smallest AZ: a rack would "
                        "be empty",
                        racks, s->hosts / s->azs);
    if (s->ssh_wait_ms < 0)
        return nerr_set(err, NERR_INVALID, "negative ssh wait");
    return 0;
}

static int in_private(uint32_t a)
{
    return (a >> 24) == 10 || (a >> 20) == ((172u << 4) | 1) || (a >> 16) == ((192u << 8) | 168);
}

int lab_subnet_parse(const char *s, uint32_t *net, struct nerr *err)
{
    unsigned o[4], p;
    char tail;
    if (!s || sscanf(s, "%u.%u.%u.%u/%u%c", &o[0], &o[1], &o[2], &o[3], &p, &tail) != 5)
        return nerr_set(err, NERR_INVALID, "subnet '%s': expected A.B.C.0/24", s ? s : "");
    for (int i = 0; i < 4; i++)
        if (o[i] > 255)
            return nerr_set(err, NERR_INVALID, "subnet '%s': octet %u out of range", s, o[i]);
    if (p != 24)
        return nerr_set(err, NERR_INVALID, "subnet '%s': only /24 subnets are supported", s);
    if (o[3] != 0)
        return nerr_set(err, NERR_INVALID, "subnet '%s': the host part must be 0", s);
    uint32_t a = (o[0] << 24) | (o[1] << 16) | (o[2] << 8);
    if (!in_private(a))
        return nerr_set(err, NERR_INVALID,
                        "subnet '%s' is not private (10/8, 172.16/12 or 192.168/16)", s);
    *net = a;
    return 0;
}

void lab_addr_format(uint32_t a, int prefix, char *buf, size_t cap)
{
    if (prefix)
        snprintf(buf, cap, "%u.%u.%u.%u/%d", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255,
                 prefix);
    else
        snprintf(buf, cap, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

int lab_subnet_overlaps(uint32_t net, const struct lab_net *used, size_t n, size_t *which)
{
    /* Two prefixes overlap when they agree on the bits of the shorter mask. */
    for (size_t i = 0; i < n; i++) {
        uint32_t common = used[i].mask & 0xffffff00u;
        if (((net ^ used[i].addr) & common) == 0) {
            if (which)
                *which = i;
            return 1;
        }
    }
    return 0;
}

int lab_subnet_pick(const struct lab_net *used, size_t n, uint32_t seed, uint32_t *net,
                    struct nerr *err)
{
    for (uint32_t k = 0; k < 65536; k++) {
        uint32_t c = (seed + k) & 0xffffu;
        uint32_t cand = (10u << 24) | (c << 8);
        if (!lab_subnet_overlaps(cand, used, n, NULL)) {
            *net = cand;
            return 0;
        }
    }
    return nerr_set(err, NERR_EXISTS, "no free /24 left in 10.0.0.0/8");
}

uint32_t lab_host_addr(uint32_t net, int i)
{
    return net + 2u + (uint32_t)i;
}

void lab_placement(int i, int azs, int racks, int *az, int *rack)
{
    if (racks < 1)
        racks = 1;
    *az = 1 + i % azs;
    *rack = 1 + (i / azs) % racks;
}

void lab_bridge_name(const char *id, char out[16])
{
    snprintf(out, 16, LAB_LINK_PREFIX "%.6sbr", id);
}

int lab_names_for(const char *id, int i, struct lab_names *o)
{
    if (strlen(id) != LAB_ID_LEN || i < 0 || i >= LAB_MAX_HOSTS)
        return NERR_INVALID;
    snprintf(o->host, sizeof o->host, "h%d", i + 1);
    snprintf(o->netns, sizeof o->netns, LAB_NETNS_PREFIX "%s-h%d", id, i + 1);
    snprintf(o->veth, sizeof o->veth, LAB_LINK_PREFIX "%sv%d", id, i + 1);
    snprintf(o->peer, sizeof o->peer, LAB_LINK_PREFIX "%sp%d", id, i + 1);
    return 0;
}

/* --- the state file -------------------------------------------------------- */

static const char *const kind_names[] = {NULL, "bridge", "netns", "veth", "path", "labfs"};

static int valid_id(const char *s)
{
    if (strlen(s) != LAB_ID_LEN)
        return 0;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p) && !(*p >= 'a' && *p <= 'f'))
            return 0;
    return 1;
}

static int name_chars_ok(const char *s)
{
    if (!*s)
        return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
            return 0;
    return 1;
}

/* Whether name may be a resource of kind in lab id: the guard that keeps
 * lab_down from touching anything the lab did not name. */
static int res_name_ok(enum lab_res_kind kind, const char *id, const char *name)
{
    char want[LAB_NAME_MAX];
    switch (kind) {
    case LAB_RES_BRIDGE:
        lab_bridge_name(id, want);
        return strcmp(name, want) == 0;
    case LAB_RES_NETNS:
        snprintf(want, sizeof want, LAB_NETNS_PREFIX "%s-", id);
        return strncmp(name, want, strlen(want)) == 0 && name_chars_ok(name + strlen(want));
    case LAB_RES_VETH: {
        snprintf(want, sizeof want, LAB_LINK_PREFIX "%sv", id);
        size_t n = strlen(want);
        if (strncmp(name, want, n) != 0 || !name[n] || strlen(name) > 15)
            return 0;
        for (const char *p = name + n; *p; p++)
            if (!isdigit((unsigned char)*p))
                return 0;
        return 1;
    }
    case LAB_RES_PATH:
        return name_chars_ok(name) && strcmp(name, ".") != 0 && strcmp(name, "..") != 0 &&
               strcmp(name, STATE_FILE) != 0;
    case LAB_RES_LABFS:
        return name_chars_ok(name) && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
    }
    return 0;
}

void lab_state_free(struct lab_state *st)
{
    if (!st)
        return;
    free(st->res);
    st->res = NULL;
    st->n_res = 0;
}

int lab_state_parse(const char *text, size_t len, struct lab_state *st, struct nerr *err)
{
    memset(st, 0, sizeof *st);
    size_t cap = 0, lineno = 0;
    const char *p = text, *end = text + len;
    int rc = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break; /* a line cut short by a crash: never acted on */
        lineno++;
        char line[256];
        size_t n = (size_t)(nl - p);
        if (n >= sizeof line) {
            rc = nerr_set(err, NERR_CORRUPT, "%s line %zu: too long", STATE_FILE, lineno);
            goto fail;
        }
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl + 1;
        char w1[32] = "", w2[LAB_NAME_MAX] = "", w3[64] = "";
        int nw = sscanf(line, "%31s %63s %63s", w1, w2, w3);
        if (nw <= 0)
            continue;
        if (lineno == 1) {
            if (strcmp(w1, "nines-lab") != 0 || strcmp(w2, "1") != 0) {
                rc = nerr_set(err, NERR_CORRUPT, "%s: not a nines lab state file (version 1)",
                              STATE_FILE);
                goto fail;
            }
            continue;
        }
        if (!strcmp(w1, "id") && nw == 2 && valid_id(w2)) {
            memcpy(st->id, w2, LAB_ID_LEN + 1);
        } else if (!strcmp(w1, "made-dir") && nw == 2) {
            st->made_dir = strcmp(w2, "1") == 0;
        } else if (!strcmp(w1, "subnet") && nw == 2 && strlen(w2) < sizeof st->subnet) {
            memcpy(st->subnet, w2, strlen(w2) + 1);
        } else if (!strcmp(w1, "complete")) {
            st->complete = 1;
        } else if ((w1[0] == '+' || w1[0] == '-') && nw >= 2) {
            enum lab_res_kind kind = 0;
            for (int k = LAB_RES_BRIDGE; k <= LAB_RES_LABFS; k++)
                if (!strcmp(w1 + 1, kind_names[k]))
                    kind = (enum lab_res_kind)k;
            if (!kind || !st->id[0] || !res_name_ok(kind, st->id, w2)) {
                rc = nerr_set(err, NERR_CORRUPT, "%s line %zu: refusing '%s'%s", STATE_FILE, lineno,
                              line, st->id[0] ? "" : " (no id yet)");
                goto fail;
            }
            if (w1[0] == '-') {
                for (size_t i = st->n_res; i-- > 0;)
                    if (st->res[i].kind == kind && !strcmp(st->res[i].name, w2) &&
                        !st->res[i].cancelled) {
                        st->res[i].cancelled = 1;
                        break;
                    }
                continue;
            }
            if (st->n_res == cap) {
                size_t nc = cap ? cap * 2 : 32;
                struct lab_res *r = realloc(st->res, nc * sizeof *r);
                if (!r) {
                    rc = nerr_set(err, NERR_NOMEM, "out of memory");
                    goto fail;
                }
                st->res = r;
                cap = nc;
            }
            struct lab_res *r = &st->res[st->n_res++];
            memset(r, 0, sizeof *r);
            r->kind = kind;
            snprintf(r->name, sizeof r->name, "%s", w2);
            snprintf(r->extra, sizeof r->extra, "%s", w3);
        } else {
            rc = nerr_set(err, NERR_CORRUPT, "%s line %zu: unexpected '%s'", STATE_FILE, lineno,
                          line);
            goto fail;
        }
    }
    if (!st->id[0]) {
        rc = nerr_set(err, NERR_CORRUPT, "%s: no lab id", STATE_FILE);
        goto fail;
    }
    return 0;
fail:
    lab_state_free(st);
    return rc;
}

/* --- the machine ----------------------------------------------------------- */

void lab_env_default(struct lab_env *env)
{
    memset(env, 0, sizeof *env);
    power_env_default(&env->power);
    const char *s = getenv("NINES_LAB_SSHD");
    env->sshd = s && *s ? s : "/usr/sbin/sshd";
    env->ssh_keygen = "ssh-keygen";
    env->require_root = 1;
}

/* The IPv4 networks this namespace already reaches: interface subnets and
 * routes other than the default one. */
static int used_networks(struct lab_net *out, size_t cap, size_t *n, struct nerr *err)
{
    struct ifaddrs *ifa = NULL;
    size_t k = 0;
    if (getifaddrs(&ifa) != 0)
        return nerr_sys(err, errno, "getifaddrs");
    for (struct ifaddrs *i = ifa; i && k < cap; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !i->ifa_netmask)
            continue;
        uint32_t a = ntohl(((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr);
        uint32_t m = ntohl(((struct sockaddr_in *)i->ifa_netmask)->sin_addr.s_addr);
        out[k++] = (struct lab_net){a & m, m};
    }
    freeifaddrs(ifa);
    FILE *f = fopen("/proc/net/route", "re");
    if (f) {
        char line[512];
        if (fgets(line, sizeof line, f)) { /* header */
            while (k < cap && fgets(line, sizeof line, f)) {
                char ifname[64];
                unsigned dst, gw, flags, refcnt, use, metric, mask;
                if (sscanf(line, "%63s %x %x %x %u %u %u %x", ifname, &dst, &gw, &flags, &refcnt,
                           &use, &metric, &mask) != 8)
                    continue;
                if (mask == 0)
                    continue; /* the default route overlaps everything */
                /* The kernel prints the network-order word as a native integer. */
                out[k++] = (struct lab_net){ntohl(dst), ntohl(mask)};
            }
        }
        fclose(f);
    }
    *n = k;
    return 0;
}

/* A fresh id: no link and no namespace of this machine carries its prefix. */
static int pick_id(const struct lab_env *env, char id[LAB_ID_LEN + 1], uint32_t *seed,
                   struct nerr *err)
{
    for (int attempt = 0; attempt < ID_ATTEMPTS; attempt++) {
        unsigned char r[4];
        if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
            return nerr_sys(err, errno, "getrandom");
        snprintf(id, LAB_ID_LEN + 1, "%02x%02x%02x", r[0], r[1], r[2]);
        *seed = ((uint32_t)r[2] << 8) | r[3];
        char lp[16], np[32];
        snprintf(lp, sizeof lp, LAB_LINK_PREFIX "%s", id);
        snprintf(np, sizeof np, LAB_NETNS_PREFIX "%s-", id);
        int taken = 0;
        struct if_nameindex *ifs = if_nameindex();
        for (struct if_nameindex *i = ifs; ifs && i->if_index; i++)
            taken |= strncmp(i->if_name, lp, strlen(lp)) == 0;
        if (ifs)
            if_freenameindex(ifs);
        DIR *d = opendir(env->power.netns_dir);
        struct dirent *e;
        while (d && (e = readdir(d)))
            taken |= strncmp(e->d_name, np, strlen(np)) == 0;
        if (d)
            closedir(d);
        if (!taken)
            return 0;
    }
    return nerr_set(err, NERR_EXISTS, "no unused lab id found in %d attempts", ID_ATTEMPTS);
}

/* --- up ---------------------------------------------------------------------- */

static int cancelled(const volatile sig_atomic_t *cancel, struct nerr *err);
static int wait_ssh(const struct inv_host *h, int timeout_ms, const volatile sig_atomic_t *cancel,
                    struct nerr *err);

struct up {
    const struct lab_env *env;
    const struct lab_spec *spec;
    char dir[PATH_MAX];
    char id[LAB_ID_LEN + 1];
    char bridge[16];
    uint32_t net;
    int state_fd;
    char unshare[PATH_MAX], setsid[PATH_MAX];
};

/* Appends one line to the state file and makes it durable before the
 * resource it names exists, so that a crash leaves a record down can use. */
__attribute__((format(printf, 3, 4))) static int state_add(struct up *u, struct nerr *err,
                                                           const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line - 1)
        return nerr_set(err, NERR_LIMIT, "state line too long");
    line[n++] = '\n';
    if (write(u->state_fd, line, (size_t)n) != n || fdatasync(u->state_fd) != 0)
        return nerr_sys(err, errno, "write %s/%s", u->dir, STATE_FILE);
    return 0;
}

/* The only place a host's data directory is prepared. With labfs, data/
 * stays an empty mount point and backing/ beside it holds what is durable;
 * the state file names the host before anything can be mounted there, so
 * that down unmounts it whatever happens next. The mount itself is power
 * on's (fault/power.h), at up and after every power-off. */
static int prepare_data_dir(struct up *u, const char *host, const char *hostdir, struct nerr *err)
{
    char p[PATH_MAX];
    int rc;
    if ((rc = pathf(err, p, sizeof p, "%s/data", hostdir)) || (rc = make_dir(p, err)))
        return rc;
    if (u->spec->no_labfs)
        return 0;
    if ((rc = pathf(err, p, sizeof p, "%s/backing", hostdir)) || (rc = make_dir(p, err)))
        return rc;
    return state_add(u, err, "+labfs %s", host);
}

static int keygen(struct up *u, const char *path, const char *comment, struct nerr *err)
{
    char *argv[] = {(char *)u->env->ssh_keygen,
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    (char *)comment,
                    "-f",
                    (char *)path,
                    NULL};
    return run_argv(argv, err);
}

static int write_host_files(struct up *u, int i, const struct lab_names *nm, struct nerr *err)
{
    char hd[PATH_MAX], p[PATH_MAX], addr[32], comment[96];
    int rc;
    lab_addr_format(lab_host_addr(u->net, i), 0, addr, sizeof addr);
    if ((rc = pathf(err, hd, sizeof hd, "%s/hosts/%s", u->dir, nm->host)) ||
        (rc = make_dir(hd, err)))
        return rc;
    static const char *const subs[] = {"boot.d", "log", "run"};
    for (size_t k = 0; k < sizeof subs / sizeof subs[0]; k++)
        if ((rc = pathf(err, p, sizeof p, "%s/%s", hd, subs[k])) || (rc = make_dir(p, err)))
            return rc;
    if ((rc = prepare_data_dir(u, nm->host, hd, err)))
        return rc;

    snprintf(comment, sizeof comment, "nines-lab-%s-%s", u->id, nm->host);
    if ((rc = pathf(err, p, sizeof p, "%s/ssh_host_ed25519_key", hd)) ||
        (rc = keygen(u, p, comment, err)))
        return rc;

    char *text = NULL;
    if (asprintf(&text,
                 "# sshd of lab host %s (nines lab %s), run by %s/boot inside netns %s.\n"
                 "ListenAddress %s\n"
                 "Port 22\n"
                 "AddressFamily inet\n"
                 "HostKey %s/ssh_host_ed25519_key\n"
                 "PidFile %s/run/sshd.pid\n"
                 "AuthorizedKeysFile %s/keys/id_ed25519.pub\n"
                 "PermitRootLogin prohibit-password\n"
                 "PubkeyAuthentication yes\n"
                 "PasswordAuthentication no\n"
                 "KbdInteractiveAuthentication no\n"
                 "UsePAM no\n"
                 "StrictModes no\n"
                 "UseDNS no\n"
                 "X11Forwarding no\n"
                 "PrintMotd no\n"
                 /* A game day opens many sessions at once right after power on. */
                 "MaxStartups 64:30:256\n"
                 "MaxSessions 64\n"
                 "Subsystem sftp internal-sftp\n"
                 "LogLevel INFO\n",
                 nm->host, u->id, hd, nm->netns, addr, hd, hd, u->dir) < 0)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    if (!(rc = pathf(err, p, sizeof p, "%s/sshd_config", hd)))
        rc = fs_write_file(p, text, 0644, err);
    free(text);
    if (rc)
        return rc;

    /* Power on. Paths are baked in: the lab driver runs this with whatever
     * environment nines had. */
    if (asprintf(&text,
                 "#!/bin/sh\n"
                 "# Power on of lab host %s (nines lab %s). The lab power driver runs this\n"
                 "# inside network namespace %s. It starts sshd, then every executable\n"
                 "# in boot.d/ in the background (output to log/NAME.log, pid to run/NAME.pid).\n"
                 "set -u\n"
                 "H=%s\n"
                 "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
                 "export PATH\n"
                 "# Re-run in a UTS namespace of its own, remembering the one it came from.\n"
                 "if [ -z \"${NINES_LAB_OUTER_UTS+set}\" ]; then\n"
                 "    NINES_LAB_OUTER_UTS=$(readlink /proc/self/ns/uts)\n"
                 "    export NINES_LAB_OUTER_UTS\n"
                 "    exec %s --uts -- \"$H/boot\" \"$@\"\n"
                 "fi\n"
                 "outer=$NINES_LAB_OUTER_UTS\n"
                 "unset NINES_LAB_OUTER_UTS\n"
                 "me=$(readlink /proc/self/ns/uts)\n"
                 "# Name only the new namespace, never the machine itself.\n"
                 "if [ -n \"$me\" ] && [ -n \"$outer\" ] && [ \"$me\" != \"$outer\" ]; then\n"
                 "    echo %s >/proc/sys/kernel/hostname\n"
                 "fi\n"
                 "[ -d /run/sshd ] || mkdir -m 0755 /run/sshd\n"
                 "%s -f \"$H/sshd_config\" -E \"$H/log/sshd.log\" || {\n"
                 "    echo \"sshd failed to start; see $H/log/sshd.log\" >&2\n"
                 "    exit 1\n"
                 "}\n"
                 "for f in \"$H\"/boot.d/*; do\n"
                 "    [ -f \"$f\" ] && [ -x \"$f\" ] || continue\n"
                 "    n=${f##*/}\n"
                 "    %s \"$f\" </dev/null >>\"$H/log/$n.log\" 2>&1 &\n"
                 "    echo $! >\"$H/run/$n.pid\"\n"
                 "done\n"
                 "exit 0\n",
                 nm->host, u->id, nm->netns, hd, u->unshare, nm->host, u->env->sshd, u->setsid) < 0)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    if (!(rc = pathf(err, p, sizeof p, "%s/boot", hd)))
        rc = fs_write_file(p, text, 0755, err);
    free(text);
    return rc;
}

static int make_bridge(struct up *u, struct nerr *err)
{
    char gw[32];
    int rc;
    lab_addr_format(u->net + 1, 24, gw, sizeof gw);
    if (link_exists(u->bridge))
        return nerr_set(err, NERR_EXISTS, "a link named %s exists already", u->bridge);
    if ((rc = state_add(u, err, "+bridge %s", u->bridge)))
        return rc;
    if ((rc = run_ip(u->env, err, "link", "add", u->bridge, "type", "bridge", NULL))) {
        state_add(u, NULL, "-bridge %s", u->bridge);
        return rc;
    }
    if ((rc = run_ip(u->env, err, "addr", "add", gw, "dev", u->bridge, NULL)) ||
        (rc = run_ip(u->env, err, "link", "set", u->bridge, "up", NULL)))
        return rc;
    return 0;
}

static int make_host_net(struct up *u, int i, const struct lab_names *nm, struct nerr *err)
{
    char path[PATH_MAX], addr[32], cidr[32];
    struct stat st;
    int rc;
    lab_addr_format(lab_host_addr(u->net, i), 0, addr, sizeof addr);
    lab_addr_format(lab_host_addr(u->net, i), 24, cidr, sizeof cidr);
    if ((rc = pathf(err, path, sizeof path, "%s/%s", u->env->power.netns_dir, nm->netns)))
        return rc;
    if (stat(path, &st) == 0)
        return nerr_set(err, NERR_EXISTS, "network namespace %s exists already", nm->netns);
    if ((rc = state_add(u, err, "+netns %s %s", nm->netns, addr)))
        return rc;
    if ((rc = run_ip(u->env, err, "netns", "add", nm->netns, NULL))) {
        state_add(u, NULL, "-netns %s", nm->netns);
        return rc;
    }
    if (link_exists(nm->veth) || link_exists(nm->peer))
        return nerr_set(err, NERR_EXISTS, "a link named %s or %s exists already", nm->veth,
                        nm->peer);
    if ((rc = state_add(u, err, "+veth %s", nm->veth)))
        return rc;
    /* The peer is born inside the namespace, so it never shows up here. */
    if ((rc = run_ip(u->env, err, "link", "add", nm->veth, "type", "veth", "peer", "name", nm->peer,
                     "netns", nm->netns, NULL))) {
        state_add(u, NULL, "-veth %s", nm->veth);
        return rc;
    }
    /* Deliberately no route but the subnet's own: a lab host reaches its
     * peers and this machine, nothing beyond. */
    if ((rc = run_ip(u->env, err, "link", "set", nm->veth, "master", u->bridge, NULL)) ||
        (rc = run_ip(u->env, err, "link", "set", nm->veth, "up", NULL)) ||
        (rc =
             run_ip(u->env, err, "-n", nm->netns, "link", "set", nm->peer, "name", "eth0", NULL)) ||
        (rc = run_ip(u->env, err, "-n", nm->netns, "addr", "add", cidr, "dev", "eth0", NULL)) ||
        (rc = run_ip(u->env, err, "-n", nm->netns, "link", "set", "eth0", "up", NULL)) ||
        (rc = run_ip(u->env, err, "-n", nm->netns, "link", "set", "lo", "up", NULL)))
        return rc;
    return 0;
}

static int write_inventory(struct up *u, struct nerr *err)
{
    struct strbuf b = {0};
    char p[PATH_MAX], net[32], *text = NULL, *hdr = NULL;
    int rc = 0;
    lab_addr_format(u->net, 0, net, sizeof net);
    if (asprintf(&hdr,
                 "# Written by `nines lab up` (lab %s, subnet %s/24, bridge %s).\n"
                 "# Remove the lab with: nines lab down --dir %s\n"
                 "inventory: lab-%s\n"
                 "hosts:\n",
                 u->id, net, u->bridge, u->dir, u->id) < 0)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    strbuf_str(&b, hdr);
    free(hdr);
    int racks = u->spec->racks ? u->spec->racks : 1;
    for (int i = 0; i < u->spec->hosts; i++) {
        struct lab_names nm;
        char addr[32];
        int az, rack;
        lab_names_for(u->id, i, &nm);
        lab_addr_format(lab_host_addr(u->net, i), 0, addr, sizeof addr);
        lab_placement(i, u->spec->azs, racks, &az, &rack);
        /* The labfs mount point: the lab power driver cuts its power. */
        char fs[PATH_MAX + 64] = "";
        if (!u->spec->no_labfs &&
            snprintf(fs, sizeof fs, ",\n             fs: \"%s/hosts/%s/data\", fs_mode: crash",
                     u->dir, nm.host) >= (int)sizeof fs) {
            strbuf_free(&b);
            return nerr_set(err, NERR_LIMIT, "lab directory %s: path too long", u->dir);
        }
        char *entry = NULL;
        if (asprintf(&entry,
                     "  - name: %s\n"
                     "    address: %s\n"
                     "    port: 22\n"
                     "    user: root\n"
                     "    key: \"%s/keys/id_ed25519\"\n"
                     "    known_hosts: \"%s/known_hosts\"\n"
                     "    az: az%d\n"
                     "    rack: r%d\n"
                     "    data: \"%s/hosts/%s/data\"\n"
                     "    power: {driver: lab, netns: %s, start: \"%s/hosts/%s/boot\"%s}\n",
                     nm.host, addr, u->dir, u->dir, az, rack, u->dir, nm.host, nm.netns, u->dir,
                     nm.host, fs) < 0) {
            strbuf_free(&b);
            return nerr_set(err, NERR_NOMEM, "out of memory");
        }
        strbuf_str(&b, entry);
        free(entry);
    }
    if ((rc = strbuf_finish(&b, &text)))
        return nerr_set(err, NERR_NOMEM, "out of memory");
    if (!(rc = pathf(err, p, sizeof p, "%s/inventory.yaml", u->dir)))
        rc = fs_write_file(p, text, 0644, err);
    free(text);
    return rc;
}

static int write_known_hosts(struct up *u, struct nerr *err)
{
    struct strbuf b = {0};
    char p[PATH_MAX], *text = NULL;
    int rc = 0;
    for (int i = 0; i < u->spec->hosts && !rc; i++) {
        struct lab_names nm;
        char addr[32], *pub = NULL;
        size_t len;
        lab_names_for(u->id, i, &nm);
        lab_addr_format(lab_host_addr(u->net, i), 0, addr, sizeof addr);
        if ((rc = pathf(err, p, sizeof p, "%s/hosts/%s/ssh_host_ed25519_key.pub", u->dir,
                        nm.host)) ||
            (rc = fs_read_file(p, 16384, &pub, &len, err)))
            break;
        one_line(pub);
        strbuf_str(&b, addr);
        strbuf_ch(&b, ' ');
        strbuf_str(&b, pub);
        strbuf_ch(&b, '\n');
        free(pub);
    }
    if (rc) {
        strbuf_free(&b);
        return rc;
    }
    if (strbuf_finish(&b, &text))
        return nerr_set(err, NERR_NOMEM, "out of memory");
    if (!(rc = pathf(err, p, sizeof p, "%s/known_hosts", u->dir)))
        rc = fs_write_file(p, text, 0644, err);
    free(text);
    return rc;
}

static int dir_chars_ok(const char *s)
{
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._/+-", *p))
            return 0;
    return 1;
}

/* DIR must not exist (it is created) or be an empty directory. */
static int claim_dir(const char *dir, int *made, struct nerr *err)
{
    struct stat st;
    *made = 0;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return nerr_set(err, NERR_EXISTS, "%s exists and is not a directory", dir);
        char sp[PATH_MAX];
        if (pathf(err, sp, sizeof sp, "%s/%s", dir, STATE_FILE) == 0 && access(sp, F_OK) == 0)
            return nerr_set(err, NERR_EXISTS,
                            "%s is already a lab (it has %s); use it, or `nines lab down` it "
                            "first",
                            dir, STATE_FILE);
        DIR *d = opendir(dir);
        if (!d)
            return nerr_sys(err, errno, "opendir %s", dir);
        struct dirent *e;
        int empty = 1;
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                empty = 0;
        closedir(d);
        if (!empty)
            return nerr_set(err, NERR_EXISTS, "%s exists and is not empty", dir);
        return 0;
    }
    if (errno != ENOENT)
        return nerr_sys(err, errno, "stat %s", dir);
    if (mkdir(dir, 0755) != 0)
        return nerr_sys(err, errno, "mkdir %s (its parent must exist)", dir);
    *made = 1;
    return 0;
}

static int preflight(const struct lab_env *env, struct up *u, struct nerr *err)
{
    if (env->require_root && geteuid() != 0)
        return nerr_set(err, NERR_INVALID,
                        "nines lab must run as root (it creates network namespaces)");
    if (find_exec(env->power.ip, NULL, 0) != 0)
        return nerr_set(err, NERR_INVALID, "no `%s` program (iproute2) found", env->power.ip);
    if (find_exec(env->sshd, NULL, 0) != 0)
        return nerr_set(err, NERR_INVALID, "no sshd at %s (openssh-server)", env->sshd);
    if (find_exec(env->ssh_keygen, NULL, 0) != 0)
        return nerr_set(err, NERR_INVALID, "no `%s` program (openssh-client)", env->ssh_keygen);
    if (find_exec("unshare", u->unshare, sizeof u->unshare) != 0 ||
        find_exec("setsid", u->setsid, sizeof u->setsid) != 0)
        return nerr_set(err, NERR_INVALID, "no `unshare` or `setsid` program (util-linux)");
    if (!u->spec->no_labfs) {
        int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
        if (fd < 0)
            return nerr_sys(err, errno,
                            "/dev/fuse is not usable, so the hosts' data directories cannot be "
                            "labfs mounts (use --no-labfs for plain directories and kill-only "
                            "power-offs)");
        close(fd);
    }
    if (!dir_chars_ok(u->unshare) || !dir_chars_ok(u->setsid) || !dir_chars_ok(env->sshd))
        return nerr_set(err, NERR_INVALID,
                        "unusual characters in the path of unshare, setsid or sshd");
    return 0;
}

int lab_up(const struct lab_env *env, const struct lab_spec *spec, char *id_out, struct nerr *err)
{
    struct up *u = calloc(1, sizeof *u);
    struct inventory *inv = NULL;
    struct lab_net *used = NULL;
    char p[PATH_MAX], net[32], comment[64];
    int rc, made = 0, have_dir = 0, have_state = 0, have_header = 0;
    if (!u)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    u->env = env;
    u->spec = spec;
    u->state_fd = -1;
    if ((rc = lab_spec_check(spec, err)) || (rc = preflight(env, u, err)))
        goto out;

    /* The subnet is decided before anything is made. */
    size_t n_used = 0;
    if (!(used = calloc(MAX_USED_NETS, sizeof *used))) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = used_networks(used, MAX_USED_NETS, &n_used, err)))
        goto out;
    uint32_t seed = 0;
    if ((rc = pick_id(env, u->id, &seed, err)))
        goto out;
    lab_bridge_name(u->id, u->bridge);
    if (spec->subnet) {
        size_t which = 0;
        char taken[32];
        if ((rc = lab_subnet_parse(spec->subnet, &u->net, err)))
            goto out;
        if (lab_subnet_overlaps(u->net, used, n_used, &which)) {
            int plen = __builtin_popcount(used[which].mask);
            lab_addr_format(used[which].addr, plen ? plen : 32, taken, sizeof taken);
            rc = nerr_set(err, NERR_INVALID,
                          "subnet %s overlaps %s, which this machine already uses", spec->subnet,
                          taken);
            goto out;
        }
    } else if ((rc = lab_subnet_pick(used, n_used, seed, &u->net, err))) {
        goto out;
    }

    if ((rc = claim_dir(spec->dir, &made, err)))
        goto out;
    have_dir = 1;
    if (!realpath(spec->dir, u->dir)) {
        rc = nerr_sys(err, errno, "realpath %s", spec->dir);
        goto out;
    }
    if (strlen(u->dir) > DIR_MAX || !dir_chars_ok(u->dir)) {
        rc = nerr_set(err, NERR_INVALID,
                      "lab directory '%s': its absolute path must be at most %d characters of "
                      "[A-Za-z0-9._/+-]",
                      u->dir, DIR_MAX);
        goto out;
    }
    if ((rc = pathf(err, p, sizeof p, "%s/%s", u->dir, STATE_FILE)))
        goto out;
    u->state_fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
    if (u->state_fd < 0) {
        rc = nerr_sys(err, errno, "create %s", p);
        goto out;
    }
    have_state = 1;
    if (flock(u->state_fd, LOCK_EX | LOCK_NB) != 0) {
        rc = nerr_sys(err, errno, "lock %s", p);
        goto out;
    }
    lab_addr_format(u->net, 24, net, sizeof net);
    static const char *const tops[] = {"keys", "hosts", "known_hosts", "inventory.yaml"};
    if ((rc = state_add(u, err, "nines-lab 1\nid %s\nmade-dir %d\nsubnet %s", u->id, made, net)))
        goto out;
    have_header = 1;
    for (size_t k = 0; k < sizeof tops / sizeof tops[0]; k++)
        if ((rc = state_add(u, err, "+path %s", tops[k])))
            goto out;
    log_info("lab %s: %d hosts in %d AZs, subnet %s, bridge %s, dir %s", u->id, spec->hosts,
             spec->azs, net, u->bridge, u->dir);

    snprintf(comment, sizeof comment, "nines-lab-%s-client", u->id);
    if ((rc = pathf(err, p, sizeof p, "%s/keys", u->dir)) || (rc = make_dir(p, err)) ||
        (rc = pathf(err, p, sizeof p, "%s/hosts", u->dir)) || (rc = make_dir(p, err)) ||
        (rc = pathf(err, p, sizeof p, "%s/keys/id_ed25519", u->dir)) ||
        (rc = keygen(u, p, comment, err)))
        goto out;
    if ((rc = cancelled(spec->cancel, err)) || (rc = make_bridge(u, err)))
        goto out;
    for (int i = 0; i < spec->hosts; i++) {
        struct lab_names nm;
        lab_names_for(u->id, i, &nm);
        if ((rc = cancelled(spec->cancel, err)) || (rc = write_host_files(u, i, &nm, err)) ||
            (rc = make_host_net(u, i, &nm, err)))
            goto out;
    }
    if ((rc = write_known_hosts(u, err)) || (rc = write_inventory(u, err)))
        goto out;
    if ((rc = pathf(err, p, sizeof p, "%s/inventory.yaml", u->dir)) ||
        (rc = inventory_load(p, &inv, err)))
        goto out;

    for (size_t i = 0; i < inv->n_hosts; i++)
        if ((rc = cancelled(spec->cancel, err)) ||
            (rc = power_on(&env->power, &inv->hosts[i], err)))
            goto out;
    int64_t deadline = clock_mono_ms() + (spec->ssh_wait_ms ? spec->ssh_wait_ms : LAB_SSH_WAIT_MS);
    for (size_t i = 0; i < inv->n_hosts; i++) {
        int64_t left = deadline - clock_mono_ms();
        if ((rc = wait_ssh(&inv->hosts[i], left > 0 ? (int)left : 1, spec->cancel, err)))
            goto out;
    }
    if ((rc = state_add(u, err, "complete")))
        goto out;
    if (id_out)
        memcpy(id_out, u->id, LAB_ID_LEN + 1);
out:
    inventory_free(inv);
    free(used);
    if (u->state_fd >= 0)
        close(u->state_fd); /* also drops the lock, which down takes anew */
    if (rc && have_dir) {
        struct nerr derr;
        int drc = 0;
        nerr_clear(&derr);
        if (have_header) {
            drc = lab_down(env, u->dir, &derr);
        } else {
            /* Nothing was made but DIR and perhaps an empty state file. */
            if (have_state && pathf(&derr, p, sizeof p, "%s/%s", u->dir, STATE_FILE) == 0 &&
                unlink(p) != 0)
                drc = nerr_sys(&derr, errno, "unlink %s", p);
            if (!drc && made && rmdir(spec->dir) != 0)
                drc = nerr_sys(&derr, errno, "rmdir %s", spec->dir);
        }
        if (drc)
            log_error("lab up failed and so did cleaning up: %s; run `nines lab down --dir %s`",
                      derr.msg, spec->dir);
    }
    free(u);
    return rc;
}

/* --- down -------------------------------------------------------------------- */

/* 1 when path is a mount point (its device differs from its parent's) or a
 * FUSE mount whose daemon is gone. */
static int is_mounted(const char *path)
{
    char parent[PATH_MAX];
    struct stat st, pst;
    if (stat(path, &st) != 0)
        return errno == ENOTCONN || errno == ECONNABORTED;
    if ((size_t)snprintf(parent, sizeof parent, "%s/..", path) >= sizeof parent ||
        stat(parent, &pst) != 0)
        return 0;
    return st.st_dev != pst.st_dev;
}

/* Unmounts the labfs at path, if one is there. It is crashed first: the lab
 * is going away with its data, so its daemon need not write anything out.
 * A reference that lingers (a shell cd'd into it) gets a lazy unmount, which
 * detaches the mount at once; the daemon then ends with the last reference. */
static int unmount_labfs(const char *path, struct nerr *err)
{
    char reply[256];
    struct nerr e;
    int rc = 0;
    if (!is_mounted(path))
        return 0;
    nerr_clear(&e);
    labfs_control(path, "crash", reply, sizeof reply, &e); /* a dead mount has no control file */
    for (int attempt = 0; attempt < 20; attempt++) {
        if ((rc = power_labfs_umount(path, 0, POWER_FS_UMOUNT_MS, &e)) != NERR_BUSY)
            break;
        sleep_ms(50);
    }
    if (rc == NERR_BUSY) {
        log_warn("lab down: %s; unmounting it lazily", e.msg);
        rc = power_labfs_umount(path, 1, POWER_FS_UMOUNT_MS, &e);
    }
    if (rc && !(rc == NERR_NOTFOUND && !is_mounted(path)))
        return nerr_set(err, rc, "unmounting labfs %s: %s", path, e.msg);
    if (is_mounted(path))
        return nerr_set(err, NERR_BUSY, "%s is still a mount point", path);
    return 0;
}

/* Down goes on after a failure, to remove as much as it can; the first
 * error is the one reported. */
static void keep_first(int rc, const struct nerr *e, int *first, struct nerr *err)
{
    if (!rc || *first)
        return;
    *first = rc;
    if (err)
        *err = *e;
}

int lab_down(const struct lab_env *env, const char *dir, struct nerr *err)
{
    char p[PATH_MAX], adir[PATH_MAX], *text = NULL;
    size_t len = 0;
    struct lab_state st = {0};
    int fd = -1, rc = 0, first = 0;
    struct nerr e1;
    if (!realpath(dir, adir)) {
        if (errno == ENOENT)
            return 0; /* nothing left: already down */
        return nerr_sys(err, errno, "realpath %s", dir);
    }
    if (env->require_root && geteuid() != 0)
        return nerr_set(err, NERR_INVALID, "nines lab must run as root");
    if ((rc = pathf(err, p, sizeof p, "%s/%s", adir, STATE_FILE)))
        return rc;
    fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT
                   ? nerr_set(err, NERR_NOTFOUND, "%s is not a lab (no %s)", dir, STATE_FILE)
                   : nerr_sys(err, errno, "open %s", p);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        rc = errno == EWOULDBLOCK
                 ? nerr_set(err, NERR_BUSY, "the lab at %s is in use by another nines lab command",
                            dir)
                 : nerr_sys(err, errno, "lock %s", p);
        goto out;
    }
    if ((rc = fs_read_file(p, STATE_MAX, &text, &len, err)) ||
        (rc = lab_state_parse(text, len, &st, err)))
        goto out;

    /* Power off every host first, all of them, before anything is deleted:
     * the namespaces' processes go, then their links. */
    for (size_t i = 0; i < st.n_res; i++) {
        struct lab_res *r = &st.res[i];
        struct stat sb;
        if (r->kind != LAB_RES_NETNS || r->cancelled)
            continue;
        if ((rc = pathf(&e1, p, sizeof p, "%s/%s", env->power.netns_dir, r->name))) {
            keep_first(rc, &e1, &first, err);
            continue;
        }
        if (stat(p, &sb) != 0)
            continue;
        struct inv_host h = {.name = r->name,
                             .address = r->extra[0] ? r->extra : NULL,
                             .power = {.driver = INV_DRIVER_LAB,
                                       .timeout_ns = DOWN_POWER_TIMEOUT_NS,
                                       .netns = r->name,
                                       .start = "true"}};
        if (!h.address)
            keep_first(nerr_set(&e1, NERR_CORRUPT, "netns %s: no address recorded", r->name), &e1,
                       &first, err);
        else
            keep_first(power_off(&env->power, &h, &e1), &e1, &first, err);
    }
    /* A namespace deleted while a process still runs in it would live on
     * with no name to find it by: delete nothing, keep the state, and let
     * the caller run down again. */
    if (first) {
        rc = first;
        goto out;
    }
    /* The hosts' labfs mounts go next, while nothing uses them any more, and
     * before any file is removed: removing DIR with a mount under it would
     * reach into the mount, and would leave its daemon running. */
    for (size_t i = 0; i < st.n_res; i++) {
        struct lab_res *r = &st.res[i];
        if (r->kind != LAB_RES_LABFS || r->cancelled)
            continue;
        if (!(rc = pathf(&e1, p, sizeof p, "%s/hosts/%s/data", adir, r->name)))
            rc = unmount_labfs(p, &e1);
        keep_first(rc, &e1, &first, err);
    }
    rc = 0;
    for (size_t i = st.n_res; i-- > 0;) {
        struct lab_res *r = &st.res[i];
        struct stat sb;
        int r1 = 0;
        if (r->cancelled)
            continue;
        switch (r->kind) {
        case LAB_RES_VETH:
            /* Deleting one end deletes the pair. */
            if (link_exists(r->name))
                r1 = run_ip(env, &e1, "link", "del", r->name, NULL);
            break;
        case LAB_RES_NETNS:
            if ((r1 = pathf(&e1, p, sizeof p, "%s/%s", env->power.netns_dir, r->name)))
                break;
            if (stat(p, &sb) == 0)
                r1 = run_ip(env, &e1, "netns", "del", r->name, NULL);
            break;
        case LAB_RES_BRIDGE:
            if (link_exists(r->name))
                r1 = run_ip(env, &e1, "link", "del", r->name, NULL);
            break;
        case LAB_RES_PATH:
        case LAB_RES_LABFS:
            break;
        }
        keep_first(r1, &e1, &first, err);
    }
    if (first) {
        rc = first;
        goto out;
    }
    /* Everything on the machine is gone; now the files. The state file goes
     * last, so that a failure here still leaves a lab down can finish. The
     * labfs mounts are gone too (above); a data directory that is still a
     * mount point stopped down there. */
    if (st.made_dir) {
        rc = fs_rm_rf(adir, err);
    } else {
        for (size_t i = 0; i < st.n_res && !rc; i++) {
            if (st.res[i].kind != LAB_RES_PATH || st.res[i].cancelled)
                continue;
            if (!(rc = pathf(err, p, sizeof p, "%s/%s", adir, st.res[i].name)))
                rc = fs_rm_rf(p, err);
        }
        if (!rc && !(rc = pathf(err, p, sizeof p, "%s/%s", adir, STATE_FILE)) && unlink(p) != 0)
            rc = nerr_sys(err, errno, "unlink %s", p);
    }
out:
    free(text);
    lab_state_free(&st);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* --- using a lab ------------------------------------------------------------- */

void lab_close(struct lab *lab)
{
    if (!lab)
        return;
    inventory_free(lab->inv);
    free(lab->dir);
    free(lab);
}

int lab_open(const char *dir, struct lab **out, struct nerr *err)
{
    char adir[PATH_MAX], p[PATH_MAX], *text = NULL;
    size_t len = 0;
    struct lab_state st = {0};
    struct lab *lab = NULL;
    int rc;
    *out = NULL;
    if (!realpath(dir, adir))
        return errno == ENOENT ? nerr_set(err, NERR_NOTFOUND, "no lab at %s", dir)
                               : nerr_sys(err, errno, "realpath %s", dir);
    if ((rc = pathf(err, p, sizeof p, "%s/%s", adir, STATE_FILE)))
        return rc;
    if (access(p, F_OK) != 0)
        return nerr_set(err, NERR_NOTFOUND, "%s is not a lab (no %s)", dir, STATE_FILE);
    if ((rc = fs_read_file(p, STATE_MAX, &text, &len, err)) ||
        (rc = lab_state_parse(text, len, &st, err)))
        goto fail;
    if (!st.complete) {
        rc = nerr_set(err, NERR_INVALID,
                      "the lab at %s is incomplete (its `up` failed or is still running); "
                      "remove it with `nines lab down --dir %s`",
                      dir, dir);
        goto fail;
    }
    if (!(lab = calloc(1, sizeof *lab)) || !(lab->dir = strdup(adir))) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto fail;
    }
    memcpy(lab->id, st.id, sizeof lab->id);
    snprintf(lab->subnet, sizeof lab->subnet, "%s", st.subnet);
    lab_bridge_name(st.id, lab->bridge);
    lab->complete = st.complete;
    if ((rc = pathf(err, p, sizeof p, "%s/inventory.yaml", adir)) ||
        (rc = inventory_load(p, &lab->inv, err)))
        goto fail;
    free(text);
    lab_state_free(&st);
    *out = lab;
    return 0;
fail:
    free(text);
    lab_state_free(&st);
    lab_close(lab);
    return rc;
}

static int cancelled(const volatile sig_atomic_t *cancel, struct nerr *err)
{
    if (cancel && *cancel)
        return nerr_set(err, NERR_CLOSED, "interrupted by a signal");
    return 0;
}

static int wait_ssh(const struct inv_host *h, int timeout_ms, const volatile sig_atomic_t *cancel,
                    struct nerr *err)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    struct nerr last;
    int rc;
    nerr_clear(&last);
    for (int attempt = 0;; attempt++) {
        int64_t left = deadline - clock_mono_ms();
        struct ssh_host_opts o;
        struct ssh_session *s = NULL;
        inventory_ssh_opts(h, left < 5000 ? (int)(left > 100 ? left : 100) : 5000, &o);
        if ((rc = ssh_connect(&o, &s, &last)) == 0) {
            ssh_close(s);
            return 0;
        }
        /* A refused key will not change by waiting. */
        if (rc == NERR_AUTH)
            return nerr_set(err, rc, "host %s (%s): %s", h->name, h->address, last.msg);
        if ((rc = cancelled(cancel, err)))
            return rc;
        if (clock_mono_ms() + 100 >= deadline)
            return nerr_set(err, NERR_TIMEOUT,
                            "host %s (%s): no SSH session within %d ms (%d attempts): %s", h->name,
                            h->address, timeout_ms, attempt + 1, last.msg);
        sleep_ms(100);
    }
}

int lab_wait_ssh(const struct inv_host *h, int timeout_ms, struct nerr *err)
{
    return wait_ssh(h, timeout_ms, NULL, err);
}

int lab_status(const struct lab_env *env, const struct lab *lab, struct lab_host_status *out,
               size_t cap, int probe_ms, struct nerr *err)
{
    if (cap < lab->inv->n_hosts)
        return nerr_set(err, NERR_LIMIT, "room for %zu hosts, the lab has %zu", cap,
                        lab->inv->n_hosts);
    for (size_t i = 0; i < lab->inv->n_hosts; i++) {
        const struct inv_host *h = &lab->inv->hosts[i];
        struct lab_host_status *s = &out[i];
        struct nerr e;
        memset(s, 0, sizeof *s);
        s->host = h;
        if (power_status(&env->power, h, &s->power, s->power_detail, sizeof s->power_detail, &e) !=
            0) {
            s->power = POWER_UNKNOWN;
            snprintf(s->power_detail, sizeof s->power_detail, "%s", e.msg);
        }
        s->fs = power_lab_fs_state(&env->power, h, s->fs_detail, sizeof s->fs_detail);
        struct ssh_host_opts o;
        struct ssh_session *sess = NULL;
        inventory_ssh_opts(h, probe_ms, &o);
        if (ssh_connect(&o, &sess, &e) == 0) {
            s->ssh_ok = 1;
            ssh_close(sess);
        } else {
            snprintf(s->ssh_error, sizeof s->ssh_error, "%s", e.msg);
        }
    }
    return 0;
}

static const struct inv_host *find_host(const struct lab *lab, const char *host, struct nerr *err)
{
    const struct inv_host *h = inventory_host(lab->inv, host);
    if (!h) {
        struct strbuf b = {0};
        for (size_t i = 0; i < lab->inv->n_hosts; i++) {
            strbuf_str(&b, i ? ", " : "");
            strbuf_str(&b, lab->inv->hosts[i].name);
        }
        char *names = NULL;
        strbuf_finish(&b, &names);
        nerr_set(err, NERR_NOTFOUND, "no host '%s' in the lab at %s (hosts: %.300s)", host,
                 lab->dir, names ? names : "?");
        free(names);
    }
    return h;
}

int lab_power(const struct lab_env *env, const struct lab *lab, const char *host, int on,
              enum power_off_mode mode, int wait_ms, struct nerr *err)
{
    const struct inv_host *h = find_host(lab, host, err);
    int rc;
    if (!h)
        return NERR_NOTFOUND;
    if (!on)
        return power_off_as(&env->power, h, mode, err);
    enum power_state ps = POWER_UNKNOWN;
    char detail[64];
    if ((rc = power_status(&env->power, h, &ps, detail, sizeof detail, err)))
        return rc;
    /* Booting twice would only fail on sshd's busy port, less clearly. */
    if (ps == POWER_ON)
        return nerr_set(err, NERR_EXISTS, "host %s is already on (%s)", host, detail);
    if ((rc = power_on(&env->power, h, err)))
        return rc;
    return wait_ms > 0 ? lab_wait_ssh(h, wait_ms, err) : 0;
}

int lab_exec(const struct lab *lab, const char *host, const char *const argv[], int timeout_ms,
             struct ssh_result *res, struct nerr *err)
{
    const struct inv_host *h = find_host(lab, host, err);
    struct ssh_session *s = NULL;
    struct ssh_host_opts o;
    int rc;
    if (!h)
        return NERR_NOTFOUND;
    inventory_ssh_opts(h, timeout_ms < 10000 ? timeout_ms : 10000, &o);
    if ((rc = ssh_connect(&o, &s, err)))
        return rc;
    rc = ssh_exec_argv(s, argv, timeout_ms, res, err);
    ssh_close(s);
    return rc;
}
