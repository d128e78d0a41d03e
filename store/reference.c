/*
 * reference.c — the reference replica rebuilt from the archive
 * (reference.h).
 */
#include "store/reference.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <lmdb.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive/archive.h"
#include "lib/clock.h"
#include "lib/fsutil.h"
#include "lib/le.h"
#include "store/catalog.h"
#include "store/group.h"
#include "store/items.h"
#include "store/op.h"
#include "store/state.h"

#define COMMIT_EVERY 4096 /* entries applied per LMDB transaction */

void reference_fingerprint(const struct digest *d, char out[65])
{
    unsigned char lanes[2 * DIGEST_LANES], fp[32];
    unsigned fl = 0;
    for (size_t i = 0; i < DIGEST_LANES; i++)
        le_put16(lanes + 2 * i, d->lane[i]);
    EVP_Digest(lanes, sizeof lanes, fp, &fl, EVP_sha256(), NULL);
    archive_hex(fp, 32, out);
}

/* One archived object named by a manifest: what the manifest says. */
struct obj {
    uint64_t first, last; /* a snapshot: first = last = its index */
    char name[ARCHIVE_MAX_NAME + 96];
    char digest[65]; /* a snapshot's recorded fingerprint (short hex), or "" */
};

static int cmp_obj(const void *a, const void *b)
{
    const struct obj *x = a, *y = b;
    return x->first < y->first ? -1 : x->first > y->first;
}

/* The manifests under G/<sub> (log or snap), sorted by first index. */
static int list_objs(struct archive *a, const char *group, const char *sub, struct obj **out,
                     size_t *n, struct nerr *err)
{
    char dir[ARCHIVE_MAX_NAME + 16];
    char **names = NULL;
    size_t nn = 0;
    snprintf(dir, sizeof dir, "%s/%s", group, sub);
    int rc = archive_list_dir(a, dir, &names, &nn, err);
    if (rc)
        return rc;
    struct obj *v = calloc(nn ? nn : 1, sizeof *v);
    size_t k = 0;
    if (!v) {
        archive_names_free(names, nn);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < nn; i++) {
        size_t len = strlen(names[i]);
        if (len < 6 || strcmp(names[i] + len - 5, ".json") || names[i][0] == '.')
            continue;
        char *end;
        v[k].first = strtoull(names[i], &end, 10);
        v[k].last = *end == '-' ? strtoull(end + 1, NULL, 10) : v[k].first;
        snprintf(v[k].name, sizeof v[k].name, "%s/%.*s.%s", dir, (int)(len - 5), names[i],
                 strcmp(sub, "log") ? "snap" : "piece");
        k++;
    }
    archive_names_free(names, nn);
    qsort(v, k, sizeof *v, cmp_obj);
    *out = v;
    *n = k;
    return 0;
}

/* Fetches an object and proves it is the one its manifest vouches for. */
static int fetch(struct archive *a, const char *group, struct obj *o, unsigned char **buf,
                 size_t *len, struct archive_object_info *info, struct nerr *err)
{
    char mname[ARCHIVE_MAX_NAME + 96];
    unsigned char *mb = NULL;
    size_t ml = 0;
    archive_manifest_name(o->name, mname, sizeof mname);
    int rc = archive_get(a, mname, 1u << 20, &mb, &ml, err);
    if (rc)
        return rc;
    json_error_t je;
    json_t *m = json_loadb((const char *)mb, ml, 0, &je);
    free(mb);
    const char *sha = json_string_value(json_object_get(m, "sha256"));
    json_t *bytes = json_object_get(m, "bytes");
    if (!sha || !json_is_integer(bytes)) {
        json_decref(m);
        return nerr_set(err, NERR_CORRUPT, "%s: not a manifest this version reads", mname);
    }
    const char *dg = json_string_value(json_object_get(m, "digest"));
    snprintf(o->digest, sizeof o->digest, "%s", dg ? dg : "");
    char want[65];
    snprintf(want, sizeof want, "%s", sha);
    json_int_t wl = json_integer_value(bytes);
    json_decref(m);
    if ((rc = archive_get(a, o->name, ARCHIVE_MAX_OBJECT, buf, len, err)))
        return rc;
    char got[65];
    if ((json_int_t)*len != wl)
        rc = nerr_set(err, NERR_CORRUPT, "%s: %zu bytes, its manifest says %lld", o->name, *len,
                      (long long)wl);
    else if ((rc = archive_object_parse(*buf, *len, NULL, NULL, NULL, info, err))) {
        char m2[NERR_MSG_MAX];
        snprintf(m2, sizeof m2, "%s", err->msg);
        nerr_set(err, rc, "%s: %s", o->name, m2);
    } else {
        archive_hex(info->sha256, 32, got);
        if (strcmp(got, want))
            rc = nerr_set(err, NERR_CORRUPT, "%s: SHA-256 %s, its manifest vouches for %s", o->name,
                          got, want);
        else if (strcmp(info->group, group) || info->first != o->first || info->last != o->last)
            rc = nerr_set(err, NERR_CORRUPT, "%s: holds %s %llu..%llu, not what its name says",
                          o->name, info->group, (unsigned long long)info->first,
                          (unsigned long long)info->last);
    }
    if (rc) {
        free(*buf);
        *buf = NULL;
    }
    return rc;
}

