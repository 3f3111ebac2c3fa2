/* store — feedline's persistence: one domain interface over two backends (SQLite, the
 * embedded default, and PostgreSQL). All SQL lives in store_*.c, written once with '?'
 * placeholders against the db driver layer (db.h); values are always bound, never
 * spliced into SQL text.
 *
 * Owns: the schema and migrations, every table, transactions, run lifecycle state
 * transitions (atomically, in the database), the work queue, phase results, stories,
 * orphans and the LLM cache. Must not: call an LLM, parse provider answers, or decide
 * pipeline policy (what is actionable, what passes the quality gate) — callers pass
 * those decisions in.
 *
 * Threading: a store handle is one connection, used by one thread at a time. Threads
 * open their own handles (store_open is cheap). */
#ifndef FEEDLINE_STORE_H
#define FEEDLINE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "text/conv.h"

typedef struct store store;

/* Return codes. Getters return STORE_FOUND/STORE_NOTFOUND; everything else STORE_OK or
 * a negative code with store_errmsg() saying why. */
enum {
    STORE_OK = 0,
    STORE_FOUND = 1,
    STORE_NOTFOUND = 2,
    STORE_ERR = -1,
    STORE_BUSY = -2,     /* another run is active */
    STORE_CONFLICT = -3, /* the run's state does not allow this transition */
    STORE_RETRY = -4     /* transient (lock timeout, lost connection); safe to retry */
};

/* Opens (and migrates) the database at url: a SQLite file path or postgres:// URL. */
int store_open(const char *url, store **out, char *err, size_t errlen);
void store_close(store *s);
const char *store_errmsg(store *s);
const char *store_backend(store *s); /* "sqlite" | "postgres" */
const char *store_url(store *s);
int store_ping(store *s);

int store_begin(store *s);
int store_commit(store *s);
int store_rollback(store *s);

/* SQLite's write-ahead log is copied into the database by a checkpoint, which by
 * default runs inside the commit that grows the log past 1 000 pages (~5 ms, two
 * fsyncs of ~2.4 ms, several times a second during a run). A connection whose commits
 * must stay short leaves them to another connection: store_checkpoint, called there
 * every few hundred ms, copies what the log holds without waiting for readers or the
 * writer (a passive checkpoint). The log starts over only once a checkpoint has copied
 * all of it before the writer appends again, which a busy writer seldom allows, so
 * store_leave_checkpoints keeps the writer's own checkpoint at STORE_WAL_FALLBACK_PAGES
 * (64 MiB of log): it then has little left to copy, and the log stays bounded. Both
 * do nothing on PostgreSQL. STORE_OK or an error. */
#define STORE_WAL_FALLBACK_PAGES 16000
int store_leave_checkpoints(store *s);
int store_checkpoint(store *s);

/* ---------------------------------------------------------------- conversations */

enum upsert_outcome { UPSERT_INSERTED = 0, UPSERT_UPDATED = 1, UPSERT_UNCHANGED = 2 };
/* Inserts or updates by id; a record with the same content_hash is left alone. */
int store_conv_upsert(store *s, const conv_record *r, int64_t now, enum upsert_outcome *out);
int64_t store_conv_count(store *s);
/* Loads one conversation (FOUND/NOTFOUND); free with conv_record_free. */
int store_conv_get(store *s, const char *id, conv_record *out);

/* ---------------------------------------------------------------- runs */

/* The phases of a run, in order; names are the original's current_phase values. */
enum run_phase {
    PHASE_CLASSIFICATION = 0, /* "classification" */
    PHASE_EMBEDDINGS,         /* "embedding_generation" */
    PHASE_FACETS,             /* "facet_extraction" */
    PHASE_THEMES,             /* "theme_extraction" */
    PHASE_STORIES,            /* "story_creation" */
    PHASE_COUNT
};
const char *run_phase_name(enum run_phase p);
int run_phase_from_name(const char *name); /* -1 if unknown */

