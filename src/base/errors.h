/* The one registry of error codes: each code maps to an HTTP status, a stable problem
 * `type` slug (RFC 9457) and a short title. Functions across Bóveda return 0 on success
 * or a negative BV_E... code. Clients see the slug and title, never internals. */
#ifndef BV_BASE_ERRORS_H
#define BV_BASE_ERRORS_H

#include <stddef.h>

/* X(name, http_status, slug, title). Append only: slugs are a public contract. */
#define BV_ERRORS(X)                                                                               \
    X(BV_EINTERNAL, 500, "internal", "Internal error")                                             \
    X(BV_ENOMEM, 500, "internal", "Internal error")                                                \
    X(BV_EIO, 500, "storage-unavailable", "Storage unavailable")                                   \
    X(BV_EBUSY, 503, "busy", "Service busy, retry later")                                          \
    X(BV_EUNAVAILABLE, 503, "unavailable", "Service unavailable")                                  \
    X(BV_ENOTFOUND, 404, "not-found", "Resource not found")                                        \
    X(BV_EROUTE, 404, "no-such-route", "No such route")                                            \
    X(BV_EMETHOD, 405, "method-not-allowed", "Method not allowed")                                 \
    X(BV_EMEDIA, 415, "unsupported-media-type", "Unsupported media type")                          \
    X(BV_ENOTACCEPTABLE, 406, "not-acceptable", "Not acceptable")                                  \
    X(BV_ETOOLARGE, 413, "body-too-large", "Request body too large")                               \
    X(BV_EHEADERS, 431, "headers-too-large", "Request header fields too large")                    \
    X(BV_EMALFORMED, 400, "malformed-json", "Malformed JSON body")                                 \
    X(BV_EINVALID, 400, "invalid-request", "Invalid request")                                      \
    X(BV_EREQUESTID, 400, "invalid-request-id", "Invalid X-Request-Id")                            \
    X(BV_EUNAUTHENTICATED, 401, "unauthenticated", "Authentication required")                      \
    X(BV_EFORBIDDEN, 403, "forbidden", "Insufficient scope")                                       \
    X(BV_ECONFLICT, 409, "conflict", "Conflict with the current state")                            \
    X(BV_EIDEMPOTENCY, 422, "idempotency-key-reused", "Idempotency key reused with another request") \
    X(BV_ERATELIMIT, 429, "rate-limited", "Too many requests")                                     \
    X(BV_ECRYPTO, 500, "internal", "Internal error")                                               \
    X(BV_EKEYSTORE, 503, "keystore-unavailable", "Key store unavailable")                          \
    X(BV_EINTEGRITY, 500, "integrity-failure", "Integrity check failed")                           \
    X(BV_ECONFIG, 500, "internal", "Internal error")                                               \
    X(BV_ESHUTDOWN, 503, "shutting-down", "Server is shutting down")                               \
    /* ledger (issue 4) */                                                                         \
    X(BV_EINSUFFICIENT_FUNDS, 422, "insufficient-funds", "Insufficient funds")                     \
    X(BV_EACCOUNT_FROZEN, 422, "account-frozen", "Account frozen")                                 \
    X(BV_EACCOUNT_CLOSED, 422, "account-closed", "Account closed")                                 \
    X(BV_ECURRENCY_MISMATCH, 422, "currency-mismatch", "Currency mismatch")                        \
    X(BV_ESAME_ACCOUNT, 422, "same-account", "Debit and credit account are the same")              \
    X(BV_EAMOUNT, 422, "invalid-amount", "Invalid amount")                                         \
    X(BV_EUNKNOWN_ACCOUNT, 422, "unknown-account", "Unknown account")                              \
    X(BV_ETRANSFER_STATE, 422, "invalid-transfer-state", "Transfer is not in a state that allows this") \
    X(BV_EALREADY_REVERSED, 422, "already-reversed", "Transfer already reversed")                  \
    X(BV_ELINKED_FAILED, 422, "linked-transfer-failed", "A linked transfer in the batch failed")   \
    X(BV_EEXPIRED, 422, "expired", "Expired")                                                     \
    /* mfa (issue 7) */                                                                            \
    X(BV_EOTP_INVALID, 422, "otp-invalid", "Invalid one-time code")                                \
    X(BV_EOTP_EXPIRED, 422, "otp-expired", "One-time code expired")                                \
    X(BV_EOTP_LOCKED, 422, "otp-locked", "Too many wrong codes: challenge locked")                 \
    X(BV_EOTP_USED, 422, "otp-used", "One-time code already used")                                 \
    X(BV_EOTP_RATE, 429, "otp-rate-limited", "Too many one-time code challenges")                  \
    X(BV_ESTEP_UP, 401, "step-up-required", "A fresh second factor is required")                   \
    /* customer banking and the core port (issue 8) */                                             \
    X(BV_ELIMIT, 422, "limit-exceeded", "Transfer limit exceeded")                                 \
    X(BV_ETIMEOUT, 504, "upstream-timeout", "The core platform did not answer in time")            \
    X(BV_EUPSTREAM, 502, "upstream-failure", "The core platform failed")                           \
    X(BV_EUNPROCESSABLE, 422, "validation-failed", "A field's value cannot be accepted")

typedef enum {
    BV_OK = 0,
#define BV_ERR_ENUM(name, status, slug, title) name,
    BV__ERR_FIRST_PLACEHOLDER = -1000,
    BV_ERRORS(BV_ERR_ENUM)
#undef BV_ERR_ENUM
    BV__ERR_END
} bv_err_t;

/* Storage-level statuses returned alongside errors (see store.h). */
#define BV_ROW 1  /* a step produced a row */
#define BV_DONE 0 /* a step finished */

/* Base URI of problem types: type = BV_PROBLEM_BASE + slug. */
#define BV_PROBLEM_BASE "https://boveda.dev/problems/"

/* Lookups for a code returned by any bv_ function (0 or negative). Unknown codes map to
 * the internal error. Returned strings are static. */
int bv_err_status(int code);
const char *bv_err_slug(int code);
const char *bv_err_title(int code);
const char *bv_err_name(int code); /* "BV_EINSUFFICIENT_FUNDS": for logs only */

#endif
