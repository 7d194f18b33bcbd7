/* Statements renderers: the UTF-8 -> CP1252 conversion, the CSV writer (RFC 4180 quoting,
 * formula injection, balances and totals) and the PDF (header, pages for N movements,
 * balances, accents, determinism, size of a realistic month with compression). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "notify/notify.h"
#include "statements/internal.h"

/* ---- fixtures ---- */

#define DAY_US        (86400LL * 1000000LL)
#define NOV_1_2026_US 1793491200000000LL /* 2026-11-01T00:00:00Z */

/* A statement of n movements of an EUR account: opening 1000.00, alternating credits of
 * 25.50 and debits of 10.25, with accents and a formula-looking description among them. */
static void make_statement(bv_ledger_statement_t *st, size_t n)
{
    memset(st, 0, sizeof(*st));
    snprintf(st->account.id, sizeof(st->account.id), "0190a0b0-0000-7000-8000-000000000001");
    snprintf(st->account.number, sizeof(st->account.number), "1000000000000017");
    snprintf(st->account.type, sizeof(st->account.type), "checking");
    snprintf(st->account.currency, sizeof(st->account.currency), "EUR");
    st->account.exponent = 2;
    snprintf(st->account.holder_name, sizeof(st->account.holder_name), "José Müller-Peña");
    st->from = NOV_1_2026_US;
    st->to = NOV_1_2026_US + 30 * DAY_US;
    st->opening = 100000;
    st->n_items = n;
    st->items = n > 0 ? calloc(n, sizeof(*st->items)) : NULL;
    int64_t bal = st->opening;
    for (size_t i = 0; i < n; i++) {
        bv_ledger_movement_t *m = &st->items[i];
        int64_t amt = i % 2 == 0 ? 2550 : -1025;
        bal += amt;
        if (amt > 0)
            st->total_credits += amt;
        else
            st->total_debits += -amt;
        m->amount = amt;
        m->balance_after = bal;
        m->created_at = st->from + (int64_t)i * (29 * DAY_US / (int64_t)(n + 1));
        snprintf(m->transfer_id, sizeof(m->transfer_id), "0190a0b0-0000-7000-8000-%012u",
                 (unsigned)(i % 1000000u));
        snprintf(m->counterparty_name, sizeof(m->counterparty_name), "%s",
                 i % 3 == 0 ? "Panadería Ñandú" : "Supermercado Central S.A.");
        snprintf(m->counterparty_number, sizeof(m->counterparty_number), "2000000000000%03u",
                 (unsigned)(i % 1000u));
        snprintf(m->description, sizeof(m->description), "%s",
                 i == 1 ? "=HYPERLINK(\"http://evil\",\"x\")" : "Compra con tarjeta nº 1234 — café");
    }
    st->closing = bal;
}

static statements_doc_t doc(const bv_ledger_statement_t *st, const char *locale, bool compress)
{
    return (statements_doc_t){.st = st,
                              .bank_name = "Bóveda",
                              .holder_name = st->account.holder_name,
                              .locale = locale,
                              .generated_at = NOV_1_2026_US + 31 * DAY_US + 3600LL * 1000000LL,
                              .compress = compress};
}

/* ---- CP1252 ---- */

