/* The ledger engine: accounts, transfers and every rejection (balances unchanged), holds
 * (expiry, partial post, void), reversals at most once, batches linked and unlinked,
 * idempotency replay and conflict, movements, balances at a time, statements, audit and
 * outbox rows, asynchronous transfers, and verify detecting a balance corrupted directly in
 * the database. */
#include <stdatomic.h>
#include <unistd.h>

#include "helpers.h"

typedef struct {
    fx_t *f;
    char bank[BV_UUID_STR_LEN + 1]; /* internal, may go negative: funds the others */
    char a[BV_UUID_STR_LEN + 1];    /* checking USD, funded with 1000.00 */
    char b[BV_UUID_STR_LEN + 1];    /* checking USD, empty */
    char eur[BV_UUID_STR_LEN + 1];  /* checking EUR */
} world_t;

static int setup(void **state)
{
    world_t *w = calloc(1, sizeof(*w));
    w->f = fx_open();
    fx_account(w->f, "internal", "USD", 0, true, w->bank);
    fx_account(w->f, "checking", "USD", 0, false, w->a);
    fx_account(w->f, "checking", "USD", 0, false, w->b);
    fx_account(w->f, "checking", "EUR", 0, false, w->eur);
    assert_int_equal(fx_transfer(w->f, w->bank, w->a, 100000, "USD", "fund-a", NULL), 0);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world_t *w = *state;
    fx_close(w->f);
    free(w);
    return 0;
}

static void assert_balances(world_t *w, int64_t bank, int64_t a, int64_t b)
{
    assert_true(fx_balance(w->f, w->bank) == bank);
    assert_true(fx_balance(w->f, w->a) == a);
    assert_true(fx_balance(w->f, w->b) == b);
}

/* ---- accounts ---- */

static void test_account_open(void **state)
{
    world_t *w = *state;
    bv_ledger_account_t a;
    assert_int_equal(bv_ledger_account_get(w->f->lg, w->a, &a), 0);
    assert_string_equal(a.id, w->a);
    assert_int_equal(a.id[14], '7');
    assert_true(bv_ledger_number_valid(a.number));
    assert_string_equal(a.type, "checking");
    assert_string_equal(a.currency, "USD");
    assert_string_equal(a.status, "active");
    assert_string_equal(a.holder_name, "Test Holder");
    assert_int_equal(a.exponent, 2);
    assert_true(a.balance == 100000 && a.available == 100000 && a.holds == 0);
    assert_int_equal(bv_ledger_account_get(w->f->lg, "01900000-0000-7000-8000-000000000000", &a), BV_ENOTFOUND);
    assert_int_equal(bv_ledger_account_get(w->f->lg, "not-a-uuid", &a), BV_ENOTFOUND);
}

