/* The disk_full and bit_rot fault kinds as the playbook, the planner and the
 * runner see them, without touching a host: their steps in the registry,
 * their keys parsed with every error at FILE:LINE:COL, plan text, the
 * planner's refusals (a lab host without labfs for disk_full, the quorum
 * rule across kinds), report labels, and the refusal of this machine by
 * inject and heal_all (hosts at 127.0.0.1 are refused before any SSH). */
#include "fault/bit_rot.h"
#include "fault/fault.h"
#include "fault/inventory.h"
#include "gameday/gameday.h"
#include "gameday/playbook.h"
#include "t/gameday/pb_test.h"
#include "t/tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const struct fault_kind fault_disk_full;

/* h1: lab with labfs (az1); h2: lab without labfs (az2); h3, h4: real
 * machines driven by commands (az3, az1). Nothing is run. */
static const char *inv_text =
    "inventory: mixed\n"
    "hosts:\n"
    "  - {name: h1, address: 10.9.1.2, az: az1, rack: r1, data: /l/h1/data,\n"
    "     power: {driver: lab, netns: n1, start: s, fs: /nonexistent-nines-test/h1/data}}\n"
    "  - {name: h2, address: 10.9.1.3, az: az2, rack: r1, data: /l/h2/data,\n"
    "     power: {driver: lab, netns: n2, start: s}}\n"
    "  - {name: h3, address: 10.9.1.4, az: az3, rack: r1, data: /var/lib/nines,\n"
    "     power: {driver: command, off: 'echo {name}', on: 'echo {name}'}}\n"
    "  - {name: h4, address: 10.9.1.5, az: az1, rack: r2, data: /var/lib/nines,\n"
    "     power: {driver: command, off: 'echo {name}', on: 'echo {name}'}}\n";

static struct inventory *load_inv(const char *text)
{
    return pbt_inventory(text);
}



static void show_errs(const struct pb_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        diag("  %s", errs->msg[i]);
}

static char *plan_text(const struct playbook *pb, const struct inventory *inv, uint64_t seed,
                       struct nerr *e)
{
    return plan_string(pb, inv, seed, NULL, e);
}

static void test_registry(void)
{
    int heal = -1;
    ok(fault_kind_for_step("disk_full", &heal) == &fault_disk_full && heal == 0,
       "disk_full is the disk_full kind's inject step");
    heal = -1;
    ok(fault_kind_for_step("free_disk", &heal) == &fault_disk_full && heal == 1,
       "free_disk is its heal step");
    heal = -1;
    ok(fault_kind_for_step("bit_rot", &heal) == &fault_bit_rot && heal == 0,
       "bit_rot is the bit_rot kind's inject step");
    ok(fault_bit_rot.heal_step == NULL, "bit_rot has no heal step");
    ok(fault_kind_id(&fault_disk_full) && fault_kind_id(&fault_bit_rot) &&
           fault_kind_id(&fault_disk_full) != fault_kind_id(&fault_bit_rot),
       "both are registered, with ids of their own");
}

static void test_good(const struct inventory *inv)
{
    const char *text = "cluster: {deploy: ~}\n"
                       "steps:\n"
                       "  - disk_full: {names: [h1], duration: 2s}\n"
                       "  - disk_full: {names: [h4]}\n"
                       "  - free_disk: {}\n"
                       "  - bit_rot: {names: [h4], items: 3, table: gameday}\n"
                       "  - bit_rot: {names: [h1], boot_script: '{data}/../boot.d/{name}'}\n"
                       "verify: {scrub: deep}\n";
    struct pb_errors errs;
    struct nerr e;
    struct playbook *pb = load(text, inv, &errs, &e);
    if (!ok(pb && errs.n == 0, "a playbook with disk_full, free_disk and bit_rot loads"))
        show_errs(&errs);
    pb_errors_free(&errs);
    if (!pb)
        return;
    char *t = plan_text(pb, inv, 1, &e);
    ok(t != NULL, "and plans (%s)", t ? "ok" : e.msg);
    if (t) {
        ok(strstr(t, "disk_full") && strstr(t, "h1(az1/r1) for 2s"),
           "disk_full h1 for 2s in the plan");
        ok(strstr(t, "h4(az1/r2) until free_disk"), "disk_full h4 held until free_disk");
        ok(strstr(t, "free_disk") && strstr(t, "node h4(az1/r2)  [timeout"),
           "free_disk {} frees the host held (h4)");
        ok(strstr(t, "h4(az1/r2) until repaired (3 items of table gameday)"),
           "bit_rot h4: until repaired, its items and table");
        ok(strstr(t, "h1(az1/r1) until repaired (1 item)"), "bit_rot h1: 1 item by default");
        ok(strstr(t, "[timeout 1m32s") || strstr(t, "[timeout 92s"),
           "disk_full's default timeout: the duration + 90 s");
        if (!ok(strstr(t, "[timeout 180s"), "bit_rot's default timeout: 180 s"))
            diag("%s", t);
    }
    free(t);
    playbook_free(pb);
}

