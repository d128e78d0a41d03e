/*
 * verify.c — the proofs over a whole archive (archive.h, "proofs").
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive/archive.h"

#define MAX_MANIFEST (64u << 10)

struct obj {
    uint64_t first, last, first_term, last_term; /* snapshots: first = last = index */
    uint64_t bytes, count;
    char name[ARCHIVE_MAX_NAME + 96];
};

struct grp {
    char name[ARCHIVE_MAX_NAME + 1];
    char table[256];
    long long partition;
    int has_table;
    struct obj *logs, *snaps;
    size_t nlogs, nsnaps, caplogs, capsnaps;
};

struct ctx {
    struct archive *a;
    json_t *problems, *incomplete;
    struct grp *g;
    size_t ng, capg;
};

static void problem(struct ctx *c, const char *object, const char *what, const char *expected,
                    const char *found)
{
    json_array_append_new(c->problems, json_pack("{s:s,s:s,s:s,s:s}", "object", object, "problem",
                                                 what, "expected", expected ? expected : "",
                                                 "found", found ? found : ""));
}

static struct grp *group_of(struct ctx *c, const char *name)
{
    for (size_t i = 0; i < c->ng; i++)
        if (!strcmp(c->g[i].name, name))
            return &c->g[i];
    if (c->ng == c->capg) {
        size_t nc = c->capg ? c->capg * 2 : 16;
        struct grp *ng = realloc(c->g, nc * sizeof *ng);
        if (!ng)
            return NULL;
        c->g = ng;
        c->capg = nc;
    }
    struct grp *g = &c->g[c->ng++];
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    return g;
}

static int add_obj(struct obj **v, size_t *n, size_t *cap, const struct obj *o)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        struct obj *nv = realloc(*v, nc * sizeof *nv);
        if (!nv)
            return NERR_NOMEM;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = *o;
    return 0;
}

/* Splits NAME into group / kind dir / stem / extension, and reads the
 * indexes out of the stem. 1 when it has the shape of an archive object. */
struct parsed {
    char group[ARCHIVE_MAX_NAME + 1];
    int log; /* 1 log, 0 snapshot */
    int manifest;
    uint64_t first, last;
    char object[ARCHIVE_MAX_NAME + 96]; /* the object the name is or vouches for */
};

static int digits20(const char *s, uint64_t *v)
{
    uint64_t x = 0;
    for (int i = 0; i < 20; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return 0;
        x = x * 10 + d;
    }
    *v = x;
    return 1;
}

static int parse_name(const char *name, struct parsed *p)
{
    memset(p, 0, sizeof p[0]);
    const char *s1 = strchr(name, '/');
    if (!s1 || (size_t)(s1 - name) > ARCHIVE_MAX_NAME)
        return 0;
    memcpy(p->group, name, (size_t)(s1 - name));
    p->group[s1 - name] = 0;
    if (!archive_group_ok(p->group))
        return 0;
    const char *rest = s1 + 1;
    if (!strncmp(rest, "log/", 4)) {
        const char *f = rest + 4;
        if (strlen(f) < 41 || f[20] != '-' || !digits20(f, &p->first) ||
            !digits20(f + 21, &p->last))
            return 0;
        const char *ext = f + 41;
        if (!strcmp(ext, ".piece"))
            p->manifest = 0;
        else if (!strcmp(ext, ".json"))
            p->manifest = 1;
        else
            return 0;
        p->log = 1;
        archive_piece_name(p->group, p->first, p->last, p->object, sizeof p->object);
        return p->first >= 1 && p->last >= p->first;
    }
    if (!strncmp(rest, "snap/", 5)) {
        const char *f = rest + 5;
        if (strlen(f) < 20 || !digits20(f, &p->first))
            return 0;
        p->last = p->first;
        const char *ext = f + 20;
        if (!strcmp(ext, ".snap"))
            p->manifest = 0;
        else if (!strcmp(ext, ".json"))
            p->manifest = 1;
        else
            return 0;
        p->log = 0;
        archive_snap_name(p->group, p->first, p->object, sizeof p->object);
        return 1;
    }
    return 0;
}

