/* Storage contract tests (see contract.h). Written against store.h only, so the
 * PostgreSQL adapter runs the same file. */
#include "contract.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

const bv_store_factory_t *bv_contract_factory;

static int create_table(bv_tx_t *tx, void *arg)
{
    (void)arg;
    return bv_tx_exec(tx, "CREATE TABLE IF NOT EXISTS contract_items (id INTEGER PRIMARY KEY, name TEXT NOT NULL "
                          "UNIQUE, amount INTEGER NOT NULL DEFAULT 0, data BLOB)");
}

static bv_store_t *fresh(void)
{
    bv_store_t *st = bv_contract_factory->open_fresh();
    assert_non_null(st);
    assert_int_equal(bv_store_write(st, create_table, NULL), 0);
    return st;
}

typedef struct {
    int64_t id;
    const char *name;
    int fail_after_insert; /* return this error after inserting */
    int64_t sleep_us;      /* hold the writer before doing anything */
} insert_t;

static int insert_item(bv_tx_t *tx, void *arg)
{
    insert_t *in = arg;
    if (in->sleep_us > 0)
        usleep((useconds_t)in->sleep_us);
    bv_stmt_t *s = bv_tx_prepare(tx, "INSERT INTO contract_items(id, name, amount) VALUES (?, ?, ?)");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, in->id);
    bv_stmt_bind_text(s, 2, in->name, -1);
    bv_stmt_bind_int64(s, 3, in->id * 10);
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    return in->fail_after_insert;
}

typedef struct {
    int64_t id;
    int found;
    int64_t amount;
    char name[64];
    int64_t count;
} lookup_t;

static int lookup_item(bv_tx_t *tx, void *arg)
{
    lookup_t *l = arg;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT name, amount FROM contract_items WHERE id = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, l->id);
    int rc = bv_stmt_step(s);
    l->found = rc == BV_ROW;
    if (l->found) {
        snprintf(l->name, sizeof(l->name), "%s", bv_stmt_text(s, 0));
        l->amount = bv_stmt_int64(s, 1);
    }
    bv_stmt_reset(s);
    s = bv_tx_prepare(tx, "SELECT count(*) FROM contract_items");
    if (s == NULL || bv_stmt_step(s) != BV_ROW)
        return BV_EIO;
    l->count = bv_stmt_int64(s, 0);
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

static void test_migrations_applied_and_idempotent(void **state)
{
    (void)state;
    bv_store_t *st = fresh();
    int applied = -1, embedded = -1, n = -1;
    assert_int_equal(bv_store_schema_version(st, &applied, &embedded), 0);
    assert_true(embedded > 0);
    assert_int_equal(applied, embedded);
    assert_int_equal(bv_store_migrate(st, &n), 0);
    assert_int_equal(n, 0);
    bv_contract_factory->destroy(st);
}

/* A migration missing below higher applied ones (a module's new migration, numbered in its
 * own range) is applied, and the schema is not ready until it is. Number 2 (the store's
 * outbox clean-up) can run again harmlessly. */
static int forget_migration_2(bv_tx_t *tx, void *arg)
{
    (void)arg;
    return bv_tx_exec(tx, "DELETE FROM schema_migrations WHERE number = 2");
}

