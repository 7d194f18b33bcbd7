/* Server-rendered pages of the hosted login: Spanish by default (BOVEDA_LOCALE or the
 * ui_locales parameter picks English), no external assets (inline CSS only), every
 * value HTML-escaped. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/errors.h"
#include "mfa/mfa.h"
#include "oauth/internal.h"

typedef struct {
    const char *key;
    const char *text[2]; /* es, en */
} msg_t;

static const msg_t msgs[] = {
    {"title", {"Iniciar sesión", "Sign in"}},
    {"sign_in_to", {"para continuar a", "to continue to"}},
    {"username", {"Usuario", "Username"}},
    {"password", {"Contraseña", "Password"}},
    {"submit", {"Entrar", "Sign in"}},
    {"invalid", {"Usuario o contraseña incorrectos.", "Incorrect username or password."}},
    {"throttled",
     {"Demasiados intentos. Espere %lld segundos e inténtelo de nuevo.",
      "Too many attempts. Wait %lld seconds and try again."}},
    {"locked",
     {"Acceso bloqueado temporalmente por intentos fallidos. Inténtelo en %lld segundos.",
      "Access temporarily locked after failed attempts. Try again in %lld seconds."}},
    {"inactive",
     {"Esta cuenta no está activa. Contacte con su banco.",
      "This account is not active. Contact your bank."}},
    {"expired",
     {"La sesión de inicio caducó. Vuelva a la aplicación e inténtelo de nuevo.",
      "The sign-in session expired. Go back to the application and try again."}},
    {"csrf",
     {"La solicitud no es válida (protección CSRF). Vuelva a la aplicación e inténtelo de nuevo.",
      "The request is not valid (CSRF protection). Go back to the application and try again."}},
    {"consent_title", {"Autorizar acceso", "Authorize access"}},
    {"consent_text", {"solicita acceso a:", "asks for access to:"}},
    {"allow", {"Permitir", "Allow"}},
    {"deny", {"Denegar", "Deny"}},
    {"error_title", {"No se puede continuar", "Cannot continue"}},
    {"logged_out", {"Ha cerrado la sesión.", "You have signed out."}},
    {"logout_confirm", {"¿Cerrar la sesión en Bóveda?", "Sign out of Bóveda?"}},
    {"logout", {"Cerrar sesión", "Sign out"}},
    {"no_second_factor",
     {"No se puede iniciar sesión: su banco exige un segundo factor (teléfono, correo electrónico o aplicación de "
      "autenticación) y su cuenta no tiene ninguno. Contacte con su banco.",
      "You cannot sign in: your bank requires a second factor (phone, e-mail or authenticator app) and your "
      "account has none. Contact your bank."}},
};

static const char *msg(locale_t_ loc, const char *key)
{
    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++)
        if (strcmp(msgs[i].key, key) == 0)
            return msgs[i].text[loc];
    return key;
}

locale_t_ oauth_locale_pick(const char *ui_locales, const char *deflt)
{
    /* ui_locales (OIDC Core §3.1.2.1): space-separated BCP 47 tags in preference order */
    const char *s = ui_locales;
    while (s != NULL && *s) {
        while (*s == ' ')
            s++;
        if (strncasecmp(s, "es", 2) == 0 && (s[2] == '\0' || s[2] == ' ' || s[2] == '-'))
            return LOC_ES;
        if (strncasecmp(s, "en", 2) == 0 && (s[2] == '\0' || s[2] == ' ' || s[2] == '-'))
            return LOC_EN;
        while (*s && *s != ' ')
            s++;
    }
    return deflt != NULL && strcmp(deflt, "en") == 0 ? LOC_EN : LOC_ES;
}

const char *oauth_locale_code(locale_t_ l)
{
    return l == LOC_EN ? "en" : "es";
}

