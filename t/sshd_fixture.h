/*
 * sshd_fixture.h — a private OpenSSH sshd on a free 127.0.0.1 port for C
 * tests that need a real SSH server (test_ssh.c, test_archive_sftp.c).
 *
 *   sshd_start(dir, port, hostkey, extra, &pid)  writes dir/sshd_config
 *       (dir/hostkey, dir/authorized_keys, internal-sftp, key auth only,
 *       plus the extra lines), runs `sshd -D -e -f` logging to
 *       dir/sshd.log, and waits until it accepts connections (5 s);
 *   sshd_stop(&pid)  a power-off as a host sees it: the listener and every
 *       process it forked (per-connection sshd, their sftp children) get
 *       SIGKILL at once, found by their parent pid; nothing else.
 *
 * Header-only, like tap.h: static inline, one test file per process.
 */
#ifndef NINES_T_SSHD_FIXTURE_H
#define NINES_T_SSHD_FIXTURE_H

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SSHD "/usr/sbin/sshd"

static inline int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int run(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static inline int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &l) != 0) {
        close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static inline int port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
    close(fd);
    return rc == 0;
}

static inline int sshd_start(const char *dir, int port, const char *hostkey, const char *extra,
                             pid_t *pid_out)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/sshd_config", dir);
    FILE *c = fopen(path, "w");
    if (!c)
        return -1;
    fprintf(c,
            "Port %d\nListenAddress 127.0.0.1\nHostKey %s/%s\nAuthorizedKeysFile "
            "%s/authorized_keys\nPermitRootLogin yes\nUsePAM no\nStrictModes no\n"
            "PidFile %s/sshd.pid\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "Subsystem sftp internal-sftp\nLogLevel ERROR\n%s",
            port, dir, hostkey, dir, dir, extra ? extra : "");
    fclose(c);
    pid_t pid = fork();
    if (pid == 0) {
        char log[256];
        snprintf(log, sizeof(log), "%s/sshd.log", dir);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execl(SSHD, SSHD, "-D", "-e", "-f", path, (char *)NULL);
        _exit(127);
    }
    *pid_out = pid;
    for (int i = 0; i < 100; i++) {
        if (port_open(port))
            return 0;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            *pid_out = 0;
            return -1;
        }
        usleep(50000);
    }
    return -1;
}

static inline pid_t ppid_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    int ppid = -1;
    if (!p || sscanf(p + 1, " %*c %d", &ppid) != 1)
        return -1;
    return ppid;
}

static inline void sshd_stop(pid_t *pidp)
{
    if (*pidp <= 0)
        return;
    pid_t victims[256];
    int n = 0;
    victims[n++] = *pidp;
    for (int round = 0; round < 4; round++) {
        DIR *d = opendir("/proc");
        struct dirent *de;
        while (d && (de = readdir(d)) && n < 256) {
            pid_t pid = (pid_t)atoi(de->d_name);
            if (pid <= 0)
                continue;
            pid_t pp = ppid_of(pid);
            int parent_is_victim = 0, known = 0;
            for (int i = 0; i < n; i++) {
                parent_is_victim |= victims[i] == pp;
                known |= victims[i] == pid;
            }
            if (parent_is_victim && !known)
                victims[n++] = pid;
        }
        if (d)
            closedir(d);
    }
    for (int i = 0; i < n; i++)
        kill(victims[i], SIGKILL);
    int st;
    waitpid(*pidp, &st, 0);
    *pidp = 0;
}

#endif
