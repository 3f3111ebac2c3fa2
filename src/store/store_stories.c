/* Story phase inputs, stories with their evidence, and cross-run orphans. */
#include <stdlib.h>
#include <string.h>

#include "store/store_internal.h"
#include "util/mem.h"

void story_inputs_free(story_input *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(v[i].conversation_id);
        free(v[i].signature);
        free(v[i].product_area);
        free(v[i].component);
        free(v[i].action_type);
        free(v[i].direction);
        free(v[i].user_intent);
        free(v[i].symptoms_json);
        free(v[i].excerpt);
        free(v[i].vec);
    }
    free(v);
}

int store_story_partitions(store *s, int64_t run_id, char ***areas, int64_t **counts,
                           size_t *n) {
    *areas = NULL;
    *counts = NULL;
    *n = 0;
    db_stmt *st = store_stmt(s,
        "SELECT product_area, COUNT(*) FROM themes WHERE run_id = ? AND passed = 1"
        " GROUP BY product_area ORDER BY product_area");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, run_id);
    size_t cap = 0, cap2 = 0;
    int rc;
    while ((rc = db_step(st)) == DB_ROW) {
        XGROW(*areas, cap, *n + 1);
        XGROW(*counts, cap2, *n + 1);
        (*areas)[*n] = store_col_dup(st, 0);
        (*counts)[*n] = db_col_int(st, 1);
        (*n)++;
    }
    db_reset(st);
    if (rc != DB_DONE) {
        for (size_t i = 0; i < *n; i++) free((*areas)[i]);
        free(*areas);
        free(*counts);
        *areas = NULL;
        *counts = NULL;
        *n = 0;
        return store_fail(s, rc, "listing story partitions");
    }
    return STORE_OK;
}

#define STORY_INPUT_SELECT                                                              \
    "SELECT t.conversation_id, t.issue_signature, t.product_area, t.component,"         \
    " COALESCE(f.action_type, 'unknown'), COALESCE(f.direction, 'neutral'),"            \
    " t.user_intent, t.symptoms, SUBSTR(c.digest, 1, 500), e.dim, e.vector, c.created_at"             \
    " FROM themes t JOIN conversations c ON c.id = t.conversation_id"                  \
    " LEFT JOIN facets f ON f.run_id = t.run_id AND f.conversation_id = t.conversation_id" \
    " LEFT JOIN embeddings e ON e.run_id = t.run_id"                                    \
    "  AND e.conversation_id = t.conversation_id"                                       \
    " WHERE t.run_id = ? AND t.passed = 1"

int store_story_inputs(store *s, int64_t run_id, const char *area, story_input **out,
                       size_t *n) {
    *out = NULL;
    *n = 0;
    db_stmt *st = area
        ? store_stmt(s, STORY_INPUT_SELECT " AND t.product_area = ? ORDER BY t.conversation_id")
        : store_stmt(s, STORY_INPUT_SELECT " ORDER BY t.conversation_id");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, run_id);
    if (area) db_bind_text(st, 2, area);
    size_t cap = 0;
    int rc;
    while ((rc = db_step(st)) == DB_ROW) {
        XGROW(*out, cap, *n + 1);
        story_input *x = &(*out)[(*n)++];
        memset(x, 0, sizeof *x);
        x->conversation_id = store_col_dup(st, 0);
        x->signature = store_col_dup(st, 1);
        x->product_area = store_col_dup(st, 2);
        x->component = store_col_dup(st, 3);
        x->action_type = store_col_dup(st, 4);
        x->direction = store_col_dup(st, 5);
        x->user_intent = store_col_dup(st, 6);
        x->symptoms_json = store_col_dup(st, 7);
        x->excerpt = store_col_dup(st, 8);
        x->created_at = db_col_int(st, 11);
        if (!db_col_null(st, 10)) {
            size_t len = 0;
            const void *blob = db_col_blob(st, 10, &len);
            int dim = (int)db_col_int(st, 9);
            if (blob && dim > 0 && len == (size_t)dim * sizeof(float)) {
                x->vec = xmalloc(len);
                memcpy(x->vec, blob, len);
                x->dim = dim;
            }
        }
    }
    db_reset(st);
    if (rc != DB_DONE) {
        story_inputs_free(*out, *n);
        *out = NULL;
        *n = 0;
        return store_fail(s, rc, "loading story inputs");
    }
    return STORE_OK;
}

