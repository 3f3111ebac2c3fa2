/* Private to src/pipeline/: the generic phase engine shared by the per-conversation
 * phases (classification, embeddings, facets, themes).
 *
 * A phase supplies phase_ops; the engine runs one or several phases at once, one
 * "lane" each. Per lane it claims the phase's work items of the run in batches, loads
 * their conversations and groups up to ops->group_max items into one LLM call; over all
 * lanes it keeps at most `concurrency` calls in flight, hands each completed call back
 * to its phase (which may chain a follow-up call, e.g. stage 2 after stage 1), and
 * writes finished items in short transactions together with the LLM usage they cost.
 * It checks for a stop request (in-process flag at once, the database every 250 ms),
 * renews its leases and heartbeat, refreshes the run's counters and reports progress
 * once a second.
 *
 * Streaming (several lanes): a conversation's classification result, when actionable,
 * seeds its work items of the later phases in the same transaction
 * (store_work_seed_next), claimed by the process that wrote it, which goes on with
 * the conversation at once without claiming (engine_seeded; a gated lane's items are
 * seeded pending, and another process takes them up only once our lease runs out). A free request slot
 * goes to the latest phase with work ready (conversations in progress finish first),
 * so the slots never drain at a phase boundary. Embedding items wait, costing no slot,
 * until a batch is full, the oldest has waited ENGINE_EMBED_WAIT_MS, or the slot would
 * otherwise stay unused. The run's current_phase is the earliest phase with unfinished
 * work. A provider that needs the embedding corpus first (prepare_embeddings: the
 * offline embedder's IDF statistics) gets its embeddings only once classification is
 * complete (the corpus is then fixed); facets and themes stream regardless.
 *
 * Everything here runs on the one thread that drives the run: phase callbacks need no
 * locks for state they keep in the engine. */
#ifndef FEEDLINE_ENGINE_H
#define FEEDLINE_ENGINE_H

#include <jansson.h>

#include "pipeline/pipeline.h"

typedef struct engine engine;
typedef struct lane lane;

/* One conversation's work in a phase. */
typedef struct work_item {
    lane *lane;           /* its phase */
    phase_input in;       /* conversation record and (after classification) final type */
    void *state;          /* phase-specific result under construction */
    int failed;           /* finished with a failure (reason below) */
    int lost;             /* its claim was taken over: nothing written (flush) */
    unsigned handed_off;  /* later phases its write seeded claimed by us (engine_seeded) */
    char reason[600];
    struct work_item *next;
} work_item;

#define ENGINE_MAX_GROUP 2048
#define ENGINE_HOLD 2

/* One LLM call and the items it serves. */
typedef struct call_group {
    llm_call call;
    engine *e;
    lane *lane;           /* the phase of its items */
    int step;             /* phase-specific step counter (0 = first call) */
    json_t *args;         /* owned arguments of the current call, freed on re-prepare */
    const char **texts;   /* owned array (not the strings) for LLM_EMBED */
    size_t n;
    work_item *items[];   /* n items (flexible) */
} call_group;

typedef struct phase_ops {
    enum run_phase phase;
    /* Items per call (1 for chat phases). 0 = use the provider's max_embed_batch. */
    size_t group_max;
    /* Optional: before the loop (corpus statistics, phase context). 0 or -1. */
    int (*begin)(engine *e);
    /* Optional: after the loop, always called if begin succeeded. */
    void (*end)(engine *e);
    /* Sets up g->call for the group's items (task, input, args, validate). Returns 1 to
     * submit, or 0 when every item was finished without a call (engine_item_fail). */
    int (*prepare)(engine *e, call_group *g);
    /* g->call completed (not cancelled). Returns 1 after setting up a follow-up call in
     * g (the engine resubmits it), 0 after finishing every item (ok or failed), or
     * ENGINE_HOLD when the phase keeps the group to continue it later itself
     * (engine_join_held / engine_finish_held / engine_abandon_held). */
    int (*complete)(engine *e, call_group *g);
    /* Optional: called on every turn of the engine's loop, after new calls were
     * started; a phase that holds work back (to batch it) decides here whether to
     * send it (see engine_starved). */
    void (*pump)(engine *e);
    /* Writes one successfully finished item; runs inside the engine's transaction. */
    int (*write)(engine *e, work_item *it);
    /* Frees it->state. */
    void (*free_state)(work_item *it);
} phase_ops;