static void test_missing_lower_migration_applied(void **state)
{
    (void)state;
    bv_store_t *st = fresh();
    int applied = -1, embedded = -1, n = -1;
    assert_int_equal(bv_store_write(st, forget_migration_2, NULL), 0);
    assert_int_equal(bv_store_schema_version(st, &applied, &embedded), 0);
    assert_int_equal(applied, 1);
    assert_true(embedded > 2);
    assert_int_equal(bv_store_migrate(st, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(bv_store_schema_version(st, &applied, &embedded), 0);
    assert_int_equal(applied, embedded);
    bv_contract_factory->destroy(st);
}

static void test_write_then_read(void **state)
{
    (void)state;
    bv_store_t *st = fresh();
    insert_t in = {.id = 7, .name = "seven"};
    assert_int_equal(bv_store_write(st, insert_item, &in), 0);
    lookup_t l = {.id = 7};
    assert_int_equal(bv_store_read(st, lookup_item, &l), 0);
    assert_true(l.found);
    assert_string_equal(l.name, "seven");
    assert_int_equal(l.amount, 70);
    l = (lookup_t){.id = 8};
    assert_int_equal(bv_store_read(st, lookup_item, &l), 0);
    assert_false(l.found);
    bv_contract_factory->destroy(st);
}

static void test_unique_violation_is_conflict(void **state)
{
    (void)state;
    bv_store_t *st = fresh();
    insert_t a = {.id = 1, .name = "dup"}, b = {.id = 2, .name = "dup"};
    assert_int_equal(bv_store_write(st, insert_item, &a), 0);
    assert_int_equal(bv_store_write(st, insert_item, &b), BV_ECONFLICT);
    lookup_t l = {.id = 2};
    assert_int_equal(bv_store_read(st, lookup_item, &l), 0);
    assert_false(l.found);
    assert_int_equal(l.count, 1);
    bv_contract_factory->destroy(st);
}

typedef struct {
    bv_store_t *st;
    insert_t in;
    int rc;
} writer_arg_t;

static void *writer_thread(void *p)
{
    writer_arg_t *w = p;
    w->rc = bv_store_write(w->st, insert_item, &w->in);
    return NULL;
}

/* Many jobs queued behind a slow one land in one batch; the failing ones are rolled back
 * alone and the others commit. */
static void test_failing_job_leaves_batch_committed(void **state)
{
    (void)state;
    enum { N = 40 };
    bv_store_t *st = fresh();
    static char names[N + 1][16];
    writer_arg_t w[N + 1];
    pthread_t t[N + 1];
    bv_store_stats_t before, after;
    bv_store_get_stats(st, &before);
    for (int i = 0; i <= N; i++) {
        snprintf(names[i], sizeof(names[i]), "item-%d", i);
        w[i] = (writer_arg_t){.st = st, .in = {.id = i + 1, .name = names[i]}};
        if (i == 0)
            w[i].in.sleep_us = 300000; /* hold the writer so the rest queue up */
        else if (i % 4 == 0)
            w[i].in.fail_after_insert = BV_EINSUFFICIENT_FUNDS;
        else if (i % 9 == 0)
            w[i].in.name = names[0]; /* unique violation: item 0 committed before the batch */
    }
    assert_int_equal(pthread_create(&t[0], NULL, writer_thread, &w[0]), 0);
    usleep(50000);
    for (int i = 1; i <= N; i++)
        assert_int_equal(pthread_create(&t[i], NULL, writer_thread, &w[i]), 0);
    for (int i = 0; i <= N; i++)
        pthread_join(t[i], NULL);
    bv_store_get_stats(st, &after);
    /* the 40 queued jobs committed in at most a few batches, not 40 */
    assert_true(after.batches - before.batches <= 5);
    int expected = 0;
    for (int i = 0; i <= N; i++) {
        lookup_t l = {.id = i + 1};
        assert_int_equal(bv_store_read(st, lookup_item, &l), 0);
        if (i > 0 && i % 4 == 0) {
            assert_int_equal(w[i].rc, BV_EINSUFFICIENT_FUNDS);
            assert_false(l.found);
        } else if (i > 0 && i % 9 == 0) {
            assert_int_equal(w[i].rc, BV_ECONFLICT);
            assert_false(l.found);
        } else {
            assert_int_equal(w[i].rc, 0);
            assert_true(l.found);
            assert_string_equal(l.name, w[i].in.name);
            expected++;
        }
    }
    lookup_t l = {.id = 0};
    assert_int_equal(bv_store_read(st, lookup_item, &l), 0);
    assert_int_equal(l.count, expected);
    assert_true(after.jobs_failed - before.jobs_failed >= 10);
    bv_contract_factory->destroy(st);
}

static atomic_int after_runs, before_runs;
static void on_after(void *arg)
{
    (void)arg;
    atomic_fetch_add(&after_runs, 1);
}
static int on_before_ok(bv_tx_t *tx, void *arg)
{
    (void)tx, (void)arg;
    atomic_fetch_add(&before_runs, 1);
    return 0;
}
static int on_before_fail(bv_tx_t *tx, void *arg)
{
    (void)tx, (void)arg;
    return BV_EIO;
}

typedef struct {
    insert_t in;
    int hook_fail;
} hooked_t;

static int hooked_job(bv_tx_t *tx, void *arg)
{
    hooked_t *h = arg;
    int rc = insert_item(tx, &h->in);
    bv_tx_after_commit(tx, on_after, NULL);
    bv_tx_before_commit(tx, h->hook_fail ? on_before_fail : on_before_ok, NULL);
    bv_tx_before_commit(tx, h->hook_fail ? on_before_fail : on_before_ok, NULL); /* merged */
    return rc;
}

static void test_commit_hooks(void **state)
{
    (void)state;
    bv_store_t *st = fresh();
    atomic_store(&after_runs, 0);
    atomic_store(&before_runs, 0);
    hooked_t ok = {.in = {.id = 1, .name = "a"}};
    assert_int_equal(bv_store_write(st, hooked_job, &ok), 0);
    assert_int_equal(atomic_load(&after_runs), 1);
    assert_int_equal(atomic_load(&before_runs), 1);
    /* a failed job's after-commit hook never runs */
    hooked_t bad = {.in = {.id = 2, .name = "b", .fail_after_insert = BV_EINVALID}};
    assert_int_equal(bv_store_write(st, hooked_job, &bad), BV_EINVALID);
    assert_int_equal(atomic_load(&after_runs), 1);
    /* a failing before-commit hook rolls back the whole batch */
    hooked_t hf = {.in = {.id = 3, .name = "c"}, .hook_fail = 1};
    assert_int_equal(bv_store_write(st, hooked_job, &hf), BV_EIO);
    lookup_t l = {.id = 3};
    assert_int_equal(bv_store_read(st, lookup_item, &l), 0);
    assert_false(l.found);
    assert_int_equal(l.count, 1);
    assert_int_equal(atomic_load(&after_runs), 1);
    bv_contract_factory->destroy(st);
}

/* bv_store_write_pipelined: the result at commit, durable() exactly once afterwards (after
 * the batch's after-commit hooks), in commit order; refused calls still get durable(). */
typedef struct {
    atomic_int calls;
    atomic_int hooks_seen; /* after_runs when durable() ran */
    int order[64];
    atomic_int n_order;
} durable_log_t;

static durable_log_t dlog;
static bv_store_t *nested_store;

static void on_durable(void *arg)
{
    int id = (int)(intptr_t)arg;
    atomic_fetch_add(&dlog.calls, 1);
    atomic_store(&dlog.hooks_seen, atomic_load(&after_runs));
    int i = atomic_fetch_add(&dlog.n_order, 1);
    if (i < 64)
        dlog.order[i] = id;
}

static void wait_calls(int n)
{
    for (int i = 0; i < 5000 && atomic_load(&dlog.calls) < n; i++)
        usleep(1000);
    assert_int_equal(atomic_load(&dlog.calls), n);
}

static int nested_pipelined_job(bv_tx_t *tx, void *arg);

static void test_pipelined_write(void **state)
{
    (void)state;
    bv_store_t *st = fresh();
    memset(&dlog, 0, sizeof(dlog));
    atomic_store(&after_runs, 0);
    assert_int_equal(bv_store_write_pipelined(st, insert_item, &(insert_t){.id = 1, .name = "a"}, NULL, NULL),
                     BV_EINVALID);

    /* committed (readable) when the call returns; durable() follows once, after the hook */
    hooked_t ok = {.in = {.id = 1, .name = "a"}};
    assert_int_equal(bv_store_write_pipelined(st, hooked_job, &ok, on_durable, (void *)(intptr_t)1), 0);
    lookup_t l = {.id = 1};
    assert_int_equal(bv_store_read(st, lookup_item, &l), 0);
    assert_true(l.found);
    wait_calls(1);
    assert_int_equal(atomic_load(&dlog.hooks_seen), 1);

    /* a failing job reports its error and is still released */
    insert_t bad = {.id = 2, .name = "b", .fail_after_insert = BV_EINVALID};
    assert_int_equal(bv_store_write_pipelined(st, insert_item, &bad, on_durable, (void *)(intptr_t)2),
                     BV_EINVALID);
    wait_calls(2);

    /* one thread's jobs are released in the order they committed */
    for (int i = 0; i < 20; i++) {
        char name[16];
        snprintf(name, sizeof(name), "p%d", i);
        insert_t in = {.id = 100 + i, .name = name};
        assert_int_equal(bv_store_write_pipelined(st, insert_item, &in, on_durable, (void *)(intptr_t)(100 + i)), 0);
    }
    wait_calls(22);
    for (int i = 2; i < 22; i++)
        assert_int_equal(dlog.order[i], 100 + i - 2);

    /* refused without running (from inside a job): durable() at once, on the caller */
    int inner = 0;
    nested_store = st;
    assert_int_equal(bv_store_write(st, nested_pipelined_job, &inner), 0);
    assert_int_equal(inner, BV_EINTERNAL);
    assert_int_equal(atomic_load(&dlog.calls), 23);
    /* a plain write returns only after its batch's hooks ran (it is durable by then) */
    hooked_t again = {.in = {.id = 3, .name = "c"}};
    int before = atomic_load(&after_runs);
    assert_int_equal(bv_store_write(st, hooked_job, &again), 0);
    assert_int_equal(atomic_load(&after_runs), before + 1);
    bv_contract_factory->destroy(st);
}

static int nested_job(bv_tx_t *tx, void *arg)
{
    (void)tx;
    *(int *)arg = bv_store_write(nested_store, insert_item, &(insert_t){.id = 99, .name = "nested"});
    return 0;
}

static int nested_pipelined_job(bv_tx_t *tx, void *arg)
{
    (void)tx;
    *(int *)arg = bv_store_write_pipelined(nested_store, insert_item, &(insert_t){.id = 98, .name = "nested"},
                                           on_durable, (void *)(intptr_t)98);
    return 0;
}

static void test_write_inside_job_refused(void **state)
{
    (void)state;
    bv_store_t *st = fresh();
    int inner = 0;
    nested_store = st;
    assert_int_equal(bv_store_write(st, nested_job, &inner), 0);
    assert_int_equal(inner, BV_EINTERNAL);
    bv_contract_factory->destroy(st);
}

static int write_in_read(bv_tx_t *tx, void *arg)
{
    (void)arg;
    assert_false(bv_tx_is_write(tx));
    bv_stmt_t *s = bv_tx_prepare(tx, "INSERT INTO contract_items(id, name) VALUES (5, 'x')");
    if (s == NULL)
        return BV_EIO;
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc;
}

static void test_read_transactions_cannot_write(void **state)
{
    (void)state;
    bv_store_t *st = fresh();
    assert_true(bv_store_read(st, write_in_read, NULL) < 0);
    lookup_t l = {.id = 5};
    assert_int_equal(bv_store_read(st, lookup_item, &l), 0);
    assert_false(l.found);
    bv_contract_factory->destroy(st);
}

static int blob_roundtrip(bv_tx_t *tx, void *arg)
{
    (void)arg;
    static const unsigned char data[] = {0, 1, 2, 0, 255};
    bv_stmt_t *s = bv_tx_prepare(tx, "INSERT INTO contract_items(id, name, data) VALUES (11, 'blob', ?)");
    bv_stmt_bind_blob(s, 1, data, sizeof(data));
    if (bv_stmt_step(s) != BV_DONE)
        return BV_EIO;
    s = bv_tx_prepare(tx, "SELECT data, name FROM contract_items WHERE id = 11");
    if (bv_stmt_step(s) != BV_ROW)
        return BV_EIO;
    size_t len = 0;
    const void *p = bv_stmt_blob(s, 0, &len);
    assert_int_equal(len, sizeof(data));
    assert_memory_equal(p, data, sizeof(data));
    assert_false(bv_stmt_is_null(s, 1));
    bv_stmt_reset(s);
    /* the cached statement comes back reset and reusable */
    s = bv_tx_prepare(tx, "SELECT data, name FROM contract_items WHERE id = 11");
    assert_int_equal(bv_stmt_step(s), BV_ROW);
    assert_string_equal(bv_stmt_text(s, 1), "blob");
    bv_stmt_reset(s);
    return 0;
}

static int execf_job(bv_tx_t *tx, void *arg)
{
    int *rcs = arg;
    rcs[0] = bv_tx_execf(tx, "INSERT INTO contract_items(id, name, amount) VALUES (?, ?, ?)", "iti", (int64_t)21,
                         "execf", (int64_t)210);
    rcs[1] = bv_tx_execf(tx, "INSERT INTO contract_items(id, name, amount) VALUES (?, ?, ?)", "iti", (int64_t)22,
                         "execf", (int64_t)220); /* name is UNIQUE */
    rcs[2] = bv_tx_execf(tx, "UPDATE contract_items SET data = ? WHERE id = ?", "ni", (int64_t)21);
    rcs[3] = (int)bv_tx_changes(tx);
    rcs[4] = bv_tx_execf(tx, "SELECT id FROM contract_items WHERE id = ?", "i", (int64_t)21); /* returns a row */
    rcs[5] = bv_tx_execf(tx, "DELETE FROM contract_items WHERE id = ?", "x", (int64_t)21);  /* bad type */
    return 0;
}

static void test_execf(void **state)
{
    (void)state;
    bv_store_t *st = fresh();
    int rcs[6];
    assert_int_equal(bv_store_write(st, execf_job, rcs), 0);
    assert_int_equal(rcs[0], 0);
    assert_int_equal(rcs[1], BV_ECONFLICT);
    assert_int_equal(rcs[2], 0);
    assert_int_equal(rcs[3], 1);
    assert_int_equal(rcs[4], BV_EINVALID);
    assert_int_equal(rcs[5], BV_EINVALID);
    lookup_t l = {.id = 21};
    assert_int_equal(bv_store_read(st, lookup_item, &l), 0);
    assert_true(l.found);
    assert_int_equal(l.amount, 210);
    assert_int_equal(l.count, 1);
    bv_contract_factory->destroy(st);
}

static void test_blobs_and_statement_cache(void **state)
{
    (void)state;
    bv_store_t *st = fresh();
    assert_int_equal(bv_store_write(st, blob_roundtrip, NULL), 0);
    bv_contract_factory->destroy(st);
}

/* Data written before close is there after reopening. */
static void test_durable_across_reopen(void **state)
{
    (void)state;
    bv_store_t *st = fresh();
    insert_t in = {.id = 42, .name = "answer"};
    assert_int_equal(bv_store_write(st, insert_item, &in), 0);
    bv_store_close(st);
    st = bv_contract_factory->reopen();
    assert_non_null(st);
    lookup_t l = {.id = 42};
    assert_int_equal(bv_store_read(st, lookup_item, &l), 0);
    assert_true(l.found);
    bv_contract_factory->destroy(st);
}

const struct CMUnitTest bv_store_contract_tests[] = {
    cmocka_unit_test(test_migrations_applied_and_idempotent),
    cmocka_unit_test(test_missing_lower_migration_applied),
    cmocka_unit_test(test_write_then_read),
    cmocka_unit_test(test_unique_violation_is_conflict),
    cmocka_unit_test(test_failing_job_leaves_batch_committed),
    cmocka_unit_test(test_commit_hooks),
    cmocka_unit_test(test_pipelined_write),
    cmocka_unit_test(test_write_inside_job_refused),
    cmocka_unit_test(test_read_transactions_cannot_write),
    cmocka_unit_test(test_blobs_and_statement_cache),
    cmocka_unit_test(test_execf),
    cmocka_unit_test(test_durable_across_reopen),
};
const size_t bv_n_store_contract_tests = sizeof(bv_store_contract_tests) / sizeof(bv_store_contract_tests[0]);
