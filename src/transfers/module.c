/* The transfers module's life cycle: settings, the consumer, the expiry sweeper. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "notify/notify.h"
#include "transfers/internal.h"
#include "transfers/transfers.h"

static tr_service_t service;
static int service_ready;

tr_service_t *tr_service(void)
{
    return service_ready ? &service : NULL;
}

/* ---- the core and the customer module through the ports ---- */

static int core_lookup(const char *reference, bv_ledger_transfer_t *out)
{
    bv_core_t *c = bv_core_instance();
    return c != NULL ? bv_core_transfer_lookup(c, reference, out) : BV_EUNAVAILABLE;
}

static int core_execute(const bv_core_transfer_req_t *req, bv_ledger_transfer_t *out, bool *replayed_out)
{
    bv_core_t *c = bv_core_instance();
    return c != NULL ? bv_core_transfer_execute(c, req, out, replayed_out) : BV_EUNAVAILABLE;
}

static int core_execute_batch(const bv_core_transfer_req_t *reqs, size_t n, bv_ledger_result_t *results)
{
    bv_core_t *c = bv_core_instance();
    return c != NULL ? bv_core_transfer_execute_batch(c, reqs, n, results) : BV_EUNAVAILABLE;
}

/* ---- the consumer ---- */

/* Up to TR_BATCH_MAX messages at once: one write job per stage for all of them. */
static void on_messages(const bv_queue_consumer_t *c, bv_queue_msg_t *msgs, int n, bv_queue_result_t *results,
                        int64_t *retry_after_ms)
{
    (void)c;
    char ids[TR_BATCH_MAX][BV_UUID_STR_LEN + 1];
    const char *id_ptrs[TR_BATCH_MAX], *receipts[TR_BATCH_MAX];
    int map[TR_BATCH_MAX], k = 0;
    tr_service_t *s = tr_service();
    for (int i = 0; i < n; i++) {
        if (s == NULL) {
            results[i] = BV_QUEUE_RETRY;
            continue;
        }
        if (msgs[i].body_len != BV_UUID_STR_LEN || !bv_uuid_valid(msgs[i].body)) {
            bv_log_error("malformed transfers message dropped", "\"id\":\"%s\"", msgs[i].id);
            results[i] = BV_QUEUE_ACK;
            continue;
        }
        snprintf(ids[k], sizeof(ids[k]), "%s", msgs[i].body);
        id_ptrs[k] = ids[k];
        receipts[k] = msgs[i].receipt;
        map[k++] = i;
    }
    if (k == 0)
        return;
    bv_queue_result_t res[TR_BATCH_MAX];
    int64_t retry[TR_BATCH_MAX];
    for (int j = 0; j < k; j++)
        retry[j] = -1;
    tr_process_batch(s, id_ptrs, receipts, k, res, retry);
    for (int j = 0; j < k; j++) {
        results[map[j]] = res[j];
        retry_after_ms[map[j]] = retry[j];
    }
}

static bv_queue_consumer_t consumer = {
    .name = "transfers",
    .group = "transfers",
    .queue = TR_QUEUE,
    .concurrency = 8,
    .handler_batch = on_messages,
    .batch = TR_BATCH_MAX,
};
static int consumer_registered;

/* ---- the expiry sweeper (serve only) ---- */

static struct {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int running, stop;
} sweeper = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void *sweep_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&sweeper.mu);
    while (!sweeper.stop) {
        struct timespec ts;
        int n = 0;
        pthread_mutex_unlock(&sweeper.mu);
        int rc = tr_expire_due(service.store, NULL, service.now_us(), &n);
        if (rc != 0 && rc != BV_ESHUTDOWN)
            bv_log_error("transfer expiry sweep failed", "\"error\":\"%s\"", bv_err_name(rc));
        else if (n > 0)
            bv_log_info("pending transfers expired", "\"count\":%d", n);
        rc = tr_promote_notified(&service, &n);
        if (rc != 0 && rc != BV_ESHUTDOWN)
            bv_log_error("transfer notification check failed", "\"error\":\"%s\"", bv_err_name(rc));
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += TR_SWEEP_INTERVAL_US / 1000000;
        pthread_mutex_lock(&sweeper.mu);
        while (!sweeper.stop && pthread_cond_timedwait(&sweeper.cv, &sweeper.mu, &ts) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&sweeper.mu);
    return NULL;
}

