/* Offline theme extraction: matches a conversation against the vocabulary's active
 * themes and, when none fits, proposes a new signature from the conversation's most
 * salient words. Works with any vocabulary of the theme_vocabulary.json shape:
 * every weight is derived from the vocabulary itself (a word shared by many themes
 * counts less), nothing names a product.
 *
 * Score of a theme for a conversation (customer side, stemmed, stop words removed,
 * typo-tolerant for words of >= 5 letters; U = ln(1 + number of themes), a word's
 * weight w = ln(1 + themes / themes using the word)):
 *   keyword phrases   per phrase found: the sum of its words' w (x1.25 for multi-word
 *                     phrases, x0.8 through a typo, x0.85 with one extra word inside,
 *                     x0.4 when only the support replies say it); the best phrase
 *                     counts fully, the others half
 * + word overlap      0.35 x sum of w over the conversation's distinct words that the
 *                     theme uses anywhere, damped for themes with many words
 * + example intent    0.6 x coverage^2 x (sum of the intent's w), best intent, where
 *                     coverage is the share of the intent's weight present
 * + URL hint          0.35 U when the source URL points at the theme.
 * The best theme *with evidence* (a keyword phrase with an exactly written word or of
 * several words, or an intent at least half covered) is claimed when it scores
 * >= 0.8 U; confidence comes from the score and the margin over the runner-up. */
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "llm/local_internal.h"
#include "text/signature.h"
#include "text/text.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/utf8.h"

#define THEME_TEXT_MAX 20000  /* bytes of customer text scored */
#define SUPPORT_TEXT_MAX 8000
#define KW_MULTI_BONUS 1.25f
#define FUZZY_FACTOR 0.8f
#define GAP_FACTOR 0.85f
#define KW_EXTRA_FACTOR 0.5f
#define SUPPORT_FACTOR 0.4f
#define OVERLAP_FACTOR 0.35f
#define INTENT_FACTOR 0.6f
#define URL_BONUS_U 0.35f
#define MIN_SCORE_U 0.8f      /* below this (in units of U) no theme is claimed */
#define HIGH_SCORE_U 1.6f
#define HIGH_MARGIN_U 0.5f
#define MEDIUM_SCORE_U 1.1f
#define MEDIUM_MARGIN_U 0.15f
#define WEAK_AREA_U 0.45f     /* a sub-threshold theme still lends its area to a new signature */
#define NEW_SIG_MAX 60
#define NEW_SIG_TOKENS 400 /* customer tokens considered for a new signature */

typedef struct th_theme {
    const vocab_theme *vt;
    float damp;          /* overlap damping for themes with many words */
} th_theme;

typedef struct ids {
    int32_t *v;
    size_t n, cap;
} ids;

struct ltheme {
    const vocab *v;
    lphrases dict;       /* keywords as phrases (tag = theme); every theme word is in dict */
    const char **ptext;  /* keyword text per phrase */
    th_theme *themes;
    size_t nthemes;
    float unit;          /* U = ln(1 + nthemes) */
    float *idf;          /* per word id */
    float *pweight;      /* per phrase */
    uint8_t *area_word;  /* per word id: appears in a product area or component name */
    uint32_t *tt_off, *tt_list;  /* word -> themes */
    uint32_t *ti_off, *ti_list;  /* word -> intents */
    uint32_t *intent_theme;
    float *intent_total;
    size_t nintents;
    /* scratch, reset per call */
    ltokens tk;
    lpseq seq;
    uint8_t *word_seen;
    uint8_t *phrase_hit; /* 0 none, 1 customer, 2 support */
    uint32_t *phrase_pos;/* customer source offset of the first hit */
    uint8_t *kw_solid;   /* per theme: a keyword matched with at least one exact word */
    float *kw, *kw_max, *overlap, *intent_best, *intent_cov, *url, *intent_acc;
};

/* ------------------------------------------------------------ building */

static void ids_add_unique(ids *s, int32_t id) {
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i] == id) return;
    XGROW(s->v, s->cap, s->n + 1);
    s->v[s->n++] = id;
}

/* Adds the content words of text (underscores read as spaces) to set. */
static void collect_words(ltheme *t, const llex *lx, const char *text, ids *set) {
    if (!text) return;
    char *copy = xstrdup(text);
    for (char *p = copy; *p; p++)
        if (*p == '_') *p = ' ';
    ltokens tk = {0};
    lt_tokenize(&tk, copy, strlen(copy));
    for (size_t i = 0; i < tk.n; i++) {
        const char *w = lt_word(&tk, i);
        if (llex_is_stop(lx, w)) continue;
        ids_add_unique(set, lp_word(&t->dict, w, 1));
    }
    lt_free(&tk);
    free(copy);
}

/* CSR postings from (key, value) pairs. */
static void build_csr(size_t nkeys, const uint32_t *keys, const uint32_t *vals, size_t n,
                      uint32_t **off_out, uint32_t **list_out) {
    uint32_t *off = xcalloc(nkeys + 1, sizeof *off);
    uint32_t *list = xmalloc((n ? n : 1) * sizeof *list);
    for (size_t i = 0; i < n; i++) off[keys[i] + 1]++;
    for (size_t k = 0; k < nkeys; k++) off[k + 1] += off[k];
    uint32_t *fill = xmalloc((nkeys + 1) * sizeof *fill);
    memcpy(fill, off, (nkeys + 1) * sizeof *fill);
    for (size_t i = 0; i < n; i++) list[fill[keys[i]]++] = vals[i];
    free(fill);
    *off_out = off;
    *list_out = list;
}

