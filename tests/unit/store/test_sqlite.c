/* The SQLite adapter: the storage contract, plus a crash test (kill -9 mid-batch loses no
 * acknowledged write). */
#include "store/contract.c"

#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "base/log.h"

static char dir[256];
static char path[300];

static bv_store_t *open_at(void)
{
    bv_store_options_t opt = {.path = path};
    bv_store_t *st = NULL;
    if (bv_store_open(&opt, &st) != 0)
        return NULL;
    if (bv_store_migrate(st, NULL) != 0) {
        bv_store_close(st);
        return NULL;
    }
    return st;
}

static bv_store_t *open_fresh(void)
{
    snprintf(dir, sizeof(dir), "/tmp/boveda-store-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return NULL;
    snprintf(path, sizeof(path), "%s/test.db", dir);
    return open_at();
}

static void destroy(bv_store_t *st)
{
    char cmd[300];
    bv_store_close(st);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static const bv_store_factory_t sqlite_factory = {"sqlite", open_fresh, open_at, destroy};

/* Child: 8 threads write distinct ids as fast as they can and report each acknowledged
 * id on the pipe. The parent SIGKILLs it mid-stream, reopens, and every acked id must be
 * there. */
typedef struct {
    bv_store_t *st;
    int fd;
    int base;
} crash_arg_t;

static void *crash_writer(void *p)
{
    crash_arg_t *a = p;
    char name[32];
    for (int i = 0;; i++) {
        int id = a->base + i;
        snprintf(name, sizeof(name), "n%d", id);
        insert_t in = {.id = id, .name = name};
        if (bv_store_write(a->st, insert_item, &in) == 0) {
            if (write(a->fd, &id, sizeof(id)) != sizeof(id))
                _exit(3);
        }
    }
    return NULL;
}

static void test_crash_loses_no_acknowledged_write(void **state)
{
    (void)state;
    bv_store_t *st = fresh();
    bv_store_close(st);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        bv_store_t *cs = open_at();
        if (cs == NULL)
            _exit(2);
        pthread_t t[8];
        crash_arg_t args[8];
        for (int i = 0; i < 8; i++) {
            args[i] = (crash_arg_t){cs, fds[1], (i + 1) * 1000000};
            pthread_create(&t[i], NULL, crash_writer, &args[i]);
        }
        for (;;)
            pause();
    }
    close(fds[1]);
    usleep(700000);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status));
    /* Read every id acknowledged before the kill. */
    size_t n = 0, cap = 1 << 16;
    int *acked = malloc(cap * sizeof(int));
    int id;
    while (read(fds[0], &id, sizeof(id)) == sizeof(id)) {
        if (n == cap)
            acked = realloc(acked, (cap *= 2) * sizeof(int));
        acked[n++] = id;
    }
    close(fds[0]);
    assert_true(n > 100); /* the child did real work before dying */
    st = open_at();
    assert_non_null(st);
    for (size_t i = 0; i < n; i++) {
        lookup_t l = {.id = acked[i]};
        assert_int_equal(bv_store_read(st, lookup_item, &l), 0);
        if (!l.found)
            fail_msg("acknowledged write %d lost after kill -9", acked[i]);
    }
    printf("crash test: %zu acknowledged writes, all present after kill -9\n", n);
    free(acked);
    destroy(st);
}

/* Under commits that never pause, with readers reading, the WAL is started over once it
 * is long (here from 256 pages, 1 MB) instead of growing with everything written. SQLite
 * counts the times it started the WAL over in the WAL's header (the checkpoint sequence
 * number, a big-endian u32 at offset 12). */
static unsigned wal_restarts(void)
{
    char wal[320];
    unsigned char h[16] = {0};
    snprintf(wal, sizeof(wal), "%s-wal", path);
    FILE *f = fopen(wal, "rb");
    if (f != NULL) {
        if (fread(h, 1, sizeof(h), f) != sizeof(h))
            memset(h, 0, sizeof(h));
        fclose(f);
    }
    return (unsigned)h[12] << 24 | (unsigned)h[13] << 16 | (unsigned)h[14] << 8 | h[15];
}

