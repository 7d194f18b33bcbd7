/* GET /v1/audit/events: the audit log for auditors (scope "audit:read"), newest first,
 * cursor-paginated. A request with bad parameters is itself audited (outcome "invalid"). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit_internal.h"
#include "audit/audit_module.h"
#include "base/base64.h"
#include "base/log.h"

#define DEFAULT_LIMIT 50
#define MAX_LIMIT     500

/* ---- cursors: base64url (no padding) of the 8-byte big-endian seq of the last item ---- */

void bv_audit_cursor_encode(int64_t seq, char out[BV_AUDIT_CURSOR_LEN + 1])
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)seq >> (56 - 8 * i));
    bv_b64_encode(BV_B64_URL, b, sizeof(b), out); /* 8 bytes: exactly 11 characters */
}

int bv_audit_cursor_decode(const char *s, int64_t *seq_out)
{
    unsigned char b[8];
    uint64_t acc = 0;
    /* canonical decoding: the two spare bits of the last character must be zero */
    if (s == NULL || strlen(s) != BV_AUDIT_CURSOR_LEN ||
        bv_b64_decode(BV_B64_URL, s, BV_AUDIT_CURSOR_LEN, b, 8) != 8)
        return BV_EINVALID;
    for (int i = 0; i < 8; i++)
        acc = acc << 8 | b[i];
    if (acc == 0 || acc > (uint64_t)INT64_MAX)
        return BV_EINVALID;
    *seq_out = (int64_t)acc;
    return 0;
}

/* ---- the query: one statement per combination of filters, built once ---- */

#define F_ACTOR  1u
#define F_ACTION 2u
#define F_FROM   4u
#define F_TO     8u

static char *g_sql[16];
static pthread_once_t g_sql_once = PTHREAD_ONCE_INIT;

static void build_sql(void)
{
    for (unsigned m = 0; m < 16; m++) {
        char buf[512];
        snprintf(buf, sizeof(buf),
                 "SELECT seq, id, time, actor, action, resource, outcome, source_ip, request_id, details "
                 "FROM audit_log WHERE seq < ?1%s%s%s%s ORDER BY seq DESC LIMIT ?6",
                 (m & F_ACTOR) ? " AND actor = ?2" : "", (m & F_ACTION) ? " AND action = ?3" : "",
                 (m & F_FROM) ? " AND time >= ?4" : "", (m & F_TO) ? " AND time < ?5" : "");
        g_sql[m] = strdup(buf); /* lives for the process: the statement cache keys on it */
    }
}

int bv_audit_query(bv_tx_t *tx, const bv_audit_query_t *q, json_t *items, int64_t *next_cursor_seq_out)
{
    unsigned m = 0;
    int step, n = 0;
    int64_t last = 0;
    bv_stmt_t *s;

    pthread_once(&g_sql_once, build_sql);
    m |= q->actor != NULL ? F_ACTOR : 0;
    m |= q->action != NULL ? F_ACTION : 0;
    m |= q->has_from ? F_FROM : 0;
    m |= q->has_to ? F_TO : 0;
    if (g_sql[m] == NULL || (s = bv_tx_prepare(tx, g_sql[m])) == NULL)
        return BV_EIO;
    bv_stmt_bind_int64(s, 1, q->before_seq > 0 ? q->before_seq : INT64_MAX);
    if (q->actor != NULL)
        bv_stmt_bind_text(s, 2, q->actor, -1);
    if (q->action != NULL)
        bv_stmt_bind_text(s, 3, q->action, -1);
    if (q->has_from)
        bv_stmt_bind_int64(s, 4, q->from_us);
    if (q->has_to)
        bv_stmt_bind_int64(s, 5, q->to_us);
    bv_stmt_bind_int64(s, 6, q->limit + 1); /* one more tells whether another page exists */
    *next_cursor_seq_out = 0;
    while ((step = bv_stmt_step(s)) == BV_ROW) {
        char t[32];
        json_t *item, *details;
        const char *d;
        if (n == q->limit) {
            *next_cursor_seq_out = last;
            break;
        }
        last = bv_stmt_int64(s, 0);
        bv_time_format(bv_stmt_int64(s, 2), t);
        d = bv_stmt_text(s, 9);
        details = d != NULL ? json_loads(d, JSON_DECODE_ANY, NULL) : NULL;
        item = json_pack("{s:I, s:s?, s:s, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:o}", "seq", (json_int_t)last,
                         "id", bv_stmt_text(s, 1), "time", t, "actor", bv_stmt_text(s, 3), "action",
                         bv_stmt_text(s, 4), "resource", bv_stmt_text(s, 5), "outcome", bv_stmt_text(s, 6),
                         "source_ip", bv_stmt_text(s, 7), "request_id", bv_stmt_text(s, 8), "details",
                         details != NULL ? details : json_object());
        if (item == NULL || json_array_append_new(items, item) != 0) {
            bv_stmt_reset(s);
            return BV_ENOMEM;
        }
        n++;
    }
    bv_stmt_reset(s);
    return step < 0 ? step : 0;
}