/* Whether phrase p repeats an earlier phrase of the same theme word for word. */
static int same_as_earlier(const lphrases *d, size_t p) {
    /* a theme's phrases are added one after the other: look back while they last */
    for (size_t q = p; q-- > 0 && d->tag[q] == d->tag[p];) {
        if (d->len[q] != d->len[p]) continue;
        if (memcmp(d->tok + d->start[q], d->tok + d->start[p], d->len[p] * sizeof *d->tok) == 0)
            return 1;
    }
    return 0;
}

typedef struct pairs {
    uint32_t *k, *v;
    size_t n, cap;
} pairs;

static void pairs_add(pairs *p, uint32_t k, uint32_t v) {
    if (p->n + 1 > p->cap) {
        p->cap = p->cap ? p->cap * 2 : 256;
        p->k = xrealloc(p->k, p->cap * sizeof *p->k);
        p->v = xrealloc(p->v, p->cap * sizeof *p->v);
    }
    p->k[p->n] = k;
    p->v[p->n++] = v;
}

/* Temporaries while indexing a vocabulary. */
typedef struct builder {
    ids *words;        /* per theme: every word it uses */
    ids *intent_words; /* per example intent */
    size_t icap;
    ids areas;         /* words of product area and component names */
} builder;

/* The themes a conversation may be matched to: active ones, except the review queue
 * (where unmatched conversations go, never a match). */
static void select_themes(ltheme *t) {
    size_t nv = t->v ? t->v->nthemes : 0;
    t->themes = xcalloc(nv + 1, sizeof *t->themes);
    for (size_t i = 0; i < nv; i++) {
        const vocab_theme *vt = &t->v->themes[i];
        if (vt->active && !signature_is_blocked(vt->signature)) t->themes[t->nthemes++].vt = vt;
    }
}

static void index_keywords(ltheme *t, const llex *lx, size_t ti, ids *words) {
    const vocab_theme *vt = t->themes[ti].vt;
    for (size_t k = 0; k < vt->nkeywords; k++) {
        long p = lp_add(&t->dict, lx, vt->keywords[k], (int32_t)ti);
        if (p < 0) continue;
        if (same_as_earlier(&t->dict, (size_t)p)) { /* "posts not showing" twice */
            t->dict.ntok = t->dict.start[p];
            t->dict.n--;
            continue;
        }
        t->ptext = xrealloc(t->ptext, (size_t)(p + 1) * sizeof *t->ptext);
        t->ptext[p] = vt->keywords[k];
        for (uint32_t j = 0; j < t->dict.len[p]; j++)
            ids_add_unique(words, (int32_t)t->dict.tok[t->dict.start[p] + j]);
    }
}

static void index_intents(ltheme *t, const llex *lx, size_t ti, builder *b) {
    const vocab_theme *vt = t->themes[ti].vt;
    for (size_t k = 0; k < vt->nintents; k++) {
        XGROW(b->intent_words, b->icap, t->nintents + 1);
        ids *iw = &b->intent_words[t->nintents];
        memset(iw, 0, sizeof *iw);
        collect_words(t, lx, vt->intents[k], iw);
        for (size_t j = 0; j < iw->n; j++) ids_add_unique(&b->words[ti], iw->v[j]);
        t->intent_theme = xrealloc(t->intent_theme, (t->nintents + 1) * sizeof *t->intent_theme);
        t->intent_theme[t->nintents++] = (uint32_t)ti;
    }
}

static void index_theme(ltheme *t, const llex *lx, size_t ti, builder *b) {
    const vocab_theme *vt = t->themes[ti].vt;
    ids *words = &b->words[ti];
    index_keywords(t, lx, ti, words);
    collect_words(t, lx, vt->signature, words);
    collect_words(t, lx, vt->description, words);
    collect_words(t, lx, vt->product_area, words);
    collect_words(t, lx, vt->component, words);
    collect_words(t, lx, vt->product_area, &b->areas);
    collect_words(t, lx, vt->component, &b->areas);
    index_intents(t, lx, ti, b);
}

/* Word weights (how few themes use a word), overlap damping, intent totals, keyword
 * weights, and the word -> theme / word -> intent postings. */
