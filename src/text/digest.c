/* The customer digest (original-phases.md §0): the specificity score of a message,
 * the "similar messages" test, and the digest built from the opening message plus
 * the most specific later customer message; the test of two customer texts saying the
 * same (texts_say_the_same); also two small string helpers.
 *
 * The original's regular expressions are implemented by hand, each as one linear
 * scan, with the semantics Python's `re` gives them (Unicode \w, \s, \b). Lengths
 * are in characters (code points), as Python's len() counts them. */
#include "text/text.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "text/uchar.h"
#include "util/buf.h"
#include "util/mem.h"
#include "util/utf8.h"
#include "util/util.h"

/* Inputs are cut to this many characters and at most this many messages are
 * scored, bounding the work per conversation. */
#define DIGEST_INPUT_MAX_CHARS 100000
#define DIGEST_MAX_MESSAGES 100
#define DIGEST_SEPARATOR "\n\n---\n\n"
#define DIGEST_SEPARATOR_CHARS 7

/* Whole-token matches (tokens are whitespace-split and keep their punctuation, so
 * "hi," is not "hi"). The original's list also had "thank you", "got it" and
 * "sounds good", which can never equal a single token; they are left out. */
static const char *const GENERIC_TOKENS[] = {
    "awesome", "great", "hello", "help", "hey", "hi", "no",
    "ok", "okay", "perfect", "please", "sure", "thanks", "yes"};

/* Product nouns of a social-media scheduling tool: naming one makes a message more
 * specific than "it doesn't work". */
static const char *const FEATURE_NOUNS[] = {
    "account", "accounts", "analytics", "board", "boards", "bulk", "calendar",
    "caption", "captions", "communities", "create", "csv", "dashboard", "designs",
    "draft", "drafts", "email", "emails", "export", "extension", "facebook", "feed",
    "ghostwriter", "hashtag", "hashtags", "image", "images", "import", "insights",
    "instagram", "integration", "link", "links", "linkedin", "media", "notification",
    "notifications", "pin", "pins", "pinterest", "post", "posts", "profile", "profiles",
    "publisher", "queue", "report", "reports", "rss", "schedule", "scheduler",
    "scheduling", "smartloop", "smartschedule", "stats", "team", "templates", "tiktok",
    "tribes", "twitter", "upload", "uploads", "video", "videos", "workspace", "youtube"};

/* Substrings of the lower-cased message. */
static const char *const ERROR_KEYWORDS[] = {
    "error", "failed", "cannot", "can't", "doesn't work", "won't", "broken", "not working",
    "not posting", "not showing", "not appearing", "stuck", "crash", "bug", "issue",
    "problem", "wrong"};

static const char *const ATTACHMENT_MARKERS[] = {"screenshot", "attached", "attachment",
                                                 "image", "see below", "showing"};

/* ---- small helpers ------------------------------------------------------ */

static int token_in(const char *tok, size_t n, const char *const *list, size_t count) {
    for (size_t i = 0; i < count; i++)
        if (strlen(list[i]) == n && memcmp(list[i], tok, n) == 0) return 1;
    return 0;
}

static int contains_any(const char *hay, const char *const *list, size_t count) {
    for (size_t i = 0; i < count; i++)
        if (strstr(hay, list[i])) return 1;
    return 0;
}

/* Next whitespace-separated token of s[0..len) at or after *pos; 0 when none. */
static int next_token(const char *s, size_t len, size_t *pos, size_t *tok_start,
                      size_t *tok_len) {
    size_t i = *pos;
    uint32_t cp;
    while (i < len) {
        size_t n = uchar_decode(s + i, len - i, &cp);
        if (!uchar_is_space(cp)) break;
        i += n;
    }
    if (i >= len) return 0;
    size_t start = i;
    while (i < len) {
        size_t n = uchar_decode(s + i, len - i, &cp);
        if (uchar_is_space(cp)) break;
        i += n;
    }
    *tok_start = start;
    *tok_len = i - start;
    *pos = i;
    return 1;
}

static int is_word_at(const char *s, size_t len, size_t i) {
    if (i >= len) return 0;
    uint32_t cp;
    uchar_decode(s + i, len - i, &cp);
    return uchar_is_word(cp);
}

/* Number of consecutive word characters starting at i, counting at most `cap`. */
static size_t word_run(const char *s, size_t len, size_t i, size_t cap) {
    size_t count = 0;
    while (i < len && count <= cap) {
        uint32_t cp;
        size_t n = uchar_decode(s + i, len - i, &cp);
        if (!uchar_is_word(cp)) break;
        count++;
        i += n;
    }
    return count;
}