static int man_u64(json_t *m, const char *k, uint64_t *v)
{
    json_t *j = json_object_get(m, k);
    if (!json_is_integer(j) || json_integer_value(j) < 0)
        return 0;
    *v = (uint64_t)json_integer_value(j);
    return 1;
}

/* One manifest and the object it vouches for. */
static void check_manifest(struct ctx *c, const char *mname, const struct parsed *p)
{
    unsigned char *mb = NULL, *ob = NULL;
    size_t ml = 0, ol = 0;
    struct nerr e = {0};
    char exp[1024], got[1024];
    json_t *m = NULL;
    if (archive_get(c->a, mname, MAX_MANIFEST, &mb, &ml, &e)) {
        problem(c, mname, "unreadable manifest", "a manifest", e.msg);
        goto out;
    }
    json_error_t je;
    m = json_loadb((const char *)mb, ml, 0, &je);
    if (!m || !json_is_object(m)) {
        snprintf(got, sizeof got, "line %d column %d: %s", je.line, je.column,
                 m ? "not a JSON object" : je.text);
        problem(c, mname, "malformed manifest", "a JSON object", got);
        goto out;
    }
    const char *kind = json_string_value(json_object_get(m, "kind"));
    const char *group = json_string_value(json_object_get(m, "group"));
    const char *object = json_string_value(json_object_get(m, "object"));
    const char *sha = json_string_value(json_object_get(m, "sha256"));
    uint64_t bytes = 0, first = 0, last = 0, fterm = 0, lterm = 0, count = 0;
    int fields = json_integer_value(json_object_get(m, "v")) == 1 && kind && group && object &&
                 sha && man_u64(m, "bytes", &bytes);
    if (fields && p->log)
        fields = !strcmp(kind, "log") && man_u64(m, "first", &first) && man_u64(m, "last", &last) &&
                 man_u64(m, "first_term", &fterm) && man_u64(m, "last_term", &lterm) &&
                 man_u64(m, "entries", &count);
    else if (fields)
        fields = !strcmp(kind, "snapshot") && man_u64(m, "index", &first) &&
                 man_u64(m, "term", &fterm) && man_u64(m, "items", &count);
    if (!p->log) {
        last = first;
        lterm = fterm;
    }
    if (!fields) {
        problem(c, mname, "incomplete manifest",
                p->log ? "v 1, kind log, group, object, sha256, bytes, first, last, first_term, "
                         "last_term, entries"
                       : "v 1, kind snapshot, group, object, sha256, bytes, index, term, items",
                "a field missing or of the wrong type");
        goto out;
    }
    if (strcmp(group, p->group) || strcmp(object, p->object) || first != p->first ||
        last != p->last) {
        snprintf(exp, sizeof exp, "group %s, object %s", p->group, p->object);
        snprintf(got, sizeof got, "group %s, object %s, range %" PRIu64 "..%" PRIu64, group, object,
                 first, last);
        problem(c, mname, "foreign manifest (names another group or range than its path)", exp,
                got);
        goto out;
    }
    int rc = archive_get(c->a, p->object, ARCHIVE_MAX_OBJECT, &ob, &ol, &e);
    if (rc) {
        problem(c, p->object, rc == NERR_NOTFOUND ? "missing object" : "unreadable object",
                "the object its manifest vouches for", e.msg);
        goto out;
    }
    if (ol != bytes) {
        snprintf(exp, sizeof exp, "%" PRIu64 " bytes", bytes);
        snprintf(got, sizeof got, "%zu bytes", ol);
        problem(c, p->object,
                ol < bytes ? "truncated object" : "object longer than its manifest says", exp, got);
        goto out;
    }
    struct archive_object_info info;
    char sh[65];
    struct nerr pe = {0};
    int prc = archive_object_parse(ob, ol, NULL, NULL, NULL, &info, &pe);
    if (prc) {
        /* Which check failed says more than the SHA-256 alone would. */
        problem(c, p->object, "corrupt object", "every checksum holds", pe.msg);
        goto out;
    }
    archive_hex(info.sha256, 32, sh);
    if (strcmp(sh, sha)) {
        problem(c, p->object, "SHA-256 mismatch", sha, sh);
        goto out;
    }
    if (strcmp(info.group, p->group) || info.first != first || info.last != last ||
        info.first_term != fterm || info.last_term != lterm || info.count != count ||
        (info.kind == ARCHIVE_LOG) != p->log) {
        snprintf(exp, sizeof exp, "%s %s %" PRIu64 "..%" PRIu64 " terms %" PRIu64 "..%" PRIu64,
                 p->log ? "log" : "snapshot", p->group, first, last, fterm, lterm);
        snprintf(got, sizeof got, "%s %s %" PRIu64 "..%" PRIu64 " terms %" PRIu64 "..%" PRIu64,
                 info.kind == ARCHIVE_LOG ? "log" : "snapshot", info.group, info.first, info.last,
                 info.first_term, info.last_term);
        problem(c, p->object, "foreign object (its header disagrees with its manifest)", exp, got);
        goto out;
    }
    struct grp *g = group_of(c, p->group);
    if (!g)
        goto out;
    const char *table = json_string_value(json_object_get(m, "table"));
    json_t *pj = json_object_get(m, "partition");
    if (table && json_is_integer(pj)) {
        if (!g->has_table) {
            snprintf(g->table, sizeof g->table, "%s", table);
            g->partition = json_integer_value(pj);
            g->has_table = 1;
        } else if (strcmp(g->table, table) || g->partition != json_integer_value(pj)) {
            snprintf(exp, sizeof exp, "table %s partition %lld", g->table, g->partition);
            snprintf(got, sizeof got, "table %s partition %lld", table,
                     (long long)json_integer_value(pj));
            problem(c, mname, "manifests of one group disagree on its table", exp, got);
        }
    }
    struct obj o = {first, last, fterm, lterm, bytes, count, ""};
    snprintf(o.name, sizeof o.name, "%s", p->object);
    if (p->log)
        add_obj(&g->logs, &g->nlogs, &g->caplogs, &o);
    else
        add_obj(&g->snaps, &g->nsnaps, &g->capsnaps, &o);
out:
    json_decref(m);
    free(mb);
    free(ob);
}

