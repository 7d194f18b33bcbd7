/* The transfer worker: one message on the `transfers` queue per confirmed transfer, handled
 * by the state machine of docs/transfers.md. Exactly once: the transfer id is the core's
 * reference (the core executes a reference at most once) and every delivery first asks the
 * core whether the reference exists (reconciliation: at least once). A transfer fails only
 * when the core surely never executed it: no execute sent, or a lookup that started after
 * the deadline of the last execute sent (the core refuses to execute past it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "notify/notify.h"
#include "transfers/internal.h"

void tr_notification_id(const char *transfer_id, const char *party, char out[BV_UUID_STR_LEN + 1])
{
    char label[160];
    snprintf(label, sizeof(label), "boveda-transfer-notification/v1:%s:%s", transfer_id, party);
    bv_uuid7_derive(transfer_id, label, out);
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
        vars = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "name", name, "amount", amount, "currency",
                         t->currency, "account", receiver ? t->to_number : t->from_number, "to_account",
                         t->to_number, "date", date);
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

/* ---- a batch of deliveries: one write job per stage for all of them ---- */

typedef struct {
    const char *receipt;
    tr_transfer_t t;
    int live;         /* still on its way through the stages */
    int changed;      /* of the last stage job */
    int64_t now;      /* before its lookup */
    int64_t deadline; /* of its claim */
    int outcome;      /* 1: success, 2: fail, to record in the final job */
    int code;         /* fail */
    char core_id[BV_UUID_STR_LEN + 1];
    char actor[160];
    final_arg_t fa;
    int in_final; /* part of the final job */
} item_t;

typedef struct {
    item_t *items;
    int n;
    int claim; /* 0: event_consumed, 1: request_before + deadline */
} many_arg_t;

static int tx_stage_many(bv_tx_t *tx, void *arg)
{
    many_arg_t *a = arg;
    for (int i = 0; i < a->n; i++) {
        item_t *it = &a->items[i];
        if (!it->live)
            continue;
        step_arg_t st = {.id = it->t.id, .stage = "event_consumed", .now = it->now, .deadline = it->deadline};
        int rc = a->claim ? tx_claim(tx, &st) : tx_stage(tx, &st);
        if (rc != 0)
            return rc;
        it->changed = st.changed;
    }
    return 0;
}

static int tx_final_many(bv_tx_t *tx, void *arg)
{
    many_arg_t *a = arg;
    for (int i = 0; i < a->n; i++) {
        item_t *it = &a->items[i];
        int rc;
        if (it->in_final && (rc = tx_final(tx, &it->fa)) != 0)
            return rc;
    }
    return 0;
}

/* Records every decided outcome in one write job with its notices and the messages' acks. */
static void finish_many(tr_service_t *s, item_t *items, int n, bv_queue_result_t *results, int64_t *retry)
{
    int any = 0, rc;
    for (int i = 0; i < n; i++) {
        item_t *it = &items[i];
        if (it->outcome == 0)
            continue;
        const tr_transfer_t *t = &it->t;
        int success = it->outcome == 1;
        it->fa = (final_arg_t){.t = t,
                               .success = success,
                               .core_transfer_id = success ? it->core_id : NULL,
                               .code = it->code,
                               .receipt = it->receipt};
        if ((rc = s->profile(t->user_id, &it->fa.sender)) == 0)
            it->fa.have_sender = true;
        else if (rc != BV_ENOTFOUND)
            goto transient;
        if (success && t->to_customer[0] != '\0') {
            if ((rc = s->profile(t->to_customer, &it->fa.receiver)) == 0)
                it->fa.have_receiver = true;
            else if (rc != BV_ENOTFOUND)
                goto transient;
        }
        it->fa.now = s->now_us();
        it->in_final = 1;
        any = 1;
        continue;
    transient:
        bv_log_error("cannot load a customer for a transfer notice", "\"transfer\":\"%s\",\"error\":\"%s\"",
                     t->id, bv_err_name(rc));
        results[i] = retry_in(backoff(s, t->attempts + 1), &retry[i]);
    }
    if (!any)
        return;
    many_arg_t a = {.items = items, .n = n};
    rc = bv_store_run_tx(s->store, 1, tx_final_many, &a);
    for (int i = 0; i < n; i++) {
        item_t *it = &items[i];
        if (!it->in_final)
            continue;
        if (rc != 0) {
            bv_log_error("cannot record the final state of a transfer",
                         "\"transfer\":\"%s\",\"error\":\"%s\"", it->t.id, bv_err_name(rc));
            results[i] = retry_in(backoff(s, it->t.attempts + 1), &retry[i]);
            continue;
        }
        if (it->fa.changed)
            bv_log_info(it->fa.success ? "transfer executed" : "transfer failed",
                        "\"transfer\":\"%s\",\"result\":\"%s\"", it->t.id,
                        it->fa.success ? "success" : bv_err_slug(it->code));
        results[i] = it->receipt != NULL ? BV_QUEUE_SETTLED : BV_QUEUE_ACK;
    }
}

