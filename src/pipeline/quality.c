/* The theme quality gate (see quality.h). Reasons read exactly like the original's:
 * "Filtered signature: <sig>" and "Below threshold (0.20 < 0.3): not in vocabulary,
 * low confidence". */
#include "pipeline/quality.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "text/signature.h"

static double confidence_weight(const char *c, char lower[16]) {
    size_t i = 0;
    for (; c && c[i] && i < 15; i++) lower[i] = (char)tolower((unsigned char)c[i]);
    lower[i] = '\0';
    if (!strcmp(lower, "high")) return 1.0;
    if (!strcmp(lower, "medium")) return 0.6;
    if (!strcmp(lower, "low")) return 0.2;
    return 0.0;
}

void quality_check(const char *signature, int in_vocabulary, const char *match_confidence,
                   double threshold, quality_result *out) {
    memset(out, 0, sizeof *out);
    if (signature_is_blocked(signature)) {
        snprintf(out->reason, sizeof out->reason, "Filtered signature: %s", signature);
        out->details = json_pack("{ssss}", "filtered_by", "signature_blocklist", "signature",
                                 signature);
        return;
    }
    char conf[16];
    const char *given = match_confidence && match_confidence[0] ? match_confidence : "low";
    double c = confidence_weight(given, conf);
    double bonus = in_vocabulary ? 0.2 : 0.0;
    double score = c + bonus;
    if (score > 1.0) score = 1.0;
    out->score = score;
    if (score >= threshold) {
        out->passed = 1;
        out->details = json_pack("{sssfsbsf}", "confidence", conf, "confidence_score", c,
                                 "vocabulary_match", in_vocabulary, "vocabulary_bonus", bonus);
        return;
    }
    char parts[128] = "";
    if (!in_vocabulary) snprintf(parts, sizeof parts, "not in vocabulary");
    if (c < 0.6) {
        size_t n = strlen(parts);
        snprintf(parts + n, sizeof parts - n, "%s%s confidence", n ? ", " : "", conf);
    }
    snprintf(out->reason, sizeof out->reason, "Below threshold (%.2f < %g)%s%s", score,
             threshold, parts[0] ? ": " : "", parts);
    out->details = json_pack("{sssssfsbsfsf}", "filtered_by", "quality_threshold", "confidence",
                             conf, "confidence_score", c, "vocabulary_match", in_vocabulary,
                             "vocabulary_bonus", bonus, "threshold", threshold);
}

void quality_result_free(quality_result *r) {
    if (r->details) json_decref(r->details);
    r->details = NULL;
}
