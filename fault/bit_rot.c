/*
 * fault/bit_rot.c — the bit_rot fault kind (fault.h; what it reports:
 * bit_rot.h): corruption at rest. For each target host, in order:
 *
 *   1. refuse this machine (hostcmd_check_target);
 *   2. upload the host-side tool, ninesd-bitrot (fault/bit_rot_main.c),
 *      found next to this program or in ../bin, to DATA/ninesd-bitrot
 *      (under a temporary name, then renamed: a binary being run cannot be
 *      rewritten);
 *   3. stop ninesd cleanly: SIGTERM to the pid in DATA/ninesd.pid (trusted
 *      only when /proc/PID/cmdline shows ninesd, as gameday/deploy.c does),
 *      then wait until it is gone, at most STOP_WAIT_S; a ninesd that is
 *      not running, or does not stop, fails the step with nothing changed;
 *   4. run the tool on DATA/store/state (the game day's layout: the node's
 *      data is DATA/store): it flips one bit of N items' stored bytes in
 *      data.mdb with pwrite + fdatasync — LMDB's write path is not used, so
 *      the node's maintained digest still describes the old bytes — and
 *      prints one JSON line per item;
 *   5. start ninesd again with the boot script, as power-on does (`setsid
 *      -f BOOT`; BOOT is the step's boot_script, by default the game day's
 *      default DATA/../boot.d/ninesd) and call env->host_changed. A ninesd
 *      that was stopped is started again whatever step 4 did.
 *
 * Every corrupted item is noted (env->note) and kept in the state for
 * bit_rot_corrupted. There is no heal step: only a repair heals rot.
 * heal_all starts again a ninesd this run stopped and failed to start; it
 * touches no data.
 *
 * Playbook keys (besides the shared ones; `duration` is refused: the fault
 * is over when the node is up again, and nothing undoes it):
 *   items: N            1..100 items per host (default 1)
 *   table: NAME         only items of this table (default: every table the
 *                       node holds a replica of)
 *   boot_script: PATH   the host's ninesd boot script, {data} and {name}
 *                       expanded (must match cluster.deploy.boot_script)
 */
#include "fault/bit_rot.h"
#include "fault/hostcmd.h"
#include "fault/hostfault.h"
#include "net/shquote.h"
#include "net/ssh.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NS_PER_S 1000000000ull
#define TOOL_NAME "ninesd-bitrot"
#define STOP_WAIT_S 15  /* for ninesd to exit after SIGTERM */
#define STOP_MS 30000   /* the whole stop command */
#define TOOL_MS 60000   /* the tool */
#define START_MS 30000  /* the boot script's start */
#define MAX_ITEMS 100

struct br_params {
    int items;
    char *table;       /* NULL: every table */
    char *boot_script; /* NULL: DATA/../boot.d/ninesd */
};

struct br_rec {
    struct bit_rot_item pub;
    char *host, *table, *key, *key_bytes, *attribute;
};

struct br_state {
    struct br_rec *recs;
    struct bit_rot_item *view; /* rebuilt by bit_rot_corrupted */
    size_t n, cap;
    char **stopped; /* per host: the boot script of a ninesd this run stopped and has not
                       started again, or NULL */
    size_t nhosts;
};

static const char *const keys[] = {"items", "table", "boot_script", NULL};

static int table_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 3 || n > 255)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '.' || *s == '-'))
            return 0;
    return 1;
}

/* "{data}" and "{name}" are the only braces a boot_script may hold. */
static int boot_template_ok(const char *t)
{
    for (; *t; t++) {
        if (*t == '{') {
            if (strncmp(t, "{data}", 6) && strncmp(t, "{name}", 6))
                return 0;
            t += 5;
        } else if (*t == '}') {
            return 0;
        }
    }
    return 1;
}

