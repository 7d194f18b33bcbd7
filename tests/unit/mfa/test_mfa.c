/* OTP challenges and TOTP soft tokens over a real store and file key store: binding
 * canonicalisation, expiry, reuse, attempt limit, rate limit, a code for operation A not
 * verifying operation B, proofs single use, TOTP replay and drift, recovery codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "base/config.h"
#include "base/errors.h"
#include "keys/keys.h"
#include "mfa/internal.h"
#include "mfa/otp.h"
#include "store/store.h"

static int64_t fake_now;
static int64_t fake_clock(void)
{
    return fake_now;
}

typedef struct {
    char dir[64];
    bv_store_t *st;
    bv_config_t *cfg;
    bv_keys_t *keys;
    bv_mfa_t *m;
} fx_t;

#define T0    1700000000000000LL /* microseconds */
#define USER  "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
#define OTHER "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c"

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    char db[128], err[256] = "";
    snprintf(f->dir, sizeof(f->dir), "/tmp/bv-mfa-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(db, sizeof(db), "%s/boveda.db", f->dir);
    bv_store_options_t opt = {.path = db, .batch_max = 64, .busy_timeout_ms = 5000};
    assert_int_equal(bv_store_open(&opt, &f->st), 0);
    assert_int_equal(bv_store_migrate(f->st, NULL), 0);
    setenv("BOVEDA_DATA_DIR", f->dir, 1);
    setenv("BOVEDA_KEYSTORE", "file", 1);
    if (bv_config_load(NULL, &f->cfg, err, sizeof(err)) != 0)
        fail_msg("config: %s", err);
    assert_int_equal(bv_keys_open(f->cfg, f->st, &f->keys), 0);
    bv_mfa_options_t o = {.digits = 6, .ttl_us = 180000000, .max_challenges = 3, .max_attempts = 5};
    assert_int_equal(bv_mfa_open(f->st, f->keys, &o, &f->m), 0);
    fake_now = T0;
    f->m->now_us = fake_clock;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    char cmd[128];
    bv_mfa_close(f->m);
    bv_keys_close(f->keys);
    bv_store_close(f->st);
    bv_config_free(f->cfg);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", f->dir);
    free(f);
    return 0;
}

static void binding_of(const char *amount, const char *cur, const char *src, const char *dst,
                       unsigned char out[32])
{
    bv_mfa_operation_t op = {amount, cur, src, dst};
    assert_int_equal(bv_mfa_binding(&op, out, NULL), 0);
}