static void test_cp1252(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(statements_cp1252("abc 123", out, sizeof(out)), 7);
    assert_string_equal(out, "abc 123");
    statements_cp1252("Bóveda Ñandú", out, sizeof(out));
    assert_string_equal(out, "B\xf3"
                             "veda \xd1"
                             "and\xfa");
    /* the CP1252 specials in 0x80..0x9F */
    statements_cp1252("€ – — “x” ‘y’ … • ™ Œ š Ÿ", out, sizeof(out));
    assert_string_equal(out, "\x80 \x96 \x97 \x93x\x94 \x91y\x92 \x85 \x95 \x99 \x8c \x9a \x9f");
    /* outside CP1252: one '?' per character, whatever its length */
    statements_cp1252("a\xe4\xb8\xad"
                      "b\xf0\x9f\x98\x80"
                      "c\xc4\x80",
                      out, sizeof(out)); /* 中, 😀, Ā */
    assert_string_equal(out, "a?b?c?");
    /* C1 controls and C0 controls are not characters to draw */
    statements_cp1252("x\xc2\x81y\tz\n", out, sizeof(out));
    assert_string_equal(out, "x?y?z?");
    /* invalid UTF-8: lone continuation, truncated sequence, overlong, surrogate, > U+10FFFF */
    statements_cp1252("\x80", out, sizeof(out));
    assert_string_equal(out, "?");
    statements_cp1252("a\xc3", out, sizeof(out));
    assert_string_equal(out, "a?");
    statements_cp1252("\xc0\xaf", out, sizeof(out));
    assert_string_equal(out, "??");
    statements_cp1252("\xed\xa0\x80", out, sizeof(out));
    assert_string_equal(out, "???");
    statements_cp1252("\xf4\x90\x80\x80", out, sizeof(out));
    assert_string_equal(out, "????");
    /* truncation keeps the terminator; NULL is the empty string */
    assert_int_equal(statements_cp1252("ñññññ", out, 4), 3);
    assert_string_equal(out, "\xf1\xf1\xf1");
    assert_int_equal(statements_cp1252(NULL, out, sizeof(out)), 0);
    assert_string_equal(out, "");
}

/* ---- formatting ---- */

static void test_money_and_dates(void **state)
{
    (void)state;
    char m[48], d[16], p[64], f[100];
    statements_money(123456789, 2, "es", m);
    assert_string_equal(m, "1.234.567,89");
    statements_money(123456789, 2, "en", m);
    assert_string_equal(m, "1,234,567.89");
    statements_money(-100000, 2, "es", m);
    assert_string_equal(m, "-1.000,00");
    statements_money(-5, 2, "en", m);
    assert_string_equal(m, "-0.05");
    statements_money(999, 0, "es", m);
    assert_string_equal(m, "999");
    statements_money(1000, 0, "en", m);
    assert_string_equal(m, "1,000");
    statements_date(NOV_1_2026_US, "es", d);
    assert_string_equal(d, "01/11/2026");
    statements_date(NOV_1_2026_US, "en", d);
    assert_string_equal(d, "2026-11-01");
    statements_period(NOV_1_2026_US, NOV_1_2026_US + 30 * DAY_US, "es", p);
    assert_string_equal(p, "del 01/11/2026 al 30/11/2026");
    statements_period(NOV_1_2026_US, NOV_1_2026_US + 30 * DAY_US, "en", p);
    assert_string_equal(p, "2026-11-01 to 2026-11-30");
    bv_ledger_statement_t st;
    make_statement(&st, 0);
    statements_filename(&st, "pdf", "es", f);
    assert_string_equal(f, "estado-de-cuenta-1000000000000017-2026-11-01_2026-11-30.pdf");
    statements_filename(&st, "csv", "en", f);
    assert_string_equal(f, "statement-1000000000000017-2026-11-01_2026-11-30.csv");
}

/* ---- CSV ---- */

static char *cell(const char *s, bool protect)
{
    static bv_buf_t b;
    bv_buf_free(&b);
    assert_int_equal(statements_csv_cell(&b, s, protect), 0);
    if (b.data == NULL)
        assert_int_equal(bv_buf_puts(&b, ""), 0);
    return b.data;
}

