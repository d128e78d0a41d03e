/*
 * router.h — where a request runs: the operation table and the routing
 * decision of ninesd's API (docs/replication.md, "Routing").
 *
 * The operation table (Redis's command table) has one row per DynamoDB and
 * NinesAdmin operation: its name, its handler and its flags. Routing,
 * metrics and (later) admission control read the flags; nothing else keeps
 * lists of operation names. The row's cost hook is where admission control
 * will price a request; it is NULL until then.
 *
 * Every request arrives at some node. The router parses nothing itself (the
 * API parsed the body once) and resolves the table and the partition of the
 * key once per request; the handler receives them. Then it decides, per
 * attempt, with this node's view of the partition's group ("hosts" means a
 * replica of the partition is open here and has not failed: a failed replica
 * neither proposes nor applies, so it is treated as absent):
 *
 *   request              | this node                          | route
 *   ---------------------+------------------------------------+---------------
 *   write (POINT, META)  | hosts, leads or knows a leader     | PROPOSE
 *                        | hosts, no leader known             | WAIT
 *                        | hosts none                         | FORWARD member
 *   eventual read        | hosts                              | READ_LOCAL
 *                        | hosts none                         | FORWARD member
 *   consistent read      | leads, lease held, read index done | READ_LOCAL
 *                        | leads, no lease yet                | WAIT
 *                        | follows, leader known              | FORWARD leader
 *                        | no leader known                    | WAIT
 *                        | hosts none                         | FORWARD member
 *   MULTI (Scan, Batch*) | every partition READ_LOCAL/PROPOSE | LOCAL
 *                        | otherwise                          | SPLIT
 *   other (table reads,  |                                    | LOCAL
 *   malformed requests)  |                                    |
 *
 *  - PROPOSE: the handler builds the entry and calls group_propose; on a
 *    follower the group hands the entry to its leader over the peer
 *    transport (group.h). That is the one mechanism that gets a write to
 *    the leader: HTTP forwarding never aims a write at the leader.
 *  - FORWARD member: HTTP (forward.h) to another node that hosts the
 *    partition, rotating over the members (a per-router counter, then one
 *    step per attempt), so that it can PROPOSE or READ_LOCAL there. FORWARD
 *    leader: a consistent read goes to the leader this node knows.
 *  - WAIT: route again after ROUTE_RETRY_MS (fwd_after) while a leader is
 *    elected. A request that was itself forwarded is not kept waiting: it is
 *    answered 503 at once and the router that sent it tries elsewhere.
 *  - SPLIT: one sub-request per partition or per item, each routed as above
 *    (router.c).
 *
 * Retries. Every request has a deadline (ROUTE_DEADLINE_MS from arrival) and
 * at most ROUTE_MAX_ATTEMPTS routing attempts. A write whose proposal the
 * group refuses with NERR_BUSY (synchronously, or through done()) was never
 * appended or was overwritten, so it is routed and proposed again; the
 * client sees no error for it while the deadline allows. After the deadline
 * it is answered 503 ServiceUnavailable ("not executed"), which the SDKs
 * retry. NERR_TIMEOUT and NERR_IO mean "outcome unknown" and are answered
 * 500 at once. A forwarded request answered 503, or refused before it was
 * sent, is tried again; one that got no answer at all is retried only when
 * it is a read (a write may have been executed: the client decides).
 *
 * Threads: every function may run on any thread (HTTP, forwarder, driver,
 * applier). Nothing here blocks except group_read_index (bounded, for a
 * consistent read on the leader).
 */
#ifndef NINES_ROUTER_H
#define NINES_ROUTER_H

#include <jansson.h>

#define ROUTE_DEADLINE_MS 3000
#define ROUTE_RETRY_MS 15
#define ROUTE_MAX_ATTEMPTS 400

/* Flags of an operation. */
enum api_op_flag {
    API_OP_READ = 1u << 0,
    API_OP_WRITE = 1u << 1,
    API_OP_POINT = 1u << 2,      /* one item: the partition of its key */
    API_OP_RANGE = 1u << 3,      /* a key range of one partition (Query, a sub-Scan) */
    API_OP_MULTI = 1u << 4,      /* several partitions or tables: split when not all here */
    API_OP_CONSISTENT = 1u << 5, /* honours ConsistentRead */
    API_OP_META = 1u << 6,       /* goes through the metadata group */
    API_OP_ADMIN = 1u << 7,      /* NinesAdmin.*: answered here (signed as any call) */
    API_OP_TABLE = 1u << 8,      /* names one table in TableName: resolved once */
};

struct call;

struct api_opdef {
    const char *name;
    void (*handler)(struct call *c, json_t *req);
    unsigned flags;
    const char *key_member; /* POINT: where the key is ("Item" or "Key") */
    /* Admission control's price of a request (capacity units); NULL until
     * admission control lands. */
    int (*cost)(const struct call *c, const json_t *req);
};

/* The row of a DynamoDB operation (admin = 0) or a NinesAdmin one
 * (admin = 1); NULL when there is none. */
const struct api_opdef *router_op(const char *name, int admin);

/* What the router decided for one attempt (the table above). */
enum route_kind {
    ROUTE_LOCAL,      /* not bound to a partition: the handler runs here */
    ROUTE_PROPOSE,    /* a write; a replica here: the group gets it to the leader */
    ROUTE_READ_LOCAL, /* a read this replica may serve */
    ROUTE_FORWARD,    /* HTTP to another node that hosts the partition */
    ROUTE_WAIT,       /* no leader known: route again shortly */
    ROUTE_SPLIT,      /* sub-requests, each routed on its own */
};

#endif
