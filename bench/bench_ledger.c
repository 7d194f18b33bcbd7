/* Ledger engine benchmark (issue 4). In-process: store + ledger engine, no HTTP.
 *
 *   bench_ledger [--accounts N] [--transfers N] [--threads N] [--batch N] [--naive N] [--dir D]
 *   bench_ledger --memory N [--accounts N] [--dir D]
 *
 * Runs, in one process and on one machine:
 *   1. uniform random pairs among N accounts, T client threads each submitting batches of B
 *      (default 16 x 256), then 4 clients submitting full batches of 8,190 (the API's maximum)
 *   2. the same two with every credit going to one hot account
 *   3. T client threads each submitting single transfers (coalesced by the engine)
 *   4. the naive baseline: one SQLite transaction per transfer on the same schema (read both
 *      accounts, insert the transfer with its postings and chain links, update two balances and
 *      chain heads with the anchors due, insert an outbox row; no audit record),
 *      synchronous=FULL, opened directly with sqlite3
 * and prints transfers/s with ratios, plus the resident set before and after.
 * With --memory N it only runs N uniform transfers (4 clients, full batches) and samples the
 * resident set every N/10: the memory goal is a flat resident set over 10 million. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "ledger/ledger.h"
#include "store/store.h"

static int n_accounts = 10000, n_threads = 16, batch = 256, n_naive = 2000;
static long n_transfers = 200000, n_memory = 0;
static bv_ledger_t *lg;
static char (*ids)[BV_UUID_STR_LEN + 1];
static char funding_id[BV_UUID_STR_LEN + 1];
static atomic_long next_ref;
static atomic_long n_failed;
static const bv_ledger_ctx_t ctx = {.actor = "system"};

static long rss_kb(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: cheap and good enough to pick accounts */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

typedef struct {
    int id;
    long count; /* transfers to submit */
    int hot;    /* credit always to account 0 */
    int single; /* one transfer per call */
    int batch;  /* transfers per call otherwise */
} client_t;

static void *client_main(void *arg)
{
    client_t *cl = arg;
    uint64_t seed = 0x9e3779b97f4a7c15ULL * (uint64_t)(cl->id + 1);
    int b = cl->single ? 1 : cl->batch;
    bv_ledger_transfer_req_t *reqs = calloc((size_t)b, sizeof(*reqs));
    bv_ledger_result_t *res = calloc((size_t)b, sizeof(*res));
    char (*refs)[40] = calloc((size_t)b, 40);
    for (long done = 0; done < cl->count;) {
        int n = (int)(cl->count - done < b ? cl->count - done : b);
        for (int i = 0; i < n; i++) {
            int d, c;
            do {
                d = (int)(rng_next(&seed) % (uint64_t)n_accounts);
                c = cl->hot ? 0 : (int)(rng_next(&seed) % (uint64_t)n_accounts);
            } while (d == c);
            snprintf(refs[i], 40, "bench-%ld", atomic_fetch_add(&next_ref, 1));
            reqs[i] = (bv_ledger_transfer_req_t){.debit_account = ids[d], .credit_account = ids[c], .amount = 1,
                                                 .currency = "USD", .reference = refs[i]};
        }
        int rc = bv_ledger_batch(lg, &ctx, reqs, (size_t)n, false, res);
        for (int i = 0; i < n; i++)
            if (rc != 0 || res[i].rc != 0)
                atomic_fetch_add(&n_failed, 1);
        done += n;
    }
    free(reqs);
    free(res);
    free(refs);
    return NULL;
}

