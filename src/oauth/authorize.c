/* GET /oauth2/authorize (RFC 6749 §4.1.1, OIDC Core §3.1.2, RFC 9700): code flow only,
 * PKCE S256 for every client, exact redirect URIs, RFC 9207 `iss` on every response.
 *
 * Until the client and its redirect URI are known to be valid, errors are shown as a page
 * and never redirected (RFC 6749 §4.1.2.1); afterwards they go back to the client with
 * state and iss. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "base/log.h"
#include "oauth/internal.h"

#define STATE_MAX 512

void oauth_redirect_error(oauth_t *o, bv_call_t *c, const char *redirect_uri, const char *error,
                          const char *description, const char *state)
{
    bv_buf_t b = {0};
    bv_buf_puts(&b, redirect_uri);
    bv_buf_puts(&b, strchr(redirect_uri, '?') ? "&error=" : "?error=");
    oauth_url_encode(&b, error);
    if (description != NULL) {
        bv_buf_puts(&b, "&error_description=");
        oauth_url_encode(&b, description);
    }
    if (state != NULL) {
        bv_buf_puts(&b, "&state=");
        oauth_url_encode(&b, state);
    }
    bv_buf_puts(&b, "&iss=");
    oauth_url_encode(&b, oauth_issuer(o));
    bv_call_add_header(c, "location", b.data);
    bv_reply_empty(c, 303);
    bv_buf_free(&b);
}

static int within(const char *s, size_t max)
{
    return s == NULL || strlen(s) <= max;
}

void oauth_on_authorize(bv_call_t *c)
{
    oauth_t *o = c->ctx;
    oauth_form_t f;
    oauth_client_t cl = {0};
    oauth_session_t sess;
    locale_t_ loc = oauth_locale_pick(NULL, o->app->cfg->locale);
    int rc;

    if (oauth_form_parse(&c->arena, c->query, strlen(c->query), &f) != 0) {
        oauth_render_error(c, 400, loc, "invalid_request", "malformed query string");
        return;
    }
    loc = oauth_locale_pick(oauth_form_get(&f, "ui_locales"), o->app->cfg->locale);
    const char *client_id = oauth_form_get(&f, "client_id"),
               *redirect_uri = oauth_form_get(&f, "redirect_uri");
    if (client_id == NULL || (rc = oauth_client_load(o, client_id, &cl)) == BV_ENOTFOUND) {
        oauth_render_error(c, 400, loc, "invalid_client", "unknown client_id");
        goto out;
    }
    if (rc != 0) {
        oauth_render_error(c, 503, loc, "temporarily_unavailable", NULL);
        goto out;
    }
    /* Always required, always exact (RFC 9700 §2.1): never fall back to a registered one. */
    if (redirect_uri == NULL || !oauth_client_redirect_ok(&cl, redirect_uri)) {
        oauth_render_error(c, 400, loc, "invalid_request",
                           "redirect_uri is missing or not registered for this client");
        goto out;
    }
    const char *state = oauth_form_get(&f, "state");
    if (f.duplicate != NULL) {
        oauth_redirect_error(o, c, redirect_uri, "invalid_request", "a parameter is repeated",
                             within(state, STATE_MAX) ? state : NULL);
        goto out;
    }
    if (!within(state, STATE_MAX)) {
        oauth_redirect_error(o, c, redirect_uri, "invalid_request", "state is too long", NULL);
        goto out;
    }
    const char *response_type = oauth_form_get(&f, "response_type"), *scope = oauth_form_get(&f, "scope");
    const char *challenge = oauth_form_get(&f, "code_challenge"),
               *method = oauth_form_get(&f, "code_challenge_method");
    const char *nonce = oauth_form_get(&f, "nonce"), *prompt = oauth_form_get(&f, "prompt");
    const char *max_age = oauth_form_get(&f, "max_age");
    if (oauth_form_get(&f, "request") != NULL || oauth_form_get(&f, "request_uri") != NULL) {
        oauth_redirect_error(o, c, redirect_uri, "request_not_supported", "request objects are not supported",
                             state);
        goto out;
    }
    if (response_type == NULL || strcmp(response_type, "code") != 0) {
        oauth_redirect_error(o, c, redirect_uri, "unsupported_response_type",
                             "only response_type=code is supported", state);
        goto out;
    }
    if (!oauth_client_has_grant(&cl, "authorization_code")) {
        oauth_redirect_error(o, c, redirect_uri, "unauthorized_client",
                             "the client may not use the authorization code grant", state);
        goto out;
    }
    if (challenge == NULL) {
        oauth_redirect_error(o, c, redirect_uri, "invalid_request", "code_challenge is required (PKCE)",
                             state);
        goto out;
    }
    if (method == NULL || strcmp(method, "S256") != 0) {
        oauth_redirect_error(o, c, redirect_uri, "invalid_request", "code_challenge_method must be S256",
                             state);
        goto out;
    }
    if (!oauth_pkce_challenge_valid(challenge)) {
        oauth_redirect_error(o, c, redirect_uri, "invalid_request",
                             "code_challenge is not a valid S256 challenge", state);
        goto out;
    }
    if (scope == NULL || scope[0] == '\0' || strlen(scope) > 500 || !oauth_scope_subset(scope, cl.scope)) {
        oauth_redirect_error(o, c, redirect_uri, "invalid_scope",
                             "the scope is missing or not allowed for this client", state);
        goto out;
    }
    if (!within(nonce, STATE_MAX)) {
        oauth_redirect_error(o, c, redirect_uri, "invalid_request", "nonce is too long", state);
        goto out;
    }
    int force_login = 0, none = 0;
    if (prompt != NULL) {
        force_login = oauth_scope_has(prompt, "login") || oauth_scope_has(prompt, "select_account");
        none = oauth_scope_has(prompt, "none");
        if (none && (force_login || oauth_scope_has(prompt, "consent"))) {
            oauth_redirect_error(o, c, redirect_uri, "invalid_request", "prompt=none cannot be combined",
                                 state);
            goto out;
        }
    }
    int64_t max_age_s = -1;
    if (max_age != NULL) {
        char *end;
        max_age_s = strtoll(max_age, &end, 10);
        if (max_age[0] == '\0' || *end != '\0' || max_age_s < 0) {
            oauth_redirect_error(o, c, redirect_uri, "invalid_request",
                                 "max_age must be a non-negative integer", state);
            goto out;
        }
    }
    int have = oauth_session_load(o, c, &sess) == 0 && sess.user_id[0] != '\0';
    if (have && max_age_s >= 0 && bv_now_us() / 1000000 - sess.auth_time > max_age_s)
        have = 0;
    if (have && !force_login && cl.first_party) {
        oauth_code_redirect(o, c, cl.id, redirect_uri, scope, state, nonce, challenge, &sess);
        goto out;
    }
    if (none) {
        oauth_redirect_error(o, c, redirect_uri, have ? "consent_required" : "login_required", NULL, state);
        goto out;
    }
    if (oauth_login_begin(o, c, &cl, redirect_uri, scope, state, nonce, challenge, loc,
                          have && !force_login ? &sess : NULL) != 0)
        oauth_render_error(c, 503, loc, "temporarily_unavailable", NULL);
out:
    oauth_client_clear(&cl);
}
