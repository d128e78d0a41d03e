/*
 * nines demo store — the single-node walkthrough (`nines demo` itself runs
 * a game day on a lab, demo/demo.c): start a local ninesd, create a table,
 * write and read items through the DynamoDB API, restart the node and read
 * again, and print what happened. Exit 0 when every answer was
 * the expected one, 1 otherwise, 2 for a bad command line.
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proto/ddb.h"
#include "cluster/localnode.h"
#include "lib/clock.h"
#include "lib/fsutil.h"
#include "net/http.h"

struct demo {
    struct ddb_client *cli;
    int calls, failures;
};

/* Sends op; expect_error NULL means success is expected. Returns the answer. */
static json_t *step(struct demo *d, const char *what, const char *op, json_t *req,
                    const char *expect_error)
{
    struct nerr err = {0};
    int status = 0;
    json_t *resp = NULL;
    double t0 = (double)clock_mono_ns() / 1e6;
    int rc = ddb_call(d->cli, op, req, &status, &resp, &err);
    double ms = (double)clock_mono_ns() / 1e6 - t0;
    json_decref(req);
    d->calls++;
    if (rc) {
        d->failures++;
        printf("  FAIL %-58s %s\n", what, err.msg);
        return NULL;
    }
    const char *etype = status >= 400 ? ddb_client_error_type(d->cli) : NULL;
    int ok = expect_error ? (etype && !strcmp(etype, expect_error)) : status == 200;
    if (!ok)
        d->failures++;
    printf("  %-4s %-58s %6.2f ms  %s%s\n", ok ? "ok" : "FAIL", what, ms,
           etype ? etype : "HTTP 200", expect_error && ok ? " (as expected)" : "");
    if (!ok) {
        char *s = json_dumps(resp, JSON_COMPACT);
        printf("       answer: %.300s\n", s ? s : "?");
        free(s);
        json_decref(resp);
        return NULL;
    }
    return resp;
}

static void show(const char *label, json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    printf("       %s %s\n", label, s ? s : "null");
    free(s);
}

static void check(struct demo *d, int cond, const char *what)
{
    if (!cond)
        d->failures++;
    printf("  %-4s %s\n", cond ? "ok" : "FAIL", what);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: nines demo store [--dir DIR] [--partitions N]\n"
               "\n"
               "Starts a single-node ninesd on a free 127.0.0.1 port (auth: none), creates a\n"
               "table, writes and reads items with the DynamoDB API, restarts the node to show\n"
               "the writes are durable, and stops it. With --dir the node's files are kept\n"
               "in DIR; otherwise a temporary directory is used and removed.\n");
}

static json_t *item(const char *user, int sk, const char *name)
{
    char u[64], s[16];
    snprintf(u, sizeof u, "user#%s", user);
    snprintf(s, sizeof s, "%d", sk);
    return json_pack("{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:[s,s]}}", "pk", "S", u, "sk", "N",
                     s, "name", "S", name, "visits", "N", "1", "tags", "SS", "demo", name);
}

