#include "canary/cconfig.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib/yamltree.h"

#define SEC 1000000000ull

int cconf_str(const struct yt_node *n, char **out, struct nerr *err)
{
    const char *s;
    int rc = yt_as_str(n, &s, err);
    if (rc)
        return rc;
    struct nerr e2;
    rc = envsub_expand(s, NULL, out, &e2);
    if (rc)
        return rc == NERR_NOMEM ? nerr_set(err, rc, "out of memory") : yt_errf(err, n, "%s", e2.msg);
    return 0;
}

int cconf_number(const struct yt_node *n, double min, double max, int percent, double *out,
                 struct nerr *err)
{
    char buf[256];
    if (!n || n->kind != YT_SCALAR || n->style != YT_PLAIN || yt_is_null(n))
        return yt_errf(err, n, "expected a number, got %s", yt_describe(n, buf, sizeof buf));
    char *end;
    double v = strtod(n->text, &end);
    int pct = 0;
    if (percent && *end == '%') {
        pct = 1;
        end++;
    }
    if (end == n->text || *end || !isfinite(v))
        return yt_errf(err, n, "expected a number%s, got %s", percent ? " or a percentage" : "",
                       yt_describe(n, buf, sizeof buf));
    if (pct)
        v /= 100.0;
    if (v < min || v > max)
        return yt_errf(err, n, "%g is out of range [%g, %g]", v, min, max);
    *out = v;
    return 0;
}

void canary_config_free(struct canary_config *c)
{
    if (!c)
        return;
    free(c->az);
    envsub_endpoints_free(c->endpoints, c->nendpoints);
    for (size_t i = 0; i < c->ntables; i++)
        free(c->tables[i]);
    free(c->tables);
    free(c->access_key_id);
    free(c->secret_access_key);
    free(c->region);
    free(c->pg_dsn);
    free(c->metrics_host);
    memset(c, 0, sizeof *c);
}

static int get_str(const struct yt_node *map, const char *key, char **out, struct nerr *err)
{
    const struct yt_node *n;
    int rc = yt_get(map, key, YT_OPTIONAL, &n, err);
    if (rc || !n)
        return rc;
    free(*out);
    *out = NULL;
    return cconf_str(n, out, err);
}

static int parse_endpoints(const struct yt_node *n, struct canary_config *c, struct nerr *err)
{
    int rc;
    if (n->kind == YT_SCALAR) {
        char *spec = NULL;
        struct nerr e2;
        if ((rc = cconf_str(n, &spec, err)))
            return rc;
        rc = envsub_endpoints(spec, &c->endpoints, &c->nendpoints, &e2);
        free(spec);
        if (rc)
            return yt_errf(err, n, "%s", e2.msg);
    } else {
        if ((rc = yt_expect_seq(n, err)))
            return rc;
        if (!n->n)
            return yt_errf(err, n, "at least one endpoint is needed");
        c->endpoints = calloc(n->n, sizeof *c->endpoints);
        if (!c->endpoints)
            return nerr_set(err, NERR_NOMEM, "out of memory");
        static const char *const keys[] = {"name", "az", "url", NULL};
        for (size_t i = 0; i < n->n; i++) {
            const struct yt_node *e = n->items[i], *u;
            c->nendpoints++;
            if ((rc = yt_expect_map(e, err)) || (rc = yt_check_keys(e, keys, err)) ||
                (rc = yt_get(e, "url", YT_REQUIRED, &u, err)) ||
                (rc = yt_get(e, "az", YT_REQUIRED, &u, err)) ||
                (rc = get_str(e, "url", &c->endpoints[i].url, err)) ||
                (rc = get_str(e, "az", &c->endpoints[i].az, err)) ||
                (rc = get_str(e, "name", &c->endpoints[i].name, err)))
                return rc;
            if (strncmp(c->endpoints[i].url, "http://", 7) &&
                strncmp(c->endpoints[i].url, "https://", 8))
                return yt_errf(err, yt_map_get(e, "url"), "url must start with http:// or https://");
            if (!c->endpoints[i].name && !(c->endpoints[i].name = strdup(c->endpoints[i].az)))
                return nerr_set(err, NERR_NOMEM, "out of memory");
        }
    }
    if (c->nendpoints > CANARY_MAX_ENDPOINTS)
        return yt_errf(err, n, "at most %d endpoints", CANARY_MAX_ENDPOINTS);
    for (size_t i = 0; i < c->nendpoints; i++)
        for (size_t j = 0; j < i; j++)
            if (!strcmp(c->endpoints[i].name, c->endpoints[j].name))
                return yt_errf(err, n, "two endpoints are named '%s'", c->endpoints[i].name);
    return 0;
}