void oauth_html_escape(bv_buf_t *b, const char *s)
{
    for (; s != NULL && *s; s++) {
        switch (*s) {
        case '&':
            bv_buf_puts(b, "&amp;");
            break;
        case '<':
            bv_buf_puts(b, "&lt;");
            break;
        case '>':
            bv_buf_puts(b, "&gt;");
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

static void head(bv_buf_t *b, locale_t_ loc, const char *title)
{
    bv_buf_printf(b,
                  "<!doctype html>\n<html lang=\"%s\"><head><meta charset=\"utf-8\">"
                  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                  "<meta name=\"robots\" content=\"noindex\"><title>",
                  oauth_locale_code(loc));
    oauth_html_escape(b, title);
    bv_buf_puts(
        b, " · Bóveda</title><style>"
           "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:#f3f4f6;"
           "margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center;color:#111827}"
           "main{background:#fff;padding:2rem;border-radius:12px;box-shadow:0 4px 24px rgba(0,0,0,.08);"
           "width:100%;max-width:360px}h1{font-size:1.4rem;margin:0 0 .25rem}"
           ".sub{color:#6b7280;margin:0 0 1.5rem}label{display:block;font-size:.9rem;margin:.75rem 0 .25rem}"
           "input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.6rem;"
           "border:1px solid #d1d5db;border-radius:8px;font-size:1rem}"
           "button{margin-top:1.25rem;width:100%;padding:.7rem;border:0;border-radius:8px;"
           "background:#0f766e;color:#fff;font-size:1rem;cursor:pointer}"
           "button.secondary{background:#e5e7eb;color:#111827}"
           ".err{background:#fef2f2;color:#991b1b;padding:.6rem;border-radius:8px;margin-bottom:1rem}"
           ".info{background:#ecfdf5;color:#065f46;padding:.6rem;border-radius:8px;margin-bottom:1rem}"
           ".brand{font-weight:700;color:#0f766e;letter-spacing:.05em;margin-bottom:1rem}"
           "ul{padding-left:1.2rem}</style></head><body><main><div class=\"brand\">BÓVEDA</div>");
}

static void finish(bv_call_t *c, int status, bv_buf_t *b)
{
    bv_buf_puts(b, "</main></body></html>\n");
    bv_call_add_header(
        c, "content-security-policy",
        /* no form-action: browsers apply it to the redirect that follows the post, and the
         * login's last post redirects to the client */
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'");
    bv_call_add_header(c, "x-frame-options", "DENY");
    bv_reply_raw(c, status, "text/html; charset=utf-8", b->data, b->len);
    bv_buf_free(b);
}

static void hidden(bv_buf_t *b, const char *name, const char *value)
{
    bv_buf_printf(b, "<input type=\"hidden\" name=\"%s\" value=\"", name);
    oauth_html_escape(b, value);
    bv_buf_puts(b, "\">");
}

void oauth_render_login(bv_call_t *c, int status, const oauth_page_t *p)
{
    bv_buf_t b = {0};
    int consent = p->step != NULL && strcmp(p->step, "consent") == 0;
    head(&b, p->loc, msg(p->loc, consent ? "consent_title" : "title"));
    bv_buf_puts(&b, "<h1>");
    oauth_html_escape(&b, msg(p->loc, consent ? "consent_title" : "title"));
    bv_buf_puts(&b, "</h1><p class=\"sub\">");
    if (!consent) {
        oauth_html_escape(&b, msg(p->loc, "sign_in_to"));
        bv_buf_puts(&b, " <strong>");
        oauth_html_escape(&b, p->client_name);
        bv_buf_puts(&b, "</strong></p>");
    } else {
        bv_buf_puts(&b, "<strong>");
        oauth_html_escape(&b, p->client_name);
        bv_buf_puts(&b, "</strong> ");
        oauth_html_escape(&b, msg(p->loc, "consent_text"));
        bv_buf_puts(&b, "</p>");
    }
    if (p->error != NULL) {
        char text[300];
        snprintf(text, sizeof(text), msg(p->loc, p->error), (long long)p->retry_after);
        bv_buf_puts(&b, "<div class=\"err\" role=\"alert\">");
        oauth_html_escape(&b, text);
        bv_buf_puts(&b, "</div>");
    }
    bv_buf_puts(&b, "<form method=\"post\" action=\"/oauth2/login\" autocomplete=\"on\">");
    hidden(&b, "tx", p->tx_id);
    hidden(&b, "csrf_token", p->csrf);
    hidden(&b, "step", consent ? "consent" : "password");
    if (consent) {
        bv_buf_puts(&b, "<ul>");
        const char *s = p->scope;
        while (s != NULL && *s) {
            while (*s == ' ')
                s++;
            const char *e = s;
            while (*e && *e != ' ')
                e++;
            if (e > s) {
                char one[128];
                snprintf(one, sizeof(one), "%.*s", (int)(e - s), s);
                bv_buf_puts(&b, "<li>");
                oauth_html_escape(&b, one);
                bv_buf_puts(&b, "</li>");
            }
            s = e;
        }
        bv_buf_puts(&b, "</ul><button type=\"submit\" name=\"decision\" value=\"allow\">");
        oauth_html_escape(&b, msg(p->loc, "allow"));
        bv_buf_puts(&b,
                    "</button><button class=\"secondary\" type=\"submit\" name=\"decision\" value=\"deny\">");
        oauth_html_escape(&b, msg(p->loc, "deny"));
        bv_buf_puts(&b, "</button>");
    } else {
        bv_buf_puts(&b, "<label for=\"username\">");
        oauth_html_escape(&b, msg(p->loc, "username"));
        bv_buf_puts(
            &b, "</label><input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" "
                "autocapitalize=\"none\" required maxlength=\"64\" value=\"");
        oauth_html_escape(&b, p->username ? p->username : "");
        bv_buf_puts(&b, "\"><label for=\"password\">");
        oauth_html_escape(&b, msg(p->loc, "password"));
        bv_buf_puts(&b,
                    "</label><input type=\"password\" id=\"password\" name=\"password\" "
                    "autocomplete=\"current-password\" required maxlength=\"256\"><button type=\"submit\">");
        oauth_html_escape(&b, msg(p->loc, "submit"));
        bv_buf_puts(&b, "</button>");
    }
    bv_buf_puts(&b, "</form>");
    finish(c, status, &b);
}

void oauth_render_otp_step(bv_call_t *c, int status, locale_t_ loc, const char *client_name, const oauth_otp_page_t *p)
{
    int en = loc == LOC_EN;
    static const char *const notes[][2] = {
        {"", ""},
        {"Código incorrecto.", "Incorrect code."},
        {"Demasiados intentos. Vuelva a la aplicación e inténtelo más tarde.",
         "Too many attempts. Go back to the application and try again later."},
        {"No se pueden enviar más códigos por ahora. Use el último código recibido o inténtelo más tarde.",
         "No more codes can be sent right now. Use the last code you received or try again later."},
        {"Le hemos enviado un código nuevo.", "We sent you a new code."},
    };
    bv_buf_t b = {0};
    int delivered = p->channel == BV_MFA_SMS || p->channel == BV_MFA_EMAIL;
    head(&b, loc, en ? "Verification" : "Verificación");
    bv_buf_printf(&b, "<h1>%s</h1><p class=\"sub\">", en ? "Verification" : "Verificación");
    if (delivered) {
        if (p->channel == BV_MFA_SMS)
            bv_buf_puts(&b, en ? "We sent a code by SMS to " : "Le hemos enviado un código por SMS al ");
        else
            bv_buf_puts(&b, en ? "We sent a code by e-mail to " : "Le hemos enviado un código por correo a ");
        bv_buf_puts(&b, "<strong id=\"destination\">");
        oauth_html_escape(&b, p->destination ? p->destination : "");
        bv_buf_puts(&b, en ? "</strong>. Enter it to continue to " : "</strong>. Introdúzcalo para continuar a ");
    } else {
        bv_buf_puts(&b, en ? "Enter the code of your authenticator app (or a recovery code) to continue to "
                           : "Introduzca el código de su aplicación de autenticación (o un código de recuperación) "
                             "para continuar a ");
    }
    bv_buf_puts(&b, "<strong>");
    oauth_html_escape(&b, client_name);
    bv_buf_puts(&b, "</strong></p>");
    if (p->error > 0 && p->error < 5) {
        bv_buf_puts(&b, p->error == 4 ? "<div class=\"info\" role=\"status\">" : "<div class=\"err\" role=\"alert\">");
        oauth_html_escape(&b, notes[p->error][en]);
        bv_buf_puts(&b, "</div>");
    }
    if (p->challenge_id != NULL && p->challenge_id[0] != '\0') {
        bv_buf_puts(&b, "<form method=\"post\" action=\"/oauth2/login\" autocomplete=\"off\">");
        hidden(&b, "tx", p->tx_id);
        hidden(&b, "csrf_token", p->csrf);
        hidden(&b, "step", "otp");
        hidden(&b, "challenge", p->challenge_id);
        bv_buf_printf(&b,
                      "<label for=\"code\">%s</label><input type=\"text\" id=\"code\" name=\"code\" "
                      "inputmode=\"numeric\" autocomplete=\"one-time-code\" required maxlength=\"16\">"
                      "<button type=\"submit\">%s</button>",
                      en ? "Code" : "Código", en ? "Verify" : "Verificar");
        if (delivered)
            bv_buf_printf(&b,
                          "<button class=\"secondary\" type=\"submit\" name=\"resend\" value=\"1\" "
                          "formnovalidate>%s</button>",
                          en ? "Send a new code" : "Enviar un código nuevo");
        bv_buf_puts(&b, "</form>");
    }
    finish(c, status, &b);
}

void oauth_render_error(bv_call_t *c, int status, locale_t_ loc, const char *error, const char *description)
{
    bv_buf_t b = {0};
    head(&b, loc, msg(loc, "error_title"));
    bv_buf_puts(&b, "<h1>");
    oauth_html_escape(&b, msg(loc, "error_title"));
    bv_buf_puts(&b, "</h1><div class=\"err\" role=\"alert\"><code id=\"error\">");
    oauth_html_escape(&b, error);
    bv_buf_puts(&b, "</code>");
    if (description != NULL) {
        bv_buf_puts(&b, ": <span id=\"error_description\">");
        oauth_html_escape(&b, description);
        bv_buf_puts(&b, "</span>");
    }
    bv_buf_puts(&b, "</div>");
    finish(c, status, &b);
}

void oauth_render_message(bv_call_t *c, int status, locale_t_ loc, const char *msg_key)
{
    bv_buf_t b = {0};
    if (strcmp(msg_key, "no_second_factor") == 0) { /* a sentence, not a title */
        head(&b, loc, msg(loc, "error_title"));
        bv_buf_puts(&b, "<h1>");
        oauth_html_escape(&b, msg(loc, "error_title"));
        bv_buf_puts(&b, "</h1><div class=\"err\" role=\"alert\" id=\"no_second_factor\">");
        oauth_html_escape(&b, msg(loc, msg_key));
        bv_buf_puts(&b, "</div>");
        finish(c, status, &b);
        return;
    }
    head(&b, loc, msg(loc, msg_key));
    bv_buf_puts(&b, "<h1>");
    oauth_html_escape(&b, msg(loc, msg_key));
    bv_buf_puts(&b, "</h1>");
    finish(c, status, &b);
}
