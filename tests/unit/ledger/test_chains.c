/* Movement history as per-account chains with anchors (migration 0031): histories longer
 * than several anchor spans read back exactly (pagination, points in time, statements),
 * holds posted later join the chain when posted, the chains survive an engine reload, verify
 * catches broken chains, and the migration backfills chains (and moves the balances to
 * their own table) of a ledger written before it. */
#include "helpers.h"
#include "store/migrations.h"

typedef struct {
    char id[BV_UUID_STR_LEN + 1];
    char counterparty[BV_UUID_STR_LEN + 1];
    int64_t ts, amount, balance;
} mv_t;

typedef struct {
    mv_t items[1024];
    int n;
    int64_t balance;
} model_t;

typedef struct {
    fx_t *f;
    char fund[BV_UUID_STR_LEN + 1], a[BV_UUID_STR_LEN + 1], b[BV_UUID_STR_LEN + 1];
    model_t ma, mb;
} world_t;

static int setup(void **state)
{
    world_t *w = calloc(1, sizeof(*w));
    w->f = fx_open();
    fx_account(w->f, "internal", "USD", 0, true, w->fund);
    fx_account(w->f, "checking", "USD", 0, false, w->a);
    fx_account(w->f, "checking", "USD", 0, false, w->b);
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

static void model_add(model_t *m, const char *xfer, const char *counterparty, int64_t ts, int64_t amount)
{
    assert_true(m->n < 1024);
    mv_t *x = &m->items[m->n++];
    memcpy(x->id, xfer, sizeof(x->id));
    memcpy(x->counterparty, counterparty, sizeof(x->counterparty));
    x->ts = ts;
    x->amount = amount;
    m->balance += amount;
    x->balance = m->balance;
}

/* a posted movement between the two accounts of w (or from the funding account) */
static void record(world_t *w, const bv_ledger_transfer_t *t, int64_t ts)
{
    int64_t amount = t->posted_amount;
    if (strcmp(t->debit_account, w->a) == 0)
        model_add(&w->ma, t->id, t->credit_account, ts, -amount);
    if (strcmp(t->credit_account, w->a) == 0)
        model_add(&w->ma, t->id, t->debit_account, ts, amount);
    if (strcmp(t->debit_account, w->b) == 0)
        model_add(&w->mb, t->id, t->credit_account, ts, -amount);
    if (strcmp(t->credit_account, w->b) == 0)
        model_add(&w->mb, t->id, t->debit_account, ts, amount);
}

static void assert_same(const bv_ledger_movement_t *m, const mv_t *x)
{
    assert_string_equal(m->transfer_id, x->id);
    assert_string_equal(m->counterparty_id, x->counterparty);
    assert_true(m->created_at == x->ts);
    assert_true(m->amount == x->amount);
    assert_true(m->balance_after == x->balance);
}

/* Everything a reader can ask of one account's history, against the model. */
static void check_history(fx_t *f, const char *acct, const model_t *m)
{
    bv_ledger_movement_t page[7];
    size_t n;
    int64_t cursor = 0;
    int seen = 0;
    /* every page, newest first, through the cursors */
    do {
        assert_int_equal(bv_ledger_movements(f->lg, acct, 0, 0, cursor, 7, page, &n, &cursor), 0);
        for (size_t i = 0; i < n; i++)
            assert_same(&page[i], &m->items[m->n - 1 - seen++]);
    } while (cursor != 0);
    assert_int_equal(seen, m->n);

    for (int j = 1; j < m->n; j += 13) {
        const mv_t *x = &m->items[j];
        bv_ledger_account_t acc;
        int64_t bal;
        /* points in time: at a movement, just before it */
        assert_int_equal(bv_ledger_balance_at(f->lg, acct, x->ts, &acc, &bal), 0);
        assert_true(bal == x->balance);
        assert_int_equal(bv_ledger_balance_at(f->lg, acct, x->ts - 1, &acc, &bal), 0);
        assert_true(bal == m->items[j - 1].balance);
        /* the newest 5 before it */
        assert_int_equal(bv_ledger_movements(f->lg, acct, 0, x->ts, 0, 5, page, &n, &cursor), 0);
        assert_int_equal(n, j < 5 ? (size_t)j : 5);
        for (size_t i = 0; i < n; i++)
            assert_same(&page[i], &m->items[j - 1 - (int)i]);
        /* a time range: [x, the 40th after it) */
        int k = j + 40 < m->n ? j + 40 : m->n - 1;
        bv_ledger_statement_t st;
        if (k == j)
            continue;
        assert_int_equal(bv_ledger_statement(f->lg, acct, x->ts, m->items[k].ts, &st), 0);
        assert_int_equal(st.n_items, (size_t)(k - j));
        assert_true(st.opening == m->items[j - 1].balance);
        assert_true(st.closing == m->items[k - 1].balance);
        for (size_t i = 0; i < st.n_items; i++)
            assert_same(&st.items[i], &m->items[j + (int)i]);
        bv_ledger_statement_free(&st);
        /* a range inside it with from: newest first down to x */
        assert_int_equal(bv_ledger_movements(f->lg, acct, x->ts, m->items[k].ts, 0, 7, page, &n, &cursor), 0);
        assert_int_equal(n, (size_t)(k - j < 7 ? k - j : 7));
        for (size_t i = 0; i < n; i++)
            assert_same(&page[i], &m->items[k - 1 - (int)i]);
    }
    /* before the first movement: nothing */
    bv_ledger_account_t acc;
    int64_t bal = -1;
    assert_int_equal(bv_ledger_balance_at(f->lg, acct, m->items[0].ts - 1, &acc, &bal), 0);
    assert_true(bal == 0);
}

static int64_t anchors_of(fx_t *f, const char *acct)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM ledger_anchors WHERE account = (SELECT rid FROM ledger_accounts "
                               "WHERE id = '%s')", acct);
    return fx_count(f, sql);
}

