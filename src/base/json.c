#include "base/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "base/log.h"

static void set_err(bv_json_error_t *err, const char *prefix, const char *field, const char *detail)
{
    if (err == NULL)
        return;
    if (prefix != NULL && prefix[0] != '\0')
        snprintf(err->field, sizeof(err->field), "%s.%s", prefix, field);
    else
        snprintf(err->field, sizeof(err->field), "%s", field);
    snprintf(err->detail, sizeof(err->detail), "%s", detail);
}

static const bv_json_field_t *find_field(const bv_json_field_t *fields, const char *key)
{
    for (const bv_json_field_t *f = fields; f->name != NULL; f++)
        if (strcmp(f->name, key) == 0)
            return f;
    return NULL;
}

static int decode_one(const bv_json_field_t *f, json_t *v, const char *prefix, void *out,
                      bv_json_error_t *err)
{
    char *slot = (char *)out + f->offset;
    char msg[160];
    switch (f->type) {
    case BV_JSON_STRING: {
        if (!json_is_string(v)) {
            set_err(err, prefix, f->name, "must be a string");
            return BV_EINVALID;
        }
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (strlen(s) != len) {
            set_err(err, prefix, f->name, "must not contain NUL characters");
            return BV_EINVALID;
        }
        if ((f->min > 0 && (int64_t)len < f->min) || (f->max > 0 && (int64_t)len > f->max)) {
            snprintf(msg, sizeof(msg), "length must be between %lld and %lld bytes", (long long)f->min,
                     (long long)f->max);
            set_err(err, prefix, f->name, msg);
            return BV_EINVALID;
        }
        if (f->one_of != NULL) {
            int ok = 0;
            for (const char *const *o = f->one_of; *o != NULL; o++)
                ok |= strcmp(*o, s) == 0;
            if (!ok) {
                size_t m = (size_t)snprintf(msg, sizeof(msg), "must be one of:");
                for (const char *const *o = f->one_of; *o != NULL && m < sizeof(msg); o++)
                    m += (size_t)snprintf(msg + m, sizeof(msg) - m, " %s", *o);
                set_err(err, prefix, f->name, msg);
                return BV_EINVALID;
            }
        }
        memcpy(slot, &s, sizeof(s));
        return 0;
    }
    case BV_JSON_INT: {
        if (!json_is_integer(v)) {
            set_err(err, prefix, f->name, "must be an integer");
            return BV_EINVALID;
        }
        int64_t i = (int64_t)json_integer_value(v);
        if ((f->min != 0 || f->max != 0) && (i < f->min || i > f->max)) {
            snprintf(msg, sizeof(msg), "must be between %lld and %lld", (long long)f->min, (long long)f->max);
            set_err(err, prefix, f->name, msg);
            return BV_EINVALID;
        }
        memcpy(slot, &i, sizeof(i));
        return 0;
    }
    case BV_JSON_BOOL: {
        if (!json_is_boolean(v)) {
            set_err(err, prefix, f->name, "must be a boolean");
            return BV_EINVALID;
        }
        bool b = json_is_true(v);
        memcpy(slot, &b, sizeof(b));
        return 0;
    }
    case BV_JSON_OBJECT:
        if (!json_is_object(v)) {
            set_err(err, prefix, f->name, "must be an object");
            return BV_EINVALID;
        }
        memcpy(slot, &v, sizeof(v));
        return 0;
    case BV_JSON_ARRAY:
        if (!json_is_array(v)) {
            set_err(err, prefix, f->name, "must be an array");
            return BV_EINVALID;
        }
        if ((f->min > 0 && (int64_t)json_array_size(v) < f->min) ||
            (f->max > 0 && (int64_t)json_array_size(v) > f->max)) {
            snprintf(msg, sizeof(msg), "must have between %lld and %lld elements", (long long)f->min,
                     (long long)f->max);
            set_err(err, prefix, f->name, msg);
            return BV_EINVALID;
        }
        memcpy(slot, &v, sizeof(v));
        return 0;
    }
    set_err(err, prefix, f->name, "unsupported field type");
    return BV_EINVALID;
}

