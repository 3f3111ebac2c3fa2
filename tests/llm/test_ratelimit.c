/* The LLM client's flow control (src/llm/ratelimit.c) on a simulated clock. */
#include "test.h"

#include <stdlib.h>

#include "llm/ratelimit.h"
#include "util/mem.h"

/* Sends as fast as the limiter allows for duration_ms (each request leaves the wire
 * at once); returns the send times (count in *n). */
static int64_t *simulate(ratelimit *rl, int64_t tokens, int64_t duration_ms, size_t *n) {
    size_t cap = 1024;
    int64_t *t = xmalloc(cap * sizeof *t);
    *n = 0;
    int64_t now = 0;
    while (now < duration_ms) {
        int64_t d = rl_delay_ms(rl, tokens, now);
        if (d > 0) {
            now += d;
            continue;
        }
        rl_on_send(rl, tokens, now);
        rl_on_done(rl);
        if (*n == cap) t = xrealloc(t, (cap *= 2) * sizeof *t);
        t[(*n)++] = now;
    }
    return t;
}

/* The most sends in any window [t, t + window). */
static size_t max_in_window(const int64_t *t, size_t n, int64_t window) {
    size_t best = 0, lo = 0;
    for (size_t hi = 0; hi < n; hi++) {
        while (t[hi] - t[lo] >= window) lo++;
        if (hi - lo + 1 > best) best = hi - lo + 1;
    }
    return best;
}

TEST(concurrency_cap_blocks_until_a_request_leaves) {
    ratelimit rl;
    rl_init(&rl, 3, 0, 0, 0);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(rl_delay_ms(&rl, 10, 0), 0);
        rl_on_send(&rl, 10, 0);
    }
    CHECK(rl_delay_ms(&rl, 10, 0) == RL_WAIT_SLOT);
    rl_on_done(&rl);
    CHECK_INT(rl_delay_ms(&rl, 10, 0), 0);
    /* clamped to the documented bounds */
    rl_init(&rl, 100000, 0, 0, 0);
    CHECK_INT(rl.concurrency, LLM_MAX_CONCURRENCY);
    rl_init(&rl, 0, 0, 0, 0);
    CHECK_INT(rl.concurrency, 1);
}

TEST(requests_per_minute_never_exceeded_in_any_window_and_nearly_reached) {
    ratelimit rl;
    rl_init(&rl, 20, 600, 0, 0);
    size_t n;
    int64_t *t = simulate(&rl, 100, 180000, &n);
    /* 60 s windows (the limit's) and shorter ones scaled from it */
    CHECK(max_in_window(t, n, 60000) <= 600);
    CHECK(max_in_window(t, n, 5000) <= 50);
    CHECK(max_in_window(t, n, 1000) <= 10);
    /* throughput: at least 95% of the limit over three minutes */
    CHECK(n >= (size_t)(0.95 * 1800));
    CHECK_NEAR(rl_effective_rpm(&rl), 588, 0.5);
    free(t);
}

TEST(tokens_per_minute_bucket_with_large_requests) {
    ratelimit rl;
    rl_init(&rl, 50, 0, 60000, 0);
    size_t n;
    int64_t *t = simulate(&rl, 3000, 240000, &n); /* 20 requests/min of 3000 tokens */
    CHECK(max_in_window(t, n, 60000) * 3000 <= 60000);
    CHECK(n >= (size_t)(0.9 * 80));
    free(t);
    /* a request larger than the bucket's burst is not starved: it waits for a full
     * bucket, then goes into debt */
    rl_init(&rl, 5, 0, 60000, 0);
    CHECK_INT(rl_delay_ms(&rl, 50000, 0), 0);
    rl_on_send(&rl, 50000, 0);
    rl_on_done(&rl);
    int64_t d = rl_delay_ms(&rl, 10, 0);
    CHECK(d > 40000 && d < 60000);
    /* reported usage refunds an over-estimate */
    rl_on_usage(&rl, 50000, 1000, 0);
    CHECK_INT(rl_delay_ms(&rl, 10, 0), 0);
}

static const char *lookup(const void *ctx, const char *name) {
    const char *const *kv = ctx;
    for (size_t i = 0; kv[i]; i += 2)
        if (!strcmp(kv[i], name)) return kv[i + 1];
    return NULL;
}

