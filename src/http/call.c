/* What handlers use to read a request and write a reply (bv_call_t helpers). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/errors.h"
#include "base/log.h"
#include "http/internal.h"

const char *bv_call_param(bv_call_t *c, const char *name)
{
    for (size_t i = 0; i < c->n_params; i++)
        if (strcmp(c->params[i].name, name) == 0)
            return c->params[i].value;
    return NULL;
}

const char *bv_call_header(bv_call_t *c, const char *name)
{
    for (size_t i = 0; i < c->n_headers; i++)
        if (strcasecmp(c->headers[i].name, name) == 0)
            return c->headers[i].value;
    return NULL;
}

const char *bv_call_query(bv_call_t *c, const char *name)
{
    size_t nl = strlen(name);
    const char *q = c->query;
    while (q != NULL && *q != '\0') {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', len);
        size_t klen = eq ? (size_t)(eq - q) : len;
        if (klen == nl && memcmp(q, name, nl) == 0) {
            if (eq == NULL)
                return "";
            return bv_url_decode(&c->arena, eq + 1, len - klen - 1, 1);
        }
        q = amp ? amp + 1 : NULL;
    }
    return NULL;
}

static void set_body(bv_call_t *c, int status, const char *content_type, const void *data, size_t len)
{
    c->status = status;
    c->content_type = content_type;
    bv_buf_reset(&c->resp_body);
    if (len > 0)
        bv_buf_append(&c->resp_body, data, len);
}

void bv_reply_json(bv_call_t *c, int status, json_t *body)
{
    char *s = body ? bv_json_dump(body) : NULL;
    json_decref(body);
    if (s == NULL) {
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        return;
    }
    c->error_code = 0;
    set_body(c, status, "application/json", s, strlen(s));
    free(s);
}

void bv_reply_raw(bv_call_t *c, int status, const char *content_type, const void *data, size_t len)
{
    c->error_code = 0;
    set_body(c, status, content_type, data, len);
}

void bv_reply_empty(bv_call_t *c, int status)
{
    c->error_code = 0;
    set_body(c, status, NULL, NULL, 0);
}

void bv_reply_problem(bv_call_t *c, int code, const char *detail, const char *field)
{
    json_t *p = json_object();
    char type[160];
    int status = bv_err_status(code);
    snprintf(type, sizeof(type), BV_PROBLEM_BASE "%s", bv_err_slug(code));
    json_object_set_new(p, "type", json_string(type));
    json_object_set_new(p, "title", json_string(bv_err_title(code)));
    json_object_set_new(p, "status", json_integer(status));
    if (detail != NULL && status < 500)
        json_object_set_new(p, "detail", json_string(detail));
    if (field != NULL && field[0] != '\0')
        json_object_set_new(p, "field", json_string(field));
    if (c->path != NULL)
        json_object_set_new(p, "instance", json_string(c->path));
    json_object_set_new(p, "request_id", json_string(c->request_id));
    char *s = bv_json_dump(p);
    json_decref(p);
    if (status >= 500)
        bv_log(BV_LOG_ERROR, c->request_id, "request failed", "\"error\":\"%s\"", bv_err_name(code));
    c->error_code = code;
    set_body(c, status, "application/problem+json", s ? s : "{}", s ? strlen(s) : 2);
    free(s);
}

int bv_call_add_header(bv_call_t *c, const char *name, const char *value)
{
    if (c->n_resp_headers == sizeof(c->resp_headers) / sizeof(c->resp_headers[0]))
        return BV_ENOMEM;
    c->resp_headers[c->n_resp_headers].name = bv_arena_strndup(&c->arena, name, strlen(name));
    c->resp_headers[c->n_resp_headers].value = bv_arena_strndup(&c->arena, value, strlen(value));
    if (c->resp_headers[c->n_resp_headers].name == NULL || c->resp_headers[c->n_resp_headers].value == NULL)
        return BV_ENOMEM;
    c->n_resp_headers++;
    return 0;
}

int bv_call_decode_json_or_reply(bv_call_t *c, const bv_json_field_t *spec, void *out, json_t **root_out)
{
    bv_json_error_t err = {{0}, {0}};
    int rc = bv_json_decode(c->body, c->body_len, spec, out, root_out, &err);
    if (rc != 0) {
        char detail[300];
        if (err.field[0] != '\0')
            snprintf(detail, sizeof(detail), "%s %s", err.field, err.detail);
        else
            snprintf(detail, sizeof(detail), "%s", err.detail);
        bv_reply_problem(c, rc, detail, err.field);
        return rc;
    }
    return 0;
}

int bv_call_query_int_or_reply(bv_call_t *c, const char *name, int64_t def, int64_t min, int64_t max,
                               int64_t *out)
{
    const char *v = bv_call_query(c, name);
    if (v == NULL) {
        *out = def;
        return 0;
    }
    char *end;
    long long n = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0' || n < min || n > max) {
        char detail[160];
        snprintf(detail, sizeof(detail), "%s must be an integer between %lld and %lld", name, (long long)min,
                 (long long)max);
        bv_reply_problem(c, BV_EINVALID, detail, name);
        return BV_EINVALID;
    }
    *out = n;
    return 0;
}

int bv_call_query_time_or_reply(bv_call_t *c, const char *name, int64_t *out)
{
    const char *v = bv_call_query(c, name);
    *out = 0;
    if (v == NULL)
        return 0;
    if (bv_time_parse(v, out) != 0 || *out <= 0) {
        char detail[128];
        snprintf(detail, sizeof(detail), "%s must be an RFC 3339 time or a YYYY-MM-DD date", name);
        bv_reply_problem(c, BV_EINVALID, detail, name);
        return BV_EINVALID;
    }
    return 0;
}

/* The scopes a customer's token may use. Every other scope (ledger:*, audit:*, notify:*,
 * metrics:*, ...) is a back-office scope: it never counts for a user principal, even when a
 * misconfigured client let a customer's token carry it, so a new staff scope is protected
 * without anyone remembering to list it. */
