/*
 * reference.c — the reference replica as the scrub's fourth source
 * (reference.h).
 */
#include "scrubber/reference.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "archive/archive.h"
#include "lib/clock.h"

/* The key schema of a table, as `nines reference --key` takes it. */
static int key_schema(struct ddb_client *cl, const char *table, char *out, size_t cap)
{
    json_t *req = json_pack("{s:s}", "TableName", table), *resp = NULL;
    int st = 0, rc = -1;
    struct nerr e = {0};
    if (req && !ddb_call(cl, "DescribeTable", req, &st, &resp, &e) && st == 200) {
        json_t *t = json_object_get(resp, "Table");
        json_t *ks = json_object_get(t, "KeySchema"),
               *ad = json_object_get(t, "AttributeDefinitions");
        const char *hash = NULL, *range = NULL;
        json_t *k;
        size_t i;
        json_array_foreach(ks, i, k)
        {
            const char *kt = json_string_value(json_object_get(k, "KeyType"));
            const char *nm = json_string_value(json_object_get(k, "AttributeName"));
            if (kt && !strcmp(kt, "HASH"))
                hash = nm;
            else if (kt && !strcmp(kt, "RANGE"))
                range = nm;
        }
        const char *ht = NULL, *rt = NULL;
        json_array_foreach(ad, i, k)
        {
            const char *nm = json_string_value(json_object_get(k, "AttributeName"));
            const char *ty = json_string_value(json_object_get(k, "AttributeType"));
            if (nm && hash && !strcmp(nm, hash))
                ht = ty;
            if (nm && range && !strcmp(nm, range))
                rt = ty;
        }
        if (hash && ht && (!range || rt) &&
            snprintf(out, cap, "%s:%s%s%s%s%s", hash, ht, range ? "," : "", range ? range : "",
                     range ? ":" : "", range ? rt : "") < (int)cap)
            rc = 0;
    }
    json_decref(req);
    json_decref(resp);
    return rc;
}

/* The highest index the archive holds of group (0: none). */
static uint64_t archived_end(struct archive *a, const char *group)
{
    char dir[ARCHIVE_MAX_NAME + 16];
    char **names = NULL;
    size_t n = 0;
    uint64_t end = 0;
    struct nerr e = {0};
    snprintf(dir, sizeof dir, "%s/log", group);
    if (archive_list_dir(a, dir, &names, &n, &e))
        return 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(names[i]);
        char *dash = strchr(names[i], '-');
        if (len > 5 && !strcmp(names[i] + len - 5, ".json") && dash) {
            uint64_t l = strtoull(dash + 1, NULL, 10);
            if (l > end)
                end = l;
        }
    }
    archive_names_free(names, n);
    return end;
}

/* Runs bin/nines-reference (next to this program) into json_path; its
 * stderr into why. The exit code, or -1. */
