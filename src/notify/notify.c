/* Publishing notifications, the e-mail and SMS consumers (provider choice, failover, rate
 * limits, delivery log, at-most-once per channel) and the module's life cycle. */
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "notify/internal.h"
#include "queue/queue.h"

#define MAX_RATE_WAIT_US 2000000 /* wait for a token at most this long, else retry later */

typedef struct {
    notify_provider_conf_t *conf;
    notify_bucket_t bucket;
    notify_circuit_t circuit;
} provider_rt_t;

static struct {
    notify_config_t cfg;
    int loaded;
    int curl_inited;
    bv_store_t *store;
    provider_rt_t email[2], sms[2];
    char locale[3];
    int registered_email, registered_sms;
} N = {.locale = "es"};

static const char *const kind_names[] = {"movement", "otp", "security_alert", "statement", "test"};

const char *bv_notify_kind_name(bv_notify_kind_t kind)
{
    return (unsigned)kind < sizeof(kind_names) / sizeof(kind_names[0]) ? kind_names[kind] : NULL;
}

/* ---- publish ---- */

static int text_ok(const char *s, size_t max)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static int notification_exists(bv_tx_t *tx, const char *id)
{
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT 1 FROM notifications WHERE id=?1");
    int rc;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, id, -1);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc == BV_ROW ? 1 : rc;
}

static int insert_channel(bv_tx_t *tx, const char *id, const char *channel, const char *status,
                          const char *error, int64_t now)
{
    bv_stmt_t *s =
        bv_tx_prepare(tx, "INSERT INTO notification_channels(notification_id, channel, status, last_error, "
                          "updated_at) VALUES (?1,?2,?3,?4,?5)");
    int rc;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, id, -1);
    bv_stmt_bind_text(s, 2, channel, -1);
    bv_stmt_bind_text(s, 3, status, -1);
    bv_stmt_bind_text(s, 4, error, -1);
    bv_stmt_bind_int64(s, 5, now);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

static int validate(const bv_notification_t *n, const char **tpl_out, const char **locale_out)
{
    const char *kind = bv_notify_kind_name(n->kind);
    const char *tpl = n->template_name != NULL ? n->template_name : kind;
    notify_rendered_t r;
    char detail[160];
    if (kind == NULL || !text_ok(n->customer.id, 128) || n->channels == 0 ||
        (n->channels & ~(BV_NOTIFY_EMAIL | BV_NOTIFY_SMS)) != 0)
        return BV_EINVALID;
    if (n->id != NULL && !bv_uuid_valid(n->id))
        return BV_EINVALID;
    if ((n->customer.email != NULL && !notify_email_valid(n->customer.email)) ||
        (n->customer.phone != NULL && !notify_phone_valid(n->customer.phone)))
        return BV_EINVALID;
    if (n->customer.locale != NULL && strcmp(n->customer.locale, "es") != 0 &&
        strcmp(n->customer.locale, "en") != 0)
        return BV_EINVALID;
    if (!notify_template_exists(tpl) || (n->vars != NULL && !json_is_object(n->vars)))
        return BV_EINVALID;
    /* the OTP template is for OTPs only, and OTPs go nowhere else */
    if ((strcmp(tpl, "otp") == 0) != (n->kind == BV_NOTIFY_OTP))
        return BV_EINVALID;
    if (n->n_attachments > BV_NOTIFY_MAX_ATTACHMENTS || (n->n_attachments > 0 && n->attachments == NULL))
        return BV_EINVALID;
    for (size_t i = 0; i < n->n_attachments; i++)
        if (n->attachments[i].len > BV_NOTIFY_MAX_ATTACHMENT_BYTES || n->attachments[i].filename == NULL ||
            n->attachments[i].content_type == NULL)
            return BV_EINVALID;
    /* render once now so a bad call fails in the caller's transaction, not in a consumer */
    if (notify_render(tpl, n->customer.locale != NULL ? n->customer.locale : N.locale, n->vars, &r, detail,
                      sizeof(detail)) != 0) {
        bv_log_info("notification rejected", "\"reason\":\"%s\"", detail);
        return BV_EINVALID;
    }
    notify_rendered_free(&r);
    *tpl_out = tpl;
    *locale_out = n->customer.locale != NULL ? n->customer.locale : N.locale;
    return 0;
}

