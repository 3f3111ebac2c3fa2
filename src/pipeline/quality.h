/* The theme quality gate (original-phases.md §6): a blocklist of catch-all signatures,
 * then score = confidence weight (high 1.0, medium 0.6, low 0.2, other 0.0) + 0.2 when
 * the signature is in the vocabulary, capped at 1.0; pass when score >= threshold. */
#ifndef FEEDLINE_QUALITY_H
#define FEEDLINE_QUALITY_H

#include <jansson.h>
#include <stddef.h>

#define QUALITY_THRESHOLD 0.3

typedef struct quality_result {
    int passed;
    double score;
    char reason[256];  /* "" when passed */
    json_t *details;   /* owned by the result; quality_result_free */
} quality_result;

void quality_check(const char *signature, int in_vocabulary, const char *match_confidence,
                   double threshold, quality_result *out);
void quality_result_free(quality_result *r);

#endif
