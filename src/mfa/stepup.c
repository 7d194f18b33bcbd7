/* Step-up for API routes (docs/mfa.md "Step-up"): a route that needs a fresh second factor
 * bound to the request asks for an `MFA-Proof` header; without one (or with one that was
 * refused) it answers 401 step-up-required with a fresh challenge bound to exactly that
 * request, in the spirit of RFC 9470 (OAuth 2.0 Step Up Authentication Challenge). */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "mfa/internal.h"

/* 401 step-up-required with the challenge as extension members (RFC 9457 §3.2). */
static void reply_challenge(bv_call_t *c, const bv_mfa_challenge_t *ch, bv_mfa_purpose_t purpose,
                            const mfa_factor_t *f, const unsigned char binding[32], int consume_rc)
{
    char hex[65], exp[32], href[128], dest[96] = "";
    json_t *p = NULL;
    char *s = NULL;
    bv_reply_problem(c, BV_ESTEP_UP,
                     "this operation needs a fresh second factor: verify the challenge, then repeat the "
                     "request with the proof in the MFA-Proof header",
                     NULL);
    bv_hex(binding, 32, hex);
    bv_time_format(ch->expires_at, exp);
    snprintf(href, sizeof(href), "/v1/otp/challenges/%s/verify", ch->id);
    if (f->channel == BV_MFA_SMS)
        mfa_mask_phone(f->phone, dest, sizeof(dest));
    else if (f->channel == BV_MFA_EMAIL)
        mfa_mask_email(f->email, dest, sizeof(dest));
    if ((p = json_loadb(c->resp_body.data, c->resp_body.len, 0, NULL)) == NULL)
        goto out;
    json_t *chj = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", ch->id, "purpose", bv_mfa_purpose_name(purpose),
                            "channel", bv_mfa_channel_name(f->channel), "expires_at", exp, "binding", hex);
    if (chj != NULL && dest[0] != '\0')
        json_object_set_new(chj, "destination", json_string(dest));
    json_object_set_new(p, "challenge", chj);
    json_object_set_new(p, "verify", json_pack("{s:s, s:s, s:{s:s, s:s}}", "method", "POST", "href", href, "body",
                                               "code", "<the code>", "binding", hex));
    json_object_set_new(p, "proof_header", json_string("MFA-Proof"));
    if (consume_rc != 0)
        json_object_set_new(p, "proof_error", json_string(bv_err_slug(consume_rc)));
    if ((s = bv_json_dump(p)) == NULL)
        goto out;
    bv_reply_raw(c, bv_err_status(BV_ESTEP_UP), "application/problem+json", s, strlen(s));
    c->error_code = BV_ESTEP_UP;
out:
    bv_call_add_header(c, "www-authenticate",
                       "Bearer realm=\"boveda\", error=\"insufficient_user_authentication\", "
                       "error_description=\"A fresh second factor bound to this request is required\"");
    json_decref(p);
    free(s);
}

void bv_mfa_step_up_reply(bv_call_t *c, const char *user_id, bv_mfa_purpose_t purpose,
                          const unsigned char binding[32], int consume_rc)
{
    bv_mfa_t *m = bv_mfa_instance();
    mfa_factor_t f;
    bv_mfa_challenge_t ch;
    int rc;
    if (consume_rc != 0 && consume_rc != BV_EOTP_INVALID && consume_rc != BV_EOTP_USED &&
        consume_rc != BV_EOTP_EXPIRED) {
        bv_reply_problem(c, consume_rc, NULL, NULL);
        return;
    }
    if (m == NULL) {
        bv_reply_problem(c, BV_EUNAVAILABLE, NULL, NULL);
        return;
    }
    /* a refused proof is an event of its own (the job that tried to consume it rolled back) */
    if (consume_rc != 0 &&
        (rc = mfa_audit_write(m, user_id, "mfa.proof.refuse", "denied", c->client_ip, c->request_id,
                              json_pack("{s:s, s:s}", "reason", bv_err_slug(consume_rc), "purpose",
                                        bv_mfa_purpose_name(purpose)))) != 0) {
        bv_reply_problem(c, rc, NULL, NULL);
        return;
    }
    if ((rc = mfa_factor_pick(m, user_id, &f)) != 0) {
        bv_reply_problem(c, rc == BV_EFORBIDDEN ? BV_EFORBIDDEN : rc,
                         rc == BV_EFORBIDDEN ? "this operation needs a second factor and none is on file" : NULL,
                         NULL);
        goto out;
    }
    bv_mfa_challenge_req_t req = {.user_id = user_id,
                                  .purpose = purpose,
                                  .channel = f.channel,
                                  .binding = binding,
                                  .email = f.email,
                                  .phone = f.phone,
                                  .source_ip = c->client_ip,
                                  .request_id = c->request_id};
    if ((rc = bv_mfa_challenge_create(m, &req, &ch)) != 0) {
        bv_reply_problem(c, rc, rc == BV_EOTP_RATE ? "too many challenges in the last 15 minutes" : NULL, NULL);
        goto out;
    }
    bv_log(BV_LOG_INFO, c->request_id, "step-up required",
           "\"challenge\":\"%s\",\"channel\":\"%s\",\"proof_error\":\"%s\"", ch.id, bv_mfa_channel_name(f.channel),
           consume_rc != 0 ? bv_err_slug(consume_rc) : "");
    reply_challenge(c, &ch, purpose, &f, binding, consume_rc);
out:
    OPENSSL_cleanse(&f, sizeof(f));
}

int bv_mfa_step_up_or_reply(bv_call_t *c, const char *user_id, bv_mfa_purpose_t purpose,
                            const unsigned char binding[32], const char **proof_out)
{
    const char *proof = bv_call_header(c, BV_MFA_PROOF_HEADER);
    *proof_out = NULL;
    if (proof != NULL) {
        while (*proof == ' ')
            proof++;
        if (strlen(proof) == BV_MFA_PROOF_LEN && strncmp(proof, "mfp_", 4) == 0) {
            *proof_out = proof;
            return 0;
        }
        bv_mfa_step_up_reply(c, user_id, purpose, binding, BV_EOTP_INVALID);
        return -1;
    }
    bv_mfa_step_up_reply(c, user_id, purpose, binding, 0);
    return -1;
}
