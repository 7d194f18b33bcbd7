/* POST /oauth2/token (RFC 6749 §3.2): authorization_code (+PKCE, one use: a replay revokes
 * what the code issued), refresh_token (rotated on every use: a replay of an old one
 * revokes the whole family), client_credentials, and password for clients flagged
 * legacy first-party only. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "base/errors.h"
#include "base/log.h"
#include "mfa/mfa.h"
#include "oauth/internal.h"

typedef struct {
    /* in */
    const char *hash; /* of the presented code / refresh token */
    const char *client_id;
    const char *redirect_uri;
    const char *verifier;
    int want_refresh;
    char new_refresh_hash[65];
    /* out */
    int bad;   /* invalid_grant */
    int reuse; /* a replay: revoked */
    const char *why;
    char family_id[BV_UUID_STR_LEN + 1];
    char user_id[BV_UUID_STR_LEN + 1];
    char scope[512];
    char nonce[520];
    int has_nonce;
    int64_t auth_time;
    char acr[64], amr[64];
} grant_arg_t;

static void col(bv_stmt_t *s, int i, char *out, size_t n)
{
    const char *v = bv_stmt_text(s, i);
    snprintf(out, n, "%s", v ? v : "");
}

static int insert_family(bv_tx_t *tx, grant_arg_t *a, const char *session_id)
{
    int64_t now = bv_now_us();
    bv_uuid7(a->family_id);
    bv_stmt_t *s =
        bv_tx_prepare(tx, "INSERT INTO oauth_families (id, client_id, user_id, session_id, scope, auth_time, "
                          "acr, amr, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->family_id, -1);
    bv_stmt_bind_text(s, 2, a->client_id, -1);
    bv_stmt_bind_text(s, 3, a->user_id, -1);
    bv_stmt_bind_text(s, 4, session_id, -1);
    bv_stmt_bind_text(s, 5, a->scope, -1);
    bv_stmt_bind_int64(s, 6, a->auth_time);
    bv_stmt_bind_text(s, 7, a->acr, -1);
    bv_stmt_bind_text(s, 8, a->amr, -1);
    bv_stmt_bind_int64(s, 9, now);
    bv_stmt_bind_int64(s, 10, now + (int64_t)BV_OAUTH_REFRESH_TTL * 1000000);
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc == BV_DONE ? 0 : rc < 0 ? rc : BV_EIO;
}

static int insert_refresh(bv_tx_t *tx, const char *hash, const char *family_id)
{
    int64_t now = bv_now_us();
    bv_stmt_t *s =
        bv_tx_prepare(tx, "INSERT INTO oauth_refresh_tokens (id, family_id, created_at, expires_at) "
                          "VALUES (?, ?, ?, ?)");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, hash, -1);
    bv_stmt_bind_text(s, 2, family_id, -1);
    bv_stmt_bind_int64(s, 3, now);
    bv_stmt_bind_int64(s, 4, now + (int64_t)BV_OAUTH_REFRESH_TTL * 1000000);
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc == BV_DONE ? 0 : rc < 0 ? rc : BV_EIO;
}

static int audit_reuse(bv_tx_t *tx, const char *what, const char *client_id, const char *family_id)
{
    char actor[160], resource[64];
    snprintf(actor, sizeof(actor), "client:%s", client_id);
    snprintf(resource, sizeof(resource), "grant:%s", family_id[0] ? family_id : "-");
    json_t *d = json_pack("{s:s}", "reuse_of", what);
    bv_audit_event_t ev = {.actor = actor,
                           .action = "oauth.grant.revoke",
                           .resource = resource,
                           .outcome = "denied",
                           .details = d};
    int rc = bv_audit_append(tx, &ev);
    json_decref(d);
    return rc;
}

