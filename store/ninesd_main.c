/*
 * ninesd — the nines store node.
 *
 *   ninesd --cluster FILE --node ID [--log-level debug|info|warn|error]
 *          [--http-threads N] [--unsafe-ack-before-sync]
 *
 * Runs in the foreground, logs to stderr, stops cleanly on SIGTERM or SIGINT
 * (answers the requests in flight, closes WALs and LMDB). Exit status: 0 after
 * a clean stop, 1 when the node cannot start (the reason is logged), 2 for a
 * bad command line.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "lib/log.h"
#include "net/http.h"
#include "proto/clusterfile.h"
#include "store/node.h"
#include "store/version.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ninesd --cluster FILE --node ID [options]\n"
            "\n"
            "Runs node ID of the cluster described by FILE (YAML; see docs/cluster-file.md).\n"
            "\n"
            "options:\n"
            "  --cluster FILE            the cluster file\n"
            "  --node ID                 this node's id in the cluster file\n"
            "  --log-level LEVEL         debug, info (default), warn or error\n"
            "  --http-threads N          API server threads (default: number of CPUs)\n"
            "  --unsafe-ack-before-sync  TEST ONLY: acknowledge writes before they are durable\n"
            "  --version                 print the version and exit\n"
            "  --help                    this text\n");
}

/* Descriptors the configuration can need at once: the API's connection
 * limit (store/http.c: 4096), two per peer (inbound and outbound), the
 * partitions this node may hold (the same budget as its LMDB databases,
 * node.c: max_tables * 8) with the files of each (its group directory's
 * HARDSTATE or SNAPSHOT while written, a snapshot in flight), and a base for
 * LMDB, node log segments, libcurl and logging. */
static rlim_t fds_needed(const struct cluster_conf *conf)
{
    return (rlim_t)4096 + 2 * (rlim_t)conf->nnodes + 2 * 8 * (rlim_t)conf->max_tables + 512;
}

/* Process hygiene at start-up (docs/security.md): files private to the
 * node's user, enough descriptors for the configuration, and a warning when
 * the API is open to anyone on the network. */
static void harden_process(const struct cluster_conf *conf, const struct cluster_node *self)
{
    /* Data directories 0700, files 0600, whoever creates them (LMDB, the
     * node log, group files). */
    umask(077);
    struct rlimit rl;
    rlim_t want = fds_needed(conf);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t was = rl.rlim_cur;
        if (rl.rlim_cur < want) {
            rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
                rl.rlim_cur = was;
        }
        if (rl.rlim_cur < want)
            log_warn("open files limit %llu is below the %llu this configuration may need "
                     "(hard limit %llu): raise it (ulimit -n, LimitNOFILE=)",
                     (unsigned long long)rl.rlim_cur, (unsigned long long)want,
                     (unsigned long long)rl.rlim_max);
        else
            log_info("open files limit %llu (was %llu; this configuration needs up to %llu)",
                     (unsigned long long)rl.rlim_cur, (unsigned long long)was,
                     (unsigned long long)want);
    }
    if (conf->auth == CLUSTER_AUTH_NONE && self) {
        const char *h = self->api_host ? self->api_host : "";
        struct in_addr a4;
        struct in6_addr a6;
        int loopback = !strcmp(h, "localhost") ||
                       (inet_pton(AF_INET, h, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127) ||
                       (inet_pton(AF_INET6, h, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6));
        if (!loopback)
            log_warn("auth: none, and the API listens on %s (not loopback): anyone who reaches "
                     "it can read and write every table; set auth: sigv4 in %s",
                     self->api, conf->path);
    }
}

int main(int argc, char **argv)
{
    const char *cluster = NULL, *node_id = NULL, *level = "info";
    int http_threads = 0, unsafe = 0;
    static const struct option longopts[] = {
        {"cluster", required_argument, NULL, 'c'},
        {"node", required_argument, NULL, 'n'},
        {"log-level", required_argument, NULL, 'l'},
        {"http-threads", required_argument, NULL, 't'},
        {"unsafe-ack-before-sync", no_argument, NULL, 'U'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "c:n:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            cluster = optarg;
            break;
        case 'n':
            node_id = optarg;
            break;
        case 'l':
            level = optarg;
            break;
        case 't':
            http_threads = atoi(optarg);
            if (http_threads < 1 || http_threads > 256) {
                fprintf(stderr, "ninesd: --http-threads must be between 1 and 256\n");
                return 2;
            }
            break;
        case 'U':
            unsafe = 1;
            break;
        case 'V':
            printf("ninesd %s\n", nines_version());
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ninesd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!cluster || !node_id) {
        fprintf(stderr, "ninesd: --cluster and --node are required\n");
        usage(stderr);
        return 2;
    }
    enum log_level lv = LOG_INFO;
    if (!strcmp(level, "debug"))
        lv = LOG_DEBUG;
    else if (!strcmp(level, "warn"))
        lv = LOG_WARN;
    else if (!strcmp(level, "error"))
        lv = LOG_ERROR;
    else if (strcmp(level, "info")) {
        fprintf(stderr, "ninesd: unknown log level '%s'\n", level);
        return 2;
    }
    log_init("ninesd", lv);
    /* Before any thread: the catalog sync and the forwarder use libcurl. */
    if (http_global_init()) {
        fprintf(stderr, "ninesd: cannot initialise libcurl\n");
        return 1;
    }

    /* Signals are taken synchronously by this thread (sigwait); every other
     * thread inherits the blocked mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct nerr err = {0};
    struct cluster_conf *conf = NULL;
    if (cluster_conf_load(cluster, &conf, &err)) {
        fprintf(stderr, "ninesd: %s\n", err.msg);
        return 1;
    }
    harden_process(conf, cluster_conf_node(conf, node_id));
    /* An sftp:// archive's key and known_hosts, for every archive_open of
     * this process (archive.h), set before any thread reads them. */
    if (conf->archive_ssh_key)
        setenv("NINES_ARCHIVE_SSH_KEY", conf->archive_ssh_key, 1);
    if (conf->archive_known_hosts)
        setenv("NINES_ARCHIVE_KNOWN_HOSTS", conf->archive_known_hosts, 1);
    struct node *n = NULL;
    struct node_options no = {.conf = conf, .node_id = node_id, .http_threads = http_threads,
                              .unsafe_ack_before_sync = unsafe};
    if (node_start(&no, &n, &err)) {
        log_error("node %s cannot start: %s", node_id, err.msg);
        cluster_conf_free(conf);
        return 1;
    }
    const struct cluster_node *self = cluster_conf_node(conf, node_id);
    log_info("node %s of cluster %s serving the DynamoDB API on %s (auth: %s), data in %s",
             node_id, conf->name, self->api, conf->auth ? "sigv4" : "none", self->data);
    int sig = 0;
    do {
        sigwait(&set, &sig);
    } while (sig == SIGHUP);
    log_info("signal %d: stopping", sig);
    node_stop(n);
    cluster_conf_free(conf);
    log_info("stopped");
    return 0;
}
