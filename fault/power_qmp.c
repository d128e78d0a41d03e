/*
 * fault/power_qmp.c — the `qmp` power driver: a QEMU QMP unix socket
 * (contract in power.h).
 */
#include "fault/power_driver.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/clock.h"

#define QMP_LINE_MAX 65536
#define QMP_MAX_MESSAGES 256 /* events skipped while waiting for one reply */

/* --- qmp driver ------------------------------------------------------------ */

struct qmp {
    int fd;
    int64_t deadline;
    char buf[QMP_LINE_MAX];
    size_t len;
    const struct inv_host *h;
};

/* 0 connected; NERR_CLOSED when nothing listens (QEMU is not running). */
static int qmp_connect(struct qmp *q, const struct inv_host *h, struct nerr *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    q->fd = -1;
    q->len = 0;
    q->h = h;
    q->deadline = clock_mono_ms() + power_timeout_ms(h);
    if (strlen(h->power.socket) >= sizeof sa.sun_path)
        return nerr_set(err, NERR_INVALID, "host '%s': socket path too long", h->name);
    strcpy(sa.sun_path, h->power.socket);
    q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (q->fd < 0)
        return nerr_sys(err, errno, "socket");
    if (connect(q->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(q->fd);
        q->fd = -1;
        if (e == ENOENT || e == ECONNREFUSED)
            return nerr_set(err, NERR_CLOSED, "host '%s': nothing listens on %s", h->name,
                            h->power.socket);
        return nerr_sys(err, e, "host '%s': connect %s", h->name, h->power.socket);
    }
    return 0;
}

/* Next JSON object, one per line as QEMU writes them. NERR_CLOSED at EOF. */
static int qmp_read(struct qmp *q, json_t **out, struct nerr *err)
{
    for (;;) {
        char *nl = memchr(q->buf, '\n', q->len);
        if (nl) {
            size_t n = (size_t)(nl - q->buf) + 1;
            json_error_t je;
            json_t *j = json_loadb(q->buf, n, 0, &je);
            memmove(q->buf, q->buf + n, q->len - n);
            q->len -= n;
            if (!j || !json_is_object(j)) {
                json_decref(j);
                return nerr_set(err, NERR_CORRUPT,
                                "host '%s': QMP sent a line that is not a "
                                "JSON object",
                                q->h->name);
            }
            *out = j;
            return 0;
        }
        if (q->len == sizeof q->buf)
            return nerr_set(err, NERR_LIMIT, "host '%s': QMP message longer than %d bytes",
                            q->h->name, QMP_LINE_MAX);
        int64_t left = q->deadline - clock_mono_ms();
        if (left <= 0)
            return nerr_set(err, NERR_TIMEOUT, "host '%s': no QMP reply within %ld ms", q->h->name,
                            power_timeout_ms(q->h));
        struct pollfd pf = {.fd = q->fd, .events = POLLIN};
        int pr = poll(&pf, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (pr < 0 && errno != EINTR)
            return nerr_sys(err, errno, "poll");
        if (pr <= 0)
            continue;
        ssize_t r = read(q->fd, q->buf + q->len, sizeof q->buf - q->len);
        if (r < 0 && errno != EINTR && errno != EAGAIN)
            return nerr_sys(err, errno, "host '%s': read QMP", q->h->name);
        if (r == 0)
            return nerr_set(err, NERR_CLOSED, "host '%s': QMP connection closed", q->h->name);
        if (r > 0)
            q->len += (size_t)r;
    }
}

/* Sends {"execute": cmd} and waits for its return (events skipped). *ret,
 * when given, gets the "return" value (a new reference). */
static int qmp_exec(struct qmp *q, const char *cmd, json_t **ret, struct nerr *err)
{
    char line[128];
    int n = snprintf(line, sizeof line, "{\"execute\": \"%s\"}\n", cmd);
    for (int off = 0; off < n;) {
        ssize_t w = send(q->fd, line + off, (size_t)(n - off), MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return nerr_sys(err, errno, "host '%s': send QMP %s", q->h->name, cmd);
        }
        off += (int)w;
    }
    for (int i = 0; i < QMP_MAX_MESSAGES; i++) {
        json_t *j = NULL;
        int rc = qmp_read(q, &j, err);
        if (rc)
            return rc;
        json_t *r = json_object_get(j, "return");
        json_t *e = json_object_get(j, "error");
        if (r) {
            if (ret)
                *ret = json_incref(r);
            json_decref(j);
            return 0;
        }
        if (e) {
            const char *desc = json_string_value(json_object_get(e, "desc"));
            rc = nerr_set(err, NERR_CORRUPT, "host '%s': QMP %s failed: %s", q->h->name, cmd,
                          desc ? desc : "(no description)");
            json_decref(j);
            return rc;
        }
        json_decref(j); /* an asynchronous event */
    }
    return nerr_set(err, NERR_LIMIT, "host '%s': no reply to QMP %s among %d messages", q->h->name,
                    cmd, QMP_MAX_MESSAGES);
}

/* Connect, greeting, capabilities negotiation. */
static int qmp_open(struct qmp *q, const struct inv_host *h, struct nerr *err)
{
    json_t *g = NULL;
    int rc;
    if ((rc = qmp_connect(q, h, err)))
        return rc;
    if ((rc = qmp_read(q, &g, err)))
        goto fail;
    if (!json_object_get(g, "QMP")) {
        json_decref(g);
        rc = nerr_set(err, NERR_CORRUPT, "host '%s': %s did not greet with QMP", h->name,
                      h->power.socket);
        goto fail;
    }
    json_decref(g);
    if ((rc = qmp_exec(q, "qmp_capabilities", NULL, err)))
        goto fail;
    return 0;
fail:
    close(q->fd);
    q->fd = -1;
    return rc;
}

static int qmp_off(const struct power_env *env, const struct inv_host *h, enum power_off_mode mode,
                   struct nerr *err)
{
    struct qmp *q = malloc(sizeof *q);
    if (!q)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    int rc = qmp_open(q, h, err);
    if (rc == NERR_CLOSED) {
        rc = 0; /* no QEMU: already off */
        nerr_clear(err);
    } else if (rc == 0) {
        rc = qmp_exec(q, "quit", NULL, err);
        /* QEMU may exit before its reply reaches us. */
        if (rc == NERR_CLOSED) {
            rc = 0;
            nerr_clear(err);
        }
        close(q->fd);
    }
    free(q);
    return rc;
}

static int qmp_on(const struct power_env *env, const struct inv_host *h, struct nerr *err)
{
    struct qmp *q = malloc(sizeof *q);
    if (!q)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    int rc = qmp_open(q, h, err);
    if (rc == NERR_CLOSED) {
        if (h->power.start) {
            char out[POWER_OUT_MAX + 1], eo[POWER_OUT_MAX + 1];
            nerr_clear(err);
            rc = power_run_template(h, "start", h->power.start, out, eo, 1, err);
        } else {
            rc = nerr_set(err, NERR_CLOSED,
                          "host '%s': QEMU is not running (nothing listens on %s) and the "
                          "inventory gives no start command",
                          h->name, h->power.socket);
        }
    } else if (rc == 0) {
        /* Reset is the power cycle; cont resumes a guest that was stopped. */
        if (!(rc = qmp_exec(q, "system_reset", NULL, err)))
            rc = qmp_exec(q, "cont", NULL, err);
        close(q->fd);
    }
    free(q);
    return rc;
}

static int qmp_status(const struct power_env *env, const struct inv_host *h,
                      enum power_state *state, char *detail, size_t cap, struct nerr *err)
{
    json_t *r = NULL;
    struct qmp *q = malloc(sizeof *q);
    if (!q)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    int rc = qmp_open(q, h, err);
    if (rc == NERR_CLOSED) {
        nerr_clear(err);
        *state = POWER_OFF;
        snprintf(detail, cap, "not running");
        rc = 0;
    } else if (rc == 0) {
        if (!(rc = qmp_exec(q, "query-status", &r, err))) {
            const char *s = json_string_value(json_object_get(r, "status"));
            json_t *run = json_object_get(r, "running");
            if (!s || !json_is_boolean(run)) {
                rc = nerr_set(err, NERR_CORRUPT,
                              "host '%s': query-status reply lacks "
                              "status/running",
                              h->name);
            } else {
                *state = json_is_true(run) ? POWER_ON : POWER_OFF;
                snprintf(detail, cap, "%s", s);
            }
            json_decref(r);
        }
        close(q->fd);
    }
    free(q);
    return rc;
}

static int qmp_check(const struct power_env *env, const struct inv_host *h, struct nerr *err)
{
    return power_check_command_template(h, "start", h->power.start, err);
}

const struct power_driver power_driver_qmp = {
    .name = "qmp",
    .id = INV_DRIVER_QMP,
    .check = qmp_check,
    .off = qmp_off,
    .on = qmp_on,
    .status = qmp_status,
};
