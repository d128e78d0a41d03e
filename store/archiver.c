/*
 * archiver.c — ninesd's archiver thread and the seal records (archiver.h).
 */
#include "store/archiver.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "archive/archive.h"
#include "lib/clock.h"
#include "lib/le.h"
#include "lib/log.h"
#include "lib/strbuf.h"
#include "store/catalog.h"
#include "store/digest.h"
#include "store/group.h"
#include "store/op.h"
#include "store/state.h"

/* ---- seal records ---- */

#define SEAL_LAST 4
#define SEAL_ONE 5

static size_t seal_key(const char *name, int kind, uint64_t s, unsigned char *k, size_t cap)
{
    size_t n = strlen(name);
    if (n + 9 > cap)
        return 0;
    memcpy(k, name, n);
    k[n++] = (unsigned char)kind;
    if (kind == SEAL_ONE) {
        for (int i = 7; i >= 0; i--)
            k[n++] = (unsigned char)(s >> (8 * i));
    }
    return n;
}

static uint64_t key_be(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

int archiver_seal_last(MDB_txn *txn, MDB_dbi ddbi, const char *name, uint64_t *first,
                       uint64_t *last, struct nerr *err)
{
    unsigned char k[256];
    size_t kn = seal_key(name, SEAL_LAST, 0, k, sizeof k);
    if (!kn)
        return nerr_set(err, NERR_INVALID, "partition name too long");
    MDB_val key = {kn, k}, v;
    *first = *last = 0;
    int rc = mdb_get(txn, ddbi, &key, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return state_mdb_err(err, rc, "read the last seal");
    if (v.mv_size != 16)
        return nerr_set(err, NERR_CORRUPT, "partition %s: a seal record of %zu bytes", name,
                        v.mv_size);
    *last = le_get64(v.mv_data);
    *first = le_get64((const unsigned char *)v.mv_data + 8);
    return 0;
}

int archiver_seal_apply(MDB_txn *txn, MDB_dbi ddbi, const char *name, uint64_t first, uint64_t lsn,
                        struct nerr *err)
{
    uint64_t f0, s0;
    int rc = archiver_seal_last(txn, ddbi, name, &f0, &s0, err);
    if (rc)
        return rc;
    if (first < 1 || first > lsn || (s0 && first != s0 + 1))
        return 0; /* stale: changes nothing, on every replica alike */
    unsigned char k[256], val[16];
    size_t kn = seal_key(name, SEAL_LAST, 0, k, sizeof k);
    le_put64(val, lsn);
    le_put64(val + 8, first);
    MDB_val key = {kn, k}, v = {16, val};
    if ((rc = mdb_put(txn, ddbi, &key, &v, 0)))
        return state_mdb_err(err, rc, "record a seal");
    kn = seal_key(name, SEAL_ONE, lsn, k, sizeof k);
    key = (MDB_val){kn, k};
    v = (MDB_val){8, val + 8};
    if ((rc = mdb_put(txn, ddbi, &key, &v, 0)))
        return state_mdb_err(err, rc, "record a seal");
    /* Keep the newest ARCHIVER_SEALS_KEPT: count down from this one. */
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, ddbi, &cur)))
        return state_mdb_err(err, rc, "seal cursor");
    MDB_val ck = key, cv;
    int n = 0;
    rc = mdb_cursor_get(cur, &ck, &cv, MDB_SET_KEY);
    while (!rc && ck.mv_size == kn && !memcmp(ck.mv_data, k, kn - 8)) {
        if (++n > ARCHIVER_SEALS_KEPT) {
            if ((rc = mdb_cursor_del(cur, 0)))
                break;
        }
        rc = mdb_cursor_get(cur, &ck, &cv, MDB_PREV);
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND)
        return state_mdb_err(err, rc, "prune seals");
    return 1;
}

int archiver_seals_after(MDB_txn *txn, MDB_dbi ddbi, const char *name, uint64_t after,
                         int (*fn)(void *arg, uint64_t first, uint64_t last), void *arg,
                         struct nerr *err)
{
    unsigned char k[256];
    size_t kn = seal_key(name, SEAL_ONE, after + 1, k, sizeof k);
    if (!kn)
        return nerr_set(err, NERR_INVALID, "partition name too long");
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, ddbi, &cur);
    if (rc)
        return state_mdb_err(err, rc, "seal cursor");
    MDB_val ck = {kn, k}, cv;
    rc = mdb_cursor_get(cur, &ck, &cv, MDB_SET_RANGE);
    int out = 0;
    while (!rc && ck.mv_size == kn && !memcmp(ck.mv_data, k, kn - 8)) {
        if (cv.mv_size != 8) {
            out = nerr_set(err, NERR_CORRUPT, "partition %s: a seal record of %zu bytes", name,
                           cv.mv_size);
            break;
        }
        if ((out =
                 fn(arg, le_get64(cv.mv_data), key_be((const unsigned char *)ck.mv_data + kn - 8))))
            break;
        rc = mdb_cursor_get(cur, &ck, &cv, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (!out && rc && rc != MDB_NOTFOUND)
        out = state_mdb_err(err, rc, "read seals");
    return out;
}

int archiver_seals_drop(MDB_txn *txn, MDB_dbi ddbi, const char *name, struct nerr *err)
{
    unsigned char k[256];
    size_t kn = seal_key(name, SEAL_LAST, 0, k, sizeof k);
    if (!kn)
        return nerr_set(err, NERR_INVALID, "partition name too long");
    MDB_val key = {kn, k};
    int rc = mdb_del(txn, ddbi, &key, NULL);
    if (rc && rc != MDB_NOTFOUND)
        return state_mdb_err(err, rc, "drop seals");
    kn = seal_key(name, SEAL_ONE, 0, k, sizeof k);
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, ddbi, &cur)))
        return state_mdb_err(err, rc, "seal cursor");
    for (;;) {
        MDB_val ck = {kn, k}, cv;
        rc = mdb_cursor_get(cur, &ck, &cv, MDB_SET_RANGE);
        if (rc || ck.mv_size != kn || memcmp(ck.mv_data, k, kn - 8) ||
            (rc = mdb_cursor_del(cur, 0)))
            break;
    }
    mdb_cursor_close(cur);
    return rc && rc != MDB_NOTFOUND ? state_mdb_err(err, rc, "drop seals") : 0;
}

