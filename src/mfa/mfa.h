/* Multi-factor authentication (issue 7, docs/mfa.md): one-time code challenges delivered by
 * SMS or e-mail (or answered with a TOTP soft token), bound to the exact operation they
 * authorise, and the single-use proofs a verified challenge yields; TOTP soft tokens with
 * recovery codes.
 *
 * Codes are never stored: a challenge keeps HMAC-SHA-256(keys "otp", id ":" code), compared
 * in constant time. TOTP seeds are stored only encrypted (bv_keys_encrypt, purpose "totp",
 * aad mfa_totp/<id>/seed); recovery codes only as HMACs. Proof tokens are 256-bit random
 * strings stored as SHA-256. Every event is audited in the write job that makes it.
 *
 * All functions block (store, key store): call them from workers, never from an event loop. */
#ifndef BV_MFA_MFA_H
#define BV_MFA_MFA_H

#include <stddef.h>
#include <stdint.h>

#include "app/app.h"
#include "base/util.h"
#include "keys/keys.h"
#include "store/store.h"

typedef struct bv_mfa bv_mfa_t;

typedef enum {
    BV_MFA_LOGIN = 0,
    BV_MFA_TRANSFER,
    BV_MFA_PROFILE_CHANGE,
    BV_MFA_DEVICE_ENROLMENT,
} bv_mfa_purpose_t;

typedef enum { BV_MFA_SMS = 0, BV_MFA_EMAIL, BV_MFA_TOTP } bv_mfa_channel_t;

/* "login", "transfer", "profile_change", "device_enrolment" / "sms", "email", "totp";
 * parse returns 0 or BV_EINVALID. Names are static strings (NULL for unknown values). */
const char *bv_mfa_purpose_name(bv_mfa_purpose_t p);
const char *bv_mfa_channel_name(bv_mfa_channel_t c);
int bv_mfa_purpose_parse(const char *s, bv_mfa_purpose_t *out);
int bv_mfa_channel_parse(const char *s, bv_mfa_channel_t *out);

#define BV_MFA_PROOF_TTL_US   (60 * 1000000LL)
#define BV_MFA_PROOF_LEN      47 /* "mfp_" + 43 base64url characters (256 bits) */
#define BV_MFA_RECOVERY_CODES 10
#define BV_MFA_RECOVERY_LEN   11 /* "xxxxx-xxxxx" */

typedef struct {
    int digits;         /* 4 or 6 (BOVEDA_MFA_OTP_DIGITS) */
    int64_t ttl_us;     /* challenge lifetime, 30..300 s (BOVEDA_MFA_OTP_TTL_S) */
    int max_challenges; /* per user per 15 minutes (BOVEDA_MFA_MAX_CHALLENGES_15MIN) */
    int max_attempts;   /* wrong codes before a challenge is dead (BOVEDA_MFA_MAX_ATTEMPTS) */
    const char *issuer; /* otpauth:// issuer label, NULL = "Boveda" */
} bv_mfa_options_t;

/* Options from the configuration; 0 or BV_ECONFIG. */
int bv_mfa_options_load(const bv_config_t *cfg, bv_mfa_options_t *out);

/* Opens the service (prepares the "otp" HMAC and "totp" AEAD keys, registers the seed
 * column for rewrap). Caller frees with bv_mfa_close (NULL accepted).
 * 0, BV_EINVALID (options), BV_ENOMEM, key-store errors. */
int bv_mfa_open(bv_store_t *store, bv_keys_t *keys, const bv_mfa_options_t *opt, bv_mfa_t **out);
void bv_mfa_close(bv_mfa_t *m);
/* The instance opened by the module's init (NULL before). */
bv_mfa_t *bv_mfa_instance(void);

/* ---- binding to an operation (dynamic linking) ---- */
typedef struct {
    const char *amount;      /* decimal string, at most the currency's exponent digits ("125.50") */
    const char *currency;    /* ISO 4217, upper case */
    const char *source;      /* account id or number, 1..128 bytes */
    const char *destination; /* account id or number, 1..128 bytes */
} bv_mfa_operation_t;

/* binding = SHA-256("boveda-mfa-binding/v1" then, per field, its byte length in decimal, ':',
 * the bytes and '\n'), over currency, amount in minor units (decimal, no sign unless
 * negative, no leading zeros), source, destination. "125.5" and "125.50" EUR bind alike.
 * 0 or BV_EINVALID (*field_out, may be NULL, names the offending field). */
int bv_mfa_binding(const bv_mfa_operation_t *op, unsigned char out[32], const char **field_out);

/* ---- challenges ---- */
typedef struct {
    const char *user_id;
    bv_mfa_purpose_t purpose;
    bv_mfa_channel_t channel;
    const unsigned char *binding; /* 32 bytes, or NULL (required for BV_MFA_TRANSFER) */
    const char *email;            /* delivery address for BV_MFA_EMAIL */
    const char *phone;            /* E.164, for BV_MFA_SMS */
    const char *locale;           /* "es"/"en" or NULL */
    const char *source_ip;        /* audit; may be NULL */
    const char *request_id;       /* audit; may be NULL */
} bv_mfa_challenge_req_t;

typedef struct {
    char id[BV_UUID_STR_LEN + 1];
    int64_t created_at, expires_at; /* us */
} bv_mfa_challenge_t;

