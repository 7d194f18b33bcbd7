/* The worker framework: registered consumers run as threads that long-poll their queue,
 * call the handler and ack / retry with backoff / dead-letter; a background thread drains
 * the outbox and applies retention. Also the module's life cycle and `boveda worker`. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "queue/internal.h"

#define MAX_CONSUMERS      32
#define MAX_CONCURRENCY    64
#define OUTBOX_INTERVAL_US 250000
#define SWEEP_INTERVAL_US  (60 * 1000000LL)

typedef struct {
    const bv_queue_consumer_t *c;
    pthread_t threads[MAX_CONCURRENCY];
    int n_threads;
    volatile int stop;
    _Atomic uint64_t acked, retried, failed, errors;
} running_t;

static struct {
    pthread_mutex_t mu;
    const bv_queue_consumer_t *registered[MAX_CONSUMERS];
    running_t *running[MAX_CONSUMERS];
    size_t n;
    bv_store_t *store;
    /* background thread */
    pthread_t bg;
    int bg_running;
    int bg_stop;
    pthread_cond_t bg_cv;
    int bg_cv_ready;
    int metrics_added;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER};

int64_t bv_queue_backoff_ms(int attempt, int64_t base_ms, int64_t max_ms)
{
    uint64_t r;
    int64_t cap;
    if (base_ms <= 0)
        base_ms = 1000;
    if (max_ms <= 0)
        max_ms = 300000;
    if (attempt < 1)
        attempt = 1;
    cap = base_ms;
    for (int i = 1; i < attempt && cap < max_ms; i++)
        cap *= 2;
    if (cap > max_ms)
        cap = max_ms;
    bv_random(&r, sizeof(r));
    return (int64_t)(r % (uint64_t)(cap + 1)); /* full jitter: uniform in [0, cap] */
}

/* ---- consumer threads ---- */

typedef struct {
    running_t *r;
    bv_store_t *st;
} thread_arg_t;