static void compute_weights(ltheme *t, builder *b) {
    size_t nw = t->dict.nwords;
    uint32_t *df = xcalloc(nw + 1, sizeof *df);
    pairs tt = {0}, tiw = {0};
    size_t total_words = 0;
    for (size_t ti = 0; ti < t->nthemes; ti++) {
        for (size_t j = 0; j < b->words[ti].n; j++) {
            df[b->words[ti].v[j]]++;
            pairs_add(&tt, (uint32_t)b->words[ti].v[j], (uint32_t)ti);
        }
        total_words += b->words[ti].n;
    }
    t->unit = logf(1.0f + (float)(t->nthemes ? t->nthemes : 1));
    t->idf = xcalloc(nw + 1, sizeof *t->idf);
    for (size_t w = 0; w < nw; w++)
        t->idf[w] = df[w] ? logf(1.0f + (float)t->nthemes / (float)df[w]) : 0.0f;
    float avg = t->nthemes ? (float)total_words / (float)t->nthemes : 1.0f;
    for (size_t ti = 0; ti < t->nthemes; ti++) {
        float ratio = (float)b->words[ti].n / (avg > 0 ? avg : 1);
        t->themes[ti].damp = ratio > 1 ? 1.0f / sqrtf(ratio) : 1.0f;
    }
    t->intent_total = xcalloc(t->nintents + 1, sizeof *t->intent_total);
    for (size_t i = 0; i < t->nintents; i++)
        for (size_t j = 0; j < b->intent_words[i].n; j++) {
            t->intent_total[i] += t->idf[b->intent_words[i].v[j]];
            pairs_add(&tiw, (uint32_t)b->intent_words[i].v[j], (uint32_t)i);
        }
    build_csr(nw, tt.k, tt.v, tt.n, &t->tt_off, &t->tt_list);
    build_csr(nw, tiw.k, tiw.v, tiw.n, &t->ti_off, &t->ti_list);
    t->pweight = xcalloc(t->dict.n + 1, sizeof *t->pweight);
    for (size_t p = 0; p < t->dict.n; p++) {
        float w = 0;
        for (uint32_t j = 0; j < t->dict.len[p]; j++) w += t->idf[t->dict.tok[t->dict.start[p] + j]];
        t->pweight[p] = t->dict.len[p] >= 2 ? w * KW_MULTI_BONUS : w;
    }
    t->area_word = xcalloc(nw + 1, 1);
    for (size_t j = 0; j < b->areas.n; j++) t->area_word[b->areas.v[j]] = 1;
    free(df);
    free(tt.k);
    free(tt.v);
    free(tiw.k);
    free(tiw.v);
}

static void alloc_scratch(ltheme *t) {
    size_t nth = t->nthemes + 1;
    t->word_seen = xcalloc(t->dict.nwords + 1, 1);
    t->phrase_hit = xcalloc(t->dict.n + 1, 1);
    t->phrase_pos = xcalloc(t->dict.n + 1, sizeof *t->phrase_pos);
    t->kw = xcalloc(nth, sizeof *t->kw);
    t->kw_solid = xcalloc(nth, 1);
    t->kw_max = xcalloc(nth, sizeof *t->kw_max);
    t->overlap = xcalloc(nth, sizeof *t->overlap);
    t->intent_best = xcalloc(nth, sizeof *t->intent_best);
    t->intent_cov = xcalloc(nth, sizeof *t->intent_cov);
    t->url = xcalloc(nth, sizeof *t->url);
    t->intent_acc = xcalloc(t->nintents + 1, sizeof *t->intent_acc);
}

ltheme *ltheme_new(const llex *lx, const vocab *v) {
    ltheme *t = xcalloc(1, sizeof *t);
    t->v = v;
    lp_init(&t->dict, 1, 1);
    select_themes(t);
    builder b = {xcalloc(t->nthemes + 1, sizeof *b.words), NULL, 0, {0}};
    for (size_t ti = 0; ti < t->nthemes; ti++) index_theme(t, lx, ti, &b);
    lp_compile(&t->dict);
    compute_weights(t, &b);
    alloc_scratch(t);
    for (size_t ti = 0; ti < t->nthemes; ti++) free(b.words[ti].v);
    for (size_t i = 0; i < t->nintents; i++) free(b.intent_words[i].v);
    free(b.words);
    free(b.intent_words);
    free(b.areas.v);
    return t;
}

void ltheme_free(ltheme *t) {
    if (!t) return;
    lp_free(&t->dict);
    free(t->ptext);
    free(t->themes);
    free(t->idf);
    free(t->pweight);
    free(t->area_word);
    free(t->tt_off);
    free(t->tt_list);
    free(t->ti_off);
    free(t->ti_list);
    free(t->intent_theme);
    free(t->intent_total);
    lt_free(&t->tk);
    lpseq_free(&t->seq);
    free(t->word_seen);
    free(t->phrase_hit);
    free(t->phrase_pos);
    free(t->kw);
    free(t->kw_solid);
    free(t->kw_max);
    free(t->overlap);
    free(t->intent_best);
    free(t->intent_cov);
    free(t->url);
    free(t->intent_acc);
    free(t);
}

/* ------------------------------------------------------------ scoring */

typedef struct hit_ctx {
    ltheme *t;
    int support;
} hit_ctx;

static void on_keyword(void *vctx, size_t p, size_t first, size_t last, size_t gaps) {
    hit_ctx *h = vctx;
    ltheme *t = h->t;
    if (t->phrase_hit[p]) return; /* each keyword counts once */
    int fuzzy = 0, exact = 0;
    for (size_t i = first; i <= last; i++) {
        fuzzy |= t->seq.fuzzy[i];
        exact |= t->seq.id[i] >= 0 && !t->seq.fuzzy[i];
    }
    float w = t->pweight[p] * (fuzzy ? FUZZY_FACTOR : 1.0f) * (gaps ? GAP_FACTOR : 1.0f) *
              (h->support ? SUPPORT_FACTOR : 1.0f);
    size_t th = (size_t)t->dict.tag[p];
    /* a single typo-corrected word ("export" read as "expert") is not evidence on its
     * own; a whole multi-word phrase in order is */
    if ((exact || t->dict.len[p] >= 2) && !h->support) t->kw_solid[th] = 1;
    t->kw[th] += w;
    if (w > t->kw_max[th]) t->kw_max[th] = w;
    t->phrase_hit[p] = (uint8_t)(h->support ? 2 : 1);
    t->phrase_pos[p] = t->tk.t[t->seq.tok[first]].src;
}

