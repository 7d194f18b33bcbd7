/* Statements as PDF with libharu: A4 portrait, the built-in Helvetica fonts with
 * WinAnsiEncoding (text converted to CP1252 by statements_cp1252), a branded header, the
 * account holder, the full account number, currency, period and opening balance, a table
 * of movements (date, description, counterparty, amount, balance after) that breaks across
 * pages with its header row repeated, the totals (movements, credits, debits) and the
 * closing balance, and on every page a footer with the generation time and "page X of Y".
 *
 * The layout is fixed (rows per page are constants) so the page count is known before
 * drawing (statements_pdf_pages) and the output depends only on the statement and the
 * generation time. Content streams are deflated (HPDF_COMP_ALL) unless a test asks for
 * plain text. */
#include <hpdf.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "statements/internal.h"

/* A4 in points, margins, rows */
#define PAGE_LEFT   40.0f
#define PAGE_RIGHT  555.0f
#define ROW_STEP    13.0f
#define FIRST_ROW_Y 662.0f /* baseline of the first table row on page 1 */
#define NEXT_ROW_Y  758.0f /* ... on the following pages */
#define ROW_FONT    8.0f

typedef struct {
    const char *title, *holder, *account, *currency, *period, *opening, *closing, *credits, *debits, *count;
    const char *col_date, *col_desc, *col_party, *col_amount, *col_balance;
    const char *empty, *page_fmt, *generated_fmt;
} labels_t;

static const labels_t es = {
    "Estado de cuenta",
    "Titular",
    "Cuenta",
    "Moneda",
    "Período",
    "Saldo inicial",
    "Saldo final",
    "Total abonos",
    "Total cargos",
    "Movimientos",
    "Fecha",
    "Descripción",
    "Contraparte",
    "Importe",
    "Saldo",
    "Sin movimientos en el período.",
    "Página %d de %d",
    "Generado el %s a las %s UTC",
};
static const labels_t en = {
    "Account statement",
    "Account holder",
    "Account",
    "Currency",
    "Period",
    "Opening balance",
    "Closing balance",
    "Total credits",
    "Total debits",
    "Movements",
    "Date",
    "Description",
    "Counterparty",
    "Amount",
    "Balance",
    "No movements in this period.",
    "Page %d of %d",
    "Generated on %s at %s UTC",
};

static const struct {
    const char *type, *es, *en;
} account_types[] = {
    {"checking", "cuenta corriente", "checking account"},
    {"savings", "cuenta de ahorros", "savings account"},
    {"wallet", "monedero", "wallet"},
    {"internal", "cuenta interna", "internal account"},
};

/* columns: x (left edge, or right edge when right-aligned) and width */
static const struct {
    float x, width;
    int right;
} cols[5] = {
    {PAGE_LEFT, 52.0f, 0}, {96.0f, 180.0f, 0},     {282.0f, 122.0f, 0},
    {480.0f, 70.0f, 1},    {PAGE_RIGHT, 70.0f, 1},
};

typedef struct {
    const statements_doc_t *d;
    const labels_t *L;
    const char *locale;
    HPDF_Doc pdf;
    HPDF_Font regular, bold;
    HPDF_Page page;
    int page_no, n_pages;
    int failed;
    unsigned long error_no, detail_no;
} pdf_t;

static void on_error(HPDF_STATUS error_no, HPDF_STATUS detail_no, void *user_data)
{
    pdf_t *p = user_data;
    if (!p->failed) {
        p->error_no = (unsigned long)error_no;
        p->detail_no = (unsigned long)detail_no;
    }
    p->failed = 1;
}

int statements_pdf_pages(size_t n_items)
{
    size_t rows = n_items == 0 ? 1 : n_items, cap = STATEMENTS_PDF_ROWS_FIRST, used = 0;
    int pages = 1;
    for (size_t i = 0; i < rows; i++) {
        if (used == cap) {
            pages++;
            cap = STATEMENTS_PDF_ROWS_NEXT;
            used = 0;
        }
        used++;
    }
    if (used + STATEMENTS_PDF_TOTAL_SLOTS > cap)
        pages++;
    return pages;
}

