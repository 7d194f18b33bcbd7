/* Checkpoints: the chain head signed with the key store's ES256 key, verified by
 * bv_audit_verify; forged or altered checkpoints, a chain rewritten and rehashed after
 * the tampering, and records cut from the end are all detected. Uses the real file key
 * store in the test's data directory. */
#include "base/config.h"
#include "helpers.h"
#include "keys/keys.h"

typedef struct {
    fx_t *f;
    bv_config_t *cfg;
    bv_keys_t *keys;
} kfx_t;

static kfx_t *kfx_open(void)
{
    kfx_t *k = calloc(1, sizeof(*k));
    char err[256] = "";
    assert_non_null(k);
    k->f = fx_open();
    setenv("BOVEDA_DATA_DIR", k->f->dir, 1);
    setenv("BOVEDA_KEYSTORE", "file", 1);
    if (bv_config_load(NULL, &k->cfg, err, sizeof(err)) != 0)
        fail_msg("config: %s", err);
    assert_int_equal(bv_keys_open(k->cfg, k->f->st, &k->keys), 0);
    return k;
}

static void kfx_close(kfx_t *k)
{
    bv_keys_close(k->keys);
    bv_config_free(k->cfg);
    fx_close(k->f);
    free(k);
}

static bv_audit_verify_result_t verify(kfx_t *k)
{
    bv_audit_verify_result_t v;
    assert_int_equal(bv_audit_verify(k->f->st, k->keys, &v), 0);
    return v;
}

