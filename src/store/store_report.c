/* Read-only listings for reports and the API: stories with their evidence, theme
 * aggregates, run state counts. Results are built as JSON (jansson) since that is what
 * every caller prints or serves. */
#include <stdlib.h>
#include <string.h>

#include "store/store_internal.h"
#include "store/store_report.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/strmap.h"
#include "util/timeutil.h"
#include "util/utf8.h"

#define STORY_COLUMNS                                                                   \
    "s.id, s.run_id, s.title, s.description, s.signature, s.product_area, s.component,"   \
    " s.action_type, s.direction, s.status, s.confidence_score, s.conversation_count,"   \
    " s.grouping_method, s.cluster_id, s.origin, s.created_at, s.updated_at,"            \
    " s.last_run_id, s.first_seen_at, s.last_seen_at, s.distinguisher, s.problem,"       \
    " s.affected, s.acceptance_criteria, s.story_kind, s.review_decision,"               \
    " s.review_reason, s.state_reason, s.state_changed_at"

static json_t *json_list(const char *text);

static json_t *int_or_null(db_stmt *st, int col) {
    return db_col_null(st, col) ? json_null() : json_integer(db_col_int(st, col));
}

/* Times are unix seconds here; the API turns them into ISO-8601 (its iso_dates). */
static json_t *story_json(db_stmt *st) {
    json_t *o = json_pack("{sIsIsososososososososfsIsosososIsI}",
                     "id", (json_int_t)db_col_int(st, 0),
                     "run_id", (json_int_t)db_col_int(st, 1),
                     "title", jx_string(db_col_text(st, 2)),
                     "description", jx_string(db_col_text(st, 3)),
                     "signature", jx_string(db_col_text(st, 4)),
                     "product_area", jx_string(db_col_text(st, 5)),
                     "component", jx_string(db_col_text(st, 6)),
                     "action_type", jx_string(db_col_text(st, 7)),
                     "direction", jx_string(db_col_text(st, 8)),
                     "status", jx_string(db_col_text(st, 9)),
                     "confidence_score", db_col_double(st, 10),
                     "conversation_count", (json_int_t)db_col_int(st, 11),
                     "grouping_method", jx_string(db_col_text(st, 12)),
                     "cluster_id", jx_string_or_null(db_col_text(st, 13)),
                     "origin", jx_string(db_col_text(st, 14)),
                     "created_at", (json_int_t)db_col_int(st, 15),
                     "updated_at", (json_int_t)db_col_int(st, 16));
    json_object_set_new(o, "last_run_id", int_or_null(st, 17));
    json_object_set_new(o, "first_seen_at", int_or_null(st, 18));
    json_object_set_new(o, "last_seen_at", int_or_null(st, 19));
    json_object_set_new(o, "distinguisher", jx_string(db_col_text(st, 20)));
    json_object_set_new(o, "problem", jx_string(db_col_text(st, 21)));
    json_object_set_new(o, "affected", jx_string(db_col_text(st, 22)));
    json_object_set_new(o, "acceptance_criteria", json_list(db_col_text(st, 23)));
    json_object_set_new(o, "kind", jx_string(db_col_text(st, 24)));
    json_object_set_new(o, "review", json_pack("{soso}", "decision", jx_string(db_col_text(st, 25)),
                                               "reason", jx_string(db_col_text(st, 26))));
    json_object_set_new(o, "state_reason", jx_string(db_col_text(st, 27)));
    json_object_set_new(o, "state_changed_at", int_or_null(st, 28));
    return o;
}

static int add_evidence_ids(store *s, json_t *story) {
    db_stmt *st = store_stmt(s,
        "SELECT conversation_id FROM story_evidence WHERE story_id = ? ORDER BY conversation_id");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, json_integer_value(json_object_get(story, "id")));
    json_t *ids = json_array();
    int rc;
    while ((rc = db_step(st)) == DB_ROW) json_array_append_new(ids, jx_string(db_col_text(st, 0)));
    db_reset(st);
    json_object_set_new(story, "conversation_ids", ids);
    return rc == DB_DONE ? STORE_OK : store_fail(s, rc, "reading evidence");
}

