/* Runs: the lifecycle state machine lives here, each transition a single conditional
 * UPDATE so that concurrent requests (threads or processes) cannot both win. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "store/store_internal.h"
#include "util/jsonx.h"
#include "util/mem.h"

static const char *const PHASE_NAMES[PHASE_COUNT] = {
    "classification", "embedding_generation", "facet_extraction", "theme_extraction",
    "story_creation"};

const char *run_phase_name(enum run_phase p) {
    return (unsigned)p < PHASE_COUNT ? PHASE_NAMES[p] : "unknown";
}

int run_phase_from_name(const char *name) {
    for (int i = 0; name && i < PHASE_COUNT; i++)
        if (strcmp(PHASE_NAMES[i], name) == 0) return i;
    return -1;
}

void run_record_free(run_record *r) {
    if (!r) return;
    free(r->error_message);
    free(r->chat_model);
    free(r->embed_model);
    free(r->owner);
    free(r->warnings_json);
    free(r->preview_json);
    memset(r, 0, sizeof *r);
}

#define STR_(x) #x
#define COUNTER_COL(n) ", r." STR_(n)
#define RUN_SELECT                                                                      \
    "SELECT r.id, r.started_at, r.completed_at, r.date_from, r.date_to, r.status,"      \
    " r.current_phase, r.error_message, r.dry_run, r.auto_create_stories,"              \
    " r.stories_ready, r.stories_done, r.days, r.max_conversations, r.concurrency,"     \
    " r.llm, r.chat_model, r.embed_model, r.owner, r.heartbeat_at, r.warnings,"         \
    " r.preview,"                                                                       \
    " COALESCE(u.requests, 0), COALESCE(u.cache_hits, 0), COALESCE(u.prompt_tokens, 0)," \
    " COALESCE(u.completion_tokens, 0), COALESCE(u.cost_usd, 0),"                       \
    " COALESCE(u.cached_tokens, 0), r.batch"                                            \
    RUN_ALL_COUNTERS(COUNTER_COL)                                                       \
    " FROM pipeline_runs r LEFT JOIN (SELECT run_id, SUM(requests) AS requests,"        \
    " SUM(cache_hits) AS cache_hits, SUM(prompt_tokens) AS prompt_tokens,"              \
    " SUM(completion_tokens) AS completion_tokens, SUM(cost_usd) AS cost_usd,"          \
    " SUM(cached_tokens) AS cached_tokens"                                              \
    " FROM run_usage GROUP BY run_id) u ON u.run_id = r.id"

static void read_run(db_stmt *st, run_record *r) {
    memset(r, 0, sizeof *r);
    int i = 0;
    r->id = db_col_int(st, i++);
    r->started_at = db_col_int(st, i++);
    r->completed_at = db_col_int(st, i++);
    r->date_from = db_col_int(st, i++);
    r->date_to = db_col_int(st, i++);
    snprintf(r->status, sizeof r->status, "%s", db_col_text(st, i++));
    snprintf(r->current_phase, sizeof r->current_phase, "%s", db_col_text(st, i++));
    r->error_message = store_col_dup(st, i++);
    r->dry_run = (int)db_col_int(st, i++);
    r->auto_create_stories = (int)db_col_int(st, i++);
    r->stories_ready = (int)db_col_int(st, i++);
    r->stories_done = (int)db_col_int(st, i++);
    r->days = db_col_int(st, i++);
    r->max_conversations = db_col_int(st, i++);
    r->concurrency = db_col_int(st, i++);
    snprintf(r->llm, sizeof r->llm, "%s", db_col_text(st, i++) ? db_col_text(st, i - 1) : "");
    r->chat_model = store_col_dup(st, i++);
    r->embed_model = store_col_dup(st, i++);
    r->owner = store_col_dup(st, i++);
    r->heartbeat_at = db_col_int(st, i++);
    r->warnings_json = store_col_dup(st, i++);
    r->preview_json = store_col_dup(st, i++);
    r->llm_requests = db_col_int(st, i++);
    r->llm_cache_hits = db_col_int(st, i++);
    r->prompt_tokens = db_col_int(st, i++);
    r->completion_tokens = db_col_int(st, i++);
    r->cost_usd = db_col_double(st, i++);
    r->cached_tokens = db_col_int(st, i++);
    r->batch = (int)db_col_int(st, i++);
#define READ_COUNTER(n) r->n = db_col_int(st, i++);
    RUN_ALL_COUNTERS(READ_COUNTER)
#undef READ_COUNTER
}

int store_run_create(store *s, const run_params *p, int64_t now, int64_t *run_id,
                     int64_t *active_id) {
    db_stmt *st = store_stmt(s,
        "INSERT INTO pipeline_runs (started_at, date_from, date_to, status, active_slot,"
        " current_phase, dry_run, auto_create_stories, days, max_conversations, concurrency,"
        " llm, chat_model, embed_model, heartbeat_at, batch)"
        " VALUES (?, ?, ?, 'running', 1, 'classification', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " RETURNING id");
    if (!st) return STORE_ERR;
    int i = 1;
    db_bind_int(st, i++, now);
    if (p->days > 0) db_bind_int(st, i++, now - (int64_t)p->days * 86400);
    else db_bind_null(st, i++);
    db_bind_int(st, i++, now);
    db_bind_int(st, i++, p->dry_run ? 1 : 0);
    db_bind_int(st, i++, p->auto_create_stories ? 1 : 0);
    db_bind_int(st, i++, p->days);
    db_bind_int(st, i++, p->max_conversations);
    db_bind_int(st, i++, p->concurrency);
    db_bind_text(st, i++, p->llm ? p->llm : "local");
    db_bind_text(st, i++, p->chat_model);
    db_bind_text(st, i++, p->embed_model);
    db_bind_int(st, i++, now);
    db_bind_int(st, i++, p->batch ? 1 : 0);
    int rc = db_step(st);
    if (rc == DB_ROW) {
        *run_id = db_col_int(st, 0);
        while (db_step(st) == DB_ROW) {}
        db_reset(st);
        return STORE_OK;
    }
    db_reset(st);
    if (rc == DB_ERR_CONSTRAINT) {
        /* The active slot is taken: report who holds it. */
        snprintf(s->err, sizeof s->err, "another pipeline run is active");
        if (active_id) {
            char status[16];
            *active_id = 0;
            if (store_run_active(s, active_id, status) < 0) return STORE_ERR;
        }
        return STORE_BUSY;
    }
    return store_fail(s, rc, "creating run");
}

