/* fault/inventory.c — see inventory.h for the file format and contract. */
#include "fault/inventory.h"

#include "net/shquote.h"
#include "net/ssh.h"
#include "lib/strbuf.h"
#include "lib/yamltree.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* What the loader threads through its helpers. */
struct loader {
    const char *basedir; /* where relative paths resolve; never NULL */
    struct nerr *err;
};

/* Host-level values inherited from `defaults:`; borrowed from the doc. */
struct defaults {
    const char *user, *key, *known_hosts;
    int64_t port;
};

static int dup_str(const char *s, char **out, struct nerr *err)
{
    if (!s) {
        *out = NULL;
        return 0;
    }
    *out = strdup(s);
    return *out ? 0 : nerr_set(err, NERR_NOMEM, "out of memory");
}

/* Names that become file names, netns names or report labels: keep them to
 * a set that needs no quoting anywhere. */
static int check_simple_name(const struct yt_node *n, const char *s, const char *what,
                             struct nerr *err)
{
    size_t len = strlen(s);
    if (len == 0 || len > 64 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return yt_errf(err, n, "%s must be 1..64 characters and not '.' or '..'", what);
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return yt_errf(err, n, "%s '%s' may only hold letters, digits, '.', '_' and '-'", what,
                           s);
    }
    return 0;
}

static int check_address(const struct yt_node *n, const char *s, struct nerr *err)
{
    unsigned char buf[16];
    if (inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1)
        return 0;
    size_t len = strlen(s);
    if (len == 0 || len > 253)
        return yt_errf(err, n, "address must be an IP address or a DNS name");
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-'))
            return yt_errf(err, n, "address '%s' is neither an IP address nor a DNS name", s);
    }
    if (s[0] == '-' || s[0] == '.')
        return yt_errf(err, n, "address '%s' is neither an IP address nor a DNS name", s);
    return 0;
}

/* Makes a relative path absolute against basedir. */
static int resolve_path(struct loader *ld, const struct yt_node *n, const char *p, char **out)
{
    if (p[0] == '\0')
        return yt_errf(ld->err, n, "empty path");
    if (p[0] == '/')
        return dup_str(p, out, ld->err);
    size_t need = strlen(ld->basedir) + 1 + strlen(p) + 1;
    if (need > PATH_MAX)
        return yt_errf(ld->err, n, "path too long");
    char *s = malloc(need);
    if (!s)
        return nerr_set(ld->err, NERR_NOMEM, "out of memory");
    size_t bl = strlen(ld->basedir);
    memcpy(s, ld->basedir, bl);
    s[bl] = '/';
    memcpy(s + bl + 1, p, strlen(p) + 1);
    *out = s;
    return 0;
}

/* An optional path key: resolved, or fallback (already absolute) copied. */
static int get_path(struct loader *ld, const struct yt_node *map, const char *key,
                    const char *fallback, char **out)
{
    const struct yt_node *v = NULL;
    const char *s = NULL;
    int rc;
    if ((rc = yt_get(map, key, YT_OPTIONAL, &v, ld->err)))
        return rc;
    if (!v)
        return dup_str(fallback, out, ld->err);
    if ((rc = yt_as_str(v, &s, ld->err)))
        return rc;
    return resolve_path(ld, v, s, out);
}

/* A template key: checked for placeholders, then copied. */
static int get_template(struct loader *ld, const struct yt_node *map, const char *key,
                        enum yt_presence p, char **out)
{
    const struct yt_node *v = NULL;
    const char *s = NULL;
    int rc;
    if ((rc = yt_get(map, key, p, &v, ld->err)))
        return rc;
    if (!v)
        return 0;
    if ((rc = yt_as_str(v, &s, ld->err)))
        return rc;
    if (s[0] == '\0')
        return yt_errf(ld->err, v, "empty command template");
    struct nerr terr;
    nerr_clear(&terr);
    if (inventory_template_expand(s, NULL, NULL, &terr))
        return yt_errf(ld->err, v, "%s", terr.msg);
    return dup_str(s, out, ld->err);
}

/* The lab's optional labfs: fs (a local path: the lab shares this machine's
 * file system) and fs_mode. */
