/* Operational routes: / (API identity), /health (liveness), /health/db and
 * /health/full (database round trip; a connection failure is reported as
 * connected:false instead of the original's 500), /metrics (Prometheus text: runs by
 * state, LLM traffic of this process, event streams, HTTP requests and latency) and
 * /openapi.json. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "store/store_report.h"
#include "util/embed.h"
#include "util/jsonx.h"
#include "util/timeutil.h"

#define API_VERSION "1.0.0"

static const api_param *const NO_PARAMS[] = {NULL};

static json_t *now_iso(void) {
    char buf[32];
    return json_string(iso8601_format(wall_unix(), buf, sizeof buf));
}

/* "/" serves the dashboard (web/index.html, compiled in) to browsers and the API
 * identity JSON to everything else, so the original's clients keep working. */
static void h_root(api_req *r) {
    const char *accept = api_header(r, "Accept");
    const embedded_file *page = embedded_find(WEB_FILES, "index");
    if (page && accept && strstr(accept, "text/html")) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(
            page->len, (void *)page->text, MHD_RESPMEM_PERSISTENT);
        if (resp) {
            MHD_add_response_header(resp, "Content-Type", "text/html; charset=utf-8");
            /* The page is self-contained: no other origin may supply script, style or
             * frames, and it talks only to this server. */
            MHD_add_response_header(resp, "Content-Security-Policy",
                                    "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                                    "connect-src 'self'; frame-ancestors 'none'");
            MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
            MHD_add_response_header(resp, "Cache-Control", "no-cache");
            api_reply_custom(r, 200, resp);
            return;
        }
    }
    api_reply_json(r, 200, json_pack("{ssssssssss}", "name", "feedline API", "version", API_VERSION,
                                     "docs", "/openapi.json", "health", "/health", "dashboard",
                                     "/ (Accept: text/html)"));
}

static void h_health(api_req *r) {
    api_reply_json(r, 200, json_pack("{ssso}", "status", "ok", "timestamp", now_iso()));
}

/* {"connected", "latency_ms", "error"} of one round trip on this thread's connection. */
static json_t *db_check(api_req *r) {
    char err[512] = "";
    int64_t t0 = mono_us();
    store *st = api_store_try(r, err, sizeof err);
    if (st && store_ping(st) != 0) {
        snprintf(err, sizeof err, "%s", store_errmsg(st)[0] ? store_errmsg(st) : "ping failed");
        api_store_discard(r); /* reconnect next time */
        st = NULL;
    }
    if (!st) return json_pack("{sbsnss}", "connected", 0, "latency_ms", "error", err);
    double ms = (double)(mono_us() - t0) / 1000.0;
    double rounded = (double)(int64_t)(ms * 100 + 0.5) / 100; /* 2 decimals, as the original */
    return json_pack("{sbsfsn}", "connected", 1, "latency_ms", rounded, "error");
}

static void h_health_db(api_req *r) { api_reply_json(r, 200, db_check(r)); }

static void h_health_full(api_req *r) {
    json_t *db = db_check(r);
    int ok = json_is_true(json_object_get(db, "connected"));
    api_reply_json(r, 200, json_pack("{sssoso}", "status", ok ? "healthy" : "unhealthy",
                                     "timestamp", now_iso(), "database", db));
}

static void metric(buf_t *b, const char *name, const char *type, const char *help, int64_t v) {
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %lld\n", name, help, name, type, name,
               (long long)v);
}

static void render_llm(api_req *r, buf_t *b) {
    api_llm_totals t;
    api_runs_llm_totals(r->srv->runs, &t);
    metric(b, "feedline_llm_requests_total", "counter",
           "LLM HTTP requests sent by runs of this process (attempts).", t.requests);
    metric(b, "feedline_llm_retries_total", "counter", "LLM requests retried.", t.retries);
    metric(b, "feedline_llm_rate_limited_total", "counter", "LLM answers with HTTP 429.",
           t.rate_limited);
    metric(b, "feedline_llm_failures_total", "counter", "LLM calls that ended in an error.",
           t.failures);
    metric(b, "feedline_llm_cache_hits_total", "counter", "LLM calls answered from the cache.",
           t.cache_hits);
    metric(b, "feedline_llm_in_flight", "gauge", "LLM requests on the wire now.", t.in_flight);
    buf_printf(b, "# HELP feedline_llm_tokens_total LLM tokens used by runs of this process"
                  " (cached: the prompt tokens the endpoint's prefix cache served).\n"
                  "# TYPE feedline_llm_tokens_total counter\n"
                  "feedline_llm_tokens_total{kind=\"prompt\"} %lld\n"
                  "feedline_llm_tokens_total{kind=\"cached\"} %lld\n"
                  "feedline_llm_tokens_total{kind=\"completion\"} %lld\n",
               (long long)t.prompt_tokens, (long long)t.cached_tokens,
               (long long)t.completion_tokens);
    metric(b, "feedline_jobs_active", "gauge",
           "Pipeline runs and story jobs this process is driving.", t.jobs_active);
}

static void h_metrics(api_req *r) {
    store *st = api_store(r);
    if (!st) return;
    int64_t counts[RUN_STATE_COUNT];
    int rc = store_run_state_counts(st, counts);
    if (rc != STORE_OK) {
        api_reply_store_error(r, st, rc);
        return;
    }
    buf_t b = BUF_INIT;
    buf_puts(&b, "# HELP feedline_runs Pipeline runs in the database by state.\n"
                 "# TYPE feedline_runs gauge\n");
    for (int i = 0; i < RUN_STATE_COUNT; i++)
        buf_printf(&b, "feedline_runs{state=\"%s\"} %lld\n", RUN_STATES[i], (long long)counts[i]);
    render_llm(r, &b);
    metric(&b, "feedline_event_streams", "gauge", "Open server-sent event streams.",
           api_events_open_count(r->srv->events));
    api_metrics_render(r->srv->metrics, r->srv->routes, &b);
    api_reply_text(r, 200, "text/plain; version=0.0.4; charset=utf-8", buf_detach(&b));
}

static void h_openapi(api_req *r) { api_reply_json(r, 200, api_openapi_document(r->srv)); }

/* The page, liveness and the API description hold no data and stay open; the database
 * checks can name hosts and users in their errors, and the metrics count runs and LLM
 * spend, so they take the default protection (metrics with its own token). */
const api_route API_HEALTH_ROUTES[] = {
    {"GET", "/", h_root, API_ACCESS_OPEN, NO_PARAMS, NULL,
     "Dashboard (for Accept: text/html) or API identity", "health", "200", NULL, NULL},
    {"GET", "/health", h_health, API_ACCESS_OPEN, NO_PARAMS, NULL, "Liveness", "health", "200",
     "Health", NULL},
    {"GET", "/health/db", h_health_db, API_ACCESS_READ, NO_PARAMS, NULL, "Database round trip",
     "health", "200", "HealthDb", NULL},
    {"GET", "/health/full", h_health_full, API_ACCESS_READ, NO_PARAMS, NULL,
     "Liveness and database", "health", "200", "HealthFull", NULL},
    {"GET", "/metrics", h_metrics, API_ACCESS_METRICS, NO_PARAMS, NULL, "Prometheus metrics",
     "health", "200", NULL, "text/plain"},
    {"GET", "/openapi.json", h_openapi, API_ACCESS_OPEN, NO_PARAMS, NULL, "This document",
     "health", "200", NULL, NULL},
};
const size_t API_HEALTH_ROUTE_COUNT = sizeof API_HEALTH_ROUTES / sizeof API_HEALTH_ROUTES[0];
