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
 *   latency  tc: an htb root qdisc with handle 9e5: on each device that
 *            routes to a peer, whose class 9e5:2 (u32 filters on the peers'
 *            addresses) leads to a netem qdisc `delay LATENCY [JITTER]`.
 *            Egress only: a round trip with a peer grows by latency. A
 *            device whose root qdisc is not the kernel's default (someone
 *            configured it) is refused by tc ("Exclusivity flag on"), and
 *            we never replace it.
 * The latency part is installed first and everything is undone when a step
 * fails, so an inject that fails on a host leaves that host as it was; an
 * inject that fails on one host of several removes it from the others too.
 *
 * A kernel without netem (CONFIG_NET_SCH_NETEM unset) cannot delay: the
 * inject fails with "host h2 (ADDR): this kernel has no netem qdisc
 * (CONFIG_NET_SCH_NETEM): latency cannot be injected; loss can".
 * Nothing restarts: host_changed is not called.
 */
#include "fault/fault.h"
#include "fault/hostfault.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_S 1000000000ull
#define TABLE "nines_fault_degrade"
#define LAT_MAX_NS (60 * NS_PER_S)
#define EXIT_NO_NETEM 42

struct degrade_params {
    uint64_t latency_ns, jitter_ns; /* 0: none */
    unsigned loss_bp;               /* hundredths of a percent, 0..10000 */
};

static const char *const keys[] = {"latency", "jitter", "loss", NULL};

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
    snprintf(buf, cap, " (%s%s%s%s%s%s%s)", *l ? "loss " : "", l, *l && *lat ? ", " : "",
             *lat ? "latency " : "", lat, *jit ? ", jitter " : "", jit);
}

static const char *dg_label(const struct inv_host *h, const void *params)
{
    (void)h, (void)params;
    return "degrade";
}

/* What heal does, and what inject does first (a leftover of a run that
 * died must not make `tc qdisc add root` fail): our root qdiscs, our
 * table. */
static const char remove_script[] =
    HF_SUDO "r=0; if command -v tc >/dev/null 2>&1; then for d in $(ls /sys/class/net); do "
            "if $S tc qdisc show dev \"$d\" root 2>/dev/null | grep -q '^qdisc htb 9e5: '; then "
            "$S tc qdisc del dev \"$d\" root || r=1; fi; done; fi; "
            "if command -v nft >/dev/null 2>&1 && $S timeout 15 nft list table inet " TABLE
            " >/dev/null 2>&1; then $S timeout 15 nft delete table inet " TABLE " || r=1; fi; "
            "exit $r";

struct install {
    char *cmd; /* the same for every degraded host */
};

static int install_cmd(const struct inv_host *h, void *arg, char **cmd, struct nerr *err)
{
    (void)h;
    if (!(*cmd = strdup(((struct install *)arg)->cmd)))
        return nerr_set(err, NERR_NOMEM, "out of memory");
    return 0;
}

static int remove_cmd(const struct inv_host *h, void *arg, char **cmd, struct nerr *err)
{
    (void)h, (void)arg;
    if (!(*cmd = strdup(remove_script)))
        return nerr_set(err, NERR_NOMEM, "out of memory");
    return 0;
}

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

