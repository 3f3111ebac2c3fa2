/* The HTTP core: the libmicrohttpd daemon (internal thread pool, one worker per core),
 * request framing limits, routing, authentication, CORS, replies, metrics and each
 * worker thread's store connection and response cache; plus server start and graceful
 * shutdown.
 *
 * The workers wait with poll(), not epoll: libmicrohttpd's edge-triggered epoll mode
 * misses a FIN that arrives in the same segment as request bytes (a client that sends
 * a partial request and closes), leaving the connection in CLOSE-WAIT until the idle
 * timeout, so a few hundred such connections would exhaust API_MAX_CONNECTIONS.
 * Level-triggered poll() sees it; with at most API_MAX_CONNECTIONS connections split
 * over the workers it is also faster here (65k vs 53k req/s on the status route).
 *
 * Request order of checks: the per-address rate limit 429 (when configured; not
 * /health), unknown path 404, CORS preflight, wrong method 405, body
 * over API_MAX_BODY 413, missing/wrong bearer token 401 or a token whose role does not
 * allow the route 403 (every route but the open ones, see enum api_access), then the
 * response cache, then the route's handler (422 for invalid input). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/api_internal.h"
#include "store/store_report.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/timeutil.h"

#define CORS_METHODS "GET, POST, OPTIONS"
#define CORS_HEADERS "Authorization, Content-Type, Last-Event-ID"

/* ------------------------------------------------------------------ replies */

static int take_reply(api_req *r, unsigned status) {
    if (r->replied) return 0;
    r->replied = 1;
    r->status = status;
    return 1;
}

void api_reply_json(api_req *r, unsigned status, json_t *body) {
    if (!take_reply(r, status)) {
        json_decref(body);
        return;
    }
    r->reply_json = body;
}

void api_reply_error(api_req *r, unsigned status, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    api_reply_json(r, status, json_pack("{so}", "detail", jx_string(msg)));
}

void api_reply_text(api_req *r, unsigned status, const char *type, char *text) {
    if (!take_reply(r, status)) {
        free(text);
        return;
    }
    r->reply_text = text;
    r->reply_type = type;
}

void api_reply_validation(api_req *r, json_t *errors) {
    api_reply_json(r, 422, json_pack("{so}", "detail", errors));
}

void api_reply_custom(api_req *r, unsigned status, struct MHD_Response *resp) {
    if (!take_reply(r, status)) {
        MHD_destroy_response(resp);
        return;
    }
    r->reply_custom = resp;
}

/* ------------------------------------------------------------------ store per thread */

/* What each HTTP worker thread keeps: its own store connection (SQLite connections are
 * not shared between threads) and its response cache. Freed when the thread exits. */
typedef struct thread_ctx {
    store *st;
    api_cache *cache;
} thread_ctx;

static void free_thread_ctx(void *p) {
    thread_ctx *t = p;
    store_close(t->st);
    api_cache_free(t->cache);
    free(t);
}

static thread_ctx *thread_context(api_req *r) {
    thread_ctx *t = pthread_getspecific(r->srv->store_key);
    if (t) return t;
    t = xcalloc(1, sizeof *t);
    t->cache = api_cache_new();
    if (pthread_setspecific(r->srv->store_key, t) != 0) {
        free_thread_ctx(t);
        return NULL;
    }
    return t;
}

store *api_store_try(api_req *r, char *err, size_t errlen) {
    thread_ctx *t = thread_context(r);
    if (!t) {
        snprintf(err, errlen, "no thread context");
        return NULL;
    }
    if (!t->st && store_open(r->srv->db_url, &t->st, err, errlen) != STORE_OK) t->st = NULL;
    return t->st;
}

store *api_store(api_req *r) {
    char err[512];
    store *st = api_store_try(r, err, sizeof err);
    if (!st) {
        log_error("api: opening the database: %s", err);
        api_reply_error(r, 500, "Database unavailable");
    }
    return st;
}

void api_store_discard(api_req *r) {
    thread_ctx *t = pthread_getspecific(r->srv->store_key);
    if (!t) return;
    store_close(t->st);
    t->st = NULL;
    api_cache_clear(t->cache);
}