/* ---- the handler ---- */

typedef struct {
    bv_audit_query_t q;
    json_t *items;
    int64_t next;
} list_t;

static int list_job(bv_tx_t *tx, void *arg)
{
    list_t *l = arg;
    json_array_clear(l->items);
    return bv_audit_query(tx, &l->q, l->items, &l->next);
}

/* Replies 400 naming `param`, and records the attempt. */
static void reject(bv_call_t *c, bv_store_t *st, const char *param, const char *detail)
{
    char actor[192];
    json_t *d = json_pack("{s:s}", "parameter", param);
    bv_principal_actor(&c->principal, actor, sizeof(actor));
    bv_audit_event_t ev = {.actor = actor,
                           .action = "audit.events.list",
                           .resource = "audit:events",
                           .outcome = "invalid",
                           .source_ip = c->client_ip[0] ? c->client_ip : NULL,
                           .request_id = c->request_id[0] ? c->request_id : NULL,
                           .details = d};
    int rc = bv_audit_record(st, &ev);
    if (rc != 0)
        bv_log(BV_LOG_WARN, c->request_id, "audit record failed", "\"error\":\"%s\"", bv_err_name(rc));
    json_decref(d);
    bv_reply_problem(c, BV_EINVALID, detail, param);
}

static int text_param_or_reject(bv_call_t *c, bv_store_t *st, const char *name, size_t max, const char **out)
{
    const char *v = bv_call_query(c, name);
    *out = NULL;
    if (v == NULL)
        return 0;
    if (*v == '\0' || strlen(v) > max) {
        char detail[96];
        snprintf(detail, sizeof(detail), "%s must be 1 to %zu bytes", name, max);
        reject(c, st, name, detail);
        return BV_EINVALID;
    }
    *out = v;
    return 0;
}

static int time_param_or_reject(bv_call_t *c, bv_store_t *st, const char *name, int *has_out, int64_t *us_out)
{
    const char *v = bv_call_query(c, name);
    *has_out = 0;
    if (v == NULL)
        return 0;
    if (bv_time_parse(v, us_out) != 0) {
        char detail[96];
        snprintf(detail, sizeof(detail), "%s must be an RFC 3339 date-time", name);
        reject(c, st, name, detail);
        return BV_EINVALID;
    }
    *has_out = 1;
    return 0;
}

static void on_list_events(bv_call_t *c)
{
    bv_store_t *st = ((bv_app_t *)c->ctx)->store;
    list_t l = {0};
    const char *cursor;
    int64_t limit = DEFAULT_LIMIT;
    int rc;
    json_t *body;

    if (bv_call_require_scope_or_reply(c, "audit:read") != 0)
        return;
    if (text_param_or_reject(c, st, "actor", BV_AUDIT_MAX_ACTOR, &l.q.actor) != 0 ||
        text_param_or_reject(c, st, "action", BV_AUDIT_MAX_ACTION, &l.q.action) != 0 ||
        time_param_or_reject(c, st, "from", &l.q.has_from, &l.q.from_us) != 0 ||
        time_param_or_reject(c, st, "to", &l.q.has_to, &l.q.to_us) != 0)
        return;
    if ((cursor = bv_call_query(c, "cursor")) != NULL &&
        bv_audit_cursor_decode(cursor, &l.q.before_seq) != 0) {
        reject(c, st, "cursor", "cursor is not one this server returned");
        return;
    }
    {
        const char *lv = bv_call_query(c, "limit");
        char *end = NULL;
        long long n = lv != NULL ? strtoll(lv, &end, 10) : DEFAULT_LIMIT;
        if (lv != NULL && (*lv == '\0' || *end != '\0' || n < 1 || n > MAX_LIMIT)) {
            reject(c, st, "limit", "limit must be an integer between 1 and 500");
            return;
        }
        limit = n;
    }
    l.q.limit = (int)limit;
    if ((l.items = json_array()) == NULL) {
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        return;
    }
    if ((rc = bv_store_run_tx(st, 0, list_job, &l)) != 0) {
        bv_log(BV_LOG_ERROR, c->request_id, "audit events query failed", "\"error\":\"%s\"", bv_err_name(rc));
        json_decref(l.items);
        bv_reply_problem(c, rc, NULL, NULL);
        return;
    }
    if (l.next > 0) {
        char cur[BV_AUDIT_CURSOR_LEN + 1];
        bv_audit_cursor_encode(l.next, cur);
        body = json_pack("{s:o, s:s}", "items", l.items, "next_cursor", cur);
    } else {
        body = json_pack("{s:o, s:n}", "items", l.items, "next_cursor");
    }
    if (body == NULL) {
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        return;
    }
    bv_reply_json(c, 200, body);
}

static const bv_route_t routes[] = {
    {"GET", "/v1/audit/events", on_list_events, "audit:read", 0, 0, NULL},
};

int bv_audit_module_routes(bv_app_t *app)
{
    return bv_http_add_routes(app->http, routes, sizeof(routes) / sizeof(routes[0]), app);
}
