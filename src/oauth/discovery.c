/* GET /.well-known/openid-configuration (OIDC Discovery 1.0, RFC 8414) and GET
 * /oauth2/jwks (RFC 7517: the key store's published public signing keys). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "oauth/internal.h"

static json_t *strs(const char *const *v)
{
    json_t *a = json_array();
    for (; *v; v++)
        json_array_append_new(a, json_string(*v));
    return a;
}

void oauth_on_discovery(bv_call_t *c)
{
    oauth_t *o = c->ctx;
    const char *iss = oauth_issuer(o);
    char u[9][600];
    static const char *const paths[] = {"/oauth2/authorize", "/oauth2/token",      "/oauth2/jwks",
                                        "/oauth2/userinfo",  "/oauth2/introspect", "/oauth2/revoke",
                                        "/oauth2/logout"};
    for (size_t i = 0; i < 7; i++)
        snprintf(u[i], sizeof(u[i]), "%s%s", iss, paths[i]);
    static const char *const auth_methods[] = {"client_secret_basic", "client_secret_post", "private_key_jwt",
                                               "none", NULL};
    static const char *const signing[] = {"ES256", "RS256", NULL};
    static const char *const es256[] = {"ES256", NULL};
    json_t *d =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "issuer", iss, "authorization_endpoint", u[0],
                  "token_endpoint", u[1], "jwks_uri", u[2], "userinfo_endpoint", u[3],
                  "introspection_endpoint", u[4], "revocation_endpoint", u[5], "end_session_endpoint", u[6]);
    json_object_set_new(d, "response_types_supported", strs((const char *const[]){"code", NULL}));
    json_object_set_new(d, "response_modes_supported", strs((const char *const[]){"query", NULL}));
    json_object_set_new(d, "grant_types_supported",
                        strs((const char *const[]){"authorization_code", "refresh_token",
                                                   "client_credentials", "password", NULL}));
    json_object_set_new(d, "subject_types_supported", strs((const char *const[]){"public", NULL}));
    json_object_set_new(d, "id_token_signing_alg_values_supported", strs(signing));
    json_object_set_new(d, "userinfo_signing_alg_values_supported", json_array());
    json_object_set_new(d, "code_challenge_methods_supported", strs((const char *const[]){"S256", NULL}));
    json_object_set_new(d, "token_endpoint_auth_methods_supported", strs(auth_methods));
    json_object_set_new(d, "token_endpoint_auth_signing_alg_values_supported", strs(signing));
    json_object_set_new(d, "introspection_endpoint_auth_methods_supported", strs(auth_methods));
    json_object_set_new(d, "revocation_endpoint_auth_methods_supported", strs(auth_methods));
    json_object_set_new(d, "access_token_signing_alg_values_supported", strs(es256));
    json_object_set_new(d, "scopes_supported",
                        strs((const char *const[]){"openid", "profile", "email", "phone", "offline_access",
                                                   "ledger:read", "ledger:write", NULL}));
    json_object_set_new(
        d, "claims_supported",
        strs((const char *const[]){"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr",
                                   "azp", "name", "preferred_username", "updated_at", "email",
                                   "email_verified", "phone_number", "phone_number_verified", NULL}));
    json_object_set_new(d, "prompt_values_supported",
                        strs((const char *const[]){"none", "login", "consent", NULL}));
    json_object_set_new(d, "ui_locales_supported", strs((const char *const[]){"es", "en", NULL}));
    json_object_set_new(d, "authorization_response_iss_parameter_supported", json_true());
    json_object_set_new(d, "claims_parameter_supported", json_false());
    json_object_set_new(d, "request_parameter_supported", json_false());
    json_object_set_new(d, "request_uri_parameter_supported", json_false());
    json_object_set_new(d, "require_request_uri_registration", json_true());
    bv_reply_json(c, 200, d);
}

void oauth_on_jwks(bv_call_t *c)
{
    oauth_t *o = c->ctx;
    json_t *jwks = NULL;
    int rc = bv_keys_jwks(o->keys, &jwks);
    if (rc != 0) {
        bv_reply_problem(c, rc, NULL, NULL);
        return;
    }
    bv_reply_json(c, 200, jwks);
}
