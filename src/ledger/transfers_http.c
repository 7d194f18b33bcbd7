/* HTTP endpoints of ledger transfers:
 *   POST /v1/ledger/transfers                  a posted transfer or a pending one (a hold)
 *   GET  /v1/ledger/transfers/{id}
 *   GET  /v1/ledger/transfers?reference=       {"items": [...]} (0 or 1)
 *   POST /v1/ledger/transfers/{id}/post        post a hold, fully or partially
 *   POST /v1/ledger/transfers/{id}/void        release a hold
 *   POST /v1/ledger/transfers/{id}/reversal    compensating transfer, at most once
 *   POST /v1/ledger/batches                    up to 8,190 transfers in one commit */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "ledger/internal.h"

typedef struct {
    const char *debit_account, *credit_account, *amount, *currency, *reference, *description, *expires_at;
    bool pending;
} xfer_body_t;

static const bv_json_field_t xfer_spec[] = {
    {"debit_account", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 64, offsetof(xfer_body_t, debit_account), NULL},
    {"credit_account", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 64, offsetof(xfer_body_t, credit_account), NULL},
    {"amount", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 64, offsetof(xfer_body_t, amount), NULL},
    {"currency", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 8, offsetof(xfer_body_t, currency), NULL},
    {"reference", BV_JSON_STRING, BV_JSON_NULLABLE, 1, BV_LEDGER_REF_MAX, offsetof(xfer_body_t, reference), NULL},
    {"description", BV_JSON_STRING, BV_JSON_NULLABLE, 0, BV_LEDGER_DESC_MAX, offsetof(xfer_body_t, description), NULL},
    {"pending", BV_JSON_BOOL, BV_JSON_NULLABLE, 0, 0, offsetof(xfer_body_t, pending), NULL},
    {"expires_at", BV_JSON_STRING, BV_JSON_NULLABLE, 1, 64, offsetof(xfer_body_t, expires_at), NULL},
    BV_JSON_END,
};

static bv_ledger_t *ledger_of(bv_call_t *c) { return c->ctx; }

/* Turns a decoded body into an engine request. Returns 0, or BV_EINVALID (400) / BV_EAMOUNT
 * (422) with the offending field name (without prefix) in *field_out. */
static int xfer_req_from_body(const xfer_body_t *b, const char *idem_key, bv_ledger_transfer_req_t *req,
                              const char **field_out, const char **detail_out)
{
    int exponent = bv_ledger_currency_exponent(b->currency), rc;
    memset(req, 0, sizeof(*req));
    *detail_out = NULL;
    if (exponent < 0) {
        *field_out = "currency";
        *detail_out = "currency is not a supported ISO 4217 code";
        return BV_EINVALID;
    }
    if ((rc = bv_ledger_amount_parse(b->amount, exponent, true, &req->amount)) != 0) {
        *field_out = "amount";
        *detail_out = rc == BV_EAMOUNT ? "amount exceeds the currency's precision or range"
                                       : "amount must be a decimal string such as \"10.50\"";
        return rc;
    }
    if (req->amount <= 0) {
        *field_out = "amount";
        *detail_out = "amount must be positive";
        return BV_EAMOUNT;
    }
    if (b->reference != NULL && idem_key != NULL && strcmp(b->reference, idem_key) != 0) {
        *field_out = "reference";
        *detail_out = "reference and Idempotency-Key differ";
        return BV_EINVALID;
    }
    req->reference = b->reference != NULL ? b->reference : idem_key;
    if (req->reference == NULL) {
        *field_out = "reference";
        *detail_out = "a reference (or an Idempotency-Key header) is required";
        return BV_EINVALID;
    }
    if (b->expires_at != NULL) {
        if (!b->pending) {
            *field_out = "expires_at";
            *detail_out = "expires_at applies to pending transfers only";
            return BV_EINVALID;
        }
        if (bv_time_parse(b->expires_at, &req->expires_at) != 0 || req->expires_at <= 0) {
            *field_out = "expires_at";
            *detail_out = "expires_at must be an RFC 3339 time";
            return BV_EINVALID;
        }
    }
    req->debit_account = b->debit_account;
    req->credit_account = b->credit_account;
    req->currency = b->currency;
    req->description = b->description;
    req->pending = b->pending;
    return 0;
}

static void reply_transfer(bv_call_t *c, int status, const bv_ledger_transfer_t *t, bool replayed)
{
    bv_buf_t b = {0};
    if (bv_ledger_transfer_json(&b, t) != 0) {
        bv_buf_free(&b);
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        return;
    }
    if (replayed)
        bv_call_add_header(c, "idempotent-replayed", "true");
    ledger_reply_buf(c, status, &b);
}

