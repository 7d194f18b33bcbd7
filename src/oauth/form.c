/* Small shared helpers of the OAuth endpoints: form/query parsing
 * (application/x-www-form-urlencoded), OAuth error replies, cookies, PKCE and scopes. */
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/errors.h"
#include "base/log.h"
#include "oauth/internal.h"

int oauth_url_encode(bv_buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
            c == '.' || c == '_' || c == '~') {
            if (bv_buf_append(b, s, 1) != 0)
                return BV_ENOMEM;
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            if (bv_buf_append(b, e, 3) != 0)
                return BV_ENOMEM;
        }
    }
    return 0;
}

int oauth_form_parse(bv_arena_t *arena, const char *body, size_t len, oauth_form_t *f)
{
    memset(f, 0, sizeof(*f));
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && body[i] != '&')
            i++;
        size_t plen = i - start;
        i++; /* skip '&' */
        if (plen == 0)
            continue;
        const char *p = body + start, *eq = memchr(p, '=', plen);
        size_t nlen = eq ? (size_t)(eq - p) : plen;
        if (nlen == 0)
            return BV_EINVALID;
        if (f->n == OAUTH_FORM_MAX)
            return BV_EINVALID;
        char *name = bv_url_decode(arena, p, nlen, 1);
        char *value = eq ? bv_url_decode(arena, eq + 1, plen - nlen - 1, 1) : bv_url_decode(arena, "", 0, 1);
        if (name == NULL || value == NULL)
            return BV_EINVALID;
        for (size_t k = 0; k < f->n; k++)
            if (strcmp(f->names[k], name) == 0 && f->duplicate == NULL)
                f->duplicate = f->names[k];
        f->names[f->n] = name;
        f->values[f->n] = value;
        f->n++;
    }
    return 0;
}

const char *oauth_form_get(const oauth_form_t *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->names[i], name) == 0)
            return f->values[i];
    return NULL;
}

void oauth_reply_error(bv_call_t *c, int status, const char *error, const char *description)
{
    json_t *o = json_pack("{s:s}", "error", error);
    if (description != NULL)
        json_object_set_new(o, "error_description", json_string(description));
    bv_call_add_header(c, "pragma", "no-cache");
    bv_reply_json(c, status, o);
}

void oauth_reply_invalid_client(bv_call_t *c)
{
    const char *authz = bv_call_header(c, "authorization");
    if (authz != NULL && strncasecmp(authz, "Basic ", 6) == 0)
        bv_call_add_header(c, "www-authenticate", "Basic realm=\"boveda\"");
    oauth_reply_error(c, 401, "invalid_client", "client authentication failed");
}

int oauth_call_form_or_reply(bv_call_t *c, oauth_form_t *f, int oauth_errors)
{
    const char *ct = bv_call_header(c, "content-type");
    int is_post = strcmp(c->method, "POST") == 0;
    int rc;
    if (is_post) {
        static const char form[] = "application/x-www-form-urlencoded";
        if (c->body_len > 0 && (ct == NULL || strncasecmp(ct, form, sizeof(form) - 1) != 0)) {
            if (oauth_errors)
                oauth_reply_error(c, 400, "invalid_request",
                                  "the body must be application/x-www-form-urlencoded");
            else
                bv_reply_problem(c, BV_EMEDIA, "Content-Type must be application/x-www-form-urlencoded",
                                 "Content-Type");
            return BV_EMEDIA;
        }
        rc = oauth_form_parse(&c->arena, c->body ? c->body : "", c->body_len, f);
    } else {
        rc = oauth_form_parse(&c->arena, c->query, strlen(c->query), f);
    }
    if (rc == 0 && f->duplicate != NULL)
        rc = BV_EINVALID;
    if (rc != 0) {
        char detail[160];
        if (f->duplicate != NULL)
            snprintf(detail, sizeof(detail), "the parameter %.64s is repeated", f->duplicate);
        else
            snprintf(detail, sizeof(detail), "malformed form or query encoding");
        if (oauth_errors)
            oauth_reply_error(c, 400, "invalid_request", detail);
        else
            bv_reply_problem(c, BV_EINVALID, detail, f->duplicate);
    }
    return rc;
}

const char *oauth_cookie(bv_call_t *c, const char *name)
{
    size_t nl = strlen(name);
    for (size_t h = 0; h < c->n_headers; h++) {
        if (strcasecmp(c->headers[h].name, "cookie") != 0)
            continue;
        const char *p = c->headers[h].value;
        while (*p) {
            while (*p == ' ' || *p == ';')
                p++;
            const char *end = strchr(p, ';');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            if (len > nl && p[nl] == '=' && memcmp(p, name, nl) == 0)
                return bv_arena_strndup(&c->arena, p + nl + 1, len - nl - 1);
            p += len;
        }
    }
    return NULL;
}

/* ---- PKCE (RFC 7636 §4) ---- */
static int pkce_chars_ok(const char *s, size_t min, size_t max)
{
    size_t len = s != NULL ? strlen(s) : 0;
    if (len < min || len > max)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '.' || c == '_' || c == '~'))
            return 0;
    }
    return 1;
}

int oauth_pkce_challenge_valid(const char *s)
{
    unsigned char buf[48];
    return pkce_chars_ok(s, 43, 43) && strchr(s, '.') == NULL && strchr(s, '~') == NULL &&
           oauth_b64url_decode(s, 43, buf, sizeof(buf)) == 32;
}

int oauth_pkce_verify(const char *verifier, const char *challenge)
{
    unsigned char digest[32];
    char enc[48];
    if (!pkce_chars_ok(verifier, 43, 128) || challenge == NULL)
        return 0;
    SHA256((const unsigned char *)verifier, strlen(verifier), digest);
    oauth_b64url_encode(digest, sizeof(digest), enc);
    return bv_ct_equal(enc, strlen(enc), challenge, strlen(challenge));
}

/* ---- scopes ---- */
int oauth_scope_has(const char *scopes, const char *scope)
{
    size_t sl = strlen(scope);
    const char *s = scopes;
    while (s != NULL && *s) {
        while (*s == ' ')
            s++;
        const char *e = s;
        while (*e && *e != ' ')
            e++;
        if ((size_t)(e - s) == sl && sl > 0 && memcmp(s, scope, sl) == 0)
            return 1;
        s = e;
    }
    return 0;
}

int oauth_scope_subset(const char *requested, const char *allowed)
{
    char one[128];
    const char *s = requested;
    while (*s) {
        while (*s == ' ')
            s++;
        const char *e = s;
        while (*e && *e != ' ')
            e++;
        size_t l = (size_t)(e - s);
        if (l == 0)
            break;
        if (l >= sizeof(one))
            return 0;
        memcpy(one, s, l);
        one[l] = '\0';
        for (size_t i = 0; i < l; i++) /* RFC 6749 §3.3 scope-token: %x21 / %x23-5B / %x5D-7E */
            if (one[i] < 0x21 || one[i] == 0x22 || one[i] == 0x5C || one[i] > 0x7E)
                return 0;
        if (!oauth_scope_has(allowed, one))
            return 0;
        s = e;
    }
    return 1;
}