/* Every per-phase counter, as named columns of pipeline_runs. X-macro so the store,
 * the API and the CLI list them from one place. RUN_COUNTERS are what the run produced:
 * the same for the same work however it was scheduled, so a resumed or shared run ends
 * with the counters of one uninterrupted process. */
#define RUN_COUNTERS(X)                                                                 \
    X(conversations_fetched) X(conversations_filtered) X(conversations_classified)      \
    X(conversations_stored) X(classification_failed) X(embeddings_generated)            \
    X(embeddings_failed) X(facets_extracted) X(facets_failed) X(themes_extracted)       \
    X(themes_new) X(themes_filtered) X(themes_failed) X(stories_created)                \
    X(stories_updated) X(orphans_created) X(orphans_graduated)
/* How the run went. claims_lost: work items a process of the run held but lost, its
 * claim having run out (the process was paused or stalled) or its database session
 * having ended, so the item was claimed and done again; the late result was discarded,
 * or the item dropped before it started, and one result is stored (counted by
 * store_run_add_claims_lost, not recomputed). */
#define RUN_EVENT_COUNTERS(X) X(claims_lost)
#define RUN_ALL_COUNTERS(X) RUN_COUNTERS(X) RUN_EVENT_COUNTERS(X)

typedef struct run_params {
    int days;                  /* 0 = every stored conversation; else created in the last N days */
    int64_t max_conversations; /* 0 = no cap (newest first when capped) */
    int dry_run;
    int concurrency;
    int auto_create_stories;
    const char *llm;           /* "local" | "openai" */
    const char *chat_model;
    const char *embed_model;
    int batch;                 /* per-conversation phases through the OpenAI Batch API */
} run_params;

typedef struct run_record {
    int64_t id;
    int64_t started_at;
    int64_t completed_at; /* 0 = NULL */
    int64_t date_from, date_to; /* 0 = NULL */
    char status[16];
    char current_phase[32];
    char *error_message;  /* NULL if none */
    int dry_run, auto_create_stories, stories_ready, stories_done;
    int64_t days, max_conversations, concurrency;
    char llm[16];
    char *chat_model, *embed_model, *owner;
    int64_t heartbeat_at;
#define RUN_FIELD(n) int64_t n;
    RUN_ALL_COUNTERS(RUN_FIELD)
#undef RUN_FIELD
    char *warnings_json; /* JSON array of strings */
    char *preview_json;  /* dry-run preview or NULL */
    /* LLM usage totals over all phases (from run_usage); cached_tokens is the part of
     * prompt_tokens the endpoint's prefix cache served. */
    int64_t llm_requests, llm_cache_hits, prompt_tokens, completion_tokens;
    double cost_usd;
    int64_t cached_tokens;
    int batch;            /* run_params.batch */
} run_record;
void run_record_free(run_record *r);

/* Inserts a running run. STORE_BUSY when another run is running or stopping (then
 * *active_id, if given, names it). Atomic across threads and processes. */
int store_run_create(store *s, const run_params *p, int64_t now, int64_t *run_id,
                     int64_t *active_id);
int store_run_get(store *s, int64_t id, run_record *out); /* FOUND/NOTFOUND */
/* Newest first; *out is an array of n records (free each, then the array). */
int store_run_list(store *s, int limit, int offset, run_record **out, size_t *n);
/* FOUND with the id of the running/stopping run, or NOTFOUND. */
int store_run_active(store *s, int64_t *id, char status[16]);
int store_run_set_phase(store *s, int64_t id, enum run_phase phase);
/* running -> stopping. OK if it transitioned, CONFLICT if the run is not running,
 * NOTFOUND if no such run. */
int store_run_request_stop(store *s, int64_t id);
/* 1 if the run must stop: its status is 'stopping', or it is no longer active (another
 * process finished or failed it, e.g. as orphaned) or gone; 0 while it is 'running';
 * <0 on error. */
int store_run_stop_requested(store *s, int64_t id);
/* Terminal transition: status 'completed' | 'stopped' | 'failed'. Frees the active
 * slot. A 'completed' finish of a run whose stop was requested becomes 'stopped'
 * (a pending stop wins). error may be NULL. */
