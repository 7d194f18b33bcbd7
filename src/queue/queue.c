/* Queues: send, receive (claim in one write job, long poll on a condition variable),
 * delete, visibility, dead-lettering, redrive, purge, retention, counters. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "queue/internal.h"

#define RECHECK_US 1000000 /* senders in other processes cannot signal us: look again each second */

/* ---- names ---- */

int bv_queue_name_valid(const char *name)
{
    size_t n = 0;
    if (name == NULL)
        return 0;
    for (; name[n] != '\0'; n++) {
        char ch = name[n];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
            return 0;
        if (n >= BV_QUEUE_NAME_MAX)
            return 0;
    }
    return n > 0;
}

/* ---- waiters ---- */

static pthread_mutex_t waiters_mu = PTHREAD_MUTEX_INITIALIZER;
static queue_waiter_t *waiters;
static pthread_once_t monotonic_once = PTHREAD_ONCE_INIT;
static pthread_condattr_t monotonic; /* of the sleepers' condition variables */

static void monotonic_init(void)
{
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
}

queue_waiter_t *queue_waiter(const char *name)
{
    queue_waiter_t *w;
    pthread_mutex_lock(&waiters_mu);
    for (w = waiters; w != NULL; w = w->next)
        if (strcmp(w->name, name) == 0)
            break;
    if (w == NULL && (w = calloc(1, sizeof(*w))) != NULL) {
        pthread_mutex_init(&w->mu, NULL);
        snprintf(w->name, sizeof(w->name), "%s", name);
        w->next = waiters;
        waiters = w;
    }
    pthread_mutex_unlock(&waiters_mu);
    return w;
}

void queue_sleeper_add(queue_waiter_t *w, queue_sleeper_t *z, int small)
{
    z->prev = NULL;
    z->next = w->sleepers;
    z->woken = 0;
    if (z->next != NULL)
        z->next->prev = z;
    w->sleepers = z;
    w->waiting++;
    w->small += small;
}

/* Wakes the receiver that fell asleep last. Called with w->mu. */
static void wake_one(queue_waiter_t *w)
{
    queue_sleeper_t *z = w->sleepers;
    if (z == NULL)
        return;
    w->sleepers = z->next;
    if (z->next != NULL)
        z->next->prev = NULL;
    z->woken = 1;
    w->waiting--;
    w->signaled++;
    pthread_cond_signal(&z->cv);
}

/* Wakes one more sleeping receiver if the receivers already woken, and the claim jobs queued
 * and not yet started, cannot take every pending message (a woken receiver one batch each).
 * Called with w->mu. */
static void wake_for_pending(queue_waiter_t *w)
{
    int64_t each = w->small > 0 ? 1 : BV_QUEUE_MAX_BATCH; /* what a woken receiver takes, at least */
    /* While a claim job is running, a receiver woken for less than a batch would claim in
       the next group commit what the running one's receiver, once it returns, would
       claim just as soon: so wait for it, and let the messages fill the batch meanwhile
       (with many idle consumers, each would otherwise claim the few messages of one commit,
       and the write jobs and wake-ups per message grow). */
    int64_t hold = w->claiming > 0 ? each - 1 : 0;
    if (w->waiting > 0 && (int64_t)w->signaled * each + w->spare + hold < w->pending)
        wake_one(w);
}

void queue_waiter_signal(void *arg)
{
    queue_waiter_t *w = arg;
    pthread_mutex_lock(&w->mu);
    w->gen++;
    w->pending++;
    wake_for_pending(w);
    pthread_mutex_unlock(&w->mu);
}

void queue_waiter_broadcast(void *arg)
{
    queue_waiter_t *w = arg;
    pthread_mutex_lock(&w->mu);
    w->gen++;
    while (w->sleepers != NULL)
        wake_one(w);
    pthread_mutex_unlock(&w->mu);
}

void bv_queue_wake_all(void)
{
    pthread_mutex_lock(&waiters_mu);
    for (queue_waiter_t *w = waiters; w != NULL; w = w->next)
        queue_waiter_broadcast(w);
    pthread_mutex_unlock(&waiters_mu);
}

void queue_wake_on_commit(bv_tx_t *tx, const char *queue, int broadcast)
{
    queue_waiter_t *w = queue_waiter(queue);
    if (w == NULL || bv_tx_after_commit(tx, broadcast ? queue_waiter_broadcast : queue_waiter_signal, w) != 0)
        bv_log_warn("queue wake-up not registered", "\"queue\":\"%s\"", queue);
}

/* ---- receipts ---- */

void queue_receipt_make(int64_t seq, int fifo, char out[BV_QUEUE_RECEIPT_MAX])
{
    unsigned char r[8];
    char hex[17];
    bv_random(r, sizeof(r));
    bv_hex(r, sizeof(r), hex);
    snprintf(out, BV_QUEUE_RECEIPT_MAX, "%c%lld.%s", fifo ? 'f' : 's', (long long)seq, hex);
}

int queue_receipt_parse(const char *r, int64_t *seq_out, int *fifo_out)
{
    int64_t seq = 0;
    size_t i = 1, digits = 0;
    if (r == NULL || (r[0] != 's' && r[0] != 'f'))
        return BV_EINVALID;
    for (; r[i] >= '0' && r[i] <= '9' && digits < 18; i++, digits++)
        seq = seq * 10 + (r[i] - '0');
    if (digits == 0 || r[i] != '.')
        return BV_EINVALID;
    i++;
    for (size_t k = 0; k < 16; k++, i++)
        if (!((r[i] >= '0' && r[i] <= '9') || (r[i] >= 'a' && r[i] <= 'f')))
            return BV_EINVALID;
    if (r[i] != '\0')
        return BV_EINVALID;
    *seq_out = seq;
    *fifo_out = r[0] == 'f';
    return 0;
}

