/* Private to the OpenAI-compatible provider (openai.c): the response cache glue
 * (cache.c). */
#ifndef FEEDLINE_OPENAI_INTERNAL_H
#define FEEDLINE_OPENAI_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

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
/* The cached response text (caller frees), or NULL. */
char *oa_cache_get(oa_cache *c, const char *key);
void oa_cache_put(oa_cache *c, const char *key, const char *model, const char *task,
                  const char *response, int64_t prompt_tokens, int64_t completion_tokens);
/* Writes buffered entries when enough are waiting or the oldest has waited long
 * enough (always when force). Failures are logged and the entries dropped: the
 * cache is an optimisation, never a reason to fail a run. */
void oa_cache_flush(oa_cache *c, int force);

/* An embedding vector as cache text ("f32:" + base64 of little-endian floats), and
 * back (NULL when malformed). */
char *oa_vec_encode(const float *v, int dim);
float *oa_vec_decode(const char *s, int *dim);

#endif