int store_run_finish(store *s, int64_t id, const char *status, const char *error,
                     int64_t now);
/* stopped/failed -> running again (work already done is kept). BUSY if another run
 * is active, CONFLICT if the run is not stopped/failed (or is a completed run),
 * NOTFOUND. */
int store_run_resume(store *s, int64_t id, int64_t now);
/* Records the driving process and the time; runs whose heartbeat is older than
 * stale_before are considered orphaned by store_run_fail_orphaned. */
int store_run_heartbeat(store *s, int64_t id, const char *owner, int64_t now);
/* Marks running/stopping runs whose heartbeat is older than stale_before (or missing)
 * as failed with a resumable message; *count = how many. */
int store_run_fail_orphaned(store *s, int64_t stale_before, int64_t now, int *count);
/* The same for run id alone, only while its driving process is still owner (so a run
 * resumed by another process in the meantime is left alone); *count = 0 or 1. */
int store_run_fail_owned(store *s, int64_t id, const char *owner, int64_t now, int *count);
/* Recomputes every counter column from the result tables (so a resumed run never
 * double-counts), but claims_lost, which no table records otherwise. */
int store_run_refresh_counters(store *s, int64_t id);
int store_run_set_filtered(store *s, int64_t id, int64_t filtered);
/* A dry run stores no themes; its theme counters are set directly. */
int store_run_set_dry_theme_counts(store *s, int64_t id, int64_t extracted,
                                   int64_t filtered, int64_t fresh);
int store_run_add_warning(store *s, int64_t id, const char *warning);
/* Adds n to the run's claims_lost. */
int store_run_add_claims_lost(store *s, int64_t id, int64_t n);
int store_run_set_preview(store *s, int64_t id, const char *preview_json);
int store_run_set_stories_done(store *s, int64_t id);
/* Adds LLM usage for a phase of a run (cached_tokens: the part of prompt_tokens the
 * endpoint's prefix cache served). */
int store_run_add_usage(store *s, int64_t id, enum run_phase phase, int64_t requests,
                        int64_t cache_hits, int64_t prompt_tokens, int64_t cached_tokens,
                        int64_t completion_tokens, double cost_usd);
/* Usage per phase as a JSON object {"classification": {...}, ...}. Caller frees. */
int store_run_usage_json(store *s, int64_t id, char **json);
/* Failures of a run grouped by phase and reason, as a JSON array of
 * {"phase","message","count","conversation_ids":[<= 5]} (at most 100 groups). */
int store_run_errors_json(store *s, int64_t id, char **json);
/* Total number of failure rows for a run. */
int64_t store_run_error_count(store *s, int64_t id);

/* ---------------------------------------------------------------- work queue */

/* Seeds the classification work of a run from stored conversations created in
 * [from, to] (from = 0: no lower bound), newest first, at most max (0 = all).
 * Idempotent: does nothing if the run already has classification work. *count = the
 * run's classification work size. */
int store_work_seed_conversations(store *s, int64_t run_id, int64_t from, int64_t to,
                                  int64_t max, int64_t *count);
/* Seeds phase work from the run's actionable classifications (idempotent). */
int store_work_seed_actionable(store *s, int64_t run_id, enum run_phase phase,
                               int64_t *count);
/* Seeds one conversation's work items of the given phases (idempotent): called in the
 * transaction that stores its actionable classification, so a streaming run can take
 * the conversation to its next phases at once. The phases in take (bit 1u << phase)
 * are seeded claimed by owner until lease_until, as a claim would leave them: the
 * process that classified the conversation goes on with it without claiming. The
 * others are seeded pending. *taken: the phases of take seeded claimed (an item that
 * already existed, from an earlier attempt of the run, keeps its state). */
int store_work_seed_next(store *s, int64_t run_id, const char *conversation_id,
                         const enum run_phase *phases, size_t n, const char *owner,
                         int64_t lease_until, unsigned take, unsigned *taken);
