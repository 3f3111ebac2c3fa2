/* The async HTTP client against a real loopback server (tests/fakes/fakehttp). */
#include "test.h"

#include <stdlib.h>

#include "fakes/fakehttp.h"
#include "net/net.h"
#include "util/mem.h"
#include "util/timeutil.h"

static void handler(fh_request *req, void *ctx) {
    (void)ctx;
    const char *path = fh_req_path(req);
    if (!strcmp(path, "/slow")) {
        fh_respond_after(req, 100, 200, "text/plain", "slow", 4);
    } else if (!strcmp(path, "/hang")) {
        fh_hang(req);
    } else if (!strcmp(path, "/429")) {
        fh_add_header(req, "Retry-After", "2");
        fh_add_header(req, "X-RateLimit-Remaining-Requests", "0");
        fh_respond(req, 429, "application/json", "{}", 2);
    } else if (!strcmp(path, "/big")) {
        char *b = xcalloc(1, 100000);
        memset(b, 'x', 99999);
        fh_respond(req, 200, "text/plain", b, 99999);
        free(b);
    } else if (!strcmp(path, "/truncated")) {
        fh_respond_truncated(req, 0, 200, "text/plain", "0123456789", 10, 4);
    } else {
        size_t len;
        const char *body = fh_req_body(req, &len);
        fh_respond(req, 200, "application/json", body ? body : "", body ? len : 0);
    }
}

typedef struct seen {
    int done;
} seen;

static void on_done(httpc_request *r) { ((seen *)r->user)->done++; }

static fh_server *start(void) {
    fh_options o = {0};
    o.handler = handler;
    fh_server *s = fh_create(&o);
    if (s) fh_start_thread(s);
    return s;
}

static char *url(fh_server *s, const char *path) {
    return xasprintf("http://127.0.0.1:%d%s", fh_port(s), path);
}

static void wait_all(httpc *h, seen *sn, int n) {
    int64_t deadline = mono_ms() + 10000;
    while (sn->done < n && mono_ms() < deadline) httpc_poll(h, 50);
}

TEST(post_echo_and_concurrent_requests_share_connections) {
    fh_server *s = start();
    REQUIRE(s != NULL);
    httpc *h = httpc_new(16, 0);
    seen sn = {0};
    httpc_request *reqs[16];
    char *u = url(s, "/slow");
    int64_t t0 = mono_ms();
    for (int i = 0; i < 16; i++) {
        reqs[i] = httpc_request_new("GET", u);
        reqs[i]->done = on_done;
        reqs[i]->user = &sn;
        CHECK_INT(httpc_submit(h, reqs[i]), 0);
    }
    CHECK_INT(httpc_in_flight(h), 16);
    wait_all(h, &sn, 16);
    int64_t elapsed = mono_ms() - t0;
    CHECK_INT(sn.done, 16);
    /* 16 requests of 100 ms in parallel, not in sequence */
    CHECK(elapsed < 1000);
    CHECK_INT(fh_stats(s).max_in_flight, 16);
    for (int i = 0; i < 16; i++) {
        CHECK_INT(reqs[i]->status, 200);
        CHECK_STR(buf_cstr(&reqs[i]->response), "slow");
    }
    /* a second round reuses the kept-alive connections */
    uint64_t conns = fh_stats(s).conns_accepted;
    sn.done = 0;
    for (int i = 0; i < 16; i++) CHECK_INT(httpc_submit(h, reqs[i]), 0);
    wait_all(h, &sn, 16);
    CHECK_INT(fh_stats(s).conns_accepted, conns);
    for (int i = 0; i < 16; i++) httpc_request_free(reqs[i]);
    free(u);
    u = url(s, "/echo");
    httpc_request *r = httpc_request_new("POST", u);
    httpc_request_header(r, "Content-Type", "application/json");
    httpc_request_body(r, "{\"a\":1}", 7);
    r->done = on_done;
    r->user = &sn;
    sn.done = 0;
    CHECK_INT(httpc_submit(h, r), 0);
    wait_all(h, &sn, 1);
    CHECK_STR(buf_cstr(&r->response), "{\"a\":1}");
    CHECK_STR(httpc_response_header(r, "Content-Type"), "application/json");
    httpc_request_free(r);
    free(u);
    httpc_free(h);
    fh_stop_thread(s);
    fh_destroy(s);
}

