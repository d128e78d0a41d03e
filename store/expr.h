/*
 * expr.h — DynamoDB expressions: ConditionExpression / FilterExpression,
 * UpdateExpression, ProjectionExpression and KeyConditionExpression.
 *
 * Life cycle: parse once into a struct expr (an AST), evaluate many times,
 * expr_free. Placeholders are resolved at parse time: #name from
 * ExpressionAttributeNames, :value from ExpressionAttributeValues (each a
 * JSON object, or NULL). Every value used is validated and canonicalized in
 * place with av_validate (so the caller's values object is modified). The
 * expr takes a reference to both objects (json_incref) and points into them:
 * the caller must not modify them while the expr lives.
 *
 * Grammar (keywords case-insensitive; docs/expressions.md has the details):
 *   condition  := cond OR cond | cond AND cond | NOT cond | ( cond )
 *               | operand (= | <> | < | <= | > | >=) operand
 *               | operand BETWEEN operand AND operand
 *               | operand IN ( operand, ... )            (at most 100)
 *               | attribute_exists(path) | attribute_not_exists(path)
 *               | attribute_type(path, :t) | begins_with(path, operand)
 *               | contains(path, operand)
 *   operand    := path | :value | size(path)
 *   path       := (name | #name) ( .(name | #name) | [digits] )*
 *   update     := (SET a = v, ... | REMOVE path, ... | ADD path :v, ...
 *                 | DELETE path :v, ...)+, each clause at most once
 *   v          := x | x + x | x - x;  x := path | :value
 *                 | if_not_exists(path, x) | list_append(x, x)
 *   projection := path, path, ...
 *
 * Limits (a hostile expression gets an error, never deep recursion): text
 * <= 4096 bytes, <= 300 operators, <= 100 IN operands, parenthesis/function
 * nesting <= 64, document paths <= 32 levels.
 *
 * Errors: NERR_INVALID with DynamoDB's ValidationException text in
 * err->msg, prefixed "Invalid <Kind>Expression: " where DynamoDB does so;
 * NERR_NOMEM. Evaluation errors of updates (wrong operand types at run time,
 * invalid document paths) are NERR_INVALID too.
 *
 * Evaluation is pure and deterministic: the same expr and item give the same
 * result on every replica. A struct expr is immutable after parsing, so
 * several threads may evaluate it at once; items are not shared.
 */
#ifndef NINES_STORE_EXPR_H
#define NINES_STORE_EXPR_H

#include <jansson.h>
#include <stddef.h>

#include "lib/err.h"
#include "proto/av.h"

#define EXPR_MAX_TEXT 4096
#define EXPR_MAX_OPERATORS 300
#define EXPR_MAX_IN 100
#define EXPR_MAX_NESTING 64

struct expr;

/* A ConditionExpression or FilterExpression; label is the request field name
 * used in messages ("ConditionExpression" or "FilterExpression"). */
int expr_parse_condition(const char *text, const char *label, json_t *names, json_t *values,
                         struct expr **out, struct nerr *err);

int expr_parse_update(const char *text, json_t *names, json_t *values, struct expr **out,
                      struct nerr *err);

int expr_parse_projection(const char *text, json_t *names, struct expr **out, struct nerr *err);

/* The table's key schema; range_name NULL for a hash-only table; types are
 * "S", "N" or "B". Borrowed for the call. */
struct expr_key_schema {
    const char *hash_name;
    const char *hash_type;
    const char *range_name;
    const char *range_type;
};

/* What a KeyConditionExpression asks for: hash = *hash, and range <op> v1
 * [AND v2] (op AV_KEY_ALL when there is no range condition). Pointers are
 * borrowed from the expr's values and live as long as the expr. Feed them to
 * av_key_query_range. */
struct expr_key_cond {
    const json_t *hash;
    enum av_key_op op;
    const json_t *v1;
    const json_t *v2;
};

int expr_parse_key_condition(const char *text, json_t *names, json_t *values,
                             const struct expr_key_schema *schema, struct expr **out,
                             struct expr_key_cond *kc, struct nerr *err);

/* Evaluates a condition against item (NULL: the item does not exist, every
 * path is missing). *result is 1 or 0. */
int expr_eval_condition(const struct expr *e, const json_t *item, int *result, struct nerr *err);

/* Applies an update to item (a JSON object of name -> AV, possibly empty:
 * the caller creates it with the key attributes when the item is new). All
 * right-hand sides read the item as it was before the update, as in
 * DynamoDB. key_names lists the table's key attribute names, which the
 * update must not touch. On error the item is left unchanged. */
int expr_apply_update(const struct expr *e, json_t *item, const char *const *key_names,
                      size_t nkeys, struct nerr *err);

/* A new item with only the projected paths (nested paths keep their
 * structure; list elements keep their order). NULL on allocation failure. */
json_t *expr_project(const struct expr *e, const json_t *item);

/* Checks the shape of ExpressionAttributeNames / ExpressionAttributeValues
 * before parsing: objects, keys starting with '#' / ':', not empty
 * ("ExpressionAttributeValues must not be empty"), names are strings. */
int expr_check_attribute_maps(const json_t *names, const json_t *values, struct nerr *err);

/* DynamoDB rejects entries of names/values that no expression of the request
 * used: "Value provided in ExpressionAttributeNames unused in expressions:
 * keys: {#a}" (names checked first, then values). exprs may contain NULLs. */
int expr_check_unused(const json_t *names, const json_t *values, struct expr *const *exprs,
                      size_t n, struct nerr *err);

void expr_free(struct expr *e);

#endif