static void test_history_across_anchors(void **state)
{
    world_t *w = *state;
    bv_ledger_result_t res;
    bv_ledger_transfer_t t;
    char ref[32], held[BV_UUID_STR_LEN + 1] = "";
    assert_int_equal(fx_transfer(w->f, w->fund, w->a, 100000, "USD", "fund-a", &res), 0);
    record(w, &res.transfer, res.transfer.created_at);
    assert_int_equal(fx_transfer(w->f, w->fund, w->b, 100000, "USD", "fund-b", &res), 0);
    record(w, &res.transfer, res.transfer.created_at);
    for (int i = 0; i < 300; i++) {
        snprintf(ref, sizeof(ref), "c-%d", i);
        if (i % 10 == 3) { /* a hold, posted partially two steps later (other movements between) */
            assert_int_equal(fx_hold(w->f, w->a, w->b, 9, ref, 0, &res), 0);
            memcpy(held, res.transfer.id, sizeof(held));
        } else if (i % 10 == 5) {
            assert_int_equal(bv_ledger_post(w->f->lg, &fx_ctx, held, 6, NULL, &t), 0);
            record(w, &t, t.resolved_at);
        } else if (i % 10 == 7) { /* a hold voided: no movement */
            assert_int_equal(fx_hold(w->f, w->b, w->a, 4, ref, 0, &res), 0);
            assert_int_equal(bv_ledger_void(w->f->lg, &fx_ctx, res.transfer.id, NULL, &t), 0);
        } else {
            const char *d = i % 2 ? w->a : w->b, *c = i % 2 ? w->b : w->a;
            assert_int_equal(fx_transfer(w->f, d, c, i % 13 + 1, "USD", ref, &res), 0);
            record(w, &res.transfer, res.transfer.created_at);
        }
    }
    /* a replay and a refusal add nothing */
    assert_int_equal(fx_transfer(w->f, w->b, w->a, 1, "USD", "c-0", &res), 0);
    assert_true(res.replayed);
    assert_int_equal(fx_transfer(w->f, w->a, w->b, 1000000, "USD", "too-much", &res), BV_EINSUFFICIENT_FUNDS);
    assert_true(w->ma.n > 3 * LEDGER_ANCHOR_EVERY);
    check_history(w->f, w->a, &w->ma);
    check_history(w->f, w->b, &w->mb);
    assert_int_equal(anchors_of(w->f, w->a), (w->ma.n + LEDGER_ANCHOR_EVERY - 1) / LEDGER_ANCHOR_EVERY);
    assert_int_equal(anchors_of(w->f, w->b), (w->mb.n + LEDGER_ANCHOR_EVERY - 1) / LEDGER_ANCHOR_EVERY);
    fx_assert_verified(w->f);

    /* the chains continue after the engine reloads its accounts from the database */
    fx_reopen_engine(w->f);
    for (int i = 0; i < 70; i++) {
        snprintf(ref, sizeof(ref), "r-%d", i);
        assert_int_equal(fx_transfer(w->f, w->a, w->b, 1, "USD", ref, &res), 0);
        record(w, &res.transfer, res.transfer.created_at);
    }
    check_history(w->f, w->a, &w->ma);
    assert_int_equal(anchors_of(w->f, w->a), (w->ma.n + LEDGER_ANCHOR_EVERY - 1) / LEDGER_ANCHOR_EVERY);
    fx_assert_verified(w->f);
}

