/* Reads of committed ledger state, each in one read snapshot of the caller's reader
 * connection. Holds past their deadline are shown as expired (and do not reduce the
 * available balance) even before the sweeper has recorded it. */
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "ledger/internal.h"

typedef struct {
    const char *key;
    int64_t at, from, to, before;
    size_t limit;
    bv_ledger_account_t *acct;
    int64_t acct_rid;
    bv_ledger_transfer_t *xfer;
    bv_ledger_movement_t *items;
    size_t n_items;
    int64_t next_cursor;
    int64_t balance;
    bv_ledger_statement_t *stmt;
} read_t;

/* Loads the account `key` with its live holds into r->acct. BV_ROW, BV_DONE or error. */
static int load_account(bv_tx_t *tx, read_t *r)
{
    bv_stmt_t *s = bv_tx_prepare(tx, LEDGER_ACCT_SELECT "WHERE id = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, r->key, -1);
    int rc = bv_stmt_step(s);
    if (rc == BV_ROW)
        ledger_acct_from_row(s, r->acct, &r->acct_rid);
    bv_stmt_reset(s);
    if (rc != BV_ROW)
        return rc;
    if (r->acct->holds == 0)
        return BV_ROW;
    /* live holds: pending debits whose deadline has not passed */
    s = bv_tx_prepare(tx, "SELECT COALESCE(SUM(amount), 0) FROM ledger_transfers WHERE debit = ? AND "
                          "status = 'pending' AND (expires_at IS NULL OR expires_at > ?)");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, r->acct_rid);
    bv_stmt_bind_int64(s, 2, bv_now_us());
    rc = bv_stmt_step(s);
    if (rc == BV_ROW) {
        r->acct->holds = bv_stmt_int64(s, 0);
        r->acct->available = r->acct->balance - r->acct->holds;
    }
    bv_stmt_reset(s);
    return rc == BV_ROW ? BV_ROW : (rc < 0 ? rc : BV_EIO);
}

static int account_fn(bv_tx_t *tx, void *arg)
{
    int rc = load_account(tx, arg);
    return rc == BV_ROW ? 0 : (rc < 0 ? rc : BV_ENOTFOUND);
}

int bv_ledger_account_get(bv_ledger_t *lg, const char *id, bv_ledger_account_t *out)
{
    read_t r = {.key = id, .acct = out};
    if (id == NULL || !bv_uuid_valid(id))
        return BV_ENOTFOUND;
    return bv_store_run_tx(ledger_store(lg), 0, account_fn, &r);
}

static void lazy_expiry(bv_ledger_transfer_t *t)
{
    if (strcmp(t->status, "pending") == 0 && t->expires_at != 0 && t->expires_at <= bv_now_us()) {
        ledger_strlcpy(t->status, "expired", sizeof(t->status));
        t->resolved_at = t->expires_at;
    }
}