static void test_broken(const struct inventory *inv)
{
    const char *text = "cluster: {deploy: ~}\n"
                       "steps:\n"
                       "  - bit_rot: {names: [h3], items: 0}\n"
                       "  - bit_rot: {names: [h3], items: '3'}\n"
                       "  - bit_rot: {names: [h3], table: 'a/b'}\n"
                       "  - bit_rot: {names: [h3], duration: 5s}\n"
                       "  - bit_rot: {names: [h3], itemz: 2}\n"
                       "  - bit_rot: {names: [h3], boot_script: '{oops}/boot'}\n"
                       "  - disk_full: {names: [h3], items: 2}\n"
                       "  - free_disk: {names: [h3], duration: 1s}\n"
                       "  - bit_rot: {names: [h3], items: 101}\n"
                       "verify: {scrub: deep}\n";
    struct pb_errors errs;
    struct nerr e;
    struct playbook *pb = load(text, inv, &errs, &e);
    ok(!pb, "a broken playbook is refused");
    static const char *const want[] = {
        "pb.yaml:3:35: 0 is out of range (1..100)",
        "pb.yaml:4:35: expected an integer, got the string \"3\"",
        "pb.yaml:5:35: table must be a table name (3 to 255 of A-Z a-z 0-9 _ . -), got 'a/b'",
        "pb.yaml:6:28: bit_rot takes no duration: it is over when the node runs again, and only "
        "a repair undoes it",
        "pb.yaml:7:28: unknown key 'itemz', did you mean 'items'?",
        "pb.yaml:8:41: boot_script must be a path; {data} and {name} are its only placeholders, "
        "got '{oops}/boot'",
        "pb.yaml:9:30: unknown key 'items'",
        "pb.yaml:10:30: unknown key 'duration'",
        "pb.yaml:11:35: 101 is out of range (1..100)",
    };
    int all = 1;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        all &= ok(has_err(&errs, want[i]), "error reported: %s", want[i]);
    if (!all)
        show_errs(&errs);
    is_int(errs.n, sizeof want / sizeof want[0], "every error collected, nothing else");
    pb_errors_free(&errs);
    playbook_free(pb);
}

