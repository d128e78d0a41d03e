/* proto/clusterfile: a full cluster file loads with every field as written or
 * defaulted; each kind of bad file gets its exact "FILE:LINE:COL: ..." error. */
#include "proto/clusterfile.h"
#include "t/tap.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[PATH_MAX];  /* a fresh temporary directory */
static char rdir[PATH_MAX]; /* the same, symlinks resolved */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        bail_out("cannot write a test file");
}

static void test_valid(void)
{
    char path[PATH_MAX + 32], want[PATH_MAX + 64];
    struct cluster_conf *c = NULL;
    struct nerr err;
    snprintf(path, sizeof path, "%s/full.yaml", dir);
    write_file(path, "# every key\n"
                     "cluster: prod-eu_1.a\n"
                     "auth: {access_key_id: AKIDEXAMPLE, secret_access_key: \"wJalr/K7MDENG\"}\n"
                     "region: eu-west-1\n"
                     "partitions: 16\n"
                     "storage:\n"
                     "  wal_segment_size: 128KiB\n"
                     "  map_size: 2GiB\n"
                     "  max_tables: 100\n"
                     "healing: {dead_after: 90s}\n"
                     "nodes:\n"
                     "  - {id: n1, az: az1, rack: r1, api: 127.0.0.1:8101, peer: 127.0.0.1:7101, "
                     "data: /var/lib/nines/n1}\n"
                     "  - id: n2\n"
                     "    az: az2\n"
                     "    rack: r2\n"
                     "    api: \"[::1]:8102\"\n"
                     "    peer: localhost:7102\n"
                     "    data: n2\n"
                     "  - {id: n3, az: az3, rack: r3, api: 127.0.0.3:8101, peer: 127.0.0.3:7101, "
                     "data: ./x/./n3}\n");
    int rc = cluster_conf_load(path, &c, &err);
    is_int(rc, 0, "full file loads%s%s", rc ? ": " : "", rc ? err.msg : "");
    if (rc)
        return;
    is(c->path, path, "path");
    is(c->name, "prod-eu_1.a", "cluster name");
    is_int(c->auth, CLUSTER_AUTH_SIGV4, "auth is sigv4");
    is(c->access_key_id, "AKIDEXAMPLE", "access key id");
    is(c->secret_access_key, "wJalr/K7MDENG", "secret");
    is(c->region, "eu-west-1", "region");
    is_int(c->default_partitions, 16, "partitions");
    ok(c->wal_segment_size == 128 << 10, "wal_segment_size 128KiB");
    ok(c->map_size == 2ull << 30, "map_size 2GiB");
    is_int(c->max_tables, 100, "max_tables");
    ok(c->healing_dead_after_ns == 90000000000ull, "healing dead_after 90s");
    is_int(c->nnodes, 3, "three nodes");

    const struct cluster_node *n = &c->nodes[0];
    is(n->id, "n1", "n1 id");
    is(n->az, "az1", "n1 az");
    is(n->rack, "r1", "n1 rack");
    is(n->api, "127.0.0.1:8101", "n1 api as written");
    is(n->api_host, "127.0.0.1", "n1 api host");
    is_int(n->api_port, 8101, "n1 api port");
    is(n->peer, "127.0.0.1:7101", "n1 peer as written");
    is(n->peer_host, "127.0.0.1", "n1 peer host");
    is_int(n->peer_port, 7101, "n1 peer port");
    is(n->data, "/var/lib/nines/n1", "absolute data kept");
    ok(n->line == 12 && n->col == 5, "n1 entry at 12:5 (got %d:%d)", n->line, n->col);

    n = &c->nodes[1];
    is(n->id, "n2", "n2 id");
    is(n->az, "az2", "n2 az");
    is(n->rack, "r2", "n2 rack");
    is(n->api, "[::1]:8102", "n2 api as written");
    is(n->api_host, "::1", "n2 api host without brackets");
    is_int(n->api_port, 8102, "n2 api port");
    is(n->peer_host, "localhost", "n2 peer host name");
    is_int(n->peer_port, 7102, "n2 peer port");
    snprintf(want, sizeof want, "%s/n2", rdir);
    is(n->data, want, "relative data resolved against the file's directory");
    snprintf(want, sizeof want, "%s/x/./n3", rdir);
    is(c->nodes[2].data, want, "leading ./ dropped, the rest kept");

    ok(cluster_conf_node(c, "n2") == &c->nodes[1], "lookup by id");
    ok(cluster_conf_node(c, "n4") == NULL, "unknown id gives NULL");
    cluster_conf_free(c);
    cluster_conf_free(NULL);
}

