/* proto/admin: the NinesAdmin.Status model. The encoder's compact dump is
 * byte for byte the JSON ninesd sent before the model existed (the literal
 * below is what that encoder printed for the same figures); decoding reads
 * it back, tolerates absent and unknown members, and refuses wrong types
 * with a message naming the group and the member. */
#include "proto/admin.h"
#include "t/tap.h"

static const char *WIRE =
    "{\"node\":\"n1\",\"az\":\"az1\",\"rack\":\"r1\",\"cluster\":\"demo\",\"time_ms\":"
    "1700000000123,"
    "\"groups\":[{\"group\":\"meta\",\"table\":null,\"table_id\":null,\"partition\":null,"
    "\"members\":[\"n1\",\"n2\",\"n3\"],\"role\":\"leader\",\"leader\":\"n1\",\"term\":3,"
    "\"commit\":100,\"applied\":99,\"last_index\":101,\"first_index\":1,\"lease\":true,"
    "\"failed\":false},{\"group\":\"p.t5.0\",\"table\":\"orders\",\"table_id\":\"t5\","
    "\"partition\":0,\"members\":[\"n2\",\"n1\",\"n3\"],\"role\":\"follower\",\"leader\":null,"
    "\"term\":2,\"commit\":48,\"applied\":45,\"last_index\":48,\"first_index\":7,\"lease\":false,"
    "\"failed\":true}],\"messages\":{\"in\":10,\"out\":11,\"dropped_malformed\":1,"
    "\"dropped_forged\":2,\"dropped_unknown_group\":3,\"dropped_by_raft\":4,\"send_failures\":5},"
    "\"node_log\":{\"records\":20,\"syncs\":21,\"bytes\":22,\"segments\":23,\"streams\":24}}";

static void test_encode(void)
{
    const char *m1[] = {"n1", "n2", "n3"}, *m2[] = {"n2", "n1", "n3"};
    struct admin_group g[2] = {
        {.group = "meta",
         .partition = ADMIN_ABSENT,
         .members = m1,
         .nmembers = 3,
         .role = "leader",
         .leader = "n1",
         .term = 3,
         .commit = 100,
         .applied = 99,
         .last_index = 101,
         .first_index = 1,
         .lease = 1,
         .failed = 0},
        {.group = "p.t5.0",
         .table = "orders",
         .table_id = "t5",
         .partition = 0,
         .members = m2,
         .nmembers = 3,
         .role = "follower",
         .term = 2,
         .commit = 48,
         .applied = 45,
         .last_index = 48,
         .first_index = 7,
         .lease = 0,
         .failed = 1},
    };
    struct admin_status s = {.node = "n1",
                             .az = "az1",
                             .rack = "r1",
                             .cluster = "demo",
                             .time_ms = 1700000000123,
                             .groups = g,
                             .ngroups = 2,
                             .messages = {10, 11, 1, 2, 3, 4, 5},
                             .node_log = {20, 21, 22, 23, 24}};
    json_t *j = NULL;
    struct nerr e = {0};
    is_int(admin_status_to_json(&s, &j, &e), 0, "encode");
    char *text = json_dumps(j, JSON_COMPACT);
    is(text, WIRE, "the compact dump is the wire form ninesd has always sent");
    free(text);
    json_decref(j);
}

static void test_decode(void)
{
    json_t *j = json_loads(WIRE, 0, NULL);
    struct admin_status s;
    struct nerr e = {0};
    is_int(admin_status_from_json(j, &s, &e), 0, "decode: %s", e.msg);
    json_decref(j); /* the decoded status holds its own reference */
    is(s.node, "n1", "node");
    is(s.cluster, "demo", "cluster");
    is_int(s.time_ms, 1700000000123, "time_ms");
    is_int((long long)s.ngroups, 2, "two groups");
    is(s.groups[0].table, NULL, "meta: table null");
    is_int(s.groups[0].partition, ADMIN_ABSENT, "meta: partition null");
    ok(admin_group_role_is(&s.groups[0], "leader"), "meta: leader");
    is_int(s.groups[0].lease, 1, "meta: lease");
    is(s.groups[1].table, "orders", "p.t5.0: table");
    is_int(s.groups[1].partition, 0, "p.t5.0: partition 0");
    is(s.groups[1].leader, NULL, "p.t5.0: no leader known");
    is_int((long long)s.groups[1].nmembers, 3, "p.t5.0: 3 members");
    is(s.groups[1].members[0], "n2", "p.t5.0: member 1");
    is_int(s.groups[1].failed, 1, "p.t5.0: failed");
    is_int(s.messages.dropped_unknown_group, 3, "messages");
    is_int(s.node_log.streams, 24, "node_log");
    /* Round trip: decode then encode gives the same bytes. */
    json_t *again = NULL;
    is_int(admin_status_to_json(&s, &again, &e), 0, "re-encode");
    char *text = json_dumps(again, JSON_COMPACT);
    is(text, WIRE, "decode + encode is the identity on the wire form");
    free(text);
    json_decref(again);
    admin_status_clear(&s);
}