/* ---- the archiver ---- */

#define PASS_MS 200
#define SEAL_RETRY_NS 3000000000ull /* a seal not applied by then is proposed again */
#define ERROR_LOG_NS 10000000000ull /* archive errors: one log line per 10 s */
#define BUCKETS 4096

struct apiece {
    uint64_t first, last;
    uint64_t sealed_ns; /* when this node learned of it */
    struct apiece *next;
};

/* What the archiver knows of one partition replica here. */
struct agroup {
    char name[CATALOG_MAX_PATH_NAME + 1];
    int known;                    /* learned from the archive and LMDB */
    struct apiece *head, *tail;   /* sealed, not yet seen archived, in order */
    uint64_t done_end;            /* every piece up to here seen archived */
    uint64_t seal_last;           /* the last seal known applied here */
    uint64_t prop_first, prop_ns; /* a seal this node proposed (F, when) */
    uint64_t unsealed_ns;         /* since when entries wait after seal_last */
    uint64_t timed_seal; /* the seal_last unsealed_ns counts from */
    uint64_t arch_first;          /* the archive's first piece (0: none) */
    uint64_t snap_index;          /* the newest archived snapshot (has_snap) */
    int has_snap;
    int released;       /* the hold was released (max_behind) */
    uint64_t retain_ns; /* the last retention pass (leader) */
    uint64_t epoch;
    struct agroup *hnext;
};

struct aev {
    char name[CATALOG_MAX_PATH_NAME + 1];
    uint64_t first, last;
    struct aev *next;
};

struct archiver {
    struct archiver_options opt;
    char *url, *self;
    struct archive *ar;
    struct catalog *c;
    struct state *st;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    struct aev *ev_head, *ev_tail;   /* under mu */
    struct agroup *buckets[BUCKETS]; /* archiver thread only */
    uint64_t epoch;
    uint64_t last_err_log_ns;
    uint64_t open_ns; /* the last attempt to open the archive (a->ar NULL) */
    /* Status (under mu). */
    uint64_t behind, pending;
    uint64_t uploaded, verified, taken_over, mismatches, errors, released, snapshots, skipped;
    uint64_t expired;
    char last_error[NERR_MSG_MAX + 16];
};

static unsigned hash_name(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h & (BUCKETS - 1);
}

static struct agroup *ag_find(struct archiver *a, const char *name, int create)
{
    unsigned b = hash_name(name);
    for (struct agroup *g = a->buckets[b]; g; g = g->hnext)
        if (!strcmp(g->name, name))
            return g;
    if (!create)
        return NULL;
    struct agroup *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    snprintf(g->name, sizeof g->name, "%s", name);
    g->hnext = a->buckets[b];
    a->buckets[b] = g;
    return g;
}

static void ag_free(struct agroup *g)
{
    for (struct apiece *p = g->head, *n; p; p = n) {
        n = p->next;
        free(p);
    }
    free(g);
}

/* Adds the piece first..last after the known ones (a repeat is ignored). */
static void ag_add(struct agroup *g, uint64_t first, uint64_t last, uint64_t now)
{
    if (last <= g->done_end || (g->tail && last <= g->tail->last))
        return;
    struct apiece *p = calloc(1, sizeof *p);
    if (!p)
        return;
    p->first = first;
    p->last = last;
    p->sealed_ns = now;
    if (g->tail)
        g->tail->next = p;
    else
        g->head = p;
    g->tail = p;
    if (last > g->seal_last)
        g->seal_last = last;
}

static void count(struct archiver *a, uint64_t *field)
{
    pthread_mutex_lock(&a->mu);
    (*field)++;
    pthread_mutex_unlock(&a->mu);
}

/* An archive failure: counted, the newest kept for the status, logged at
 * most once per ERROR_LOG_NS (an unreachable archive fails every pass). */
static void arch_error(struct archiver *a, const char *what, const struct nerr *e)
{
    uint64_t now = clock_mono_ns();
    pthread_mutex_lock(&a->mu);
    a->errors++;
    snprintf(a->last_error, sizeof a->last_error, "%.200s: %.300s", what, e->msg);
    int say = now - a->last_err_log_ns >= ERROR_LOG_NS || !a->last_err_log_ns;
    if (say)
        a->last_err_log_ns = now;
    pthread_mutex_unlock(&a->mu);
    if (say)
        log_error("archive %s: %s: %s", a->url, what, e->msg);
}

