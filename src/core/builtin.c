/* The builtin adapter: the ledger engine of this process. Writes go through the engine
 * (bv_ledger_transfer), so only a process that owns the engine (`boveda serve`,
 * `boveda core`) may execute transfers with it; reads are the ledger's own, plus two
 * read-only queries of its accounts table the ledger has no call for (accounts of a
 * customer, an account by number). */
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "core/internal.h"

typedef struct {
    bv_ledger_t *lg;
    bv_store_t *st;
} builtin_t;

/* ---- account lists straight from the ledger's table (read-only) ---- */

#define ACCT_COLUMNS                                                                                         \
    "SELECT id, number, type, currency, status, holder_name, customer_id, overdraft_limit, allow_negative, " \
    "balance, holds, created_at FROM ledger_accounts "

static void copy_text(char *dst, const char *src, size_t n)
{
    size_t len = src == NULL ? 0 : strlen(src);
    if (len >= n)
        len = n - 1;
    if (len > 0)
        memcpy(dst, src, len);
    dst[len] = '\0';
}

static void account_from_row(bv_stmt_t *s, bv_ledger_account_t *a)
{
    memset(a, 0, sizeof(*a));
    copy_text(a->id, bv_stmt_text(s, 0), sizeof(a->id));
    copy_text(a->number, bv_stmt_text(s, 1), sizeof(a->number));
    copy_text(a->type, bv_stmt_text(s, 2), sizeof(a->type));
    copy_text(a->currency, bv_stmt_text(s, 3), sizeof(a->currency));
    a->exponent = bv_ledger_currency_exponent(a->currency);
    if (a->exponent < 0)
        a->exponent = 0;
    copy_text(a->status, bv_stmt_text(s, 4), sizeof(a->status));
    copy_text(a->holder_name, bv_stmt_text(s, 5), sizeof(a->holder_name));
    copy_text(a->customer_id, bv_stmt_text(s, 6), sizeof(a->customer_id));
    a->overdraft_limit = bv_stmt_int64(s, 7);
    a->allow_negative = bv_stmt_int64(s, 8) != 0;
    a->balance = bv_stmt_int64(s, 9);
    a->holds = bv_stmt_int64(s, 10);
    a->available = a->balance - a->holds;
    a->created_at = bv_stmt_int64(s, 11);
}

typedef struct {
    const char *key;
    bv_ledger_account_t *items;
    size_t n, cap;
} list_t;

#define CUSTOMER_ACCOUNTS_MAX 1000 /* a bound on one answer; no customer has that many */

static int customer_accounts_fn(bv_tx_t *tx, void *arg)
{
    list_t *l = arg;
    int rc;
    l->n = 0;
    /* rid grows with creation: oldest first; the partial index on customer_id serves it */
    bv_stmt_t *s = bv_tx_prepare(tx, ACCT_COLUMNS "WHERE customer_id = ? ORDER BY rid LIMIT 1000");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, l->key, -1);
    while ((rc = bv_stmt_step(s)) == BV_ROW) {
        if (l->n == l->cap) {
            size_t cap = l->cap == 0 ? 4 : l->cap * 2;
            bv_ledger_account_t *n = realloc(l->items, cap * sizeof(*n));
            if (n == NULL) {
                rc = BV_ENOMEM;
                break;
            }
            l->items = n;
            l->cap = cap;
        }
        account_from_row(s, &l->items[l->n++]);
    }
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

/* The stored `holds` column counts holds until the sweeper expires them; the ledger's read
 * shows live holds only. Re-read through the ledger any account with holds. */
static int refresh_holds(bv_ledger_t *lg, bv_ledger_account_t *a)
{
    if (a->holds == 0)
        return 0;
    return bv_ledger_account_get(lg, a->id, a);
}

int core_accounts_of_customer(bv_ledger_t *ledger, bv_store_t *store, const char *customer_id,
                              bv_ledger_account_t **items_out, size_t *n_out)
{
    list_t l = {.key = customer_id};
    int rc;
    *items_out = NULL;
    *n_out = 0;
    if (store == NULL)
        return BV_EUNAVAILABLE;
    if ((rc = bv_store_run_tx(store, 0, customer_accounts_fn, &l)) != 0)
        goto out;
    for (size_t i = 0; i < l.n; i++) {
        if ((rc = refresh_holds(ledger, &l.items[i])) != 0)
            goto out;
    }
    if (l.n > 0) {
        *items_out = l.items;
        *n_out = l.n;
        l.items = NULL;
    }
out:
    free(l.items);
    return rc;
}

typedef struct {
    const char *number;
    bv_ledger_account_t *out;
} by_number_t;

