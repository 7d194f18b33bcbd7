/* Rows of customer_transfers: load, insert, the daily sum, expiry, the JSON representation,
 * audit records and the OTP binding of a transfer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "base/log.h"
#include "mfa/mfa.h"
#include "transfers/internal.h"
#include "transfers/transfers.h"

#define TR_COLUMNS                                                                                         \
    "id, user_id, idem_key, request_hash, from_account, from_number, to_account, to_number, to_customer, " \
    "amount, currency, description, status, stage, notification_status, challenge_id, challenge_channel, " \
    "challenge_expires_at, confirm_by, attempts, sends, last_deadline, last_error, core_transfer_id, "     \
    "failure_type, failure_title, created_at, confirmed_at, completed_at, updated_at"

static void copy(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src != NULL ? src : "");
}

static void from_row(bv_stmt_t *s, tr_transfer_t *t)
{
    memset(t, 0, sizeof(*t));
    copy(t->id, sizeof(t->id), bv_stmt_text(s, 0));
    copy(t->user_id, sizeof(t->user_id), bv_stmt_text(s, 1));
    copy(t->idem_key, sizeof(t->idem_key), bv_stmt_text(s, 2));
    copy(t->request_hash, sizeof(t->request_hash), bv_stmt_text(s, 3));
    copy(t->from_account, sizeof(t->from_account), bv_stmt_text(s, 4));
    copy(t->from_number, sizeof(t->from_number), bv_stmt_text(s, 5));
    copy(t->to_account, sizeof(t->to_account), bv_stmt_text(s, 6));
    copy(t->to_number, sizeof(t->to_number), bv_stmt_text(s, 7));
    copy(t->to_customer, sizeof(t->to_customer), bv_stmt_text(s, 8));
    t->amount = bv_stmt_int64(s, 9);
    copy(t->currency, sizeof(t->currency), bv_stmt_text(s, 10));
    copy(t->description, sizeof(t->description), bv_stmt_text(s, 11));
    copy(t->status, sizeof(t->status), bv_stmt_text(s, 12));
    copy(t->stage, sizeof(t->stage), bv_stmt_text(s, 13));
    copy(t->notification_status, sizeof(t->notification_status), bv_stmt_text(s, 14));
    copy(t->challenge_id, sizeof(t->challenge_id), bv_stmt_text(s, 15));
    copy(t->challenge_channel, sizeof(t->challenge_channel), bv_stmt_text(s, 16));
    t->challenge_expires_at = bv_stmt_int64(s, 17);
    t->confirm_by = bv_stmt_int64(s, 18);
    t->attempts = bv_stmt_int64(s, 19);
    t->sends = bv_stmt_int64(s, 20);
    t->last_deadline = bv_stmt_int64(s, 21);
    copy(t->last_error, sizeof(t->last_error), bv_stmt_text(s, 22));
    copy(t->core_transfer_id, sizeof(t->core_transfer_id), bv_stmt_text(s, 23));
    copy(t->failure_type, sizeof(t->failure_type), bv_stmt_text(s, 24));
    copy(t->failure_title, sizeof(t->failure_title), bv_stmt_text(s, 25));
    t->created_at = bv_stmt_int64(s, 26);
    t->confirmed_at = bv_stmt_int64(s, 27);
    t->completed_at = bv_stmt_int64(s, 28);
    t->updated_at = bv_stmt_int64(s, 29);
}

static int load_one(bv_stmt_t *s, tr_transfer_t *out)
{
    int rc = bv_stmt_step(s);
    if (rc == BV_ROW)
        from_row(s, out);
    bv_stmt_reset(s);
    return rc == BV_ROW ? 0 : rc == BV_DONE ? BV_ENOTFOUND : rc;
}

int tr_load_tx(bv_tx_t *tx, const char *id, tr_transfer_t *out)
{
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT " TR_COLUMNS " FROM customer_transfers WHERE id = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, id, -1);
    return load_one(s, out);
}

int tr_load_by_key_tx(bv_tx_t *tx, const char *user_id, const char *idem_key, tr_transfer_t *out)
{
    bv_stmt_t *s =
        bv_tx_prepare(tx, "SELECT " TR_COLUMNS " FROM customer_transfers WHERE user_id = ? AND idem_key = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, user_id, -1);
    bv_stmt_bind_text(s, 2, idem_key, -1);
    return load_one(s, out);
}

typedef struct {
    const char *id;
    tr_transfer_t *out;
} load_arg_t;

static int tx_load(bv_tx_t *tx, void *arg)
{
    load_arg_t *a = arg;
    return tr_load_tx(tx, a->id, a->out);
}

int tr_load(bv_store_t *st, const char *id, tr_transfer_t *out)
{
    load_arg_t a = {id, out};
    if (id == NULL || !bv_uuid_valid(id))
        return BV_ENOTFOUND;
    return bv_store_read(st, tx_load, &a);
}

static const char *nullable(const char *s)
{
    return s != NULL && s[0] != '\0' ? s : NULL;
}

int tr_insert_tx(bv_tx_t *tx, const tr_transfer_t *t)
{
    bv_stmt_t *s = bv_tx_prepare(tx, "INSERT INTO customer_transfers (" TR_COLUMNS ") VALUES "
                                     "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    int rc;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, t->id, -1);
    bv_stmt_bind_text(s, 2, t->user_id, -1);
    bv_stmt_bind_text(s, 3, t->idem_key, -1);
    bv_stmt_bind_text(s, 4, t->request_hash, -1);
    bv_stmt_bind_text(s, 5, t->from_account, -1);
    bv_stmt_bind_text(s, 6, t->from_number, -1);
    bv_stmt_bind_text(s, 7, t->to_account, -1);
    bv_stmt_bind_text(s, 8, t->to_number, -1);
    bv_stmt_bind_text(s, 9, nullable(t->to_customer), -1);
    bv_stmt_bind_int64(s, 10, t->amount);
    bv_stmt_bind_text(s, 11, t->currency, -1);
    bv_stmt_bind_text(s, 12, nullable(t->description), -1);
    bv_stmt_bind_text(s, 13, t->status, -1);
    bv_stmt_bind_text(s, 14, nullable(t->stage), -1);
    bv_stmt_bind_text(s, 15, t->notification_status[0] ? t->notification_status : "none", -1);
    bv_stmt_bind_text(s, 16, nullable(t->challenge_id), -1);
    bv_stmt_bind_text(s, 17, nullable(t->challenge_channel), -1);
    bv_stmt_bind_int64(s, 18, t->challenge_expires_at);
    bv_stmt_bind_int64(s, 19, t->confirm_by);
    bv_stmt_bind_int64(s, 20, t->attempts);
    bv_stmt_bind_int64(s, 21, t->sends);
    bv_stmt_bind_int64(s, 22, t->last_deadline);
    bv_stmt_bind_text(s, 23, nullable(t->last_error), -1);
    bv_stmt_bind_text(s, 24, nullable(t->core_transfer_id), -1);
    bv_stmt_bind_text(s, 25, nullable(t->failure_type), -1);
    bv_stmt_bind_text(s, 26, nullable(t->failure_title), -1);
    bv_stmt_bind_int64(s, 27, t->created_at);
    if (t->confirmed_at > 0)
        bv_stmt_bind_int64(s, 28, t->confirmed_at);
    else
        bv_stmt_bind_null(s, 28);
    if (t->completed_at > 0)
        bv_stmt_bind_int64(s, 29, t->completed_at);
    else
        bv_stmt_bind_null(s, 29);
    bv_stmt_bind_int64(s, 30, t->updated_at);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

int tr_daily_sum_tx(bv_tx_t *tx, const char *from_account, int64_t since, int64_t *sum_out)
{
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT coalesce(sum(amount), 0) FROM customer_transfers "
                                     "WHERE from_account = ? AND created_at >= ? "
                                     "AND status NOT IN ('fail', 'expired')");
    int rc;
    *sum_out = 0;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, from_account, -1);
    bv_stmt_bind_int64(s, 2, since);
    rc = bv_stmt_step(s);
    if (rc == BV_ROW)
        *sum_out = bv_stmt_int64(s, 0);
    bv_stmt_reset(s);
    return rc < 0 ? rc : 0;
}

int tr_audit(bv_tx_t *tx, const char *user_id, const char *action, const char *transfer_id,
             const char *outcome, const char *ip, const char *request_id, json_t *details)
{
    char actor[160], resource[64];
    if (user_id != NULL)
        snprintf(actor, sizeof(actor), "user:%.150s", user_id);
    else
        snprintf(actor, sizeof(actor), "system");
    snprintf(resource, sizeof(resource), "customer_transfer:%.36s", transfer_id != NULL ? transfer_id : "");
    bv_audit_event_t ev = {.actor = actor,
                           .action = action,
                           .resource = transfer_id != NULL ? resource : NULL,
                           .outcome = outcome,
                           .source_ip = ip != NULL && ip[0] ? ip : NULL,
                           .request_id = request_id != NULL && request_id[0] ? request_id : NULL,
                           .details = details};
    int rc = bv_audit_append(tx, &ev);
    json_decref(details);
    return rc;
}

int tr_is_final(const tr_transfer_t *t)
{
    return strcmp(t->status, TR_SUCCESS) == 0 || strcmp(t->status, TR_FAILED) == 0;
}

int tr_binding(const tr_transfer_t *t, unsigned char out[32])
{
    char amount[BV_LEDGER_AMOUNT_MAX];
    int exponent = bv_ledger_currency_exponent(t->currency);
    if (exponent < 0)
        return BV_EINVALID;
    bv_ledger_amount_format(t->amount, exponent, amount);
    bv_mfa_operation_t op = {amount, t->currency, t->from_account, t->to_number};
    return bv_mfa_binding(&op, out, NULL);
}

/* ---- expiry ---- */

