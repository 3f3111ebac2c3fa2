/* Embedding phase: one vector per actionable conversation, from its customer digest
 * (else its opening message), in batches of the provider's size. A batch whose call
 * fails fails its items with the reason (they are retried by a resume). The offline
 * embedder first sees the whole corpus of the run for its IDF statistics; the corpus
 * is every item of the phase, done or not, so a resumed run embeds identically. */
#include <stdlib.h>
#include <string.h>

#include "pipeline/engine.h"
#include "util/mem.h"
#include "util/timeutil.h"

typedef struct embed_state {
    float *vec;
    int dim;
} embed_state;

static const char *embed_text(const conv_record *c) {
    if (c->digest && c->digest[0]) return c->digest;
    if (c->body && c->body[0]) return c->body;
    return NULL;
}

static const char *next_text(void *ctx) { return store_cursor_next(ctx); }

static int embed_begin(engine *e) {
    if (!e->llm->ops->prepare_embeddings) return 0;
    store_cursor *cur = store_work_digests(e->st, e->run->id, PHASE_EMBEDDINGS);
    if (!cur) {
        engine_fatal(e, "reading the corpus: %s", store_errmsg(e->st));
        return -1;
    }
    int prc = e->llm->ops->prepare_embeddings(e->llm, next_text, cur);
    int crc = store_cursor_close(cur);
    if (prc != 0 || crc != STORE_OK) {
        engine_fatal(e, "preparing embedding statistics failed%s%s", crc ? ": " : "",
                     crc ? store_errmsg(e->st) : "");
        return -1;
    }
    return 0;
}

static int embed_prepare(engine *e, call_group *g) {
    /* Compact the group to the items that have text; fail the others. */
    size_t k = 0;
    for (size_t i = 0; i < g->n; i++) {
        if (embed_text(&g->items[i]->in.conv)) g->items[k++] = g->items[i];
        else engine_item_fail(e, g->items[i], "Empty text after preparation");
    }
    g->n = k;
    if (k == 0) return 0;
    g->texts = xcalloc(k, sizeof *g->texts);
    for (size_t i = 0; i < k; i++) g->texts[i] = embed_text(&g->items[i]->in.conv);
    engine_fill_input(g);
    g->call.task = LLM_EMBED;
    g->call.texts = g->texts;
    g->call.ntexts = k;
    return 1;
}

static int embed_complete(engine *e, call_group *g) {
    const llm_call *c = &g->call;
    int ok = c->status == LLM_OK && c->vectors && c->dim > 0;
    for (size_t i = 0; i < g->n; i++) {
        work_item *it = g->items[i];
        if (!ok) {
            engine_item_fail(e, it, "embedding failed (%s): %s", llm_status_name(c->status),
                             c->status == LLM_OK ? "no vectors in the answer" : c->error);
            continue;
        }
        embed_state *es = xcalloc(1, sizeof *es);
        es->dim = c->dim;
        es->vec = xmalloc((size_t)c->dim * sizeof(float));
        memcpy(es->vec, c->vectors + i * (size_t)c->dim, (size_t)c->dim * sizeof(float));
        it->state = es;
        engine_item_ok(e, it);
    }
    return 0;
}

static int embed_write(engine *e, work_item *it) {
    embed_state *es = it->state;
    return store_put_embedding(e->st, e->run->id, it->in.conv.id, e->llm->embed_model, es->vec,
                               es->dim, wall_unix());
}

static void embed_free(work_item *it) {
    embed_state *es = it->state;
    free(es->vec);
    free(es);
    it->state = NULL;
}

const phase_ops EMBED_OPS = {
    .phase = PHASE_EMBEDDINGS,
    .group_max = 0, /* the provider's batch size */
    .begin = embed_begin,
    .prepare = embed_prepare,
    .complete = embed_complete,
    .write = embed_write,
    .free_state = embed_free,
};
