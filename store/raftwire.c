#include "store/raftwire.h"

#include <stdlib.h>
#include <string.h>

#include "lib/le.h"
#include "store/snapstream.h"

int raftwire_encode(const struct raft_msg *m, unsigned char **out, size_t *len)
{
    /* Version 1 while nothing needs version 2 (no configuration, no CONF
     * entry): a node of the previous version still understands every
     * message of a group that never changed its members, so a rolling
     * upgrade keeps every quorum (raftwire.h). */
    int v1 = !m->conf.voters && !m->conf.voters_out && !m->conf.log;
    for (uint32_t i = 0; v1 && i < m->n_entries; i++)
        v1 = m->entries[i].type == RAFT_ENTRY_NORMAL;
    size_t hdr = v1 ? RAFTWIRE_HEADER_V1 : RAFTWIRE_HEADER, efix = v1 ? 20 : RAFTWIRE_ENTRY;
    size_t n = hdr + 4 + m->data_len;
    for (uint32_t i = 0; i < m->n_entries; i++)
        n += efix + m->entries[i].len;
    unsigned char *b = malloc(n), *p = b;
    if (!b)
        return NERR_NOMEM;
    p[0] = v1 ? 1 : RAFTWIRE_VERSION;
    p[1] = (unsigned char)m->type;
    le_put16(p + 2, 0);
    le_put32(p + 4, m->from);
    le_put32(p + 8, m->to);
    le_put32(p + 12, m->reject);
    le_put32(p + 16, m->n_entries);
    le_put64(p + 20, m->term);
    le_put64(p + 28, m->index);
    le_put64(p + 36, m->log_term);
    le_put64(p + 44, m->commit);
    le_put64(p + 52, m->hint);
    le_put64(p + 60, m->ctx);
    le_put32(p + 68, 0);
    if (!v1) {
        le_put32(p + 72, m->conf.voters);
        le_put32(p + 76, m->conf.voters_out);
        le_put32(p + 80, m->conf.log);
    }
    p += hdr;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        le_put64(p, e->term);
        le_put64(p + 8, e->index);
        if (!v1)
            le_put32(p + 16, e->type);
        le_put32(p + efix - 4, e->len);
        if (e->len)
            memcpy(p + efix, e->data, e->len);
        p += efix + e->len;
    }
    le_put32(p, m->data_len);
    if (m->data_len)
        memcpy(p + 4, m->data, m->data_len);
    *out = b;
    *len = n;
    return 0;
}

