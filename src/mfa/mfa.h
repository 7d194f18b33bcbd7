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
#include "http/http.h"
#include "keys/keys.h"
#include "mfa/otp.h"
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
    int login_policy_all;  /* BOVEDA_MFA_LOGIN_POLICY: 1 = "all" (the default setting), 0 = "enrolled" */
    bv_otp_alg_t totp_alg; /* BOVEDA_MFA_TOTP_ALGORITHM: HMAC of new soft tokens (0 = SHA-1) */
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

/* Binding of a non-monetary operation (step-up of a route, docs/mfa.md): SHA-256 of
 * "boveda-mfa-binding/v1/op\n" then field(kind), field(user_id), field(object) with the same
 * field encoding as above. kind names the operation ("totp.revoke"), object the resource it
 * acts on ("" when none). 0, BV_EINVALID (kind or user_id empty), BV_ECRYPTO. */
int bv_mfa_op_binding(const char *kind, const char *user_id, const char *object, unsigned char out[32]);

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
/* The same inside the caller's write job, so that the challenge (and its code's delivery)
 * exists only if the operation it authorises commits with it. Errors as above; on any error
 * the caller's job must fail (a refusal for the rate limit is then not audited by mfa). */
int bv_mfa_challenge_create_tx(bv_tx_t *tx, bv_mfa_t *m, const bv_mfa_challenge_req_t *req,
                               bv_mfa_challenge_t *out);

