/* The HTTP layer driven over real loopback sockets: routing, middleware, limits, the
 * worker hand-off when clients disconnect mid-request (run under ASan in CI), slow
 * clients, and graceful shutdown with requests in flight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "http/http.h"
#include "http/internal.h"

static atomic_int slow_runs;

static void on_slow(bv_call_t *c)
{
    usleep(100000);
    atomic_fetch_add(&slow_runs, 1);
    bv_reply_json(c, 200, json_pack("{s:s}", "slow", "done"));
}

static void on_fast(bv_call_t *c) { bv_reply_raw(c, 200, "text/plain", "fast", 4); }

/* /hold keeps a write-pool worker until released; /classify is short when its body says so */
static atomic_int hold_release, holding;
static void on_hold(bv_call_t *c)
{
    atomic_fetch_add(&holding, 1);
    for (int i = 0; i < 300 && !atomic_load(&hold_release); i++)
        usleep(10000);
    atomic_fetch_sub(&holding, 1);
    bv_reply_raw(c, 200, "text/plain", "held", 4);
}
static int classify_short(bv_call_t *c) { return c->body != NULL && strstr(c->body, "short") != NULL; }

/* /defer (on the loop) and /defer-worker (on a worker) defer their reply; a resumer thread
 * resumes every deferred call once `defer_release` is set */
static atomic_int defer_release, deferred_now, resumed_on_loop, resumes_run;
static void defer_reply(bv_call_t *c, void *arg)
{
    char name[16] = "";
    pthread_getname_np(pthread_self(), name, sizeof(name));
    if (strcmp(name, "bv-http-loop") == 0)
        atomic_fetch_add(&resumed_on_loop, 1);
    atomic_fetch_add(&resumes_run, 1);
    bv_reply_raw(c, 200, "text/plain", (const char *)arg, strlen(arg));
}
static void *resumer(void *arg)
{
    bv_call_t *c = arg;
    while (!atomic_load(&defer_release))
        usleep(2000);
    atomic_fetch_sub(&deferred_now, 1);
    bv_call_resume(c, defer_reply, "resumed");
    return NULL;
}
/* resumed before the handler even returns */
static void on_defer_now(bv_call_t *c)
{
    bv_call_defer(c);
    bv_call_resume(c, defer_reply, "at once");
    usleep(20000); /* the handler still runs: the call must not be answered (and freed) yet */
    assert_string_equal(c->method, "GET");
}

static void on_defer(bv_call_t *c)
{
    pthread_t t;
    bv_call_defer(c);
    atomic_fetch_add(&deferred_now, 1);
    pthread_create(&t, NULL, resumer, c);
    pthread_detach(t);
}

typedef struct {
    const char *name;
    int64_t n;
} echo_t;

static void on_echo(bv_call_t *c)
{
    static const bv_json_field_t spec[] = {
        {"name", BV_JSON_STRING, BV_JSON_REQUIRED, 1, 20, offsetof(echo_t, name), NULL},
        {"n", BV_JSON_INT, 0, 0, 10, offsetof(echo_t, n), NULL},
        BV_JSON_END,
    };
    echo_t e = {0};
    json_t *root = NULL;
    if (bv_call_decode_json_or_reply(c, spec, &e, &root) != 0)
        return;
    bv_reply_json(c, 201,
                  json_pack("{s:s,s:I,s:s,s:s}", "name", e.name, "n", (json_int_t)e.n, "id", bv_call_param(c, "id"),
                            "q", bv_call_query(c, "q") ? bv_call_query(c, "q") : ""));
    json_decref(root);
}

static const bv_route_t routes[] = {
    {"GET", "/slow", on_slow, NULL, 0, 0, NULL},
    {"POST", "/hold", on_hold, NULL, 100, 0, NULL},
    {"POST", "/classify", on_fast, NULL, 100, 0, classify_short},
    {"GET", "/fast", on_fast, NULL, 0, BV_ROUTE_ON_LOOP, NULL},
    {"GET", "/defer", on_defer, NULL, 0, BV_ROUTE_ON_LOOP, NULL},
    {"GET", "/defer-worker", on_defer, NULL, 0, 0, NULL},
    {"GET", "/defer-now", on_defer_now, NULL, 0, BV_ROUTE_ON_LOOP, NULL},
    {"GET", "/defer-now-worker", on_defer_now, NULL, 0, 0, NULL},
    {"POST", "/things/{id}/echo", on_echo, "things:write", 100, 0, NULL},
    {"GET", "/things/{id}/echo", on_fast, NULL, 0, BV_ROUTE_ON_LOOP, NULL},
    /* the largest route limit (1000) is the transport's cap: bodies between 100 and 1000
     * bytes reach the echo route's own check */
    {"PUT", "/things/{id}/echo", on_echo, "things:write", 1000, 0, NULL},
};

