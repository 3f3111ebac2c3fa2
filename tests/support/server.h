/* Test support for the HTTP API: spawn `feedline serve` as a real process on an
 * ephemeral loopback port (waiting for its "listening on 127.0.0.1:PORT" line), stop or
 * kill it, and an HTTP client over libcurl (easy interface) for requests. */
#ifndef FEEDLINE_TEST_SERVER_H
#define FEEDLINE_TEST_SERVER_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct test_server {
    pid_t pid;
    int port;
    char base[64];     /* "http://127.0.0.1:PORT" */
    char *log_path;    /* the server's stderr */
} test_server;

/* Starts FEEDLINE_BIN (the sanitizer build) `serve --db db --listen 127.0.0.1:0` plus
 * extra arguments (NULL-terminated, may be NULL; a later --listen ADDR:0 wins, base
 * still names 127.0.0.1) and environment additions ("K=V", NULL-terminated, may be
 * NULL). Waits up to 60 s for the listening line. 0 or -1. */
int ts_start(test_server *s, const char *db, const char *const extra[], const char *const env[]);
/* A fresh, migrated, empty database (fx_db_url) and a server on it (ts_start); s.pid
 * is 0 when it did not start. *db is the database's URL, for ts_finish. */
test_server ts_start_empty(char **db, const char *const extra[], const char *const env[]);
/* ts_stop with 30 s to spare, then removes and frees db. The stop's status: 0 for a
 * clean, leak-free shutdown. */
int ts_finish(test_server *s, char *db);
/* SIGTERM, then waits up to timeout_ms for the exit. Returns the exit status (0 for a
 * clean, leak-free shutdown), or -1 if it did not exit in time (it is then killed) or
 * died by a signal. Frees the struct's fields. */
int ts_stop(test_server *s, int timeout_ms);
/* SIGKILL and reap (no shutdown at all). */
void ts_kill9(test_server *s);
/* A raw TCP connection to 127.0.0.1:port, from source address 127.0.0.src_last when
 * src_last > 0 (loopback has the whole 127/8: tests play several clients); the fd, or
 * -1. For tests that write requests byte by byte. */
int ts_connect(int port, int src_last);
/* Prints the last lines of the server's stderr (for failing tests). */
void ts_dump_log(const test_server *s);

typedef struct http_resp {
    long status;       /* 0 when the request failed at the transport level */
    char *body;        /* NUL-terminated */
    size_t len;
    char *headers;     /* raw response headers */
    json_t *json;      /* parsed body, or NULL */
    double seconds;    /* total time */
} http_resp;

/* One request. headers: NULL-terminated "Name: value" strings or NULL. body NULL =
 * none. Returns 0 when an HTTP response arrived. Free with http_resp_free. */
int http_do(const char *method, const char *url, const char *body, const char *const headers[],
            http_resp *out);
void http_resp_free(http_resp *r);
/* The value of a response header (case-insensitive name), malloc'ed, or NULL. */
char *http_header(const http_resp *r, const char *name);

/* Shorthands on a server: GET/POST base+path. */
int ts_get(const test_server *s, const char *path, http_resp *out);
int ts_post(const test_server *s, const char *path, const char *body, http_resp *out);

/* Polls GET /api/pipeline/status/{id} until pred(status json, ctx) is true or the
 * deadline passes; returns the last status json (caller decrefs) and sets *ok. */
json_t *ts_wait_status(const test_server *s, int64_t run_id, int timeout_ms,
                       int (*pred)(const json_t *status, void *ctx), void *ctx, int *ok);
/* Common predicates: status is terminal; current_phase equals ctx (a string). */
int ts_is_terminal(const json_t *status, void *ctx);
int ts_in_phase(const json_t *status, void *ctx);

/* A new SQLite database in a fresh temp directory holding n conversations drawn from
 * the conversation generator (seed; created over the 30 days before now), or the
 * bundled sample when n == 0. Caller frees the path. */
char *ts_corpus_db(size_t n, uint64_t seed);
/* A copy of a closed database (see fx_db_copy). Caller frees. */
char *ts_copy_db(const char *db);
/* Removes the temp directory holding db. */
void ts_remove_db(const char *db);
/* Starts a run with a JSON body; the run id, or -1 (the response is printed). */
int64_t ts_start_run(const test_server *s, const char *body);
/* The stories of a run as sorted "signature|title|ids" lines, via GET /api/stories. */
char *ts_stories_fingerprint(const test_server *s, int64_t run_id);

#endif
