/*
 * ops_backup.c — point-in-time recovery through DynamoDB's API
 * (docs/archive.md, "Point-in-time restore"): DescribeContinuousBackups,
 * UpdateContinuousBackups and RestoreTableToPointInTime. Rows of the
 * operation table (router.c).
 *
 * What is restorable. With an archive in the cluster file every table's
 * log is archived (store/archiver.h), so point-in-time recovery is on for
 * every table and cannot be turned off (UpdateContinuousBackups with
 * false is refused, saying why); without one it is off and cannot be
 * turned on. EarliestRestorableDateTime is the table's creation;
 * LatestRestorableDateTime is now minus seal_after + 2 x verify_after + 1 s
 * (by then every entry committed before it is sealed and archived when the
 * archive keeps up; a restore refuses a partition whose archive this node
 * sees behind).
 *
 * A restore creates the target table (the source's key schema, partition
 * count and billing) through the metadata group, answers at once with the
 * target's description (TableStatus CREATING, RestoreSummary with
 * RestoreInProgress true), then, on a thread of this node: for each source
 * partition, the index of its last archived entry proposed at or before
 * the restore time (reference_index_at), its state at that index rebuilt
 * from the archive (reference_build), every item written into the target
 * with BatchWriteItem through this node's own router (25 items a request,
 * RESTORE_WINDOW requests in flight, unprocessed items sent again). This
 * node's DescribeTable says CREATING until the last item is written (then
 * ACTIVE, RestoreInProgress false); a restore that fails says so in its
 * log and in DescribeTable (RestoreSummary.NinesRestoreError) and leaves
 * the target as it got, never reported complete. Other nodes describe the
 * target as ACTIVE from its creation on (the restore's progress is this
 * node's: docs/archive.md says so).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "proto/clusterfile.h"
#include "store/api_internal.h"
#include "store/reference.h"

#define RESTORE_BATCH 25
#define RESTORE_WINDOW 8
#define RESTORES_MAX 64

/* The restores this node ran (or runs), for DescribeTable. */
struct restore {
    char target[256], source_arn[600];
    double at_s;     /* the restore time, epoch seconds */
    int in_progress; /* writing items */
    char error[NERR_MSG_MAX];
    uint64_t items;
};

static pthread_mutex_t restores_mu = PTHREAD_MUTEX_INITIALIZER;
static struct restore restores[RESTORES_MAX];
static size_t nrestores;

int ops_restore_summary(const char *table, json_t **summary, int *in_progress)
{
    int found = 0;
    pthread_mutex_lock(&restores_mu);
    for (size_t i = nrestores; i-- > 0 && !found;)
        if (!strcmp(restores[i].target, table)) {
            found = 1;
            *in_progress = restores[i].in_progress;
            *summary = json_pack("{s:s,s:f,s:b}", "SourceTableArn", restores[i].source_arn,
                                 "RestoreDateTime", restores[i].at_s, "RestoreInProgress",
                                 restores[i].in_progress);
            if (*summary && restores[i].error[0])
                json_object_set_new(*summary, "NinesRestoreError", json_string(restores[i].error));
        }
    pthread_mutex_unlock(&restores_mu);
    return found;
}

static int64_t latest_ms(const struct cluster_conf *conf)
{
    return clock_wall_ms() -
           (int64_t)((conf->archive_seal_after_ns + 2 * conf->archive_verify_after_ns) / 1000000) -
           1000;
}

static double creation_s(const struct table *t)
{
    return json_number_value(json_object_get(t->desc, "CreationDateTime"));
}

static json_t *backups_desc(const struct api *a, const struct table *t)
{
    const struct cluster_conf *conf = a->opt.conf;
    if (!conf || !conf->archive_url)
        return json_pack("{s:{s:s,s:{s:s}}}", "ContinuousBackupsDescription",
                         "ContinuousBackupsStatus", "DISABLED", "PointInTimeRecoveryDescription",
                         "PointInTimeRecoveryStatus", "DISABLED");
    double latest = (double)latest_ms(conf) / 1000.0, earliest = creation_s(t);
    double kept = (double)(clock_wall_ms() - (int64_t)(conf->archive_retention_ns / 1000000)) / 1000.0;
    if (kept > earliest)
        earliest = kept; /* retention deleted what is older (archiver.h) */
    if (latest < earliest)
        latest = earliest;
    return json_pack("{s:{s:s,s:{s:s,s:f,s:f,s:i}}}", "ContinuousBackupsDescription",
                     "ContinuousBackupsStatus", "ENABLED", "PointInTimeRecoveryDescription",
                     "PointInTimeRecoveryStatus", "ENABLED", "EarliestRestorableDateTime", earliest,
                     "LatestRestorableDateTime", latest, "RecoveryPeriodInDays",
                     (int)(conf->archive_retention_ns / (86400ull * 1000000000ull)));
}