static void test_account_rejections(void **state)
{
    world_t *w = *state;
    bv_ledger_account_t a;
    bv_ledger_account_req_t bad[] = {
        {.type = "loan", .currency = "USD", .holder_name = "x"},
        {.type = "checking", .currency = "XXX", .holder_name = "x"},
        {.type = "checking", .currency = "USD", .holder_name = ""},
        {.type = "checking", .currency = "USD", .holder_name = "x", .allow_negative = true},
        {.type = "savings", .currency = "USD", .holder_name = "x", .overdraft_limit = -1},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(bv_ledger_account_create(w->f->lg, &fx_ctx, &bad[i], &a, NULL), BV_EINVALID);
}

static void test_account_idempotent_open(void **state)
{
    world_t *w = *state;
    bv_ledger_account_t a1, a2, a3;
    bool replayed = true;
    bv_ledger_account_req_t r = {.type = "wallet", .currency = "JPY", .holder_name = "Card 1", .idem_key = "open-1"};
    assert_int_equal(bv_ledger_account_create(w->f->lg, &fx_ctx, &r, &a1, &replayed), 0);
    assert_false(replayed);
    assert_int_equal(bv_ledger_account_create(w->f->lg, &fx_ctx, &r, &a2, &replayed), 0);
    assert_true(replayed);
    assert_string_equal(a1.id, a2.id);
    assert_string_equal(a1.number, a2.number);
    r.holder_name = "Card 2";
    assert_int_equal(bv_ledger_account_create(w->f->lg, &fx_ctx, &r, &a3, &replayed), BV_EIDEMPOTENCY);
    assert_int_equal(fx_count(w->f, "SELECT COUNT(*) FROM ledger_accounts WHERE creation_key = 'open-1'"), 1);
}

/* ---- transfers and rejections ---- */

static void test_transfer_posts_both_sides(void **state)
{
    world_t *w = *state;
    bv_ledger_result_t r;
    assert_int_equal(fx_transfer(w->f, w->a, w->b, 2550, "USD", "t1", &r), 0);
    assert_false(r.replayed);
    assert_string_equal(r.transfer.status, "posted");
    assert_true(r.transfer.amount == 2550 && r.transfer.posted_amount == 2550);
    assert_string_equal(r.transfer.debit_account, w->a);
    assert_string_equal(r.transfer.credit_account, w->b);
    assert_balances(w, -100000, 97450, 2550);
    bv_ledger_transfer_t t;
    assert_int_equal(bv_ledger_transfer_get(w->f->lg, r.transfer.id, &t), 0);
    assert_string_equal(t.reference, "t1");
    assert_int_equal(bv_ledger_transfer_by_reference(w->f->lg, "t1", &t), 0);
    assert_string_equal(t.id, r.transfer.id);
    /* audit record and outbox event in the same commit */
    assert_int_equal(fx_count(w->f, "SELECT COUNT(*) FROM audit_log WHERE action = 'ledger.transfer.posted'"), 2);
    assert_int_equal(fx_count(w->f, "SELECT COUNT(*) FROM outbox WHERE topic = 'ledger' AND "
                                    "json_extract(payload, '$.event') = 'ledger.transfer.posted'"),
                     2);
    fx_assert_verified(w->f);
}

/* A movement's event says when none of its accounts belongs to a customer, so that the
 * movement notices' subscription never queues it. */
static void test_event_marks_movements_without_customers(void **state)
{
    world_t *w = *state;
    bv_ledger_account_t c;
    bv_ledger_account_req_t r = {.type = "checking", .currency = "USD", .holder_name = "Customer",
                                 .customer_id = "0190f0a0-0000-7000-8000-00000000c057"};
    assert_int_equal(bv_ledger_account_create(w->f->lg, &fx_ctx, &r, &c, NULL), 0);
    assert_int_equal(fx_transfer(w->f, w->a, w->b, 100, "USD", "internal-only", NULL), 0);
    assert_int_equal(fx_transfer(w->f, w->a, c.id, 100, "USD", "to-customer", NULL), 0);
    assert_int_equal(fx_transfer(w->f, c.id, w->b, 50, "USD", "from-customer", NULL), 0);
    assert_int_equal(fx_count(w->f, "SELECT COUNT(*) FROM outbox WHERE json_extract(payload, '$.event') = "
                                    "'ledger.transfer.posted' AND json_extract(attributes, '$.customers') = 'none'"),
                     fx_count(w->f, "SELECT COUNT(*) FROM ledger_transfers WHERE reference <> 'to-customer' AND "
                                    "reference <> 'from-customer' AND status = 'posted'"));
    assert_int_equal(fx_count(w->f, "SELECT COUNT(*) FROM outbox WHERE json_extract(attributes, '$.customers') IS "
                                    "NULL AND json_extract(payload, '$.event') = 'ledger.transfer.posted'"),
                     2);
}

static void test_rejections_leave_balances(void **state)
{
    world_t *w = *state;
    struct {
        const char *debit, *credit;
        int64_t amount;
        const char *currency;
        int rc;
    } cases[] = {
        {w->a, w->b, 100001, "USD", BV_EINSUFFICIENT_FUNDS},
        {w->a, w->a, 100, "USD", BV_ESAME_ACCOUNT},
        {w->a, w->eur, 100, "USD", BV_ECURRENCY_MISMATCH},
        {w->a, w->b, 100, "EUR", BV_ECURRENCY_MISMATCH},
        {w->a, w->b, 0, "USD", BV_EAMOUNT},
        {w->a, w->b, -5, "USD", BV_EAMOUNT},
        {w->a, "01900000-0000-7000-8000-000000000000", 100, "USD", BV_EUNKNOWN_ACCOUNT},
        {"garbage", w->b, 100, "USD", BV_EUNKNOWN_ACCOUNT},
        /* internal accounts may go negative down to INT64_MIN ... */
        {w->bank, w->b, INT64_MAX - 99999, "USD", 0},
        /* ... and no credit may overflow int64 */
        {w->a, w->b, 100000, "USD", BV_EAMOUNT},
    };
    int64_t bank = -100000, a = 100000, b = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char ref[32];
        bv_ledger_result_t r;
        snprintf(ref, sizeof(ref), "rej-%zu", i);
        assert_int_equal(fx_transfer(w->f, cases[i].debit, cases[i].credit, cases[i].amount, cases[i].currency, ref, &r),
                         cases[i].rc);
        if (cases[i].rc == 0) {
            bank -= cases[i].amount;
            b += cases[i].amount;
        } else {
            /* a rejected reference is not consumed */
            bv_ledger_transfer_t t;
            assert_int_equal(bv_ledger_transfer_by_reference(w->f->lg, ref, &t), BV_ENOTFOUND);
        }
        assert_balances(w, bank, a, b);
    }
    /* the overflow guard on the debit side of an allow_negative account (now at INT64_MIN) */
    assert_true(fx_balance(w->f, w->bank) == INT64_MIN);
    assert_int_equal(fx_transfer(w->f, w->bank, w->a, 1, "USD", "rej-underflow", NULL), BV_EAMOUNT);
    assert_balances(w, bank, a, b);
    fx_assert_verified(w->f);
}