static const char *const customer_scopes[] = {
    "openid", "profile", "email", "phone", "offline_access", "banking:read", "banking:write",
};

static int customer_scope(const char *scope, size_t sl)
{
    for (size_t i = 0; i < sizeof(customer_scopes) / sizeof(customer_scopes[0]); i++)
        if (strlen(customer_scopes[i]) == sl && memcmp(customer_scopes[i], scope, sl) == 0)
            return 1;
    return 0;
}

int bv_principal_has_scope(const bv_principal_t *p, const char *scope)
{
    if (p->kind == BV_PRINCIPAL_ADMIN)
        return 1;
    if (p->kind == BV_PRINCIPAL_NONE)
        return 0;
    size_t sl = strlen(scope);
    if (p->kind == BV_PRINCIPAL_USER && !customer_scope(scope, sl))
        return 0;
    const char *s = p->scopes;
    while (*s) {
        while (*s == ' ')
            s++;
        const char *e = s;
        while (*e && *e != ' ')
            e++;
        if ((size_t)(e - s) == sl && memcmp(s, scope, sl) == 0)
            return 1;
        s = e;
    }
    return 0;
}

void bv_principal_actor(const bv_principal_t *p, char *out, size_t n)
{
    static const char *const kinds[] = {"anonymous", "admin", "user", "client", "operator"};
    snprintf(out, n, "%s:%s", kinds[p->kind], p->kind == BV_PRINCIPAL_NONE ? "-" : p->subject);
}

int bv_call_require_scope_or_reply(bv_call_t *c, const char *scope)
{
    if (bv_principal_has_scope(&c->principal, scope))
        return 0;
    char detail[160];
    snprintf(detail, sizeof(detail), "the scope %s is required", scope);
    bv_reply_problem(c, BV_EFORBIDDEN, detail, NULL);
    return BV_EFORBIDDEN;
}
