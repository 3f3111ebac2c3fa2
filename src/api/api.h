/* api — the HTTP API behind `feedline serve`: libmicrohttpd with an internal thread
 * pool (one worker per core, poll(); see server.c for why not epoll), JSON via jansson,
 * one file per router (routes_pipeline.c, routes_themes.c, routes_stories.c,
 * routes_health.c).
 *
 * The contract of /api/pipeline is the original's (reference/original-api_lifecycle.md
 * §1) with its bugs fixed, plus resume, server-sent events, themes, stories, health,
 * Prometheus metrics and an OpenAPI document describing every route (GET
 * /openapi.json, generated from the route tables).
 *
 * Owns: HTTP framing limits, routing, authentication, CORS, request validation, the
 * threads that drive the runs this process started or resumed, the event streams and
 * the metrics. Must not: hold run state the database does not also have (the
 * pipeline_runs row is the truth: start, stop, active and resume are database
 * transitions, so several processes on one database agree), or do pipeline work on an
 * HTTP thread (request handlers only run short indexed queries on a per-thread store
 * connection; SQLite WAL readers never wait for the run's writes).
 *
 * In-memory state, all bounded and locked:
 *  - run threads (runs.c, one mutex): at most API_MAX_JOBS slots, each a pipeline run
 *    or a create-stories job this process drives, until the ticker joins it;
 *  - event streams (events.c, one mutex): at most API_MAX_EVENT_STREAMS, each with at
 *    most API_EVENT_BUFFER bytes queued (a client that falls further behind is dropped);
 *  - request bodies: at most API_MAX_BODY bytes are kept (larger requests get 413);
 *  - connections: at most API_MAX_CONNECTIONS, API_CONN_MEMORY bytes of header and
 *    buffer memory each (libmicrohttpd's own bound), idle ones closed after
 *    API_IDLE_TIMEOUT_S seconds;
 *  - metrics (metrics.c): fixed arrays of atomics (routes x status codes, latency
 *    buckets); nothing grows with traffic;
 *  - response caches (cache.c): per HTTP worker thread (so unlocked), 8 answers of at
 *    most 256 KiB, reused only while the database is unchanged;
 *  - store connections: one per HTTP worker thread, plus one each for the ticker and
 *    the event publisher, plus one per run thread (opened by the pipeline). */
#ifndef FEEDLINE_API_H
#define FEEDLINE_API_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/pipeline.h"
#include "text/vocab.h"

#define API_MAX_JOBS 4
#define API_MAX_EVENT_STREAMS 64
#define API_EVENT_BUFFER (64 * 1024)
#define API_MAX_BODY (64 * 1024)
#define API_MAX_CONNECTIONS 1024
/* per client address: one address cannot take every connection (slow clients) */
#define API_MAX_CONNECTIONS_PER_IP 512
#define API_CONN_MEMORY (32 * 1024)
#define API_IDLE_TIMEOUT_S 30

/* ------------------------------------------------------------------ tokens (auth.c) */

/* What a token grants. A "read" token grants READ and METRICS, an "operate" token all
 * three, a "metrics" token only METRICS (for a Prometheus scraper). */
enum api_role { API_ROLE_READ = 1u, API_ROLE_OPERATE = 2u, API_ROLE_METRICS = 4u };

/* The configured tokens, as SHA-256 digests with their roles (never the tokens). */
typedef struct api_tokens api_tokens;

api_tokens *api_tokens_new(void);
void api_tokens_free(api_tokens *t);
/* Adds one token with role "read", "operate" or "metrics". 0, or -1 with the reason
 * (never the token) in err. */
int api_tokens_add(api_tokens *t, const char *role, const char *token, char *err,
                   size_t errlen);
/* Adds the tokens of a "ROLE:TOKEN,ROLE:TOKEN" list (blanks around items ignored).
 * Errors name what (e.g. "FEEDLINE_API_TOKENS") and the item's position. */
int api_tokens_parse_list(api_tokens *t, const char *list, const char *what, char *err,
                          size_t errlen);
/* Adds the tokens of a file of "ROLE TOKEN" lines (blank lines and # comments
 * skipped). Errors name FILE:LINE. Warns when others may read the file. */
int api_tokens_load_file(api_tokens *t, const char *path, char *err, size_t errlen);
/* The API_ROLE_* bits a presented token grants (0 = none), comparing its digest with
 * every configured one in constant time. */
unsigned api_tokens_check(const api_tokens *t, const char *token);
/* The union of the roles configured tokens grant (0 = no token; t may be NULL). */
unsigned api_tokens_configured(const api_tokens *t);
size_t api_tokens_count(const api_tokens *t);

/* ------------------------------------------------------------------ server */

typedef struct api_config {
    const char *db_url;        /* SQLite path or postgres:// URL */
    const char *listen;        /* "ADDR:PORT", IPv4 or [IPv6]; port 0 = ephemeral */
    const vocab *vocab;        /* borrowed; outlives the server */
    const char *default_llm;   /* the "llm" of a run request that names none */
    /* Bearer tokens (borrowed; outlives the server), NULL or empty = none. With a read
     * or operate token configured, every route but the open ones (the dashboard page,
     * /health, /openapi.json) needs a token whose role allows it; /metrics needs one as
     * soon as any token, a metrics token included, is configured. */
    const api_tokens *tokens;
    /* Listen on a non-loopback address without a read or operate token. Refused
     * otherwise: the API hands out customers' conversations. */
    int insecure_no_auth;
    const char *const *cors_origins; /* allowed Origin values ("*" = any) */
    size_t ncors;
    int threads;               /* HTTP worker threads; 0 = one per core */
    provider_factory make_provider; /* LLM providers for runs (required) */
    void *provider_ctx;
    const char *owner;         /* "host:pid" of this process (runs.c relies on it) */
    int no_response_cache;     /* answer polled routes from the database every time */
    /* Link to a conversation in the support tool, "{id}" replaced by its id (e.g.
     * "https://app.intercom.com/a/apps/APP/inbox/inbox/conversation/{id}"); NULL = none. */
    const char *conversation_url;
    /* Requests per second each client address may make (429 beyond, with Retry-After;
     * /health is exempt); 0 = no limit. */
    double rate_per_address;
} api_config;

typedef struct api_server api_server;

/* Binds, recovers runs left behind by dead processes, starts the workers. 0, or -1
 * with a message in err. */
int api_server_start(const api_config *cfg, api_server **out, char *err, size_t errlen);
/* "ADDR:PORT" actually bound (with the real port when 0 was asked). */
const char *api_server_address(const api_server *s);
/* Graceful shutdown, step 1: stop accepting connections, ask the runs this process
 * drives to stop at their next checkpoint (marked stopping in the database), end the
 * event streams. Returns at once. */
void api_server_begin_shutdown(api_server *s);
/* Step 2: waits up to timeout_ms for the runs to reach their checkpoint; 1 when none is
 * left, 0 on timeout (call again). */
int api_server_wait_idle(api_server *s, int timeout_ms);
/* Step 3: joins every thread, stops the HTTP daemon, frees everything. Also a
 * complete shutdown on its own (it performs steps 1 and 2 first). */
void api_server_stop(api_server *s);

#endif
