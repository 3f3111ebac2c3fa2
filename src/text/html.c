/* html_to_text(): the one HTML stripper feedline uses everywhere (the original had
 * three, with different entity handling; original-data_surfaces.md §5 item 6).
 *
 * A single left-to-right pass, linear in the input: tags become a space, comments
 * and <script>/<style> contents vanish, entities are decoded exactly once, every
 * whitespace run (ASCII, Unicode, or decoded like &nbsp;) becomes one ASCII space,
 * the ends are trimmed, and invalid UTF-8 is replaced by U+FFFD on the way. */
#include "text/text.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "text/uchar.h"
#include "util/buf.h"
#include "util/mem.h"
#include "util/utf8.h"
#include "util/util.h"

/* Named entities: the HTML 4.01 set (252 names: Latin-1, symbols and Greek,
 * special characters) plus &apos;, sorted by strcmp() (upper case first) for
 * bsearch(). Names are case-sensitive (&Eacute; vs &eacute;). */
typedef struct entity {
    const char *name;
    uint32_t cp;
} entity;

static const entity ENTITIES[] = {
    {"AElig", 0x00C6}, {"Aacute", 0x00C1}, {"Acirc", 0x00C2}, {"Agrave", 0x00C0},
    {"Alpha", 0x0391}, {"Aring", 0x00C5}, {"Atilde", 0x00C3}, {"Auml", 0x00C4},
    {"Beta", 0x0392}, {"Ccedil", 0x00C7}, {"Chi", 0x03A7}, {"Dagger", 0x2021},
    {"Delta", 0x0394}, {"ETH", 0x00D0}, {"Eacute", 0x00C9}, {"Ecirc", 0x00CA},
    {"Egrave", 0x00C8}, {"Epsilon", 0x0395}, {"Eta", 0x0397}, {"Euml", 0x00CB},
    {"Gamma", 0x0393}, {"Iacute", 0x00CD}, {"Icirc", 0x00CE}, {"Igrave", 0x00CC},
    {"Iota", 0x0399}, {"Iuml", 0x00CF}, {"Kappa", 0x039A}, {"Lambda", 0x039B},
    {"Mu", 0x039C}, {"Ntilde", 0x00D1}, {"Nu", 0x039D}, {"OElig", 0x0152},
    {"Oacute", 0x00D3}, {"Ocirc", 0x00D4}, {"Ograve", 0x00D2}, {"Omega", 0x03A9},
    {"Omicron", 0x039F}, {"Oslash", 0x00D8}, {"Otilde", 0x00D5}, {"Ouml", 0x00D6},
    {"Phi", 0x03A6}, {"Pi", 0x03A0}, {"Prime", 0x2033}, {"Psi", 0x03A8},
    {"Rho", 0x03A1}, {"Scaron", 0x0160}, {"Sigma", 0x03A3}, {"THORN", 0x00DE},
    {"Tau", 0x03A4}, {"Theta", 0x0398}, {"Uacute", 0x00DA}, {"Ucirc", 0x00DB},
    {"Ugrave", 0x00D9}, {"Upsilon", 0x03A5}, {"Uuml", 0x00DC}, {"Xi", 0x039E},
    {"Yacute", 0x00DD}, {"Yuml", 0x0178}, {"Zeta", 0x0396}, {"aacute", 0x00E1},
    {"acirc", 0x00E2}, {"acute", 0x00B4}, {"aelig", 0x00E6}, {"agrave", 0x00E0},
    {"alefsym", 0x2135}, {"alpha", 0x03B1}, {"amp", 0x0026}, {"and", 0x2227},
    {"ang", 0x2220}, {"apos", 0x0027}, {"aring", 0x00E5}, {"asymp", 0x2248},
    {"atilde", 0x00E3}, {"auml", 0x00E4}, {"bdquo", 0x201E}, {"beta", 0x03B2},
    {"brvbar", 0x00A6}, {"bull", 0x2022}, {"cap", 0x2229}, {"ccedil", 0x00E7},
    {"cedil", 0x00B8}, {"cent", 0x00A2}, {"chi", 0x03C7}, {"circ", 0x02C6},
    {"clubs", 0x2663}, {"cong", 0x2245}, {"copy", 0x00A9}, {"crarr", 0x21B5},
    {"cup", 0x222A}, {"curren", 0x00A4}, {"dArr", 0x21D3}, {"dagger", 0x2020},
    {"darr", 0x2193}, {"deg", 0x00B0}, {"delta", 0x03B4}, {"diams", 0x2666},
    {"divide", 0x00F7}, {"eacute", 0x00E9}, {"ecirc", 0x00EA}, {"egrave", 0x00E8},
    {"empty", 0x2205}, {"emsp", 0x2003}, {"ensp", 0x2002}, {"epsilon", 0x03B5},
    {"equiv", 0x2261}, {"eta", 0x03B7}, {"eth", 0x00F0}, {"euml", 0x00EB},
    {"euro", 0x20AC}, {"exist", 0x2203}, {"fnof", 0x0192}, {"forall", 0x2200},
    {"frac12", 0x00BD}, {"frac14", 0x00BC}, {"frac34", 0x00BE}, {"frasl", 0x2044},
    {"gamma", 0x03B3}, {"ge", 0x2265}, {"gt", 0x003E}, {"hArr", 0x21D4},
    {"harr", 0x2194}, {"hearts", 0x2665}, {"hellip", 0x2026}, {"iacute", 0x00ED},
    {"icirc", 0x00EE}, {"iexcl", 0x00A1}, {"igrave", 0x00EC}, {"image", 0x2111},
    {"infin", 0x221E}, {"int", 0x222B}, {"iota", 0x03B9}, {"iquest", 0x00BF},
    {"isin", 0x2208}, {"iuml", 0x00EF}, {"kappa", 0x03BA}, {"lArr", 0x21D0},
    {"lambda", 0x03BB}, {"lang", 0x2329}, {"laquo", 0x00AB}, {"larr", 0x2190},
    {"lceil", 0x2308}, {"ldquo", 0x201C}, {"le", 0x2264}, {"lfloor", 0x230A},
    {"lowast", 0x2217}, {"loz", 0x25CA}, {"lrm", 0x200E}, {"lsaquo", 0x2039},
    {"lsquo", 0x2018}, {"lt", 0x003C}, {"macr", 0x00AF}, {"mdash", 0x2014},
    {"micro", 0x00B5}, {"middot", 0x00B7}, {"minus", 0x2212}, {"mu", 0x03BC},
    {"nabla", 0x2207}, {"nbsp", 0x00A0}, {"ndash", 0x2013}, {"ne", 0x2260},
    {"ni", 0x220B}, {"not", 0x00AC}, {"notin", 0x2209}, {"nsub", 0x2284},
    {"ntilde", 0x00F1}, {"nu", 0x03BD}, {"oacute", 0x00F3}, {"ocirc", 0x00F4},
    {"oelig", 0x0153}, {"ograve", 0x00F2}, {"oline", 0x203E}, {"omega", 0x03C9},
    {"omicron", 0x03BF}, {"oplus", 0x2295}, {"or", 0x2228}, {"ordf", 0x00AA},
    {"ordm", 0x00BA}, {"oslash", 0x00F8}, {"otilde", 0x00F5}, {"otimes", 0x2297},
    {"ouml", 0x00F6}, {"para", 0x00B6}, {"part", 0x2202}, {"permil", 0x2030},
    {"perp", 0x22A5}, {"phi", 0x03C6}, {"pi", 0x03C0}, {"piv", 0x03D6},
    {"plusmn", 0x00B1}, {"pound", 0x00A3}, {"prime", 0x2032}, {"prod", 0x220F},
    {"prop", 0x221D}, {"psi", 0x03C8}, {"quot", 0x0022}, {"rArr", 0x21D2},
    {"radic", 0x221A}, {"rang", 0x232A}, {"raquo", 0x00BB}, {"rarr", 0x2192},
    {"rceil", 0x2309}, {"rdquo", 0x201D}, {"real", 0x211C}, {"reg", 0x00AE},
    {"rfloor", 0x230B}, {"rho", 0x03C1}, {"rlm", 0x200F}, {"rsaquo", 0x203A},
    {"rsquo", 0x2019}, {"sbquo", 0x201A}, {"scaron", 0x0161}, {"sdot", 0x22C5},
    {"sect", 0x00A7}, {"shy", 0x00AD}, {"sigma", 0x03C3}, {"sigmaf", 0x03C2},
    {"sim", 0x223C}, {"spades", 0x2660}, {"sub", 0x2282}, {"sube", 0x2286},
    {"sum", 0x2211}, {"sup", 0x2283}, {"sup1", 0x00B9}, {"sup2", 0x00B2},
    {"sup3", 0x00B3}, {"supe", 0x2287}, {"szlig", 0x00DF}, {"tau", 0x03C4},
    {"there4", 0x2234}, {"theta", 0x03B8}, {"thetasym", 0x03D1}, {"thinsp", 0x2009},
    {"thorn", 0x00FE}, {"tilde", 0x02DC}, {"times", 0x00D7}, {"trade", 0x2122},
    {"uArr", 0x21D1}, {"uacute", 0x00FA}, {"uarr", 0x2191}, {"ucirc", 0x00FB},
    {"ugrave", 0x00F9}, {"uml", 0x00A8}, {"upsih", 0x03D2}, {"upsilon", 0x03C5},
    {"uuml", 0x00FC}, {"weierp", 0x2118}, {"xi", 0x03BE}, {"yacute", 0x00FD},
    {"yen", 0x00A5}, {"yuml", 0x00FF}, {"zeta", 0x03B6}, {"zwj", 0x200D},
    {"zwnj", 0x200C},
};