/* ---- attributes ---- */

int queue_attributes_valid(const json_t *attrs)
{
    const char *k;
    json_t *v;
    if (attrs == NULL)
        return 0;
    if (!json_is_object(attrs) || json_object_size(attrs) > BV_QUEUE_MAX_ATTRIBUTES)
        return BV_EINVALID;
    json_object_foreach((json_t *)attrs, k, v)
    {
        if (strlen(k) == 0 || strlen(k) > 128)
            return BV_EINVALID;
        if (json_is_string(v) || json_is_number(v) || json_is_boolean(v))
            continue;
        if (!json_is_array(v) || json_array_size(v) > 64)
            return BV_EINVALID;
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *e = json_array_get(v, i);
            if (!json_is_string(e) && !json_is_number(e))
                return BV_EINVALID;
        }
    }
    return 0;
}

/* ---- configuration ---- */

int queue_conf_load(bv_tx_t *tx, const char *name, queue_conf_t *out)
{
    bv_stmt_t *s =
        bv_tx_prepare(tx, "SELECT fifo, visibility_timeout_us, delay_us, retention_us, max_receives, dlq "
                          "FROM queues WHERE name = ?1");
    int rc;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, name, -1);
    rc = bv_stmt_step(s);
    if (rc == BV_ROW) {
        const char *dlq = bv_stmt_text(s, 5);
        out->fifo = (int)bv_stmt_int64(s, 0);
        out->visibility_us = bv_stmt_int64(s, 1);
        out->delay_us = bv_stmt_int64(s, 2);
        out->retention_us = bv_stmt_int64(s, 3);
        out->max_receives = (int)bv_stmt_int64(s, 4);
        snprintf(out->dlq, sizeof(out->dlq), "%s", dlq != NULL ? dlq : "");
        rc = 0;
    } else if (rc == BV_DONE) {
        rc = BV_ENOTFOUND;
    }
    bv_stmt_reset(s);
    return rc;
}

static int insert_queue(bv_tx_t *tx, const char *name, int fifo, int64_t vis_us, int64_t delay_us,
                        int64_t ret_us, int max_receives, const char *dlq)
{
    bv_stmt_t *s = bv_tx_prepare(
        tx, "INSERT INTO queues(name, fifo, visibility_timeout_us, delay_us, retention_us, "
            "max_receives, dlq, created_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8) "
            "ON CONFLICT(name) DO UPDATE SET visibility_timeout_us=excluded.visibility_timeout_us, "
            "delay_us=excluded.delay_us, retention_us=excluded.retention_us, "
            "max_receives=excluded.max_receives, dlq=excluded.dlq");
    int rc;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, name, -1);
    bv_stmt_bind_int64(s, 2, fifo);
    bv_stmt_bind_int64(s, 3, vis_us);
    bv_stmt_bind_int64(s, 4, delay_us);
    bv_stmt_bind_int64(s, 5, ret_us);
    bv_stmt_bind_int64(s, 6, max_receives);
    bv_stmt_bind_text(s, 7, dlq, -1);
    bv_stmt_bind_int64(s, 8, bv_now_us());
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

int bv_queue_create(bv_tx_t *tx, const bv_queue_options_t *o)
{
    queue_conf_t cur;
    int rc;
    int64_t vis = o->visibility_timeout_ms > 0 ? o->visibility_timeout_ms : BV_QUEUE_DEFAULT_VISIBILITY_MS;
    int64_t ret = o->retention_s > 0 ? o->retention_s : BV_QUEUE_DEFAULT_RETENTION_S;
    const char *dlq = o->dlq != NULL && o->dlq[0] != '\0' ? o->dlq : NULL;
    if (!bv_queue_name_valid(o->name) || vis > BV_QUEUE_MAX_VISIBILITY_MS || o->delay_ms < 0 ||
        o->delay_ms > BV_QUEUE_MAX_DELAY_MS || ret > 14 * 86400 || o->max_receives < 0 ||
        o->max_receives > 1000)
        return BV_EINVALID;
    if (dlq != NULL && (!bv_queue_name_valid(dlq) || strcmp(dlq, o->name) == 0))
        return BV_EINVALID;
    rc = queue_conf_load(tx, o->name, &cur);
    if (rc == 0 && cur.fifo != (o->fifo ? 1 : 0))
        return BV_ECONFLICT;
    if (rc != 0 && rc != BV_ENOTFOUND)
        return rc;
    if (dlq != NULL) {
        queue_conf_t d;
        rc = queue_conf_load(tx, dlq, &d);
        if (rc == BV_ENOTFOUND)
            rc = insert_queue(tx, dlq, 0, BV_QUEUE_DEFAULT_VISIBILITY_MS * 1000, 0,
                              BV_QUEUE_DLQ_RETENTION_S * 1000000LL, 0, NULL);
        if (rc != 0)
            return rc;
    }
    return insert_queue(tx, o->name, o->fifo ? 1 : 0, vis * 1000, o->delay_ms * 1000, ret * 1000000,
                        o->max_receives, dlq);
}

static int create_job(bv_tx_t *tx, void *arg)
{
    return bv_queue_create(tx, arg);
}

int bv_queue_ensure(bv_store_t *st, const bv_queue_options_t *opt)
{
    return bv_store_run_tx(st, 1, create_job, (void *)opt);
}

/* ---- send ---- */

