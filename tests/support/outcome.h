/* The outcome of a pipeline run, for end-to-end tests that compare a run with an
 * uninterrupted reference over the same conversations (a run spread over processes,
 * crashed and resumed, or stopped and resumed): its record and counters, its result
 * rows (each conversation at most once per table), its themes and its stories. One
 * implementation for every such test. */
#ifndef FEEDLINE_TEST_OUTCOME_H
#define FEEDLINE_TEST_OUTCOME_H

#include <jansson.h>
#include <stdint.h>

#include "store/store.h"

/* One integer from SQL on the database at url, with run bound to every '?'; -1 on
 * any error. The SQL is the test's own text, never input. */
int64_t outcome_int(const char *url, const char *sql, int64_t run);
/* The run's record (status, counters); zeroed when not found. Free with run_record_free. */
run_record outcome_run(const char *url, int64_t id);
/* The run's stories as sorted "signature|title|conversation ids" lines (caller frees). */
char *outcome_stories(const char *url, int64_t run);
/* The same lines from a JSON array of stories (as the store and GET /api/stories give
 * them, with conversation_ids). */
char *outcome_stories_text(const json_t *stories);
/* The run's themes as sorted "conversation|area|component|signature|passed" lines. */
char *outcome_themes(const char *url, int64_t run);
/* Checks (CHECK*, tests/test.h) that run id on db ended exactly like ref_id on ref_db:
 * both completed, the same counters, the same rows per result table with each
 * conversation once, the same themes and stories. */
void outcome_check_same(const char *ref_db, int64_t ref_id, const char *db, int64_t id);

#endif
