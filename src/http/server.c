/* The server: h2o event loops, listeners, TLS, middleware, dispatch to handlers on the
 * loop or on the worker pool, and graceful shutdown.
 *
 * Hand-off: a handler that may block runs on the pool with a bv_call_t that owns copies of
 * the request. When it finishes, the call is posted back to the owning loop (h2o
 * multithread message). If the client went away meanwhile, h2o disposed the request's
 * pool, whose shared-memory dispose hook cleared `pending->req`: the result is dropped and
 * nothing touches the freed request. */
#include <arpa/inet.h>
#include <errno.h>
#include <h2o.h>
#include <h2o/http2.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/errors.h"
#include "base/log.h"
#include "http/internal.h"

#define MAX_HEADER_BYTES 16384
#define MAX_LISTENERS 2

typedef struct thread thread_t;

typedef struct {
    int tls;
    char host[256];
    int port;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char url[300];
} listener_conf_t;

typedef struct {
    const char *name;
    int (*authenticate)(void *cls, const char *token, size_t len, bv_principal_t *out);
    void *cls;
} auth_entry_t;

typedef struct {
    void (*fn)(void *cls, bv_buf_t *out);
    void *cls;
} producer_t;

struct thread {
    h2o_context_t ctx; /* first: recovered from req->conn->ctx */
    bv_http_t *srv;
    int index;
    h2o_evloop_t *loop;
    h2o_accept_ctx_t accept_ctx[MAX_LISTENERS];
    h2o_socket_t *listeners[MAX_LISTENERS];
    int listen_fds[MAX_LISTENERS];
    h2o_multithread_queue_t *queue;
    h2o_multithread_receiver_t receiver;
    pthread_t tid;
    int in_flight;      /* requests of this loop awaiting a worker */
    int stop_accepting; /* set by a message from bv_http_stop */
    int exit_loop;
};

struct bv_http {
    const bv_config_t *cfg;
    h2o_globalconf_t globalconf;
    h2o_hostconf_t *hostconf;
    SSL_CTX *ssl_ctx;
    router_t router;
    route_metrics_t *metrics; /* router.n + 1 (last: unmatched) */
    auth_entry_t auth[8];
    size_t n_auth;
    producer_t producers[16];
    size_t n_producers;
    listener_conf_t listeners[MAX_LISTENERS];
    size_t n_listeners;
    char **cors_origins;
    size_t n_cors_origins;
    int n_threads;
    thread_t *threads;
    pool_t *pool;      /* blocking work that changes state (POST, PUT, PATCH, DELETE) */
    pool_t *read_pool; /* GET/HEAD: short reads never queue behind commits waiting for fsync */
    _Atomic int64_t in_flight; /* requests received and not yet answered */
    _Atomic int64_t deferred;  /* deferred calls not yet resumed */
    int started, stopped;
    int n_running; /* loop threads created (also on a failed start) */
    sem_t threads_ready; /* posted by each loop thread once it can receive messages */
    char *admin_token;
};

/* Messages posted to a loop: a finished call or a control message, told apart by the
 * common header. */
typedef struct {
    h2o_multithread_message_t super;
    int is_control;
} msg_header_t;

typedef struct {
    h2o_multithread_message_t super; /* first: the message link */
    int is_control;                  /* 0 */
    bv_call_t *call;
    thread_t *thread;
    h2o_req_t *req;       /* NULL once h2o disposed the request (client went away) */
    void **dispose_slot;  /* shared slot in req->pool pointing back to us */
    int64_t started_us;
    const route_entry_t *entry;
    void (*resume)(bv_call_t *c, void *arg); /* of a deferred call: replies on the loop */
    void *resume_arg;
    _Atomic int holds; /* the running handler, and a deferral until resumed: the last one posts */
} pending_t;

typedef struct {
    h2o_multithread_message_t super;
    int is_control; /* 1 */
    int kind;       /* 1 = stop accepting, 2 = exit the loop */
} control_msg_t;

static const char *status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

/* ---- call lifecycle ---- */
static void call_free(bv_call_t *c)
{
    if (c == NULL)
        return;
    bv_buf_free(&c->resp_body);
    bv_arena_free(&c->arena);
    free(c);
}

static int valid_request_id(const char *s, size_t len)
{
    if (len == 0 || len > 64)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
              ch == '_' || ch == '.'))
            return 0;
    }
    return 1;
}

static const char *find_cors_origin(bv_http_t *srv, const char *origin, size_t len)
{
    for (size_t i = 0; i < srv->n_cors_origins; i++)
        if (strlen(srv->cors_origins[i]) == len && memcmp(srv->cors_origins[i], origin, len) == 0)
            return srv->cors_origins[i];
    return NULL;
}

