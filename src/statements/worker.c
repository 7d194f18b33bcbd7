/* The `statements` consumer: for each queued request, load the statement through the core
 * port, render it (PDF or CSV) and publish the e-mail with the file attached, in the write
 * job that marks the request sent and deletes the queue message (one commit: a crash
 * before it leaves the request queued and the message to be received again; after it, the
 * e-mail is on its way exactly once, the notification id being the request id).
 *
 * Transient failures (the core or the store unavailable) are retried with the queue's
 * backoff up to STATEMENTS_MAX_ATTEMPTS receives; permanent ones (the account is gone or
 * no longer the customer's, no e-mail address, too many movements, a file too large for
 * an attachment) mark the request failed with a reason code. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "base/log.h"
#include "core/core.h"
#include "customer/customer.h"
#include "notify/notify.h"
#include "queue/queue.h"
#include "statements/internal.h"

#define BANK_NAME "Bóveda"

typedef struct {
    char id[BV_UUID_STR_LEN + 1];
    char user_id[BV_UUID_STR_LEN + 1];
    char account_id[BV_UUID_STR_LEN + 1];
    char format[4];
    char status[8];
    int64_t from, to;
} job_t;

static int tx_load(bv_tx_t *tx, void *arg)
{
    job_t *j = arg;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT user_id, account_id, from_at, to_at, format, status "
                                     "FROM statement_requests WHERE id = ?");
    int rc;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, j->id, -1);
    rc = bv_stmt_step(s);
    if (rc == BV_ROW) {
        snprintf(j->user_id, sizeof(j->user_id), "%s", bv_stmt_text(s, 0) ? bv_stmt_text(s, 0) : "");
        snprintf(j->account_id, sizeof(j->account_id), "%s", bv_stmt_text(s, 1) ? bv_stmt_text(s, 1) : "");
        j->from = bv_stmt_int64(s, 2);
        j->to = bv_stmt_int64(s, 3);
        snprintf(j->format, sizeof(j->format), "%s", bv_stmt_text(s, 4) ? bv_stmt_text(s, 4) : "");
        snprintf(j->status, sizeof(j->status), "%s", bv_stmt_text(s, 5) ? bv_stmt_text(s, 5) : "");
        rc = 0;
    } else if (rc == BV_DONE) {
        rc = BV_ENOTFOUND;
    }
    bv_stmt_reset(s);
    return rc;
}

/* 1 while the request is still queued (nobody settled it meanwhile), 0 if not, or < 0. */
static int still_queued(bv_tx_t *tx, const char *id)
{
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT 1 FROM statement_requests WHERE id = ? AND status = 'queued'");
    int rc;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, id, -1);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc < 0 ? rc : rc == BV_ROW;
}

/* Acknowledges the message inside the job; a stale receipt means another receive owns it
 * now, and it will find the request settled. */
static int ack(bv_tx_t *tx, const bv_queue_msg_t *m)
{
    int rc = bv_queue_delete_tx(tx, m->queue, m->receipt);
    return rc == BV_ENOTFOUND ? 0 : rc;
}

static int audit(bv_tx_t *tx, const job_t *j, const char *outcome, json_t *details)
{
    char resource[64];
    snprintf(resource, sizeof(resource), "statement:%s", j->id);
    bv_audit_event_t ev = {.actor = "system",
                           .action = "statements.statement.send",
                           .resource = resource,
                           .outcome = outcome,
                           .details = details};
    int rc = details == NULL ? BV_ENOMEM : bv_audit_append(tx, &ev);
    json_decref(details);
    return rc;
}

typedef struct {
    const job_t *j;
    const bv_queue_msg_t *m;
    const char *reason;
} fail_tx_t;

static int tx_fail(bv_tx_t *tx, void *arg)
{
    fail_tx_t *f = arg;
    int rc = still_queued(tx, f->j->id);
    if (rc == 1) {
        if ((rc = bv_tx_execf(tx,
                              "UPDATE statement_requests SET status = 'failed', error = ?, updated_at = ? "
                              "WHERE id = ?",
                              "tit", f->reason, bv_now_us(), f->j->id)) != 0)
            return rc;
        if ((rc = audit(tx, f->j, "failure",
                        json_pack("{s:s, s:s}", "reason", f->reason, "format", f->j->format))) != 0)
            return rc;
    } else if (rc < 0) {
        return rc;
    }
    return ack(tx, f->m);
}

typedef struct {
    const job_t *j;
    const bv_queue_msg_t *m;
    const bv_customer_profile_t *profile;
    const bv_ledger_statement_t *st;
    const bv_buf_t *file;
    const char *filename;
} send_tx_t;

