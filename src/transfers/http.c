/* The customer's transfer routes (a customer's access token: principal kind user; scope
 * banking:write for POST, banking:read for GET). Another customer's transfer or account
 * answers 404, as if it did not exist. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "base/log.h"
#include "http/http.h"
#include "mfa/mfa.h"
#include "notify/notify.h"
#include "transfers/internal.h"

static tr_service_t *service_or_reply(bv_call_t *c)
{
    tr_service_t *s = tr_service();
    if (s == NULL)
        bv_reply_problem(c, BV_EUNAVAILABLE, NULL, NULL);
    return s;
}

static void reply_error(bv_call_t *c, int rc, const char *detail, const char *field)
{
    if (bv_err_status(rc) >= 500)
        bv_log(BV_LOG_ERROR, c->request_id, "transfer request failed", "\"error\":\"%s\"", bv_err_name(rc));
    bv_reply_problem(c, rc, detail, field);
}

static void reply_transfer(bv_call_t *c, int status, const tr_transfer_t *t, bool replayed)
{
    bv_buf_t b = {0};
    if (tr_json(&b, t) != 0) {
        bv_buf_free(&b);
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        return;
    }
    if (replayed)
        bv_call_add_header(c, "idempotent-replayed", "true");
    bv_reply_raw(c, status, "application/json", b.data, b.len);
    bv_buf_free(&b);
}

/* The caller's transfer `id` (lazily expired when its confirmation window passed):
 * 0, or replies 404 / an error and returns non-zero. */
static int own_transfer_or_reply(bv_call_t *c, tr_service_t *s, tr_transfer_t *t)
{
    const char *id = bv_call_param(c, "id");
    int rc = tr_load(s->store, id, t);
    if (rc == 0 && strcmp(t->user_id, c->principal.subject) != 0)
        rc = BV_ENOTFOUND;
    if (rc == 0 && strcmp(t->status, TR_PENDING) == 0 && s->now_us() >= t->confirm_by) {
        if ((rc = tr_expire_due(s->store, t->user_id, s->now_us(), NULL)) == 0)
            rc = tr_load(s->store, id, t);
    }
    if (rc == BV_ENOTFOUND)
        bv_reply_problem(c, rc, "no such transfer", NULL);
    else if (rc != 0)
        reply_error(c, rc, NULL, NULL);
    return rc;
}

/* ---- POST /v1/me/transfers ---- */

typedef struct {
    const char *from_account, *to_account_number, *amount, *currency, *description;
} create_body_t;

static const bv_json_field_t create_spec[] = {
    {"from_account", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 64, offsetof(create_body_t, from_account), NULL},
    {"to_account_number", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 64, offsetof(create_body_t, to_account_number),
     NULL},
    {"amount", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 40, offsetof(create_body_t, amount), NULL},
    {"currency", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 8, offsetof(create_body_t, currency), NULL},
    {"description", BV_JSON_STRING, BV_JSON_NULLABLE, 0, BV_LEDGER_DESC_MAX,
     offsetof(create_body_t, description), NULL},
    BV_JSON_END,
};

/* SHA-256 (hex) of the request's content: a replay must carry the same. */
static void request_hash(const char *from, const char *to, int64_t amount, const char *currency,
                         const char *desc, char out[65])
{
    unsigned char h[32];
    unsigned int len = sizeof(h);
    bv_buf_t b = {0};
    int rc = bv_buf_printf(&b, "v1\n%zu:%s\n%zu:%s\n%lld\n%s\n%zu:%s\n", strlen(from), from, strlen(to), to,
                           (long long)amount, currency, strlen(desc ? desc : ""), desc ? desc : "");
    if (rc != 0 || EVP_Digest(b.data, b.len, h, &len, EVP_sha256(), NULL) != 1)
        memset(h, 0, sizeof(h));
    bv_buf_free(&b);
    bv_hex(h, 32, out);
}

/* amount (minor units of a currency with `exponent`) as 10^-4 units; -1 on overflow. */
static int64_t scale_e4(int64_t amount, int exponent)
{
    int64_t v = amount;
    for (int i = exponent; i < TR_MAX_EXPONENT; i++) {
        if (v > INT64_MAX / 10)
            return -1;
        v *= 10;
    }
    return v;
}

static int64_t utc_day_start(int64_t us)
{
    const int64_t day = 86400LL * 1000000LL;
    return us - us % day;
}