int store_run_get(store *s, int64_t id, run_record *out) {
    memset(out, 0, sizeof *out);
    db_stmt *st = store_stmt(s, RUN_SELECT " WHERE r.id = ?");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, id);
    int rc = store_step_row(s, st, "loading run");
    if (rc == STORE_FOUND) read_run(st, out);
    if (rc >= 0) db_reset(st);
    return rc;
}

int store_run_list(store *s, int limit, int offset, run_record **out, size_t *n) {
    *out = NULL;
    *n = 0;
    db_stmt *st = store_stmt(s, RUN_SELECT " ORDER BY r.started_at DESC, r.id DESC LIMIT ? OFFSET ?");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, limit);
    db_bind_int(st, 2, offset);
    size_t cap = 0;
    int rc;
    while ((rc = db_step(st)) == DB_ROW) {
        XGROW(*out, cap, *n + 1);
        read_run(st, &(*out)[(*n)++]);
    }
    db_reset(st);
    if (rc != DB_DONE) {
        for (size_t i = 0; i < *n; i++) run_record_free(&(*out)[i]);
        free(*out);
        *out = NULL;
        *n = 0;
        return store_fail(s, rc, "listing runs");
    }
    return STORE_OK;
}

int store_run_active(store *s, int64_t *id, char status[16]) {
    db_stmt *st = store_stmt(s, "SELECT id, status FROM pipeline_runs WHERE active_slot = 1");
    if (!st) return STORE_ERR;
    int rc = store_step_row(s, st, "finding active run");
    if (rc == STORE_FOUND) {
        *id = db_col_int(st, 0);
        if (status) snprintf(status, 16, "%s", db_col_text(st, 1));
    }
    if (rc >= 0) db_reset(st);
    return rc;
}

int store_run_set_phase(store *s, int64_t id, enum run_phase phase) {
    db_stmt *st = store_stmt(s, "UPDATE pipeline_runs SET current_phase = ? WHERE id = ?");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, run_phase_name(phase));
    db_bind_int(st, 2, id);
    return store_exec_stmt(s, st, "setting run phase");
}

