/*
 * op.h — a write to one item, as it travels through a partition's log.
 *
 * The log holds the request, not its effect (state-machine replication): the
 * condition and the update are evaluated when the entry is applied, against
 * the state every replica has at that LSN, so all replicas reach the same
 * item and the same outcome. op_encode writes the persistent form (compact
 * JSON, documented in docs/store.md); op_decode reads it back, re-parses the
 * expressions and recomputes the key, so replay needs nothing else.
 */
#ifndef NINES_OP_H
#define NINES_OP_H

#include <jansson.h>
#include <stddef.h>

#include "lib/err.h"

struct expr;
struct table;

/* OP_SCRUB: a scrub marker (digest.h, "Scrub markers"): changes no item;
 * every replica that applies it records its digest at that log index.
 * OP_REPAIR: the scrubber's repair of one key on one replica
 * (docs/scrub.md, "Repair"): only the replica named repair_node acts, and
 * only when the bytes it holds for the key still hash to repair_expect
 * (what the scrubber saw there twice; "absent" when it held none): it
 * stores repair_stored (the majority's stored bytes, verbatim; NULL =
 * delete the key) and recomputes the partition's digest from its data in
 * the same transaction. Every other replica changes nothing.
 * OP_SEAL: the archive's seal (store/archiver.h): changes no item; it
 * closes the archive piece seal_first..(its own index) when seal_first is
 * one past the seal every replica recorded last (or none is recorded), and
 * is a no-op otherwise. */
enum op_kind { OP_PUT = 1, OP_DELETE = 2, OP_UPDATE = 3, OP_SCRUB = 4, OP_REPAIR = 5, OP_SEAL = 6 };
enum op_rv { RV_NONE = 0, RV_ALL_OLD, RV_ALL_NEW, RV_UPDATED_OLD, RV_UPDATED_NEW };

struct op {
    enum op_kind kind;
    json_t *item;          /* OP_PUT: the whole item (validated, numbers canonical) */
    json_t *key;           /* the key attributes only */
    unsigned char *kbytes; /* LMDB key (av_key_encode) */
    size_t klen;
    char *cond;   /* ConditionExpression text, or NULL */
    char *update; /* OP_UPDATE: UpdateExpression text */
    json_t *names, *values;
    enum op_rv rv;
    struct expr *cond_ast, *update_ast; /* parsed forms; not persisted */
    /* OP_SCRUB only (no key, no item): the scrub run's id (1..64 bytes of
     * [A-Za-z0-9._-]) and the proposer's wall clock in ms. */
    char *scrub_id;
    long long scrub_ms;
    /* The proposer's wall clock (ms since the epoch) when it proposed the
     * entry, or 0 (entries written before 2026-12-07 have none): what a
     * point-in-time restore reads time from (docs/archive.md). Changes no
     * item; every replica applies the entry alike whatever it says. */
    long long wall_ms;
    /* OP_SEAL only (no key, no item): the first index of the piece. */
    unsigned long long seal_first;
    /* OP_REPAIR only (with key and kbytes): see enum op_kind. */
    char *repair_node;
    char *repair_stored; /* NUL-terminated stored JSON text, or NULL */
    char repair_expect[65];
};

/* The outcome of applying an op (group_sm result). status: 0, NERR_CONDITION,
 * NERR_INVALID (message in msg), NERR_NOTFOUND (table deleted). */
struct op_result {
    int status;
    char msg[NERR_MSG_MAX];
    json_t *old_item;       /* the item before, when it existed (owned) */
    json_t *new_item;       /* the item after, when it exists (owned) */
    unsigned long long lsn; /* OP_SCRUB, OP_REPAIR, OP_SEAL: the index it was applied at
                               (OP_SEAL: 0 when the seal was stale, a no-op) */
    int repaired;           /* OP_REPAIR: this replica is the target and changed the key */
};

/* Serialises op (kind, item or key, texts, names, values, rv). *out is malloc'd. */
int op_encode(const struct op *op, char **out, size_t *len, struct nerr *err);

/* Parses the persistent form for table t and rebuilds the parsed expressions
 * and key bytes. On failure op is left cleared. NERR_CORRUPT when the bytes
 * are not an op this version wrote. */
int op_decode(const void *data, size_t len, const struct table *t, struct op *op, struct nerr *err);

/* A valid repair expectation: 64 lower-case hex characters or "absent". */
int op_repair_expect_ok(const char *x);

/* A valid scrub run id (see struct op). */
int op_scrub_id_ok(const char *id);

/* Parses op->cond / op->update into the *_ast fields. */
int op_parse_exprs(struct op *op, struct nerr *err);

/* Releases everything op holds (not op itself). */
void op_clear(struct op *op);
void op_result_free(struct op_result *r);

#endif
