/* Read-only listings of stored results as JSON, for the CLI and the HTTP API. */
#ifndef FEEDLINE_STORE_REPORT_H
#define FEEDLINE_STORE_REPORT_H

#include <jansson.h>

#include "store/store.h"

typedef struct story_filter {
    int64_t run_id;           /* 0 = any run */
    const char *product_area; /* NULL = any */
    const char *status;       /* NULL = any */
    const char *signature;    /* NULL = any */
    int64_t created_since;    /* 0 = any; else created_at >= this (unix seconds) */
    int64_t limit;            /* 0 = no limit */
    int64_t offset;
    int with_conversation_ids;
} story_filter;

/* The newest run whose story phase completed (FOUND/NOTFOUND). */
int store_latest_story_run(store *s, int64_t *run_id);
/* Stories matching the filter, largest first, as a JSON array of objects (with
 * "conversation_ids" when asked); *total = the count without limit/offset. */
int store_stories_json(store *s, const story_filter *f, json_t **out, int64_t *total);

/* One story with its evidence: the story object (as in the listing) plus
 * "conversation_ids" and "evidence": [{conversation_id, signature, excerpt, digest,
 * source_url, subject, created_at}] joined to the conversations. FOUND/NOTFOUND. */
int store_story_detail_json(store *s, int64_t story_id, json_t **out);
/* The review decisions of a run's candidate groups, largest first: [{"product_area",
 * "signature", "decision", "reason", "conversation_count", "merge_into", "parts",
 * "reviewer"}]. */
int store_reviews_json(store *s, int64_t run_id, json_t **out);

/* Theme aggregates, computed from the passed rows of the themes table grouped by
 * issue_signature (the original read a theme_aggregates table its pipeline never
 * wrote): distinct conversations, runs, first/last seen (conversation created_at),
 * and sample fields from the newest theme of the signature. */
typedef struct theme_filter {
    int64_t run_id;           /* 0 = any run */
    const char *product_area; /* NULL = any */
    int64_t min_count;        /* occurrence_count >= this (0 = any) */
    int64_t max_count;        /* occurrence_count <= this (0 = any) */
    int64_t seen_since;       /* last_seen >= this, unix seconds (0 = any) */
    int recent_first;         /* order by last_seen, then count (default: count first) */
    int64_t limit;            /* 0 = no limit */
    int64_t offset;
} theme_filter;
/* Matching aggregates as a JSON array of {issue_signature, product_area, component,
 * occurrence_count, run_count, first_seen_at, last_seen_at, sample_user_intent,
 * sample_symptoms, sample_affected_flow, sample_root_cause_hypothesis}; *total = the
 * count without limit/offset. */
int store_themes_json(store *s, const theme_filter *f, json_t **out, int64_t *total);
/* One signature's aggregate plus its evidence: "conversation_ids" (distinct, newest
 * theme first, at most max_ids) and "conversations" (the first max_convs of them with
 * run_id, created_at, source_url, subject, an excerpt of the digest, user_intent and
 * diagnostic_summary). FOUND/NOTFOUND. */
int store_theme_detail_json(store *s, const char *signature, size_t max_ids, size_t max_convs,
                            json_t **out);

/* A number that changes whenever another connection commits to the database (SQLite's
 * PRAGMA data_version; this connection's own commits do not change it), so a reader can
 * cache results and know when they went stale. STORE_FOUND with *version, or
 * STORE_NOTFOUND when the backend has no such counter (PostgreSQL). */
int store_data_version(store *s, int64_t *version);

/* Number of runs in each state, in the order running, stopping, stopped, completed,
 * failed (for metrics). */
#define RUN_STATE_COUNT 5
extern const char *const RUN_STATES[RUN_STATE_COUNT];
int store_run_state_counts(store *s, int64_t counts[RUN_STATE_COUNT]);

#endif
