/* Written stories: the title, problem, who is affected and acceptance criteria of each
 * new story (LLM_STORY; offline: src/llm/local_story.c), titles made distinct within
 * the run, and the one renderer of a story's description (markdown), used for new
 * stories and for stories that grow in a later run.
 *
 * A story that grows keeps its title (people have read it, perhaps in a tracker) and
 * its written problem; only the description's figures and evidence change. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/stories.h"
#include "pipeline/story_plan.h"
#include "text/signature.h"
#include "text/text.h"
#include "util/buf.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/timeutil.h"

#define STORY_TITLE_MAX_BYTES 120
#define STORY_INTENTS 5
#define STORY_SYMPTOMS 6
#define STORY_EXCERPTS 3
#define STORY_EXCERPT_BYTES 300
#define EVIDENCE_SHOWN 5
#define EVIDENCE_LOOKED_AT (4 * EVIDENCE_SHOWN)
#define EVIDENCE_QUOTE_BYTES 240

/* ---- the answer ------------------------------------------------------------------- */

/* Whether the title, or what follows its "Area:" label, is taken from the vocabulary's
 * description of the theme: the product's own words, even when customers wrote them
 * too. */
static int in_product_words(const char *title, const json_t *args) {
    const char *desc = jx_str(jx_obj(args, "theme"), "description");
    if (!desc || !desc[0]) return 0;
    const char *colon = strchr(title, ':');
    char *d = text_fold(desc), *t = text_fold(title), *after = text_fold(colon ? colon + 1 : "");
    int in = (t[0] && strstr(d, t)) || (after[0] && strstr(d, after));
    free(d);
    free(t);
    free(after);
    return in;
}

/* Whether title repeats a customer's text: the same words as an intent or excerpt, or
 * most of one (a title found inside a text at least 70% of whose length it covers).
 * A title that merely shares a phrase with a customer is fine: products and customers
 * use the same words; so is one in the words of the theme's description. */
static int copies_customer(const char *title, const json_t *args) {
    if (in_product_words(title, args)) return 0;
    char *t = text_fold(title);
    int hit = 0;
    static const char *const keys[] = {"user_intents", "excerpts"};
    for (size_t k = 0; k < 2 && !hit; k++) {
        size_t i;
        json_t *v;
        json_array_foreach(jx_arr(args, keys[k]), i, v) {
            if (!json_is_string(v)) continue;
            char *x = text_fold(json_string_value(v));
            hit = !strcmp(x, t) || (strstr(x, t) && strlen(t) * 10 >= strlen(x) * 7);
            free(x);
            if (hit) break;
        }
    }
    free(t);
    return hit;
}

int story_answer_check(const json_t *args, const json_t *a, char *msg, size_t len) {
    if (!json_is_object(a)) {
        snprintf(msg, len, "answer: expected a JSON object");
        return -1;
    }
    const char *title = jx_str(a, "title");
    if (!title || !title[0] || strlen(title) > STORY_TITLE_MAX_BYTES) {
        snprintf(msg, len, "title: a string of 1 to 90 characters is required");
        return -1;
    }
    if (copies_customer(title, args)) {
        snprintf(msg, len, "title: it copies a customer's message; write it in the product's "
                           "words");
        return -1;
    }
    static const char *const texts[] = {"problem", "affected"};
    for (size_t i = 0; i < 2; i++) {
        const char *v = jx_str(a, texts[i]);
        if (!v || !v[0]) {
            snprintf(msg, len, "%s: a non-empty string is required", texts[i]);
            return -1;
        }
    }
    const json_t *ac = jx_arr(a, "acceptance_criteria");
    size_t i;
    json_t *v;
    json_array_foreach(ac, i, v) if (!json_is_string(v) || !json_string_value(v)[0]) {
        snprintf(msg, len, "acceptance_criteria: every item must be a non-empty string");
        return -1;
    }
    const char *kind = jx_str(args, "kind");
    if (!ac || (kind && !strcmp(kind, "bug") && json_array_size(ac) == 0)) {
        snprintf(msg, len, "acceptance_criteria: a bug needs at least one criterion");
        return -1;
    }
    return 0;
}

/* ---- the request -------------------------------------------------------------------- */

static char *day(int64_t t) {
    char buf[32];
    if (t <= 0 || !iso8601_format(t, buf, sizeof buf)) return NULL;
    buf[10] = '\0';
    return xstrdup(buf);
}

/* Appends s (cut to max_bytes) unless the array already says the same
 * (texts_say_the_same: "How do I close my account?" and "Hello team Help: how do I
 * close my account."). The first one stays: members come most typical first. Twins
 * would cost prompt tokens and show the reader the same evidence twice. */
