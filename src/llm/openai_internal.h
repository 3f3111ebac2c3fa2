/* Private to the OpenAI-compatible provider (openai.c): the response cache glue
 * (cache.c). */
#ifndef FEEDLINE_OPENAI_INTERNAL_H
#define FEEDLINE_OPENAI_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "llm/llm.h"
#include "net/httpc.h"
#include "store/store.h"
#include "util/hash.h"

/* The llm_cache table as the provider uses it: lookups go to the store (and to the
 * entries not written yet); writes are buffered and written in one short transaction
 * when due, so a busy run does not pay one commit per answer. Only valid answers are
 * ever put. Used from the provider's thread only. A NULL store disables caching. */
typedef struct oa_cache oa_cache;

oa_cache *oa_cache_new(store *st);
/* Writes what is buffered, then frees. */
void oa_cache_free(oa_cache *c);
/* Hex SHA-256 of model + "\n" + the exact request body. */
void oa_cache_key(const char *model, const char *body, size_t len, char out[65]);
/* The same in two steps, so the state after a shared leading part of many bodies can
 * be kept (a copy of h after begin and an update with that part) and each body's key
 * hashes only the rest: begin, then end with the (rest of the) body. */
void oa_cache_key_begin(sha256_ctx *h, const char *model);
void oa_cache_key_end(sha256_ctx *h, const char *body, size_t len, char out[65]);
/* The cached response text (caller frees), or NULL. */
char *oa_cache_get(oa_cache *c, const char *key);
void oa_cache_put(oa_cache *c, const char *key, const char *model, const char *task,
                  const char *response, int64_t prompt_tokens, int64_t completion_tokens);
/* Writes the entries put since the last flush, in one transaction. Called at the end
 * of every poll, so the answers of a poll are on disk before the caller writes what
 * depends on them, and a crashed run asks again only what was in flight.
 * Failures are logged and the entries dropped: the cache saves money, it is never a
 * reason to fail a run. */
void oa_cache_flush(oa_cache *c);

/* An embedding vector as cache text ("f32:" + base64 of little-endian floats), and
 * back (NULL when malformed). */
char *oa_vec_encode(const float *v, int dim);
float *oa_vec_decode(const char *s, int *dim);

/* The Batch API layer (batch.c): requests gathered into batches (/files, /batches),
 * polled, and answered from the batches' output files, on the provider's multi. */
typedef struct oa_batcher oa_batcher;
typedef struct oa_batch_cfg {
    const char *base_url, *embed_base_url, *api_version;
    const char *auth_name, *auth_value; /* NULL: no key header */
    int timeout_ms;       /* of status requests */
    int poll_ms, gather_ms, max_requests, max_embed_inputs;
    int64_t max_bytes;
    store *st;            /* run_batches (NULL: nothing recorded, nothing resumed) */
    int64_t run_id;
} oa_batch_cfg;
/* A request's outcome: body = the response body of its line (status 200; usage: the
 * first request of a line carries it), or NULL with st and error. Never called from
 * oa_batcher_add except for an answer a resumed batch already gave. */
typedef void (*oa_batch_result_fn)(void *ctx, void *job, const json_t *body, int usage,
                                   enum llm_status st, const char *error);
/* The endpoint refused the key: the provider fails (as for direct requests). */
typedef void (*oa_batch_fatal_fn)(void *ctx, const char *why);

oa_batcher *oa_batcher_new(const oa_batch_cfg *c, httpc *http, oa_batch_result_fn result,
                           oa_batch_fatal_fn fatal, void *ctx);
/* Completes every waiting request cancelled, then frees (the provider has cancelled
 * the multi's requests first). */
void oa_batcher_free(oa_batcher *b);
/* Queues one request: key = its cache key (the line's custom_id), body = the exact
 * body a direct request would send, weight = its embeddings inputs (1 for chat). */
void oa_batcher_add(oa_batcher *b, int embeddings, const char key[65], const char *body,
                    size_t len, int weight, void *job);
/* Starts what is due (uploads, batch creation, polls, downloads); ms until the next
 * thing is due, -1 when nothing waits. */
int64_t oa_batcher_step(oa_batcher *b, int64_t now);
int oa_batcher_busy(const oa_batcher *b);
size_t oa_batcher_waiting(const oa_batcher *b);
/* Completes every waiting request with LLM_ERR_CANCELLED (the batches stay). */
void oa_batcher_fail_waiting(oa_batcher *b, const char *why);
/* Cancels the batches still running (stop), waiting a few seconds at most for the
 * answers; their rows say "cancelling", so a resume reads what they answered. */
void oa_batcher_cancel_remote(oa_batcher *b);

#endif
