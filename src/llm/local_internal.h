/* local_internal.h — private pieces of the offline analyzer (provider "local"),
 * shared between its files:
 *   local.c        provider mechanics (queue, poll, cancel), dispatch, canonicalize
 *   local_story.c  story review rules and written stories
 *   local_text.c   tokenizer, light stemmer, stop words, phrase matcher, text helpers
 *   local_rules.c  classify / refine / facets rules
 *   local_theme.c  vocabulary theme matching and new-signature proposals
 *   local_embed.c  feature-hashed TF-IDF embeddings
 * Nothing here is thread-safe: one provider is driven by one thread (the engine's
 * poll loop), and every mutable cache lives inside the provider. */
#ifndef FEEDLINE_LLM_LOCAL_INTERNAL_H
#define FEEDLINE_LLM_LOCAL_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "llm/llm.h"
#include "text/vocab.h"
#include "util/buf.h"
#include "util/strmap.h"

/* ------------------------------------------------------------------ tokens */

/* Longest token kept (bytes); longer runs (base64, hashes) are skipped. */
#define LT_MAX_TOKEN 48

typedef struct ltok {
    uint32_t off;     /* the lower-cased token, NUL-terminated, at arena + off */
    uint32_t len;
    uint32_t src;     /* byte range [src, src_end) of the token in the source text */
    uint32_t src_end;
    uint32_t brk;     /* a sentence/clause boundary (. ! ? ; : newline) precedes it */
} ltok;

typedef struct ltokens {
    char *arena;
    size_t alen, acap;
    ltok *t;
    size_t n, cap;
} ltokens;

/* Lower-cases and splits text on non-alphanumerics (bytes >= 0x80 are letters, except
 * Unicode punctuation and no-break spaces). Apostrophes inside words are handled as
 * English contractions: "can't"/"cannot"/"cant" -> "can" "not", "doesn't" -> "does"
 * "not", "it's"/"I'm"/"you're" -> "it"/"i"/"you". Appends to tk. */
void lt_tokenize(ltokens *tk, const char *text, size_t len);
void lt_clear(ltokens *tk);
void lt_free(ltokens *tk);
static inline const char *lt_word(const ltokens *tk, size_t i) { return tk->arena + tk->t[i].off; }

/* Light suffix stripper (plural, -ing, -ed, final e, doubled consonant) so that
 * "scheduled", "scheduling", "schedules" and "schedule" all give "schedul".
 * ASCII tokens only; others are copied. Writes a NUL-terminated stem, returns its length. */
size_t lt_stem(const char *w, size_t n, char out[LT_MAX_TOKEN + 1]);

/* Stop words: English function words and support chatter (hi, thanks, please...).
 * Negations ("not", "no", "never") are NOT stop words: they carry the symptom. */
typedef struct llex {
    strmap_t stop;
} llex;
void llex_init(llex *lx);
void llex_free(llex *lx);
int llex_is_stop(const llex *lx, const char *w);

/* ------------------------------------------------------------ phrase sets */

/* A compiled set of phrases (sequences of stemmed words) matched against token
 * streams in one pass, indexed by first word. With drop_stop, stop words are removed
 * from phrases and texts alike, so "pins are not publishing" matches "pins not
 * publishing". With fuzzy, a text word of >= 5 bytes that is not in the set's
 * dictionary matches a dictionary word within one edit (insert, delete, substitute,
 * adjacent swap); lookups are memoised. */
typedef struct lphrases {
    strmap_t words;          /* stem or raw form -> (id + 1) */
    size_t nwords;
    char **wstr;             /* id -> stem */
    uint32_t *tok;           /* flat phrase word ids */
    size_t ntok, tokcap;
    uint32_t *start;         /* phrase p: tok[start[p] .. start[p] + len[p]) */
    uint16_t *len;
    int32_t *tag;            /* caller's value per phrase */
    size_t n, cap;
    uint32_t *first_off;     /* CSR index by first word (after lp_compile) */
    uint32_t *first_list;
    int drop_stop;
    int fuzzy;
    strmap_t del;            /* fuzzy: one-deletion variants -> (id + 1) or LP_AMBIGUOUS */
    strmap_t memo;           /* fuzzy: text token -> lookup result (bounded) */
} lphrases;

void lp_init(lphrases *s, int drop_stop, int fuzzy);
void lp_free(lphrases *s);
/* Id of a word (stemmed inside), inserting it when insert; -1 when absent. */
int32_t lp_word(lphrases *s, const char *raw, int insert);
/* Adds a phrase; returns its index, or -1 when nothing but stop words is left. */
long lp_add(lphrases *s, const llex *lx, const char *text, int32_t tag);
void lp_compile(lphrases *s);

/* A token stream mapped onto a phrase set's ids. Sentence boundaries appear as
 * LP_BREAK entries, so no phrase matches across them. */
#define LP_BREAK (-2)
typedef struct lpseq {
    int32_t *id;      /* word id, -1 (unknown word) or LP_BREAK */
    uint32_t *tok;    /* index of the source token */
    uint8_t *fuzzy;   /* 1 when the id came from typo tolerance */
    size_t n, cap;
} lpseq;
void lpseq_free(lpseq *q);
void lp_map(lphrases *s, const llex *lx, const ltokens *tk, lpseq *out);

/* Calls fn for every occurrence of every phrase; first/last index into the lpseq.
 * Up to max_gaps extra words may sit between a phrase's words (gaps = how many did). */
typedef void (*lp_hit_fn)(void *ctx, size_t phrase, size_t first, size_t last, size_t gaps);
void lp_match(const lphrases *s, const lpseq *q, size_t max_gaps, lp_hit_fn fn, void *ctx);

