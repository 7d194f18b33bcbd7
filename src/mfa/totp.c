/* TOTP soft tokens (RFC 6238): enrolment with an encrypted seed and recovery codes,
 * confirmation by a first code, revocation, and the check used by challenges (±1 step, a
 * step is never accepted twice, recovery codes single use). */
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "mfa/internal.h"
#include "mfa/otp.h"

/* ---- helpers ---- */

static int audit_totp(bv_tx_t *tx, const char *user_id, const char *action, const char *outcome,
                      const char *rid, json_t *details)
{
    char actor[160];
    mfa_actor(user_id, actor, sizeof(actor));
    bv_audit_event_t ev = {.actor = actor,
                           .action = action,
                           .resource = NULL,
                           .outcome = outcome,
                           .request_id = rid,
                           .details = details};
    int rc = bv_audit_append(tx, &ev);
    json_decref(details);
    return rc;
}

/* HMAC(otp key, "recovery:" user ":" code), the code lower-cased. */
static int recovery_mac(bv_keys_t *keys, const char *user_id, const char *code, unsigned char out[32])
{
    char buf[160];
    int n = snprintf(buf, sizeof(buf), "recovery:%s:%s", user_id, code);
    if (n <= 0 || (size_t)n >= sizeof(buf))
        return BV_EINVALID;
    for (int i = 0; i < n; i++)
        if (buf[i] >= 'A' && buf[i] <= 'Z')
            buf[i] = (char)(buf[i] - 'A' + 'a');
    int rc = bv_keys_hmac(keys, "otp", buf, (size_t)n, out);
    OPENSSL_cleanse(buf, sizeof(buf));
    return rc;
}

/* "xxxxx-xxxxx" over 31 unambiguous characters (about 49.5 bits). */
static void draw_recovery(char out[BV_MFA_RECOVERY_LEN + 1])
{
    static const char alphabet[] = "abcdefghjkmnpqrstuvwxyz23456789";
    unsigned char b;
    int i = 0;
    while (i < 11) {
        if (i == 5) {
            out[i++] = '-';
            continue;
        }
        bv_random(&b, 1);
        if (b >= 248) /* 8 x 31: no modulo bias */
            continue;
        out[i++] = alphabet[b % 31];
    }
    out[11] = '\0';
}

static int is_recovery_shape(const char *code)
{
    return strlen(code) == BV_MFA_RECOVERY_LEN && code[5] == '-';
}

static void pct_encode(bv_buf_t *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
            c == '.' || c == '_' || c == '~')
            bv_buf_append(b, s, 1);
        else
            bv_buf_printf(b, "%%%02X", c);
    }
}

void bv_mfa_enrolment_clear(bv_mfa_enrolment_t *e)
{
    if (e == NULL)
        return;
    if (e->qr_svg.data != NULL)
        OPENSSL_cleanse(e->qr_svg.data, e->qr_svg.len);
    bv_buf_free(&e->qr_svg);
    OPENSSL_cleanse(e, sizeof(*e));
}

/* ---- enrolment ---- */

typedef struct {
    bv_mfa_t *m;
    const char *user_id, *rid;
    const char *id;
    const bv_buf_t *seed_ct;
    unsigned char macs[BV_MFA_RECOVERY_CODES][32];
} enrol_arg_t;

