/* Theme phase: extract a theme per actionable conversation, canonicalise its
 * signature, apply the quality gate, store it (original-phases.md §5–6), with the
 * original's bugs fixed:
 *  - "matched the vocabulary" is checked against the vocabulary, not taken from the
 *    LLM's matched_existing; deprecated themes only count through merged_into;
 *  - signatures are normalised (lower snake case) before anything else;
 *  - a new signature is first compared deterministically with the area's existing
 *    signatures (vocabulary, this run's, earlier runs') and reused when it is a near
 *    duplicate; otherwise the provider canonicalises it against a bounded list (50);
 *  - new proposals that match nothing known wait, per product area, and are
 *    canonicalised in batches: one request carries up to LLM_CANON_BATCH_MAX distinct
 *    proposals (a proposal that near-duplicates one already in the batch rides on its
 *    decision). An area's batch goes when it is full, when the engine has a free slot
 *    and no more theme work can start soon (nothing of the theme phase or of
 *    classification, which seeds it, left to start: the end of the phase), or when its
 *    oldest proposal has waited CANON_MAX_WAIT_MS. Waiting costs no slot, so a run pays a few
 *    canonicalisation requests rather than one per new signature;
 *  - a proposal that near-duplicates one being canonicalised waits for that answer
 *    and is decided against what it minted; so two conversations proposing the same
 *    new signature at once produce one signature. Other proposals need not wait: a
 *    result that near-duplicates a signature decided while it was in flight adopts
 *    that signature;
 *  - is-new is decided by the store's atomic insert of the signature, so themes_new
 *    counts each new signature once, across workers and resumes.
 * Everything here runs on the engine's thread; the phase context needs no lock. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/answer.h"
#include "pipeline/engine.h"
#include "pipeline/preview.h"
#include "pipeline/quality.h"
#include "text/signature.h"
#include "util/jsonx.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/strmap.h"
#include "util/timeutil.h"

#define CANON_MAX_CANDIDATES 50
/* A new proposal waits at most this long for its batch to fill (its result is not
 * written before, so progress lags by as much). */
#define CANON_MAX_WAIT_MS 30000
#define SESSION_MAX 100000 /* distinct new signatures remembered per run */

typedef struct theme_state {
    char *signature;      /* final, normalised */
    char *proposed;       /* as the extraction proposed it (normalised) */
    char *area, *component, *area_raw, *component_raw;
    size_t canon_index;   /* the proposal of its canonicalisation batch it takes */
    int in_vocab;
    const char *match_confidence;
    char *user_intent, *affected_flow, *root_cause, *diagnostic;
    json_t *symptoms, *key_excerpts, *context_used, *context_gaps;
    quality_result q;
} theme_state;

/* New proposals of one product area waiting for canonicalisation, in arrival order,
 * and the proposals of the area's batches in flight. */
typedef struct waitq {
    call_group **g;
    size_t n, cap;
    int64_t since_ms; /* when the oldest waiting proposal arrived */
    char **asking;    /* proposals in flight (a proposal may be there twice) */
    size_t nasking, asking_cap;
} waitq;

typedef struct themes_ctx {
    const vocab *v;
    strmap_t session; /* new signature -> area (char*) decided in this run */
    strmap_t areas;   /* area -> waitq* */
    preview_tally *tally; /* dry runs */
} themes_ctx;

static int validate_theme(const json_t *args, const json_t *a, char *msg, size_t len) {
    (void)args;
    if (!json_is_object(a)) return answer_reject(msg, len, "answer", "expected a JSON object");
    json_t *sig = json_object_get(a, "issue_signature");
    if (!json_is_string(sig) || !json_string_value(sig)[0])
        return answer_reject(msg, len, "issue_signature", "missing or not a string");
    if (!json_is_string(json_object_get(a, "product_area")))
        return answer_reject(msg, len, "product_area", "missing or not a string");
    json_t *sym = json_object_get(a, "symptoms");
    if (sym && !json_is_array(sym) && !json_is_null(sym))
        return answer_reject(msg, len, "symptoms", "expected an array of strings");
    json_t *ke = json_object_get(a, "key_excerpts");
    if (ke && !json_is_array(ke) && !json_is_null(ke))
        return answer_reject(msg, len, "key_excerpts", "expected an array");
    return 0;
}

