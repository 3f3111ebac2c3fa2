/* Retry arithmetic (see retry.h). */
#include "net/retry.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

int64_t backoff_full_jitter_ms(int attempt, int64_t base_ms, int64_t cap_ms, rng_t *rng) {
    if (attempt < 0) attempt = 0;
    int64_t ceil = base_ms;
    for (int i = 0; i < attempt && ceil < cap_ms; i++) ceil *= 2;
    if (ceil > cap_ms) ceil = cap_ms;
    if (ceil <= 0) return 0;
    return (int64_t)rng_below(rng, (uint64_t)ceil + 1);
}

static int month_index(const char *m) {
    static const char *months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    for (int i = 0; i < 12; i++)
        if (strncasecmp(m, months[i], 3) == 0) return i;
    return -1;
}

int64_t parse_retry_after_ms(const char *value, int64_t now_unix) {
    if (!value) return -1;
    while (isspace((unsigned char)*value)) value++;
    if (!*value) return -1;
    if (isdigit((unsigned char)*value)) {
        char *end;
        double s = strtod(value, &end);
        while (isspace((unsigned char)*end)) end++;
        if (*end || s < 0 || s > 86400.0 * 7) return -1;
        return (int64_t)(s * 1000.0 + 0.5);
    }
    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
    char wd[4], mon[4], tz[4];
    int day, year, h, mi, sec;
    if (sscanf(value, "%3s, %d %3s %d %d:%d:%d %3s", wd, &day, mon, &year, &h, &mi, &sec, tz) != 8)
        return -1;
    int m = month_index(mon);
    if (m < 0 || strcasecmp(tz, "GMT") != 0) return -1;
    struct tm tm = {0};
    tm.tm_year = year - 1900;
    tm.tm_mon = m;
    tm.tm_mday = day;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    int64_t t = (int64_t)timegm(&tm);
    int64_t d = t - now_unix;
    /* A date absurdly far ahead must not overflow the milliseconds; callers cap it. */
    if (d > INT64_MAX / 1000) return INT64_MAX;
    return d < 0 ? 0 : d * 1000;
}

int64_t parse_duration_ms(const char *value) {
    if (!value) return -1;
    while (isspace((unsigned char)*value)) value++;
    if (!*value) return -1;
    double total = 0;
    const char *p = value;
    int parts = 0;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || v < 0) return -1;
        p = end;
        double unit;
        if (!strncmp(p, "ms", 2)) { unit = 1; p += 2; }
        else if (*p == 'h') { unit = 3600000; p++; }
        else if (*p == 'm') { unit = 60000; p++; }
        else if (*p == 's') { unit = 1000; p++; }
        else if (*p == '\0' && parts == 0) { unit = 1000; } /* bare seconds */
        else return -1;
        total += v * unit;
        parts++;
        while (isspace((unsigned char)*p)) p++;
    }
    return (int64_t)(total + 0.5);
}
