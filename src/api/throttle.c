/* Per-client-address request rate limit (api_internal.h, "throttle"): a token bucket
 * per address in a fixed table, so a flood from one address is refused with 429 while
 * every other address is served as usual. Opt-in (FEEDLINE_API_RATE): behind a
 * reverse proxy every client shares the proxy's address, and the proxy is the place
 * to limit them.
 *
 * Memory is bounded: API_THROTTLE_SLOTS buckets; an address hashes to a window of
 * PROBE slots and, when none is its own, takes the one used longest ago (a bucket idle
 * for long is full again anyway, so forgetting it changes nothing). One mutex: the
 * critical section is a hash and a few arithmetic operations. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "util/hash.h"
#include "util/mem.h"

#define PROBE 8

typedef struct bucket {
    char addr[48]; /* "" = free */
    double tokens;
    int64_t last_ms;
} bucket;

struct api_throttle {
    pthread_mutex_t mu;
    double per_ms, burst;
    bucket slots[API_THROTTLE_SLOTS];
};

api_throttle *api_throttle_new(double per_second) {
    if (!(per_second > 0)) return NULL;
    api_throttle *t = xcalloc(1, sizeof *t);
    pthread_mutex_init(&t->mu, NULL);
    t->per_ms = per_second / 1000.0;
    /* A second's worth at once, at least 10: a dashboard loads a few routes together. */
    t->burst = per_second < 10 ? 10 : per_second;
    return t;
}

void api_throttle_free(api_throttle *t) {
    if (!t) return;
    pthread_mutex_destroy(&t->mu);
    free(t);
}

int64_t api_throttle_take(api_throttle *t, const char *addr, int64_t now_ms) {
    if (!t || !addr) return 0;
    size_t start = (size_t)(hash_mix64(fnv1a64_str(addr)) % API_THROTTLE_SLOTS);
    pthread_mutex_lock(&t->mu);
    bucket *b = NULL, *oldest = NULL;
    for (size_t i = 0; i < PROBE && !b; i++) {
        bucket *s = &t->slots[(start + i) % API_THROTTLE_SLOTS];
        if (!strcmp(s->addr, addr)) b = s;
        else if (!oldest || !s->addr[0] || (oldest->addr[0] && s->last_ms < oldest->last_ms))
            oldest = s;
    }
    if (!b) {
        b = oldest;
        snprintf(b->addr, sizeof b->addr, "%s", addr);
        b->tokens = t->burst;
        b->last_ms = now_ms;
    }
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * t->per_ms;
        if (b->tokens > t->burst) b->tokens = t->burst;
        b->last_ms = now_ms;
    }
    int64_t wait_ms = 0;
    if (b->tokens >= 1) b->tokens -= 1;
    else wait_ms = (int64_t)((1 - b->tokens) / t->per_ms) + 1;
    pthread_mutex_unlock(&t->mu);
    return wait_ms;
}
