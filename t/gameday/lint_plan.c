/* gameday/playbook and `nines gameday lint|plan`: a good playbook's values,
 * a broken one's every error by exact FILE:LINE:COL, names checked against
 * the inventory, plans that replay per seed and differ across seeds, and
 * quorum_safe honoured by the planner (never hosts of two AZs down). */
#include "gameday/gameday.h"
#include "fault/inventory.h"
#include "gameday/playbook.h"
#include "fault/power.h"
#include "t/gameday/pb_test.h"
#include "t/tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *inv_text = PB_TEST_INV6;

static struct inventory *inv6(void)
{
    return pbt_inventory(inv_text);
}

static const char *good =
    "name: t-good\n"
    "cluster:\n"
    "  deploy: {partitions: 6, args: [--log-level, debug]}\n"
    "traffic:\n"
    "  rate: 150\n"
    "  mix: {put: 2, cget: 1}\n"
    "  keys: 300\n"
    "  endpoints: per_az\n"
    "  timeout: 800ms\n"
    "steps:\n"
    "  - wait_healthy: {timeout: 30s}\n"
    "  - repeat:\n"
    "      times: 10\n"
    "      steps:\n"
    "        - power_off: {target: node, select: random, count: 1, duration: 5s..20s}\n"
    "        - wait_healthy:\n"
    "  - sleep: 2s\n";




static char *plan_text(const struct playbook *pb, const struct inventory *inv, uint64_t seed,
                       struct pb_plan **keep)
{
    struct nerr e;
    char *t = plan_string(pb, inv, seed, keep, &e);
    if (!t)
        diag("plan: %s", e.msg);
    return t;
}

/* Replays a plan's power actions and returns the most AZs ever down at
 * once (a held power_off counts while it holds). */
static int max_azs_down(const struct pb_plan *p, const struct inventory *inv)
{
    int down[16] = {0}, worst = 0;
    for (size_t i = 0; i < p->n; i++) {
        const struct pb_action *a = &p->a[i];
        if (a->fault != &fault_power)
            continue;
        int now[16];
        memcpy(now, down, sizeof now);
        for (size_t k = 0; k < a->nhosts; k++)
            now[a->hosts[k]] = a->kind == PB_INJECT;
        char azs[16][16];
        int n = 0;
        for (size_t h = 0; h < inv->n_hosts; h++) {
            if (!now[h])
                continue;
            int seen = 0;
            for (int j = 0; j < n; j++)
                seen |= !strcmp(azs[j], inv->hosts[h].az);
            if (!seen)
                snprintf(azs[n++], sizeof azs[0], "%s", inv->hosts[h].az);
        }
        if (n > worst)
            worst = n;
        if (a->kind == PB_HEAL || !a->hold_ns)
            memcpy(down, now, sizeof down);
    }
    return worst;
}

static void test_good(const struct inventory *inv)
{
    struct pb_errors errs;
    struct nerr e;
    struct playbook *pb = load(good, inv, &errs, &e);
    ok(pb && errs.n == 0, "good playbook loads without errors (%s)", e.msg);
    if (!pb)
        return;
    is(pb->name, "t-good", "name");
    ok(pb->deploy && pb->partitions == 6 && pb->nargs == 2 && !strcmp(pb->ninesd_args[1], "debug"),
       "deploy: partitions and ninesd args");
    ok(pb->traffic.rate == 150 && pb->traffic.mix[0] == 2 && pb->traffic.mix[2] == 1 &&
           pb->traffic.mix[1] == 0 && pb->traffic.keys == 300 && pb->traffic.per_az &&
           pb->traffic.timeout_ms == 800 && pb->traffic.duration_ns == 0,
       "traffic: rate, mix, keys, endpoints, timeout, whole-run duration");
    is_int(pb->nsteps, 3, "three top-level steps");
    ok(pb->steps[1].kind == PB_REPEAT && pb->steps[1].times == 10 && pb->steps[1].nsteps == 2,
       "repeat 10 of 2 steps");
    const struct pb_step *off = &pb->steps[1].steps[0];
    ok(off->kind == PB_INJECT && off->fault == &fault_power && off->dur_min == 5000000000ull && off->dur_max == 20000000000ull &&
           off->targets.quorum_safe == 1 && off->targets.count == 1,
       "power_off: range 5s..20s, quorum_safe by default");
    ok(pb->verify.checkers && pb->verify.replicas && pb->verify.caught_up && pb->verify.scrub,
       "every verification on by default (the scrub too)");

    struct pb_plan *p = NULL;
    char *a = plan_text(pb, inv, 42, &p), *b = plan_text(pb, inv, 42, NULL),
         *c = plan_text(pb, inv, 43, NULL);
    ok(a && b && !strcmp(a, b), "the same seed gives the same plan");
    ok(a && c && strcmp(a, c), "another seed gives another plan");
    ok(a && strstr(a, "seed 42"), "the plan names its seed");
    if (p) {
        is_int(p->n, 22, "1 + 10 x 2 + 1 resolved steps");
        int holds_ok = 1, one = 1;
        for (size_t i = 0; i < p->n; i++)
            if ((p->a[i].kind == PB_INJECT && p->a[i].fault == &fault_power)) {
                holds_ok &= p->a[i].hold_ns >= 5000000000ull && p->a[i].hold_ns <= 20000000000ull;
                one &= p->a[i].nhosts == 1;
            }
        ok(holds_ok, "every drawn duration is within 5s..20s");
        ok(one, "every power_off hits one node");
        is(p->a[1].label, "round 1/10: power_off", "labels name the round");
    }
    pb_plan_free(p);
    if (a)
        note("plan for seed 42:\n%s", a);
    free(a), free(b), free(c);
    playbook_free(pb);
    pb_errors_free(&errs);
}

