/*
 * bit_rot.h — what the bit_rot fault kind (fault/bit_rot.c) corrupted, for
 * the runner and the tests: the exact items whose stored bytes it changed,
 * so that a game day can require the final deep scrub (docs/scrub.md,
 * "Deep scrub") to name exactly them.
 *
 * The kind: the playbook step `bit_rot: {items: N, table: T}` stops each
 * target host's ninesd cleanly (SIGTERM to the pid in DATA/ninesd.pid,
 * bounded wait), has the host-side tool ninesd-bitrot (fault/bit_rot_main.c,
 * uploaded next to ninesd) flip one bit in the stored bytes of N items of
 * DATA/store/state/data.mdb without LMDB's write path, and starts ninesd
 * again with the host's boot script. Nothing heals it but a repair (a
 * rewrite of the key, or a restored replica); heal_all only restarts a
 * ninesd this run stopped and could not start again.
 *
 * Ownership: the items and their strings belong to the kind's state and are
 * valid until its close (the end of the run) or the next inject, whichever
 * comes first. Thread-safety: as the kind (the runner's step thread).
 */
#ifndef NINES_FAULT_BIT_ROT_H
#define NINES_FAULT_BIT_ROT_H

#include <stddef.h>
#include <stdint.h>

#include "fault/fault.h"

struct bit_rot_item {
    const char *host;      /* inventory host name (= the node id the game day deploys) */
    const char *table;     /* table name */
    int partition;         /* partition index */
    const char *key;       /* the key attributes, compact sorted DynamoDB JSON:
                              {"pk":{"S":"k12"}}; "" when the item did not parse */
    const char *key_bytes; /* hex of the stored LMDB key (the scrub JSON's key_bytes) */
    const char *attribute; /* the attribute whose bytes changed ("" if none found) */
    uint64_t offset;       /* of the flipped byte in data.mdb */
};

extern const struct fault_kind fault_bit_rot;

/* The items corrupted so far in this run, in the order they were: *items
 * (may be NULL when only the count is wanted) is borrowed as said above.
 * state is the bit_rot kind's state (what its open returned); NULL gives 0. */
size_t bit_rot_corrupted(const void *state, const struct bit_rot_item **items);

#endif