static void test_planner(const struct inventory *inv)
{
    struct pb_errors errs;
    struct nerr e;
    /* disk_full on a lab host without labfs: its data dir is this machine's. */
    const char *text = "cluster: {deploy: ~}\nsteps:\n  - disk_full: {names: [h2], duration: 1s}\n";
    struct playbook *pb = load(text, inv, &errs, &e);
    ok(pb != NULL, "disk_full on h2 loads");
    pb_errors_free(&errs);
    char *t = pb ? plan_text(pb, inv, 1, &e) : NULL;
    ok(!t && e.code == NERR_INVALID, "but is refused by the planner");
    is(e.msg,
       "pb.yaml:3:5: disk_full: host 'h2' is a lab host without labfs: its data directory is on "
       "this machine, whose disk a ballast would fill (use a lab with labfs)",
       "at the step, naming the host and why");
    free(t);
    playbook_free(pb);

    /* A playbook that rots data must end with a deep scrub. */
    text = "cluster: {deploy: ~}\nsteps:\n  - bit_rot: {names: [h3]}\nverify: {scrub: true}\n";
    pb = load(text, inv, &errs, &e);
    ok(!pb && !strcmp(e.msg, "pb.yaml:3:5: bit_rot changes data at rest: only a deep scrub "
                             "finds it; add verify: {scrub: deep}"),
       "bit_rot without a deep scrub is refused at its step (%s)", e.msg);
    pb_errors_free(&errs);
    playbook_free(pb);
    /* The quorum rule across kinds: h1 (az1) held full, then bit_rot in az3. */
    text = "cluster: {deploy: ~}\nsteps:\n"
           "  - disk_full: {names: [h1]}\n"
           "  - bit_rot: {names: [h3]}\n"
           "verify: {scrub: deep}\n";
    pb = load(text, inv, &errs, &e);
    pb_errors_free(&errs);
    t = pb ? plan_text(pb, inv, 1, &e) : NULL;
    ok(pb && !t && e.code == NERR_INVALID && !strncmp(e.msg, "pb.yaml:4:5: ", 13),
       "bit_rot in az3 while disk_full holds az1 is refused at its step (%s)", e.msg);
    free(t);
    playbook_free(pb);
    /* The same with quorum_safe: false is planned. */
    text = "cluster: {deploy: ~}\nsteps:\n"
           "  - disk_full: {names: [h1]}\n"
           "  - bit_rot: {names: [h3], quorum_safe: false}\n"
           "  - free_disk: {names: [h1]}\n"
           "verify: {scrub: deep}\n";
    pb = load(text, inv, &errs, &e);
    pb_errors_free(&errs);
    t = pb ? plan_text(pb, inv, 1, &e) : NULL;
    ok(t != NULL, "with quorum_safe: false it is planned (%s)", t ? "ok" : e.msg);
    free(t);
    playbook_free(pb);
    /* free_disk of a host disk_full does not hold. */
    text = "cluster: {deploy: ~}\nsteps:\n  - free_disk: {names: [h3]}\n";
    pb = load(text, inv, &errs, &e);
    pb_errors_free(&errs);
    t = pb ? plan_text(pb, inv, 1, &e) : NULL;
    ok(pb && !t && e.code == NERR_INVALID && !strncmp(e.msg, "pb.yaml:3:5: ", 13),
       "free_disk of a host that is not full is refused (%s)", e.msg);
    free(t);
    playbook_free(pb);
}

struct seen {
    char notes[2048];
    int changed;
};

static void note_cb(void *arg, const char *msg)
{
    struct seen *s = arg;
    size_t l = strlen(s->notes);
    snprintf(s->notes + l, sizeof s->notes - l, "%s;", msg);
}

static void changed_cb(void *arg, const struct inv_host *h)
{
    ((struct seen *)arg)->changed++;
}

/* The kinds through their struct fault_kind, against this machine: every
 * action is refused before anything is touched, and heal_all with nothing
 * injected does nothing. */
