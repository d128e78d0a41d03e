/*
 * fault/degrade.c — the network degradation fault kind (fault.h): the
 * playbook's `degrade` step makes the links between its hosts and every
 * other inventory host slow and/or lossy (`latency`, `jitter`, `loss`),
 * `restore_network` or the end of the step's duration makes them whole
 * again, and heal_all removes what this kind installs from every host.
 *
 * Mechanism, on each degraded host (as for partition, traffic inside the
 * degraded set and with the controller is untouched):
 *   loss     the nftables table inet nines_fault_degrade (hostfault.h): in
 *            its input and output chains, a packet from or to a peer is
 *            dropped with probability loss (`numgen random mod 10000 < N`),
 *            so each direction loses loss% and a round trip about twice
 *            that;
 *   latency  where the kernel has netem, tc: an htb root qdisc with handle
 *            9e5: on each device that routes to a peer, whose class 9e5:2
 *            (u32 filters on the peers' addresses) leads to a netem qdisc
 *            `delay LATENCY [JITTER]`. A device whose root qdisc is not the
 *            kernel's default (someone configured it) is refused by tc
 *            ("Exclusivity flag on"), and we never replace it.
 *            Where it has none (CONFIG_NET_SCH_NETEM unset: tc answers that
 *            the qdisc is unknown, and what was added is undone), NFQUEUE:
 *            the delayer nines-netdelay (fault/netdelay_main.c) is uploaded
 *            to DATA/nines-netdelay, as bit_rot uploads its tool, and started
 *            (--daemon: the command returns once NFQUEUE queue 2533 is bound)
 *            with its pid in DATA/nines-netdelay.pid; then legacy iptables
 *            (iptables-legacy, ip6tables-legacy: nftables' queue statement
 *            needs CONFIG_NFT_QUEUE, which such kernels may lack too) gets
 *            the chain NINES_DEGRADE in the mangle table, jumped to first
 *            from OUTPUT, queueing what goes to a peer with --queue-bypass.
 *            The delayer holds each packet latency +- jitter and accepts it;
 *            it is bounded in packets held and in lifetime (the step's
 *            timeout plus a margin), and fails open, as the rules do: when
 *            it is gone, the links are normal again, never cut.
 *   Both are egress only: a round trip with a peer grows by latency.
 *   `latency_via: netem` or `nfqueue` forces one (default auto: netem where
 *   there is one), so both can be tested on a kernel that has netem.
 * The latency part is installed first and everything is undone when a step
 * fails, so an inject that fails on a host leaves that host as it was; an
 * inject that fails on one host of several removes it from the others too.
 *
 * Heal (and first of all inject, for a leftover of a run that died): the
 * iptables chain goes first, then the delayer (SIGTERM, by the pid in its
 * pid file, only when /proc/PID/cmdline is nines-netdelay with that very
 * pid file; SIGKILL after 3 s), then the table and our qdiscs. heal_all
 * does the same on every host, so a delayer left by an orchestrator that
 * died is found by its pid file. Legacy iptables is looked at only where
 * the netns has a legacy mangle table (/proc/net/ip_tables_names), so a
 * host we never degraded this way gets none.
 *
 * `latency_via: netem` on a kernel without netem fails with "host h2
 * (ADDR): this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM): latency
 * cannot be injected with latency_via: netem (auto or nfqueue would use
 * nines-netdelay)". Nothing restarts: host_changed is not called.
 */
#include "fault/fault.h"
#include "fault/hostfault.h"
#include "fault/netdelay.h"
#include "net/shquote.h"
#include "net/ssh.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NS_PER_S 1000000000ull
#define TABLE "nines_fault_degrade"
#define CHAIN "NINES_DEGRADE"
#define QUEUE_NUM 2533 /* 0x9e5, as the qdisc handle */
#define LAT_MAX_NS (60 * NS_PER_S)
#define INJECT_TIMEOUT_NS (60 * NS_PER_S)
#define HELD_MAX_NS (3600 * NS_PER_S) /* a step without duration: the longest a duration can be */
#define LIFE_MARGIN_NS (60 * NS_PER_S)
#define EXIT_NO_NETEM 42
#define EXIT_NO_TC 43

