/* Ledger internals shared by the engine, the queries and the HTTP handlers. Not for other
 * modules. */
#ifndef BV_LEDGER_INTERNAL_H
#define BV_LEDGER_INTERNAL_H

#include "base/util.h"
#include "ledger/ledger.h"
#include "store/store.h"

/* The store behind the engine (reads need only that). */
bv_store_t *ledger_store(bv_ledger_t *lg);

/* Columns of a transfer row joined with its accounts; the WHERE clause is appended. */
#define LEDGER_XFER_SELECT                                                                                       \
    "SELECT t.rid, t.id, t.reference, d.id, c.id, t.currency, t.amount, t.posted_amount, t.status, t.pending, " \
    "t.expires_at, t.description, r.id, (SELECT x.id FROM ledger_transfers x WHERE x.reverses = t.rid), "      \
    "t.created_at, t.resolved_at, t.debit, t.credit, t.resolve_key "                                            \
    "FROM ledger_transfers t JOIN ledger_account_info d ON d.rid = t.debit "                                    \
    "JOIN ledger_account_info c ON c.rid = t.credit LEFT JOIN ledger_transfers r ON r.rid = t.reverses "

typedef struct {
    int64_t rid, debit_rid, credit_rid;
    char resolve_key[BV_LEDGER_REF_MAX + 1];
} ledger_xfer_extra_t;

/* Fills out (and extra, may be NULL) from a row of LEDGER_XFER_SELECT. */
void ledger_xfer_from_row(bv_stmt_t *s, bv_ledger_transfer_t *out, ledger_xfer_extra_t *extra);

/* Columns of an account row; WHERE appended. Columns 13 and 14 are the head and the length
 * of its movement chain (last_movement, movements). */
#define LEDGER_ACCT_SELECT                                                                                      \
    "SELECT rid, id, number, type, currency, status, holder_name, customer_id, overdraft_limit, "               \
    "allow_negative, balance, holds, created_at, last_movement, movements FROM ledger_accounts "

/* Movement history (migration 0031): each posted transfer links to the previous movement of
 * each of its accounts (debit_prev, credit_prev), each account knows its newest movement,
 * and every LEDGER_ANCHOR_EVERY-th movement of an account (the 1st, the 65th, ...) is in
 * ledger_anchors(account, posted_at, xfer), so a point in time is at most that many steps
 * from an anchor. The migration's backfill uses the same number. */
#define LEDGER_ANCHOR_EVERY 64
void ledger_acct_from_row(bv_stmt_t *s, bv_ledger_account_t *out, int64_t *rid_out);

/* Copies src into dst (size n), truncating; NULL src gives "". */
void ledger_strlcpy(char *dst, const char *src, size_t n);

/* JSON text of records (the API representation), appended to b. 0 or BV_ENOMEM. */
/* Appends s as a JSON string literal (with quotes), or null when s is NULL or "" and
 * empty_null is set. */

/* ---- HTTP helpers (http_common.c) ---- */
#include "http/http.h"

typedef struct {
    char actor[300];
    bv_ledger_ctx_t ctx;
} ledger_call_ctx_t;

/* The actor, request id and client address of a call, for audit records. */
void ledger_call_ctx(bv_call_t *c, ledger_call_ctx_t *out);
/* Replies with the JSON text in b (status) and frees b. */
void ledger_reply_buf(bv_call_t *c, int status, bv_buf_t *b);
/* Replies with the problem for a ledger result code (BV_EIO and friends as 5xx). */
void ledger_reply_error(bv_call_t *c, int rc, const char *field);
/* The Idempotency-Key header, or NULL; replies 400 and returns non-zero when it is longer
 * than BV_LEDGER_REF_MAX or empty. */
int ledger_idem_key_or_reply(bv_call_t *c, const char **out);

/* Route tables of each endpoint group. */
extern const bv_route_t ledger_account_routes[];
extern const size_t ledger_n_account_routes;
extern const bv_route_t ledger_transfer_routes[];
extern const size_t ledger_n_transfer_routes;

#endif