static void reset_scores(ltheme *t) {
    size_t nth = t->nthemes + 1;
    memset(t->word_seen, 0, t->dict.nwords + 1);
    memset(t->phrase_hit, 0, t->dict.n + 1);
    memset(t->kw, 0, nth * sizeof *t->kw);
    memset(t->kw_solid, 0, nth);
    memset(t->kw_max, 0, nth * sizeof *t->kw_max);
    memset(t->overlap, 0, nth * sizeof *t->overlap);
    memset(t->intent_best, 0, nth * sizeof *t->intent_best);
    memset(t->intent_cov, 0, nth * sizeof *t->intent_cov);
    memset(t->url, 0, nth * sizeof *t->url);
    memset(t->intent_acc, 0, (t->nintents + 1) * sizeof *t->intent_acc);
}

/* Scores the customer text; leaves its tokens/sequence in t->tk / t->seq. */
static void score_customer(ltheme *t, const llex *lx, const char *text, size_t len) {
    lt_clear(&t->tk);
    lt_tokenize(&t->tk, text, len);
    lp_map(&t->dict, lx, &t->tk, &t->seq);
    hit_ctx h = {t, 0};
    lp_match(&t->dict, &t->seq, 1, on_keyword, &h);
    for (size_t i = 0; i < t->seq.n; i++) {
        int32_t id = t->seq.id[i];
        if (id < 0 || t->word_seen[id]) continue;
        t->word_seen[id] = 1;
        float w = t->idf[id] * (t->seq.fuzzy[i] ? FUZZY_FACTOR : 1.0f);
        for (uint32_t k = t->tt_off[id]; k < t->tt_off[id + 1]; k++) t->overlap[t->tt_list[k]] += w;
        for (uint32_t k = t->ti_off[id]; k < t->ti_off[id + 1]; k++) t->intent_acc[t->ti_list[k]] += w;
    }
    for (size_t i = 0; i < t->nintents; i++) {
        if (t->intent_total[i] <= 0) continue;
        float cov = t->intent_acc[i] / t->intent_total[i];
        float s = INTENT_FACTOR * cov * cov * t->intent_total[i];
        uint32_t th = t->intent_theme[i];
        if (s > t->intent_best[th]) t->intent_best[th] = s;
        if (cov > t->intent_cov[th]) t->intent_cov[th] = cov;
    }
}

/* Keyword phrases in the support replies (weaker evidence); keeps customer tokens. */
static void score_support(ltheme *t, const llex *lx, const char *text, size_t len) {
    ltokens tk = {0};
    lpseq seq = {0};
    lt_tokenize(&tk, text, len);
    lp_map(&t->dict, lx, &tk, &seq);
    /* swap in the support tokens so on_keyword reads the right sequence */
    ltokens keep_tk = t->tk;
    lpseq keep_seq = t->seq;
    t->tk = tk;
    t->seq = seq;
    hit_ctx h = {t, 1};
    lp_match(&t->dict, &t->seq, 1, on_keyword, &h);
    t->tk = keep_tk;
    t->seq = keep_seq;
    lt_free(&tk);
    lpseq_free(&seq);
}

static void score_url(ltheme *t, const char *url) {
    if (!t->v || !url || !*url) return;
    const vocab_theme *out[256];
    size_t n = vocab_url_themes(t->v, url, out, 256);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < t->nthemes; k++)
            if (t->themes[k].vt == out[i]) t->url[k] = URL_BONUS_U * t->unit;
}

/* Keyword evidence with diminishing returns: the best phrase counts fully, the others
 * half (overlapping phrases like "smart bio" / "set up smart bio" and themes with many
 * keywords would otherwise win by volume). */
static float keyword_score(const ltheme *t, size_t k) {
    return t->kw_max[k] + KW_EXTRA_FACTOR * (t->kw[k] - t->kw_max[k]);
}

static float total_score(const ltheme *t, size_t k) {
    return keyword_score(t, k) + OVERLAP_FACTOR * t->overlap[k] * t->themes[k].damp + t->intent_best[k] +
           t->url[k];
}

typedef struct verdict {
    long best;           /* theme index or -1 */
    float score, second;
    int matched;
} verdict;

/* Whether a theme has evidence beyond shared words: a keyword phrase with an exactly
 * written word, or an example intent at least half covered. */
static int has_evidence(const ltheme *t, size_t k) {
    return t->kw_solid[k] || t->intent_cov[k] >= 0.5f;
}

/* The best theme with evidence (ties: vocabulary order); second = the best score of
 * any other theme. Without evidence anywhere, best is the top scorer, unmatched. */
static verdict decide(const ltheme *t) {
    verdict v = {-1, 0, 0, 0};
    long top = -1;
    float top_score = 0;
    for (size_t k = 0; k < t->nthemes; k++) {
        float s = total_score(t, k);
        if (top < 0 || s > top_score) {
            top = (long)k;
            top_score = s;
        }
        if (has_evidence(t, k) && (v.best < 0 || s > v.score)) {
            v.best = (long)k;
            v.score = s;
        }
    }
    if (v.best < 0) {
        v.best = top;
        v.score = top_score;
        return v;
    }
    for (size_t k = 0; k < t->nthemes; k++) {
        float s = total_score(t, k);
        if ((long)k != v.best && s > v.second) v.second = s;
    }
    v.matched = v.score >= MIN_SCORE_U * t->unit;
    return v;
}

