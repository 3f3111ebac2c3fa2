/* ratelimit — flow control of the OpenAI-compatible client, in one place: when may the
 * next request go on the wire?
 *
 * Four limits, all enforced here:
 *  1. concurrency: at most `concurrency` requests on the wire (default
 *     LLM_DEFAULT_CONCURRENCY, at most LLM_MAX_CONCURRENCY);
 *  2. requests per minute: a token bucket (configured --rpm, and/or learned from the
 *     x-ratelimit-limit-requests response header; the lower wins);
 *  3. tokens per minute: a token bucket charged with each request's estimated tokens
 *     (prompt bytes / 4 + max completion), corrected with the usage the server reports
 *     (configured --tpm and/or x-ratelimit-limit-tokens);
 *  4. the server's own budget: x-ratelimit-remaining-{requests,tokens} minus what was
 *     sent since the answer that reported it; at zero, nothing is sent until the
 *     matching x-ratelimit-reset-* has passed.
 *
 * Buckets aim at RL_SAFETY (98%) of a limit. Requests are paced one at a time (a
 * burst of one), so any window holds at most 1 + 0.98 x its share of the limit, which
 * never exceeds it; the token bucket's burst is the remaining 2% of a minute's
 * tokens, so a 60-second window holds at most the limit (a request larger than the
 * burst waits for a full bucket and leaves it in debt).
 *
 * Adaptive 429 rule (AIMD): a 429 pauses every send until its Retry-After (or
 * RL_DEFAULT_PAUSE_MS without one), and cuts the send rate multiplicatively: the
 * first cut of an episode caps it at half the rate that was being achieved (the
 * "peak"), later cuts halve the cap again, but only for 429s of requests sent after
 * the previous cut (the 429s of requests already on the wire then are the same
 * signal, not new ones), never below RL_MIN_RPM. Each successful answer raises the cap additively by
 * 1% of the peak; when the cap is back at the peak, it is lifted. So a burst of 429s
 * halves the rate at once and the rate climbs back over ~50 answers.
 *
 * Shared requests/min (several processes, one endpoint; rl_share): the requests/min
 * limit is then enforced by a schedule the processes share (store_budget.c): send
 * slots RL_SAFETY x limit apart, granted in blocks of at most RL_SHARED_BLOCK to
 * whichever process asks. A request goes on the wire at one of this process's slots,
 * never before it and at most rl_shared_late_ms() after it (a slot missed by more is
 * dropped, never used late), so requests of all processes keep the schedule's spacing
 * within that tolerance. Any window of W ms then holds at most
 * 1 + (W + late) / interval requests, which stays within the limit for the
 * per-minute window at every limit, and for windows down to a few seconds (as long as
 * the window's share of the limit is 26 requests or more). The local request bucket
 * then carries only the adaptive 429 cap; tokens/min and the server-reported budgets
 * stay per process.
 *
 * Pure arithmetic on a caller-supplied monotonic clock (milliseconds): no I/O, no
 * threads, so it is tested with a simulated clock. Not thread-safe (one per provider,
 * driven by the provider's poll thread). */
#ifndef FEEDLINE_RATELIMIT_H
#define FEEDLINE_RATELIMIT_H

#include <stdint.h>

/* Default requests in flight. OpenAI's lower tiers allow 500 requests/min (tier 1,
 * gpt-4o-mini); a theme extraction answers in ~2-3 s, so 500/60 = 8.3 requests/s x
 * 2.4 s ~ 20 in flight saturates the tier without queueing at the server. Faster
 * endpoints and higher tiers raise it with --concurrency; requests/min and tokens/min
 * are separate limits (--rpm, --tpm, or learned from response headers). */
#define LLM_DEFAULT_CONCURRENCY 20
#define LLM_MAX_CONCURRENCY 512

#define RL_SAFETY 0.98
#define RL_DEFAULT_PAUSE_MS 1000
#define RL_MIN_RPM 6.0
#define RL_AI_STEP 0.01
/* rl_delay_ms(): no slot until a request leaves the wire. */
#define RL_WAIT_SLOT INT64_MAX
/* rl_delay_ms(): shared schedule, no granted slot left: claim some (rl_grant). */
#define RL_NEED_GRANT (INT64_MAX - 1)
/* Slots asked for per claim from the shared schedule (one database round trip). */
#define RL_SHARED_BLOCK 5
/* The most a granted slot may be used late (see rl_shared_late_ms). */
#define RL_SHARED_LATE_MAX_MS 900.0
#define RL_SHARED_LATE_MIN_MS 2.0

/* The x-ratelimit-* headers of one answer; -1 = absent. */
typedef struct rl_headers {
    double limit_requests, limit_tokens;
    double remaining_requests, remaining_tokens;
    int64_t reset_requests_ms, reset_tokens_ms;
} rl_headers;

/* Send history kept for budget bookkeeping: more than the most requests that can be
 * on the wire, so the answer to any request in flight still finds its entry. */
