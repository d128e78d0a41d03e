#include "canary/envsub.h"

#include <stdlib.h>
#include <string.h>

#include "lib/strbuf.h"

int envsub_expand(const char *in, envsub_lookup_fn lookup, char **out, struct nerr *err)
{
    struct strbuf b = {0};
    if (!lookup)
        lookup = (envsub_lookup_fn)getenv;
    for (const char *p = in; *p;) {
        if (p[0] == '$' && p[1] == '$') {
            strbuf_ch(&b, '$');
            p += 2;
            continue;
        }
        if (p[0] != '$' || p[1] != '{') {
            strbuf_ch(&b, *p++);
            continue;
        }
        const char *close = strchr(p, '}');
        if (!close) {
            strbuf_free(&b);
            return nerr_set(err, NERR_INVALID, "unterminated ${ in '%s'", in);
        }
        char name[128];
        const char *def = NULL;
        size_t deflen = 0;
        const char *colon = memchr(p + 2, ':', (size_t)(close - p - 2));
        size_t nlen = (size_t)((colon ? colon : close) - (p + 2));
        if (colon) {
            if (colon[1] != '-') {
                strbuf_free(&b);
                return nerr_set(err, NERR_INVALID, "only ${VAR} and ${VAR:-default} are allowed");
            }
            def = colon + 2;
            deflen = (size_t)(close - def);
        }
        if (nlen == 0 || nlen >= sizeof name) {
            strbuf_free(&b);
            return nerr_set(err, NERR_INVALID, "bad variable name in '%s'", in);
        }
        memcpy(name, p + 2, nlen);
        name[nlen] = 0;
        const char *v = lookup(name);
        if (v && *v)
            strbuf_str(&b, v);
        else if (def)
            strbuf_add(&b, def, deflen);
        else {
            strbuf_free(&b);
            return nerr_set(err, NERR_INVALID, "environment variable %s is not set", name);
        }
        p = close + 1;
    }
    if (strbuf_finish(&b, out))
        return nerr_set(err, NERR_NOMEM, "out of memory");
    return 0;
}

void envsub_endpoints_free(struct envsub_endpoint *e, size_t n)
{
    for (size_t i = 0; e && i < n; i++) {
        free(e[i].name);
        free(e[i].az);
        free(e[i].url);
    }
    free(e);
}

static char *host_port(const char *url)
{
    const char *s = strstr(url, "://");
    s = s ? s + 3 : url;
    size_t n = strcspn(s, "/");
    return strndup(s, n);
}

int envsub_endpoints(const char *spec, struct envsub_endpoint **out, size_t *n, struct nerr *err)
{
    struct envsub_endpoint *v = NULL;
    size_t cnt = 0;
    char *copy = strdup(spec), *save = NULL;
    int rc = 0;
    if (!copy)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ')
            item++;
        char *eq = strchr(item, '=');
        if (!eq || eq == item || !eq[1]) {
            rc = nerr_set(err, NERR_INVALID, "endpoint '%s' is not AZ=URL or NAME@AZ=URL", item);
            goto fail;
        }
        *eq = 0;
        if (strncmp(eq + 1, "http://", 7) && strncmp(eq + 1, "https://", 8)) {
            rc = nerr_set(err, NERR_INVALID, "endpoint URL '%s' must start with http:// or https://",
                          eq + 1);
            goto fail;
        }
        struct envsub_endpoint *nv = realloc(v, (cnt + 1) * sizeof *v);
        if (!nv) {
            rc = nerr_set(err, NERR_NOMEM, "out of memory");
            goto fail;
        }
        v = nv;
        char *at = strchr(item, '@');
        v[cnt].url = strdup(eq + 1);
        v[cnt].az = strdup(at ? at + 1 : item);
        v[cnt].name = at ? strndup(item, (size_t)(at - item)) : host_port(eq + 1);
        cnt++;
        if (!v[cnt - 1].url || !v[cnt - 1].az || !v[cnt - 1].name) {
            rc = nerr_set(err, NERR_NOMEM, "out of memory");
            goto fail;
        }
    }
    if (!cnt) {
        rc = nerr_set(err, NERR_INVALID, "no endpoints in '%s'", spec);
        goto fail;
    }
    free(copy);
    *out = v;
    *n = cnt;
    return 0;
fail:
    free(copy);
    envsub_endpoints_free(v, cnt);
    return rc;
}
