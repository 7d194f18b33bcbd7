/* Shared by the ledger unit tests: a fresh migrated store and ledger engine in a temporary
 * directory, account and transfer shortcuts, and direct SQLite access for corruption. */
#ifndef BV_TEST_LEDGER_HELPERS_H
#define BV_TEST_LEDGER_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#pragma GCC diagnostic ignored "-Wunused-function"
#include <sqlite3.h>

#include "base/log.h"
#include "ledger/internal.h"
#include "ledger/ledger.h"
#include "store/store.h"

typedef struct {
    char dir[256];
    char db[300];
    bv_store_t *st;
    bv_ledger_t *lg;
} fx_t;

static const bv_ledger_ctx_t fx_ctx = {.actor = "admin:admin", .request_id = "test", .source_ip = "127.0.0.1"};

static fx_t *fx_open(void)
{
    fx_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    bv_log_set_level(BV_LOG_ERROR);
    snprintf(f->dir, sizeof(f->dir), "/tmp/bv-ledger-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/boveda.db", f->dir);
    bv_store_options_t opt = {.path = f->db, .batch_max = 256, .busy_timeout_ms = 5000};
    assert_int_equal(bv_store_open(&opt, &f->st), 0);
    assert_int_equal(bv_store_migrate(f->st, NULL), 0);
    assert_int_equal(bv_ledger_open(f->st, NULL, &f->lg), 0);
    return f;
}

/* Closes and reopens the engine (reloads the overlay from the database). */
static void fx_reopen_engine(fx_t *f)
{
    bv_ledger_close(f->lg);
    assert_int_equal(bv_ledger_open(f->st, NULL, &f->lg), 0);
}

static void fx_close(fx_t *f)
{
    char cmd[512];
    if (f == NULL)
        return;
    bv_ledger_close(f->lg);
    bv_store_close(f->st);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", f->dir);
    free(f);
}

/* Opens an account; the id goes to id_out. */
static void fx_account(fx_t *f, const char *type, const char *currency, int64_t overdraft, bool allow_negative,
                       char id_out[BV_UUID_STR_LEN + 1])
{
    bv_ledger_account_t a;
    bv_ledger_account_req_t r = {.type = type, .currency = currency, .holder_name = "Test Holder",
                                 .overdraft_limit = overdraft, .allow_negative = allow_negative};
    assert_int_equal(bv_ledger_account_create(f->lg, &fx_ctx, &r, &a, NULL), 0);
    memcpy(id_out, a.id, BV_UUID_STR_LEN + 1);
}

static int fx_transfer(fx_t *f, const char *debit, const char *credit, int64_t amount, const char *currency,
                       const char *reference, bv_ledger_result_t *res)
{
    bv_ledger_result_t local;
    bv_ledger_transfer_req_t r = {.debit_account = debit, .credit_account = credit, .amount = amount,
                                  .currency = currency, .reference = reference, .description = "test"};
    return bv_ledger_transfer(f->lg, &fx_ctx, &r, res != NULL ? res : &local);
}

static int fx_hold(fx_t *f, const char *debit, const char *credit, int64_t amount, const char *reference,
                   int64_t expires_at, bv_ledger_result_t *res)
{
    bv_ledger_result_t local;
    bv_ledger_transfer_req_t r = {.debit_account = debit, .credit_account = credit, .amount = amount,
                                  .currency = "USD", .reference = reference, .pending = true,
                                  .expires_at = expires_at};
    return bv_ledger_transfer(f->lg, &fx_ctx, &r, res != NULL ? res : &local);
}

static int64_t fx_balance(fx_t *f, const char *id)
{
    bv_ledger_account_t a;
    assert_int_equal(bv_ledger_account_get(f->lg, id, &a), 0);
    return a.balance;
}

static int64_t fx_available(fx_t *f, const char *id)
{
    bv_ledger_account_t a;
    assert_int_equal(bv_ledger_account_get(f->lg, id, &a), 0);
    return a.available;
}

static void fx_assert_verified(fx_t *f)
{
    bv_ledger_check_t checks[BV_LEDGER_N_CHECKS];
    int rc = bv_ledger_verify(f->st, checks);
    for (int i = 0; i < BV_LEDGER_N_CHECKS; i++)
        if (!checks[i].ok)
            fprintf(stderr, "verify: %s: %s\n", checks[i].name, checks[i].detail);
    assert_int_equal(rc, 0);
}

/* Runs one SQL statement on the database file directly (outside the store). */
static void fx_sql(fx_t *f, const char *sql)
{
    sqlite3 *db = NULL;
    char *err = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("sql failed: %s", err ? err : "?");
    sqlite3_close(db);
}

static int64_t fx_count(fx_t *f, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    int64_t n = -1;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

#endif