static int br_parse(const struct fault_errs *x, const struct yt_node *m, void **params)
{
    struct br_params *p = calloc(1, sizeof *p);
    if (!p)
        return NERR_NOMEM;
    *params = p;
    p->items = 1;
    struct nerr e = {0};
    int64_t n = 1;
    if (!fault_chk(x, yt_get_int(m, "items", YT_OPTIONAL, 1, MAX_ITEMS, &n, &e), &e))
        p->items = (int)n;
    const char *s = NULL;
    if (!fault_chk(x, yt_get_str(m, "table", YT_OPTIONAL, &s, &e), &e) && s) {
        if (!table_name_ok(s))
            fault_errf(x, yt_map_get(m, "table"),
                       "table must be a table name (3 to 255 of A-Z a-z 0-9 _ . -), got '%s'", s);
        else if (!(p->table = strdup(s)))
            return NERR_NOMEM;
    }
    s = NULL;
    if (!fault_chk(x, yt_get_str(m, "boot_script", YT_OPTIONAL, &s, &e), &e) && s) {
        if (!*s || !boot_template_ok(s))
            fault_errf(x, yt_map_get(m, "boot_script"),
                       "boot_script must be a path; {data} and {name} are its only "
                       "placeholders, got '%s'",
                       s);
        else if (!(p->boot_script = strdup(s)))
            return NERR_NOMEM;
    }
    if (yt_map_key(m, "duration"))
        fault_errf(x, yt_map_key(m, "duration"),
                   "bit_rot takes no duration: it is over when the node runs again, and only a "
                   "repair undoes it");
    return 0;
}

static void br_free(void *params)
{
    struct br_params *p = params;
    if (p) {
        free(p->table);
        free(p->boot_script);
    }
    free(p);
}

static void br_describe(const void *params, char *buf, size_t cap)
{
    const struct br_params *p = params;
    int n = p ? p->items : 1;
    snprintf(buf, cap, " (%d item%s%s%s)", n, n == 1 ? "" : "s", p && p->table ? " of table " : "",
             p && p->table ? p->table : "");
}

static const char *br_label(const struct inv_host *h, const void *params)
{
    return "rot";
}

static int br_open(const struct fault_env *env, void **state, struct nerr *err)
{
    struct br_state *s = calloc(1, sizeof *s);
    size_t n = env->inv ? env->inv->n_hosts : 0;
    if (!s || !(s->stopped = calloc(n ? n : 1, sizeof *s->stopped))) {
        free(s);
        return nerr_set(err, NERR_NOMEM, "out of memory");
    }
    s->nhosts = n;
    *state = s;
    return 0;
}

static void br_close(void *state)
{
    struct br_state *s = state;
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        struct br_rec *r = &s->recs[i];
        free(r->host), free(r->table), free(r->key), free(r->key_bytes), free(r->attribute);
    }
    free(s->recs);
    free(s->view);
    for (size_t i = 0; i < s->nhosts; i++)
        free(s->stopped[i]);
    free(s->stopped);
    free(s);
}

size_t bit_rot_corrupted(const void *state, const struct bit_rot_item **items)
{
    struct br_state *s = (struct br_state *)state;
    if (items)
        *items = NULL;
    if (!s || !s->n)
        return 0;
    if (items) {
        struct bit_rot_item *v = realloc(s->view, s->n * sizeof *v);
        if (!v)
            return 0;
        s->view = v;
        for (size_t i = 0; i < s->n; i++)
            v[i] = s->recs[i].pub;
        *items = v;
    }
    return s->n;
}

/* ---- paths ---- */

/* "DATA/name" into out; NERR_INVALID when too long. */
static int data_path(const struct inv_host *h, const char *name, char *out, size_t cap,
                     struct nerr *err)
{
    if ((size_t)snprintf(out, cap, "%s/%s", h->data, name) >= cap)
        return nerr_set(err, NERR_INVALID, "host %s: data path too long", h->name);
    return 0;
}

/* The boot script: the template expanded, or deploy.c's default, the
 * boot.d/ninesd beside the data directory. */
