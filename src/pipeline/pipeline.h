/* pipeline — runs the phases of a pipeline run (classification → embeddings → facets
 * → themes + quality gate → stories) against a store and an LLM provider, one file
 * per phase, driven by one generic engine (engine.c) that claims work, keeps up to
 * `concurrency` LLM calls in flight, writes results in short transactions and honours
 * stop requests within a second. With a provider that answers over the network the
 * per-conversation phases stream: a conversation moves to its next phases as soon as
 * it is classified, and one engine loop serves them all (see engine.h); only the story
 * phase waits for the whole set.
 *
 * Owns: phase policy (what is actionable, answer validation, the quality gate,
 * signature canonicalisation, clustering into stories, the review of candidate
 * groups, written stories, story identity across runs, orphans, the dry-run preview)
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
    int claim_batch;             /* 0 = $FEEDLINE_CLAIM_BATCH, else max(32, 2*concurrency) */
    /* Seconds a claim on work lasts without renewal: a process that stops renewing
     * (paused, stalled, or dead on another machine) loses its claims after this long
     * and another process takes them; on PostgreSQL a process killed on a live machine
     * loses them at once (its session ends). 0 = $FEEDLINE_LEASE_SECONDS when set, else
     * PIPELINE_LEASE_SECONDS. Leases are renewed every lease/4 seconds (at least every
     * second) while the process works; a result is stored only while its claim is. */
    int lease_seconds;
    /* 1 in a process that helps with a run another process drives (feedline worker):
     * the engine leaves a phase as soon as nothing is left to claim instead of waiting
     * for the phase to end, and leaves the run's heartbeat and counters to the driver. */
    int helper;
    /* Streaming of the per-conversation phases: 0 = by the provider (streams unless it
     * needs the embedding corpus first, i.e. the offline analyzer, whose answers are
     * CPU-bound and gain nothing from overlap), 1 = always, -1 = never (phase by
     * phase). Workers decide the same way as their driver. */
    int stream;
    /* Optional: called with provider_ctx just before a provider made by make_provider
     * is destroyed, so an observer (the HTTP server's /metrics) can stop reading its
     * stats and keep their totals. */
    void (*provider_done)(void *ctx, llm_provider *p);
} run_env;

/* Short: it bounds what a worker that stops without its session ending (paused, or on
 * a machine that dropped off the network) delays the run, and a live process renews
 * every second at most, ten times within it. */
#define PIPELINE_LEASE_SECONDS 10

/* The lease env asks for (see run_env.lease_seconds). */
int pipeline_lease_seconds(const run_env *env);

/* 1 when a run with this provider streams its per-conversation phases (run_env.stream,
 * else $FEEDLINE_STREAM=0/1, else by the provider). */
int pipeline_streams(const run_env *env, const llm_provider *llm);

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
/* 1 when the run is over (completed or stopped): stories can only be made by hand. */
int pipeline_run_finished(const run_record *run);

/* Marks runs left running by a process that died as failed/resumable: no heartbeat
 * for stale_seconds, or (at once) the process that drove it, its owner "host:pid", is
 * on this host and no longer exists. pipeline_start and pipeline_resume_prepare call
 * it first with RUN_STALE_SECONDS, as the HTTP server does periodically. Logs what it
 * did; returns how many, or -1. */
int pipeline_fail_orphaned_runs(store *st, int64_t stale_seconds);

/* ------------------------------------------------------------ workers (worker.c) */
/* A worker process joins the active run of a shared (PostgreSQL) database and helps
 * with its per-conversation phases: classification, embeddings, facets, themes. The
 * process that started the run (feedline run / serve, "the coordinator") stays in
 * charge: it selects the conversations, waits until every item is done, keeps
 * current_phase, runs the story phase once and finishes the run. Workers claim batches
 * (FOR UPDATE SKIP LOCKED, with a lease) of every per-conversation phase when the run
 * streams (later phases first, as the driver does), else of the current phase only;
 * they process them with their own provider and concurrency, and write the results,
 * which are keyed by (run, conversation) so whoever computes an item, it is stored
 * once; a classification they write seeds the conversation's later phases like the
 * driver's. Dry runs are left to the coordinator (it keeps the preview tally in
 * memory). */
typedef struct worker_options {
    int concurrency; /* LLM calls in flight in this process; 0 = the run's setting */
    int once;        /* return as soon as no run is active (at start or after one) */
    int idle_ms;     /* how often to look for work while there is none; 0 = 500 */
    const char *llm; /* only join runs that use this provider ("local"/"openai"); NULL = any */
} worker_options;

/* Runs the worker loop until *env->stop_flag is set (required), or, with o->once,
 * until no run is active. env->owner must be unique to the process; env->helper is
 * implied. A run whose driver's heartbeat is older than RUN_STALE_SECONDS is not
 * joined (nobody would advance it). Claims are released on the way out. Returns 0,
 * or -1 when the database cannot be opened (message in err). */
int pipeline_worker(const run_env *env, const worker_options *o, char *err, size_t errlen);

/* The heartbeat period of a running pipeline and the staleness after which a run
 * without heartbeat is considered orphaned. */
#define RUN_HEARTBEAT_SECONDS 2
#define RUN_STALE_SECONDS 15

#endif