/* The field a rejection is about, for the problem's `field`. */
static const char *field_of(int rc)
{
    switch (rc) {
    case BV_EAMOUNT:
    case BV_ECURRENCY_MISMATCH:
        return rc == BV_EAMOUNT ? "amount" : "currency";
    case BV_EIDEMPOTENCY:
        return "reference";
    case BV_EEXPIRED:
        return "expires_at";
    default:
        return NULL;
    }
}

/* A transfer being made: what the engine reads until it answers. */
typedef struct {
    bv_call_t *call;
    json_t *root; /* the decoded body: req's strings point into it */
    ledger_call_ctx_t cc;
    bv_ledger_transfer_req_t req;
    bv_ledger_result_t res;
    int rc;
} create_t;

/* On the call's loop, once the transfer is durable (or refused). */
static void create_reply(bv_call_t *c, void *arg)
{
    create_t *x = arg;
    if (x->rc != 0)
        ledger_reply_error(c, x->rc, field_of(x->rc));
    else
        reply_transfer(c, 201, &x->res.transfer, x->res.replayed);
    json_decref(x->root);
    free(x);
}

/* On an engine or store thread. */
static void create_done(int rc, void *arg)
{
    create_t *x = arg;
    x->rc = rc;
    bv_call_resume(x->call, create_reply, x);
}

/* Runs on the event loop (decoding and checks only) and hands the transfer to the engine
 * without waiting for it: no worker thread waits for the commit. */
static void on_create(bv_call_t *c)
{
    xfer_body_t body = {0};
    const char *key, *field, *detail;
    int rc;
    create_t *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        return;
    }
    x->call = c;
    if (ledger_idem_key_or_reply(c, &key) != 0 || bv_call_decode_json_or_reply(c, xfer_spec, &body, &x->root) != 0) {
        free(x);
        return;
    }
    if ((rc = xfer_req_from_body(&body, key, &x->req, &field, &detail)) != 0) {
        bv_reply_problem(c, rc, detail, field);
        goto fail;
    }
    ledger_call_ctx(c, &x->cc);
    bv_call_defer(c);
    if ((rc = bv_ledger_transfer_async(ledger_of(c), &x->cc.ctx, &x->req, &x->res, create_done, x)) != 0) {
        x->rc = rc; /* not queued: answer through the same path */
        bv_call_resume(c, create_reply, x);
    }
    return;
fail:
    json_decref(x->root);
    free(x);
}

static void on_get(bv_call_t *c)
{
    bv_ledger_transfer_t t;
    int rc = bv_ledger_transfer_get(ledger_of(c), bv_call_param(c, "id"), &t);
    if (rc != 0)
        ledger_reply_error(c, rc, NULL);
    else
        reply_transfer(c, 200, &t, false);
}

static void on_list(bv_call_t *c)
{
    bv_ledger_transfer_t t;
    bv_buf_t b = {0};
    const char *ref = bv_call_query(c, "reference");
    if (ref == NULL || ref[0] == '\0' || strlen(ref) > BV_LEDGER_REF_MAX) {
        bv_reply_problem(c, BV_EINVALID, "reference is required (1 to 128 bytes)", "reference");
        return;
    }
    int rc = bv_ledger_transfer_by_reference(ledger_of(c), ref, &t);
    if (rc != 0 && rc != BV_ENOTFOUND) {
        ledger_reply_error(c, rc, NULL);
        return;
    }
    int e = bv_buf_puts(&b, "{\"items\":[");
    if (rc == 0)
        e |= bv_ledger_transfer_json(&b, &t);
    e |= bv_buf_puts(&b, "]}");
    if (e != 0) {
        bv_buf_free(&b);
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        return;
    }
    ledger_reply_buf(c, 200, &b);
}

typedef struct {
    const char *amount, *description;
} resolve_body_t;

static const bv_json_field_t post_spec[] = {
    {"amount", BV_JSON_STRING, BV_JSON_NULLABLE, 1, 64, offsetof(resolve_body_t, amount), NULL},
    BV_JSON_END,
};
static const bv_json_field_t void_spec[] = {BV_JSON_END};
static const bv_json_field_t reversal_spec[] = {
    {"description", BV_JSON_STRING, BV_JSON_NULLABLE, 0, BV_LEDGER_DESC_MAX, offsetof(resolve_body_t, description),
     NULL},
    BV_JSON_END,
};

