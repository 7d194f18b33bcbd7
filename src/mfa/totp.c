/* TOTP soft tokens (RFC 6238, SHA-1/SHA-256/SHA-512): enrolment with an encrypted seed and
 * recovery codes, confirmation by a first code, replacement and revocation behind a step-up
 * proof, resynchronisation with two consecutive codes, and the check used by challenges
 * (±1 step around the clock plus the token's drift, a step is never accepted twice,
 * recovery codes single use). */
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "mfa/internal.h"
#include "mfa/otp.h"

/* ---- helpers ---- */

static const char *const alg_names[] = {"SHA1", "SHA256", "SHA512"};

size_t mfa_seed_len(bv_otp_alg_t alg)
{
    return alg == BV_OTP_SHA512 ? 64 : alg == BV_OTP_SHA256 ? 32 : 20;
}

const char *mfa_alg_name(bv_otp_alg_t alg)
{
    return (unsigned)alg < 3 ? alg_names[alg] : NULL;
}

int mfa_alg_parse(const char *s, bv_otp_alg_t *out)
{
    for (int i = 0; s != NULL && i < 3; i++)
        if (strcmp(s, alg_names[i]) == 0) {
            *out = (bv_otp_alg_t)i;
            return 0;
        }
    return BV_EINVALID;
}

/* Seed bytes. The issue wants them born in the key store (inside the HSM with the PKCS#11
 * adapter, C_GenerateRandom); keys.h has no random source yet, so they come from OpenSSL's
 * CSPRNG here. This is the one place to switch (docs/mfa.md). */
/* The seed is born in the master key store: inside the HSM with the PKCS#11 adapter. */
static int draw_seed(bv_mfa_t *m, unsigned char *seed, size_t n)
{
    return bv_keys_random(m->keys, seed, n);
}

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

/* A token row as checks need it (seed decrypted: the caller wipes it). */
typedef struct {
    char id[40];
    unsigned char seed[MFA_SEED_MAX];
    size_t seed_len;
    int64_t last_step, drift;
    int active;
    bv_otp_alg_t alg;
} token_t;

static void token_wipe(token_t *t)
{
    OPENSSL_cleanse(t, sizeof(*t));
}

/* Reads the user's token id and status (no seed). BV_ENOTFOUND when none. */
static int token_head(bv_tx_t *tx, const char *user_id, char id_out[40], int *active_out)
{
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT id, status FROM mfa_totp WHERE user_id = ?");
    int rc;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, user_id, -1);
    rc = bv_stmt_step(s);
    if (rc == BV_ROW) {
        snprintf(id_out, 40, "%s", bv_stmt_text(s, 0) ? bv_stmt_text(s, 0) : "");
        *active_out = bv_stmt_text(s, 1) != NULL && strcmp(bv_stmt_text(s, 1), "active") == 0;
    }
    bv_stmt_reset(s);
    return rc == BV_ROW ? 0 : rc < 0 ? rc : BV_ENOTFOUND;
}

/* Consumes a step-up proof bound to (kind, user, token id) inside the job. */
static int consume_for(bv_tx_t *tx, bv_mfa_t *m, const char *kind, const char *user_id, const char *token_id,
                       const char *proof)
{
    unsigned char binding[32];
    int rc;
    if (proof == NULL)
        return BV_EOTP_INVALID;
    if ((rc = bv_mfa_op_binding(kind, user_id, token_id, binding)) != 0)
        return rc;
    return mfa_consume_proof_at(tx, user_id, proof, binding, m->now_us());
}

static int delete_token(bv_tx_t *tx, const char *user_id)
{
    int rc = bv_tx_execf(tx, "DELETE FROM mfa_totp WHERE user_id = ?", "t", user_id);
    if (rc == 0)
        rc = bv_tx_execf(tx, "DELETE FROM mfa_recovery_codes WHERE user_id = ?", "t", user_id);
    return rc;
}

typedef struct {
    bv_mfa_t *m;
    const char *user_id, *rid;
    const char *id;
    const bv_buf_t *seed_ct;
    const char *alg;
    int replace;       /* an active token may be replaced with a proof */
    const char *proof; /* step-up proof for the replacement */
    unsigned char macs[BV_MFA_RECOVERY_CODES][32];
} enrol_arg_t;

