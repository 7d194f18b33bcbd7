/* The customer's statement routes (access token of a customer with scope "banking:read"):
 *   POST /v1/me/statements       {account, from, to, format} [Idempotency-Key] -> 202
 *   GET  /v1/me/statements/{id}  the request and its status
 * Another customer's account or request answers 404, as if it did not exist. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "base/log.h"
#include "core/core.h"
#include "customer/customer.h"
#include "queue/queue.h"
#include "statements/internal.h"

#define HOUR_US (3600LL * 1000000LL)
#define DAY_US  (86400LL * 1000000LL)

static void reply_error(bv_call_t *c, int rc)
{
    if (bv_err_status(rc) >= 500)
        bv_log(BV_LOG_ERROR, c->request_id, "statement request failed", "\"error\":\"%s\"", bv_err_name(rc));
    bv_reply_problem(c, rc, NULL, NULL); /* 404s say nothing that tells unknown from another's */
}

/* The request row as the API shows it. */
typedef struct {
    char id[BV_UUID_STR_LEN + 1];
    char account[BV_UUID_STR_LEN + 1];
    char format[4];
    char status[8];
    char error[64];
    int64_t from, to, movements, created_at, updated_at;
} request_row_t;

static json_t *row_json(const request_row_t *r)
{
    char from[32], to[32], created[32], updated[32];
    bv_time_format(r->from, from);
    bv_time_format(r->to, to);
    bv_time_format(r->created_at, created);
    bv_time_format(r->updated_at, updated);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "id", r->id, "account", r->account,
                          "from", from, "to", to, "format", r->format, "status", r->status, "created_at",
                          created, "updated_at", updated);
    if (o != NULL && r->error[0] != '\0')
        json_object_set_new(o, "error", json_string(r->error));
    if (o != NULL && r->movements >= 0 && strcmp(r->status, "sent") == 0)
        json_object_set_new(o, "movements", json_integer(r->movements));
    return o;
}

static void reply_row(bv_call_t *c, int status, const request_row_t *r)
{
    char location[80];
    json_t *body = row_json(r);
    if (body == NULL) {
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        return;
    }
    if (status == 202) {
        snprintf(location, sizeof(location), "/v1/me/statements/%s", r->id);
        bv_call_add_header(c, "location", location);
    }
    bv_reply_json(c, status, body);
}

/* ---- POST /v1/me/statements ---- */

typedef struct {
    const char *account, *from, *to, *format;
} create_body_t;

static const bv_json_field_t create_spec[] = {
    {"account", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 64, offsetof(create_body_t, account), NULL},
    {"from", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 64, offsetof(create_body_t, from), NULL},
    {"to", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 64, offsetof(create_body_t, to), NULL},
    {"format", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 16, offsetof(create_body_t, format), NULL},
    BV_JSON_END,
};

typedef struct {
    /* in */
    const char *user_id, *account_id, *format, *idem_key;
    int64_t from, to, now;
    unsigned char hash[32];
    const char *actor, *ip, *rid;
    /* out */
    int outcome; /* 0 created, 1 replayed, BV_ERATELIMIT, BV_EIDEMPOTENCY */
    int64_t retry_after_s;
    request_row_t row;
} create_tx_t;

static int audit(bv_tx_t *tx, const create_tx_t *a, const char *id, const char *outcome, json_t *details)
{
    char resource[64];
    snprintf(resource, sizeof(resource), "statement:%s", id != NULL ? id : "");
    bv_audit_event_t ev = {.actor = a->actor,
                           .action = "statements.request.create",
                           .resource = id != NULL ? resource : NULL,
                           .outcome = outcome,
                           .source_ip = a->ip,
                           .request_id = a->rid,
                           .details = details};
    int rc = details == NULL ? BV_ENOMEM : bv_audit_append(tx, &ev);
    json_decref(details);
    return rc;
}

