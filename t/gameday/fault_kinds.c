/*
 * fault_kinds.c — the fault interface (fault/fault.h) as the runner sees
 * it: the registry's step names, and the power kind driven only through its
 * struct fault_kind (parse with line:col errors, check, describe, label,
 * open, inject, heal, heal_all, close). The hosts use the command driver
 * with templates that only append to a log file in a temporary directory:
 * nothing is powered.
 */
#include "fault/fault.h"
#include "fault/power.h"
#include "t/tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char logpath[256];

struct errs {
    char msg[8][NERR_MSG_MAX];
    int n;
};

static void push(void *arg, const struct nerr *e)
{
    struct errs *x = arg;
    if (x->n < 8)
        snprintf(x->msg[x->n++], sizeof x->msg[0], "%s", e->msg);
}

struct seen {
    char hosts[256];
    char notes[1024];
};

static void note_cb(void *arg, const char *msg)
{
    struct seen *s = arg;
    size_t l = strlen(s->notes);
    snprintf(s->notes + l, sizeof s->notes - l, "%s;", msg);
}

static void changed_cb(void *arg, const struct inv_host *h)
{
    struct seen *s = arg;
    size_t l = strlen(s->hosts);
    snprintf(s->hosts + l, sizeof s->hosts - l, "%s,", h->name);
}

static char *slurp(const char *path)
{
    static char buf[4096];
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    return buf;
}

static void test_registry(void)
{
    int heal = -1;
    ok(fault_kind_for_step("power_off", &heal) == &fault_power && heal == 0,
       "power_off is the power kind's inject step");
    ok(fault_kind_for_step("power_on", &heal) == &fault_power && heal == 1,
       "power_on is its heal step");
    ok(fault_kind_for_step("sleep", &heal) == NULL, "sleep is no fault");
    ok(fault_kind_id(&fault_power) >= 1 && fault_kind_id(&fault_power) <= fault_kind_count(),
       "the power kind has an id in the registry");
    static const char *const extra[] = {"wait_healthy", "sleep", "repeat", NULL};
    const char *keys[64];
    size_t n = fault_step_keys(keys, 64, extra);
    char all[1024] = "", want[1024] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(all + strlen(all), sizeof all - strlen(all), "%s%s", i ? "," : "", keys[i]);
    /* Every kind's inject step and then its heal step, in registry order
     * (power first), then the runner's own. */
    for (size_t i = 0; fault_kinds[i]; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s%s%s", i ? "," : "",
                 fault_kinds[i]->inject_step, fault_kinds[i]->heal_step ? "," : "",
                 fault_kinds[i]->heal_step ? fault_kinds[i]->heal_step : "");
    strcat(want, ",wait_healthy,sleep,repeat");
    is(all, want, "step keys: kinds, then the runner's");
    ok(!strncmp(all, "power_off,power_on,", 19), "power first");
    ok(fault_kind_count() >= 2, "more than one kind registered");
    ok(keys[n] == NULL, "NULL-terminated");
    n = fault_step_keys(keys, 2, extra);
    ok(n == 1 && keys[1] == NULL, "bounded by cap");
}

static void test_parse(void)
{
    struct errs x = {0};
    struct fault_errs fe = {push, &x};
    struct yt_doc *doc = NULL;
    struct nerr e = {0};
    const char *text = "a: {mode: torn}\nb: {mode: melt}\nc: {}\n";
    if (yt_load_string("k.yaml", text, strlen(text), &doc, &e))
        bail_out(e.msg);
    const struct yt_node *root = yt_root(doc);
    void *pa = NULL, *pb = NULL, *pc = NULL;
    is_int(fault_power.parse(&fe, yt_map_get(root, "a"), &pa), 0, "parse mode: torn");
    is_int(power_fault_mode(pa), POWER_OFF_TORN, "params say torn");
    is_int(x.n, 0, "no error");
    is_int(fault_power.parse(&fe, yt_map_get(root, "b"), &pb), 0, "a bad mode is no call error");
    is_int(x.n, 1, "but one collected error");
    is(x.msg[0], "k.yaml:2:11: mode must be crash, torn or kill, got 'melt'", "at its line:col");
    fault_power.parse(&fe, yt_map_get(root, "c"), &pc);
    is_int(power_fault_mode(pc), POWER_OFF_DEFAULT, "no mode: default");
    char d[64];
    fault_power.describe(pa, d, sizeof d);
    is(d, " (mode torn)", "describe names the mode");
    fault_power.describe(pc, d, sizeof d);
    is(d, "", "and nothing for the default");
    fault_power.free_params(pa);
    fault_power.free_params(pb);
    fault_power.free_params(pc);
    yt_free(doc);
}