static int load_fs(struct loader *ld, const struct yt_node *pn, struct inv_power *pw)
{
    const struct yt_node *fn = NULL, *mn = NULL;
    const char *fs = NULL, *mode = NULL;
    int rc;
    pw->fs_mode = INV_FS_CRASH;
    if ((rc = yt_get(pn, "fs", YT_OPTIONAL, &fn, ld->err)) ||
        (rc = yt_get(pn, "fs_mode", YT_OPTIONAL, &mn, ld->err)))
        return rc;
    if (mn) {
        if ((rc = yt_as_str(mn, &mode, ld->err)))
            return rc;
        if (!fn)
            return yt_errf(ld->err, mn, "fs_mode needs fs (the host's labfs mount point)");
        if (strcmp(mode, "crash") == 0)
            pw->fs_mode = INV_FS_CRASH;
        else if (strcmp(mode, "torn") == 0)
            pw->fs_mode = INV_FS_TORN;
        else
            return yt_errf(ld->err, mn, "fs_mode must be crash or torn, got '%s'", mode);
    }
    if (!fn)
        return 0;
    if ((rc = yt_as_str(fn, &fs, ld->err)) || (rc = resolve_path(ld, fn, fs, &pw->fs)))
        return rc;
    /* The backing directory and the log sit beside the mount point, so it
     * needs a parent of its own. */
    size_t n = strlen(pw->fs);
    while (n > 1 && pw->fs[n - 1] == '/')
        pw->fs[--n] = '\0';
    if (strrchr(pw->fs, '/') == pw->fs || strstr(pw->fs, "/../") || strstr(pw->fs, "/./") ||
        (n >= 3 && strcmp(pw->fs + n - 3, "/..") == 0) ||
        (n >= 2 && strcmp(pw->fs + n - 2, "/.") == 0))
        return yt_errf(ld->err, fn, "fs '%s' must be a directory below / without . or ..", pw->fs);
    return 0;
}

static int load_power(struct loader *ld, const struct yt_node *pn, struct inv_power *pw)
{
    static const char *const lab_keys[] = {"driver", "netns",   "start", "timeout",
                                           "fs",     "fs_mode", NULL};
    static const char *const cmd_keys[] = {"driver", "off", "on", "status", "timeout", NULL};
    static const char *const qmp_keys[] = {"driver", "socket", "start", "timeout", NULL};
    const struct yt_node *dn = NULL;
    const char *driver = NULL;
    int rc;

    if ((rc = yt_expect_map(pn, ld->err)) ||
        (rc = yt_get(pn, "driver", YT_REQUIRED, &dn, ld->err)) ||
        (rc = yt_as_str(dn, &driver, ld->err)))
        return rc;
    pw->timeout_ns = INV_DEFAULT_TIMEOUT_NS;
    if (strcmp(driver, "lab") == 0) {
        pw->driver = INV_DRIVER_LAB;
        const struct yt_node *nn = NULL;
        const char *netns = NULL;
        if ((rc = yt_check_keys(pn, lab_keys, ld->err)) ||
            (rc = yt_get(pn, "netns", YT_REQUIRED, &nn, ld->err)) ||
            (rc = yt_as_str(nn, &netns, ld->err)) ||
            (rc = check_simple_name(nn, netns, "netns", ld->err)) ||
            (rc = dup_str(netns, &pw->netns, ld->err)) ||
            (rc = get_template(ld, pn, "start", YT_REQUIRED, &pw->start)) ||
            (rc = load_fs(ld, pn, pw)))
            return rc;
    } else if (strcmp(driver, "command") == 0) {
        pw->driver = INV_DRIVER_COMMAND;
        if ((rc = yt_check_keys(pn, cmd_keys, ld->err)) ||
            (rc = get_template(ld, pn, "off", YT_REQUIRED, &pw->off)) ||
            (rc = get_template(ld, pn, "on", YT_REQUIRED, &pw->on)) ||
            (rc = get_template(ld, pn, "status", YT_OPTIONAL, &pw->status)))
            return rc;
    } else if (strcmp(driver, "qmp") == 0) {
        pw->driver = INV_DRIVER_QMP;
        const struct yt_node *sn = NULL;
        const char *sock = NULL;
        if ((rc = yt_check_keys(pn, qmp_keys, ld->err)) ||
            (rc = yt_get(pn, "socket", YT_REQUIRED, &sn, ld->err)) ||
            (rc = yt_as_str(sn, &sock, ld->err)) ||
            (rc = resolve_path(ld, sn, sock, &pw->socket)) ||
            (rc = get_template(ld, pn, "start", YT_OPTIONAL, &pw->start)))
            return rc;
        /* sun_path holds 108 bytes with the NUL. */
        if (strlen(pw->socket) >= 108)
            return yt_errf(ld->err, sn, "socket path '%s' is longer than a unix socket allows",
                           pw->socket);
    } else {
        return yt_errf(ld->err, dn, "unknown power driver '%s' (known: lab, command, qmp)", driver);
    }
    return yt_get_duration(pn, "timeout", YT_OPTIONAL, 100000000ull, 3600ull * 1000000000ull,
                           &pw->timeout_ns, ld->err);
}

