/*
 * lin.c — Wing–Gong–Lowe linearizability search with memoisation, per key,
 * on a pool of threads (see lin.h for the contract).
 *
 * Per key, the operations become 2m entries (a call and a return each) in a
 * doubly linked list ordered by history position; an info op's return goes
 * after every other entry, so reaching it means every determinate op has
 * been linearized and the rest may simply never have happened. Lifting an
 * op unlinks its two entries; backtracking relinks them in reverse order
 * (dancing links), which is why the stack must be popped strictly LIFO.
 *
 * The linearized set is a bitset split in two segments, determinate ops then
 * info ops. A cache record stores the set compressed: the count of leading
 * all-ones words and the words up to the last non-zero one, per segment.
 * Since every op whose return has been passed is linearized, the leading
 * ones cover almost the whole history and a record stays a few words long
 * even for keys with a hundred thousand operations.
 */
#include "checkers/lin.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Cache blocks start small (most keys are small) and double up to 4 MiB. A
 * record's offset is (block << 32 | word). */
#define BLOCK_MIN_WORDS ((size_t)1 << 12)
#define BLOCK_WORDS ((size_t)1 << 19)
#define CHECK_EVERY 1024

struct shared {
    const struct history *h;
    enum lin_model model;
    uint32_t initial;
    struct lin_result *res;
    uint32_t *work; /* key ids, largest first */
    uint32_t nwork;
    atomic_uint next;
    double deadline; /* monotonic seconds, 0 = none */
    size_t limit;
    atomic_size_t used, peak;
    atomic_int expired;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t splitmix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Takes bytes from the shared budget; 0 on success, -1 when over it. */
static int charge(struct shared *s, size_t *mine, size_t bytes)
{
    size_t now = atomic_fetch_add(&s->used, bytes) + bytes;
    if (s->limit && now > s->limit) {
        atomic_fetch_sub(&s->used, bytes);
        return -1;
    }
    *mine += bytes;
    size_t peak = atomic_load(&s->peak);
    while (now > peak && !atomic_compare_exchange_weak(&s->peak, &peak, now))
        ;
    return 0;
}

static void release(struct shared *s, size_t *mine, size_t bytes)
{
    atomic_fetch_sub(&s->used, bytes);
    *mine -= bytes;
}

/* Per-thread scratch, reused from key to key. */
struct search {
    struct shared *s;
    size_t charged;
    /* cache */
    uint64_t **blocks;
    size_t *bsize; /* words per block */
    size_t nblocks, capblocks, cur_block, cur_off;
    uint64_t *sh, *sref; /* slot hash, slot record offset + 1 (0 = empty) */
    size_t nslots, nused;
    size_t slots_charged;
};

/* One key's search state. */
struct keysearch {
    uint32_t m;       /* ops */
    uint32_t *gop;    /* local -> h->ops index */
    uint8_t *lf;      /* f */
    uint32_t *lv, *lv2, *bit;
    uint8_t *info;
    uint32_t ne;      /* entries = 2m; HEAD = ne, TAIL = ne + 1 */
    int32_t *next, *prev;
    uint32_t *eop;    /* entry -> local op */
    uint8_t *eret;    /* entry is a return */
    uint32_t *epos;   /* entry -> history position */
    uint32_t *retof;  /* local op -> its return entry */
    uint64_t *z;      /* Zobrist value per bit */
    uint64_t *bits;
    uint32_t ndw, niw; /* words per segment */
    uint32_t nd, ni;   /* bits per segment */
    uint32_t Ld, Ed, Li, Ei;
    uint32_t initial; /* the initial state, LIN_DEAD when nobody reads it */
    /* stack */
    int32_t *st_e;
    uint32_t *st_state;
    uint8_t *st_forced;
    size_t bytes;
};

static uint64_t full_mask(uint32_t w, uint32_t nw, uint32_t nbits)
{
    if (w + 1 < nw || nbits % 64 == 0)
        return ~0ull;
    return (1ull << (nbits % 64)) - 1;
}

static void bit_set(struct keysearch *k, uint32_t b)
{
    if (b < k->nd) {
        uint32_t w = b / 64;
        k->bits[w] |= 1ull << (b % 64);
        if (w + 1 > k->Ed)
            k->Ed = w + 1;
        while (k->Ld < k->ndw && k->bits[k->Ld] == full_mask(k->Ld, k->ndw, k->nd))
            k->Ld++;
    } else {
        uint32_t b2 = b - k->nd, w = b2 / 64;
        uint64_t *ib = k->bits + k->ndw;
        ib[w] |= 1ull << (b2 % 64);
        if (w + 1 > k->Ei)
            k->Ei = w + 1;
        while (k->Li < k->niw && ib[k->Li] == full_mask(k->Li, k->niw, k->ni))
            k->Li++;
    }
}

static void bit_clear(struct keysearch *k, uint32_t b)
{
    if (b < k->nd) {
        uint32_t w = b / 64;
        k->bits[w] &= ~(1ull << (b % 64));
        if (w < k->Ld)
            k->Ld = w;
        while (k->Ed > 0 && k->bits[k->Ed - 1] == 0)
            k->Ed--;
    } else {
        uint32_t b2 = b - k->nd, w = b2 / 64;
        uint64_t *ib = k->bits + k->ndw;
        ib[w] &= ~(1ull << (b2 % 64));
        if (w < k->Li)
            k->Li = w;
        while (k->Ei > 0 && ib[k->Ei - 1] == 0)
            k->Ei--;
    }
}

static void cache_reset(struct search *x)
{
    x->cur_block = 0;
    x->cur_off = 0;
    if (x->sh) {
        memset(x->sref, 0, x->nslots * sizeof *x->sref);
    }
    x->nused = 0;
}

static void cache_free(struct search *x)
{
    for (size_t i = 0; i < x->nblocks; i++) {
        free(x->blocks[i]);
        release(x->s, &x->charged, x->bsize[i] * 8);
    }
    free(x->blocks);
    free(x->bsize);
    x->blocks = NULL;
    x->bsize = NULL;
    x->nblocks = x->capblocks = 0;
    free(x->sh);
    free(x->sref);
    x->sh = x->sref = NULL;
    if (x->slots_charged)
        release(x->s, &x->charged, x->slots_charged);
    x->slots_charged = 0;
    x->nslots = x->nused = 0;
    x->cur_block = x->cur_off = 0;
}

static uint64_t *rec_at(struct search *x, uint64_t off)
{
    return x->blocks[off >> 32] + (off & 0xffffffffu);
}

static int slots_grow(struct search *x)
{
    size_t ns = x->nslots ? x->nslots * 2 : 1024;
    size_t bytes = ns * 16;
    if (charge(x->s, &x->charged, bytes))
        return -1;
    uint64_t *sh = malloc(ns * 8), *sref = calloc(ns, 8);
    if (!sh || !sref) {
        free(sh);
        free(sref);
        release(x->s, &x->charged, bytes);
        return -1;
    }
    for (size_t i = 0; i < x->nslots; i++) {
        if (!x->sref[i])
            continue;
        size_t j = x->sh[i] & (ns - 1);
        while (sref[j])
            j = (j + 1) & (ns - 1);
        sh[j] = x->sh[i];
        sref[j] = x->sref[i];
    }
    free(x->sh);
    free(x->sref);
    if (x->slots_charged)
        release(x->s, &x->charged, x->slots_charged);
    x->sh = sh;
    x->sref = sref;
    x->nslots = ns;
    x->slots_charged = bytes;
    return 0;
}

static int rec_equal(const struct keysearch *k, const uint64_t *r, uint32_t state)
{
    uint32_t nwd = k->Ed > k->Ld ? k->Ed - k->Ld : 0;
    uint32_t nwi = k->Ei > k->Li ? k->Ei - k->Li : 0;
    if (r[0] != ((uint64_t)state | (uint64_t)k->Ld << 32))
        return 0;
    if (r[1] != ((uint64_t)nwd | (uint64_t)nwi << 32) || r[2] != k->Li)
        return 0;
    if (nwd && memcmp(r + 3, k->bits + k->Ld, nwd * 8))
        return 0;
    if (nwi && memcmp(r + 3 + nwd, k->bits + k->ndw + k->Li, nwi * 8))
        return 0;
    return 1;
}

/* Inserts the current configuration. 1 = new, 0 = seen before, -1 = over
 * the memory budget. */
static int cache_insert(struct search *x, const struct keysearch *k, uint64_t hash, uint32_t state)
{
    if ((x->nused + 1) * 2 > x->nslots && slots_grow(x))
        return -1;
    size_t mask = x->nslots - 1, i = hash & mask;
    while (x->sref[i]) {
        if (x->sh[i] == hash && rec_equal(k, rec_at(x, x->sref[i] - 1), state))
            return 0;
        i = (i + 1) & mask;
    }
    uint32_t nwd = k->Ed > k->Ld ? k->Ed - k->Ld : 0;
    uint32_t nwi = k->Ei > k->Li ? k->Ei - k->Li : 0;
    size_t need = 3 + (size_t)nwd + nwi;
    if (need > BLOCK_WORDS)
        return -1;
    if (x->nblocks == 0 || x->cur_off + need > x->bsize[x->cur_block]) {
        if (x->nblocks > 0 && x->cur_off > 0)
            x->cur_block++;
        x->cur_off = 0;
        /* reuse a block kept from an earlier key only if the record fits */
        while (x->cur_block < x->nblocks && need > x->bsize[x->cur_block])
            x->cur_block++;
        if (x->cur_block >= x->nblocks) {
            if (x->nblocks == x->capblocks) {
                size_t nc = x->capblocks ? x->capblocks * 2 : 8;
                uint64_t **nb = realloc(x->blocks, nc * sizeof *nb);
                if (!nb)
                    return -1;
                x->blocks = nb;
                size_t *ns = realloc(x->bsize, nc * sizeof *ns);
                if (!ns)
                    return -1;
                x->bsize = ns;
                x->capblocks = nc;
            }
            size_t words = x->nblocks ? x->bsize[x->nblocks - 1] * 2 : BLOCK_MIN_WORDS;
            if (words > BLOCK_WORDS)
                words = BLOCK_WORDS;
            while (words < need)
                words *= 2;
            if (charge(x->s, &x->charged, words * 8))
                return -1;
            uint64_t *b = malloc(words * 8);
            if (!b) {
                release(x->s, &x->charged, words * 8);
                return -1;
            }
            x->blocks[x->nblocks] = b;
            x->bsize[x->nblocks] = words;
            x->nblocks++;
            x->cur_block = x->nblocks - 1;
        }
    }
    uint64_t off = (uint64_t)x->cur_block << 32 | x->cur_off;
    uint64_t *r = x->blocks[x->cur_block] + x->cur_off;
    r[0] = (uint64_t)state | (uint64_t)k->Ld << 32;
    r[1] = (uint64_t)nwd | (uint64_t)nwi << 32;
    r[2] = k->Li;
    if (nwd)
        memcpy(r + 3, k->bits + k->Ld, nwd * 8);
    if (nwi)
        memcpy(r + 3 + nwd, k->bits + k->ndw + k->Li, nwi * 8);
    x->cur_off += need;
    x->sh[i] = hash;
    x->sref[i] = off + 1;
    x->nused++;
    return 1;
}

/* The register model: can op i run in state, and what state follows. */
static int step(const struct keysearch *k, uint32_t i, uint32_t state, uint32_t *ns)
{
    switch (k->lf[i]) {
    case HISTORY_READ:
        *ns = state;
        return k->lv[i] == state;
    case HISTORY_WRITE:
        *ns = k->lv[i];
        return 1;
    case HISTORY_DELETE:
        *ns = k->lv[i]; /* nil, or LIN_DEAD when nobody reads nil */
        return 1;
    case HISTORY_CAS:
        *ns = k->lv2[i];
        return k->lv[i] == state;
    }
    return 0;
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

struct pos_entry {
    uint64_t pos;
    uint32_t id;
};

static int pos_cmp(const void *a, const void *b)
{
    const struct pos_entry *x = a, *y = b;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static void ks_free(struct keysearch *k)
{
    free(k->gop);
    free(k->lf);
    free(k->lv);
    free(k->lv2);
    free(k->bit);
    free(k->info);
    free(k->next);
    free(k->prev);
    free(k->eop);
    free(k->eret);
    free(k->epos);
    free(k->retof);
    free(k->z);
    free(k->bits);
    free(k->st_e);
    free(k->st_state);
    free(k->st_forced);
}

static int included(const struct history_op *op)
{
    if (op->status == HISTORY_S_FAIL)
        return 0;
    if (op->f == HISTORY_READ)
        return op->status == HISTORY_S_OK && op->consistent && op->value != HISTORY_ANY;
    return 1;
}

static uint32_t written(const struct history_op *op)
{
    return op->f == HISTORY_CAS ? op->value2 : op->f == HISTORY_DELETE ? HISTORY_NIL : op->value;
}

static int is_observed(const uint32_t *obs, size_t nobs, uint32_t v)
{
    return bsearch(&v, obs, nobs, sizeof *obs, u32_cmp) != NULL;
}

/* Builds the per-key arrays. Returns 0, or -1 when out of memory/budget. */
static int ks_build(struct search *x, uint32_t key, struct keysearch *k)
{
    const struct history *h = x->s->h;
    const uint32_t *ko = h->key_ops + h->key_off[key];
    uint32_t n = h->key_off[key + 1] - h->key_off[key];
    uint32_t *obs = malloc((n ? n : 1) * sizeof *obs);
    struct pos_entry *pe = NULL;
    size_t nobs = 0;
    int rc = -1;
    memset(k, 0, sizeof *k);
    if (!obs)
        return -1;
    for (uint32_t j = 0; j < n; j++) {
        const struct history_op *op = &h->ops[ko[j]];
        if (!included(op))
            continue;
        if (op->f == HISTORY_READ || op->f == HISTORY_CAS)
            obs[nobs++] = op->value;
    }
    qsort(obs, nobs, sizeof *obs, u32_cmp);
    k->gop = malloc((n ? n : 1) * sizeof *k->gop);
    if (!k->gop)
        goto done;
    for (uint32_t j = 0; j < n; j++) {
        const struct history_op *op = &h->ops[ko[j]];
        if (!included(op))
            continue;
        /* An info write nobody observes can be dropped from any linearization
         * that uses it: between it and the next write the state holds a value
         * no op reads, so no op sits there. */
        if (op->status == HISTORY_S_INFO && op->f != HISTORY_READ &&
            !is_observed(obs, nobs, written(op)))
            continue;
        k->gop[k->m++] = ko[j];
    }
    uint32_t m = k->m;
    size_t mm = m ? m : 1;
    k->ne = 2 * m;
    k->lf = malloc(mm);
    k->lv = malloc(mm * 4);
    k->lv2 = malloc(mm * 4);
    k->bit = malloc(mm * 4);
    k->info = malloc(mm);
    k->next = malloc((k->ne + 2) * sizeof *k->next);
    k->prev = malloc((k->ne + 2) * sizeof *k->prev);
    k->eop = malloc((k->ne + 1) * 4);
    k->eret = malloc(k->ne + 1);
    k->epos = malloc((k->ne + 1) * 4);
    k->retof = malloc(mm * 4);
    k->z = malloc(mm * 8);
    k->st_e = malloc(mm * sizeof *k->st_e);
    k->st_state = malloc(mm * 4);
    k->st_forced = malloc(mm);
    pe = malloc((k->ne + 1) * sizeof *pe);
    if (!k->lf || !k->lv || !k->lv2 || !k->bit || !k->info || !k->next || !k->prev || !k->eop ||
        !k->eret || !k->epos || !k->retof || !k->z || !k->st_e || !k->st_state ||
        !k->st_forced || !pe)
        goto done;
    for (uint32_t i = 0; i < m; i++) {
        const struct history_op *op = &h->ops[k->gop[i]];
        k->lf[i] = op->f;
        /* Values nobody reads are all one state: no read or cas can tell
         * them apart, and merging them collapses the orders of concurrent
         * unread writes into one configuration each. */
        uint32_t w = written(op);
        if (op->f != HISTORY_READ && !is_observed(obs, nobs, w))
            w = LIN_DEAD;
        k->lv[i] = op->f == HISTORY_CAS ? op->value : op->f == HISTORY_READ ? op->value : w;
        k->lv2[i] = op->f == HISTORY_CAS ? w : op->value2;
        k->info[i] = op->status == HISTORY_S_INFO;
        if (k->info[i])
            k->ni++;
        else
            k->nd++;
    }
    k->initial = is_observed(obs, nobs, x->s->initial) ? x->s->initial : LIN_DEAD;
    uint32_t nd = 0, ni = 0;
    for (uint32_t i = 0; i < m; i++) {
        k->bit[i] = k->info[i] ? k->nd + ni++ : nd++;
        k->z[i] = splitmix((uint64_t)k->bit[i] * 0x100000001B3ull + 0xC0FFEE);
        const struct history_op *op = &h->ops[k->gop[i]];
        pe[2 * i].pos = op->inv;
        pe[2 * i].id = 2 * i;
        pe[2 * i + 1].pos = k->info[i] ? (uint64_t)h->nevents + op->inv : op->ret;
        pe[2 * i + 1].id = 2 * i + 1;
    }
    qsort(pe, k->ne, sizeof *pe, pos_cmp);
    int32_t HEAD = (int32_t)k->ne, TAIL = (int32_t)k->ne + 1;
    int32_t last = HEAD;
    for (uint32_t j = 0; j < k->ne; j++) {
        uint32_t e = j; /* entries are numbered in list order */
        uint32_t i = pe[j].id / 2;
        k->eop[e] = i;
        k->eret[e] = pe[j].id % 2;
        k->epos[e] = (uint32_t)(pe[j].pos < h->nevents ? pe[j].pos : pe[j].pos - h->nevents);
        if (k->eret[e])
            k->retof[i] = e;
        k->next[last] = (int32_t)e;
        k->prev[e] = last;
        last = (int32_t)e;
    }
    k->next[last] = TAIL;
    k->prev[TAIL] = last;
    k->ndw = (k->nd + 63) / 64;
    k->niw = (k->ni + 63) / 64;
    k->bits = calloc((size_t)k->ndw + k->niw + 1, 8);
    if (!k->bits)
        goto done;
    k->bytes = mm * (1 + 4 * 4 + 1 + 8 + 4 + 4 + 1 + 4) + (k->ne + 2) * (8 + 4 + 1 + 4) +
               ((size_t)k->ndw + k->niw) * 8;
    if (charge(x->s, &x->charged, k->bytes)) {
        k->bytes = 0;
        goto done;
    }
    rc = 0;
done:
    free(obs);
    free(pe);
    return rc;
}

static void add_state(struct lin_key *out, uint32_t s)
{
    for (uint32_t i = 0; i < out->nstates; i++)
        if (out->states[i] == s)
            return;
    if (out->nstates < LIN_MAX_STATES)
        out->states[out->nstates++] = s;
    else
        out->states_truncated = 1;
}

static void search_key(struct search *x, uint32_t key, struct lin_key *out)
{
    struct shared *s = x->s;
    struct keysearch k;
    double t0 = now_s();
    memset(out, 0, sizeof *out);
    out->culprit = HISTORY_NONE;
    if (s->deadline && (atomic_load(&s->expired) || t0 > s->deadline)) {
        atomic_store(&s->expired, 1);
        ks_build(x, key, &k); /* only for the window; failure leaves m == 0 */
        out->verdict = LIN_UNKNOWN;
        out->reason = "time limit";
        out->nops = k.m;
        out->window_lo = k.m ? s->h->ops[k.gop[0]].inv : 0;
        out->window_hi = k.m ? k.epos[k.ne - 1] : 0;
        goto done;
    }
    if (ks_build(x, key, &k)) {
        out->verdict = LIN_UNKNOWN;
        out->reason = "memory limit";
        goto done;
    }
    out->nops = k.m;
    cache_reset(x);
    const int32_t HEAD = (int32_t)k.ne, TAIL = (int32_t)k.ne + 1;
    uint32_t state = k.initial, best = 0;
    int have_best = 0;
    uint64_t zh = 0, iter = 0;
    size_t sp = 0;
    int32_t e = k.next[HEAD];
    for (;;) {
        if (++iter % CHECK_EVERY == 0 && s->deadline) {
            if (atomic_load(&s->expired) || now_s() > s->deadline) {
                atomic_store(&s->expired, 1);
                out->reason = "time limit";
                goto unknown;
            }
        }
        if (e == TAIL || k.next[HEAD] == TAIL)
            goto valid;
        uint32_t i = k.eop[e];
        if (!k.eret[e]) {
            uint32_t ns;
            if (step(&k, i, state, &ns)) {
                bit_set(&k, k.bit[i]);
                uint64_t hh = zh ^ k.z[i] ^ splitmix(ns + 0x5bd1e995ull);
                int r = cache_insert(x, &k, hh, ns);
                if (r < 0) {
                    bit_clear(&k, k.bit[i]);
                    out->reason = "memory limit";
                    goto unknown;
                }
                if (r == 1) {
                    int32_t re = (int32_t)k.retof[i];
                    k.st_e[sp] = e;
                    k.st_state[sp] = state;
                    k.st_forced[sp] = k.lf[i] == HISTORY_READ;
                    sp++;
                    out->configs++;
                    state = ns;
                    zh ^= k.z[i];
                    k.next[k.prev[e]] = k.next[e];
                    k.prev[k.next[e]] = k.prev[e];
                    k.next[k.prev[re]] = k.next[re];
                    k.prev[k.next[re]] = k.prev[re];
                    e = k.next[HEAD];
                    continue;
                }
                bit_clear(&k, k.bit[i]);
                /* A matching read whose successor configuration already
                 * failed: this configuration fails too. */
                if (k.lf[i] == HISTORY_READ)
                    goto backtrack;
            }
            e = k.next[e];
            continue;
        }
        if (k.info[i])
            goto valid;
        if (!have_best || k.epos[e] > best) {
            have_best = 1;
            best = k.epos[e];
            out->culprit = k.gop[i];
            out->nstates = 0;
            out->states_truncated = 0;
        }
        if (k.epos[e] == best)
            add_state(out, state);
    backtrack:
        for (;;) {
            if (sp == 0) {
                out->verdict = LIN_INVALID;
                goto done;
            }
            sp--;
            int32_t ce = k.st_e[sp];
            uint32_t ci = k.eop[ce];
            int32_t re = (int32_t)k.retof[ci];
            state = k.st_state[sp];
            bit_clear(&k, k.bit[ci]);
            zh ^= k.z[ci];
            k.next[k.prev[re]] = re;
            k.prev[k.next[re]] = re;
            k.next[k.prev[ce]] = ce;
            k.prev[k.next[ce]] = ce;
            if (!k.st_forced[sp]) {
                e = k.next[ce];
                break;
            }
        }
    }
valid:
    out->verdict = LIN_VALID;
    out->culprit = HISTORY_NONE;
    out->nstates = 0;
    {
        uint32_t nw = 0;
        for (size_t j = 0; j < sp; j++)
            nw += k.lf[k.eop[k.st_e[j]]] != HISTORY_READ;
        if (nw) {
            out->order = malloc(nw * sizeof *out->order);
            if (out->order) {
                for (size_t j = 0; j < sp; j++) {
                    uint32_t i = k.eop[k.st_e[j]];
                    if (k.lf[i] != HISTORY_READ)
                        out->order[out->norder++] = k.gop[i];
                }
            }
        }
    }
    goto done;
unknown:
    out->verdict = LIN_UNKNOWN;
    out->culprit = HISTORY_NONE;
    out->window_lo = k.next[HEAD] != TAIL ? k.epos[k.next[HEAD]] : 0;
    out->window_hi = have_best && best > out->window_lo ? best : out->window_lo;
    if (k.next[HEAD] != TAIL) {
        /* the unresolved window reaches at least the first pending return */
        for (int32_t j = k.next[HEAD]; j != TAIL; j = k.next[j])
            if (k.eret[j]) {
                if (k.epos[j] > out->window_hi)
                    out->window_hi = k.epos[j];
                break;
            }
    }
    out->nstates = 0;
    if (!strcmp(out->reason, "memory limit"))
        cache_free(x); /* give the budget back to the other keys */
done:
    if (k.bytes)
        release(s, &x->charged, k.bytes);
    ks_free(&k);
    out->seconds = now_s() - t0;
}

static void *worker(void *arg)
{
    struct search *x = arg;
    struct shared *s = x->s;
    for (;;) {
        uint32_t j = atomic_fetch_add(&s->next, 1);
        if (j >= s->nwork)
            break;
        uint32_t key = s->work[j];
        search_key(x, key, &s->res->keys[key]);
    }
    cache_free(x);
    return NULL;
}

struct size_key {
    uint32_t size, key;
};

static int size_cmp(const void *a, const void *b)
{
    const struct size_key *x = a, *y = b;
    if (x->size != y->size)
        return x->size > y->size ? -1 : 1;
    return x->key < y->key ? -1 : x->key > y->key;
}

const char *lin_model_name(enum lin_model m)
{
    switch (m) {
    case LIN_AUTO: return "auto";
    case LIN_REGISTER: return "register";
    case LIN_CAS_REGISTER: return "cas-register";
    case LIN_KV: return "kv";
    }
    return "?";
}

int lin_model_parse(const char *s, enum lin_model *m)
{
    static const enum lin_model all[] = {LIN_AUTO, LIN_REGISTER, LIN_CAS_REGISTER, LIN_KV};
    for (size_t i = 0; i < 4; i++)
        if (!strcmp(s, lin_model_name(all[i]))) {
            *m = all[i];
            return 0;
        }
    return -1;
}

const char *lin_verdict_name(enum lin_verdict v)
{
    return v == LIN_VALID ? "valid" : v == LIN_INVALID ? "invalid" : "unknown";
}

int lin_check(const struct history *h, const struct lin_opts *o, struct lin_result **out,
              struct nerr *e)
{
    struct shared s;
    struct lin_result *res = NULL;
    struct size_key *sk = NULL;
    struct search *xs = NULL;
    pthread_t *tids = NULL;
    int nthreads = o->threads;
    double t0 = now_s();
    memset(&s, 0, sizeof s);
    /* Resolve and enforce the model before any thread starts. */
    enum lin_model model = o->model;
    int has_cas = 0, has_delete = 0;
    for (size_t i = 0; i < h->nops; i++) {
        const struct history_op *op = &h->ops[i];
        if (op->f == HISTORY_APPEND)
            return nerr_set(e, NERR_INVALID,
                            "line %u: append needs a list-append model; the register models "
                            "cannot check it",
                            op->line_inv);
        has_cas |= op->f == HISTORY_CAS;
        has_delete |= op->f == HISTORY_DELETE;
    }
    if (model == LIN_AUTO)
        model = has_delete ? LIN_KV : has_cas ? LIN_CAS_REGISTER : LIN_REGISTER;
    for (size_t i = 0; i < h->nops; i++) {
        const struct history_op *op = &h->ops[i];
        if (op->f == HISTORY_CAS && model == LIN_REGISTER)
            return nerr_set(e, NERR_INVALID,
                            "line %u: cas in a register history (use --model cas-register)",
                            op->line_inv);
        if (op->f == HISTORY_DELETE && model != LIN_KV)
            return nerr_set(e, NERR_INVALID, "line %u: delete needs --model kv", op->line_inv);
    }
    res = calloc(1, sizeof *res);
    if (!res)
        goto nomem;
    res->model = model;
    res->nkeys = h->nkeys;
    res->keys = calloc(h->nkeys ? h->nkeys : 1, sizeof *res->keys);
    sk = malloc((h->nkeys ? h->nkeys : 1) * sizeof *sk);
    if (!res->keys || !sk)
        goto nomem;
    for (uint32_t k = 0; k < h->nkeys; k++) {
        sk[k].size = h->key_off[k + 1] - h->key_off[k];
        sk[k].key = k;
    }
    /* Largest keys first, so one big key does not start last and finish
     * alone while the other threads idle. */
    qsort(sk, h->nkeys, sizeof *sk, size_cmp);
    s.work = malloc((h->nkeys ? h->nkeys : 1) * sizeof *s.work);
    if (!s.work)
        goto nomem;
    for (uint32_t k = 0; k < h->nkeys; k++)
        s.work[k] = sk[k].key;
    s.nwork = h->nkeys;
    s.h = h;
    s.model = model;
    s.initial = o->initial;
    s.res = res;
    s.deadline = o->time_limit > 0 ? t0 + o->time_limit : 0;
    s.limit = o->memory_limit;
    if (nthreads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = n > 0 ? (int)n : 1;
    }
    if ((uint32_t)nthreads > h->nkeys)
        nthreads = h->nkeys ? (int)h->nkeys : 1;
    res->threads = nthreads;
    xs = calloc((size_t)nthreads, sizeof *xs);
    tids = calloc((size_t)nthreads, sizeof *tids);
    if (!xs || !tids)
        goto nomem;
    /* The calling thread is worker 0 and drains the queue whatever the
     * others do, so a thread that cannot start only costs parallelism. */
    int started = 0;
    for (int t = 0; t < nthreads; t++)
        xs[t].s = &s;
    for (int t = 1; t < nthreads; t++) {
        if (pthread_create(&tids[t], NULL, worker, &xs[t]))
            break;
        started++;
    }
    res->threads = started + 1;
    worker(&xs[0]);
    for (int t = 1; t <= started; t++)
        pthread_join(tids[t], NULL);
    res->verdict = LIN_VALID;
    for (uint32_t k = 0; k < h->nkeys; k++) {
        res->configs += res->keys[k].configs;
        if (res->keys[k].verdict == LIN_INVALID)
            res->verdict = LIN_INVALID;
        else if (res->keys[k].verdict == LIN_UNKNOWN && res->verdict == LIN_VALID)
            res->verdict = LIN_UNKNOWN;
    }
    res->peak_memory = atomic_load(&s.peak);
    res->seconds = now_s() - t0;
    free(sk);
    free(s.work);
    free(xs);
    free(tids);
    *out = res;
    return 0;
nomem:
    free(sk);
    free(s.work);
    free(xs);
    free(tids);
    lin_result_free(res);
    return nerr_set(e, NERR_NOMEM, "out of memory starting the linearizability check");
}

void lin_result_free(struct lin_result *r)
{
    if (!r)
        return;
    if (r->keys)
        for (uint32_t k = 0; k < r->nkeys; k++)
            free(r->keys[k].order);
    free(r->keys);
    free(r);
}