static void add_unique(json_t *arr, const char *s, size_t max_bytes) {
    if (!s || !s[0]) return;
    char *cut = xstrndup(s, strlen(s) > max_bytes ? max_bytes : strlen(s));
    size_t i;
    json_t *v;
    int dup = 0;
    json_array_foreach(arr, i, v) if (!dup) dup = texts_say_the_same(json_string_value(v), cut);
    if (!dup) json_array_append_new(arr, jx_string(cut));
    free(cut);
}

static json_t *story_args(const vocab *v, const splan *p, const sstory *s) {
    const scand *c = &p->cands[s->cand];
    int64_t first = 0, last = 0;
    json_t *intents = json_array(), *symptoms = json_array(), *excerpts = json_array();
    for (size_t i = 0; i < s->n; i++) {
        const smember *m = &p->mem[s->m[i]];
        if (m->created_at > 0 && (!first || m->created_at < first)) first = m->created_at;
        if (m->created_at > last) last = m->created_at;
        if (json_array_size(intents) < STORY_INTENTS) add_unique(intents, m->intent, 200);
        size_t k;
        json_t *x;
        json_array_foreach(m->symptoms, k, x) if (json_array_size(symptoms) < STORY_SYMPTOMS)
            add_unique(symptoms, json_string_value(x), 120);
        /* members are most typical first: the strongest evidence */
        if (json_array_size(excerpts) < STORY_EXCERPTS)
            add_unique(excerpts, m->excerpt, STORY_EXCERPT_BYTES);
    }
    char *f = day(first), *l = day(last);
    json_t *a = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:o, s:o, s:o}", "signature",
                          c->signature, "product_area", c->area, "component", c->component,
                          "kind", s->kind, "distinguisher", s->distinguisher,
                          "conversation_count", (json_int_t)s->n, "action_type", s->action,
                          "direction", s->direction, "user_intents", intents, "symptoms",
                          symptoms, "excerpts", excerpts);
    if (f) json_object_set_new(a, "first_seen", jx_string(f));
    if (l) json_object_set_new(a, "last_seen", jx_string(l));
    json_t *theme = story_theme_args(v, c->signature);
    if (theme) json_object_set_new(a, "theme", theme);
    free(f);
    free(l);
    return a;
}

void story_write_call(const vocab *v, const splan *p, const sstory *s, llm_call *call) {
    call->task = LLM_STORY;
    call->args = story_args(v, p, s);
    call->in.conv_id = p->cands[s->cand].signature;
    call->in.body = call->in.digest = call->in.transcript = "";
    call->in.support_text = "";
    call->validate = story_answer_check;
}

static char *humanised(const char *s) {
    char *h = xstrdup(s);
    for (char *c = h; *c; c++)
        if (*c == '_') *c = ' ';
    if (h[0] >= 'a' && h[0] <= 'z') h[0] = (char)(h[0] - 'a' + 'A');
    return h;
}

/* A story whose written answer failed: the humanised signature and the vocabulary's
 * description, so it still reads as a story and not as raw data. */
static void fallback_text(const vocab *v, const splan *p, sstory *s) {
    const scand *c = &p->cands[s->cand];
    char *h = humanised(c->signature);
    s->title = s->distinguisher[0] ? xasprintf("%s (%s)", h, s->distinguisher) : xstrdup(h);
    const vocab_theme *t = v ? vocab_find(v, c->signature) : NULL;
    s->problem = xstrdup(t && t->description ? t->description : h);
    s->affected = xasprintf("%zu conversations.", s->n);
    s->criteria = json_array();
    free(h);
}

/* ---- distinct titles ------------------------------------------------------------------ */

void story_titles_distinct(char **titles, char *const *distinguishers, char *const *areas,
                           size_t n) {
    for (size_t i = 1; i < n; i++) {
        for (int attempt = 0; attempt < 3; attempt++) {
            int clash = 0;
            for (size_t j = 0; j < i && !clash; j++) clash = !strcasecmp(titles[i], titles[j]);
            if (!clash) break;
            char *t;
            if (attempt == 0 && distinguishers[i] && distinguishers[i][0] &&
                !strstr(titles[i], distinguishers[i]))
                t = xasprintf("%s (%s)", titles[i], distinguishers[i]);
            else if (attempt <= 1 && areas[i] && areas[i][0] && !strstr(titles[i], areas[i]))
                t = xasprintf("%s [%s]", titles[i], areas[i]);
            else
                t = xasprintf("%s #%zu", titles[i], i + 1);
            free(titles[i]);
            titles[i] = t;
        }
    }
}