static int run(struct demo *d, const char *ninesd, const char *dir, int partitions)
{
    char cluster[PATH_MAX], logp[PATH_MAX], data[PATH_MAX], hostport[64], yaml[PATH_MAX + 512];
    struct nerr err = {0};
    struct localnode node = {0};
    int port;
    if (localnode_free_port(&port, &err)) {
        fprintf(stderr, "nines demo store: %s\n", err.msg);
        return 1;
    }
    snprintf(hostport, sizeof hostport, "127.0.0.1:%d", port);
    snprintf(cluster, sizeof cluster, "%s/cluster.yaml", dir);
    snprintf(logp, sizeof logp, "%s/ninesd.log", dir);
    snprintf(data, sizeof data, "%s/n1", dir);
    snprintf(yaml, sizeof yaml,
             "# written by nines demo\n"
             "cluster: demo\n"
             "auth: none\n"
             "partitions: %d\n"
             "nodes:\n"
             "  - {id: n1, az: az1, rack: r1, api: %s, peer: 127.0.0.1:%d, data: %s}\n",
             partitions, hostport, port + 1 > 65535 ? port - 1 : port + 1, data);
    if (fs_write_file_atomic(cluster, yaml, strlen(yaml), &err)) {
        fprintf(stderr, "nines demo store: %s\n", err.msg);
        return 1;
    }
    printf("nines demo store: one ninesd node on %s, auth: none (unsigned requests are accepted)\n"
           "  cluster file %s\n  data         %s\n  log          %s\n\n",
           hostport, cluster, data, logp);
    double t0 = (double)clock_mono_ns() / 1e6;
    if (localnode_start(ninesd, cluster, "n1", hostport, logp, NULL, 10000, &node, &err)) {
        fprintf(stderr, "nines demo store: %s\n", err.msg);
        return 1;
    }
    printf("  ok   started ninesd (pid %d), answering after %.0f ms\n", (int)node.pid,
           (double)clock_mono_ns() / 1e6 - t0);
    char url[128];
    snprintf(url, sizeof url, "http://%s", hostport);
    struct ddb_client_options co = {.endpoint = url};
    if (ddb_client_new(&co, &d->cli, &err)) {
        fprintf(stderr, "nines demo store: %s\n", err.msg);
        localnode_stop(&node, 5000);
        return 1;
    }
    json_t *r;
    char what[128];
    snprintf(what, sizeof what, "CreateTable demo (pk S, sk N, %d partitions)", partitions);
    r = step(d, what, "CreateTable",
             json_pack("{s:s, s:[{s:s,s:s},{s:s,s:s}], s:[{s:s,s:s},{s:s,s:s}], s:s, s:I}",
                       "TableName", "demo", "AttributeDefinitions", "AttributeName", "pk",
                       "AttributeType", "S", "AttributeName", "sk", "AttributeType", "N",
                       "KeySchema", "AttributeName", "pk", "KeyType", "HASH", "AttributeName",
                       "sk", "KeyType", "RANGE", "BillingMode", "PAY_PER_REQUEST",
                       "NinesPartitions", (json_int_t)partitions),
             NULL);
    if (r)
        printf("       status %s\n",
               json_string_value(json_object_get(json_object_get(r, "TableDescription"), "TableStatus")));
    json_decref(r);
    static const char *names[] = {"ada", "grace", "edsger", "barbara", "leslie"};
    for (int i = 0; i < 5; i++) {
        snprintf(what, sizeof what, "PutItem user#%s sk=%d", i < 3 ? "1" : "2", i + 1);
        json_decref(step(d, what, "PutItem",
                         json_pack("{s:s, s:o}", "TableName", "demo", "Item",
                                   item(i < 3 ? "1" : "2", i + 1, names[i])),
                         NULL));
    }
    r = step(d, "GetItem user#1 sk=2 (ConsistentRead)", "GetItem",
             json_pack("{s:s, s:{s:{s:s}, s:{s:s}}, s:b}", "TableName", "demo", "Key", "pk", "S",
                       "user#1", "sk", "N", "2", "ConsistentRead", 1),
             NULL);
    if (r) {
        show("item", json_object_get(r, "Item"));
        const char *nm = json_string_value(
            json_object_get(json_object_get(json_object_get(r, "Item"), "name"), "S"));
        check(d, nm && !strcmp(nm, "grace"),
              "the item read back is the one written");
    }
    json_decref(r);
    r = step(d, "UpdateItem ADD visits :one, SET #n = :n (ALL_NEW)", "UpdateItem",
             json_pack("{s:s, s:{s:{s:s}, s:{s:s}}, s:s, s:{s:s}, s:{s:{s:s}, s:{s:s}}, s:s}",
                       "TableName", "demo", "Key", "pk", "S", "user#1", "sk", "N", "2",
                       "UpdateExpression", "ADD visits :one SET #n = :n",
                       "ExpressionAttributeNames", "#n", "name", "ExpressionAttributeValues",
                       ":one", "N", "1", ":n", "S", "grace hopper", "ReturnValues", "ALL_NEW"),
             NULL);
    if (r) {
        show("now", json_object_get(r, "Attributes"));
        const char *v = json_string_value(
            json_object_get(json_object_get(json_object_get(r, "Attributes"), "visits"), "N"));
        check(d, v && !strcmp(v, "2"), "visits went from 1 to 2");
    }
    json_decref(r);
    json_decref(step(d, "PutItem user#1 sk=1 if attribute_not_exists(pk)", "PutItem",
                     json_pack("{s:s, s:o, s:s}", "TableName", "demo", "Item",
                               item("1", 1, "intruder"), "ConditionExpression",
                               "attribute_not_exists(pk)"),
                     "ConditionalCheckFailedException"));
    r = step(d, "Query pk = user#1 AND sk BETWEEN 1 AND 2, newest first", "Query",
             json_pack("{s:s, s:s, s:{s:{s:s}, s:{s:s}, s:{s:s}}, s:b}", "TableName", "demo",
                       "KeyConditionExpression", "pk = :p AND sk BETWEEN :a AND :b",
                       "ExpressionAttributeValues", ":p", "S", "user#1", ":a", "N", "1", ":b",
                       "N", "2", "ScanIndexForward", 0),
             NULL);
    if (r) {
        json_t *items = json_object_get(r, "Items");
        const char *first = json_string_value(
            json_object_get(json_object_get(json_array_get(items, 0), "sk"), "N"));
        printf("       %zu items, first sk=%s\n", json_array_size(items), first ? first : "-");
        check(d, json_array_size(items) == 2 && first && !strcmp(first, "2"),
              "two items in descending sort-key order");
    }
    json_decref(r);
    r = step(d, "Scan (Limit 2, then follow LastEvaluatedKey)", "Scan",
             json_pack("{s:s, s:i}", "TableName", "demo", "Limit", 2), NULL);
    size_t seen = 0;
    for (int pages = 1; r && pages < 10; pages++) {
        seen += json_array_size(json_object_get(r, "Items"));
        json_t *lek = json_object_get(r, "LastEvaluatedKey");
        if (!lek)
            break;
        json_t *next = step(d, "Scan next page", "Scan",
                            json_pack("{s:s, s:i, s:O}", "TableName", "demo", "Limit", 2,
                                      "ExclusiveStartKey", lek),
                            NULL);
        json_decref(r);
        r = next;
    }
    json_decref(r);
    check(d, seen == 5, "the scan saw all 5 items once");
    json_decref(step(d, "DeleteItem user#2 sk=5", "DeleteItem",
                     json_pack("{s:s, s:{s:{s:s}, s:{s:s}}}", "TableName", "demo", "Key", "pk",
                               "S", "user#2", "sk", "N", "5"),
                     NULL));
    json_decref(step(d, "GetItem of a table that does not exist", "GetItem",
                     json_pack("{s:s, s:{s:{s:s}}}", "TableName", "nope", "Key", "pk", "S", "x"),
                     "ResourceNotFoundException"));
    ddb_client_free(d->cli);
    d->cli = NULL;

    printf("\n  restarting ninesd (SIGTERM, then start again on the same data)\n");
    int st = localnode_stop(&node, 10000);
    check(d, st == 0, "ninesd stopped cleanly (exit 0)");
    t0 = (double)clock_mono_ns() / 1e6;
    if (localnode_start(ninesd, cluster, "n1", hostport, logp, NULL, 10000, &node, &err)) {
        fprintf(stderr, "nines demo store: %s\n", err.msg);
        return 1;
    }
    printf("  ok   ninesd is back (pid %d) after %.0f ms\n", (int)node.pid,
           (double)clock_mono_ns() / 1e6 - t0);
    ddb_client_new(&co, &d->cli, &err);
    r = step(d, "Scan after restart", "Scan", json_pack("{s:s}", "TableName", "demo"), NULL);
    check(d, r && json_array_size(json_object_get(r, "Items")) == 4,
          "4 items survived the restart (5 written, 1 deleted)");
    json_decref(r);
    json_decref(step(d, "DeleteTable demo", "DeleteTable", json_pack("{s:s}", "TableName", "demo"),
                     NULL));
    ddb_client_free(d->cli);
    d->cli = NULL;
    st = localnode_stop(&node, 10000);
    check(d, st == 0, "ninesd stopped cleanly (exit 0)");
    printf("\nnines demo store: %d requests, %s\n", d->calls,
           d->failures ? "SOME ANSWERS WERE WRONG (see FAIL above)" : "every answer as expected");
    return d->failures ? 1 : 0;
}