/* Line numbers below are those of the text, columns were counted by hand:
 * keep them in step. */
static const char *broken =
    "name: broken\n"                                             /* 1 */
    "inventry: x.yaml\n"                                         /* 2 */
    "cluster:\n"                                                 /* 3 */
    "  deploy: {api_port: 70000}\n"                              /* 4 */
    "traffic:\n"                                                 /* 5 */
    "  ratee: 10\n"                                              /* 6 */
    "  mix: {put: 1, gett: 2}\n"                                 /* 7 */
    "  keys: \"100\"\n"                                          /* 8 */
    "steps:\n"                                                   /* 9 */
    "  - power_of: {}\n"                                         /* 10 */
    "  - power_off: {count: two, duration: 20s..5s}\n"           /* 11 */
    "  - power_off: {select: names, names: [h1, h9]}\n"          /* 12 */
    "  - power_off: {target: zone}\n"                            /* 13 */
    "  - sleep: 5s..x\n"                                         /* 14 */
    "  - repeat: {times: 0, steps: [wait_healthy: ~]}\n"         /* 15 */
    "  - power_on: {target: az, names: [az7]}\n"                 /* 16 */
    "verify: {checkers: yes, scrubb: true}\n";                   /* 17 */


static void test_broken(const struct inventory *inv)
{
    struct pb_errors errs;
    struct nerr e;
    struct playbook *pb = load(broken, inv, &errs, &e);
    ok(!pb, "a broken playbook is refused");
    is_int(e.code, NERR_INVALID, "as NERR_INVALID");
    static const char *const want[] = {
        "pb.yaml:2:1: unknown key 'inventry', did you mean 'inventory'?",
        "pb.yaml:4:22: 70000 is out of range (1..65535)",
        "pb.yaml:6:3: unknown key 'ratee', did you mean 'rate'?",
        "pb.yaml:7:17: unknown key 'gett', did you mean 'get'?",
        "pb.yaml:8:9: expected an integer, got the string \"100\"",
        "pb.yaml:10:5: unknown key 'power_of', did you mean 'power_off'?",
        "pb.yaml:11:24: expected an integer, got 'two'",
        "pb.yaml:11:39: range 20s..5s: the upper bound is below the lower one",
        "pb.yaml:12:44: node 'h9' is not in the inventory inv.yaml",
        "pb.yaml:13:25: target must be node, rack or az, got 'zone'",
        "pb.yaml:14:16: expected a duration (500ms, 10s, 2m, 1h30m), got 'x'",
        "pb.yaml:15:21: 0 is out of range (1..1000)",
        "pb.yaml:16:36: az 'az7' is not in the inventory inv.yaml",
        "pb.yaml:17:20: expected a boolean (true or false), got 'yes'",
        "pb.yaml:17:25: unknown key 'scrubb', did you mean 'scrub'?",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!ok(has_err(&errs, want[i]), "error reported: %s", want[i]))
            for (size_t j = 0; j < errs.n; j++)
                diag("  got: %s", errs.msg[j]);
    ok(errs.n >= sizeof want / sizeof want[0], "every error is collected (%zu)", errs.n);
    pb_errors_free(&errs);

    /* Without an inventory the names are not checked, the rest is. */
    pb = load(broken, NULL, &errs, &e);
    ok(!has_err(&errs, "pb.yaml:12:44: node 'h9' is not in the inventory inv.yaml") &&
           has_err(&errs, "pb.yaml:6:3: unknown key 'ratee', did you mean 'rate'?"),
       "without an inventory, schema errors only");
    pb_errors_free(&errs);

    pb = load("cluster: {deploy: ~}\nsteps: []\n", inv, &errs, &e);
    is(e.msg, "pb.yaml:2:8: no steps", "an empty step list");
    pb_errors_free(&errs);
    pb = load("steps: [sleep: 1s]\n", inv, &errs, &e);
    is(e.msg, "pb.yaml:1:1: missing required key 'cluster'", "cluster is required");
    pb_errors_free(&errs);
    pb = load("cluster: {deploy: ~, existing: {cluster_file: c.yaml}}\nsteps: [sleep: 1s]\n", inv,
              &errs, &e);
    is(e.msg, "pb.yaml:1:22: cluster needs exactly one of deploy, existing", "deploy xor existing");
    pb_errors_free(&errs);
    pb = load("cluster: {deploy: ~}\nsteps: [{sleep: 1s, wait_healthy: ~}]\n", inv, &errs, &e);
    ok(!strncmp(e.msg, "pb.yaml:2:21: a step has exactly one of power_off, power_on, ", 61) &&
           strstr(e.msg, ", wait_healthy, sleep, repeat"),
       "two kinds in one step");
    pb_errors_free(&errs);
    pb = load("cluster: {deploy: ~}\nsteps: [sleep: 1s]\nverify: {scrub: 1}\n", inv, &errs, &e);
    is(e.msg, "pb.yaml:3:17: scrub is true, false or deep, got '1'", "verify.scrub is a boolean or deep");
    pb_errors_free(&errs);
    pb = must("cluster: {deploy: ~}\nsteps: [sleep: 1s]\nverify: {scrub: false}\n", inv);
    ok(pb && !pb->verify.scrub && pb->verify.checkers, "verify.scrub: false turns only the scrub off");
    playbook_free(pb);
    pb = load("cluster: {deploy: ~}\nsteps: [\n", inv, &errs, &e);
    is_int(e.code, NERR_PARSE, "YAML syntax errors are parse errors");
    ok(errs.n == 1 && !strncmp(errs.msg[0], "pb.yaml:", 8), "with a position (%s)",
       errs.n ? errs.msg[0] : "");
    pb_errors_free(&errs);
}


