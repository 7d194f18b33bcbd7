/* Internals of the transfers module shared by its files and its unit tests. */
#ifndef BV_TRANSFERS_INTERNAL_H
#define BV_TRANSFERS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "base/util.h"
#include "core/core.h"
#include "customer/customer.h"
#include "ledger/ledger.h"
#include "queue/queue.h"
#include "store/store.h"

#define TR_QUEUE             "transfers"
#define TR_CONFIRM_TTL_US    (15 * 60 * 1000000LL) /* a pending transfer expires after this */
#define TR_SEND_MARGIN_US    1000000LL             /* recorded deadline = now + core timeout + this */
#define TR_CLOCK_SKEW_US     1000000LL             /* a deadline counts as passed this much later */
#define TR_SWEEP_INTERVAL_US (5 * 1000000LL)
#define TR_MAX_EXPONENT      4 /* the largest ISO 4217 exponent: limits scale */

/* Customer-facing status. */
#define TR_PENDING    "pending_confirmation"
#define TR_EXPIRED    "expired"
#define TR_QUEUED     "queued"
#define TR_PROCESSING "processing"
#define TR_SUCCESS    "success"
#define TR_FAILED     "fail"

typedef struct {
    char id[BV_UUID_STR_LEN + 1];
    char user_id[129];
    char idem_key[BV_LEDGER_REF_MAX + 1];
    char request_hash[65];
    char from_account[BV_UUID_STR_LEN + 1];
    char from_number[BV_LEDGER_NUMBER_LEN + 1];
    char to_account[BV_UUID_STR_LEN + 1];
    char to_number[BV_LEDGER_NUMBER_LEN + 1];
    char to_customer[129]; /* "" when none */
    int64_t amount;
    char currency[4];
    char description[BV_LEDGER_DESC_MAX + 1];
    char status[24];
    char stage[16]; /* "" before confirmation */
    char notification_status[12];
    char challenge_id[BV_UUID_STR_LEN + 1];
    char challenge_channel[8];
    int64_t challenge_expires_at;
    int64_t confirm_by;
    int64_t attempts, sends;
    int64_t last_deadline;
    char last_error[48];
    char core_transfer_id[BV_UUID_STR_LEN + 1];
    char failure_type[48];
    char failure_title[128];
    int64_t created_at, confirmed_at, completed_at, updated_at;
} tr_transfer_t;

/* What the module needs from the outside, replaceable by unit tests. */
typedef struct {
    bv_store_t *store;
    int max_retries;         /* BOVEDA_TRANSFER_MAX_RETRIES */
    int64_t backoff_ms;      /* BOVEDA_TRANSFER_BACKOFF_MS */
    int64_t core_timeout_ms; /* BOVEDA_CORE_TIMEOUT_MS */
    int64_t max_amount_e4;   /* BOVEDA_TRANSFER_MAX_AMOUNT in 10^-4 units */
    int64_t daily_limit_e4;  /* BOVEDA_TRANSFER_DAILY_LIMIT in 10^-4 units */
    int (*lookup)(const char *reference, bv_ledger_transfer_t *out);
    int (*execute)(const bv_core_transfer_req_t *req, bv_ledger_transfer_t *out, bool *replayed_out);
    /* Optional: n transfers at once (bv_core_transfer_execute_batch); NULL: execute each. */
    int (*execute_batch)(const bv_core_transfer_req_t *reqs, size_t n, bv_ledger_result_t *results);
    int (*profile)(const char *user_id, bv_customer_profile_t *out);
    int64_t (*now_us)(void);
    /* The channels on which notification `id` was delivered (BV_ENOTFOUND: no such
     * notification): bv_notify_delivered (a test may substitute its own). */
    int (*delivered)(bv_tx_t *tx, const char *id, unsigned *channels_out);
} tr_service_t;

/* The module's service (NULL before init). */
tr_service_t *tr_service(void);

/* ---- rows (store.c) ---- */
/* Reads the transfer `id` (in a read snapshot): 0, BV_ENOTFOUND, store errors. */
int tr_load(bv_store_t *st, const char *id, tr_transfer_t *out);
/* The same inside a job. */
int tr_load_tx(bv_tx_t *tx, const char *id, tr_transfer_t *out);
int tr_load_by_key_tx(bv_tx_t *tx, const char *user_id, const char *idem_key, tr_transfer_t *out);
/* Inserts a new row (every field of t). 0, BV_ECONFLICT (the idempotency key exists), store errors. */
int tr_insert_tx(bv_tx_t *tx, const tr_transfer_t *t);
/* Sum of the amounts of the account's transfers created in [since, ...) that are neither
 * fail nor expired. */
int tr_daily_sum_tx(bv_tx_t *tx, const char *from_account, int64_t since, int64_t *sum_out);
/* Expires pending transfers whose confirm_by passed (of user_id, or of everyone when NULL),
 * up to 200, each audited. *n_out (may be NULL) gets how many. */
int tr_expire_due(bv_store_t *st, const char *user_id, int64_t now, int *n_out);
/* Moves up to 500 transfers from notification `notify` to `notified` once each notice
 * published for them was delivered on at least one channel. *n_out (may be NULL) gets how
 * many. 0 (nothing to do without s->delivered) or store errors. */
int tr_promote_notified(tr_service_t *s, int *n_out);
/* The API representation appended to b. 0 or BV_ENOMEM. */
int tr_json(bv_buf_t *b, const tr_transfer_t *t);
/* 1 for success | fail. */
int tr_is_final(const tr_transfer_t *t);
/* Audit record inside a job, actor "user:<id>" or "system" (user_id NULL). */
int tr_audit(bv_tx_t *tx, const char *user_id, const char *action, const char *transfer_id,
             const char *outcome, const char *ip, const char *request_id, json_t *details /* stolen */);
/* The binding of a transfer's OTP: {amount, currency, source = from account id,
 * destination = to account number}. */
int tr_binding(const tr_transfer_t *t, unsigned char out[32]);

/* ---- the worker (worker.c) ---- */
/* Handles one message for transfer `id`: the state machine of docs/transfers.md. `receipt`
 * (may be NULL) is deleted in the write job that records a final state, then
 * BV_QUEUE_SETTLED is returned; without it BV_QUEUE_ACK. *retry_after_ms_out is set for
 * BV_QUEUE_RETRY. */
bv_queue_result_t tr_process(tr_service_t *s, const char *id, const char *receipt,
                             int64_t *retry_after_ms_out);
/* The same for n (1..TR_BATCH_MAX) messages at once, each with its own result (retry[i]
 * set for BV_QUEUE_RETRY): the same stages, but one write job per stage for all of them
 * and one core call for every execute (one ledger commit with the builtin core). */
#define TR_BATCH_MAX 10
void tr_process_batch(tr_service_t *s, const char *const *ids, const char *const *receipts, int n,
                      bv_queue_result_t *results, int64_t *retry);
/* The notification id of a transfer's notice to `party` ("sender" | "receiver"): a UUIDv7
 * with the transfer's timestamp and bits from SHA-256(transfer id, party), the same every
 * time (a replayed state change never notifies twice). */
void tr_notification_id(const char *transfer_id, const char *party, char out[BV_UUID_STR_LEN + 1]);

/* ---- HTTP (http.c) ---- */
extern const bv_route_t tr_routes[];
extern const size_t tr_n_routes;

#endif
