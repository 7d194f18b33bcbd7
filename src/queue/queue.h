/* Durable queues with SQS semantics and topics with SNS-style filter policies, on the store
 * (issue 6). A message is sent (or a topic published) inside the caller's write job, so an
 * event is enqueued in the same transaction as the change that caused it; consumers wake
 * when that transaction commits (no polling inside a process).
 *
 * Queues: send (with delay), receive (batch up to 10, long poll up to 20 s), delete by
 * receipt handle, change visibility, visibility timeout (default 30 s), receive count and
 * max_receives, then the queue's dead-letter queue (DLQ); redrive from a DLQ back to the
 * queue each message came from; retention; FIFO queues (message groups: one message in
 * flight per group, in order; 5-minute deduplication ids).
 * Topics: subscriptions deliver to queues through filter policies on message attributes
 * (docs/queue.md). The `outbox` table is drained into topics in the background.
 * Consumers: a worker framework with retries (exponential backoff, full jitter),
 * per-consumer concurrency and graceful shutdown. */
#ifndef BV_QUEUE_QUEUE_H
#define BV_QUEUE_QUEUE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "app/app.h"
#include "base/util.h"
#include "store/store.h"

#define BV_QUEUE_NAME_MAX              80
#define BV_QUEUE_MAX_BATCH             10           /* messages per receive */
#define BV_QUEUE_MAX_WAIT_MS           20000        /* long poll bound */
#define BV_QUEUE_MAX_BODY              (256 * 1024) /* bytes per message */
#define BV_QUEUE_MAX_ATTRIBUTES        32           /* attributes per message */
#define BV_QUEUE_ID_MAX                128          /* group id / dedup id length */
#define BV_QUEUE_DEFAULT_VISIBILITY_MS 30000
#define BV_QUEUE_DEFAULT_RETENTION_S   (4 * 86400)
#define BV_QUEUE_DLQ_RETENTION_S       (14 * 86400)
#define BV_QUEUE_DEDUP_WINDOW_US       (5 * 60 * 1000000LL)
#define BV_QUEUE_MAX_VISIBILITY_MS     (12 * 3600 * 1000LL)
#define BV_QUEUE_MAX_DELAY_MS          (15 * 60 * 1000LL)
#define BV_QUEUE_RECEIPT_MAX           64

/* 1 if name matches [a-z0-9._-]{1,80}, else 0. */
int bv_queue_name_valid(const char *name);

/* ---- queues ---- */
typedef struct {
    const char *name;
    int fifo;                      /* message groups + deduplication */
    int64_t visibility_timeout_ms; /* 0: 30 s */
    int64_t delay_ms;              /* default delivery delay, 0..15 min */
    int64_t retention_s;           /* 0: 4 days */
    int max_receives;              /* > 0 with dlq: dead-letter after this many receives */
    const char *dlq;               /* dead-letter queue; created (standard, 14 days) if missing */
} bv_queue_options_t;

/* Creates the queue, or updates the attributes of an existing one (the kind, FIFO or
 * standard, of an existing queue is never changed: BV_ECONFLICT). Inside a write job.
 * 0, BV_EINVALID (bad name or bounds), BV_ECONFLICT, store errors. */
int bv_queue_create(bv_tx_t *tx, const bv_queue_options_t *opt);
/* The same in its own write job. */
int bv_queue_ensure(bv_store_t *st, const bv_queue_options_t *opt);

typedef struct {
    const void *body; /* bytes, 1..BV_QUEUE_MAX_BODY */
    size_t body_len;
    const json_t *attributes; /* object of string | number | array-of-strings values, or NULL */
    int64_t delay_ms;         /* < 0: the queue's default delay */
    const char *group_id;     /* FIFO: required; standard: must be NULL */
    const char *dedup_id;     /* FIFO: optional; a second send with the same id within 5 minutes
                                 is accepted but not enqueued again */
} bv_queue_send_t;

/* Enqueues one message inside the caller's write job; consumers are woken when the job's
 * batch commits. id_out (may be NULL) gets the message id (the first message's id for a
 * deduplicated send). Returns 0 (sent), 1 (duplicate of a FIFO message within 5 minutes:
 * nothing new enqueued), BV_ENOTFOUND (no such queue), BV_EINVALID, store errors. */
int bv_queue_send(bv_tx_t *tx, const char *queue, const bv_queue_send_t *m, char id_out[BV_UUID_STR_LEN + 1]);

/* A received message. Owned by the caller: release with bv_queue_msg_clear. */
typedef struct {
    char id[BV_UUID_STR_LEN + 1];
    char queue[BV_QUEUE_NAME_MAX + 1];
    char receipt[BV_QUEUE_RECEIPT_MAX];
    char *body; /* NUL-terminated copy (body_len bytes before the NUL) */
    size_t body_len;
    json_t *attributes; /* object, never NULL after a receive */
    char *group_id;     /* NULL for standard queues */
    int receive_count;  /* 1 on the first delivery */
    int64_t sent_at_us;
    int64_t first_received_at_us;
} bv_queue_msg_t;
void bv_queue_msg_clear(bv_queue_msg_t *m);