static double run_clients(long total, int hot, int single, int threads, int per_call)
{
    pthread_t th[256];
    client_t cl[256];
    if (threads > 256)
        threads = 256;
    atomic_store(&n_failed, 0);
    int64_t t0 = bv_mono_us();
    for (int i = 0; i < threads; i++) {
        cl[i] = (client_t){.id = i + (hot ? 1000 : 0) + (single ? 2000 : 0) + per_call * 3, .count = total / threads,
                           .hot = hot, .single = single, .batch = per_call};
        pthread_create(&th[i], NULL, client_main, &cl[i]);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    double secs = (double)(bv_mono_us() - t0) / 1e6;
    long done = (total / threads) * threads;
    if (atomic_load(&n_failed) > 0)
        fprintf(stderr, "warning: %ld transfers failed\n", atomic_load(&n_failed));
    return (double)done / secs;
}

/* ---- the naive baseline: one transaction per transfer, straight SQLite ---- */
static double run_naive(const char *path, int n)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *sel, *ins_t, *upd, *ins_o, *ins_a;
    int64_t rids[2];
    uint64_t seed = 42;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return 0;
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON", NULL, NULL, NULL);
    sqlite3_prepare_v2(db, "SELECT rid, balance - holds + overdraft_limit FROM ledger_accounts WHERE id = ?", -1, &sel,
                       NULL);
    /* the transfer with both balances after it and its links into both movement chains */
    sqlite3_prepare_v2(db, "INSERT INTO ledger_transfers(id, reference, debit, credit, currency, amount, "
                           "posted_amount, status, created_at, posted_at, debit_balance_after, credit_balance_after, "
                           "debit_prev, credit_prev) "
                           "VALUES (?1, ?2, ?3, ?4, 'USD', 1, 1, 'posted', ?5, ?5, "
                           "(SELECT balance - 1 FROM ledger_accounts WHERE rid = ?3), "
                           "(SELECT balance + 1 FROM ledger_accounts WHERE rid = ?4), "
                           "(SELECT last_movement FROM ledger_accounts WHERE rid = ?3), "
                           "(SELECT last_movement FROM ledger_accounts WHERE rid = ?4))",
                       -1, &ins_t, NULL);
    sqlite3_prepare_v2(db, "INSERT INTO ledger_anchors(account, posted_at, xfer) SELECT account, ?, ? FROM ledger_balances "
                           "WHERE account = ? AND movements % 64 = 0", -1, &ins_a, NULL);
    sqlite3_prepare_v2(db, "UPDATE ledger_balances SET balance = balance + ?, last_movement = ?, "
                           "movements = movements + 1 WHERE account = ?", -1, &upd, NULL);
    sqlite3_prepare_v2(db, "INSERT INTO outbox(id, topic, payload, created_at) VALUES (?, 'ledger', ?, ?)", -1, &ins_o,
                       NULL);
    int64_t t0 = bv_mono_us(), ts = bv_now_us() + 1000000000;
    for (int i = 0; i < n; i++) {
        char uid[BV_UUID_STR_LEN + 1], oid[BV_UUID_STR_LEN + 1], ref[40];
        int d = (int)(rng_next(&seed) % (uint64_t)n_accounts), c = (d + 1) % n_accounts;
        int64_t avail = 0;
        bv_uuid7(uid);
        bv_uuid7(oid);
        snprintf(ref, sizeof(ref), "naive-%d", i);
        sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        const char *acct[2] = {ids[d], ids[c]};
        for (int k = 0; k < 2; k++) {
            sqlite3_bind_text(sel, 1, acct[k], -1, SQLITE_STATIC);
            if (sqlite3_step(sel) == SQLITE_ROW) {
                rids[k] = sqlite3_column_int64(sel, 0);
                if (k == 0)
                    avail = sqlite3_column_int64(sel, 1);
            }
            sqlite3_reset(sel);
        }
        if (avail < 1) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            continue;
        }
        ts++;
        sqlite3_bind_text(ins_t, 1, uid, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins_t, 2, ref, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins_t, 3, rids[0]);
        sqlite3_bind_int64(ins_t, 4, rids[1]);
        sqlite3_bind_int64(ins_t, 5, ts);
        sqlite3_step(ins_t);
        sqlite3_reset(ins_t);
        int64_t xfer = sqlite3_last_insert_rowid(db);
        for (int k = 0; k < 2; k++) {
            sqlite3_bind_int64(ins_a, 1, ts);
            sqlite3_bind_int64(ins_a, 2, xfer);
            sqlite3_bind_int64(ins_a, 3, rids[k]);
            sqlite3_step(ins_a);
            sqlite3_reset(ins_a);
            sqlite3_bind_int64(upd, 1, k == 0 ? -1 : 1);
            sqlite3_bind_int64(upd, 2, xfer);
            sqlite3_bind_int64(upd, 3, rids[k]);
            sqlite3_step(upd);
            sqlite3_reset(upd);
        }
        sqlite3_bind_text(ins_o, 1, oid, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins_o, 2, "{}", -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins_o, 3, ts);
        sqlite3_step(ins_o);
        sqlite3_reset(ins_o);
        if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
            fprintf(stderr, "naive commit failed: %s\n", sqlite3_errmsg(db));
    }
    double secs = (double)(bv_mono_us() - t0) / 1e6;
    sqlite3_finalize(sel);
    sqlite3_finalize(ins_t);
    sqlite3_finalize(upd);
    sqlite3_finalize(ins_o);
    sqlite3_finalize(ins_a);
    sqlite3_close(db);
    return n / secs;
}