/* Writes the call's response on the loop that owns req, logs it and counts it. */
static void emit(thread_t *th, h2o_req_t *req, bv_call_t *c, route_metrics_t *m, int64_t started_us)
{
    bv_http_t *srv = th->srv;
    h2o_mem_pool_t *pool = &req->pool;
    req->res.status = c->status;
    req->res.reason = status_text(c->status);
    if (c->content_type != NULL)
        h2o_add_header(pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, c->content_type, strlen(c->content_type));
    h2o_add_header_by_str(pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, c->request_id,
                          strlen(c->request_id));
    h2o_add_header(pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_add_header_by_str(pool, &req->res.headers, H2O_STRLIT("x-content-type-options"), 0, NULL, H2O_STRLIT("nosniff"));
    h2o_add_header_by_str(pool, &req->res.headers, H2O_STRLIT("referrer-policy"), 0, NULL, H2O_STRLIT("no-referrer"));
    int own_csp = 0;
    for (size_t i = 0; i < c->n_resp_headers; i++)
        own_csp |= strcmp(c->resp_headers[i].name, "content-security-policy") == 0;
    if (!own_csp) /* a handler's own policy (HTML pages) must include frame-ancestors itself */
        h2o_add_header_by_str(pool, &req->res.headers, H2O_STRLIT("content-security-policy"), 0, NULL,
                              H2O_STRLIT("frame-ancestors 'none'"));
    if (c->tls)
        h2o_add_header_by_str(pool, &req->res.headers, H2O_STRLIT("strict-transport-security"), 0, NULL,
                              H2O_STRLIT("max-age=63072000; includeSubDomains"));
    for (size_t i = 0; i < c->n_resp_headers; i++)
        h2o_add_header_by_str(pool, &req->res.headers, c->resp_headers[i].name, strlen(c->resp_headers[i].name), 0,
                              NULL, h2o_strdup(pool, c->resp_headers[i].value, SIZE_MAX).base,
                              strlen(c->resp_headers[i].value));
    if (th->stop_accepting)
        req->http1_is_persistent = 0;
    int64_t dur = bv_mono_us() - started_us;
    metrics_observe(m, c->status, dur);
    if (!(c->route != NULL && (c->route->flags & BV_ROUTE_NO_LOG)))
        bv_log(c->status >= 500 ? BV_LOG_ERROR : BV_LOG_INFO, c->request_id, "request",
               "\"method\":\"%s\",\"route\":\"%s\",\"status\":%d,\"duration_us\":%lld,\"bytes\":%zu", m->method,
               m->route, c->status, (long long)dur, c->resp_body.len);
    req->res.content_length = c->resp_body.len;
    h2o_send_inline(req, c->resp_body.data ? c->resp_body.data : "", c->resp_body.len);
    atomic_fetch_sub(&srv->in_flight, 1);
}

static void on_req_disposed(void *p)
{
    pending_t **slot = p;
    if (*slot != NULL)
        (*slot)->req = NULL;
}

/* Drops one hold of pd; the last one hands the call to its loop. */
static void release_pending(pending_t *pd)
{
    if (atomic_fetch_sub(&pd->holds, 1) == 1)
        h2o_multithread_send_message(&pd->thread->receiver, &pd->super);
}

static void run_on_worker(void *arg)
{
    pending_t *pd = arg;
    atomic_store(&pd->holds, 1);
    pd->entry->route->handler(pd->call);
    /* the call is still ours: a resume that came meanwhile left the posting to us */
    if (!pd->call->deferred && pd->call->status == 0)
        bv_reply_problem(pd->call, BV_EINTERNAL, NULL, NULL);
    release_pending(pd);
}

void bv_call_defer(bv_call_t *c)
{
    pending_t *pd = c->priv;
    c->deferred = true;
    atomic_fetch_add(&pd->holds, 1);
    atomic_fetch_add(&pd->thread->srv->deferred, 1);
}

void bv_call_resume(bv_call_t *c, void (*fn)(bv_call_t *c, void *arg), void *arg)
{
    pending_t *pd = c->priv;
    bv_http_t *srv = pd->thread->srv;
    pd->resume = fn;
    pd->resume_arg = arg;
    release_pending(pd);
    atomic_fetch_sub(&srv->deferred, 1); /* after the post: stop keeps the loop until here */
}

static void finish_pending(thread_t *th, pending_t *pd)
{
    if (pd->resume != NULL) {
        pd->resume(pd->call, pd->resume_arg);
        if (pd->call->status == 0)
            bv_reply_problem(pd->call, BV_EINTERNAL, NULL, NULL);
    }
    th->in_flight--;
    if (pd->req != NULL) {
        *(pending_t **)pd->dispose_slot = NULL;
        emit(th, pd->req, pd->call, &th->srv->metrics[pd->entry->index], pd->started_us);
    } else {
        /* The client went away: drop the result (the work itself is done and committed). */
        atomic_fetch_sub(&th->srv->in_flight, 1);
        bv_log(BV_LOG_INFO, pd->call->request_id, "client gone before response",
               "\"route\":\"%s\",\"status\":%d", pd->entry->route->pattern, pd->call->status);
    }
    call_free(pd->call);
    free(pd);
}

static void close_listeners(thread_t *th)
{
    for (size_t i = 0; i < th->srv->n_listeners; i++) {
        if (th->listeners[i] != NULL) {
            h2o_socket_read_stop(th->listeners[i]);
            h2o_socket_close(th->listeners[i]);
            th->listeners[i] = NULL;
        }
    }
}

static void on_message(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    thread_t *th = H2O_STRUCT_FROM_MEMBER(thread_t, receiver, receiver);
    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *msg = H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        h2o_linklist_unlink(&msg->link);
        if (((msg_header_t *)msg)->is_control) {
            control_msg_t *ctl = (control_msg_t *)msg;
            if (ctl->kind == 1) {
                th->stop_accepting = 1;
                close_listeners(th);
                h2o_context_request_shutdown(&th->ctx);
            } else {
                th->exit_loop = 1;
            }
            free(ctl);
            continue;
        }
        finish_pending(th, (pending_t *)msg);
    }
}

