/* SNS-style subscription filter policies on message attributes (docs/queue.md):
 *   {"kind": ["movement", "otp"],              exact strings (any of)
 *    "channel": [{"prefix": "e"}],             prefix
 *    "source": [{"anything-but": ["test"]}],   anything but (values, or {"prefix": ...})
 *    "amount": [{"numeric": [">=", 100, "<", 500]}],  numeric ranges (and "=" n)
 *    "email": [{"exists": true}]}              presence / absence
 * Every key must match (AND); within a key's array any rule may match (OR). An attribute
 * whose value is an array matches when any element does. Numbers are compared as fixed-
 * point integers with 5 decimals (SNS precision), never as floating point. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "queue/internal.h"

#define MAX_RULES   150
#define FIXED_SCALE 100000LL
#define FIXED_LIMIT 1000000000LL /* SNS: -1e9 .. 1e9 */

int queue_number_fixed(const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < -FIXED_LIMIT || i > FIXED_LIMIT)
            return BV_EINVALID;
        *out = (int64_t)i * FIXED_SCALE;
        return 0;
    }
    if (json_is_real(v)) {
        /* jansson already parsed the text into a double; render it back with 5 decimals
         * and read the digits as an integer so comparisons stay exact from here on. */
        char buf[64], *p = buf;
        int64_t ip = 0, fp = 0;
        int neg = 0;
        double d = json_real_value(v);
        if (!isfinite(d) || d < -(double)FIXED_LIMIT || d > (double)FIXED_LIMIT)
            return BV_EINVALID;
        snprintf(buf, sizeof(buf), "%.5f", d);
        if (*p == '-') {
            neg = 1;
            p++;
        }
        for (; *p >= '0' && *p <= '9'; p++)
            ip = ip * 10 + (*p - '0');
        if (*p == '.')
            for (p++; *p >= '0' && *p <= '9'; p++)
                fp = fp * 10 + (*p - '0');
        *out = (ip * FIXED_SCALE + fp) * (neg ? -1 : 1);
        return 0;
    }
    return BV_EINVALID;
}

static int is_op(const char *s, int lower, int upper)
{
    if (s == NULL)
        return 0;
    if (strcmp(s, "=") == 0)
        return lower && upper;
    if (strcmp(s, ">") == 0 || strcmp(s, ">=") == 0)
        return lower;
    if (strcmp(s, "<") == 0 || strcmp(s, "<=") == 0)
        return upper;
    return 0;
}

static int set_detail(char *detail, size_t n, const char *key, const char *why)
{
    if (detail != NULL && n > 0)
        snprintf(detail, n, "filter policy key '%.64s': %s", key, why);
    return BV_EINVALID;
}

static int validate_numeric(const json_t *a)
{
    int64_t x, y;
    size_t n = json_is_array(a) ? json_array_size(a) : 0;
    if (n != 2 && n != 4)
        return BV_EINVALID;
    const char *op1 = json_string_value(json_array_get(a, 0));
    if (queue_number_fixed(json_array_get(a, 1), &x) != 0)
        return BV_EINVALID;
    if (n == 2)
        return is_op(op1, 1, 1) || is_op(op1, 0, 1) ? 0 : BV_EINVALID;
    /* a range: lower bound first, then upper bound */
    const char *op2 = json_string_value(json_array_get(a, 2));
    if (!is_op(op1, 1, 0) || strcmp(op1, "=") == 0 || !is_op(op2, 0, 1) || strcmp(op2, "=") == 0)
        return BV_EINVALID;
    if (queue_number_fixed(json_array_get(a, 3), &y) != 0 || y < x)
        return BV_EINVALID;
    return 0;
}

static int validate_rule(const json_t *r, const char *key, char *detail, size_t n)
{
    const char *op;
    json_t *arg;
    if (json_is_string(r))
        return 0;
    if (json_is_number(r)) {
        int64_t v;
        return queue_number_fixed(r, &v) == 0 ? 0 : set_detail(detail, n, key, "number out of range");
    }
    if (!json_is_object(r) || json_object_size(r) != 1)
        return set_detail(detail, n, key, "a rule is a string, a number or an object with one operator");
    op = json_object_iter_key(json_object_iter((json_t *)r));
    arg = json_object_iter_value(json_object_iter((json_t *)r));
    if (strcmp(op, "prefix") == 0)
        return json_is_string(arg) ? 0 : set_detail(detail, n, key, "prefix takes a string");
    if (strcmp(op, "exists") == 0)
        return json_is_boolean(arg) ? 0 : set_detail(detail, n, key, "exists takes true or false");
    if (strcmp(op, "numeric") == 0)
        return validate_numeric(arg) == 0
                   ? 0
                   : set_detail(detail, n, key, "numeric takes [op, n] or [>|>=, n, <|<=, m] with m >= n");
    if (strcmp(op, "anything-but") == 0) {
        int64_t v;
        if (json_is_string(arg) || (json_is_number(arg) && queue_number_fixed(arg, &v) == 0))
            return 0;
        if (json_is_object(arg) && json_object_size(arg) == 1 &&
            json_is_string(json_object_get(arg, "prefix")))
            return 0;
        if (json_is_array(arg) && json_array_size(arg) > 0 && json_array_size(arg) <= MAX_RULES) {
            for (size_t i = 0; i < json_array_size(arg); i++) {
                json_t *e = json_array_get(arg, i);
                if (!json_is_string(e) && !(json_is_number(e) && queue_number_fixed(e, &v) == 0))
                    return set_detail(detail, n, key, "anything-but lists strings or numbers");
            }
            return 0;
        }
        return set_detail(detail, n, key, "anything-but takes a value, a list or {\"prefix\": ...}");
    }
    return set_detail(detail, n, key, "unknown operator");
}