static void test_tolerant(void)
{
    /* An older node: no first_index, failed, messages or node_log; a newer
     * one: a member nobody knows. */
    json_t *j = json_loads("{\"node\":\"n2\",\"future\":[1,2],\"groups\":[{\"group\":\"meta\","
                           "\"role\":\"follower\",\"term\":4,\"shiny\":{}}]}",
                           0, NULL);
    struct admin_status s;
    struct nerr e = {0};
    is_int(admin_status_from_json(j, &s, &e), 0, "absent and unknown members: %s", e.msg);
    is_int(s.groups[0].first_index, ADMIN_ABSENT, "absent number");
    is_int(s.groups[0].lease, ADMIN_ABSENT, "absent boolean");
    is_int(s.groups[0].term, 4, "term");
    is_int(s.messages.in, ADMIN_ABSENT, "absent messages");
    is(s.az, NULL, "absent az");
    admin_status_clear(&s);
    json_decref(j);
}

static void refuse(const char *text, const char *want, const char *what)
{
    json_t *j = json_loads(text, 0, NULL);
    struct admin_status s;
    struct nerr e = {0};
    is_int(admin_status_from_json(j, &s, &e), NERR_PARSE, "%s: refused", what);
    ok(strstr(e.msg, want) != NULL, "%s: %s", what, e.msg);
    is_int((long long)s.ngroups, 0, "%s: nothing decoded", what);
    admin_status_clear(&s);
    json_decref(j);
}

static void test_strict(void)
{
    refuse("[1]", "not a JSON object", "not an object");
    refuse("{\"groups\":[]}", "lacks \"node\"", "no node");
    refuse("{\"node\":\"n1\"}", "lacks \"groups\"", "no groups");
    refuse("{\"node\":5,\"groups\":[]}", "\"node\" is not a string", "node a number");
    refuse("{\"node\":\"n1\",\"groups\":[{\"role\":\"leader\"}]}", "group 1 lacks \"group\"",
           "group without a name");
    refuse(
        "{\"node\":\"n1\",\"groups\":[{\"group\":\"meta\"},{\"group\":\"p.t1.0\",\"term\":\"3\"}]}",
        "group 2 (p.t1.0): \"term\" is not a non-negative integer", "term a string");
    refuse("{\"node\":\"n1\",\"groups\":[{\"group\":\"meta\",\"lease\":1}]}",
           "\"lease\" is not a boolean", "lease a number");
    refuse("{\"node\":\"n1\",\"groups\":[{\"group\":\"meta\",\"members\":[\"n1\",2]}]}",
           "\"members\" is not an array of strings", "a member id a number");
    refuse("{\"node\":\"n1\",\"groups\":[],\"messages\":{\"in\":-1}}",
           "\"messages\": \"in\" is not a non-negative integer", "negative counter");
}

/* The summary ({"Groups": false} answers it with an empty list): encoded
 * when has_summary, decoded back, absent from an older node. */
