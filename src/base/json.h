/* Declarative JSON request decoding (jansson underneath). A handler describes the fields
 * it accepts; decoding checks types, bounds, required fields and rejects unknown fields,
 * and names the offending field (or the parse position) on failure. */
#ifndef BV_BASE_JSON_H
#define BV_BASE_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

typedef enum {
    BV_JSON_STRING,  /* out: const char * (borrowed from the root; NULL when absent/null) */
    BV_JSON_INT,     /* out: int64_t (left untouched when absent) */
    BV_JSON_BOOL,    /* out: bool (left untouched when absent) */
    BV_JSON_OBJECT,  /* out: json_t * (borrowed) */
    BV_JSON_ARRAY,   /* out: json_t * (borrowed); min/max bound the element count */
} bv_json_type_t;

#define BV_JSON_REQUIRED 0x1u /* absent -> error */
#define BV_JSON_NULLABLE 0x2u /* explicit null accepted (treated as absent) */

typedef struct {
    const char *name;
    bv_json_type_t type;
    unsigned flags;
    int64_t min, max;          /* string: byte length; int: value; array: element count. 0,0 = none */
    size_t offset;             /* offsetof(your_struct, member) */
    const char *const *one_of; /* optional NULL-terminated list of allowed string values */
} bv_json_field_t;

#define BV_JSON_END {NULL, 0, 0, 0, 0, 0, NULL}

typedef struct {
    char field[96];   /* dotted path of the offending field, "" for the document itself */
    char detail[192]; /* human readable, safe to return to the client (never echoes values) */
} bv_json_error_t;

/* Parses body (len bytes, not necessarily NUL-terminated) and decodes the top-level object
 * into out. On success *root_out holds the document (caller json_decref()s it; borrowed
 * pointers in out live as long as it). Returns 0, BV_EMALFORMED (syntax; err->detail has
 * line/column) or BV_EINVALID (err->field names the field). */
int bv_json_decode(const char *body, size_t len, const bv_json_field_t *fields, void *out,
                   json_t **root_out, bv_json_error_t *err);

/* Decodes an already parsed object; `prefix` (may be NULL) is prepended to field names in
 * errors, e.g. "transfers[3]". Returns 0 or BV_EINVALID. */
int bv_json_decode_object(json_t *obj, const char *prefix, const bv_json_field_t *fields, void *out,
                          bv_json_error_t *err);

/* Serialises v compactly into a malloc'd string (caller frees), exactly as
 * json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) does, but with strings copied in runs
 * rather than character by character (several times faster for long strings such as
 * tokens). NULL on OOM. */
char *bv_json_dump(const json_t *v);
/* Appends the same text to b. 0 or BV_ENOMEM. */
int bv_buf_json_value(bv_buf_t *b, const json_t *v);

/* ---- writing JSON into a buffer ---- */

/* Appends s as a JSON string, escaped; `null` when s is NULL, or empty and empty_null.
 * 0 or BV_ENOMEM. */
int bv_buf_json_string(bv_buf_t *b, const char *s, bool empty_null);
/* Appends the RFC 3339 UTC time of `us` (microseconds) as a JSON string, `null` when 0. */
int bv_buf_json_time(bv_buf_t *b, int64_t us);

#endif
