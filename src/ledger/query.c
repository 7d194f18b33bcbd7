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
    int64_t acct_rid, head; /* head: the account's newest movement */
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
    if (rc == BV_ROW) {
        ledger_acct_from_row(s, r->acct, &r->acct_rid);
        r->head = bv_stmt_int64(s, 13);
    }
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

/* ---- movement chains (see LEDGER_ANCHOR_EVERY) ----
 *
 * A walk visits one account's movements newest first by following the chain from the
 * newest movement before an upper bound. Each step is one primary-key read; the times must
 * strictly decrease along the chain, so a damaged chain ends the walk with BV_EINTEGRITY
 * instead of looping. */
typedef struct {
    bv_tx_t *tx;
    int64_t acct;           /* the account's rid */
    int64_t prev;           /* rid of the movement after m, newest first (0: none) */
    int64_t counterparty;   /* rid of the other account of m */
    bv_ledger_movement_t m; /* the current movement (counterparty filled by walk_counterparty) */
} walk_t;

static int broken_chain(const walk_t *w, int64_t rid)
{
    bv_log_error("ledger: broken movement chain", "\"account\":%lld,\"transfer\":%lld", (long long)w->acct,
                 (long long)rid);
    return BV_EINTEGRITY;
}

/* Reads movement `rid` of the walk's account into w->m. BV_ROW, or an error. */
static int walk_read(walk_t *w, int64_t rid)
{
    bv_stmt_t *s = bv_tx_prepare(w->tx, "SELECT posted_at, posted_amount, debit, credit, debit_prev, credit_prev, "
                                        "debit_balance_after, credit_balance_after, id, description "
                                        "FROM ledger_transfers WHERE rid = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, rid);
    int rc = bv_stmt_step(s);
    if (rc == BV_ROW) {
        bool debit = bv_stmt_int64(s, 2) == w->acct;
        if (bv_stmt_is_null(s, 0) || (!debit && bv_stmt_int64(s, 3) != w->acct)) {
            rc = BV_DONE;
        } else {
            int64_t ts = bv_stmt_int64(s, 0);
            if (w->m.created_at != 0 && ts >= w->m.created_at) {
                rc = BV_DONE; /* times must decrease along a chain */
            } else {
                memset(&w->m, 0, sizeof(w->m));
                w->m.created_at = ts;
                w->m.amount = debit ? -bv_stmt_int64(s, 1) : bv_stmt_int64(s, 1);
                w->counterparty = bv_stmt_int64(s, debit ? 3 : 2);
                w->prev = bv_stmt_int64(s, debit ? 4 : 5);
                w->m.balance_after = bv_stmt_int64(s, debit ? 6 : 7);
                ledger_strlcpy(w->m.transfer_id, bv_stmt_text(s, 8), sizeof(w->m.transfer_id));
                ledger_strlcpy(w->m.description, bv_stmt_text(s, 9), sizeof(w->m.description));
            }
        }
    }
    bv_stmt_reset(s);
    if (rc == BV_DONE)
        return broken_chain(w, rid);
    return rc;
}

/* Starts a walk of account acct (chain head `head`) at its newest movement posted before
 * `hi`: BV_ROW with it in w->m, BV_DONE when there is none, or an error. At most
 * LEDGER_ANCHOR_EVERY steps: from the first anchor at or after hi, else from the head. */
static int walk_start(walk_t *w, bv_tx_t *tx, int64_t acct, int64_t head, int64_t hi)
{
    memset(w, 0, sizeof(*w));
    w->tx = tx;
    w->acct = acct;
    int64_t rid = head;
    int rc;
    if (rid != 0 && hi != INT64_MAX) {
        bv_stmt_t *s = bv_tx_prepare(tx, "SELECT xfer FROM ledger_anchors WHERE account = ? AND posted_at >= ? "
                                         "ORDER BY posted_at LIMIT 1");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_int64(s, 1, acct);
        bv_stmt_bind_int64(s, 2, hi);
        if ((rc = bv_stmt_step(s)) == BV_ROW)
            rid = bv_stmt_int64(s, 0);
        bv_stmt_reset(s);
        if (rc < 0)
            return rc;
    }
    for (; rid != 0; rid = w->prev) {
        if ((rc = walk_read(w, rid)) != BV_ROW)
            return rc;
        if (w->m.created_at < hi)
            return BV_ROW;
    }
    return BV_DONE;
}

/* Moves the walk to the next older movement: BV_ROW, BV_DONE at the chain's end, or an error. */
static int walk_next(walk_t *w)
{
    return w->prev == 0 ? BV_DONE : walk_read(w, w->prev);
}

/* Fills the counterparty of w->m. 0 or an error. */
static int walk_counterparty(walk_t *w)
{
    bv_stmt_t *s = bv_tx_prepare(w->tx, "SELECT id, number, holder_name FROM ledger_account_info WHERE rid = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, w->counterparty);
    int rc = bv_stmt_step(s);
    if (rc == BV_ROW) {
        ledger_strlcpy(w->m.counterparty_id, bv_stmt_text(s, 0), sizeof(w->m.counterparty_id));
        ledger_strlcpy(w->m.counterparty_number, bv_stmt_text(s, 1), sizeof(w->m.counterparty_number));
        ledger_strlcpy(w->m.counterparty_name, bv_stmt_text(s, 2), sizeof(w->m.counterparty_name));
    }
    bv_stmt_reset(s);
    if (rc == BV_DONE)
        return broken_chain(w, 0);
    return rc < 0 ? rc : 0;
}

/* Newest first: "the last 4 movements" is the account row, 4 transfer rows and their
 * counterparties, all by primary key. */
static int movements_fn(bv_tx_t *tx, void *arg)
{
    read_t *r = arg;
    walk_t w;
    int rc = load_account(tx, r);
    if (rc != BV_ROW)
        return rc < 0 ? rc : BV_ENOTFOUND;
    int64_t hi = INT64_MAX; /* exclusive upper bound on ts */
    if (r->to > 0 && r->to < hi)
        hi = r->to;
    if (r->before > 0 && r->before < hi)
        hi = r->before;
    r->n_items = 0;
    r->next_cursor = 0;
    for (rc = walk_start(&w, tx, r->acct_rid, r->head, hi); rc == BV_ROW && w.m.created_at >= r->from;
         rc = walk_next(&w)) {
        if (r->n_items == r->limit) {
            r->next_cursor = r->items[r->n_items - 1].created_at;
            break;
        }
        if ((rc = walk_counterparty(&w)) != 0)
            return rc;
        r->items[r->n_items++] = w.m;
    }
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

static int balance_at_fn(bv_tx_t *tx, void *arg)
{
    read_t *r = arg;
    walk_t w;
    int rc = load_account(tx, r);
    if (rc != BV_ROW)
        return rc < 0 ? rc : BV_ENOTFOUND;
    /* the balance just after `at`: that of the last movement at or before it */
    rc = walk_start(&w, tx, r->acct_rid, r->head, r->at == INT64_MAX ? INT64_MAX : r->at + 1);
    r->balance = rc == BV_ROW ? w.m.balance_after : 0;
    return rc < 0 ? rc : 0;
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

/* One walk from the newest movement before `to` down to the first one before `from`, whose
 * balance is the opening balance; the items are then put oldest first. */
static int statement_fn(bv_tx_t *tx, void *arg)
{
    read_t *r = arg;
    bv_ledger_statement_t *st = r->stmt;
    walk_t w;
    int rc = load_account(tx, r);
    size_t cap = 0;
    if (rc != BV_ROW)
        return rc < 0 ? rc : BV_ENOTFOUND;
    free(st->items);
    st->items = NULL;
    st->n_items = 0;
    st->total_credits = st->total_debits = 0;
    st->opening = 0;
    for (rc = walk_start(&w, tx, r->acct_rid, r->head, r->to); rc == BV_ROW; rc = walk_next(&w)) {
        if (w.m.created_at < r->from) {
            st->opening = w.m.balance_after;
            break;
        }
        if (st->n_items == BV_LEDGER_STATEMENT_MAX)
            return BV_ETOOLARGE;
        if (st->n_items == cap) {
            cap = cap ? cap * 2 : 64;
            bv_ledger_movement_t *n = realloc(st->items, cap * sizeof(*n));
            if (n == NULL)
                return BV_ENOMEM;
            st->items = n;
        }
        if ((rc = walk_counterparty(&w)) != 0)
            return rc;
        bv_ledger_movement_t *m = &st->items[st->n_items++];
        *m = w.m;
        /* totals never overflow silently: balances themselves are int64, and the checks
         * below only matter for absurd ranges */
        if (m->amount > 0)
            st->total_credits = (st->total_credits > INT64_MAX - m->amount) ? INT64_MAX : st->total_credits + m->amount;
        else
            st->total_debits = (st->total_debits > INT64_MAX + m->amount) ? INT64_MAX : st->total_debits - m->amount;
    }
    if (rc < 0)
        return rc;
    st->closing = st->n_items > 0 ? st->items[0].balance_after : st->opening;
    for (size_t i = 0, j = st->n_items; j > i + 1; i++, j--) {
        bv_ledger_movement_t tmp = st->items[i];
        st->items[i] = st->items[j - 1];
        st->items[j - 1] = tmp;
    }
    return 0;
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