/* Claims up to max pending (or lease-expired) items, in conversation id order.
 * *ids receives n strdup'ed ids (free each and the array). */
int store_work_claim(store *s, int64_t run_id, enum run_phase phase, const char *owner,
                     size_t max, int64_t now, int64_t lease_seconds, char ***ids, size_t *n);
/* The same, of the kinds asked for: looking for expired leases scans every claimed item
 * of the phase, so a caller that claims many times a second does it less often. */
enum { STORE_CLAIM_PENDING = 1, STORE_CLAIM_EXPIRED = 2 };
int store_work_claim_kinds(store *s, int kinds, int64_t run_id, enum run_phase phase,
                           const char *owner, size_t max, int64_t now, int64_t lease_seconds,
                           char ***ids, size_t *n);
/* Extends the lease on every item of the phase this owner still holds in the run
 * (claimed under its name: a claim another process took over is not taken back).
 * *held receives the ids renewed, sorted (free each and the array): an item the owner
 * is working on and that is not among them was lost. */
int store_work_renew(store *s, int64_t run_id, enum run_phase phase, const char *owner,
                     int64_t lease_until, char ***held, size_t *n);
/* Closes a claimed item as done (clearing an earlier failure of it) or failed, only
 * while `owner` still holds its claim; call it first in the transaction that writes
 * the item's result. STORE_CONFLICT when the claim was lost (its lease ran out and
 * another process took the item, or it was finished or given back since): the
 * caller must then write nothing for the item. */
int store_work_finish(store *s, int64_t run_id, enum run_phase phase, const char *conversation_id,
                      const char *owner, int failed);
/* Gives back the items this owner claimed but did not finish (claimed -> pending). */
int store_work_release(store *s, int64_t run_id, const char *owner);
/* Resume: claimed -> pending and failed -> pending for the whole run. */
int store_work_reset_for_resume(store *s, int64_t run_id);
typedef struct work_counts { int64_t pending, claimed, done, failed; } work_counts;
int store_work_counts(store *s, int64_t run_id, enum run_phase phase, work_counts *out);
/* Whether a process should (re)join a phase, cheaply (index probes, no scan of the
 * phase): *claimable = 1 if an item is pending or claimed with a lease that expired
 * before now (its worker died), else 0; *claimed = items claimed by anyone. */
int store_work_probe(store *s, int64_t run_id, enum run_phase phase, int64_t now,
                     int *claimable, int64_t *claimed);
/* Streams the digests of a phase's work items (any state, id order), for corpus
 * passes such as the offline embedder's IDF statistics. Constant memory. The cursor
 * holds its own statement; don't interleave other use of the store until closed. */
typedef struct store_cursor store_cursor;
store_cursor *store_work_digests(store *s, int64_t run_id, enum run_phase phase);
/* The next digest (valid until the next call), or NULL at the end or on error. */
const char *store_cursor_next(store_cursor *c);
/* STORE_OK if the cursor reached its end without error. */
int store_cursor_close(store_cursor *c);

/* ---------------------------------------------------------------- phase results */
/* Each put_* upserts the result keyed by (run, conversation). The work item is closed
 * apart, by store_work_finish, before it in the same transaction (so that a process
 * that lost its claim writes nothing). Callers group several in one transaction. */

typedef struct classification_row {
    const char *conversation_id;
    const char *stage1_type, *stage1_confidence, *urgency;
    const char *routing_priority, *routing_team;
    int auto_response_eligible;
    const char *stage2_type; /* NULL when stage 2 did not run */
    const char *stage2_confidence, *disambiguation_level;
    int classification_changed;
    const char *reasoning, *stage2_reasoning, *support_insights_json;
    const char *final_type, *final_confidence;
    int actionable;
} classification_row;
int store_put_classification(store *s, int64_t run_id, const classification_row *r,
                             int64_t now);

int store_put_embedding(store *s, int64_t run_id, const char *conversation_id,
                        const char *model, const float *vec, int dim, int64_t now);

