/* fakehttp — the event-driven HTTP/1.1 server core that feedline's test servers (the fake
 * OpenAI-compatible endpoint, the fake Intercom API) are built on.
 *
 * One thread, one epoll loop, non-blocking loopback sockets; delayed answers wait in a
 * min-heap of deadlines, so thousands of slow requests cost no thread and no sleep.
 * The core parses requests and calls the fake's handler; the handler decides what the
 * client sees: a response now, a response later, or a fault (hang, truncated body,
 * closed connection).
 *
 * Threads: fh_run() runs the loop in the calling thread; fh_start_thread() runs it in a
 * thread the server owns. Handlers and every fh_req_* / fh_respond* / fh_add_header /
 * fh_hang / fh_close* call run on that server thread only. fh_stats(), fh_reset_stats(),
 * fh_port(), fh_stop() and fh_stop_thread() may be called from any thread. A fake that
 * is reconfigured from another thread at run time locks its own state.
 *
 * Request lifetime: a request is valid from the handler call until it is answered
 * (fh_respond*, fh_hang, fh_close*); the core frees it then or later, and the pointer
 * must not be used after the answer call. A handler may keep an unanswered request and
 * answer it from a later handler call. If the client disconnects meanwhile, the request
 * stays valid (answering it then only frees it); unanswered requests still held when the
 * server is destroyed are freed by fh_destroy().
 *
 * Responses leave in request order on each connection (pipelining): a response that is
 * ready waits for the earlier ones, so a hung request blocks the ones behind it, as it
 * would on a real HTTP/1.1 server.
 *
 * Protocol limits and choices:
 *   - strict framing: lines end in CRLF, no obsolete line folding, header names are
 *     tokens; Host is not required. Anything else is malformed;
 *   - header block (request line + headers) <= 64 KiB and <= 256 header lines, else 431
 *     and close;
 *   - body by Content-Length only, <= max_body (default 8 MiB), else 413 and close;
 *     any Transfer-Encoding -> 411 and close; malformed request -> 400 and close;
 *     a version other than HTTP/1.0 or HTTP/1.1 -> 505 and close;
 *   - keep-alive by default for HTTP/1.1, `Connection: close` honoured (and HTTP/1.0 closes
 *     unless it asks for keep-alive); `Expect: 100-continue` gets an interim 100 when the
 *     request is next in line;
 *   - HEAD responses carry the headers (with the body's Content-Length) and no body;
 *   - end of stream from the client (read returns 0, or the peer shut down its side)
 *     aborts the connection at once: its unanswered requests are dropped and counted as
 *     aborted. HTTP clients do not half-close, and this keeps "in flight" exact when a
 *     client gives up on a slow request.
 *   - after a closing response (Connection: close, rejection, truncation, fh_close) the
 *     server shuts down its sending side and discards input until the client closes, at
 *     most 2 s, so unread request bytes cannot turn the close into a reset that destroys
 *     the response; the connection counts as open until then;
 *   - at most 64 requests wait per connection; a pipelining client beyond that is simply
 *     not read until responses go out;
 *   - delays are measured from the answer call and never fire early; with epoll_pwait2
 *     (Linux >= 5.11) they are late by the timer slack only, else by up to 1 ms;
 *   - max_connections: connections beyond it are accepted and closed immediately (the
 *     client sees EOF), and counted in conns_refused. They are never left in the backlog.
 */
#ifndef FEEDLINE_FAKEHTTP_H
#define FEEDLINE_FAKEHTTP_H

#include <stddef.h>
#include <stdint.h>

typedef struct fh_server fh_server;
typedef struct fh_request fh_request;

/* Called once per request, on the server thread. */
typedef void (*fh_handler)(fh_request *req, void *ctx);

#define FH_DEFAULT_MAX_BODY ((size_t)8 << 20)
#define FH_MAX_HEADER_BLOCK ((size_t)64 << 10)