static void test_defaults_and_relative_path(void)
{
    char sub[PATH_MAX + 16], path[PATH_MAX + 32], want[PATH_MAX + 64], cwd[PATH_MAX];
    struct cluster_conf *c = NULL;
    struct nerr err;
    snprintf(sub, sizeof sub, "%s/conf", dir);
    if (mkdir(sub, 0700) != 0)
        bail_out("mkdir");
    snprintf(path, sizeof path, "%s/min.yaml", sub);
    write_file(path, "cluster: demo\nauth: none\nstorage:\n  # map_size: 1GiB\npartitions: ~\n"
                     "nodes:\n"
                     "  - {id: n1, az: a, rack: r, api: 127.0.0.1:8101, peer: 127.0.0.1:7101, "
                     "data: d1}\n");
    /* Loaded by a relative path from another directory: data still lands
     * beside the file, not beside the working directory. */
    if (!getcwd(cwd, sizeof cwd) || chdir(dir) != 0)
        bail_out("chdir");
    int rc = cluster_conf_load("conf/min.yaml", &c, &err);
    if (chdir(cwd) != 0)
        bail_out("chdir back");
    is_int(rc, 0, "minimal file loads%s%s", rc ? ": " : "", rc ? err.msg : "");
    if (rc)
        return;
    is(c->path, "conf/min.yaml", "path as given");
    is_int(c->auth, CLUSTER_AUTH_NONE, "auth none");
    ok(c->access_key_id == NULL && c->secret_access_key == NULL, "no credentials");
    is(c->region, "local", "default region");
    is_int(c->default_partitions, 4, "default partitions");
    ok(c->wal_segment_size == 64ull << 20, "default wal_segment_size 64MiB");
    ok(c->map_size == 16ull << 30, "default map_size 16GiB");
    is_int(c->max_tables, 256, "default max_tables");
    ok(c->healing_dead_after_ns == 300000000000ull, "default healing dead_after 5 min");
    snprintf(want, sizeof want, "%s/conf/d1", rdir);
    is(c->nodes[0].data, want, "data relative to the file, whatever the cwd");
    cluster_conf_free(c);
}

/* The node block every bad case starts from, with its positions:
 *   line 4: "  - id: n1"        the node mapping and key id at col 5, n1 at col 9
 *   line 7: "    api: ..."      value at col 10
 *   line 8: "    peer: ..."     value at col 11                                   */
#define HEAD "cluster: demo\nauth: none\nnodes:\n"
#define NODE1                                                                                      \
    "  - id: n1\n    az: az1\n    rack: r1\n    api: 127.0.0.1:8101\n"                             \
    "    peer: 127.0.0.1:7101\n    data: /d/n1\n"

struct bad {
    const char *what, *text;
    int code;
    const char *msg; /* after "FILE:" */
};

