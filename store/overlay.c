#include "store/overlay.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/err.h"

#define OV_BUCKETS 65536 /* power of two */

struct ov_entry {
    struct ov_entry *next;     /* bucket chain */
    struct ov_entry *all_next; /* every entry, for clearing */
    MDB_dbi dbi;
    size_t klen, vlen;
    int tomb;
    unsigned char *key;
    char *value;
};

struct overlay {
    pthread_rwlock_t lock;
    struct ov_entry *buckets[OV_BUCKETS];
    struct ov_entry *all;
    size_t count;
};

static uint64_t ov_hash(MDB_dbi dbi, const void *key, size_t klen)
{
    /* FNV-1a: the keys are already well mixed by the caller's encoding. */
    uint64_t h = 1469598103934665603ULL ^ dbi;
    const unsigned char *p = key;
    for (size_t i = 0; i < klen; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

struct overlay *overlay_new(void)
{
    struct overlay *o = calloc(1, sizeof *o);
    if (o)
        pthread_rwlock_init(&o->lock, NULL);
    return o;
}

static void free_all(struct ov_entry *e)
{
    while (e) {
        struct ov_entry *n = e->all_next;
        free(e->key);
        free(e->value);
        free(e);
        e = n;
    }
}

void overlay_free(struct overlay *o)
{
    if (!o)
        return;
    free_all(o->all);
    pthread_rwlock_destroy(&o->lock);
    free(o);
}

static struct ov_entry *find(struct overlay *o, uint64_t h, MDB_dbi dbi, const void *key,
                             size_t klen)
{
    for (struct ov_entry *e = o->buckets[h & (OV_BUCKETS - 1)]; e; e = e->next)
        if (e->dbi == dbi && e->klen == klen && !memcmp(e->key, key, klen))
            return e;
    return NULL;
}

int overlay_put(struct overlay *o, MDB_dbi dbi, const void *key, size_t klen, const void *value,
                size_t vlen)
{
    char *v = NULL;
    if (value) {
        if (!(v = malloc(vlen + 1)))
            return NERR_NOMEM;
        memcpy(v, value, vlen);
        v[vlen] = 0;
    }
    uint64_t h = ov_hash(dbi, key, klen);
    pthread_rwlock_wrlock(&o->lock);
    struct ov_entry *e = find(o, h, dbi, key, klen);
    if (!e) {
        e = calloc(1, sizeof *e);
        unsigned char *k = malloc(klen ? klen : 1);
        if (!e || !k) {
            pthread_rwlock_unlock(&o->lock);
            free(e);
            free(k);
            free(v);
            return NERR_NOMEM;
        }
        memcpy(k, key, klen);
        e->key = k;
        e->klen = klen;
        e->dbi = dbi;
        e->next = o->buckets[h & (OV_BUCKETS - 1)];
        o->buckets[h & (OV_BUCKETS - 1)] = e;
        e->all_next = o->all;
        o->all = e;
        o->count++;
    }
    free(e->value);
    e->value = v;
    e->vlen = v ? vlen : 0;
    e->tomb = v == NULL;
    pthread_rwlock_unlock(&o->lock);
    return 0;
}

void overlay_clear(struct overlay *o)
{
    pthread_rwlock_wrlock(&o->lock);
    struct ov_entry *all = o->all;
    for (struct ov_entry *e = all; e; e = e->all_next)
        o->buckets[ov_hash(e->dbi, e->key, e->klen) & (OV_BUCKETS - 1)] = NULL;
    o->all = NULL;
    o->count = 0;
    pthread_rwlock_unlock(&o->lock);
    free_all(all);
}

size_t overlay_count(struct overlay *o)
{
    pthread_rwlock_rdlock(&o->lock);
    size_t n = o->count;
    pthread_rwlock_unlock(&o->lock);
    return n;
}

enum overlay_hit overlay_get(struct overlay *o, MDB_dbi dbi, const void *key, size_t klen,
                             char **value, size_t *vlen)
{
    uint64_t h = ov_hash(dbi, key, klen);
    enum overlay_hit hit = OVERLAY_MISS;
    pthread_rwlock_rdlock(&o->lock);
    if (o->count) {
        struct ov_entry *e = find(o, h, dbi, key, klen);
        if (e && e->tomb) {
            hit = OVERLAY_TOMBSTONE;
        } else if (e) {
            char *c = malloc(e->vlen + 1);
            if (c) {
                memcpy(c, e->value, e->vlen + 1);
                *value = c;
                *vlen = e->vlen;
                hit = OVERLAY_VALUE;
            } else {
                hit = OVERLAY_NOMEM; /* never a miss: that would read stale data */
            }
        }
    }
    pthread_rwlock_unlock(&o->lock);
    return hit;
}
