/* fakehttp.c — owns the fake-server core: the listening socket, the epoll loop, the
 * connections, HTTP/1.1 request parsing, in-order (pipelined) release of responses, the
 * deadline heap behind delayed answers and lingering closes, fault injection, and the
 * atomic counters. The contract is in fakehttp.h.
 *
 * How a request moves: bytes are read into the connection's input buffer; processing
 * (conn_process) parses complete requests, queues each on its connection in arrival
 * order and calls the handler. An answer only changes the request's state (READY now,
 * or SCHEDULED in the heap until its deadline, or HUNG) and marks the connection dirty.
 * Once per loop iteration every dirty connection is processed: READY requests at the
 * head of its queue are moved into the output buffer (this is the moment they stop
 * being in flight), more input is parsed, and the output is written. Nothing is freed
 * while an epoll event could still point at it: dead connections wait in a graveyard
 * until the iteration ends. */
#include "fakes/fakehttp.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"

#define MAX_EVENTS 256
#define ACCEPT_BATCH 64
#define PIPELINE_MAX 64            /* queued requests per connection before reading pauses */
#define MAX_HEADERS 256
#define READ_CHUNK ((size_t)16 << 10)
/* Unparsed input kept per connection: enough to see that a header block is too long. */
#define IN_LIMIT (FH_MAX_HEADER_BLOCK + 4)
#define OUT_HIGH ((size_t)1 << 20) /* pending output that pauses reading */
#define BIG_BUFFER ((size_t)256 << 10) /* buffers above this are freed once empty */
#define LINGER_MS 2000
#define NOT_ARMED SIZE_MAX

enum ev_kind { EV_LISTEN, EV_WAKE, EV_CONN };

/* First member of everything registered with epoll; data.ptr points at it. */
struct ev_src {
    enum ev_kind kind;
};

enum timer_kind { TM_REQUEST, TM_LINGER };

/* A deadline in the server's min-heap, embedded in its owner. */
struct timer {
    enum timer_kind kind;
    int64_t due_us;
    size_t idx; /* position in the heap, or NOT_ARMED */
};

enum req_state {
    RQ_PENDING,   /* with the handler, not answered yet */
    RQ_SCHEDULED, /* answered; waits in the heap for its release time */
    RQ_READY,     /* answered; waits for the earlier responses on its connection */
    RQ_HUNG,      /* never answered */
};

enum req_answer { ANS_NONE, ANS_RESPONSE, ANS_TRUNCATED, ANS_CLOSE };

typedef struct kv {
    const char *name;
    const char *value;
} kv_t;

struct conn;

struct fh_request {
    fh_server *srv;
    struct conn *conn;       /* NULL once orphaned (connection gone, handler holds it) */
    fh_request *next;        /* connection queue, or the server's orphan list */
    fh_request *prev;        /* orphan list only */
    enum req_state state;
    enum req_answer answer;
    int synthetic;           /* the core's own error response; no handler saw it */
    int wants_close;         /* the client asked to close after this request */
    int keep_alive_10;       /* HTTP/1.0 with "Connection: keep-alive" */
    int is_head;
    int expects_continue;
    int http_minor;
    int status;
    struct timer tm;
    buf_t extra_headers;
    buf_t response;
    char *raw;               /* header block, tokenised in place */
    char *body_buf;          /* body_len bytes and a NUL */
    char *pathq;             /* copy of the target split at '?' */
    const char *method, *target, *path, *query;
    kv_t *headers;
    size_t nheaders;
    const char *body;
    size_t body_len;
    size_t body_have;        /* while the body is still arriving */
    uint64_t id, conn_id;
    int64_t arrival_us;
    int params_parsed;
    char *params_storage;
    kv_t *params;
    size_t nparams;
};

struct conn {
    struct ev_src src;       /* must stay first */
    fh_server *srv;
    int fd;
    uint64_t id;
    uint32_t events;         /* interest currently registered with epoll */
    int dead;
    int dirty;
    int lingering;           /* our side shut down; discarding input until EOF */
    int stop_parsing;        /* after a closing request or a rejection */
    int close_after_flush;
    int continue_sent;       /* 100 Continue sent for the request being received */
    struct conn *prev, *next;     /* srv->conns */
    struct conn *dirty_next;      /* srv dirty list, then the graveyard */
    char *in;
    size_t in_off, in_len, in_cap;
    int64_t read_us;         /* mono_us() of the last read that brought bytes */
    int64_t answered_us;     /* mono_us() when a response went out with nothing else
                                queued, until the next request arrives; else 0 */
    size_t scan_from;        /* bytes after in_off already searched for the blank line */
    buf_t out;
    size_t out_off;
    fh_request *q_head, *q_tail;
    size_t q_len;
    fh_request *partial;     /* header block parsed, body still arriving */
    struct timer linger;
};

/* Counters shared with other threads (fh_stats); only the server thread writes them,
 * except fh_reset_stats, hence atomics everywhere. */
struct atomic_stats {
    _Atomic uint64_t requests, rejected, resp[6], truncated, closed, hung, aborted;
    _Atomic int64_t in_flight, max_in_flight, conns_open, max_conns_open;
    _Atomic uint64_t conns_accepted, conns_refused, bytes_in, bytes_out;
    _Atomic uint64_t delayed, late_us;
    _Atomic int64_t max_late_us;
    _Atomic uint64_t gaps[FH_GAP_BUCKETS], gap_us;
    /* busy_us: in_flight integrated up to busy_since_us, the last change of in_flight
     * (or the reset); fh_stats adds the stretch since. */
    _Atomic uint64_t busy_us;
    _Atomic int64_t busy_since_us;
};

struct fh_server {
    fh_options opts;
    int listen_fd, epfd, wake_fd, spare_fd;
    int port;
    struct ev_src listen_src, wake_src;
    atomic_int stop_requested;
    atomic_int running;
    int have_pwait2;         /* cleared when the kernel lacks epoll_pwait2 */
    pthread_t loop_thread;   /* valid while running */
    pthread_t thread;        /* fh_start_thread's */
    int thread_started;
    struct conn *conns;
    int nconns;
    struct conn *dirty_head, *dirty_tail;
    struct conn *graveyard;
    struct timer **heap;
    size_t heap_len, heap_cap;
    fh_request *orphans;
    uint64_t next_req_id, next_conn_id;
    struct atomic_stats st;
};

static void conn_abort(struct conn *c);

/* ------------------------------------------------------------------ counters */

static void count(_Atomic uint64_t *c, uint64_t n) { atomic_fetch_add(c, n); }

static void raise_max(_Atomic int64_t *max, int64_t v) {
    int64_t m = atomic_load(max);
    while (v > m && !atomic_compare_exchange_weak(max, &m, v)) {
    }
}