void api_reply_store_error(api_req *r, store *st, int rc) {
    log_error("api: %s %s: %s", r->method, r->path, store_errmsg(st));
    api_reply_error(r, 500, "Internal Server Error");
    if (rc == STORE_RETRY) api_store_discard(r); /* possibly a lost connection */
}

/* ------------------------------------------------------------------ response cache */

/* The cache key of a request: its path and its query arguments in the order given
 * (clients that poll repeat the same URL). NULL when too long to be worth keeping. */
#define CACHE_KEY_MAX 1024

static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *value) {
    (void)kind;
    buf_t *b = cls;
    buf_printf(b, "%c%s=%s", strchr(buf_cstr(b), '?') ? '&' : '?', key, value ? value : "");
    return b->len > CACHE_KEY_MAX ? MHD_NO : MHD_YES;
}

static char *cache_key(api_req *r) {
    buf_t b = BUF_INIT;
    buf_puts(&b, r->path);
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, add_arg, &b);
    if (b.len > CACHE_KEY_MAX) {
        buf_free(&b);
        return NULL;
    }
    return buf_detach(&b);
}

/* Answers from this thread's cache when the database has not changed since the body
 * was built; otherwise remembers the version the handler's reads will be at least as
 * new as. 1 when answered. */
static int reply_from_cache(api_req *r) {
    char err[512];
    store *st = api_store_try(r, err, sizeof err);
    int64_t version;
    if (!st || store_data_version(st, &version) != STORE_FOUND) return 0;
    r->cache_key = cache_key(r);
    if (!r->cache_key) return 0;
    r->cache_valid = 1;
    r->cache_version = version;
    r->cache_second = r->route->cacheable == API_CACHE_DB_SECOND ? wall_unix() : 0;
    thread_ctx *t = pthread_getspecific(r->srv->store_key);
    size_t len;
    const char *body = api_cache_get(t->cache, r->cache_key, version, r->cache_second, &len);
    if (!body) return 0;
    api_reply_text(r, 200, NULL, xstrndup(body, len));
    return 1;
}

static char *dump_json(const json_t *v) { return json_dumps(v, API_JSON_FLAGS); }

static void remember_reply(api_req *r) {
    if (!r->cache_valid || r->status != 200) return;
    if (r->reply_json) {
        char *text = dump_json(r->reply_json);
        if (!text) return;
        json_decref(r->reply_json);
        r->reply_json = NULL;
        r->reply_text = text;
    }
    if (!r->reply_text || r->reply_type) return; /* only JSON answers are cached */
    thread_ctx *t = pthread_getspecific(r->srv->store_key);
    api_cache_put(t->cache, r->cache_key, r->cache_version, r->cache_second, r->reply_text,
                  strlen(r->reply_text));
}

static void forget_replies(api_req *r) {
    thread_ctx *t = pthread_getspecific(r->srv->store_key);
    if (t) api_cache_clear(t->cache);
}

/* ------------------------------------------------------------------ request access */