static void test_quorum(const struct inventory *inv)
{
    struct nerr e = {0};
    struct pb_plan *p = NULL;

    /* By name across two AZs: refused at the step, allowed when told. */
    struct playbook *pb =
        must("cluster: {deploy: ~}\nsteps:\n  - power_off: {names: [h1, h2], duration: 1s}\n", inv);
    ok(pb && playbook_plan(pb, inv, 1, &p, &e) == NERR_INVALID, "h1 + h2 (az1, az2) refused");
    is(e.msg,
       "pb.yaml:3:5: quorum_safe: h2 would have hosts of AZs az1 and az2 down at once (down: none)",
       "the refusal points at the step and says why");
    playbook_free(pb);
    pb = must("cluster: {deploy: ~}\nsteps:\n  - power_off: {names: [h1, h2], duration: 1s, "
              "quorum_safe: false}\n",
              inv);
    ok(pb && !playbook_plan(pb, inv, 1, &p, &e) && p->a[0].nhosts == 2,
       "the same with quorum_safe: false is planned");
    pb_plan_free(p);
    p = NULL;
    playbook_free(pb);

    /* A host left off (no duration) pins later random victims to its AZ. */
    pb = must("cluster: {deploy: ~}\nsteps:\n  - power_off: {names: [h4]}\n"
              "  - repeat: {times: 5, steps: [power_off: {count: 1, duration: 1s}]}\n"
              "  - power_on: {}\n"
              "  - power_off: {target: rack, count: 1, duration: 1s}\n",
              inv);
    int pinned = 1, worst = 0, on_ok = 1, racks_ok = 1;
    for (uint64_t seed = 1; pb && seed <= 40; seed++) {
        if (playbook_plan(pb, inv, seed, &p, &e)) {
            diag("seed %llu: %s", (unsigned long long)seed, e.msg);
            pinned = 0;
            break;
        }
        for (size_t i = 1; i <= 5; i++)
            pinned &= !strcmp(inv->hosts[p->a[i].hosts[0]].name, "h1"); /* az1's other host */
        on_ok &= (p->a[6].kind == PB_HEAL && p->a[6].fault == &fault_power) && p->a[6].nhosts == 1 &&
                 !strcmp(inv->hosts[p->a[6].hosts[0]].name, "h4");
        racks_ok &= p->a[7].nhosts == 1; /* 6 hosts, 3 AZs, 2 racks: one host per rack */
        int w = max_azs_down(p, inv);
        if (w > worst)
            worst = w;
        pb_plan_free(p);
        p = NULL;
    }
    ok(pinned, "with h4 (az1) off, every random victim is h1, the other az1 host (40 seeds)");
    ok(on_ok, "power_on {} powers on exactly the host left off");
    ok(racks_ok, "target rack hits the one host of a rack");
    is_int(worst, 1, "never hosts of two AZs down at once");
    playbook_free(pb);

    /* Two random nodes: quorum_safe puts them in one AZ; without it the
     * same seeds do spread over AZs (so the check is what restricts). */
    const char *two = "cluster: {deploy: ~}\nsteps:\n  - power_off: {count: 2, duration: 1s%s}\n";
    char text[256];
    int same = 1, spread = 0;
    for (int safe = 1; safe >= 0; safe--) {
        snprintf(text, sizeof text, two, safe ? "" : ", quorum_safe: false");
        pb = must(text, inv);
        for (uint64_t seed = 1; pb && seed <= 40; seed++) {
            if (playbook_plan(pb, inv, seed, &p, &e))
                break;
            int one_az = !strcmp(inv->hosts[p->a[0].hosts[0]].az, inv->hosts[p->a[0].hosts[1]].az);
            if (safe)
                same &= one_az;
            else
                spread |= !one_az;
            pb_plan_free(p);
            p = NULL;
        }
        playbook_free(pb);
    }
    ok(same, "count 2 with quorum_safe: always two hosts of one AZ");
    ok(spread, "count 2 without quorum_safe: some seeds pick two AZs");

    /* Impossible requests are refused at the step. */
    pb = must("cluster: {deploy: ~}\nsteps:\n  - power_off: {target: az, count: 2}\n", inv);
    ok(pb && playbook_plan(pb, inv, 1, &p, &e) == NERR_INVALID &&
           strstr(e.msg, "pb.yaml:3:5: quorum_safe: no AZ has 2 azs up"),
       "two AZs at once refused under quorum_safe (%s)", e.msg);
    playbook_free(pb);
    pb = must("cluster: {deploy: ~}\nsteps:\n  - power_off: {names: [h1]}\n"
              "  - power_off: {names: [h1]}\n",
              inv);
    ok(pb && playbook_plan(pb, inv, 1, &p, &e) == NERR_INVALID &&
           !strcmp(e.msg, "pb.yaml:4:5: node h1 is already (partly) down at this point (down: h1)"),
       "a host already off cannot be powered off (%s)", e.msg);
    playbook_free(pb);
    pb = must("cluster: {deploy: ~}\nsteps:\n  - power_on: {names: [h2]}\n", inv);
    ok(pb && playbook_plan(pb, inv, 1, &p, &e) == NERR_INVALID &&
           !strcmp(e.msg, "pb.yaml:3:5: host h2 is not off at this point"),
       "a host that is on cannot be powered on (%s)", e.msg);
    playbook_free(pb);
    pb = must("cluster: {deploy: ~}\nsteps:\n  - power_off: {percent: 50, duration: 1s}\n", inv);
    ok(pb && playbook_plan(pb, inv, 3, &p, &e) == NERR_INVALID &&
           strstr(e.msg, "quorum_safe: no AZ has 3 nodes up"),
       "percent 50 of 6 nodes is 3, more than one AZ holds: refused (%s)", e.msg);
    playbook_free(pb);
    pb = must("cluster: {deploy: ~}\nsteps:\n  - power_off: {percent: 50, duration: 1s, "
              "quorum_safe: false}\n",
              inv);
    ok(pb && !playbook_plan(pb, inv, 3, &p, &e) && p->a[0].nhosts == 3,
       "percent 50 without quorum_safe: 3 nodes");
    pb_plan_free(p);
    p = NULL;
    playbook_free(pb);
}

