/* The HTTP layer: h2o event loops (one per thread, SO_REUSEPORT listeners), TLS with
 * HTTP/2 via ALPN, a route table as data, middleware (request ids, limits, security
 * headers, CORS, authentication), problem+json errors and the hand-off of blocking work
 * to a worker pool. Handlers never see h2o: they get a bv_call_t that owns copies of
 * everything they may read, so a worker can run it after the client went away. */
#ifndef BV_HTTP_HTTP_H
#define BV_HTTP_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "base/json.h"
#include "base/util.h"

typedef struct bv_http bv_http_t;
typedef struct bv_call bv_call_t;

/* ---- principals and authentication ---- */
typedef enum {
    BV_PRINCIPAL_NONE = 0,
    BV_PRINCIPAL_ADMIN,  /* the bootstrap admin token */
    BV_PRINCIPAL_USER,   /* a customer (OAuth access token, sub = user id) */
    BV_PRINCIPAL_CLIENT, /* a client acting for itself (client_credentials) */
    BV_PRINCIPAL_OPERATOR,
} bv_principal_kind_t;

typedef struct {
    bv_principal_kind_t kind;
    char subject[128];   /* user id, client id or "admin" */
    char client_id[128]; /* OAuth client, "" if none */
    char scopes[512];    /* space-separated; the admin principal holds every scope */
    char acr[64];
    char amr[64];        /* space-separated authentication methods */
    int64_t auth_time;   /* seconds, 0 if unknown */
} bv_principal_t;

/* 1 if p holds `scope` (the admin principal holds all scopes). A user principal (a
 * customer's token) only ever holds the customer scopes: openid profile email phone
 * offline_access banking:read banking:write; back-office scopes never count for it. */
int bv_principal_has_scope(const bv_principal_t *p, const char *scope);
/* "admin:admin", "user:<id>", "client:<id>": the actor string used by audit records. */
void bv_principal_actor(const bv_principal_t *p, char *out, size_t n);

/* An authenticator turns the credentials of an `Authorization: Bearer <token>` header into
 * a principal. Returns 0 (authenticated), BV_ENOTFOUND (not my kind of token: try the next
 * authenticator) or BV_EUNAUTHENTICATED (my kind, but invalid/expired: stop). Runs on an
 * event loop: must not block (no disk, no database). */
typedef struct {
    const char *name;
    int (*authenticate)(void *cls, const char *token, size_t len, bv_principal_t *out);
    void *cls;
} bv_authenticator_t;

/* ---- routes ---- */
typedef void (*bv_handler_fn)(bv_call_t *call);

#define BV_ROUTE_ON_LOOP 0x1u  /* run on the event loop (fast, never blocking); default: worker pool */
#define BV_ROUTE_ANY_BODY 0x2u /* accept any request content type (default: JSON only when a body is sent) */
#define BV_ROUTE_FORM 0x4u     /* accept application/x-www-form-urlencoded bodies */
#define BV_ROUTE_NO_LOG 0x8u   /* do not count/log (none today; reserved for probes) */
#define BV_ROUTE_CUSTOMER 0x10u /* only a customer's own token (a user principal): others get 403 */

typedef struct {
    const char *method;  /* "GET", "POST", "PUT", "PATCH", "DELETE" */
    const char *pattern; /* "/v1/accounts/{id}/movements": `{name}` matches one segment */
    bv_handler_fn handler;
    const char *scope;   /* NULL = public; "" = any authenticated principal; else the scope required */
    size_t body_limit;   /* bytes; 0 = the route takes no body */
    unsigned flags;
    /* Optional, for a write route whose common requests wait for no commit: returns 1 when
     * this request will not (decided on the loop from the request alone, cheaply). Such a
     * request runs on the small read pool with GET/HEAD instead of the large write pool,
     * where CPU-bound work competes with many threads parked on commits. */
    int (*is_short)(bv_call_t *c);
} bv_route_t;

/* ---- a call: one request being handled ---- */
#define BV_MAX_PARAMS 8
#define BV_MAX_HEADERS 64

typedef struct {
    const char *name; /* lower case */
    const char *value;
} bv_header_t;

struct bv_call {
    /* request (all memory owned by the call) */
    const bv_route_t *route;
    void *ctx; /* the ctx given with the route */
    const char *method;
    const char *path;  /* raw path without the query string */
    const char *query; /* raw query string without '?', "" if none */
    size_t n_params;
    bv_header_t params[BV_MAX_PARAMS]; /* decoded path parameters */
    size_t n_headers;
    bv_header_t headers[BV_MAX_HEADERS];
    const char *body;
    size_t body_len;
    char request_id[72];
    char client_ip[64];
    bool tls;
    bv_principal_t principal;
    bv_arena_t arena; /* request-scoped allocations, freed with the call */

    /* response (filled by the handler through bv_reply_*) */
    int status;
    const char *content_type;
    bv_buf_t resp_body;
    size_t n_resp_headers;
    bv_header_t resp_headers[16];
    int error_code; /* the BV_E... code behind a problem reply, 0 otherwise */

