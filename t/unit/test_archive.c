/* The WAL archive's formats and proofs (archive/archive.h): pieces and
 * snapshots round-trip and every damage to their bytes is caught with its
 * offset; in a file:// archive, archive_verify passes a whole archive and
 * names, each with the exact object and range: a flipped byte, a truncated
 * object, a deleted piece (a gap with its range), an overlap, a missing
 * object, a malformed manifest (line and column), a foreign object and a
 * foreign manifest, a log with nothing to rebuild from; uploads that did
 * not finish are listed and not counted; bad names and URLs are refused. */
#include "archive/archive.h"
#include "t/tap.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

/* n entries from first, term = 1 + index / 100, data "entry <index>". */
static struct archive_entry *entries(uint64_t first, size_t n, char (**bufs)[32])
{
    struct archive_entry *e = calloc(n, sizeof *e);
    *bufs = calloc(n, sizeof **bufs);
    for (size_t i = 0; i < n; i++) {
        uint64_t ix = first + i;
        snprintf((*bufs)[i], 32, "entry %llu", (unsigned long long)ix);
        e[i] = (struct archive_entry){ix, 1 + ix / 100, (uint32_t)strlen((*bufs)[i]),
                                      (unsigned char *)(*bufs)[i]};
        if (ix % 50 == 0)
            e[i].len = 0; /* a leader's no-op now and then */
    }
    return e;
}

static int put_range(struct archive *a, const char *group, uint64_t first, uint64_t last)
{
    char(*bufs)[32];
    struct archive_entry *e = entries(first, (size_t)(last - first + 1), &bufs);
    /* t1.pN is partition N of table orders */
    struct archive_meta m = {group,         "orders", "n1", atoi(strrchr(group, 'p') + 1),
                             1765000000000, NULL};
    struct nerr err = {0};
    int rc = archive_put_log(a, &m, e, (size_t)(last - first + 1), &err);
    if (rc)
        diag("put %llu..%llu: %s", (unsigned long long)first, (unsigned long long)last, err.msg);
    free(e);
    free(bufs);
    return rc;
}

struct sum {
    uint64_t n, last;
    size_t bytes;
};

static int on_entry(void *arg, const struct archive_entry *e)
{
    struct sum *s = arg;
    s->n++;
    s->last = e->index;
    s->bytes += e->len;
    return 0;
}