int story_write(const run_env *env, store *st, llm_provider *llm, const run_record *run,
                splan *p) {
    size_t n = 0;
    size_t *which = xcalloc(p->nstories ? p->nstories : 1, sizeof *which);
    for (size_t i = 0; i < p->nstories; i++)
        if (p->stories[i].match_id == 0) which[n++] = i;
    llm_call *calls = xcalloc(n ? n : 1, sizeof *calls);
    llm_call **all = xcalloc(n ? n : 1, sizeof *all);
    for (size_t k = 0; k < n; k++) {
        story_write_call(env->vocab, p, &p->stories[which[k]], &calls[k]);
        all[k] = &calls[k];
    }
    int stopped = story_calls_run(env, st, llm, run, all, n);
    free(all);
    for (size_t k = 0; k < n && !stopped; k++) {
        sstory *s = &p->stories[which[k]];
        char why[256] = "";
        const json_t *a = calls[k].answer;
        if (calls[k].status == LLM_OK && story_answer_check(calls[k].args, a, why, sizeof why) == 0) {
            s->title = xstrdup(jx_str(a, "title"));
            s->problem = xstrdup(jx_str(a, "problem"));
            s->affected = xstrdup(jx_str(a, "affected"));
            s->criteria = json_deep_copy(jx_arr(a, "acceptance_criteria"));
            continue;
        }
        fallback_text(env->vocab, p, s);
        char *what = xasprintf("story text of %s: %s", p->cands[s->cand].signature,
                               calls[k].status == LLM_OK ? why : calls[k].error);
        if (store_put_run_error(st, run->id, PHASE_STORIES, what, wall_unix()) != STORE_OK)
            log_warn("run %lld: %s: %s", (long long)run->id, what, store_errmsg(st));
        free(what);
    }
    for (size_t k = 0; k < n; k++) {
        json_decref(calls[k].args);
        llm_call_reset_result(&calls[k]);
    }
    free(calls);
    free(which);
    if (stopped) return 1;
    /* Distinct titles: stories that grow keep theirs, so they come first. */
    char **titles = xcalloc(p->nstories ? p->nstories : 1, sizeof *titles);
    char **dists = xcalloc(p->nstories ? p->nstories : 1, sizeof *dists);
    char **areas = xcalloc(p->nstories ? p->nstories : 1, sizeof *areas);
    size_t *order = xcalloc(p->nstories ? p->nstories : 1, sizeof *order), k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < p->nstories; i++)
            if ((p->stories[i].match_id > 0) == (pass == 0)) order[k++] = i;
    for (size_t i = 0; i < p->nstories; i++) {
        sstory *s = &p->stories[order[i]];
        titles[i] = s->title ? s->title : xstrdup("");
        dists[i] = s->distinguisher;
        areas[i] = humanised(p->cands[s->cand].area);
    }
    story_titles_distinct(titles, dists, areas, p->nstories);
    for (size_t i = 0; i < p->nstories; i++) {
        p->stories[order[i]].title = titles[i];
        free(areas[i]);
    }
    free(titles);
    free(dists);
    free(areas);
    free(order);
    return 0;
}

/* ---- the description ------------------------------------------------------------------- */

/* The date part of an ISO-8601 time, or NULL. */
static const char *date_of(const json_t *v, char out[11]) {
    const char *s = json_string_value(v);
    if (!s || strlen(s) < 10) return NULL;
    memcpy(out, s, 10);
    out[10] = '\0';
    return out;
}

static char *iso_day(const json_t *story, const char *key, char out[32]) {
    const json_t *v = json_object_get(story, key);
    if (json_is_integer(v) && json_integer_value(v) > 0) {
        if (!iso8601_format(json_integer_value(v), out, 32)) return NULL;
        out[10] = '\0';
        return out;
    }
    if (json_is_string(v) && strlen(json_string_value(v)) >= 10) {
        memcpy(out, json_string_value(v), 10);
        out[10] = '\0';
        return out;
    }
    return NULL;
}

/* The quote of one evidence item: its first key excerpt, else its excerpt. */
static const char *evidence_quote(const json_t *e) {
    const char *k = jx_str(json_array_get(jx_arr(e, "key_excerpts"), 0), "text");
    if (k && k[0]) return k;
    const char *x = jx_str(e, "excerpt");
    return x && x[0] ? x : jx_str(e, "digest");
}

static void put_quote(buf_t *b, const char *s) {
    size_t n = strlen(s);
    if (n > EVIDENCE_QUOTE_BYTES) {
        n = EVIDENCE_QUOTE_BYTES;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--; /* whole characters */
    }
    for (size_t i = 0; i < n; i++) buf_putc(b, s[i] == '\n' || s[i] == '\r' ? ' ' : s[i]);
    if (n < strlen(s)) buf_puts(b, "...");
}

