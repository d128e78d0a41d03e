/* Placement: three replicas in three distinct AZs, spread evenly, leaders
 * spread evenly, deterministic, and a clear refusal with fewer than 3 AZs. */
#include "t/tap.h"

#include "store/placement.h"

#define MAXN 64

static void check(const char *name, const struct placement_node *nodes, size_t n, int nparts,
                  uint64_t salt, int max_skew)
{
    int members[4096];
    struct nerr err = {0};
    int rc = placement_compute(nodes, n, nparts, 3, salt, members, &err);
    if (!is_int(rc, 0, "%s: placed", name)) {
        diag("%s", err.msg);
        return;
    }
    long load[MAXN] = {0}, leads[MAXN] = {0};
    int distinct = 1;
    for (int p = 0; p < nparts; p++) {
        int *m = members + p * 3;
        for (int a = 0; a < 3; a++) {
            load[m[a]]++;
            for (int b = a + 1; b < 3; b++)
                if (!strcmp(nodes[m[a]].az, nodes[m[b]].az))
                    distinct = 0;
        }
        leads[m[0]]++;
    }
    ok(distinct, "%s: every partition's replicas are in 3 distinct AZs", name);
    /* Within each AZ, nodes carry replica counts within 1 of each other. */
    int even = 1;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (!strcmp(nodes[i].az, nodes[j].az) && labs(load[i] - load[j]) > 1)
                even = 0;
    ok(even, "%s: replicas per node within an AZ differ by at most 1", name);
    long lmin = 1L << 30, lmax = 0;
    for (size_t i = 0; i < n; i++) {
        if (leads[i] < lmin)
            lmin = leads[i];
        if (leads[i] > lmax)
            lmax = leads[i];
    }
    if (!ok(lmax - lmin <= max_skew, "%s: leaders per node differ by at most %d (%ld..%ld)", name,
            max_skew, lmin, lmax))
        for (size_t i = 0; i < n; i++)
            diag("%s: %ld replicas, %ld leaders", nodes[i].id, load[i], leads[i]);
    int again[4096];
    placement_compute(nodes, n, nparts, 3, salt, again, &err);
    ok(!memcmp(members, again, sizeof(int) * 3 * (size_t)nparts), "%s: deterministic", name);
}

/* placement_replace: the lost member's AZ first, then an AZ without a
 * member, then the fewest members; never a member or an unusable node. */
static void test_replace(void)
{
    const struct placement_node six[] = {
        {"n1", "az1", "r1"}, {"n2", "az1", "r2"}, {"n3", "az2", "r1"},
        {"n4", "az2", "r2"}, {"n5", "az3", "r1"}, {"n6", "az3", "r2"},
    };
    long load[9] = {10, 10, 10, 10, 10, 10};
    unsigned char up[9] = {1, 1, 1, 1, 1, 1};
    int g[3] = {0, 2, 4}, out = -1;
    struct nerr err = {0};
    int rc = placement_replace(six, 6, g, 3, 0, load, up, 1, &out, &err);
    ok(!rc && out == 1, "n1 (az1) lost: n2, the other node of az1 (got %d)", out);
    up[1] = 0;
    load[3] = 12;
    rc = placement_replace(six, 6, g, 3, 0, load, up, 1, &out, &err);
    ok(!rc && out == 5,
       "az1 has no usable node: az2 and az3 have one member each; az3 carries fewer (got %d)",
       out);
    up[0] = up[1] = 1;
    load[3] = 10;
    int same = 1;
    for (int k = 0; k < 20; k++) {
        int o2 = -1;
        placement_replace(six, 6, g, 3, 2, load, up, 9, &out, &err);
        placement_replace(six, 6, g, 3, 2, load, up, 9, &o2, &err);
        same &= out == o2 && out == 3;
    }
    ok(same, "deterministic: the same inputs, the same node (n4 for n3)");

    /* Four AZs: an AZ without any member beats doubling up. */
    const struct placement_node eight[] = {
        {"n1", "a", "r1"}, {"n2", "a", "r2"}, {"n3", "b", "r1"}, {"n4", "b", "r2"},
        {"n5", "c", "r1"}, {"n6", "c", "r2"}, {"n7", "d", "r1"}, {"n8", "d", "r2"},
    };
    long l8[8] = {0};
    unsigned char u8[8] = {0, 0, 1, 1, 1, 1, 1, 1}; /* AZ a is gone */
    int g8[3] = {0, 2, 4};
    rc = placement_replace(eight, 8, g8, 3, 0, l8, u8, 3, &out, &err);
    ok(!rc && eight[out].az[0] == 'd',
       "AZ a gone: the replacement goes to d, the AZ without a member (got %s)",
       out >= 0 ? eight[out].id : "-");

    /* Errors. */
    is_int(placement_replace(six, 6, g, 3, 5, load, up, 1, &out, &err), NERR_INVALID,
           "a lost node that is not a member is refused");
    is(err.msg, "placement: node 5 is not a member of the group", "and named");
    unsigned char none[6] = {1, 0, 1, 0, 1, 0};
    is_int(placement_replace(six, 6, g, 3, 0, load, none, 1, &out, &err), NERR_NOTFOUND,
           "no usable node outside the group");
    is(err.msg, "placement: no usable node outside the group of 3 (usable nodes: 0 of 6)",
       "says so");

    /* Random clusters: the rules hold for every pick. */
    int bad = 0, tries = 0;
    uint64_t x = 88172645463325252ull;
    for (int t = 0; t < 2000; t++) {
        struct placement_node nodes[12];
        char ids[12][8], azn[12][8], rk[12][8];
        long ld[12];
        unsigned char us[12];
        size_t n = 4 + t % 9;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            snprintf(ids[i], sizeof ids[i], "n%zu", i);
            snprintf(azn[i], sizeof azn[i], "az%llu", (unsigned long long)(x % 4));
            snprintf(rk[i], sizeof rk[i], "r%llu", (unsigned long long)(x >> 8) % 3);
            nodes[i] = (struct placement_node){ids[i], azn[i], rk[i]};
            ld[i] = (long)((x >> 16) % 50);
            us[i] = (x >> 24) % 5 != 0;
        }
        int gm[3];
        if (placement_compute(nodes, n, 1, 3, x, gm, NULL))
            continue; /* fewer than 3 AZs */
        int lost = gm[(x >> 32) % 3];
        if (placement_replace(nodes, n, gm, 3, lost, ld, us, x, &out, &err))
            continue;
        tries++;
        int member = out == gm[0] || out == gm[1] || out == gm[2];
        int lost_az_usable = 0, free_az_usable = 0;
        for (size_t i = 0; i < n; i++) {
            if (!us[i] || (int)i == gm[0] || (int)i == gm[1] || (int)i == gm[2])
                continue;
            lost_az_usable |= !strcmp(nodes[i].az, nodes[lost].az);
            int shared = 0;
            for (int k = 0; k < 3; k++)
                shared |= gm[k] != lost && !strcmp(nodes[gm[k]].az, nodes[i].az);
            free_az_usable |= !shared;
        }
        int others_in_out_az = 0;
        for (int k = 0; k < 3; k++)
            others_in_out_az += gm[k] != lost && !strcmp(nodes[gm[k]].az, nodes[out].az);
        if (member || !us[out] ||
            (lost_az_usable && strcmp(nodes[out].az, nodes[lost].az)) ||
            (!lost_az_usable && free_az_usable && others_in_out_az))
            bad++;
    }
    ok(tries > 1000 && !bad, "2000 random clusters: %d replacements, %d break a rule", tries, bad);
}

