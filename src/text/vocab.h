/* The theme vocabulary: a user data file shaped like data/theme_vocabulary.json
 * (themes keyed by signature, URL->display-area hints in key order, display-area ->
 * signatures mapping, signature-quality guidelines). Any product's file of that
 * shape loads; nothing here names a product. Immutable after loading, so it is
 * shared freely between threads. */
#ifndef FEEDLINE_VOCAB_H
#define FEEDLINE_VOCAB_H

#include <stddef.h>

#include "util/strmap.h"

typedef struct vocab_theme {
    char *signature;    /* the key (== issue_signature when present) */
    char *product_area; /* as written in the file, e.g. "account", "Professional Services" */
    char *component;
    char *description;
    char **keywords;
    size_t nkeywords;
    char **intents;     /* example_intents */
    size_t nintents;
    char *engineering_fix; /* may be NULL */
    char *status;       /* "active", "deprecated", "merged" */
    char *merged_into;  /* may be NULL */
    int active;         /* status == "active" */
} vocab_theme;

typedef struct vocab_url_rule {
    char *pattern;      /* substring of a source URL */
    char *area;         /* display area, e.g. "Next Publisher" */
} vocab_url_rule;

typedef struct vocab_area {
    char *display;      /* e.g. "Billing & Settings" */
    char **signatures;
    size_t nsignatures;
} vocab_area;

typedef struct vocab_example {
    char *signature;
    char *why;          /* good: why; bad: why_bad */
    char *better;       /* bad examples only; may be NULL */
} vocab_example;

typedef struct vocab {
    char *path;
    char *version;
    vocab_theme *themes; /* file order */
    size_t nthemes;
    vocab_url_rule *url_rules; /* file order; "_comment" keys skipped */
    size_t nurl_rules;
    vocab_area *areas;   /* file order; "_comment" skipped */
    size_t nareas;
    char *same_fix_description; /* may be NULL */
    char **same_fix_criteria;
    size_t ncriteria;
    vocab_example *good;
    size_t ngood;
    vocab_example *bad;
    size_t nbad;
    strmap_t by_signature; /* signature -> vocab_theme* */
} vocab;

/* Loads and validates a vocabulary file. On error returns NULL and writes a message
 * naming the file and the offending field ("vocab.json: themes.x.keywords: expected
 * an array of strings") into err. Only "themes" is required; the other sections are
 * optional. */
vocab *vocab_load(const char *path, char *err, size_t errlen);
/* Same, from a JSON text (name is used in messages). */
vocab *vocab_parse(const char *json_text, const char *name, char *err, size_t errlen);
void vocab_free(vocab *v);

/* The theme with this signature, following merged_into (at most 8 hops); NULL if
 * unknown. */
const vocab_theme *vocab_find(const vocab *v, const char *signature);
/* Like vocab_find but without following merges. */
const vocab_theme *vocab_get(const vocab *v, const char *signature);
/* Display area of the first URL rule (file order) whose pattern occurs in url;
 * NULL if none or url is NULL/empty. */
const char *vocab_url_area(const vocab *v, const char *url);
/* The active themes the URL's display area points at (through the area mapping;
 * fixes the original's mismatch of display names vs product areas). Writes up to
 * max pointers into out; returns how many. 0 when no rule matches. */
size_t vocab_url_themes(const vocab *v, const char *url, const vocab_theme **out,
                        size_t max);
/* Number of active themes. */
size_t vocab_active_count(const vocab *v);

#endif
