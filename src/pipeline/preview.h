/* The dry-run preview (original-api_lifecycle.md §2.7), persisted on the run row so it
 * survives restarts and is bounded: classification breakdown by type and confidence,
 * at most 10 samples (first one per type up to 5, then others), the 5 most common
 * theme signatures, totals. */
#ifndef FEEDLINE_PREVIEW_H
#define FEEDLINE_PREVIEW_H

#include <stdint.h>

#include "store/store.h"
#include "util/strmap.h"

#define PREVIEW_MAX_SAMPLES 10
#define PREVIEW_TYPE_SAMPLES 5
#define PREVIEW_TOP_THEMES 5
#define PREVIEW_MAX_SIGNATURES 10000 /* distinct signatures counted; more are ignored */

typedef struct preview_tally preview_tally;

/* An empty tally (the samples are chosen from the run's classifications at the end). */
preview_tally *preview_tally_new(store *s, int64_t run_id);
/* Records a theme decided for a conversation in the dry run. */
void preview_tally_add(preview_tally *t, const char *conversation_id, const char *signature,
                       int passed);
/* Chooses the samples from the run's classifications (with the signature recorded for
 * each), writes the preview JSON and the dry run's theme counters. new_signatures: the run's
 * signatures outside the vocabulary (counted new unless already registered). */
int preview_tally_finish(preview_tally *t, store *s, int64_t run_id,
                         const strmap_t *new_signatures);
void preview_tally_free(preview_tally *t);

#endif