typedef struct {
    int from, to;
} opener_t;

static void *opener_main(void *arg)
{
    opener_t *o = arg;
    bv_ledger_account_t a;
    for (int i = o->from; i < o->to; i++) {
        bv_ledger_account_req_t r = {.type = "checking", .currency = "USD", .holder_name = "Bench holder"};
        if (bv_ledger_account_create(lg, &ctx, &r, &a, NULL) != 0)
            abort();
        memcpy(ids[i], a.id, sizeof(ids[i]));
    }
    return NULL;
}

int main(int argc, char **argv)
{
    char dir[512] = "", path[600];
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--accounts") == 0)
            n_accounts = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--transfers") == 0)
            n_transfers = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--threads") == 0)
            n_threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--batch") == 0)
            batch = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--naive") == 0)
            n_naive = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--memory") == 0)
            n_memory = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--dir") == 0)
            snprintf(dir, sizeof(dir), "%s", argv[i + 1]);
    }
    if (n_accounts < 2 || n_threads < 1 || batch < 1 || batch > BV_LEDGER_BATCH_MAX)
        return 2;
    bv_log_set_level(BV_LOG_WARN);
    if (dir[0] == '\0') {
        snprintf(dir, sizeof(dir), "/tmp/bench_ledger.XXXXXX");
        if (mkdtemp(dir) == NULL)
            return 1;
    }
    snprintf(path, sizeof(path), "%s/ledger.db", dir);

    bv_store_t *st = NULL;
    bv_store_options_t so = {.path = path, .batch_max = 1024, .busy_timeout_ms = 5000};
    if (bv_store_open(&so, &st) != 0 || bv_store_migrate(st, NULL) != 0 || bv_ledger_open(st, NULL, &lg) != 0) {
        fprintf(stderr, "cannot open the store in %s\n", dir);
        return 1;
    }
    ids = calloc((size_t)n_accounts, sizeof(*ids));
    bv_ledger_account_t a;
    bv_ledger_account_req_t fund = {.type = "internal", .currency = "USD", .holder_name = "Funding",
                                    .allow_negative = true};
    bv_ledger_account_create(lg, &ctx, &fund, &a, NULL);
    memcpy(funding_id, a.id, sizeof(funding_id));
    {
        /* open the accounts from many threads so the engine coalesces them */
        pthread_t th[32];
        opener_t op[32];
        for (int t = 0; t < 32; t++) {
            op[t] = (opener_t){.from = n_accounts * t / 32, .to = n_accounts * (t + 1) / 32};
            pthread_create(&th[t], NULL, opener_main, &op[t]);
        }
        for (int t = 0; t < 32; t++)
            pthread_join(th[t], NULL);
    }
    /* fund every account generously, in batches */
    {
        bv_ledger_transfer_req_t *reqs = calloc(1000, sizeof(*reqs));
        bv_ledger_result_t *res = calloc(1000, sizeof(*res));
        char (*refs)[32] = calloc(1000, 32);
        for (int i = 0; i < n_accounts; i += 1000) {
            int n = n_accounts - i < 1000 ? n_accounts - i : 1000;
            for (int k = 0; k < n; k++) {
                snprintf(refs[k], 32, "fund-%d", i + k);
                reqs[k] = (bv_ledger_transfer_req_t){.debit_account = funding_id, .credit_account = ids[i + k],
                                                     .amount = 100000000000LL, .currency = "USD",
                                                     .reference = refs[k]};
            }
            bv_ledger_batch(lg, &ctx, reqs, (size_t)n, false, res);
        }
        free(reqs);
        free(res);
        free(refs);
    }
    long rss0 = rss_kb();
    if (n_memory > 0) { /* the memory run */
        long step = n_memory / 10, lo = 0, hi = 0, first = 0, failed = 0, lo2 = 0, hi2 = 0, second = 0;
        int64_t t0 = bv_mono_us();
        printf("memory run: %ld uniform transfers (4 clients, batches of %d), resident set every %ld:\n", n_memory,
               BV_LEDGER_BATCH_MAX, step);
        for (int k = 1; k <= 10; k++) {
            run_clients(step, 0, 0, 4, BV_LEDGER_BATCH_MAX);
            failed += atomic_load(&n_failed);
            long r = rss_kb();
            if (k == 1)
                first = lo = hi = r;
            lo = r < lo ? r : lo;
            hi = r > hi ? r : hi;
            if (k == 2)
                second = lo2 = hi2 = r;
            lo2 = k >= 2 && r < lo2 ? r : lo2;
            hi2 = k >= 2 && r > hi2 ? r : hi2;
            printf("  after %9ld: %8ld kB  (%.0f transfers/s so far)\n", step * k, r,
                   (double)(step * k) / ((double)(bv_mono_us() - t0) / 1e6));
        }
        printf("resident set from the first sample on: %ld..%ld kB, %+.1f%% / %+.1f%% of the first\n", lo, hi,
               100.0 * (double)(lo - first) / (double)first, 100.0 * (double)(hi - first) / (double)first);
        if (second > 0) /* the store's page cache (64 MiB) is full by then */
            printf("from the second on (caches full):       %ld..%ld kB, %+.1f%% / %+.1f%% of the second (goal: "
                   "within 10%%)\n",
                   lo2, hi2, 100.0 * (double)(lo2 - second) / (double)second,
                   100.0 * (double)(hi2 - second) / (double)second);
        bv_ledger_close(lg);
        bv_store_close(st);
        return failed > 0 ? 1 : 0;
    }
    printf("bench_ledger: %d accounts, %ld transfers per run, %d client threads, batch %d, every commit fsynced "
           "before it is answered, dir %s\n",
           n_accounts, n_transfers, n_threads, batch, dir);
    double uniform = run_clients(n_transfers, 0, 0, n_threads, batch);
    printf("uniform random pairs, %2d x batches of %4d:   %10.0f transfers/s\n", n_threads, batch, uniform);
    double hot = run_clients(n_transfers, 1, 0, n_threads, batch);
    printf("every credit to one hot account, same:       %10.0f transfers/s\n", hot);
    double uniform_full = run_clients(n_transfers, 0, 0, 4, BV_LEDGER_BATCH_MAX);
    printf("uniform random pairs,  4 x batches of %4d:   %10.0f transfers/s\n", BV_LEDGER_BATCH_MAX, uniform_full);
    double hot_full = run_clients(n_transfers, 1, 0, 4, BV_LEDGER_BATCH_MAX);
    printf("every credit to one hot account, same:       %10.0f transfers/s\n", hot_full);
    int single_threads = n_threads * 8 > 256 ? 256 : n_threads * 8;
    double single = run_clients(n_transfers / 4, 0, 1, single_threads, 1);
    printf("single transfers, %3d client threads:        %10.0f transfers/s\n", single_threads, single);
    long rss1 = rss_kb();
    /* memory: the caches are warm now; another run must not grow the resident set */
    double again = run_clients(n_transfers, 0, 0, n_threads, batch);
    long rss2 = rss_kb();
    printf("uniform again (memory run):                  %10.0f transfers/s\n", again);
    bv_store_stats_t stats;
    bv_store_get_stats(st, &stats);
    bv_ledger_close(lg);
    bv_store_close(st);

    double naive = run_naive(path, n_naive);
    printf("naive one transaction per transfer:          %10.0f transfers/s\n", naive);
    if (naive > 0)
        printf("ratios vs naive: uniform %.1fx, hot %.1fx, full batches %.1fx / %.1fx, single %.1fx\n",
               uniform / naive, hot / naive, uniform_full / naive, hot_full / naive, single / naive);
    printf("goals: uniform >= 50000/s, hot >= 40000/s, >= 10x naive (best batch size: %.0f uniform, %.0f hot)\n",
           uniform > uniform_full ? uniform : uniform_full, hot > hot_full ? hot : hot_full);
    printf("group commits: %llu batches, %llu jobs\n", (unsigned long long)stats.batches,
           (unsigned long long)stats.jobs);
    printf("resident set: %ld kB after set-up, %ld kB after %ld transfers, %ld kB after %ld more (%+.1f%% on the "
           "last run)\n",
           rss0, rss1, n_transfers * 4 + n_transfers / 4, rss2, n_transfers,
           rss1 > 0 ? 100.0 * (double)(rss2 - rss1) / (double)rss1 : 0.0);
    return 0;
}
