/* The ledger's invariants, checked against the committed database in one read snapshot
 * (`boveda admin ledger verify`). Most checks are one query that returns the first
 * offenders (no rows: the invariant holds); the movement checks are one walk of every
 * account's chain (check_chains), one primary-key read per movement.
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
    /* the next three are checked by one walk of every account's movement chain (check_chains) */
    {"balances_match_movements", "an account balance differs from the sum of its movements", NULL},
    {"running_balances", "a movement's balance_after is not the running sum of the account's movements", NULL},
    {"movement_chains", "an account's movement chain does not list exactly its posted transfers, newest first",
     NULL},
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

static bv_ledger_check_t *check_named(verify_t *v, const char *name)
{
    for (int i = 0; i < BV_LEDGER_N_CHECKS; i++)
        if (strcmp(check_defs[i].name, name) == 0)
            return &v->checks[i];
    return NULL;
}

/* Marks c failed with one more offender (the first few fit in its detail). */
static void add_offender(bv_ledger_check_t *c, const char *who, const char *what)
{
    size_t used = strlen(c->detail);
    if (c->ok) {
        for (int i = 0; i < BV_LEDGER_N_CHECKS; i++)
            if (strcmp(check_defs[i].name, c->name) == 0)
                used = (size_t)snprintf(c->detail, sizeof(c->detail), "%s:", check_defs[i].what);
        c->ok = false;
    }
    if (used < sizeof(c->detail))
        snprintf(c->detail + used, sizeof(c->detail) - used, " %s (%s)", who ? who : "?", what ? what : "?");
}

/* Walks each account's chain from its newest movement. Each step must be a posted transfer
 * of the account, older than the one before; the chain must have `movements` steps, the
 * amounts must sum to the balance and each balance_after must be the one before it plus its
 * amount (0 before the first). Every chain lists a transfer at most once (the times
 * decrease) and only the account's own, so the chains together list every posted transfer
 * on both sides exactly when they have twice as many steps as there are posted transfers.
 * Anchors must name a movement of their account at its time. */
static int check_chains(bv_tx_t *tx, verify_t *v)
{
    bv_ledger_check_t *sums = check_named(v, "balances_match_movements"),
                      *running = check_named(v, "running_balances"), *chains = check_named(v, "movement_chains");
    int64_t steps = 0, posted = 0;
    int rc;
    bv_stmt_t *a = bv_tx_prepare(tx, "SELECT rid, id, balance, last_movement, movements FROM ledger_accounts ORDER BY rid");
    bv_stmt_t *t = bv_tx_prepare(tx, "SELECT posted_at, posted_amount, debit, credit, debit_prev, credit_prev, "
                                     "debit_balance_after, credit_balance_after FROM ledger_transfers WHERE rid = ?");
    if (a == NULL || t == NULL)
        return BV_EIO;
    while ((rc = bv_stmt_step(a)) == BV_ROW) {
        int64_t acct = bv_stmt_int64(a, 0), balance = bv_stmt_int64(a, 2), rid = bv_stmt_int64(a, 3);
        int64_t want = bv_stmt_int64(a, 4), n = 0, last_ts = INT64_MAX;
        __int128 sum = 0, older_balance = 0; /* what the next older movement must have left */
        bool running_ok = true, chain_ok = true, first = true;
        char who[BV_UUID_STR_LEN + 1];
        ledger_strlcpy(who, bv_stmt_text(a, 1), sizeof(who));
        while (rid != 0 && chain_ok) {
            bv_stmt_bind_int64(t, 1, rid);
            if ((rc = bv_stmt_step(t)) == BV_ROW) {
                bool debit = bv_stmt_int64(t, 2) == acct;
                int64_t ts = bv_stmt_int64(t, 0);
                if (bv_stmt_is_null(t, 0) || (!debit && bv_stmt_int64(t, 3) != acct) || ts >= last_ts || n >= want) {
                    chain_ok = false;
                } else {
                    int64_t amount = debit ? -bv_stmt_int64(t, 1) : bv_stmt_int64(t, 1);
                    int64_t after = bv_stmt_int64(t, debit ? 6 : 7);
                    if (!first && after != older_balance)
                        running_ok = false;
                    older_balance = (__int128)after - amount;
                    sum += amount;
                    first = false;
                    last_ts = ts;
                    n++;
                    rid = bv_stmt_int64(t, debit ? 4 : 5);
                }
            } else {
                chain_ok = false;
            }
            bv_stmt_reset(t);
            if (rc < 0) {
                bv_stmt_reset(a); /* no statement left running in the snapshot */
                return rc;
            }
        }
        if (!first && older_balance != 0)
            running_ok = false;
        if (!chain_ok || n != want)
            add_offender(chains, who, "chain");
        if (!running_ok)
            add_offender(running, who, "balance_after");
        if (sum != balance) {
            char b[32];
            snprintf(b, sizeof(b), "%lld", (long long)balance);
            add_offender(sums, who, b);
        }
        steps += n;
    }
    bv_stmt_reset(a);
    if (rc < 0)
        return rc;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT COUNT(*) FROM ledger_transfers WHERE posted_at IS NOT NULL");
    if (s == NULL)
        return BV_EIO;
    if ((rc = bv_stmt_step(s)) == BV_ROW)
        posted = bv_stmt_int64(s, 0);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    if (steps != 2 * posted) {
        char what[64];
        snprintf(what, sizeof(what), "%lld steps for %lld posted transfers", (long long)steps, (long long)posted);
        add_offender(chains, "ledger", what);
    }
    s = bv_tx_prepare(tx, "SELECT (SELECT id FROM ledger_account_info WHERE rid = n.account), 'anchor' FROM ledger_anchors n "
                          "LEFT JOIN ledger_transfers t ON t.rid = n.xfer WHERE t.rid IS NULL OR t.posted_at IS NOT "
                          "n.posted_at OR (t.debit != n.account AND t.credit != n.account) LIMIT 5");
    if (s == NULL)
        return BV_EIO;
    while ((rc = bv_stmt_step(s)) == BV_ROW)
        add_offender(chains, bv_stmt_text(s, 0), bv_stmt_text(s, 1));
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

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
        if (check_defs[i].sql == NULL)
            continue;
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
    return check_chains(tx, v);
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
