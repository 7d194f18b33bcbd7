/* The core-banking port (issue 8, docs/core-contract.md): what the customer banking API and
 * the transfer worker need from the platform that holds the accounts — accounts of a
 * customer, an account by id or number, movements, statements, executing a transfer under a
 * reference (idempotent: the same reference never moves money twice) and looking a transfer
 * up by reference (reconciliation).
 *
 * Two adapters behind one interface (BOVEDA_CORE):
 *   builtin  the ledger of this process (bv_ledger_*). Only `boveda serve` and `boveda core`
 *            own a ledger engine; `boveda worker` refuses the builtin adapter for consumers
 *            that move money (two engines on one database would disagree on balances).
 *   http     an external core over the documented HTTP contract (BOVEDA_CORE_URL,
 *            BOVEDA_CORE_TOKEN, BOVEDA_CORE_TIMEOUT_MS, BOVEDA_CORE_CA_FILE), which
 *            `boveda core` serves from its own ledger.
 *
 * Records are the ledger's own types. Every function blocks (store, engine, network): call
 * them from workers, never from an event loop. Thread-safe. */
#ifndef BV_CORE_CORE_H
#define BV_CORE_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app/app.h"
#include "ledger/ledger.h"

typedef struct bv_core bv_core_t;

/* Opens the adapter chosen by BOVEDA_CORE. `ledger` is the process's engine for builtin
 * (may be NULL for http). 0, BV_ECONFIG (a bad or missing setting, logged with its name),
 * BV_ENOMEM. */
int bv_core_open(const bv_config_t *cfg, bv_ledger_t *ledger, bv_core_t **out);
void bv_core_close(bv_core_t *c);
/* The instance opened by the module's init (NULL before / after). */
bv_core_t *bv_core_instance(void);
/* "builtin" | "http" */
const char *bv_core_adapter(const bv_core_t *c);

/* Transport failures of the http adapter (the outcome of a write is then unknown: look the
 * transfer up by reference before sending it again):
 *   BV_ETIMEOUT   no answer within BOVEDA_CORE_TIMEOUT_MS
 *   BV_EUPSTREAM  connection refused/reset, TLS failure, a 5xx, or an unparseable answer
 *   BV_EUNAVAILABLE / BV_EBUSY / BV_ESHUTDOWN  from the builtin engine
 * Callers treat exactly these (see bv_core_retryable) as retryable. */
int bv_core_retryable(int rc);

/* ---- accounts ---- */
/* Every account whose customer_id is `customer_id`, oldest first, into a malloc'd array
 * (*items_out, free() it; NULL when *n_out is 0). 0 or a transport/store error. */
int bv_core_accounts_of(bv_core_t *c, const char *customer_id, bv_ledger_account_t **items_out, size_t *n_out);
/* 0, BV_ENOTFOUND, transport errors. */
int bv_core_account_get(bv_core_t *c, const char *account_id, bv_ledger_account_t *out);
int bv_core_account_by_number(bv_core_t *c, const char *number, bv_ledger_account_t *out);

/* Movements of an account newest first: the semantics of bv_ledger_movements. */
int bv_core_movements(bv_core_t *c, const char *account_id, int64_t from, int64_t to, int64_t before,
                      size_t limit, bv_ledger_movement_t *items, size_t *n_out, int64_t *next_cursor_out);
/* Statement of [from, to): the semantics of bv_ledger_statement (free with
 * bv_ledger_statement_free). */
int bv_core_statement(bv_core_t *c, const char *account_id, int64_t from, int64_t to, bv_ledger_statement_t *out);

/* ---- transfers ---- */
typedef struct {
    const char *reference;      /* idempotency key in the core, required (<= BV_LEDGER_REF_MAX) */
    const char *debit_account;  /* account id */
    const char *credit_account; /* account id */
    int64_t amount;             /* minor units, > 0 */
    const char *currency;
    const char *description;    /* may be NULL */
    const char *actor;          /* audit actor in the core ("user:<id>"), may be NULL */
    const char *request_id;     /* may be NULL */
    int64_t deadline_us;        /* http: the core refuses to execute after this time (µs since
                                   the epoch); 0 = now + BOVEDA_CORE_TIMEOUT_MS. The caller that
                                   records it before sending knows when a lookup is definitive */
} bv_core_transfer_req_t;

/* Executes a posted transfer. 0 (out filled; *replayed_out, may be NULL, is true when the
 * reference already existed with the same content: nothing moved now); a definitive
 * rejection (BV_EINSUFFICIENT_FUNDS, BV_EACCOUNT_FROZEN, BV_EACCOUNT_CLOSED,
 * BV_ECURRENCY_MISMATCH, BV_ESAME_ACCOUNT, BV_EAMOUNT, BV_EUNKNOWN_ACCOUNT,
 * BV_EIDEMPOTENCY, BV_EINVALID); or a retryable error (bv_core_retryable). */
int bv_core_transfer_execute(bv_core_t *c, const bv_core_transfer_req_t *req, bv_ledger_transfer_t *out,
                             bool *replayed_out);
/* Executes n (1..BV_LEDGER_BATCH_MAX) transfers, each on its own (not linked): results[i].rc
 * is what bv_core_transfer_execute would return for reqs[i], with .replayed and .transfer.
 * builtin: one ledger commit for all; http: one request after another, and a request whose
 * deadline_us passed meanwhile is not sent (BV_ETIMEOUT). Returns 0 (see the results) or
 * BV_EINVALID for n out of range. */
int bv_core_transfer_execute_batch(bv_core_t *c, const bv_core_transfer_req_t *reqs, size_t n,
                                   bv_ledger_result_t *results);
/* The transfer the core holds under `reference`: 0, BV_ENOTFOUND (definitely none), or a
 * retryable error. */
int bv_core_transfer_lookup(bv_core_t *c, const char *reference, bv_ledger_transfer_t *out);

/* ---- application hooks (src/app/app.c) ---- */
/* init opens the adapter into the instance (after the ledger module); fini closes it. */
int bv_core_module_init(bv_app_t *app);
void bv_core_module_fini(bv_app_t *app);

/* `boveda core`: serves the ledger over the core contract (plus /healthz, /readyz, /metrics
 * and the back-office ledger routes for the admin token) from its own data directory;
 * BOVEDA_CORE_FAULTS injects faults for tests. Returns the exit status. */
int bv_core_serve_main(bv_config_t *cfg, int argc, char **argv);

#endif