int store_latest_story_run(store *s, int64_t *run_id) {
    db_stmt *st = store_stmt(s,
        "SELECT id FROM pipeline_runs WHERE stories_done = 1 ORDER BY id DESC LIMIT 1");
    if (!st) return STORE_ERR;
    int rc = store_step_row(s, st, "finding the latest run with stories");
    if (rc == STORE_FOUND) *run_id = db_col_int(st, 0);
    if (rc >= 0) db_reset(st);
    return rc;
}

/* A run's stories are those it created or grew (story_runs). Parameters: run twice,
 * area twice, status twice, signature twice, created since. */
#define STORY_FILTER                                                                    \
    "(? = 0 OR s.id IN (SELECT story_id FROM story_runs WHERE run_id = ?))"             \
    " AND (CAST(? AS TEXT) IS NULL OR s.product_area = ?)"                              \
    " AND (CAST(? AS TEXT) IS NULL OR s.status = ?)"                                    \
    " AND (CAST(? AS TEXT) IS NULL OR s.signature = ?)"                                 \
    " AND s.created_at >= ?"

int store_stories_json(store *s, const story_filter *f, json_t **out, int64_t *total) {
    *out = NULL;
    /* Each optional filter is bound twice: "(? IS NULL OR col = ?)" keeps one SQL
     * text for every combination without assembling SQL. */
    static const char sql[] =
        "SELECT " STORY_COLUMNS " FROM stories s"
        " WHERE " STORY_FILTER
        " ORDER BY s.conversation_count DESC, s.confidence_score DESC, s.id LIMIT ? OFFSET ?";
    static const char count_sql[] =
        "SELECT COUNT(*) FROM stories s WHERE " STORY_FILTER;
    db_stmt *st = store_stmt(s, sql);
    db_stmt *ct = store_stmt(s, count_sql);
    if (!st || !ct) return STORE_ERR;
    db_stmt *both[2] = {st, ct};
    for (int k = 0; k < 2; k++) {
        db_bind_int(both[k], 1, f->run_id);
        db_bind_int(both[k], 2, f->run_id);
        db_bind_text(both[k], 3, f->product_area);
        db_bind_text(both[k], 4, f->product_area);
        db_bind_text(both[k], 5, f->status);
        db_bind_text(both[k], 6, f->status);
        db_bind_text(both[k], 7, f->signature);
        db_bind_text(both[k], 8, f->signature);
        db_bind_int(both[k], 9, f->created_since);
    }
    db_bind_int(st, 10, f->limit > 0 ? f->limit : INT64_MAX);
    db_bind_int(st, 11, f->offset);
    int rc = store_step_row(s, ct, "counting stories");
    if (rc != STORE_FOUND) {
        db_reset(st);
        return rc < 0 ? rc : STORE_ERR;
    }
    if (total) *total = db_col_int(ct, 0);
    db_reset(ct);
    json_t *arr = json_array();
    while ((rc = db_step(st)) == DB_ROW) json_array_append_new(arr, story_json(st));
    db_reset(st);
    if (rc != DB_DONE) {
        json_decref(arr);
        return store_fail(s, rc, "listing stories");
    }
    if (f->with_conversation_ids) {
        size_t i;
        json_t *story;
        json_array_foreach(arr, i, story) {
            if ((rc = add_evidence_ids(s, story)) != STORE_OK) {
                json_decref(arr);
                return rc;
            }
        }
    }
    *out = arr;
    return STORE_OK;
}

/* ---------------------------------------------------------------- story detail */

static json_t *iso_json(int64_t t) {
    char buf[32];
    return t ? json_string(iso8601_format(t, buf, sizeof buf)) : json_null();
}

/* At most max_chars characters of a text, for excerpts of digests. */
static json_t *excerpt_json(const char *text, size_t max_chars) {
    if (!text) return json_null();
    size_t len = strlen(text);
    size_t cut = utf8_valid(text, len) ? utf8_offset_of(text, len, max_chars) : len;
    char *part = xstrndup(text, cut);
    json_t *out = jx_string(part);
    free(part);
    return out;
}

#define EVIDENCE_EXCERPT_CHARS 500

/* A stored JSON array, or [] when absent or malformed. */
static json_t *json_list(const char *text) {
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;
    if (json_is_array(v)) return v;
    json_decref(v);
    return json_array();
}

