/* RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): GET|POST /oauth2/logout.
 * With a valid id_token_hint (ours; expiry ignored) the browser session ends at once and
 * the user goes back to a registered post_logout_redirect_uri with state. Without one, a
 * GET shows a confirmation form whose POST (same-site only: the session cookie is
 * SameSite=Lax) ends the session. Ending a session revokes the grants issued through it. */
#include <stdio.h>
#include <string.h>

#include "base/errors.h"
#include "base/log.h"
#include "oauth/internal.h"

static int tx_end(bv_tx_t *tx, void *varg)
{
    const char *sid = varg;
    int64_t now = bv_now_us();
    int rc = bv_tx_execf(tx, "UPDATE oauth_sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL", "it",
                         now, sid);
    if (rc != 0)
        return rc;
    return bv_tx_execf(tx,
                       "UPDATE oauth_families SET revoked_at = ?, revoked_reason = 'logout' "
                       "WHERE session_id = ? AND revoked_at IS NULL",
                       "it", now, sid);
}

/* Verifies an ID token we issued (signature with our keys, iss); its aud into client_out. */
static int id_token_hint_ok(oauth_t *o, const char *tok, char client_out[128])
{
    jwt_t j;
    int ok = 0;
    if (o->validator == NULL || jwt_parse(tok, strlen(tok), &j) != 0)
        return 0;
    jws_alg_t alg = jws_alg_parse(json_string_value(json_object_get(j.header, "alg")));
    const char *kid = json_string_value(json_object_get(j.header, "kid"));
    const char *iss = json_string_value(json_object_get(j.payload, "iss"));
    const char *aud = json_string_value(json_object_get(j.payload, "aud"));
    if (alg != JWS_ALG_NONE_ && kid != NULL && iss != NULL && aud != NULL &&
        strcmp(iss, oauth_issuer(o)) == 0 && strlen(aud) < 128 &&
        keycache_verify(&o->validator->kc, kid, alg, tok, j.signing_input_len, j.sig, j.sig_len) == 0) {
        snprintf(client_out, 128, "%s", aud);
        ok = 1;
    }
    jwt_free(&j);
    return ok;
}

void oauth_on_logout(bv_call_t *c)
{
    oauth_t *o = c->ctx;
    oauth_form_t f;
    oauth_session_t s;
    oauth_client_t cl = {0};
    char client_id[128] = "";
    locale_t_ loc = oauth_locale_pick(NULL, o->app->cfg->locale);
    if (oauth_call_form_or_reply(c, &f, 0) != 0)
        return;
    loc = oauth_locale_pick(oauth_form_get(&f, "ui_locales"), o->app->cfg->locale);
    const char *hint = oauth_form_get(&f, "id_token_hint"),
               *redirect = oauth_form_get(&f, "post_logout_redirect_uri");
    const char *state = oauth_form_get(&f, "state"), *cid = oauth_form_get(&f, "client_id");
    int hinted = hint != NULL && id_token_hint_ok(o, hint, client_id);
    if (hint != NULL && !hinted) {
        oauth_render_error(c, 400, loc, "invalid_request",
                           "id_token_hint is not a valid ID token of this server");
        return;
    }
    if (cid != NULL && hinted && strcmp(cid, client_id) != 0) {
        oauth_render_error(c, 400, loc, "invalid_request", "client_id does not match id_token_hint");
        return;
    }
    if (!hinted && cid != NULL)
        snprintf(client_id, sizeof(client_id), "%s", cid);
    if (redirect != NULL && (client_id[0] == '\0' || oauth_client_load(o, client_id, &cl) != 0 ||
                             !oauth_client_post_logout_ok(&cl, redirect))) {
        oauth_client_clear(&cl);
        oauth_render_error(c, 400, loc, "invalid_request",
                           "post_logout_redirect_uri is not registered for the client");
        return;
    }
    oauth_client_clear(&cl);
    int confirmed = hinted || (strcmp(c->method, "POST") == 0 && oauth_form_get(&f, "confirm") != NULL);
    if (!confirmed) {
        /* a confirmation form: a cross-site page cannot end the session on its own */
        bv_buf_t b = {0};
        bv_buf_puts(&b,
                    "<!doctype html><html><head><meta charset=\"utf-8\"><title>Bóveda</title></head><body>"
                    "<form method=\"post\" action=\"/oauth2/logout\"><input type=\"hidden\" name=\"confirm\" "
                    "value=\"1\">");
        if (redirect != NULL) {
            bv_buf_puts(&b, "<input type=\"hidden\" name=\"post_logout_redirect_uri\" value=\"");
            oauth_html_escape(&b, redirect);
            bv_buf_puts(&b, "\"><input type=\"hidden\" name=\"client_id\" value=\"");
            oauth_html_escape(&b, client_id);
            bv_buf_puts(&b, "\">");
        }
        if (state != NULL) {
            bv_buf_puts(&b, "<input type=\"hidden\" name=\"state\" value=\"");
            oauth_html_escape(&b, state);
            bv_buf_puts(&b, "\">");
        }
        bv_buf_printf(&b, "<p>%s</p><button type=\"submit\">%s</button></form></body></html>",
                      loc == LOC_EN ? "Sign out of B&oacute;veda?"
                                    : "&iquest;Cerrar la sesi&oacute;n en B&oacute;veda?",
                      loc == LOC_EN ? "Sign out" : "Cerrar sesi&oacute;n");
        bv_reply_raw(c, 200, "text/html; charset=utf-8", b.data, b.len);
        bv_buf_free(&b);
        return;
    }
    if (oauth_session_load(o, c, &s) == 0) {
        int rc = bv_store_run_tx(o->store, 1, tx_end, s.id);
        if (rc != 0) {
            bv_reply_problem(c, rc, NULL, NULL);
            return;
        }
    }
    bv_call_add_header(c, "set-cookie",
                       OAUTH_SESSION_COOKIE "=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0");
    if (redirect != NULL) {
        bv_buf_t b = {0};
        bv_buf_puts(&b, redirect);
        if (state != NULL) {
            bv_buf_puts(&b, strchr(redirect, '?') ? "&state=" : "?state=");
            oauth_url_encode(&b, state);
        }
        bv_call_add_header(c, "location", b.data);
        bv_buf_free(&b);
        bv_reply_empty(c, 303);
        return;
    }
    oauth_render_message(c, 200, loc, "logged_out");
}