/* The OTP's channel: SMS when wanted and a phone is on file, else e-mail, else (no contact
 * at all) a confirmed soft token. BV_EINVALID when there is no way to reach the customer. */
static int pick_channel(bv_mfa_t *m, const bv_customer_profile_t *p, bv_mfa_channel_t *out)
{
    int active = 0;
    if ((p->channels & BV_NOTIFY_SMS) && p->phone[0] != '\0')
        *out = BV_MFA_SMS;
    else if (p->email[0] != '\0')
        *out = BV_MFA_EMAIL;
    else if (p->phone[0] != '\0')
        *out = BV_MFA_SMS;
    else if (bv_mfa_totp_active(m, p->id, &active) == 0 && active)
        *out = BV_MFA_TOTP;
    else
        return BV_EINVALID;
    return 0;
}

/* What the transfer's challenge needs, gathered before the write job: the customer's
 * contacts, the channel and the binding of the operation. */
typedef struct {
    bv_mfa_t *m;
    bv_customer_profile_t p;
    unsigned char binding[32];
    bv_mfa_challenge_req_t req;
} challenge_plan_t;

/* Plans the challenge of t (and sets t->challenge_channel). Replies on error. */
static int challenge_plan_or_reply(bv_call_t *c, bv_mfa_t *m, tr_transfer_t *t, challenge_plan_t *plan)
{
    bv_mfa_channel_t channel;
    int rc;
    plan->m = m;
    if ((rc = bv_customer_profile(t->user_id, &plan->p)) != 0) {
        reply_error(c, rc == BV_ENOTFOUND ? BV_EUNAUTHENTICATED : rc,
                    rc == BV_ENOTFOUND ? "unknown user" : NULL, NULL);
        return -1;
    }
    if (pick_channel(m, &plan->p, &channel) != 0) {
        bv_reply_problem(c, BV_EINVALID, "no phone number or e-mail address on file to send the code to",
                         NULL);
        return -1;
    }
    if (tr_binding(t, plan->binding) != 0) {
        reply_error(c, BV_EINTERNAL, NULL, NULL);
        return -1;
    }
    plan->req = (bv_mfa_challenge_req_t){.user_id = t->user_id,
                                         .purpose = BV_MFA_TRANSFER,
                                         .channel = channel,
                                         .binding = plan->binding,
                                         .email = plan->p.email,
                                         .phone = plan->p.phone,
                                         .locale = plan->p.locale[0] ? plan->p.locale : NULL,
                                         .source_ip = c->client_ip,
                                         .request_id = c->request_id};
    snprintf(t->challenge_channel, sizeof(t->challenge_channel), "%s", bv_mfa_channel_name(channel));
    return 0;
}

/* Creates the planned challenge inside the transfer's own write job (it and its code exist
 * only if the transfer row commits) into t (id, expiry). */
static int challenge_tx(bv_tx_t *tx, const challenge_plan_t *plan, tr_transfer_t *t)
{
    bv_mfa_challenge_t ch;
    int rc = bv_mfa_challenge_create_tx(tx, plan->m, &plan->req, &ch);
    if (rc != 0)
        return rc;
    snprintf(t->challenge_id, sizeof(t->challenge_id), "%s", ch.id);
    t->challenge_expires_at = ch.expires_at;
    return 0;
}

typedef struct {
    const char *user_id, *transfer_id, *ip, *rid;
} refusal_arg_t;

static int tx_audit_rate_refusal(bv_tx_t *tx, void *arg)
{
    refusal_arg_t *a = arg;
    return tr_audit(
        tx, a->user_id, a->transfer_id != NULL ? "transfers.transfer.challenge" : "transfers.transfer.create",
        a->transfer_id, "denied", a->ip, a->rid, json_pack("{s:s}", "reason", "otp_rate_limited"));
}

/* Replies for an error of a job that created a challenge. A refusal by the one-time-code
 * rate limit rolled back with the job (mfa's own audit of it too): it is audited here. */
static void reply_challenge_error(bv_call_t *c, int rc, const tr_transfer_t *t, const char *transfer_id)
{
    if (rc == BV_EOTP_RATE) {
        refusal_arg_t a = {
            .user_id = t->user_id, .transfer_id = transfer_id, .ip = c->client_ip, .rid = c->request_id};
        int arc = bv_store_run_tx(tr_service()->store, 1, tx_audit_rate_refusal, &a);
        if (arc != 0)
            bv_log(BV_LOG_ERROR, c->request_id, "cannot audit a refused transfer order", "\"error\":\"%s\"",
                   bv_err_name(arc));
    }
    reply_error(c, rc, rc == BV_EOTP_RATE ? "too many one-time codes in the last 15 minutes" : NULL, NULL);
}