size_t ltheme_concepts(ltheme *t, const llex *lx, const char *text, size_t len,
                       lconcept *out, size_t max) {
    if (!t || !t->nthemes || !text || !len) return 0;
    reset_scores(t);
    score_customer(t, lx, text, len);
    size_t n = 0;
    float min = MIN_SCORE_U * t->unit;
    for (size_t k = 0; k < t->nthemes; k++) {
        float s = total_score(t, k);
        if (!has_evidence(t, k) || s < min) continue;
        if (n < max) {
            out[n].signature = t->themes[k].vt->signature;
            out[n].score = s / t->unit;
            n++;
        } else { /* keep the strongest max */
            size_t weakest = 0;
            for (size_t i = 1; i < max; i++)
                if (out[i].score < out[weakest].score) weakest = i;
            if (s / t->unit > out[weakest].score) {
                out[weakest].signature = t->themes[k].vt->signature;
                out[weakest].score = s / t->unit;
            }
        }
    }
    return n;
}

static const char *confidence_of(const ltheme *t, const verdict *v) {
    float u = t->unit, margin = v->score - v->second;
    if (v->score >= HIGH_SCORE_U * u && margin >= HIGH_MARGIN_U * u) return "high";
    if (v->score >= MEDIUM_SCORE_U * u && margin >= MEDIUM_MARGIN_U * u) return "medium";
    return "low";
}

/* ------------------------------------------------------------ new signatures */

/* Appends "_word" to sig unless it would pass max bytes. */
static void sig_append(buf_t *sig, const char *w, size_t max) {
    char *n = signature_normalize(w);
    if (strcmp(n, "unknown") != 0 && sig->len + 1 + strlen(n) <= max) {
        if (sig->len) buf_putc(sig, '_');
        buf_puts(sig, n);
    }
    free(n);
}

static int has_letter(const char *w) {
    for (; *w; w++)
        if (!(*w >= '0' && *w <= '9')) return 1;
    return 0;
}

/* Counts of the customer's content words, merged by stem: canon[i] is the index of
 * the first token with token i's stem (-1 for tokens that do not count), count[j] the
 * number of tokens merged into a first token j. The symptom's own words are left out. */
typedef struct word_counts {
    size_t n;
    long *canon;
    size_t *count;
} word_counts;

static void count_content_words(const ltokens *tk, const llex *lx, const char *symptom,
                                word_counts *wc) {
    /* the opening words are the most telling; bounding them keeps this linear */
    wc->n = tk->n < NEW_SIG_TOKENS ? tk->n : NEW_SIG_TOKENS;
    wc->count = xcalloc(wc->n + 1, sizeof *wc->count);
    wc->canon = xmalloc((wc->n + 1) * sizeof *wc->canon);
    strmap_t first = STRMAP_INIT; /* stem -> index of its first token + 1 */
    char stem[LT_MAX_TOKEN + 1];
    for (size_t i = 0; i < wc->n; i++) {
        wc->canon[i] = -1;
        const char *w = lt_word(tk, i);
        if (tk->t[i].len < 3 || llex_is_stop(lx, w) || !has_letter(w) ||
            strcmp(w, "not") == 0 || strcmp(w, "never") == 0 || strcmp(w, "no") == 0)
            continue;
        if (symptom && strstr(symptom, w)) continue;
        lt_stem(w, tk->t[i].len, stem);
        void *seen = strmap_get(&first, stem);
        if (seen) {
            wc->canon[i] = (long)(uintptr_t)seen - 1;
        } else {
            wc->canon[i] = (long)i;
            strmap_put(&first, stem, (void *)(uintptr_t)(i + 1));
        }
        wc->count[wc->canon[i]]++;
    }
    strmap_free(&first, NULL);
}

/* The area-ish word (names a vocabulary area or component; most frequent) and up to
 * two other most frequent words (first appearance breaks ties), in reading order. */
static void pick_signature_words(ltheme *t, const word_counts *wc, long *area, long obj[2]) {
    const ltokens *tk = &t->tk;
    *area = -1;
    obj[0] = obj[1] = -1;
    for (size_t i = 0; i < wc->n; i++) {
        if (wc->canon[i] != (long)i) continue;
        int32_t id = lp_word(&t->dict, lt_word(tk, i), 0);
        if (id >= 0 && t->area_word[id] && (*area < 0 || wc->count[i] > wc->count[*area]))
            *area = (long)i;
    }
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < wc->n; i++) {
            if (wc->canon[i] != (long)i || (long)i == *area || (long)i == obj[0]) continue;
            if (obj[k] < 0 || wc->count[i] > wc->count[obj[k]]) obj[k] = (long)i;
        }
    if (obj[0] >= 0 && obj[1] >= 0 && obj[1] < obj[0]) {
        long tmp = obj[0];
        obj[0] = obj[1];
        obj[1] = tmp;
    }
}

/* A new signature from the customer text: "<area-ish word>_<object words>_<symptom>"
 * (the symptom being the strongest problem phrase; for feature requests "request",
 * for how-to questions "how_to"). "unclassified_needs_review" when no content word
 * is left. *salient = words and a symptom were both found. */