const char *api_header(api_req *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *api_query(api_req *r, const char *name) {
    if (!r->conn) {
        for (size_t i = 0; r->query_args && r->query_args[i] && r->query_args[i + 1]; i += 2)
            if (strcmp(r->query_args[i], name) == 0) return r->query_args[i + 1];
        return NULL;
    }
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* ------------------------------------------------------------------ routing */

/* Matches path against pattern ("/a/{x}/b"), capturing {params}. 1 on a match. */
static int match(const char *pattern, const char *path, char **caps, size_t *ncaps) {
    size_t n = 0;
    const char *p = pattern, *q = path;
    while (*p && *q) {
        if (*p != '/' || *q != '/') return 0;
        p++;
        q++;
        const char *pe = strchrnul(p, '/'), *qe = strchrnul(q, '/');
        if (*p == '{') {
            if (qe == q || n >= API_MAX_PARAMS) return 0;
            if (caps) caps[n] = xstrndup(q, (size_t)(qe - q));
            n++;
        } else if (pe - p != qe - q || strncmp(p, q, (size_t)(pe - p)) != 0) {
            for (size_t i = 0; caps && i < n; i++) free(caps[i]);
            return 0;
        }
        p = pe;
        q = qe;
    }
    if (*p || *q) {
        for (size_t i = 0; caps && i < n; i++) free(caps[i]);
        return 0;
    }
    if (ncaps) *ncaps = n;
    return 1;
}

static int method_matches(const char *route_method, const char *method) {
    return strcmp(route_method, method) == 0 ||
           (strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0);
}

/* Finds the route for the request; sets r->route (or NULL), r->allow for a 405.
 * Returns 1 if any route has this path. */
static int route_request(api_req *r) {
    api_server *srv = r->srv;
    int path_known = 0;
    char *allow = r->allow;
    allow[0] = '\0';
    for (size_t i = 0; i < srv->nroutes; i++) {
        const api_route *rt = srv->routes[i];
        if (!match(rt->pattern, r->path, NULL, NULL)) continue;
        path_known = 1;
        if (method_matches(rt->method, r->method)) {
            match(rt->pattern, r->path, r->segs, &r->nsegs);
            r->route = rt;
            r->route_index = (int)i;
            return 1;
        }
        size_t room = sizeof r->allow - strlen(allow);
        if (!strstr(allow, rt->method) && strlen(rt->method) + 3 < room) {
            if (allow[0]) strcat(allow, ", ");
            strcat(allow, rt->method);
        }
    }
    return path_known;
}

/* ------------------------------------------------------------------ auth, CORS */

/* The API_ROLE_* bit a route needs, or 0 when it is open to anyone. A data route is
 * guarded once a read or operate token exists; /metrics once any token exists (a
 * metrics token alone guards only /metrics). */
static unsigned role_needed(const api_server *srv, const api_route *rt) {
    switch (rt->access) {
    case API_ACCESS_OPEN: return 0;
    case API_ACCESS_METRICS: return srv->token_roles ? API_ROLE_METRICS : 0;
    case API_ACCESS_OPERATE:
        return (srv->token_roles & API_ROLE_READ) ? API_ROLE_OPERATE : 0;
    default: /* API_ACCESS_READ, and any value a table might hold by mistake */
        return (srv->token_roles & API_ROLE_READ) ? API_ROLE_READ : 0;
    }
}

/* The roles the request's bearer token grants (0 without one, or a wrong one). */
static unsigned bearer_roles(api_req *r) {
    const char *h = api_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
    const char *token = h + 7;
    while (*token == ' ') token++;
    return api_tokens_check(r->srv->tokens, token);
}

/* 1 when the request may go on; otherwise replies 401 (no or unknown token) or 403 (a
 * valid token whose role does not allow the route). Runs before the response cache is
 * consulted, so a cached answer is never served to a client that could not have had it
 * built. */
static int access_allowed(api_req *r) {
    unsigned need = role_needed(r->srv, r->route);
    if (!need) return 1;
    unsigned have = bearer_roles(r);
    if (have & need) return 1;
    if (!have) {
        r->challenge = "Bearer";
        api_reply_error(r, 401, "Not authenticated");
    } else {
        r->challenge = "Bearer error=\"insufficient_scope\"";
        api_reply_error(r, 403, "Forbidden: this token's role does not allow %s %s",
                        r->route->method, r->route->pattern);
    }
    return 0;
}

static const char *allowed_origin(api_req *r) {
    const char *origin = api_header(r, "Origin");
    if (!origin) return NULL;
    for (size_t i = 0; i < r->srv->ncors; i++)
        if (strcmp(r->srv->cors[i], "*") == 0 || strcmp(r->srv->cors[i], origin) == 0)
            return origin;
    return NULL;
}

static void add_cors(api_req *r, struct MHD_Response *resp) {
    if (!r->origin) return;
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", r->origin);
    MHD_add_response_header(resp, "Access-Control-Allow-Credentials", "true");
    MHD_add_response_header(resp, "Vary", "Origin");
}

static void preflight(api_req *r) {
    if (!api_header(r, "Origin") || !api_header(r, "Access-Control-Request-Method")) {
        api_reply_error(r, 405, "Method Not Allowed");
        return;
    }
    if (!r->origin) {
        api_reply_text(r, 400, "text/plain", xstrdup("Disallowed CORS origin"));
        return;
    }
    api_reply_text(r, 200, "text/plain", xstrdup("OK"));
}

/* ------------------------------------------------------------------ the request cycle */

static api_req *req_new(api_server *srv, struct MHD_Connection *conn, const char *url,
                        const char *method) {
    api_req *r = xcalloc(1, sizeof *r);
    r->srv = srv;
    r->conn = conn;
    r->start_us = mono_us();
    r->route_index = -1;
    snprintf(r->method, sizeof r->method, "%s", method);
    size_t len = strlen(url);
    while (len > 1 && url[len - 1] == '/') len--; /* "/api/stories/" is "/api/stories" */
    r->path = xstrndup(url, len);
    r->origin = allowed_origin(r);
    return r;
}

static void req_free(api_req *r) {
    for (size_t i = 0; i < r->nsegs; i++) free(r->segs[i]);
    buf_free(&r->body);
    json_decref(r->reply_json);
    free(r->reply_text);
    if (r->reply_custom) MHD_destroy_response(r->reply_custom);
    free(r->path);
    free(r->cache_key);
    free(r);
}

static int content_length_too_large(api_req *r) {
    const char *cl = api_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    int64_t n;
    return cl && api_parse_int64(cl, &n) == 0 && n > API_MAX_BODY;
}

static void take_body(api_req *r, const char *data, size_t n) {
    if (r->body_too_large) return;
    if (r->body.len + n > API_MAX_BODY) {
        r->body_too_large = 1;
        buf_free(&r->body);
        return;
    }
    buf_append(&r->body, data, n);
}

/* The client's address as text ("" when unknown). */
static void client_address(api_req *r, char *out, size_t len) {
    out[0] = '\0';
    const union MHD_ConnectionInfo *ci =
        r->conn ? MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS) : NULL;
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    if (!sa) return;
    if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)len);
    else if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)len);
}

