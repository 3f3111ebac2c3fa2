/* One request to its end with retries (see call.h). */
#include "net/call.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/retry.h"
#include "util/timeutil.h"

#define POLL_SLICE_MS 100

/* A whole non-negative decimal number, or -1. */
static int64_t whole_number(const char *s) {
    if (!s || !*s) return -1;
    char *end;
    long long v = strtoll(s, &end, 10);
    return *end == '\0' && v >= 0 ? (int64_t)v : -1;
}

/* Milliseconds from now until an absolute reset at at_ms (never negative), with the
 * margin. */
static int64_t until(int64_t at_ms, int64_t now_ms) {
    int64_t d = at_ms - now_ms;
    if (d > INT64_MAX - NET_RESET_MARGIN_MS) return INT64_MAX;
    return (d < 0 ? 0 : d) + NET_RESET_MARGIN_MS;
}

int64_t net_rate_limit_wait_ms(const httpc_request *r) {
    int64_t now = wall_ms(), wait = -1;
    int64_t w = parse_retry_after_ms(httpc_response_header(r, "retry-after"), now / 1000);
    if (w > wait) wait = w;
    /* GitHub, Intercom: epoch seconds; Jira Cloud sends an ISO-8601 time instead. */
    const char *reset = httpc_response_header(r, "x-ratelimit-reset");
    int64_t secs = whole_number(reset);
    if (secs < 0 && reset && iso8601_parse(reset, &secs) != 0) secs = -1;
    /* A reset absurdly far ahead (strtoll saturates) must not overflow the conversion to
     * milliseconds (found by tests/fuzz/fuzz_intercom); callers cap the wait. */
    if (secs > 0 && (w = until(secs > INT64_MAX / 1000 ? INT64_MAX : secs * 1000, now)) > wait)
        wait = w;
    /* Linear: epoch milliseconds. */
    int64_t ms = whole_number(httpc_response_header(r, "x-ratelimit-requests-reset"));
    if (ms > 0 && (w = until(ms, now)) > wait) wait = w;
    return wait;
}

static int cancelled(const net_call_policy *p) { return p->cancel && atomic_load(p->cancel); }

/* Sleeps ms in slices so a cancel is noticed; 0, or -1 when cancelled. */
static int wait_for(const net_call_policy *p, int64_t ms) {
    int64_t end = mono_ms() + ms;
    for (int64_t now = mono_ms(); now < end; now = mono_ms()) {
        if (cancelled(p)) return -1;
        int64_t slice = end - now < POLL_SLICE_MS ? end - now : POLL_SLICE_MS;
        sleep_ms(slice);
    }
    return cancelled(p) ? -1 : 0;
}

static void on_done(httpc_request *r) { *(int *)r->user = 1; }

/* One attempt: submits and polls until the transfer ends. 0, or -1 (cannot start). */
static int attempt(httpc *h, httpc_request *req, const net_call_policy *p) {
    int done = 0;
    req->done = on_done;
    req->user = &done;
    if (httpc_submit(h, req) != 0) return -1;
    while (!done) {
        if (cancelled(p)) httpc_cancel_all(h);
        else if (httpc_poll(h, POLL_SLICE_MS) < 0) httpc_cancel_all(h);
    }
    return 0;
}

enum verdict { V_FINAL, V_RETRY, V_RATE_LIMITED };

static enum verdict classify(const httpc_request *req, const net_call_policy *p) {
    if (req->failed) return V_RETRY;
    if (req->status == 429 || (p->is_rate_limited && p->is_rate_limited(req))) return V_RATE_LIMITED;
    if (req->status >= 500) return V_RETRY;
    return V_FINAL;
}

static void describe(const httpc_request *req, char *out, size_t len) {
    if (req->timed_out) snprintf(out, len, "timed out");
    else if (req->failed) snprintf(out, len, "%s", req->error);
    else snprintf(out, len, "HTTP %ld", req->status);
}

int net_call(httpc *h, httpc_request *req, const net_call_policy *p, net_call_stats *stats,
             char *err, size_t errlen) {
    net_call_stats local = {0};
    if (!stats) stats = &local;
    int retries = 0, waits = 0;
    for (;;) {
        if (cancelled(p)) return snprintf(err, errlen, "cancelled"), NET_CALL_CANCELLED;
        stats->attempts++;
        if (attempt(h, req, p) != 0)
            return snprintf(err, errlen, "cannot start a request to %s", req->url), NET_CALL_GAVE_UP;
        if (req->cancelled) return snprintf(err, errlen, "cancelled"), NET_CALL_CANCELLED;
        enum verdict v = classify(req, p);
        if (v == V_FINAL) return NET_CALL_ANSWERED;
        char why[300];
        describe(req, why, sizeof why);
        int64_t delay;
        if (v == V_RATE_LIMITED) {
            if (waits >= p->max_rate_limit_waits)
                return snprintf(err, errlen, "still rate limited after %d waits", waits),
                       NET_CALL_GAVE_UP;
            waits++;
            stats->rate_limited++;
            delay = net_rate_limit_wait_ms(req);
            if (delay < 0) delay = backoff_full_jitter_ms(waits, p->backoff_base_ms, p->backoff_cap_ms, p->rng);
            if (delay > p->max_rate_limit_wait_ms) delay = p->max_rate_limit_wait_ms;
        } else {
            if (retries >= p->max_retries)
                return snprintf(err, errlen, "%s (after %d attempts)", why, retries + 1),
                       NET_CALL_GAVE_UP;
            delay = backoff_full_jitter_ms(retries, p->backoff_base_ms, p->backoff_cap_ms, p->rng);
            /* A 503 may say when to come back: never earlier than that. */
            int64_t after = req->failed ? -1 : net_rate_limit_wait_ms(req);
            if (after > delay) delay = after < p->backoff_cap_ms ? after : p->backoff_cap_ms;
            retries++;
            stats->retries++;
        }
        stats->waited_ms += delay;
        if (wait_for(p, delay) != 0) return snprintf(err, errlen, "cancelled"), NET_CALL_CANCELLED;
    }
}
