/* Clocks and ISO-8601. All wall-clock values in feedline are UTC unix seconds
 * (int64) end to end; nothing uses local time. */
#ifndef FEEDLINE_TIMEUTIL_H
#define FEEDLINE_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

int64_t mono_ms(void);    /* monotonic milliseconds, for durations and deadlines */
int64_t mono_us(void);
int64_t wall_unix(void);  /* UTC seconds since the epoch */
int64_t wall_ms(void);    /* UTC milliseconds since the epoch */

/* Parses "2026-01-20T10:00:00Z", "...T10:00:00.123+02:00", "2026-01-20 10:00:00",
 * "2026-01-20" (midnight UTC). No offset means UTC. Returns 0 and sets *out, or -1. */
int iso8601_parse(const char *s, int64_t *out);

/* Formats as "2026-01-20T10:00:00Z" into out (at least 21 bytes). Returns out. */
char *iso8601_format(int64_t unix_seconds, char *out, size_t outlen);

/* Sleeps, restarting on EINTR. */
void sleep_ms(int64_t ms);

#endif