#define RL_SEND_RING 1024

typedef struct rl_bucket {
    double rate_per_ms; /* 0 = unlimited */
    double burst;
    double level;       /* may go negative (a request larger than the burst) */
    int64_t at_ms;      /* level as of this time */
} rl_bucket;

/* A server-reported remaining budget, adjusted for what was sent since. */
typedef struct rl_budget {
    int known;
    double remaining;
    uint64_t seq;       /* send sequence of the request whose answer reported it */
    int64_t until_ms;   /* when the server said it resets */
} rl_budget;

/* Slots granted from the shared schedule and not used yet, in time order. */
typedef struct rl_shared {
    int on;
    double slot_ms[RL_SHARED_BLOCK];
    int head, n;
    uint64_t granted, used, dropped;
} rl_shared;

typedef struct ratelimit {
    int concurrency;
    int in_flight;
    double cfg_rpm, cfg_tpm;         /* configured; 0 = none */
    double hdr_rpm, hdr_tpm;         /* learned from headers; 0 = none */
    rl_bucket req, tok;
    rl_budget req_budget, tok_budget;
    int64_t paused_until_ms;
    /* AIMD */
    double ai_cap_rpm;               /* 0 = no cap */
    double ai_peak_rpm;
    int64_t last_cut_ms;
    /* send history, for the achieved rate and budget bookkeeping */
    int64_t sent_at[RL_SEND_RING];
    int64_t cum_tokens[RL_SEND_RING]; /* tokens sent up to and including that send */
    uint64_t sent;                   /* requests sent so far (the sequence counter) */
    int64_t tokens_total;
    uint64_t cut_seq;                /* sends up to this one predate the last cut */
    rl_shared shared;
    /* counters */
    uint64_t n429, cuts;
} ratelimit;

/* concurrency is clamped to 1..LLM_MAX_CONCURRENCY; rpm/tpm 0 = not configured. */
void rl_init(ratelimit *rl, int concurrency, double rpm, double tpm, int64_t now_ms);
/* Milliseconds until a request estimated at `tokens` may be sent: 0 = now,
 * RL_WAIT_SLOT = when a request leaves the wire, RL_NEED_GRANT = claim slots from the
 * shared schedule first (only with rl_share on and a requests/min limit known). */
int64_t rl_delay_ms(ratelimit *rl, int64_t tokens, int64_t now_ms);
/* A request goes on the wire now; returns its send sequence number. */
uint64_t rl_on_send(ratelimit *rl, int64_t tokens, int64_t now_ms);
/* A request left the wire (answered, failed or cancelled). */
void rl_on_done(ratelimit *rl);
/* Headers of the answer to the request sent with sequence seq. */
void rl_on_headers(ratelimit *rl, const rl_headers *h, uint64_t seq, int64_t now_ms);
/* The server reported the real token usage of a request charged `estimated`. */
void rl_on_usage(ratelimit *rl, int64_t estimated, int64_t actual, int64_t now_ms);
void rl_on_success(ratelimit *rl, int64_t now_ms);
/* A 429 answered the request sent with sequence seq; retry_after_ms < 0 when the
 * server gave none. */
void rl_on_429(ratelimit *rl, int64_t retry_after_ms, uint64_t seq, int64_t now_ms);

/* Takes the requests/min limit from a schedule shared with other processes (on = 1)
 * or back to this process's own bucket (on = 0). */
void rl_share(ratelimit *rl, int on, int64_t now_ms);
/* Spacing of the shared schedule in ms (60000 / (RL_SAFETY x limit)); 0 when no
 * requests/min limit is known (nothing to claim). */
double rl_shared_interval_ms(const ratelimit *rl);
/* How late a granted slot may still be used: half the spacing, within
 * [RL_SHARED_LATE_MIN_MS, RL_SHARED_LATE_MAX_MS]. */
double rl_shared_late_ms(const ratelimit *rl);
/* How many slots to claim when `queued` requests wait: enough for them, at most
 * RL_SHARED_BLOCK and the free concurrency (an unused slot is wasted budget). */
int rl_grant_size(const ratelimit *rl, int queued);
/* n slots were granted: the first at first_ms (this process's clock), then every
 * interval_ms. Slots beyond RL_SHARED_BLOCK are not kept (never asked for). */
void rl_grant(ratelimit *rl, double first_ms, double interval_ms, int n);

/* The requests/min the limiter currently allows (0 = unlimited). */
double rl_effective_rpm(const ratelimit *rl);
/* Requests/min achieved over the recent sends (0 when fewer than 2). */
double rl_recent_rpm(const ratelimit *rl, int64_t now_ms);

/* Parses the x-ratelimit-* headers through a lookup function (name -> value/NULL). */
void rl_parse_headers(rl_headers *out, const char *(*get)(const void *ctx, const char *name),
                      const void *ctx);

#endif