static int by_number_fn(bv_tx_t *tx, void *arg)
{
    by_number_t *r = arg;
    bv_stmt_t *s = bv_tx_prepare(tx, ACCT_COLUMNS "WHERE number = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, r->number, -1);
    int rc = bv_stmt_step(s);
    if (rc == BV_ROW)
        account_from_row(s, r->out);
    bv_stmt_reset(s);
    return rc == BV_ROW ? 0 : (rc < 0 ? rc : BV_ENOTFOUND);
}

int core_account_by_number(bv_ledger_t *ledger, bv_store_t *store, const char *number,
                           bv_ledger_account_t *out)
{
    by_number_t r = {.number = number, .out = out};
    if (store == NULL)
        return BV_EUNAVAILABLE;
    int rc = bv_store_run_tx(store, 0, by_number_fn, &r);
    return rc == 0 ? refresh_holds(ledger, out) : rc;
}

/* ---- the adapter ---- */

static int b_accounts_of(void *cls, const char *customer_id, bv_ledger_account_t **items_out, size_t *n_out)
{
    builtin_t *b = cls;
    return core_accounts_of_customer(b->lg, b->st, customer_id, items_out, n_out);
}

static int b_account_get(void *cls, const char *account_id, bv_ledger_account_t *out)
{
    builtin_t *b = cls;
    return bv_ledger_account_get(b->lg, account_id, out);
}

static int b_account_by_number(void *cls, const char *number, bv_ledger_account_t *out)
{
    builtin_t *b = cls;
    return core_account_by_number(b->lg, b->st, number, out);
}

static int b_movements(void *cls, const char *account_id, int64_t from, int64_t to, int64_t before,
                       size_t limit, bv_ledger_movement_t *items, size_t *n_out, int64_t *next_cursor_out)
{
    builtin_t *b = cls;
    bv_ledger_account_t a;
    /* the ledger answers an empty page for an unknown account: the port says not found */
    int rc = bv_ledger_account_get(b->lg, account_id, &a);
    if (rc != 0)
        return rc;
    return bv_ledger_movements(b->lg, account_id, from, to, before, limit, items, n_out, next_cursor_out);
}

static int b_statement(void *cls, const char *account_id, int64_t from, int64_t to,
                       bv_ledger_statement_t *out)
{
    builtin_t *b = cls;
    return bv_ledger_statement(b->lg, account_id, from, to, out);
}

static int b_execute(void *cls, const bv_core_transfer_req_t *req, bv_ledger_transfer_t *out,
                     bool *replayed_out)
{
    builtin_t *b = cls;
    bv_ledger_result_t res;
    bv_ledger_ctx_t ctx = {.actor = req->actor != NULL ? req->actor : "system",
                           .request_id = req->request_id};
    bv_ledger_transfer_req_t lr = {
        .debit_account = req->debit_account,
        .credit_account = req->credit_account,
        .amount = req->amount,
        .currency = req->currency,
        .reference = req->reference,
        .description = req->description,
    };
    memset(&res, 0, sizeof(res));
    int rc = bv_ledger_transfer(b->lg, &ctx, &lr, &res);
    if (rc != 0)
        return rc;
    *out = res.transfer;
    *replayed_out = res.replayed;
    return 0;
}

/* Every transfer in one ledger commit (not linked: each has its own outcome). */
static int b_execute_batch(void *cls, const bv_core_transfer_req_t *reqs, size_t n, bv_ledger_result_t *results)
{
    builtin_t *b = cls;
    bv_ledger_transfer_req_t *lr = calloc(n, sizeof(*lr));
    if (lr == NULL)
        return BV_ENOMEM;
    for (size_t i = 0; i < n; i++)
        lr[i] = (bv_ledger_transfer_req_t){
            .debit_account = reqs[i].debit_account,
            .credit_account = reqs[i].credit_account,
            .amount = reqs[i].amount,
            .currency = reqs[i].currency,
            .reference = reqs[i].reference,
            .description = reqs[i].description,
            .actor = reqs[i].actor,
        };
    bv_ledger_ctx_t ctx = {.actor = "system"};
    int rc = bv_ledger_batch(b->lg, &ctx, lr, n, false, results);
    free(lr);
    if (rc != 0) /* the store failed: the same answer for each */
        for (size_t i = 0; i < n; i++)
            results[i].rc = rc;
    return 0;
}

static int b_lookup(void *cls, const char *reference, bv_ledger_transfer_t *out)
{
    builtin_t *b = cls;
    return bv_ledger_transfer_by_reference(b->lg, reference, out);
}

static void b_close(void *cls)
{
    free(cls);
}

static const core_ops_t builtin_ops = {
    .name = "builtin",
    .accounts_of = b_accounts_of,
    .account_get = b_account_get,
    .account_by_number = b_account_by_number,
    .movements = b_movements,
    .statement = b_statement,
    .transfer_execute = b_execute,
    .transfer_lookup = b_lookup,
    .transfer_execute_batch = b_execute_batch,
    .close = b_close,
};

int core_builtin_open(bv_ledger_t *ledger, bv_store_t *store, bv_core_t **out)
{
    bv_core_t *c = NULL;
    builtin_t *b = NULL;
    *out = NULL;
    if (ledger == NULL)
        return BV_ECONFIG;
    if ((c = calloc(1, sizeof(*c))) == NULL || (b = calloc(1, sizeof(*b))) == NULL) {
        free(c);
        return BV_ENOMEM;
    }
    b->lg = ledger;
    b->st = store;
    c->ops = &builtin_ops;
    c->cls = b;
    *out = c;
    return 0;
}
