/* A growable, always NUL-terminated byte buffer. */
#ifndef FEEDLINE_BUF_H
#define FEEDLINE_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct buf {
    char *data; /* NUL-terminated once anything was appended; may be NULL when empty */
    size_t len;
    size_t cap;
} buf_t;

#define BUF_INIT {NULL, 0, 0}

void buf_append(buf_t *b, const char *s, size_t n);
void buf_puts(buf_t *b, const char *s);
void buf_putc(buf_t *b, char c);
void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(buf_t *b, const char *fmt, va_list ap);
void buf_reserve(buf_t *b, size_t extra);
void buf_truncate(buf_t *b, size_t len);
void buf_reset(buf_t *b);            /* len = 0, keeps memory */
void buf_free(buf_t *b);
char *buf_detach(buf_t *b);          /* caller owns result ("" when empty) */
const char *buf_cstr(const buf_t *b); /* "" when empty */

#endif