/* ---- the request path ---- */
static bv_call_t *call_new(void)
{
    bv_call_t *c = calloc(1, sizeof(*c));
    return c;
}

static void reply_now(thread_t *th, h2o_req_t *req, bv_call_t *c, route_metrics_t *m, int64_t started)
{
    emit(th, req, c, m, started);
    call_free(c);
}

static int copy_request(bv_call_t *c, h2o_req_t *req, size_t path_len)
{
    c->method = bv_arena_strndup(&c->arena, req->method.base, req->method.len);
    c->path = bv_arena_strndup(&c->arena, req->path.base, path_len);
    if (req->query_at != SIZE_MAX)
        c->query = bv_arena_strndup(&c->arena, req->path.base + req->query_at + 1, req->path.len - req->query_at - 1);
    else
        c->query = "";
    for (size_t i = 0; i < req->headers.size && c->n_headers < BV_MAX_HEADERS; i++) {
        h2o_header_t *h = &req->headers.entries[i];
        c->headers[c->n_headers].name = bv_arena_strndup(&c->arena, h->name->base, h->name->len);
        c->headers[c->n_headers].value = bv_arena_strndup(&c->arena, h->value.base, h->value.len);
        if (c->headers[c->n_headers].name == NULL || c->headers[c->n_headers].value == NULL)
            return BV_ENOMEM;
        c->n_headers++;
    }
    if (req->entity.base != NULL) {
        char *b = bv_arena_alloc(&c->arena, req->entity.len + 1);
        if (b == NULL)
            return BV_ENOMEM;
        memcpy(b, req->entity.base, req->entity.len);
        b[req->entity.len] = '\0';
        c->body = b;
        c->body_len = req->entity.len;
    }
    if (c->method == NULL || c->path == NULL || c->query == NULL)
        return BV_ENOMEM;
    return 0;
}

static void peer_ip(h2o_req_t *req, char *out, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    out[0] = '\0';
    if (len == 0)
        return;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)n);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)n);
}

static int is_json_type(const char *v, size_t len)
{
    static const char j[] = "application/json";
    if (len < sizeof(j) - 1 || strncasecmp(v, j, sizeof(j) - 1) != 0)
        return 0;
    return len == sizeof(j) - 1 || v[sizeof(j) - 1] == ';' || v[sizeof(j) - 1] == ' ';
}

static int is_form_type(const char *v, size_t len)
{
    static const char f[] = "application/x-www-form-urlencoded";
    if (len < sizeof(f) - 1 || strncasecmp(v, f, sizeof(f) - 1) != 0)
        return 0;
    return len == sizeof(f) - 1 || v[sizeof(f) - 1] == ';' || v[sizeof(f) - 1] == ' ';
}

/* Authenticates the call against the route's requirement. Replies and returns non-zero on
 * failure. */
