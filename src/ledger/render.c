/* Row decoding and the JSON representation of ledger records. Written with a buffer and
 * printf rather than jansson trees: the batch endpoint renders thousands of transfers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "ledger/internal.h"

void ledger_strlcpy(char *dst, const char *src, size_t n)
{
    if (n == 0)
        return;
    if (src == NULL)
        src = "";
    size_t len = strlen(src);
    if (len >= n)
        len = n - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

void ledger_xfer_from_row(bv_stmt_t *s, bv_ledger_transfer_t *out, ledger_xfer_extra_t *extra)
{
    memset(out, 0, sizeof(*out));
    ledger_strlcpy(out->id, bv_stmt_text(s, 1), sizeof(out->id));
    ledger_strlcpy(out->reference, bv_stmt_text(s, 2), sizeof(out->reference));
    ledger_strlcpy(out->debit_account, bv_stmt_text(s, 3), sizeof(out->debit_account));
    ledger_strlcpy(out->credit_account, bv_stmt_text(s, 4), sizeof(out->credit_account));
    ledger_strlcpy(out->currency, bv_stmt_text(s, 5), sizeof(out->currency));
    out->exponent = bv_ledger_currency_exponent(out->currency);
    if (out->exponent < 0)
        out->exponent = 0;
    out->amount = bv_stmt_int64(s, 6);
    out->posted_amount = bv_stmt_int64(s, 7);
    ledger_strlcpy(out->status, bv_stmt_text(s, 8), sizeof(out->status));
    out->pending = bv_stmt_int64(s, 9) != 0;
    out->expires_at = bv_stmt_is_null(s, 10) ? 0 : bv_stmt_int64(s, 10);
    ledger_strlcpy(out->description, bv_stmt_text(s, 11), sizeof(out->description));
    ledger_strlcpy(out->reverses, bv_stmt_text(s, 12), sizeof(out->reverses));
    ledger_strlcpy(out->reversed_by, bv_stmt_text(s, 13), sizeof(out->reversed_by));
    out->created_at = bv_stmt_int64(s, 14);
    out->resolved_at = bv_stmt_is_null(s, 15) ? 0 : bv_stmt_int64(s, 15);
    if (extra != NULL) {
        extra->rid = bv_stmt_int64(s, 0);
        extra->debit_rid = bv_stmt_int64(s, 16);
        extra->credit_rid = bv_stmt_int64(s, 17);
        ledger_strlcpy(extra->resolve_key, bv_stmt_text(s, 18), sizeof(extra->resolve_key));
    }
}

void ledger_acct_from_row(bv_stmt_t *s, bv_ledger_account_t *out, int64_t *rid_out)
{
    memset(out, 0, sizeof(*out));
    if (rid_out != NULL)
        *rid_out = bv_stmt_int64(s, 0);
    ledger_strlcpy(out->id, bv_stmt_text(s, 1), sizeof(out->id));
    ledger_strlcpy(out->number, bv_stmt_text(s, 2), sizeof(out->number));
    ledger_strlcpy(out->type, bv_stmt_text(s, 3), sizeof(out->type));
    ledger_strlcpy(out->currency, bv_stmt_text(s, 4), sizeof(out->currency));
    out->exponent = bv_ledger_currency_exponent(out->currency);
    if (out->exponent < 0)
        out->exponent = 0;
    ledger_strlcpy(out->status, bv_stmt_text(s, 5), sizeof(out->status));
    ledger_strlcpy(out->holder_name, bv_stmt_text(s, 6), sizeof(out->holder_name));
    ledger_strlcpy(out->customer_id, bv_stmt_text(s, 7), sizeof(out->customer_id));
    out->overdraft_limit = bv_stmt_int64(s, 8);
    out->allow_negative = bv_stmt_int64(s, 9) != 0;
    out->balance = bv_stmt_int64(s, 10);
    out->holds = bv_stmt_int64(s, 11);
    out->available = out->balance - out->holds;
    out->created_at = bv_stmt_int64(s, 12);
}

int bv_ledger_transfer_json(bv_buf_t *b, const bv_ledger_transfer_t *t)
{
    char amount[BV_LEDGER_AMOUNT_MAX], posted[BV_LEDGER_AMOUNT_MAX];
    int rc = 0;
    bv_ledger_amount_format(t->amount, t->exponent, amount);
    bv_ledger_amount_format(t->posted_amount, t->exponent, posted);
    rc |= bv_buf_printf(b, "{\"id\":\"%s\",\"reference\":", t->id);
    rc |= bv_buf_json_string(b, t->reference, false);
    rc |= bv_buf_printf(b,
                        ",\"status\":\"%s\",\"debit_account\":\"%s\",\"credit_account\":\"%s\",\"amount\":\"%s\","
                        "\"posted_amount\":\"%s\",\"currency\":\"%s\",\"pending\":%s,\"expires_at\":",
                        t->status, t->debit_account, t->credit_account, amount, posted, t->currency,
                        t->pending ? "true" : "false");
    rc |= bv_buf_json_time(b, t->expires_at);
    rc |= bv_buf_puts(b, ",\"description\":");
    rc |= bv_buf_json_string(b, t->description, false);
    rc |= bv_buf_puts(b, ",\"reverses\":");
    rc |= bv_buf_json_string(b, t->reverses, true);
    rc |= bv_buf_puts(b, ",\"reversed_by\":");
    rc |= bv_buf_json_string(b, t->reversed_by, true);
    rc |= bv_buf_puts(b, ",\"created_at\":");
    rc |= bv_buf_json_time(b, t->created_at);
    rc |= bv_buf_puts(b, ",\"resolved_at\":");
    rc |= bv_buf_json_time(b, t->resolved_at);
    rc |= bv_buf_puts(b, "}");
    return rc != 0 ? BV_ENOMEM : 0;
}

int bv_ledger_account_json(bv_buf_t *b, const bv_ledger_account_t *a, unsigned flags)
{
    char od[BV_LEDGER_AMOUNT_MAX], bal[BV_LEDGER_AMOUNT_MAX], av[BV_LEDGER_AMOUNT_MAX], holds[BV_LEDGER_AMOUNT_MAX];
    int rc = 0;
    bv_ledger_amount_format(a->overdraft_limit, a->exponent, od);
    bv_ledger_amount_format(a->balance, a->exponent, bal);
    bv_ledger_amount_format(a->available, a->exponent, av);
    bv_ledger_amount_format(a->holds, a->exponent, holds);
    rc |= bv_buf_printf(b, "{\"id\":\"%s\",\"number\":\"%s\",\"type\":\"%s\",\"currency\":\"%s\",\"status\":\"%s\","
                           "\"holder_name\":",
                        a->id, a->number, a->type, a->currency, a->status);
    rc |= bv_buf_json_string(b, a->holder_name, false);
    if (!(flags & BV_LEDGER_JSON_CUSTOMER)) {
        rc |= bv_buf_puts(b, ",\"customer_id\":");
        rc |= bv_buf_json_string(b, a->customer_id, true);
        rc |= bv_buf_printf(b, ",\"allow_negative\":%s", a->allow_negative ? "true" : "false");
    }
    rc |= bv_buf_printf(b,
                        ",\"overdraft_limit\":\"%s\",\"balance\":\"%s\",\"available\":\"%s\",\"holds\":\"%s\","
                        "\"created_at\":",
                        od, bal, av, holds);
    rc |= bv_buf_json_time(b, a->created_at);
    rc |= bv_buf_puts(b, "}");
    return rc != 0 ? BV_ENOMEM : 0;
}

int bv_ledger_movement_json(bv_buf_t *b, const bv_ledger_movement_t *m, int exponent)
{
    char amount[BV_LEDGER_AMOUNT_MAX], after[BV_LEDGER_AMOUNT_MAX];
    int rc = 0;
    bv_ledger_amount_format(m->amount, exponent, amount);
    bv_ledger_amount_format(m->balance_after, exponent, after);
    rc |= bv_buf_printf(b, "{\"transfer_id\":\"%s\",\"amount\":\"%s\",\"balance_after\":\"%s\",\"counterparty\":{"
                           "\"id\":\"%s\",\"name\":",
                        m->transfer_id, amount, after, m->counterparty_id);
    rc |= bv_buf_json_string(b, m->counterparty_name, false);
    rc |= bv_buf_printf(b, ",\"number\":\"%s\"},\"description\":", m->counterparty_number);
    rc |= bv_buf_json_string(b, m->description, false);
    rc |= bv_buf_puts(b, ",\"created_at\":");
    rc |= bv_buf_json_time(b, m->created_at);
    rc |= bv_buf_puts(b, "}");
    return rc != 0 ? BV_ENOMEM : 0;
}

int bv_ledger_movement_page_json(bv_buf_t *b, const bv_ledger_movement_t *items, size_t n, int exponent,
                                 int64_t next_cursor)
{
    int rc = bv_buf_puts(b, "\"items\":[");
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (i > 0)
            rc |= bv_buf_puts(b, ",");
        rc |= bv_ledger_movement_json(b, &items[i], exponent);
    }
    if (next_cursor > 0)
        rc |= bv_buf_printf(b, "],\"next_cursor\":\"%lld\"", (long long)next_cursor);
    else
        rc |= bv_buf_puts(b, "],\"next_cursor\":null");
    return rc != 0 ? BV_ENOMEM : 0;
}