/* Creates a challenge: a fresh code (uniform, BOVEDA_MFA_OTP_DIGITS digits) published as an
 * `otp` notification on the channel in the same write job, or, for BV_MFA_TOTP, nothing to
 * send (the user answers with the soft token). 0, BV_EINVALID (a missing binding for a
 * transfer, no address for the channel, no active TOTP for the totp channel),
 * BV_EOTP_RATE (more than max_challenges in the last 15 minutes), store/key errors. */
int bv_mfa_challenge_create(bv_mfa_t *m, const bv_mfa_challenge_req_t *req, bv_mfa_challenge_t *out);

typedef struct {
    int attempts_left;                /* after a wrong code */
    char proof[BV_MFA_PROOF_LEN + 1]; /* on success: single-use proof token */
    int64_t proof_expires_at;         /* us */
    bv_mfa_purpose_t purpose;
} bv_mfa_verify_result_t;

/* Verifies `code` for the user's challenge `id` and the operation's binding (NULL when the
 * challenge has none). Wrong code or other binding: BV_EOTP_INVALID (attempts_left set; the
 * last allowed failure gives BV_EOTP_LOCKED). Also BV_ENOTFOUND (no such challenge for this
 * user), BV_EOTP_EXPIRED, BV_EOTP_USED, BV_EOTP_LOCKED. On success the challenge is spent
 * and a proof valid for BV_MFA_PROOF_TTL_US is returned. */
int bv_mfa_challenge_verify(bv_mfa_t *m, const char *user_id, const char *id, const char *code,
                            const unsigned char *binding, const char *source_ip, const char *request_id,
                            bv_mfa_verify_result_t *out);

/* Consumes a proof inside the caller's write job: it must belong to user_id, be unused and
 * unexpired and carry exactly `binding` (NULL: a proof of a challenge without binding).
 * 0, BV_EOTP_INVALID (unknown, another user or another operation), BV_EOTP_EXPIRED,
 * BV_EOTP_USED, store errors. The caller's job fails on error so nothing is consumed. */
int bv_mfa_consume_proof(bv_tx_t *tx, const char *user_id, const char *proof,
                         const unsigned char binding[32]);

/* ---- TOTP soft tokens (RFC 6238, SHA-1, 6 digits, 30 s) ---- */
typedef struct {
    char id[BV_UUID_STR_LEN + 1];
    char secret[40]; /* base32 of the 160-bit seed */
    char uri[512];   /* otpauth://totp/... */
    bv_buf_t qr_svg; /* QR of uri */
    char recovery_codes[BV_MFA_RECOVERY_CODES][BV_MFA_RECOVERY_LEN + 1];
} bv_mfa_enrolment_t;
/* Wipes and frees what an enrolment holds (not the struct). */
void bv_mfa_enrolment_clear(bv_mfa_enrolment_t *e);

/* Starts (or restarts) an enrolment: a 160-bit seed from OpenSSL's CSPRNG (RAND_bytes),
 * stored encrypted, and 10 recovery codes stored as HMACs; the token stays `pending` until
 * bv_mfa_totp_confirm. `label` names the account in the URI (username). 0, BV_ECONFLICT
 * (an active token exists: revoke it first), store/key errors. Caller clears *out. */
int bv_mfa_totp_enrol(bv_mfa_t *m, const char *user_id, const char *label, const char *request_id,
                      bv_mfa_enrolment_t *out);
/* Activates a pending token with its first valid code. 0, BV_ENOTFOUND (nothing pending),
 * BV_EOTP_INVALID. */
int bv_mfa_totp_confirm(bv_mfa_t *m, const char *user_id, const char *code, const char *request_id);
/* Deletes the user's token and recovery codes. 0 or BV_ENOTFOUND. */
int bv_mfa_totp_revoke(bv_mfa_t *m, const char *user_id, const char *request_id);
/* *active_out = 1 when the user has a confirmed token. */
int bv_mfa_totp_active(bv_mfa_t *m, const char *user_id, int *active_out);
/* Checks a TOTP code (±1 step, a step never accepted twice) or an unused recovery code for
 * the user's active token, inside the caller's write job; records the accepted step / spends
 * the recovery code. 0, BV_EOTP_INVALID, BV_ENOTFOUND (no active token). */
int bv_mfa_totp_check(bv_tx_t *tx, bv_mfa_t *m, const char *user_id, const char *code, int64_t now_us);

/* ---- the hosted login's second step (src/oauth/login.c) ---- */
/* *required_out = 1 when the user must pass the "otp" step (a confirmed soft token).
 * 0 (and 0 in *required_out when the module is not running) or a store error. */
int bv_mfa_login_required(const char *user_id, int *required_out);
/* Creates the step's challenge (purpose login, channel totp) into challenge_out.
 * 0, BV_EOTP_RATE, BV_EUNAVAILABLE, store errors. */
int bv_mfa_login_begin(const char *user_id, const char *source_ip, const char *request_id,
                       char challenge_out[BV_UUID_STR_LEN + 1]);
/* Verifies the step's code (a soft-token code or a recovery code): the return values of
 * bv_mfa_challenge_verify. */
int bv_mfa_login_verify(const char *user_id, const char *challenge_id, const char *code,
                        const char *source_ip, const char *request_id);

/* ---- application hooks (src/app/app.c) ---- */
int bv_mfa_module_init(bv_app_t *app);
int bv_mfa_module_routes(bv_app_t *app);
void bv_mfa_module_fini(bv_app_t *app);

#endif
