/* The customer's own profile and the at-a-glance summary (issue 8):
 *   GET /v1/me          the basic profile (from the encrypted cache)
 *   GET /v1/me/summary  the profile, every account with its balance and its last 4
 *                       movements: the first screen of the app, on the hot path
 * Both for a customer's access token with scope banking:read. */
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "core/core.h"
#include "customer/internal.h"

#define SUMMARY_MOVEMENTS 4

/* The caller's profile; replies on failure. A token whose user is gone is no longer a
 * credential. */
static int profile_or_reply(bv_call_t *c, bv_customer_profile_t *p)
{
    int rc = bv_customer_profile(c->principal.subject, p);
    if (rc == BV_ENOTFOUND) {
        bv_reply_problem(c, BV_EUNAUTHENTICATED, "the token's user no longer exists", NULL);
        return rc;
    }
    if (rc != 0)
        customer_reply_error(c, rc, NULL, NULL);
    return rc;
}

static void on_me(bv_call_t *c)
{
    bv_customer_profile_t p;
    bv_buf_t b = {0};
    if (profile_or_reply(c, &p) != 0)
        return;
    customer_reply_buf(c, customer_profile_json(&b, &p), &b);
}

static int summary_movement_json(bv_buf_t *b, const bv_ledger_movement_t *m, int exponent)
{
    char amount[BV_LEDGER_AMOUNT_MAX];
    int rc = 0;
    bv_ledger_amount_format(m->amount, exponent, amount);
    rc |= bv_buf_printf(b, "{\"transfer_id\":\"%s\",\"date\":", m->transfer_id);
    rc |= bv_buf_json_time(b, m->created_at);
    rc |= bv_buf_printf(b, ",\"amount\":\"%s\",\"counterparty_name\":", amount);
    rc |= bv_buf_json_string(b, m->counterparty_name, false);
    rc |= bv_buf_puts(b, ",\"description\":");
    rc |= bv_buf_json_string(b, m->description, false);
    rc |= bv_buf_puts(b, "}");
    return rc;
}

static int summary_account_json(bv_buf_t *b, const bv_ledger_account_t *a, const bv_ledger_movement_t *mv,
                                size_t n_mv)
{
    char bal[BV_LEDGER_AMOUNT_MAX], av[BV_LEDGER_AMOUNT_MAX];
    int rc = 0;
    bv_ledger_amount_format(a->balance, a->exponent, bal);
    bv_ledger_amount_format(a->available, a->exponent, av);
    rc |= bv_buf_printf(
        b,
        "{\"id\":\"%s\",\"number\":\"%s\",\"type\":\"%s\",\"currency\":\"%s\",\"status\":\"%s\","
        "\"balance\":\"%s\",\"available\":\"%s\",\"last_movements\":[",
        a->id, a->number, a->type, a->currency, a->status, bal, av);
    for (size_t i = 0; i < n_mv && rc == 0; i++) {
        if (i > 0)
            rc |= bv_buf_puts(b, ",");
        rc |= summary_movement_json(b, &mv[i], a->exponent);
    }
    rc |= bv_buf_puts(b, "]}");
    return rc;
}

static void on_summary(bv_call_t *c)
{
    bv_customer_profile_t p;
    bv_ledger_account_t *accts = NULL;
    bv_ledger_movement_t mv[SUMMARY_MOVEMENTS];
    size_t n = 0, n_mv;
    int64_t next;
    bv_buf_t b = {0};
    bv_core_t *core;
    int rc;

    if (profile_or_reply(c, &p) != 0)
        return;
    if ((core = bv_core_instance()) == NULL) {
        customer_reply_error(c, BV_EUNAVAILABLE, NULL, NULL);
        return;
    }
    if ((rc = bv_core_accounts_of(core, p.id, &accts, &n)) != 0) {
        customer_reply_error(c, rc, NULL, NULL);
        return;
    }
    /* ~600 bytes of profile, ~300 per account and ~350 per movement */
    rc = customer_buf_presize(&b, 1024 + n * (320 + SUMMARY_MOVEMENTS * 360));
    rc |= bv_buf_puts(&b, "{\"profile\":");
    rc |= customer_profile_json(&b, &p);
    rc |= bv_buf_puts(&b, ",\"accounts\":[");
    for (size_t i = 0; i < n && rc == 0; i++) {
        int mrc = bv_core_movements(core, accts[i].id, 0, 0, 0, SUMMARY_MOVEMENTS, mv, &n_mv, &next);
        if (mrc != 0) {
            customer_reply_error(c, mrc, NULL, NULL);
            goto out;
        }
        if (i > 0)
            rc |= bv_buf_puts(&b, ",");
        rc |= summary_account_json(&b, &accts[i], mv, n_mv);
    }
    rc |= bv_buf_puts(&b, "]}");
    customer_reply_buf(c, rc, &b);
out:
    bv_buf_free(&b);
    free(accts);
}

const bv_route_t customer_me_routes[] = {
    {"GET", "/v1/me", on_me, "banking:read", 0, BV_ROUTE_CUSTOMER, NULL},
    {"GET", "/v1/me/summary", on_summary, "banking:read", 0, BV_ROUTE_CUSTOMER, NULL},
};
const size_t customer_n_me_routes = sizeof(customer_me_routes) / sizeof(customer_me_routes[0]);