static int tx_send(bv_tx_t *tx, void *arg)
{
    send_tx_t *s = arg;
    const bv_customer_profile_t *p = s->profile;
    char period[64];
    json_t *vars = NULL;
    int rc = still_queued(tx, s->j->id);
    if (rc != 1)
        return rc < 0 ? rc : ack(tx, s->m);
    statements_period(s->st->from, s->st->to, p->locale, period);
    vars = json_pack("{s:s, s:s, s:s}", "name", p->display_name[0] != '\0' ? p->display_name : p->username,
                     "account", s->st->account.number, "period", period);
    if (vars == NULL)
        return BV_ENOMEM;
    bv_notify_attachment_t att = {.filename = s->filename,
                                  .content_type =
                                      strcmp(s->j->format, "pdf") == 0 ? "application/pdf" : "text/csv",
                                  .data = s->file->data,
                                  .len = s->file->len};
    bv_notification_t n = {.id = s->j->id, /* at most one e-mail per request */
                           .customer = {.id = s->j->user_id,
                                        .email = p->email,
                                        /* notify knows es and en; anything else: BOVEDA_LOCALE */
                                        .locale = strcmp(p->locale, "es") == 0 || strcmp(p->locale, "en") == 0
                                                      ? p->locale
                                                      : NULL},
                           .kind = BV_NOTIFY_STATEMENT,
                           .channels = BV_NOTIFY_EMAIL,
                           .vars = vars,
                           .attachments = &att,
                           .n_attachments = 1};
    rc = bv_notify_publish(tx, &n);
    json_decref(vars);
    if (rc < 0)
        return rc;
    if ((rc = bv_tx_execf(tx,
                          "UPDATE statement_requests SET status = 'sent', error = NULL, movements = ?, "
                          "size_bytes = ?, updated_at = ? WHERE id = ?",
                          "iiit", (int64_t)s->st->n_items, (int64_t)s->file->len, bv_now_us(), s->j->id)) !=
        0)
        return rc;
    if ((rc = audit(tx, s->j, "success",
                    json_pack("{s:s, s:I, s:I}", "format", s->j->format, "movements",
                              (json_int_t)s->st->n_items, "bytes", (json_int_t)s->file->len))) != 0)
        return rc;
    return ack(tx, s->m);
}

static bool transient(int rc)
{
    return bv_core_retryable(rc) || rc == BV_EIO || rc == BV_EBUSY || rc == BV_EUNAVAILABLE ||
           rc == BV_ESHUTDOWN || rc == BV_EKEYSTORE || rc == BV_ENOMEM;
}

static bv_queue_result_t fail(const job_t *j, const bv_queue_msg_t *m, const char *reason)
{
    fail_tx_t f = {.j = j, .m = m, .reason = reason};
    int rc = bv_store_run_tx(statements_store(), 1, tx_fail, &f);
    if (rc != 0) {
        bv_log_error("cannot record a failed statement", "\"statement\":\"%s\",\"error\":\"%s\"", j->id,
                     bv_err_name(rc));
        return BV_QUEUE_RETRY;
    }
    bv_log_warn("statement failed", "\"statement\":\"%s\",\"reason\":\"%s\"", j->id, reason);
    return BV_QUEUE_SETTLED;
}

/* A transient failure: retried with the queue's backoff, until the attempts run out. */
static bv_queue_result_t retry(const job_t *j, const bv_queue_msg_t *m, int rc, const char *reason)
{
    if (m->receive_count >= STATEMENTS_MAX_ATTEMPTS)
        return fail(j, m, reason);
    bv_log_warn("statement delayed", "\"statement\":\"%s\",\"reason\":\"%s\",\"error\":\"%s\",\"attempt\":%d",
                j->id, reason, bv_err_name(rc), m->receive_count);
    return BV_QUEUE_RETRY;
}