static int tx_enrol(bv_tx_t *tx, void *arg)
{
    enrol_arg_t *a = arg;
    int64_t now = a->m->now_us();
    bv_stmt_t *s;
    int rc;
    s = bv_tx_prepare(tx, "SELECT status FROM mfa_totp WHERE user_id = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->user_id, -1);
    rc = bv_stmt_step(s);
    int active = rc == BV_ROW && bv_stmt_text(s, 0) != NULL && strcmp(bv_stmt_text(s, 0), "active") == 0;
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    if (active)
        return BV_ECONFLICT;
    /* a pending enrolment is replaced, with its recovery codes */
    if ((s = bv_tx_prepare(tx, "DELETE FROM mfa_totp WHERE user_id = ?")) == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->user_id, -1);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    if ((s = bv_tx_prepare(tx, "DELETE FROM mfa_recovery_codes WHERE user_id = ?")) == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->user_id, -1);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    s = bv_tx_prepare(tx, "INSERT INTO mfa_totp (id, user_id, status, seed, alg, digits, period, last_step, "
                          "created_at) VALUES (?, ?, 'pending', ?, 'SHA1', 6, 30, -1, ?)");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->id, -1);
    bv_stmt_bind_text(s, 2, a->user_id, -1);
    bv_stmt_bind_blob(s, 3, a->seed_ct->data, a->seed_ct->len);
    bv_stmt_bind_int64(s, 4, now);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    for (int i = 0; i < BV_MFA_RECOVERY_CODES; i++) {
        s = bv_tx_prepare(tx,
                          "INSERT INTO mfa_recovery_codes (user_id, code_mac, created_at) VALUES (?, ?, ?)");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_text(s, 1, a->user_id, -1);
        bv_stmt_bind_blob(s, 2, a->macs[i], 32);
        bv_stmt_bind_int64(s, 3, now);
        rc = bv_stmt_step(s);
        bv_stmt_reset(s);
        if (rc < 0)
            return rc;
    }
    return audit_totp(tx, a->user_id, "mfa.totp.enrol", "success", a->rid,
                      json_pack("{s:s, s:s, s:i}", "factor_id", a->id, "algorithm", "SHA1", "digits", 6));
}

int bv_mfa_totp_enrol(bv_mfa_t *m, const char *user_id, const char *label, const char *request_id,
                      bv_mfa_enrolment_t *out)
{
    unsigned char seed[MFA_SEED_BYTES];
    bv_buf_t ct = {0}, b32 = {0}, uri = {0};
    enrol_arg_t a = {.m = m, .user_id = user_id, .rid = request_id};
    int rc;
    memset(out, 0, sizeof(*out));
    if (user_id == NULL || label == NULL || label[0] == '\0')
        return BV_EINVALID;
    bv_uuid7(out->id);
    a.id = out->id;
    /* 160 bits (RFC 4226 §4 recommends 160) from OpenSSL's CSPRNG; with the pkcs11 key store
     * the seed is still drawn here (docs/mfa.md) and only ever stored encrypted. */
    rc = BV_ECRYPTO;
    if (RAND_bytes(seed, sizeof(seed)) != 1)
        goto out;
    bv_aad_t aad = {"mfa_totp", out->id, "seed"};
    if ((rc = bv_keys_encrypt(m->keys, "totp", &aad, seed, sizeof(seed), &ct)) != 0)
        goto out;
    if ((rc = bv_base32_encode(seed, sizeof(seed), &b32)) != 0)
        goto out;
    snprintf(out->secret, sizeof(out->secret), "%s", b32.data);
    for (int i = 0; i < BV_MFA_RECOVERY_CODES; i++) {
        draw_recovery(out->recovery_codes[i]);
        if ((rc = recovery_mac(m->keys, user_id, out->recovery_codes[i], a.macs[i])) != 0)
            goto out;
    }
    a.seed_ct = &ct;
    if ((rc = bv_store_run_tx(m->store, 1, tx_enrol, &a)) != 0)
        goto out;
    /* Key URI Format: otpauth://totp/ISSUER:LABEL?secret=...&issuer=... */
    bv_buf_puts(&uri, "otpauth://totp/");
    pct_encode(&uri, m->issuer);
    bv_buf_puts(&uri, ":");
    pct_encode(&uri, label);
    bv_buf_printf(&uri, "?secret=%s&issuer=", out->secret);
    pct_encode(&uri, m->issuer);
    rc = BV_ENOMEM;
    if (bv_buf_puts(&uri, "&algorithm=SHA1&digits=6&period=30") != 0 || uri.len >= sizeof(out->uri))
        goto out;
    memcpy(out->uri, uri.data, uri.len + 1);
    if ((rc = bv_qr_svg(out->uri, &out->qr_svg)) != 0)
        goto out;
    rc = 0;
out:
    OPENSSL_cleanse(seed, sizeof(seed));
    OPENSSL_cleanse(&a.macs, sizeof(a.macs));
    if (b32.data != NULL)
        OPENSSL_cleanse(b32.data, b32.len);
    if (uri.data != NULL)
        OPENSSL_cleanse(uri.data, uri.len);
    bv_buf_free(&b32);
    bv_buf_free(&uri);
    bv_buf_free(&ct);
    if (rc != 0)
        bv_mfa_enrolment_clear(out);
    return rc;
}