int bv_queue_send(bv_tx_t *tx, const char *queue, const bv_queue_send_t *m, char id_out[BV_UUID_STR_LEN + 1])
{
    queue_conf_t qc;
    char id[BV_UUID_STR_LEN + 1];
    char *attrs = NULL;
    int64_t now = bv_now_us(), delay_us;
    bv_stmt_t *s;
    int rc;
    if (m->body == NULL || m->body_len == 0 || m->body_len > BV_QUEUE_MAX_BODY ||
        queue_attributes_valid(m->attributes) != 0)
        return BV_EINVALID;
    if (m->delay_ms > BV_QUEUE_MAX_DELAY_MS)
        return BV_EINVALID;
    if ((m->group_id != NULL && (m->group_id[0] == '\0' || strlen(m->group_id) > BV_QUEUE_ID_MAX)) ||
        (m->dedup_id != NULL && (m->dedup_id[0] == '\0' || strlen(m->dedup_id) > BV_QUEUE_ID_MAX)))
        return BV_EINVALID;
    if ((rc = queue_conf_load(tx, queue, &qc)) != 0)
        return rc;
    if (qc.fifo ? m->group_id == NULL : (m->group_id != NULL || m->dedup_id != NULL))
        return BV_EINVALID;
    delay_us = m->delay_ms >= 0 ? m->delay_ms * 1000 : qc.delay_us;
    if (qc.fifo && m->dedup_id != NULL) {
        s = bv_tx_prepare(
            tx, "SELECT message_id FROM queue_dedup WHERE queue=?1 AND dedup_id=?2 AND expires_at>?3");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_text(s, 1, queue, -1);
        bv_stmt_bind_text(s, 2, m->dedup_id, -1);
        bv_stmt_bind_int64(s, 3, now);
        rc = bv_stmt_step(s);
        if (rc == BV_ROW) {
            if (id_out != NULL)
                snprintf(id_out, BV_UUID_STR_LEN + 1, "%s", bv_stmt_text(s, 0));
            bv_stmt_reset(s);
            return 1;
        }
        bv_stmt_reset(s);
        if (rc < 0)
            return rc;
    }
    bv_uuid7(id);
    if (qc.fifo && m->dedup_id != NULL) {
        s = bv_tx_prepare(tx, "INSERT OR REPLACE INTO queue_dedup(queue, dedup_id, message_id, expires_at) "
                              "VALUES (?1,?2,?3,?4)");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_text(s, 1, queue, -1);
        bv_stmt_bind_text(s, 2, m->dedup_id, -1);
        bv_stmt_bind_text(s, 3, id, -1);
        bv_stmt_bind_int64(s, 4, now + BV_QUEUE_DEDUP_WINDOW_US);
        rc = bv_stmt_step(s);
        bv_stmt_reset(s);
        if (rc < 0)
            return rc;
    }
    if (m->attributes != NULL && (attrs = json_dumps(m->attributes, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
        return BV_ENOMEM;
    s = bv_tx_prepare(
        tx, "INSERT OR FAIL INTO queue_messages(id, queue, body, attributes, group_id, dedup_id, visible_at, "
            "created_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)");
    if (s == NULL) {
        free(attrs);
        return BV_EIO;
    }
    bv_stmt_bind_text(s, 1, id, -1);
    bv_stmt_bind_text(s, 2, queue, -1);
    bv_stmt_bind_blob(s, 3, m->body, m->body_len);
    bv_stmt_bind_text(s, 4, attrs != NULL ? attrs : "{}", -1);
    bv_stmt_bind_text(s, 5, m->group_id, -1);
    bv_stmt_bind_text(s, 6, m->dedup_id, -1);
    bv_stmt_bind_int64(s, 7, now + delay_us);
    bv_stmt_bind_int64(s, 8, now);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    free(attrs);
    if (rc < 0)
        return rc;
    queue_wake_on_commit(tx, queue, delay_us > 0);
    if (id_out != NULL)
        memcpy(id_out, id, BV_UUID_STR_LEN + 1);
    return 0;
}

/* ---- receive ---- */

void bv_queue_msg_clear(bv_queue_msg_t *m)
{
    if (m == NULL)
        return;
    free(m->body);
    free(m->group_id);
    json_decref(m->attributes);
    memset(m, 0, sizeof(*m));
}

typedef struct {
    const char *queue;
    int max;
    int64_t visibility_us; /* 0: the queue's */
    bv_queue_msg_t *msgs;
    int n;
    queue_waiter_t *w; /* whose spare counts this job's room until the job starts */
    int64_t spare;
    int running; /* counted in w->claiming */
} claim_t;

/* The claim job has started (or will never run): what is signalled from now on may commit
 * after its read, so its room no longer counts. */
static void claim_started(claim_t *c)
{
    if (c->spare == 0 && c->running)
        return;
    pthread_mutex_lock(&c->w->mu);
    c->w->spare -= c->spare;
    c->spare = 0;
    if (!c->running) {
        c->running = 1;
        c->w->claiming++;
    }
    pthread_mutex_unlock(&c->w->mu);
}

static int move_to_dlq(bv_tx_t *tx, int64_t seq, const char *from, const char *dlq, int64_t now)
{
    bv_stmt_t *s = bv_tx_prepare(tx, "UPDATE queue_messages SET queue=?2, source_queue=?3, visible_at=?4, "
                                     "receive_count=0, receipt=NULL, first_received_at=NULL WHERE seq=?1");
    int rc;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, seq);
    bv_stmt_bind_text(s, 2, dlq, -1);
    bv_stmt_bind_text(s, 3, from, -1);
    bv_stmt_bind_int64(s, 4, now);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    queue_wake_on_commit(tx, dlq, 0);
    bv_log_info("message dead-lettered", "\"queue\":\"%s\",\"dlq\":\"%s\"", from, dlq);
    return 0;
}

static int claim_job(bv_tx_t *tx, void *arg)
{
    claim_t *c = arg;
    queue_conf_t qc;
    int64_t now;
    int rc;
    claim_started(c);
    now = bv_now_us();
    for (int i = 0; i < c->n; i++)
        bv_queue_msg_clear(&c->msgs[i]);
    c->n = 0;
    if ((rc = queue_conf_load(tx, c->queue, &qc)) != 0)
        return rc;
    int64_t vis = c->visibility_us > 0 ? c->visibility_us : qc.visibility_us;
    int dead_lettering = qc.max_receives > 0 && qc.dlq[0] != '\0';
    for (int round = 0; round < 4 && c->n < c->max; round++) {
        int64_t seqs[BV_QUEUE_MAX_BATCH];
        int counts[BV_QUEUE_MAX_BATCH], got = 0, moved = 0;
        bv_queue_msg_t rows[BV_QUEUE_MAX_BATCH];
        bv_stmt_t *s = bv_tx_prepare(
            tx,
            qc.fifo
                ? "SELECT seq, id, body, attributes, group_id, receive_count, first_received_at, created_at "
                  "FROM queue_messages m WHERE queue=?1 AND visible_at<=?2 AND (group_id IS NULL OR "
                  "seq=(SELECT min(seq) FROM queue_messages g WHERE g.queue=?1 AND g.group_id=m.group_id)) "
                  "ORDER BY seq LIMIT ?3"
                : "SELECT seq, id, body, attributes, group_id, receive_count, first_received_at, created_at "
                  "FROM queue_messages WHERE queue=?1 AND visible_at<=?2 ORDER BY visible_at, seq LIMIT ?3");
        if (s == NULL)
            return BV_EIO;
        memset(rows, 0, sizeof(rows));
        bv_stmt_bind_text(s, 1, c->queue, -1);
        bv_stmt_bind_int64(s, 2, now);
        bv_stmt_bind_int64(s, 3, c->max - c->n);
        while ((rc = bv_stmt_step(s)) == BV_ROW) {
            bv_queue_msg_t *m = &rows[got];
            size_t len = 0;
            const void *b = bv_stmt_blob(s, 2, &len);
            const char *g = bv_stmt_text(s, 4);
            seqs[got] = bv_stmt_int64(s, 0);
            counts[got] = (int)bv_stmt_int64(s, 5);
            snprintf(m->id, sizeof(m->id), "%s", bv_stmt_text(s, 1));
            snprintf(m->queue, sizeof(m->queue), "%s", c->queue);
            m->body = malloc(len + 1);
            m->attributes = json_loads(bv_stmt_text(s, 3), 0, NULL);
            m->group_id = g != NULL ? strdup(g) : NULL;
            got++;
            if (m->body == NULL || m->attributes == NULL || (g != NULL && m->group_id == NULL)) {
                rc = BV_ENOMEM;
                break;
            }
            memcpy(m->body, b, len);
            m->body[len] = '\0';
            m->body_len = len;
            m->receive_count = counts[got - 1] + 1;
            m->first_received_at_us = bv_stmt_is_null(s, 6) ? now : bv_stmt_int64(s, 6);
            m->sent_at_us = bv_stmt_int64(s, 7);
        }
        bv_stmt_reset(s);
        if (rc < 0) {
            for (int i = 0; i < got; i++)
                bv_queue_msg_clear(&rows[i]);
            return rc;
        }
        for (int i = 0; i < got; i++) {
            if (rc == 0 && dead_lettering && counts[i] >= qc.max_receives) {
                rc = move_to_dlq(tx, seqs[i], c->queue, qc.dlq, now);
                bv_queue_msg_clear(&rows[i]);
                moved++;
                continue;
            }
            if (rc == 0) {
                queue_receipt_make(seqs[i], qc.fifo, rows[i].receipt);
                s = bv_tx_prepare(
                    tx, "UPDATE OR FAIL queue_messages SET visible_at=?2, receive_count=receive_count+1, "
                        "first_received_at=coalesce(first_received_at, ?3), receipt=?4 WHERE seq=?1");
                if (s == NULL) {
                    rc = BV_EIO;
                } else {
                    bv_stmt_bind_int64(s, 1, seqs[i]);
                    bv_stmt_bind_int64(s, 2, now + vis);
                    bv_stmt_bind_int64(s, 3, now);
                    bv_stmt_bind_text(s, 4, rows[i].receipt, -1);
                    int st = bv_stmt_step(s);
                    bv_stmt_reset(s);
                    if (st < 0)
                        rc = st;
                }
            }
            if (rc == 0)
                c->msgs[c->n++] = rows[i];
            else
                bv_queue_msg_clear(&rows[i]);
        }
        if (rc != 0) {
            for (int i = 0; i < c->n; i++)
                bv_queue_msg_clear(&c->msgs[i]);
            c->n = 0;
            return rc;
        }
        if (moved == 0)
            break; /* no more visible messages, or the batch is full */
    }
    return 0;
}

typedef struct {
    const char *queue;
    int exists, ready;
    int64_t next_due; /* wall-clock us of the next message to become visible, 0 if none */
} probe_t;

static int probe_job(bv_tx_t *tx, void *arg)
{
    probe_t *p = arg;
    int64_t now = bv_now_us();
    bv_stmt_t *s =
        bv_tx_prepare(tx, "SELECT (SELECT count(*) FROM queues WHERE name=?1), "
                          "EXISTS(SELECT 1 FROM queue_messages WHERE queue=?1 AND visible_at<=?2), "
                          "(SELECT min(visible_at) FROM queue_messages WHERE queue=?1 AND visible_at>?2)");
    int rc;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, p->queue, -1);
    bv_stmt_bind_int64(s, 2, now);
    rc = bv_stmt_step(s);
    if (rc == BV_ROW) {
        p->exists = bv_stmt_int64(s, 0) > 0;
        p->ready = (int)bv_stmt_int64(s, 1);
        p->next_due = bv_stmt_is_null(s, 2) ? 0 : bv_stmt_int64(s, 2);
        rc = 0;
    }
    bv_stmt_reset(s);
    return rc;
}

static void mono_to_timespec(int64_t mono_us, struct timespec *ts)
{
    ts->tv_sec = mono_us / 1000000;
    ts->tv_nsec = (mono_us % 1000000) * 1000;
}

int bv_queue_receive(bv_store_t *st, const char *queue, const bv_queue_receive_opts_t *o,
                     bv_queue_msg_t *msgs, int *n_out)
{
    int max = o->max > 0 ? o->max : 1;
    queue_waiter_t *w;
    int64_t deadline;
    int rc;
    *n_out = 0;
    if (!bv_queue_name_valid(queue) || max > BV_QUEUE_MAX_BATCH || o->wait_ms < 0 ||
        o->wait_ms > BV_QUEUE_MAX_WAIT_MS || o->visibility_ms < 0 ||
        o->visibility_ms > BV_QUEUE_MAX_VISIBILITY_MS)
        return BV_EINVALID;
    if ((w = queue_waiter(queue)) == NULL)
        return BV_ENOMEM;
    pthread_once(&monotonic_once, monotonic_init);
    memset(msgs, 0, sizeof(*msgs) * (size_t)max);
    deadline = bv_mono_us() + (int64_t)o->wait_ms * 1000;
    for (;;) {
        uint64_t gen0;
        int64_t take, others;
        probe_t p = {.queue = queue};
        /* Reserve what was signalled (up to a batch) before claiming, so that N receivers
           woken for a few messages do not queue N claim jobs that mostly find nothing. */
        pthread_mutex_lock(&w->mu);
        gen0 = w->gen;
        take = w->pending < max ? w->pending : max;
        w->pending -= take;
        w->reserved += take;
        others = w->reserved - take;
        pthread_mutex_unlock(&w->mu);
        /* nothing reserved: look first with a cheap read, so idle receivers never queue
           write jobs; what it sees may be what other receivers here are claiming already.
           While others are claiming, do not even look: they pass on what they leave. */
        if (take == 0 && others == 0) {
            if ((rc = bv_store_read(st, probe_job, &p)) != 0)
                return rc;
            if (!p.exists)
                return BV_ENOTFOUND;
            pthread_mutex_lock(&w->mu);
            w->next_due = p.next_due;
            pthread_mutex_unlock(&w->mu);
        }
        if (take > 0 || (p.ready && others == 0)) {
            claim_t c = {.queue = queue,
                         .max = max,
                         .visibility_us = o->visibility_ms * 1000,
                         .msgs = msgs,
                         .w = w,
                         .spare = max - take};
            pthread_mutex_lock(&w->mu);
            w->spare += c.spare;
            pthread_mutex_unlock(&w->mu);
            rc = bv_store_run_tx(st, 1, claim_job, &c);
            claim_started(&c); /* if it never ran */
            pthread_mutex_lock(&w->mu);
            w->claiming--;
            w->reserved -= take;
            if (rc == 0 && c.n > take) { /* took more than reserved: those were counted as pending */
                int64_t extra = c.n - take < w->pending ? c.n - take : w->pending;
                w->pending -= extra;
            }
            /* more may be ready (signalled, or a full batch suggests so): pass it on */
            if (rc == 0 && c.n == max && w->pending == 0 && w->signaled == 0 && w->waiting > 0) {
                w->gen++;
                wake_one(w);
            } else {
                wake_for_pending(w);
            }
            pthread_mutex_unlock(&w->mu);
            if (rc != 0)
                return rc;
            if (c.n > 0) {
                *n_out = c.n;
                return 0;
            }
            if (take > 0) /* someone else took them: look before sleeping */
                continue;
        } else if (take == 0 && others == 0 && !p.ready) {
            pthread_mutex_lock(&w->mu);
            w->pending = 0; /* nothing visible: forget what other processes claimed */
            pthread_mutex_unlock(&w->mu);
        }
        int64_t now = bv_mono_us();
        if (now >= deadline || (o->stop != NULL && *o->stop))
            return 0;
        int64_t until = deadline;
        if (until > now + RECHECK_US)
            until = now + RECHECK_US;
        pthread_mutex_lock(&w->mu);
        int64_t next_due = w->next_due, wall = bv_now_us();
        if (next_due > wall) { /* (one already due is the business of whoever looks next) */
            int64_t due = now + (next_due - wall) + 1000;
            if (due < until)
                until = due;
        }
        struct timespec ts;
        mono_to_timespec(until, &ts);
        queue_sleeper_t z;
        pthread_cond_init(&z.cv, &monotonic);
        queue_sleeper_add(w, &z, max < BV_QUEUE_MAX_BATCH);
        while (!z.woken && w->gen == gen0 && !(o->stop != NULL && *o->stop))
            if (pthread_cond_timedwait(&z.cv, &w->mu, &ts) == ETIMEDOUT)
                break;
        w->small -= max < BV_QUEUE_MAX_BATCH;
        if (z.woken) {
            w->signaled--;
        } else { /* timed out, or gen moved for another: still on the list */
            if (z.prev != NULL)
                z.prev->next = z.next;
            else
                w->sleepers = z.next;
            if (z.next != NULL)
                z.next->prev = z.prev;
            w->waiting--;
        }
        pthread_cond_destroy(&z.cv);
        pthread_mutex_unlock(&w->mu);
    }
}

/* ---- delete, visibility, dead-letter ---- */

typedef struct {
    const char *queue;
    const char *const *receipts;
    int n;
    int deleted;
} delete_t;

int bv_queue_delete_tx(bv_tx_t *tx, const char *queue, const char *receipt)
{
    int64_t seq;
    int fifo, rc;
    bv_stmt_t *s;
    if (queue_receipt_parse(receipt, &seq, &fifo) != 0)
        return BV_EINVALID;
    s = bv_tx_prepare(tx, "DELETE FROM queue_messages WHERE seq=?1 AND receipt=?2 AND queue=?3");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, seq);
    bv_stmt_bind_text(s, 2, receipt, -1);
    bv_stmt_bind_text(s, 3, queue, -1);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    if (bv_tx_changes(tx) == 0)
        return BV_ENOTFOUND;
    if (fifo) /* the group's next message may be received now */
        queue_wake_on_commit(tx, queue, 0);
    return 0;
}