static char *propose_signature(ltheme *t, const llex *lx, const lsymptom *sym, size_t nsym,
                               const char *ctype, int *salient) {
    const char *symptom = nsym ? sym[0].phrase : NULL;
    for (size_t i = 0; i < nsym; i++)
        if (sym[i].weight > sym[0].weight) symptom = sym[i].phrase;
    word_counts wc;
    count_content_words(&t->tk, lx, symptom, &wc);
    long area, obj[2];
    pick_signature_words(t, &wc, &area, obj);
    free(wc.count);
    free(wc.canon);
    buf_t sig = BUF_INIT;
    size_t room = NEW_SIG_MAX - 16; /* leave space for the symptom */
    if (area >= 0) sig_append(&sig, lt_word(&t->tk, (size_t)area), room);
    for (int k = 0; k < 2; k++)
        if (obj[k] >= 0) sig_append(&sig, lt_word(&t->tk, (size_t)obj[k]), room);
    int objects = sig.len > 0;
    *salient = objects && symptom;
    if (!objects) {
        buf_free(&sig);
        return xstrdup("unclassified_needs_review");
    }
    if (symptom) sig_append(&sig, symptom, NEW_SIG_MAX);
    else if (ctype && strcmp(ctype, "feature_request") == 0) sig_append(&sig, "request", NEW_SIG_MAX);
    else if (ctype && strcmp(ctype, "how_to_question") == 0) sig_append(&sig, "how_to", NEW_SIG_MAX);
    return buf_detach(&sig);
}

/* ------------------------------------------------------------ the answer */

#define MAX_SYMPTOM_HITS 16
#define MAX_ERRORS 4
#define MAX_SENTENCES 1024

/* What one conversation's text yields, shared by the answer's builders. */
typedef struct analysis {
    ltheme *t;
    const char *text; /* customer text */
    size_t len;
    verdict v;
    lsymptom sym[MAX_SYMPTOM_HITS];
    size_t nsym;
    lspan sp[MAX_SENTENCES];
    size_t nsp;
    lspan errs[MAX_ERRORS];
    size_t nerr;
} analysis;

/* The chosen theme, or the proposed new signature. */
typedef struct choice {
    int matched;
    const vocab_theme *vt; /* when matched */
    char *signature;       /* normalised, owned */
    const char *area, *component, *confidence;
} choice;

static void choose_existing(const analysis *a, choice *ch) {
    const ltheme *t = a->t;
    ch->matched = 1;
    ch->vt = t->themes[a->v.best].vt;
    ch->signature = signature_normalize(ch->vt->signature);
    ch->area = ch->vt->product_area;
    ch->component = ch->vt->component;
    ch->confidence = confidence_of(t, &a->v);
}

/* A new signature; its area is a near-miss theme's, else the URL's, else "other"
 * (never one the vocabulary does not have). */
static void choose_new(analysis *a, const llex *lx, const char *ctype, choice *ch) {
    ltheme *t = a->t;
    const verdict *v = &a->v;
    int salient = 0;
    char *proposed = propose_signature(t, lx, a->sym, a->nsym, ctype, &salient);
    ch->matched = 0;
    ch->vt = NULL;
    ch->signature = signature_normalize(proposed);
    free(proposed);
    ch->confidence = salient ? "medium" : "low";
    const vocab_theme *weak = NULL;
    if (v->best >= 0 && v->score >= WEAK_AREA_U * t->unit &&
        (t->kw_solid[v->best] || t->intent_cov[v->best] >= 0.6f))
        weak = t->themes[v->best].vt;
    int weak_is_best = weak != NULL;
    for (size_t k = 0; !weak && k < t->nthemes; k++)
        if (t->url[k] > 0) weak = t->themes[k].vt;
    ch->area = weak ? weak->product_area : "other";
    ch->component = weak_is_best ? weak->component : "unknown";
    if (signature_is_blocked(ch->signature)) { /* the review queue keeps its own place */
        const vocab_theme *review = t->v ? vocab_get(t->v, ch->signature) : NULL;
        ch->area = review ? review->product_area : "other";
        ch->component = review ? review->component : "unknown";
        ch->confidence = "low";
    }
}

static void add_unique_str(json_t *arr, const char *s, size_t max) {
    if (!s || !*s || json_array_size(arr) >= max) return;
    for (size_t i = 0; i < json_array_size(arr); i++)
        if (strcasecmp(json_string_value(json_array_get(arr, i)), s) == 0) return;
    json_array_append_new(arr, jx_string(s));
}

/* Drops trailing sentence punctuation from a clause in place. */
static void trim_clause(char *s) {
    size_t n = strlen(s);
    while (n > 0 && strchr(".!?,;: ", s[n - 1])) s[--n] = '\0';
}

/* Whether keyword phrase p was found in the customer text for the chosen theme. */
static int chosen_hit(const ltheme *t, const choice *ch, long best, size_t p) {
    return ch->matched && t->phrase_hit[p] == 1 && (long)t->dict.tag[p] == best;
}

/* Drops function words and punctuation from the end of a cut clause in place: a clause
 * cut at its word limit can end "... can't find that option in my", or "... times out,
 * or". Returns the words left. */