static int validate_canon(const json_t *args, const json_t *a, char *msg, size_t len) {
    (void)args;
    if (!json_is_object(a)) return answer_reject(msg, len, "answer", "expected a JSON object");
    json_t *ds = json_object_get(a, "decisions");
    if (!json_is_array(ds) || json_array_size(ds) == 0)
        return answer_reject(msg, len, "decisions", "missing or not a non-empty array");
    size_t i;
    json_t *d;
    json_array_foreach(ds, i, d) {
        json_t *sig = json_object_get(d, "signature");
        if (!json_is_string(sig) || !json_string_value(sig)[0])
            return answer_reject(msg, len, "decisions[].signature", "missing or not a string");
    }
    return 0;
}

static void free_state(work_item *it) {
    theme_state *ts = it->state;
    if (!ts) return;
    free(ts->signature);
    free(ts->proposed);
    free(ts->area);
    free(ts->component);
    free(ts->area_raw);
    free(ts->component_raw);
    free(ts->user_intent);
    free(ts->affected_flow);
    free(ts->root_cause);
    free(ts->diagnostic);
    json_decref(ts->symptoms);
    json_decref(ts->key_excerpts);
    json_decref(ts->context_used);
    json_decref(ts->context_gaps);
    quality_result_free(&ts->q);
    free(ts);
    it->state = NULL;
}

/* key_excerpts: first 5 objects with text; text <= 500 chars; a missing, empty or
 * confidence-word relevance becomes a descriptive default (original §5). */
static json_t *clean_excerpts(const json_t *answer) {
    json_t *out = json_array();
    json_t *arr = json_object_get(answer, "key_excerpts");
    if (!json_is_array(arr)) return out;
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x) {
        if (i >= 5) break;
        if (!json_is_object(x) || !json_is_string(json_object_get(x, "text"))) continue;
        char *text = answer_text(x, "text", 500);
        char *rel = answer_text(x, "relevance", 200);
        if (!rel[0] || !strcmp(rel, "high") || !strcmp(rel, "medium") || !strcmp(rel, "low")) {
            free(rel);
            rel = xstrdup("Relevant excerpt from conversation");
        }
        if (text[0]) json_array_append_new(out, json_pack("{ssss}", "text", text, "relevance", rel));
        free(text);
        free(rel);
    }
    return out;
}

/* Looks the signature up in the vocabulary (following merges); only active themes
 * count as a match. */
static const vocab_theme *vocab_match(const vocab *v, const char *sig) {
    const vocab_theme *t = vocab_find(v, sig);
    return t && t->active ? t : NULL;
}

static void adopt_vocab_theme(theme_state *ts, const vocab_theme *t) {
    free(ts->signature);
    free(ts->area);
    free(ts->component);
    ts->signature = xstrdup(t->signature);
    ts->area = product_area_normalize(t->product_area);
    ts->component = component_canonicalize(t->component, ts->area);
    ts->in_vocab = 1;
}

static theme_state *parse_theme(const json_t *a) {
    theme_state *ts = xcalloc(1, sizeof *ts);
    const char *raw_sig = jx_str(a, "issue_signature");
    ts->proposed = signature_normalize(raw_sig);
    if (!strcmp(ts->proposed, "unknown")) {
        free(ts->proposed);
        ts->proposed = xstrdup("unknown_issue");
    }
    ts->signature = xstrdup(ts->proposed);
    ts->area_raw = answer_text(a, "product_area", 100);
    ts->component_raw = answer_text(a, "component", 100);
    ts->area = product_area_normalize(ts->area_raw);
    ts->component = component_canonicalize(ts->component_raw, ts->area);
    ts->match_confidence = answer_enum(a, "match_confidence", LLM_CONFIDENCES, "low");
    ts->user_intent = answer_text(a, "user_intent", 500);
    ts->affected_flow = answer_text(a, "affected_flow", 500);
    ts->root_cause = answer_text(a, "root_cause_hypothesis", 1000);
    ts->diagnostic = answer_text(a, "diagnostic_summary", 2000);
    ts->symptoms = answer_string_list(a, "symptoms", 10, 200);
    ts->key_excerpts = clean_excerpts(a);
    ts->context_used = answer_string_list(a, "context_used", 20, 300);
    ts->context_gaps = answer_string_list(a, "context_gaps", 20, 300);
    return ts;
}

