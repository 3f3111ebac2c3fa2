/* Private to src/api/: the server, request and route types shared by the core
 * (server.c), the routers (routes_*.c), validation (validate.c), the run threads
 * (runs.c), event streams (events.c), metrics (metrics.c) and the OpenAPI document
 * (openapi.c). */
#ifndef FEEDLINE_API_INTERNAL_H
#define FEEDLINE_API_INTERNAL_H

#include <jansson.h>
#include <microhttpd.h>

#include "util/embed.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "api/api.h"
#include "store/store.h"
#include "util/buf.h"

typedef struct api_runs api_runs;
typedef struct api_events api_events;
typedef struct api_metrics api_metrics;
typedef struct api_cache api_cache;
typedef struct api_req api_req;
typedef struct api_exports api_exports;

/* ------------------------------------------------------------------ parameters */

enum api_type { API_T_INT, API_T_BOOL, API_T_STR, API_T_ENUM, API_T_TIME };

/* Flags of a parameter. */
#define API_P_MIN 1u      /* value >= min */
#define API_P_MAX 2u      /* value <= max */
#define API_P_DEFAULT 4u  /* dflt (int/bool) or str_dflt applies when absent */
#define API_P_NULLABLE 8u /* JSON null accepted (body) */
#define API_P_REQUIRED 16u /* a body field that must be given ("missing" otherwise) */

/* One path, query or body parameter: parsed and validated by validate.c and described
 * by openapi.c from the same record, so the document cannot drift from the checks. */
typedef struct api_param {
    const char *name;
    const char *in;             /* "path" | "query" | "body" */
    enum api_type type;
    unsigned flags;
    int64_t min, max, dflt;
    const char *const *choices; /* API_T_ENUM: NULL-terminated */
    const char *str_dflt;       /* default of a string/enum (NULL = none) */
    const char *description;
} api_param;

/* A parsed value. */
typedef struct api_value {
    int present;  /* given in the request (else the default, if any, was applied) */
    int is_null;  /* JSON null (nullable body fields) or absent without default */
    int64_t i;    /* API_T_INT, API_T_BOOL (0/1), API_T_TIME (unix seconds) */
    const char *s;/* API_T_STR / API_T_ENUM: borrowed from the request */
} api_value;

#define API_MAX_PARAMS 8

/* ------------------------------------------------------------------ routes */

typedef void (*api_handler)(api_req *r);

/* Reuse of a read route's answer by the worker thread that built it (cache.c), keyed by
 * path and query: never; while the database is unchanged; while it is unchanged and
 * within the same wall-clock second (answers with a live duration or a "last N days"
 * window). */
enum { API_CACHE_NONE = 0, API_CACHE_DB = 1, API_CACHE_DB_SECOND = 2 };

/* Who may call a route once tokens are configured (server.c checks it before anything
 * else that touches data, the response cache included; openapi.c documents it). The
 * zero value is READ, so a route whose table entry says nothing about access (a 0 in
 * that position, or a designated initialiser without .access) is protected: secure by
 * default. Routes that hand out no data opt out with API_ACCESS_OPEN. */
enum api_access {
    API_ACCESS_READ = 0,    /* returns data: a read or operate token */
    API_ACCESS_OPERATE = 1, /* changes data or starts work: an operate token */
    API_ACCESS_OPEN = 2,    /* no data (the dashboard page, /health, /openapi.json) */
    API_ACCESS_METRICS = 3  /* /metrics: a metrics, read or operate token */
};

typedef struct api_route {
    const char *method;  /* "GET" | "POST" */
    const char *pattern; /* "/api/pipeline/status/{run_id}"; also the metrics label */
    api_handler handler;
    int access;          /* enum api_access; 0 = READ */
    const api_param *const *params; /* path and query parameters, NULL-terminated */
    const api_param *const *body;   /* JSON body fields, NULL-terminated; NULL = no body */
    const char *summary;
    const char *tag;
    const char *responses; /* OpenAPI: status codes, e.g. "200 404 422" */
    const char *response_schema; /* components/schemas name of the 200 body, or NULL */
    const char *content_type;    /* of the 200 body; NULL = application/json */
    int cacheable;       /* API_CACHE_*: may its 200 body be reused (cache.c) */
} api_route;

