/*
 * Generated histories: a simulated linearizable register store with random
 * concurrency, crashes and timeouts (info), failed writes and eventually
 * consistent reads always passes; the same histories with one injected
 * anomaly always fail, naming it. Seeds are fixed, so every run checks the
 * same histories.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkers/check.h"
#include "checkers/histgen.h"
#include "t/tap.h"

#define SEEDS 60

static void random_opts(struct hg_opts *o, uint64_t seed)
{
    hg_opts_default(o);
    o->seed = seed;
    o->ops = 800 + (uint32_t)(seed * 37 % 1200);
    o->keys = 1 + (uint32_t)(seed % 4);
    o->processes = 2 + (uint32_t)(seed * 7 % 11);
    o->cas_rate = seed % 2 ? 0.2 : 0;
    o->read_rate = 0.5;
    o->info_rate = 0.02 + (double)(seed % 5) * 0.02;
    o->fail_rate = 0.02;
    o->ec_rate = seed % 3 ? 0.15 : 0;
}

static int check(struct history *h, struct chk_result **r, struct nerr *e)
{
    struct chk_opts o;
    memset(&o, 0, sizeof o);
    o.lin.time_limit = 20;
    o.lin.memory_limit = (size_t)256 << 20;
    o.sessions_enforce = 1;
    return chk_run(h, &o, r, e);
}

static enum chk_kind expected_kind(enum hg_anomaly a)
{
    switch (a) {
    case HG_STALE_READ:
        return CHK_STALE_READ;
    case HG_LOST_WRITE:
        return CHK_LOST_WRITE;
    case HG_PHANTOM:
        return CHK_PHANTOM;
    case HG_DUPLICATE_WRITE:
        return CHK_DUPLICATE_WRITE;
    case HG_CORRUPT:
        return CHK_CORRUPT;
    default:
        return CHK_NOT_LINEARIZABLE;
    }
}

int main(void)
{
    struct nerr e;
    int clean_ok = 0;
    uint64_t info_ops = 0, ec_reads = 0;
    for (uint64_t seed = 1; seed <= SEEDS; seed++) {
        struct hg_opts o;
        random_opts(&o, seed);
        struct hg_events *ev = NULL;
        struct history *h = NULL;
        struct chk_result *r = NULL;
        nerr_clear(&e);
        if (hg_generate(&o, &ev, NULL, &e) || hg_history(ev, &h, &e) || check(h, &r, &e)) {
            ok(0, "seed %llu: %s", (unsigned long long)seed, e.msg);
        } else {
            for (size_t i = 0; i < h->nops; i++)
                info_ops += h->ops[i].status == HISTORY_S_INFO;
            ec_reads += r->ec_reads;
            if (r->verdict != CHK_VALID && r->nanomalies)
                diag("seed %llu: %s", (unsigned long long)seed, r->anomalies[0].detail);
            clean_ok += r->verdict == CHK_VALID;
            is(chk_verdict_name(r->verdict), "valid",
               "clean seed %llu (%u ops, %u keys, %u processes, cas %.1f, info %.2f) is valid",
               (unsigned long long)seed, o.ops, o.keys, o.processes, o.cas_rate, o.info_rate);
        }
        chk_result_free(r);
        history_free(h);
        hg_free(ev);
    }
    cmp_ok(clean_ok, "==", SEEDS, "all %d clean histories are valid (%d)", SEEDS, clean_ok);
    cmp_ok(info_ops, ">", 100, "the clean histories had info ops (%llu)",
           (unsigned long long)info_ops);
    cmp_ok(ec_reads, ">", 100, "and eventually consistent reads (%llu)",
           (unsigned long long)ec_reads);

    static const enum hg_anomaly kinds[] = {HG_STALE_READ, HG_LOST_WRITE, HG_PHANTOM,
                                            HG_DUPLICATE_WRITE, HG_CORRUPT};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        int named = 0, tried = 0;
        for (uint64_t seed = 1; seed <= SEEDS; seed++) {
            struct hg_opts o;
            random_opts(&o, seed);
            o.anomaly = kinds[k];
            struct hg_events *ev = NULL;
            struct history *h = NULL;
            struct chk_result *r = NULL;
            struct hg_truth t;
            nerr_clear(&e);
            int rc = hg_generate(&o, &ev, &t, &e);
            if (rc == NERR_NOTFOUND) { /* this history has no place for it */
                hg_free(ev);
                continue;
            }
            tried++;
            if (rc || hg_history(ev, &h, &e) || check(h, &r, &e)) {
                ok(0, "%s seed %llu: %s", hg_anomaly_name(kinds[k]), (unsigned long long)seed,
                   e.msg);
            } else {
                enum chk_kind want = expected_kind(kinds[k]);
                size_t klen;
                const char *key =
                    r->first_key == HISTORY_NONE ? "-" : history_key(h, r->first_key, &klen);
                int good =
                    r->verdict == CHK_INVALID && r->first_kind == want && !strcmp(key, t.key);
                named += good;
                ok(good, "%s seed %llu: invalid, first op on %s named %s (%s: %s)",
                   hg_anomaly_name(kinds[k]), (unsigned long long)seed, t.key, chk_kind_name(want),
                   chk_verdict_name(r->verdict),
                   r->first_op == HISTORY_NONE ? "no culprit" : chk_kind_name(r->first_kind));
                if (kinds[k] == HG_STALE_READ || kinds[k] == HG_PHANTOM || kinds[k] == HG_CORRUPT)
                    ok(r->first_op != HISTORY_NONE && h->ops[r->first_op].process == t.process &&
                           h->ops[r->first_op].t_inv == t.t_inv,
                       "%s seed %llu: the culprit is the injected read", hg_anomaly_name(kinds[k]),
                       (unsigned long long)seed);
            }
            chk_result_free(r);
            history_free(h);
            hg_free(ev);
        }
        cmp_ok(tried, ">=", SEEDS / 2, "%s was injected into most histories (%d of %d)",
               hg_anomaly_name(kinds[k]), tried, SEEDS);
        cmp_ok(named, "==", tried,
               "%s: every injected history is invalid with the culprit named (%d of %d)",
               hg_anomaly_name(kinds[k]), named, tried);
    }

    /* The JSONL round trip gives the same verdicts as the in-memory path. */
    char path[] = "/tmp/nines-checkers-XXXXXX";
    int fd = mkstemp(path);
    ok(fd >= 0, "temporary file");
    for (int a = 0; a < 2 && fd >= 0; a++) {
        struct hg_opts o;
        random_opts(&o, 5);
        o.anomaly = a ? HG_LOST_WRITE : HG_NONE;
        struct hg_events *ev = NULL;
        struct history *h = NULL;
        struct chk_result *r = NULL;
        FILE *f = fopen(path, "w");
        nerr_clear(&e);
        int rc = hg_generate(&o, &ev, NULL, &e);
        if (!rc)
            rc = hg_write_jsonl(ev, f, &e);
        fclose(f);
        if (!rc)
            rc = history_load_file(path, &h, &e);
        if (!rc)
            rc = check(h, &r, &e);
        ok(!rc && r->verdict == (a ? CHK_INVALID : CHK_VALID) && h->nevents == hg_nevents(ev),
           "JSONL round trip of seed 5 (%s) is %s: %s", a ? "lost write" : "clean",
           a ? "invalid" : "valid", rc ? e.msg : chk_verdict_name(r->verdict));
        chk_result_free(r);
        history_free(h);
        hg_free(ev);
    }
    if (fd >= 0) {
        close(fd);
        unlink(path);
    }
    return done_testing();
}
