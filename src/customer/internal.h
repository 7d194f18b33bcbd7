/* Customer module internals shared by its files and its unit tests. Not for other modules. */
#ifndef BV_CUSTOMER_INTERNAL_H
#define BV_CUSTOMER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"
#include "customer/customer.h"
#include "http/http.h"

/* ---- the encrypted profile cache (cache.c) ----
 * A bounded map user id -> profile whose values are held only as AES-256-GCM ciphertext
 * under a random key made at create (wiped at destroy), with the user id as additional
 * authenticated data and a fresh nonce per entry. Entries expire `ttl_us` after they were
 * stored; when the map is full the oldest stored entry goes. Thread-safe. Times are
 * monotonic microseconds passed in by the caller (the tests drive the clock). */
typedef struct customer_cache customer_cache_t;

#define CUSTOMER_CACHE_DEFAULT_MAX 100000

/* ttl_us 0 makes a cache that never holds anything. 0, BV_EINVALID (max 0), BV_ENOMEM,
 * BV_ECRYPTO. Free with customer_cache_destroy (NULL accepted). */
int customer_cache_create(size_t max_entries, int64_t ttl_us, customer_cache_t **out);
void customer_cache_destroy(customer_cache_t *c);
/* 0 (hit: *out filled) or BV_ENOTFOUND (absent, expired, or an entry that does not
 * decrypt and decode: it is dropped). */
int customer_cache_get(customer_cache_t *c, const char *user_id, int64_t now, bv_customer_profile_t *out);
/* The generation to pass to put: read it before loading what will be stored, so that a
 * forget() that happens during the load makes the put a no-op (no stale entry). */
uint64_t customer_cache_generation(customer_cache_t *c);
/* Stores p (keyed by p->id) unless the cache changed generation since `gen` or ttl is 0.
 * 0, BV_EINVALID (p does not fit the entry format), BV_ENOMEM, BV_ECRYPTO. */
int customer_cache_put(customer_cache_t *c, const bv_customer_profile_t *p, uint64_t gen, int64_t now);
void customer_cache_forget(customer_cache_t *c, const char *user_id);
size_t customer_cache_size(customer_cache_t *c);

/* ---- the module's state (module.c) ---- */
bv_store_t *customer_store(void);
/* Movement notices (notices.c): subscribes the `movement-notices` queue to the ledger's
 * events and registers its consumer, in the process that runs the ledger and serves HTTP. */
int customer_notices_start(bv_app_t *app);
void customer_notices_stop(void);
const char *customer_default_locale(void);

/* Channels the user can be reached on (BV_NOTIFY_* bits) given their contacts. */
unsigned customer_available_channels(const char *email, const char *phone);
/* The stored preferences of user_id: 0 (found), BV_ENOTFOUND (none stored), store errors.
 * locale_out has room for 3 bytes. */
int customer_prefs_load(const char *user_id, unsigned *channels_out, char locale_out[3]);

/* ---- HTTP helpers (http_common.c) ---- */
/* Replies with a problem for rc, logging 5xx with the request id. */
void customer_reply_error(bv_call_t *c, int rc, const char *detail, const char *field);
/* Replies 200 with the JSON text in b and frees b (ENOMEM when rc != 0). */
void customer_reply_buf(bv_call_t *c, int rc, bv_buf_t *b);
/* Gives an empty buffer room for cap bytes at once (the bv_buf_t fields are public). */
int customer_buf_presize(bv_buf_t *b, size_t cap);
/* ["email","sms"] for the BV_NOTIFY_* bits. */
int customer_json_channels(bv_buf_t *b, unsigned channels);
/* The profile object {id, username, display_name, email, phone, locale,
 * notification_preferences}. */
int customer_profile_json(bv_buf_t *b, const bv_customer_profile_t *p);

/* Route tables of each endpoint group. */
extern const bv_route_t customer_me_routes[];
extern const size_t customer_n_me_routes;
extern const bv_route_t customer_account_routes[];
extern const size_t customer_n_account_routes;
extern const bv_route_t customer_prefs_routes[];
extern const size_t customer_n_prefs_routes;

#endif
