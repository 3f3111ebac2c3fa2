/* Loading and querying the theme vocabulary (see vocab.h). jansson keeps object keys
 * in file order, which the URL rules depend on (first matching rule wins). */
#include "text/vocab.h"

#include <jansson.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/jsonx.h"
#include "util/mem.h"

typedef struct parse_ctx {
    const char *name;
    char *err;
    size_t errlen;
} parse_ctx;

static int fail(parse_ctx *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(parse_ctx *p, const char *fmt, ...) {
    if (!p->err || !p->errlen) return -1;
    int n = snprintf(p->err, p->errlen, "%s: ", p->name);
    if (n < 0 || (size_t)n >= p->errlen) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* Optional string field: absent or null -> NULL; any other non-string is an error. */
static int opt_string(parse_ctx *p, const json_t *obj, const char *key, const char *where,
                      char **out) {
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return fail(p, "%s.%s: expected a string", where, key);
    *out = xstrdup(json_string_value(v));
    return 0;
}

/* Optional array of strings; absent/null -> empty. */
static int opt_string_array(parse_ctx *p, const json_t *obj, const char *key,
                            const char *where, char ***out, size_t *n) {
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    *n = 0;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_array(v)) return fail(p, "%s.%s: expected an array of strings", where, key);
    size_t len = json_array_size(v);
    *out = xcalloc(len ? len : 1, sizeof(char *));
    for (size_t i = 0; i < len; i++) {
        json_t *s = json_array_get(v, i);
        if (!json_is_string(s))
            return fail(p, "%s.%s[%zu]: expected a string", where, key, i);
        (*out)[(*n)++] = xstrdup(json_string_value(s));
    }
    return 0;
}

static void free_strings(char **v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

static int parse_theme(parse_ctx *p, const char *key, const json_t *t, vocab_theme *out) {
    char where[300];
    snprintf(where, sizeof where, "themes.%s", key);
    memset(out, 0, sizeof *out);
    out->signature = xstrdup(key);
    if (!json_is_object(t)) return fail(p, "%s: expected an object", where);
    if (opt_string(p, t, "product_area", where, &out->product_area) ||
        opt_string(p, t, "component", where, &out->component) ||
        opt_string(p, t, "description", where, &out->description) ||
        opt_string(p, t, "engineering_fix", where, &out->engineering_fix) ||
        opt_string(p, t, "status", where, &out->status) ||
        opt_string(p, t, "merged_into", where, &out->merged_into) ||
        opt_string_array(p, t, "keywords", where, &out->keywords, &out->nkeywords) ||
        opt_string_array(p, t, "example_intents", where, &out->intents, &out->nintents))
        return -1;
    /* The key is the signature. A differing issue_signature inside the entry (the
     * bundled file has one: scheduling_failure_legacy) is tolerated, not trusted. */
    json_t *sigv = json_object_get(t, "issue_signature");
    if (sigv && !json_is_string(sigv) && !json_is_null(sigv))
        return fail(p, "%s.issue_signature: expected a string", where);
    if (!out->product_area) return fail(p, "%s.product_area: missing", where);
    if (!out->component) out->component = xstrdup("unknown");
    if (!out->description) out->description = xstrdup("");
    if (!out->status) out->status = xstrdup("active");
    out->active = strcmp(out->status, "active") == 0;
    return 0;
}

static void free_theme(vocab_theme *t) {
    free(t->signature);
    free(t->product_area);
    free(t->component);
    free(t->description);
    free(t->engineering_fix);
    free(t->status);
    free(t->merged_into);
    free_strings(t->keywords, t->nkeywords);
    free_strings(t->intents, t->nintents);
}

static int parse_examples(parse_ctx *p, const json_t *arr, const char *where, int bad,
                          vocab_example **out, size_t *n) {
    *out = NULL;
    *n = 0;
    if (!arr || json_is_null(arr)) return 0;
    if (!json_is_array(arr)) return fail(p, "%s: expected an array", where);
    size_t len = json_array_size(arr);
    *out = xcalloc(len ? len : 1, sizeof(vocab_example));
    for (size_t i = 0; i < len; i++) {
        json_t *e = json_array_get(arr, i);
        char w[200];
        snprintf(w, sizeof w, "%s[%zu]", where, i);
        if (!json_is_object(e)) return fail(p, "%s: expected an object", w);
        vocab_example *x = &(*out)[(*n)++];
        if (opt_string(p, e, "signature", w, &x->signature) ||
            opt_string(p, e, bad ? "why_bad" : "why", w, &x->why) ||
            (bad && opt_string(p, e, "better", w, &x->better)))
            return -1;
        if (!x->signature) return fail(p, "%s.signature: missing", w);
    }
    return 0;
}

void vocab_free(vocab *v) {
    if (!v) return;
    for (size_t i = 0; i < v->nthemes; i++) free_theme(&v->themes[i]);
    free(v->themes);
    for (size_t i = 0; i < v->nurl_rules; i++) {
        free(v->url_rules[i].pattern);
        free(v->url_rules[i].area);
    }
    free(v->url_rules);
    for (size_t i = 0; i < v->nareas; i++) {
        free(v->areas[i].display);
        free_strings(v->areas[i].signatures, v->areas[i].nsignatures);
    }
    free(v->areas);
    free(v->same_fix_description);
    free_strings(v->same_fix_criteria, v->ncriteria);
    for (size_t i = 0; i < v->ngood; i++) {
        free(v->good[i].signature);
        free(v->good[i].why);
        free(v->good[i].better);
    }
    free(v->good);
    for (size_t i = 0; i < v->nbad; i++) {
        free(v->bad[i].signature);
        free(v->bad[i].why);
        free(v->bad[i].better);
    }
    free(v->bad);
    strmap_free(&v->by_signature, NULL);
    free(v->version);
    free(v->path);
    free(v);
}

static int parse_root(parse_ctx *p, const json_t *root, vocab *v) {
    if (!json_is_object(root)) return fail(p, "top level: expected an object");
    if (opt_string(p, root, "version", "top level", &v->version)) return -1;

    json_t *themes = json_object_get(root, "themes");
    if (!themes) return fail(p, "themes: missing");
    if (!json_is_object(themes)) return fail(p, "themes: expected an object keyed by signature");
    v->themes = xcalloc(json_object_size(themes) + 1, sizeof(vocab_theme));
    const char *key;
    json_t *val;
    json_object_foreach(themes, key, val) {
        if (key[0] == '_') continue; /* "_comment" and friends */
        vocab_theme *t = &v->themes[v->nthemes++];
        if (parse_theme(p, key, val, t)) return -1;
        strmap_put(&v->by_signature, t->signature, t);
    }
    if (v->nthemes == 0) return fail(p, "themes: no themes defined");

    json_t *urls = json_object_get(root, "url_context_mapping");
    if (urls && !json_is_null(urls)) {
        if (!json_is_object(urls)) return fail(p, "url_context_mapping: expected an object");
        v->url_rules = xcalloc(json_object_size(urls) + 1, sizeof(vocab_url_rule));
        json_object_foreach(urls, key, val) {
            if (key[0] == '_') continue;
            if (!json_is_string(val))
                return fail(p, "url_context_mapping.%s: expected a string", key);
            if (!key[0]) return fail(p, "url_context_mapping: empty URL pattern");
            vocab_url_rule *r = &v->url_rules[v->nurl_rules++];
            r->pattern = xstrdup(key);
            r->area = xstrdup(json_string_value(val));
        }
    }

    json_t *areas = json_object_get(root, "product_area_mapping");
    if (areas && !json_is_null(areas)) {
        if (!json_is_object(areas)) return fail(p, "product_area_mapping: expected an object");
        v->areas = xcalloc(json_object_size(areas) + 1, sizeof(vocab_area));
        json_object_foreach(areas, key, val) {
            if (key[0] == '_') continue;
            vocab_area *a = &v->areas[v->nareas++];
            a->display = xstrdup(key);
            char where[300];
            snprintf(where, sizeof where, "product_area_mapping");
            if (!json_is_array(val))
                return fail(p, "product_area_mapping.%s: expected an array of strings", key);
            json_t *wrap = json_pack("{sO}", key, val);
            int rc = opt_string_array(p, wrap, key, where, &a->signatures, &a->nsignatures);
            json_decref(wrap);
            if (rc) return -1;
        }
    }

    json_t *g = json_object_get(root, "signature_quality_guidelines");
    if (g && !json_is_null(g)) {
        if (!json_is_object(g))
            return fail(p, "signature_quality_guidelines: expected an object");
        json_t *sft = json_object_get(g, "same_fix_test");
        if (sft && json_is_object(sft)) {
            if (opt_string(p, sft, "description", "signature_quality_guidelines.same_fix_test",
                           &v->same_fix_description) ||
                opt_string_array(p, sft, "criteria", "signature_quality_guidelines.same_fix_test",
                                 &v->same_fix_criteria, &v->ncriteria))
                return -1;
        }
        if (parse_examples(p, json_object_get(g, "good_examples"),
                           "signature_quality_guidelines.good_examples", 0, &v->good, &v->ngood) ||
            parse_examples(p, json_object_get(g, "bad_examples"),
                           "signature_quality_guidelines.bad_examples", 1, &v->bad, &v->nbad))
            return -1;
    }
    return 0;
}

vocab *vocab_parse(const char *json_text, const char *name, char *err, size_t errlen) {
    parse_ctx p = {name ? name : "vocabulary", err, errlen};
    json_error_t je;
    json_t *root = json_loads(json_text, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        fail(&p, "line %d, column %d: %s", je.line, je.column, je.text);
        return NULL;
    }
    vocab *v = xcalloc(1, sizeof *v);
    v->path = xstrdup(p.name);
    if (parse_root(&p, root, v)) {
        json_decref(root);
        vocab_free(v);
        return NULL;
    }
    json_decref(root);
    return v;
}

vocab *vocab_load(const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    /* A vocabulary is a few hundred KB; refuse anything absurd rather than OOM. */
    const long max = 16L * 1024 * 1024;
    char *text = NULL;
    size_t len = 0, cap = 0;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if ((long)(len + n) > max) {
            fclose(f);
            free(text);
            snprintf(err, errlen, "%s: larger than %ld bytes", path, max);
            return NULL;
        }
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            text = xrealloc(text, cap);
        }
        memcpy(text + len, chunk, n);
        len += n;
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        free(text);
        snprintf(err, errlen, "%s: read error", path);
        return NULL;
    }
    if (!text) {
        snprintf(err, errlen, "%s: empty file", path);
        return NULL;
    }
    text[len] = '\0';
    vocab *v = vocab_parse(text, path, err, errlen);
    free(text);
    return v;
}