TEST(limits_and_budgets_learned_from_headers) {
    const char *kv[] = {"x-ratelimit-limit-requests", "600",
                        "x-ratelimit-remaining-requests", "3",
                        "x-ratelimit-reset-requests", "1.5s",
                        "x-ratelimit-limit-tokens", "150000",
                        "x-ratelimit-remaining-tokens", "149000",
                        "x-ratelimit-reset-tokens", "6m0s",
                        NULL};
    rl_headers h;
    rl_parse_headers(&h, lookup, kv);
    CHECK_NEAR(h.limit_requests, 600, 0);
    CHECK_NEAR(h.remaining_requests, 3, 0);
    CHECK_INT(h.reset_requests_ms, 1500);
    CHECK_INT(h.reset_tokens_ms, 360000);
    const char *none[] = {NULL};
    rl_headers absent;
    rl_parse_headers(&absent, lookup, none);
    CHECK(absent.limit_requests < 0 && absent.remaining_tokens < 0 && absent.reset_requests_ms < 0);

    ratelimit rl;
    rl_init(&rl, 64, 0, 0, 0);
    CHECK_NEAR(rl_effective_rpm(&rl), 0, 0); /* nothing known: unlimited */
    uint64_t seq[8];
    for (int i = 0; i < 8; i++) seq[i] = rl_on_send(&rl, 10, 0);
    /* the answer to the 2nd request says 3 remain; 6 were sent after it: over budget */
    rl_on_headers(&rl, &h, seq[1], 100);
    CHECK_NEAR(rl_effective_rpm(&rl), 588, 0.5);
    int64_t d = rl_delay_ms(&rl, 10, 100);
    CHECK(d >= 1500 - 1 && d <= 1500);
    /* an older report does not replace a newer one */
    h.remaining_requests = 500;
    rl_on_headers(&rl, &h, seq[0], 150);
    CHECK(rl_delay_ms(&rl, 10, 150) > 1000);
    /* the budget lapses at its reset */
    CHECK(rl_delay_ms(&rl, 10, 1700) < 200);
    /* a configured limit lower than the header's wins */
    rl_init(&rl, 64, 120, 0, 0);
    h.remaining_requests = -1;
    rl_on_headers(&rl, &h, rl_on_send(&rl, 1, 0), 0);
    CHECK_NEAR(rl_effective_rpm(&rl), 120 * RL_SAFETY, 0.01);
}

TEST(rate_limited_answers_pause_and_cut_the_rate_then_it_recovers) {
    ratelimit rl;
    rl_init(&rl, 64, 600, 0, 0);
    uint64_t before = 0;
    for (int i = 0; i < 10; i++) before = rl_on_send(&rl, 1, i * 100);
    for (int i = 0; i < 10; i++) rl_on_done(&rl);
    rl_on_429(&rl, 2000, before, 1000);
    CHECK(rl_delay_ms(&rl, 1, 1000) >= 2000 - 1);  /* paused for Retry-After */
    CHECK_NEAR(rl_effective_rpm(&rl), 294, 0.5);   /* half of the paced 588 */
    /* more 429s of requests sent before the cut are the same signal */
    rl_on_429(&rl, 2000, before - 1, 1001);
    CHECK_NEAR(rl_effective_rpm(&rl), 294, 0.5);
    /* a 429 of a request sent after the cut halves again, not below the floor */
    uint64_t after = rl_on_send(&rl, 1, 3100);
    rl_on_done(&rl);
    rl_on_429(&rl, -1, after, 3200);
    CHECK_NEAR(rl_effective_rpm(&rl), 147, 0.5);
    CHECK(rl_delay_ms(&rl, 1, 3200) >= RL_DEFAULT_PAUSE_MS - 1); /* no header: default pause */
    /* additive increase: 1% of the peak per success, lifted at the peak */
    for (int i = 0; i < 10; i++) rl_on_success(&rl, 5000);
    CHECK_NEAR(rl_effective_rpm(&rl), 147 + 10 * 5.88, 0.5);
    for (int i = 0; i < 100; i++) rl_on_success(&rl, 5000);
    CHECK_NEAR(rl_effective_rpm(&rl), 588, 0.5);
    CHECK_INT(rl.n429, 3);
    CHECK_INT(rl.cuts, 2);
}

TEST(rate_cut_without_a_known_limit_starts_from_the_achieved_rate) {
    ratelimit rl;
    rl_init(&rl, 64, 0, 0, 0);
    uint64_t s = 0;
    for (int i = 0; i < 40; i++) {
        s = rl_on_send(&rl, 1, i * 50); /* 20 requests/s = 1200/min */
        rl_on_done(&rl);
    }
    CHECK_NEAR(rl_recent_rpm(&rl, 2000), 1200, 1);
    rl_on_429(&rl, 100, s, 2000);
    CHECK_NEAR(rl_effective_rpm(&rl), 600, 1);
    /* a tiny rate never goes below the floor */
    rl_init(&rl, 4, 0, 0, 0);
    s = rl_on_send(&rl, 1, 0);
    rl_on_done(&rl);
    rl_on_429(&rl, 100, s, 600000);
    CHECK(rl_effective_rpm(&rl) >= RL_MIN_RPM);
}

TEST(token_budget_from_headers_holds_requests_that_do_not_fit) {
    ratelimit rl;
    rl_init(&rl, 8, 0, 0, 0);
    uint64_t s = rl_on_send(&rl, 1000, 0);
    rl_on_done(&rl);
    rl_headers h = {-1, -1, -1, -1, -1, -1};
    h.limit_tokens = 100000;
    h.remaining_tokens = 3000;
    h.reset_tokens_ms = 2000;
    rl_on_headers(&rl, &h, s, 10);
    CHECK_INT(rl_delay_ms(&rl, 2000, 10), 0); /* fits in the 3000 left */
    rl_on_send(&rl, 2000, 10);
    rl_on_done(&rl);
    int64_t d = rl_delay_ms(&rl, 2000, 20); /* 1000 left: wait for the reset at 2010 */
    CHECK(d >= 1980 && d <= 1990);
    CHECK_INT(rl_delay_ms(&rl, 2000, 2010), 0);
    /* one larger than the whole limit only needs a positive budget (else it would
     * wait forever) */
    h.remaining_tokens = 500;
    rl_on_headers(&rl, &h, rl_on_send(&rl, 1, 2010), 2010);
    rl_on_done(&rl);
    CHECK(rl_delay_ms(&rl, 200000, 2020) < 100);
    CHECK(rl_delay_ms(&rl, 1000, 2020) >= 1980); /* while a normal one that does not fit waits */
}
