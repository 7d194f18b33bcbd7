/* The delivery log (queries for admins) and replays. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "base/log.h"
#include "notify/internal.h"
#include "queue/queue.h"

static json_t *time_json(int64_t us)
{
    char t[32];
    bv_time_format(us, t);
    return json_string(t);
}

static int channels_json(bv_tx_t *tx, const char *id, int full, json_t **out)
{
    bv_stmt_t *s =
        bv_tx_prepare(tx, "SELECT channel, status, attempts, provider, provider_message_id, last_error, "
                          "generation, updated_at FROM notification_channels WHERE notification_id=?1 "
                          "ORDER BY channel");
    json_t *arr = json_array();
    int rc;
    if (s == NULL || arr == NULL) {
        json_decref(arr);
        return s == NULL ? BV_EIO : BV_ENOMEM;
    }
    bv_stmt_bind_text(s, 1, id, -1);
    while ((rc = bv_stmt_step(s)) == BV_ROW) {
        json_t *o =
            full ? json_pack("{s:s, s:s, s:I, s:s?, s:s?, s:s?, s:I, s:o}", "channel", bv_stmt_text(s, 0),
                             "status", bv_stmt_text(s, 1), "attempts", (json_int_t)bv_stmt_int64(s, 2),
                             "provider", bv_stmt_text(s, 3), "provider_message_id", bv_stmt_text(s, 4),
                             "last_error", bv_stmt_text(s, 5), "generation", (json_int_t)bv_stmt_int64(s, 6),
                             "updated_at", time_json(bv_stmt_int64(s, 7)))
                 : json_pack("{s:s, s:s}", "channel", bv_stmt_text(s, 0), "status", bv_stmt_text(s, 1));
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            rc = BV_ENOMEM;
            break;
        }
    }
    bv_stmt_reset(s);
    if (rc < 0) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return 0;
}

int notify_log_get(bv_tx_t *tx, const char *id, json_t **out)
{
    json_t *o = NULL, *chans = NULL, *atts = NULL;
    int rc;
    bv_stmt_t *s =
        bv_tx_prepare(tx, "SELECT id, customer_id, kind, template, locale, created_at FROM notifications "
                          "WHERE id=?1");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, id, -1);
    rc = bv_stmt_step(s);
    if (rc == BV_ROW)
        o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "id", bv_stmt_text(s, 0), "customer_id",
                      bv_stmt_text(s, 1), "kind", bv_stmt_text(s, 2), "template", bv_stmt_text(s, 3),
                      "locale", bv_stmt_text(s, 4), "created_at", time_json(bv_stmt_int64(s, 5)));
    bv_stmt_reset(s);
    if (rc != BV_ROW)
        return rc == BV_DONE ? BV_ENOTFOUND : rc;
    if (o == NULL)
        return BV_ENOMEM;
    if ((rc = channels_json(tx, id, 1, &chans)) != 0)
        goto fail;
    json_object_set_new(o, "channels", chans);
    s = bv_tx_prepare(
        tx, "SELECT channel, generation, provider, status, provider_message_id, error, duration_us, at "
            "FROM notification_attempts WHERE notification_id=?1 ORDER BY at, id");
    if (s == NULL || (atts = json_array()) == NULL) {
        rc = s == NULL ? BV_EIO : BV_ENOMEM;
        goto fail;
    }
    bv_stmt_bind_text(s, 1, id, -1);
    while ((rc = bv_stmt_step(s)) == BV_ROW) {
        json_t *a = json_pack("{s:s, s:I, s:s, s:s, s:s?, s:s?, s:I, s:o}", "channel", bv_stmt_text(s, 0),
                              "generation", (json_int_t)bv_stmt_int64(s, 1), "provider", bv_stmt_text(s, 2),
                              "status", bv_stmt_text(s, 3), "provider_message_id", bv_stmt_text(s, 4),
                              "error", bv_stmt_text(s, 5), "duration_ms",
                              (json_int_t)(bv_stmt_int64(s, 6) / 1000), "at", time_json(bv_stmt_int64(s, 7)));
        if (a == NULL || json_array_append_new(atts, a) != 0) {
            rc = BV_ENOMEM;
            break;
        }
    }
    bv_stmt_reset(s);
    json_object_set_new(o, "attempts", atts);
    if (rc < 0)
        goto fail;
    *out = o;
    return 0;
fail:
    json_decref(o);
    return rc;
}

int notify_log_list(bv_tx_t *tx, const notify_query_t *q, json_t *items, char next_out[BV_UUID_STR_LEN + 1])
{
    /* one statement: optional filters bound as NULL match everything */
    bv_stmt_t *s =
        bv_tx_prepare(tx, "SELECT n.id, n.customer_id, n.kind, n.created_at FROM notifications n "
                          "WHERE (?1 IS NULL OR n.customer_id = ?1) AND (?2 IS NULL OR n.kind = ?2) "
                          "AND (?3 IS NULL OR EXISTS (SELECT 1 FROM notification_channels c "
                          "WHERE c.notification_id = n.id AND c.status = ?3)) "
                          "AND (?4 IS NULL OR n.id < ?4) ORDER BY n.id DESC LIMIT ?5");
    char ids[201][BV_UUID_STR_LEN + 1];
    int n = 0, rc;
    next_out[0] = '\0';
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, q->customer_id, -1);
    bv_stmt_bind_text(s, 2, q->kind, -1);
    bv_stmt_bind_text(s, 3, q->status, -1);
    bv_stmt_bind_text(s, 4, q->before_id, -1);
    bv_stmt_bind_int64(s, 5, q->limit + 1);
    while ((rc = bv_stmt_step(s)) == BV_ROW) {
        if (n == q->limit) {
            snprintf(next_out, BV_UUID_STR_LEN + 1, "%s", ids[n - 1]);
            break;
        }
        json_t *o =
            json_pack("{s:s, s:s, s:s, s:o}", "id", bv_stmt_text(s, 0), "customer_id", bv_stmt_text(s, 1),
                      "kind", bv_stmt_text(s, 2), "created_at", time_json(bv_stmt_int64(s, 3)));
        snprintf(ids[n], sizeof(ids[n]), "%s", bv_stmt_text(s, 0));
        if (o == NULL || json_array_append_new(items, o) != 0) {
            rc = BV_ENOMEM;
            break;
        }
        n++;
    }
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    for (int i = 0; i < n; i++) {
        json_t *chans = NULL;
        if ((rc = channels_json(tx, ids[i], 0, &chans)) != 0)
            return rc;
        json_object_set_new(json_array_get(items, (size_t)i), "channels", chans);
    }
    return 0;
}

