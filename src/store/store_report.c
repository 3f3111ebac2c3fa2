/* Read-only listings for reports and the API: stories with their evidence. Results
 * are built as JSON (jansson) since that is what every caller prints or serves. */
#include <string.h>

#include "store/store_internal.h"
#include "store/store_report.h"
#include "util/jsonx.h"

#define STORY_COLUMNS                                                                   \
    "s.id, s.run_id, s.title, s.description, s.signature, s.product_area, s.component,"   \
    " s.action_type, s.direction, s.status, s.confidence_score, s.conversation_count,"   \
    " s.grouping_method, s.cluster_id, s.origin, s.created_at, s.updated_at"

static json_t *story_json(db_stmt *st) {
    return json_pack("{sIsIsososososososososfsIsosososIsI}",
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

int store_stories_json(store *s, const story_filter *f, json_t **out, int64_t *total) {
    *out = NULL;
    /* Each optional filter is bound twice: "(? IS NULL OR col = ?)" keeps one SQL
     * text for every combination without assembling SQL. */
    static const char sql[] =
        "SELECT " STORY_COLUMNS " FROM stories s"
        " WHERE (? = 0 OR s.run_id = ?)"
        " AND (CAST(? AS TEXT) IS NULL OR s.product_area = ?)"
        " AND (CAST(? AS TEXT) IS NULL OR s.status = ?)"
        " AND (CAST(? AS TEXT) IS NULL OR s.signature = ?)"
        " ORDER BY s.conversation_count DESC, s.confidence_score DESC, s.id LIMIT ? OFFSET ?";
    static const char count_sql[] =
        "SELECT COUNT(*) FROM stories s"
        " WHERE (? = 0 OR s.run_id = ?)"
        " AND (CAST(? AS TEXT) IS NULL OR s.product_area = ?)"
        " AND (CAST(? AS TEXT) IS NULL OR s.status = ?)"
        " AND (CAST(? AS TEXT) IS NULL OR s.signature = ?)";
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
    }
    db_bind_int(st, 9, f->limit > 0 ? f->limit : INT64_MAX);
    db_bind_int(st, 10, f->offset);
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