void ops_describe_backups(struct call *c, json_t *req)
{
    struct table *t = api_req_table(c, req, NULL);
    if (!t)
        return;
    json_t *d = backups_desc(c->a, t);
    table_put(t);
    api_reply_json(c, d);
}

void ops_update_backups(struct call *c, json_t *req)
{
    json_t *spec = json_object_get(req, "PointInTimeRecoverySpecification");
    json_t *en = json_object_get(spec, "PointInTimeRecoveryEnabled");
    if (!json_is_object(spec) || !json_is_boolean(en)) {
        api_reply_err(c, "ValidationException",
                      "1 validation error detected: Value null at "
                      "'pointInTimeRecoverySpecification.pointInTimeRecoveryEnabled' failed to "
                      "satisfy constraint: Member must not be null");
        return;
    }
    struct table *t = api_req_table(c, req, NULL);
    if (!t)
        return;
    const struct cluster_conf *conf = c->a->opt.conf;
    int archived = conf && conf->archive_url;
    if (json_is_true(en) && !archived)
        api_reply_err(c, "ValidationException",
                      "point-in-time recovery needs the WAL archive: name one in the cluster "
                      "file (archive: {url: ...}, docs/archive.md) and restart the nodes");
    else if (!json_is_true(en) && archived)
        api_reply_err(c, "ValidationException",
                      "point-in-time recovery cannot be turned off on ninesd: every table's log "
                      "is archived while the cluster file names an archive (%s)",
                      conf->archive_url);
    else
        api_reply_json(c, backups_desc(c->a, t));
    table_put(t);
}

/* ---- the restore ---- */

struct bw {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int inflight;
    int failed;
    char why[NERR_MSG_MAX];
    json_t *retry; /* unprocessed PutRequests to send again */
};

struct rjob {
    struct api *a;
    char *source, *target;
    struct table *src; /* a reference */
    int64_t t_ms;
    size_t slot;
    struct bw bw;
    json_t *batch; /* PutRequests being gathered */
    uint64_t items;
};

struct bw_call {
    struct bw *bw;
};

static void bw_reply(void *arg, int status, char *body)
{
    struct bw_call *bc = arg;
    struct bw *bw = bc->bw;
    json_t *o = body ? json_loads(body, 0, NULL) : NULL;
    pthread_mutex_lock(&bw->mu);
    if (status != 200) {
        if (!bw->failed)
            snprintf(bw->why, sizeof bw->why, "BatchWriteItem answered %d: %.300s", status,
                     body ? body : "");
        bw->failed = 1;
    } else {
        const char *k;
        json_t *v, *unp = json_object_get(o, "UnprocessedItems");
        json_object_foreach(unp, k, v)
        {
            json_array_extend(bw->retry, v);
        }
    }
    bw->inflight--;
    pthread_cond_broadcast(&bw->cv);
    pthread_mutex_unlock(&bw->mu);
    json_decref(o);
    free(body);
    free(bc);
}

/* Sends one BatchWriteItem of reqs (taken) to this node's router, waiting
 * while RESTORE_WINDOW are in flight. */
static int send_batch(struct rjob *j, json_t *reqs)
{
    struct bw *bw = &j->bw;
    pthread_mutex_lock(&bw->mu);
    while (bw->inflight >= RESTORE_WINDOW && !bw->failed)
        pthread_cond_wait(&bw->cv, &bw->mu);
    int failed = bw->failed;
    if (!failed)
        bw->inflight++;
    pthread_mutex_unlock(&bw->mu);
    if (failed) {
        json_decref(reqs);
        return -1;
    }
    json_t *body = json_pack("{s:{s:o}}", "RequestItems", j->target, reqs);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    struct bw_call *bc = malloc(sizeof *bc);
    if (!text || !bc) {
        free(text);
        free(bc);
        pthread_mutex_lock(&bw->mu);
        bw->inflight--;
        bw->failed = 1;
        snprintf(bw->why, sizeof bw->why, "out of memory");
        pthread_mutex_unlock(&bw->mu);
        return -1;
    }
    bc->bw = bw;
    api_call(j->a, "BatchWriteItem", text, strlen(text), bw_reply, bc);
    free(text);
    return 0;
}

