/* The schema, as versioned migrations written once for both backends.
 *
 * Portable SQL with three tokens that each backend translates (migrate.c):
 *   {{ID}}    auto-increment primary key  (SQLite INTEGER PRIMARY KEY AUTOINCREMENT,
 *                                          PostgreSQL BIGSERIAL PRIMARY KEY)
 *   {{BLOB}}  binary column               (BLOB / BYTEA)
 *   {{REAL}}  floating point               (REAL / DOUBLE PRECISION)
 * Everything else (BIGINT, TEXT, partial unique indexes, ON CONFLICT) is common to
 * SQLite >= 3.35 and PostgreSQL >= 12. Times are UTC unix seconds (BIGINT); JSON is
 * stored as TEXT and always produced by jansson; booleans are 0/1 BIGINT.
 *
 * Append new migrations; never edit an applied one. */
#include "store/migrations.h"

static const char MIGRATION_1[] =
    /* Conversations as imported/fetched, with the texts every phase reads. */
    "CREATE TABLE conversations ("
    " id TEXT PRIMARY KEY,"
    " created_at BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL DEFAULT 0,"
    " source TEXT NOT NULL,"
    " source_type TEXT, source_url TEXT, subject TEXT,"
    " contact_id TEXT, contact_email TEXT, external_id TEXT,"
    " tags TEXT NOT NULL DEFAULT '[]',"
    " body TEXT NOT NULL, digest TEXT NOT NULL, transcript TEXT NOT NULL,"
    " support_text TEXT NOT NULL DEFAULT '', support_count BIGINT NOT NULL DEFAULT 0,"
    " content_hash TEXT NOT NULL,"
    " imported_at BIGINT NOT NULL, changed_at BIGINT NOT NULL);"
    "CREATE INDEX conversations_created ON conversations(created_at);"

    /* Runs. active_slot is 1 while a run is running or stopping and NULL otherwise;
     * its UNIQUE constraint is what makes 'at most one active run per database' atomic,
     * across threads and processes alike. */
    "CREATE TABLE pipeline_runs ("
    " id {{ID}},"
    " started_at BIGINT NOT NULL, completed_at BIGINT,"
    " date_from BIGINT, date_to BIGINT,"
    " status TEXT NOT NULL CHECK (status IN"
    "  ('running','stopping','stopped','completed','failed')),"
    " active_slot BIGINT UNIQUE CHECK (active_slot = 1),"
    " current_phase TEXT NOT NULL DEFAULT 'classification',"
    " error_message TEXT,"
    " dry_run BIGINT NOT NULL DEFAULT 0,"
    " auto_create_stories BIGINT NOT NULL DEFAULT 0,"
    " days BIGINT, max_conversations BIGINT,"
    " concurrency BIGINT NOT NULL DEFAULT 20,"
    " llm TEXT NOT NULL DEFAULT 'local', chat_model TEXT, embed_model TEXT,"
    " owner TEXT, heartbeat_at BIGINT,"
    " conversations_fetched BIGINT NOT NULL DEFAULT 0,"
    " conversations_filtered BIGINT NOT NULL DEFAULT 0,"
    " conversations_classified BIGINT NOT NULL DEFAULT 0,"
    " conversations_stored BIGINT NOT NULL DEFAULT 0,"
    " classification_failed BIGINT NOT NULL DEFAULT 0,"
    " embeddings_generated BIGINT NOT NULL DEFAULT 0,"
    " embeddings_failed BIGINT NOT NULL DEFAULT 0,"
    " facets_extracted BIGINT NOT NULL DEFAULT 0,"
    " facets_failed BIGINT NOT NULL DEFAULT 0,"
    " themes_extracted BIGINT NOT NULL DEFAULT 0,"
    " themes_new BIGINT NOT NULL DEFAULT 0,"
    " themes_filtered BIGINT NOT NULL DEFAULT 0,"
    " themes_failed BIGINT NOT NULL DEFAULT 0,"
    " stories_created BIGINT NOT NULL DEFAULT 0,"
    " orphans_created BIGINT NOT NULL DEFAULT 0,"
    " orphans_graduated BIGINT NOT NULL DEFAULT 0,"
    " stories_ready BIGINT NOT NULL DEFAULT 0,"
    " stories_done BIGINT NOT NULL DEFAULT 0,"
    " warnings TEXT NOT NULL DEFAULT '[]',"
    " preview TEXT);"

    /* Per-phase work queue of a run: one row per (run, phase, conversation). Workers
     * claim pending rows in batches with a lease; done/failed rows are final until a
     * resume turns failed ones back to pending. */
    "CREATE TABLE work_items ("
    " run_id BIGINT NOT NULL REFERENCES pipeline_runs(id) ON DELETE CASCADE,"
    " phase TEXT NOT NULL, conversation_id TEXT NOT NULL,"
    " state TEXT NOT NULL DEFAULT 'pending'"
    "  CHECK (state IN ('pending','claimed','done','failed')),"
    " owner TEXT, lease_until BIGINT, attempts BIGINT NOT NULL DEFAULT 0,"
    " PRIMARY KEY (run_id, phase, conversation_id));"
    /* Claims read pending items in id order: the index serves both, no sort. */
    "CREATE INDEX work_items_state ON work_items(run_id, phase, state, conversation_id);"

    /* Failures, counted per phase with their reason; conversation_id '' for run-level. */
    "CREATE TABLE run_errors ("
    " run_id BIGINT NOT NULL REFERENCES pipeline_runs(id) ON DELETE CASCADE,"
    " phase TEXT NOT NULL, conversation_id TEXT NOT NULL DEFAULT '',"
    " reason TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 1, created_at BIGINT NOT NULL,"
    " PRIMARY KEY (run_id, phase, conversation_id));"

    /* LLM usage per run and phase. */
    "CREATE TABLE run_usage ("
    " run_id BIGINT NOT NULL REFERENCES pipeline_runs(id) ON DELETE CASCADE,"
    " phase TEXT NOT NULL,"
    " requests BIGINT NOT NULL DEFAULT 0, cache_hits BIGINT NOT NULL DEFAULT 0,"
    " prompt_tokens BIGINT NOT NULL DEFAULT 0, completion_tokens BIGINT NOT NULL DEFAULT 0,"
    " cost_usd {{REAL}} NOT NULL DEFAULT 0,"
    " PRIMARY KEY (run_id, phase));"

    /* Phase results, each keyed by (run, conversation) and written idempotently. */
    "CREATE TABLE classifications ("
    " run_id BIGINT NOT NULL REFERENCES pipeline_runs(id) ON DELETE CASCADE,"
    " conversation_id TEXT NOT NULL,"
    " stage1_type TEXT NOT NULL, stage1_confidence TEXT NOT NULL, urgency TEXT NOT NULL,"
    " routing_priority TEXT NOT NULL, routing_team TEXT NOT NULL,"
    " auto_response_eligible BIGINT NOT NULL DEFAULT 0,"
    " stage2_type TEXT, stage2_confidence TEXT, disambiguation_level TEXT,"
    " classification_changed BIGINT NOT NULL DEFAULT 0,"
    " reasoning TEXT, stage2_reasoning TEXT, support_insights TEXT,"
    " final_type TEXT NOT NULL, final_confidence TEXT NOT NULL,"
    " actionable BIGINT NOT NULL, created_at BIGINT NOT NULL,"
    " PRIMARY KEY (run_id, conversation_id));"
    "CREATE INDEX classifications_actionable ON classifications(run_id, actionable);"

    "CREATE TABLE embeddings ("
    " run_id BIGINT NOT NULL REFERENCES pipeline_runs(id) ON DELETE CASCADE,"
    " conversation_id TEXT NOT NULL,"
    " model TEXT NOT NULL, dim BIGINT NOT NULL, vector {{BLOB}} NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " PRIMARY KEY (run_id, conversation_id));"

    "CREATE TABLE facets ("
    " run_id BIGINT NOT NULL REFERENCES pipeline_runs(id) ON DELETE CASCADE,"
    " conversation_id TEXT NOT NULL,"
    " action_type TEXT NOT NULL, direction TEXT NOT NULL,"
    " symptom TEXT NOT NULL DEFAULT '', user_goal TEXT NOT NULL DEFAULT '',"
    " model TEXT NOT NULL, created_at BIGINT NOT NULL,"
    " PRIMARY KEY (run_id, conversation_id));"

    /* Themes: one per (run, conversation), passed or filtered by the quality gate. */
    "CREATE TABLE themes ("
    " id {{ID}},"
    " run_id BIGINT NOT NULL REFERENCES pipeline_runs(id) ON DELETE CASCADE,"
    " conversation_id TEXT NOT NULL,"
    " product_area TEXT NOT NULL, component TEXT NOT NULL, issue_signature TEXT NOT NULL,"
    " product_area_raw TEXT, component_raw TEXT, proposed_signature TEXT,"
    " matched_existing BIGINT NOT NULL DEFAULT 0, match_confidence TEXT NOT NULL,"
    " user_intent TEXT NOT NULL DEFAULT '', symptoms TEXT NOT NULL DEFAULT '[]',"
    " affected_flow TEXT NOT NULL DEFAULT '', root_cause_hypothesis TEXT NOT NULL DEFAULT '',"
    " diagnostic_summary TEXT NOT NULL DEFAULT '', key_excerpts TEXT NOT NULL DEFAULT '[]',"
    " quality_score {{REAL}} NOT NULL, quality_details TEXT NOT NULL DEFAULT '{}',"
    " passed BIGINT NOT NULL, filter_reason TEXT,"
    " created_at BIGINT NOT NULL,"
    " UNIQUE (run_id, conversation_id));"
    "CREATE INDEX themes_run_area ON themes(run_id, passed, product_area);"
    "CREATE INDEX themes_signature ON themes(issue_signature);"

    "CREATE TABLE context_usage_logs ("
    " theme_id BIGINT NOT NULL UNIQUE REFERENCES themes(id) ON DELETE CASCADE,"
    " run_id BIGINT NOT NULL, conversation_id TEXT NOT NULL,"
    " context_used TEXT NOT NULL DEFAULT '[]', context_gaps TEXT NOT NULL DEFAULT '[]',"
    " created_at BIGINT NOT NULL);"

    /* Signatures minted outside the vocabulary, registered atomically: the first
     * run to insert one is the run that found it (themes_new). */
    "CREATE TABLE signatures ("
    " signature TEXT PRIMARY KEY, product_area TEXT NOT NULL, component TEXT NOT NULL,"
    " first_run_id BIGINT, first_seen_at BIGINT NOT NULL);"
    "CREATE INDEX signatures_first_run ON signatures(first_run_id);"

    /* Stories and their evidence. A conversation is evidence of at most one story per
     * run (UNIQUE(run_id, conversation_id)). */
    "CREATE TABLE stories ("
    " id {{ID}},"
    " run_id BIGINT REFERENCES pipeline_runs(id) ON DELETE SET NULL,"
    " title TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',"
    " signature TEXT NOT NULL, product_area TEXT NOT NULL, component TEXT NOT NULL,"
    " action_type TEXT NOT NULL, direction TEXT NOT NULL,"
    " status TEXT NOT NULL DEFAULT 'candidate',"
    " confidence_score {{REAL}} NOT NULL DEFAULT 0,"
    " conversation_count BIGINT NOT NULL DEFAULT 0,"
    " grouping_method TEXT NOT NULL, cluster_id TEXT, origin TEXT NOT NULL,"
    " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);"
    "CREATE INDEX stories_run ON stories(run_id);"
    "CREATE TABLE story_evidence ("
    " story_id BIGINT NOT NULL REFERENCES stories(id) ON DELETE CASCADE,"
    " run_id BIGINT NOT NULL, conversation_id TEXT NOT NULL,"
    " signature TEXT NOT NULL, excerpt TEXT NOT NULL DEFAULT '',"
    " PRIMARY KEY (story_id, conversation_id),"
    " UNIQUE (run_id, conversation_id));"

    /* Orphans: groups too small for a story, accumulated across runs by a stable
     * signature; one active orphan per signature (partial unique index). */
    "CREATE TABLE orphans ("
    " id {{ID}},"
    " signature TEXT NOT NULL, product_area TEXT NOT NULL, component TEXT NOT NULL,"
    " action_type TEXT NOT NULL, direction TEXT NOT NULL,"
    " title TEXT NOT NULL DEFAULT '',"
    " first_run_id BIGINT, last_run_id BIGINT,"
    " first_seen_at BIGINT NOT NULL, last_updated_at BIGINT NOT NULL,"
    " graduated_at BIGINT, story_id BIGINT REFERENCES stories(id) ON DELETE SET NULL);"
    "CREATE UNIQUE INDEX orphans_active_signature ON orphans(signature)"
    " WHERE graduated_at IS NULL;"
    "CREATE TABLE orphan_members ("
    " orphan_id BIGINT NOT NULL REFERENCES orphans(id) ON DELETE CASCADE,"
    " conversation_id TEXT NOT NULL, run_id BIGINT NOT NULL,"
    " excerpt TEXT NOT NULL DEFAULT '', added_at BIGINT NOT NULL,"
    " PRIMARY KEY (orphan_id, conversation_id));"

    /* Persistent LLM response cache: key = SHA-256 of model + request body. */
    "CREATE TABLE llm_cache ("
    " cache_key TEXT PRIMARY KEY, model TEXT NOT NULL, task TEXT NOT NULL,"
    " response TEXT NOT NULL,"
    " prompt_tokens BIGINT NOT NULL DEFAULT 0, completion_tokens BIGINT NOT NULL DEFAULT 0,"
    " created_at BIGINT NOT NULL, hits BIGINT NOT NULL DEFAULT 0);";

