#include "store/placement.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct az {
    const char *name;
    int nodes;
    long replicas;
};

/* A deterministic tie-breaker: a mix of the salt and an index. */
static uint64_t mix(uint64_t salt, uint64_t i)
{
    uint64_t x = salt ^ (i * 0x9E3779B97F4A7C15ULL);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 29;
    return x;
}

int placement_compute(const struct placement_node *nodes, size_t nnodes, int nparts, int replicas,
                      uint64_t salt, int *members, struct nerr *err)
{
    int rc = 0;
    if (replicas < 1 || nparts < 1 || nnodes == 0)
        return nerr_set(err, NERR_INVALID, "placement: %d partitions of %d replicas on %zu nodes",
                        nparts, replicas, nnodes);
    struct az *azs = calloc(nnodes, sizeof *azs);
    int *node_az = calloc(nnodes, sizeof *node_az);
    long *load = calloc(nnodes, sizeof *load), *leads = calloc(nnodes, sizeof *leads);
    size_t naz = 0;
    if (!azs || !node_az || !load || !leads) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nnodes; i++) {
        size_t a = 0;
        while (a < naz && strcmp(azs[a].name, nodes[i].az))
            a++;
        if (a == naz)
            azs[naz++].name = nodes[i].az;
        azs[a].nodes++;
        node_az[i] = (int)a;
    }
    if ((int)naz < replicas) {
        char list[256] = "";
        size_t used = 0;
        for (size_t a = 0; a < naz && used + 1 < sizeof list; a++)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", a ? ", " : "",
                                     azs[a].name);
        rc = nerr_set(err, NERR_INVALID,
                      "placement needs nodes in at least %d availability zones, one per replica; "
                      "the cluster has %zu (%s)",
                      replicas, naz, list);
        goto out;
    }
    for (int p = 0; p < nparts; p++) {
        int *m = members + (size_t)p * (size_t)replicas;
        for (int k = 0; k < replicas; k++) {
            /* The least-loaded AZ not used by this partition yet (load per node,
             * compared without division: r1/n1 < r2/n2 <=> r1*n2 < r2*n1). */
            long best_a = -1;
            for (size_t a = 0; a < naz; a++) {
                int taken = 0;
                for (int j = 0; j < k; j++)
                    taken |= node_az[m[j]] == (int)a;
                if (taken)
                    continue;
                if (best_a < 0) {
                    best_a = (long)a;
                    continue;
                }
                const struct az *x = &azs[a], *b = &azs[best_a];
                long lhs = x->replicas * b->nodes, rhs = b->replicas * x->nodes;
                if (lhs < rhs || (lhs == rhs && mix(salt, (uint64_t)p * 1315423911u + a) <
                                                    mix(salt, (uint64_t)p * 1315423911u +
                                                                  (uint64_t)best_a)))
                    best_a = (long)a;
            }
            /* Within it, the least-loaded node; then the rack with fewer of this
             * AZ's replicas; then the tie-breaker. */
            long best = -1;
            long best_rack = 0;
            for (size_t i = 0; i < nnodes; i++) {
                if (node_az[i] != best_a)
                    continue;
                long rack_load = 0;
                for (size_t j = 0; j < nnodes; j++)
                    if (node_az[j] == best_a && !strcmp(nodes[j].rack, nodes[i].rack))
                        rack_load += load[j];
                if (best < 0 || load[i] < load[best] ||
                    (load[i] == load[best] &&
                     (rack_load < best_rack ||
                      (rack_load == best_rack &&
                       mix(salt, (uint64_t)p * 2654435761u + i) <
                           mix(salt, (uint64_t)p * 2654435761u + (uint64_t)best))))) {
                    best = (long)i;
                    best_rack = rack_load;
                }
            }
            m[k] = (int)best;
            load[best]++;
            azs[best_a].replicas++;
        }
        /* The preferred leader: the member leading fewest partitions so far. */
        int lead = 0;
        for (int k = 1; k < replicas; k++)
            if (leads[m[k]] < leads[m[lead]] ||
                (leads[m[k]] == leads[m[lead]] &&
                 mix(salt, (uint64_t)p + (uint64_t)m[k]) < mix(salt, (uint64_t)p + (uint64_t)m[lead])))
                lead = k;
        int t = m[0];
        m[0] = m[lead];
        m[lead] = t;
        leads[m[0]]++;
    }
out:
    free(azs);
    free(node_az);
    free(load);
    free(leads);
    return rc;
}

int placement_replace(const struct placement_node *nodes, size_t nnodes, const int *members,
                      size_t nmembers, int lost, const long *load, const unsigned char *usable,
                      uint64_t salt, int *out, struct nerr *err)
{
    int is_member = 0;
    for (size_t k = 0; k < nmembers; k++) {
        if (members[k] < 0 || (size_t)members[k] >= nnodes)
            return nerr_set(err, NERR_INVALID, "placement: member %d is not a node (of %zu)",
                            members[k], nnodes);
        is_member |= members[k] == lost;
    }
    if (!is_member)
        return nerr_set(err, NERR_INVALID, "placement: node %d is not a member of the group", lost);
    const char *lost_az = nodes[lost].az;
    long best = -1;
    long best_others = 0, best_lost = 0;
    long best_az_load = 0, best_az_nodes = 1, best_rack = 0;
    size_t candidates = 0;
    for (size_t i = 0; i < nnodes; i++) {
        int in_group = 0;
        for (size_t k = 0; k < nmembers; k++)
            in_group |= (size_t)members[k] == i;
        if (in_group || !usable[i])
            continue;
        candidates++;
        /* The AZ's standing: the lost member's first, then fewest other
         * members, then replicas per usable node. */
        long others = 0, az_load = 0, az_nodes = 0, rack = 0;
        for (size_t k = 0; k < nmembers; k++)
            if (members[k] != lost && !strcmp(nodes[members[k]].az, nodes[i].az))
                others++;
        for (size_t j = 0; j < nnodes; j++) {
            if (strcmp(nodes[j].az, nodes[i].az))
                continue;
            if (usable[j]) {
                az_load += load[j];
                az_nodes++;
            }
            if (!strcmp(nodes[j].rack, nodes[i].rack))
                rack += load[j];
        }
        long is_lost = !strcmp(nodes[i].az, lost_az);
        int better;
        if (best < 0)
            better = 1;
        else if (is_lost != best_lost)
            better = is_lost > best_lost;
        else if (others != best_others)
            better = others < best_others;
        else if (az_load * best_az_nodes != best_az_load * az_nodes && strcmp(nodes[i].az, nodes[best].az))
            better = az_load * best_az_nodes < best_az_load * az_nodes;
        else if (load[i] != load[best])
            better = load[i] < load[best];
        else if (rack != best_rack)
            better = rack < best_rack;
        else
            better = mix(salt, i) < mix(salt, (uint64_t)best);
        if (better) {
            best = (long)i;
            best_lost = is_lost;
            best_others = others;
            best_az_load = az_load;
            best_az_nodes = az_nodes;
            best_rack = rack;
        }
    }
    if (best < 0)
        return nerr_set(err, NERR_NOTFOUND,
                        "placement: no usable node outside the group of %zu (usable nodes: %zu "
                        "of %zu)",
                        nmembers, candidates, nnodes);
    *out = (int)best;
    return 0;
}