typedef struct {
    const char *user_id;
    int64_t now;
    int n;
} expire_arg_t;

static int tx_expire(bv_tx_t *tx, void *arg)
{
    expire_arg_t *a = arg;
    char ids[200][BV_UUID_STR_LEN + 1], users[200][129];
    int n = 0, rc;
    bv_stmt_t *s =
        bv_tx_prepare(tx, "SELECT id, user_id FROM customer_transfers WHERE status = 'pending_confirmation' "
                          "AND confirm_by <= ?1 AND (?2 IS NULL OR user_id = ?2) LIMIT 200");
    a->n = 0;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, a->now);
    bv_stmt_bind_text(s, 2, a->user_id, -1);
    while (n < 200 && (rc = bv_stmt_step(s)) == BV_ROW) {
        copy(ids[n], sizeof(ids[n]), bv_stmt_text(s, 0));
        copy(users[n], sizeof(users[n]), bv_stmt_text(s, 1));
        n++;
    }
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    for (int i = 0; i < n; i++) {
        if ((rc = bv_tx_execf(tx,
                              "UPDATE customer_transfers SET status = 'expired', updated_at = ? "
                              "WHERE id = ? AND status = 'pending_confirmation'",
                              "it", a->now, ids[i])) != 0)
            return rc;
        if (bv_tx_changes(tx) != 1)
            continue;
        if ((rc = tr_audit(tx, NULL, "transfers.transfer.expire", ids[i], "success", NULL, NULL,
                           json_pack("{s:s}", "customer", users[i]))) != 0)
            return rc;
        a->n++;
    }
    return 0;
}