static int tx_enrol(bv_tx_t *tx, void *arg)
{
    enrol_arg_t *a = arg;
    int64_t now = a->m->now_us();
    char old_id[40] = "";
    bv_stmt_t *s;
    int active = 0, rc;
    rc = token_head(tx, a->user_id, old_id, &active);
    if (rc != 0 && rc != BV_ENOTFOUND)
        return rc;
    if (active && !a->replace)
        return BV_ECONFLICT;
    /* the active token is the user's second factor: replacing it needs a fresh one */
    if (active && (rc = consume_for(tx, a->m, "totp.replace", a->user_id, old_id, a->proof)) != 0)
        return rc;
    /* a pending enrolment (or the active token being replaced) goes, with its recovery codes */
    if ((rc = delete_token(tx, a->user_id)) != 0)
        return rc;
    s = bv_tx_prepare(tx, "INSERT INTO mfa_totp (id, user_id, status, seed, alg, digits, period, last_step, "
                          "drift, created_at) VALUES (?, ?, 'pending', ?, ?, 6, 30, -1, 0, ?)");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->id, -1);
    bv_stmt_bind_text(s, 2, a->user_id, -1);
    bv_stmt_bind_blob(s, 3, a->seed_ct->data, a->seed_ct->len);
    bv_stmt_bind_text(s, 4, a->alg, -1);
    bv_stmt_bind_int64(s, 5, now);
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
    json_t *d = json_pack("{s:s, s:s, s:i}", "factor_id", a->id, "algorithm", a->alg, "digits", 6);
    if (d != NULL && active) {
        json_object_set_new(d, "replaced", json_string(old_id));
        json_object_set_new(d, "step_up", json_true());
    }
    return audit_totp(tx, a->user_id, "mfa.totp.enrol", "success", a->rid, d);
}

static int enrol(bv_mfa_t *m, const char *user_id, const char *label, int replace, const char *proof,
                 const char *request_id, bv_mfa_enrolment_t *out)
{
    unsigned char seed[MFA_SEED_MAX];
    bv_otp_alg_t alg = m->opt.totp_alg;
    size_t seed_len = mfa_seed_len(alg);
    bv_buf_t ct = {0}, b32 = {0}, uri = {0};
    enrol_arg_t a = {.m = m, .user_id = user_id, .rid = request_id, .replace = replace, .proof = proof};
    int rc;
    memset(out, 0, sizeof(*out));
    if (user_id == NULL || label == NULL || label[0] == '\0' || mfa_alg_name(alg) == NULL)
        return BV_EINVALID;
    bv_uuid7(out->id);
    a.id = out->id;
    a.alg = mfa_alg_name(alg);
    snprintf(out->algorithm, sizeof(out->algorithm), "%s", a.alg);
    /* RFC 6238 appendix A keys the HMAC with a seed of its output size (20/32/64 bytes,
     * 160/256/512 bits); only ever stored encrypted */
    if ((rc = draw_seed(m, seed, seed_len)) != 0)
        goto out;
    bv_aad_t aad = {"mfa_totp", out->id, "seed"};
    if ((rc = bv_keys_encrypt(m->keys, "totp", &aad, seed, seed_len, &ct)) != 0)
        goto out;
    if ((rc = bv_base32_encode(seed, seed_len, &b32)) != 0)
        goto out;
    rc = BV_ENOMEM;
    if (b32.data == NULL || b32.len >= sizeof(out->secret))
        goto out;
    memcpy(out->secret, b32.data, b32.len + 1);
    for (int i = 0; i < BV_MFA_RECOVERY_CODES; i++) {
        draw_recovery(out->recovery_codes[i]);
        if ((rc = recovery_mac(m->keys, user_id, out->recovery_codes[i], a.macs[i])) != 0)
            goto out;
    }
    a.seed_ct = &ct;
    if ((rc = bv_store_run_tx(m->store, 1, tx_enrol, &a)) != 0)
        goto out;
    /* Key URI Format: otpauth://totp/ISSUER:LABEL?secret=...&issuer=...&algorithm=... */
    bv_buf_puts(&uri, "otpauth://totp/");
    pct_encode(&uri, m->issuer);
    bv_buf_puts(&uri, ":");
    pct_encode(&uri, label);
    bv_buf_printf(&uri, "?secret=%s&issuer=", out->secret);
    pct_encode(&uri, m->issuer);
    rc = BV_ENOMEM;
    if (bv_buf_printf(&uri, "&algorithm=%s&digits=6&period=30", a.alg) != 0 || uri.len >= sizeof(out->uri))
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

int bv_mfa_totp_enrol(bv_mfa_t *m, const char *user_id, const char *label, const char *request_id,
                      bv_mfa_enrolment_t *out)
{
    return enrol(m, user_id, label, 0, NULL, request_id, out);
}

int bv_mfa_totp_replace(bv_mfa_t *m, const char *user_id, const char *label, const char *proof,
                        const char *request_id, bv_mfa_enrolment_t *out)
{
    return enrol(m, user_id, label, 1, proof, request_id, out);
}

/* ---- verification ---- */

/* Loads the user's token in `status` and decrypts its seed. */
static int load_token(bv_tx_t *tx, bv_mfa_t *m, const char *user_id, const char *status, token_t *t)
{
    bv_buf_t pt = {0};
    const void *blob;
    size_t blen = 0;
    bv_stmt_t *s = bv_tx_prepare(
        tx, "SELECT id, seed, last_step, alg, drift, status FROM mfa_totp WHERE user_id = ? AND status = ?");
    int rc;
    memset(t, 0, sizeof(*t));
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, user_id, -1);
    bv_stmt_bind_text(s, 2, status, -1);
    rc = bv_stmt_step(s);
    if (rc != BV_ROW) {
        bv_stmt_reset(s);
        return rc < 0 ? rc : BV_ENOTFOUND;
    }
    snprintf(t->id, sizeof(t->id), "%s", bv_stmt_text(s, 0) ? bv_stmt_text(s, 0) : "");
    t->last_step = bv_stmt_int64(s, 2);
    t->drift = bv_stmt_int64(s, 4);
    t->active = strcmp(status, "active") == 0;
    if (mfa_alg_parse(bv_stmt_text(s, 3), &t->alg) != 0) {
        bv_stmt_reset(s);
        return BV_EINTEGRITY;
    }
    blob = bv_stmt_blob(s, 1, &blen);
    bv_aad_t aad = {"mfa_totp", t->id, "seed"};
    rc = blob != NULL ? bv_keys_decrypt(m->keys, &aad, blob, blen, &pt) : BV_EINTEGRITY;
    bv_stmt_reset(s);
    if (rc == 0 && (pt.len == 0 || pt.len > MFA_SEED_MAX))
        rc = BV_EINTEGRITY;
    if (rc == 0) {
        memcpy(t->seed, pt.data, pt.len);
        t->seed_len = pt.len;
    }
    if (pt.data != NULL)
        OPENSSL_cleanse(pt.data, pt.len);
    bv_buf_free(&pt);
    return rc;
}