static json_t *attachments_json(const bv_notification_t *n)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < n->n_attachments; i++) {
        bv_buf_t b64 = {0};
        const bv_notify_attachment_t *a = &n->attachments[i];
        if (notify_base64(a->data, a->len, 0, &b64) != 0 ||
            json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "filename", a->filename, "content_type",
                                                 a->content_type, "data",
                                                 b64.data != NULL ? b64.data : "")) != 0) {
            bv_buf_free(&b64);
            json_decref(arr);
            return NULL;
        }
        bv_buf_free(&b64);
    }
    return arr;
}

int bv_notify_publish_ex(bv_tx_t *tx, const bv_notification_t *n, char id_out[BV_UUID_STR_LEN + 1])
{
    char id[BV_UUID_STR_LEN + 1];
    const char *tpl = NULL, *locale = NULL;
    json_t *event = NULL, *attrs = NULL, *channels = NULL;
    char *body = NULL;
    int64_t now = bv_now_us();
    int rc, want_email, want_sms;
    bv_stmt_t *s;
    if ((rc = validate(n, &tpl, &locale)) != 0)
        return rc;
    if (n->id != NULL) {
        snprintf(id, sizeof(id), "%s", n->id);
        for (char *p = id; *p; p++)
            if (*p >= 'A' && *p <= 'F')
                *p = (char)(*p - 'A' + 'a');
        if ((rc = notification_exists(tx, id)) != 0) {
            if (rc == 1 && id_out != NULL)
                memcpy(id_out, id, sizeof(id));
            return rc; /* 1: already published (duplicate suppressed), or an error */
        }
    } else {
        bv_uuid7(id);
    }
    want_email = (n->channels & BV_NOTIFY_EMAIL) != 0;
    want_sms = (n->channels & BV_NOTIFY_SMS) != 0;
    rc = BV_ENOMEM;
    channels = json_array();
    if (channels == NULL)
        goto out;
    if (want_email && n->customer.email != NULL)
        json_array_append_new(channels, json_string("email"));
    if (want_sms && n->customer.phone != NULL)
        json_array_append_new(channels, json_string("sms"));
    json_t *att = n->n_attachments > 0 ? attachments_json(n) : NULL;
    if (n->n_attachments > 0 && att == NULL)
        goto out;
    event = json_pack("{s:s, s:i, s:{s:s, s:s?, s:s?, s:s}, s:s, s:s, s:O, s:o?}", "id", id, "generation", 1,
                      "customer", "id", n->customer.id, "email", n->customer.email, "phone",
                      n->customer.phone, "locale", locale, "kind", bv_notify_kind_name(n->kind), "template",
                      tpl, "vars", n->vars != NULL ? (json_t *)n->vars : json_object(), "attachments", att);
    if (n->vars == NULL && event != NULL)
        json_decref(json_object_get(event, "vars")); /* the temporary object: O took a reference */
    if (event == NULL || (body = json_dumps(event, JSON_COMPACT)) == NULL)
        goto out;
    attrs = json_pack("{s:s, s:O}", "kind", bv_notify_kind_name(n->kind), "channels", channels);
    if (attrs == NULL)
        goto out;
    if (n->customer.email != NULL)
        json_object_set_new(attrs, "has_email", json_true());
    if (n->customer.phone != NULL)
        json_object_set_new(attrs, "has_phone", json_true());
    s = bv_tx_prepare(
        tx, "INSERT INTO notifications(id, customer_id, kind, template, locale, payload, created_at) "
            "VALUES (?1,?2,?3,?4,?5,?6,?7)");
    if (s == NULL) {
        rc = BV_EIO;
        goto out;
    }
    bv_stmt_bind_text(s, 1, id, -1);
    bv_stmt_bind_text(s, 2, n->customer.id, -1);
    bv_stmt_bind_text(s, 3, bv_notify_kind_name(n->kind), -1);
    bv_stmt_bind_text(s, 4, tpl, -1);
    bv_stmt_bind_text(s, 5, locale, -1);
    bv_stmt_bind_text(s, 6, n->kind == BV_NOTIFY_OTP ? NULL : body, -1); /* an OTP is never kept */
    bv_stmt_bind_int64(s, 7, now);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc < 0)
        goto out;
    if (want_email && (rc = insert_channel(tx, id, "email", n->customer.email ? "pending" : "skipped",
                                           n->customer.email ? NULL : "no e-mail address", now)) != 0)
        goto out;
    if (want_sms && (rc = insert_channel(tx, id, "sms", n->customer.phone ? "pending" : "skipped",
                                         n->customer.phone ? NULL : "no phone number", now)) != 0)
        goto out;
    if (json_array_size(channels) > 0 && (rc = bv_queue_publish(tx, "notifications", attrs, body)) != 0)
        goto out;
    if (id_out != NULL)
        memcpy(id_out, id, sizeof(id));
    rc = 0;
