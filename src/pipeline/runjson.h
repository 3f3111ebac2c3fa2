/* The JSON view of a run, shared by `feedline status`, `feedline run --json` and the
 * HTTP API: the original's PipelineStatus fields (original-api_lifecycle.md §1.2) with
 * its bugs fixed (facet counters reported, errors persisted and listed, a real
 * dry_run flag), plus LLM usage and cost. */
#ifndef FEEDLINE_RUNJSON_H
#define FEEDLINE_RUNJSON_H

#include <jansson.h>
#include <stdint.h>

#include "store/store.h"

/* Full status (errors, usage per phase). NULL on a store error. */
/* The review decisions of a run's story phase: {"kept", "split", "merged",
 * "rejected": counts, "decisions": [...]} (store_reviews_json). NULL on a store error. */
json_t *run_review_json(store *s, int64_t run_id);
json_t *run_status_json(store *s, const run_record *r, int64_t now);
/* The same document serialised (json_dumps flags), built without parsing the stored
 * warnings back (the HTTP API's hot path). Caller frees; NULL on a store error. */
char *run_status_json_text(store *s, const run_record *r, int64_t now, size_t flags);
/* The shorter history item (original §1.4): no errors list, error_count instead. */
json_t *run_list_item_json(store *s, const run_record *r);

#endif