int story_state_valid(const char *state) {
    static const char *const states[] = {"open", "exported", "closed", "rejected"};
    for (size_t i = 0; state && i < sizeof states / sizeof states[0]; i++)
        if (!strcmp(state, states[i])) return 1;
    return 0;
}

/* Count, first and last seen (the conversations' creation dates) from the evidence. */
static int story_refresh(store *s, int64_t story_id, int64_t run_id, int64_t now) {
    db_stmt *st = store_stmt(s,
        "UPDATE stories SET"
        " conversation_count = (SELECT COUNT(*) FROM story_evidence WHERE story_id = ?),"
        " first_seen_at = (SELECT MIN(c.created_at) FROM story_evidence e"
        "  JOIN conversations c ON c.id = e.conversation_id WHERE e.story_id = ?),"
        " last_seen_at = (SELECT MAX(c.created_at) FROM story_evidence e"
        "  JOIN conversations c ON c.id = e.conversation_id WHERE e.story_id = ?),"
        " last_run_id = ?, updated_at = ? WHERE id = ?");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, story_id);
    db_bind_int(st, 2, story_id);
    db_bind_int(st, 3, story_id);
    db_bind_int(st, 4, run_id);
    db_bind_int(st, 5, now);
    db_bind_int(st, 6, story_id);
    return store_exec_stmt(s, st, "refreshing story counts");
}

/* Evidence rows new to the story; *added = how many. A conversation already evidence
 * of the story (an earlier run's) is skipped; one that is evidence of another story of
 * the same run is an error (UNIQUE(run_id, conversation_id)): the plan never does that. */
static int insert_evidence(store *s, int64_t story_id, int64_t run_id, char *const *ids,
                           char *const *excerpts, char *const *sigs, const char *sig_default,
                           size_t n, int64_t *added) {
    *added = 0;
    db_stmt *st = store_stmt(s,
        "INSERT INTO story_evidence (story_id, run_id, conversation_id, signature, excerpt)"
        " VALUES (?,?,?,?,?) ON CONFLICT (story_id, conversation_id) DO NOTHING");
    if (!st) return STORE_ERR;
    for (size_t k = 0; k < n; k++) {
        db_bind_int(st, 1, story_id);
        db_bind_int(st, 2, run_id);
        db_bind_text(st, 3, ids[k]);
        db_bind_text(st, 4, sigs && sigs[k] ? sigs[k] : sig_default);
        db_bind_text(st, 5, excerpts && excerpts[k] ? excerpts[k] : "");
        int rc = store_exec_stmt(s, st, "storing story evidence");
        if (rc) return rc;
        *added += db_changes(s->db) == 1;
    }
    return STORE_OK;
}

/* The story's history row for a run (created or grown), adding to an existing one. */
static int record_story_run(store *s, int64_t story_id, int64_t run_id, int created,
                            int64_t added, int64_t now) {
    db_stmt *st = store_stmt(s,
        "INSERT INTO story_runs (story_id, run_id, created, conversations_added, at)"
        " VALUES (?,?,?,?,?) ON CONFLICT (story_id, run_id) DO UPDATE SET"
        " conversations_added = story_runs.conversations_added + excluded.conversations_added,"
        " at = excluded.at");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, story_id);
    db_bind_int(st, 2, run_id);
    db_bind_int(st, 3, created);
    db_bind_int(st, 4, added);
    db_bind_int(st, 5, now);
    return store_exec_stmt(s, st, "recording story history");
}

