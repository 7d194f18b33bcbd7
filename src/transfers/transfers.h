/* Customer transfers (issue 8, docs/transfers.md): a customer orders a transfer from one of
 * their accounts to any account number, confirms it with a one-time code bound to that exact
 * operation, and a queue worker executes it against the core exactly once, with a state
 * machine per transfer (queued -> event_consumed -> request_before -> waiting -> success |
 * fail, and none -> notify -> notified for the notification of the outcome).
 *
 *   POST /v1/me/transfers                    create (Idempotency-Key) -> pending_confirmation
 *   POST /v1/me/transfers/{id}/confirm       {code} -> queued
 *   POST /v1/me/transfers/{id}/challenge     a new code for a pending transfer
 *   GET  /v1/me/transfers/{id}, GET /v1/me/transfers
 *
 * The consumer "transfers" (group "transfers") runs in `boveda serve` (builtin or http core)
 * and in `boveda worker` only with BOVEDA_CORE=http. */
#ifndef BV_TRANSFERS_TRANSFERS_H
#define BV_TRANSFERS_TRANSFERS_H

#include "app/app.h"

#include "store/store.h"

/* 1 when `reference` (a core transfer's reference) is a customer transfer of this bank,
 * whose notices the transfer worker sends itself; 0 when not; or a store error. Inside the
 * caller's job (a read or write transaction). */
int bv_transfers_is_customer_transfer(bv_tx_t *tx, const char *reference);

/* ---- application hooks (src/app/app.c) ---- */
/* init validates the settings, registers the consumer (not in a process without HTTP when
 * the core adapter is builtin) and, in `boveda serve`, starts the expiry sweeper; routes
 * adds the HTTP routes; fini stops both. 0 or BV_ECONFIG (a bad setting, logged). */
int bv_transfers_module_init(bv_app_t *app);
int bv_transfers_module_routes(bv_app_t *app);
void bv_transfers_module_fini(bv_app_t *app);

#endif
