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
    int64_t limit;            /* 0 = no limit */
    int64_t offset;
    int with_conversation_ids;
} story_filter;

/* The newest run whose story phase completed (FOUND/NOTFOUND). */
int store_latest_story_run(store *s, int64_t *run_id);
/* Stories matching the filter, largest first, as a JSON array of objects (with
 * "conversation_ids" when asked); *total = the count without limit/offset. */
int store_stories_json(store *s, const story_filter *f, json_t **out, int64_t *total);

#endif