static int parse_root(const struct yt_node *root, struct canary_config *c, struct nerr *err)
{
    static const char *const keys[] = {"az", "endpoints", "tables", "rate", "interval", "timeout",
                                       "workers", "retry", "credentials", "sink", "metrics",
                                       "server_metrics", "create_tables", NULL};
    const struct yt_node *n;
    int64_t iv;
    int rc;
    if ((rc = yt_expect_map(root, err)) || (rc = yt_check_keys(root, keys, err)))
        return rc;
    if ((rc = get_str(root, "az", &c->az, err)))
        return rc;
    if (!c->az && !(c->az = strdup("local")))
        return nerr_set(err, NERR_NOMEM, "out of memory");
    if ((rc = yt_get(root, "endpoints", YT_REQUIRED, &n, err)) || (rc = parse_endpoints(n, c, err)))
        return rc;
    if ((rc = yt_get(root, "tables", YT_OPTIONAL, &n, err)))
        return rc;
    if (n) {
        if ((rc = yt_expect_seq(n, err)))
            return rc;
        if (!n->n || n->n > CANARY_MAX_TABLES)
            return yt_errf(err, n, "between 1 and %d tables", CANARY_MAX_TABLES);
        c->tables = calloc(n->n, sizeof *c->tables);
        if (!c->tables)
            return nerr_set(err, NERR_NOMEM, "out of memory");
        for (size_t i = 0; i < n->n; i++) {
            if ((rc = cconf_str(n->items[i], &c->tables[i], err)))
                return rc;
            c->ntables++;
            size_t l = strlen(c->tables[i]);
            if (l < 3 || l > 255 || strspn(c->tables[i], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"
                                                          "OPQRSTUVWXYZ0123456789_.-") != l)
                return yt_errf(err, n->items[i], "a table name is 3-255 of [A-Za-z0-9_.-]");
        }
    } else {
        if (!(c->tables = calloc(1, sizeof *c->tables)) || !(c->tables[0] = strdup("nines_canary")))
            return nerr_set(err, NERR_NOMEM, "out of memory");
        c->ntables = 1;
    }
    if ((n = yt_map_get(root, "rate")) && !yt_is_null(n) &&
        (rc = cconf_number(n, 0.001, 100000, 0, &c->rate, err)))
        return rc;
    if ((rc = yt_get_duration(root, "interval", YT_OPTIONAL, SEC / 10, 3600 * SEC, &c->interval_ns,
                              err)) ||
        (rc = yt_get_duration(root, "timeout", YT_OPTIONAL, SEC / 1000, 600 * SEC, &c->timeout_ns,
                              err)))
        return rc;
    iv = c->workers;
    if ((rc = yt_get_int(root, "workers", YT_OPTIONAL, 1, CANARY_MAX_WORKERS, &iv, err)))
        return rc;
    c->workers = (int)iv;
    if ((rc = yt_get_bool(root, "server_metrics", YT_OPTIONAL, &c->server_metrics, err)) ||
        (rc = yt_get_bool(root, "create_tables", YT_OPTIONAL, &c->create_tables, err)))
        return rc;
    if ((rc = yt_get(root, "retry", YT_OPTIONAL, &n, err)))
        return rc;
    if (n) {
        static const char *const rk[] = {"max_attempts", "base", "max_backoff", "quota", NULL};
        if ((rc = yt_expect_map(n, err)) || (rc = yt_check_keys(n, rk, err)))
            return rc;
        iv = c->max_attempts;
        if ((rc = yt_get_int(n, "max_attempts", YT_OPTIONAL, 1, 10, &iv, err)))
            return rc;
        c->max_attempts = (int)iv;
        iv = c->retry_quota;
        if ((rc = yt_get_int(n, "quota", YT_OPTIONAL, 0, 1000000, &iv, err)))
            return rc;
        c->retry_quota = (int)iv;
        if ((rc = yt_get_duration(n, "base", YT_OPTIONAL, 0, 60 * SEC, &c->retry_base_ns, err)) ||
            (rc = yt_get_duration(n, "max_backoff", YT_OPTIONAL, 0, 300 * SEC,
                                  &c->retry_max_backoff_ns, err)))
            return rc;
    }
    if ((rc = yt_get(root, "credentials", YT_OPTIONAL, &n, err)))
        return rc;
    if (n) {
        static const char *const ck[] = {"access_key_id", "secret_access_key", "region", NULL};
        if ((rc = yt_expect_map(n, err)) || (rc = yt_check_keys(n, ck, err)) ||
            (rc = get_str(n, "access_key_id", &c->access_key_id, err)) ||
            (rc = get_str(n, "secret_access_key", &c->secret_access_key, err)) ||
            (rc = get_str(n, "region", &c->region, err)))
            return rc;
        if (!c->access_key_id != !c->secret_access_key)
            return yt_errf(err, n, "access_key_id and secret_access_key go together");
    }
    if ((rc = yt_get(root, "sink", YT_OPTIONAL, &n, err)))
        return rc;
    if (n) {
        static const char *const sk[] = {"postgres", "buffer", "flush_every", NULL};
        if ((rc = yt_expect_map(n, err)) || (rc = yt_check_keys(n, sk, err)) ||
            (rc = get_str(n, "postgres", &c->pg_dsn, err)) ||
            (rc = yt_get_int(n, "buffer", YT_OPTIONAL, 1, 100000000, (int64_t *)&c->buffer_rows,
                             err)) ||
            (rc = yt_get_duration(n, "flush_every", YT_OPTIONAL, SEC / 100, 600 * SEC, &c->flush_ns,
                                  err)))
            return rc;
    }
    if ((rc = yt_get(root, "metrics", YT_OPTIONAL, &n, err)))
        return rc;
    if (n) {
        static const char *const mk[] = {"listen", NULL};
        const struct yt_node *l;
        char *hp = NULL;
        if ((rc = yt_expect_map(n, err)) || (rc = yt_check_keys(n, mk, err)) ||
            (rc = yt_get(n, "listen", YT_REQUIRED, &l, err)) || (rc = cconf_str(l, &hp, err)))
            return rc;
        char *colon = strrchr(hp, ':'), *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : 0;
        if (!colon || colon == hp || !end || *end || port < 1 || port > 65535) {
            free(hp);
            return yt_errf(err, l, "listen must be IPV4:PORT");
        }
        *colon = 0;
        c->metrics_host = hp;
        c->metrics_port = (int)port;
    }
    return 0;
}