int store_story_insert(store *s, const story_new *sn, int64_t now, int64_t *story_id) {
    db_stmt *st = store_stmt(s,
        "INSERT INTO stories (run_id, title, description, signature, product_area, component,"
        " action_type, direction, status, confidence_score, conversation_count, grouping_method,"
        " cluster_id, origin, created_at, updated_at, last_run_id, distinguisher, problem,"
        " affected, acceptance_criteria, story_kind, review_decision, review_reason)"
        " VALUES (?,?,?,?,?,?,?,?,'open',?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id");
    if (!st) return STORE_ERR;
    int i = 1;
    db_bind_int(st, i++, sn->run_id);
    db_bind_text(st, i++, sn->title);
    db_bind_text(st, i++, sn->description ? sn->description : "");
    db_bind_text(st, i++, sn->signature);
    db_bind_text(st, i++, sn->product_area);
    db_bind_text(st, i++, sn->component);
    db_bind_text(st, i++, sn->action_type);
    db_bind_text(st, i++, sn->direction);
    db_bind_double(st, i++, sn->confidence);
    db_bind_int(st, i++, (int64_t)sn->n);
    db_bind_text(st, i++, sn->grouping_method);
    db_bind_text(st, i++, sn->cluster_id);
    db_bind_text(st, i++, sn->origin);
    db_bind_int(st, i++, now);
    db_bind_int(st, i++, now);
    db_bind_int(st, i++, sn->run_id);
    db_bind_text(st, i++, sn->distinguisher ? sn->distinguisher : "");
    db_bind_text(st, i++, sn->problem ? sn->problem : "");
    db_bind_text(st, i++, sn->affected ? sn->affected : "");
    db_bind_text(st, i++, sn->criteria_json ? sn->criteria_json : "[]");
    db_bind_text(st, i++, sn->kind ? sn->kind : "bug");
    db_bind_text(st, i++, sn->review_decision ? sn->review_decision : "keep");
    db_bind_text(st, i++, sn->review_reason ? sn->review_reason : "");
    int rc = db_step(st);
    if (rc != DB_ROW) {
        db_reset(st);
        return store_fail(s, rc, "creating story");
    }
    *story_id = db_col_int(st, 0);
    while ((rc = db_step(st)) == DB_ROW) {}
    db_reset(st);
    if (rc != DB_DONE) return store_fail(s, rc, "creating story");
    int64_t added = 0;
    rc = insert_evidence(s, *story_id, sn->run_id, sn->conversation_ids, sn->excerpts,
                         sn->signatures, sn->signature, sn->n, &added);
    if (rc == STORE_OK) rc = record_story_run(s, *story_id, sn->run_id, 1, added, now);
    if (rc == STORE_OK) rc = story_refresh(s, *story_id, sn->run_id, now);
    return rc;
}

int store_story_add_evidence(store *s, int64_t story_id, int64_t run_id,
                             char *const *conversation_ids, char *const *excerpts,
                             char *const *signatures, size_t n, int64_t now, int64_t *added) {
    db_stmt *st = store_stmt(s, "SELECT signature FROM stories WHERE id = ?");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, story_id);
    int rc = store_step_row(s, st, "loading story");
    if (rc != STORE_FOUND) return rc < 0 ? rc : STORE_NOTFOUND;
    char *sig = store_col_dup(st, 0);
    db_reset(st);
    rc = insert_evidence(s, story_id, run_id, conversation_ids, excerpts, signatures, sig, n,
                         added);
    free(sig);
    if (rc == STORE_OK) rc = record_story_run(s, story_id, run_id, 0, *added, now);
    if (rc == STORE_OK) rc = story_refresh(s, story_id, run_id, now);
    return rc;
}

int store_story_set_text(store *s, int64_t story_id, const char *title, const char *description,
                         int64_t now) {
    db_stmt *st = store_stmt(s,
        "UPDATE stories SET title = COALESCE(CAST(? AS TEXT), title), description = ?,"
        " updated_at = ? WHERE id = ?");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, title);
    db_bind_text(st, 2, description ? description : "");
    db_bind_int(st, 3, now);
    db_bind_int(st, 4, story_id);
    return store_exec_stmt(s, st, "updating story text");
}

int store_story_set_state(store *s, int64_t story_id, const char *state, const char *reason,
                          int64_t now) {
    if (!story_state_valid(state)) return STORE_CONFLICT;
    db_stmt *st = store_stmt(s,
        "UPDATE stories SET status = ?, state_reason = ?, state_changed_at = ?, updated_at = ?"
        " WHERE id = ?");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, state);
    db_bind_text(st, 2, reason ? reason : "");
    db_bind_int(st, 3, now);
    db_bind_int(st, 4, now);
    db_bind_int(st, 5, story_id);
    int rc = store_exec_stmt(s, st, "setting story state");
    if (rc) return rc;
    return db_changes(s->db) == 1 ? STORE_OK : STORE_NOTFOUND;
}

void story_refs_free(story_ref *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(v[i].signature);
        free(v[i].product_area);
        free(v[i].distinguisher);
        free(v[i].status);
        free(v[i].title);
    }
    free(v);
}

