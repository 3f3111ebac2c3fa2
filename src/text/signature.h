/* Signature, component and product-area normalisation (original-phases.md §8,
 * tests 30, 34–36). */
#ifndef FEEDLINE_SIGNATURE_H
#define FEEDLINE_SIGNATURE_H

#include <stddef.h>

/* lower-case -> runs of whitespace/hyphens to "_" -> drop [^a-z0-9_] -> collapse "_+"
 * -> strip leading/trailing "_" ; "" or NULL -> "unknown". Caller frees.
 * "Billing-Cancellation Request" -> "billing_cancellation_request". */
char *signature_normalize(const char *s);
/* Same rules; "" or NULL -> "unknown". "  Performance - Tracking  " -> "performance_tracking". */
char *component_normalize(const char *s);
/* Same rules; "" or NULL -> "general". */
char *product_area_normalize(const char *s);
/* component_normalize plus aliases: ("smartschedule"|"smart schedule"|"SmartSchedule")
 * within area "scheduling" -> "smart_schedule". */
char *component_canonicalize(const char *component, const char *product_area);

/* 1 when a and b are the same signature after normalisation; 0 if either is NULL. */
int signature_same(const char *a, const char *b);

/* Near-duplicate test used when canonicalising a proposed signature against the
 * existing ones of the same area: equal after normalisation, or the same token set,
 * or token-set Jaccard >= 0.75 with the same first token. */
int signature_near_duplicate(const char *a, const char *b);

/* Signatures that never pass the quality gate. */
int signature_is_blocked(const char *sig); /* unclassified_needs_review, unknown_issue, other_issue */

#endif
