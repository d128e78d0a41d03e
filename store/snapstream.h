/*
 * snapstream.h — a snapshot travels from a group's leader to a lagging
 * follower as a stream of bounded chunks, never as one message
 * (docs/replication.md, "Snapshots"; docs/transport.md, "Message bounds").
 *
 * Sender. The consensus core asks for a snapshot (a metadata-only
 * RAFT_MSG_SNAPSHOT in a leader's ready); the driver hands this module a
 * source — a read transaction of LMDB at the group's applied index S and
 * the partition's database, or (small state machines such as the catalog)
 * a buffer — with S, the term of S and the leader's term
 * (snapstream_offer). The module's thread then measures the stream (one
 * pass: its length and CRC-32C, nothing kept), and sends it in chunks of at
 * most `chunk` bytes (RAFTWIRE_SNAP_CHUNK: group, S, term of S, leader term,
 * offset, total length, CRC-32C of the whole stream, CRC-32C of the chunk),
 * at most `window` chunks unacknowledged, at most `rate` bytes a second
 * over all streams of the node (a token bucket). The receiver acknowledges
 * the offset it has written up to (RAFTWIRE_SNAP_ACK). A chunk lost, refused
 * by a full transport queue or damaged is sent again from the last
 * acknowledged offset once `resend_ms` pass without progress (the window is
 * kept in memory, so a reconnect resumes without starting over). A stream
 * ends when the receiver reports the whole verified, when the member stops
 * leading that term, when the group closes, or after `stall_ms` without
 * progress. One stream per follower at a time; after a stream ends, a new
 * one to the same follower waits a short cool-down (the follower's
 * acknowledgement of the install is on its way), so a lagging follower is
 * never sent the same snapshot again and again.
 *
 * Receiver. Chunks are taken in order only: a chunk whose CRC is wrong is
 * refused (counted, no acknowledgement), a duplicate or a chunk from beyond
 * the next expected offset is ignored and answered with the offset expected.
 * The payload is written to <dir>/SNAPSHOT.recv after a header slot;
 * once the last byte is in, the file is fdatasync'd, its length and whole
 * CRC are checked against the stream's, the header (group_files.c format,
 * snapfile_*) is written and synced, and the file is renamed to
 * <dir>/SNAPSHOT.ready.<S> (directory fsync'd). Only then does the module
 * hand the group a metadata-only RAFT_MSG_SNAPSHOT (deliver): the
 * consensus core learns S, its term and the leader, and the host installs
 * the ready file (group_driver.c). A truncated or damaged stream is never
 * delivered. A chunk of a new stream (offset 0) replaces a stream in
 * progress; a later chunk of a stream not begun is answered with offset 0
 * (the sender resends from there, or gives the stream up when its window
 * no longer holds it, and the core asks again).
 *
 * Threads. One thread per module does all sending, receiving and file I/O.
 * Every function here is thread-safe. deliver and send are called on the
 * module's thread and must not block for long.
 *
 * Ownership. snapstream_offer takes the source on success only (the read
 * transaction is ended with state_read_end, the buffer freed, when the
 * stream ends). snapstream_recv takes m's data (it sets m->data to NULL).
 * Registered strings are copied.
 */
#ifndef NINES_SNAPSTREAM_H
#define NINES_SNAPSTREAM_H

#include <lmdb.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"
#include "store/raft.h"
#include "store/state.h"

#define SNAP_CHUNK_BYTES (1u << 20)      /* default chunk payload */
#define SNAP_MAX_CHUNK (4u << 20)        /* the most a chunk may carry on the wire */
#define SNAP_WINDOW 4                    /* default unacknowledged chunks */
#define SNAP_DEFAULT_RATE (100ull << 20) /* bytes a second */
#define SNAP_MAX_TOTAL (1ull << 40)      /* a stream longer than this is refused */

/* The SNAPSHOT file (group_files.c): a header then the payload
 * (state.h's "N9SN" format). Version 3 header, 64 bytes, little-endian:
 *   "N9SS" u32 3  u64 index  u64 term  u64 length  u32 crc32c(payload)
 *   u32 flags  u32 conf.voters  u32 conf.voters_out  u32 conf.log
 *   u32 crc32c(header bytes 0..51)  u32 0  u32 0  u32 0
 * conf: the configuration in effect at index (raft.h, struct raft_conf;
 * all zero: the group's initial one). flags SNAPFILE_META: no payload;
 * LMDB's state (synced before the file was written) is at or past index.
 * Still read: version 2 (48 bytes: as version 3 up to flags, then
 * u32 crc32c(bytes 0..39) u32 0; conf zero) and version 1 (32 bytes:
 * "N9SS" u32 1 u64 index u64 term u32 crc u32 length; conf zero). */
#define SNAPFILE_HEADER 64
#define SNAPFILE_HEADER_V2 48
#define SNAPFILE_META 1u
struct snapfile {
    uint64_t index, term;
    uint64_t len; /* payload bytes */
    uint64_t off; /* where the payload starts in the file */
    uint32_t crc; /* of the payload */
    uint32_t flags;
    struct raft_conf conf; /* at index */
};
void snapfile_header(unsigned char b[SNAPFILE_HEADER], const struct snapfile *f);
/* Parses the header at the start of a file of file_len bytes; NERR_CORRUPT
 * when it is not one or the length does not match the file. */
