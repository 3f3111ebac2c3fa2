/* Signature, component and product-area normalisation, the near-duplicate test used
 * when canonicalising new signatures, and the quality-gate blocklist
 * (original-phases.md §8, tests 30, 34–36). Pure functions over strings. */
#include "text/signature.h"

#include <stdlib.h>
#include <string.h>

#include "util/mem.h"

/* The shared rule: lower-case -> runs of whitespace/hyphens become "_" -> drop
 * everything outside [a-z0-9_] -> collapse "_+" -> strip "_" at both ends.
 * Returns NULL when nothing is left so each caller picks its own default. */
static char *normalize_or_null(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s);
    char *out = xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char put;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' ||
            c == '-' || c == '_')
            put = '_';
        else if (c >= 'A' && c <= 'Z')
            put = (char)(c - 'A' + 'a');
        else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
            put = (char)c;
        else
            continue; /* dropped: punctuation, symbols, non-ASCII bytes */
        if (put == '_' && (o == 0 || out[o - 1] == '_')) continue; /* collapse + strip left */
        out[o++] = put;
    }
    while (o > 0 && out[o - 1] == '_') o--;
    out[o] = '\0';
    if (o == 0) {
        free(out);
        return NULL;
    }
    return out;
}

static char *normalize_with_default(const char *s, const char *dflt) {
    char *r = normalize_or_null(s);
    return r ? r : xstrdup(dflt);
}

char *signature_normalize(const char *s) { return normalize_with_default(s, "unknown"); }

char *component_normalize(const char *s) { return normalize_with_default(s, "unknown"); }

char *product_area_normalize(const char *s) { return normalize_with_default(s, "general"); }

char *component_canonicalize(const char *component, const char *product_area) {
    char *c = component_normalize(component);
    char *area = product_area_normalize(product_area);
    /* The one alias the original knew: SmartSchedule is spelt three ways inside the
     * scheduling area. Outside that area the word is left alone. */
    if (strcmp(area, "scheduling") == 0 &&
        (strcmp(c, "smartschedule") == 0 || strcmp(c, "smart_schedule") == 0)) {
        free(c);
        c = xstrdup("smart_schedule");
    }
    free(area);
    return c;
}

/* Splits a normalised signature into its distinct "_"-separated tokens, in order
 * (in place; strtok_r because these functions are called from several threads). */
static size_t split_tokens(char *s, char **tok, size_t max) {
    size_t n = 0;
    char *save = NULL;
    for (char *p = strtok_r(s, "_", &save); p && n < max; p = strtok_r(NULL, "_", &save)) {
        int dup = 0;
        for (size_t i = 0; i < n && !dup; i++) dup = strcmp(tok[i], p) == 0;
        if (!dup) tok[n++] = p;
    }
    return n;
}

#define SIG_MAX_TOKENS 64

int signature_same(const char *a, const char *b) {
    if (!a || !b) return 0;
    char *na = signature_normalize(a), *nb = signature_normalize(b);
    int same = strcmp(na, nb) == 0;
    free(na);
    free(nb);
    return same;
}

int signature_near_duplicate(const char *a, const char *b) {
    char *na = signature_normalize(a), *nb = signature_normalize(b);
    int same = strcmp(na, nb) == 0;
    if (same) {
        free(na);
        free(nb);
        return 1;
    }
    char *ta[SIG_MAX_TOKENS], *tb[SIG_MAX_TOKENS];
    size_t ka = split_tokens(na, ta, SIG_MAX_TOKENS);
    size_t kb = split_tokens(nb, tb, SIG_MAX_TOKENS);
    size_t common = 0;
    for (size_t i = 0; i < ka; i++)
        for (size_t j = 0; j < kb; j++)
            if (strcmp(ta[i], tb[j]) == 0) {
                common++;
                break;
            }
    size_t uni = ka + kb - common;
    int dup = 0;
    if (ka > 0 && kb > 0) {
        if (common == ka && common == kb)
            dup = 1; /* same token set, e.g. pins_duplicate vs duplicate_pins */
        else if (strcmp(ta[0], tb[0]) == 0 && uni > 0 && common * 4 >= uni * 3)
            dup = 1; /* Jaccard >= 0.75 with the same leading (area-ish) token */
    }
    free(na);
    free(nb);
    return dup;
}

int signature_is_blocked(const char *sig) {
    static const char *const blocked[] = {"unclassified_needs_review", "unknown_issue",
                                          "other_issue"};
    if (!sig) return 0;
    char *n = signature_normalize(sig);
    int hit = 0;
    for (size_t i = 0; i < sizeof blocked / sizeof blocked[0] && !hit; i++)
        hit = strcmp(n, blocked[i]) == 0;
    free(n);
    return hit;
}
