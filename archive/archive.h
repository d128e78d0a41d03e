/*
 * archive.h — the WAL archive: what a replication group's committed log and
 * snapshots look like once archived, where they go, and the proofs that
 * they are whole (docs/archive.md).
 *
 * Objects. An archive is a tree of objects under a URL: file:///abs/dir (a
 * local or shared directory) or sftp://user@host[:port]/abs/dir (files on
 * an SSH server, through net/ssh.h; see "sftp://" below). Per replication
 * group G (the partition's group name, which names its table by id):
 *
 *   G/log/FFFFFFFFFFFFFFFFFFFF-LLLLLLLLLLLLLLLLLLLL.piece   entries F..L
 *   G/log/FFFFFFFFFFFFFFFFFFFF-LLLLLLLLLLLLLLLLLLLL.json    its manifest
 *   G/snap/IIIIIIIIIIIIIIIIIIII.snap                        state at index I
 *   G/snap/IIIIIIIIIIIIIIIIIIII.json                        its manifest
 *
 * (indexes in 20 decimal digits, so names sort by index). A manifest is
 * written only after its object is in place and verified; an object
 * without a manifest is an upload that did not finish and counts for
 * nothing. Every write is atomic: a temporary name starting with '.',
 * written, fsync'd, then renamed into place and the directory fsync'd, so
 * a crash mid-upload leaves nothing that looks complete.
 *
 * Log piece (little-endian):
 *   "N9LP" u32 version=1 u64 first u64 first_term u64 last u64 last_term
 *   u64 count u16 glen u8[6] zero u32 crc32c(bytes 0..55) glen bytes group
 *   count x { u64 index u64 term u32 len u32 crc u8[len] data }
 *           crc = crc32c over index, term, len (their 20 bytes) and data
 *   "N9LE" u32 zero u64 count u8[32] SHA-256 of every byte before "N9LE"
 * Indexes are consecutive from first to last (count = last - first + 1),
 * terms never decrease. The data are the group's log entries as the store
 * wrote them (store/op.h); an entry of length 0 is a leader's no-op.
 *
 * Snapshot: the same header with magic "N9SN" (first = last = the index,
 * first_term = last_term = its term, count = the number of items), then
 * count x { u32 klen u32 vlen u32 crc u8[klen] key u8[vlen] item }
 *           crc = crc32c over klen, vlen (8 bytes), key and item
 * in ascending key order, then "N9SE" u32 zero u64 count u8[32] SHA-256.
 *
 * Manifest (JSON): {"v":1, "kind":"log"|"snapshot", "group", "table",
 * "partition", "object" (the object's name), "first", "first_term",
 * "last", "last_term" (log) or "index", "term", "digest" (snapshot: the
 * replica's set digest fingerprint at that index, store/digest.h, or
 * null), "entries"|"items", "bytes", "sha256" (hex of the whole object),
 * "uploader" (node id), "time_ms"}.
 *
 * sftp://. Public-key authentication only, strict known_hosts: a host key
 * that is not recorded, or differs from the recorded one, is refused
 * (NERR_AUTH naming the key's fingerprint), never learnt. The key and the
 * known_hosts file are archive_open_ssh's arguments; archive_open (and so
 * `nines archive ls|verify`) takes them from $NINES_ARCHIVE_SSH_KEY and
 * $NINES_ARCHIVE_KNOWN_HOSTS, by default ~/.ssh/id_ed25519 and
 * ~/.ssh/known_hosts. The atomic write is the same: a '.' temporary,
 * written, fsync'd (fsync@openssh.com), renamed over the final name with
 * rename(2) semantics (posix-rename@openssh.com), the directory fsync'd
 * (opened read-only, fsync@openssh.com): the server must be OpenSSH's
 * sftp-server or offer the same extensions. Every call is bounded: connect
 * (TCP, handshake, host key, authentication) 10 s, each SFTP request 30 s
 * without progress; a handle whose session died (a timeout, the server
 * gone) connects again on its next call. Errors name the URL and what
 * failed: connection refused (NERR_IO), host key unknown or CHANGED or
 * authentication failed (NERR_AUTH), the key file missing or the path
 * missing (NERR_NOTFOUND), a timeout (NERR_TIMEOUT).
 *
 * Proofs (archive_verify): every manifest parses (errors with line and
 * column) and names an object that exists, has the stated size and SHA-256,
 * parses with every CRC and the trailer holding, belongs to the group and
 * range the manifest and its path say; a group's pieces leave no gap and no
 * overlap; the log's first entry is 1 or follows a snapshot; an object
 * under the archive that none of this explains is reported as foreign. A
 * problem is reported, never skipped.
 *
 * Errors: values (lib/err.h). Thread-safety: an archive handle is used by
 * one thread at a time; the pure functions are thread-safe.
 */
#ifndef NINES_ARCHIVE_H
#define NINES_ARCHIVE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define ARCHIVE_MAX_OBJECT (512u << 20) /* bytes: a piece or a snapshot */
#define ARCHIVE_MAX_NAME 200            /* a group name */

/* ---- the formats (pure) ---- */

struct archive_entry {
    uint64_t index, term;
    uint32_t len;
    const unsigned char *data;
};

struct archive_item {
    uint32_t klen, vlen;
    const unsigned char *key, *val;
};

enum archive_kind { ARCHIVE_LOG = 1, ARCHIVE_SNAPSHOT = 2 };

/* What an object's header and trailer say. */
struct archive_object_info {
    enum archive_kind kind;
    char group[ARCHIVE_MAX_NAME + 1];
    uint64_t first, first_term, last, last_term;
    uint64_t count;
    unsigned char sha256[32]; /* of the whole object */
};