extern const api_route API_PIPELINE_ROUTES[];
extern const size_t API_PIPELINE_ROUTE_COUNT;
extern const api_route API_THEMES_ROUTES[];
extern const size_t API_THEMES_ROUTE_COUNT;
extern const api_route API_STORIES_ROUTES[];
extern const size_t API_STORIES_ROUTE_COUNT;
extern const api_route API_HEALTH_ROUTES[];
extern const size_t API_HEALTH_ROUTE_COUNT;
extern const api_route API_EXPORT_ROUTES[];   /* routes_export.c: tracker exports */
extern const size_t API_EXPORT_ROUTE_COUNT;

/* ------------------------------------------------------------------ server */

/* ------------------------------------------------------------------ throttle.c */

/* The per-client-address request rate limit (FEEDLINE_API_RATE requests/s, bursts of
 * a second's worth, at least 10). At most API_THROTTLE_SLOTS addresses are tracked. */
#define API_THROTTLE_SLOTS 4096
typedef struct api_throttle api_throttle;
/* NULL (no limit) when per_second <= 0. */
api_throttle *api_throttle_new(double per_second);
void api_throttle_free(api_throttle *t);
/* Takes one request of addr's budget: 0 when allowed, else the milliseconds until the
 * next one would be. Thread-safe; a NULL t allows everything. */
int64_t api_throttle_take(api_throttle *t, const char *addr, int64_t now_ms);

struct api_server {
    char *db_url;
    char *default_llm;
    char *owner;
    const api_tokens *tokens;    /* borrowed from api_config; NULL = none */
    unsigned token_roles;        /* the roles configured tokens grant (API_ROLE_*) */
    char **cors;                 /* allowed origins */
    size_t ncors;

    const api_route **routes;    /* every router's routes, in match order */
    size_t nroutes;

    struct MHD_Daemon *daemon;
    int threads;
    char address[80];
    pthread_key_t store_key;     /* each HTTP worker thread's store and cache (server.c) */
    int store_key_made;
    int response_cache;          /* cache.c enabled (api_config.no_response_cache unset) */
    char *conversation_url;      /* api_config.conversation_url copy, or NULL */
    atomic_int shutting_down;
    MHD_socket quiesced_fd;      /* the listening socket after quiesce (we close it) */

    api_runs *runs;
    api_events *events;
    api_metrics *metrics;
    api_exports *exports;        /* tracker export jobs (routes_export.c) */
    api_throttle *throttle;      /* per-address request rate limit, or NULL */
    int64_t started_at;          /* wall clock, for /health */
};

/* One HTTP request, from its headers to its completion. Only the worker thread that
 * owns the connection touches it. */
struct api_req {
    api_server *srv;
    struct MHD_Connection *conn;
    const api_route *route;  /* NULL when the path matched nothing */
    int route_index;         /* into srv->routes; -1 = unmatched */
    char method[16];
    char *path;
    char *segs[API_MAX_PARAMS]; /* path segments bound to {params}, in order */
    size_t nsegs;
    buf_t body;              /* at most API_MAX_BODY bytes */
    int body_too_large;
    int64_t start_us;
    const char *origin;      /* allowed Origin to echo, or NULL */