static int get_required_str(struct loader *ld, const struct yt_node *map, const char *key,
                            char **out)
{
    const char *s = NULL;
    int rc = yt_get_str(map, key, YT_REQUIRED, &s, ld->err);
    return rc ? rc : dup_str(s, out, ld->err);
}

static int load_host(struct loader *ld, const struct yt_node *hn, const struct defaults *d,
                     struct inv_host *h)
{
    static const char *const keys[] = {"name", "address", "port", "user",  "key", "known_hosts",
                                       "az",   "rack",    "data", "power", NULL};
    const struct yt_node *nn = NULL, *an = NULL, *pn = NULL;
    const char *name = NULL, *addr = NULL, *user = d->user;
    int64_t port = d->port;
    int rc;

    if ((rc = yt_expect_map(hn, ld->err)) || (rc = yt_check_keys(hn, keys, ld->err)))
        return rc;
    h->line = hn->line;
    h->col = hn->col;
    if ((rc = yt_get(hn, "name", YT_REQUIRED, &nn, ld->err)) ||
        (rc = yt_as_str(nn, &name, ld->err)) ||
        (rc = check_simple_name(nn, name, "host name", ld->err)) ||
        (rc = dup_str(name, &h->name, ld->err)) ||
        (rc = yt_get(hn, "address", YT_REQUIRED, &an, ld->err)) ||
        (rc = yt_as_str(an, &addr, ld->err)) || (rc = check_address(an, addr, ld->err)) ||
        (rc = dup_str(addr, &h->address, ld->err)) ||
        (rc = yt_get_int(hn, "port", YT_OPTIONAL, 1, 65535, &port, ld->err)) ||
        (rc = yt_get_str(hn, "user", YT_OPTIONAL, &user, ld->err)) ||
        (rc = dup_str(user, &h->user, ld->err)) ||
        (rc = get_path(ld, hn, "key", d->key, &h->key)) ||
        (rc = get_path(ld, hn, "known_hosts", d->known_hosts, &h->known_hosts)) ||
        (rc = get_required_str(ld, hn, "az", &h->az)) ||
        (rc = get_required_str(ld, hn, "rack", &h->rack)) ||
        (rc = get_required_str(ld, hn, "data", &h->data)) ||
        (rc = yt_get(hn, "power", YT_REQUIRED, &pn, ld->err)) ||
        (rc = load_power(ld, pn, &h->power)))
        return rc;
    h->port = (int)port;
    if (h->user[0] == '\0')
        return yt_errf(ld->err, yt_map_get(hn, "user"), "empty user");
    return 0;
}

static int load_defaults(struct loader *ld, const struct yt_node *root, struct defaults *d,
                         char **key, char **kh)
{
    static const char *const keys[] = {"user", "port", "key", "known_hosts", NULL};
    const struct yt_node *dn = NULL;
    int rc;
    d->user = "root";
    d->port = 22;
    if ((rc = yt_get(root, "defaults", YT_OPTIONAL, &dn, ld->err)) || !dn)
        return rc;
    if ((rc = yt_expect_map(dn, ld->err)) || (rc = yt_check_keys(dn, keys, ld->err)) ||
        (rc = yt_get_str(dn, "user", YT_OPTIONAL, &d->user, ld->err)) ||
        (rc = yt_get_int(dn, "port", YT_OPTIONAL, 1, 65535, &d->port, ld->err)) ||
        (rc = get_path(ld, dn, "key", NULL, key)) ||
        (rc = get_path(ld, dn, "known_hosts", NULL, kh)))
        return rc;
    d->key = *key;
    d->known_hosts = *kh;
    return 0;
}