static void gauge_add(_Atomic int64_t *g, _Atomic int64_t *max, int64_t d) {
    int64_t v = atomic_fetch_add(g, d) + d;
    if (d > 0) raise_max(max, v);
}

/* The in_flight changes made so far, integrated up to now, into busy_us. */
static void busy_settle(struct atomic_stats *s, int64_t now) {
    int64_t since = atomic_exchange(&s->busy_since_us, now), n = atomic_load(&s->in_flight);
    if (since > 0 && now > since && n > 0) count(&s->busy_us, (uint64_t)(n * (now - since)));
}

static void in_flight_add(fh_server *srv, int64_t d) {
    busy_settle(&srv->st, mono_us());
    gauge_add(&srv->st.in_flight, &srv->st.max_in_flight, d);
}

fh_stats_t fh_stats(const fh_server *srv) {
    const struct atomic_stats *s = &srv->st;
    fh_stats_t o;
    memset(&o, 0, sizeof o);
    o.requests = atomic_load(&s->requests);
    o.rejected = atomic_load(&s->rejected);
    o.resp_2xx = atomic_load(&s->resp[2]);
    o.resp_3xx = atomic_load(&s->resp[3]);
    o.resp_4xx = atomic_load(&s->resp[4]);
    o.resp_5xx = atomic_load(&s->resp[5]);
    o.truncated = atomic_load(&s->truncated);
    o.closed = atomic_load(&s->closed);
    o.hung = atomic_load(&s->hung);
    o.aborted = atomic_load(&s->aborted);
    o.in_flight = atomic_load(&s->in_flight);
    o.max_in_flight = atomic_load(&s->max_in_flight);
    o.conns_open = atomic_load(&s->conns_open);
    o.max_conns_open = atomic_load(&s->max_conns_open);
    o.conns_accepted = atomic_load(&s->conns_accepted);
    o.conns_refused = atomic_load(&s->conns_refused);
    o.bytes_in = atomic_load(&s->bytes_in);
    o.bytes_out = atomic_load(&s->bytes_out);
    o.delayed = atomic_load(&s->delayed);
    o.late_us = atomic_load(&s->late_us);
    o.max_late_us = atomic_load(&s->max_late_us);
    for (size_t i = 0; i < FH_GAP_BUCKETS; i++) o.gaps[i] = atomic_load(&s->gaps[i]);
    o.gap_us = atomic_load(&s->gap_us);
    /* Read, not settled: only the server thread writes the integral. */
    int64_t since = atomic_load(&s->busy_since_us), now = mono_us();
    o.busy_us = atomic_load(&s->busy_us);
    if (since > 0 && now > since && o.in_flight > 0)
        o.busy_us += (uint64_t)(o.in_flight * (now - since));
    return o;
}

void fh_reset_stats(fh_server *srv) {
    struct atomic_stats *s = &srv->st;
    _Atomic uint64_t *zero[] = {&s->requests,       &s->rejected,       &s->resp[0],
                                &s->resp[1],        &s->resp[2],        &s->resp[3],
                                &s->resp[4],        &s->resp[5],        &s->truncated,
                                &s->closed,         &s->hung,           &s->aborted,
                                &s->conns_accepted, &s->conns_refused,  &s->bytes_in,
                                &s->bytes_out,      &s->delayed,        &s->late_us};
    for (size_t i = 0; i < ARRAY_LEN(zero); i++) atomic_store(zero[i], 0);
    for (size_t i = 0; i < FH_GAP_BUCKETS; i++) atomic_store(&s->gaps[i], 0);
    atomic_store(&s->gap_us, 0);
    atomic_store(&s->busy_us, 0);
    atomic_store(&s->busy_since_us, mono_us());
    /* Gauges keep counting from where they are; their maxima restart there. */
    atomic_store(&s->max_in_flight, atomic_load(&s->in_flight));
    atomic_store(&s->max_conns_open, atomic_load(&s->conns_open));
    atomic_store(&s->max_late_us, 0);
}

/* ------------------------------------------------------------------ deadline heap */

static void heap_set(fh_server *srv, size_t i, struct timer *t) {
    srv->heap[i] = t;
    t->idx = i;
}

static void heap_up(fh_server *srv, size_t i) {
    struct timer *t = srv->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (srv->heap[parent]->due_us <= t->due_us) break;
        heap_set(srv, i, srv->heap[parent]);
        i = parent;
    }
    heap_set(srv, i, t);
}

static void heap_down(fh_server *srv, size_t i) {
    struct timer *t = srv->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        int64_t best = t->due_us;
        if (l < srv->heap_len && srv->heap[l]->due_us < best) {
            m = l;
            best = srv->heap[l]->due_us;
        }
        if (r < srv->heap_len && srv->heap[r]->due_us < best) m = r;
        if (m == i) break;
        heap_set(srv, i, srv->heap[m]);
        i = m;
    }
    heap_set(srv, i, t);
}

static void timer_arm(fh_server *srv, struct timer *t, int64_t due_us) {
    XGROW(srv->heap, srv->heap_cap, srv->heap_len + 1);
    t->due_us = due_us;
    srv->heap[srv->heap_len] = t;
    t->idx = srv->heap_len++;
    heap_up(srv, t->idx);
}

static void timer_disarm(fh_server *srv, struct timer *t) {
    if (t->idx == NOT_ARMED) return;
    size_t i = t->idx, last = --srv->heap_len;
    t->idx = NOT_ARMED;
    if (i == last) return;
    struct timer *moved = srv->heap[last];
    heap_set(srv, i, moved);
    heap_down(srv, i);
    heap_up(srv, moved->idx); /* it may belong above the hole instead */
}

/* Microseconds until the earliest deadline (0 when one is due); -1 when none is armed. */
static int64_t next_timeout_us(const fh_server *srv) {
    if (srv->heap_len == 0) return -1;
    int64_t delta = srv->heap[0]->due_us - mono_us();
    return delta > 0 ? delta : 0;
}

/* ------------------------------------------------------------------ requests */

static void req_free(fh_request *req) {
    if (!req) return;
    buf_free(&req->extra_headers);
    buf_free(&req->response);
    free(req->raw);
    free(req->body_buf);
    free(req->pathq);
    free(req->headers);
    free(req->params_storage);
    free(req->params);
    free(req);
}

static void orphan_link(fh_server *srv, fh_request *req) {
    req->conn = NULL;
    req->prev = NULL;
    req->next = srv->orphans;
    if (srv->orphans) srv->orphans->prev = req;
    srv->orphans = req;
}

static void orphan_free(fh_server *srv, fh_request *req) {
    if (req->prev) req->prev->next = req->next;
    else srv->orphans = req->next;
    if (req->next) req->next->prev = req->prev;
    req_free(req);
}

/* ------------------------------------------------------------------ connections */

