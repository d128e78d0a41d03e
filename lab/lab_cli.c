/*
 * lab_cli.c — `nines lab up|down|status|power|exec` (docs/lab.md); the work
 * is in lab/lab.c. Exit status: 0 done, 1 failed, 2 usage error; `exec`
 * passes the remote command's status back (255: SSH failed, 124: timeout,
 * 128+N: killed by signal N).
 */
#include "lab/lab.h"

#include "lib/log.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int lab_main(int argc, char **argv);

/* Set by SIGINT/SIGTERM/SIGHUP during `up`, so that it cleans up before
 * exiting; a signal handler can only reach a static. */
static volatile sig_atomic_t up_interrupted;

static void on_signal(int sig)
{
    (void)sig;
    up_interrupted = 1;
}

#define EXIT_USAGE 2
#define EXIT_SSH 255
#define EXIT_TIMEOUT 124

static void usage(FILE *f)
{
    fprintf(f, "usage: nines lab up --hosts N --azs A [--racks R] [--subnet A.B.C.0/24]\n"
               "                    [--ssh-wait SECONDS] [--no-labfs] --dir DIR\n"
               "       nines lab status --dir DIR [--json] [--timeout SECONDS]\n"
               "       nines lab power off HOST --dir DIR [--mode crash|torn|kill]\n"
               "       nines lab power on HOST --dir DIR [--wait SECONDS]\n"
               "       nines lab exec HOST --dir DIR [--timeout SECONDS] -- CMD [ARG...]\n"
               "       nines lab down --dir DIR\n"
               "\n"
               "A lab is a set of hosts made of network namespaces on a private bridge, each\n"
               "with its own address and sshd, and the inventory for them (DIR/inventory.yaml).\n"
               "Each host's data directory is a labfs mount (unless --no-labfs): power off\n"
               "loses what the host had not fsync'd, as a power cut does.\n"
               "Must run as root. See docs/lab.md.\n");
}

static int parse_int(const char *sub, const char *opt, const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "nines lab %s: %s must be an integer in %d..%d (got '%s')\n", sub, opt, lo,
                hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* Seconds (fractions allowed) to milliseconds, within 0.001..86400. */
static int parse_secs(const char *sub, const char *opt, const char *s, int *ms)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < 0.001 || v > 86400) {
        fprintf(stderr, "nines lab %s: %s must be a number of seconds in 0.001..86400 (got '%s')\n",
                sub, opt, s);
        return -1;
    }
    *ms = (int)(v * 1000 + 0.5);
    return 0;
}

enum {
    OPT_HOSTS = 1,
    OPT_AZS,
    OPT_RACKS,
    OPT_SUBNET,
    OPT_DIR,
    OPT_JSON,
    OPT_TIMEOUT,
    OPT_WAIT,
    OPT_SSH_WAIT,
    OPT_NO_LABFS,
    OPT_MODE,
    OPT_HELP
};

static const struct option all_opts[] = {{"hosts", required_argument, NULL, OPT_HOSTS},
                                         {"azs", required_argument, NULL, OPT_AZS},
                                         {"racks", required_argument, NULL, OPT_RACKS},
                                         {"subnet", required_argument, NULL, OPT_SUBNET},
                                         {"dir", required_argument, NULL, OPT_DIR},
                                         {"json", no_argument, NULL, OPT_JSON},
                                         {"timeout", required_argument, NULL, OPT_TIMEOUT},
                                         {"wait", required_argument, NULL, OPT_WAIT},
                                         {"ssh-wait", required_argument, NULL, OPT_SSH_WAIT},
                                         {"no-labfs", no_argument, NULL, OPT_NO_LABFS},
                                         {"mode", required_argument, NULL, OPT_MODE},
                                         {"help", no_argument, NULL, OPT_HELP},
                                         {NULL, 0, NULL, 0}};

struct args {
    struct lab_spec spec;
    const char *dir;
    int json, timeout_ms, wait_ms;
    enum power_off_mode mode;
    int have_hosts, have_azs;
    char **pos; /* positional arguments, in order */
    int n_pos;
};

/* Parses argv[1..argc) of subcommand sub; `allowed` lists the options it
 * takes (OPT_* values, 0-terminated). Returns 0, 1 (help printed) or -1. */
