/* Phase results: idempotent upserts keyed by (run, conversation), and the failure
 * ledger. The work item is closed by store_work_finish (store_work.c), first in the
 * same transaction: a result is written only by the holder of the item's claim. */
#include <stdlib.h>
#include <string.h>

#include "store/store_internal.h"
#include "util/mem.h"

int store_put_classification(store *s, int64_t run_id, const classification_row *r,
                             int64_t now) {
    db_stmt *st = store_stmt(s,
        "INSERT INTO classifications (run_id, conversation_id, stage1_type, stage1_confidence,"
        " urgency, routing_priority, routing_team, auto_response_eligible, stage2_type,"
        " stage2_confidence, disambiguation_level, classification_changed, reasoning,"
        " stage2_reasoning, support_insights, final_type, final_confidence, actionable,"
        " created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
        " ON CONFLICT (run_id, conversation_id) DO UPDATE SET"
        " stage1_type = excluded.stage1_type, stage1_confidence = excluded.stage1_confidence,"
        " urgency = excluded.urgency, routing_priority = excluded.routing_priority,"
        " routing_team = excluded.routing_team,"
        " auto_response_eligible = excluded.auto_response_eligible,"
        " stage2_type = excluded.stage2_type, stage2_confidence = excluded.stage2_confidence,"
        " disambiguation_level = excluded.disambiguation_level,"
        " classification_changed = excluded.classification_changed,"
        " reasoning = excluded.reasoning, stage2_reasoning = excluded.stage2_reasoning,"
        " support_insights = excluded.support_insights, final_type = excluded.final_type,"
        " final_confidence = excluded.final_confidence, actionable = excluded.actionable,"
        " created_at = excluded.created_at");
    if (!st) return STORE_ERR;
    int i = 1;
    db_bind_int(st, i++, run_id);
    db_bind_text(st, i++, r->conversation_id);
    db_bind_text(st, i++, r->stage1_type);
    db_bind_text(st, i++, r->stage1_confidence);
    db_bind_text(st, i++, r->urgency);
    db_bind_text(st, i++, r->routing_priority);
    db_bind_text(st, i++, r->routing_team);
    db_bind_int(st, i++, r->auto_response_eligible);
    db_bind_text(st, i++, r->stage2_type);
    db_bind_text(st, i++, r->stage2_confidence);
    db_bind_text(st, i++, r->disambiguation_level);
    db_bind_int(st, i++, r->classification_changed);
    db_bind_text(st, i++, r->reasoning);
    db_bind_text(st, i++, r->stage2_reasoning);
    db_bind_text(st, i++, r->support_insights_json);
    db_bind_text(st, i++, r->final_type);
    db_bind_text(st, i++, r->final_confidence);
    db_bind_int(st, i++, r->actionable);
    db_bind_int(st, i++, now);
    return store_exec_stmt(s, st, "storing classification");
}

int store_put_embedding(store *s, int64_t run_id, const char *conversation_id,
                        const char *model, const float *vec, int dim, int64_t now) {
    db_stmt *st = store_stmt(s,
        "INSERT INTO embeddings (run_id, conversation_id, model, dim, vector, created_at)"
        " VALUES (?,?,?,?,?,?) ON CONFLICT (run_id, conversation_id) DO UPDATE SET"
        " model = excluded.model, dim = excluded.dim, vector = excluded.vector,"
        " created_at = excluded.created_at");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, run_id);
    db_bind_text(st, 2, conversation_id);
    db_bind_text(st, 3, model);
    db_bind_int(st, 4, dim);
    /* Vectors are stored as little-endian float32, which is the host layout here. */
    db_bind_blob(st, 5, vec, (size_t)dim * sizeof(float));
    db_bind_int(st, 6, now);
    return store_exec_stmt(s, st, "storing embedding");
}

int store_put_facet(store *s, int64_t run_id, const facet_row *r, int64_t now) {
    db_stmt *st = store_stmt(s,
        "INSERT INTO facets (run_id, conversation_id, action_type, direction, symptom,"
        " user_goal, model, created_at) VALUES (?,?,?,?,?,?,?,?)"
        " ON CONFLICT (run_id, conversation_id) DO UPDATE SET"
        " action_type = excluded.action_type, direction = excluded.direction,"
        " symptom = excluded.symptom, user_goal = excluded.user_goal, model = excluded.model,"
        " created_at = excluded.created_at");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, run_id);
    db_bind_text(st, 2, r->conversation_id);
    db_bind_text(st, 3, r->action_type);
    db_bind_text(st, 4, r->direction);
    db_bind_text(st, 5, r->symptom ? r->symptom : "");
    db_bind_text(st, 6, r->user_goal ? r->user_goal : "");
    db_bind_text(st, 7, r->model);
    db_bind_int(st, 8, now);
    return store_exec_stmt(s, st, "storing facets");
}