/* Incremental-sync state of the sources: small key/value rows (for Intercom, the
 * newest updated_at fetched, so `feedline fetch --since-last` asks only for what is new
 * or changed, and a summary of the last fetch). */
static const char MIGRATION_2[] =
    "CREATE TABLE sync_state ("
    " key TEXT PRIMARY KEY,"
    " value TEXT NOT NULL,"
    " updated_at BIGINT NOT NULL);";

/* The requests/min budget of an LLM endpoint shared by every process on the database
 * (feedline workers): one row per endpoint holding the next free send slot of a global
 * schedule, in microseconds of the database's clock (store_budget.c). */
static const char MIGRATION_3[] =
    "CREATE TABLE rate_budget ("
    " key TEXT PRIMARY KEY,"
    " next_us BIGINT NOT NULL DEFAULT 0,"
    " claims BIGINT NOT NULL DEFAULT 0,"
    " granted BIGINT NOT NULL DEFAULT 0);";


/* Stories that product teams act on (issue 12): a story lives across runs (identity by
 * signature: a later run's matching group adds evidence instead of a twin), has a state
 * people set (open / exported / closed / rejected), a written title and description,
 * the review decision that shaped it, and the tracker tickets it was exported to.
 *  - story_runs: the history of a story, one row per run that created or grew it;
 *  - story_reviews: the review decision of every candidate group of a run (keep,
 *    split, merge, reject), with its reason, including the rejected ones (no story);
 *  - story_exports: the ticket of a story in one tracker (idempotent re-export). */