static const struct bad bads[] = {
    {"syntax error", HEAD "  - {id: n1, az: az1\n", NERR_PARSE,
     "5:1: did not find expected ',' or '}' (while parsing a flow mapping at line 4, column 5)"},
    {"duplicate YAML key", "cluster: a\ncluster: b\n", NERR_INVALID,
     "2:1: duplicate key 'cluster' (first at line 1, column 1)"},
    {"empty file", "", NERR_INVALID, "1:1: expected a mapping, got null"},
    {"root is a sequence", "- a\n", NERR_INVALID, "1:1: expected a mapping, got a sequence"},
    {"unknown top-level key", HEAD NODE1 "regoin: eu\n", NERR_INVALID,
     "10:1: unknown key 'regoin', did you mean 'region'?"},
    {"unknown node key", HEAD NODE1 "    zone: z\n", NERR_INVALID, "10:5: unknown key 'zone'"},
    {"unknown storage key", HEAD NODE1 "storage:\n  map_sizes: 1GiB\n", NERR_INVALID,
     "11:3: unknown key 'map_sizes', did you mean 'map_size'?"},
    {"missing cluster", "auth: none\nnodes: []\n", NERR_INVALID,
     "1:1: missing required key 'cluster'"},
    {"missing auth", "cluster: demo\nnodes: []\n", NERR_INVALID,
     "1:1: missing required key 'auth'"},
    {"missing nodes", "cluster: demo\nauth: none\n", NERR_INVALID,
     "1:1: missing required key 'nodes'"},
    {"missing node key",
     HEAD "  - id: n1\n    az: az1\n    api: 127.0.0.1:8101\n"
          "    peer: 127.0.0.1:7101\n    data: /d/n1\n",
     NERR_INVALID, "4:5: missing required key 'rack'"},
    {"nodes not a sequence", HEAD "  id: n1\n", NERR_INVALID,
     "4:3: expected a sequence, got a mapping"},
    {"nodes empty", HEAD, NERR_INVALID, "3:7: expected a sequence, got null"},
    {"no nodes", "cluster: demo\nauth: none\nnodes: []\n", NERR_INVALID,
     "3:8: a cluster needs at least one node"},
    {"node not a mapping", HEAD "  - n1\n", NERR_INVALID, "4:5: expected a mapping, got 'n1'"},
    {"partitions not an integer", HEAD NODE1 "partitions: four\n", NERR_INVALID,
     "10:13: expected an integer, got 'four'"},
    {"partitions quoted", HEAD NODE1 "partitions: \"8\"\n", NERR_INVALID,
     "10:13: expected an integer, got the string \"8\""},
    {"partitions out of range", HEAD NODE1 "partitions: 257\n", NERR_INVALID,
     "10:13: 257 is out of range (1..256)"},
    {"storage not a mapping", HEAD NODE1 "storage: 5\n", NERR_INVALID,
     "10:10: expected a mapping, got '5'"},
    {"wal segment too small", HEAD NODE1 "storage:\n  wal_segment_size: 1KiB\n", NERR_INVALID,
     "11:21: size '1KiB' is below the minimum of 64KiB"},
    {"map_size ambiguous unit", HEAD NODE1 "storage: {map_size: 16GB}\n", NERR_INVALID,
     "10:21: ambiguous size unit 'GB' in '16GB': use B, KiB, MiB, GiB, TiB or PiB"},
    {"sync_threads (gone with the node log)", HEAD NODE1 "storage: {sync_threads: 4}\n",
     NERR_INVALID, "10:11: unknown key 'sync_threads'"},
    {"bad cluster name", "cluster: de mo\n", NERR_INVALID,
     "1:10: invalid cluster name 'de mo': use 1 to 64 letters, digits, '_', '.' or '-'"},
    {"cluster name a mapping", "cluster: {a: 1}\n", NERR_INVALID,
     "1:10: expected a string, got a mapping"},
    {"bad region", HEAD NODE1 "region: eu_west\n", NERR_INVALID,
     "10:9: invalid region 'eu_west': use 1 to 64 letters, digits or '-'"},
    {"bad port", HEAD "  - id: n1\n    az: az1\n    rack: r1\n    api: 127.0.0.1:70000\n",
     NERR_INVALID, "7:10: port 70000 is out of range (1..65535)"},
    {"api without port", HEAD "  - id: n1\n    az: az1\n    rack: r1\n    api: 127.0.0.1\n",
     NERR_INVALID,
     "7:10: expected HOST:PORT (127.0.0.1:8101, [::1]:8101, db1.example:8101), got '127.0.0.1'"},
    {"api an integer list", HEAD "  - id: n1\n    az: az1\n    rack: r1\n    api: [8101]\n",
     NERR_INVALID,
     "7:10: expected HOST:PORT (127.0.0.1:8101, [::1]:8101, db1.example:8101), got a sequence"},
    {"bad node id", HEAD "  - id: n/1\n", NERR_INVALID,
     "4:9: invalid node id 'n/1': use 1 to 64 letters, digits, '_', '.' or '-'"},
    {"empty data",
     HEAD "  - id: n1\n    az: az1\n    rack: r1\n    api: 127.0.0.1:8101\n"
          "    peer: 127.0.0.1:7101\n    data: ''\n",
     NERR_INVALID, "9:11: data must not be empty"},
    {"duplicate node id",
     HEAD NODE1 "  - {id: n1, az: az2, rack: r2, api: 127.0.0.2:8101, "
                "peer: 127.0.0.2:7101, data: /d/n2}\n",
     NERR_INVALID, "10:10: duplicate node id 'n1' (the node at line 4, column 5 has it too)"},
    {"duplicate api address",
     HEAD NODE1 "  - {id: n2, az: az2, rack: r2, api: 127.0.0.1:8101, "
                "peer: 127.0.0.2:7101, data: /d/n2}\n",
     NERR_INVALID,
     "10:38: address '127.0.0.1:8101' is already used by node n1's api (line 7, column 10)"},
    {"peer reuses another node's api",
     HEAD NODE1
     "  - {id: n2, az: az2, rack: r2, api: 127.0.0.2:8101, peer: 127.0.0.1:8101, data: /d}\n",
     NERR_INVALID,
     "10:60: address '127.0.0.1:8101' is already used by node n1's api (line 7, column 10)"},
    {"api equals own peer",
     HEAD "  - {id: n1, az: a, rack: r, api: 127.0.0.1:7000, "
          "peer: 127.0.0.1:7000, data: /d}\n",
     NERR_INVALID,
     "4:57: address '127.0.0.1:7000' is already used by node n1's api (line 4, column 35)"},
    {"IPv6 spelled two ways",
     HEAD "  - {id: n1, az: a, rack: r, api: '[::1]:7000', "
          "peer: '[0:0::0001]:7000', data: /d}\n",
     NERR_INVALID,
     "4:55: address '[0:0::0001]:7000' is already used by node n1's api (line 4, column 35)"},
    {"archive not a mapping", HEAD NODE1 "archive: file:///a\n", NERR_INVALID,
     "10:10: expected a mapping, got 'file:///a'"},
    {"archive without url", HEAD NODE1 "archive: {seal_after: 1s}\n", NERR_INVALID,
     "10:10: missing required key 'url'"},
    {"archive url relative", HEAD NODE1 "archive: {url: file://a/b}\n", NERR_INVALID,
     "10:16: archive url 'file://a/b': expected file:///ABSOLUTE/DIR or "
     "sftp://USER@HOST[:PORT]/ABSOLUTE/DIR"},
    {"archive over sftp without a user", HEAD NODE1 "archive: {url: sftp://h/p}\n", NERR_INVALID,
     "10:16: archive url 'sftp://h/p': expected sftp://USER@HOST[:PORT]/ABSOLUTE/DIR"},
    {"ssh_key on a file:// archive", HEAD NODE1 "archive: {url: 'file:///a', ssh_key: k}\n",
     NERR_INVALID, "10:29: ssh_key is for sftp:// archives only"},
    {"archive seal_after without unit", HEAD NODE1 "archive: {url: 'file:///a', seal_after: 10}\n",
     NERR_INVALID, "10:41: expected a duration (500ms, 10s, 2m, 1h30m), got '10'"},
    {"healing dead_after below 1s", HEAD NODE1 "healing: {dead_after: 500ms}\n", NERR_INVALID,
     "10:23: duration '500ms' is below the minimum of 1s"},
    {"healing unknown key", HEAD NODE1 "healing: {suspect_after: 5s}\n", NERR_INVALID,
     "10:11: unknown key 'suspect_after'"},
    {"healing dead_after a word", HEAD NODE1 "healing: {dead_after: never}\n", NERR_INVALID,
     "10:23: expected a duration (500ms, 10s, 2m, 1h30m), got 'never'"},
    {"archive unknown key", HEAD NODE1 "archive:\n  url: file:///a\n  seal_every: 1s\n",
     NERR_INVALID, "12:3: unknown key 'seal_every'"},
    {"auth a word", "cluster: demo\nauth: sigv4\n", NERR_INVALID,
     "2:7: expected 'none' or a mapping with access_key_id and secret_access_key, got 'sigv4'"},
    {"auth a sequence", "cluster: demo\nauth: [a, b]\n", NERR_INVALID,
     "2:7: expected 'none' or a mapping with access_key_id and secret_access_key, got a "
     "sequence"},
    {"auth missing secret", "cluster: demo\nauth: {access_key_id: AK}\n", NERR_INVALID,
     "2:7: missing required key 'secret_access_key'"},
    {"auth unknown key", "cluster: demo\nauth:\n  access_key_id: AK\n  secret_key: S\n",
     NERR_INVALID, "4:3: unknown key 'secret_key'"},
    {"auth empty secret", "cluster: demo\nauth: {access_key_id: AK, secret_access_key: ''}\n",
     NERR_INVALID, "2:46: secret_access_key must not be empty"},
    {"auth secret null", "cluster: demo\nauth: {access_key_id: AK, secret_access_key: ~}\n",
     NERR_INVALID, "2:46: expected a string, got null"},
};

