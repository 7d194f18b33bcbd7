/* The hosted login: browser sessions (cookie __Host-boveda_session, stored hashed), login
 * transactions made of steps, and POST /oauth2/login which runs one step per request.
 *
 * A login transaction records the authorization request it serves, the steps it needs in
 * order ("password", then "otp" when BOVEDA_MFA_LOGIN_POLICY asks for a second factor
 * (src/mfa/: a TOTP code, or an SMS / e-mail code; added by the password step), plus
 * "consent" for third-party clients) and the steps done.
 * Each form post carries the transaction id and a CSRF token; both the token (stored
 * hashed) and the session cookie must match the transaction. When the last step is done
 * the session is rotated (a new cookie: no session fixation), the transaction is closed
 * and an authorization code is issued. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "base/log.h"
#include "mfa/mfa.h"
#include "oauth/internal.h"

#define ACR_PWD "urn:boveda:loa:1"
#define ACR_MFA "urn:boveda:loa:2" /* password and a second factor (issue 7) */

typedef struct {
    char id[BV_UUID_STR_LEN + 1];
    char session_id[65];
    char csrf_hash[65];
    char client_id[128];
    char redirect_uri[520];
    char scope[512];
    char state[520];
    int has_state;
    char nonce[520];
    int has_nonce;
    char challenge[64];
    char locale[4];
    char steps_required[128];
    char steps_done[128];
    char user_id[BV_UUID_STR_LEN + 1];
    int64_t expires_at, completed_at;
} login_tx_t;

/* ---- sessions ---- */
static void set_session_cookie(bv_call_t *c, const char *value, int64_t max_age)
{
    char h[256];
    snprintf(h, sizeof(h), OAUTH_SESSION_COOKIE "=%s; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=%lld",
             value, (long long)max_age);
    bv_call_add_header(c, "set-cookie", h);
}

typedef struct {
    const char *id;
    oauth_session_t *out;
} sess_get_t;

