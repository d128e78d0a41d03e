/*
 * fuzz_request — libFuzzer target for ninesd's request path: JSON parsing,
 * validation, AttributeValues, expressions, and the writes and reads they
 * lead to, against a real node (LMDB, WALs, applier) in a temporary
 * directory. The first input byte picks the operation, the rest is the body.
 * A reply must come for every input (a missing reply is a hang: abort), and
 * every reply must be a JSON object.
 *
 *   make fuzz
 *   build-fuzz/bin/fuzz_request -max_total_time=600 -max_len=65536 fuzz/corpus/fuzz_request
 *
 * (docs/fuzzing.md). The seed corpus in fuzz/corpus/fuzz_request is a set of
 * valid requests.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/fsutil.h"
#include "lib/log.h"
#include "store/api.h"
#include "proto/clusterfile.h"
#include "store/catalog.h"
#include "store/group.h"
#include "store/state.h"

static const char *ops[] = {"PutItem",    "GetItem",      "DeleteItem",     "UpdateItem",
                            "Query",      "Scan",         "BatchWriteItem", "BatchGetItem",
                            "CreateTable", "DescribeTable", "ListTables",    "DeleteTable"};

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, status;
    char *body;
};

static void on_reply(void *arg, int status, char *body)
{
    struct waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    w->status = status;
    w->body = body;
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static struct api *api;
static char fuzz_dir[64];

/* The node's files go when the fuzzer exits (libFuzzer exits through exit()). */
static void remove_dir(void)
{
    fs_rm_rf(fuzz_dir, NULL);
}

static int call(const char *op, const char *body, size_t len)
{
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, NULL};
    api_call(api, op, body, len, on_reply, &w);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 30;
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        if (pthread_cond_timedwait(&w.cv, &w.mu, &dl)) {
            fprintf(stderr, "no reply to %s within 30 s\n", op);
            abort();
        }
    pthread_mutex_unlock(&w.mu);
    json_error_t je;
    json_t *j = w.body ? json_loads(w.body, 0, &je) : NULL;
    if (!j || !json_is_object(j) || (w.status != 200 && !json_object_get(j, "__type"))) {
        fprintf(stderr, "bad reply to %s: %d %s\n", op, w.status, w.body ? w.body : "(null)");
        abort();
    }
    if (w.status >= 500) {
        fprintf(stderr, "internal error for %s: %s\n", op, w.body);
        abort();
    }
    if (getenv("NINES_FUZZ_VERBOSE"))
        fprintf(stderr, "%s -> %d %.300s\n", op, w.status, w.body);
    json_decref(j);
    free(w.body);
    return w.status;
}

static void setup(void)
{
    char tmpl[] = "/tmp/nines-fuzz-XXXXXX";
    char *dir = mkdtemp(tmpl), path[512];
    struct nerr err = {0};
    struct state *st;
    struct group_host *h;
    struct catalog *cat;
    if (!dir)
        abort();
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s", dir);
    atexit(remove_dir);
    log_init("fuzz", LOG_ERROR);
    snprintf(path, sizeof path, "%s/state", dir);
    char logdir[512];
    snprintf(logdir, sizeof logdir, "%s/log", dir);
    struct state_options so = {.map_size = 1ULL << 30, .max_dbs = 256};
    static struct cluster_node node = {.id = "n1", .az = "az1", .rack = "r1"};
    static struct cluster_conf conf = {.path = "fuzz", .name = "fuzz", .nodes = &node, .nnodes = 1};
    struct catalog_options co = {.conf = &conf, .self_id = "n1", .data_dir = strdup(dir),
                                 .max_partitions = 8, .max_dbs = 256};
    struct api_options ao = {.region = "local", .endpoint = "127.0.0.1:0", .default_partitions = 2,
                             .max_partitions = 8};
    if (state_open(path, &so, &st, &err) || group_host_start(st, logdir, NULL, NULL, NULL, NULL, &h, &err) ||
        catalog_open(h, &co, &cat, &err)) {
        fprintf(stderr, "fuzz setup: %s\n", err.msg);
        abort();
    }
    ao.cat = cat;
    if (api_new(&ao, &api, &err))
        abort();
    static const char *tables[] = {
        "{\"TableName\":\"tab1\",\"BillingMode\":\"PAY_PER_REQUEST\",\"AttributeDefinitions\":"
        "[{\"AttributeName\":\"pk\",\"AttributeType\":\"S\"},{\"AttributeName\":\"sk\","
        "\"AttributeType\":\"N\"}],\"KeySchema\":[{\"AttributeName\":\"pk\",\"KeyType\":\"HASH\"},"
        "{\"AttributeName\":\"sk\",\"KeyType\":\"RANGE\"}]}",
        "{\"TableName\":\"tab2\",\"BillingMode\":\"PAY_PER_REQUEST\",\"AttributeDefinitions\":"
        "[{\"AttributeName\":\"id\",\"AttributeType\":\"B\"}],\"KeySchema\":[{\"AttributeName\":"
        "\"id\",\"KeyType\":\"HASH\"}]}"};
    for (size_t i = 0; i < 2; i++)
        if (call("CreateTable", tables[i], strlen(tables[i])) != 200)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        setup();
        ready = 1;
    }
    if (size < 1)
        return 0;
    const char *op = ops[data[0] % (sizeof ops / sizeof ops[0])];
    /* Keep the two fixture tables: deleting them would starve the rest. */
    if (!strcmp(op, "DeleteTable") && size > 1 &&
        (memmem(data + 1, size - 1, "tab1", 4) || memmem(data + 1, size - 1, "tab2", 4)))
        op = "DescribeTable";
    call(op, (const char *)data + 1, size - 1);
    return 0;
}