/* ---- replay ---- */

typedef struct {
    const char *id;
    const char *channel;
    const char *actor;
    int n;
} replay_t;

static int replay_job(bv_tx_t *tx, void *arg)
{
    replay_t *r = arg;
    char kind[32] = "", chans[2][8];
    int64_t gens[2];
    char *payload = NULL;
    int nc = 0, rc;
    r->n = 0;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT kind, payload FROM notifications WHERE id=?1");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, r->id, -1);
    rc = bv_stmt_step(s);
    if (rc == BV_ROW) {
        snprintf(kind, sizeof(kind), "%s", bv_stmt_text(s, 0));
        payload = bv_stmt_text(s, 1) != NULL ? strdup(bv_stmt_text(s, 1)) : NULL;
    }
    bv_stmt_reset(s);
    if (rc != BV_ROW)
        return rc == BV_DONE ? BV_ENOTFOUND : rc;
    if (strcmp(kind, "otp") == 0 || payload == NULL) {
        free(payload);
        return BV_EEXPIRED; /* an OTP is never kept, so never sent again */
    }
    s = bv_tx_prepare(tx, "SELECT channel, generation FROM notification_channels WHERE notification_id=?1 "
                          "AND status <> 'skipped' AND (?2 IS NULL OR channel = ?2) ORDER BY channel");
    if (s == NULL) {
        free(payload);
        return BV_EIO;
    }
    bv_stmt_bind_text(s, 1, r->id, -1);
    bv_stmt_bind_text(s, 2, r->channel, -1);
    while ((rc = bv_stmt_step(s)) == BV_ROW && nc < 2) {
        snprintf(chans[nc], sizeof(chans[nc]), "%s", bv_stmt_text(s, 0));
        gens[nc] = bv_stmt_int64(s, 1) + 1;
        nc++;
    }
    bv_stmt_reset(s);
    if (rc < 0 || nc == 0) {
        free(payload);
        return rc < 0 ? rc : BV_ENOTFOUND;
    }
    json_t *ev = json_loads(payload, 0, NULL);
    free(payload);
    if (ev == NULL)
        return BV_EIO;
    for (int i = 0; i < nc && rc >= 0; i++) {
        s = bv_tx_prepare(tx, "UPDATE notification_channels SET generation=?3, status='pending', attempts=0, "
                              "last_error=NULL, updated_at=?4 WHERE notification_id=?1 AND channel=?2");
        if (s == NULL) {
            rc = BV_EIO;
            break;
        }
        bv_stmt_bind_text(s, 1, r->id, -1);
        bv_stmt_bind_text(s, 2, chans[i], -1);
        bv_stmt_bind_int64(s, 3, gens[i]);
        bv_stmt_bind_int64(s, 4, bv_now_us());
        rc = bv_stmt_step(s);
        bv_stmt_reset(s);
        if (rc < 0)
            break;
        json_object_set_new(ev, "generation", json_integer(gens[i]));
        char *body = json_dumps(ev, JSON_COMPACT);
        json_t *attrs = json_pack("{s:s, s:[s], s:b}", "kind", kind, "channels", chans[i], "replay", 1);
        bv_queue_send_t m = {
            .body = body, .body_len = body ? strlen(body) : 0, .attributes = attrs, .delay_ms = -1};
        rc = body != NULL && attrs != NULL ? bv_queue_send(tx, chans[i], &m, NULL) : BV_ENOMEM;
        free(body);
        json_decref(attrs);
        if (rc >= 0)
            r->n++;
    }
    json_decref(ev);
    if (rc < 0)
        return rc;
    json_t *d = json_pack("{s:i}", "channels", r->n);
    bv_audit_event_t aev = {.actor = r->actor, .action = "notify.replay", .outcome = "success", .details = d};
    char res[64];
    snprintf(res, sizeof(res), "notification:%s", r->id);
    aev.resource = res;
    rc = bv_audit_append(tx, &aev);
    json_decref(d);
    return rc < 0 ? rc : 0;
}

int notify_replay(bv_store_t *st, const char *id, const char *channel, const char *actor, int *n_out)
{
    replay_t r = {.id = id, .channel = channel, .actor = actor};
    int rc;
    if (!bv_uuid_valid(id) ||
        (channel != NULL && strcmp(channel, "email") != 0 && strcmp(channel, "sms") != 0))
        return BV_EINVALID;
    rc = bv_store_run_tx(st, 1, replay_job, &r);
    if (n_out != NULL)
        *n_out = r.n;
    return rc;
}

int bv_notify_delivered(bv_tx_t *tx, const char *id, unsigned *channels_out)
{
    int rc, found = 0;
    *channels_out = 0;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT channel, status FROM notification_channels WHERE notification_id=?1");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, id, -1);
    while ((rc = bv_stmt_step(s)) == BV_ROW) {
        found = 1;
        if (strcmp(bv_stmt_text(s, 1), "delivered") != 0)
            continue;
        const char *ch = bv_stmt_text(s, 0);
        *channels_out |= strcmp(ch, "email") == 0 ? BV_NOTIFY_EMAIL : strcmp(ch, "sms") == 0 ? BV_NOTIFY_SMS : 0u;
    }
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    return found ? 0 : BV_ENOTFOUND;
}
