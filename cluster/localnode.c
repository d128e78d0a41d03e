#include "cluster/localnode.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/proc.h"
#include "net/http.h"

int localnode_ninesd_path(char *buf, size_t cap, struct nerr *err)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0)
        return nerr_sys(err, errno, "readlink /proc/self/exe");
    self[n] = 0;
    if (snprintf(buf, cap, "%s/ninesd", dirname(self)) >= (int)cap)
        return nerr_set(err, NERR_INVALID, "path too long");
    if (access(buf, X_OK) != 0)
        return nerr_sys(err, errno, "%s", buf);
    return 0;
}

/* The kernel's ephemeral range (the ports connect() takes as local ports). */
static void ephemeral_range(int *lo, int *hi)
{
    *lo = 32768;
    *hi = 60999;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");
    if (f) {
        int a, b;
        if (fscanf(f, "%d %d", &a, &b) == 2 && a > 0 && b >= a && b <= 65535) {
            *lo = a;
            *hi = b;
        }
        fclose(f);
    }
}

/* 0 when 127.0.0.1:port can be bound now (no SO_REUSEADDR, so a port in
 * TIME_WAIT does not count as free). */
static int try_bind(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0)
        return -1;
    int rc = bind(fd, (struct sockaddr *)&a, sizeof a);
    close(fd);
    return rc;
}

int localnode_free_port(int *port, struct nerr *err)
{
    int lo, hi, from, to;
    ephemeral_range(&lo, &hi);
    if (lo - 1 >= 12000) {
        from = 10000;
        to = lo - 1;
    } else {
        from = hi + 1;
        to = 65535;
    }
    if (to - from < 1000)
        return nerr_set(err, NERR_LIMIT, "no port range outside the ephemeral range %d-%d", lo, hi);
    unsigned seed = (unsigned)getpid() ^ (unsigned)time(NULL);
    for (int i = 0; i < 1000; i++) {
        int p = from + (int)(rand_r(&seed) % (unsigned)(to - from + 1));
        if (try_bind(p) == 0) {
            *port = p;
            return 0;
        }
    }
    return nerr_set(err, NERR_BUSY, "no free port in %d-%d", from, to);
}

/* 1 when url answers 200 within a second. */
static int healthy(const char *url)
{
    struct http_client *c;
    struct http_response rs = {0};
    struct http_request rq = {.method = "GET", .url = url, .timeout_ms = 1000};
    if (http_client_new(&c, NULL))
        return 0;
    int ok = !http_call(c, &rq, &rs, NULL) && rs.status == 200;
    http_response_free(&rs);
    http_client_free(c);
    return ok;
}

int localnode_start(const char *ninesd, const char *cluster_file, const char *node_id,
                    const char *api_hostport, const char *log_path, char *const extra[],
                    int wait_ms, struct localnode *out, struct nerr *err)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)ninesd;
    argv[argc++] = "--cluster";
    argv[argc++] = (char *)cluster_file;
    argv[argc++] = "--node";
    argv[argc++] = (char *)node_id;
    for (int i = 0; extra && extra[i] && argc < 30; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    int logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0)
        return nerr_sys(err, errno, "%s", log_path);
    struct proc_spec ps = {.argv = argv,
                           .in = {PROC_IO_NULL, -1},
                           .out = {PROC_IO_FD, logfd},
                           .err = {PROC_IO_STDOUT, -1}};
    pid_t pid;
    int rc = proc_spawn(&ps, &pid, err);
    close(logfd);
    if (rc)
        return rc;
    out->pid = pid;
    snprintf(out->url, sizeof out->url, "http://%s/", api_hostport);
    for (int waited = 0; waited <= wait_ms; waited += 20) {
        int st;
        if (proc_wait(pid, 0, &st, NULL) == 0) {
            out->pid = 0;
            return nerr_set(err, NERR_IO, "ninesd exited during start-up (status %d); see %s",
                            proc_status_code(st), log_path);
        }
        if (healthy(out->url))
            return 0;
        usleep(20000);
    }
    localnode_kill(out);
    return nerr_set(err, NERR_TIMEOUT, "ninesd did not answer on %s within %d ms; see %s",
                    api_hostport, wait_ms, log_path);
}

int localnode_stop(struct localnode *n, int wait_ms)
{
    int st;
    if (n->pid <= 0)
        return -1;
    int rc = proc_terminate(n->pid, wait_ms, 0, &st, NULL);
    n->pid = 0;
    return rc ? -1 : proc_status_code(st);
}

void localnode_kill(struct localnode *n)
{
    if (n->pid <= 0)
        return;
    proc_kill(n->pid, NULL, NULL);
    n->pid = 0;
}