static int delete_job(bv_tx_t *tx, void *arg)
{
    delete_t *d = arg;
    d->deleted = 0;
    for (int i = 0; i < d->n; i++) {
        int rc = bv_queue_delete_tx(tx, d->queue, d->receipts[i]);
        if (rc == 0)
            d->deleted++;
        else if (rc != BV_ENOTFOUND && rc != BV_EINVALID)
            return rc;
    }
    return 0;
}

static void delete_durable(void *arg) { (void)arg; }

/* A delete returns once committed, without waiting for its fsync (the next batch's covers
 * it): losing one to a power cut only brings the message back, which at-least-once delivery
 * allows, and a consumer's cycle no longer waits for the disk twice. */
static int run_delete(bv_store_t *st, delete_t *d)
{
    int rc = BV_EBUSY;
    for (int attempt = 0; attempt < 5 && rc == BV_EBUSY; attempt++)
        rc = bv_store_write_pipelined(st, delete_job, d, delete_durable, NULL);
    return rc;
}

int bv_queue_delete(bv_store_t *st, const char *queue, const char *receipt)
{
    int64_t seq;
    int fifo;
    if (queue_receipt_parse(receipt, &seq, &fifo) != 0)
        return BV_EINVALID;
    delete_t d = {.queue = queue, .receipts = &receipt, .n = 1};
    int rc = run_delete(st, &d);
    if (rc != 0)
        return rc;
    return d.deleted == 1 ? 0 : BV_ENOTFOUND;
}