/* a linked batch that fails leaves the chains as they were */
static void test_failed_linked_batch_keeps_chains(void **state)
{
    world_t *w = *state;
    bv_ledger_result_t res[3];
    assert_int_equal(fx_transfer(w->f, w->fund, w->a, 100, "USD", "l-fund", &res[0]), 0);
    record(w, &res[0].transfer, res[0].transfer.created_at);
    bv_ledger_transfer_req_t reqs[3] = {
        {.debit_account = w->a, .credit_account = w->b, .amount = 10, .currency = "USD", .reference = "l-1"},
        {.debit_account = w->b, .credit_account = w->a, .amount = 5, .currency = "USD", .reference = "l-2"},
        {.debit_account = w->a, .credit_account = w->b, .amount = 1000, .currency = "USD", .reference = "l-3"},
    };
    assert_int_equal(bv_ledger_batch(w->f->lg, &fx_ctx, reqs, 3, true, res), 0);
    assert_int_equal(res[2].rc, BV_EINSUFFICIENT_FUNDS);
    assert_int_equal(fx_transfer(w->f, w->a, w->b, 7, "USD", "l-after", &res[0]), 0);
    record(w, &res[0].transfer, res[0].transfer.created_at);
    assert_int_equal(w->ma.n, 2);
    check_history(w->f, w->a, &w->ma);
    fx_assert_verified(w->f);
}

static bool check_ok(fx_t *f, const char *name)
{
    bv_ledger_check_t checks[BV_LEDGER_N_CHECKS];
    bv_ledger_verify(f->st, checks);
    for (int i = 0; i < BV_LEDGER_N_CHECKS; i++)
        if (strcmp(checks[i].name, name) == 0)
            return checks[i].ok;
    fail_msg("no check %s", name);
    return false;
}

static void test_verify_and_reads_detect_broken_chains(void **state)
{
    world_t *w = *state;
    bv_ledger_movement_t page[10];
    size_t n;
    int64_t cursor;
    assert_int_equal(fx_transfer(w->f, w->fund, w->a, 100, "USD", "k-0", NULL), 0);
    assert_int_equal(fx_transfer(w->f, w->a, w->b, 10, "USD", "k-1", NULL), 0);
    assert_int_equal(fx_transfer(w->f, w->a, w->b, 20, "USD", "k-2", NULL), 0);
    fx_assert_verified(w->f);
    assert_true(check_ok(w->f, "movement_chains"));

    /* a link skipping a movement: the chain is one short */
    fx_sql(w->f, "UPDATE ledger_transfers SET debit_prev = (SELECT rid FROM ledger_transfers WHERE reference = 'k-0') "
                 "WHERE reference = 'k-2'");
    assert_false(check_ok(w->f, "movement_chains"));
    assert_false(check_ok(w->f, "running_balances"));
    assert_false(check_ok(w->f, "balances_match_movements"));
    fx_sql(w->f, "UPDATE ledger_transfers SET debit_prev = (SELECT rid FROM ledger_transfers WHERE reference = 'k-1') "
                 "WHERE reference = 'k-2'");
    fx_assert_verified(w->f);

    /* a loop: reads stop with an integrity error instead of going round */
    fx_sql(w->f, "UPDATE ledger_transfers SET credit_prev = (SELECT rid FROM ledger_transfers WHERE reference = 'k-1') "
                 "WHERE reference = 'k-0'");
    assert_int_equal(bv_ledger_movements(w->f->lg, w->a, 0, 0, 0, 10, page, &n, &cursor), BV_EINTEGRITY);
    assert_false(check_ok(w->f, "movement_chains"));
    fx_sql(w->f, "UPDATE ledger_transfers SET credit_prev = NULL WHERE reference = 'k-0'");
    assert_int_equal(bv_ledger_movements(w->f->lg, w->a, 0, 0, 0, 10, page, &n, &cursor), 0);
    assert_int_equal(n, 3);
    fx_assert_verified(w->f);

    /* an anchor naming a transfer of other accounts */
    char sql[400];
    snprintf(sql, sizeof(sql),
             "UPDATE ledger_anchors SET xfer = (SELECT rid FROM ledger_transfers WHERE reference = 'k-0') "
             "WHERE account = (SELECT rid FROM ledger_accounts WHERE id = '%s')", w->b);
    fx_sql(w->f, sql);
    assert_false(check_ok(w->f, "movement_chains"));
}

