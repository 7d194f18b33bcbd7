/* Group commit vs one transaction per write, on the same schema and durability settings
 * (WAL, synchronous=FULL, a real file on disk).
 *
 *   bench_store [DIR] [THREADS] [WRITES_PER_THREAD] [BASELINE_WRITES]
 *
 * (a) THREADS threads each call bv_store_write WRITES_PER_THREAD times, one INSERT per job:
 *     the writer thread batches concurrent jobs into one transaction and one fsync.
 * (b) one thread runs BEGIN IMMEDIATE; INSERT; COMMIT per write with sqlite3 directly:
 *     the best a one-transaction-per-request server can do (more threads only add lock
 *     contention, the fsync per commit stays).
 * Both databases are created in a fresh directory under DIR (default "."; do not point it
 * at a tmpfs, where fsync costs nothing) and removed afterwards. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/errors.h"
#include "base/log.h"
#include "base/util.h"
#include "store/store.h"

#define SCHEMA                                                                             \
    "CREATE TABLE IF NOT EXISTS movement (id TEXT PRIMARY KEY, account_id TEXT NOT NULL, " \
    "amount INTEGER NOT NULL, created_at INTEGER NOT NULL) STRICT"
#define INSERT "INSERT INTO movement (id, account_id, amount, created_at) VALUES (?, ?, ?, ?)"

static const char *account_id = "01890a5d-ac96-774b-bcce-b302099a8057";

typedef struct {
    bv_store_t *store;
    int writes;
    int failures;
    pthread_barrier_t *start;
} worker_t;

static int create_schema(bv_tx_t *tx, void *arg)
{
    (void)arg;
    return bv_tx_exec(tx, SCHEMA);
}

static int insert_one(bv_tx_t *tx, void *arg)
{
    (void)arg;
    char id[BV_UUID_STR_LEN + 1];
    bv_uuid7(id);
    bv_stmt_t *s = bv_tx_prepare(tx, INSERT);
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, id, -1);
    bv_stmt_bind_text(s, 2, account_id, -1);
    bv_stmt_bind_int64(s, 3, 12550);
    bv_stmt_bind_int64(s, 4, bv_now_us());
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc == BV_DONE ? 0 : (rc < 0 ? rc : BV_EINTERNAL);
}

typedef struct {
    int64_t n;
} count_t;

static int count_rows(bv_tx_t *tx, void *arg)
{
    count_t *c = arg;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT count(*) FROM movement");
    if (s == NULL)
        return BV_EIO;
    int rc = bv_stmt_step(s);
    if (rc == BV_ROW)
        c->n = bv_stmt_int64(s, 0);
    bv_stmt_reset(s);
    return rc == BV_ROW ? 0 : BV_EIO;
}

static void *writer_main(void *arg)
{
    worker_t *w = arg;
    pthread_barrier_wait(w->start);
    for (int i = 0; i < w->writes; i++)
        if (bv_store_write(w->store, insert_one, NULL) != 0)
            w->failures++;
    return NULL;
}

static int bench_group_commit(const char *dir, int n_threads, int per_thread, double *rate_out)
{
    char path[4096];
    bv_store_t *st = NULL;
    worker_t *workers = NULL;
    pthread_t *tids = NULL;
    pthread_barrier_t start;
    int rc = -1, started = 0, failures = 0;

    if ((size_t)snprintf(path, sizeof(path), "%s/group.db", dir) >= sizeof(path))
        goto out;
    bv_store_options_t opt = {.path = path, .batch_max = 1024, .busy_timeout_ms = 5000};
    if (bv_store_open(&opt, &st) != 0) {
        fprintf(stderr, "bench_store: cannot open %s\n", path);
        goto out;
    }
    if (bv_store_write(st, create_schema, NULL) != 0) {
        fprintf(stderr, "bench_store: schema failed\n");
        goto out;
    }
    workers = calloc((size_t)n_threads, sizeof(*workers));
    tids = calloc((size_t)n_threads, sizeof(*tids));
    if (workers == NULL || tids == NULL)
        goto out;
    pthread_barrier_init(&start, NULL, (unsigned)n_threads + 1);
    for (int i = 0; i < n_threads; i++) {
        workers[i] = (worker_t){.store = st, .writes = per_thread, .start = &start};
        if (pthread_create(&tids[i], NULL, writer_main, &workers[i]) != 0) {
            fprintf(stderr, "bench_store: pthread_create failed\n");
            abort(); /* the barrier would never open */
        }
        started++;
    }
    bv_store_stats_t before, after;
    bv_store_get_stats(st, &before);
    pthread_barrier_wait(&start);
    int64_t t0 = bv_mono_us();
    for (int i = 0; i < started; i++) {
        pthread_join(tids[i], NULL);
        failures += workers[i].failures;
    }
    int64_t elapsed = bv_mono_us() - t0;
    pthread_barrier_destroy(&start);
    bv_store_get_stats(st, &after);

    count_t c = {0};
    if (bv_store_read(st, count_rows, &c) != 0 || failures != 0 || c.n != (int64_t)n_threads * per_thread) {
        fprintf(stderr, "bench_store: group commit wrote %" PRId64 " rows, expected %d (%d failed writes)\n",
                c.n, n_threads * per_thread, failures);
        goto out;
    }
    uint64_t batches = after.batches - before.batches;
    uint64_t jobs = after.jobs - before.jobs;
    *rate_out = (double)c.n * 1e6 / (double)elapsed;
    printf("group commit   (bv_store_write, %3d threads): %7" PRId64 " writes in %6.2f s = %9.0f writes/s"
           "  (%" PRIu64 " batches, %.1f jobs per batch)\n",
           n_threads, c.n, (double)elapsed / 1e6, *rate_out, batches,
           batches ? (double)jobs / (double)batches : 0.0);
    rc = 0;