/* Records an accepted step (and optionally a new drift / activation); compare-and-set on
 * last_step so a step is never accepted twice even by concurrent jobs. */
static int set_step(bv_tx_t *tx, const char *id, int64_t step, int activate, const int64_t *drift, int64_t now)
{
    bv_stmt_t *s = bv_tx_prepare(tx, activate ? "UPDATE mfa_totp SET last_step = ?1, status = 'active', "
                                                "confirmed_at = ?2, drift = coalesce(?4, drift) "
                                                "WHERE id = ?3 AND last_step < ?1"
                                              : "UPDATE mfa_totp SET last_step = ?1, confirmed_at = "
                                                "coalesce(confirmed_at, ?2), drift = coalesce(?4, drift) "
                                                "WHERE id = ?3 AND last_step < ?1");
    int rc;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, step);
    bv_stmt_bind_int64(s, 2, now);
    bv_stmt_bind_text(s, 3, id, -1);
    if (drift != NULL)
        bv_stmt_bind_int64(s, 4, *drift);
    else
        bv_stmt_bind_null(s, 4);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    return bv_tx_changes(tx) == 1 ? 0 : BV_EOTP_INVALID;
}

/* Checks a TOTP value against the token: ±1 step around the clock's step plus the drift,
 * and only steps after last_step. */
static int check_code(const token_t *t, const char *code, int64_t now_us, int64_t *step_out)
{
    int64_t step = -1;
    if (strlen(code) != MFA_TOTP_DIGITS)
        return BV_EOTP_INVALID;
    int64_t at = now_us / 1000000 + t->drift * MFA_TOTP_STEP;
    if (at < 0 || bv_otp_totp_verify(t->seed, t->seed_len, code, at, MFA_TOTP_STEP, MFA_TOTP_DIGITS, t->alg,
                                     MFA_TOTP_WINDOW, &step) != 0)
        return BV_EOTP_INVALID;
    if (step <= t->last_step) /* replay: this or a later step was already accepted */
        return BV_EOTP_INVALID;
    *step_out = step;
    return 0;
}