/* Queues c for processing at the end of this loop iteration. */
static void conn_touch(struct conn *c) {
    if (!c || c->dead || c->dirty) return;
    fh_server *srv = c->srv;
    c->dirty = 1;
    c->dirty_next = NULL;
    if (srv->dirty_tail) srv->dirty_tail->dirty_next = c;
    else srv->dirty_head = c;
    srv->dirty_tail = c;
}

static void conn_enqueue(struct conn *c, fh_request *req) {
    req->next = NULL;
    if (c->q_tail) c->q_tail->next = req;
    else c->q_head = req;
    c->q_tail = req;
    c->q_len++;
}

static fh_request *conn_dequeue(struct conn *c) {
    fh_request *req = c->q_head;
    if (!req) return NULL;
    c->q_head = req->next;
    if (!c->q_head) c->q_tail = NULL;
    c->q_len--;
    req->next = NULL;
    return req;
}

/* Drops every request still queued on c: they will never be answered on it. Requests
 * the handler still holds become orphans so that its pointer stays valid. */
static void conn_drop_queue(struct conn *c) {
    fh_server *srv = c->srv;
    fh_request *req;
    while ((req = conn_dequeue(c))) {
        if (req->synthetic) {
            req_free(req);
            continue;
        }
        in_flight_add(srv, -1);
        count(&srv->st.aborted, 1);
        if (req->state == RQ_PENDING) {
            orphan_link(srv, req);
        } else {
            timer_disarm(srv, &req->tm);
            req_free(req);
        }
    }
    req_free(c->partial);
    c->partial = NULL;
}

static void set_interest(struct conn *c, uint32_t want) {
    if (want == c->events) return;
    struct epoll_event ev = {.events = want, .data.ptr = &c->src};
    if (epoll_ctl(c->srv->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        log_warn("fakehttp: epoll_ctl(MOD) on connection %" PRIu64 ": %s", c->id,
                 strerror(errno));
        conn_abort(c);
        return;
    }
    c->events = want;
}

/* Reading pauses while the connection has enough work queued (that is the only flow
 * control a pipelining or slow-reading client gets) and stops for good once no further
 * request will be served. The peer's hang-up is always watched. */
static void conn_update_interest(struct conn *c) {
    if (c->dead) return;
    uint32_t want = EPOLLRDHUP;
    if (c->lingering) {
        want |= EPOLLIN;
    } else {
        int out_pending = c->out_off < c->out.len;
        if (!c->stop_parsing && c->q_len < PIPELINE_MAX && c->in_len - c->in_off < IN_LIMIT &&
            c->out.len - c->out_off < OUT_HIGH)
            want |= EPOLLIN;
        if (out_pending) want |= EPOLLOUT;
    }
    set_interest(c, want);
}

static void conn_release_fd(struct conn *c) {
    fh_server *srv = c->srv;
    /* Counters change before the close the client can observe. */
    gauge_add(&srv->st.conns_open, &srv->st.max_conns_open, -1);
    if (close(c->fd) < 0) log_debug("fakehttp: close: %s", strerror(errno));
    c->fd = -1;
    c->dead = 1;
    if (c->prev) c->prev->next = c->next;
    else srv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    srv->nconns--;
    timer_disarm(srv, &c->linger);
    /* Freed at the end of the loop iteration: epoll events or the dirty list may still
     * name it. */
    c->prev = NULL;
    c->next = srv->graveyard;
    srv->graveyard = c;
}

/* Closes at once, dropping whatever is queued (client gone, I/O error, server stop). */
static void conn_abort(struct conn *c) {
    if (c->dead) return;
    conn_drop_queue(c);
    conn_release_fd(c);
}

/* Closes after the last response was written: shut our side down, then read and discard
 * until the client closes too (or LINGER_MS passes), so that unread request bytes do not
 * turn the close into a reset that could destroy the response before the client reads
 * it. */
static void conn_close_gracefully(struct conn *c) {
    conn_drop_queue(c);
    if (shutdown(c->fd, SHUT_WR) < 0) {
        conn_abort(c);
        return;
    }
    c->lingering = 1;
    c->stop_parsing = 1;
    timer_arm(c->srv, &c->linger, mono_us() + (int64_t)LINGER_MS * 1000);
    conn_update_interest(c);
}

static void conn_free(struct conn *c) {
    free(c->in);
    buf_free(&c->out);
    free(c);
}

static void conn_new(fh_server *srv, int fd) {
    int one = 1;
    /* Responses are written whole; Nagle would only add latency to pipelined ones. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        log_debug("fakehttp: TCP_NODELAY: %s", strerror(errno));
    struct conn *c = xcalloc(1, sizeof *c);
    c->src.kind = EV_CONN;
    c->srv = srv;
    c->fd = fd;
    c->events = EPOLLIN | EPOLLRDHUP;
    c->linger.kind = TM_LINGER;
    c->linger.idx = NOT_ARMED;
    struct epoll_event ev = {.events = c->events, .data.ptr = &c->src};
    if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        log_warn("fakehttp: epoll_ctl(ADD): %s", strerror(errno));
        if (close(fd) < 0) log_debug("fakehttp: close: %s", strerror(errno));
        free(c);
        return;
    }
    c->id = ++srv->next_conn_id;
    c->next = srv->conns;
    if (srv->conns) srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    count(&srv->st.conns_accepted, 1);
    gauge_add(&srv->st.conns_open, &srv->st.max_conns_open, 1);
}

/* ------------------------------------------------------------------ responses */

static const char *reason_phrase(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Status";
    }
}

/* A fake that misuses the core has a bug; stop loudly rather than send garbage. */
static void misuse(const char *what, const char *problem) {
    log_error("fakehttp: %s: %s", what, problem);
    abort();
}

/* Formats the whole response into req->response now (the caller's body may not outlive
 * the call); only the first send_len body bytes are kept. */
static void build_response(fh_request *req, int status, const char *content_type,
                           const void *body, size_t len, size_t send_len) {
    if (status < 200 || status > 599) misuse("respond", "status outside 200..599");
    int bodyless = status == 204 || status == 304;
    if (bodyless && len > 0) misuse("respond", "204/304 with a body");
    if (content_type && strpbrk(content_type, "\r\n"))
        misuse("respond", "CR/LF in the content type");
    buf_t *b = &req->response;
    buf_reserve(b, 128 + req->extra_headers.len + (req->is_head ? 0 : send_len));
    buf_printf(b, "HTTP/1.1 %d %s\r\n", status, reason_phrase(status));
    if (content_type) buf_printf(b, "Content-Type: %s\r\n", content_type);
    if (!bodyless) buf_printf(b, "Content-Length: %zu\r\n", len);
    buf_append(b, req->extra_headers.data ? req->extra_headers.data : "",
               req->extra_headers.len);
    if (req->wants_close) buf_puts(b, "Connection: close\r\n");
    else if (req->keep_alive_10) buf_puts(b, "Connection: keep-alive\r\n");
    buf_puts(b, "\r\n");
    if (!req->is_head && send_len > 0) buf_append(b, body, send_len);
    req->status = status;
}

/* The core's own answer to a request it will not hand to the handler; the connection
 * closes after it and nothing more is read. */
static void conn_reject(struct conn *c, int status) {
    fh_request *req = xcalloc(1, sizeof *req);
    req->srv = c->srv;
    req->conn = c;
    req->synthetic = 1;
    req->wants_close = 1;
    req->tm.kind = TM_REQUEST;
    req->tm.idx = NOT_ARMED;
    char body[96];
    int n = snprintf(body, sizeof body, "%d %s\n", status, reason_phrase(status));
    build_response(req, status, "text/plain", body, (size_t)n, (size_t)n);
    req->answer = ANS_RESPONSE;
    req->state = RQ_READY;
    conn_enqueue(c, req);
    c->stop_parsing = 1;
    count(&c->srv->st.rejected, 1);
}

/* Appends the bytes of a released response, stealing its buffer when out is empty
 * (large echo bodies are then never copied twice). */
static void conn_take_output(struct conn *c, buf_t *resp) {
    if (c->out_off == c->out.len) {
        buf_free(&c->out);
        c->out = *resp;
        c->out_off = 0;
        *resp = (buf_t)BUF_INIT;
        return;
    }
    buf_append(&c->out, resp->data, resp->len);
}

/* Interim "100 Continue" for a client waiting before it sends its body; only when the
 * request being received is next in line, so it cannot overtake a response. */
static void conn_maybe_continue(struct conn *c) {
    fh_request *p = c->partial;
    if (!p || !p->expects_continue || c->continue_sent || p->body_have > 0 || c->q_len > 0)
        return;
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    buf_append(&c->out, cont, sizeof cont - 1);
    c->continue_sent = 1;
}

/* Moves READY responses at the head of the queue into the output buffer. This is where
 * a request stops being in flight: before any byte of its response can reach the
 * client. */
static void conn_pump(struct conn *c) {
    fh_server *srv = c->srv;
    while (c->q_head && c->q_head->state == RQ_READY) {
        fh_request *req = conn_dequeue(c);
        if (!req->synthetic) in_flight_add(srv, -1);
        switch (req->answer) {
        case ANS_RESPONSE:
            conn_take_output(c, &req->response);
            count(&srv->st.resp[req->status / 100], 1);
            c->answered_us = c->q_head || c->partial ? 0 : mono_us();
            if (req->wants_close) c->close_after_flush = 1;
            break;
        case ANS_TRUNCATED:
            conn_take_output(c, &req->response);
            count(&srv->st.truncated, 1);
            c->close_after_flush = 1;
            break;
        case ANS_CLOSE:
            count(&srv->st.closed, 1);
            c->close_after_flush = 1;
            break;
        case ANS_NONE:
            break;
        }
        req_free(req);
        if (c->close_after_flush) {
            c->stop_parsing = 1;
            conn_drop_queue(c);
            return;
        }
    }
    conn_maybe_continue(c);
}

/* Writes as much output as the socket takes; closes once a closing response is out. */
static void conn_flush(struct conn *c) {
    fh_server *srv = c->srv;
    while (c->out_off < c->out.len) {
        ssize_t w = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off,
                         MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            conn_abort(c); /* EPIPE, ECONNRESET: the client is gone */
            return;
        }
        count(&srv->st.bytes_out, (uint64_t)w);
        c->out_off += (size_t)w;
    }
    if (c->out.cap > BIG_BUFFER) buf_free(&c->out);
    else buf_reset(&c->out);
    c->out_off = 0;
    if (c->close_after_flush && !c->lingering) conn_close_gracefully(c);
}