static int tx_session_get(bv_tx_t *tx, void *varg)
{
    sess_get_t *a = varg;
    bv_stmt_t *s =
        bv_tx_prepare(tx, "SELECT coalesce(user_id, ''), coalesce(auth_time, 0), coalesce(acr, ''), "
                          "coalesce(amr, '') FROM oauth_sessions WHERE id = ? AND ended_at IS NULL "
                          "AND expires_at > ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->id, -1);
    bv_stmt_bind_int64(s, 2, bv_now_us());
    int rc = bv_stmt_step(s);
    if (rc == BV_ROW) {
        memset(a->out, 0, sizeof(*a->out));
        snprintf(a->out->id, sizeof(a->out->id), "%s", a->id);
        snprintf(a->out->user_id, sizeof(a->out->user_id), "%s", bv_stmt_text(s, 0));
        a->out->auth_time = bv_stmt_int64(s, 1);
        snprintf(a->out->acr, sizeof(a->out->acr), "%s", bv_stmt_text(s, 2));
        snprintf(a->out->amr, sizeof(a->out->amr), "%s", bv_stmt_text(s, 3));
    }
    bv_stmt_reset(s);
    return rc == BV_ROW ? 0 : rc == BV_DONE ? BV_ENOTFOUND : rc;
}

int oauth_session_load(oauth_t *o, bv_call_t *c, oauth_session_t *out)
{
    char id[65];
    const char *v = oauth_cookie(c, OAUTH_SESSION_COOKIE);
    memset(out, 0, sizeof(*out));
    if (v == NULL || strlen(v) < 32 || strlen(v) > 64 || oauth_lookup_hash(o, v, id) != 0)
        return BV_ENOTFOUND;
    sess_get_t a = {id, out};
    return bv_store_run_tx(o->store, 0, tx_session_get, &a);
}

static int session_insert(bv_tx_t *tx, const char *id, const char *user_id, int64_t auth_time,
                          const char *acr, const char *amr)
{
    int64_t now = bv_now_us();
    bv_stmt_t *s =
        bv_tx_prepare(tx, "INSERT INTO oauth_sessions (id, user_id, auth_time, acr, amr, created_at, "
                          "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, id, -1);
    bv_stmt_bind_text(s, 2, user_id, -1);
    if (user_id != NULL)
        bv_stmt_bind_int64(s, 3, auth_time);
    else
        bv_stmt_bind_null(s, 3);
    bv_stmt_bind_text(s, 4, acr, -1);
    bv_stmt_bind_text(s, 5, amr, -1);
    bv_stmt_bind_int64(s, 6, now);
    bv_stmt_bind_int64(s, 7, now + (int64_t)BV_OAUTH_SESSION_TTL * 1000000);
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc == BV_DONE ? 0 : rc < 0 ? rc : BV_EIO;
}

/* ---- login transactions ---- */
typedef struct {
    login_tx_t *t;
    const char *new_session_id; /* a pre-auth session to create first, or NULL */
} begin_arg_t;

static int tx_begin(bv_tx_t *tx, void *varg)
{
    begin_arg_t *a = varg;
    login_tx_t *t = a->t;
    int64_t now = bv_now_us();
    int rc;
    if (a->new_session_id != NULL && (rc = session_insert(tx, a->new_session_id, NULL, 0, NULL, NULL)) != 0)
        return rc;
    bv_stmt_t *s =
        bv_tx_prepare(tx, "INSERT INTO oauth_login_tx (id, session_id, csrf_hash, client_id, redirect_uri, "
                          "scope, state, nonce, code_challenge, locale, steps_required, steps_done, "
                          "user_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', "
                          "?, ?, ?)");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, t->id, -1);
    bv_stmt_bind_text(s, 2, t->session_id, -1);
    bv_stmt_bind_text(s, 3, t->csrf_hash, -1);
    bv_stmt_bind_text(s, 4, t->client_id, -1);
    bv_stmt_bind_text(s, 5, t->redirect_uri, -1);
    bv_stmt_bind_text(s, 6, t->scope, -1);
    bv_stmt_bind_text(s, 7, t->has_state ? t->state : NULL, -1);
    bv_stmt_bind_text(s, 8, t->has_nonce ? t->nonce : NULL, -1);
    bv_stmt_bind_text(s, 9, t->challenge, -1);
    bv_stmt_bind_text(s, 10, t->locale, -1);
    bv_stmt_bind_text(s, 11, t->steps_required, -1);
    bv_stmt_bind_text(s, 12, t->user_id[0] ? t->user_id : NULL, -1);
    bv_stmt_bind_int64(s, 13, now);
    bv_stmt_bind_int64(s, 14, t->expires_at);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc != BV_DONE)
        return rc < 0 ? rc : BV_EIO;
    /* housekeeping: forget long-finished transactions and sessions */
    if ((s = bv_tx_prepare(tx, "DELETE FROM oauth_login_tx WHERE expires_at < ?")) != NULL) {
        bv_stmt_bind_int64(s, 1, now - 86400LL * 1000000);
        bv_stmt_step(s);
        bv_stmt_reset(s);
    }
    return 0;
}

static const char *first_step(const char *required)
{
    static __thread char one[32];
    const char *s = required;
    while (*s == ' ')
        s++;
    const char *e = s;
    while (*e && *e != ' ')
        e++;
    snprintf(one, sizeof(one), "%.*s", (int)(e - s), s);
    return one;
}