int bv_mfa_totp_check(bv_tx_t *tx, bv_mfa_t *m, const char *user_id, const char *code, int64_t now_us)
{
    unsigned char mac[32];
    token_t t;
    int64_t step = -1;
    int rc;
    if (code == NULL)
        return BV_EOTP_INVALID;
    if ((rc = load_token(tx, m, user_id, "active", &t)) != 0)
        goto out;
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
    if ((rc = check_code(&t, code, now_us, &step)) != 0)
        goto out;
    rc = set_step(tx, t.id, step, 0, NULL, now_us);
out:
    token_wipe(&t);
    OPENSSL_cleanse(mac, sizeof(mac));
    return rc;
}

/* ---- confirmation, resynchronisation ---- */

typedef struct {
    bv_mfa_t *m;
    const char *user_id, *code, *code2, *rid;
    int outcome;
} confirm_arg_t;

static int tx_confirm(bv_tx_t *tx, void *arg)
{
    confirm_arg_t *a = arg;
    token_t t;
    int64_t step = -1, now = a->m->now_us();
    int rc;
    a->outcome = 0;
    if ((rc = load_token(tx, a->m, a->user_id, "pending", &t)) != 0)
        goto out;
    rc = check_code(&t, a->code, now, &step);
    if (rc == BV_EOTP_INVALID) {
        a->outcome = rc;
        rc = audit_totp(tx, a->user_id, "mfa.totp.confirm", "invalid", a->rid, json_pack("{s:s}", "factor_id", t.id));
        goto out;
    }
    if (rc != 0 || (rc = set_step(tx, t.id, step, 1, NULL, now)) != 0)
        goto out;
    rc = audit_totp(tx, a->user_id, "mfa.totp.confirm", "success", a->rid,
                    json_pack("{s:s, s:s}", "factor_id", t.id, "algorithm", mfa_alg_name(t.alg)));
out:
    token_wipe(&t);
    return rc;
}

int bv_mfa_totp_confirm(bv_mfa_t *m, const char *user_id, const char *code, const char *request_id)
{
    confirm_arg_t a = {.m = m, .user_id = user_id, .code = code, .rid = request_id};
    if (user_id == NULL || code == NULL)
        return BV_EINVALID;
    int rc = bv_store_run_tx(m->store, 1, tx_confirm, &a);
    return rc == 0 ? a.outcome : rc;
}

/* Searches steps clock-W .. clock+W for code1 at s and code2 at s+1, s after last_step.
 * Every candidate is computed and compared (no early exit). */
static int resync_search(const token_t *t, const char *code1, const char *code2, int64_t now_us, int64_t *step_out)
{
    enum { W = BV_MFA_TOTP_RESYNC_WINDOW, N = 2 * W + 1 }; /* both codes within clock ± W */
    char cand[N][12];
    int match1[N], found = 0;
    int64_t clock = now_us / 1000000 / MFA_TOTP_STEP, first = clock - W, hit = -1;
    if (strlen(code1) != MFA_TOTP_DIGITS || strlen(code2) != MFA_TOTP_DIGITS || first < 0)
        return BV_EOTP_INVALID;
    for (int i = 0; i < N; i++) {
        if (bv_otp_hotp(t->seed, t->seed_len, (uint64_t)(first + i), MFA_TOTP_DIGITS, t->alg, cand[i]) != 0) {
            OPENSSL_cleanse(cand, sizeof(cand));
            return BV_ECRYPTO;
        }
        match1[i] = CRYPTO_memcmp(cand[i], code1, MFA_TOTP_DIGITS) == 0;
    }
    for (int i = 0; i + 1 < N; i++) {
        int both = match1[i] & (CRYPTO_memcmp(cand[i + 1], code2, MFA_TOTP_DIGITS) == 0);
        if (both && !found && first + i > t->last_step) {
            found = 1;
            hit = first + i + 1;
        }
    }
    OPENSSL_cleanse(cand, sizeof(cand));
    if (!found)
        return BV_EOTP_INVALID;
    *step_out = hit;
    return 0;
}

