/* Shared pieces of the provider interface: the closed value sets, names, and
 * result cleanup. */
#include "llm/llm.h"

#include <stdlib.h>
#include <string.h>

#include "text/signature.h"
#include "util/jsonx.h"

const char *const LLM_CONVERSATION_TYPES[] = {
    "product_issue",     "how_to_question",   "feature_request", "account_issue",
    "billing_question",  "configuration_help", "general_inquiry", "spam", NULL};
const char *const LLM_ACTIONABLE_TYPES[] = {"product_issue", "feature_request",
                                            "how_to_question", NULL};
const char *const LLM_CONFIDENCES[] = {"high", "medium", "low", NULL};
const char *const LLM_URGENCIES[] = {"critical", "high", "normal", "low", NULL};
const char *const LLM_ACTION_TYPES[] = {"inquiry",         "complaint",      "bug_report",
                                        "how_to_question", "feature_request", "account_change",
                                        "delete_request",  "unknown",         NULL};
const char *const LLM_DIRECTIONS[] = {"excess",       "deficit",     "creation", "deletion",
                                      "modification", "performance", "neutral",  NULL};

int llm_set_index(const char *const *set, const char *s) {
    if (!s) return -1;
    for (int i = 0; set[i]; i++)
        if (strcmp(set[i], s) == 0) return i;
    return -1;
}

const char *llm_task_name(enum llm_task t) {
    static const char *names[LLM_TASK_COUNT] = {"classify", "refine", "facets", "theme",
                                                "canonicalize", "story", "review", "embed"};
    return (unsigned)t < LLM_TASK_COUNT ? names[t] : "unknown";
}

const json_t *llm_canon_decision(const json_t *answer, const json_t *args, size_t i) {
    const json_t *decisions = jx_arr(answer, "decisions"), *proposals = jx_arr(args, "proposals");
    const char *proposed = jx_str(json_array_get(proposals, i), "proposed");
    if (!decisions || !proposed) return NULL;
    size_t k;
    json_t *d;
    json_array_foreach(decisions, k, d)
        if (signature_same(jx_str(d, "proposed"), proposed)) return d;
    d = json_array_get(decisions, i);
    if (json_array_size(decisions) == json_array_size(proposals) && json_is_object(d) &&
        !jx_str(d, "proposed"))
        return d;
    return NULL;
}

const char *llm_status_name(enum llm_status s) {
    switch (s) {
    case LLM_OK: return "ok";
    case LLM_ERR_HTTP: return "http_error";
    case LLM_ERR_TIMEOUT: return "timeout";
    case LLM_ERR_INVALID: return "invalid_answer";
    case LLM_ERR_CANCELLED: return "cancelled";
    case LLM_ERR_INPUT: return "bad_input";
    }
    return "unknown";
}

void llm_call_reset_result(llm_call *c) {
    if (c->answer) json_decref(c->answer);
    free(c->vectors);
    c->answer = NULL;
    c->vectors = NULL;
    c->dim = 0;
    c->status = LLM_OK;
    c->error[0] = '\0';
    c->from_cache = 0;
    c->attempts = 0;
    c->batched = 0;
    c->prompt_tokens = c->cached_tokens = c->completion_tokens = 0;
}

void llm_provider_destroy(llm_provider *p) {
    if (p) p->ops->destroy(p);
}

double llm_cost_usd(const llm_provider *p, int64_t prompt_tokens, int64_t cached_tokens,
                    int64_t completion_tokens) {
    /* A cached count the endpoint reported beyond the prompt is clamped, so the
     * estimate never goes below the all-cached price. */
    if (cached_tokens < 0) cached_tokens = 0;
    if (cached_tokens > prompt_tokens) cached_tokens = prompt_tokens;
    return ((double)(prompt_tokens - cached_tokens) * p->usd_per_mtok_prompt +
            (double)cached_tokens * p->usd_per_mtok_cached +
            (double)completion_tokens * p->usd_per_mtok_completion) / 1e6;
}

double llm_embed_cost_usd(const llm_provider *p, int64_t tokens) {
    return (double)tokens * p->usd_per_mtok_embed / 1e6;
}

double llm_call_cost_usd(const llm_provider *p, const llm_call *c) {
    double usd = c->task == LLM_EMBED
                     ? llm_embed_cost_usd(p, c->prompt_tokens)
                     : llm_cost_usd(p, c->prompt_tokens, c->cached_tokens, c->completion_tokens);
    return c->batched ? usd * LLM_BATCH_PRICE_FACTOR : usd;
}
