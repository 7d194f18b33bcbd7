/* The transfer worker: one message on the `transfers` queue per confirmed transfer, handled
 * by the state machine of docs/transfers.md. Exactly once: the transfer id is the core's
 * reference (the core executes a reference at most once) and every delivery first asks the
 * core whether the reference exists (reconciliation: at least once). A transfer fails only
 * when the core surely never executed it: no execute sent, or a lookup that started after
 * the deadline of the last execute sent (the core refuses to execute past it). */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "notify/notify.h"
#include "transfers/internal.h"

void tr_notification_id(const char *transfer_id, const char *party, char out[BV_UUID_STR_LEN + 1])
{
    static const char hexd[] = "0123456789abcdef";
    unsigned char h[32], u[16];
    unsigned int len = sizeof(h);
    char msg[160];
    int n = snprintf(msg, sizeof(msg), "boveda-transfer-notification/v1:%s:%s", transfer_id, party);
    EVP_Digest(msg, (size_t)n, h, &len, EVP_sha256(), NULL);
    memcpy(u, h, 16);
    /* the transfer's own 48-bit timestamp (a UUIDv7's first 12 hex digits), so the
     * notification sorts with the transfer */
    for (int i = 0, k = 0; i < 6 && transfer_id[k] != '\0'; i++) {
        unsigned v = 0;
        for (int j = 0; j < 2; k++) {
            char c = transfer_id[k];
            if (c == '-')
                continue;
            v = v * 16 + (unsigned)(c >= 'a' ? c - 'a' + 10 : c >= 'A' ? c - 'A' + 10 : c - '0');
            j++;
        }
        u[i] = (unsigned char)v;
    }
    u[6] = (unsigned char)(0x70 | (u[6] & 0x0f)); /* version 7 */
    u[8] = (unsigned char)(0x80 | (u[8] & 0x3f)); /* RFC 9562 variant */
    for (int i = 0, o = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hexd[u[i] >> 4];
        out[o++] = hexd[u[i] & 15];
    }
    out[BV_UUID_STR_LEN] = '\0';
}

/* ---- small write jobs ---- */

typedef struct {
    const char *id;
    const char *stage;
    int64_t now;
    int64_t deadline;  /* claim: the new last_deadline */
    int add_attempt;   /* count a retryable failure */
    const char *error; /* its slug */
    int changed;
} step_arg_t;

/* Records a stage of a transfer that is not final. */
static int tx_stage(bv_tx_t *tx, void *arg)
{
    step_arg_t *a = arg;
    int rc = bv_tx_execf(tx,
                         "UPDATE customer_transfers SET stage = ?, status = 'processing', "
                         "attempts = attempts + ?, last_error = coalesce(?, last_error), updated_at = ? "
                         "WHERE id = ? AND status IN ('queued', 'processing')",
                         "titit", a->stage, (int64_t)a->add_attempt, a->error, a->now, a->id);
    if (rc != 0)
        return rc;
    a->changed = bv_tx_changes(tx) == 1;
    if (a->changed && a->add_attempt && strcmp(a->stage, "waiting") == 0)
        rc = tr_audit(tx, NULL, "transfers.transfer.retry", a->id, "failure", NULL, NULL,
                      json_pack("{s:s}", "error", a->error != NULL ? a->error : ""));
    return rc;
}

/* Claims the right to send an execute: only when no earlier execute can still reach the
 * core (every earlier deadline passed), so two requests for the same transfer are never in
 * flight at once and a definitive rejection is the last word. Records request_before and
 * the deadline in the same statement. */
static int tx_claim(bv_tx_t *tx, void *arg)
{
    step_arg_t *a = arg;
    int rc = bv_tx_execf(tx,
                         "UPDATE customer_transfers SET stage = 'request_before', status = 'processing', "
                         "last_deadline = ?, sends = sends + 1, updated_at = ? "
                         "WHERE id = ? AND status IN ('queued', 'processing') AND last_deadline + ? < ?",
                         "iitii", a->deadline, a->now, a->id, (int64_t)TR_CLOCK_SKEW_US, a->now);
    if (rc != 0)
        return rc;
    a->changed = bv_tx_changes(tx) == 1;
    if (!a->changed)
        return 0;
    char dl[32];
    bv_time_format(a->deadline, dl);
    return tr_audit(tx, NULL, "transfers.transfer.send", a->id, "success", NULL, NULL,
                    json_pack("{s:s}", "deadline", dl));
}

/* ---- the final state ---- */

typedef struct {
    const tr_transfer_t *t;
    int success;
    const char *core_transfer_id; /* success */
    int code;                     /* failure */
    const char *receipt;
    int64_t now;
    bool have_sender, have_receiver;
    bv_customer_profile_t sender, receiver;
    int changed;
} final_arg_t;

