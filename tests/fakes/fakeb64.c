/* Base64 (RFC 4648, with padding) for the fakes: Intercom's opaque cursors, Basic
 * authentication headers. */
#include "fakes/fakeb64.h"

#include <stdint.h>
#include <string.h>

#include "util/buf.h"

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *b64_encode(const char *s) {
    size_t n = strlen(s);
    buf_t b = BUF_INIT;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)s[i] << 16;
        if (i + 1 < n) v |= (uint32_t)(unsigned char)s[i + 1] << 8;
        if (i + 2 < n) v |= (uint32_t)(unsigned char)s[i + 2];
        buf_putc(&b, B64[(v >> 18) & 63]);
        buf_putc(&b, B64[(v >> 12) & 63]);
        buf_putc(&b, i + 1 < n ? B64[(v >> 6) & 63] : '=');
        buf_putc(&b, i + 2 < n ? B64[v & 63] : '=');
    }
    return buf_detach(&b);
}

static int b64_value(char ch) {
    const char *p = ch ? strchr(B64, ch) : NULL;
    return p ? (int)(p - B64) : -1;
}

char *b64_decode(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n % 4) return NULL;
    buf_t b = BUF_INIT;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++) {
            v[k] = s[i + k] == '=' && i + 4 == n && k >= 2 ? 0 : b64_value(s[i + k]);
            if (v[k] < 0) {
                buf_free(&b);
                return NULL;
            }
        }
        uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        buf_putc(&b, (char)(x >> 16));
        if (s[i + 2] != '=') buf_putc(&b, (char)(x >> 8 & 255));
        if (s[i + 3] != '=') buf_putc(&b, (char)(x & 255));
    }
    return buf_detach(&b);
}

