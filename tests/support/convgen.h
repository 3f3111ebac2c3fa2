/* convgen — a seeded generator of realistic customer-support conversations, built
 * from a theme vocabulary (data/theme_vocabulary.json or any file of that shape).
 *
 * It feeds the bundled sample (scripts/gen-sample), benchmarks (100 000
 * conversations, streamed) and the fake Intercom server. Each drawn conversation
 * comes with its ground truth (routing type, vocabulary signature, whether the
 * quality filter should keep it), which only tests read.
 *
 * Same vocabulary + seed + options => the same sequence, byte for byte. Nothing
 * here names a product: all product words come from the vocabulary; the rest is
 * generic support-chat filler. Not thread-safe: one convgen per thread. */
#ifndef FEEDLINE_CONVGEN_H
#define FEEDLINE_CONVGEN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "text/conv.h"
#include "text/vocab.h"

typedef struct convgen_options {
    size_t count;        /* informational: sizes the draw deck (0 -> 400); the caller
                            decides how many to draw */
    int64_t base_time;   /* created_at spread over [base_time - days*86400, base_time);
                            0 -> 2026-01-25T00:00:00Z */
    int days;            /* <= 0 -> 30 */
    double noise_share;  /* share of non-actionable noise, clamped to [0, 1] and used as
                            given (0 means no noise); convgen_options_default() sets 0.30 */
} convgen_options;

typedef struct convgen_truth {
    char conversation_type[32]; /* one of LLM_CONVERSATION_TYPES */
    char signature[128];        /* vocabulary signature the conversation is about, or "-" */
    int actionable;             /* type in product_issue|feature_request|how_to_question */
    int passes_quality;         /* 0 when generated to be dropped by the quality filter */
} convgen_truth;

typedef struct convgen convgen;

/* count 400, base time 2026-01-25T00:00:00Z, 30 days, noise 0.30. */
void convgen_options_default(convgen_options *opt);

/* v must outlive the generator. opt NULL -> defaults. */
convgen *convgen_new(const vocab *v, uint64_t seed, const convgen_options *opt);
/* Draws the next conversation (deterministic for a seed); out must be zeroed
 * (`conversation c = {0};`). Free it with conv_free(). */
void convgen_next(convgen *g, conversation *out, convgen_truth *truth);
void convgen_free(convgen *g);
/* Frees what convgen_next filled in and zeroes *c. (Equivalent to conv_free; kept
 * separate so this library does not depend on src/text/conv.c.) */

/* The routing type a conversation about theme t has (see the rule in convgen.c):
 * billing area -> billing_question (how_to_question for non-money questions);
 * login/password/lock/signup/deletion/email -> account_issue; a request for a
 * capability that does not exist -> feature_request; requests, questions, guidance,
 * inquiries -> how_to_question; everything else -> product_issue. */
const char *convgen_theme_type(const vocab_theme *t);

/* Serialisers. */
/* One JSONL line (SPEC format), no trailing newline. created_at is ISO-8601 UTC, or
 * unix seconds for about one conversation in ten (chosen from the id). */
char *convgen_to_jsonl(const conversation *c);
/* The Intercom conversation object (GET /conversations/{id} shape); bodies are HTML. */
json_t *convgen_to_intercom(const conversation *c);

#endif
