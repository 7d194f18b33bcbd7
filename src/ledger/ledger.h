/* The ledger (issue 4, docs/ledger.md): accounts, double-entry transfers, holds (two-phase
 * transfers), reversals, batches, movements, balances at a point in time, statements and
 * the invariant checker behind `boveda admin ledger verify`.
 *
 * Money is int64 minor units of an ISO 4217 currency; its decimal text form carries at most
 * the currency's exponent digits after the point. No floating point anywhere.
 *
 * Writes: every state change goes through one engine thread that coalesces the operations
 * submitted by concurrent callers into one store write job (one group commit), writing each
 * touched balance once per job. Reads use the caller's reader connection (a committed
 * snapshot), so what they see is always durable. */
#ifndef BV_LEDGER_LEDGER_H
#define BV_LEDGER_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"
#include "store/store.h"

typedef struct bv_ledger bv_ledger_t;

/* ---- currencies and amounts (amount.c) ---- */

/* The ISO 4217 minor-unit exponent of `code` (3 upper-case letters), or -1 if the currency
 * is not in the ledger's table. */
int bv_ledger_currency_exponent(const char *code);

/* Parses a decimal string ("10", "10.5", "10.50", "-3.25" when allow_negative) with at most
 * `exponent` fractional digits into minor units. Returns 0, BV_EINVALID for text that is not
 * a decimal number (garbage, empty, "1e3", "+1", " 1", "1.", ".5"), or BV_EAMOUNT when it is
 * a number but has more fractional digits than the exponent or does not fit in int64. */
int bv_ledger_amount_parse(const char *s, int exponent, bool allow_negative, int64_t *out);

/* Formats minor units as a decimal string with exactly `exponent` fractional digits
 * ("-12.05"); out needs BV_LEDGER_AMOUNT_MAX bytes. */
#define BV_LEDGER_AMOUNT_MAX 32
void bv_ledger_amount_format(int64_t v, int exponent, char out[BV_LEDGER_AMOUNT_MAX]);

/* Account numbers: 16 digits, 14 digits of body then two ISO 7064 MOD 97-10 check digits
 * (the IBAN scheme: the whole number read as an integer is 1 mod 97). */
#define BV_LEDGER_NUMBER_LEN 16
/* 1 if s is 16 digits with valid check digits, else 0. */
int bv_ledger_number_valid(const char *s);
/* Builds the number for a 14-digit body (body < 10^14) into out[17]. */
void bv_ledger_number_make(uint64_t body, char out[BV_LEDGER_NUMBER_LEN + 1]);

/* ---- records ---- */

#define BV_LEDGER_REF_MAX 128
#define BV_LEDGER_DESC_MAX 256
#define BV_LEDGER_NAME_MAX 200
#define BV_LEDGER_BATCH_MAX 8190

typedef struct {
    char id[BV_UUID_STR_LEN + 1];
    char number[BV_LEDGER_NUMBER_LEN + 1];
    char type[12];     /* checking | savings | wallet | internal */
    char currency[4];
    int exponent;
    char status[8];    /* active | frozen | closed */
    char holder_name[BV_LEDGER_NAME_MAX + 1];
    char customer_id[BV_UUID_STR_LEN + 1]; /* "" when none */
    int64_t overdraft_limit;
    bool allow_negative;
    int64_t balance;
    int64_t holds;     /* pending debits that have not expired */
    int64_t available; /* balance - holds */
    int64_t created_at;
} bv_ledger_account_t;

typedef struct {
    char id[BV_UUID_STR_LEN + 1];
    char reference[BV_LEDGER_REF_MAX + 1];
    char debit_account[BV_UUID_STR_LEN + 1];
    char credit_account[BV_UUID_STR_LEN + 1];
    char currency[4];
    int exponent;
    int64_t amount;        /* requested / held amount */
    int64_t posted_amount; /* what moved (0 while pending, voided or expired) */
    char status[8];        /* posted | pending | voided | expired */
    bool pending;          /* created as a hold */
    int64_t expires_at;    /* 0 = none */
    char description[BV_LEDGER_DESC_MAX + 1];
    char reverses[BV_UUID_STR_LEN + 1];    /* "" unless this is a reversal */
    char reversed_by[BV_UUID_STR_LEN + 1]; /* "" unless reversed */
    int64_t created_at;
    int64_t resolved_at;   /* posted/voided/expired time of a hold, 0 otherwise */
} bv_ledger_transfer_t;

/* Who asks, for the audit record. Strings are borrowed for the duration of the call. */
typedef struct {
    const char *actor; /* bv_principal_actor(): "admin:admin", "user:<id>", "system" */
    const char *request_id;
    const char *source_ip;
} bv_ledger_ctx_t;

/* ---- the engine ---- */

