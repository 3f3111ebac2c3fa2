/* Flow control of the OpenAI-compatible client (see ratelimit.h): the concurrency
 * cap, the requests/min and tokens/min buckets, the server-reported budgets and the
 * adaptive 429 rule. */
#include "llm/ratelimit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "net/retry.h"

/* ------------------------------------------------------------ buckets */

static void bucket_refill(rl_bucket *b, int64_t now_ms) {
    if (b->rate_per_ms > 0 && now_ms > b->at_ms) {
        b->level += (double)(now_ms - b->at_ms) * b->rate_per_ms;
        if (b->level > b->burst) b->level = b->burst;
    }
    b->at_ms = now_ms;
}

/* Sets the bucket to a per-minute limit (0 = unlimited). A bucket that was
 * unlimited starts full; a running one keeps its level (clamped to the new burst). */
static void bucket_set(rl_bucket *b, double per_min, double burst, int64_t now_ms) {
    bucket_refill(b, now_ms);
    int was_unlimited = b->rate_per_ms <= 0;
    b->rate_per_ms = per_min > 0 ? per_min / 60000.0 : 0;
    b->burst = burst < 1 ? 1 : burst;
    if (b->rate_per_ms <= 0) return;
    if (was_unlimited || b->level > b->burst) b->level = b->burst;
}

/* Milliseconds until `need` units are available. A request larger than the burst
 * waits for a full bucket and then goes into debt, so it is never starved. */
static int64_t bucket_delay(rl_bucket *b, double need, int64_t now_ms) {
    if (b->rate_per_ms <= 0) return 0;
    bucket_refill(b, now_ms);
    double want = need < b->burst ? need : b->burst;
    if (b->level >= want) return 0;
    return (int64_t)ceil((want - b->level) / b->rate_per_ms);
}

static void bucket_take(rl_bucket *b, double n, int64_t now_ms) {
    if (b->rate_per_ms <= 0) return;
    bucket_refill(b, now_ms);
    b->level -= n;
}

/* ------------------------------------------------------------ limits */

static double min_known(double a, double b) {
    if (a <= 0) return b;
    if (b <= 0) return a;
    return a < b ? a : b;
}

/* Recomputes the request bucket from the configured/learned limit and the AIMD cap.
 * Requests are paced (a burst of one): a window of any length then holds at most
 * 1 + 0.98 x its share of the limit, which never exceeds the limit. */
static void update_request_rate(ratelimit *rl, int64_t now_ms) {
    /* With a shared schedule the limit is the schedule's; the bucket keeps the cap. */
    double limit = rl->shared.on ? 0 : min_known(rl->cfg_rpm, rl->hdr_rpm);
    double rate = limit > 0 ? limit * RL_SAFETY : 0;
    if (rl->ai_cap_rpm > 0 && (rate <= 0 || rl->ai_cap_rpm < rate)) rate = rl->ai_cap_rpm;
    bucket_set(&rl->req, rate, 1, now_ms);
}

static void update_token_rate(ratelimit *rl, int64_t now_ms) {
    double limit = min_known(rl->cfg_tpm, rl->hdr_tpm);
    bucket_set(&rl->tok, limit > 0 ? limit * RL_SAFETY : 0,
               limit > 0 ? limit * (1.0 - RL_SAFETY) : 1, now_ms);
}

void rl_init(ratelimit *rl, int concurrency, double rpm, double tpm, int64_t now_ms) {
    memset(rl, 0, sizeof *rl);
    if (concurrency < 1) concurrency = 1;
    if (concurrency > LLM_MAX_CONCURRENCY) concurrency = LLM_MAX_CONCURRENCY;
    rl->concurrency = concurrency;
    rl->cfg_rpm = rpm > 0 ? rpm : 0;
    rl->cfg_tpm = tpm > 0 ? tpm : 0;
    rl->req.at_ms = rl->tok.at_ms = now_ms;
    update_request_rate(rl, now_ms);
    update_token_rate(rl, now_ms);
}

/* Requests sent after the one with sequence seq. */
static double requests_since(const ratelimit *rl, uint64_t seq) {
    return rl->sent > seq ? (double)(rl->sent - seq) : 0;
}

/* Tokens sent after the one with sequence seq (its entry is still in the ring: the
 * ring is larger than the most requests that can be on the wire). */
static double tokens_since(const ratelimit *rl, uint64_t seq) {
    if (seq == 0) return (double)rl->tokens_total;
    if (rl->sent - seq >= RL_SEND_RING) return (double)rl->tokens_total;
    return (double)(rl->tokens_total - rl->cum_tokens[seq % RL_SEND_RING]);
}