static void test_check_label(void)
{
    const char *text = "inventory: l\n"
                       "hosts:\n"
                       "  - {name: h1, address: 10.9.0.2, az: a1, rack: r1, data: /d,"
                       " power: {driver: lab, netns: n1, start: 'true', fs: /lab/h1/data}}\n"
                       "  - {name: h2, address: 10.9.0.3, az: a2, rack: r1, data: /d,"
                       " power: {driver: lab, netns: n2, start: 'true'}}\n"
                       "  - {name: h3, address: 10.9.0.4, az: a3, rack: r1, data: /d,"
                       " power: {driver: command, off: 'true', on: 'true'}}\n";
    struct inventory *inv = NULL;
    struct nerr e = {0};
    if (inventory_load_string("l.yaml", text, strlen(text), "/", &inv, &e))
        bail_out(e.msg);
    struct errs x = {0};
    struct fault_errs fe = {push, &x};
    struct yt_doc *doc = NULL;
    const char *pt = "crash: {mode: crash}\n";
    if (yt_load_string("k.yaml", pt, strlen(pt), &doc, &e))
        bail_out(e.msg);
    void *crash = NULL;
    fault_power.parse(&fe, yt_map_get(yt_root(doc), "crash"), &crash);
    size_t h1 = 0, h2 = 1, h3 = 2;
    struct fault_call c1 = {&h1, 1, crash}, c2 = {&h2, 1, crash}, c3 = {&h3, 1, crash};
    nerr_clear(&e);
    is_int(fault_power.check(inv, &c1, &e), 0, "crash on a labfs host: fine");
    is_int(fault_power.check(inv, &c2, &e), NERR_INVALID, "crash on a lab host without labfs");
    is(e.msg,
       "mode crash: lab host h2 has no labfs (`fs`), so its power-off would not lose "
       "unsynced writes",
       "refused, naming the host");
    is_int(fault_power.check(inv, &c3, &e), 0, "crash on a command host: real power, fine");
    is(fault_power.label(&inv->hosts[0], NULL), "crash", "label: labfs host by default: crash");
    is(fault_power.label(&inv->hosts[1], NULL), "kill", "lab host without labfs: kill");
    is(fault_power.label(&inv->hosts[2], crash), "power", "command driver: power");
    fault_power.free_params(crash);
    yt_free(doc);
    inventory_free(inv);
}

static void test_inject_heal(void)
{
    char dir[] = "/tmp/fault-kinds-XXXXXX", text[2048];
    if (!mkdtemp(dir))
        bail_out("mkdtemp");
    snprintf(logpath, sizeof logpath, "%s/log", dir);
    snprintf(text, sizeof text,
             "inventory: c\n"
             "hosts:\n"
             "  - {name: h1, address: 10.9.0.2, az: a1, rack: r1, data: /d, power: {driver: "
             "command, off: 'echo off {name} >> %s', on: 'echo on {name} >> %s', status: 'echo "
             "off'}}\n"
             "  - {name: h2, address: 10.9.0.3, az: a2, rack: r1, data: /d, power: {driver: "
             "command, off: 'echo off {name} >> %s', on: 'echo on {name} >> %s', status: 'echo "
             "running'}}\n",
             logpath, logpath, logpath, logpath);
    struct inventory *inv = NULL;
    struct nerr e = {0};
    if (inventory_load_string("c.yaml", text, strlen(text), "/", &inv, &e))
        bail_out(e.msg);
    struct seen seen = {{0}, {0}};
    struct fault_env env = {.inv = inv, .note = note_cb, .host_changed = changed_cb, .arg = &seen};
    void *st = NULL;
    is_int(fault_power.open(&env, &st, &e), 0, "open");
    size_t both[] = {0, 1};
    struct fault_call c = {both, 2, NULL};
    is_int(fault_power.inject(st, &env, &c, &e), 0, "inject: both hosts off (%s)", e.msg);
    is(slurp(logpath), "off h1\noff h2\n", "each off command ran once, in order");
    is(seen.hosts, "h1,h2,", "host_changed for each");
    is_int(fault_power.heal(st, &env, &c, &e), 0, "heal: both on");
    is(slurp(logpath), "off h1\noff h2\non h1\non h2\n", "each on command ran once");
    seen.hosts[0] = 0;
    fault_power.heal_all(st, &env);
    is(slurp(logpath), "off h1\noff h2\non h1\non h2\non h1\n",
       "heal_all: only the host whose status says off is powered on");
    is(seen.notes, "powering h1 back on;", "and says so");
    is(seen.hosts, "h1,", "host_changed for it");
    fault_power.close(st);
    inventory_free(inv);
    unlink(logpath);
    rmdir(dir);
}

int main(void)
{
    test_registry();
    test_parse();
    test_check_label();
    test_inject_heal();
    return done_testing();
}
