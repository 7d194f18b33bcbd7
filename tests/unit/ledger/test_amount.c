/* Amount parsing and formatting, the currency table and account-number check digits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/errors.h"
#include "ledger/ledger.h"

static void test_currency_exponents(void **state)
{
    (void)state;
    assert_int_equal(bv_ledger_currency_exponent("USD"), 2);
    assert_int_equal(bv_ledger_currency_exponent("EUR"), 2);
    assert_int_equal(bv_ledger_currency_exponent("JPY"), 0);
    assert_int_equal(bv_ledger_currency_exponent("CLP"), 0);
    assert_int_equal(bv_ledger_currency_exponent("KWD"), 3);
    assert_int_equal(bv_ledger_currency_exponent("CLF"), 4);
    assert_int_equal(bv_ledger_currency_exponent("AED"), 2); /* first of the table */
    assert_int_equal(bv_ledger_currency_exponent("ZAR"), 2); /* last of the table */
    assert_int_equal(bv_ledger_currency_exponent("XXX"), -1);
    assert_int_equal(bv_ledger_currency_exponent("usd"), -1);
    assert_int_equal(bv_ledger_currency_exponent("US"), -1);
    assert_int_equal(bv_ledger_currency_exponent("USDX"), -1);
    assert_int_equal(bv_ledger_currency_exponent(""), -1);
    assert_int_equal(bv_ledger_currency_exponent(NULL), -1);
}