static void test_frozen_and_closed(void **state)
{
    world_t *w = *state;
    bv_ledger_account_t acct;
    assert_int_equal(bv_ledger_account_set_status(w->f->lg, &fx_ctx, w->b, "frozen", &acct), 0);
    assert_string_equal(acct.status, "frozen");
    assert_int_equal(fx_transfer(w->f, w->a, w->b, 100, "USD", "fz-1", NULL), BV_EACCOUNT_FROZEN);
    assert_int_equal(fx_transfer(w->f, w->b, w->a, 100, "USD", "fz-2", NULL), BV_EACCOUNT_FROZEN);
    assert_int_equal(bv_ledger_account_set_status(w->f->lg, &fx_ctx, w->b, "active", &acct), 0);
    assert_int_equal(fx_transfer(w->f, w->a, w->b, 100, "USD", "fz-3", NULL), 0);
    /* closing needs a zero balance */
    assert_int_equal(bv_ledger_account_set_status(w->f->lg, &fx_ctx, w->b, "closed", &acct), BV_ECONFLICT);
    assert_int_equal(fx_transfer(w->f, w->b, w->a, 100, "USD", "fz-4", NULL), 0);
    assert_int_equal(bv_ledger_account_set_status(w->f->lg, &fx_ctx, w->b, "closed", &acct), 0);
    assert_int_equal(fx_transfer(w->f, w->a, w->b, 100, "USD", "fz-5", NULL), BV_EACCOUNT_CLOSED);
    assert_int_equal(bv_ledger_account_set_status(w->f->lg, &fx_ctx, w->b, "active", &acct), BV_EACCOUNT_CLOSED);
    assert_int_equal(bv_ledger_account_set_status(w->f->lg, &fx_ctx, w->b, "frozen", &acct), BV_EACCOUNT_CLOSED);
    assert_int_equal(bv_ledger_account_set_status(w->f->lg, &fx_ctx, w->a, "sleeping", &acct), BV_EINVALID);
    assert_balances(w, -100000, 100000, 0);
    fx_assert_verified(w->f);
}

static void test_overdraft_limit(void **state)
{
    world_t *w = *state;
    char od[BV_UUID_STR_LEN + 1];
    fx_account(w->f, "checking", "USD", 5000, false, od);
    assert_int_equal(fx_transfer(w->f, od, w->b, 5001, "USD", "od-1", NULL), BV_EINSUFFICIENT_FUNDS);
    assert_int_equal(fx_transfer(w->f, od, w->b, 5000, "USD", "od-2", NULL), 0);
    assert_true(fx_balance(w->f, od) == -5000);
    assert_int_equal(fx_transfer(w->f, od, w->b, 1, "USD", "od-3", NULL), BV_EINSUFFICIENT_FUNDS);
    fx_assert_verified(w->f);
}

/* ---- idempotency ---- */

static void test_idempotent_replay_and_conflict(void **state)
{
    world_t *w = *state;
    bv_ledger_result_t r1, r2;
    assert_int_equal(fx_transfer(w->f, w->a, w->b, 700, "USD", "idem-1", &r1), 0);
    assert_int_equal(fx_transfer(w->f, w->a, w->b, 700, "USD", "idem-1", &r2), 0);
    assert_true(r2.replayed);
    assert_string_equal(r1.transfer.id, r2.transfer.id);
    assert_true(r1.transfer.created_at == r2.transfer.created_at);
    assert_balances(w, -100000, 99300, 700); /* applied once */
    assert_int_equal(fx_transfer(w->f, w->a, w->b, 701, "USD", "idem-1", &r2), BV_EIDEMPOTENCY);
    assert_int_equal(fx_transfer(w->f, w->b, w->a, 700, "USD", "idem-1", &r2), BV_EIDEMPOTENCY);
    bv_ledger_transfer_req_t q = {.debit_account = w->a, .credit_account = w->b, .amount = 700, .currency = "USD",
                                  .reference = "idem-1", .description = "other text"};
    assert_int_equal(bv_ledger_transfer(w->f->lg, &fx_ctx, &q, &r2), BV_EIDEMPOTENCY);
    assert_balances(w, -100000, 99300, 700);
    assert_int_equal(fx_count(w->f, "SELECT COUNT(*) FROM ledger_transfers WHERE reference = 'idem-1'"), 1);

    /* a replay is a replay even when the same request would now be refused (b is empty) */
    assert_int_equal(fx_transfer(w->f, w->b, w->a, 700, "USD", "idem-drain", &r1), 0);
    assert_int_equal(fx_transfer(w->f, w->b, w->a, 700, "USD", "idem-drain", &r2), 0);
    assert_true(r2.replayed);
    assert_string_equal(r1.transfer.id, r2.transfer.id);
    assert_balances(w, -100000, 100000, 0);
    /* ...and a conflict when the content differs, refused or not */
    assert_int_equal(fx_transfer(w->f, w->b, w->a, 5, "USD", "idem-drain", &r2), BV_EIDEMPOTENCY);

    /* the same reference twice in one batch: applied once, then replayed or refused */
    bv_ledger_transfer_req_t twice[3] = {
        {.debit_account = w->a, .credit_account = w->b, .amount = 10, .currency = "USD", .reference = "idem-in"},
        {.debit_account = w->a, .credit_account = w->b, .amount = 10, .currency = "USD", .reference = "idem-in"},
        {.debit_account = w->a, .credit_account = w->b, .amount = 11, .currency = "USD", .reference = "idem-in"},
    };
    bv_ledger_result_t tr[3];
    assert_int_equal(bv_ledger_batch(w->f->lg, &fx_ctx, twice, 3, false, tr), 0);
    assert_int_equal(tr[0].rc, 0);
    assert_false(tr[0].replayed);
    assert_int_equal(tr[1].rc, 0);
    assert_true(tr[1].replayed);
    assert_string_equal(tr[0].transfer.id, tr[1].transfer.id);
    assert_int_equal(tr[2].rc, BV_EIDEMPOTENCY);
    assert_balances(w, -100000, 99990, 10);
    assert_int_equal(fx_count(w->f, "SELECT COUNT(*) FROM ledger_transfers WHERE reference = 'idem-in'"), 1);
    fx_assert_verified(w->f);
}