out:
    if (body != NULL) {
        OPENSSL_cleanse(body, strlen(body));
        free(body);
    }
    json_decref(event);
    json_decref(attrs);
    json_decref(channels);
    return rc;
}

int bv_notify_publish(bv_tx_t *tx, const bv_notification_t *n)
{
    return bv_notify_publish_ex(tx, n, NULL);
}

/* ---- delivery ---- */

typedef struct {
    char provider[32];
    const char *status; /* sent | retry | rate_limited | failed */
    char provider_message_id[128];
    char error[160];
    int64_t duration_us;
    int64_t at;
} attempt_t;

typedef struct {
    const char *id;
    const char *channel;
    int64_t generation;
    /* read */
    int found;
    char status[16];
    int64_t row_generation;
    int attempts;
} state_t;

static int state_job(bv_tx_t *tx, void *arg)
{
    state_t *st = arg;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT status, generation, attempts FROM notification_channels "
                                     "WHERE notification_id=?1 AND channel=?2");
    int rc;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, st->id, -1);
    bv_stmt_bind_text(s, 2, st->channel, -1);
    rc = bv_stmt_step(s);
    st->found = rc == BV_ROW;
    if (rc == BV_ROW) {
        snprintf(st->status, sizeof(st->status), "%s", bv_stmt_text(s, 0));
        st->row_generation = bv_stmt_int64(s, 1);
        st->attempts = (int)bv_stmt_int64(s, 2);
    }
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

typedef struct {
    const char *id, *channel, *kind;
    int64_t generation;
    const char *queue, *receipt;
    attempt_t *attempts;
    int n_attempts;
    const char *outcome; /* delivered | retrying | failed */
    const char *reason;  /* failed: why */
} record_t;

