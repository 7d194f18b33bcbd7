/* Topics, subscriptions, publish (inside the caller's transaction) and the outbox drain. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "queue/internal.h"

#define MAX_SUBSCRIBERS 64

int bv_queue_topic_create(bv_tx_t *tx, const char *topic)
{
    bv_stmt_t *s;
    int rc;
    if (!bv_queue_name_valid(topic))
        return BV_EINVALID;
    s = bv_tx_prepare(tx,
                      "INSERT INTO topics(name, created_at) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, topic, -1);
    bv_stmt_bind_int64(s, 2, bv_now_us());
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

static int topic_exists(bv_tx_t *tx, const char *topic)
{
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT 1 FROM topics WHERE name=?1");
    int rc;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, topic, -1);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc == BV_ROW ? 0 : rc == BV_DONE ? BV_ENOTFOUND : rc;
}

int bv_queue_subscribe(bv_tx_t *tx, const char *topic, const char *queue, const json_t *policy)
{
    queue_conf_t qc;
    char id[BV_UUID_STR_LEN + 1];
    char *p = NULL;
    bv_stmt_t *s;
    int rc;
    if (!bv_queue_name_valid(topic) || !bv_queue_name_valid(queue) ||
        bv_queue_filter_validate(policy, NULL, 0) != 0)
        return BV_EINVALID;
    if ((rc = topic_exists(tx, topic)) != 0)
        return rc;
    if ((rc = queue_conf_load(tx, queue, &qc)) != 0)
        return rc;
    if (policy != NULL && (p = json_dumps(policy, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
        return BV_ENOMEM;
    bv_uuid7(id);
    s = bv_tx_prepare(tx, "INSERT INTO topic_subscriptions(id, topic, queue, filter_policy, created_at) "
                          "VALUES (?1,?2,?3,?4,?5) ON CONFLICT(topic, queue) DO UPDATE SET "
                          "filter_policy=excluded.filter_policy");
    if (s == NULL) {
        free(p);
        return BV_EIO;
    }
    bv_stmt_bind_text(s, 1, id, -1);
    bv_stmt_bind_text(s, 2, topic, -1);
    bv_stmt_bind_text(s, 3, queue, -1);
    bv_stmt_bind_text(s, 4, p, -1);
    bv_stmt_bind_int64(s, 5, bv_now_us());
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    free(p);
    return rc < 0 ? rc : 0;
}

int queue_publish_internal(bv_tx_t *tx, const char *topic, const json_t *attributes, const char *body,
                           size_t body_len, int *n_delivered_out)
{
    char queues[MAX_SUBSCRIBERS][BV_QUEUE_NAME_MAX + 1];
    int n = 0, delivered = 0, rc;
    bv_stmt_t *s;
    if (n_delivered_out != NULL)
        *n_delivered_out = 0;
    if (!bv_queue_name_valid(topic) || body == NULL || body_len == 0 ||
        queue_attributes_valid(attributes) != 0)
        return BV_EINVALID;
    if ((rc = topic_exists(tx, topic)) != 0)
        return rc;
    s = bv_tx_prepare(tx,
                      "SELECT queue, filter_policy FROM topic_subscriptions WHERE topic=?1 ORDER BY queue");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, topic, -1);
    while ((rc = bv_stmt_step(s)) == BV_ROW && n < MAX_SUBSCRIBERS) {
        const char *ptext = bv_stmt_text(s, 1);
        json_t *policy = ptext != NULL ? json_loads(ptext, 0, NULL) : NULL;
        if (ptext != NULL && policy == NULL) {
            rc = BV_EIO; /* stored policies were validated: a corrupt row */
            break;
        }
        if (bv_queue_filter_match(policy, attributes))
            snprintf(queues[n++], sizeof(queues[0]), "%s", bv_stmt_text(s, 0));
        json_decref(policy);
    }
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    for (int i = 0; i < n; i++) {
        queue_conf_t qc;
        if ((rc = queue_conf_load(tx, queues[i], &qc)) != 0)
            return rc;
        bv_queue_send_t m = {.body = body,
                             .body_len = body_len,
                             .attributes = attributes,
                             .delay_ms = -1,
                             .group_id = qc.fifo ? topic : NULL};
        if ((rc = bv_queue_send(tx, queues[i], &m, NULL)) < 0)
            return rc;
        delivered++;
    }
    if (n_delivered_out != NULL)
        *n_delivered_out = delivered;
    return 0;
}