/* Draws UTF-8 text at (x, y): left-aligned from x, or right-aligned ending at x; cut with
 * an ellipsis to max_width (0: no limit). */
static void text(pdf_t *p, HPDF_Font font, float size, float x, float y, const char *utf8, int right,
                 float max_width)
{
    char s[600];
    if (p->failed)
        return;
    statements_cp1252(utf8, s, sizeof(s) - 2);
    HPDF_Page_SetFontAndSize(p->page, font, size);
    HPDF_REAL w = HPDF_Page_TextWidth(p->page, s);
    if (max_width > 0 && w > max_width) {
        HPDF_REAL ell = HPDF_Page_TextWidth(p->page, "\x85");
        HPDF_UINT n = HPDF_Page_MeasureText(p->page, s, max_width - ell, HPDF_FALSE, NULL);
        if (n > strlen(s))
            n = (HPDF_UINT)strlen(s);
        s[n] = '\x85';
        s[n + 1] = '\0';
        w = HPDF_Page_TextWidth(p->page, s);
    }
    HPDF_Page_BeginText(p->page);
    HPDF_Page_TextOut(p->page, right ? x - w : x, y, s);
    HPDF_Page_EndText(p->page);
}

static void rule(pdf_t *p, float y, float gray, float width)
{
    if (p->failed)
        return;
    HPDF_Page_SetGrayStroke(p->page, gray);
    HPDF_Page_SetLineWidth(p->page, width);
    HPDF_Page_MoveTo(p->page, PAGE_LEFT, y);
    HPDF_Page_LineTo(p->page, PAGE_RIGHT, y);
    HPDF_Page_Stroke(p->page);
}

static void table_header(pdf_t *p, float baseline)
{
    const char *names[5] = {p->L->col_date, p->L->col_desc, p->L->col_party, p->L->col_amount,
                            p->L->col_balance};
    if (p->failed)
        return;
    HPDF_Page_SetGrayFill(p->page, 0.9f);
    HPDF_Page_Rectangle(p->page, PAGE_LEFT, baseline - 4.0f, PAGE_RIGHT - PAGE_LEFT, 14.0f);
    HPDF_Page_Fill(p->page);
    HPDF_Page_SetGrayFill(p->page, 0.0f);
    for (int i = 0; i < 5; i++)
        text(p, p->bold, ROW_FONT, cols[i].right ? cols[i].x - 2.0f : cols[i].x + 2.0f, baseline, names[i],
             cols[i].right, cols[i].width);
}