typedef struct {
    bv_store_t *st;
    int base;
    volatile int *stop;
    int n;
} churn_arg_t;

static int insert_blob(bv_tx_t *tx, void *arg)
{
    static const char pad[3000] = {0};
    char name[16];
    bv_stmt_t *s = bv_tx_prepare(tx, "INSERT INTO contract_items(id, name, data) VALUES (?, ?, ?)");
    if (s == NULL)
        return BV_EIO;
    snprintf(name, sizeof(name), "c%d", *(int *)arg);
    bv_stmt_bind_int64(s, 1, *(int *)arg);
    bv_stmt_bind_text(s, 2, name, -1);
    bv_stmt_bind_blob(s, 3, pad, sizeof(pad));
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

static atomic_int churn_durable;
static void churn_done(void *arg)
{
    (void)arg;
    atomic_fetch_add(&churn_durable, 1);
}

/* pipelined, as the ledger engine writes: the next commit follows at once, never waiting
   for the fsync of the last, so the writer never pauses */
static void *churn_writer(void *p)
{
    churn_arg_t *a = p;
    while (!*a->stop) {
        int id = a->base + a->n;
        if (bv_store_write_pipelined(a->st, insert_blob, &id, churn_done, NULL) != 0)
            break;
        a->n++;
        usleep(1000);
    }
    return NULL;
}

static void *churn_reader(void *p)
{
    churn_arg_t *a = p;
    while (!*a->stop) {
        lookup_t l = {.id = a->base};
        bv_store_read(a->st, lookup_item, &l);
        usleep(200);
    }
    return NULL;
}

static void test_wal_started_over_under_load(void **state)
{
    (void)state;
    bv_store_t *st = fresh();
    bv_store_close(st);
    bv_store_options_t opt = {.path = path, .wal_restart_frames = 256};
    assert_int_equal(bv_store_open(&opt, &st), 0);
    assert_int_equal(bv_store_write(st, create_table, NULL), 0);
    volatile int stop = 0, stop_writers = 0;
    unsigned restarts0 = wal_restarts();
    atomic_store(&churn_durable, 0);
    pthread_t w[4], r[2];
    churn_arg_t wa[4], ra[2];
    for (int i = 0; i < 2; i++) {
        ra[i] = (churn_arg_t){st, 1, &stop, 0};
        pthread_create(&r[i], NULL, churn_reader, &ra[i]);
    }
    for (int i = 0; i < 4; i++) {
        wa[i] = (churn_arg_t){st, (i + 1) * 1000000, &stop_writers, 0};
        pthread_create(&w[i], NULL, churn_writer, &wa[i]);
    }
    usleep(1500000);
    stop_writers = 1;
    int rows = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(w[i], NULL);
        rows += wa[i].n;
    }
    for (int i = 0; i < 5000 && atomic_load(&churn_durable) < rows; i++)
        usleep(1000);
    assert_int_equal(atomic_load(&churn_durable), rows); /* every commit made durable, once */
    stop = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(r[i], NULL);
    char wal[320];
    struct stat sb;
    snprintf(wal, sizeof(wal), "%s-wal", path);
    assert_int_equal(stat(wal, &sb), 0);
    unsigned restarts = wal_restarts() - restarts0;
    printf("%d commits of a 3 KB row in 1.5 s: WAL started over %u times, at most %lld KB\n", rows, restarts,
           (long long)sb.st_size / 1024);
    assert_true(rows > 500);
    assert_true(restarts >= 3); /* one per checkpoint period (200 ms) expected */
    destroy(st);
}

int main(void)
{
    bv_log_set_level(BV_LOG_WARN);
    bv_contract_factory = &sqlite_factory;
    int failed = cmocka_run_group_tests_name("store contract (sqlite)", bv_store_contract_tests, NULL, NULL);
    const struct CMUnitTest extra[] = {cmocka_unit_test(test_crash_loses_no_acknowledged_write),
                                       cmocka_unit_test(test_wal_started_over_under_load)};
    failed += cmocka_run_group_tests_name("store sqlite", extra, NULL, NULL);
    return failed;
}