/* The existing signatures of an area: vocabulary (active), this run's, earlier runs'. */
static json_t *area_candidates(engine *e, themes_ctx *tc, const char *area) {
    json_t *list = json_array();
    strmap_t seen = STRMAP_INIT;
    for (size_t i = 0; i < tc->v->nthemes && json_array_size(list) < CANON_MAX_CANDIDATES; i++) {
        const vocab_theme *t = &tc->v->themes[i];
        if (!t->active) continue;
        char *a = product_area_normalize(t->product_area);
        if (!strcmp(a, area) && !strmap_has(&seen, t->signature)) {
            strmap_put(&seen, t->signature, NULL);
            json_array_append_new(list, json_pack("{ssssss}", "signature", t->signature,
                                                  "product_area", a, "component", t->component));
        }
        free(a);
    }
    for (size_t i = 0; i < tc->session.cap && json_array_size(list) < CANON_MAX_CANDIDATES; i++) {
        const char *sig = tc->session.keys[i];
        if (!sig || strcmp((const char *)tc->session.vals[i], area) || strmap_has(&seen, sig))
            continue;
        strmap_put(&seen, sig, NULL);
        json_array_append_new(list, json_pack("{ssssss}", "signature", sig, "product_area",
                                              area, "component", ""));
    }
    char **sigs = NULL;
    size_t n = 0;
    if (store_signature_list(e->st, area, CANON_MAX_CANDIDATES, &sigs, &n) == STORE_OK) {
        for (size_t i = 0; i < n; i++) {
            if (json_array_size(list) < CANON_MAX_CANDIDATES && !strmap_has(&seen, sigs[i])) {
                strmap_put(&seen, sigs[i], NULL);
                json_array_append_new(list, json_pack("{ssssss}", "signature", sigs[i],
                                                      "product_area", area, "component", ""));
            }
            free(sigs[i]);
        }
        free(sigs);
    } else {
        log_warn("run %lld: listing signatures: %s", (long long)e->run->id, store_errmsg(e->st));
    }
    strmap_free(&seen, NULL);
    return list;
}

/* Deterministic canonicalisation: an existing signature of the area that the proposal
 * near-duplicates, or NULL. */
static const char *near_duplicate(const json_t *candidates, const char *proposal) {
    size_t i;
    json_t *c;
    json_array_foreach(candidates, i, c) {
        const char *sig = jx_str(c, "signature");
        if (sig && signature_near_duplicate(sig, proposal)) return sig;
    }
    return NULL;
}

static waitq *area_queue(themes_ctx *tc, const char *area) {
    waitq *q = strmap_get(&tc->areas, area);
    if (!q) {
        q = xcalloc(1, sizeof *q);
        strmap_put(&tc->areas, area, q);
    }
    return q;
}

static void remember(themes_ctx *tc, theme_state *ts) {
    if (!ts->in_vocab && !signature_is_blocked(ts->signature) &&
        !strmap_has(&tc->session, ts->signature) && tc->session.count < SESSION_MAX)
        strmap_put(&tc->session, ts->signature, xstrdup(ts->area));
}

static void finish_item(engine *e, work_item *it) {
    theme_state *ts = it->state;
    themes_ctx *tc = e->ctx[PHASE_THEMES];
    remember(tc, ts);
    quality_check(ts->signature, ts->in_vocab, ts->match_confidence, QUALITY_THRESHOLD, &ts->q);
    engine_item_ok(e, it);
}

/* A proposal that near-duplicates a signature already known in its area takes it.
 * 1 when it did. */
static int adopt_known(const vocab *v, theme_state *ts, const json_t *cands) {
    const char *dup = near_duplicate(cands, ts->proposed);
    if (!dup) return 0;
    const vocab_theme *t = vocab_match(v, dup);
    if (t) {
        adopt_vocab_theme(ts, t);
    } else {
        free(ts->signature);
        ts->signature = xstrdup(dup);
    }
    return 1;
}

static void hold_in(waitq *q, call_group *g) {
    XGROW(q->g, q->cap, q->n + 1);
    if (q->n == 0) q->since_ms = mono_ms();
    q->g[q->n++] = g;
}

/* One canonicalisation request under construction. */
typedef struct canon_batch {
    call_group **g; /* the held groups it answers */
    size_t n, cap;
    json_t *proposals;
} canon_batch;

/* Whether p waits for a proposal in flight (whose answer will decide it too). */
static int asked_already(const waitq *q, const char *p) {
    for (size_t i = 0; i < q->nasking; i++)
        if (signature_near_duplicate(q->asking[i], p)) return 1;
    return 0;
}