static void test_csv_cell(void **state)
{
    (void)state;
    assert_string_equal(cell("plain text", true), "plain text");
    assert_string_equal(cell("", true), "");
    assert_string_equal(cell(NULL, true), "");
    assert_string_equal(cell("a,b", true), "\"a,b\"");
    assert_string_equal(cell("say \"hi\"", true), "\"say \"\"hi\"\"\"");
    assert_string_equal(cell("two\r\nlines", true), "\"two\r\nlines\"");
    assert_string_equal(cell("only\nLF", true), "\"only\nLF\"");
    assert_string_equal(cell("Ñandú", true), "Ñandú"); /* UTF-8 passes through */
    /* formula injection: defused and quoted */
    assert_string_equal(cell("=1+2", true), "\"'=1+2\"");
    assert_string_equal(cell("+34600", true), "\"'+34600\"");
    assert_string_equal(cell("-2+3", true), "\"'-2+3\"");
    assert_string_equal(cell("@SUM(A1)", true), "\"'@SUM(A1)\"");
    assert_string_equal(cell("\tx", true), "\"'\tx\"");
    assert_string_equal(cell("=HYPERLINK(\"u\",\"x\")", true), "\"'=HYPERLINK(\"\"u\"\",\"\"x\"\")\"");
    assert_string_equal(cell("a=b", true), "a=b"); /* only a leading character matters */
    /* our own numbers are not text: a negative amount stays a number */
    assert_string_equal(cell("-12.50", false), "-12.50");
    cell(NULL, false);
}

/* Splits one CRLF-terminated CSV line of plain (unquoted) cells. */
static int split(const char *line, char cells[9][128])
{
    int n = 0;
    const char *p = line;
    for (;;) {
        const char *e = strpbrk(p, ",\r");
        assert_non_null(e);
        assert_true(n < 9);
        snprintf(cells[n], 128, "%.*s", (int)(e - p), p);
        n++;
        if (*e == '\r')
            return n;
        p = e + 1;
    }
}

static void test_csv_render(void **state)
{
    (void)state;
    bv_ledger_statement_t st;
    bv_buf_t b = {0};
    char cells[9][128];
    make_statement(&st, 4);
    statements_doc_t d = doc(&st, "es", false);
    assert_int_equal(statements_csv_render(&d, &b), 0);
    /* header, opening, 4 movements, credits, debits, closing: 9 CRLF lines, no bare LF */
    int lines = 0;
    for (size_t i = 0; i < b.len; i++) {
        if (b.data[i] == '\n') {
            assert_true(i > 0 && b.data[i - 1] == '\r');
            lines++;
        }
    }
    assert_int_equal(lines, 9);
    assert_true(b.len >= 2 && b.data[b.len - 2] == '\r' && b.data[b.len - 1] == '\n');
    assert_memory_equal(b.data,
                        "date,type,description,counterparty,counterparty_account,amount,balance,currency,"
                        "transfer_id\r\n",
                        92);
    const char *l = strchr(b.data, '\n') + 1;
    assert_int_equal(split(l, cells), 9);
    assert_string_equal(cells[0], "2026-11-01T00:00:00.000000Z");
    assert_string_equal(cells[1], "opening_balance");
    assert_string_equal(cells[6], "1000.00");
    assert_string_equal(cells[7], "EUR");
    l = strchr(l, '\n') + 1;
    assert_int_equal(split(l, cells), 9);
    assert_string_equal(cells[1], "movement");
    assert_string_equal(cells[2], "Compra con tarjeta nº 1234 — café");
    assert_string_equal(cells[3], "Panadería Ñandú");
    assert_string_equal(cells[5], "25.50");
    assert_string_equal(cells[6], "1025.50");
    assert_string_equal(cells[8], "0190a0b0-0000-7000-8000-000000000000");
    /* the injected description is defused */
    assert_non_null(strstr(b.data, ",\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\","));
    assert_non_null(strstr(b.data, ",-10.25,1015.25,EUR,"));
    /* totals and closing */
    assert_non_null(strstr(b.data, "\r\n2026-12-01T00:00:00.000000Z,total_credits,,,,51.00,,EUR,\r\n"));
    assert_non_null(strstr(b.data, "\r\n2026-12-01T00:00:00.000000Z,total_debits,,,,-20.50,,EUR,\r\n"));
    assert_non_null(strstr(b.data, "\r\n2026-12-01T00:00:00.000000Z,closing_balance,,,,,1030.50,EUR,\r\n"));
    bv_buf_free(&b);
    free(st.items);

    /* no movements: still opening, totals of zero, closing = opening */
    make_statement(&st, 0);
    assert_int_equal(statements_csv_render(&d, &b), 0);
    assert_non_null(strstr(b.data, "opening_balance,,,,,1000.00,EUR,\r\n"));
    assert_non_null(strstr(b.data, "total_debits,,,,0.00,,EUR,\r\n"));
    assert_non_null(strstr(b.data, "closing_balance,,,,,1000.00,EUR,\r\n"));
    bv_buf_free(&b);
}