/* A streaming run's embedding items wait at most this long for a fuller batch (while
 * every request slot has other work). Each embedding request takes a slot for one
 * latency, so the wait trades result latency against slots: with 1 s a 2000-
 * conversation run at 200 ms and concurrency 20 sent 39 embedding requests (about 1 s
 * of its slots in 58 s); a 50 ms wait would send one per write of results (~230). */
#define ENGINE_EMBED_WAIT_MS 1000
/* ... or until this many texts are ready (capped by the provider's batch size). */
#define ENGINE_EMBED_BATCH 256

/* One phase in the engine. */
struct lane {
    const phase_ops *ops;
    size_t group_max;      /* items per call */
    size_t batch_target;   /* a group of fewer waits (embeddings), else group_max */
    size_t claim_batch;
    work_item *ready_head, *ready_tail;
    size_t nready;
    int64_t ready_since_ms; /* when the oldest ready item was claimed */
    /* Claimable in the store when the lane was set up, less what this process claimed
     * since (others' claims are not seen: it can only overstate the work left). */
    int64_t unclaimed;
    int64_t expired_checked_ms; /* when claims last looked for expired leases */
    int exhausted;         /* no claimable work left in the store right now */
    int gated;             /* waits for classification to complete (embedding corpus) */
    int begun;             /* ops->begin succeeded (ops->end is due) */
    int busy;              /* unfinished work anywhere (last probe), for current_phase */
    /* Usage not yet written. */
    int64_t u_requests, u_cache_hits, u_prompt, u_cached, u_completion;
    double u_cost; /* llm_call_cost_usd of the calls (batch answers at the batch price) */
    /* Totals for progress. */
    int64_t total, done, failed;
    /* Items whose claims another process took over after ours ran out (a pause past
     * the lease): results discarded at the write, or ready items dropped unstarted. */
    int64_t discarded;
};

struct engine {
    const run_env *env;
    store *st;
    llm_provider *llm;
    const run_record *run;
    void *ctx[PHASE_COUNT]; /* the phases' own contexts (set in begin) */
    int concurrency;
    lane lanes[PHASE_COUNT]; /* in phase order */
    size_t nlanes;
    lane *by_phase[PHASE_COUNT];
    size_t order[PHASE_COUNT]; /* lanes by preference for a free slot */
    int streaming;         /* several lanes at once */
    enum run_phase shown;  /* the current_phase last written (driver, streaming) */

    work_item **finished;  /* awaiting write */
    size_t nfinished, finished_cap;
    size_t in_flight;      /* calls submitted and not completed */
    size_t window;         /* calls it keeps submitted: concurrency + llm->queue_ahead */
    size_t held;           /* groups a phase holds (ENGINE_HOLD) */
    int stopping;
    int fatal;
    char fatal_msg[512];

    int64_t last_flush_ms, last_stop_check_ms, last_tick_ms, last_renew_ms, last_recheck_ms;
    int64_t lease_seconds, renew_interval_ms;
    /* A claim or its follow-up read failed after the database may have applied it:
     * some items may be claimed under our name without us knowing which. They are
     * released (with everything else we hold) once our known work is drained. */
    int lost_claims;
    /* The later phases the items being written seeded pending (engine_seeded): their
     * lanes claim again after the write. */
    unsigned seeded_pending;
    /* Run warnings of the items being written (engine_add_warning). */
    char **warnings;
    size_t nwarnings, warnings_cap;
};

