/*
 * admin.h — the typed model of a node's NinesAdmin.Status answer, shared by
 * the server that encodes it (store/admin.c) and every client that reads it
 * (nines cluster status, the game-day runner, the scrubber later), so that
 * no reader looks fields up by name on its own.
 *
 * The wire form (docs/replication.md, "Status"), one JSON object:
 *
 *   {"node","az","rack","cluster","time_ms",
 *    "groups":[{"group","table","table_id","partition","members":[ids],
 *               "role","leader","term","commit","applied","last_index",
 *               "first_index","lease","failed",
 *               "snapshot":{"sending","peer_member","index","bytes","total",
 *                           "rate_bps","eta_ms"}   (only while a stream is in flight),
 *               "conf":{"voters":[ids],"voters_out":[ids] (only when joint),
 *                       "log":[ids],"joint","epoch","committed"}}],
 *    "messages":{"in","out","dropped_malformed","dropped_forged",
 *                "dropped_unknown_group","dropped_by_raft","send_failures"},
 *    "node_log":{"records","syncs","bytes","segments","streams"}}
 *
 * table, table_id and partition are null for the metadata group; leader is
 * null while none is known. admin_status_to_json writes the members in this
 * order, so its compact dump is byte for byte what ninesd has always sent
 * (t/lib/Nines.pm and the integration tests read it).
 *
 * Reading is strict about types and tolerant of what it does not know:
 * "node" (a string) and "groups" (an array) are required, and every group
 * needs "group" (a string); any other member may be absent (an older or a
 * newer node), but a member that is present must have its type (string or
 * null, a non-negative integer, a boolean, an array of strings), else
 * NERR_PARSE with a message naming the group and the member. Unknown
 * members are ignored. Absent numbers read as ADMIN_ABSENT (absent booleans
 * too), absent strings as NULL.
 *
 * Ownership. To encode, the caller fills a struct whose strings and arrays
 * it owns (borrowed for the call). A decoded struct borrows its strings
 * from the JSON value it was read from and holds a reference to it; its
 * arrays are malloc'd; admin_status_clear releases all of it.
 * Errors: NERR_NOMEM, NERR_PARSE (decoding). Thread-safety: none needed;
 * the functions keep no state.
 */
#ifndef NINES_PROTO_ADMIN_H
#define NINES_PROTO_ADMIN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define ADMIN_ABSENT (-1) /* a number or boolean the report did not carry */

struct admin_group {
    const char *group;          /* "meta", or the partition's group name */
    const char *table;          /* NULL: the metadata group */
    const char *table_id;       /* NULL: the metadata group */
    int64_t partition;          /* ADMIN_ABSENT: null (the metadata group) */
    const char *const *members; /* node ids, member 1 first */
    size_t nmembers;
    const char *role;   /* "leader", "follower", "candidate", "pre-candidate" */
    const char *leader; /* node id; NULL when none is known */
    int64_t term, commit, applied, last_index, first_index;
    int lease, failed; /* 0, 1, or ADMIN_ABSENT */
    int quiescent;     /* asleep (store/raft.h, "Quiescence"); the key "quiescent": true is
                          present only then */
    /* A snapshot stream in flight (docs/replication.md, "Snapshots"); the
     * key "snapshot" is present only then: {"sending": bool, "peer_member",
     * "index", "bytes", "total", "rate_bps", "eta_ms"}. */
    int snap_active, snap_sending;
    int64_t snap_peer, snap_index, snap_bytes, snap_total, snap_rate, snap_eta_ms;
    /* The membership configuration (store/group.h, group_conf_get); the key
     * "conf" is present when has_conf: {"voters": [node ids], "voters_out":
     * [node ids] (only when joint: the outgoing voters), "log": [node ids of
     * the log members], "joint": bool, "epoch": the index of the entry that
     * made it (0: the group's initial configuration), "committed": bool}.
     * members lists the slots with a node, member id order. */
    int has_conf;
    const char *const *conf_voters, *const *conf_voters_out, *const *conf_log;
    size_t nconf_voters, nconf_voters_out, nconf_log;
    int conf_joint, conf_committed; /* 0, 1, or ADMIN_ABSENT */
    int64_t conf_epoch;
};

struct admin_messages {
    int64_t in, out, dropped_malformed, dropped_forged, dropped_unknown_group, dropped_by_raft,
        send_failures;
};

struct admin_node_log {
    int64_t records, syncs, bytes, segments, streams;
};

struct admin_status {
    const char *node, *az, *rack, *cluster;
    int64_t time_ms;
    struct admin_group *groups;
    size_t ngroups;
    struct admin_messages messages;
    struct admin_node_log node_log;
    /* Quiescence counts of the node: the key "quiescence" {"asleep",
     * "ticked", "peer_down_reports", "peer_restarts"} is present only when
     * has_quiescence. */
    int has_quiescence;
    int64_t q_asleep, q_ticked, q_peer_downs, q_peer_restarts;
    /* "summary" {"groups", "leading", "asleep", "failed"}: the replicas on
     * this node, how many lead, sleep, failed. Present when has_summary
     * (every ninesd sends it; a request {"Groups": false} gets it with an
     * empty "groups", for a node with very many partitions). Decoded:
     * has_summary 0 and the counts ADMIN_ABSENT when absent. */
    int has_summary;
    int64_t sum_groups, sum_leading, sum_asleep, sum_failed;
    json_t *src; /* decoded: the value the strings are borrowed from */
};

/* The wire form of s (a new reference). NERR_NOMEM. */
int admin_status_to_json(const struct admin_status *s, json_t **out, struct nerr *err);

/* Reads j into *out (which it overwrites). On an error *out is left empty
 * (admin_status_clear is harmless on it). */
int admin_status_from_json(const json_t *j, struct admin_status *out, struct nerr *err);

void admin_status_clear(struct admin_status *s);

/* 1 when g's role is role. */
int admin_group_role_is(const struct admin_group *g, const char *role);

#endif
