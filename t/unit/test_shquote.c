/* test_shquote.c — shquote against exact expectations and against a real
 * /bin/sh: every hostile argument must come back byte-identical as exactly
 * one argv element, and nothing it contains may run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net/shquote.h"
#include "t/tap.h"

static char *quote1(const char *s)
{
    char *q = NULL;
    struct nerr e;
    if (shquote_arg(s, &q, &e) != 0)
        return NULL;
    return q;
}

/* Runs `sh -c "printf '%s\0' <args quoted>"` and returns the raw output. */
static char *sh_roundtrip(const char *const argv[], size_t *len)
{
    size_t n = 0;
    while (argv[n])
        n++;
    const char **full = calloc(n + 3, sizeof(*full));
    full[0] = "printf";
    full[1] = "%s\\0";
    for (size_t i = 0; i < n; i++)
        full[i + 2] = argv[i];
    char *cmd = NULL;
    struct nerr e;
    if (shquote_join(full, &cmd, &e) != 0) {
        free(full);
        return NULL;
    }
    free(full);
    char script[] = "/tmp/shq-test-XXXXXX";
    int sfd = mkstemp(script);
    if (sfd < 0) {
        free(cmd);
        return NULL;
    }
    size_t clen = strlen(cmd);
    int wrote = write(sfd, cmd, clen) == (ssize_t)clen;
    close(sfd);
    int fds[2];
    if (!wrote || pipe(fds) != 0) {
        unlink(script);
        free(cmd);
        return NULL;
    }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        /* Through a script file rather than sh -c: Linux caps one exec
         * argument at 128 KiB, and the long argument is bigger. */
        execl("/bin/sh", "sh", script, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t cap = 1 << 16, used = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (used == cap)
            buf = realloc(buf, cap *= 2);
        ssize_t r = read(fds[0], buf + used, cap - used);
        if (r <= 0)
            break;
        used += (size_t)r;
    }
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    unlink(script);
    free(cmd);
    *len = used;
    return buf;
}

/* The expected printf output: each argument followed by NUL. */
static int same_args(const char *const argv[], const char *got, size_t len)
{
    size_t off = 0;
    for (size_t i = 0; argv[i]; i++) {
        size_t n = strlen(argv[i]) + 1;
        if (off + n > len || memcmp(got + off, argv[i], n) != 0)
            return 0;
        off += n;
    }
    return off == len;
}

int main(void)
{
    char *q;

    q = quote1("");
    is(q, "''", "empty string quotes to ''");
    free(q);
    q = quote1("plain-word_1.2/x:y,z@h%+");
    is(q, "plain-word_1.2/x:y,z@h%+", "safe characters stay bare");
    free(q);
    q = quote1("a b");
    is(q, "'a b'", "space gets quoted");
    free(q);
    q = quote1("it's");
    is(q, "'it'\\''s'", "single quote becomes '\\''");
    free(q);
    q = quote1("A=1");
    is(q, "'A=1'", "'=' is quoted so a first word is never an assignment");
    free(q);
    q = quote1("~root");
    is(q, "'~root'", "tilde is quoted");
    free(q);

    const char *joined[] = {"echo", "a b", "", "--x", NULL};
    char *j = NULL;
    is_int(shquote_join(joined, &j, NULL), 0, "join succeeds");
    is(j, "echo 'a b' '' --x", "join separates by one space");
    free(j);

    struct nerr e;
    const char *none[] = {NULL};
    j = (char *)1;
    is_int(shquote_join(none, &j, &e), NERR_INVALID, "empty argv is NERR_INVALID");
    ok(j == NULL, "out is NULL on error");

    char marker[64];
    snprintf(marker, sizeof(marker), "/tmp/PWNED-shq-%d", (int)getpid());
    unlink(marker);
    char inj1[128], inj2[128], inj3[128];
    snprintf(inj1, sizeof(inj1), "; touch %s", marker);
    snprintf(inj2, sizeof(inj2), "$(touch %s)", marker);
    snprintf(inj3, sizeof(inj3), "`touch %s`", marker);
    char *longarg = malloc(200001);
    for (int i = 0; i < 200000; i++)
        longarg[i] = "ab'c $\n\"\\"[i % 9];
    longarg[200000] = '\0';

    const char *hostile[] = {
        "",        " ",       "a b  c",    "'",        "''",       "\"",       "\\",
        "it's",    "$(id)",   "`id`",      "${HOME}",  "$HOME",    inj1,       inj2,
        inj3,      "a|b",     "a&b",       "a&&b",     "x\ny",     "\n",       "*",
        "?",       "[a-z]*",  "-n",        "--help",   "-e",       "héllo ☃",  "\t",
        "a;b",     "!",       "#comment",  "~",        "a=b",      "(x)",      "{a,b}",
        "<in",     ">out",    "2>&1",      "\x01\x7f", longarg,    NULL,
    };
    for (size_t i = 0; hostile[i]; i++) {
        const char *one[] = {hostile[i], NULL};
        size_t len = 0;
        char *got = sh_roundtrip(one, &len);
        ok(got && same_args(one, got, len), "sh round trip of hostile argument %zu (%zu bytes)",
           i, strlen(hostile[i]));
        free(got);
    }
    size_t len = 0;
    char *got = sh_roundtrip(hostile, &len);
    ok(got && same_args(hostile, got, len), "all %d arguments together arrive as separate argv",
       (int)(sizeof(hostile) / sizeof(hostile[0]) - 1));
    free(got);
    struct stat st;
    ok(stat(marker, &st) != 0, "marker %s was never created", marker);
    unlink(marker);
    free(longarg);
    return done_testing();
}