int main(void)
{
    const struct placement_node six[] = {
        {"n1", "az1", "r1"}, {"n2", "az1", "r2"}, {"n3", "az2", "r1"},
        {"n4", "az2", "r2"}, {"n5", "az3", "r1"}, {"n6", "az3", "r2"},
    };
    check("6 nodes, 3 AZs, 64 partitions", six, 6, 64, 1, 1);
    check("6 nodes, 3 AZs, 3 partitions", six, 6, 3, 7, 1);
    const struct placement_node three[] = {{"a", "az1", "r"}, {"b", "az2", "r"}, {"c", "az3", "r"}};
    check("3 nodes, 3 AZs, 30 partitions", three, 3, 30, 3, 0);
    const struct placement_node eight[] = {
        {"n1", "a", "r1"}, {"n2", "a", "r2"}, {"n3", "b", "r1"}, {"n4", "b", "r2"},
        {"n5", "c", "r1"}, {"n6", "c", "r2"}, {"n7", "d", "r1"}, {"n8", "d", "r2"},
    };
    check("8 nodes, 4 AZs, 100 partitions", eight, 8, 100, 5, 1);
    /* With 4 AZs a partition skips one: each AZ carries about 3/4 of them. */
    {
        int members[300];
        placement_compute(eight, 8, 100, 3, 5, members, NULL);
        long per_az[4] = {0};
        for (int i = 0; i < 300; i++)
            per_az[eight[members[i]].az[0] - 'a']++;
        ok(per_az[0] == 75 && per_az[1] == 75 && per_az[2] == 75 && per_az[3] == 75,
           "4 AZs share 300 replicas equally (%ld %ld %ld %ld)", per_az[0], per_az[1], per_az[2],
           per_az[3]);
    }
    /* Racks break ties between equally loaded nodes: az1 has two nodes in
     * rack r1 and one in r2, so its first two replicas go to different racks. */
    const struct placement_node racks[] = {
        {"n1", "az1", "r1"}, {"n2", "az1", "r1"}, {"n3", "az1", "r2"},
        {"n4", "az2", "r3"}, {"n5", "az3", "r4"},
    };
    {
        int spread = 1;
        for (uint64_t salt = 0; salt < 50; salt++) {
            int members[6];
            placement_compute(racks, 5, 2, 3, salt, members, NULL);
            const char *seen = NULL;
            for (int i = 0; i < 6; i++) {
                if (strcmp(racks[members[i]].az, "az1"))
                    continue;
                if (seen && !strcmp(seen, racks[members[i]].rack))
                    spread = 0;
                seen = racks[members[i]].rack;
            }
        }
        ok(spread, "an AZ's replicas go to its other rack before doubling up (50 salts)");
    }
    const struct placement_node two_az[] = {
        {"n1", "az1", "r1"}, {"n2", "az1", "r2"}, {"n3", "az2", "r1"}, {"n4", "az2", "r2"}};
    struct nerr err = {0};
    int members[12];
    is_int(placement_compute(two_az, 4, 4, 3, 0, members, &err), NERR_INVALID,
           "two AZs are refused");
    is(err.msg,
       "placement needs nodes in at least 3 availability zones, one per replica; the cluster has "
       "2 (az1, az2)",
       "the refusal names the AZs found");
    test_replace();
    return done_testing();
}
