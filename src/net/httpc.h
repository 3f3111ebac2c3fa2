/* httpc — an asynchronous HTTP client on one libcurl multi handle: every request is a
 * transfer on the same multi (keep-alive connection reuse, no thread per request);
 * httpc_poll() drives them and calls each request's done callback once.
 *
 * One httpc per thread. The caller decides how many requests are in flight (it submits
 * only what its flow control allows); httpc performs what is submitted. Responses are
 * bounded (max_response_bytes) and headers are captured for retry decisions. */
#ifndef FEEDLINE_HTTPC_H
#define FEEDLINE_HTTPC_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef struct httpc httpc;
typedef struct httpc_request httpc_request;
typedef void (*httpc_done_fn)(httpc_request *req);

#define HTTPC_MAX_HEADERS 48

typedef struct httpc_header {
    char *name;  /* lower-cased */
    char *value; /* trimmed */
} httpc_header;

struct httpc_request {
    /* --- request (set with the functions below) --- */
    char *method;
    char *url;
    void *headers;          /* struct curl_slist * */
    char *body;
    size_t body_len;
    char *userpwd;          /* "user:password" for HTTP Basic auth, or NULL */
    long timeout_ms;        /* whole transfer; 0 = no limit */
    long connect_timeout_ms;
    size_t max_response_bytes; /* this request's cap if lower than the client's; 0 = the client's */
    httpc_done_fn done;
    void *user;

    /* --- response, valid in done() --- */
    long status;            /* HTTP status, 0 when no response was received */
    int failed;             /* transport failure (no complete response) */
    int timed_out;
    int cancelled;
    int too_large;          /* response over max_response_bytes (aborted) */
    char error[256];        /* transport error text */
    buf_t response;
    httpc_header resp_headers[HTTPC_MAX_HEADERS];
    int nresp_headers;
    int64_t started_us, finished_us;

    void *easy;             /* CURL * while in flight */
    httpc *owner;
};

/* A request; method "GET"/"POST"/..., url copied. */
httpc_request *httpc_request_new(const char *method, const char *url);
/* Adds "Name: value". */
void httpc_request_header(httpc_request *r, const char *name, const char *value);
/* HTTP Basic authentication with user and password (copied; libcurl encodes them). */
void httpc_request_basic_auth(httpc_request *r, const char *user, const char *password);
/* Sets the body (copied). */
void httpc_request_body(httpc_request *r, const char *body, size_t len);
/* Clears the response fields so the same request can be submitted again (a retry). */
void httpc_request_reset_response(httpc_request *r);
void httpc_request_free(httpc_request *r);
/* Case-insensitive response header lookup; NULL if absent. */
const char *httpc_response_header(const httpc_request *r, const char *name);

httpc *httpc_new(size_t max_connections, size_t max_response_bytes);
/* Cancels whatever is in flight (done callbacks run with cancelled = 1), then frees. */
void httpc_free(httpc *h);
/* Starts the request now. 0, or -1 (done will not be called). */
int httpc_submit(httpc *h, httpc_request *r);
/* Drives transfers for up to timeout_ms; runs done callbacks of finished requests
 * (which may submit again). Returns how many finished, or -1 on a libcurl error. */
int httpc_poll(httpc *h, int timeout_ms);
/* Puts the requests submitted since the last poll on the wire now, without waiting or
 * running any done callback (they would otherwise start at the next poll). 0, or -1
 * on a libcurl error. */
int httpc_start(httpc *h);
size_t httpc_in_flight(const httpc *h);
/* Aborts every in-flight request; done runs for each with cancelled = 1. */
void httpc_cancel_all(httpc *h);

/* Percent-encodes s as one URL path segment (RFC 3986 unreserved characters kept): an
 * id from an API or the user cannot change the path ("/" or "?" stay inside the
 * segment). Caller frees. */
char *httpc_encode_segment(const char *s);

/* Calls curl_global_init once (thread-safe). */
void httpc_global_init(void);

#endif