/* The per-address rate limit, before any other work: 1 if the request was refused
 * (429). /health stays exempt, for the probes that decide whether to restart us. */
static int throttled(api_req *r) {
    if (!r->srv->throttle || !strcmp(r->path, "/health")) return 0;
    char addr[INET6_ADDRSTRLEN];
    client_address(r, addr, sizeof addr);
    int64_t wait_ms = api_throttle_take(r->srv->throttle, addr, mono_ms());
    if (!wait_ms) return 0;
    r->retry_after_s = (wait_ms + 999) / 1000;
    api_reply_error(r, 429, "Too Many Requests: over the limit of requests per second for %s",
                    addr[0] ? addr : "this address");
    return 1;
}

static void dispatch(api_req *r) {
    if (throttled(r)) return;
    int known = route_request(r);
    if (!known) {
        api_reply_error(r, 404, "Not Found");
        return;
    }
    if (strcmp(r->method, "OPTIONS") == 0) {
        preflight(r);
        return;
    }
    if (!r->route) {
        api_reply_error(r, 405, "Method Not Allowed");
        return;
    }
    if (r->body_too_large) {
        api_reply_error(r, 413, "Request body too large (limit %d bytes)", API_MAX_BODY);
        return;
    }
    if (!access_allowed(r)) return;
    int cacheable = r->route->cacheable != API_CACHE_NONE && r->srv->response_cache;
    if (cacheable && reply_from_cache(r)) return;
    r->route->handler(r);
    if (!r->replied) api_reply_error(r, 500, "Internal Server Error");
    /* This thread's own writes do not move its data version: drop what it cached. */
    if (r->route->access == API_ACCESS_OPERATE) forget_replies(r);
    else if (cacheable) remember_reply(r);
}