int tr_expire_due(bv_store_t *st, const char *user_id, int64_t now, int *n_out)
{
    expire_arg_t a = {user_id, now, 0};
    int rc = bv_store_run_tx(st, 1, tx_expire, &a);
    if (n_out != NULL)
        *n_out = rc == 0 ? a.n : 0;
    return rc;
}

/* ---- JSON ---- */

static int json_time(bv_buf_t *b, const char *name, int64_t us)
{
    char t[32];
    if (us <= 0)
        return bv_buf_printf(b, ",\"%s\":null", name);
    bv_time_format(us, t);
    return bv_buf_printf(b, ",\"%s\":\"%s\"", name, t);
}

static int json_str(bv_buf_t *b, const char *name, const char *v)
{
    char esc[4 * BV_LEDGER_DESC_MAX + 8];
    if (v == NULL || v[0] == '\0')
        return bv_buf_printf(b, ",\"%s\":null", name);
    bv_json_escape(esc, sizeof(esc), v);
    return bv_buf_printf(b, ",\"%s\":\"%s\"", name, esc);
}

int tr_json(bv_buf_t *b, const tr_transfer_t *t)
{
    char amount[BV_LEDGER_AMOUNT_MAX];
    int exponent = bv_ledger_currency_exponent(t->currency), rc = 0;
    bv_ledger_amount_format(t->amount, exponent < 0 ? 0 : exponent, amount);
    rc |= bv_buf_printf(b, "{\"id\":\"%s\"", t->id);
    rc |= json_str(b, "status", t->status);
    rc |= json_str(b, "stage", t->stage);
    rc |= json_str(b, "notification_status", t->notification_status);
    rc |= json_str(b, "from_account", t->from_account);
    rc |= json_str(b, "from_account_number", t->from_number);
    rc |= json_str(b, "to_account_number", t->to_number);
    rc |= bv_buf_printf(b, ",\"amount\":\"%s\",\"currency\":\"%s\"", amount, t->currency);
    rc |= json_str(b, "description", t->description);
    if (strcmp(t->status, TR_PENDING) == 0 && t->challenge_id[0] != '\0') {
        char exp[32];
        bv_time_format(t->challenge_expires_at, exp);
        rc |= bv_buf_printf(b, ",\"challenge\":{\"id\":\"%s\",\"channel\":\"%s\",\"expires_at\":\"%s\"}",
                            t->challenge_id, t->challenge_channel, exp);
    }
    rc |= json_time(b, "expires_at", strcmp(t->status, TR_PENDING) == 0 ? t->confirm_by : 0);
    rc |= bv_buf_printf(b, ",\"attempts\":%lld", (long long)t->attempts);
    rc |= json_str(b, "core_transfer_id", t->core_transfer_id);
    if (strcmp(t->status, TR_FAILED) == 0) {
        char title[256];
        bv_json_escape(title, sizeof(title), t->failure_title);
        rc |= bv_buf_printf(b, ",\"failure\":{\"type\":\"" BV_PROBLEM_BASE "%s\",\"title\":\"%s\"}",
                            t->failure_type, title);
    } else {
        rc |= bv_buf_puts(b, ",\"failure\":null");
    }
    rc |= json_time(b, "created_at", t->created_at);
    rc |= json_time(b, "confirmed_at", t->confirmed_at);
    rc |= json_time(b, "completed_at", t->completed_at);
    rc |= json_time(b, "updated_at", t->updated_at);
    rc |= bv_buf_puts(b, "}");
    return rc != 0 ? BV_ENOMEM : 0;
}

