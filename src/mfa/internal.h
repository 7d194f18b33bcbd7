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
#define MFA_SEED_BYTES     20

/* Creates a challenge with the given code (tests pass a known one; the public function
 * draws it at random). */
int mfa_challenge_create_code(bv_mfa_t *m, const bv_mfa_challenge_req_t *req, const char *code,
                              bv_mfa_challenge_t *out);
/* Consumes a proof at `now`. */
int mfa_consume_proof_at(bv_tx_t *tx, const char *user_id, const char *proof, const unsigned char binding[32],
                         int64_t now);
/* Sets the instance bv_mfa_instance() returns (module init/fini). */
void mfa_set_instance(bv_mfa_t *m);
/* "user:<id>" into out. */
void mfa_actor(const char *user_id, char *out, size_t n);

#endif