/* ------------------------------------------------------------------ parsing */

static int is_tchar(unsigned char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static int is_token(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (!is_tchar((unsigned char)*s)) return 0;
    return 1;
}

/* Case-insensitive search for token in a comma-separated header value. */
static int has_token(const char *list, const char *token) {
    size_t tl = strlen(token);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *start = p;
        while (*p && *p != ',') p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t')) end--;
        if ((size_t)(end - start) == tl && strncasecmp(start, token, tl) == 0) return 1;
    }
    return 0;
}

/* Parses "1234" strictly; values above limit report *too_big instead of overflowing. */
static int parse_length(const char *s, size_t limit, size_t *out, int *too_big) {
    size_t v = 0;
    if (!*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        if (v > (SIZE_MAX - 9) / 10) {
            *too_big = 1;
            v = SIZE_MAX;
            continue;
        }
        v = v * 10 + (size_t)(*s - '0');
    }
    if (v > limit) *too_big = 1;
    *out = v;
    return 0;
}

/* Splits one CRLF-terminated line off *p (in place); NULL when the line holds a bare
 * CR or LF, which this strict parser refuses. */
static char *take_line(char **p) {
    char *line = *p;
    char *cr = strchr(line, '\r');
    if (!cr || cr[1] != '\n') return NULL;
    *cr = '\0';
    if (strchr(line, '\n')) return NULL;
    *p = cr + 2;
    return line;
}

/* Request line: METHOD SP target SP HTTP/1.x. Returns 0, or the status to reject with. */
static int parse_request_line(fh_request *req, char *line) {
    char *sp1 = strchr(line, ' ');
    if (!sp1) return 400;
    *sp1 = '\0';
    char *target = sp1 + 1;
    char *sp2 = strchr(target, ' ');
    if (!sp2) return 400;
    *sp2 = '\0';
    const char *version = sp2 + 1;
    if (!is_token(line)) return 400;
    if (target[0] != '/' && strcmp(target, "*") != 0) return 400;
    for (const char *t = target; *t; t++)
        if ((unsigned char)*t <= 0x20 || *t == 0x7f) return 400;
    if (strncmp(version, "HTTP/", 5) != 0) return 400;
    const char *v = version + 5;
    if (!(v[0] >= '0' && v[0] <= '9' && v[1] == '.' && v[2] >= '0' && v[2] <= '9' && !v[3]))
        return 400;
    if (v[0] != '1') return 505;
    req->method = line;
    req->target = target;
    req->http_minor = v[2] == '0' ? 0 : 1;
    req->is_head = strcmp(line, "HEAD") == 0;
    req->pathq = xstrdup(target);
    char *q = strchr(req->pathq, '?');
    if (q) *q = '\0';
    req->path = req->pathq;
    req->query = q ? q + 1 : "";
    return 0;
}

