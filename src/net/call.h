/* call — one HTTP request performed to its end on the calling thread, with the retry
 * policy API clients share: 429 (or whatever the caller's hook says is a rate limit)
 * waits until the reset the server announced (Retry-After, X-RateLimit-Reset in epoch
 * seconds, X-RateLimit-Requests-Reset in epoch milliseconds; the latest one given),
 * else backs off; 5xx, transport errors and timeouts are retried with full-jitter
 * exponential backoff; both bounded. Every other answer is returned to the caller to
 * interpret. For clients that send one request at a time (tracker exports); clients
 * with many requests in flight drive httpc themselves but use the same reset rule
 * (net_rate_limit_wait_ms). */
#ifndef FEEDLINE_NET_CALL_H
#define FEEDLINE_NET_CALL_H

#include <stdatomic.h>
#include <stdint.h>

#include "net/httpc.h"
#include "util/rng.h"

/* Added to a wait derived from an absolute reset time: clock skew between us and the
 * server, and the granularity of a reset given in whole seconds. */
#define NET_RESET_MARGIN_MS 50

typedef struct net_call_policy {
    int max_retries;              /* 5xx / transport retries after the first attempt */
    int max_rate_limit_waits;     /* 429 waits before giving up */
    int64_t backoff_base_ms;      /* first retry waits up to this */
    int64_t backoff_cap_ms;
    int64_t max_rate_limit_wait_ms; /* longest single 429 wait honoured */
    rng_t *rng;                   /* jitter */
    atomic_int *cancel;           /* optional: non-zero ends waits and attempts */
    /* Optional: 1 when an answer that is not a 429 is still a rate limit (GitHub's 403
     * with x-ratelimit-remaining: 0, Linear's RATELIMITED GraphQL error). */
    int (*is_rate_limited)(const httpc_request *r);
} net_call_policy;

typedef struct net_call_stats {
    int attempts;
    int retries;         /* after 5xx / transport errors */
    int rate_limited;    /* rate-limit answers waited out */
    int64_t waited_ms;   /* total time spent waiting before retries */
} net_call_stats;

enum net_call_status {
    NET_CALL_ANSWERED = 0,  /* req holds a final answer (any status the policy does not retry) */
    NET_CALL_GAVE_UP = -1,  /* retries or rate-limit waits exhausted; err says why */
    NET_CALL_CANCELLED = -2
};

/* Performs req on h (which must have nothing else in flight) under the policy. The
 * stats (optional) are added to. */
int net_call(httpc *h, httpc_request *req, const net_call_policy *p, net_call_stats *stats,
             char *err, size_t errlen);

/* Milliseconds until the rate limit resets according to the answer's headers
 * (Retry-After, X-RateLimit-Reset epoch seconds, X-RateLimit-Requests-Reset epoch
 * milliseconds; the latest when several are given; a margin added to absolute times),
 * or -1 when none is given or parsable. */
int64_t net_rate_limit_wait_ms(const httpc_request *r);

#endif