int bv_queue_delete_batch(bv_store_t *st, const char *queue, const char *const *receipts, int n,
                          int *n_deleted_out)
{
    if (n < 0 || n > BV_QUEUE_MAX_BATCH)
        return BV_EINVALID;
    delete_t d = {.queue = queue, .receipts = receipts, .n = n};
    int rc = n > 0 ? run_delete(st, &d) : 0;
    if (n_deleted_out != NULL)
        *n_deleted_out = d.deleted;
    return rc;
}

typedef struct {
    const char *queue;
    const char *receipt;
    int64_t timeout_us;
    int dead_letter;
} visibility_t;

static int visibility_job(bv_tx_t *tx, void *arg)
{
    visibility_t *v = arg;
    int64_t seq, now = bv_now_us();
    int fifo, rc;
    bv_stmt_t *s;
    if (queue_receipt_parse(v->receipt, &seq, &fifo) != 0)
        return BV_EINVALID;
    if (v->dead_letter) {
        queue_conf_t qc;
        if ((rc = queue_conf_load(tx, v->queue, &qc)) != 0)
            return rc;
        if (qc.dlq[0] == '\0')
            return BV_ENOTFOUND;
        s = bv_tx_prepare(tx, "SELECT 1 FROM queue_messages WHERE seq=?1 AND receipt=?2 AND queue=?3");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_int64(s, 1, seq);
        bv_stmt_bind_text(s, 2, v->receipt, -1);
        bv_stmt_bind_text(s, 3, v->queue, -1);
        rc = bv_stmt_step(s);
        bv_stmt_reset(s);
        if (rc != BV_ROW)
            return rc < 0 ? rc : BV_ENOTFOUND;
        if ((rc = move_to_dlq(tx, seq, v->queue, qc.dlq, now)) != 0)
            return rc;
    } else {
        s = bv_tx_prepare(tx,
                          "UPDATE queue_messages SET visible_at=?1 WHERE seq=?2 AND receipt=?3 AND queue=?4 "
                          "AND visible_at>?5");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_int64(s, 1, now + v->timeout_us);
        bv_stmt_bind_int64(s, 2, seq);
        bv_stmt_bind_text(s, 3, v->receipt, -1);
        bv_stmt_bind_text(s, 4, v->queue, -1);
        bv_stmt_bind_int64(s, 5, now);
        rc = bv_stmt_step(s);
        bv_stmt_reset(s);
        if (rc < 0)
            return rc;
        if (bv_tx_changes(tx) == 0)
            return BV_ENOTFOUND;
        /* visible now: one receiver may take it; later: receivers recompute their timers */
        queue_wake_on_commit(tx, v->queue, v->timeout_us > 0);
        return 0;
    }
    if (fifo)
        queue_wake_on_commit(tx, v->queue, 0);
    return 0;
}

