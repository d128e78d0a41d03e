/*
 * stats.c — the accounting of `nines load`: counts, errors by type and
 * latency histograms per operation kind, and the printed summary. Contract
 * in load/load.h ("accounting").
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "load/load.h"

void load_stats_init(struct load_stats *s)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < LOAD_NOPS; i++)
        hist_init(&s->op[i].latency);
}

void load_stats_ok(struct load_stats *s, enum load_op op, uint64_t latency_ns, int hit)
{
    struct load_op_stats *o = &s->op[op];
    o->ok++;
    if (op == LOAD_GET || op == LOAD_CGET) {
        if (hit)
            o->hits++;
        else
            o->misses++;
    }
    hist_record(&o->latency, latency_ns);
}

void load_stats_error(struct load_stats *s, enum load_op op, const char *type)
{
    struct load_op_stats *o = &s->op[op];
    o->errors++;
    for (size_t i = 0; i < o->nerr; i++) {
        if (!strcmp(o->err[i].type, type)) {
            o->err[i].n++;
            return;
        }
    }
    if (o->nerr == LOAD_MAX_ERROR_TYPES) {
        /* The last slot collects every type beyond the table's size. */
        snprintf(o->err[LOAD_MAX_ERROR_TYPES - 1].type, sizeof o->err[0].type, "other");
        o->err[LOAD_MAX_ERROR_TYPES - 1].n++;
        return;
    }
    snprintf(o->err[o->nerr].type, sizeof o->err[0].type, "%s", type);
    o->err[o->nerr++].n = 1;
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

void load_stats_print(const struct load_stats *s, FILE *f)
{
    double secs = s->measured_s > 0 ? s->measured_s : 1;
    uint64_t tok = 0, terr = 0;
    fprintf(f, "%-5s %10s %8s %10s %8s %8s %9s %8s\n", "op", "ok", "errors", "ops/s", "p50 ms",
            "p99 ms", "p99.9 ms", "max ms");
    for (int i = 0; i < LOAD_NOPS; i++) {
        const struct load_op_stats *o = &s->op[i];
        if (!o->ok && !o->errors)
            continue;
        tok += o->ok;
        terr += o->errors;
        fprintf(f, "%-5s %10" PRIu64 " %8" PRIu64 " %10.0f %8.3f %8.3f %9.3f %8.3f\n",
                load_op_name((enum load_op)i), o->ok, o->errors, (double)o->ok / secs,
                ms(hist_percentile(&o->latency, 50)), ms(hist_percentile(&o->latency, 99)),
                ms(hist_percentile(&o->latency, 99.9)), ms(hist_max(&o->latency)));
    }
    fprintf(f, "%-5s %10" PRIu64 " %8" PRIu64 " %10.0f   over %.2f s\n", "total", tok, terr,
            (double)tok / secs, s->measured_s);
    if (s->op[LOAD_GET].ok)
        fprintf(f, "gets: %" PRIu64 " found, %" PRIu64 " not found\n", s->op[LOAD_GET].hits,
                s->op[LOAD_GET].misses);
    if (s->op[LOAD_CGET].ok)
        fprintf(f, "cgets: %" PRIu64 " found, %" PRIu64 " not found\n", s->op[LOAD_CGET].hits,
                s->op[LOAD_CGET].misses);
    if (s->final_keys)
        fprintf(f, "final reads: %" PRIu64 " keys, %" PRIu64 " read, %" PRIu64 " unread\n",
                s->final_keys, s->final_ok, s->final_failed);
    for (int i = 0; i < LOAD_NOPS; i++)
        for (size_t k = 0; k < s->op[i].nerr; k++)
            fprintf(f, "error %s %s: %" PRIu64 "\n", load_op_name((enum load_op)i),
                    s->op[i].err[k].type, s->op[i].err[k].n);
}

int load_stats_print_json(const struct load_stats *s, const struct load_opts *o, FILE *f)
{
    double secs = s->measured_s > 0 ? s->measured_s : 1;
    uint64_t tok = 0, terr = 0;
    json_t *root = json_object(), *ops = json_object();
    int rc = NERR_NOMEM;
    if (!root || !ops)
        goto fail;
    json_object_set_new(root, "measured_s", json_real(s->measured_s));
    json_object_set_new(root, "mode", json_string(o->rate > 0 ? "open" : "closed"));
    if (o->target == LOAD_TARGET_ETCD)
        json_object_set_new(root, "target", json_string("etcd"));
    if (o->rate > 0)
        json_object_set_new(root, "rate", json_real(o->rate));
    json_object_set_new(root, "concurrency", json_integer(o->concurrency));
    json_object_set_new(root, "signed", json_boolean(o->akid[0] != 0));
    for (int i = 0; i < LOAD_NOPS; i++) {
        const struct load_op_stats *st = &s->op[i];
        if (!st->ok && !st->errors)
            continue;
        tok += st->ok;
        terr += st->errors;
        json_t *j = json_object(), *errs = json_object(), *lat = json_object();
        if (!j || !errs || !lat) {
            json_decref(j);
            json_decref(errs);
            json_decref(lat);
            goto fail;
        }
        json_object_set_new(j, "ok", json_integer((json_int_t)st->ok));
        json_object_set_new(j, "errors", json_integer((json_int_t)st->errors));
        json_object_set_new(j, "ops_per_s", json_real((double)st->ok / secs));
        if (i == LOAD_GET || i == LOAD_CGET) {
            json_object_set_new(j, "found", json_integer((json_int_t)st->hits));
            json_object_set_new(j, "not_found", json_integer((json_int_t)st->misses));
        }
        for (size_t k = 0; k < st->nerr; k++)
            json_object_set_new(errs, st->err[k].type, json_integer((json_int_t)st->err[k].n));
        json_object_set_new(j, "errors_by_type", errs);
        json_object_set_new(lat, "p50", json_real(ms(hist_percentile(&st->latency, 50))));
        json_object_set_new(lat, "p99", json_real(ms(hist_percentile(&st->latency, 99))));
        json_object_set_new(lat, "p99_9", json_real(ms(hist_percentile(&st->latency, 99.9))));
        json_object_set_new(lat, "max", json_real(ms(hist_max(&st->latency))));
        json_object_set_new(lat, "mean", json_real(hist_mean(&st->latency) / 1e6));
        json_object_set_new(j, "latency_ms", lat);
        json_object_set_new(ops, load_op_name((enum load_op)i), j);
    }
    json_object_set_new(root, "ops", ops);
    ops = NULL;
    if (o->history[0]) {
        json_t *fin = json_object();
        if (!fin)
            goto fail;
        json_object_set_new(fin, "keys", json_integer((json_int_t)s->final_keys));
        json_object_set_new(fin, "ok", json_integer((json_int_t)s->final_ok));
        json_object_set_new(fin, "failed", json_integer((json_int_t)s->final_failed));
        json_object_set_new(root, "final_reads", fin);
    }
    json_object_set_new(root, "ok", json_integer((json_int_t)tok));
    json_object_set_new(root, "errors", json_integer((json_int_t)terr));
    json_object_set_new(root, "ops_per_s", json_real((double)tok / secs));
    char *text = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(6));
    if (!text)
        goto fail;
    fprintf(f, "%s\n", text);
    free(text);
    rc = 0;
fail:
    json_decref(ops);
    json_decref(root);
    return rc;
}