int demo_store_main(int argc, char **argv)
{
    /* Before any thread exists (libcurl's rule for its global init). */
    if (http_global_init()) {
        fprintf(stderr, "nines %s: cannot initialise libcurl\n", "demo store");
        return 1;
    }
    const char *dir = NULL;
    int partitions = 4;
    static const struct option longopts[] = {{"dir", required_argument, NULL, 'd'},
                                             {"partitions", required_argument, NULL, 'p'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (ch == 'd')
            dir = optarg;
        else if (ch == 'p') {
            partitions = atoi(optarg);
            if (partitions < 1 || partitions > 256) {
                fprintf(stderr, "nines demo store: --partitions must be between 1 and 256\n");
                return 2;
            }
        } else if (ch == 'h') {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    char ninesd[PATH_MAX], tmp[] = "/tmp/nines-demo-XXXXXX";
    struct nerr err = {0};
    if (localnode_ninesd_path(ninesd, sizeof ninesd, &err)) {
        fprintf(stderr, "nines demo store: cannot find ninesd: %s\n", err.msg);
        return 1;
    }
    if (dir) {
        if (fs_mkdir_p(dir, &err)) {
            fprintf(stderr, "nines demo store: %s\n", err.msg);
            return 1;
        }
    } else if (!(dir = mkdtemp(tmp))) {
        perror("nines demo store: mkdtemp");
        return 1;
    }
    struct demo d = {0};
    int rc = run(&d, ninesd, dir, partitions);
    ddb_client_free(d.cli);
    if (dir == tmp)
        fs_rm_rf(tmp, NULL);
    return rc;
}
