/* One-time passwords: HOTP (RFC 4226), TOTP (RFC 6238), base32 (RFC 4648) for otpauth://
 * URIs, and QR codes as SVG. Pure functions: no storage, no clock of their own. */
#ifndef BV_MFA_OTP_H
#define BV_MFA_OTP_H

#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

typedef enum { BV_OTP_SHA1 = 0, BV_OTP_SHA256, BV_OTP_SHA512 } bv_otp_alg_t;

/* HOTP value for `counter` (RFC 4226 §5.3) with 4 to 10 digits, as a zero-padded string in
 * out (size >= digits + 1). 0 or BV_EINVALID. */
int bv_otp_hotp(const void *key, size_t key_len, uint64_t counter, int digits, bv_otp_alg_t alg, char *out);
/* TOTP value (RFC 6238 §4) for unix time `t` seconds and `step` seconds (usually 30). */
int bv_otp_totp(const void *key, size_t key_len, int64_t t, int step, int digits, bv_otp_alg_t alg, char *out);

/* Checks `code` against the TOTP steps t/step - window .. t/step + window, in constant time
 * per candidate. On a match returns 0 and sets *step_out to the matching time step (the
 * caller rejects steps <= the last accepted one: a code is never accepted twice). Returns
 * BV_EINVALID when nothing matches. */
int bv_otp_totp_verify(const void *key, size_t key_len, const char *code, int64_t t, int step, int digits,
                       bv_otp_alg_t alg, int window, int64_t *step_out);

/* RFC 4648 base32 without padding (upper case). Appends to out. */
int bv_base32_encode(const void *in, size_t len, bv_buf_t *out);
/* Decodes base32 (case-insensitive, padding and spaces ignored) into out (size cap);
 * returns the decoded length or BV_EINVALID. */
int bv_base32_decode(const char *in, unsigned char *out, size_t cap);

/* Renders `text` as a QR code (error correction M) in SVG, appended to out. */
int bv_qr_svg(const char *text, bv_buf_t *out);

#endif
