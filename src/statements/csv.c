/* Statements as CSV (RFC 4180): UTF-8, CRLF line ends, a header row, one table:
 *
 *   date,type,description,counterparty,counterparty_account,amount,balance,currency,transfer_id
 *
 * `type` is opening_balance (first row), movement (oldest first), total_credits,
 * total_debits, closing_balance (last row). Amounts are decimal strings with the currency's
 * exponent; movement amounts and total_debits are signed (debits negative), so the amounts
 * of the movement rows add up to closing - opening. Text cells that a spreadsheet would run
 * as a formula are defused with a leading apostrophe (OWASP "CSV injection"). */
#include <string.h>

#include "statements/internal.h"

int statements_csv_cell(bv_buf_t *b, const char *s, bool protect)
{
    int rc;
    if (s == NULL)
        s = "";
    bool inject = protect && s[0] != '\0' && strchr("=+-@\t\r", s[0]) != NULL;
    bool quote = inject || strpbrk(s, ",\"\r\n") != NULL;
    if (!quote)
        return bv_buf_puts(b, s);
    if ((rc = bv_buf_puts(b, inject ? "\"'" : "\"")) != 0)
        return rc;
    for (const char *p = s; *p; p++) {
        if ((rc = bv_buf_append(b, p, 1)) != 0)
            return rc;
        if (*p == '"' && (rc = bv_buf_append(b, "\"", 1)) != 0)
            return rc;
    }
    return bv_buf_puts(b, "\"");
}

typedef struct {
    const char *date, *type, *description, *counterparty, *counterparty_account, *amount, *balance, *currency,
        *transfer_id;
} csv_row_t;

static int row(bv_buf_t *b, const csv_row_t *r)
{
    /* our own values (dates, types, decimal amounts, ids) are never "protected": a
       negative amount is a number, not a formula */
    int rc = statements_csv_cell(b, r->date, false);
    if (rc == 0 && (rc = bv_buf_puts(b, ",")) == 0)
        rc = statements_csv_cell(b, r->type, false);
    if (rc == 0 && (rc = bv_buf_puts(b, ",")) == 0)
        rc = statements_csv_cell(b, r->description, true);
    if (rc == 0 && (rc = bv_buf_puts(b, ",")) == 0)
        rc = statements_csv_cell(b, r->counterparty, true);
    if (rc == 0 && (rc = bv_buf_puts(b, ",")) == 0)
        rc = statements_csv_cell(b, r->counterparty_account, true);
    if (rc == 0 && (rc = bv_buf_puts(b, ",")) == 0)
        rc = statements_csv_cell(b, r->amount, false);
    if (rc == 0 && (rc = bv_buf_puts(b, ",")) == 0)
        rc = statements_csv_cell(b, r->balance, false);
    if (rc == 0 && (rc = bv_buf_puts(b, ",")) == 0)
        rc = statements_csv_cell(b, r->currency, false);
    if (rc == 0 && (rc = bv_buf_puts(b, ",")) == 0)
        rc = statements_csv_cell(b, r->transfer_id, false);
    if (rc == 0)
        rc = bv_buf_puts(b, "\r\n");
    return rc;
}

int statements_csv_render(const statements_doc_t *d, bv_buf_t *out)
{
    const bv_ledger_statement_t *st = d->st;
    const bv_ledger_account_t *a = &st->account;
    char date[32], amount[BV_LEDGER_AMOUNT_MAX], balance[BV_LEDGER_AMOUNT_MAX];
    int rc;
    bv_buf_reset(out);
    rc = bv_buf_puts(out, "date,type,description,counterparty,counterparty_account,amount,balance,currency,"
                          "transfer_id\r\n");
    bv_time_format(st->from, date);
    bv_ledger_amount_format(st->opening, a->exponent, balance);
    if (rc == 0)
        rc = row(out, &(csv_row_t){date, "opening_balance", "", "", "", "", balance, a->currency, ""});
    for (size_t i = 0; rc == 0 && i < st->n_items; i++) {
        const bv_ledger_movement_t *m = &st->items[i];
        bv_time_format(m->created_at, date);
        bv_ledger_amount_format(m->amount, a->exponent, amount);
        bv_ledger_amount_format(m->balance_after, a->exponent, balance);
        rc = row(out, &(csv_row_t){date, "movement", m->description, m->counterparty_name,
                                   m->counterparty_number, amount, balance, a->currency, m->transfer_id});
    }
    bv_time_format(st->to, date);
    bv_ledger_amount_format(st->total_credits, a->exponent, amount);
    if (rc == 0)
        rc = row(out, &(csv_row_t){date, "total_credits", "", "", "", amount, "", a->currency, ""});
    bv_ledger_amount_format(-st->total_debits, a->exponent, amount);
    if (rc == 0)
        rc = row(out, &(csv_row_t){date, "total_debits", "", "", "", amount, "", a->currency, ""});
    bv_ledger_amount_format(st->closing, a->exponent, balance);
    if (rc == 0)
        rc = row(out, &(csv_row_t){date, "closing_balance", "", "", "", "", balance, a->currency, ""});
    if (rc != 0)
        bv_buf_free(out);
    return rc;
}