static void test_bad(void)
{
    char path[PATH_MAX + 32], want[NERR_MSG_MAX + PATH_MAX];
    struct cluster_conf *c;
    struct nerr err;

    snprintf(path, sizeof path, "%s/nope.yaml", dir);
    c = (struct cluster_conf *)&err; /* must stay untouched on failure */
    is_int(cluster_conf_load(path, &c, &err), NERR_IO, "missing file: NERR_IO");
    snprintf(want, sizeof want, "%s: No such file or directory", path);
    is(err.msg, want, "missing file: message");
    ok(c == (struct cluster_conf *)&err, "missing file: *out untouched");

    snprintf(path, sizeof path, "%s/bad.yaml", dir);
    for (size_t i = 0; i < sizeof bads / sizeof *bads; i++) {
        write_file(path, bads[i].text);
        c = NULL;
        nerr_clear(&err);
        int rc = cluster_conf_load(path, &c, &err);
        is_int(rc, bads[i].code, "%s: %s", bads[i].what, nerr_name(bads[i].code));
        snprintf(want, sizeof want, "%s:%s", path, bads[i].msg);
        is(err.msg, want, "%s: message", bads[i].what);
        ok(c == NULL, "%s: nothing handed out", bads[i].what);
        cluster_conf_free(c);
    }
    unlink(path);
}