    /* The reply, set by a handler through the api_reply_* helpers. */
    unsigned status;
    json_t *reply_json;
    char *reply_text;
    const char *reply_type;
    struct MHD_Response *reply_custom; /* e.g. an event stream */
    char allow[48];          /* Allow header for 405 ("" = none) */
    int64_t retry_after_s;   /* Retry-After to send with a 429 (0 = none) */
    const char *challenge;   /* WWW-Authenticate value to send, or NULL */
    int replied;
    int cache_valid;         /* cache_version/second were read before the handler ran */
    int64_t cache_version, cache_second;
    char *cache_key;         /* path and query arguments */
    /* Without a connection (conn NULL: tests and tests/fuzz drive validate.c directly),
     * the query arguments api_query reads: name, value, name, value, ..., NULL. */
    const char *const *query_args;
};

/* How every JSON answer is serialised. */
#define API_JSON_FLAGS (JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(12))

/* Replies. Each sets the response once (a later call is ignored). A text reply with a
 * NULL type is JSON. */
void api_reply_json(api_req *r, unsigned status, json_t *body);     /* steals body */
void api_reply_error(api_req *r, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));                            /* {"detail": msg} */
void api_reply_text(api_req *r, unsigned status, const char *type, char *text); /* steals */
void api_reply_validation(api_req *r, json_t *errors);               /* 422, steals */
void api_reply_custom(api_req *r, unsigned status, struct MHD_Response *resp); /* steals */

/* This worker thread's store connection (opened on first use), or NULL after
 * replying 500. */
store *api_store(api_req *r);
/* The same without replying: NULL with the reason in err. */
store *api_store_try(api_req *r, char *err, size_t errlen);
/* Closes this thread's store connection (it looked broken); the next use reopens. */
void api_store_discard(api_req *r);
/* Replies 500 for a store failure (logged with the store's message); a lost
 * connection is dropped so the next request reconnects. */
void api_reply_store_error(api_req *r, store *st, int rc);

/* A header of the request, or NULL. */
const char *api_header(api_req *r, const char *name);
/* A query argument, or NULL (from query_args when the request has no connection). */
const char *api_query(api_req *r, const char *name);

/* ------------------------------------------------------------------ validation */

/* Parses the route's path and query parameters (vals[i] for route->params[i]),
 * appending FastAPI-style errors to errors. */
void api_parse_params(api_req *r, api_value *vals, json_t *errors);
/* api_parse_params, replying 422 with the errors: 0 when valid, -1 after replying. */
int api_parse_or_reply(api_req *r, api_value *vals);
/* Parses the JSON body against route->body (vals[i] for route->body[i]). A missing
 * body, malformed JSON or a non-object is one error. Unknown fields are ignored. */
json_t *api_parse_body(api_req *r, api_value *vals, json_t *errors);
/* api_parse_body, replying 422 with the errors: 0 with *doc (the body, which the values
 * point into: the caller frees it), or -1 after replying. */
int api_parse_body_or_reply(api_req *r, api_value *vals, json_t **doc);
/* One FastAPI/pydantic error item: {"type","loc":[where, field],"msg","input"[,"ctx"]}.
 * msg is prefixed with the field name. Steals input and ctx. */
json_t *api_validation_error(const char *type, const char *where, const char *field,
                             const char *msg, json_t *input, json_t *ctx);
/* Parses a whole decimal int64; 0 or -1. */
int api_parse_int64(const char *s, int64_t *out);

/* ------------------------------------------------------------------ runs (runs.c) */

enum api_job_result {
    API_JOB_OK = 0,
    API_JOB_BUSY = -2,        /* another run is active (*other = its id) */
    API_JOB_STORE = -3,       /* store error (message) */
    API_JOB_CONFLICT = -4,    /* the run's state does not allow it */
    API_JOB_NOTFOUND = -5,
    API_JOB_STORIES_BUSY = -6,/* this process is creating stories (*other = that run) */
    API_JOB_FULL = -7,        /* every job slot is taken (finished ones not joined yet) */
    API_JOB_THREAD = -8       /* the thread could not be created */
};

int api_runs_new(const api_config *cfg, api_metrics *metrics, api_runs **out, char *err,
                 size_t errlen);
