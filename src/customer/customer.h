/* The customer banking API (issue 8, docs/customer.md): who the customer is and what they
 * hold, read through the core port, every resource checked against the token's subject.
 *
 *   GET /v1/me, GET /v1/me/summary, GET /v1/me/accounts,
 *   GET /v1/me/accounts/{id}/movements, GET|PUT /v1/me/notification-preferences
 *
 * The basic profile (identity data plus preferences) is cached in memory with lazy loading;
 * entries are held encrypted (AES-256-GCM under a per-process random key) and expire after
 * BOVEDA_PROFILE_CACHE_TTL_S; a change of preferences invalidates the entry.
 *
 * Functions block (store, key store, core): call them from workers. */
#ifndef BV_CUSTOMER_CUSTOMER_H
#define BV_CUSTOMER_CUSTOMER_H

#include <stdbool.h>
#include <stddef.h>

#include "app/app.h"
#include "base/util.h"
#include "ledger/ledger.h"
#include "store/store.h"

/* The basic profile: the user's identity data and notification preferences. */
typedef struct {
    char id[BV_UUID_STR_LEN + 1];
    char username[129];
    char display_name[201];
    char email[255]; /* "" when none */
    char phone[17];  /* E.164, "" when none */
    char locale[3];  /* "es" | "en" */
    unsigned channels; /* BV_NOTIFY_EMAIL | BV_NOTIFY_SMS wanted (never 0) */
} bv_customer_profile_t;

/* The profile of user_id (cache first). 0, BV_ENOTFOUND (no such user), store/key errors.
 * Without stored preferences the channels are every channel the user has a contact for. */
int bv_customer_profile(const char *user_id, bv_customer_profile_t *out);
/* Drops the cached entry (after a change of the user's data). */
void bv_customer_profile_forget(const char *user_id);

/* The account `account_id` if it belongs to user_id: 0, BV_ENOTFOUND (unknown or another
 * customer's: indistinguishable), core errors. */
int bv_customer_account_owned(const char *user_id, const char *account_id, bv_ledger_account_t *out);

/* ---- application hooks (src/app/app.c) ---- */
int bv_customer_module_init(bv_app_t *app);
int bv_customer_module_routes(bv_app_t *app);
void bv_customer_module_fini(bv_app_t *app);

#endif
