/*
 * raft_msg.c — the values of store/raft.h's messages: names, deep copies and
 * release (what a host or a simulation needs to hold a message past the
 * ready it came in). No consensus state here: that is raft.c.
 */
#include "store/raft.h"

#include <stdlib.h>
#include <string.h>

const char *raft_msg_type_name(uint32_t type)
{
    static const char *const names[] = {
        "?",       "APPEND",       "APPEND_RESP", "HEARTBEAT", "HEARTBEAT_RESP",
        "PREVOTE", "PREVOTE_RESP", "VOTE",        "VOTE_RESP", "SNAPSHOT",
        "PROBE",   "PROBE_RESP",   "TIMEOUT_NOW"};
    return type < RAFT_MSG_TYPE_END ? names[type] : "?";
}

int raft_msg_copy(struct raft_msg *dst, const struct raft_msg *src)
{
    *dst = *src;
    dst->entries = NULL;
    dst->data = NULL;
    dst->n_entries = 0;
    dst->data_len = 0;
    if (src->n_entries) {
        dst->entries = calloc(src->n_entries, sizeof(*dst->entries));
        if (!dst->entries)
            goto fail;
        dst->n_entries = src->n_entries;
        for (uint32_t i = 0; i < src->n_entries; i++) {
            dst->entries[i] = src->entries[i];
            dst->entries[i].data = NULL;
            if (src->entries[i].len) {
                dst->entries[i].data = malloc(src->entries[i].len);
                if (!dst->entries[i].data)
                    goto fail;
                memcpy(dst->entries[i].data, src->entries[i].data, src->entries[i].len);
            }
        }
    }
    if (src->data_len) {
        dst->data = malloc(src->data_len);
        if (!dst->data)
            goto fail;
        memcpy(dst->data, src->data, src->data_len);
        dst->data_len = src->data_len;
    }
    return 0;
fail:
    raft_msg_release(dst);
    return NERR_NOMEM;
}

void raft_msg_release(struct raft_msg *m)
{
    if (m->entries)
        for (uint32_t i = 0; i < m->n_entries; i++)
            free(m->entries[i].data);
    free(m->entries);
    free(m->data);
    m->entries = NULL;
    m->data = NULL;
    m->n_entries = 0;
    m->data_len = 0;
}
