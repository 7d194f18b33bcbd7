/* Currencies, decimal amounts and account numbers. Pure functions, no allocation. */
#include <string.h>

#include "base/errors.h"
#include "ledger/ledger.h"

/* ISO 4217 minor units of the currencies the ledger accepts. Sorted by code. */
static const struct {
    char code[4];
    int exponent;
} currencies[] = {
    {"AED", 2}, {"ARS", 2}, {"AUD", 2}, {"BHD", 3}, {"BOB", 2}, {"BRL", 2}, {"CAD", 2}, {"CHF", 2},
    {"CLF", 4}, {"CLP", 0}, {"CNY", 2}, {"COP", 2}, {"CRC", 2}, {"CZK", 2}, {"DKK", 2}, {"DOP", 2},
    {"EUR", 2}, {"GBP", 2}, {"GTQ", 2}, {"HKD", 2}, {"HNL", 2}, {"HUF", 2}, {"IDR", 2}, {"ILS", 2},
    {"INR", 2}, {"IQD", 3}, {"ISK", 0}, {"JOD", 3}, {"JPY", 0}, {"KRW", 0}, {"KWD", 3}, {"LYD", 3},
    {"MXN", 2}, {"NIO", 2}, {"NOK", 2}, {"NZD", 2}, {"OMR", 3}, {"PAB", 2}, {"PEN", 2}, {"PHP", 2},
    {"PLN", 2}, {"PYG", 0}, {"RON", 2}, {"SEK", 2}, {"SGD", 2}, {"THB", 2}, {"TND", 3}, {"TRY", 2},
    {"TWD", 2}, {"UGX", 0}, {"USD", 2}, {"UYI", 0}, {"UYU", 2}, {"VES", 2}, {"VND", 0}, {"XAF", 0},
    {"XOF", 0}, {"ZAR", 2},
};

int bv_ledger_currency_exponent(const char *code)
{
    if (code == NULL || strlen(code) != 3)
        return -1;
    size_t lo = 0, hi = sizeof(currencies) / sizeof(currencies[0]);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(code, currencies[mid].code);
        if (c == 0)
            return currencies[mid].exponent;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

int bv_ledger_amount_parse(const char *s, int exponent, bool allow_negative, int64_t *out)
{
    const char *p = s;
    bool neg = false;
    uint64_t mag = 0;
    int n_int = 0, n_frac = 0;
    const uint64_t limit = (uint64_t)INT64_MAX; /* |INT64_MIN| is never needed: reject it */
    bool overflow = false;

    if (s == NULL || exponent < 0 || exponent > 18)
        return BV_EINVALID;
    if (*p == '-') {
        neg = true;
        p++;
    }
    for (; *p >= '0' && *p <= '9'; p++, n_int++) {
        if (!overflow) {
            if (mag > (limit - (uint64_t)(*p - '0')) / 10)
                overflow = true;
            else
                mag = mag * 10 + (uint64_t)(*p - '0');
        }
    }
    if (n_int == 0)
        return BV_EINVALID;
    if (*p == '.') {
        p++;
        for (; *p >= '0' && *p <= '9'; p++, n_frac++) {
            if (n_frac >= exponent) /* beyond the currency's precision: rejected below */
                continue;
            if (!overflow) {
                if (mag > (limit - (uint64_t)(*p - '0')) / 10)
                    overflow = true;
                else
                    mag = mag * 10 + (uint64_t)(*p - '0');
            }
        }
        if (n_frac == 0)
            return BV_EINVALID;
    }
    if (*p != '\0')
        return BV_EINVALID;
    if (neg && !allow_negative)
        return BV_EAMOUNT;
    if (n_frac > exponent)
        return BV_EAMOUNT;
    for (int i = n_frac; i < exponent && !overflow; i++) {
        if (mag > limit / 10)
            overflow = true;
        else
            mag *= 10;
    }
    if (overflow)
        return BV_EAMOUNT;
    *out = neg ? -(int64_t)mag : (int64_t)mag;
    return 0;
}

void bv_ledger_amount_format(int64_t v, int exponent, char out[BV_LEDGER_AMOUNT_MAX])
{
    char digits[24];
    int n = 0;
    /* magnitude as unsigned so INT64_MIN formats too */
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        digits[n++] = (char)('0' + mag % 10);
        mag /= 10;
    } while (mag > 0);
    while (n <= exponent)
        digits[n++] = '0';
    char *o = out;
    if (v < 0)
        *o++ = '-';
    for (int i = n - 1; i >= 0; i--) {
        *o++ = digits[i];
        if (i == exponent && exponent > 0)
            *o++ = '.';
    }
    *o = '\0';
}

/* remainder of the decimal digit string s (len digits) modulo 97 */
static unsigned mod97(const char *s, size_t len)
{
    unsigned r = 0;
    for (size_t i = 0; i < len; i++)
        r = (r * 10 + (unsigned)(s[i] - '0')) % 97;
    return r;
}

int bv_ledger_number_valid(const char *s)
{
    if (s == NULL || strlen(s) != BV_LEDGER_NUMBER_LEN)
        return 0;
    for (size_t i = 0; i < BV_LEDGER_NUMBER_LEN; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return mod97(s, BV_LEDGER_NUMBER_LEN) == 1;
}

void bv_ledger_number_make(uint64_t body, char out[BV_LEDGER_NUMBER_LEN + 1])
{
    char tmp[BV_LEDGER_NUMBER_LEN + 1];
    body %= 100000000000000ULL; /* 14 digits */
    for (int i = 13; i >= 0; i--) {
        tmp[i] = (char)('0' + body % 10);
        body /= 10;
    }
    tmp[14] = tmp[15] = '0';
    tmp[16] = '\0';
    /* ISO 7064 MOD 97-10: check = 98 - (body * 100 mod 97) */
    unsigned check = 98 - mod97(tmp, BV_LEDGER_NUMBER_LEN);
    tmp[14] = (char)('0' + check / 10);
    tmp[15] = (char)('0' + check % 10);
    memcpy(out, tmp, sizeof(tmp));
}
