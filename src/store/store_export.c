/* Tracker exports: reading stories with their evidence and recording tickets (see
 * store_export.h). */
#include "store/store_export.h"

#include <stdlib.h>
#include <string.h>

#include "store/store_internal.h"
#include "util/mem.h"

void export_story_free(export_story *s) {
    if (!s) return;
    free(s->title);
    free(s->description);
    free(s->status);
    free(s->story_kind);
    free(s->product_area);
    free(s->component);
    free(s->signature);
    free(s->problem);
    free(s->affected);
    free(s->acceptance_criteria);
    for (size_t i = 0; i < s->nevidence; i++) {
        free(s->evidence[i].conversation_id);
        free(s->evidence[i].excerpt);
        free(s->evidence[i].subject);
        free(s->evidence[i].source_url);
    }
    free(s->evidence);
    memset(s, 0, sizeof *s);
}

void export_link_free(export_link *l) {
    if (!l) return;
    free(l->external_id);
    free(l->url);
    memset(l, 0, sizeof *l);
}

static int64_t col_int0(db_stmt *st, int col) { return db_col_null(st, col) ? 0 : db_col_int(st, col); }

int store_export_latest_run(store *s, int64_t *run_id) {
    /* story_runs is the history; stories.run_id covers stories written before it. */
    db_stmt *st = store_stmt(s,
        "SELECT MAX(r) FROM (SELECT MAX(run_id) AS r FROM story_runs"
        " UNION ALL SELECT MAX(run_id) AS r FROM stories) AS t");
    if (!st) return STORE_ERR;
    int rc = store_step_row(s, st, "finding the newest run with stories");
    if (rc == STORE_FOUND) {
        if (db_col_null(st, 0)) rc = STORE_NOTFOUND;
        else *run_id = db_col_int(st, 0);
    }
    if (rc >= 0) db_reset(st);
    return rc;
}

int store_export_run_stories(store *s, int64_t run_id, int64_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    db_stmt *st = store_stmt(s,
        "SELECT id FROM stories s WHERE s.run_id = ? OR EXISTS"
        " (SELECT 1 FROM story_runs r WHERE r.story_id = s.id AND r.run_id = ?)"
        " ORDER BY s.conversation_count DESC, s.id");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, run_id);
    db_bind_int(st, 2, run_id);
    size_t cap = 0;
    int rc;
    while ((rc = db_step(st)) == DB_ROW) {
        XGROW(*ids, cap, *n + 1);
        (*ids)[(*n)++] = db_col_int(st, 0);
    }
    db_reset(st);
    if (rc != DB_DONE) {
        free(*ids);
        *ids = NULL;
        *n = 0;
        return store_fail(s, rc, "listing the stories of a run");
    }
    return STORE_OK;
}

static int load_evidence(store *s, export_story *out) {
    db_stmt *st = store_stmt(s,
        "SELECT e.conversation_id, e.excerpt, c.subject, c.source_url, e.run_id, c.created_at"
        " FROM story_evidence e LEFT JOIN conversations c ON c.id = e.conversation_id"
        " WHERE e.story_id = ? ORDER BY e.run_id, e.conversation_id");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, out->id);
    size_t cap = 0;
    int rc;
    while ((rc = db_step(st)) == DB_ROW) {
        out->evidence_total++;
        if (out->nevidence >= STORE_EXPORT_MAX_EVIDENCE) continue;
        XGROW(out->evidence, cap, out->nevidence + 1);
        export_evidence *e = &out->evidence[out->nevidence++];
        e->conversation_id = store_col_dup(st, 0);
        e->excerpt = store_col_dup(st, 1);
        e->subject = store_col_dup(st, 2);
        e->source_url = store_col_dup(st, 3);
        e->run_id = db_col_int(st, 4);
        e->created_at = col_int0(st, 5);
    }
    db_reset(st);
    return rc == DB_DONE ? STORE_OK : store_fail(s, rc, "loading story evidence");
}

