/*
 * sigv4.c — AWS Signature Version 4; the contract and the canonicalisation
 * rules are in sigv4.h. Source of the algorithm: AWS General Reference,
 * "Signature Version 4 signing process" (create a canonical request, create a
 * string to sign, calculate the signature), checked against AWS's published
 * test suite (t/unit/test_sigv4.c) and against the real AWS CLI.
 */
#include "proto/sigv4.h"

#include "lib/strbuf.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "lib/err.h"

#define ALGORITHM "AWS4-HMAC-SHA256"

/* ---- encoding ---- */

static const char HEX_UP[] = "0123456789ABCDEF";
static const char HEX_LO[] = "0123456789abcdef";

static int unreserved(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* RFC 3986 encoding of s[0..n) after decoding its %XX escapes, as SigV4 asks
 * for each path segment, query name and query value. */
static void sb_uri_encode(struct strbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            c = (unsigned char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        }
        if (unreserved(c)) {
            strbuf_ch(b, (char)c);
        } else {
            char esc[3] = {'%', HEX_UP[c >> 4], HEX_UP[c & 15]};
            strbuf_add(b, esc, 3);
        }
    }
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = HEX_LO[in[i] >> 4];
        out[2 * i + 1] = HEX_LO[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static void sha256_hex(const void *data, size_t n, char hex[65])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256(data, n, d);
    hex_encode(d, sizeof d, hex);
}

static void hmac(const void *key, size_t keylen, const char *msg, unsigned char out[32])
{
    unsigned int len = 32;
    HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out, &len);
}

/* ---- canonical URI ---- */

struct span {
    const char *p;
    size_t n;
};

static void sb_canonical_uri(struct strbuf *b, const char *path)
{
    if (!path || !*path)
        path = "/";
    size_t plen = strlen(path);
    /* Segments left after removing "", "." and resolving ".." (RFC 3986
     * section 5.2.4); a path has at most plen/2+1 segments. */
    size_t max = plen / 2 + 2, n = 0;
    struct span stack_segs[64];
    struct span *segs = max <= 64 ? stack_segs : malloc(max * sizeof *segs);
    if (!segs) {
        b->oom = 1;
        return;
    }
    const char *s = path;
    while (*s) {
        while (*s == '/')
            s++;
        const char *e = s;
        while (*e && *e != '/')
            e++;
        size_t len = (size_t)(e - s);
        if (len == 0 || (len == 1 && s[0] == '.')) {
            /* skip */
        } else if (len == 2 && s[0] == '.' && s[1] == '.') {
            if (n)
                n--;
        } else {
            segs[n].p = s;
            segs[n].n = len;
            n++;
        }
        s = e;
    }
    strbuf_ch(b, '/');
    for (size_t i = 0; i < n; i++) {
        if (i)
            strbuf_ch(b, '/');
        sb_uri_encode(b, segs[i].p, segs[i].n);
    }
    if (n && path[plen - 1] == '/')
        strbuf_ch(b, '/');
    if (segs != stack_segs)
        free(segs);
}

/* ---- canonical query ---- */

struct qpair {
    char *name, *value; /* encoded */
};

static int qpair_cmp(const void *a, const void *b)
{
    const struct qpair *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

static char *encode_dup(const char *s, size_t n)
{
    struct strbuf t = {0};
    sb_uri_encode(&t, s, n);
    char *out = NULL;
    if (strbuf_finish(&t, &out))
        return NULL;
    return out;
}

static void sb_canonical_query(struct strbuf *b, const char *q)
{
    if (!q || !*q)
        return;
    size_t cap = 1;
    for (const char *s = q; *s; s++)
        cap += *s == '&';
    struct qpair *v = calloc(cap, sizeof *v);
    size_t n = 0;
    if (!v) {
        b->oom = 1;
        return;
    }
    const char *s = q;
    while (*s) {
        const char *e = strchr(s, '&');
        if (!e)
            e = s + strlen(s);
        if (e > s) {
            const char *eq = memchr(s, '=', (size_t)(e - s));
            const char *ne = eq ? eq : e;
            v[n].name = encode_dup(s, (size_t)(ne - s));
            v[n].value = eq ? encode_dup(eq + 1, (size_t)(e - eq - 1)) : encode_dup("", 0);
            n++;
            if (!v[n - 1].name || !v[n - 1].value) {
                b->oom = 1;
                goto done;
            }
        }
        s = *e ? e + 1 : e;
    }
    qsort(v, n, sizeof *v, qpair_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i)
            strbuf_ch(b, '&');
        strbuf_str(b, v[i].name);
        strbuf_ch(b, '=');
        strbuf_str(b, v[i].value);
    }
done:
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
        free(v[i].value);
    }
    free(v);
}