/* ---- PDF ---- */

static size_t count(const bv_buf_t *b, const char *needle)
{
    size_t n = 0, nl = strlen(needle);
    for (size_t i = 0; i + nl <= b->len; i++)
        if (memcmp(b->data + i, needle, nl) == 0)
            n++;
    return n;
}

static int has(const bv_buf_t *b, const char *needle)
{
    return count(b, needle) > 0;
}

/* Pages in the document: "/Type /Page" objects, not counting the "/Type /Pages" tree. */
static size_t pages_in(const bv_buf_t *b)
{
    return count(b, "/Type /Page") - count(b, "/Type /Pages");
}

static void test_pdf_pages_layout(void **state)
{
    (void)state;
    /* 45 rows on the first page, 53 on the next, the totals need 6 row slots */
    assert_int_equal(statements_pdf_pages(0), 1);
    assert_int_equal(statements_pdf_pages(39), 1);
    assert_int_equal(statements_pdf_pages(40), 2); /* the rows fit, the totals do not */
    assert_int_equal(statements_pdf_pages(45), 2);
    assert_int_equal(statements_pdf_pages(46), 2);
    assert_int_equal(statements_pdf_pages(45 + 47), 2);
    assert_int_equal(statements_pdf_pages(45 + 48), 3);
    assert_int_equal(statements_pdf_pages(300), 6);
    assert_int_equal(statements_pdf_pages(BV_STATEMENTS_MAX_MOVEMENTS), 8);
}

static void render_pdf(size_t n, const char *locale, bool compress, bv_buf_t *out, bv_ledger_statement_t *st)
{
    make_statement(st, n);
    statements_doc_t d = doc(st, locale, compress);
    assert_int_equal(statements_pdf_render(&d, out), 0);
    assert_true(out->len > 5);
    assert_memory_equal(out->data, "%PDF-", 5);
}

static void test_pdf_content(void **state)
{
    (void)state;
    bv_buf_t b = {0};
    bv_ledger_statement_t st;
    render_pdf(4, "es", false, &b, &st);
    assert_int_equal(pages_in(&b), 1);
    assert_true(has(&b, "/Count 1"));
    assert_true(has(&b, "/MediaBox [ 0 0 595.276 841.89")); /* A4 */
    assert_true(has(&b, "/BaseFont /Helvetica"));
    assert_true(has(&b, "/Encoding /WinAnsiEncoding"));
    /* branded, accents in CP1252 (libharu writes bytes > 0x7E, parentheses and slashes as
       octal escapes) */
    assert_true(has(&b, "(B\\363veda)"));
    assert_true(has(&b, "(Estado de cuenta)"));
    assert_true(has(&b, "(Jos\\351 M\\374ller-Pe\\361a)"));
    assert_true(has(&b, "(1000000000000017 \\050cuenta corriente\\051)"));
    assert_true(has(&b, "(01\\05711\\0572026 \\226 30\\05711\\0572026)"));
    /* opening, movements, totals, closing */
    assert_true(has(&b, "(1.000,00 EUR)"));
    assert_true(has(&b, "(Saldo inicial)"));
    assert_true(has(&b, "(-10,25)"));
    assert_true(has(&b, "(1.015,25)"));
    assert_true(has(&b, "(51,00 EUR)"));
    assert_true(has(&b, "(-20,50 EUR)"));
    assert_true(has(&b, "(Saldo final)"));
    assert_true(has(&b, "(1.030,50 EUR)"));
    assert_true(has(&b, "(P\\341gina 1 de 1)"));
    assert_true(has(&b, "(Generado el 02\\05712\\0572026 a las 01:00 UTC)"));
    bv_buf_free(&b);
    free(st.items);

    /* English per locale */
    render_pdf(4, "en", false, &b, &st);
    assert_true(has(&b, "(Account statement)"));
    assert_true(has(&b, "(Opening balance)"));
    assert_true(has(&b, "(1,000.00 EUR)"));
    assert_true(has(&b, "(1,030.50 EUR)"));
    assert_true(has(&b, "(Page 1 of 1)"));
    assert_true(has(&b, "(2026-11-01 \\226 2026-11-30)"));
    bv_buf_free(&b);
    free(st.items);

    /* no movements: one page that says so */
    render_pdf(0, "es", false, &b, &st);
    assert_int_equal(pages_in(&b), 1);
    assert_true(has(&b, "(Sin movimientos en el per\\355odo.)"));
    assert_true(has(&b, "(Saldo final)"));
    bv_buf_free(&b);
}

