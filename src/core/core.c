/* The core-banking port: adapter selection (BOVEDA_CORE), dispatch to the adapter, the
 * process-wide instance and the application hooks. */
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "core/internal.h"

static bv_core_t *g_instance;
/* The store of the application whose core module started: the builtin adapter reads the
 * ledger's account lists from it (the ledger has no call for them). */
static bv_store_t *g_store;
static bool g_serving_core; /* `boveda core`: always the builtin adapter over our own ledger */

void core_server_mode(bool on)
{
    g_serving_core = on;
}

int bv_core_open(const bv_config_t *cfg, bv_ledger_t *ledger, bv_core_t **out)
{
    const char *adapter = bv_config_str(cfg, "CORE");
    *out = NULL;
    if (adapter == NULL || strcmp(adapter, "builtin") == 0) {
        if (ledger == NULL) {
            bv_log_error("invalid setting",
                         "\"setting\":\"BOVEDA_CORE\",\"reason\":\"builtin needs the ledger of this "
                         "process\"");
            return BV_ECONFIG;
        }
        return core_builtin_open(ledger, g_store, out);
    }
    if (strcmp(adapter, "http") == 0) {
        core_http_settings_t s = {
            .url = bv_config_str(cfg, "CORE_URL"),
            .token = bv_config_str(cfg, "CORE_TOKEN"),
            .timeout_ms = bv_config_int(cfg, "CORE_TIMEOUT_MS"),
            .ca_file = bv_config_str(cfg, "CORE_CA_FILE"),
        };
        const char *bad = NULL, *why = NULL;
        if (core_http_settings_check(&s, &bad, &why) != 0) {
            bv_log_error("invalid setting", "\"setting\":\"%s\",\"reason\":\"%s\"", bad, why);
            return BV_ECONFIG;
        }
        return core_http_open(&s, out);
    }
    bv_log_error("invalid setting", "\"setting\":\"BOVEDA_CORE\",\"reason\":\"must be builtin or http\"");
    return BV_ECONFIG;
}

void bv_core_close(bv_core_t *c)
{
    if (c == NULL)
        return;
    if (c->ops->close != NULL)
        c->ops->close(c->cls);
    free(c);
}

bv_core_t *bv_core_instance(void)
{
    return g_instance;
}

const char *bv_core_adapter(const bv_core_t *c)
{
    return c == NULL ? NULL : c->ops->name;
}

int bv_core_retryable(int rc)
{
    return rc == BV_ETIMEOUT || rc == BV_EUPSTREAM || rc == BV_EUNAVAILABLE || rc == BV_EBUSY ||
           rc == BV_ESHUTDOWN;
}

int bv_core_accounts_of(bv_core_t *c, const char *customer_id, bv_ledger_account_t **items_out, size_t *n_out)
{
    *items_out = NULL;
    *n_out = 0;
    if (customer_id == NULL || !bv_uuid_valid(customer_id))
        return 0; /* no account can belong to something that is not a customer id */
    return c->ops->accounts_of(c->cls, customer_id, items_out, n_out);
}

int bv_core_account_get(bv_core_t *c, const char *account_id, bv_ledger_account_t *out)
{
    if (account_id == NULL || !bv_uuid_valid(account_id))
        return BV_ENOTFOUND;
    return c->ops->account_get(c->cls, account_id, out);
}

int bv_core_account_by_number(bv_core_t *c, const char *number, bv_ledger_account_t *out)
{
    if (number == NULL || !bv_ledger_number_valid(number))
        return BV_ENOTFOUND;
    return c->ops->account_by_number(c->cls, number, out);
}

int bv_core_movements(bv_core_t *c, const char *account_id, int64_t from, int64_t to, int64_t before,
                      size_t limit, bv_ledger_movement_t *items, size_t *n_out, int64_t *next_cursor_out)
{
    *n_out = 0;
    *next_cursor_out = 0;
    if (account_id == NULL || !bv_uuid_valid(account_id))
        return BV_ENOTFOUND;
    if (limit == 0 || limit > BV_LEDGER_PAGE_MAX)
        return BV_EINVALID;
    return c->ops->movements(c->cls, account_id, from, to, before, limit, items, n_out, next_cursor_out);
}

int bv_core_statement(bv_core_t *c, const char *account_id, int64_t from, int64_t to,
                      bv_ledger_statement_t *out)
{
    memset(out, 0, sizeof(*out));
    if (account_id == NULL || !bv_uuid_valid(account_id))
        return BV_ENOTFOUND;
    if (from >= to)
        return BV_EINVALID;
    return c->ops->statement(c->cls, account_id, from, to, out);
}

/* 0, or the rejection of a request no adapter should see. */
static int execute_req_check(const bv_core_transfer_req_t *req)
{
    if (req == NULL || req->reference == NULL || req->reference[0] == '\0' ||
        strlen(req->reference) > BV_LEDGER_REF_MAX || req->debit_account == NULL ||
        req->credit_account == NULL || req->currency == NULL ||
        (req->description != NULL && strlen(req->description) > BV_LEDGER_DESC_MAX))
        return BV_EINVALID;
    return req->amount <= 0 ? BV_EAMOUNT : 0;
}

int bv_core_transfer_execute(bv_core_t *c, const bv_core_transfer_req_t *req, bv_ledger_transfer_t *out,
                             bool *replayed_out)
{
    bool replayed = false;
    if (replayed_out != NULL)
        *replayed_out = false;
    int rc = execute_req_check(req);
    if (rc != 0)
        return rc;
    rc = c->ops->transfer_execute(c->cls, req, out, &replayed);
    if (rc == 0 && replayed_out != NULL)
        *replayed_out = replayed;
    return rc;
}

int bv_core_transfer_execute_batch(bv_core_t *c, const bv_core_transfer_req_t *reqs, size_t n,
                                   bv_ledger_result_t *results)
{
    if (reqs == NULL || results == NULL || n == 0 || n > BV_LEDGER_BATCH_MAX)
        return BV_EINVALID;
    memset(results, 0, n * sizeof(*results));
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        bad |= (results[i].rc = execute_req_check(&reqs[i])) != 0;
    if (c->ops->transfer_execute_batch == NULL || bad) { /* one after another */
        for (size_t i = 0; i < n; i++) {
            if (results[i].rc != 0)
                continue;
            if (reqs[i].deadline_us != 0 && bv_now_us() >= reqs[i].deadline_us)
                results[i].rc = BV_ETIMEOUT; /* its deadline passed while earlier ones ran: not sent */
            else
                results[i].rc =
                    bv_core_transfer_execute(c, &reqs[i], &results[i].transfer, &results[i].replayed);
        }
        return 0;
    }
    return c->ops->transfer_execute_batch(c->cls, reqs, n, results);
}

int bv_core_transfer_lookup(bv_core_t *c, const char *reference, bv_ledger_transfer_t *out)
{
    if (reference == NULL || reference[0] == '\0' || strlen(reference) > BV_LEDGER_REF_MAX)
        return BV_ENOTFOUND;
    return c->ops->transfer_lookup(c->cls, reference, out);
}

int bv_core_module_init(bv_app_t *app)
{
    g_store = app->store;
    if (g_serving_core)
        return core_builtin_open(app->ledger, app->store, &g_instance);
    int rc = bv_core_open(app->cfg, app->ledger, &g_instance);
    if (rc == 0)
        bv_log_debug("core adapter open", "\"adapter\":\"%s\"", bv_core_adapter(g_instance));
    return rc;
}

void bv_core_module_fini(bv_app_t *app)
{
    (void)app;
    bv_core_close(g_instance);
    g_instance = NULL;
    g_store = NULL;
}