typedef struct fh_options {
    int port;             /* 0: an ephemeral port (read it back with fh_port) */
    int max_connections;  /* 0: unlimited; beyond it: accepted, closed, counted refused */
    size_t max_body;      /* 0: FH_DEFAULT_MAX_BODY */
    int backlog;          /* listen(2) backlog; 0: 1024 */
    fh_handler handler;   /* required */
    void *ctx;            /* passed to the handler */
} fh_options;

#define FH_GAP_BUCKETS 11
#define FH_GAP_FIRST_US 125

/* Counters, updated atomically by the server thread; fh_stats() copies them. */
typedef struct fh_stats {
    uint64_t requests;       /* requests handed to the handler */
    uint64_t rejected;       /* requests the core answered itself (400/411/413/431/505) */
    uint64_t resp_2xx, resp_3xx, resp_4xx, resp_5xx; /* complete responses released to
                                the socket, rejections included; interim 100 Continue and
                                truncated responses are not counted here */
    uint64_t truncated;      /* fh_respond_truncated responses released */
    uint64_t closed;         /* fh_close / fh_close_after carried out */
    uint64_t hung;           /* fh_hang calls */
    uint64_t aborted;        /* requests dropped unanswered because their connection
                                closed first (client gave up, or the server stopped) */
    int64_t in_flight;       /* handed to the handler and not yet answered: a response is
                                "answered" when released to the socket (for delayed ones,
                                when the delay has elapsed), never before the client can
                                see it. Hung requests stay in flight until their
                                connection closes. */
    int64_t max_in_flight;
    int64_t conns_open;
    int64_t max_conns_open;
    uint64_t conns_accepted; /* connections served (refused ones not included) */
    uint64_t conns_refused;  /* closed at once because of max_connections */
    uint64_t bytes_in;       /* bytes read from / written to client sockets */
    uint64_t bytes_out;
    uint64_t delayed;        /* delayed responses released (fh_respond_after*) */
    uint64_t late_us;        /* their lateness summed: release time - due time, the
                                time the server's one thread was busy elsewhere */
    int64_t max_late_us;
    /* How soon a connection whose response went out received its next request (a
     * client's reaction time, when it has work for the connection): the count per
     * FH_GAP_BUCKETS bucket, bucket 0 below 125 us and each next one twice as wide,
     * the last (>= 64 ms) unbounded; and the sum of the gaps below 64 ms. */
    uint64_t gaps[FH_GAP_BUCKETS];
    uint64_t gap_us;
    /* The requests in flight integrated over time, in request-microseconds, up to the
     * moment of the call: divided by a span and a concurrency, how busy a client kept
     * its request slots. */
    uint64_t busy_us;
} fh_stats_t;

/* Binds 127.0.0.1:port (SO_REUSEADDR) and listens. Returns NULL (and logs why) when the
 * socket cannot be set up. The loop does not run until fh_run or fh_start_thread. */
fh_server *fh_create(const fh_options *opts);
/* Stops the background thread if one runs, closes every connection and frees every
 * request, including hung and never-answered ones. NULL is a no-op. A loop the caller
 * runs itself (fh_run in its own thread) must have returned first. */
void fh_destroy(fh_server *srv);

int fh_port(const fh_server *srv);

/* Runs the loop in the calling thread until fh_stop(). On return every connection is
 * closed (their requests dropped as aborted); the listening socket stays open, so the
 * server may be run again. Returns 0, or -1 if epoll failed. */
int fh_run(fh_server *srv);
/* Asks the loop to return; any thread, also async-signal-safe. A stop requested before
 * fh_run starts makes that run return at once. */
void fh_stop(fh_server *srv);
/* fh_run in a thread owned by the server. Returns 0, or -1 if already started or the
 * thread cannot be created. */
int fh_start_thread(fh_server *srv);
/* fh_stop, then joins the thread. No-op when no thread runs. */
void fh_stop_thread(fh_server *srv);

fh_stats_t fh_stats(const fh_server *srv);
/* Zeroes the cumulative counters. The gauges in_flight and conns_open keep their
 * current values, and their maxima restart from them. */