static void test_pdf_page_breaks(void **state)
{
    (void)state;
    static const size_t ns[] = {39, 40, 93, 300};
    static const size_t want[] = {1, 2, 3, 6};
    bv_ledger_statement_t st;
    bv_buf_t b = {0};
    char s[64];
    for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
        render_pdf(ns[k], "es", false, &b, &st);
        assert_int_equal(pages_in(&b), want[k]);
        snprintf(s, sizeof(s), "/Count %zu", want[k]);
        assert_true(has(&b, s));
        snprintf(s, sizeof(s), "(P\\341gina %zu de %zu)", want[k], want[k]);
        assert_true(has(&b, s));
        /* the table header is repeated on every page */
        assert_int_equal(count(&b, "(Descripci\\363n)"), want[k]);
        /* every movement is drawn once: its running balance is unique */
        assert_true(has(&b, "(Saldo final)"));
        bv_buf_free(&b);
        free(st.items);
    }
}

static void test_pdf_compressed_size_and_determinism(void **state)
{
    (void)state;
    bv_ledger_statement_t st;
    bv_buf_t a = {0}, b = {0}, plain = {0};
    render_pdf(BV_STATEMENTS_MAX_MOVEMENTS, "es", true, &a, &st);
    free(st.items);
    render_pdf(BV_STATEMENTS_MAX_MOVEMENTS, "es", true, &b, &st);
    /* same input, same bytes (the generation time is part of the input here) */
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    assert_true(has(&a, "/FlateDecode"));
    assert_false(has(&a, "(Saldo final)")); /* the text is inside deflated streams */
    assert_int_equal(pages_in(&a), 8);
    /* the largest statement allowed fits in an e-mail attachment, and so does its CSV */
    assert_true(a.len < BV_NOTIFY_MAX_ATTACHMENT_BYTES);
    statements_doc_t d = doc(&st, "es", false);
    assert_int_equal(statements_csv_render(&d, &plain), 0);
    assert_true(plain.len < BV_NOTIFY_MAX_ATTACHMENT_BYTES);
    print_message("PDF of %d movements: %zu bytes compressed; CSV %zu bytes\n", BV_STATEMENTS_MAX_MOVEMENTS,
                  a.len, plain.len);
    bv_buf_free(&plain);
    free(st.items);
    render_pdf(BV_STATEMENTS_MAX_MOVEMENTS, "es", false, &plain, &st);
    print_message("PDF uncompressed: %zu bytes\n", plain.len);
    assert_true(plain.len > a.len);
    bv_buf_free(&a);
    bv_buf_free(&b);
    bv_buf_free(&plain);
    free(st.items);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cp1252),           cmocka_unit_test(test_money_and_dates),
        cmocka_unit_test(test_csv_cell),         cmocka_unit_test(test_csv_render),
        cmocka_unit_test(test_pdf_pages_layout), cmocka_unit_test(test_pdf_content),
        cmocka_unit_test(test_pdf_page_breaks),  cmocka_unit_test(test_pdf_compressed_size_and_determinism),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