/* ---- the original's regular expressions ---------------------------------- */

/* ["'][^"']{5,500}["'] : two consecutive quote characters 5..500 characters apart. */
static int has_quoted_text(const char *s, size_t len) {
    size_t idx = 0, last = 0;
    int seen = 0;
    for (size_t i = 0; i < len; idx++) {
        uint32_t cp;
        i += uchar_decode(s + i, len - i, &cp);
        if (cp != '"' && cp != '\'') continue;
        if (seen) {
            size_t gap = idx - last - 1;
            if (gap >= 5 && gap <= 500) return 1;
        }
        seen = 1;
        last = idx;
    }
    return 0;
}

/* E?\d{3,5}\b at a word start i. */
static int match_numeric_code(const char *s, size_t len, size_t i) {
    size_t j = i;
    if (s[j] == 'e' || s[j] == 'E') j++;
    size_t d = 0;
    while (j + d < len && s[j + d] >= '0' && s[j + d] <= '9') d++;
    return d >= 3 && d <= 5 && !is_word_at(s, len, j + d);
}

/* ERR[_-]?\w{1,50}\b at a word start i. Since \w{1,50} must end at a boundary it
 * has to take the whole rest of the word, so only the word's length matters. */
static int match_err_code(const char *s, size_t len, size_t i) {
    if (len - i < 4 || strncasecmp(s + i, "err", 3) != 0) return 0;
    size_t j = i + 3;
    size_t run = word_run(s, len, j, 51);
    if (run >= 1 && run <= 50) return 1;
    if (s[j] == '_' && run >= 2 && run <= 51) return 1; /* '_' taken by [_-]? */
    if (s[j] == '-') {
        size_t after = word_run(s, len, j + 1, 51);
        return after >= 1 && after <= 50;
    }
    return 0;
}

/* [A-Z]{1,30}_ERROR\b (case-insensitive) at a word start i. The letters cannot
 * stop before '_', so the letter run itself must be 1..30 long. */
