/* Built-in message templates in Spanish (default) and English. A template never holds a
 * secret beyond the OTP of the OTP template; account numbers are masked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "notify/internal.h"

typedef struct {
    const char *name;
    const char *locale;
    const char *subject;
    const char *text; /* also the SMS text: keep it short */
    const char *html;
} template_t;

#define HTML_HEAD "<!DOCTYPE html><html><body style=\"font-family:sans-serif\">"
#define HTML_FOOT "</body></html>"

static const template_t templates[] = {
    {"movement", "es", "Movimiento en tu cuenta {{account|mask}}",
     "Bóveda: movimiento de {{amount}} {{currency}} en tu cuenta {{account|mask}} el {{date}}. "
     "Si no lo reconoces, llámanos.",
     HTML_HEAD
     "<p>Hola {{name}}:</p><p>Registramos un movimiento de <b>{{amount}} {{currency}}</b> en tu cuenta "
     "{{account|mask}} el {{date}}.</p><p>Si no lo reconoces, comunícate con nosotros de "
     "inmediato.</p>" HTML_FOOT},
    {"movement", "en", "Activity on your account {{account|mask}}",
     "Bóveda: {{amount}} {{currency}} moved on your account {{account|mask}} on {{date}}. "
     "If this was not you, call us.",
     HTML_HEAD
     "<p>Hello {{name}},</p><p>We recorded a movement of <b>{{amount}} {{currency}}</b> on your account "
     "{{account|mask}} on {{date}}.</p><p>If you do not recognise it, contact us right away.</p>" HTML_FOOT},
    /* customer transfers (src/transfers): the sender's and the receiver's notices */
    {"transfer_sent", "es", "Transferencia realizada desde tu cuenta {{account|mask}}",
     "Bóveda: enviaste {{amount}} {{currency}} desde tu cuenta {{account|mask}} a la cuenta "
     "{{to_account|mask}} el {{date}}.",
     HTML_HEAD "<p>Hola {{name}}:</p><p>Enviaste <b>{{amount}} {{currency}}</b> desde tu cuenta "
               "{{account|mask}} a la cuenta {{to_account|mask}} el {{date}}.</p><p>Si no fuiste tú, "
               "comunícate con nosotros de inmediato.</p>" HTML_FOOT},
    {"transfer_sent", "en", "Transfer sent from your account {{account|mask}}",
     "Bóveda: you sent {{amount}} {{currency}} from your account {{account|mask}} to account "
     "{{to_account|mask}} on {{date}}.",
     HTML_HEAD "<p>Hello {{name}},</p><p>You sent <b>{{amount}} {{currency}}</b> from your account "
               "{{account|mask}} to account {{to_account|mask}} on {{date}}.</p><p>If this was not you, "
               "contact us right away.</p>" HTML_FOOT},
    {"transfer_received", "es", "Recibiste una transferencia en tu cuenta {{account|mask}}",
     "Bóveda: recibiste {{amount}} {{currency}} en tu cuenta {{account|mask}} el {{date}}.",
     HTML_HEAD "<p>Hola {{name}}:</p><p>Recibiste <b>{{amount}} {{currency}}</b> en tu cuenta "
               "{{account|mask}} el {{date}}.</p>" HTML_FOOT},
    {"transfer_received", "en", "You received a transfer on your account {{account|mask}}",
     "Bóveda: you received {{amount}} {{currency}} on your account {{account|mask}} on {{date}}.",
     HTML_HEAD "<p>Hello {{name}},</p><p>You received <b>{{amount}} {{currency}}</b> on your account "
               "{{account|mask}} on {{date}}.</p>" HTML_FOOT},
    {"transfer_failed", "es", "Tu transferencia no se realizó",
     "Bóveda: tu transferencia de {{amount}} {{currency}} a la cuenta {{to_account|mask}} no se realizó "
     "({{reason}}). No se movió dinero.",
     HTML_HEAD "<p>Hola {{name}}:</p><p>Tu transferencia de <b>{{amount}} {{currency}}</b> desde tu cuenta "
               "{{account|mask}} a la cuenta {{to_account|mask}} no se realizó: {{reason}}.</p><p>No se "
               "movió dinero.</p>" HTML_FOOT},
    {"transfer_failed", "en", "Your transfer was not completed",
     "Bóveda: your transfer of {{amount}} {{currency}} to account {{to_account|mask}} was not completed "
     "({{reason}}). No money moved.",
     HTML_HEAD "<p>Hello {{name}},</p><p>Your transfer of <b>{{amount}} {{currency}}</b> from your account "
               "{{account|mask}} to account {{to_account|mask}} was not completed: {{reason}}.</p><p>No money "
               "moved.</p>" HTML_FOOT},
    {"otp", "es", "Tu código de verificación",
     "Bóveda: tu código es {{otp}}. Vence en {{minutes}} minutos. No lo compartas con nadie.",
     HTML_HEAD "<p>Tu código de verificación es <b>{{otp}}</b>.</p><p>Vence en {{minutes}} minutos. "
               "Nunca te lo pediremos por teléfono: no lo compartas con nadie.</p>" HTML_FOOT},
    {"otp", "en", "Your verification code",
     "Bóveda: your code is {{otp}}. It expires in {{minutes}} minutes. Never share it.",
     HTML_HEAD "<p>Your verification code is <b>{{otp}}</b>.</p><p>It expires in {{minutes}} minutes. "
               "We will never ask for it by phone: do not share it.</p>" HTML_FOOT},
    {"security_alert", "es", "Alerta de seguridad",
     "Bóveda: {{event}} el {{date}}. Si no fuiste tú, llámanos de inmediato.",
     HTML_HEAD "<p>Hola {{name}}:</p><p>Detectamos lo siguiente en tu banca en línea: <b>{{event}}</b> "
               "el {{date}}.</p><p>Si no fuiste tú, comunícate con nosotros de inmediato.</p>" HTML_FOOT},
    {"security_alert", "en", "Security alert",
     "Bóveda: {{event}} on {{date}}. If this was not you, call us right away.",
     HTML_HEAD "<p>Hello {{name}},</p><p>We noticed this on your online banking: <b>{{event}}</b> "
               "on {{date}}.</p><p>If this was not you, contact us right away.</p>" HTML_FOOT},
    {"statement", "es", "Tu estado de cuenta {{period}}",
     "Bóveda: tu estado de cuenta {{period}} de la cuenta {{account|mask}} está disponible.",
     HTML_HEAD "<p>Hola {{name}}:</p><p>Tu estado de cuenta {{period}} de la cuenta {{account|mask}} "
               "está disponible.</p>" HTML_FOOT},
    {"statement", "en", "Your {{period}} statement",
     "Bóveda: your {{period}} statement for account {{account|mask}} is available.",
     HTML_HEAD "<p>Hello {{name}},</p><p>Your {{period}} statement for account {{account|mask}} "
               "is available.</p>" HTML_FOOT},
    {"test", "es", "Bóveda: mensaje de prueba",
     "Bóveda: mensaje de prueba. Las notificaciones están configuradas correctamente.",
     HTML_HEAD
     "<p>Mensaje de prueba: las notificaciones por correo están configuradas correctamente.</p>" HTML_FOOT},
    {"test", "en", "Bóveda: test message", "Bóveda: test message. Notifications are set up correctly.",
     HTML_HEAD "<p>Test message: e-mail notifications are set up correctly.</p>" HTML_FOOT},
};
#define N_TEMPLATES (sizeof(templates) / sizeof(templates[0]))