static int run_exists(store *s, int64_t id) {
    db_stmt *st = store_stmt(s, "SELECT 1 FROM pipeline_runs WHERE id = ?");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, id);
    int rc = store_step_row(s, st, "looking up run");
    if (rc >= 0) db_reset(st);
    return rc;
}

int store_run_request_stop(store *s, int64_t id) {
    db_stmt *st = store_stmt(s,
        "UPDATE pipeline_runs SET status = 'stopping' WHERE id = ? AND status = 'running'");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, id);
    int rc = store_exec_stmt(s, st, "requesting stop");
    if (rc) return rc;
    if (db_changes(s->db) == 1) return STORE_OK;
    rc = run_exists(s, id);
    if (rc < 0) return rc;
    return rc == STORE_FOUND ? STORE_CONFLICT : STORE_NOTFOUND;
}

int store_run_stop_requested(store *s, int64_t id) {
    db_stmt *st = store_stmt(s, "SELECT status FROM pipeline_runs WHERE id = ?");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, id);
    int rc = store_step_row(s, st, "checking stop");
    if (rc < 0) return rc;
    int stopping = rc == STORE_NOTFOUND || strcmp(db_col_text(st, 0), "running") != 0;
    db_reset(st);
    return stopping;
}

int store_run_finish(store *s, int64_t id, const char *status, const char *error,
                     int64_t now) {
    /* A pending stop wins over 'completed' (the original let it be overwritten). Only
     * an active run can finish, so a finish racing a restart cleanup is a no-op. */
    db_stmt *st = store_stmt(s,
        "UPDATE pipeline_runs SET"
        " status = CASE WHEN ? = 'completed' AND status = 'stopping' THEN 'stopped' ELSE ? END,"
        " current_phase = CASE WHEN ? = 'completed' AND status <> 'stopping'"
        "  THEN 'completed' ELSE current_phase END,"
        " completed_at = ?, error_message = ?, active_slot = NULL"
        " WHERE id = ? AND status IN ('running', 'stopping')");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, status);
    db_bind_text(st, 2, status);
    db_bind_text(st, 3, status);
    db_bind_int(st, 4, now);
    db_bind_text(st, 5, error);
    db_bind_int(st, 6, id);
    int rc = store_exec_stmt(s, st, "finishing run");
    if (rc) return rc;
    return db_changes(s->db) == 1 ? STORE_OK : STORE_CONFLICT;
}

int store_run_resume(store *s, int64_t id, int64_t now) {
    db_stmt *st = store_stmt(s,
        "UPDATE pipeline_runs SET status = 'running', active_slot = 1, completed_at = NULL,"
        " error_message = NULL, heartbeat_at = ?"
        " WHERE id = ? AND status IN ('stopped', 'failed')");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, now);
    db_bind_int(st, 2, id);
    int rc = db_step(st);
    db_reset(st);
    if (rc == DB_ERR_CONSTRAINT) {
        snprintf(s->err, sizeof s->err, "another pipeline run is active");
        return STORE_BUSY;
    }
    if (rc != DB_DONE) return store_fail(s, rc, "resuming run");
    if (db_changes(s->db) == 1) return STORE_OK;
    rc = run_exists(s, id);
    if (rc < 0) return rc;
    return rc == STORE_FOUND ? STORE_CONFLICT : STORE_NOTFOUND;
}

int store_run_heartbeat(store *s, int64_t id, const char *owner, int64_t now) {
    db_stmt *st = store_stmt(s,
        "UPDATE pipeline_runs SET owner = ?, heartbeat_at = ? WHERE id = ?");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, owner);
    db_bind_int(st, 2, now);
    db_bind_int(st, 3, id);
    return store_exec_stmt(s, st, "run heartbeat");
}

/* What a run whose driving process died says (both ways of finding it out). */
#define RUN_INTERRUPTED_SET                                                              \
    "UPDATE pipeline_runs SET status = 'failed', active_slot = NULL, completed_at = ?,"  \
    " error_message = 'Pipeline interrupted: the process running it stopped."            \
    " Resume it with POST /api/pipeline/{id}/resume or feedline resume.'"                \
    " WHERE status IN ('running', 'stopping')"

