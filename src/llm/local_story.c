/* The offline analyzer's story tasks: the review of a candidate group (LLM_REVIEW) and
 * the written story (LLM_STORY), as deterministic rules over the task's arguments (the
 * group's parts, facets and the vocabulary's own description and fix of its theme).
 *
 * Review rules, in order:
 *  1. reject when the vocabulary's fix for the theme is not a code change (routing to
 *     another team, filtering, a review queue): NOT_CODE_FIXES below;
 *  2. merge into a larger group of the same area whose signature near-duplicates
 *     this one (text/signature.h);
 *  3. split when parts point in opposite directions (the vocabulary's SAME_FIX example:
 *     pins posted twice versus pins not posted at all need two fixes): two or more
 *     directions among excess/deficit/creation/deletion/modification/performance with
 *     at least 3 conversations each; neutral parts join the largest sub-group;
 *  4. keep otherwise.
 * Story rules: the title is the theme's own description turned into a headline
 * ("User wants to X" -> "Let users X"), prefixed with the product area, or for a
 * signature outside the vocabulary the humanised signature and its first symptom;
 * never a customer's message. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/local_internal.h"
#include "text/signature.h"
#include "util/buf.h"
#include "util/jsonx.h"
#include "util/mem.h"

#define STORY_MIN 3
#define TITLE_MAX 90

/* ------------------------------------------------------------ helpers */

static int contains_ci(const char *hay, const char *needle) {
    if (!hay || !needle) return 0;
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (!strncasecmp(hay, needle, n)) return 1;
    return 0;
}

/* "made_for_you" -> "Made for you", "ai_creation" -> "AI creation": a two-letter word
 * that is not an English function word is an acronym. */
static char *humanise(const char *s) {
    static const char *const small[] = {"of", "to", "in", "on", "by", "at", "or", "an", "as",
                                        "is", "it", "be", "do", "no", "up", "we", "my", NULL};
    char *out = xstrdup(s ? s : "");
    for (char *p = out; *p; p++)
        if (*p == '_' || *p == '-') *p = ' ';
    for (char *w = out; *w;) {
        size_t n = strcspn(w, " ");
        if (n == 2 && isalpha((unsigned char)w[0]) && isalpha((unsigned char)w[1])) {
            char two[3] = {(char)tolower((unsigned char)w[0]), (char)tolower((unsigned char)w[1]), 0};
            if (llm_set_index(small, two) < 0) {
                w[0] = (char)toupper((unsigned char)w[0]);
                w[1] = (char)toupper((unsigned char)w[1]);
            }
        }
        w += n;
        while (*w == ' ') w++;
    }
    if (out[0] >= 'a' && out[0] <= 'z') out[0] = (char)(out[0] - 'a' + 'A');
    return out;
}

static const char *theme_field(const json_t *args, const char *key) {
    const char *v = jx_str(jx_obj(args, "theme"), key);
    return v && *v ? v : NULL;
}

/* ------------------------------------------------------------ review */

/* Fixes that name no code change: the group is routed, filtered or queued instead. */
static const char *const NOT_CODE_FIXES[] = {"route to", "referral", "not applicable",
                                             "auto-close", "review queue", NULL};

static const char *not_code_fix(const char *fix) {
    for (size_t i = 0; fix && NOT_CODE_FIXES[i]; i++)
        if (contains_ci(fix, NOT_CODE_FIXES[i])) return NOT_CODE_FIXES[i];
    return NULL;
}

/* The larger group of other_groups this one near-duplicates, or NULL. */
static const char *merge_target(const json_t *args, const char *sig, json_int_t size) {
    const char *best = NULL;
    json_int_t best_n = -1;
    size_t i;
    json_t *g;
    json_array_foreach(jx_arr(args, "other_groups"), i, g) {
        const char *other = jx_str(g, "signature");
        json_int_t n = json_integer_value(json_object_get(g, "conversations"));
        if (!other || !strcmp(other, sig) || !signature_near_duplicate(other, sig)) continue;
        /* the smaller joins the larger (ties: alphabetical), so two groups never both
         * merge into each other */
        if (n < size || (n == size && strcmp(other, sig) > 0)) continue;
        if (n > best_n) {
            best = other;
            best_n = n;
        }
    }
    return best;
}