static const char MIGRATION_4[] =
    "ALTER TABLE pipeline_runs ADD COLUMN stories_updated BIGINT NOT NULL DEFAULT 0;"
    "ALTER TABLE stories ADD COLUMN last_run_id BIGINT;"
    "ALTER TABLE stories ADD COLUMN first_seen_at BIGINT;"
    "ALTER TABLE stories ADD COLUMN last_seen_at BIGINT;"
    "ALTER TABLE stories ADD COLUMN distinguisher TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE stories ADD COLUMN problem TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE stories ADD COLUMN affected TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE stories ADD COLUMN acceptance_criteria TEXT NOT NULL DEFAULT '[]';"
    "ALTER TABLE stories ADD COLUMN story_kind TEXT NOT NULL DEFAULT 'bug';"
    "ALTER TABLE stories ADD COLUMN review_decision TEXT NOT NULL DEFAULT 'keep';"
    "ALTER TABLE stories ADD COLUMN review_reason TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE stories ADD COLUMN state_reason TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE stories ADD COLUMN state_changed_at BIGINT;"
    "UPDATE stories SET status = 'open' WHERE status = 'candidate';"
    "UPDATE stories SET last_run_id = run_id;"
    "CREATE INDEX stories_signature ON stories(signature, status);"
    "CREATE TABLE story_runs ("
    " story_id BIGINT NOT NULL REFERENCES stories(id) ON DELETE CASCADE,"
    " run_id BIGINT NOT NULL,"
    " created BIGINT NOT NULL DEFAULT 0,"
    " conversations_added BIGINT NOT NULL DEFAULT 0,"
    " at BIGINT NOT NULL,"
    " PRIMARY KEY (story_id, run_id));"
    "CREATE INDEX story_runs_run ON story_runs(run_id);"
    "INSERT INTO story_runs (story_id, run_id, created, conversations_added, at)"
    " SELECT id, run_id, 1, conversation_count, created_at FROM stories"
    " WHERE run_id IS NOT NULL;"
    "CREATE TABLE story_reviews ("
    " id {{ID}},"
    " run_id BIGINT NOT NULL REFERENCES pipeline_runs(id) ON DELETE CASCADE,"
    " product_area TEXT NOT NULL, signature TEXT NOT NULL,"
    " decision TEXT NOT NULL CHECK (decision IN ('keep','split','merge','reject')),"
    " reason TEXT NOT NULL DEFAULT '',"
    " conversation_count BIGINT NOT NULL DEFAULT 0,"
    " merge_into TEXT,"
    " parts TEXT NOT NULL DEFAULT '[]',"
    " reviewer TEXT NOT NULL DEFAULT 'rules',"
    " created_at BIGINT NOT NULL,"
    " UNIQUE (run_id, product_area, signature));"
    "CREATE TABLE story_exports ("
    " story_id BIGINT NOT NULL REFERENCES stories(id) ON DELETE CASCADE,"
    " tracker TEXT NOT NULL,"
    " external_id TEXT NOT NULL, url TEXT NOT NULL DEFAULT '',"
    " evidence_count BIGINT NOT NULL DEFAULT 0,"
    " exported_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,"
    " PRIMARY KEY (story_id, tracker));";

