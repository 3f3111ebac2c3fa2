/* The offline analyzer's text machinery: tokenizer (with English contractions),
 * light stemmer, stop words, the compiled phrase matcher (optionally typo-tolerant),
 * and helpers that cut sentences, words and error quotes out of conversation text.
 * Generic English only: nothing here knows a product. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llm/local_internal.h"
#include "util/mem.h"
#include "util/utf8.h"

/* ============================================================ tokenizer */

static int is_ascii_alnum(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Bytes of the apostrophe at p[i] (' or U+2018/U+2019), 0 if none. */
static size_t apostrophe_len(const unsigned char *p, size_t i, size_t len) {
    if (p[i] == '\'') return 1;
    if (i + 2 < len && p[i] == 0xE2 && p[i + 1] == 0x80 && (p[i + 2] == 0x98 || p[i + 2] == 0x99))
        return 3;
    return 0;
}

/* Bytes of the word character at p[i], or 0 when it is a separator. Non-ASCII counts
 * as a letter except Latin-1 symbols/no-break space, general and CJK punctuation and
 * emoji, which would otherwise glue neighbouring words together. */
static size_t word_char_len(const unsigned char *p, size_t i, size_t len) {
    unsigned char c = p[i];
    if (c < 0x80) return is_ascii_alnum(c) ? 1 : 0;
    size_t n = utf8_seq_len(p + i, len - i);
    if (n == 0) return 1; /* an invalid byte is still "a letter" */
    if (c == 0xC2) return 0;                                      /* U+0080..U+00BF */
    if (c == 0xE2 && (p[i + 1] == 0x80 || p[i + 1] == 0x81)) return 0; /* U+2000..U+207F */
    if (c == 0xE3 && p[i + 1] == 0x80) return 0;                  /* CJK punctuation */
    if (c == 0xF0 && p[i + 1] == 0x9F) return 0;                  /* emoji */
    return n;
}

/* Separator bytes to skip at p[i] (a whole UTF-8 sequence when it is one). */
static size_t separator_len(const unsigned char *p, size_t i, size_t len) {
    if (p[i] < 0x80) return 1;
    size_t n = utf8_seq_len(p + i, len - i);
    return n ? n : 1;
}

static void push_token(ltokens *tk, const char *w, size_t n, size_t src, size_t src_end, int brk) {
    if (tk->alen + n + 1 > tk->acap) {
        size_t need = tk->alen + n + 1;
        size_t cap = tk->acap ? tk->acap : 256;
        while (cap < need) cap *= 2;
        tk->arena = xrealloc(tk->arena, cap);
        tk->acap = cap;
    }
    XGROW(tk->t, tk->cap, tk->n + 1);
    ltok *t = &tk->t[tk->n++];
    t->off = (uint32_t)tk->alen;
    t->len = (uint32_t)n;
    t->src = (uint32_t)src;
    t->src_end = (uint32_t)src_end;
    t->brk = (uint32_t)brk;
    memcpy(tk->arena + tk->alen, w, n);
    tk->arena[tk->alen + n] = '\0';
    tk->alen += n + 1;
}

static int word_is(const char *w, size_t n, const char *lit) {
    return strlen(lit) == n && memcmp(w, lit, n) == 0;
}

/* "doesnt"/"dont"/... written without the apostrophe: the auxiliary, or NULL. */
static const char *bare_negation_base(const char *w, size_t n) {
    if (word_is(w, n, "cannot") || word_is(w, n, "cant")) return "can";
    if (word_is(w, n, "wont")) return "will";
    if (word_is(w, n, "aint")) return "is";
    static const char *const aux[] = {"do",    "does",   "did",    "is",   "are",
                                      "was",   "were",   "could",  "would", "should",
                                      "have",  "has",    "had",    "need", "must", NULL};
    if (n < 4 || w[n - 2] != 'n' || w[n - 1] != 't') return NULL;
    for (size_t i = 0; aux[i]; i++)
        if (word_is(w, n - 2, aux[i])) return aux[i];
    return NULL;
}

/* Emits one scanned word, expanding contractions. apos = index of the in-word
 * apostrophe in w, or n when there is none. */
static void emit_word(ltokens *tk, const char *w, size_t n, size_t apos, size_t src,
                      size_t src_end, int brk) {
    if (apos < n) {
        const char *r = w + apos;
        size_t rn = n - apos;
        if (word_is(r, rn, "t") && apos >= 2 && w[apos - 1] == 'n') {
            if (word_is(w, apos, "can")) push_token(tk, "can", 3, src, src_end, brk);
            else if (word_is(w, apos, "won")) push_token(tk, "will", 4, src, src_end, brk);
            else if (word_is(w, apos, "ain")) push_token(tk, "is", 2, src, src_end, brk);
            else push_token(tk, w, apos - 1, src, src_end, brk);
            push_token(tk, "not", 3, src, src_end, 0);
            return;
        }
        if (word_is(r, rn, "s") || word_is(r, rn, "m") || word_is(r, rn, "re") ||
            word_is(r, rn, "ve") || word_is(r, rn, "ll") || word_is(r, rn, "d")) {
            push_token(tk, w, apos, src, src_end, brk);
            return;
        }
        char joined[LT_MAX_TOKEN + 1];
        memcpy(joined, w, apos);
        memcpy(joined + apos, r, rn);
        push_token(tk, joined, n, src, src_end, brk);
        return;
    }
    const char *base = bare_negation_base(w, n);
    if (base) {
        push_token(tk, base, strlen(base), src, src_end, brk);
        push_token(tk, "not", 3, src, src_end, 0);
        return;
    }
    push_token(tk, w, n, src, src_end, brk);
}

void lt_tokenize(ltokens *tk, const char *text, size_t len) {
    if (!text) return;
    const unsigned char *p = (const unsigned char *)text;
    char w[LT_MAX_TOKEN + 1];
    size_t i = 0;
    int brk = 0;
    while (i < len) {
        if (!word_char_len(p, i, len)) {
            unsigned char c = p[i];
            int next_space = i + 1 >= len || p[i + 1] == ' ' || p[i + 1] == '\n' || p[i + 1] == '\t' ||
                             p[i + 1] == '\r';
            /* "smart.bio" and "10:30" are not boundaries; ". " and ": " are */
            if (c == '!' || c == '?' || c == ';' || c == '\n' || ((c == '.' || c == ':') && next_space))
                brk = 1;
            i += separator_len(p, i, len);
            continue;
        }
        size_t start = i, n = 0, apos = SIZE_MAX;
        int too_long = 0;
        while (i < len) {
            size_t cl = word_char_len(p, i, len);
            if (cl) {
                if (n + cl > LT_MAX_TOKEN) too_long = 1;
                for (size_t k = 0; k < cl && !too_long; k++) {
                    unsigned char c = p[i + k];
                    w[n++] = (char)((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
                }
                i += cl;
                continue;
            }
            size_t al = apostrophe_len(p, i, len);
            if (al && apos == SIZE_MAX && i + al < len && word_char_len(p, i + al, len)) {
                apos = n;
                i += al;
                continue;
            }
            break;
        }
        if (too_long) continue; /* base64, hashes, long URLs: noise */
        emit_word(tk, w, n, apos == SIZE_MAX ? n : apos, start, i, brk);
        brk = 0;
    }
}

void lt_clear(ltokens *tk) {
    tk->n = 0;
    tk->alen = 0;
}

void lt_free(ltokens *tk) {
    free(tk->arena);
    free(tk->t);
    memset(tk, 0, sizeof *tk);
}

/* ============================================================ stemmer */

static int ends_with(const char *w, size_t n, const char *suf) {
    size_t k = strlen(suf);
    return n >= k && memcmp(w + n - k, suf, k) == 0;
}

size_t lt_stem(const char *w, size_t n, char out[LT_MAX_TOKEN + 1]) {
    if (n > LT_MAX_TOKEN) n = LT_MAX_TOKEN;
    memcpy(out, w, n);
    out[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (!(out[i] >= 'a' && out[i] <= 'z')) return n; /* digits, non-ASCII: as is */
    /* plural: "replies"/"calories" -> "repli"/"calori" (see the final y below) */
    if (n > 4 && ends_with(out, n, "ies")) {
        n -= 2;
    } else if (n > 4 && ends_with(out, n, "sses")) {
        n -= 2;
    } else if (n > 3 && out[n - 1] == 's' && out[n - 2] != 's' && out[n - 2] != 'u' &&
               out[n - 2] != 'i') {
        n--;
    }
    /* -ing / -ed, then a doubled final consonant (stopped -> stop, getting -> get) */
    int stripped = 0;
    if (n > 5 && ends_with(out, n, "ing")) {
        n -= 3;
        stripped = 1;
    } else if (n > 4 && ends_with(out, n, "ied")) {
        n -= 2; /* emptied -> empti */
        stripped = 2;
    } else if (n > 4 && ends_with(out, n, "ed")) {
        n -= 2;
        stripped = 1;
    }
    if (stripped == 1) {
        if (n >= 3 && out[n - 1] == out[n - 2] && strchr("bfgmnprt", out[n - 1])) n--;
    } else if (!stripped && n >= 4 && out[n - 1] == 'e' && out[n - 2] != 'e') {
        n--; /* schedule -> schedul, so it meets scheduled/scheduling */
    }
    /* final y -> i so "reply" meets "replies" and "play" meets "played" */
    if (n >= 4 && out[n - 1] == 'y') out[n - 1] = 'i';
    out[n] = '\0';
    return n;
}

/* ============================================================ stop words */

/* English function words plus generic support chatter. Negations are deliberately
 * absent ("not posting" must survive). Product words never belong here. */
static const char *const STOP_WORDS[] = {
    "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and",
    "any", "anyone", "anything", "are", "as", "at", "be", "because", "been", "before",
    "being", "below", "between", "both", "but", "by", "can", "could", "did", "do", "does",
    "doing", "done", "during", "each", "either", "else", "etc", "even", "ever", "every",
    "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here",
    "hers", "herself", "him", "himself", "his", "how", "i", "id", "if", "ill", "im", "in",
    "into", "is", "it", "its", "itself", "ive", "just", "lets", "may", "me", "might",
    "more", "most", "much", "must", "my", "myself", "of", "on", "once", "only", "or",
    "other", "our", "ours", "ourselves", "own", "per", "quite", "rather", "same", "shall",
    "she", "should", "so", "some", "someone", "something", "such", "than", "that", "thats",
    "the", "their", "theirs", "them", "themselves", "then", "there", "theres", "these",
    "they", "this", "those", "though", "through", "to", "too", "under", "until", "upon",
    "us", "very", "via", "was", "we", "were", "what", "whats", "when", "where", "whether",
    "which", "while", "who", "whom", "why", "will", "with", "within", "would", "you",
    "youre", "youve", "your", "yours", "yourself", "yourselves", "get", "gets", "got",
    "getting", "really", "actually", "already", "still", "maybe", "perhaps", "currently",
    "like", "want", "wanted", "wants", "need", "needs", "needed", "know", "let", "see",
    "seems", "seem", "way", "thing", "things", "try", "tried", "trying", "able",
    /* support chatter */
    "hi", "hello", "hey", "dear", "thanks", "thank", "thx", "ty", "please", "pls", "plz",
    "help", "helps", "helping", "regards", "best", "cheers", "sincerely", "kind", "kindly",
    "team", "support", "customer", "appreciate", "appreciated", "sorry", "ok", "okay",
    "yes", "yeah", "sure", "awesome", "hope", "hoping", "wondering", "today", "morning",
    "afternoon", "evening", "asap", "question", "questions", "hopefully", "guys", "anyway",
    NULL};

void llex_init(llex *lx) {
    memset(lx, 0, sizeof *lx);
    for (size_t i = 0; STOP_WORDS[i]; i++) strmap_put(&lx->stop, STOP_WORDS[i], (void *)1);
}

void llex_free(llex *lx) { strmap_free(&lx->stop, NULL); }

int llex_is_stop(const llex *lx, const char *w) { return strmap_get(&lx->stop, w) != NULL; }

/* ============================================================ phrase sets */

#define LP_AMBIGUOUS ((void *)(uintptr_t)UINTPTR_MAX)
#define LP_MEMO_MAX 200000 /* distinct text tokens remembered by a fuzzy set */
#define LP_FUZZY_MIN 5     /* typo tolerance only for words this long */

void lp_init(lphrases *s, int drop_stop, int fuzzy) {
    memset(s, 0, sizeof *s);
    s->drop_stop = drop_stop;
    s->fuzzy = fuzzy;
}

void lp_free(lphrases *s) {
    strmap_free(&s->words, NULL);
    strmap_free(&s->del, NULL);
    strmap_free(&s->memo, NULL);
    for (size_t i = 0; i < s->nwords; i++) free(s->wstr[i]);
    free(s->wstr);
    free(s->tok);
    free(s->start);
    free(s->len);
    free(s->tag);
    free(s->first_off);
    free(s->first_list);
    memset(s, 0, sizeof *s);
}

static int all_lower_ascii(const char *w) {
    for (; *w; w++)
        if (!(*w >= 'a' && *w <= 'z') && !(*w >= '0' && *w <= '9')) return 0;
    return 1;
}

/* Registers the one-deletion variants of a dictionary key for typo tolerance. */
static void add_deletions(lphrases *s, const char *key, int32_t id) {
    size_t n = strlen(key);
    if (n < LP_FUZZY_MIN || !all_lower_ascii(key)) return;
    char v[LT_MAX_TOKEN + 1];
    for (size_t k = 0; k < n; k++) {
        memcpy(v, key, k);
        memcpy(v + k, key + k + 1, n - k - 1);
        v[n - 1] = '\0';
        void *old = strmap_get(&s->del, v);
        void *mine = (void *)(uintptr_t)(id + 1);
        if (!old) strmap_put(&s->del, v, mine);
        else if (old != mine) strmap_put(&s->del, v, LP_AMBIGUOUS);
    }
}

static int32_t exact_id(const lphrases *s, const char *key) {
    void *v = strmap_get(&s->words, key);
    return v ? (int32_t)((uintptr_t)v - 1) : -1;
}

static int32_t del_id(const lphrases *s, const char *key) {
    void *v = strmap_get(&s->del, key);
    return (v && v != LP_AMBIGUOUS) ? (int32_t)((uintptr_t)v - 1) : -1;
}

int32_t lp_word(lphrases *s, const char *raw, int insert) {
    char stem[LT_MAX_TOKEN + 1];
    lt_stem(raw, strlen(raw), stem);
    int32_t id = exact_id(s, stem);
    if (id < 0) id = exact_id(s, raw);
    if (id >= 0 || !insert) return id;
    id = (int32_t)s->nwords++;
    s->wstr = xrealloc(s->wstr, s->nwords * sizeof *s->wstr);
    s->wstr[id] = xstrdup(stem);
    strmap_put(&s->words, stem, (void *)(uintptr_t)(id + 1));
    if (!strmap_has(&s->words, raw)) strmap_put(&s->words, raw, (void *)(uintptr_t)(id + 1));
    if (s->fuzzy) {
        add_deletions(s, stem, id);
        add_deletions(s, raw, id);
    }
    return id;
}

long lp_add(lphrases *s, const llex *lx, const char *text, int32_t tag) {
    ltokens tk = {0};
    lt_tokenize(&tk, text, strlen(text));
    size_t begin = s->ntok;
    for (size_t i = 0; i < tk.n; i++) {
        const char *w = lt_word(&tk, i);
        if (s->drop_stop && llex_is_stop(lx, w)) continue;
        int32_t id = lp_word(s, w, 1);
        XGROW(s->tok, s->tokcap, s->ntok + 1);
        s->tok[s->ntok++] = (uint32_t)id;
    }
    lt_free(&tk);
    size_t plen = s->ntok - begin;
    if (plen == 0 || plen > UINT16_MAX) {
        s->ntok = begin;
        return -1;
    }
    if (s->n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        s->start = xrealloc(s->start, cap * sizeof *s->start);
        s->len = xrealloc(s->len, cap * sizeof *s->len);
        s->tag = xrealloc(s->tag, cap * sizeof *s->tag);
        s->cap = cap;
    }
    s->start[s->n] = (uint32_t)begin;
    s->len[s->n] = (uint16_t)plen;
    s->tag[s->n] = tag;
    return (long)s->n++;
}

void lp_compile(lphrases *s) {
    free(s->first_off);
    free(s->first_list);
    s->first_off = xcalloc(s->nwords + 1, sizeof *s->first_off);
    s->first_list = xmalloc((s->n ? s->n : 1) * sizeof *s->first_list);
    for (size_t p = 0; p < s->n; p++) s->first_off[s->tok[s->start[p]] + 1]++;
    for (size_t w = 0; w < s->nwords; w++) s->first_off[w + 1] += s->first_off[w];
    uint32_t *fill = xmalloc((s->nwords + 1) * sizeof *fill);
    memcpy(fill, s->first_off, (s->nwords + 1) * sizeof *fill);
    for (size_t p = 0; p < s->n; p++) s->first_list[fill[s->tok[s->start[p]]]++] = (uint32_t)p;
    free(fill);
}

/* One edit away from a dictionary key (see lphrases): the text word is a deletion of
 * a key, a key is a deletion of the word, or both share a deletion. When several
 * words qualify ("itmes": items or times), one with the same first letter wins:
 * typos rarely hit the first letter. */
#define FUZZY_CANDIDATES 8
static int32_t fuzzy_id(const lphrases *s, const char *w) {
    size_t n = strlen(w);
    if (n < LP_FUZZY_MIN || !all_lower_ascii(w)) return -1;
    int32_t cand[FUZZY_CANDIDATES];
    size_t nc = 0;
    int32_t id = del_id(s, w);
    if (id >= 0) cand[nc++] = id;
    char v[LT_MAX_TOKEN + 1];
    for (size_t k = 0; k < n && nc + 2 <= FUZZY_CANDIDATES; k++) {
        memcpy(v, w, k);
        memcpy(v + k, w + k + 1, n - k - 1);
        v[n - 1] = '\0';
        if ((id = exact_id(s, v)) >= 0) cand[nc++] = id;
        if ((id = del_id(s, v)) >= 0) cand[nc++] = id;
    }
    for (size_t i = 0; i < nc; i++)
        if (s->wstr[cand[i]][0] == w[0]) return cand[i];
    return nc ? cand[0] : -1;
}

/* Dictionary id of a text token (-1 when unknown); *fz = 1 when by typo tolerance. */
static int32_t lookup_token(lphrases *s, const char *w, size_t n, uint8_t *fz) {
    *fz = 0;
    if (s->fuzzy) {
        void *m = strmap_get(&s->memo, w);
        if (m) {
            uintptr_t code = (uintptr_t)m;
            if (code == 1) return -1;
            *fz = (uint8_t)((code - 2) & 1);
            return (int32_t)((code - 2) >> 1);
        }
    }
    char stem[LT_MAX_TOKEN + 1];
    size_t sn = lt_stem(w, n, stem);
    int32_t id = exact_id(s, stem);
    if (id < 0) id = exact_id(s, w);
    if (id < 0 && s->fuzzy) {
        id = fuzzy_id(s, w);
        if (id < 0 && sn >= LP_FUZZY_MIN) id = fuzzy_id(s, stem);
        if (id >= 0) *fz = 1;
    }
    if (s->fuzzy && s->memo.count < LP_MEMO_MAX) {
        uintptr_t code = id < 0 ? 1 : 2 + ((uintptr_t)id << 1) + *fz;
        strmap_put(&s->memo, w, (void *)code);
    }
    return id;
}

void lpseq_free(lpseq *q) {
    free(q->id);
    free(q->tok);
    free(q->fuzzy);
    memset(q, 0, sizeof *q);
}

void lp_map(lphrases *s, const llex *lx, const ltokens *tk, lpseq *out) {
    size_t need = 2 * tk->n; /* every token may be preceded by a break */
    if (need > out->cap) {
        out->id = xrealloc(out->id, need * sizeof *out->id);
        out->tok = xrealloc(out->tok, need * sizeof *out->tok);
        out->fuzzy = xrealloc(out->fuzzy, need * sizeof *out->fuzzy);
        out->cap = need;
    }
    out->n = 0;
    int brk = 0;
    for (size_t i = 0; i < tk->n; i++) {
        const char *w = lt_word(tk, i);
        brk |= tk->t[i].brk != 0;
        if (s->drop_stop && llex_is_stop(lx, w)) continue;
        if (brk && out->n > 0 && out->id[out->n - 1] != LP_BREAK) {
            out->id[out->n] = LP_BREAK;
            out->tok[out->n] = (uint32_t)i;
            out->fuzzy[out->n] = 0;
            out->n++;
        }
        brk = 0;
        uint8_t fz;
        out->id[out->n] = lookup_token(s, w, tk->t[i].len, &fz);
        out->tok[out->n] = (uint32_t)i;
        out->fuzzy[out->n] = fz;
        out->n++;
    }
}

void lp_match(const lphrases *s, const lpseq *q, size_t max_gaps, lp_hit_fn fn, void *ctx) {
    if (!s->first_off) return;
    for (size_t i = 0; i < q->n; i++) {
        int32_t id = q->id[i];
        if (id < 0 || (size_t)id >= s->nwords) continue;
        for (uint32_t k = s->first_off[id]; k < s->first_off[id + 1]; k++) {
            uint32_t p = s->first_list[k];
            size_t plen = s->len[p];
            const uint32_t *pt = s->tok + s->start[p];
            size_t j = 1, pos = i + 1, gaps = 0;
            while (j < plen) {
                if (pos < q->n && q->id[pos] == (int32_t)pt[j]) {
                    j++;
                    pos++;
                } else if (gaps < max_gaps && pos + 1 < q->n && q->id[pos] != LP_BREAK &&
                           q->id[pos + 1] == (int32_t)pt[j]) {
                    gaps++; /* one extra word inside the phrase: "blog posts not showing" */
                    j++;
                    pos += 2;
                } else {
                    break;
                }
            }
            if (j == plen) fn(ctx, p, i, pos - 1, gaps);
        }
    }
}

/* ============================================================ text helpers */

static int is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

size_t lt_sentences(const char *text, size_t len, lspan *out, size_t max) {
    size_t n = 0, i = 0;
    while (i < len && n < max) {
        while (i < len && is_space((unsigned char)text[i])) i++;
        if (i >= len) break;
        size_t a = i;
        while (i < len) {
            char c = text[i];
            if (c == '\n') break;
            if (c == '.' || c == '!' || c == '?') {
                size_t j = i + 1;
                while (j < len && (text[j] == '.' || text[j] == '!' || text[j] == '?')) j++;
                if (j >= len || is_space((unsigned char)text[j])) {
                    i = j;
                    break;
                }
                i = j;
                continue;
            }
            i++;
        }
        size_t b = i;
        while (b > a && is_space((unsigned char)text[b - 1])) b--;
        if (b > a) out[n++] = (lspan){a, b};
    }
    return n;
}

long lt_span_of(const lspan *sp, size_t n, size_t off) {
    for (size_t i = 0; i < n; i++)
        if (off >= sp[i].a && off < sp[i].b) return (long)i;
    return -1;
}

static void trim_trailing(buf_t *b, const char *chars) {
    while (b->len > 0 && (strchr(chars, b->data[b->len - 1]) || is_space((unsigned char)b->data[b->len - 1])))
        buf_truncate(b, b->len - 1);
}

/* Appends s[0..len) to out with whitespace runs collapsed, up to max_words words and
 * max_bytes bytes. Returns 1 when something was left out. */
static int append_words(buf_t *out, const char *s, size_t len, size_t max_words,
                        size_t max_bytes) {
    size_t i = 0, words = 0;
    while (i < len) {
        while (i < len && is_space((unsigned char)s[i])) i++;
        if (i >= len) return 0;
        size_t a = i;
        while (i < len && !is_space((unsigned char)s[i])) i++;
        size_t wl = i - a;
        if (words >= max_words) return 1;
        size_t need = wl + (out->len ? 1 : 0);
        if (out->len + need > max_bytes) {
            if (out->len == 0) { /* a single word longer than the budget */
                size_t cut = utf8_cut(s + a, wl, max_bytes);
                buf_append(out, s + a, cut);
            }
            return 1;
        }
        if (out->len) buf_putc(out, ' ');
        buf_append(out, s + a, wl);
        words++;
    }
    return 0;
}

char *lt_cut_words(const char *s, size_t len, size_t max_words, size_t max_bytes) {
    buf_t b = BUF_INIT;
    if (s) append_words(&b, s, len, max_words, max_bytes);
    trim_trailing(&b, ",;:-");
    return buf_detach(&b);
}

char *lt_cut_ellipsis(const char *s, size_t len, size_t max_bytes, const char *ellipsis) {
    buf_t b = BUF_INIT;
    if (!s) return buf_detach(&b);
    size_t el = strlen(ellipsis);
    if (!append_words(&b, s, len, SIZE_MAX, max_bytes)) return buf_detach(&b);
    buf_reset(&b);
    append_words(&b, s, len, SIZE_MAX, max_bytes > el ? max_bytes - el : 0);
    trim_trailing(&b, ",;:-.");
    buf_puts(&b, ellipsis);
    return buf_detach(&b);
}

static int blank(const char *s) {
    if (!s) return 1;
    for (; *s; s++)
        if (!is_space((unsigned char)*s)) return 0;
    return 1;
}

/* The digest separator written by build_customer_digest. */
#define DIGEST_SEP "\n\n---\n\n"

void lt_opening_text(const llm_input *in, buf_t *out) {
    const char *b = blank(in->body) ? NULL : in->body;
    const char *d = blank(in->digest) ? NULL : in->digest;
    if (!b && !d) return;
    if (!d) { buf_puts(out, b); return; }
    if (!b) { buf_puts(out, d); return; }
    if (strstr(d, b)) { buf_puts(out, d); return; }
    if (strstr(b, d)) { buf_puts(out, b); return; }
    /* The digest usually opens with a prefix of the body, then "---" and the most
     * specific later customer message: keep the whole body plus that message. */
    size_t bl = strlen(b), probe = bl < 200 ? bl : 200;
    buf_puts(out, b);
    if (strncmp(d, b, probe) == 0) {
        const char *sep = strstr(d, DIGEST_SEP);
        if (sep) {
            buf_puts(out, "\n\n");
            buf_puts(out, sep + strlen(DIGEST_SEP));
        }
        return;
    }
    buf_puts(out, "\n\n");
    buf_puts(out, d);
}

enum speaker { SPK_NONE, SPK_CUSTOMER, SPK_SUPPORT, SPK_OTHER };

/* Calls fn for each speaker segment of a "[Customer]: ..."/"[Support]: ..." transcript
 * (segments joined by blank lines; a segment without a tag continues the previous). */
static void for_each_turn(const char *tr, void (*fn)(void *, enum speaker, const char *, size_t),
                          void *ctx) {
    if (!tr) return;
    enum speaker cur = SPK_NONE;
    const char *p = tr;
    while (*p) {
        const char *e = strstr(p, "\n\n");
        size_t n = e ? (size_t)(e - p) : strlen(p);
        const char *body = p;
        if (n > 0 && p[0] == '[') {
            const char *close = memchr(p, ']', n);
            if (close && (size_t)(close - p) + 1 < n && close[1] == ':') {
                size_t tl = (size_t)(close - p - 1);
                if (tl == 8 && strncmp(p + 1, "Customer", 8) == 0) cur = SPK_CUSTOMER;
                else if (tl >= 7 && strncmp(p + 1, "Support", 7) == 0) cur = SPK_SUPPORT;
                else cur = SPK_OTHER;
                body = close + 2;
                while (body < p + n && *body == ' ') body++;
            }
        }
        size_t bl = (size_t)(p + n - body);
        if (bl > 0) fn(ctx, cur, body, bl);
        if (!e) break;
        p = e + 2;
    }
}

typedef struct turn_ctx {
    buf_t *out;
    const char *already; /* text the turns are checked against (may be NULL) */
    enum speaker want;
} turn_ctx;

/* Customer text beyond this is not needed by any task (themes read 20 000 bytes). */
#define TURNS_MAX_BYTES 24000

static void append_turn(void *vctx, enum speaker who, const char *s, size_t n) {
    turn_ctx *t = vctx;
    if (who != t->want || t->out->len >= TURNS_MAX_BYTES) return;
    /* Skip turns the opening text already holds (the opening message itself, the
     * digest's best message); comparing against the opening only keeps this linear. */
    if (t->already && *t->already) {
        char *seg = xstrndup(s, n);
        int dup = strstr(t->already, seg) != NULL;
        free(seg);
        if (dup) return;
    }
    if (t->out->len) buf_puts(t->out, "\n\n");
    buf_append(t->out, s, n);
}

void lt_customer_text(const llm_input *in, buf_t *out) {
    buf_t opening = BUF_INIT;
    lt_opening_text(in, &opening);
    if (!blank(in->subject) && !(opening.data && strstr(opening.data, in->subject))) {
        buf_puts(out, in->subject);
        buf_puts(out, "\n\n");
    }
    buf_append(out, buf_cstr(&opening), opening.len);
    turn_ctx t = {out, buf_cstr(&opening), SPK_CUSTOMER};
    for_each_turn(in->transcript, append_turn, &t);
    buf_free(&opening);
}

/* Appends support_text without its "[Support i]: " tags (they are not reply text). */
static void append_untagged(buf_t *out, const char *s) {
    while (*s) {
        if (s[0] == '[' && strncmp(s, "[Support", 8) == 0) {
            const char *close = strstr(s, "]: ");
            const char *nl = strchr(s, '\n');
            if (close && (!nl || close < nl)) s = close + 3;
        }
        const char *e = strstr(s, "\n\n");
        size_t n = e ? (size_t)(e - s) + 2 : strlen(s);
        buf_append(out, s, n);
        s += n;
    }
}

void lt_support_text(const llm_input *in, buf_t *out) {
    if (!blank(in->support_text)) {
        append_untagged(out, in->support_text);
        return;
    }
    turn_ctx t = {out, NULL, SPK_SUPPORT};
    for_each_turn(in->transcript, append_turn, &t);
}

/* ------------------------------------------------------------ error quotes */

static int is_word_byte(unsigned char c) { return is_ascii_alnum(c) || c == '_' || c == '-'; }

static int ci_starts(const char *s, size_t n, const char *lit) {
    size_t k = strlen(lit);
    if (n < k) return 0;
    for (size_t i = 0; i < k; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != lit[i]) return 0;
    }
    return 1;
}

static int ci_contains(const char *s, size_t n, const char *lit) {
    size_t k = strlen(lit);
    for (size_t i = 0; i + k <= n; i++)
        if (ci_starts(s + i, n - i, lit)) return 1;
    return 0;
}

/* Error-code shaped word: E404, ERR_X / err-x, X_ERROR, NotFoundError, SomeException. */
static int is_error_code(const char *w, size_t n) {
    if (n >= 4 && n <= 6 && w[0] == 'E') {
        size_t d = 1;
        while (d < n && w[d] >= '0' && w[d] <= '9') d++;
        if (d == n) return 1;
    }
    if (n >= 4 && ci_starts(w, n, "err") && (w[3] == '_' || w[3] == '-')) return 1;
    if (n >= 4 && (w[0] == 'E' && w[1] == 'R' && w[2] == 'R') && w[3] >= 'A' && w[3] <= 'Z')
        return 1;
    if (n > 6 && ci_contains(w, n, "_error")) return 1;
    if (n > 5 && (ends_with(w, n, "Error") || ends_with(w, n, "Exception")) && w[0] >= 'A' &&
        w[0] <= 'Z')
        return 1;
    return 0;
}

static int overlaps(const lspan *sp, size_t n, size_t a, size_t b) {
    for (size_t i = 0; i < n; i++)
        if (a < sp[i].b && sp[i].a < b) return 1;
    return 0;
}

static int span_cmp(const void *x, const void *y) {
    const lspan *a = x, *b = y;
    return a->a < b->a ? -1 : a->a > b->a;
}

/* Finds the closing quote for an opening one at s[i] (o bytes long). */
static size_t find_close(const char *s, size_t len, size_t i, size_t o, int curly, int single) {
    for (size_t j = i + o; j < len && j - (i + o) <= 200; j++) {
        if (s[j] == '\n') return 0;
        if (!curly && !single && s[j] == '"') return j;
        if (single && s[j] == '\'') {
            if (j + 1 >= len || !is_ascii_alnum((unsigned char)s[j + 1])) return j;
            return 0; /* an apostrophe inside a word: not a quote */
        }
        if (curly && j + 2 < len && (unsigned char)s[j] == 0xE2 && (unsigned char)s[j + 1] == 0x80 &&
            (unsigned char)s[j + 2] == 0x9D)
            return j;
    }
    return 0;
}

/* Quoted text of 5..200 bytes: "...", “...”, or '...' opened after a space. */
static size_t quoted_spans(const char *s, size_t len, lspan *out, size_t n, size_t max) {
    for (size_t i = 0; i < len && n < max; i++) {
        int curly = i + 2 < len && (unsigned char)s[i] == 0xE2 && (unsigned char)s[i + 1] == 0x80 &&
                    (unsigned char)s[i + 2] == 0x9C;
        int single = s[i] == '\'' && (i == 0 || is_space((unsigned char)s[i - 1]) || s[i - 1] == '(');
        if (s[i] != '"' && !curly && !single) continue;
        size_t o = curly ? 3 : 1;
        size_t j = find_close(s, len, i, o, curly, single);
        if (!j) continue;
        size_t inner = j - (i + o);
        if (inner >= 5 && inner <= 200) {
            size_t close = curly ? 3 : 1;
            out[n++] = (lspan){i, j + close};
            i = j + close - 1;
        }
    }
    return n;
}

/* End of "error 404" / "error code: 500" starting at the word "error" ending at i,
 * or 0 when no 3-5 digit code follows. */
static size_t error_number_end(const char *s, size_t len, size_t i) {
    size_t j = i;
    while (j < len && (s[j] == ' ' || s[j] == ':' || s[j] == '#')) j++;
    if (j + 4 < len && ci_starts(s + j, len - j, "code")) {
        j += 4;
        while (j < len && (s[j] == ' ' || s[j] == ':' || s[j] == '#')) j++;
    }
    size_t d = j;
    while (d < len && s[d] >= '0' && s[d] <= '9') d++;
    if (d - j < 3 || d - j > 5 || (d < len && is_word_byte((unsigned char)s[d]))) return 0;
    return d;
}

/* Error-code words, and "error <number>", outside the spans already found. */
static size_t code_spans(const char *s, size_t len, lspan *out, size_t n, size_t max) {
    size_t i = 0;
    while (i < len && n < max) {
        if (!is_word_byte((unsigned char)s[i])) {
            i++;
            continue;
        }
        size_t a = i;
        while (i < len && is_word_byte((unsigned char)s[i])) i++;
        size_t wl = i - a;
        if (overlaps(out, n, a, i)) continue;
        if (is_error_code(s + a, wl)) {
            out[n++] = (lspan){a, i};
        } else if (wl == 5 && ci_starts(s + a, wl, "error")) {
            size_t d = error_number_end(s, len, i);
            if (d && !overlaps(out, n, a, d)) {
                out[n++] = (lspan){a, d};
                i = d;
            }
        }
    }
    return n;
}

size_t lt_error_spans(const char *s, size_t len, lspan *out, size_t max) {
    size_t n = quoted_spans(s, len, out, 0, max);
    n = code_spans(s, len, out, n, max);
    qsort(out, n, sizeof *out, span_cmp);
    return n;
}

size_t lt_content_words(const llex *lx, const ltokens *tk, size_t from, size_t to) {
    size_t n = 0;
    for (size_t i = from; i < to && i < tk->n; i++) {
        const char *w = lt_word(tk, i);
        if (tk->t[i].len < 2 || llex_is_stop(lx, w)) continue;
        int letter = 0;
        for (const char *p = w; *p && !letter; p++) letter = !(*p >= '0' && *p <= '9');
        n += letter;
    }
    return n;
}
