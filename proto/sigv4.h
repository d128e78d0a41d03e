/*
 * sigv4.h — AWS Signature Version 4 (AWS4-HMAC-SHA256): verify on the server,
 * sign in nines' own clients.
 *
 * The algorithm is AWS's, step by step, so that requests from the real AWS CLI
 * and SDKs verify, and requests nines signs are accepted by anything that
 * speaks SigV4:
 *
 *   canonical request = METHOD \n canonical URI \n canonical query \n
 *                       canonical headers \n signed headers \n payload hash
 *   string to sign    = "AWS4-HMAC-SHA256" \n X-Amz-Date \n scope \n hex(SHA256(canonical request))
 *   scope             = DATE/REGION/SERVICE/aws4_request
 *   signing key       = HMAC(HMAC(HMAC(HMAC("AWS4" secret, DATE), REGION), SERVICE),
 * "aws4_request") signature         = hex(HMAC(signing key, string to sign))
 *
 * Canonicalisation rules used here:
 *   - URI: the path may be given raw ("/a b") or percent-encoded as on the
 *     wire ("/a%20b"); %XX escapes are decoded first so a wire path is never
 *     encoded twice, dot segments and empty segments are removed (a trailing
 *     slash is kept), then each segment is RFC 3986-encoded (A-Z a-z 0-9 - . _ ~
 *     kept, everything else %XX upper-case). This is the non-S3 ("normalise,
 *     encode once") variant, which is what DynamoDB clients sign.
 *   - query: split on '&', each name=value decoded then encoded as above,
 *     sorted by name then value; "+" is a literal plus, not a space.
 *   - headers: names lower-cased; values trimmed with inner runs of spaces and
 *     tabs collapsed to one space; repeated headers joined with ',' in order.
 *   - payload hash: the X-Amz-Content-Sha256 header if present, else
 *     hex(SHA256(body)). On verify, a present X-Amz-Content-Sha256 must equal
 *     the body's hash (UNSIGNED-PAYLOAD is refused), so the body is always
 *     covered by the signature.
 *
 * Ownership: every pointer in struct sigv4_request is borrowed for the call
 * only. Strings returned through char ** are malloc'd and owned by the caller
 * (free()). Header names are matched case-insensitively.
 *
 * Errors: the int-returning functions return 0 or a negative NERR_* code
 * (NERR_NOMEM; NERR_INVALID for an argument that cannot be signed, such as a
 * signed header the request does not carry). sigv4_verify never fails with a
 * code; it returns a verdict and, when why is non-NULL, a one-line reason
 * written in the words DynamoDB uses, suitable for the error's "message".
 *
 * Thread-safety: all functions are reentrant; struct sigv4_signer is not
 * shared-safe (one per thread, or a lock around it).
 */
#ifndef NINES_PROTO_SIGV4_H
#define NINES_PROTO_SIGV4_H

#include <stddef.h>
#include <time.h>

struct sigv4_header {
    const char *name;
    const char *value;
};

struct sigv4_request {
    const char *method; /* "POST" */
    const char *path;   /* "/" (raw or percent-encoded, see above) */
    const char *query;  /* without '?', may be "" or NULL */
    const struct sigv4_header *headers;
    size_t nheaders;
    const void *body;
    size_t body_len;
};

/* The API layer maps these to DynamoDB's errors (all HTTP 400):
 *   SIGV4_MISSING              MissingAuthenticationTokenException
 *   SIGV4_MALFORMED            IncompleteSignatureException
 *   SIGV4_UNRECOGNIZED_CLIENT  UnrecognizedClientException
 *   SIGV4_INVALID_SIGNATURE    InvalidSignatureException
 *   SIGV4_EXPIRED              InvalidSignatureException ("Signature expired: ...") */
enum sigv4_verdict {
    SIGV4_OK = 0,
    SIGV4_MISSING,
    SIGV4_UNRECOGNIZED_CLIENT,
    SIGV4_INVALID_SIGNATURE,
    SIGV4_EXPIRED,
    SIGV4_MALFORMED
};

/* The verdict's name ("SIGV4_EXPIRED"); never NULL. */
const char *sigv4_verdict_name(enum sigv4_verdict v);

/* Allowed clock difference between signer and verifier, either direction. */
#define SIGV4_MAX_SKEW_SECONDS (15 * 60)

