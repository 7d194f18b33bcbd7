/* HTTP endpoints of ledger accounts:
 *   POST  /v1/accounts                     open an account
 *   GET   /v1/accounts/{id}                the account with balance and available
 *   PATCH /v1/accounts/{id}                change status (active | frozen | closed)
 *   GET   /v1/accounts/{id}/movements      newest first, cursor-paginated
 *   GET   /v1/accounts/{id}/balance?at=    balance now or at a point in time
 *   GET   /v1/accounts/{id}/statement      opening, movements, closing, totals (JSON or CSV) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "ledger/internal.h"

static const char *const account_types[] = {"checking", "savings", "wallet", "internal", NULL};
static const char *const account_statuses[] = {"active", "frozen", "closed", NULL};

typedef struct {
    const char *type, *currency, *holder_name, *customer_id, *overdraft_limit;
    bool allow_negative;
} account_body_t;

static const bv_json_field_t account_spec[] = {
    {"type", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 16, offsetof(account_body_t, type), account_types},
    {"currency", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 8, offsetof(account_body_t, currency), NULL},
    {"holder_name", BV_JSON_STRING, BV_JSON_REQUIRED, 1, BV_LEDGER_NAME_MAX, offsetof(account_body_t, holder_name),
     NULL},
    {"customer_id", BV_JSON_STRING, BV_JSON_NULLABLE, 1, 64, offsetof(account_body_t, customer_id), NULL},
    {"overdraft_limit", BV_JSON_STRING, BV_JSON_NULLABLE, 1, 40, offsetof(account_body_t, overdraft_limit), NULL},
    {"allow_negative", BV_JSON_BOOL, BV_JSON_NULLABLE, 0, 0, offsetof(account_body_t, allow_negative), NULL},
    BV_JSON_END,
};

static bv_ledger_t *ledger_of(bv_call_t *c) { return c->ctx; }

static void reply_account(bv_call_t *c, int status, const bv_ledger_account_t *a)
{
    bv_buf_t b = {0};
    if (bv_ledger_account_json(&b, a, 0) != 0) {
        bv_buf_free(&b);
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        return;
    }
    ledger_reply_buf(c, status, &b);
}

static void on_create(bv_call_t *c)
{
    account_body_t body = {0};
    json_t *root = NULL;
    ledger_call_ctx_t cc;
    bv_ledger_account_t acct;
    const char *key;
    bool replayed = false;
    int exponent, rc;

    if (ledger_idem_key_or_reply(c, &key) != 0 || bv_call_decode_json_or_reply(c, account_spec, &body, &root) != 0)
        return;
    bv_ledger_account_req_t req = {.type = body.type, .currency = body.currency, .holder_name = body.holder_name,
                                   .customer_id = body.customer_id, .allow_negative = body.allow_negative,
                                   .idem_key = key};
    if ((exponent = bv_ledger_currency_exponent(body.currency)) < 0) {
        bv_reply_problem(c, BV_EINVALID, "currency is not a supported ISO 4217 code", "currency");
        goto out;
    }
    if (body.customer_id != NULL && !bv_uuid_valid(body.customer_id)) {
        bv_reply_problem(c, BV_EINVALID, "customer_id must be a UUID", "customer_id");
        goto out;
    }
    if (body.allow_negative && strcmp(body.type, "internal") != 0) {
        bv_reply_problem(c, BV_EINVALID, "only internal accounts may allow a negative balance", "allow_negative");
        goto out;
    }
    if (body.overdraft_limit != NULL &&
        (rc = bv_ledger_amount_parse(body.overdraft_limit, exponent, false, &req.overdraft_limit)) != 0) {
        bv_reply_problem(c, rc, "overdraft_limit must be a non-negative decimal string in the currency's precision",
                         "overdraft_limit");
        goto out;
    }
    ledger_call_ctx(c, &cc);
    rc = bv_ledger_account_create(ledger_of(c), &cc.ctx, &req, &acct, &replayed);
    if (rc != 0) {
        ledger_reply_error(c, rc, NULL);
        goto out;
    }
    if (replayed)
        bv_call_add_header(c, "idempotent-replayed", "true");
    reply_account(c, 201, &acct);
out:
    json_decref(root);
}

static void on_get(bv_call_t *c)
{
    bv_ledger_account_t acct;
    int rc = bv_ledger_account_get(ledger_of(c), bv_call_param(c, "id"), &acct);
    if (rc != 0) {
        ledger_reply_error(c, rc, NULL);
        return;
    }
    reply_account(c, 200, &acct);
}

typedef struct {
    const char *status;
} status_body_t;

static const bv_json_field_t status_spec[] = {
    {"status", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 16, offsetof(status_body_t, status), account_statuses},
    BV_JSON_END,
};

static void on_patch(bv_call_t *c)
{
    status_body_t body = {0};
    json_t *root = NULL;
    ledger_call_ctx_t cc;
    bv_ledger_account_t acct;
    const char *id = bv_call_param(c, "id");
    if (bv_call_decode_json_or_reply(c, status_spec, &body, &root) != 0)
        return;
    ledger_call_ctx(c, &cc);
    int rc = bv_uuid_valid(id) ? bv_ledger_account_set_status(ledger_of(c), &cc.ctx, id, body.status, &acct)
                               : BV_ENOTFOUND;
    if (rc != 0)
        ledger_reply_error(c, rc, rc == BV_ECONFLICT ? "status" : NULL);
    else
        reply_account(c, 200, &acct);
    json_decref(root);
}

static void on_movements(bv_call_t *c)
{
    int64_t limit, from, to, before = 0;
    bv_ledger_movement_t *items = NULL;
    bv_ledger_account_t acct;
    size_t n = 0;
    int64_t next = 0;
    bv_buf_t b = {0};
    int rc;

    if (bv_call_query_int_or_reply(c, "limit", 20, 1, BV_LEDGER_PAGE_MAX, &limit) != 0 ||
        bv_call_query_time_or_reply(c, "from", &from) != 0 || bv_call_query_time_or_reply(c, "to", &to) != 0)
        return;
    if (bv_call_query_int_or_reply(c, "cursor", 0, 1, INT64_MAX, &before) != 0)
        return;
    /* the account (for the currency) and then its page */
    if ((rc = bv_ledger_account_get(ledger_of(c), bv_call_param(c, "id"), &acct)) != 0) {
        ledger_reply_error(c, rc, NULL);
        return;
    }
    if ((items = malloc((size_t)limit * sizeof(*items))) == NULL) {
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        return;
    }
    rc = bv_ledger_movements(ledger_of(c), acct.id, from, to, before, (size_t)limit, items, &n, &next);
    if (rc != 0) {
        ledger_reply_error(c, rc, NULL);
        goto out;
    }
    rc = bv_buf_puts(&b, "{");
    rc |= bv_ledger_movement_page_json(&b, items, n, acct.exponent, next);
    rc |= bv_buf_puts(&b, "}");
    if (rc != 0) {
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        goto out;
    }
    ledger_reply_buf(c, 200, &b);