static int build_install(const struct degrade_params *p, const char *v4, const char *v6, char **out,
                         struct nerr *err)
{
    char *nft = NULL, *cmd = NULL;
    int rc = 0;
    *out = NULL;
    if (p->loss_bp) {
        char action[64];
        hf_drop_action(p->loss_bp, action, sizeof action);
        if ((rc = hf_nft_install(TABLE, v4, v6, 1, 1, action, &nft, err)))
            return rc;
    }
    size_t cap = strlen(v4) + strlen(v6) + 4;
    char *peers = calloc(1, cap);
    if (!peers) {
        free(nft);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    words(peers, cap, v4);
    words(peers, cap, v6);
    char lat[32] = "", jit[32] = "";
    if (p->latency_ns)
        snprintf(lat, sizeof lat, "%lluus", (unsigned long long)(p->latency_ns / 1000));
    if (p->jitter_ns)
        snprintf(jit, sizeof jit, " %lluus", (unsigned long long)(p->jitter_ns / 1000));
    /* The latency part: one htb root per device that routes to a peer, the
     * peers' traffic filtered into its netem class. undo removes the roots
     * made so far. */
    char *tcpart = NULL;
    if (p->latency_ns &&
        asprintf(&tcpart,
                 "command -v tc >/dev/null 2>&1 || { echo 'tc (iproute2) is not installed' >&2; "
                 "exit 127; }; "
                 "for a in %s; do "
                 "case \"$a\" in *:*) m=\"ip6 dst $a/128\"; pr=ipv6;; *) m=\"ip dst $a/32\"; "
                 "pr=ip;; esac; "
                 "d=$(ip -o route get \"$a\" 2>/dev/null | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p'); "
                 "if [ -z \"$d\" ]; then echo \"no route to peer $a\" >&2; undo; exit 3; fi; "
                 "case \" $devs \" in *\" $d \"*) ;; *) "
                 "$S tc qdisc add dev \"$d\" root handle 9e5: htb default 1 || { undo; exit 4; }; "
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
                 peers, lat, jit, EXIT_NO_NETEM) < 0) {
        tcpart = NULL;
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    /* remove_script runs in a subshell (it ends with exit), then ours. */
    if (asprintf(
            &cmd,
            "( %s ) || exit 6; " HF_SUDO "devs=; "
            "undo() { for d in $devs; do $S tc qdisc del dev \"$d\" root 2>/dev/null; done; }; "
            "%s%s%s%s",
            remove_script, tcpart ? tcpart : "", nft ? "{ " : "", nft ? nft : "",
            nft ? "; } || { undo; exit 4; }" : "") < 0) {
        cmd = NULL;
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    *out = cmd;
out:
    free(nft), free(peers), free(tcpart);
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
    size_t npeers = 0;
    int rc;
    if (!p)
        p = &none;
    if ((rc = hf_check_call(env, c, "degrade the network of", err)) ||
        (rc = hf_peers(env->inv, c, &v4, &v6, &npeers, err)))
        goto out;
    if (!npeers) {
        rc = nerr_set(err, NERR_INVALID, "degrade: no other host whose links to them could be");
        goto out;
    }
    if ((rc = build_install(p, v4, v6, &in.cmd, err)))
        goto out;
    rc = hf_run_call(env, c, "degrade the network", install_cmd, &in, &jobs, err);
    if (rc && jobs) {
        for (size_t i = 0; i < c->nhosts; i++)
            if (jobs[i].rc && jobs[i].res.exit_status == EXIT_NO_NETEM) {
                rc = nerr_set(err, NERR_UNSUPPORTED,
                              "host %s (%s): this kernel has no netem qdisc "
                              "(CONFIG_NET_SCH_NETEM): latency cannot be injected; loss can",
                              jobs[i].h->name, jobs[i].h->address);
                break;
            }
        /* Leave no host of the step half-degraded. */
        struct nerr ignored = {0};
        hf_run_call(env, c, "restore the network", remove_cmd, NULL, NULL, &ignored);
    }
    hf_jobs_free(jobs, jobs ? c->nhosts : 0);
out:
    free(v4), free(v6), free(in.cmd);
    return rc;
}

static int dg_heal(void *state, const struct fault_env *env, const struct fault_call *c,
                   struct nerr *err)
{
    (void)state;
    int rc = hf_check_call(env, c, "restore the network of", err);
    return rc ? rc : hf_run_call(env, c, "restore the network", remove_cmd, NULL, NULL, err);
}

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
    .inject_timeout_ns = 60 * NS_PER_S,
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
