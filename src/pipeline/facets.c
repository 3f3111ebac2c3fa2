/* Facet phase: action type, direction, symptom and user goal per actionable
 * conversation (original-phases.md §4). Runs concurrently like every LLM phase (the
 * original ran it sequentially) and maps unknown enum values to unknown/neutral. */
#include <stdlib.h>

#include "pipeline/answer.h"
#include "pipeline/engine.h"
#include "util/mem.h"
#include "util/timeutil.h"

#define FACET_MAX_WORDS 10
#define FACET_MAX_CHARS 200

typedef struct facet_state {
    const char *action_type, *direction;
    char *symptom, *user_goal;
} facet_state;

static int validate_facets(const json_t *args, const json_t *a, char *msg, size_t len) {
    (void)args;
    if (!json_is_object(a)) return answer_reject(msg, len, "answer", "expected a JSON object");
    if (!json_is_string(json_object_get(a, "action_type")))
        return answer_reject(msg, len, "action_type", "missing");
    if (!json_is_string(json_object_get(a, "direction")))
        return answer_reject(msg, len, "direction", "missing");
    return 0;
}

static int facets_prepare(engine *e, call_group *g) {
    work_item *it = g->items[0];
    const conv_record *c = &it->in.conv;
    if ((!c->digest || !c->digest[0]) && (!c->body || !c->body[0])) {
        engine_item_fail(e, it, "Empty conversation text");
        return 0;
    }
    engine_fill_input(g);
    g->call.task = LLM_FACETS;
    g->call.validate = validate_facets;
    return 1;
}

static int facets_complete(engine *e, call_group *g) {
    work_item *it = g->items[0];
    const llm_call *c = &g->call;
    char why[160];
    if (c->status != LLM_OK) {
        engine_item_fail(e, it, "facet extraction failed (%s): %s", llm_status_name(c->status),
                         c->error);
        return 0;
    }
    if (validate_facets(c->args, c->answer, why, sizeof why)) {
        engine_item_fail(e, it, "facet answer invalid: %s", why);
        return 0;
    }
    facet_state *fs = xcalloc(1, sizeof *fs);
    fs->action_type = answer_enum(c->answer, "action_type", LLM_ACTION_TYPES, "unknown");
    fs->direction = answer_enum(c->answer, "direction", LLM_DIRECTIONS, "neutral");
    fs->symptom = answer_words(c->answer, "symptom", FACET_MAX_WORDS, FACET_MAX_CHARS);
    fs->user_goal = answer_words(c->answer, "user_goal", FACET_MAX_WORDS, FACET_MAX_CHARS);
    it->state = fs;
    engine_item_ok(e, it);
    return 0;
}

static int facets_write(engine *e, work_item *it) {
    facet_state *fs = it->state;
    facet_row r = {it->in.conv.id, fs->action_type, fs->direction, fs->symptom, fs->user_goal,
                   e->llm->chat_model};
    return store_put_facet(e->st, e->run->id, &r, wall_unix());
}

static void facets_free(work_item *it) {
    facet_state *fs = it->state;
    free(fs->symptom);
    free(fs->user_goal);
    free(fs);
    it->state = NULL;
}

const phase_ops FACETS_OPS = {
    .phase = PHASE_FACETS,
    .group_max = 1,
    .prepare = facets_prepare,
    .complete = facets_complete,
    .write = facets_write,
    .free_state = facets_free,
};

int facets_answer_check(const json_t *args, const json_t *answer, char *msg, size_t len) {
    return validate_facets(args, answer, msg, len);
}
