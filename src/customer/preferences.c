/* The customer's notification preferences (issue 8):
 *   GET /v1/me/notification-preferences   {"channels": ["email","sms"], "locale": "es"}
 *   PUT /v1/me/notification-preferences   the same body (locale optional: kept)
 * Channels: a non-empty set of "email" and "sms", each accepted only when the customer has
 * that contact on file (422 naming channels[i] otherwise). The change is audited (old and
 * new channels and locale) in the same commit, and drops the cached profile after it. */
#include <stdio.h>
#include <string.h>

#include "audit/audit.h"
#include "base/log.h"
#include "customer/internal.h"
#include "notify/notify.h"

#define PREFS_BODY_MAX 1024

static const char *const locales[] = {"es", "en", NULL};

static int prefs_json(bv_buf_t *b, unsigned channels, const char *locale)
{
    int rc = bv_buf_puts(b, "{\"channels\":");
    rc |= customer_json_channels(b, channels);
    rc |= bv_buf_printf(b, ",\"locale\":\"%s\"}", locale);
    return rc != 0 ? BV_ENOMEM : 0;
}

static int profile_or_reply(bv_call_t *c, bv_customer_profile_t *p)
{
    int rc = bv_customer_profile(c->principal.subject, p);
    if (rc == BV_ENOTFOUND)
        bv_reply_problem(c, BV_EUNAUTHENTICATED, "the token's user no longer exists", NULL);
    else if (rc != 0)
        customer_reply_error(c, rc, NULL, NULL);
    return rc;
}

static void on_get(bv_call_t *c)
{
    bv_customer_profile_t p;
    bv_buf_t b = {0};
    if (profile_or_reply(c, &p) != 0)
        return;
    customer_reply_buf(c, prefs_json(&b, p.channels, p.locale), &b);
}

typedef struct {
    json_t *channels;
    const char *locale;
} prefs_body_t;

static const bv_json_field_t prefs_spec[] = {
    {"channels", BV_JSON_ARRAY, BV_JSON_REQUIRED, 0, 8, offsetof(prefs_body_t, channels), NULL},
    {"locale", BV_JSON_STRING, BV_JSON_NULLABLE, 2, 2, offsetof(prefs_body_t, locale), locales},
    BV_JSON_END,
};

/* The channel set of the body, checked against the customer's contacts; replies 400 (not
 * strings) or 422 naming the field. */
static int channels_or_reply(bv_call_t *c, json_t *arr, const bv_customer_profile_t *p, unsigned *out)
{
    unsigned set = 0, avail = customer_available_channels(p->email, p->phone);
    char field[32];
    size_t i;
    json_t *v;
    *out = 0;
    if (json_array_size(arr) == 0) {
        bv_reply_problem(c, BV_EUNPROCESSABLE, "name at least one channel: email, sms", "channels");
        return -1;
    }
    json_array_foreach(arr, i, v)
    {
        const char *s = json_string_value(v);
        unsigned bit;
        snprintf(field, sizeof(field), "channels[%zu]", i);
        if (s == NULL) {
            bv_reply_problem(c, BV_EINVALID, "channels must be strings", field);
            return -1;
        }
        if (strcmp(s, "email") == 0) {
            bit = BV_NOTIFY_EMAIL;
        } else if (strcmp(s, "sms") == 0) {
            bit = BV_NOTIFY_SMS;
        } else {
            bv_reply_problem(c, BV_EUNPROCESSABLE, "unknown channel: use email or sms", field);
            return -1;
        }
        if (set & bit) {
            bv_reply_problem(c, BV_EUNPROCESSABLE, "a channel is named twice", field);
            return -1;
        }
        if ((avail & bit) == 0) {
            bv_reply_problem(c, BV_EUNPROCESSABLE,
                             bit == BV_NOTIFY_SMS ? "no phone number on file for SMS"
                                                  : "no e-mail address on file",
                             field);
            return -1;
        }
        set |= bit;
    }
    *out = set;
    return 0;
}

typedef struct {
    const char *user_id;
    unsigned channels;
    const char *locale;
    unsigned default_channels; /* what applied when nothing was stored */
    const char *default_locale;
    const char *actor, *request_id, *source_ip;
} prefs_write_t;