/* Only the vocabulary's own SAME_FIX counter-example splits: too much versus nothing. */
static const char *const DIRECTIONS[] = {"excess", "deficit", NULL};
static const char *const DIRECTION_NAMES[] = {"happens twice or too often", "does not happen at all",
                                              NULL};

/* A split by direction, or NULL unless parts point both ways (excess and deficit)
 * with >= 3 conversations each. */
static json_t *direction_split(const json_t *parts) {
    size_t nd = sizeof DIRECTIONS / sizeof DIRECTIONS[0] - 1;
    json_int_t count[2] = {0};
    size_t i;
    json_t *pt;
    json_array_foreach(parts, i, pt) {
        int d = llm_set_index(DIRECTIONS, jx_str(pt, "direction"));
        if (d >= 0) count[d] += json_integer_value(json_object_get(pt, "conversations"));
    }
    size_t strong = 0, largest = 0;
    for (size_t d = 0; d < nd; d++) {
        strong += count[d] >= STORY_MIN;
        if (count[d] > count[largest]) largest = d;
    }
    if (strong < 2) return NULL;
    json_t *groups[2] = {0};
    json_array_foreach(parts, i, pt) {
        int d = llm_set_index(DIRECTIONS, jx_str(pt, "direction"));
        size_t to = d >= 0 && count[d] >= STORY_MIN ? (size_t)d : largest;
        if (!groups[to])
            groups[to] = json_pack("{s:s, s:[]}", "name", DIRECTION_NAMES[to], "parts");
        json_array_append_new(json_object_get(groups[to], "parts"),
                              json_integer((json_int_t)i + 1));
    }
    json_t *split = json_array();
    for (size_t d = 0; d < nd; d++)
        if (groups[d]) json_array_append_new(split, groups[d]);
    return split;
}

json_t *local_review(const llm_call *call, char *err, size_t errlen) {
    const json_t *a = call->args;
    const char *sig = jx_str(a, "signature");
    const json_t *parts = jx_arr(a, "parts");
    if (!sig || !json_array_size(parts)) {
        snprintf(err, errlen, "review: args need signature and parts");
        return NULL;
    }
    json_int_t n = json_integer_value(json_object_get(a, "conversation_count"));
    const char *fix = theme_field(a, "engineering_fix");
    const char *why_not = not_code_fix(fix);
    if (why_not) {
        char *r = xasprintf("Not a code change: the product's own fix for %s is \"%s\" "
                            "(%lld conversations go to that team instead).",
                            sig, fix, (long long)n);
        json_t *ans = json_pack("{s:s, s:s}", "decision", "reject", "reason", r);
        free(r);
        return ans;
    }
    const char *target = merge_target(a, sig, n);
    if (target) {
        char *r = xasprintf("Same issue as %s: the signatures name one problem, so one fix "
                            "covers both groups.",
                            target);
        json_t *ans = json_pack("{s:s, s:s, s:s}", "decision", "merge", "reason", r,
                                "merge_with", target);
        free(r);
        return ans;
    }
    json_t *split = direction_split(parts);
    if (split) {
        buf_t r = BUF_INIT;
        buf_printf(&r, "The parts point in different directions (");
        size_t i;
        json_t *g;
        json_array_foreach(split, i, g) buf_printf(&r, "%s%s", i ? " versus " : "", jx_str(g, "name"));
        buf_puts(&r, "), which need different fixes.");
        json_t *ans = json_pack("{s:s, s:s, s:o}", "decision", "split", "reason", buf_cstr(&r),
                                "split", split);
        buf_free(&r);
        return ans;
    }
    size_t np = json_array_size(parts);
    char *r = xasprintf("%lld conversation%s in %zu cluster%s describe one issue%s%s%s.",
                        (long long)n, n == 1 ? "" : "s", np, np == 1 ? "" : "s",
                        fix ? " with one fix (" : "", fix ? fix : "", fix ? ")" : "");
    json_t *ans = json_pack("{s:s, s:s}", "decision", "keep", "reason", r);
    free(r);
    return ans;
}

/* ------------------------------------------------------------ story */