static void nap(running_t *r, int64_t us)
{
    int64_t end = bv_mono_us() + us;
    while (!r->stop && bv_mono_us() < end) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void settle(running_t *r, bv_store_t *st, bv_queue_msg_t *m, bv_queue_result_t res,
                   int64_t retry_after_ms)
{
    const bv_queue_consumer_t *c = r->c;
    int rc;
    switch (res) {
    case BV_QUEUE_ACK:
        rc = bv_queue_delete(st, c->queue, m->receipt);
        atomic_fetch_add(&r->acked, 1);
        break;
    case BV_QUEUE_RETRY: {
        int64_t delay = retry_after_ms >= 0
                            ? retry_after_ms
                            : bv_queue_backoff_ms(m->receive_count, c->backoff_base_ms, c->backoff_max_ms);
        if (delay > BV_QUEUE_MAX_VISIBILITY_MS)
            delay = BV_QUEUE_MAX_VISIBILITY_MS;
        rc = bv_queue_change_visibility(st, c->queue, m->receipt, delay);
        atomic_fetch_add(&r->retried, 1);
        break;
    }
    case BV_QUEUE_SETTLED:
        atomic_fetch_add(&r->acked, 1);
        return;
    default:
        rc = bv_queue_dead_letter(st, c->queue, m->receipt);
        if (rc == BV_ENOTFOUND) { /* no DLQ (or a stale receipt): nothing else to keep it in */
            bv_log_error("message failed permanently and its queue has no DLQ: deleted",
                         "\"consumer\":\"%s\",\"queue\":\"%s\",\"id\":\"%s\"", c->name, c->queue, m->id);
            rc = bv_queue_delete(st, c->queue, m->receipt);
        }
        atomic_fetch_add(&r->failed, 1);
        break;
    }
    if (rc != 0 && rc != BV_ENOTFOUND)
        bv_log_error("cannot settle message", "\"consumer\":\"%s\",\"id\":\"%s\",\"error\":\"%s\"", c->name,
                     m->id, bv_err_name(rc));
    else if (rc == BV_ENOTFOUND)
        bv_log_warn("message receipt expired before it was settled (visibility timeout too short?)",
                    "\"consumer\":\"%s\",\"id\":\"%s\"", c->name, m->id);
}

static void *consumer_main(void *arg)
{
    thread_arg_t *ta = arg;
    running_t *r = ta->r;
    bv_store_t *st = ta->st;
    const bv_queue_consumer_t *c = r->c;
    free(ta);
    int max = c->handler_batch != NULL ? (c->batch < 1 ? 1 : c->batch > 10 ? 10 : c->batch) : 1;
    while (!r->stop) {
        bv_queue_msg_t m[10];
        int n = 0;
        bv_queue_receive_opts_t o = {.max = max, .wait_ms = BV_QUEUE_MAX_WAIT_MS, .stop = &r->stop};
        int rc = bv_queue_receive(st, c->queue, &o, m, &n);
        if (rc != 0) {
            atomic_fetch_add(&r->errors, 1);
            if (rc == BV_ESHUTDOWN)
                break;
            bv_log_error("consumer cannot receive", "\"consumer\":\"%s\",\"queue\":\"%s\",\"error\":\"%s\"",
                         c->name, c->queue, bv_err_name(rc));
            nap(r, 1000000);
            continue;
        }
        if (n == 0)
            continue;
        if (r->stop) { /* received while stopping: give them back at once */
            for (int i = 0; i < n; i++) {
                bv_queue_change_visibility(st, c->queue, m[i].receipt, 0);
                bv_queue_msg_clear(&m[i]);
            }
            break;
        }
        bv_queue_result_t res[10];
        int64_t retry_after[10];
        for (int i = 0; i < n; i++)
            retry_after[i] = -1;
        if (c->handler_batch != NULL)
            c->handler_batch(c, m, n, res, retry_after);
        else
            res[0] = c->handler(c, &m[0], &retry_after[0]);
        for (int i = 0; i < n; i++) {
            settle(r, st, &m[i], res[i], retry_after[i]);
            bv_queue_msg_clear(&m[i]);
        }
    }
    return NULL;
}

static int start_one(size_t i, bv_store_t *st)
{
    const bv_queue_consumer_t *c = g.registered[i];
    running_t *r = calloc(1, sizeof(*r));
    int n = c->concurrency > 0 ? c->concurrency : 1;
    if (r == NULL)
        return BV_ENOMEM;
    if (n > MAX_CONCURRENCY)
        n = MAX_CONCURRENCY;
    r->c = c;
    for (int k = 0; k < n; k++) {
        thread_arg_t *ta = malloc(sizeof(*ta));
        if (ta == NULL)
            break;
        *ta = (thread_arg_t){r, st};
        if (pthread_create(&r->threads[k], NULL, consumer_main, ta) != 0) {
            free(ta);
            break;
        }
        r->n_threads++;
    }
    g.running[i] = r;
    if (r->n_threads != n) {
        bv_log_error("cannot start consumer threads", "\"consumer\":\"%s\"", c->name);
        return BV_EINTERNAL;
    }
    bv_log_info("consumer started", "\"consumer\":\"%s\",\"queue\":\"%s\",\"concurrency\":%d", c->name,
                c->queue, n);
    return 0;
}

/* Called with g.mu held; releases it while joining (handlers may take a while). */
static void stop_one(size_t i)
{
    running_t *r = g.running[i];
    if (r == NULL)
        return;
    g.running[i] = NULL;
    r->stop = 1;
    pthread_mutex_unlock(&g.mu);
    bv_queue_wake_all();
    for (int k = 0; k < r->n_threads; k++)
        pthread_join(r->threads[k], NULL);
    bv_log_info("consumer stopped", "\"consumer\":\"%s\"", r->c->name);
    free(r);
    pthread_mutex_lock(&g.mu);
}

int bv_queue_consumer_register(const bv_queue_consumer_t *c)
{
    int rc = 0;
    if (c == NULL || c->name == NULL || (c->handler == NULL && c->handler_batch == NULL) ||
        !bv_queue_name_valid(c->queue))
        return BV_EINVALID;
    pthread_mutex_lock(&g.mu);
    for (size_t i = 0; i < g.n; i++)
        if (g.registered[i] == c || strcmp(g.registered[i]->name, c->name) == 0)
            rc = BV_ECONFLICT;
    if (rc == 0 && g.n == MAX_CONSUMERS)
        rc = BV_ENOMEM;
    if (rc == 0) {
        g.registered[g.n] = c;
        g.running[g.n] = NULL;
        g.n++;
    }
    pthread_mutex_unlock(&g.mu);
    return rc;
}

void bv_queue_consumer_unregister(const bv_queue_consumer_t *c)
{
    pthread_mutex_lock(&g.mu);
    for (size_t i = 0; i < g.n; i++) {
        if (g.registered[i] != c)
            continue;
        stop_one(i);
        /* the table may have changed while unlocked: find it again */
        for (size_t j = 0; j < g.n; j++) {
            if (g.registered[j] == c) {
                memmove(&g.registered[j], &g.registered[j + 1], (g.n - j - 1) * sizeof(g.registered[0]));
                memmove(&g.running[j], &g.running[j + 1], (g.n - j - 1) * sizeof(g.running[0]));
                g.n--;
                break;
            }
        }
        break;
    }
    pthread_mutex_unlock(&g.mu);
}

/* ---- background: outbox drain and retention ---- */

static void *background_main(void *arg)
{
    bv_store_t *st = arg;
    int64_t next_sweep = bv_mono_us() + 5 * 1000000LL;
    pthread_mutex_lock(&g.mu);
    while (!g.bg_stop) {
        pthread_mutex_unlock(&g.mu);
        int n = 0, rc;
        do {
            rc = bv_queue_outbox_drain(st, 200, &n);
        } while (rc == 0 && n == 200);
        if (rc != 0 && rc != BV_ESHUTDOWN)
            bv_log_error("outbox drain failed", "\"error\":\"%s\"", bv_err_name(rc));
        if (bv_mono_us() >= next_sweep) {
            bv_queue_sweep(st, NULL);
            next_sweep = bv_mono_us() + SWEEP_INTERVAL_US;
        }
        struct timespec ts;
        int64_t until = bv_mono_us() + OUTBOX_INTERVAL_US;
        ts.tv_sec = until / 1000000;
        ts.tv_nsec = (until % 1000000) * 1000;
        pthread_mutex_lock(&g.mu);
        while (!g.bg_stop && pthread_cond_timedwait(&g.bg_cv, &g.mu, &ts) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&g.mu);
    return NULL;
}

static int list_has(const char *list, const char *name)
{
    size_t n = name != NULL ? strlen(name) : 0;
    for (const char *p = list; p != NULL && *p != '\0';) {
        const char *e = strchr(p, ',');
        size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
        if (n > 0 && len == n && strncmp(p, name, n) == 0)
            return 1;
        p = e != NULL ? e + 1 : NULL;
    }
    return 0;
}

int bv_queue_workers_start(bv_store_t *st, const char *only)
{
    int rc = 0;
    pthread_mutex_lock(&g.mu);
    g.store = st;
    if (only != NULL) { /* every name must match something */
        for (const char *p = only; p != NULL && *p != '\0';) {
            const char *e = strchr(p, ',');
            size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
            int found = 0;
            for (size_t i = 0; i < g.n; i++) {
                const bv_queue_consumer_t *c = g.registered[i];
                if ((strlen(c->name) == len && strncmp(c->name, p, len) == 0) ||
                    (c->group != NULL && strlen(c->group) == len && strncmp(c->group, p, len) == 0))
                    found = 1;
            }
            if (!found) {
                char nm[81], esc[200];
                snprintf(nm, sizeof(nm), "%.*s", (int)(len < 80 ? len : 80), p);
                bv_json_escape(esc, sizeof(esc), nm);
                bv_log_error("no consumer by that name", "\"name\":\"%s\"", esc);
                rc = BV_ENOTFOUND;
            }
            p = e != NULL ? e + 1 : NULL;
        }
    }
    for (size_t i = 0; i < g.n && rc == 0; i++) {
        const bv_queue_consumer_t *c = g.registered[i];
        if (g.running[i] != NULL)
            continue;
        if (only != NULL && !list_has(only, c->name) && !list_has(only, c->group))
            continue;
        rc = start_one(i, st);
    }
    if (rc == 0 && !g.bg_running) {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        if (!g.bg_cv_ready) {
            pthread_cond_init(&g.bg_cv, &ca);
            g.bg_cv_ready = 1;
        }
        pthread_condattr_destroy(&ca);
        g.bg_stop = 0;
        if (pthread_create(&g.bg, NULL, background_main, st) != 0)
            rc = BV_EINTERNAL;
        else
            g.bg_running = 1;
    }
    pthread_mutex_unlock(&g.mu);
    if (rc != 0)
        bv_queue_workers_stop();
    return rc;
}

void bv_queue_workers_stop(void)
{
    pthread_mutex_lock(&g.mu);
    for (size_t i = 0; i < g.n; i++)
        stop_one(i);
    if (g.bg_running) {
        g.bg_stop = 1;
        pthread_cond_broadcast(&g.bg_cv);
        pthread_mutex_unlock(&g.mu);
        pthread_join(g.bg, NULL);
        pthread_mutex_lock(&g.mu);
        g.bg_running = 0;
    }
    pthread_mutex_unlock(&g.mu);
}

/* ---- metrics ---- */

static void append_seconds(bv_buf_t *out, const char *name, const char *queue, int64_t us)
{
    bv_buf_printf(out, "%s{queue=\"%s\"} %lld.%06lld\n", name, queue, (long long)(us / 1000000),
                  (long long)(us % 1000000));
}

static void render_metrics(void *cls, bv_buf_t *out)
{
    bv_store_t *st = cls;
    bv_queue_info_t *qs = NULL;
    size_t n = 0;
    if (bv_queue_list(st, &qs, &n) != 0)
        return;
    bv_buf_puts(out, "# HELP boveda_queue_depth Messages visible now (ready to receive).\n"
                     "# TYPE boveda_queue_depth gauge\n");
    for (size_t i = 0; i < n; i++)
        bv_buf_printf(out, "boveda_queue_depth{queue=\"%s\"} %lld\n", qs[i].name, (long long)qs[i].depth);
    bv_buf_puts(out, "# HELP boveda_queue_in_flight Messages received and not yet deleted.\n"
                     "# TYPE boveda_queue_in_flight gauge\n");
    for (size_t i = 0; i < n; i++)
        bv_buf_printf(out, "boveda_queue_in_flight{queue=\"%s\"} %lld\n", qs[i].name,
                      (long long)qs[i].in_flight);
    bv_buf_puts(out, "# HELP boveda_queue_delayed Messages sent with a delay not yet elapsed.\n"
                     "# TYPE boveda_queue_delayed gauge\n");
    for (size_t i = 0; i < n; i++)
        bv_buf_printf(out, "boveda_queue_delayed{queue=\"%s\"} %lld\n", qs[i].name, (long long)qs[i].delayed);
    bv_buf_puts(out, "# HELP boveda_queue_oldest_age_seconds Age of the oldest message.\n"
                     "# TYPE boveda_queue_oldest_age_seconds gauge\n");
    for (size_t i = 0; i < n; i++)
        append_seconds(out, "boveda_queue_oldest_age_seconds", qs[i].name, qs[i].oldest_age_us);
    bv_buf_puts(out, "# HELP boveda_queue_dlq_depth Messages in the queue's dead-letter queue.\n"
                     "# TYPE boveda_queue_dlq_depth gauge\n");
    for (size_t i = 0; i < n; i++)
        if (qs[i].dlq[0] != '\0')
            bv_buf_printf(out, "boveda_queue_dlq_depth{queue=\"%s\",dlq=\"%s\"} %lld\n", qs[i].name,
                          qs[i].dlq, (long long)qs[i].dlq_depth);
    free(qs);
    bv_buf_puts(out,
                "# HELP boveda_queue_consumer_messages_total Messages settled by consumers in this process.\n"
                "# TYPE boveda_queue_consumer_messages_total counter\n");
    pthread_mutex_lock(&g.mu);
    for (size_t i = 0; i < g.n; i++) {
        running_t *r = g.running[i];
        if (r == NULL)
            continue;
        const char *nm = r->c->name;
        bv_buf_printf(out,
                      "boveda_queue_consumer_messages_total{consumer=\"%s\",result=\"ack\"} %llu\n"
                      "boveda_queue_consumer_messages_total{consumer=\"%s\",result=\"retry\"} %llu\n"
                      "boveda_queue_consumer_messages_total{consumer=\"%s\",result=\"fail\"} %llu\n",
                      nm, (unsigned long long)atomic_load(&r->acked), nm,
                      (unsigned long long)atomic_load(&r->retried), nm,
                      (unsigned long long)atomic_load(&r->failed));
    }
    pthread_mutex_unlock(&g.mu);
}

/* ---- the module ---- */

int bv_queue_module_init(bv_app_t *app)
{
    g.store = app->store;
    return 0;
}

int bv_queue_module_routes(bv_app_t *app)
{
    int rc = bv_http_add_metrics(app->http, render_metrics, app->store);
    if (rc != 0)
        return rc;
    /* BOVEDA_SERVE_CONSUMERS: "all", "none" (only the outbox drainer and the sweeper) or a
     * list, e.g. to leave the transfers consumer to a separate `boveda worker`. */
    const char *which = bv_config_str(app->cfg, "SERVE_CONSUMERS");
    if (which == NULL || which[0] == '\0' || strcmp(which, "all") == 0)
        which = NULL;
    else if (strcmp(which, "none") == 0)
        which = "";
    return bv_queue_workers_start(app->store, which);
}

void bv_queue_module_fini(bv_app_t *app)
{
    (void)app;
    bv_queue_workers_stop();
}

/* ---- boveda worker ---- */

int bv_queue_worker_main(bv_app_t *app, int argc, char **argv)
{
    const char *only = NULL;
    sigset_t set;
    int sig = 0, i = 0, rc;
    if (i < argc && strcmp(argv[i], "worker") == 0)
        i++;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strncmp(argv[i], "--only=", 7) == 0)
            only = argv[i] + 7;
        else {
            fprintf(stderr, "usage: boveda worker [--only NAME[,NAME...]]\n");
            return 2;
        }
    }
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread starts: they inherit it */
    signal(SIGPIPE, SIG_IGN);
    if ((rc = bv_queue_workers_start(app->store, only)) != 0) {
        fprintf(stderr, "boveda worker: %s\n",
                rc == BV_ENOTFOUND ? "--only names a consumer that does not exist"
                                   : "cannot start consumers");
        return 2;
    }
    pthread_mutex_lock(&g.mu);
    for (size_t k = 0; k < g.n; k++)
        if (g.running[k] != NULL)
            bv_log_info("worker consumer", "\"consumer\":\"%s\",\"queue\":\"%s\"", g.registered[k]->name,
                        g.registered[k]->queue);
    pthread_mutex_unlock(&g.mu);
    char esc[256];
    bv_json_escape(esc, sizeof(esc), only != NULL ? only : "*");
    bv_log_info("worker ready", "\"only\":\"%s\"", esc);
    sigwait(&set, &sig);
    bv_log_info("signal received, stopping consumers", "\"signal\":\"%s\"",
                sig == SIGTERM ? "SIGTERM" : "SIGINT");
    bv_queue_workers_stop();
    bv_log_info("stopped", NULL);
    return 0;
}
