/* Shared by the audit unit tests: a fresh migrated store in a temporary directory, appends,
 * and direct SQLite access for tampering. */
#ifndef BV_TEST_AUDIT_HELPERS_H
#define BV_TEST_AUDIT_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "audit/audit_internal.h"
#include "audit/audit_module.h"
#include "store/store.h"

typedef struct {
    char dir[256];
    char db[300];
    bv_store_t *st;
} fx_t;

static void fx_rm(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

static fx_t *fx_open(void)
{
    fx_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/bv-audit-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/boveda.db", f->dir);
    bv_store_options_t opt = {.path = f->db, .batch_max = 64, .busy_timeout_ms = 5000};
    assert_int_equal(bv_store_open(&opt, &f->st), 0);
    assert_int_equal(bv_store_migrate(f->st, NULL), 0);
    return f;
}

static void fx_close(fx_t *f)
{
    if (f == NULL)
        return;
    bv_store_close(f->st);
    fx_rm(f->dir);
    free(f);
}

typedef struct {
    const bv_audit_event_t *ev;
    int fail_after; /* return this (non-zero) after appending: the job rolls back */
    int64_t seq;
    char id[BV_UUID_STR_LEN + 1];
} append_job_t;

static int append_job(bv_tx_t *tx, void *arg)
{
    append_job_t *a = arg;
    int rc = bv_audit_append_ex(tx, a->ev, &a->seq, a->id);
    if (rc != 0)
        return rc;
    return a->fail_after;
}

/* Appends one event in its own write job; returns the job's result. */
static int fx_append(fx_t *f, const char *actor, const char *action, json_t *details, int64_t *seq_out,
                     char id_out[BV_UUID_STR_LEN + 1])
{
    bv_audit_event_t ev = {.actor = actor,
                           .action = action,
                           .resource = "account:0190f0a0-0000-7000-8000-000000000001",
                           .outcome = "success",
                           .source_ip = "127.0.0.1",
                           .request_id = "req-1",
                           .details = details};
    append_job_t a = {.ev = &ev};
    int rc = bv_store_write(f->st, append_job, &a);
    if (seq_out != NULL)
        *seq_out = a.seq;
    if (id_out != NULL)
        memcpy(id_out, a.id, sizeof(a.id));
    return rc;
}

/* Runs SQL directly on the database file, as an intruder with file access would. */
static void fx_tamper(fx_t *f, const char *sql)
{
    sqlite3 *db = NULL;
    char *err = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fprintf(stderr, "tamper failed: %s\n", err != NULL ? err : "?");
    sqlite3_free(err);
    sqlite3_close(db);
    assert_int_equal(rc, SQLITE_OK);
}

static int64_t fx_count(fx_t *f, const char *table)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    char sql[128];
    int64_t n = -1;
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

/* Appends n records with distinct actions; ids[i] gets the id of seq i+1. */
static void fx_fill(fx_t *f, int n, char (*ids)[BV_UUID_STR_LEN + 1])
{
    for (int i = 0; i < n; i++) {
        char action[64];
        int64_t seq = 0;
        json_t *d = json_pack("{s:i, s:s}", "n", i, "currency", "EUR");
        snprintf(action, sizeof(action), "test.action.%d", i % 3);
        assert_int_equal(
            fx_append(f, i % 2 ? "user:alice" : "admin:admin", action, d, &seq, ids ? ids[i] : NULL), 0);
        assert_int_equal(seq, i + 1);
        json_decref(d);
    }
}

#endif