static void footer(pdf_t *p)
{
    char day[16], hm[8], gen[96], page[48];
    time_t t = (time_t)(p->d->generated_at / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    statements_date(p->d->generated_at, p->locale, day);
    snprintf(hm, sizeof(hm), "%02d:%02d", tm.tm_hour, tm.tm_min);
    snprintf(gen, sizeof(gen), p->L->generated_fmt, day, hm);
    snprintf(page, sizeof(page), p->L->page_fmt, p->page_no, p->n_pages);
    rule(p, 44.0f, 0.6f, 0.5f);
    text(p, p->regular, 7.0f, PAGE_LEFT, 32.0f, gen, 0, 0);
    text(p, p->regular, 7.0f, PAGE_RIGHT, 32.0f, page, 1, 0);
}

/* A new page with its header, table header and footer; returns the first row's baseline. */
static float new_page(pdf_t *p)
{
    const statements_doc_t *d = p->d;
    const bv_ledger_account_t *a = &d->st->account;
    char line[160];
    if (p->failed)
        return 0;
    p->page = HPDF_AddPage(p->pdf);
    if (p->page == NULL) {
        p->failed = 1;
        return 0;
    }
    p->page_no++;
    HPDF_Page_SetSize(p->page, HPDF_PAGE_SIZE_A4, HPDF_PAGE_PORTRAIT);
    if (p->page_no == 1) {
        char opening[48], period[64], typed[96];
        const char *type = a->type;
        for (size_t i = 0; i < sizeof(account_types) / sizeof(account_types[0]); i++)
            if (strcmp(account_types[i].type, a->type) == 0)
                type = strcmp(p->locale, "en") == 0 ? account_types[i].en : account_types[i].es;
        text(p, p->bold, 20.0f, PAGE_LEFT, 790.0f, d->bank_name, 0, 300.0f);
        text(p, p->bold, 13.0f, PAGE_RIGHT, 792.0f, p->L->title, 1, 0);
        rule(p, 780.0f, 0.3f, 1.0f);
        statements_money(d->st->opening, a->exponent, p->locale, opening);
        snprintf(line, sizeof(line), "%s %s", opening, a->currency);
        /* [from, to): the last day shown is the one before `to` */
        char first[16], last[16];
        statements_date(d->st->from, p->locale, first);
        statements_date(d->st->to > d->st->from ? d->st->to - 1 : d->st->to, p->locale, last);
        snprintf(period, sizeof(period), "%s \xe2\x80\x93 %s", first, last);
        snprintf(typed, sizeof(typed), "%s (%s)", a->number, type);
        const char *labels[5] = {p->L->holder, p->L->account, p->L->currency, p->L->period, p->L->opening};
        const char *values[5] = {d->holder_name, typed, a->currency, period, line};
        for (int i = 0; i < 5; i++) {
            text(p, p->bold, 9.0f, PAGE_LEFT, 760.0f - 14.0f * (float)i, labels[i], 0, 95.0f);
            text(p, p->regular, 9.0f, 140.0f, 760.0f - 14.0f * (float)i, values[i], 0, 415.0f);
        }
        table_header(p, FIRST_ROW_Y + 14.0f);
    } else {
        text(p, p->bold, 11.0f, PAGE_LEFT, 800.0f, d->bank_name, 0, 200.0f);
        snprintf(line, sizeof(line), "%s \xc2\xb7 %s", p->L->title, a->number);
        text(p, p->regular, 9.0f, PAGE_RIGHT, 800.0f, line, 1, 300.0f);
        rule(p, 792.0f, 0.3f, 1.0f);
        table_header(p, NEXT_ROW_Y + 14.0f);
    }
    footer(p);
    return p->page_no == 1 ? FIRST_ROW_Y : NEXT_ROW_Y;
}

static void movement_row(pdf_t *p, const bv_ledger_movement_t *m, float y)
{
    const bv_ledger_account_t *a = &p->d->st->account;
    char date[16], amount[48], balance[48];
    statements_date(m->created_at, p->locale, date);
    statements_money(m->amount, a->exponent, p->locale, amount);
    statements_money(m->balance_after, a->exponent, p->locale, balance);
    const char *party = m->counterparty_name[0] != '\0' ? m->counterparty_name : m->counterparty_number;
    const char *cells[5] = {date, m->description, party, amount, balance};
    for (int i = 0; i < 5; i++)
        text(p, p->regular, ROW_FONT, cols[i].right ? cols[i].x - 2.0f : cols[i].x + 2.0f, y, cells[i],
             cols[i].right, cols[i].width - 4.0f);
}

static void totals(pdf_t *p, float y)
{
    const bv_ledger_statement_t *st = p->d->st;
    const bv_ledger_account_t *a = &st->account;
    char v[80], money[48];
    rule(p, y + 9.0f, 0.3f, 0.8f);
    y -= 4.0f;
    snprintf(v, sizeof(v), "%zu", st->n_items);
    text(p, p->regular, 9.0f, 330.0f, y, p->L->count, 0, 0);
    text(p, p->regular, 9.0f, PAGE_RIGHT - 2.0f, y, v, 1, 0);
    y -= ROW_STEP;
    statements_money(st->total_credits, a->exponent, p->locale, money);
    snprintf(v, sizeof(v), "%s %s", money, a->currency);
    text(p, p->regular, 9.0f, 330.0f, y, p->L->credits, 0, 0);
    text(p, p->regular, 9.0f, PAGE_RIGHT - 2.0f, y, v, 1, 0);
    y -= ROW_STEP;
    statements_money(-st->total_debits, a->exponent, p->locale, money);
    snprintf(v, sizeof(v), "%s %s", money, a->currency);
    text(p, p->regular, 9.0f, 330.0f, y, p->L->debits, 0, 0);
    text(p, p->regular, 9.0f, PAGE_RIGHT - 2.0f, y, v, 1, 0);
    y -= ROW_STEP + 2.0f;
    statements_money(st->closing, a->exponent, p->locale, money);
    snprintf(v, sizeof(v), "%s %s", money, a->currency);
    text(p, p->bold, 10.0f, 330.0f, y, p->L->closing, 0, 0);
    text(p, p->bold, 10.0f, PAGE_RIGHT - 2.0f, y, v, 1, 0);
}

static int save(pdf_t *p, bv_buf_t *out)
{
    unsigned char chunk[8192];
    if (HPDF_SaveToStream(p->pdf) != HPDF_OK || p->failed)
        return BV_EINTERNAL;
    HPDF_ResetStream(p->pdf);
    for (;;) {
        HPDF_UINT32 n = sizeof(chunk);
        HPDF_STATUS s = HPDF_ReadFromStream(p->pdf, chunk, &n);
        if (n > 0 && bv_buf_append(out, chunk, n) != 0)
            return BV_ENOMEM;
        if (s == HPDF_STREAM_EOF)
            break;
        if (s != HPDF_OK)
            return BV_EINTERNAL;
    }
    return 0;
}

int statements_pdf_render(const statements_doc_t *d, bv_buf_t *out)
{
    pdf_t p = {.d = d};
    const bv_ledger_statement_t *st = d->st;
    int rc = BV_EINTERNAL;
    size_t rows, cap = STATEMENTS_PDF_ROWS_FIRST, used = 0;
    float y0;
    bv_buf_reset(out);
    p.locale = d->locale != NULL && strcmp(d->locale, "en") == 0 ? "en" : "es";
    p.L = strcmp(p.locale, "en") == 0 ? &en : &es;
    p.n_pages = statements_pdf_pages(st->n_items);
    p.pdf = HPDF_New(on_error, &p);
    if (p.pdf == NULL)
        return BV_ENOMEM;
    HPDF_SetCompressionMode(p.pdf, d->compress ? HPDF_COMP_ALL : HPDF_COMP_NONE);
    p.regular = HPDF_GetFont(p.pdf, "Helvetica", "WinAnsiEncoding");
    p.bold = HPDF_GetFont(p.pdf, "Helvetica-Bold", "WinAnsiEncoding");
    if (p.regular == NULL || p.bold == NULL)
        goto out;
    {
        time_t t = (time_t)(d->generated_at / 1000000);
        struct tm tm;
        gmtime_r(&t, &tm);
        HPDF_Date date = {tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                          tm.tm_sec,         'Z',           0,          0};
        HPDF_SetInfoAttr(p.pdf, HPDF_INFO_CREATOR, "Boveda");
        HPDF_SetInfoAttr(p.pdf, HPDF_INFO_TITLE, p.L == &en ? "Account statement" : "Estado de cuenta");
        HPDF_SetInfoDateAttr(p.pdf, HPDF_INFO_CREATION_DATE, date);
    }
    y0 = new_page(&p);
    rows = st->n_items == 0 ? 1 : st->n_items;
    for (size_t i = 0; i < rows && !p.failed; i++) {
        if (used == cap) {
            y0 = new_page(&p);
            cap = STATEMENTS_PDF_ROWS_NEXT;
            used = 0;
        }
        float y = y0 - ROW_STEP * (float)used;
        if (st->n_items == 0)
            text(&p, p.regular, ROW_FONT, PAGE_LEFT + 2.0f, y, p.L->empty, 0, 0);
        else
            movement_row(&p, &st->items[i], y);
        used++;
    }
    if (used + STATEMENTS_PDF_TOTAL_SLOTS > cap) {
        y0 = new_page(&p);
        used = 0;
    }
    totals(&p, y0 - ROW_STEP * (float)used - 6.0f);
    if (p.failed || p.page_no != p.n_pages)
        goto out;
    rc = save(&p, out);
out:
    if (p.failed)
        bv_log_error("statement PDF rendering failed", "\"hpdf_error\":\"0x%04lx\",\"detail\":%lu",
                     p.error_no, p.detail_no);
    HPDF_Free(p.pdf);
    if (rc != 0)
        bv_buf_free(out);
    return rc;
}