TEST(timeouts_truncation_size_limit_headers_and_cancel) {
    fh_server *s = start();
    REQUIRE(s != NULL);
    httpc *h = httpc_new(8, 1000);
    seen sn = {0};
    char *u1 = url(s, "/hang"), *u2 = url(s, "/truncated"), *u3 = url(s, "/big"), *u4 = url(s, "/429");
    httpc_request *hang = httpc_request_new("GET", u1), *tr = httpc_request_new("GET", u2),
                  *big = httpc_request_new("GET", u3), *rl = httpc_request_new("GET", u4);
    hang->timeout_ms = 200;
    httpc_request *all[] = {hang, tr, big, rl};
    for (int i = 0; i < 4; i++) {
        all[i]->done = on_done;
        all[i]->user = &sn;
        CHECK_INT(httpc_submit(h, all[i]), 0);
    }
    wait_all(h, &sn, 4);
    CHECK(hang->failed && hang->timed_out);
    CHECK(tr->failed);
    CHECK(big->failed && big->too_large);
    CHECK(strstr(big->error, "larger than 1000 bytes") != NULL);
    CHECK_INT(rl->status, 429);
    CHECK(!rl->failed);
    CHECK_INT(parse_retry_after_ms(httpc_response_header(rl, "retry-after"), 0), 2000);
    CHECK_STR(httpc_response_header(rl, "x-ratelimit-remaining-requests"), "0");
    /* cancel: done runs with cancelled set */
    sn.done = 0;
    hang->timeout_ms = 0;
    CHECK_INT(httpc_submit(h, hang), 0);
    httpc_poll(h, 20);
    httpc_cancel_all(h);
    CHECK_INT(sn.done, 1);
    CHECK(hang->cancelled);
    CHECK_INT(httpc_in_flight(h), 0);
    for (int i = 0; i < 4; i++) httpc_request_free(all[i]);
    free(u1);
    free(u2);
    free(u3);
    free(u4);
    httpc_free(h);
    fh_stop_thread(s);
    fh_destroy(s);
}

TEST(retry_arithmetic) {
    rng_t r;
    rng_seed(&r, 1);
    for (int a = 0; a < 12; a++) {
        int64_t d = backoff_full_jitter_ms(a, 100, 5000, &r);
        int64_t ceil = 100;
        for (int i = 0; i < a && ceil < 5000; i++) ceil *= 2;
        if (ceil > 5000) ceil = 5000;
        CHECK(d >= 0 && d <= ceil);
    }
    /* jitter actually spreads */
    int64_t lo = 10000, hi = 0;
    for (int i = 0; i < 200; i++) {
        int64_t d = backoff_full_jitter_ms(5, 100, 100000, &r);
        if (d < lo) lo = d;
        if (d > hi) hi = d;
    }
    CHECK(lo < 800 && hi > 2400);
    CHECK_INT(parse_retry_after_ms("3", 0), 3000);
    CHECK_INT(parse_retry_after_ms(" 0.5 ", 0), 500);
    CHECK_INT(parse_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470), 10000);
    CHECK_INT(parse_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", 1445412490), 0);
    CHECK_INT(parse_retry_after_ms("soon", 0), -1);
    CHECK_INT(parse_retry_after_ms(NULL, 0), -1);
    /* Reset times absurdly far ahead saturate instead of overflowing the milliseconds
     * (found by tests/fuzz/fuzz_intercom); callers cap the wait. */
    CHECK(parse_retry_after_ms("Wed, 21 Oct 2000000000 07:28:00 GMT", 0) == INT64_MAX);
    httpc_request *q = httpc_request_new("GET", "http://x/");
    q->resp_headers[0].name = xstrdup("x-ratelimit-reset");
    q->resp_headers[0].value = xstrdup("70688888888888888888888888");
    q->nresp_headers = 1;
    CHECK(net_rate_limit_wait_ms(q) > (int64_t)1 << 62);
    httpc_request_free(q);
    CHECK_INT(parse_duration_ms("1s"), 1000);
    CHECK_INT(parse_duration_ms("6m0s"), 360000);
    CHECK_INT(parse_duration_ms("20ms"), 20);
    CHECK_INT(parse_duration_ms("1h2m3.5s"), 3723500);
    CHECK_INT(parse_duration_ms("7"), 7000);
    CHECK_INT(parse_duration_ms("7x"), -1);
}
