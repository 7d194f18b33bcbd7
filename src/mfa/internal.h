/* Internals shared by the mfa module's files. */
#ifndef BV_MFA_INTERNAL_H
#define BV_MFA_INTERNAL_H

#include "mfa/mfa.h"

struct bv_mfa {
    bv_store_t *store;
    bv_keys_t *keys;
    bv_mfa_options_t opt;
    char issuer[64];
    int64_t (*now_us)(void); /* the clock (tests replace it) */
};

#define MFA_RATE_WINDOW_US (15 * 60 * 1000000LL)
#define MFA_TOTP_STEP      30
#define MFA_TOTP_DIGITS    6
#define MFA_TOTP_WINDOW    1
#define MFA_SEED_MAX       64

/* Creates a challenge with the given code (tests pass a known one; the public function
 * draws it at random). */
int mfa_challenge_create_code(bv_mfa_t *m, const bv_mfa_challenge_req_t *req, const char *code,
                              bv_mfa_challenge_t *out);
/* Consumes a proof at `now`. */
int mfa_consume_proof_at(bv_tx_t *tx, const char *user_id, const char *proof, const unsigned char binding[32],
                         int64_t now);
/* Sets the instance bv_mfa_instance() returns (module init/fini). */
void mfa_set_instance(bv_mfa_t *m);
/* Appends one audit record (actor user:<id>, no resource) in a write job of its own; steals
 * `details` (may be NULL). 0 or store errors. */
int mfa_audit_write(bv_mfa_t *m, const char *user_id, const char *action, const char *outcome, const char *ip,
                    const char *rid, json_t *details);
/* "user:<id>" into out. */
void mfa_actor(const char *user_id, char *out, size_t n);

/* Seed bytes of an algorithm (its HMAC block output: 20, 32, 64) and its name in URIs and
 * storage ("SHA1", "SHA256", "SHA512"); parse returns 0 or BV_EINVALID. */
size_t mfa_seed_len(bv_otp_alg_t alg);
const char *mfa_alg_name(bv_otp_alg_t alg);
int mfa_alg_parse(const char *s, bv_otp_alg_t *out);

/* Masked delivery addresses for pages: "+34*****1222" (country prefix and last 4 digits
 * kept), "a***@example.com" (first character of the local part and the domain kept). */
void mfa_mask_phone(const char *phone, char *out, size_t n);
void mfa_mask_email(const char *email, char *out, size_t n);

/* The step-up channel of a user (totp if a soft token is active, else sms, else email) with
 * the user's addresses; BV_EFORBIDDEN when there is none. Blocks (store, identity). */
typedef struct {
    bv_mfa_channel_t channel;
    int totp_active;
    char email[256];
    char phone[32];
} mfa_factor_t;
int mfa_factor_pick(bv_mfa_t *m, const char *user_id, mfa_factor_t *out);

#endif