int raftwire_decode(const void *buf, size_t len, uint64_t group, struct raft_msg *m,
                    struct nerr *err)
{
    const unsigned char *p = buf, *end = p + len;
    memset(m, 0, sizeof *m);
    if (len > RAFTWIRE_MAX_MSG)
        return nerr_set(err, NERR_INVALID, "raft message of %zu bytes is over the limit", len);
    if (len < 1)
        return nerr_set(err, NERR_INVALID, "raft message of 0 bytes is too short");
    if (p[0] != RAFTWIRE_VERSION && p[0] != 1)
        return nerr_set(err, NERR_INVALID, "raft message version %u unknown", p[0]);
    /* Version 1 (a node before membership changes): no configuration in
     * the header, no type in an entry. */
    int v1 = p[0] == 1;
    size_t hdr = v1 ? RAFTWIRE_HEADER_V1 : RAFTWIRE_HEADER;
    size_t efix = v1 ? 20 : RAFTWIRE_ENTRY;
    if (len < hdr + 4)
        return nerr_set(err, NERR_INVALID, "raft message of %zu bytes is too short", len);
    uint32_t type = p[1], n_entries = le_get32(p + 16);
    int host_msg = type == RAFTWIRE_FWD_PROPOSE || type == RAFTWIRE_FWD_NACK ||
                   type == RAFTWIRE_SNAP_CHUNK || type == RAFTWIRE_SNAP_ACK ||
                   type == RAFTWIRE_NODE_BEAT;
    if ((type < RAFT_MSG_APPEND || type >= RAFT_MSG_TYPE_END) && !host_msg)
        return nerr_set(err, NERR_INVALID, "raft message type %u unknown", type);
    if (le_get16(p + 2) || le_get32(p + 68))
        return nerr_set(err, NERR_INVALID, "raft message reserved bytes are not zero");
    if (n_entries > RAFT_MAX_BATCH || (n_entries && type != RAFT_MSG_APPEND))
        return nerr_set(err, NERR_INVALID, "raft %s message with %u entries",
                        raft_msg_type_name(type), n_entries);
    m->group = group;
    m->type = type;
    m->from = le_get32(p + 4);
    m->to = le_get32(p + 8);
    m->reject = le_get32(p + 12);
    m->term = le_get64(p + 20);
    m->index = le_get64(p + 28);
    m->log_term = le_get64(p + 36);
    m->commit = le_get64(p + 44);
    m->hint = le_get64(p + 52);
    m->ctx = le_get64(p + 60);
    if (!v1) {
        m->conf.voters = le_get32(p + 72);
        m->conf.voters_out = le_get32(p + 76);
        m->conf.log = le_get32(p + 80);
    }
    p += hdr;
    /* First pass: validate the layout before allocating anything. */
    const unsigned char *q = p;
    for (uint32_t i = 0; i < n_entries; i++) {
        if ((size_t)(end - q) < efix)
            return nerr_set(err, NERR_INVALID, "raft message cut inside entry %u", i);
        uint32_t etype = v1 ? RAFT_ENTRY_NORMAL : le_get32(q + 16);
        uint32_t elen = le_get32(q + efix - 4);
        if (elen > RAFT_MAX_ENTRY)
            return nerr_set(err, NERR_INVALID, "raft entry of %u bytes is over the limit", elen);
        if (etype != RAFT_ENTRY_NORMAL && etype != RAFT_ENTRY_CONF)
            return nerr_set(err, NERR_INVALID, "raft entry %u has unknown type %u", i, etype);
        if (etype == RAFT_ENTRY_CONF && elen != RAFT_CONF_ENC_LEN)
            return nerr_set(err, NERR_INVALID,
                            "raft configuration entry %u has %u bytes, expected %u", i, elen,
                            RAFT_CONF_ENC_LEN);
        if (le_get64(q + 8) != m->index + 1 + i)
            return nerr_set(err, NERR_INVALID, "raft entry %u has index %llu, expected %llu", i,
                            (unsigned long long)le_get64(q + 8),
                            (unsigned long long)(m->index + 1 + i));
        if ((size_t)(end - q - efix) < elen)
            return nerr_set(err, NERR_INVALID, "raft message cut inside entry %u", i);
        q += efix + elen;
    }
    if ((size_t)(end - q) < 4)
        return nerr_set(err, NERR_INVALID, "raft message cut before its data length");
    uint32_t dlen = le_get32(q);
    if (dlen > SNAP_MAX_CHUNK ||
        (dlen && type != RAFT_MSG_SNAPSHOT && type != RAFTWIRE_FWD_PROPOSE &&
         type != RAFTWIRE_SNAP_CHUNK) ||
        (type == RAFTWIRE_FWD_PROPOSE && (dlen == 0 || dlen > RAFT_MAX_ENTRY)) ||
        (type == RAFTWIRE_SNAP_CHUNK && dlen == 0))
        return nerr_set(err, NERR_INVALID, "raft %s message with %u data bytes",
                        raft_msg_type_name(type), dlen);
    if ((size_t)(end - q - 4) != dlen)
        return nerr_set(err, NERR_INVALID, "raft message length does not match its contents");
    if (n_entries && !(m->entries = calloc(n_entries, sizeof *m->entries)))
        goto nomem;
    m->n_entries = n_entries;
    for (uint32_t i = 0; i < n_entries; i++) {
        struct raft_entry *e = &m->entries[i];
        e->term = le_get64(p);
        e->index = le_get64(p + 8);
        e->type = v1 ? RAFT_ENTRY_NORMAL : le_get32(p + 16);
        e->len = le_get32(p + efix - 4);
        if (e->len) {
            if (!(e->data = malloc(e->len)))
                goto nomem;
            memcpy(e->data, p + efix, e->len);
        }
        p += efix + e->len;
    }
    if (dlen) {
        if (!(m->data = malloc(dlen)))
            goto nomem;
        memcpy(m->data, p + 4, dlen);
        m->data_len = dlen;
    }
    return 0;
nomem:
    raft_msg_release(m);
    return nerr_set(err, NERR_NOMEM, "out of memory");
}