/* An optional JSON body: absent or empty is the same as {}. */
static int decode_optional_or_reply(bv_call_t *c, const bv_json_field_t *spec, void *out, json_t **root)
{
    *root = NULL;
    if (c->body == NULL || c->body_len == 0)
        return 0;
    return bv_call_decode_json_or_reply(c, spec, out, root);
}

static void on_post(bv_call_t *c)
{
    resolve_body_t body = {0};
    json_t *root = NULL;
    const char *key;
    bv_ledger_transfer_t t;
    ledger_call_ctx_t cc;
    int64_t amount = 0;
    int rc;
    if (ledger_idem_key_or_reply(c, &key) != 0 || decode_optional_or_reply(c, post_spec, &body, &root) != 0)
        return;
    if (body.amount != NULL) {
        /* the amount is in the transfer's currency: look it up first */
        if ((rc = bv_ledger_transfer_get(ledger_of(c), bv_call_param(c, "id"), &t)) != 0) {
            ledger_reply_error(c, rc, NULL);
            goto out;
        }
        rc = bv_ledger_amount_parse(body.amount, t.exponent, true, &amount);
        if (rc == 0 && amount <= 0)
            rc = BV_EAMOUNT;
        if (rc != 0) {
            bv_reply_problem(c, rc, "amount must be a positive decimal string in the transfer's currency", "amount");
            goto out;
        }
    }
    ledger_call_ctx(c, &cc);
    rc = bv_uuid_valid(bv_call_param(c, "id"))
             ? bv_ledger_post(ledger_of(c), &cc.ctx, bv_call_param(c, "id"), amount, key, &t)
             : BV_ENOTFOUND;
    if (rc != 0)
        ledger_reply_error(c, rc, rc == BV_EAMOUNT ? "amount" : NULL);
    else
        reply_transfer(c, 200, &t, false);
out:
    json_decref(root);
}

static void on_void(bv_call_t *c)
{
    resolve_body_t body = {0};
    json_t *root = NULL;
    const char *key;
    bv_ledger_transfer_t t;
    ledger_call_ctx_t cc;
    if (ledger_idem_key_or_reply(c, &key) != 0 || decode_optional_or_reply(c, void_spec, &body, &root) != 0)
        return;
    ledger_call_ctx(c, &cc);
    int rc = bv_uuid_valid(bv_call_param(c, "id")) ? bv_ledger_void(ledger_of(c), &cc.ctx, bv_call_param(c, "id"), key, &t)
                                                   : BV_ENOTFOUND;
    if (rc != 0)
        ledger_reply_error(c, rc, NULL);
    else
        reply_transfer(c, 200, &t, false);
    json_decref(root);
}

static void on_reversal(bv_call_t *c)
{
    resolve_body_t body = {0};
    json_t *root = NULL;
    const char *key;
    bv_ledger_transfer_t t;
    ledger_call_ctx_t cc;
    bool replayed = false;
    if (ledger_idem_key_or_reply(c, &key) != 0 || decode_optional_or_reply(c, reversal_spec, &body, &root) != 0)
        return;
    ledger_call_ctx(c, &cc);
    int rc = bv_uuid_valid(bv_call_param(c, "id"))
                 ? bv_ledger_reverse(ledger_of(c), &cc.ctx, bv_call_param(c, "id"), key, body.description, &t, &replayed)
                 : BV_ENOTFOUND;
    if (rc != 0)
        ledger_reply_error(c, rc, field_of(rc));
    else
        reply_transfer(c, 201, &t, replayed);
    json_decref(root);
}

/* ---- batches ---- */

typedef struct {
    json_t *transfers;
    bool linked;
} batch_body_t;

static const bv_json_field_t batch_spec[] = {
    {"transfers", BV_JSON_ARRAY, BV_JSON_REQUIRED, 1, BV_LEDGER_BATCH_MAX, offsetof(batch_body_t, transfers), NULL},
    {"linked", BV_JSON_BOOL, BV_JSON_NULLABLE, 0, 0, offsetof(batch_body_t, linked), NULL},
    BV_JSON_END,
};

static int result_json(bv_buf_t *b, size_t i, const bv_ledger_result_t *r)
{
    int rc;
    if (r->rc == 0) {
        rc = bv_buf_printf(b, "{\"index\":%zu,\"status\":201,\"replayed\":%s,\"transfer\":", i,
                           r->replayed ? "true" : "false");
        rc |= bv_ledger_transfer_json(b, &r->transfer);
        rc |= bv_buf_puts(b, "}");
        return rc;
    }
    return bv_buf_printf(b, "{\"index\":%zu,\"status\":%d,\"type\":\"" BV_PROBLEM_BASE "%s\",\"title\":\"%s\"}", i,
                         bv_err_status(r->rc), bv_err_slug(r->rc), bv_err_title(r->rc));
}