int store_story_refs(store *s, story_ref **out, size_t *n) {
    *out = NULL;
    *n = 0;
    db_stmt *st = store_stmt(s,
        "SELECT id, signature, product_area, distinguisher, status, title FROM stories"
        " ORDER BY id");
    if (!st) return STORE_ERR;
    size_t cap = 0;
    int rc;
    while ((rc = db_step(st)) == DB_ROW) {
        XGROW(*out, cap, *n + 1);
        story_ref *r = &(*out)[(*n)++];
        r->id = db_col_int(st, 0);
        r->signature = store_col_dup(st, 1);
        r->product_area = store_col_dup(st, 2);
        r->distinguisher = store_col_dup(st, 3);
        r->status = store_col_dup(st, 4);
        r->title = store_col_dup(st, 5);
    }
    db_reset(st);
    if (rc != DB_DONE) {
        story_refs_free(*out, *n);
        *out = NULL;
        *n = 0;
        return store_fail(s, rc, "listing stories");
    }
    return STORE_OK;
}

int store_review_put(store *s, const review_row *r, int64_t now) {
    db_stmt *st = store_stmt(s,
        "INSERT INTO story_reviews (run_id, product_area, signature, decision, reason,"
        " conversation_count, merge_into, parts, reviewer, created_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (run_id, product_area, signature) DO UPDATE"
        " SET decision = excluded.decision, reason = excluded.reason,"
        " conversation_count = excluded.conversation_count, merge_into = excluded.merge_into,"
        " parts = excluded.parts, reviewer = excluded.reviewer, created_at = excluded.created_at");
    if (!st) return STORE_ERR;
    int i = 1;
    db_bind_int(st, i++, r->run_id);
    db_bind_text(st, i++, r->product_area);
    db_bind_text(st, i++, r->signature);
    db_bind_text(st, i++, r->decision);
    db_bind_text(st, i++, r->reason ? r->reason : "");
    db_bind_int(st, i++, r->conversation_count);
    db_bind_text(st, i++, r->merge_into);
    db_bind_text(st, i++, r->parts_json ? r->parts_json : "[]");
    db_bind_text(st, i++, r->reviewer ? r->reviewer : "rules");
    db_bind_int(st, i++, now);
    return store_exec_stmt(s, st, "storing review decision");
}

static int find_active_orphan(store *s, const char *signature, int64_t *id) {
    db_stmt *st = store_stmt(s,
        "SELECT id FROM orphans WHERE signature = ? AND graduated_at IS NULL");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, signature);
    int rc = store_step_row(s, st, "finding orphan");
    if (rc == STORE_FOUND) *id = db_col_int(st, 0);
    if (rc >= 0) db_reset(st);
    return rc;
}

int store_orphan_find(store *s, const char *signature, int64_t *orphan_id, int64_t *first_run,
                      int64_t *members) {
    int rc = find_active_orphan(s, signature, orphan_id);
    if (rc != STORE_FOUND) return rc;
    *first_run = store_orphan_first_run(s, *orphan_id);
    *members = store_orphan_member_count(s, *orphan_id);
    return *first_run < 0 || *members < 0 ? STORE_ERR : STORE_FOUND;
}

int store_orphan_get_or_create(store *s, const orphan_key *k, int64_t run_id, int64_t now,
                               int64_t *orphan_id, int *created) {
    *created = 0;
    int rc = find_active_orphan(s, k->signature, orphan_id);
    if (rc < 0) return rc;
    if (rc == STORE_FOUND) {
        db_stmt *st = store_stmt(s,
            "UPDATE orphans SET last_run_id = ?, last_updated_at = ? WHERE id = ?");
        if (!st) return STORE_ERR;
        db_bind_int(st, 1, run_id);
        db_bind_int(st, 2, now);
        db_bind_int(st, 3, *orphan_id);
        return store_exec_stmt(s, st, "touching orphan");
    }
    db_stmt *st = store_stmt(s,
        "INSERT INTO orphans (signature, product_area, component, action_type, direction,"
        " title, first_run_id, last_run_id, first_seen_at, last_updated_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?) RETURNING id");
    if (!st) return STORE_ERR;
    int i = 1;
    db_bind_text(st, i++, k->signature);
    db_bind_text(st, i++, k->product_area);
    db_bind_text(st, i++, k->component);
    db_bind_text(st, i++, k->action_type);
    db_bind_text(st, i++, k->direction);
    db_bind_text(st, i++, k->title ? k->title : "");
    db_bind_int(st, i++, run_id);
    db_bind_int(st, i++, run_id);
    db_bind_int(st, i++, now);
    db_bind_int(st, i++, now);
    rc = db_step(st);
    if (rc == DB_ROW) {
        *orphan_id = db_col_int(st, 0);
        while ((rc = db_step(st)) == DB_ROW) {}
    }
    db_reset(st);
    if (rc == DB_DONE) {
        *created = 1;
        return STORE_OK;
    }
    return store_fail(s, rc, "creating orphan");
}