static int load_row(bv_stmt_t *s, request_row_t *r)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->id, sizeof(r->id), "%s", bv_stmt_text(s, 0) ? bv_stmt_text(s, 0) : "");
    snprintf(r->account, sizeof(r->account), "%s", bv_stmt_text(s, 1) ? bv_stmt_text(s, 1) : "");
    r->from = bv_stmt_int64(s, 2);
    r->to = bv_stmt_int64(s, 3);
    snprintf(r->format, sizeof(r->format), "%s", bv_stmt_text(s, 4) ? bv_stmt_text(s, 4) : "");
    snprintf(r->status, sizeof(r->status), "%s", bv_stmt_text(s, 5) ? bv_stmt_text(s, 5) : "");
    snprintf(r->error, sizeof(r->error), "%s", bv_stmt_text(s, 6) ? bv_stmt_text(s, 6) : "");
    r->movements = bv_stmt_is_null(s, 7) ? -1 : bv_stmt_int64(s, 7);
    r->created_at = bv_stmt_int64(s, 8);
    r->updated_at = bv_stmt_int64(s, 9);
    return 0;
}

#define ROW_COLUMNS "id, account_id, from_at, to_at, format, status, error, movements, created_at, updated_at"

static int tx_create(bv_tx_t *tx, void *arg)
{
    create_tx_t *a = arg;
    bv_stmt_t *s;
    int rc;
    a->outcome = 0;
    if (a->idem_key != NULL) {
        s = bv_tx_prepare(tx, "SELECT " ROW_COLUMNS ", request_hash FROM statement_requests "
                              "WHERE user_id = ? AND idem_key = ?");
        if (s == NULL)
            return BV_EIO;
        bv_stmt_bind_text(s, 1, a->user_id, -1);
        bv_stmt_bind_text(s, 2, a->idem_key, -1);
        rc = bv_stmt_step(s);
        if (rc == BV_ROW) {
            size_t hl = 0;
            const void *h = bv_stmt_blob(s, 10, &hl);
            load_row(s, &a->row);
            a->outcome =
                hl == sizeof(a->hash) && h != NULL && memcmp(h, a->hash, hl) == 0 ? 1 : BV_EIDEMPOTENCY;
        }
        bv_stmt_reset(s);
        if (rc < 0)
            return rc;
        if (a->outcome != 0)
            return 0;
    }
    s = bv_tx_prepare(tx, "SELECT count(*), min(created_at) FROM statement_requests WHERE user_id = ? AND "
                          "created_at > ?");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, a->user_id, -1);
    bv_stmt_bind_int64(s, 2, a->now - HOUR_US);
    int64_t n = 0, oldest = 0;
    rc = bv_stmt_step(s);
    if (rc == BV_ROW) {
        n = bv_stmt_int64(s, 0);
        oldest = bv_stmt_is_null(s, 1) ? a->now : bv_stmt_int64(s, 1);
    }
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    if (n >= BV_STATEMENTS_PER_HOUR) {
        a->outcome = BV_ERATELIMIT;
        a->retry_after_s = (oldest + HOUR_US - a->now) / 1000000 + 1;
        return audit(tx, a, NULL, "denied",
                     json_pack("{s:s, s:s, s:s}", "reason", "rate_limited", "account", a->account_id,
                               "format", a->format));
    }
    request_row_t *r = &a->row;
    memset(r, 0, sizeof(*r));
    bv_uuid7(r->id);
    snprintf(r->account, sizeof(r->account), "%s", a->account_id);
    snprintf(r->format, sizeof(r->format), "%s", a->format);
    snprintf(r->status, sizeof(r->status), "queued");
    r->from = a->from;
    r->to = a->to;
    r->movements = -1;
    r->created_at = r->updated_at = a->now;
    s = bv_tx_prepare(
        tx, "INSERT INTO statement_requests (id, user_id, account_id, from_at, to_at, format, status, "
            "idem_key, request_hash, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)");
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, r->id, -1);
    bv_stmt_bind_text(s, 2, a->user_id, -1);
    bv_stmt_bind_text(s, 3, a->account_id, -1);
    bv_stmt_bind_int64(s, 4, a->from);
    bv_stmt_bind_int64(s, 5, a->to);
    bv_stmt_bind_text(s, 6, a->format, -1);
    bv_stmt_bind_text(s, 7, a->idem_key, -1); /* NULL binds NULL */
    bv_stmt_bind_blob(s, 8, a->hash, sizeof(a->hash));
    bv_stmt_bind_int64(s, 9, a->now);
    bv_stmt_bind_int64(s, 10, a->now);
    rc = bv_stmt_step(s);
    bv_stmt_reset(s);
    if (rc < 0)
        return rc;
    char body[64];
    int bl = snprintf(body, sizeof(body), "{\"id\":\"%s\"}", r->id);
    bv_queue_send_t m = {.body = body, .body_len = (size_t)bl, .delay_ms = -1};
    if ((rc = bv_queue_send(tx, STATEMENTS_QUEUE, &m, NULL)) < 0)
        return rc;
    char from[32], to[32];
    bv_time_format(a->from, from);
    bv_time_format(a->to, to);
    return audit(tx, a, r->id, "success",
                 json_pack("{s:s, s:s, s:s, s:s}", "account", a->account_id, "format", a->format, "from",
                           from, "to", to));
}

