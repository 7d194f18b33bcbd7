/* Queue module internals shared by its files and its unit tests. */
#ifndef BV_QUEUE_INTERNAL_H
#define BV_QUEUE_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "queue/queue.h"

/* A receiver asleep in bv_queue_receive, on its own condition variable. */
typedef struct queue_sleeper {
    struct queue_sleeper *prev, *next;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    int woken;         /* taken off the list by a wake-up */
} queue_sleeper_t;

/* One per queue name in this process, never freed. Receivers sleep on a list, the last
 * to fall asleep first: a wake-up goes to the receiver that slept least (its thread still
 * warm in the caches and on a core), and with many consumers the same few keep working
 * while the others stay asleep. Signalled from after-commit hooks (on the writer thread)
 * when a send, a visibility reset or a redrive commits; gen moves on each. */
typedef struct queue_waiter {
    struct queue_waiter *next;
    pthread_mutex_t mu;
    queue_sleeper_t *sleepers; /* most recent first */
    uint64_t gen;
    int64_t pending;  /* messages made visible and not yet reserved by a receiver (a hint) */
    int64_t reserved; /* messages reserved by receivers whose claim job is in flight */
    int64_t spare;    /* room left in claim jobs queued and not yet started: they will take
                         messages signalled now, so no one need be woken for those */
    int claiming;     /* claim jobs started and not yet returned (durable): what is signalled
                         meanwhile waits for them to finish unless it fills a batch */
    int waiting;      /* receivers asleep (on the list) */
    int signaled;     /* receivers woken and not yet running */
    int small;        /* receivers asleep that take fewer than a full batch */
    int64_t next_due; /* wall-clock us when the next message becomes visible, as last probed (0: none) */
    char name[BV_QUEUE_NAME_MAX + 1];
} queue_waiter_t;

/* Puts z (its cv initialised) on top of w's sleepers: the next to be woken. small: z's
 * receiver takes fewer than a full batch. Called with w->mu. */
void queue_sleeper_add(queue_waiter_t *w, queue_sleeper_t *z, int small);

/* The waiter of a queue name (created on first use). NULL only on OOM. */
queue_waiter_t *queue_waiter(const char *name);
/* After-commit hooks: arg is a queue_waiter_t *. signal notes one message became visible
 * and wakes one receiver per BV_QUEUE_MAX_BATCH of them beyond what queued claim jobs will
 * take, none for less than a batch while a claim job runs (a receiver that claims a full
 * batch wakes the next: no thundering herd with many consumers); broadcast wakes all
 * (timers may have to be recomputed). */
void queue_waiter_signal(void *arg);
void queue_waiter_broadcast(void *arg);
/* Registers the hook on tx for `queue` (errors are logged: a missed wake-up is recovered
 * by the 1 s re-check). */
void queue_wake_on_commit(bv_tx_t *tx, const char *queue, int broadcast);

/* Queue attributes as stored. */
typedef struct {
    int fifo;
    int64_t visibility_us, delay_us, retention_us;
    int max_receives;
    char dlq[BV_QUEUE_NAME_MAX + 1];
} queue_conf_t;
/* 0, BV_ENOTFOUND, store errors. */
int queue_conf_load(bv_tx_t *tx, const char *name, queue_conf_t *out);

/* Receipt handles: "<s|f><seq>.<16 hex>" (f: the queue is FIFO). */
void queue_receipt_make(int64_t seq, int fifo, char out[BV_QUEUE_RECEIPT_MAX]);
int queue_receipt_parse(const char *r, int64_t *seq_out, int *fifo_out);

/* Attribute validation shared by send and publish: object (or NULL) of at most 32
 * members whose values are strings, numbers or arrays of strings. 0 or BV_EINVALID. */
int queue_attributes_valid(const json_t *attrs);

/* SNS numbers are compared as fixed-point integers with 5 decimals (no floating point in
 * the comparison); 0 or BV_EINVALID when the value is not a number in range. */
int queue_number_fixed(const json_t *v, int64_t *out);

/* Topic delivery: send to every matching subscriber (publish.c). */
int queue_publish_internal(bv_tx_t *tx, const char *topic, const json_t *attributes, const char *body,
                           size_t body_len, int *n_delivered_out);

#endif