int oauth_login_begin(oauth_t *o, bv_call_t *c, const oauth_client_t *cl, const char *redirect_uri,
                      const char *scope, const char *state, const char *nonce, const char *challenge,
                      locale_t_ loc, const oauth_session_t *authed)
{
    login_tx_t t;
    oauth_session_t existing;
    char csrf[48], cookie[48], new_sid[65];
    const char *create_sid = NULL;
    int rc;
    memset(&t, 0, sizeof(t));
    bv_uuid7(t.id);
    /* bind to the browser: reuse its live session, or start a pre-authentication one */
    if (oauth_session_load(o, c, &existing) == 0) {
        snprintf(t.session_id, sizeof(t.session_id), "%s", existing.id);
    } else {
        oauth_random_token(32, cookie);
        if ((rc = oauth_lookup_hash(o, cookie, new_sid)) != 0)
            return rc;
        snprintf(t.session_id, sizeof(t.session_id), "%s", new_sid);
        create_sid = new_sid;
    }
    oauth_random_token(32, csrf);
    if ((rc = oauth_lookup_hash(o, csrf, t.csrf_hash)) != 0)
        return rc;
    snprintf(t.client_id, sizeof(t.client_id), "%s", cl->id);
    snprintf(t.redirect_uri, sizeof(t.redirect_uri), "%s", redirect_uri);
    snprintf(t.scope, sizeof(t.scope), "%s", scope);
    t.has_state = state != NULL;
    snprintf(t.state, sizeof(t.state), "%s", state ? state : "");
    t.has_nonce = nonce != NULL;
    snprintf(t.nonce, sizeof(t.nonce), "%s", nonce ? nonce : "");
    snprintf(t.challenge, sizeof(t.challenge), "%s", challenge);
    snprintf(t.locale, sizeof(t.locale), "%s", oauth_locale_code(loc));
    if (authed != NULL) {
        snprintf(t.user_id, sizeof(t.user_id), "%s", authed->user_id);
        snprintf(t.steps_required, sizeof(t.steps_required), "consent");
    } else {
        snprintf(t.steps_required, sizeof(t.steps_required), "%s",
                 cl->first_party ? "password" : "password consent");
    }
    t.expires_at = bv_now_us() + (int64_t)BV_OAUTH_LOGIN_TTL * 1000000;
    begin_arg_t a = {&t, create_sid};
    if ((rc = bv_store_run_tx(o->store, 1, tx_begin, &a)) != 0)
        return rc;
    if (create_sid != NULL)
        set_session_cookie(c, cookie, BV_OAUTH_SESSION_TTL);
    oauth_page_t p = {.loc = loc,
                      .client_name = cl->name,
                      .tx_id = t.id,
                      .csrf = csrf,
                      .step = first_step(t.steps_required),
                      .scope = scope};
    oauth_render_login(c, 200, &p);
    OPENSSL_cleanse(csrf, sizeof(csrf));
    OPENSSL_cleanse(cookie, sizeof(cookie));
    return 0;
}

static void col(bv_stmt_t *s, int i, char *out, size_t n, int *present)
{
    const char *v = bv_stmt_text(s, i);
    if (present != NULL)
        *present = v != NULL;
    snprintf(out, n, "%s", v ? v : "");
}

typedef struct {
    const char *id;
    login_tx_t *t;
} tx_get_t;