void fh_reset_stats(fh_server *srv);

/* --- Reading a request (server thread). Strings are NUL-terminated and live as long
 * as the request. --- */
const char *fh_req_method(const fh_request *req);   /* "GET" */
const char *fh_req_target(const fh_request *req);   /* raw target: "/a%20b?x=1" */
const char *fh_req_path(const fh_request *req);     /* raw path, not decoded: "/a%20b" */
const char *fh_req_query(const fh_request *req);    /* raw query without '?', or "" */
int fh_req_http_minor(const fh_request *req);       /* 0 or 1 */
/* First header with that name (case-insensitive), value without surrounding blanks;
 * NULL when absent. */
const char *fh_req_header(const fh_request *req, const char *name);
size_t fh_req_header_count(const fh_request *req);
/* i < fh_req_header_count; names as sent. */
void fh_req_header_at(const fh_request *req, size_t i, const char **name, const char **value);
/* Body bytes (NUL-terminated for convenience; may contain NULs); len may be NULL. */
const char *fh_req_body(const fh_request *req, size_t *len);
size_t fh_req_body_len(const fh_request *req);
uint64_t fh_req_id(const fh_request *req);          /* 1, 2, ... per server */
uint64_t fh_req_conn_id(const fh_request *req);     /* 1, 2, ... per server */
int64_t fh_req_arrival_us(const fh_request *req);   /* mono_us() of the read completing it */
fh_server *fh_req_server(const fh_request *req);

/* Query parameter `name` (matched after decoding), %-decoded with '+' as space; "" for
 * "?flag" or "?flag="; NULL when absent. The first occurrence wins. Invalid escapes are
 * kept literally; a decoded %00 ends the C string early. */
const char *fh_query_param(fh_request *req, const char *name);
size_t fh_query_param_count(fh_request *req);
void fh_query_param_at(fh_request *req, size_t i, const char **name, const char **value);

/* Decodes n bytes of src (%XX escapes; '+' as space when plus_as_space) into dst, which
 * must hold n + 1 bytes; returns the decoded length (dst is NUL-terminated). */
size_t fh_percent_decode(char *dst, const char *src, size_t n, int plus_as_space);

/* --- Answering (server thread; exactly one answer per request; a second answer or a
 * malformed status/header aborts the process, as it is a bug in the fake). --- */

/* Adds a response header ("Name: value"); before the answer. Content-Length,
 * Content-Type and Connection are the core's. */
void fh_add_header(fh_request *req, const char *name, const char *value);
/* Sends status (200..599), Content-Type when content_type is not NULL, Content-Length
 * len, the extra headers, and the body (copied). 204 and 304 carry neither body nor
 * Content-Length (len must be 0). */
void fh_respond(fh_request *req, int status, const char *content_type, const void *body,
                size_t len);
/* Same, released delay_ms after this call (<= 0: now). The body is copied now. */
void fh_respond_after(fh_request *req, int64_t delay_ms, int status,
                      const char *content_type, const void *body, size_t len);
/* Same, released delay_us after the request arrived (now if that has passed): an
 * endpoint's latency, which the handler's own work does not lengthen. */
void fh_respond_after_arrival(fh_request *req, int64_t delay_us, int status,
                              const char *content_type, const void *body, size_t len);
/* Never answers: the connection stays open until the client closes it or the server
 * stops. The request remains in flight until then. */
void fh_hang(fh_request *req);
/* After delay_ms, sends headers announcing Content-Length len but only the first
 * send_len bytes of the body (clamped to len), then closes the connection. */
void fh_respond_truncated(fh_request *req, int64_t delay_ms, int status,
                          const char *content_type, const void *body, size_t len,
                          size_t send_len);
/* Closes the connection without answering (when earlier responses on the connection
 * have been sent). fh_close_after waits delay_ms first. */
void fh_close(fh_request *req);
void fh_close_after(fh_request *req, int64_t delay_ms);

#endif
