/* `boveda core`: the ledger of its own data directory served over the core contract
 * (docs/core-contract.md), for deployments that keep the core apart and for fault-injection
 * tests of the transfer worker.
 *
 *   GET  /core/v1/customers/{customer_id}/accounts
 *   GET  /core/v1/accounts?number=NNNN
 *   GET  /core/v1/accounts/{id}
 *   GET  /core/v1/accounts/{id}/movements?from=&to=&cursor=&limit=
 *   GET  /core/v1/accounts/{id}/statement?from=&to=
 *   POST /core/v1/transfers
 *   GET  /core/v1/transfers?reference=R
 *
 * Authentication: `Authorization: Bearer $BOVEDA_CORE_TOKEN` (scope "core"); the admin
 * token also reaches /metrics and the ledger's back-office routes. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "base/log.h"
#include "core/internal.h"

#define CORE_TOKEN_MIN 32

typedef struct {
    bv_core_t *core; /* the builtin adapter over this process's ledger */
    core_faults_t faults;
    char *token;
    _Atomic uint64_t n_delay, n_error, n_timeout, n_crash;
} server_t;

static server_t g_srv;

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void reply_buf(bv_call_t *c, int status, bv_buf_t *b)
{
    bv_reply_raw(c, status, "application/json", b->data, b->len);
    bv_buf_free(b);
}

static void reply_error(bv_call_t *c, int rc, const char *field)
{
    const char *detail = NULL;
    if (rc == BV_EUNKNOWN_ACCOUNT)
        detail = "no such account";
    else if (rc == BV_EIDEMPOTENCY)
        detail = "this reference was used for a different transfer", field = "reference";
    else if (rc == BV_EAMOUNT)
        field = "amount";
    else if (rc == BV_ECURRENCY_MISMATCH)
        field = "currency";
    if (rc == BV_ENOTFOUND)
        field = NULL;
    if (bv_err_status(rc) >= 500)
        bv_log(BV_LOG_ERROR, c->request_id, "core request failed", "\"error\":\"%s\"", bv_err_name(rc));
    bv_reply_problem(c, rc, detail, field);
}

/* Delay and error faults of a request; returns non-zero when it answered 503. */
static int faults_before_or_reply(bv_call_t *c, const char *what)
{
    server_t *s = &g_srv;
    if (!s->faults.any)
        return 0;
    if (core_faults_draw(s->faults.delay_ppm)) {
        s->n_delay++;
        bv_log(BV_LOG_WARN, c->request_id, "fault injected",
               "\"fault\":\"delay\",\"route\":\"%s\",\"ms\":%lld", what, (long long)s->faults.delay_ms);
        sleep_ms(s->faults.delay_ms);
    }
    if (core_faults_draw(s->faults.error_ppm)) {
        s->n_error++;
        bv_log(BV_LOG_WARN, c->request_id, "fault injected", "\"fault\":\"error\",\"route\":\"%s\"", what);
        bv_reply_problem(c, BV_EUNAVAILABLE, "injected fault", NULL);
        return 1;
    }
    return 0;
}

/* Faults after the ledger committed (or replayed) a transfer: die before replying, or
 * hold the reply past the client's timeout. */
static void faults_after_commit(bv_call_t *c, const char *reference)
{
    server_t *s = &g_srv;
    char ref[2 * BV_LEDGER_REF_MAX];
    if (!s->faults.any)
        return;
    bv_json_escape(ref, sizeof(ref), reference);
    if (core_faults_draw(s->faults.crash_ppm)) {
        s->n_crash++;
        bv_log(BV_LOG_WARN, c->request_id, "fault injected",
               "\"fault\":\"crash_after_commit\",\"reference\":\"%s\"", ref);
        _exit(137); /* as abrupt as SIGKILL: no reply, no clean-up (the commit is durable) */
    }
    if (core_faults_draw(s->faults.timeout_ppm)) {
        s->n_timeout++;
        bv_log(BV_LOG_WARN, c->request_id, "fault injected",
               "\"fault\":\"timeout\",\"reference\":\"%s\",\"ms\":%lld", ref,
               (long long)s->faults.timeout_ms);
        sleep_ms(s->faults.timeout_ms);
    }
}