typedef struct {
    tr_transfer_t *t;
    tr_service_t *s;
    const char *ip, *rid;
    int64_t day_start;
    int outcome; /* BV_ELIMIT, or BV_ECONFLICT when the key exists (existing row in *existing) */
    tr_transfer_t *existing;
    const challenge_plan_t *plan;
} create_arg_t;

static int tx_create(bv_tx_t *tx, void *arg)
{
    create_arg_t *a = arg;
    int64_t sum = 0;
    int rc;
    a->outcome = 0;
    if ((rc = tr_load_by_key_tx(tx, a->t->user_id, a->t->idem_key, a->existing)) != BV_ENOTFOUND) {
        if (rc == 0)
            a->outcome = BV_ECONFLICT;
        return rc;
    }
    /* the daily limit again, on the single writer: concurrent requests cannot both pass */
    if ((rc = tr_daily_sum_tx(tx, a->t->from_account, a->day_start, &sum)) != 0)
        return rc;
    int exponent = bv_ledger_currency_exponent(a->t->currency);
    int64_t total = scale_e4(sum, exponent), this_one = scale_e4(a->t->amount, exponent);
    if (total < 0 || this_one < 0 || total > INT64_MAX - this_one ||
        total + this_one > a->s->daily_limit_e4) {
        a->outcome = BV_ELIMIT;
        return 0;
    }
    if ((rc = challenge_tx(tx, a->plan, a->t)) != 0 || (rc = tr_insert_tx(tx, a->t)) != 0)
        return rc;
    char amount[BV_LEDGER_AMOUNT_MAX];
    bv_ledger_amount_format(a->t->amount, exponent, amount);
    return tr_audit(tx, a->t->user_id, "transfers.transfer.create", a->t->id, "success", a->ip, a->rid,
                    json_pack("{s:s, s:s, s:s, s:s, s:s}", "amount", amount, "currency", a->t->currency,
                              "from_account", a->t->from_account, "to_account_number", a->t->to_number,
                              "challenge_channel", a->t->challenge_channel));
}

static int idem_key_or_reply(bv_call_t *c, const char **out)
{
    const char *k = bv_call_header(c, "idempotency-key");
    if (k == NULL || k[0] == '\0' || strlen(k) > BV_LEDGER_REF_MAX) {
        bv_reply_problem(c, BV_EINVALID,
                         k == NULL ? "an Idempotency-Key header is required"
                                   : "Idempotency-Key must be 1 to 128 bytes",
                         "Idempotency-Key");
        return -1;
    }
    *out = k;
    return 0;
}

typedef struct {
    const char *user_id, *key, *account;
    int64_t since, sum;
    tr_transfer_t *out;
} read_arg_t;

static int tx_read_by_key(bv_tx_t *tx, void *arg)
{
    read_arg_t *a = arg;
    return tr_load_by_key_tx(tx, a->user_id, a->key, a->out);
}

static int read_by_key(bv_store_t *st, const char *user_id, const char *key, tr_transfer_t *out)
{
    read_arg_t a = {.user_id = user_id, .key = key, .out = out};
    return bv_store_read(st, tx_read_by_key, &a);
}

static int tx_read_sum(bv_tx_t *tx, void *arg)
{
    read_arg_t *a = arg;
    return tr_daily_sum_tx(tx, a->account, a->since, &a->sum);
}

static int read_daily_sum(bv_store_t *st, const char *account, int64_t since, int64_t *sum_out)
{
    read_arg_t a = {.account = account, .since = since};
    int rc = bv_store_read(st, tx_read_sum, &a);
    *sum_out = a.sum;
    return rc;
}