int bv_queue_change_visibility(bv_store_t *st, const char *queue, const char *receipt, int64_t timeout_ms)
{
    if (timeout_ms < 0 || timeout_ms > BV_QUEUE_MAX_VISIBILITY_MS)
        return BV_EINVALID;
    visibility_t v = {.queue = queue, .receipt = receipt, .timeout_us = timeout_ms * 1000};
    return bv_store_run_tx(st, 1, visibility_job, &v);
}

int bv_queue_dead_letter(bv_store_t *st, const char *queue, const char *receipt)
{
    visibility_t v = {.queue = queue, .receipt = receipt, .dead_letter = 1};
    return bv_store_run_tx(st, 1, visibility_job, &v);
}

/* ---- redrive, purge, retention ---- */

typedef struct {
    const char *queue;
    int64_t limit;
    int64_t n;
} bulk_t;

static int redrive_job(bv_tx_t *tx, void *arg)
{
    bulk_t *b = arg;
    int64_t seqs[256];
    char srcs[256][BV_QUEUE_NAME_MAX + 1];
    int got = 0, rc;
    int64_t now = bv_now_us();
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT m.seq, m.source_queue FROM queue_messages m JOIN queues q "
                                     "ON q.name = m.source_queue WHERE m.queue=?1 ORDER BY m.seq LIMIT ?2");
    b->n = 0;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, b->queue, -1);
    bv_stmt_bind_int64(s, 2, b->limit < 256 ? b->limit : 256);
    while ((rc = bv_stmt_step(s)) == BV_ROW) {
        seqs[got] = bv_stmt_int64(s, 0);
        snprintf(srcs[got], sizeof(srcs[got]), "%s", bv_stmt_text(s, 1));
        got++;
    }
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    for (int i = 0; i < got; i++) {
        s = bv_tx_prepare(tx,
                          "UPDATE queue_messages SET queue=source_queue, source_queue=NULL, visible_at=?2, "
                          "receive_count=0, receipt=NULL, first_received_at=NULL WHERE seq=?1");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_int64(s, 1, seqs[i]);
        bv_stmt_bind_int64(s, 2, now);
        rc = bv_stmt_step(s);
        bv_stmt_reset(s);
        if (rc < 0)
            return rc;
        if (i == 0 || strcmp(srcs[i], srcs[i - 1]) != 0)
            queue_wake_on_commit(tx, srcs[i], 1);
    }
    b->n = got;
    return 0;
}