/* ---- accounts ---- */

static void reply_account(bv_call_t *c, const bv_ledger_account_t *a)
{
    bv_buf_t b = {0};
    if (bv_ledger_account_json(&b, a, 0) != 0) {
        bv_buf_free(&b);
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        return;
    }
    reply_buf(c, 200, &b);
}

static void on_customer_accounts(bv_call_t *c)
{
    bv_ledger_account_t *items = NULL;
    size_t n = 0;
    bv_buf_t b = {0};
    const char *customer = bv_call_param(c, "customer_id");
    if (!bv_uuid_valid(customer)) {
        bv_reply_problem(c, BV_EINVALID, "customer_id must be a UUID", "customer_id");
        return;
    }
    int rc = bv_core_accounts_of(g_srv.core, customer, &items, &n);
    if (rc != 0) {
        reply_error(c, rc, NULL);
        return;
    }
    rc = bv_buf_puts(&b, "{\"items\":[");
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (i > 0)
            rc |= bv_buf_puts(&b, ",");
        rc |= bv_ledger_account_json(&b, &items[i], 0);
    }
    rc |= bv_buf_puts(&b, "]}");
    free(items);
    if (rc != 0) {
        bv_buf_free(&b);
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        return;
    }
    reply_buf(c, 200, &b);
}

static void on_account_by_number(bv_call_t *c)
{
    bv_ledger_account_t a;
    const char *number = bv_call_query(c, "number");
    if (number == NULL || !bv_ledger_number_valid(number)) {
        bv_reply_problem(c, BV_EINVALID, "number must be a 16-digit account number", "number");
        return;
    }
    if (faults_before_or_reply(c, "account-by-number") != 0)
        return;
    int rc = bv_core_account_by_number(g_srv.core, number, &a);
    if (rc != 0)
        reply_error(c, rc, NULL);
    else
        reply_account(c, &a);
}

static void on_account(bv_call_t *c)
{
    bv_ledger_account_t a;
    int rc = bv_core_account_get(g_srv.core, bv_call_param(c, "id"), &a);
    if (rc != 0)
        reply_error(c, rc, NULL);
    else
        reply_account(c, &a);
}

static void on_movements(bv_call_t *c)
{
    int64_t limit, from, to, before = 0, next = 0;
    bv_ledger_movement_t *items = NULL;
    bv_ledger_account_t a;
    size_t n = 0;
    bv_buf_t b = {0};
    int rc;
    if (bv_call_query_int_or_reply(c, "limit", 20, 1, BV_LEDGER_PAGE_MAX, &limit) != 0 ||
        bv_call_query_time_or_reply(c, "from", &from) != 0 || bv_call_query_time_or_reply(c, "to", &to) != 0)
        return;
    if (bv_call_query_int_or_reply(c, "cursor", 0, 1, INT64_MAX, &before) != 0)
        return;
    if ((rc = bv_core_account_get(g_srv.core, bv_call_param(c, "id"), &a)) != 0) {
        reply_error(c, rc, NULL);
        return;
    }
    if ((items = malloc((size_t)limit * sizeof(*items))) == NULL) {
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        return;
    }
    if ((rc = bv_core_movements(g_srv.core, a.id, from, to, before, (size_t)limit, items, &n, &next)) != 0) {
        reply_error(c, rc, NULL);
        goto out;
    }
    rc = bv_buf_printf(&b, "{\"account_id\":\"%s\",\"currency\":\"%s\",", a.id, a.currency);
    rc |= bv_ledger_movement_page_json(&b, items, n, a.exponent, next);
    rc |= bv_buf_puts(&b, "}");
    if (rc != 0) {
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        goto out;
    }
    reply_buf(c, 200, &b);
out:
    bv_buf_free(&b);
    free(items);
}