/* Parses a period bound; replies 422 naming the field. */
static int time_or_reply(bv_call_t *c, const char *name, const char *v, int64_t *out)
{
    if (bv_time_parse(v, out) != 0 || *out < 0) {
        char detail[96];
        snprintf(detail, sizeof(detail), "%s must be an RFC 3339 time or a YYYY-MM-DD date", name);
        bv_reply_problem(c, BV_EUNPROCESSABLE, detail, name);
        return -1;
    }
    return 0;
}

static void request_hash(const char *account, int64_t from, int64_t to, const char *format,
                         unsigned char out[32])
{
    char text[160];
    int n = snprintf(text, sizeof(text), "%s|%lld|%lld|%s", account, (long long)from, (long long)to, format);
    unsigned int len = 32;
    EVP_Digest(text, (size_t)n, out, &len, EVP_sha256(), NULL);
}

/* 1 when the period holds more movements than one statement may carry. */
static int too_many_movements(bv_core_t *core, const char *account, int64_t from, int64_t to, int *rc_out)
{
    size_t n = 0;
    int64_t next = 0;
    bv_ledger_movement_t *items = calloc(BV_STATEMENTS_MAX_MOVEMENTS + 1, sizeof(*items));
    *rc_out = 0;
    if (items == NULL) {
        *rc_out = BV_ENOMEM;
        return 0;
    }
    *rc_out =
        bv_core_movements(core, account, from, to, 0, BV_STATEMENTS_MAX_MOVEMENTS + 1, items, &n, &next);
    free(items);
    return *rc_out == 0 && n > BV_STATEMENTS_MAX_MOVEMENTS;
}