static void test_binding(void **state)
{
    (void)state;
    unsigned char a[32], b[32], want[32];
    const char *field = NULL;
    /* the documented encoding, computed independently */
    static const char enc[] = "boveda-mfa-binding/v1\n3:EUR\n5:12550\n4:ES01\n4:ES02\n";
    unsigned int len = 32;
    EVP_Digest(enc, sizeof(enc) - 1, want, &len, EVP_sha256(), NULL);
    binding_of("125.50", "EUR", "ES01", "ES02", a);
    assert_memory_equal(a, want, 32);
    binding_of("125.5", "EUR", "ES01", "ES02", b); /* same amount, other spelling */
    assert_memory_equal(a, b, 32);
    binding_of("125.51", "EUR", "ES01", "ES02", b);
    assert_memory_not_equal(a, b, 32);
    binding_of("125.50", "USD", "ES01", "ES02", b);
    assert_memory_not_equal(a, b, 32);
    binding_of("125.50", "EUR", "ES02", "ES01", b); /* swapped accounts */
    assert_memory_not_equal(a, b, 32);
    binding_of("125.50", "EUR", "ES0", "1ES02", b); /* boundary shifted between fields */
    assert_memory_not_equal(a, b, 32);
    binding_of("12550", "JPY", "ES01", "ES02", b); /* same minor units, other currency */
    assert_memory_not_equal(a, b, 32);
    struct {
        bv_mfa_operation_t op;
        const char *field;
    } bad[] = {
        {{"1.234", "EUR", "a", "b"}, "amount"},   {{"0", "EUR", "a", "b"}, "amount"},
        {{"-5", "EUR", "a", "b"}, "amount"},      {{"1e3", "EUR", "a", "b"}, "amount"},
        {{"5", "eur", "a", "b"}, "currency"},     {{"5", "ZZZ", "a", "b"}, "currency"},
        {{"5", "EUR", "", "b"}, "source"},        {{"5", "EUR", "a", "b\n"}, "destination"},
        {{"5", "EUR", "a", NULL}, "destination"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(bv_mfa_binding(&bad[i].op, b, &field), BV_EINVALID);
        assert_string_equal(field, bad[i].field);
    }
}

static bv_mfa_challenge_req_t sms_req(const char *user, bv_mfa_purpose_t p, const unsigned char *binding)
{
    bv_mfa_challenge_req_t r = {
        .user_id = user, .purpose = p, .channel = BV_MFA_SMS, .binding = binding, .phone = "+34600111222"};
    return r;
}

typedef struct {
    const char *user, *proof;
    const unsigned char *binding;
    int64_t now;
} consume_t;

static int consume_job(bv_tx_t *tx, void *arg)
{
    consume_t *c = arg;
    return mfa_consume_proof_at(tx, c->user, c->proof, c->binding, c->now);
}

static int consume(fx_t *f, const char *user, const char *proof, const unsigned char *binding)
{
    consume_t c = {user, proof, binding, fake_now};
    return bv_store_write(f->st, consume_job, &c);
}

static void test_transfer_binding_and_proof(void **state)
{
    fx_t *f = *state;
    unsigned char a[32], b[32];
    bv_mfa_challenge_t ch;
    bv_mfa_verify_result_t r;
    binding_of("100.00", "EUR", "acc-1", "acc-2", a);
    binding_of("900.00", "EUR", "acc-1", "acc-9", b);
    bv_mfa_challenge_req_t req = sms_req(USER, BV_MFA_TRANSFER, a);
    assert_int_equal(mfa_challenge_create_code(f->m, &req, "314159", &ch), 0);
    assert_int_equal(ch.expires_at - ch.created_at, 180000000);
    /* the right code for operation B does not verify a challenge for A */
    assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, "314159", b, NULL, NULL, &r),
                     BV_EOTP_INVALID);
    assert_int_equal(r.attempts_left, 4);
    assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, "314159", NULL, NULL, NULL, &r),
                     BV_EOTP_INVALID);
    assert_int_equal(r.attempts_left, 3);
    /* another user's challenge does not exist for them */
    assert_int_equal(bv_mfa_challenge_verify(f->m, OTHER, ch.id, "314159", a, NULL, NULL, &r), BV_ENOTFOUND);
    assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, "314159", a, NULL, NULL, &r), 0);
    assert_int_equal(strlen(r.proof), BV_MFA_PROOF_LEN);
    assert_int_equal(r.proof_expires_at, fake_now + BV_MFA_PROOF_TTL_US);
    assert_int_equal(r.purpose, BV_MFA_TRANSFER);
    /* single use */
    bv_mfa_verify_result_t r2;
    assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, "314159", a, NULL, NULL, &r2), BV_EOTP_USED);
    /* the proof: only for this user and this operation, once */
    assert_int_equal(consume(f, USER, r.proof, b), BV_EOTP_INVALID);
    assert_int_equal(consume(f, OTHER, r.proof, a), BV_EOTP_INVALID);
    assert_int_equal(consume(f, USER, r.proof, NULL), BV_EOTP_INVALID);
    assert_int_equal(consume(f, USER, "mfp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", a), BV_EOTP_INVALID);
    assert_int_equal(consume(f, USER, r.proof, a), 0);
    assert_int_equal(consume(f, USER, r.proof, a), BV_EOTP_USED);
    /* a transfer challenge without binding is refused */
    bv_mfa_challenge_req_t unbound = sms_req(USER, BV_MFA_TRANSFER, NULL);
    assert_int_equal(mfa_challenge_create_code(f->m, &unbound, "111111", &ch), BV_EINVALID);
}