static int has_items(const char *json) { return json && strcmp(json, "[]") != 0; }

int store_put_theme(store *s, int64_t run_id, const theme_row *r, int64_t now) {
    db_stmt *st = store_stmt(s,
        "INSERT INTO themes (run_id, conversation_id, product_area, component, issue_signature,"
        " product_area_raw, component_raw, proposed_signature, matched_existing,"
        " match_confidence, user_intent, symptoms, affected_flow, root_cause_hypothesis,"
        " diagnostic_summary, key_excerpts, quality_score, quality_details, passed,"
        " filter_reason, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
        " ON CONFLICT (run_id, conversation_id) DO UPDATE SET"
        " product_area = excluded.product_area, component = excluded.component,"
        " issue_signature = excluded.issue_signature,"
        " product_area_raw = excluded.product_area_raw, component_raw = excluded.component_raw,"
        " proposed_signature = excluded.proposed_signature,"
        " matched_existing = excluded.matched_existing,"
        " match_confidence = excluded.match_confidence, user_intent = excluded.user_intent,"
        " symptoms = excluded.symptoms, affected_flow = excluded.affected_flow,"
        " root_cause_hypothesis = excluded.root_cause_hypothesis,"
        " diagnostic_summary = excluded.diagnostic_summary,"
        " key_excerpts = excluded.key_excerpts, quality_score = excluded.quality_score,"
        " quality_details = excluded.quality_details, passed = excluded.passed,"
        " filter_reason = excluded.filter_reason, created_at = excluded.created_at"
        " RETURNING id");
    if (!st) return STORE_ERR;
    int i = 1;
    db_bind_int(st, i++, run_id);
    db_bind_text(st, i++, r->conversation_id);
    db_bind_text(st, i++, r->product_area);
    db_bind_text(st, i++, r->component);
    db_bind_text(st, i++, r->issue_signature);
    db_bind_text(st, i++, r->product_area_raw);
    db_bind_text(st, i++, r->component_raw);
    db_bind_text(st, i++, r->proposed_signature);
    db_bind_int(st, i++, r->matched_existing);
    db_bind_text(st, i++, r->match_confidence);
    db_bind_text(st, i++, r->user_intent ? r->user_intent : "");
    db_bind_text(st, i++, r->symptoms_json ? r->symptoms_json : "[]");
    db_bind_text(st, i++, r->affected_flow ? r->affected_flow : "");
    db_bind_text(st, i++, r->root_cause_hypothesis ? r->root_cause_hypothesis : "");
    db_bind_text(st, i++, r->diagnostic_summary ? r->diagnostic_summary : "");
    db_bind_text(st, i++, r->key_excerpts_json ? r->key_excerpts_json : "[]");
    db_bind_double(st, i++, r->quality_score);
    db_bind_text(st, i++, r->quality_details_json ? r->quality_details_json : "{}");
    db_bind_int(st, i++, r->passed);
    db_bind_text(st, i++, r->filter_reason);
    db_bind_int(st, i++, now);
    int rc = db_step(st);
    if (rc != DB_ROW) {
        db_reset(st);
        return store_fail(s, rc, "storing theme");
    }
    int64_t theme_id = db_col_int(st, 0);
    while ((rc = db_step(st)) == DB_ROW) {}
    db_reset(st);
    if (rc != DB_DONE) return store_fail(s, rc, "storing theme");

    /* Context usage: one row per theme (UNIQUE theme_id), with its conversation —
     * both things the original's insert got wrong. */
    if (has_items(r->context_used_json) || has_items(r->context_gaps_json)) {
        st = store_stmt(s,
            "INSERT INTO context_usage_logs (theme_id, run_id, conversation_id, context_used,"
            " context_gaps, created_at) VALUES (?,?,?,?,?,?)"
            " ON CONFLICT (theme_id) DO UPDATE SET context_used = excluded.context_used,"
            " context_gaps = excluded.context_gaps, created_at = excluded.created_at");
        if (!st) return STORE_ERR;
        db_bind_int(st, 1, theme_id);
        db_bind_int(st, 2, run_id);
        db_bind_text(st, 3, r->conversation_id);
        db_bind_text(st, 4, r->context_used_json ? r->context_used_json : "[]");
        db_bind_text(st, 5, r->context_gaps_json ? r->context_gaps_json : "[]");
        db_bind_int(st, 6, now);
        return store_exec_stmt(s, st, "storing context usage");
    }
    return STORE_OK;
}