/* Creates a run from params and drives it on a new thread. */
int api_runs_start(api_runs *m, store *st, const run_params *p, int64_t *run_id,
                   int64_t *other, char *err, size_t errlen);
/* Resumes a stopped/failed run on a new thread. */
int api_runs_resume(api_runs *m, store *st, int64_t run_id, int64_t *other, char *err,
                    size_t errlen);
/* Creates the stories of a finished run on a new thread (the caller checked it is
 * eligible and that no run is active). */
int api_runs_create_stories(api_runs *m, store *st, int64_t run_id, int64_t *other,
                            char *err, size_t errlen);
/* Sets the in-process stop flag of the job driving run_id, if this process drives it
 * (the database stop was already requested). */
void api_runs_signal_stop(api_runs *m, int64_t run_id);
/* The run whose stories this process is creating, or 0. */
int64_t api_runs_stories_job(api_runs *m);
/* Shutdown: stop flags on every job, stop requested in the database. */
void api_runs_stop_all(api_runs *m);
/* Waits up to timeout_ms; 1 when every job has finished. */
int api_runs_wait(api_runs *m, int timeout_ms);
/* Joins everything (after stop_all) and frees. */
void api_runs_free(api_runs *m);

/* LLM counters of this process's providers, live ones included. */
typedef struct api_llm_totals {
    int64_t requests, retries, rate_limited, failures, cache_hits, in_flight;
    int64_t prompt_tokens, cached_tokens, completion_tokens; /* cached: part of prompt */
    int jobs_active;
} api_llm_totals;
void api_runs_llm_totals(api_runs *m, api_llm_totals *out);

/* ------------------------------------------------------------------ exports (routes_export.c) */

api_exports *api_exports_new(const char *db_url);
/* Cancels a running export, joins its thread and frees the job table. */
void api_exports_free(api_exports *x);

/* ------------------------------------------------------------------ events (events.c) */

int api_events_new(const char *db_url, api_events **out, char *err, size_t errlen);
/* A text/event-stream response following run r (its first event is r's current
 * state), or NULL when API_MAX_EVENT_STREAMS streams are open. */
struct MHD_Response *api_events_subscribe(api_events *h, struct MHD_Connection *conn,
                                          store *st, const run_record *r);
/* Ends every stream (shutdown) and resumes suspended connections. */
void api_events_close_all(api_events *h);
int api_events_open_count(api_events *h);
/* Stops the publisher; call after the HTTP daemon stopped. */
void api_events_free(api_events *h);
/* The JSON state of a run an event carries (also used by tests through the API). */
json_t *api_run_event_json(store *st, const run_record *r);

/* ------------------------------------------------------------------ metrics (metrics.c) */

api_metrics *api_metrics_new(size_t nroutes);
void api_metrics_free(api_metrics *m);
/* route: index into the server's routes, or -1 for an unmatched path. */
void api_metrics_record(api_metrics *m, int route, unsigned status, int64_t duration_us);
/* Appends the HTTP request families in Prometheus text format. */
void api_metrics_render(const api_metrics *m, const api_route *const *routes, buf_t *out);

/* ------------------------------------------------------------------ cache (cache.c) */

#define API_CACHE_ENTRIES 8
#define API_CACHE_MAX_BODY (256 * 1024)

api_cache *api_cache_new(void);
void api_cache_free(api_cache *c);
void api_cache_clear(api_cache *c);
/* The body cached for key at this data version and wall-clock second, or NULL. */
const char *api_cache_get(api_cache *c, const char *key, int64_t version, int64_t second,
                          size_t *len);
void api_cache_put(api_cache *c, const char *key, int64_t version, int64_t second,
                   const char *body, size_t len);

/* ------------------------------------------------------------------ OpenAPI (openapi.c) */

json_t *api_openapi_document(const api_server *srv);

/* The dashboard files compiled in from web/ (generated by scripts/embed-files). */
extern const embedded_file WEB_FILES[];

#endif