/* ---- headers ---- */

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Appends value trimmed, with inner runs of blanks collapsed to one space. */
static void sb_header_value(struct strbuf *b, const char *v)
{
    while (is_space(*v))
        v++;
    int pending = 0;
    for (; *v; v++) {
        if (is_space(*v) || *v == '\r' || *v == '\n') {
            pending = 1;
            continue;
        }
        if (pending)
            strbuf_ch(b, ' ');
        pending = 0;
        strbuf_ch(b, *v);
    }
}

static const char *find_header(const struct sigv4_request *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (r->headers[i].name && !strcasecmp(r->headers[i].name, name))
            return r->headers[i].value ? r->headers[i].value : "";
    return NULL;
}

static int name_eq(const char *hname, const char *name, size_t n)
{
    return strlen(hname) == n && !strncasecmp(hname, name, n);
}

/* name[0..n) lower-case, then ':' and the joined values. 0, or NERR_INVALID
 * when r carries no such header. */
static int sb_canonical_header(struct strbuf *b, const struct sigv4_request *r, const char *name,
                               size_t n)
{
    int found = 0;
    for (size_t i = 0; i < n; i++)
        strbuf_ch(b, (char)tolower((unsigned char)name[i]));
    strbuf_ch(b, ':');
    for (size_t i = 0; i < r->nheaders; i++) {
        if (!r->headers[i].name || !name_eq(r->headers[i].name, name, n))
            continue;
        if (found++)
            strbuf_ch(b, ',');
        sb_header_value(b, r->headers[i].value ? r->headers[i].value : "");
    }
    strbuf_ch(b, '\n');
    return found ? 0 : NERR_INVALID;
}