static void asking_remove(waitq *q, const char *p) {
    for (size_t i = 0; i < q->nasking; i++)
        if (!strcmp(q->asking[i], p)) {
            free(q->asking[i]);
            q->asking[i] = q->asking[--q->nasking];
            return;
        }
}

static void batch_send(engine *e, waitq *q, const char *area, const json_t *cands,
                       canon_batch *b) {
    if (b->n == 0) return;
    call_group *g = engine_join_held(e, b->g, b->n);
    g->step = 1;
    engine_set_args(g, json_pack("{s:s, s:O, s:o}", "product_area", area, "existing", cands,
                                 "proposals", b->proposals));
    g->call.task = LLM_CANONICALIZE;
    g->call.validate = validate_canon;
    /* Listed before the submit: a refused call is completed and taken out at once. */
    size_t i;
    json_t *x;
    json_array_foreach(b->proposals, i, x) {
        XGROW(q->asking, q->asking_cap, q->nasking + 1);
        q->asking[q->nasking++] = xstrdup(jx_str(x, "proposed"));
    }
    if (engine_submit(e, g) != 0) {
        json_array_foreach(b->proposals, i, x) asking_remove(q, jx_str(x, "proposed"));
    }
    b->n = 0;
    b->proposals = json_array();
}

/* The proposal of the batch that p near-duplicates, or -1. */
static int batch_leader(const canon_batch *b, const char *p) {
    size_t i;
    json_t *x;
    json_array_foreach(b->proposals, i, x)
        if (signature_near_duplicate(jx_str(x, "proposed"), p)) return (int)i;
    return -1;
}

/* Decides the waiting proposals of an area: near-duplicates of what is known now are
 * adopted without a call, near-duplicates of a proposal in flight wait for its answer,
 * the others go in batches. */
static void area_flush(engine *e, themes_ctx *tc, const char *area, waitq *q) {
    call_group **waiting = q->g;
    size_t n = q->n;
    int64_t since = q->since_ms;
    q->g = NULL;
    q->n = q->cap = 0;
    json_t *cands = area_candidates(e, tc, area);
    canon_batch b = {.proposals = json_array()};
    for (size_t i = 0; i < n; i++) {
        call_group *g = waiting[i];
        theme_state *ts = g->items[0]->state;
        if (adopt_known(tc->v, ts, cands)) {
            finish_item(e, g->items[0]);
            engine_finish_held(e, g);
            continue;
        }
        if (asked_already(q, ts->proposed)) {
            hold_in(q, g);
            q->since_ms = since;
            continue;
        }
        int lead = batch_leader(&b, ts->proposed);
        if (lead < 0) {
            if (json_array_size(b.proposals) >= LLM_CANON_BATCH_MAX)
                batch_send(e, q, area, cands, &b);
            lead = (int)json_array_size(b.proposals);
            json_array_append_new(b.proposals,
                                  json_pack("{sssssssO}", "proposed", ts->proposed, "component",
                                            ts->component, "user_intent", ts->user_intent,
                                            "symptoms", ts->symptoms));
        }
        ts->canon_index = (size_t)lead;
        XGROW(b.g, b.cap, b.n + 1);
        b.g[b.n++] = g;
    }
    batch_send(e, q, area, cands, &b);
    json_decref(b.proposals);
    free(b.g);
    json_decref(cands);
    free(waiting);
}

/* Waiting proposals that do not wait for an answer in flight. */
static size_t sendable(const waitq *q) {
    size_t k = 0;
    for (size_t i = 0; i < q->n; i++) {
        const theme_state *ts = q->g[i]->items[0]->state;
        k += !asked_already(q, ts->proposed);
    }
    return k;
}

/* Sends the batches that are due: an area's is due when it is full, when its oldest
 * proposal has waited long enough, or when the engine would otherwise leave a slot
 * unused. */
static void themes_pump(engine *e) {
    themes_ctx *tc = e->ctx[PHASE_THEMES];
    int starved = engine_drained(e, PHASE_THEMES);
    int64_t now = mono_ms();
    for (size_t i = 0; i < tc->areas.cap; i++) {
        waitq *q = tc->areas.vals[i];
        if (!tc->areas.keys[i] || !q || q->n == 0) continue;
        size_t k = sendable(q);
        if (k && (starved || k >= LLM_CANON_BATCH_MAX || now - q->since_ms >= CANON_MAX_WAIT_MS))
            area_flush(e, tc, tc->areas.keys[i], q);
    }
}