static int run_builder(const struct scrub_ref_in *in, const char *key, const char *dir,
                       const char *json_path, const char *list, char *why, size_t cap)
{
    char self[PATH_MAX], prog[PATH_MAX + 32], upto[32], errp[PATH_MAX + 16];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        snprintf(why, cap, "cannot find my own program: %s", strerror(errno));
        return -1;
    }
    self[n] = 0;
    char *slash = strrchr(self, '/');
    *slash = 0;
    snprintf(prog, sizeof prog, "%s/nines-reference", self);
    snprintf(upto, sizeof upto, "%lld", in->lsn);
    snprintf(errp, sizeof errp, "%s/stderr", dir);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, cap, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        int fd = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int nul = open("/dev/null", O_WRONLY);
        if (fd >= 0)
            dup2(fd, 2);
        if (nul >= 0)
            dup2(nul, 1);
        char scratch[PATH_MAX + 16];
        snprintf(scratch, sizeof scratch, "%s/lmdb", dir);
        if (list)
            execl(prog, "reference", in->url, "--group", in->group, "--upto", upto, "--key", key,
                  "--json", json_path, "--dir", scratch, "--list-buckets", list, (char *)NULL);
        else
            execl(prog, "reference", in->url, "--group", in->group, "--upto", upto, "--key", key,
                  "--json", json_path, "--dir", scratch, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    FILE *f = fopen(errp, "r");
    why[0] = 0;
    if (f) {
        size_t r = fread(why, 1, cap - 1, f);
        why[r] = 0;
        while (r && (why[r - 1] == '\n'))
            why[--r] = 0;
        fclose(f);
    }
    const char *pfx = "nines reference: ";
    if (!strncmp(why, pfx, strlen(pfx)))
        memmove(why, why + strlen(pfx), strlen(why) - strlen(pfx) + 1);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void rm_tree(const char *dir)
{
    char p[PATH_MAX + 32];
    const char *files[] = {"lmdb/data.mdb", "lmdb/lock.mdb", "ref.json", "stderr"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/lmdb", dir);
    rmdir(p);
    rmdir(dir);
}

/* The buckets where the reference and member m's marker differ. */
static json_t *bucket_diff(const struct scrub_ref_in *in, int m, json_t *ref_buckets)
{
    if (m < 0 || !in->cl[m])
        return json_null();
    json_t *req = json_pack("{s:s,s:i,s:s,s:b}", "TableName", in->table, "Partition", in->partition,
                            "Id", in->run_id, "Buckets", 1),
           *resp = NULL, *out = NULL;
    int st = 0;
    struct nerr e = {0};
    if (req && !ddb_call(in->cl[m], "NinesAdmin.ScrubDigest", req, &st, &resp, &e) && st == 200) {
        json_t *b = json_object_get(resp, "Buckets");
        out = json_array();
        for (size_t i = 0; i < json_array_size(b) && i < json_array_size(ref_buckets); i++) {
            const char *x = json_string_value(json_array_get(b, i)),
                       *y = json_string_value(json_array_get(ref_buckets, i));
            if (!x || !y || strcmp(x, y))
                json_array_append_new(out, json_integer((json_int_t)i));
        }
    }
    json_decref(req);
    json_decref(resp);
    return out ? out : json_null();
}

/* Member m's keys of bucket b, read now: KeyBytes -> {"Key", "Hash"}. */
static json_t *replica_keys(const struct scrub_ref_in *in, int m, int b)
{
    json_t *out = json_object();
    char *after = NULL;
    for (int page = 0; out && page < 1000; page++) {
        json_t *req = json_pack("{s:s,s:i,s:i,s:i}", "TableName", in->table, "Partition",
                                in->partition, "Bucket", b, "Limit", 10000),
               *resp = NULL;
        if (req && after)
            json_object_set_new(req, "After", json_string(after));
        free(after);
        after = NULL;
        int st = 0;
        struct nerr e = {0};
        if (!req || !in->cl[m] ||
            ddb_call(in->cl[m], "NinesAdmin.ScrubKeys", req, &st, &resp, &e) || st != 200) {
            json_decref(req);
            json_decref(resp);
            json_decref(out);
            return NULL;
        }
        json_decref(req);
        json_t *it;
        size_t i;
        json_array_foreach(json_object_get(resp, "Items"), i, it)
        {
            const char *kb = json_string_value(json_object_get(it, "KeyBytes"));
            if (kb)
                json_object_set_new(out, kb,
                                    json_pack("{s:O,s:O}", "Key", json_object_get(it, "Key"),
                                              "Hash", json_object_get(it, "Hash")));
        }
        const char *next = json_string_value(json_object_get(resp, "Next"));
        if (next)
            after = strdup(next);
        json_decref(resp);
        if (!after)
            break;
    }
    free(after);
    return out;
}

static const char *hash_of(json_t *keys, const char *kb)
{
    return json_string_value(json_object_get(json_object_get(keys, kb), "Hash"));
}

/* The drill-down to the key (verdicts replica and replay): the reference
 * lists the differing buckets (a second build), the blamed member (for a
 * replay, the majority member) and a member that agrees with the
 * reference list theirs; a key is reported where the blamed side differs
 * from the reference and the agreeing member, when there is one, holds
 * what the reference holds (a key written after the marker changes every
 * replica, so it is not taken for a difference). */
static json_t *drill(const struct scrub_ref_in *in, const char *key, json_t *buckets, int blamed,
                     int agree, const char *who, char *why, size_t cap)
{
    char list[1100] = "", dir[] = "/tmp/nines-scrub-ref-XXXXXX";
    size_t nb = 0, i;
    json_t *bv;
    json_array_foreach(buckets, i, bv)
    {
        if (nb == 64)
            break;
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%lld", nb ? "," : "",
                 (long long)json_integer_value(bv));
        nb++;
    }
    if (!nb || blamed < 0 || !mkdtemp(dir))
        return NULL;
    char jpath[sizeof dir + 16];
    snprintf(jpath, sizeof jpath, "%s/ref.json", dir);
    json_error_t je;
    int rc = run_builder(in, key, dir, jpath, list, why, cap);
    json_t *ref = rc == 0 ? json_load_file(jpath, 0, &je) : NULL;
    rm_tree(dir);
    if (!ref)
        return NULL;
    json_t *out = json_array();
    const char *b;
    json_t *items;
    json_object_foreach(json_object_get(ref, "Lists"), b, items)
    {
        json_t *rk = json_object();
        json_array_foreach(items, i, bv)
        {
            const char *kb = json_string_value(json_object_get(bv, "KeyBytes"));
            if (kb)
                json_object_set(rk, kb, bv);
        }
        json_t *bl = replica_keys(in, blamed, atoi(b));
        json_t *ag = agree >= 0 ? replica_keys(in, agree, atoi(b)) : NULL;
        json_t *all = json_object();
        json_object_update(all, rk);
        if (bl)
            json_object_update_missing(all, bl);
        const char *kb;
        json_t *kv;
        json_object_foreach(all, kb, kv)
        {
            const char *hr = hash_of(rk, kb), *hb = bl ? hash_of(bl, kb) : NULL;
            if (!bl || (hr && hb && !strcmp(hr, hb)) || (!hr && !hb))
                continue;
            if (ag) {
                const char *ha = hash_of(ag, kb);
                if ((hr && (!ha || strcmp(hr, ha))) || (!hr && ha))
                    continue; /* the agreeing replica moved too: written since */
            }
            json_t *k = json_object_get(kv, "Key");
            json_array_append_new(out, json_pack("{s:O,s:s,s:s,s:s?,s:s?}", "key",
                                                 k ? k : json_null(), "replica", who, "kind",
                                                 !hb   ? "missing"
                                                 : !hr ? "extra"
                                                       : "different",
                                                 "reference_hash", hr, "replica_hash", hb));
        }
        json_decref(all);
        json_decref(rk);
        json_decref(bl);
        json_decref(ag);
    }
    json_decref(ref);
    return out;
}

json_t *scrub_reference_part(const struct scrub_ref_in *in, int *majority)
{
    int64_t t0 = clock_mono_ms();
    json_t *o = json_pack("{s:s,s:i,s:I,s:s,s:n,s:n,s:n,s:n,s:s}", "table", in->table, "partition",
                          in->partition, "lsn", (json_int_t)in->lsn, "verdict", "undecided",
                          "blame", "fingerprint", "items", "buckets", "why", "");
    if (!o)
        return NULL;
    char why[1024] = "", key[600], dir[] = "/tmp/nines-scrub-ref-XXXXXX";
    struct archive *a = NULL;
    struct nerr e = {0};
    json_t *ref = NULL;
    int answered = 0;
    for (int m = 0; m < in->n; m++)
        answered += in->fps[m] != NULL;
    int have_key = 0;
    for (int m = 0; m < in->n && !have_key; m++)
        have_key = in->cl[m] && !key_schema(in->cl[m], in->table, key, sizeof key);
    if (!have_key) {
        snprintf(why, sizeof why, "no member described the table (its key schema)");
        goto out;
    }
    if (archive_open(in->url, 0, &a, &e)) {
        snprintf(why, sizeof why, "%s", e.msg);
        goto out;
    }
    /* The marker is archived once a seal after it is (seal_after later). */
    uint64_t end = 0;
    while ((end = archived_end(a, in->group)) < (uint64_t)in->lsn &&
           clock_mono_ms() < in->deadline_ms)
        usleep(200000);
    if (end < (uint64_t)in->lsn) {
        snprintf(why, sizeof why,
                 "the archive holds entries up to %llu, not yet the marker at %lld (in time)",
                 (unsigned long long)end, in->lsn);
        goto out;
    }
    if (!mkdtemp(dir)) {
        snprintf(why, sizeof why, "mkdtemp: %s", strerror(errno));
        goto out;
    }
    char jpath[sizeof dir + 16];
    snprintf(jpath, sizeof jpath, "%s/ref.json", dir);
    int rc = run_builder(in, key, dir, jpath, NULL, why, sizeof why);
    json_error_t je;
    if (rc == 0)
        ref = json_load_file(jpath, 0, &je);
    rm_tree(dir);
    if (rc == 1) {
        /* The archive could not give the reference: it is at fault. */
        json_object_set_new(o, "verdict", json_string("archive"));
        json_object_set_new(o, "blame", json_string("archive"));
        goto out;
    }
    if (rc != 0 || !ref) {
        if (!why[0])
            snprintf(why, sizeof why, "nines reference failed (exit %d)", rc);
        goto out;
    }
    why[0] = 0;
    const char *fp = json_string_value(json_object_get(ref, "Fingerprint"));
    json_object_set_new(o, "fingerprint", json_string(fp ? fp : ""));
    json_object_set(o, "items", json_object_get(ref, "Items"));
    json_object_set(o, "entries", json_object_get(ref, "Entries"));
    if (!fp || !answered) {
        snprintf(why, sizeof why, "%s",
                 fp ? "no replica answered at the marker" : "no fingerprint");
        goto out;
    }
    int agree = 0, same_majority = 0;
    for (int m = 0; m < in->n; m++)
        agree += in->fps[m] && !strcmp(in->fps[m], fp);
    if (*majority >= 0)
        same_majority = !strcmp(in->fps[*majority], fp);
    if (same_majority && agree == answered) {
        json_object_set_new(o, "verdict", json_string("agrees"));
    } else if (agree) {
        /* The reference sides with `agree` replicas: the others are blamed.
         * With no majority of their own, it breaks the tie when the
         * agreeing sources are a majority of all of them. */
        if (*majority < 0 && (agree + 1) * 2 > answered + 1)
            for (int m = 0; m < in->n && *majority < 0; m++)
                if (in->fps[m] && !strcmp(in->fps[m], fp))
                    *majority = m;
        json_t *bl = json_array(), *bk = NULL;
        for (int m = 0; m < in->n; m++)
            if (in->fps[m] && strcmp(in->fps[m], fp)) {
                json_array_append_new(bl, json_string(in->members[m]));
                if (!bk)
                    bk = bucket_diff(in, m, json_object_get(ref, "Buckets"));
            }
        json_object_set_new(o, "verdict", json_string(json_array_size(bl) ? "replica" : "agrees"));
        if (bk && json_array_size(bl)) {
            int blamed = -1, agreeing = -1;
            for (int m = 0; m < in->n; m++) {
                if (in->fps[m] && strcmp(in->fps[m], fp) && blamed < 0)
                    blamed = m;
                if (in->fps[m] && !strcmp(in->fps[m], fp) && agreeing < 0)
                    agreeing = m;
            }
            char dwhy[512] = "";
            json_t *keys =
                drill(in, key, bk, blamed, agreeing, in->members[blamed], dwhy, sizeof dwhy);
            if (keys)
                json_object_set_new(o, "keys", keys);
        }
        json_object_set_new(o, "blame", json_array_size(bl) ? bl : json_null());
        if (!json_array_size(bl))
            json_decref(bl);
        if (bk)
            json_object_set_new(o, "buckets", bk);
    } else if (*majority >= 0 && agree == 0) {
        int all = 1;
        for (int m = 0; m < in->n; m++)
            all &= !in->fps[m] || !strcmp(in->fps[m], in->fps[*majority]);
        json_object_set_new(o, "verdict", json_string(all ? "replay" : "undecided"));
        json_object_set_new(o, "blame", all ? json_string("replay") : json_null());
        json_t *bk = bucket_diff(in, *majority, json_object_get(ref, "Buckets"));
        if (all && json_is_array(bk)) {
            char dwhy[512] = "";
            json_t *keys = drill(in, key, bk, *majority, -1, "replay", dwhy, sizeof dwhy);
            if (keys)
                json_object_set_new(o, "keys", keys);
        }
        json_object_set_new(o, "buckets", bk);
        if (all)
            snprintf(why, sizeof why,
                     "every replica that answered agrees, the archive proved whole, and the "
                     "reference rebuilt from it differs");
        else
            snprintf(why, sizeof why, "the reference agrees with no replica");
    } else {
        snprintf(why, sizeof why, "the reference agrees with no replica and they have no majority");
    }
out:
    json_object_set_new(o, "why", json_string(why));
    json_object_set_new(o, "seconds", json_real((double)(clock_mono_ms() - t0) / 1000.0));
    json_decref(ref);
    archive_close(a);
    return o;
}