static void on_create(bv_call_t *c)
{
    challenge_plan_t plan;
    create_body_t b = {0};
    json_t *root = NULL;
    const char *key;
    tr_service_t *s;
    bv_mfa_t *m;
    tr_transfer_t t, existing;
    bv_ledger_account_t src, dst;
    bv_core_t *core;
    int64_t amount = 0;
    int exponent, rc;
    if ((s = service_or_reply(c)) == NULL || idem_key_or_reply(c, &key) != 0 ||
        bv_call_decode_json_or_reply(c, create_spec, &b, &root) != 0)
        return;
    memset(&t, 0, sizeof(t));
    /* shape and precision */
    if ((exponent = bv_ledger_currency_exponent(b.currency)) < 0) {
        bv_reply_problem(c, BV_EINVALID, "currency is not a supported ISO 4217 code", "currency");
        goto out;
    }
    if ((rc = bv_ledger_amount_parse(b.amount, exponent, false, &amount)) != 0 || amount <= 0) {
        bv_reply_problem(c, rc == BV_EINVALID ? BV_EINVALID : BV_EAMOUNT,
                         rc == BV_EINVALID
                             ? "amount must be a decimal string such as \"10.50\""
                             : "amount must be positive with at most the currency's minor digits",
                         "amount");
        goto out;
    }
    if (b.description != NULL) {
        for (const char *p = b.description; *p; p++)
            if ((unsigned char)*p < 0x20) {
                bv_reply_problem(c, BV_EINVALID, "description must not contain control characters",
                                 "description");
                goto out;
            }
    }
    snprintf(t.user_id, sizeof(t.user_id), "%s", c->principal.subject);
    snprintf(t.idem_key, sizeof(t.idem_key), "%s", key);
    request_hash(b.from_account, b.to_account_number, amount, b.currency, b.description, t.request_hash);

    /* a replay answers what the first request got */
    if ((rc = read_by_key(s->store, t.user_id, key, &existing)) == 0) {
        if (strcmp(existing.request_hash, t.request_hash) != 0) {
            bv_reply_problem(c, BV_EIDEMPOTENCY, "this idempotency key was used with a different request",
                             "Idempotency-Key");
        } else {
            if (strcmp(existing.status, TR_PENDING) == 0 && s->now_us() >= existing.confirm_by &&
                tr_expire_due(s->store, t.user_id, s->now_us(), NULL) == 0)
                tr_load(s->store, existing.id, &existing);
            reply_transfer(c, 201, &existing, true);
        }
        goto out;
    }
    if (rc != BV_ENOTFOUND) {
        reply_error(c, rc, NULL, NULL);
        goto out;
    }
    /* ownership of the source */
    if (!bv_uuid_valid(b.from_account) ||
        (rc = bv_customer_account_owned(t.user_id, b.from_account, &src)) == BV_ENOTFOUND) {
        bv_reply_problem(c, BV_ENOTFOUND, "no such account", "from_account");
        goto out;
    }
    if (rc != 0) {
        reply_error(c, rc, NULL, NULL);
        goto out;
    }
    /* the destination */
    if (!bv_ledger_number_valid(b.to_account_number)) {
        bv_reply_problem(c, BV_EUNKNOWN_ACCOUNT, "not a valid account number (16 digits with check digits)",
                         "to_account_number");
        goto out;
    }
    if ((core = bv_core_instance()) == NULL) {
        reply_error(c, BV_EUNAVAILABLE, NULL, NULL);
        goto out;
    }
    rc = bv_core_account_by_number(core, b.to_account_number, &dst);
    if (rc == 0 && strcmp(dst.type, "internal") == 0)
        rc = BV_ENOTFOUND; /* the bank's own books are no customer's destination, nor shown to exist */
    if (rc != 0) {
        if (rc == BV_ENOTFOUND)
            bv_reply_problem(c, BV_EUNKNOWN_ACCOUNT, "no account has this number", "to_account_number");
        else
            reply_error(c, rc, NULL, NULL);
        goto out;
    }
    if (strcmp(src.id, dst.id) == 0) {
        bv_reply_problem(c, BV_ESAME_ACCOUNT, "the destination is the source account", "to_account_number");
        goto out;
    }
    if (strcmp(src.currency, b.currency) != 0 || strcmp(dst.currency, b.currency) != 0) {
        bv_reply_problem(c, BV_ECURRENCY_MISMATCH,
                         strcmp(src.currency, b.currency) != 0
                             ? "the source account holds another currency"
                             : "the destination account holds another currency",
                         "currency");
        goto out;
    }
    if (strcmp(src.status, "active") != 0) {
        bv_reply_problem(c, strcmp(src.status, "closed") == 0 ? BV_EACCOUNT_CLOSED : BV_EACCOUNT_FROZEN, NULL,
                         "from_account");
        goto out;
    }
    if (strcmp(dst.status, "closed") == 0) {
        bv_reply_problem(c, BV_EACCOUNT_CLOSED, "the destination account is closed", "to_account_number");
        goto out;
    }
    /* limits */
    int64_t now = s->now_us(), sum = 0, e4 = scale_e4(amount, exponent);
    if (e4 < 0 || e4 > s->max_amount_e4) {
        bv_reply_problem(c, BV_ELIMIT, "the amount is above the per-transfer limit", "amount");
        goto out;
    }
    snprintf(t.from_account, sizeof(t.from_account), "%s", src.id);
    if ((rc = read_daily_sum(s->store, src.id, utc_day_start(now), &sum)) != 0) {
        reply_error(c, rc, NULL, NULL);
        goto out;
    }
    int64_t sum_e4 = scale_e4(sum, exponent);
    if (sum_e4 < 0 || sum_e4 > s->daily_limit_e4 - e4) {
        bv_reply_problem(c, BV_ELIMIT, "the account's transfers today would exceed the daily limit",
                         "amount");
        goto out;
    }
    /* balance */
    if (!src.allow_negative && (__int128)src.available + src.overdraft_limit < (__int128)amount) {
        bv_reply_problem(c, BV_EINSUFFICIENT_FUNDS, "the available balance does not cover the amount",
                         "amount");
        goto out;
    }
    /* the order, its challenge, its audit */
    bv_uuid7(t.id);
    snprintf(t.from_number, sizeof(t.from_number), "%s", src.number);
    snprintf(t.to_account, sizeof(t.to_account), "%s", dst.id);
    snprintf(t.to_number, sizeof(t.to_number), "%s", dst.number);
    snprintf(t.to_customer, sizeof(t.to_customer), "%s", dst.customer_id);
    t.amount = amount;
    snprintf(t.currency, sizeof(t.currency), "%s", b.currency);
    snprintf(t.description, sizeof(t.description), "%s", b.description != NULL ? b.description : "");
    snprintf(t.status, sizeof(t.status), "%s", TR_PENDING);
    snprintf(t.notification_status, sizeof(t.notification_status), "none");
    t.created_at = now;
    t.confirm_by = now + TR_CONFIRM_TTL_US;
    t.updated_at = now;
    if ((m = bv_mfa_instance()) == NULL) {
        reply_error(c, BV_EUNAVAILABLE, NULL, NULL);
        goto out;
    }
    if (challenge_plan_or_reply(c, m, &t, &plan) != 0)
        goto out;
    create_arg_t a = {.t = &t,
                      .s = s,
                      .ip = c->client_ip,
                      .rid = c->request_id,
                      .day_start = utc_day_start(now),
                      .existing = &existing,
                      .plan = &plan};
    if ((rc = bv_store_run_tx(s->store, 1, tx_create, &a)) != 0) {
        reply_challenge_error(c, rc, &t, NULL);
        goto out;
    }
    if (a.outcome == BV_ELIMIT) {
        bv_reply_problem(c, BV_ELIMIT, "the account's transfers today would exceed the daily limit",
                         "amount");
        goto out;
    }
    if (a.outcome == BV_ECONFLICT) { /* a concurrent request with the same key won */
        if (strcmp(existing.request_hash, t.request_hash) != 0)
            bv_reply_problem(c, BV_EIDEMPOTENCY, "this idempotency key was used with a different request",
                             "Idempotency-Key");
        else
            reply_transfer(c, 201, &existing, true);
        goto out;
    }
    reply_transfer(c, 201, &t, false);
out:
    json_decref(root);
}