struct replay {
    struct partition *p;
    MDB_env *env;
    MDB_txn *txn;
    uint64_t next, upto; /* the next index expected; the last wanted */
    size_t in_txn;
    struct reference_result *r;
    struct nerr *err;
    const char *object;
};

static int commit(struct replay *rp)
{
    int rc = items_sm.before_commit(rp->p, rp->txn, rp->err);
    if (rc) {
        mdb_txn_abort(rp->txn);
        rp->txn = NULL;
        return rc;
    }
    int mrc = mdb_txn_commit(rp->txn);
    rp->txn = NULL;
    rp->in_txn = 0;
    return mrc ? state_mdb_err(rp->err, mrc, "commit the reference") : 0;
}

static int begin(struct replay *rp)
{
    int mrc = mdb_txn_begin(rp->env, NULL, 0, &rp->txn);
    return mrc ? state_mdb_err(rp->err, mrc, "begin a reference transaction") : 0;
}

static int on_entry(void *arg, const struct archive_entry *e)
{
    struct replay *rp = arg;
    if (e->index < rp->next)
        return 0; /* before the snapshot or the last piece */
    if (e->index > rp->upto)
        return 1; /* done (not an error: the caller checks next) */
    if (e->index != rp->next)
        return nerr_set(rp->err, NERR_CORRUPT, "%s: entry %llu follows %llu (a gap)", rp->object,
                        (unsigned long long)e->index, (unsigned long long)rp->next - 1);
    const unsigned char *d = e->data;
    size_t len = e->len;
    if (len >= 9 && d[0] == 0x01) { /* a forwarded proposal's frame (group_internal.h) */
        d += 9;
        len -= 9;
    }
    if (len) {
        void *result = NULL;
        struct nerr ae = {0};
        int rc = items_sm.apply(rp->p, rp->txn, e->index, d, len, NULL, &result, &ae);
        if (result)
            items_sm.free_result(result);
        if (rc == GROUP_APPLY_POISONED)
            rp->r->poisoned++;
        else if (rc)
            return nerr_set(rp->err, rc, "entry %llu: %s", (unsigned long long)e->index, ae.msg);
    }
    rp->next++;
    rp->r->entries++;
    if (++rp->in_txn >= COMMIT_EVERY) {
        int rc = commit(rp);
        if (rc || (rc = begin(rp)))
            return rc;
    }
    return 0;
}

static int load_item(void *arg, const struct archive_item *it)
{
    struct replay *rp = arg;
    MDB_val k = {it->klen, (void *)it->key}, v = {it->vlen, (void *)it->val};
    int mrc = mdb_put(rp->txn, rp->p->dbi, &k, &v, MDB_APPEND);
    return mrc ? state_mdb_err(rp->err, mrc, "load a snapshot item") : 0;
}

struct list_acc {
    const struct table *t;
    json_t *items;
};

