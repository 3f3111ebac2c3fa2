/* The theme quality gate table (original-phases.md §6, tests 25–29). */
#include "test.h"

#include "pipeline/quality.h"

static void check_gate(const char *sig, int vocab, const char *conf, int passed, double score) {
    quality_result q;
    quality_check(sig, vocab, conf, QUALITY_THRESHOLD, &q);
    CHECK_INT(q.passed, passed);
    CHECK_NEAR(q.score, score, 1e-9);
    quality_result_free(&q);
}

TEST(score_table_matches_the_original) {
    check_gate("pins_dup", 1, "high", 1, 1.0);
    check_gate("pins_dup", 1, "medium", 1, 0.8);
    check_gate("pins_dup", 1, "low", 1, 0.4);
    check_gate("pins_dup", 0, "high", 1, 1.0);
    check_gate("pins_dup", 0, "medium", 1, 0.6);
    check_gate("pins_dup", 0, "low", 0, 0.2);
    check_gate("pins_dup", 0, "bogus", 0, 0.0);
    check_gate("pins_dup", 1, "bogus", 0, 0.2);
    check_gate("pins_dup", 0, "HIGH", 1, 1.0);
    check_gate("pins_dup", 0, "", 0, 0.2); /* empty confidence reads as low */
}

TEST(blocklist_and_reasons) {
    quality_result q;
    quality_check("unclassified_needs_review", 1, "high", QUALITY_THRESHOLD, &q);
    CHECK_INT(q.passed, 0);
    CHECK_NEAR(q.score, 0.0, 1e-9);
    CHECK_STR(q.reason, "Filtered signature: unclassified_needs_review");
    CHECK_STR(json_string_value(json_object_get(q.details, "filtered_by")), "signature_blocklist");
    quality_result_free(&q);
    quality_check("unknown_issue", 0, "high", QUALITY_THRESHOLD, &q);
    CHECK_INT(q.passed, 0);
    quality_result_free(&q);
    quality_check("other_issue", 0, "high", QUALITY_THRESHOLD, &q);
    CHECK_INT(q.passed, 0);
    quality_result_free(&q);
    quality_check("new_sig", 0, "low", QUALITY_THRESHOLD, &q);
    CHECK_STR(q.reason, "Below threshold (0.20 < 0.3): not in vocabulary, low confidence");
    CHECK(json_is_true(json_object_get(q.details, "vocabulary_match")) == 0);
    quality_result_free(&q);
    /* a custom threshold: 0.8 rejects new+medium, and the reason names only what applies */
    quality_check("new_sig", 0, "medium", 0.8, &q);
    CHECK_INT(q.passed, 0);
    CHECK_STR(q.reason, "Below threshold (0.60 < 0.8): not in vocabulary");
    quality_result_free(&q);
    quality_check("known", 1, "low", 0.5, &q);
    CHECK_STR(q.reason, "Below threshold (0.40 < 0.5): low confidence");
    quality_result_free(&q);
    quality_check("known", 1, "medium", QUALITY_THRESHOLD, &q);
    CHECK_STR(q.reason, "");
    CHECK_NEAR(json_real_value(json_object_get(q.details, "vocabulary_bonus")), 0.2, 1e-9);
    quality_result_free(&q);
}
