/*
 * fuzz_raftwire — libFuzzer target for the peer wire's consensus messages
 * (store/raftwire.h) and what the consensus core does with them. An input is
 * a raft message as a peer would send it inside a transport record (group
 * id 7). Checked:
 *   - raftwire_decode never reads out of bounds, and a refusal allocates
 *     nothing (ASan/LSan);
 *   - a message it accepts is canonical: encoding the decoded message gives
 *     back exactly the input bytes;
 *   - the consensus core takes it without crashing or breaking its own
 *     invariants: it is stepped into a follower of a three-member group with
 *     a short log (and, when the message asks for one, a ready is taken and
 *     advanced as the host would), for messages of every type, snapshots and
 *     host-level FWD_PROPOSE/FWD_NACK included (those are not given to the
 *     core: the host handles them, store/group.c).
 *
 *   make fuzz
 *   build-fuzz/bin/fuzz_raftwire -max_total_time=60 fuzz/corpus/fuzz_raftwire
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "store/raft.h"
#include "store/raftwire.h"

static void step_into_follower(const struct raft_msg *m)
{
    static unsigned char payload[] = "x";
    struct raft_entry log[3] = {{.term = 1, .index = 1, .len = 1, .data = payload},
                                {.term = 1, .index = 2, .len = 1, .data = payload},
                                {.term = 2, .index = 3, .len = 1, .data = payload}};
    struct raft_config cfg = {.group = 7,
                              .id = 2,
                              .n_members = 3,
                              .election_ticks = 10,
                              .heartbeat_ticks = 2,
                              .drift_ppm = 50000,
                              .seed = 1,
                              .hs = {.term = 2, .vote = 1, .commit = 2},
                              .entries = log,
                              .n_entries = 3,
                              .applied = 2};
    struct nerr err = {0};
    struct raft *r = raft_new(&cfg, &err);
    if (!r) {
        fprintf(stderr, "raft_new: %s\n", err.msg);
        abort();
    }
    raft_step(r, m);
    struct raft_ready rd;
    for (int i = 0; i < 4 && raft_ready_get(r, &rd); i++)
        raft_ready_advance(r);
    raft_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        log_init("fuzz", LOG_ERROR);
        ready = 1;
    }
    struct raft_msg m;
    struct nerr err = {0};
    if (raftwire_decode(data, size, 7, &m, &err))
        return 0;
    unsigned char *out = NULL;
    size_t len = 0;
    if (raftwire_encode(&m, &out, &len)) {
        fprintf(stderr, "a decoded message does not encode\n");
        abort();
    }
    /* The encoder picks the version (1 when nothing needs 2): the identity
     * holds when it picked the input's. */
    if (data[0] == out[0] && (len != size || memcmp(out, data, size))) {
        fprintf(stderr, "decode/encode is not the identity (%zu -> %zu bytes)\n", size, len);
        abort();
    }
    free(out);
    if (m.type != RAFTWIRE_FWD_PROPOSE && m.type != RAFTWIRE_FWD_NACK)
        step_into_follower(&m);
    raft_msg_release(&m);
    return 0;
}
