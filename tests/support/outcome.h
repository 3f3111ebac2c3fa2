/* The outcome of a run, for end-to-end tests that compare a run disturbed by a fault
 * (a killed worker, a restarted server, a full disk...) with an uninterrupted run over
 * the same data: the run record, its result rows, its stories. One implementation for
 * every such test. */
#ifndef FEEDLINE_TEST_OUTCOME_H
#define FEEDLINE_TEST_OUTCOME_H

#include <jansson.h>
#include <stdint.h>

#include "store/store.h"

/* One integer from SQL on the database at url, with run bound to every '?'; -1 on
 * any error. */
int64_t outcome_int(const char *url, const char *sql, int64_t run);
/* The run's record (zeroed when it cannot be read); run_record_free it. */
run_record outcome_run(const char *url, int64_t id);
/* The run's stories as sorted "signature|title|conversation ids" lines. Caller frees. */
char *outcome_stories(const char *url, int64_t run);
/* The same lines for an array of stories as the store and GET /api/stories give them
 * (with conversation_ids). Caller frees. */
char *outcome_stories_of(const json_t *stories);
/* 1 when run id of db ended exactly like run ref_id of ref_db: both completed, the same
 * counters, the same rows in every result table (each conversation once) and the same
 * stories, with some work in each. Otherwise 0, each difference printed to stdout. */
int outcome_same(const char *ref_db, int64_t ref_id, const char *db, int64_t id);

#endif
