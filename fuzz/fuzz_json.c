/* libFuzzer target for the request-decoding layer: the declarative JSON field spec
 * (bv_json_decode, bv_json_decode_object on nested objects and array elements), RFC 3339
 * time parsing and UUID validation. Any crash, sanitizer report or broken invariant
 * (abort) is a finding. Seeds: fuzz/corpus/json/. Built with -DBOVEDA_FUZZ=ON and clang. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "base/json.h"
#include "base/util.h"

typedef struct {
    const char *name;
    const char *currency;
    const char *kind;
    const char *opened_at;
    const char *id;
    int64_t amount;
    int64_t count;
    bool active;
    json_t *tags;
    json_t *metadata;
    json_t *lines;
} request_t;

static const char *const kinds[] = {"asset", "liability", "equity", "income", "expense", NULL};

static const bv_json_field_t request_spec[] = {
    {"name", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 64, offsetof(request_t, name), NULL},
    {"currency", BV_JSON_STRING, 0, 3, 3, offsetof(request_t, currency), NULL},
    {"kind", BV_JSON_STRING, BV_JSON_NULLABLE, 0, 0, offsetof(request_t, kind), kinds},
    {"opened_at", BV_JSON_STRING, 0, 10, 40, offsetof(request_t, opened_at), NULL},
    {"id", BV_JSON_STRING, 0, 0, 0, offsetof(request_t, id), NULL},
    {"amount", BV_JSON_INT, 0, 1, INT64_MAX, offsetof(request_t, amount), NULL},
    {"count", BV_JSON_INT, BV_JSON_NULLABLE, 0, 0, offsetof(request_t, count), NULL},
    {"active", BV_JSON_BOOL, 0, 0, 0, offsetof(request_t, active), NULL},
    {"tags", BV_JSON_ARRAY, 0, 0, 8, offsetof(request_t, tags), NULL},
    {"metadata", BV_JSON_OBJECT, BV_JSON_NULLABLE, 0, 0, offsetof(request_t, metadata), NULL},
    {"lines", BV_JSON_ARRAY, 0, 1, 16, offsetof(request_t, lines), NULL},
    BV_JSON_END,
};

typedef struct {
    const char *account_id;
    const char *amount;
    int64_t code;
} line_t;

static const bv_json_field_t line_spec[] = {
    {"account_id", BV_JSON_STRING, BV_JSON_REQUIRED, 36, 36, offsetof(line_t, account_id), NULL},
    {"amount", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 32, offsetof(line_t, amount), NULL},
    {"code", BV_JSON_INT, 0, 0, 65535, offsetof(line_t, code), NULL},
    BV_JSON_END,
};

#define CHECK(cond)  \
    do {             \
        if (!(cond)) \
            abort(); \
    } while (0)

static void check_error(const bv_json_error_t *err)
{
    /* Both strings must be NUL-terminated within their buffers. */
    CHECK(memchr(err->field, '\0', sizeof(err->field)) != NULL);
    CHECK(memchr(err->detail, '\0', sizeof(err->detail)) != NULL);
}

static void check_string(const char *s, const bv_json_field_t *f)
{
    if (s == NULL)
        return;
    size_t len = strlen(s);
    if (f->min > 0)
        CHECK((int64_t)len >= f->min);
    if (f->max > 0)
        CHECK((int64_t)len <= f->max);
    if (f->one_of != NULL) {
        bool found = false;
        for (const char *const *o = f->one_of; *o != NULL; o++)
            found |= strcmp(*o, s) == 0;
        CHECK(found);
    }
}

static void fuzz_time_and_uuid(const char *s)
{
    int64_t us = 0;
    if (bv_time_parse(s, &us) == 0) {
        /* A parsed time formats and parses back to the same instant. */
        char out[32];
        int64_t again = 0;
        bv_time_format(us, out);
        CHECK(memchr(out, '\0', sizeof(out)) != NULL);
        if (us >= 0 && us < INT64_C(253402300800000000)) { /* years 1970..9999 */
            CHECK(bv_time_parse(out, &again) == 0);
            CHECK(again == us);
        }
    }
    int valid = bv_uuid_valid(s);
    CHECK(valid == 0 || valid == 1);
    if (valid)
        CHECK(strlen(s) == BV_UUID_STR_LEN);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    request_t req;
    bv_json_error_t err;
    json_t *root = NULL;

    memset(&req, 0, sizeof(req));
    memset(&err, 0, sizeof(err));
    int rc = bv_json_decode((const char *)data, size, request_spec, &req, &root, &err);
    CHECK(rc == 0 || rc == BV_EMALFORMED || rc == BV_EINVALID);
    if (rc != 0) {
        CHECK(root == NULL);
        check_error(&err);
    } else {
        CHECK(root != NULL);
        CHECK(req.name != NULL); /* required */
        for (const bv_json_field_t *f = request_spec; f->name != NULL; f++)
            if (f->type == BV_JSON_STRING)
                check_string(*(const char **)((const char *)&req + f->offset), f);
        if (req.amount != 0)
            CHECK(req.amount >= 1);
        if (req.tags != NULL)
            CHECK(json_is_array(req.tags) && json_array_size(req.tags) <= 8);
        if (req.lines != NULL) {
            CHECK(json_array_size(req.lines) >= 1 && json_array_size(req.lines) <= 16);
            size_t i;
            json_t *el;
            json_array_foreach(req.lines, i, el)
            {
                line_t line;
                char prefix[32];
                memset(&line, 0, sizeof(line));
                snprintf(prefix, sizeof(prefix), "lines[%zu]", i);
                int lrc = bv_json_decode_object(el, prefix, line_spec, &line, &err);
                CHECK(lrc == 0 || lrc == BV_EINVALID);
                if (lrc != 0) {
                    check_error(&err);
                    break;
                }
                check_string(line.account_id, &line_spec[0]);
                (void)bv_uuid_valid(line.account_id);
            }
        }
        if (req.opened_at != NULL)
            fuzz_time_and_uuid(req.opened_at);
        if (req.id != NULL)
            fuzz_time_and_uuid(req.id);
        char *dumped = bv_json_dump(root);
        CHECK(dumped != NULL);
        free(dumped);
        json_decref(root);
    }

    /* The raw input as a string for the time and UUID parsers. */
    if (size <= 256) {
        char s[257];
        memcpy(s, data, size);
        s[size] = '\0';
        fuzz_time_and_uuid(s);
    }
    return 0;
}
