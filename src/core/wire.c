/* The JSON of the core contract (docs/core-contract.md): the server renders ledger records
 * with the same members as the ledger's back-office API, and the http adapter parses them
 * back. Money is a decimal string in the currency's exponent; times are RFC 3339. */
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "core/internal.h"

/* ---- parsing (the http adapter) ---- */

/* Copies the string member `name` (NULL/absent -> "" when optional) into dst[n]; fails when
 * required and missing, or longer than n - 1. */
static int get_str(json_t *o, const char *name, char *dst, size_t n, bool required)
{
    json_t *v = json_object_get(o, name);
    dst[0] = '\0';
    if (v == NULL || json_is_null(v))
        return required ? BV_EUPSTREAM : 0;
    if (!json_is_string(v) || json_string_length(v) >= n)
        return BV_EUPSTREAM;
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static int get_time(json_t *o, const char *name, int64_t *out, bool required)
{
    json_t *v = json_object_get(o, name);
    *out = 0;
    if (v == NULL || json_is_null(v))
        return required ? BV_EUPSTREAM : 0;
    if (!json_is_string(v) || bv_time_parse(json_string_value(v), out) != 0)
        return BV_EUPSTREAM;
    return 0;
}

static int get_amount(json_t *o, const char *name, int exponent, int64_t *out)
{
    json_t *v = json_object_get(o, name);
    *out = 0;
    if (!json_is_string(v) || bv_ledger_amount_parse(json_string_value(v), exponent, true, out) != 0)
        return BV_EUPSTREAM;
    return 0;
}

static int exponent_of(const char *currency, int *out)
{
    *out = bv_ledger_currency_exponent(currency);
    return *out < 0 ? BV_EUPSTREAM : 0;
}

int core_account_from_json(json_t *o, bv_ledger_account_t *a)
{
    int rc = 0;
    memset(a, 0, sizeof(*a));
    if (!json_is_object(o))
        return BV_EUPSTREAM;
    rc |= get_str(o, "id", a->id, sizeof(a->id), true);
    rc |= get_str(o, "number", a->number, sizeof(a->number), true);
    rc |= get_str(o, "type", a->type, sizeof(a->type), true);
    rc |= get_str(o, "currency", a->currency, sizeof(a->currency), true);
    rc |= get_str(o, "status", a->status, sizeof(a->status), true);
    rc |= get_str(o, "holder_name", a->holder_name, sizeof(a->holder_name), true);
    rc |= get_str(o, "customer_id", a->customer_id, sizeof(a->customer_id), false);
    if (rc != 0 || exponent_of(a->currency, &a->exponent) != 0)
        return BV_EUPSTREAM;
    rc |= get_amount(o, "overdraft_limit", a->exponent, &a->overdraft_limit);
    rc |= get_amount(o, "balance", a->exponent, &a->balance);
    rc |= get_amount(o, "available", a->exponent, &a->available);
    rc |= get_amount(o, "holds", a->exponent, &a->holds);
    rc |= get_time(o, "created_at", &a->created_at, true);
    json_t *neg = json_object_get(o, "allow_negative");
    if (neg != NULL && !json_is_boolean(neg))
        rc = BV_EUPSTREAM;
    a->allow_negative = json_is_true(neg);
    return rc != 0 ? BV_EUPSTREAM : 0;
}

int core_transfer_from_json(json_t *o, bv_ledger_transfer_t *t)
{
    int rc = 0;
    memset(t, 0, sizeof(*t));
    if (!json_is_object(o))
        return BV_EUPSTREAM;
    rc |= get_str(o, "id", t->id, sizeof(t->id), true);
    rc |= get_str(o, "reference", t->reference, sizeof(t->reference), true);
    rc |= get_str(o, "status", t->status, sizeof(t->status), true);
    rc |= get_str(o, "debit_account", t->debit_account, sizeof(t->debit_account), true);
    rc |= get_str(o, "credit_account", t->credit_account, sizeof(t->credit_account), true);
    rc |= get_str(o, "currency", t->currency, sizeof(t->currency), true);
    rc |= get_str(o, "description", t->description, sizeof(t->description), false);
    rc |= get_str(o, "reverses", t->reverses, sizeof(t->reverses), false);
    rc |= get_str(o, "reversed_by", t->reversed_by, sizeof(t->reversed_by), false);
    if (rc != 0 || exponent_of(t->currency, &t->exponent) != 0)
        return BV_EUPSTREAM;
    rc |= get_amount(o, "amount", t->exponent, &t->amount);
    rc |= get_amount(o, "posted_amount", t->exponent, &t->posted_amount);
    rc |= get_time(o, "expires_at", &t->expires_at, false);
    rc |= get_time(o, "created_at", &t->created_at, true);
    rc |= get_time(o, "resolved_at", &t->resolved_at, false);
    json_t *p = json_object_get(o, "pending");
    if (p != NULL && !json_is_boolean(p))
        rc = BV_EUPSTREAM;
    t->pending = json_is_true(p);
    return rc != 0 ? BV_EUPSTREAM : 0;
}

int core_movement_from_json(json_t *o, int exponent, bv_ledger_movement_t *m)
{
    int rc = 0;
    memset(m, 0, sizeof(*m));
    if (!json_is_object(o))
        return BV_EUPSTREAM;
    json_t *cp = json_object_get(o, "counterparty");
    if (!json_is_object(cp))
        return BV_EUPSTREAM;
    rc |= get_str(o, "transfer_id", m->transfer_id, sizeof(m->transfer_id), true);
    rc |= get_amount(o, "amount", exponent, &m->amount);
    rc |= get_amount(o, "balance_after", exponent, &m->balance_after);
    rc |= get_str(cp, "id", m->counterparty_id, sizeof(m->counterparty_id), false);
    rc |= get_str(cp, "name", m->counterparty_name, sizeof(m->counterparty_name), false);
    rc |= get_str(cp, "number", m->counterparty_number, sizeof(m->counterparty_number), false);
    rc |= get_str(o, "description", m->description, sizeof(m->description), false);
    rc |= get_time(o, "created_at", &m->created_at, true);
    return rc != 0 ? BV_EUPSTREAM : 0;
}
