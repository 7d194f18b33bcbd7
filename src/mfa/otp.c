#include "mfa/otp.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <qrencode.h>
#include <stdio.h>
#include <string.h>

#include "base/errors.h"

static const EVP_MD *md_of(bv_otp_alg_t alg)
{
    switch (alg) {
    case BV_OTP_SHA256: return EVP_sha256();
    case BV_OTP_SHA512: return EVP_sha512();
    default: return EVP_sha1();
    }
}

int bv_otp_hotp(const void *key, size_t key_len, uint64_t counter, int digits, bv_otp_alg_t alg, char *out)
{
    static const uint64_t pow10[] = {1,         10,         100,         1000,         10000,      100000,
                                     1000000,   10000000,   100000000,   1000000000,   10000000000ULL};
    unsigned char msg[8], mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (digits < 4 || digits > 10 || key_len == 0)
        return BV_EINVALID;
    for (int i = 7; i >= 0; i--) {
        msg[i] = (unsigned char)(counter & 0xff);
        counter >>= 8;
    }
    if (HMAC(md_of(alg), key, (int)key_len, msg, sizeof(msg), mac, &mac_len) == NULL)
        return BV_ECRYPTO;
    /* dynamic truncation, RFC 4226 §5.3 */
    int off = mac[mac_len - 1] & 0x0f;
    uint64_t bin = ((uint64_t)(mac[off] & 0x7f) << 24) | ((uint64_t)mac[off + 1] << 16) |
                   ((uint64_t)mac[off + 2] << 8) | (uint64_t)mac[off + 3];
    OPENSSL_cleanse(mac, sizeof(mac));
    snprintf(out, (size_t)digits + 1, "%0*llu", digits, (unsigned long long)(bin % pow10[digits]));
    return 0;
}

int bv_otp_totp(const void *key, size_t key_len, int64_t t, int step, int digits, bv_otp_alg_t alg, char *out)
{
    if (step <= 0 || t < 0)
        return BV_EINVALID;
    return bv_otp_hotp(key, key_len, (uint64_t)(t / step), digits, alg, out);
}

int bv_otp_totp_verify(const void *key, size_t key_len, const char *code, int64_t t, int step, int digits,
                       bv_otp_alg_t alg, int window, int64_t *step_out)
{
    char cand[12];
    int found = 0;
    int64_t match = 0;
    if (code == NULL || strlen(code) != (size_t)digits || step <= 0 || t < 0)
        return BV_EINVALID;
    int64_t now_step = t / step;
    /* every candidate is computed and compared, so timing does not reveal which matched */
    for (int64_t s = now_step - window; s <= now_step + window; s++) {
        if (s < 0)
            continue;
        if (bv_otp_hotp(key, key_len, (uint64_t)s, digits, alg, cand) != 0)
            return BV_ECRYPTO;
        int eq = CRYPTO_memcmp(cand, code, (size_t)digits) == 0;
        if (eq && !found) {
            found = 1;
            match = s;
        }
    }
    OPENSSL_cleanse(cand, sizeof(cand));
    if (!found)
        return BV_EINVALID;
    *step_out = match;
    return 0;
}

static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

int bv_base32_encode(const void *in, size_t len, bv_buf_t *out)
{
    const unsigned char *p = in;
    uint32_t buffer = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        buffer = (buffer << 8) | p[i];
        bits += 8;
        while (bits >= 5) {
            char c = b32[(buffer >> (bits - 5)) & 31];
            if (bv_buf_append(out, &c, 1) != 0)
                return BV_ENOMEM;
            bits -= 5;
        }
    }
    if (bits > 0) {
        char c = b32[(buffer << (5 - bits)) & 31];
        if (bv_buf_append(out, &c, 1) != 0)
            return BV_ENOMEM;
    }
    return 0;
}

int bv_base32_decode(const char *in, unsigned char *out, size_t cap)
{
    uint32_t buffer = 0;
    int bits = 0;
    size_t n = 0;
    for (; *in; in++) {
        char c = *in;
        int v;
        if (c == '=' || c == ' ' || c == '-')
            continue;
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= '2' && c <= '7')
            v = c - '2' + 26;
        else
            return BV_EINVALID;
        buffer = (buffer << 5) | (uint32_t)v;
        bits += 5;
        if (bits >= 8) {
            if (n == cap)
                return BV_EINVALID;
            out[n++] = (unsigned char)((buffer >> (bits - 8)) & 0xff);
            bits -= 8;
        }
    }
    return (int)n;
}

int bv_qr_svg(const char *text, bv_buf_t *out)
{
    QRcode *qr = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    if (qr == NULL)
        return BV_EINVALID;
    int w = qr->width, quiet = 4, size = w + 2 * quiet;
    int rc = bv_buf_printf(out,
                           "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" shape-rendering=\"crispEdges\">"
                           "<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/><path fill=\"#000\" d=\"",
                           size, size);
    for (int y = 0; y < w && rc == 0; y++)
        for (int x = 0; x < w && rc == 0; x++)
            if (qr->data[y * w + x] & 1)
                rc = bv_buf_printf(out, "M%d %dh1v1h-1z", x + quiet, y + quiet);
    if (rc == 0)
        rc = bv_buf_puts(out, "\"/></svg>");
    QRcode_free(qr);
    return rc;
}