int bv_queue_filter_validate(const json_t *policy, char *detail, size_t n)
{
    const char *key;
    json_t *rules;
    size_t total = 0;
    if (policy == NULL)
        return 0;
    if (!json_is_object(policy) || json_object_size(policy) == 0 || json_object_size(policy) > 5) {
        if (detail != NULL && n > 0)
            snprintf(detail, n, "a filter policy is an object of 1 to 5 attribute keys");
        return BV_EINVALID;
    }
    json_object_foreach((json_t *)policy, key, rules)
    {
        if (!json_is_array(rules) || json_array_size(rules) == 0)
            return set_detail(detail, n, key, "the value must be a non-empty array of rules");
        total += json_array_size(rules);
        if (total > MAX_RULES)
            return set_detail(detail, n, key, "too many rules (at most 150 in all)");
        for (size_t i = 0; i < json_array_size(rules); i++)
            if (validate_rule(json_array_get(rules, i), key, detail, n) != 0)
                return BV_EINVALID;
    }
    return 0;
}

/* ---- matching ---- */

static int num_cmp_op(const char *op, int64_t v, int64_t bound)
{
    if (strcmp(op, "=") == 0)
        return v == bound;
    if (strcmp(op, ">") == 0)
        return v > bound;
    if (strcmp(op, ">=") == 0)
        return v >= bound;
    if (strcmp(op, "<") == 0)
        return v < bound;
    if (strcmp(op, "<=") == 0)
        return v <= bound;
    return 0;
}

static int equal_scalar(const json_t *rule, const json_t *v)
{
    if (json_is_string(rule))
        return json_is_string(v) && strcmp(json_string_value(rule), json_string_value(v)) == 0;
    if (json_is_number(rule)) {
        int64_t a, b;
        return json_is_number(v) && queue_number_fixed(rule, &a) == 0 && queue_number_fixed(v, &b) == 0 &&
               a == b;
    }
    return 0;
}

static int has_prefix(const json_t *v, const char *prefix)
{
    return json_is_string(v) && strncmp(json_string_value(v), prefix, strlen(prefix)) == 0;
}

/* One rule against one scalar value. */
static int rule_match_scalar(const json_t *r, const json_t *v)
{
    if (!json_is_object(r))
        return equal_scalar(r, v);
    const char *op = json_object_iter_key(json_object_iter((json_t *)r));
    json_t *arg = json_object_iter_value(json_object_iter((json_t *)r));
    if (strcmp(op, "prefix") == 0)
        return has_prefix(v, json_string_value(arg));
    if (strcmp(op, "numeric") == 0) {
        int64_t x, b1, b2;
        if (queue_number_fixed(v, &x) != 0 || queue_number_fixed(json_array_get(arg, 1), &b1) != 0)
            return 0;
        if (!num_cmp_op(json_string_value(json_array_get(arg, 0)), x, b1))
            return 0;
        if (json_array_size(arg) == 4)
            return queue_number_fixed(json_array_get(arg, 3), &b2) == 0 &&
                   num_cmp_op(json_string_value(json_array_get(arg, 2)), x, b2);
        return 1;
    }
    if (strcmp(op, "anything-but") == 0) {
        if (json_is_object(arg))
            return json_is_string(v) && !has_prefix(v, json_string_value(json_object_get(arg, "prefix")));
        if (json_is_array(arg)) {
            for (size_t i = 0; i < json_array_size(arg); i++)
                if (equal_scalar(json_array_get(arg, i), v))
                    return 0;
            return 1;
        }
        return !equal_scalar(arg, v);
    }
    return 0;
}

static int rule_match(const json_t *r, const json_t *v /* NULL: absent */)
{
    if (json_is_object(r)) {
        json_t *ex = json_object_get(r, "exists");
        if (ex != NULL)
            return json_is_true(ex) ? v != NULL : v == NULL;
    }
    if (v == NULL)
        return 0;
    if (json_is_array(v)) {
        /* anything-but on a list: no element may be excluded */
        if (json_is_object(r) && json_object_get(r, "anything-but") != NULL) {
            if (json_array_size(v) == 0)
                return 0;
            for (size_t i = 0; i < json_array_size(v); i++)
                if (!rule_match_scalar(r, json_array_get(v, i)))
                    return 0;
            return 1;
        }
        for (size_t i = 0; i < json_array_size(v); i++)
            if (rule_match_scalar(r, json_array_get(v, i)))
                return 1;
        return 0;
    }
    return rule_match_scalar(r, v);
}

int bv_queue_filter_match(const json_t *policy, const json_t *attributes)
{
    const char *key;
    json_t *rules;
    if (policy == NULL)
        return 1;
    json_object_foreach((json_t *)policy, key, rules)
    {
        json_t *v = attributes != NULL ? json_object_get(attributes, key) : NULL;
        int any = 0;
        for (size_t i = 0; i < json_array_size(rules) && !any; i++)
            any = rule_match(json_array_get(rules, i), v);
        if (!any)
            return 0;
    }
    return 1;
}
