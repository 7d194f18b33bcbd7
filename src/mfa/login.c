/* The second step of the hosted login (src/oauth/login.c calls these): customers with a
 * confirmed TOTP soft token answer a `login` challenge on channel `totp` after their
 * password, with the challenge's rules (expiry, attempt limit, rate limit, replay). */
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "mfa/internal.h"

int bv_mfa_login_required(const char *user_id, int *required_out)
{
    bv_mfa_t *m = bv_mfa_instance();
    *required_out = 0;
    if (m == NULL)
        return 0;
    return bv_mfa_totp_active(m, user_id, required_out);
}

int bv_mfa_login_begin(const char *user_id, const char *source_ip, const char *request_id,
                       char challenge_out[BV_UUID_STR_LEN + 1])
{
    bv_mfa_t *m = bv_mfa_instance();
    bv_mfa_challenge_t ch;
    bv_mfa_challenge_req_t req = {.user_id = user_id,
                                  .purpose = BV_MFA_LOGIN,
                                  .channel = BV_MFA_TOTP,
                                  .source_ip = source_ip,
                                  .request_id = request_id};
    int rc;
    challenge_out[0] = '\0';
    if (m == NULL)
        return BV_EUNAVAILABLE;
    if ((rc = bv_mfa_challenge_create(m, &req, &ch)) != 0)
        return rc;
    memcpy(challenge_out, ch.id, sizeof(ch.id));
    return 0;
}

int bv_mfa_login_verify(const char *user_id, const char *challenge_id, const char *code,
                        const char *source_ip, const char *request_id)
{
    bv_mfa_t *m = bv_mfa_instance();
    bv_mfa_verify_result_t r;
    int rc;
    if (m == NULL)
        return BV_EUNAVAILABLE;
    if (challenge_id == NULL || code == NULL || !bv_uuid_valid(challenge_id))
        return BV_ENOTFOUND;
    rc = bv_mfa_challenge_verify(m, user_id, challenge_id, code, NULL, source_ip, request_id, &r);
    OPENSSL_cleanse(r.proof, sizeof(r.proof)); /* the login itself is what the proof authorises */
    return rc;
}

static void esc(bv_buf_t *b, const char *s)
{
    for (; s != NULL && *s; s++) {
        switch (*s) {
        case '<':
            bv_buf_puts(b, "&lt;");
            break;
        case '>':
            bv_buf_puts(b, "&gt;");
            break;
        case '&':
            bv_buf_puts(b, "&amp;");
            break;
        case '"':
            bv_buf_puts(b, "&quot;");
            break;
        case '\'':
            bv_buf_puts(b, "&#39;");
            break;
        default:
            bv_buf_append(b, s, 1);
        }
    }
}

static void hidden(bv_buf_t *b, const char *name, const char *value)
{
    bv_buf_printf(b, "<input type=\"hidden\" name=\"%s\" value=\"", name);
    esc(b, value);
    bv_buf_puts(b, "\">");
}

void bv_mfa_render_login_step(bv_call_t *c, int status, const char *locale, const char *client_name,
                              const char *tx_id, const char *csrf, const char *challenge_id, int error)
{
    int en = locale != NULL && strcmp(locale, "en") == 0;
    static const char *const errors[][2] = {
        {"", ""},
        {"Código incorrecto.", "Incorrect code."},
        {"Demasiados intentos. Vuelva a la aplicación e inténtelo más tarde.",
         "Too many attempts. Go back to the application and try again later."},
    };
    bv_buf_t b = {0};
    bv_buf_printf(
        &b,
        "<!doctype html>\n<html lang=\"%s\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta name=\"robots\" content=\"noindex\"><title>%s · Bóveda</title><style>"
        "body{font-family:system-ui,sans-serif;background:#f3f4f6;margin:0;display:flex;"
        "min-height:100vh;align-items:center;justify-content:center;color:#111827}"
        "main{background:#fff;padding:2rem;border-radius:12px;width:100%%;max-width:360px}"
        "input{width:100%%;box-sizing:border-box;padding:.6rem;font-size:1.2rem;letter-spacing:.2em}"
        "button{margin-top:1.25rem;width:100%%;padding:.7rem;border:0;border-radius:8px;"
        "background:#0f766e;color:#fff;font-size:1rem}"
        ".err{background:#fef2f2;color:#991b1b;padding:.6rem;border-radius:8px;margin-bottom:1rem}"
        "</style></head><body><main><h1>%s</h1><p>",
        en ? "en" : "es", en ? "Verification" : "Verificación", en ? "Verification" : "Verificación");
    bv_buf_puts(&b,
                en ? "Enter the code of your authenticator app (or a recovery code) to continue to "
                   : "Introduzca el código de su aplicación de autenticación (o un código de recuperación) "
                     "para continuar a ");
    bv_buf_puts(&b, "<strong>");
    esc(&b, client_name);
    bv_buf_puts(&b, "</strong></p>");
    if (error > 0 && error < 3) {
        bv_buf_puts(&b, "<div class=\"err\" role=\"alert\">");
        esc(&b, errors[error][en]);
        bv_buf_puts(&b, "</div>");
    }
    if (challenge_id != NULL && challenge_id[0] != '\0') {
        bv_buf_puts(&b, "<form method=\"post\" action=\"/oauth2/login\" autocomplete=\"off\">");
        hidden(&b, "tx", tx_id);
        hidden(&b, "csrf_token", csrf);
        hidden(&b, "step", "otp");
        hidden(&b, "challenge", challenge_id);
        bv_buf_printf(&b,
                      "<label for=\"code\">%s</label><input type=\"text\" id=\"code\" name=\"code\" "
                      "inputmode=\"numeric\" autocomplete=\"one-time-code\" required maxlength=\"16\">"
                      "<button type=\"submit\">%s</button></form>",
                      en ? "Code" : "Código", en ? "Verify" : "Verificar");
    }
    bv_buf_puts(&b, "</main></body></html>\n");
    bv_call_add_header(c, "content-security-policy",
                       "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'; "
                       "frame-ancestors 'none'");
    bv_call_add_header(c, "x-frame-options", "DENY");
    bv_reply_raw(c, status, "text/html; charset=utf-8", b.data, b.len);
    bv_buf_free(&b);
}