out:
    bv_buf_free(&b);
    free(items);
}

static void on_balance(bv_call_t *c)
{
    int64_t at, balance;
    bv_ledger_account_t acct;
    char amount[BV_LEDGER_AMOUNT_MAX], avail[BV_LEDGER_AMOUNT_MAX], holds[BV_LEDGER_AMOUNT_MAX];
    bv_buf_t b = {0};
    int rc;
    if (bv_call_query_time_or_reply(c, "at", &at) != 0)
        return;
    if (at == 0) {
        if ((rc = bv_ledger_account_get(ledger_of(c), bv_call_param(c, "id"), &acct)) != 0) {
            ledger_reply_error(c, rc, NULL);
            return;
        }
        bv_ledger_amount_format(acct.balance, acct.exponent, amount);
        bv_ledger_amount_format(acct.available, acct.exponent, avail);
        bv_ledger_amount_format(acct.holds, acct.exponent, holds);
        rc = bv_buf_printf(&b, "{\"account_id\":\"%s\",\"currency\":\"%s\",\"balance\":\"%s\",\"available\":\"%s\","
                               "\"holds\":\"%s\",\"at\":",
                           acct.id, acct.currency, amount, avail, holds);
        rc |= bv_buf_json_time(&b, bv_now_us());
    } else {
        if ((rc = bv_ledger_balance_at(ledger_of(c), bv_call_param(c, "id"), at, &acct, &balance)) != 0) {
            ledger_reply_error(c, rc, NULL);
            return;
        }
        bv_ledger_amount_format(balance, acct.exponent, amount);
        rc = bv_buf_printf(&b, "{\"account_id\":\"%s\",\"currency\":\"%s\",\"balance\":\"%s\",\"at\":", acct.id,
                           acct.currency, amount);
        rc |= bv_buf_json_time(&b, at);
    }
    rc |= bv_buf_puts(&b, "}");
    if (rc != 0) {
        bv_buf_free(&b);
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        return;
    }
    ledger_reply_buf(c, 200, &b);
}

/* RFC 4180 field; text that a spreadsheet would run as a formula gets a leading quote. */
static int csv_field(bv_buf_t *b, const char *s, bool text)
{
    int rc = 0;
    bool quote = strpbrk(s, ",\"\r\n") != NULL;
    bool formula = text && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' || s[0] == '\t');
    if (quote || formula)
        rc |= bv_buf_puts(b, "\"");
    if (formula)
        rc |= bv_buf_puts(b, "'");
    for (const char *p = s; *p; p++)
        rc |= *p == '"' ? bv_buf_puts(b, "\"\"") : bv_buf_append(b, p, 1);
    if (quote || formula)
        rc |= bv_buf_puts(b, "\"");
    return rc;
}

