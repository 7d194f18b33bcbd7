/* The second step of the hosted login (src/oauth/login.c calls these; its page is
 * oauth_render_otp_step) and the choice of a user's second factor (shared with step-up).
 *
 * Policy (BOVEDA_MFA_LOGIN_POLICY): "all" gives every customer a second step, "enrolled"
 * only those with a confirmed TOTP soft token. The factor is the soft token when active,
 * else an SMS code to the phone on file, else an e-mail code; a customer with none of them
 * cannot log in under "all" (the refusal is audited). The step is a `login` challenge with
 * the challenge's rules (expiry, attempt limit, rate limit, replay). */
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "identity/identity.h"
#include "mfa/internal.h"

/* ---- masking ---- */

void mfa_mask_phone(const char *phone, char *out, size_t n)
{
    size_t len = phone ? strlen(phone) : 0, keep_head = 3, keep_tail = 4, o = 0;
    if (n == 0)
        return;
    if (len < keep_head + keep_tail + 2) { /* too short to show anything safely */
        snprintf(out, n, "****");
        return;
    }
    for (size_t i = 0; i < len && o + 1 < n; i++)
        out[o++] = (i < keep_head || i >= len - keep_tail) ? phone[i] : '*';
    out[o] = '\0';
}

void mfa_mask_email(const char *email, char *out, size_t n)
{
    const char *at = email ? strrchr(email, '@') : NULL;
    if (n == 0)
        return;
    if (at == NULL || at == email) {
        snprintf(out, n, "***");
        return;
    }
    snprintf(out, n, "%c***%s", email[0], at);
}

/* ---- the factor ---- */

int mfa_factor_pick(bv_mfa_t *m, const char *user_id, mfa_factor_t *out)
{
    bv_identity_user_t u;
    int rc;
    memset(out, 0, sizeof(*out));
    if ((rc = bv_mfa_totp_active(m, user_id, &out->totp_active)) != 0)
        return rc;
    if (bv_identity_instance() == NULL)
        return BV_EUNAVAILABLE;
    if ((rc = bv_identity_user_get(bv_identity_instance(), user_id, &u)) != 0)
        return rc;
    snprintf(out->email, sizeof(out->email), "%s", u.email);
    snprintf(out->phone, sizeof(out->phone), "%s", u.phone);
    if (out->totp_active)
        out->channel = BV_MFA_TOTP;
    else if (out->phone[0] != '\0')
        out->channel = BV_MFA_SMS;
    else if (out->email[0] != '\0')
        out->channel = BV_MFA_EMAIL;
    else
        return BV_EFORBIDDEN;
    return 0;
}

/* ---- the login step ---- */

int bv_mfa_login_required(const char *user_id, int *required_out)
{
    bv_mfa_t *m = bv_mfa_instance();
    *required_out = 0;
    if (m == NULL)
        return 0;
    if (m->opt.login_policy_all) {
        *required_out = 1;
        return 0;
    }
    return bv_mfa_totp_active(m, user_id, required_out);
}

int bv_mfa_login_plan(const char *user_id, bv_mfa_login_plan_t *out)
{
    bv_mfa_t *m = bv_mfa_instance();
    mfa_factor_t f;
    int rc;
    memset(out, 0, sizeof(*out));
    if (m == NULL)
        return 0;
    if ((rc = bv_mfa_login_required(user_id, &out->required)) != 0 || !out->required)
        return rc;
    rc = mfa_factor_pick(m, user_id, &f);
    if (rc == 0) {
        out->available = 1;
        out->channel = f.channel;
        if (f.channel == BV_MFA_SMS)
            mfa_mask_phone(f.phone, out->destination, sizeof(out->destination));
        else if (f.channel == BV_MFA_EMAIL)
            mfa_mask_email(f.email, out->destination, sizeof(out->destination));
    }
    OPENSSL_cleanse(&f, sizeof(f));
    return rc == BV_EFORBIDDEN ? 0 : rc; /* BV_EFORBIDDEN: required, not available */
}

int bv_mfa_login_refuse(const char *user_id, const char *source_ip, const char *request_id)
{
    bv_mfa_t *m = bv_mfa_instance();
    if (m == NULL)
        return BV_EUNAVAILABLE;
    return mfa_audit_write(m, user_id, "mfa.login.refuse", "denied", source_ip, request_id,
                           json_pack("{s:s, s:s}", "reason", "no_second_factor", "policy", "all"));
}

static void describe(const mfa_factor_t *f, bv_mfa_channel_t channel, bv_mfa_login_step_t *out)
{
    out->channel = channel;
    out->destination[0] = '\0';
    if (channel == BV_MFA_SMS)
        mfa_mask_phone(f->phone, out->destination, sizeof(out->destination));
    else if (channel == BV_MFA_EMAIL)
        mfa_mask_email(f->email, out->destination, sizeof(out->destination));
}

int bv_mfa_login_begin(const char *user_id, const char *locale, const char *source_ip, const char *request_id,
                       bv_mfa_login_step_t *out)
{
    bv_mfa_t *m = bv_mfa_instance();
    bv_mfa_challenge_t ch;
    mfa_factor_t f;
    int rc;
    memset(out, 0, sizeof(*out));
    if (m == NULL)
        return BV_EUNAVAILABLE;
    if ((rc = mfa_factor_pick(m, user_id, &f)) != 0)
        goto out;
    bv_mfa_challenge_req_t req = {.user_id = user_id,
                                  .purpose = BV_MFA_LOGIN,
                                  .channel = f.channel,
                                  .email = f.email,
                                  .phone = f.phone,
                                  .locale = locale,
                                  .source_ip = source_ip,
                                  .request_id = request_id};
    if ((rc = bv_mfa_challenge_create(m, &req, &ch)) != 0)
        goto out;
    memcpy(out->challenge_id, ch.id, sizeof(ch.id));
    describe(&f, f.channel, out);
out:
    OPENSSL_cleanse(&f, sizeof(f));
    return rc;
}

int bv_mfa_login_verify(const char *user_id, const char *challenge_id, const char *code,
                        const char *source_ip, const char *request_id, bv_mfa_login_step_t *out)
{
    bv_mfa_t *m = bv_mfa_instance();
    bv_mfa_verify_result_t r;
    mfa_factor_t f;
    int rc;
    memset(out, 0, sizeof(*out));
    if (m == NULL)
        return BV_EUNAVAILABLE;
    if (challenge_id == NULL || code == NULL || !bv_uuid_valid(challenge_id))
        return BV_ENOTFOUND;
    rc = bv_mfa_challenge_verify(m, user_id, challenge_id, code, NULL, source_ip, request_id, &r);
    OPENSSL_cleanse(r.proof, sizeof(r.proof)); /* the login itself is what the proof authorises */
    if (rc == BV_ENOTFOUND)
        return rc;
    if (r.purpose != BV_MFA_LOGIN) /* a code of another purpose never completes a login */
        return BV_ENOTFOUND;
    snprintf(out->challenge_id, sizeof(out->challenge_id), "%s", challenge_id);
    out->channel = r.channel;
    if (r.channel != BV_MFA_TOTP && mfa_factor_pick(m, user_id, &f) == 0)
        describe(&f, r.channel, out);
    OPENSSL_cleanse(&f, sizeof(f));
    return rc;
}