int store_run_fail_orphaned(store *s, int64_t stale_before, int64_t now, int *count) {
    db_stmt *st = store_stmt(s, RUN_INTERRUPTED_SET
                             " AND (heartbeat_at IS NULL OR heartbeat_at < ?)");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, now);
    db_bind_int(st, 2, stale_before);
    int rc = store_exec_stmt(s, st, "failing orphaned runs");
    if (rc) return rc;
    *count = (int)db_changes(s->db);
    return STORE_OK;
}

int store_run_fail_owned(store *s, int64_t id, const char *owner, int64_t now, int *count) {
    db_stmt *st = store_stmt(s, RUN_INTERRUPTED_SET " AND id = ? AND owner = ?");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, now);
    db_bind_int(st, 2, id);
    db_bind_text(st, 3, owner);
    int rc = store_exec_stmt(s, st, "failing an interrupted run");
    if (rc) return rc;
    *count = (int)db_changes(s->db);
    return STORE_OK;
}

int store_run_refresh_counters(store *s, int64_t id) {
    static const char sql[] =
        "UPDATE pipeline_runs SET"
        " conversations_fetched = (SELECT COUNT(*) FROM work_items"
        "  WHERE run_id = ? AND phase = 'classification'),"
        " conversations_classified = (SELECT COUNT(*) FROM classifications WHERE run_id = ?),"
        " conversations_stored = CASE WHEN dry_run = 1 THEN 0 ELSE"
        "  (SELECT COUNT(*) FROM classifications WHERE run_id = ?) END,"
        " classification_failed = (SELECT COUNT(*) FROM work_items"
        "  WHERE run_id = ? AND phase = 'classification' AND state = 'failed'),"
        " embeddings_generated = (SELECT COUNT(*) FROM embeddings WHERE run_id = ?),"
        " embeddings_failed = (SELECT COUNT(*) FROM work_items"
        "  WHERE run_id = ? AND phase = 'embedding_generation' AND state = 'failed'),"
        " facets_extracted = (SELECT COUNT(*) FROM facets WHERE run_id = ?),"
        " facets_failed = (SELECT COUNT(*) FROM work_items"
        "  WHERE run_id = ? AND phase = 'facet_extraction' AND state = 'failed'),"
        " themes_failed = (SELECT COUNT(*) FROM work_items"
        "  WHERE run_id = ? AND phase = 'theme_extraction' AND state = 'failed'),"
        /* A dry run stores no themes: its theme counters are set directly. */
        " themes_extracted = CASE WHEN dry_run = 1 THEN themes_extracted ELSE"
        "  (SELECT COUNT(*) FROM themes WHERE run_id = ? AND passed = 1) END,"
        " themes_filtered = CASE WHEN dry_run = 1 THEN themes_filtered ELSE"
        "  (SELECT COUNT(*) FROM themes WHERE run_id = ? AND passed = 0) END,"
        " themes_new = CASE WHEN dry_run = 1 THEN themes_new ELSE"
        "  (SELECT COUNT(*) FROM signatures WHERE first_run_id = ?) END,"
        " stories_created = (SELECT COUNT(*) FROM stories WHERE run_id = ? AND origin = 'cluster'),"
        " stories_updated = (SELECT COUNT(*) FROM story_runs WHERE run_id = ? AND created = 0"
        "  AND conversations_added > 0),"
        " orphans_graduated = (SELECT COUNT(*) FROM stories"
        "  WHERE run_id = ? AND origin = 'graduated'),"
        " orphans_created = (SELECT COUNT(*) FROM orphans WHERE first_run_id = ?),"
        " stories_ready = CASE WHEN dry_run = 1 THEN 0 WHEN EXISTS (SELECT 1 FROM themes"
        "  WHERE run_id = ? AND passed = 1) THEN 1 ELSE 0 END"
        " WHERE id = ?";
    db_stmt *st = store_stmt(s, sql);
    if (!st) return STORE_ERR;
    int nparams = 0;
    for (const char *p = sql; *p; p++) nparams += *p == '?';
    for (int i = 1; i <= nparams; i++) db_bind_int(st, i, id);
    return store_exec_stmt(s, st, "refreshing run counters");
}