static int statement_csv(bv_buf_t *b, const bv_ledger_statement_t *st)
{
    char amount[BV_LEDGER_AMOUNT_MAX], bal[BV_LEDGER_AMOUNT_MAX], t[32];
    int e = st->account.exponent, rc = 0;
    rc |= bv_buf_puts(b, "type,date,transfer_id,description,counterparty_name,counterparty_number,amount,balance\r\n");
    bv_time_format(st->from, t);
    bv_ledger_amount_format(st->opening, e, bal);
    rc |= bv_buf_printf(b, "opening,%s,,,,,,%s\r\n", t, bal);
    for (size_t i = 0; i < st->n_items && rc == 0; i++) {
        const bv_ledger_movement_t *m = &st->items[i];
        bv_time_format(m->created_at, t);
        bv_ledger_amount_format(m->amount, e, amount);
        bv_ledger_amount_format(m->balance_after, e, bal);
        rc |= bv_buf_printf(b, "movement,%s,%s,", t, m->transfer_id);
        rc |= csv_field(b, m->description, true);
        rc |= bv_buf_puts(b, ",");
        rc |= csv_field(b, m->counterparty_name, true);
        rc |= bv_buf_printf(b, ",%s,%s,%s\r\n", m->counterparty_number, amount, bal);
    }
    bv_time_format(st->to, t);
    bv_ledger_amount_format(st->closing, e, bal);
    rc |= bv_buf_printf(b, "closing,%s,,,,,,%s\r\n", t, bal);
    return rc;
}

static int statement_json(bv_buf_t *b, const bv_ledger_statement_t *st)
{
    char open[BV_LEDGER_AMOUNT_MAX], close[BV_LEDGER_AMOUNT_MAX], cr[BV_LEDGER_AMOUNT_MAX], db[BV_LEDGER_AMOUNT_MAX];
    int e = st->account.exponent, rc = 0;
    bv_ledger_amount_format(st->opening, e, open);
    bv_ledger_amount_format(st->closing, e, close);
    bv_ledger_amount_format(st->total_credits, e, cr);
    bv_ledger_amount_format(st->total_debits, e, db);
    rc |= bv_buf_puts(b, "{\"account\":");
    rc |= bv_ledger_account_json(b, &st->account, 0);
    rc |= bv_buf_puts(b, ",\"from\":");
    rc |= bv_buf_json_time(b, st->from);
    rc |= bv_buf_puts(b, ",\"to\":");
    rc |= bv_buf_json_time(b, st->to);
    rc |= bv_buf_printf(b, ",\"currency\":\"%s\",\"opening_balance\":\"%s\",\"closing_balance\":\"%s\","
                           "\"total_credits\":\"%s\",\"total_debits\":\"%s\",\"count\":%zu,\"movements\":[",
                        st->account.currency, open, close, cr, db, st->n_items);
    for (size_t i = 0; i < st->n_items && rc == 0; i++) {
        if (i > 0)
            rc |= bv_buf_puts(b, ",");
        rc |= bv_ledger_movement_json(b, &st->items[i], e);
    }
    rc |= bv_buf_puts(b, "]}");
    return rc;
}

static void on_statement(bv_call_t *c)
{
    int64_t from, to;
    bv_ledger_statement_t st;
    bv_buf_t b = {0};
    const char *accept = bv_call_header(c, "accept");
    bool csv = accept != NULL && strstr(accept, "text/csv") != NULL;
    int rc;
    if (bv_call_query_time_or_reply(c, "from", &from) != 0 || bv_call_query_time_or_reply(c, "to", &to) != 0)
        return;
    if (from == 0 || to == 0 || from >= to) {
        bv_reply_problem(c, BV_EINVALID, "from and to are required and from must be before to", from == 0 ? "from" : "to");
        return;
    }
    rc = bv_ledger_statement(ledger_of(c), bv_call_param(c, "id"), from, to, &st);
    if (rc == BV_ETOOLARGE) {
        bv_reply_problem(c, BV_EINVALID, "too many movements in this range; ask for a shorter one", "to");
        return;
    }
    if (rc != 0) {
        ledger_reply_error(c, rc, NULL);
        return;
    }
    rc = csv ? statement_csv(&b, &st) : statement_json(&b, &st);
    bv_ledger_statement_free(&st);
    if (rc != 0) {
        bv_buf_free(&b);
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        return;
    }
    if (csv) {
        bv_reply_raw(c, 200, "text/csv; charset=utf-8", b.data, b.len);
        bv_buf_free(&b);
    } else {
        ledger_reply_buf(c, 200, &b);
    }
}

const bv_route_t ledger_account_routes[] = {
    {"POST", "/v1/accounts", on_create, "ledger:write", 4096, 0, NULL},
    {"GET", "/v1/accounts/{id}", on_get, "ledger:read", 0, 0, NULL},
    {"PATCH", "/v1/accounts/{id}", on_patch, "ledger:write", 1024, 0, NULL},
    {"GET", "/v1/accounts/{id}/movements", on_movements, "ledger:read", 0, 0, NULL},
    {"GET", "/v1/accounts/{id}/balance", on_balance, "ledger:read", 0, 0, NULL},
    {"GET", "/v1/accounts/{id}/statement", on_statement, "ledger:read", 0, 0, NULL},
};
const size_t ledger_n_account_routes = sizeof(ledger_account_routes) / sizeof(ledger_account_routes[0]);
