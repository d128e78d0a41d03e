/* lab_units.c — the pure parts of lab/lab: spec checks, subnet parsing
 * and allocation, placement over AZs and racks, names, and the state file
 * parser that guards what `lab down` may delete. The machine parts are
 * exercised by t/lab/lab.t. */
#include "lab/lab.h"
#include "t/tap.h"

static uint32_t ip4(unsigned a, unsigned b, unsigned c, unsigned d)
{
    return (a << 24) | (b << 16) | (c << 8) | d;
}

static void test_spec(void)
{
    struct nerr e;
    struct lab_spec s = {.dir = "/tmp/x", .hosts = 6, .azs = 3, .racks = 2};
    is_int(lab_spec_check(&s, &e), 0, "6 hosts, 3 AZs, 2 racks is fine");
    s.racks = 0;
    is_int(lab_spec_check(&s, &e), 0, "racks 0 means 1");
    s.hosts = 0;
    is_int(lab_spec_check(&s, &e), NERR_INVALID, "0 hosts refused");
    ok(strstr(e.msg, "--hosts must be 1..250") != NULL, "message names the range: %s", e.msg);
    s.hosts = 251;
    is_int(lab_spec_check(&s, &e), NERR_INVALID, "251 hosts refused");
    s.hosts = 250;
    is_int(lab_spec_check(&s, &e), 0, "250 hosts accepted");
    s.hosts = 2;
    is_int(lab_spec_check(&s, &e), NERR_INVALID, "more AZs than hosts refused");
    ok(strstr(e.msg, "--azs 3 is more than --hosts 2") != NULL, "says why: %s", e.msg);
    s.hosts = 7;
    s.racks = 3;
    is_int(lab_spec_check(&s, &e), NERR_INVALID, "7 hosts/3 AZs cannot fill 3 racks in every AZ");
    s.racks = 2;
    is_int(lab_spec_check(&s, &e), 0, "7 hosts/3 AZs fill 2 racks in every AZ");
    s.azs = 0;
    is_int(lab_spec_check(&s, &e), NERR_INVALID, "0 AZs refused");
    s.azs = 3;
    s.dir = NULL;
    is_int(lab_spec_check(&s, &e), NERR_INVALID, "no dir refused");
}