/* Waits for every batch in flight; sends the unprocessed ones again
 * (bounded: 100 rounds). */
static int drain(struct rjob *j)
{
    struct bw *bw = &j->bw;
    for (int round = 0; round < 100; round++) {
        pthread_mutex_lock(&bw->mu);
        while (bw->inflight > 0)
            pthread_cond_wait(&bw->cv, &bw->mu);
        json_t *again = bw->retry;
        bw->retry = json_array();
        int failed = bw->failed;
        pthread_mutex_unlock(&bw->mu);
        if (failed) {
            json_decref(again);
            return -1;
        }
        if (!json_array_size(again)) {
            json_decref(again);
            return 0;
        }
        usleep(20000 * (round + 1));
        for (size_t i = 0; i < json_array_size(again); i += RESTORE_BATCH) {
            json_t *part = json_array();
            for (size_t k = i; k < i + RESTORE_BATCH && k < json_array_size(again); k++)
                json_array_append(part, json_array_get(again, k));
            if (send_batch(j, part)) {
                json_decref(again);
                return -1;
            }
        }
        json_decref(again);
    }
    snprintf(bw->why, sizeof bw->why, "items still unprocessed after 100 rounds");
    return -1;
}

static int on_item(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
    struct rjob *j = arg;
    (void)key;
    (void)klen;
    json_t *item = json_loadb(val, vlen, 0, NULL);
    if (!item)
        return NERR_CORRUPT;
    json_array_append_new(j->batch, json_pack("{s:{s:o}}", "PutRequest", "Item", item));
    j->items++;
    if (json_array_size(j->batch) == RESTORE_BATCH) {
        json_t *b = j->batch;
        j->batch = json_array();
        if (send_batch(j, b))
            return NERR_IO;
    }
    return 0;
}

static void restore_set(struct rjob *j, int in_progress, const char *error)
{
    pthread_mutex_lock(&restores_mu);
    struct restore *r = &restores[j->slot];
    if (!strcmp(r->target, j->target)) {
        r->in_progress = in_progress;
        r->items = j->items;
        if (error)
            snprintf(r->error, sizeof r->error, "%s", error);
    }
    pthread_mutex_unlock(&restores_mu);
}

static void *restore_main(void *arg)
{
    struct rjob *j = arg;
    struct api *a = j->a;
    const struct cluster_conf *conf = a->opt.conf;
    struct table *t = j->src;
    char why[NERR_MSG_MAX] = "";
    int64_t t0 = clock_mono_ms();
    /* The target is usable here once this node's catalog has it. */
    struct table *tt = NULL;
    for (int i = 0; i < 300 && !(tt = catalog_get(a->opt.cat, j->target)); i++) {
        if (i % 20 == 0)
            catalog_sync_now(a->opt.cat);
        usleep(100000);
    }
    if (!tt) {
        snprintf(why, sizeof why, "table %s did not appear in this node's catalog", j->target);
        goto out;
    }
    table_put(tt);
    for (int p = 0; p < t->nparts && !why[0]; p++) {
        const char *group = t->parts[p].name;
        uint64_t index = 0, end = 0;
        int64_t last_ms = 0;
        struct nerr e = {0};
        if (reference_index_at(conf->archive_url, group, j->t_ms, &index, &last_ms, &end, &e)) {
            snprintf(why, sizeof why, "partition %d: %.480s", p, e.msg);
            break;
        }
        /* Entries after the archive's end may be older than the restore
         * time: only when this node sees the partition's archive caught up
         * (or none newer was committed) is the archive the whole truth. */
        struct group *g = t->parts[p].g;
        if (last_ms < j->t_ms && g) {
            struct group_status st;
            group_status(g, &st);
            if (st.commit > end) {
                snprintf(why, sizeof why,
                         "partition %d: the archive holds entries up to %llu, %llu are committed "
                         "(the archive is behind); restore to an earlier time or retry",
                         p, (unsigned long long)end, (unsigned long long)st.commit);
                break;
            }
        }
        if (!index)
            continue; /* nothing written by then */
        char scratch[] = "/tmp/nines-restore-XXXXXX";
        if (!mkdtemp(scratch)) {
            snprintf(why, sizeof why, "mkdtemp: %s", strerror(errno));
            break;
        }
        struct reference_options o = {.url = conf->archive_url,
                                      .group = group,
                                      .upto = index,
                                      .hash_name = t->hash_name,
                                      .range_name = t->range_name,
                                      .hash_type = t->hash_type,
                                      .range_type = t->range_type,
                                      .scratch = scratch,
                                      .on_item = on_item,
                                      .item_arg = j};
        struct reference_result r;
        int rc = reference_build(&o, &r, &e);
        char f[sizeof scratch + 16];
        snprintf(f, sizeof f, "%s/data.mdb", scratch);
        unlink(f);
        snprintf(f, sizeof f, "%s/lock.mdb", scratch);
        unlink(f);
        rmdir(scratch);
        if (!rc && json_array_size(j->batch)) {
            json_t *b = j->batch;
            j->batch = json_array();
            rc = send_batch(j, b);
        }
        if (rc || drain(j)) {
            snprintf(why, sizeof why, "partition %d: %.480s", p,
                     rc && e.msg[0] ? e.msg : j->bw.why);
            break;
        }
        restore_set(j, 1, NULL);
    }
    if (!why[0] && drain(j))
        snprintf(why, sizeof why, "%s", j->bw.why);
out:
    if (why[0])
        log_error("restore of %s into %s at %lld ms: %s; the table holds what was written before",
                  j->source, j->target, (long long)j->t_ms, why);
    else
        log_info("restore of %s into %s at %lld ms: %llu items in %.1f s", j->source, j->target,
                 (long long)j->t_ms, (unsigned long long)j->items,
                 (double)(clock_mono_ms() - t0) / 1000.0);
    /* Wait for any batch still in flight before the job goes. */
    pthread_mutex_lock(&j->bw.mu);
    while (j->bw.inflight > 0)
        pthread_cond_wait(&j->bw.cv, &j->bw.mu);
    pthread_mutex_unlock(&j->bw.mu);
    restore_set(j, 0, why[0] ? why : NULL);
    table_put(j->src);
    json_decref(j->batch);
    json_decref(j->bw.retry);
    pthread_mutex_destroy(&j->bw.mu);
    pthread_cond_destroy(&j->bw.cv);
    free(j->source);
    free(j->target);
    free(j);
    return NULL;
}

