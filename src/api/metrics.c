/* HTTP request metrics: a counter per (route, status code) and a latency histogram per
 * route, all fixed arrays of atomics sized when the server starts, so recording is
 * lock-free and memory never grows with traffic. Rendered in the Prometheus text format
 * by /metrics (routes_health.c adds the run and LLM families). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "util/mem.h"

/* Status codes counted individually; anything else is counted as "other". */
static const unsigned STATUS_CODES[] = {200, 202, 204, 400, 401, 404, 405,
                                        409, 413, 422, 429, 500, 503};
#define NSTATUS (sizeof STATUS_CODES / sizeof STATUS_CODES[0] + 1)

/* Upper bounds of the latency buckets, in microseconds (the last is +Inf). */
static const int64_t BUCKETS_US[] = {250,    500,    1000,   2500,    5000,    10000,  25000,
                                     50000,  100000, 250000, 500000,  1000000, 2500000,
                                     10000000};
static const char *const BUCKET_LABELS[] = {"0.00025", "0.0005", "0.001", "0.0025", "0.005",
                                            "0.01",    "0.025",  "0.05",  "0.1",    "0.25",
                                            "0.5",     "1",      "2.5",   "10"};
#define NBUCKETS (sizeof BUCKETS_US / sizeof BUCKETS_US[0] + 1)

typedef struct route_stats {
    _Atomic int64_t by_status[NSTATUS];
    _Atomic int64_t buckets[NBUCKETS]; /* non-cumulative; summed when rendered */
    _Atomic int64_t sum_us;
} route_stats;

struct api_metrics {
    size_t nroutes;      /* + 1 slot for unmatched paths */
    route_stats *routes;
};

api_metrics *api_metrics_new(size_t nroutes) {
    api_metrics *m = xcalloc(1, sizeof *m);
    m->nroutes = nroutes;
    m->routes = xcalloc(nroutes + 1, sizeof *m->routes);
    return m;
}

void api_metrics_free(api_metrics *m) {
    if (!m) return;
    free(m->routes);
    free(m);
}

static size_t status_slot(unsigned status) {
    for (size_t i = 0; i < NSTATUS - 1; i++)
        if (STATUS_CODES[i] == status) return i;
    return NSTATUS - 1;
}

static size_t bucket_slot(int64_t us) {
    for (size_t i = 0; i < NBUCKETS - 1; i++)
        if (us <= BUCKETS_US[i]) return i;
    return NBUCKETS - 1;
}

void api_metrics_record(api_metrics *m, int route, unsigned status, int64_t duration_us) {
    size_t r = route < 0 || (size_t)route >= m->nroutes ? m->nroutes : (size_t)route;
    route_stats *s = &m->routes[r];
    if (duration_us < 0) duration_us = 0;
    atomic_fetch_add_explicit(&s->by_status[status_slot(status)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->buckets[bucket_slot(duration_us)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->sum_us, duration_us, memory_order_relaxed);
}

static void route_labels(buf_t *out, const api_route *r) {
    if (r) buf_printf(out, "method=\"%s\",route=\"%s\"", r->method, r->pattern);
    else buf_puts(out, "method=\"any\",route=\"unmatched\"");
}

static void render_requests(const api_metrics *m, const api_route *const *routes, buf_t *out) {
    buf_puts(out, "# HELP feedline_http_requests_total HTTP requests by route and status.\n"
                  "# TYPE feedline_http_requests_total counter\n");
    for (size_t r = 0; r <= m->nroutes; r++) {
        for (size_t k = 0; k < NSTATUS; k++) {
            int64_t n = atomic_load(&m->routes[r].by_status[k]);
            if (!n) continue;
            buf_puts(out, "feedline_http_requests_total{");
            route_labels(out, r < m->nroutes ? routes[r] : NULL);
            if (k < NSTATUS - 1) buf_printf(out, ",status=\"%u\"}", STATUS_CODES[k]);
            else buf_puts(out, ",status=\"other\"}");
            buf_printf(out, " %lld\n", (long long)n);
        }
    }
}

static void render_latency(const api_metrics *m, const api_route *const *routes, buf_t *out) {
    buf_puts(out, "# HELP feedline_http_request_duration_seconds Time from the request "
                  "headers to the end of the response.\n"
                  "# TYPE feedline_http_request_duration_seconds histogram\n");
    for (size_t r = 0; r <= m->nroutes; r++) {
        const route_stats *s = &m->routes[r];
        int64_t count = 0;
        for (size_t b = 0; b < NBUCKETS; b++) count += atomic_load(&s->buckets[b]);
        if (!count) continue;
        const api_route *route = r < m->nroutes ? routes[r] : NULL;
        int64_t cum = 0;
        for (size_t b = 0; b < NBUCKETS; b++) {
            cum += atomic_load(&s->buckets[b]);
            buf_puts(out, "feedline_http_request_duration_seconds_bucket{");
            route_labels(out, route);
            buf_printf(out, ",le=\"%s\"} %lld\n", b < NBUCKETS - 1 ? BUCKET_LABELS[b] : "+Inf",
                       (long long)cum);
        }
        buf_puts(out, "feedline_http_request_duration_seconds_sum{");
        route_labels(out, route);
        buf_printf(out, "} %.6f\n", (double)atomic_load(&s->sum_us) / 1e6);
        buf_puts(out, "feedline_http_request_duration_seconds_count{");
        route_labels(out, route);
        buf_printf(out, "} %lld\n", (long long)count);
    }
}

void api_metrics_render(const api_metrics *m, const api_route *const *routes, buf_t *out) {
    render_requests(m, routes, out);
    render_latency(m, routes, out);
}