/* A canonicalisation result that near-duplicates a signature decided in this run
 * while it was in flight (by another batch) adopts that signature. */
static void adopt_session_duplicate(themes_ctx *tc, theme_state *ts) {
    if (ts->in_vocab || strmap_has(&tc->session, ts->signature)) return;
    for (size_t i = 0; i < tc->session.cap; i++) {
        const char *sig = tc->session.keys[i];
        if (!sig || strcmp((const char *)tc->session.vals[i], ts->area) != 0) continue;
        if (signature_near_duplicate(sig, ts->signature)) {
            free(ts->signature);
            ts->signature = xstrdup(sig);
            return;
        }
    }
}

static int themes_begin(engine *e) {
    themes_ctx *tc = xcalloc(1, sizeof *tc);
    tc->v = e->env->vocab;
    if (e->run->dry_run) tc->tally = preview_tally_new(e->st, e->run->id);
    e->ctx[PHASE_THEMES] = tc;
    return 0;
}

static void free_waitq(void *p) {
    waitq *q = p;
    for (size_t i = 0; i < q->nasking; i++) free(q->asking[i]);
    free(q->asking);
    free(q->g);
    free(q);
}

static void themes_end(engine *e) {
    themes_ctx *tc = e->ctx[PHASE_THEMES];
    /* On stop, groups still waiting for their area are abandoned (resumed later). */
    for (size_t i = 0; i < tc->areas.cap; i++) {
        waitq *q = tc->areas.vals[i];
        if (!tc->areas.keys[i] || !q) continue;
        for (size_t k = 0; k < q->n; k++) engine_abandon_held(e, q->g[k]);
        q->n = 0;
    }
    if (tc->tally) {
        if (!e->stopping && !e->fatal) {
            if (preview_tally_finish(tc->tally, e->st, e->run->id, &tc->session) != 0)
                engine_fatal(e, "writing the dry-run preview: %s", store_errmsg(e->st));
        }
        preview_tally_free(tc->tally);
    }
    strmap_free(&tc->session, free);
    strmap_free(&tc->areas, free_waitq);
    free(tc);
    e->ctx[PHASE_THEMES] = NULL;
}

static int themes_prepare(engine *e, call_group *g) {
    (void)e;
    work_item *it = g->items[0];
    engine_fill_input(g);
    engine_set_args(g, json_pack("{ss}", "conversation_type",
                                 it->in.final_type ? it->in.final_type : "product_issue"));
    g->call.task = LLM_THEME;
    g->call.validate = validate_theme;
    return 1;
}

static int complete_extraction(engine *e, call_group *g) {
    themes_ctx *tc = e->ctx[PHASE_THEMES];
    work_item *it = g->items[0];
    const llm_call *c = &g->call;
    char why[160];
    if (c->status != LLM_OK) {
        engine_item_fail(e, it, "theme extraction failed (%s): %s", llm_status_name(c->status),
                         c->error);
        return 0;
    }
    if (validate_theme(c->args, c->answer, why, sizeof why)) {
        engine_item_fail(e, it, "theme answer invalid: %s", why);
        return 0;
    }
    theme_state *ts = parse_theme(c->answer);
    it->state = ts;
    const vocab_theme *t = vocab_match(tc->v, ts->proposed);
    if (t) adopt_vocab_theme(ts, t);
    if (ts->in_vocab || signature_is_blocked(ts->signature)) {
        finish_item(e, it);
        return 0;
    }
    json_t *cands = area_candidates(e, tc, ts->area);
    int known = adopt_known(tc->v, ts, cands);
    json_decref(cands);
    if (known) {
        finish_item(e, it);
        return 0;
    }
    hold_in(area_queue(tc, ts->area), g); /* sent by themes_pump */
    return ENGINE_HOLD;
}

/* Applies a batch's decision to one of its items. A missing or failed decision is not
 * a failed theme: the item keeps its normalised proposal. */
static void apply_decision(themes_ctx *tc, theme_state *ts, const json_t *d) {
    if (!d) return;
    char *sig = signature_normalize(jx_str(d, "signature"));
    const vocab_theme *t = vocab_match(tc->v, sig);
    if (t) {
        adopt_vocab_theme(ts, t);
    } else if (strcmp(sig, "unknown") != 0) {
        free(ts->signature);
        ts->signature = sig;
        sig = NULL;
    }
    free(sig);
}