/* ------------------------------------------------------------ text helpers */

/* Byte ranges of the sentences of text (split after . ! ? followed by a space, and
 * at newlines), trimmed; empty ones skipped. Returns the count (<= max). */
typedef struct lspan {
    size_t a, b;
} lspan;
size_t lt_sentences(const char *text, size_t len, lspan *out, size_t max);
/* The sentence (from spans) containing byte offset off, or -1. */
long lt_span_of(const lspan *sp, size_t n, size_t off);

/* Copies s[0..len) with whitespace collapsed, keeping at most max_words words and at
 * most max_bytes bytes (cut at a word boundary; a single over-long word is cut on a
 * UTF-8 boundary). Trailing , ; : - are dropped. Caller frees. */
char *lt_cut_words(const char *s, size_t len, size_t max_words, size_t max_bytes);
/* Like lt_cut_words without a word limit, appending ellipsis (counted within
 * max_bytes) when something was cut. */
char *lt_cut_ellipsis(const char *s, size_t len, size_t max_bytes, const char *ellipsis);

/* The customer-side text of a conversation: subject, opening message and digest
 * (merged when one contains the other), then the transcript's customer lines not
 * already included. */
void lt_customer_text(const llm_input *in, buf_t *out);
/* Body and digest merged (the classifier's and facet extractor's input). */
void lt_opening_text(const llm_input *in, buf_t *out);
/* The support side: support_text, else the transcript's "[Support]:" lines. */
void lt_support_text(const llm_input *in, buf_t *out);

/* Verbatim error evidence in text: quoted strings (5..200 bytes) and error codes
 * (E404, ERR_TIMEOUT, RATE_LIMIT_ERROR, NotFoundError, HTTP status codes after
 * "error"). Returns the count (<= max), spans in order of appearance, no overlaps. */
size_t lt_error_spans(const char *text, size_t len, lspan *out, size_t max);

/* Number of content words (not stop words, at least 2 letters) in a token range. */
size_t lt_content_words(const llex *lx, const ltokens *tk, size_t from, size_t to);

/* ------------------------------------------------------------ the analyzer */

typedef struct lrules lrules;
typedef struct ltheme ltheme;

typedef struct lembed {
    uint32_t *df;     /* 2^LEMBED_DF_BITS document-frequency buckets, NULL until prepared */
    uint64_t ndocs;
    uint64_t *feat;   /* scratch: feature hashes of one text */
    size_t nfeat, featcap;
} lembed;
#define LEMBED_DF_BITS 20

/* Everything a task needs: immutable tables plus per-provider scratch. */
typedef struct local_ctx {
    const vocab *vocab;       /* may be NULL */
    llex lex;
    lrules *rules;
    ltheme *theme;
    lembed embed;
    ltokens tk;               /* scratch tokens */
    lpseq seq;                /* scratch mapped sequence */
    buf_t text, text2;        /* scratch texts */
} local_ctx;

/* Task implementations. Each returns the answer (new reference) or NULL with a
 * reason in err (the call then fails with LLM_ERR_INPUT). */
json_t *local_classify(local_ctx *c, const llm_call *call, char *err, size_t errlen);
json_t *local_refine(local_ctx *c, const llm_call *call, char *err, size_t errlen);
json_t *local_facets(local_ctx *c, const llm_call *call, char *err, size_t errlen);
json_t *local_theme(local_ctx *c, const llm_call *call, char *err, size_t errlen);
/* local_story.c: review rules and the written story, from the task's arguments. */
json_t *local_review(const llm_call *call, char *err, size_t errlen);
json_t *local_story(const llm_call *call, char *err, size_t errlen);

/* The vocabulary themes a text is about: those with evidence (a keyword phrase or a
 * half-covered example intent) scoring at least the matching minimum, with their score
 * in units of the vocabulary's score unit. Used as concept features by the embedder. */
typedef struct lconcept {
    const char *signature;
    float score;
} lconcept;
size_t ltheme_concepts(ltheme *t, const llex *lx, const char *text, size_t len,
                       lconcept *out, size_t max);

lrules *lrules_new(const llex *lx, const vocab *v);
void lrules_free(lrules *r);
ltheme *ltheme_new(const llex *lx, const vocab *v);
void ltheme_free(ltheme *t);

/* The first meaningful sentence of text (>= 12 bytes, >= 2 content words), cut to
 * max_bytes at a word boundary with "..."; the whole text cut likewise when no
 * sentence qualifies. Caller frees. Used by facets and themes. */
char *local_user_intent(local_ctx *c, const char *text, size_t max_bytes);

/* Problem phrases (bug words, excess/deficit/performance directions) found in text:
 * distinct phrases in order of appearance with their source byte range. Uses c->tk. */
typedef struct lsymptom {
    const char *phrase; /* the rule phrase, e.g. "not posting" */
    size_t src, src_end;
    float weight;
} lsymptom;
size_t local_symptoms(local_ctx *c, const char *text, size_t len, lsymptom *out, size_t max);

void lembed_init(lembed *e);
void lembed_free(lembed *e);
/* Counts document frequencies over every text next() yields (resets earlier counts);
 * -1 when next is NULL. Uses c's scratch tokens. */
int lembed_prepare(lembed *e, local_ctx *c, llm_text_iter next, void *ctx);
/* Writes the L2-normalised vector of text into out[0..dim). */
void lembed_vector(lembed *e, local_ctx *c, const char *text, float *out, int dim);

#endif
