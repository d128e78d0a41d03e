/* fault/inventory: a good file with defaults and relative paths, every kind
 * of schema error by exact "FILE:LINE:COL: message", and the selection
 * helpers the game-day runner uses. */
#include "fault/inventory.h"
#include "t/tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *good =
    "inventory: lab1\n"
    "defaults: {user: nines, port: 2222, key: keys/id, known_hosts: /etc/kh}\n"
    "hosts:\n"
    "  - name: h1\n"
    "    address: 10.77.0.11\n"
    "    az: az1\n"
    "    rack: r1\n"
    "    data: /var/lib/nines/h1\n"
    "    power: {driver: lab, netns: nines-lab-h1, start: \"/usr/sbin/sshd -f {data}/sshd\"}\n"
    "  - name: h2\n"
    "    address: 10.77.0.12\n"
    "    port: 22\n"
    "    user: root\n"
    "    key: /abs/key\n"
    "    az: az2\n"
    "    rack: r1\n"
    "    data: rel/data\n"
    "    power:\n"
    "      driver: command\n"
    "      off: \"virsh destroy {name}\"\n"
    "      on: \"virsh start {name}\"\n"
    "      status: \"virsh domstate {name} # {{literal}}\"\n"
    "      timeout: 2500ms\n"
    "  - name: h3\n"
    "    address: vm3.example.com\n"
    "    az: az1\n"
    "    rack: r2\n"
    "    data: /d\n"
    "    power: {driver: qmp, socket: run/h3.qmp}\n"
    "  - name: h4\n"
    "    address: \"fd00::4\"\n"
    "    az: az3\n"
    "    rack: r2\n"
    "    data: /d\n"
    "    power: {driver: qmp, socket: /run/h4.qmp, start: \"qemu-system-x86_64 -name {name}\"}\n";

static struct inventory *load(const char *text, struct nerr *err)
{
    struct inventory *inv = NULL;
    nerr_clear(err);
    int rc = inventory_load_string("inv.yaml", text, strlen(text), "/base", &inv, err);
    if (rc && inv)
        diag("inventory handed out on error");
    return rc ? NULL : inv;
}

/* A one-host inventory with host_body lines appended under the host. */
static void fails_host(const char *host_body, const char *msg, const char *what)
{
    char text[4096];
    snprintf(text, sizeof text,
             "inventory: x\n"
             "hosts:\n"
             "  - name: h1\n"
             "    address: 10.0.0.1\n"
             "    az: a\n"
             "    rack: r\n"
             "    data: /d\n"
             "%s",
             host_body);
    struct nerr err;
    struct inventory *inv = load(text, &err);
    ok(inv == NULL, "%s: refused", what);
    is(err.msg, msg, "%s: message", what);
    inventory_free(inv);
}

static void fails(const char *text, const char *msg, const char *what)
{
    struct nerr err;
    struct inventory *inv = load(text, &err);
    ok(inv == NULL, "%s: refused", what);
    is(err.msg, msg, "%s: message", what);
    inventory_free(inv);
}

