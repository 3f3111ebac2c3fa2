/* Base64 and base64 float vectors (see base64.h). */
#include "util/base64.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/mem.h"

static const char ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* A character's value, or -1. By range, not by searching the alphabet: an embeddings
 * answer is megabytes of base64, decoded on the thread that also serves the request
 * slots. */
static int value_of(unsigned char ch) {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+') return 62;
    if (ch == '/') return 63;
    return -1;
}

char *base64_encode(const void *data, size_t len) {
    const unsigned char *in = data;
    char *out = xmalloc((len + 2) / 3 * 4 + 1), *o = out;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t w = (uint32_t)in[i] << 16;
        if (i + 1 < len) w |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len) w |= in[i + 2];
        *o++ = ALPHABET[(w >> 18) & 63];
        *o++ = ALPHABET[(w >> 12) & 63];
        *o++ = i + 1 < len ? ALPHABET[(w >> 6) & 63] : '=';
        *o++ = i + 2 < len ? ALPHABET[w & 63] : '=';
    }
    *o = '\0';
    return out;
}

unsigned char *base64_decode(const char *s, size_t len, size_t *out_len) {
    *out_len = 0;
    if (len % 4) return NULL;
    size_t pad = len > 0 && s[len - 1] == '=' ? (len > 1 && s[len - 2] == '=' ? 2 : 1) : 0;
    unsigned char *out = xmalloc(len / 4 * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int last = i + 4 == len;
        int v[4];
        for (int k = 0; k < 4; k++) {
            unsigned char ch = (unsigned char)s[i + k];
            /* '=' only as the group's last one or two characters, in the last group */
            v[k] = ch == '=' && last && k >= 4 - (int)pad ? 0 : value_of(ch);
            if (v[k] < 0) {
                free(out);
                return NULL;
            }
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                     (uint32_t)v[3];
        out[o++] = (unsigned char)(w >> 16);
        if (!last || pad < 2) out[o++] = (unsigned char)(w >> 8);
        if (!last || pad < 1) out[o++] = (unsigned char)w;
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

char *base64_from_floats(const float *v, int dim) {
    size_t n = dim > 0 ? (size_t)dim * 4 : 0;
    unsigned char *raw = xmalloc(n ? n : 1);
    for (size_t i = 0; i < n / 4; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; k++) raw[i * 4 + (size_t)k] = (unsigned char)(u >> (8 * k));
    }
    char *out = base64_encode(raw, n);
    free(raw);
    return out;
}

float *base64_to_floats(const char *s, size_t len, int *dim) {
    size_t n;
    unsigned char *raw = base64_decode(s, len, &n);
    if (!raw || n == 0 || n % 4) {
        free(raw);
        return NULL;
    }
    float *v = xmalloc(n);
    for (size_t i = 0; i < n / 4; i++) {
        uint32_t u = 0;
        for (int k = 0; k < 4; k++) u |= (uint32_t)raw[i * 4 + (size_t)k] << (8 * k);
        memcpy(&v[i], &u, 4);
    }
    free(raw);
    *dim = (int)(n / 4);
    return v;
}
