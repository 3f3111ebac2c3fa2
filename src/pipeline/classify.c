/* Classification phase: stage 1 routing for every conversation of the run, stage 2
 * refinement when support replied (original-phases.md §1), with the original's
 * weak points fixed: one set of derived routing fields, stage 2's disambiguation level
 * and support insights kept, and stage 2 overriding stage 1 only when it is at least as
 * sure (a low-confidence stage 2 does not overturn a confident stage 1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/answer.h"
#include "pipeline/engine.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/timeutil.h"

static const char *const DISAMBIGUATION_LEVELS[] = {"high", "medium", "low", "none", NULL};

typedef struct classify_state {
    const char *stage1_type, *stage1_confidence, *urgency; /* point into static sets */
    char *reasoning;
    const char *stage2_type, *stage2_confidence, *disambiguation;
    char *stage2_reasoning;
    char *support_insights; /* JSON */
} classify_state;

static int validate_stage(const json_t *args, const json_t *a, char *msg, size_t len) {
    (void)args;
    if (!json_is_object(a)) return answer_reject(msg, len, "answer", "expected a JSON object");
    if (!answer_enum(a, "conversation_type", LLM_CONVERSATION_TYPES, NULL))
        return answer_reject(msg, len, "conversation_type",
                             "missing or not one of the 8 conversation types");
    return 0;
}

static const char *routing_team(const char *type) {
    static const char *const map[][2] = {
        {"billing_question", "billing_team"},  {"account_issue", "account_team"},
        {"product_issue", "technical_support"}, {"feature_request", "product_team"},
        {"configuration_help", "technical_support"}, {"how_to_question", "support_team"},
        {"general_inquiry", "support_team"},   {"spam", "spam_filter"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i][0], type) == 0) return map[i][1];
    return "support_team";
}

static int is_actionable(const char *type) {
    return llm_set_index(LLM_ACTIONABLE_TYPES, type) >= 0;
}

static int classify_prepare(engine *e, call_group *g) {
    (void)e;
    work_item *it = g->items[0];
    it->state = xcalloc(1, sizeof(classify_state));
    engine_fill_input(g);
    g->call.task = LLM_CLASSIFY;
    g->call.validate = validate_stage;
    return 1;
}

static void start_stage2(call_group *g, const classify_state *cs) {
    engine_set_args(g, json_pack("{ss}", "stage1_type", cs->stage1_type));
    g->call.task = LLM_REFINE;
    g->call.validate = validate_stage;
}

static int classify_complete(engine *e, call_group *g) {
    work_item *it = g->items[0];
    classify_state *cs = it->state;
    const llm_call *c = &g->call;
    if (g->step == 0) {
        if (c->status != LLM_OK) {
            engine_item_fail(e, it, "stage 1 classification failed (%s): %s",
                             llm_status_name(c->status), c->error);
            return 0;
        }
        char why[160];
        if (validate_stage(c->args, c->answer, why, sizeof why)) {
            engine_item_fail(e, it, "stage 1 answer invalid: %s", why);
            return 0;
        }
        cs->stage1_type = answer_enum(c->answer, "conversation_type", LLM_CONVERSATION_TYPES, NULL);
        cs->stage1_confidence = answer_enum(c->answer, "confidence", LLM_CONFIDENCES, "low");
        cs->urgency = answer_enum(c->answer, "urgency", LLM_URGENCIES, "normal");
        cs->reasoning = answer_text(c->answer, "reasoning", 1000);
        if (it->in.conv.support_count > 0) {
            start_stage2(g, cs);
            return 1;
        }
        engine_item_ok(e, it);
        return 0;
    }
    /* Stage 2. A failed refinement keeps the stage 1 result (the conversation is still
     * classified) and is recorded as an error of the phase, not silently dropped. */
    if (c->status != LLM_OK) {
        snprintf(it->reason, sizeof it->reason, "stage 2 refinement failed (%s): %s",
                 llm_status_name(c->status), c->error);
        engine_item_ok(e, it);
        return 0;
    }
    char why[160];
    if (validate_stage(c->args, c->answer, why, sizeof why)) {
        snprintf(it->reason, sizeof it->reason, "stage 2 answer invalid: %s", why);
        engine_item_ok(e, it);
        return 0;
    }
    cs->stage2_type = answer_enum(c->answer, "conversation_type", LLM_CONVERSATION_TYPES, NULL);
    cs->stage2_confidence = answer_enum(c->answer, "confidence", LLM_CONFIDENCES, "low");
    cs->disambiguation = answer_enum(c->answer, "disambiguation_level", DISAMBIGUATION_LEVELS,
                                     "none");
    cs->stage2_reasoning = answer_text(c->answer, "reasoning", 1000);
    json_t *si = jx_obj(c->answer, "support_insights");
    cs->support_insights = si ? jx_dump(si) : NULL;
    engine_item_ok(e, it);
    return 0;
}

