/* Signature / component / product-area normalisation, the near-duplicate test and the
 * blocklist (original-phases.md §8 and §13 tests 30, 34-36). */
#include "test.h"

#include <stdlib.h>

#include "text/signature.h"

/* Checks f(in) == want and frees the result. */
#define CHECK_NORM(f, in, want)                                                            \
    do {                                                                                   \
        char *got_ = f(in);                                                                \
        CHECK_STR(got_, want);                                                             \
        free(got_);                                                                        \
    } while (0)

TEST(signature_normalize_examples_from_the_original_tests) {
    CHECK_NORM(signature_normalize, "BILLING_REQUEST", "billing_request");
    CHECK_NORM(signature_normalize, "Billing-Cancellation Request", "billing_cancellation_request");
    CHECK_NORM(signature_normalize, "a__b___c", "a_b_c");
    CHECK_NORM(signature_normalize, "billing@cancellation#request!", "billingcancellationrequest");
    CHECK_NORM(signature_normalize, "", "unknown");
    CHECK_NORM(signature_normalize, NULL, "unknown");
}

TEST(signature_normalize_edges) {
    CHECK_NORM(signature_normalize, "  --pins  duplicate--  ", "pins_duplicate");
    CHECK_NORM(signature_normalize, "tab\tand\nnewline", "tab_and_newline");
    CHECK_NORM(signature_normalize, "a - b", "a_b"); /* "_-_" collapses to one "_" */
    CHECK_NORM(signature_normalize, "@@@", "unknown");
    CHECK_NORM(signature_normalize, "___", "unknown");
    CHECK_NORM(signature_normalize, "caf\xc3\xa9 menu", "caf_menu"); /* non-ASCII dropped */
    CHECK_NORM(signature_normalize, "Pin2Board 404", "pin2board_404");
}

TEST(component_normalize_examples) {
    CHECK_NORM(component_normalize, "performance tracking", "performance_tracking");
    CHECK_NORM(component_normalize, "multi-network-scheduler", "multi_network_scheduler");
    CHECK_NORM(component_normalize, "_scheduler_", "scheduler");
    CHECK_NORM(component_normalize, "  Performance - Tracking  ", "performance_tracking");
    CHECK_NORM(component_normalize, NULL, "unknown");
    CHECK_NORM(component_normalize, "", "unknown");
}

TEST(product_area_normalize_defaults_to_general) {
    CHECK_NORM(product_area_normalize, NULL, "general");
    CHECK_NORM(product_area_normalize, "", "general");
    CHECK_NORM(product_area_normalize, "  ", "general");
    CHECK_NORM(product_area_normalize, "Professional Services", "professional_services");
    CHECK_NORM(product_area_normalize, "Billing & Settings", "billing_settings");
}

TEST(component_canonicalize_smartschedule_alias_only_in_scheduling) {
    char *c;
    c = component_canonicalize("SmartSchedule", "scheduling");
    CHECK_STR(c, "smart_schedule");
    free(c);
    c = component_canonicalize("SmartSchedule", "Scheduling");
    CHECK_STR(c, "smart_schedule");
    free(c);
    c = component_canonicalize("smart schedule", "scheduling");
    CHECK_STR(c, "smart_schedule");
    free(c);
    c = component_canonicalize("smartschedule", " scheduling ");
    CHECK_STR(c, "smart_schedule");
    free(c);
    c = component_canonicalize("SmartSchedule", "billing");
    CHECK_STR(c, "smartschedule");
    free(c);
    c = component_canonicalize(NULL, "scheduling");
    CHECK_STR(c, "unknown");
    free(c);
    c = component_canonicalize("Pin Editor", NULL);
    CHECK_STR(c, "pin_editor");
    free(c);
}

TEST(near_duplicate_equal_after_normalisation) {
    CHECK(signature_near_duplicate("pinterest_duplicate_pins", "Pinterest-Duplicate Pins"));
    CHECK(signature_near_duplicate("a", "A"));
    CHECK(signature_near_duplicate(NULL, ""));   /* both "unknown" */
}

TEST(near_duplicate_same_token_set_in_any_order) {
    CHECK(signature_near_duplicate("duplicate_pins", "pins_duplicate"));
    CHECK(signature_near_duplicate("pins_duplicate_pins", "duplicate_pins")); /* sets, not lists */
}

TEST(near_duplicate_jaccard_with_same_first_token) {
    /* {pinterest, pins, not, posting} vs {pinterest, pins, not, posting, today}: 4/5 = 0.8 */
    CHECK(signature_near_duplicate("pinterest_pins_not_posting", "pinterest_pins_not_posting_today"));
    /* 3/4 = 0.75 exactly: still a duplicate */
    CHECK(signature_near_duplicate("csv_import_encoding", "csv_import_encoding_error"));
    /* 2/3 < 0.75 */
    CHECK(!signature_near_duplicate("csv_import", "csv_import_error"));
    /* 0.8 but a different first token */
    CHECK(!signature_near_duplicate("pinterest_pins_not_posting", "pins_pinterest_not_posting_today"));
    CHECK(!signature_near_duplicate("pinterest_duplicate_pins", "pinterest_missing_pins"));
    CHECK(!signature_near_duplicate("billing_refund_request", "account_deletion_request"));
}

TEST(blocked_signatures) {
    CHECK(signature_is_blocked("unclassified_needs_review"));
    CHECK(signature_is_blocked("unknown_issue"));
    CHECK(signature_is_blocked("other_issue"));
    CHECK(signature_is_blocked("Unclassified Needs Review")); /* normalised first */
    CHECK(!signature_is_blocked("pinterest_duplicate_pins"));
    CHECK(!signature_is_blocked("unknown"));
    CHECK(!signature_is_blocked(NULL));
}