/*
 * Verifies r's Authorization header. lookup(arg, akid) returns the secret
 * access key for an access key id, or NULL if the id is unknown; the returned
 * string is borrowed until sigv4_verify returns. now is the verifier's clock
 * (injected so tests can fix it). The request date comes from X-Amz-Date
 * (YYYYMMDDTHHMMSSZ) or, failing that, Date (RFC 1123); it must be within
 * SIGV4_MAX_SKEW_SECONDS of now and agree with the credential scope's date.
 * Region and service are taken from the credential scope as signed; the
 * caller may restrict them with sigv4_parse_authorization.
 * why (may be NULL) receives a NUL-terminated reason, truncated to why_cap.
 */
enum sigv4_verdict sigv4_verify(const struct sigv4_request *r,
                                const char *(*lookup)(void *arg, const char *akid), void *arg,
                                time_t now, char *why, size_t why_cap);

/* The parts of an "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..."
 * value, copied into fixed buffers. Returns 0, or NERR_INVALID (with a reason
 * in why) when the value is not of that form. */
struct sigv4_auth {
    char akid[129];
    char date[9]; /* YYYYMMDD */
    char region[64];
    char service[64];
    char signed_headers[1024];
    char signature[65];
};
int sigv4_parse_authorization(const char *value, struct sigv4_auth *out, char *why, size_t why_cap);

/*
 * Builds the canonical request for r, signing the headers named in
 * signed_headers ("host;x-amz-date", lower-case, ';'-separated, in that
 * order) or, if signed_headers is NULL, every header of r except
 * Authorization. *out is malloc'd. NERR_INVALID if a named header is absent.
 */
int sigv4_canonical_request(const struct sigv4_request *r, const char *signed_headers, char **out);

/* The string to sign for a canonical request; amz_date is YYYYMMDDTHHMMSSZ,
 * scope DATE/REGION/SERVICE/aws4_request. *out is malloc'd. */
int sigv4_string_to_sign(const char *canonical_request, const char *amz_date, const char *scope,
                         char **out);

/* Longest secret access key accepted (AWS's are 40 characters). */
#define SIGV4_MAX_SECRET 128

/* The derived signing key for (secret, date YYYYMMDD, region, service).
 * NERR_INVALID if the secret is longer than SIGV4_MAX_SECRET. */
int sigv4_signing_key(const char *secret, const char *date, const char *region, const char *service,
                      unsigned char key[32]);

/* hex(HMAC-SHA256(key, string_to_sign)), lower-case, NUL-terminated. */
void sigv4_signature(const unsigned char key[32], const char *string_to_sign, char hex[65]);

/*
 * Signs r as of now: the signed headers are every header of r (r must not
 * carry Authorization or X-Amz-Date: those are what this produces) plus
 * x-amz-date. Writes the X-Amz-Date value to send into amz_date (17 bytes)
 * and the Authorization value into *authorization (malloc'd).
 * NERR_INVALID for a bad argument, NERR_NOMEM.
 */
int sigv4_sign(const struct sigv4_request *r, const char *akid, const char *secret,
               const char *region, const char *service, time_t now, char *amz_date,
               char **authorization);

/*
 * A signer for a client that signs many requests: it keeps the derived
 * signing key for the current date (recomputed when the UTC day changes) and
 * writes the Authorization value into a caller buffer (the canonical request
 * and the string to sign are still short-lived heap buffers). The strings given to
 * sigv4_signer_init are copied. NERR_INVALID if one is too long (access key ids 128, secrets
 * SIGV4_MAX_SECRET, region and service 63 bytes).
 */
struct sigv4_signer {
    char akid[129];
    char secret[SIGV4_MAX_SECRET + 1];
    char region[64];
    char service[64];
    char key_date[9]; /* the date key was derived for, "" if none yet */
    unsigned char key[32];
};
int sigv4_signer_init(struct sigv4_signer *s, const char *akid, const char *secret,
                      const char *region, const char *service);
/* Like sigv4_sign, writing the Authorization value into auth[0..auth_cap).
 * NERR_LIMIT if auth_cap is too small. */
int sigv4_signer_sign(struct sigv4_signer *s, const struct sigv4_request *r, time_t now,
                      char *amz_date, char *auth, size_t auth_cap);

#endif
