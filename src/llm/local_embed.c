/* Offline embeddings: feature-hashed TF-IDF of word unigrams and bigrams.
 *
 * Text -> tokens (lower-cased, split on non-alphanumerics, bytes >= 0x80 are letters,
 * contractions expanded) -> stop words and one-letter tokens dropped -> light stemming
 * (so "posting"/"posted"/"posts" share a feature; a deliberate addition: paraphrases
 * rarely repeat word forms) -> features: each kept word and each pair of consecutive
 * kept words, hashed with fnv1a64 + hash_mix64. A feature's low bits pick one of dim
 * buckets, bit 40 its sign (so collisions cancel on average instead of piling up), its
 * high 20 bits a document-frequency bucket. Weight (1 + ln tf) * idf, where
 * idf = ln((N + 1) / (df + 1)) + 1 after prepare_embeddings streamed the N corpus texts
 * once, and idf = 1 without it.
 *
 * Vocabulary concepts: word statistics alone put two paraphrases of the same problem
 * far apart (measured on the bundled sample: median cosine 0.16 within a true theme,
 * where story clustering needs >= 0.45). So the vocabulary the analyzer already knows
 * is used as extra features, the way an ontology-aware embedder would: each theme the
 * text has evidence for (ltheme_concepts) adds a "concept:<signature>" feature weighted
 * by its match score. The word part and the concept part are each L2-normalised and
 * mixed CONCEPT_MIX : 1 before the final normalisation, so two texts about the same
 * vocabulary theme land close, texts matching no theme rely on their words alone.
 * The vector is L2-normalised (all zeros when the text has no features).
 * Deterministic: no randomness, no state besides the df table. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llm/local_internal.h"
#include "util/hash.h"
#include "util/mem.h"

#define DF_BUCKETS ((size_t)1 << LEMBED_DF_BITS)
#define EMBED_TEXT_MAX 32000 /* bytes of one text considered, like the API path */
#define CONCEPT_MIX 1.6f      /* weight of the concept part against the word part */
#define MAX_CONCEPTS 8

void lembed_init(lembed *e) { memset(e, 0, sizeof *e); }

void lembed_free(lembed *e) {
    free(e->df);
    free(e->feat);
    memset(e, 0, sizeof *e);
}

static void push_feat(lembed *e, uint64_t h) {
    XGROW(e->feat, e->featcap, e->nfeat + 1);
    e->feat[e->nfeat++] = h;
}

/* Fills e->feat with the feature hashes of text (with repeats). */
static void extract_features(lembed *e, local_ctx *c, const char *text) {
    e->nfeat = 0;
    if (!text) return;
    size_t len = strlen(text);
    if (len > EMBED_TEXT_MAX) len = EMBED_TEXT_MAX; /* a cut multibyte char is one odd token */
    lt_clear(&c->tk);
    lt_tokenize(&c->tk, text, len);
    uint64_t prev = 0;
    int have_prev = 0;
    char stem[LT_MAX_TOKEN + 1];
    for (size_t i = 0; i < c->tk.n; i++) {
        const char *w = lt_word(&c->tk, i);
        if (c->tk.t[i].len < 2 || llex_is_stop(&c->lex, w)) continue;
        size_t sn = lt_stem(w, c->tk.t[i].len, stem);
        uint64_t h = hash_mix64(fnv1a64(stem, sn));
        push_feat(e, h);
        if (have_prev) /* order-sensitive pair: "not post" != "post not" */
            push_feat(e, hash_mix64(prev * 0x9E3779B97F4A7C15ULL ^ h ^ 0xB16B00B5ULL));
        prev = h;
        have_prev = 1;
    }
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static size_t df_index(uint64_t h) { return (size_t)(h >> (64 - LEMBED_DF_BITS)); }

int lembed_prepare(lembed *e, local_ctx *c, llm_text_iter next, void *ctx) {
    if (!next) return -1;
    if (!e->df) e->df = xmalloc(DF_BUCKETS * sizeof *e->df);
    memset(e->df, 0, DF_BUCKETS * sizeof *e->df);
    e->ndocs = 0;
    const char *text;
    while ((text = next(ctx)) != NULL) {
        e->ndocs++;
        extract_features(e, c, text);
        qsort(e->feat, e->nfeat, sizeof *e->feat, cmp_u64);
        for (size_t i = 0; i < e->nfeat; i++) {
            if (i > 0 && e->feat[i] == e->feat[i - 1]) continue; /* once per document */
            uint32_t *d = &e->df[df_index(e->feat[i])];
            if (*d < UINT32_MAX) (*d)++;
        }
    }
    return 0;
}

static float idf_of(const lembed *e, uint64_t h) {
    if (!e->df) return 1.0f;
    double n = (double)e->ndocs, df = (double)e->df[df_index(h)];
    return (float)(log((n + 1.0) / (df + 1.0)) + 1.0);
}

static void normalize(float *v, int dim, float scale) {
    double norm = 0;
    for (int k = 0; k < dim; k++) norm += (double)v[k] * v[k];
    if (norm <= 0) return;
    float inv = (float)(scale / sqrt(norm));
    for (int k = 0; k < dim; k++) v[k] *= inv;
}

/* Adds the concept part: each matched theme's feature, weighted by its score. */
static void add_concepts(local_ctx *c, const char *text, float *out, int dim) {
    if (!text || !c->theme) return;
    size_t len = strlen(text);
    if (len > EMBED_TEXT_MAX) len = EMBED_TEXT_MAX;
    lconcept con[MAX_CONCEPTS];
    size_t n = ltheme_concepts(c->theme, &c->lex, text, len, con, MAX_CONCEPTS);
    if (!n) return;
    float *cv = xcalloc((size_t)dim, sizeof *cv);
    for (size_t i = 0; i < n; i++) {
        uint64_t h = hash_mix64(fnv1a64_str(con[i].signature) ^ 0xC0C0C0C0ULL);
        cv[h % (uint64_t)dim] += ((h >> 40) & 1) ? -con[i].score : con[i].score;
    }
    normalize(cv, dim, CONCEPT_MIX);
    for (int k = 0; k < dim; k++) out[k] += cv[k];
    free(cv);
}

void lembed_vector(lembed *e, local_ctx *c, const char *text, float *out, int dim) {
    memset(out, 0, (size_t)dim * sizeof *out);
    extract_features(e, c, text);
    qsort(e->feat, e->nfeat, sizeof *e->feat, cmp_u64);
    for (size_t i = 0; i < e->nfeat;) {
        size_t j = i;
        while (j < e->nfeat && e->feat[j] == e->feat[i]) j++;
        uint64_t h = e->feat[i];
        float w = (1.0f + logf((float)(j - i))) * idf_of(e, h);
        size_t bucket = (size_t)(h % (uint64_t)dim);
        out[bucket] += ((h >> 40) & 1) ? -w : w;
        i = j;
    }
    normalize(out, dim, 1.0f);
    add_concepts(c, text, out, dim);
    normalize(out, dim, 1.0f);
}
