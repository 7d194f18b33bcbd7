/* OTP challenges: creation (rate limit, code, delivery), verification (binding, attempts,
 * single use) and the proofs a verified challenge yields. See mfa.h and docs/mfa.md. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "base/log.h"
#include "ledger/ledger.h"
#include "mfa/internal.h"
#include "notify/notify.h"

static bv_mfa_t *instance;

static const char *const purpose_names[] = {"login", "transfer", "profile_change", "device_enrolment"};
static const char *const channel_names[] = {"sms", "email", "totp"};

const char *bv_mfa_purpose_name(bv_mfa_purpose_t p)
{
    return (unsigned)p < 4 ? purpose_names[p] : NULL;
}

const char *bv_mfa_channel_name(bv_mfa_channel_t c)
{
    return (unsigned)c < 3 ? channel_names[c] : NULL;
}

int bv_mfa_purpose_parse(const char *s, bv_mfa_purpose_t *out)
{
    for (int i = 0; s != NULL && i < 4; i++)
        if (strcmp(s, purpose_names[i]) == 0) {
            *out = (bv_mfa_purpose_t)i;
            return 0;
        }
    return BV_EINVALID;
}

int bv_mfa_channel_parse(const char *s, bv_mfa_channel_t *out)
{
    for (int i = 0; s != NULL && i < 3; i++)
        if (strcmp(s, channel_names[i]) == 0) {
            *out = (bv_mfa_channel_t)i;
            return 0;
        }
    return BV_EINVALID;
}

void mfa_actor(const char *user_id, char *out, size_t n)
{
    snprintf(out, n, "user:%s", user_id);
}

/* ---- service ---- */

int bv_mfa_options_load(const bv_config_t *cfg, bv_mfa_options_t *out)
{
    memset(out, 0, sizeof(*out));
    out->digits = (int)bv_config_int(cfg, "MFA_OTP_DIGITS");
    out->ttl_us = bv_config_int(cfg, "MFA_OTP_TTL_S") * 1000000LL;
    out->max_challenges = (int)bv_config_int(cfg, "MFA_MAX_CHALLENGES_15MIN");
    out->max_attempts = (int)bv_config_int(cfg, "MFA_MAX_ATTEMPTS");
    const char *policy = bv_config_str(cfg, "MFA_LOGIN_POLICY"), *alg = bv_config_str(cfg, "MFA_TOTP_ALGORITHM");
    out->login_policy_all = policy == NULL || strcmp(policy, "enrolled") != 0;
    out->totp_alg = alg != NULL && strcmp(alg, "sha256") == 0   ? BV_OTP_SHA256
                    : alg != NULL && strcmp(alg, "sha512") == 0 ? BV_OTP_SHA512
                                                                : BV_OTP_SHA1;
    if (out->digits != 4 && out->digits != 6)
        return BV_ECONFIG;
    return 0;
}

int bv_mfa_open(bv_store_t *store, bv_keys_t *keys, const bv_mfa_options_t *opt, bv_mfa_t **out)
{
    bv_mfa_t *m = NULL;
    int rc = BV_EINVALID;
    *out = NULL;
    if (store == NULL || keys == NULL || (opt->digits != 4 && opt->digits != 6) || opt->ttl_us < 1000000 ||
        opt->ttl_us > 300 * 1000000LL || opt->max_challenges < 1 || opt->max_attempts < 1 ||
        mfa_alg_name(opt->totp_alg) == NULL)
        goto out;
    rc = BV_ENOMEM;
    if ((m = calloc(1, sizeof(*m))) == NULL)
        goto out;
    m->store = store;
    m->keys = keys;
    m->opt = *opt;
    snprintf(m->issuer, sizeof(m->issuer), "%s", opt->issuer ? opt->issuer : "Boveda");
    m->opt.issuer = m->issuer;
    m->now_us = bv_now_us;
    /* HMACs and seed decryption happen inside write jobs: the keys must exist beforehand. */
    if ((rc = bv_keys_prepare(keys, "otp", BV_KEYS_HMAC)) != 0 ||
        (rc = bv_keys_prepare(keys, "totp", BV_KEYS_AEAD)) != 0 ||
        (rc = bv_keys_register_field(keys, "mfa_totp", "id", "seed", "totp")) != 0)
        goto out;
    *out = m;
    m = NULL;
    rc = 0;
out:
    free(m);
    return rc;
}

