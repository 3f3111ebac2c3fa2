#include "support/faulty.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/hash.h"
#include "util/mem.h"

typedef struct faulty {
    llm_provider base;
    llm_provider *inner;
    faulty_config cfg;
    long calls[LLM_TASK_COUNT];
    llm_call **failed; /* failed calls waiting for poll to complete them */
    size_t nfailed, cap;
} faulty;

static int should_fail(const faulty *f, const llm_call *c) {
    if ((int)c->task != f->cfg.fail_task || !c->in.conv_id) return 0;
    return (int)(fnv1a64_str(c->in.conv_id) % 100) < f->cfg.fail_percent;
}

static int f_submit(llm_provider *p, llm_call *c) {
    faulty *f = (faulty *)p;
    f->calls[c->task]++;
    if ((int)c->task == f->cfg.stop_task && f->calls[c->task] == f->cfg.stop_after &&
        f->cfg.stop_flag)
        atomic_store(f->cfg.stop_flag, 1);
    if (should_fail(f, c)) {
        XGROW(f->failed, f->cap, f->nfailed + 1);
        f->failed[f->nfailed++] = c;
        return 0;
    }
    return llm_submit(f->inner, c);
}

static int f_poll(llm_provider *p, int ms) {
    faulty *f = (faulty *)p;
    int n = 0;
    while (f->nfailed) {
        llm_call *c = f->failed[--f->nfailed];
        c->status = LLM_ERR_HTTP;
        snprintf(c->error, sizeof c->error, "injected failure (HTTP 500)");
        c->done(c);
        n++;
    }
    int m = llm_poll(f->inner, n ? 0 : ms);
    return m < 0 ? m : n + m;
}

static size_t f_pending(llm_provider *p) {
    faulty *f = (faulty *)p;
    return f->nfailed + llm_pending(f->inner);
}

static void f_cancel(llm_provider *p) {
    faulty *f = (faulty *)p;
    while (f->nfailed) {
        llm_call *c = f->failed[--f->nfailed];
        c->status = LLM_ERR_CANCELLED;
        c->done(c);
    }
    f->inner->ops->cancel_all(f->inner);
}

static int f_prepare(llm_provider *p, llm_text_iter next, void *ctx) {
    faulty *f = (faulty *)p;
    return f->inner->ops->prepare_embeddings ? f->inner->ops->prepare_embeddings(f->inner, next, ctx)
                                             : 0;
}

static void f_destroy(llm_provider *p) {
    faulty *f = (faulty *)p;
    llm_provider_destroy(f->inner);
    free(f->failed);
    free(f);
}

static const llm_provider_ops FAULTY_OPS = {"faulty", f_submit, f_poll, f_pending, f_cancel,
                                            f_prepare, f_destroy};

llm_provider *faulty_new(llm_provider *inner, const faulty_config *cfg) {
    faulty *f = xcalloc(1, sizeof *f);
    f->base.ops = &FAULTY_OPS;
    f->base.vocab = inner->vocab;
    snprintf(f->base.chat_model, sizeof f->base.chat_model, "%s", inner->chat_model);
    snprintf(f->base.embed_model, sizeof f->base.embed_model, "%s", inner->embed_model);
    f->base.embed_dim = inner->embed_dim;
    f->base.max_embed_batch = inner->max_embed_batch;
    f->inner = inner;
    f->cfg = *cfg;
    return &f->base;
}

long faulty_calls(llm_provider *p, enum llm_task t) { return ((faulty *)p)->calls[t]; }