/* ---- holds ---- */

static void test_hold_post_partial(void **state)
{
    world_t *w = *state;
    bv_ledger_result_t r;
    bv_ledger_transfer_t t;
    assert_int_equal(fx_hold(w->f, w->a, w->b, 30000, "hold-1", 0, &r), 0);
    assert_string_equal(r.transfer.status, "pending");
    assert_true(fx_balance(w->f, w->a) == 100000 && fx_available(w->f, w->a) == 70000);
    /* reserved funds cannot be spent twice */
    assert_int_equal(fx_transfer(w->f, w->a, w->b, 70001, "USD", "hold-spend", NULL), BV_EINSUFFICIENT_FUNDS);
    assert_int_equal(bv_ledger_post(w->f->lg, &fx_ctx, r.transfer.id, 30001, NULL, &t), BV_EAMOUNT);
    assert_int_equal(bv_ledger_post(w->f->lg, &fx_ctx, r.transfer.id, 12000, "post-key", &t), 0);
    assert_string_equal(t.status, "posted");
    assert_true(t.posted_amount == 12000 && t.amount == 30000);
    assert_balances(w, -100000, 88000, 12000);
    assert_true(fx_available(w->f, w->a) == 88000); /* the rest of the hold is released */
    /* retry of the same post: same result; another post: refused */
    assert_int_equal(bv_ledger_post(w->f->lg, &fx_ctx, r.transfer.id, 12000, "post-key", &t), 0);
    assert_int_equal(bv_ledger_post(w->f->lg, &fx_ctx, r.transfer.id, 0, NULL, &t), BV_ETRANSFER_STATE);
    assert_int_equal(bv_ledger_void(w->f->lg, &fx_ctx, r.transfer.id, NULL, &t), BV_ETRANSFER_STATE);
    assert_balances(w, -100000, 88000, 12000);
    assert_int_equal(bv_ledger_post(w->f->lg, &fx_ctx, "01900000-0000-7000-8000-000000000000", 0, NULL, &t),
                     BV_ENOTFOUND);
    fx_assert_verified(w->f);
}

static void test_hold_post_full_and_void(void **state)
{
    world_t *w = *state;
    bv_ledger_result_t r1, r2;
    bv_ledger_transfer_t t;
    assert_int_equal(fx_hold(w->f, w->a, w->b, 1000, "hold-full", 0, &r1), 0);
    assert_int_equal(fx_hold(w->f, w->a, w->b, 2000, "hold-void", 0, &r2), 0);
    assert_true(fx_available(w->f, w->a) == 97000);
    assert_int_equal(bv_ledger_post(w->f->lg, &fx_ctx, r1.transfer.id, 0, NULL, &t), 0);
    assert_true(t.posted_amount == 1000);
    assert_int_equal(bv_ledger_void(w->f->lg, &fx_ctx, r2.transfer.id, NULL, &t), 0);
    assert_string_equal(t.status, "voided");
    assert_int_equal(bv_ledger_post(w->f->lg, &fx_ctx, r2.transfer.id, 0, NULL, &t), BV_ETRANSFER_STATE);
    assert_balances(w, -100000, 99000, 1000);
    assert_true(fx_available(w->f, w->a) == 99000);
    /* a hold is not a posted transfer: it cannot be reversed */
    bv_ledger_result_t r3;
    assert_int_equal(fx_hold(w->f, w->a, w->b, 10, "hold-rev", 0, &r3), 0);
    assert_int_equal(bv_ledger_reverse(w->f->lg, &fx_ctx, r3.transfer.id, NULL, NULL, &t, NULL), BV_ETRANSFER_STATE);
    assert_int_equal(fx_count(w->f, "SELECT COUNT(*) FROM audit_log WHERE action LIKE 'ledger.hold.%'"), 5);
    fx_assert_verified(w->f);
}

