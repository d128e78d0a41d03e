/* Table ids and group names become paths (groups/<group>/) and database
 * names; a catalog fetched from another node is not trusted (issue 13,
 * section 3). Checks catalog_path_name_ok / catalog_table_id_ok, the decode
 * of a fetched catalog (hostile entries dropped, good ones kept), and the
 * catalog's load path: a hostile description in the node's own catalog
 * database is refused at catalog_open and nothing is created outside the
 * data directory. Before the fix "t1/../../../x" passed the id check and its
 * group directory was created above the data directory. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/fsutil.h"
#include "lib/log.h"
#include "proto/clusterfile.h"
#include "store/catalog.h"
#include "store/group.h"
#include "store/state.h"
#include "t/tap.h"

static const char *DESC_FMT =
    "{\"TableName\":\"%s\",\"TableId\":\"%s\",\"Partitions\":1,"
    "\"KeySchema\":[{\"AttributeName\":\"pk\",\"KeyType\":\"HASH\"}],"
    "\"AttributeDefinitions\":[{\"AttributeName\":\"pk\",\"AttributeType\":\"S\"}],"
    "\"Placement\":[[\"n1\"]]}";

static void test_names(void)
{
    static const char *good[] = {"t1", "t42", "t4503599627370495"};
    static const char *bad[] = {"",
                                "t",
                                "t0",
                                "t01",
                                "1",
                                "x1",
                                "t-1",
                                "t1/../..",
                                "t1/x",
                                "t1 ",
                                "t1\n",
                                "t 1",
                                "t1.",
                                "..",
                                ".",
                                "t+1",
                                "T1",
                                "t4503599627370496",
                                "t99999999999999999999",
                                "t1%2f..",
                                ("t\xc3\xa9"
                                 "1")};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        ok(catalog_table_id_ok(good[i], NULL), "table id '%s' accepted", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ok(!catalog_table_id_ok(bad[i], NULL), "table id '%s' refused", bad[i]);
    uint64_t lsn = 0;
    ok(catalog_table_id_ok("t1234", &lsn) && lsn == 1234, "the LSN of t1234 is 1234");
    ok(catalog_path_name_ok("p.t5.0") && catalog_path_name_ok("meta"), "group names accepted");
    static const char *badpath[] = {"",        ".",   "..",        "../x", "a/b",
                                    ".hidden", "p t", "p.t5.0/..", "x\\y"};
    for (size_t i = 0; i < sizeof badpath / sizeof *badpath; i++)
        ok(!catalog_path_name_ok(badpath[i]), "path name '%s' refused", badpath[i]);
    char longname[CATALOG_MAX_PATH_NAME + 2];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    ok(!catalog_path_name_ok(longname), "a name of %d bytes is refused", CATALOG_MAX_PATH_NAME + 1);
    longname[CATALOG_MAX_PATH_NAME] = 0;
    ok(catalog_path_name_ok(longname), "one of %d bytes is accepted", CATALOG_MAX_PATH_NAME);
}

static void test_decode(void)
{
    char d1[512], d2[512], d3[512], body[2048];
    snprintf(d1, sizeof d1, DESC_FMT, "good", "t7");
    snprintf(d2, sizeof d2, DESC_FMT, "evil", "t1/../../../escape");
    snprintf(d3, sizeof d3, DESC_FMT, "evil2", "..");
    snprintf(body, sizeof body, "{\"tables\":[%s,%s,%s,17,null]}", d2, d1, d3);
    json_t *out = NULL;
    struct nerr err = {0};
    is_int(catalog_descs_decode(body, strlen(body), &out, &err), 0, "a fetched catalog decodes");
    is_int(json_array_size(out), 1, "with only its one valid table kept");
    is(json_string_value(json_object_get(json_array_get(out, 0), "TableId")), "t7",
       "the valid one");
    json_decref(out);
    out = NULL;
    /* fuzz_catalog's finding: a second RANGE key was taken (leaking the
     * first one's name). */
    const char *two_ranges =
        "{\"tables\":[{\"TableName\":\"x\",\"TableId\":\"t3\",\"Partitions\":1,"
        "\"KeySchema\":[{\"AttributeName\":\"pk\",\"KeyType\":\"HASH\"},{\"AttributeName\":"
        "\"a\",\"KeyType\":\"RANGE\"},{\"AttributeName\":\"b\",\"KeyType\":\"RANGE\"}],"
        "\"AttributeDefinitions\":[{\"AttributeName\":\"pk\",\"AttributeType\":\"S\"},"
        "{\"AttributeName\":\"a\",\"AttributeType\":\"S\"},{\"AttributeName\":\"b\","
        "\"AttributeType\":\"N\"}],\"Placement\":[[\"n1\"]]}]}";
    ok(catalog_descs_decode(two_ranges, strlen(two_ranges), &out, &err) == 0 &&
           json_array_size(out) == 0,
       "a description with two RANGE keys is dropped");
    json_decref(out);
    out = NULL;
    ok(catalog_descs_decode("[1,2]", 5, &out, &err) == NERR_INVALID && !out,
       "a reply that is not {\"tables\": [...]} is refused");
    ok(catalog_descs_decode("{\"tables\":", 10, &out, &err) == NERR_INVALID && !out,
       "so is one cut short");
}

/* Placements with replacements (catalog.h, "Membership of one
 * partition"): slots, cleared slots ({"left": node}) and the change in
 * progress, each checked before a description is kept. */