static void test_kinds_refuse_local(const struct inventory *mixed)
{
    static const char *local =
        "inventory: local\nhosts:\n"
        "  - {name: l1, address: 127.0.0.1, az: az1, rack: r1, data: /tmp/nines-never,\n"
        "     power: {driver: command, off: 'true', on: 'true'}}\n"
        "  - {name: l2, address: localhost, az: az2, rack: r1, data: /tmp/nines-never,\n"
        "     power: {driver: command, off: 'true', on: 'true'}}\n";
    struct inventory *inv = load_inv(local);
    struct seen seen = {{0}, 0};
    struct fault_env env = {.inv = inv, .note = note_cb, .host_changed = changed_cb, .arg = &seen};
    size_t h0[] = {0}, h1[] = {1};
    struct fault_call c0 = {.hosts = h0, .nhosts = 1}, c1 = {.hosts = h1, .nhosts = 1};
    struct nerr e = {0};

    void *st = NULL;
    ok(!fault_disk_full.open(&env, &st, &e), "disk_full: open");
    is_int(fault_disk_full.inject(st, &env, &c0, &e), NERR_INVALID,
           "disk_full on 127.0.0.1: refused");
    is(e.msg, "refusing to fill the disk of host 'l1': 127.0.0.1 is a loopback address",
       "... naming the host and why");
    nerr_clear(&e);
    is_int(fault_disk_full.inject(st, &env, &c1, &e), NERR_INVALID,
           "disk_full on localhost: refused");
    ok(strstr(e.msg, "refusing to fill the disk of host 'l2'") != NULL, "... (%s)", e.msg);
    nerr_clear(&e);
    is_int(fault_disk_full.heal(st, &env, &c0, &e), NERR_INVALID,
           "free_disk on 127.0.0.1: refused");
    fault_disk_full.heal_all(st, &env);
    is(seen.notes, "", "disk_full heal_all with nothing injected: nothing done, nothing noted");
    fault_disk_full.close(st);

    st = NULL;
    nerr_clear(&e);
    ok(!fault_bit_rot.open(&env, &st, &e), "bit_rot: open");
    is_int(bit_rot_corrupted(st, NULL), 0, "nothing corrupted yet");
    int rc = fault_bit_rot.inject(st, &env, &c0, &e);
    if (rc == NERR_NOTFOUND) {
        skip(1, "ninesd-bitrot not built next to this test");
    } else {
        is_int(rc, NERR_INVALID, "bit_rot on 127.0.0.1: refused");
        is(e.msg, "refusing to corrupt the data of host 'l1': 127.0.0.1 is a loopback address",
           "... naming the host and why");
    }
    fault_bit_rot.heal_all(st, &env);
    is(seen.notes, "", "bit_rot heal_all with nothing injected: nothing done");
    is_int(seen.changed, 0, "no host was changed");
    is_int(bit_rot_corrupted(st, NULL), 0, "still nothing corrupted");
    fault_bit_rot.close(st);
    is_int(bit_rot_corrupted(NULL, NULL), 0, "bit_rot_corrupted(NULL) is 0");
    inventory_free(inv);

    /* describe, label, check on the mixed inventory. */
    char buf[128];
    fault_disk_full.describe(NULL, buf, sizeof buf);
    is(buf, "", "disk_full describes nothing more");
    is(fault_disk_full.label(&mixed->hosts[0], NULL), "labfs", "label on a labfs host: labfs");
    is(fault_disk_full.label(&mixed->hosts[2], NULL), "ballast", "label on a real host: ballast");
    is(fault_bit_rot.label(&mixed->hosts[2], NULL), "rot", "bit_rot's label: rot");
    fault_bit_rot.describe(NULL, buf, sizeof buf);
    is(buf, " (1 item)", "bit_rot describes its default");
    size_t hh[] = {0, 2};
    struct fault_call ch = {.hosts = hh, .nhosts = 2};
    nerr_clear(&e);
    is_int(fault_disk_full.check(mixed, &ch, &e), 0, "check: labfs host + real host are fine");
    size_t hb[] = {1};
    struct fault_call cb = {.hosts = hb, .nhosts = 1};
    is_int(fault_disk_full.check(mixed, &cb, &e), NERR_INVALID,
           "check: lab host without labfs refused");

    /* heal_all on the lab hosts with nothing injected: h1's labfs is not
     * mounted (nothing to turn off), h2 has no labfs (nothing could be
     * there). No network: real hosts are left out of this test. */
    static const char *labonly =
        "inventory: labonly\nhosts:\n"
        "  - {name: h1, address: 10.9.1.2, az: az1, rack: r1, data: /l/h1/data,\n"
        "     power: {driver: lab, netns: n1, start: s, fs: /nonexistent-nines-test/h1/data}}\n"
        "  - {name: h2, address: 10.9.1.3, az: az2, rack: r1, data: /l/h2/data,\n"
        "     power: {driver: lab, netns: n2, start: s}}\n";
    inv = load_inv(labonly);
    seen.notes[0] = 0;
    env.inv = inv;
    st = NULL;
    ok(!fault_disk_full.open(&env, &st, &e), "disk_full: open on lab hosts");
    fault_disk_full.heal_all(st, &env);
    is(seen.notes, "", "heal_all with nothing injected notes nothing");
    fault_disk_full.close(st);
    inventory_free(inv);
}

int main(void)
{
    struct inventory *inv = load_inv(inv_text);
    test_registry();
    test_good(inv);
    test_broken(inv);
    test_planner(inv);
    test_kinds_refuse_local(inv);
    inventory_free(inv);
    return done_testing();
}