static int parse(const char *sub, int argc, char **argv, const int *allowed, struct args *a)
{
    int c;
    char prog[64];
    snprintf(prog, sizeof prog, "nines lab %s", sub);
    argv[0] = prog; /* getopt's own messages name it */
    optind = 0;     /* GNU: reinitialise, argv differs from any earlier call */
    opterr = 1;
    while ((c = getopt_long(argc, argv, "h", all_opts, NULL)) != -1) {
        int ok = c == 'h' || c == OPT_HELP;
        for (const int *p = allowed; *p && !ok; p++)
            ok = *p == c;
        if (c == '?') {
            fprintf(stderr, "see `nines lab --help`\n");
            return -1;
        }
        if (!ok) {
            fprintf(stderr, "nines lab %s: option '%s' does not apply here\n", sub,
                    argv[optind - 1]);
            return -1;
        }
        switch (c) {
        case 'h':
        case OPT_HELP:
            usage(stdout);
            return 1;
        case OPT_HOSTS:
            if (parse_int(sub, "--hosts", optarg, 0, 1000000, &a->spec.hosts))
                return -1;
            a->have_hosts = 1;
            break;
        case OPT_AZS:
            if (parse_int(sub, "--azs", optarg, 0, 1000000, &a->spec.azs))
                return -1;
            a->have_azs = 1;
            break;
        case OPT_RACKS:
            if (parse_int(sub, "--racks", optarg, 1, 1000000, &a->spec.racks))
                return -1;
            break;
        case OPT_SUBNET:
            a->spec.subnet = optarg;
            break;
        case OPT_DIR:
            a->dir = optarg;
            break;
        case OPT_JSON:
            a->json = 1;
            break;
        case OPT_TIMEOUT:
            if (parse_secs(sub, "--timeout", optarg, &a->timeout_ms))
                return -1;
            break;
        case OPT_WAIT:
            if (parse_secs(sub, "--wait", optarg, &a->wait_ms))
                return -1;
            break;
        case OPT_SSH_WAIT:
            if (parse_secs(sub, "--ssh-wait", optarg, &a->spec.ssh_wait_ms))
                return -1;
            break;
        case OPT_NO_LABFS:
            a->spec.no_labfs = 1;
            break;
        case OPT_MODE:
            if (power_off_mode_parse(optarg, &a->mode) || a->mode == POWER_OFF_DEFAULT) {
                fprintf(stderr, "nines lab %s: --mode must be crash, torn or kill (got '%s')\n",
                        sub, optarg);
                return -1;
            }
            break;
        }
    }
    a->pos = argv + optind;
    a->n_pos = argc - optind;
    if (!a->dir) {
        fprintf(stderr, "nines lab %s: --dir DIR is required\n", sub);
        return -1;
    }
    return 0;
}

static int fail(const char *sub, const struct nerr *e)
{
    fprintf(stderr, "nines lab %s: %s\n", sub, e->msg);
    return 1;
}

static int cmd_up(int argc, char **argv)
{
    static const int allowed[] = {OPT_HOSTS, OPT_AZS,      OPT_RACKS,    OPT_SUBNET,
                                  OPT_DIR,   OPT_SSH_WAIT, OPT_NO_LABFS, 0};
    struct args a = {0};
    struct lab_env env;
    struct nerr e;
    char id[LAB_ID_LEN + 1];
    int r = parse("up", argc, argv, allowed, &a);
    if (r)
        return r > 0 ? 0 : EXIT_USAGE;
    if (a.n_pos) {
        fprintf(stderr, "nines lab up: unexpected argument '%s'\n", a.pos[0]);
        return EXIT_USAGE;
    }
    if (!a.have_hosts || !a.have_azs) {
        fprintf(stderr, "nines lab up: --hosts N and --azs A are required\n");
        return EXIT_USAGE;
    }
    a.spec.dir = a.dir;
    if (lab_spec_check(&a.spec, &e))
        return fprintf(stderr, "nines lab up: %s\n", e.msg), EXIT_USAGE;
    lab_env_default(&env);
    struct sigaction sa = {.sa_handler = on_signal}, old[3];
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; i++)
        sigaction(sigs[i], &sa, &old[i]);
    a.spec.cancel = &up_interrupted;
    r = lab_up(&env, &a.spec, id, &e);
    for (int i = 0; i < 3; i++)
        sigaction(sigs[i], &old[i], NULL);
    if (r)
        return fail("up", &e);
    printf("lab %s is up: %d hosts in %d AZs; inventory %s/inventory.yaml\n", id, a.spec.hosts,
           a.spec.azs, a.dir);
    return 0;
}