static int parse_header_line(fh_request *req, char *line, size_t *cap) {
    if (*line == ' ' || *line == '\t') return 400; /* obsolete line folding */
    char *colon = strchr(line, ':');
    if (!colon) return 400;
    *colon = '\0';
    if (!is_token(line)) return 400;
    char *value = colon + 1;
    while (*value == ' ' || *value == '\t') value++;
    char *end = value + strlen(value);
    while (end > value && (end[-1] == ' ' || end[-1] == '\t')) *--end = '\0';
    for (const char *v = value; *v; v++)
        if (((unsigned char)*v < 0x20 && *v != '\t') || *v == 0x7f) return 400;
    if (req->nheaders == MAX_HEADERS) return 431;
    XGROW(req->headers, *cap, req->nheaders + 1);
    req->headers[req->nheaders].name = line;
    req->headers[req->nheaders].value = value;
    req->nheaders++;
    return 0;
}

/* Applies the headers the core itself acts on. Returns 0 or a status to reject with. */
static int apply_framing_headers(fh_request *req, size_t max_body) {
    int have_length = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        const char *name = req->headers[i].name, *value = req->headers[i].value;
        if (strcasecmp(name, "Content-Length") == 0) {
            size_t len = 0;
            int too_big = 0;
            if (parse_length(value, max_body, &len, &too_big) < 0) return 400;
            if (have_length && len != req->body_len) return 400;
            if (too_big) return 413;
            req->body_len = len;
            have_length = 1;
        } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
            return 411; /* chunked request bodies are not supported */
        } else if (strcasecmp(name, "Connection") == 0) {
            if (has_token(value, "close")) req->wants_close = 1;
            if (has_token(value, "keep-alive")) req->keep_alive_10 = req->http_minor == 0;
        } else if (strcasecmp(name, "Expect") == 0) {
            if (strcasecmp(value, "100-continue") == 0) req->expects_continue = 1;
        }
    }
    if (req->http_minor == 0 && !req->keep_alive_10) req->wants_close = 1;
    if (req->wants_close) req->keep_alive_10 = 0;
    return 0;
}

/* Parses a header block of head_len bytes at src into a new request with room for its
 * body. Returns the request, or NULL with *status set. */
static fh_request *parse_head(struct conn *c, const char *src, size_t head_len, int *status) {
    fh_request *req = xcalloc(1, sizeof *req);
    req->srv = c->srv;
    req->conn = c;
    req->tm.kind = TM_REQUEST;
    req->tm.idx = NOT_ARMED;
    req->raw = xmalloc(head_len + 1);
    memcpy(req->raw, src, head_len);
    req->raw[head_len - 2] = '\0'; /* the final CRLF ends the block */
    char *p = req->raw;
    char *line = take_line(&p);
    /* A NUL would silently end the string parsing below. */
    *status = line && !memchr(src, '\0', head_len) ? parse_request_line(req, line) : 400;
    size_t cap = 0;
    while (*status == 0 && *p) {
        line = take_line(&p);
        *status = line ? parse_header_line(req, line, &cap) : 400;
    }
    if (*status == 0) *status = apply_framing_headers(req, c->srv->opts.max_body);
    if (*status != 0) {
        req_free(req);
        return NULL;
    }
    req->body_buf = xmalloc(req->body_len + 1);
    req->body_buf[req->body_len] = '\0'; /* NUL-terminated for convenience */
    return req;
}

/* A connection's idle time between a response and the next request (fh_stats_t). */
static void count_gap(fh_server *srv, int64_t us) {
    size_t b = 0;
    for (int64_t edge = FH_GAP_FIRST_US; b + 1 < FH_GAP_BUCKETS && us >= edge; edge *= 2) b++;
    count(&srv->st.gaps[b], 1);
    if (b + 1 < FH_GAP_BUCKETS) count(&srv->st.gap_us, (uint64_t)(us > 0 ? us : 0));
}

/* A request is complete: queue it in arrival order and hand it to the handler. */
static void conn_dispatch(struct conn *c, fh_request *req) {
    fh_server *srv = c->srv;
    req->body = req->body_buf;
    req->id = ++srv->next_req_id;
    req->conn_id = c->id;
    /* When its last bytes were read, not now: the requests read in the same round are
     * parsed and handled one after another on this one thread, and a delayed answer's
     * latency must not include the handling of the others (a real endpoint handles
     * them in parallel). */
    req->arrival_us = c->read_us ? c->read_us : mono_us();
    if (c->answered_us) count_gap(srv, req->arrival_us - c->answered_us);
    c->answered_us = 0;
    req->state = RQ_PENDING;
    conn_enqueue(c, req);
    if (req->wants_close) c->stop_parsing = 1;
    count(&srv->st.requests, 1);
    in_flight_add(srv, 1);
    srv->opts.handler(req, srv->opts.ctx);
}

static void conn_consume(struct conn *c, size_t n) {
    c->in_off += n;
    c->scan_from = 0;
    if (c->in_off == c->in_len) c->in_off = c->in_len = 0;
}

/* Copies arriving body bytes into the partial request; dispatches it when complete.
 * Returns 1 when a request was dispatched. */
static int conn_fill_body(struct conn *c) {
    fh_request *req = c->partial;
    size_t avail = c->in_len - c->in_off;
    size_t take = MIN(avail, req->body_len - req->body_have);
    if (take > 0) {
        memcpy(req->body_buf + req->body_have, c->in + c->in_off, take);
        req->body_have += take;
        c->in_off += take;
        if (c->in_off == c->in_len) c->in_off = c->in_len = 0;
    }
    if (req->body_have < req->body_len) return 0;
    c->partial = NULL;
    c->continue_sent = 0;
    conn_dispatch(c, req);
    return 1;
}

/* Finds and parses the next header block. Returns 1 when a request became partial (or
 * complete), 0 when more input is needed, -1 after a rejection. */
static int conn_parse_head(struct conn *c) {
    /* Empty lines before a request line are tolerated (RFC 9112, 2.2). */
    while (c->in_off < c->in_len && (c->in[c->in_off] == '\r' || c->in[c->in_off] == '\n'))
        conn_consume(c, 1);
    size_t avail = c->in_len - c->in_off;
    if (avail == 0) return 0;
    const char *start = c->in + c->in_off;
    size_t from = c->scan_from > 3 ? c->scan_from - 3 : 0;
    const char *end = memmem(start + from, avail - from, "\r\n\r\n", 4);
    if (!end) {
        c->scan_from = avail;
        if (avail > FH_MAX_HEADER_BLOCK) {
            conn_reject(c, 431);
            return -1;
        }
        return 0;
    }
    size_t head_len = (size_t)(end - start) + 4;
    if (head_len > FH_MAX_HEADER_BLOCK) {
        conn_reject(c, 431);
        return -1;
    }
    int status = 0;
    fh_request *req = parse_head(c, start, head_len, &status);
    if (!req) {
        conn_reject(c, status);
        return -1;
    }
    conn_consume(c, head_len);
    c->partial = req;
    c->continue_sent = 0;
    return 1;
}