static int complete_canonicalization(engine *e, call_group *g) {
    themes_ctx *tc = e->ctx[PHASE_THEMES];
    const llm_call *c = &g->call;
    char why[160] = "";
    int ok = c->status == LLM_OK && validate_canon(c->args, c->answer, why, sizeof why) == 0;
    if (!ok)
        log_info("run %lld: canonicalisation of %zu proposals failed, keeping them: %s",
                 (long long)e->run->id, json_array_size(jx_arr(g->args, "proposals")),
                 c->status ? c->error : why);
    for (size_t i = 0; i < g->n; i++) {
        theme_state *ts = g->items[i]->state;
        const json_t *d = ok ? llm_canon_decision(c->answer, g->args, ts->canon_index) : NULL;
        if (ok && !d)
            log_info("run %lld: the canonicalisation answer has no decision for %s; keeping it",
                     (long long)e->run->id, ts->proposed);
        apply_decision(tc, ts, d);
        adopt_session_duplicate(tc, ts);
        finish_item(e, g->items[i]);
    }
    /* Bookkept under the batch's area (an answer may have moved a theme to the area of
     * a vocabulary theme); proposals that waited for it go at the next pump. */
    waitq *q = area_queue(tc, jx_str(g->args, "product_area"));
    size_t i;
    json_t *x;
    json_array_foreach(jx_arr(g->args, "proposals"), i, x) asking_remove(q, jx_str(x, "proposed"));
    return 0;
}

static int themes_complete(engine *e, call_group *g) {
    return g->step == 0 ? complete_extraction(e, g) : complete_canonicalization(e, g);
}

static int themes_write(engine *e, work_item *it) {
    themes_ctx *tc = e->ctx[PHASE_THEMES];
    theme_state *ts = it->state;
    if (tc->tally) { /* dry run: nothing stored but the bookkeeping */
        preview_tally_add(tc->tally, it->in.conv.id, ts->signature, ts->q.passed);
        return STORE_OK; /* the engine closed the item */
    }
    int64_t now = wall_unix();
    if (ts->q.passed && !ts->in_vocab) {
        int is_new = 0;
        int rc = store_signature_register(e->st, ts->signature, ts->area, ts->component,
                                          e->run->id, now, &is_new);
        if (rc) return rc;
    }
    char *symptoms = jx_dump(ts->symptoms), *excerpts = jx_dump(ts->key_excerpts);
    char *details = jx_dump(ts->q.details), *used = jx_dump(ts->context_used);
    char *gaps = jx_dump(ts->context_gaps);
    theme_row r = {0};
    r.conversation_id = it->in.conv.id;
    r.product_area = ts->area;
    r.component = ts->component;
    r.issue_signature = ts->signature;
    r.product_area_raw = ts->area_raw;
    r.component_raw = ts->component_raw;
    r.proposed_signature = ts->proposed;
    r.matched_existing = ts->in_vocab;
    r.match_confidence = ts->match_confidence;
    r.user_intent = ts->user_intent;
    r.symptoms_json = symptoms;
    r.affected_flow = ts->affected_flow;
    r.root_cause_hypothesis = ts->root_cause;
    r.diagnostic_summary = ts->diagnostic;
    r.key_excerpts_json = excerpts;
    r.quality_score = ts->q.score;
    r.quality_details_json = details;
    r.passed = ts->q.passed;
    r.filter_reason = ts->q.passed ? NULL : ts->q.reason;
    r.context_used_json = used;
    r.context_gaps_json = gaps;
    int rc = store_put_theme(e->st, e->run->id, &r, now);
    if (rc == STORE_OK && !ts->q.passed) {
        char warning[400];
        snprintf(warning, sizeof warning, "Theme filtered (%s): %s", ts->q.reason, ts->signature);
        engine_add_warning(e, warning);
    }
    free(symptoms);
    free(excerpts);
    free(details);
    free(used);
    free(gaps);
    return rc;
}

const phase_ops THEMES_OPS = {
    .phase = PHASE_THEMES,
    .group_max = 1,
    .begin = themes_begin,
    .end = themes_end,
    .prepare = themes_prepare,
    .complete = themes_complete,
    .pump = themes_pump,
    .write = themes_write,
    .free_state = free_state,
};

int theme_answer_check(const json_t *args, const json_t *answer, char *msg, size_t len) {
    return validate_theme(args, answer, msg, len);
}

int canon_answer_check(const json_t *args, const json_t *answer, char *msg, size_t len) {
    return validate_canon(args, answer, msg, len);
}