static void test_proof_expiry(void **state)
{
    fx_t *f = *state;
    bv_mfa_challenge_t ch;
    bv_mfa_verify_result_t r;
    bv_mfa_challenge_req_t req = sms_req(USER, BV_MFA_LOGIN, NULL);
    assert_int_equal(mfa_challenge_create_code(f->m, &req, "000123", &ch), 0);
    assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, "000123", NULL, NULL, NULL, &r), 0);
    fake_now += BV_MFA_PROOF_TTL_US;
    assert_int_equal(consume(f, USER, r.proof, NULL), BV_EOTP_EXPIRED);
}

static void test_challenge_expiry(void **state)
{
    fx_t *f = *state;
    bv_mfa_challenge_t ch;
    bv_mfa_verify_result_t r;
    bv_mfa_challenge_req_t req = sms_req(USER, BV_MFA_PROFILE_CHANGE, NULL);
    assert_int_equal(mfa_challenge_create_code(f->m, &req, "424242", &ch), 0);
    fake_now = ch.expires_at - 1;
    assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, "000000", NULL, NULL, NULL, &r),
                     BV_EOTP_INVALID);
    fake_now = ch.expires_at;
    assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, "424242", NULL, NULL, NULL, &r),
                     BV_EOTP_EXPIRED);
}

static void test_attempt_limit(void **state)
{
    fx_t *f = *state;
    bv_mfa_challenge_t ch;
    bv_mfa_verify_result_t r;
    bv_mfa_challenge_req_t req = sms_req(USER, BV_MFA_LOGIN, NULL);
    assert_int_equal(mfa_challenge_create_code(f->m, &req, "987654", &ch), 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, "987655", NULL, NULL, NULL, &r),
                         BV_EOTP_INVALID);
        assert_int_equal(r.attempts_left, 4 - i);
    }
    assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, "12", NULL, NULL, NULL, &r), BV_EOTP_LOCKED);
    /* dead: even the right code is refused now */
    assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, "987654", NULL, NULL, NULL, &r),
                     BV_EOTP_LOCKED);
}

static void test_rate_limit(void **state)
{
    fx_t *f = *state;
    bv_mfa_challenge_t ch;
    bv_mfa_challenge_req_t req = sms_req(USER, BV_MFA_LOGIN, NULL),
                           other = sms_req(OTHER, BV_MFA_LOGIN, NULL);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(bv_mfa_challenge_create(f->m, &req, &ch), 0);
        fake_now += 60000000;
    }
    assert_int_equal(bv_mfa_challenge_create(f->m, &req, &ch), BV_EOTP_RATE);
    assert_int_equal(bv_mfa_challenge_create(f->m, &other, &ch), 0); /* per user */
    fake_now = T0 + MFA_RATE_WINDOW_US;                              /* the first one left the window */
    assert_int_equal(bv_mfa_challenge_create(f->m, &req, &ch), 0);
    assert_int_equal(bv_mfa_challenge_create(f->m, &req, &ch), BV_EOTP_RATE);
}

typedef struct {
    const char *sql;
    char text[8192];
    int64_t n;
} query_t;