static int tx_get(bv_tx_t *tx, void *varg)
{
    tx_get_t *a = varg;
    login_tx_t *t = a->t;
    bv_stmt_t *s =
        bv_tx_prepare(tx, "SELECT session_id, csrf_hash, client_id, redirect_uri, scope, state, nonce, "
                          "code_challenge, locale, steps_required, steps_done, user_id, expires_at, "
                          "coalesce(completed_at, 0) FROM oauth_login_tx WHERE id = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->id, -1);
    int rc = bv_stmt_step(s);
    if (rc == BV_ROW) {
        memset(t, 0, sizeof(*t));
        snprintf(t->id, sizeof(t->id), "%s", a->id);
        col(s, 0, t->session_id, sizeof(t->session_id), NULL);
        col(s, 1, t->csrf_hash, sizeof(t->csrf_hash), NULL);
        col(s, 2, t->client_id, sizeof(t->client_id), NULL);
        col(s, 3, t->redirect_uri, sizeof(t->redirect_uri), NULL);
        col(s, 4, t->scope, sizeof(t->scope), NULL);
        col(s, 5, t->state, sizeof(t->state), &t->has_state);
        col(s, 6, t->nonce, sizeof(t->nonce), &t->has_nonce);
        col(s, 7, t->challenge, sizeof(t->challenge), NULL);
        col(s, 8, t->locale, sizeof(t->locale), NULL);
        col(s, 9, t->steps_required, sizeof(t->steps_required), NULL);
        col(s, 10, t->steps_done, sizeof(t->steps_done), NULL);
        col(s, 11, t->user_id, sizeof(t->user_id), NULL);
        t->expires_at = bv_stmt_int64(s, 12);
        t->completed_at = bv_stmt_int64(s, 13);
    }
    bv_stmt_reset(s);
    return rc == BV_ROW ? 0 : rc == BV_DONE ? BV_ENOTFOUND : rc;
}

/* The first required step not done yet, into out ("" when all are done). */
static void next_step(const login_tx_t *t, char out[32])
{
    const char *s = t->steps_required;
    out[0] = '\0';
    while (*s) {
        while (*s == ' ')
            s++;
        const char *e = s;
        while (*e && *e != ' ')
            e++;
        if (e == s)
            break;
        char one[32];
        snprintf(one, sizeof(one), "%.*s", (int)(e - s), s);
        if (!oauth_scope_has(t->steps_done, one)) {
            snprintf(out, 32, "%s", one);
            return;
        }
        s = e;
    }
}

typedef struct {
    login_tx_t *t;
    const char *step;           /* step just done, or NULL */
    const char *user_id;        /* set by the password step */
    const char *steps_required; /* new list when the password step adds "otp", else NULL */
    int complete;               /* close the transaction */
    /* on completion with a fresh login: rotate the session */
    const char *new_session_id;
    int64_t auth_time;
    const char *acr, *amr;
} advance_arg_t;

static int tx_advance(bv_tx_t *tx, void *varg)
{
    advance_arg_t *a = varg;
    login_tx_t *t = a->t;
    char done[160];
    int64_t now = bv_now_us();
    int rc;
    bv_stmt_t *s;
    snprintf(done, sizeof(done), "%.120s%s%.31s", t->steps_done, t->steps_done[0] && a->step ? " " : "",
             a->step ? a->step : "");
    /* compare-and-set on steps_done: two concurrent posts cannot both advance */
    s = bv_tx_prepare(tx, "UPDATE oauth_login_tx SET steps_done = ?1, user_id = coalesce(?2, user_id), "
                          "completed_at = ?3, steps_required = coalesce(?6, steps_required) "
                          "WHERE id = ?4 AND steps_done = ?5 AND completed_at IS NULL");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, done, -1);
    bv_stmt_bind_text(s, 2, a->user_id, -1);
    if (a->complete)
        bv_stmt_bind_int64(s, 3, now);
    else
        bv_stmt_bind_null(s, 3);
    bv_stmt_bind_text(s, 4, t->id, -1);
    bv_stmt_bind_text(s, 5, t->steps_done, -1);
    bv_stmt_bind_text(s, 6, a->steps_required, -1);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc != BV_DONE)
        return rc < 0 ? rc : BV_EIO;
    if (bv_tx_changes(tx) == 0)
        return BV_ECONFLICT;
    snprintf(t->steps_done, sizeof(t->steps_done), "%.127s", done);
    if (a->user_id != NULL)
        snprintf(t->user_id, sizeof(t->user_id), "%s", a->user_id);
    if (a->new_session_id != NULL) {
        if ((rc = bv_tx_execf(tx, "UPDATE oauth_sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL", "it",
                              now, t->session_id)) != 0)
            return rc;
        if ((rc = session_insert(tx, a->new_session_id, t->user_id, a->auth_time, a->acr, a->amr)) != 0)
            return rc;
    }
    return 0;
}

/* ---- codes ---- */
typedef struct {
    const char *hash, *client_id, *redirect_uri, *scope, *nonce, *challenge;
    const oauth_session_t *s;
} code_arg_t;