typedef struct {
    bool sweeper;            /* expire holds in the background (serve only) */
    int sweep_interval_ms;   /* default 1000 */
    int max_transfers_per_job; /* coalescing bound (default 16384) */
} bv_ledger_options_t;

/* Loads the accounts into memory and starts the engine thread. The caller frees with
 * bv_ledger_close (NULL accepted), which finishes queued work first. 0, BV_EIO, BV_ENOMEM. */
int bv_ledger_open(bv_store_t *st, const bv_ledger_options_t *opt, bv_ledger_t **out);
void bv_ledger_close(bv_ledger_t *lg);

typedef struct {
    const char *type;         /* checking | savings | wallet | internal */
    const char *currency;
    const char *holder_name;
    const char *customer_id;  /* may be NULL */
    int64_t overdraft_limit;  /* >= 0 */
    bool allow_negative;      /* internal accounts only */
    const char *idem_key;     /* may be NULL; a retry with the same key returns the account */
} bv_ledger_account_req_t;

/* Opens an account. Returns 0 (out filled; *replayed_out, may be NULL, tells whether idem_key
 * named an account opened before with the same content), BV_EINVALID for a bad
 * type/currency/flag combination, BV_EIDEMPOTENCY for a key reused with other content. */
int bv_ledger_account_create(bv_ledger_t *lg, const bv_ledger_ctx_t *ctx, const bv_ledger_account_req_t *req,
                             bv_ledger_account_t *out, bool *replayed_out);
/* Sets status (active | frozen | closed). Closing needs a zero balance and no holds
 * (BV_ECONFLICT). BV_ENOTFOUND for an unknown account, BV_EACCOUNT_CLOSED when closed. */
int bv_ledger_account_set_status(bv_ledger_t *lg, const bv_ledger_ctx_t *ctx, const char *id, const char *status,
                                 bv_ledger_account_t *out);

typedef struct {
    const char *debit_account;  /* account ids */
    const char *credit_account;
    int64_t amount;             /* minor units */
    const char *currency;
    const char *reference;      /* idempotency key, required, <= BV_LEDGER_REF_MAX bytes */
    const char *description;   /* may be NULL */
    bool pending;
    int64_t expires_at;         /* 0 = never; pending only */
    const char *actor;          /* audit actor of this transfer; NULL: the call's ctx->actor */
} bv_ledger_transfer_req_t;

/* Result of one transfer. rc is 0 (created), or a BV_E... rejection (the ledger's
 * codes, BV_EIDEMPOTENCY, BV_EINVALID). replayed is true when the reference existed with
 * the same content: transfer is then the stored one. */
typedef struct {
    int rc;
    bool replayed;
    bv_ledger_transfer_t transfer;
} bv_ledger_result_t;

/* Applies one transfer (posted, or pending when req->pending). Returns result->rc, or
 * BV_EIO / BV_ESHUTDOWN when the store failed. */
int bv_ledger_transfer(bv_ledger_t *lg, const bv_ledger_ctx_t *ctx, const bv_ledger_transfer_req_t *req,
                       bv_ledger_result_t *result);

/* The same without waiting: queues the transfer and returns 0 at once (or BV_ESHUTDOWN,
 * BV_ENOMEM, and done is not called). done(rc, arg) is called exactly once, on an engine or
 * store thread, when the outcome is durable, with what bv_ledger_transfer would return
 * (result filled as by it); it must not block. ctx, req (and the strings they point to) and
 * result must stay valid until then. bv_ledger_close finishes every queued transfer, so
 * every done is called before it returns. */
int bv_ledger_transfer_async(bv_ledger_t *lg, const bv_ledger_ctx_t *ctx, const bv_ledger_transfer_req_t *req,
                             bv_ledger_result_t *result, void (*done)(int rc, void *arg), void *arg);

/* Applies n transfers in order in one commit, each with its own result in results[i].
 * linked: all succeed or none does (the failing one keeps its code, the others get
 * BV_ELINKED_FAILED). Returns 0 when the batch was processed (see the results), else an
 * error that applies to all (BV_EINVALID for n out of range, BV_EIO). */
int bv_ledger_batch(bv_ledger_t *lg, const bv_ledger_ctx_t *ctx, const bv_ledger_transfer_req_t *reqs, size_t n,
                    bool linked, bv_ledger_result_t *results);

/* Posts a pending transfer for `amount` (0 = the full held amount), voids it, or reverses
 * a posted transfer. idem_key (may be NULL) makes a retry of the same call return the same
 * result. Returns 0 with *out filled (for a reversal: the new compensating transfer), or
 * BV_ENOTFOUND, BV_ETRANSFER_STATE, BV_EEXPIRED, BV_EAMOUNT, BV_EALREADY_REVERSED, ... */
int bv_ledger_post(bv_ledger_t *lg, const bv_ledger_ctx_t *ctx, const char *transfer_id, int64_t amount,
                   const char *idem_key, bv_ledger_transfer_t *out);