static enum MHD_Result send_reply(api_req *r) {
    struct MHD_Response *resp = r->reply_custom;
    r->reply_custom = NULL;
    if (!resp) {
        char *text = r->reply_text;
        r->reply_text = NULL;
        if (r->reply_json) {
            text = dump_json(r->reply_json);
            json_decref(r->reply_json);
            r->reply_json = NULL;
        }
        if (!text) text = xstrdup("");
        resp = MHD_create_response_from_buffer_with_free_callback(strlen(text), text, free);
        if (!resp) {
            free(text);
            return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                r->reply_type ? r->reply_type : "application/json");
        MHD_add_response_header(resp, "Cache-Control", "no-store");
    }
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    add_cors(r, resp);
    if (r->status == 405 && r->allow[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
    if (r->challenge) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, r->challenge);
    if (r->retry_after_s > 0) {
        char ra[24];
        snprintf(ra, sizeof ra, "%lld", (long long)r->retry_after_s);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    if (r->status == 200 && strcmp(r->method, "OPTIONS") == 0 && r->origin) {
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", CORS_METHODS);
        MHD_add_response_header(resp, "Access-Control-Allow-Headers", CORS_HEADERS);
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    }
    /* Counted when queued, not when the last byte has left: a client that reads its
     * answer and then asks /metrics must find its request counted. The duration is the
     * time to the answer, not the time the client took to read it. */
    api_metrics_record(r->srv->metrics, r->route_index, r->status, mono_us() - r->start_us);
    enum MHD_Result ret = MHD_queue_response(r->conn, r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls) {
    (void)version;
    api_server *srv = cls;
    api_req *r = *req_cls;
    if (!r) {
        r = req_new(srv, conn, url, method);
        *req_cls = r;
        if (content_length_too_large(r)) {
            /* Answer before reading a byte of it; the connection is then closed. */
            r->body_too_large = 1;
            route_request(r);
            api_reply_error(r, 413, "Request body too large (limit %d bytes)", API_MAX_BODY);
            return send_reply(r);
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!r->replied) take_body(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->replied) return MHD_YES;
    dispatch(r);
    return send_reply(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)conn;
    (void)cls;
    api_req *r = *req_cls;
    if (!r) return;
    int64_t us = mono_us() - r->start_us;
    log_debug("%s %s %u %.3fms%s", r->method, r->path, r->status, (double)us / 1000.0,
              toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (aborted)");
    req_free(r);
    *req_cls = NULL;
}

/* libmicrohttpd's own messages (malformed requests and the like) are debug noise,
 * except while starting, when they explain why the daemon did not start. */
typedef struct start_log {
    char msg[512];
} start_log;

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    start_log *sl = cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    if (sl && !sl->msg[0]) snprintf(sl->msg, sizeof sl->msg, "%s", line);
    log_debug("microhttpd: %s", line);
}

/* ------------------------------------------------------------------ start */

static int parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len,
                        int *v6) {
    char host[128];
    const char *colon;
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':' || (size_t)(close - listen - 1) >= sizeof host) return -1;
        snprintf(host, sizeof host, "%.*s", (int)(close - listen - 1), listen + 1);
        colon = close + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon || (size_t)(colon - listen) >= sizeof host) return -1;
        snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
    }
    int64_t port;
    if (api_parse_int64(colon + 1, &port) != 0 || port < 0 || port > 65535) return -1;
    if (strcmp(host, "localhost") == 0) snprintf(host, sizeof host, "127.0.0.1");
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *len = sizeof *a4;
        *v6 = 0;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *len = sizeof *a6;
        *v6 = 1;
        return 0;
    }
    return -1;
}

static void collect_routes(api_server *srv) {
    const api_route *tables[] = {API_PIPELINE_ROUTES, API_THEMES_ROUTES, API_STORIES_ROUTES,
                                 API_HEALTH_ROUTES, API_EXPORT_ROUTES};
    const size_t counts[] = {API_PIPELINE_ROUTE_COUNT, API_THEMES_ROUTE_COUNT,
                             API_STORIES_ROUTE_COUNT, API_HEALTH_ROUTE_COUNT,
                             API_EXPORT_ROUTE_COUNT};
    const size_t ntables = sizeof tables / sizeof tables[0];
    size_t total = 0;
    for (size_t t = 0; t < ntables; t++) total += counts[t];
    srv->routes = xcalloc(total, sizeof *srv->routes);
    for (size_t t = 0; t < ntables; t++)
        for (size_t i = 0; i < counts[t]; i++) srv->routes[srv->nroutes++] = &tables[t][i];
}