typedef struct facet_row {
    const char *conversation_id;
    const char *action_type, *direction, *symptom, *user_goal, *model;
} facet_row;
int store_put_facet(store *s, int64_t run_id, const facet_row *r, int64_t now);

typedef struct theme_row {
    const char *conversation_id;
    const char *product_area, *component, *issue_signature;
    const char *product_area_raw, *component_raw, *proposed_signature;
    int matched_existing;
    const char *match_confidence;
    const char *user_intent, *symptoms_json, *affected_flow, *root_cause_hypothesis;
    const char *diagnostic_summary, *key_excerpts_json;
    double quality_score;
    const char *quality_details_json;
    int passed;
    const char *filter_reason; /* NULL when passed */
    const char *context_used_json, *context_gaps_json; /* NULL or "[]" = none */
} theme_row;
int store_put_theme(store *s, int64_t run_id, const theme_row *r, int64_t now);

/* Records a failure reason for a conversation: the reason of a failed item
 * (store_work_finish with failed = 1), or of a partial failure that does not fail the
 * item (e.g. stage 2 refinement failed but stage 1 stands). Call after
 * store_work_finish, which clears earlier failures of an item done. */
int store_put_run_error_for(store *s, int64_t run_id, enum run_phase phase,
                            const char *conversation_id, const char *reason, int64_t now);
/* Records a run-level error (no conversation). */
int store_put_run_error(store *s, int64_t run_id, enum run_phase phase, const char *reason,
                        int64_t now);

/* Registers a signature minted outside the vocabulary. *is_new = 1 if this call
 * inserted it (first time anywhere), 0 if it was known. Atomic across processes. */
int store_signature_register(store *s, const char *signature, const char *product_area,
                             const char *component, int64_t run_id, int64_t now, int *is_new);
/* FOUND if the signature is registered. */
int store_signature_known(store *s, const char *signature);
/* Registered signatures of an area (most recent first), at most max; for prompts. */
int store_signature_list(store *s, const char *product_area, size_t max, char ***sigs,
                         size_t *n);

/* Inputs of the classification/facet/theme phases: the conversation records of ids
 * (out[i] for ids[i]; a missing conversation leaves out[i].conv.id NULL) and, after
 * classification, the run's final type of each (NULL when not classified). */
typedef struct phase_input {
    conv_record conv;
    char *final_type;
} phase_input;
int store_phase_inputs(store *s, int64_t run_id, char *const *ids, size_t n,
                       phase_input *out);
void phase_inputs_free(phase_input *v, size_t n);
/* *dst = a deep copy of *src (free with phase_inputs_free). */
void phase_input_copy(phase_input *dst, const phase_input *src);

/* Streams the run's classifications (conversation id order) with what a dry-run
 * preview shows. fn returns non-zero to stop early; it must not use the store. */
typedef struct classification_brief {
    const char *conversation_id, *final_type, *final_confidence;
    const char *snippet; /* first 200 characters of the opening message */
    int support_count;
} classification_brief;
int store_classifications_each(store *s, int64_t run_id,
                               int (*fn)(const classification_brief *b, void *ctx), void *ctx);

/* ---------------------------------------------------------------- stories */

/* One passed theme of a run with what the story phase needs. */
typedef struct story_input {
    char *conversation_id;
    char *signature, *product_area, *component;
    char *action_type, *direction; /* "unknown"/"neutral" when the facet is missing */
    char *user_intent, *symptoms_json, *excerpt;
    float *vec; /* NULL when the embedding is missing */
    int dim;
    int64_t created_at; /* the conversation's */
} story_input;
void story_inputs_free(story_input *v, size_t n);
/* The product areas with passed themes in a run, with their sizes. */
int store_story_partitions(store *s, int64_t run_id, char ***areas, int64_t **counts,
                           size_t *n);
/* Passed themes of one area of a run (area NULL = all), ordered by conversation id. */
int store_story_inputs(store *s, int64_t run_id, const char *area, story_input **out,
                       size_t *n);