/* The shipped playbooks lint and plan cleanly, and the CLI agrees. */
static void test_shipped(const struct inventory *inv)
{
    const char *top = getenv("NINES_TOP");
    char path[1024];
    struct pb_errors errs;
    struct nerr e;
    const char *names[] = {"power-off-random", "az-outage"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/playbooks/%s.yaml", top ? top : ".", names[i]);
        struct playbook *pb = NULL;
        memset(&errs, 0, sizeof errs);
        int rc = playbook_load(path, NULL, 0, inv, &pb, &errs, &e);
        ok(!rc, "%s loads (%s)", names[i], rc ? e.msg : "");
        struct pb_plan *p = NULL;
        ok(pb && !playbook_plan(pb, inv, 7, &p, &e), "%s plans", names[i]);
        if (p && i == 0) {
            int offs = 0, holds = 1;
            for (size_t k = 0; k < p->n; k++)
                if ((p->a[k].kind == PB_INJECT && p->a[k].fault == &fault_power)) {
                    offs++;
                    holds &= p->a[k].hold_ns >= 5000000000ull && p->a[k].hold_ns <= 20000000000ull;
                }
            ok(offs == 10 && holds, "power-off-random: 10 power-offs of 5-20 s");
        }
        if (p && i == 1) {
            int az_ok = 0;
            for (size_t k = 0; k < p->n; k++)
                if ((p->a[k].kind == PB_INJECT && p->a[k].fault == &fault_power))
                    az_ok = p->a[k].nhosts == 2 &&
                            !strcmp(inv->hosts[p->a[k].hosts[0]].az, inv->hosts[p->a[k].hosts[1]].az);
            ok(az_ok, "az-outage: both hosts of one AZ go off");
        }
        pb_plan_free(p);
        playbook_free(pb);
        pb_errors_free(&errs);
    }
}