static int tx_code(bv_tx_t *tx, void *varg)
{
    code_arg_t *a = varg;
    int64_t now = bv_now_us();
    bv_stmt_t *s =
        bv_tx_prepare(tx, "INSERT INTO oauth_codes (id, client_id, user_id, session_id, redirect_uri, scope, "
                          "nonce, code_challenge, auth_time, acr, amr, created_at, expires_at) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->hash, -1);
    bv_stmt_bind_text(s, 2, a->client_id, -1);
    bv_stmt_bind_text(s, 3, a->s->user_id, -1);
    bv_stmt_bind_text(s, 4, a->s->id, -1);
    bv_stmt_bind_text(s, 5, a->redirect_uri, -1);
    bv_stmt_bind_text(s, 6, a->scope, -1);
    bv_stmt_bind_text(s, 7, a->nonce, -1);
    bv_stmt_bind_text(s, 8, a->challenge, -1);
    bv_stmt_bind_int64(s, 9, a->s->auth_time);
    bv_stmt_bind_text(s, 10, a->s->acr, -1);
    bv_stmt_bind_text(s, 11, a->s->amr, -1);
    bv_stmt_bind_int64(s, 12, now);
    bv_stmt_bind_int64(s, 13, now + (int64_t)BV_OAUTH_CODE_TTL * 1000000);
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc != BV_DONE)
        return rc < 0 ? rc : BV_EIO;
    if ((s = bv_tx_prepare(tx, "DELETE FROM oauth_codes WHERE expires_at < ?")) != NULL) {
        bv_stmt_bind_int64(s, 1, now - 86400LL * 1000000);
        bv_stmt_step(s);
        bv_stmt_reset(s);
    }
    return 0;
}

int oauth_code_redirect(oauth_t *o, bv_call_t *c, const char *client_id, const char *redirect_uri,
                        const char *scope, const char *state, const char *nonce, const char *challenge,
                        const oauth_session_t *s)
{
    char code[48], hash[65];
    bv_buf_t b = {0};
    int rc;
    oauth_random_token(32, code);
    if ((rc = oauth_lookup_hash(o, code, hash)) != 0)
        goto out;
    code_arg_t a = {hash, client_id, redirect_uri, scope, nonce, challenge, s};
    if ((rc = bv_store_run_tx(o->store, 1, tx_code, &a)) != 0)
        goto out;
    bv_buf_puts(&b, redirect_uri);
    bv_buf_puts(&b, strchr(redirect_uri, '?') ? "&code=" : "?code=");
    bv_buf_puts(&b, code);
    if (state != NULL) {
        bv_buf_puts(&b, "&state=");
        oauth_url_encode(&b, state);
    }
    bv_buf_puts(&b, "&iss=");
    oauth_url_encode(&b, oauth_issuer(o));
    bv_call_add_header(c, "location", b.data);
    bv_reply_empty(c, 303);
out:
    if (rc != 0)
        bv_reply_problem(c, rc, NULL, NULL);
    OPENSSL_cleanse(code, sizeof(code));
    if (b.data != NULL)
        OPENSSL_cleanse(b.data, b.len);
    bv_buf_free(&b);
    return rc;
}

/* ---- POST /oauth2/login ---- */
static void render_step(bv_call_t *c, int status, locale_t_ loc, const oauth_client_t *cl,
                        const login_tx_t *t, const char *csrf, const char *step, const char *username,
                        const char *error, int64_t retry_after)
{
    if (step != NULL && strcmp(step, "otp") == 0) { /* the second factor (src/mfa/login.c) */
        bv_mfa_login_step_t st;
        int rc = bv_mfa_login_begin(t->user_id, t->locale, c->client_ip, c->request_id, &st);
        if (rc == BV_EFORBIDDEN) { /* the last factor went away since the password step */
            bv_mfa_login_refuse(t->user_id, c->client_ip, c->request_id);
            oauth_render_message(c, 403, loc, "no_second_factor");
            return;
        }
        if (rc != 0 && rc != BV_EOTP_RATE) {
            bv_reply_problem(c, rc, NULL, NULL);
            return;
        }
        oauth_otp_page_t op = {.tx_id = t->id,
                               .csrf = csrf,
                               .challenge_id = st.challenge_id,
                               .channel = (int)st.channel,
                               .destination = st.destination,
                               .error = rc == 0 ? 0 : 2};
        oauth_render_otp_step(c, rc == 0 ? status : 429, loc, cl->name, &op);
        return;
    }
    oauth_page_t p = {.loc = loc,
                      .client_name = cl->name,
                      .tx_id = t->id,
                      .csrf = csrf,
                      .step = step,
                      .username = username,
                      .error = error,
                      .retry_after = retry_after,
                      .scope = t->scope};
    oauth_render_login(c, status, &p);
}