static void on_create(bv_call_t *c)
{
    create_body_t b = {0};
    json_t *root = NULL;
    create_tx_t a = {0};
    bv_ledger_account_t acct;
    bv_customer_profile_t profile;
    char actor[160];
    const char *idem = bv_call_header(c, "idempotency-key");
    int rc;
    if (bv_call_decode_json_or_reply(c, create_spec, &b, &root) != 0)
        return;
    if (idem != NULL && (idem[0] == '\0' || strlen(idem) > 128)) {
        bv_reply_problem(c, BV_EINVALID, "Idempotency-Key must be 1 to 128 bytes", "Idempotency-Key");
        goto out;
    }
    if (strcmp(b.format, "pdf") != 0 && strcmp(b.format, "csv") != 0) {
        bv_reply_problem(c, BV_EUNPROCESSABLE, "format must be pdf or csv", "format");
        goto out;
    }
    if (time_or_reply(c, "from", b.from, &a.from) != 0 || time_or_reply(c, "to", b.to, &a.to) != 0)
        goto out;
    if (a.from >= a.to) {
        bv_reply_problem(c, BV_EUNPROCESSABLE, "to must be later than from", "to");
        goto out;
    }
    if (a.to - a.from > (int64_t)BV_STATEMENTS_MAX_DAYS * DAY_US) {
        bv_reply_problem(c, BV_EUNPROCESSABLE, "a statement covers at most 366 days", "to");
        goto out;
    }
    /* the account must be the caller's: anything else is "not found" */
    if ((rc = bv_customer_account_owned(c->principal.subject, b.account, &acct)) != 0) {
        reply_error(c, rc);
        goto out;
    }
    if ((rc = bv_customer_profile(c->principal.subject, &profile)) != 0) {
        reply_error(c, rc == BV_ENOTFOUND ? BV_EUNAUTHENTICATED : rc);
        goto out;
    }
    int no_email = profile.email[0] == '\0';
    OPENSSL_cleanse(&profile, sizeof(profile));
    if (no_email) {
        bv_reply_problem(c, BV_EUNPROCESSABLE, "there is no e-mail address on file to send the statement to",
                         NULL);
        goto out;
    }
    bv_core_t *core = bv_core_instance();
    if (core == NULL) {
        reply_error(c, BV_EUNAVAILABLE);
        goto out;
    }
    if (too_many_movements(core, acct.id, a.from, a.to, &rc)) {
        char detail[128];
        snprintf(detail, sizeof(detail), "the period holds more than %d movements: ask for a shorter period",
                 BV_STATEMENTS_MAX_MOVEMENTS);
        bv_reply_problem(c, BV_EUNPROCESSABLE, detail, "to");
        goto out;
    }
    if (rc != 0) {
        reply_error(c, rc);
        goto out;
    }
    bv_principal_actor(&c->principal, actor, sizeof(actor));
    a.user_id = c->principal.subject;
    a.account_id = acct.id;
    a.format = b.format;
    a.idem_key = idem;
    a.now = bv_now_us();
    a.actor = actor;
    a.ip = c->client_ip[0] != '\0' ? c->client_ip : NULL;
    a.rid = c->request_id[0] != '\0' ? c->request_id : NULL;
    request_hash(acct.id, a.from, a.to, b.format, a.hash);
    if ((rc = bv_store_run_tx(statements_store(), 1, tx_create, &a)) != 0) {
        reply_error(c, rc);
        goto out;
    }
    if (a.outcome == BV_ERATELIMIT) {
        char ra[24];
        snprintf(ra, sizeof(ra), "%lld", (long long)(a.retry_after_s > 0 ? a.retry_after_s : 1));
        bv_call_add_header(c, "retry-after", ra);
        bv_reply_problem(c, BV_ERATELIMIT, "too many statement requests in the last hour", NULL);
        goto out;
    }
    if (a.outcome == BV_EIDEMPOTENCY) {
        bv_reply_problem(c, BV_EIDEMPOTENCY, "this idempotency key was used with a different request",
                         "Idempotency-Key");
        goto out;
    }
    if (a.outcome == 0)
        bv_log(BV_LOG_INFO, c->request_id, "statement requested", "\"statement\":\"%s\",\"format\":\"%s\"",
               a.row.id, a.row.format);
    reply_row(c, 202, &a.row);
out:
    json_decref(root);
}

/* ---- GET /v1/me/statements/{id} ---- */

typedef struct {
    const char *id, *user_id;
    request_row_t row;
} get_tx_t;

static int tx_get(bv_tx_t *tx, void *arg)
{
    get_tx_t *g = arg;
    bv_stmt_t *s =
        bv_tx_prepare(tx, "SELECT " ROW_COLUMNS " FROM statement_requests WHERE id = ? AND user_id = ?");
    int rc;
    if (s == NULL)
        return BV_EIO;
    bv_stmt_bind_text(s, 1, g->id, -1);
    bv_stmt_bind_text(s, 2, g->user_id, -1);
    rc = bv_stmt_step(s);
    if (rc == BV_ROW)
        rc = load_row(s, &g->row);
    else if (rc == BV_DONE)
        rc = BV_ENOTFOUND;
    bv_stmt_reset(s);
    return rc;
}

static void on_get(bv_call_t *c)
{
    char id[BV_UUID_STR_LEN + 1];
    const char *p = bv_call_param(c, "id");
    get_tx_t g = {0};
    int rc;
    if (p == NULL || !bv_uuid_valid(p)) {
        reply_error(c, BV_ENOTFOUND);
        return;
    }
    snprintf(id, sizeof(id), "%s", p);
    for (char *q = id; *q; q++)
        if (*q >= 'A' && *q <= 'F')
            *q = (char)(*q - 'A' + 'a');
    g.id = id;
    g.user_id = c->principal.subject;
    if ((rc = bv_store_run_tx(statements_store(), 0, tx_get, &g)) != 0) {
        reply_error(c, rc);
        return;
    }
    reply_row(c, 200, &g.row);
}

const bv_route_t statements_routes[] = {
    {"POST", "/v1/me/statements", on_create, "banking:read", 4096, BV_ROUTE_CUSTOMER, NULL},
    {"GET", "/v1/me/statements/{id}", on_get, "banking:read", 0, BV_ROUTE_CUSTOMER, NULL},
};
const size_t statements_n_routes = sizeof(statements_routes) / sizeof(statements_routes[0]);
