/* The second step of the hosted login (src/oauth/login.c calls these; its page is
 * oauth_render_otp_step): customers with a confirmed TOTP soft token answer a `login`
 * challenge on channel `totp` after their password, with the challenge's rules (expiry,
 * attempt limit, rate limit, replay). */
#include <openssl/crypto.h>
#include <string.h>

#include "mfa/internal.h"

int bv_mfa_login_required(const char *user_id, int *required_out)
{
    bv_mfa_t *m = bv_mfa_instance();
    *required_out = 0;
    if (m == NULL)
        return 0;
    return bv_mfa_totp_active(m, user_id, required_out);
}

int bv_mfa_login_begin(const char *user_id, const char *source_ip, const char *request_id,
                       char challenge_out[BV_UUID_STR_LEN + 1])
{
    bv_mfa_t *m = bv_mfa_instance();
    bv_mfa_challenge_t ch;
    bv_mfa_challenge_req_t req = {.user_id = user_id,
                                  .purpose = BV_MFA_LOGIN,
                                  .channel = BV_MFA_TOTP,
                                  .source_ip = source_ip,
                                  .request_id = request_id};
    int rc;
    challenge_out[0] = '\0';
    if (m == NULL)
        return BV_EUNAVAILABLE;
    if ((rc = bv_mfa_challenge_create(m, &req, &ch)) != 0)
        return rc;
    memcpy(challenge_out, ch.id, sizeof(ch.id));
    return 0;
}

int bv_mfa_login_verify(const char *user_id, const char *challenge_id, const char *code,
                        const char *source_ip, const char *request_id)
{
    bv_mfa_t *m = bv_mfa_instance();
    bv_mfa_verify_result_t r;
    int rc;
    if (m == NULL)
        return BV_EUNAVAILABLE;
    if (challenge_id == NULL || code == NULL || !bv_uuid_valid(challenge_id))
        return BV_ENOTFOUND;
    rc = bv_mfa_challenge_verify(m, user_id, challenge_id, code, NULL, source_ip, request_id, &r);
    OPENSSL_cleanse(r.proof, sizeof(r.proof)); /* the login itself is what the proof authorises */
    return rc;
}