int store_run_set_dry_theme_counts(store *s, int64_t id, int64_t extracted,
                                   int64_t filtered, int64_t fresh) {
    db_stmt *st = store_stmt(s,
        "UPDATE pipeline_runs SET themes_extracted = ?, themes_filtered = ?, themes_new = ?"
        " WHERE id = ? AND dry_run = 1");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, extracted);
    db_bind_int(st, 2, filtered);
    db_bind_int(st, 3, fresh);
    db_bind_int(st, 4, id);
    return store_exec_stmt(s, st, "setting dry-run theme counts");
}

int store_run_set_filtered(store *s, int64_t id, int64_t filtered) {
    db_stmt *st = store_stmt(s,
        "UPDATE pipeline_runs SET conversations_filtered = ? WHERE id = ?");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, filtered);
    db_bind_int(st, 2, id);
    return store_exec_stmt(s, st, "setting filtered count");
}

/* Warnings are kept bounded: past this many, further ones are dropped and one
 * final note says so. */
#define RUN_MAX_WARNINGS 200

int store_run_add_claims_lost(store *s, int64_t id, int64_t n) {
    db_stmt *st =
        store_stmt(s, "UPDATE pipeline_runs SET claims_lost = claims_lost + ? WHERE id = ?");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, n);
    db_bind_int(st, 2, id);
    return store_exec_stmt(s, st, "counting lost claims");
}

int store_run_add_warning(store *s, int64_t id, const char *warning) {
    /* Read-modify-write of the JSON array: inside a transaction, PostgreSQL needs the
     * row lock up front (SQLite's BEGIN IMMEDIATE already serialises writers) or two
     * workers could each drop the other's warning. NO KEY UPDATE, the lock the UPDATE
     * takes anyway: FOR UPDATE would also wait for the KEY SHARE locks that inserting
     * results (foreign keys to the run) takes, so two processes each holding those and
     * asking for this lock would deadlock. */
    db_stmt *st = store_stmt2(s, "SELECT warnings FROM pipeline_runs WHERE id = ?",
                              "SELECT warnings FROM pipeline_runs WHERE id = ? FOR NO KEY UPDATE");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, id);
    int rc = store_step_row(s, st, "reading warnings");
    if (rc != STORE_FOUND) {
        if (rc == STORE_NOTFOUND) db_reset(st);
        return rc == STORE_NOTFOUND ? STORE_NOTFOUND : rc;
    }
    json_t *arr = json_loads(db_col_text(st, 0), 0, NULL);
    db_reset(st);
    if (!json_is_array(arr)) {
        json_decref(arr);
        arr = json_array();
    }
    size_t n = json_array_size(arr);
    if (n < RUN_MAX_WARNINGS) {
        json_array_append_new(arr, jx_string(warning));
    } else if (n == RUN_MAX_WARNINGS) {
        json_array_append_new(arr, json_string("(further warnings omitted)"));
    }
    char *text = jx_dump(arr);
    json_decref(arr);
    st = store_stmt(s, "UPDATE pipeline_runs SET warnings = ? WHERE id = ?");
    if (!st) {
        free(text);
        return STORE_ERR;
    }
    db_bind_text(st, 1, text);
    db_bind_int(st, 2, id);
    rc = store_exec_stmt(s, st, "writing warnings");
    free(text);
    return rc;
}

int store_run_set_preview(store *s, int64_t id, const char *preview_json) {
    db_stmt *st = store_stmt(s, "UPDATE pipeline_runs SET preview = ? WHERE id = ?");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, preview_json);
    db_bind_int(st, 2, id);
    return store_exec_stmt(s, st, "storing preview");
}

int store_run_set_stories_done(store *s, int64_t id) {
    db_stmt *st = store_stmt(s, "UPDATE pipeline_runs SET stories_done = 1 WHERE id = ?");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, id);
    return store_exec_stmt(s, st, "marking stories done");
}