static json_t *channels_array(unsigned ch)
{
    json_t *a = json_array();
    if (a != NULL && (ch & BV_NOTIFY_EMAIL))
        json_array_append_new(a, json_string("email"));
    if (a != NULL && (ch & BV_NOTIFY_SMS))
        json_array_append_new(a, json_string("sms"));
    return a;
}

static int prefs_write(bv_tx_t *tx, void *arg)
{
    prefs_write_t *w = arg;
    unsigned old_channels = w->default_channels;
    char old_locale[3], resource[64];
    bool stored = false;
    json_t *details = NULL;
    bv_stmt_t *s;
    int rc;

    snprintf(old_locale, sizeof(old_locale), "%s", w->default_locale);
    if ((s = bv_tx_prepare(tx, "SELECT channels, locale FROM customer_preferences WHERE user_id = ?")) ==
        NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, w->user_id, -1);
    if ((rc = bv_stmt_step(s)) == BV_ROW) {
        const char *loc = bv_stmt_text(s, 1);
        old_channels = (unsigned)bv_stmt_int64(s, 0);
        snprintf(old_locale, sizeof(old_locale), "%s", loc != NULL ? loc : "");
        stored = true;
    }
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    rc = bv_tx_execf(
        tx,
        "INSERT INTO customer_preferences (user_id, channels, locale, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (user_id) DO UPDATE SET channels = excluded.channels, locale = excluded.locale, "
        "updated_at = excluded.updated_at",
        "titi", w->user_id, (int64_t)w->channels, w->locale, bv_now_us());
    if (rc != 0)
        return rc;
    details = json_pack("{s:o, s:o, s:s, s:s, s:b}", "old_channels", channels_array(old_channels),
                        "new_channels", channels_array(w->channels), "old_locale", old_locale, "new_locale",
                        w->locale, "old_was_default", !stored);
    if (details == NULL)
        return BV_ENOMEM;
    snprintf(resource, sizeof(resource), "user:%s", w->user_id);
    bv_audit_event_t ev = {.actor = w->actor,
                           .action = "customer.preferences.update",
                           .resource = resource,
                           .outcome = "success",
                           .source_ip = w->source_ip,
                           .request_id = w->request_id,
                           .details = details};
    rc = bv_audit_append(tx, &ev);
    json_decref(details);
    return rc;
}

static void on_put(bv_call_t *c)
{
    prefs_body_t body = {0};
    json_t *root = NULL;
    bv_customer_profile_t p;
    bv_buf_t b = {0};
    char actor[300];
    unsigned channels = 0;
    bv_store_t *st = customer_store();
    int rc;

    if (bv_call_decode_json_or_reply(c, prefs_spec, &body, &root) != 0)
        return;
    /* the contacts a channel needs are checked against identity as it is now, not the cache */
    bv_customer_profile_forget(c->principal.subject);
    if (profile_or_reply(c, &p) != 0 || channels_or_reply(c, body.channels, &p, &channels) != 0)
        goto out;
    if (st == NULL) {
        customer_reply_error(c, BV_EUNAVAILABLE, NULL, NULL);
        goto out;
    }
    bv_principal_actor(&c->principal, actor, sizeof(actor));
    prefs_write_t w = {.user_id = p.id,
                       .channels = channels,
                       .locale = body.locale != NULL ? body.locale : p.locale,
                       .default_channels = p.channels,
                       .default_locale = p.locale,
                       .actor = actor,
                       .request_id = c->request_id[0] != '\0' ? c->request_id : NULL,
                       .source_ip = c->client_ip[0] != '\0' ? c->client_ip : NULL};
    rc = bv_store_run_tx(st, 1, prefs_write, &w);
    /* after the commit (and after a failure too: the entry may be what failed to match) */
    bv_customer_profile_forget(p.id);
    if (rc != 0) {
        customer_reply_error(c, rc, NULL, NULL);
        goto out;
    }
    customer_reply_buf(c, prefs_json(&b, channels, w.locale), &b);
out:
    json_decref(root);
}

const bv_route_t customer_prefs_routes[] = {
    {"GET", "/v1/me/notification-preferences", on_get, "banking:read", 0, BV_ROUTE_CUSTOMER, NULL},
    {"PUT", "/v1/me/notification-preferences", on_put, "banking:write", PREFS_BODY_MAX, BV_ROUTE_CUSTOMER, NULL},
};
const size_t customer_n_prefs_routes = sizeof(customer_prefs_routes) / sizeof(customer_prefs_routes[0]);
