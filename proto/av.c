/*
 * av.c — AttributeValues, exact decimals and key encoding (contract in av.h).
 */
#include "proto/av.h"

#include <stdlib.h>
#include <string.h>

#define P_INVALID "One or more parameter values were invalid: "

/* ---------------------------------------------------------------- numbers */

static int mant_digits(unsigned __int128 m)
{
    int n = 1;
    while (m >= 10) {
        m /= 10;
        n++;
    }
    return n;
}

int av_num_digits(const struct av_num *n)
{
    return mant_digits(n->mant);
}

static unsigned __int128 pow10_u128(int k)
{
    unsigned __int128 r = 1;
    while (k-- > 0)
        r *= 10;
    return r;
}

static int num_not_numeric(struct nerr *err, const char *s, size_t len)
{
    if (len == 0)
        return nerr_set(err, NERR_INVALID, "The parameter cannot be converted to a numeric value");
    if (len > 200)
        len = 200;
    return nerr_set(err, NERR_INVALID, "The parameter cannot be converted to a numeric value: %.*s",
                    (int)len, s);
}

static int num_err_digits(struct nerr *err)
{
    return nerr_set(err, NERR_INVALID,
                    "Attempting to store more than 38 significant digits in a Number");
}

/* Normalizes (strips trailing zeros) and checks the range. exp is wide so
 * that absurd exponents from the input cannot wrap. */
static int num_finish(unsigned __int128 mant, int64_t exp, int neg, struct av_num *out,
                      struct nerr *err)
{
    if (mant == 0) {
        out->mant = 0;
        out->exp = 0;
        out->neg = 0;
        return 0;
    }
    while (mant % 10 == 0) {
        mant /= 10;
        exp++;
    }
    int64_t adj = exp + mant_digits(mant) - 1;
    if (adj > AV_NUM_MAX_EXP)
        return nerr_set(err, NERR_INVALID,
                        "Number overflow. Attempting to store a number with magnitude larger than "
                        "supported range");
    if (adj < AV_NUM_MIN_EXP)
        return nerr_set(
            err, NERR_INVALID,
            "Number underflow. Attempting to store a number with magnitude smaller than "
            "supported range");
    out->mant = mant;
    out->exp = (int32_t)exp;
    out->neg = neg;
    return 0;
}

int av_num_parse_n(const char *s, size_t len, struct av_num *out, struct nerr *err)
{
    size_t i = 0;
    int neg = 0;
    unsigned __int128 mant = 0;
    int nsig = 0, nstored = 0, ndigits = 0, too_many = 0;
    int64_t frac = 0, e = 0;

    if (i < len && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    for (int part = 0; part < 2; part++) {
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
            int d = s[i] - '0';
            ndigits++;
            if (part == 1)
                frac++;
            if (nsig == 0 && d == 0)
                continue; /* leading zero */
            nsig++;
            if (nsig <= AV_NUM_MAX_DIGITS) {
                mant = mant * 10 + (unsigned)d;
                nstored++;
            } else if (d != 0) {
                too_many = 1; /* reported after the syntax check: garbage wins */
            }
        }
        if (part == 0) {
            if (i < len && s[i] == '.')
                i++;
            else
                break;
        }
    }
    if (ndigits == 0)
        return num_not_numeric(err, s, len);
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        int eneg = 0, edigits = 0;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            eneg = s[i++] == '-';
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
            edigits++;
            if (e < 1000000000)
                e = e * 10 + (s[i] - '0');
        }
        if (!edigits)
            return num_not_numeric(err, s, len);
        if (eneg)
            e = -e;
    }
    if (i != len)
        return num_not_numeric(err, s, len);
    if (too_many)
        return num_err_digits(err);
    /* Digits past the 38th are zeros here: they only scale the mantissa. */
    return num_finish(mant, e - frac + (nsig - nstored), neg, out, err);
}

int av_num_parse(const char *s, struct av_num *out, struct nerr *err)
{
    if (!s)
        return num_not_numeric(err, "", 0);
    return av_num_parse_n(s, strlen(s), out, err);
}

/* Writes the decimal digits of m into d (most significant first); returns
 * the count. */
static int mant_to_digits(unsigned __int128 m, char *d)
{
    char tmp[48];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + (int)(m % 10));
        m /= 10;
    } while (m);
    for (int k = 0; k < n; k++)
        d[k] = tmp[n - 1 - k];
    return n;
}

int av_num_format(const struct av_num *n, char *buf, size_t cap)
{
    char d[48];
    char out[AV_NUM_STR_MAX];
    size_t o = 0;
    int nd = mant_to_digits(n->mant, d);

    if (n->mant == 0) {
        if (cap < 2)
            return NERR_LIMIT;
        memcpy(buf, "0", 2);
        return 1;
    }
    if (n->neg)
        out[o++] = '-';
    if (n->exp >= 0) {
        memcpy(out + o, d, (size_t)nd);
        o += (size_t)nd;
        for (int k = 0; k < n->exp; k++)
            out[o++] = '0';
    } else {
        int point = nd + n->exp; /* digits before the decimal point */
        if (point > 0) {
            memcpy(out + o, d, (size_t)point);
            o += (size_t)point;
            out[o++] = '.';
            memcpy(out + o, d + point, (size_t)(nd - point));
            o += (size_t)(nd - point);
        } else {
            out[o++] = '0';
            out[o++] = '.';
            for (int k = 0; k < -point; k++)
                out[o++] = '0';
            memcpy(out + o, d, (size_t)nd);
            o += (size_t)nd;
        }
    }
    if (o + 1 > cap)
        return NERR_LIMIT;
    memcpy(buf, out, o);
    buf[o] = '\0';
    return (int)o;
}