static void test_parse_precision(void **state)
{
    (void)state;
    int64_t v = -1;
    assert_int_equal(bv_ledger_amount_parse("10", 2, false, &v), 0);
    assert_int_equal(v, 1000);
    assert_int_equal(bv_ledger_amount_parse("10.5", 2, false, &v), 0);
    assert_int_equal(v, 1050);
    assert_int_equal(bv_ledger_amount_parse("10.50", 2, false, &v), 0);
    assert_int_equal(v, 1050);
    assert_int_equal(bv_ledger_amount_parse("0.01", 2, false, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(bv_ledger_amount_parse("0", 2, false, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(bv_ledger_amount_parse("007.10", 2, false, &v), 0);
    assert_int_equal(v, 710);
    /* beyond the currency's precision, even with trailing zeros */
    assert_int_equal(bv_ledger_amount_parse("10.505", 2, false, &v), BV_EAMOUNT);
    assert_int_equal(bv_ledger_amount_parse("10.500", 2, false, &v), BV_EAMOUNT);
    assert_int_equal(bv_ledger_amount_parse("1.5", 0, false, &v), BV_EAMOUNT);
    assert_int_equal(bv_ledger_amount_parse("150", 0, false, &v), 0);
    assert_int_equal(v, 150);
    assert_int_equal(bv_ledger_amount_parse("1.234", 3, false, &v), 0);
    assert_int_equal(v, 1234);
}

static void test_parse_negative(void **state)
{
    (void)state;
    int64_t v = 0;
    assert_int_equal(bv_ledger_amount_parse("-3.25", 2, true, &v), 0);
    assert_int_equal(v, -325);
    assert_int_equal(bv_ledger_amount_parse("-3.25", 2, false, &v), BV_EAMOUNT);
    assert_int_equal(bv_ledger_amount_parse("-", 2, true, &v), BV_EINVALID);
    assert_int_equal(bv_ledger_amount_parse("--1", 2, true, &v), BV_EINVALID);
}

static void test_parse_overflow(void **state)
{
    (void)state;
    int64_t v = 0;
    /* INT64_MAX minor units = 92233720368547758.07 at exponent 2 */
    assert_int_equal(bv_ledger_amount_parse("92233720368547758.07", 2, false, &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(bv_ledger_amount_parse("92233720368547758.08", 2, false, &v), BV_EAMOUNT);
    assert_int_equal(bv_ledger_amount_parse("92233720368547759", 2, false, &v), BV_EAMOUNT);
    assert_int_equal(bv_ledger_amount_parse("9223372036854775807", 0, false, &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(bv_ledger_amount_parse("9223372036854775808", 0, false, &v), BV_EAMOUNT);
    assert_int_equal(bv_ledger_amount_parse("99999999999999999999999999999", 0, false, &v), BV_EAMOUNT);
    assert_int_equal(bv_ledger_amount_parse("-9223372036854775807", 0, true, &v), 0);
    assert_true(v == -INT64_MAX);
    assert_int_equal(bv_ledger_amount_parse("-9223372036854775808", 0, true, &v), BV_EAMOUNT);
}

static void test_parse_garbage(void **state)
{
    (void)state;
    int64_t v = 77;
    const char *bad[] = {"", " ", "abc", "1e3", "+1", " 1", "1 ", "1.", ".5", "1,00", "1.2.3", "0x10", "1_000",
                         "١٠", "1.0a", "NaN", "inf", "10.", NULL};
    for (int i = 0; bad[i] != NULL; i++) {
        assert_int_equal(bv_ledger_amount_parse(bad[i], 2, true, &v), BV_EINVALID);
        assert_int_equal(v, 77); /* untouched on failure */
    }
    assert_int_equal(bv_ledger_amount_parse(NULL, 2, true, &v), BV_EINVALID);
}

static void test_format(void **state)
{
    (void)state;
    char out[BV_LEDGER_AMOUNT_MAX];
    bv_ledger_amount_format(0, 2, out);
    assert_string_equal(out, "0.00");
    bv_ledger_amount_format(5, 2, out);
    assert_string_equal(out, "0.05");
    bv_ledger_amount_format(-5, 2, out);
    assert_string_equal(out, "-0.05");
    bv_ledger_amount_format(12345, 2, out);
    assert_string_equal(out, "123.45");
    bv_ledger_amount_format(-1205, 2, out);
    assert_string_equal(out, "-12.05");
    bv_ledger_amount_format(150, 0, out);
    assert_string_equal(out, "150");
    bv_ledger_amount_format(1, 3, out);
    assert_string_equal(out, "0.001");
    bv_ledger_amount_format(INT64_MAX, 2, out);
    assert_string_equal(out, "92233720368547758.07");
    bv_ledger_amount_format(INT64_MIN, 2, out);
    assert_string_equal(out, "-92233720368547758.08");
    bv_ledger_amount_format(INT64_MIN, 0, out);
    assert_string_equal(out, "-9223372036854775808");
}

static void test_format_parse_round_trip(void **state)
{
    (void)state;
    char out[BV_LEDGER_AMOUNT_MAX];
    const int64_t values[] = {0, 1, -1, 99, 100, 101, 123456789, -987654321, INT64_MAX, -INT64_MAX};
    for (int e = 0; e <= 4; e++) {
        for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
            int64_t v = 0;
            bv_ledger_amount_format(values[i], e, out);
            assert_int_equal(bv_ledger_amount_parse(out, e, true, &v), 0);
            assert_true(v == values[i]);
        }
    }
}

static void test_account_numbers(void **state)
{
    (void)state;
    char n[BV_LEDGER_NUMBER_LEN + 1];
    /* ISO 7064 MOD 97-10: the whole number is 1 mod 97 */
    bv_ledger_number_make(12345678901234ULL, n);
    assert_int_equal(strlen(n), 16);
    assert_memory_equal(n, "12345678901234", 14);
    assert_true(bv_ledger_number_valid(n));
    /* check digits computed by hand: 98 - (1234567890123400 mod 97) */
    unsigned long long body = 1234567890123400ULL;
    unsigned check = 98 - (unsigned)(body % 97);
    char expect[3];
    snprintf(expect, sizeof(expect), "%02u", check);
    assert_memory_equal(n + 14, expect, 2);

    /* every single-digit change and every adjacent transposition is detected */
    for (int i = 0; i < 16; i++) {
        for (char d = '0'; d <= '9'; d++) {
            char m[17];
            memcpy(m, n, 17);
            if (m[i] == d)
                continue;
            m[i] = d;
            assert_false(bv_ledger_number_valid(m));
        }
        if (i < 15 && n[i] != n[i + 1]) {
            char m[17];
            memcpy(m, n, 17);
            m[i] = n[i + 1];
            m[i + 1] = n[i];
            assert_false(bv_ledger_number_valid(m));
        }
    }
    assert_false(bv_ledger_number_valid("123"));
    assert_false(bv_ledger_number_valid("12345678901234a5"));
    assert_false(bv_ledger_number_valid(NULL));
    for (uint64_t b = 10000000000000ULL; b < 10000000000000ULL + 500; b++) {
        bv_ledger_number_make(b, n);
        assert_true(bv_ledger_number_valid(n));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_currency_exponents), cmocka_unit_test(test_parse_precision),
        cmocka_unit_test(test_parse_negative),     cmocka_unit_test(test_parse_overflow),
        cmocka_unit_test(test_parse_garbage),      cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_parse_round_trip), cmocka_unit_test(test_account_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