int store_orphan_add_member(store *s, int64_t orphan_id, const char *conversation_id,
                            int64_t run_id, const char *excerpt, int64_t now, int *added) {
    db_stmt *st = store_stmt(s,
        "INSERT INTO orphan_members (orphan_id, conversation_id, run_id, excerpt, added_at)"
        " VALUES (?,?,?,?,?) ON CONFLICT (orphan_id, conversation_id) DO NOTHING");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, orphan_id);
    db_bind_text(st, 2, conversation_id);
    db_bind_int(st, 3, run_id);
    db_bind_text(st, 4, excerpt ? excerpt : "");
    db_bind_int(st, 5, now);
    int rc = store_exec_stmt(s, st, "adding orphan member");
    if (rc) return rc;
    *added = db_changes(s->db) == 1;
    return STORE_OK;
}

int store_orphan_remove_conversation(store *s, const char *conversation_id) {
    db_stmt *st = store_stmt(s,
        "DELETE FROM orphan_members WHERE conversation_id = ? AND EXISTS"
        " (SELECT 1 FROM orphans o WHERE o.id = orphan_members.orphan_id"
        " AND o.graduated_at IS NULL)");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, conversation_id);
    return store_exec_stmt(s, st, "removing orphan member");
}

int64_t store_orphan_member_count(store *s, int64_t orphan_id) {
    db_stmt *st = store_stmt(s, "SELECT COUNT(*) FROM orphan_members WHERE orphan_id = ?");
    if (!st) return -1;
    db_bind_int(st, 1, orphan_id);
    if (store_step_row(s, st, "counting orphan members") != STORE_FOUND) return -1;
    int64_t n = db_col_int(st, 0);
    db_reset(st);
    return n;
}

int64_t store_orphan_first_run(store *s, int64_t orphan_id) {
    db_stmt *st = store_stmt(s, "SELECT COALESCE(first_run_id, 0) FROM orphans WHERE id = ?");
    if (!st) return -1;
    db_bind_int(st, 1, orphan_id);
    if (store_step_row(s, st, "reading orphan") != STORE_FOUND) return -1;
    int64_t r = db_col_int(st, 0);
    db_reset(st);
    return r;
}

int store_orphan_members(store *s, int64_t orphan_id, char ***ids, char ***excerpts,
                         size_t *n) {
    *ids = NULL;
    *excerpts = NULL;
    *n = 0;
    db_stmt *st = store_stmt(s,
        "SELECT conversation_id, excerpt FROM orphan_members WHERE orphan_id = ?"
        " ORDER BY added_at, conversation_id");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, orphan_id);
    size_t cap = 0, cap2 = 0;
    int rc;
    while ((rc = db_step(st)) == DB_ROW) {
        XGROW(*ids, cap, *n + 1);
        XGROW(*excerpts, cap2, *n + 1);
        (*ids)[*n] = store_col_dup(st, 0);
        (*excerpts)[*n] = store_col_dup(st, 1);
        (*n)++;
    }
    db_reset(st);
    if (rc != DB_DONE) {
        for (size_t i = 0; i < *n; i++) {
            free((*ids)[i]);
            free((*excerpts)[i]);
        }
        free(*ids);
        free(*excerpts);
        *ids = *excerpts = NULL;
        *n = 0;
        return store_fail(s, rc, "listing orphan members");
    }
    return STORE_OK;
}

int store_orphan_graduate(store *s, int64_t orphan_id, int64_t story_id, int64_t now) {
    db_stmt *st = store_stmt(s,
        "UPDATE orphans SET graduated_at = ?, story_id = ?, last_updated_at = ?"
        " WHERE id = ? AND graduated_at IS NULL");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, now);
    db_bind_int(st, 2, story_id);
    db_bind_int(st, 3, now);
    db_bind_int(st, 4, orphan_id);
    int rc = store_exec_stmt(s, st, "graduating orphan");
    if (rc) return rc;
    return db_changes(s->db) == 1 ? STORE_OK : STORE_CONFLICT;
}