void archiver_sealed(struct archiver *a, const char *name, uint64_t first, uint64_t last)
{
    if (!a)
        return;
    struct aev *e = calloc(1, sizeof *e);
    if (!e)
        return; /* found again at the next start (the seal is in LMDB) */
    snprintf(e->name, sizeof e->name, "%s", name);
    e->first = first;
    e->last = last;
    pthread_mutex_lock(&a->mu);
    if (a->ev_tail)
        a->ev_tail->next = e;
    else
        a->ev_head = e;
    a->ev_tail = e;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

/* "FFFFFFFFFFFFFFFFFFFF-LLLLLLLLLLLLLLLLLLLL.json" or "IIII...I.json". */
static int parse_range(const char *s, int two, uint64_t *f, uint64_t *l)
{
    size_t want = two ? 41 + 5 : 20 + 5;
    if (strlen(s) != want || strcmp(s + want - 5, ".json"))
        return 0;
    char buf[21];
    memcpy(buf, s, 20);
    buf[20] = 0;
    *f = strtoull(buf, NULL, 10);
    if (two) {
        if (s[20] != '-')
            return 0;
        memcpy(buf, s + 21, 20);
        *l = strtoull(buf, NULL, 10);
    }
    return 1;
}

struct learn_ctx {
    struct agroup *g;
    uint64_t now;
};

static int learn_seal(void *arg, uint64_t first, uint64_t last)
{
    struct learn_ctx *lc = arg;
    ag_add(lc->g, first, last, lc->now);
    return 0;
}

/* What the archive holds of the partition, and the seals after it in LMDB. */
static int learn(struct archiver *a, struct agroup *g, const struct partition *p, struct nerr *err)
{
    char dir[CATALOG_MAX_PATH_NAME + 16];
    char **names = NULL;
    size_t n = 0;
    uint64_t end = 0, first = 0;
    snprintf(dir, sizeof dir, "%s/log", g->name);
    int rc = archive_list_dir(a->ar, dir, &names, &n, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        uint64_t f, l;
        if (parse_range(names[i], 1, &f, &l)) {
            if (l > end)
                end = l;
            if (!first || f < first)
                first = f;
        }
    }
    archive_names_free(names, n);
    snprintf(dir, sizeof dir, "%s/snap", g->name);
    if ((rc = archive_list_dir(a->ar, dir, &names, &n, err)))
        return rc;
    for (size_t i = 0; i < n; i++) {
        uint64_t ix, unused;
        if (parse_range(names[i], 0, &ix, &unused) && (!g->has_snap || ix > g->snap_index)) {
            g->snap_index = ix;
            g->has_snap = 1;
        }
    }
    archive_names_free(names, n);
    MDB_txn *txn;
    if ((rc = state_read_begin(a->st, &txn, err)))
        return rc;
    uint64_t sf, sl;
    /* Pieces sealed before a restart, uploaded or not: anything after the
     * archive's end is owed (verified or uploaded). A piece sealed here
     * before the archiver learned of the group is due at once. */
    struct learn_ctx lc = {g, clock_mono_ns() - 2 * a->opt.verify_after_ns};
    g->done_end = end;
    g->arch_first = first;
    rc = archiver_seal_last(txn, p->ddbi, g->name, &sf, &sl, err);
    if (!rc) {
        g->seal_last = sl;
        rc = archiver_seals_after(txn, p->ddbi, g->name, end, learn_seal, &lc, err);
    }
    state_read_end(a->st, txn);
    if (!rc)
        g->known = 1;
    return rc;
}

enum piece_outcome { P_WAIT = 0, P_DONE, P_FAIL };

/* 1 when an archived snapshot of group is at or past index. */
static int covered(struct archiver *a, const char *group, uint64_t index)
{
    char dir[CATALOG_MAX_PATH_NAME + 16];
    char **names = NULL;
    size_t n = 0;
    struct nerr e = {0};
    int yes = 0;
    snprintf(dir, sizeof dir, "%s/snap", group);
    if (archive_list_dir(a->ar, dir, &names, &n, &e))
        return 0;
    for (size_t i = 0; i < n && !yes; i++) {
        uint64_t ix, unused;
        yes = parse_range(names[i], 0, &ix, &unused) && ix >= index;
    }
    archive_names_free(names, n);
    return yes;
}

/* Builds this replica's encoding of piece pc from its log. NERR_NOTFOUND
 * when the log no longer holds it. */
static int encode_own(struct group *grp, const struct agroup *g, const struct apiece *pc,
                      struct group_log_entry **ents, size_t *n, unsigned char **buf, size_t *len,
                      struct nerr *err)
{
    int rc =
        group_log_copy(grp, pc->first, pc->last, ARCHIVE_MAX_OBJECT - (1u << 20), ents, n, err);
    if (rc)
        return rc;
    if (*n != pc->last - pc->first + 1) {
        free(*ents);
        *ents = NULL;
        return nerr_set(err, NERR_LIMIT, "piece %llu..%llu is larger than one archive object",
                        (unsigned long long)pc->first, (unsigned long long)pc->last);
    }
    struct archive_entry *ae = malloc(*n * sizeof *ae);
    if (!ae) {
        free(*ents);
        *ents = NULL;
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < *n; i++)
        ae[i] = (struct archive_entry){(*ents)[i].index, (*ents)[i].term, (*ents)[i].len,
                                       (*ents)[i].data};
    rc = archive_piece_encode(g->name, ae, *n, buf, len, err);
    free(ae);
    if (rc) {
        free(*ents);
        *ents = NULL;
    }
    return rc;
}

/* One piece: uploads it (the leader, or a takeover) or checks the upload
 * (another replica). */
static enum piece_outcome do_piece(struct archiver *a, struct agroup *g, struct apiece *pc,
                                   struct table *t, int part, struct group *grp, int leader,
                                   uint64_t now)
{
    if (!leader && now < pc->sealed_ns + a->opt.verify_after_ns)
        return P_WAIT;
    char pname[ARCHIVE_MAX_NAME + 96], mname[ARCHIVE_MAX_NAME + 96];
    archive_piece_name(g->name, pc->first, pc->last, pname, sizeof pname);
    archive_manifest_name(pname, mname, sizeof mname);
    struct nerr e = {0};
    unsigned char *man = NULL, *obj = NULL, *own = NULL;
    size_t mlen = 0, olen = 0, ownlen = 0, n = 0;
    struct group_log_entry *ents = NULL;
    enum piece_outcome out = P_FAIL;
    int rc = archive_get(a->ar, mname, 1u << 20, &man, &mlen, &e);
    if (rc && rc != NERR_NOTFOUND) {
        arch_error(a, mname, &e);
        return P_FAIL;
    }
    int present = !rc;
    if (!present && !leader && now < pc->sealed_ns + 2 * a->opt.verify_after_ns)
        return P_WAIT; /* the leader's upload may still come */
    if (!present && covered(a, g->name, pc->last)) {
        /* Retention deleted it already: an archived snapshot holds it. */
        free(man);
        return P_DONE;
    }
    nerr_clear(&e);
    rc = encode_own(grp, g, pc, &ents, &n, &own, &ownlen, &e);
    if (rc == NERR_NOTFOUND) {
        /* This replica no longer holds the entries (it installed a
         * snapshot past them): it can neither upload nor check them. */
        log_info("archive: partition %s: entries %llu..%llu are not in this replica's log; "
                 "left to the other replicas",
                 g->name, (unsigned long long)pc->first, (unsigned long long)pc->last);
        count(a, &a->skipped);
        free(man);
        return P_DONE;
    }
    if (rc) {
        arch_error(a, pname, &e);
        free(man);
        return P_FAIL;
    }
    if (!present) {
        struct archive_meta m = {.group = g->name,
                                 .table = t->name,
                                 .uploader = a->self,
                                 .partition = part,
                                 .time_ms = clock_wall_ms()};
        struct archive_entry *ae = malloc(n * sizeof *ae);
        if (!ae) {
            nerr_set(&e, NERR_NOMEM, "out of memory");
            arch_error(a, pname, &e);
            goto done;
        }
        for (size_t i = 0; i < n; i++)
            ae[i] = (struct archive_entry){ents[i].index, ents[i].term, ents[i].len, ents[i].data};
        rc = archive_put_log(a->ar, &m, ae, n, &e);
        free(ae);
        if (rc) {
            arch_error(a, pname, &e);
            goto done;
        }
        count(a, leader ? &a->uploaded : &a->taken_over);
        if (!leader)
            log_warn("archive: partition %s: piece %llu..%llu was not uploaded by its leader "
                     "within %llu ms of its seal; uploaded it from this replica",
                     g->name, (unsigned long long)pc->first, (unsigned long long)pc->last,
                     (unsigned long long)(2 * a->opt.verify_after_ns / 1000000));
        out = P_DONE;
        goto done;
    }
    /* Cross-verification: the manifest's SHA-256, the object's, and the
     * object byte for byte against this replica's encoding. */
    json_t *mj = json_loadb((const char *)man, mlen, 0, NULL);
    const char *msha = json_string_value(json_object_get(mj, "sha256"));
    unsigned char osha[32];
    char oshahex[65] = "", ownhex[65] = "";
    struct archive_object_info info;
    rc = archive_get(a->ar, pname, ARCHIVE_MAX_OBJECT, &obj, &olen, &e);
    if (rc == NERR_NOTFOUND) {
        log_error("archive: partition %s: %s has a manifest but no object", g->name, pname);
        count(a, &a->mismatches);
        out = P_DONE;
    } else if (rc) {
        arch_error(a, pname, &e);
    } else {
        int parsed = !archive_object_parse(obj, olen, NULL, NULL, NULL, &info, &e);
        if (parsed)
            memcpy(osha, info.sha256, 32), archive_hex(osha, 32, oshahex);
        struct archive_object_info oi;
        struct nerr e2 = {0};
        if (!archive_object_parse(own, ownlen, NULL, NULL, NULL, &oi, &e2))
            archive_hex(oi.sha256, 32, ownhex);
        if (!parsed || !msha || strcmp(msha, oshahex) || olen != ownlen ||
            memcmp(obj, own, ownlen)) {
            log_error("archive: partition %s: %s differs from this replica's log (manifest "
                      "sha256 %s, object %s%s%s, this replica's %s)",
                      g->name, pname, msha ? msha : "missing",
                      parsed ? oshahex : "corrupt: ", parsed ? "" : e.msg, "", ownhex);
            count(a, &a->mismatches);
        } else {
            count(a, &a->verified);
        }
        out = P_DONE;
    }
    json_decref(mj);
done:
    free(man);
    free(obj);
    free(own);
    free(ents);
    return out;
}

struct seal_call {
    struct op op;
};

static void seal_done(void *arg, int status, void *result)
{
    struct seal_call *sc = arg;
    (void)status;
    op_result_free(result);
    op_clear(&sc->op);
    free(sc);
}

static void propose_seal(struct archiver *a, struct agroup *g, struct group *grp, uint64_t now)
{
    struct seal_call *sc = calloc(1, sizeof *sc);
    char *bytes = NULL;
    size_t len = 0;
    struct nerr e = {0};
    if (!sc)
        return;
    sc->op.kind = OP_SEAL;
    sc->op.seal_first = g->seal_last + 1;
    sc->op.wall_ms = clock_wall_ms();
    if (op_encode(&sc->op, &bytes, &len, &e)) {
        free(sc);
        return;
    }
    g->prop_first = g->seal_last + 1;
    g->prop_ns = now;
    int rc = group_propose(grp, bytes, len, &sc->op, seal_done, sc);
    free(bytes);
    if (rc)
        seal_done(sc, rc, NULL);
    (void)a;
}

/* Archives the partition's state as this replica's LMDB holds it now. */
static int put_snapshot(struct archiver *a, struct agroup *g, struct table *t, int part,
                        struct group *grp, struct nerr *err)
{
    const struct partition *p = &t->parts[part];
    MDB_txn *txn;
    uint64_t at = 0, term = 0;
    struct archive_item *it = NULL;
    size_t n = 0, cap = 0, bytes = 0;
    struct digest d;
    char dhex[33];
    int rc = state_read_begin(a->st, &txn, err), have_digest = 0;
    if (rc)
        return rc;
    if ((rc = state_applied_get(a->st, txn, g->name, &at, err)) || !at)
        goto out;
    if ((rc = group_log_term(grp, at, &term, err)))
        goto out;
    if (!digest_get(txn, p->ddbi, g->name, &d, err)) {
        digest_short_hex(&d, dhex);
        have_digest = 1;
    }
    nerr_clear(err);
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, p->dbi, &cur))) {
        rc = state_mdb_err(err, rc, "snapshot cursor");
        goto out;
    }
    MDB_val k, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (!mrc) {
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 1024;
            struct archive_item *ni = realloc(it, nc * sizeof *ni);
            if (!ni) {
                rc = nerr_set(err, NERR_NOMEM, "out of memory");
                break;
            }
            it = ni;
            cap = nc;
        }
        bytes += k.mv_size + v.mv_size + 12;
        if (bytes > ARCHIVE_MAX_OBJECT - (1u << 20)) {
            rc = nerr_set(err, NERR_LIMIT,
                          "partition %s holds more than one archive object (%u MiB) can", g->name,
                          ARCHIVE_MAX_OBJECT >> 20);
            break;
        }
        it[n++] =
            (struct archive_item){(uint32_t)k.mv_size, (uint32_t)v.mv_size, k.mv_data, v.mv_data};
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (!rc && mrc != MDB_NOTFOUND)
        rc = state_mdb_err(err, mrc, "snapshot cursor");
    if (!rc) {
        struct archive_meta m = {.group = g->name,
                                 .table = t->name,
                                 .uploader = a->self,
                                 .partition = part,
                                 .time_ms = clock_wall_ms(),
                                 .digest = have_digest ? dhex : NULL};
        rc = archive_put_snapshot(a->ar, &m, at, term, it, n, err);
    }
    if (!rc) {
        g->snap_index = at;
        g->has_snap = 1;
        count(a, &a->snapshots);
        log_info("archive: partition %s: snapshot at %llu (%zu items) archived", g->name,
                 (unsigned long long)at, n);
    }