static void test_hold_expiry(void **state)
{
    world_t *w = *state;
    bv_ledger_result_t r1, r2;
    bv_ledger_transfer_t t;
    int n = 0;
    int64_t soon = bv_now_us() + 150000;
    assert_int_equal(fx_hold(w->f, w->a, w->b, 60000, "exp-1", soon, &r1), 0);
    assert_int_equal(fx_hold(w->f, w->a, w->b, 100, "exp-past", bv_now_us() - 1, &r2), BV_EEXPIRED);
    assert_true(fx_available(w->f, w->a) == 40000);
    usleep(200000);
    /* reads see it expired before anything recorded it */
    assert_int_equal(bv_ledger_transfer_get(w->f->lg, r1.transfer.id, &t), 0);
    assert_string_equal(t.status, "expired");
    assert_true(fx_available(w->f, w->a) == 100000);
    /* touching it records the expiry and refuses the post */
    assert_int_equal(bv_ledger_post(w->f->lg, &fx_ctx, r1.transfer.id, 0, NULL, &t), BV_EEXPIRED);
    assert_int_equal(fx_count(w->f, "SELECT COUNT(*) FROM ledger_transfers WHERE status = 'expired'"), 1);
    assert_int_equal(bv_ledger_void(w->f->lg, &fx_ctx, r1.transfer.id, NULL, &t), BV_EEXPIRED);

    /* lazy expiry on a debit that needs the released funds, and the sweeper */
    assert_int_equal(fx_hold(w->f, w->a, w->b, 90000, "exp-2", bv_now_us() + 100000, &r1), 0);
    assert_int_equal(fx_hold(w->f, w->bank, w->b, 5, "exp-3", bv_now_us() + 100000, &r2), 0);
    usleep(150000);
    assert_int_equal(fx_transfer(w->f, w->a, w->b, 95000, "USD", "after-expiry", NULL), 0);
    assert_int_equal(bv_ledger_expire_due(w->f->lg, &n), 0);
    assert_int_equal(n, 1); /* exp-3: exp-2 was expired by the debit */
    assert_int_equal(fx_count(w->f, "SELECT COUNT(*) FROM ledger_transfers WHERE status = 'expired'"), 3);
    assert_int_equal(fx_count(w->f, "SELECT COUNT(*) FROM outbox WHERE json_extract(payload, '$.event') = "
                                    "'ledger.hold.expired'"),
                     3);
    assert_balances(w, -100000, 5000, 95000);
    fx_assert_verified(w->f);
}

static void test_sweeper_thread_expires(void **state)
{
    world_t *w = *state;
    bv_ledger_result_t r;
    /* a second engine on the same store with the sweeper on: close the first one */
    bv_ledger_close(w->f->lg);
    bv_ledger_options_t opt = {.sweeper = true, .sweep_interval_ms = 50};
    assert_int_equal(bv_ledger_open(w->f->st, &opt, &w->f->lg), 0);
    assert_int_equal(fx_hold(w->f, w->a, w->b, 500, "sweep-1", bv_now_us() + 50000, &r), 0);
    for (int i = 0; i < 100 && fx_count(w->f, "SELECT COUNT(*) FROM ledger_transfers WHERE status = 'expired'") == 0; i++)
        usleep(20000);
    assert_int_equal(fx_count(w->f, "SELECT COUNT(*) FROM ledger_transfers WHERE status = 'expired'"), 1);
    assert_int_equal(fx_count(w->f, "SELECT COUNT(*) FROM ledger_accounts WHERE holds != 0"), 0);
    fx_assert_verified(w->f);
}

/* ---- reversals ---- */

static void test_reversal_once(void **state)
{
    world_t *w = *state;
    bv_ledger_result_t r;
    bv_ledger_transfer_t rev, again, orig;
    bool replayed = true;
    assert_int_equal(fx_transfer(w->f, w->a, w->b, 4000, "USD", "to-reverse", &r), 0);
    assert_int_equal(bv_ledger_reverse(w->f->lg, &fx_ctx, r.transfer.id, "rev-key", NULL, &rev, &replayed), 0);
    assert_false(replayed);
    assert_string_equal(rev.reverses, r.transfer.id);
    assert_string_equal(rev.debit_account, w->b);
    assert_string_equal(rev.credit_account, w->a);
    assert_true(rev.amount == 4000);
    assert_balances(w, -100000, 100000, 0);
    assert_int_equal(bv_ledger_transfer_get(w->f->lg, r.transfer.id, &orig), 0);
    assert_string_equal(orig.reversed_by, rev.id);
    /* the same call again returns the same reversal; any other is refused */
    assert_int_equal(bv_ledger_reverse(w->f->lg, &fx_ctx, r.transfer.id, "rev-key", NULL, &again, &replayed), 0);
    assert_true(replayed);
    assert_string_equal(again.id, rev.id);
    assert_int_equal(bv_ledger_reverse(w->f->lg, &fx_ctx, r.transfer.id, NULL, NULL, &again, NULL),
                     BV_EALREADY_REVERSED);
    assert_int_equal(bv_ledger_reverse(w->f->lg, &fx_ctx, r.transfer.id, "other-key", NULL, &again, NULL),
                     BV_EALREADY_REVERSED);
    assert_balances(w, -100000, 100000, 0);
    /* a reversal needs funds like any transfer */
    assert_int_equal(fx_transfer(w->f, w->a, w->b, 500, "USD", "spent", &r), 0);
    assert_int_equal(fx_transfer(w->f, w->b, w->a, 500, "USD", "spent-back", NULL), 0);
    assert_int_equal(bv_ledger_reverse(w->f->lg, &fx_ctx, r.transfer.id, NULL, NULL, &again, NULL),
                     BV_EINSUFFICIENT_FUNDS);
    assert_int_equal(fx_count(w->f, "SELECT COUNT(*) FROM ledger_transfers WHERE reverses IS NOT NULL"), 1);
    fx_assert_verified(w->f);
}

/* ---- batches ---- */