static size_t trim_dangling(char *s, const llex *lx) {
    for (;;) {
        trim_clause(s);
        char *last = strrchr(s, ' ');
        char *w = last ? last + 1 : s;
        char low[32];
        size_t n = strlen(w);
        if (!*w || n >= sizeof low) break;
        for (size_t i = 0; i <= n; i++) low[i] = (char)tolower((unsigned char)w[i]);
        if (!llex_is_stop(lx, low)) break;
        if (!last) {
            *s = '\0';
            break;
        }
        *last = '\0';
    }
    return text_word_count(s, strlen(s));
}

/* Whether a symptom hit lies in [from, to). */
static int hit_within(const analysis *a, size_t from, size_t to) {
    for (size_t i = 0; i < a->nsym; i++)
        if (a->sym[i].src >= from && a->sym[i].src < to) return 1;
    return 0;
}

/* 2-4 short phrases: the matched keywords, then the customer's own problem clauses,
 * then (when still short) the start of the intent without its label. A clause ends at
 * a colon, unless what precedes the colon is a short label ("Bug report:", "isn't
 * working:") and the problem is told after it; a clause of one word ("error",
 * "failed") says too little to be listed. A quoted error is listed whole. */
static json_t *build_symptoms(const analysis *a, const llex *lx, const choice *ch,
                              const char *intent) {
    const ltheme *t = a->t;
    json_t *out = json_array();
    for (size_t p = 0; p < t->dict.n && json_array_size(out) < 2; p++)
        if (chosen_hit(t, ch, a->v.best, p)) add_unique_str(out, t->ptext[p], 4);
    size_t covered_until = 0; /* clauses must not overlap: "error ... failed" is one */
    for (size_t i = 0; i < a->nsym && json_array_size(out) < 4; i++) {
        size_t from = a->sym[i].src;
        long s = lt_span_of(a->sp, a->nsp, from);
        if (s < 0 || from < covered_until) continue;
        size_t to = a->sp[s].b;
        long e = lt_span_of(a->errs, a->nerr, from);
        if (e >= 0) { /* inside a quoted error: the whole quote is the symptom */
            from = a->errs[e].a;
            to = a->errs[e].b;
        } else {
            const char *colon = memchr(a->text + from, ':', to - from);
            if (colon) {
                size_t at = (size_t)(colon - a->text);
                if (text_word_count(a->text + from, at - from) <= 3 && hit_within(a, at + 1, to))
                    from = at + 1;
                else
                    to = at;
            }
        }
        char *clause = lt_cut_words(a->text + from, to - from, e >= 0 ? 12 : 6, 120);
        covered_until = e >= 0 ? to : from + strlen(clause);
        if (e >= 0) {
            trim_clause(clause);
            add_unique_str(out, clause, 4);
        } else if (trim_dangling(clause, lx) >= 2) {
            add_unique_str(out, clause, 4);
        }
        free(clause);
    }
    if (json_array_size(out) < 2) {
        /* without its label: "Bug report: the editor crashes" */
        const char *colon = strchr(intent, ':'), *from = intent;
        if (colon && text_word_count(intent, (size_t)(colon - intent)) <= 3 &&
            text_word_count(colon + 1, strlen(colon + 1)) >= 2)
            from = colon + 1;
        char *short_intent = lt_cut_words(from, strlen(from), 8, 80);
        trim_dangling(short_intent, lx);
        add_unique_str(out, short_intent, 4);
        free(short_intent);
    }
    return out;
}

static void end_sentence(buf_t *b) {
    if (b->len && !strchr(".!?", b->data[b->len - 1])) buf_putc(b, '.');
}

/* 2-4 sentences: what the customer reports, the error text verbatim, the match (or
 * the proposal), and what support replied. Caller frees. */
static char *build_diagnostic(local_ctx *c, const analysis *a, const choice *ch,
                              const char *intent, const buf_t *support) {
    const ltheme *t = a->t;
    buf_t d = BUF_INIT;
    buf_printf(&d, "Customer reports: %s", intent);
    end_sentence(&d);
    if (a->nerr) {
        buf_puts(&d, " Error text: ");
        for (size_t i = 0; i < a->nerr && i < 2; i++) {
            const char *e = a->text + a->errs[i].a;
            int quoted = *e == '"' || *e == '\'' || (unsigned char)*e == 0xE2;
            if (i) buf_puts(&d, ", ");
            if (!quoted) buf_putc(&d, '"');
            buf_append(&d, e, a->errs[i].b - a->errs[i].a);
            if (!quoted) buf_putc(&d, '"');
        }
        buf_putc(&d, '.');
    }
    if (ch->matched) {
        buf_printf(&d, " Matches vocabulary theme %s (%s/%s)", ch->vt->signature, ch->area,
                   ch->component);
        size_t shown = 0;
        for (size_t p = 0; p < t->dict.n && shown < 3; p++)
            if (t->phrase_hit[p] && (long)t->dict.tag[p] == a->v.best)
                buf_printf(&d, "%s\"%s\"", shown++ ? ", " : " on ", t->ptext[p]);
        buf_putc(&d, '.');
    } else {
        buf_printf(&d, " No vocabulary theme matched; proposed signature %s.", ch->signature);
    }
    if (support->len) {
        char *reply = local_user_intent(c, buf_cstr(support), 160);
        if (*reply) {
            buf_printf(&d, " Support replied: %s", reply);
            end_sentence(&d);
        }
        free(reply);
    }
    return buf_detach(&d);
}