static int record_error(store *s, int64_t run_id, enum run_phase phase, const char *conv,
                        const char *reason, int64_t now) {
    db_stmt *st = store_stmt(s,
        "INSERT INTO run_errors (run_id, phase, conversation_id, reason, attempts, created_at)"
        " VALUES (?,?,?,?,1,?) ON CONFLICT (run_id, phase, conversation_id) DO UPDATE SET"
        " reason = excluded.reason, attempts = run_errors.attempts + 1");
    if (!st) return STORE_ERR;
    db_bind_int(st, 1, run_id);
    db_bind_text(st, 2, run_phase_name(phase));
    db_bind_text(st, 3, conv);
    db_bind_text(st, 4, reason);
    db_bind_int(st, 5, now);
    return store_exec_stmt(s, st, "recording failure");
}

int store_put_run_error_for(store *s, int64_t run_id, enum run_phase phase,
                            const char *conversation_id, const char *reason, int64_t now) {
    return record_error(s, run_id, phase, conversation_id, reason, now);
}

int store_put_run_error(store *s, int64_t run_id, enum run_phase phase, const char *reason,
                        int64_t now) {
    return record_error(s, run_id, phase, "", reason, now);
}

int store_signature_register(store *s, const char *signature, const char *product_area,
                             const char *component, int64_t run_id, int64_t now, int *is_new) {
    /* INSERT ... DO NOTHING is the atomic read-decide-write: exactly one caller, in any
     * process, inserts a given signature. */
    db_stmt *st = store_stmt(s,
        "INSERT INTO signatures (signature, product_area, component, first_run_id,"
        " first_seen_at) VALUES (?,?,?,?,?) ON CONFLICT (signature) DO NOTHING");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, signature);
    db_bind_text(st, 2, product_area);
    db_bind_text(st, 3, component);
    db_bind_int(st, 4, run_id);
    db_bind_int(st, 5, now);
    int rc = store_exec_stmt(s, st, "registering signature");
    if (rc) return rc;
    *is_new = db_changes(s->db) == 1;
    return STORE_OK;
}

int store_signature_known(store *s, const char *signature) {
    db_stmt *st = store_stmt(s, "SELECT 1 FROM signatures WHERE signature = ?");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, signature);
    int rc = store_step_row(s, st, "looking up signature");
    if (rc >= 0) db_reset(st);
    return rc;
}

int store_signature_list(store *s, const char *product_area, size_t max, char ***sigs,
                         size_t *n) {
    *sigs = NULL;
    *n = 0;
    db_stmt *st = store_stmt(s,
        "SELECT signature FROM signatures WHERE product_area = ?"
        " ORDER BY first_seen_at DESC, signature LIMIT ?");
    if (!st) return STORE_ERR;
    db_bind_text(st, 1, product_area);
    db_bind_int(st, 2, (int64_t)max);
    size_t cap = 0;
    int rc;
    while ((rc = db_step(st)) == DB_ROW) {
        XGROW(*sigs, cap, *n + 1);
        (*sigs)[(*n)++] = store_col_dup(st, 0);
    }
    db_reset(st);
    if (rc != DB_DONE) {
        for (size_t i = 0; i < *n; i++) free((*sigs)[i]);
        free(*sigs);
        *sigs = NULL;
        *n = 0;
        return store_fail(s, rc, "listing signatures");
    }
    return STORE_OK;
}

int store_classifications_each(store *s, int64_t run_id,
                               int (*fn)(const classification_brief *b, void *ctx), void *ctx) {
    db_stmt *st = db_prepare(s->db,
        "SELECT k.conversation_id, k.final_type, k.final_confidence, SUBSTR(c.body, 1, 200),"
        " c.support_count FROM classifications k JOIN conversations c ON c.id = k.conversation_id"
        " WHERE k.run_id = ? ORDER BY k.conversation_id");
    if (!st) return store_fail(s, DB_ERR, "reading classifications");
    db_bind_int(st, 1, run_id);
    int rc;
    while ((rc = db_step(st)) == DB_ROW) {
        classification_brief b = {db_col_text(st, 0), db_col_text(st, 1), db_col_text(st, 2),
                                  db_col_text(st, 3), (int)db_col_int(st, 4)};
        if (!b.snippet) b.snippet = "";
        if (fn(&b, ctx)) {
            rc = DB_DONE;
            break;
        }
    }
    int out = rc == DB_DONE ? STORE_OK : store_fail(s, rc, "reading classifications");
    db_finalize(st);
    return out;
}
