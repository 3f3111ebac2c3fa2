/* Retry arithmetic shared by HTTP callers. */
#ifndef FEEDLINE_RETRY_H
#define FEEDLINE_RETRY_H

#include <stdint.h>

#include "util/rng.h"

/* Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff
 * And Jitter"): a uniform delay in [0, min(cap, base * 2^attempt)]. attempt 0 is the
 * first retry. */
int64_t backoff_full_jitter_ms(int attempt, int64_t base_ms, int64_t cap_ms, rng_t *rng);

/* Retry-After: delta-seconds ("120", fractional allowed) or an HTTP-date
 * ("Wed, 21 Oct 2015 07:28:00 GMT") relative to now_unix. Returns milliseconds >= 0, or
 * -1 when the value is missing or unparsable. */
int64_t parse_retry_after_ms(const char *value, int64_t now_unix);

/* OpenAI-style reset durations in x-ratelimit-reset-* headers: "1s", "6m0s", "20ms",
 * "1h2m3.5s", or a plain number of seconds. Milliseconds, or -1. */
int64_t parse_duration_ms(const char *value);

#endif
