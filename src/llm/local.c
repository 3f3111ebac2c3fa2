/* The offline analyzer (provider "local"): answers every task deterministically with
 * rules, vocabulary matching and feature-hashed TF-IDF, so the whole pipeline runs
 * with no network. This file owns the provider mechanics (a FIFO of submitted calls
 * that poll() works off, cancel_all, validation of answers), the task dispatch, and
 * signature canonicalisation. The analysis itself lives in local_rules.c,
 * local_theme.c, local_story.c and local_embed.c (see local_internal.h). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/local_internal.h"
#include "text/signature.h"
#include "util/jsonx.h"
#include "util/mem.h"

typedef struct local_provider {
    llm_provider base; /* first: the ops receive &base */
    local_ctx ctx;
    llm_call **q;      /* ring buffer of queued calls */
    size_t head, count, cap;
} local_provider;

static local_provider *as_local(llm_provider *p) { return (local_provider *)p; }

/* ------------------------------------------------------------ the queue */

static void queue_push(local_provider *lp, llm_call *c) {
    if (lp->count == lp->cap) {
        size_t ncap = lp->cap ? lp->cap * 2 : 64;
        llm_call **nq = xmalloc(ncap * sizeof *nq);
        for (size_t i = 0; i < lp->count; i++) nq[i] = lp->q[(lp->head + i) % lp->cap];
        free(lp->q);
        lp->q = nq;
        lp->cap = ncap;
        lp->head = 0;
    }
    lp->q[(lp->head + lp->count) % lp->cap] = c;
    lp->count++;
}

static llm_call *queue_pop(local_provider *lp) {
    llm_call *c = lp->q[lp->head];
    lp->head = (lp->head + 1) % lp->cap;
    lp->count--;
    return c;
}

/* ------------------------------------------------------------ canonicalize */

/* An existing signature that near-duplicates the proposal: exact matches before
 * near-duplicates, the same product area before the others, list order otherwise. */
static const json_t *find_existing(const json_t *existing, const char *proposal, const char *area,
                                   int *same_area) {
    for (int pass = 0; pass < 4; pass++) {
        int want_same = pass < 2, want_exact = pass % 2 == 0;
        size_t i;
        json_t *e;
        json_array_foreach(existing, i, e) {
            const char *sig = jx_str(e, "signature");
            if (!sig) continue;
            char *ea = product_area_normalize(jx_str(e, "product_area"));
            int same = strcmp(ea, area) == 0;
            free(ea);
            if (same != want_same) continue;
            char *es = signature_normalize(sig);
            int ok = want_exact ? strcmp(es, proposal) == 0 : signature_near_duplicate(es, proposal);
            free(es);
            if (ok) {
                *same_area = same;
                return e;
            }
        }
    }
    return NULL;
}

/* One proposal's decision. Proposals of the same request that name the same issue
 * get the same signature: an earlier decision of the batch counts as existing. */
static json_t *canon_decide(const json_t *existing, const json_t *decided, const char *proposed,
                            const char *area) {
    char *norm = signature_normalize(proposed);
    int same = 0;
    const json_t *hit = existing ? find_existing(existing, norm, area, &same) : NULL;
    const json_t *sibling = NULL;
    size_t i;
    json_t *d;
    json_array_foreach(decided, i, d) {
        if (hit || sibling) break;
        const char *sig = jx_str(d, "signature");
        if (sig && signature_near_duplicate(sig, norm)) sibling = d;
    }
    char *sig, *why;
    if (hit) {
        sig = signature_normalize(jx_str(hit, "signature"));
        why = xasprintf("\"%s\" is a near-duplicate of existing signature \"%s\"%s.", norm, sig,
                        same ? " in the same product area" : " (another product area)");
    } else if (sibling) {
        sig = xstrdup(jx_str(sibling, "signature"));
        why = xasprintf("Names the same issue as proposal \"%s\" of this request.",
                        jx_str(sibling, "proposed"));
    } else {
        sig = xstrdup(norm);
        why = xasprintf("No near-duplicate among %zu existing signatures; kept the normalised "
                        "proposal.",
                        existing ? json_array_size(existing) : (size_t)0);
    }
    json_t *ans = json_pack("{s:o, s:o, s:b, s:o}", "proposed", jx_string(proposed), "signature",
                            jx_string(sig), "matched_existing", hit != NULL, "reasoning",
                            jx_string(why));
    free(sig);
    free(why);
    free(norm);
    return ans;
}

static json_t *task_canonicalize(const llm_call *call, char *err, size_t errlen) {
    const json_t *proposals = jx_arr(call->args, "proposals");
    if (!json_array_size(proposals)) {
        snprintf(err, errlen, "canonicalize: missing \"proposals\"");
        return NULL;
    }
    char *area = product_area_normalize(jx_str(call->args, "product_area"));
    json_t *existing = jx_arr(call->args, "existing");
    json_t *decisions = json_array();
    size_t i;
    json_t *pr;
    json_array_foreach(proposals, i, pr) {
        const char *proposed = jx_str(pr, "proposed");
        if (!proposed || !*proposed) {
            snprintf(err, errlen, "canonicalize: proposal %zu has no \"proposed\"", i);
            json_decref(decisions);
            free(area);
            return NULL;
        }
        json_array_append_new(decisions, canon_decide(existing, decisions, proposed, area));
    }
    free(area);
    return json_pack("{s:o}", "decisions", decisions);
}

/* ------------------------------------------------------------ embed */