int bv_queue_publish_ex(bv_tx_t *tx, const char *topic, const json_t *attributes, const char *body,
                        int *n_out)
{
    return queue_publish_internal(tx, topic, attributes, body, body != NULL ? strlen(body) : 0, n_out);
}

int bv_queue_publish(bv_tx_t *tx, const char *topic, const json_t *attributes, const char *body)
{
    return bv_queue_publish_ex(tx, topic, attributes, body, NULL);
}

/* ---- outbox ---- */

typedef struct {
    int limit;
    int n;
} drain_t;

typedef struct {
    char id[BV_UUID_STR_LEN + 1];
    char topic[BV_QUEUE_NAME_MAX + 1];
    char *payload;
    json_t *attrs;
    int bad_topic;
} outbox_row_t;

/* A published row is deleted in the job that published it: its message lives on in the
 * subscribed queues, and a row kept would grow the table by every event forever. */
static int forget_published(bv_tx_t *tx, const char *id)
{
    bv_stmt_t *s = bv_tx_prepare(tx, "DELETE FROM outbox WHERE id=?1");
    int rc;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, id, -1);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

static int drain_job(bv_tx_t *tx, void *arg)
{
    drain_t *d = arg;
    outbox_row_t *rows = calloc((size_t)d->limit, sizeof(*rows));
    int n = 0, rc;
    bv_stmt_t *s;
    d->n = 0;
    if (rows == NULL)
        return BV_ENOMEM;
    s = bv_tx_prepare(tx, "SELECT id, topic, payload, attributes FROM outbox WHERE published_at IS NULL "
                          "ORDER BY created_at, id LIMIT ?1");
    if (s == NULL) {
        rc = BV_EIO;
        goto out;
    }
    bv_stmt_bind_int64(s, 1, d->limit);
    while ((rc = bv_stmt_step(s)) == BV_ROW) {
        outbox_row_t *r = &rows[n++];
        const char *topic = bv_stmt_text(s, 1);
        snprintf(r->id, sizeof(r->id), "%s", bv_stmt_text(s, 0));
        r->bad_topic = !bv_queue_name_valid(topic);
        snprintf(r->topic, sizeof(r->topic), "%s", r->bad_topic ? "" : topic);
        r->payload = strdup(bv_stmt_text(s, 2));
        r->attrs = json_loads(bv_stmt_text(s, 3), 0, NULL);
        if (r->payload == NULL) {
            rc = BV_ENOMEM;
            break;
        }
    }
    bv_stmt_reset(s);
    if (rc < 0)
        goto out;
    for (int i = 0; i < n; i++) {
        outbox_row_t *r = &rows[i];
        int prc = r->bad_topic
                      ? BV_EINVALID
                      : queue_publish_internal(tx, r->topic, r->attrs, r->payload, strlen(r->payload), NULL);
        if (prc == BV_ENOTFOUND)
            bv_log_warn("outbox event for a topic nobody created: dropped", "\"topic\":\"%s\",\"id\":\"%s\"",
                        r->topic, r->id);
        else if (prc == BV_EINVALID)
            bv_log_error("outbox event cannot be published: dropped", "\"id\":\"%s\"", r->id);
        else if (prc < 0) {
            rc = prc;
            goto out;
        }
        if ((rc = forget_published(tx, r->id)) != 0)
            goto out;
    }
    d->n = n;
    rc = 0;
out:
    for (int i = 0; i < n; i++) {
        free(rows[i].payload);
        json_decref(rows[i].attrs);
    }
    free(rows);
    return rc;
}

static int pending_job(bv_tx_t *tx, void *arg)
{
    int *pending = arg;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT EXISTS(SELECT 1 FROM outbox WHERE published_at IS NULL)");
    int rc;
    if (s == NULL)
        return BV_EIO;
    rc = bv_stmt_step(s);
    *pending = rc == BV_ROW ? (int)bv_stmt_int64(s, 0) : 0;
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

int bv_queue_outbox_drain(bv_store_t *st, int limit, int *n_out)
{
    int pending = 0, rc;
    drain_t d = {.limit = limit > 0 && limit <= 1000 ? limit : 100};
    *n_out = 0;
    /* a cheap read first: the common case is nothing to do, and reads never queue behind writes */
    if ((rc = bv_store_read(st, pending_job, &pending)) != 0 || !pending)
        return rc;
    rc = bv_store_run_tx(st, 1, drain_job, &d);
    *n_out = d.n;
    return rc;
}