static int num_sign(const struct av_num *n)
{
    return n->mant == 0 ? 0 : (n->neg ? -1 : 1);
}

static int mag_cmp(const struct av_num *a, const struct av_num *b)
{
    int da = mant_digits(a->mant), db = mant_digits(b->mant);
    int ea = a->exp + da - 1, eb = b->exp + db - 1;
    if (ea != eb)
        return ea < eb ? -1 : 1;
    /* Same leading position: align the digit strings (both <= 38 digits). */
    unsigned __int128 ma = a->mant, mb = b->mant;
    if (da < db)
        ma *= pow10_u128(db - da);
    else if (db < da)
        mb *= pow10_u128(da - db);
    return ma < mb ? -1 : ma > mb;
}

int av_num_cmp(const struct av_num *a, const struct av_num *b)
{
    int sa = num_sign(a), sb = num_sign(b);
    if (sa != sb)
        return sa < sb ? -1 : 1;
    if (sa == 0)
        return 0;
    int m = mag_cmp(a, b);
    return sa < 0 ? -m : m;
}

/* Digit positions span at most 126 + 130 + 38 + a carry; 320 is ample. */
#define NUM_SPAN 320

static void num_to_span(const struct av_num *n, int lo, unsigned char *span)
{
    unsigned __int128 m = n->mant;
    int pos = n->exp - lo;
    while (m) {
        span[pos++] = (unsigned char)(m % 10);
        m /= 10;
    }
}

static int num_addsub(const struct av_num *a, const struct av_num *b, int bneg, struct av_num *out,
                      struct nerr *err)
{
    struct av_num bb = *b;
    unsigned char x[NUM_SPAN], y[NUM_SPAN], r[NUM_SPAN];

    if (bb.mant != 0)
        bb.neg = bneg;
    if (a->mant == 0) {
        *out = bb;
        return 0;
    }
    if (bb.mant == 0) {
        *out = *a;
        return 0;
    }
    int lo = a->exp < bb.exp ? a->exp : bb.exp;
    memset(x, 0, sizeof x);
    memset(y, 0, sizeof y);
    memset(r, 0, sizeof r);
    num_to_span(a, lo, x);
    num_to_span(&bb, lo, y);
    int neg;
    if (a->neg == bb.neg) {
        int carry = 0;
        for (int k = 0; k < NUM_SPAN; k++) {
            int s = x[k] + y[k] + carry;
            r[k] = (unsigned char)(s % 10);
            carry = s / 10;
        }
        neg = a->neg;
    } else {
        int c = mag_cmp(a, &bb);
        if (c == 0) {
            *out = (struct av_num){0, 0, 0};
            return 0;
        }
        unsigned char *big = c > 0 ? x : y, *small = c > 0 ? y : x;
        int borrow = 0;
        for (int k = 0; k < NUM_SPAN; k++) {
            int s = big[k] - small[k] - borrow;
            borrow = s < 0;
            r[k] = (unsigned char)(s + (borrow ? 10 : 0));
        }
        neg = c > 0 ? a->neg : bb.neg;
    }
    int top = NUM_SPAN - 1, bot = 0;
    while (top > 0 && r[top] == 0)
        top--;
    while (bot < top && r[bot] == 0)
        bot++;
    if (top - bot + 1 > AV_NUM_MAX_DIGITS) {
        /* An out-of-range magnitude is the clearer complaint if both apply. */
        int64_t adj = (int64_t)lo + top;
        if (adj > AV_NUM_MAX_EXP || adj < AV_NUM_MIN_EXP)
            return num_finish(1, adj, neg, out, err);
        return num_err_digits(err);
    }
    unsigned __int128 m = 0;
    for (int k = top; k >= bot; k--)
        m = m * 10 + r[k];
    return num_finish(m, (int64_t)lo + bot, neg, out, err);
}

int av_num_add(const struct av_num *a, const struct av_num *b, struct av_num *out, struct nerr *err)
{
    return num_addsub(a, b, b->neg, out, err);
}

int av_num_sub(const struct av_num *a, const struct av_num *b, struct av_num *out, struct nerr *err)
{
    return num_addsub(a, b, !b->neg, out, err);
}

json_t *av_num_to_json(const struct av_num *n)
{
    char buf[AV_NUM_STR_MAX];
    if (av_num_format(n, buf, sizeof buf) < 0)
        return NULL;
    return json_pack("{s:s}", "N", buf);
}

int av_num_from_json(const json_t *v, struct av_num *out, struct nerr *err)
{
    if (json_is_object(v))
        v = json_object_get(v, "N");
    if (!json_is_string(v))
        return nerr_set(err, NERR_INVALID, "The parameter cannot be converted to a numeric value");
    return av_num_parse_n(json_string_value(v), json_string_length(v), out, err);
}

/* ---------------------------------------------------------------- base64 */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int av_b64_decode(const char *s, size_t len, unsigned char **out, size_t *outlen, struct nerr *err)
{
    if (len % 4 != 0)
        return nerr_set(err, NERR_PARSE,
                        "Base64 encoded length is expected a multiple of 4 bytes but found: %zu",
                        len);
    size_t pad = 0;
    if (len >= 1 && s[len - 1] == '=')
        pad++;
    if (len >= 2 && s[len - 2] == '=')
        pad++;
    size_t n = len / 4 * 3 - pad;
    unsigned char *buf = malloc(n ? n : 1);
    if (!buf)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)s[i + k];
            if (c == '=' && i + 4 == len && k >= 4 - (int)pad) {
                v[k] = 0;
                continue;
            }
            v[k] = b64_val(c);
            if (v[k] < 0) {
                free(buf);
                return nerr_set(err, NERR_PARSE, "Invalid Base64 character: '%c'",
                                c >= 0x20 && c < 0x7f ? c : '?');
            }
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        unsigned char t[3] = {(unsigned char)(w >> 16), (unsigned char)(w >> 8), (unsigned char)w};
        for (int k = 0; k < 3 && o < n; k++)
            buf[o++] = t[k];
    }
    *out = buf;
    *outlen = n;
    return 0;
}