static int record_job(bv_tx_t *tx, void *arg)
{
    record_t *r = arg;
    int64_t now = bv_now_us();
    const attempt_t *last = r->n_attempts > 0 ? &r->attempts[r->n_attempts - 1] : NULL;
    int rc;
    bv_stmt_t *s;
    for (int i = 0; i < r->n_attempts; i++) {
        char aid[BV_UUID_STR_LEN + 1];
        attempt_t *a = &r->attempts[i];
        bv_uuid7(aid);
        s = bv_tx_prepare(
            tx,
            "INSERT INTO notification_attempts(id, notification_id, channel, generation, provider, "
            "status, provider_message_id, error, duration_us, at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_text(s, 1, aid, -1);
        bv_stmt_bind_text(s, 2, r->id, -1);
        bv_stmt_bind_text(s, 3, r->channel, -1);
        bv_stmt_bind_int64(s, 4, r->generation);
        bv_stmt_bind_text(s, 5, a->provider, -1);
        bv_stmt_bind_text(s, 6, a->status, -1);
        bv_stmt_bind_text(s, 7, a->provider_message_id[0] ? a->provider_message_id : NULL, -1);
        bv_stmt_bind_text(s, 8, a->error[0] ? a->error : NULL, -1);
        bv_stmt_bind_int64(s, 9, a->duration_us);
        bv_stmt_bind_int64(s, 10, a->at);
        rc = bv_stmt_step(s);
        bv_stmt_reset(s);
        if (rc < 0)
            return rc;
    }
    s = bv_tx_prepare(
        tx, "UPDATE notification_channels SET status=?3, attempts=attempts+?4, "
            "provider=coalesce(?5, provider), provider_message_id=coalesce(?6, provider_message_id), "
            "last_error=?7, updated_at=?8 WHERE notification_id=?1 AND channel=?2 AND generation=?9");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, r->id, -1);
    bv_stmt_bind_text(s, 2, r->channel, -1);
    bv_stmt_bind_text(s, 3, r->outcome, -1);
    bv_stmt_bind_int64(s, 4, r->n_attempts);
    bv_stmt_bind_text(s, 5, last != NULL ? last->provider : NULL, -1);
    bv_stmt_bind_text(s, 6, last != NULL && last->provider_message_id[0] ? last->provider_message_id : NULL,
                      -1);
    bv_stmt_bind_text(s, 7,
                      strcmp(r->outcome, "delivered") == 0 ? NULL
                      : r->reason != NULL                  ? r->reason
                      : last != NULL                       ? last->error
                                                           : NULL,
                      -1);
    bv_stmt_bind_int64(s, 8, now);
    bv_stmt_bind_int64(s, 9, r->generation);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    if (strcmp(r->outcome, "failed") == 0) {
        char when[32];
        bv_time_format(now, when);
        json_t *body =
            json_pack("{s:s, s:s, s:s, s:s, s:I, s:s}", "notification_id", r->id, "channel", r->channel,
                      "kind", r->kind != NULL ? r->kind : "", "reason", r->reason != NULL ? r->reason : "",
                      "generation", (json_int_t)r->generation, "failed_at", when);
        json_t *attrs =
            json_pack("{s:s, s:s}", "channel", r->channel, "kind", r->kind != NULL ? r->kind : "");
        char *b = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
        bv_queue_send_t m = {
            .body = b, .body_len = b != NULL ? strlen(b) : 0, .attributes = attrs, .delay_ms = -1};
        rc = b != NULL && attrs != NULL ? bv_queue_send(tx, "analysis", &m, NULL) : BV_ENOMEM;
        free(b);
        json_decref(body);
        json_decref(attrs);
        if (rc < 0)
            return rc;
    }
    if (r->receipt != NULL) {
        rc = bv_queue_delete_tx(tx, r->queue, r->receipt);
        if (rc != 0 && rc != BV_ENOTFOUND)
            return rc;
    }
    return 0;
}

