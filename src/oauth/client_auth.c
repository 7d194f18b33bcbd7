/* Client authentication at the token, introspection and revocation endpoints
 * (RFC 6749 §2.3, RFC 7523 §2.2/§3, OIDC Core §9). A client uses exactly the method it
 * registered; presenting two methods at once is an error (RFC 6749 §2.3). */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/errors.h"
#include "base/log.h"
#include "oauth/internal.h"

#define ASSERTION_TYPE         "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#define ASSERTION_MAX_LIFETIME 600

/* Standard base64 decode of the Basic credentials into out (NUL-terminated). */
static int basic_decode(const char *s, char *out, size_t cap)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (; *s && *s != '='; s++) {
        const char *p = strchr(al, *s);
        if (p == NULL || *s == '\0')
            return -1;
        acc = acc << 6 | (uint32_t)(p - al);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o + 1 >= cap)
                return -1;
            out[o++] = (char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    while (*s == '=')
        s++;
    if (*s != '\0' || memchr(out, '\0', o) != NULL)
        return -1;
    out[o] = '\0';
    return 0;
}

typedef struct {
    const char *client_id, *jti;
    int64_t expires_at;
} jti_arg_t;

static int tx_jti(bv_tx_t *tx, void *varg)
{
    jti_arg_t *a = varg;
    int64_t now = bv_now_us();
    bv_stmt_t *s =
        bv_tx_prepare(tx, "INSERT INTO oauth_assertion_jti (client_id, jti, expires_at) VALUES (?, ?, ?)");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->client_id, -1);
    bv_stmt_bind_text(s, 2, a->jti, -1);
    bv_stmt_bind_int64(s, 3, a->expires_at);
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc != BV_DONE)
        return rc < 0 ? rc : BV_EIO; /* BV_ECONFLICT: seen before, a replay */
    if ((s = bv_tx_prepare(tx, "DELETE FROM oauth_assertion_jti WHERE expires_at < ?")) != NULL) {
        bv_stmt_bind_int64(s, 1, now - (int64_t)BV_OAUTH_SKEW * 1000000);
        bv_stmt_step(s);
        bv_stmt_reset(s);
    }
    return 0;
}

static int aud_matches(const json_t *aud, const char *a1, const char *a2)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), a1) == 0 || strcmp(json_string_value(aud), a2) == 0;
    if (json_is_array(aud)) {
        size_t i;
        json_t *v;
        json_array_foreach(aud, i,
                           v) if (json_is_string(v) && (strcmp(json_string_value(v), a1) == 0 ||
                                                        strcmp(json_string_value(v), a2) == 0)) return 1;
    }
    return 0;
}

/* RFC 7523 §3 checks of a client assertion already parsed into j, for client cl. */
static int check_assertion(oauth_t *o, const jwt_t *j, const char *assertion, const oauth_client_t *cl,
                           const char *endpoint_url, const char **why)
{
    const json_t *h = j->header, *p = j->payload;
    jws_alg_t alg = jws_alg_parse(json_string_value(json_object_get(h, "alg")));
    const char *kid = json_string_value(json_object_get(h, "kid"));
    int64_t now = bv_now_us() / 1000000;
    json_t *keys = cl->jwks != NULL ? json_object_get(cl->jwks, "keys") : NULL;
    int verified = 0;
    if (alg == JWS_ALG_NONE_ || json_object_get(h, "crit") != NULL) {
        *why = "the assertion must be signed with ES256 or RS256";
        return -1;
    }
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k)
    {
        const char *kk = json_string_value(json_object_get(k, "kid"));
        EVP_PKEY *pk = NULL;
        jws_alg_t ka;
        if (kid != NULL && (kk == NULL || strcmp(kk, kid) != 0))
            continue;
        if (jwk_to_pkey(k, &pk, &ka) != 0)
            continue;
        if (ka == alg && jws_verify(pk, NULL, alg, assertion, j->signing_input_len, j->sig, j->sig_len) == 0)
            verified = 1;
        EVP_PKEY_free(pk);
        if (verified)
            break;
    }
    if (!verified) {
        *why = "the assertion signature does not verify with the client's registered keys";
        return -1;
    }
    const char *iss = json_string_value(json_object_get(p, "iss")),
               *sub = json_string_value(json_object_get(p, "sub"));
    const json_t *exp = json_object_get(p, "exp"), *nbf = json_object_get(p, "nbf"),
                 *iat = json_object_get(p, "iat");
    const char *jti = json_string_value(json_object_get(p, "jti"));
    char token_url[600];
    snprintf(token_url, sizeof(token_url), "%s/oauth2/token", oauth_issuer(o));
    if (iss == NULL || sub == NULL || strcmp(iss, cl->id) != 0 || strcmp(sub, cl->id) != 0) {
        *why = "iss and sub of the assertion must be the client_id";
        return -1;
    }
    if (!aud_matches(json_object_get(p, "aud"), endpoint_url, oauth_issuer(o)) &&
        !aud_matches(json_object_get(p, "aud"), token_url, token_url)) {
        *why = "the assertion's aud must be the issuer or the endpoint URL";
        return -1;
    }
    if (!json_is_integer(exp) || json_integer_value(exp) + BV_OAUTH_SKEW <= now ||
        json_integer_value(exp) > now + ASSERTION_MAX_LIFETIME + BV_OAUTH_SKEW) {
        *why = "the assertion is expired or lives too long";
        return -1;
    }
    if ((nbf != NULL && (!json_is_integer(nbf) || json_integer_value(nbf) > now + BV_OAUTH_SKEW)) ||
        (iat != NULL && (!json_is_integer(iat) || json_integer_value(iat) > now + BV_OAUTH_SKEW))) {
        *why = "the assertion is not valid yet";
        return -1;
    }
    if (jti == NULL || jti[0] == '\0' || strlen(jti) > 256) {
        *why = "the assertion needs a jti";
        return -1;
    }
    jti_arg_t a = {cl->id, jti, (json_integer_value(exp) + BV_OAUTH_SKEW) * 1000000};
    int rc = bv_store_run_tx(o->store, 1, tx_jti, &a);
    if (rc == BV_ECONFLICT) {
        *why = "the assertion was already used (jti replay)";
        return -1;
    }
    if (rc != 0) {
        *why = NULL;
        return rc;
    }
    return 0;
}