static char *b64_encode(const unsigned char *p, size_t n)
{
    char *s = malloc((n + 2) / 3 * 4 + 1);
    if (!s)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            w |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            w |= p[i + 2];
        s[o++] = B64[w >> 18 & 63];
        s[o++] = B64[w >> 12 & 63];
        s[o++] = i + 1 < n ? B64[w >> 6 & 63] : '=';
        s[o++] = i + 2 < n ? B64[w & 63] : '=';
    }
    s[o] = '\0';
    return s;
}

/* ---------------------------------------------------------------- types */

enum av_kind { K_S, K_N, K_B, K_BOOL, K_NULL, K_M, K_L, K_SS, K_NS, K_BS, K_NONE };
static const char *const KIND_NAME[] = {"S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"};

static enum av_kind kind_of_key(const char *k)
{
    for (int i = 0; i < K_NONE; i++)
        if (!strcmp(k, KIND_NAME[i]))
            return (enum av_kind)i;
    return K_NONE;
}

static enum av_kind av_kind(const json_t *av, json_t **payload)
{
    if (!json_is_object(av) || json_object_size(av) != 1)
        return K_NONE;
    void *it = json_object_iter((json_t *)av);
    enum av_kind k = kind_of_key(json_object_iter_key(it));
    if (payload)
        *payload = json_object_iter_value(it);
    return k;
}

const char *av_type(const json_t *av)
{
    enum av_kind k = av_kind(av, NULL);
    return k == K_NONE ? NULL : KIND_NAME[k];
}

json_t *av_payload(const json_t *av)
{
    json_t *p = NULL;
    return av_kind(av, &p) == K_NONE ? NULL : p;
}

/* ---------------------------------------------------------------- set elements */

/* One element of a set, in a form that sorts and compares by DynamoDB's
 * value: bytes for SS and BS (decoded), a number for NS. */
struct selem {
    const unsigned char *p;
    size_t len;
    unsigned char *owned;
    struct av_num num;
};

static int selem_cmp_bytes(const void *x, const void *y)
{
    const struct selem *a = x, *b = y;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->p, b->p, n) : 0;
    if (c)
        return c;
    return a->len < b->len ? -1 : a->len > b->len;
}

static int selem_cmp_num(const void *x, const void *y)
{
    const struct selem *a = x, *b = y;
    return av_num_cmp(&a->num, &b->num);
}

static void selems_free(struct selem *e, size_t n)
{
    if (!e)
        return;
    for (size_t i = 0; i < n; i++)
        free(e[i].owned);
    free(e);
}

/* Builds the sorted element array of a set payload (array of strings). */
static int selems_build(const json_t *arr, enum av_kind k, struct selem **out, struct nerr *err)
{
    size_t n = json_array_size(arr);
    struct selem *e = calloc(n ? n : 1, sizeof *e);
    int rc;
    if (!e)
        return nerr_set(err, NERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(arr, i);
        if (!json_is_string(s)) {
            rc = nerr_set(err, NERR_PARSE, "Unexpected JSON type in %s: expected a string",
                          KIND_NAME[k]);
            goto fail;
        }
        const char *p = json_string_value(s);
        size_t len = json_string_length(s);
        if (k == K_NS) {
            if ((rc = av_num_parse_n(p, len, &e[i].num, err)) < 0)
                goto fail;
        } else if (k == K_BS) {
            if ((rc = av_b64_decode(p, len, &e[i].owned, &e[i].len, err)) < 0)
                goto fail;
            e[i].p = e[i].owned;
        } else {
            e[i].p = (const unsigned char *)p;
            e[i].len = len;
        }
    }
    qsort(e, n, sizeof *e, k == K_NS ? selem_cmp_num : selem_cmp_bytes);
    *out = e;
    return 0;
fail:
    selems_free(e, n);
    return rc;
}

/* "a, b, c" of a set payload, cut to fit a message. */
static void render_collection(const json_t *arr, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        int w = snprintf(buf + o, cap - o, "%s%s", i ? ", " : "", s ? s : "");
        if (w < 0 || (size_t)w >= cap - o) {
            if (cap > 4)
                memcpy(buf + cap - 4, "...", 4);
            return;
        }
        o += (size_t)w;
    }
}

/* ---------------------------------------------------------------- validation */

static int validate_av(json_t *av, int containers, struct nerr *err);

