/* Unit tests of the core port: settings validation of the http adapter, the fault-spec
 * parser, the mapping of the core's answers to BV_E codes, the contract's JSON round trip
 * and the builtin adapter over a real ledger. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/log.h"
#include "core/internal.h"
#include "store/store.h"

#define TOKEN32 "0123456789abcdef0123456789abcdef"

/* ---- settings ---- */

static void expect_bad(const core_http_settings_t *s, const char *setting)
{
    const char *bad = NULL, *why = NULL;
    assert_int_equal(core_http_settings_check(s, &bad, &why), BV_ECONFIG);
    assert_non_null(bad);
    assert_string_equal(bad, setting);
    assert_non_null(why);
}

static void test_settings(void **state)
{
    (void)state;
    const char *bad, *why;
    core_http_settings_t ok = {.url = "http://127.0.0.1:9000", .token = TOKEN32, .timeout_ms = 5000};
    assert_int_equal(core_http_settings_check(&ok, &bad, &why), 0);
    core_http_settings_t s = ok;
    s.url = "https://core.bank.example/base/";
    assert_int_equal(core_http_settings_check(&s, &bad, &why), 0);

    const char *bad_urls[] = {"",           "ftp://x",        "http://", "https:///x",
                              "http://a b", "http://h/x?y=1", "core:80", NULL};
    for (int i = 0; bad_urls[i] != NULL; i++) {
        s = ok;
        s.url = bad_urls[i];
        expect_bad(&s, "BOVEDA_CORE_URL");
    }
    s = ok;
    s.url = NULL;
    expect_bad(&s, "BOVEDA_CORE_URL");
    s = ok;
    s.token = "";
    expect_bad(&s, "BOVEDA_CORE_TOKEN");
    s.token = "0123456789abcdef0123456789abcde"; /* 31 */
    expect_bad(&s, "BOVEDA_CORE_TOKEN");
    s.token = "0123456789abcdef 123456789abcdef0";
    expect_bad(&s, "BOVEDA_CORE_TOKEN");
    s = ok;
    s.timeout_ms = 99;
    expect_bad(&s, "BOVEDA_CORE_TIMEOUT_MS");
    s.timeout_ms = 120001;
    expect_bad(&s, "BOVEDA_CORE_TIMEOUT_MS");
    s = ok;
    s.ca_file = "/nonexistent/ca.pem";
    expect_bad(&s, "BOVEDA_CORE_CA_FILE");
    /* a file that is not PEM */
    char path[] = "/tmp/bv-core-ca-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "not a certificate\n", 18), 18);
    close(fd);
    s.ca_file = path;
    expect_bad(&s, "BOVEDA_CORE_CA_FILE");
    unlink(path);
    s.ca_file = "";
    assert_int_equal(core_http_settings_check(&s, &bad, &why), 0);
}

static void test_open_http_validates(void **state)
{
    (void)state;
    bv_core_t *c = NULL;
    core_http_settings_t s = {.url = "http://127.0.0.1:9", .token = "short", .timeout_ms = 5000};
    assert_int_equal(core_http_open(&s, &c), BV_ECONFIG);
    assert_null(c);
    s.token = TOKEN32;
    assert_int_equal(core_http_open(&s, &c), 0);
    assert_string_equal(bv_core_adapter(c), "http");
    /* nothing listens on port 9: refused -> BV_EUPSTREAM, which is retryable */
    bv_ledger_transfer_t t;
    int rc = bv_core_transfer_lookup(c, "ref-1", &t);
    assert_int_equal(rc, BV_EUPSTREAM);
    assert_true(bv_core_retryable(rc));
    /* the port checks arguments before any exchange */
    bv_core_transfer_req_t req = {
        .reference = "", .debit_account = "a", .credit_account = "b", .amount = 1, .currency = "USD"};
    assert_int_equal(bv_core_transfer_execute(c, &req, &t, NULL), BV_EINVALID);
    req.reference = "r";
    req.amount = 0;
    assert_int_equal(bv_core_transfer_execute(c, &req, &t, NULL), BV_EAMOUNT);
    bv_ledger_account_t a;
    assert_int_equal(bv_core_account_get(c, "not-a-uuid", &a), BV_ENOTFOUND);
    assert_int_equal(bv_core_account_by_number(c, "1234", &a), BV_ENOTFOUND);
    bv_core_close(c);
}

