/* The shared requests/min schedule of the flow control (ratelimit.h, rl_share/rl_grant)
 * on a simulated clock: several limiters take slots from one schedule (as processes do
 * from the rate_budget row, store_budget.c) and wake up late by random amounts, as
 * busy event loops do. */
#include "test.h"

#include <stdlib.h>

#include "llm/ratelimit.h"
#include "util/mem.h"
#include "util/rng.h"

/* The schedule the processes share: the next free slot (what the database row holds). */
typedef struct schedule {
    double next_ms;
    int64_t claims, granted;
} schedule;

static void claim(schedule *s, ratelimit *rl, int queued, double now_ms) {
    int n = rl_grant_size(rl, queued);
    double interval = rl_shared_interval_ms(rl);
    double first = s->next_ms > now_ms ? s->next_ms : now_ms;
    s->next_ms = first + n * interval;
    s->claims++;
    s->granted += n;
    rl_grant(rl, first, interval, n);
}

typedef struct sim {
    int64_t *sent;
    size_t n, cap;
    int64_t early; /* sends before their slot: must stay 0 */
} sim;

/* nproc limiters with a backlog of requests, each request on the wire for 1 ms, each
 * process waking up to max_late_ms after it asked to. Send times in s->sent (sorted). */
static void simulate(sim *s, schedule *sch, int nproc, double rpm, int64_t duration_ms,
                     int64_t max_late_ms, uint64_t seed) {
    memset(s, 0, sizeof *s);
    memset(sch, 0, sizeof *sch);
    ratelimit *rl = xcalloc((size_t)nproc, sizeof *rl);
    int64_t *wake = xcalloc((size_t)nproc, sizeof *wake);
    rng_t rng;
    rng_seed(&rng, seed);
    for (int p = 0; p < nproc; p++) {
        rl_init(&rl[p], 8, rpm, 0, 0);
        rl_share(&rl[p], 1, 0);
    }
    for (int64_t now = 0; now < duration_ms; now++) {
        for (int p = 0; p < nproc; p++) {
            if (rl[p].in_flight > 0) rl_on_done(&rl[p]); /* answered within 1 ms */
            if (now < wake[p]) continue;
            int64_t d = rl_delay_ms(&rl[p], 10, now);
            if (d == RL_NEED_GRANT) {
                claim(sch, &rl[p], 20, (double)now);
                d = rl_delay_ms(&rl[p], 10, now);
            }
            if (d == 0) {
                if (rl[p].shared.n > 0 && rl[p].shared.slot_ms[rl[p].shared.head] > (double)now)
                    s->early++;
                rl_on_send(&rl[p], 10, now);
                XGROW(s->sent, s->cap, s->n + 1);
                s->sent[s->n++] = now;
                continue;
            }
            int64_t late = (int64_t)rng_below(&rng, (uint64_t)max_late_ms + 1);
            wake[p] = now + (d == RL_WAIT_SLOT ? 1 : d) + late;
        }
    }
    free(rl);
    free(wake);
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

TEST(processes_sharing_a_schedule_stay_within_the_limit_in_every_minute) {
    const double limits[] = {30, 600, 3000};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        sim s;
        schedule sch;
        simulate(&s, &sch, 4, limits[i], 180000, 5, 11 + i);
        size_t worst = max_in_window(s.sent, s.n, 60000);
        double achieved = (double)s.n / 3.0; /* per minute over 3 minutes */
        fprintf(stdout, "    limit %.0f/min, 4 processes: at most %zu in a minute, %.1f/min "
                        "achieved, %lld claims for %zu requests\n",
                limits[i], worst, achieved, (long long)sch.claims, s.n);
        CHECK(worst <= (size_t)limits[i]);
        CHECK(achieved >= limits[i] * 0.95);
        CHECK_INT(s.early, 0);
        CHECK(sch.claims * 4 <= (int64_t)s.n); /* blocks of about five */
        free(s.sent);
    }
}

TEST(short_windows_hold_when_their_share_is_large_enough) {
    /* 1200/min is 60 per 3 s, the fake endpoint's window in the e2e tests; late wake-ups
     * of up to 20 ms (beyond the 25 ms tolerance some slots are dropped, never used
     * late). */
    sim s;
    schedule sch;
    simulate(&s, &sch, 3, 1200, 60000, 20, 5);
    size_t worst = max_in_window(s.sent, s.n, 3000);
    fprintf(stdout, "    1200/min, 3 processes: at most %zu in 3 s, %zu sent in 60 s\n", worst, s.n);
    CHECK(worst <= 60);
    CHECK(s.n >= 1100);
    CHECK_INT(s.early, 0);
    free(s.sent);
    /* Event loops late by up to 80 ms: slots are missed and dropped, the rate falls,
     * the limit still holds. */
    simulate(&s, &sch, 3, 1200, 60000, 80, 6);
    worst = max_in_window(s.sent, s.n, 3000);
    fprintf(stdout, "    the same, up to 80 ms late: at most %zu in 3 s, %zu sent in 60 s\n",
            worst, s.n);
    CHECK(worst <= 60);
    CHECK_INT(s.early, 0);
    free(s.sent);
}

