/* The HTTP worker pool (src/http/pool.c): every job runs once, idle workers are woken for
 * jobs submitted at any moment, the queue bound answers BV_EBUSY, and stop runs what is
 * queued before the workers exit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "base/errors.h"
#include "http/internal.h"

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static void count_job(void *arg)
{
    atomic_fetch_add((_Atomic int *)arg, 1);
}

/* Waits (bounded: a lost wake-up must fail the test, not hang it) until *n reaches want. */
static int wait_count(_Atomic int *n, int want)
{
    for (int i = 0; i < 5000 && atomic_load(n) < want; i++)
        sleep_us(1000);
    return atomic_load(n);
}

/* One job at a time, each after the workers have all gone idle: each must wake one. */
static void test_wakes_idle_workers(void **state)
{
    (void)state;
    pool_t *p = NULL;
    _Atomic int n = 0;
    assert_int_equal(pool_create("t-idle", 4, 100, &p), 0);
    for (int i = 1; i <= 50; i++) {
        assert_int_equal(pool_submit(p, count_job, &n), 0);
        assert_int_equal(wait_count(&n, i), i);
        if (i % 10 == 0)
            sleep_us(2000);
    }
    pool_stop(p);
    pool_free(p);
    assert_int_equal(atomic_load(&n), 50);
}

typedef struct {
    pool_t *p;
    _Atomic int *n;
    _Atomic int *refused;
} submitter_t;

static void *submitter(void *arg)
{
    submitter_t *s = arg;
    for (int i = 0; i < 5000; i++)
        while (pool_submit(s->p, count_job, s->n) != 0) {
            atomic_fetch_add(s->refused, 1);
            sleep_us(50);
        }
    return NULL;
}

/* Many threads submitting at once against a small bound: every accepted job runs once. */
static void test_concurrent_submitters(void **state)
{
    (void)state;
    pool_t *p = NULL;
    _Atomic int n = 0, refused = 0;
    pthread_t t[4];
    submitter_t s = {NULL, &n, &refused};
    assert_int_equal(pool_create("t-many", 3, 64, &p), 0);
    s.p = p;
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, submitter, &s), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(wait_count(&n, 20000), 20000);
    pool_stop(p);
    pool_free(p);
    assert_int_equal(atomic_load(&n), 20000);
}

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;
    _Atomic int started;
} gate_t;

static void gate_job(void *arg)
{
    gate_t *g = arg;
    atomic_fetch_add(&g->started, 1);
    pthread_mutex_lock(&g->mu);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

/* With every worker busy, the queue holds `limit` jobs and refuses the next; stop runs the
 * queued ones before the workers exit. */
static void test_bound_and_stop(void **state)
{
    (void)state;
    pool_t *p = NULL;
    gate_t g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    _Atomic int n = 0;
    assert_int_equal(pool_create("t-bound", 2, 3, &p), 0);
    assert_int_equal(pool_submit(p, gate_job, &g), 0);
    assert_int_equal(pool_submit(p, gate_job, &g), 0);
    assert_int_equal(wait_count(&g.started, 2), 2); /* both workers held */
    for (int i = 0; i < 3; i++)
        assert_int_equal(pool_submit(p, count_job, &n), 0);
    assert_int_equal(pool_depth(p), 3);
    assert_int_equal(pool_busy(p), 2);
    assert_int_equal(pool_submit(p, count_job, &n), BV_EBUSY);
    pthread_mutex_lock(&g.mu);
    g.open = 1;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    pool_stop(p);
    assert_int_equal(atomic_load(&n), 3);
    assert_int_equal(pool_submit(p, count_job, &n), BV_EBUSY); /* stopped */
    pool_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wakes_idle_workers),
        cmocka_unit_test(test_concurrent_submitters),
        cmocka_unit_test(test_bound_and_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