static int authenticate_or_reply(bv_http_t *srv, bv_call_t *c, const bv_route_t *route)
{
    const char *authz = bv_call_header(c, "authorization");
    int rc = BV_ENOTFOUND;
    if (authz != NULL && strncasecmp(authz, "Bearer ", 7) == 0) {
        const char *tok = authz + 7;
        while (*tok == ' ')
            tok++;
        for (size_t i = 0; i < srv->n_auth && rc == BV_ENOTFOUND; i++)
            rc = srv->auth[i].authenticate(srv->auth[i].cls, tok, strlen(tok), &c->principal);
    }
    if (rc == 0) {
        if (route->scope[0] != '\0' && !bv_principal_has_scope(&c->principal, route->scope)) {
            char hdr[256];
            snprintf(hdr, sizeof(hdr), "Bearer realm=\"boveda\", error=\"insufficient_scope\", scope=\"%s\"",
                     route->scope);
            bv_call_add_header(c, "www-authenticate", hdr);
            return bv_call_require_scope_or_reply(c, route->scope);
        }
        if ((route->flags & BV_ROUTE_CUSTOMER) &&
            (c->principal.kind != BV_PRINCIPAL_USER || c->principal.subject[0] == '\0')) {
            bv_reply_problem(c, BV_EFORBIDDEN, "this route is for customers: use a customer's access token", NULL);
            return BV_EFORBIDDEN;
        }
        return 0;
    }
    memset(&c->principal, 0, sizeof(c->principal));
    if (authz == NULL) {
        bv_call_add_header(c, "www-authenticate", "Bearer realm=\"boveda\"");
        bv_reply_problem(c, BV_EUNAUTHENTICATED, "a bearer access token is required", NULL);
    } else {
        bv_call_add_header(c, "www-authenticate",
                           "Bearer realm=\"boveda\", error=\"invalid_token\", error_description=\"the access token "
                           "is invalid or expired\"");
        bv_reply_problem(c, BV_EUNAUTHENTICATED, "the access token is invalid or expired", NULL);
    }
    return BV_EUNAUTHENTICATED;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    thread_t *th = (thread_t *)req->conn->ctx;
    bv_http_t *srv = th->srv;
    int64_t started = bv_mono_us();
    route_metrics_t *unmatched = &srv->metrics[srv->router.n];
    bv_call_t *c = call_new();
    if (c == NULL)
        return -1;
    atomic_fetch_add(&srv->in_flight, 1);
    c->tls = req->scheme == &H2O_URL_SCHEME_HTTPS;
    peer_ip(req, c->client_ip, sizeof(c->client_ip));
    size_t path_len = req->query_at != SIZE_MAX ? req->query_at : req->path.len;

    /* request id: accepted when valid, generated otherwise */
    ssize_t ri = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-request-id"), -1);
    int bad_request_id = 0;
    if (ri >= 0 && valid_request_id(req->headers.entries[ri].value.base, req->headers.entries[ri].value.len)) {
        memcpy(c->request_id, req->headers.entries[ri].value.base, req->headers.entries[ri].value.len);
        c->request_id[req->headers.entries[ri].value.len] = '\0';
    } else {
        bv_uuid7(c->request_id);
        bad_request_id = ri >= 0;
    }
    if (copy_request(c, req, path_len) != 0) {
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        goto reply;
    }
    if (bad_request_id) {
        bv_reply_problem(c, BV_EREQUESTID, "X-Request-Id must be 1 to 64 characters of A-Z a-z 0-9 . _ -",
                         "X-Request-Id");
        goto reply;
    }
    size_t header_bytes = 0;
    for (size_t i = 0; i < req->headers.size; i++)
        header_bytes += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    if (req->headers.size > BV_MAX_HEADERS || header_bytes > MAX_HEADER_BYTES) {
        bv_reply_problem(c, BV_EHEADERS, "at most 64 header fields and 16384 bytes of headers are accepted", NULL);
        goto reply;
    }

    /* CORS: only for configured origins */
    const char *origin_ok = NULL;
    ssize_t oi = h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1);
    if (oi >= 0) {
        origin_ok = find_cors_origin(srv, req->headers.entries[oi].value.base, req->headers.entries[oi].value.len);
        if (origin_ok != NULL) {
            bv_call_add_header(c, "access-control-allow-origin", origin_ok);
            bv_call_add_header(c, "access-control-allow-credentials", "true");
            bv_call_add_header(c, "access-control-expose-headers", "X-Request-Id, Location, WWW-Authenticate");
        }
        bv_call_add_header(c, "vary", "Origin");
    }
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("OPTIONS")) && oi >= 0 &&
        h2o_find_header_by_str(&req->headers, H2O_STRLIT("access-control-request-method"), -1) >= 0) {
        if (origin_ok == NULL) {
            bv_reply_problem(c, BV_EFORBIDDEN, "cross-origin requests from this origin are not allowed", NULL);
        } else {
            bv_call_add_header(c, "access-control-allow-methods", "GET, POST, PUT, PATCH, DELETE");
            bv_call_add_header(c, "access-control-allow-headers",
                               "Authorization, Content-Type, Idempotency-Key, X-Request-Id");
            bv_call_add_header(c, "access-control-max-age", "600");
            bv_reply_empty(c, 204);
        }
        goto reply;
    }

    const route_entry_t *entry = NULL;
    char allow[128];
    match_t mt = router_match(&srv->router, req->method.base, req->method.len, req->path.base, path_len, &c->arena,
                              &entry, c->params, &c->n_params, allow, sizeof(allow));
    if (mt == MATCH_NO_PATH) {
        bv_reply_problem(c, BV_EROUTE, "no route matches this path", NULL);
        goto reply;
    }
    if (mt == MATCH_NO_METHOD) {
        bv_call_add_header(c, "allow", allow);
        bv_reply_problem(c, BV_EMETHOD, "this method is not allowed on this path", NULL);
        goto reply;
    }
    c->route = entry->route;
    c->ctx = entry->ctx;
    route_metrics_t *m = &srv->metrics[entry->index];

    /* body: size first, then type */
    if (req->entity.base != NULL && req->entity.len > 0) {
        if (req->entity.len > entry->route->body_limit) {
            char detail[128];
            snprintf(detail, sizeof(detail), "this route accepts at most %zu bytes of body", entry->route->body_limit);
            bv_reply_problem(c, BV_ETOOLARGE, detail, NULL);
            goto reply_route;
        }
        if (!(entry->route->flags & BV_ROUTE_ANY_BODY)) {
            ssize_t ct = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
            const char *v = ct >= 0 ? req->headers.entries[ct].value.base : "";
            size_t vl = ct >= 0 ? req->headers.entries[ct].value.len : 0;
            int ok = is_json_type(v, vl) || ((entry->route->flags & BV_ROUTE_FORM) && is_form_type(v, vl));
            if (!ok) {
                bv_reply_problem(c, BV_EMEDIA,
                                 (entry->route->flags & BV_ROUTE_FORM)
                                     ? "Content-Type must be application/x-www-form-urlencoded or application/json"
                                     : "Content-Type must be application/json",
                                 "Content-Type");
                goto reply_route;
            }
        }
    }
    if (entry->route->scope != NULL && authenticate_or_reply(srv, c, entry->route) != 0)
        goto reply_route;

    if (th->stop_accepting && !(entry->route->flags & BV_ROUTE_ON_LOOP)) {
        bv_reply_problem(c, BV_ESHUTDOWN, "the server is shutting down", NULL);
        goto reply_route;
    }
    pending_t *pd = calloc(1, sizeof(*pd));
    if (pd == NULL) {
        bv_reply_problem(c, BV_ENOMEM, NULL, NULL);
        goto reply_route;
    }
    pd->call = c;
    pd->thread = th;
    pd->req = req;
    pd->started_us = started;
    pd->entry = entry;
    c->priv = pd;
    if (entry->route->flags & BV_ROUTE_ON_LOOP) {
        atomic_store(&pd->holds, 1);
        entry->route->handler(c);
        if (!c->deferred) {
            free(pd);
            if (c->status == 0)
                bv_reply_problem(c, BV_EINTERNAL, NULL, NULL);
            goto reply_route;
        }
    }
    pd->dispose_slot = h2o_mem_alloc_shared(&req->pool, sizeof(pending_t *), on_req_disposed);
    *(pending_t **)pd->dispose_slot = pd;
    th->in_flight++;
    if (c->deferred) {
        release_pending(pd); /* posts now if the resume came already (read on this loop later) */
        return 0;
    }
    int is_read = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
                  h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")) ||
                  (entry->route->is_short != NULL && entry->route->is_short(c));
    if (pool_submit(is_read ? srv->read_pool : srv->pool, run_on_worker, pd) != 0) {
        th->in_flight--;
        *(pending_t **)pd->dispose_slot = NULL;
        free(pd);
        bv_call_add_header(c, "retry-after", "1");
        bv_reply_problem(c, BV_EBUSY, "too many requests are queued; retry shortly", NULL);
        goto reply_route;
    }
    return 0;