enum latency_via { VIA_AUTO = 0, VIA_NETEM, VIA_NFQUEUE };

struct degrade_params {
    uint64_t latency_ns, jitter_ns; /* 0: none */
    unsigned loss_bp;               /* hundredths of a percent, 0..10000 */
    enum latency_via via;
    /* Read from the step's shared keys for the delayer's lifetime (0: not
     * given); the playbook parser reports their errors. */
    uint64_t hold_max_ns, timeout_ns;
};

static const char *const keys[] = {"latency", "jitter", "loss", "latency_via", NULL};
/* A duration key that must not be negative (yt's durations have no sign:
 * "-200ms" would only get "expected a duration"). */
static void get_delay(const struct fault_errs *x, const struct yt_node *m, const char *key,
                      uint64_t *out)
{
    const struct yt_node *n = yt_map_get(m, key);
    struct nerr e = {0};
    if (!n || yt_is_null(n))
        return;
    if (n->kind == YT_SCALAR && n->text[0] == '-') {
        fault_errf(x, n, "%s must not be negative, got '%s'", key, n->text);
        return;
    }
    fault_chk(x, yt_as_duration(n, 1000, LAT_MAX_NS, out, &e), &e);
}

/* "10%", "0.5%", "10": a percentage with at most two decimals. */
static int parse_loss(const char *s, unsigned *bp)
{
    unsigned long whole = 0, frac = 0;
    int digits = 0, fd = 0;
    const char *p = s;
    while (isdigit((unsigned char)*p) && digits < 4)
        whole = whole * 10 + (unsigned long)(*p++ - '0'), digits++;
    if (!digits)
        return -1;
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p) && fd < 2)
            frac = frac * 10 + (unsigned long)(*p++ - '0'), fd++;
        if (!fd)
            return -1;
        if (fd == 1)
            frac *= 10;
    }
    if (*p == '%')
        p++;
    if (*p)
        return -1;
    unsigned long v = whole * 100 + frac;
    if (v > 10000)
        return 1;
    *bp = (unsigned)v;
    return 0;
}

/* The upper bound of the step's duration ("5s" or "5s..20s") and its
 * timeout, for the delayer's lifetime. Silent: the playbook's parser
 * reports what is wrong with them. */
static void read_lifetime(const struct yt_node *m, struct degrade_params *p)
{
    struct nerr e = {0};
    uint64_t ns = 0;
    const struct yt_node *d = yt_map_get(m, "duration");
    if (d && d->kind == YT_SCALAR && d->text) {
        struct yt_node hi = *d;
        char *dots = strstr(d->text, "..");
        if (dots) {
            hi.text = dots + 2;
            hi.len = strlen(hi.text);
            hi.style = YT_PLAIN;
        }
        if (!yt_as_duration(&hi, 0, HELD_MAX_NS, &ns, &e))
            p->hold_max_ns = ns;
    }
    const struct yt_node *t = yt_map_get(m, "timeout");
    if (t && !yt_as_duration(t, 0, HELD_MAX_NS, &ns, &e))
        p->timeout_ns = ns;
}

