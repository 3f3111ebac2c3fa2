#include "test.h"

#include <stdlib.h>

#include "text/vocab.h"

static vocab *load_bundled(void) {
    char path[1024], err[512];
    const char *root = getenv("FEEDLINE_ROOT");
    snprintf(path, sizeof path, "%s/data/theme_vocabulary.json", root ? root : ".");
    vocab *v = vocab_load(path, err, sizeof err);
    if (!v) fprintf(stdout, "    vocab_load: %s\n", err);
    return v;
}

TEST(bundled_vocabulary_loads_in_file_order) {
    vocab *v = load_bundled();
    REQUIRE(v != NULL);
    CHECK_INT(v->nthemes, 78);
    CHECK_INT(vocab_active_count(v), 67);
    CHECK_STR(v->themes[0].signature, "pinterest_publishing_failure");
    CHECK_INT(v->nurl_rules, 37);
    CHECK_STR(v->url_rules[0].pattern, "/insights/pinterest/");
    CHECK_INT(v->nareas, 17);
    CHECK_INT(v->ngood, 8);
    CHECK_INT(v->nbad, 7);
    const vocab_theme *t = vocab_get(v, "pinterest_connection_failure");
    REQUIRE(t != NULL);
    CHECK_STR(t->product_area, "account");
    CHECK(t->nkeywords >= 5);
    vocab_free(v);
}

TEST(url_rules_first_match_wins_and_map_to_themes) {
    vocab *v = load_bundled();
    REQUIRE(v != NULL);
    /* "/dashboard/v2/advanced-scheduler/pinterest" precedes "/advanced-scheduler/pinterest". */
    CHECK_STR(vocab_url_area(v, "https://x.com/dashboard/v2/advanced-scheduler/pinterest?a=1"),
              "Next Publisher");
    CHECK_STR(vocab_url_area(v, "https://x.com/settings/billing"), "Billing & Settings");
    CHECK(vocab_url_area(v, "https://x.com/nowhere") == NULL);
    CHECK(vocab_url_area(v, NULL) == NULL);
    const vocab_theme *out[64];
    size_t n = vocab_url_themes(v, "https://x.com/advanced-scheduler/pinterest", out, 64);
    CHECK(n >= 3);
    int saw = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(out[i]->active);
        saw |= strcmp(out[i]->signature, "pinterest_publishing_failure") == 0;
    }
    CHECK(saw);
    vocab_free(v);
}

TEST(bad_vocabulary_names_the_field) {
    char err[512];
    vocab *v = vocab_parse("{\"themes\":{\"a\":{\"product_area\":\"x\",\"keywords\":\"oops\"}}}",
                           "v.json", err, sizeof err);
    CHECK(v == NULL);
    CHECK(strstr(err, "v.json: themes.a.keywords: expected an array of strings") != NULL);
    v = vocab_parse("{\"themes\":{\"a\":{\"component\":\"c\"}}}", "v.json", err, sizeof err);
    CHECK(v == NULL);
    CHECK(strstr(err, "themes.a.product_area: missing") != NULL);
    v = vocab_parse("{\"themes\":", "v.json", err, sizeof err);
    CHECK(v == NULL);
    CHECK(strstr(err, "v.json: line 1") != NULL);
    v = vocab_parse("{\"nothemes\":{}}", "v.json", err, sizeof err);
    CHECK(v == NULL);
    CHECK(strstr(err, "themes: missing") != NULL);
    v = vocab_load("/nonexistent/vocab.json", err, sizeof err);
    CHECK(v == NULL);
    CHECK(strstr(err, "/nonexistent/vocab.json: cannot open") != NULL);
}

TEST(minimal_vocabulary_of_another_product) {
    char err[256];
    vocab *v = vocab_parse(
        "{\"themes\":{\"invoice_pdf_blank\":{\"product_area\":\"billing\",\"component\":\"pdf\","
        "\"keywords\":[\"blank pdf\"],\"status\":\"active\"},"
        "\"old_sig\":{\"product_area\":\"billing\",\"status\":\"merged\",\"merged_into\":\"invoice_pdf_blank\"}}}",
        "other.json", err, sizeof err);
    REQUIRE(v != NULL);
    CHECK_INT(v->nthemes, 2);
    CHECK_INT(vocab_active_count(v), 1);
    CHECK_STR(vocab_find(v, "old_sig")->signature, "invoice_pdf_blank");
    CHECK_STR(vocab_get(v, "old_sig")->signature, "old_sig");
    CHECK(vocab_url_area(v, "https://a/b") == NULL);
    vocab_free(v);
}