static void on_batch(bv_call_t *c)
{
    batch_body_t body = {0};
    json_t *root = NULL;
    bv_ledger_transfer_req_t *reqs = NULL;
    bv_ledger_result_t *results = NULL;
    xfer_body_t *items = NULL;
    ledger_call_ctx_t cc;
    bv_buf_t b = {0};
    size_t n;
    int rc, e = 0;

    if (bv_call_decode_json_or_reply(c, batch_spec, &body, &root) != 0)
        return;
    n = json_array_size(body.transfers);
    reqs = calloc(n, sizeof(*reqs));
    results = calloc(n, sizeof(*results));
    items = calloc(n, sizeof(*items));
    if (reqs == NULL || results == NULL || items == NULL) {
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        goto out;
    }
    /* shape errors reject the whole request (400); a bad amount is that item's 422 */
    for (size_t i = 0; i < n; i++) {
        char prefix[32], field[96];
        const char *f, *detail;
        bv_json_error_t err = {{0}, {0}};
        json_t *item = json_array_get(body.transfers, i);
        snprintf(prefix, sizeof(prefix), "transfers[%zu]", i);
        if (!json_is_object(item)) {
            bv_reply_problem(c, BV_EINVALID, "each transfer must be an object", prefix);
            goto out;
        }
        if (bv_json_decode_object(item, prefix, xfer_spec, &items[i], &err) != 0) {
            char d[300];
            snprintf(d, sizeof(d), "%s %s", err.field, err.detail);
            bv_reply_problem(c, BV_EINVALID, d, err.field);
            goto out;
        }
        rc = xfer_req_from_body(&items[i], NULL, &reqs[i], &f, &detail);
        if (rc == BV_EINVALID) {
            snprintf(field, sizeof(field), "%s.%s", prefix, f);
            bv_reply_problem(c, BV_EINVALID, detail, field);
            goto out;
        }
        if (rc != 0) {
            /* the engine reports it in order with the others: an amount of 0 is invalid-amount */
            reqs[i].amount = 0;
            reqs[i].debit_account = items[i].debit_account;
            reqs[i].credit_account = items[i].credit_account;
            reqs[i].currency = items[i].currency;
            reqs[i].reference = items[i].reference;
            reqs[i].description = items[i].description;
        }
    }
    ledger_call_ctx(c, &cc);
    if ((rc = bv_ledger_batch(ledger_of(c), &cc.ctx, reqs, n, body.linked, results)) != 0) {
        ledger_reply_error(c, rc, NULL);
        goto out;
    }
    size_t n_ok = 0;
    for (size_t i = 0; i < n; i++)
        n_ok += results[i].rc == 0;
    e |= bv_buf_printf(&b, "{\"linked\":%s,\"count\":%zu,\"succeeded\":%zu,\"failed\":%zu,\"results\":[",
                       body.linked ? "true" : "false", n, n_ok, n - n_ok);
    for (size_t i = 0; i < n && e == 0; i++) {
        if (i > 0)
            e |= bv_buf_puts(&b, ",");
        e |= result_json(&b, i, &results[i]);
    }
    e |= bv_buf_puts(&b, "]}");
    if (e != 0) {
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        goto out;
    }
    ledger_reply_buf(c, 200, &b);
out:
    bv_buf_free(&b);
    free(items);
    free(results);
    free(reqs);
    json_decref(root);
}

const bv_route_t ledger_transfer_routes[] = {
    {"POST", "/v1/ledger/transfers", on_create, "ledger:write", 8192, BV_ROUTE_ON_LOOP, NULL},
    {"GET", "/v1/ledger/transfers", on_list, "ledger:read", 0, 0, NULL},
    {"GET", "/v1/ledger/transfers/{id}", on_get, "ledger:read", 0, 0, NULL},
    {"POST", "/v1/ledger/transfers/{id}/post", on_post, "ledger:write", 1024, 0, NULL},
    {"POST", "/v1/ledger/transfers/{id}/void", on_void, "ledger:write", 1024, 0, NULL},
    {"POST", "/v1/ledger/transfers/{id}/reversal", on_reversal, "ledger:write", 2048, 0, NULL},
    {"POST", "/v1/ledger/batches", on_batch, "ledger:write", 8u << 20, 0, NULL},
};
const size_t ledger_n_transfer_routes = sizeof(ledger_transfer_routes) / sizeof(ledger_transfer_routes[0]);