static int dg_parse(const struct fault_errs *x, const struct yt_node *m, void **params)
{
    struct degrade_params *p = calloc(1, sizeof *p);
    if (!p)
        return NERR_NOMEM;
    *params = p;
    get_delay(x, m, "latency", &p->latency_ns);
    get_delay(x, m, "jitter", &p->jitter_ns);
    const struct yt_node *jn = yt_map_get(m, "jitter");
    if (jn && !yt_is_null(jn) && !yt_map_get(m, "latency"))
        fault_errf(x, jn, "jitter needs latency (it varies the delay around latency)");

    const struct yt_node *ln = yt_map_get(m, "loss");
    int loss_given = ln && !yt_is_null(ln), loss_ok = 0;
    if (loss_given) {
        const char *s = NULL;
        struct nerr e = {0};
        int r = 0;
        if (!fault_chk(x, yt_as_str(ln, &s, &e), &e)) {
            if (s[0] == '-' || (r = parse_loss(s, &p->loss_bp)) > 0)
                fault_errf(x, ln, "loss must be from 0%% to 100%%, got '%s'", s);
            else if (r < 0)
                fault_errf(x, ln, "loss must be a percentage such as 10%% or 0.5%%, got '%s'", s);
            else
                loss_ok = 1;
        }
    }
    const struct yt_node *lat = yt_map_get(m, "latency");
    int lat_given = lat && !yt_is_null(lat);
    if (!lat_given && !loss_given)
        fault_errf(x, m, "degrade needs latency or loss (or both)");
    else if (!lat_given && loss_ok && p->loss_bp == 0)
        fault_errf(x, ln, "loss 0%% without latency degrades nothing");

    const struct yt_node *vn = yt_map_get(m, "latency_via");
    if (vn && !yt_is_null(vn)) {
        const char *s = NULL;
        struct nerr e = {0};
        if (!fault_chk(x, yt_as_str(vn, &s, &e), &e)) {
            if (!strcmp(s, "auto"))
                p->via = VIA_AUTO;
            else if (!strcmp(s, "netem"))
                p->via = VIA_NETEM;
            else if (!strcmp(s, "nfqueue"))
                p->via = VIA_NFQUEUE;
            else
                fault_errf(x, vn, "latency_via must be auto, netem or nfqueue, got '%s'", s);
            if (!lat_given)
                fault_errf(x, vn, "latency_via needs latency (it says how latency is made)");
        }
    }
    read_lifetime(m, p);
    return 0;
}

static void dg_free(void *params)
{
    free(params);
}

static int dg_check(const struct inventory *inv, const struct fault_call *c, struct nerr *err)
{
    if (c->nhosts >= inv->n_hosts)
        return nerr_set(err, NERR_INVALID,
                        "degrade: every host of the inventory would be degraded, so there is no "
                        "other host whose links to them could be");
    return 0;
}

static void fmt_ns(uint64_t ns, char *buf, size_t cap)
{
    if (ns % NS_PER_S == 0)
        snprintf(buf, cap, "%llus", (unsigned long long)(ns / NS_PER_S));
    else if (ns % 1000000 == 0)
        snprintf(buf, cap, "%llums", (unsigned long long)(ns / 1000000));
    else
        snprintf(buf, cap, "%lluus", (unsigned long long)(ns / 1000));
}

static void fmt_loss(unsigned bp, char *buf, size_t cap)
{
    if (bp % 100 == 0)
        snprintf(buf, cap, "%u%%", bp / 100);
    else if (bp % 10 == 0)
        snprintf(buf, cap, "%u.%u%%", bp / 100, bp % 100 / 10);
    else
        snprintf(buf, cap, "%u.%02u%%", bp / 100, bp % 100);
}

static void dg_describe(const void *params, char *buf, size_t cap)
{
    const struct degrade_params *p = params;
    char l[32] = "", lat[32] = "", jit[32] = "";
    if (!p) {
        snprintf(buf, cap, "%s", "");
        return;
    }
    if (p->loss_bp)
        fmt_loss(p->loss_bp, l, sizeof l);
    if (p->latency_ns)
        fmt_ns(p->latency_ns, lat, sizeof lat);
    if (p->jitter_ns)
        fmt_ns(p->jitter_ns, jit, sizeof jit);
    static const char *const via[] = {
        [VIA_AUTO] = "", [VIA_NETEM] = ", via netem", [VIA_NFQUEUE] = ", via nfqueue"};
    snprintf(buf, cap, " (%s%s%s%s%s%s%s%s)", *l ? "loss " : "", l, *l && *lat ? ", " : "",
             *lat ? "latency " : "", lat, *jit ? ", jitter " : "", jit, via[p->via]);
}

static const char *dg_label(const struct inv_host *h, const void *params)
{
    (void)h, (void)params;
    return "degrade";
}

/* ---- the host side ---- */

/* A host's paths, each quoted for the shell; new_raw unquoted (SFTP). */
struct hpaths {
    char new_raw[PATH_MAX];
    char *tool, *new, *pid, *log;
};

