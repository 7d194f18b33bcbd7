/* The http adapter (libcurl): an external core over the contract of docs/core-contract.md,
 * which `boveda core` serves.
 *
 * - One timeout (BOVEDA_CORE_TIMEOUT_MS) bounds connecting and the whole exchange; every
 *   execute carries a `deadline` (the caller's deadline_us, else now + that timeout), so a
 *   request the core sees only after it moves nothing (the core refuses it with 422 expired).
 * - TLS peers are always verified (https); BOVEDA_CORE_CA_FILE adds a CA to the system's.
 * - Connections are reused: finished easy handles go back to a small pool (keep-alive).
 * - Errors: no answer in time -> BV_ETIMEOUT; refused/reset/TLS/5xx/garbage -> BV_EUPSTREAM;
 *   a 4xx problem -> the registry code of its type's slug (only the codes the contract
 *   defines; anything else, e.g. 401 for a wrong token, is BV_EUPSTREAM: retryable, never a
 *   definitive "no" that would fail a customer's transfer). */
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "core/internal.h"

#define POOL_MAX     32
#define RESPONSE_MAX (64u << 20) /* a statement of BV_LEDGER_STATEMENT_MAX movements fits */

typedef struct {
    char *base;        /* URL without trailing slash */
    char *auth_header; /* "Authorization: Bearer ..." (secret: wiped on close) */
    char *ca_file;     /* NULL: system store only */
    long timeout_ms;
    pthread_mutex_t mu;
    CURL *idle[POOL_MAX];
    size_t n_idle;
} http_t;

/* ---- settings ---- */

int core_http_settings_check(const core_http_settings_t *s, const char **bad_setting_out,
                             const char **why_out)
{
    *bad_setting_out = NULL;
    *why_out = NULL;
    if (s->url == NULL || (strncmp(s->url, "http://", 7) != 0 && strncmp(s->url, "https://", 8) != 0)) {
        *bad_setting_out = "BOVEDA_CORE_URL";
        *why_out = "must be an http:// or https:// URL";
        return BV_ECONFIG;
    }
    const char *host = s->url + (s->url[4] == 's' ? 8 : 7);
    if (host[0] == '\0' || host[0] == '/' || strpbrk(s->url, " \t\r\n?#") != NULL || strlen(s->url) > 1024) {
        *bad_setting_out = "BOVEDA_CORE_URL";
        *why_out = "must name a host, without spaces, query or fragment";
        return BV_ECONFIG;
    }
    if (s->token == NULL || strlen(s->token) < 32 || strlen(s->token) > 512 ||
        strpbrk(s->token, " \t\r\n") != NULL) {
        *bad_setting_out = "BOVEDA_CORE_TOKEN";
        *why_out = "required: 32 to 512 characters without spaces";
        return BV_ECONFIG;
    }
    if (s->timeout_ms < 100 || s->timeout_ms > 120000) {
        *bad_setting_out = "BOVEDA_CORE_TIMEOUT_MS";
        *why_out = "must be between 100 and 120000";
        return BV_ECONFIG;
    }
    if (s->ca_file != NULL && s->ca_file[0] != '\0') {
        X509_STORE *st = X509_STORE_new();
        int ok = st != NULL && access(s->ca_file, R_OK) == 0 && X509_STORE_load_file(st, s->ca_file) == 1;
        X509_STORE_free(st);
        if (!ok) {
            *bad_setting_out = "BOVEDA_CORE_CA_FILE";
            *why_out = "must be a readable PEM file of CA certificates";
            return BV_ECONFIG;
        }
    }
    return 0;
}

/* ---- error mapping ---- */

int core_code_of_slug(const char *slug)
{
#define SLUG_CASE(name, status, s, title) \
    if (strcmp(slug, s) == 0)             \
        return name;
    BV_ERRORS(SLUG_CASE)
#undef SLUG_CASE
    return 0;
}