void tr_process_batch(tr_service_t *s, const char *const *ids, const char *const *receipts, int n,
                      bv_queue_result_t *results, int64_t *retry)
{
    item_t *items = calloc((size_t)(n > 0 ? n : 1), sizeof(*items));
    bv_core_transfer_req_t reqs[TR_BATCH_MAX];
    bv_ledger_result_t res[TR_BATCH_MAX];
    int idx[TR_BATCH_MAX], live = 0, rc;
    if (items == NULL || n > TR_BATCH_MAX) {
        for (int i = 0; i < n; i++)
            results[i] = retry_in(backoff(s, 1), &retry[i]);
        free(items);
        return;
    }

    /* 1. the transfers as they are */
    for (int i = 0; i < n; i++) {
        item_t *it = &items[i];
        it->receipt = receipts != NULL ? receipts[i] : NULL;
        if ((rc = tr_load(s->store, ids[i], &it->t)) == BV_ENOTFOUND) {
            bv_log_warn("message for an unknown transfer dropped", "\"transfer\":\"%s\"", ids[i]);
            results[i] = BV_QUEUE_ACK;
        } else if (rc != 0) {
            results[i] = retry_in(backoff(s, 1), &retry[i]);
        } else if (tr_is_final(&it->t) ||
                   (strcmp(it->t.status, TR_QUEUED) != 0 && strcmp(it->t.status, TR_PROCESSING) != 0)) {
            results[i] = BV_QUEUE_ACK; /* done (its notices went with the final state), or never confirmed */
        } else {
            /* the time before the lookup: a lookup that starts after every deadline is definitive */
            it->live = 1;
            it->now = s->now_us();
            live++;
        }
    }

    /* 2. event_consumed, for all in one job */
    many_arg_t a = {.items = items, .n = n};
    if (live > 0 && (rc = bv_store_run_tx(s->store, 1, tx_stage_many, &a)) != 0) {
        for (int i = 0; i < n; i++)
            if (items[i].live) {
                items[i].live = 0;
                results[i] = retry_in(backoff(s, 1), &retry[i]);
            }
        live = 0;
    }

    /* 3. reconcile each: has the core got it already? */
    live = 0;
    for (int i = 0; i < n; i++) {
        item_t *it = &items[i];
        tr_transfer_t *t = &it->t;
        bv_ledger_transfer_t ct;
        if (!it->live)
            continue;
        it->live = 0;
        if (!it->changed) {
            results[i] = BV_QUEUE_ACK; /* another delivery finished it meanwhile */
            continue;
        }
        rc = s->lookup(t->id, &ct);
        if (rc == 0) {
            it->outcome = 1;
            snprintf(it->core_id, sizeof(it->core_id), "%s", ct.id);
            continue;
        }
        if (rc != BV_ENOTFOUND) {
            if (!bv_core_retryable(rc))
                bv_log_error("transfer lookup failed", "\"transfer\":\"%s\",\"error\":\"%s\"", t->id,
                             bv_err_name(rc));
            results[i] = failed_attempt(s, t, "event_consumed", rc, it->now, t->last_deadline, &retry[i]);
            continue;
        }
        if (t->attempts > s->max_retries) { /* not in the core, and the retries are spent */
            if (t->sends == 0 || it->now > t->last_deadline + TR_CLOCK_SKEW_US) {
                it->outcome = 2;
                it->code = t->last_error[0] ? code_of_slug(t->last_error) : BV_EUPSTREAM;
            } else {
                results[i] = retry_in((t->last_deadline + TR_CLOCK_SKEW_US - it->now) / 1000 + 1, &retry[i]);
            }
            continue;
        }
        it->deadline = it->now + s->core_timeout_ms * 1000 + TR_SEND_MARGIN_US;
        it->live = 1;
        live++;
    }

    /* 4. request_before and each deadline, for all in one job */
    a.claim = 1;
    if (live > 0 && (rc = bv_store_run_tx(s->store, 1, tx_stage_many, &a)) != 0) {
        for (int i = 0; i < n; i++)
            if (items[i].live) {
                items[i].live = 0;
                results[i] = retry_in(backoff(s, 1), &retry[i]);
            }
    }
    int m = 0;
    for (int i = 0; i < n; i++) {
        item_t *it = &items[i];
        tr_transfer_t *t = &it->t;
        if (!it->live)
            continue;
        if (!it->changed) { /* an earlier execute may still reach the core: after its deadline */
            it->live = 0;
            results[i] = retry_in((t->last_deadline + TR_CLOCK_SKEW_US - it->now) / 1000 + 1, &retry[i]);
            continue;
        }
        /* the core gets the recorded deadline; if recording took that long, do not send now */
        if (s->now_us() + TR_SEND_MARGIN_US / 2 > it->deadline) {
            it->live = 0;
            results[i] = retry_in((it->deadline + TR_CLOCK_SKEW_US - s->now_us()) / 1000 + 1, &retry[i]);
            continue;
        }
        snprintf(it->actor, sizeof(it->actor), "user:%s", t->user_id);
        reqs[m] = (bv_core_transfer_req_t){.reference = t->id,
                                           .debit_account = t->from_account,
                                           .credit_account = t->to_account,
                                           .amount = t->amount,
                                           .currency = t->currency,
                                           .description = t->description[0] ? t->description : NULL,
                                           .actor = it->actor,
                                           .deadline_us = it->deadline};
        idx[m++] = i;
    }

    /* 5. execute: all at once where the core can (one ledger commit with the builtin one) */
    if (m > 0) {
        if (s->execute_batch != NULL) {
            rc = s->execute_batch(reqs, (size_t)m, res);
            for (int k = 0; rc != 0 && k < m; k++)
                res[k].rc = rc;
        } else {
            for (int k = 0; k < m; k++) {
                memset(&res[k], 0, sizeof(res[k]));
                res[k].rc = s->execute(&reqs[k], &res[k].transfer, &res[k].replayed);
            }
        }
    }
    for (int k = 0; k < m; k++) {
        item_t *it = &items[idx[k]];
        if (res[k].rc == 0) {
            it->outcome = 1;
            snprintf(it->core_id, sizeof(it->core_id), "%s", res[k].transfer.id);
        } else if (bv_core_retryable(res[k].rc)) {
            results[idx[k]] =
                failed_attempt(s, &it->t, "waiting", res[k].rc, s->now_us(), it->deadline, &retry[idx[k]]);
        } else { /* a definitive rejection */
            it->outcome = 2;
            it->code = res[k].rc;
        }
    }

    /* 6. every outcome in one job, with its notices and the acks */
    finish_many(s, items, n, results, retry);
    free(items);
}

bv_queue_result_t tr_process(tr_service_t *s, const char *id, const char *receipt,
                             int64_t *retry_after_ms_out)
{
    bv_queue_result_t result = BV_QUEUE_RETRY;
    *retry_after_ms_out = -1;
    tr_process_batch(s, &id, &receipt, 1, &result, retry_after_ms_out);
    return result;
}
