/* The customer's accounts (issue 8), read through the core port:
 *   GET /v1/me/accounts                   every account of the caller, oldest first
 *   GET /v1/me/accounts/{id}              one of them
 *   GET /v1/me/accounts/{id}/movements    newest first; from, to (RFC 3339), cursor, limit
 * An account id that is not the caller's answers 404 exactly as an unknown one does
 * (bv_customer_account_owned). Shapes follow the back-office ledger endpoints, without the
 * bank-internal fields (customer_id, allow_negative). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "core/core.h"
#include "customer/internal.h"

#define MOVEMENTS_PAGE_MAX     100
#define MOVEMENTS_PAGE_DEFAULT 20

static void on_list(bv_call_t *c)
{
    bv_ledger_account_t *accts = NULL;
    size_t n = 0;
    bv_buf_t b = {0};
    bv_core_t *core;
    int rc;
    if ((core = bv_core_instance()) == NULL) {
        customer_reply_error(c, BV_EUNAVAILABLE, NULL, NULL);
        return;
    }
    if ((rc = bv_core_accounts_of(core, c->principal.subject, &accts, &n)) != 0) {
        customer_reply_error(c, rc, NULL, NULL);
        return;
    }
    rc = bv_buf_puts(&b, "{\"items\":[");
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (i > 0)
            rc |= bv_buf_puts(&b, ",");
        rc |= bv_ledger_account_json(&b, &accts[i], BV_LEDGER_JSON_CUSTOMER);
    }
    rc |= bv_buf_puts(&b, "]}");
    customer_reply_buf(c, rc, &b);
    free(accts);
}

/* The caller's account named by the path; replies 404 for anyone else's. */
static int owned_or_reply(bv_call_t *c, bv_ledger_account_t *a)
{
    int rc = bv_customer_account_owned(c->principal.subject, bv_call_param(c, "id"), a);
    if (rc != 0)
        customer_reply_error(c, rc, NULL, NULL);
    return rc;
}

static void on_get(bv_call_t *c)
{
    bv_ledger_account_t a;
    bv_buf_t b = {0};
    if (owned_or_reply(c, &a) != 0)
        return;
    customer_reply_buf(c, bv_ledger_account_json(&b, &a, BV_LEDGER_JSON_CUSTOMER), &b);
}

static void on_movements(bv_call_t *c)
{
    int64_t limit, from, to, before = 0, next = 0;
    bv_ledger_movement_t *items = NULL;
    bv_ledger_account_t a;
    bv_buf_t b = {0};
    size_t n = 0;
    int rc;

    if (bv_call_query_int_or_reply(c, "limit", MOVEMENTS_PAGE_DEFAULT, 1, MOVEMENTS_PAGE_MAX, &limit) != 0 ||
        bv_call_query_time_or_reply(c, "from", &from) != 0 || bv_call_query_time_or_reply(c, "to", &to) != 0)
        return;
    if (from != 0 && to != 0 && from >= to) {
        bv_reply_problem(c, BV_EINVALID, "to must be after from", "to");
        return;
    }
    if (bv_call_query_int_or_reply(c, "cursor", 0, 1, INT64_MAX, &before) != 0)
        return;
    /* ownership first: another customer's account is a 404 whatever the query says */
    if (owned_or_reply(c, &a) != 0)
        return;
    if ((items = malloc((size_t)limit * sizeof(*items))) == NULL) {
        customer_reply_error(c, BV_ENOMEM, NULL, NULL);
        return;
    }
    rc = bv_core_movements(bv_core_instance(), a.id, from, to, before, (size_t)limit, items, &n, &next);
    if (rc != 0) {
        customer_reply_error(c, rc, NULL, NULL);
        goto out;
    }
    rc = bv_buf_printf(&b, "{\"account_id\":\"%s\",\"currency\":\"%s\",", a.id, a.currency);
    rc |= bv_ledger_movement_page_json(&b, items, n, a.exponent, next);
    rc |= bv_buf_puts(&b, "}");
    customer_reply_buf(c, rc, &b);
out:
    bv_buf_free(&b);
    free(items);
}

const bv_route_t customer_account_routes[] = {
    {"GET", "/v1/me/accounts", on_list, "banking:read", 0, BV_ROUTE_CUSTOMER, NULL},
    {"GET", "/v1/me/accounts/{id}", on_get, "banking:read", 0, BV_ROUTE_CUSTOMER, NULL},
    {"GET", "/v1/me/accounts/{id}/movements", on_movements, "banking:read", 0, BV_ROUTE_CUSTOMER, NULL},
};
const size_t customer_n_account_routes = sizeof(customer_account_routes) / sizeof(customer_account_routes[0]);