static void defaults(struct canary_config *c)
{
    memset(c, 0, sizeof *c);
    c->rate = 10;
    c->interval_ns = 10 * SEC;
    c->timeout_ns = 2 * SEC;
    c->workers = 8;
    c->max_attempts = 3;
    c->retry_base_ns = SEC; /* botocore standard: rand * 2^(i-1) seconds */
    c->retry_max_backoff_ns = 20 * SEC;
    c->retry_quota = 500;
    c->create_tables = 1;
    c->buffer_rows = 100000;
    c->flush_ns = SEC;
    c->server_metrics = 1;
}

static int finish(struct yt_doc *doc, int rc, struct canary_config *out, struct nerr *err)
{
    if (!rc)
        rc = parse_root(yt_root(doc), out, err);
    yt_free(doc);
    if (rc)
        canary_config_free(out);
    return rc;
}

int canary_config_load(const char *path, struct canary_config *out, struct nerr *err)
{
    struct yt_doc *doc = NULL;
    defaults(out);
    int rc = yt_load_file(path, &doc, err);
    return finish(doc, rc, out, err);
}

int canary_config_parse(const char *name, const char *text, size_t len, struct canary_config *out,
                        struct nerr *err)
{
    struct yt_doc *doc = NULL;
    defaults(out);
    int rc = yt_load_string(name, text, len, &doc, err);
    return finish(doc, rc, out, err);
}
