/* HOTP/TOTP against the RFC 4226 Appendix D and RFC 6238 Appendix B vectors; base32; QR. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "base/errors.h"
#include "mfa/otp.h"

static const char *seed20 = "12345678901234567890";
static const char *seed32 = "12345678901234567890123456789012";
static const char *seed64 = "1234567890123456789012345678901234567890123456789012345678901234";

static void test_rfc4226_vectors(void **state)
{
    (void)state;
    static const char *expected[] = {"755224", "287082", "359152", "969429", "338314",
                                     "254676", "287922", "162583", "399871", "520489"};
    char out[16];
    for (int i = 0; i < 10; i++) {
        assert_int_equal(bv_otp_hotp(seed20, 20, (uint64_t)i, 6, BV_OTP_SHA1, out), 0);
        assert_string_equal(out, expected[i]);
    }
}

static void test_rfc6238_vectors(void **state)
{
    (void)state;
    static const struct {
        int64_t t;
        const char *sha1, *sha256, *sha512;
    } v[] = {
        {59, "94287082", "46119246", "90693936"},
        {1111111109, "07081804", "68084774", "25091201"},
        {1111111111, "14050471", "67062674", "99943326"},
        {1234567890, "89005924", "91819424", "93441116"},
        {2000000000, "69279037", "90698825", "38618901"},
        {20000000000LL, "65353130", "77737706", "47863826"},
    };
    char out[16];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        assert_int_equal(bv_otp_totp(seed20, 20, v[i].t, 30, 8, BV_OTP_SHA1, out), 0);
        assert_string_equal(out, v[i].sha1);
        assert_int_equal(bv_otp_totp(seed32, 32, v[i].t, 30, 8, BV_OTP_SHA256, out), 0);
        assert_string_equal(out, v[i].sha256);
        assert_int_equal(bv_otp_totp(seed64, 64, v[i].t, 30, 8, BV_OTP_SHA512, out), 0);
        assert_string_equal(out, v[i].sha512);
    }
}

static void test_totp_verify_window(void **state)
{
    (void)state;
    char code[16];
    int64_t step = -1, t = 1234567890;
    assert_int_equal(bv_otp_totp(seed20, 20, t, 30, 6, BV_OTP_SHA1, code), 0);
    assert_int_equal(bv_otp_totp_verify(seed20, 20, code, t, 30, 6, BV_OTP_SHA1, 1, &step), 0);
    assert_int_equal(step, t / 30);
    /* one step of drift either way is accepted, two are not */
    assert_int_equal(bv_otp_totp_verify(seed20, 20, code, t + 30, 30, 6, BV_OTP_SHA1, 1, &step), 0);
    assert_int_equal(bv_otp_totp_verify(seed20, 20, code, t - 30, 30, 6, BV_OTP_SHA1, 1, &step), 0);
    assert_int_equal(bv_otp_totp_verify(seed20, 20, code, t + 60, 30, 6, BV_OTP_SHA1, 1, &step), BV_EINVALID);
    assert_int_equal(bv_otp_totp_verify(seed20, 20, code, t - 60, 30, 6, BV_OTP_SHA1, 1, &step), BV_EINVALID);
    assert_int_equal(bv_otp_totp_verify(seed20, 20, "12345", t, 30, 6, BV_OTP_SHA1, 1, &step), BV_EINVALID);
    assert_int_equal(bv_otp_totp_verify(seed20, 20, NULL, t, 30, 6, BV_OTP_SHA1, 1, &step), BV_EINVALID);
    code[0] = code[0] == '9' ? '0' : (char)(code[0] + 1);
    assert_int_equal(bv_otp_totp_verify(seed20, 20, code, t, 30, 6, BV_OTP_SHA1, 1, &step), BV_EINVALID);
    assert_int_equal(bv_otp_hotp(seed20, 20, 0, 3, BV_OTP_SHA1, code), BV_EINVALID);
    assert_int_equal(bv_otp_hotp(seed20, 20, 0, 4, BV_OTP_SHA1, code), 0);
    assert_int_equal(strlen(code), 4);
}

static void test_base32(void **state)
{
    (void)state;
    /* RFC 4648 §10 (without padding) */
    static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *out[] = {"", "MY", "MZXQ", "MZXW6", "MZXW6YQ", "MZXW6YTB", "MZXW6YTBOI"};
    for (int i = 0; i < 7; i++) {
        bv_buf_t b = {0};
        assert_int_equal(bv_base32_encode(in[i], strlen(in[i]), &b), 0);
        assert_string_equal(b.data ? b.data : "", out[i]);
        unsigned char dec[16];
        int n = bv_base32_decode(out[i], dec, sizeof(dec));
        assert_int_equal(n, (int)strlen(in[i]));
        assert_memory_equal(dec, in[i], (size_t)n);
        bv_buf_free(&b);
    }
    unsigned char dec[4];
    assert_int_equal(bv_base32_decode("mzxw6===", dec, sizeof(dec)), 3);
    assert_int_equal(bv_base32_decode("MZ1W", dec, sizeof(dec)), BV_EINVALID);
    assert_int_equal(bv_base32_decode("MZXW6YTBOI", dec, 2), BV_EINVALID);
}

static void test_qr_svg(void **state)
{
    (void)state;
    bv_buf_t b = {0};
    assert_int_equal(bv_qr_svg("otpauth://totp/B%C3%B3veda:ana?secret=MZXW6YTBOI&issuer=B%C3%B3veda", &b), 0);
    assert_non_null(strstr(b.data, "<svg"));
    assert_non_null(strstr(b.data, "</svg>"));
    assert_true(b.len > 1000);
    bv_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4226_vectors), cmocka_unit_test(test_rfc6238_vectors),
        cmocka_unit_test(test_totp_verify_window), cmocka_unit_test(test_base32), cmocka_unit_test(test_qr_svg),
    };
    return cmocka_run_group_tests_name("mfa otp", tests, NULL, NULL);
}
