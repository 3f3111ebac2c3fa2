/* Code-point level helpers private to the text module (see uchar.h). They exist so
 * that html.c, digest.c and conv.c agree on what "whitespace", "word" and
 * "lower case" mean. */
#include "text/uchar.h"

#include "util/buf.h"
#include "util/utf8.h"

size_t uchar_decode(const char *p, size_t avail, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)p;
    size_t n = utf8_seq_len(u, avail);
    switch (n) {
    case 1: *cp = u[0]; return 1;
    case 2: *cp = ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F); return 2;
    case 3:
        *cp = ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
        return 3;
    case 4:
        *cp = ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
              ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
        return 4;
    default: *cp = UCHAR_REPLACEMENT; return 1;
    }
}

int uchar_is_space(uint32_t cp) {
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F)) return 1;
    if (cp < 0x85) return 0;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* Latin-1 supplement code points that are alphanumeric (ª ² ³ µ ¹ º ¼ ½ ¾). */
static int latin1_symbol_is_word(uint32_t cp) {
    return cp == 0xAA || cp == 0xB2 || cp == 0xB3 || cp == 0xB5 || cp == 0xB9 ||
           cp == 0xBA || (cp >= 0xBC && cp <= 0xBE);
}

int uchar_is_word(uint32_t cp) {
    if (cp < 0x80)
        return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') ||
               (cp >= 'A' && cp <= 'Z') || cp == '_';
    if (cp < 0xC0) return latin1_symbol_is_word(cp);
    if (cp == 0xD7 || cp == 0xF7) return 0;
    if (cp >= 0x0300 && cp <= 0x036F) return 0;   /* combining marks */
    if (cp >= 0x2000 && cp <= 0x2BFF) return 0;   /* punctuation, symbols, arrows */
    if (cp >= 0x2E00 && cp <= 0x2E7F) return 0;   /* supplemental punctuation */
    if (cp >= 0x3000 && cp <= 0x303F) return 0;   /* CJK punctuation */
    if (cp >= 0xE000 && cp <= 0xF8FF) return 0;   /* private use */
    if (cp >= 0xFE10 && cp <= 0xFE6F) return 0;   /* vertical/small forms */
    if ((cp >= 0xFF01 && cp <= 0xFF0F) || (cp >= 0xFF1A && cp <= 0xFF20) ||
        (cp >= 0xFF3B && cp <= 0xFF40) || (cp >= 0xFF5B && cp <= 0xFF65))
        return 0;                                  /* full-width punctuation */
    if (cp >= 0xFFF0 && cp <= 0xFFFF) return 0;   /* specials, incl. U+FFFD */
    if (cp >= 0x1F000 && cp <= 0x1FAFF) return 0; /* emoji and pictographs */
    return 1;
}

uint32_t uchar_lower(uint32_t cp) {
    if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) return cp + 32;
    if (cp == 0x130) return 'i'; /* İ: Python gives "i" + combining dot; keep the letter */
    if (cp >= 0x100 && cp <= 0x137) return (cp & 1) ? cp : cp + 1;
    if (cp >= 0x139 && cp <= 0x148) return (cp & 1) ? cp + 1 : cp;
    if (cp >= 0x14A && cp <= 0x177) return (cp & 1) ? cp : cp + 1;
    if (cp == 0x178) return 0xFF;
    if (cp >= 0x179 && cp <= 0x17E) return (cp & 1) ? cp + 1 : cp;
    if (cp >= 0x391 && cp <= 0x3AB && cp != 0x3A2) return cp + 32;
    if (cp >= 0x400 && cp <= 0x40F) return cp + 0x50;
    if (cp >= 0x410 && cp <= 0x42F) return cp + 0x20;
    return cp;
}

char *uchar_lower_dup(const char *s, size_t len, size_t *out_len) {
    buf_t b = BUF_INIT;
    buf_reserve(&b, len);
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) { /* fast path: ASCII */
            buf_putc(&b, (char)((c >= 'A' && c <= 'Z') ? c + 32 : c));
            i++;
            continue;
        }
        uint32_t cp;
        i += uchar_decode(s + i, len - i, &cp);
        char enc[4];
        buf_append(&b, enc, utf8_encode(uchar_lower(cp), enc));
    }
    buf_append(&b, "", 0); /* NUL-terminate even when s is empty */
    if (out_len) *out_len = b.len;
    return buf_detach(&b);
}

/* Start offset of the character that ends at byte `end` (exclusive). */
static size_t prev_char_start(const char *s, size_t begin, size_t end) {
    size_t i = end - 1;
    while (i > begin && end - i < 4 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    return i;
}

void uchar_strip_range(const char *s, size_t *start, size_t *end) {
    size_t a = *start, z = *end;
    while (a < z) {
        uint32_t cp;
        size_t n = uchar_decode(s + a, z - a, &cp);
        if (!uchar_is_space(cp)) break;
        a += n;
    }
    while (z > a) {
        size_t p = prev_char_start(s, a, z);
        uint32_t cp;
        size_t n = uchar_decode(s + p, z - p, &cp);
        /* An invalid tail decodes shorter than it spans: it is not whitespace. */
        if (p + n != z || !uchar_is_space(cp)) break;
        z = p;
    }
    *start = a;
    *end = z;
}