static int add_story_evidence(store *s, json_t *story, int64_t story_id) {
    db_stmt *st = store_stmt(s,
        "SELECT e.conversation_id, e.signature, e.excerpt, c.digest, c.source_url, c.subject,"
        " c.created_at, th.user_intent, th.key_excerpts, th.diagnostic_summary"
        " FROM story_evidence e LEFT JOIN conversations c ON c.id = e.conversation_id"
        /* The conversation's theme of the story's run, else its newest (a graduated
         * orphan's members come from earlier runs). */
        " LEFT JOIN themes th ON th.id = (SELECT t.id FROM themes t"
        "  WHERE t.conversation_id = e.conversation_id"
        "  ORDER BY CASE WHEN t.run_id = ? THEN 0 ELSE 1 END, t.run_id DESC LIMIT 1)"
        " WHERE e.story_id = ? ORDER BY e.conversation_id");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, json_integer_value(json_object_get(story, "run_id")));
    db_bind_int(st, 2, story_id);
    json_t *ids = json_array(), *evidence = json_array();
    int rc;
    while ((rc = db_step(st)) == DB_ROW) {
        json_array_append_new(ids, jx_string(db_col_text(st, 0)));
        json_array_append_new(evidence,
            json_pack("{sosososososososososo}", "conversation_id", jx_string(db_col_text(st, 0)),
                      "signature", jx_string(db_col_text(st, 1)),
                      "excerpt", jx_string(db_col_text(st, 2)),
                      "digest", excerpt_json(db_col_text(st, 3), EVIDENCE_EXCERPT_CHARS),
                      "source_url", jx_string_or_null(db_col_text(st, 4)),
                      "subject", jx_string_or_null(db_col_text(st, 5)),
                      "created_at", iso_json(db_col_null(st, 6) ? 0 : db_col_int(st, 6)),
                      "user_intent", jx_string_or_null(db_col_text(st, 7)),
                      "key_excerpts", json_list(db_col_text(st, 8)),
                      "diagnostic_summary", jx_string_or_null(db_col_text(st, 9))));
    }
    db_reset(st);
    json_object_set_new(story, "conversation_ids", ids);
    json_object_set_new(story, "evidence", evidence);
    return rc == DB_DONE ? STORE_OK : store_fail(s, rc, "reading story evidence");
}

/* The runs that created or grew the story, and the tracker tickets it was exported to. */
static int add_story_history(store *s, json_t *story, int64_t story_id) {
    db_stmt *st = store_stmt(s,
        "SELECT run_id, created, conversations_added, at FROM story_runs WHERE story_id = ?"
        " ORDER BY run_id");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, story_id);
    json_t *runs = json_array();
    int rc;
    while ((rc = db_step(st)) == DB_ROW)
        json_array_append_new(runs, json_pack("{sIsbsIso}", "run_id", (json_int_t)db_col_int(st, 0),
                                              "created", (int)db_col_int(st, 1),
                                              "conversations_added",
                                              (json_int_t)db_col_int(st, 2), "at",
                                              iso_json(db_col_int(st, 3))));
    db_reset(st);
    json_object_set_new(story, "runs", runs);
    if (rc != DB_DONE) return store_fail(s, rc, "reading story history");
    st = store_stmt(s,
        "SELECT tracker, external_id, url, evidence_count, exported_at, updated_at"
        " FROM story_exports WHERE story_id = ? ORDER BY tracker");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, story_id);
    json_t *exports = json_array();
    while ((rc = db_step(st)) == DB_ROW)
        json_array_append_new(exports,
            json_pack("{s:o, s:o, s:o, s:I, s:o, s:o}", "tracker", jx_string(db_col_text(st, 0)),
                      "external_id", jx_string(db_col_text(st, 1)),
                      "url", jx_string(db_col_text(st, 2)),
                      "evidence_count", (json_int_t)db_col_int(st, 3),
                      "exported_at", iso_json(db_col_int(st, 4)),
                      "updated_at", iso_json(db_col_int(st, 5))));
    db_reset(st);
    json_object_set_new(story, "exports", exports);
    return rc == DB_DONE ? STORE_OK : store_fail(s, rc, "reading story exports");
}

