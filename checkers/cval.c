/* cval.c — self-checking values (see cval.h). */
#include "checkers/cval.h"

#include <stdio.h>
#include <string.h>

#include "lib/crc32c.h"

static uint32_t body_crc(const char *key, size_t key_len, const char *body, size_t len)
{
    uint32_t c = crc32c(0, key, key_len);
    c = crc32c(c, ":", 1);
    return crc32c(c, body, len);
}

size_t cval_format(char *buf, size_t size, const char *key, size_t key_len, uint64_t n,
                   size_t padding)
{
    char body[64];
    int bl = snprintf(body, sizeof body, "v%llu%s", (unsigned long long)n, padding ? "." : "");
    size_t need = (size_t)bl + padding + 9;
    if (size < need + 1) {
        if (size)
            buf[0] = '\0';
        return need;
    }
    memcpy(buf, body, (size_t)bl);
    memset(buf + bl, 'x', padding);
    uint32_t c = body_crc(key, key_len, buf, (size_t)bl + padding);
    snprintf(buf + bl + padding, 10, "-%08x", c);
    return need;
}

enum cval_status cval_verify(const char *key, size_t key_len, const char *v, size_t len)
{
    if (len < 11 || v[0] != 'v' || v[1] < '0' || v[1] > '9' || v[len - 9] != '-')
        return CVAL_PLAIN;
    size_t body = len - 9;
    uint32_t want = 0;
    for (size_t i = body + 1; i < len; i++) {
        char c = v[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return CVAL_BAD;
        want = want << 4 | (uint32_t)d;
    }
    size_t i = 1;
    while (i < body && v[i] >= '0' && v[i] <= '9')
        i++;
    if (i < body && v[i] != '.')
        return CVAL_BAD;
    if (memchr(v, '-', body))
        return CVAL_BAD;
    return body_crc(key, key_len, v, body) == want ? CVAL_OK : CVAL_BAD;
}