static void on_statement(bv_call_t *c)
{
    int64_t from, to;
    bv_ledger_statement_t st;
    char open[BV_LEDGER_AMOUNT_MAX], close[BV_LEDGER_AMOUNT_MAX], cr[BV_LEDGER_AMOUNT_MAX],
        db[BV_LEDGER_AMOUNT_MAX];
    bv_buf_t b = {0};
    int rc;
    if (bv_call_query_time_or_reply(c, "from", &from) != 0 || bv_call_query_time_or_reply(c, "to", &to) != 0)
        return;
    if (from == 0 || to == 0 || from >= to) {
        bv_reply_problem(c, BV_EINVALID, "from and to are required and from must be before to",
                         from == 0 ? "from" : "to");
        return;
    }
    rc = bv_core_statement(g_srv.core, bv_call_param(c, "id"), from, to, &st);
    if (rc == BV_ETOOLARGE) {
        bv_reply_problem(c, BV_EINVALID, "too many movements in this range; ask for a shorter one", "to");
        return;
    }
    if (rc != 0) {
        reply_error(c, rc, NULL);
        return;
    }
    int e = st.account.exponent;
    bv_ledger_amount_format(st.opening, e, open);
    bv_ledger_amount_format(st.closing, e, close);
    bv_ledger_amount_format(st.total_credits, e, cr);
    bv_ledger_amount_format(st.total_debits, e, db);
    rc = bv_buf_puts(&b, "{\"account\":");
    rc |= bv_ledger_account_json(&b, &st.account, 0);
    rc |= bv_buf_puts(&b, ",\"from\":");
    rc |= bv_buf_json_time(&b, st.from);
    rc |= bv_buf_puts(&b, ",\"to\":");
    rc |= bv_buf_json_time(&b, st.to);
    rc |= bv_buf_printf(&b,
                        ",\"currency\":\"%s\",\"opening_balance\":\"%s\",\"closing_balance\":\"%s\","
                        "\"total_credits\":\"%s\",\"total_debits\":\"%s\",\"count\":%zu,\"movements\":[",
                        st.account.currency, open, close, cr, db, st.n_items);
    for (size_t i = 0; i < st.n_items && rc == 0; i++) {
        if (i > 0)
            rc |= bv_buf_puts(&b, ",");
        rc |= bv_ledger_movement_json(&b, &st.items[i], e);
    }
    rc |= bv_buf_puts(&b, "]}");
    bv_ledger_statement_free(&st);
    if (rc != 0) {
        bv_buf_free(&b);
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        return;
    }
    reply_buf(c, 200, &b);
}

/* ---- transfers ---- */

typedef struct {
    const char *reference, *debit_account, *credit_account, *amount, *currency, *description, *deadline;
} xfer_body_t;

static const bv_json_field_t xfer_spec[] = {
    {"reference", BV_JSON_STRING, BV_JSON_REQUIRED, 1, BV_LEDGER_REF_MAX, offsetof(xfer_body_t, reference),
     NULL},
    {"debit_account", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 64, offsetof(xfer_body_t, debit_account), NULL},
    {"credit_account", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 64, offsetof(xfer_body_t, credit_account), NULL},
    {"amount", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 40, offsetof(xfer_body_t, amount), NULL},
    {"currency", BV_JSON_STRING, BV_JSON_REQUIRED, 3, 3, offsetof(xfer_body_t, currency), NULL},
    {"description", BV_JSON_STRING, BV_JSON_NULLABLE, 0, BV_LEDGER_DESC_MAX,
     offsetof(xfer_body_t, description), NULL},
    {"deadline", BV_JSON_STRING, BV_JSON_NULLABLE, 1, 64, offsetof(xfer_body_t, deadline), NULL},
    BV_JSON_END,
};

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
    reply_buf(c, status, &b);
}