/* Leading phrases of vocabulary descriptions and what a headline says instead. */
static const char *const LEADS[][2] = {
    {"User wants to ", "Let users "},        {"Users want to ", "Let users "},
    {"User asking about ", "Requests for "}, {"User requesting ", "Requests for "},
    {"User needs help ", "Users need help "}, {"User needs to ", "Users need to "},
    {"User cannot ", "Users cannot "},       {"User unable to ", "Users unable to "},
    {"User encounters ", "Users hit "},      {"User charged ", "Users charged "},
    {"User's ", "Users' "},                  {"User ", "Users "},
};

/* Cuts a headline to max bytes at the latest clause boundary that fits and keeps at
 * least half of it (", ", " - ", " or ", a preposition), else at a word boundary: no
 * ellipsis, it is a title. */
static void cut_headline(char *s, size_t max) {
    if (strlen(s) <= max) return;
    static const char *const seps[] = {" - ", ", ", " or ", " in ", " into ", " to ",
                                       " with ", " from ", " for ", NULL};
    char *best = NULL;
    for (size_t k = 0; seps[k]; k++)
        for (char *p = strstr(s, seps[k]); p && (size_t)(p - s) <= max; p = strstr(p + 1, seps[k]))
            if ((size_t)(p - s) >= max / 2 && (!best || p > best)) best = p;
    if (!best)
        for (char *p = strchr(s, ' '); p && (size_t)(p - s) <= max; p = strchr(p + 1, ' ')) best = p;
    if (best) *best = '\0';
    else s[max] = '\0';
    size_t n = strlen(s);
    while (n && (s[n - 1] == ',' || s[n - 1] == ' ')) s[--n] = '\0';
}

static char *headline(const char *description) {
    char *h = xstrdup(description);
    char *dash = strstr(h, " - ");
    if (dash) *dash = '\0';
    for (size_t i = 0; i < sizeof LEADS / sizeof LEADS[0]; i++) {
        size_t n = strlen(LEADS[i][0]);
        if (!strncmp(h, LEADS[i][0], n)) {
            char *t = xasprintf("%s%s", LEADS[i][1], h + n);
            free(h);
            h = t;
            break;
        }
    }
    return h;
}

/* The area as the product writes it: "smartloop" is "SmartLoop" when the theme's
 * description spells it so. */
static char *area_label(const json_t *a) {
    char *area = humanise(jx_str(a, "product_area"));
    const char *desc = theme_field(a, "description");
    size_t n = strlen(area);
    for (const char *p = desc; n && p && *p; p++)
        if (!strncasecmp(p, area, n) && (p == desc || !isalnum((unsigned char)p[-1])) &&
            !isalnum((unsigned char)p[n])) {
            memcpy(area, p, n);
            break;
        }
    return area;
}

static char *story_title(const json_t *a) {
    const char *desc = theme_field(a, "description");
    const char *dist = jx_str(a, "distinguisher");
    char *area = area_label(a);
    char *body;
    if (desc) {
        body = headline(desc);
    } else {
        char *sig = humanise(jx_str(a, "signature"));
        const char *sym = json_string_value(json_array_get(jx_arr(a, "symptoms"), 0));
        body = sym && *sym ? xasprintf("%s: %s", sig, sym) : xstrdup(sig);
        free(sig);
    }
    /* lower-case the headline's first letter after the area prefix, unless it is an
     * acronym or a product name ("SmartLoop", "M4U") */
    const char *second = strchr(body, ' ');
    if (body[0] >= 'A' && body[0] <= 'Z' && !(body[1] >= 'A' && body[1] <= 'Z') &&
        !(second && second[1] >= 'A' && second[1] <= 'Z') && !strchr(body, ':'))
        body[0] = (char)tolower((unsigned char)body[0]);
    size_t room = TITLE_MAX - (dist && *dist ? strlen(dist) + 3 : 0);
    cut_headline(body, room > 30 ? room : 30);
    /* the area leads, as a label (a PM scans a list by area), and is not said twice:
     * "Made For You: generated content is poor quality", not "Made For You: Made For
     * You generated content..." */
    const char *rest = body;
    size_t an = strlen(area);
    if (an && !strncasecmp(body, area, an) && body[an] == ' ' && strchr(body + an + 1, ' '))
        rest = body + an + 1;
    char *t = strchr(body, ':') ? xstrdup(body) : xasprintf("%s: %s", area, rest);
    if (t[0] >= 'a' && t[0] <= 'z') t[0] = (char)(t[0] - 'a' + 'A');
    cut_headline(t, room > 30 ? room : 30);
    if (dist && *dist) {
        char *d = xasprintf("%s (%s)", t, dist);
        free(t);
        t = d;
    }
    free(area);
    free(body);
    return t;
}