/* Why a transfer failed, in the customer's words and language. */
static const char *failure_reason(int code, const char *locale)
{
    static const struct {
        int code;
        const char *es, *en;
    } reasons[] = {
        {BV_EINSUFFICIENT_FUNDS, "fondos insuficientes", "insufficient funds"},
        {BV_EACCOUNT_FROZEN, "una de las cuentas está bloqueada", "one of the accounts is frozen"},
        {BV_EACCOUNT_CLOSED, "una de las cuentas está cerrada", "one of the accounts is closed"},
        {BV_EUNKNOWN_ACCOUNT, "la cuenta de destino no existe", "the destination account does not exist"},
        {BV_ECURRENCY_MISMATCH, "las monedas de las cuentas no coinciden", "the accounts' currencies differ"},
        {BV_EAMOUNT, "importe no válido", "invalid amount"},
    };
    int en = strcmp(locale, "en") == 0;
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (reasons[i].code == code)
            return en ? reasons[i].en : reasons[i].es;
    return en ? "the bank could not execute it" : "el banco no pudo ejecutarla";
}

/* The notice to one party; 0 when published or nothing to send, store errors. A notice
 * the notify module refuses (BV_EINVALID: a bad contact) is logged and skipped: it must
 * not hold the transfer's final state back. */
static int notify_party(bv_tx_t *tx, const final_arg_t *a, const bv_customer_profile_t *p, const char *party,
                        int *published)
{
    const tr_transfer_t *t = a->t;
    char nid[BV_UUID_STR_LEN + 1], amount[BV_LEDGER_AMOUNT_MAX], date[32];
    int exponent = bv_ledger_currency_exponent(t->currency), rc;
    unsigned channels = p->channels;
    int receiver = strcmp(party, "receiver") == 0;
    json_t *vars;
    if (p->email[0] == '\0')
        channels &= ~BV_NOTIFY_EMAIL;
    if (p->phone[0] == '\0')
        channels &= ~BV_NOTIFY_SMS;
    if (channels == 0)
        return 0;
    tr_notification_id(t->id, party, nid);
    bv_ledger_amount_format(t->amount, exponent < 0 ? 0 : exponent, amount);
    bv_time_format(a->now, date);
    date[10] = '\0'; /* YYYY-MM-DD */
    const char *en = strcmp(p->locale, "en") == 0 ? "en" : "es";
    bv_notification_t n = {.id = nid,
                           .customer = {.id = p->id,
                                        .email = p->email[0] ? p->email : NULL,
                                        .phone = p->phone[0] ? p->phone : NULL,
                                        .locale = en},
                           .kind = BV_NOTIFY_MOVEMENT,
                           .channels = channels};
    const char *name = p->display_name[0] ? p->display_name : p->username;
    if (a->success) {
        n.template_name = receiver ? "transfer_received" : "transfer_sent";
        vars = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "name", name, "amount", amount,
                         "currency", t->currency, "account", receiver ? t->to_number : t->from_number,
                         "to_account", t->to_number, "date", date);
    } else {
        n.template_name = "transfer_failed";
        vars = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "name", name, "amount", amount, "currency",
                         t->currency, "account", t->from_number, "to_account", t->to_number, "reason",
                         failure_reason(a->code, en), "date", date);
    }
    if (vars == NULL)
        return BV_ENOMEM;
    n.vars = vars;
    rc = bv_notify_publish(tx, &n);
    json_decref(vars);
    if (rc == BV_EINVALID) {
        bv_log_warn("transfer notice refused by notify", "\"transfer\":\"%s\",\"party\":\"%s\"", t->id,
                    party);
        return 0;
    }
    if (rc < 0)
        return rc;
    *published = 1;
    return 0;
}