/* ---- notified ---- */

typedef struct {
    tr_service_t *s;
    char (*ids)[BV_UUID_STR_LEN + 1];
    int n_ids, n;
} promote_arg_t;

/* 1 when every notice published for the transfer was delivered on a channel (and there was
 * one), 0 when not yet, or an error. */
static int all_delivered(bv_tx_t *tx, tr_service_t *s, const char *id)
{
    static const char *const parties[] = {"sender", "receiver"};
    int published = 0;
    for (int i = 0; i < 2; i++) {
        char nid[BV_UUID_STR_LEN + 1];
        unsigned channels = 0;
        tr_notification_id(id, parties[i], nid);
        int rc = s->delivered(tx, nid, &channels);
        if (rc == BV_ENOTFOUND)
            continue;
        if (rc != 0)
            return rc;
        if (channels == 0)
            return 0;
        published++;
    }
    return published > 0;
}

/* Read snapshot: the transfers whose notices were all delivered. */
static int tx_promote_find(bv_tx_t *tx, void *arg)
{
    promote_arg_t *a = arg;
    char cand[500][BV_UUID_STR_LEN + 1];
    int n = 0, rc;
    a->n_ids = 0;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT id FROM customer_transfers WHERE notification_status = 'notify' "
                                     "ORDER BY updated_at LIMIT 500");
    if (s == NULL)
        return BV_EIO;
    while (n < 500 && (rc = bv_stmt_step(s)) == BV_ROW)
        copy(cand[n++], sizeof(cand[0]), bv_stmt_text(s, 0));
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    for (int i = 0; i < n; i++) {
        if ((rc = all_delivered(tx, a->s, cand[i])) < 0)
            return rc;
        if (rc == 1)
            memcpy(a->ids[a->n_ids++], cand[i], sizeof(cand[0]));
    }
    return 0;
}

static int tx_promote(bv_tx_t *tx, void *arg)
{
    promote_arg_t *a = arg;
    a->n = 0;
    for (int i = 0; i < a->n_ids; i++) {
        int rc = bv_tx_execf(tx,
                             "UPDATE customer_transfers SET notification_status = 'notified' "
                             "WHERE id = ? AND notification_status = 'notify'",
                             "t", a->ids[i]);
        if (rc != 0)
            return rc;
        a->n += bv_tx_changes(tx) == 1;
    }
    return 0;
}

int tr_promote_notified(tr_service_t *s, int *n_out)
{
    promote_arg_t a = {.s = s};
    int rc = 0;
    if (n_out != NULL)
        *n_out = 0;
    if (s->delivered == NULL)
        return 0;
    if ((a.ids = calloc(500, sizeof(*a.ids))) == NULL)
        return BV_ENOMEM;
    if ((rc = bv_store_read(s->store, tx_promote_find, &a)) == 0 && a.n_ids > 0)
        rc = bv_store_run_tx(s->store, 1, tx_promote, &a);
    if (rc == 0 && n_out != NULL)
        *n_out = a.n;
    free(a.ids);
    return rc;
}

int bv_transfers_is_customer_transfer(bv_tx_t *tx, const char *reference)
{
    if (reference == NULL || !bv_uuid_valid(reference))
        return 0;
    bv_stmt_t *s = bv_tx_prepare(tx, "SELECT 1 FROM customer_transfers WHERE id = ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, reference, -1);
    int rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    return rc == BV_ROW ? 1 : rc < 0 ? rc : 0;
}
