/* The partition, pause and degrade steps in playbooks (gameday/playbook,
 * `nines gameday plan`): their keys parsed, every bad key or value an
 * error at its exact FILE:LINE:COL, their plan text, their report labels,
 * and the planner's quorum rule counting their hosts together with power's
 * (a partition of az1 and a power-off in az2 at once is refused). Nothing
 * is injected here (t/gameday/faults_net.t does that in a lab). */
#include "fault/fault.h"
#include "fault/inventory.h"
#include "gameday/gameday.h"
#include "gameday/playbook.h"
#include "t/gameday/pb_test.h"
#include "t/tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const struct fault_kind fault_partition, fault_pause, fault_degrade;

static const char *inv_text = PB_TEST_INV6;




static char *plan_text(const struct playbook *pb, const struct inventory *inv, uint64_t seed,
                       struct pb_plan **keep)
{
    struct nerr e;
    char *t = plan_string(pb, inv, seed, keep, &e);
    if (!t)
        diag("plan: %s", e.msg);
    return t;
}

static void test_registry(void)
{
    int heal = -1;
    ok(fault_kind_for_step("partition", &heal) == &fault_partition && heal == 0,
       "partition is the partition kind's inject step");
    ok(fault_kind_for_step("heal_partition", &heal) == &fault_partition && heal == 1,
       "heal_partition its heal step");
    ok(fault_kind_for_step("pause", &heal) == &fault_pause && heal == 0, "pause");
    ok(fault_kind_for_step("resume", &heal) == &fault_pause && heal == 1, "resume");
    ok(fault_kind_for_step("degrade", &heal) == &fault_degrade && heal == 0, "degrade");
    ok(fault_kind_for_step("restore_network", &heal) == &fault_degrade && heal == 1,
       "restore_network");
}

static const char *good =
    "cluster: {deploy: ~}\n"
    "steps:\n"
    "  - partition: {names: [h1], duration: 2s}\n"
    "  - partition: {target: az, names: [az2], direction: out, duration: 3s}\n"
    "  - partition: {names: [h3], direction: in}\n"
    "  - heal_partition: {}\n"
    "  - pause: {names: [h4], duration: 1s}\n"
    "  - pause: {names: [h5]}\n"
    "  - resume: {names: [h5]}\n"
    "  - degrade: {names: [h6], loss: 10%, latency: 200ms, jitter: 20ms, duration: 4s}\n"
    "  - degrade: {names: [h1], loss: 0.5%}\n"
    "  - restore_network: ~\n"
    "  - degrade: {names: [h2], latency: 1500us}\n"
    "  - restore_network: {names: [h2]}\n";