/* Version 5: the prompt tokens the endpoint's prefix cache served, per run and phase
 * (part of prompt_tokens, priced at the cached-input rate). */
static const char MIGRATION_5[] =
    "ALTER TABLE run_usage ADD COLUMN cached_tokens BIGINT NOT NULL DEFAULT 0;";

/* Migration 6: the database session that holds a work item's claim. On PostgreSQL,
 * claim and renewal record pg_backend_pid() of the claimer's connection: a claim whose
 * session has ended (its process was killed: the server drops the connection at once)
 * is taken over without waiting for its lease. SQLite leaves it NULL (lease only). */
static const char MIGRATION_6[] = "ALTER TABLE work_items ADD COLUMN owner_session BIGINT;";

/* Migration 7: batch mode (feedline run --batch). The run remembers that it sends its
 * per-conversation phases through the OpenAI Batch API, and every batch it created:
 * a resumed run polls the same batches instead of sending their requests again.
 * custom_ids: the request keys of the batch, one per line (the LLM cache key of the
 * request body), so a resumed run knows which of its calls a batch already carries.
 * done = 1 once the batch's output was read (or it is gone): nothing left to poll. */
static const char MIGRATION_7[] =
    "ALTER TABLE pipeline_runs ADD COLUMN batch BIGINT NOT NULL DEFAULT 0;"
    "CREATE TABLE run_batches ("
    " batch_id TEXT PRIMARY KEY,"
    " run_id BIGINT NOT NULL REFERENCES pipeline_runs(id) ON DELETE CASCADE,"
    " endpoint TEXT NOT NULL,"
    " input_file_id TEXT NOT NULL,"
    " status TEXT NOT NULL,"
    " requests BIGINT NOT NULL DEFAULT 0,"
    " custom_ids TEXT NOT NULL DEFAULT '',"
    " done BIGINT NOT NULL DEFAULT 0,"
    " created_at BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL);"
    "CREATE INDEX run_batches_run ON run_batches(run_id, done);";