/* Every prefix of a valid file is either a valid file or an error with a
 * position in this file, never a crash (the sanitizer build checks the
 * "never a crash" part). */
static void test_truncations(void)
{
    const char *text = HEAD NODE1 "storage: {map_size: 1GiB}\npartitions: 8\n";
    char path[PATH_MAX + 32], prefix[512];
    size_t len = strlen(text), good = 0, positioned = 0;
    snprintf(path, sizeof path, "%s/cut.yaml", dir);
    for (size_t n = 0; n <= len; n++) {
        struct cluster_conf *c = NULL;
        struct nerr err;
        memcpy(prefix, text, n);
        prefix[n] = '\0';
        write_file(path, prefix);
        nerr_clear(&err);
        if (cluster_conf_load(path, &c, &err) == 0) {
            good++;
        } else if (!strncmp(err.msg, path, strlen(path)) && err.msg[strlen(path)] == ':' &&
                   strchr("123456789", err.msg[strlen(path) + 1])) {
            positioned++;
        } else {
            diag("prefix %zu: %s", n, err.msg);
        }
        cluster_conf_free(c);
    }
    is_int(good + positioned, len + 1, "every prefix loads or fails at FILE:LINE:COL");
    cmp_ok(good, ">=", 1, "the whole file loads");
    unlink(path);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/nines_config_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir) || !realpath(dir, rdir))
        bail_out("mkdtemp");
    test_valid();
    test_defaults_and_relative_path();
    test_bad();
    test_truncations();
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        diag("could not remove %s", dir);
    return done_testing();
}
