/* The http adapter against the real `boveda core` ($BOVEDA_TEST_BIN): the data directory is
 * prepared in-process (accounts opened and funded through the ledger), then the binary
 * serves it and every bv_core_* call goes over HTTP. A second run injects the timeout fault:
 * the client gives up (BV_ETIMEOUT) although the core committed, and the lookup by
 * reference finds the transfer. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/log.h"
#include "core/internal.h"
#include "store/store.h"

#define TOKEN "core-token-0123456789abcdef0123456789abcdef"
#define ADMIN "admin-token-0123456789abcdef0123456789abcdef0"

typedef struct {
    char dir[64];
    char cust[BV_UUID_STR_LEN + 1];
    bv_ledger_account_t bank, a1, a2;
    pid_t pid;
    char log[128];
    char url[128];
} fx_t;

static fx_t fx;
static const bv_ledger_ctx_t ctx = {.actor = "admin:admin", .request_id = "test"};

static void prepare_data(void)
{
    char db[128];
    bv_store_t *st = NULL;
    bv_ledger_t *lg = NULL;
    bv_ledger_result_t res;
    snprintf(fx.dir, sizeof(fx.dir), "/tmp/bv-core-http-XXXXXX");
    assert_non_null(mkdtemp(fx.dir));
    snprintf(db, sizeof(db), "%s/boveda.db", fx.dir);
    bv_store_options_t opt = {.path = db, .batch_max = 64, .busy_timeout_ms = 5000};
    assert_int_equal(bv_store_open(&opt, &st), 0);
    assert_int_equal(bv_store_migrate(st, NULL), 0);
    assert_int_equal(bv_ledger_open(st, NULL, &lg), 0);
    bv_uuid7(fx.cust);
    bv_ledger_account_req_t r = {
        .type = "internal", .currency = "USD", .holder_name = "Bank", .allow_negative = true};
    assert_int_equal(bv_ledger_account_create(lg, &ctx, &r, &fx.bank, NULL), 0);
    r = (bv_ledger_account_req_t){
        .type = "checking", .currency = "USD", .holder_name = "Ana", .customer_id = fx.cust};
    assert_int_equal(bv_ledger_account_create(lg, &ctx, &r, &fx.a1, NULL), 0);
    r.type = "savings";
    assert_int_equal(bv_ledger_account_create(lg, &ctx, &r, &fx.a2, NULL), 0);
    bv_ledger_transfer_req_t t = {.debit_account = fx.bank.id,
                                  .credit_account = fx.a1.id,
                                  .amount = 100000,
                                  .currency = "USD",
                                  .reference = "seed-1",
                                  .description = "seed"};
    assert_int_equal(bv_ledger_transfer(lg, &ctx, &t, &res), 0);
    bv_ledger_close(lg);
    bv_store_close(st);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Starts `boveda core` with stderr into a file and waits for its "listening" line; with
 * cert/key, on an HTTPS listener only. */
static void start_core_tls(const char *faults, const char *cert, const char *key)
{
    const char *bin = getenv("BOVEDA_TEST_BIN");
    if (bin == NULL)
        fail_msg("BOVEDA_TEST_BIN is not set (run through ctest)");
    static int run;
    snprintf(fx.log, sizeof(fx.log), "%s/core-%d.log", fx.dir, ++run);
    fx.url[0] = '\0';
    fx.pid = fork();
    assert_true(fx.pid >= 0);
    if (fx.pid == 0) {
        /* stdout too: an orphan must not hold the test runner's pipe open */
        if (freopen(fx.log, "w", stderr) == NULL || freopen("/dev/null", "w", stdout) == NULL)
            _exit(126);
        setenv("BOVEDA_DATA_DIR", fx.dir, 1);
        setenv("BOVEDA_HTTP_LISTEN", cert != NULL ? "" : "127.0.0.1:0", 1);
        setenv("BOVEDA_HTTPS_LISTEN", cert != NULL ? "127.0.0.1:0" : "", 1);
        if (cert != NULL) {
            setenv("BOVEDA_TLS_CERT", cert, 1);
            setenv("BOVEDA_TLS_KEY", key, 1);
        }
        setenv("BOVEDA_CORE_TOKEN", TOKEN, 1);
        setenv("BOVEDA_ADMIN_TOKEN", ADMIN, 1);
        setenv("BOVEDA_CORE_FAULTS", faults, 1);
        setenv("BOVEDA_THREADS", "1", 1);
        setenv("BOVEDA_LOG_LEVEL", "info", 1);
        execl(bin, "boveda", "core", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 400 && fx.url[0] == '\0'; i++) {
        char line[2048];
        FILE *f = fopen(fx.log, "r");
        while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
            char *p = strstr(line, "\"msg\":\"listening\"");
            char *u = p != NULL ? strstr(line, "\"url\":\"") : NULL;
            if (u != NULL) {
                u += 7;
                char *e = strchr(u, '"');
                if (e != NULL && (size_t)(e - u) < sizeof(fx.url))
                    memcpy(fx.url, u, (size_t)(e - u)), fx.url[e - u] = '\0';
            }
        }
        if (f != NULL)
            fclose(f);
        int status;
        if (fx.url[0] == '\0' && waitpid(fx.pid, &status, WNOHANG) == fx.pid)
            fail_msg("boveda core exited during start-up (see %s)", fx.log);
        if (fx.url[0] == '\0')
            sleep_ms(50);
    }
    if (fx.url[0] == '\0')
        fail_msg("boveda core did not listen (see %s)", fx.log);
}