static int list_fn(void *arg, const void *key, size_t klen, const void *item, size_t ilen,
                   const unsigned char hash[DIGEST_HASH_BYTES], struct nerr *err)
{
    (void)item, (void)ilen;
    struct list_acc *la = arg;
    char hx[2 * DIGEST_HASH_BYTES + 1], *kh = malloc(2 * klen + 1);
    if (!kh)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    digest_hash_hex(hash, hx);
    archive_hex(key, klen, kh);
    json_t *kj = items_key_json(la->t, key, klen);
    json_t *o =
        json_pack("{s:o,s:s,s:s}", "Key", kj ? kj : json_null(), "KeyBytes", kh, "Hash", hx);
    free(kh);
    if (!o || json_array_append_new(la->items, o))
        return nerr_set(err, NERR_NOMEM, "out of memory");
    return 0;
}

int reference_build(const struct reference_options *o, struct reference_result *r, struct nerr *err)
{
    memset(r, 0, sizeof *r);
    r->index = o->upto;
    uint64_t t0 = clock_mono_ns();
    struct archive *a = NULL;
    struct obj *snaps = NULL, *logs = NULL;
    size_t ns = 0, nl = 0;
    MDB_env *env = NULL;
    struct table t = {.name = "reference",
                      .id = "reference",
                      .hash_name = (char *)o->hash_name,
                      .range_name = (char *)o->range_name,
                      .hash_type = o->hash_type,
                      .range_type = o->range_type,
                      .nparts = 1};
    struct partition p = {.t = &t};
    struct replay rp = {.p = &p, .r = r, .err = err};
    unsigned char *buf = NULL;
    size_t len = 0;
    struct archive_object_info info;
    int rc;
    if (!archive_group_ok(o->group) || strlen(o->group) > CATALOG_MAX_PATH_NAME)
        return nerr_set(err, NERR_INVALID, "'%s' is not a partition's group name", o->group);
    snprintf(p.name, sizeof p.name, "%s", o->group);
    if ((rc = archive_open(o->url, 0, &a, err)) ||
        (rc = list_objs(a, o->group, "snap", &snaps, &ns, err)) ||
        (rc = list_objs(a, o->group, "log", &logs, &nl, err)) || (rc = fs_mkdir_p(o->scratch, err)))
        goto out;
    int mrc;
    if ((mrc = mdb_env_create(&env)) || (mrc = mdb_env_set_maxdbs(env, 4)) ||
        (mrc = mdb_env_set_mapsize(env, 64ull << 30)) ||
        (mrc = mdb_env_open(env, o->scratch, MDB_NOSYNC | MDB_NOMETASYNC, 0600))) {
        rc = state_mdb_err(err, mrc, "the scratch LMDB");
        goto out;
    }
    rp.env = env;
    if ((rc = begin(&rp)))
        goto out;
    if ((mrc = mdb_dbi_open(rp.txn, "_digest", MDB_CREATE, &p.ddbi)) ||
        (mrc = mdb_dbi_open(rp.txn, o->group, MDB_CREATE, &p.dbi)) ||
        (mrc = mdb_drop(rp.txn, p.dbi, 0)) || (mrc = mdb_drop(rp.txn, p.ddbi, 0))) {
        rc = state_mdb_err(err, mrc, "scratch databases");
        goto out;
    }
    /* An empty partition keeps an (empty) digest from here on. */
    if ((rc = digest_rebuild(rp.txn, p.ddbi, p.name, p.dbi, err)))
        goto out;
    /* The newest snapshot at or before upto. */
    struct obj *snap = NULL;
    for (size_t i = 0; i < ns; i++)
        if (snaps[i].first <= o->upto)
            snap = &snaps[i];
    rp.next = 1;
    rp.upto = o->upto;
    if (snap) {
        rp.object = snap->name;
        if ((rc = fetch(a, o->group, snap, &buf, &len, &info, err)) ||
            (rc = archive_object_parse(buf, len, NULL, load_item, &rp, &info, err)) ||
            (rc = digest_rebuild(rp.txn, p.ddbi, p.name, p.dbi, err)))
            goto out;
        free(buf);
        buf = NULL;
        struct digest d;
        char sh[33];
        if ((rc = digest_get(rp.txn, p.ddbi, p.name, &d, err)))
            goto out;
        digest_short_hex(&d, sh);
        if (snap->digest[0] && strcmp(sh, snap->digest)) {
            rc = nerr_set(err, NERR_CORRUPT,
                          "%s: its items give digest %s, the replica that archived it had %s",
                          snap->name, sh, snap->digest);
            goto out;
        }
        r->snap_index = snap->first;
        rp.next = snap->first + 1;
    }
    for (size_t i = 0; i < nl && rp.next <= o->upto; i++) {
        if (logs[i].last < rp.next)
            continue;
        if (logs[i].first > rp.next) {
            rc = nerr_set(err, NERR_CORRUPT,
                          "%s/log: entries %llu..%llu are in no archived piece (a gap)", o->group,
                          (unsigned long long)rp.next, (unsigned long long)logs[i].first - 1);
            goto out;
        }
        rp.object = logs[i].name;
        if ((rc = fetch(a, o->group, &logs[i], &buf, &len, &info, err)))
            goto out;
        rc = archive_object_parse(buf, len, on_entry, NULL, &rp, &info, err);
        free(buf);
        buf = NULL;
        if (rc < 0)
            goto out;
        rc = 0;
        r->pieces++;
    }
    if (rp.next <= o->upto) {
        rc = nerr_set(err, NERR_NOTFOUND,
                      "%s: the archive holds entries up to %llu, not yet %llu (not archived yet, "
                      "or a gap at the end)",
                      o->group, (unsigned long long)rp.next - 1, (unsigned long long)o->upto);
        goto out;
    }
    if ((rc = commit(&rp)) || (rc = begin(&rp)))
        goto out;
    if ((rc = digest_get(rp.txn, p.ddbi, p.name, &r->d, err)) ||
        (rc = digest_get_buckets(rp.txn, p.ddbi, p.name, r->bucket, err)))
        goto out;
    if (o->nlist) {
        r->lists = json_object();
        for (size_t i = 0; !rc && r->lists && i < o->nlist; i++) {
            json_t *arr = json_array();
            struct list_acc la = {&t, arr};
            struct digest_scan sc = {.bucket = (unsigned)o->list_buckets[i],
                                     .sub = -1,
                                     .limit = (size_t)-1,
                                     .max_examined = 0};
            struct digest_scan_end end;
            char b[16];
            snprintf(b, sizeof b, "%d", o->list_buckets[i]);
            rc = digest_bucket_scan(rp.txn, p.dbi, &sc, list_fn, &la, &end, err);
            json_object_set_new(r->lists, b, arr);
        }
        if (rc)
            goto out;
    }
    if (o->on_item) {
        MDB_cursor *cur;
        if ((mrc = mdb_cursor_open(rp.txn, p.dbi, &cur))) {
            rc = state_mdb_err(err, mrc, "reference cursor");
            goto out;
        }
        MDB_val k, v;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        while (!mrc && !rc) {
            rc = o->on_item(o->item_arg, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
            if (!rc)
                mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        mdb_cursor_close(cur);
        if (rc)
            nerr_set(err, rc, "%s: the item walk stopped (%s)", o->group, nerr_name(rc));
        else if (mrc != MDB_NOTFOUND)
            rc = state_mdb_err(err, mrc, "reference cursor");
    }
out:
    if (rp.txn)
        mdb_txn_abort(rp.txn);
    digest_pending_discard(&p.dpend);
    if (env)
        mdb_env_close(env);
    free(buf);
    free(snaps);
    free(logs);
    archive_close(a);
    r->seconds = (double)(clock_mono_ns() - t0) / 1e9;
    return rc;
}

struct at_scan {
    int64_t t_ms, w; /* the target; the running wall clock of the entries */
    uint64_t index;
    int64_t last_ms;
};

static int at_entry(void *arg, const struct archive_entry *e)
{
    struct at_scan *sc = arg;
    const unsigned char *d = e->data;
    size_t len = e->len;
    if (len >= 9 && d[0] == 0x01) {
        d += 9;
        len -= 9;
    }
    if (len && d[0] == '{') {
        json_t *o = json_loadb((const char *)d, len, 0, NULL);
        json_t *w = json_object_get(o, "w");
        if (json_is_integer(w) && json_integer_value(w) > 0)
            sc->w = json_integer_value(w);
        json_decref(o);
    }
    if (sc->w && sc->w <= sc->t_ms && e->index > sc->index)
        sc->index = e->index;
    if (sc->w > sc->last_ms)
        sc->last_ms = sc->w;
    return 0;
}

int reference_index_at(const char *url, const char *group, int64_t t_ms, uint64_t *index,
                       int64_t *last_ms, uint64_t *end, struct nerr *err)
{
    struct archive *a = NULL;
    struct obj *logs = NULL;
    size_t nl = 0;
    unsigned char *buf = NULL;
    size_t len = 0;
    struct archive_object_info info;
    struct at_scan sc = {.t_ms = t_ms};
    *index = 0;
    *end = 0;
    int rc = archive_open(url, 0, &a, err);
    if (!rc)
        rc = list_objs(a, group, "log", &logs, &nl, err);
    for (size_t i = 0; !rc && i < nl; i++) {
        char mname[ARCHIVE_MAX_NAME + 96];
        unsigned char *mb = NULL;
        size_t ml = 0;
        archive_manifest_name(logs[i].name, mname, sizeof mname);
        if ((rc = archive_get(a, mname, 1u << 20, &mb, &ml, err)))
            break;
        json_t *m = json_loadb((const char *)mb, ml, 0, NULL);
        free(mb);
        int64_t up = (int64_t)json_integer_value(json_object_get(m, "time_ms"));
        json_decref(m);
        *end = logs[i].last;
        if (up && up < t_ms - REFERENCE_SKEW_MS) {
            sc.index = logs[i].last; /* every entry in it came before t_ms */
            if (up > sc.last_ms)
                sc.last_ms = up;
            continue;
        }
        if ((rc = fetch(a, group, &logs[i], &buf, &len, &info, err)))
            break;
        rc = archive_object_parse(buf, len, at_entry, NULL, &sc, &info, err);
        free(buf);
        buf = NULL;
    }
    free(logs);
    archive_close(a);
    if (!rc) {
        *index = sc.index;
        *last_ms = sc.last_ms;
    }
    return rc;
}

json_t *reference_json(const struct reference_options *o, const struct reference_result *r)
{
    char fp[65];
    reference_fingerprint(&r->d, fp);
    json_t *b = json_array();
    for (size_t i = 0; b && i < DIGEST_BUCKETS; i++) {
        unsigned char bl[2 * DIGEST_BUCKET_LANES];
        char h[4 * DIGEST_BUCKET_LANES + 1];
        for (size_t k = 0; k < DIGEST_BUCKET_LANES; k++)
            le_put16(bl + 2 * k, r->bucket[i][k]);
        archive_hex(bl, sizeof bl, h);
        json_array_append_new(b, json_string(h));
    }
    return json_pack("{s:s,s:I,s:I,s:I,s:s,s:o,s:I,s:I,s:I,s:I,s:f}", "Group", o->group, "Lsn",
                     (json_int_t)r->index, "Items", (json_int_t)r->d.items, "Bytes",
                     (json_int_t)r->d.bytes, "Fingerprint", fp, "Buckets", b, "Snapshot",
                     (json_int_t)r->snap_index, "Entries", (json_int_t)r->entries, "Pieces",
                     (json_int_t)r->pieces, "Poisoned", (json_int_t)r->poisoned, "Seconds",
                     r->seconds);
}

/* reference_json with the bucket listings, when there are. */
static json_t *reference_json_all(const struct reference_options *o,
                                  const struct reference_result *r)
{
    json_t *j = reference_json(o, r);
    if (j && r->lists)
        json_object_set(j, "Lists", r->lists);
    return j;
}

static int key_arg(const char *s, const char **name, char *type, char *buf, size_t cap)
{
    const char *c = strrchr(s, ':');
    if (!c || c == s || strlen(c + 1) != 1 || !strchr("SNB", c[1]) || (size_t)(c - s) >= cap)
        return -1;
    memcpy(buf, s, (size_t)(c - s));
    buf[c - s] = 0;
    *name = buf;
    *type = c[1];
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: nines reference URL --group G --upto INDEX --key NAME:TYPE[,NAME:TYPE]\n"
               "                        [--json FILE] [--dir SCRATCH] [--list-buckets B,...]\n"
               "Rebuilds partition G's state at log index INDEX from the archive alone (the\n"
               "newest snapshot before it, then every piece), through the store's own state\n"
               "machine, and prints its digest. TYPE: S, N or B (the table's key schema).\n"
               "Exit 0 built, 1 the archive cannot give it (each problem named), 2 usage.\n");
}

int reference_main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"group", 1, 0, 'g'}, {"upto", 1, 0, 'u'},         {"key", 1, 0, 'k'},  {"json", 1, 0, 'j'},
        {"dir", 1, 0, 'd'},   {"list-buckets", 1, 0, 'l'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    struct reference_options o = {0};
    const char *json_path = NULL, *key = NULL;
    int lb[DIGEST_BUCKETS];
    size_t nlist = 0;
    char hb[256], rb[256], scratch[PATH_MAX] = "";
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'g':
            o.group = optarg;
            break;
        case 'u': {
            char *end;
            errno = 0;
            o.upto = strtoull(optarg, &end, 10);
            if (errno || *end || !o.upto) {
                fprintf(stderr, "nines reference: --upto %s: a log index (1 or more)\n", optarg);
                return 2;
            }
            break;
        }
        case 'k':
            key = optarg;
            break;
        case 'j':
            json_path = optarg;
            break;
        case 'd':
            snprintf(scratch, sizeof scratch, "%s", optarg);
            break;
        case 'l': {
            char *p = optarg, *end;
            while (*p && nlist < DIGEST_BUCKETS) {
                errno = 0;
                long b = strtol(p, &end, 10);
                if (errno || end == p || b < 0 || b >= DIGEST_BUCKETS || (*end && *end != ',')) {
                    fprintf(stderr,
                            "nines reference: --list-buckets %s: bucket numbers 0..%d, "
                            "comma-separated\n",
                            optarg, DIGEST_BUCKETS - 1);
                    return 2;
                }
                lb[nlist++] = (int)b;
                p = *end ? end + 1 : end;
            }
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind + 1 != argc || !o.group || !o.upto || !key) {
        usage(stderr);
        return 2;
    }
    o.url = argv[optind];
    char kcopy[512];
    snprintf(kcopy, sizeof kcopy, "%s", key);
    char *comma = strchr(kcopy, ',');
    if (comma)
        *comma = 0;
    if (key_arg(kcopy, &o.hash_name, &o.hash_type, hb, sizeof hb) ||
        (comma && key_arg(comma + 1, &o.range_name, &o.range_type, rb, sizeof rb))) {
        fprintf(stderr, "nines reference: --key %s: NAME:TYPE[,NAME:TYPE], TYPE S, N or B\n", key);
        return 2;
    }
    int made = 0;
    if (!scratch[0]) {
        snprintf(scratch, sizeof scratch, "/tmp/nines-reference-XXXXXX");
        if (!mkdtemp(scratch)) {
            fprintf(stderr, "nines reference: mkdtemp: %s\n", strerror(errno));
            return 1;
        }
        made = 1;
    }
    o.scratch = scratch;
    o.list_buckets = lb;
    o.nlist = nlist;
    struct reference_result r;
    struct nerr err = {0};
    int rc = reference_build(&o, &r, &err);
    if (made) {
        char f[PATH_MAX + 16];
        snprintf(f, sizeof f, "%s/data.mdb", scratch);
        unlink(f);
        snprintf(f, sizeof f, "%s/lock.mdb", scratch);
        unlink(f);
        rmdir(scratch);
    }
    if (rc) {
        json_decref(r.lists);
        fprintf(stderr, "nines reference: %s\n", err.msg);
        return rc == NERR_INVALID ? 2 : 1;
    }
    char fp[65];
    reference_fingerprint(&r.d, fp);
    printf("%s: reference at %llu from %s%llu and %llu entries of %llu pieces: %llu items, %llu "
           "bytes, fingerprint %.16s (%.2f s, %.0f entries/s)\n",
           o.group, (unsigned long long)r.index, r.snap_index ? "snapshot " : "index ",
           (unsigned long long)r.snap_index, (unsigned long long)r.entries,
           (unsigned long long)r.pieces, (unsigned long long)r.d.items,
           (unsigned long long)r.d.bytes, fp, r.seconds,
           r.seconds > 0 ? (double)r.entries / r.seconds : 0.0);
    if (json_path) {
        json_t *j = reference_json_all(&o, &r);
        if (!j || json_dump_file(j, json_path, JSON_INDENT(1)) != 0) {
            fprintf(stderr, "nines reference: cannot write %s\n", json_path);
            json_decref(j);
            return 1;
        }
        json_decref(j);
    }
    json_decref(r.lists);
    return 0;
}