typedef struct {
    int max;                  /* 1..10 (0: 1) */
    int wait_ms;              /* long poll, 0..20000: returns as soon as a message is claimed */
    int64_t visibility_ms;    /* 0: the queue's visibility timeout */
    const volatile int *stop; /* may be NULL; when *stop becomes non-zero a waiting receive
                                 returns (wake it with bv_queue_wake_all) */
} bv_queue_receive_opts_t;

/* Claims up to opts->max visible messages in one write job (their visibility moves to
 * now + timeout, receive_count grows, a new receipt handle is issued); messages that
 * reached max_receives are moved to the DLQ instead. Waits up to wait_ms for messages
 * without polling: it sleeps on the queue's condition variable, signalled when a send
 * commits, and on a timer for delayed messages and expiring visibility (plus a 1 s
 * re-check for senders in other processes). msgs must have room for max entries;
 * *n_out gets how many were filled. 0, BV_ENOTFOUND (no such queue), BV_EINVALID,
 * store errors. */
int bv_queue_receive(bv_store_t *st, const char *queue, const bv_queue_receive_opts_t *opts,
                     bv_queue_msg_t *msgs, int *n_out);

/* Deletes (acknowledges) a received message. 0, BV_ENOTFOUND (unknown or stale receipt:
 * the message was received again since, or already deleted), BV_EINVALID, store errors. */
int bv_queue_delete(bv_store_t *st, const char *queue, const char *receipt);
/* Deletes up to 10 messages in one write job; n_deleted_out (may be NULL) counts those
 * whose receipt was current. */
int bv_queue_delete_batch(bv_store_t *st, const char *queue, const char *const *receipts, int n,
                          int *n_deleted_out);
/* Inside the caller's write job: ack a message together with the effects of handling it. */
int bv_queue_delete_tx(bv_tx_t *tx, const char *queue, const char *receipt);

/* Sets an in-flight message's visibility to now + timeout_ms (0: visible again now).
 * 0, BV_ENOTFOUND (stale receipt or no longer in flight), BV_EINVALID, store errors. */
int bv_queue_change_visibility(bv_store_t *st, const char *queue, const char *receipt, int64_t timeout_ms);
/* Moves an in-flight message to its queue's DLQ now (a permanent failure).
 * 0, BV_ENOTFOUND (stale receipt, or the queue has no DLQ), store errors. */
int bv_queue_dead_letter(bv_store_t *st, const char *queue, const char *receipt);

/* Moves up to max (0: all) messages of the DLQ `dlq` back to the queues they came from,
 * visible now with receive_count 0. *n_out gets how many moved. */
int bv_queue_redrive(bv_store_t *st, const char *dlq, int64_t max, int64_t *n_out);
/* Deletes every message of the queue. */
int bv_queue_purge(bv_store_t *st, const char *queue, int64_t *n_out);
/* Deletes messages older than their queue's retention and expired deduplication ids. */
int bv_queue_sweep(bv_store_t *st, int64_t *n_expired_out);

typedef struct {
    char name[BV_QUEUE_NAME_MAX + 1];
    char dlq[BV_QUEUE_NAME_MAX + 1]; /* "" if none */
    int fifo;
    int max_receives;
    int64_t visibility_timeout_ms, delay_ms, retention_s;
    int64_t depth;         /* visible now */
    int64_t in_flight;     /* received, not yet deleted nor visible again */
    int64_t delayed;       /* sent with a delay not yet elapsed */
    int64_t oldest_age_us; /* age of the oldest message (any state), 0 if empty */
    int64_t dlq_depth;     /* messages in the DLQ (0 if none) */
} bv_queue_info_t;

/* Every queue with its counters, by name. *out is malloc'd (caller frees). */
int bv_queue_list(bv_store_t *st, bv_queue_info_t **out, size_t *n_out);
/* Up to limit (1..100) messages of the queue without changing them, oldest first, as a
 * JSON array of {id, body, attributes, group_id, receive_count, state, sent_at,
 * visible_at, source_queue}. The caller json_decref()s *out. */
int bv_queue_peek(bv_store_t *st, const char *queue, int limit, json_t **out);

/* Wakes every waiting receive in this process (used to stop consumers). */
void bv_queue_wake_all(void);

/* ---- topics ---- */
/* Creates a topic (idempotent). Inside a write job. 0, BV_EINVALID, store errors. */
int bv_queue_topic_create(bv_tx_t *tx, const char *topic);
/* Subscribes a queue to a topic with a filter policy (borrowed, NULL: every message);
 * an existing subscription of the same pair gets the new policy. 0, BV_ENOTFOUND (no
 * such topic or queue), BV_EINVALID (bad policy), store errors. */