static void copy_config(api_server *srv, const api_config *cfg) {
    srv->db_url = xstrdup(cfg->db_url);
    srv->default_llm = xstrdup(cfg->default_llm ? cfg->default_llm : "local");
    srv->owner = xstrdup(cfg->owner ? cfg->owner : "feedline");
    srv->tokens = cfg->tokens;
    srv->token_roles = api_tokens_configured(cfg->tokens);
    srv->ncors = cfg->ncors;
    srv->cors = xcalloc(cfg->ncors + 1, sizeof *srv->cors);
    for (size_t i = 0; i < cfg->ncors; i++) srv->cors[i] = xstrdup(cfg->cors_origins[i]);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    srv->threads = cfg->threads > 0 ? cfg->threads : cores > 0 ? (int)cores : 2;
    srv->started_at = wall_unix();
    srv->quiesced_fd = MHD_INVALID_SOCKET;
    srv->response_cache = !cfg->no_response_cache;
    srv->conversation_url = xstrdup(cfg->conversation_url);
    srv->throttle = api_throttle_new(cfg->rate_per_address);
}

/* Opens the database once (migrating it) and fails the runs of dead processes. */
static int recover_runs(api_server *srv, char *err, size_t errlen) {
    store *st = NULL;
    if (store_open(srv->db_url, &st, err, errlen) != STORE_OK) return -1;
    pipeline_fail_orphaned_runs(st, RUN_STALE_SECONDS); /* also done by the ticker */
    store_close(st);
    return 0;
}

static int check_listen(const char *listen, struct sockaddr_storage *ss, int *v6, char *err,
                        size_t errlen) {
    socklen_t slen;
    if (parse_listen(listen, ss, &slen, v6) == 0) return 0;
    snprintf(err, errlen, "--listen %s: expected ADDRESS:PORT (e.g. 127.0.0.1:8000)", listen);
    return -1;
}

static int start_daemon(api_server *srv, const char *listen, char *err, size_t errlen) {
    struct sockaddr_storage ss;
    int v6;
    if (check_listen(listen, &ss, &v6, err, errlen) != 0) return -1;
    start_log sl = {{0}};
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    /* The port argument only names the port in libmicrohttpd's messages here: the
     * address bound is MHD_OPTION_SOCK_ADDR's. */
    uint16_t port_arg = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                 : ((struct sockaddr_in *)&ss)->sin_port);
    srv->daemon = MHD_start_daemon(
        flags, port_arg, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, &sl,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)srv->threads, MHD_OPTION_CONNECTION_LIMIT, (unsigned)API_MAX_CONNECTIONS,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)API_MAX_CONNECTIONS_PER_IP,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)API_CONN_MEMORY,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)API_IDLE_TIMEOUT_S, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, srv, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_END);
    if (!srv->daemon) {
        snprintf(err, errlen, "cannot listen on %s%s%s", listen, sl.msg[0] ? ": " : "", sl.msg);
        return -1;
    }
    /* From here on, messages go to the debug log only. */
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    unsigned port = info ? info->port : 0;
    char host[INET6_ADDRSTRLEN] = "";
    if (v6) inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
    else inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
    snprintf(srv->address, sizeof srv->address, v6 ? "[%s]:%u" : "%s:%u", host, port);
    return 0;
}