out:
    free(it);
    state_read_end(a->st, txn);
    return rc;
}

/* The manifests of G/<sub> with their upload times. */
struct mobj {
    uint64_t first, last;
    int64_t time_ms;
    char name[ARCHIVE_MAX_NAME + 96]; /* the object */
};

static int list_manifests(struct archiver *a, const char *group, const char *sub, struct mobj **out,
                          size_t *n, struct nerr *err)
{
    char dir[CATALOG_MAX_PATH_NAME + 16];
    char **names = NULL;
    size_t nn = 0, k = 0;
    snprintf(dir, sizeof dir, "%s/%s", group, sub);
    int rc = archive_list_dir(a->ar, dir, &names, &nn, err);
    if (rc)
        return rc;
    struct mobj *v = calloc(nn ? nn : 1, sizeof *v);
    for (size_t i = 0; v && !rc && i < nn; i++) {
        uint64_t f = 0, l = 0;
        if (!parse_range(names[i], !strcmp(sub, "log"), &f, &l))
            continue;
        if (strcmp(sub, "log"))
            l = f;
        char mname[ARCHIVE_MAX_NAME + 96];
        unsigned char *mb = NULL;
        size_t ml = 0;
        snprintf(mname, sizeof mname, "%s/%s", dir, names[i]);
        if ((rc = archive_get(a->ar, mname, 1u << 20, &mb, &ml, err)))
            break;
        json_t *m = json_loadb((const char *)mb, ml, 0, NULL);
        free(mb);
        const char *obj = json_string_value(json_object_get(m, "object"));
        v[k] = (struct mobj){f, l, (int64_t)json_integer_value(json_object_get(m, "time_ms")), ""};
        snprintf(v[k].name, sizeof v[k].name, "%s", obj ? obj : "");
        json_decref(m);
        if (v[k].name[0])
            k++;
    }
    archive_names_free(names, nn);
    if (!v)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    *n = k;
    return 0;
}

