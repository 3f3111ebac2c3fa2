/* The LLM answers of every phase: the answer text parsed as the OpenAI provider parses a
 * message's content, the phase's answer check (llm_validate_fn), and for an accepted
 * answer the field readers its complete step uses (answer_enum/text/words/string_list,
 * signature and area normalisation, the canonicalisation decision lookup).
 * Input: byte 0 picks the phase (classify, facets, theme, canonicalize, review, story);
 * the rest is the answer text, optionally followed by "\n#args\n" and the call's
 * arguments as JSON (else the phase's usual arguments). Properties: a rejected answer
 * says why; the readers' bounds hold. */
#include "fuzz.h"
#include "llm/llm.h"
#include "pipeline/answer.h"
#include "pipeline/story_plan.h"
#include "text/signature.h"
#include "util/utf8.h"

FUZZ_QUIET_INIT

typedef int (*check_fn)(const json_t *, const json_t *, char *, size_t);

static const struct {
    const char *name;
    check_fn check;
    const char *args;
} PHASES[] = {
    {"classify", classify_answer_check, "{\"stage1_type\":\"product_issue\"}"},
    {"facets", facets_answer_check, "{}"},
    {"theme", theme_answer_check, "{}"},
    {"canonicalize", canon_answer_check,
     "{\"product_area\":\"account\",\"proposals\":[{\"proposed\":\"login_fails_after_reset\"},"
     "{\"proposed\":\"sso_redirect_loop\"}],\"candidates\":[{\"signature\":\"sso_login_loop\"}]}"},
    {"review", story_review_check,
     "{\"signature\":\"csv_export_timeout\",\"parts\":[{\"conversations\":4},{\"conversations\":3},"
     "{\"conversations\":5}],\"other_groups\":[{\"signature\":\"report_export_slow\"}]}"},
    {"story", story_answer_check,
     "{\"kind\":\"bug\",\"user_intents\":[\"export my report as CSV\"],"
     "\"excerpts\":[\"the CSV export times out every time\"]}"},
};
#define NPHASES (sizeof PHASES / sizeof PHASES[0])

static void text_field(const json_t *a, const char *key, size_t max_chars) {
    char *t = answer_text(a, key, max_chars);
    FUZZ_CHECK(t && utf8_count(t, strlen(t)) <= max_chars);
    free(t);
    char *w = answer_words(a, key, 10, max_chars);
    FUZZ_CHECK(w && utf8_count(w, strlen(w)) <= max_chars);
    free(w);
}

static void list_field(const json_t *a, const char *key, size_t max_items, size_t max_chars) {
    json_t *l = answer_string_list(a, key, max_items, max_chars);
    FUZZ_CHECK(json_is_array(l) && json_array_size(l) <= max_items);
    size_t i;
    json_t *s;
    json_array_foreach(l, i, s) {
        FUZZ_CHECK(json_is_string(s));
        FUZZ_CHECK(json_string_length(s) > 0);
    }
    json_decref(l);
}

static void read_fields(size_t phase, const json_t *a, const json_t *args) {
    (void)answer_enum(a, "conversation_type", LLM_CONVERSATION_TYPES, NULL);
    (void)answer_enum(a, "confidence", LLM_CONFIDENCES, "low");
    (void)answer_enum(a, "urgency", LLM_URGENCIES, "normal");
    (void)answer_enum(a, "action_type", LLM_ACTION_TYPES, "unknown");
    (void)answer_enum(a, "direction", LLM_DIRECTIONS, "neutral");
    text_field(a, "reasoning", 1000);
    text_field(a, "symptom", 200);
    text_field(a, "user_goal", 200);
    text_field(a, "product_area", 100);
    text_field(a, "component", 100);
    list_field(a, "symptoms", 10, 200);
    list_field(a, "context_used", 20, 300);
    list_field(a, "acceptance_criteria", 8, 300);
    if (phase == 2) {
        char *sig = signature_normalize(json_string_value(json_object_get(a, "issue_signature")));
        char *area = product_area_normalize(json_string_value(json_object_get(a, "product_area")));
        char *comp = component_canonicalize(json_string_value(json_object_get(a, "component")), area);
        if (sig) {
            (void)signature_is_blocked(sig);
            (void)signature_near_duplicate(sig, "login_fails_after_reset");
        }
        free(sig);
        free(area);
        free(comp);
    }
    if (phase == 3) {
        size_t n = json_array_size(json_object_get(args, "proposals"));
        for (size_t i = 0; i < n + 1; i++) {
            const json_t *d = llm_canon_decision(a, args, i);
            if (d) {
                char *sig = signature_normalize(json_string_value(json_object_get(d, "signature")));
                free(sig);
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 256 * 1024) return -1;
    size_t phase = data[0] % NPHASES;
    const uint8_t *argp;
    size_t alen, arglen;
    int has_args = fuzz_split(data + 1, size - 1, "\n#args\n", &argp, &alen, &arglen);
    json_t *args = has_args ? json_loadb((const char *)argp, arglen, 0, NULL)
                            : json_loads(PHASES[phase].args, 0, NULL);
    FUZZ_CHECK(has_args || args);
    /* As openai.c reads a message's content: a NUL-terminated string, json_loads. */
    char *text = fuzz_cstr(data + 1, alen);
    json_error_t jerr;
    json_t *a = json_loads(text, 0, &jerr);
    free(text);
    if (a && args) {
        char msg[512] = "";
        int rc = PHASES[phase].check(args, a, msg, sizeof msg);
        if (rc != 0) FUZZ_CHECK(msg[0] != '\0');
        else read_fields(phase, a, args);
    }
    json_decref(a);
    json_decref(args);
    return 0;
}