int store_reviews_json(store *s, int64_t run_id, json_t **out) {
    *out = NULL;
    db_stmt *st = store_stmt(s,
        "SELECT product_area, signature, decision, reason, conversation_count, merge_into,"
        " parts, reviewer FROM story_reviews WHERE run_id = ?"
        " ORDER BY conversation_count DESC, signature");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, run_id);
    json_t *arr = json_array();
    int rc;
    while ((rc = db_step(st)) == DB_ROW)
        json_array_append_new(arr,
            json_pack("{s:o, s:o, s:o, s:o, s:I, s:o, s:o, s:o}", "product_area", jx_string(db_col_text(st, 0)),
                      "signature", jx_string(db_col_text(st, 1)),
                      "decision", jx_string(db_col_text(st, 2)),
                      "reason", jx_string(db_col_text(st, 3)),
                      "conversation_count", (json_int_t)db_col_int(st, 4),
                      "merge_into", jx_string_or_null(db_col_text(st, 5)),
                      "parts", json_list(db_col_text(st, 6)),
                      "reviewer", jx_string(db_col_text(st, 7))));
    db_reset(st);
    if (rc != DB_DONE) {
        json_decref(arr);
        return store_fail(s, rc, "listing review decisions");
    }
    *out = arr;
    return STORE_OK;
}

int store_story_detail_json(store *s, int64_t story_id, json_t **out) {
    *out = NULL;
    db_stmt *st = store_stmt(s, "SELECT " STORY_COLUMNS " FROM stories s WHERE s.id = ?");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, story_id);
    int rc = store_step_row(s, st, "loading story");
    if (rc != STORE_FOUND) {
        if (rc >= 0) db_reset(st);
        return rc;
    }
    json_t *story = story_json(st);
    db_reset(st);
    rc = add_story_evidence(s, story, story_id);
    if (rc == STORE_OK) rc = add_story_history(s, story, story_id);
    if (rc != STORE_OK) {
        json_decref(story);
        return rc;
    }
    *out = story;
    return STORE_FOUND;
}

/* ---------------------------------------------------------------- theme aggregates */

/* The aggregate of each signature over passed themes; parameters: run_id twice,
 * product_area twice. */
#define THEME_GROUPS                                                                    \
    "(SELECT t.issue_signature AS sig, MAX(t.product_area) AS area,"                    \
    " MAX(t.component) AS component, COUNT(DISTINCT t.conversation_id) AS cnt,"          \
    " COUNT(DISTINCT t.run_id) AS runs,"                                                \
    " MIN(COALESCE(c.created_at, t.created_at)) AS first_seen,"                         \
    " MAX(COALESCE(c.created_at, t.created_at)) AS last_seen, MAX(t.id) AS sample_id"   \
    " FROM themes t LEFT JOIN conversations c ON c.id = t.conversation_id"              \
    " WHERE t.passed = 1 AND (? = 0 OR t.run_id = ?)"                                   \
    " AND (CAST(? AS TEXT) IS NULL OR t.product_area = ?)"                              \
    " GROUP BY t.issue_signature) g"
/* Parameters: min count, max count twice, seen since. */
#define THEME_GROUP_FILTER " WHERE g.cnt >= ? AND (? = 0 OR g.cnt <= ?) AND g.last_seen >= ?"
#define THEME_SELECT_TOTAL                                                              \
    "SELECT g.sig, g.area, g.component, g.cnt, g.runs, g.first_seen, g.last_seen,"      \
    " s.user_intent, s.symptoms, s.affected_flow, s.root_cause_hypothesis,"             \
    " COUNT(*) OVER () FROM " THEME_GROUPS " JOIN themes s ON s.id = g.sample_id"       \
    THEME_GROUP_FILTER

static json_t *json_array_or_empty(const char *text) {
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;
    if (json_is_array(v)) return v;
    json_decref(v);
    return json_array();
}

static json_t *theme_json(db_stmt *st) {
    return json_pack("{sosososIsIsosososososo}",
                     "issue_signature", jx_string(db_col_text(st, 0)),
                     "product_area", jx_string(db_col_text(st, 1)),
                     "component", jx_string(db_col_text(st, 2)),
                     "occurrence_count", (json_int_t)db_col_int(st, 3),
                     "run_count", (json_int_t)db_col_int(st, 4),
                     "first_seen_at", iso_json(db_col_int(st, 5)),
                     "last_seen_at", iso_json(db_col_int(st, 6)),
                     "sample_user_intent", jx_string_or_null(db_col_text(st, 7)),
                     "sample_symptoms", json_array_or_empty(db_col_text(st, 8)),
                     "sample_affected_flow", jx_string_or_null(db_col_text(st, 9)),
                     "sample_root_cause_hypothesis", jx_string_or_null(db_col_text(st, 10)));
}