/* ---- POST /v1/me/transfers/{id}/confirm ---- */

typedef struct {
    const char *code;
} confirm_body_t;

static const bv_json_field_t confirm_spec[] = {
    {"code", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 32, offsetof(confirm_body_t, code), NULL},
    BV_JSON_END,
};

typedef struct {
    const tr_transfer_t *t;
    const char *proof;
    const unsigned char *binding;
    const char *ip, *rid;
    int64_t now;
    tr_transfer_t *out;
} confirm_arg_t;

/* Consumes the proof, queues the transfer, sends its message, audits: one job. */
static int tx_confirm(bv_tx_t *tx, void *arg)
{
    confirm_arg_t *a = arg;
    int rc =
        bv_tx_execf(tx,
                    "UPDATE customer_transfers SET status = 'queued', stage = 'queued', confirmed_at = ?, "
                    "updated_at = ? WHERE id = ? AND status = 'pending_confirmation' AND confirm_by > ?",
                    "iiti", a->now, a->now, a->t->id, a->now);
    if (rc != 0)
        return rc;
    if (bv_tx_changes(tx) != 1)
        return BV_ECONFLICT; /* confirmed or expired meanwhile: the proof stays unconsumed */
    if ((rc = bv_mfa_consume_proof(tx, a->t->user_id, a->proof, a->binding)) != 0)
        return rc;
    bv_queue_send_t m = {.body = a->t->id, .body_len = strlen(a->t->id), .delay_ms = -1};
    if ((rc = bv_queue_send(tx, TR_QUEUE, &m, NULL)) < 0)
        return rc;
    if ((rc = tr_audit(tx, a->t->user_id, "transfers.transfer.confirm", a->t->id, "success", a->ip, a->rid,
                       json_pack("{s:s}", "channel", a->t->challenge_channel))) != 0)
        return rc;
    return tr_load_tx(tx, a->t->id, a->out);
}