/* Parses and dispatches what the input holds, up to the pipelining limit. Returns the
 * number of requests handed to the handler. */
static int conn_parse(struct conn *c) {
    int dispatched = 0;
    while (!c->dead && !c->stop_parsing && c->q_len < PIPELINE_MAX) {
        if (!c->partial && conn_parse_head(c) <= 0) break;
        if (conn_fill_body(c)) {
            dispatched++;
            continue;
        }
        conn_maybe_continue(c);
        break;
    }
    return dispatched;
}

/* Makes room for reading: compacts, then grows up to what IN_LIMIT needs. */
static size_t conn_read_room(struct conn *c) {
    if (c->in_off > 0 && c->in_cap - c->in_len < READ_CHUNK) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    if (c->in_cap - c->in_len < READ_CHUNK && c->in_cap < IN_LIMIT + READ_CHUNK) {
        size_t ncap = c->in_cap ? c->in_cap * 2 : READ_CHUNK;
        if (ncap > IN_LIMIT + READ_CHUNK) ncap = IN_LIMIT + READ_CHUNK;
        c->in = xrealloc(c->in, ncap);
        c->in_cap = ncap;
    }
    return c->in_cap - c->in_len;
}

/* Discards input on a connection we are closing; EOF ends it. */
static void conn_read_lingering(struct conn *c) {
    char sink[4096];
    ssize_t r = recv(c->fd, sink, sizeof sink, 0);
    if (r > 0) {
        count(&c->srv->st.bytes_in, (uint64_t)r);
        return;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    conn_abort(c);
}

static void conn_read(struct conn *c) {
    if (c->lingering) {
        conn_read_lingering(c);
        return;
    }
    size_t room = conn_read_room(c);
    if (room == 0) { /* cannot happen while reading is enabled; re-check interest */
        conn_touch(c);
        return;
    }
    ssize_t r = recv(c->fd, c->in + c->in_len, room, 0);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        conn_abort(c);
        return;
    }
    if (r == 0) { /* the client closed (or half-closed): see fakehttp.h */
        conn_abort(c);
        return;
    }
    count(&c->srv->st.bytes_in, (uint64_t)r);
    c->in_len += (size_t)r;
    c->read_us = mono_us();
    conn_touch(c);
}

/* One round of work for a dirty connection: release, parse (handlers may answer at
 * once, so release again), write, and adjust epoll interest. */
static void conn_process(struct conn *c) {
    for (;;) {
        conn_pump(c);
        if (c->dead || conn_parse(c) == 0) break;
    }
    if (c->dead) return;
    conn_pump(c); /* a rejection the last parse queued */
    if (c->dead) return;
    conn_flush(c);
    if (!c->dead && !c->out.len && c->in_cap > BIG_BUFFER && c->in_off == c->in_len) {
        free(c->in);
        c->in = NULL;
        c->in_cap = c->in_off = c->in_len = 0;
    }
    conn_update_interest(c);
}

static void conn_event(struct conn *c, uint32_t events) {
    if (c->dead) return;
    if (events & EPOLLERR) {
        conn_abort(c);
        return;
    }
    if (events & EPOLLIN) {
        conn_read(c);
        if (c->dead) return;
    } else if (events & (EPOLLHUP | EPOLLRDHUP)) {
        conn_abort(c);
        return;
    }
    if (events & EPOLLOUT) conn_touch(c);
}

/* ------------------------------------------------------------------ loop */

/* With every descriptor in use, accept(2) keeps failing and level-triggered epoll keeps
 * waking: give up a reserved descriptor to accept and drop one pending connection. */
static void accept_shed_one(fh_server *srv) {
    if (srv->spare_fd < 0) return;
    if (close(srv->spare_fd) < 0) log_debug("fakehttp: close: %s", strerror(errno));
    int fd = accept(srv->listen_fd, NULL, NULL);
    if (fd >= 0) {
        count(&srv->st.conns_refused, 1);
        if (close(fd) < 0) log_debug("fakehttp: close: %s", strerror(errno));
    }
    srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    log_warn("fakehttp: out of file descriptors, refused a connection");
}

static void accept_ready(fh_server *srv) {
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE) accept_shed_one(srv);
            else if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn("fakehttp: accept: %s", strerror(errno));
            return;
        }
        if (srv->opts.max_connections > 0 && srv->nconns >= srv->opts.max_connections) {
            /* Counted first: the client may look at the counters once it sees EOF. */
            count(&srv->st.conns_refused, 1);
            if (close(fd) < 0) log_debug("fakehttp: close: %s", strerror(errno));
            continue;
        }
        conn_new(srv, fd);
    }
}

static void drain_wake(fh_server *srv) {
    uint64_t v;
    while (read(srv->wake_fd, &v, sizeof v) == (ssize_t)sizeof v) {
    }
}

static void release_due_timers(fh_server *srv) {
    int64_t now = mono_us();
    while (srv->heap_len > 0 && srv->heap[0]->due_us <= now) {
        struct timer *t = srv->heap[0];
        timer_disarm(srv, t);
        if (t->kind == TM_REQUEST) {
            fh_request *req = (fh_request *)((char *)t - offsetof(fh_request, tm));
            count(&srv->st.delayed, 1);
            count(&srv->st.late_us, (uint64_t)(now - t->due_us));
            raise_max(&srv->st.max_late_us, now - t->due_us);
            req->state = RQ_READY;
            conn_touch(req->conn);
        } else {
            conn_abort((struct conn *)((char *)t - offsetof(struct conn, linger)));
        }
    }
}

/* Processes dirty connections until none is left (handlers may dirty others), then
 * frees the dead ones: no event or list can name them any more. */
static void settle(fh_server *srv) {
    struct conn *c;
    while ((c = srv->dirty_head)) {
        srv->dirty_head = c->dirty_next;
        if (!srv->dirty_head) srv->dirty_tail = NULL;
        c->dirty_next = NULL;
        /* Still flagged while processed: answers given meanwhile are seen by the loop
         * in conn_process, no second pass needed. */
        if (!c->dead) conn_process(c);
        c->dirty = 0;
    }
    while ((c = srv->graveyard)) {
        srv->graveyard = c->next;
        conn_free(c);
    }
}

static void dispatch_event(fh_server *srv, const struct epoll_event *ev) {
    struct ev_src *src = ev->data.ptr;
    switch (src->kind) {
    case EV_LISTEN: accept_ready(srv); break;
    case EV_WAKE: drain_wake(srv); break;
    case EV_CONN: conn_event((struct conn *)src, ev->events); break;
    }
}

static void close_all_connections(fh_server *srv) {
    while (srv->conns) conn_abort(srv->conns);
    for (struct conn *c = srv->dirty_head; c; c = c->dirty_next) c->dirty = 0;
    srv->dirty_head = srv->dirty_tail = NULL;
    settle(srv);
}