static int query_job(bv_tx_t *tx, void *arg)
{
    query_t *q = arg;
    bv_stmt_t *s = bv_tx_prepare(tx, q->sql);
    int rc;
    q->text[0] = '\0';
    q->n = 0;
    while ((rc = bv_stmt_step(s)) == BV_ROW) {
        const char *t = bv_stmt_text(s, 0);
        size_t used = strlen(q->text);
        snprintf(q->text + used, sizeof(q->text) - used, "%s|", t ? t : "");
        q->n++;
    }
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

/* The random code reaches the SMS queue (only there) and verifies; audit never holds it. */
static void test_random_code_delivery_and_audit(void **state)
{
    fx_t *f = *state;
    bv_mfa_challenge_t ch;
    bv_mfa_verify_result_t r;
    query_t q = {.sql = "SELECT body FROM queue_messages WHERE queue = 'sms'"};
    bv_mfa_challenge_req_t req = sms_req(USER, BV_MFA_DEVICE_ENROLMENT, NULL);
    assert_int_equal(bv_mfa_challenge_create(f->m, &req, &ch), 0);
    assert_int_equal(bv_store_read(f->st, query_job, &q), 0);
    assert_int_equal(q.n, 1);
    json_t *msg = json_loads(q.text, JSON_DISABLE_EOF_CHECK, NULL);
    assert_non_null(msg);
    const char *code = json_string_value(json_object_get(json_object_get(msg, "vars"), "otp"));
    assert_non_null(code);
    assert_int_equal(strlen(code), 6);
    char saved[8];
    snprintf(saved, sizeof(saved), "%s", code);
    json_decref(msg);
    assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, saved, NULL, "10.0.0.1", "req-1", &r), 0);
    query_t a = {.sql = "SELECT action || ' ' || outcome || ' ' || details FROM audit_log ORDER BY seq"};
    assert_int_equal(bv_store_read(f->st, query_job, &a), 0);
    assert_non_null(strstr(a.text, "mfa.challenge.create success"));
    assert_non_null(strstr(a.text, "mfa.challenge.verify success"));
    assert_null(strstr(a.text, saved));
    query_t c = {.sql = "SELECT hex(code_mac) FROM mfa_challenges"};
    assert_int_equal(bv_store_read(f->st, query_job, &c), 0);
    assert_null(strstr(c.text, saved));
}

/* ---- TOTP ---- */

static void totp_at(const unsigned char *seed, size_t n, int64_t t_us, char out[16])
{
    assert_int_equal(bv_otp_totp(seed, n, t_us / 1000000, 30, 6, BV_OTP_SHA1, out), 0);
}

static void test_totp(void **state)
{
    fx_t *f = *state;
    bv_mfa_enrolment_t e;
    unsigned char seed[64];
    char code[16];
    int active = -1, n;
    bv_mfa_challenge_t ch;
    bv_mfa_verify_result_t r;
    bv_mfa_challenge_req_t req = {.user_id = USER, .purpose = BV_MFA_LOGIN, .channel = BV_MFA_TOTP};
    /* no token yet: a totp challenge is refused */
    assert_int_equal(mfa_challenge_create_code(f->m, &req, "", &ch), BV_EINVALID);
    fake_now = 1700000010LL * 1000000; /* 10 s into step 56666667 */
    assert_int_equal(bv_mfa_totp_enrol(f->m, USER, "ana@example.com", NULL, &e), 0);
    assert_non_null(strstr(e.uri, "otpauth://totp/Boveda:ana%40example.com?secret="));
    assert_non_null(strstr(e.uri, e.secret));
    assert_non_null(strstr(e.qr_svg.data, "<svg"));
    n = bv_base32_decode(e.secret, seed, sizeof(seed));
    assert_int_equal(n, 20);
    char rc0[BV_MFA_RECOVERY_LEN + 1], rc1[BV_MFA_RECOVERY_LEN + 1];
    snprintf(rc0, sizeof(rc0), "%s", e.recovery_codes[0]);
    snprintf(rc1, sizeof(rc1), "%s", e.recovery_codes[1]);
    assert_string_not_equal(rc0, rc1);
    bv_mfa_enrolment_clear(&e);
    assert_int_equal(bv_mfa_totp_active(f->m, USER, &active), 0);
    assert_int_equal(active, 0);
    totp_at(seed, (size_t)n, fake_now, code);
    char wrong[16];
    snprintf(wrong, sizeof(wrong), "%s", code);
    wrong[0] = wrong[0] == '9' ? '0' : (char)(wrong[0] + 1);
    assert_int_equal(bv_mfa_totp_confirm(f->m, USER, wrong, NULL), BV_EOTP_INVALID);
    assert_int_equal(bv_mfa_totp_confirm(f->m, USER, code, NULL), 0);
    assert_int_equal(bv_mfa_totp_active(f->m, USER, &active), 0);
    assert_int_equal(active, 1);
    assert_int_equal(bv_mfa_totp_confirm(f->m, USER, code, NULL), BV_ENOTFOUND); /* nothing pending */
    /* a second enrolment while active conflicts */
    assert_int_equal(bv_mfa_totp_enrol(f->m, USER, "ana", NULL, &e), BV_ECONFLICT);

    /* replay: the code used for confirmation (same step) is refused */
    assert_int_equal(mfa_challenge_create_code(f->m, &req, "", &ch), 0);
    assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, code, NULL, NULL, NULL, &r), BV_EOTP_INVALID);
    /* drift: two steps ahead is refused, one step ahead accepted */
    totp_at(seed, (size_t)n, fake_now + 60000000, code);
    assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, code, NULL, NULL, NULL, &r), BV_EOTP_INVALID);
    totp_at(seed, (size_t)n, fake_now + 30000000, code);
    assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, code, NULL, NULL, NULL, &r), 0);
    /* one step behind the clock would be within the window, but it is not after the last accepted step */
    fake_now += 30000000;
    assert_int_equal(mfa_challenge_create_code(f->m, &req, "", &ch), 0);
    totp_at(seed, (size_t)n, fake_now - 30000000, code);
    assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, code, NULL, NULL, NULL, &r), BV_EOTP_INVALID);
    /* recovery codes: single use */
    assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, rc0, NULL, NULL, NULL, &r), 0);
    fake_now += 30000000;
    assert_int_equal(mfa_challenge_create_code(f->m, &req, "", &ch), 0);
    assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, rc0, NULL, NULL, NULL, &r), BV_EOTP_INVALID);
    assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, rc1, NULL, NULL, NULL, &r), 0);
    /* revocation */
    assert_int_equal(bv_mfa_totp_revoke(f->m, USER, NULL), 0);
    assert_int_equal(bv_mfa_totp_revoke(f->m, USER, NULL), BV_ENOTFOUND);
    assert_int_equal(bv_mfa_totp_active(f->m, USER, &active), 0);
    assert_int_equal(active, 0);
    /* the seed is stored encrypted, never in clear base32 or raw */
    query_t q = {.sql = "SELECT count(*) FROM mfa_totp"};
    assert_int_equal(bv_store_read(f->st, query_job, &q), 0);
    assert_string_equal(q.text, "0|");
}