static void test_format(void)
{
    char(*bufs)[32];
    struct archive_entry *e = entries(101, 150, &bufs);
    unsigned char *buf;
    size_t len;
    struct nerr err = {0};
    is_int(archive_piece_encode("t1.p3", e, 150, &buf, &len, &err), 0, "a piece of 150 entries");
    struct archive_object_info info;
    struct sum s = {0};
    is_int(archive_object_parse(buf, len, on_entry, NULL, &s, &info, &err), 0, "parses back");
    ok(info.kind == ARCHIVE_LOG && info.first == 101 && info.last == 250 && info.count == 150 &&
           !strcmp(info.group, "t1.p3") && info.first_term == 2 && info.last_term == 3,
       "header: group, range 101..250, terms 2..3");
    ok(s.n == 150 && s.last == 250, "every entry walked, in order");
    /* Every single flipped byte is caught. */
    int caught = 0;
    for (size_t i = 0; i < len; i++) {
        buf[i] ^= 0x20;
        struct nerr pe = {0};
        if (archive_object_parse(buf, len, NULL, NULL, NULL, &info, &pe) == NERR_CORRUPT &&
            strstr(pe.msg, "offset"))
            caught++;
        buf[i] ^= 0x20;
    }
    is_int(caught, len, "each of the %zu bytes flipped alone is caught, with an offset", len);
    struct nerr pe = {0};
    is_int(archive_object_parse(buf, len - 1, NULL, NULL, NULL, &info, &pe), NERR_CORRUPT,
           "a truncated piece is caught (%s)", pe.msg);
    free(buf);
    /* Bad input to the encoder. */
    struct archive_entry gap[2] = {e[0], e[2]};
    ok(archive_piece_encode("t1.p3", gap, 2, &buf, &len, &err) == NERR_INVALID &&
           strstr(err.msg, "gap"),
       "entries with a gap are refused (%s)", err.msg);
    struct archive_entry back[2] = {e[0], e[1]};
    back[1].term = 1;
    ok(archive_piece_encode("t1.p3", back, 2, &buf, &len, &err) == NERR_INVALID,
       "a decreasing term is refused");
    ok(archive_piece_encode("../x", e, 1, &buf, &len, &err) == NERR_INVALID,
       "a group name with '/' is refused");
    ok(!archive_group_ok(".hidden") && !archive_group_ok("") && archive_group_ok("t_1-a.p0"),
       "group names: no leading dot, not empty, [A-Za-z0-9._-]");
    free(e);
    free(bufs);

    /* Snapshots. */
    struct archive_item it[3] = {{1, 3, (unsigned char *)"a", (unsigned char *)"one"},
                                 {1, 3, (unsigned char *)"b", (unsigned char *)"two"},
                                 {2, 5, (unsigned char *)"bb", (unsigned char *)"three"}};
    is_int(archive_snap_encode("t1.p3", 100, 2, it, 3, &buf, &len, &err), 0, "a snapshot");
    is_int(archive_object_parse(buf, len, NULL, NULL, NULL, &info, &err), 0, "parses back");
    ok(info.kind == ARCHIVE_SNAPSHOT && info.first == 100 && info.count == 3, "at 100, 3 items");
    buf[len / 2] ^= 1;
    ok(archive_object_parse(buf, len, NULL, NULL, NULL, &info, &err) == NERR_CORRUPT,
       "a flipped byte in a snapshot is caught (%s)", err.msg);
    free(buf);
    struct archive_item rev[2] = {it[1], it[0]};
    ok(archive_snap_encode("t1.p3", 100, 2, rev, 2, &buf, &len, &err) == NERR_INVALID,
       "items out of key order are refused");
}

static json_t *verify(struct archive *a)
{
    json_t *rep = NULL;
    struct nerr err = {0};
    if (archive_verify(a, &rep, &err))
        diag("verify: %s", err.msg);
    return rep;
}

/* 1 when the report has a problem of that kind naming that object and
 * (when given) whose expected text holds `exp`. */
static int has_problem(json_t *rep, const char *object, const char *what, const char *exp)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(rep, "problems"), i, p)
    {
        const char *o = json_string_value(json_object_get(p, "object"));
        const char *w = json_string_value(json_object_get(p, "problem"));
        const char *x = json_string_value(json_object_get(p, "expected"));
        const char *f = json_string_value(json_object_get(p, "found"));
        if (o && strstr(o, object) && w && strstr(w, what) &&
            (!exp || (x && strstr(x, exp)) || (f && strstr(f, exp))))
            return 1;
    }
    char *d = json_dumps(json_object_get(rep, "problems"), JSON_COMPACT);
    diag("problems: %s", d ? d : "?");
    free(d);
    return 0;
}

static size_t nproblems(json_t *rep)
{
    return json_array_size(json_object_get(rep, "problems"));
}

static void file_flip(const char *path, long off)
{
    FILE *f = fopen(path, "r+b");
    if (!f)
        return;
    fseek(f, off, off < 0 ? SEEK_END : SEEK_SET);
    int c = fgetc(f);
    fseek(f, -1, SEEK_CUR);
    fputc(c ^ 0x01, f);
    fclose(f);
}