int store_run_add_usage(store *s, int64_t id, enum run_phase phase, int64_t requests,
                        int64_t cache_hits, int64_t prompt_tokens, int64_t cached_tokens,
                        int64_t completion_tokens, double cost_usd) {
    db_stmt *st = store_stmt(s,
        "INSERT INTO run_usage (run_id, phase, requests, cache_hits, prompt_tokens,"
        " cached_tokens, completion_tokens, cost_usd) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (run_id, phase) DO UPDATE SET"
        " requests = run_usage.requests + excluded.requests,"
        " cache_hits = run_usage.cache_hits + excluded.cache_hits,"
        " prompt_tokens = run_usage.prompt_tokens + excluded.prompt_tokens,"
        " cached_tokens = run_usage.cached_tokens + excluded.cached_tokens,"
        " completion_tokens = run_usage.completion_tokens + excluded.completion_tokens,"
        " cost_usd = run_usage.cost_usd + excluded.cost_usd");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, id);
    db_bind_text(st, 2, run_phase_name(phase));
    db_bind_int(st, 3, requests);
    db_bind_int(st, 4, cache_hits);
    db_bind_int(st, 5, prompt_tokens);
    db_bind_int(st, 6, cached_tokens);
    db_bind_int(st, 7, completion_tokens);
    db_bind_double(st, 8, cost_usd);
    return store_exec_stmt(s, st, "recording usage");
}

int store_run_usage_json(store *s, int64_t id, char **json) {
    *json = NULL;
    db_stmt *st = store_stmt(s,
        "SELECT phase, requests, cache_hits, prompt_tokens, completion_tokens, cost_usd,"
        " cached_tokens FROM run_usage WHERE run_id = ? ORDER BY phase");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, id);
    json_t *obj = json_object();
    int rc;
    while ((rc = db_step(st)) == DB_ROW) {
        json_object_set_new(obj, db_col_text(st, 0),
                            json_pack("{sIsIsIsIsIsf}", "requests", (json_int_t)db_col_int(st, 1),
                                      "cache_hits", (json_int_t)db_col_int(st, 2),
                                      "prompt_tokens", (json_int_t)db_col_int(st, 3),
                                      "cached_tokens", (json_int_t)db_col_int(st, 6),
                                      "completion_tokens", (json_int_t)db_col_int(st, 4),
                                      "cost_usd", db_col_double(st, 5)));
    }
    db_reset(st);
    if (rc != DB_DONE) {
        json_decref(obj);
        return store_fail(s, rc, "reading usage");
    }
    *json = jx_dump(obj);
    json_decref(obj);
    return STORE_OK;
}

int store_run_errors_json(store *s, int64_t id, char **json) {
    *json = NULL;
    db_stmt *st = store_stmt(s,
        "SELECT phase, reason, COUNT(*) FROM run_errors WHERE run_id = ?"
        " GROUP BY phase, reason ORDER BY MIN(created_at), phase, reason LIMIT 100");
    db_stmt *ids = store_stmt(s,
        "SELECT conversation_id FROM run_errors WHERE run_id = ? AND phase = ? AND reason = ?"
        " AND conversation_id <> '' ORDER BY conversation_id LIMIT 5");
    if (!st || !ids) return STORE_ERR;
    db_bind_int(st, 1, id);
    json_t *arr = json_array();
    int rc;
    while ((rc = db_step(st)) == DB_ROW) {
        const char *phase = db_col_text(st, 0), *reason = db_col_text(st, 1);
        json_t *conv = json_array();
        db_bind_int(ids, 1, id);
        db_bind_text(ids, 2, phase);
        db_bind_text(ids, 3, reason);
        int rc2;
        while ((rc2 = db_step(ids)) == DB_ROW)
            json_array_append_new(conv, jx_string(db_col_text(ids, 0)));
        db_reset(ids);
        if (rc2 != DB_DONE) {
            json_decref(conv);
            rc = rc2;
            break;
        }
        json_array_append_new(arr, json_pack("{sssssIso}", "phase", phase, "message", reason,
                                             "count", (json_int_t)db_col_int(st, 2),
                                             "conversation_ids", conv));
    }
    db_reset(st);
    if (rc != DB_DONE) {
        json_decref(arr);
        return store_fail(s, rc, "reading run errors");
    }
    *json = jx_dump(arr);
    json_decref(arr);
    return STORE_OK;
}

int64_t store_run_error_count(store *s, int64_t id) {
    db_stmt *st = store_stmt(s, "SELECT COUNT(*) FROM run_errors WHERE run_id = ?");
    if (!st) return -1;
    db_bind_int(st, 1, id);
    if (store_step_row(s, st, "counting run errors") != STORE_FOUND) return -1;
    int64_t n = db_col_int(st, 0);
    db_reset(st);
    return n;
}