static int cmp_obj(const void *a, const void *b)
{
    const struct obj *x = a, *y = b;
    return x->first < y->first   ? -1
           : x->first > y->first ? 1
                                 : (x->last > y->last) - (x->last < y->last);
}

/* Gaps, overlaps and coverage of one group; its line of the report. */
static json_t *check_group(struct ctx *c, struct grp *g)
{
    char exp[1024], got[1024];
    if (g->nlogs)
        qsort(g->logs, g->nlogs, sizeof *g->logs, cmp_obj);
    if (g->nsnaps)
        qsort(g->snaps, g->nsnaps, sizeof *g->snaps, cmp_obj);
    uint64_t entries = 0, bytes = 0;
    /* The log is restorable from the end of its last gap onwards. */
    uint64_t run_start = g->nlogs ? g->logs[0].first : 0;
    for (size_t i = 0; i < g->nlogs; i++) {
        const struct obj *o = &g->logs[i];
        entries += o->count;
        bytes += o->bytes;
        if (!i)
            continue;
        const struct obj *pv = &g->logs[i - 1];
        if (o->first <= pv->last) {
            snprintf(exp, sizeof exp, "entries from %" PRIu64 " on", pv->last + 1);
            snprintf(got, sizeof got, "%" PRIu64 "..%" PRIu64 " overlaps %s", o->first, o->last,
                     pv->name);
            problem(c, o->name, "overlap", exp, got);
        } else if (o->first > pv->last + 1) {
            snprintf(exp, sizeof exp, "entries %" PRIu64 "..%" PRIu64, pv->last + 1, o->first - 1);
            snprintf(got, sizeof got, "no piece holds them (the next piece starts at %" PRIu64 ")",
                     o->first);
            problem(c, g->name, "gap", exp, got);
            run_start = o->first;
        } else if (o->first_term < pv->last_term) {
            snprintf(exp, sizeof exp, "term >= %" PRIu64 " at entry %" PRIu64, pv->last_term,
                     o->first);
            snprintf(got, sizeof got, "term %" PRIu64, o->first_term);
            problem(c, o->name, "term goes back between pieces", exp, got);
        }
    }
    for (size_t i = 0; i < g->nsnaps; i++)
        bytes += g->snaps[i].bytes;
    /* The oldest point the archive can rebuild: a snapshot at or after the
     * start of the last gap-free run minus one, or the run itself when it
     * starts at entry 1. */
    long long restorable = -1;
    if (g->nlogs && run_start == 1)
        restorable = 0;
    for (size_t i = 0; restorable < 0 && i < g->nsnaps; i++)
        if (!g->nlogs || g->snaps[i].first + 1 >= run_start)
            restorable = (long long)g->snaps[i].first;
    if (restorable < 0) {
        snprintf(exp, sizeof exp, "a snapshot at an index >= %" PRIu64 ", or the log from entry 1",
                 run_start ? run_start - 1 : 0);
        snprintf(got, sizeof got,
                 "the log starts at %" PRIu64 " and no snapshot covers what is before", run_start);
        problem(c, g->name, "nothing to rebuild from", exp, got);
    }
    json_t *snaps = json_array();
    for (size_t i = 0; i < g->nsnaps; i++)
        json_array_append_new(snaps, json_integer((json_int_t)g->snaps[i].first));
    json_t *j =
        json_pack("{s:s,s:I,s:I,s:I,s:o,s:I}", "group", g->name, "pieces", (json_int_t)g->nlogs,
                  "entries", (json_int_t)entries, "bytes", (json_int_t)bytes, "snapshots", snaps,
                  "restorable_from", (json_int_t)restorable);
    if (g->has_table) {
        json_object_set_new(j, "table", json_string(g->table));
        json_object_set_new(j, "partition", json_integer(g->partition));
    }
    json_object_set_new(j, "first",
                        g->nlogs ? json_integer((json_int_t)g->logs[0].first) : json_null());
    json_object_set_new(
        j, "last", g->nlogs ? json_integer((json_int_t)g->logs[g->nlogs - 1].last) : json_null());
    return j;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int archive_verify(struct archive *a, json_t **report, struct nerr *err)
{
    char **names = NULL;
    size_t n = 0;
    *report = NULL;
    int rc = archive_list(a, &names, &n, err);
    if (rc)
        return rc;
    struct ctx c = {.a = a, .problems = json_array(), .incomplete = json_array()};
    /* Objects vouched for by a manifest, to tell leftovers from the rest. */
    char *vouched = calloc(n ? n : 1, 1);
    for (size_t i = 0; i < n; i++) {
        const char *last = strrchr(names[i], '/');
        last = last ? last + 1 : names[i];
        struct parsed p;
        if (last[0] == '.') {
            json_array_append_new(c.incomplete, json_string(names[i]));
            continue;
        }
        if (!parse_name(names[i], &p)) {
            problem(&c, names[i], "foreign object",
                    "GROUP/log/FIRST-LAST.piece|.json or "
                    "GROUP/snap/INDEX.snap|.json",
                    names[i]);
            continue;
        }
        if (!p.manifest)
            continue;
        check_manifest(&c, names[i], &p);
        const char *key = p.object;
        char **hit = bsearch(&key, names, n, sizeof *names, cmp_str); /* names are sorted */
        if (hit && vouched)
            vouched[hit - names] = 1;
    }
    /* An object no manifest vouches for is an upload that did not finish. */
    for (size_t i = 0; i < n; i++) {
        struct parsed p;
        const char *last = strrchr(names[i], '/');
        last = last ? last + 1 : names[i];
        if (last[0] != '.' && parse_name(names[i], &p) && !p.manifest && vouched && !vouched[i])
            json_array_append_new(c.incomplete, json_string(names[i]));
    }
    json_t *groups = json_array();
    for (size_t i = 0; i < c.ng; i++) {
        json_array_append_new(groups, check_group(&c, &c.g[i]));
        free(c.g[i].logs);
        free(c.g[i].snaps);
    }
    free(c.g);
    free(vouched);
    archive_names_free(names, n);
    *report = json_pack("{s:s,s:o,s:O,s:o,s:I,s:b}", "url", archive_url(a), "groups", groups,
                        "problems", c.problems, "incomplete", c.incomplete, "objects",
                        (json_int_t)n, "ok", json_array_size(c.problems) == 0);
    json_decref(c.problems);
    if (!*report)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    return 0;
}