int bv_json_decode_object(json_t *obj, const char *prefix, const bv_json_field_t *fields, void *out,
                          bv_json_error_t *err)
{
    if (!json_is_object(obj)) {
        set_err(err, "", prefix ? prefix : "", "must be a JSON object");
        return BV_EINVALID;
    }
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        if (find_field(fields, key) == NULL) {
            set_err(err, prefix, key, "unknown field");
            return BV_EINVALID;
        }
    }
    for (const bv_json_field_t *f = fields; f->name != NULL; f++) {
        v = json_object_get(obj, f->name);
        if (v == NULL || json_is_null(v)) {
            if (v != NULL && !(f->flags & BV_JSON_NULLABLE)) {
                set_err(err, prefix, f->name, "must not be null");
                return BV_EINVALID;
            }
            if (f->flags & BV_JSON_REQUIRED) {
                set_err(err, prefix, f->name, "is required");
                return BV_EINVALID;
            }
            continue;
        }
        int rc = decode_one(f, v, prefix, out, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int bv_json_decode(const char *body, size_t len, const bv_json_field_t *fields, void *out,
                   json_t **root_out, bv_json_error_t *err)
{
    json_error_t jerr;
    *root_out = NULL;
    if (body == NULL || len == 0) {
        set_err(err, "", "", "request body is empty; a JSON object is required");
        return BV_EMALFORMED;
    }
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (root == NULL) {
        if (err != NULL) {
            /* jansson's text may quote the input ("... near 'xyz'"): keep only the reason */
            char *near = strstr(jerr.text, " near ");
            if (near != NULL)
                *near = '\0';
            err->field[0] = '\0';
            snprintf(err->detail, sizeof(err->detail), "JSON syntax error at line %d, column %d (byte %d): %.100s",
                     jerr.line, jerr.column, jerr.position, jerr.text);
        }
        return BV_EMALFORMED;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        set_err(err, "", "", "request body must be a JSON object");
        return BV_EINVALID;
    }
    int rc = bv_json_decode_object(root, NULL, fields, out, err);
    if (rc != 0) {
        json_decref(root);
        return rc;
    }
    *root_out = root;
    return 0;
}

/* Appends s (len bytes, valid UTF-8 as jansson keeps it) as a JSON string the way jansson's
 * compact dump writes it: runs of plain bytes copied at once, \" \\ \b \f \n \r \t and
 * \u00XX for the other control characters, everything else (UTF-8 included) as is. */
static int dump_string(bv_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    if (bv_buf_puts(b, "\"") != 0)
        return BV_ENOMEM;
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        if (bv_buf_append(b, s + run, i - run) != 0)
            return BV_ENOMEM;
        char esc[7] = {'\\', 0};
        size_t el = 2;
        switch (ch) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            el = 6;
        }
        if (bv_buf_append(b, esc, el) != 0)
            return BV_ENOMEM;
        run = i + 1;
    }
    return bv_buf_append(b, s + run, len - run) != 0 || bv_buf_puts(b, "\"") != 0 ? BV_ENOMEM : 0;
}

int bv_buf_json_value(bv_buf_t *b, const json_t *v)
{
    char num[32];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *m;
        int first = 1;
        if (bv_buf_puts(b, "{") != 0)
            return BV_ENOMEM;
        json_object_foreach((json_t *)v, key, m) {
            if ((!first && bv_buf_puts(b, ",") != 0) || dump_string(b, key, strlen(key)) != 0 ||
                bv_buf_puts(b, ":") != 0 || bv_buf_json_value(b, m) != 0)
                return BV_ENOMEM;
            first = 0;
        }
        return bv_buf_puts(b, "}") != 0 ? BV_ENOMEM : 0;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *m;
        if (bv_buf_puts(b, "[") != 0)
            return BV_ENOMEM;
        json_array_foreach(v, i, m) {
            if ((i > 0 && bv_buf_puts(b, ",") != 0) || bv_buf_json_value(b, m) != 0)
                return BV_ENOMEM;
        }
        return bv_buf_puts(b, "]") != 0 ? BV_ENOMEM : 0;
    }
    case JSON_STRING:
        return dump_string(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return bv_buf_puts(b, num) != 0 ? BV_ENOMEM : 0;
    case JSON_TRUE:
        return bv_buf_puts(b, "true") != 0 ? BV_ENOMEM : 0;
    case JSON_FALSE:
        return bv_buf_puts(b, "false") != 0 ? BV_ENOMEM : 0;
    case JSON_NULL:
        return bv_buf_puts(b, "null") != 0 ? BV_ENOMEM : 0;
    default: { /* a real: jansson's own formatting */
        char *r = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        int rc = r == NULL || bv_buf_puts(b, r) != 0 ? BV_ENOMEM : 0;
        free(r);
        return rc;
    }
    }
}

char *bv_json_dump(const json_t *v)
{
    bv_buf_t b = {0};
    if (v == NULL || bv_buf_json_value(&b, v) != 0) {
        bv_buf_free(&b);
        return NULL;
    }
    return b.data; /* a bv_buf is always NUL-terminated */
}

int bv_buf_json_string(bv_buf_t *b, const char *s, bool empty_null)
{
    if (s == NULL || (empty_null && s[0] == '\0'))
        return bv_buf_puts(b, "null") != 0 ? BV_ENOMEM : 0;
    size_t n = strlen(s) * 6 + 1; /* worst case: every byte becomes \u00XX */
    char stack[1024];
    char *tmp = n <= sizeof(stack) ? stack : malloc(n);
    if (tmp == NULL)
        return BV_ENOMEM;
    size_t len = bv_json_escape(tmp, n, s);
    int rc = bv_buf_puts(b, "\"");
    rc |= bv_buf_append(b, tmp, len);
    rc |= bv_buf_puts(b, "\"");
    if (tmp != stack)
        free(tmp);
    return rc != 0 ? BV_ENOMEM : 0;
}

int bv_buf_json_time(bv_buf_t *b, int64_t us)
{
    char t[32];
    if (us == 0)
        return bv_buf_puts(b, "null") != 0 ? BV_ENOMEM : 0;
    bv_time_format(us, t);
    return bv_buf_printf(b, "\"%s\"", t) != 0 ? BV_ENOMEM : 0;
}