static int tx_final(bv_tx_t *tx, void *arg)
{
    final_arg_t *a = arg;
    const tr_transfer_t *t = a->t;
    int published = 0, rc;
    a->changed = 0;
    if (a->success)
        rc = bv_tx_execf(tx,
                         "UPDATE customer_transfers SET status = 'success', stage = 'success', "
                         "core_transfer_id = ?, completed_at = ?, updated_at = ? "
                         "WHERE id = ? AND status IN ('queued', 'processing')",
                         "tiit", a->core_transfer_id, a->now, a->now, t->id);
    else
        rc = bv_tx_execf(tx,
                         "UPDATE customer_transfers SET status = 'fail', stage = 'fail', failure_type = ?, "
                         "failure_title = ?, completed_at = ?, updated_at = ? "
                         "WHERE id = ? AND status IN ('queued', 'processing')",
                         "ttiit", bv_err_slug(a->code), bv_err_title(a->code), a->now, a->now, t->id);
    if (rc != 0)
        return rc;
    if (bv_tx_changes(tx) == 1) {
        a->changed = 1;
        if (a->have_sender && (rc = notify_party(tx, a, &a->sender, "sender", &published)) != 0)
            return rc;
        if (a->success && a->have_receiver &&
            (rc = notify_party(tx, a, &a->receiver, "receiver", &published)) != 0)
            return rc;
        if (published &&
            (rc = bv_tx_execf(tx, "UPDATE customer_transfers SET notification_status = 'notify' WHERE id = ?",
                              "t", t->id)) != 0)
            return rc;
        rc = a->success ? tr_audit(tx, NULL, "transfers.transfer.execute", t->id, "success", NULL, NULL,
                                   json_pack("{s:s, s:s, s:b}", "core_transfer", a->core_transfer_id,
                                             "customer", t->user_id, "notified", published))
                        : tr_audit(tx, NULL, "transfers.transfer.fail", t->id, "failure", NULL, NULL,
                                   json_pack("{s:s, s:s, s:b}", "reason", bv_err_slug(a->code), "customer",
                                             t->user_id, "notified", published));
        if (rc != 0)
            return rc;
    }
    if (a->receipt != NULL) {
        rc = bv_queue_delete_tx(tx, TR_QUEUE, a->receipt);
        if (rc != 0 && rc != BV_ENOTFOUND) /* a stale receipt: the other delivery acks it */
            return rc;
    }
    return 0;
}

static bv_queue_result_t retry_in(int64_t ms, int64_t *retry_after_ms_out)
{
    if (ms < 0)
        ms = 0;
    if (ms > BV_QUEUE_MAX_VISIBILITY_MS)
        ms = BV_QUEUE_MAX_VISIBILITY_MS;
    *retry_after_ms_out = ms;
    return BV_QUEUE_RETRY;
}

static int64_t backoff(const tr_service_t *s, int64_t attempts)
{
    return bv_queue_backoff_ms((int)(attempts < 1    ? 1
                                     : attempts > 30 ? 30
                                                     : attempts),
                               s->backoff_ms, s->backoff_ms * 64 < 300000 ? 300000 : s->backoff_ms * 64);
}

/* Records the final state with its notices; acks the message in the same job. */
static bv_queue_result_t finish(tr_service_t *s, const tr_transfer_t *t, int success, const char *core_id,
                                int code, const char *receipt, int64_t *retry_after_ms_out)
{
    final_arg_t a = {
        .t = t, .success = success, .core_transfer_id = core_id, .code = code, .receipt = receipt};
    int rc;
    if ((rc = s->profile(t->user_id, &a.sender)) == 0)
        a.have_sender = true;
    else if (rc != BV_ENOTFOUND)
        goto transient;
    if (success && t->to_customer[0] != '\0') {
        if ((rc = s->profile(t->to_customer, &a.receiver)) == 0)
            a.have_receiver = true;
        else if (rc != BV_ENOTFOUND)
            goto transient;
    }
    a.now = s->now_us();
    if ((rc = bv_store_run_tx(s->store, 1, tx_final, &a)) != 0)
        goto transient;
    if (a.changed)
        bv_log_info(success ? "transfer executed" : "transfer failed",
                    "\"transfer\":\"%s\",\"result\":\"%s\"", t->id, success ? "success" : bv_err_slug(code));
    return receipt != NULL ? BV_QUEUE_SETTLED : BV_QUEUE_ACK;
transient:
    bv_log_error("cannot record the final state of a transfer", "\"transfer\":\"%s\",\"error\":\"%s\"", t->id,
                 bv_err_name(rc));
    return retry_in(backoff(s, t->attempts + 1), retry_after_ms_out);
}

/* A retryable failure: counted; the message comes back after the backoff, or, once the
 * retries are spent, right after the last execute's deadline (then a lookup decides). */
static bv_queue_result_t failed_attempt(tr_service_t *s, const tr_transfer_t *t, const char *stage, int rc,
                                        int64_t now, int64_t deadline, int64_t *retry_after_ms_out)
{
    step_arg_t a = {.id = t->id, .stage = stage, .now = now, .add_attempt = 1, .error = bv_err_slug(rc)};
    int64_t attempts = t->attempts + 1, delay = backoff(s, attempts);
    int wrc = bv_store_run_tx(s->store, 1, tx_stage, &a);
    if (wrc != 0)
        bv_log_error("cannot record a transfer attempt", "\"transfer\":\"%s\",\"error\":\"%s\"", t->id,
                     bv_err_name(wrc));
    bv_log_warn("transfer attempt failed, will retry",
                "\"transfer\":\"%s\",\"stage\":\"%s\",\"error\":\"%s\",\"attempts\":%lld", t->id, stage,
                bv_err_name(rc), (long long)attempts);
    /* the next execute may only be sent once this one can no longer reach the core, and
     * once the retries are spent only a lookup after that deadline decides */
    if (deadline > 0) {
        int64_t until = (deadline + TR_CLOCK_SKEW_US - s->now_us()) / 1000 + 1;
        if (until > delay)
            delay = until;
    }
    return retry_in(delay, retry_after_ms_out);
}