static int match_named_error(const char *s, size_t len, size_t i) {
    size_t j = i;
    while (j < len && j - i <= 30 &&
           ((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z')))
        j++;
    size_t letters = j - i;
    if (letters < 1 || letters > 30) return 0;
    if (len - j < 6 || strncasecmp(s + j, "_error", 6) != 0) return 0;
    return !is_word_at(s, len, j + 6);
}

/* \b(E?\d{3,5}|ERR[_-]?\w{1,50}|[A-Z]{1,30}_ERROR)\b, case-insensitive. Every
 * alternative starts with a word character, so only word starts can match. */
static int has_error_code(const char *s, size_t len) {
    int prev_word = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = uchar_decode(s + i, len - i, &cp);
        int word = uchar_is_word(cp);
        if (word && !prev_word &&
            (match_numeric_code(s, len, i) || match_err_code(s, len, i) ||
             match_named_error(s, len, i)))
            return 1;
        prev_word = word;
        i += n;
    }
    return 0;
}

/* https?://\S{1,500}|www\.\S{1,500} on the lower-cased text: a prefix followed by
 * at least one non-space character. */
static int has_url(const char *lower, size_t len) {
    static const char *const PREFIXES[] = {"http://", "https://", "www."};
    for (size_t p = 0; p < ARRAY_LEN(PREFIXES); p++) {
        size_t plen = strlen(PREFIXES[p]);
        const char *hit = lower;
        while ((hit = strstr(hit, PREFIXES[p])) != NULL) {
            size_t after = (size_t)(hit - lower) + plen;
            if (after < len) {
                uint32_t cp;
                uchar_decode(lower + after, len - after, &cp);
                if (!uchar_is_space(cp)) return 1;
            }
            hit++;
        }
    }
    return 0;
}

/* ---- specificity ------------------------------------------------------------ */

static int specificity_n(const char *s, size_t len) {
    if (len == 0) return -2;
    size_t chars = utf8_count(s, len);
    size_t llen;
    char *lower = uchar_lower_dup(s, len, &llen);

    int generic = 0, feature = 0;
    size_t pos = 0, ts, tl;
    while (next_token(lower, llen, &pos, &ts, &tl)) {
        generic |= token_in(lower + ts, tl, GENERIC_TOKENS, ARRAY_LEN(GENERIC_TOKENS));
        feature |= token_in(lower + ts, tl, FEATURE_NOUNS, ARRAY_LEN(FEATURE_NOUNS));
    }

    int score = 0;
    if (chars < 20) score -= 2;
    if (generic && chars < 50) score -= 2;
    if (has_quoted_text(s, len)) score += 3;
    if (contains_any(lower, ERROR_KEYWORDS, ARRAY_LEN(ERROR_KEYWORDS))) score += 2;
    if (has_error_code(s, len)) score += 2;
    if (feature) score += 1;
    if (has_url(lower, llen) ||
        contains_any(lower, ATTACHMENT_MARKERS, ARRAY_LEN(ATTACHMENT_MARKERS)))
        score += 1;
    free(lower);
    return score;
}

int message_specificity(const char *msg) {
    return msg ? specificity_n(msg, strlen(msg)) : -2;
}

/* ---- similarity ------------------------------------------------------------- */

typedef struct slice {
    const char *p;
    size_t n;
} slice;

static int slice_cmp(const void *a, const void *b) {
    const slice *x = a, *y = b;
    size_t m = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->p, y->p, m);
    if (c) return c;
    return (x->n > y->n) - (x->n < y->n);
}

/* The sorted set of distinct whitespace-split tokens of s; returns the count. */
static size_t token_set(const char *s, size_t len, slice **out) {
    slice *v = NULL;
    size_t count = 0, cap = 0, pos = 0, ts, tl;
    while (next_token(s, len, &pos, &ts, &tl)) {
        XGROW(v, cap, count + 1);
        v[count++] = (slice){s + ts, tl};
    }
    if (count) qsort(v, count, sizeof *v, slice_cmp);
    size_t uniq = 0;
    for (size_t i = 0; i < count; i++)
        if (uniq == 0 || slice_cmp(&v[uniq - 1], &v[i]) != 0) v[uniq++] = v[i];
    *out = v;
    return uniq;
}

/* |w1 ∩ w2| / max(|w1|, |w2|) >= 0.9, with the word sets of two lower-cased texts. */
static int words_overlap(const char *a, size_t alen, const char *b, size_t blen) {
    slice *wa, *wb;
    size_t na = token_set(a, alen, &wa), nb = token_set(b, blen, &wb);
    size_t common = 0;
    for (size_t i = 0, j = 0; i < na && j < nb;) {
        int c = slice_cmp(&wa[i], &wb[j]);
        if (c == 0) {
            common++;
            i++;
            j++;
        } else if (c < 0) {
            i++;
        } else {
            j++;
        }
    }
    size_t most = na > nb ? na : nb;
    free(wa);
    free(wb);
    return most > 0 && common * 10 >= most * 9;
}

static int similar_n(const char *a, size_t alen, const char *b, size_t blen) {
    size_t a0 = 0, b0 = 0;
    uchar_strip_range(a, &a0, &alen);
    uchar_strip_range(b, &b0, &blen);
    /* Blank counts as empty: the original let "   " be "contained" in anything. */
    if (alen == a0 || blen == b0) return 0;
    size_t l1n, l2n;
    char *l1 = uchar_lower_dup(a + a0, alen - a0, &l1n);
    char *l2 = uchar_lower_dup(b + b0, blen - b0, &l2n);
    int similar;
    if (memmem(l1, l1n, l2, l2n) || memmem(l2, l2n, l1, l1n)) {
        similar = 1; /* covers equality too */
    } else {
        size_t c1 = utf8_count(l1, l1n), c2 = utf8_count(l2, l2n);
        size_t lo = c1 < c2 ? c1 : c2, hi = c1 < c2 ? c2 : c1;
        similar = lo * 2 >= hi && words_overlap(l1, l1n, l2, l2n);
    }
    free(l1);
    free(l2);
    return similar;
}

int messages_similar(const char *a, const char *b) {
    if (!a || !b) return 0;
    return similar_n(a, strlen(a), b, strlen(b));
}

char *text_fold(const char *s) {
    char *out = xmalloc(strlen(s) + 1), *o = out;
    int space = 1;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (isalnum(ch) || ch >= 0x80) {
            *o++ = (char)tolower(ch);
            space = 0;
        } else if (!space) {
            *o++ = ' ';
            space = 1;
        }
    }
    while (o > out && o[-1] == ' ') o--;
    *o = '\0';
    return out;
}

size_t text_word_count(const char *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += !isspace((unsigned char)s[i]) && (i == 0 || isspace((unsigned char)s[i - 1]));
    return n;
}

/* How many whole words two folded texts end with in common. */
static size_t common_tail_words(const char *a, const char *b) {
    size_t i = strlen(a), j = strlen(b), words = 0;
    while (i > 0 && j > 0 && a[i - 1] == b[j - 1]) {
        i--;
        j--;
        /* a word of both starts here */
        if ((i == 0 || a[i - 1] == ' ') && (j == 0 || b[j - 1] == ' ') && a[i] != ' ') words++;
    }
    return words;
}