/* Stage 2 wins unless it is low-confidence while stage 1 was not. */
static int stage2_wins(const classify_state *cs) {
    if (!cs->stage2_type) return 0;
    return strcmp(cs->stage2_confidence, "low") != 0 || strcmp(cs->stage1_confidence, "low") == 0;
}

static int classify_write(engine *e, work_item *it) {
    classify_state *cs = it->state;
    classification_row r = {0};
    int s2 = stage2_wins(cs);
    r.conversation_id = it->in.conv.id;
    r.stage1_type = cs->stage1_type;
    r.stage1_confidence = cs->stage1_confidence;
    r.urgency = cs->urgency;
    r.routing_priority =
        (!strcmp(cs->urgency, "critical") || !strcmp(cs->urgency, "high")) ? "high" : "normal";
    r.final_type = s2 ? cs->stage2_type : cs->stage1_type;
    r.final_confidence = s2 ? cs->stage2_confidence : cs->stage1_confidence;
    r.routing_team = routing_team(r.final_type);
    r.auto_response_eligible =
        !strcmp(r.final_type, "spam") || !strcmp(r.final_type, "general_inquiry");
    r.stage2_type = cs->stage2_type;
    r.stage2_confidence = cs->stage2_confidence;
    r.disambiguation_level = cs->disambiguation;
    r.classification_changed = cs->stage2_type && strcmp(r.final_type, cs->stage1_type) != 0;
    r.reasoning = cs->reasoning;
    r.stage2_reasoning = cs->stage2_reasoning;
    r.support_insights_json = cs->support_insights;
    r.actionable = is_actionable(r.final_type);
    int64_t now = wall_unix();
    int rc = store_put_classification(e->st, e->run->id, &r, now);
    if (rc == STORE_OK && r.actionable) { /* its next phases, in the same transaction */
        size_t nnext;
        const enum run_phase *next = engine_followers(e->run, &nnext);
        unsigned seeded = 0, taken = 0;
        for (size_t i = 0; i < nnext; i++) seeded |= 1u << next[i];
        rc = store_work_seed_next(e->st, e->run->id, r.conversation_id, next, nnext,
                                  e->env->owner, wall_unix() + e->lease_seconds,
                                  engine_takes(e), &taken);
        if (rc == STORE_OK) engine_seeded(e, it, seeded, taken, r.final_type);
    }
    if (rc == STORE_OK && it->reason[0])
        rc = store_put_run_error_for(e->st, e->run->id, PHASE_CLASSIFICATION, it->in.conv.id,
                                     it->reason, now);
    return rc;
}

static void classify_free(work_item *it) {
    classify_state *cs = it->state;
    free(cs->reasoning);
    free(cs->stage2_reasoning);
    free(cs->support_insights);
    free(cs);
    it->state = NULL;
}

const phase_ops CLASSIFY_OPS = {
    .phase = PHASE_CLASSIFICATION,
    .group_max = 1,
    .prepare = classify_prepare,
    .complete = classify_complete,
    .write = classify_write,
    .free_state = classify_free,
};

int classify_answer_check(const json_t *args, const json_t *answer, char *msg, size_t len) {
    return validate_stage(args, answer, msg, len);
}