static int code_of_slug(const char *slug)
{
#define TR_SLUG(name, status, sl, title) \
    if (strcmp(slug, sl) == 0)           \
        return name;
    BV_ERRORS(TR_SLUG)
#undef TR_SLUG
    return BV_EUPSTREAM;
}

bv_queue_result_t tr_process(tr_service_t *s, const char *id, const char *receipt,
                             int64_t *retry_after_ms_out)
{
    tr_transfer_t t;
    bv_ledger_transfer_t ct;
    int rc;
    bool replayed = false;

    if ((rc = tr_load(s->store, id, &t)) == BV_ENOTFOUND) {
        bv_log_warn("message for an unknown transfer dropped", "\"transfer\":\"%s\"", id != NULL ? id : "");
        return BV_QUEUE_ACK;
    }
    if (rc != 0)
        return retry_in(backoff(s, 1), retry_after_ms_out);
    if (tr_is_final(&t) || (strcmp(t.status, TR_QUEUED) != 0 && strcmp(t.status, TR_PROCESSING) != 0))
        return BV_QUEUE_ACK; /* done (its notices were published with the final state), or never confirmed */

    /* the time before the lookup: a lookup that starts after every deadline is definitive */
    int64_t now = s->now_us();
    step_arg_t st = {.id = t.id, .stage = "event_consumed", .now = now};
    if ((rc = bv_store_run_tx(s->store, 1, tx_stage, &st)) != 0)
        return retry_in(backoff(s, 1), retry_after_ms_out);
    if (!st.changed)
        return BV_QUEUE_ACK; /* another delivery finished it meanwhile */

    /* reconcile: has the core got it already? */
    rc = s->lookup(t.id, &ct);
    if (rc == 0)
        return finish(s, &t, 1, ct.id, 0, receipt, retry_after_ms_out);
    if (rc != BV_ENOTFOUND) {
        if (!bv_core_retryable(rc))
            bv_log_error("transfer lookup failed", "\"transfer\":\"%s\",\"error\":\"%s\"", t.id,
                         bv_err_name(rc));
        return failed_attempt(s, &t, "event_consumed", rc, now, t.last_deadline, retry_after_ms_out);
    }

    /* not in the core */
    if (t.attempts > s->max_retries) {
        if (t.sends == 0 || now > t.last_deadline + TR_CLOCK_SKEW_US)
            return finish(s, &t, 0, NULL, t.last_error[0] ? code_of_slug(t.last_error) : BV_EUPSTREAM,
                          receipt, retry_after_ms_out);
        return retry_in((t.last_deadline + TR_CLOCK_SKEW_US - now) / 1000 + 1, retry_after_ms_out);
    }
    st =
        (step_arg_t){.id = t.id, .now = now, .deadline = now + s->core_timeout_ms * 1000 + TR_SEND_MARGIN_US};
    if ((rc = bv_store_run_tx(s->store, 1, tx_claim, &st)) != 0)
        return retry_in(backoff(s, 1), retry_after_ms_out);
    if (!st.changed) /* an earlier execute may still reach the core: after its deadline */
        return retry_in((t.last_deadline + TR_CLOCK_SKEW_US - now) / 1000 + 1, retry_after_ms_out);
    /* the core gets the recorded deadline; if recording took that long, do not send now */
    if (s->now_us() + TR_SEND_MARGIN_US / 2 > st.deadline)
        return retry_in((st.deadline + TR_CLOCK_SKEW_US - s->now_us()) / 1000 + 1, retry_after_ms_out);

    char actor[160];
    snprintf(actor, sizeof(actor), "user:%s", t.user_id);
    bv_core_transfer_req_t req = {.reference = t.id,
                                  .debit_account = t.from_account,
                                  .credit_account = t.to_account,
                                  .amount = t.amount,
                                  .currency = t.currency,
                                  .description = t.description[0] ? t.description : NULL,
                                  .actor = actor,
                                  .deadline_us = st.deadline};
    rc = s->execute(&req, &ct, &replayed);
    if (rc == 0)
        return finish(s, &t, 1, ct.id, 0, receipt, retry_after_ms_out);
    if (bv_core_retryable(rc))
        return failed_attempt(s, &t, "waiting", rc, s->now_us(), st.deadline, retry_after_ms_out);
    return finish(s, &t, 0, NULL, rc, receipt, retry_after_ms_out); /* a definitive rejection */
}