static void audit_failed_confirmation(bv_call_t *c, tr_service_t *s, const tr_transfer_t *t, int rc)
{
    json_t *d = json_pack("{s:s}", "reason", bv_err_slug(rc));
    char actor[160], resource[64];
    snprintf(actor, sizeof(actor), "user:%s", t->user_id);
    snprintf(resource, sizeof(resource), "customer_transfer:%s", t->id);
    bv_audit_event_t ev = {.actor = actor,
                           .action = "transfers.transfer.confirm",
                           .resource = resource,
                           .outcome = rc == BV_ECONFLICT ? "denied" : "invalid",
                           .source_ip = c->client_ip[0] ? c->client_ip : NULL,
                           .request_id = c->request_id[0] ? c->request_id : NULL,
                           .details = d};
    int arc = bv_audit_record(s->store, &ev);
    if (arc != 0)
        bv_log(BV_LOG_ERROR, c->request_id, "cannot audit a failed confirmation", "\"error\":\"%s\"",
               bv_err_name(arc));
    json_decref(d);
}

static void on_confirm(bv_call_t *c)
{
    confirm_body_t b = {0};
    json_t *root = NULL;
    tr_service_t *s;
    bv_mfa_t *m;
    tr_transfer_t t, after;
    unsigned char binding[32];
    bv_mfa_verify_result_t r;
    int rc;
    memset(&r, 0, sizeof(r));
    if ((s = service_or_reply(c)) == NULL || bv_call_decode_json_or_reply(c, confirm_spec, &b, &root) != 0)
        return;
    if (own_transfer_or_reply(c, s, &t) != 0)
        goto out;
    if (strcmp(t.status, TR_EXPIRED) == 0) {
        bv_reply_problem(c, BV_EEXPIRED, "the transfer was not confirmed in time: create a new one", NULL);
        audit_failed_confirmation(c, s, &t, BV_EEXPIRED);
        goto out;
    }
    if (strcmp(t.status, TR_PENDING) != 0) {
        bv_reply_problem(c, BV_ECONFLICT, "the transfer is not waiting for confirmation", NULL);
        audit_failed_confirmation(c, s, &t, BV_ECONFLICT);
        goto out;
    }
    if ((m = bv_mfa_instance()) == NULL || tr_binding(&t, binding) != 0) {
        reply_error(c, BV_EUNAVAILABLE, NULL, NULL);
        goto out;
    }
    /* the code answers this transfer's challenge and this transfer's operation only */
    rc = bv_mfa_challenge_verify(m, t.user_id, t.challenge_id, b.code, binding, c->client_ip, c->request_id,
                                 &r);
    if (rc == 0) {
        confirm_arg_t a = {.t = &t,
                           .proof = r.proof,
                           .binding = binding,
                           .ip = c->client_ip,
                           .rid = c->request_id,
                           .now = s->now_us(),
                           .out = &after};
        rc = bv_store_run_tx(s->store, 1, tx_confirm, &a);
        OPENSSL_cleanse(r.proof, sizeof(r.proof));
        if (rc == 0) {
            reply_transfer(c, 202, &after, false);
            goto out;
        }
    }
    switch (rc) {
    case BV_EOTP_INVALID:
        bv_mfa_reply_invalid_code(c, r.attempts_left);
        break;
    case BV_EOTP_EXPIRED:
        bv_reply_problem(c, rc, "the code expired: ask for a new one (POST .../challenge)", "code");
        break;
    case BV_EOTP_LOCKED:
        bv_reply_problem(c, rc, "too many wrong codes: ask for a new one (POST .../challenge)", "code");
        break;
    case BV_EOTP_USED:
        bv_reply_problem(c, rc, "the code was already used: ask for a new one (POST .../challenge)", "code");
        break;
    case BV_ENOTFOUND:
    case BV_ECONFLICT:
        bv_reply_problem(c, BV_ECONFLICT, "the transfer is not waiting for confirmation", NULL);
        rc = BV_ECONFLICT;
        break;
    default:
        reply_error(c, rc, NULL, NULL);
        goto out;
    }
    audit_failed_confirmation(c, s, &t, rc);
out:
    json_decref(root);
}