/* ---- verification ---- */

/* Loads the user's token in `status` and decrypts its seed into seed (>= 64 bytes). */
static int load_token(bv_tx_t *tx, bv_mfa_t *m, const char *user_id, const char *status, char id_out[40],
                      unsigned char seed[64], size_t *seed_len, int64_t *last_step)
{
    bv_buf_t pt = {0};
    const void *blob;
    size_t blen = 0;
    bv_stmt_t *s =
        bv_tx_prepare(tx, "SELECT id, seed, last_step FROM mfa_totp WHERE user_id = ? AND status = ?");
    int rc;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, user_id, -1);
    bv_stmt_bind_text(s, 2, status, -1);
    rc = bv_stmt_step(s);
    if (rc != BV_ROW) {
        bv_stmt_reset(s);
        return rc < 0 ? rc : BV_ENOTFOUND;
    }
    snprintf(id_out, 40, "%s", bv_stmt_text(s, 0) ? bv_stmt_text(s, 0) : "");
    *last_step = bv_stmt_int64(s, 2);
    blob = bv_stmt_blob(s, 1, &blen);
    bv_aad_t aad = {"mfa_totp", id_out, "seed"};
    rc = blob != NULL ? bv_keys_decrypt(m->keys, &aad, blob, blen, &pt) : BV_EINTEGRITY;
    bv_stmt_reset(s);
    if (rc == 0 && (pt.len == 0 || pt.len > 64))
        rc = BV_EINTEGRITY;
    if (rc == 0) {
        memcpy(seed, pt.data, pt.len);
        *seed_len = pt.len;
    }
    if (pt.data != NULL)
        OPENSSL_cleanse(pt.data, pt.len);
    bv_buf_free(&pt);
    return rc;
}

static int set_step(bv_tx_t *tx, const char *id, int64_t step, int activate, int64_t now)
{
    bv_stmt_t *s = bv_tx_prepare(tx, activate ? "UPDATE mfa_totp SET last_step = ?, status = 'active', "
                                                "confirmed_at = ? WHERE id = ? AND last_step < ?1"
                                              : "UPDATE mfa_totp SET last_step = ?, confirmed_at = "
                                                "coalesce(confirmed_at, ?) WHERE id = ? AND last_step < ?1");
    int rc;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, step);
    bv_stmt_bind_int64(s, 2, now);
    bv_stmt_bind_text(s, 3, id, -1);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    return bv_tx_changes(tx) == 1 ? 0 : BV_EOTP_INVALID;
}

/* Checks a TOTP value against the seed: ±1 step, and only steps after last_step. */
static int check_code(const unsigned char *seed, size_t seed_len, const char *code, int64_t now_us,
                      int64_t last_step, int64_t *step_out)
{
    int64_t step = -1;
    if (strlen(code) != MFA_TOTP_DIGITS)
        return BV_EOTP_INVALID;
    if (bv_otp_totp_verify(seed, seed_len, code, now_us / 1000000, MFA_TOTP_STEP, MFA_TOTP_DIGITS,
                           BV_OTP_SHA1, MFA_TOTP_WINDOW, &step) != 0)
        return BV_EOTP_INVALID;
    if (step <= last_step) /* replay: this or a later step was already accepted */
        return BV_EOTP_INVALID;
    *step_out = step;
    return 0;
}

