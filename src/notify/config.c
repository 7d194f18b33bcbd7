/* Notify settings, validated in one place; a bad one stops start-up with one line naming
 * the setting. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notify/internal.h"

/* The configuration being read (settings are declared in src/base/config.c's table, which
 * gives defaults, the INI file and the environment; the checks that need more than a type
 * and bounds are here). Set for the duration of notify_config_load only. */
static const bv_config_t *loading;

static const char *env(const char *name)
{
    const char *v = bv_config_str(loading, name + strlen("BOVEDA_"));
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static int bad(char *err, size_t n, const char *name, const char *why)
{
    snprintf(err, n, "%s: %s", name, why);
    return BV_ECONFIG;
}

static int int_setting(const char *name, int64_t def, int64_t min, int64_t max, int64_t *out, char *err,
                       size_t n)
{
    const char *v = env(name);
    char *end = NULL;
    if (v == NULL) {
        *out = def;
        return 0;
    }
    long long x = strtoll(v, &end, 10);
    if (*end != '\0' || x < min || x > max) {
        char why[96];
        snprintf(why, sizeof(why), "must be an integer from %lld to %lld", (long long)min, (long long)max);
        return bad(err, n, name, why);
    }
    *out = x;
    return 0;
}

/* "10", "0.5", "2.125": messages per second with up to 3 decimals, 0.001..10000. */
static int rate_setting(const char *name, int64_t def_milli, int64_t *out, char *err, size_t n)
{
    const char *v = env(name), *p;
    int64_t whole = 0, frac = 0;
    int fd = 0;
    if (v == NULL) {
        *out = def_milli;
        return 0;
    }
    for (p = v; *p >= '0' && *p <= '9' && whole <= 10000; p++)
        whole = whole * 10 + (*p - '0');
    if (p == v)
        return bad(err, n, name, "must be messages per second, e.g. 10 or 0.5");
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9' && fd < 3; p++, fd++)
            frac = frac * 10 + (*p - '0');
        for (; fd < 3; fd++)
            frac *= 10;
    }
    if (*p != '\0' || whole * 1000 + frac < 1 || whole * 1000 + frac > 10000000)
        return bad(err, n, name, "must be messages per second from 0.001 to 10000 (3 decimals at most)");
    *out = whole * 1000 + frac;
    return 0;
}