/* gameday_main's lint and plan in a child: exit status and output. */
static int cli(char *argv[], char *out, size_t cap)
{
    int fds[2];
    if (pipe(fds))
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        int argc = 0;
        while (argv[argc])
            argc++;
        _exit(gameday_main(argc, (char **)argv));
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t n;
    while (len + 1 < cap && (n = read(fds[0], out + len, cap - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = 0;
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void)
{
    char dir[] = "/tmp/nines-gd-lint-XXXXXX";
    if (!mkdtemp(dir))
        bail_out("mkdtemp");
    char invp[256], goodp[256], badp[256], out[65536], out2[65536];
    snprintf(invp, sizeof invp, "%s/inv.yaml", dir);
    snprintf(goodp, sizeof goodp, "%s/good.yaml", dir);
    snprintf(badp, sizeof badp, "%s/bad.yaml", dir);
    FILE *f = fopen(invp, "w");
    fputs(inv_text, f);
    fclose(f);
    f = fopen(goodp, "w");
    fputs(good, f);
    fclose(f);
    f = fopen(badp, "w");
    fputs(broken, f);
    fclose(f);

    char *lint_good[] = {"gameday", "lint", goodp, "--inventory", invp, NULL};
    is_int(cli(lint_good, out, sizeof out), 0, "lint of a good playbook: exit 0");
    char *lint_bad[] = {"gameday", "lint", badp, "--inventory", invp, NULL};
    is_int(cli(lint_bad, out, sizeof out), 2, "lint of a broken playbook: exit 2");
    char want[1200];
    snprintf(want, sizeof want, "%s:12:44: node 'h9' is not in the inventory %s", badp, invp);
    ok(strstr(out, want) != NULL, "lint prints the unknown host at its line:col");
    snprintf(want, sizeof want, "%s:6:3: unknown key 'ratee', did you mean 'rate'?", badp);
    ok(strstr(out, want) != NULL, "and the unknown key in the same run");

    char *plan1[] = {"gameday", "plan", goodp, "--inventory", invp, "--seed", "5", NULL};
    is_int(cli(plan1, out, sizeof out), 0, "plan: exit 0");
    cli(plan1, out2, sizeof out2);
    ok(!strcmp(out, out2) && strstr(out, "seed 5"), "plan output is the same for --seed 5 twice");
    char *plan2[] = {"gameday", "plan", goodp, "--inventory", invp, "--seed", "6", NULL};
    cli(plan2, out2, sizeof out2);
    ok(strcmp(out, out2) != 0, "and differs for --seed 6");
    char *noinv[] = {"gameday", "plan", goodp, NULL};
    is_int(cli(noinv, out, sizeof out), 2, "plan without an inventory: exit 2");
    char *badcmd[] = {"gameday", "explode", goodp, NULL};
    is_int(cli(badcmd, out, sizeof out), 2, "unknown subcommand: exit 2");
    unlink(invp), unlink(goodp), unlink(badp);
    rmdir(dir);
}


/* power_off's mode: parsed, carried into the plan and printed; a bad word is
 * an error at its position; crash/torn on a lab host without labfs is
 * refused by the planner (the power-off would not lose unsynced writes). */
static void test_mode(const struct inventory *inv)
{
    const char *pbt = "steps:\n"
                      "  - power_off: {names: [h1], duration: 1s, mode: torn}\n"
                      "  - power_off: {names: [h2], duration: 1s, mode: kill}\n"
                      "  - power_off: {names: [h3], duration: 1s}\n";
    char text[1024];
    snprintf(text, sizeof text, "cluster: {deploy: ~}\n%s", pbt);
    struct playbook *pb = must(text, inv);
    ok(pb != NULL, "a playbook with modes loads");
    if (!pb)
        return;
    struct pb_plan *p = NULL;
    char *t = plan_text(pb, inv, 1, &p);
    ok(p && p->n == 3, "three steps planned");
    if (p && p->n == 3) {
        is_int(power_fault_mode(p->a[0].params), POWER_OFF_TORN, "step 1: mode torn");
        is_int(power_fault_mode(p->a[1].params), POWER_OFF_KILL, "step 2: mode kill");
        is_int(power_fault_mode(p->a[2].params), POWER_OFF_DEFAULT, "step 3: no mode = default");
    }
    if (!ok(t && strstr(t, " for 1s (mode torn)") && strstr(t, " for 1s (mode kill)"),
            "plan prints the mode"))
        diag("%s", t ? t : "");
    ok(t && !strstr(t, "h3 (az3/r1) for 1s (mode"), "and none for the default");
    free(t);
    pb_plan_free(p);
    playbook_free(pb);

    struct pb_errors errs;
    struct nerr e;
    snprintf(text, sizeof text,
             "cluster: {deploy: ~}\nsteps:\n  - power_off: {names: [h1], mode: melt}\n");
    pb = load(text, inv, &errs, &e);
    ok(pb == NULL, "mode melt refused");
    ok(has_err(&errs, "pb.yaml:3:36: mode must be crash, torn or kill, got 'melt'"),
       "at its line and column (%s)", errs.n ? errs.msg[0] : "");
    pb_errors_free(&errs);
    playbook_free(pb);

    /* A lab inventory: h1 with labfs, h2 without. */
    static const char *labinv =
        "inventory: lab\nhosts:\n"
        "  - {name: h1, address: 10.9.1.2, az: az1, rack: r1, data: /l/h1/data,\n"
        "     power: {driver: lab, netns: n1, start: s, fs: /l/h1/data}}\n"
        "  - {name: h2, address: 10.9.1.3, az: az2, rack: r1, data: /l/h2/data,\n"
        "     power: {driver: lab, netns: n2, start: s}}\n";
    struct inventory *li = NULL;
    nerr_clear(&e);
    if (inventory_load_string("lab.yaml", labinv, strlen(labinv), "/", &li, &e))
        bail_out(e.msg);
    snprintf(text, sizeof text,
             "cluster: {deploy: ~}\nsteps:\n  - power_off: {names: [h1], mode: crash, duration: 1s}\n"
             "  - power_off: {names: [h2], mode: kill, duration: 1s}\n");
    pb = must(text, li);
    p = NULL;
    nerr_clear(&e);
    is_int(playbook_plan(pb, li, 1, &p, &e), 0, "crash on a labfs host, kill on a plain one: planned");
    pb_plan_free(p);
    playbook_free(pb);
    snprintf(text, sizeof text,
             "cluster: {deploy: ~}\nsteps:\n  - power_off: {names: [h2], mode: crash}\n");
    pb = must(text, li);
    p = NULL;
    nerr_clear(&e);
    is_int(playbook_plan(pb, li, 1, &p, &e), NERR_INVALID, "crash on a host without labfs: refused");
    is(e.msg,
       "pb.yaml:3:5: mode crash: lab host h2 has no labfs (`fs`), so its power-off would not lose "
       "unsynced writes",
       "at the step, naming the host");
    pb_plan_free(p);
    playbook_free(pb);
    inventory_free(li);
}


/* canaries, alarms, steady_state, stop_conditions, expect: and verify.scrub
 * deep: the good shapes load into the structs, each bad one is an error at
 * its line and column, and the shipped playbooks that use them load. */
static void test_observe(const struct inventory *inv)
{
    const char *top = getenv("NINES_TOP");
    char rules[1024], text[4096];
    struct pb_errors errs;
    struct nerr e;
    snprintf(rules, sizeof rules, "%s/playbooks/alarms-gameday.yaml", top ? top : ".");
    snprintf(text, sizeof text,
             "cluster: {deploy: ~}\n"
             "traffic: {rate: 10}\n"
             "canaries: {rate: 3, interval: 2s, metrics: 127.0.0.1:9500}\n"
             "alarms: {rules: %s}\n"
             "steady_state:\n"
             "  - availability: {min: 99.5%%, over: 5s}\n"
             "  - p99: {max: 250ms}\n"
             "  - no_alarm: {alarm: availability_by_az, timeout: 40s}\n"
             "stop_conditions:\n"
             "  - alarm_outside_plan: true\n"
             "  - availability: {min: 80, over: 20s}\n"
             "steps:\n"
             "  - power_off:\n"
             "      target: az\n"
             "      duration: 5s\n"
             "      expect:\n"
             "        fires: [{alarm: availability_by_az, labels: {az: '{{target.az}}'}, within: 20s}]\n"
             "        quiet: [{alarm: availability_by_az, labels: {az: '!{{target.az}}'}}]\n"
             "        quiet_after: 12s\n"
             "        availability: {min: 99, scope: unaffected, source: traffic}\n"
             "        p99: {max: 1s, scope: affected}\n"
             "verify: {scrub: deep}\n",
             rules);
    struct playbook *pb = load(text, inv, &errs, &e);
    ok(pb != NULL, "every new section loads (%s)", e.msg);
    if (pb) {
        ok(pb->canaries.enabled && pb->canaries.rate == 3 &&
               pb->canaries.interval_ns == 2000000000ull &&
               !strcmp(pb->canaries.metrics, "127.0.0.1:9500") &&
               !strcmp(pb->canaries.table, "nines_canary"),
           "canaries: rate, interval, metrics, default table");
        ok(pb->alarms.enabled && !strcmp(pb->alarms.rules, rules), "alarms: the rules file");
        ok(pb->nsteady == 3 && pb->steady[0].kind == PB_PROBE_AVAIL &&
               pb->steady[0].min == 99.5 && pb->steady[0].over_ns == 5000000000ull &&
               pb->steady[1].kind == PB_PROBE_P99 && pb->steady[1].max_ns == 250000000ull &&
               pb->steady[2].kind == PB_PROBE_NO_ALARM &&
               !strcmp(pb->steady[2].match.alarm, "availability_by_az") &&
               pb->steady[2].timeout_ns == 40000000000ull,
           "steady_state: availability 99.5%%, p99 250ms, no_alarm with its timeout");
        ok(pb->nstops == 2 && pb->stops[0].kind == PB_PROBE_OUTSIDE_PLAN &&
               pb->stops[1].kind == PB_PROBE_AVAIL && pb->stops[1].min == 80 &&
               pb->stops[1].scope == PB_SCOPE_UNAFFECTED,
           "stop_conditions: outside the plan; availability defaults to the unaffected AZs");
        const struct pb_expect *x = pb->steps[0].expect;
        ok(x && x->nfires == 1 && x->nquiet == 1 && x->fires[0].within_ns == 20000000000ull &&
               !strcmp(x->fires[0].label[1], "{{target.az}}") && !x->fires[0].neg[1] &&
               !strcmp(x->quiet[0].label[1], "{{target.az}}") && x->quiet[0].neg[1] &&
               x->quiet_after_ns == 12000000000ull && x->avail_min == 99 &&
               x->avail_scope == PB_SCOPE_UNAFFECTED && x->avail_source == PB_SRC_TRAFFIC &&
               x->p99_max_ns == 1000000000ull && x->p99_scope == PB_SCOPE_AFFECTED,
           "expect: fires (az is endpoint_az), quiet negated, availability, p99");
        ok(pb->verify.scrub && pb->verify.scrub_deep, "verify.scrub: deep");
        struct pb_plan *p = NULL;
        ok(!playbook_plan(pb, inv, 3, &p, &e) && p->a[0].expect == pb->steps[0].expect,
           "the plan's action carries the step's expect");
        pb_plan_free(p);
        playbook_free(pb);
    }
    pb_errors_free(&errs);

    snprintf(text, sizeof text,
             "cluster: {deploy: ~}\n"
             "canaries: {rate: 0, interval: 1500us}\n"
             "alarms: {rules: %s}\n"
             "steady_state:\n"
             "  - availability: {min: 101}\n"
             "  - no_alarm: {alarm: nosuch}\n"
             "  - p99: {max: 1s}\n"
             "  - {availability: {min: 1}, p99: {max: 1s}}\n"
             "stop_conditions:\n"
             "  - alarm: {}\n"
             "  - no_alarm: {}\n"
             "steps:\n"
             "  - power_off:\n"
             "      expect:\n"
             "        fires: [{alarm: availability_by_az, labels: {zone: x, az: '{{target.dc}}'}}]\n"
             "        availability: {min: 99, scope: elsewhere}\n"
             "        p99: {max: 1s}\n"
             "verify: {scrub: 1}\n",
             rules);
    pb = load(text, inv, &errs, &e);
    ok(pb == NULL, "a broken playbook of the new sections is refused");
    static const char *const want[] = {
        "pb.yaml:2:18: 0 is out of range (1..1000)",
        "pb.yaml:5:25: expected a percentage from 0 to 100 (99.5 or 99.5%), got '101'",
        "pb.yaml:6:15: no alarm 'nosuch' in the rules (they have: availability_by_az)",
        "pb.yaml:7:5: this needs a traffic: section",
        "pb.yaml:8:30: a steady-state probe has exactly one of availability, p99, no_alarm",
        "pb.yaml:10:12: alarm: name the alarm (alarm_outside_plan: true stops on any alarm no step "
        "expects)",
        "pb.yaml:15:67: unknown template in '{{target.dc}}' (known: {{target.az}}, {{target.rack}}, "
        "{{target.host}})",
        "pb.yaml:16:40: scope must be all, unaffected or affected, got 'elsewhere'",
        "pb.yaml:15:9: expect: p99 needs a traffic: section",
        "pb.yaml:18:17: scrub is true, false or deep, got '1'",
        NULL};
    for (int i = 0; want[i]; i++)
        ok(has_err(&errs, want[i]), "error: %s", want[i]);
    int unknown_label = 0, no_alarm_stop = 0, interval = 0;
    for (size_t i = 0; i < errs.n; i++) {
        unknown_label |= !strncmp(errs.msg[i], "pb.yaml:15:", 11) && strstr(errs.msg[i], "zone");
        no_alarm_stop |= !strncmp(errs.msg[i], "pb.yaml:11:5:", 13);
        interval |= !strncmp(errs.msg[i], "pb.yaml:2:", 10) && strstr(errs.msg[i], "1500us");
    }
    ok(unknown_label, "an unknown label is named at its line");
    ok(no_alarm_stop, "no_alarm is not a stop condition (unknown key at 11:5)");
    ok(interval, "a bad interval is named");
    pb_errors_free(&errs);

    pb = load("cluster: {deploy: ~}\nalarms: {rules: /nonexistent/rules.yaml}\n"
              "steps: [sleep: 1s]\n",
              inv, &errs, &e);
    ok(has_err(&errs, "pb.yaml:2:9: alarms need a canaries: section (their samples)"),
       "alarms without canaries are refused");
    int norules = 0;
    for (size_t i = 0; i < errs.n; i++)
        norules |= strstr(errs.msg[i], "/nonexistent/rules.yaml") != NULL;
    ok(norules, "a rules file that cannot be read is named");
    pb_errors_free(&errs);
    playbook_free(pb);

    const char *names[] = {"az-outage-alarms", "demo", "partition-node", "partition-leader"};
    for (int i = 0; i < 4; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/playbooks/%s.yaml", top ? top : ".", names[i]);
        memset(&errs, 0, sizeof errs);
        pb = NULL;
        int rc = playbook_load(path, NULL, 0, inv, &pb, &errs, &e);
        ok(!rc && pb && pb->canaries.enabled && pb->alarms.enabled && pb->nsteady && pb->nstops,
           "%s loads with canaries, alarms, steady state and stop conditions (%s)", names[i],
           rc ? e.msg : "");
        struct pb_plan *p = NULL;
        int fires = 0;
        if (pb && !playbook_plan(pb, inv, 7, &p, &e))
            for (size_t k = 0; k < p->n; k++)
                fires += p->a[k].expect ? (int)p->a[k].expect->nfires : 0;
        ok(fires == 1, "%s: one fires expectation in the plan", names[i]);
        pb_plan_free(p);
        playbook_free(pb);
        pb_errors_free(&errs);
    }
}

/* select: leader (fault/targets.h "Run-time targets"): no hosts in the plan,
 * the heal linked to its inject, the quorum rule without a known AZ, and a
 * line:col error for each misuse. */
static void test_leader(const struct inventory *inv)
{
    struct nerr e = {0};
    struct pb_plan *p = NULL;
    const char *tr = "cluster: {deploy: ~}\ntraffic: {rate: 10, partitions: 4}\nsteps:\n";
    char text[1024];

    snprintf(text, sizeof text,
             "%s  - partition: {select: leader, leader_of: {partition: 3}, expect: "
             "{leader_moves: 10s}}\n  - heal_partition: ~\n",
             tr);
    struct playbook *pb = must(text, inv);
    char *s = pb ? plan_string(pb, inv, 1, &p, &e) : NULL;
    ok(s && p && p->n == 2 && p->a[0].nhosts == 0 && p->a[0].runtime &&
           p->a[0].runtime->partition == 3 && p->a[1].heals_runtime == 1,
       "a select: leader inject has no hosts in the plan; its heal names it");
    ok(s && strstr(s, "the node holding the leader of the traffic table partition 3 (chosen when "
                      "the step runs)"),
       "the plan says whose leader and when it is chosen");
    ok(s && strstr(s, "the hosts step 1 chose when it ran"), "the heal says what it heals");
    if (s && !strstr(s, "partition 3"))
        diag("%s", s);
    free(s);
    pb_plan_free(p);
    p = NULL;
    playbook_free(pb);

    /* leader_of alone means select: leader; target az: the leader's AZ. */
    snprintf(text, sizeof text,
             "%s  - power_off: {target: az, leader_of: {table: other, partition: 9}, duration: "
             "2s}\n",
             tr);
    pb = must(text, inv);
    ok(pb && !playbook_plan(pb, inv, 1, &p, &e) && p->a[0].runtime &&
           p->a[0].runtime->unit == FAULT_AZ && !strcmp(p->a[0].runtime->table, "other") &&
           p->a[0].hold_ns == 2000000000ull,
       "leader_of alone selects the leader (another table: any partition number)");
    pb_plan_free(p);
    p = NULL;
    playbook_free(pb);

    struct {
        const char *steps, *err;
    } bad[] = {
        {"  - partition: {select: random, leader_of: {partition: 1}}\n",
         "pb.yaml:4:33: leader_of is only for select: leader"},
        {"  - partition: {select: leader, names: [h1]}\n",
         "pb.yaml:4:33: names is only for select: names"},
        {"  - partition: {select: leader, count: 2}\n",
         "pb.yaml:4:33: count and percent are for select: random"},
        {"  - partition: {select: leaders}\n",
         "pb.yaml:4:25: select must be random, names or leader, got 'leaders'"},
        {"  - partition: {leader_of: {partition: -1}}\n", NULL},
        {"  - partition: {leader_of: {partitions: 1}}\n", NULL},
        {"  - partition: {count: 1, expect: {leader_moves: 5s}}\n",
         "pb.yaml:4:36: leader_moves is only for a select: leader step"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct pb_errors errs;
        snprintf(text, sizeof text, "%s%s", tr, bad[i].steps);
        struct playbook *b = load(text, inv, &errs, &e);
        ok(!b && (bad[i].err ? has_err(&errs, bad[i].err) : errs.n > 0 && strstr(errs.msg[0], "pb.yaml:4:")),
           "refused with its position: %s", bad[i].steps);
        if (b || (bad[i].err && !has_err(&errs, bad[i].err)))
            for (size_t k = 0; k < errs.n; k++)
                diag("  got %s", errs.msg[k]);
        pb_errors_free(&errs);
        playbook_free(b);
    }

    /* Planner refusals, at the step. */
    struct {
        const char *text, *err;
    } refuse[] = {
        {"cluster: {deploy: ~}\ntraffic: {rate: 10, partitions: 4}\nsteps:\n"
         "  - partition: {leader_of: {partition: 4}}\n",
         "pb.yaml:4:5: leader_of.partition 4: table gameday has 4 partitions"},
        {"cluster: {deploy: ~}\nsteps:\n  - partition: {select: leader}\n",
         "pb.yaml:3:5: select: leader needs leader_of.table (the playbook has no traffic table "
         "to default to)"},
        {"cluster: {deploy: ~}\ntraffic: {rate: 10}\nsteps:\n  - power_off: {names: [h1]}\n"
         "  - partition: {select: leader}\n",
         "pb.yaml:5:5: quorum_safe: select: leader chooses its node when the step runs, in any "
         "AZ, so nothing may be down then (down: h1)"},
        {"cluster: {deploy: ~}\ntraffic: {rate: 10}\nsteps:\n  - partition: {select: leader}\n"
         "  - power_off: {count: 1, duration: 1s}\n",
         "pb.yaml:5:5: quorum_safe: no node may go down while a fault on a unit chosen at run "
         "time (select: leader, any AZ) is held (down: a unit chosen at run time (select: "
         "leader))"},
        {"cluster: {deploy: ~}\ntraffic: {rate: 10}\nsteps:\n  - partition: {select: leader}\n"
         "  - heal_partition: {names: [h1]}\n",
         "pb.yaml:5:5: this kind holds a unit chosen at run time (select: leader): heal it "
         "without names"},
        {"cluster: {deploy: ~}\ntraffic: {rate: 10}\nsteps:\n  - partition: {select: leader}\n"
         "  - pause: {select: leader, quorum_safe: false}\n",
         "pb.yaml:5:5: step 1's select: leader fault is still held: one at a time"},
    };
    for (size_t i = 0; i < sizeof refuse / sizeof *refuse; i++) {
        pb = must(refuse[i].text, inv);
        int rc = pb ? playbook_plan(pb, inv, 1, &p, &e) : -1;
        ok(rc == NERR_INVALID && !strcmp(e.msg, refuse[i].err), "planner refuses: %s",
           refuse[i].err);
        if (rc != NERR_INVALID || strcmp(e.msg, refuse[i].err))
            diag("got rc %d: %s", rc, e.msg);
        if (!rc)
            pb_plan_free(p);
        p = NULL;
        playbook_free(pb);
    }
    /* ... and allows what quorum_safe: false asks for, and a healed leader
     * fault frees the world again. */
    pb = must("cluster: {deploy: ~}\ntraffic: {rate: 10}\nsteps:\n  - power_off: {names: [h1]}\n"
              "  - partition: {select: leader, quorum_safe: false}\n  - heal_partition: ~\n"
              "  - power_on: ~\n  - pause: {count: 1, duration: 1s}\n",
              inv);
    ok(pb && !playbook_plan(pb, inv, 1, &p, &e) && p->n == 5 && p->a[4].nhosts == 1,
       "quorum_safe: false allows it; after its heal random picks work again");
    if (!pb || !p)
        diag("%s", e.msg);
    pb_plan_free(p);
    p = NULL;
    playbook_free(pb);
}

int main(void)
{
    struct inventory *inv = inv6();
    test_good(inv);
    test_broken(inv);
    test_quorum(inv);
    test_mode(inv);
    test_shipped(inv);
    test_observe(inv);
    test_leader(inv);
    test_cli();
    inventory_free(inv);
    return done_testing();
}