static const char *TOKEN = "test-admin-token-0123456789abcdefghijkl";
static bv_config_t *cfg;
static bv_http_t *srv;
static int port;

static int setup(void **state)
{
    (void)state;
    char err[256];
    setenv("BOVEDA_HTTP_LISTEN", "127.0.0.1:0", 1);
    setenv("BOVEDA_THREADS", "2", 1);
    setenv("BOVEDA_WORKERS", "4", 1);
    setenv("BOVEDA_REQUEST_TIMEOUT_MS", "300", 1);
    setenv("BOVEDA_ADMIN_TOKEN", TOKEN, 1);
    setenv("BOVEDA_CORS_ORIGINS", "https://app.example", 1);
    if (bv_config_load(NULL, &cfg, err, sizeof(err)) != 0)
        return -1;
    if (bv_http_create(cfg, &srv) != 0 || bv_http_add_routes(srv, routes, sizeof(routes) / sizeof(routes[0]), NULL) != 0 || bv_http_start(srv) != 0)
        return -1;
    const char *url = bv_http_url(srv, 0);
    port = atoi(strrchr(url, ':') + 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    bv_http_stop(srv);
    bv_http_free(srv);
    bv_config_free(cfg);
    return 0;
}

/* A connection to the server, or -1 (said on stderr). No cmocka assertion here or in
 * roundtrip: client threads call them, and an assertion failing off the test's thread
 * exits 255 without a word. */
static int connect_local(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        perror("connect_local");
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Sends a raw request and reads the whole response (until the server closes or timeout);
 * when it cannot send, a text saying so, which no test's expectation matches. */
static char *roundtrip(const char *raw, int timeout_ms)
{
    int fd = connect_local();
    size_t len = strlen(raw);
    if (fd < 0 || write(fd, raw, len) != (ssize_t)len) {
        if (fd >= 0)
            close(fd);
        return strdup("(roundtrip: could not send the request)");
    }
    size_t cap = 65536, n = 0;
    char *buf = calloc(1, cap);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (poll(&p, 1, timeout_ms) > 0) {
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    return buf;
}

static void test_routing_and_errors(void **state)
{
    (void)state;
    char *r = roundtrip("GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 2000);
    assert_non_null(strstr(r, "HTTP/1.1 200"));
    assert_non_null(strstr(r, "cache-control: no-store"));
    assert_non_null(strstr(r, "x-content-type-options: nosniff"));
    assert_non_null(strstr(r, "referrer-policy: no-referrer"));
    assert_non_null(strstr(r, "content-security-policy: frame-ancestors 'none'"));
    assert_non_null(strstr(r, "x-request-id: "));
    free(r);
    r = roundtrip("GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 2000);
    assert_non_null(strstr(r, "HTTP/1.1 404"));
    assert_non_null(strstr(r, "application/problem+json"));
    assert_non_null(strstr(r, "https://boveda.dev/problems/no-such-route"));
    free(r);
    r = roundtrip("DELETE /things/1/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 2000);
    assert_non_null(strstr(r, "HTTP/1.1 405"));
    assert_non_null(strstr(r, "allow: POST, GET, PUT"));
    free(r);
    r = roundtrip("GET /fast HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc.DEF-123_x\r\nConnection: close\r\n\r\n", 2000);
    assert_non_null(strstr(r, "x-request-id: abc.DEF-123_x"));
    free(r);
    r = roundtrip("GET /fast HTTP/1.1\r\nHost: x\r\nX-Request-Id: bad id!\r\nConnection: close\r\n\r\n", 2000);
    assert_non_null(strstr(r, "HTTP/1.1 400"));
    assert_non_null(strstr(r, "invalid-request-id"));
    free(r);
}

static void test_auth_json_and_limits(void **state)
{
    (void)state;
    char req[1024];
    char *r = roundtrip("POST /things/a%20b/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        "Content-Length: 12\r\nConnection: close\r\n\r\n{\"name\":\"x\"}",
                        2000);
    assert_non_null(strstr(r, "HTTP/1.1 401"));
    assert_non_null(strstr(r, "www-authenticate: Bearer realm=\"boveda\""));
    free(r);
    snprintf(req, sizeof(req),
             "POST /things/a%%20b/echo?q=h%%C3%%A9llo+w HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
             "Content-Type: application/json; charset=utf-8\r\nContent-Length: 18\r\nConnection: close\r\n\r\n"
             "{\"name\":\"x\",\"n\":3}",
             TOKEN);
    r = roundtrip(req, 2000);
    assert_non_null(strstr(r, "HTTP/1.1 201"));
    assert_non_null(strstr(r, "\"id\":\"a b\""));
    assert_non_null(strstr(r, "\"q\":\"h\xc3\xa9llo w\""));
    assert_non_null(strstr(r, "\"n\":3"));
    free(r);
    snprintf(req, sizeof(req),
             "POST /things/1/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %sX\r\n"
             "Content-Type: application/json\r\nContent-Length: 12\r\nConnection: close\r\n\r\n{\"name\":\"x\"}",
             TOKEN);
    r = roundtrip(req, 2000);
    assert_non_null(strstr(r, "HTTP/1.1 401"));
    assert_non_null(strstr(r, "error=\"invalid_token\""));
    free(r);
    /* unknown field named */
    snprintf(req, sizeof(req),
             "POST /things/1/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
             "Content-Type: application/json\r\nContent-Length: 22\r\nConnection: close\r\n\r\n{\"name\":\"x\",\"bogus\":1}",
             TOKEN);
    r = roundtrip(req, 2000);
    assert_non_null(strstr(r, "HTTP/1.1 400"));
    assert_non_null(strstr(r, "\"field\":\"bogus\""));
    free(r);
    /* malformed JSON names the position */
    snprintf(req, sizeof(req),
             "POST /things/1/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
             "Content-Type: application/json\r\nContent-Length: 9\r\nConnection: close\r\n\r\n{\"name\":,",
             TOKEN);
    r = roundtrip(req, 2000);
    assert_non_null(strstr(r, "HTTP/1.1 400"));
    assert_non_null(strstr(r, "malformed-json"));
    assert_non_null(strstr(r, "column"));
    free(r);
    /* wrong content type */
    snprintf(req, sizeof(req),
             "POST /things/1/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
             "Content-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\n{\"name\":\"x\"}",
             TOKEN);
    r = roundtrip(req, 2000);
    assert_non_null(strstr(r, "HTTP/1.1 415"));
    free(r);
    /* over the route's body limit (100 bytes) */
    char big[400];
    memset(big, 'a', 200);
    big[200] = '\0';
    snprintf(req, sizeof(req),
             "POST /things/1/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
             "Content-Type: application/json\r\nContent-Length: 200\r\nConnection: close\r\n\r\n%s",
             TOKEN, big);
    r = roundtrip(req, 2000);
    assert_non_null(strstr(r, "HTTP/1.1 413"));
    assert_non_null(strstr(r, "body-too-large"));
    free(r);
    /* over every route's limit: refused by the transport from the Content-Length alone,
     * the body never sent */
    r = roundtrip("POST /things/1/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  "Content-Length: 1001\r\n\r\n",
                  3000);
    assert_non_null(strstr(r, "HTTP/1.1 413"));
    assert_null(strstr(r, "body-too-large")); /* h2o's own plain answer */
    free(r);
}

static void test_cors(void **state)
{
    (void)state;
    char *r = roundtrip("GET /fast HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\nConnection: close\r\n\r\n",
                        2000);
    assert_non_null(strstr(r, "access-control-allow-origin: https://app.example"));
    assert_non_null(strstr(r, "vary: Origin"));
    free(r);
    r = roundtrip("GET /fast HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\nConnection: close\r\n\r\n", 2000);
    assert_null(strstr(r, "access-control-allow-origin"));
    free(r);
    r = roundtrip("OPTIONS /things/1/echo HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n"
                  "Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n",
                  2000);
    assert_non_null(strstr(r, "HTTP/1.1 204"));
    assert_non_null(strstr(r, "access-control-allow-methods"));
    free(r);
    r = roundtrip("OPTIONS /things/1/echo HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n"
                  "Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n",
                  2000);
    assert_non_null(strstr(r, "HTTP/1.1 403"));
    free(r);
}

/* Clients that send a request to a worker route and hang up at once: the workers finish,
 * their results are dropped, nothing touches freed memory (ASan), and the server keeps
 * serving. */
static void test_client_disconnect_mid_request(void **state)
{
    (void)state;
    enum { N = 60 };
    atomic_store(&slow_runs, 0);
    for (int i = 0; i < N; i++) {
        int fd = connect_local();
        const char *req = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
        if (i % 2 == 0) { /* reset instead of an orderly close */
            struct linger lg = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        close(fd);
    }
    for (int i = 0; i < 100 && atomic_load(&slow_runs) < N; i++)
        usleep(50000);
    assert_int_equal(atomic_load(&slow_runs), N);
    usleep(100000);
    char *r = roundtrip("GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 3000);
    assert_non_null(strstr(r, "HTTP/1.1 200"));
    assert_non_null(strstr(r, "\"slow\":\"done\""));
    free(r);
}

/* A client that sends half a request line and stalls is disconnected after the read
 * timeout (300 ms here) instead of holding a connection forever. */
static void test_slow_client_is_cut_off(void **state)
{
    (void)state;
    int fd = connect_local();
    assert_int_equal(write(fd, "GET /fa", 7), 7);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char buf[512];
    int closed = 0;
    /* within 5 s the server must end the connection (an error answer, if any, then EOF) */
    for (int i = 0; i < 50 && !closed; i++)
        if (poll(&p, 1, 100) > 0)
            closed = read(fd, buf, sizeof(buf)) <= 0;
    close(fd);
    assert_true(closed);
}

static void test_header_flood_rejected(void **state)
{
    (void)state;
    bv_buf_t b = {0};
    bv_buf_puts(&b, "GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (int i = 0; i < 90; i++)
        bv_buf_printf(&b, "X-H%d: v\r\n", i);
    bv_buf_puts(&b, "\r\n");
    char *r = roundtrip(b.data, 2000);
    assert_non_null(strstr(r, "HTTP/1.1 431"));
    free(r);
    bv_buf_free(&b);
}

static void test_router_unit(void **state)
{
    (void)state;
    router_t r = {0};
    static const bv_route_t rs[] = {
        {"GET", "/v1/accounts/{id}", on_fast, NULL, 0, 0, NULL},
        {"GET", "/v1/accounts/{id}/movements", on_fast, NULL, 0, 0, NULL},
        {"POST", "/v1/accounts", on_fast, NULL, 0, 0, NULL},
    };
    for (int i = 0; i < 3; i++)
        assert_int_equal(router_add(&r, &rs[i], NULL), 0);
    bv_arena_t a = {0};
    const route_entry_t *e;
    bv_header_t params[BV_MAX_PARAMS];
    size_t np;
    char allow[64];
    const char *p = "/v1/accounts/abc%2Fdef/movements";
    assert_int_equal(router_match(&r, "GET", 3, p, strlen(p), &a, &e, params, &np, allow, sizeof(allow)), MATCH_FOUND);
    assert_ptr_equal(e->route, &rs[1]);
    assert_int_equal(np, 1);
    assert_string_equal(params[0].name, "id");
    assert_string_equal(params[0].value, "abc/def");
    p = "/v1/accounts";
    assert_int_equal(router_match(&r, "GET", 3, p, strlen(p), &a, &e, params, &np, allow, sizeof(allow)),
                     MATCH_NO_METHOD);
    assert_string_equal(allow, "POST");
    p = "/v1/accounts/";
    assert_int_equal(router_match(&r, "GET", 3, p, strlen(p), &a, &e, params, &np, allow, sizeof(allow)),
                     MATCH_NO_PATH);
    p = "/v1/accounts/%zz";
    assert_int_equal(router_match(&r, "GET", 3, p, strlen(p), &a, &e, params, &np, allow, sizeof(allow)),
                     MATCH_NO_PATH);
    p = "/v1/accounts/%00";
    assert_int_equal(router_match(&r, "GET", 3, p, strlen(p), &a, &e, params, &np, allow, sizeof(allow)),
                     MATCH_NO_PATH);
    bv_arena_free(&a);
    router_free(&r);
}

/* Graceful stop: a request in flight when the stop begins still gets its answer. Runs
 * last (it stops the shared server). */
static void *slow_client(void *arg)
{
    char **out = arg;
    *out = roundtrip("GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5000);
    return NULL;
}

/* A write route's request that its is_short says waits for no commit runs on the read
 * pool: it is answered while every write worker is busy; the same route's other requests
 * wait for a write worker. */
static void *release_later(void *arg)
{
    (void)arg;
    usleep(200000);
    atomic_store(&defer_release, 1);
    return NULL;
}

static void *hold_client(void *arg)
{
    (void)arg;
    free(roundtrip("POST /hold HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                   "Connection: close\r\n\r\n{}",
                   4000));
    return NULL;
}

typedef struct {
    const char *body;
    char *resp;
    int64_t took_us;
} classify_t;

static void *classify_client(void *arg)
{
    classify_t *k = arg;
    char raw[256];
    snprintf(raw, sizeof(raw),
             "POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
             "Connection: close\r\n\r\n%s",
             strlen(k->body), k->body);
    int64_t t0 = bv_mono_us();
    k->resp = roundtrip(raw, 4000);
    k->took_us = bv_mono_us() - t0;
    return NULL;
}

static void test_short_requests_skip_the_write_pool(void **state)
{
    (void)state;
    pthread_t holds[4], tl;
    atomic_store(&hold_release, 0);
    for (int i = 0; i < 4; i++) /* BOVEDA_WORKERS=4: every write worker held */
        pthread_create(&holds[i], NULL, hold_client, NULL);
    for (int i = 0; i < 200 && atomic_load(&holding) < 4; i++)
        usleep(5000);
    assert_int_equal(atomic_load(&holding), 4);
    classify_t quick = {.body = "{\"k\":\"short\"}"}, slow = {.body = "{\"k\":\"long\"}"};
    pthread_create(&tl, NULL, classify_client, &slow);
    classify_client(&quick);
    assert_non_null(strstr(quick.resp, "HTTP/1.1 200"));
    assert_true(quick.took_us < 1000000); /* not behind the held workers (they hold for 3 s) */
    usleep(100000);
    assert_int_equal(atomic_load(&holding), 4); /* the long one still waits for a worker */
    atomic_store(&hold_release, 1);
    pthread_join(tl, NULL);
    assert_non_null(strstr(slow.resp, "HTTP/1.1 200"));
    for (int i = 0; i < 4; i++)
        pthread_join(holds[i], NULL);
    free(quick.resp);
    free(slow.resp);
}

typedef struct {
    const char *path;
    char *resp;
} get_t;

static void *get_client(void *arg)
{
    get_t *g = arg;
    char raw[128];
    snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", g->path);
    g->resp = roundtrip(raw, 5000);
    return NULL;
}

static void wait_deferred(int n)
{
    for (int i = 0; i < 400 && atomic_load(&deferred_now) < n; i++)
        usleep(5000);
    assert_int_equal(atomic_load(&deferred_now), n);
}

/* A deferred call holds no thread while it waits: more calls wait at once than there are
 * workers (all of them held, even), and each is answered by its resume on its loop. */
static void test_deferred_calls(void **state)
{
    (void)state;
    pthread_t holds[4], t[12];
    get_t g[12];
    atomic_store(&defer_release, 0);
    atomic_store(&hold_release, 0);
    atomic_store(&resumes_run, 0);
    atomic_store(&resumed_on_loop, 0);
    for (int i = 0; i < 4; i++) /* BOVEDA_WORKERS=4: every write worker held */
        pthread_create(&holds[i], NULL, hold_client, NULL);
    for (int i = 0; i < 200 && atomic_load(&holding) < 4; i++)
        usleep(5000);
    for (int i = 0; i < 6; i++) { /* on the loop: no worker needed at all */
        g[i] = (get_t){.path = "/defer"};
        pthread_create(&t[i], NULL, get_client, &g[i]);
    }
    wait_deferred(6);
    atomic_store(&hold_release, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(holds[i], NULL);
    for (int i = 6; i < 12; i++) { /* on a worker (4 of them): each returns at once */
        g[i] = (get_t){.path = "/defer-worker"};
        pthread_create(&t[i], NULL, get_client, &g[i]);
    }
    wait_deferred(12);
    /* a client that goes away before its resume: the resume still runs (and frees) */
    int fd = connect_local();
    const char *raw = "GET /defer HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(write(fd, raw, strlen(raw)), (ssize_t)strlen(raw));
    wait_deferred(13);
    close(fd);
    usleep(20000);
    atomic_store(&defer_release, 1);
    for (int i = 0; i < 12; i++) {
        pthread_join(t[i], NULL);
        assert_non_null(strstr(g[i].resp, "HTTP/1.1 200"));
        assert_non_null(strstr(g[i].resp, "resumed"));
        free(g[i].resp);
    }
    for (int i = 0; i < 200 && atomic_load(&resumes_run) < 13; i++)
        usleep(5000);
    assert_int_equal(atomic_load(&resumes_run), 13);
    assert_int_equal(atomic_load(&resumed_on_loop), 13);
    /* a resume that comes before the handler returns (on the loop and on a worker) */
    for (int i = 0; i < 2; i++) {
        get_t now = {.path = i == 0 ? "/defer-now" : "/defer-now-worker"};
        get_client(&now);
        assert_non_null(strstr(now.resp, "HTTP/1.1 200"));
        assert_non_null(strstr(now.resp, "at once"));
        free(now.resp);
    }
    assert_int_equal(atomic_load(&resumed_on_loop), 15);
}

/* Stop answers what is in flight: a request on a worker and a deferred call resumed after
 * the stop began. */
static void test_graceful_stop_finishes_in_flight(void **state)
{
    (void)state;
    pthread_t t, td;
    char *resp = NULL;
    get_t g = {.path = "/defer"};
    atomic_store(&defer_release, 0);
    atomic_store(&deferred_now, 0);
    pthread_create(&t, NULL, slow_client, &resp);
    pthread_create(&td, NULL, get_client, &g);
    wait_deferred(1);
    usleep(30000);
    pthread_t releaser;
    pthread_create(&releaser, NULL, release_later, NULL);
    bv_http_stop(srv);
    pthread_join(t, NULL);
    pthread_join(td, NULL);
    pthread_join(releaser, NULL);
    assert_non_null(resp);
    assert_non_null(strstr(resp, "HTTP/1.1 200"));
    assert_non_null(strstr(g.resp, "HTTP/1.1 200"));
    free(resp);
    free(g.resp);
}

/* A customer's token never holds a back-office scope, whatever its scope claim says. */
static void test_principal_scopes(void **state)
{
    (void)state;
    bv_principal_t p = {.kind = BV_PRINCIPAL_USER};
    snprintf(p.scopes, sizeof(p.scopes), "openid banking:read ledger:write audit:read");
    assert_true(bv_principal_has_scope(&p, "openid"));
    assert_true(bv_principal_has_scope(&p, "banking:read"));
    assert_false(bv_principal_has_scope(&p, "banking:write"));
    assert_false(bv_principal_has_scope(&p, "ledger:write"));
    assert_false(bv_principal_has_scope(&p, "audit:read"));
    assert_false(bv_principal_has_scope(&p, "banking"));
    p.kind = BV_PRINCIPAL_CLIENT;
    assert_true(bv_principal_has_scope(&p, "ledger:write"));
    assert_false(bv_principal_has_scope(&p, "ledger:read"));
    p.kind = BV_PRINCIPAL_ADMIN;
    assert_true(bv_principal_has_scope(&p, "anything:at-all"));
    p.kind = BV_PRINCIPAL_NONE;
    assert_false(bv_principal_has_scope(&p, "openid"));
}

int main(void)
{
    bv_log_set_level(BV_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_principal_scopes),
        cmocka_unit_test(test_router_unit),
        cmocka_unit_test(test_routing_and_errors),
        cmocka_unit_test(test_auth_json_and_limits),
        cmocka_unit_test(test_cors),
        cmocka_unit_test(test_header_flood_rejected),
        cmocka_unit_test(test_client_disconnect_mid_request),
        cmocka_unit_test(test_slow_client_is_cut_off),
        cmocka_unit_test(test_short_requests_skip_the_write_pool),
        cmocka_unit_test(test_deferred_calls),
        cmocka_unit_test(test_graceful_stop_finishes_in_flight),
    };
    return cmocka_run_group_tests_name("http server", tests, setup, teardown);
}