int texts_say_the_same(const char *a, const char *b) {
    if (!a || !b) return 0;
    if (!strcmp(a, b)) return 1;
    char *fa = text_fold(a), *fb = text_fold(b);
    size_t na = text_word_count(fa, strlen(fa)), nb = text_word_count(fb, strlen(fb));
    size_t shorter = na < nb ? na : nb;
    int same;
    if (shorter <= 1) {
        same = !strcmp(fa, fb) && na > 0;
    } else {
        size_t tail = common_tail_words(fa, fb);
        same = messages_similar(fa, fb) || (tail >= 4 && tail * 5 >= shorter * 4);
    }
    free(fa);
    free(fb);
    return same;
}

/* ---- digest ------------------------------------------------------------------ */

/* A view of one input: valid UTF-8 (a repaired copy when the caller's was not),
 * cut to DIGEST_INPUT_MAX_CHARS characters. */
typedef struct text_view {
    const char *p;
    size_t n;
    char *owned;
} text_view;

static text_view view_of(const char *s) {
    text_view v = {"", 0, NULL};
    if (!s) return v;
    size_t len = strlen(s);
    if (!utf8_valid(s, len)) {
        v.owned = utf8_repair(s, len, NULL);
        s = v.owned;
        len = strlen(s);
    }
    v.p = s;
    v.n = utf8_offset_of(s, len, DIGEST_INPUT_MAX_CHARS);
    return v;
}

/* Appends T(s, chars) with surrounding whitespace stripped. */
static void append_cut_stripped(buf_t *b, const char *s, size_t len, size_t chars) {
    size_t start = 0, end = utf8_offset_of(s, len, chars);
    uchar_strip_range(s, &start, &end);
    buf_append(b, s + start, end - start);
}

static char *cut_copy(const char *s, size_t len, size_t chars) {
    return xstrndup(s, utf8_offset_of(s, len, chars));
}

char *build_customer_digest(const char *source_body, const char *const *customer_msgs,
                            size_t n, size_t max_chars) {
    text_view src = view_of(source_body);
    size_t s0 = 0;
    uchar_strip_range(src.p, &s0, &src.n);
    const char *sp = src.p + s0;
    size_t sn = src.n - s0;

    /* The best (most specific) message; ties go to the first. */
    text_view best = {"", 0, NULL};
    int best_score = 0, have_best = 0;
    size_t used = 0;
    for (size_t i = 0; i < n && used < DIGEST_MAX_MESSAGES; i++) {
        if (!customer_msgs || !customer_msgs[i]) continue;
        used++;
        text_view m = view_of(customer_msgs[i]);
        int score = specificity_n(m.p, m.n);
        if (!have_best || score > best_score) {
            free(best.owned);
            best = m;
            best_score = score;
            have_best = 1;
        } else {
            free(m.owned);
        }
    }

    char *result;
    if (!have_best || specificity_n(sp, sn) >= best_score || similar_n(sp, sn, best.p, best.n) ||
        max_chars <= DIGEST_SEPARATOR_CHARS) {
        result = cut_copy(sp, sn, max_chars);
    } else {
        /* 60% of the room for the opening message (context), 40% for the specific
         * one (diagnostics): 1195 + 7 + 798 characters for max_chars = 2000. */
        size_t available = max_chars - DIGEST_SEPARATOR_CHARS;
        size_t source_limit = available * 6 / 10;
        buf_t b = BUF_INIT;
        append_cut_stripped(&b, sp, sn, source_limit);
        size_t source_bytes = b.len;
        buf_t tail = BUF_INIT;
        append_cut_stripped(&tail, best.p, best.n, available - source_limit);
        /* Never start or end the digest with a bare separator (the original
         * produced "\n\n---\n\nbest" for an empty opening message). */
        if (tail.len && source_bytes) buf_puts(&b, DIGEST_SEPARATOR);
        buf_append(&b, buf_cstr(&tail), tail.len);
        buf_free(&tail);
        result = buf_detach(&b);
    }
    free(best.owned);
    free(src.owned);
    return result;
}

/* ---- small string helpers ------------------------------------------------------ */

void text_truncate_chars(char *s, size_t max_chars) {
    if (!s) return;
    size_t len = strlen(s);
    s[utf8_offset_of(s, len, max_chars)] = '\0';
}

static int is_trim_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

char *text_trim(char *s) {
    if (!s) return s;
    size_t len = strlen(s), start = 0;
    while (start < len && is_trim_space(s[start])) start++;
    while (len > start && is_trim_space(s[len - 1])) len--;
    memmove(s, s + start, len - start);
    s[len - start] = '\0';
    return s;
}