reply_route:
    reply_now(th, req, c, m, started);
    return 0;
reply:
    reply_now(th, req, c, unmatched, started);
    return 0;
}

/* ---- listeners and threads ---- */
static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    h2o_accept_ctx_t *actx = listener->data;
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock != NULL)
        h2o_accept(actx, sock);
}

/* SO_REUSEPORT would let a second Bóveda (or anything of the same user) share the port
 * silently, so a fixed port is first claimed by a plain bind that fails when it is taken. */
static int check_port_free(listener_conf_t *l)
{
    int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), on = 1, rc = 0;
    if (fd < 0)
        return BV_EIO;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (bind(fd, (struct sockaddr *)&l->addr, l->addr_len) != 0) {
        bv_log_error("cannot listen", "\"address\":\"%s:%d\",\"error\":\"%s\"", l->host, l->port, strerror(errno));
        rc = BV_EIO;
    }
    close(fd);
    return rc;
}

static int open_listener(listener_conf_t *l, int *fd_out)
{
    int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), on = 1;
    if (fd < 0)
        return BV_EIO;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    if (bind(fd, (struct sockaddr *)&l->addr, l->addr_len) != 0 || listen(fd, 1024) != 0) {
        bv_log_error("cannot listen", "\"address\":\"%s:%d\",\"error\":\"%s\"", l->host, l->port, strerror(errno));
        close(fd);
        return BV_EIO;
    }
    if (l->port == 0) { /* learn the port the kernel chose; the other threads bind it too */
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        getsockname(fd, (struct sockaddr *)&ss, &sl);
        l->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                : ((struct sockaddr_in6 *)&ss)->sin6_port);
        if (l->addr.ss_family == AF_INET)
            ((struct sockaddr_in *)&l->addr)->sin_port = htons((uint16_t)l->port);
        else
            ((struct sockaddr_in6 *)&l->addr)->sin6_port = htons((uint16_t)l->port);
    }
    *fd_out = fd;
    return 0;
}

/* Everything h2o of a loop is created on the loop's own thread: h2o keeps per-thread
 * state (the socket buffers' recycling allocator is __thread), and an object made on one
 * thread and used on another would return its memory to the wrong thread's free list. */
static void *thread_main(void *arg)
{
    thread_t *th = arg;
    bv_http_t *srv = th->srv;
    pthread_setname_np(pthread_self(), "bv-http-loop");
    th->loop = h2o_evloop_create();
    h2o_context_init(&th->ctx, th->loop, &srv->globalconf);
    for (size_t i = 0; i < srv->n_listeners; i++) {
        th->accept_ctx[i].ctx = &th->ctx;
        th->accept_ctx[i].hosts = srv->globalconf.hosts;
        th->accept_ctx[i].ssl_ctx = srv->listeners[i].tls ? srv->ssl_ctx : NULL;
    }
    th->queue = h2o_multithread_create_queue(th->loop);
    h2o_multithread_register_receiver(th->queue, &th->receiver, on_message);
    sem_post(&srv->threads_ready); /* from here on messages may be posted to this loop */
    for (size_t i = 0; i < srv->n_listeners; i++) {
        th->listeners[i] = h2o_evloop_socket_create(th->loop, th->listen_fds[i], H2O_SOCKET_FLAG_DONT_READ);
        th->listeners[i]->data = &th->accept_ctx[i];
        h2o_socket_read_start(th->listeners[i], on_accept);
    }
    while (!th->exit_loop)
        h2o_evloop_run(th->loop, 100);
    /* no worker posts any more (the pool is joined before the exit message is sent) */
    close_listeners(th);
    h2o_multithread_unregister_receiver(th->queue, &th->receiver);
    h2o_multithread_destroy_queue(th->queue);
    th->queue = NULL;
    h2o_evloop_run(th->loop, 0); /* completes the deferred socket closes on this thread */
    return NULL;
}