/* The 4xx answers the contract defines: a definitive answer about the request. */
static bool contract_code(int code)
{
    switch (code) {
    case BV_ENOTFOUND:
    case BV_EINVALID:
    case BV_EMALFORMED:
    case BV_EIDEMPOTENCY:
    case BV_EINSUFFICIENT_FUNDS:
    case BV_EACCOUNT_FROZEN:
    case BV_EACCOUNT_CLOSED:
    case BV_ECURRENCY_MISMATCH:
    case BV_ESAME_ACCOUNT:
    case BV_EAMOUNT:
    case BV_EUNKNOWN_ACCOUNT:
    case BV_EEXPIRED:
    case BV_ELIMIT:
        return true;
    default:
        return false;
    }
}

int core_http_status_to_code(long status, const char *body, size_t len)
{
    json_t *root = NULL;
    int code = BV_EUPSTREAM;
    if (status >= 200 && status < 300)
        return 0;
    if (status < 400 || status >= 500 || body == NULL)
        return BV_EUPSTREAM;
    root = json_loadb(body, len, 0, NULL);
    const char *type = json_string_value(json_object_get(root, "type"));
    size_t base = strlen(BV_PROBLEM_BASE);
    if (type != NULL && strncmp(type, BV_PROBLEM_BASE, base) == 0) {
        int c = core_code_of_slug(type + base);
        if (c != 0 && contract_code(c) && bv_err_status(c) == status)
            code = c == BV_EMALFORMED ? BV_EINVALID : c;
    }
    json_decref(root);
    return code;
}

/* ---- transport ---- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

typedef struct {
    bv_buf_t body;
    bool too_large;
} response_t;

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    response_t *r = arg;
    size_t len = size * n;
    if (r->body.len + len > RESPONSE_MAX) {
        r->too_large = true;
        return 0; /* aborts the transfer */
    }
    return bv_buf_append(&r->body, p, len) == 0 ? len : 0;
}

/* Adds BOVEDA_CORE_CA_FILE to the trust store curl set up (the system's), for this
 * connection's TLS context only. */
static CURLcode on_ssl_ctx(CURL *h, void *ssl_ctx, void *arg)
{
    (void)h;
    http_t *c = arg;
    X509_STORE *st = SSL_CTX_get_cert_store((SSL_CTX *)ssl_ctx);
    if (st == NULL || X509_STORE_load_file(st, c->ca_file) != 1)
        return CURLE_SSL_CACERT_BADFILE;
    return CURLE_OK;
}

static CURL *handle_get(http_t *c)
{
    CURL *h = NULL;
    pthread_mutex_lock(&c->mu);
    if (c->n_idle > 0)
        h = c->idle[--c->n_idle];
    pthread_mutex_unlock(&c->mu);
    if (h == NULL)
        h = curl_easy_init();
    else
        curl_easy_reset(h); /* keeps the connection cache */
    return h;
}