/* ---- SHA-256 / SHA-512 tokens, resynchronisation, step-up proofs on the token ---- */

static int enrol_confirm(fx_t *f, bv_otp_alg_t alg, unsigned char seed[64], char recovery[BV_MFA_RECOVERY_LEN + 1],
                         char id_out[BV_UUID_STR_LEN + 1])
{
    bv_mfa_enrolment_t e;
    char code[16], want[64];
    f->m->opt.totp_alg = alg;
    assert_int_equal(bv_mfa_totp_enrol(f->m, USER, "ana", NULL, &e), 0);
    snprintf(want, sizeof(want), "&algorithm=%s&digits=6&period=30", mfa_alg_name(alg));
    assert_non_null(strstr(e.uri, want));
    assert_string_equal(e.algorithm, mfa_alg_name(alg));
    int n = bv_base32_decode(e.secret, seed, 64);
    assert_int_equal(n, (int)mfa_seed_len(alg));
    if (recovery != NULL)
        snprintf(recovery, BV_MFA_RECOVERY_LEN + 1, "%s", e.recovery_codes[0]);
    snprintf(id_out, BV_UUID_STR_LEN + 1, "%s", e.id);
    bv_mfa_enrolment_clear(&e);
    assert_int_equal(bv_otp_totp(seed, (size_t)n, fake_now / 1000000, 30, 6, alg, code), 0);
    assert_int_equal(bv_mfa_totp_confirm(f->m, USER, code, NULL), 0);
    return n;
}