int bv_ledger_void(bv_ledger_t *lg, const bv_ledger_ctx_t *ctx, const char *transfer_id, const char *idem_key,
                   bv_ledger_transfer_t *out);
int bv_ledger_reverse(bv_ledger_t *lg, const bv_ledger_ctx_t *ctx, const char *transfer_id, const char *idem_key,
                      const char *description, bv_ledger_transfer_t *out, bool *replayed_out);

/* Expires every pending transfer whose deadline passed (the sweeper calls this too).
 * *n_out (may be NULL) gets how many. */
int bv_ledger_expire_due(bv_ledger_t *lg, int *n_out);

/* ---- reads (committed state) ---- */

/* 0, BV_ENOTFOUND. */
int bv_ledger_account_get(bv_ledger_t *lg, const char *id, bv_ledger_account_t *out);
int bv_ledger_transfer_get(bv_ledger_t *lg, const char *id, bv_ledger_transfer_t *out);
int bv_ledger_transfer_by_reference(bv_ledger_t *lg, const char *reference, bv_ledger_transfer_t *out);

typedef struct {
    char transfer_id[BV_UUID_STR_LEN + 1];
    int64_t amount; /* signed */
    int64_t balance_after;
    char counterparty_id[BV_UUID_STR_LEN + 1];
    char counterparty_name[BV_LEDGER_NAME_MAX + 1];
    char counterparty_number[BV_LEDGER_NUMBER_LEN + 1];
    char description[BV_LEDGER_DESC_MAX + 1];
    int64_t created_at;
} bv_ledger_movement_t;

#define BV_LEDGER_PAGE_MAX 500

/* Movements of an account newest first with created_at in [from, to) (0 = unbounded) and,
 * when before > 0, older than the cursor `before`. Fills up to `limit` (<= PAGE_MAX) items;
 * *next_cursor_out is the cursor of the next page or 0 at the end. */
int bv_ledger_movements(bv_ledger_t *lg, const char *account_id, int64_t from, int64_t to, int64_t before,
                        size_t limit, bv_ledger_movement_t *items, size_t *n_out, int64_t *next_cursor_out);

/* The account's balance just after `at` (movements with created_at <= at). */
int bv_ledger_balance_at(bv_ledger_t *lg, const char *account_id, int64_t at, bv_ledger_account_t *acct_out,
                         int64_t *balance_out);

#define BV_LEDGER_STATEMENT_MAX 100000
typedef struct {
    bv_ledger_account_t account;
    int64_t from, to;
    int64_t opening, closing;
    int64_t total_credits, total_debits; /* debits as a positive number */
    size_t n_items;
    bv_ledger_movement_t *items; /* oldest first; malloc'd, freed by bv_ledger_statement_free */
} bv_ledger_statement_t;

/* Statement for created_at in [from, to). BV_ENOTFOUND, BV_EINVALID (from >= to),
 * BV_ETOOLARGE (more than BV_LEDGER_STATEMENT_MAX movements: ask for a shorter range). */
int bv_ledger_statement(bv_ledger_t *lg, const char *account_id, int64_t from, int64_t to,
                        bv_ledger_statement_t *out);
void bv_ledger_statement_free(bv_ledger_statement_t *s);

/* ---- JSON (render.c): one rendering for the back-office API, the core contract and the
 * customer API. Money as decimal strings in the currency's exponent, times RFC 3339. ---- */

#define BV_LEDGER_JSON_CUSTOMER 0x1u /* the customer's view: without customer_id, allow_negative */
/* Each appends one object to b: 0 or BV_ENOMEM. */
int bv_ledger_account_json(bv_buf_t *b, const bv_ledger_account_t *a, unsigned flags);
int bv_ledger_transfer_json(bv_buf_t *b, const bv_ledger_transfer_t *t);
int bv_ledger_movement_json(bv_buf_t *b, const bv_ledger_movement_t *m, int exponent);
/* A page of movements as the members `"items":[...],"next_cursor":"N"|null` (no braces:
 * the caller adds its own members around them). */
int bv_ledger_movement_page_json(bv_buf_t *b, const bv_ledger_movement_t *items, size_t n, int exponent,
                                 int64_t next_cursor);

/* ---- invariants (verify.c) ---- */

typedef struct {
    const char *name; /* static */
    bool ok;
    char detail[256];
} bv_ledger_check_t;

#define BV_LEDGER_N_CHECKS 9
/* Checks every ledger invariant against the committed database (docs/ledger.md). Works
 * on the store alone (no engine). Returns 0 when all pass, BV_EINTEGRITY when one failed,
 * or a store error. checks[] gets each check's outcome. */
int bv_ledger_verify(bv_store_t *st, bv_ledger_check_t checks[BV_LEDGER_N_CHECKS]);

#endif
