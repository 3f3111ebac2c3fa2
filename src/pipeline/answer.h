/* Private to src/pipeline/: reading fields out of LLM answers. Every phase validates
 * answers with these, whichever provider produced them: enums are normalised (case,
 * spaces and hyphens) and then mapped to a default or rejected — never stored raw —
 * and free text is bounded. */
#ifndef FEEDLINE_ANSWER_H
#define FEEDLINE_ANSWER_H

#include <jansson.h>
#include <stddef.h>

/* Normalises obj[key] ("Product Issue" -> "product_issue") and looks it up in the
 * NULL-terminated set. Returns the set's own string, or dflt when the field is absent
 * or not in the set (dflt NULL = reject: returns NULL). */
const char *answer_enum(const json_t *obj, const char *key, const char *const *set,
                        const char *dflt);
/* obj[key] as a string, trimmed and cut to max_chars characters (NULL -> ""). Caller
 * frees. Non-strings give "". */
char *answer_text(const json_t *obj, const char *key, size_t max_chars);
/* Like answer_text, then cut to the first max_words whitespace-separated words. */
char *answer_words(const json_t *obj, const char *key, size_t max_words, size_t max_chars);
/* obj[key] as a JSON array of at most max_items non-empty strings (each cut to
 * max_chars); non-arrays give []. New reference. */
json_t *answer_string_list(const json_t *obj, const char *key, size_t max_items,
                           size_t max_chars);
/* Writes "field: reason" into msg and returns -1 (for validators). */
int answer_reject(char *msg, size_t len, const char *field, const char *why);

/* The phases' answer checks (llm_validate_fn: 0 valid, else why in msg), exposed for
 * tests and tests/fuzz: classification stages 1 and 2, facets, theme extraction and
 * canonicalisation. (The story phase's are in story_plan.h.) */
int classify_answer_check(const json_t *args, const json_t *answer, char *msg, size_t len);
int facets_answer_check(const json_t *args, const json_t *answer, char *msg, size_t len);
int theme_answer_check(const json_t *args, const json_t *answer, char *msg, size_t len);
int canon_answer_check(const json_t *args, const json_t *answer, char *msg, size_t len);

#endif