static void test_good(void)
{
    struct nerr err;
    struct inventory *inv = load(good, &err);
    ok(inv != NULL, "good inventory loads (%s)", err.msg);
    if (!inv)
        return;
    is(inv->name, "lab1", "name");
    is_int((long long)inv->n_hosts, 4, "4 hosts");
    const struct inv_host *h1 = inventory_host(inv, "h1"), *h2 = inventory_host(inv, "h2");
    const struct inv_host *h3 = inventory_host(inv, "h3"), *h4 = inventory_host(inv, "h4");
    ok(h1 && h2 && h3 && h4, "every host found by name");
    ok(inventory_host(inv, "h5") == NULL, "unknown host -> NULL");
    if (!(h1 && h2 && h3 && h4))
        goto out;
    is(h1->user, "nines", "h1 user from defaults");
    is_int(h1->port, 2222, "h1 port from defaults");
    is(h1->key, "/base/keys/id", "relative default key resolved against the file's dir");
    is(h1->known_hosts, "/etc/kh", "absolute known_hosts kept");
    is_int(h1->power.driver, INV_DRIVER_LAB, "h1 lab driver");
    is(h1->power.netns, "nines-lab-h1", "h1 netns");
    is(h1->power.start, "/usr/sbin/sshd -f {data}/sshd", "h1 start template kept as written");
    ok(h1->power.timeout_ns == INV_DEFAULT_TIMEOUT_NS, "default timeout 30s");
    is_int(h1->line, 4, "h1 position line");
    is(h2->user, "root", "h2 user overrides defaults");
    is_int(h2->port, 22, "h2 port overrides defaults");
    is(h2->key, "/abs/key", "h2 key");
    is(h2->known_hosts, "/etc/kh", "h2 known_hosts from defaults");
    is(h2->data, "rel/data", "data is a remote path: not resolved locally");
    is_int(h2->power.driver, INV_DRIVER_COMMAND, "h2 command driver");
    is(h2->power.off, "virsh destroy {name}", "h2 off");
    is(h2->power.status, "virsh domstate {name} # {{literal}}", "h2 status");
    ok(h2->power.timeout_ns == 2500000000ull, "h2 timeout 2.5s");
    is_int(h3->power.driver, INV_DRIVER_QMP, "h3 qmp");
    is(h3->power.socket, "/base/run/h3.qmp", "qmp socket resolved");
    ok(h3->power.start == NULL, "h3 no start");
    is(h3->address, "vm3.example.com", "DNS name address");
    is(h4->address, "fd00::4", "IPv6 address");
    is(h4->power.start, "qemu-system-x86_64 -name {name}", "h4 start");

    const struct inv_host *sel[8];
    size_t n = inventory_by_az(inv, "az1", sel, 8);
    ok(n == 2 && sel[0] == h1 && sel[1] == h3, "by az1: h1, h3 in file order");
    is_int((long long)inventory_by_az(inv, "az9", sel, 8), 0, "by unknown az: none");
    n = inventory_by_az(inv, "az1", sel, 1);
    ok(n == 2 && sel[0] == h1, "by az with cap 1: count 2, first written");
    n = inventory_by_rack(inv, NULL, "r1", sel, 8);
    ok(n == 2 && sel[0] == h1 && sel[1] == h2, "rack r1 in any az: h1, h2");
    n = inventory_by_rack(inv, "az1", "r2", sel, 8);
    ok(n == 1 && sel[0] == h3, "rack r2 in az1: h3 only");
    n = inventory_by_rack(inv, "az3", "r1", sel, 8);
    is_int((long long)n, 0, "rack r1 in az3: none");
    const char *azs[8];
    n = inventory_azs(inv, azs, 8);
    ok(n == 3 && strcmp(azs[0], "az1") == 0 && strcmp(azs[1], "az2") == 0 &&
           strcmp(azs[2], "az3") == 0,
       "distinct AZs in order of appearance");
    is_int((long long)inventory_azs(inv, NULL, 0), 3, "AZ count with cap 0");
    is(inventory_driver_name(h2->power.driver), "command", "driver name");
out:
    inventory_free(inv);
}

static void test_file(void)
{
    char dir[] = "/tmp/nines-inv-XXXXXX";
    ok(mkdtemp(dir) != NULL, "temp dir");
    char path[256];
    snprintf(path, sizeof path, "%s/lab.yaml", dir);
    FILE *f = fopen(path, "w");
    fputs(good, f);
    fclose(f);
    struct inventory *inv = NULL;
    struct nerr err;
    int rc = inventory_load(path, &inv, &err);
    is_int(rc, 0, "inventory_load from a file (%s)", rc ? err.msg : "ok");
    if (inv) {
        char want[300];
        snprintf(want, sizeof want, "%s/keys/id", dir);
        is(inventory_host(inv, "h1")->key, want, "relative key resolves against the file's dir");
        is(inv->path, path, "path kept");
    }
    inventory_free(inv);

    /* A relative file name: paths still come out absolute. */
    char cwd[256];
    ok(getcwd(cwd, sizeof cwd) != NULL, "getcwd");
    ok(chdir("/tmp") == 0, "chdir /tmp");
    inv = NULL;
    rc = inventory_load(path + 5, &inv, &err);
    is_int(rc, 0, "load by relative name");
    if (inv) {
        char want[300];
        snprintf(want, sizeof want, "%s/run/h3.qmp", dir);
        is(inventory_host(inv, "h3")->power.socket, want, "qmp socket absolute");
    }
    inventory_free(inv);
    ok(chdir(cwd) == 0, "chdir back");

    char missing[300];
    snprintf(missing, sizeof missing, "%s/none.yaml", dir);
    rc = inventory_load(missing, &inv, &err);
    is_int(rc, NERR_IO, "missing file -> NERR_IO");
    unlink(path);
    rmdir(dir);
}