/* Marks an item finished successfully (its state holds the result to write). */
void engine_item_ok(engine *e, work_item *it);
/* Marks an item finished with a failure reason (recorded in run_errors). */
void engine_item_fail(engine *e, work_item *it, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* From ops->write only: a run warning about the item being written. It is stored in
 * the same transaction, after every item: the run's row is locked last, so the
 * flushes of several processes (which also insert signatures) cannot deadlock. */
void engine_add_warning(engine *e, const char *warning);
/* The later phases (bit 1u << phase) this engine goes on with itself when a
 * classification it writes seeds them: the open lanes of a streaming engine that is
 * not stopping. Their items are seeded claimed by us (store_work_seed_next's take),
 * so nothing has to claim them. */
unsigned engine_takes(const engine *e);
/* From ops->write only: the item's write seeded work of the phases in seeded, those
 * in taken claimed by us (a subset of engine_takes). Once the write is committed, the
 * item's conversation joins the taken phases' lanes, with final_type as their input's
 * classification; the other phases' lanes claim their pending work. */
void engine_seeded(engine *e, work_item *it, unsigned seeded, unsigned taken,
                   const char *final_type);
/* Sets the args of the group's next call (takes ownership; frees the previous). */
void engine_set_args(call_group *g, json_t *args);
/* Fills g->call.in from the first item's conversation. */
void engine_fill_input(call_group *g);
/* A held group is finished (its items were finished with engine_item_ok/fail). */
void engine_finish_held(engine *e, call_group *g);
/* Joins n held groups into one new group carrying all their items (the held groups
 * are consumed). The phase sets up its call (task, args, validate, step) and starts
 * it with engine_submit; its completion comes back through ops->complete. */
call_group *engine_join_held(engine *e, call_group *const *held, size_t n);
/* Starts a group's call (one made by engine_join_held). 0, or -1 when the provider
 * refused it: its items were failed and the group freed. */
int engine_submit(engine *e, call_group *g);
/* 1 when the engine has room for another call and no work of its own left to start
 * (nothing ready in any lane, nothing more to claim now): work held back should go
 * now, or the room is wasted. */
int engine_starved(const engine *e);
/* 1 when the engine has room for another call and neither the phase's lane nor
 * classification (which seeds it) has anything to start now: no more of the phase's
 * work can come soon, so work it holds back should go. In a one-phase engine, the
 * same as engine_starved. */
int engine_drained(const engine *e, enum run_phase phase);
/* A held group is dropped on stop: its items are not written (released for resume). */
void engine_abandon_held(engine *e, call_group *g);
/* Aborts the phase with a fatal error (e.g. a store failure inside a callback). */
void engine_fatal(engine *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Runs phases (nops of them, in phase order) to completion (or stop/failure) for the
 * run, all at once (streaming) when nops > 1. Classification work must already be
 * seeded; later phases' work is seeded from classifications (before, or as they are
 * written). A driver returns when every phase is complete everywhere; a helper
 * (env->helper) as soon as nothing is left to claim. Returns 0 completed, 1 stopped,
 * -1 failed (message in err). */
int engine_run(const run_env *env, store *st, llm_provider *llm, const run_record *run,
               const phase_ops *const *ops, size_t nops, char *err, size_t errlen);
/* One phase: engine_run with one lane. */
int engine_run_phase(const run_env *env, store *st, llm_provider *llm, const run_record *run,
                     const phase_ops *ops, char *err, size_t errlen);
/* The phases a conversation's actionable classification seeds (embeddings, facets,
 * themes; a dry run: themes only). *n set; returns a static array. */
const enum run_phase *engine_followers(const run_record *run, size_t *n);

/* Shared by the phase runner and the story phase: 1 if a stop was requested. */
int engine_stop_requested(const run_env *env, store *st, int64_t run_id);

/* The per-phase operations. */
extern const phase_ops CLASSIFY_OPS;
extern const phase_ops EMBED_OPS;
extern const phase_ops FACETS_OPS;
extern const phase_ops THEMES_OPS;

#endif