typedef struct {
    int attempts_left;                /* after a wrong code */
    char proof[BV_MFA_PROOF_LEN + 1]; /* on success: single-use proof token */
    int64_t proof_expires_at;         /* us */
    bv_mfa_purpose_t purpose;         /* also set on failure (when the challenge exists) */
    bv_mfa_channel_t channel;         /* likewise */
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

/* ---- TOTP soft tokens (RFC 6238: SHA-1, SHA-256 or SHA-512, 6 digits, 30 s) ---- */
#define BV_MFA_TOTP_RESYNC_WINDOW 10 /* steps either side of the clock searched by a resync */
typedef struct {
    char id[BV_UUID_STR_LEN + 1];
    char secret[112];   /* base32 of the seed (20, 32 or 64 bytes) */
    char algorithm[8];  /* "SHA1", "SHA256", "SHA512" */
    char uri[1024];     /* otpauth://totp/... */
    bv_buf_t qr_svg;    /* QR of uri */
    char recovery_codes[BV_MFA_RECOVERY_CODES][BV_MFA_RECOVERY_LEN + 1];
} bv_mfa_enrolment_t;
/* Wipes and frees what an enrolment holds (not the struct). */
void bv_mfa_enrolment_clear(bv_mfa_enrolment_t *e);

/* Starts (or restarts) an enrolment with the algorithm of BOVEDA_MFA_TOTP_ALGORITHM and a
 * seed of its block size (SHA-1 20, SHA-256 32, SHA-512 64 bytes; RFC 6238 appendix A) from
 * the master key store (bv_keys_random: inside the HSM with the PKCS#11 adapter), stored
 * encrypted, and 10 recovery codes stored as HMACs; the token stays `pending` until
 * bv_mfa_totp_confirm. `label` names the account in the URI (username). 0, BV_ECONFLICT
 * (an active token exists: revoke it first, or use bv_mfa_totp_replace), store/key errors.
 * Caller clears *out. */
int bv_mfa_totp_enrol(bv_mfa_t *m, const char *user_id, const char *label, const char *request_id,
                      bv_mfa_enrolment_t *out);
/* Like bv_mfa_totp_enrol, but an active token is replaced (deleted with its recovery codes,
 * the new one pending) when `proof` is a step-up proof bound to
 * bv_mfa_op_binding("totp.replace", user_id, <active token id>), consumed in the same write
 * job. Without an active token the proof is not needed (may be NULL). 0, the errors of
 * bv_mfa_consume_proof (BV_EOTP_INVALID also for a missing proof), store/key errors. */
int bv_mfa_totp_replace(bv_mfa_t *m, const char *user_id, const char *label, const char *proof,
                        const char *request_id, bv_mfa_enrolment_t *out);
/* Activates a pending token with its first valid code. 0, BV_ENOTFOUND (nothing pending),
 * BV_EOTP_INVALID. */
int bv_mfa_totp_confirm(bv_mfa_t *m, const char *user_id, const char *code, const char *request_id);
/* Deletes the user's token and recovery codes without a second factor (operator tools,
 * tests; the customer's route uses bv_mfa_totp_revoke_with_proof). 0 or BV_ENOTFOUND. */
int bv_mfa_totp_revoke(bv_mfa_t *m, const char *user_id, const char *request_id);
/* Deletes the user's token: an active one only with a step-up proof bound to
 * bv_mfa_op_binding("totp.revoke", user_id, <token id>), consumed in the same write job; a
 * pending one without (proof may be NULL). 0, BV_ENOTFOUND, the errors of
 * bv_mfa_consume_proof (BV_EOTP_INVALID also for a missing proof). */
int bv_mfa_totp_revoke_with_proof(bv_mfa_t *m, const char *user_id, const char *proof, const char *request_id);
/* *active_out = 1 when the user has a confirmed token. */
int bv_mfa_totp_active(bv_mfa_t *m, const char *user_id, int *active_out);

typedef struct {
    char id[BV_UUID_STR_LEN + 1];
    int active;        /* confirmed */
    char algorithm[8]; /* "SHA1", "SHA256", "SHA512" */
    int64_t drift;     /* steps added to the clock's step (resynchronisation) */
} bv_mfa_totp_info_t;
/* The user's token (pending or active). 0 or BV_ENOTFOUND, store errors. */
int bv_mfa_totp_info(bv_mfa_t *m, const char *user_id, bv_mfa_totp_info_t *out);

/* Resynchronisation: finds two consecutive codes code1, code2 within
 * ±BV_MFA_TOTP_RESYNC_WINDOW steps of the server's clock, both after the last accepted
 * step; stores the drift (step of code2 - clock step), applied to every later check, and
 * records code2's step as accepted (neither code works again). Audited. 0,
 * BV_EOTP_INVALID, BV_ENOTFOUND (no active token). */
int bv_mfa_totp_resync(bv_mfa_t *m, const char *user_id, const char *code1, const char *code2,
                       const char *request_id);
/* Checks a TOTP code (±1 step around the clock plus the token's drift, a step never
 * accepted twice) or an unused recovery code for the user's active token, inside the
 * caller's write job; records the accepted step / spends the recovery code.
 * 0, BV_EOTP_INVALID, BV_ENOTFOUND (no active token). */
int bv_mfa_totp_check(bv_tx_t *tx, bv_mfa_t *m, const char *user_id, const char *code, int64_t now_us);

/* ---- step-up for API routes (docs/mfa.md "Step-up") ---- */
#define BV_MFA_PROOF_HEADER "mfa-proof"
/* For a handler (on a worker) of a route that needs a fresh second factor bound to this
 * request: `binding` is the hash of exactly the operation (bv_mfa_binding or
 * bv_mfa_op_binding). When the request carries `MFA-Proof: mfp_...` returns 0 with
 * *proof_out pointing at it (call-owned): the handler consumes it with
 * bv_mfa_consume_proof(tx, user_id, proof, binding) in the write job of the operation and,
 * if that fails, answers with bv_mfa_step_up_reply. Without a proof it creates a challenge
 * for the user (channel totp when a soft token is active, else sms to the phone on file,
 * else email) bound to `binding`, replies 401 step-up-required with the challenge's
 * description and `WWW-Authenticate: Bearer error="insufficient_user_authentication"`
 * (RFC 9470) and returns non-zero (also when it had to reply another error: 429 when the
 * challenge rate limit is reached, 403 when the user has no second factor at all). */
int bv_mfa_step_up_or_reply(bv_call_t *c, const char *user_id, bv_mfa_purpose_t purpose,
                            const unsigned char binding[32], const char **proof_out);
/* Answers a request whose proof was refused (consume_rc: BV_EOTP_INVALID, BV_EOTP_USED,
 * BV_EOTP_EXPIRED) with a fresh 401 step-up-required challenge naming the reason
 * ("proof_error": "otp-invalid" ...); other codes are answered as plain problems. */
void bv_mfa_step_up_reply(bv_call_t *c, const char *user_id, bv_mfa_purpose_t purpose,
                          const unsigned char binding[32], int consume_rc);

/* ---- the hosted login's second step (src/oauth/login.c, token.c) ---- */
/* *required_out = 1 when the user must pass a second step: always under policy "all",
 * with a confirmed soft token under "enrolled". 0 (and 0 in *required_out when the module
 * is not running) or a store error. */
int bv_mfa_login_required(const char *user_id, int *required_out);

typedef struct {
    int required;             /* a second step is needed (bv_mfa_login_required) */
    int available;            /* the user has a factor for it */
    bv_mfa_channel_t channel; /* totp when a soft token is active, else sms (phone), else email */
    char destination[96];     /* masked phone or e-mail for sms/email ("" otherwise) */
} bv_mfa_login_plan_t;
/* The second step the user gets. 0 (required 0 when the module is not running), store
 * errors. */
int bv_mfa_login_plan(const char *user_id, bv_mfa_login_plan_t *out);
/* Audits a login refused because a second factor is required and the user has none
 * (action mfa.login.refuse, reason no_second_factor). 0 or store errors. */
int bv_mfa_login_refuse(const char *user_id, const char *source_ip, const char *request_id);

typedef struct {
    char challenge_id[BV_UUID_STR_LEN + 1];
    bv_mfa_channel_t channel;
    char destination[96]; /* where the code went, masked ("+34*****1222", "a***@example.com"); "" for totp */
} bv_mfa_login_step_t;
/* Creates the step's challenge (purpose login) on the plan's channel; an SMS or e-mail
 * code is sent in `locale` ("es"/"en"). 0, BV_EOTP_RATE, BV_EFORBIDDEN (no factor),
 * BV_EUNAVAILABLE, store errors. */
int bv_mfa_login_begin(const char *user_id, const char *locale, const char *source_ip, const char *request_id,
                       bv_mfa_login_step_t *out);
/* Verifies the step's code (a soft-token or recovery code, or the SMS/e-mail code): the
 * return values of bv_mfa_challenge_verify (a challenge of another purpose: BV_ENOTFOUND).
 * *out describes the challenge (channel, masked destination) whenever it exists, so a
 * wrong code can be asked again on the same page. */
int bv_mfa_login_verify(const char *user_id, const char *challenge_id, const char *code,
                        const char *source_ip, const char *request_id, bv_mfa_login_step_t *out);

/* Replies 422 otp-invalid (field "code") with `attempts_left` as an extension member
 * (RFC 9457 §3.2): for any route that verifies a one-time code. */
void bv_mfa_reply_invalid_code(bv_call_t *c, int attempts_left);

/* ---- application hooks (src/app/app.c) ---- */
int bv_mfa_module_init(bv_app_t *app);
int bv_mfa_module_routes(bv_app_t *app);
void bv_mfa_module_fini(bv_app_t *app);

#endif