static void test_errors(void)
{
    const char *lab = "    power: {driver: lab, netns: n1, start: s}\n";
    char body[1024];

    fails_host("    power: {driver: lab, netns: n1, start: s}\n    colour: red\n",
               "inv.yaml:9:5: unknown key 'colour'", "unknown host key");
    fails_host("    power: {driver: lab, netns: n1, strat: s}\n",
               "inv.yaml:8:37: unknown key 'strat', did you mean 'start'?", "unknown power key");
    fails("inventory: x\nhosts:\n  - {name: h1, address: 10.0.0.1, rack: r, data: /d, "
          "power: {driver: lab, netns: n, start: s}}\n",
          "inv.yaml:3:5: missing required key 'az'", "missing az");
    fails("hosts: []\n", "inv.yaml:1:1: missing required key 'inventory'", "missing inventory");
    fails("inventory: x\nhosts: []\n", "inv.yaml:2:8: an inventory needs at least one host",
          "no hosts");
    fails("inventory: x\nhosts: {a: 1}\n", "inv.yaml:2:8: expected a sequence, got a mapping",
          "hosts not a sequence");
    snprintf(body, sizeof body, "    port: http\n%s", lab);
    fails_host(body, "inv.yaml:8:11: expected an integer, got 'http'", "port wrong type");
    snprintf(body, sizeof body, "    port: 70000\n%s", lab);
    fails_host(body, "inv.yaml:8:11: 70000 is out of range (1..65535)", "port out of range");
    fails_host("    power: {driver: ipmi}\n",
               "inv.yaml:8:21: unknown power driver 'ipmi' (known: lab, command, qmp)",
               "unknown driver");
    fails_host("    power: {driver: command, off: \"virsh destroy {name} {host}\", on: x}\n",
               "inv.yaml:8:35: unknown placeholder '{host}' (known: {name}, {address}, {az}, "
               "{rack}, {data})",
               "unknown placeholder");
    fails_host("    power: {driver: command, off: x, on: \"echo {name\"}\n",
               "inv.yaml:8:42: unbalanced '{' at offset 5 of the template (write '{{' for a "
               "literal brace)",
               "unbalanced brace");
    fails_host("    power: {driver: command, on: x}\n", "inv.yaml:8:12: missing required key 'off'",
               "command without off");
    fails_host("    power: {driver: lab, netns: ../etc, start: s}\n",
               "inv.yaml:8:33: netns '../etc' may only hold letters, digits, '.', '_' and '-'",
               "netns with a slash");
    fails_host("    power: {driver: lab, netns: n1, start: s, timeout: 5}\n",
               "inv.yaml:8:56: expected a duration (500ms, 10s, 2m, 1h30m), got '5'",
               "timeout without unit");
    fails_host("    power: [lab]\n", "inv.yaml:8:12: expected a mapping, got a sequence",
               "power not a mapping");

    const char *two = "inventory: x\n"
                      "hosts:\n"
                      "  - {name: h1, address: 10.0.0.1, az: a, rack: r, data: /d,"
                      " power: {driver: lab, netns: n1, start: s}}\n"
                      "  - {name: %s, address: %s, az: a, rack: r, data: /d,"
                      " power: {driver: lab, netns: %s, start: s}}\n";
    char text[1024];
    snprintf(text, sizeof text, two, "h1", "10.0.0.2", "n2");
    fails(text, "inv.yaml:4:12: duplicate host name 'h1' (first at line 3)", "duplicate name");
    snprintf(text, sizeof text, two, "h2", "10.0.0.1", "n2");
    fails(text, "inv.yaml:4:25: duplicate address '10.0.0.1' (host 'h1' at line 3 has it)",
          "duplicate address");
    snprintf(text, sizeof text, two, "h2", "H1.example", "n2");
    {
        struct nerr err;
        struct inventory *inv = load(text, &err);
        ok(inv != NULL, "distinct DNS name loads");
        inventory_free(inv);
    }
    snprintf(text, sizeof text, two, "h2", "10.0.0.2", "n1");
    fails(text, "inv.yaml:4:89: duplicate netns 'n1' (host 'h1' at line 3 has it)",
          "duplicate netns");
    snprintf(text, sizeof text, two, "h2", "\"fd00::1\"", "n2");
    {
        char t2[1200];
        snprintf(t2, sizeof t2,
                 "%s  - {name: h3, address: \"fd00:0::1\", az: a, rack: r, "
                 "data: /d, power: {driver: lab, netns: n3, start: s}}\n",
                 text);
        fails(t2, "inv.yaml:5:25: duplicate address 'fd00:0::1' (host 'h2' at line 4 has it)",
              "same IPv6 address spelled differently");
    }
    snprintf(text, sizeof text, two, "h2", "bad_addr!", "n2");
    fails(text, "inv.yaml:4:25: address 'bad_addr!' is neither an IP address nor a DNS name",
          "bad address");
}

