/* Audit log benchmarks (issue 3):
 *   1. appends/s inside the group-commit writer: T threads each calling bv_store_write with
 *      a job that only appends one record (one durable batch per group commit);
 *   2. raw append cost: many appends inside one write job (no commit per record);
 *   3. verify: records/s walked, hashed and linked by bv_audit_verify.
 * usage: bench_audit [threads=16] [seconds=3] [verify_records=200000] [dir=/tmp] */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit_module.h"
#include "base/log.h"
#include "base/util.h"

static bv_store_t *st;
static atomic_int stop_flag;
static json_t *details;

static int append_one(bv_tx_t *tx, void *arg)
{
    (void)arg;
    bv_audit_event_t ev = {.actor = "user:0190f0a0-0000-7000-8000-000000000001",
                           .action = "ledger.transfer.create",
                           .resource = "transfer:0190f0a0-0000-7000-8000-0000000000ff",
                           .outcome = "success",
                           .source_ip = "203.0.113.7",
                           .request_id = "0190f0a0-0000-7000-8000-00000000abcd",
                           .details = details};
    return bv_audit_append(tx, &ev);
}

typedef struct {
    long n;
    int err;
} worker_t;

static void *worker(void *arg)
{
    worker_t *w = arg;
    while (!atomic_load(&stop_flag)) {
        int rc = bv_store_write(st, append_one, NULL);
        if (rc != 0) {
            w->err = rc;
            break;
        }
        w->n++;
    }
    return NULL;
}

typedef struct {
    long n;
} many_t;

static int append_many(bv_tx_t *tx, void *arg)
{
    many_t *m = arg;
    for (long i = 0; i < m->n; i++) {
        int rc = append_one(tx, NULL);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 16;
    double seconds = argc > 2 ? atof(argv[2]) : 3.0;
    long verify_records = argc > 3 ? atol(argv[3]) : 200000;
    const char *base = argc > 4 ? argv[4] : "/tmp";
    char dir[512], db[600], cmd[700];
    int rc = 1;

    if (threads < 1 || threads > 1024 || seconds <= 0 || verify_records < 0) {
        fprintf(stderr, "usage: bench_audit [threads] [seconds] [verify_records] [dir]\n");
        return 2;
    }
    bv_log_set_level(BV_LOG_WARN);
    snprintf(dir, sizeof(dir), "%s/bv-bench-audit-XXXXXX", base);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(db, sizeof(db), "%s/boveda.db", dir);
    bv_store_options_t opt = {.path = db, .batch_max = 1024, .busy_timeout_ms = 5000};
    if (bv_store_open(&opt, &st) != 0 || bv_store_migrate(st, NULL) != 0) {
        fprintf(stderr, "cannot open the store in %s\n", dir);
        goto out;
    }
    details = json_pack("{s:s, s:s, s:s}", "amount", "125.50", "currency", "EUR", "debit_account",
                        "0190f0a0-0000-7000-8000-000000000002");

    /* 1. group-commit appends */
    {
        pthread_t *t = calloc((size_t)threads, sizeof(*t));
        worker_t *w = calloc((size_t)threads, sizeof(*w));
        bv_store_stats_t s0, s1;
        long total = 0;
        bv_store_get_stats(st, &s0);
        int64_t t0 = bv_mono_us();
        for (int i = 0; i < threads; i++)
            pthread_create(&t[i], NULL, worker, &w[i]);
        usleep((useconds_t)(seconds * 1e6));
        atomic_store(&stop_flag, 1);
        for (int i = 0; i < threads; i++) {
            pthread_join(t[i], NULL);
            total += w[i].n;
            if (w[i].err != 0)
                fprintf(stderr, "worker error: %s\n", bv_err_name(w[i].err));
        }
        double el = (double)(bv_mono_us() - t0) / 1e6;
        bv_store_get_stats(st, &s1);
        uint64_t batches = s1.batches - s0.batches;
        printf(
            "audit_append_group_commit threads=%d seconds=%.2f appends=%ld appends_per_s=%.0f batches=%llu "
            "avg_batch=%.1f\n",
            threads, el, total, (double)total / el, (unsigned long long)batches,
            batches ? (double)total / (double)batches : 0.0);
        free(t);
        free(w);
    }

    /* 2. raw append cost, and filling the log for the verify run */
    {
        int64_t head = 0;
        bv_audit_head(st, &head, NULL);
        long need = verify_records > head ? verify_records - head : 0;
        if (need > 0) {
            many_t m = {.n = need};
            int64_t t0 = bv_mono_us();
            if ((rc = bv_store_write(st, append_many, &m)) != 0) {
                fprintf(stderr, "fill failed: %s\n", bv_err_name(rc));
                rc = 1;
                goto out;
            }
            double el = (double)(bv_mono_us() - t0) / 1e6;
            printf("audit_append_one_job appends=%ld seconds=%.2f appends_per_s=%.0f\n", need, el,
                   (double)need / el);
        }
    }

    /* 3. verify */
    {
        bv_audit_verify_result_t v;
        int64_t t0 = bv_mono_us();
        if ((rc = bv_audit_verify(st, NULL, &v)) != 0 || !v.ok) {
            fprintf(stderr, "verify failed: %s %s\n", bv_err_name(rc), v.detail);
            rc = 1;
            goto out;
        }
        double el = (double)(bv_mono_us() - t0) / 1e6;
        printf("audit_verify records=%lld seconds=%.2f records_per_s=%.0f\n", (long long)v.n_records, el,
               (double)v.n_records / el);
    }
    rc = 0;
out:
    json_decref(details);
    bv_store_close(st);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    return rc;
}