static void test_checkpoint_signs_the_head(void **state)
{
    (void)state;
    kfx_t *k = kfx_open();
    int64_t seq = -1;
    /* an empty chain has nothing to sign */
    assert_int_equal(bv_audit_checkpoint_ex(k->f->st, k->keys, &seq), 0);
    assert_int_equal(seq, 0);
    assert_int_equal(fx_count(k->f, "audit_checkpoints"), 0);

    fx_fill(k->f, 4, NULL);
    assert_int_equal(bv_audit_checkpoint_ex(k->f->st, k->keys, &seq), 0);
    assert_int_equal(seq, 4);
    assert_int_equal(bv_audit_checkpoint(k->f->st, k->keys), 0); /* head unchanged: no second one */
    assert_int_equal(fx_count(k->f, "audit_checkpoints"), 1);
    bv_audit_event_t ev = {.actor = "system", .action = "test.more", .outcome = "success"};
    assert_int_equal(bv_audit_record(k->f->st, &ev), 0);
    assert_int_equal(bv_audit_checkpoint_ex(k->f->st, k->keys, &seq), 0);
    assert_int_equal(seq, 5);
    assert_int_equal(fx_count(k->f, "audit_checkpoints"), 2);

    int64_t head = 0, last = 0;
    assert_int_equal(bv_audit_head(k->f->st, &head, &last), 0);
    assert_int_equal(head, 5);
    assert_int_equal(last, 5);

    bv_audit_verify_result_t v = verify(k);
    assert_true(v.ok);
    assert_int_equal(v.n_records, 5);
    assert_int_equal(v.n_checkpoints, 2);

    /* the stored signature is a valid ES256 signature over the documented message */
    sqlite3 *db;
    sqlite3_stmt *s;
    bv_buf_t msg = {0};
    assert_int_equal(sqlite3_open(k->f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT seq, hash, time, kid, alg, signature FROM audit_checkpoints "
                                        "WHERE seq = 5",
                                        -1, &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 4), "ES256");
    assert_int_equal(sqlite3_column_bytes(s, 5), 64);
    assert_int_equal(
        bv_audit_encode_checkpoint(&msg, 5, sqlite3_column_blob(s, 1), sqlite3_column_int64(s, 2)), 0);
    assert_int_equal(bv_keys_verify(k->keys, (const char *)sqlite3_column_text(s, 3), msg.data, msg.len,
                                    sqlite3_column_blob(s, 5), 64),
                     0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    bv_buf_free(&msg);
    kfx_close(k);
}

static void flip_signature_bit(fx_t *f)
{
    sqlite3 *db;
    sqlite3_stmt *s;
    unsigned char sig[512];
    int n;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT signature FROM audit_checkpoints", -1, &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    n = sqlite3_column_bytes(s, 0);
    assert_true(n > 20 && n <= (int)sizeof(sig));
    memcpy(sig, sqlite3_column_blob(s, 0), (size_t)n);
    sqlite3_finalize(s);
    sig[20] ^= 0x01;
    assert_int_equal(sqlite3_prepare_v2(db, "UPDATE audit_checkpoints SET signature = ?", -1, &s, NULL),
                     SQLITE_OK);
    sqlite3_bind_blob(s, 1, sig, n, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
    sqlite3_close(db);
}

static void test_forged_checkpoint_signature_is_detected(void **state)
{
    (void)state;
    static const char *const forgeries[] = {
        "FLIP", /* one bit of the signature flipped (done in C below) */
        /* a random signature */
        "UPDATE audit_checkpoints SET signature = randomblob(64)",
        /* the checkpoint moved to another seq (its signature covers the seq) */
        "UPDATE audit_checkpoints SET seq = 2, hash = (SELECT hash FROM audit_log WHERE seq = 2)",
        /* its time changed */
        "UPDATE audit_checkpoints SET time = time - 1",
        /* an unknown key id */
        "UPDATE audit_checkpoints SET kid = 'no-such-key'",
        NULL,
    };
    for (const char *const *p = forgeries; *p != NULL; p++) {
        kfx_t *k = kfx_open();
        fx_fill(k->f, 3, NULL);
        assert_int_equal(bv_audit_checkpoint(k->f->st, k->keys), 0);
        assert_true(verify(k).ok);
        if (strcmp(*p, "FLIP") == 0)
            flip_signature_bit(k->f);
        else
            fx_tamper(k->f, *p);
        bv_audit_verify_result_t v = verify(k);
        if (v.ok)
            fail_msg("not detected: %s", *p);
        assert_int_equal(v.failure, BV_AUDIT_BAD_CHECKPOINT);
        kfx_close(k);
    }
}

/* An intruder who edits a record and recomputes every later hash leaves a chain that is
 * consistent in itself; the signed checkpoint is what catches it. */
static void test_rehashed_chain_is_caught_by_the_checkpoint(void **state)
{
    (void)state;
    kfx_t *k = kfx_open();
    char ids[6][BV_UUID_STR_LEN + 1];
    fx_fill(k->f, 2, ids);
    assert_int_equal(bv_audit_checkpoint(k->f->st, k->keys), 0); /* seq 2 */
    for (int i = 2; i < 6; i++) {
        int64_t seq;
        assert_int_equal(fx_append(k->f, "user:bob", "test.later", NULL, &seq, ids[i]), 0);
    }
    assert_int_equal(bv_audit_checkpoint(k->f->st, k->keys), 0); /* seq 6 */

    /* rewrite record 4 and rehash 4..6 the way verify would compute them */
    sqlite3 *db;
    sqlite3_stmt *s, *u;
    bv_buf_t scratch = {0};
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char prev[32];
    assert_int_equal(sqlite3_open(k->f->db, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db, "UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 4", NULL, NULL, NULL), 0);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT hash FROM audit_log WHERE seq = 3", -1, &s, NULL), 0);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    memcpy(prev, sqlite3_column_blob(s, 0), 32);
    sqlite3_finalize(s);
    for (int seq = 4; seq <= 6; seq++) {
        assert_int_equal(sqlite3_prepare_v2(db,
                                            "SELECT id, time, actor, action, resource, outcome, source_ip, "
                                            "request_id, details FROM audit_log WHERE seq = ?",
                                            -1, &s, NULL),
                         0);
        sqlite3_bind_int64(s, 1, seq);
        assert_int_equal(sqlite3_step(s), SQLITE_ROW);
        bv_audit_row_t r = {.seq = seq,
                            .id = (const char *)sqlite3_column_text(s, 0),
                            .time = sqlite3_column_int64(s, 1),
                            .actor = (const char *)sqlite3_column_text(s, 2),
                            .action = (const char *)sqlite3_column_text(s, 3),
                            .resource = (const char *)sqlite3_column_text(s, 4),
                            .outcome = (const char *)sqlite3_column_text(s, 5),
                            .source_ip = (const char *)sqlite3_column_text(s, 6),
                            .request_id = (const char *)sqlite3_column_text(s, 7),
                            .details = (const char *)sqlite3_column_text(s, 8),
                            .details_len = (size_t)sqlite3_column_bytes(s, 8),
                            .prev_hash = prev,
                            .prev_hash_len = 32};
        unsigned char h[32];
        assert_int_equal(bv_audit_hash_record(ctx, &scratch, &r, h), 0);
        sqlite3_finalize(s);
        assert_int_equal(sqlite3_prepare_v2(db, "UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?",
                                            -1, &u, NULL),
                         0);
        sqlite3_bind_blob(u, 1, prev, 32, SQLITE_TRANSIENT);
        sqlite3_bind_blob(u, 2, h, 32, SQLITE_TRANSIENT);
        sqlite3_bind_int64(u, 3, seq);
        assert_int_equal(sqlite3_step(u), SQLITE_DONE);
        sqlite3_finalize(u);
        memcpy(prev, h, 32);
    }
    sqlite3_close(db);
    EVP_MD_CTX_free(ctx);
    bv_buf_free(&scratch);

    /* the chain alone passes (verify cannot check the checkpoints without keys) ... */
    bv_audit_verify_result_t v;
    assert_int_equal(bv_audit_verify(k->f->st, NULL, &v), BV_EKEYSTORE);
    assert_true(v.ok);
    assert_int_equal(v.n_records, 6);
    /* ... with them it is caught, and narrowed to the records after the last good one */
    v = verify(k);
    assert_false(v.ok);
    assert_int_equal(v.failure, BV_AUDIT_ALTERED);
    assert_int_equal(v.seq, 6);
    assert_string_equal(v.id, ids[5]);
    assert_non_null(strstr(v.detail, "seq 3..6"));
    kfx_close(k);
}

static void test_records_cut_from_the_end_are_detected(void **state)
{
    (void)state;
    kfx_t *k = kfx_open();
    fx_fill(k->f, 5, NULL);
    assert_int_equal(bv_audit_checkpoint(k->f->st, k->keys), 0);
    fx_tamper(k->f, "DELETE FROM audit_log WHERE seq >= 4");
    bv_audit_verify_result_t v = verify(k);
    assert_false(v.ok);
    assert_int_equal(v.failure, BV_AUDIT_REMOVED);
    assert_int_equal(v.seq, 4);
    assert_int_equal(v.n_records, 3);
    kfx_close(k);
}

/* A checkpoint fault below the chain's first fault is the one reported. */
static void test_lowest_fault_is_reported(void **state)
{
    (void)state;
    kfx_t *k = kfx_open();
    char ids[4][BV_UUID_STR_LEN + 1];
    fx_fill(k->f, 2, ids);
    assert_int_equal(bv_audit_checkpoint(k->f->st, k->keys), 0);
    assert_int_equal(fx_append(k->f, "system", "x.y", NULL, NULL, ids[2]), 0);
    assert_int_equal(fx_append(k->f, "system", "x.y", NULL, NULL, ids[3]), 0);
    fx_tamper(k->f, "UPDATE audit_checkpoints SET signature = randomblob(64) WHERE seq = 2;"
                    "UPDATE audit_log SET action = 'x.z' WHERE seq = 4");
    bv_audit_verify_result_t v = verify(k);
    assert_int_equal(v.failure, BV_AUDIT_BAD_CHECKPOINT);
    assert_int_equal(v.seq, 2);
    fx_tamper(k->f, "UPDATE audit_log SET action = 'x.z' WHERE seq = 1");
    v = verify(k);
    assert_int_equal(v.failure, BV_AUDIT_ALTERED);
    assert_int_equal(v.seq, 1);
    assert_string_equal(v.id, ids[0]);
    /* a record with an impossible seq sorts before every checkpoint */
    fx_tamper(k->f, "INSERT INTO audit_log SELECT 0, 'forged-id', time, actor, action, resource, outcome,"
                    " source_ip, request_id, details, prev_hash, hash FROM audit_log WHERE seq = 1");
    v = verify(k);
    assert_int_equal(v.failure, BV_AUDIT_INSERTED);
    assert_int_equal(v.seq, 0);
    assert_string_equal(v.id, "forged-id");
    kfx_close(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoint_signs_the_head),
        cmocka_unit_test(test_forged_checkpoint_signature_is_detected),
        cmocka_unit_test(test_rehashed_chain_is_caught_by_the_checkpoint),
        cmocka_unit_test(test_records_cut_from_the_end_are_detected),
        cmocka_unit_test(test_lowest_fault_is_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