/* ---- POST /v1/me/transfers/{id}/challenge ---- */

typedef struct {
    tr_transfer_t *t;
    const challenge_plan_t *plan;
    const char *ip, *rid;
    int64_t now;
    tr_transfer_t *out;
} rechallenge_arg_t;

static int tx_rechallenge(bv_tx_t *tx, void *arg)
{
    rechallenge_arg_t *a = arg;
    int rc = tr_load_tx(tx, a->t->id, a->out);
    if (rc != 0)
        return rc;
    if (strcmp(a->out->status, TR_PENDING) != 0)
        return BV_ECONFLICT;
    if ((rc = challenge_tx(tx, a->plan, a->t)) != 0)
        return rc;
    rc = bv_tx_execf(
        tx,
        "UPDATE customer_transfers SET challenge_id = ?, challenge_channel = ?, "
        "challenge_expires_at = ?, updated_at = ? WHERE id = ? AND status = 'pending_confirmation'",
        "ttiit", a->t->challenge_id, a->t->challenge_channel, a->t->challenge_expires_at, a->now, a->t->id);
    if (rc != 0)
        return rc;
    if (bv_tx_changes(tx) != 1)
        return BV_ECONFLICT;
    if ((rc = tr_audit(tx, a->t->user_id, "transfers.transfer.challenge", a->t->id, "success", a->ip, a->rid,
                       json_pack("{s:s}", "channel", a->t->challenge_channel))) != 0)
        return rc;
    return tr_load_tx(tx, a->t->id, a->out);
}

static const bv_json_field_t empty_spec[] = {BV_JSON_END};

static void on_challenge(bv_call_t *c)
{
    json_t *root = NULL;
    tr_service_t *s;
    bv_mfa_t *m;
    tr_transfer_t t, after;
    int rc;
    char dummy = 0;
    if ((s = service_or_reply(c)) == NULL)
        return;
    if (c->body != NULL && c->body_len > 0 && bv_call_decode_json_or_reply(c, empty_spec, &dummy, &root) != 0)
        return;
    if (own_transfer_or_reply(c, s, &t) != 0)
        goto out;
    if (strcmp(t.status, TR_EXPIRED) == 0) {
        bv_reply_problem(c, BV_EEXPIRED, "the transfer was not confirmed in time: create a new one", NULL);
        goto out;
    }
    if (strcmp(t.status, TR_PENDING) != 0) {
        bv_reply_problem(c, BV_ECONFLICT, "the transfer is not waiting for confirmation", NULL);
        goto out;
    }
    if ((m = bv_mfa_instance()) == NULL) {
        reply_error(c, BV_EUNAVAILABLE, NULL, NULL);
        goto out;
    }
    challenge_plan_t plan;
    if (challenge_plan_or_reply(c, m, &t, &plan) != 0)
        goto out;
    rechallenge_arg_t a = {
        .t = &t, .plan = &plan, .ip = c->client_ip, .rid = c->request_id, .now = s->now_us(), .out = &after};
    if ((rc = bv_store_run_tx(s->store, 1, tx_rechallenge, &a)) != 0) {
        if (rc == BV_ECONFLICT)
            bv_reply_problem(c, rc, "the transfer is not waiting for confirmation", NULL);
        else
            reply_challenge_error(c, rc, &t, t.id);
        goto out;
    }
    reply_transfer(c, 201, &after, false);
out:
    json_decref(root);
}

/* ---- GET ---- */

static void on_get(bv_call_t *c)
{
    tr_service_t *s;
    tr_transfer_t t;
    if ((s = service_or_reply(c)) == NULL || own_transfer_or_reply(c, s, &t) != 0)
        return;
    reply_transfer(c, 200, &t, false);
}

static const char *const statuses[] = {TR_PENDING, TR_EXPIRED, TR_QUEUED, TR_PROCESSING,
                                       TR_SUCCESS, TR_FAILED,  NULL};

typedef struct {
    const char *user_id, *status, *before;
    int64_t limit, now;
    bv_buf_t *b;
    char next[BV_UUID_STR_LEN + 1];
} list_arg_t;