static int resolve(listener_conf_t *l, const char *hostport, int tls)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res;
    char port[16];
    if (bv_config_split_hostport(hostport, l->host, &l->port) != 0)
        return BV_EINVALID;
    snprintf(port, sizeof(port), "%d", l->port);
    if (getaddrinfo(l->host, port, &hints, &res) != 0) {
        bv_log_error("cannot resolve listen address", "\"address\":\"%s\"", l->host);
        return BV_EINVALID;
    }
    memcpy(&l->addr, res->ai_addr, res->ai_addrlen);
    l->addr_len = res->ai_addrlen;
    freeaddrinfo(res);
    l->tls = tls;
    return 0;
}

static int setup_tls(bv_http_t *srv)
{
    const bv_config_t *cfg = srv->cfg;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return BV_ECRYPTO;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION);
    /* TLS 1.2: AEAD suites with forward secrecy only (TLS 1.3 suites are all modern). */
    SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                 "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                 "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305");
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
        bv_log_error("BOVEDA_TLS_CERT: cannot load the certificate chain", "\"path\":\"%s\"", cfg->tls_cert);
        SSL_CTX_free(ctx);
        return BV_ECONFIG;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        bv_log_error("BOVEDA_TLS_KEY: cannot load the private key or it does not match the certificate", NULL);
        SSL_CTX_free(ctx);
        return BV_ECONFIG;
    }
    h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
    srv->ssl_ctx = ctx;
    return 0;
}