static void on_execute(bv_call_t *c)
{
    xfer_body_t body = {0};
    json_t *root = NULL;
    bv_ledger_transfer_t t;
    char actor[300];
    int64_t amount = 0, deadline = 0;
    bool replayed = false;
    int exponent, rc;

    if (bv_call_decode_json_or_reply(c, xfer_spec, &body, &root) != 0)
        return;
    if ((exponent = bv_ledger_currency_exponent(body.currency)) < 0) {
        bv_reply_problem(c, BV_EINVALID, "currency is not a supported ISO 4217 code", "currency");
        goto out;
    }
    if ((rc = bv_ledger_amount_parse(body.amount, exponent, false, &amount)) != 0 || amount <= 0) {
        bv_reply_problem(c, rc == BV_EINVALID ? BV_EINVALID : BV_EAMOUNT,
                         "amount must be a positive decimal string in the currency's precision", "amount");
        goto out;
    }
    if (body.deadline != NULL && (bv_time_parse(body.deadline, &deadline) != 0 || deadline <= 0)) {
        bv_reply_problem(c, BV_EINVALID, "deadline must be an RFC 3339 time", "deadline");
        goto out;
    }
    if (faults_before_or_reply(c, "execute") != 0)
        goto out;
    /* The deadline is checked at the last moment before the engine: a request past it moves
     * nothing, so a caller that timed out can wait past its last deadline, look the
     * reference up and trust a 404. A reference that already exists is no new movement:
     * the engine answers it (replay or idempotency-key-reused) whatever the deadline. */
    if (deadline != 0 && bv_now_us() >= deadline) {
        rc = bv_core_transfer_lookup(g_srv.core, body.reference, &t);
        if (rc == BV_ENOTFOUND) {
            bv_log(BV_LOG_INFO, c->request_id, "transfer refused: deadline passed", NULL);
            bv_reply_problem(c, BV_EEXPIRED, "the deadline passed before the transfer was executed",
                             "deadline");
            goto out;
        }
        if (rc != 0) {
            reply_error(c, rc, NULL);
            goto out;
        }
    }
    bv_principal_actor(&c->principal, actor, sizeof(actor));
    bv_core_transfer_req_t req = {
        .reference = body.reference,
        .debit_account = body.debit_account,
        .credit_account = body.credit_account,
        .amount = amount,
        .currency = body.currency,
        .description = body.description,
        .actor = actor,
        .request_id = c->request_id[0] != '\0' ? c->request_id : NULL,
    };
    rc = bv_core_transfer_execute(g_srv.core, &req, &t, &replayed);
    if (rc != 0) {
        reply_error(c, rc, NULL);
        goto out;
    }
    faults_after_commit(c, body.reference);
    reply_transfer(c, replayed ? 200 : 201, &t, replayed);
out:
    json_decref(root);
}

static void on_lookup(bv_call_t *c)
{
    bv_ledger_transfer_t t;
    const char *ref = bv_call_query(c, "reference");
    if (ref == NULL || ref[0] == '\0' || strlen(ref) > BV_LEDGER_REF_MAX) {
        bv_reply_problem(c, BV_EINVALID, "reference is required (1 to 128 bytes)", "reference");
        return;
    }
    if (faults_before_or_reply(c, "lookup") != 0)
        return;
    int rc = bv_core_transfer_lookup(g_srv.core, ref, &t);
    if (rc != 0)
        reply_error(c, rc, NULL);
    else
        reply_transfer(c, 200, &t, false);
}

static const bv_route_t routes[] = {
    {"GET", "/core/v1/customers/{customer_id}/accounts", on_customer_accounts, "core", 0, 0, NULL},
    {"GET", "/core/v1/accounts", on_account_by_number, "core", 0, 0, NULL},
    {"GET", "/core/v1/accounts/{id}", on_account, "core", 0, 0, NULL},
    {"GET", "/core/v1/accounts/{id}/movements", on_movements, "core", 0, 0, NULL},
    {"GET", "/core/v1/accounts/{id}/statement", on_statement, "core", 0, 0, NULL},
    {"POST", "/core/v1/transfers", on_execute, "core", 4096, 0, NULL},
    {"GET", "/core/v1/transfers", on_lookup, "core", 0, 0, NULL},
};

/* ---- authentication and metrics ---- */

static int core_authenticate(void *cls, const char *token, size_t len, bv_principal_t *out)
{
    server_t *s = cls;
    if (!bv_ct_equal(token, len, s->token, strlen(s->token)))
        return BV_ENOTFOUND; /* maybe the admin token: the next authenticator decides */
    memset(out, 0, sizeof(*out));
    out->kind = BV_PRINCIPAL_CLIENT;
    snprintf(out->subject, sizeof(out->subject), "core");
    snprintf(out->client_id, sizeof(out->client_id), "core");
    snprintf(out->scopes, sizeof(out->scopes), "core");
    return 0;
}