/* A conversation's themes across runs: a story's evidence is joined to the theme of
 * each of its conversations (story detail, description rendering), which scanned
 * every theme per evidence row without it (minutes on a 100k-conversation run). */
static const char MIGRATION_8[] =
    "CREATE INDEX themes_conversation ON themes(conversation_id, run_id);";

/* Migration 9: the story phase loads each product area's passed themes ordered by
 * conversation id. With only (run_id, passed, product_area) SQLite preferred the
 * (run_id, conversation_id) unique index, which gives that order without a sort but
 * reads every theme of the run for each area (19 areas: 19 passes over the run's
 * themes, a tenth of the phase at 20k conversations). With conversation_id at the end
 * the one index gives both the area's rows and their order; it still serves
 * everything the narrower one did (a prefix), so it replaces it. */
static const char MIGRATION_9[] =
    "DROP INDEX themes_run_area;"
    "CREATE INDEX themes_run_area ON themes(run_id, passed, product_area, conversation_id);";

/* Migration 10: a story written from a run takes its conversations out of the active
 * orphans (store_orphan_remove_conversation, once per conversation). The primary key
 * leads with orphan_id, so each removal probed every active orphan: 10 000 removals
 * with 300 active orphans took ~1 s on SQLite. By conversation, each is one lookup. */