int bv_queue_subscribe(bv_tx_t *tx, const char *topic, const char *queue, const json_t *filter_policy);
/* Publishes inside the caller's write job: the message is sent to every subscribed queue
 * whose filter policy matches `attributes` (an object, may be NULL). FIFO subscribers get
 * message group = the topic name. n_delivered_out (may be NULL) counts the queues.
 * 0, BV_ENOTFOUND (no such topic), BV_EINVALID, store errors. */
int bv_queue_publish(bv_tx_t *tx, const char *topic, const json_t *attributes, const char *body);
int bv_queue_publish_ex(bv_tx_t *tx, const char *topic, const json_t *attributes, const char *body,
                        int *n_delivered_out);

/* Validates a filter policy: 0 or BV_EINVALID (detail, may be NULL, gets a reason). */
int bv_queue_filter_validate(const json_t *policy, char *detail, size_t detail_len);
/* 1 if attributes (object or NULL) satisfy the policy (NULL policy: always). */
int bv_queue_filter_match(const json_t *policy, const json_t *attributes);

/* Publishes up to `limit` unpublished outbox rows (oldest first) to their topics in one
 * write job, marking them published. Rows of unknown topics are marked published and
 * dropped (SNS semantics: nobody subscribed). *n_out gets the rows handled. */
int bv_queue_outbox_drain(bv_store_t *st, int limit, int *n_out);

/* ---- consumers ---- */
typedef enum {
    BV_QUEUE_ACK = 0, /* done: delete the message */
    BV_QUEUE_RETRY,   /* transient failure: visible again after a backoff */
    BV_QUEUE_FAIL,    /* permanent failure: to the DLQ now (deleted if the queue has none) */
    BV_QUEUE_SETTLED, /* the handler already deleted the message itself (bv_queue_delete_tx in
                         the write job that recorded its outcome): nothing more to do */
} bv_queue_result_t;

typedef struct bv_queue_consumer bv_queue_consumer_t;
struct bv_queue_consumer {
    const char *name;  /* consumer name for `boveda worker --only` and logs */
    const char *group; /* module name, also accepted by --only (may be NULL) */
    const char *queue;
    int concurrency; /* threads (1..64; 0: 1) */
    /* Handles one message. *retry_after_ms_out (initialised to -1) may set the delay of a
     * RETRY (e.g. a provider's Retry-After); otherwise the backoff applies. */
    bv_queue_result_t (*handler)(const bv_queue_consumer_t *c, bv_queue_msg_t *msg,
                                 int64_t *retry_after_ms_out);
    /* Optional, used instead of handler: receives up to `batch` (2..10) messages at once
     * and sets results[i] and retry_after_ms[i] (initialised to -1) for each, as handler
     * would — one receive and one pass over several messages (e.g. one write job for all). */
    void (*handler_batch)(const bv_queue_consumer_t *c, bv_queue_msg_t *msgs, int n, bv_queue_result_t *results,
                          int64_t *retry_after_ms);
    int batch;
    void *cls;
    int64_t backoff_base_ms; /* 0: 1000 */
    int64_t backoff_max_ms;  /* 0: 300000 */
};

/* Exponential backoff with full jitter: uniform in [0, min(max, base * 2^(attempt-1))]
 * milliseconds, attempt >= 1. */
int64_t bv_queue_backoff_ms(int attempt, int64_t base_ms, int64_t max_ms);

/* Registers a consumer (the struct must outlive it: use static storage). Consumers run
 * in `boveda serve` and in `boveda worker`; registering does not start them. */
int bv_queue_consumer_register(const bv_queue_consumer_t *c);
/* Stops the consumer if it runs (unfinished messages become visible again; a handler in
 * progress is waited for) and forgets it. Owners call this from their module fini. */
void bv_queue_consumer_unregister(const bv_queue_consumer_t *c);

/* Starts registered consumers whose name or group is in the comma-separated `only` list
 * (NULL: all), plus the background outbox drainer and retention sweeper.
 * 0, BV_ENOTFOUND (a name in `only` matches nothing), BV_EINTERNAL. */
int bv_queue_workers_start(bv_store_t *st, const char *only);
/* Stops every running consumer and the background threads. */
void bv_queue_workers_stop(void);

/* Module table entries (src/app/app.c): init does nothing but remember the store; routes
 * (serve only, after every module's init registered its consumers) adds /metrics
 * producers and starts the consumers; fini stops them. */
int bv_queue_module_init(bv_app_t *app);
int bv_queue_module_routes(bv_app_t *app);
void bv_queue_module_fini(bv_app_t *app);

/* `boveda admin queues list|peek|redrive|purge [--json]`. */
int bv_queue_admin_main(bv_app_t *app, int argc, char **argv);

/* `boveda worker [--only NAME[,NAME]]`: runs consumers (no HTTP) until SIGTERM/SIGINT,
 * then stops them gracefully. The app is opened without HTTP. Returns the exit status. */
int bv_queue_worker_main(bv_app_t *app, int argc, char **argv);

#endif
