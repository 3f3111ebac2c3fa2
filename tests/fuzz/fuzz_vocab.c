/* The theme vocabulary loader (vocab_parse: a user data file shaped like
 * data/theme_vocabulary.json) on arbitrary text, then every lookup the pipeline makes
 * on a loaded vocabulary: by signature (following merges), URL rules to areas to
 * themes, and the story phase's theme arguments. Properties: a rejected file has a
 * message; a loaded one finds every theme it lists. */
#include "fuzz.h"
#include "pipeline/story_plan.h"
#include "text/vocab.h"

#include <jansson.h>

FUZZ_QUIET_INIT

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 256 * 1024) return -1;
    char *text = fuzz_cstr(data, size);
    char err[512] = "";
    vocab *v = vocab_parse(text, "fuzz.json", err, sizeof err);
    if (!v) {
        FUZZ_CHECK(err[0] != '\0');
        free(text);
        return 0;
    }
    (void)vocab_active_count(v);
    for (size_t i = 0; i < v->nthemes; i++) {
        FUZZ_CHECK(vocab_get(v, v->themes[i].signature) != NULL);
        (void)vocab_find(v, v->themes[i].signature);
        json_t *args = story_theme_args(v, v->themes[i].signature);
        json_decref(args);
    }
    const vocab_theme *out[16];
    for (size_t i = 0; i < v->nurl_rules; i++) {
        size_t n = vocab_url_themes(v, v->url_rules[i].pattern, out, 16);
        FUZZ_CHECK(n <= 16);
        FUZZ_CHECK(vocab_url_area(v, v->url_rules[i].pattern) != NULL ||
                   !v->url_rules[i].pattern[0]);
    }
    (void)vocab_url_themes(v, "https://example.com/", out, 16);
    vocab_free(v);
    free(text);
    return 0;
}
