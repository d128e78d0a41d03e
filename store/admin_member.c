/*
 * admin_member.c — NinesAdmin.ReplaceReplica: replacing one member of a
 * partition's replication group (catalog.h, "Membership of one partition";
 * docs/replication.md, "Replacing a replica").
 *
 *   {TableName, Partition, Node, To?}
 *       begins replacing Node's member of the partition by a new member on
 *       To (default: catalog_choose_replacement, never a node listed in
 *       Avoid: [node ids]): the metadata entry member_add. The partition's
 *       leader then changes the configuration and the change is finished
 *       by the healers (store/healer.h). Answers {TableName, Partition,
 *       Replacing, With, Add, Remove}; when this same replacement is
 *       already under way, the same with Already: true.
 *   {TableName, Partition, Finish: true, TableId}
 *       (sent by healers) ends the change in progress: member_done.
 *
 * Runs on a member of the metadata group (its proposal goes to that
 * group's leader); another node answers ServiceUnavailable naming them.
 * Errors: ValidationException (bad arguments, Node holds no
 * replica, To already holds one or is no node of the cluster, another
 * change of the partition in progress), ResourceNotFoundException,
 * ServiceUnavailable (metadata group without a leader: the router tries
 * again).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/clusterfile.h"
#include "store/api_internal.h"

struct member_call {
    struct call c;
    char *table, *node, *to;
    int part, add, remove, finish;
};

static void member_call_free(struct member_call *mc)
{
    free(mc->table);
    free(mc->node);
    free(mc->to);
    free(mc);
}

static void member_done(void *arg, int status, void *result)
{
    struct member_call *mc = arg;
    struct catalog_result *r = result;
    if (status || !r)
        api_reply_err(&mc->c, "ServiceUnavailable", "metadata write failed (%s); retry",
                      nerr_name(status));
    else if (r->status == NERR_NOTFOUND)
        api_reply_err(&mc->c, "ResourceNotFoundException", "Requested resource not found");
    else if (r->status == NERR_BUSY)
        api_reply_err(&mc->c, "ValidationException",
                      mc->finish ? "partition %d of %s has no replacement in progress"
                                 : "partition %d of %s has another replacement in progress",
                      mc->part, mc->table);
    else if (r->status)
        api_reply_err(&mc->c, "ValidationException",
                      "the replacement was refused: %s (the slots changed meanwhile?)",
                      nerr_name(r->status));
    else if (mc->finish)
        api_reply_json(&mc->c, json_pack("{s:s,s:i,s:b}", "TableName", mc->table, "Partition",
                                         mc->part, "Finished", 1));
    else
        api_reply_json(&mc->c, json_pack("{s:s,s:i,s:s,s:s,s:i,s:i}", "TableName", mc->table,
                                         "Partition", mc->part, "Replacing", mc->node, "With",
                                         mc->to, "Add", mc->add, "Remove", mc->remove));
    catalog_result_free(r);
    member_call_free(mc);
}

void admin_replace_replica(struct call *c, json_t *req)
{
    struct api *a = c->a;
    const char *name = NULL, *node = NULL, *to = NULL, *tid = NULL;
    if (api_get_str(c, req, "TableName", &name) || api_get_str(c, req, "Node", &node) ||
        api_get_str(c, req, "To", &to) || api_get_str(c, req, "TableId", &tid))
        return;
    json_t *pj = json_object_get(req, "Partition"), *avoid = json_object_get(req, "Avoid");
    int finish = json_is_true(json_object_get(req, "Finish"));
    if (!name || !json_is_integer(pj) || (!finish && !node) || (avoid && !json_is_array(avoid)) ||
        json_array_size(avoid) > 64) {
        api_reply_err(c, "ValidationException",
                      "TableName, Partition (a number) and Node (or Finish: true) are required; "
                      "Avoid is a list of at most 64 node ids");
        return;
    }
    if (!catalog_meta(a->opt.cat)) {
        const char *nodes[CATALOG_MAX_REPLICAS];
        int n = catalog_meta_nodes(a->opt.cat, nodes);
        char list[256] = "";
        for (int k = 0; k < n; k++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "",
                     nodes[k]);
        api_reply_err(c, "ServiceUnavailable",
                      "this node is no member of the metadata group; ask one of: %s", list);
        return;
    }
    struct table *t = catalog_get(a->opt.cat, name);
    if (!t) {
        api_reply_no_table(c, name);
        return;
    }
    json_int_t pi = json_integer_value(pj);
    if (pi < 0 || pi >= t->nparts) {
        api_reply_err(c, "ValidationException", "table %s has partitions 0..%d", name,
                      t->nparts - 1);
        table_put(t);
        return;
    }
    struct member_call *mc = calloc(1, sizeof *mc);
    if (!mc || !(mc->table = strdup(name))) {
        free(mc);
        table_put(t);
        api_reply_err(c, "InternalServerError", "out of memory");
        return;
    }
    mc->part = (int)pi;
    mc->finish = finish;
    const struct pmembers *pm = partition_members(&t->parts[pi]);
    char *id = strdup(t->id);
    int rc = 0;
    if (finish) {
        if (tid && strcmp(tid, t->id)) {
            api_reply_err(c, "ResourceNotFoundException", "table %s is not %s any more", name, tid);
            goto fail;
        }
    } else {
        int remove = 0;
        for (int k = 0; k < pm->nslots; k++)
            if (!strcmp(pm->slots[k], node))
                remove = k + 1;
        if (!remove) {
            api_reply_err(c, "ValidationException", "%s holds no replica of %s partition %d", node,
                          name, (int)pi);
            goto fail;
        }
        if (pm->chg_add) {
            if (pm->chg_remove == remove && (!to || !strcmp(to, pm->slots[pm->chg_add - 1]))) {
                api_reply_json(c, json_pack("{s:s,s:i,s:s,s:s,s:i,s:i,s:b}", "TableName", name,
                                            "Partition", (int)pi, "Replacing", node, "With",
                                            pm->slots[pm->chg_add - 1], "Add", pm->chg_add,
                                            "Remove", remove, "Already", 1));
            } else {
                api_reply_err(c, "ValidationException",
                              "partition %d of %s is replacing member %d (%s) already; one change "
                              "at a time",
                              (int)pi, name, pm->chg_remove, pm->slots[pm->chg_remove - 1]);
            }
            goto fail;
        }
        const char *pick = to;
        if (to) {
            if (!cluster_conf_node(a->opt.conf, to)) {
                api_reply_err(c, "ValidationException", "%s is no node of the cluster file", to);
                goto fail;
            }
            for (int k = 0; k < pm->nmembers; k++)
                if (!strcmp(pm->members[k], to)) {
                    api_reply_err(c, "ValidationException", "%s holds a replica of it already", to);
                    goto fail;
                }
        } else {
            const char *ex[64];
            size_t nex = 0;
            size_t i;
            json_t *v;
            json_array_foreach(avoid, i, v) if (json_is_string(v)) ex[nex++] = json_string_value(v);
            struct nerr e = {0};
            if (catalog_choose_replacement(a->opt.cat, t, (int)pi, node, ex, nex, &pick, &e)) {
                api_reply_err(c, "ValidationException", "no node can take the replica: %s", e.msg);
                goto fail;
            }
        }
        int add = catalog_new_member_id(pm, pick);
        if (!add) {
            api_reply_err(c, "ValidationException", "partition %d of %s has no free member id",
                          (int)pi, name);
            goto fail;
        }
        mc->add = add;
        mc->remove = remove;
        mc->node = strdup(node);
        mc->to = strdup(pick);
        if (!mc->node || !mc->to || !id) {
            api_reply_err(c, "InternalServerError", "out of memory");
            goto fail;
        }
    }
    mc->c = *c;
    table_put(t);
    t = NULL;
    rc = finish ? catalog_propose_member_done(a->opt.cat, name, id, (int)pi, member_done, mc)
                : catalog_propose_member_add(a->opt.cat, name, id, (int)pi, mc->add, mc->to,
                                             mc->remove, member_done, mc);
    free(id);
    if (rc) {
        api_reply_err(&mc->c, "ServiceUnavailable", "metadata group unavailable: %s; retry",
                      nerr_name(rc));
        member_call_free(mc);
    }
    return;
fail:
    free(id);
    table_put(t);
    member_call_free(mc);
}