/* Longest name in ENTITIES is 8 ("thetasym"); anything longer cannot match. */
#define ENTITY_NAME_MAX 8

/* HTML5 decodes these few without a trailing ';' (legacy pages write "&amp" or
 * "&nbsp"); every other name needs the ';'. */
static const char *const LEGACY_NO_SEMICOLON[] = {"amp", "lt", "gt", "quot", "nbsp"};

/* Numeric references 0x80-0x9F name Windows-1252 characters in real-world HTML
 * (the HTML5 "numeric character reference end" rule); 0 marks the five undefined slots. */
static const uint16_t CP1252_C1[32] = {
    0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
    0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0,      0x017D, 0,
    0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178};

/* Output under construction: whitespace is only recorded as "pending" and written
 * as one space before the next visible character, which both collapses runs and
 * trims both ends without a second pass. */
typedef struct text_out {
    buf_t b;
    int pending_space;
} text_out;

static void out_space(text_out *o) { o->pending_space = 1; }

static void out_text(text_out *o, const char *s, size_t n) {
    if (o->pending_space && o->b.len) buf_putc(&o->b, ' ');
    o->pending_space = 0;
    buf_append(&o->b, s, n);
}

static void out_codepoint(text_out *o, uint32_t cp) {
    if (uchar_is_space(cp)) {
        out_space(o);
        return;
    }
    char enc[4];
    size_t n = utf8_encode(cp, enc);
    if (!n) n = utf8_encode(UCHAR_REPLACEMENT, enc);
    out_text(o, enc, n);
}