/* bv_core_open picks the adapter from BOVEDA_CORE and validates its settings. */
static bv_config_t *load_config(const char *core, const char *url, const char *token)
{
    bv_config_t *cfg = NULL;
    char err[256];
    setenv("BOVEDA_CORE", core, 1);
    setenv("BOVEDA_CORE_URL", url, 1);
    setenv("BOVEDA_CORE_TOKEN", token, 1);
    assert_int_equal(bv_config_load(NULL, &cfg, err, sizeof(err)), 0);
    return cfg;
}

static void test_open_from_config(void **state)
{
    (void)state;
    bv_core_t *c = (bv_core_t *)1;
    bv_config_t *cfg = load_config("http", "http://127.0.0.1:9", TOKEN32);
    assert_int_equal(bv_core_open(cfg, NULL, &c), 0);
    assert_string_equal(bv_core_adapter(c), "http");
    bv_core_close(c);
    bv_config_free(cfg);
    cfg = load_config("http", "", TOKEN32);
    assert_int_equal(bv_core_open(cfg, NULL, &c), BV_ECONFIG);
    assert_null(c);
    bv_config_free(cfg);
    cfg = load_config("http", "http://127.0.0.1:9", "too-short");
    assert_int_equal(bv_core_open(cfg, NULL, &c), BV_ECONFIG);
    bv_config_free(cfg);
    /* builtin needs the ledger of this process */
    cfg = load_config("builtin", "", "");
    assert_int_equal(bv_core_open(cfg, NULL, &c), BV_ECONFIG);
    assert_null(bv_core_adapter(NULL));
    bv_config_free(cfg);
    unsetenv("BOVEDA_CORE");
    unsetenv("BOVEDA_CORE_URL");
    unsetenv("BOVEDA_CORE_TOKEN");
}

/* ---- faults ---- */

static void test_rate_parse(void **state)
{
    (void)state;
    struct {
        const char *s;
        uint32_t ppm;
    } ok[] = {{"0", 0},         {"1", 1000000},        {"0.5", 500000},      {"0.05", 50000}, {"0.000001", 1},
              {"1.0", 1000000}, {"1.000000", 1000000}, {"0.123456", 123456}, {"0.02", 20000}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint32_t v = 7;
        assert_int_equal(core_rate_parse(ok[i].s, &v), 0);
        assert_int_equal(v, ok[i].ppm);
    }
    const char *bad[] = {"",     "2",    "1.1", "1.000001", ".5",   "0.",   "0.0000001",
                         "-0.1", "0.5x", "0,5", "01",       "1e-3", " 0.1", NULL};
    for (int i = 0; bad[i] != NULL; i++) {
        uint32_t v;
        assert_int_equal(core_rate_parse(bad[i], &v), BV_EINVALID);
    }
}

