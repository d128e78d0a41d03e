/*
 * av.h — DynamoDB's data model: AttributeValues, exact decimal numbers, item
 * sizes, equality and ordering, and the byte encoding of table keys.
 *
 * Wire form. An item is a JSON object {attribute name: AttributeValue}; an
 * AttributeValue (AV) is a JSON object with exactly one type key:
 *   {"S":"x"} {"N":"12.5"} {"B":"<base64>"} {"BOOL":true} {"NULL":true}
 *   {"M":{...}} {"L":[...]} {"SS":[...]} {"NS":[...]} {"BS":[...]}
 * Everything here works on jansson json_t in that form.
 *
 * Canonical form. av_validate() rewrites every N and NS element to the
 * canonical number text (av_num_format) and every B/BS element to canonical
 * base64 (zero pad bits), and drops members that are not type keys (DynamoDB's
 * deserializer ignores them). So two replicas that validate the same request
 * store the same bytes, and the other functions may assume validated input.
 *
 * Numbers (struct av_num) are exact decimals: ±mant×10^exp with up to 38
 * significant digits and magnitude 1E-130 .. 9.99..E+125, as DynamoDB. No
 * binary floating point is used anywhere.
 *
 * Keys. A table key is a hash (partition) value and an optional range (sort)
 * value, each S, N or B. av_key_encode() maps them to LMDB key bytes:
 *
 *   key     = prefix range?
 *   prefix  = tag(hash type) escaped(hash bytes) 0x00 0x01
 *   tag     = 0x10 (S), 0x11 (N), 0x12 (B)   -- so the first byte is >= 0x01
 *   escaped = each 0x00 byte written as 0x00 0xFF
 *   hash bytes: S = UTF-8, B = decoded bytes, N = canonical text
 *   range   = S/B: the raw bytes (bytewise order is DynamoDB's order);
 *             N:   class byte 0x01 negative, 0x02 zero, 0x03 positive, then
 *                  for positives: byte (E+130) where E = adjusted exponent
 *                  (value = d.ddd × 10^E, -130 <= E <= 125), then the digits
 *                  packed two per byte as 1 + 10*d1 + d2 (a lone last digit d
 *                  as 1 + 10*d); for negatives every byte after the class is
 *                  complemented (255-exp byte, 101-digit byte) and 0xFF ends it.
 * The escaping makes prefixes prefix-free, so (1) all keys of one hash value
 * are exactly the keys starting with its prefix, a contiguous range; and (2)
 * under one prefix, memcmp order of keys is DynamoDB's range-key order.
 * Every byte after the prefix is >= 0x01 for N; for S/B it may be anything.
 * av_key_query_range() turns a Query's key condition into a half-open LMDB
 * cursor range [lo, hi): position a cursor at lo (MDB_SET_RANGE), walk while
 * key < hi (memcmp, shorter-is-smaller); descending: start at the last key < hi.
 *
 * Errors: NERR_INVALID with DynamoDB's ValidationException message in
 * err->msg; NERR_PARSE for wire-shape errors that DynamoDB reports as a
 * SerializationException (e.g. {"S": 5}); NERR_NOMEM.
 *
 * Ownership: json arguments are borrowed; av_validate/av_validate_item modify
 * their argument in place (canonicalization). Output buffers from
 * av_key_* are malloc'd and owned by the caller (free()).
 *
 * Thread-safety: no shared state; functions are safe on distinct objects.
 * jansson objects must not be shared across threads while being modified.
 */
#ifndef NINES_PROTO_AV_H
#define NINES_PROTO_AV_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define AV_NUM_MAX_DIGITS 38
#define AV_NUM_MAX_EXP 125  /* largest adjusted exponent */
#define AV_NUM_MIN_EXP -130 /* smallest adjusted exponent */
/* Longest canonical text: "-0." + 129 zeros + 38 digits, plus NUL. */
#define AV_NUM_STR_MAX 176
#define AV_MAX_DEPTH 32         /* M/L nesting levels */
#define AV_ITEM_MAX_SIZE 409600 /* bytes, per av_item_size */
#define AV_NAME_MAX 65535       /* attribute name bytes */
#define AV_HASH_KEY_MAX 2048    /* bytes of a hash key value */
#define AV_RANGE_KEY_MAX 1024   /* bytes of a range key value */

/* value = (neg ? -1 : 1) × mant × 10^exp. Normalized: mant has no trailing
 * zero digit; zero is {0, 0, 0}. */
struct av_num {
    unsigned __int128 mant;
    int32_t exp;
    int neg;
};

/* Parses DynamoDB number text: [+-]digits[.digits][(e|E)[+-]digits], or
 * [+-].digits; leading zeros allowed. Errors (NERR_INVALID):
 * "The parameter cannot be converted to a numeric value[: s]",
 * "Attempting to store more than 38 significant digits in a Number",
 * "Number overflow. Attempting to store a number with magnitude larger than supported range",
 * "Number underflow. Attempting to store a number with magnitude smaller than supported range". */
int av_num_parse(const char *s, struct av_num *out, struct nerr *err);

/* Same, for text that is not NUL-terminated. */
int av_num_parse_n(const char *s, size_t len, struct av_num *out, struct nerr *err);

/* Canonical text: plain decimal, no exponent, no leading/trailing zeros,
 * never "-0". Returns the length written (without NUL) or NERR_LIMIT if cap
 * is too small (AV_NUM_STR_MAX always suffices). */
int av_num_format(const struct av_num *n, char *buf, size_t cap);

/* -1, 0, 1 by numeric value. */
int av_num_cmp(const struct av_num *a, const struct av_num *b);