static int validate_set(json_t *av, enum av_kind k, json_t *arr, struct nerr *err)
{
    struct selem *e = NULL;
    size_t n = json_array_size(arr);
    int rc;

    if (!json_is_array(arr))
        return nerr_set(err, NERR_PARSE, "Unexpected JSON type for %s: expected an array",
                        KIND_NAME[k]);
    if (n == 0) {
        if (k == K_SS)
            return nerr_set(err, NERR_INVALID, P_INVALID "An string set  may not be empty");
        if (k == K_NS)
            return nerr_set(err, NERR_INVALID, P_INVALID "An number set  may not be empty");
        return nerr_set(err, NERR_INVALID, P_INVALID "Binary sets should not be empty");
    }
    if ((rc = selems_build(arr, k, &e, err)) < 0)
        return rc;
    for (size_t i = 1; i < n; i++) {
        int same = k == K_NS ? selem_cmp_num(&e[i - 1], &e[i]) == 0
                             : selem_cmp_bytes(&e[i - 1], &e[i]) == 0;
        if (same) {
            char coll[300];
            render_collection(arr, coll, sizeof coll);
            if (k == K_NS)
                rc = nerr_set(err, NERR_INVALID, "Input collection contains duplicates");
            else if (k == K_SS)
                rc = nerr_set(err, NERR_INVALID,
                              P_INVALID "Input collection [%s] contains duplicates.", coll);
            else
                rc = nerr_set(err, NERR_INVALID,
                              P_INVALID "Input collection [%s]of type BS contains duplicates.",
                              coll);
            goto out;
        }
    }
    /* Canonical element text, in the caller's order. */
    for (size_t i = 0; i < n && k != K_SS; i++) {
        json_t *s = json_array_get(arr, i);
        if (k == K_NS) {
            char buf[AV_NUM_STR_MAX];
            struct av_num num;
            if ((rc = av_num_parse_n(json_string_value(s), json_string_length(s), &num, err)) < 0)
                goto out;
            av_num_format(&num, buf, sizeof buf);
            if (strcmp(buf, json_string_value(s)) && json_string_set(s, buf) < 0) {
                rc = nerr_set(err, NERR_NOMEM, "out of memory");
                goto out;
            }
        } else {
            unsigned char *raw;
            size_t len;
            if ((rc = av_b64_decode(json_string_value(s), json_string_length(s), &raw, &len, err)) <
                0)
                goto out;
            char *enc = b64_encode(raw, len);
            free(raw);
            if (!enc || (strcmp(enc, json_string_value(s)) && json_string_set(s, enc) < 0)) {
                free(enc);
                rc = nerr_set(err, NERR_NOMEM, "out of memory");
                goto out;
            }
            free(enc);
        }
    }
    rc = 0;
    (void)av;
out:
    selems_free(e, n);
    return rc;
}

static int validate_av(json_t *av, int containers, struct nerr *err)
{
    const char *key;
    json_t *val, *payload = NULL;
    void *tmp;
    int known = 0, rc;
    enum av_kind k = K_NONE;

    if (!json_is_object(av))
        return nerr_set(err, NERR_PARSE, "Start of structure or map found where not expected");
    /* Unknown members and JSON nulls are ignored by DynamoDB's deserializer;
     * dropping them keeps the stored form canonical. */
    json_object_foreach_safe(av, tmp, key, val)
    {
        enum av_kind kk = kind_of_key(key);
        if (kk == K_NONE || json_is_null(val)) {
            json_object_del(av, key);
            continue;
        }
        known++;
        k = kk;
        payload = val;
    }
    if (known == 0)
        return nerr_set(
            err, NERR_INVALID,
            "Supplied AttributeValue is empty, must contain exactly one of the supported "
            "datatypes");
    if (known > 1)
        return nerr_set(
            err, NERR_INVALID,
            "Supplied AttributeValue has more than one datatypes set, must contain exactly "
            "one of the supported datatypes");
    switch (k) {
    case K_S:
        if (!json_is_string(payload))
            return nerr_set(err, NERR_PARSE, "Unexpected JSON type for S: expected a string");
        return 0;
    case K_N: {
        struct av_num num;
        char buf[AV_NUM_STR_MAX];
        if (!json_is_string(payload))
            return nerr_set(err, NERR_PARSE, "Unexpected JSON type for N: expected a string");
        if ((rc = av_num_parse_n(json_string_value(payload), json_string_length(payload), &num,
                                 err)) < 0)
            return rc;
        av_num_format(&num, buf, sizeof buf);
        if (strcmp(buf, json_string_value(payload)) && json_string_set(payload, buf) < 0)
            return nerr_set(err, NERR_NOMEM, "out of memory");
        return 0;
    }
    case K_B: {
        unsigned char *raw;
        size_t len;
        if (!json_is_string(payload))
            return nerr_set(err, NERR_PARSE, "Unexpected JSON type for B: expected a string");
        if ((rc = av_b64_decode(json_string_value(payload), json_string_length(payload), &raw, &len,
                                err)) < 0)
            return rc;
        char *enc = b64_encode(raw, len);
        free(raw);
        if (!enc)
            return nerr_set(err, NERR_NOMEM, "out of memory");
        rc = strcmp(enc, json_string_value(payload)) ? json_string_set(payload, enc) : 0;
        free(enc);
        return rc < 0 ? nerr_set(err, NERR_NOMEM, "out of memory") : 0;
    }
    case K_BOOL:
        if (!json_is_boolean(payload))
            return nerr_set(err, NERR_PARSE, "Unexpected JSON type for BOOL: expected a boolean");
        return 0;
    case K_NULL:
        if (!json_is_boolean(payload))
            return nerr_set(err, NERR_PARSE, "Unexpected JSON type for NULL: expected a boolean");
        if (!json_is_true(payload))
            return nerr_set(err, NERR_INVALID,
                            P_INVALID "Null attribute value types must have the value of true");
        return 0;
    case K_M:
    case K_L:
        if (k == K_M ? !json_is_object(payload) : !json_is_array(payload))
            return nerr_set(err, NERR_PARSE, "Unexpected JSON type for %s", KIND_NAME[k]);
        if (containers + 1 > AV_MAX_DEPTH)
            return nerr_set(err, NERR_INVALID, "Nesting Levels have exceeded supported limits");
        if (k == K_M) {
            json_object_foreach(payload, key, val)
            {
                if ((rc = validate_av(val, containers + 1, err)) < 0)
                    return rc;
            }
        } else {
            size_t i;
            json_array_foreach(payload, i, val)
            {
                if ((rc = validate_av(val, containers + 1, err)) < 0)
                    return rc;
            }
        }
        return 0;
    case K_SS:
    case K_NS:
    case K_BS:
        return validate_set(av, k, payload, err);
    case K_NONE:
        break;
    }
    return nerr_set(err, NERR_INTERNAL, "unreachable AttributeValue kind");
}