static int boot_path(const struct inv_host *h, const struct br_params *p, char *out, size_t cap,
                     struct nerr *err)
{
    size_t len = 0;
    out[0] = 0;
    if (!p || !p->boot_script) {
        char d[PATH_MAX];
        snprintf(d, sizeof d, "%s", h->data);
        size_t l = strlen(d);
        while (l > 1 && d[l - 1] == '/')
            d[--l] = 0;
        char *slash = strrchr(d, '/');
        if (slash && slash != d)
            *slash = 0;
        else if (slash)
            d[1] = 0;
        len = (size_t)snprintf(out, cap, "%s/boot.d/ninesd", d);
    } else {
        for (const char *t = p->boot_script; *t && len < cap; t++) {
            if (!strncmp(t, "{data}", 6) || !strncmp(t, "{name}", 6)) {
                len +=
                    (size_t)snprintf(out + len, cap - len, "%s", t[1] == 'd' ? h->data : h->name);
                t += 5;
            } else if (len + 1 < cap) {
                out[len++] = *t;
                out[len] = 0;
            } else {
                len = cap;
            }
        }
    }
    if (len >= cap)
        return nerr_set(err, NERR_INVALID, "host %s: boot script path too long", h->name);
    return 0;
}

/* ---- the steps on one host ---- */

/* The cluster's catalog next to the tool (DATA/ninesd-bitrot.catalog.json),
 * for a node outside the metadata group (it keeps no catalog in LMDB). 0
 * and *remote_out "" when the runner has none to give. */
static int upload_catalog(const struct fault_env *env, const struct inv_host *h, char *remote_out,
                          size_t cap, struct nerr *err)
{
    remote_out[0] = 0;
    char *text = env->catalog ? env->catalog(env->arg) : NULL;
    if (!text)
        return 0;
    char local[] = "/tmp/nines-bitrot-catalog-XXXXXX";
    int fd = mkstemp(local), rc = 0;
    size_t len = strlen(text);
    if (fd < 0 || write(fd, text, len) != (ssize_t)len)
        rc = nerr_sys(err, errno, "bit_rot: writing the catalog to %s", local);
    if (fd >= 0)
        close(fd);
    free(text);
    char remote[PATH_MAX];
    if (!rc && !(rc = data_path(h, TOOL_NAME ".catalog.json", remote, sizeof remote, err)) &&
        !(rc = hf_upload(h, local, remote, 0644, "the catalog", err)))
        snprintf(remote_out, cap, "%s", remote);
    if (fd >= 0)
        unlink(local);
    return rc;
}

/* Renames the uploaded tool into place and stops ninesd (header, step 3). */
static int stop_ninesd(const struct inv_host *h, const char *qnew, const char *qtool,
                       const char *qpid, struct nerr *err)
{
    char *cmd = NULL;
    if (asprintf(&cmd,
                 "mv -f -- %s %s || exit 5; "
                 "p=$(cat %s 2>/dev/null); "
                 "case \"$p\" in ''|*[!0-9]*) echo \"no ninesd pid in %s\" >&2; exit 3;; esac; "
                 "case \"$(tr '\\0' ' ' < /proc/$p/cmdline 2>/dev/null)\" in *ninesd*) ;; "
                 "*) echo \"ninesd (pid $p) is not running\" >&2; exit 3;; esac; "
                 "kill -TERM \"$p\" || exit 3; i=0; "
                 "while [ -e /proc/$p/exe ] && [ $i -lt %d ]; do sleep 0.05; i=$((i + 1)); done; "
                 "if [ -e /proc/$p/exe ]; then "
                 "echo \"ninesd (pid $p) still runs %d s after SIGTERM\" >&2; exit 4; fi",
                 qnew, qtool, qpid, qpid, STOP_WAIT_S * 20, STOP_WAIT_S) < 0)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    int rc = hostcmd_run_ok(h, "stop ninesd", cmd, STOP_MS, NULL, err);
    free(cmd);
    return rc;
}

static int start_ninesd(const struct inv_host *h, const char *boot, struct nerr *err)
{
    char *qb = NULL, *cmd = NULL;
    int rc = shquote_arg(boot, &qb, err);
    if (rc)
        return rc;
    if (asprintf(&cmd, "setsid -f %s </dev/null >/dev/null 2>&1", qb) < 0)
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
    else
        rc = hostcmd_run_ok(h, "start ninesd (boot script)", cmd, START_MS, NULL, err), free(cmd);
    free(qb);
    return rc;
}

static char *dup_str(const char *s)
{
    return strdup(s ? s : "");
}