out:
    free(workers);
    free(tids);
    bv_store_close(st);
    return rc;
}

static int exec_sql(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "bench_store: %s: %s\n", sql, msg ? msg : "?");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int bench_tx_per_write(const char *dir, int writes, double *rate_out)
{
    char path[4096];
    sqlite3 *db = NULL;
    sqlite3_stmt *ins = NULL;
    int rc = -1;

    if ((size_t)snprintf(path, sizeof(path), "%s/single.db", dir) >= sizeof(path))
        goto out;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
        goto out;
    if (exec_sql(db, "PRAGMA journal_mode=WAL") || exec_sql(db, "PRAGMA synchronous=FULL") ||
        exec_sql(db, "PRAGMA foreign_keys=ON") || exec_sql(db, SCHEMA))
        goto out;
    if (sqlite3_prepare_v2(db, INSERT, -1, &ins, NULL) != SQLITE_OK)
        goto out;
    int64_t t0 = bv_mono_us();
    for (int i = 0; i < writes; i++) {
        char id[BV_UUID_STR_LEN + 1];
        bv_uuid7(id);
        if (exec_sql(db, "BEGIN IMMEDIATE"))
            goto out;
        sqlite3_bind_text(ins, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins, 2, account_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 3, 12550);
        sqlite3_bind_int64(ins, 4, bv_now_us());
        if (sqlite3_step(ins) != SQLITE_DONE) {
            fprintf(stderr, "bench_store: insert: %s\n", sqlite3_errmsg(db));
            goto out;
        }
        sqlite3_reset(ins);
        if (exec_sql(db, "COMMIT"))
            goto out;
    }
    int64_t elapsed = bv_mono_us() - t0;
    *rate_out = (double)writes * 1e6 / (double)elapsed;
    printf("one tx / write (sqlite3,          1 thread ): %7d writes in %6.2f s = %9.0f writes/s\n", writes,
           (double)elapsed / 1e6, *rate_out);
    rc = 0;
out:
    if (rc != 0 && db != NULL)
        fprintf(stderr, "bench_store: %s\n", sqlite3_errmsg(db));
    sqlite3_finalize(ins);
    sqlite3_close(db);
    return rc;
}

static int arg_int(int argc, char **argv, int i, int def)
{
    if (argc <= i)
        return def;
    int v = atoi(argv[i]);
    return v > 0 ? v : def;
}

static void remove_db(const char *dir, const char *name)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    char path[4096];
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        if ((size_t)snprintf(path, sizeof(path), "%s/%s%s", dir, name, suffixes[i]) < sizeof(path))
            unlink(path);
    }
}

int main(int argc, char **argv)
{
    const char *parent = argc > 1 ? argv[1] : ".";
    int n_threads = arg_int(argc, argv, 2, 64);
    int per_thread = arg_int(argc, argv, 3, 200);
    int baseline = arg_int(argc, argv, 4, 2000);
    char dir[4096];
    double group = 0, single = 0;
    int rc = 1;

    bv_log_set_level(BV_LOG_WARN);
    if ((size_t)snprintf(dir, sizeof(dir), "%s/bench-store-XXXXXX", parent) >= sizeof(dir) ||
        mkdtemp(dir) == NULL) {
        fprintf(stderr, "bench_store: mkdtemp %s: %s\n", dir, strerror(errno));
        return 1;
    }
    printf("bench_store: INSERT of one row per write, WAL, synchronous=FULL, in %s\n", dir);
    if (bench_group_commit(dir, n_threads, per_thread, &group) != 0)
        goto out;
    if (bench_tx_per_write(dir, baseline, &single) != 0)
        goto out;
    printf("ratio: group commit = %.1fx one transaction per write\n", group / single);
    rc = 0;
out:
    remove_db(dir, "group.db");
    remove_db(dir, "single.db");
    rmdir(dir);
    return rc;
}