static void test_faults_parse(void **state)
{
    (void)state;
    core_faults_t f;
    char err[256];
    assert_int_equal(core_faults_parse("", &f, err, sizeof(err)), 0);
    assert_false(f.any);
    assert_int_equal(core_faults_parse(NULL, &f, err, sizeof(err)), 0);
    assert_false(f.any);
    assert_int_equal(core_faults_parse("seed=42,delay_ms=50,delay_rate=0.2,error_rate=0.05,timeout_rate=0.05,"
                                       "timeout_ms=6000,crash_after_commit_rate=0.02",
                                       &f, err, sizeof(err)),
                     0);
    assert_true(f.any);
    assert_int_equal(f.seed, 42);
    assert_int_equal(f.delay_ms, 50);
    assert_int_equal(f.delay_ppm, 200000);
    assert_int_equal(f.error_ppm, 50000);
    assert_int_equal(f.timeout_ppm, 50000);
    assert_int_equal(f.timeout_ms, 6000);
    assert_int_equal(f.crash_ppm, 20000);
    assert_int_equal(core_faults_parse("error_rate=1", &f, err, sizeof(err)), 0);
    assert_int_equal(f.error_ppm, 1000000);

    struct {
        const char *spec, *mention;
    } bad[] = {
        {"colour=blue", "colour"},
        {"error_rate", "key=value"},
        {"=1", "key=value"},
        {"error_rate=", "key=value"},
        {"error_rate=2", "error_rate"},
        {"delay_ms=-5", "delay_ms"},
        {"delay_ms=1x", "delay_ms"},
        {"seed=abc", "seed"},
        {"timeout_rate=0.5", "timeout_ms"},
        {"delay_rate=0.5", "delay_ms"},
        {"crash_after_commit_rate=0.5,crash=1", "crash"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(core_faults_parse(bad[i].spec, &f, err, sizeof(err)), BV_EINVALID);
        if (strstr(err, bad[i].mention) == NULL)
            fail_msg("error for '%s' does not mention '%s': %s", bad[i].spec, bad[i].mention, err);
    }
}

static void test_faults_draw(void **state)
{
    (void)state;
    core_faults_seed(42);
    int hits = 0;
    for (int i = 0; i < 1000; i++) {
        assert_false(core_faults_draw(0));
        assert_true(core_faults_draw(1000000));
        hits += core_faults_draw(500000);
    }
    /* a fair coin 1000 times: far from 0 and from 1000 (the generator is seeded: fixed) */
    assert_true(hits > 400 && hits < 600);
    /* the same seed gives the same sequence */
    bool a[64], b[64];
    core_faults_seed(7);
    for (int i = 0; i < 64; i++)
        a[i] = core_faults_draw(300000);
    core_faults_seed(7);
    for (int i = 0; i < 64; i++)
        b[i] = core_faults_draw(300000);
    assert_memory_equal(a, b, sizeof(a));
}

/* ---- error mapping ---- */

static int map(long status, const char *body)
{
    return core_http_status_to_code(status, body, body ? strlen(body) : 0);
}

static void test_error_mapping(void **state)
{
    (void)state;
    char body[256];
#define PROBLEM(slug)                                                                                  \
    (snprintf(body, sizeof(body), "{\"type\":\"%s%s\",\"title\":\"x\",\"status\":0}", BV_PROBLEM_BASE, \
              slug),                                                                                   \
     body)
    assert_int_equal(map(200, "{}"), 0);
    assert_int_equal(map(201, "{}"), 0);
    assert_int_equal(map(422, PROBLEM("insufficient-funds")), BV_EINSUFFICIENT_FUNDS);
    assert_int_equal(map(422, PROBLEM("idempotency-key-reused")), BV_EIDEMPOTENCY);
    assert_int_equal(map(422, PROBLEM("unknown-account")), BV_EUNKNOWN_ACCOUNT);
    assert_int_equal(map(422, PROBLEM("account-frozen")), BV_EACCOUNT_FROZEN);
    assert_int_equal(map(422, PROBLEM("account-closed")), BV_EACCOUNT_CLOSED);
    assert_int_equal(map(422, PROBLEM("currency-mismatch")), BV_ECURRENCY_MISMATCH);
    assert_int_equal(map(422, PROBLEM("same-account")), BV_ESAME_ACCOUNT);
    assert_int_equal(map(422, PROBLEM("invalid-amount")), BV_EAMOUNT);
    assert_int_equal(map(422, PROBLEM("expired")), BV_EEXPIRED);
    assert_int_equal(map(404, PROBLEM("not-found")), BV_ENOTFOUND);
    assert_int_equal(map(400, PROBLEM("invalid-request")), BV_EINVALID);
    assert_int_equal(map(400, PROBLEM("malformed-json")), BV_EINVALID);
    /* never a definitive answer: our credentials, a wrong URL, throttling, the server's fault */
    assert_int_equal(map(401, PROBLEM("unauthenticated")), BV_EUPSTREAM);
    assert_int_equal(map(403, PROBLEM("forbidden")), BV_EUPSTREAM);
    assert_int_equal(map(404, PROBLEM("no-such-route")), BV_EUPSTREAM);
    assert_int_equal(map(429, PROBLEM("rate-limited")), BV_EUPSTREAM);
    assert_int_equal(map(404, "<html>not found</html>"), BV_EUPSTREAM);
    assert_int_equal(map(404, NULL), BV_EUPSTREAM);
    assert_int_equal(map(422, "{\"type\":\"https://elsewhere.example/problems/insufficient-funds\"}"),
                     BV_EUPSTREAM);
    assert_int_equal(map(422, PROBLEM("no-such-slug")), BV_EUPSTREAM);
    /* a slug whose registry status differs from the answer's */
    assert_int_equal(map(400, PROBLEM("insufficient-funds")), BV_EUPSTREAM);
    assert_int_equal(map(500, PROBLEM("internal")), BV_EUPSTREAM);
    assert_int_equal(map(503, PROBLEM("unavailable")), BV_EUPSTREAM);
    assert_int_equal(map(502, "garbage"), BV_EUPSTREAM);
    assert_int_equal(map(302, ""), BV_EUPSTREAM);
    assert_int_equal(core_code_of_slug("insufficient-funds"), BV_EINSUFFICIENT_FUNDS);
    assert_int_equal(core_code_of_slug("upstream-timeout"), BV_ETIMEOUT);
    assert_int_equal(core_code_of_slug("nope"), 0);
    /* what the worker may retry */
    assert_true(bv_core_retryable(BV_ETIMEOUT));
    assert_true(bv_core_retryable(BV_EUPSTREAM));
    assert_true(bv_core_retryable(BV_EUNAVAILABLE));
    assert_true(bv_core_retryable(BV_EBUSY));
    assert_true(bv_core_retryable(BV_ESHUTDOWN));
    assert_false(bv_core_retryable(0));
    assert_false(bv_core_retryable(BV_EINSUFFICIENT_FUNDS));
    assert_false(bv_core_retryable(BV_EIDEMPOTENCY));
    assert_false(bv_core_retryable(BV_ENOTFOUND));
#undef PROBLEM
}

/* ---- wire ---- */

static json_t *parse_buf(bv_buf_t *b)
{
    json_t *j = json_loadb(b->data, b->len, 0, NULL);
    assert_non_null(j);
    bv_buf_free(b);
    return j;
}

static void test_wire_round_trip(void **state)
{
    (void)state;
    bv_ledger_account_t a, a2;
    memset(&a, 0, sizeof(a));
    bv_uuid7(a.id);
    bv_ledger_number_make(12345678901234ull, a.number);
    strcpy(a.type, "checking");
    strcpy(a.currency, "KWD");
    a.exponent = 3;
    strcpy(a.status, "active");
    strcpy(a.holder_name, "Nour \"quoted\" \xc3\xb1");
    a.overdraft_limit = 5250;
    a.balance = -1234;
    a.holds = 100;
    a.available = -1334;
    a.created_at = 1700000000123456;
    bv_buf_t b = {0};
    assert_int_equal(bv_ledger_account_json(&b, &a, 0), 0);
    json_t *j = parse_buf(&b);
    assert_string_equal(json_string_value(json_object_get(j, "balance")), "-1.234");
    assert_true(json_is_null(json_object_get(j, "customer_id")));
    assert_int_equal(core_account_from_json(j, &a2), 0);
    assert_memory_equal(&a, &a2, sizeof(a));
    json_object_set_new(j, "balance", json_real(1.5)); /* money is never a JSON number */
    assert_int_equal(core_account_from_json(j, &a2), BV_EUPSTREAM);
    json_decref(j);

    bv_ledger_transfer_t t, t2;
    memset(&t, 0, sizeof(t));
    bv_uuid7(t.id);
    strcpy(t.reference, "ref/ü?&=1");
    bv_uuid7(t.debit_account);
    bv_uuid7(t.credit_account);
    strcpy(t.currency, "USD");
    t.exponent = 2;
    t.amount = 12550;
    t.posted_amount = 12550;
    strcpy(t.status, "posted");
    strcpy(t.description, "rent\nmarch");
    t.created_at = 1700000000000001;
    assert_int_equal(bv_ledger_transfer_json(&b, &t), 0);
    j = parse_buf(&b);
    assert_string_equal(json_string_value(json_object_get(j, "amount")), "125.50");
    assert_int_equal(core_transfer_from_json(j, &t2), 0);
    assert_memory_equal(&t, &t2, sizeof(t));
    json_object_del(j, "reference");
    assert_int_equal(core_transfer_from_json(j, &t2), BV_EUPSTREAM);
    json_decref(j);

    bv_ledger_movement_t m, m2;
    memset(&m, 0, sizeof(m));
    bv_uuid7(m.transfer_id);
    m.amount = -500;
    m.balance_after = 99500;
    bv_uuid7(m.counterparty_id);
    strcpy(m.counterparty_name, "Bob");
    bv_ledger_number_make(1ull, m.counterparty_number);
    strcpy(m.description, "x");
    m.created_at = 1700000000000002;
    assert_int_equal(bv_ledger_movement_json(&b, &m, 2), 0);
    j = parse_buf(&b);
    assert_int_equal(core_movement_from_json(j, 2, &m2), 0);
    assert_memory_equal(&m, &m2, sizeof(m));
    json_decref(j);
}

/* ---- the builtin adapter over a real ledger ---- */

typedef struct {
    char dir[64];
    bv_store_t *st;
    bv_ledger_t *lg;
    bv_core_t *core;
} fx_t;

static const bv_ledger_ctx_t ctx = {.actor = "admin:admin", .request_id = "test"};

static fx_t *fx_open(void)
{
    fx_t *f = calloc(1, sizeof(*f));
    char db[128];
    assert_non_null(f);
    bv_log_set_level(BV_LOG_ERROR);
    snprintf(f->dir, sizeof(f->dir), "/tmp/bv-core-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(db, sizeof(db), "%s/boveda.db", f->dir);
    bv_store_options_t opt = {.path = db, .batch_max = 64, .busy_timeout_ms = 5000};
    assert_int_equal(bv_store_open(&opt, &f->st), 0);
    assert_int_equal(bv_store_migrate(f->st, NULL), 0);
    assert_int_equal(bv_ledger_open(f->st, NULL, &f->lg), 0);
    assert_int_equal(core_builtin_open(f->lg, f->st, &f->core), 0);
    return f;
}

static void fx_close(fx_t *f)
{
    char cmd[128];
    bv_core_close(f->core);
    bv_ledger_close(f->lg);
    bv_store_close(f->st);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
}

static void fx_account(fx_t *f, const char *type, const char *customer, bool neg, bv_ledger_account_t *out)
{
    bv_ledger_account_req_t r = {.type = type,
                                 .currency = "USD",
                                 .holder_name = "Holder",
                                 .customer_id = customer,
                                 .allow_negative = neg};
    assert_int_equal(bv_ledger_account_create(f->lg, &ctx, &r, out, NULL), 0);
}

static void test_builtin(void **state)
{
    (void)state;
    fx_t *f = fx_open();
    char cust[BV_UUID_STR_LEN + 1], other[BV_UUID_STR_LEN + 1];
    bv_ledger_account_t bank, a1, a2, a3, got, *items = NULL;
    bv_ledger_transfer_t t, t2;
    size_t n = 99;
    bool replayed = true;
    bv_uuid7(cust);
    bv_uuid7(other);
    assert_string_equal(bv_core_adapter(f->core), "builtin");
    fx_account(f, "internal", NULL, true, &bank);
    fx_account(f, "checking", cust, false, &a1);
    fx_account(f, "savings", other, false, &a3);
    fx_account(f, "savings", cust, false, &a2);

    /* accounts of a customer: theirs only, oldest first */
    assert_int_equal(bv_core_accounts_of(f->core, cust, &items, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(items[0].id, a1.id);
    assert_string_equal(items[1].id, a2.id);
    assert_string_equal(items[1].customer_id, cust);
    free(items);
    char nobody[BV_UUID_STR_LEN + 1];
    bv_uuid7(nobody);
    assert_int_equal(bv_core_accounts_of(f->core, nobody, &items, &n), 0);
    assert_int_equal(n, 0);
    assert_null(items);
    assert_int_equal(bv_core_accounts_of(f->core, "garbage", &items, &n), 0);
    assert_int_equal(n, 0);

    /* by id and by number */
    assert_int_equal(bv_core_account_get(f->core, a2.id, &got), 0);
    assert_string_equal(got.number, a2.number);
    assert_int_equal(bv_core_account_by_number(f->core, a2.number, &got), 0);
    assert_string_equal(got.id, a2.id);
    char unknown_number[BV_LEDGER_NUMBER_LEN + 1];
    bv_ledger_number_make(99999999999999ull, unknown_number);
    assert_int_equal(bv_core_account_by_number(f->core, unknown_number, &got), BV_ENOTFOUND);
    assert_int_equal(bv_core_account_get(f->core, nobody, &got), BV_ENOTFOUND);

    /* execute, replay, other content, rejection, lookup */
    bv_core_transfer_req_t fund = {.reference = "fund-1",
                                   .debit_account = bank.id,
                                   .credit_account = a1.id,
                                   .amount = 10000,
                                   .currency = "USD",
                                   .description = "funding",
                                   .actor = "system"};
    assert_int_equal(bv_core_transfer_execute(f->core, &fund, &t, &replayed), 0);
    assert_false(replayed);
    assert_string_equal(t.status, "posted");
    assert_int_equal(bv_core_transfer_execute(f->core, &fund, &t2, &replayed), 0);
    assert_true(replayed);
    assert_string_equal(t2.id, t.id);
    fund.amount = 10001;
    assert_int_equal(bv_core_transfer_execute(f->core, &fund, &t2, &replayed), BV_EIDEMPOTENCY);
    bv_core_transfer_req_t big = {.reference = "big-1",
                                  .debit_account = a1.id,
                                  .credit_account = a2.id,
                                  .amount = 10001,
                                  .currency = "USD"};
    int rc = bv_core_transfer_execute(f->core, &big, &t2, NULL);
    assert_int_equal(rc, BV_EINSUFFICIENT_FUNDS);
    assert_false(bv_core_retryable(rc));
    assert_int_equal(bv_core_transfer_lookup(f->core, "big-1", &t2), BV_ENOTFOUND);
    assert_int_equal(bv_core_transfer_lookup(f->core, "fund-1", &t2), 0);
    assert_string_equal(t2.id, t.id);
    big.amount = 2500;
    assert_int_equal(bv_core_transfer_execute(f->core, &big, &t2, NULL), 0);
    assert_int_equal(bv_core_account_get(f->core, a1.id, &got), 0);
    assert_int_equal(got.balance, 7500);

    /* movements and statement */
    bv_ledger_movement_t mv[4];
    int64_t next = -1;
    assert_int_equal(bv_core_movements(f->core, a1.id, 0, 0, 0, 1, mv, &n, &next), 0);
    assert_int_equal(n, 1);
    assert_int_equal(mv[0].amount, -2500);
    assert_true(next > 0);
    assert_int_equal(bv_core_movements(f->core, a1.id, 0, 0, next, 4, mv, &n, &next), 0);
    assert_int_equal(n, 1);
    assert_int_equal(mv[0].amount, 10000);
    assert_int_equal(next, 0);
    assert_int_equal(bv_core_movements(f->core, nobody, 0, 0, 0, 4, mv, &n, &next), BV_ENOTFOUND);
    assert_int_equal(bv_core_movements(f->core, a1.id, 0, 0, 0, 0, mv, &n, &next), BV_EINVALID);
    bv_ledger_statement_t st;
    assert_int_equal(bv_core_statement(f->core, a1.id, 1, bv_now_us() + 1000000, &st), 0);
    assert_int_equal(st.opening, 0);
    assert_int_equal(st.closing, 7500);
    assert_int_equal(st.n_items, 2);
    bv_ledger_statement_free(&st);
    assert_int_equal(bv_core_statement(f->core, a1.id, 5, 5, &st), BV_EINVALID);

    /* a batch: each transfer its own outcome, in one ledger commit, with its own actor */
    bv_core_transfer_req_t batch[4] = {
        {.reference = "b-ok", .debit_account = a1.id, .credit_account = a2.id, .amount = 100, .currency = "USD",
         .actor = "user:one"},
        {.reference = "b-big", .debit_account = a1.id, .credit_account = a2.id, .amount = 1000000,
         .currency = "USD", .actor = "user:two"},
        {.reference = "big-1", .debit_account = a1.id, .credit_account = a2.id, .amount = 2500, .currency = "USD"},
        {.reference = "b-zero", .debit_account = a1.id, .credit_account = a2.id, .amount = 0, .currency = "USD"},
    };
    bv_ledger_result_t res[4];
    assert_int_equal(bv_core_transfer_execute_batch(f->core, batch, 3, res), 0);
    assert_int_equal(res[0].rc, 0);
    assert_false(res[0].replayed);
    assert_int_equal(res[1].rc, BV_EINSUFFICIENT_FUNDS);
    assert_int_equal(res[2].rc, 0);
    assert_true(res[2].replayed); /* the reference executed before: nothing moved again */
    assert_int_equal(bv_core_account_get(f->core, a1.id, &got), 0);
    assert_int_equal(got.balance, 7400);
    assert_int_equal(bv_core_transfer_lookup(f->core, "b-big", &t2), BV_ENOTFOUND);
    /* a request no adapter should see is refused on its own, the others still run */
    batch[0].reference = "b-ok-2";
    assert_int_equal(bv_core_transfer_execute_batch(f->core, &batch[3], 1, res), 0);
    assert_int_equal(res[0].rc, BV_EAMOUNT);
    assert_int_equal(bv_core_transfer_execute_batch(f->core, batch, 0, res), BV_EINVALID);
    fx_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_settings),        cmocka_unit_test(test_open_http_validates),
        cmocka_unit_test(test_open_from_config),
        cmocka_unit_test(test_rate_parse),      cmocka_unit_test(test_faults_parse),
        cmocka_unit_test(test_faults_draw),     cmocka_unit_test(test_error_mapping),
        cmocka_unit_test(test_wire_round_trip), cmocka_unit_test(test_builtin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