int av_validate(json_t *av, struct nerr *err)
{
    return validate_av(av, 0, err);
}

int av_validate_item(json_t *item, struct nerr *err)
{
    const char *key;
    json_t *val;
    int rc;

    if (!json_is_object(item))
        return nerr_set(err, NERR_PARSE, "Start of structure or map expected for an item");
    json_object_foreach(item, key, val)
    {
        size_t len = strlen(key);
        if (len == 0)
            return nerr_set(err, NERR_INVALID, P_INVALID "An attribute name may not be empty");
        if (len > AV_NAME_MAX)
            return nerr_set(err, NERR_INVALID,
                            P_INVALID "Attribute name exceeds the maximum length of %d bytes",
                            AV_NAME_MAX);
        if ((rc = validate_av(val, 0, err)) < 0)
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- size */

static size_t b64_raw_len(const json_t *s)
{
    size_t len = json_string_length(s);
    const char *p = json_string_value(s);
    if (!p || len < 4)
        return 0;
    size_t pad = (p[len - 1] == '=') + (p[len - 2] == '=');
    return len / 4 * 3 - pad;
}

static size_t num_text_size(const json_t *s)
{
    struct av_num n;
    if (!json_is_string(s) ||
        av_num_parse_n(json_string_value(s), json_string_length(s), &n, NULL) < 0)
        return 0;
    return (size_t)(av_num_digits(&n) + 1) / 2 + 1;
}

size_t av_value_size(const json_t *av)
{
    json_t *p;
    size_t sz = 0, i;
    const char *key;
    json_t *v;

    switch (av_kind(av, &p)) {
    case K_S:
        return json_string_length(p);
    case K_N:
        return num_text_size(p);
    case K_B:
        return b64_raw_len(p);
    case K_BOOL:
    case K_NULL:
        return 1;
    case K_M:
        sz = 3;
        json_object_foreach(p, key, v) sz += strlen(key) + 1 + av_value_size(v);
        return sz;
    case K_L:
        sz = 3;
        json_array_foreach(p, i, v) sz += 1 + av_value_size(v);
        return sz;
    case K_SS:
        json_array_foreach(p, i, v) sz += json_string_length(v);
        return sz;
    case K_NS:
        json_array_foreach(p, i, v) sz += num_text_size(v);
        return sz;
    case K_BS:
        json_array_foreach(p, i, v) sz += b64_raw_len(v);
        return sz;
    case K_NONE:
        break;
    }
    return 0;
}

size_t av_item_size(const json_t *item)
{
    const char *key;
    json_t *v;
    size_t sz = 0;
    json_object_foreach((json_t *)item, key, v) sz += strlen(key) + av_value_size(v);
    return sz;
}

/* ---------------------------------------------------------------- equality, order */

static int bytes_cmp(const unsigned char *a, size_t na, const unsigned char *b, size_t nb)
{
    size_t n = na < nb ? na : nb;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c < 0 ? -1 : 1;
    return na < nb ? -1 : na > nb;
}

static int b64_cmp(const json_t *a, const json_t *b, int *cmp)
{
    unsigned char *ra = NULL, *rb = NULL;
    size_t na, nb;
    int rc = av_b64_decode(json_string_value(a), json_string_length(a), &ra, &na, NULL);
    if (rc == 0)
        rc = av_b64_decode(json_string_value(b), json_string_length(b), &rb, &nb, NULL);
    if (rc == 0)
        *cmp = bytes_cmp(ra, na, rb, nb);
    free(ra);
    free(rb);
    return rc;
}

static int set_equal(const json_t *pa, const json_t *pb, enum av_kind k)
{
    struct selem *ea = NULL, *eb = NULL;
    size_t n = json_array_size(pa);
    int eq = 0;
    if (n != json_array_size(pb))
        return 0;
    if (selems_build(pa, k, &ea, NULL) < 0 || selems_build(pb, k, &eb, NULL) < 0)
        goto out;
    eq = 1;
    for (size_t i = 0; i < n && eq; i++)
        eq = (k == K_NS ? selem_cmp_num(&ea[i], &eb[i]) : selem_cmp_bytes(&ea[i], &eb[i])) == 0;
out:
    selems_free(ea, n);
    selems_free(eb, n);
    return eq;
}

int av_equal(const json_t *a, const json_t *b)
{
    json_t *pa, *pb;
    enum av_kind ka = av_kind(a, &pa), kb = av_kind(b, &pb);
    const char *key;
    json_t *v;
    size_t i;
    int c;

    if (ka == K_NONE || ka != kb)
        return 0;
    switch (ka) {
    case K_S:
        return json_is_string(pa) && json_is_string(pb) &&
               bytes_cmp((const unsigned char *)json_string_value(pa), json_string_length(pa),
                         (const unsigned char *)json_string_value(pb), json_string_length(pb)) == 0;
    case K_N:
    case K_B:
        return av_compare(a, b, &c) == 0 && c == 0;
    case K_BOOL:
    case K_NULL:
        return json_is_boolean(pa) && json_is_boolean(pb) && json_is_true(pa) == json_is_true(pb);
    case K_M:
        if (!json_is_object(pa) || !json_is_object(pb) ||
            json_object_size(pa) != json_object_size(pb))
            return 0;
        json_object_foreach(pa, key, v)
        {
            json_t *w = json_object_get(pb, key);
            if (!w || !av_equal(v, w))
                return 0;
        }
        return 1;
    case K_L:
        if (!json_is_array(pa) || !json_is_array(pb) || json_array_size(pa) != json_array_size(pb))
            return 0;
        json_array_foreach(pa, i, v)
        {
            if (!av_equal(v, json_array_get(pb, i)))
                return 0;
        }
        return 1;
    case K_SS:
    case K_NS:
    case K_BS:
        return json_is_array(pa) && json_is_array(pb) && set_equal(pa, pb, ka);
    case K_NONE:
        break;
    }
    return 0;
}

int av_compare(const json_t *a, const json_t *b, int *cmp)
{
    json_t *pa, *pb;
    enum av_kind ka = av_kind(a, &pa), kb = av_kind(b, &pb);
    if (ka != kb || (ka != K_S && ka != K_N && ka != K_B) || !json_is_string(pa) ||
        !json_is_string(pb))
        return NERR_INVALID;
    if (ka == K_S) {
        *cmp = bytes_cmp((const unsigned char *)json_string_value(pa), json_string_length(pa),
                         (const unsigned char *)json_string_value(pb), json_string_length(pb));
        return 0;
    }
    if (ka == K_B)
        return b64_cmp(pa, pb, cmp) < 0 ? NERR_INVALID : 0;
    struct av_num x, y;
    if (av_num_from_json(pa, &x, NULL) < 0 || av_num_from_json(pb, &y, NULL) < 0)
        return NERR_INVALID;
    *cmp = av_num_cmp(&x, &y);
    return 0;
}

/* ---------------------------------------------------------------- keys */

struct kbuf {
    unsigned char *p;
    size_t len, cap;
};

static int kb_put(struct kbuf *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p)
            return NERR_NOMEM;
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

static int kb_byte(struct kbuf *b, unsigned char c)
{
    return kb_put(b, &c, 1);
}

#define TAG_S 0x10
#define TAG_N 0x11
#define TAG_B 0x12

/* The raw bytes of a key value: S text, B decoded, N canonical text. *owned
 * is set when the bytes were allocated. */
static int key_bytes(const json_t *av, enum av_kind *kind, const unsigned char **p, size_t *len,
                     unsigned char **owned, char *numbuf, struct nerr *err)
{
    json_t *pl;
    enum av_kind k = av_kind(av, &pl);
    *owned = NULL;
    if ((k != K_S && k != K_N && k != K_B) || !json_is_string(pl))
        return nerr_set(err, NERR_INVALID, "The provided key element does not match the schema");
    *kind = k;
    if (k == K_S) {
        *p = (const unsigned char *)json_string_value(pl);
        *len = json_string_length(pl);
        return 0;
    }
    if (k == K_B) {
        int rc = av_b64_decode(json_string_value(pl), json_string_length(pl), owned, len, err);
        *p = *owned;
        return rc;
    }
    struct av_num n;
    int rc = av_num_from_json(pl, &n, err);
    if (rc < 0)
        return rc;
    *len = (size_t)av_num_format(&n, numbuf, AV_NUM_STR_MAX);
    *p = (const unsigned char *)numbuf;
    return 0;
}

static int put_prefix(struct kbuf *b, const json_t *hash, struct nerr *err)
{
    enum av_kind k = K_NONE;
    const unsigned char *p = NULL;
    size_t len = 0;
    unsigned char *owned = NULL;
    char numbuf[AV_NUM_STR_MAX];
    int rc = key_bytes(hash, &k, &p, &len, &owned, numbuf, err);
    if (rc < 0)
        return rc;
    rc = kb_byte(b, k == K_S ? TAG_S : k == K_N ? TAG_N : TAG_B);
    for (size_t i = 0; i < len && rc == 0; i++) {
        rc = kb_byte(b, p[i]);
        if (rc == 0 && p[i] == 0x00)
            rc = kb_byte(b, 0xFF);
    }
    if (rc == 0)
        rc = kb_put(b, "\x00\x01", 2);
    free(owned);
    return rc < 0 ? nerr_set(err, NERR_NOMEM, "out of memory") : 0;
}

/* Order-preserving bytes of a number (see av.h). */
static int put_num(struct kbuf *b, const struct av_num *n)
{
    char d[48];
    int rc;
    if (n->mant == 0)
        return kb_byte(b, 0x02);
    int nd = mant_to_digits(n->mant, d);
    int adj = n->exp + nd - 1;
    unsigned char e = (unsigned char)(adj + 130);
    if ((rc = kb_byte(b, n->neg ? 0x01 : 0x03)) < 0)
        return rc;
    if ((rc = kb_byte(b, n->neg ? (unsigned char)(255 - e) : e)) < 0)
        return rc;
    for (int i = 0; i < nd; i += 2) {
        int hi = d[i] - '0', lo = i + 1 < nd ? d[i + 1] - '0' : 0;
        unsigned char v = (unsigned char)(1 + 10 * hi + lo);
        if ((rc = kb_byte(b, n->neg ? (unsigned char)(101 - v) : v)) < 0)
            return rc;
    }
    return n->neg ? kb_byte(b, 0xFF) : 0;
}

static int put_range(struct kbuf *b, const json_t *range, struct nerr *err)
{
    json_t *pl;
    enum av_kind k = av_kind(range, &pl);
    int rc;
    if ((k != K_S && k != K_N && k != K_B) || !json_is_string(pl))
        return nerr_set(err, NERR_INVALID, "The provided key element does not match the schema");
    if (k == K_N) {
        struct av_num n;
        if ((rc = av_num_from_json(pl, &n, err)) < 0)
            return rc;
        rc = put_num(b, &n);
    } else if (k == K_S) {
        rc = kb_put(b, json_string_value(pl), json_string_length(pl));
    } else {
        unsigned char *raw;
        size_t len;
        if ((rc = av_b64_decode(json_string_value(pl), json_string_length(pl), &raw, &len, err)) <
            0)
            return rc;
        rc = kb_put(b, raw, len);
        free(raw);
    }
    return rc < 0 ? nerr_set(err, NERR_NOMEM, "out of memory") : 0;
}

static int kb_finish(struct kbuf *b, unsigned char **out, size_t *len, int rc)
{
    if (rc < 0) {
        free(b->p);
        return rc;
    }
    if (!b->p && !(b->p = malloc(1)))
        return NERR_NOMEM;
    *out = b->p;
    *len = b->len;
    return 0;
}

int av_key_prefix(const json_t *hash, unsigned char **out, size_t *len, struct nerr *err)
{
    struct kbuf b = {0};
    return kb_finish(&b, out, len, put_prefix(&b, hash, err));
}

int av_key_encode(const json_t *hash, const json_t *range, unsigned char **out, size_t *len,
                  struct nerr *err)
{
    struct kbuf b = {0};
    int rc = put_prefix(&b, hash, err);
    if (rc == 0 && range)
        rc = put_range(&b, range, err);
    return kb_finish(&b, out, len, rc);
}

static json_t *make_av_bytes(enum av_kind k, const unsigned char *p, size_t n)
{
    if (k == K_S)
        return json_pack("{s:s%}", "S", (const char *)p, n);
    if (k == K_N) {
        char tmp[AV_NUM_STR_MAX];
        if (n >= sizeof tmp)
            return NULL;
        memcpy(tmp, p, n);
        tmp[n] = '\0';
        return json_pack("{s:s}", "N", tmp);
    }
    char *enc = b64_encode(p, n);
    json_t *j = enc ? json_pack("{s:s}", "B", enc) : NULL;
    free(enc);
    return j;
}

static int decode_num(const unsigned char *p, size_t n, struct av_num *out)
{
    if (n == 1 && p[0] == 0x02) {
        *out = (struct av_num){0, 0, 0};
        return 0;
    }
    if (n < 3 || (p[0] != 0x01 && p[0] != 0x03))
        return NERR_CORRUPT;
    int neg = p[0] == 0x01;
    size_t end = n;
    if (neg) {
        if (p[n - 1] != 0xFF)
            return NERR_CORRUPT;
        end = n - 1;
    }
    int adj = (neg ? 255 - p[1] : p[1]) - 130;
    unsigned __int128 m = 0;
    int nd = 0;
    for (size_t i = 2; i < end; i++) {
        int v = neg ? 101 - p[i] : p[i];
        if (v < 1 || v > 100 || nd >= AV_NUM_MAX_DIGITS)
            return NERR_CORRUPT;
        v -= 1;
        m = m * 100 + (unsigned)v;
        nd += 2;
    }
    if (nd == 0)
        return NERR_CORRUPT;
    /* m holds nd digits; value = 0.digits × 10^(adj+1). */
    return num_finish(m, (int64_t)adj + 1 - nd, neg, out, NULL) < 0 ? NERR_CORRUPT : 0;
}

int av_key_decode(const unsigned char *key, size_t len, const char *range_type, json_t **hash,
                  json_t **range, struct nerr *err)
{
    struct kbuf hb = {0};
    size_t i = 1;
    enum av_kind hk;
    int rc = NERR_CORRUPT;

    *hash = NULL;
    if (range)
        *range = NULL;
    if (len < 3)
        goto fail;
    hk = key[0] == TAG_S ? K_S : key[0] == TAG_N ? K_N : key[0] == TAG_B ? K_B : K_NONE;
    if (hk == K_NONE)
        goto fail;
    for (;;) {
        if (i >= len)
            goto fail;
        if (key[i] != 0x00) {
            if (kb_byte(&hb, key[i++]) < 0)
                goto nomem;
            continue;
        }
        if (i + 1 >= len)
            goto fail;
        if (key[i + 1] == 0x01) {
            i += 2;
            break;
        }
        if (key[i + 1] != 0xFF)
            goto fail;
        if (kb_byte(&hb, 0x00) < 0)
            goto nomem;
        i += 2;
    }
    *hash = make_av_bytes(hk, hb.p ? hb.p : (const unsigned char *)"", hb.len);
    if (!*hash)
        goto nomem;
    if (range_type) {
        enum av_kind rk = kind_of_key(range_type);
        if (rk == K_N) {
            struct av_num n;
            if (decode_num(key + i, len - i, &n) < 0)
                goto fail;
            *range = av_num_to_json(&n);
        } else if (rk == K_S || rk == K_B) {
            *range = make_av_bytes(rk, key + i, len - i);
        } else {
            goto fail;
        }
        if (!*range)
            goto nomem;
    } else if (i != len) {
        goto fail;
    }
    free(hb.p);
    return 0;
nomem:
    rc = NERR_NOMEM;
fail:
    free(hb.p);
    json_decref(*hash);
    *hash = NULL;
    return rc == NERR_NOMEM ? nerr_set(err, rc, "out of memory")
                            : nerr_set(err, rc, "not a valid encoded key");
}

uint64_t av_key_hash(const json_t *hash)
{
    unsigned char *p;
    size_t len;
    if (av_key_prefix(hash, &p, &len, NULL) < 0)
        return 0;
    /* FNV-1a for the bytes, then splitmix64's finalizer so that nearby keys
     * land in unrelated partitions. Fixed constants: stable everywhere. */
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    free(p);
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

unsigned av_partition_of(const json_t *hash, unsigned nparts)
{
    uint64_t h = av_key_hash(hash) >> 32;
    return (unsigned)((h * (uint64_t)nparts) >> 32);
}

int av_key_check(const json_t *av, const char *name, const char *type, int is_hash, int in_item,
                 struct nerr *err)
{
    json_t *pl = NULL; /* av_kind leaves it unset for a value of no kind */
    enum av_kind want = kind_of_key(type), k;
    if (!av) {
        if (in_item)
            return nerr_set(err, NERR_INVALID, P_INVALID "Missing the key %s in the item", name);
        return nerr_set(err, NERR_INVALID, "The provided key element does not match the schema");
    }
    k = av_kind(av, &pl);
    if (k != want || !json_is_string(pl)) {
        if (in_item && k != K_NONE)
            return nerr_set(err, NERR_INVALID,
                            P_INVALID "Type mismatch for key %s expected: %s actual: %s", name,
                            type, KIND_NAME[k]);
        return nerr_set(err, NERR_INVALID, "The provided key element does not match the schema");
    }
    size_t size = k == K_S   ? json_string_length(pl)
                  : k == K_B ? b64_raw_len(pl)
                             : num_text_size(pl);
    if (k != K_N && size == 0)
        return nerr_set(err, NERR_INVALID,
                        "One or more parameter values are not valid. The AttributeValue for a key "
                        "attribute cannot contain an empty %s value. Key: %s",
                        k == K_S ? "string" : "binary", name);
    if (is_hash && size > AV_HASH_KEY_MAX)
        return nerr_set(err, NERR_INVALID,
                        P_INVALID "Size of hashkey has exceeded the maximum size limit of%d bytes",
                        AV_HASH_KEY_MAX);
    if (!is_hash && size > AV_RANGE_KEY_MAX)
        return nerr_set(err, NERR_INVALID,
                        P_INVALID
                        "Aggregated size of all range keys has exceeded the size limit of %d "
                        "bytes",
                        AV_RANGE_KEY_MAX);
    return 0;
}

/* The smallest byte string greater than every string that starts with p:
 * drop trailing 0xFF bytes, then increment the last. The prefix always ends
 * in 0x01, so this never empties. */
static int kb_successor(struct kbuf *b)
{
    while (b->len > 0 && b->p[b->len - 1] == 0xFF)
        b->len--;
    if (b->len == 0)
        return NERR_INTERNAL;
    b->p[b->len - 1]++;
    return 0;
}

int av_key_query_range(const json_t *hash, enum av_key_op op, const json_t *v1, const json_t *v2,
                       struct av_key_range *out, struct nerr *err)
{
    struct kbuf pre = {0}, lo = {0}, hi = {0};
    int rc;

    memset(out, 0, sizeof *out);
    if (op == AV_KEY_BEGINS_WITH) {
        const char *t = av_type(v1);
        if (!t || (strcmp(t, "S") && strcmp(t, "B")))
            return nerr_set(err, NERR_INVALID, "begins_with needs an S or B operand");
    }
    if ((rc = put_prefix(&pre, hash, err)) < 0)
        goto fail;
    /* lo: start; "x || 0x00" is the first string after x itself. */
    rc = kb_put(&lo, pre.p, pre.len);
    if (rc == 0 && (op == AV_KEY_EQ || op == AV_KEY_GT || op == AV_KEY_GE || op == AV_KEY_BETWEEN ||
                    op == AV_KEY_BEGINS_WITH)) {
        if ((rc = put_range(&lo, v1, err)) < 0)
            goto fail;
        if (op == AV_KEY_GT)
            rc = kb_byte(&lo, 0x00);
    }
    if (rc < 0)
        goto nomem;
    switch (op) {
    case AV_KEY_ALL:
    case AV_KEY_GT:
    case AV_KEY_GE:
        rc = kb_put(&hi, pre.p, pre.len);
        if (rc == 0)
            rc = kb_successor(&hi);
        break;
    case AV_KEY_EQ:
        rc = kb_put(&hi, lo.p, lo.len);
        if (rc == 0)
            rc = kb_byte(&hi, 0x00);
        break;
    case AV_KEY_LT:
    case AV_KEY_LE:
    case AV_KEY_BETWEEN:
        rc = kb_put(&hi, pre.p, pre.len);
        if (rc == 0 && (rc = put_range(&hi, op == AV_KEY_BETWEEN ? v2 : v1, err)) < 0)
            goto fail;
        if (rc == 0 && op != AV_KEY_LT)
            rc = kb_byte(&hi, 0x00);
        break;
    case AV_KEY_BEGINS_WITH:
        rc = kb_put(&hi, lo.p, lo.len);
        if (rc == 0)
            rc = kb_successor(&hi);
        break;
    }
    if (rc < 0)
        goto nomem;
    free(pre.p);
    out->lo = lo.p;
    out->lo_len = lo.len;
    out->hi = hi.p;
    out->hi_len = hi.len;
    return 0;
nomem:
    rc = nerr_set(err, NERR_NOMEM, "out of memory");
fail:
    free(pre.p);
    free(lo.p);
    free(hi.p);
    return rc;
}

void av_key_range_free(struct av_key_range *r)
{
    free(r->lo);
    free(r->hi);
    r->lo = r->hi = NULL;
    r->lo_len = r->hi_len = 0;
}