/* Deletes an object: its manifest first (it then counts for nothing). */
static int expire(struct archiver *a, const char *object, struct nerr *err)
{
    char mname[ARCHIVE_MAX_NAME + 96];
    archive_manifest_name(object, mname, sizeof mname);
    int rc = archive_remove(a->ar, mname, err);
    if (!rc || rc == NERR_NOTFOUND)
        rc = archive_remove(a->ar, object, err);
    if (rc == NERR_NOTFOUND)
        rc = 0;
    if (!rc)
        count(a, &a->expired);
    return rc;
}

/* Retention (archiver.h): one partition, its leader. */
static int retain(struct archiver *a, struct agroup *g, struct nerr *err)
{
    struct mobj *snaps = NULL, *logs = NULL;
    size_t ns = 0, nl = 0;
    int64_t cutoff = clock_wall_ms() - (int64_t)(a->opt.retention_ns / 1000000);
    int rc = list_manifests(a, g->name, "snap", &snaps, &ns, err);
    if (!rc)
        rc = list_manifests(a, g->name, "log", &logs, &nl, err);
    struct mobj *keep = NULL;
    for (size_t i = 0; !rc && i < ns; i++)
        if (snaps[i].time_ms && snaps[i].time_ms < cutoff &&
            (!keep || snaps[i].first > keep->first))
            keep = &snaps[i];
    if (rc || !keep)
        goto out;
    /* The snapshot everything older is replaced by must prove whole. */
    unsigned char *buf = NULL, *mb = NULL;
    size_t len = 0, ml = 0;
    char mname[ARCHIVE_MAX_NAME + 96], sha[65];
    struct archive_object_info info;
    archive_manifest_name(keep->name, mname, sizeof mname);
    if ((rc = archive_get(a->ar, mname, 1u << 20, &mb, &ml, err)) ||
        (rc = archive_get(a->ar, keep->name, ARCHIVE_MAX_OBJECT, &buf, &len, err)) ||
        (rc = archive_object_parse(buf, len, NULL, NULL, NULL, &info, err))) {
        free(mb);
        free(buf);
        goto out;
    }
    archive_hex(info.sha256, 32, sha);
    json_t *m = json_loadb((const char *)mb, ml, 0, NULL);
    const char *msha = json_string_value(json_object_get(m, "sha256"));
    if (!msha || strcmp(msha, sha) || info.first != keep->first)
        rc = nerr_set(err, NERR_CORRUPT, "%s does not prove whole: retention deletes nothing",
                      keep->name);
    json_decref(m);
    free(mb);
    free(buf);
    for (size_t i = 0; !rc && i < nl; i++)
        if (logs[i].last <= keep->first)
            rc = expire(a, logs[i].name, err);
    for (size_t i = 0; !rc && i < ns; i++)
        if (snaps[i].first < keep->first)
            rc = expire(a, snaps[i].name, err);
out:
    free(snaps);
    free(logs);
    return rc;
}