static void free_host(struct inv_host *h)
{
    free(h->name);
    free(h->address);
    free(h->user);
    free(h->key);
    free(h->known_hosts);
    free(h->az);
    free(h->rack);
    free(h->data);
    free(h->power.netns);
    free(h->power.start);
    free(h->power.off);
    free(h->power.on);
    free(h->power.status);
    free(h->power.socket);
    free(h->power.fs);
}

void inventory_free(struct inventory *inv)
{
    if (!inv)
        return;
    for (size_t i = 0; i < inv->n_hosts; i++)
        free_host(&inv->hosts[i]);
    free(inv->hosts);
    free(inv->name);
    free(inv->path);
    free(inv);
}

/* Two spellings of one IP address are the same host: compare parsed bytes. */
static int same_address(const char *a, const char *b)
{
    unsigned char x[16], y[16];
    if (inet_pton(AF_INET, a, x) == 1 && inet_pton(AF_INET, b, y) == 1)
        return memcmp(x, y, 4) == 0;
    if (inet_pton(AF_INET6, a, x) == 1 && inet_pton(AF_INET6, b, y) == 1)
        return memcmp(x, y, 16) == 0;
    return strcasecmp(a, b) == 0;
}

static int from_doc(struct yt_doc *doc, const char *basedir, struct inventory **out,
                    struct nerr *err)
{
    static const char *const keys[] = {"inventory", "defaults", "hosts", NULL};
    struct loader ld = {.basedir = basedir, .err = err};
    struct defaults d = {0};
    char *dkey = NULL, *dkh = NULL;
    const struct yt_node *root = yt_root(doc), *hosts = NULL;
    const char *name = NULL;
    int rc;
    struct inventory *inv = calloc(1, sizeof *inv);
    if (!inv)
        return nerr_set(err, NERR_NOMEM, "out of memory");

    if ((rc = yt_expect_map(root, err)) || (rc = yt_check_keys(root, keys, err)) ||
        (rc = yt_get_str(root, "inventory", YT_REQUIRED, &name, err)) ||
        (rc = dup_str(name, &inv->name, err)) || (rc = dup_str(yt_name(doc), &inv->path, err)) ||
        (rc = load_defaults(&ld, root, &d, &dkey, &dkh)) ||
        (rc = yt_get(root, "hosts", YT_REQUIRED, &hosts, err)) || (rc = yt_expect_seq(hosts, err)))
        goto fail;
    if (hosts->n == 0) {
        rc = yt_errf(err, hosts, "an inventory needs at least one host");
        goto fail;
    }
    if (hosts->n > INV_MAX_HOSTS) {
        yt_errf(err, hosts, "%zu hosts, more than the %d allowed", hosts->n, INV_MAX_HOSTS);
        rc = err ? (err->code = NERR_LIMIT) : NERR_LIMIT;
        goto fail;
    }
    inv->hosts = calloc(hosts->n, sizeof *inv->hosts);
    if (!inv->hosts) {
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < hosts->n; i++) {
        struct inv_host *h = &inv->hosts[i];
        inv->n_hosts = i + 1; /* so that inventory_free frees a half-loaded host */
        if ((rc = load_host(&ld, hosts->items[i], &d, h)))
            goto fail;
        /* Quadratic, but bounded by INV_MAX_HOSTS and run once per load. */
        for (size_t j = 0; j < i; j++) {
            const struct inv_host *o = &inv->hosts[j];
            if (strcmp(o->name, h->name) == 0) {
                rc = yt_errf(err, yt_map_get(hosts->items[i], "name"),
                             "duplicate host name '%s' (first at line %d)", h->name, o->line);
                goto fail;
            }
            if (same_address(o->address, h->address)) {
                rc = yt_errf(err, yt_map_get(hosts->items[i], "address"),
                             "duplicate address '%s' (host '%s' at line %d has it)", h->address,
                             o->name, o->line);
                goto fail;
            }
            if (o->power.driver == INV_DRIVER_LAB && h->power.driver == INV_DRIVER_LAB &&
                strcmp(o->power.netns, h->power.netns) == 0) {
                rc = yt_errf(err, yt_map_get(yt_map_get(hosts->items[i], "power"), "netns"),
                             "duplicate netns '%s' (host '%s' at line %d has it)", h->power.netns,
                             o->name, o->line);
                goto fail;
            }
            if (o->power.fs && h->power.fs && strcmp(o->power.fs, h->power.fs) == 0) {
                rc = yt_errf(err, yt_map_get(yt_map_get(hosts->items[i], "power"), "fs"),
                             "duplicate fs '%s' (host '%s' at line %d has it)", h->power.fs,
                             o->name, o->line);
                goto fail;
            }
        }
    }
    free(dkey);
    free(dkh);
    *out = inv;
    return 0;
fail:
    free(dkey);
    free(dkh);
    inventory_free(inv);
    return rc;
}