/* Exact sum / difference. If the exact result needs more than 38 significant
 * digits or is out of range: NERR_INVALID with DynamoDB's message. */
int av_num_add(const struct av_num *a, const struct av_num *b, struct av_num *out,
               struct nerr *err);
int av_num_sub(const struct av_num *a, const struct av_num *b, struct av_num *out,
               struct nerr *err);

/* Number of significant digits of n (1 for zero). */
int av_num_digits(const struct av_num *n);

/* A new {"N": "..."} AV holding n, or NULL on allocation failure. */
json_t *av_num_to_json(const struct av_num *n);

/* Parses the N of a validated {"N": ...} AV (or any number text held in a
 * json string). */
int av_num_from_json(const json_t *av_or_str, struct av_num *out, struct nerr *err);

/* Validates one AV recursively and canonicalizes it in place (see above). */
int av_validate(json_t *av, struct nerr *err);

/* Validates an item: a JSON object of name -> AV; names 1..65535 bytes. */
int av_validate_item(json_t *item, struct nerr *err);

/* DynamoDB's item size in bytes (names + values). Input must be validated. */
size_t av_item_size(const json_t *item);

/* Size of one AV (without a name), by the same rules. */
size_t av_value_size(const json_t *av);

/* 1 if equal by DynamoDB's rules (N by value, sets order-insensitive, M/L
 * deep), else 0. Invalid AVs are never equal. */
int av_equal(const json_t *a, const json_t *b);

/* Ordering of two AVs of the same scalar type S, N or B; *cmp = -1/0/1.
 * NERR_INVALID if types differ or are not S/N/B. */
int av_compare(const json_t *a, const json_t *b, int *cmp);

/* "S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS" (a static
 * string), or NULL if av is not an object with exactly one type key. */
const char *av_type(const json_t *av);

/* The payload under the type key (borrowed), or NULL. */
json_t *av_payload(const json_t *av);

/* Decodes the base64 payload of a B AV or a BS element string. *out is
 * malloc'd (caller frees; non-NULL even for zero bytes). */
int av_b64_decode(const char *s, size_t len, unsigned char **out, size_t *outlen, struct nerr *err);

/* Checks one key attribute of a request against the schema: present, of the
 * schema's type (S/N/B), non-empty, within size limits (is_hash selects
 * 2048 or 1024 bytes). av may be NULL (missing). DynamoDB words these
 * differently for a Key parameter (GetItem, DeleteItem, UpdateItem:
 * in_item = 0, "The provided key element does not match the schema") and for
 * an Item (PutItem, BatchWriteItem puts: in_item = 1, "One or more parameter
 * values were invalid: Missing the key pk in the item" / "... Type mismatch
 * for key pk expected: S actual: N"). Empty values: "One or more parameter
 * values are not valid. The AttributeValue for a key attribute cannot contain
 * an empty string value. Key: pk" (binary: "... empty binary value ..."). */
int av_key_check(const json_t *av, const char *name, const char *type, int is_hash, int in_item,
                 struct nerr *err);

/* Encodes (hash, range) into LMDB key bytes (format above). range may be
 * NULL for hash-only tables. Values must be validated S/N/B AVs. */
int av_key_encode(const json_t *hash, const json_t *range, unsigned char **out, size_t *len,
                  struct nerr *err);

/* The prefix shared by every key with this hash value. */
int av_key_prefix(const json_t *hash, unsigned char **out, size_t *len, struct nerr *err);

/* Splits an encoded key back into AVs. hash_type/range_type are the schema
 * types ("S"/"N"/"B"; range_type NULL for hash-only tables). *hash and *range
 * are new references. NERR_CORRUPT if the bytes are not a valid encoding. */
int av_key_decode(const unsigned char *key, size_t len, const char *range_type, json_t **hash,
                  json_t **range, struct nerr *err);

/* Stable 64-bit hash of the hash value (over its canonical prefix bytes):
 * the same on every run and machine. 0 if hash is not a valid key AV. */
uint64_t av_key_hash(const json_t *hash);

/* The partition (0..nparts-1) that owns a hash value: the top 32 bits of
 * av_key_hash scaled onto nparts, so partitions are contiguous ranges of the
 * hash space. The one placement formula: the catalog routes by it and the
 * toolkit predicts placement with it. nparts > 0. */
unsigned av_partition_of(const json_t *hash, unsigned nparts);

/* A Query's range-key condition. */
enum av_key_op {
    AV_KEY_ALL = 0, /* no range condition: every item of the hash */
    AV_KEY_EQ,
    AV_KEY_LT,
    AV_KEY_LE,
    AV_KEY_GT,
    AV_KEY_GE,
    AV_KEY_BETWEEN,    /* v1 <= range <= v2 */
    AV_KEY_BEGINS_WITH /* S or B only */
};

/* A half-open byte range [lo, hi) of encoded keys; both malloc'd. */
struct av_key_range {
    unsigned char *lo;
    size_t lo_len;
    unsigned char *hi;
    size_t hi_len;
};

/* Computes the cursor range for hash = hv AND range <op> v1 [AND v2]. v1/v2
 * are ignored when unused by op. An empty range (lo >= hi) is possible, e.g.
 * BETWEEN with v1 > v2 (the expression layer rejects that earlier). */
int av_key_query_range(const json_t *hash, enum av_key_op op, const json_t *v1, const json_t *v2,
                       struct av_key_range *out, struct nerr *err);

/* Frees the buffers of r (not r itself); safe on a zeroed struct. */
void av_key_range_free(struct av_key_range *r);

#endif