/* Up to max strings of an array, quoted and joined. */
static void quote_some(buf_t *b, const json_t *arr, size_t max, size_t each) {
    size_t i, shown = 0;
    json_t *v;
    json_array_foreach(arr, i, v) {
        const char *s = json_string_value(v);
        if (!s || strlen(s) < 10 || shown >= max) continue;
        char *cut = lt_cut_ellipsis(s, strlen(s), each, "...");
        buf_printf(b, "%s\"%s\"", shown++ ? "; " : "", cut);
        free(cut);
    }
}

json_t *local_story(const llm_call *call, char *err, size_t errlen) {
    const json_t *a = call->args;
    if (!jx_str(a, "signature")) {
        snprintf(err, errlen, "story: args need signature");
        return NULL;
    }
    const char *kind = jx_str(a, "kind") ? jx_str(a, "kind") : "bug";
    const char *desc = theme_field(a, "description"), *fix = theme_field(a, "engineering_fix");
    char *area = area_label(a);
    char *comp = humanise(jx_str(a, "component"));
    json_int_t n = json_integer_value(json_object_get(a, "conversation_count"));
    char *title = story_title(a);

    buf_t problem = BUF_INIT;
    if (desc) buf_printf(&problem, "%s.", desc);
    else buf_printf(&problem, "Customers report %s in %s.", jx_str(a, "signature"), area);
    const json_t *sym = jx_arr(a, "symptoms");
    if (json_array_size(sym)) {
        buf_puts(&problem, " Symptoms: ");
        size_t i;
        json_t *v;
        /* "fails with error, times out" is one symptom: with a comma inside one, the
         * list is separated by semicolons */
        const char *sep = ", ";
        json_array_foreach(sym, i, v) {
            if (i < 4 && json_is_string(v) && strchr(json_string_value(v), ',')) sep = "; ";
        }
        json_array_foreach(sym, i, v) {
            if (i >= 4) break;
            const char *text = json_string_value(v);
            buf_printf(&problem, "%s%s", i ? sep : "", text ? text : "");
        }
        buf_putc(&problem, '.');
    }
    buf_t quotes = BUF_INIT;
    quote_some(&quotes, jx_arr(a, "user_intents"), 2, 140);
    if (quotes.len) buf_printf(&problem, " Customers put it as: %s.", buf_cstr(&quotes));
    buf_free(&quotes);

    /* who, not how many: the description adds the count and the dates */
    char *affected = xasprintf(
        "Customers using %s (%s)%s.", area, comp,
        !strcmp(kind, "bug")       ? " who hit the failure"
        : !strcmp(kind, "feature") ? " who ask for the capability"
                                   : " who could not find how to do it");

    json_t *criteria = json_array();
    char *head = desc ? headline(desc) : xstrdup(title);
    if (!strcmp(kind, "bug")) {
        json_array_append_new(criteria, json_sprintf("The failure no longer occurs: %s.", head));
        json_array_append_new(criteria,
                              json_sprintf("The scenarios of the %lld evidence conversations are "
                                           "re-tested and work.",
                                           (long long)n));
        if (fix) json_array_append_new(criteria, json_sprintf("The fix covers: %s.", fix));
    } else if (!strcmp(kind, "feature")) {
        json_array_append_new(criteria, json_sprintf("Available in %s: %s.", area, head));
        if (fix) json_array_append_new(criteria, json_sprintf("Delivered through: %s.", fix));
    } else {
        json_array_append_new(criteria,
                              json_sprintf("The help center or in-app guidance answers: %s.", head));
    }
    json_t *ans = json_pack("{s:s, s:s, s:s, s:o}", "title", title, "problem", buf_cstr(&problem),
                            "affected", affected, "acceptance_criteria", criteria);
    free(head);
    free(title);
    free(affected);
    free(area);
    free(comp);
    buf_free(&problem);
    return ans;
}