void bv_mfa_close(bv_mfa_t *m)
{
    if (instance == m)
        instance = NULL;
    free(m);
}

bv_mfa_t *bv_mfa_instance(void)
{
    return instance;
}

/* ---- binding ---- */

static int text_ok(const char *s, size_t max)
{
    size_t n;
    if (s == NULL || (n = strlen(s)) == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static int put_field(EVP_MD_CTX *ctx, const char *v)
{
    char len[24];
    int n = snprintf(len, sizeof(len), "%zu:", strlen(v));
    return EVP_DigestUpdate(ctx, len, (size_t)n) == 1 && EVP_DigestUpdate(ctx, v, strlen(v)) == 1 &&
                   EVP_DigestUpdate(ctx, "\n", 1) == 1
               ? 0
               : BV_ECRYPTO;
}

int bv_mfa_binding(const bv_mfa_operation_t *op, unsigned char out[32], const char **field_out)
{
    static const char tag[] = "boveda-mfa-binding/v1\n";
    const char *field = NULL;
    char minor[24];
    int64_t amount = 0;
    int exponent, rc = BV_EINVALID;
    unsigned int len = 0;
    EVP_MD_CTX *ctx = NULL;
    if (op->currency == NULL || strlen(op->currency) != 3 ||
        (exponent = bv_ledger_currency_exponent(op->currency)) < 0) {
        field = "currency";
        goto out;
    }
    if (op->amount == NULL || strlen(op->amount) > 32 ||
        bv_ledger_amount_parse(op->amount, exponent, false, &amount) != 0 || amount <= 0) {
        field = "amount";
        goto out;
    }
    if (!text_ok(op->source, 128)) {
        field = "source";
        goto out;
    }
    if (!text_ok(op->destination, 128)) {
        field = "destination";
        goto out;
    }
    snprintf(minor, sizeof(minor), "%lld", (long long)amount);
    rc = BV_ECRYPTO;
    if ((ctx = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, tag, sizeof(tag) - 1) != 1 || put_field(ctx, op->currency) != 0 ||
        put_field(ctx, minor) != 0 || put_field(ctx, op->source) != 0 ||
        put_field(ctx, op->destination) != 0 || EVP_DigestFinal_ex(ctx, out, &len) != 1 || len != 32)
        goto out;
    rc = 0;
out:
    EVP_MD_CTX_free(ctx);
    if (field_out != NULL)
        *field_out = field;
    return rc;
}

int bv_mfa_op_binding(const char *kind, const char *user_id, const char *object, unsigned char out[32])
{
    static const char tag[] = "boveda-mfa-binding/v1/op\n";
    unsigned int len = 0;
    int rc = BV_EINVALID;
    EVP_MD_CTX *ctx = NULL;
    if (!text_ok(kind, 64) || !text_ok(user_id, 128) || object == NULL || strlen(object) > 256)
        goto out;
    rc = BV_ECRYPTO;
    if ((ctx = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, tag, sizeof(tag) - 1) != 1 || put_field(ctx, kind) != 0 ||
        put_field(ctx, user_id) != 0 || put_field(ctx, object) != 0 || EVP_DigestFinal_ex(ctx, out, &len) != 1 ||
        len != 32)
        goto out;
    rc = 0;
out:
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* ---- challenges ---- */

/* HMAC(otp key, "challenge:" id ":" code). */
static int code_mac(bv_mfa_t *m, const char *id, const char *code, unsigned char out[32])
{
    char buf[128];
    int n = snprintf(buf, sizeof(buf), "challenge:%s:%s", id, code);
    int rc =
        (n > 0 && (size_t)n < sizeof(buf)) ? bv_keys_hmac(m->keys, "otp", buf, (size_t)n, out) : BV_EINVALID;
    OPENSSL_cleanse(buf, sizeof(buf));
    return rc;
}

/* A uniform code of `digits` decimal digits (rejection sampling: no modulo bias). */
static void draw_code(int digits, char out[16])
{
    uint32_t mod = 1, r;
    for (int i = 0; i < digits; i++)
        mod *= 10;
    uint32_t limit = (uint32_t)(UINT32_MAX - (UINT32_MAX % mod));
    do
        bv_random(&r, sizeof(r));
    while (r >= limit);
    snprintf(out, 16, "%0*u", digits, (unsigned)(r % mod));
    OPENSSL_cleanse(&r, sizeof(r));
}

typedef struct {
    bv_mfa_t *m;
    const bv_mfa_challenge_req_t *req;
    const char *code;
    bv_mfa_challenge_t *out;
    int outcome; /* BV_EOTP_RATE: refused (recorded) */
} create_arg_t;

static int audit(bv_tx_t *tx, const char *user_id, const char *action, const char *id, const char *outcome,
                 const char *ip, const char *rid, json_t *details)
{
    char actor[160], resource[96];
    mfa_actor(user_id, actor, sizeof(actor));
    snprintf(resource, sizeof(resource), "mfa_challenge:%s", id ? id : "");
    bv_audit_event_t ev = {.actor = actor,
                           .action = action,
                           .resource = id ? resource : NULL,
                           .outcome = outcome,
                           .source_ip = ip,
                           .request_id = rid,
                           .details = details};
    int rc = bv_audit_append(tx, &ev);
    json_decref(details);
    return rc;
}

typedef struct {
    const char *user_id, *action, *outcome, *ip, *rid;
    json_t *details;
} audit_arg_t;

static int tx_audit(bv_tx_t *tx, void *arg)
{
    audit_arg_t *a = arg;
    json_incref(a->details); /* audit() drops one reference; a retried job needs it again */
    return audit(tx, a->user_id, a->action, NULL, a->outcome, a->ip, a->rid, a->details);
}

int mfa_audit_write(bv_mfa_t *m, const char *user_id, const char *action, const char *outcome, const char *ip,
                    const char *rid, json_t *details)
{
    audit_arg_t a = {user_id, action, outcome, ip, rid, details};
    int rc = bv_store_run_tx(m->store, 1, tx_audit, &a);
    json_decref(details);
    return rc;
}

static int tx_create(bv_tx_t *tx, void *arg)
{
    create_arg_t *a = arg;
    const bv_mfa_challenge_req_t *r = a->req;
    bv_mfa_t *m = a->m;
    int64_t now = m->now_us(), count = 0;
    unsigned char mac[32];
    bv_stmt_t *s;
    json_t *vars = NULL;
    int rc;
    a->outcome = 0;
    s = bv_tx_prepare(tx, "SELECT count(*) FROM mfa_challenges WHERE user_id = ? AND created_at > ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, r->user_id, -1);
    bv_stmt_bind_int64(s, 2, now - MFA_RATE_WINDOW_US);
    rc = bv_stmt_step(s);
    if (rc == BV_ROW)
        count = bv_stmt_int64(s, 0);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    if (count >= m->opt.max_challenges) {
        a->outcome = BV_EOTP_RATE;
        return audit(tx, r->user_id, "mfa.challenge.create", NULL, "denied", r->source_ip, r->request_id,
                     json_pack("{s:s, s:s, s:s}", "reason", "rate_limited", "purpose",
                               bv_mfa_purpose_name(r->purpose), "channel", bv_mfa_channel_name(r->channel)));
    }
    if (r->channel == BV_MFA_TOTP) {
        s = bv_tx_prepare(tx, "SELECT 1 FROM mfa_totp WHERE user_id = ? AND status = 'active'");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_text(s, 1, r->user_id, -1);
        rc = bv_stmt_step(s);
        bv_stmt_reset(s);
        if (rc < 0)
            return rc;
        if (rc != BV_ROW)
            return BV_EINVALID;
    } else if ((rc = code_mac(m, a->out->id, a->code, mac)) != 0) {
        return rc;
    }
    s = bv_tx_prepare(tx,
                      "INSERT INTO mfa_challenges (id, user_id, purpose, channel, binding, code_mac, status, "
                      "attempts, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->out->id, -1);
    bv_stmt_bind_text(s, 2, r->user_id, -1);
    bv_stmt_bind_text(s, 3, bv_mfa_purpose_name(r->purpose), -1);
    bv_stmt_bind_text(s, 4, bv_mfa_channel_name(r->channel), -1);
    if (r->binding != NULL)
        bv_stmt_bind_blob(s, 5, r->binding, 32);
    else
        bv_stmt_bind_null(s, 5);
    if (r->channel == BV_MFA_TOTP)
        bv_stmt_bind_null(s, 6);
    else
        bv_stmt_bind_blob(s, 6, mac, 32);
    bv_stmt_bind_int64(s, 7, now);
    bv_stmt_bind_int64(s, 8, now + m->opt.ttl_us);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    a->out->created_at = now;
    a->out->expires_at = now + m->opt.ttl_us;
    if ((rc =
             audit(tx, r->user_id, "mfa.challenge.create", a->out->id, "success", r->source_ip, r->request_id,
                   json_pack("{s:s, s:s, s:b}", "purpose", bv_mfa_purpose_name(r->purpose), "channel",
                             bv_mfa_channel_name(r->channel), "bound", r->binding != NULL))) != 0)
        return rc;
    if (r->channel == BV_MFA_TOTP)
        return 0;
    /* the code travels only inside the queue message (notify never stores OTP payloads) */
    vars = json_pack("{s:s, s:I}", "otp", a->code, "minutes",
                     (json_int_t)((m->opt.ttl_us + 59999999) / 60000000));
    if (vars == NULL)
        return BV_ENOMEM;
    bv_notification_t n = {.customer = {.id = r->user_id,
                                        .email = r->channel == BV_MFA_EMAIL ? r->email : NULL,
                                        .phone = r->channel == BV_MFA_SMS ? r->phone : NULL,
                                        .locale = r->locale},
                           .kind = BV_NOTIFY_OTP,
                           .channels = r->channel == BV_MFA_EMAIL ? BV_NOTIFY_EMAIL : BV_NOTIFY_SMS,
                           .vars = vars};
    rc = bv_notify_publish(tx, &n);
    json_object_set_new(vars, "otp", json_string("")); /* drop our copy of the code */
    json_decref(vars);
    return rc < 0 ? rc : 0;
}

static int create_req_valid(const bv_mfa_challenge_req_t *req)
{
    if (req->user_id == NULL || req->user_id[0] == '\0' || bv_mfa_purpose_name(req->purpose) == NULL ||
        bv_mfa_channel_name(req->channel) == NULL)
        return 0;
    if (req->purpose == BV_MFA_TRANSFER && req->binding == NULL)
        return 0;
    return !((req->channel == BV_MFA_SMS && (req->phone == NULL || req->phone[0] == '\0')) ||
             (req->channel == BV_MFA_EMAIL && (req->email == NULL || req->email[0] == '\0')));
}

int mfa_challenge_create_code(bv_mfa_t *m, const bv_mfa_challenge_req_t *req, const char *code,
                              bv_mfa_challenge_t *out)
{
    create_arg_t a = {.m = m, .req = req, .code = code, .out = out};
    int rc;
    memset(out, 0, sizeof(*out));
    if (!create_req_valid(req))
        return BV_EINVALID;
    bv_uuid7(out->id);
    rc = bv_store_run_tx(m->store, 1, tx_create, &a);
    if (rc == 0 && a.outcome != 0)
        rc = a.outcome;
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

int bv_mfa_challenge_create(bv_mfa_t *m, const bv_mfa_challenge_req_t *req, bv_mfa_challenge_t *out)
{
    char code[16] = "";
    int rc;
    if (req->channel != BV_MFA_TOTP)
        draw_code(m->opt.digits, code);
    rc = mfa_challenge_create_code(m, req, code, out);
    OPENSSL_cleanse(code, sizeof(code));
    return rc;
}

int bv_mfa_challenge_create_tx(bv_tx_t *tx, bv_mfa_t *m, const bv_mfa_challenge_req_t *req,
                               bv_mfa_challenge_t *out)
{
    char code[16] = "";
    create_arg_t a = {.m = m, .req = req, .code = code, .out = out};
    int rc;
    memset(out, 0, sizeof(*out));
    if (!create_req_valid(req))
        return BV_EINVALID;
    if (req->channel != BV_MFA_TOTP)
        draw_code(m->opt.digits, code);
    bv_uuid7(out->id);
    rc = tx_create(tx, &a);
    OPENSSL_cleanse(code, sizeof(code));
    if (rc == 0 && a.outcome != 0)
        rc = a.outcome; /* the caller's job fails: its refusal audit goes with it */
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

/* ---- verification ---- */

typedef struct {
    bv_mfa_t *m;
    const char *user_id, *id, *code, *ip, *rid;
    const unsigned char *binding;
    bv_mfa_verify_result_t *out;
    int outcome;
} verify_arg_t;

static void proof_hash(const char *proof, unsigned char out[32])
{
    unsigned int len = 32;
    EVP_Digest(proof, strlen(proof), out, &len, EVP_sha256(), NULL);
}

/* "mfp_" + base64url(32 random bytes) without padding. */
static void new_proof(char out[BV_MFA_PROOF_LEN + 1])
{
    unsigned char raw[32], b64[48];
    bv_random(raw, sizeof(raw));
    int n = EVP_EncodeBlock(b64, raw, sizeof(raw)); /* 44 chars with one '=' */
    memcpy(out, "mfp_", 4);
    for (int i = 0; i < 43 && i < n; i++)
        out[4 + i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : (char)b64[i];
    out[BV_MFA_PROOF_LEN] = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));
    OPENSSL_cleanse(b64, sizeof(b64));
}

static int tx_verify(bv_tx_t *tx, void *arg)
{
    verify_arg_t *a = arg;
    bv_mfa_t *m = a->m;
    int64_t now = m->now_us(), attempts, expires_at;
    unsigned char stored_binding[32], stored_mac[32], mac[32], ph[32];
    int has_binding = 0, has_mac = 0, ok = 0, rc;
    bv_mfa_channel_t channel = BV_MFA_SMS;
    bv_mfa_purpose_t purpose = BV_MFA_LOGIN;
    char status[16] = "";
    const void *blob;
    size_t blen;
    bv_stmt_t *s;
    a->outcome = 0;
    s = bv_tx_prepare(tx, "SELECT user_id, purpose, channel, binding, code_mac, status, attempts, expires_at "
                          "FROM mfa_challenges WHERE id = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->id, -1);
    rc = bv_stmt_step(s);
    if (rc != BV_ROW) {
        bv_stmt_reset(s);
        return rc < 0 ? rc : BV_ENOTFOUND;
    }
    const char *uid = bv_stmt_text(s, 0);
    if (uid == NULL || strcmp(uid, a->user_id) != 0) { /* another user's challenge: it does not exist */
        bv_stmt_reset(s);
        return BV_ENOTFOUND;
    }
    bv_mfa_purpose_parse(bv_stmt_text(s, 1), &purpose);
    bv_mfa_channel_parse(bv_stmt_text(s, 2), &channel);
    if ((blob = bv_stmt_blob(s, 3, &blen)) != NULL && blen == 32) {
        memcpy(stored_binding, blob, 32);
        has_binding = 1;
    }
    if ((blob = bv_stmt_blob(s, 4, &blen)) != NULL && blen == 32) {
        memcpy(stored_mac, blob, 32);
        has_mac = 1;
    }
    snprintf(status, sizeof(status), "%s", bv_stmt_text(s, 5) ? bv_stmt_text(s, 5) : "");
    attempts = bv_stmt_int64(s, 6);
    expires_at = bv_stmt_int64(s, 7);
    bv_stmt_reset(s);
    a->out->purpose = purpose;
    a->out->channel = channel;
    if (strcmp(status, "verified") == 0)
        return BV_EOTP_USED;
    if (strcmp(status, "locked") == 0)
        return BV_EOTP_LOCKED;
    if (now >= expires_at)
        return BV_EOTP_EXPIRED;

    /* the code authorises exactly the operation it was issued for */
    int binding_ok = has_binding ? (a->binding != NULL && bv_ct_equal(stored_binding, 32, a->binding, 32))
                                 : (a->binding == NULL);
    if (binding_ok) {
        if (channel == BV_MFA_TOTP) {
            rc = bv_mfa_totp_check(tx, m, a->user_id, a->code, now);
            if (rc != 0 && rc != BV_EOTP_INVALID && rc != BV_ENOTFOUND)
                return rc;
            ok = rc == 0;
        } else if (has_mac && strlen(a->code) <= 10) {
            if ((rc = code_mac(m, a->id, a->code, mac)) != 0)
                return rc;
            ok = bv_ct_equal(mac, 32, stored_mac, 32);
            OPENSSL_cleanse(mac, sizeof(mac));
        }
    }
    if (!ok) {
        int locked = attempts + 1 >= m->opt.max_attempts;
        s = bv_tx_prepare(tx, "UPDATE mfa_challenges SET attempts = attempts + 1, status = ? "
                              "WHERE id = ? AND status = 'pending' AND attempts = ?");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_text(s, 1, locked ? "locked" : "pending", -1);
        bv_stmt_bind_text(s, 2, a->id, -1);
        bv_stmt_bind_int64(s, 3, attempts);
        rc = bv_stmt_step(s);
        bv_stmt_reset(s);
        if (rc < 0)
            return rc;
        if (bv_tx_changes(tx) != 1)
            return BV_EBUSY; /* cannot happen on the single writer; retried */
        a->out->attempts_left = locked ? 0 : (int)(m->opt.max_attempts - attempts - 1);
        a->outcome = locked ? BV_EOTP_LOCKED : BV_EOTP_INVALID;
        return audit(tx, a->user_id, locked ? "mfa.challenge.lock" : "mfa.challenge.verify", a->id,
                     locked ? "denied" : "invalid", a->ip, a->rid,
                     json_pack("{s:s, s:b, s:i}", "reason", binding_ok ? "wrong_value" : "other_operation",
                               "bound", has_binding, "attempts_left", a->out->attempts_left));
    }
    s = bv_tx_prepare(tx, "UPDATE mfa_challenges SET status = 'verified', verified_at = ? "
                          "WHERE id = ? AND status = 'pending'");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, now);
    bv_stmt_bind_text(s, 2, a->id, -1);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    new_proof(a->out->proof);
    proof_hash(a->out->proof, ph);
    a->out->proof_expires_at = now + BV_MFA_PROOF_TTL_US;
    s = bv_tx_prepare(tx,
                      "INSERT INTO mfa_proofs (hash, user_id, challenge_id, purpose, binding, created_at, "
                      "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_blob(s, 1, ph, 32);
    bv_stmt_bind_text(s, 2, a->user_id, -1);
    bv_stmt_bind_text(s, 3, a->id, -1);
    bv_stmt_bind_text(s, 4, bv_mfa_purpose_name(purpose), -1);
    if (has_binding)
        bv_stmt_bind_blob(s, 5, stored_binding, 32);
    else
        bv_stmt_bind_null(s, 5);
    bv_stmt_bind_int64(s, 6, now);
    bv_stmt_bind_int64(s, 7, a->out->proof_expires_at);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    return audit(tx, a->user_id, "mfa.challenge.verify", a->id, "success", a->ip, a->rid,
                 json_pack("{s:s, s:s, s:b}", "purpose", bv_mfa_purpose_name(purpose), "channel",
                           bv_mfa_channel_name(channel), "bound", has_binding));
}

int bv_mfa_challenge_verify(bv_mfa_t *m, const char *user_id, const char *id, const char *code,
                            const unsigned char *binding, const char *source_ip, const char *request_id,
                            bv_mfa_verify_result_t *out)
{
    verify_arg_t a = {.m = m,
                      .user_id = user_id,
                      .id = id,
                      .code = code,
                      .ip = source_ip,
                      .rid = request_id,
                      .binding = binding,
                      .out = out};
    int rc;
    memset(out, 0, sizeof(*out));
    if (user_id == NULL || id == NULL || code == NULL || !bv_uuid_valid(id))
        return id != NULL && !bv_uuid_valid(id) ? BV_ENOTFOUND : BV_EINVALID;
    rc = bv_store_run_tx(m->store, 1, tx_verify, &a);
    if (rc == 0 && a.outcome != 0)
        rc = a.outcome;
    if (rc != 0) {
        int left = out->attempts_left;
        bv_mfa_purpose_t purpose = out->purpose;
        bv_mfa_channel_t channel = out->channel;
        OPENSSL_cleanse(out, sizeof(*out));
        out->attempts_left = left;
        out->purpose = purpose;
        out->channel = channel;
    }
    return rc;
}

/* ---- proofs ---- */

int mfa_consume_proof_at(bv_tx_t *tx, const char *user_id, const char *proof, const unsigned char binding[32],
                         int64_t now)
{
    unsigned char ph[32];
    const void *blob;
    size_t blen = 0;
    int rc, same;
    bv_stmt_t *s;
    if (user_id == NULL || proof == NULL || strlen(proof) != BV_MFA_PROOF_LEN ||
        strncmp(proof, "mfp_", 4) != 0)
        return BV_EOTP_INVALID;
    proof_hash(proof, ph);
    s = bv_tx_prepare(tx, "SELECT user_id, binding, expires_at, used_at FROM mfa_proofs WHERE hash = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_blob(s, 1, ph, 32);
    rc = bv_stmt_step(s);
    if (rc != BV_ROW) {
        bv_stmt_reset(s);
        return rc < 0 ? rc : BV_EOTP_INVALID;
    }
    blob = bv_stmt_blob(s, 1, &blen);
    same =
        bv_stmt_text(s, 0) != NULL && strcmp(bv_stmt_text(s, 0), user_id) == 0 &&
        (blob == NULL ? binding == NULL : (binding != NULL && blen == 32 && memcmp(blob, binding, 32) == 0));
    int64_t expires_at = bv_stmt_int64(s, 2);
    int used = !bv_stmt_is_null(s, 3);
    bv_stmt_reset(s);
    if (!same)
        return BV_EOTP_INVALID;
    if (used)
        return BV_EOTP_USED;
    if (now >= expires_at)
        return BV_EOTP_EXPIRED;
    s = bv_tx_prepare(tx, "UPDATE mfa_proofs SET used_at = ? WHERE hash = ? AND used_at IS NULL");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, now);
    bv_stmt_bind_blob(s, 2, ph, 32);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    return bv_tx_changes(tx) == 1 ? 0 : BV_EOTP_USED;
}

int bv_mfa_consume_proof(bv_tx_t *tx, const char *user_id, const char *proof, const unsigned char binding[32])
{
    bv_mfa_t *m = instance;
    return mfa_consume_proof_at(tx, user_id, proof, binding, m != NULL ? m->now_us() : bv_now_us());
}

void mfa_set_instance(bv_mfa_t *m)
{
    instance = m;
}