/* Story states, set by people (CLI, API) and by exports. A new run's group that
 * matches an open or exported story grows it; a rejected story absorbs its matches
 * silently (it stays rejected); a closed story is never grown (a recurrence is a new
 * story). */
#define STORY_STATES "open, exported, closed, rejected"
int story_state_valid(const char *state);

typedef struct story_new {
    int64_t run_id;
    const char *title, *description, *signature, *product_area, *component;
    const char *action_type, *direction, *grouping_method, *cluster_id, *origin;
    const char *distinguisher;     /* what sets a split story apart ("" or NULL: none) */
    const char *problem, *affected; /* the written story (may be NULL) */
    const char *criteria_json;     /* JSON array of acceptance criteria (NULL: []) */
    const char *kind;              /* "bug" | "feature" | "question" (NULL: bug) */
    const char *review_decision, *review_reason; /* NULL: keep, "" */
    double confidence;
    char *const *conversation_ids;
    char *const *excerpts;   /* may be NULL */
    char *const *signatures; /* per conversation theme signature */
    size_t n;
} story_new;
/* Inserts an open story with its evidence and its first history row (story_runs);
 * counts and first/last seen come from the evidence. */
int store_story_insert(store *s, const story_new *st, int64_t now, int64_t *story_id);
/* Adds evidence to an existing story in a run: conversations already evidence of the
 * story (or of another story in this run) are skipped; *added = how many were new.
 * Records the run in the story's history and refreshes its counts and dates. */
int store_story_add_evidence(store *s, int64_t story_id, int64_t run_id,
                             char *const *conversation_ids, char *const *excerpts,
                             char *const *signatures, size_t n, int64_t now, int64_t *added);
/* Replaces a story's title and description (a grown story's description is re-rendered
 * with its new evidence). title NULL keeps the title. */
int store_story_set_text(store *s, int64_t story_id, const char *title,
                         const char *description, int64_t now);
/* Sets a story's state (STORY_STATES) with an optional reason. NOTFOUND, or
 * STORE_CONFLICT when the state is not one of STORY_STATES. */
int store_story_set_state(store *s, int64_t story_id, const char *state, const char *reason,
                          int64_t now);
/* Every story, for matching a run's groups to existing stories (small: one row per
 * story ever made). */
typedef struct story_ref {
    int64_t id;
    char *signature, *product_area, *distinguisher, *status, *title;
} story_ref;
int store_story_refs(store *s, story_ref **out, size_t *n);
void story_refs_free(story_ref *v, size_t n);

/* The review decision of one candidate group of a run. */
typedef struct review_row {
    int64_t run_id;
    const char *product_area, *signature;
    const char *decision;   /* keep | split | merge | reject */
    const char *reason;
    int64_t conversation_count;
    const char *merge_into; /* merge: the signature it joined; else NULL */
    const char *parts_json; /* split: [{"name", "conversations"}]; NULL: [] */
    const char *reviewer;   /* "rules" (offline) or the model */
} review_row;
int store_review_put(store *s, const review_row *r, int64_t now);

/* Orphans. */
typedef struct orphan_key {
    const char *signature, *product_area, *component, *action_type, *direction, *title;
} orphan_key;
/* Finds the active orphan of the signature or creates it (first_run_id = run);
 * *created = 1 if created. */
/* The active orphan of a signature: FOUND with its id, the run that created it and
 * its member count, or NOTFOUND. */
int store_orphan_find(store *s, const char *signature, int64_t *orphan_id, int64_t *first_run,
                      int64_t *members);
int store_orphan_get_or_create(store *s, const orphan_key *k, int64_t run_id, int64_t now,
                               int64_t *orphan_id, int *created);
/* Adds a member if absent; *added = 1 if it was new. */
int store_orphan_add_member(store *s, int64_t orphan_id, const char *conversation_id,
                            int64_t run_id, const char *excerpt, int64_t now, int *added);