struct create_call {
    struct call c;
    struct rjob *j;
    char arn[600];
};

static void restore_created(void *arg, int status, void *result)
{
    struct create_call *cc = arg;
    struct catalog_result *r = result;
    struct rjob *j = cc->j;
    int started = 0;
    if (status || !r || r->status) {
        if (r && r->status == NERR_EXISTS)
            api_reply_err(&cc->c, "TableAlreadyExistsException", "Table already exists: %s",
                          j->target);
        else if (status == NERR_BUSY)
            api_reply_err(&cc->c, "ServiceUnavailable",
                          "no leader of the metadata group accepted the new table; retry");
        else
            api_reply_err(&cc->c, "InternalServerError", "the target table was not created (%s)",
                          nerr_name(status ? status
                                    : r    ? r->status
                                           : NERR_INTERNAL));
    } else {
        pthread_mutex_lock(&restores_mu);
        size_t slot = nrestores < RESTORES_MAX ? nrestores++ : (size_t)(j->t_ms % RESTORES_MAX);
        struct restore *rs = &restores[slot];
        memset(rs, 0, sizeof *rs);
        snprintf(rs->target, sizeof rs->target, "%s", j->target);
        snprintf(rs->source_arn, sizeof rs->source_arn, "%s", cc->arn);
        rs->at_s = (double)j->t_ms / 1000.0;
        rs->in_progress = 1;
        j->slot = slot;
        pthread_mutex_unlock(&restores_mu);
        json_t *d = json_deep_copy(r->desc);
        char tarn[600];
        snprintf(tarn, sizeof tarn, "arn:aws:dynamodb:%s:000000000000:table/%s",
                 cc->c.a->opt.region, j->target);
        json_object_set_new(d, "TableArn", json_string(tarn));
        json_object_set_new(d, "TableStatus", json_string("CREATING"));
        json_object_set_new(d, "RestoreSummary",
                            json_pack("{s:s,s:f,s:b}", "SourceTableArn", cc->arn, "RestoreDateTime",
                                      (double)j->t_ms / 1000.0, "RestoreInProgress", 1));
        json_object_set(d, "NinesPartitions", json_object_get(d, "Partitions"));
        json_object_del(d, "Partitions");
        api_reply_json(&cc->c, json_pack("{s:o}", "TableDescription", d));
        pthread_t th;
        if (!pthread_create(&th, NULL, restore_main, j)) {
            pthread_detach(th);
            started = 1;
        } else {
            restore_set(j, 0, "cannot start the restore thread");
        }
    }
    catalog_result_free(r);
    router_finish(cc->c.rc);
    if (!started) {
        table_put(j->src);
        json_decref(j->batch);
        json_decref(j->bw.retry);
        free(j->source);
        free(j->target);
        free(j);
    }
    free(cc);
}

