/* The fixed worker pool that runs blocking work (database, key store, Argon2) off the
 * event loops. A bounded queue: when it is full, submit fails and the caller answers 503
 * instead of letting latency grow without bound. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/errors.h"
#include "http/internal.h"

typedef struct node {
    struct node *next;
    void (*fn)(void *arg);
    void *arg;
} node_t;

struct pool {
    char name[16]; /* of its threads (top -H, perf --comm) */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    node_t *head, *tail;
    size_t depth, limit, busy;
    int stopping;
    int n_threads;
    pthread_t *threads;
};

static void *worker_main(void *arg)
{
    pool_t *p = arg;
    pthread_setname_np(pthread_self(), p->name);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->head == NULL && !p->stopping)
            pthread_cond_wait(&p->cond, &p->mu);
        if (p->head == NULL)
            break;
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
    pthread_cond_init(&p->cond, NULL);
    p->limit = limit;
    p->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    if (p->threads == NULL) {
        pool_free(p);
        return BV_ENOMEM;
    }
    for (int i = 0; i < n_threads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
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
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->mu);
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
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    p->n_threads = 0;
}

void pool_free(pool_t *p)
{
    if (p == NULL)
        return;
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cond);
    free(p->threads);
    free(p);
}