static void test_summary(void)
{
    struct admin_status s = {.node = "n1",
                             .has_summary = 1,
                             .sum_groups = 100001,
                             .sum_leading = 33334,
                             .sum_asleep = 99990,
                             .sum_failed = 0};
    json_t *j = NULL;
    struct nerr e = {0};
    is_int(admin_status_to_json(&s, &j, &e), 0, "summary: encode");
    char *text = json_dumps(json_object_get(j, "summary"), JSON_COMPACT | JSON_SORT_KEYS);
    is(text, "{\"asleep\":99990,\"failed\":0,\"groups\":100001,\"leading\":33334}",
       "summary: the wire form");
    free(text);
    struct admin_status d;
    is_int(admin_status_from_json(j, &d, &e), 0, "summary: decode: %s", e.msg);
    ok(d.has_summary && d.sum_groups == 100001 && d.sum_leading == 33334 && d.sum_asleep == 99990 &&
           d.sum_failed == 0,
       "summary: decoded counts");
    is_int((long long)d.ngroups, 0, "summary: no group list");
    admin_status_clear(&d);
    json_decref(j);
    j = json_loads("{\"node\":\"n1\",\"groups\":[]}", 0, NULL);
    is_int(admin_status_from_json(j, &d, &e), 0, "summary: an older node");
    ok(!d.has_summary && d.sum_groups == ADMIN_ABSENT, "summary: absent");
    admin_status_clear(&d);
    json_decref(j);
    j = json_loads("{\"node\":\"n1\",\"groups\":[],\"summary\":{\"groups\":-1}}", 0, NULL);
    is_int(admin_status_from_json(j, &d, &e), NERR_PARSE, "summary: a negative count refused");
    ok(strstr(e.msg, "summary") != NULL, "summary: says where: %s", e.msg);
    admin_status_clear(&d);
    json_decref(j);
}

/* The membership configuration of a group ("conf"): joint, with a log
 * member; it decodes to what was encoded and re-encodes to the same bytes. */
static void test_conf(void)
{
    const char *mem[] = {"n1", "n2", "n4"}, *vin[] = {"n1", "n2", "n4"},
               *vout[] = {"n1", "n2", "n3"}, *lg[] = {"n4"};
    struct admin_group g = {.group = "p.t1.0",
                            .members = mem,
                            .nmembers = 3,
                            .role = "leader",
                            .leader = "n1",
                            .term = 2,
                            .commit = 9,
                            .applied = 9,
                            .last_index = 9,
                            .first_index = 1,
                            .lease = 1,
                            .failed = 0,
                            .has_conf = 1,
                            .conf_voters = vin,
                            .nconf_voters = 3,
                            .conf_voters_out = vout,
                            .nconf_voters_out = 3,
                            .conf_log = lg,
                            .nconf_log = 1,
                            .conf_joint = 1,
                            .conf_epoch = 8,
                            .conf_committed = 0};
    struct admin_status s = {.node = "n1", .groups = &g, .ngroups = 1};
    json_t *j = NULL;
    struct nerr e = {0};
    is_int(admin_status_to_json(&s, &j, &e), 0, "conf: encode");
    char *text = json_dumps(j, JSON_COMPACT);
    ok(text && strstr(text, "\"conf\":{\"voters\":[\"n1\",\"n2\",\"n4\"],\"voters_out\":[\"n1\","
                            "\"n2\",\"n3\"],\"log\":[\"n4\"],\"joint\":true,\"epoch\":8,"
                            "\"committed\":false}"),
       "conf: the wire form (%s)", text);
    struct admin_status d;
    is_int(admin_status_from_json(j, &d, &e), 0, "conf: decode: %s", e.msg);
    ok(d.groups[0].has_conf && d.groups[0].nconf_voters == 3 && d.groups[0].nconf_voters_out == 3 &&
           d.groups[0].nconf_log == 1 && !strcmp(d.groups[0].conf_log[0], "n4") &&
           d.groups[0].conf_joint == 1 && d.groups[0].conf_epoch == 8 &&
           d.groups[0].conf_committed == 0,
       "conf: decoded");
    json_t *again = NULL;
    is_int(admin_status_to_json(&d, &again, &e), 0, "conf: re-encode");
    char *t2 = json_dumps(again, JSON_COMPACT);
    is(t2, text, "conf: decode + encode is the identity");
    free(t2);
    free(text);
    json_decref(again);
    json_decref(j);
    admin_status_clear(&d);
    j = json_loads("{\"node\":\"n1\",\"groups\":[{\"group\":\"g\",\"conf\":{\"voters\":[1]}}]}", 0,
                   NULL);
    is_int(admin_status_from_json(j, &d, &e), NERR_PARSE, "conf: voters not strings refused (%s)",
           e.msg);
    json_decref(j);
}

int main(void)
{
    test_encode();
    test_decode();
    test_conf();
    test_summary();
    test_tolerant();
    test_strict();
    return done_testing();
}