/* Keeps one line of the tool's output; 0 when it is not one of its lines. */
static int keep_line(struct br_state *s, const struct fault_env *env, const struct inv_host *h,
                     const char *line, size_t len)
{
    json_t *o = json_loadb(line, len, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return 0;
    }
    if (s->n == s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 8;
        struct br_rec *nr = realloc(s->recs, nc * sizeof *nr);
        if (!nr) {
            json_decref(o);
            return 0;
        }
        s->recs = nr;
        s->cap = nc;
    }
    struct br_rec *r = &s->recs[s->n];
    memset(r, 0, sizeof *r);
    json_t *k = json_object_get(o, "key");
    char *kj = json_is_object(k) ? json_dumps(k, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    r->host = dup_str(h->name);
    r->table = dup_str(json_string_value(json_object_get(o, "table")));
    r->key = dup_str(kj);
    r->key_bytes = dup_str(json_string_value(json_object_get(o, "key_bytes")));
    r->attribute = dup_str(json_string_value(json_object_get(o, "attribute")));
    free(kj);
    if (!r->host || !r->table || !r->key || !r->key_bytes || !r->attribute) {
        free(r->host), free(r->table), free(r->key), free(r->key_bytes), free(r->attribute);
        json_decref(o);
        return 0;
    }
    r->pub = (struct bit_rot_item){
        .host = r->host,
        .table = r->table,
        .partition = (int)json_integer_value(json_object_get(o, "partition")),
        .key = r->key,
        .key_bytes = r->key_bytes,
        .attribute = r->attribute,
        .offset = (uint64_t)json_integer_value(json_object_get(o, "offset")),
    };
    s->n++;
    const char *was = json_string_value(json_object_get(o, "was")),
               *now = json_string_value(json_object_get(o, "now"));
    fault_notef(env,
          "bit_rot %s: corrupted item %s of table %s (partition %d, attribute %s: byte %llu of "
          "data.mdb flipped '%s' -> '%s')",
          h->name, *r->key ? r->key : r->key_bytes, r->table, r->pub.partition,
          *r->attribute ? r->attribute : "?", (unsigned long long)r->pub.offset, was ? was : "?",
          now ? now : "?");
    json_decref(o);
    return 1;
}

static int rot_host(struct br_state *s, const struct fault_env *env, size_t hi,
                    const struct br_params *p, const char *tool, struct nerr *err)
{
    const struct inv_host *h = &env->inv->hosts[hi];
    char p_tool[PATH_MAX], p_new[PATH_MAX], p_pid[PATH_MAX], p_env[PATH_MAX], boot[PATH_MAX];
    char *qtool = NULL, *qnew = NULL, *qpid = NULL, *qenv = NULL, *qtable = NULL, *cmd = NULL,
         *qcat = NULL;
    struct hostcmd_result r = {0};
    int rc, stopped = 0;
    if ((rc = data_path(h, TOOL_NAME, p_tool, sizeof p_tool, err)) ||
        (rc = data_path(h, "." TOOL_NAME ".new", p_new, sizeof p_new, err)) ||
        (rc = data_path(h, "ninesd.pid", p_pid, sizeof p_pid, err)) ||
        (rc = data_path(h, "store/state", p_env, sizeof p_env, err)) ||
        (rc = boot_path(h, p, boot, sizeof boot, err)) || (rc = shquote_arg(p_tool, &qtool, err)) ||
        (rc = shquote_arg(p_new, &qnew, err)) || (rc = shquote_arg(p_pid, &qpid, err)) ||
        (rc = shquote_arg(p_env, &qenv, err)) ||
        (p && p->table && (rc = shquote_arg(p->table, &qtable, err))))
        goto out;
    char p_cat[PATH_MAX];
    if ((rc = hf_upload(h, tool, p_new, 0755, TOOL_NAME, err)) ||
        (rc = upload_catalog(env, h, p_cat, sizeof p_cat, err)) ||
        (p_cat[0] && (rc = shquote_arg(p_cat, &qcat, err))) ||
        (rc = stop_ninesd(h, qnew, qtool, qpid, err)))
        goto out;
    stopped = 1;
    if (hi < s->nhosts) {
        free(s->stopped[hi]);
        s->stopped[hi] = strdup(boot); /* NULL (no memory): not restarted by heal_all */
    }
    if (env->host_changed)
        env->host_changed(env->arg, h);
    if (asprintf(&cmd, "%s --env %s --items %d%s%s%s%s", qtool, qenv, p ? p->items : 1,
                 qtable ? " --table " : "", qtable ? qtable : "", qcat ? " --catalog " : "",
                 qcat ? qcat : "") < 0) {
        cmd = NULL;
        rc = nerr_set(err, NERR_NOMEM, "out of memory");
        goto out;
    }
    rc = hostcmd_run_ok(h, TOOL_NAME, cmd, TOOL_MS, &r, err);
    /* Every line is an item whose byte changed, even when the tool failed
     * later. */
    size_t kept = 0;
    for (char *l = r.out; l && *l;) {
        char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        kept += keep_line(s, env, h, l, len);
        l = nl ? nl + 1 : l + len;
    }
    if (!rc && !kept)
        rc = nerr_set(err, NERR_IO, "host %s: %s reported no item", h->name, TOOL_NAME);
out:
    if (stopped) {
        struct nerr e = {0};
        int src = start_ninesd(h, boot, &e);
        if (!src && hi < s->nhosts) {
            free(s->stopped[hi]);
            s->stopped[hi] = NULL;
        }
        if (env->host_changed)
            env->host_changed(env->arg, h);
        if (src && !rc)
            rc = nerr_set(err, src, "%s", e.msg);
        else if (src)
            fault_notef(env, "bit_rot %s: starting ninesd again failed: %s", h->name, e.msg);
    }
    hostcmd_result_free(&r);
    free(qtool), free(qnew), free(qpid), free(qenv), free(qtable), free(cmd), free(qcat);
    return rc;
}

static int br_inject(void *state, const struct fault_env *env, const struct fault_call *c,
                     struct nerr *err)
{
    char tool[PATH_MAX];
    int rc = hf_local_tool(TOOL_NAME, tool, sizeof tool, err);
    if (rc == NERR_NOTFOUND) {
        char why[NERR_MSG_MAX];
        snprintf(why, sizeof why, "%s", err->msg);
        nerr_set(err, rc, "bit_rot: %s", why);
    }
    if (rc)
        return rc;
    for (size_t i = 0; i < c->nhosts; i++)
        if ((rc = hostcmd_check_target(&env->inv->hosts[c->hosts[i]], "corrupt the data of", err)))
            return rc;
    for (size_t i = 0; i < c->nhosts; i++)
        if ((rc = rot_host(state, env, c->hosts[i], c->params, tool, err)))
            return rc;
    return 0;
}

/* No heal step exists; the runner calls heal only after a duration, which
 * parse refuses. Nothing to undo either way. */
static int br_heal(void *state, const struct fault_env *env, const struct fault_call *c,
                   struct nerr *err)
{
    return 0;
}

/* A ninesd this run stopped and could not start again is started again
 * with the boot script its step used. Nothing else: rot stays until
 * repaired. */
static void br_heal_all(void *state, const struct fault_env *env)
{
    struct br_state *s = state;
    for (size_t i = 0; s && i < s->nhosts && i < env->inv->n_hosts; i++) {
        if (!s->stopped[i])
            continue;
        const struct inv_host *h = &env->inv->hosts[i];
        struct nerr e = {0};
        if (hostcmd_check_target(h, "start ninesd on", &e) || start_ninesd(h, s->stopped[i], &e)) {
            fault_notef(env, "bit_rot %s: ninesd is still stopped: %s", h->name, e.msg);
            continue;
        }
        fault_notef(env, "bit_rot %s: ninesd started again (%s)", h->name, s->stopped[i]);
        free(s->stopped[i]);
        s->stopped[i] = NULL;
        if (env->host_changed)
            env->host_changed(env->arg, h);
    }
}

const struct fault_kind fault_bit_rot = {
    .name = "bit_rot",
    .inject_step = "bit_rot",
    .heal_step = NULL,
    .held_until = "until repaired",
    .keys = keys,
    .inject_timeout_ns = 180 * NS_PER_S,
    .heal_timeout_ns = 60 * NS_PER_S,
    .instant = 1,
    .at_rest = 1,
    .parse = br_parse,
    .free_params = br_free,
    .check = NULL,
    .describe = br_describe,
    .label = br_label,
    .open = br_open,
    .close = br_close,
    .inject = br_inject,
    .heal = br_heal,
    .heal_all = br_heal_all,
};