/* Waits for events or the next deadline. epoll_pwait2 takes the timeout in nanoseconds;
 * plain epoll_wait (kernels before 5.11) rounds it up to whole milliseconds, so a
 * delayed answer may then be up to 1 ms late, never early. */
static int wait_events(fh_server *srv, struct epoll_event *evs) {
    int64_t us = next_timeout_us(srv);
    if (srv->have_pwait2) {
        struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = us % 1000000 * 1000};
        int n = epoll_pwait2(srv->epfd, evs, MAX_EVENTS, us < 0 ? NULL : &ts, NULL);
        if (n >= 0 || errno != ENOSYS) return n;
        srv->have_pwait2 = 0;
    }
    int64_t ms = us < 0 ? -1 : (us + 999) / 1000;
    return epoll_wait(srv->epfd, evs, MAX_EVENTS, ms > INT_MAX ? INT_MAX : (int)ms);
}

int fh_run(fh_server *srv) {
    struct epoll_event evs[MAX_EVENTS];
    int rc = 0;
    srv->loop_thread = pthread_self();
    atomic_store(&srv->running, 1);
    while (!atomic_load(&srv->stop_requested)) {
        int n = wait_events(srv, evs);
        if (n < 0) {
            if (errno == EINTR) continue;
            log_error("fakehttp: epoll_wait: %s", strerror(errno));
            rc = -1;
            break;
        }
        for (int i = 0; i < n; i++) dispatch_event(srv, &evs[i]);
        release_due_timers(srv);
        settle(srv);
    }
    close_all_connections(srv);
    drain_wake(srv);
    atomic_store(&srv->stop_requested, 0);
    atomic_store(&srv->running, 0);
    return rc;
}

void fh_stop(fh_server *srv) {
    atomic_store(&srv->stop_requested, 1);
    uint64_t one = 1;
    /* Can only fail when the counter is saturated, i.e. a wake-up is pending anyway. */
    ssize_t w = write(srv->wake_fd, &one, sizeof one);
    (void)w;
}

static void *loop_thread_main(void *arg) {
    fh_server *srv = arg;
    if (fh_run(srv) < 0) log_error("fakehttp: server loop on port %d failed", srv->port);
    return NULL;
}

int fh_start_thread(fh_server *srv) {
    if (srv->thread_started) return -1;
    int err = pthread_create(&srv->thread, NULL, loop_thread_main, srv);
    if (err) {
        log_error("fakehttp: pthread_create: %s", strerror(err));
        return -1;
    }
    srv->thread_started = 1;
    return 0;
}

void fh_stop_thread(fh_server *srv) {
    if (!srv->thread_started) return;
    fh_stop(srv);
    int err = pthread_join(srv->thread, NULL);
    if (err) log_error("fakehttp: pthread_join: %s", strerror(err));
    srv->thread_started = 0;
}

/* ------------------------------------------------------------------ setup */

static int listen_loopback(fh_server *srv, int port, int backlog) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_error("fakehttp: socket: %s", strerror(errno));
        return -1;
    }
    srv->listen_fd = fd;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
        log_error("fakehttp: SO_REUSEADDR: %s", strerror(errno));
        return -1;
    }
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        log_error("fakehttp: bind 127.0.0.1:%d: %s", port, strerror(errno));
        return -1;
    }
    if (listen(fd, backlog) < 0) {
        log_error("fakehttp: listen: %s", strerror(errno));
        return -1;
    }
    socklen_t alen = sizeof addr;
    if (getsockname(fd, (struct sockaddr *)&addr, &alen) < 0) {
        log_error("fakehttp: getsockname: %s", strerror(errno));
        return -1;
    }
    srv->port = ntohs(addr.sin_port);
    return 0;
}

static int watch(fh_server *srv, int fd, struct ev_src *src) {
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = src};
    if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        log_error("fakehttp: epoll_ctl(ADD): %s", strerror(errno));
        return -1;
    }
    return 0;
}

fh_server *fh_create(const fh_options *opts) {
    if (!opts || !opts->handler || opts->port < 0 || opts->port > 65535) {
        log_error("fakehttp: fh_create needs a handler and a port in 0..65535");
        return NULL;
    }
    fh_server *srv = xcalloc(1, sizeof *srv);
    srv->opts = *opts;
    if (!srv->opts.max_body) srv->opts.max_body = FH_DEFAULT_MAX_BODY;
    if (srv->opts.backlog <= 0) srv->opts.backlog = 1024;
    srv->listen_fd = srv->epfd = srv->wake_fd = srv->spare_fd = -1;
    srv->have_pwait2 = 1;
    srv->listen_src.kind = EV_LISTEN;
    srv->wake_src.kind = EV_WAKE;
    atomic_init(&srv->stop_requested, 0);
    atomic_init(&srv->running, 0);
    if (listen_loopback(srv, opts->port, srv->opts.backlog) < 0) goto fail;
    srv->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (srv->epfd < 0) {
        log_error("fakehttp: epoll_create1: %s", strerror(errno));
        goto fail;
    }
    srv->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (srv->wake_fd < 0) {
        log_error("fakehttp: eventfd: %s", strerror(errno));
        goto fail;
    }
    if (watch(srv, srv->listen_fd, &srv->listen_src) < 0 ||
        watch(srv, srv->wake_fd, &srv->wake_src) < 0)
        goto fail;
    srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (srv->spare_fd < 0) log_warn("fakehttp: cannot reserve a descriptor: %s", strerror(errno));
    return srv;
fail:
    fh_destroy(srv);
    return NULL;
}

static void close_fd(int fd) {
    if (fd >= 0 && close(fd) < 0) log_debug("fakehttp: close: %s", strerror(errno));
}

void fh_destroy(fh_server *srv) {
    if (!srv) return;
    fh_stop_thread(srv);
    close_all_connections(srv); /* only when fh_run never ran */
    while (srv->orphans) orphan_free(srv, srv->orphans);
    free(srv->heap);
    close_fd(srv->listen_fd);
    close_fd(srv->epfd);
    close_fd(srv->wake_fd);
    close_fd(srv->spare_fd);
    free(srv);
}

int fh_port(const fh_server *srv) { return srv->port; }

/* ------------------------------------------------------------------ request accessors */

const char *fh_req_method(const fh_request *req) { return req->method; }
const char *fh_req_target(const fh_request *req) { return req->target; }
const char *fh_req_path(const fh_request *req) { return req->path; }
const char *fh_req_query(const fh_request *req) { return req->query; }
int fh_req_http_minor(const fh_request *req) { return req->http_minor; }
size_t fh_req_header_count(const fh_request *req) { return req->nheaders; }
size_t fh_req_body_len(const fh_request *req) { return req->body_len; }
uint64_t fh_req_id(const fh_request *req) { return req->id; }
uint64_t fh_req_conn_id(const fh_request *req) { return req->conn_id; }
int64_t fh_req_arrival_us(const fh_request *req) { return req->arrival_us; }
fh_server *fh_req_server(const fh_request *req) { return req->srv; }