static void test_good(const struct inventory *inv)
{
    struct playbook *pb = must(good, inv);
    ok(pb != NULL, "a playbook with partition, pause and degrade steps loads");
    if (!pb)
        return;
    struct pb_plan *p = NULL;
    char *t = plan_text(pb, inv, 1, &p);
    ok(t && p && p->n == 12, "12 steps planned");
    if (!t || !p) {
        playbook_free(pb);
        return;
    }
    note("%s", t);
    static const char *const want[] = {
        " for 2s (both ways)",
        " for 3s (out: they send nothing to the others)",
        " until heal_partition (in: they receive nothing from the others)",
        " for 1s (SIGSTOP ninesd)",
        " until resume (SIGSTOP ninesd)",
        " for 4s (loss 10%, latency 200ms, jitter 20ms)",
        " until restore_network (loss 0.5%)",
        " until restore_network (latency 1500us)",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ok(strstr(t, want[i]) != NULL, "plan text: '%s'", want[i]);
    ok(p->a[1].nhosts == 2 && !strcmp(inv->hosts[p->a[1].hosts[0]].name, "h2") &&
           !strcmp(inv->hosts[p->a[1].hosts[1]].name, "h5"),
       "partition of az2: h2 and h5");
    ok(p->a[3].kind == PB_HEAL && p->a[3].nhosts == 1 &&
           !strcmp(inv->hosts[p->a[3].hosts[0]].name, "h3"),
       "heal_partition {} heals the host left partitioned (h3)");
    ok(p->a[9].kind == PB_HEAL && p->a[9].nhosts == 1 &&
           !strcmp(inv->hosts[p->a[9].hosts[0]].name, "h1"),
       "restore_network ~ restores the host left degraded (h1)");
    const struct inv_host *h1 = &inv->hosts[0];
    is(fault_partition.label(h1, p->a[0].params), "partition", "label: partition");
    is(fault_partition.label(h1, p->a[1].params), "partition-out", "label: partition-out");
    is(fault_partition.label(h1, p->a[2].params), "partition-in", "label: partition-in");
    is(fault_pause.label(h1, p->a[4].params), "pause", "label: pause");
    is(fault_degrade.label(h1, p->a[7].params), "degrade", "label: degrade");
    free(t);
    pb_plan_free(p);
    playbook_free(pb);
}

/* Columns counted by hand: keep them in step with the text. */
static const char *broken =
    "cluster: {deploy: ~}\n"                                          /* 1 */
    "steps:\n"                                                        /* 2 */
    "  - partition: {direction: sideways}\n"                          /* 3 */
    "  - partition: {directon: in}\n"                                 /* 4 */
    "  - degrade: {loss: 150%}\n"                                     /* 5 */
    "  - degrade: {loss: lots}\n"                                     /* 6 */
    "  - degrade: {latency: -200ms}\n"                                /* 7 */
    "  - degrade: {loss: 5%, jitter: 20ms}\n"                         /* 8 */
    "  - degrade: {latncy: 20ms, loss: 1%}\n"                         /* 9 */
    "  - degrade: {names: [h1]}\n"                                    /* 10 */
    "  - pause: {mode: crash}\n"                                      /* 11 */
    "  - degrade: {loss: -1%}\n"                                      /* 12 */
    "  - degrade: {latency: 2h}\n"                                    /* 13 */
    "  - degrade: {loss: 0%}\n"                                       /* 14 */
    "  - heal_partition: {names: [h9]}\n"                             /* 15 */
    "  - partition: {direction: [in]}\n";                             /* 16 */

static void test_broken(const struct inventory *inv)
{
    struct pb_errors errs;
    struct nerr e;
    struct playbook *pb = load(broken, inv, &errs, &e);
    ok(!pb, "a playbook with bad fault steps is refused");
    static const char *const want[] = {
        "pb.yaml:3:28: direction must be in, out or both, got 'sideways'",
        "pb.yaml:4:17: unknown key 'directon', did you mean 'direction'?",
        "pb.yaml:5:21: loss must be from 0% to 100%, got '150%'",
        "pb.yaml:6:21: loss must be a percentage such as 10% or 0.5%, got 'lots'",
        "pb.yaml:7:24: latency must not be negative, got '-200ms'",
        "pb.yaml:8:33: jitter needs latency (it varies the delay around latency)",
        "pb.yaml:9:15: unknown key 'latncy', did you mean 'latency'?",
        "pb.yaml:10:14: degrade needs latency or loss (or both)",
        "pb.yaml:11:13: unknown key 'mode'",
        "pb.yaml:12:21: loss must be from 0% to 100%, got '-1%'",
        "pb.yaml:13:24: duration '2h' is above the maximum of 1m",
        "pb.yaml:14:21: loss 0% without latency degrades nothing",
        "pb.yaml:15:30: node 'h9' is not in the inventory inv.yaml",
        "pb.yaml:16:28: expected a string, got a sequence",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!ok(has_err(&errs, want[i]), "error reported: %s", want[i]))
            for (size_t j = 0; j < errs.n; j++)
                diag("  got: %s", errs.msg[j]);
    ok(errs.n >= sizeof want / sizeof want[0], "every error is collected (%zu)", errs.n);
    pb_errors_free(&errs);
    playbook_free(pb);
}

static void test_quorum(const struct inventory *inv)
{
    struct nerr e = {0};
    struct pb_plan *p = NULL;
    /* az1 partitioned (held), then a power-off in az2: two AZs down. */
    struct playbook *pb = must("cluster: {deploy: ~}\nsteps:\n"
                               "  - partition: {target: az, names: [az1]}\n"
                               "  - power_off: {names: [h2], duration: 1s}\n",
                               inv);
    ok(pb && playbook_plan(pb, inv, 1, &p, &e) == NERR_INVALID,
       "partition of az1 + power_off of h2 (az2) at once: refused");
    is(e.msg,
       "pb.yaml:4:5: quorum_safe: h2 would have hosts of AZs az1 and az2 down at once (down: "
       "h1,h4)",
       "at the power_off, saying why");
    playbook_free(pb);
    /* The other way round, and across the new kinds: a pause in az2 while
     * az1 is degraded. */
    pb = must("cluster: {deploy: ~}\nsteps:\n"
              "  - power_off: {target: az, names: [az1]}\n"
              "  - partition: {target: az, names: [az2]}\n",
              inv);
    ok(pb && playbook_plan(pb, inv, 1, &p, &e) == NERR_INVALID &&
           strstr(e.msg, "pb.yaml:4:5: quorum_safe: "),
       "power_off of az1 + partition of az2: refused (%s)", e.msg);
    playbook_free(pb);
    pb = must("cluster: {deploy: ~}\nsteps:\n"
              "  - degrade: {names: [h1], loss: 5%}\n"
              "  - pause: {names: [h2], duration: 1s}\n",
              inv);
    ok(pb && playbook_plan(pb, inv, 1, &p, &e) == NERR_INVALID &&
           strstr(e.msg, "pb.yaml:4:5: quorum_safe: h2 would have hosts of AZs az1 and az2"),
       "degrade of h1 + pause of h2: refused (%s)", e.msg);
    playbook_free(pb);
    /* A random pause while az1 is partitioned must stay in az1, where
     * nothing is up: refused rather than spread. */
    pb = must("cluster: {deploy: ~}\nsteps:\n"
              "  - partition: {target: az, names: [az1]}\n"
              "  - pause: {count: 1, duration: 1s}\n",
              inv);
    ok(pb && playbook_plan(pb, inv, 1, &p, &e) == NERR_INVALID &&
           strstr(e.msg, "pb.yaml:4:5: quorum_safe: no AZ has 1 node up"),
       "a random pause while az1 is partitioned: refused (%s)", e.msg);
    playbook_free(pb);
    /* Healed first: allowed. The same host cannot hold two kinds at once. */
    pb = must("cluster: {deploy: ~}\nsteps:\n"
              "  - partition: {target: az, names: [az1], duration: 1s}\n"
              "  - power_off: {names: [h2], duration: 1s}\n"
              "  - pause: {names: [h3]}\n"
              "  - degrade: {names: [h3], loss: 1%}\n",
              inv);
    p = NULL;
    ok(pb && playbook_plan(pb, inv, 1, &p, &e) == NERR_INVALID &&
           strstr(e.msg, "pb.yaml:6:5: node h3 is already (partly)"),
       "after the partition's duration a power-off elsewhere is fine; a paused host cannot be "
       "degraded too (%s)",
       e.msg);
    pb_plan_free(p);
    playbook_free(pb);
    pb = must("cluster: {deploy: ~}\nsteps:\n"
              "  - partition: {target: az, names: [az1], duration: 1s}\n"
              "  - power_off: {names: [h2], duration: 1s}\n",
              inv);
    p = NULL;
    nerr_clear(&e);
    ok(pb && playbook_plan(pb, inv, 1, &p, &e) == 0, "a partition that ended, then a power-off in "
                                                     "another AZ: planned (%s)",
       e.msg);
    pb_plan_free(p);
    playbook_free(pb);
    /* quorum_safe: false lets a partition take every host but one AZ... */
    pb = must("cluster: {deploy: ~}\nsteps:\n"
              "  - partition: {target: az, count: 2, quorum_safe: false, duration: 1s}\n",
              inv);
    p = NULL;
    nerr_clear(&e);
    ok(pb && playbook_plan(pb, inv, 1, &p, &e) == 0 && p->a[0].nhosts == 4,
       "quorum_safe: false: two AZs partitioned (%s)", e.msg);
    pb_plan_free(p);
    playbook_free(pb);
    /* ...but never all of them: nobody would be left on the other side. */
    pb = must("cluster: {deploy: ~}\nsteps:\n"
              "  - partition: {target: az, count: 3, quorum_safe: false}\n"
              "  - degrade: {target: az, count: 3, quorum_safe: false, loss: 1%}\n",
              inv);
    p = NULL;
    ok(pb && playbook_plan(pb, inv, 1, &p, &e) == NERR_INVALID &&
           !strcmp(e.msg, "pb.yaml:3:5: partition: every host of the inventory would be isolated, "
                          "so there is no other host to cut them off from"),
       "a partition of every host is refused (%s)", e.msg);
    playbook_free(pb);
}

int main(void)
{
    struct inventory *inv = pbt_inventory(inv_text);
    test_registry();
    test_good(inv);
    test_broken(inv);
    test_quorum(inv);
    inventory_free(inv);
    return done_testing();
}
