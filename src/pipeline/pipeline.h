/* pipeline — runs the phases of a pipeline run (classification → embeddings → facets
 * → themes + quality gate → stories) against a store and an LLM provider, one file
 * per phase, driven by one generic engine (engine.c) that claims work, keeps up to
 * `concurrency` LLM calls in flight, writes results in short transactions and honours
 * stop requests within a second.
 *
 * Owns: phase policy (what is actionable, answer validation, the quality gate,
 * signature canonicalisation, clustering into stories, orphans, the dry-run preview)
 * and the run's progress from start to a terminal state. Must not: talk HTTP, parse
 * CLI arguments, or keep run state anywhere but the store (a process can die at any
 * point and the run resumes from the database). */
#ifndef FEEDLINE_PIPELINE_H
#define FEEDLINE_PIPELINE_H

#include <stdatomic.h>
#include <stdint.h>

#include "llm/llm.h"
#include "store/store.h"
#include "text/vocab.h"

/* Progress snapshot passed to the progress callback about once a second. */
typedef struct run_progress {
    int64_t run_id;
    enum run_phase phase;
    int64_t done;     /* items of this phase finished (done + failed) */
    int64_t failed;
    int64_t total;    /* items of this phase */
    int64_t in_flight;
} run_progress;

/* Creates the provider a run asked for ("local" or "openai"); NULL with a message if it
 * cannot (e.g. no API key). The store is the run's own, for the LLM cache. */
typedef llm_provider *(*provider_factory)(void *ctx, const run_record *run, store *st,
                                          char *err, size_t errlen);

typedef struct run_env {
    const char *db_url;          /* the run opens its own store connection */
    const vocab *vocab;          /* required */
    provider_factory make_provider; /* NULL = local analyzer only */
    void *provider_ctx;
    const char *owner;           /* unique name of this process/thread ("host:pid:n") */
    atomic_int *stop_flag;       /* optional in-process fast stop (set to 1 to stop) */
    void (*progress)(void *ctx, const run_progress *p); /* optional */
    void *progress_ctx;
    int claim_batch;             /* 0 = default (max(64, 2*concurrency)) */
    /* Optional: called with provider_ctx just before a provider made by make_provider
     * is destroyed, so an observer (the HTTP server's /metrics) can stop reading its
     * stats and keep their totals. */
    void (*provider_done)(void *ctx, llm_provider *p);
} run_env;

/* Drives an existing run (status running: just created, or resumed) through its
 * remaining phases to a terminal state, in the calling thread. Returns 0 when the run
 * completed, 1 when it stopped, -1 when it failed (the run row says why). */
int pipeline_execute(const run_env *env, int64_t run_id);

/* Convenience for the CLI: create a run with params, then execute it. *run_id is set
 * as soon as the run exists. Returns as pipeline_execute, or -2 if another run is
 * active (*run_id = that run), -3 on a store error (message in err). */
int pipeline_start(const run_env *env, const run_params *params, int64_t *run_id,
                   char *err, size_t errlen);

/* Resumes a stopped/failed run: flips it back to running (atomically; -2 if another
 * run is active, -4 if the run cannot be resumed, -5 if it does not exist) and
 * resets unfinished work, then executes it. */
int pipeline_resume(const run_env *env, int64_t run_id, char *err, size_t errlen);

/* The first half of pipeline_resume, for callers that execute the run elsewhere (the
 * HTTP server answers at once and runs it on its own thread): the atomic
 * stopped/failed -> running transition and the reset of unfinished work. Returns 0,
 * or -2 busy / -3 store error / -4 not resumable / -5 not found (message in err). */
int pipeline_resume_prepare(store *st, int64_t run_id, char *err, size_t errlen);

/* Runs only the story phase of a finished run (status completed or stopped, themes
 * extracted, stories not created yet): the original's manual "create stories". It
 * does not take the run's active slot; the caller keeps other runs from overlapping.
 * A failure is recorded on the run (errors, phase story_creation). Returns 0 done,
 * 1 stopped (env->stop_flag; nothing written), -1 failed, -4 not eligible, -5 not
 * found (message in err). */
int pipeline_create_stories(const run_env *env, int64_t run_id, char *err, size_t errlen);

/* Marks runs left running by a process that died (no heartbeat for stale_seconds) as
 * failed/resumable. Returns how many, or -1. */
int pipeline_fail_orphaned_runs(store *st, int64_t stale_seconds);

/* The heartbeat period of a running pipeline and the staleness after which a run
 * without heartbeat is considered orphaned. */
#define RUN_HEARTBEAT_SECONDS 2
#define RUN_STALE_SECONDS 15

#endif