int store_export_story(store *s, int64_t story_id, export_story *out) {
    memset(out, 0, sizeof *out);
    db_stmt *st = store_stmt(s,
        "SELECT id, run_id, conversation_count, title, description, status, story_kind,"
        " product_area, component, signature, problem, affected, acceptance_criteria,"
        " first_seen_at, last_seen_at FROM stories WHERE id = ?");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, story_id);
    int rc = store_step_row(s, st, "loading a story");
    if (rc != STORE_FOUND) {
        if (rc >= 0) db_reset(st);
        return rc;
    }
    out->id = db_col_int(st, 0);
    out->run_id = col_int0(st, 1);
    out->conversation_count = db_col_int(st, 2);
    char **text[] = {&out->title,   &out->description, &out->status,   &out->story_kind,
                     &out->product_area, &out->component, &out->signature, &out->problem,
                     &out->affected, &out->acceptance_criteria};
    for (size_t i = 0; i < sizeof text / sizeof text[0]; i++) {
        char *v = store_col_dup(st, 3 + (int)i);
        *text[i] = v ? v : xstrdup("");
    }
    out->first_seen_at = col_int0(st, 13);
    out->last_seen_at = col_int0(st, 14);
    db_reset(st);
    rc = load_evidence(s, out);
    if (rc != STORE_OK) {
        export_story_free(out);
        return rc;
    }
    return STORE_FOUND;
}

int store_export_link_get(store *s, int64_t story_id, const char *tracker, export_link *out) {
    memset(out, 0, sizeof *out);
    db_stmt *st = store_stmt(s,
        "SELECT external_id, url, evidence_count, exported_at, updated_at FROM story_exports"
        " WHERE story_id = ? AND tracker = ?");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, story_id);
    db_bind_text(st, 2, tracker);
    int rc = store_step_row(s, st, "loading a story's ticket");
    if (rc == STORE_FOUND) {
        out->external_id = store_col_dup(st, 0);
        out->url = store_col_dup(st, 1);
        out->evidence_count = db_col_int(st, 2);
        out->exported_at = db_col_int(st, 3);
        out->updated_at = db_col_int(st, 4);
    }
    if (rc >= 0) db_reset(st);
    return rc;
}

static int put_link(store *s, int64_t story_id, const char *tracker, const char *external_id,
                    const char *url, int64_t evidence_count, int64_t now) {
    db_stmt *st = store_stmt(s,
        "INSERT INTO story_exports (story_id, tracker, external_id, url, evidence_count,"
        " exported_at, updated_at) VALUES (?,?,?,?,?,?,?)"
        " ON CONFLICT (story_id, tracker) DO UPDATE SET external_id = excluded.external_id,"
        " url = excluded.url, evidence_count = excluded.evidence_count,"
        " updated_at = excluded.updated_at");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, story_id);
    db_bind_text(st, 2, tracker);
    db_bind_text(st, 3, external_id);
    db_bind_text(st, 4, url ? url : "");
    db_bind_int(st, 5, evidence_count);
    db_bind_int(st, 6, now);
    db_bind_int(st, 7, now);
    return store_exec_stmt(s, st, "recording a story's ticket");
}

static int mark_exported(store *s, int64_t story_id, int64_t now) {
    /* 'candidate' is what stories created before the lifecycle existed still say. */
    db_stmt *st = store_stmt(s,
        "UPDATE stories SET status = 'exported', state_changed_at = ?, updated_at = ?"
        " WHERE id = ? AND status IN ('open', 'candidate')");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, now);
    db_bind_int(st, 2, now);
    db_bind_int(st, 3, story_id);
    return store_exec_stmt(s, st, "marking a story exported");
}

int store_export_link_put(store *s, int64_t story_id, const char *tracker,
                          const char *external_id, const char *url, int64_t evidence_count,
                          int mark, int64_t now) {
    int rc = store_begin(s);
    if (rc != STORE_OK) return rc;
    rc = put_link(s, story_id, tracker, external_id, url, evidence_count, now);
    if (rc == STORE_OK && mark) rc = mark_exported(s, story_id, now);
    if (rc == STORE_OK) return store_commit(s);
    store_rollback(s);
    return rc;
}
