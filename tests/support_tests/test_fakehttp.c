/* Tests of the fake-server core (tests/fakes/fakehttp.c) over real loopback sockets: the
 * server runs in its own thread (or the test's), the client is plain blocking sockets
 * written here, so every byte on the wire is under the test's control. */
#include "fakes/fakehttp.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test.h"
#include "util/util.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
/* Test cases end with _exit(), which skips LeakSanitizer's exit check: ask for it. */
#define LEAKS_FOUND() __lsan_do_recoverable_leak_check()
#else
#define LEAKS_FOUND() 0
#endif

/* Polls a condition for up to 3 s: waits for the server thread to observe an event the
 * client cannot be told about (e.g. its own close), then the caller CHECKs it. */
#define WAIT_UNTIL(cond)                                                     \
    do {                                                                     \
        int64_t deadline_ = mono_ms() + 3000;                                \
        while (!(cond) && mono_ms() < deadline_) sleep_ms(1);                \
    } while (0)

/* ------------------------------------------------------------------ the test fake */

#define MAX_HELD 16

typedef struct fake {
    int notify_wr;               /* the handler writes one byte here after fh_hang */
    int gate_n;                  /* /gate: hold requests until this many are held */
    int64_t gate_delay_ms;
    fh_request *held[MAX_HELD];
    int nheld;
} fake_t;

static int64_t query_int(fh_request *req, const char *name, int64_t dflt) {
    const char *v = fh_query_param(req, name);
    return v ? strtoll(v, NULL, 10) : dflt;
}

static void add_id_headers(fh_request *req) {
    char v[32];
    snprintf(v, sizeof v, "%" PRIu64, fh_req_conn_id(req));
    fh_add_header(req, "X-Conn", v);
    snprintf(v, sizeof v, "%" PRIu64, fh_req_id(req));
    fh_add_header(req, "X-Req", v);
}

static void handle_query(fh_request *req) {
    buf_t b = BUF_INIT;
    for (size_t i = 0; i < fh_query_param_count(req); i++) {
        const char *name, *value;
        fh_query_param_at(req, i, &name, &value);
        buf_printf(&b, "[%s]=[%s]\n", name, value);
    }
    fh_respond(req, 200, "text/plain", b.data, b.len);
    buf_free(&b);
}

/* Holds /gate requests until gate_n are held, then answers them all: the maximum in
 * flight is then known exactly. */
static void handle_gate(fake_t *f, fh_request *req) {
    f->held[f->nheld++] = req;
    if (f->nheld < f->gate_n) return;
    for (int i = 0; i < f->nheld; i++) {
        char body[32];
        int n = snprintf(body, sizeof body, "gate %d", i);
        fh_respond_after(f->held[i], f->gate_delay_ms, 200, "text/plain", body, (size_t)n);
    }
    f->nheld = 0;
}

static void fake_handler(fh_request *req, void *ctx) {
    fake_t *f = ctx;
    const char *path = fh_req_path(req);
    if (strcmp(path, "/echo") == 0) {
        size_t len;
        const char *body = fh_req_body(req, &len);
        const char *ctype = fh_req_header(req, "Content-Type");
        add_id_headers(req);
        fh_add_header(req, "X-Method", fh_req_method(req));
        fh_respond(req, 200, ctype ? ctype : "text/plain", body, len);
    } else if (strcmp(path, "/hello") == 0) {
        fh_respond(req, 200, "text/plain", "hello", 5);
    } else if (strcmp(path, "/header") == 0) {
        const char *v = fh_req_header(req, fh_query_param(req, "name"));
        fh_respond(req, v ? 200 : 404, "text/plain", v ? v : "", v ? strlen(v) : 0);
    } else if (strcmp(path, "/delay") == 0) {
        const char *body = fh_query_param(req, "body");
        body = body ? body : "";
        fh_respond_after(req, query_int(req, "ms", 0), 200, "text/plain", body, strlen(body));
    } else if (strcmp(path, "/status") == 0) {
        fh_respond(req, (int)query_int(req, "code", 200), "text/plain", "s", 1);
    } else if (strcmp(path, "/query") == 0) {
        handle_query(req);
    } else if (strcmp(path, "/trunc") == 0) {
        char body[100];
        memset(body, 'x', sizeof body);
        fh_respond_truncated(req, 0, 200, "text/plain", body, sizeof body, 40);
    } else if (strcmp(path, "/hang") == 0) {
        fh_hang(req);
        if (f->notify_wr >= 0 && write(f->notify_wr, "h", 1) != 1) abort();
    } else if (strcmp(path, "/close") == 0) {
        fh_close(req);
    } else if (strcmp(path, "/gate") == 0) {
        handle_gate(f, req);
    } else if (strcmp(path, "/quit") == 0) {
        fh_stop(fh_req_server(req));
        fh_respond(req, 200, "text/plain", "bye", 3);
    } else {
        fh_respond(req, 404, "text/plain", "no such path", 12);
    }
}

static void fake_init(fake_t *f) {
    memset(f, 0, sizeof *f);
    f->notify_wr = -1;
}

static fh_server *start_server(fake_t *f, int max_connections, size_t max_body) {
    fh_options o = {.port = 0, .max_connections = max_connections, .max_body = max_body,
                    .handler = fake_handler, .ctx = f};
    fh_server *srv = fh_create(&o);
    if (srv && fh_start_thread(srv) < 0) {
        fh_destroy(srv);
        return NULL;
    }
    return srv;
}

