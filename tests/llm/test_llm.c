/* The provider interface's shared pieces (src/llm/llm.c). */
#include "test.h"

#include "llm/llm.h"
#include "util/jsonx.h"

/* Test inputs are literals: a parse failure shows up as NULL answers below. */
static json_t *J(const char *text) { return json_loads(text, 0, NULL); }

TEST(canonicalisation_decisions_pair_with_their_proposals) {
    json_t *args = J("{\"product_area\":\"reports\",\"proposals\":[{\"proposed\":\"csv_timeout\"},"
                     "{\"proposed\":\"Legend Missing\"},{\"proposed\":\"fonts_garbled\"}]}");
    /* out of order, named loosely: paired by the normalised proposal */
    json_t *a = J("{\"decisions\":[{\"proposed\":\"fonts garbled\",\"signature\":\"f\"},"
                  "{\"proposed\":\"legend_missing\",\"signature\":\"l\"},"
                  "{\"proposed\":\"CSV-Timeout\",\"signature\":\"c\"}]}");
    CHECK_STR(jx_str(llm_canon_decision(a, args, 0), "signature"), "c");
    CHECK_STR(jx_str(llm_canon_decision(a, args, 1), "signature"), "l");
    CHECK_STR(jx_str(llm_canon_decision(a, args, 2), "signature"), "f");
    CHECK(llm_canon_decision(a, args, 3) == NULL);
    json_decref(a);
    /* unnamed decisions, one per proposal: by position */
    a = J("{\"decisions\":[{\"signature\":\"c\"},{\"signature\":\"l\"},{\"signature\":\"f\"}]}");
    CHECK_STR(jx_str(llm_canon_decision(a, args, 1), "signature"), "l");
    json_decref(a);
    /* a decision naming another proposal is never taken by position; a short answer
     * cannot be paired by position at all */
    a = J("{\"decisions\":[{\"proposed\":\"something else\",\"signature\":\"x\"},"
          "{\"signature\":\"l\"}]}");
    CHECK(llm_canon_decision(a, args, 0) == NULL);
    CHECK(llm_canon_decision(a, args, 1) == NULL);
    json_decref(a);
    a = J("{\"decisions\":\"not a list\"}");
    CHECK(llm_canon_decision(a, args, 0) == NULL);
    json_decref(a);
    json_decref(args);
}