const char *fh_req_header(const fh_request *req, const char *name) {
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, name) == 0) return req->headers[i].value;
    return NULL;
}

void fh_req_header_at(const fh_request *req, size_t i, const char **name,
                      const char **value) {
    *name = i < req->nheaders ? req->headers[i].name : NULL;
    *value = i < req->nheaders ? req->headers[i].value : NULL;
}

const char *fh_req_body(const fh_request *req, size_t *len) {
    if (len) *len = req->body_len;
    return req->body;
}

static int hex_value(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

size_t fh_percent_decode(char *dst, const char *src, size_t n, int plus_as_space) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = src[i];
        if (ch == '%' && i + 2 < n && hex_value(src[i + 1]) >= 0 &&
            hex_value(src[i + 2]) >= 0) {
            dst[o++] = (char)(hex_value(src[i + 1]) * 16 + hex_value(src[i + 2]));
            i += 2;
        } else if (ch == '+' && plus_as_space) {
            dst[o++] = ' ';
        } else {
            dst[o++] = ch;
        }
    }
    dst[o] = '\0';
    return o;
}

/* Splits and decodes the query once, into storage owned by the request. */
static void parse_query(fh_request *req) {
    if (req->params_parsed) return;
    req->params_parsed = 1;
    const char *q = req->query;
    size_t qlen = strlen(q);
    if (qlen == 0) return;
    size_t max_params = 1;
    for (const char *p = q; *p; p++) max_params += *p == '&';
    req->params = xcalloc(max_params, sizeof *req->params);
    /* Decoding never lengthens: each name and value fits in its raw bytes plus a NUL. */
    req->params_storage = xmalloc(qlen + 2 * max_params);
    char *out = req->params_storage;
    const char *p = q;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t seg = amp ? (size_t)(amp - p) : strlen(p);
        if (seg > 0) {
            const char *eq = memchr(p, '=', seg);
            size_t nlen = eq ? (size_t)(eq - p) : seg;
            kv_t *kv = &req->params[req->nparams++];
            kv->name = out;
            out += fh_percent_decode(out, p, nlen, 1) + 1;
            kv->value = out;
            out += eq ? fh_percent_decode(out, eq + 1, seg - nlen - 1, 1) + 1
                      : fh_percent_decode(out, "", 0, 1) + 1;
        }
        p += seg;
        if (*p == '&') p++;
    }
}

const char *fh_query_param(fh_request *req, const char *name) {
    parse_query(req);
    for (size_t i = 0; i < req->nparams; i++)
        if (strcmp(req->params[i].name, name) == 0) return req->params[i].value;
    return NULL;
}

size_t fh_query_param_count(fh_request *req) {
    parse_query(req);
    return req->nparams;
}

void fh_query_param_at(fh_request *req, size_t i, const char **name, const char **value) {
    parse_query(req);
    *name = i < req->nparams ? req->params[i].name : NULL;
    *value = i < req->nparams ? req->params[i].value : NULL;
}

/* ------------------------------------------------------------------ answering */

/* Every answer starts here: one answer per request, on the server thread. Returns 0 to
 * go on, 1 when the request was an orphan and has just been freed. */
static int begin_answer(fh_request *req, const char *what) {
    fh_server *srv = req->srv;
    if (req->state != RQ_PENDING || req->answer != ANS_NONE)
        misuse(what, "the request was answered already");
    if (atomic_load(&srv->running) && !pthread_equal(pthread_self(), srv->loop_thread))
        misuse(what, "called off the server thread");
    if (!req->conn) {
        orphan_free(srv, req);
        return 1;
    }
    return 0;
}

/* Releases the answer now or after delay_ms. */
/* Releases the answer at release_us (mono_us), or now if that has passed. */
static void schedule_at(fh_request *req, int64_t release_us) {
    if (release_us <= mono_us()) {
        req->state = RQ_READY;
        conn_touch(req->conn);
        return;
    }
    req->state = RQ_SCHEDULED;
    timer_arm(req->srv, &req->tm, release_us);
}

static void schedule(fh_request *req, int64_t delay_ms) {
    schedule_at(req, delay_ms <= 0 ? 0 : mono_us() + delay_ms * 1000);
}

void fh_add_header(fh_request *req, const char *name, const char *value) {
    if (req->state != RQ_PENDING) misuse("fh_add_header", "the request was answered already");
    if (!is_token(name) || strpbrk(value, "\r\n"))
        misuse("fh_add_header", "invalid header name or value");
    if (strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Content-Type") == 0 ||
        strcasecmp(name, "Connection") == 0 || strcasecmp(name, "Transfer-Encoding") == 0)
        misuse("fh_add_header", "framing headers belong to the core");
    buf_printf(&req->extra_headers, "%s: %s\r\n", name, value);
}

void fh_respond_after(fh_request *req, int64_t delay_ms, int status,
                      const char *content_type, const void *body, size_t len) {
    if (begin_answer(req, "fh_respond")) return;
    build_response(req, status, content_type, body, len, len);
    req->answer = ANS_RESPONSE;
    schedule(req, delay_ms);
}

void fh_respond_after_arrival(fh_request *req, int64_t delay_us, int status,
                              const char *content_type, const void *body, size_t len) {
    if (begin_answer(req, "fh_respond")) return;
    build_response(req, status, content_type, body, len, len);
    req->answer = ANS_RESPONSE;
    schedule_at(req, req->arrival_us + (delay_us > 0 ? delay_us : 0));
}

void fh_respond(fh_request *req, int status, const char *content_type, const void *body,
                size_t len) {
    fh_respond_after(req, 0, status, content_type, body, len);
}

void fh_respond_truncated(fh_request *req, int64_t delay_ms, int status,
                          const char *content_type, const void *body, size_t len,
                          size_t send_len) {
    if (begin_answer(req, "fh_respond_truncated")) return;
    /* The header must not promise a close: the client is to see a body cut short. */
    req->wants_close = 0;
    req->keep_alive_10 = 0;
    build_response(req, status, content_type, body, len, MIN(send_len, len));
    req->answer = ANS_TRUNCATED;
    schedule(req, delay_ms);
}

void fh_hang(fh_request *req) {
    if (begin_answer(req, "fh_hang")) return;
    req->state = RQ_HUNG;
    count(&req->srv->st.hung, 1);
}

void fh_close_after(fh_request *req, int64_t delay_ms) {
    if (begin_answer(req, "fh_close")) return;
    req->answer = ANS_CLOSE;
    schedule(req, delay_ms);
}

void fh_close(fh_request *req) { fh_close_after(req, 0); }