int snapfile_parse(const unsigned char *b, size_t n, uint64_t file_len, struct snapfile *f,
                   struct nerr *err);
/* Reads the header of the file at fd. */
int snapfile_read(int fd, const char *path, struct snapfile *f, struct nerr *err);
/* CRC-32C of the payload of an open file, read in bounded pieces. */
int snapfile_crc(int fd, const struct snapfile *f, uint32_t *crc, struct nerr *err);

struct snapstream;

struct snapstream_config {
    uint64_t rate;      /* bytes a second, all streams; 0 = SNAP_DEFAULT_RATE */
    uint32_t chunk;     /* bytes per chunk; 0 = SNAP_CHUNK_BYTES; <= SNAP_MAX_CHUNK */
    uint32_t window;    /* 0 = SNAP_WINDOW */
    uint32_t resend_ms; /* 0 = 2000 */
    uint32_t stall_ms;  /* 0 = 30000 */
    struct state *st;   /* ends the read transactions of sources (may be NULL without them) */
    /* Sends an encoded message (raftwire.h) to node `to` (group.h's send). */
    int (*send)(void *arg, const char *to, uint64_t gid, const void *msg, size_t len);
    void *send_arg;
    /* A verified snapshot for group gid from node `from` (a metadata-only
     * RAFT_MSG_SNAPSHOT, borrowed for the call). */
    void (*deliver)(void *arg, uint64_t gid, const char *from, const struct raft_msg *m);
    void *arg; /* deliver's */
};

int snapstream_start(const struct snapstream_config *c, struct snapstream **out, struct nerr *err);
/* Ends every stream (partial received files are removed) and the thread. */
void snapstream_stop(struct snapstream *ss);

/* A group of this node: members nodes[0..n) (member k+1 is nodes[k]; NULL:
 * no member has that id), self its member number, dir where received
 * snapshots are written. role and term are the group's published role and
 * term (group_internal.h); they must stay valid until snapstream_unregister
 * returns. */
int snapstream_register(struct snapstream *ss, uint64_t gid, const char *name, const char *dir,
                        const char *const *nodes, uint32_t n, uint32_t self,
                        const _Atomic int *role, const _Atomic uint64_t *term, struct nerr *err);
/* The group's slots changed (group_set_members): nodes as for register.
 * Streams in flight keep the node they started with. NERR_NOTFOUND for a
 * group not registered, NERR_NOMEM. */
int snapstream_set_members(struct snapstream *ss, uint64_t gid, const char *const *nodes,
                           uint32_t n, struct nerr *err);
void snapstream_unregister(struct snapstream *ss, uint64_t gid);

/* The state to stream: a read transaction and a database, or a buffer. */
struct snap_source {
    MDB_txn *txn;
    MDB_dbi dbi;
    unsigned char *buf; /* used when txn is NULL; malloc'd */
    size_t len;
};

/* 1 when a new stream to member `peer` of gid would be taken now (none in
 * flight, no recent one): the driver asks before it opens a transaction. */
int snapstream_wanted(struct snapstream *ss, uint64_t gid, uint32_t peer);
/* Starts a stream of the state at index (of term term; conf the
 * configuration in effect at index, NULL = all zero) to member peer, as
 * leader of leader_term. Every chunk carries conf; the receiver writes it
 * into the file's header and the SNAPSHOT message it delivers.
 * NERR_EXISTS when one is in flight or ended a moment ago, NERR_NOTFOUND
 * for an unknown group or a member without a node, NERR_NOMEM. */
int snapstream_offer(struct snapstream *ss, uint64_t gid, uint32_t peer, uint64_t leader_term,
                     uint64_t index, uint64_t term, const struct raft_conf *conf,
                     struct snap_source *src, struct nerr *err);

/* A RAFTWIRE_SNAP_CHUNK or RAFTWIRE_SNAP_ACK from node `from` (decoded by
 * raftwire_decode). */
void snapstream_recv(struct snapstream *ss, const char *from, uint64_t gid, struct raft_msg *m);

/* What is in flight for gid (for NinesAdmin.Status). 0 when nothing. */
struct snapstream_progress {
    int sending;     /* 1: this member sends; 0: it receives */
    uint32_t peer;   /* the other member */
    uint64_t index;  /* snapshot index */
    uint64_t bytes;  /* acknowledged (sending) or written (receiving) */
    uint64_t total;  /* 0 while the sender still measures */
    uint64_t rate;   /* bytes a second since the stream began */
    uint64_t eta_ms; /* at that rate */
};
int snapstream_progress(struct snapstream *ss, uint64_t gid, struct snapstream_progress *out);

struct snapstream_stats {
    uint64_t streams_started, streams_done, streams_failed;
    uint64_t chunks_sent, chunks_resent, send_refused; /* transport said no (queue full) */
    uint64_t chunks_in, chunks_bad, chunks_ignored;    /* damaged; duplicate or out of order */
    uint64_t installs_ready, installs_refused;         /* whole verified; verification failed */
};
void snapstream_stats(struct snapstream *ss, struct snapstream_stats *out);

#endif
