/* The SQLite adapter: the storage contract, plus a crash test (kill -9 mid-batch loses no
 * acknowledged write). */
#include "store/contract.c"

#include <signal.h>
#include <stdlib.h>
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

int main(void)
{
    bv_log_set_level(BV_LOG_WARN);
    bv_contract_factory = &sqlite_factory;
    int failed = cmocka_run_group_tests_name("store contract (sqlite)", bv_store_contract_tests, NULL, NULL);
    const struct CMUnitTest extra[] = {cmocka_unit_test(test_crash_loses_no_acknowledged_write)};
    failed += cmocka_run_group_tests_name("store sqlite", extra, NULL, NULL);
    return failed;
}