static void render_metrics(void *cls, bv_buf_t *out)
{
    server_t *s = cls;
    bv_buf_printf(out,
                  "# HELP boveda_core_faults_injected_total Faults injected by BOVEDA_CORE_FAULTS.\n"
                  "# TYPE boveda_core_faults_injected_total counter\n"
                  "boveda_core_faults_injected_total{fault=\"delay\"} %llu\n"
                  "boveda_core_faults_injected_total{fault=\"error\"} %llu\n"
                  "boveda_core_faults_injected_total{fault=\"timeout\"} %llu\n"
                  "boveda_core_faults_injected_total{fault=\"crash_after_commit\"} %llu\n",
                  (unsigned long long)s->n_delay, (unsigned long long)s->n_error,
                  (unsigned long long)s->n_timeout, (unsigned long long)s->n_crash);
}

/* ---- the command ---- */

static const char *const core_modules[] = {"ops", "keys", "audit", "ledger", "core", NULL};

int bv_core_serve_main(bv_config_t *cfg, int argc, char **argv)
{
    bv_app_t app;
    sigset_t set;
    int sig = 0, rc, status = 1;
    char err[256];
    const char *token = bv_config_str(cfg, "CORE_TOKEN");
    const char *faults = bv_config_str(cfg, "CORE_FAULTS");

    if (argc > 1) {
        fprintf(stderr, "usage: boveda core (unexpected argument '%s')\n", argv[1]);
        return 2;
    }
    memset(&app, 0, sizeof(app));
    if (token == NULL || strlen(token) < CORE_TOKEN_MIN) {
        bv_log_error("invalid setting",
                     "\"setting\":\"BOVEDA_CORE_TOKEN\",\"reason\":\"required, at least 32 "
                     "characters\"");
        return 2;
    }
    if (core_faults_parse(faults, &g_srv.faults, err, sizeof(err)) != 0) {
        char esc[512];
        bv_json_escape(esc, sizeof(esc), err);
        bv_log_error("invalid setting", "\"setting\":\"BOVEDA_CORE_FAULTS\",\"reason\":\"%s\"", esc);
        return 2;
    }
    core_faults_seed(g_srv.faults.seed);
    if ((g_srv.token = strdup(token)) == NULL)
        return 1;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    core_server_mode(true);
    if ((rc = bv_app_open_modules(&app, cfg, 1, core_modules)) != 0)
        goto out;
    g_srv.core = bv_core_instance();
    bv_authenticator_t auth = {"core-token", core_authenticate, &g_srv};
    if ((rc = bv_http_add_authenticator(app.http, &auth)) != 0 ||
        (rc = bv_http_add_routes(app.http, routes, sizeof(routes) / sizeof(routes[0]), &g_srv)) != 0 ||
        (rc = bv_http_add_metrics(app.http, render_metrics, &g_srv)) != 0 ||
        (rc = bv_http_start(app.http)) != 0)
        goto out;
    if (g_srv.faults.any)
        bv_log_warn(
            "fault injection on", "\"delay_ppm\":%u,\"error_ppm\":%u,\"timeout_ppm\":%u,\"crash_ppm\":%u",
            g_srv.faults.delay_ppm, g_srv.faults.error_ppm, g_srv.faults.timeout_ppm, g_srv.faults.crash_ppm);
    bv_log_info("ready", "\"mode\":\"core\",\"data_dir\":\"%s\",\"version\":\"%s\"", cfg->data_dir,
                BOVEDA_VERSION);
    sigwait(&set, &sig);
    bv_log_info("signal received, shutting down", "\"signal\":\"%s\"", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    status = 0;
out:
    if (rc != 0)
        bv_log_error("start-up failed", "\"error\":\"%s\"", bv_err_name(rc));
    bv_app_close(&app);
    core_server_mode(false);
    g_srv.core = NULL;
    OPENSSL_cleanse(g_srv.token, strlen(g_srv.token));
    free(g_srv.token);
    g_srv.token = NULL;
    if (status == 0)
        bv_log_info("stopped", NULL);
    return status;
}
