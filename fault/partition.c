/*
 * fault/partition.c — the network partition fault kind (fault.h): the
 * playbook's `partition` step cuts its hosts (a node, a rack, an AZ) off
 * from every other inventory host, `heal_partition` or the end of the
 * step's duration joins them again, and heal_all removes the partition from
 * every host whatever the plan said.
 *
 * Mechanism: on each isolated host, the nftables table
 * inet nines_fault_partition (hostfault.h) drops by peer address — what
 * comes from the others (`direction: in`), what goes to them (`out`), or
 * both (the default). The drop is per packet: TCP needs both ways, so a
 * one-way partition still fails TCP connections in both directions, while
 * datagrams (UDP, ICMP) show the asymmetry. Hosts inside the isolated set
 * keep talking to each other, and the controller (not an inventory host)
 * keeps reaching them. Nothing restarts: host_changed is not called.
 */
#include "fault/fault.h"
#include "fault/hostfault.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_S 1000000000ull
#define TABLE "nines_fault_partition"

enum part_dir { PART_BOTH = 0, PART_IN, PART_OUT };

struct part_params {
    enum part_dir dir;
};

static enum part_dir dir_of(const void *params)
{
    return params ? ((const struct part_params *)params)->dir : PART_BOTH;
}

static const char *const keys[] = {"direction", NULL};

static int pt_parse(const struct fault_errs *x, const struct yt_node *m, void **params)
{
    struct part_params *p = calloc(1, sizeof *p);
    if (!p)
        return NERR_NOMEM;
    *params = p;
    const char *d = NULL;
    struct nerr e = {0};
    if (fault_chk(x, yt_get_str(m, "direction", YT_OPTIONAL, &d, &e), &e) || !d)
        return 0;
    if (!strcmp(d, "both"))
        p->dir = PART_BOTH;
    else if (!strcmp(d, "in"))
        p->dir = PART_IN;
    else if (!strcmp(d, "out"))
        p->dir = PART_OUT;
    else
        fault_errf(x, yt_map_get(m, "direction"), "direction must be in, out or both, got '%s'", d);
    return 0;
}

static void pt_free(void *params)
{
    free(params);
}

/* A partition needs someone on the other side. */
static int pt_check(const struct inventory *inv, const struct fault_call *c, struct nerr *err)
{
    if (c->nhosts >= inv->n_hosts)
        return nerr_set(err, NERR_INVALID,
                        "partition: every host of the inventory would be isolated, so there is "
                        "no other host to cut them off from");
    return 0;
}

static void pt_describe(const void *params, char *buf, size_t cap)
{
    static const char *const text[] = {
        [PART_BOTH] = " (both ways)",
        [PART_IN] = " (in: they receive nothing from the others)",
        [PART_OUT] = " (out: they send nothing to the others)",
    };
    snprintf(buf, cap, "%s", text[dir_of(params)]);
}

static const char *pt_label(const struct inv_host *h, const void *params)
{
    (void)h;
    static const char *const words[] = {
        [PART_BOTH] = "partition", [PART_IN] = "partition-in", [PART_OUT] = "partition-out"};
    return words[dir_of(params)];
}

struct install {
    char *cmd; /* the same for every isolated host */
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
    return hf_nft_remove(TABLE, cmd, err);
}

static int pt_inject(void *state, const struct fault_env *env, const struct fault_call *c,
                     struct nerr *err)
{
    (void)state;
    char *v4 = NULL, *v6 = NULL;
    struct install in = {0};
    size_t npeers = 0;
    enum part_dir d = dir_of(c->params);
    int rc;
    if ((rc = hf_check_call(env, c, "partition", err)) ||
        (rc = hf_peers(env->inv, c, &v4, &v6, &npeers, err)))
        goto out;
    if (!npeers) {
        rc = nerr_set(err, NERR_INVALID, "partition: no other host to cut the hosts off from");
        goto out;
    }
    if ((rc = hf_nft_install(TABLE, v4, v6, d != PART_OUT, d != PART_IN, "drop", &in.cmd, err)))
        goto out;
    /* Every host at once: an AZ drops off the network at one instant. */
    rc = hf_run_call(env, c, "nft: install the partition", install_cmd, &in, NULL, err);
out:
    free(v4), free(v6), free(in.cmd);
    return rc;
}

static int pt_heal(void *state, const struct fault_env *env, const struct fault_call *c,
                   struct nerr *err)
{
    (void)state;
    int rc = hf_check_call(env, c, "heal the partition of", err);
    return rc ? rc : hf_run_call(env, c, "nft: remove the partition", remove_cmd, NULL, NULL, err);
}

/* Whatever the plan said: no host keeps the table. */
static void pt_heal_all(void *state, const struct fault_env *env)
{
    (void)state;
    hf_sweep(env, "heal partition", remove_cmd, NULL);
}

const struct fault_kind fault_partition = {
    .name = "partition",
    .inject_step = "partition",
    .heal_step = "heal_partition",
    .held_until = "until heal_partition",
    .keys = keys,
    .inject_timeout_ns = 60 * NS_PER_S,
    .heal_timeout_ns = 60 * NS_PER_S,
    .parse = pt_parse,
    .free_params = pt_free,
    .check = pt_check,
    .describe = pt_describe,
    .label = pt_label,
    .inject = pt_inject,
    .heal = pt_heal,
    .heal_all = pt_heal_all,
};