struct walk_item {
    struct table *t;
    int part;
    struct group *g;
};
struct walk {
    struct walk_item *v;
    size_t n, cap;
};

static void collect(void *arg, struct table *t, int part, struct group *g)
{
    struct walk *w = arg;
    if (!t)
        return; /* the metadata group is not archived */
    if (w->n == w->cap) {
        size_t nc = w->cap ? 2 * w->cap : 256;
        struct walk_item *nv = realloc(w->v, nc * sizeof *nv);
        if (!nv)
            return;
        w->v = nv;
        w->cap = nc;
    }
    atomic_fetch_add(&t->refs, 1);
    w->v[w->n++] = (struct walk_item){t, part, g};
}

/* The hold (archiver.h, "Holding the log"): the log is kept after what
 * this replica has seen archived, until it is max_behind entries ahead of
 * that; released, it is held again once the archive is back within half. */
static void hold(struct archiver *a, struct agroup *g, struct group *grp,
                 const struct group_status *st, uint64_t *behind)
{
    uint64_t lag = st->applied > g->done_end ? st->applied - g->done_end : 0;
    if (lag > *behind)
        *behind = lag;
    if (!g->released && lag > a->opt.max_behind) {
        g->released = 1;
        count(a, &a->released);
        log_error("archive: partition %s: the archive is %llu entries behind this replica "
                  "(more than max_behind %llu): its log is compacted without waiting; entries "
                  "compacted before they are archived leave a gap",
                  g->name, (unsigned long long)lag, (unsigned long long)a->opt.max_behind);
    } else if (g->released && lag < a->opt.max_behind / 2) {
        g->released = 0;
        log_info("archive: partition %s: the archive caught up; the log is held again", g->name);
    }
    group_log_hold(grp, g->released ? UINT64_MAX : g->done_end);
}