/* 1 when name is a usable group name: 1..ARCHIVE_MAX_NAME of
 * [A-Za-z0-9._-], not starting with '.'. */
int archive_group_ok(const char *name);

/* Encodes a log piece of n >= 1 consecutive entries (*out malloc'd).
 * NERR_INVALID for a gap, a decreasing term or a bad group name. */
int archive_piece_encode(const char *group, const struct archive_entry *e, size_t n,
                         unsigned char **out, size_t *len, struct nerr *err);
/* Encodes a snapshot of n items in ascending key order at (index, term). */
int archive_snap_encode(const char *group, uint64_t index, uint64_t term,
                        const struct archive_item *it, size_t n, unsigned char **out, size_t *len,
                        struct nerr *err);

/* Checks an object from its first to its last byte and fills *info. For
 * each entry (log) or item (snapshot) calls the matching callback when it
 * is not NULL; a callback's non-zero return stops the walk and is
 * returned. NERR_CORRUPT names the offset and what was wrong there. */
typedef int (*archive_entry_fn)(void *arg, const struct archive_entry *e);
typedef int (*archive_item_fn)(void *arg, const struct archive_item *it);
int archive_object_parse(const unsigned char *buf, size_t len, archive_entry_fn on_entry,
                         archive_item_fn on_item, void *arg, struct archive_object_info *info,
                         struct nerr *err);

/* n bytes as 2n lower-case hex characters and a NUL into out (manifests'
 * sha256, fingerprints). */
void archive_hex(const unsigned char *b, size_t n, char *out);

/* The object name of a piece or a snapshot, and of its manifest. */
void archive_piece_name(const char *group, uint64_t first, uint64_t last, char *buf, size_t cap);
void archive_snap_name(const char *group, uint64_t index, char *buf, size_t cap);
/* NAME.piece / NAME.snap -> NAME.json */
void archive_manifest_name(const char *object, char *buf, size_t cap);

/* ---- where objects go ---- */

struct archive;

/* Opens an archive URL: file:///absolute/dir or
 * sftp://user@host[:port]/absolute/dir (no password, no percent-encoding).
 * With create the directory is made when missing; without, NERR_NOTFOUND
 * when it is not there: a reader never mistakes a wrong path for an empty
 * archive. Anything else is NERR_INVALID naming what is accepted.
 * sftp:// connects at once (an error here names the URL and the cause) and
 * uses $NINES_ARCHIVE_SSH_KEY / $NINES_ARCHIVE_KNOWN_HOSTS (see "sftp://"
 * above). */
int archive_open(const char *url, int create, struct archive **out, struct nerr *err);
/* archive_open with the private key and the known_hosts file given (copied;
 * NULL: from the environment or the default, as archive_open). They are not
 * used by file:// URLs. */
int archive_open_ssh(const char *url, int create, const char *key_path, const char *known_hosts,
                     struct archive **out, struct nerr *err);
void archive_close(struct archive *a);
const char *archive_url(const struct archive *a);

/* Atomically creates or replaces object `name` (relative, '/'-separated,
 * no "..", no component starting with '.'): durable when it returns 0. */
int archive_put(struct archive *a, const char *name, const void *buf, size_t len, struct nerr *err);
/* Reads object `name` whole; NERR_NOTFOUND when absent, NERR_LIMIT above
 * max bytes. *buf is malloc'd. */
int archive_get(struct archive *a, const char *name, size_t max, unsigned char **buf, size_t *len,
                struct nerr *err);
int archive_remove(struct archive *a, const char *name, struct nerr *err);
/* Every object under the archive, relative names sorted bytewise
 * (temporaries included: they start with '.' in their last component).
 * *names is an array of malloc'd strings; archive_names_free frees it. */
int archive_list(struct archive *a, char ***names, size_t *n, struct nerr *err);
void archive_names_free(char **names, size_t n);
/* The objects directly in directory `dir` (relative, as a name), their
 * last components sorted bytewise, temporaries included; none (0) when
 * the directory does not exist. */
int archive_list_dir(struct archive *a, const char *dir, char ***names, size_t *n,
                     struct nerr *err);

/* ---- writing (the archiver) ---- */

struct archive_meta {
    const char *group, *table, *uploader;
    int partition;
    int64_t time_ms;
    const char *digest; /* snapshots: the set digest fingerprint (hex), or NULL */
};

/* Encodes, uploads and verifies (reads it back) the piece, then writes its
 * manifest. On return 0 the range is archived. */
int archive_put_log(struct archive *a, const struct archive_meta *m, const struct archive_entry *e,
                    size_t n, struct nerr *err);
int archive_put_snapshot(struct archive *a, const struct archive_meta *m, uint64_t index,
                         uint64_t term, const struct archive_item *it, size_t n, struct nerr *err);

/* ---- proofs and listing ---- */

/* Verifies the whole archive (see the top of this file). Returns 0 when it
 * could look at everything (the verdict is in the report), an error when
 * the archive cannot be read at all. *report (caller's):
 *   {"url", "groups": [{"group", "table", "partition", "pieces", "entries",
 *     "first", "last", "snapshots": [index, ...], "bytes", "restorable_from"}],
 *    "problems": [{"object", "problem", "expected", "found"}],
 *    "incomplete": [names of uploads that did not finish],
 *    "objects": N, "ok": true|false}
 * ok is false when problems is not empty. */
int archive_verify(struct archive *a, json_t **report, struct nerr *err);

/* `nines archive ls|verify URL`. */
int archive_main(int argc, char **argv);

#endif