static void hpaths_free(struct hpaths *hp)
{
    free(hp->tool), free(hp->new), free(hp->pid), free(hp->log);
    hp->tool = hp->new = hp->pid = hp->log = NULL;
}

static int hpaths_of(const struct inv_host *h, struct hpaths *hp, struct nerr *err)
{
    static const char *const names[] = {NETDELAY_TOOL, "." NETDELAY_TOOL ".new",
                                        NETDELAY_TOOL ".pid", NETDELAY_TOOL ".log"};
    char **out[] = {&hp->tool, &hp->new, &hp->pid, &hp->log};
    *hp = (struct hpaths){0};
    for (size_t i = 0; i < 4; i++) {
        char path[PATH_MAX];
        int rc;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", h->data, names[i]) >= sizeof path) {
            hpaths_free(hp);
            return nerr_set(err, NERR_INVALID, "host %s: data path too long", h->name);
        }
        if (i == 1)
            snprintf(hp->new_raw, sizeof hp->new_raw, "%s", path);
        if ((rc = shquote_arg(path, out[i], err))) {
            hpaths_free(hp);
            return rc;
        }
    }
    return 0;
}

/* What heal does on h, and what inject does first (a leftover of a run
 * that died must not make anything fail): the rules, the delayer, the
 * table, our qdiscs. Exit 0 when nothing of ours is left. */
static int remove_script(const struct inv_host *h, char **out, struct nerr *err)
{
    struct hpaths hp;
    int rc = hpaths_of(h, &hp, err);
    if (rc)
        return rc;
    if (asprintf(
            out,
            HF_SUDO
            "r=0; "
            /* alive: a process that is not a zombie; ours: the delayer of
               this pid file. */
            "alive() { s=$(sed -n 's/^State:[[:space:]]*\\([A-Z]\\).*/\\1/p' "
            "/proc/$1/status 2>/dev/null); [ -n \"$s\" ] && [ \"$s\" != Z ]; }; "
            "ours() { case \"$(tr '\\0' ' ' </proc/$1/cmdline 2>/dev/null)\" in "
            "*" NETDELAY_TOOL "*' --pid-file '%1$s' '*) return 0;; esac; return 1; }; "
            /* 1. the rules, where this netns has a legacy mangle table */
            "for f in ip:iptables-legacy ip6:ip6tables-legacy; do t=${f#*:}; "
            "$S cat /proc/net/${f%%:*}_tables_names 2>/dev/null | grep -qx mangle || continue; "
            "command -v $t >/dev/null 2>&1 || continue; "
            "$S $t -w 5 -t mangle -n -L " CHAIN " >/dev/null 2>&1 || continue; i=0; "
            "while [ $i -lt 32 ] && $S $t -w 5 -t mangle -D OUTPUT -j " CHAIN
            " 2>/dev/null; do i=$((i + 1)); done; "
            "{ $S $t -w 5 -t mangle -F " CHAIN " && $S $t -w 5 -t mangle -X " CHAIN
            "; } || r=1; done; "
            /* 2. the delayer: SIGTERM (it accepts what it holds), SIGKILL
               after 3 s */
            "p=$(cat %1$s 2>/dev/null); case \"$p\" in ''|*[!0-9]*) p=;; esac; "
            "if [ -n \"$p\" ] && ours \"$p\"; then $S kill -TERM \"$p\" 2>/dev/null; i=0; "
            "while alive \"$p\" && ours \"$p\" && [ $i -lt 60 ]; do sleep 0.05; "
            "i=$((i + 1)); done; "
            "if alive \"$p\" && ours \"$p\"; then $S kill -KILL \"$p\" 2>/dev/null; i=0; "
            "while alive \"$p\" && [ $i -lt 40 ]; do sleep 0.05; i=$((i + 1)); done; fi; "
            "fi; "
            "if [ -n \"$p\" ] && alive \"$p\" && ours \"$p\"; then "
            "echo \"" NETDELAY_TOOL " (pid $p) does not stop\" >&2; r=1; "
            "elif [ -e %1$s ]; then $S rm -f %1$s || r=1; fi; "
            /* 3. the loss table */
            "if command -v nft >/dev/null 2>&1 && $S timeout 15 nft list table inet " TABLE
            " >/dev/null 2>&1; then $S timeout 15 nft delete table inet " TABLE " || r=1; fi; "
            /* 4. our qdiscs */
            "if command -v tc >/dev/null 2>&1; then for d in $(ls /sys/class/net); do "
            "if $S tc qdisc show dev \"$d\" root 2>/dev/null | grep -q '^qdisc htb 9e5: '; "
            "then $S tc qdisc del dev \"$d\" root || r=1; fi; done; fi; "
            "exit $r",
            hp.pid) < 0) {
        *out = NULL;
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
    }
    hpaths_free(&hp);
    return rc;
}