static void start_core(const char *faults)
{
    start_core_tls(faults, NULL, NULL);
}

static void stop_core(void)
{
    int status = 0;
    kill(fx.pid, SIGTERM);
    assert_int_equal(waitpid(fx.pid, &status, 0), fx.pid);
    fx.pid = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static bv_core_t *client_ca(const char *token, int64_t timeout_ms, const char *ca_file)
{
    bv_core_t *c = NULL;
    core_http_settings_t s = {.url = fx.url, .token = token, .timeout_ms = timeout_ms, .ca_file = ca_file};
    assert_int_equal(core_http_open(&s, &c), 0);
    return c;
}

static bv_core_t *client(const char *token, int64_t timeout_ms)
{
    return client_ca(token, timeout_ms, NULL);
}

static void test_contract_over_http(void **state)
{
    (void)state;
    bv_ledger_account_t *items = NULL, got;
    bv_ledger_transfer_t t, t2;
    bv_ledger_movement_t mv[8];
    bv_ledger_statement_t st;
    size_t n = 0;
    int64_t next = 0;
    bool replayed = true;

    start_core("");
    bv_core_t *c = client(TOKEN, 5000);

    assert_int_equal(bv_core_accounts_of(c, fx.cust, &items, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(items[0].id, fx.a1.id);
    assert_string_equal(items[1].id, fx.a2.id);
    assert_int_equal(items[0].balance, 100000);
    assert_string_equal(items[0].customer_id, fx.cust);
    free(items);

    assert_int_equal(bv_core_account_get(c, fx.a2.id, &got), 0);
    assert_string_equal(got.number, fx.a2.number);
    assert_string_equal(got.type, "savings");
    assert_int_equal(bv_core_account_by_number(c, fx.a1.number, &got), 0);
    assert_string_equal(got.id, fx.a1.id);
    assert_int_equal(got.exponent, 2);
    char unknown[BV_UUID_STR_LEN + 1];
    bv_uuid7(unknown);
    assert_int_equal(bv_core_account_get(c, unknown, &got), BV_ENOTFOUND);

    bv_core_transfer_req_t req = {.reference = "http-1",
                                  .debit_account = fx.a1.id,
                                  .credit_account = fx.a2.id,
                                  .amount = 2550,
                                  .currency = "USD",
                                  .description = "to savings"};
    assert_int_equal(bv_core_transfer_execute(c, &req, &t, &replayed), 0);
    assert_false(replayed);
    assert_string_equal(t.reference, "http-1");
    assert_int_equal(t.amount, 2550);
    assert_string_equal(t.status, "posted");
    assert_string_equal(t.description, "to savings");
    assert_int_equal(bv_core_transfer_execute(c, &req, &t2, &replayed), 0);
    assert_true(replayed);
    assert_string_equal(t2.id, t.id);
    req.amount = 2551;
    assert_int_equal(bv_core_transfer_execute(c, &req, &t2, &replayed), BV_EIDEMPOTENCY);
    req.reference = "http-2";
    req.amount = 10000000;
    assert_int_equal(bv_core_transfer_execute(c, &req, &t2, NULL), BV_EINSUFFICIENT_FUNDS);
    req.amount = 1;
    req.credit_account = unknown;
    assert_int_equal(bv_core_transfer_execute(c, &req, &t2, NULL), BV_EUNKNOWN_ACCOUNT);
    req.credit_account = fx.a1.id;
    assert_int_equal(bv_core_transfer_execute(c, &req, &t2, NULL), BV_ESAME_ACCOUNT);
    req.credit_account = fx.a2.id;
    req.currency = "EUR";
    assert_int_equal(bv_core_transfer_execute(c, &req, &t2, NULL), BV_ECURRENCY_MISMATCH);
    assert_int_equal(bv_core_transfer_lookup(c, "http-2", &t2), BV_ENOTFOUND);
    assert_int_equal(bv_core_transfer_lookup(c, "http-1", &t2), 0);
    assert_string_equal(t2.id, t.id);
    /* references are escaped on the way */
    req = (bv_core_transfer_req_t){.reference = "odd ref/&?=#%",
                                   .debit_account = fx.a1.id,
                                   .credit_account = fx.a2.id,
                                   .amount = 50,
                                   .currency = "USD"};
    assert_int_equal(bv_core_transfer_execute(c, &req, &t, NULL), 0);
    assert_int_equal(bv_core_transfer_lookup(c, "odd ref/&?=#%", &t2), 0);
    assert_string_equal(t2.id, t.id);

    /* movements newest first, paginated */
    assert_int_equal(bv_core_movements(c, fx.a1.id, 0, 0, 0, 2, mv, &n, &next), 0);
    assert_int_equal(n, 2);
    assert_int_equal(mv[0].amount, -50);
    assert_int_equal(mv[1].amount, -2550);
    assert_string_equal(mv[1].counterparty_id, fx.a2.id);
    assert_string_equal(mv[1].description, "to savings");
    assert_true(next > 0);
    assert_int_equal(bv_core_movements(c, fx.a1.id, 0, 0, next, 8, mv, &n, &next), 0);
    assert_int_equal(n, 1);
    assert_int_equal(mv[0].amount, 100000);
    assert_int_equal(next, 0);
    assert_int_equal(bv_core_movements(c, unknown, 0, 0, 0, 8, mv, &n, &next), BV_ENOTFOUND);

    assert_int_equal(bv_core_statement(c, fx.a1.id, 1000000, bv_now_us() + 60000000, &st), 0);
    assert_int_equal(st.opening, 0);
    assert_int_equal(st.closing, 100000 - 2550 - 50);
    assert_int_equal(st.total_credits, 100000);
    assert_int_equal(st.total_debits, 2600);
    assert_int_equal(st.n_items, 3);
    assert_string_equal(st.account.id, fx.a1.id);
    bv_ledger_statement_free(&st);

    /* a wrong token is not a definitive answer: retryable */
    bv_core_t *bad = client("wrong-token-0123456789abcdef0123456789", 5000);
    int rc = bv_core_transfer_lookup(bad, "http-1", &t2);
    assert_int_equal(rc, BV_EUPSTREAM);
    assert_true(bv_core_retryable(rc));
    bv_core_close(bad);

    bv_core_close(c);
    stop_core();
}

static void test_timeout_then_lookup(void **state)
{
    (void)state;
    bv_ledger_transfer_t t;
    bv_ledger_account_t got;
    /* the core holds every execute reply 1.5 s after committing; the client waits 300 ms */
    start_core("seed=1,timeout_rate=1,timeout_ms=1500");
    bv_core_t *c = client(TOKEN, 300);
    bv_core_transfer_req_t req = {.reference = "slow-1",
                                  .debit_account = fx.a1.id,
                                  .credit_account = fx.a2.id,
                                  .amount = 700,
                                  .currency = "USD"};
    assert_int_equal(bv_core_account_get(c, fx.a2.id, &got), 0);
    int64_t before = got.balance;
    int rc = bv_core_transfer_execute(c, &req, &t, NULL);
    assert_int_equal(rc, BV_ETIMEOUT);
    assert_true(bv_core_retryable(rc));
    /* reconciliation: the transfer exists, exactly once */
    assert_int_equal(bv_core_transfer_lookup(c, "slow-1", &t), 0);
    assert_int_equal(t.amount, 700);
    assert_int_equal(bv_core_account_get(c, fx.a2.id, &got), 0);
    assert_int_equal(got.balance, before + 700);
    bv_core_close(c);
    stop_core();
    /* the injected fault was logged at warn */
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "grep -q '\"level\":\"warn\".*\"fault\":\"timeout\"' '%s'", fx.log);
    assert_int_equal(system(cmd), 0);
}

/* https: the peer is always verified; BOVEDA_CORE_CA_FILE adds the CA that signed it. */
static void test_tls(void **state)
{
    (void)state;
    char cert[128], key[128], cmd[512];
    bv_ledger_account_t got;
    snprintf(cert, sizeof(cert), "%s/cert.pem", fx.dir);
    snprintf(key, sizeof(key), "%s/key.pem", fx.dir);
    snprintf(
        cmd, sizeof(cmd),
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout '%s' -out '%s' -days 2 "
        "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1",
        key, cert);
    assert_int_equal(system(cmd), 0);
    start_core_tls("", cert, key);
    assert_memory_equal(fx.url, "https://", 8);
    bv_core_t *c = client_ca(TOKEN, 5000, NULL);
    /* self-signed and not in the system store: the handshake fails, retryably */
    assert_int_equal(bv_core_account_get(c, fx.a1.id, &got), BV_EUPSTREAM);
    bv_core_close(c);
    c = client_ca(TOKEN, 5000, cert);
    assert_int_equal(bv_core_account_get(c, fx.a1.id, &got), 0);
    assert_string_equal(got.id, fx.a1.id);
    bv_core_close(c);
    stop_core();
}

static int setup(void **state)
{
    (void)state;
    bv_log_set_level(BV_LOG_ERROR);
    prepare_data();
    return 0;
}

/* After each test: a failed test leaves its server running. */
static int kill_server(void **state)
{
    (void)state;
    if (fx.pid > 0) {
        kill(fx.pid, SIGKILL);
        waitpid(fx.pid, NULL, 0);
        fx.pid = 0;
    }
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    kill_server(state);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx.dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_contract_over_http, kill_server),
        cmocka_unit_test_teardown(test_timeout_then_lookup, kill_server),
        cmocka_unit_test_teardown(test_tls, kill_server),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
