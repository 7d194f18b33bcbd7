/* The ledger's invariants, checked against the committed database in one read snapshot
 * (`boveda admin ledger verify`). Each check is one query that returns the first
 * offenders; no rows means the invariant holds.
 *
 * A posted transfer is both of its postings (one row: -posted_amount on the debit account,
 * +posted_amount on the credit account), so "postings sum to zero" holds by construction
 * once the row is well formed; transfer_postings checks that form and the balance checks
 * check the amounts against the accounts. */
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "ledger/internal.h"

typedef struct {
    const char *name;
    const char *what; /* printed with the offenders */
    const char *sql;  /* rows: (text offender, text detail) */
} check_def_t;

static const check_def_t check_defs[BV_LEDGER_N_CHECKS] = {
    {"zero_sum", "the balances of a currency do not sum to zero",
     "SELECT currency, CAST(SUM(balance) AS TEXT) FROM ledger_accounts GROUP BY currency HAVING SUM(balance) != 0"},
    /* summed in time order: every prefix is a past balance, so it fits in int64 */
    {"balances_match_movements", "an account balance differs from the sum of its movements",
     "SELECT a.id, CAST(a.balance AS TEXT) FROM ledger_accounts a WHERE a.balance != COALESCE((SELECT SUM(x) FROM "
     "(SELECT * FROM (SELECT posted_at AS ts, posted_amount AS x FROM ledger_transfers WHERE credit = a.rid AND "
     "posted_at IS NOT NULL UNION ALL SELECT posted_at, -posted_amount FROM ledger_transfers WHERE debit = a.rid AND "
     "posted_at IS NOT NULL) ORDER BY ts)), 0) LIMIT 5"},
    {"running_balances", "a movement's balance_after is not the running sum of the account's movements",
     "SELECT (SELECT id FROM ledger_accounts WHERE rid = acct), 'at ' || CAST(ts AS TEXT) FROM (SELECT acct, ts, bal, "
     "SUM(amt) OVER (PARTITION BY acct ORDER BY ts) AS run FROM (SELECT debit AS acct, posted_at AS ts, "
     "-posted_amount AS amt, debit_balance_after AS bal FROM ledger_transfers WHERE posted_at IS NOT NULL UNION ALL "
     "SELECT credit, posted_at, posted_amount, credit_balance_after FROM ledger_transfers WHERE posted_at IS NOT "
     "NULL)) WHERE run IS NOT bal LIMIT 5"},
    {"holds_match_pending", "an account's holds differ from the sum of its pending transfers",
     "SELECT a.id, CAST(a.holds AS TEXT) FROM ledger_accounts a WHERE a.holds != COALESCE((SELECT SUM(t.amount) FROM "
     "ledger_transfers t WHERE t.debit = a.rid AND t.status = 'pending'), 0) LIMIT 5"},
    {"overdraft_limits", "an account is below minus its overdraft limit counting holds",
     "SELECT id, CAST(balance - holds AS TEXT) FROM ledger_accounts WHERE allow_negative = 0 AND balance - holds < "
     "-overdraft_limit LIMIT 5"},
    {"transfer_postings", "a transfer's postings do not balance or do not match its state",
     "SELECT id, status FROM ledger_transfers WHERE (status = 'posted' AND (posted_amount <= 0 OR posted_at IS NULL "
     "OR debit_balance_after IS NULL OR credit_balance_after IS NULL)) OR (status != 'posted' AND (posted_amount != 0 "
     "OR posted_at IS NOT NULL OR debit_balance_after IS NOT NULL OR credit_balance_after IS NOT NULL)) LIMIT 5"},
    {"idempotency_keys_unique", "an idempotency key or a reversal was applied more than once",
     "SELECT reference, CAST(COUNT(*) AS TEXT) FROM ledger_transfers GROUP BY reference HAVING COUNT(*) > 1 "
     "UNION ALL SELECT (SELECT id FROM ledger_transfers x WHERE x.rid = reverses), 'reversed ' || "
     "CAST(COUNT(*) AS TEXT) || ' times' FROM ledger_transfers WHERE reverses IS NOT NULL GROUP BY reverses "
     "HAVING COUNT(*) > 1 LIMIT 5"},
    {"transfers_consistent", "a transfer's currency or amounts do not fit its accounts",
     "SELECT t.id, t.currency FROM ledger_transfers t JOIN ledger_accounts d ON d.rid = t.debit JOIN ledger_accounts c "
     "ON c.rid = t.credit WHERE t.currency != d.currency OR t.currency != c.currency OR t.amount <= 0 OR "
     "t.posted_amount < 0 OR t.posted_amount > t.amount OR t.debit = t.credit LIMIT 5"},
};

typedef struct {
    bv_ledger_check_t *checks;
} verify_t;

static int verify_fn(bv_tx_t *tx, void *arg)
{
    verify_t *v = arg;
    for (int i = 0; i < BV_LEDGER_N_CHECKS; i++) {
        bv_ledger_check_t *c = &v->checks[i];
        size_t used = 0;
        int rc, n = 0;
        c->name = check_defs[i].name;
        c->ok = true;
        c->detail[0] = '\0';
        bv_stmt_t *s = bv_tx_prepare(tx, check_defs[i].sql);
        if (s == NULL)
            return BV_EIO;
        while ((rc = bv_stmt_step(s)) == BV_ROW) {
            const char *who = bv_stmt_text(s, 0), *what = bv_stmt_text(s, 1);
            if (n++ == 0)
                used = (size_t)snprintf(c->detail, sizeof(c->detail), "%s:", check_defs[i].what);
            if (used < sizeof(c->detail))
                used += (size_t)snprintf(c->detail + used, sizeof(c->detail) - used, " %s (%s)", who ? who : "?",
                                         what ? what : "?");
            c->ok = false;
        }
        bv_stmt_reset(s);
        if (rc < 0) {
            /* e.g. an integer overflow in SUM is itself a broken invariant */
            c->ok = false;
            snprintf(c->detail, sizeof(c->detail), "the check could not complete (%s)", bv_err_name(rc));
        }
    }
    return 0;
}

int bv_ledger_verify(bv_store_t *st, bv_ledger_check_t checks[BV_LEDGER_N_CHECKS])
{
    verify_t v = {.checks = checks};
    int rc = bv_store_run_tx(st, 0, verify_fn, &v);
    if (rc != 0)
        return rc;
    for (int i = 0; i < BV_LEDGER_N_CHECKS; i++)
        if (!checks[i].ok)
            return BV_EINTEGRITY;
    return 0;
}