static const char MIGRATION_10[] =
    "CREATE INDEX orphan_members_conversation ON orphan_members(conversation_id);";

/* Migration 11: a run counts the work its processes lost, their claim having run out
 * or their database session ended while they held it (store_run_add_claims_lost); the
 * result tables cannot say it (the result of whoever took the item over is the one
 * stored). */
static const char MIGRATION_11[] =
    "ALTER TABLE pipeline_runs ADD COLUMN claims_lost BIGINT NOT NULL DEFAULT 0;";

const migration MIGRATIONS[] = {
    {1, "initial schema", MIGRATION_1},
    {2, "sync state", MIGRATION_2},
    {3, "shared rate budget", MIGRATION_3},
    {4, "story lifecycle, reviews and exports", MIGRATION_4},
    {5, "cached prompt tokens", MIGRATION_5},
    {6, "claim sessions", MIGRATION_6},
    {7, "batch mode", MIGRATION_7},
    {8, "themes by conversation", MIGRATION_8},
    {9, "a run's themes by area in conversation order", MIGRATION_9},
    {10, "orphan members by conversation", MIGRATION_10},
    {11, "lost claims per run", MIGRATION_11},
};
const size_t MIGRATION_COUNT = sizeof MIGRATIONS / sizeof MIGRATIONS[0];