static void test_batch_unlinked(void **state)
{
    world_t *w = *state;
    bv_ledger_transfer_req_t reqs[4] = {
        {.debit_account = w->a, .credit_account = w->b, .amount = 100, .currency = "USD", .reference = "bu-1"},
        {.debit_account = w->b, .credit_account = w->a, .amount = 5000, .currency = "USD", .reference = "bu-2"},
        {.debit_account = w->a, .credit_account = w->b, .amount = 200, .currency = "USD", .reference = "bu-3"},
        /* in order: b now has 300, so this one fits */
        {.debit_account = w->b, .credit_account = w->a, .amount = 300, .currency = "USD", .reference = "bu-4"},
    };
    bv_ledger_result_t res[4];
    assert_int_equal(bv_ledger_batch(w->f->lg, &fx_ctx, reqs, 4, false, res), 0);
    assert_int_equal(res[0].rc, 0);
    assert_int_equal(res[1].rc, BV_EINSUFFICIENT_FUNDS);
    assert_int_equal(res[2].rc, 0);
    assert_int_equal(res[3].rc, 0);
    assert_balances(w, -100000, 100000, 0);
    assert_int_equal(fx_count(w->f, "SELECT COUNT(*) FROM ledger_transfers WHERE reference LIKE 'bu-%'"), 3);
    assert_int_equal(bv_ledger_batch(w->f->lg, &fx_ctx, reqs, 0, false, res), BV_EINVALID);
    assert_int_equal(bv_ledger_batch(w->f->lg, &fx_ctx, reqs, BV_LEDGER_BATCH_MAX + 1, false, res), BV_EINVALID);
    fx_assert_verified(w->f);
}