void oauth_on_login(bv_call_t *c)
{
    oauth_t *o = c->ctx;
    oauth_form_t f;
    login_tx_t t;
    oauth_client_t cl = {0};
    oauth_session_t sess;
    char sid[65] = "", csrf_hash[65] = "", step_now[32], new_cookie[48] = "", new_sid[65];
    locale_t_ loc = oauth_locale_pick(NULL, o->app->cfg->locale);
    int rc;

    if (oauth_call_form_or_reply(c, &f, 0) != 0)
        return;
    const char *tx_id = oauth_form_get(&f, "tx"), *csrf = oauth_form_get(&f, "csrf_token");
    const char *step = oauth_form_get(&f, "step");
    tx_get_t g = {tx_id, &t};
    if (tx_id == NULL || !bv_uuid_valid(tx_id) ||
        (rc = bv_store_run_tx(o->store, 0, tx_get, &g)) == BV_ENOTFOUND) {
        oauth_render_message(c, 400, loc, "expired");
        return;
    }
    if (rc != 0) {
        bv_reply_problem(c, rc, NULL, NULL);
        return;
    }
    loc = oauth_locale_pick(t.locale, NULL);
    if (t.completed_at != 0 || t.expires_at <= bv_now_us()) {
        oauth_render_message(c, 400, loc, "expired");
        return;
    }
    /* CSRF: the form's token and the browser's session cookie must both match */
    const char *cookie = oauth_cookie(c, OAUTH_SESSION_COOKIE);
    if (cookie == NULL || csrf == NULL || oauth_lookup_hash(o, cookie, sid) != 0 ||
        oauth_lookup_hash(o, csrf, csrf_hash) != 0 ||
        !bv_ct_equal(sid, 64, t.session_id, strlen(t.session_id)) ||
        !bv_ct_equal(csrf_hash, 64, t.csrf_hash, strlen(t.csrf_hash))) {
        bv_log(BV_LOG_INFO, c->request_id, "login form rejected (csrf)", NULL);
        oauth_render_message(c, 403, loc, "csrf");
        return;
    }
    if ((rc = oauth_client_load(o, t.client_id, &cl)) != 0) {
        oauth_render_message(c, 400, loc, "expired"); /* the client was deleted meanwhile */
        return;
    }
    next_step(&t, step_now);
    if (step == NULL || strcmp(step, step_now) != 0) {
        render_step(c, 200, loc, &cl, &t, csrf, step_now, NULL, NULL, 0);
        goto out;
    }
    /* lr outlives the step blocks: adv.user_id points into it until the transaction advances */
    bv_login_result_t lr;
    advance_arg_t adv = {.t = &t, .step = step_now};
    if (strcmp(step_now, "password") == 0) {
        const char *username = oauth_form_get(&f, "username"), *password = oauth_form_get(&f, "password");
        if (username == NULL || password == NULL || username[0] == '\0') {
            render_step(c, 400, loc, &cl, &t, csrf, step_now, username, "invalid", 0);
            goto out;
        }
        rc = bv_identity_authenticate(o->identity, username, password, strlen(password), c->client_ip,
                                      c->request_id, &lr);
        OPENSSL_cleanse((char *)password, strlen(password));
        if (rc != 0) {
            bv_reply_problem(c, rc, NULL, NULL);
            goto out;
        }
        if (lr.outcome == BV_LOGIN_THROTTLED) {
            char ra[24];
            snprintf(ra, sizeof(ra), "%lld", (long long)lr.retry_after_s);
            bv_call_add_header(c, "retry-after", ra);
            render_step(c, 429, loc, &cl, &t, csrf, step_now, username, lr.locked ? "locked" : "throttled",
                        lr.retry_after_s);
            goto out;
        }
        if (lr.outcome == BV_LOGIN_INVALID) {
            render_step(c, 401, loc, &cl, &t, csrf, step_now, username, "invalid", 0);
            goto out;
        }
        if (lr.outcome == BV_LOGIN_INACTIVE) {
            render_step(c, 403, loc, &cl, &t, csrf, step_now, username, "inactive", 0);
            goto out;
        }
        adv.user_id = lr.user.id;
        bv_mfa_login_plan_t plan;
        if ((rc = bv_mfa_login_plan(lr.user.id, &plan)) != 0) {
            bv_reply_problem(c, rc, NULL, NULL);
            goto out;
        }
        if (plan.required && !plan.available) { /* policy "all" and no factor at all: no way in */
            if ((rc = bv_mfa_login_refuse(lr.user.id, c->client_ip, c->request_id)) != 0) {
                bv_reply_problem(c, rc, NULL, NULL);
                goto out;
            }
            oauth_render_message(c, 403, loc, "no_second_factor");
            goto out;
        }
        int need_otp = plan.required;
        if (need_otp && !oauth_scope_has(t.steps_required, "otp")) { /* "password" -> "password otp" */
            char req[128];
            snprintf(req, sizeof(req), "password otp%s%.100s",
                     strcmp(t.steps_required, "password") ? " " : "",
                     strncmp(t.steps_required, "password ", 9) == 0 ? t.steps_required + 9 : "");
            snprintf(t.steps_required, sizeof(t.steps_required), "%s", req);
            adv.steps_required = t.steps_required;
        }
    } else if (strcmp(step_now, "otp") == 0) {
        const char *ch = oauth_form_get(&f, "challenge"), *code = oauth_form_get(&f, "code");
        const char *resend = oauth_form_get(&f, "resend");
        bv_mfa_login_step_t st;
        oauth_otp_page_t op = {.tx_id = t.id, .csrf = csrf, .challenge_id = ch};
        if (resend != NULL && strcmp(resend, "1") == 0) { /* a new SMS/e-mail code, within the rate limit */
            rc = bv_mfa_login_begin(t.user_id, t.locale, c->client_ip, c->request_id, &st);
            if (rc == 0) {
                op.challenge_id = st.challenge_id;
                op.channel = (int)st.channel;
                op.destination = st.destination;
                op.error = 4;
                oauth_render_otp_step(c, 200, loc, cl.name, &op);
            } else if (rc == BV_EOTP_RATE) { /* keep the code already sent */
                bv_mfa_login_plan_t plan;
                if ((rc = bv_mfa_login_plan(t.user_id, &plan)) != 0) {
                    bv_reply_problem(c, rc, NULL, NULL);
                    goto out;
                }
                op.channel = (int)plan.channel;
                op.destination = plan.destination;
                op.error = 3;
                oauth_render_otp_step(c, 429, loc, cl.name, &op);
            } else {
                render_step(c, 200, loc, &cl, &t, csrf, step_now, NULL, NULL, 0);
            }
            goto out;
        }
        rc = bv_mfa_login_verify(t.user_id, ch, code ? code : "", c->client_ip, c->request_id, &st);
        if (code != NULL)
            OPENSSL_cleanse((char *)code, strlen(code));
        if (rc == BV_EOTP_INVALID) {
            op.challenge_id = st.challenge_id;
            op.channel = (int)st.channel;
            op.destination = st.destination;
            op.error = 1;
            oauth_render_otp_step(c, 401, loc, cl.name, &op);
            goto out;
        }
        if (rc == BV_EOTP_LOCKED || rc == BV_EOTP_EXPIRED || rc == BV_EOTP_USED || rc == BV_ENOTFOUND) {
            render_step(c, 401, loc, &cl, &t, csrf, step_now, NULL, NULL, 0); /* a fresh challenge */
            goto out;
        }
        if (rc != 0) {
            bv_reply_problem(c, rc, NULL, NULL);
            goto out;
        }
        /* "sms" is a marker word in steps_done (not a step): amr says how the code came */
        if (st.channel == BV_MFA_SMS)
            adv.step = "otp sms";
    } else if (strcmp(step_now, "consent") == 0) {
        const char *decision = oauth_form_get(&f, "decision");
        if (decision == NULL || strcmp(decision, "allow") != 0) {
            adv.step = NULL;
            adv.complete = 1;
            if (bv_store_run_tx(o->store, 1, tx_advance, &adv) == 0)
                oauth_redirect_error(o, c, t.redirect_uri, "access_denied", "the user denied the request",
                                     t.has_state ? t.state : NULL);
            else
                oauth_render_message(c, 400, loc, "expired");
            goto out;
        }
    } else {
        oauth_render_message(c, 400, loc, "expired");
        goto out;
    }
    /* was this the last step? */
    login_tx_t after = t;
    snprintf(after.steps_done, sizeof(after.steps_done), "%.90s%s%.31s", t.steps_done,
             t.steps_done[0] ? " " : "", adv.step ? adv.step : step_now);
    char rest[32];
    next_step(&after, rest);
    adv.complete = rest[0] == '\0';
    int fresh_login = oauth_scope_has(after.steps_done, "password");
    if (adv.complete && fresh_login) {
        oauth_random_token(32, new_cookie);
        if ((rc = oauth_lookup_hash(o, new_cookie, new_sid)) != 0) {
            bv_reply_problem(c, rc, NULL, NULL);
            goto out;
        }
        adv.new_session_id = new_sid;
        adv.auth_time = bv_now_us() / 1000000;
        /* RFC 8176: otp for the code, sms when it came by SMS, mfa for two factors */
        int mfa = oauth_scope_has(after.steps_done, "otp"), sms = oauth_scope_has(after.steps_done, "sms");
        adv.acr = mfa ? ACR_MFA : ACR_PWD;
        adv.amr = mfa ? (sms ? "pwd otp sms mfa" : "pwd otp mfa") : "pwd";
    }
    rc = bv_store_run_tx(o->store, 1, tx_advance, &adv);
    if (rc == BV_ECONFLICT) { /* a concurrent post advanced it first */
        oauth_render_message(c, 400, loc, "expired");
        goto out;
    }
    if (rc != 0) {
        bv_reply_problem(c, rc, NULL, NULL);
        goto out;
    }
    if (!adv.complete) {
        render_step(c, 200, loc, &cl, &t, csrf, rest, NULL, NULL, 0);
        goto out;
    }
    if (fresh_login) {
        memset(&sess, 0, sizeof(sess));
        snprintf(sess.id, sizeof(sess.id), "%s", new_sid);
        snprintf(sess.user_id, sizeof(sess.user_id), "%s", t.user_id);
        sess.auth_time = adv.auth_time;
        snprintf(sess.acr, sizeof(sess.acr), "%s", adv.acr);
        snprintf(sess.amr, sizeof(sess.amr), "%s", adv.amr);
        set_session_cookie(c, new_cookie, BV_OAUTH_SESSION_TTL);
    } else if (oauth_session_load(o, c, &sess) != 0 || strcmp(sess.user_id, t.user_id) != 0) {
        oauth_render_message(c, 400, loc, "expired");
        goto out;
    }
    oauth_code_redirect(o, c, t.client_id, t.redirect_uri, t.scope, t.has_state ? t.state : NULL,
                        t.has_nonce ? t.nonce : NULL, t.challenge, &sess);
out:
    OPENSSL_cleanse(new_cookie, sizeof(new_cookie));
    oauth_client_clear(&cl);
}