static int tx_code(bv_tx_t *tx, void *varg)
{
    grant_arg_t *a = varg;
    char client[128], redirect[520], challenge[64], session[65];
    int64_t now = bv_now_us();
    int rc;
    bv_stmt_t *s =
        bv_tx_prepare(tx, "SELECT client_id, user_id, coalesce(session_id, ''), redirect_uri, scope, nonce, "
                          "code_challenge, auth_time, acr, amr, expires_at, used_at, "
                          "coalesce(family_id, '') FROM oauth_codes WHERE id = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->hash, -1);
    rc = bv_stmt_step(s);
    if (rc != BV_ROW) {
        bv_stmt_reset(s);
        a->bad = 1;
        a->why = "unknown authorization code";
        return rc == BV_DONE ? 0 : rc;
    }
    col(s, 0, client, sizeof(client));
    col(s, 1, a->user_id, sizeof(a->user_id));
    col(s, 2, session, sizeof(session));
    col(s, 3, redirect, sizeof(redirect));
    col(s, 4, a->scope, sizeof(a->scope));
    a->has_nonce = !bv_stmt_is_null(s, 5);
    col(s, 5, a->nonce, sizeof(a->nonce));
    col(s, 6, challenge, sizeof(challenge));
    a->auth_time = bv_stmt_int64(s, 7);
    col(s, 8, a->acr, sizeof(a->acr));
    col(s, 9, a->amr, sizeof(a->amr));
    int64_t expires = bv_stmt_int64(s, 10);
    int used = !bv_stmt_is_null(s, 11);
    col(s, 12, a->family_id, sizeof(a->family_id));
    bv_stmt_reset(s);
    if (strcmp(client, a->client_id) != 0) {
        a->bad = 1;
        a->why = "the code was issued to another client";
        return 0;
    }
    if (used) {
        /* RFC 9700 §4.2.4 / RFC 6749 §4.1.2: revoke what the code issued */
        a->bad = a->reuse = 1;
        a->why = "the authorization code was already used";
        if (a->family_id[0] && (rc = oauth_family_revoke_tx(tx, a->family_id, "code_reuse")) != 0)
            return rc;
        return audit_reuse(tx, "authorization_code", a->client_id, a->family_id);
    }
    if (expires <= now) {
        a->bad = 1;
        a->why = "the authorization code expired";
        return 0;
    }
    if (a->redirect_uri == NULL || strcmp(a->redirect_uri, redirect) != 0) {
        a->bad = 1;
        a->why = "redirect_uri does not match the authorization request";
        return 0;
    }
    if (!oauth_pkce_verify(a->verifier, challenge)) {
        a->bad = 1;
        a->why = "code_verifier does not match the code_challenge";
        return 0;
    }
    if ((rc = insert_family(tx, a, session[0] ? session : NULL)) != 0)
        return rc;
    if (a->want_refresh && (rc = insert_refresh(tx, a->new_refresh_hash, a->family_id)) != 0)
        return rc;
    s = bv_tx_prepare(tx,
                      "UPDATE oauth_codes SET used_at = ?, family_id = ? WHERE id = ? AND used_at IS NULL");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, now);
    bv_stmt_bind_text(s, 2, a->family_id, -1);
    bv_stmt_bind_text(s, 3, a->hash, -1);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc == BV_DONE ? 0 : rc < 0 ? rc : BV_EIO;
}

