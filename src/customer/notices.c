/* Movement notices for every other movement of a customer's account (issue 8): the ledger
 * publishes an event on its `ledger` topic in the commit of every posted transfer, posted
 * hold and reversal; the `movement-notices` queue subscribes to those, and this consumer
 * tells each customer whose account moved, by e-mail and/or SMS as they prefer (template
 * `movement`, the account number masked). Customer transfers are left to the transfer worker,
 * which tells both parties in the commit of the outcome. A notice's id is derived from the
 * ledger transfer and the account, so a redelivered event never notifies twice.
 *
 * Runs where the ledger runs (the builtin core): a bank over BOVEDA_CORE=http has no ledger
 * events of its own. */
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "customer/internal.h"
#include "notify/notify.h"
#include "queue/queue.h"
#include "transfers/transfers.h"

#define NOTICES_QUEUE "movement-notices"

static bv_ledger_t *g_ledger;

typedef struct {
    const char *transfer_id, *reference, *currency, *when;
    int exponent;
    int64_t amount;
    bv_ledger_account_t acct[2]; /* debit, credit */
    int have[2];
    bv_customer_profile_t prof[2];
    int skip; /* a customer transfer: its worker notifies */
} notice_arg_t;

static int tx_notices(bv_tx_t *tx, void *arg)
{
    notice_arg_t *a = arg;
    int rc = bv_transfers_is_customer_transfer(tx, a->reference);
    if (rc < 0)
        return rc;
    a->skip = rc == 1;
    if (a->skip)
        return 0;
    for (int i = 0; i < 2; i++) {
        if (!a->have[i])
            continue;
        const bv_customer_profile_t *p = &a->prof[i];
        unsigned channels = p->channels & customer_available_channels(p->email, p->phone);
        if (channels == 0)
            continue;
        char nid[BV_UUID_STR_LEN + 1], label[160], amount[BV_LEDGER_AMOUNT_MAX + 1], date[16];
        snprintf(label, sizeof(label), "boveda-movement-notice/v1:%s:%s", a->transfer_id, a->acct[i].id);
        bv_uuid7_derive(a->transfer_id, label, nid);
        amount[0] = '-';
        bv_ledger_amount_format(a->amount, a->exponent, amount + (i == 0 ? 1 : 0));
        snprintf(date, sizeof(date), "%.10s", a->when);
        json_t *vars =
            json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", p->display_name[0] ? p->display_name : p->username,
                      "amount", amount, "currency", a->currency, "account", a->acct[i].number, "date", date);
        if (vars == NULL)
            return BV_ENOMEM;
        bv_notification_t n = {.id = nid,
                               .customer = {.id = p->id,
                                            .email = p->email[0] ? p->email : NULL,
                                            .phone = p->phone[0] ? p->phone : NULL,
                                            .locale = p->locale},
                               .kind = BV_NOTIFY_MOVEMENT,
                               .channels = channels,
                               .vars = vars};
        rc = bv_notify_publish(tx, &n);
        json_decref(vars);
        if (rc == BV_EINVALID) /* a contact notify refuses: logged, never holds the queue back */
            bv_log_warn("movement notice refused by notify", "\"transfer\":\"%s\"", a->transfer_id);
        else if (rc < 0)
            return rc;
    }
    return 0;
}

static bv_queue_result_t on_event(const bv_queue_consumer_t *c, bv_queue_msg_t *msg,
                                  int64_t *retry_after_ms_out)
{
    (void)c;
    (void)retry_after_ms_out;
    notice_arg_t a = {0};
    bv_ledger_transfer_t t;
    json_t *ev = json_loadb(msg->body, msg->body_len, 0, NULL);
    const char *id = json_string_value(json_object_get(ev, "transfer_id"));
    const char *when = json_string_value(json_object_get(ev, "time"));
    bv_queue_result_t res = BV_QUEUE_ACK;
    int rc;
    if (id == NULL || when == NULL || g_ledger == NULL) {
        bv_log_error("malformed ledger event dropped", "\"id\":\"%s\"", msg->id);
        goto out;
    }
    if ((rc = bv_ledger_transfer_get(g_ledger, id, &t)) != 0) {
        if (rc != BV_ENOTFOUND)
            res = BV_QUEUE_RETRY;
        goto out;
    }
    a.transfer_id = t.id;
    a.reference = t.reference;
    a.currency = t.currency;
    a.exponent = t.exponent;
    a.amount = t.posted_amount != 0 ? t.posted_amount : t.amount;
    a.when = when;
    const char *ids[2] = {t.debit_account, t.credit_account};
    for (int i = 0; i < 2; i++) {
        if (bv_ledger_account_get(g_ledger, ids[i], &a.acct[i]) != 0 || a.acct[i].customer_id[0] == '\0')
            continue;
        rc = bv_customer_profile(a.acct[i].customer_id, &a.prof[i]);
        if (rc == 0)
            a.have[i] = 1;
        else if (rc != BV_ENOTFOUND) {
            res = BV_QUEUE_RETRY;
            goto out;
        }
    }
    if (a.have[0] || a.have[1]) {
        if (bv_store_run_tx(customer_store(), 1, tx_notices, &a) != 0)
            res = BV_QUEUE_RETRY;
    }
out:
    json_decref(ev);
    return res;
}

static bv_queue_consumer_t consumer = {
    .name = NOTICES_QUEUE,
    .group = "customer",
    .queue = NOTICES_QUEUE,
    .concurrency = 2,
    .handler = on_event,
};
static int registered;

static int tx_subscribe(bv_tx_t *tx, void *arg)
{
    (void)arg;
    /* movements of accounts none of which belongs to a customer are never queued (events
       written before that attribute existed lack it, and pass) */
    json_t *policy = json_pack("{s:[sss], s:[{s:b}]}", "event", "ledger.transfer.posted", "ledger.hold.posted",
                               "ledger.transfer.reversed", "customers", "exists", 0);
    if (policy == NULL)
        return BV_ENOMEM;
    int rc = bv_queue_topic_create(tx, "ledger");
    if (rc == 0)
        rc = bv_queue_subscribe(tx, "ledger", NOTICES_QUEUE, policy);
    json_decref(policy);
    return rc;
}

int customer_notices_start(bv_app_t *app)
{
    bv_queue_options_t q = {.name = NOTICES_QUEUE,
                            .visibility_timeout_ms = 30000,
                            .max_receives = 10,
                            .dlq = NOTICES_QUEUE "-dlq",
                            .retention_s = 4 * 86400};
    int rc;
    if (app->ledger == NULL || app->http == NULL) /* the ledger's own process only (see above) */
        return 0;
    g_ledger = app->ledger;
    if ((rc = bv_queue_ensure(app->store, &q)) != 0 ||
        (rc = bv_store_run_tx(app->store, 1, tx_subscribe, NULL)) != 0)
        return rc;
    if ((rc = bv_queue_consumer_register(&consumer)) != 0)
        return rc;
    registered = 1;
    return 0;
}

void customer_notices_stop(void)
{
    if (registered)
        bv_queue_consumer_unregister(&consumer);
    registered = 0;
    g_ledger = NULL;
}