static int tx_list(bv_tx_t *tx, void *arg)
{
    list_arg_t *a = arg;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT id FROM customer_transfers WHERE user_id = ?1 "
                                     "AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR id < ?3) "
                                     "ORDER BY id DESC LIMIT ?4");
    char(*ids)[BV_UUID_STR_LEN + 1] = NULL;
    int n = 0, rc;
    tr_transfer_t t;
    if (s == NULL)
        return BV_EIO;
    if ((ids = calloc((size_t)a->limit + 1, sizeof(*ids))) == NULL)
        return BV_ENOMEM;
    bv_stmt_bind_text(s, 1, a->user_id, -1);
    bv_stmt_bind_text(s, 2, a->status, -1);
    bv_stmt_bind_text(s, 3, a->before, -1);
    bv_stmt_bind_int64(s, 4, a->limit + 1);
    while ((rc = bv_stmt_step(s)) == BV_ROW && n <= a->limit)
        snprintf(ids[n++], sizeof(ids[0]), "%s", bv_stmt_text(s, 0));
    bv_stmt_reset(s);
    if (rc < 0)
        goto out;
    rc = bv_buf_puts(a->b, "{\"items\":[");
    for (int i = 0; i < n && i < a->limit && rc == 0; i++) {
        if ((rc = tr_load_tx(tx, ids[i], &t)) != 0)
            break;
        /* a pending transfer past its window is shown as what it is (the sweeper records it) */
        if (strcmp(t.status, TR_PENDING) == 0 && a->now >= t.confirm_by)
            snprintf(t.status, sizeof(t.status), "%s", TR_EXPIRED);
        if (i > 0)
            rc = bv_buf_puts(a->b, ",");
        if (rc == 0)
            rc = tr_json(a->b, &t);
    }
    if (rc == 0 && n > a->limit)
        rc = bv_buf_printf(a->b, "],\"next_cursor\":\"%s\"}", ids[a->limit - 1]);
    else if (rc == 0)
        rc = bv_buf_puts(a->b, "],\"next_cursor\":null}");
out:
    free(ids);
    return rc;
}

static void on_list(bv_call_t *c)
{
    tr_service_t *s;
    bv_buf_t b = {0};
    int64_t limit = 0;
    int rc;
    if ((s = service_or_reply(c)) == NULL || bv_call_query_int_or_reply(c, "limit", 20, 1, 100, &limit) != 0)
        return;
    const char *status = bv_call_query(c, "status"), *cursor = bv_call_query(c, "cursor");
    if (status != NULL) {
        int ok = 0;
        for (const char *const *p = statuses; *p != NULL; p++)
            ok |= strcmp(*p, status) == 0;
        if (!ok) {
            bv_reply_problem(
                c, BV_EINVALID,
                "status must be pending_confirmation, expired, queued, processing, success or fail",
                "status");
            return;
        }
    }
    if (cursor != NULL && !bv_uuid_valid(cursor)) {
        bv_reply_problem(c, BV_EINVALID, "cursor must be a next_cursor value", "cursor");
        return;
    }
    list_arg_t a = {.user_id = c->principal.subject,
                    .status = status,
                    .before = cursor,
                    .limit = limit,
                    .b = &b,
                    .now = s->now_us()};
    if ((rc = bv_store_read(s->store, tx_list, &a)) != 0) {
        bv_buf_free(&b);
        reply_error(c, rc, NULL, NULL);
        return;
    }
    bv_reply_raw(c, 200, "application/json", b.data, b.len);
    bv_buf_free(&b);
}

const bv_route_t tr_routes[] = {
    {"POST", "/v1/me/transfers", on_create, "banking:write", 4096, BV_ROUTE_CUSTOMER, NULL},
    {"GET", "/v1/me/transfers", on_list, "banking:read", 0, BV_ROUTE_CUSTOMER, NULL},
    {"GET", "/v1/me/transfers/{id}", on_get, "banking:read", 0, BV_ROUTE_CUSTOMER, NULL},
    {"POST", "/v1/me/transfers/{id}/confirm", on_confirm, "banking:write", 1024, BV_ROUTE_CUSTOMER, NULL},
    {"POST", "/v1/me/transfers/{id}/challenge", on_challenge, "banking:write", 256, BV_ROUTE_CUSTOMER, NULL},
};
const size_t tr_n_routes = sizeof(tr_routes) / sizeof(tr_routes[0]);