void ops_restore_pitr(struct call *c, json_t *req)
{
    const char *src, *arn, *dst;
    const struct cluster_conf *conf = c->a->opt.conf;
    if (api_get_str(c, req, "SourceTableName", &src) ||
        api_get_str(c, req, "SourceTableArn", &arn) || api_get_str(c, req, "TargetTableName", &dst))
        return;
    if (!src && arn && strstr(arn, ":table/"))
        src = strstr(arn, ":table/") + 7;
    if (!src || !dst) {
        api_reply_err(c, "ValidationException",
                      "SourceTableName (or SourceTableArn) and TargetTableName are required");
        return;
    }
    if (!api_valid_table_name(dst)) {
        api_reply_bad_table_name(c, dst);
        return;
    }
    json_t *when = json_object_get(req, "RestoreDateTime");
    int latest = json_is_true(json_object_get(req, "UseLatestRestorableTime"));
    if ((when && latest) || (!when && !latest) || (when && !json_is_number(when))) {
        api_reply_err(c, "ValidationException",
                      "give exactly one of RestoreDateTime (seconds since the epoch) and "
                      "UseLatestRestorableTime");
        return;
    }
    if (!conf || !conf->archive_url) {
        api_reply_err(c, "PointInTimeRecoveryUnavailableException",
                      "Point in time recovery is not enabled for table '%s': this cluster has no "
                      "WAL archive (docs/archive.md)",
                      src);
        return;
    }
    struct table *t = catalog_get(c->a->opt.cat, src);
    if (!t) {
        api_reply_err(c, "TableNotFoundException", "Table not found: %s", src);
        return;
    }
    int64_t lat = latest_ms(conf);
    int64_t t_ms = latest ? lat : (int64_t)llround(json_number_value(when) * 1000.0);
    double earliest = creation_s(t),
           kept = (double)(clock_wall_ms() - (int64_t)(conf->archive_retention_ns / 1000000)) / 1000.0;
    if (kept > earliest)
        earliest = kept;
    if (!latest && (t_ms > lat || (double)t_ms / 1000.0 < earliest - 0.001)) {
        api_reply_err(c, "InvalidRestoreTimeException",
                      "RestoreDateTime %.3f is outside the restorable window %.3f..%.3f of table "
                      "%s",
                      (double)t_ms / 1000.0, earliest, (double)lat / 1000.0, src);
        table_put(t);
        return;
    }
    struct rjob *j = calloc(1, sizeof *j);
    struct create_call *cc = calloc(1, sizeof *cc);
    json_t *def =
        json_pack("{s:O,s:O,s:O,s:f}", "KeySchema", json_object_get(t->desc, "KeySchema"),
                  "AttributeDefinitions", json_object_get(t->desc, "AttributeDefinitions"),
                  "Partitions", json_object_get(t->desc, "Partitions"), "CreationDateTime",
                  (double)clock_wall_ms() / 1000.0);
    if (!j || !cc || !def || !(j->source = strdup(src)) || !(j->target = strdup(dst)) ||
        !(j->batch = json_array()) || !(j->bw.retry = json_array())) {
        if (j) {
            free(j->source);
            free(j->target);
            json_decref(j->batch);
            json_decref(j->bw.retry);
        }
        free(j);
        free(cc);
        json_decref(def);
        table_put(t);
        api_reply_err(c, "InternalServerError", "out of memory");
        return;
    }
    json_t *bm = json_object_get(t->desc, "BillingMode");
    if (bm)
        json_object_set(def, "BillingMode", bm);
    json_t *pt = json_object_get(t->desc, "ProvisionedThroughput");
    if (pt)
        json_object_set(def, "ProvisionedThroughput", pt);
    pthread_mutex_init(&j->bw.mu, NULL);
    pthread_cond_init(&j->bw.cv, NULL);
    j->a = c->a;
    j->src = t;
    j->t_ms = t_ms;
    cc->j = j;
    cc->c = *c;
    snprintf(cc->arn, sizeof cc->arn, "arn:aws:dynamodb:%s:000000000000:table/%s", c->a->opt.region,
             src);
    cc->c.rc = call_take(c);
    int rc = catalog_propose_create(c->a->opt.cat, dst, def, restore_created, cc);
    json_decref(def);
    if (rc)
        restore_created(cc, rc, NULL);
}