static int cmd_down(int argc, char **argv)
{
    static const int allowed[] = {OPT_DIR, 0};
    struct args a = {0};
    struct lab_env env;
    struct nerr e;
    int r = parse("down", argc, argv, allowed, &a);
    if (r)
        return r > 0 ? 0 : EXIT_USAGE;
    if (a.n_pos) {
        fprintf(stderr, "nines lab down: unexpected argument '%s'\n", a.pos[0]);
        return EXIT_USAGE;
    }
    lab_env_default(&env);
    if (lab_down(&env, a.dir, &e))
        return fail("down", &e);
    return 0;
}

static const char *power_word(enum power_state s)
{
    return s == POWER_ON ? "on" : s == POWER_OFF ? "off" : "unknown";
}

static int cmd_status(int argc, char **argv)
{
    static const int allowed[] = {OPT_DIR, OPT_JSON, OPT_TIMEOUT, 0};
    struct args a = {.timeout_ms = 3000};
    struct lab_env env;
    struct nerr e;
    struct lab *lab = NULL;
    struct lab_host_status *st = NULL;
    int rc = 1;
    int r = parse("status", argc, argv, allowed, &a);
    if (r)
        return r > 0 ? 0 : EXIT_USAGE;
    if (a.n_pos) {
        fprintf(stderr, "nines lab status: unexpected argument '%s'\n", a.pos[0]);
        return EXIT_USAGE;
    }
    lab_env_default(&env);
    if (lab_open(a.dir, &lab, &e))
        return fail("status", &e);
    size_t n = lab->inv->n_hosts;
    if (!(st = calloc(n ? n : 1, sizeof *st))) {
        fprintf(stderr, "nines lab status: out of memory\n");
        goto out;
    }
    if (lab_status(&env, lab, st, n, a.timeout_ms, &e)) {
        rc = fail("status", &e);
        goto out;
    }
    if (a.json) {
        json_t *hosts = json_array();
        for (size_t i = 0; i < n; i++) {
            const struct inv_host *h = st[i].host;
            json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b}", "name", h->name,
                                  "address", h->address, "az", h->az, "rack", h->rack, "netns",
                                  h->power.netns, "power", power_word(st[i].power), "power_detail",
                                  st[i].power_detail, "ssh", st[i].ssh_ok);
            if (o && !st[i].ssh_ok)
                json_object_set_new(o, "ssh_error", json_string(st[i].ssh_error));
            if (o && h->power.fs) {
                json_object_set_new(o, "fs", json_string(power_fs_state_name(st[i].fs)));
                json_object_set_new(o, "fs_path", json_string(h->power.fs));
                json_object_set_new(o, "fs_detail", json_string(st[i].fs_detail));
            }
            json_array_append_new(hosts, o);
        }
        json_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "lab", lab->id, "dir", lab->dir,
                                "subnet", lab->subnet, "bridge", lab->bridge, "inventory",
                                lab->inv->path, "hosts", hosts);
        char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        json_decref(doc);
        if (!text) {
            fprintf(stderr, "nines lab status: out of memory\n");
            goto out;
        }
        printf("%s\n", text);
        free(text);
    } else {
        printf("lab %s  dir %s  subnet %s  bridge %s\n", lab->id, lab->dir, lab->subnet,
               lab->bridge);
        printf("%-8s %-16s %-6s %-6s %-6s %-9s %s\n", "HOST", "ADDRESS", "AZ", "RACK", "POWER",
               "FS", "SSH");
        for (size_t i = 0; i < n; i++) {
            const struct inv_host *h = st[i].host;
            printf("%-8s %-16s %-6s %-6s %-6s %-9s %s%s%s\n", h->name, h->address, h->az, h->rack,
                   power_word(st[i].power), h->power.fs ? power_fs_state_name(st[i].fs) : "-",
                   st[i].ssh_ok ? "ok" : "no", st[i].ssh_ok ? "" : ": ",
                   st[i].ssh_ok ? "" : st[i].ssh_error);
        }
    }
    rc = 0;
out:
    free(st);
    lab_close(lab);
    return rc;
}