static bv_queue_result_t on_message(const bv_queue_consumer_t *c, bv_queue_msg_t *m, int64_t *retry_after_ms)
{
    (void)c;
    (void)retry_after_ms;
    job_t j;
    bv_customer_profile_t profile;
    bv_ledger_statement_t st = {0};
    bv_buf_t file = {0};
    char filename[100];
    bv_queue_result_t result = BV_QUEUE_RETRY;
    bv_core_t *core;
    int rc;
    memset(&j, 0, sizeof(j));
    memset(&profile, 0, sizeof(profile));
    json_t *body = json_loadb(m->body, m->body_len, 0, NULL);
    const char *id = json_string_value(json_object_get(body, "id"));
    if (id == NULL || !bv_uuid_valid(id)) {
        json_decref(body);
        bv_log_error("malformed statement message", "\"message\":\"%s\"", m->id);
        return BV_QUEUE_FAIL;
    }
    snprintf(j.id, sizeof(j.id), "%s", id);
    json_decref(body);
    if ((rc = bv_store_run_tx(statements_store(), 0, tx_load, &j)) != 0) {
        if (rc == BV_ENOTFOUND)
            return BV_QUEUE_ACK; /* nothing to send */
        return retry(&j, m, rc, "store_unavailable");
    }
    if (strcmp(j.status, "queued") != 0)
        return BV_QUEUE_ACK; /* settled already (a redelivery) */
    if ((rc = bv_customer_profile(j.user_id, &profile)) != 0) {
        result =
            rc == BV_ENOTFOUND ? fail(&j, m, "customer_not_found") : retry(&j, m, rc, "profile_unavailable");
        goto out;
    }
    if (profile.email[0] == '\0') {
        result = fail(&j, m, "no_email");
        goto out;
    }
    if ((core = bv_core_instance()) == NULL) {
        result = retry(&j, m, BV_EUNAVAILABLE, "core_unavailable");
        goto out;
    }
    rc = bv_core_statement(core, j.account_id, j.from, j.to, &st);
    if (rc != 0) {
        if (rc == BV_ENOTFOUND)
            result = fail(&j, m, "account_not_found");
        else if (rc == BV_ETOOLARGE)
            result = fail(&j, m, "too_many_movements");
        else if (transient(rc))
            result = retry(&j, m, rc, "core_unavailable");
        else
            result = fail(&j, m, "core_rejected");
        goto out;
    }
    /* defence in depth: the account must still be this customer's */
    if (strcmp(st.account.customer_id, j.user_id) != 0) {
        result = fail(&j, m, "account_not_found");
        goto out;
    }
    if (st.n_items > BV_STATEMENTS_MAX_MOVEMENTS) {
        result = fail(&j, m, "too_many_movements");
        goto out;
    }
    statements_doc_t d = {.st = &st,
                          .bank_name = BANK_NAME,
                          .holder_name = st.account.holder_name[0] != '\0' ? st.account.holder_name
                                                                           : profile.display_name,
                          .locale = profile.locale,
                          .generated_at = bv_now_us(),
                          .compress = true};
    rc = strcmp(j.format, "pdf") == 0 ? statements_pdf_render(&d, &file) : statements_csv_render(&d, &file);
    if (rc != 0) {
        result = rc == BV_ENOMEM ? retry(&j, m, rc, "render_failed") : fail(&j, m, "render_failed");
        goto out;
    }
    if (file.len > BV_NOTIFY_MAX_ATTACHMENT_BYTES) {
        result = fail(&j, m, "too_large");
        goto out;
    }
    statements_filename(&st, j.format, profile.locale, filename);
    send_tx_t s = {.j = &j, .m = m, .profile = &profile, .st = &st, .file = &file, .filename = filename};
    rc = bv_store_run_tx(statements_store(), 1, tx_send, &s);
    if (rc == 0) {
        bv_log_info("statement sent",
                    "\"statement\":\"%s\",\"format\":\"%s\",\"movements\":%zu,\"bytes\":%zu", j.id, j.format,
                    st.n_items, file.len);
        result = BV_QUEUE_SETTLED;
    } else if (rc == BV_EINVALID) {
        result = fail(&j, m, "notification_rejected");
    } else {
        result = retry(&j, m, rc, "store_unavailable");
    }
out:
    if (file.data != NULL)
        OPENSSL_cleanse(file.data, file.len); /* the customer's movements */
    bv_buf_free(&file);
    bv_ledger_statement_free(&st);
    OPENSSL_cleanse(&profile, sizeof(profile));
    return result;
}

static bv_queue_consumer_t consumer = {
    .name = "statements",
    .group = "statements",
    .queue = STATEMENTS_QUEUE,
    .concurrency = 2,
    .handler = on_message,
    .backoff_base_ms = 2000,
    .backoff_max_ms = 120000,
};
static bool registered;

int statements_worker_register(bv_app_t *app)
{
    bv_queue_options_t q = {.name = STATEMENTS_QUEUE,
                            .visibility_timeout_ms = 120000,
                            /* a message that crashes its consumer again and again stops here */
                            .max_receives = 3 * STATEMENTS_MAX_ATTEMPTS,
                            .dlq = STATEMENTS_DLQ};
    int rc = bv_queue_ensure(app->store, &q);
    if (rc != 0)
        return rc;
    if ((rc = bv_queue_consumer_register(&consumer)) != 0)
        return rc;
    registered = true;
    return 0;
}

void statements_worker_unregister(void)
{
    if (registered)
        bv_queue_consumer_unregister(&consumer);
    registered = false;
}