static int xfer_by_id_fn(bv_tx_t *tx, void *arg)
{
    read_t *r = arg;
    bv_stmt_t *s = bv_tx_prepare(tx, LEDGER_XFER_SELECT "WHERE t.id = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, r->key, -1);
    int rc = bv_stmt_step(s);
    if (rc == BV_ROW)
        ledger_xfer_from_row(s, r->xfer, NULL);
    bv_stmt_reset(s);
    return rc == BV_ROW ? 0 : (rc < 0 ? rc : BV_ENOTFOUND);
}

static int xfer_by_ref_fn(bv_tx_t *tx, void *arg)
{
    read_t *r = arg;
    bv_stmt_t *s = bv_tx_prepare(tx, LEDGER_XFER_SELECT "WHERE t.reference = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, r->key, -1);
    int rc = bv_stmt_step(s);
    if (rc == BV_ROW)
        ledger_xfer_from_row(s, r->xfer, NULL);
    bv_stmt_reset(s);
    return rc == BV_ROW ? 0 : (rc < 0 ? rc : BV_ENOTFOUND);
}

int bv_ledger_transfer_get(bv_ledger_t *lg, const char *id, bv_ledger_transfer_t *out)
{
    read_t r = {.key = id, .xfer = out};
    if (id == NULL || !bv_uuid_valid(id))
        return BV_ENOTFOUND;
    int rc = bv_store_run_tx(ledger_store(lg), 0, xfer_by_id_fn, &r);
    if (rc == 0)
        lazy_expiry(out);
    return rc;
}

int bv_ledger_transfer_by_reference(bv_ledger_t *lg, const char *reference, bv_ledger_transfer_t *out)
{
    read_t r = {.key = reference, .xfer = out};
    if (reference == NULL || reference[0] == '\0' || strlen(reference) > BV_LEDGER_REF_MAX)
        return BV_ENOTFOUND;
    int rc = bv_store_run_tx(ledger_store(lg), 0, xfer_by_ref_fn, &r);
    if (rc == 0)
        lazy_expiry(out);
    return rc;
}

static void movement_from_row(bv_stmt_t *s, bv_ledger_movement_t *m)
{
    memset(m, 0, sizeof(*m));
    m->created_at = bv_stmt_int64(s, 0);
    m->amount = bv_stmt_int64(s, 1);
    m->balance_after = bv_stmt_int64(s, 2);
    ledger_strlcpy(m->transfer_id, bv_stmt_text(s, 3), sizeof(m->transfer_id));
    ledger_strlcpy(m->description, bv_stmt_text(s, 4), sizeof(m->description));
    ledger_strlcpy(m->counterparty_id, bv_stmt_text(s, 5), sizeof(m->counterparty_id));
    ledger_strlcpy(m->counterparty_number, bv_stmt_text(s, 6), sizeof(m->counterparty_number));
    ledger_strlcpy(m->counterparty_name, bv_stmt_text(s, 7), sizeof(m->counterparty_name));
}

/* An account's movements are the posted transfers where it is the debit side (amount
 * negative) or the credit side: two ranges of the (debit, posted_at) and (credit, posted_at)
 * indexes, merged by time. Each side is limited first, so "the last 4 movements" reads at
 * most 4 index entries per side plus their rows and counterparties by primary key.
 * Parameters: 1 account rid, 2 lower ts (inclusive), 3 upper ts (exclusive), 4 limit. */
#define MOVEMENTS_SQL(dir)                                                                                      \
    "SELECT m.ts, m.amount, m.bal, m.id, m.description, c.id, c.number, c.holder_name FROM ("                   \
    "SELECT * FROM (SELECT posted_at AS ts, -posted_amount AS amount, debit_balance_after AS bal, id, "         \
    "description, credit AS cp FROM ledger_transfers WHERE debit = ?1 AND posted_at >= ?2 AND posted_at < ?3 "  \
    "ORDER BY posted_at " dir " LIMIT ?4) UNION ALL "                                                           \
    "SELECT * FROM (SELECT posted_at, posted_amount, credit_balance_after, id, description, debit "             \
    "FROM ledger_transfers WHERE credit = ?1 AND posted_at >= ?2 AND posted_at < ?3 "                           \
    "ORDER BY posted_at " dir " LIMIT ?4)) AS m JOIN ledger_accounts c ON c.rid = m.cp ORDER BY m.ts " dir      \
    " LIMIT ?4"

static int movements_fn(bv_tx_t *tx, void *arg)
{
    read_t *r = arg;
    int rc = load_account(tx, r);
    if (rc != BV_ROW)
        return rc < 0 ? rc : BV_ENOTFOUND;
    int64_t hi = INT64_MAX; /* exclusive upper bound on ts */
    if (r->to > 0 && r->to < hi)
        hi = r->to;
    if (r->before > 0 && r->before < hi)
        hi = r->before;
    bv_stmt_t *s = bv_tx_prepare(tx, MOVEMENTS_SQL("DESC"));
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, r->acct_rid);
    bv_stmt_bind_int64(s, 2, r->from);
    bv_stmt_bind_int64(s, 3, hi);
    bv_stmt_bind_int64(s, 4, (int64_t)r->limit + 1); /* one more tells whether a next page exists */
    r->n_items = 0;
    r->next_cursor = 0;
    while ((rc = bv_stmt_step(s)) == BV_ROW) {
        if (r->n_items == r->limit) {
            r->next_cursor = r->items[r->n_items - 1].created_at;
            break;
        }
        movement_from_row(s, &r->items[r->n_items++]);
    }
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

int bv_ledger_movements(bv_ledger_t *lg, const char *account_id, int64_t from, int64_t to, int64_t before,
                        size_t limit, bv_ledger_movement_t *items, size_t *n_out, int64_t *next_cursor_out)
{
    bv_ledger_account_t acct;
    read_t r = {.key = account_id, .acct = &acct, .from = from, .to = to, .before = before, .limit = limit,
                .items = items};
    if (account_id == NULL || !bv_uuid_valid(account_id))
        return BV_ENOTFOUND;
    if (limit == 0 || limit > BV_LEDGER_PAGE_MAX)
        return BV_EINVALID;
    int rc = bv_store_run_tx(ledger_store(lg), 0, movements_fn, &r);
    if (rc == 0) {
        *n_out = r.n_items;
        *next_cursor_out = r.next_cursor;
    }
    return rc;
}

/* balance just after `at`: the balance_after of the last movement at or before it */
static int balance_before(bv_tx_t *tx, int64_t acct_rid, int64_t ts_exclusive, int64_t *out)
{
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT bal FROM (SELECT * FROM (SELECT posted_at AS ts, debit_balance_after AS bal "
                                     "FROM ledger_transfers WHERE debit = ?1 AND posted_at < ?2 ORDER BY posted_at DESC "
                                     "LIMIT 1) UNION ALL SELECT * FROM (SELECT posted_at, credit_balance_after FROM "
                                     "ledger_transfers WHERE credit = ?1 AND posted_at < ?2 ORDER BY posted_at DESC "
                                     "LIMIT 1)) ORDER BY ts DESC LIMIT 1");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, acct_rid);
    bv_stmt_bind_int64(s, 2, ts_exclusive);
    int rc = bv_stmt_step(s);
    *out = rc == BV_ROW ? bv_stmt_int64(s, 0) : 0;
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

static int balance_at_fn(bv_tx_t *tx, void *arg)
{
    read_t *r = arg;
    int rc = load_account(tx, r);
    if (rc != BV_ROW)
        return rc < 0 ? rc : BV_ENOTFOUND;
    return balance_before(tx, r->acct_rid, r->at == INT64_MAX ? INT64_MAX : r->at + 1, &r->balance);
}

int bv_ledger_balance_at(bv_ledger_t *lg, const char *account_id, int64_t at, bv_ledger_account_t *acct_out,
                         int64_t *balance_out)
{
    read_t r = {.key = account_id, .acct = acct_out, .at = at};
    if (account_id == NULL || !bv_uuid_valid(account_id))
        return BV_ENOTFOUND;
    int rc = bv_store_run_tx(ledger_store(lg), 0, balance_at_fn, &r);
    if (rc == 0)
        *balance_out = r.balance;
    return rc;
}

static int statement_fn(bv_tx_t *tx, void *arg)
{
    read_t *r = arg;
    bv_ledger_statement_t *st = r->stmt;
    int rc = load_account(tx, r);
    size_t cap = 0;
    if (rc != BV_ROW)
        return rc < 0 ? rc : BV_ENOTFOUND;
    free(st->items);
    st->items = NULL;
    st->n_items = 0;
    st->total_credits = st->total_debits = 0;
    if ((rc = balance_before(tx, r->acct_rid, r->from, &st->opening)) != 0)
        return rc;
    bv_stmt_t *s = bv_tx_prepare(tx, MOVEMENTS_SQL("ASC"));
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, r->acct_rid);
    bv_stmt_bind_int64(s, 2, r->from);
    bv_stmt_bind_int64(s, 3, r->to);
    bv_stmt_bind_int64(s, 4, BV_LEDGER_STATEMENT_MAX + 1);
    st->closing = st->opening;
    while ((rc = bv_stmt_step(s)) == BV_ROW) {
        if (st->n_items == BV_LEDGER_STATEMENT_MAX) {
            rc = BV_ETOOLARGE;
            break;
        }
        if (st->n_items == cap) {
            cap = cap ? cap * 2 : 64;
            bv_ledger_movement_t *n = realloc(st->items, cap * sizeof(*n));
            if (n == NULL) {
                rc = BV_ENOMEM;
                break;
            }
            st->items = n;
        }
        bv_ledger_movement_t *m = &st->items[st->n_items++];
        movement_from_row(s, m);
        /* totals never overflow silently: balances themselves are int64, and the checks
         * below only matter for absurd ranges */
        if (m->amount > 0)
            st->total_credits = (st->total_credits > INT64_MAX - m->amount) ? INT64_MAX : st->total_credits + m->amount;
        else
            st->total_debits = (st->total_debits > INT64_MAX + m->amount) ? INT64_MAX : st->total_debits - m->amount;
        st->closing = m->balance_after;
    }
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

int bv_ledger_statement(bv_ledger_t *lg, const char *account_id, int64_t from, int64_t to,
                        bv_ledger_statement_t *out)
{
    memset(out, 0, sizeof(*out));
    read_t r = {.key = account_id, .acct = &out->account, .from = from, .to = to, .stmt = out};
    if (account_id == NULL || !bv_uuid_valid(account_id))
        return BV_ENOTFOUND;
    if (from >= to)
        return BV_EINVALID;
    out->from = from;
    out->to = to;
    int rc = bv_store_run_tx(ledger_store(lg), 0, statement_fn, &r);
    if (rc != 0)
        bv_ledger_statement_free(out);
    return rc;
}

void bv_ledger_statement_free(bv_ledger_statement_t *s)
{
    if (s == NULL)
        return;
    free(s->items);
    s->items = NULL;
    s->n_items = 0;
}