/* The lab's labfs keys: fs (resolved like other local paths) and fs_mode. */
static void test_fs(void)
{
    struct nerr err;
    struct inventory *inv =
        load("inventory: x\n"
             "hosts:\n"
             "  - {name: h1, address: 10.0.0.1, az: a, rack: r, data: /d,\n"
             "     power: {driver: lab, netns: n1, start: s, fs: /lab/hosts/h1/data/}}\n"
             "  - {name: h2, address: 10.0.0.2, az: a, rack: r, data: /d,\n"
             "     power: {driver: lab, netns: n2, start: s, fs: hosts/h2/data, fs_mode: torn}}\n"
             "  - {name: h3, address: 10.0.0.3, az: a, rack: r, data: /d,\n"
             "     power: {driver: lab, netns: n3, start: s}}\n",
             &err);
    ok(inv != NULL, "inventory with fs loads (%s)", err.msg);
    if (!inv)
        return;
    const struct inv_host *h1 = inventory_host(inv, "h1"), *h2 = inventory_host(inv, "h2"),
                          *h3 = inventory_host(inv, "h3");
    is(h1->power.fs, "/lab/hosts/h1/data", "fs kept absolute, trailing slash dropped");
    is_int(h1->power.fs_mode, INV_FS_CRASH, "fs_mode defaults to crash");
    is(h2->power.fs, "/base/hosts/h2/data", "relative fs resolved against the inventory's dir");
    is_int(h2->power.fs_mode, INV_FS_TORN, "fs_mode torn");
    ok(h3->power.fs == NULL, "no fs: NULL");
    inventory_free(inv);

    fails_host("    power: {driver: lab, netns: n1, start: s, fs_mode: torn}\n",
               "inv.yaml:8:56: fs_mode needs fs (the host's labfs mount point)",
               "fs_mode without fs");
    fails_host("    power: {driver: lab, netns: n1, start: s, fs: /x/d, fs_mode: ripped}\n",
               "inv.yaml:8:66: fs_mode must be crash or torn, got 'ripped'", "bad fs_mode");
    fails_host("    power: {driver: lab, netns: n1, start: s, fs: /data}\n",
               "inv.yaml:8:51: fs '/data' must be a directory below / without . or ..",
               "fs right under / (no room for backing beside it)");
    fails_host("    power: {driver: lab, netns: n1, start: s, fs: /a/../b}\n",
               "inv.yaml:8:51: fs '/a/../b' must be a directory below / without . or ..",
               "fs with ..");
    fails_host("    power: {driver: command, off: x, on: y, fs: /a/b}\n",
               "inv.yaml:8:45: unknown key 'fs', did you mean 'off'?", "fs on the command driver");
    fails("inventory: x\nhosts:\n"
          "  - {name: h1, address: 10.0.0.1, az: a, rack: r, data: /d,\n"
          "     power: {driver: lab, netns: n1, start: s, fs: /l/d}}\n"
          "  - {name: h2, address: 10.0.0.2, az: a, rack: r, data: /d,\n"
          "     power: {driver: lab, netns: n2, start: s, fs: /l/d}}\n",
          "inv.yaml:6:52: duplicate fs '/l/d' (host 'h1' at line 3 has it)", "duplicate fs");
}

static void test_syntax(void)
{
    struct nerr err;
    struct inventory *inv = load("inventory: x\nhosts:\n  - name: h1\n    address: [\n", &err);
    ok(inv == NULL && err.code == NERR_PARSE, "YAML syntax error -> NERR_PARSE");
    ok(strncmp(err.msg, "inv.yaml:", 9) == 0, "syntax error names the file: %s", err.msg);
}

int main(void)
{
    test_good();
    test_file();
    test_errors();
    test_fs();
    test_syntax();
    return done_testing();
}