static int tx_resync(bv_tx_t *tx, void *arg)
{
    confirm_arg_t *a = arg;
    token_t t;
    int64_t step = -1, now = a->m->now_us(), drift;
    int rc;
    a->outcome = 0;
    if ((rc = load_token(tx, a->m, a->user_id, "active", &t)) != 0)
        goto out;
    rc = resync_search(&t, a->code, a->code2, now, &step);
    if (rc == BV_EOTP_INVALID) {
        a->outcome = rc;
        rc = audit_totp(tx, a->user_id, "mfa.totp.resync", "invalid", a->rid, json_pack("{s:s}", "factor_id", t.id));
        goto out;
    }
    if (rc != 0)
        goto out;
    drift = step - now / 1000000 / MFA_TOTP_STEP;
    if ((rc = set_step(tx, t.id, step, 0, &drift, now)) != 0)
        goto out;
    rc = audit_totp(tx, a->user_id, "mfa.totp.resync", "success", a->rid,
                    json_pack("{s:s, s:I, s:I}", "factor_id", t.id, "drift_steps", (json_int_t)drift,
                              "previous_drift_steps", (json_int_t)t.drift));
out:
    token_wipe(&t);
    return rc;
}

int bv_mfa_totp_resync(bv_mfa_t *m, const char *user_id, const char *code1, const char *code2,
                       const char *request_id)
{
    confirm_arg_t a = {.m = m, .user_id = user_id, .code = code1, .code2 = code2, .rid = request_id};
    if (user_id == NULL || code1 == NULL || code2 == NULL)
        return BV_EINVALID;
    int rc = bv_store_run_tx(m->store, 1, tx_resync, &a);
    return rc == 0 ? a.outcome : rc;
}

/* ---- revocation, state ---- */

typedef struct {
    bv_mfa_t *m;
    const char *user_id, *rid, *proof;
    int step_up; /* an active token needs the proof */
} revoke_arg_t;

static int tx_revoke(bv_tx_t *tx, void *arg)
{
    revoke_arg_t *a = arg;
    char id[40] = "";
    int active = 0, rc;
    if ((rc = token_head(tx, a->user_id, id, &active)) != 0)
        return rc;
    int stepped = a->step_up && active;
    if (stepped && (rc = consume_for(tx, a->m, "totp.revoke", a->user_id, id, a->proof)) != 0)
        return rc;
    if ((rc = delete_token(tx, a->user_id)) != 0)
        return rc;
    json_t *d = json_pack("{s:s, s:s}", "factor_id", id, "status", active ? "active" : "pending");
    if (d != NULL && stepped)
        json_object_set_new(d, "step_up", json_true());
    return audit_totp(tx, a->user_id, "mfa.totp.revoke", "success", a->rid, d);
}

int bv_mfa_totp_revoke(bv_mfa_t *m, const char *user_id, const char *request_id)
{
    revoke_arg_t a = {m, user_id, request_id, NULL, 0};
    return bv_store_run_tx(m->store, 1, tx_revoke, &a);
}

int bv_mfa_totp_revoke_with_proof(bv_mfa_t *m, const char *user_id, const char *proof, const char *request_id)
{
    revoke_arg_t a = {m, user_id, request_id, proof, 1};
    return bv_store_run_tx(m->store, 1, tx_revoke, &a);
}

typedef struct {
    const char *user_id;
    bv_mfa_totp_info_t *out;
} info_arg_t;

static int tx_info(bv_tx_t *tx, void *arg)
{
    info_arg_t *a = arg;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT id, status, alg, drift FROM mfa_totp WHERE user_id = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->user_id, -1);
    int rc = bv_stmt_step(s);
    if (rc == BV_ROW) {
        snprintf(a->out->id, sizeof(a->out->id), "%s", bv_stmt_text(s, 0) ? bv_stmt_text(s, 0) : "");
        a->out->active = bv_stmt_text(s, 1) != NULL && strcmp(bv_stmt_text(s, 1), "active") == 0;
        snprintf(a->out->algorithm, sizeof(a->out->algorithm), "%s", bv_stmt_text(s, 2) ? bv_stmt_text(s, 2) : "");
        a->out->drift = bv_stmt_int64(s, 3);
    }
    bv_stmt_reset(s);
    return rc == BV_ROW ? 0 : rc < 0 ? rc : BV_ENOTFOUND;
}

int bv_mfa_totp_info(bv_mfa_t *m, const char *user_id, bv_mfa_totp_info_t *out)
{
    info_arg_t a = {user_id, out};
    memset(out, 0, sizeof(*out));
    return bv_store_run_tx(m->store, 0, tx_info, &a);
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