/* ---- the migration's backfill ---- */

static void exec_raw(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("sql failed: %s", err ? err : "?");
}

/* A hold written with the schema before migration 0031 (resolved_at 0: none). */
static void insert_hold(sqlite3 *db, int64_t rid, const char *ref, int debit, int credit, int64_t amount,
                        const char *status, int64_t created, int64_t resolved)
{
    char sql[512], xid[BV_UUID_STR_LEN + 1], res[32] = "NULL";
    bv_uuid7(xid);
    if (resolved != 0)
        snprintf(res, sizeof(res), "%lld", (long long)resolved);
    snprintf(sql, sizeof(sql),
             "INSERT INTO ledger_transfers(rid, id, reference, debit, credit, currency, amount, status, pending, "
             "created_at, resolved_at) VALUES (%lld, '%s', '%s', %d, %d, 'USD', %lld, '%s', 1, %lld, %s)",
             (long long)rid, xid, ref, debit, credit, (long long)amount, status, (long long)created, res);
    exec_raw(db, sql);
}

static void test_migration_backfills_chains(void **state)
{
    (void)state;
    char dir[] = "/tmp/bv-ledger-chain-XXXXXX", path[300], sql[1024];
    char ids[3][BV_UUID_STR_LEN + 1], xid[BV_UUID_STR_LEN + 1];
    sqlite3 *db = NULL;
    bv_log_set_level(BV_LOG_ERROR);
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/boveda.db", dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    exec_raw(db, "PRAGMA journal_mode=WAL; CREATE TABLE schema_migrations (number INTEGER PRIMARY KEY, "
                 "name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT");
    /* the schema as it was before chains */
    for (size_t i = 0; i < bv_n_migrations && bv_migrations[i].number <= 30; i++) {
        exec_raw(db, bv_migrations[i].sql);
        snprintf(sql, sizeof(sql), "INSERT INTO schema_migrations VALUES (%d, '%s', 1)", bv_migrations[i].number,
                 bv_migrations[i].name);
        exec_raw(db, sql);
    }
    /* accounts 1 (funding), 2 and 3; 150 transfers between 2 and 3 after funding; a hold of
     * 3 from 2 created early and posted last; a hold of 4 still pending; a voided one */
    int64_t bal[4] = {0}, holds2 = 4;
    for (int r = 1; r <= 3; r++) {
        bv_uuid7(ids[r - 1]);
        snprintf(sql, sizeof(sql),
                 "INSERT INTO ledger_accounts(rid, id, number, type, currency, status, holder_name, allow_negative, "
                 "created_at, updated_at) VALUES (%d, '%s', '%016d', '%s', 'USD', 'active', 'H%d', %d, 1, 1)",
                 r, ids[r - 1], r, r == 1 ? "internal" : "checking", r, r == 1);
        exec_raw(db, sql);
    }
    int64_t rid = 0, ts = 1000;
    int moves[4] = {0};
    for (int i = 0; i < 152; i++) {
        int d = i < 2 ? 1 : (i % 2 ? 2 : 3), c = i < 2 ? i + 2 : (i % 2 ? 3 : 2);
        int64_t amount = i < 2 ? 10000 : i % 7 + 1;
        bal[d] -= amount;
        bal[c] += amount;
        moves[d]++;
        moves[c]++;
        bv_uuid7(xid);
        snprintf(sql, sizeof(sql),
                 "INSERT INTO ledger_transfers(rid, id, reference, debit, credit, currency, amount, posted_amount, "
                 "status, created_at, posted_at, debit_balance_after, credit_balance_after) VALUES (%lld, '%s', "
                 "'m-%d', %d, %d, 'USD', %lld, %lld, 'posted', %lld, %lld, %lld, %lld)",
                 (long long)++rid, xid, i, d, c, (long long)amount, (long long)amount, (long long)ts, (long long)ts,
                 (long long)bal[d], (long long)bal[c]);
        exec_raw(db, sql);
        ts++;
        if (i == 10) { /* the early hold, posted at the end; the pending one; the voided one */
            insert_hold(db, ++rid, "h-post", 2, 3, 3, "pending", ts++, 0);
            insert_hold(db, ++rid, "h-open", 2, 3, 4, "pending", ts++, 0);
            insert_hold(db, ++rid, "h-void", 3, 2, 5, "voided", ts, ts + 1);
            ts += 2;
        }
    }
    bal[2] -= 3;
    bal[3] += 3;
    moves[2]++;
    moves[3]++;
    snprintf(sql, sizeof(sql),
             "UPDATE ledger_transfers SET status = 'posted', posted_amount = 3, resolved_at = %lld, posted_at = %lld, "
             "debit_balance_after = %lld, credit_balance_after = %lld WHERE reference = 'h-post'",
             (long long)ts, (long long)ts, (long long)bal[2], (long long)bal[3]);
    exec_raw(db, sql);
    for (int r = 1; r <= 3; r++) {
        snprintf(sql, sizeof(sql), "UPDATE ledger_accounts SET balance = %lld, holds = %lld WHERE rid = %d",
                 (long long)bal[r], (long long)(r == 2 ? holds2 : 0), r);
        exec_raw(db, sql);
    }
    sqlite3_close(db);

    /* migrate: the chains, heads, counts and anchors are derived from the history */
    fx_t f = {0};
    snprintf(f.dir, sizeof(f.dir), "%s", dir);
    snprintf(f.db, sizeof(f.db), "%s", path);
    bv_store_options_t opt = {.path = path, .batch_max = 256, .busy_timeout_ms = 5000};
    assert_int_equal(bv_store_open(&opt, &f.st), 0);
    assert_int_equal(bv_store_migrate(f.st, NULL), 0);
    assert_int_equal(bv_ledger_open(f.st, NULL, &f.lg), 0);
    fx_assert_verified(&f);
    for (int r = 1; r <= 3; r++) {
        snprintf(sql, sizeof(sql), "SELECT movements FROM ledger_accounts WHERE rid = %d", r);
        assert_int_equal(fx_count(&f, sql), moves[r]);
        snprintf(sql, sizeof(sql), "SELECT balance FROM ledger_balances WHERE account = %d", r);
        assert_int_equal(fx_count(&f, sql), bal[r]);
        snprintf(sql, sizeof(sql), "SELECT holds FROM ledger_accounts WHERE rid = %d", r);
        assert_int_equal(fx_count(&f, sql), r == 2 ? holds2 : 0);
        snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM ledger_anchors WHERE account = %d", r);
        assert_int_equal(fx_count(&f, sql), (moves[r] + LEDGER_ANCHOR_EVERY - 1) / LEDGER_ANCHOR_EVERY);
    }
    assert_int_equal(fx_count(&f, "SELECT COUNT(*) FROM sqlite_master WHERE name IN "
                                  "('ledger_transfers_debits', 'ledger_transfers_credits')"),
                     0);
    /* the balances live in their own narrow table; ledger_accounts is a view of both */
    assert_int_equal(fx_count(&f, "SELECT COUNT(*) FROM pragma_table_info('ledger_account_info') "
                                  "WHERE name IN ('balance', 'holds')"),
                     0);
    assert_int_equal(fx_count(&f, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'ledger_accounts' AND type = 'view'"),
                     1);
    /* newest first: the hold posted last leads, then the history in order */
    bv_ledger_movement_t page[BV_LEDGER_PAGE_MAX];
    size_t n;
    int64_t cursor;
    assert_int_equal(bv_ledger_movements(f.lg, ids[1], 0, 0, 0, BV_LEDGER_PAGE_MAX, page, &n, &cursor), 0);
    assert_int_equal(n, (size_t)moves[2]);
    assert_true(page[0].amount == -3 && page[0].balance_after == bal[2]);
    for (size_t i = 1; i < n; i++) {
        assert_true(page[i].created_at < page[i - 1].created_at);
        assert_true(page[i - 1].balance_after - page[i - 1].amount == page[i].balance_after);
    }
    assert_true(page[n - 1].amount == 10000 && page[n - 1].counterparty_id[0] != '\0');
    assert_string_equal(page[n - 1].counterparty_id, ids[0]);
    /* and the engine carries on from them */
    bv_ledger_result_t res;
    assert_int_equal(fx_transfer(&f, ids[1], ids[2], 1, "USD", "after-migration", &res), 0);
    assert_int_equal(bv_ledger_movements(f.lg, ids[1], 0, 0, 0, 2, page, &n, &cursor), 0);
    assert_string_equal(page[0].transfer_id, res.transfer.id);
    assert_true(page[1].amount == -3);
    fx_assert_verified(&f);
    bv_ledger_close(f.lg);
    bv_store_close(f.st);
    snprintf(sql, sizeof(sql), "rm -rf '%s'", dir);
    assert_int_equal(system(sql), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_history_across_anchors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_linked_batch_keeps_chains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_and_reads_detect_broken_chains, setup, teardown),
        cmocka_unit_test(test_migration_backfills_chains),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
