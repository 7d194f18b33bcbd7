/* The customer module: its state, the basic profile (cache first, then identity and the
 * stored preferences), the ownership check and the application hooks. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "core/core.h"
#include "customer/internal.h"
#include "identity/identity.h"
#include "notify/notify.h"

static struct {
    bv_store_t *store;
    customer_cache_t *cache; /* NULL when BOVEDA_PROFILE_CACHE_TTL_S is 0 */
    char locale[3];          /* BOVEDA_LOCALE */
} g;

bv_store_t *customer_store(void)
{
    return g.store;
}

const char *customer_default_locale(void)
{
    return g.locale[0] != '\0' ? g.locale : "es";
}

unsigned customer_available_channels(const char *email, const char *phone)
{
    unsigned ch = 0;
    if (email != NULL && email[0] != '\0')
        ch |= BV_NOTIFY_EMAIL;
    if (phone != NULL && phone[0] != '\0')
        ch |= BV_NOTIFY_SMS;
    return ch;
}

typedef struct {
    const char *user_id;
    unsigned channels;
    char locale[3];
} prefs_read_t;

static int prefs_read(bv_tx_t *tx, void *arg)
{
    prefs_read_t *r = arg;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT channels, locale FROM customer_preferences WHERE user_id = ?");
    int rc;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, r->user_id, -1);
    rc = bv_stmt_step(s);
    if (rc == BV_ROW) {
        const char *loc = bv_stmt_text(s, 1);
        r->channels = (unsigned)bv_stmt_int64(s, 0) & (BV_NOTIFY_EMAIL | BV_NOTIFY_SMS);
        snprintf(r->locale, sizeof(r->locale), "%s", loc != NULL ? loc : "");
        rc = 0;
    } else if (rc == BV_DONE) {
        rc = BV_ENOTFOUND;
    }
    bv_stmt_reset(s);
    return rc;
}

int customer_prefs_load(const char *user_id, unsigned *channels_out, char locale_out[3])
{
    prefs_read_t r = {.user_id = user_id};
    int rc;
    if (g.store == NULL)
        return BV_EUNAVAILABLE;
    if ((rc = bv_store_run_tx(g.store, 0, prefs_read, &r)) != 0)
        return rc;
    *channels_out = r.channels;
    memcpy(locale_out, r.locale, 3);
    return 0;
}

/* Identity data plus preferences, straight from the store. */
static int profile_load(const char *user_id, bv_customer_profile_t *out)
{
    bv_identity_user_t u;
    bv_identity_t *idn = bv_identity_instance();
    unsigned stored = 0, avail;
    char locale[3] = "";
    int rc;

    if (idn == NULL)
        return BV_EUNAVAILABLE;
    if ((rc = bv_identity_user_get(idn, user_id, &u)) != 0)
        return rc;
    rc = customer_prefs_load(user_id, &stored, locale);
    if (rc != 0 && rc != BV_ENOTFOUND)
        goto out;
    memset(out, 0, sizeof(*out));
    snprintf(out->id, sizeof(out->id), "%s", u.id);
    snprintf(out->username, sizeof(out->username), "%s", u.username);
    snprintf(out->display_name, sizeof(out->display_name), "%s", u.display_name);
    snprintf(out->email, sizeof(out->email), "%s", u.email);
    snprintf(out->phone, sizeof(out->phone), "%s", u.phone);
    snprintf(out->locale, sizeof(out->locale), "%s", locale[0] != '\0' ? locale : customer_default_locale());
    /* a stored channel whose contact was removed since does not count */
    avail = customer_available_channels(u.email, u.phone);
    out->channels = stored & avail;
    if (out->channels == 0)
        out->channels = avail;
    if (out->channels == 0)
        out->channels = BV_NOTIFY_EMAIL; /* no contact at all: nothing can be delivered anyway */
    rc = 0;
out:
    OPENSSL_cleanse(&u, sizeof(u)); /* personal data on the stack */
    return rc;
}

int bv_customer_profile(const char *user_id, bv_customer_profile_t *out)
{
    uint64_t gen = 0;
    int rc;
    if (user_id == NULL || !bv_uuid_valid(user_id))
        return BV_ENOTFOUND;
    if (g.cache != NULL) {
        if (customer_cache_get(g.cache, user_id, bv_mono_us(), out) == 0)
            return 0;
        gen = customer_cache_generation(g.cache);
    }
    if ((rc = profile_load(user_id, out)) != 0)
        return rc;
    if (g.cache != NULL && (rc = customer_cache_put(g.cache, out, gen, bv_mono_us())) != 0)
        bv_log_warn("profile not cached", "\"error\":\"%s\"", bv_err_name(rc)); /* served anyway */
    return 0;
}

void bv_customer_profile_forget(const char *user_id)
{
    customer_cache_forget(g.cache, user_id);
}

int bv_customer_account_owned(const char *user_id, const char *account_id, bv_ledger_account_t *out)
{
    bv_core_t *core = bv_core_instance();
    int rc;
    if (user_id == NULL || account_id == NULL || !bv_uuid_valid(user_id) || !bv_uuid_valid(account_id))
        return BV_ENOTFOUND;
    if (core == NULL)
        return BV_EUNAVAILABLE;
    if ((rc = bv_core_account_get(core, account_id, out)) != 0)
        return rc;
    /* another customer's account, or a bank-internal one: as if it did not exist */
    if (strcmp(out->customer_id, user_id) != 0) {
        memset(out, 0, sizeof(*out));
        return BV_ENOTFOUND;
    }
    return 0;
}

/* ---- application hooks ---- */

int bv_customer_module_init(bv_app_t *app)
{
    int64_t ttl_s = bv_config_int(app->cfg, "PROFILE_CACHE_TTL_S");
    int rc;
    g.store = app->store;
    snprintf(g.locale, sizeof(g.locale), "%s", app->cfg->locale != NULL ? app->cfg->locale : "es");
    if (ttl_s > 0 &&
        (rc = customer_cache_create(CUSTOMER_CACHE_DEFAULT_MAX, ttl_s * 1000000, &g.cache)) != 0) {
        g.store = NULL;
        return rc;
    }
    return customer_notices_start(app);
}

int bv_customer_module_routes(bv_app_t *app)
{
    int rc;
    if ((rc = bv_http_add_routes(app->http, customer_me_routes, customer_n_me_routes, app)) != 0 ||
        (rc = bv_http_add_routes(app->http, customer_account_routes, customer_n_account_routes, app)) != 0 ||
        (rc = bv_http_add_routes(app->http, customer_prefs_routes, customer_n_prefs_routes, app)) != 0)
        return rc;
    return 0;
}

void bv_customer_module_fini(bv_app_t *app)
{
    (void)app;
    customer_notices_stop();
    customer_cache_destroy(g.cache); /* wipes the cache key */
    g.cache = NULL;
    g.store = NULL;
}
