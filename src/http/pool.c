/* The fixed worker pool that runs blocking work (database, key store, Argon2) off the
 * event loops. A bounded queue: when it is full, submit fails and the caller answers 503
 * instead of letting latency grow without bound. */
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/errors.h"
#include "http/internal.h"

typedef struct node {
    struct node *next;
    void (*fn)(void *arg);
    void *arg;
} node_t;

/* A worker of the pool. Idle workers wait on their own semaphore, on a stack: a job wakes
 * the one that went idle last (warm in the caches, likely still on a core), and only when
 * no busy worker will take it. The submitter posts after releasing the pool's lock, so
 * the woken worker does not at once block on that lock (with one condition variable
 * signalled under the lock, most hand-offs cost two context switches instead of one). */
typedef struct worker {
    struct worker *next_idle;
    struct pool *pool;
    sem_t wake;
    pthread_t thread;
} worker_t;

struct pool {
    char name[16]; /* of its threads (top -H, perf --comm) */
    pthread_mutex_t mu;
    node_t *head, *tail;
    size_t depth, limit, busy;
    worker_t *idle; /* most recently idle first */
    int stopping;
    int n_threads;
    worker_t *workers;
};

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    pool_t *p = w->pool;
    pthread_setname_np(pthread_self(), p->name);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (p->head == NULL) {
            if (p->stopping)
                break;
            w->next_idle = p->idle;
            p->idle = w;
            pthread_mutex_unlock(&p->mu);
            while (sem_wait(&w->wake) != 0) /* EINTR */
                ;
            pthread_mutex_lock(&p->mu);
            continue;
        }
        node_t *n = p->head;
        p->head = n->next;
        if (p->head == NULL)
            p->tail = NULL;
        p->depth--;
        p->busy++;
        pthread_mutex_unlock(&p->mu);
        n->fn(n->arg);
        free(n);
        pthread_mutex_lock(&p->mu);
        p->busy--;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int pool_create(const char *name, int n_threads, size_t limit, pool_t **out)
{
    pool_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return BV_ENOMEM;
    snprintf(p->name, sizeof(p->name), "%s", name);
    pthread_mutex_init(&p->mu, NULL);
    p->limit = limit;
    p->workers = calloc((size_t)n_threads, sizeof(worker_t));
    if (p->workers == NULL) {
        pool_free(p);
        return BV_ENOMEM;
    }
    for (int i = 0; i < n_threads; i++) {
        worker_t *w = &p->workers[i];
        w->pool = p;
        sem_init(&w->wake, 0, 0);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            sem_destroy(&w->wake);
            pool_stop(p);
            pool_free(p);
            return BV_EINTERNAL;
        }
        p->n_threads++;
    }
    *out = p;
    return 0;
}

int pool_submit(pool_t *p, void (*fn)(void *arg), void *arg)
{
    node_t *n = malloc(sizeof(*n));
    if (n == NULL)
        return BV_ENOMEM;
    n->next = NULL;
    n->fn = fn;
    n->arg = arg;
    pthread_mutex_lock(&p->mu);
    if (p->stopping || p->depth >= p->limit) {
        pthread_mutex_unlock(&p->mu);
        free(n);
        return BV_EBUSY;
    }
    if (p->tail)
        p->tail->next = n;
    else
        p->head = n;
    p->tail = n;
    p->depth++;
    worker_t *w = p->idle;
    if (w != NULL)
        p->idle = w->next_idle;
    pthread_mutex_unlock(&p->mu);
    if (w != NULL)
        sem_post(&w->wake);
    return 0;
}

size_t pool_depth(pool_t *p)
{
    pthread_mutex_lock(&p->mu);
    size_t d = p->depth;
    pthread_mutex_unlock(&p->mu);
    return d;
}

size_t pool_busy(pool_t *p)
{
    pthread_mutex_lock(&p->mu);
    size_t d = p->busy;
    pthread_mutex_unlock(&p->mu);
    return d;
}

void pool_stop(pool_t *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    worker_t *w = p->idle;
    p->idle = NULL;
    pthread_mutex_unlock(&p->mu);
    for (; w != NULL; w = w->next_idle)
        sem_post(&w->wake);
    for (int i = 0; i < p->n_threads; i++)
        pthread_join(p->workers[i].thread, NULL);
    for (int i = 0; i < p->n_threads; i++)
        sem_destroy(&p->workers[i].wake);
    p->n_threads = 0;
}

void pool_free(pool_t *p)
{
    if (p == NULL)
        return;
    pthread_mutex_destroy(&p->mu);
    free(p->workers);
    free(p);
}
