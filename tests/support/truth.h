/* Ground truth of the bundled sample (data/sample_truth.tsv) and story purity. */
#ifndef FEEDLINE_TRUTH_H
#define FEEDLINE_TRUTH_H

#include <jansson.h>

#include "util/strmap.h"

/* Loads id -> signature ("-" for none). Returns 0. */
int truth_load(const char *path, strmap_t *out);
/* Average over stories of (members sharing the story's majority true signature / size),
 * from a JSON array of stories with "conversation_ids". Also sets *dup_convs to the
 * number of conversations listed in more than one story, and *covered to the number of
 * conversations in stories. */
double truth_purity(const strmap_t *truth, const json_t *stories, int *dup_convs, int *covered);

#endif