static int is_ascii_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int is_ascii_alpha(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_ascii_alnum(unsigned char c) {
    return is_ascii_alpha(c) || (c >= '0' && c <= '9');
}

static int entity_cmp(const void *key, const void *elem) {
    return strcmp((const char *)key, ((const entity *)elem)->name);
}

static const entity *entity_lookup(const char *name) {
    return bsearch(name, ENTITIES, ARRAY_LEN(ENTITIES), sizeof ENTITIES[0],
                   entity_cmp);
}

static int is_legacy_name(const char *name) {
    for (size_t i = 0; i < ARRAY_LEN(LEGACY_NO_SEMICOLON); i++)
        if (strcmp(name, LEGACY_NO_SEMICOLON[i]) == 0) return 1;
    return 0;
}

/* Maps a numeric reference's value to the code point to emit. `overflow` means the
 * digits exceeded any valid value. */
static uint32_t numeric_codepoint(uint32_t v, int overflow) {
    if (overflow || v == 0 || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return UCHAR_REPLACEMENT;
    if (v >= 0x80 && v <= 0x9F)
        return CP1252_C1[v - 0x80] ? CP1252_C1[v - 0x80] : UCHAR_REPLACEMENT;
    /* Control characters are never text; whitespace controls stay (they collapse). */
    if ((v < 0x20 && !is_ascii_space((unsigned char)v)) || v == 0x7F) return UCHAR_REPLACEMENT;
    return v;
}

/* "&#39;", "&#x27;" (';' optional, as in HTML5). Returns bytes consumed, 0 if s[i..]
 * is not a numeric reference. */
static size_t decode_numeric(const char *s, size_t len, size_t i, uint32_t *cp) {
    size_t j = i + 2; /* past "&#" */
    int hex = 0;
    if (j < len && (s[j] == 'x' || s[j] == 'X')) {
        hex = 1;
        j++;
    }
    size_t digits_start = j;
    uint32_t v = 0;
    int overflow = 0;
    for (; j < len; j++) {
        unsigned char c = (unsigned char)s[j];
        uint32_t d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (hex && c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (hex && c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else break;
        if (!overflow) {
            v = v * (hex ? 16 : 10) + d;
            if (v > 0x10FFFF) overflow = 1; /* keep consuming digits, value stays bad */
        }
    }
    if (j == digits_start) return 0;
    if (j < len && s[j] == ';') j++;
    *cp = numeric_codepoint(v, overflow);
    return j - i;
}

/* "&eacute;" (or one of the legacy names without ';'). Returns bytes consumed, 0
 * if s[i..] is not a known named reference (the caller keeps it literally). */
static size_t decode_named(const char *s, size_t len, size_t i, uint32_t *cp) {
    size_t j = i + 1;
    while (j < len && j - (i + 1) <= ENTITY_NAME_MAX && is_ascii_alnum((unsigned char)s[j])) j++;
    size_t n = j - (i + 1);
    if (n == 0 || n > ENTITY_NAME_MAX) return 0;
    char name[ENTITY_NAME_MAX + 1];
    memcpy(name, s + i + 1, n);
    name[n] = '\0';
    int has_semicolon = j < len && s[j] == ';';
    if (!has_semicolon && !is_legacy_name(name)) return 0;
    const entity *e = entity_lookup(name);
    if (!e) return 0;
    *cp = e->cp;
    return n + 1 + (has_semicolon ? 1 : 0);
}

static size_t decode_entity(const char *s, size_t len, size_t i, uint32_t *cp) {
    if (i + 1 < len && s[i + 1] == '#') return decode_numeric(s, len, i, cp);
    return decode_named(s, len, i, cp);
}

/* Position of the first '>' at or after `from`, or len. The answer is cached so
 * that a text full of '<' without '>' stays linear: the cached '>' remains the
 * first one for every later `from` up to it, and "none" stays none. */
typedef struct gt_cache {
    size_t pos;
    int valid;
} gt_cache;

static size_t next_gt(const char *s, size_t len, size_t from, gt_cache *c) {
    if (c->valid && c->pos >= from) return c->pos;
    const char *p = memchr(s + from, '>', len - from);
    c->pos = p ? (size_t)(p - s) : len;
    c->valid = 1;
    return c->pos;
}

/* End (exclusive) of a comment starting at i ("<!--"). HTML5 also accepts the
 * abrupt "<!-->" and "<!--->"; an unclosed comment runs to the end. */
static size_t skip_comment(const char *s, size_t len, size_t i) {
    const char *p = memmem(s + i + 2, len - (i + 2), "-->", 3);
    return p ? (size_t)(p - s) + 3 : len;
}

/* After an opening <script>/<style> tag ending before `from`, the end (exclusive)
 * of its raw content and closing tag; the content is never text. */
static size_t skip_raw_text(const char *s, size_t len, size_t from, const char *name,
                            size_t name_len) {
    size_t j = from;
    while (j < len) {
        const char *p = memchr(s + j, '<', len - j);
        if (!p) return len;
        size_t k = (size_t)(p - s);
        if (k + 2 + name_len <= len && s[k + 1] == '/' &&
            strncasecmp(s + k + 2, name, name_len) == 0 &&
            (k + 2 + name_len == len || !is_ascii_alnum((unsigned char)s[k + 2 + name_len]))) {
            const char *gt = memchr(s + k, '>', len - k);
            return gt ? (size_t)(gt - s) + 1 : len;
        }
        j = k + 1;
    }
    return len;
}

/* Which raw-text element (script/style) the tag s[i..gt] opens, if any. */
static const char *raw_text_element(const char *s, size_t i, size_t gt, size_t *name_len) {
    size_t j = i + 1;
    if (s[j] == '/' || s[gt - 1] == '/') return NULL; /* closing or self-closing */
    size_t start = j;
    while (j < gt && is_ascii_alnum((unsigned char)s[j])) j++;
    size_t n = j - start;
    static const char *const RAW[] = {"script", "style"};
    for (size_t r = 0; r < ARRAY_LEN(RAW); r++) {
        if (n == strlen(RAW[r]) && strncasecmp(s + start, RAW[r], n) == 0) {
            *name_len = n;
            return RAW[r];
        }
    }
    return NULL;
}

/* Handles a '<' at i; returns the index to continue from. */
static size_t handle_lt(text_out *o, const char *s, size_t len, size_t i, gt_cache *gc) {
    if (i + 4 <= len && memcmp(s + i, "<!--", 4) == 0) return skip_comment(s, len, i);
    unsigned char next = i + 1 < len ? (unsigned char)s[i + 1] : 0;
    int starts_tag = is_ascii_alpha(next) || next == '/' || next == '!' || next == '?';
    size_t gt = starts_tag ? next_gt(s, len, i + 1, gc) : len;
    if (gt >= len) { /* "a < b", or a '<' never closed: plain text */
        out_text(o, "<", 1);
        return i + 1;
    }
    out_space(o);
    size_t name_len = 0;
    const char *raw = raw_text_element(s, i, gt, &name_len);
    if (raw) return skip_raw_text(s, len, gt + 1, raw, name_len);
    return gt + 1;
}

/* Copies a run of ordinary ASCII characters at i; returns its end. */
static size_t copy_ascii_run(text_out *o, const char *s, size_t len, size_t i) {
    size_t j = i;
    while (j < len) {
        unsigned char c = (unsigned char)s[j];
        if (c >= 0x80 || c == '<' || c == '&' || is_ascii_space(c)) break;
        j++;
    }
    out_text(o, s + i, j - i);
    return j;
}

char *html_to_text(const char *html) {
    if (!html) return xstrdup("");
    size_t len = strlen(html);
    text_out o = {BUF_INIT, 0};
    buf_reserve(&o.b, len);
    gt_cache gc = {0, 0};
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)html[i];
        if (c == '<') {
            i = handle_lt(&o, html, len, i, &gc);
        } else if (c == '&') {
            uint32_t cp;
            size_t n = decode_entity(html, len, i, &cp);
            if (n) {
                out_codepoint(&o, cp);
                i += n;
            } else {
                out_text(&o, "&", 1);
                i++;
            }
        } else if (is_ascii_space(c)) {
            out_space(&o);
            i++;
        } else if (c < 0x80) {
            i = copy_ascii_run(&o, html, len, i);
        } else {
            /* Non-ASCII: copy a valid sequence as is (U+FFFD for an invalid byte,
             * which uchar_decode reports as length 1), collapsing Unicode spaces. */
            uint32_t cp;
            size_t n = uchar_decode(html + i, len - i, &cp);
            if (n == 1) out_codepoint(&o, UCHAR_REPLACEMENT);
            else if (uchar_is_space(cp)) out_space(&o);
            else out_text(&o, html + i, n);
            i += n;
        }
    }
    buf_append(&o.b, "", 0); /* NUL-terminate even when nothing was written */
    return buf_detach(&o.b);
}
