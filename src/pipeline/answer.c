/* Field readers for LLM answers (see answer.h). */
#include "pipeline/answer.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/text.h"
#include "util/buf.h"
#include "util/mem.h"

#define ENUM_MAX 64

const char *answer_enum(const json_t *obj, const char *key, const char *const *set,
                        const char *dflt) {
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (!json_is_string(v)) return dflt;
    const char *s = json_string_value(v);
    char norm[ENUM_MAX];
    size_t n = 0;
    while (*s && isspace((unsigned char)*s)) s++;
    for (; *s && n < sizeof norm - 1; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == ' ' || c == '-') c = '_';
        norm[n++] = (char)tolower(c);
    }
    while (n > 0 && norm[n - 1] == '_') n--;
    norm[n] = '\0';
    for (int i = 0; set[i]; i++)
        if (strcmp(set[i], norm) == 0) return set[i];
    return dflt;
}

char *answer_text(const json_t *obj, const char *key, size_t max_chars) {
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    char *s = xstrdup(json_is_string(v) ? json_string_value(v) : "");
    text_trim(s);
    text_truncate_chars(s, max_chars);
    return s;
}

char *answer_words(const json_t *obj, const char *key, size_t max_words, size_t max_chars) {
    char *s = answer_text(obj, key, max_chars);
    size_t words = 0;
    int in_word = 0;
    for (char *p = s; *p; p++) {
        if (isspace((unsigned char)*p)) {
            if (in_word && words == max_words) {
                *p = '\0';
                break;
            }
            in_word = 0;
        } else if (!in_word) {
            in_word = 1;
            words++;
        }
    }
    text_trim(s);
    return s;
}

json_t *answer_string_list(const json_t *obj, const char *key, size_t max_items,
                           size_t max_chars) {
    json_t *out = json_array();
    json_t *arr = obj ? json_object_get(obj, key) : NULL;
    if (!json_is_array(arr)) return out;
    size_t i;
    json_t *item;
    json_array_foreach(arr, i, item) {
        if (json_array_size(out) >= max_items) break;
        if (!json_is_string(item)) continue;
        char *s = xstrdup(json_string_value(item));
        text_trim(s);
        text_truncate_chars(s, max_chars);
        if (s[0]) json_array_append_new(out, json_string(s));
        free(s);
    }
    return out;
}

int answer_reject(char *msg, size_t len, const char *field, const char *why) {
    if (msg && len) snprintf(msg, len, "%s: %s", field, why);
    return -1;
}
