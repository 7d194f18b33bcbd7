/* Private to src/http/: shared between the server, router, pool and metrics files. */
#ifndef BV_HTTP_INTERNAL_H
#define BV_HTTP_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

/* ---- router ---- */
typedef struct {
    const bv_route_t *route;
    void *ctx;
    size_t index; /* metrics slot */
    size_t n_segments;
    char **segments; /* "{name}" marks a parameter */
} route_entry_t;

typedef struct {
    route_entry_t *entries;
    size_t n;
} router_t;

typedef enum { MATCH_FOUND, MATCH_NO_PATH, MATCH_NO_METHOD } match_t;

int router_add(router_t *r, const bv_route_t *route, void *ctx);
void router_free(router_t *r);
/* Matches method + raw path (no query). On MATCH_FOUND fills *out and the params (names
 * borrowed from the pattern, values percent-decoded into the arena). On MATCH_NO_METHOD
 * writes the allowed methods ("GET, POST") into allow (size n). */
match_t router_match(const router_t *r, const char *method, size_t method_len, const char *path, size_t path_len,
                     bv_arena_t *arena, const route_entry_t **out, bv_header_t *params, size_t *n_params,
                     char *allow, size_t allow_len);

/* ---- worker pool ---- */
typedef struct pool pool_t;
int pool_create(const char *name, int n_threads, size_t limit, pool_t **out);
int pool_submit(pool_t *p, void (*fn)(void *arg), void *arg); /* 0 or BV_EBUSY */
size_t pool_depth(pool_t *p);
size_t pool_busy(pool_t *p);
void pool_stop(pool_t *p); /* runs what is queued, joins */
void pool_free(pool_t *p);

/* ---- metrics ---- */
#define N_LATENCY_BUCKETS 16
extern const double latency_bounds[N_LATENCY_BUCKETS]; /* seconds; last is +Inf */

typedef struct {
    const char *route; /* pattern, or "unmatched" */
    const char *method;
    _Atomic uint64_t by_status[500]; /* index = status - 100 */
    _Atomic uint64_t latency[N_LATENCY_BUCKETS];
    _Atomic uint64_t latency_sum_us;
    _Atomic uint64_t count;
} route_metrics_t;

void metrics_observe(route_metrics_t *m, int status, int64_t duration_us);
void metrics_render(route_metrics_t *ms, size_t n, bv_buf_t *out);

#endif