TEST(a_slot_missed_by_more_than_the_tolerance_is_dropped_not_used_late) {
    ratelimit rl;
    rl_init(&rl, 8, 600, 0, 0); /* 600/min at 98%: a slot every 102 ms, 51 ms of tolerance */
    rl_share(&rl, 1, 0);
    double interval = rl_shared_interval_ms(&rl);
    CHECK_NEAR(interval, 60000.0 / (600 * RL_SAFETY), 1e-9);
    CHECK_NEAR(rl_shared_late_ms(&rl), interval / 2, 1e-9);
    CHECK(rl_delay_ms(&rl, 1, 0) == RL_NEED_GRANT);
    rl_grant(&rl, 1000, interval, 3); /* slots at 1000, 1102, 1204 */
    CHECK_INT(rl_delay_ms(&rl, 1, 900), 100);  /* not before its slot */
    CHECK_INT(rl_delay_ms(&rl, 1, 1040), 0);   /* 40 ms late: still fine */
    rl_on_send(&rl, 1, 1040);
    rl_on_done(&rl);
    /* At 1300 the slot of 1102 is 198 ms old (dropped), 1204 is 96 ms old (dropped). */
    CHECK(rl_delay_ms(&rl, 1, 1300) == RL_NEED_GRANT);
    CHECK_INT((int64_t)rl.shared.used, 1);
    CHECK_INT((int64_t)rl.shared.dropped, 2);
    /* Very low and very high limits keep the tolerance within bounds. */
    ratelimit slow, fast;
    rl_init(&slow, 8, 10, 0, 0);
    rl_init(&fast, 8, 600000, 0, 0);
    CHECK_NEAR(rl_shared_late_ms(&slow), RL_SHARED_LATE_MAX_MS, 1e-9);
    CHECK_NEAR(rl_shared_late_ms(&fast), RL_SHARED_LATE_MIN_MS, 1e-9);
}

TEST(no_limit_known_means_no_claims_until_headers_report_one) {
    ratelimit rl;
    rl_init(&rl, 4, 0, 0, 0);
    rl_share(&rl, 1, 0);
    CHECK_NEAR(rl_shared_interval_ms(&rl), 0, 1e-12);
    CHECK_INT(rl_delay_ms(&rl, 1, 0), 0); /* unlimited: nothing to claim */
    rl_headers h = {-1, -1, -1, -1, -1, -1};
    h.limit_requests = 1200;
    rl_on_headers(&rl, &h, 1, 10);
    CHECK(rl_delay_ms(&rl, 1, 10) == RL_NEED_GRANT);
    CHECK_NEAR(rl_effective_rpm(&rl), 1200 * RL_SAFETY, 1e-6);
    /* The local bucket does not pace on top of the schedule: granted slots go at once. */
    rl_grant(&rl, 10, rl_shared_interval_ms(&rl), 3);
    CHECK_INT(rl_delay_ms(&rl, 1, 10), 0);
    rl_on_send(&rl, 1, 10);
    CHECK_INT(rl_delay_ms(&rl, 1, 60), 2); /* the second slot is at 10 + 51.02 */
    CHECK_INT(rl_delay_ms(&rl, 1, 62), 0);
    /* Back to pacing alone. */
    rl_share(&rl, 0, 100);
    CHECK_INT(rl.shared.n, 0);
    CHECK_NEAR(rl_effective_rpm(&rl), 1200 * RL_SAFETY, 1e-6);
}

TEST(grants_are_sized_by_the_queue_and_the_free_concurrency) {
    ratelimit rl;
    rl_init(&rl, 3, 600, 0, 0);
    rl_share(&rl, 1, 0);
    CHECK_INT(rl_grant_size(&rl, 1), 1);
    CHECK_INT(rl_grant_size(&rl, 2), 2);
    CHECK_INT(rl_grant_size(&rl, 50), 3); /* concurrency 3 */
    rl_on_send(&rl, 1, 0);
    CHECK_INT(rl_grant_size(&rl, 50), 2);
    ratelimit wide;
    rl_init(&wide, 100, 600, 0, 0);
    CHECK_INT(rl_grant_size(&wide, 50), RL_SHARED_BLOCK);
    /* More than a block is never kept. */
    rl_share(&wide, 1, 0);
    rl_grant(&wide, 0, 10, RL_SHARED_BLOCK + 3);
    CHECK_INT(wide.shared.n, RL_SHARED_BLOCK);
}

TEST(a_rate_limited_answer_still_pauses_a_shared_limiter) {
    ratelimit rl;
    rl_init(&rl, 4, 600, 0, 0);
    rl_share(&rl, 1, 0);
    rl_grant(&rl, 0, rl_shared_interval_ms(&rl), 2);
    uint64_t seq = rl_on_send(&rl, 1, 0);
    rl_on_done(&rl);
    rl_on_429(&rl, 500, seq, 5);
    /* Paused: the slot waits (and is not spent while waiting). */
    CHECK_INT(rl_delay_ms(&rl, 1, 100), 405);
    CHECK_INT((int64_t)rl.shared.dropped, 0);
    /* The cut caps this process below the shared limit. */
    CHECK(rl_effective_rpm(&rl) < 600 * RL_SAFETY);
}