static void test_totp_algorithms(void **state)
{
    fx_t *f = *state;
    static const bv_otp_alg_t algs[] = {BV_OTP_SHA1, BV_OTP_SHA256, BV_OTP_SHA512};
    static const size_t lens[] = {20, 32, 64};
    unsigned char seed[64];
    char id[BV_UUID_STR_LEN + 1], code[16];
    bv_mfa_challenge_t ch;
    bv_mfa_verify_result_t r;
    bv_mfa_totp_info_t info;
    bv_mfa_challenge_req_t req = {.user_id = USER, .purpose = BV_MFA_LOGIN, .channel = BV_MFA_TOTP};
    fake_now = 1700000010LL * 1000000;
    for (int i = 0; i < 3; i++) {
        int n = enrol_confirm(f, algs[i], seed, NULL, id);
        assert_int_equal((size_t)n, lens[i]);
        assert_int_equal(bv_mfa_totp_info(f->m, USER, &info), 0);
        assert_string_equal(info.algorithm, mfa_alg_name(algs[i]));
        assert_true(info.active);
        /* the next step's code with the token's own HMAC verifies; the SHA-1 code of the same
         * seed does not (unless the algorithm is SHA-1) */
        assert_int_equal(mfa_challenge_create_code(f->m, &req, "", &ch), 0);
        if (algs[i] != BV_OTP_SHA1) {
            bv_otp_totp(seed, (size_t)n, fake_now / 1000000 + 30, 30, 6, BV_OTP_SHA1, code);
            char own[16];
            bv_otp_totp(seed, (size_t)n, fake_now / 1000000 + 30, 30, 6, algs[i], own);
            if (strcmp(own, code) != 0)
                assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, code, NULL, NULL, NULL, &r),
                                 BV_EOTP_INVALID);
        }
        bv_otp_totp(seed, (size_t)n, fake_now / 1000000 + 30, 30, 6, algs[i], code);
        assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, code, NULL, NULL, NULL, &r), 0);
        assert_int_equal(bv_mfa_totp_revoke(f->m, USER, NULL), 0);
        fake_now += 60000000;
    }
    bv_mfa_options_t bad = f->m->opt;
    bad.totp_alg = (bv_otp_alg_t)7;
    bv_mfa_t *m2 = NULL;
    assert_int_equal(bv_mfa_open(f->st, f->keys, &bad, &m2), BV_EINVALID);
}

static int resync(fx_t *f, const unsigned char *seed, size_t n, int64_t step1, int64_t step2)
{
    char c1[16], c2[16];
    bv_otp_hotp(seed, n, (uint64_t)step1, 6, BV_OTP_SHA256, c1);
    bv_otp_hotp(seed, n, (uint64_t)step2, 6, BV_OTP_SHA256, c2);
    return bv_mfa_totp_resync(f->m, USER, c1, c2, NULL);
}

