/* store_export — what a tracker export reads and writes (store_export.c): the stories
 * to export with their evidence, and the ticket of a story in a tracker
 * (story_exports), so a second export updates the same ticket.
 *
 * Plain data in, plain data out: rendering and tracker calls belong to src/export/. */
#ifndef FEEDLINE_STORE_EXPORT_H
#define FEEDLINE_STORE_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* At most this many evidence rows are loaded per story (the count is exact). */
#define STORE_EXPORT_MAX_EVIDENCE 500

typedef struct export_evidence {
    char *conversation_id, *excerpt;
    char *subject, *source_url; /* NULL when the conversation is not stored */
    int64_t run_id;
    int64_t created_at;         /* of the conversation; 0 when not stored */
} export_evidence;

typedef struct export_story {
    int64_t id, run_id, conversation_count;
    char *title, *description, *status, *story_kind;
    char *product_area, *component, *signature;
    char *problem, *affected, *acceptance_criteria; /* criteria: JSON array text */
    int64_t first_seen_at, last_seen_at;            /* 0 when not recorded */
    /* Ordered by (run, conversation id): evidence of later runs comes last. */
    export_evidence *evidence;
    size_t nevidence;
    int64_t evidence_total;                          /* all rows, also beyond the cap */
} export_story;
void export_story_free(export_story *s);

/* The ticket of a story in a tracker. */
typedef struct export_link {
    char *external_id, *url;
    int64_t evidence_count, exported_at, updated_at;
} export_link;
void export_link_free(export_link *l);

/* FOUND with the newest run that has stories (its story_runs rows, or stories created
 * by it), NOTFOUND when there is none. */
int store_export_latest_run(store *s, int64_t *run_id);
/* The stories of a run (created or grown by it), largest first; *ids malloc'ed. */
int store_export_run_stories(store *s, int64_t run_id, int64_t **ids, size_t *n);
/* FOUND with the story and its evidence, or NOTFOUND. */
int store_export_story(store *s, int64_t story_id, export_story *out);
/* FOUND with the story's ticket in tracker, or NOTFOUND. */
int store_export_link_get(store *s, int64_t story_id, const char *tracker, export_link *out);
/* Records (inserts or updates) the story's ticket in tracker with the evidence count
 * it now shows and, when mark_exported, moves an open story to state 'exported'
 * (closed and rejected stories keep their state). One transaction. */
int store_export_link_put(store *s, int64_t story_id, const char *tracker,
                          const char *external_id, const char *url, int64_t evidence_count,
                          int mark_exported, int64_t now);

#endif