static void test_batch_linked_all_or_nothing(void **state)
{
    world_t *w = *state;
    bv_ledger_transfer_req_t reqs[3] = {
        {.debit_account = w->a, .credit_account = w->b, .amount = 100, .currency = "USD", .reference = "bl-1"},
        {.debit_account = w->b, .credit_account = w->a, .amount = 50, .currency = "USD", .reference = "bl-2"},
        {.debit_account = w->b, .credit_account = w->a, .amount = 51, .currency = "USD", .reference = "bl-3"},
    };
    bv_ledger_result_t res[3];
    assert_int_equal(bv_ledger_batch(w->f->lg, &fx_ctx, reqs, 3, true, res), 0);
    assert_int_equal(res[0].rc, BV_ELINKED_FAILED);
    assert_int_equal(res[1].rc, BV_ELINKED_FAILED);
    assert_int_equal(res[2].rc, BV_EINSUFFICIENT_FUNDS);
    assert_balances(w, -100000, 100000, 0);
    assert_int_equal(fx_count(w->f, "SELECT COUNT(*) FROM ledger_transfers WHERE reference LIKE 'bl-%'"), 0);
    assert_int_equal(fx_count(w->f, "SELECT COUNT(*) FROM ledger_transfers WHERE posted_at IS NOT NULL"), 1);
    /* the in-memory balances were rolled back too: the next transfers see the right state */
    assert_int_equal(fx_transfer(w->f, w->b, w->a, 1, "USD", "bl-after", NULL), BV_EINSUFFICIENT_FUNDS);
    reqs[2].amount = 50;
    assert_int_equal(bv_ledger_batch(w->f->lg, &fx_ctx, reqs, 3, true, res), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(res[i].rc, 0);
    assert_balances(w, -100000, 100000, 0);
    /* a replay of the whole linked batch returns the same transfers */
    bv_ledger_result_t again[3];
    assert_int_equal(bv_ledger_batch(w->f->lg, &fx_ctx, reqs, 3, true, again), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(again[i].rc, 0);
        assert_true(again[i].replayed);
        assert_string_equal(again[i].transfer.id, res[i].transfer.id);
    }
    fx_assert_verified(w->f);
    /* the overlay matches the database after a reload */
    fx_reopen_engine(w->f);
    assert_int_equal(fx_transfer(w->f, w->a, w->b, 100000, "USD", "bl-all", NULL), 0);
    assert_int_equal(fx_transfer(w->f, w->a, w->b, 1, "USD", "bl-none", NULL), BV_EINSUFFICIENT_FUNDS);
    fx_assert_verified(w->f);
}

static void test_batch_max_size(void **state)
{
    world_t *w = *state;
    size_t n = BV_LEDGER_BATCH_MAX;
    bv_ledger_transfer_req_t *reqs = calloc(n, sizeof(*reqs));
    bv_ledger_result_t *res = calloc(n, sizeof(*res));
    char (*refs)[24] = calloc(n, 24);
    for (size_t i = 0; i < n; i++) {
        snprintf(refs[i], 24, "big-%zu", i);
        reqs[i] = (bv_ledger_transfer_req_t){.debit_account = w->a, .credit_account = w->b, .amount = 1,
                                             .currency = "USD", .reference = refs[i]};
    }
    assert_int_equal(bv_ledger_batch(w->f->lg, &fx_ctx, reqs, n, true, res), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(res[i].rc, 0);
    assert_balances(w, -100000, 100000 - (int64_t)n, (int64_t)n);
    assert_int_equal(fx_count(w->f, "SELECT COUNT(*) FROM ledger_transfers t JOIN ledger_accounts a ON "
                                    "a.rid = t.credit WHERE a.balance = 8190 AND t.posted_at IS NOT NULL"),
                     (int64_t)n);
    /* one commit: the posting times are strictly increasing in batch order */
    assert_int_equal(fx_count(w->f, "SELECT COUNT(*) FROM ledger_transfers a JOIN ledger_transfers b ON "
                                    "b.rid = a.rid + 1 WHERE a.reference LIKE 'big-%' AND b.posted_at <= a.posted_at"),
                     0);
    free(reqs);
    free(res);
    free(refs);
    fx_assert_verified(w->f);
}

/* ---- movements, balance at, statements ---- */

static void test_movements_and_statement(void **state)
{
    world_t *w = *state;
    bv_ledger_movement_t items[10];
    size_t n = 0;
    int64_t next = 0, t_mid;
    assert_int_equal(fx_transfer(w->f, w->a, w->b, 100, "USD", "mv-1", NULL), 0);
    assert_int_equal(fx_transfer(w->f, w->a, w->b, 200, "USD", "mv-2", NULL), 0);
    t_mid = bv_now_us();
    usleep(2000);
    assert_int_equal(fx_transfer(w->f, w->b, w->a, 50, "USD", "mv-3", NULL), 0);
    assert_int_equal(fx_transfer(w->f, w->a, w->b, 300, "USD", "mv-4", NULL), 0);

    /* newest first, two per page, cursor to the next page */
    assert_int_equal(bv_ledger_movements(w->f->lg, w->b, 0, 0, 0, 2, items, &n, &next), 0);
    assert_int_equal(n, 2);
    assert_true(items[0].amount == 300 && items[0].balance_after == 550);
    assert_true(items[1].amount == -50 && items[1].balance_after == 250);
    assert_string_equal(items[1].counterparty_id, w->a);
    assert_true(bv_ledger_number_valid(items[1].counterparty_number));
    assert_string_equal(items[1].counterparty_name, "Test Holder");
    assert_string_equal(items[0].description, "test");
    assert_true(next > 0);
    assert_int_equal(bv_ledger_movements(w->f->lg, w->b, 0, 0, next, 2, items, &n, &next), 0);
    assert_int_equal(n, 2);
    assert_true(items[0].amount == 200 && items[1].amount == 100);
    assert_true(next == 0); /* the last page */
    /* time range */
    assert_int_equal(bv_ledger_movements(w->f->lg, w->b, t_mid, 0, 0, 10, items, &n, &next), 0);
    assert_int_equal(n, 2);
    assert_int_equal(bv_ledger_movements(w->f->lg, w->b, 0, t_mid, 0, 10, items, &n, &next), 0);
    assert_int_equal(n, 2);
    assert_int_equal(bv_ledger_movements(w->f->lg, "01900000-0000-7000-8000-000000000000", 0, 0, 0, 10, items, &n,
                                         &next),
                     BV_ENOTFOUND);

    /* balance at a point in time */
    bv_ledger_account_t acct;
    int64_t bal = -1;
    assert_int_equal(bv_ledger_balance_at(w->f->lg, w->b, t_mid, &acct, &bal), 0);
    assert_true(bal == 300);
    assert_int_equal(bv_ledger_balance_at(w->f->lg, w->b, 1, &acct, &bal), 0);
    assert_true(bal == 0);
    assert_int_equal(bv_ledger_balance_at(w->f->lg, w->b, bv_now_us(), &acct, &bal), 0);
    assert_true(bal == 550);

    /* statement: opening, movements oldest first, closing, totals */
    bv_ledger_statement_t st;
    assert_int_equal(bv_ledger_statement(w->f->lg, w->b, t_mid, bv_now_us() + 1, &st), 0);
    assert_true(st.opening == 300 && st.closing == 550);
    assert_int_equal(st.n_items, 2);
    assert_true(st.items[0].amount == -50 && st.items[1].amount == 300);
    assert_true(st.total_credits == 300 && st.total_debits == 50);
    bv_ledger_statement_free(&st);
    assert_int_equal(bv_ledger_statement(w->f->lg, w->b, 10, 5, &st), BV_EINVALID);
}

/* ---- asynchronous transfers ---- */

typedef struct {
    bv_ledger_transfer_req_t req;
    bv_ledger_result_t res;
    char ref[32];
    int rc;
    atomic_int calls;
} async_t;

static void async_done(int rc, void *arg)
{
    async_t *x = arg;
    x->rc = rc;
    atomic_fetch_add(&x->calls, 1);
}

/* bv_ledger_transfer_async answers each transfer once, with what the waiting call would
 * return, and bv_ledger_close answers every queued one before it returns. */
static void test_async_transfers(void **state)
{
    world_t *w = *state;
    enum { N = 300 };
    async_t *xs = calloc(N, sizeof(*xs));
    for (int i = 0; i < N; i++) {
        async_t *x = &xs[i];
        snprintf(x->ref, sizeof(x->ref), "async-%d", i % 250); /* the last 50 replay the first */
        /* a has 1000.00: every 7th asks for more than that and is refused */
        x->req = (bv_ledger_transfer_req_t){.debit_account = w->a, .credit_account = w->b,
                                            .amount = i % 7 == 6 && i < 250 ? 500000 : 100, .currency = "USD",
                                            .reference = x->ref};
        if (i >= 250)
            x->req.amount = xs[i - 250].req.amount;
        assert_int_equal(bv_ledger_transfer_async(w->f->lg, &fx_ctx, &x->req, &x->res, async_done, x), 0);
        if (i == 249) /* the replays come after the originals are answered */
            for (int k = 0; k < 250; k++)
                while (atomic_load(&xs[k].calls) == 0)
                    usleep(1000);
    }
    fx_reopen_engine(w->f); /* close: every queued transfer is answered first */
    int64_t moved = 0;
    for (int i = 0; i < N; i++) {
        async_t *x = &xs[i];
        assert_int_equal(atomic_load(&x->calls), 1);
        int want = x->req.amount == 500000 ? BV_EINSUFFICIENT_FUNDS : 0;
        assert_int_equal(x->rc, want);
        assert_int_equal(x->res.rc, want);
        if (want == 0 && i < 250) {
            assert_false(x->res.replayed);
            moved += 100;
        }
        if (want == 0 && i >= 250) {
            assert_true(x->res.replayed);
            assert_string_equal(x->res.transfer.id, xs[i - 250].res.transfer.id);
        }
    }
    assert_true(fx_balance(w->f, w->b) == moved);
    assert_true(fx_balance(w->f, w->a) == 100000 - moved);
    fx_assert_verified(w->f);
    free(xs);
}

/* ---- verify ---- */

static void test_verify_detects_corruption(void **state)
{
    world_t *w = *state;
    bv_ledger_check_t checks[BV_LEDGER_N_CHECKS];
    assert_int_equal(fx_transfer(w->f, w->a, w->b, 100, "USD", "v-1", NULL), 0);
    fx_assert_verified(w->f);
    /* a balance edited directly in the database */
    fx_sql(w->f, "UPDATE ledger_balances SET balance = balance + 1 WHERE account IN (SELECT rid FROM ledger_accounts "
                 "WHERE type = 'checking' AND currency = 'USD' AND balance = 100)");
    assert_int_equal(bv_ledger_verify(w->f->st, checks), BV_EINTEGRITY);
    bool zero_sum = true, matches = true;
    for (int i = 0; i < BV_LEDGER_N_CHECKS; i++) {
        if (strcmp(checks[i].name, "zero_sum") == 0)
            zero_sum = checks[i].ok;
        if (strcmp(checks[i].name, "balances_match_movements") == 0) {
            matches = checks[i].ok;
            assert_non_null(strstr(checks[i].detail, w->b)); /* names the account */
        }
    }
    assert_false(zero_sum);
    assert_false(matches);
    fx_sql(w->f, "UPDATE ledger_balances SET balance = balance - 1 WHERE balance = 101");
    fx_assert_verified(w->f);
    /* a balance_after that is not the running sum */
    fx_sql(w->f, "UPDATE ledger_transfers SET credit_balance_after = credit_balance_after + 1 WHERE reference = 'v-1'");
    assert_int_equal(bv_ledger_verify(w->f->st, checks), BV_EINTEGRITY);
    for (int i = 0; i < BV_LEDGER_N_CHECKS; i++)
        assert_true(checks[i].ok == (strcmp(checks[i].name, "running_balances") != 0));
    fx_sql(w->f, "UPDATE ledger_transfers SET credit_balance_after = credit_balance_after - 1 WHERE reference = 'v-1'");
    fx_assert_verified(w->f);
    /* a posted transfer that lost its posting, and a hold that moved money */
    fx_sql(w->f, "UPDATE ledger_transfers SET posted_at = NULL WHERE reference = 'v-1'");
    assert_int_equal(bv_ledger_verify(w->f->st, checks), BV_EINTEGRITY);
    for (int i = 0; i < BV_LEDGER_N_CHECKS; i++)
        if (strcmp(checks[i].name, "transfer_postings") == 0 || strcmp(checks[i].name, "zero_sum") == 0)
            assert_true(checks[i].ok == (strcmp(checks[i].name, "zero_sum") == 0));
    /* a transfer reversed twice (its unique index dropped behind the ledger's back) */
    fx_sql(w->f, "UPDATE ledger_transfers SET posted_at = (SELECT MAX(posted_at) + 1 FROM ledger_transfers) "
                 "WHERE reference = 'v-1'; DROP INDEX ledger_transfers_reverses");
    fx_sql(w->f, "INSERT INTO ledger_transfers(id, reference, debit, credit, currency, amount, status, created_at, "
                 "reverses) SELECT '01900000-0000-7000-8000-0000000000a' || CAST(n AS TEXT), 'dup-' || CAST(n AS TEXT), "
                 "debit, credit, currency, amount, 'voided', created_at, rid FROM ledger_transfers, "
                 "(SELECT 1 AS n UNION ALL SELECT 2) WHERE reference = 'v-1'");
    assert_int_equal(bv_ledger_verify(w->f->st, checks), BV_EINTEGRITY);
    for (int i = 0; i < BV_LEDGER_N_CHECKS; i++)
        if (strcmp(checks[i].name, "idempotency_keys_unique") == 0)
            assert_false(checks[i].ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_account_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_account_rejections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_account_idempotent_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transfer_posts_both_sides, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_marks_movements_without_customers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rejections_leave_balances, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frozen_and_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overdraft_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_replay_and_conflict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_post_partial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_post_full_and_void, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweeper_thread_expires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reversal_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_unlinked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_linked_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_max_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_movements_and_statement, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_transfers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_detects_corruption, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