static void test_archive(void)
{
    char dir[] = "/tmp/nines-test-archive-XXXXXX", url[256], path[512];
    if (!mkdtemp(dir))
        return;
    snprintf(url, sizeof url, "file://%s/a", dir);
    struct archive *a = NULL;
    struct nerr err = {0};
    ok(archive_open(url, 0, &a, &err) == NERR_NOTFOUND,
       "a reader does not take a missing directory for an empty archive");
    is_int(archive_open(url, 1, &a, &err), 0, "a file:// archive opens (created when missing)");
    if (!a)
        return;
    ok(!put_range(a, "t1.p3", 1, 100) && !put_range(a, "t1.p3", 101, 250) &&
           !put_range(a, "t1.p3", 251, 300),
       "three pieces of t1.p3: 1..100, 101..250, 251..300");
    struct archive_item it = {1, 1, (unsigned char *)"k", (unsigned char *)"v"};
    struct archive_meta sm = {"t1.p4", "orders", "n2", 4, 1765000000000, "00ff"};
    ok(!archive_put_snapshot(a, &sm, 500, 7, &it, 1, &err) && !put_range(a, "t1.p4", 501, 520),
       "t1.p4: a snapshot at 500, then entries 501..520");
    json_t *rep = verify(a);
    if (!ok(rep && json_is_true(json_object_get(rep, "ok")) && !nproblems(rep),
            "the whole archive verifies"))
        has_problem(rep, "", "", NULL);
    json_t *g0 = json_array_get(json_object_get(rep, "groups"), 0);
    json_t *g1 = json_array_get(json_object_get(rep, "groups"), 1);
    ok(json_integer_value(json_object_get(g0, "entries")) == 300 &&
           json_integer_value(json_object_get(g0, "restorable_from")) == 0 &&
           !strcmp(json_string_value(json_object_get(g0, "table")), "orders") &&
           json_integer_value(json_object_get(g0, "partition")) == 3,
       "t1.p3: 300 entries, restorable from the beginning, table orders partition 3");
    ok(json_integer_value(json_object_get(g1, "restorable_from")) == 500,
       "t1.p4: restorable from its snapshot at 500");
    json_decref(rep);

    /* A flipped byte inside an entry of the middle piece. */
    char piece2[300];
    archive_piece_name("t1.p3", 101, 250, piece2, sizeof piece2);
    snprintf(path, sizeof path, "%s/a/%s", dir, piece2);
    file_flip(path, 500);
    rep = verify(a);
    ok(rep && !json_is_true(json_object_get(rep, "ok")) &&
           has_problem(rep, piece2, "corrupt object", "checksum"),
       "a flipped byte: the piece is named corrupt, with what failed");
    json_decref(rep);
    file_flip(path, 500);

    /* Truncated. */
    if (truncate(path, 1000) == 0) {
        rep = verify(a);
        ok(has_problem(rep, piece2, "truncated object", "1000 bytes"),
           "a truncated piece: named, with its size against the manifest's");
        json_decref(rep);
    }
    /* Deleted (object and manifest): a gap with its exact range. */
    char man2[300];
    archive_manifest_name(piece2, man2, sizeof man2);
    archive_remove(a, piece2, &err);
    archive_remove(a, man2, &err);
    rep = verify(a);
    ok(has_problem(rep, "t1.p3", "gap", "entries 101..250"), "a deleted piece: the gap 101..250");
    json_decref(rep);
    /* The manifest back without its object: a missing object. */
    ok(!put_range(a, "t1.p3", 101, 250), "the piece put back");
    archive_remove(a, piece2, &err);
    rep = verify(a);
    ok(has_problem(rep, piece2, "missing object", NULL), "a manifest whose object is gone");
    json_decref(rep);
    ok(!put_range(a, "t1.p3", 101, 250), "the piece put back again");
    /* An overlap. */
    ok(!put_range(a, "t1.p3", 240, 260), "a piece 240..260 over two others");
    rep = verify(a);
    ok(has_problem(rep, "00240-", "overlap", NULL), "the overlap is named");
    json_decref(rep);
    char p3[300], m3[300];
    archive_piece_name("t1.p3", 240, 260, p3, sizeof p3);
    archive_manifest_name(p3, m3, sizeof m3);
    archive_remove(a, p3, &err);
    archive_remove(a, m3, &err);
    /* A malformed manifest: line and column. */
    ok(!archive_put(a, man2, "{\"v\": 1,\n \"kind\": }", 19, &err), "a manifest overwritten");
    rep = verify(a);
    ok(has_problem(rep, man2, "malformed manifest", "line 2 column"),
       "a malformed manifest: named with line and column");
    json_decref(rep);
    ok(!put_range(a, "t1.p3", 101, 250), "repaired");
    /* A foreign object, and a foreign manifest (another group's). */
    ok(!archive_put(a, "t1.p3/log/notes.txt", "x", 1, &err), "a stray file");
    char pf[300], mf[300], mgood[300];
    archive_piece_name("t1.p4", 501, 520, pf, sizeof pf);
    archive_manifest_name(pf, mf, sizeof mf);
    archive_piece_name("t1.p3", 251, 300, mgood, sizeof mgood);
    unsigned char *mb;
    size_t ml;
    archive_get(a, mf, 1 << 16, &mb, &ml, &err);
    char m251[300];
    archive_manifest_name(mgood, m251, sizeof m251);
    archive_put(a, m251, mb, ml, &err); /* t1.p4's manifest where t1.p3's belongs */
    free(mb);
    rep = verify(a);
    ok(has_problem(rep, "notes.txt", "foreign object", NULL), "the stray file: foreign object");
    ok(has_problem(rep, m251, "foreign manifest", "t1.p4"),
       "a manifest of another group in t1.p3's place: foreign");
    json_decref(rep);
    archive_remove(a, "t1.p3/log/notes.txt", &err);
    ok(!put_range(a, "t1.p3", 251, 300), "repaired");
    /* Nothing to rebuild from: a log that starts at 601 without a snapshot. */
    ok(!put_range(a, "t1.p9", 601, 610), "t1.p9 archived from 601 only");
    rep = verify(a);
    ok(has_problem(rep, "t1.p9", "nothing to rebuild from", NULL),
       "a log without its beginning or a snapshot: reported");
    json_decref(rep);
    char p9[300], m9[300];
    archive_piece_name("t1.p9", 601, 610, p9, sizeof p9);
    archive_manifest_name(p9, m9, sizeof m9);
    archive_remove(a, p9, &err);
    archive_remove(a, m9, &err);
    /* An upload that did not finish: listed, not a problem. */
    snprintf(path, sizeof path, "%s/a/t1.p3/log/.x.piece.tmp-1-0", dir);
    FILE *f = fopen(path, "w");
    if (f)
        fclose(f);
    char orphan[300];
    archive_piece_name("t1.p3", 301, 310, orphan, sizeof orphan);
    archive_put(a, orphan, "partial", 7, &err);
    rep = verify(a);
    if (!ok(rep && json_is_true(json_object_get(rep, "ok")), "the repaired archive verifies again"))
        has_problem(rep, "", "", NULL);
    is_int(json_array_size(json_object_get(rep, "incomplete")), 2,
           "a temporary and an object without manifest: two incomplete uploads, not counted");
    json_decref(rep);

    /* Names and URLs. */
    ok(archive_put(a, "../escape", "x", 1, &err) == NERR_INVALID, "'..' is not an object name");
    ok(archive_put(a, "g/.hidden", "x", 1, &err) == NERR_INVALID, "nor a name starting with '.'");
    archive_close(a);
    /* The key is read before any connection: no network here. */
    ok(archive_open_ssh("sftp://u@h/p", 1, "/nonexistent/key", "/dev/null", &a, &err) ==
               NERR_NOTFOUND &&
           strstr(err.msg, "sftp://u@h/p"),
       "sftp:// with a missing key: NERR_NOTFOUND naming the URL (%s)", err.msg);
    ok(archive_open("s3://bucket", 1, &a, &err) == NERR_INVALID && strstr(err.msg, "file:///"),
       "another scheme: refused, naming what is accepted");
    ok(archive_open("file://relative", 1, &a, &err) == NERR_INVALID, "a relative path: refused");
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    test_format();
    test_archive();
    return done_testing();
}