/* Evidence with a key excerpt first (the theme's own pick), then the newest. */
static int evidence_rank(const void *a, const void *b) {
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    int kx = json_array_size(jx_arr(x, "key_excerpts")) > 0;
    int ky = json_array_size(jx_arr(y, "key_excerpts")) > 0;
    if (kx != ky) return ky - kx;
    const char *cx = json_string_value(json_object_get(x, "created_at"));
    const char *cy = json_string_value(json_object_get(y, "created_at"));
    int c = strcmp(cy ? cy : "", cx ? cx : "");
    return c ? c : strcmp(jx_str(x, "conversation_id"), jx_str(y, "conversation_id"));
}

char *story_render_description(const json_t *story) {
    buf_t b = BUF_INIT;
    const char *problem = jx_str(story, "problem");
    buf_printf(&b, "## Problem\n\n%s\n\n", problem && problem[0] ? problem : jx_str(story, "title"));
    json_int_t n = json_integer_value(json_object_get(story, "conversation_count"));
    char first[32], last[32];
    const char *f = iso_day(story, "first_seen_at", first), *l = iso_day(story, "last_seen_at", last);
    buf_puts(&b, "## Who is affected\n\n");
    const char *affected = jx_str(story, "affected");
    if (affected && affected[0]) buf_printf(&b, "%s\n\n", affected);
    buf_printf(&b, "%lld conversation%s", (long long)n, n == 1 ? "" : "s");
    if (f && l && strcmp(f, l)) buf_printf(&b, " from %s to %s", f, l);
    else if (f) buf_printf(&b, " on %s", f);
    size_t runs = json_array_size(jx_arr(story, "runs"));
    if (runs > 1) buf_printf(&b, ", seen in %zu runs", runs);
    buf_puts(&b, ".\n\n");
    buf_printf(&b, "## Product area\n\n%s / %s (signature `%s`", jx_str(story, "product_area"),
               jx_str(story, "component"), jx_str(story, "signature"));
    const char *dist = jx_str(story, "distinguisher");
    if (dist && dist[0]) buf_printf(&b, ", sub-group \"%s\"", dist);
    buf_puts(&b, ")\n\n");
    const json_t *ev = jx_arr(story, "evidence");
    size_t ne = json_array_size(ev);
    if (ne) {
        json_t **sorted = xcalloc(ne, sizeof *sorted);
        for (size_t i = 0; i < ne; i++) sorted[i] = json_array_get(ev, i);
        qsort(sorted, ne, sizeof *sorted, evidence_rank);
        buf_puts(&b, "## Evidence\n\n");
        /* up to EVIDENCE_SHOWN quotes that each say something the others do not: a
         * conversation that says what one shown already says is among the "more". At
         * most EVIDENCE_LOOKED_AT are looked at (a comparison takes ~10 us, and a story
         * of thousands of templated messages would otherwise compare them all). */
        const char *shown[EVIDENCE_SHOWN];
        size_t nshown = 0;
        for (size_t i = 0; i < ne && i < EVIDENCE_LOOKED_AT && nshown < EVIDENCE_SHOWN; i++) {
            const char *q = evidence_quote(sorted[i]);
            int twin = 0;
            for (size_t k = 0; k < nshown && !twin; k++) twin = texts_say_the_same(shown[k], q);
            if (twin) continue;
            shown[nshown++] = q ? q : "";
            char d[11];
            const char *when = date_of(json_object_get(sorted[i], "created_at"), d);
            buf_puts(&b, "- \"");
            put_quote(&b, q ? q : "");
            buf_printf(&b, "\" (conversation %s%s%s)\n", jx_str(sorted[i], "conversation_id"),
                       when ? ", " : "", when ? when : "");
        }
        if (ne > nshown) buf_printf(&b, "- and %zu more conversations\n", ne - nshown);
        buf_putc(&b, '\n');
        free(sorted);
    }
    const json_t *ac = jx_arr(story, "acceptance_criteria");
    if (json_array_size(ac)) {
        buf_puts(&b, "## Acceptance criteria\n\n");
        size_t i;
        json_t *v;
        json_array_foreach(ac, i, v) buf_printf(&b, "- [ ] %s\n", json_string_value(v));
        buf_putc(&b, '\n');
    }
    const json_t *review = jx_obj(story, "review");
    const char *reason = jx_str(review, "reason");
    if (reason && reason[0])
        buf_printf(&b, "## Review\n\n%s: %s\n", jx_str(review, "decision"), reason);
    while (b.len && b.data[b.len - 1] == '\n') buf_truncate(&b, b.len - 1);
    buf_putc(&b, '\n');
    return buf_detach(&b);
}