static void test_slots(void)
{
    static const struct {
        const char *placement, *changes;
        int keep;
        const char *what;
    } cases[] = {
        {"[[\"n1\",\"n2\",\"n3\"]]", NULL, 1, "three members"},
        {"[[\"n1\",\"n2\",\"n3\",\"n4\"]]", "{\"0\":{\"add\":4,\"remove\":3}}", 1,
         "a replacement in progress (4 in place of 3)"},
        {"[[\"n1\",\"n2\",{\"left\":\"n3\"},\"n4\"]]", NULL, 1, "a cleared slot"},
        {"[[{\"left\":\"n1\"},\"n2\",\"n3\",\"n4\"]]", NULL, 1, "the first slot cleared"},
        {"[[\"n1\",null,\"n3\",\"n4\"]]", NULL, 1, "an empty slot"},
        {"[[\"n1\",\"n2\",\"n3\",\"n4\"]]", NULL, 0, "four members without a change in progress"},
        {"[[\"n1\",\"n2\",\"n1\"]]", NULL, 0, "one node twice"},
        {"[[\"n1\",\"n2\",{\"left\":3},\"n4\"]]", NULL, 0, "a cleared slot without a node"},
        {"[[\"n1\",\"n2\",\"n3\",\"n4\"]]", "{\"0\":{\"add\":5,\"remove\":3}}", 0,
         "a change adding an id past the slots"},
        {"[[\"n1\",\"n2\",null,\"n4\"]]", "{\"0\":{\"add\":4,\"remove\":3}}", 0,
         "a change removing an empty slot"},
        {"[[\"n1\",\"n2\",\"n3\",\"n4\"]]", "{\"0\":{\"add\":3,\"remove\":3}}", 0,
         "a change adding the member it removes"},
        {"[[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\"]]", NULL, 0,
         "more slots than member ids"},
        {"[[null]]", NULL, 0, "no member at all"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[1024];
        snprintf(body, sizeof body,
                 "{\"tables\":[{\"TableName\":\"x\",\"TableId\":\"t3\",\"Partitions\":1,"
                 "\"KeySchema\":[{\"AttributeName\":\"pk\",\"KeyType\":\"HASH\"}],"
                 "\"AttributeDefinitions\":[{\"AttributeName\":\"pk\",\"AttributeType\":"
                 "\"S\"}],\"Placement\":%s%s%s}]}",
                 cases[i].placement, cases[i].changes ? ",\"Changes\":" : "",
                 cases[i].changes ? cases[i].changes : "");
        json_t *out = NULL;
        struct nerr err = {0};
        int rc = catalog_descs_decode(body, strlen(body), &out, &err);
        ok(rc == 0 && (int)json_array_size(out) == cases[i].keep, "%s: %s", cases[i].what,
           cases[i].keep ? "kept" : "dropped");
        json_decref(out);
    }
}

/* The load path: the node's own catalog database holds a hostile entry. */
static void test_load(void)
{
    char tmpl[] = "/tmp/nines-ids-XXXXXX", data[128], path[256], logdir[256], escape[256];
    if (!mkdtemp(tmpl))
        bail_out("mkdtemp");
    snprintf(data, sizeof data, "%s/data", tmpl);
    snprintf(path, sizeof path, "%s/state", data);
    snprintf(logdir, sizeof logdir, "%s/log", data);
    /* groups/p.t1/../../../escape.0 from data/ is <tmpl>/escape.0 */
    snprintf(escape, sizeof escape, "%s/escape.0", tmpl);
    struct nerr err = {0};
    struct state *st = NULL;
    struct group_host *h = NULL;
    struct catalog *cat = NULL;
    struct state_options so = {.map_size = 1ULL << 26, .max_dbs = 64};
    static struct cluster_node self = {.id = "n1", .az = "az1", .rack = "r1"};
    static struct cluster_conf conf = {.path = "test", .name = "test", .nodes = &self, .nnodes = 1};
    struct catalog_options co = {
        .conf = &conf, .self_id = "n1", .data_dir = data, .max_partitions = 4, .max_dbs = 64};
    if (fs_mkdir_p(data, &err) || state_open(path, &so, &st, &err))
        bail_out(err.msg);
    char desc[512];
    snprintf(desc, sizeof desc, DESC_FMT, "evil", "t1/../../../escape");
    MDB_txn *txn;
    MDB_val k = {4, "evil"}, v = {strlen(desc), desc};
    if (state_write_begin(st, &txn, &err) || mdb_put(txn, state_dbi_catalog(st), &k, &v, 0) ||
        state_write_commit(st, txn, &err))
        bail_out("cannot write the hostile catalog entry");
    if (group_host_start(st, logdir, NULL, NULL, NULL, NULL, &h, &err))
        bail_out(err.msg);
    int rc = catalog_open(h, &co, &cat, &err);
    ok(rc != 0, "catalog_open refuses a catalog with a hostile table id (%s)", err.msg);
    struct stat sb;
    ok(stat(escape, &sb) != 0, "nothing was created outside the data directory");
    if (!rc)
        catalog_close(cat);
    group_host_stop(h);
    state_close(st);
    fs_rm_rf(tmpl, NULL);
}

int main(void)
{
    log_init("test_catalog_ids", LOG_ERROR);
    test_names();
    test_decode();
    test_slots();
    test_load();
    return done_testing();
}