int oauth_client_auth_or_reply(oauth_t *o, bv_call_t *c, const oauth_form_t *f, const char *endpoint_url,
                               oauth_authed_client_t *out)
{
    const char *authz = bv_call_header(c, "authorization");
    const char *form_id = oauth_form_get(f, "client_id"), *form_secret = oauth_form_get(f, "client_secret");
    const char *atype = oauth_form_get(f, "client_assertion_type"),
               *assertion = oauth_form_get(f, "client_assertion");
    char basic[600], *basic_id = NULL, *basic_secret = NULL;
    const char *id = NULL, *secret = NULL, *method, *why = NULL;
    jwt_t j = {0};
    int rc = BV_EUNAUTHENTICATED, have_jwt = 0;
    int is_basic = authz != NULL && strncasecmp(authz, "Basic ", 6) == 0;
    memset(out, 0, sizeof(*out));

    if (is_basic + (form_secret != NULL) + (assertion != NULL || atype != NULL) > 1) {
        oauth_reply_error(c, 400, "invalid_request", "use exactly one client authentication method");
        return BV_EINVALID;
    }
    if (is_basic) {
        const char *b = authz + 6;
        while (*b == ' ')
            b++;
        char *colon;
        if (strlen(b) > 790 || basic_decode(b, basic, sizeof(basic)) != 0 ||
            (colon = strchr(basic, ':')) == NULL) {
            oauth_reply_invalid_client(c);
            return BV_EUNAUTHENTICATED;
        }
        *colon = '\0';
        /* RFC 6749 §2.3.1: both parts are form-urlencoded before base64 */
        basic_id = bv_url_decode(&c->arena, basic, strlen(basic), 1);
        basic_secret = bv_url_decode(&c->arena, colon + 1, strlen(colon + 1), 1);
        OPENSSL_cleanse(basic, sizeof(basic));
        if (basic_id == NULL || basic_secret == NULL) {
            oauth_reply_invalid_client(c);
            return BV_EUNAUTHENTICATED;
        }
        id = basic_id;
        secret = basic_secret;
        method = "client_secret_basic";
    } else if (assertion != NULL || atype != NULL) {
        if (atype == NULL || strcmp(atype, ASSERTION_TYPE) != 0 || assertion == NULL ||
            jwt_parse(assertion, strlen(assertion), &j) != 0) {
            oauth_reply_error(c, 400, "invalid_request", "client_assertion must be a JWT of type jwt-bearer");
            return BV_EINVALID;
        }
        have_jwt = 1;
        id = json_string_value(json_object_get(j.payload, "sub"));
        method = "private_key_jwt";
    } else {
        id = form_id;
        secret = form_secret;
        method = form_secret != NULL ? "client_secret_post" : "none";
    }
    if (id == NULL || (form_id != NULL && strcmp(form_id, id) != 0)) {
        if (id == NULL)
            oauth_reply_error(c, 400, "invalid_request", "client_id is required");
        else
            oauth_reply_invalid_client(c);
        rc = id == NULL ? BV_EINVALID : BV_EUNAUTHENTICATED;
        goto out;
    }
    if ((rc = oauth_client_load(o, id, &out->client)) != 0) {
        if (rc != BV_ENOTFOUND) {
            bv_reply_problem(c, rc, NULL, NULL);
            goto out;
        }
        if (secret != NULL) { /* the same HMAC work as for a known client */
            char dummy[65];
            oauth_lookup_hash(o, secret, dummy);
        }
        oauth_reply_invalid_client(c);
        rc = BV_EUNAUTHENTICATED;
        goto out;
    }
    rc = BV_EUNAUTHENTICATED;
    if (strcmp(method, out->client.auth_method) != 0) {
        bv_log(BV_LOG_INFO, c->request_id, "client used another authentication method than registered", NULL);
        oauth_reply_invalid_client(c);
        goto out;
    }
    if (secret != NULL) {
        char h[65];
        if (out->client.secret_hash[0] == '\0' || oauth_lookup_hash(o, secret, h) != 0 ||
            !bv_ct_equal(h, 64, out->client.secret_hash, strlen(out->client.secret_hash))) {
            oauth_reply_invalid_client(c);
            goto out;
        }
    } else if (have_jwt) {
        int cr = check_assertion(o, &j, assertion, &out->client, endpoint_url, &why);
        if (cr != 0) {
            if (why == NULL) {
                bv_reply_problem(c, cr, NULL, NULL);
            } else {
                bv_log(BV_LOG_INFO, c->request_id, "client assertion rejected", NULL);
                oauth_reply_error(c, 401, "invalid_client", why);
            }
            goto out;
        }
    } else if (!out->client.is_public) {
        oauth_reply_invalid_client(c);
        goto out;
    }
    out->method = method;
    rc = 0;
out:
    if (have_jwt)
        jwt_free(&j);
    if (basic_secret != NULL)
        OPENSSL_cleanse(basic_secret, strlen(basic_secret));
    if (rc != 0)
        oauth_client_clear(&out->client);
    return rc;
}