static int sweeper_start(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sweeper.cv, &ca);
    pthread_condattr_destroy(&ca);
    sweeper.stop = 0;
    if (pthread_create(&sweeper.thread, NULL, sweep_main, NULL) != 0) {
        pthread_cond_destroy(&sweeper.cv);
        return BV_EINTERNAL;
    }
    sweeper.running = 1;
    return 0;
}

static void sweeper_stop(void)
{
    if (!sweeper.running)
        return;
    pthread_mutex_lock(&sweeper.mu);
    sweeper.stop = 1;
    pthread_cond_broadcast(&sweeper.cv);
    pthread_mutex_unlock(&sweeper.mu);
    pthread_join(sweeper.thread, NULL);
    pthread_cond_destroy(&sweeper.cv);
    sweeper.running = 0;
}

/* ---- settings ---- */

/* A limit in the currency's units ("10000", "2500.50") as 10^-4 units. */
static int limit_setting(const bv_config_t *cfg, const char *name, int64_t *out)
{
    const char *v = bv_config_str(cfg, name);
    if (v == NULL || bv_ledger_amount_parse(v, TR_MAX_EXPONENT, false, out) != 0 || *out <= 0) {
        bv_log_error("invalid setting", "\"setting\":\"BOVEDA_%s\",\"reason\":\"%s\"", name,
                     "must be a positive decimal amount in currency units with at most 4 decimals");
        return BV_ECONFIG;
    }
    return 0;
}

int bv_transfers_module_init(bv_app_t *app)
{
    int rc;
    memset(&service, 0, sizeof(service));
    service.store = app->store;
    service.max_retries = (int)bv_config_int(app->cfg, "TRANSFER_MAX_RETRIES");
    service.backoff_ms = bv_config_int(app->cfg, "TRANSFER_BACKOFF_MS");
    service.core_timeout_ms = bv_config_int(app->cfg, "CORE_TIMEOUT_MS");
    if ((rc = limit_setting(app->cfg, "TRANSFER_MAX_AMOUNT", &service.max_amount_e4)) != 0 ||
        (rc = limit_setting(app->cfg, "TRANSFER_DAILY_LIMIT", &service.daily_limit_e4)) != 0)
        return rc;
    service.lookup = core_lookup;
    service.execute = core_execute;
    service.profile = bv_customer_profile;
    service.now_us = bv_now_us;
    service.delivered = bv_notify_delivered;
    service.execute_batch = core_execute_batch;
    service_ready = 1;

    /* The builtin core is this process's ledger engine: a process without HTTP (`boveda
     * worker`, admin commands) would run a second engine on the same database. */
    const char *adapter = bv_config_str(app->cfg, "CORE");
    if (app->http == NULL && (adapter == NULL || strcmp(adapter, "http") != 0)) {
        bv_log_info("transfers consumer not started: the builtin core runs only in `boveda serve`; "
                    "use BOVEDA_CORE=http to execute transfers in `boveda worker`",
                    NULL);
    } else {
        consumer.concurrency = (int)bv_config_int(app->cfg, "TRANSFER_CONCURRENCY");
        consumer.backoff_base_ms = service.backoff_ms;
        /* a delivery takes a lookup and an execute, each up to the core timeout: the message
         * stays invisible meanwhile (a second delivery would be harmless, only wasted), and
         * comes back this soon after a worker died holding it */
        int64_t vis = 2 * service.core_timeout_ms + 10000;
        bv_queue_options_t qo = {
            .name = TR_QUEUE, .visibility_timeout_ms = vis < 15000 ? 15000 : vis, .retention_s = 14 * 86400};
        if ((rc = bv_queue_ensure(app->store, &qo)) != 0)
            return rc;
        if ((rc = bv_queue_consumer_register(&consumer)) != 0)
            return rc;
        consumer_registered = 1;
    }
    if (app->http != NULL && (rc = sweeper_start()) != 0)
        return rc;
    return 0;
}

int bv_transfers_module_routes(bv_app_t *app)
{
    return bv_http_add_routes(app->http, tr_routes, tr_n_routes, app);
}

void bv_transfers_module_fini(bv_app_t *app)
{
    (void)app;
    sweeper_stop();
    if (consumer_registered) {
        bv_queue_consumer_unregister(&consumer);
        consumer_registered = 0;
    }
    service_ready = 0;
}