static int url_ok(const char *u, const char *const *schemes)
{
    for (size_t i = 0; schemes[i] != NULL; i++) {
        size_t l = strlen(schemes[i]);
        if (strncmp(u, schemes[i], l) == 0 && u[l] != '\0' && u[l] != '/' && strpbrk(u, " \r\n\t") == NULL)
            return 1;
    }
    return 0;
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

static int load_smtp(notify_provider_conf_t *p, int secondary, const char *from, char *err, size_t n)
{
    static const char *const schemes[] = {"smtp://", "smtps://", NULL};
    const char *pre = secondary ? "BOVEDA_SMTP_SECONDARY_" : "BOVEDA_SMTP_";
    char name[64];
    const char *url, *tls;
    int64_t rate;
    int rc;
    snprintf(name, sizeof(name), "%sURL", pre);
    if ((url = env(name)) == NULL)
        return 0;
    if (!url_ok(url, schemes))
        return bad(err, n, name, "must be smtp://host:port (STARTTLS) or smtps://host:port (implicit TLS)");
    if (from == NULL)
        return bad(err, n, "BOVEDA_MAIL_FROM", "is required when an SMTP server is configured");
    snprintf(name, sizeof(name), "%sSTARTTLS", pre);
    tls = env(name);
    if (tls != NULL && strcmp(tls, "auto") != 0 && strcmp(tls, "required") != 0)
        return bad(err, n, name, "must be auto (use STARTTLS when offered) or required");
    snprintf(name, sizeof(name), "%sRATE", pre);
    if ((rc = rate_setting(name, 10000, &rate, err, n)) != 0)
        return rc;
    p->kind = NOTIFY_PROVIDER_SMTP;
    p->tls = tls != NULL && strcmp(tls, "required") == 0 ? NOTIFY_TLS_REQUIRED : NOTIFY_TLS_OPPORTUNISTIC;
    p->url = strdup(url);
    snprintf(name, sizeof(name), "%sUSER", pre);
    p->user = dup_or_null(env(name));
    snprintf(name, sizeof(name), "%sPASSWORD", pre);
    p->secret = dup_or_null(env(name));
    if ((p->user == NULL) != (p->secret == NULL))
        return bad(err, n, name, "SMTP user and password go together");
    p->from = strdup(from);
    p->rate_milli = rate;
    p->burst = 1;
    snprintf(p->name, sizeof(p->name), "smtp-%s", secondary ? "secondary" : "primary");
    p->configured = 1;
    return p->url != NULL && p->from != NULL ? 0 : BV_ENOMEM;
}

static int load_sms(notify_provider_conf_t *p, int secondary, char *err, size_t n)
{
    static const char *const schemes[] = {"http://", "https://", NULL};
    const char *pre = secondary ? "BOVEDA_SMS_SECONDARY_" : "BOVEDA_SMS_";
    char name[64];
    const char *prov, *url;
    int64_t rate;
    int rc;
    snprintf(name, sizeof(name), "%sPROVIDER", pre);
    prov = env(name);
    snprintf(name, sizeof(name), "%sURL", pre);
    url = env(name);
    if (prov == NULL && url == NULL)
        return 0;
    snprintf(name, sizeof(name), "%sPROVIDER", pre);
    if (prov == NULL || (strcmp(prov, "twilio") != 0 && strcmp(prov, "webhook") != 0))
        return bad(err, n, name, "must be twilio or webhook");
    snprintf(name, sizeof(name), "%sURL", pre);
    if (url == NULL || !url_ok(url, schemes))
        return bad(err, n, name, "must be an http:// or https:// URL");
    p->kind = strcmp(prov, "twilio") == 0 ? NOTIFY_PROVIDER_TWILIO : NOTIFY_PROVIDER_WEBHOOK;
    snprintf(name, sizeof(name), "%sACCOUNT", pre);
    p->user = dup_or_null(env(name));
    if (p->kind == NOTIFY_PROVIDER_TWILIO &&
        (p->user == NULL || strlen(p->user) > 64 ||
         strspn(p->user, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") !=
             strlen(p->user)))
        return bad(err, n, name, "is required for twilio (the account SID, letters and digits)");
    snprintf(name, sizeof(name), "%sTOKEN", pre);
    p->secret = dup_or_null(env(name));
    if (p->kind == NOTIFY_PROVIDER_TWILIO && p->secret == NULL)
        return bad(err, n, name, "is required for twilio (the auth token)");
    snprintf(name, sizeof(name), "%sFROM", pre);
    p->from = dup_or_null(env(name));
    if (p->from == NULL || strlen(p->from) > 32)
        return bad(err, n, name, "is required (the sender number or id, at most 32 characters)");
    snprintf(name, sizeof(name), "%sRATE", pre);
    if ((rc = rate_setting(name, 10000, &rate, err, n)) != 0)
        return rc;
    p->url = strdup(url);
    /* a base URL for twilio: no trailing slash */
    if (p->url != NULL && p->kind == NOTIFY_PROVIDER_TWILIO) {
        size_t l = strlen(p->url);
        while (l > 0 && p->url[l - 1] == '/')
            p->url[--l] = '\0';
    }
    p->rate_milli = rate;
    p->burst = 1;
    snprintf(p->name, sizeof(p->name), "sms-%s", secondary ? "secondary" : "primary");
    p->configured = 1;
    return p->url != NULL ? 0 : BV_ENOMEM;
}

int notify_config_load(const bv_config_t *cfg, notify_config_t *c, const char *default_locale, char *err,
                       size_t n)
{
    int64_t v;
    int rc;
    loading = cfg;
    const char *from = env("BOVEDA_MAIL_FROM");
    memset(c, 0, sizeof(*c));
    if (from != NULL && !notify_email_valid(from))
        return bad(err, n, "BOVEDA_MAIL_FROM", "must be an e-mail address (local@domain)");
    if ((rc = load_smtp(&c->email[0], 0, from, err, n)) != 0 ||
        (rc = load_smtp(&c->email[1], 1, from, err, n)) != 0 || (rc = load_sms(&c->sms[0], 0, err, n)) != 0 ||
        (rc = load_sms(&c->sms[1], 1, err, n)) != 0)
        goto fail;
    if (c->email[1].configured && !c->email[0].configured) {
        rc = bad(err, n, "BOVEDA_SMTP_SECONDARY_URL", "needs BOVEDA_SMTP_URL (the primary) too");
        goto fail;
    }
    if (c->sms[1].configured && !c->sms[0].configured) {
        rc = bad(err, n, "BOVEDA_SMS_SECONDARY_URL", "needs BOVEDA_SMS_URL (the primary) too");
        goto fail;
    }
    c->ca_file = dup_or_null(env("BOVEDA_NOTIFY_CA_FILE"));
    if ((rc = int_setting("BOVEDA_NOTIFY_TIMEOUT_MS", 10000, 100, 60000, &c->timeout_ms, err, n)) != 0)
        goto fail;
    if ((rc = int_setting("BOVEDA_NOTIFY_FAILOVER_AFTER", 3, 1, 100, &v, err, n)) != 0)
        goto fail;
    c->failover_after = (int)v;
    if ((rc = int_setting("BOVEDA_NOTIFY_COOLDOWN_S", 30, 1, 3600, &v, err, n)) != 0)
        goto fail;
    c->cooldown_ms = v * 1000;
    if ((rc = int_setting("BOVEDA_NOTIFY_MAX_ATTEMPTS", 5, 1, 10, &v, err, n)) != 0)
        goto fail;
    c->max_attempts = (int)v;
    if ((rc = int_setting("BOVEDA_NOTIFY_VISIBILITY_S", 30, 1, 3600, &v, err, n)) != 0)
        goto fail;
    c->visibility_ms = v * 1000;
    if (c->visibility_ms < 2 * c->timeout_ms + 1000) {
        rc = bad(err, n, "BOVEDA_NOTIFY_VISIBILITY_S",
                 "must exceed twice BOVEDA_NOTIFY_TIMEOUT_MS plus 1 s (a primary and a secondary attempt)");
        goto fail;
    }
    if ((rc = int_setting("BOVEDA_NOTIFY_CONCURRENCY", 2, 1, 16, &v, err, n)) != 0)
        goto fail;
    c->concurrency = (int)v;
    snprintf(c->locale, sizeof(c->locale), "%s",
             default_locale != NULL && strcmp(default_locale, "en") == 0 ? "en" : "es");
    return 0;
fail:
    notify_config_free(c);
    return rc == BV_ENOMEM ? bad(err, n, "notify", "out of memory") : rc;
}

static void provider_free(notify_provider_conf_t *p)
{
    if (p->secret != NULL) {
        OPENSSL_cleanse(p->secret, strlen(p->secret));
        free(p->secret);
    }
    free(p->url);
    free(p->user);
    free(p->from);
    memset(p, 0, sizeof(*p));
}

void notify_config_free(notify_config_t *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < 2; i++) {
        provider_free(&c->email[i]);
        provider_free(&c->sms[i]);
    }
    free(c->ca_file);
    c->ca_file = NULL;
}
