/* Private to src/pipeline/: the story phase (stories.c). */
#ifndef FEEDLINE_STORIES_H
#define FEEDLINE_STORIES_H

#include "pipeline/pipeline.h"

#define STORY_MIN_GROUP 3

/* Clusters the run's passed themes into stories and orphans and writes them in one
 * transaction (so the phase is all-or-nothing and a resume simply runs it again).
 * Returns 0 done, 1 stopped before writing, -1 failed (message in err). */
int stories_run(const run_env *env, store *st, llm_provider *llm, const run_record *run,
                char *err, size_t errlen);

#endif