/* ------------------------------------------------------------------ the client */

typedef struct client {
    int fd;
    buf_t in; /* bytes received and not consumed yet (pipelined responses) */
} client_t;

typedef struct response {
    int status;
    buf_t head;          /* status line and headers */
    buf_t body;
    long content_length; /* -1 when absent */
    int truncated;       /* EOF before Content-Length bytes */
} response_t;

static int client_connect(client_t *c, int port) {
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) return -1;
    struct timeval tv = {.tv_sec = 5};
    if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    return connect(c->fd, (struct sockaddr *)&a, sizeof a);
}

static void client_close(client_t *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    buf_free(&c->in);
}

static int client_send(client_t *c, const char *data, size_t len) {
    while (len > 0) {
        ssize_t w = send(c->fd, data, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

static int client_send_str(client_t *c, const char *s) { return client_send(c, s, strlen(s)); }

/* Reads more bytes into c->in. Returns bytes read, 0 on EOF, -1 on error or timeout. */
static ssize_t client_fill(client_t *c) {
    char tmp[65536];
    ssize_t r;
    do r = recv(c->fd, tmp, sizeof tmp, 0);
    while (r < 0 && errno == EINTR);
    if (r > 0) buf_append(&c->in, tmp, (size_t)r);
    return r;
}

static void client_consume(client_t *c, size_t n) {
    memmove(c->in.data, c->in.data + n, c->in.len - n);
    buf_truncate(&c->in, c->in.len - n);
}

static void response_free(response_t *r) {
    buf_free(&r->head);
    buf_free(&r->body);
}

/* Value of a response header (case-sensitive name as the core writes it), or "". */
static const char *resp_header(const response_t *r, const char *name, char *out, size_t cap) {
    char pat[128];
    snprintf(pat, sizeof pat, "\r\n%s: ", name);
    const char *p = strstr(buf_cstr(&r->head), pat);
    out[0] = '\0';
    if (!p) return out;
    p += strlen(pat);
    size_t n = strcspn(p, "\r");
    snprintf(out, cap, "%.*s", (int)MIN(n, cap - 1), p);
    return out;
}

/* Reads one response (interim 1xx ones included: the caller sees them). Returns 0 with
 * the response complete or truncated by EOF, -1 on EOF before a status line or on a
 * timeout. */
static int client_read_response(client_t *c, response_t *r) {
    memset(r, 0, sizeof *r);
    r->content_length = -1;
    const char *end;
    while (!(end = c->in.data ? strstr(c->in.data, "\r\n\r\n") : NULL))
        if (client_fill(c) <= 0) return -1;
    size_t head_len = (size_t)(end - c->in.data) + 4;
    buf_append(&r->head, c->in.data, head_len);
    client_consume(c, head_len);
    if (sscanf(r->head.data, "HTTP/1.1 %d", &r->status) != 1) return -1;
    char v[32];
    if (*resp_header(r, "Content-Length", v, sizeof v)) r->content_length = atol(v);
    if (r->status < 200) return 0;
    size_t want = r->content_length > 0 ? (size_t)r->content_length : 0;
    while (c->in.len < want) {
        ssize_t got = client_fill(c);
        if (got < 0) return -1;
        if (got == 0) break;
    }
    size_t take = MIN(want, c->in.len);
    buf_append(&r->body, c->in.data ? c->in.data : "", take);
    if (take) client_consume(c, take);
    r->truncated = take < want;
    return 0;
}

/* Sends one request and reads its response. */
static int client_roundtrip(client_t *c, const char *request, response_t *r) {
    if (client_send_str(c, request) < 0) return -1;
    return client_read_response(c, r);
}

/* 1 when the server closed the connection (EOF or reset) with no further bytes. */
static int client_sees_close(client_t *c) {
    if (c->in.len > 0) return 0;
    char b;
    ssize_t r = recv(c->fd, &b, 1, 0);
    return r == 0 || (r < 0 && errno == ECONNRESET);
}

/* 1 when nothing arrives within ms. */
static int client_silent_for(client_t *c, int ms) {
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    return poll(&p, 1, ms) == 0;
}

/* ------------------------------------------------------------------ cases */

TEST(get_and_post_echo) {
    fake_t f;
    fake_init(&f);
    fh_server *srv = start_server(&f, 0, 0);
    REQUIRE(srv);
    client_t c;
    REQUIRE(client_connect(&c, fh_port(srv)) == 0);
    response_t r;
    REQUIRE(client_roundtrip(&c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK_STR(buf_cstr(&r.body), "hello");
    CHECK_INT(r.content_length, 5);
    response_free(&r);
    REQUIRE(client_roundtrip(&c,
                             "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             "Content-Length: 13\r\n\r\n{\"a\":\"b c\"}\r\n",
                             &r) == 0);
    char v[64];
    CHECK_INT(r.status, 200);
    CHECK_STR(buf_cstr(&r.body), "{\"a\":\"b c\"}\r\n");
    CHECK_STR(resp_header(&r, "Content-Type", v, sizeof v), "application/json");
    CHECK_STR(resp_header(&r, "X-Method", v, sizeof v), "POST");
    response_free(&r);
    REQUIRE(client_roundtrip(&c, "GET /nowhere HTTP/1.1\r\n\r\n", &r) == 0);
    CHECK_INT(r.status, 404);
    response_free(&r);
    client_close(&c);
    fh_stats_t st = fh_stats(srv);
    CHECK_INT(st.requests, 3);
    CHECK_INT(st.resp_2xx, 2);
    CHECK_INT(st.resp_4xx, 1);
    CHECK(st.bytes_in > 100);
    CHECK(st.bytes_out > 100);
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

TEST(header_lookup_is_case_insensitive) {
    fake_t f;
    fake_init(&f);
    fh_server *srv = start_server(&f, 0, 0);
    REQUIRE(srv);
    client_t c;
    REQUIRE(client_connect(&c, fh_port(srv)) == 0);
    response_t r;
    REQUIRE(client_roundtrip(&c, "GET /header?name=X-Test HTTP/1.1\r\nx-tEsT:   v1 \t\r\n\r\n",
                             &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK_STR(buf_cstr(&r.body), "v1");
    response_free(&r);
    REQUIRE(client_roundtrip(&c, "GET /header?name=absent HTTP/1.1\r\n\r\n", &r) == 0);
    CHECK_INT(r.status, 404);
    response_free(&r);
    client_close(&c);
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

TEST(keep_alive_serves_two_requests_on_one_connection) {
    fake_t f;
    fake_init(&f);
    fh_server *srv = start_server(&f, 0, 0);
    REQUIRE(srv);
    client_t c;
    REQUIRE(client_connect(&c, fh_port(srv)) == 0);
    response_t r1, r2;
    REQUIRE(client_roundtrip(&c, "GET /echo HTTP/1.1\r\n\r\n", &r1) == 0);
    REQUIRE(client_roundtrip(&c, "GET /echo HTTP/1.1\r\n\r\n", &r2) == 0);
    char a[32], b[32];
    CHECK_STR(resp_header(&r1, "X-Conn", a, sizeof a), resp_header(&r2, "X-Conn", b, sizeof b));
    CHECK_STR(resp_header(&r1, "X-Req", a, sizeof a), "1");
    CHECK_STR(resp_header(&r2, "X-Req", b, sizeof b), "2");
    CHECK(!strstr(buf_cstr(&r2.head), "Connection: close"));
    response_free(&r1);
    response_free(&r2);
    fh_stats_t st = fh_stats(srv);
    CHECK_INT(st.conns_accepted, 1);
    CHECK_INT(st.conns_open, 1);
    CHECK_INT(st.requests, 2);
    client_close(&c);
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

static uint64_t gap_count(fh_stats_t st) {
    uint64_t n = 0;
    for (size_t i = 0; i < FH_GAP_BUCKETS; i++) n += st.gaps[i];
    return n;
}

/* The reuse gap: how long a connection whose answer went out waited for its next
 * request. Measured once per request that followed an answer; a lower bound is all a
 * test can check of a time. */
TEST(reuse_gap_is_the_time_from_an_answer_to_the_next_request) {
    fake_t f;
    fake_init(&f);
    fh_server *srv = start_server(&f, 0, 0);
    REQUIRE(srv);
    client_t c;
    REQUIRE(client_connect(&c, fh_port(srv)) == 0);
    response_t r;
    REQUIRE(client_roundtrip(&c, "GET /echo HTTP/1.1\r\n\r\n", &r) == 0);
    response_free(&r);
    CHECK_INT(gap_count(fh_stats(srv)), 0); /* the first request followed no answer */
    sleep_ms(20); /* the gap being measured */
    REQUIRE(client_roundtrip(&c, "GET /echo HTTP/1.1\r\n\r\n", &r) == 0);
    response_free(&r);
    fh_stats_t st = fh_stats(srv);
    CHECK_INT(gap_count(st), 1);
    /* 20 ms or more: bucket 8, [16, 32) ms (125 us doubled 7 times), or a later one. */
    uint64_t from_16ms = 0;
    for (size_t i = 8; i < FH_GAP_BUCKETS; i++) from_16ms += st.gaps[i];
    CHECK_INT(from_16ms, 1);
    CHECK(st.gap_us >= 20000);
    REQUIRE(client_roundtrip(&c, "GET /echo HTTP/1.1\r\n\r\n", &r) == 0);
    response_free(&r);
    CHECK_INT(gap_count(fh_stats(srv)), 2);
    fh_reset_stats(srv);
    CHECK_INT(gap_count(fh_stats(srv)), 0);
    CHECK_INT(fh_stats(srv).gap_us, 0);
    client_close(&c);
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

/* busy_us integrates the requests in flight over time: two requests held 60 ms each on
 * two connections at once count 120 request-ms or more, and no more than two requests
 * for as long as the client waited; nothing is added while nothing is in flight. */
TEST(busy_time_integrates_the_requests_in_flight) {
    fake_t f;
    fake_init(&f);
    fh_server *srv = start_server(&f, 0, 0);
    REQUIRE(srv);
    fh_reset_stats(srv);
    client_t a, b;
    REQUIRE(client_connect(&a, fh_port(srv)) == 0);
    REQUIRE(client_connect(&b, fh_port(srv)) == 0);
    int64_t t0 = mono_us();
    REQUIRE(client_send_str(&a, "GET /delay?ms=60&body=a HTTP/1.1\r\n\r\n") == 0);
    REQUIRE(client_send_str(&b, "GET /delay?ms=60&body=b HTTP/1.1\r\n\r\n") == 0);
    response_t r;
    REQUIRE(client_read_response(&a, &r) == 0);
    response_free(&r);
    REQUIRE(client_read_response(&b, &r) == 0);
    response_free(&r);
    int64_t waited = mono_us() - t0;
    fh_stats_t st = fh_stats(srv);
    CHECK_INT(st.in_flight, 0);
    CHECK(st.busy_us >= 2 * 60000);
    CHECK(st.busy_us <= (uint64_t)(2 * waited));
    sleep_ms(20); /* idle: the integral stays where it is */
    CHECK_INT(fh_stats(srv).busy_us, st.busy_us);
    fh_reset_stats(srv);
    CHECK_INT(fh_stats(srv).busy_us, 0);
    client_close(&a);
    client_close(&b);
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

TEST(pipelined_requests_are_answered_in_order) {
    fake_t f;
    fake_init(&f);
    fh_server *srv = start_server(&f, 0, 0);
    REQUIRE(srv);
    client_t c;
    REQUIRE(client_connect(&c, fh_port(srv)) == 0);
    /* The later requests become ready first; their responses must still wait. */
    REQUIRE(client_send_str(&c, "GET /delay?ms=80&body=first HTTP/1.1\r\n\r\n"
                                "GET /delay?ms=10&body=second HTTP/1.1\r\n\r\n"
                                "POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nthird"
                                "GET /hello HTTP/1.1\r\n\r\n") == 0);
    const char *want[] = {"first", "second", "third", "hello"};
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        response_t r;
        REQUIRE(client_read_response(&c, &r) == 0);
        CHECK_INT(r.status, 200);
        CHECK_STR(buf_cstr(&r.body), want[i]);
        response_free(&r);
    }
    CHECK_INT(fh_stats(srv).requests, 4);
    CHECK_INT(gap_count(fh_stats(srv)), 0); /* each arrived before the answer ahead of it */
    client_close(&c);
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

/* More pipelined requests than the core queues per connection: reading pauses and
 * resumes, and every response still comes back, in order. */
TEST(long_pipeline_beyond_the_queue_limit) {
    enum { N = 300 };
    fake_t f;
    fake_init(&f);
    fh_server *srv = start_server(&f, 0, 0);
    REQUIRE(srv);
    client_t c;
    REQUIRE(client_connect(&c, fh_port(srv)) == 0);
    buf_t reqs = BUF_INIT;
    for (int i = 0; i < N; i++)
        buf_printf(&reqs, "GET /delay?ms=%d&body=r%d HTTP/1.1\r\n\r\n", i % 3, i);
    REQUIRE(client_send(&c, reqs.data, reqs.len) == 0);
    buf_free(&reqs);
    int in_order = 0;
    for (int i = 0; i < N; i++) {
        response_t r;
        if (client_read_response(&c, &r) != 0) break;
        char want[16];
        snprintf(want, sizeof want, "r%d", i);
        in_order += r.status == 200 && strcmp(buf_cstr(&r.body), want) == 0;
        response_free(&r);
    }
    CHECK_INT(in_order, N);
    CHECK_INT(fh_stats(srv).requests, N);
    client_close(&c);
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

TEST(delayed_response_arrives_no_earlier_than_the_delay) {
    fake_t f;
    fake_init(&f);
    fh_server *srv = start_server(&f, 0, 0);
    REQUIRE(srv);
    client_t c;
    REQUIRE(client_connect(&c, fh_port(srv)) == 0);
    int64_t t0 = mono_us();
    response_t r;
    REQUIRE(client_roundtrip(&c, "GET /delay?ms=120&body=late HTTP/1.1\r\n\r\n", &r) == 0);
    int64_t elapsed = mono_us() - t0;
    CHECK_INT(r.status, 200);
    CHECK_STR(buf_cstr(&r.body), "late");
    CHECK(elapsed >= 120000);
    response_free(&r);
    client_close(&c);
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

/* N clients, each one request held by the fake until all N are in: the maximum in flight
 * is exactly N, and 0 remain once every response was read. */
static void check_gate(int64_t gate_delay_ms) {
    enum { N = 8 };
    fake_t f;
    fake_init(&f);
    f.gate_n = N;
    f.gate_delay_ms = gate_delay_ms;
    fh_server *srv = start_server(&f, 0, 0);
    REQUIRE(srv);
    client_t c[N];
    for (int i = 0; i < N; i++) {
        REQUIRE(client_connect(&c[i], fh_port(srv)) == 0);
        REQUIRE(client_send_str(&c[i], "GET /gate HTTP/1.1\r\n\r\n") == 0);
    }
    for (int i = 0; i < N; i++) {
        response_t r;
        REQUIRE(client_read_response(&c[i], &r) == 0);
        CHECK_INT(r.status, 200);
        CHECK(strncmp(buf_cstr(&r.body), "gate ", 5) == 0);
        response_free(&r);
    }
    fh_stats_t st = fh_stats(srv);
    CHECK_INT(st.requests, N);
    CHECK_INT(st.max_in_flight, N);
    CHECK_INT(st.in_flight, 0);
    CHECK_INT(st.max_conns_open, N);
    fh_reset_stats(srv);
    st = fh_stats(srv);
    CHECK_INT(st.requests, 0);
    CHECK_INT(st.max_in_flight, 0);
    CHECK_INT(st.conns_open, N);
    CHECK_INT(st.max_conns_open, N);
    for (int i = 0; i < N; i++) client_close(&c[i]);
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

TEST(in_flight_reaches_n_and_returns_to_zero) { check_gate(0); }

TEST(in_flight_counts_delayed_answers_until_released) { check_gate(40); }

TEST(truncated_response_sends_fewer_bytes_then_eof) {
    fake_t f;
    fake_init(&f);
    fh_server *srv = start_server(&f, 0, 0);
    REQUIRE(srv);
    client_t c;
    REQUIRE(client_connect(&c, fh_port(srv)) == 0);
    response_t r;
    REQUIRE(client_roundtrip(&c, "GET /trunc HTTP/1.1\r\n\r\n", &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK_INT(r.content_length, 100);
    CHECK_INT(r.body.len, 40);
    CHECK(r.truncated);
    CHECK(client_sees_close(&c));
    response_free(&r);
    fh_stats_t st = fh_stats(srv);
    CHECK_INT(st.truncated, 1);
    CHECK_INT(st.resp_2xx, 0);
    CHECK_INT(st.in_flight, 0);
    client_close(&c);
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

TEST(close_without_answer) {
    fake_t f;
    fake_init(&f);
    fh_server *srv = start_server(&f, 0, 0);
    REQUIRE(srv);
    client_t c;
    REQUIRE(client_connect(&c, fh_port(srv)) == 0);
    REQUIRE(client_send_str(&c, "GET /close HTTP/1.1\r\n\r\n") == 0);
    CHECK(client_sees_close(&c));
    fh_stats_t st = fh_stats(srv);
    CHECK_INT(st.closed, 1);
    CHECK_INT(st.in_flight, 0);
    CHECK_INT(st.bytes_out, 0);
    client_close(&c);
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

TEST(hang_then_server_stop_frees_everything) {
    fake_t f;
    fake_init(&f);
    int pipefd[2];
    REQUIRE(pipe(pipefd) == 0);
    f.notify_wr = pipefd[1];
    fh_server *srv = start_server(&f, 0, 0);
    REQUIRE(srv);
    client_t c1, c2;
    REQUIRE(client_connect(&c1, fh_port(srv)) == 0);
    REQUIRE(client_connect(&c2, fh_port(srv)) == 0);
    /* c2 also has a delayed answer pending and a request behind its hung one. */
    REQUIRE(client_send_str(&c1, "GET /hang HTTP/1.1\r\n\r\n") == 0);
    REQUIRE(client_send_str(&c2, "GET /delay?ms=60000 HTTP/1.1\r\n\r\n") == 0);
    char b;
    REQUIRE(read(pipefd[0], &b, 1) == 1);
    WAIT_UNTIL(fh_stats(srv).in_flight == 2);
    CHECK_INT(fh_stats(srv).in_flight, 2);
    CHECK_INT(fh_stats(srv).hung, 1);
    CHECK(client_silent_for(&c1, 150));
    fh_stop_thread(srv);
    CHECK(client_sees_close(&c1));
    CHECK(client_sees_close(&c2));
    fh_stats_t st = fh_stats(srv);
    CHECK_INT(st.aborted, 2);
    CHECK_INT(st.in_flight, 0);
    CHECK_INT(st.conns_open, 0);
    fh_destroy(srv);
    client_close(&c1);
    client_close(&c2);
    close(pipefd[0]);
    close(pipefd[1]);
    CHECK_INT(LEAKS_FOUND(), 0);
}

TEST(client_giving_up_drops_its_request) {
    fake_t f;
    fake_init(&f);
    fh_server *srv = start_server(&f, 0, 0);
    REQUIRE(srv);
    client_t c;
    REQUIRE(client_connect(&c, fh_port(srv)) == 0);
    REQUIRE(client_send_str(&c, "GET /delay?ms=60000 HTTP/1.1\r\n\r\n") == 0);
    WAIT_UNTIL(fh_stats(srv).in_flight == 1);
    CHECK_INT(fh_stats(srv).in_flight, 1);
    client_close(&c);
    WAIT_UNTIL(fh_stats(srv).in_flight == 0);
    fh_stats_t st = fh_stats(srv);
    CHECK_INT(st.in_flight, 0);
    CHECK_INT(st.aborted, 1);
    WAIT_UNTIL(fh_stats(srv).conns_open == 0);
    CHECK_INT(fh_stats(srv).conns_open, 0);
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

/* A request the handler holds outlives its connection and can still be answered. */
TEST(held_request_outlives_its_connection) {
    fake_t f;
    fake_init(&f);
    f.gate_n = 2;
    fh_server *srv = start_server(&f, 0, 0);
    REQUIRE(srv);
    client_t c1, c2;
    REQUIRE(client_connect(&c1, fh_port(srv)) == 0);
    REQUIRE(client_send_str(&c1, "GET /gate HTTP/1.1\r\n\r\n") == 0);
    WAIT_UNTIL(fh_stats(srv).requests == 1);
    client_close(&c1);
    WAIT_UNTIL(fh_stats(srv).aborted == 1);
    CHECK_INT(fh_stats(srv).aborted, 1);
    CHECK_INT(fh_stats(srv).in_flight, 0);
    /* The second /gate request makes the handler answer both, the orphan included. */
    REQUIRE(client_connect(&c2, fh_port(srv)) == 0);
    response_t r;
    REQUIRE(client_roundtrip(&c2, "GET /gate HTTP/1.1\r\n\r\n", &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK_STR(buf_cstr(&r.body), "gate 1");
    response_free(&r);
    CHECK_INT(fh_stats(srv).resp_2xx, 1);
    /* And one still held when the server goes away is freed by fh_destroy. */
    REQUIRE(client_send_str(&c2, "GET /gate HTTP/1.1\r\n\r\n") == 0);
    WAIT_UNTIL(fh_stats(srv).requests == 3);
    CHECK_INT(f.nheld, 1);
    fh_destroy(srv);
    client_close(&c2);
    memset(f.held, 0, sizeof f.held); /* dangling now; must not hide a leak from LSan */
    CHECK_INT(LEAKS_FOUND(), 0);
}

TEST(oversized_body_gets_413_and_close) {
    fake_t f;
    fake_init(&f);
    fh_server *srv = start_server(&f, 0, 1024);
    REQUIRE(srv);
    client_t c;
    REQUIRE(client_connect(&c, fh_port(srv)) == 0);
    char body[2048];
    memset(body, 'b', sizeof body);
    REQUIRE(client_send_str(&c, "POST /echo HTTP/1.1\r\nContent-Length: 2048\r\n\r\n") == 0);
    REQUIRE(client_send(&c, body, sizeof body) == 0);
    response_t r;
    REQUIRE(client_read_response(&c, &r) == 0);
    CHECK_INT(r.status, 413);
    CHECK(strstr(buf_cstr(&r.head), "\r\nConnection: close\r\n") != NULL);
    CHECK(client_sees_close(&c));
    response_free(&r);
    client_close(&c);
    /* Exactly at the limit is fine. */
    REQUIRE(client_connect(&c, fh_port(srv)) == 0);
    REQUIRE(client_send_str(&c, "POST /echo HTTP/1.1\r\nContent-Length: 1024\r\n\r\n") == 0);
    REQUIRE(client_send(&c, body, 1024) == 0);
    REQUIRE(client_read_response(&c, &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK_INT(r.body.len, 1024);
    response_free(&r);
    client_close(&c);
    fh_stats_t st = fh_stats(srv);
    CHECK_INT(st.rejected, 1);
    CHECK_INT(st.requests, 1);
    CHECK_INT(st.resp_4xx, 1);
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

TEST(malformed_requests_are_rejected_and_closed) {
    static const struct {
        const char *raw;
        int status;
    } cases[] = {
        {"GARBAGE\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nNoColonHere\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400},
        {"GET noslash HTTP/1.1\r\n\r\n", 400},
        {"GET / HTTX/1.1\r\n\r\n", 400},
        {"GET /a b HTTP/1.1\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nX: a\nY: b\r\n\r\n", 400},
        {"GET / HTTP/3.0\r\n\r\n", 505},
        {"POST / HTTP/1.1\r\nContent-Length: 12x\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411},
    };
    fake_t f;
    fake_init(&f);
    fh_server *srv = start_server(&f, 0, 0);
    REQUIRE(srv);
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        client_t c;
        REQUIRE(client_connect(&c, fh_port(srv)) == 0);
        response_t r;
        REQUIRE(client_roundtrip(&c, cases[i].raw, &r) == 0);
        if (r.status != cases[i].status) printf("    case %zu: %s\n", i, cases[i].raw);
        CHECK_INT(r.status, cases[i].status);
        CHECK(client_sees_close(&c));
        response_free(&r);
        client_close(&c);
    }
    fh_stats_t st = fh_stats(srv);
    CHECK_INT(st.requests, 0);
    CHECK_INT(st.rejected, ARRAY_LEN(cases));
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

TEST(header_block_over_64k_gets_431) {
    fake_t f;
    fake_init(&f);
    fh_server *srv = start_server(&f, 0, 0);
    REQUIRE(srv);
    client_t c;
    REQUIRE(client_connect(&c, fh_port(srv)) == 0);
    buf_t req = BUF_INIT;
    buf_puts(&req, "GET / HTTP/1.1\r\n");
    while (req.len < 70 * 1024) buf_puts(&req, "X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    REQUIRE(client_send(&c, req.data, req.len) == 0);
    buf_free(&req);
    response_t r;
    REQUIRE(client_read_response(&c, &r) == 0);
    CHECK_INT(r.status, 431);
    response_free(&r);
    client_close(&c);
    /* A short block with too many header lines is refused the same way. */
    REQUIRE(client_connect(&c, fh_port(srv)) == 0);
    buf_puts(&req, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 300; i++) buf_printf(&req, "H%d: v\r\n", i);
    buf_puts(&req, "\r\n");
    REQUIRE(client_roundtrip(&c, req.data, &r) == 0);
    buf_free(&req);
    CHECK_INT(r.status, 431);
    response_free(&r);
    client_close(&c);
    CHECK_INT(fh_stats(srv).rejected, 2);
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

TEST(query_parameters_are_percent_decoded) {
    fake_t f;
    fake_init(&f);
    fh_server *srv = start_server(&f, 0, 0);
    REQUIRE(srv);
    client_t c;
    REQUIRE(client_connect(&c, fh_port(srv)) == 0);
    response_t r;
    REQUIRE(client_roundtrip(&c,
                             "GET /query?q=hello%20world&plus=a+b&empty=&flag&&pct=%zz&tail=%4"
                             "&%41%62=x%3Dy&utf=%C3%A9 HTTP/1.1\r\n\r\n",
                             &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK_STR(buf_cstr(&r.body), "[q]=[hello world]\n[plus]=[a b]\n[empty]=[]\n[flag]=[]\n"
                                 "[pct]=[%zz]\n[tail]=[%4]\n[Ab]=[x=y]\n[utf]=[\xc3\xa9]\n");
    response_free(&r);
    REQUIRE(client_roundtrip(&c, "GET /delay?body=a%26b&ms=1 HTTP/1.1\r\n\r\n", &r) == 0);
    CHECK_STR(buf_cstr(&r.body), "a&b");
    response_free(&r);
    client_close(&c);
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

TEST(percent_decode_helper) {
    char out[32];
    CHECK_INT(fh_percent_decode(out, "a%2Fb+c", 7, 0), 5);
    CHECK_STR(out, "a/b+c");
    CHECK_INT(fh_percent_decode(out, "a%2fb+c", 7, 1), 5);
    CHECK_STR(out, "a/b c");
    CHECK_INT(fh_percent_decode(out, "%", 1, 1), 1);
    CHECK_STR(out, "%");
    CHECK_INT(fh_percent_decode(out, "%4", 2, 1), 2);
    CHECK_STR(out, "%4");
    CHECK_INT(fh_percent_decode(out, "x%41", 3, 1), 3); /* only n bytes are read */
    CHECK_STR(out, "x%4");
    CHECK_INT(fh_percent_decode(out, "", 0, 1), 0);
    CHECK_STR(out, "");
}

TEST(connection_limit_refuses_extra_connections) {
    fake_t f;
    fake_init(&f);
    fh_server *srv = start_server(&f, 2, 0);
    REQUIRE(srv);
    client_t c[3];
    response_t r;
    for (int i = 0; i < 2; i++) {
        REQUIRE(client_connect(&c[i], fh_port(srv)) == 0);
        REQUIRE(client_roundtrip(&c[i], "GET /hello HTTP/1.1\r\n\r\n", &r) == 0);
        CHECK_INT(r.status, 200);
        response_free(&r);
    }
    REQUIRE(client_connect(&c[2], fh_port(srv)) == 0);
    CHECK(client_sees_close(&c[2]));
    client_close(&c[2]);
    fh_stats_t st = fh_stats(srv);
    CHECK_INT(st.conns_refused, 1);
    CHECK_INT(st.conns_accepted, 2);
    CHECK_INT(st.max_conns_open, 2);
    /* Once one closes, a new connection is served again. */
    client_close(&c[0]);
    WAIT_UNTIL(fh_stats(srv).conns_open == 1);
    CHECK_INT(fh_stats(srv).conns_open, 1);
    REQUIRE(client_connect(&c[0], fh_port(srv)) == 0);
    REQUIRE(client_roundtrip(&c[0], "GET /hello HTTP/1.1\r\n\r\n", &r) == 0);
    CHECK_INT(r.status, 200);
    response_free(&r);
    client_close(&c[0]);
    client_close(&c[1]);
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

TEST(connection_close_and_http10_are_honoured) {
    fake_t f;
    fake_init(&f);
    fh_server *srv = start_server(&f, 0, 0);
    REQUIRE(srv);
    static const char *reqs[] = {
        "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\nGET /hello HTTP/1.1\r\n\r\n",
        "GET /hello HTTP/1.0\r\n\r\n",
    };
    for (size_t i = 0; i < ARRAY_LEN(reqs); i++) {
        client_t c;
        REQUIRE(client_connect(&c, fh_port(srv)) == 0);
        response_t r;
        REQUIRE(client_roundtrip(&c, reqs[i], &r) == 0);
        CHECK_INT(r.status, 200);
        CHECK(strstr(buf_cstr(&r.head), "\r\nConnection: close\r\n") != NULL);
        CHECK(client_sees_close(&c));
        response_free(&r);
        client_close(&c);
    }
    /* HTTP/1.0 asking for keep-alive gets it. */
    client_t c;
    REQUIRE(client_connect(&c, fh_port(srv)) == 0);
    for (int i = 0; i < 2; i++) {
        response_t r;
        REQUIRE(client_roundtrip(&c, "GET /hello HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
                                 &r) == 0);
        CHECK_INT(r.status, 200);
        CHECK(strstr(buf_cstr(&r.head), "\r\nConnection: keep-alive\r\n") != NULL);
        response_free(&r);
    }
    client_close(&c);
    CHECK_INT(fh_stats(srv).requests, 4); /* the request after "close" was not served */
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

TEST(expect_100_continue_gets_interim_response) {
    fake_t f;
    fake_init(&f);
    fh_server *srv = start_server(&f, 0, 0);
    REQUIRE(srv);
    client_t c;
    REQUIRE(client_connect(&c, fh_port(srv)) == 0);
    response_t r;
    REQUIRE(client_roundtrip(&c,
                             "POST /echo HTTP/1.1\r\nExpect: 100-continue\r\n"
                             "Content-Length: 5\r\n\r\n",
                             &r) == 0);
    CHECK_INT(r.status, 100);
    response_free(&r);
    REQUIRE(client_roundtrip(&c, "abcde", &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK_STR(buf_cstr(&r.body), "abcde");
    response_free(&r);
    client_close(&c);
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

TEST(large_body_is_echoed_intact) {
    fake_t f;
    fake_init(&f);
    fh_server *srv = start_server(&f, 0, 0);
    REQUIRE(srv);
    client_t c;
    REQUIRE(client_connect(&c, fh_port(srv)) == 0);
    size_t n = (size_t)3 << 20;
    char *body = xmalloc(n);
    rng_t rng;
    rng_seed(&rng, 42);
    for (size_t i = 0; i < n; i++) body[i] = (char)('a' + rng_below(&rng, 26));
    char head[128];
    snprintf(head, sizeof head, "POST /echo HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", n);
    REQUIRE(client_send_str(&c, head) == 0);
    REQUIRE(client_send(&c, body, n) == 0);
    response_t r;
    REQUIRE(client_read_response(&c, &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK_INT(r.body.len, n);
    CHECK(r.body.len == n && memcmp(r.body.data, body, n) == 0);
    response_free(&r);
    free(body);
    client_close(&c);
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

TEST(head_response_has_no_body) {
    fake_t f;
    fake_init(&f);
    fh_server *srv = start_server(&f, 0, 0);
    REQUIRE(srv);
    client_t c;
    REQUIRE(client_connect(&c, fh_port(srv)) == 0);
    REQUIRE(client_send_str(&c, "HEAD /hello HTTP/1.1\r\n\r\nGET /hello HTTP/1.1\r\n\r\n") == 0);
    /* Read the HEAD response's header block by hand: it announces 5 bytes, sends none. */
    while (!strstr(buf_cstr(&c.in), "\r\n\r\n")) REQUIRE(client_fill(&c) > 0);
    const char *end = strstr(c.in.data, "\r\n\r\n");
    CHECK(strstr(c.in.data, "Content-Length: 5\r\n") != NULL);
    client_consume(&c, (size_t)(end - c.in.data) + 4);
    response_t r;
    REQUIRE(client_read_response(&c, &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK_STR(buf_cstr(&r.body), "hello");
    response_free(&r);
    client_close(&c);
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

TEST(status_classes_are_counted) {
    fake_t f;
    fake_init(&f);
    fh_server *srv = start_server(&f, 0, 0);
    REQUIRE(srv);
    client_t c;
    REQUIRE(client_connect(&c, fh_port(srv)) == 0);
    static const int codes[] = {201, 302, 404, 429, 503};
    for (size_t i = 0; i < ARRAY_LEN(codes); i++) {
        char req[64];
        snprintf(req, sizeof req, "GET /status?code=%d HTTP/1.1\r\n\r\n", codes[i]);
        response_t r;
        REQUIRE(client_roundtrip(&c, req, &r) == 0);
        CHECK_INT(r.status, codes[i]);
        response_free(&r);
    }
    fh_stats_t st = fh_stats(srv);
    CHECK_INT(st.resp_2xx, 1);
    CHECK_INT(st.resp_3xx, 1);
    CHECK_INT(st.resp_4xx, 2);
    CHECK_INT(st.resp_5xx, 1);
    client_close(&c);
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

static void *quit_client(void *arg) {
    int port = *(int *)arg;
    client_t c;
    response_t r;
    int *ok = xcalloc(1, sizeof *ok);
    if (client_connect(&c, port) == 0 &&
        client_roundtrip(&c, "GET /quit HTTP/1.1\r\n\r\n", &r) == 0) {
        *ok = r.status == 200 && strcmp(buf_cstr(&r.body), "bye") == 0;
        response_free(&r);
    }
    client_close(&c);
    return ok;
}

TEST(runs_in_the_calling_thread_until_stopped) {
    fake_t f;
    fake_init(&f);
    fh_options o = {.handler = fake_handler, .ctx = &f};
    fh_server *srv = fh_create(&o);
    REQUIRE(srv);
    int port = fh_port(srv);
    CHECK(port > 0);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, quit_client, &port) == 0);
    CHECK_INT(fh_run(srv), 0);
    void *ok = NULL;
    REQUIRE(pthread_join(t, &ok) == 0);
    CHECK(ok && *(int *)ok);
    free(ok);
    CHECK_INT(fh_stats(srv).conns_open, 0);
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

TEST(stop_before_run_returns_at_once) {
    fake_t f;
    fake_init(&f);
    fh_options o = {.handler = fake_handler, .ctx = &f};
    fh_server *srv = fh_create(&o);
    REQUIRE(srv);
    fh_stop(srv);
    CHECK_INT(fh_run(srv), 0);
    /* The listener survives a run: a second run serves again. */
    CHECK_INT(fh_start_thread(srv), 0);
    client_t c;
    REQUIRE(client_connect(&c, fh_port(srv)) == 0);
    response_t r;
    REQUIRE(client_roundtrip(&c, "GET /hello HTTP/1.1\r\n\r\n", &r) == 0);
    CHECK_INT(r.status, 200);
    response_free(&r);
    client_close(&c);
    fh_destroy(srv);
    CHECK_INT(LEAKS_FOUND(), 0);
}

TEST(bind_to_a_port_in_use_fails) {
    fake_t f;
    fake_init(&f);
    fh_options o = {.handler = fake_handler, .ctx = &f};
    fh_server *a = fh_create(&o);
    REQUIRE(a);
    o.port = fh_port(a);
    fh_server *b = fh_create(&o);
    CHECK(b == NULL);
    fh_destroy(b);
    fh_destroy(a);
}