/* Delay imposed by a server budget: none while it lasts or once it has reset. */
static int64_t budget_delay(rl_budget *b, double available, double need, int64_t now_ms) {
    if (!b->known) return 0;
    if (now_ms >= b->until_ms) {
        b->known = 0; /* reset passed: the next answer reports afresh */
        return 0;
    }
    return available >= need ? 0 : b->until_ms - now_ms;
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* ------------------------------------------------------------ shared schedule */

double rl_shared_interval_ms(const ratelimit *rl) {
    double limit = min_known(rl->cfg_rpm, rl->hdr_rpm);
    return limit > 0 ? 60000.0 / (limit * RL_SAFETY) : 0;
}

double rl_shared_late_ms(const ratelimit *rl) {
    double late = rl_shared_interval_ms(rl) / 2;
    if (late < RL_SHARED_LATE_MIN_MS) late = RL_SHARED_LATE_MIN_MS;
    if (late > RL_SHARED_LATE_MAX_MS) late = RL_SHARED_LATE_MAX_MS;
    return late;
}

void rl_share(ratelimit *rl, int on, int64_t now_ms) {
    rl->shared.on = on ? 1 : 0;
    rl->shared.n = rl->shared.head = 0;
    update_request_rate(rl, now_ms);
}

int rl_grant_size(const ratelimit *rl, int queued) {
    int n = queued < RL_SHARED_BLOCK ? queued : RL_SHARED_BLOCK;
    int free_slots = rl->concurrency - rl->in_flight;
    if (n > free_slots) n = free_slots;
    return n < 1 ? 1 : n;
}

void rl_grant(ratelimit *rl, double first_ms, double interval_ms, int n) {
    rl_shared *sh = &rl->shared;
    for (int i = 0; i < n && sh->n < RL_SHARED_BLOCK; i++) {
        sh->slot_ms[(sh->head + sh->n) % RL_SHARED_BLOCK] = first_ms + i * interval_ms;
        sh->n++;
        sh->granted++;
    }
}

/* Forgets slots missed by more than the tolerance: used now they would bunch up with
 * the slots of other processes. */
static void drop_missed_slots(ratelimit *rl, int64_t now_ms) {
    rl_shared *sh = &rl->shared;
    double late = rl_shared_late_ms(rl);
    while (sh->n > 0 && sh->slot_ms[sh->head] + late < (double)now_ms) {
        sh->head = (sh->head + 1) % RL_SHARED_BLOCK;
        sh->n--;
        sh->dropped++;
    }
}

/* Delay until this process's next slot, or RL_NEED_GRANT. */
static int64_t shared_delay(ratelimit *rl, int64_t now_ms) {
    if (!rl->shared.on || rl_shared_interval_ms(rl) <= 0) return 0;
    drop_missed_slots(rl, now_ms);
    if (rl->shared.n == 0) return RL_NEED_GRANT;
    double wait = rl->shared.slot_ms[rl->shared.head] - (double)now_ms;
    return wait > 0 ? (int64_t)ceil(wait) : 0;
}

static void use_slot(ratelimit *rl) {
    rl_shared *sh = &rl->shared;
    if (!sh->on || sh->n == 0) return;
    sh->head = (sh->head + 1) % RL_SHARED_BLOCK;
    sh->n--;
    sh->used++;
}

int64_t rl_delay_ms(ratelimit *rl, int64_t tokens, int64_t now_ms) {
    if (rl->in_flight >= rl->concurrency) return RL_WAIT_SLOT;
    int64_t d = rl->paused_until_ms > now_ms ? rl->paused_until_ms - now_ms : 0;
    d = max64(d, bucket_delay(&rl->req, 1, now_ms));
    d = max64(d, bucket_delay(&rl->tok, (double)tokens, now_ms));
    rl_budget *rb = &rl->req_budget, *tb = &rl->tok_budget;
    d = max64(d, budget_delay(rb, rb->remaining - requests_since(rl, rb->seq), 1, now_ms));
    /* A request that does not fit in what remains waits for the reset; one larger
     * than the whole limit would never fit, so it only waits for a positive budget. */
    double tavail = tb->remaining - tokens_since(rl, tb->seq);
    double tneed = rl->hdr_tpm > 0 && (double)tokens > rl->hdr_tpm ? 1 : (double)tokens;
    d = max64(d, budget_delay(tb, tavail, tneed, now_ms));
    /* The shared schedule last: slots are claimed only for a request that could
     * otherwise go now, so they are not spent waiting on another limit. */
    if (d > 0) return d;
    return shared_delay(rl, now_ms);
}

uint64_t rl_on_send(ratelimit *rl, int64_t tokens, int64_t now_ms) {
    rl->in_flight++;
    use_slot(rl);
    bucket_take(&rl->req, 1, now_ms);
    bucket_take(&rl->tok, (double)tokens, now_ms);
    rl->sent++;
    rl->tokens_total += tokens;
    rl->sent_at[rl->sent % RL_SEND_RING] = now_ms;
    rl->cum_tokens[rl->sent % RL_SEND_RING] = rl->tokens_total;
    return rl->sent;
}

void rl_on_done(ratelimit *rl) {
    if (rl->in_flight > 0) rl->in_flight--;
}

/* Newer reports replace older ones; answers can arrive out of order. */
static void budget_report(rl_budget *b, double remaining, int64_t reset_ms, uint64_t seq,
                          int64_t now_ms) {
    if (remaining < 0 || (b->known && seq < b->seq)) return;
    b->known = 1;
    b->remaining = remaining;
    b->seq = seq;
    b->until_ms = now_ms + (reset_ms >= 0 ? reset_ms : RL_DEFAULT_PAUSE_MS);
}

void rl_on_headers(ratelimit *rl, const rl_headers *h, uint64_t seq, int64_t now_ms) {
    if (h->limit_requests > 0 && h->limit_requests != rl->hdr_rpm) {
        rl->hdr_rpm = h->limit_requests;
        update_request_rate(rl, now_ms);
    }
    if (h->limit_tokens > 0 && h->limit_tokens != rl->hdr_tpm) {
        rl->hdr_tpm = h->limit_tokens;
        update_token_rate(rl, now_ms);
    }
    budget_report(&rl->req_budget, h->remaining_requests, h->reset_requests_ms, seq, now_ms);
    budget_report(&rl->tok_budget, h->remaining_tokens, h->reset_tokens_ms, seq, now_ms);
}

void rl_on_usage(ratelimit *rl, int64_t estimated, int64_t actual, int64_t now_ms) {
    if (rl->tok.rate_per_ms <= 0 || actual < 0) return;
    bucket_refill(&rl->tok, now_ms);
    rl->tok.level += (double)(estimated - actual);
    if (rl->tok.level > rl->tok.burst) rl->tok.level = rl->tok.burst;
}

void rl_on_success(ratelimit *rl, int64_t now_ms) {
    if (rl->ai_cap_rpm <= 0) return;
    rl->ai_cap_rpm += rl->ai_peak_rpm * RL_AI_STEP;
    if (rl->ai_cap_rpm >= rl->ai_peak_rpm) rl->ai_cap_rpm = 0; /* recovered: cap lifted */
    update_request_rate(rl, now_ms);
}

double rl_recent_rpm(const ratelimit *rl, int64_t now_ms) {
    uint64_t k = rl->sent < 64 ? rl->sent : 64;
    if (k < 2) return 0;
    int64_t oldest = rl->sent_at[(rl->sent - k + 1) % RL_SEND_RING];
    int64_t span = now_ms - oldest;
    if (span < 100) span = 100;
    return (double)k * 60000.0 / (double)span;
}

double rl_effective_rpm(const ratelimit *rl) {
    double local = rl->req.rate_per_ms * 60000.0;
    double interval = rl->shared.on ? rl_shared_interval_ms(rl) : 0;
    if (interval <= 0) return local;
    double shared = 60000.0 / interval;
    return local > 0 && local < shared ? local : shared;
}

void rl_on_429(ratelimit *rl, int64_t retry_after_ms, uint64_t seq, int64_t now_ms) {
    rl->n429++;
    int64_t pause = retry_after_ms >= 0 ? retry_after_ms : RL_DEFAULT_PAUSE_MS;
    if (now_ms + pause > rl->paused_until_ms) rl->paused_until_ms = now_ms + pause;
    if (rl->cuts > 0 && seq <= rl->cut_seq) return; /* sent before the last cut */
    if (rl->ai_cap_rpm <= 0) {
        /* First cut of an episode: from the rate actually achieved (below the limit
         * when the limit is not what binds). */
        double eff = rl_effective_rpm(rl), recent = rl_recent_rpm(rl, now_ms);
        double peak = eff > 0 && (recent <= 0 || eff < recent) ? eff : recent;
        if (peak < RL_MIN_RPM) peak = RL_MIN_RPM;
        rl->ai_peak_rpm = peak;
        rl->ai_cap_rpm = peak / 2;
    } else {
        rl->ai_cap_rpm /= 2;
    }
    if (rl->ai_cap_rpm < RL_MIN_RPM) rl->ai_cap_rpm = RL_MIN_RPM;
    rl->cuts++;
    rl->cut_seq = rl->sent;
    update_request_rate(rl, now_ms);
}

/* ------------------------------------------------------------ headers */

static double header_number(const char *v) {
    if (!v || !*v) return -1;
    char *end;
    double d = strtod(v, &end);
    while (*end == ' ') end++;
    return (*end || d < 0) ? -1 : d;
}

void rl_parse_headers(rl_headers *out, const char *(*get)(const void *ctx, const char *name),
                      const void *ctx) {
    out->limit_requests = header_number(get(ctx, "x-ratelimit-limit-requests"));
    out->limit_tokens = header_number(get(ctx, "x-ratelimit-limit-tokens"));
    out->remaining_requests = header_number(get(ctx, "x-ratelimit-remaining-requests"));
    out->remaining_tokens = header_number(get(ctx, "x-ratelimit-remaining-tokens"));
    out->reset_requests_ms = parse_duration_ms(get(ctx, "x-ratelimit-reset-requests"));
    out->reset_tokens_ms = parse_duration_ms(get(ctx, "x-ratelimit-reset-tokens"));
}
