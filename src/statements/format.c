/* Text forms shared by the PDF, the CSV file name and the e-mail: money with the locale's
 * separators, dates and periods in UTC. Integer arithmetic only. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "statements/internal.h"

static bool english(const char *locale)
{
    return locale != NULL && strcmp(locale, "en") == 0;
}

void statements_money(int64_t v, int exponent, const char *locale, char out[48])
{
    char plain[BV_LEDGER_AMOUNT_MAX];
    const char thousands = english(locale) ? ',' : '.', point = english(locale) ? '.' : ',';
    bv_ledger_amount_format(v, exponent, plain);
    const char *digits = plain[0] == '-' ? plain + 1 : plain;
    const char *dot = strchr(digits, '.');
    size_t n_int = dot != NULL ? (size_t)(dot - digits) : strlen(digits), o = 0;
    if (plain[0] == '-')
        out[o++] = '-';
    for (size_t i = 0; i < n_int && o < 40; i++) {
        if (i > 0 && (n_int - i) % 3 == 0)
            out[o++] = thousands;
        out[o++] = digits[i];
    }
    if (dot != NULL) {
        out[o++] = point;
        for (const char *p = dot + 1; *p && o < 47; p++)
            out[o++] = *p;
    }
    out[o] = '\0';
}

void statements_date(int64_t us, const char *locale, char out[16])
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    if (us < 0 && us % 1000000 != 0)
        t--;
    gmtime_r(&t, &tm);
    unsigned y = (unsigned)(tm.tm_year + 1900) % 10000u, m = (unsigned)(tm.tm_mon + 1) % 100u,
             d = (unsigned)tm.tm_mday % 100u;
    if (english(locale))
        snprintf(out, 16, "%04u-%02u-%02u", y, m, d);
    else
        snprintf(out, 16, "%02u/%02u/%04u", d, m, y);
}

void statements_period(int64_t from, int64_t to, const char *locale, char out[64])
{
    char a[16], b[16];
    statements_date(from, locale, a);
    statements_date(to > from ? to - 1 : to, locale, b); /* [from, to): the last day is before `to` */
    if (english(locale))
        snprintf(out, 64, "%s to %s", a, b);
    else
        snprintf(out, 64, "del %s al %s", a, b);
}

void statements_filename(const bv_ledger_statement_t *st, const char *format, const char *locale,
                         char out[100])
{
    char a[16], b[16];
    statements_date(st->from, "en", a);
    statements_date(st->to > st->from ? st->to - 1 : st->to, "en", b);
    snprintf(out, 100, "%s-%s-%s_%s.%s", english(locale) ? "statement" : "estado-de-cuenta",
             st->account.number, a, b, strcmp(format, "pdf") == 0 ? "pdf" : "csv");
}
