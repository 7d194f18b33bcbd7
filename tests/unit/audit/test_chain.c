/* The audit chain: building, canonical details, secrets refused, rollbacks, and tampering
 * with the table directly in SQLite (edit, delete, swap, insert) detected and named. */
#include <pthread.h>

#include "helpers.h"

/* ---- building ---- */

static void test_append_builds_a_linked_chain(void **state)
{
    (void)state;
    fx_t *f = fx_open();
    char ids[5][BV_UUID_STR_LEN + 1];
    fx_fill(f, 5, ids);

    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT seq, id, time, actor, action, resource, outcome, source_ip, "
                                        "request_id, details, prev_hash, hash FROM audit_log ORDER BY seq",
                                        -1, &s, NULL),
                     SQLITE_OK);
    unsigned char prev[32] = {0};
    int64_t n = 0;
    bv_buf_t scratch = {0};
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    while (sqlite3_step(s) == SQLITE_ROW) {
        n++;
        assert_int_equal(sqlite3_column_int64(s, 0), n);
        assert_string_equal((const char *)sqlite3_column_text(s, 1), ids[n - 1]);
        assert_true(bv_uuid_valid((const char *)sqlite3_column_text(s, 1)));
        assert_int_equal(((const char *)sqlite3_column_text(s, 1))[14], '7'); /* UUIDv7 */
        assert_int_equal(sqlite3_column_bytes(s, 10), 32);
        assert_memory_equal(sqlite3_column_blob(s, 10), prev, 32);
        bv_audit_row_t r = {.seq = n,
                            .id = (const char *)sqlite3_column_text(s, 1),
                            .time = sqlite3_column_int64(s, 2),
                            .actor = (const char *)sqlite3_column_text(s, 3),
                            .action = (const char *)sqlite3_column_text(s, 4),
                            .resource = (const char *)sqlite3_column_text(s, 5),
                            .outcome = (const char *)sqlite3_column_text(s, 6),
                            .source_ip = (const char *)sqlite3_column_text(s, 7),
                            .request_id = (const char *)sqlite3_column_text(s, 8),
                            .details = (const char *)sqlite3_column_text(s, 9),
                            .details_len = (size_t)sqlite3_column_bytes(s, 9),
                            .prev_hash = sqlite3_column_blob(s, 10),
                            .prev_hash_len = 32};
        unsigned char h[32];
        assert_int_equal(bv_audit_hash_record(ctx, &scratch, &r, h), 0);
        assert_int_equal(sqlite3_column_bytes(s, 11), 32);
        assert_memory_equal(sqlite3_column_blob(s, 11), h, 32);
        memcpy(prev, h, 32);
    }
    assert_int_equal(n, 5);
    EVP_MD_CTX_free(ctx);
    bv_buf_free(&scratch);
    sqlite3_finalize(s);
    sqlite3_close(db);

    bv_audit_verify_result_t v;
    assert_int_equal(bv_audit_verify(f->st, NULL, &v), 0);
    assert_true(v.ok);
    assert_int_equal(v.n_records, 5);
    assert_int_equal(v.head_seq, 5);
    char hex[65];
    bv_hex(prev, 32, hex);
    assert_string_equal(v.head_hash, hex);
    fx_close(f);
}

static void test_empty_chain_verifies(void **state)
{
    (void)state;
    fx_t *f = fx_open();
    bv_audit_verify_result_t v;
    assert_int_equal(bv_audit_verify(f->st, NULL, &v), 0);
    assert_true(v.ok);
    assert_int_equal(v.n_records, 0);
    fx_close(f);
}

static void test_details_are_canonical_json(void **state)
{
    (void)state;
    fx_t *f = fx_open();
    json_t *d = json_loads("{ \"b\": 1, \"a\": { \"d\": [2, \"x\"], \"c\": null } }", 0, NULL);
    assert_non_null(d);
    assert_int_equal(fx_append(f, "system", "test.canonical", d, NULL, NULL), 0);
    assert_int_equal(fx_append(f, "system", "test.nodetails", NULL, NULL, NULL), 0);
    json_decref(d);

    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT details FROM audit_log ORDER BY seq", -1, &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0),
                        "{\"a\":{\"c\":null,\"d\":[2,\"x\"]},\"b\":1}");
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "{}");
    sqlite3_finalize(s);
    sqlite3_close(db);
    fx_close(f);
}