static int task_embed(local_provider *lp, llm_call *call) {
    if (!call->texts && call->ntexts) {
        snprintf(call->error, sizeof call->error, "embed: texts is NULL");
        return -1;
    }
    int dim = lp->base.embed_dim;
    call->dim = dim;
    if (call->ntexts == 0) return 0;
    call->vectors = xmalloc(call->ntexts * (size_t)dim * sizeof *call->vectors);
    for (size_t i = 0; i < call->ntexts; i++)
        lembed_vector(&lp->ctx.embed, &lp->ctx, call->texts[i], call->vectors + i * (size_t)dim, dim);
    return 0;
}

/* ------------------------------------------------------------ dispatch */

static void fail(llm_provider *p, llm_call *call, enum llm_status st, const char *msg) {
    if (call->answer) json_decref(call->answer);
    call->answer = NULL;
    free(call->vectors);
    call->vectors = NULL;
    call->status = st;
    if (msg != call->error) snprintf(call->error, sizeof call->error, "%s", msg);
    atomic_fetch_add(&p->stats.failures, 1);
}

static void run_call(local_provider *lp, llm_call *call) {
    llm_call_reset_result(call);
    local_ctx *c = &lp->ctx;
    char err[sizeof call->error] = "";
    json_t *ans = NULL;
    switch (call->task) {
    case LLM_CLASSIFY: ans = local_classify(c, call, err, sizeof err); break;
    case LLM_REFINE: ans = local_refine(c, call, err, sizeof err); break;
    case LLM_FACETS: ans = local_facets(c, call, err, sizeof err); break;
    case LLM_THEME: ans = local_theme(c, call, err, sizeof err); break;
    case LLM_CANONICALIZE: ans = task_canonicalize(call, err, sizeof err); break;
    case LLM_STORY: ans = local_story(call, err, sizeof err); break;
    case LLM_REVIEW: ans = local_review(call, err, sizeof err); break;
    case LLM_EMBED:
        if (task_embed(lp, call) != 0) fail(&lp->base, call, LLM_ERR_INPUT, call->error);
        return;
    default: snprintf(err, sizeof err, "unknown task %d", (int)call->task); break;
    }
    if (!ans) {
        fail(&lp->base, call, LLM_ERR_INPUT, err[0] ? err : "no answer");
        return;
    }
    call->answer = ans;
    if (call->validate) {
        char msg[200] = "";
        if (call->validate(call->args, ans, msg, sizeof msg) != 0) {
            /* our own answer failed the phase's schema: a bug, reported not hidden */
            char why[sizeof call->error];
            snprintf(why, sizeof why, "local answer rejected: %s", msg[0] ? msg : "invalid");
            fail(&lp->base, call, LLM_ERR_INVALID, why);
        }
    }
}

/* ------------------------------------------------------------ ops */

static int local_submit(llm_provider *p, llm_call *call) {
    if (!call || !call->done) return -1;
    queue_push(as_local(p), call);
    return 0;
}

/* Works off every call queued when poll starts (CPU work, no waiting). Calls that
 * done callbacks submit meanwhile wait for the next poll, so a callback that always
 * resubmits cannot keep one poll spinning forever. */
static int local_poll(llm_provider *p, int timeout_ms) {
    (void)timeout_ms;
    local_provider *lp = as_local(p);
    size_t n = lp->count;
    int completed = 0;
    for (size_t i = 0; i < n; i++) {
        llm_call *call = queue_pop(lp); /* off the queue before done may re-enter */
        run_call(lp, call);
        completed++;
        call->done(call);
    }
    return completed;
}

static size_t local_pending(llm_provider *p) { return as_local(p)->count; }

static void local_cancel_all(llm_provider *p) {
    local_provider *lp = as_local(p);
    size_t n = lp->count; /* same snapshot rule as poll */
    for (size_t i = 0; i < n; i++) {
        llm_call *call = queue_pop(lp);
        llm_call_reset_result(call);
        fail(p, call, LLM_ERR_CANCELLED, "cancelled");
        call->done(call);
    }
}

static int local_prepare(llm_provider *p, llm_text_iter next, void *ctx) {
    local_provider *lp = as_local(p);
    return lembed_prepare(&lp->ctx.embed, &lp->ctx, next, ctx);
}

static void local_destroy(llm_provider *p) {
    local_provider *lp = as_local(p);
    local_ctx *c = &lp->ctx;
    lrules_free(c->rules);
    ltheme_free(c->theme);
    lembed_free(&c->embed);
    llex_free(&c->lex);
    lt_free(&c->tk);
    lpseq_free(&c->seq);
    buf_free(&c->text);
    buf_free(&c->text2);
    free(lp->q);
    free(lp);
}

static const llm_provider_ops LOCAL_OPS = {
    .name = "local",
    .submit = local_submit,
    .poll = local_poll,
    .pending = local_pending,
    .cancel_all = local_cancel_all,
    .prepare_embeddings = local_prepare,
    .destroy = local_destroy,
};

llm_provider *llm_local_new(const vocab *v) {
    local_provider *lp = xcalloc(1, sizeof *lp);
    lp->base.ops = &LOCAL_OPS;
    lp->base.vocab = v;
    snprintf(lp->base.chat_model, sizeof lp->base.chat_model, "local-rules");
    snprintf(lp->base.embed_model, sizeof lp->base.embed_model, "local-tfidf-%d", LOCAL_EMBED_DIM);
    lp->base.embed_dim = LOCAL_EMBED_DIM;
    lp->base.max_embed_batch = 256;
    local_ctx *c = &lp->ctx;
    c->vocab = v;
    llex_init(&c->lex);
    c->rules = lrules_new(&c->lex, v);
    c->theme = ltheme_new(&c->lex, v);
    lembed_init(&c->embed);
    return &lp->base;
}
