#include "util/buf.h"

#include <stdio.h>
#include <string.h>

#include <stdlib.h>

#include "util/mem.h"

void buf_reserve(buf_t *b, size_t extra) {
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return;
    size_t ncap = b->cap ? b->cap : 64;
    while (ncap < need) ncap *= 2;
    b->data = xrealloc(b->data, ncap);
    b->data[b->len] = '\0'; /* a reserved-but-empty buffer is still a valid string */
    b->cap = ncap;
}

void buf_append(buf_t *b, const char *s, size_t n) {
    buf_reserve(b, n);
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void buf_puts(buf_t *b, const char *s) { buf_append(b, s, strlen(s)); }

void buf_putc(buf_t *b, char c) { buf_append(b, &c, 1); }

void buf_vprintf(buf_t *b, const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    if ((size_t)n < sizeof tmp) {
        buf_append(b, tmp, (size_t)n);
    } else {
        buf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

void buf_printf(buf_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void buf_truncate(buf_t *b, size_t len) {
    if (len < b->len) {
        b->len = len;
        b->data[len] = '\0';
    }
}

void buf_reset(buf_t *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void buf_free(buf_t *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *buf_detach(buf_t *b) {
    char *s = b->data ? b->data : xstrdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    return s;
}

const char *buf_cstr(const buf_t *b) { return b->data ? b->data : ""; }