int bv_http_create(const bv_config_t *cfg, bv_http_t **out)
{
    bv_http_t *srv = calloc(1, sizeof(*srv));
    int rc = BV_ENOMEM;
    *out = NULL;
    if (srv == NULL)
        return BV_ENOMEM;
    srv->cfg = cfg;
    sem_init(&srv->threads_ready, 0, 0);
    h2o_config_init(&srv->globalconf);
    srv->globalconf.server_name = h2o_iovec_init(H2O_STRLIT("boveda"));
    srv->globalconf.max_request_entity_size = (size_t)cfg->max_body;
    srv->globalconf.http1.req_timeout = (uint64_t)cfg->req_timeout_ms;
    srv->globalconf.http2.idle_timeout = (uint64_t)cfg->req_timeout_ms * 3;
    srv->globalconf.handshake_timeout = (uint64_t)cfg->req_timeout_ms;
    srv->globalconf.http1.upgrade_to_http2 = 0;
    srv->globalconf.http2.graceful_shutdown_timeout = (uint64_t)cfg->shutdown_timeout_ms;
    srv->hostconf = h2o_config_register_host(&srv->globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(srv->hostconf, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(pathconf, sizeof(*handler));
    handler->on_req = on_req;

    if (cfg->http_listen[0] != '\0') {
        if ((rc = resolve(&srv->listeners[srv->n_listeners], cfg->http_listen, 0)) != 0)
            goto out;
        srv->n_listeners++;
    }
    if (cfg->https_listen[0] != '\0') {
        if ((rc = resolve(&srv->listeners[srv->n_listeners], cfg->https_listen, 1)) != 0)
            goto out;
        srv->n_listeners++;
        if ((rc = setup_tls(srv)) != 0)
            goto out;
    }
    if (srv->n_listeners == 0) { /* `boveda worker` needs none; a server does */
        bv_log_error("invalid setting", "\"setting\":\"BOVEDA_HTTP_LISTEN\",\"reason\":\"no listener "
                                        "configured (HTTP and HTTPS both empty)\"");
        rc = BV_ECONFIG;
        goto out;
    }
    /* CORS allow-list */
    for (const char *p = cfg->cors_origins; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ')
            e++;
        if (e > p) {
            char **n = realloc(srv->cors_origins, (srv->n_cors_origins + 1) * sizeof(char *));
            if (n == NULL)
                goto out;
            srv->cors_origins = n;
            srv->cors_origins[srv->n_cors_origins++] = strndup(p, (size_t)(e - p));
        }
        p = e;
    }
    if (cfg->admin_token[0] != '\0' && (rc = bv_http_add_admin_token(srv, cfg->admin_token)) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0)
        bv_http_free(srv);
    else
        *out = srv;
    return rc;
}

int bv_http_add_routes(bv_http_t *srv, const bv_route_t *routes, size_t n, void *ctx)
{
    for (size_t i = 0; i < n; i++) {
        int rc = router_add(&srv->router, &routes[i], ctx);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int bv_http_add_authenticator(bv_http_t *srv, const bv_authenticator_t *auth)
{
    if (srv->n_auth == sizeof(srv->auth) / sizeof(srv->auth[0]))
        return BV_ENOMEM;
    srv->auth[srv->n_auth++] = (auth_entry_t){auth->name, auth->authenticate, auth->cls};
    return 0;
}

static int admin_authenticate(void *cls, const char *token, size_t len, bv_principal_t *out)
{
    bv_http_t *srv = cls;
    size_t al = strlen(srv->admin_token);
    /* Anything but the admin token goes on to the next authenticator (JWTs, the core
     * contract's token, ...); the chain answers 401 when nobody claims it. */
    if (len != al || !bv_ct_equal(token, len, srv->admin_token, al))
        return BV_ENOTFOUND;
    memset(out, 0, sizeof(*out));
    out->kind = BV_PRINCIPAL_ADMIN;
    snprintf(out->subject, sizeof(out->subject), "admin");
    snprintf(out->scopes, sizeof(out->scopes), "*");
    return 0;
}

int bv_http_add_admin_token(bv_http_t *srv, const char *token)
{
    if (srv->admin_token != NULL)
        return BV_EINVALID;
    srv->admin_token = strdup(token);
    if (srv->admin_token == NULL)
        return BV_ENOMEM;
    bv_authenticator_t a = {"admin-token", admin_authenticate, srv};
    return bv_http_add_authenticator(srv, &a);
}

int bv_http_add_metrics(bv_http_t *srv, void (*fn)(void *cls, bv_buf_t *out), void *cls)
{
    if (srv->n_producers == sizeof(srv->producers) / sizeof(srv->producers[0]))
        return BV_ENOMEM;
    srv->producers[srv->n_producers++] = (producer_t){fn, cls};
    return 0;
}

void bv_http_metrics_render(bv_http_t *srv, bv_buf_t *out)
{
    metrics_render(srv->metrics, srv->router.n + 1, out);
    bv_buf_printf(out,
                  "# HELP boveda_http_in_flight_requests Requests received and not yet answered.\n"
                  "# TYPE boveda_http_in_flight_requests gauge\nboveda_http_in_flight_requests %lld\n"
                  "# HELP boveda_worker_queue_depth Jobs waiting for a worker thread, by pool.\n"
                  "# TYPE boveda_worker_queue_depth gauge\nboveda_worker_queue_depth{pool=\"write\"} %zu\n"
                  "boveda_worker_queue_depth{pool=\"read\"} %zu\n"
                  "# HELP boveda_worker_busy Worker threads running a job, by pool.\n"
                  "# TYPE boveda_worker_busy gauge\nboveda_worker_busy{pool=\"write\"} %zu\n"
                  "boveda_worker_busy{pool=\"read\"} %zu\n",
                  (long long)atomic_load(&srv->in_flight), srv->pool ? pool_depth(srv->pool) : 0,
                  srv->read_pool ? pool_depth(srv->read_pool) : 0, srv->pool ? pool_busy(srv->pool) : 0,
                  srv->read_pool ? pool_busy(srv->read_pool) : 0);
    for (size_t i = 0; i < srv->n_producers; i++)
        srv->producers[i].fn(srv->producers[i].cls, out);
}

int bv_http_submit(bv_http_t *srv, void (*fn)(void *arg), void *arg) { return pool_submit(srv->pool, fn, arg); }

const char *bv_http_url(bv_http_t *srv, int tls)
{
    for (size_t i = 0; i < srv->n_listeners; i++)
        if (srv->listeners[i].tls == tls)
            return srv->listeners[i].url;
    return NULL;
}

int bv_http_start(bv_http_t *srv)
{
    int rc;
    srv->n_threads = bv_config_threads(srv->cfg);
    /* h2o refuses larger bodies from their Content-Length before reading them: no route
     * takes more than its own limit, and none more than BOVEDA_MAX_BODY. */
    size_t largest = 0;
    for (size_t i = 0; i < srv->router.n; i++)
        if (srv->router.entries[i].route->body_limit > largest)
            largest = srv->router.entries[i].route->body_limit;
    srv->globalconf.max_request_entity_size = largest < (size_t)srv->cfg->max_body ? largest : (size_t)srv->cfg->max_body;
    if (srv->globalconf.max_request_entity_size == 0)
        srv->globalconf.max_request_entity_size = 1;
    srv->metrics = calloc(srv->router.n + 1, sizeof(route_metrics_t));
    srv->threads = calloc((size_t)srv->n_threads, sizeof(thread_t));
    if (srv->metrics == NULL || srv->threads == NULL)
        return BV_ENOMEM;
    for (size_t i = 0; i < srv->router.n; i++) {
        srv->metrics[i].route = srv->router.entries[i].route->pattern;
        srv->metrics[i].method = srv->router.entries[i].route->method;
    }
    srv->metrics[srv->router.n].route = "unmatched";
    srv->metrics[srv->router.n].method = "-";
    if ((rc = pool_create("bv-http-write", bv_config_workers(srv->cfg), (size_t)srv->cfg->queue_limit, &srv->pool)) != 0 ||
        (rc = pool_create("bv-http-read", bv_config_read_workers(srv->cfg), (size_t)srv->cfg->queue_limit,
                               &srv->read_pool)) != 0)
        return rc;
    for (int t = 0; t < srv->n_threads; t++) {
        thread_t *th = &srv->threads[t];
        th->srv = srv;
        th->index = t;
        for (size_t i = 0; i < srv->n_listeners; i++)
            th->listen_fds[i] = -1;
    }
    for (size_t i = 0; i < srv->n_listeners; i++)
        if (srv->listeners[i].port != 0 && (rc = check_port_free(&srv->listeners[i])) != 0)
            return rc;
    for (int t = 0; t < srv->n_threads; t++) {
        thread_t *th = &srv->threads[t];
        for (size_t i = 0; i < srv->n_listeners; i++)
            if ((rc = open_listener(&srv->listeners[i], &th->listen_fds[i])) != 0)
                return rc;
    }
    for (size_t i = 0; i < srv->n_listeners; i++) {
        listener_conf_t *l = &srv->listeners[i];
        int v6 = strchr(l->host, ':') != NULL;
        char url[sizeof(l->url)];
        snprintf(url, sizeof(url), "%s://%s%.256s%s:%d", l->tls ? "https" : "http", v6 ? "[" : "", l->host,
                 v6 ? "]" : "", l->port);
        memcpy(l->url, url, sizeof(url));
    }
    for (int t = 0; t < srv->n_threads; t++) {
        if (pthread_create(&srv->threads[t].tid, NULL, thread_main, &srv->threads[t]) != 0)
            return BV_EINTERNAL;
        srv->n_running++;
    }
    for (int t = 0; t < srv->n_threads; t++)
        while (sem_wait(&srv->threads_ready) != 0)
            ;
    srv->started = 1;
    for (size_t i = 0; i < srv->n_listeners; i++)
        bv_log_info("listening", "\"url\":\"%s\",\"tls\":%s,\"threads\":%d", srv->listeners[i].url,
                    srv->listeners[i].tls ? "true" : "false", srv->n_threads);
    return 0;
}

static void post_control(thread_t *th, int kind)
{
    control_msg_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return;
    m->is_control = 1;
    m->kind = kind;
    h2o_multithread_send_message(&th->receiver, &m->super);
}

/* Stops what a start that failed half-way left running: loop threads and the pool. */
static void stop_partial(bv_http_t *srv)
{
    for (int t = 0; t < srv->n_running; t++) /* each must be able to receive first */
        while (sem_wait(&srv->threads_ready) != 0)
            ;
    for (int t = 0; t < srv->n_running; t++)
        post_control(&srv->threads[t], 2);
    for (int t = 0; t < srv->n_running; t++)
        pthread_join(srv->threads[t].tid, NULL);
    srv->n_running = 0;
    pool_stop(srv->pool);
    pool_stop(srv->read_pool);
}

void bv_http_stop(bv_http_t *srv)
{
    if (srv == NULL || srv->stopped)
        return;
    if (!srv->started) {
        stop_partial(srv);
        return;
    }
    srv->stopped = 1;
    bv_log_info("stopping", "\"in_flight\":%lld", (long long)atomic_load(&srv->in_flight));
    for (int t = 0; t < srv->n_threads; t++)
        post_control(&srv->threads[t], 1);
    int64_t deadline = bv_mono_us() + srv->cfg->shutdown_timeout_ms * 1000;
    while (atomic_load(&srv->in_flight) > 0 && bv_mono_us() < deadline)
        usleep(10000);
    if (atomic_load(&srv->in_flight) > 0)
        bv_log_warn("shutdown deadline reached with requests in flight", "\"in_flight\":%lld",
                    (long long)atomic_load(&srv->in_flight));
    /* Workers finish what they run; their results are posted to loops still running. */
    pool_stop(srv->pool);
    pool_stop(srv->read_pool);
    /* so are the resumes of deferred calls: whoever took them on (the ledger engine, say)
     * finishes its queue, so this wait ends */
    while (atomic_load(&srv->deferred) > 0)
        usleep(1000);
    for (int t = 0; t < srv->n_threads; t++)
        post_control(&srv->threads[t], 2);
    for (int t = 0; t < srv->n_threads; t++)
        pthread_join(srv->threads[t].tid, NULL);
    srv->n_running = 0;
}

void bv_http_free(bv_http_t *srv)
{
    if (srv == NULL)
        return;
    if (!srv->stopped && !srv->started)
        stop_partial(srv);
    /* Each loop thread destroyed its own queue. The contexts and evloops are not disposed:
     * idle keep-alive connections still reference them (h2o asserts on disposing a context
     * with live timers) and the process is about to exit. */
    pool_free(srv->pool);
    pool_free(srv->read_pool);
    router_free(&srv->router);
    for (size_t i = 0; i < srv->n_cors_origins; i++)
        free(srv->cors_origins[i]);
    free(srv->cors_origins);
    if (srv->admin_token != NULL) {
        memset(srv->admin_token, 0, strlen(srv->admin_token));
        free(srv->admin_token);
    }
    if (srv->ssl_ctx != NULL)
        SSL_CTX_free(srv->ssl_ctx);
    free(srv->metrics);
    free(srv->threads);
    sem_destroy(&srv->threads_ready);
    h2o_config_dispose(&srv->globalconf);
    free(srv);
}