int bv_queue_redrive(bv_store_t *st, const char *dlq, int64_t max, int64_t *n_out)
{
    int64_t total = 0;
    int rc = 0;
    if (!bv_queue_name_valid(dlq) || max < 0)
        return BV_EINVALID;
    for (;;) {
        bulk_t b = {.queue = dlq, .limit = max > 0 ? max - total : 256};
        if (max > 0 && b.limit <= 0)
            break;
        if ((rc = bv_store_run_tx(st, 1, redrive_job, &b)) != 0)
            break;
        total += b.n;
        if (b.n == 0)
            break;
    }
    if (n_out != NULL)
        *n_out = total;
    return rc;
}

static int exists_job(bv_tx_t *tx, void *arg)
{
    queue_conf_t qc;
    return queue_conf_load(tx, arg, &qc);
}

static int purge_job(bv_tx_t *tx, void *arg)
{
    bulk_t *b = arg;
    bv_stmt_t *s = bv_tx_prepare(tx, "DELETE FROM queue_messages WHERE queue=?1");
    int rc;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, b->queue, -1);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    b->n = bv_tx_changes(tx);
    return rc < 0 ? rc : 0;
}

int bv_queue_purge(bv_store_t *st, const char *queue, int64_t *n_out)
{
    bulk_t b = {.queue = queue};
    int rc;
    if (!bv_queue_name_valid(queue))
        return BV_EINVALID;
    if ((rc = bv_store_read(st, exists_job, (void *)queue)) != 0)
        return rc;
    rc = bv_store_run_tx(st, 1, purge_job, &b);
    if (n_out != NULL)
        *n_out = b.n;
    return rc;
}

static int sweep_job(bv_tx_t *tx, void *arg)
{
    bulk_t *b = arg;
    int64_t now = bv_now_us();
    bv_stmt_t *s =
        bv_tx_prepare(tx, "DELETE FROM queue_messages WHERE seq IN (SELECT m.seq FROM queues q "
                          "JOIN queue_messages m ON m.queue = q.name AND m.created_at < ?1 - q.retention_us "
                          "LIMIT 5000)");
    int rc;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, now);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    b->n = bv_tx_changes(tx);
    s = bv_tx_prepare(tx, "DELETE FROM queue_dedup WHERE expires_at <= ?1");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, now);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

int bv_queue_sweep(bv_store_t *st, int64_t *n_expired_out)
{
    int64_t total = 0;
    int rc;
    for (;;) {
        bulk_t b = {0};
        if ((rc = bv_store_run_tx(st, 1, sweep_job, &b)) != 0)
            break;
        total += b.n;
        if (b.n < 5000)
            break;
    }
    if (total > 0)
        bv_log_info("queue messages expired", "\"count\":%lld", (long long)total);
    if (n_expired_out != NULL)
        *n_expired_out = total;
    return rc;
}

/* ---- listing ---- */

typedef struct {
    bv_queue_info_t *items;
    size_t n;
} list_t;