int inventory_load_string(const char *name, const char *text, size_t len, const char *basedir,
                          struct inventory **out, struct nerr *err)
{
    struct yt_doc *doc = NULL;
    char cwd[PATH_MAX];
    int rc;
    if (!basedir) {
        if (!getcwd(cwd, sizeof cwd))
            return nerr_sys(err, errno, "getcwd");
        basedir = cwd;
    }
    if ((rc = yt_load_string(name, text, len, &doc, err)))
        return rc;
    rc = from_doc(doc, basedir, out, err);
    yt_free(doc);
    return rc;
}

int inventory_load(const char *path, struct inventory **out, struct nerr *err)
{
    struct yt_doc *doc = NULL;
    char dir[PATH_MAX], cwd[PATH_MAX];
    int rc;
    const char *slash = strrchr(path, '/');

    /* The file's own directory, made absolute so that the paths stored in
     * the inventory survive a later chdir. */
    if (slash && slash == path) {
        snprintf(dir, sizeof dir, "/");
    } else if (slash) {
        size_t n = (size_t)(slash - path);
        if (path[0] != '/') {
            if (!getcwd(cwd, sizeof cwd))
                return nerr_sys(err, errno, "getcwd");
            if ((size_t)snprintf(dir, sizeof dir, "%s/%.*s", cwd, (int)n, path) >= sizeof dir)
                return nerr_set(err, NERR_INVALID, "%s: path too long", path);
        } else {
            if (n >= sizeof dir)
                return nerr_set(err, NERR_INVALID, "%s: path too long", path);
            memcpy(dir, path, n);
            dir[n] = '\0';
        }
    } else {
        if (!getcwd(dir, sizeof dir))
            return nerr_sys(err, errno, "getcwd");
    }
    if ((rc = yt_load_file(path, &doc, err)))
        return rc;
    rc = from_doc(doc, dir, out, err);
    yt_free(doc);
    return rc;
}

const struct inv_host *inventory_host(const struct inventory *inv, const char *name)
{
    for (size_t i = 0; inv && name && i < inv->n_hosts; i++)
        if (strcmp(inv->hosts[i].name, name) == 0)
            return &inv->hosts[i];
    return NULL;
}

size_t inventory_by_az(const struct inventory *inv, const char *az, const struct inv_host **out,
                       size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < inv->n_hosts; i++) {
        if (strcmp(inv->hosts[i].az, az) != 0)
            continue;
        if (n < cap)
            out[n] = &inv->hosts[i];
        n++;
    }
    return n;
}

size_t inventory_by_rack(const struct inventory *inv, const char *az, const char *rack,
                         const struct inv_host **out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < inv->n_hosts; i++) {
        const struct inv_host *h = &inv->hosts[i];
        if (strcmp(h->rack, rack) != 0 || (az && strcmp(h->az, az) != 0))
            continue;
        if (n < cap)
            out[n] = h;
        n++;
    }
    return n;
}

size_t inventory_azs(const struct inventory *inv, const char **out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < inv->n_hosts; i++) {
        const char *az = inv->hosts[i].az;
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(inv->hosts[j].az, az) == 0;
        if (seen)
            continue;
        if (n < cap)
            out[n] = az;
        n++;
    }
    return n;
}

const char *inventory_driver_name(enum inv_driver d)
{
    switch (d) {
    case INV_DRIVER_LAB:
        return "lab";
    case INV_DRIVER_COMMAND:
        return "command";
    case INV_DRIVER_QMP:
        return "qmp";
    }
    return "?";
}

/* ---- templates ---- */