static void bind_theme_filter(db_stmt *st, const theme_filter *f) {
    int i = 1;
    db_bind_int(st, i++, f->run_id);
    db_bind_int(st, i++, f->run_id);
    db_bind_text(st, i++, f->product_area);
    db_bind_text(st, i++, f->product_area);
    db_bind_int(st, i++, f->min_count);
    db_bind_int(st, i++, f->max_count);
    db_bind_int(st, i++, f->max_count);
    db_bind_int(st, i++, f->seen_since ? f->seen_since : INT64_MIN);
}

static int count_themes(store *s, const theme_filter *f, int64_t *total) {
    static const char count_sql[] = "SELECT COUNT(*) FROM " THEME_GROUPS THEME_GROUP_FILTER;
    db_stmt *ct = store_stmt(s, count_sql);
    if (!ct) return STORE_ERR;
    bind_theme_filter(ct, f);
    int rc = store_step_row(s, ct, "counting themes");
    if (rc != STORE_FOUND) return rc < 0 ? rc : STORE_ERR;
    *total = db_col_int(ct, 0);
    db_reset(ct);
    return STORE_OK;
}

int store_themes_json(store *s, const theme_filter *f, json_t **out, int64_t *total) {
    *out = NULL;
    /* One pass: the window count is the number of matching themes before the limit. */
    static const char by_count[] =
        THEME_SELECT_TOTAL " ORDER BY g.cnt DESC, g.last_seen DESC, g.sig LIMIT ? OFFSET ?";
    static const char by_recent[] =
        THEME_SELECT_TOTAL " ORDER BY g.last_seen DESC, g.cnt DESC, g.sig LIMIT ? OFFSET ?";
    db_stmt *st = store_stmt(s, f->recent_first ? by_recent : by_count);
    if (!st) return STORE_ERR;
    bind_theme_filter(st, f);
    db_bind_int(st, 9, f->limit > 0 ? f->limit : INT64_MAX);
    db_bind_int(st, 10, f->offset);
    json_t *arr = json_array();
    int64_t n = -1;
    int rc;
    while ((rc = db_step(st)) == DB_ROW) {
        json_array_append_new(arr, theme_json(st));
        n = db_col_int(st, 11);
    }
    db_reset(st);
    if (rc != DB_DONE) {
        json_decref(arr);
        return store_fail(s, rc, "listing themes");
    }
    /* An empty page says nothing about the total unless it is the first. */
    if (n < 0) n = 0;
    if (json_array_size(arr) == 0 && f->offset > 0 && (rc = count_themes(s, f, &n)) != STORE_OK) {
        json_decref(arr);
        return rc;
    }
    if (total) *total = n;
    *out = arr;
    return STORE_OK;
}

#define THEME_EXCERPT_CHARS 300
/* Theme rows read for one signature's evidence (newest first). */
#define THEME_DETAIL_MAX_ROWS 5000