int notify_template_exists(const char *name)
{
    for (size_t i = 0; name != NULL && i < N_TEMPLATES; i++)
        if (strcmp(templates[i].name, name) == 0)
            return 1;
    return 0;
}

const char *notify_kind_template(bv_notify_kind_t kind)
{
    return bv_notify_kind_name(kind);
}

void notify_mask(const char *s, char *out, size_t n)
{
    size_t len = s != NULL ? strlen(s) : 0;
    if (len < 5)
        snprintf(out, n, "****");
    else
        snprintf(out, n, "****%s", s + len - 4);
}

void notify_rendered_free(notify_rendered_t *r)
{
    if (r == NULL)
        return;
    /* an OTP may be inside: wipe before freeing */
    if (r->text != NULL)
        memset(r->text, 0, strlen(r->text));
    if (r->html != NULL)
        memset(r->html, 0, strlen(r->html));
    free(r->subject);
    free(r->text);
    free(r->html);
    memset(r, 0, sizeof(*r));
}

static int append_escaped(bv_buf_t *b, const char *s, int html)
{
    if (!html)
        return bv_buf_puts(b, s);
    for (; *s; s++) {
        int rc;
        switch (*s) {
        case '<':
            rc = bv_buf_puts(b, "&lt;");
            break;
        case '>':
            rc = bv_buf_puts(b, "&gt;");
            break;
        case '&':
            rc = bv_buf_puts(b, "&amp;");
            break;
        case '"':
            rc = bv_buf_puts(b, "&quot;");
            break;
        case '\'':
            rc = bv_buf_puts(b, "&#39;");
            break;
        default:
            rc = bv_buf_append(b, s, 1);
            break;
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int expand(const char *tpl, const char *name, const json_t *vars, int html, int no_newlines,
                  char **out, char *detail, size_t dn)
{
    bv_buf_t b = {0};
    const char *p = tpl;
    int rc = 0;
    while (*p != '\0' && rc == 0) {
        const char *open = strstr(p, "{{");
        if (open == NULL) {
            rc = bv_buf_puts(&b, p);
            break;
        }
        const char *close = strstr(open, "}}");
        if (close == NULL) {
            rc = BV_EINTERNAL;
            break;
        }
        if ((rc = bv_buf_append(&b, p, (size_t)(open - p))) != 0)
            break;
        char var[64], value[256];
        size_t vl = (size_t)(close - open - 2);
        if (vl >= sizeof(var)) {
            rc = BV_EINTERNAL;
            break;
        }
        memcpy(var, open + 2, vl);
        var[vl] = '\0';
        char *filter = strchr(var, '|');
        if (filter != NULL)
            *filter++ = '\0';
        json_t *v = json_object_get(vars, var);
        if (json_is_string(v))
            snprintf(value, sizeof(value), "%s", json_string_value(v));
        else if (json_is_integer(v))
            snprintf(value, sizeof(value), "%lld", (long long)json_integer_value(v));
        else {
            snprintf(detail, dn, "template %s: variable '%s' is missing or not a string/integer", name, var);
            rc = BV_EINVALID;
            break;
        }
        if ((filter != NULL && strcmp(filter, "mask") == 0) || strstr(var, "account") != NULL) {
            char masked[16];
            notify_mask(value, masked, sizeof(masked));
            snprintf(value, sizeof(value), "%s", masked);
        }
        if (no_newlines && strpbrk(value, "\r\n") != NULL) {
            snprintf(detail, dn, "template %s: variable '%s' may not contain line breaks", name, var);
            rc = BV_EINVALID;
            break;
        }
        rc = append_escaped(&b, value, html);
        OPENSSL_cleanse(value, sizeof(value));
        p = close + 2;
    }
    if (rc == 0 && b.data == NULL)
        rc = bv_buf_puts(&b, "");
    if (rc != 0) {
        if (b.data != NULL)
            memset(b.data, 0, b.len);
        bv_buf_free(&b);
        return rc;
    }
    *out = b.data;
    return 0;
}

int notify_render(const char *name, const char *locale, const json_t *vars, notify_rendered_t *r,
                  char *detail, size_t dn)
{
    const template_t *t = NULL, *fallback = NULL;
    int rc;
    memset(r, 0, sizeof(*r));
    if (detail != NULL && dn > 0)
        detail[0] = '\0';
    for (size_t i = 0; i < N_TEMPLATES; i++) {
        if (strcmp(templates[i].name, name) != 0)
            continue;
        if (locale != NULL && strcmp(templates[i].locale, locale) == 0)
            t = &templates[i];
        if (strcmp(templates[i].locale, "es") == 0)
            fallback = &templates[i];
    }
    if (t == NULL)
        t = fallback;
    if (t == NULL) {
        snprintf(detail, dn, "no template named %s", name);
        return BV_EINVALID;
    }
    if (vars != NULL && !json_is_object(vars)) {
        snprintf(detail, dn, "template variables must be an object");
        return BV_EINVALID;
    }
    if (strcmp(name, "otp") != 0 && vars != NULL && json_object_get(vars, "otp") != NULL) {
        snprintf(detail, dn, "template %s may not carry an OTP", name);
        return BV_EINVALID;
    }
    json_t *empty = vars == NULL ? json_object() : NULL;
    const json_t *vv = vars != NULL ? vars : empty;
    if ((rc = expand(t->subject, name, vv, 0, 1, &r->subject, detail, dn)) != 0 ||
        (rc = expand(t->text, name, vv, 0, 0, &r->text, detail, dn)) != 0 ||
        (rc = expand(t->html, name, vv, 1, 0, &r->html, detail, dn)) != 0)
        notify_rendered_free(r);
    json_decref(empty);
    return rc;
}