const vocab_theme *vocab_get(const vocab *v, const char *signature) {
    if (!v || !signature) return NULL;
    return strmap_get(&v->by_signature, signature);
}

const vocab_theme *vocab_find(const vocab *v, const char *signature) {
    const vocab_theme *t = vocab_get(v, signature);
    for (int hops = 0; t && t->merged_into && t->merged_into[0] && hops < 8; hops++) {
        const vocab_theme *next = vocab_get(v, t->merged_into);
        if (!next) break;
        t = next;
    }
    return t;
}

const char *vocab_url_area(const vocab *v, const char *url) {
    if (!v || !url || !url[0]) return NULL;
    for (size_t i = 0; i < v->nurl_rules; i++)
        if (strstr(url, v->url_rules[i].pattern)) return v->url_rules[i].area;
    return NULL;
}

size_t vocab_url_themes(const vocab *v, const char *url, const vocab_theme **out,
                        size_t max) {
    const char *area = vocab_url_area(v, url);
    if (!area) return 0;
    size_t n = 0;
    for (size_t i = 0; i < v->nareas; i++) {
        if (strcmp(v->areas[i].display, area) != 0) continue;
        for (size_t j = 0; j < v->areas[i].nsignatures && n < max; j++) {
            const vocab_theme *t = vocab_find(v, v->areas[i].signatures[j]);
            if (!t || !t->active) continue;
            int dup = 0;
            for (size_t k = 0; k < n; k++) dup |= out[k] == t;
            if (!dup) out[n++] = t;
        }
    }
    return n;
}

size_t vocab_active_count(const vocab *v) {
    size_t n = 0;
    for (size_t i = 0; v && i < v->nthemes; i++) n += v->themes[i].active;
    return n;
}
