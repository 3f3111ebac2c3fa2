/* The OpenAI-compatible provider's side of the persistent response cache (llm_cache,
 * see openai_internal.h): keys, writes per poll, vector encoding. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/openai_internal.h"
#include "util/base64.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/mem.h"
#include "util/strmap.h"
#include "util/timeutil.h"


typedef struct pending_entry {
    char *key, *model, *task, *response;
    int64_t prompt_tokens, completion_tokens;
} pending_entry;

struct oa_cache {
    store *st;
    pending_entry *pending;
    size_t npending, cap;
    strmap_t pending_by_key; /* key -> (index + 1) */
};

oa_cache *oa_cache_new(store *st) {
    oa_cache *c = xcalloc(1, sizeof *c);
    c->st = st;
    return c;
}

static void free_pending(oa_cache *c) {
    for (size_t i = 0; i < c->npending; i++) {
        pending_entry *e = &c->pending[i];
        free(e->key);
        free(e->model);
        free(e->task);
        free(e->response);
    }
    c->npending = 0;
    strmap_free(&c->pending_by_key, NULL);
    memset(&c->pending_by_key, 0, sizeof c->pending_by_key);
}

void oa_cache_free(oa_cache *c) {
    if (!c) return;
    oa_cache_flush(c);
    free_pending(c);
    free(c->pending);
    free(c);
}

void oa_cache_key_begin(sha256_ctx *h, const char *model) {
    sha256_init(h);
    sha256_update(h, model, strlen(model));
    sha256_update(h, "\n", 1);
}

void oa_cache_key_end(sha256_ctx *h, const char *body, size_t len, char out[65]) {
    sha256_update(h, body, len);
    sha256_final_hex(h, out);
}

void oa_cache_key(const char *model, const char *body, size_t len, char out[65]) {
    sha256_ctx h;
    oa_cache_key_begin(&h, model);
    oa_cache_key_end(&h, body, len, out);
}

char *oa_cache_get(oa_cache *c, const char *key) {
    if (!c || !c->st) return NULL;
    uintptr_t idx = (uintptr_t)strmap_get(&c->pending_by_key, key);
    if (idx) return xstrdup(c->pending[idx - 1].response);
    char *resp = NULL;
    int rc = store_cache_get(c->st, key, &resp, NULL, NULL);
    if (rc == STORE_FOUND) return resp;
    if (rc != STORE_NOTFOUND) log_warn("llm cache: lookup failed: %s", store_errmsg(c->st));
    free(resp);
    return NULL;
}

void oa_cache_put(oa_cache *c, const char *key, const char *model, const char *task,
                  const char *response, int64_t prompt_tokens, int64_t completion_tokens) {
    if (!c || !c->st || strmap_has(&c->pending_by_key, key)) return;
    XGROW(c->pending, c->cap, c->npending + 1);
    pending_entry *e = &c->pending[c->npending++];
    e->key = xstrdup(key);
    e->model = xstrdup(model);
    e->task = xstrdup(task);
    e->response = xstrdup(response);
    e->prompt_tokens = prompt_tokens;
    e->completion_tokens = completion_tokens;
    strmap_put(&c->pending_by_key, key, (void *)(uintptr_t)c->npending);
}

static int write_all(oa_cache *c, int64_t now) {
    for (size_t i = 0; i < c->npending; i++) {
        pending_entry *e = &c->pending[i];
        int rc = store_cache_put(c->st, e->key, e->model, e->task, e->response, e->prompt_tokens,
                                 e->completion_tokens, now);
        if (rc != STORE_OK) return rc;
    }
    return STORE_OK;
}

void oa_cache_flush(oa_cache *c) {
    if (!c || !c->st || c->npending == 0) return;
    int64_t now = wall_unix();
    int rc = store_begin(c->st);
    if (rc == STORE_OK) {
        rc = write_all(c, now);
        if (rc == STORE_OK) rc = store_commit(c->st);
        else store_rollback(c->st);
    }
    if (rc != STORE_OK)
        log_warn("llm cache: %zu answers not cached: %s", c->npending, store_errmsg(c->st));
    free_pending(c);
}

/* ------------------------------------------------------------ vectors */

char *oa_vec_encode(const float *v, int dim) {
    char *b64 = base64_from_floats(v, dim);
    char *out = xasprintf("f32:%s", b64);
    free(b64);
    return out;
}

float *oa_vec_decode(const char *s, int *dim) {
    if (!s || strncmp(s, "f32:", 4) != 0) return NULL;
    return base64_to_floats(s + 4, strlen(s + 4), dim);
}
