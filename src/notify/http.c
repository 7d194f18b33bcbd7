/* GET /v1/notifications and GET /v1/notifications/{id}/deliveries: the delivery log for
 * admins and operators (scope "notify:read"). Responses are never cached. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "http/http.h"
#include "notify/internal.h"

#define DEFAULT_LIMIT 50
#define MAX_LIMIT     200

static const char *const kinds[] = {"movement", "otp", "security_alert", "statement", "test", NULL};
static const char *const statuses[] = {"pending", "retrying", "delivered", "failed", "skipped", NULL};

static int one_of(const char *v, const char *const *list)
{
    for (size_t i = 0; list[i] != NULL; i++)
        if (strcmp(v, list[i]) == 0)
            return 1;
    return 0;
}

typedef struct {
    const char *id;
    json_t *out;
} get_t;

static int get_job(bv_tx_t *tx, void *arg)
{
    get_t *g = arg;
    json_decref(g->out);
    g->out = NULL;
    return notify_log_get(tx, g->id, &g->out);
}

static void on_deliveries(bv_call_t *c)
{
    bv_store_t *st = ((bv_app_t *)c->ctx)->store;
    get_t g = {.id = bv_call_param(c, "id")};
    char lower[BV_UUID_STR_LEN + 1];
    int rc;
    if (bv_call_require_scope_or_reply(c, "notify:read") != 0)
        return;
    if (g.id == NULL || !bv_uuid_valid(g.id)) {
        bv_reply_problem(c, BV_ENOTFOUND, "no such notification", NULL);
        return;
    }
    snprintf(lower, sizeof(lower), "%s", g.id);
    for (char *p = lower; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    g.id = lower;
    rc = bv_store_run_tx(st, 0, get_job, &g);
    if (rc != 0) {
        if (rc != BV_ENOTFOUND)
            bv_log(BV_LOG_ERROR, c->request_id, "notification log query failed", "\"error\":\"%s\"",
                   bv_err_name(rc));
        json_decref(g.out);
        bv_reply_problem(c, rc, rc == BV_ENOTFOUND ? "no such notification" : NULL, NULL);
        return;
    }
    bv_reply_json(c, 200, g.out);
}

typedef struct {
    notify_query_t q;
    json_t *items;
    char next[BV_UUID_STR_LEN + 1];
} list_t;

static int list_job(bv_tx_t *tx, void *arg)
{
    list_t *l = arg;
    json_array_clear(l->items);
    return notify_log_list(tx, &l->q, l->items, l->next);
}

static void on_list(bv_call_t *c)
{
    bv_store_t *st = ((bv_app_t *)c->ctx)->store;
    list_t l = {0};
    int64_t limit = DEFAULT_LIMIT;
    json_t *body;
    int rc;
    if (bv_call_require_scope_or_reply(c, "notify:read") != 0)
        return;
    l.q.customer_id = bv_call_query(c, "customer_id");
    l.q.kind = bv_call_query(c, "kind");
    l.q.status = bv_call_query(c, "status");
    l.q.before_id = bv_call_query(c, "cursor");
    if (l.q.customer_id != NULL && (l.q.customer_id[0] == '\0' || strlen(l.q.customer_id) > 128)) {
        bv_reply_problem(c, BV_EINVALID, "customer_id must be 1 to 128 bytes", "customer_id");
        return;
    }
    if (l.q.kind != NULL && !one_of(l.q.kind, kinds)) {
        bv_reply_problem(c, BV_EINVALID, "kind must be movement, otp, security_alert, statement or test",
                         "kind");
        return;
    }
    if (l.q.status != NULL && !one_of(l.q.status, statuses)) {
        bv_reply_problem(c, BV_EINVALID, "status must be pending, retrying, delivered, failed or skipped",
                         "status");
        return;
    }
    if (l.q.before_id != NULL && !bv_uuid_valid(l.q.before_id)) {
        bv_reply_problem(c, BV_EINVALID, "cursor is not one this server returned", "cursor");
        return;
    }
    if (bv_call_query_int_or_reply(c, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT, &limit) != 0)
        return;
    l.q.limit = (int)limit;
    if ((l.items = json_array()) == NULL) {
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        return;
    }
    if ((rc = bv_store_run_tx(st, 0, list_job, &l)) != 0) {
        bv_log(BV_LOG_ERROR, c->request_id, "notification list failed", "\"error\":\"%s\"", bv_err_name(rc));
        json_decref(l.items);
        bv_reply_problem(c, rc, NULL, NULL);
        return;
    }
    body = l.next[0] ? json_pack("{s:o, s:s}", "items", l.items, "next_cursor", l.next)
                     : json_pack("{s:o, s:n}", "items", l.items, "next_cursor");
    if (body == NULL) {
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        return;
    }
    bv_reply_json(c, 200, body);
}

static const bv_route_t routes[] = {
    {"GET", "/v1/notifications", on_list, "notify:read", 0, 0, NULL},
    {"GET", "/v1/notifications/{id}/deliveries", on_deliveries, "notify:read", 0, 0, NULL},
};

int bv_notify_module_routes(bv_app_t *app)
{
    return bv_http_add_routes(app->http, routes, sizeof(routes) / sizeof(routes[0]), app);
}