/* 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104: only this machine can connect. */
static int is_loopback(const struct sockaddr_storage *ss) {
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

/* Anyone who can reach a non-loopback address could read every stored conversation:
 * refuse to listen there without a read or operate token unless told to. */
static int check_exposure(const api_config *cfg, const char *listen,
                          const struct sockaddr_storage *ss, char *err, size_t errlen) {
    if (is_loopback(ss) || (api_tokens_configured(cfg->tokens) & API_ROLE_READ)) return 0;
    if (cfg->insecure_no_auth) {
        log_warn("listening on %s without an API token (--insecure-no-auth): anyone who can "
                 "reach it can read the stored conversations and start and stop runs",
                 listen);
        return 0;
    }
    snprintf(err, errlen,
             "refusing to listen on %s without an API token: anyone who could reach it could "
             "read the stored conversations. Set FEEDLINE_API_TOKEN, FEEDLINE_API_TOKENS or "
             "FEEDLINE_API_TOKENS_FILE, listen on 127.0.0.1, or pass --insecure-no-auth",
             listen);
    return -1;
}

int api_server_start(const api_config *cfg, api_server **out, char *err, size_t errlen) {
    *out = NULL;
    if (!cfg->db_url || !cfg->vocab || !cfg->make_provider) {
        snprintf(err, errlen, "api_server_start: db_url, vocab and make_provider are required");
        return -1;
    }
    const char *listen = cfg->listen ? cfg->listen : "127.0.0.1:8000";
    struct sockaddr_storage ss;
    int v6;
    if (check_listen(listen, &ss, &v6, err, errlen) != 0 ||
        check_exposure(cfg, listen, &ss, err, errlen) != 0)
        return -1; /* before any work */
    api_server *srv = xcalloc(1, sizeof *srv);
    copy_config(srv, cfg);
    collect_routes(srv);
    srv->metrics = api_metrics_new(srv->nroutes);
    srv->exports = api_exports_new(srv->db_url);
    if (pthread_key_create(&srv->store_key, free_thread_ctx) != 0) {
        snprintf(err, errlen, "pthread_key_create failed");
        api_server_stop(srv);
        return -1;
    }
    srv->store_key_made = 1;
    if (api_runs_new(cfg, srv->metrics, &srv->runs, err, errlen) != 0 ||
        recover_runs(srv, err, errlen) != 0 ||
        api_events_new(srv->db_url, &srv->events, err, errlen) != 0 ||
        start_daemon(srv, listen, err, errlen) != 0) {
        api_server_stop(srv);
        return -1;
    }
    *out = srv;
    return 0;
}

const char *api_server_address(const api_server *s) { return s->address; }

/* ------------------------------------------------------------------ shutdown */

void api_server_begin_shutdown(api_server *s) {
    if (atomic_exchange(&s->shutting_down, 1)) return;
    if (s->daemon) {
        MHD_socket fd = MHD_quiesce_daemon(s->daemon);
        /* The listening socket is ours to close, after the daemon has stopped. */
        s->quiesced_fd = fd;
    }
    if (s->runs) api_runs_stop_all(s->runs);
    if (s->events) api_events_close_all(s->events);
}

int api_server_wait_idle(api_server *s, int timeout_ms) {
    return s->runs ? api_runs_wait(s->runs, timeout_ms) : 1;
}

/* Streams were told to end; give their connections a moment to send the end. */
static void drain_streams(api_server *s) {
    int64_t deadline = mono_ms() + 2000;
    while (s->events && api_events_open_count(s->events) > 0 && mono_ms() < deadline)
        sleep_ms(10);
}

void api_server_stop(api_server *s) {
    if (!s) return;
    api_server_begin_shutdown(s);
    while (!api_server_wait_idle(s, 1000)) log_info("waiting for runs to reach a checkpoint");
    drain_streams(s);
    if (s->daemon) MHD_stop_daemon(s->daemon);
    if (s->quiesced_fd != MHD_INVALID_SOCKET) close(s->quiesced_fd);
    api_events_free(s->events);
    api_exports_free(s->exports); /* after the daemon: no handler can start one now */
    api_runs_free(s->runs);
    api_metrics_free(s->metrics);
    api_throttle_free(s->throttle);
    if (s->store_key_made) pthread_key_delete(s->store_key);
    for (size_t i = 0; i < s->ncors; i++) free(s->cors[i]);
    free(s->cors);
    free(s->routes);
    free(s->db_url);
    free(s->default_llm);
    free(s->conversation_url);
    free(s->owner);
    free(s);
}