static void nap_us(int64_t us)
{
    struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

typedef struct {
    int delivered;
    int permanent;
    int64_t retry_ms; /* when not delivered and not permanent: -1 = backoff */
    char reason[160];
} outcome_t;

/* Tries the providers of a channel in order: the primary unless its circuit is open or it
 * is paused by a 429, then the secondary. */
static void deliver(provider_rt_t *rt, const char *channel, const char *to, const bv_buf_t *mime,
                    const char *text, const char *msg_id, attempt_t *attempts, int *n_attempts, outcome_t *o)
{
    int64_t min_wait_us = -1;
    memset(o, 0, sizeof(*o));
    o->retry_ms = -1;
    for (int i = 0; i < 2; i++) {
        provider_rt_t *p = &rt[i];
        notify_send_result_t res;
        int64_t now = bv_mono_us(), wait, need = 0, t0;
        if (p->conf == NULL || !p->conf->configured)
            continue;
        if ((wait = notify_circuit_wait(&p->circuit, now)) > 0) {
            min_wait_us = min_wait_us < 0 || wait < min_wait_us ? wait : min_wait_us;
            continue;
        }
        if ((wait = notify_bucket_reserve(&p->bucket, now, MAX_RATE_WAIT_US, &need)) < 0) {
            min_wait_us = min_wait_us < 0 || need < min_wait_us ? need : min_wait_us;
            continue;
        }
        if (wait > 0)
            nap_us(wait);
        t0 = bv_mono_us();
        attempt_t *a = &attempts[(*n_attempts)++];
        memset(a, 0, sizeof(*a));
        snprintf(a->provider, sizeof(a->provider), "%s", p->conf->name);
        a->at = bv_now_us();
        if (strcmp(channel, "email") == 0)
            notify_smtp_send(p->conf, N.cfg.ca_file, N.cfg.timeout_ms, to, mime, msg_id, &res);
        else
            notify_sms_send(p->conf, N.cfg.ca_file, N.cfg.timeout_ms, to, text, msg_id, &res);
        a->duration_us = bv_mono_us() - t0;
        snprintf(a->provider_message_id, sizeof(a->provider_message_id), "%s", res.provider_message_id);
        snprintf(a->error, sizeof(a->error), "%s", res.error);
        if (res.ok) {
            a->status = "sent";
            notify_circuit_success(&p->circuit);
            o->delivered = 1;
            return;
        }
        snprintf(o->reason, sizeof(o->reason), "%.24s: %.120s", p->conf->name, res.error);
        if (res.retry_after_ms >= 0) { /* 429: honour Retry-After, try the other provider */
            a->status = "rate_limited";
            notify_circuit_pause(&p->circuit, bv_mono_us(), res.retry_after_ms * 1000);
            int64_t w = res.retry_after_ms * 1000;
            min_wait_us = min_wait_us < 0 || w < min_wait_us ? w : min_wait_us;
            continue;
        }
        if (res.permanent) { /* the message is refused: another provider will not help */
            a->status = "failed";
            o->permanent = 1;
            return;
        }
        a->status = "retry";
        if (notify_circuit_failure(&p->circuit, bv_mono_us()))
            bv_log_warn("notification provider circuit opened", "\"provider\":\"%s\",\"cooldown_s\":%lld",
                        p->conf->name, (long long)(N.cfg.cooldown_ms / 1000));
        if (notify_circuit_wait(&p->circuit, bv_mono_us()) == 0)
            return; /* not failing over yet: retry this one after a backoff */
    }
    if (min_wait_us >= 0)
        o->retry_ms = (min_wait_us + 999) / 1000;
}

static bv_queue_result_t on_message(const bv_queue_consumer_t *c, bv_queue_msg_t *m, int64_t *retry_after_ms)
{
    const char *channel = c->cls;
    json_t *ev = json_loads(m->body, 0, NULL);
    const char *id = json_string_value(json_object_get(ev, "id"));
    json_t *cust = json_object_get(ev, "customer");
    const char *kind = json_string_value(json_object_get(ev, "kind"));
    const char *tpl = json_string_value(json_object_get(ev, "template"));
    const char *locale = json_string_value(json_object_get(cust, "locale"));
    const char *to =
        json_string_value(json_object_get(cust, strcmp(channel, "email") == 0 ? "email" : "phone"));
    int64_t gen = json_integer_value(json_object_get(ev, "generation"));
    notify_rendered_t r = {0};
    bv_buf_t mime = {0};
    attempt_t attempts[4];
    outcome_t o = {0};
    char msg_id[128], detail[160];
    bv_queue_result_t result = BV_QUEUE_RETRY;
    int rc;
    record_t rec = {.id = id,
                    .channel = channel,
                    .kind = kind,
                    .generation = gen,
                    .queue = c->queue,
                    .attempts = attempts};
    state_t st = {.id = id, .channel = channel, .generation = gen};
    if (ev == NULL || id == NULL || tpl == NULL || to == NULL || gen < 1) {
        bv_log_error("malformed notification message: dead-lettered", "\"queue\":\"%s\",\"message\":\"%s\"",
                     c->queue, m->id);
        json_decref(ev);
        return BV_QUEUE_FAIL;
    }
    if ((rc = bv_store_read(N.store, state_job, &st)) != 0)
        goto out;
    if (!st.found) {
        bv_log_error("notification message without its delivery record: dead-lettered",
                     "\"notification\":\"%s\",\"channel\":\"%s\"", id, channel);
        result = BV_QUEUE_FAIL;
        goto out;
    }
    /* at most once per channel and generation: an admin replay bumps the generation */
    if (st.row_generation > gen || (st.row_generation == gen && (strcmp(st.status, "delivered") == 0 ||
                                                                 strcmp(st.status, "failed") == 0 ||
                                                                 strcmp(st.status, "skipped") == 0))) {
        bv_log_info("duplicate notification suppressed", "\"notification\":\"%s\",\"channel\":\"%s\"", id,
                    channel);
        result = BV_QUEUE_ACK;
        goto out;
    }
    rec.receipt = m->receipt;
    if (st.attempts >= N.cfg.max_attempts) {
        rec.outcome = "failed";
        snprintf(detail, sizeof(detail), "gave up after %d attempts", st.attempts);
        rec.reason = detail;
        goto record;
    }
    if (notify_render(tpl, locale, json_object_get(ev, "vars"), &r, detail, sizeof(detail)) != 0) {
        rec.outcome = "failed";
        rec.reason = detail;
        goto record;
    }
    snprintf(msg_id, sizeof(msg_id), "%s.%s.%lld@boveda", id, channel, (long long)gen);
    if (strcmp(channel, "email") == 0) {
        notify_mime_part_t parts[BV_NOTIFY_MAX_ATTACHMENTS];
        bv_buf_t decoded[BV_NOTIFY_MAX_ATTACHMENTS];
        json_t *att = json_object_get(ev, "attachments");
        size_t na = json_array_size(att) <= BV_NOTIFY_MAX_ATTACHMENTS ? json_array_size(att) : 0;
        memset(decoded, 0, sizeof(decoded));
        for (size_t i = 0; i < na; i++) {
            json_t *a = json_array_get(att, i);
            const char *d = json_string_value(json_object_get(a, "data"));
            unsigned char *raw = NULL;
            size_t dl = d != NULL ? strlen(d) : 0;
            raw = malloc(dl / 4 * 3 + 3);
            int n =
                raw != NULL ? EVP_DecodeBlock(raw, (const unsigned char *)(d != NULL ? d : ""), (int)dl) : -1;
            if (n >= 0) {
                if (dl >= 1 && d[dl - 1] == '=')
                    n--;
                if (dl >= 2 && d[dl - 2] == '=')
                    n--;
                bv_buf_append(&decoded[i], raw, (size_t)n);
            }
            free(raw);
            parts[i] = (notify_mime_part_t){json_string_value(json_object_get(a, "filename")),
                                            json_string_value(json_object_get(a, "content_type")),
                                            decoded[i].data != NULL ? decoded[i].data : "", decoded[i].len};
        }
        notify_mime_t mm = {.from = N.cfg.email[0].from,
                            .to = to,
                            .subject = r.subject,
                            .text = r.text,
                            .html = r.html,
                            .message_id = msg_id,
                            .date_us = bv_now_us(),
                            .attachments = parts,
                            .n_attachments = na};
        rc = notify_mime_build(&mm, &mime);
        for (size_t i = 0; i < na; i++)
            bv_buf_free(&decoded[i]);
        if (rc != 0) {
            rec.outcome = "failed";
            rec.reason = "cannot build the e-mail (bad address or attachment)";
            goto record;
        }
    }
    deliver(strcmp(channel, "email") == 0 ? N.email : N.sms, channel, to, &mime, r.text, msg_id, attempts,
            &rec.n_attempts, &o);
    if (o.delivered) {
        rec.outcome = "delivered";
    } else if (o.permanent) {
        rec.outcome = "failed";
        rec.reason = o.reason;
    } else if (st.attempts + rec.n_attempts >= N.cfg.max_attempts && rec.n_attempts > 0) {
        rec.outcome = "failed";
        snprintf(detail, sizeof(detail), "gave up after %d attempts; last: %.100s",
                 st.attempts + rec.n_attempts, o.reason);
        rec.reason = detail;
    } else {
        rec.outcome = "retrying";
        rec.reason = o.reason[0] ? o.reason : "providers unavailable (circuit open or rate limited)";
        rec.receipt = NULL; /* stays in the queue */
        *retry_after_ms = o.retry_ms;
    }
record:
    rc = bv_store_run_tx(N.store, 1, record_job, &rec);
    if (rc != 0) {
        bv_log_error("cannot record notification outcome", "\"notification\":\"%s\",\"error\":\"%s\"", id,
                     bv_err_name(rc));
        result = BV_QUEUE_RETRY;
        goto out;
    }
    bv_log_info("notification attempt",
                "\"notification\":\"%s\",\"channel\":\"%s\",\"outcome\":\"%s\",\"attempts\":%d", id, channel,
                rec.outcome, rec.n_attempts);
    result = rec.receipt != NULL ? BV_QUEUE_SETTLED : BV_QUEUE_RETRY;
out:
    if (mime.data != NULL)
        OPENSSL_cleanse(mime.data, mime.len);
    bv_buf_free(&mime);
    notify_rendered_free(&r);
    json_decref(ev);
    return result;
}

static bv_queue_consumer_t email_consumer = {.name = "notify-email",
                                             .group = "notify",
                                             .queue = "email",
                                             .handler = on_message,
                                             .cls = "email",
                                             .backoff_base_ms = 1000,
                                             .backoff_max_ms = 300000};
static bv_queue_consumer_t sms_consumer = {.name = "notify-sms",
                                           .group = "notify",
                                           .queue = "sms",
                                           .handler = on_message,
                                           .cls = "sms",
                                           .backoff_base_ms = 1000,
                                           .backoff_max_ms = 300000};

/* ---- module ---- */

static int apply_queue_settings(bv_store_t *st)
{
    static const char *const names[] = {"email", "sms"};
    for (size_t i = 0; i < 2; i++) {
        bv_queue_options_t o = {.name = names[i],
                                .visibility_timeout_ms = N.cfg.visibility_ms,
                                .max_receives = 12,
                                .dlq = i == 0 ? "email-dlq" : "sms-dlq"};
        int rc = bv_queue_ensure(st, &o);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int bv_notify_module_init(bv_app_t *app)
{
    char err[256];
    int rc;
    N.store = app->store;
    if ((rc = notify_config_load(app->cfg, &N.cfg, app->cfg->locale, err, sizeof(err))) != 0) {
        bv_log_error("invalid notification setting", "\"setting\":\"%s\"", err);
        fprintf(stderr, "boveda: configuration error: %s\n", err);
        return BV_ECONFIG;
    }
    N.loaded = 1;
    snprintf(N.locale, sizeof(N.locale), "%s", N.cfg.locale);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return BV_EINTERNAL;
    N.curl_inited = 1;
    int64_t now = bv_mono_us();
    for (int i = 0; i < 2; i++) {
        N.email[i].conf = &N.cfg.email[i];
        N.sms[i].conf = &N.cfg.sms[i];
        notify_bucket_init(&N.email[i].bucket, N.cfg.email[i].rate_milli, N.cfg.email[i].burst, now);
        notify_bucket_init(&N.sms[i].bucket, N.cfg.sms[i].rate_milli, N.cfg.sms[i].burst, now);
        notify_circuit_init(&N.email[i].circuit, N.cfg.failover_after, N.cfg.cooldown_ms * 1000);
        notify_circuit_init(&N.sms[i].circuit, N.cfg.failover_after, N.cfg.cooldown_ms * 1000);
    }
    if ((rc = apply_queue_settings(app->store)) != 0)
        return rc;
    email_consumer.concurrency = N.cfg.concurrency;
    sms_consumer.concurrency = N.cfg.concurrency;
    /* a channel without a provider has no consumer here: its messages wait in the queue for a
       process that has one (or until retention) */
    if (N.cfg.email[0].configured) {
        if ((rc = bv_queue_consumer_register(&email_consumer)) != 0)
            return rc;
        N.registered_email = 1;
    }
    if (N.cfg.sms[0].configured) {
        if ((rc = bv_queue_consumer_register(&sms_consumer)) != 0)
            return rc;
        N.registered_sms = 1;
    }
    if (app->http != NULL)
        bv_log_info("notifications", "\"email\":%s,\"sms\":%s,\"email_failover\":%s,\"sms_failover\":%s",
                    N.registered_email ? "true" : "false", N.registered_sms ? "true" : "false",
                    N.cfg.email[1].configured ? "true" : "false", N.cfg.sms[1].configured ? "true" : "false");
    return 0;
}

void bv_notify_module_fini(bv_app_t *app)
{
    (void)app;
    if (N.registered_email)
        bv_queue_consumer_unregister(&email_consumer);
    if (N.registered_sms)
        bv_queue_consumer_unregister(&sms_consumer);
    N.registered_email = N.registered_sms = 0;
    if (N.loaded)
        notify_config_free(&N.cfg);
    N.loaded = 0;
    if (N.curl_inited)
        curl_global_cleanup();
    N.curl_inited = 0;
}

bv_store_t *notify_store(void)
{
    return N.store;
}
int notify_channel_ready(const char *channel)
{
    return strcmp(channel, "email") == 0 ? N.registered_email : N.registered_sms;
}