/* One partition replica: its pieces, its hold, its seal, its snapshot. */
static void tend(struct archiver *a, struct walk_item *wi, uint64_t now, uint64_t *behind,
                 uint64_t *pending)
{
    const struct partition *p = &wi->t->parts[wi->part];
    struct agroup *g = ag_find(a, p->name, 1);
    if (!g)
        return;
    g->epoch = a->epoch;
    struct nerr e = {0};
    struct group_status st;
    group_status(wi->g, &st);
    if (!a->ar || (!g->known && learn(a, g, p, &e))) {
        /* The archive cannot be reached: nothing is known archived; the
         * log is held (up to max_behind, below) and writes go on. */
        if (a->ar)
            arch_error(a, p->name, &e);
        hold(a, g, wi->g, &st, behind);
        return;
    }
    int leader = st.role == RAFT_LEADER && !st.failed;
    /* Pieces, in order: the hold moves past each one seen archived. */
    while (g->head) {
        struct apiece *pc = g->head;
        enum piece_outcome o = do_piece(a, g, pc, wi->t, wi->part, wi->g, leader, now);
        if (o != P_DONE)
            break;
        if (!g->arch_first)
            g->arch_first = pc->first;
        g->done_end = pc->last;
        g->head = pc->next;
        if (!g->head)
            g->tail = NULL;
        free(pc);
    }
    for (struct apiece *pc = g->head; pc; pc = pc->next)
        (*pending)++;
    hold(a, g, wi->g, &st, behind);
    if (!leader)
        return;
    /* Seal: entries wait after the last seal; enough bytes or old enough
     * (the age counts from when the first entry after the last seal was
     * seen, so a busy partition seals every seal_after, not every pass). */
    if (g->timed_seal != g->seal_last) {
        g->timed_seal = g->seal_last;
        g->unsealed_ns = 0;
    }
    if (st.commit <= g->seal_last) {
        g->unsealed_ns = 0;
    } else {
        if (!g->unsealed_ns)
            g->unsealed_ns = now;
        int waiting =
            g->prop_ns && g->prop_first > g->seal_last && now - g->prop_ns < SEAL_RETRY_NS;
        int due = now - g->unsealed_ns >= a->opt.seal_after_ns;
        if (!waiting && !due && st.commit - g->seal_last >= 64) {
            uint64_t bytes = 0;
            if (!group_log_bytes(wi->g, g->seal_last + 1, st.commit, &bytes, &e))
                due = bytes >= a->opt.piece_size;
            nerr_clear(&e);
        }
        if (due && !waiting)
            propose_seal(a, g, wi->g, now);
    }
    /* Snapshot: the first one when the archive's log does not start at 1,
     * then every snapshot_every entries; one per pass at most. */
    int want = g->has_snap ? st.applied >= g->snap_index + a->opt.snapshot_every
                           : (g->arch_first > 1 || st.applied >= a->opt.snapshot_every);
    if (want && st.applied && put_snapshot(a, g, wi->t, wi->part, wi->g, &e) &&
        e.code != NERR_NOTFOUND)
        arch_error(a, p->name, &e);
    /* Retention: about once a minute (once a retention, when shorter). */
    uint64_t every = a->opt.retention_ns < 60000000000ull ? a->opt.retention_ns : 60000000000ull;
    if (a->opt.retention_ns && g->has_snap && now - g->retain_ns >= every) {
        g->retain_ns = now;
        nerr_clear(&e);
        if (retain(a, g, &e))
            arch_error(a, p->name, &e);
    }
}

static void *archiver_main(void *arg)
{
    struct archiver *a = arg;
    struct walk w = {0};
    for (;;) {
        pthread_mutex_lock(&a->mu);
        if (!a->stop && !a->ev_head) {
            uint64_t dl = clock_mono_ns() + PASS_MS * 1000000ull;
            struct timespec ts = {(time_t)(dl / 1000000000ull), (long)(dl % 1000000000ull)};
            pthread_cond_timedwait(&a->cv, &a->mu, &ts);
        }
        int stop = a->stop;
        struct aev *ev = a->ev_head;
        a->ev_head = a->ev_tail = NULL;
        pthread_mutex_unlock(&a->mu);
        uint64_t now = clock_mono_ns();
        for (struct aev *e = ev, *n; e; e = n) {
            n = e->next;
            struct agroup *g = ag_find(a, e->name, 0);
            /* A group not yet learned finds its seals in LMDB. */
            if (g && g->known)
                ag_add(g, e->first, e->last, now);
            free(e);
        }
        if (stop)
            break;
        /* An archive that could not be opened (an SSH server down at
         * start) is tried again every few seconds. */
        if (!a->ar && now - a->open_ns >= 5000000000ull) {
            struct nerr oe = {0};
            a->open_ns = now;
            if (archive_open(a->url, 1, &a->ar, &oe))
                arch_error(a, "open", &oe);
            else
                log_info("archive: %s reached", a->url);
        }
        a->epoch++;
        w.n = 0;
        catalog_each_group(a->c, collect, &w);
        uint64_t behind = 0, pending = 0;
        for (size_t i = 0; i < w.n; i++) {
            tend(a, &w.v[i], now, &behind, &pending);
            table_put(w.v[i].t);
        }
        /* Partitions no longer here (dropped tables, moved replicas). */
        for (unsigned b = 0; b < BUCKETS; b++)
            for (struct agroup **pp = &a->buckets[b], *g; (g = *pp);) {
                if (g->epoch != a->epoch) {
                    *pp = g->hnext;
                    ag_free(g);
                } else
                    pp = &g->hnext;
            }
        pthread_mutex_lock(&a->mu);
        a->behind = behind;
        a->pending = pending;
        pthread_mutex_unlock(&a->mu);
    }
    free(w.v);
    return NULL;
}