static int remove_cmd(const struct inv_host *h, void *arg, char **cmd, struct nerr *err)
{
    (void)arg;
    return remove_script(h, cmd, err);
}

/* What every install command of a step shares. */
struct install {
    const struct degrade_params *p;
    char *nft;       /* the loss table's command, or NULL */
    char *v4, *v6;   /* the peers' addresses as shell words ("a b "), "" when none */
    unsigned life_s; /* the delayer's --max-seconds */
};

/* "a, b" (an nft set's elements) -> "a b" (shell words), appended. */
static void words(char *dst, size_t cap, const char *list)
{
    size_t len = strlen(dst);
    for (const char *p = list; *p && len + 2 < cap; p++) {
        if (*p == ',')
            continue;
        if (*p == ' ' && len && dst[len - 1] == ' ')
            continue;
        dst[len++] = *p;
    }
    if (len && dst[len - 1] != ' ' && len + 1 < cap)
        dst[len++] = ' ';
    dst[len] = 0;
}

/* The netem command on h: the leftovers go, then one htb root per device
 * that routes to a peer with the peers' traffic filtered into its netem
 * class, then the loss table. Exit EXIT_NO_NETEM (no netem or htb qdisc)
 * or EXIT_NO_TC (no tc) with nothing of ours left. */