static void test_totp_resync(void **state)
{
    fx_t *f = *state;
    unsigned char seed[64];
    char id[BV_UUID_STR_LEN + 1], code[16];
    bv_mfa_challenge_t ch;
    bv_mfa_verify_result_t r;
    bv_mfa_totp_info_t info;
    bv_mfa_challenge_req_t req = {.user_id = USER, .purpose = BV_MFA_LOGIN, .channel = BV_MFA_TOTP};
    fake_now = 1700000010LL * 1000000;
    int64_t clock = fake_now / 1000000 / 30;
    size_t n = (size_t)enrol_confirm(f, BV_OTP_SHA256, seed, NULL, id); /* step `clock` accepted */

    /* no token: nothing to resynchronise */
    assert_int_equal(bv_mfa_totp_resync(f->m, OTHER, "123456", "654321", NULL), BV_ENOTFOUND);
    /* a device 4 steps ahead: its code is outside the ±1 window */
    assert_int_equal(mfa_challenge_create_code(f->m, &req, "", &ch), 0);
    bv_otp_hotp(seed, n, (uint64_t)(clock + 4), 6, BV_OTP_SHA256, code);
    assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, code, NULL, NULL, NULL, &r), BV_EOTP_INVALID);
    /* not consecutive, reversed, the same code twice, beyond the ±10 window: refused */
    assert_int_equal(resync(f, seed, n, clock + 3, clock + 5), BV_EOTP_INVALID);
    assert_int_equal(resync(f, seed, n, clock + 4, clock + 3), BV_EOTP_INVALID);
    assert_int_equal(resync(f, seed, n, clock + 4, clock + 4), BV_EOTP_INVALID);
    assert_int_equal(resync(f, seed, n, clock + 10, clock + 11), BV_EOTP_INVALID);
    assert_int_equal(resync(f, seed, n, clock - 12, clock - 11), BV_EOTP_INVALID);
    /* steps at or before the last accepted one are a replay even within the window */
    assert_int_equal(resync(f, seed, n, clock - 1, clock), BV_EOTP_INVALID);
    assert_int_equal(bv_mfa_totp_info(f->m, USER, &info), 0);
    assert_int_equal(info.drift, 0);
    /* the edge of the window (code2 at clock + 10) works */
    assert_int_equal(resync(f, seed, n, clock + 9, clock + 10), 0);
    assert_int_equal(bv_mfa_totp_info(f->m, USER, &info), 0);
    assert_int_equal(info.drift, 10);
    /* the drift applies: the device's next code verifies, its last one is a replay */
    bv_otp_hotp(seed, n, (uint64_t)(clock + 10), 6, BV_OTP_SHA256, code);
    assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, code, NULL, NULL, NULL, &r), BV_EOTP_INVALID);
    bv_otp_hotp(seed, n, (uint64_t)(clock + 11), 6, BV_OTP_SHA256, code);
    assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, code, NULL, NULL, NULL, &r), 0);
    /* a code for the bare clock is now two windows away */
    fake_now += 30000000;
    assert_int_equal(mfa_challenge_create_code(f->m, &req, "", &ch), 0);
    bv_otp_hotp(seed, n, (uint64_t)(clock + 1), 6, BV_OTP_SHA256, code);
    assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, code, NULL, NULL, NULL, &r), BV_EOTP_INVALID);
    /* resynchronising back (device fixed) to drift 0, later than the last accepted step: not
     * possible while last_step is ahead of the clock; it is once the clock caught up */
    fake_now += 12LL * 30000000;
    clock = fake_now / 1000000 / 30; /* original clock + 13 > last accepted (+11) */
    assert_int_equal(resync(f, seed, n, clock - 1, clock), 0);
    assert_int_equal(bv_mfa_totp_info(f->m, USER, &info), 0);
    assert_int_equal(info.drift, 0);
    query_t q = {.sql = "SELECT outcome FROM audit_log WHERE action = 'mfa.totp.resync' ORDER BY seq"};
    assert_int_equal(bv_store_read(f->st, query_job, &q), 0);
    assert_string_equal(q.text, "invalid|invalid|invalid|invalid|invalid|invalid|success|success|");
}

/* Verifies a fresh bound challenge with a recovery code-free TOTP path: returns its proof. */
static void proof_for(fx_t *f, const unsigned char binding[32], const char *code, char proof[BV_MFA_PROOF_LEN + 1])
{
    bv_mfa_challenge_t ch;
    bv_mfa_verify_result_t r;
    bv_mfa_challenge_req_t req = sms_req(USER, BV_MFA_DEVICE_ENROLMENT, binding);
    assert_int_equal(mfa_challenge_create_code(f->m, &req, code, &ch), 0);
    assert_int_equal(bv_mfa_challenge_verify(f->m, USER, ch.id, code, binding, NULL, NULL, &r), 0);
    snprintf(proof, BV_MFA_PROOF_LEN + 1, "%s", r.proof);
}