static int list_job(bv_tx_t *tx, void *arg)
{
    list_t *l = arg;
    int64_t now = bv_now_us();
    size_t cap = 0;
    int rc;
    bv_stmt_t *s =
        bv_tx_prepare(tx, "SELECT name, fifo, visibility_timeout_us, delay_us, retention_us, max_receives, "
                          "coalesce(dlq,'') FROM queues ORDER BY name");
    free(l->items);
    l->items = NULL;
    l->n = 0;
    if (s == NULL)
        return BV_EIO;
    while ((rc = bv_stmt_step(s)) == BV_ROW) {
        if (l->n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            bv_queue_info_t *ni = realloc(l->items, nc * sizeof(*ni));
            if (ni == NULL) {
                rc = BV_ENOMEM;
                break;
            }
            l->items = ni;
            cap = nc;
        }
        bv_queue_info_t *q = &l->items[l->n++];
        memset(q, 0, sizeof(*q));
        snprintf(q->name, sizeof(q->name), "%s", bv_stmt_text(s, 0));
        q->fifo = (int)bv_stmt_int64(s, 1);
        q->visibility_timeout_ms = bv_stmt_int64(s, 2) / 1000;
        q->delay_ms = bv_stmt_int64(s, 3) / 1000;
        q->retention_s = bv_stmt_int64(s, 4) / 1000000;
        q->max_receives = (int)bv_stmt_int64(s, 5);
        snprintf(q->dlq, sizeof(q->dlq), "%s", bv_stmt_text(s, 6));
    }
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < l->n; i++) {
        bv_queue_info_t *q = &l->items[i];
        s = bv_tx_prepare(
            tx,
            "SELECT coalesce(sum(visible_at<=?2),0), coalesce(sum(visible_at>?2 AND receipt IS NOT NULL),0), "
            "coalesce(sum(visible_at>?2 AND receipt IS NULL),0), min(created_at) "
            "FROM queue_messages WHERE queue=?1");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_text(s, 1, q->name, -1);
        bv_stmt_bind_int64(s, 2, now);
        if ((rc = bv_stmt_step(s)) == BV_ROW) {
            q->depth = bv_stmt_int64(s, 0);
            q->in_flight = bv_stmt_int64(s, 1);
            q->delayed = bv_stmt_int64(s, 2);
            q->oldest_age_us = bv_stmt_is_null(s, 3) ? 0 : now - bv_stmt_int64(s, 3);
            if (q->oldest_age_us < 0)
                q->oldest_age_us = 0;
        }
        bv_stmt_reset(s);
        if (rc < 0)
            return rc;
    }
    for (size_t i = 0; i < l->n; i++) {
        if (l->items[i].dlq[0] == '\0')
            continue;
        for (size_t j = 0; j < l->n; j++)
            if (strcmp(l->items[j].name, l->items[i].dlq) == 0)
                l->items[i].dlq_depth = l->items[j].depth + l->items[j].in_flight + l->items[j].delayed;
    }
    return 0;
}

int bv_queue_list(bv_store_t *st, bv_queue_info_t **out, size_t *n_out)
{
    list_t l = {0};
    int rc = bv_store_read(st, list_job, &l);
    if (rc != 0) {
        free(l.items);
        return rc;
    }
    *out = l.items;
    *n_out = l.n;
    return 0;
}

typedef struct {
    const char *queue;
    int limit;
    json_t *items;
} peek_t;

static int peek_job(bv_tx_t *tx, void *arg)
{
    peek_t *p = arg;
    queue_conf_t qc;
    int64_t now = bv_now_us();
    int rc;
    if ((rc = queue_conf_load(tx, p->queue, &qc)) != 0)
        return rc;
    bv_stmt_t *s =
        bv_tx_prepare(tx, "SELECT id, body, attributes, group_id, receive_count, created_at, visible_at, "
                          "receipt, source_queue FROM queue_messages WHERE queue=?1 ORDER BY seq LIMIT ?2");
    if (s == NULL)
        return BV_EIO;
    json_array_clear(p->items);
    bv_stmt_bind_text(s, 1, p->queue, -1);
    bv_stmt_bind_int64(s, 2, p->limit);
    while ((rc = bv_stmt_step(s)) == BV_ROW) {
        char sent[32], vis[32];
        size_t len = 0;
        const char *body = bv_stmt_blob(s, 1, &len);
        int64_t va = bv_stmt_int64(s, 6);
        const char *state = va <= now ? "visible" : bv_stmt_is_null(s, 7) ? "delayed" : "in_flight";
        json_t *attrs = json_loads(bv_stmt_text(s, 2), 0, NULL);
        bv_time_format(bv_stmt_int64(s, 5), sent);
        bv_time_format(va, vis);
        json_t *item =
            json_pack("{s:s, s:s%, s:o, s:s?, s:I, s:s, s:s, s:s, s:s?}", "id", bv_stmt_text(s, 0), "body",
                      body != NULL ? body : "", len, "attributes", attrs != NULL ? attrs : json_object(),
                      "group_id", bv_stmt_text(s, 3), "receive_count", (json_int_t)bv_stmt_int64(s, 4),
                      "state", state, "sent_at", sent, "visible_at", vis, "source_queue", bv_stmt_text(s, 8));
        if (item == NULL) /* a body that is not UTF-8 */
            item = json_pack("{s:s, s:s, s:s}", "id", bv_stmt_text(s, 0), "body_base64", "(binary)", "state",
                             state);
        if (item == NULL || json_array_append_new(p->items, item) != 0) {
            rc = BV_ENOMEM;
            break;
        }
    }
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

int bv_queue_peek(bv_store_t *st, const char *queue, int limit, json_t **out)
{
    peek_t p = {.queue = queue, .limit = limit, .items = json_array()};
    int rc;
    if (!bv_queue_name_valid(queue) || limit < 1 || limit > 100) {
        json_decref(p.items);
        return BV_EINVALID;
    }
    if (p.items == NULL)
        return BV_ENOMEM;
    rc = bv_store_read(st, peek_job, &p);
    if (rc != 0) {
        json_decref(p.items);
        return rc;
    }
    *out = p.items;
    return 0;
}