static void test_subnet_parse(void)
{
    struct nerr e;
    uint32_t net = 0;
    char buf[32];
    is_int(lab_subnet_parse("10.77.5.0/24", &net, &e), 0, "10.77.5.0/24 parses");
    is_int(net, ip4(10, 77, 5, 0), "to the right network");
    lab_addr_format(net, 24, buf, sizeof buf);
    is(buf, "10.77.5.0/24", "formats back");
    lab_addr_format(lab_host_addr(net, 0), 0, buf, sizeof buf);
    is(buf, "10.77.5.2", "host 1 is .2 (the gateway is .1)");
    lab_addr_format(lab_host_addr(net, LAB_MAX_HOSTS - 1), 0, buf, sizeof buf);
    is(buf, "10.77.5.251", "host 250 is .251, inside the /24");
    is_int(lab_subnet_parse("172.16.9.0/24", &net, &e), 0, "172.16/12 is private");
    is_int(lab_subnet_parse("172.31.255.0/24", &net, &e), 0, "172.31 is still private");
    is_int(lab_subnet_parse("192.168.3.0/24", &net, &e), 0, "192.168/16 is private");
    static const char *const bad[] = {"172.32.0.0/24", "8.8.8.0/24",   "192.0.2.0/24",
                                      "10.1.2.0/16",   "10.1.2.5/24",  "10.1.2.0",
                                      "10.1.256.0/24", "10.1.2.0/24x", "",
                                      "a.b.c.d/24"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        is_int(lab_subnet_parse(bad[i], &net, &e), NERR_INVALID, "'%s' refused: %s", bad[i], e.msg);
    is_int(lab_subnet_parse(NULL, &net, &e), NERR_INVALID, "NULL refused");
}

static void test_overlap_pick(void)
{
    struct nerr e;
    size_t which = 99;
    struct lab_net used[] = {
        {ip4(192, 0, 2, 0), 0xffffff00u}, /* eth0 */
        {ip4(127, 0, 0, 0), 0xff000000u}, /* lo */
        {ip4(10, 1, 0, 0), 0xffff0000u},  /* a /16 route */
        {ip4(10, 2, 3, 4), 0xffffffffu},  /* a /32 */
    };
    size_t n = sizeof used / sizeof used[0];
    ok(!lab_subnet_overlaps(ip4(10, 3, 0, 0), used, n, NULL), "10.3.0.0/24 is free");
    ok(lab_subnet_overlaps(ip4(10, 1, 200, 0), used, n, &which), "inside a /16 overlaps");
    is_int(which, 2, "and names the /16");
    ok(lab_subnet_overlaps(ip4(10, 2, 3, 0), used, n, &which), "a /24 holding a /32 overlaps");
    is_int(which, 3, "and names the /32");
    ok(!lab_subnet_overlaps(ip4(10, 2, 4, 0), used, n, NULL), "the next /24 does not");
    struct lab_net all10 = {ip4(10, 0, 0, 0), 0xff000000u};
    ok(lab_subnet_overlaps(ip4(10, 200, 1, 0), &all10, 1, NULL), "a 10/8 route covers all");

    uint32_t net = 0;
    is_int(lab_subnet_pick(used, n, 0x0305, &net, &e), 0, "pick with a seed");
    is_int(net, ip4(10, 3, 5, 0), "starts at 10.(seed>>8).(seed&255)");
    is_int(lab_subnet_pick(used, n, 0x0100, &net, &e), 0, "pick inside a used /16");
    is_int(net, ip4(10, 2, 0, 0), "skips all 256 /24s of 10.1/16");
    is_int(lab_subnet_pick(used, n, 0x0203, &net, &e), 0, "pick on the /32");
    is_int(net, ip4(10, 2, 4, 0), "skips the /24 holding the /32");
    struct lab_net top = {ip4(10, 255, 255, 0), 0xffffff00u};
    is_int(lab_subnet_pick(&top, 1, 0xffff, &net, &e), 0, "pick at the very end");
    is_int(net, ip4(10, 0, 0, 0), "wraps to 10.0.0.0");
    is_int(lab_subnet_pick(&all10, 1, 7, &net, &e), NERR_EXISTS, "nothing free in 10/8");
}

static void test_placement(void)
{
    /* 6 hosts, 3 AZs, 2 racks: every (AZ, rack) pair holds exactly one host. */
    int count[4][3] = {{0}};
    for (int i = 0; i < 6; i++) {
        int az, rack;
        lab_placement(i, 3, 2, &az, &rack);
        ok(az >= 1 && az <= 3 && rack >= 1 && rack <= 2, "host %d in az%d r%d", i + 1, az, rack);
        count[az][rack]++;
    }
    int all_one = 1;
    for (int a = 1; a <= 3; a++)
        for (int r = 1; r <= 2; r++)
            all_one &= count[a][r] == 1;
    ok(all_one, "6 hosts spread one per (AZ, rack)");
    int az, rack;
    lab_placement(0, 3, 2, &az, &rack);
    ok(az == 1 && rack == 1, "h1 in az1/r1");
    lab_placement(1, 3, 2, &az, &rack);
    ok(az == 2 && rack == 1, "h2 in az2/r1 (round robin over AZs first)");
    lab_placement(3, 3, 2, &az, &rack);
    ok(az == 1 && rack == 2, "h4 in az1/r2");
    lab_placement(6, 3, 2, &az, &rack);
    ok(az == 1 && rack == 1, "h7 wraps to az1/r1");
    lab_placement(4, 1, 0, &az, &rack);
    ok(az == 1 && rack == 1, "racks 0 means one rack");
}

static void test_names(void)
{
    struct lab_names nm;
    char br[16];
    is_int(lab_names_for("0a1b2c", 0, &nm), 0, "names for host 1");
    is(nm.host, "h1", "host name");
    is(nm.netns, "nlab-0a1b2c-h1", "netns name");
    is(nm.veth, "nl0a1b2cv1", "veth name");
    is(nm.peer, "nl0a1b2cp1", "peer name");
    is_int(lab_names_for("0a1b2c", LAB_MAX_HOSTS - 1, &nm), 0, "names for host 250");
    is(nm.veth, "nl0a1b2cv250", "veth of host 250");
    cmp_ok(strlen(nm.veth), "<=", 15, "fits IFNAMSIZ");
    cmp_ok(strlen(nm.peer), "<=", 15, "peer fits IFNAMSIZ");
    lab_bridge_name("0a1b2c", br);
    is(br, "nl0a1b2cbr", "bridge name");
    is_int(lab_names_for("0a1b2", 0, &nm), NERR_INVALID, "short id refused");
    is_int(lab_names_for("0a1b2c", LAB_MAX_HOSTS, &nm), NERR_INVALID, "host 251 refused");
}

static void test_state(void)
{
    struct nerr e;
    struct lab_state st;
    const char *good = "nines-lab 1\n"
                       "id 0a1b2c\n"
                       "made-dir 1\n"
                       "subnet 10.9.8.0/24\n"
                       "+path keys\n"
                       "+bridge nl0a1b2cbr\n"
                       "+netns nlab-0a1b2c-h1 10.9.8.2\n"
                       "+veth nl0a1b2cv1\n"
                       "+netns nlab-0a1b2c-h2 10.9.8.3\n"
                       "-netns nlab-0a1b2c-h2\n"
                       "+veth nl0a1b2cv2"; /* cut short by a crash */
    is_int(lab_state_parse(good, strlen(good), &st, &e), 0, "a state file parses: %s", e.msg);
    is(st.id, "0a1b2c", "id");
    is_int(st.made_dir, 1, "made-dir");
    is(st.subnet, "10.9.8.0/24", "subnet");
    is_int(st.complete, 0, "not complete");
    is_int(st.n_res, 5, "five resources; the truncated line is ignored");
    if (st.n_res == 5) {
        is_int(st.res[1].kind, LAB_RES_BRIDGE, "bridge");
        is(st.res[2].extra, "10.9.8.2", "netns carries its address");
        is_int(st.res[2].cancelled, 0, "h1's netns stands");
        is_int(st.res[4].cancelled, 1, "h2's netns was cancelled (its creation failed)");
    }
    lab_state_free(&st);

    char buf[512];
    static const char *const foreign[] = {
        "+bridge eth0\n",       /* not the lab's bridge */
        "+bridge nlffffffbr\n", /* another lab's */
        "+netns nlab-ffffff-h1 1.2.3.4\n",
        "+netns other 1.2.3.4\n",
        "+netns nlab-0a1b2c-../x 1.2.3.4\n",
        "+veth nl0a1b2cbr\n",
        "+veth nl0a1b2cv1x\n",
        "+path ../etc\n",
        "+path a/b\n",
        "+path lab.state\n",
        "+disk /dev/sda\n",
    };
    for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++) {
        snprintf(buf, sizeof buf, "nines-lab 1\nid 0a1b2c\n%s", foreign[i]);
        is_int(lab_state_parse(buf, strlen(buf), &st, &e), NERR_CORRUPT, "refused: %.*s",
               (int)strlen(foreign[i]) - 1, foreign[i]);
    }
    const char *noheader = "id 0a1b2c\n+bridge nl0a1b2cbr\n";
    is_int(lab_state_parse(noheader, strlen(noheader), &st, &e), NERR_CORRUPT, "no header refused");
    const char *noid = "nines-lab 1\n+bridge nl0a1b2cbr\n";
    is_int(lab_state_parse(noid, strlen(noid), &st, &e), NERR_CORRUPT,
           "a resource before the id refused");
    const char *done = "nines-lab 1\nid 0a1b2c\nmade-dir 0\ncomplete\n";
    is_int(lab_state_parse(done, strlen(done), &st, &e), 0, "complete lab parses");
    ok(st.complete && !st.made_dir && st.n_res == 0, "complete, DIR not made, no resources");
    lab_state_free(&st);
}

int main(void)
{
    test_spec();
    test_subnet_parse();
    test_overlap_pick();
    test_placement();
    test_names();
    test_state();
    return done_testing();
}