static int cmd_power(int argc, char **argv)
{
    static const int allowed[] = {OPT_DIR, OPT_WAIT, OPT_MODE, 0};
    struct args a = {.wait_ms = LAB_SSH_WAIT_MS};
    struct lab_env env;
    struct nerr e;
    struct lab *lab = NULL;
    int r = parse("power", argc, argv, allowed, &a);
    if (r)
        return r > 0 ? 0 : EXIT_USAGE;
    if (a.n_pos != 2 || (strcmp(a.pos[0], "on") && strcmp(a.pos[0], "off"))) {
        fprintf(stderr, "nines lab power: expected `off HOST` or `on HOST`\n");
        return EXIT_USAGE;
    }
    int on = !strcmp(a.pos[0], "on");
    lab_env_default(&env);
    if (lab_open(a.dir, &lab, &e))
        return fail("power", &e);
    if (on && a.mode != POWER_OFF_DEFAULT) {
        lab_close(lab);
        fprintf(stderr, "nines lab power: --mode is for power off\n");
        return EXIT_USAGE;
    }
    r = lab_power(&env, lab, a.pos[1], on, a.mode, a.wait_ms, &e);
    lab_close(lab);
    if (r)
        return fail("power", &e);
    printf("%s is %s\n", a.pos[1], on ? "on" : "off");
    return 0;
}

/* 128 + the signal's number, as a shell reports a death by signal. */
static int signal_status(const char *name)
{
    for (int s = 1; s < NSIG; s++) {
        const char *abbrev = sigabbrev_np(s);
        if (abbrev && !strcmp(abbrev, name))
            return 128 + s;
    }
    return EXIT_SSH;
}

static int write_all(FILE *f, const char *p, size_t n)
{
    return fwrite(p, 1, n, f) == n && fflush(f) == 0 ? 0 : -1;
}

static int cmd_exec(int argc, char **argv)
{
    static const int allowed[] = {OPT_DIR, OPT_TIMEOUT, 0};
    struct args a = {.timeout_ms = 60000};
    struct nerr e;
    struct lab *lab = NULL;
    struct ssh_result res = {0};
    /* Everything after "--" is the command, untouched by option parsing. */
    int dash = -1;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--")) {
            dash = i;
            break;
        }
    if (dash < 0 || dash == argc - 1) {
        for (int i = 1; i < argc; i++)
            if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
                return usage(stdout), 0;
        fprintf(stderr, "nines lab exec: expected HOST --dir DIR -- CMD [ARG...]\n");
        return EXIT_USAGE;
    }
    int r = parse("exec", dash, argv, allowed, &a);
    if (r)
        return r > 0 ? 0 : EXIT_USAGE;
    if (a.n_pos != 1) {
        fprintf(stderr, "nines lab exec: expected exactly one HOST before --\n");
        return EXIT_USAGE;
    }
    const char *host = a.pos[0];
    if (lab_open(a.dir, &lab, &e)) {
        fail("exec", &e);
        return EXIT_SSH;
    }
    r = lab_exec(lab, host, (const char *const *)argv + dash + 1, a.timeout_ms, &res, &e);
    lab_close(lab);
    if (r) {
        ssh_result_free(&res);
        fail("exec", &e);
        return r == NERR_TIMEOUT ? EXIT_TIMEOUT : EXIT_SSH;
    }
    int status;
    if (write_all(stdout, res.out, res.out_len) || write_all(stderr, res.err, res.err_len))
        status = EXIT_SSH;
    else if (res.exit_status >= 0)
        status = res.exit_status;
    else if (res.exit_signal[0])
        status = signal_status(res.exit_signal);
    else
        status = EXIT_SSH;
    if (res.out_truncated || res.err_truncated)
        fprintf(stderr, "nines lab exec: output truncated to %zu bytes per stream\n",
                (size_t)SSH_OUTPUT_MAX);
    ssh_result_free(&res);
    return status;
}

int lab_main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        usage(stdout);
        return 0;
    }
    /* The subcommand becomes argv[0] of its own parse. */
    if (!strcmp(sub, "up"))
        return cmd_up(argc - 1, argv + 1);
    if (!strcmp(sub, "down"))
        return cmd_down(argc - 1, argv + 1);
    if (!strcmp(sub, "status"))
        return cmd_status(argc - 1, argv + 1);
    if (!strcmp(sub, "power"))
        return cmd_power(argc - 1, argv + 1);
    if (!strcmp(sub, "exec"))
        return cmd_exec(argc - 1, argv + 1);
    fprintf(stderr, "nines lab: unknown subcommand '%s'\n", sub);
    usage(stderr);
    return EXIT_USAGE;
}