/* Pre-rendered details (details_json): stored verbatim when flat, canonical and harmless;
 * anything else refused like bad details, and the chain still verifies. */
static int append_json(fx_t *f, const char *details_json, json_t *details)
{
    bv_audit_event_t ev = {.actor = "system", .action = "test.prerendered", .outcome = "success",
                           .details = details, .details_json = details_json};
    append_job_t a = {.ev = &ev};
    return bv_store_write(f->st, append_job, &a);
}

static void test_prerendered_details(void **state)
{
    (void)state;
    fx_t *f = fx_open();
    const char *good = "{\"amount\":\"1.00\",\"currency\":\"USD\",\"note\":\"a \\\"quoted\\\" word\"}";
    assert_int_equal(append_json(f, good, NULL), 0);
    assert_int_equal(append_json(f, "{}", NULL), 0);
    const char *bad[] = {
        "{\"currency\":\"USD\",\"amount\":\"1.00\"}", /* keys not sorted */
        "{\"a\":\"1\",\"a\":\"2\"}",                  /* duplicate key */
        "{\"amount\":1}",                              /* not a string value */
        "{\"a\":{\"b\":\"c\"}}",                        /* nested */
        "{ \"a\":\"1\"}",                              /* not compact */
        "{\"a\":\"1\"}x",                               /* trailing bytes */
        "{\"a\":\"1\"",                                /* unterminated */
        "{\"password\":\"x\"}",                         /* secret-looking key */
        "{\"amount\":\"1\",\"cardPin\":\"1234\"}",
        "[\"a\"]",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (append_json(f, bad[i], NULL) != BV_EINVALID)
            fail_msg("accepted details_json %s", bad[i]);
    json_t *d = json_pack("{s:s}", "a", "1");
    assert_int_equal(append_json(f, "{\"a\":\"1\"}", d), BV_EINVALID); /* one or the other */
    json_decref(d);

    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT details FROM audit_log ORDER BY seq", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), good);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "{}");
    assert_int_equal(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
    sqlite3_close(db);
    bv_audit_verify_result_t v;
    assert_int_equal(bv_audit_verify(f->st, NULL, &v), 0);
    assert_true(v.ok);
    fx_close(f);
}

/* The encoding is length-prefixed: moving bytes between fields, or NULL vs "", changes it. */
static void test_encoding_is_unambiguous(void **state)
{
    (void)state;
    unsigned char zero[32] = {0}, h1[32], h2[32], h3[32];
    bv_buf_t b = {0};
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bv_audit_row_t r = {.seq = 7,
                        .id = "0190f0a0-0000-7000-8000-000000000001",
                        .time = 1,
                        .actor = "ab",
                        .action = "c",
                        .resource = NULL,
                        .outcome = "success",
                        .details = "{}",
                        .details_len = 2,
                        .prev_hash = zero,
                        .prev_hash_len = 32};
    assert_int_equal(bv_audit_hash_record(ctx, &b, &r, h1), 0);
    r.actor = "a";
    r.action = "bc";
    assert_int_equal(bv_audit_hash_record(ctx, &b, &r, h2), 0);
    assert_memory_not_equal(h1, h2, 32);
    r.resource = "";
    assert_int_equal(bv_audit_hash_record(ctx, &b, &r, h3), 0);
    assert_memory_not_equal(h2, h3, 32);
    r.resource = NULL;
    r.seq = 8;
    assert_int_equal(bv_audit_hash_record(ctx, &b, &r, h3), 0);
    assert_memory_not_equal(h2, h3, 32);
    /* the encoding starts with the domain tag, then seq as 8 bytes big-endian */
    assert_int_equal(bv_audit_encode_record(&b, &r), 0);
    assert_memory_equal(b.data, "BVAUDIT1\0\0\0\0\0\0\0\x08", 16);
    EVP_MD_CTX_free(ctx);
    bv_buf_free(&b);
}

/* ---- what is refused ---- */

static void test_secret_looking_details_are_rejected(void **state)
{
    (void)state;
    fx_t *f = fx_open();
    static const char *const bad[] = {
        "{\"password\":\"x\"}",
        "{\"Password\":\"x\"}",
        "{\"new_password\":\"x\"}",
        "{\"user\":{\"passwd\":\"x\"}}",
        "{\"client_secret\":\"x\"}",
        "{\"access_token\":\"x\"}",
        "{\"refreshToken\":\"x\"}",
        "{\"otp\":\"123456\"}",
        "{\"OTP\":\"123456\"}",
        "{\"otp_code\":\"123456\"}",
        "{\"code\":\"abc\"}",
        "{\"a\":[{\"b\":{\"pin\":\"1234\"}}]}",
        "{\"cardPin\":\"1234\"}",
        "{\"pan\":\"4111111111111111\"}",
        "{\"card\":{\"PAN\":\"4111111111111111\"}}",
        "{\"cvv\":\"123\"}",
        "{\"Authorization\":\"Bearer x\"}",
        "{\"headers\":{\"cookie\":\"s=1\"}}",
        "{\"set-cookie\":\"s=1\"}",
        "[1,2]",
        "\"string\"",
        NULL,
    };
    for (const char *const *p = bad; *p != NULL; p++) {
        json_t *d = json_loads(*p, JSON_DECODE_ANY, NULL);
        assert_non_null(d);
        if (fx_append(f, "user:alice", "identity.password.change", d, NULL, NULL) != BV_EINVALID) {
            fprintf(stderr, "accepted: %s\n", *p);
            fail();
        }
        assert_int_equal(bv_audit_check_details(d), BV_EINVALID);
        json_decref(d);
    }
    /* nothing was written, and bv_audit_record refuses the same without a write */
    json_t *d = json_pack("{s:{s:s}}", "login", "password", "hunter2");
    bv_audit_event_t ev = {
        .actor = "user:alice", .action = "identity.login", .outcome = "denied", .details = d};
    assert_int_equal(bv_audit_record(f->st, &ev), BV_EINVALID);
    json_decref(d);
    assert_int_equal(fx_count(f, "audit_log"), 0);

    /* innocent keys that merely contain those letters are allowed */
    static const char *const good[] = {
        "{\"shipping\":1,\"company\":\"x\",\"expand\":true,\"opinion\":\"y\"}",
        "{\"amount\":\"10.00\",\"currency\":\"EUR\",\"account_id\":\"a\",\"reason\":\"limit\"}",
        "{\"mfa_method\":\"sms\",\"auth_method\":\"pwd+otp\",\"zip\":\"28001\",\"span\":1}",
        "{\"nested\":{\"list\":[{\"kid\":\"k1\"}]}}",
        NULL,
    };
    int64_t n = 0;
    for (const char *const *p = good; *p != NULL; p++) {
        d = json_loads(*p, 0, NULL);
        assert_non_null(d);
        int rc = fx_append(f, "user:alice", "test.ok", d, NULL, NULL);
        if (rc != 0)
            fprintf(stderr, "rejected: %s\n", *p);
        assert_int_equal(rc, 0);
        n++;
        json_decref(d);
    }
    assert_int_equal(fx_count(f, "audit_log"), n);
    fx_close(f);
}

static void test_invalid_events_are_rejected(void **state)
{
    (void)state;
    fx_t *f = fx_open();
    bv_audit_event_t ok = {.actor = "system", .action = "test.x", .outcome = "success"};
    bv_audit_event_t e;
    e = ok;
    e.actor = NULL;
    assert_int_equal(bv_audit_record(f->st, &e), BV_EINVALID);
    e = ok;
    e.action = "";
    assert_int_equal(bv_audit_record(f->st, &e), BV_EINVALID);
    e = ok;
    e.outcome = "maybe";
    assert_int_equal(bv_audit_record(f->st, &e), BV_EINVALID);
    e = ok;
    e.resource = "bad\xff utf8";
    assert_int_equal(bv_audit_record(f->st, &e), BV_EINVALID);
    e = ok;
    e.request_id = "line\nbreak";
    assert_int_equal(bv_audit_record(f->st, &e), BV_EINVALID);
    assert_int_equal(fx_count(f, "audit_log"), 0);
    assert_int_equal(bv_audit_record(f->st, &ok), 0);
    assert_int_equal(fx_count(f, "audit_log"), 1);
    fx_close(f);
}

static int read_append_job(bv_tx_t *tx, void *arg)
{
    return bv_audit_append(tx, arg);
}

static void test_append_outside_a_write_job_is_refused(void **state)
{
    (void)state;
    fx_t *f = fx_open();
    bv_audit_event_t ev = {.actor = "system", .action = "test.x", .outcome = "success"};
    assert_int_equal(bv_store_read(f->st, read_append_job, &ev), BV_EINTERNAL);
    assert_int_equal(fx_count(f, "audit_log"), 0);
    fx_close(f);
}

/* ---- rollbacks ---- */

static void test_rolled_back_append_leaves_the_chain_intact(void **state)
{
    (void)state;
    fx_t *f = fx_open();
    bv_audit_event_t ev = {.actor = "system", .action = "test.rollback", .outcome = "success"};
    append_job_t a = {.ev = &ev};
    assert_int_equal(bv_store_write(f->st, append_job, &a), 0);
    assert_int_equal(a.seq, 1);
    a.fail_after = BV_ECONFLICT; /* the change it recorded failed: both roll back */
    assert_int_equal(bv_store_write(f->st, append_job, &a), BV_ECONFLICT);
    assert_int_equal(a.seq, 2);
    assert_int_equal(fx_count(f, "audit_log"), 1);
    a.fail_after = 0;
    assert_int_equal(bv_store_write(f->st, append_job, &a), 0);
    assert_int_equal(a.seq, 2); /* the rolled-back seq is reused: no gap */
    bv_audit_verify_result_t v;
    assert_int_equal(bv_audit_verify(f->st, NULL, &v), 0);
    assert_true(v.ok);
    assert_int_equal(v.n_records, 2);
    fx_close(f);
}

typedef struct {
    fx_t *f;
    int thread;
    int ok;
} mt_t;

static void *mt_worker(void *arg)
{
    mt_t *m = arg;
    for (int i = 0; i < 40; i++) {
        bv_audit_event_t ev = {.actor = "system", .action = "test.concurrent", .outcome = "success"};
        append_job_t a = {.ev = &ev, .fail_after = (i % 3 == 0) ? BV_ECONFLICT : 0};
        int rc = bv_store_write(m->f->st, append_job, &a);
        if (rc == 0)
            m->ok++;
        else if (rc != BV_ECONFLICT)
            m->ok = -100000;
    }
    return NULL;
}

/* Jobs from many threads share group-commit batches; the failing ones roll back to their
 * savepoints inside a batch, and the chain stays contiguous and linked. */
static void test_concurrent_appends_with_rollbacks(void **state)
{
    (void)state;
    fx_t *f = fx_open();
    pthread_t t[6];
    mt_t m[6];
    int total = 0;
    for (int i = 0; i < 6; i++) {
        m[i] = (mt_t){.f = f, .thread = i};
        assert_int_equal(pthread_create(&t[i], NULL, mt_worker, &m[i]), 0);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(t[i], NULL);
        assert_true(m[i].ok >= 0);
        total += m[i].ok;
    }
    assert_int_equal(total, 6 * 26);
    bv_audit_verify_result_t v;
    assert_int_equal(bv_audit_verify(f->st, NULL, &v), 0);
    assert_true(v.ok);
    assert_int_equal(v.n_records, total);
    fx_close(f);
}

/* ---- tampering ---- */

static bv_audit_verify_result_t verify_fails(fx_t *f)
{
    bv_audit_verify_result_t v;
    assert_int_equal(bv_audit_verify(f->st, NULL, &v), 0);
    if (v.ok)
        fail_msg("verify passed after tampering");
    return v;
}

static void test_tamper_edit_is_named(void **state)
{
    (void)state;
    fx_t *f = fx_open();
    char ids[6][BV_UUID_STR_LEN + 1];
    fx_fill(f, 6, ids);
    fx_tamper(f, "UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 4");
    bv_audit_verify_result_t v = verify_fails(f);
    assert_int_equal(v.failure, BV_AUDIT_ALTERED);
    assert_int_equal(v.seq, 4);
    assert_string_equal(v.id, ids[3]);
    assert_int_equal(v.n_records, 3);
    fx_close(f);
}

static void test_tamper_edit_details_time_and_outcome(void **state)
{
    (void)state;
    static const char *const edits[] = {
        "UPDATE audit_log SET details = '{\"n\":99}' WHERE seq = 2",
        "UPDATE audit_log SET time = time + 1 WHERE seq = 2",
        "UPDATE audit_log SET outcome = 'denied' WHERE seq = 2",
        "UPDATE audit_log SET resource = NULL WHERE seq = 2",
        "UPDATE audit_log SET source_ip = '' WHERE seq = 2",
        "UPDATE audit_log SET hash = zeroblob(32) WHERE seq = 2",
        NULL,
    };
    for (const char *const *e = edits; *e != NULL; e++) {
        fx_t *f = fx_open();
        char ids[3][BV_UUID_STR_LEN + 1];
        fx_fill(f, 3, ids);
        fx_tamper(f, *e);
        bv_audit_verify_result_t v = verify_fails(f);
        assert_int_equal(v.failure, BV_AUDIT_ALTERED);
        assert_int_equal(v.seq, 2);
        assert_string_equal(v.id, ids[1]);
        fx_close(f);
    }
}

static void test_tamper_delete_is_named(void **state)
{
    (void)state;
    fx_t *f = fx_open();
    char ids[6][BV_UUID_STR_LEN + 1];
    fx_fill(f, 6, ids);
    fx_tamper(f, "DELETE FROM audit_log WHERE seq = 3");
    bv_audit_verify_result_t v = verify_fails(f);
    assert_int_equal(v.failure, BV_AUDIT_REMOVED);
    assert_int_equal(v.seq, 3);
    assert_string_equal(v.id, "");
    assert_non_null(strstr(v.detail, ids[3])); /* names the next record still present */
    fx_close(f);

    /* deleting the first record */
    f = fx_open();
    fx_fill(f, 2, NULL);
    fx_tamper(f, "DELETE FROM audit_log WHERE seq = 1");
    v = verify_fails(f);
    assert_int_equal(v.failure, BV_AUDIT_REMOVED);
    assert_int_equal(v.seq, 1);
    fx_close(f);
}

/* Swapping two records' positions: the first position out of order is named, with the id
 * of the record that now sits there. */
static void test_tamper_swap_is_named(void **state)
{
    (void)state;
    fx_t *f = fx_open();
    char ids[6][BV_UUID_STR_LEN + 1];
    fx_fill(f, 6, ids);
    fx_tamper(f, "UPDATE audit_log SET seq = -4 WHERE seq = 4;"
                 "UPDATE audit_log SET seq = 4 WHERE seq = 5;"
                 "UPDATE audit_log SET seq = 5 WHERE seq = -4;");
    bv_audit_verify_result_t v = verify_fails(f);
    assert_int_equal(v.failure, BV_AUDIT_REORDERED);
    assert_int_equal(v.seq, 4);
    assert_string_equal(v.id, ids[4]);
    fx_close(f);

    /* swapping the contents but keeping seq values (every column but seq exchanged) */
    f = fx_open();
    fx_fill(f, 6, ids);
    fx_tamper(f,
              "CREATE TEMP TABLE t AS SELECT * FROM audit_log WHERE seq IN (2, 3);"
              "DELETE FROM audit_log WHERE seq IN (2, 3);"
              "INSERT INTO audit_log SELECT 5 - seq, id, time, actor, action, resource, outcome, source_ip,"
              " request_id, details, prev_hash, hash FROM t;");
    v = verify_fails(f);
    assert_int_equal(v.failure, BV_AUDIT_REORDERED);
    assert_int_equal(v.seq, 2);
    assert_string_equal(v.id, ids[2]);
    fx_close(f);
}

static void test_tamper_insert_is_named(void **state)
{
    (void)state;
    /* a made-up record in the middle: later records renumbered to make room */
    fx_t *f = fx_open();
    char ids[5][BV_UUID_STR_LEN + 1];
    fx_fill(f, 5, ids);
    fx_tamper(
        f, "UPDATE audit_log SET seq = -seq WHERE seq >= 3;"
           "UPDATE audit_log SET seq = 1 - seq WHERE seq < 0;"
           "INSERT INTO audit_log VALUES (3, '0190f0a0-0000-7000-8000-00000000beef', 1, 'admin:admin',"
           " 'ledger.transfer.create', NULL, 'success', NULL, NULL, '{}', randomblob(32), randomblob(32));");
    bv_audit_verify_result_t v = verify_fails(f);
    assert_int_equal(v.failure, BV_AUDIT_INSERTED);
    assert_int_equal(v.seq, 3);
    assert_string_equal(v.id, "0190f0a0-0000-7000-8000-00000000beef");
    fx_close(f);

    /* appended at the end, linked to the real head, but its hash is not its content's */
    f = fx_open();
    fx_fill(f, 3, ids);
    fx_tamper(f,
              "INSERT INTO audit_log SELECT 4, '0190f0a0-0000-7000-8000-00000000cafe', time, actor, action,"
              " resource, outcome, source_ip, request_id, details, hash, randomblob(32)"
              " FROM audit_log WHERE seq = 3;");
    v = verify_fails(f);
    assert_int_equal(v.failure, BV_AUDIT_ALTERED);
    assert_int_equal(v.seq, 4);
    assert_string_equal(v.id, "0190f0a0-0000-7000-8000-00000000cafe");
    fx_close(f);

    /* a record with an impossible seq */
    f = fx_open();
    fx_fill(f, 3, ids);
    fx_tamper(
        f,
        "INSERT INTO audit_log SELECT 0, '0190f0a0-0000-7000-8000-00000000f00d', time, actor, action,"
        " resource, outcome, source_ip, request_id, details, prev_hash, hash FROM audit_log WHERE seq = 1;");
    v = verify_fails(f);
    assert_int_equal(v.failure, BV_AUDIT_INSERTED);
    assert_int_equal(v.seq, 0);
    fx_close(f);
}

/* ---- cursors and queries ---- */

static void test_cursor_round_trip(void **state)
{
    (void)state;
    static const int64_t seqs[] = {1, 2, 63, 64, 1000, 123456789, INT64_MAX};
    for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
        char c[BV_AUDIT_CURSOR_LEN + 1];
        int64_t back = 0;
        bv_audit_cursor_encode(seqs[i], c);
        assert_int_equal(strlen(c), BV_AUDIT_CURSOR_LEN);
        assert_int_equal(bv_audit_cursor_decode(c, &back), 0);
        assert_int_equal(back, seqs[i]);
    }
    char c12[BV_AUDIT_CURSOR_LEN + 1];
    bv_audit_cursor_encode(12, c12);
    assert_string_equal(c12, "AAAAAAAAAAw"); /* base64url of 00 00 00 00 00 00 00 0c */
    int64_t x;
    assert_int_equal(bv_audit_cursor_decode("", &x), BV_EINVALID);
    assert_int_equal(bv_audit_cursor_decode("AAAAAAAAAAA", &x), BV_EINVALID); /* seq 0 */
    assert_int_equal(bv_audit_cursor_decode("AAAAAAAAAAB", &x), BV_EINVALID); /* non-zero pad bits */
    assert_int_equal(bv_audit_cursor_decode("AAAAAAAAA+E", &x), BV_EINVALID); /* not base64url */
    assert_int_equal(bv_audit_cursor_decode("12", &x), BV_EINVALID);
    assert_int_equal(bv_audit_cursor_decode("gAAAAAAAAAA", &x), BV_EINVALID); /* > INT64_MAX */
}

typedef struct {
    bv_audit_query_t q;
    json_t *items;
    int64_t next;
} query_job_t;

static int query_job(bv_tx_t *tx, void *arg)
{
    query_job_t *j = arg;
    json_array_clear(j->items);
    return bv_audit_query(tx, &j->q, j->items, &j->next);
}

static void test_query_filters_and_pages(void **state)
{
    (void)state;
    fx_t *f = fx_open();
    fx_fill(f, 12, NULL); /* actors alternate admin/alice; actions cycle .0 .1 .2 */
    query_job_t j = {.q = {.limit = 5}, .items = json_array()};
    assert_int_equal(bv_store_read(f->st, query_job, &j), 0);
    assert_int_equal(json_array_size(j.items), 5);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(j.items, 0), "seq")), 12);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(j.items, 4), "seq")), 8);
    assert_int_equal(j.next, 8);
    j.q.before_seq = j.next;
    assert_int_equal(bv_store_read(f->st, query_job, &j), 0);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(j.items, 0), "seq")), 7);
    j.q.before_seq = 3;
    assert_int_equal(bv_store_read(f->st, query_job, &j), 0);
    assert_int_equal(json_array_size(j.items), 2);
    assert_int_equal(j.next, 0);

    /* actor + action: seq with i odd (alice) and i % 3 == 1: i = 1, 7 -> seq 2, 8 */
    j.q = (bv_audit_query_t){.actor = "user:alice", .action = "test.action.1", .limit = 50};
    assert_int_equal(bv_store_read(f->st, query_job, &j), 0);
    assert_int_equal(json_array_size(j.items), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(j.items, 0), "seq")), 8);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(j.items, 1), "seq")), 2);
    json_t *it = json_array_get(j.items, 0);
    assert_string_equal(json_string_value(json_object_get(it, "actor")), "user:alice");
    assert_string_equal(json_string_value(json_object_get(it, "outcome")), "success");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(it, "details"), "n")), 7);
    assert_non_null(strchr(json_string_value(json_object_get(it, "time")), 'T'));

    /* time window: from the 4th record's time (inclusive) to the 6th's (exclusive) */
    sqlite3 *db;
    sqlite3_stmt *s;
    int64_t t4 = 0, t6 = 0;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT seq, time FROM audit_log WHERE seq IN (4, 6)", -1, &s, NULL), 0);
    while (sqlite3_step(s) == SQLITE_ROW)
        *(sqlite3_column_int64(s, 0) == 4 ? &t4 : &t6) = sqlite3_column_int64(s, 1);
    sqlite3_finalize(s);
    sqlite3_close(db);
    j.q = (bv_audit_query_t){.has_from = 1, .from_us = t4, .has_to = 1, .to_us = t6, .limit = 50};
    assert_int_equal(bv_store_read(f->st, query_job, &j), 0);
    /* the same window asked of SQLite directly, newest first */
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT seq FROM audit_log WHERE time >= ? AND time < ? ORDER BY seq DESC", -1,
                           &s, NULL),
        0);
    sqlite3_bind_int64(s, 1, t4);
    sqlite3_bind_int64(s, 2, t6);
    size_t k = 0;
    int saw4 = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(s, 0);
        assert_true(k < json_array_size(j.items));
        assert_int_equal(json_integer_value(json_object_get(json_array_get(j.items, k), "seq")), seq);
        saw4 |= seq == 4;
        assert_true(seq != 6);
        k++;
    }
    assert_int_equal(k, json_array_size(j.items));
    assert_true(saw4);
    sqlite3_finalize(s);
    sqlite3_close(db);
    json_decref(j.items);
    fx_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_builds_a_linked_chain),
        cmocka_unit_test(test_empty_chain_verifies),
        cmocka_unit_test(test_details_are_canonical_json),
        cmocka_unit_test(test_prerendered_details),
        cmocka_unit_test(test_encoding_is_unambiguous),
        cmocka_unit_test(test_secret_looking_details_are_rejected),
        cmocka_unit_test(test_invalid_events_are_rejected),
        cmocka_unit_test(test_append_outside_a_write_job_is_refused),
        cmocka_unit_test(test_rolled_back_append_leaves_the_chain_intact),
        cmocka_unit_test(test_concurrent_appends_with_rollbacks),
        cmocka_unit_test(test_tamper_edit_is_named),
        cmocka_unit_test(test_tamper_edit_details_time_and_outcome),
        cmocka_unit_test(test_tamper_delete_is_named),
        cmocka_unit_test(test_tamper_swap_is_named),
        cmocka_unit_test(test_tamper_insert_is_named),
        cmocka_unit_test(test_cursor_round_trip),
        cmocka_unit_test(test_query_filters_and_pages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