static int netem_cmd(const struct inv_host *h, void *arg, char **cmd, struct nerr *err)
{
    const struct install *in = arg;
    const struct degrade_params *p = in->p;
    char *rm = NULL, *tcpart = NULL;
    int rc = remove_script(h, &rm, err);
    if (rc)
        return rc;
    char lat[32] = "", jit[32] = "";
    snprintf(lat, sizeof lat, "%lluus", (unsigned long long)(p->latency_ns / 1000));
    if (p->jitter_ns)
        snprintf(jit, sizeof jit, " %lluus", (unsigned long long)(p->jitter_ns / 1000));
    if (p->latency_ns &&
        asprintf(&tcpart,
                 "command -v tc >/dev/null 2>&1 || { echo 'tc (iproute2) is not installed' >&2; "
                 "exit %d; }; "
                 "for a in %s%s; do "
                 "case \"$a\" in *:*) m=\"ip6 dst $a/128\"; pr=ipv6;; *) m=\"ip dst $a/32\"; "
                 "pr=ip;; esac; "
                 "d=$(ip -o route get \"$a\" 2>/dev/null | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p'); "
                 "if [ -z \"$d\" ]; then echo \"no route to peer $a\" >&2; undo; exit 3; fi; "
                 "case \" $devs \" in *\" $d \"*) ;; *) "
                 "if ! o=$($S tc qdisc add dev \"$d\" root handle 9e5: htb default 1 2>&1); then "
                 "undo; echo \"$o\" >&2; case \"$o\" in *nknown*|*'No such file'*|"
                 "*'not supported'*) exit %d;; esac; exit 4; fi; "
                 "devs=\"$devs $d\"; "
                 "{ $S tc class add dev \"$d\" parent 9e5: classid 9e5:1 htb rate 10gbit && "
                 "$S tc class add dev \"$d\" parent 9e5: classid 9e5:2 htb rate 10gbit; } || "
                 "{ undo; exit 4; }; "
                 "if ! o=$($S tc qdisc add dev \"$d\" parent 9e5:2 handle 9e6: netem delay %s%s "
                 "2>&1); then undo; echo \"$o\" >&2; case \"$o\" in *nknown*|*'No such file'*|"
                 "*'not supported'*) exit %d;; esac; exit 4; fi;; esac; "
                 "$S tc filter add dev \"$d\" parent 9e5: protocol $pr prio 1 u32 match $m "
                 "flowid 9e5:2 || { undo; exit 4; }; "
                 "done; ",
                 EXIT_NO_TC, in->v4, in->v6, EXIT_NO_NETEM, lat, jit, EXIT_NO_NETEM) < 0) {
        tcpart = NULL;
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    /* The remove script runs in a subshell (it ends with exit), then ours. */
    if (asprintf(cmd,
                 "( %s ) || exit 6; " HF_SUDO "devs=; "
                 "undo() { for d in $devs; do $S tc qdisc del dev \"$d\" root 2>/dev/null; done; "
                 "}; %s%s%s%s",
                 rm, tcpart ? tcpart : "", in->nft ? "{ " : "", in->nft ? in->nft : "",
                 in->nft ? "; } || { undo; exit 4; }" : "") < 0) {
        *cmd = NULL;
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
    }
out:
    free(rm), free(tcpart);
    return rc;
}

/* One address family's chain: "-N" and a queueing rule per peer, with
 * tool (iptables-legacy, ip6tables-legacy) and the peers' prefix length. */
static char *family_rules(const char *tool, const char *addrs, int plen)
{
    char *s = NULL;
    if (!*addrs)
        return strdup("");
    if (asprintf(&s,
                 "q %1$s -w 5 -t mangle -N " CHAIN "; for a in %2$s; do q %1$s -w 5 -t mangle "
                 "-A " CHAIN " -d \"$a/%3$d\" -j NFQUEUE --queue-num %4$d --queue-bypass; done; ",
                 tool, addrs, plen, QUEUE_NUM) < 0)
        return NULL;
    return s;
}

/* The NFQUEUE command on h, after the tool was uploaded to DATA's .new
 * name: the leftovers go, the tool takes its place, the delayer starts
 * (and has bound the queue when it returns), the chains, the jumps to them
 * (the moment packets start to queue), then the loss table. Anything
 * failing undoes it all. Its stdout is the delayer's "nines-netdelay: pid
 * N, queue Q". */
static int nfq_cmd(const struct inv_host *h, void *arg, char **cmd, struct nerr *err)
{
    const struct install *in = arg;
    const struct degrade_params *p = in->p;
    struct hpaths hp;
    char *rm = NULL, *r4 = NULL, *r6 = NULL;
    int rc = hpaths_of(h, &hp, err);
    if (rc)
        return rc;
    if ((rc = remove_script(h, &rm, err)))
        goto out;
    if (!(r4 = family_rules("iptables-legacy", in->v4, 32)) ||
        !(r6 = family_rules("ip6tables-legacy", in->v6, 128))) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    const char *tools = !*in->v6   ? "iptables-legacy"
                        : !*in->v4 ? "ip6tables-legacy"
                                   : "iptables-legacy ip6tables-legacy";
    if (asprintf(cmd,
                 "( %s ) || exit 6; " HF_SUDO "undo() { ( %s ) >/dev/null 2>&1; }; "
                 "q() { o=$($S \"$@\" 2>&1) || { undo; echo \"$1: $o\" >&2; exit 9; }; }; "
                 "for t in %s; do command -v $t >/dev/null 2>&1 || { echo \"$t is not installed "
                 "(Debian: iptables): latency without netem needs it\" >&2; rm -f %s; exit 127; "
                 "}; done; "
                 "mv -f -- %s %s || exit 5; "
                 "$S %s --queue %d --latency %lluus --jitter %lluus --max-seconds %u "
                 "--pid-file %s --daemon --log %s || { undo; exit 8; }; "
                 "%s%s%s%s%s%s%s",
                 rm, rm, tools, hp.new, hp.new, hp.tool, hp.tool, QUEUE_NUM,
                 (unsigned long long)(p->latency_ns / 1000),
                 (unsigned long long)(p->jitter_ns / 1000), in->life_s, hp.pid, hp.log, r4, r6,
                 *in->v4 ? "q iptables-legacy -w 5 -t mangle -I OUTPUT 1 -j " CHAIN "; " : "",
                 *in->v6 ? "q ip6tables-legacy -w 5 -t mangle -I OUTPUT 1 -j " CHAIN "; " : "",
                 in->nft ? "{ " : "", in->nft ? in->nft : "",
                 in->nft ? "; } || { undo; exit 4; }" : "") < 0) {
        *cmd = NULL;
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
    }
out:
    free(rm), free(r4), free(r6);
    hpaths_free(&hp);
    return rc;
}

/* ---- the kind ---- */

/* The delayer's --max-seconds: the step's timeout (the one given, or the
 * default: the longest duration + the inject timeout; a step without a
 * duration may hold an hour) plus a margin. */
static unsigned life_seconds(const struct degrade_params *p)
{
    uint64_t hold = p->hold_max_ns ? p->hold_max_ns : HELD_MAX_NS;
    uint64_t step = hold + INJECT_TIMEOUT_NS;
    if (p->timeout_ns > step)
        step = p->timeout_ns;
    return (unsigned)((step + LIFE_MARGIN_NS + NS_PER_S - 1) / NS_PER_S);
}

/* The hosts of sub (a part of the step) get the NFQUEUE mechanism: the
 * tool uploaded to each, then the command on all of them in parallel. */
static int inject_nfq(const struct fault_env *env, const struct fault_call *sub, struct install *in,
                      struct nerr *err)
{
    char tool[PATH_MAX];
    struct hf_job *jobs = NULL;
    int rc = hf_local_tool(NETDELAY_TOOL, tool, sizeof tool, err);
    if (rc == NERR_NOTFOUND) {
        char why[NERR_MSG_MAX];
        snprintf(why, sizeof why, "%s", err->msg);
        nerr_set(err, rc, "degrade: latency without netem needs %s", why);
    }
    for (size_t i = 0; i < sub->nhosts && !rc; i++) {
        const struct inv_host *h = &env->inv->hosts[sub->hosts[i]];
        struct hpaths hp;
        if (!(rc = hpaths_of(h, &hp, err))) {
            rc = hf_upload(h, tool, hp.new_raw, 0755, NETDELAY_TOOL, err);
            hpaths_free(&hp);
        }
    }
    if (rc)
        return rc;
    rc = hf_run_call(env, sub, "degrade the network (nines-netdelay)", nfq_cmd, in, &jobs, err);
    for (size_t i = 0; !rc && jobs && i < sub->nhosts; i++) {
        const char *pid = jobs[i].res.out ? strstr(jobs[i].res.out, "pid ") : NULL;
        fault_notef(env, "degrade %s: latency by " NETDELAY_TOOL " (%.*s, NFQUEUE %d)%s",
                    jobs[i].h->name, pid ? (int)strcspn(pid, ",\n") : 5, pid ? pid : "pid ?",
                    QUEUE_NUM,
                    in->p->via == VIA_NFQUEUE ? " (latency_via: nfqueue)" : ": no netem here");
    }
    hf_jobs_free(jobs, jobs ? sub->nhosts : 0);
    return rc;
}

static int dg_inject(void *state, const struct fault_env *env, const struct fault_call *c,
                     struct nerr *err)
{
    (void)state;
    const struct degrade_params *p = c->params;
    struct degrade_params none = {0};
    char *v4 = NULL, *v6 = NULL;
    struct install in = {0};
    struct hf_job *jobs = NULL;
    size_t npeers = 0, *nfq_hosts = NULL, n_nfq = 0;
    int rc;
    if (!p)
        p = &none;
    in.p = p;
    in.life_s = life_seconds(p);
    if ((rc = hf_check_call(env, c, "degrade the network of", err)) ||
        (rc = hf_peers(env->inv, c, &v4, &v6, &npeers, err)))
        goto out;
    if (!npeers) {
        rc = nerr_set(err, NERR_INVALID, "degrade: no other host whose links to them could be");
        goto out;
    }
    size_t cap = strlen(v4) + strlen(v6) + 4;
    if (!(in.v4 = calloc(1, cap)) || !(in.v6 = calloc(1, cap)) ||
        !(nfq_hosts = calloc(c->nhosts + 1, sizeof *nfq_hosts))) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    words(in.v4, cap, v4);
    words(in.v6, cap, v6);
    if (p->loss_bp) {
        char action[64];
        hf_drop_action(p->loss_bp, action, sizeof action);
        if ((rc = hf_nft_install(TABLE, v4, v6, 1, 1, action, &in.nft, err)))
            goto out;
    }

    if (p->latency_ns && p->via == VIA_NFQUEUE) {
        memcpy(nfq_hosts, c->hosts, c->nhosts * sizeof *nfq_hosts);
        n_nfq = c->nhosts;
    } else {
        /* netem (or loss alone); auto falls back per host where there is
         * none. */
        rc = hf_run_call(env, c, "degrade the network", netem_cmd, &in, &jobs, err);
        if (rc && jobs) {
            int other = 0;
            for (size_t i = 0; i < c->nhosts; i++) {
                int st = jobs[i].rc ? jobs[i].res.exit_status : 0;
                if (st == EXIT_NO_NETEM && p->via == VIA_NETEM) {
                    rc =
                        nerr_set(err, NERR_UNSUPPORTED,
                                 "host %s (%s): this kernel has no netem qdisc "
                                 "(CONFIG_NET_SCH_NETEM): latency cannot be injected with "
                                 "latency_via: netem (auto or nfqueue would use " NETDELAY_TOOL ")",
                                 jobs[i].h->name, jobs[i].h->address);
                    other = 1;
                    break;
                }
                if (st == EXIT_NO_NETEM || (st == EXIT_NO_TC && p->via == VIA_AUTO))
                    nfq_hosts[n_nfq++] = c->hosts[i];
                else if (jobs[i].rc && !other)
                    other = 1, *err = jobs[i].err, rc = jobs[i].rc;
            }
            if (!other) {
                rc = 0;
                nerr_clear(err);
            }
        }
        hf_jobs_free(jobs, jobs ? c->nhosts : 0);
        jobs = NULL;
    }
    if (!rc && n_nfq) {
        struct fault_call sub = {nfq_hosts, n_nfq, c->params};
        rc = inject_nfq(env, &sub, &in, err);
    }
    if (rc) {
        /* Leave no host of the step half-degraded. */
        struct nerr ignored = {0};
        hf_run_call(env, c, "restore the network", remove_cmd, NULL, NULL, &ignored);
    }
out:
    free(v4), free(v6), free(in.v4), free(in.v6), free(in.nft), free(nfq_hosts);
    return rc;
}

static int dg_heal(void *state, const struct fault_env *env, const struct fault_call *c,
                   struct nerr *err)
{
    (void)state;
    int rc = hf_check_call(env, c, "restore the network of", err);
    return rc ? rc : hf_run_call(env, c, "restore the network", remove_cmd, NULL, NULL, err);
}

/* Every host, whatever the plan said: the rules, a delayer found by its pid
 * file (also one an orchestrator that died left running), the table, the
 * qdiscs. */
static void dg_heal_all(void *state, const struct fault_env *env)
{
    (void)state;
    hf_sweep(env, "restore network", remove_cmd, NULL);
}

const struct fault_kind fault_degrade = {
    .name = "degrade",
    .inject_step = "degrade",
    .heal_step = "restore_network",
    .held_until = "until restore_network",
    .keys = keys,
    .inject_timeout_ns = INJECT_TIMEOUT_NS,
    .heal_timeout_ns = 60 * NS_PER_S,
    .parse = dg_parse,
    .free_params = dg_free,
    .check = dg_check,
    .describe = dg_describe,
    .label = dg_label,
    .inject = dg_inject,
    .heal = dg_heal,
    .heal_all = dg_heal_all,
};