/* Appends s quoted for POSIX sh (net/shquote.h, the one quoting the SSH
 * layer uses too). */
static void strbuf_add_quoted(struct strbuf *b, const char *s)
{
    char *q = NULL;
    if (shquote_arg(s, &q, NULL) != 0) {
        b->oom = 1;
        return;
    }
    strbuf_add(b, q, strlen(q));
    free(q);
}

static const struct {
    const char *name;
    unsigned bit;
} placeholders[] = {
    {"name", INV_PH_NAME}, {"address", INV_PH_ADDRESS}, {"az", INV_PH_AZ},
    {"rack", INV_PH_RACK}, {"data", INV_PH_DATA},
};

static const char *ph_value(const struct inv_host *h, unsigned bit)
{
    switch (bit) {
    case INV_PH_NAME:
        return h->name;
    case INV_PH_ADDRESS:
        return h->address;
    case INV_PH_AZ:
        return h->az;
    case INV_PH_RACK:
        return h->rack;
    case INV_PH_DATA:
        return h->data;
    }
    return "";
}

/* Walks tmpl once: checks it, records the placeholders used, and when h and
 * out are given writes the expansion. */
static int tmpl_walk(const char *tmpl, const struct inv_host *h, struct strbuf *out, unsigned *used,
                     struct nerr *err)
{
    size_t len = strlen(tmpl);
    if (len > INV_TEMPLATE_MAX)
        return nerr_set(err, NERR_INVALID, "template longer than %d bytes", INV_TEMPLATE_MAX);
    for (size_t i = 0; i < len;) {
        char c = tmpl[i];
        if (c == '{' && tmpl[i + 1] == '{') {
            if (out)
                strbuf_add(out, "{", 1);
            i += 2;
        } else if (c == '}' && tmpl[i + 1] == '}') {
            if (out)
                strbuf_add(out, "}", 1);
            i += 2;
        } else if (c == '}') {
            return nerr_set(err, NERR_INVALID,
                            "unbalanced '}' at offset %zu of the template (write '}}' for a "
                            "literal brace)",
                            i);
        } else if (c == '{') {
            const char *end = strchr(tmpl + i + 1, '}');
            if (!end)
                return nerr_set(err, NERR_INVALID,
                                "unbalanced '{' at offset %zu of the template (write '{{' for a "
                                "literal brace)",
                                i);
            size_t n = (size_t)(end - (tmpl + i + 1));
            unsigned bit = 0;
            for (size_t k = 0; k < sizeof placeholders / sizeof placeholders[0]; k++)
                if (strlen(placeholders[k].name) == n &&
                    memcmp(placeholders[k].name, tmpl + i + 1, n) == 0)
                    bit = placeholders[k].bit;
            if (!bit)
                return nerr_set(err, NERR_INVALID,
                                "unknown placeholder '{%.*s}' (known: {name}, {address}, {az}, "
                                "{rack}, {data})",
                                (int)(n > 40 ? 40 : n), tmpl + i + 1);
            if (used)
                *used |= bit;
            if (out && h)
                strbuf_add_quoted(out, ph_value(h, bit));
            i += n + 2;
        } else {
            if (out)
                strbuf_add(out, &c, 1);
            i++;
        }
    }
    return 0;
}

int inventory_template_expand(const char *tmpl, const struct inv_host *h, char **out,
                              struct nerr *err)
{
    struct strbuf b = {0};
    int rc = tmpl_walk(tmpl, h, h && out ? &b : NULL, NULL, err);
    if (rc == 0 && h && out)
        return strbuf_finish(&b, out) ? nerr_set(err, NERR_NOMEM, "out of memory") : 0;
    strbuf_free(&b);
    return rc;
}

int inventory_template_uses(const char *tmpl, unsigned *used, struct nerr *err)
{
    return tmpl_walk(tmpl, NULL, NULL, used, err);
}

/* ---- SSH ---- */

void inventory_ssh_opts(const struct inv_host *h, int connect_timeout_ms, struct ssh_host_opts *o)
{
    *o = (struct ssh_host_opts){.host = h->address,
                                .port = h->port,
                                .user = h->user,
                                .key_path = h->key,
                                .known_hosts = h->known_hosts,
                                .hostkey_policy = SSH_HOSTKEY_STRICT,
                                .connect_timeout_ms = connect_timeout_ms};
}
