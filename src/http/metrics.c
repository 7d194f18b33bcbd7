/* Request metrics in the Prometheus text exposition format (version 0.0.4). */
#include <stdio.h>

#include "http/internal.h"

const double latency_bounds[N_LATENCY_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                  0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    0};

void metrics_observe(route_metrics_t *m, int status, int64_t duration_us)
{
    if (status >= 100 && status < 600)
        atomic_fetch_add_explicit(&m->by_status[status - 100], 1, memory_order_relaxed);
    int b = N_LATENCY_BUCKETS - 1;
    for (int i = 0; i < N_LATENCY_BUCKETS - 1; i++) {
        if ((double)duration_us <= latency_bounds[i] * 1e6) {
            b = i;
            break;
        }
    }
    atomic_fetch_add_explicit(&m->latency[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->latency_sum_us, (uint64_t)(duration_us > 0 ? duration_us : 0),
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&m->count, 1, memory_order_relaxed);
}

void metrics_render(route_metrics_t *ms, size_t n, bv_buf_t *out)
{
    bv_buf_puts(out, "# HELP boveda_http_requests_total HTTP requests by route template, method and status.\n"
                     "# TYPE boveda_http_requests_total counter\n");
    for (size_t i = 0; i < n; i++) {
        for (int s = 0; s < 500; s++) {
            uint64_t c = atomic_load_explicit(&ms[i].by_status[s], memory_order_relaxed);
            if (c > 0)
                bv_buf_printf(out, "boveda_http_requests_total{route=\"%s\",method=\"%s\",status=\"%d\"} %llu\n",
                              ms[i].route, ms[i].method, s + 100, (unsigned long long)c);
        }
    }
    bv_buf_puts(out, "# HELP boveda_http_request_duration_seconds Time from request received to response queued.\n"
                     "# TYPE boveda_http_request_duration_seconds histogram\n");
    for (size_t i = 0; i < n; i++) {
        uint64_t count = atomic_load_explicit(&ms[i].count, memory_order_relaxed);
        if (count == 0)
            continue;
        uint64_t cum = 0;
        for (int b = 0; b < N_LATENCY_BUCKETS; b++) {
            cum += atomic_load_explicit(&ms[i].latency[b], memory_order_relaxed);
            if (b == N_LATENCY_BUCKETS - 1)
                bv_buf_printf(out,
                              "boveda_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\",le=\"+Inf\"} %llu\n",
                              ms[i].route, ms[i].method, (unsigned long long)cum);
            else
                bv_buf_printf(out,
                              "boveda_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\",le=\"%g\"} %llu\n",
                              ms[i].route, ms[i].method, latency_bounds[b], (unsigned long long)cum);
        }
        bv_buf_printf(out, "boveda_http_request_duration_seconds_sum{route=\"%s\",method=\"%s\"} %.6f\n", ms[i].route,
                      ms[i].method, (double)atomic_load(&ms[i].latency_sum_us) / 1e6);
        bv_buf_printf(out, "boveda_http_request_duration_seconds_count{route=\"%s\",method=\"%s\"} %llu\n", ms[i].route,
                      ms[i].method, (unsigned long long)count);
    }
}