static int tx_refresh(bv_tx_t *tx, void *varg)
{
    grant_arg_t *a = varg;
    char client[128];
    int64_t now = bv_now_us();
    int rc;
    bv_stmt_t *s =
        bv_tx_prepare(tx, "SELECT f.id, f.client_id, f.user_id, f.scope, f.auth_time, f.acr, f.amr, "
                          "f.revoked_at, f.expires_at, t.expires_at, t.used_at FROM oauth_refresh_tokens t "
                          "JOIN oauth_families f ON f.id = t.family_id WHERE t.id = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->hash, -1);
    rc = bv_stmt_step(s);
    if (rc != BV_ROW) {
        bv_stmt_reset(s);
        a->bad = 1;
        a->why = "unknown refresh token";
        return rc == BV_DONE ? 0 : rc;
    }
    col(s, 0, a->family_id, sizeof(a->family_id));
    col(s, 1, client, sizeof(client));
    col(s, 2, a->user_id, sizeof(a->user_id));
    col(s, 3, a->scope, sizeof(a->scope));
    a->auth_time = bv_stmt_int64(s, 4);
    col(s, 5, a->acr, sizeof(a->acr));
    col(s, 6, a->amr, sizeof(a->amr));
    int revoked = !bv_stmt_is_null(s, 7);
    int64_t fam_exp = bv_stmt_int64(s, 8), tok_exp = bv_stmt_int64(s, 9);
    int used = !bv_stmt_is_null(s, 10);
    bv_stmt_reset(s);
    if (strcmp(client, a->client_id) != 0) {
        a->bad = 1;
        a->why = "the refresh token was issued to another client";
        return 0;
    }
    if (revoked) {
        a->bad = 1;
        a->why = "the grant was revoked";
        return 0;
    }
    if (used) {
        /* RFC 9700 §4.14.2: a rotated token came back: someone holds a copy. */
        a->bad = a->reuse = 1;
        a->why = "the refresh token was already used; the grant is revoked";
        if ((rc = oauth_family_revoke_tx(tx, a->family_id, "refresh_reuse")) != 0)
            return rc;
        return audit_reuse(tx, "refresh_token", a->client_id, a->family_id);
    }
    if (tok_exp <= now || fam_exp <= now) {
        a->bad = 1;
        a->why = "the refresh token expired";
        return 0;
    }
    if ((rc = bv_tx_execf(tx, "UPDATE oauth_refresh_tokens SET used_at = ? WHERE id = ? AND used_at IS NULL", "it",
                          now, a->hash)) != 0)
        return rc;
    return insert_refresh(tx, a->new_refresh_hash, a->family_id);
}

static int tx_password_family(bv_tx_t *tx, void *varg)
{
    grant_arg_t *a = varg;
    int rc = insert_family(tx, a, NULL);
    if (rc == 0 && a->want_refresh)
        rc = insert_refresh(tx, a->new_refresh_hash, a->family_id);
    return rc;
}

/* Prepares a new refresh token (value and hash) when the client may refresh. */
static int prepare_refresh(oauth_t *o, const oauth_client_t *cl, grant_arg_t *a, char value[64])
{
    a->want_refresh = oauth_client_has_grant(cl, "refresh_token");
    value[0] = '\0';
    if (!a->want_refresh)
        return 0;
    char r[48];
    oauth_random_token(32, r);
    snprintf(value, 64, "bvr_%s", r);
    OPENSSL_cleanse(r, sizeof(r));
    return oauth_lookup_hash(o, value, a->new_refresh_hash);
}

/* Access token, refresh token and ID token of a user grant into a 200 reply. */
static void reply_user_tokens(oauth_t *o, bv_call_t *c, const oauth_client_t *cl, const grant_arg_t *a,
                              const char *scope, const char *refresh, int with_id_token)
{
    json_t *resp = json_object();
    oauth_grant_t g = {cl->id, a->user_id, scope, a->family_id, a->auth_time, a->acr, a->amr};
    int rc = oauth_issue_access_token(o, &g, resp);
    if (rc == 0 && refresh[0] != '\0')
        json_object_set_new(resp, "refresh_token", json_string(refresh));
    if (rc == 0 && with_id_token && oauth_scope_has(scope, "openid"))
        rc = oauth_issue_id_token(o, &g, a->has_nonce ? a->nonce : NULL, cl->id_token_alg, resp);
    if (rc != 0) {
        json_decref(resp);
        bv_reply_problem(c, rc, NULL, NULL);
        return;
    }
    bv_call_add_header(c, "pragma", "no-cache");
    bv_reply_json(c, 200, resp);
}

static int user_active(oauth_t *o, const char *user_id)
{
    bv_identity_user_t u;
    return bv_identity_user_get(o->identity, user_id, &u) == 0 && strcmp(u.status, BV_IDENTITY_ACTIVE) == 0;
}

static void grant_code(oauth_t *o, bv_call_t *c, const oauth_form_t *f, const oauth_client_t *cl)
{
    grant_arg_t a = {0};
    char refresh[64];
    const char *code = oauth_form_get(f, "code");
    char hash[65];
    a.client_id = cl->id;
    a.redirect_uri = oauth_form_get(f, "redirect_uri");
    a.verifier = oauth_form_get(f, "code_verifier");
    if (code == NULL || a.redirect_uri == NULL) {
        oauth_reply_error(c, 400, "invalid_request", "code and redirect_uri are required");
        return;
    }
    if (a.verifier == NULL) {
        oauth_reply_error(c, 400, "invalid_request", "code_verifier is required (PKCE)");
        return;
    }
    if (strlen(code) > 128 || oauth_lookup_hash(o, code, hash) != 0) {
        oauth_reply_error(c, 400, "invalid_grant", "unknown authorization code");
        return;
    }
    a.hash = hash;
    int rc = prepare_refresh(o, cl, &a, refresh);
    if (rc == 0)
        rc = bv_store_run_tx(o->store, 1, tx_code, &a);
    if (rc != 0) {
        bv_reply_problem(c, rc, NULL, NULL);
        goto out;
    }
    if (a.reuse)
        bv_log(BV_LOG_WARN, c->request_id, "authorization code reused: grant revoked",
               "\"client_id\":\"%.100s\",\"family\":\"%s\"", cl->id, a.family_id);
    if (a.bad) {
        oauth_reply_error(c, 400, "invalid_grant", a.why);
        goto out;
    }
    reply_user_tokens(o, c, cl, &a, a.scope, refresh, 1);
out:
    OPENSSL_cleanse(refresh, sizeof(refresh));
}

static void grant_refresh(oauth_t *o, bv_call_t *c, const oauth_form_t *f, const oauth_client_t *cl)
{
    grant_arg_t a = {0};
    char refresh[64] = "", hash[65];
    const char *rt = oauth_form_get(f, "refresh_token"), *scope = oauth_form_get(f, "scope");
    a.client_id = cl->id;
    if (rt == NULL) {
        oauth_reply_error(c, 400, "invalid_request", "refresh_token is required");
        return;
    }
    if (strlen(rt) > 128 || oauth_lookup_hash(o, rt, hash) != 0) {
        oauth_reply_error(c, 400, "invalid_grant", "unknown refresh token");
        return;
    }
    a.hash = hash;
    int rc = prepare_refresh(o, cl, &a, refresh);
    if (rc == 0 && !a.want_refresh) {
        oauth_reply_error(c, 400, "unauthorized_client", "the client may not use refresh tokens");
        return;
    }
    if (rc == 0)
        rc = bv_store_run_tx(o->store, 1, tx_refresh, &a);
    if (rc != 0) {
        bv_reply_problem(c, rc, NULL, NULL);
        goto out;
    }
    if (a.reuse)
        bv_log(BV_LOG_WARN, c->request_id, "refresh token reused: grant revoked",
               "\"client_id\":\"%.100s\",\"family\":\"%s\"", cl->id, a.family_id);
    if (a.bad) {
        oauth_reply_error(c, 400, "invalid_grant", a.why);
        goto out;
    }
    if (!user_active(o, a.user_id)) {
        oauth_reply_error(c, 400, "invalid_grant", "the user is no longer active");
        goto out;
    }
    /* RFC 6749 §6: a narrower scope may be asked for, never a wider one */
    if (scope != NULL && (scope[0] == '\0' || !oauth_scope_subset(scope, a.scope))) {
        oauth_reply_error(c, 400, "invalid_scope", "the scope exceeds the grant");
        goto out;
    }
    reply_user_tokens(o, c, cl, &a, scope != NULL ? scope : a.scope, refresh, 1);
out:
    OPENSSL_cleanse(refresh, sizeof(refresh));
}

static void grant_client_credentials(oauth_t *o, bv_call_t *c, const oauth_form_t *f,
                                     const oauth_client_t *cl)
{
    const char *scope = oauth_form_get(f, "scope");
    char def[512] = "";
    if (scope == NULL) { /* default: every scope registered for it except the user-only ones */
        const char *s = cl->scope;
        size_t off = 0;
        while (*s) {
            while (*s == ' ')
                s++;
            const char *e = s;
            while (*e && *e != ' ')
                e++;
            if (e > s && !(e - s == 6 && strncmp(s, "openid", 6) == 0) &&
                !(e - s == 14 && strncmp(s, "offline_access", 14) == 0) &&
                off + (size_t)(e - s) + 2 < sizeof(def))
                off +=
                    (size_t)snprintf(def + off, sizeof(def) - off, "%s%.*s", off ? " " : "", (int)(e - s), s);
            s = e;
        }
        scope = def;
    }
    if (!oauth_scope_subset(scope, cl->scope) || oauth_scope_has(scope, "openid") ||
        oauth_scope_has(scope, "offline_access")) {
        oauth_reply_error(c, 400, "invalid_scope", "the scope is not allowed for this client");
        return;
    }
    bv_buf_t body = {0};
    oauth_grant_t g = {cl->id, NULL, scope, NULL, 0, NULL, NULL};
    int rc = oauth_access_token_response(o, &g, &body);
    if (rc != 0) {
        bv_buf_free(&body);
        bv_reply_problem(c, rc, NULL, NULL);
        return;
    }
    bv_call_add_header(c, "pragma", "no-cache");
    bv_reply_raw(c, 200, "application/json", body.data, body.len);
    bv_buf_free(&body);
}

static void grant_password(oauth_t *o, bv_call_t *c, const oauth_form_t *f, const oauth_client_t *cl)
{
    const char *username = oauth_form_get(f, "username"), *password = oauth_form_get(f, "password");
    const char *scope = oauth_form_get(f, "scope");
    grant_arg_t a = {0};
    char refresh[64] = "";
    bv_login_result_t lr;
    if (!cl->legacy_password || !cl->first_party) {
        oauth_reply_error(c, 400, "unauthorized_client", "the password grant is disabled for this client");
        return;
    }
    if (username == NULL || password == NULL) {
        oauth_reply_error(c, 400, "invalid_request", "username and password are required");
        return;
    }
    if (scope == NULL)
        scope = cl->scope;
    if (!oauth_scope_subset(scope, cl->scope)) {
        oauth_reply_error(c, 400, "invalid_scope", "the scope is not allowed for this client");
        return;
    }
    int rc = bv_identity_authenticate(o->identity, username, password, strlen(password), c->client_ip,
                                      c->request_id, &lr);
    OPENSSL_cleanse((char *)password, strlen(password));
    if (rc != 0) {
        bv_reply_problem(c, rc, NULL, NULL);
        return;
    }
    if (lr.outcome == BV_LOGIN_THROTTLED) {
        char ra[24];
        snprintf(ra, sizeof(ra), "%lld", (long long)lr.retry_after_s);
        bv_call_add_header(c, "retry-after", ra);
        oauth_reply_error(c, 400, "invalid_grant", "too many failed attempts; try again later");
        return;
    }
    if (lr.outcome != BV_LOGIN_OK) {
        oauth_reply_error(c, 400, "invalid_grant", "invalid username or password");
        return;
    }
    /* The password grant has no room for a second factor: whenever the hosted login would
     * ask for one (BOVEDA_MFA_LOGIN_POLICY "all", or a user with a soft token), the user must
     * log in through it (authorization code), never around it. */
    int need_otp = 0;
    if ((rc = bv_mfa_login_required(lr.user.id, &need_otp)) != 0) {
        bv_reply_problem(c, rc, NULL, NULL);
        return;
    }
    if (need_otp) {
        oauth_reply_error(c, 400, "invalid_grant",
                          "this login needs a second factor: use the authorization code flow");
        return;
    }
    a.client_id = cl->id;
    snprintf(a.user_id, sizeof(a.user_id), "%s", lr.user.id);
    snprintf(a.scope, sizeof(a.scope), "%s", scope);
    a.auth_time = bv_now_us() / 1000000;
    snprintf(a.acr, sizeof(a.acr), "urn:boveda:loa:1");
    snprintf(a.amr, sizeof(a.amr), "pwd");
    if ((rc = prepare_refresh(o, cl, &a, refresh)) == 0)
        rc = bv_store_run_tx(o->store, 1, tx_password_family, &a);
    if (rc != 0)
        bv_reply_problem(c, rc, NULL, NULL);
    else
        reply_user_tokens(o, c, cl, &a, scope, refresh, 1);
    OPENSSL_cleanse(refresh, sizeof(refresh));
}

void oauth_on_token(bv_call_t *c)
{
    oauth_t *o = c->ctx;
    oauth_form_t f;
    oauth_authed_client_t ac;
    char url[600];
    if (oauth_call_form_or_reply(c, &f, 1) != 0)
        return;
    const char *grant = oauth_form_get(&f, "grant_type");
    if (grant == NULL) {
        oauth_reply_error(c, 400, "invalid_request", "grant_type is required");
        return;
    }
    snprintf(url, sizeof(url), "%s/oauth2/token", oauth_issuer(o));
    if (oauth_client_auth_or_reply(o, c, &f, url, &ac) != 0)
        return;
    const oauth_client_t *cl = &ac.client;
    if (strcmp(grant, "authorization_code") != 0 && strcmp(grant, "refresh_token") != 0 &&
        strcmp(grant, "client_credentials") != 0 && strcmp(grant, "password") != 0)
        oauth_reply_error(c, 400, "unsupported_grant_type",
                          "supported: authorization_code, refresh_token, "
                          "client_credentials");
    else if (!oauth_client_has_grant(cl, grant))
        oauth_reply_error(c, 400, "unauthorized_client", "the client may not use this grant type");
    else if (strcmp(grant, "authorization_code") == 0)
        grant_code(o, c, &f, cl);
    else if (strcmp(grant, "refresh_token") == 0)
        grant_refresh(o, c, &f, cl);
    else if (strcmp(grant, "client_credentials") == 0)
        grant_client_credentials(o, c, &f, cl);
    else
        grant_password(o, c, &f, cl);
    oauth_client_clear(&ac.client);
}
