/* GET|POST /oauth2/userinfo (OIDC Core §5.3): claims of the user behind a live access
 * token holding `openid`, filtered by the profile / email / phone scopes. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/errors.h"
#include "base/log.h"
#include "oauth/internal.h"

static void reply_invalid_token(bv_call_t *c, const char *why)
{
    char h[256];
    snprintf(h, sizeof(h), "Bearer realm=\"boveda\", error=\"invalid_token\", error_description=\"%s\"", why);
    bv_call_add_header(c, "www-authenticate", h);
    bv_reply_problem(c, BV_EUNAUTHENTICATED, why, NULL);
}

void oauth_on_userinfo(bv_call_t *c)
{
    oauth_t *o = c->ctx;
    bv_identity_user_t u;
    const bv_principal_t *p = &c->principal;
    if (p->kind != BV_PRINCIPAL_USER) {
        reply_invalid_token(c, "the access token does not represent a user");
        return;
    }
    /* the authenticator is stateless: check revocation here like introspection does */
    const char *authz = bv_call_header(c, "authorization");
    if (authz != NULL && strncasecmp(authz, "Bearer ", 7) == 0) {
        jwt_t j;
        const char *tok = authz + 7;
        while (*tok == ' ')
            tok++;
        if (jwt_parse(tok, strlen(tok), &j) == 0) {
            const char *jti = json_string_value(json_object_get(j.payload, "jti"));
            const char *fam = json_string_value(json_object_get(j.payload, "bv_fam"));
            int revoked =
                (jti != NULL && oauth_jti_revoked(o, jti)) || (fam != NULL && oauth_family_revoked(o, fam));
            jwt_free(&j);
            if (revoked) {
                reply_invalid_token(c, "the access token was revoked");
                return;
            }
        }
    }
    if (bv_identity_user_get(o->identity, p->subject, &u) != 0 || strcmp(u.status, BV_IDENTITY_ACTIVE) != 0) {
        reply_invalid_token(c, "the user is not active");
        return;
    }
    json_t *r = json_pack("{s:s}", "sub", u.id);
    if (bv_principal_has_scope(p, "profile")) {
        json_object_set_new(r, "preferred_username", json_string(u.username));
        json_object_set_new(r, "name", json_string(u.display_name));
        json_object_set_new(r, "updated_at", json_integer(u.updated_at / 1000000));
    }
    if (bv_principal_has_scope(p, "email") && u.email[0] != '\0') {
        json_object_set_new(r, "email", json_string(u.email));
        json_object_set_new(r, "email_verified", json_false());
    }
    if (bv_principal_has_scope(p, "phone") && u.phone[0] != '\0') {
        json_object_set_new(r, "phone_number", json_string(u.phone));
        json_object_set_new(r, "phone_number_verified", json_false());
    }
    bv_reply_json(c, 200, r);
}