typedef struct excerpts {
    json_t *arr;
    long used[8]; /* sentences already quoted */
    size_t nused;
} excerpts;

/* Quotes the sentence around offset off (<= 500 bytes) once, with why it matters. */
static void add_excerpt(excerpts *e, const analysis *a, size_t off, const char *relevance) {
    if (json_array_size(e->arr) >= 5 || e->nused >= 8) return;
    long which = lt_span_of(a->sp, a->nsp, off);
    if (which < 0) return;
    for (size_t i = 0; i < e->nused; i++)
        if (e->used[i] == which) return;
    e->used[e->nused++] = which;
    char *s = lt_cut_ellipsis(a->text + a->sp[which].a, a->sp[which].b - a->sp[which].a, 500, "...");
    json_array_append_new(e->arr, json_pack("{s:o, s:o}", "text", jx_string(s), "relevance",
                                            jx_string(relevance)));
    free(s);
}

/* <= 5 sentences: error quotes, keyword mentions, symptom descriptions. */
static json_t *build_excerpts(const analysis *a, const choice *ch) {
    const ltheme *t = a->t;
    excerpts ex = {json_array(), {0}, 0};
    for (size_t i = 0; i < a->nerr; i++) add_excerpt(&ex, a, a->errs[i].a, "Quotes the error message");
    for (size_t p = 0; p < t->dict.n; p++)
        if (chosen_hit(t, ch, a->v.best, p)) {
            char *why = xasprintf("Mentions \"%s\"", t->ptext[p]);
            add_excerpt(&ex, a, t->phrase_pos[p], why);
            free(why);
        }
    for (size_t i = 0; i < a->nsym; i++) {
        char *why = xasprintf("Describes the symptom (\"%s\")", a->sym[i].phrase);
        add_excerpt(&ex, a, a->sym[i].src, why);
        free(why);
    }
    if (json_array_size(ex.arr) == 0 && a->nsp > 0) add_excerpt(&ex, a, a->sp[0].a, "Opening message");
    return ex.arr;
}

/* Scores the themes and finds symptoms, sentences and error quotes. */
static void analyse(local_ctx *c, analysis *a, const llm_input *in, const buf_t *support) {
    ltheme *t = c->theme;
    a->t = t;
    reset_scores(t);
    score_customer(t, &c->lex, a->text, a->len);
    if (support->len)
        score_support(t, &c->lex, buf_cstr(support),
                      utf8_cut(buf_cstr(support), support->len, SUPPORT_TEXT_MAX));
    score_url(t, in->source_url);
    a->v = decide(t);
    a->nsym = local_symptoms(c, a->text, a->len, a->sym, MAX_SYMPTOM_HITS);
    a->nsp = lt_sentences(a->text, a->len, a->sp, MAX_SENTENCES);
    a->nerr = lt_error_spans(a->text, a->len, a->errs, MAX_ERRORS);
}

json_t *local_theme(local_ctx *c, const llm_call *call, char *err, size_t errlen) {
    buf_t *cust = &c->text, *support = &c->text2;
    buf_reset(cust);
    lt_customer_text(&call->in, cust);
    if (cust->len == 0) {
        snprintf(err, errlen, "empty conversation text");
        return NULL;
    }
    buf_reset(support);
    lt_support_text(&call->in, support);
    analysis *a = xmalloc(sizeof *a); /* ~20 KB: off the stack */
    a->text = buf_cstr(cust);
    a->len = utf8_cut(a->text, cust->len, THEME_TEXT_MAX);
    analyse(c, a, &call->in, support);

    choice ch;
    if (a->v.matched) choose_existing(a, &ch);
    else choose_new(a, &c->lex, jx_str(call->args, "conversation_type"), &ch);

    /* the intent: the first meaningful sentence of the opening, else of the customer text */
    buf_t opening = BUF_INIT;
    lt_opening_text(&call->in, &opening);
    char *intent = local_user_intent(c, opening.len ? buf_cstr(&opening) : a->text, 160);
    buf_free(&opening);

    char *flow = xasprintf("%s / %s", ch.area, ch.matched ? ch.component : ch.signature);
    char *hypothesis = ch.matched && ch.vt->engineering_fix && *ch.vt->engineering_fix
                           ? xasprintf("Likely in: %s", ch.vt->engineering_fix)
                           : xstrdup("Not determined from the conversation; needs investigation.");
    char *diag = build_diagnostic(c, a, &ch, intent, support);
    json_t *ans = json_pack(
        "{s:o, s:o, s:o, s:b, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:[], s:[]}", "product_area",
        jx_string(ch.area), "component", jx_string(ch.component), "issue_signature",
        jx_string(ch.signature), "matched_existing", ch.matched, "match_confidence", ch.confidence,
        "user_intent", jx_string(intent), "symptoms", build_symptoms(a, &c->lex, &ch, intent),
        "affected_flow", jx_string(flow), "root_cause_hypothesis", jx_string(hypothesis),
        "diagnostic_summary", jx_string(diag), "key_excerpts", build_excerpts(a, &ch),
        "context_used", "context_gaps");
    free(ch.signature);
    free(intent);
    free(flow);
    free(hypothesis);
    free(diag);
    free(a);
    return ans;
}