int archiver_start(const struct archiver_options *opt, struct catalog *c, struct archiver **out,
                   struct nerr *err)
{
    struct archiver *a = calloc(1, sizeof *a);
    if (!a)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    a->opt = *opt;
    a->url = strdup(opt->url);
    a->self = strdup(opt->self_id);
    a->c = c;
    a->st = catalog_state(c);
    if (!a->opt.verify_after_ns)
        a->opt.verify_after_ns = 5000000000ull;
    if (!a->opt.seal_after_ns)
        a->opt.seal_after_ns = 10000000000ull;
    if (!a->opt.piece_size)
        a->opt.piece_size = 4u << 20;
    if (!a->opt.max_behind)
        a->opt.max_behind = 1000000;
    if (!a->opt.snapshot_every)
        a->opt.snapshot_every = 200000;
    pthread_mutex_init(&a->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = 0;
    if (!a->url || !a->self)
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
    else if (archive_open(opt->url, 1, &a->ar, err)) {
        /* Not fatal: the node serves and holds its log; the thread tries
         * again (an unreachable archive never stops writes). */
        arch_error(a, "open", err);
        a->ar = NULL;
        a->open_ns = clock_mono_ns();
        nerr_clear(err);
    }
    if (!rc && pthread_create(&a->th, NULL, archiver_main, a))
        rc = nerr_set(err, NERR_IO, "cannot start the archiver thread");
    if (rc) {
        archive_close(a->ar);
        free(a->url);
        free(a->self);
        free(a);
        return rc;
    }
    pthread_setname_np(a->th, "nines-archiver");
    log_info("archive: %s (seal after %llu ms or %llu bytes; replicas verify after %llu ms)",
             a->url, (unsigned long long)(a->opt.seal_after_ns / 1000000),
             (unsigned long long)a->opt.piece_size,
             (unsigned long long)(a->opt.verify_after_ns / 1000000));
    *out = a;
    return 0;
}

void archiver_stop(struct archiver *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->mu);
    int was = a->stop;
    a->stop = 1;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    if (!was)
        pthread_join(a->th, NULL);
}

void archiver_free(struct archiver *a)
{
    if (!a)
        return;
    archiver_stop(a);
    for (struct aev *e = a->ev_head, *n; e; e = n) {
        n = e->next;
        free(e);
    }
    for (unsigned b = 0; b < BUCKETS; b++)
        for (struct agroup *g = a->buckets[b], *n; g; g = n) {
            n = g->hnext;
            ag_free(g);
        }
    archive_close(a->ar);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a->url);
    free(a->self);
    free(a);
}

json_t *archiver_status(struct archiver *a)
{
    pthread_mutex_lock(&a->mu);
    json_t *o = json_pack(
        "{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s?}", "url", a->url, "behind_entries",
        (json_int_t)a->behind, "pending_pieces", (json_int_t)a->pending, "uploaded",
        (json_int_t)a->uploaded, "verified", (json_int_t)a->verified, "taken_over",
        (json_int_t)a->taken_over, "mismatches", (json_int_t)a->mismatches, "errors",
        (json_int_t)a->errors, "released_unarchived", (json_int_t)a->released, "snapshots",
        (json_int_t)a->snapshots, "skipped", (json_int_t)a->skipped, "expired",
        (json_int_t)a->expired, "last_error", a->last_error[0] ? a->last_error : NULL);
    pthread_mutex_unlock(&a->mu);
    return o;
}

void archiver_metrics(struct archiver *a, struct strbuf *b)
{
    static const struct {
        const char *name, *type, *help;
    } m[] = {
        {"behind_entries", "gauge",
         "The most entries any partition replica here applied past what it has seen archived."},
        {"pending_pieces", "gauge", "Sealed pieces not yet seen archived by this node."},
        {"uploads_total", "counter", "Pieces this node uploaded as their partition's leader."},
        {"verified_total", "counter", "Pieces another replica uploaded that this node checked."},
        {"takeovers_total", "counter", "Pieces this node uploaded because nobody else had."},
        {"mismatches_total", "counter", "Archived pieces that differ from this node's log."},
        {"errors_total", "counter", "Archive operations that failed (unreachable, full)."},
        {"released_total", "counter", "Times a log was compacted before it was archived."},
        {"snapshots_total", "counter", "Partition snapshots this node archived."},
        {"expired_total", "counter", "Archive objects deleted by retention."},
    };
    pthread_mutex_lock(&a->mu);
    uint64_t v[] = {a->behind,     a->pending, a->uploaded, a->verified,  a->taken_over,
                    a->mismatches, a->errors,  a->released, a->snapshots, a->expired};
    pthread_mutex_unlock(&a->mu);
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        char line[512];
        snprintf(line, sizeof line,
                 "# HELP nines_archive_%s %s\n# TYPE nines_archive_%s %s\nnines_archive_%s %llu\n",
                 m[i].name, m[i].help, m[i].name, m[i].type, m[i].name, (unsigned long long)v[i]);
        strbuf_str(b, line);
    }
}