static int add_theme_conversations(store *s, json_t *theme, const char *signature,
                                   size_t max_ids, size_t max_convs) {
    db_stmt *st = store_stmt(s,
        "SELECT t.conversation_id, t.run_id, t.user_intent, t.diagnostic_summary,"
        " c.created_at, c.source_url, c.subject, c.digest"
        " FROM themes t LEFT JOIN conversations c ON c.id = t.conversation_id"
        " WHERE t.issue_signature = ? AND t.passed = 1 ORDER BY t.id DESC LIMIT ?");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, signature);
    db_bind_int(st, 2, THEME_DETAIL_MAX_ROWS);
    json_t *ids = json_array(), *convs = json_array();
    strmap_t seen = STRMAP_INIT;
    int rc;
    while ((rc = db_step(st)) == DB_ROW) {
        const char *id = db_col_text(st, 0);
        if (strmap_has(&seen, id)) continue; /* the same conversation in an older run */
        strmap_put(&seen, id, NULL);
        if (json_array_size(ids) < max_ids) json_array_append_new(ids, jx_string(id));
        if (json_array_size(convs) >= max_convs) continue;
        json_array_append_new(convs,
            json_pack("{sosIsosososososo}", "conversation_id", jx_string(id),
                      "run_id", (json_int_t)db_col_int(st, 1),
                      "user_intent", jx_string_or_null(db_col_text(st, 2)),
                      "diagnostic_summary", jx_string_or_null(db_col_text(st, 3)),
                      "created_at", iso_json(db_col_null(st, 4) ? 0 : db_col_int(st, 4)),
                      "source_url", jx_string_or_null(db_col_text(st, 5)),
                      "subject", jx_string_or_null(db_col_text(st, 6)),
                      "excerpt", excerpt_json(db_col_text(st, 7), THEME_EXCERPT_CHARS)));
    }
    db_reset(st);
    strmap_free(&seen, NULL);
    json_object_set_new(theme, "conversation_ids", ids);
    json_object_set_new(theme, "conversations", convs);
    return rc == DB_DONE ? STORE_OK : store_fail(s, rc, "reading theme conversations");
}

int store_theme_detail_json(store *s, const char *signature, size_t max_ids, size_t max_convs,
                            json_t **out) {
    *out = NULL;
    db_stmt *st = store_stmt(s,
        "SELECT g.sig, g.area, g.component, g.cnt, g.runs, g.first_seen, g.last_seen,"
        " s.user_intent, s.symptoms, s.affected_flow, s.root_cause_hypothesis FROM"
        " (SELECT t.issue_signature AS sig, MAX(t.product_area) AS area,"
        " MAX(t.component) AS component, COUNT(DISTINCT t.conversation_id) AS cnt,"
        " COUNT(DISTINCT t.run_id) AS runs,"
        " MIN(COALESCE(c.created_at, t.created_at)) AS first_seen,"
        " MAX(COALESCE(c.created_at, t.created_at)) AS last_seen, MAX(t.id) AS sample_id"
        " FROM themes t LEFT JOIN conversations c ON c.id = t.conversation_id"
        " WHERE t.passed = 1 AND t.issue_signature = ? GROUP BY t.issue_signature) g"
        " JOIN themes s ON s.id = g.sample_id");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, signature);
    int rc = store_step_row(s, st, "loading theme");
    if (rc != STORE_FOUND) {
        if (rc >= 0) db_reset(st);
        return rc;
    }
    json_t *theme = theme_json(st);
    db_reset(st);
    rc = add_theme_conversations(s, theme, signature, max_ids, max_convs);
    if (rc != STORE_OK) {
        json_decref(theme);
        return rc;
    }
    *out = theme;
    return STORE_FOUND;
}

/* ---------------------------------------------------------------- run states */

const char *const RUN_STATES[RUN_STATE_COUNT] = {"running", "stopping", "stopped", "completed",
                                                 "failed"};

int store_run_state_counts(store *s, int64_t counts[RUN_STATE_COUNT]) {
    memset(counts, 0, RUN_STATE_COUNT * sizeof counts[0]);
    db_stmt *st = store_stmt(s, "SELECT status, COUNT(*) FROM pipeline_runs GROUP BY status");
    if (!st) return STORE_ERR;
    int rc;
    while ((rc = db_step(st)) == DB_ROW) {
        const char *status = db_col_text(st, 0);
        for (int i = 0; i < RUN_STATE_COUNT; i++)
            if (status && strcmp(status, RUN_STATES[i]) == 0) counts[i] = db_col_int(st, 1);
    }
    db_reset(st);
    return rc == DB_DONE ? STORE_OK : store_fail(s, rc, "counting runs by state");
}

/* ---------------------------------------------------------------- data version */

int store_data_version(store *s, int64_t *version) {
    if (strcmp(store_backend(s), "sqlite") != 0) return STORE_NOTFOUND;
    db_stmt *st = store_stmt(s, "PRAGMA data_version");
    if (!st) return STORE_ERR;
    int rc = store_step_row(s, st, "reading the data version");
    if (rc == STORE_FOUND) *version = db_col_int(st, 0);
    if (rc >= 0) db_reset(st);
    return rc == STORE_FOUND ? STORE_FOUND : rc < 0 ? rc : STORE_ERR;
}
