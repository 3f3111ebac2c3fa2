/* Hostile traffic: a burst of 10 000 malformed requests over raw sockets (garbage,
 * bad framing, bad headers, oversized and truncated bodies, invalid JSON, deep
 * nesting) from several threads, and a pile of idle connections; afterwards the server
 * is healthy, has started no run, still serves and runs, and shuts down cleanly (exit
 * status 0 under the sanitizers: no leak, no memory error). */
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support/fixtures.h"
#include "support/server.h"
#include "util/buf.h"
#include "util/mem.h"
#include "util/timeutil.h"

#define BURST 10000
#define THREADS 8

typedef struct payload {
    char *bytes;
    size_t len;
    int complete; /* a whole (if malformed) request: the server answers or closes */
} payload;

static payload P[32];
static size_t NP;

static void add(const char *bytes, size_t len, int complete) {
    P[NP].bytes = xmalloc(len);
    memcpy(P[NP].bytes, bytes, len);
    P[NP].len = len;
    P[NP].complete = complete;
    NP++;
}

static void add_str(const char *s, int complete) { add(s, strlen(s), complete); }

static void build_payloads(void) {
    NP = 0;
    add_str("GARBAGE\r\n\r\n", 1);
    add_str("GET / HTTP/9.9\r\nHost: x\r\n\r\n", 1);
    add_str("GET /health\r\n\r\n", 1);
    add_str("GET /health HTTP/1.1\r\nBadHeaderWithoutColon\r\n\r\n", 1);
    add_str("POST /api/pipeline/run HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 1);
    add_str("POST /api/pipeline/run HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 1);
    add_str("POST /api/pipeline/run HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"days\":", 0);
    add_str("POST /api/pipeline/run HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{\"days\":\x01", 1);
    add_str("POST /api/pipeline/run HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n", 1);
    add_str("POST /api/pipeline/run HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n[1,2]", 1);
    add_str("POST /api/pipeline/run HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\n\r\n{\"days\":\"7\"}xx", 1);
    add_str("POST /api/pipeline/run HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n", 1);
    add_str("POST /api/pipeline/run HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\"", 0);
    add_str("GET /api/pipeline/status/%zz HTTP/1.1\r\nHost: x\r\n\r\n", 1);
    add_str("GET /api/pipeline/status/99999999999999999999999 HTTP/1.1\r\nHost: x\r\n\r\n", 1);
    add_str("GET /health HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n", 1);
    add_str("\r\n\r\n\r\n", 0); /* blank lines before a request line are allowed */
    add_str("GET /api/pipeline/history?limit=1&limit=abc&offset=-1 HTTP/1.1\r\nHost: x\r\n\r\n", 1);
    add_str("DELETE /api/pipeline/run HTTP/1.1\r\nHost: x\r\n\r\n", 1);
    add_str("POST /api/pipeline/run HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nnull", 1);
    add_str("GET /api/pipeline/1/events HTTP/1.1\r\nHost: x\r\n", 0);
    add_str("OPTIONS /api/pipeline/run HTTP/1.1\r\nHost: x\r\nOrigin: http://evil\r\n"
            "Access-Control-Request-Method: POST\r\n\r\n", 1);
    const char bin[] = {0, 1, 2, 3, (char)0xff, (char)0xfe, '\r', '\n', '\r', '\n', 0, 0};
    add(bin, sizeof bin, 0);

    /* A 40 KiB header line: beyond the per-connection memory. */
    buf_t b = BUF_INIT;
    buf_puts(&b, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ");
    for (int i = 0; i < 40 * 1024; i++) buf_putc(&b, 'a');
    buf_puts(&b, "\r\n\r\n");
    add(b.data, b.len, 1);
    buf_reset(&b);
    /* JSON nested 20 000 deep, inside the body limit. */
    buf_printf(&b, "POST /api/pipeline/run HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 40000);
    for (int i = 0; i < 20000; i++) buf_putc(&b, '[');
    for (int i = 0; i < 20000; i++) buf_putc(&b, ']');
    add(b.data, b.len, 1);
    buf_free(&b);
}

static void free_payloads(void) {
    for (size_t i = 0; i < NP; i++) free(P[i].bytes);
    NP = 0;
}

/* 1 when buf holds a whole response (headers and Content-Length bytes of body). */
static int whole_response(const char *buf, size_t len) {
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end) return 0;
    const char *cl = memmem(buf, (size_t)(end - buf), "Content-Length: ", 16);
    size_t body = cl ? (size_t)atol(cl + 16) : 0;
    return len >= (size_t)(end + 4 - buf) + body;
}

/* Sends a payload; for a complete one, reads until a whole response arrived, the
 * server closed, or 2 s passed; then closes. Returns 1 if a response came back. */
static int send_one(int port, const payload *p) {
    int fd = ts_connect(port, 0);
    if (fd < 0) return -1;
    size_t off = 0;
    while (off < p->len) {
        ssize_t n = send(fd, p->bytes + off, p->len - off, MSG_NOSIGNAL);
        if (n <= 0) break; /* the server may close early (e.g. 413 before the body) */
        off += (size_t)n;
    }
    int got = 0;
    if (p->complete) {
        int64_t deadline = mono_ms() + 2000;
        char buf[8192];
        size_t have = 0;
        while (mono_ms() < deadline && !whole_response(buf, have)) {
            struct pollfd pf = {fd, POLLIN, 0};
            if (poll(&pf, 1, 50) <= 0) continue;
            ssize_t n = recv(fd, buf + have, sizeof buf - have, 0);
            if (n <= 0) break;
            have += (size_t)n;
            if (have == sizeof buf) break;
        }
        got = have > 0;
    }
    close(fd);
    return got;
}

typedef struct burster {
    int port, first, count;
    int answered, failed_connects;
} burster;

static void *burst(void *arg) {
    burster *b = arg;
    for (int i = 0; i < b->count; i++) {
        int rc = send_one(b->port, &P[(size_t)(b->first + i) % NP]);
        if (rc < 0) b->failed_connects++;
        else b->answered += rc;
    }
    return NULL;
}

static long rss_kb(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = atol(line + 6);
    if (f) fclose(f);
    return kb;
}

TEST(ten_thousand_malformed_requests_leave_the_server_healthy) {
    char *db = ts_corpus_db(0, 0);
    test_server s;
    /* A small sanitizer quarantine, so the resident size shows what the server keeps
     * rather than freed memory AddressSanitizer holds back. */
    const char *asan = getenv("ASAN_OPTIONS");
    char *asan_env = xasprintf("ASAN_OPTIONS=%s%squarantine_size_mb=4", asan ? asan : "",
                               asan && asan[0] ? ":" : "");
    const char *const env[] = {asan_env, NULL};
    REQUIRE(ts_start(&s, db, NULL, env) == 0);
    build_payloads();
    http_resp r;
    ts_get(&s, "/health", &r); /* warm up */
    http_resp_free(&r);
    long rss_before = rss_kb(s.pid);
    burster b[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        b[i] = (burster){s.port, i * (BURST / THREADS), BURST / THREADS, 0, 0};
        pthread_create(&t[i], NULL, burst, &b[i]);
    }
    int answered = 0, failed = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        answered += b[i].answered;
        failed += b[i].failed_connects;
    }
    CHECK_INT(failed, 0);
    CHECK(answered > BURST / 2); /* most malformed requests get an error response */

    /* Healthy: answers, started no run, leaks nothing visible. */
    REQUIRE(ts_get(&s, "/health", &r) == 0);
    CHECK_INT(r.status, 200);
    http_resp_free(&r);
    REQUIRE(ts_get(&s, "/api/pipeline/history", &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK_INT(json_array_size(r.json), 0);
    http_resp_free(&r);
    long rss_after = rss_kb(s.pid);
    CHECK(rss_after > 0 && rss_after < rss_before + 64 * 1024);
    if (rss_after >= rss_before + 64 * 1024)
        printf("    RSS grew from %ld kB to %ld kB\n", rss_before, rss_after);
    REQUIRE(ts_get(&s, "/metrics", &r) == 0);
    CHECK(strstr(r.body, "status=\"422\"") != NULL);
    CHECK(strstr(r.body, "status=\"413\"") != NULL);
    http_resp_free(&r);
    /* And still does real work. */
    int64_t id = ts_start_run(&s, "{\"all_conversations\": true}");
    REQUIRE(id > 0);
    int ok;
    json_t *st = ts_wait_status(&s, id, 120000, ts_is_terminal, NULL, &ok);
    CHECK(ok);
    CHECK_STR(json_string_value(json_object_get(st, "status")), "completed");
    json_decref(st);
    free_payloads();
    CHECK_INT(ts_stop(&s, 60000), 0);
    ts_remove_db(db);
    free(db);
    free(asan_env);
}

TEST(idle_and_half_open_connections_do_not_block_service) {
    char *db = ts_corpus_db(0, 0);
    test_server s;
    REQUIRE(ts_start(&s, db, NULL, NULL) == 0);
    enum { IDLE = 300 };
    int fds[IDLE];
    for (int i = 0; i < IDLE; i++) {
        fds[i] = ts_connect(s.port, 0);
        CHECK(fds[i] >= 0);
        /* Half of them start a request and never finish it. */
        if (fds[i] >= 0 && i % 2)
            (void)!send(fds[i], "POST /api/pipeline/run HTTP/1.1\r\nHost: x\r\nContent-Le", 50,
                        MSG_NOSIGNAL);
    }
    for (int i = 0; i < 50; i++) {
        http_resp r;
        REQUIRE(ts_get(&s, "/api/pipeline/active", &r) == 0);
        CHECK_INT(r.status, 200);
        CHECK(r.seconds < 1.0);
        http_resp_free(&r);
    }
    for (int i = 0; i < IDLE; i++)
        if (fds[i] >= 0) close(fds[i]);
    CHECK_INT(ts_stop(&s, 60000), 0);
    ts_remove_db(db);
    free(db);
}

TEST(connections_closed_mid_request_are_released_at_once) {
    /* More than API_MAX_CONNECTIONS (1024) clients each send part of a request and
     * close: if the server kept any of them until its idle timeout, the limit would be
     * reached and the request after them would wait. */
    char *db = ts_corpus_db(0, 0);
    test_server s;
    REQUIRE(ts_start(&s, db, NULL, NULL) == 0);
    static const char partial[] =
        "POST /api/pipeline/run HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"days\":";
    int failed = 0;
    for (int i = 0; i < 1100; i++) {
        int fd = ts_connect(s.port, 0);
        if (fd < 0) {
            failed++;
            continue;
        }
        (void)!send(fd, partial, sizeof partial - 1, MSG_NOSIGNAL);
        close(fd);
    }
    CHECK_INT(failed, 0);
    http_resp r;
    REQUIRE(ts_get(&s, "/health", &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK(r.seconds < 2.0);
    http_resp_free(&r);
    CHECK_INT(ts_stop(&s, 60000), 0);
    ts_remove_db(db);
    free(db);
}