int bv_mfa_totp_check(bv_tx_t *tx, bv_mfa_t *m, const char *user_id, const char *code, int64_t now_us)
{
    unsigned char seed[64], mac[32];
    size_t seed_len = 0;
    char id[40];
    int64_t last = -1, step = -1;
    int rc;
    if (code == NULL)
        return BV_EOTP_INVALID;
    if ((rc = load_token(tx, m, user_id, "active", id, seed, &seed_len, &last)) != 0)
        return rc;
    if (is_recovery_shape(code)) {
        bv_stmt_t *s;
        if ((rc = recovery_mac(m->keys, user_id, code, mac)) != 0)
            goto out;
        rc = BV_EIO;
        s = bv_tx_prepare(tx, "UPDATE mfa_recovery_codes SET used_at = ? "
                              "WHERE user_id = ? AND code_mac = ? AND used_at IS NULL");
        if (s == NULL)
            goto out;
        bv_stmt_bind_int64(s, 1, now_us);
        bv_stmt_bind_text(s, 2, user_id, -1);
        bv_stmt_bind_blob(s, 3, mac, 32);
        rc = bv_stmt_step(s);
        bv_stmt_reset(s);
        if (rc < 0)
            goto out;
        rc = bv_tx_changes(tx) == 1 ? 0 : BV_EOTP_INVALID;
        if (rc == 0)
            rc = audit_totp(tx, user_id, "mfa.recovery.use", "success", NULL, NULL);
        goto out;
    }
    if ((rc = check_code(seed, seed_len, code, now_us, last, &step)) != 0)
        goto out;
    rc = set_step(tx, id, step, 0, now_us);
out:
    OPENSSL_cleanse(seed, sizeof(seed));
    OPENSSL_cleanse(mac, sizeof(mac));
    return rc;
}

/* ---- confirmation, revocation ---- */

typedef struct {
    bv_mfa_t *m;
    const char *user_id, *code, *rid;
    int outcome;
} confirm_arg_t;

static int tx_confirm(bv_tx_t *tx, void *arg)
{
    confirm_arg_t *a = arg;
    unsigned char seed[64];
    size_t seed_len = 0;
    char id[40];
    int64_t last = -1, step = -1, now = a->m->now_us();
    int rc;
    a->outcome = 0;
    if ((rc = load_token(tx, a->m, a->user_id, "pending", id, seed, &seed_len, &last)) != 0)
        return rc;
    rc = check_code(seed, seed_len, a->code, now, last, &step);
    OPENSSL_cleanse(seed, sizeof(seed));
    if (rc == BV_EOTP_INVALID) {
        a->outcome = rc;
        return audit_totp(tx, a->user_id, "mfa.totp.confirm", "invalid", a->rid,
                          json_pack("{s:s}", "factor_id", id));
    }
    if (rc != 0 || (rc = set_step(tx, id, step, 1, now)) != 0)
        return rc;
    return audit_totp(tx, a->user_id, "mfa.totp.confirm", "success", a->rid,
                      json_pack("{s:s}", "factor_id", id));
}

int bv_mfa_totp_confirm(bv_mfa_t *m, const char *user_id, const char *code, const char *request_id)
{
    confirm_arg_t a = {.m = m, .user_id = user_id, .code = code, .rid = request_id};
    if (user_id == NULL || code == NULL)
        return BV_EINVALID;
    int rc = bv_store_run_tx(m->store, 1, tx_confirm, &a);
    return rc == 0 ? a.outcome : rc;
}

typedef struct {
    const char *user_id, *rid;
} revoke_arg_t;

static int tx_revoke(bv_tx_t *tx, void *arg)
{
    revoke_arg_t *a = arg;
    bv_stmt_t *s = bv_tx_prepare(tx, "DELETE FROM mfa_totp WHERE user_id = ?");
    int rc;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->user_id, -1);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    if (bv_tx_changes(tx) == 0)
        return BV_ENOTFOUND;
    if ((s = bv_tx_prepare(tx, "DELETE FROM mfa_recovery_codes WHERE user_id = ?")) == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->user_id, -1);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    return audit_totp(tx, a->user_id, "mfa.totp.revoke", "success", a->rid, NULL);
}

int bv_mfa_totp_revoke(bv_mfa_t *m, const char *user_id, const char *request_id)
{
    revoke_arg_t a = {user_id, request_id};
    return bv_store_run_tx(m->store, 1, tx_revoke, &a);
}

typedef struct {
    const char *user_id;
    int active;
} active_arg_t;

static int tx_active(bv_tx_t *tx, void *arg)
{
    active_arg_t *a = arg;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT 1 FROM mfa_totp WHERE user_id = ? AND status = 'active'");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->user_id, -1);
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    a->active = rc == BV_ROW;
    return rc < 0 ? rc : 0;
}

int bv_mfa_totp_active(bv_mfa_t *m, const char *user_id, int *active_out)
{
    active_arg_t a = {user_id, 0};
    int rc = bv_store_run_tx(m->store, 0, tx_active, &a);
    *active_out = a.active;
    return rc;
}
