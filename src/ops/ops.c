#include "ops/ops.h"

#include <stdio.h>
#include <string.h>

#include "base/log.h"

static void on_healthz(bv_call_t *c)
{
    static const char body[] = "{\"status\":\"ok\"}";
    bv_reply_raw(c, 200, "application/json", body, sizeof(body) - 1);
}

static void on_readyz(bv_call_t *c)
{
    bv_app_t *app = c->ctx;
    int applied = 0, embedded = 0;
    int rc = bv_store_schema_version(app->store, &applied, &embedded);
    if (rc != 0) {
        bv_reply_problem(c, BV_EUNAVAILABLE, "the database is not usable", NULL);
        return;
    }
    if (applied != embedded) {
        char detail[128];
        snprintf(detail, sizeof(detail), "schema version %d, binary expects %d: run boveda migrate", applied, embedded);
        bv_reply_problem(c, BV_EUNAVAILABLE, detail, NULL);
        return;
    }
    json_t *o = json_pack("{s:s,s:i}", "status", "ready", "schema_version", applied);
    bv_reply_json(c, 200, o);
}

static void store_metrics(void *cls, bv_buf_t *out)
{
    bv_app_t *app = cls;
    bv_store_stats_t st;
    bv_store_get_stats(app->store, &st);
    bv_buf_printf(out,
                  "# HELP boveda_store_commit_batch_size Write jobs per group commit.\n"
                  "# TYPE boveda_store_commit_batch_size histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i < 12; i++) {
        cum += st.batch_size_buckets[i];
        if (bv_store_batch_bounds[i] == 0)
            bv_buf_printf(out, "boveda_store_commit_batch_size_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        else
            bv_buf_printf(out, "boveda_store_commit_batch_size_bucket{le=\"%u\"} %llu\n", bv_store_batch_bounds[i],
                          (unsigned long long)cum);
    }
    bv_buf_printf(out,
                  "boveda_store_commit_batch_size_sum %llu\nboveda_store_commit_batch_size_count %llu\n"
                  "# HELP boveda_store_syncs_total fsyncs of the WAL that made commits durable.\n"
                  "# TYPE boveda_store_syncs_total counter\nboveda_store_syncs_total %llu\n"
                  "# HELP boveda_store_write_jobs_failed_total Write jobs rolled back to their savepoint.\n"
                  "# TYPE boveda_store_write_jobs_failed_total counter\nboveda_store_write_jobs_failed_total %llu\n"
                  "# HELP boveda_store_write_queue_depth Write jobs waiting for the writer.\n"
                  "# TYPE boveda_store_write_queue_depth gauge\nboveda_store_write_queue_depth %llu\n"
                  "# HELP boveda_build_info Build of the running binary.\n# TYPE boveda_build_info gauge\n"
                  "boveda_build_info{version=\"%s\",commit=\"%s\"} 1\n",
                  (unsigned long long)st.jobs, (unsigned long long)st.batches, (unsigned long long)st.syncs,
                  (unsigned long long)st.jobs_failed,
                  (unsigned long long)st.queue_depth, BOVEDA_VERSION, BOVEDA_COMMIT);
}

static void on_metrics(bv_call_t *c)
{
    bv_app_t *app = c->ctx;
    bv_buf_t out = {0};
    bv_http_metrics_render(app->http, &out);
    bv_reply_raw(c, 200, "text/plain; version=0.0.4; charset=utf-8", out.data, out.len);
    bv_buf_free(&out);
}

static const bv_route_t routes[] = {
    {"GET", "/healthz", on_healthz, NULL, 0, BV_ROUTE_ON_LOOP, NULL},
    {"GET", "/readyz", on_readyz, NULL, 0, 0, NULL},
    {"GET", "/metrics", on_metrics, "metrics:read", 0, 0, NULL},
};

int bv_ops_routes(bv_app_t *app)
{
    int rc = bv_http_add_routes(app->http, routes, sizeof(routes) / sizeof(routes[0]), app);
    if (rc == 0)
        rc = bv_http_add_metrics(app->http, store_metrics, app);
    return rc;
}

int bv_ops_admin_db(bv_app_t *app, int argc, char **argv)
{
    int applied = 0, embedded = 0, json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "status") != 0) {
            fprintf(stderr, "usage: boveda admin db status [--json]\n");
            return 2;
        }
    }
    if (bv_store_schema_version(app->store, &applied, &embedded) != 0) {
        fprintf(stderr, "boveda: database not usable\n");
        return 1;
    }
    if (json)
        printf("{\"schema_version\":%d,\"binary_schema_version\":%d}\n", applied, embedded);
    else
        printf("schema version %d (binary expects %d)\n", applied, embedded);
    return applied == embedded ? 0 : 1;
}
