/* Dry-run preview (see preview.h). */
#include "pipeline/preview.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "util/jsonx.h"
#include "util/mem.h"
#include "util/timeutil.h"

typedef struct sample {
    char *id, *type, *confidence, *snippet, *signature;
    int has_support;
} sample;

struct preview_tally {
    json_t *by_type, *by_confidence;
    int64_t total;
    sample samples[PREVIEW_MAX_SAMPLES];
    size_t nsamples;
    strmap_t seen_types;
    strmap_t counts;  /* signature -> (intptr) count, passed themes */
    char **order;     /* signatures in first-seen order, for stable ties */
    size_t norder, order_cap;
    int64_t passed, filtered;
    strmap_t themed;  /* conversation id -> its signature (char*), for the samples */
};

static void bump(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    json_object_set_new(obj, key, json_integer(v ? json_integer_value(v) + 1 : 1));
}

static void take_sample(preview_tally *t, const classification_brief *b) {
    sample *s = &t->samples[t->nsamples++];
    s->id = xstrdup(b->conversation_id);
    s->type = xstrdup(b->final_type);
    s->confidence = xstrdup(b->final_confidence);
    s->snippet = xstrdup(b->snippet);
    s->has_support = b->support_count > 0;
}

static int has_sample(const preview_tally *t, const char *id) {
    for (size_t i = 0; i < t->nsamples; i++)
        if (!strcmp(t->samples[i].id, id)) return 1;
    return 0;
}

/* Pass 1: a new type while fewer than 5 samples. */
static int pass_types(const classification_brief *b, void *ctx) {
    preview_tally *t = ctx;
    t->total++;
    bump(t->by_type, b->final_type);
    bump(t->by_confidence, b->final_confidence);
    if (t->nsamples < PREVIEW_TYPE_SAMPLES && !strmap_has(&t->seen_types, b->final_type)) {
        strmap_put(&t->seen_types, b->final_type, NULL);
        take_sample(t, b);
    }
    return 0;
}

/* Pass 2: fill up to 10 with conversations not sampled yet. */
static int pass_fill(const classification_brief *b, void *ctx) {
    preview_tally *t = ctx;
    if (t->nsamples >= PREVIEW_MAX_SAMPLES) return 1;
    if (!has_sample(t, b->conversation_id)) take_sample(t, b);
    return 0;
}

preview_tally *preview_tally_new(store *s, int64_t run_id) {
    (void)s;
    (void)run_id;
    preview_tally *t = xcalloc(1, sizeof *t);
    t->by_type = json_object();
    t->by_confidence = json_object();
    return t;
}

/* The samples, from the run's classifications (complete once the themes are: a
 * streaming run themes conversations while others are still being classified). */
static int choose_samples(preview_tally *t, store *s, int64_t run_id) {
    if (store_classifications_each(s, run_id, pass_types, t) != STORE_OK ||
        store_classifications_each(s, run_id, pass_fill, t) != STORE_OK)
        return -1;
    for (size_t i = 0; i < t->nsamples; i++) {
        const char *sig = strmap_get(&t->themed, t->samples[i].id);
        if (sig) t->samples[i].signature = xstrdup(sig);
    }
    return 0;
}

void preview_tally_add(preview_tally *t, const char *conversation_id, const char *signature,
                       int passed) {
    if (!t) return;
    if (signature && !strmap_has(&t->themed, conversation_id))
        strmap_put(&t->themed, conversation_id, xstrdup(signature));
    if (!passed) {
        t->filtered++;
        return;
    }
    t->passed++;
    if (!signature || !signature[0]) return;
    if (strmap_has(&t->counts, signature)) {
        intptr_t c = (intptr_t)strmap_get(&t->counts, signature);
        strmap_put(&t->counts, signature, (void *)(c + 1));
    } else if (t->counts.count < PREVIEW_MAX_SIGNATURES) {
        strmap_put(&t->counts, signature, (void *)(intptr_t)1);
        XGROW(t->order, t->order_cap, t->norder + 1);
        t->order[t->norder++] = xstrdup(signature);
    }
}

static json_t *top_themes(const preview_tally *t) {
    json_t *top = json_array();
    size_t picked[PREVIEW_TOP_THEMES];
    size_t npicked = 0;
    /* Selection of the 5 largest; ties keep first-seen order. */
    for (size_t k = 0; k < PREVIEW_TOP_THEMES; k++) {
        size_t best = (size_t)-1;
        intptr_t bestc = 0;
        for (size_t i = 0; i < t->norder; i++) {
            int taken = 0;
            for (size_t j = 0; j < npicked; j++) taken |= picked[j] == i;
            if (taken) continue;
            intptr_t c = (intptr_t)strmap_get(&t->counts, t->order[i]);
            if (c > bestc) {
                bestc = c;
                best = i;
            }
        }
        if (best == (size_t)-1) break;
        picked[npicked++] = best;
        json_array_append_new(top, json_pack("[sI]", t->order[best], (json_int_t)bestc));
    }
    return top;
}

int preview_tally_finish(preview_tally *t, store *s, int64_t run_id,
                         const strmap_t *new_signatures) {
    if (choose_samples(t, s, run_id) != 0) return -1;
    json_t *samples = json_array();
    for (size_t i = 0; i < t->nsamples; i++) {
        const sample *x = &t->samples[i];
        json_t *themes = json_array();
        if (x->signature) json_array_append_new(themes, jx_string(x->signature));
        json_array_append_new(samples,
                              json_pack("{sosososososb}", "conversation_id", jx_string(x->id),
                                        "snippet", jx_string(x->snippet), "conversation_type",
                                        jx_string(x->type), "confidence", jx_string(x->confidence),
                                        "themes", themes, "has_support_response", x->has_support));
    }
    char ts[32];
    json_t *preview = json_pack("{sIs{sOsO}sososIss}", "run_id", (json_int_t)run_id,
                                "classification_breakdown", "by_type", t->by_type,
                                "by_confidence", t->by_confidence, "samples", samples,
                                "top_themes", top_themes(t), "total_classified",
                                (json_int_t)t->total, "timestamp",
                                iso8601_format(wall_unix(), ts, sizeof ts));
    int64_t fresh = 0;
    for (size_t i = 0; new_signatures && i < new_signatures->cap; i++)
        if (new_signatures->keys[i] && store_signature_known(s, new_signatures->keys[i]) == STORE_NOTFOUND)
            fresh++;
    char *text = jx_dump(preview);
    json_decref(preview);
    int rc = store_begin(s);
    if (rc == STORE_OK) rc = store_run_set_preview(s, run_id, text);
    if (rc == STORE_OK) rc = store_run_set_dry_theme_counts(s, run_id, t->passed, t->filtered, fresh);
    if (rc == STORE_OK) rc = store_commit(s);
    else store_rollback(s);
    free(text);
    return rc == STORE_OK ? 0 : -1;
}

void preview_tally_free(preview_tally *t) {
    if (!t) return;
    json_decref(t->by_type);
    json_decref(t->by_confidence);
    for (size_t i = 0; i < t->nsamples; i++) {
        free(t->samples[i].id);
        free(t->samples[i].type);
        free(t->samples[i].confidence);
        free(t->samples[i].snippet);
        free(t->samples[i].signature);
    }
    strmap_free(&t->seen_types, NULL);
    strmap_free(&t->themed, free);
    strmap_free(&t->counts, NULL);
    for (size_t i = 0; i < t->norder; i++) free(t->order[i]);
    free(t->order);
    free(t);
}