static void test_step_up_token_operations(void **state)
{
    fx_t *f = *state;
    unsigned char seed[64], revoke_b[32], replace_b[32], other[32];
    char id[BV_UUID_STR_LEN + 1], proof[BV_MFA_PROOF_LEN + 1], proof2[BV_MFA_PROOF_LEN + 1];
    bv_mfa_enrolment_t e;
    bv_mfa_totp_info_t info;
    f->m->opt.max_challenges = 50;
    fake_now = 1700000010LL * 1000000;
    enrol_confirm(f, BV_OTP_SHA1, seed, NULL, id);
    assert_int_equal(bv_mfa_op_binding("totp.revoke", USER, id, revoke_b), 0);
    assert_int_equal(bv_mfa_op_binding("totp.replace", USER, id, replace_b), 0);
    assert_int_equal(bv_mfa_op_binding("totp.revoke", OTHER, id, other), 0);
    assert_memory_not_equal(revoke_b, replace_b, 32);
    assert_memory_not_equal(revoke_b, other, 32);
    assert_int_equal(bv_mfa_op_binding("", USER, id, other), BV_EINVALID);

    /* no proof, a proof of another operation: refused, nothing changes */
    assert_int_equal(bv_mfa_totp_revoke_with_proof(f->m, USER, NULL, NULL), BV_EOTP_INVALID);
    proof_for(f, replace_b, "111111", proof);
    assert_int_equal(bv_mfa_totp_revoke_with_proof(f->m, USER, proof, NULL), BV_EOTP_INVALID);
    assert_int_equal(bv_mfa_totp_info(f->m, USER, &info), 0);
    assert_true(info.active);
    /* replace with the proof bound to "replace this token": a new pending token */
    assert_int_equal(bv_mfa_totp_replace(f->m, USER, "ana", NULL, NULL, &e), BV_EOTP_INVALID);
    assert_int_equal(bv_mfa_totp_enrol(f->m, USER, "ana", NULL, &e), BV_ECONFLICT);
    assert_int_equal(bv_mfa_totp_replace(f->m, USER, "ana", proof, NULL, &e), 0);
    bv_mfa_enrolment_clear(&e);
    assert_int_equal(bv_mfa_totp_info(f->m, USER, &info), 0);
    assert_false(info.active);
    assert_string_not_equal(info.id, id);
    /* a pending token goes without a proof */
    assert_int_equal(bv_mfa_totp_revoke_with_proof(f->m, USER, NULL, NULL), 0);
    assert_int_equal(bv_mfa_totp_revoke_with_proof(f->m, USER, NULL, NULL), BV_ENOTFOUND);

    /* revoke: the proof works once */
    fake_now += 60000000;
    enrol_confirm(f, BV_OTP_SHA1, seed, NULL, id);
    assert_int_equal(bv_mfa_op_binding("totp.revoke", USER, id, revoke_b), 0);
    proof_for(f, revoke_b, "222222", proof2);
    assert_int_equal(bv_mfa_totp_revoke_with_proof(f->m, USER, proof2, NULL), 0);
    fake_now += 60000000;
    enrol_confirm(f, BV_OTP_SHA1, seed, NULL, id);
    assert_int_equal(bv_mfa_totp_revoke_with_proof(f->m, USER, proof2, NULL), BV_EOTP_INVALID);
    consume_t c = {USER, proof2, revoke_b, fake_now};
    assert_int_equal(bv_store_write(f->st, consume_job, &c), BV_EOTP_USED);
    query_t q = {.sql = "SELECT details FROM audit_log WHERE action = 'mfa.totp.revoke' ORDER BY seq"};
    assert_int_equal(bv_store_read(f->st, query_job, &q), 0);
    assert_int_equal(q.n, 2);
    assert_non_null(strstr(q.text, "\"step_up\":true"));
}

static void test_mask(void **state)
{
    (void)state;
    char out[96];
    mfa_mask_phone("+34600111222", out, sizeof(out));
    assert_string_equal(out, "+34*****1222");
    mfa_mask_phone("+1555", out, sizeof(out));
    assert_string_equal(out, "****");
    mfa_mask_email("ana.garcia@example.com", out, sizeof(out));
    assert_string_equal(out, "a***@example.com");
    mfa_mask_email("nobody", out, sizeof(out));
    assert_string_equal(out, "***");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binding),
        cmocka_unit_test_setup_teardown(test_transfer_binding_and_proof, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proof_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_challenge_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attempt_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_code_delivery_and_audit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_totp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_totp_algorithms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_totp_resync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_step_up_token_operations, setup, teardown),
        cmocka_unit_test(test_mask),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