    bool deferred; /* set by bv_call_defer */
    void *priv;    /* the HTTP layer's own state */
};

/* Deferred replies, for a handler that hands its work to another thread instead of waiting
 * for it (the ledger engine, say): the handler calls bv_call_defer(c) and returns without
 * replying; whoever finishes the work calls bv_call_resume(c, fn, arg) exactly once, from
 * any thread, and fn(c, arg) then runs on the call's event loop, where it replies and frees
 * what it must (it must not block; it runs even when the client has gone). The call and its request memory stay valid until then. A handler on the loop
 * (BV_ROUTE_ON_LOOP) may defer too: nothing of the request then runs on a worker. The
 * server's stop waits for every deferred call to be resumed. */
void bv_call_defer(bv_call_t *c);
void bv_call_resume(bv_call_t *c, void (*fn)(bv_call_t *c, void *arg), void *arg);

/* Path parameter / query parameter (percent-decoded, arena-owned) / request header
 * (name in lower case). NULL when absent. */
const char *bv_call_param(bv_call_t *c, const char *name);
const char *bv_call_query(bv_call_t *c, const char *name);
const char *bv_call_header(bv_call_t *c, const char *name);

/* Replies. Each sets status, content type and body; the last call wins. */
void bv_reply_json(bv_call_t *c, int status, json_t *body); /* steals the reference */
void bv_reply_raw(bv_call_t *c, int status, const char *content_type, const void *data, size_t len);
void bv_reply_empty(bv_call_t *c, int status);
/* RFC 9457 problem: type = BV_PROBLEM_BASE + slug of `code`, status from the registry.
 * `field` (may be NULL) names the offending input; `detail` must not contain secrets. */
void bv_reply_problem(bv_call_t *c, int code, const char *detail, const char *field);
int bv_call_add_header(bv_call_t *c, const char *name, const char *value); /* copies both */

/* Decodes the JSON body with a field spec; on failure replies 400 naming the field and
 * returns non-zero. On success *root_out must be json_decref()'d by the caller. */
int bv_call_decode_json_or_reply(bv_call_t *c, const bv_json_field_t *spec, void *out, json_t **root_out);
/* Parses an integer query parameter within [min,max] (default when absent); replies 400. */
int bv_call_query_int_or_reply(bv_call_t *c, const char *name, int64_t def, int64_t min, int64_t max,
                               int64_t *out);
/* Parses an optional time query parameter (RFC 3339 or YYYY-MM-DD; 0 when absent); replies
 * 400 naming it. */
int bv_call_query_time_or_reply(bv_call_t *c, const char *name, int64_t *out);
/* Checks that the principal holds `scope`; replies 403 otherwise. */
int bv_call_require_scope_or_reply(bv_call_t *c, const char *scope);

/* ---- the server ---- */
/* Creates the server from configuration (listeners are bound by bv_http_start). */
int bv_http_create(const bv_config_t *cfg, bv_http_t **out);
/* Adds routes; `ctx` is handed to their handlers as call->ctx. Routes are copied by
 * pointer: the array must outlive the server (use static arrays). Call before start. */
int bv_http_add_routes(bv_http_t *srv, const bv_route_t *routes, size_t n, void *ctx);
/* Appends an authenticator to the chain (copied). Call before start. */
int bv_http_add_authenticator(bv_http_t *srv, const bv_authenticator_t *auth);
/* Adds a Prometheus text producer appended to GET /metrics (called on a worker). */
int bv_http_add_metrics(bv_http_t *srv, void (*fn)(void *cls, bv_buf_t *out), void *cls);
/* Binds listeners, starts event-loop and worker threads. Logs one "listening" line per
 * listener with its URL (the real port when 0 was configured). 0 or BV_EIO. */
int bv_http_start(bv_http_t *srv);
/* Bound listener URLs ("http://127.0.0.1:8080"), valid after start; NULL if absent. */
const char *bv_http_url(bv_http_t *srv, int tls);
/* Graceful stop: stop accepting, finish in-flight requests (bounded by
 * BOVEDA_SHUTDOWN_TIMEOUT_MS), join threads. Safe to call once after start. */
void bv_http_stop(bv_http_t *srv);
void bv_http_free(bv_http_t *srv);

/* Renders the HTTP layer's metrics (requests, latency, in-flight, worker queue) and every
 * registered producer's into out, in Prometheus text format. */
void bv_http_metrics_render(bv_http_t *srv, bv_buf_t *out);

/* The bootstrap admin credential: an authenticator that accepts exactly `token` (compared
 * in constant time) as the admin principal, who holds every scope. The token is copied. */
int bv_http_add_admin_token(bv_http_t *srv, const char *token);

/* Runs fn(arg) on the worker pool (fire-and-forget background work). 0 or BV_EBUSY. */
int bv_http_submit(bv_http_t *srv, void (*fn)(void *arg), void *arg);

#endif
