#include "util/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Atomic int current_level = LOG_WARN;

void log_set_level(enum log_level lvl) { atomic_store(&current_level, (int)lvl); }
enum log_level log_get_level(void) { return (enum log_level)atomic_load(&current_level); }

void log_init_from_env(enum log_level dflt) {
    const char *v = getenv("FEEDLINE_LOG");
    enum log_level lvl = dflt;
    if (v) {
        if (!strcmp(v, "error")) lvl = LOG_ERROR;
        else if (!strcmp(v, "warn")) lvl = LOG_WARN;
        else if (!strcmp(v, "info")) lvl = LOG_INFO;
        else if (!strcmp(v, "debug")) lvl = LOG_DEBUG;
    }
    log_set_level(lvl);
}

void log_msg(enum log_level lvl, const char *fmt, ...) {
    static const char *names[] = {"error", "warn", "info", "debug"};
    if ((int)lvl > atomic_load(&current_level)) return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, names[lvl]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2) len = sizeof line - 2;
    line[len++] = '\n';
    /* One fwrite per line: stdio locks the stream, so lines never interleave. */
    fwrite(line, 1, len, stderr);
}
