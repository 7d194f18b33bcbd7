/* The audit module's life cycle (the checkpoint thread) and `boveda admin audit`. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit/audit_module.h"
#include "base/log.h"

/* ---- the checkpoint thread ---- */

static struct {
    bv_store_t *store;
    bv_keys_t *keys;
    pthread_t thread;
    int running;
    int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void checkpoint_now(const char *why)
{
    int64_t seq = 0;
    int rc = bv_audit_checkpoint_ex(g.store, g.keys, &seq);
    if (rc != 0)
        bv_log_error("audit checkpoint failed", "\"reason\":\"%s\",\"error\":\"%s\"", why, bv_err_name(rc));
}

static void *checkpoint_loop(void *arg)
{
    (void)arg;
    int64_t last_time = bv_mono_us();
    pthread_mutex_lock(&g.mu);
    while (!g.stop) {
        struct timespec ts;
        int64_t head = 0, last_cp = 0;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += 1; /* look at the head once a second: a cheap indexed read */
        while (!g.stop && pthread_cond_timedwait(&g.cv, &g.mu, &ts) != ETIMEDOUT)
            ;
        if (g.stop)
            break;
        pthread_mutex_unlock(&g.mu);
        if (bv_audit_head(g.store, &head, &last_cp) == 0 && head > last_cp &&
            (head - last_cp >= BV_AUDIT_CHECKPOINT_RECORDS ||
             bv_mono_us() - last_time >= (int64_t)BV_AUDIT_CHECKPOINT_SECONDS * 1000000)) {
            checkpoint_now("periodic");
            last_time = bv_mono_us();
        }
        pthread_mutex_lock(&g.mu);
    }
    pthread_mutex_unlock(&g.mu);
    return NULL;
}

int bv_audit_module_init(bv_app_t *app)
{
    pthread_condattr_t ca;
    g.store = app->store;
    g.keys = app->keys;
    if (app->http == NULL)
        return 0; /* admin commands and workers: no background thread */
    if (app->keys == NULL) {
        bv_log_warn("audit checkpoints disabled: no key store", NULL);
        return 0;
    }
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g.cv, &ca);
    pthread_condattr_destroy(&ca);
    g.stop = 0;
    if (pthread_create(&g.thread, NULL, checkpoint_loop, NULL) != 0) {
        pthread_cond_destroy(&g.cv);
        bv_log_error("cannot start the audit checkpoint thread", NULL);
        return BV_EINTERNAL;
    }
    g.running = 1;
    return 0;
}

void bv_audit_module_fini(bv_app_t *app)
{
    (void)app;
    if (!g.running)
        return;
    pthread_mutex_lock(&g.mu);
    g.stop = 1;
    pthread_cond_signal(&g.cv);
    pthread_mutex_unlock(&g.mu);
    pthread_join(g.thread, NULL);
    pthread_cond_destroy(&g.cv);
    g.running = 0;
    checkpoint_now("shutdown"); /* HTTP is stopped by now: this signs the final head */
}

/* ---- boveda admin audit ---- */

static int usage(void)
{
    fprintf(stderr, "usage: boveda admin audit verify [--json]\n"
                    "       boveda admin audit checkpoint\n");
    return 2;
}

static int cmd_verify(bv_app_t *app, int json)
{
    bv_audit_verify_result_t r;
    int rc = bv_audit_verify(app->store, app->keys, &r);
    if (rc != 0) {
        if (json)
            printf("{\"ok\":false,\"error\":\"%s\"}\n", bv_err_slug(rc));
        else
            fprintf(stderr, "audit verify: cannot complete: %s\n",
                    rc == BV_EKEYSTORE ? "key store unavailable (needed to verify checkpoints)"
                                       : bv_err_title(rc));
        return 2;
    }
    if (json) {
        json_t *o = json_pack("{s:b, s:I, s:I, s:I, s:s}", "ok", r.ok, "records", (json_int_t)r.n_records,
                              "checkpoints", (json_int_t)r.n_checkpoints, "head_seq", (json_int_t)r.head_seq,
                              "head_hash", r.head_hash);
        if (o != NULL && !r.ok)
            json_object_set_new(o, "failure",
                                json_pack("{s:s, s:I, s:s?, s:s}", "reason", bv_audit_failure_name(r.failure),
                                          "seq", (json_int_t)r.seq, "id", r.id[0] ? r.id : NULL, "detail",
                                          r.detail));
        char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (s == NULL)
            return 2;
        printf("%s\n", s);
        free(s);
    } else if (r.ok) {
        printf("audit chain OK: %lld records, %lld checkpoints verified, head seq %lld hash %s\n",
               (long long)r.n_records, (long long)r.n_checkpoints, (long long)r.head_seq,
               r.head_hash[0] ? r.head_hash : "-");
    } else {
        printf("audit chain FAILED: %s at seq %lld%s%s\n  %s\n", bv_audit_failure_name(r.failure),
               (long long)r.seq, r.id[0] ? " id " : "", r.id, r.detail);
    }
    return r.ok ? 0 : 1;
}

static int cmd_checkpoint(bv_app_t *app)
{
    int64_t seq = 0;
    int rc = bv_audit_checkpoint_ex(app->store, app->keys, &seq);
    if (rc != 0) {
        fprintf(stderr, "audit checkpoint failed: %s\n", bv_err_title(rc));
        return 2;
    }
    if (seq == 0)
        printf("audit log is empty: nothing to checkpoint\n");
    else
        printf("audit checkpoint at seq %lld\n", (long long)seq);
    return 0;
}

int bv_audit_admin_main(bv_app_t *app, int argc, char **argv)
{
    int i = 0, json = 0;
    const char *sub;
    if (i < argc && strcmp(argv[i], "audit") == 0) /* tolerate argv[0] being the group name */
        i++;
    if (i >= argc)
        return usage();
    sub = argv[i++];
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0 && strcmp(sub, "verify") == 0)
            json = 1;
        else
            return usage();
    }
    if (strcmp(sub, "verify") == 0)
        return cmd_verify(app, json);
    if (strcmp(sub, "checkpoint") == 0)
        return cmd_checkpoint(app);
    return usage();
}