static int cmp_lower(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The signed-headers list of every header of r except those in skip (a
 * NULL-terminated list), sorted and de-duplicated, lower-case. */
static int default_signed_headers(const struct sigv4_request *r, const char *const *skip,
                                  const char *extra, char **out)
{
    size_t n = 0;
    char **names = calloc(r->nheaders + 2, sizeof *names);
    struct strbuf b = {0};
    int rc = NERR_NOMEM;
    if (!names)
        return NERR_NOMEM;
    for (size_t i = 0; i <= r->nheaders; i++) {
        const char *h = i < r->nheaders ? r->headers[i].name : extra;
        if (!h)
            continue;
        int skipped = 0;
        for (const char *const *k = skip; i < r->nheaders && *k; k++)
            if (!strcasecmp(h, *k))
                skipped = 1;
        if (skipped)
            continue;
        if (!*h) {
            rc = NERR_INVALID;
            goto fail;
        }
        names[n] = strdup(h);
        if (!names[n])
            goto fail;
        for (char *c = names[n]; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        n++;
    }
    qsort(names, n, sizeof *names, cmp_lower);
    for (size_t i = 0; i < n; i++) {
        if (i && !strcmp(names[i], names[i - 1]))
            continue;
        if (b.len)
            strbuf_ch(&b, ';');
        strbuf_str(&b, names[i]);
    }
    rc = strbuf_finish(&b, out);
    b.p = NULL;
fail:
    free(b.p);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* ---- canonical request ---- */

static int build_canonical(const struct sigv4_request *r, const char *signed_headers, char **out)
{
    struct strbuf b = {0};
    int rc;
    strbuf_str(&b, r->method ? r->method : "");
    strbuf_ch(&b, '\n');
    sb_canonical_uri(&b, r->path);
    strbuf_ch(&b, '\n');
    sb_canonical_query(&b, r->query);
    strbuf_ch(&b, '\n');
    const char *s = signed_headers;
    if (!*s) {
        rc = NERR_INVALID;
        goto fail;
    }
    while (*s) {
        const char *e = strchr(s, ';');
        if (!e)
            e = s + strlen(s);
        if (e == s) {
            rc = NERR_INVALID;
            goto fail;
        }
        rc = sb_canonical_header(&b, r, s, (size_t)(e - s));
        if (rc)
            goto fail;
        s = *e ? e + 1 : e;
    }
    strbuf_ch(&b, '\n');
    strbuf_str(&b, signed_headers);
    strbuf_ch(&b, '\n');
    const char *declared = find_header(r, "x-amz-content-sha256");
    if (declared) {
        strbuf_str(&b, declared);
    } else {
        char hex[65];
        sha256_hex(r->body ? r->body : "", r->body ? r->body_len : 0, hex);
        strbuf_str(&b, hex);
    }
    return strbuf_finish(&b, out);
fail:
    free(b.p);
    return rc;
}

int sigv4_canonical_request(const struct sigv4_request *r, const char *signed_headers, char **out)
{
    static const char *const skip[] = {"authorization", NULL};
    char *own = NULL;
    int rc;
    *out = NULL;
    if (!signed_headers) {
        rc = default_signed_headers(r, skip, NULL, &own);
        if (rc)
            return rc;
        signed_headers = own;
    }
    rc = build_canonical(r, signed_headers, out);
    free(own);
    return rc;
}

int sigv4_string_to_sign(const char *canonical_request, const char *amz_date, const char *scope,
                         char **out)
{
    struct strbuf b = {0};
    char hex[65];
    sha256_hex(canonical_request, strlen(canonical_request), hex);
    strbuf_str(&b, ALGORITHM "\n");
    strbuf_str(&b, amz_date);
    strbuf_ch(&b, '\n');
    strbuf_str(&b, scope);
    strbuf_ch(&b, '\n');
    strbuf_str(&b, hex);
    return strbuf_finish(&b, out);
}

int sigv4_signing_key(const char *secret, const char *date, const char *region, const char *service,
                      unsigned char key[32])
{
    size_t slen = strlen(secret);
    unsigned char k[32];
    char first[4 + SIGV4_MAX_SECRET];
    if (slen > SIGV4_MAX_SECRET)
        return NERR_INVALID;
    memcpy(first, "AWS4", 4);
    memcpy(first + 4, secret, slen);
    HMAC(EVP_sha256(), first, (int)(slen + 4), (const unsigned char *)date, strlen(date), k, NULL);
    OPENSSL_cleanse(first, sizeof first);
    hmac(k, 32, region, k);
    hmac(k, 32, service, k);
    hmac(k, 32, "aws4_request", key);
    OPENSSL_cleanse(k, sizeof k);
    return 0;
}

void sigv4_signature(const unsigned char key[32], const char *string_to_sign, char hex[65])
{
    unsigned char mac[32];
    hmac(key, 32, string_to_sign, mac);
    hex_encode(mac, 32, hex);
}

/* ---- dates ---- */

static void format_amz_date(time_t t, char out[17])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

static int parse_amz_date(const char *s, time_t *t)
{
    struct tm tm = {0};
    if (strlen(s) != 16)
        return -1;
    for (int i = 0; i < 16; i++) {
        int want_digit = i != 8 && i != 15;
        if (want_digit ? !isdigit((unsigned char)s[i]) : s[i] != (i == 8 ? 'T' : 'Z'))
            return -1;
    }
    const char *end = strptime(s, "%Y%m%dT%H%M%SZ", &tm);
    if (!end || *end)
        return -1;
    *t = timegm(&tm);
    return 0;
}

static int parse_http_date(const char *s, time_t *t)
{
    struct tm tm = {0};
    const char *end = strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end)
        return -1;
    *t = timegm(&tm);
    return 0;
}

/* ---- Authorization ---- */

static void say(char *why, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *why, size_t cap, const char *fmt, ...)
{
    if (!why || !cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
}

static int copy_field(char *dst, size_t cap, const char *s, size_t n)
{
    if (n == 0 || n >= cap)
        return -1;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

int sigv4_parse_authorization(const char *value, struct sigv4_auth *a, char *why, size_t why_cap)
{
    memset(a, 0, sizeof *a);
    size_t alen = strlen(ALGORITHM);
    const char *s = value;
    while (is_space(*s))
        s++;
    if (strncmp(s, ALGORITHM, alen) || !is_space(s[alen])) {
        say(why, why_cap, "Authorization header requires the " ALGORITHM " algorithm");
        return NERR_INVALID;
    }
    s += alen;
    int have_cred = 0, have_sh = 0, have_sig = 0;
    while (*s) {
        while (is_space(*s) || *s == ',')
            s++;
        if (!*s)
            break;
        const char *e = strchr(s, ',');
        if (!e)
            e = s + strlen(s);
        const char *eq = memchr(s, '=', (size_t)(e - s));
        if (!eq) {
            say(why, why_cap, "Authorization header component without '=': '%.*s'",
                (int)(e - s > 64 ? 64 : e - s), s);
            return NERR_INVALID;
        }
        const char *v = eq + 1;
        const char *ve = e;
        while (ve > v && is_space(ve[-1]))
            ve--;
        size_t klen = (size_t)(eq - s), vlen = (size_t)(ve - v);
        if (klen == 10 && !strncmp(s, "Credential", 10)) {
            /* AKID/DATE/REGION/SERVICE/aws4_request */
            const char *p[5];
            size_t l[5];
            const char *c = v;
            int i = 0;
            for (; i < 5; i++) {
                const char *slash = i < 4 ? memchr(c, '/', (size_t)(ve - c)) : ve;
                if (!slash)
                    break;
                p[i] = c;
                l[i] = (size_t)(slash - c);
                c = slash + 1;
            }
            if (i < 5 || memchr(p[4], '/', l[4]) ||
                copy_field(a->akid, sizeof a->akid, p[0], l[0]) ||
                copy_field(a->date, sizeof a->date, p[1], l[1]) || l[1] != 8 ||
                copy_field(a->region, sizeof a->region, p[2], l[2]) ||
                copy_field(a->service, sizeof a->service, p[3], l[3]) || l[4] != 12 ||
                strncmp(p[4], "aws4_request", 12)) {
                say(why, why_cap,
                    "Credential should be of the form AKID/YYYYMMDD/region/service/aws4_request: "
                    "'%.*s'",
                    (int)(vlen > 200 ? 200 : vlen), v);
                return NERR_INVALID;
            }
            have_cred = 1;
        } else if (klen == 13 && !strncmp(s, "SignedHeaders", 13)) {
            if (copy_field(a->signed_headers, sizeof a->signed_headers, v, vlen)) {
                say(why, why_cap, "SignedHeaders is empty or too long");
                return NERR_INVALID;
            }
            have_sh = 1;
        } else if (klen == 9 && !strncmp(s, "Signature", 9)) {
            int hex = vlen == 64;
            for (size_t i = 0; hex && i < vlen; i++)
                hex = hexval(v[i]) >= 0;
            if (!hex || copy_field(a->signature, sizeof a->signature, v, vlen)) {
                say(why, why_cap, "Signature must be 64 hexadecimal characters");
                return NERR_INVALID;
            }
            for (char *c = a->signature; *c; c++)
                *c = (char)tolower((unsigned char)*c);
            have_sig = 1;
        }
        /* Unknown components are ignored, as AWS does. */
        s = e;
    }
    if (!have_cred || !have_sh || !have_sig) {
        say(why, why_cap, "Authorization header requires '%s' parameter",
            !have_cred ? "Credential"
            : !have_sh ? "SignedHeaders"
                       : "Signature");
        return NERR_INVALID;
    }
    return 0;
}

/* ---- verify ---- */

const char *sigv4_verdict_name(enum sigv4_verdict v)
{
    switch (v) {
    case SIGV4_OK:
        return "SIGV4_OK";
    case SIGV4_MISSING:
        return "SIGV4_MISSING";
    case SIGV4_UNRECOGNIZED_CLIENT:
        return "SIGV4_UNRECOGNIZED_CLIENT";
    case SIGV4_INVALID_SIGNATURE:
        return "SIGV4_INVALID_SIGNATURE";
    case SIGV4_EXPIRED:
        return "SIGV4_EXPIRED";
    case SIGV4_MALFORMED:
        return "SIGV4_MALFORMED";
    }
    return "SIGV4_?";
}

static int signed_list_has(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *s = list; *s;) {
        const char *e = strchr(s, ';');
        if (!e)
            e = s + strlen(s);
        if ((size_t)(e - s) == n && !strncmp(s, name, n))
            return 1;
        s = *e ? e + 1 : e;
    }
    return 0;
}

enum sigv4_verdict sigv4_verify(const struct sigv4_request *r,
                                const char *(*lookup)(void *arg, const char *akid), void *arg,
                                time_t now, char *why, size_t why_cap)
{
    struct sigv4_auth a;
    char *creq = NULL, *sts = NULL;
    enum sigv4_verdict v = SIGV4_MALFORMED;
    say(why, why_cap, "%s", "");

    const char *auth = find_header(r, "authorization");
    if (!auth || !*auth) {
        say(why, why_cap, "Request is missing Authentication Token");
        return SIGV4_MISSING;
    }
    if (sigv4_parse_authorization(auth, &a, why, why_cap))
        return SIGV4_MALFORMED;
    if (!signed_list_has(a.signed_headers, "host")) {
        say(why, why_cap, "'Host' must be a 'SignedHeader' in the AWS Authorization.");
        return SIGV4_MALFORMED;
    }

    /* The request time: X-Amz-Date, else Date. */
    char amz_date[17];
    time_t t;
    const char *xd = find_header(r, "x-amz-date");
    if (xd) {
        if (parse_amz_date(xd, &t)) {
            say(why, why_cap, "X-Amz-Date must be in the form YYYYMMDD'T'HHMMSS'Z': '%.40s'", xd);
            return SIGV4_MALFORMED;
        }
    } else {
        const char *d = find_header(r, "date");
        if (!d) {
            say(why, why_cap,
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' "
                "header.");
            return SIGV4_MALFORMED;
        }
        if (parse_http_date(d, &t)) {
            say(why, why_cap, "Date header is not an RFC 1123 date: '%.40s'", d);
            return SIGV4_MALFORMED;
        }
    }
    format_amz_date(t, amz_date);
    if (strncmp(amz_date, a.date, 8)) {
        say(why, why_cap,
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version "
            "of date from HTTP: '%s' != '%.8s'",
            a.date, amz_date);
        return SIGV4_INVALID_SIGNATURE;
    }

    const char *secret = lookup(arg, a.akid);
    if (!secret) {
        say(why, why_cap, "The security token included in the request is invalid.");
        return SIGV4_UNRECOGNIZED_CLIENT;
    }

    if (t < now - SIGV4_MAX_SKEW_SECONDS || t > now + SIGV4_MAX_SKEW_SECONDS) {
        char nowd[17], edge[17];
        format_amz_date(now, nowd);
        if (t < now) {
            format_amz_date(now - SIGV4_MAX_SKEW_SECONDS, edge);
            say(why, why_cap, "Signature expired: %s is now earlier than %s (%s - 15 min.)",
                amz_date, edge, nowd);
        } else {
            format_amz_date(now + SIGV4_MAX_SKEW_SECONDS, edge);
            say(why, why_cap, "Signature not yet current: %s is still later than %s (%s + 15 min.)",
                amz_date, edge, nowd);
        }
        return SIGV4_EXPIRED;
    }

    /* A declared payload hash must be the body's: otherwise the signature
     * would not cover the body that is actually executed. */
    const char *declared = find_header(r, "x-amz-content-sha256");
    if (declared) {
        char hex[65];
        sha256_hex(r->body ? r->body : "", r->body ? r->body_len : 0, hex);
        if (strcasecmp(declared, hex)) {
            say(why, why_cap,
                "The provided 'x-amz-content-sha256' header does not match what was computed.");
            return SIGV4_INVALID_SIGNATURE;
        }
    }

    int rc = build_canonical(r, a.signed_headers, &creq);
    if (rc == NERR_INVALID) {
        say(why, why_cap, "A header named in SignedHeaders is missing from the request: '%.200s'",
            a.signed_headers);
        v = SIGV4_INVALID_SIGNATURE;
        goto done;
    }
    if (rc) {
        say(why, why_cap, "out of memory while verifying the signature");
        v = SIGV4_INVALID_SIGNATURE;
        goto done;
    }
    char scope[sizeof a.date + sizeof a.region + sizeof a.service + 16];
    snprintf(scope, sizeof scope, "%s/%s/%s/aws4_request", a.date, a.region, a.service);
    if (sigv4_string_to_sign(creq, amz_date, scope, &sts)) {
        say(why, why_cap, "out of memory while verifying the signature");
        v = SIGV4_INVALID_SIGNATURE;
        goto done;
    }
    unsigned char key[32];
    char sig[65];
    if (sigv4_signing_key(secret, a.date, a.region, a.service, key)) {
        say(why, why_cap, "The security token included in the request is invalid.");
        v = SIGV4_UNRECOGNIZED_CLIENT;
        goto done;
    }
    sigv4_signature(key, sts, sig);
    OPENSSL_cleanse(key, sizeof key);
    if (CRYPTO_memcmp(sig, a.signature, 64) != 0) {
        say(why, why_cap,
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service "
            "documentation for details.");
        v = SIGV4_INVALID_SIGNATURE;
        goto done;
    }
    v = SIGV4_OK;
done:
    free(creq);
    free(sts);
    return v;
}

/* ---- sign ---- */

static int sign_into(const struct sigv4_request *r, const char *akid, const char *region,
                     const char *service, const unsigned char key[32], const char *amz_date,
                     struct strbuf *out)
{
    static const char *const skip[] = {"authorization", "x-amz-date", NULL};
    struct sigv4_header *hs = NULL;
    char *signed_headers = NULL, *creq = NULL, *sts = NULL;
    int rc = NERR_INVALID;
    if (find_header(r, "authorization") || find_header(r, "x-amz-date"))
        goto fail;
    rc = default_signed_headers(r, skip, "x-amz-date", &signed_headers);
    if (rc)
        goto fail;
    /* The canonical request sees r's headers plus the X-Amz-Date it will carry. */
    rc = NERR_NOMEM;
    hs = malloc((r->nheaders + 1) * sizeof *hs);
    if (!hs)
        goto fail;
    if (r->nheaders)
        memcpy(hs, r->headers, r->nheaders * sizeof *hs);
    hs[r->nheaders].name = "x-amz-date";
    hs[r->nheaders].value = amz_date;
    struct sigv4_request rr = *r;
    rr.headers = hs;
    rr.nheaders = r->nheaders + 1;
    rc = build_canonical(&rr, signed_headers, &creq);
    if (rc)
        goto fail;
    char scope[256];
    snprintf(scope, sizeof scope, "%.8s/%s/%s/aws4_request", amz_date, region, service);
    rc = sigv4_string_to_sign(creq, amz_date, scope, &sts);
    if (rc)
        goto fail;
    char sig[65];
    sigv4_signature(key, sts, sig);
    strbuf_str(out, ALGORITHM " Credential=");
    strbuf_str(out, akid);
    strbuf_ch(out, '/');
    strbuf_str(out, scope);
    strbuf_str(out, ", SignedHeaders=");
    strbuf_str(out, signed_headers);
    strbuf_str(out, ", Signature=");
    strbuf_str(out, sig);
    rc = out->oom ? NERR_NOMEM : 0;
fail:
    free(hs);
    free(signed_headers);
    free(creq);
    free(sts);
    return rc;
}

static int name_ok(const char *s, size_t max)
{
    return s && *s && strlen(s) <= max && !strchr(s, '/');
}

int sigv4_sign(const struct sigv4_request *r, const char *akid, const char *secret,
               const char *region, const char *service, time_t now, char *amz_date,
               char **authorization)
{
    struct strbuf b = {0};
    unsigned char key[32];
    *authorization = NULL;
    if (!name_ok(akid, 128) || !secret || !name_ok(region, 63) || !name_ok(service, 63))
        return NERR_INVALID;
    format_amz_date(now, amz_date);
    char date[9];
    memcpy(date, amz_date, 8);
    date[8] = '\0';
    if (sigv4_signing_key(secret, date, region, service, key))
        return NERR_INVALID;
    int rc = sign_into(r, akid, region, service, key, amz_date, &b);
    OPENSSL_cleanse(key, sizeof key);
    if (rc) {
        free(b.p);
        return rc;
    }
    return strbuf_finish(&b, authorization);
}

int sigv4_signer_init(struct sigv4_signer *s, const char *akid, const char *secret,
                      const char *region, const char *service)
{
    memset(s, 0, sizeof *s);
    if (!name_ok(akid, 128) || !secret || strlen(secret) > SIGV4_MAX_SECRET ||
        !name_ok(region, 63) || !name_ok(service, 63))
        return NERR_INVALID;
    strcpy(s->akid, akid);
    strcpy(s->secret, secret);
    strcpy(s->region, region);
    strcpy(s->service, service);
    return 0;
}

int sigv4_signer_sign(struct sigv4_signer *s, const struct sigv4_request *r, time_t now,
                      char *amz_date, char *auth, size_t auth_cap)
{
    struct strbuf b = {0};
    format_amz_date(now, amz_date);
    if (strncmp(s->key_date, amz_date, 8)) {
        memcpy(s->key_date, amz_date, 8);
        s->key_date[8] = '\0';
        sigv4_signing_key(s->secret, s->key_date, s->region, s->service, s->key);
    }
    int rc = sign_into(r, s->akid, s->region, s->service, s->key, amz_date, &b);
    if (rc == 0 && b.len >= auth_cap)
        rc = NERR_LIMIT;
    if (rc == 0)
        memcpy(auth, b.p, b.len + 1);
    free(b.p);
    return rc;
}
