/*
 * raftwire.h — the byte form of a consensus message (struct raft_msg) as it
 * travels between nodes inside a transport record (store/transport.h, which
 * frames and checksums; the record carries the group id). Layout, all
 * integers little-endian (docs/replication.md, "Message format"):
 *
 *   u8 version (2)  u8 type  u16 reserved (0)
 *   u32 from  u32 to  u32 reject  u32 n_entries
 *   u64 term  u64 index  u64 log_term  u64 commit  u64 hint  u64 ctx
 *   u32 reserved (0)
 *   u32 conf.voters  u32 conf.voters_out  u32 conf.log
 *   n_entries x { u64 term  u64 index  u32 type  u32 len  len bytes }
 *   u32 data_len  data_len bytes
 *
 * The configuration (struct raft_conf) is carried by every type; only
 * SNAPSHOT and SNAP_CHUNK use it (the configuration at the snapshot's
 * index). Version 1 is the same layout without the configuration (its
 * header ends after the reserved u32, 72 bytes) and without the entry
 * type. raftwire_encode writes version 1 when the message needs nothing
 * else (conf all zero, no CONF entry), else version 2, so a node of the
 * version before membership changes understands every message of a group
 * that never changed (a rolling upgrade keeps its quorums); raftwire_decode
 * takes both (version 1: conf all zero, every entry RAFT_ENTRY_NORMAL).
 *
 * raftwire_decode checks everything it can without the group's state: the
 * version, a known type, exact lengths (no trailing bytes, nothing cut
 * short), n_entries <= RAFT_MAX_BATCH and entries only in APPEND, entry
 * lengths <= RAFT_MAX_ENTRY, entry types NORMAL or CONF (a CONF entry's
 * data exactly RAFT_CONF_ENC_LEN bytes), data only in SNAPSHOT, FWD_PROPOSE and
 * SNAP_CHUNK (at most SNAP_MAX_CHUNK, RAFT_MAX_ENTRY and SNAP_MAX_CHUNK
 * bytes), consecutive entry indexes starting at index + 1, and no message
 * longer than RAFTWIRE_MAX_MSG. Anything else is
 * NERR_INVALID with the reason in err, and nothing is allocated. The
 * consensus core then checks membership, terms and indexes (raft_step).
 *
 * Ownership: raftwire_encode returns a malloc'd buffer; raftwire_decode
 * fills m with malloc'd entries/data that raft_msg_release frees.
 * Thread-safe (no shared state).
 */
#ifndef NINES_RAFTWIRE_H
#define NINES_RAFTWIRE_H

#include <stddef.h>

#include "lib/err.h"
#include "store/raft.h"

#define RAFTWIRE_VERSION 2
#define RAFTWIRE_HEADER 84    /* version 2 */
#define RAFTWIRE_HEADER_V1 72 /* version 1: no configuration */
#define RAFTWIRE_ENTRY 24     /* an entry's fixed part (version 1: 20) */

/* Host-level messages in the same format, never given to raft_step:
 * FWD_PROPOSE: a member that is not the leader hands the leader a proposal
 *   (index = request id, data = the framed entry, <= RAFT_MAX_ENTRY);
 * FWD_NACK: the receiver is not the leader (index = request id): nothing was
 *   proposed, the sender may try again. */
#define RAFTWIRE_FWD_PROPOSE 200
#define RAFTWIRE_FWD_NACK 201
/* Snapshot streams (store/snapstream.h), handled by the snapshot thread:
 * SNAP_CHUNK: term = leader's term, index = snapshot index, log_term = its
 *   term, commit = offset of the chunk in the stream, hint = the stream's
 *   length, ctx = CRC-32C of the whole stream, reject = CRC-32C of the
 *   chunk, data = the chunk (1..SNAP_MAX_CHUNK bytes);
 * SNAP_ACK: the same term, index and log_term; commit = the offset the
 *   receiver has written up to; ctx = 1 once the whole stream is verified
 *   and kept; reject = 1: unknown or failed stream, start over. */
#define RAFTWIRE_SNAP_CHUNK 202
#define RAFTWIRE_SNAP_ACK 203
/* Node-level liveness (group_driver.c): NODE_BEAT, sent with group 0 to every
 * peer node each heartbeat interval; ctx = the sender's incarnation (changes
 * when it restarts). Nothing else. */
#define RAFTWIRE_NODE_BEAT 204

/* The longest message the store sends between nodes: an append carries at
 * most RAFT_MAX_APPEND_BYTES of entries, or one entry of up to
 * RAFT_MAX_ENTRY; a snapshot chunk at most SNAP_MAX_CHUNK (= RAFT_MAX_ENTRY).
 * The fixed parts add at most RAFTWIRE_HEADER + 4 + RAFTWIRE_ENTRY bytes to
 * the largest (one entry of RAFT_MAX_ENTRY, 112 bytes), well inside the 4096
 * of slack; an append of RAFT_MAX_BATCH small entries is 1 MiB at most plus
 * 64 x RAFTWIRE_ENTRY.
 * A quarter of the transport's default per-peer queue (16 MiB), so a queue
 * never refuses a message for being large, only for being full
 * (docs/transport.md, "Message bounds"). Senders assert it; the decoder
 * refuses anything longer. */
#define RAFTWIRE_MAX_MSG (RAFT_MAX_ENTRY + 4096u)

int raftwire_encode(const struct raft_msg *m, unsigned char **out, size_t *len);
int raftwire_decode(const void *buf, size_t len, uint64_t group, struct raft_msg *m,
                    struct nerr *err);

#endif