static void handle_put(http_t *c, CURL *h)
{
    pthread_mutex_lock(&c->mu);
    if (c->n_idle < POOL_MAX) {
        c->idle[c->n_idle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    if (h != NULL)
        curl_easy_cleanup(h);
}

/* One exchange. `path` is appended to the base URL (already escaped). Returns 0 with the
 * HTTP status and body, or BV_ETIMEOUT / BV_EUPSTREAM / BV_ENOMEM. */
static int exchange(http_t *c, const char *method, const char *path, const char *json_body, long *status_out,
                    bv_buf_t *body_out)
{
    CURL *h = NULL;
    struct curl_slist *hdrs = NULL;
    response_t r = {0};
    char *url = NULL;
    int rc = BV_ENOMEM;
    CURLcode cc;

    *status_out = 0;
    if ((h = handle_get(c)) == NULL)
        goto out;
    size_t ulen = strlen(c->base) + strlen(path) + 1;
    if ((url = malloc(ulen)) == NULL)
        goto out;
    snprintf(url, ulen, "%s%s", c->base, path);
    hdrs = curl_slist_append(hdrs, c->auth_header);
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    if (json_body != NULL)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:"); /* no 100-continue round trip */
    if (hdrs == NULL)
        goto out;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    if (c->ca_file != NULL) {
        curl_easy_setopt(h, CURLOPT_CA_CACHE_TIMEOUT, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
        curl_easy_setopt(h, CURLOPT_SSL_CTX_DATA, c);
    }
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, json_body != NULL ? json_body : "");
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    cc = curl_easy_perform(h);
    if (cc == CURLE_OPERATION_TIMEDOUT) {
        rc = BV_ETIMEOUT;
        bv_log_warn("core request timed out", "\"method\":\"%s\",\"timeout_ms\":%ld", method, c->timeout_ms);
        goto out;
    }
    if (cc != CURLE_OK) {
        rc = r.too_large ? BV_EUPSTREAM : (cc == CURLE_OUT_OF_MEMORY ? BV_ENOMEM : BV_EUPSTREAM);
        bv_log_warn("core request failed", "\"method\":\"%s\",\"error\":\"%s\"", method,
                    curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status_out);
    *body_out = r.body;
    r.body = (bv_buf_t){0};
    rc = 0;
out:
    if (h != NULL) {
        /* a handle whose exchange failed may hold a broken connection: do not reuse it */
        if (rc == 0)
            handle_put(c, h);
        else
            curl_easy_cleanup(h);
    }
    curl_slist_free_all(hdrs);
    free(url);
    bv_buf_free(&r.body);
    return rc;
}

/* An exchange whose 2xx answer is a JSON document: 0 with *root_out (decref it) and the
 * status, or the mapped error code. */
static int call_json(http_t *c, const char *method, const char *path, const char *json_body, long *status_out,
                     json_t **root_out)
{
    bv_buf_t body = {0};
    long status = 0;
    *root_out = NULL;
    int rc = exchange(c, method, path, json_body, &status, &body);
    if (rc != 0)
        return rc;
    if (status_out != NULL)
        *status_out = status;
    rc = core_http_status_to_code(status, body.data, body.len);
    if (rc == 0 && (*root_out = json_loadb(body.data != NULL ? body.data : "", body.len, 0, NULL)) == NULL)
        rc = BV_EUPSTREAM;
    if (rc == BV_EUPSTREAM)
        bv_log_warn("core answer rejected", "\"method\":\"%s\",\"status\":%ld", method, status);
    bv_buf_free(&body);
    return rc;
}

/* Path segment / query value escaping (RFC 3986 unreserved kept). */
static char *escape(const char *s)
{
    CURL *h = curl_easy_init();
    char *e = h != NULL ? curl_easy_escape(h, s, 0) : NULL;
    char *out = e != NULL ? strdup(e) : NULL;
    curl_free(e);
    curl_easy_cleanup(h);
    return out;
}

/* ---- the adapter ---- */

static int h_accounts_of(void *cls, const char *customer_id, bv_ledger_account_t **items_out, size_t *n_out)
{
    http_t *c = cls;
    char path[128];
    json_t *root = NULL;
    bv_ledger_account_t *items = NULL;
    snprintf(path, sizeof(path), "/core/v1/customers/%s/accounts", customer_id); /* a valid UUID */
    int rc = call_json(c, "GET", path, NULL, NULL, &root);
    if (rc != 0)
        return rc;
    json_t *arr = json_object_get(root, "items");
    size_t n = json_array_size(arr);
    rc = BV_EUPSTREAM;
    if (!json_is_array(arr))
        goto out;
    if (n > 0 && (items = calloc(n, sizeof(*items))) == NULL) {
        rc = BV_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (core_account_from_json(json_array_get(arr, i), &items[i]) != 0)
            goto out;
    *items_out = items;
    *n_out = n;
    items = NULL;
    rc = 0;
out:
    free(items);
    json_decref(root);
    return rc;
}

static int account_at(http_t *c, const char *path, bv_ledger_account_t *out)
{
    json_t *root = NULL;
    int rc = call_json(c, "GET", path, NULL, NULL, &root);
    if (rc == 0)
        rc = core_account_from_json(root, out);
    json_decref(root);
    return rc;
}

static int h_account_get(void *cls, const char *account_id, bv_ledger_account_t *out)
{
    char path[128];
    snprintf(path, sizeof(path), "/core/v1/accounts/%s", account_id); /* a valid UUID */
    return account_at(cls, path, out);
}

static int h_account_by_number(void *cls, const char *number, bv_ledger_account_t *out)
{
    char path[128];
    snprintf(path, sizeof(path), "/core/v1/accounts?number=%s", number); /* 16 digits */
    return account_at(cls, path, out);
}

static int h_movements(void *cls, const char *account_id, int64_t from, int64_t to, int64_t before,
                       size_t limit, bv_ledger_movement_t *items, size_t *n_out, int64_t *next_cursor_out)
{
    http_t *c = cls;
    bv_buf_t path = {0};
    json_t *root = NULL;
    char t[32];
    int rc = bv_buf_printf(&path, "/core/v1/accounts/%s/movements?limit=%zu", account_id, limit);
    if (from > 0)
        bv_time_format(from, t), rc |= bv_buf_printf(&path, "&from=%s", t);
    if (to > 0)
        bv_time_format(to, t), rc |= bv_buf_printf(&path, "&to=%s", t);
    if (before > 0)
        rc |= bv_buf_printf(&path, "&cursor=%lld", (long long)before);
    if (rc != 0) {
        rc = BV_ENOMEM;
        goto out;
    }
    if ((rc = call_json(c, "GET", path.data, NULL, NULL, &root)) != 0)
        goto out;
    rc = BV_EUPSTREAM;
    json_t *arr = json_object_get(root, "items");
    const char *currency = json_string_value(json_object_get(root, "currency"));
    int exponent = currency != NULL ? bv_ledger_currency_exponent(currency) : -1;
    if (!json_is_array(arr) || json_array_size(arr) > limit || exponent < 0)
        goto out;
    for (size_t i = 0; i < json_array_size(arr); i++)
        if (core_movement_from_json(json_array_get(arr, i), exponent, &items[i]) != 0)
            goto out;
    json_t *next = json_object_get(root, "next_cursor");
    int64_t cursor = 0;
    if (json_is_string(next)) {
        char *end;
        cursor = strtoll(json_string_value(next), &end, 10);
        if (*end != '\0' || cursor <= 0)
            goto out;
    } else if (next != NULL && !json_is_null(next)) {
        goto out;
    }
    *n_out = json_array_size(arr);
    *next_cursor_out = cursor;
    rc = 0;
out:
    json_decref(root);
    bv_buf_free(&path);
    return rc;
}

static int h_statement(void *cls, const char *account_id, int64_t from, int64_t to,
                       bv_ledger_statement_t *out)
{
    http_t *c = cls;
    char path[200], f[32], t[32];
    json_t *root = NULL;
    bv_time_format(from, f);
    bv_time_format(to, t);
    snprintf(path, sizeof(path), "/core/v1/accounts/%s/statement?from=%s&to=%s", account_id, f, t);
    int rc = call_json(c, "GET", path, NULL, NULL, &root);
    if (rc == BV_EINVALID)
        rc = BV_ETOOLARGE; /* from < to was checked: the core's 400 is the range-too-large answer */
    if (rc != 0)
        goto out;
    rc = BV_EUPSTREAM;
    if (core_account_from_json(json_object_get(root, "account"), &out->account) != 0)
        goto out;
    int e = out->account.exponent;
    json_t *arr = json_object_get(root, "movements");
    const char *names[] = {"opening_balance", "closing_balance", "total_credits", "total_debits"};
    int64_t *dst[] = {&out->opening, &out->closing, &out->total_credits, &out->total_debits};
    for (int i = 0; i < 4; i++) {
        const char *v = json_string_value(json_object_get(root, names[i]));
        if (v == NULL || bv_ledger_amount_parse(v, e, true, dst[i]) != 0)
            goto out;
    }
    if (!json_is_array(arr) || json_array_size(arr) > BV_LEDGER_STATEMENT_MAX)
        goto out;
    out->from = from;
    out->to = to;
    out->n_items = json_array_size(arr);
    if (out->n_items > 0 && (out->items = calloc(out->n_items, sizeof(*out->items))) == NULL) {
        rc = BV_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < out->n_items; i++)
        if (core_movement_from_json(json_array_get(arr, i), e, &out->items[i]) != 0)
            goto out;
    rc = 0;
out:
    if (rc != 0)
        bv_ledger_statement_free(out), memset(out, 0, sizeof(*out));
    json_decref(root);
    return rc;
}

static int h_execute(void *cls, const bv_core_transfer_req_t *req, bv_ledger_transfer_t *out,
                     bool *replayed_out)
{
    http_t *c = cls;
    char amount[BV_LEDGER_AMOUNT_MAX], deadline[32];
    json_t *body = NULL, *root = NULL;
    char *text = NULL;
    long status = 0;
    int rc = BV_ENOMEM;
    int e = bv_ledger_currency_exponent(req->currency);
    if (e < 0)
        return BV_EINVALID;
    bv_ledger_amount_format(req->amount, e, amount);
    bv_time_format(req->deadline_us > 0 ? req->deadline_us : bv_now_us() + (int64_t)c->timeout_ms * 1000, deadline);
    body = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s?,s:s}", "reference", req->reference, "debit_account",
                     req->debit_account, "credit_account", req->credit_account, "amount", amount, "currency",
                     req->currency, "description", req->description, "deadline", deadline);
    if (body == NULL || (text = bv_json_dump(body)) == NULL)
        goto out;
    rc = call_json(c, "POST", "/core/v1/transfers", text, &status, &root);
    if (rc == BV_EEXPIRED) {
        /* we were still waiting, so the core's clock is ahead of ours: nothing moved, retry */
        bv_log_warn("core refused an unexpired deadline: clocks differ?", "\"deadline\":\"%s\"", deadline);
        rc = BV_EUPSTREAM;
    }
    if (rc != 0)
        goto out;
    if ((status != 200 && status != 201) || core_transfer_from_json(root, out) != 0 ||
        strcmp(out->reference, req->reference) != 0) {
        rc = BV_EUPSTREAM;
        goto out;
    }
    *replayed_out = status == 200;
out:
    free(text);
    json_decref(body);
    json_decref(root);
    return rc;
}

static int h_lookup(void *cls, const char *reference, bv_ledger_transfer_t *out)
{
    http_t *c = cls;
    json_t *root = NULL;
    bv_buf_t path = {0};
    char *ref = escape(reference);
    int rc = BV_ENOMEM;
    if (ref == NULL || bv_buf_printf(&path, "/core/v1/transfers?reference=%s", ref) != 0)
        goto out;
    if ((rc = call_json(c, "GET", path.data, NULL, NULL, &root)) != 0)
        goto out;
    if (core_transfer_from_json(root, out) != 0 || strcmp(out->reference, reference) != 0)
        rc = BV_EUPSTREAM;
out:
    free(ref);
    bv_buf_free(&path);
    json_decref(root);
    return rc;
}

static void h_close(void *cls)
{
    http_t *c = cls;
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n_idle; i++)
        curl_easy_cleanup(c->idle[i]);
    pthread_mutex_destroy(&c->mu);
    if (c->auth_header != NULL) {
        OPENSSL_cleanse(c->auth_header, strlen(c->auth_header));
        free(c->auth_header);
    }
    free(c->base);
    free(c->ca_file);
    free(c);
}

static const core_ops_t http_ops = {
    .name = "http",
    .accounts_of = h_accounts_of,
    .account_get = h_account_get,
    .account_by_number = h_account_by_number,
    .movements = h_movements,
    .statement = h_statement,
    .transfer_execute = h_execute,
    .transfer_lookup = h_lookup,
    .close = h_close,
};

int core_http_open(const core_http_settings_t *s, bv_core_t **out)
{
    bv_core_t *core = NULL;
    http_t *c = NULL;
    const char *bad, *why;
    *out = NULL;
    if (core_http_settings_check(s, &bad, &why) != 0)
        return BV_ECONFIG;
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return BV_EINTERNAL;
    if ((core = calloc(1, sizeof(*core))) == NULL || (c = calloc(1, sizeof(*c))) == NULL)
        goto fail;
    pthread_mutex_init(&c->mu, NULL);
    size_t n = strlen(s->token) + 32;
    if ((c->base = strdup(s->url)) == NULL || (c->auth_header = malloc(n)) == NULL)
        goto fail;
    snprintf(c->auth_header, n, "Authorization: Bearer %s", s->token);
    size_t blen = strlen(c->base);
    while (blen > 0 && c->base[blen - 1] == '/')
        c->base[--blen] = '\0';
    if (s->ca_file != NULL && s->ca_file[0] != '\0' && (c->ca_file = strdup(s->ca_file)) == NULL)
        goto fail;
    c->timeout_ms = (long)s->timeout_ms;
    core->ops = &http_ops;
    core->cls = c;
    *out = core;
    return 0;
fail:
    h_close(c);
    free(core);
    return BV_ENOMEM;
}