/* Removes a conversation from every active orphan (it is now evidence of a story). */
int store_orphan_remove_conversation(store *s, const char *conversation_id);
int64_t store_orphan_member_count(store *s, int64_t orphan_id);
/* The run that created the orphan (-1 on error). */
int64_t store_orphan_first_run(store *s, int64_t orphan_id);
/* Members (conversation ids, excerpts) of an orphan. */
int store_orphan_members(store *s, int64_t orphan_id, char ***ids, char ***excerpts,
                         size_t *n);
int store_orphan_graduate(store *s, int64_t orphan_id, int64_t story_id, int64_t now);

/* ---------------------------------------------------------------- LLM cache */

/* FOUND with *response (caller frees) and its token counts; bumps the hit count. */
int store_cache_get(store *s, const char *key, char **response, int64_t *prompt_tokens,
                    int64_t *completion_tokens);
int store_cache_put(store *s, const char *key, const char *model, const char *task,
                    const char *response, int64_t prompt_tokens, int64_t completion_tokens,
                    int64_t now);

/* ---------------------------------------------------------------- run batches */
/* The OpenAI batches of a batch-mode run (store_batch.c), written by the LLM provider
 * (the only run state it writes: the batch ids a resumed run must poll again). */
typedef struct run_batch_row {
    char *batch_id, *endpoint, *input_file_id, *status;
    char *custom_ids; /* request keys, '\n'-separated */
    int64_t requests;
    int done;
} run_batch_row;
void run_batch_rows_free(run_batch_row *rows, size_t n);
int store_batch_put(store *s, int64_t run_id, const char *batch_id, const char *endpoint,
                    const char *input_file_id, const char *status, int64_t requests,
                    const char *custom_ids, int64_t now);
/* Sets the status, and done when the batch needs no more polling. */
int store_batch_set_status(store *s, const char *batch_id, const char *status, int done,
                           int64_t now);
/* The run's batches in creation order; only those not done unless all. */
int store_batch_list(store *s, int64_t run_id, int all, run_batch_row **rows, size_t *n);

/* ---------------------------------------------------------------- sync state */
/* Small key/value state of incremental sources (store_sync.c). Keys are namespaced by
 * source ("intercom.updated_at"). */

/* FOUND with *value (caller frees), or NOTFOUND. */
int store_sync_get(store *s, const char *key, char **value);
/* Inserts or replaces the value. */
int store_sync_put(store *s, const char *key, const char *value, int64_t now);
/* A numeric watermark that only moves forward: stores value unless the stored one is
 * already >= value (atomic, so two fetches finishing together cannot move it back). */
int store_sync_advance(store *s, const char *key, int64_t value, int64_t now);
/* FOUND with the numeric value, NOTFOUND, or STORE_ERR when the stored text is not a
 * whole number. */
int store_sync_get_int(store *s, const char *key, int64_t *value);
/* Records a failure of a run's Intercom fetch under the phase name "fetch" (fetching
 * happens before the first pipeline phase, so it has no enum run_phase); conversation_id
 * "" for a run-level failure. Shown with the run's other failures. */
int store_put_fetch_error(store *s, int64_t run_id, const char *conversation_id,
                          const char *reason, int64_t now);

/* ---------------------------------------------------------------- shared rate budget */
/* A requests/min budget shared by every process using the database (store_budget.c):
 * a global schedule of send slots per key (an LLM endpoint). Grants n consecutive slots
 * interval_us apart; *first_in_us = microseconds from now (the database's clock) until
 * the first one (0 when due at once). Atomic across processes: each slot is granted
 * once and granted slots are never closer than interval_us. */
int store_budget_claim(store *s, const char *key, int n, int64_t interval_us,
                       int64_t *first_in_us);
/* FOUND with how many claims were made on key and how many slots they granted. */
int store_budget_stats(store *s, const char *key, int64_t *claims, int64_t *granted);

/* ---------------------------------------------------------------- raw access */
/* The driver connection, for the read-only query modules (reports, API listings) that
 * live beside this file. Not for use outside src/store/. */
struct db;
struct db *store_db(store *s);

#endif
